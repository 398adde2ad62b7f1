//! Progressive rollouts (issue #17, docs/rollouts.md): from the declared deployment, what
//! the hub holds for it and the new deployment's system metrics, the one transition the
//! next apply makes.
//!
//! Pure: the hub's configurations and `now` come in, a [`Decision`] goes out. The state
//! lives in labels on the hub (the old deployment O and the new one N), so that every
//! scheduled apply continues where the last one stopped.

use std::collections::BTreeMap;

use serde::Serialize;

use super::actions::{Action, ActionKind, HubRef};
use super::impact::{AlsoRead, StackIds};
use super::state::DeploymentState;
use super::steps::StepOp;
use crate::manifest::{LABEL_HASH, LABEL_NAME, Rendered};
use crate::merge::{self, Check, CreatedAt, DeviceSample, MatchSet, MergeDeployment, Stack};
use crate::model::{Configuration, ConfigurationKind, DeploymentId, Etag, FleetRead, Priority, ReadError};
use crate::spec::model::Rollout;

/// On N: the id of the old deployment it replaces.
pub const LABEL_FROM: &str = "fleetform-rollout-from";
/// On N: the index of the last wave N's target covers.
pub const LABEL_WAVE: &str = "fleetform-rollout-wave";
/// On N: Unix seconds when N's target was last widened (the soak starts there).
pub const LABEL_WAVE_STARTED: &str = "fleetform-rollout-wave-started";
/// On N: `in-progress`.
pub const LABEL_STATE: &str = "fleetform-rollout-state";
pub const STATE_IN_PROGRESS: &str = "in-progress";

/// On O once a rollout was rolled back: the id of the deleted new deployment. A scheduled
/// apply of the same content then leaves the hub alone instead of starting the same
/// failing rollout again (`--restart-rollout` retries it).
pub const LABEL_ROLLED_BACK: &str = "fleetform-rolled-back";
/// On O: the wave that failed.
pub const LABEL_ROLLED_BACK_WAVE: &str = "fleetform-rolled-back-wave";
/// On O: Unix seconds of the rollback.
pub const LABEL_ROLLED_BACK_AT: &str = "fleetform-rolled-back-at";
/// On O: the failing wave's `reportedFailedCount` and `targetedCount`.
pub const LABEL_ROLLED_BACK_FAILED: &str = "fleetform-rolled-back-failed";
pub const LABEL_ROLLED_BACK_TARGETED: &str = "fleetform-rolled-back-targeted";
/// On O: the rule's failure share, in parts per million (label values stay digits).
pub const LABEL_ROLLED_BACK_FAILURE_PPM: &str = "fleetform-rolled-back-failure-ppm";
/// On O: up to [`FAILED_SAMPLE`] failing device ids,
/// comma-separated, when every one of them is made of label-safe characters.
pub const LABEL_ROLLED_BACK_DEVICES: &str = "fleetform-rolled-back-devices";

/// The labels of a rollback record on O.
pub const RECORD_LABELS: [&str; 7] = [
    LABEL_ROLLED_BACK,
    LABEL_ROLLED_BACK_WAVE,
    LABEL_ROLLED_BACK_AT,
    LABEL_ROLLED_BACK_FAILED,
    LABEL_ROLLED_BACK_TARGETED,
    LABEL_ROLLED_BACK_FAILURE_PPM,
    LABEL_ROLLED_BACK_DEVICES,
];

/// The system metrics of the new deployment's current wave (docs/hub-semantics.md#system-metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveMetrics {
    pub targeted: i64,
    pub applied: i64,
    pub reported_successful: i64,
    pub reported_failed: i64,
}

impl WaveMetrics {
    /// `None` when the hub gives no counts (a snapshot directory).
    pub fn of(c: &Configuration) -> Option<WaveMetrics> {
        let m = c.system_metrics.as_ref().filter(|m| !m.results.is_empty())?;
        let get = |k: &str| m.results.get(k).copied().unwrap_or(0);
        Some(WaveMetrics {
            targeted: get("targetedCount"),
            applied: get("appliedCount"),
            reported_successful: get("reportedSuccessfulCount"),
            reported_failed: get("reportedFailedCount"),
        })
    }

    fn share(part: i64, of: i64) -> f64 {
        // Division is correctly rounded, so 49/50 is the very double the literal 0.98 is:
        // a share exactly at the threshold compares equal to it.
        part as f64 / of as f64
    }
}

/// Why a rollout in progress stays where it is.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum WaitReason {
    /// The hub gives no metrics (a snapshot directory): nothing to decide on.
    NoMetrics,
    /// The wave targets fewer devices than `min-devices`: a person decides.
    TooFewDevices { targeted: i64, min_devices: u64 },
    /// Not enough devices report success yet.
    BelowSuccess { successful: i64, targeted: i64, success: f64 },
    /// The promote rule holds, but the soak has not passed since the wave started.
    Soaking { remaining_secs: u64 },
    /// The hub has not necessarily recomputed the metrics since the wave started: the
    /// counts may still be the previous wave's (docs/hub-semantics.md#system-metrics).
    MetricsNotRecomputed { remaining_secs: u64, interval_secs: u64 },
    /// N's rollout labels cannot be read (edited by hand?).
    BadLabels { problem: String },
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitReason::NoMetrics => f.write_str("the hub reports no metrics (a snapshot): nothing to decide on"),
            WaitReason::TooFewDevices { targeted, min_devices } => write!(
                f,
                "the wave targets {targeted} device{}, fewer than min-devices={min_devices}: promote it by hand or lower min-devices",
                plural(*targeted)
            ),
            WaitReason::BelowSuccess { successful, targeted, success } => write!(
                f,
                "{successful} of {targeted} targeted devices report success, promote needs {}",
                percent(*success)
            ),
            WaitReason::Soaking { remaining_secs } => {
                write!(
                    f,
                    "soaking: {} left",
                    humantime::format_duration(std::time::Duration::from_secs(*remaining_secs))
                )
            }
            WaitReason::MetricsNotRecomputed { remaining_secs, interval_secs } => write!(
                f,
                "the hub recomputes metrics every {}, so its counts may still be the previous wave's: {} left",
                humantime::format_duration(std::time::Duration::from_secs(*interval_secs)),
                humantime::format_duration(std::time::Duration::from_secs(*remaining_secs))
            ),
            WaitReason::BadLabels { problem } => write!(f, "{problem}"),
        }
    }
}

/// A rollback as recorded on O.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    /// The deleted new deployment.
    pub new: DeploymentId,
    pub wave: usize,
    pub at: Option<u64>,
    pub failed: i64,
    pub targeted: i64,
    /// The rule's failure share.
    pub failure: f64,
    pub failing_devices: Vec<String>,
}

