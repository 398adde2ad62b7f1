//! Hub backends: where configurations and device twins come from and go to.
//!
//! Every backend — a snapshot directory, the REST API of a real hub, the local emulator —
//! implements [`Hub`], so plan, explain, query and apply work the same against each.
//! [`open`] turns a `--hub` value into one of them.

pub mod certificate;
pub mod connection;
pub mod credential;
mod error;
pub mod open;
pub mod rest;
pub mod shape;
pub mod snapshot;

pub use crate::model::fleet::{FleetRead, Projection, ReadError};
pub use error::HubError;
pub use open::{
    CONNECTION_STRING_ENV, HubSpec, HubSpecError, TwinsAgeError, TwinsFromSnapshot, TwinsReadAt, open, open_signed_in,
    open_with, twins_read_at,
};
pub use snapshot::{Snapshot, SnapshotError, SnapshotHub, SnapshotSummary, snapshot_from, snapshot_with};

pub use crate::model::{AgentReport, Configuration, Etag, IfMatch, Twin};

/// The most configurations a standard hub holds (docs/hub-semantics.md#limits).
pub const MAX_CONFIGURATIONS: usize = 100;

/// Reading a hub: its configurations and the twins of its devices.
pub trait HubRead: Send + Sync {
    /// What this hub is, for messages (`snapshot examples/campus/hub`, a host name).
    fn describe(&self) -> String;

    /// Which hub this is, stable across the ways of naming it: saved plans record it and
    /// apply refuses a plan made against another one. The display text is not enough:
    /// `--hub ./hub` and `--hub hub` are one snapshot, and two emulators behind the same
    /// URL at different times are two hubs. Defaults to [`HubRead::describe`].
    fn identity(&self) -> String {
        self.describe()
    }

    /// Every configuration, device-management ones included (the list endpoint).
    fn configurations(&self) -> Result<Vec<Configuration>, HubError>;

    /// Every device twin, handed to `visit` in batches, possibly from several threads at
    /// once. `projection` says which parts of the twin are needed.
    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError>;

    /// Every module twin (`SELECT * FROM devices.modules`), in batches like
    /// [`HubRead::device_batches`].
    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError>;

    /// What the `$edgeAgent` twins of `devices` report running, in batches (see
    /// [`FleetRead::agent_reports`]). By default the module twins are scanned.
    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<AgentReport>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        let _ = edge_devices;
        AgentReport::scan(devices, |each| self.module_batches(each), visit)
    }

    /// One configuration (`GET /configurations/{id}`), with its metrics where the hub
    /// computes them; [`HubError::NotFound`] when it does not exist.
    fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.configurations()?.into_iter().find(|c| c.id == id).ok_or_else(|| HubError::NotFound { id: id.to_string() })
    }

    /// Whether [`HubRead::configuration`] returns live system metrics (a hub or the
    /// emulator does; a snapshot directory only holds whatever was exported).
    fn live_metrics(&self) -> bool {
        false
    }
}

/// Changing a hub's configurations, each write guarded by the etag it was read with.
pub trait HubWrite: Send + Sync {
    /// Creates a configuration; fails with [`HubError::AlreadyExists`] if the id exists.
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError>;

    /// Replaces the mutable fields of a configuration, if its etag is still `etag`.
    fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError>;

    /// Deletes a configuration, if its etag meets `if_match`.
    fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError>;
}

/// A hub that can be read and written: what apply needs. Every backend is one.
pub trait Hub: HubRead + HubWrite {}

impl<T: HubRead + HubWrite + ?Sized> Hub for T {}

/// A hub seen as the pure stages see it: a fleet of device twins. Read errors keep
/// their diagnostics (code, help) whole.
pub struct Fleet<'h>(pub &'h dyn HubRead);

impl FleetRead for Fleet<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn identity(&self) -> String {
        self.0.identity()
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        // The visitor's own error travels through the backend as a HubError and comes
        // back out unchanged.
        self.0.device_batches(projection, &|batch| visit(batch).map_err(HubError::Read)).map_err(read_error)
    }

    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        self.0.module_batches(&|batch| visit(batch).map_err(HubError::Read)).map_err(read_error)
    }

    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<AgentReport>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        self.0.agent_reports(devices, edge_devices, &|batch| visit(batch).map_err(HubError::Read)).map_err(read_error)
    }
}

/// A backend's error as a read error: the visitor's own comes back out unchanged.
fn read_error(e: HubError) -> ReadError {
    match e {
        HubError::Read(inner) => inner,
        other => ReadError::new(other),
    }
}
