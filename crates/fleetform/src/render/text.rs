//! `--format text`: the plan as a terminal shows it.

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use super::{summary_line, thousands};
use crate::merge::Check;
use crate::plan::{Action, ActionKind, Cohort, Plan, StepOp};

/// At most this many cohorts are printed; the rest are counted.
const MAX_COHORTS: usize = 40;

/// Colours, or none (not a terminal, `NO_COLOR`, `--color never`).
#[derive(Clone, Copy)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn style(&self, style: Style, text: &str) -> String {
        if self.color { format!("{}{text}{}", style.render(), style.render_reset()) } else { text.to_string() }
    }
    fn fg(&self, c: AnsiColor, text: &str) -> String {
        self.style(Style::new().fg_color(Some(c.into())), text)
    }
    fn bold(&self, text: &str) -> String {
        self.style(Style::new().bold(), text)
    }
    fn dim(&self, text: &str) -> String {
        self.style(Style::new().dimmed(), text)
    }
    fn action(&self, kind: ActionKind, text: &str) -> String {
        match kind {
            ActionKind::Create => self.fg(AnsiColor::Green, text),
            ActionKind::Update => self.fg(AnsiColor::Yellow, text),
            ActionKind::Replace => self.fg(AnsiColor::Magenta, text),
            ActionKind::Delete => self.fg(AnsiColor::Red, text),
            ActionKind::Orphan => self.fg(AnsiColor::Yellow, text),
            ActionKind::Unmanaged | ActionKind::NoOp => self.dim(text),
            ActionKind::Rollout => self.fg(AnsiColor::Cyan, text),
        }
    }
}

fn describe(a: &Action) -> String {
    let before: Vec<&str> = a.before.iter().map(|b| b.id.as_str()).collect();
    match a.action {
        ActionKind::Create => format!("create {}", a.after.as_deref().unwrap_or("")),
        ActionKind::Update => {
            let after = a.after.as_deref().unwrap_or("");
            // Other copies of the deployment on the hub (an unfinished rollout's new one after
            // `--restart-rollout` back to the old content, an interrupted replace) are deleted
            // by the same apply; the line names them so that it names every id written.
            let stale: Vec<&str> = before.iter().copied().filter(|id| *id != after).collect();
            if stale.is_empty() {
                format!("update {after} in place")
            } else {
                format!("update {after} in place, delete {}", stale.join(", "))
            }
        }
        ActionKind::Replace => format!("replace {} with {}", before.join(", "), a.after.as_deref().unwrap_or("")),
        ActionKind::Delete => format!("delete {}", before.join(", ")),
        ActionKind::Orphan => {
            format!("orphaned, kept: {} is no longer declared (--prune deletes it)", before.join(", "))
        }
        ActionKind::Unmanaged => "unmanaged, never touched (not created by fleetform)".to_string(),
        ActionKind::NoOp => format!("no change ({})", a.after.as_deref().unwrap_or("")),
        ActionKind::Rollout => format!("rollout {}: {}", before.join(", "), super::rollout::writes_text(a, "")),
    }
}

/// The sentence that heads a plan made without some secrets (`plan --without-secrets`):
/// which were missing, whose ids are unknown, and that it cannot be applied.
pub fn without_secrets_banner(plan: &Plan) -> Option<String> {
    let w = plan.without_secrets.as_ref()?;
    let names: Vec<&str> = w.unknown_ids.keys().map(String::as_str).collect();
    let ids = if names.is_empty() {
        String::new()
    } else {
        format!(
            " The new id{} of {} {} unknown (the id hashes the content, secrets included), so {} shown as created or replaced even where the real plan would keep or update {} in place, and {} sensitive values are shown as changed.",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
            if names.len() == 1 { "it is" } else { "they are" },
            if names.len() == 1 { "it" } else { "them" },
            if names.len() == 1 { "its" } else { "their" },
        )
    };
    Some(format!(
        "Planned without secrets: {} not set.{ids} Everything else is planned exactly; this plan cannot be saved or applied.",
        w.missing.join(", ")
    ))
}

/// The sentence that heads a plan in which a replace changes the winner of an
/// equal-priority tie (W014) on some devices: it is easy to miss as one cohort among many.
pub fn winner_flip_banner(plan: &Plan) -> Option<String> {
    let flips: Vec<_> = plan.warnings.iter().filter(|w| matches!(w.check, Check::StandardWinnerFlips { .. })).collect();
    let first = flips.first()?;
    let devices: u64 = flips.iter().map(|w| w.devices).sum();
    let pairs: Vec<String> = flips
        .iter()
        .filter_map(|w| match &w.check {
            Check::StandardWinnerFlips { from, to, .. } => Some(format!("`{from}` → `{to}`")),
            _ => None,
        })
        .collect();
    Some(format!(
        "{} A replace changes which standard deployment wins on {} device{}: {}. The deployments tie on priority, so creation time decides; give one a higher priority to make the choice explicit.",
        first.code,
        thousands(devices),
        if devices == 1 { "" } else { "s" },
        pairs.join(", ")
    ))
}

