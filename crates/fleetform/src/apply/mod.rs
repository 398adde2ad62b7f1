//! `fleetform apply`: carries out a plan's steps against a hub, in the plan's order,
//! each write guarded by the etag the plan saw, and reports exactly what was done and
//! what remains when it stops early.
//!
//! A rerun after any interruption converges: a create whose id already holds the same
//! content (same `fleetform-hash`) counts as done, as does an update the hub already
//! holds and a delete of a configuration that is gone. The id embeds the content hash, so
//! "same id, same hash label" really is the same deployment, never a collision.

pub mod stale;
pub mod status;
pub mod wait;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::hub::{Configuration, Hub, HubError, IfMatch};
use crate::manifest::{LABEL_COMMIT, LABEL_HASH, Rendered};
use crate::model::DeploymentId;
use crate::plan::{Step, StepOp, actions::field_changes};

pub use stale::{Staleness, check_saved, load_plan_file, unjustified_steps};
pub use status::{
    DeploymentStatus, FailedDevice, RolloutStatus, StatusReport, compare_with_head, sample_failed_devices, status,
};
pub use wait::{WaitOptions, WaitOutcome, WaitProgress, wait};

/// Why apply could not start or load its input.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error("cannot read the plan file {path}: {message}")]
    #[diagnostic(code(fleetform::apply::plan_file))]
    PlanFile { path: String, message: String },

    #[error("{path} is not a complete fleetform plan file: {message}")]
    #[diagnostic(
        code(fleetform::apply::plan_file),
        help(
            "a file starting with `{{` is read as a plan saved by `fleetform plan --out FILE` (a KDL file never starts with `{{`); make the plan again, or pass the deployment files"
        )
    )]
    NotAPlanFile { path: String, message: String },

    #[error("refusing the saved plan {path}: {reason}")]
    #[diagnostic(
        code(fleetform::apply::altered_plan),
        help(
            "nothing was changed. Apply with the FLEETFORM_HASH_KEY the plan was made with, or make the plan again with `fleetform plan --out FILE` and review it"
        )
    )]
    PlanMac { path: String, reason: String },

    #[error("the saved plan {path} carries a MAC, but FLEETFORM_HASH_KEY is not set to check it")]
    #[diagnostic(
        code(fleetform::apply::plan_key),
        help("set FLEETFORM_HASH_KEY to the key the plan was made with; nothing was changed")
    )]
    PlanNeedsKey { path: String },

    #[error("{path} is a fleetform plan of format version {found}; this fleetform reads version {supported}")]
    #[diagnostic(code(fleetform::apply::plan_version), help("make the plan again with this fleetform"))]
    PlanVersion { path: String, found: u32, supported: u32 },

    #[error("the saved plan is stale: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    #[diagnostic(
        code(fleetform::apply::stale_plan),
        help(
            "the hub or the deployment files changed since the plan was made; run `fleetform plan --out FILE` again and review it"
        )
    )]
    Stale { problems: Vec<Staleness> },

    #[error("the saved plan asks for what planning now would not do: {}", .problems.join("; "))]
    #[diagnostic(
        code(fleetform::apply::altered_plan),
        help(
            "a saved plan can only carry out steps that `fleetform plan` derives from the same files and hub (with `--prune` only if the plan was made with it); nothing was changed. Make the plan again with `fleetform plan --out FILE` instead of editing it"
        )
    )]
    Altered { problems: Vec<String> },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] HubError),

    #[error("{0}")]
    #[diagnostic(code(fleetform::apply::duration))]
    BadDuration(String),
}

/// How one step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Written now.
    Done,
    /// The hub already held the result (an earlier, interrupted or concurrent run).
    AlreadyDone,
    Failed,
    /// Not attempted: an earlier step failed or the run was interrupted.
    NotRun,
}

/// One step and how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub status: StepStatus,
    /// The error, for a failed step; what was found, for an already-done one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a run ended before its last step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Stop {
    /// A step failed with an error that retrying cannot fix.
    Failed { step: usize },
    /// Ctrl-C: the run stopped after the step in progress.
    Interrupted,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub results: Vec<StepResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
}