impl RollbackRecord {
    /// The record on `old`, if it carries one.
    pub fn on(old: &Configuration) -> Option<RollbackRecord> {
        let l = &old.labels;
        let num = |k: &str| l.get(k).and_then(|v| v.parse::<i64>().ok());
        Some(RollbackRecord {
            new: l.get(LABEL_ROLLED_BACK)?.clone().into(),
            wave: num(LABEL_ROLLED_BACK_WAVE).unwrap_or(0).max(0) as usize,
            at: num(LABEL_ROLLED_BACK_AT).map(|n| n.max(0) as u64),
            failed: num(LABEL_ROLLED_BACK_FAILED).unwrap_or(0),
            targeted: num(LABEL_ROLLED_BACK_TARGETED).unwrap_or(0),
            failure: num(LABEL_ROLLED_BACK_FAILURE_PPM).unwrap_or(0) as f64 / 1e6,
            failing_devices: l
                .get(LABEL_ROLLED_BACK_DEVICES)
                .map(|v| v.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
                .unwrap_or_default(),
        })
    }

    /// The labels that record it on O.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = [
            (LABEL_ROLLED_BACK, self.new.to_string()),
            (LABEL_ROLLED_BACK_WAVE, self.wave.to_string()),
            (LABEL_ROLLED_BACK_FAILED, self.failed.to_string()),
            (LABEL_ROLLED_BACK_TARGETED, self.targeted.to_string()),
            (LABEL_ROLLED_BACK_FAILURE_PPM, ((self.failure * 1e6).round() as i64).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(at) = self.at {
            out.insert(LABEL_ROLLED_BACK_AT.into(), at.to_string());
        }
        // Device ids may hold characters no source says a label value accepts: the sample
        // is only written when every id is plain.
        let plain = |id: &String| id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !self.failing_devices.is_empty() && self.failing_devices.iter().all(plain) {
            out.insert(LABEL_ROLLED_BACK_DEVICES.into(), self.failing_devices.join(","));
        }
        out
    }
}

/// What the next apply does for one deployment with a `rollout`.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// No rollout applies: nothing on the hub to roll from, the declared content is
    /// already there, or leftovers the ordinary classification cleans up.
    Ordinary,
    /// Create N at O's priority with the first wave's target; O untouched (a record of an
    /// earlier rollback on O is cleared; `--restart-rollout` also deletes an unfinished N).
    Start {
        old: DeploymentId,
        new: DeploymentId,
        #[serde(skip_serializing_if = "Option::is_none")]
        replaces: Option<DeploymentId>,
        clear_record: bool,
    },
    /// Leave the hub alone.
    Wait {
        old: DeploymentId,
        new: DeploymentId,
        wave: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<WaveMetrics>,
        why: WaitReason,
    },
    /// Widen N's target to wave `to`.
    Promote { old: DeploymentId, new: DeploymentId, from: usize, to: usize, metrics: WaveMetrics },
    /// The last wave met the promote rule: delete O, N takes the declared fields.
    Complete { old: DeploymentId, new: DeploymentId, wave: usize, metrics: WaveMetrics },
    /// More than the rollback share failed: record it on O, delete N.
    RollBack {
        old: DeploymentId,
        new: DeploymentId,
        wave: usize,
        metrics: WaveMetrics,
        failure: f64,
        /// An earlier apply already wrote the record on O (and stopped before deleting N).
        recorded: bool,
    },
    /// The declared content changed while another new deployment is still rolling out.
    Refuse { old: DeploymentId, unfinished: DeploymentId, declared: DeploymentId, wave: usize },
    /// This content was rolled back; it stays so until `--restart-rollout` or new content.
    RolledBack { old: DeploymentId, record: RollbackRecord },
    /// N is in progress but O, which it replaces, was deleted outside fleetform: apply
    /// refuses (13) until `--restart-rollout` gives the deployment its whole target at once.
    OldGone { old: DeploymentId, new: DeploymentId, wave: usize },
}

impl Decision {
    /// Whether the next apply writes anything for it.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Decision::Start { .. } | Decision::Promote { .. } | Decision::Complete { .. } | Decision::RollBack { .. }
        )
    }
}

/// The inputs of [`decide`] for one deployment.
pub struct Inputs<'a> {
    /// The declared content's id.
    pub declared: &'a DeploymentId,
    pub rollout: &'a Rollout,
    /// The managed configurations on the hub with the deployment's name.
    pub on_hub: Vec<&'a Configuration>,
    /// Unix seconds.
    pub now: u64,
    /// `--restart-rollout`.
    pub restart: bool,
    /// How often the hub recomputes system metrics, in seconds ([`METRICS_INTERVAL_SECS`]).
    pub metrics_interval: u64,
}

/// IoT Hub runs an automatic configuration, and its metric queries, shortly after it is
/// created and then every five minutes (docs/hub-semantics.md#system-metrics): counts read
/// sooner after a widening may still describe the narrower target.
pub const METRICS_INTERVAL_SECS: u64 = 300;

/// The next transition of one deployment's rollout.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let rolling: Vec<&Configuration> = i.on_hub.iter().copied().filter(|c| c.labels.contains_key(LABEL_FROM)).collect();
    if let Some(n) = (!rolling.is_empty()).then(|| super::actions::newest(&rolling)) {
        let Some(o) =
            i.on_hub.iter().copied().find(|c| Some(c.id.as_str()) == n.labels.get(LABEL_FROM).map(|s| s.as_str()))
        else {
            let wave = n.labels.get(LABEL_WAVE).and_then(|w| w.parse::<usize>().ok());
            // A completion updates N (dropping these labels) before it deletes O, so N still
            // naming a missing O means O was deleted outside fleetform: the devices of the
            // waves not yet reached lost this deployment. Widening N at once is the repair,
            // but it skips the waves, so a person says so (fail closed). At the last wave N
            // already targets all of T and nothing was lost: the ordinary update finishes.
            if i.restart || wave.is_some_and(|w| w + 1 >= i.rollout.waves.len()) {
                return Ordinary;
            }
            return Decision::OldGone {
                old: n.labels.get(LABEL_FROM).cloned().unwrap_or_default().into(),
                new: n.id.clone(),
                wave: wave.unwrap_or(0),
            };
        };
        let wave = n.labels.get(LABEL_WAVE).and_then(|w| w.parse::<usize>().ok());
        if &n.id != i.declared {
            if !i.restart {
                return Decision::Refuse {
                    old: o.id.clone(),
                    unfinished: n.id.clone(),
                    declared: i.declared.clone(),
                    wave: wave.unwrap_or(0),
                };
            }
            if &o.id == i.declared {
                // Back to the old content: deleting N is the whole restart.
                return Ordinary;
            }
            return Decision::Start {
                old: o.id.clone(),
                new: i.declared.clone(),
                replaces: Some(n.id.clone()),
                clear_record: RollbackRecord::on(o).is_some(),
            };
        }
        let (old, new) = (o.id.clone(), n.id.clone());
        let metrics = WaveMetrics::of(n);
        if RollbackRecord::on(o).is_some_and(|r| r.new == n.id) {
            let record = RollbackRecord::on(o).unwrap_or_else(|| unreachable!());
            let metrics = metrics.unwrap_or(WaveMetrics {
                targeted: record.targeted,
                reported_failed: record.failed,
                ..Default::default()
            });
            return Decision::RollBack {
                old,
                new,
                wave: record.wave,
                metrics,
                failure: record.failure,
                recorded: true,
            };
        }
        let wait = |wave: usize, metrics: Option<WaveMetrics>, why: WaitReason| Decision::Wait {
            old: old.clone(),
            new: new.clone(),
            wave,
            metrics,
            why,
        };
        let waves = i.rollout.waves.len();
        let Some(wave) = wave.filter(|w| *w < waves) else {
            let problem = format!(
                "label {LABEL_WAVE}={:?} on {new} is not a wave of this rollout (it has {waves}); fix the label or apply with --restart-rollout",
                n.labels.get(LABEL_WAVE).map(String::as_str).unwrap_or("")
            );
            return wait(0, metrics, WaitReason::BadLabels { problem });
        };
        let Some(m) = metrics else { return wait(wave, None, WaitReason::NoMetrics) };
        // Failure beats success: a wave that meets both rules is rolled back.
        if let Some(rule) = &i.rollout.rollback
            && m.targeted > 0
            && WaveMetrics::share(m.reported_failed, m.targeted) > rule.failure
        {
            return Decision::RollBack { old, new, wave, metrics: m, failure: rule.failure, recorded: false };
        }
        let Some(started) = n.labels.get(LABEL_WAVE_STARTED).and_then(|s| s.parse::<u64>().ok()) else {
            let problem = format!(
                "label {LABEL_WAVE_STARTED} on {new} is not Unix seconds; fix the label or apply with --restart-rollout"
            );
            return wait(wave, Some(m), WaitReason::BadLabels { problem });
        };
        // Failures counted before a recompute are still N's failures (rolled back above);
        // successes and targeted counts may be the previous wave's, so nothing else is
        // decided on them until the hub has run the metric queries again.
        // The label is whole seconds, so the widening happened up to a second after it: a
        // read counts as recomputed only once more than a whole interval has passed.
        let recomputed = started.saturating_add(i.metrics_interval);
        if i.metrics_interval > 0 && i.now <= recomputed {
            let why = WaitReason::MetricsNotRecomputed {
                remaining_secs: (recomputed - i.now).saturating_add(1),
                interval_secs: i.metrics_interval,
            };
            return wait(wave, Some(m), why);
        }
        let promote = &i.rollout.promote;
        if m.targeted < 0 || (m.targeted as u64) < promote.min_devices {
            return wait(
                wave,
                Some(m),
                WaitReason::TooFewDevices { targeted: m.targeted, min_devices: promote.min_devices },
            );
        }
        // A wave that targets no device (min-devices=0) has nothing to wait for.
        if m.targeted > 0 && WaveMetrics::share(m.reported_successful, m.targeted) < promote.success {
            let why = WaitReason::BelowSuccess {
                successful: m.reported_successful,
                targeted: m.targeted,
                success: promote.success,
            };
            return wait(wave, Some(m), why);
        }
        let ends = started.saturating_add(promote.soak.as_secs());
        if i.now < ends {
            return wait(wave, Some(m), WaitReason::Soaking { remaining_secs: ends - i.now });
        }
        return if wave + 1 < waves {
            Decision::Promote { old, new, from: wave, to: wave + 1, metrics: m }
        } else {
            Decision::Complete { old, new, wave, metrics: m }
        };
    }
    if i.on_hub.iter().any(|c| &c.id == i.declared) {
        return Ordinary;
    }
    // Nothing to roll from, or several old copies (an interrupted replace): the ordinary
    // classification creates, or replaces and cleans up.
    let [o] = i.on_hub[..] else { return Ordinary };
    match RollbackRecord::on(o) {
        Some(record) if &record.new == i.declared && !i.restart => Decision::RolledBack { old: o.id.clone(), record },
        record => Decision::Start {
            old: o.id.clone(),
            new: i.declared.clone(),
            replaces: None,
            clear_record: record.is_some(),
        },
    }
}

