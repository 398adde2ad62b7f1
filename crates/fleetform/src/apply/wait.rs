//! `apply --wait`: polls the system metrics of what apply wrote until every deployment
//! is applied and reported successful, a device reports failure, or time runs out.
//! What the user reads of it (progress, how it ended) is in `render::progress`.

use crate::model::DeploymentId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::status::{FAILED_SAMPLE, FailedDevice};
use crate::hub::{Configuration, Hub, HubError};

/// `apply --wait` exit code: written, but a deployment targets no device.
pub const EXIT_TARGETS_NO_DEVICE: u8 = 3;

#[derive(Clone, Debug)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between polls.
    pub interval: Duration,
    /// Devices each id should end up applied to, when the plan knows (a standard
    /// deployment outranked on some devices is targeted there but never applied). Ids
    /// missing here must be applied on every targeted device.
    pub expected_applied: BTreeMap<String, u64>,
}

impl WaitOptions {
    /// Polls every [`Self::DEFAULT_INTERVAL`]; set `interval` to poll otherwise.
    pub fn new(timeout: Duration, expected_applied: BTreeMap<String, u64>) -> Self {
        WaitOptions { timeout, interval: Self::DEFAULT_INTERVAL, expected_applied }
    }

    /// Often enough to see a rollout move, rarely enough not to be throttled.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
}

/// One deployment's rollout, from its system metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WaitProgress {
    pub id: DeploymentId,
    pub targeted: i64,
    pub applied: i64,
    /// Devices that should end up applied.
    pub expected: i64,
    pub reported_ok: i64,
    pub reported_failed: i64,
}

impl WaitProgress {
    pub fn of(c: &Configuration, expected: Option<u64>) -> Self {
        let get = |k: &str| c.system_metrics.as_ref().and_then(|m| m.results.get(k).copied()).unwrap_or(0);
        let targeted = get("targetedCount");
        WaitProgress {
            id: c.id.clone(),
            targeted,
            applied: get("appliedCount"),
            expected: expected.map_or(targeted, |e| i64::try_from(e).unwrap_or(i64::MAX)),
            reported_ok: get("reportedSuccessfulCount"),
            reported_failed: get("reportedFailedCount"),
        }
    }

    pub fn finished(&self) -> bool {
        self.applied >= self.expected && self.reported_ok == self.applied && self.reported_failed == 0
    }

    /// Expected on no device and applied to none: "finished" only vacuously, so never
    /// reported as rolled out. Either its target matches no device, or every device it
    /// targets runs a higher-priority deployment ([`Self::outranked_everywhere`]).
    pub fn targets_no_device(&self) -> bool {
        self.expected == 0 && self.applied == 0
    }

    /// Targeted, but expected on no device: every device it targets runs a deployment
    /// that outranks it, so nothing of it is ever rolled out.
    pub fn outranked_everywhere(&self) -> bool {
        self.targets_no_device() && self.targeted > 0
    }
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum WaitOutcome {
    Succeeded {
        deployments: Vec<WaitProgress>,
    },
    /// Devices reported failure for this deployment.
    Failed {
        deployment: WaitProgress,
        /// Up to [`FAILED_SAMPLE`] of them (smallest ids first) with the agent's
        /// `lastDesiredStatus`, from the `$edgeAgent` module twins, as `status` lists
        /// them; empty when the hub serves no module twins.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        failed_devices: Vec<FailedDevice>,
    },
    TimedOut {
        deployments: Vec<WaitProgress>,
    },
    /// Everything that targets devices rolled out, but these deployments (`idle`, by id)
    /// are applied to no device (their target matches none, or every device they target
    /// runs a higher-priority deployment): nothing was rolled out for them. Exit 3, so that a pipeline
    /// notices a target condition that matches nothing (a typo, a tag not set yet).
    TargetsNoDevice {
        deployments: Vec<WaitProgress>,
        idle: Vec<DeploymentId>,
    },
    Interrupted {
        deployments: Vec<WaitProgress>,
    },
    /// The hub has no live metrics (a snapshot directory): nothing to wait for.
    NoMetrics,
}

impl WaitOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, WaitOutcome::Succeeded { .. } | WaitOutcome::NoMetrics)
    }

    /// The exit code `apply --wait` ends with when the writes themselves succeeded.
    pub fn exit_code(&self) -> u8 {
        match self {
            WaitOutcome::Succeeded { .. } | WaitOutcome::NoMetrics => 0,
            WaitOutcome::TargetsNoDevice { .. } => EXIT_TARGETS_NO_DEVICE,
            WaitOutcome::Interrupted { .. } => 130,
            WaitOutcome::Failed { .. } | WaitOutcome::TimedOut { .. } => 1,
        }
    }
}