impl ApplyReport {
    pub fn completed(&self) -> bool {
        self.stopped.is_none()
    }

    /// Steps written now or found already done.
    pub fn done(&self) -> impl Iterator<Item = &StepResult> {
        self.results.iter().filter(|r| matches!(r.status, StepStatus::Done | StepStatus::AlreadyDone))
    }

    /// Steps that still have to happen (the failed one included).
    pub fn remaining(&self) -> impl Iterator<Item = &StepResult> {
        self.results.iter().filter(|r| matches!(r.status, StepStatus::Failed | StepStatus::NotRun))
    }

    /// Ids created or updated (for `--wait`), in step order.
    pub fn written_ids(&self) -> Vec<DeploymentId> {
        let mut ids: Vec<DeploymentId> = Vec::new();
        for r in self.done().filter(|r| r.step.op != StepOp::Delete) {
            if !ids.contains(&r.step.id) {
                ids.push(r.step.id.clone());
            }
        }
        ids
    }
}

/// How [`execute`] runs.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Written as the `fleetform-commit` label on every created or updated configuration.
    pub commit: Option<String>,
}

/// Runs `steps` in order against `hub`. Creates and updates write the declared
/// configuration with that id from `declared` (secrets resolved). `interrupt` is checked
/// before every step: once set, the run stops and the rest is reported as not run.
/// `on_step` sees every step as it ends (for progress output and tests).
pub fn execute(
    hub: &dyn Hub,
    steps: &[Step],
    declared: &[Rendered],
    options: &ApplyOptions,
    interrupt: &AtomicBool,
    on_step: &mut dyn FnMut(&StepResult),
) -> ApplyReport {
    let mut results = Vec::with_capacity(steps.len());
    let mut stopped = None;
    for step in steps {
        if stopped.is_some() {
            results.push(StepResult { step: step.clone(), status: StepStatus::NotRun, message: None });
            continue;
        }
        if interrupt.load(Ordering::SeqCst) {
            stopped = Some(Stop::Interrupted);
            results.push(StepResult { step: step.clone(), status: StepStatus::NotRun, message: None });
            continue;
        }
        let result = match run_step(hub, step, declared, options) {
            Ok((status, message)) => StepResult { step: step.clone(), status, message },
            Err(e) => {
                stopped = Some(Stop::Failed { step: step.number });
                StepResult { step: step.clone(), status: StepStatus::Failed, message: Some(e.to_string()) }
            }
        };
        on_step(&result);
        results.push(result);
    }
    ApplyReport { results, stopped }
}

/// Why one step could not be carried out: the hub refused it, or what the step would write
/// is no longer what the plan reviewed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StepError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] HubError),

    #[error("step {step}: no declared deployment renders to id {id} any more; plan again")]
    NoLongerDeclared { step: usize, id: String },

    /// The id carries the hash of the reviewed content; anything else is refused.
    #[error("step {step}: the content rendered for {id} does not hash to its fleetform-hash label")]
    HashMismatch { step: usize, id: String },

    #[error("step {step}: the content of {id} on the hub is no longer what {name} declares; plan again")]
    ContentChanged { step: usize, id: String, name: String },

    #[error("step {step}: the plan has no etag for {id}")]
    NoEtag { step: usize, id: String },
}

/// The configuration to write for `id`, with the commit label set.
fn to_write(step: &Step, declared: &[Rendered], options: &ApplyOptions) -> Result<Configuration, StepError> {
    let r = declared
        .iter()
        .find(|r| r.configuration.id == step.id)
        .ok_or_else(|| StepError::NoLongerDeclared { step: step.number, id: step.id.to_string() })?;
    // The id carries the hash of the content the plan reviewed: refuse anything else.
    if r.configuration.labels.get(LABEL_HASH) != Some(&r.hash) {
        return Err(StepError::HashMismatch { step: step.number, id: step.id.to_string() });
    }
    let mut config = r.configuration.clone();
    // A rollback record on the old deployment changes its labels, not its content: it
    // still holds the content of the commit it was applied from.
    let record = [crate::plan::rollout::REASON_RECORD, crate::plan::rollout::REASON_CLEAR_RECORD]
        .contains(&step.reason.as_str());
    if let Some(commit) = options.commit.as_ref().filter(|_| !record) {
        config.labels.insert(LABEL_COMMIT.to_string(), commit.clone());
    }
    Ok(config)
}

