//! Rollouts (docs/rollouts.md) as plans, apply and status show them: the next transition
//! in a sentence, the waves with the devices each moves.

use std::fmt::Write;

use super::thousands;
use crate::plan::rollout::{Decision, RolloutPlan, WaveStatus, percent};

fn wave_name(plan: &RolloutPlan, wave: usize) -> String {
    match plan.waves.get(wave) {
        Some(w) => format!("wave {} ({})", wave + 1, w.name),
        None => format!("wave {}", wave + 1),
    }
}

fn metrics_text(m: &crate::plan::rollout::WaveMetrics) -> String {
    format!(
        "targeted {}, applied {}, reported ok {}, reported failed {}",
        m.targeted, m.applied, m.reported_successful, m.reported_failed
    )
}

/// What the next apply does for this rollout, in a sentence.
pub fn decision_text(plan: &RolloutPlan) -> String {
    match &plan.next {
        Decision::Ordinary => "no rollout".to_string(),
        Decision::Start { old, new, replaces, .. } => {
            let restart = replaces
                .as_ref()
                .map(|r| format!(" (--restart-rollout: deletes the unfinished {r})"))
                .unwrap_or_default();
            format!(
                "start: create {new} at the priority of {old}, targeting {}; {old} stays on every other device{restart}",
                wave_name(plan, 0)
            )
        }
        Decision::Wait { wave, metrics, why, .. } => {
            let m = metrics.as_ref().map(|m| format!(" ({})", metrics_text(m))).unwrap_or_default();
            format!("wait in {}: {why}{m}", wave_name(plan, *wave))
        }
        Decision::Promote { from, to, metrics, .. } => format!(
            "promote {} → {}: {} of {} targeted devices report success",
            wave_name(plan, *from),
            wave_name(plan, *to),
            metrics.reported_successful,
            metrics.targeted
        ),
        Decision::Complete { old, new, wave, metrics } => format!(
            "complete: {} met the promote rule ({} of {} report success); delete {old}, {new} takes the declared fields",
            wave_name(plan, *wave),
            metrics.reported_successful,
            metrics.targeted
        ),
        Decision::RollBack { old, new, wave, metrics, failure, .. } => format!(
            "roll back: {} of {} devices of {} report failure, more than rollback failure={} ({}); delete {new}, every device returns to {old}",
            metrics.reported_failed,
            metrics.targeted,
            wave_name(plan, *wave),
            failure,
            percent(*failure)
        ),
        Decision::Refuse { old, unfinished, declared, wave } => format!(
            "refused: the declared content {declared} is new while {unfinished} is still rolling out ({}); apply exits 13 and writes nothing. `apply --restart-rollout` deletes {unfinished} and starts over from {old}",
            wave_name(plan, *wave)
        ),
        Decision::OldGone { old, new, wave } => format!(
            "refused: {old}, which {new} replaces, is gone from the hub (deleted outside fleetform while {} was rolling out): the devices of the later waves run neither; apply exits 13 and writes nothing. `apply --restart-rollout` gives {new} the whole target now, skipping the remaining waves",
            wave_name(plan, *wave)
        ),
        Decision::RolledBack { old, record } => {
            let devices = if record.failing_devices.is_empty() {
                String::new()
            } else {
                format!("; failing: {}", record.failing_devices.join(", "))
            };
            format!(
                "rolled back earlier: {} failed in {} ({} of {} devices reported failure, rule rollback failure={}){devices}; {old} runs everywhere. Apply leaves it so: `apply --restart-rollout` retries this content, a new commit starts a new rollout",
                record.new,
                wave_name(plan, record.wave),
                record.failed,
                record.targeted,
                record.failure
            )
        }
    }
}

fn status_word(s: WaveStatus) -> &'static str {
    match s {
        WaveStatus::Done => "done",
        WaveStatus::Current => "current",
        WaveStatus::Next => "next",
        WaveStatus::Pending => "pending",
    }
}

