//! fleetform: Azure IoT Edge automatic deployments as code.
//!
//! The modules follow the data, each stage reading only the ones before it:
//!
//! - [`model`] — the ground floor: the hub's `Configuration`, device twins, typed ids
//!   (`DeploymentId`, `Etag`, `Priority`), twin paths, and [`model::FleetRead`], the fleet
//!   as the pure stages read it.
//! - [`spec`] — KDL files into the typed deployment model, every problem a diagnostic
//!   with file, line and column; [`route`] is the edge hub's route grammar, [`suggest`]
//!   the one "did you mean".
//! - [`query`] — the hub's query language: parse, compile, evaluate against twins.
//! - [`manifest`] — the model to the hub's Configuration JSON (content-hash ids, labels)
//!   and back.
//! - [`merge`] — each device's standard deployment and layered stack, merged into the
//!   documents it will run, with provenance and per-device checks.
//! - [`plan`] — a pure function of the declared deployments, the hub's configurations and
//!   a fleet: actions, ordered steps, before/after state and the device impact.
//!   [`explain`] reads the same state for one device.
//! - [`apply`] — carries the steps out against a hub, guarded by etags, and waits.
//!
//! Beside the pipeline: [`hub`] holds the backends (a snapshot directory, the REST API)
//! behind `HubRead`/`HubWrite`; [`render`] all human output; [`import`] turns hub or
//! manifest JSON into KDL; [`git`] reads revisions; [`util`] atomic files and a worker
//! pool. No stage of the pipeline imports [`hub`]: it reaches them as a
//! [`model::FleetRead`] and a list of configurations.
//!
//! The hub's rules this code relies on are written down, with their public sources, in
//! `docs/hub-semantics.md`. The binary (`src/cli/`) and the emulator
//! (`crates/fleetform-hub-emulator`) are separate crates over this one.

pub mod apply;
pub mod explain;
pub mod git;
pub mod hub;
pub mod import;
pub mod manifest;
pub mod merge;
pub mod model;
pub mod plan;
pub mod query;
pub mod render;
pub mod route;
pub mod spec;
pub mod suggest;
#[cfg(test)]
mod test_support;
pub mod util;
