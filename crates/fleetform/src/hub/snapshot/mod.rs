//! The snapshot directory: a hub kept as JSON files (docs/hub-semantics.md#snapshot-directory).
//!
//! ```text
//! configurations.json   the list endpoint's array (`GET /configurations`)
//! devices.json          device twins as one JSON array (`POST /devices/query`, `SELECT * FROM devices`)
//!   or devices.jsonl    one device twin per line, for large fleets
//! modules.json[l]       optional module twins (`GET /twins/{d}/modules/{m}`)
//! ```
//!
//! Twins are never all held at once: a plan over 1,000,000 devices reads each twin, folds
//! it into its result and drops it. Both twin formats are cut into records (one twin's
//! bytes) by `Splitter` before serde_json sees them, which keeps memory bounded by the
//! largest twin, lets the parallel reader hand records to worker threads, and lets every
//! error name the file, line and column where the twin starts.
//!
//! Writes go through [`AtomicFile`] (temp file in the same directory, fsync, rename, fsync
//! directory) so that a crash leaves either the old file or the new one, never a torn one.

mod error;
mod export;
pub(crate) mod hub;
mod layout;
mod parallel;
mod projection;
mod reader;
mod record;
mod splitter;
mod writer;

pub use error::SnapshotError;
pub use export::{SnapshotSummary, snapshot_from, snapshot_with};
pub use hub::SnapshotHub;
pub use layout::{
    CONFIGURATIONS_FILE, DEVICES_JSON, DEVICES_JSONL, MODULES_JSON, MODULES_JSONL, SNAPSHOT_INFO_FILE, TwinFile,
    TwinFormat,
};
pub use reader::{DeviceReader, ModuleReader, Snapshot, TwinReader, read_configurations};
pub use writer::{SnapshotWriter, TwinFileWriter};

pub use crate::model::fleet::Projection;
/// Kept here, where apply, the CLI and the emulator have always found it.
pub use crate::util::atomic_file::AtomicFile;
