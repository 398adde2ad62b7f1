//! `fleetform status` as text for a terminal or a log.

use std::fmt::Write;

use crate::apply::{DeploymentStatus, RolloutStatus, StatusReport};

fn age(secs: Option<u64>) -> String {
    secs.map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
        .unwrap_or_else(|| "(unknown)".into())
}

fn rollout(out: &mut String, r: &RolloutStatus) {
    match r {
        RolloutStatus::InProgress { from, wave, age_secs } => {
            let wave = wave.map_or("(unreadable wave label)".to_string(), |w| format!("wave {}", w + 1));
            let _ = writeln!(out, "      rollout in progress: replacing {from}, {wave} out for {}", age(*age_secs));
        }
        RolloutStatus::RolledBack { new, wave, failed, targeted, failure, failing_devices, age_secs } => {
            let _ = writeln!(
                out,
                "      rolled back: {new} in wave {}, {} ago: {failed} of {targeted} devices reported failure, rule rollback failure={failure} fired",
                wave + 1,
                age(*age_secs)
            );
            if !failing_devices.is_empty() {
                let _ = writeln!(out, "      failing devices: {}", failing_devices.join(", "));
            }
            let _ = writeln!(
                out,
                "      apply leaves it rolled back: `apply --restart-rollout` retries that content, a new commit starts a new rollout"
            );
        }
    }
}

fn entry(out: &mut String, d: &DeploymentStatus, managed: bool) {
    if managed {
        let _ = writeln!(out, "  {} ({})", d.name, d.id);
    } else {
        let _ = writeln!(out, "  {}", d.id);
    }
    let _ = writeln!(out, "      {}, priority {}, target {}", d.kind, d.priority, d.target_condition);
    if managed {
        let relation = match d.commit_vs_head {
            Some("head") => " (the repository's HEAD)",
            Some("behind-head") => " (HEAD has moved on since)",
            Some(_) => " (not in this repository's history)",
            None => "",
        };
        let _ = writeln!(out, "      commit: {}{relation}", d.commit.as_deref().unwrap_or("(not recorded)"));
    }
    match &d.system_metrics {
        Some(m) => {
            let _ = writeln!(
                out,
                "      devices: {} targeted, {} applied, {} reported ok, {} reported failed",
                m.targeted, m.applied, m.reported_successful, m.reported_failed
            );
        }
        None => {
            let _ = writeln!(out, "      devices: (no metrics from this hub)");
        }
    }
    if let Some(r) = &d.rollout {
        rollout(out, r);
    }
    if !d.failed_devices.is_empty() {
        let _ = writeln!(out, "      failing devices (first {}):", d.failed_devices.len());
        for f in &d.failed_devices {
            let why = if f.description.is_empty() { String::new() } else { format!(": {}", f.description) };
            let _ = writeln!(out, "        {} reports {}{why}", f.device_id, f.code);
        }
    }
    if !d.metrics.is_empty() {
        let parts: Vec<String> = d.metrics.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "      metrics: {}", parts.join(", "));
    }
}

/// The report as text for a terminal or a log.
pub fn status_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Managed deployments on {} ({}):", report.hub, report.managed.len());
    if report.managed.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for d in &report.managed {
        entry(&mut out, d, true);
    }
    let rolling = report.managed.iter().filter(|d| matches!(d.rollout, Some(RolloutStatus::InProgress { .. }))).count();
    if rolling > 0 {
        let _ = writeln!(out, "\nRollouts in progress: {rolling}");
    }
    if !report.unmanaged.is_empty() {
        let _ =
            writeln!(out, "\nUnmanaged IoT Edge deployments ({}), never changed by fleetform:", report.unmanaged.len());
        for d in &report.unmanaged {
            entry(&mut out, d, false);
        }
    }
    out
}