use Decision::Ordinary;

/// Why a step of a rollout is written (the steps' `reason`).
pub const REASON_START: &str = "rollout start";
pub const REASON_RESTART: &str = "rollout restart";
pub const REASON_PROMOTE: &str = "rollout promote";
pub const REASON_COMPLETE: &str = "rollout complete";
pub const REASON_RECORD: &str = "rollback record";
pub const REASON_ROLLBACK: &str = "rollback";
pub const REASON_CLEAR_RECORD: &str = "clear rollback record";

/// One write of a rollout's transition, before [`super::steps`] orders it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedWrite {
    pub op: StepOp,
    pub id: DeploymentId,
    pub priority: Priority,
    pub etag: Option<Etag>,
    pub reason: &'static str,
}

/// Where a wave stands relative to the hub and this apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WaveStatus {
    /// Out and promoted past.
    Done,
    /// The wave the new deployment covers through on the hub now.
    Current,
    /// The wave this apply widens the new deployment to.
    Next,
    Pending,
}

/// Devices that move together in one wave: same stack before, same after.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WaveCohort {
    pub count: u64,
    /// Up to 5 device ids, smallest first.
    pub samples: Vec<String>,
    pub stack_before: StackIds,
    pub stack_after: StackIds,
}

/// One wave of a rollout, as the merge engine evaluates it over the fleet.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WavePlan {
    pub index: usize,
    pub name: String,
    /// The wave's own condition (`None` for the last wave: the rest of the target).
    pub condition: Option<String>,
    /// The new deployment's target condition while this wave is out.
    pub target: String,
    /// IoT Edge devices that target matches: what the hub will report as `targetedCount`.
    pub targeted: u64,
    /// Devices whose stack changes when this wave goes out.
    pub moves: u64,
    pub samples: Vec<String>,
    pub cohorts: Vec<WaveCohort>,
    pub status: WaveStatus,
}

/// The rules a rollout is decided by, as declared.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RolloutRules {
    pub success: f64,
    pub min_devices: u64,
    pub soak_secs: u64,
    /// `None`: a failing wave waits.
    pub rollback_failure: Option<f64>,
}

/// One deployment's rollout in a plan: what the next apply does and the whole wave plan.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RolloutPlan {
    /// The deployment's name.
    pub name: String,
    /// `standard` or `layered`.
    pub kind: String,
    pub next: Decision,
    pub rules: RolloutRules,
    /// Empty when the decision names no old deployment to roll from.
    pub waves: Vec<WavePlan>,
    /// Devices that go back to the old deployment if the rollout is rolled back after
    /// this apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_moves: Option<u64>,
    /// The declared target `T` and priority, before the plan gave the new deployment its
    /// wave's target and the old deployment's priority.
    #[serde(skip)]
    target: String,
    #[serde(skip)]
    declared_priority: Priority,
    /// The declared content's id, which a refused or rolled-back decision does not write.
    #[serde(skip)]
    declared: DeploymentId,
}

impl RolloutPlan {
    /// The (old, new) pair whose tie is intended, and an unfinished new one a restart deletes.
    pub fn pair(&self) -> Option<(DeploymentId, DeploymentId, Option<DeploymentId>)> {
        match &self.next {
            Decision::Start { old, new, replaces, .. } => Some((old.clone(), new.clone(), replaces.clone())),
            Decision::Wait { old, new, .. }
            | Decision::Promote { old, new, .. }
            | Decision::Complete { old, new, .. }
            | Decision::RollBack { old, new, .. } => Some((old.clone(), new.clone(), None)),
            Decision::Refuse { old, unfinished, .. } => Some((old.clone(), unfinished.clone(), None)),
            Decision::Ordinary | Decision::RolledBack { .. } | Decision::OldGone { .. } => None,
        }
    }
}

/// What [`plan_rollouts`] changed.
#[derive(Default)]
pub struct Adjusted {
    pub rollouts: Vec<RolloutPlan>,
    /// Old deployments rewritten in place (a rollback record written or cleared): the
    /// configuration apply sends, not declared in any file.
    pub extra: Vec<Rendered>,
}

fn hub_ref(c: &Configuration) -> HubRef {
    HubRef { id: c.id.clone(), etag: c.etag.clone(), priority: c.priority, kind: c.kind() }
}

