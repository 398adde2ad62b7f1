//! `fleetform plan`: what apply will do to the hub, deployment by deployment, and what
//! every device will run before and after.
//!
//! A pure function of its inputs: the declared deployments, the hub's configurations and
//! a [`FleetRead`] over the devices. The stages run in order: [`actions`] classify each
//! deployment, [`steps`] order the writes, [`state`] gives the deployments before and
//! after, [`impact`] folds the fleet into cohorts.

pub mod actions;
pub mod change;
pub mod content;
pub mod diff;
pub mod impact;
pub mod lint;
pub mod redact;
pub mod rollout;
pub mod running;
pub mod saved;
pub mod state;
pub mod steps;

use std::collections::BTreeMap;

pub use actions::{Action, ActionKind, FieldChange, HubRef, adopt_ids, classify};
pub use change::{
    PlaceholderEnv, WithoutSecrets, base_configurations, change_plan, render_without_secrets, unknown_id,
};
pub use diff::{Change, diff};
pub use impact::{Cohort, DeviceTotals, Impact, StackIds};
pub use redact::Redactor;
pub use rollout::{Decision, RolloutPlan};
pub use running::{Fate, Running, RunningModule};
pub use saved::{SavedConfiguration, SavedPlan};
pub use state::DeploymentState;
pub use steps::{Step, StepOp, steps};

use crate::manifest::Rendered;
use crate::merge::Warning;
use crate::model::{Configuration, FleetRead, ReadError};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// Reading the fleet's devices failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ReadError),
    #[error("configuration {id} on the hub has {problem}")]
    #[diagnostic(
        code(fleetform::plan::bad_hub_configuration),
        help(
            "the hub sets createdTimeUtc on every configuration; a snapshot must keep it (re-export it with `fleetform snapshot`)"
        )
    )]
    BadHubConfiguration { id: String, problem: String },
    /// A rollout's state breaks an invariant of the scheme for some devices.
    #[error(
        "the rollout of {name} {rule} in {state}: {count} device{} (e.g. {samples})",
        if *.count == 1 { "" } else { "s" }
    )]
    #[diagnostic(code(fleetform::plan::rollout_invariant), help("{}", invariant_help(*rule)))]
    RolloutInvariant { name: String, state: String, rule: rollout::Invariant, count: u64, samples: String },
}

fn invariant_help(rule: rollout::Invariant) -> &'static str {
    match rule {
        rollout::Invariant::NoStandard => {
            "every device that runs a standard deployment before a rollout must run one in every wave (docs/rollouts.md); the old deployment's target must cover the new target, or roll the change out at once by removing `rollout`"
        }
        rollout::Invariant::NotMoved | rollout::Invariant::MovedEarly => {
            "the new deployment must win the tie with the old one exactly on the devices of the waves so far, as the newer of equal priority (docs/rollouts.md); was the old deployment re-created by hand during the rollout? `apply --restart-rollout` starts over from it"
        }
        rollout::Invariant::OthersChanged => {
            "a rollout moves devices between its own old and new deployment only, at the old one's priority (docs/rollouts.md \"Invariants\"); check the priorities of the deployments these devices run"
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Delete managed deployments that are no longer declared.
    pub prune: bool,
    /// `--restart-rollout`: retry a rolled-back content, or start a new content over an
    /// unfinished rollout (docs/rollouts.md).
    pub restart_rollout: bool,
    /// Unix seconds rollouts are decided at (soaks, wave start labels); `None`: the clock.
    pub now: Option<u64>,
    /// Seconds between the hub's metric runs, which a rollout waits for after each widening;
    /// `None`: IoT Hub's five minutes ([`rollout::METRICS_INTERVAL_SECS`]).
    pub metrics_interval: Option<u64>,
    /// Do not read what devices the deployments cannot tell about run (the `--base`
    /// section compares two declared states, not what the hub runs).
    pub without_running_before: bool,
}

/// A complete plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// [`FleetRead::describe`] of the fleet planned against.
    pub hub: String,
    /// [`FleetRead::identity`] of the fleet planned against.
    pub hub_id: String,
    pub actions: Vec<Action>,
    pub steps: Vec<Step>,
    /// For replaced deployments: what their content change means, by deployment name.
    pub content_changes: BTreeMap<String, Vec<Change>>,
    pub cohorts: Vec<Cohort>,
    pub totals: DeviceTotals,
    /// Findings on the declared state (after apply).
    pub warnings: Vec<Warning>,
    /// The configurations read from the hub (with real content: never print unredacted).
    pub current: Vec<Configuration>,
    /// What apply writes (with real content: never print unredacted).
    pub declared: Vec<Rendered>,
    pub redactor: Redactor,
    /// After apply: how many IoT Edge devices each deployment (by id) should be applied
    /// to, from the merge of the declared state; `apply --wait` waits for these counts.
    pub expected_applied: BTreeMap<String, u64>,
    /// Set when planned without some secrets (`plan --without-secrets`).
    pub without_secrets: Option<WithoutSecrets>,
    /// Deployments with `rollout` whose content is rolling out: the next transition and
    /// the wave plan (docs/rollouts.md).
    pub rollouts: Vec<RolloutPlan>,
    /// Old deployments of rollouts rewritten in place (a rollback record written or
    /// cleared): apply writes these besides `declared` (real content: never print).
    pub rollout_writes: Vec<Rendered>,
}

