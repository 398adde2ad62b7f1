//! `apply --wait` as the user sees it: progress while waiting (bars on a terminal, a line
//! per change in a log) and how the wait ended. The waiting itself is `apply::wait`,
//! which only reports counts.

use std::collections::BTreeMap;
use std::io::Write;

use crate::apply::{WaitOutcome, WaitProgress};

impl WaitProgress {
    /// Why nothing was rolled out, for a deployment [`Self::targets_no_device`] holds for.
    pub fn idle_reason(&self) -> &'static str {
        if self.outranked_everywhere() {
            "applied to no device: every device it targets runs a higher-priority deployment"
        } else {
            "targets no device"
        }
    }

    /// The counts in one line: `targeted 10, applied 6/6, reported ok 6, reported failed 0`.
    pub fn counts(&self) -> String {
        format!(
            "targeted {}, applied {}/{}, reported ok {}, reported failed {}",
            self.targeted, self.applied, self.expected, self.reported_ok, self.reported_failed
        )
    }
}

impl WaitOutcome {
    /// How the wait ended, in one paragraph.
    pub fn message(&self) -> String {
        match self {
            WaitOutcome::Succeeded { deployments } => {
                format!(
                    "Rollout complete: {} deployment{} applied and reported successful.",
                    deployments.len(),
                    if deployments.len() == 1 { "" } else { "s" }
                )
            }
            WaitOutcome::Failed { deployment, failed_devices } => {
                let mut out = format!(
                    "Rollout failed: deployment {} has devices reporting failure ({}).",
                    deployment.id,
                    deployment.counts()
                );
                if !failed_devices.is_empty() {
                    out.push_str(&format!("\nFailing devices (first {}):", failed_devices.len()));
                    for f in failed_devices {
                        let why = if f.description.is_empty() { String::new() } else { format!(": {}", f.description) };
                        out.push_str(&format!("\n  {} reports {}{why}", f.device_id, f.code));
                    }
                    out.push_str("\n`fleetform explain DEVICE` shows what one of them should run; `fleetform status` lists them again.");
                }
                out
            }
            WaitOutcome::TimedOut { deployments } => {
                let pending: Vec<String> = deployments
                    .iter()
                    .filter(|p| !p.finished())
                    .map(|p| format!("{} ({})", p.id, p.counts()))
                    .collect();
                format!("Rollout timed out; still waiting for: {}.", pending.join("; "))
            }
            WaitOutcome::TargetsNoDevice { deployments, idle } => {
                let rolled = deployments.len() - idle.len();
                let lines: Vec<String> = deployments
                    .iter()
                    .filter(|p| idle.contains(&p.id))
                    .map(|p| format!("  {}: {} ({}); nothing was rolled out", p.id, p.idle_reason(), p.counts()))
                    .collect();
                let outranked = deployments.iter().filter(|p| idle.contains(&p.id) && p.outranked_everywhere()).count();
                let verb = match (outranked, idle.len()) {
                    (0, 1) => "targets no device",
                    (0, _) => "target no device",
                    (1, 1) => "is applied to no device",
                    _ => "are applied to no device",
                };
                format!(
                    "Rollout incomplete: {rolled} deployment{} applied and reported successful; {} {verb}:\n{}",
                    if rolled == 1 { "" } else { "s" },
                    idle.len(),
                    lines.join("\n")
                )
            }
            WaitOutcome::Interrupted { .. } => "Waiting interrupted; the rollout goes on on the hub.".to_string(),
            WaitOutcome::NoMetrics => {
                "--wait: a snapshot directory has no devices reporting metrics; nothing to wait for.".to_string()
            }
        }
    }
}

/// Shows wait progress on stderr: one progress bar per deployment on a terminal, a plain
/// line per deployment whenever its counts change otherwise (CI logs).
pub struct ProgressDisplay {
    bars: Option<(indicatif::MultiProgress, BTreeMap<String, indicatif::ProgressBar>)>,
    last: BTreeMap<String, WaitProgress>,
}

impl ProgressDisplay {
    pub fn new(terminal: bool) -> Self {
        ProgressDisplay {
            bars: terminal.then(|| (indicatif::MultiProgress::new(), BTreeMap::new())),
            last: BTreeMap::new(),
        }
    }

    pub fn show(&mut self, progress: &[WaitProgress]) {
        match &mut self.bars {
            Some((multi, bars)) => {
                for p in progress {
                    let bar = bars.entry(p.id.to_string()).or_insert_with(|| {
                        let style = indicatif::ProgressStyle::with_template("{prefix:40} [{bar:30}] {pos}/{len} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                            .progress_chars("=> ");
                        multi.add(indicatif::ProgressBar::new(0).with_style(style).with_prefix(p.id.to_string()))
                    });
                    bar.set_length(u64::try_from(p.expected.max(1)).unwrap_or(1));
                    bar.set_position(u64::try_from(p.reported_ok.max(0)).unwrap_or(0));
                    bar.set_message(format!(
                        "targeted {} applied {} ok {} failed {}",
                        p.targeted, p.applied, p.reported_ok, p.reported_failed
                    ));
                }
            }
            None => {
                let mut err = std::io::stderr().lock();
                for p in progress {
                    if self.last.get(p.id.as_str()) != Some(p) {
                        let _ = writeln!(err, "waiting: {}: {}", p.id, p.counts());
                        self.last.insert(p.id.to_string(), p.clone());
                    }
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.values() {
                bar.abandon();
            }
        }
    }
}
