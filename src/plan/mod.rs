//! `fleetform plan`: what apply will do to the hub, deployment by deployment, and what
//! every device will run before and after.

pub mod actions;
pub mod steps;

pub use actions::{Action, ActionKind, FieldChange, HubRef, classify};
pub use steps::{Step, StepOp, steps};