/// O as apply rewrites it: its labels changed, its content the hub's own.
fn rewritten(o: &Configuration, labels: BTreeMap<String, String>) -> Rendered {
    let mut configuration = o.clone();
    configuration.labels = labels;
    configuration.system_metrics = None;
    Rendered {
        hash: o.labels.get(LABEL_HASH).cloned().unwrap_or_default(),
        configuration,
        sensitive: Vec::new(),
        adopt: None,
        written_metrics: BTreeMap::new(),
        rollout: None,
    }
}

fn in_progress_labels(labels: &mut BTreeMap<String, String>, old: &DeploymentId, wave: usize, now: u64) {
    labels.insert(LABEL_FROM.into(), old.to_string());
    labels.insert(LABEL_WAVE.into(), wave.to_string());
    labels.insert(LABEL_WAVE_STARTED.into(), now.to_string());
    labels.insert(LABEL_STATE.into(), STATE_IN_PROGRESS.into());
}

/// Decides every declared rollout and turns the decisions into the actions' writes:
/// the declared new deployment takes the target, priority and labels of the state it
/// moves to (what create and update send), and old deployments whose labels change are
/// returned in [`Adjusted::extra`].
pub fn plan_rollouts(
    declared: &mut [Rendered],
    current: &[Configuration],
    actions: &mut [Action],
    now: u64,
    restart: bool,
    metrics_interval: u64,
    fleet: &dyn FleetRead,
) -> Result<Adjusted, ReadError> {
    let mut out = Adjusted::default();
    for r in declared.iter_mut() {
        let Some(rollout) = r.rollout.clone() else { continue };
        let target = r.configuration.target_condition.clone();
        if target.trim().is_empty() {
            continue;
        }
        let Some(name) = r.configuration.labels.get(LABEL_NAME).cloned() else { continue };
        let on_hub = named(current, &name);
        let decision = decide(&Inputs {
            declared: &r.configuration.id,
            rollout: &rollout,
            on_hub: on_hub.clone(),
            now,
            restart,
            metrics_interval,
        });
        if decision == Ordinary {
            continue;
        }
        let by_id = |id: &DeploymentId| on_hub.iter().copied().find(|c| &c.id == id);
        let declared_priority = r.configuration.priority;
        let mut writes = Vec::new();
        let mut field_changes = Vec::new();
        let mut after = Some(r.configuration.id.clone());
        let write = |op, c: &Configuration, priority, reason| PlannedWrite {
            op,
            id: c.id.clone(),
            priority,
            etag: if op == StepOp::Create { None } else { c.etag.clone() },
            reason,
        };
        match &decision {
            Decision::Start { old, replaces, clear_record, .. } => {
                let Some(o) = by_id(old) else { continue };
                r.configuration.priority = o.priority;
                r.configuration.target_condition = rollout.wave_target(&target, 0);
                in_progress_labels(&mut r.configuration.labels, old, 0, now);
                writes.push(write(StepOp::Create, &r.configuration, o.priority, REASON_START));
                if let Some(n) = replaces.as_ref().and_then(by_id) {
                    writes.push(write(StepOp::Delete, n, n.priority, REASON_RESTART));
                }
                if *clear_record {
                    let mut labels = o.labels.clone();
                    labels.retain(|k, _| !RECORD_LABELS.contains(&k.as_str()));
                    out.extra.push(rewritten(o, labels));
                    writes.push(write(StepOp::Update, o, o.priority, REASON_CLEAR_RECORD));
                }
            }
            Decision::Wait { new, .. } => {
                if let Some(n) = by_id(new) {
                    r.configuration.priority = n.priority;
                    r.configuration.target_condition = n.target_condition.clone();
                    r.configuration.labels = n.labels.clone();
                }
            }
            Decision::Promote { old, new, to, .. } => {
                let Some(n) = by_id(new) else { continue };
                r.configuration.priority = n.priority;
                r.configuration.target_condition = rollout.wave_target(&target, *to);
                in_progress_labels(&mut r.configuration.labels, old, *to, now);
                field_changes = super::actions::field_changes(n, &r.configuration);
                field_changes.retain(|f| f.field != format!("labels.{LABEL_WAVE_STARTED}"));
                writes.push(write(StepOp::Update, n, n.priority, REASON_PROMOTE));
            }
            Decision::Complete { old, new, .. } => {
                let (Some(o), Some(n)) = (by_id(old), by_id(new)) else { continue };
                field_changes = super::actions::field_changes(n, &r.configuration);
                writes.push(write(StepOp::Update, n, declared_priority, REASON_COMPLETE));
                writes.push(write(StepOp::Delete, o, o.priority, REASON_COMPLETE));
            }
            Decision::RollBack { old, new, wave, metrics, failure, recorded } => {
                let (Some(o), Some(n)) = (by_id(old), by_id(new)) else { continue };
                if !recorded {
                    let record = RollbackRecord {
                        new: new.clone(),
                        wave: *wave,
                        at: Some(now),
                        failed: metrics.reported_failed,
                        targeted: metrics.targeted,
                        failure: *failure,
                        failing_devices: failing_devices(fleet, new)?,
                    };
                    let mut labels = o.labels.clone();
                    labels.extend(record.labels());
                    out.extra.push(rewritten(o, labels));
                    writes.push(write(StepOp::Update, o, o.priority, REASON_RECORD));
                }
                writes.push(write(StepOp::Delete, n, n.priority, REASON_ROLLBACK));
                after = Some(old.clone());
            }
            Decision::Refuse { unfinished, .. } => after = Some(unfinished.clone()),
            Decision::OldGone { new, .. } => after = Some(new.clone()),
            Decision::RolledBack { old, .. } => after = Some(old.clone()),
            Decision::Ordinary => {}
        }
        if let Some(a) = actions.iter_mut().find(|a| a.name == name && a.action != ActionKind::Unmanaged) {
            a.action = ActionKind::Rollout;
            a.before = on_hub.iter().map(|c| hub_ref(c)).collect();
            a.after = after;
            a.priority = r.configuration.priority;
            a.field_changes = field_changes;
            a.writes = writes;
        }
        out.rollouts.push(RolloutPlan {
            name,
            kind: r.configuration.kind().word().to_string(),
            next: decision,
            rules: RolloutRules {
                success: rollout.promote.success,
                min_devices: rollout.promote.min_devices,
                soak_secs: rollout.promote.soak.as_secs(),
                rollback_failure: rollout.rollback.as_ref().map(|rb| rb.failure),
            },
            waves: Vec::new(),
            rollback_moves: None,
            target,
            declared_priority,
            declared: r.configuration.id.clone(),
        });
    }
    Ok(out)
}

/// Up to [`FAILED_SAMPLE`] devices whose `$edgeAgent` reports failing at deployment
/// `new` (the rows `reportedFailedCount` counts, docs/hub-semantics.md#system-metrics),
/// for the rollback record: once N is deleted, no twin names them any more.
pub fn failing_devices(fleet: &dyn FleetRead, new: &str) -> Result<Vec<String>, ReadError> {
    let found = std::sync::Mutex::new(std::collections::BTreeSet::new());
    fleet.module_batches(&|batch| {
        for agent in &batch {
            let failing = || -> Option<String> {
                if agent.get("moduleId")?.as_str()? != "$edgeAgent" {
                    return None;
                }
                if agent.get("configurations")?.get(new)?.get("status")?.as_str()? != "Applied" {
                    return None;
                }
                let reported = agent.pointer("/properties/reported")?;
                if reported.get("lastDesiredVersion")? != agent.pointer("/properties/desired/$version")? {
                    return None;
                }
                let code = reported.get("lastDesiredStatus")?.get("code")?.as_i64()?;
                (code != 200).then(|| agent.get("deviceId")?.as_str().map(String::from)).flatten()
            };
            if let Some(id) = failing() {
                found.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
            }
        }
        Ok(())
    })?;
    Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().take(FAILED_SAMPLE).collect())
}

