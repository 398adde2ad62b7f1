//! `fleetform plan`: what apply will do to the hub, deployment by deployment, and what
//! every device will run before and after.

pub mod actions;
pub mod change;
pub mod compute;
pub mod diff;
pub mod redact;
pub mod saved;
pub mod steps;

pub use actions::{Action, ActionKind, FieldChange, HubRef, adopt_ids, classify};
pub use change::{BaseHub, PlaceholderEnv, change_plan};
pub use compute::{Cohort, DeviceTotals, Plan, PlanError, PlanOptions, StackIds, plan};
pub use diff::{Change, diff};
pub use redact::Redactor;
pub use saved::{SavedConfiguration, SavedPlan};
pub use steps::{Step, StepOp, steps};
