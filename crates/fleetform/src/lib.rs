//! fleetform: Azure IoT Edge automatic deployments as code.
//!
//! The engine follows the data: [`spec`] reads KDL into a typed model, [`query`] parses and
//! evaluates the hub's query language, [`manifest`] converts the model to and from the hub's
//! Configuration JSON, [`merge`] computes each device's layered result, and [`hub`] holds
//! the backends. The binary in `src/main.rs` is a thin CLI over these.

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
pub mod util;