/// The body of an in-place update: the hub's stored content byte for byte, with the
/// declared mutable fields. Content is immutable on the hub, and an adopted configuration
/// may spell the same content differently (createOptions chunking or key order), so
/// sending fleetform's rendering would be refused with 400. The plan only chose `update`
/// because the two contents are equivalent; if the hub's content is no longer equivalent
/// (changed since the plan), the update is refused rather than written over.
fn update_body(hub: &dyn Hub, step: &Step, mut declared: Configuration) -> Result<Configuration, StepError> {
    let current = hub.configuration(&step.id)?;
    if !crate::manifest::same_content(&current.content, &declared.content) {
        return Err(StepError::ContentChanged { step: step.number, id: step.id.to_string(), name: step.name.clone() });
    }
    declared.content = current.content;
    Ok(declared)
}

fn run_step(
    hub: &dyn Hub,
    step: &Step,
    declared: &[Rendered],
    options: &ApplyOptions,
) -> Result<(StepStatus, Option<String>), StepError> {
    match step.op {
        StepOp::Create => {
            let config = to_write(step, declared, options)?;
            match hub.create_configuration(&config) {
                Ok(_) => Ok((StepStatus::Done, None)),
                Err(HubError::AlreadyExists { id }) => {
                    let existing = hub.configuration(&id)?;
                    let want = config.labels.get(LABEL_HASH);
                    if want.is_some() && existing.labels.get(LABEL_HASH) == want {
                        Ok((StepStatus::AlreadyDone, Some("already on the hub with the same content".into())))
                    } else {
                        Err(HubError::AlreadyExists { id }.into())
                    }
                }
                Err(e) => Err(e.into()),
            }
        }
        StepOp::Update => {
            let etag =
                step.etag.as_ref().ok_or_else(|| StepError::NoEtag { step: step.number, id: step.id.to_string() })?;
            let config = update_body(hub, step, to_write(step, declared, options)?)?;
            match hub.update_configuration(&config, etag) {
                Ok(_) => Ok((StepStatus::Done, None)),
                Err(HubError::PreconditionFailed { id }) => {
                    // Someone changed it since the plan; if they wrote exactly what we
                    // would have (a concurrent apply of the same files), that is done.
                    let existing = hub.configuration(&id)?;
                    if field_changes(&existing, &config).is_empty() {
                        Ok((StepStatus::AlreadyDone, Some("the hub already holds this update".into())))
                    } else {
                        Err(HubError::PreconditionFailed { id }.into())
                    }
                }
                Err(e) => Err(e.into()),
            }
        }
        StepOp::Delete => {
            let etag =
                step.etag.as_ref().ok_or_else(|| StepError::NoEtag { step: step.number, id: step.id.to_string() })?;
            match hub.delete_configuration(&step.id, &IfMatch::Etag(etag.clone())) {
                Ok(()) => Ok((StepStatus::Done, None)),
                Err(HubError::NotFound { .. }) => Ok((StepStatus::AlreadyDone, Some("already deleted".into()))),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Parses a duration such as `90s`, `10m`, `1h30m` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, ApplyError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| ApplyError::BadDuration(format!("\"{text}\" is not a duration ({e}); write e.g. 30s, 10m or 1h")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SnapshotHub;
    use crate::hub::{HubRead, HubWrite};
    use crate::manifest::{MapEnv, SecretMode, render};
    use crate::model::{Etag, Priority};
    use crate::spec::{SourceFile, Workspace};

    fn rendered(text: &str) -> Vec<Rendered> {
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text.to_string())]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        let env = MapEnv(Default::default());
        ws.deployments.iter().map(|d| render(d, &env, SecretMode::Reveal).unwrap()).collect()
    }

    const TWO: &str = r#"
deployment "base" {
    priority 10
    target "tags.env='prod'"
    runtime {
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
}
layered "extra" {
    priority 20
    target "tags.env='prod'"
    module "X" image="x:1.0"
}
"#;

    fn empty_hub() -> (tempfile::TempDir, SnapshotHub) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        std::fs::write(dir.path().join("devices.json"), "[]").unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        (dir, hub)
    }

    fn plan_steps(declared: &[Rendered], hub: &dyn Hub) -> Vec<Step> {
        let current = hub.configurations().unwrap();
        crate::plan::plan(declared.to_vec(), current, &crate::hub::Fleet(hub), &Default::default()).unwrap().steps
    }

    #[test]
    fn creates_then_converges_and_stamps_the_commit() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let steps = plan_steps(&declared, &hub);
        assert_eq!(steps.len(), 2);
        let options = ApplyOptions { commit: Some("abc123".into()) };
        let mut seen = Vec::new();
        let report =
            execute(&hub, &steps, &declared, &options, &AtomicBool::new(false), &mut |r| seen.push(r.step.number));
        assert!(report.completed(), "{}", report.summary_text());
        assert_eq!(seen, [1, 2]);
        let configs = hub.configurations().unwrap();
        assert_eq!(configs.len(), 2);
        assert!(configs.iter().all(|c| c.labels.get(LABEL_COMMIT).map(String::as_str) == Some("abc123")));
        assert!(plan_steps(&declared, &hub).is_empty());
        assert_eq!(report.summary_text(), "Apply complete: 2 created, 0 updated, 0 deleted.\n");
    }

    #[test]
    fn a_rerun_of_the_same_steps_counts_them_as_done() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let steps = plan_steps(&declared, &hub);
        let no = AtomicBool::new(false);
        execute(&hub, &steps, &declared, &ApplyOptions::default(), &no, &mut |_| {});
        let again = execute(&hub, &steps, &declared, &ApplyOptions::default(), &no, &mut |_| {});
        assert!(again.completed());
        assert!(again.results.iter().all(|r| r.status == StepStatus::AlreadyDone));
        assert_eq!(
            again.summary_text(),
            "Apply complete: 0 created, 0 updated, 0 deleted, 2 already done on the hub.\n"
        );
        assert_eq!(hub.configurations().unwrap().len(), 2);
    }

    #[test]
    fn a_create_over_different_content_fails_and_reports_the_rest() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let steps = plan_steps(&declared, &hub);
        let mut squatter = declared[1].configuration.clone();
        squatter.id = steps[0].id.clone();
        squatter.labels.insert(LABEL_HASH.into(), "0000".into());
        hub.create_configuration(&squatter).unwrap();
        let report = execute(&hub, &steps, &declared, &ApplyOptions::default(), &AtomicBool::new(false), &mut |_| {});
        assert_eq!(report.stopped, Some(Stop::Failed { step: 1 }));
        assert_eq!(report.results[1].status, StepStatus::NotRun);
        let text = report.summary_text();
        assert!(text.contains("Apply stopped: step 1 failed."), "{text}");
        assert!(text.contains(&format!("Remaining:\n  1. create {}", steps[0].id)), "{text}");
        assert!(text.contains(&format!("  2. create {}", steps[1].id)), "{text}");
    }

    #[test]
    fn an_interrupt_stops_before_the_next_step() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let steps = plan_steps(&declared, &hub);
        let flag = AtomicBool::new(false);
        let report = execute(&hub, &steps, &declared, &ApplyOptions::default(), &flag, &mut |_| {
            flag.store(true, Ordering::SeqCst)
        });
        assert_eq!(report.stopped, Some(Stop::Interrupted));
        assert_eq!(report.done().count(), 1);
        assert_eq!(report.remaining().count(), 1);
        assert_eq!(hub.configurations().unwrap().len(), 1);
    }

    #[test]
    fn deletes_of_vanished_configurations_are_done() {
        let (_dir, hub) = empty_hub();
        let step = Step {
            number: 1,
            op: StepOp::Delete,
            name: "gone".into(),
            id: "gone-1".into(),
            priority: Priority(1),
            etag: Some("\"x\"".parse().unwrap()),
            reason: "delete".into(),
        };
        let report = execute(&hub, &[step], &[], &ApplyOptions::default(), &AtomicBool::new(false), &mut |_| {});
        assert_eq!(report.results[0].status, StepStatus::AlreadyDone);
    }

    #[test]
    fn an_update_over_someone_elses_change_fails_with_412() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let created = hub.create_configuration(&declared[0].configuration).unwrap();
        let etag = created.etag.clone().unwrap();
        // Someone else changes the priority after our plan read the etag.
        let mut theirs = created.clone();
        theirs.priority = Priority(99);
        hub.update_configuration(&theirs, &etag).unwrap();
        let mut ours = declared[0].configuration.clone();
        ours.priority = Priority(11);
        let ours = Rendered { configuration: ours, ..declared[0].clone() };
        let step = Step {
            number: 1,
            op: StepOp::Update,
            name: "base".into(),
            id: created.id.clone(),
            priority: Priority(11),
            etag: Some(etag),
            reason: "update".into(),
        };
        let report = execute(&hub, &[step], &[ours], &ApplyOptions::default(), &AtomicBool::new(false), &mut |_| {});
        assert_eq!(report.stopped, Some(Stop::Failed { step: 1 }));
        assert!(report.results[0].message.as_deref().unwrap().contains("HTTP 412"));
        assert_eq!(hub.configuration(&created.id).unwrap().priority, Priority(99), "their change stays");
    }

    /// A hub that, like IoT Hub, refuses an update whose content differs from what it holds.
    struct ImmutableContent<'a>(&'a SnapshotHub);

    impl HubRead for ImmutableContent<'_> {
        fn describe(&self) -> String {
            self.0.describe()
        }

        fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
            self.0.configurations()
        }

        fn device_batches(
            &self,
            projection: crate::hub::Projection,
            visit: &(dyn Fn(Vec<crate::hub::Twin>) -> Result<(), HubError> + Sync),
        ) -> Result<(), HubError> {
            self.0.device_batches(projection, visit)
        }

        fn module_batches(
            &self,
            visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
        ) -> Result<(), HubError> {
            self.0.module_batches(visit)
        }
    }

    impl HubWrite for ImmutableContent<'_> {
        fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
            self.0.create_configuration(config)
        }

        fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError> {
            if self.0.configuration(&config.id)?.content != config.content {
                return Err(HubError::Http {
                    operation: format!("update {}", config.id),
                    status: 400,
                    code: "BadRequest".into(),
                    message: "Configuration identifier and Content cannot be updated".into(),
                    help: None,
                });
            }
            self.0.update_configuration(config, etag)
        }

        fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError> {
            self.0.delete_configuration(id, if_match)
        }
    }

    /// The hub's copy of `declared[0]`, unmanaged, with its createOptions spelt otherwise.
    fn adoptable(hub: &SnapshotHub, declared: &[Rendered]) -> Configuration {
        let mut theirs = declared[0].configuration.clone();
        theirs.id = "base-from-portal".into();
        theirs.labels.clear();
        let mc = theirs.content.modules_content.as_mut().unwrap();
        let agent = mc.get_mut("$edgeAgent").unwrap();
        let module = agent
            .get_mut("properties.desired")
            .and_then(|d| d.pointer_mut("/modules/M/settings"))
            .and_then(|s| s.as_object_mut())
            .unwrap();
        module.insert("createOptions".into(), serde_json::Value::String("  ".into()));
        hub.create_configuration(&theirs).unwrap()
    }

    #[test]
    fn an_update_keeps_the_hubs_content_and_changes_only_mutable_fields() {
        let (_dir, hub) = empty_hub();
        let mut declared =
            rendered(&TWO.replace("deployment \"base\" {", "deployment \"base\" {\n    adopt \"base-from-portal\""));
        let theirs = adoptable(&hub, &declared);
        declared.truncate(1);
        let steps = plan_steps(&declared, &hub);
        // As the CLI does before it applies: the declared deployment takes the adopted id.
        crate::plan::adopt_ids(&mut declared, &hub.configurations().unwrap());
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!((steps[0].op, steps[0].id.as_str()), (StepOp::Update, "base-from-portal"));
        let strict = ImmutableContent(&hub);
        let options = ApplyOptions { commit: Some("c0ffee".into()) };
        let report = execute(&strict, &steps, &declared, &options, &AtomicBool::new(false), &mut |_| {});
        assert!(report.completed(), "{:?}", report.results[0].message);
        let now = hub.configuration("base-from-portal").unwrap();
        assert_eq!(now.content, theirs.content, "the stored content is sent back unchanged");
        assert_eq!(now.labels.get(LABEL_HASH), Some(&declared[0].hash));
        assert_eq!(now.labels.get(LABEL_COMMIT).map(String::as_str), Some("c0ffee"));
        assert!(plan_steps(&declared, &hub).is_empty(), "converged");
    }

    #[test]
    fn an_update_over_content_that_is_no_longer_equivalent_is_refused() {
        let (_dir, hub) = empty_hub();
        let declared = rendered(TWO);
        let created = hub.create_configuration(&declared[0].configuration).unwrap();
        // The step claims an in-place update, but the declared content now differs.
        let mut changed = declared[0].clone();
        let mc = changed.configuration.content.modules_content.as_mut().unwrap();
        let desired = mc.get_mut("$edgeAgent").unwrap().get_mut("properties.desired").unwrap();
        *desired.pointer_mut("/modules/M/settings/image").unwrap() = serde_json::json!("m:2.0");
        let step = Step {
            number: 1,
            op: StepOp::Update,
            name: "base".into(),
            id: created.id.clone(),
            priority: Priority(10),
            etag: created.etag.clone(),
            reason: "update".into(),
        };
        let report = execute(&hub, &[step], &[changed], &ApplyOptions::default(), &AtomicBool::new(false), &mut |_| {});
        assert_eq!(report.stopped, Some(Stop::Failed { step: 1 }));
        assert!(report.results[0].message.as_deref().unwrap().contains("plan again"), "{:?}", report.results[0]);
        assert_eq!(hub.configuration(&created.id).unwrap(), created, "nothing written");
    }

    const ROLLING: &str = r#"
