//! The ordered steps apply runs: creates and updates from the highest priority down, then
//! deletes (old halves of replacements included) from the lowest priority up, so that a
//! device moves at most once where possible and never sits without a deployment.

use crate::model::DeploymentId;
use serde::{Deserialize, Serialize};

use super::actions::{Action, ActionKind};
use crate::model::{Etag, Priority};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepOp {
    Create,
    Update,
    Delete,
}

/// One write against the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// 1-based position in the run.
    pub number: usize,
    pub op: StepOp,
    /// The deployment's name.
    pub name: String,
    /// The configuration id written or deleted.
    pub id: DeploymentId,
    pub priority: Priority,
    /// For updates and deletes: the etag the plan saw (sent as `If-Match`).
    pub etag: Option<Etag>,
    /// Why: `create`, `update`, `replace`, `delete`, `stale copy` (a leftover of an
    /// interrupted replace), or a rollout's transition (docs/rollouts.md): `rollout start`,
    /// `rollout restart`, `rollout promote`, `rollout complete`, `rollback record`,
    /// `rollback`, `clear rollback record`.
    pub reason: String,
}

pub fn steps(actions: &[Action]) -> Vec<Step> {
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    for a in actions {
        let after = a.after.clone().unwrap_or_default();
        let step = |op, id: &str, priority, etag: Option<Etag>, reason: &str| Step {
            number: 0,
            op,
            name: a.name.clone(),
            id: id.to_string().into(),
            priority,
            etag,
            reason: reason.to_string(),
        };
        match a.action {
            ActionKind::Create => writes.push(step(StepOp::Create, &after, a.priority, None, "create")),
            ActionKind::Replace => {
                writes.push(step(StepOp::Create, &after, a.priority, None, "replace"));
                for b in &a.before {
                    deletes.push(step(StepOp::Delete, &b.id, b.priority, b.etag.clone(), "replace"));
                }
            }
            ActionKind::Update => {
                if let Some(current) = a.before.iter().find(|b| b.id == after)
                    && !a.field_changes.is_empty()
                {
                    writes.push(step(StepOp::Update, &after, a.priority, current.etag.clone(), "update"));
                }
                for b in a.before.iter().filter(|b| b.id != after) {
                    deletes.push(step(StepOp::Delete, &b.id, b.priority, b.etag.clone(), "stale copy"));
                }
            }
            ActionKind::Delete => {
                for b in &a.before {
                    deletes.push(step(StepOp::Delete, &b.id, b.priority, b.etag.clone(), "delete"));
                }
            }
            ActionKind::Rollout => {
                for w in &a.writes {
                    let s = step(w.op, &w.id, w.priority, w.etag.clone(), w.reason);
                    if w.op == StepOp::Delete { deletes.push(s) } else { writes.push(s) }
                }
            }
            ActionKind::Orphan | ActionKind::Unmanaged | ActionKind::NoOp => {}
        }
    }
    writes.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    deletes.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id)));
    let mut all: Vec<Step> = writes.into_iter().chain(deletes).collect();
    for (i, s) in all.iter_mut().enumerate() {
        s.number = i + 1;
    }
    all
}

impl StepOp {
    /// The verb plans and apply print for the step.
    pub fn word(self) -> &'static str {
        match self {
            StepOp::Create => "create",
            StepOp::Update => "update",
            StepOp::Delete => "delete",
        }
    }
}

impl std::fmt::Display for StepOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.word())
    }
}