/// The plan's "Rollouts" section (empty when there is none).
pub fn rollouts_text(rollouts: &[RolloutPlan]) -> String {
    let mut out = String::new();
    for r in rollouts {
        let _ = writeln!(out, "  {} ({})", r.name, r.kind);
        let _ = writeln!(out, "    next: {}", decision_text(r));
        let width = r.waves.iter().map(|w| w.name.chars().count()).max().unwrap_or(0);
        for w in &r.waves {
            let samples = if w.samples.is_empty() {
                String::new()
            } else {
                format!(" ({}{})", w.samples.join(", "), if w.moves as usize > w.samples.len() { ", …" } else { "" })
            };
            let _ = writeln!(
                out,
                "    {}. {:<width$}  targets {}, moves {}{samples}  [{}]  {}",
                w.index + 1,
                w.name,
                thousands(w.targeted),
                thousands(w.moves),
                status_word(w.status),
                w.condition.as_deref().unwrap_or("(the rest of the target)"),
            );
            for c in &w.cohorts {
                let _ = writeln!(
                    out,
                    "         {} device{}: {} → {}",
                    thousands(c.count),
                    if c.count == 1 { "" } else { "s" },
                    c.stack_before,
                    c.stack_after
                );
            }
        }
        if let Some(back) = r.rollback_moves {
            let _ = writeln!(
                out,
                "    a rollback after this apply would move {} device{} back",
                thousands(back),
                if back == 1 { "" } else { "s" }
            );
        }
    }
    out
}

/// The same for a pull-request comment: a table of the waves.
pub fn rollouts_markdown(rollouts: &[RolloutPlan]) -> String {
    let mut out = String::new();
    if rollouts.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\n#### Rollouts\n");
    for r in rollouts {
        let _ = writeln!(out, "**`{}`** ({}): {}\n", r.name, r.kind, decision_text(r).replace('|', "\\|"));
        if r.waves.is_empty() {
            continue;
        }
        let _ = writeln!(out, "| Wave | Condition | Targets | Moves | Status |\n|---|---|---|---|---|");
        for w in &r.waves {
            let _ = writeln!(
                out,
                "| {}. `{}` | {} | {} | {} | {} |",
                w.index + 1,
                w.name,
                w.condition
                    .as_deref()
                    .map_or("the rest of the target".to_string(), |c| format!("`{}`", c.replace('|', "\\|"))),
                thousands(w.targeted),
                thousands(w.moves),
                status_word(w.status)
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// `apply`'s line for a rollout's transition (or its lack of one), once the writes are done.
pub fn transition_line(plan: &RolloutPlan) -> String {
    let name = &plan.name;
    match &plan.next {
        Decision::Ordinary => format!("rollout {name}: nothing to do"),
        Decision::Start { new, .. } => {
            let targeted =
                plan.waves.first().map(|w| format!(" (targets {} devices)", thousands(w.targeted))).unwrap_or_default();
            format!("rollout {name}: started {}: created {new}{targeted}", wave_name(plan, 0))
        }
        Decision::Promote { from, to, metrics, .. } => format!(
            "rollout {name}: promoted {} → {} ({} of {} reported success)",
            wave_name(plan, *from),
            wave_name(plan, *to),
            metrics.reported_successful,
            metrics.targeted
        ),
        Decision::Complete { old, new, .. } => {
            format!("rollout {name}: complete: deleted {old}; {new} runs on every device of the target")
        }
        Decision::RollBack { old, new, wave, metrics, failure, .. } => format!(
            "rollout {name}: rolled back in {}: {} of {} devices reported failure (rule rollback failure={failure}); deleted {new}, every device returns to {old}",
            wave_name(plan, *wave),
            metrics.reported_failed,
            metrics.targeted
        ),
        Decision::Wait { .. } => format!("rollout {name}: {}", decision_text(plan)),
        Decision::Refuse { .. } | Decision::RolledBack { .. } | Decision::OldGone { .. } => {
            format!("rollout {name}: {}", decision_text(plan))
        }
    }
}

/// A rollout action's line names exactly the writes apply makes, in order, with their
/// ids: which id "the" deployment has differs between a start, a refusal and a rollback,
/// and the writes never do. `quote` wraps each id (markdown's backticks).
pub fn writes_text(a: &crate::plan::Action, quote: &str) -> String {
    if a.writes.is_empty() {
        return "nothing written (see Rollouts)".to_string();
    }
    let writes: Vec<String> = a
        .writes
        .iter()
        .map(|w| {
            let op = match w.op {
                crate::plan::StepOp::Create => "create",
                crate::plan::StepOp::Update => "update",
                crate::plan::StepOp::Delete => "delete",
            };
            format!("{op} {quote}{}{quote}", w.id)
        })
        .collect();
    writes.join(", ")
}