/// How many failing devices a rollback record names.
pub const FAILED_SAMPLE: usize = 5;

/// A state of the rollout that breaks one of its invariants (docs/rollouts.md "Invariants").
#[derive(Clone, Debug, PartialEq)]
pub struct Broken {
    pub name: String,
    pub state: String,
    pub rule: Invariant,
    pub devices: DeviceSample,
}

/// Which invariant of the scheme a state breaks for a device. Declared in the order they
/// are reported: the first broken one is the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// (1) It ran a standard deployment before the rollout and runs none.
    NoStandard,
    /// (2) It ran the old deployment and the waves so far reach it, but it does not run the
    /// new one (the new one loses the tie it must win).
    NotMoved,
    /// (2) It ran the old deployment and the waves so far do not reach it, but it does not
    /// run the old one any more, or it runs the new one.
    MovedEarly,
    /// (3) A deployment other than the rollout's own applies differently: a layered one
    /// (standard rollouts) or the standard one (layered rollouts).
    OthersChanged,
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invariant::NoStandard => "would leave them without a standard deployment",
            Invariant::NotMoved => "would leave on the old content devices the waves so far reach",
            Invariant::MovedEarly => "would move off the old content devices no wave so far reaches",
            Invariant::OthersChanged => "would change which other deployments apply on them",
        })
    }
}

/// The invariants (2) and (3) for one device in a wave state, from its stack before the
/// rollout and in the state: `in_waves` says whether the new deployment's target in that
/// state matches it. They concern the devices the old deployment reached; invariant (1) is
/// checked over every device and state by the caller.
pub fn wave_state_breaks(
    before: &Stack,
    state: &Stack,
    old: &DeploymentId,
    new: &DeploymentId,
    in_waves: bool,
    kind: ConfigurationKind,
) -> Option<Invariant> {
    let runs = |s: &Stack, id: &DeploymentId| s.standard.as_ref() == Some(id) || s.layered.contains(id);
    // Devices O did not reach are the declared change's (a wider target, say), not the
    // scheme's: their stacks change as an ordinary update would change them.
    if !runs(before, old) {
        return None;
    }
    if in_waves && !runs(state, new) {
        return Some(Invariant::NotMoved);
    }
    // Layered: O stays on every device of T until the rollout completes (the merge engine
    // applies both equal-priority layered deployments, docs/rollouts.md).
    let keeps_old = !in_waves || kind == ConfigurationKind::Layered;
    if !in_waves && runs(state, new) || keeps_old && !runs(state, old) {
        return Some(Invariant::MovedEarly);
    }
    let others_changed = match kind {
        ConfigurationKind::Standard => {
            let others =
                |s: &Stack| s.layered.iter().filter(|id| *id != old && *id != new).cloned().collect::<Vec<_>>();
            others(before) != others(state)
        }
        ConfigurationKind::Layered => before.standard != state.standard,
        // Not an IoT Edge deployment: never rolled out.
        ConfigurationKind::DeviceManagement => false,
    };
    others_changed.then_some(Invariant::OthersChanged)
}

/// Evaluates every state of each rollout (before it, each wave, complete) per device with
/// the merge engine: the devices each wave moves, and the invariant that no device that
/// runs a standard deployment before the rollout is left without one in any state, and
/// that every device of the target runs one once it completes.
pub fn evaluate_waves(
    rollouts: &mut [RolloutPlan],
    current: &[Configuration],
    declared: &[Rendered],
    fleet: &dyn FleetRead,
) -> Result<Vec<Broken>, super::PlanError> {
    let mut broken = Vec::new();
    for plan in rollouts.iter_mut() {
        let Some((old, new, _)) = plan.pair() else { continue };
        if matches!(plan.next, Decision::Refuse { .. }) {
            continue;
        }
        let (Some(o), Some(r)) =
            (current.iter().find(|c| c.id == old), declared.iter().find(|r| r.configuration.id == new))
        else {
            continue;
        };
        let Some(rollout) = r.rollout.as_ref() else { continue };
        let existing = |c: &Configuration| match MergeDeployment::existing(c) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(super::PlanError::BadHubConfiguration {
                id: c.id.to_string(),
                problem: "no IoT Edge content".into(),
            }),
            Err(e) => Err(super::PlanError::BadHubConfiguration { id: c.id.to_string(), problem: e.to_string() }),
        };
        let mut universe = DeploymentState::default();
        let name = plan.name.as_str();
        for c in current.iter().filter(|c| c.is_edge() && c.labels.get(LABEL_NAME).map(String::as_str) != Some(name)) {
            universe.deployments.push(existing(c)?);
            universe.targets.push(c.target_condition.clone());
        }
        let base: Vec<u32> = (0..universe.len() as u32).collect();
        let o_index = universe.len() as u32;
        universe.deployments.push(existing(o)?);
        universe.targets.push(o.target_condition.clone());
        // N is newer than O: as it is on the hub, or created by this apply.
        let created = match current.iter().find(|c| c.id == new) {
            Some(n) => existing(n)?.created,
            None => CreatedAt::Pending(0),
        };
        let Some(mut n) = MergeDeployment::from_configuration(&r.configuration, created) else { continue };
        let waves = rollout.waves.len();
        let first_n = universe.len() as u32;
        for k in 0..waves {
            n.priority = o.priority;
            universe.deployments.push(n.clone());
            universe.targets.push(rollout.wave_target(&plan.target, k));
        }
        n.priority = plan.declared_priority;
        let final_index = universe.len() as u32;
        universe.deployments.push(n);
        universe.targets.push(plan.target.clone());

        let mut states: Vec<(String, Vec<u32>)> = vec![("before the rollout".into(), [&base[..], &[o_index]].concat())];
        for (k, w) in rollout.waves.iter().enumerate() {
            states.push((format!("wave {} ({})", k + 1, w.name), [&base[..], &[o_index, first_n + k as u32]].concat()));
        }
        states.push(("the completed rollout".into(), [&base[..], &[final_index]].concat()));
        let state_deployments: Vec<Vec<MergeDeployment>> = states
            .iter()
            .map(|(_, idx)| idx.iter().map(|&i| universe.deployments[i as usize].clone()).collect())
            .collect();

        let none = AlsoRead { paths: Vec::new(), visit: &|_| {}, running_before: false };
        let fold = super::impact::fold_devices(&universe, &DeploymentState::default(), fleet, &none)?;
        let current_wave = match &plan.next {
            Decision::Start { .. } => Some(0),
            Decision::Wait { wave, .. } => Some(*wave),
            Decision::Promote { to, .. } => Some(*to),
            _ => None,
        };
        let hub_wave = match &plan.next {
            Decision::Wait { wave, .. } | Decision::Complete { wave, .. } | Decision::RollBack { wave, .. } => {
                Some(*wave)
            }
            Decision::Promote { from, .. } => Some(*from),
            _ => None,
        };
        let mut moved: Vec<BTreeMap<(StackIds, StackIds), DeviceSample>> = vec![BTreeMap::new(); waves];
        let mut targeted = vec![0u64; waves];
        let mut back = 0u64;
        let mut lost: BTreeMap<(Invariant, usize), DeviceSample> = BTreeMap::new();
        let kind = r.configuration.kind();
        for pair in &fold.pairs {
            let stacks: Vec<Stack> = states
                .iter()
                .zip(&state_deployments)
                .map(|((_, idx), ds)| {
                    let m = MatchSet::from_indices(
                        idx.iter().enumerate().filter(|(_, i)| pair.before.contains(**i)).map(|(j, _)| j as u32),
                    );
                    merge::stack(ds, &m)
                })
                .collect();
            let had = stacks[0].standard.is_some();
            for (s, stack) in stacks.iter().enumerate().skip(1) {
                let in_t = pair.before.contains(final_index) && kind == ConfigurationKind::Standard;
                if stack.standard.is_none() && (had || (s == states.len() - 1 && in_t)) {
                    lost.entry((Invariant::NoStandard, s)).or_default().merge(&pair.devices);
                } else if s <= waves {
                    let in_waves = pair.before.contains(first_n + s as u32 - 1);
                    if let Some(rule) = wave_state_breaks(&stacks[0], stack, &old, &new, in_waves, kind) {
                        lost.entry((rule, s)).or_default().merge(&pair.devices);
                    }
                }
            }
            for k in 0..waves {
                if pair.before.contains(first_n + k as u32) {
                    targeted[k] += pair.devices.count;
                }
                let (b, a) = (StackIds::of(&stacks[k]), StackIds::of(&stacks[k + 1]));
                if b != a {
                    moved[k].entry((b, a)).or_default().merge(&pair.devices);
                }
            }
            if let Some(w) = current_wave
                && StackIds::of(&stacks[w + 1]) != StackIds::of(&stacks[0])
            {
                back += pair.devices.count;
            }
        }
        for ((rule, s), devices) in lost {
            broken.push(Broken { name: plan.name.clone(), state: states[s].0.clone(), rule, devices });
        }
        plan.rollback_moves = current_wave.map(|_| back);
        plan.waves = rollout
            .waves
            .iter()
            .enumerate()
            .map(|(k, w)| {
                let mut cohorts: Vec<WaveCohort> = std::mem::take(&mut moved[k])
                    .into_iter()
                    .map(|((stack_before, stack_after), d)| WaveCohort {
                        count: d.count,
                        samples: d.samples,
                        stack_before,
                        stack_after,
                    })
                    .collect();
                cohorts.sort_by(|x, y| y.count.cmp(&x.count).then_with(|| x.samples.cmp(&y.samples)));
                let mut all = DeviceSample::default();
                for c in &cohorts {
                    all.merge(&DeviceSample { count: c.count, samples: c.samples.clone() });
                }
                let status = match (hub_wave, current_wave) {
                    (_, Some(c)) if c == k && hub_wave != Some(k) => WaveStatus::Next,
                    (Some(h), _) if h == k => WaveStatus::Current,
                    (Some(h), _) if k < h => WaveStatus::Done,
                    _ => WaveStatus::Pending,
                };
                WavePlan {
                    index: k,
                    name: w.name.clone(),
                    condition: w.condition.as_ref().map(|q| q.text.clone()),
                    target: rollout.wave_target(&plan.target, k),
                    targeted: targeted[k],
                    moves: all.count,
                    samples: all.samples,
                    cohorts,
                    status,
                }
            })
            .collect();
    }
    Ok(broken)
}