impl Plan {
    pub fn count(&self, kind: ActionKind) -> usize {
        self.actions.iter().filter(|a| a.action == kind).count()
    }

    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Whether the hub does not hold what the repository declares: changes to write, or a
    /// rollout still under way, refused or rolled back (its waits write nothing, yet the
    /// hub is not in sync, and a drift check must not read that as "in sync").
    pub fn out_of_sync(&self) -> bool {
        self.has_changes() || self.rollouts.iter().any(|r| !matches!(r.next, rollout::Decision::Ordinary))
    }

    /// What apply writes: the declared deployments and the rewritten old ones.
    pub fn to_write(&self) -> Vec<Rendered> {
        self.declared.iter().chain(&self.rollout_writes).cloned().collect()
    }

    /// True when `other` makes the same writes (op, deployment, id, priority, in order)
    /// with the same device impact: `plan --base` against a hub that equals the base,
    /// where printing both would show one plan twice. Etags are left out: the base side
    /// has none of its own.
    pub fn same_changes(&self, other: &Plan) -> bool {
        let writes = |p: &Plan| -> Vec<(StepOp, String, String, crate::model::Priority)> {
            p.steps.iter().map(|s| (s.op, s.name.clone(), s.id.to_string(), s.priority)).collect()
        };
        writes(self) == writes(other) && self.cohorts == other.cohorts && self.totals == other.totals
    }
}

/// Devices whose standard deployment changes to another of equal priority because a
/// replace re-creates one of the two (the newest wins a tie), summed per pair.
fn winner_flips(
    actions: &[Action],
    before: &DeploymentState,
    after: &DeploymentState,
    cohorts: &[Cohort],
) -> Vec<Warning> {
    use crate::merge::{Check, DeviceSample};
    let name_of = |id: &crate::model::DeploymentId| {
        actions.iter().find(|a| a.after.as_ref() == Some(id) || a.before.iter().any(|b| &b.id == id))
    };
    let priority_in = |state: &DeploymentState, id: &crate::model::DeploymentId| {
        state.deployments.iter().find(|d| &d.id == id).map(|d| d.priority)
    };
    let mut flips: BTreeMap<(String, String), (crate::model::Priority, DeviceSample)> = BTreeMap::new();
    for c in cohorts {
        let (Some(from), Some(to)) = (&c.stack_before.standard, &c.stack_after.standard) else { continue };
        let (Some(was), Some(now)) = (name_of(from), name_of(to)) else { continue };
        let replaced = was.action == ActionKind::Replace || now.action == ActionKind::Replace;
        let tied = priority_in(before, from).is_some_and(|p| Some(p) == priority_in(after, to));
        if was.name == now.name || !replaced || !tied {
            continue;
        }
        let entry =
            flips.entry((from.to_string(), to.to_string())).or_insert_with(|| (now.priority, DeviceSample::default()));
        entry.1.merge(&DeviceSample { count: c.count, samples: c.samples.clone() });
    }
    flips
        .into_iter()
        .map(|((from, to), (priority, devices))| {
            Warning::new(Check::StandardWinnerFlips { priority, from, to }, &devices)
        })
        .collect()
}

/// Makes the plan for `declared` (rendered with secrets resolved) against the hub's
/// `current` configurations, over the devices of `fleet`.
pub fn plan(
    mut declared: Vec<Rendered>,
    current: Vec<Configuration>,
    fleet: &dyn FleetRead,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    adopt_ids(&mut declared, &current);
    let mut actions = classify(&declared, &current, opts.prune);
    let now = opts.now.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    // The fleet checks read the targets as declared: a rollout narrows them to its wave
    // below, and each wave's condition is checked as itself.
    let lint = lint::Lint::new(&declared);
    let rollout::Adjusted { mut rollouts, extra: rollout_writes } = rollout::plan_rollouts(
        &mut declared,
        &current,
        &mut actions,
        now,
        opts.restart_rollout,
        opts.metrics_interval.unwrap_or(rollout::METRICS_INTERVAL_SECS),
        fleet,
    )?;
    let steps = steps(&actions);
    let redactor = Redactor::new(&declared, &current);
    let before = state::before(&current)?;
    let after = state::after(&current, &declared, &actions, &steps)?;
    let content_changes = content::content_changes(&actions, &current, &declared, &redactor);
    let also = impact::AlsoRead {
        paths: lint.paths(),
        visit: &|batch| lint.observe(batch),
        running_before: !opts.without_running_before,
    };
    let Impact { cohorts, totals, mut warnings, expected_applied, targeted } =
        impact::impact(&before, &after, fleet, &redactor, &also)?;
    warnings.extend(lint.finish(fleet, &targeted)?);
    warnings.extend(winner_flips(&actions, &before, &after, &cohorts));
    warnings.extend(crate::manifest::lint(&declared).into_iter().map(|c| Warning::new(c, &Default::default())));
    if !rollouts.is_empty() {
        warnings.retain(|w| !rollout::intended_tie(&rollouts, &w.check) && !rollout::held_back(&rollouts, &w.check));
        let broken = rollout::evaluate_waves(&mut rollouts, &current, &declared, fleet)?;
        warnings.extend(rollout::small_waves(&rollouts).into_iter().map(|c| Warning::new(c, &Default::default())));
        if let Some(b) = broken.into_iter().next() {
            return Err(PlanError::RolloutInvariant {
                name: b.name,
                state: b.state,
                rule: b.rule,
                count: b.devices.count,
                samples: b.devices.samples.join(", "),
            });
        }
    }
    Ok(Plan {
        hub: fleet.describe(),
        hub_id: fleet.identity(),
        actions,
        steps,
        content_changes,
        cohorts,
        totals,
        warnings,
        current,
        declared,
        redactor,
        expected_applied,
        without_secrets: None,
        rollouts,
        rollout_writes,
    })
}
