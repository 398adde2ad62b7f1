//! `fleetform status`: the deployments on a hub as fleetform sees them: managed ones
//! with their name, commit and rollout metrics, and unmanaged IoT Edge ones apart.

use crate::model::DeploymentId;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::hub::{Configuration, Hub, HubError};
use crate::manifest::{LABEL_COMMIT, LABEL_HASH, LABEL_NAME};
use crate::model::{ConfigurationKind, Priority};

/// System metrics of one deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SystemCounts {
    pub targeted: i64,
    pub applied: i64,
    pub reported_successful: i64,
    pub reported_failed: i64,
}

/// One IoT Edge deployment on the hub.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentStatus {
    /// `fleetform-name` for managed deployments, the id otherwise.
    pub name: String,
    pub id: DeploymentId,
    pub kind: ConfigurationKind,
    pub priority: Priority,
    pub target_condition: String,
    /// `fleetform-commit`: the commit the deployment was applied from.
    pub commit: Option<String>,
    /// How that commit relates to the local repository's HEAD, when known: `head`,
    /// `behind-head` (HEAD has moved on) or `not-in-history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_vs_head: Option<&'static str>,
    /// None when the hub reports no metrics (a snapshot directory).
    pub system_metrics: Option<SystemCounts>,
    /// Custom metric results by name.
    pub metrics: BTreeMap<String, i64>,
    /// Up to [`FAILED_SAMPLE`] devices (smallest ids first) whose `$edgeAgent` reports a
    /// failure for this deployment, from the module twins: a count alone names no device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_devices: Vec<FailedDevice>,
    /// A rollout this deployment takes part in (docs/rollouts.md): in progress (on the new
    /// deployment) or rolled back (the record on the old one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// What the rollout labels on a deployment say.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum RolloutStatus {
    /// This is the new deployment N, rolling out over `from`.
    InProgress {
        from: String,
        /// 0-based index of the wave N covers through (`None`: the label is unreadable).
        wave: Option<usize>,
        /// Since the wave started.
        age_secs: Option<u64>,
    },
    /// This is the old deployment O; the new one was rolled back and deleted.
    RolledBack {
        new: String,
        wave: usize,
        failed: i64,
        targeted: i64,
        /// The rule that fired: `rollback failure=<share>`.
        failure: f64,
        failing_devices: Vec<String>,
        /// Since the rollback.
        age_secs: Option<u64>,
    },
}

impl RolloutStatus {
    fn of(c: &Configuration, now: u64) -> Option<RolloutStatus> {
        use crate::plan::rollout::{LABEL_FROM, LABEL_WAVE, LABEL_WAVE_STARTED, RollbackRecord};
        let since = |t: u64| now.checked_sub(t);
        if let Some(from) = c.labels.get(LABEL_FROM) {
            return Some(RolloutStatus::InProgress {
                from: from.clone(),
                wave: c.labels.get(LABEL_WAVE).and_then(|w| w.parse().ok()),
                age_secs: c.labels.get(LABEL_WAVE_STARTED).and_then(|t| t.parse().ok()).and_then(since),
            });
        }
        let r = RollbackRecord::on(c)?;
        Some(RolloutStatus::RolledBack {
            new: r.new.to_string(),
            wave: r.wave,
            failed: r.failed,
            targeted: r.targeted,
            failure: r.failure,
            failing_devices: r.failing_devices,
            age_secs: r.at.and_then(since),
        })
    }
}

/// How many failed devices `status` names per deployment.
pub const FAILED_SAMPLE: usize = 5;

/// A device whose agent applied a deployment and reports failing at it: the rows
/// `reportedFailedCount` counts (docs/hub-semantics.md#system-metrics), with the agent's
/// `lastDesiredStatus`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FailedDevice {
    pub device_id: String,
    pub code: i64,
    pub description: String,
}

impl FailedDevice {
    /// The failure `agent` (an `$edgeAgent` module twin) reports for deployment `id`, if
    /// any: applied, reporting on the desired version it was sent, with a code other than 200.
    pub fn of(agent: &serde_json::Value, id: &str) -> Option<FailedDevice> {
        if agent.get("moduleId")?.as_str()? != "$edgeAgent" {
            return None;
        }
        let status = agent.get("configurations")?.get(id)?.get("status")?.as_str()?;
        if status != "Applied" {
            return None;
        }
        let desired = agent.pointer("/properties/desired/$version")?;
        let reported = agent.pointer("/properties/reported")?;
        if reported.get("lastDesiredVersion")? != desired {
            return None;
        }
        let last = reported.get("lastDesiredStatus")?;
        let code = last.get("code")?.as_i64()?;
        (code != 200).then(|| FailedDevice {
            device_id: agent.get("deviceId").and_then(|d| d.as_str()).unwrap_or_default().to_owned(),
            code,
            description: last.get("description").and_then(|d| d.as_str()).unwrap_or_default().to_owned(),
        })
    }
}