/// Polls `ids` until they finish, one fails, `options.timeout` passes or `interrupt`
/// is set. `on_poll` sees the counts after every poll.
pub fn wait(
    hub: &dyn Hub,
    ids: &[DeploymentId],
    options: &WaitOptions,
    interrupt: &AtomicBool,
    on_poll: &mut dyn FnMut(&[WaitProgress]),
) -> Result<WaitOutcome, HubError> {
    if !hub.live_metrics() {
        return Ok(WaitOutcome::NoMetrics);
    }
    let started = Instant::now();
    loop {
        let mut now = Vec::with_capacity(ids.len());
        for id in ids {
            let c = hub.configuration(id)?;
            now.push(WaitProgress::of(&c, options.expected_applied.get(id.as_str()).copied()));
        }
        on_poll(&now);
        if let Some(failed) = now.iter().find(|p| p.reported_failed > 0) {
            let failed_devices = failed_sample(hub, &failed.id)?;
            return Ok(WaitOutcome::Failed { deployment: failed.clone(), failed_devices });
        }
        if now.iter().all(WaitProgress::finished) {
            let idle: Vec<DeploymentId> = now.iter().filter(|p| p.targets_no_device()).map(|p| p.id.clone()).collect();
            if idle.is_empty() {
                return Ok(WaitOutcome::Succeeded { deployments: now });
            }
            return Ok(WaitOutcome::TargetsNoDevice { deployments: now, idle });
        }
        if started.elapsed() >= options.timeout {
            return Ok(WaitOutcome::TimedOut { deployments: now });
        }
        // Sleep in small slices so Ctrl-C is answered promptly.
        let until = Instant::now() + options.interval.min(options.timeout.saturating_sub(started.elapsed()));
        while Instant::now() < until {
            if interrupt.load(Ordering::SeqCst) {
                return Ok(WaitOutcome::Interrupted { deployments: now });
            }
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// The failing devices of deployment `id`: one pass over the module twins, only once a
/// count says some device failed (a count alone names no device to look at).
fn failed_sample(hub: &dyn Hub, id: &DeploymentId) -> Result<Vec<FailedDevice>, HubError> {
    let found = std::sync::Mutex::new(Vec::<FailedDevice>::new());
    hub.module_batches(&|batch| {
        let mut local: Vec<FailedDevice> =
            batch.iter().filter_map(|agent| FailedDevice::of(agent, id.as_str())).collect();
        let mut all = found.lock().unwrap_or_else(|e| e.into_inner());
        all.append(&mut local);
        // The smallest ids, whatever order the batches came in.
        all.sort();
        all.truncate(FAILED_SAMPLE);
        Ok(())
    })?;
    Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HubRead, HubWrite};
    use crate::model::Metrics;

    fn with_metrics(t: i64, a: i64, ok: i64, failed: i64) -> Configuration {
        let results = [
            ("targetedCount", t),
            ("appliedCount", a),
            ("reportedSuccessfulCount", ok),
            ("reportedFailedCount", failed),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Configuration {
            id: "d-1".into(),
            system_metrics: Some(Metrics { results, queries: Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn finished_means_applied_where_expected_and_all_reported_ok() {
        assert!(WaitProgress::of(&with_metrics(10, 10, 10, 0), None).finished());
        assert!(!WaitProgress::of(&with_metrics(10, 10, 9, 0), None).finished());
        assert!(!WaitProgress::of(&with_metrics(10, 6, 6, 0), None).finished());
        // Outranked on 4 of 10 devices: 6 applied is all there will be.
        assert!(WaitProgress::of(&with_metrics(10, 6, 6, 0), Some(6)).finished());
        assert!(!WaitProgress::of(&with_metrics(10, 6, 5, 1), Some(6)).finished());
        assert_eq!(WaitProgress::of(&Configuration::default(), None), WaitProgress::default());
    }

    #[test]
    fn outranked_on_every_targeted_device_is_not_rolled_out() {
        // Targets 8 devices, all of which run a higher-priority deployment.
        let outranked = WaitProgress::of(&with_metrics(8, 0, 0, 0), Some(0));
        assert!(outranked.finished(), "nothing more will happen");
        assert!(outranked.targets_no_device() && outranked.outranked_everywhere());
        assert!(outranked.idle_reason().contains("every device it targets runs a higher-priority deployment"));
        let unmatched = WaitProgress::of(&with_metrics(0, 0, 0, 0), None);
        assert!(unmatched.targets_no_device() && !unmatched.outranked_everywhere());
        // Applied somewhere: rolled out.
        assert!(!WaitProgress::of(&with_metrics(8, 2, 2, 0), Some(2)).targets_no_device());
        let outcome = WaitOutcome::TargetsNoDevice { deployments: vec![outranked.clone()], idle: vec!["d-1".into()] };
        assert_eq!(outcome.exit_code(), EXIT_TARGETS_NO_DEVICE);
        assert!(outcome.message().contains("0 deployments applied and reported successful; 1 is applied to no device"));
    }

    /// A hub whose every configuration has the given system metrics.
    struct Metered(Vec<Configuration>);

    impl HubRead for Metered {
        fn describe(&self) -> String {
            "metered".into()
        }

        fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
            Ok(self.0.clone())
        }

        fn device_batches(
            &self,
            _: crate::hub::Projection,
            _: &(dyn Fn(Vec<crate::hub::Twin>) -> Result<(), HubError> + Sync),
        ) -> Result<(), HubError> {
            Ok(())
        }

        fn module_batches(
            &self,
            _: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
        ) -> Result<(), HubError> {
            Ok(())
        }

        fn live_metrics(&self) -> bool {
            true
        }
    }

    impl HubWrite for Metered {
        fn create_configuration(&self, c: &Configuration) -> Result<Configuration, HubError> {
            Ok(c.clone())
        }

        fn update_configuration(&self, c: &Configuration, _: &crate::model::Etag) -> Result<Configuration, HubError> {
            Ok(c.clone())
        }

        fn delete_configuration(&self, _: &str, _: &crate::model::IfMatch) -> Result<(), HubError> {
            Ok(())
        }
    }

    #[test]
    fn a_deployment_that_targets_no_device_is_not_rolled_out() {
        let mut idle = with_metrics(0, 0, 0, 0);
        idle.id = "canary".into();
        let hub = Metered(vec![with_metrics(10, 10, 10, 0), idle]);
        let options = WaitOptions {
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(1),
            expected_applied: BTreeMap::new(),
        };
        let out = wait(&hub, &["d-1".into(), "canary".into()], &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert!(
            matches!(&out, WaitOutcome::TargetsNoDevice { idle, .. } if idle == &["canary".to_string()]),
            "{out:?}"
        );
        assert!(!out.succeeded());
        assert_eq!(out.exit_code(), 3);
        let text = out.message();
        assert!(
            text.starts_with("Rollout incomplete: 1 deployment applied and reported successful; 1 targets no device"),
            "{text}"
        );
        assert!(text.contains("canary: targets no device (targeted 0, applied 0/0"), "{text}");
        assert!(!text.contains("Rollout complete"), "{text}");
        // With every deployment targeting devices it is the plain success it was.
        let out = wait(&hub, &["d-1".into()], &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert!(out.succeeded() && out.exit_code() == 0, "{out:?}");
    }

    #[test]
    fn a_snapshot_has_no_metrics_to_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        std::fs::write(dir.path().join("devices.json"), "[]").unwrap();
        let hub = crate::hub::SnapshotHub::open(dir.path()).unwrap();
        let options = WaitOptions::new(Duration::from_secs(1), BTreeMap::new());
        let out = wait(&hub, &["x".into()], &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(out, WaitOutcome::NoMetrics);
        assert!(out.succeeded() && out.message().contains("nothing to wait for"));
    }
}
