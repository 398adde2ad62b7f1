//! The ground floor: the hub's data as every stage sees it. Nothing here does I/O or
//! knows where the data came from (a snapshot, the REST API, the emulator).

pub mod configuration;
pub mod fleet;
pub mod ids;
pub mod sensitive;
pub mod twin;
pub mod twin_path;

pub use configuration::{Configuration, ConfigurationContent, ConfigurationKind, Metrics};
pub use fleet::{AgentReport, DeviceIds, EDGE_AGENT, FleetRead, Projection, ReadError, ReadPaths, Twins};
pub use ids::{DeploymentId, DeploymentName, Etag, EtagError, IdError, IfMatch, Priority, PriorityError};
pub use twin::{ModuleTwin, Twin, TwinShapeError};
pub use twin_path::{TwinPath, TwinPathError};