pub fn plan_text(plan: &Plan, paint: Paint) -> String {
    let mut out = String::new();
    if let Some(banner) = without_secrets_banner(plan) {
        let _ = writeln!(out, "{}\n", paint.fg(AnsiColor::Yellow, &format!("!! {banner}")));
    }
    if let Some(banner) = winner_flip_banner(plan) {
        let _ = writeln!(out, "{}\n", paint.fg(AnsiColor::Red, &format!("!! {banner}")));
    }
    let _ = writeln!(out, "{}", paint.bold(&format!("Deployments ({})", plan.hub)));
    let width = plan.actions.iter().map(|a| a.name.chars().count()).max().unwrap_or(0);
    for a in &plan.actions {
        let symbol = format!("{:>3}", a.action.symbol());
        let _ = writeln!(
            out,
            "  {} {:<width$}  {:<8} {:>5}  {}",
            paint.action(a.action, &symbol),
            a.name,
            a.kind,
            format!("p{}", a.priority),
            describe(a),
        );
        for f in &a.field_changes {
            let show = |v: &Option<serde_json::Value>| match v {
                Some(v) => serde_json::to_string(&plan.redactor.value(v)).unwrap_or_default(),
                None => "(none)".to_string(),
            };
            let _ = writeln!(
                out,
                "        {} {}: {} → {}",
                paint.fg(AnsiColor::Yellow, "~"),
                f.field,
                show(&f.before),
                show(&f.after)
            );
        }
        if let Some(changes) = plan.content_changes.get(&a.name) {
            for c in changes {
                let _ = writeln!(out, "        {c}");
            }
        }
    }

    if !plan.steps.is_empty() {
        let _ = writeln!(out, "\n{}", paint.bold("Steps (apply runs them in this order)"));
        for s in &plan.steps {
            let colour = match s.op {
                StepOp::Create => AnsiColor::Green,
                StepOp::Update => AnsiColor::Yellow,
                StepOp::Delete => AnsiColor::Red,
            };
            let verb = paint.fg(colour, s.op.word());
            let why = if s.reason == "stale copy" {
                " (leftover of an interrupted replace)".to_string()
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:>2}. {verb} {}  priority {}  [{}]{why}", s.number, s.id, s.priority, s.name);
        }
    }

    if !plan.rollouts.is_empty() {
        let _ = writeln!(out, "\n{}", paint.bold("Rollouts (docs/rollouts.md)"));
        out.push_str(&super::rollout::rollouts_text(&plan.rollouts));
    }

    let t = &plan.totals;
    let _ = writeln!(
        out,
        "\n{}",
        paint.bold(&format!(
            "Device impact ({} devices read, {} IoT Edge; {} change, {} change deployments only)",
            thousands(t.devices),
            thousands(t.edge_devices),
            thousands(t.changed),
            thousands(t.restacked)
        ))
    );
    if plan.cohorts.is_empty() {
        let _ = writeln!(out, "  No device changes.");
    }
    for c in plan.cohorts.iter().take(MAX_COHORTS) {
        cohort_text(&mut out, c, paint);
    }
    if plan.cohorts.len() > MAX_COHORTS {
        let rest = &plan.cohorts[MAX_COHORTS..];
        let devices: u64 = rest.iter().map(|c| c.count).sum();
        let _ = writeln!(
            out,
            "  … {} more cohorts ({} devices); --format json lists them all",
            rest.len(),
            thousands(devices)
        );
    }

    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\n{}", paint.bold("Warnings (after apply)"));
        for w in &plan.warnings {
            let _ = writeln!(out, "  {} {w}", paint.fg(AnsiColor::Yellow, "!"));
        }
    }
    let _ = writeln!(out, "\n{}", paint.bold(&summary_line(plan)));
    out
}

fn cohort_text(out: &mut String, c: &Cohort, paint: Paint) {
    let stacks = if c.stack_before == c.stack_after {
        format!("{}", c.stack_after)
    } else {
        format!("{} → {}", c.stack_before, c.stack_after)
    };
    let n = thousands(c.count);
    let noun = if c.count == 1 { "device" } else { "devices" };
    let _ = writeln!(out, "  {} {noun}: {stacks}", paint.bold(&n));
    let more = if c.count > c.samples.len() as u64 { ", …" } else { "" };
    let _ = writeln!(out, "      {}", paint.dim(&format!("e.g. {}{more}", c.samples.join(", "))));
    for line in super::running_lines(c) {
        let _ = writeln!(out, "      {line}");
    }
    if c.changes.is_empty() {
        let _ = writeln!(out, "      same manifest, from other deployments");
    }
    for ch in &c.changes {
        let _ = writeln!(out, "      {ch}");
    }
}

/// `--diff`: each replaced or updated deployment as a unified diff of its redacted JSON.
pub fn unified_diffs(plan: &Plan) -> String {
    let mut out = String::new();
    for a in plan.actions.iter().filter(|a| matches!(a.action, ActionKind::Replace | ActionKind::Update)) {
        let Some(new) = plan.declared.iter().find(|r| a.after.as_deref() == Some(r.configuration.id.as_str())) else {
            continue;
        };
        let Some(old) = a.before.iter().rev().find_map(|b| plan.current.iter().find(|c| c.id == b.id)) else {
            continue;
        };
        // Compare what fleetform controls: hub-set fields would be noise.
        let strip = |c: &crate::model::Configuration| {
            let mut c = plan.redactor.configuration(c);
            c.etag = None;
            c.created_time_utc = None;
            c.last_updated_time_utc = None;
            c.system_metrics = None;
            if let Some(m) = c.metrics.as_mut() {
                m.results.clear();
            }
            serde_json::to_string_pretty(&c).unwrap_or_default() + "\n"
        };
        let (before, after) = (strip(old), strip(&new.configuration));
        let diff = similar::TextDiff::from_lines(&before, &after);
        out.push_str(&format!("\n{}\n", diff.unified_diff().context_radius(3).header(&old.id, &new.configuration.id)));
    }
    out
}
