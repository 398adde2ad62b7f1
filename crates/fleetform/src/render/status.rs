//! `fleetform status` as text for a terminal or a log.

use std::fmt::Write;

use crate::apply::{DeploymentStatus, StatusReport};

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
    if !report.unmanaged.is_empty() {
        let _ =
            writeln!(out, "\nUnmanaged IoT Edge deployments ({}), never changed by fleetform:", report.unmanaged.len());
        for d in &report.unmanaged {
            entry(&mut out, d, false);
        }
    }
    out
}
