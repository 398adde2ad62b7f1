//! The hub's edge deployments as the merge sees them, before apply and after it: what
//! `plan` compares device by device and what `explain` shows for one device.

use std::collections::HashMap;

use super::PlanError;
use super::actions::{Action, ActionKind};
use super::steps::{Step, StepOp};
use crate::manifest::Rendered;
use crate::merge::{CreatedAt, MergeDeployment};
use crate::model::Configuration;

/// A set of edge deployments with their target conditions, index for index: a
/// [`crate::merge::MatchSet`] over this state names deployments by their position in
/// `deployments`, and `targets[i]` is the condition of `deployments[i]`.
#[derive(Clone, Debug, Default)]
pub struct DeploymentState {
    pub deployments: Vec<MergeDeployment>,
    pub targets: Vec<String>,
}

impl DeploymentState {
    fn push(&mut self, deployment: MergeDeployment, target: String) {
        self.deployments.push(deployment);
        self.targets.push(target);
    }

    pub fn len(&self) -> usize {
        self.deployments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }

    /// Each deployment with its target condition, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&MergeDeployment, &str)> {
        self.deployments.iter().zip(self.targets.iter().map(String::as_str))
    }
}

/// The hub's edge deployments as they are now.
pub fn before(current: &[Configuration]) -> Result<DeploymentState, PlanError> {
    let mut out = DeploymentState::default();
    for c in current.iter().filter(|c| c.is_edge()) {
        out.push(existing(c)?, c.target_condition.clone());
    }
    Ok(out)
}

/// The edge deployments once apply has run `steps`: untouched ones as they are, updated
/// ones with their new mutable fields (and their old creation time), created ones as
/// created at apply time, in apply order.
pub fn after(
    current: &[Configuration],
    declared: &[Rendered],
    actions: &[Action],
    steps: &[Step],
) -> Result<DeploymentState, PlanError> {
    let deleted: Vec<&str> = steps.iter().filter(|s| s.op == StepOp::Delete).map(|s| s.id.as_str()).collect();
    let declared_by_id: HashMap<&str, &Configuration> =
        declared.iter().map(|r| (r.configuration.id.as_str(), &r.configuration)).collect();
    let kept_declared: Vec<&str> = actions
        .iter()
        .filter(|a| matches!(a.action, ActionKind::NoOp | ActionKind::Update | ActionKind::Rollout))
        .filter_map(|a| a.after.as_deref())
        .collect();
    let mut out = DeploymentState::default();
    for c in current.iter().filter(|c| c.is_edge() && !deleted.contains(&c.id.as_str())) {
        let mut d = existing(c)?;
        let mut target = c.target_condition.clone();
        if kept_declared.contains(&c.id.as_str())
            && let Some(decl) = declared_by_id.get(c.id.as_str())
        {
            d.priority = decl.priority;
            target = decl.target_condition.clone();
        }
        out.push(d, target);
    }
    for (n, s) in steps.iter().filter(|s| s.op == StepOp::Create).enumerate() {
        if let Some(c) = declared_by_id.get(s.id.as_str())
            && let Some(d) = MergeDeployment::from_configuration(c, CreatedAt::Pending(n as u32))
        {
            out.push(d, c.target_condition.clone());
        }
    }
    Ok(out)
}

fn existing(c: &Configuration) -> Result<MergeDeployment, PlanError> {
    match MergeDeployment::existing(c) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(PlanError::BadHubConfiguration { id: c.id.to_string(), problem: "no IoT Edge content".into() }),
        Err(e) => Err(PlanError::BadHubConfiguration { id: c.id.to_string(), problem: e.to_string() }),
    }
}