/// W021: waves not yet promoted past that target fewer devices than `min-devices`, where
/// the rollout would wait for a person (the plan's count is what the hub will report).
pub fn small_waves(rollouts: &[RolloutPlan]) -> Vec<Check> {
    let mut out = Vec::new();
    for r in rollouts {
        for w in r.waves.iter().filter(|w| w.status != WaveStatus::Done && w.targeted < r.rules.min_devices) {
            out.push(Check::WaveBelowMinDevices {
                deployment: r.name.clone(),
                wave: w.name.clone(),
                targeted: w.targeted,
                min_devices: r.rules.min_devices,
            });
        }
    }
    out
}

/// Whether `check` is the tie of a rollout's old and new deployment, which the scheme
/// relies on (the newest of equal priority wins): not worth a warning.
pub fn intended_tie(rollouts: &[RolloutPlan], check: &Check) -> bool {
    let pairs: Vec<(DeploymentId, DeploymentId, Option<DeploymentId>)> =
        rollouts.iter().filter_map(RolloutPlan::pair).collect();
    let ours = |ids: &[&str]| {
        pairs.iter().any(|(o, n, r)| {
            ids.iter().all(|id| *id == o.as_str() || *id == n.as_str() || r.as_ref().is_some_and(|r| r.as_str() == *id))
        })
    };
    match check {
        Check::EqualPriorityStandards { winner, losers, .. } => {
            let mut ids: Vec<&str> = losers.iter().map(String::as_str).collect();
            ids.push(winner);
            ours(&ids)
        }
        Check::EqualPriorityLayeredOverlap { winner, loser, .. } => ours(&[winner, loser]),
        Check::StandardWinnerFlips { from, to, .. } => ours(&[from, to]),
        _ => false,
    }
}

/// Whether `check` is about a declared content that this apply does not write because
/// its rollout is refused or was rolled back: "targets no device" would then describe a
/// deployment the hub never gets, not the fleet.
pub fn held_back(rollouts: &[RolloutPlan], check: &Check) -> bool {
    let Check::TargetsNoDevice { deployment } = check else { return false };
    rollouts.iter().any(|r| {
        matches!(r.next, Decision::Refuse { .. } | Decision::RolledBack { .. } | Decision::OldGone { .. })
            && r.declared.as_str() == deployment
    })
}