deployment "base" {
    priority 10
    target "tags.env='prod'"
    rollout {
        wave "canary" "tags.ring='canary'"
        wave "rest"
        promote success=1.0
    }
    runtime {
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
}
"#;

    /// A snapshot hub of prod IoT Edge devices (`(id, ring)`) with [`ROLLING`] (v1) applied.
    fn rolled_v1(devices: &[(&str, Option<&str>)]) -> (tempfile::TempDir, SnapshotHub) {
        let (dir, hub) = empty_hub();
        drop(hub);
        let twins: Vec<serde_json::Value> = devices
            .iter()
            .map(|(id, ring)| {
                let mut tags = serde_json::json!({"env": "prod"});
                if let Some(r) = ring {
                    tags["ring"] = (*r).into();
                }
                serde_json::json!({"deviceId": id, "capabilities": {"iotEdge": true}, "tags": tags})
            })
            .collect();
        std::fs::write(dir.path().join("devices.json"), serde_json::Value::from(twins).to_string()).unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        let old = rendered(ROLLING);
        let no = AtomicBool::new(false);
        let report = execute(&hub, &plan_steps(&old, &hub), &old, &ApplyOptions::default(), &no, &mut |_| {});
        assert!(report.completed(), "{}", report.summary_text());
        (dir, hub)
    }

    #[test]
    fn a_rollout_starts_beside_the_old_deployment_and_waits_without_metrics() {
        let (_dir, hub) = rolled_v1(&[("a", Some("canary")), ("b", None), ("c", None)]);
        let no = AtomicBool::new(false);
        let o = hub.configurations().unwrap()[0].clone();

        let new = rendered(&ROLLING.replace("m:1.0", "m:2.0"));
        let current = hub.configurations().unwrap();
        let plan = crate::plan::plan(new.clone(), current, &crate::hub::Fleet(&hub), &Default::default()).unwrap();
        assert_eq!(plan.steps.len(), 1, "{:?}", plan.steps);
        assert_eq!((plan.steps[0].op, plan.steps[0].reason.as_str()), (StepOp::Create, "rollout start"));
        let waves: Vec<(u64, u64)> = plan.rollouts[0].waves.iter().map(|w| (w.targeted, w.moves)).collect();
        assert_eq!(waves, [(1, 1), (3, 2)], "device a first, then b and c");
        assert!(plan.warnings.iter().all(|w| w.code.to_string() != "W006"), "{:?}", plan.warnings);
        let report = execute(&hub, &plan.steps, &plan.to_write(), &ApplyOptions::default(), &no, &mut |_| {});
        assert!(report.completed(), "{}", report.summary_text());
        let on_hub = hub.configurations().unwrap();
        assert_eq!(on_hub.len(), 2);
        assert_eq!(hub.configuration(&o.id).unwrap(), o, "O is not touched");
        let n = on_hub.iter().find(|c| c.id != o.id).unwrap();
        assert_eq!(n.target_condition, "(tags.env='prod') AND (tags.ring='canary')");
        assert_eq!(n.priority, o.priority);
        assert_eq!(n.labels.get(crate::plan::rollout::LABEL_FROM), Some(&o.id.to_string()));
        assert_eq!(n.labels.get(crate::plan::rollout::LABEL_WAVE).map(String::as_str), Some("0"));

        // A snapshot reports no metrics: the next plan waits and writes nothing.
        let again =
            crate::plan::plan(new, hub.configurations().unwrap(), &crate::hub::Fleet(&hub), &Default::default())
                .unwrap();
        assert!(again.steps.is_empty(), "{:?}", again.steps);
        assert!(matches!(
            again.rollouts[0].next,
            crate::plan::Decision::Wait { why: crate::plan::rollout::WaitReason::NoMetrics, .. }
        ));
    }

    #[test]
    fn a_rollout_that_would_leave_devices_without_a_standard_deployment_is_refused() {
        let (_dir, hub) = rolled_v1(&[("a", Some("canary")), ("b", None)]);
        // The same name as a layered deployment: once O is deleted, nothing is left under it.
        let layered = r#"
layered "base" {
    priority 10
    target "tags.env='prod'"
    rollout {
        wave "canary" "tags.ring='canary'"
        wave "rest"
        promote success=1.0
    }
    module "M" image="m:2.0"
}
"#;
        let current = hub.configurations().unwrap();
        let err =
            crate::plan::plan(rendered(layered), current, &crate::hub::Fleet(&hub), &Default::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(&err, crate::plan::PlanError::RolloutInvariant { count: 2, .. }), "{text}");
        assert!(text.contains("in the completed rollout") && text.contains("a, b"), "{text}");
    }

    #[test]
    fn an_old_deployment_recreated_after_the_new_one_breaks_the_rollout() {
        let (dir, hub) = rolled_v1(&[("a", Some("canary")), ("b", None)]);
        let new = rendered(&ROLLING.replace("m:1.0", "m:2.0"));
        let plan = crate::plan::plan(
            new.clone(),
            hub.configurations().unwrap(),
            &crate::hub::Fleet(&hub),
            &Default::default(),
        )
        .unwrap();
        let no = AtomicBool::new(false);
        let report = execute(&hub, &plan.steps, &plan.to_write(), &ApplyOptions::default(), &no, &mut |_| {});
        assert!(report.completed(), "{}", report.summary_text());
        // O deleted and created again by hand, same id and content: now it is the newer of the
        // two at their priority, so it wins the tie on the canary and N reaches nobody.
        let file = dir.path().join("configurations.json");
        let mut on_hub: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let o = on_hub
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["labels"][crate::plan::rollout::LABEL_FROM].is_null())
            .unwrap();
        o["createdTimeUtc"] = "2099-01-01T00:00:00Z".into();
        std::fs::write(&file, on_hub.to_string()).unwrap();
        drop(hub);
        let hub = SnapshotHub::open(dir.path()).unwrap();
        let err = crate::plan::plan(new, hub.configurations().unwrap(), &crate::hub::Fleet(&hub), &Default::default())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                &err,
                crate::plan::PlanError::RolloutInvariant {
                    rule: crate::plan::rollout::Invariant::NotMoved,
                    count: 1,
                    ..
                }
            ),
            "{text}"
        );
        assert_eq!(
            text,
            "the rollout of base would leave on the old content devices the waves so far reach in wave 1 (canary): 1 device (e.g. a)"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().to_string().contains("is not a duration"));
    }
}