/// Fills in [`DeploymentStatus::failed_devices`] for every managed deployment from one
/// pass over the module twins. A hub that serves no module twins leaves them empty.
pub fn sample_failed_devices(hub: &dyn Hub, report: &mut StatusReport) -> Result<(), HubError> {
    // Reading every module twin costs a pass over the hub: only when a count says some
    // device failed, or there are no counts to say otherwise.
    let may_fail = |d: &DeploymentStatus| d.system_metrics.as_ref().is_none_or(|m| m.reported_failed > 0);
    if !report.managed.iter().any(may_fail) {
        return Ok(());
    }
    let ids: Vec<String> = report.managed.iter().map(|d| d.id.to_string()).collect();
    let found = std::sync::Mutex::new(vec![Vec::<FailedDevice>::new(); ids.len()]);
    hub.module_batches(&|batch| {
        let mut local = vec![Vec::new(); ids.len()];
        for agent in &batch {
            for (i, id) in ids.iter().enumerate() {
                if let Some(f) = FailedDevice::of(agent, id) {
                    local[i].push(f);
                }
            }
        }
        let mut all = found.lock().unwrap_or_else(|e| e.into_inner());
        for (into, mut more) in all.iter_mut().zip(local) {
            into.append(&mut more);
            // The smallest ids, whatever order the batches came in.
            into.sort();
            into.truncate(FAILED_SAMPLE);
        }
        Ok(())
    })?;
    let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    for (d, failed) in report.managed.iter_mut().zip(found) {
        d.failed_devices = failed;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    pub hub: String,
    pub managed: Vec<DeploymentStatus>,
    pub unmanaged: Vec<DeploymentStatus>,
}

impl DeploymentStatus {
    fn of(c: &Configuration, managed: bool) -> Self {
        let system_metrics = c.system_metrics.as_ref().filter(|m| !m.results.is_empty()).map(|m| {
            let get = |k: &str| m.results.get(k).copied().unwrap_or(0);
            SystemCounts {
                targeted: get("targetedCount"),
                applied: get("appliedCount"),
                reported_successful: get("reportedSuccessfulCount"),
                reported_failed: get("reportedFailedCount"),
            }
        });
        DeploymentStatus {
            name: if managed { c.labels.get(LABEL_NAME).cloned().unwrap_or_default() } else { c.id.to_string() },
            id: c.id.clone(),
            kind: c.kind(),
            priority: c.priority,
            target_condition: c.target_condition.clone(),
            commit: c.labels.get(LABEL_COMMIT).cloned(),
            commit_vs_head: None,
            system_metrics,
            metrics: c.metrics.as_ref().map(|m| m.results.clone()).unwrap_or_default(),
            failed_devices: Vec::new(),
            rollout: managed
                .then(|| {
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    RolloutStatus::of(c, now)
                })
                .flatten(),
        }
    }
}

/// Reads every IoT Edge deployment on `hub`; on a hub with live metrics each is read
/// on its own, as the list endpoint need not carry current metrics.
pub fn status(hub: &dyn Hub) -> Result<StatusReport, HubError> {
    let mut managed = Vec::new();
    let mut unmanaged = Vec::new();
    for listed in hub.configurations()?.into_iter().filter(Configuration::is_edge) {
        let c = if hub.live_metrics() {
            match hub.configuration(&listed.id) {
                Ok(c) => c,
                // Deleted between the list and the read: it is no longer there to report.
                Err(HubError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        } else {
            listed
        };
        let is_managed = c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH);
        if is_managed {
            managed.push(DeploymentStatus::of(&c, true));
        } else {
            unmanaged.push(DeploymentStatus::of(&c, false));
        }
    }
    let order = |a: &DeploymentStatus, b: &DeploymentStatus| {
        b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id))
    };
    managed.sort_by(order);
    unmanaged.sort_by(order);
    Ok(StatusReport { hub: hub.describe(), managed, unmanaged })
}

/// Says, for each managed deployment, whether the commit it was applied from is the
/// HEAD of the repository at `repo`, behind it, or not in its history at all. Leaves the
/// report as it is when `repo` is not in a git repository.
pub fn compare_with_head(report: &mut StatusReport, repo: &std::path::Path) {
    let Some(head) = crate::git::head_commit(repo) else { return };
    for d in &mut report.managed {
        let Some(commit) = &d.commit else { continue };
        d.commit_vs_head = Some(if *commit == head {
            "head"
        } else if crate::git::commit_is_ancestor_of_head(repo, commit).unwrap_or(false) {
            "behind-head"
        } else {
            "not-in-history"
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SnapshotHub;
    use crate::render::status::status_text;

    #[test]
    fn the_example_hub_splits_managed_and_unmanaged() {
        let hub =
            SnapshotHub::open(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/campus/hub")))
                .unwrap();
        let report = status(&hub).unwrap();
        assert!(report.managed.iter().any(|d| d.name == "campus-base"));
        assert!(report.unmanaged.iter().any(|d| d.id.starts_with("manual-hotfix")), "{report:?}");
        assert!(report.managed.windows(2).all(|w| w[0].priority >= w[1].priority));
        let mut report = report;
        // Not a repository: nothing to compare.
        compare_with_head(&mut report, &std::env::temp_dir());
        assert!(report.managed.iter().all(|d| d.commit_vs_head.is_none()));
        report.managed[0].commit = Some("0000000000000000000000000000000000000000".into());
        compare_with_head(&mut report, std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
        if crate::git::head_commit(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).is_some() {
            assert_eq!(report.managed[0].commit_vs_head, Some("not-in-history"));
            assert!(status_text(&report).contains("(not in this repository's history)"));
            report.managed[0].commit = None;
            report.managed[0].commit_vs_head = None;
        }
        let text = status_text(&report);
        assert!(text.contains("Unmanaged IoT Edge deployments (1)"), "{text}");
        assert!(text.contains("commit: (not recorded)"));
        assert!(text.contains("devices: (no metrics from this hub)"));
    }
}