/// The configurations on the hub that carry `name`'s `fleetform-name`.
pub fn named<'a>(hub: &'a [Configuration], name: &str) -> Vec<&'a Configuration> {
    hub.iter().filter(|c| c.is_edge() && c.labels.get(LABEL_NAME).map(String::as_str) == Some(name)).collect()
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `0.98` as `98%`, `0.025` as `2.5%`.
pub fn percent(share: f64) -> String {
    let p = (share * 1000.0).round() / 10.0;
    if p.fract() == 0.0 { format!("{}%", p as i64) } else { format!("{p}%") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Metrics;
    use crate::spec::{SourceFile, Workspace};

    fn rollout(promote: &str, rollback: &str) -> Rollout {
        let text = format!(
            r#"
deployment "base" {{
    priority 10
    target "tags.env='prod'"
    rollout {{
        wave "canary" "tags.ring='canary'"
        wave "b20" "tags.building='20'"
        wave "fleet"
        {promote}
        {rollback}
    }}
    runtime {{
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }}
}}
"#
        );
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text)]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        ws.deployments[0].rollout.clone().unwrap()
    }

    fn config(id: &str, labels: &[(&str, &str)]) -> Configuration {
        let mut c = Configuration { id: id.into(), ..Default::default() };
        c.labels.insert(LABEL_NAME.into(), "base".into());
        for (k, v) in labels {
            c.labels.insert(k.to_string(), v.to_string());
        }
        c.created_time_utc = Some("2026-01-01T00:00:00Z".into());
        c
    }

    /// N at `wave`, started at t=1000, with the given system metrics.
    fn n_at(wave: usize, m: Option<(i64, i64, i64)>) -> Configuration {
        let w = wave.to_string();
        let mut n = config(
            "base-new",
            &[
                (LABEL_FROM, "base-old"),
                (LABEL_WAVE, &w),
                (LABEL_WAVE_STARTED, "1000"),
                (LABEL_STATE, STATE_IN_PROGRESS),
            ],
        );
        n.created_time_utc = Some("2026-01-02T00:00:00Z".into());
        if let Some((targeted, ok, failed)) = m {
            let results = [
                ("targetedCount", targeted),
                ("appliedCount", targeted),
                ("reportedSuccessfulCount", ok),
                ("reportedFailedCount", failed),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            n.system_metrics = Some(Metrics { results, queries: Default::default() });
        }
        n
    }

    fn decide_with(r: &Rollout, hub: &[Configuration], declared: &str, now: u64, restart: bool) -> Decision {
        let declared: DeploymentId = declared.into();
        decide(&Inputs {
            declared: &declared,
            rollout: r,
            on_hub: hub.iter().collect(),
            now,
            restart,
            metrics_interval: 0,
        })
    }

    const PROMOTE: &str = "promote success=0.98 min-devices=5 soak=\"30m\"";
    const ROLLBACK: &str = "rollback failure=0.05";

    fn at(wave: usize, m: (i64, i64, i64), now: u64) -> Decision {
        let r = rollout(PROMOTE, ROLLBACK);
        decide_with(&r, &[config("base-old", &[]), n_at(wave, Some(m))], "base-new", now, false)
    }

    const SOAKED: u64 = 1000 + 30 * 60;

    #[test]
    fn a_content_change_starts_and_nothing_on_the_hub_is_ordinary() {
        let r = rollout(PROMOTE, ROLLBACK);
        let start = decide_with(&r, &[config("base-old", &[])], "base-new", 0, false);
        assert_eq!(
            start,
            Decision::Start { old: "base-old".into(), new: "base-new".into(), replaces: None, clear_record: false }
        );
        assert_eq!(decide_with(&r, &[], "base-new", 0, false), Ordinary);
        assert_eq!(decide_with(&r, &[config("base-new", &[])], "base-new", 0, false), Ordinary, "already there");
    }

    #[test]
    fn promotes_exactly_at_the_threshold_and_not_one_device_below() {
        // 49 of 50 is 0.98 exactly: promoted. 48 of 50 is 0.96: waits.
        assert!(matches!(at(0, (50, 49, 0), SOAKED), Decision::Promote { from: 0, to: 1, .. }));
        assert_eq!(
            at(0, (50, 48, 1), SOAKED),
            Decision::Wait {
                old: "base-old".into(),
                new: "base-new".into(),
                wave: 0,
                metrics: Some(WaveMetrics { targeted: 50, applied: 50, reported_successful: 48, reported_failed: 1 }),
                why: WaitReason::BelowSuccess { successful: 48, targeted: 50, success: 0.98 },
            }
        );
    }

    #[test]
    fn min_devices_holds_a_small_wave() {
        // 4 of 4 succeed, but the rule wants at least 5 devices in the wave.
        let d = at(0, (4, 4, 0), SOAKED);
        assert!(
            matches!(&d, Decision::Wait { why: WaitReason::TooFewDevices { targeted: 4, min_devices: 5 }, .. }),
            "{d:?}"
        );
        assert!(matches!(at(0, (5, 5, 0), SOAKED), Decision::Promote { .. }));
    }

    #[test]
    fn the_soak_must_have_passed_since_the_wave_started() {
        let d = at(1, (100, 100, 0), SOAKED - 1);
        assert!(matches!(&d, Decision::Wait { wave: 1, why: WaitReason::Soaking { remaining_secs: 1 }, .. }), "{d:?}");
        assert!(matches!(at(1, (100, 100, 0), SOAKED), Decision::Promote { from: 1, to: 2, .. }));
    }

    #[test]
    fn counts_read_before_the_hub_recomputes_them_decide_nothing_but_a_rollback() {
        // Wave 1 went out in second 1000; the hub runs metric queries every 300 s, so up to
        // and including second 1300 the counts may be wave 0's: all successful there, yet
        // they say nothing of wave 1.
        let r = rollout("promote success=0.98 min-devices=0 soak=\"0s\"", ROLLBACK);
        let declared: DeploymentId = "base-new".into();
        let decide_at = |m: (i64, i64, i64), now: u64| {
            let hub = [config("base-old", &[]), n_at(1, Some(m))];
            decide(&Inputs {
                declared: &declared,
                rollout: &r,
                on_hub: hub.iter().collect(),
                now,
                restart: false,
                metrics_interval: METRICS_INTERVAL_SECS,
            })
        };
        assert!(matches!(
            decide_at((10, 10, 0), 1300),
            Decision::Wait { why: WaitReason::MetricsNotRecomputed { remaining_secs: 1, interval_secs: 300 }, .. }
        ));
        assert!(matches!(decide_at((10, 10, 0), 1301), Decision::Promote { from: 1, to: 2, .. }));
        // Failures are the new content's whichever wave they were counted in.
        assert!(matches!(decide_at((10, 4, 6), 1001), Decision::RollBack { wave: 1, .. }));
        let text = WaitReason::MetricsNotRecomputed { remaining_secs: 60, interval_secs: 300 }.to_string();
        assert_eq!(
            text,
            "the hub recomputes metrics every 5m, so its counts may still be the previous wave's: 1m left"
        );
    }

    #[test]
    fn every_invariant_of_a_wave_state_has_its_own_verdict() {
        use ConfigurationKind::{Layered, Standard};
        let (o, n): (DeploymentId, DeploymentId) = ("o".into(), "n".into());
        let s = |standard: Option<&str>, layered: &[&str]| Stack::of_ids(standard, layered);
        let check = |before: &Stack, state: &Stack, in_waves: bool, kind| {
            wave_state_breaks(before, state, &o, &n, in_waves, kind)
        };
        // Standard rollout; the device ran O under layered L before.
        let before = s(Some("o"), &["l"]);
        assert_eq!(check(&before, &s(Some("n"), &["l"]), true, Standard), None, "in the waves, on N");
        assert_eq!(check(&before, &s(Some("o"), &["l"]), false, Standard), None, "outside them, still on O");
        assert_eq!(check(&before, &s(Some("o"), &["l"]), true, Standard), Some(Invariant::NotMoved));
        assert_eq!(check(&before, &s(Some("n"), &["l"]), false, Standard), Some(Invariant::MovedEarly));
        assert_eq!(check(&before, &s(Some("x"), &["l"]), false, Standard), Some(Invariant::MovedEarly), "off O");
        assert_eq!(check(&before, &s(Some("n"), &[]), true, Standard), Some(Invariant::OthersChanged), "L lost");
        assert_eq!(check(&before, &s(Some("n"), &["l", "m"]), true, Standard), Some(Invariant::OthersChanged));
        // A device O never reached is the declared change's, whatever happens to it.
        assert_eq!(check(&s(Some("x"), &[]), &s(Some("n"), &[]), false, Standard), None);
        // Layered rollout over standard B: O stays on every device until the end.
        let before = s(Some("b"), &["o"]);
        assert_eq!(check(&before, &s(Some("b"), &["o", "n"]), true, Layered), None);
        assert_eq!(check(&before, &s(Some("b"), &["n"]), true, Layered), Some(Invariant::MovedEarly), "O dropped");
        assert_eq!(check(&before, &s(Some("c"), &["o", "n"]), true, Layered), Some(Invariant::OthersChanged));
        assert_eq!(check(&before, &s(Some("b"), &["o"]), true, Layered), Some(Invariant::NotMoved));
    }

    #[test]
    fn the_last_wave_completes() {
        assert!(matches!(at(2, (200, 199, 0), SOAKED), Decision::Complete { wave: 2, .. }));
    }

    #[test]
    fn zero_targeted_waits_unless_min_devices_is_zero() {
        assert!(matches!(at(0, (0, 0, 0), SOAKED), Decision::Wait { why: WaitReason::TooFewDevices { .. }, .. }));
        let r = rollout("promote success=0.98 min-devices=0", ROLLBACK);
        let hub = [config("base-old", &[]), n_at(0, Some((0, 0, 0)))];
        assert!(matches!(decide_with(&r, &hub, "base-new", 1000, false), Decision::Promote { to: 1, .. }));
    }

    #[test]
    fn failure_beats_success_and_the_failure_edge_is_exclusive() {
        // 100 targeted, 98 succeed (promote holds) and 6 fail (above 5%): rolled back.
        // The emulator counts a device once, but the rule must not depend on that.
        let d = at(0, (100, 98, 6), SOAKED);
        assert!(
            matches!(&d, Decision::RollBack { wave: 0, failure, recorded: false, .. } if *failure == 0.05),
            "{d:?}"
        );
        // Exactly 5 of 100 is not more than 5%: no rollback (and 95% < 98%: waits).
        assert!(matches!(at(0, (100, 95, 5), SOAKED), Decision::Wait { why: WaitReason::BelowSuccess { .. }, .. }));
        // Failures roll back during the soak too, and below min-devices.
        assert!(matches!(at(0, (3, 0, 1), 0), Decision::RollBack { .. }));
    }

    #[test]
    fn without_a_rollback_rule_a_failing_wave_waits() {
        let r = rollout(PROMOTE, "");
        let hub = [config("base-old", &[]), n_at(0, Some((10, 0, 10)))];
        assert!(matches!(
            decide_with(&r, &hub, "base-new", SOAKED, false),
            Decision::Wait { why: WaitReason::BelowSuccess { successful: 0, .. }, .. }
        ));
    }

    #[test]
    fn a_snapshot_without_metrics_waits() {
        let r = rollout(PROMOTE, ROLLBACK);
        let hub = [config("base-old", &[]), n_at(0, None)];
        assert!(matches!(
            decide_with(&r, &hub, "base-new", SOAKED, false),
            Decision::Wait { why: WaitReason::NoMetrics, metrics: None, .. }
        ));
    }

    #[test]
    fn new_content_mid_rollout_is_refused_unless_restarted() {
        let r = rollout(PROMOTE, ROLLBACK);
        let hub = [config("base-old", &[]), n_at(1, Some((10, 10, 0)))];
        assert_eq!(
            decide_with(&r, &hub, "base-newer", SOAKED, false),
            Decision::Refuse {
                old: "base-old".into(),
                unfinished: "base-new".into(),
                declared: "base-newer".into(),
                wave: 1
            }
        );
        assert_eq!(
            decide_with(&r, &hub, "base-newer", SOAKED, true),
            Decision::Start {
                old: "base-old".into(),
                new: "base-newer".into(),
                replaces: Some("base-new".into()),
                clear_record: false
            }
        );
        // Reverting to O's content and restarting: the ordinary plan deletes N.
        assert_eq!(decide_with(&r, &hub, "base-old", SOAKED, true), Ordinary);
    }

    #[test]
    fn an_old_deployment_deleted_by_hand_mid_rollout_is_refused_unless_restarted() {
        let r = rollout(PROMOTE, ROLLBACK);
        // O (base-old) is gone; N still says it replaces it, at wave 1.
        let hub = [n_at(1, Some((10, 10, 0)))];
        let gone = Decision::OldGone { old: "base-old".into(), new: "base-new".into(), wave: 1 };
        assert_eq!(decide_with(&r, &hub, "base-new", SOAKED, false), gone);
        assert_eq!(decide_with(&r, &hub, "base-newer", SOAKED, false), gone, "new content too");
        assert!(!gone.writes());
        // --restart-rollout: the ordinary update gives the declared content the whole target.
        assert_eq!(decide_with(&r, &hub, "base-new", SOAKED, true), Ordinary);
    }

    #[test]
    fn a_rolled_back_content_stays_rolled_back_and_other_content_starts_again() {
        let r = rollout(PROMOTE, ROLLBACK);
        let record = RollbackRecord {
            new: "base-new".into(),
            wave: 1,
            at: Some(5000),
            failed: 3,
            targeted: 10,
            failure: 0.05,
            failing_devices: vec!["dev-1".into(), "dev-7".into()],
        };
        let mut o = config("base-old", &[]);
        o.labels.extend(record.labels());
        assert_eq!(RollbackRecord::on(&o).as_ref(), Some(&record), "the labels round-trip");
        let hub = [o];
        assert_eq!(
            decide_with(&r, &hub, "base-new", 9999, false),
            Decision::RolledBack { old: "base-old".into(), record: record.clone() }
        );
        let retry =
            Decision::Start { old: "base-old".into(), new: "base-new".into(), replaces: None, clear_record: true };
        assert_eq!(decide_with(&r, &hub, "base-new", 9999, true), retry);
        let other = decide_with(&r, &hub, "base-other", 9999, false);
        assert!(matches!(other, Decision::Start { clear_record: true, .. }), "{other:?}");
    }

    #[test]
    fn a_rollback_stopped_after_its_record_finishes_by_deleting_n() {
        let r = rollout(PROMOTE, ROLLBACK);
        let mut o = config("base-old", &[]);
        let record = RollbackRecord {
            new: "base-new".into(),
            wave: 0,
            at: None,
            failed: 2,
            targeted: 4,
            failure: 0.05,
            failing_devices: vec![],
        };
        o.labels.extend(record.labels());
        let hub = [o, n_at(0, Some((4, 2, 2)))];
        assert!(matches!(decide_with(&r, &hub, "base-new", 0, false), Decision::RollBack { recorded: true, .. }));
    }

    #[test]
    fn unreadable_labels_wait_with_the_reason() {
        let r = rollout(PROMOTE, ROLLBACK);
        let mut n = n_at(0, Some((10, 10, 0)));
        n.labels.insert(LABEL_WAVE.into(), "7".into());
        let d = decide_with(&r, &[config("base-old", &[]), n], "base-new", SOAKED, false);
        let Decision::Wait { why: WaitReason::BadLabels { problem }, .. } = d else { panic!("{d:?}") };
        assert!(problem.contains("it has 3"), "{problem}");
    }

    #[test]
    fn o_gone_at_the_last_wave_is_ordinary() {
        // N already targets the whole of T: deleting O lost no device.
        let r = rollout(PROMOTE, ROLLBACK);
        assert_eq!(decide_with(&r, &[n_at(2, Some((1, 1, 0)))], "base-new", SOAKED, false), Ordinary);
    }

    #[test]
    fn shares_print_as_percentages() {
        assert_eq!((percent(0.98), percent(0.025), percent(1.0)), ("98%".into(), "2.5%".into(), "100%".into()));
    }
}
