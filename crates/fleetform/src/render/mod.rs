//! All human output (and the CLI's JSON documents): plans as text for a terminal, Markdown
//! for a pull-request comment and JSON for machines; apply's step lines and summary; the
//! `--wait` progress and outcome; `status`. Everything here reads what the other modules
//! computed (plans redact through their redactor); nothing here computes or decides.

pub mod apply;
pub mod explain;
pub mod json;
pub mod markdown;
pub mod output;
pub mod progress;
pub mod read_progress;
pub mod rollout;
pub mod status;
pub mod text;

use crate::plan::{ActionKind, Plan};

/// `Plan: 1 to create, 1 to update, 1 to replace, 0 to delete. 120 devices change.`
pub fn summary_line(plan: &Plan) -> String {
    if !plan.has_changes() {
        if !plan.rollouts.is_empty() {
            // The hub is not what the files declare: a rollout waits, or stays rolled back.
            let n = plan.rollouts.len();
            return format!(
                "No changes now: {n} rollout{} in progress or rolled back (see Rollouts).",
                if n == 1 { "" } else { "s" }
            );
        }
        return "No changes. The hub matches the repository.".to_string();
    }
    let deletes = plan.count(ActionKind::Delete);
    let devices = plan.totals.changed;
    let advancing = plan.actions.iter().filter(|a| a.action == ActionKind::Rollout && !a.writes.is_empty()).count();
    let rollouts = if advancing == 0 {
        String::new()
    } else {
        format!(", {advancing} rollout{} to advance", if advancing == 1 { "" } else { "s" })
    };
    // Apply refuses the whole run, not only the refused rollout: its writes and the other
    // deployments' are ordered by priority together, and a half-applied order is what
    // the invariants forbid. The plan must not promise the other steps.
    let refused = plan
        .rollouts
        .iter()
        .filter(|r| matches!(r.next, crate::plan::Decision::Refuse { .. } | crate::plan::Decision::OldGone { .. }))
        .count();
    let refusal = if refused == 0 {
        String::new()
    } else {
        format!(
            " Apply refuses it all and writes nothing (exit 13) while {} rollout{} refused (see Rollouts; `apply --restart-rollout`).",
            refused,
            if refused == 1 { " is" } else { "s are" }
        )
    };
    format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete{rollouts}. {} device{} change{}.{refusal}",
        plan.count(ActionKind::Create),
        plan.count(ActionKind::Update),
        plan.count(ActionKind::Replace),
        deletes,
        thousands(devices),
        if devices == 1 { "" } else { "s" },
        if devices == 1 { "s" } else { "" },
    )
}

/// 1234567 -> "1,234,567": device counts are read at a glance.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The plural ending for a count of `n`: "1 file", "2 files".
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// At most this many groups of what a cohort's devices run today are printed.
const MAX_RUNNING_GROUPS: usize = 5;

/// What a cohort's devices run today, where the plan read it ([`crate::plan::Cohort::running_before`]):
/// a heading, then one indented line per group of devices running the same modules. Empty
/// when the plan did not read it.
pub fn running_lines(c: &crate::plan::Cohort) -> Vec<String> {
    if c.running_before.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["running today, as their $edgeAgent reports:".to_string()];
    for r in c.running_before.iter().take(MAX_RUNNING_GROUPS) {
        // One group of the whole cohort: its samples are the cohort's, shown just above.
        if r.count == c.count {
            let all = if r.count == 1 { "1 device".to_string() } else { format!("all {} devices", thousands(r.count)) };
            lines.push(format!("  {all}: {r}"));
            continue;
        }
        let more = if r.count > r.samples.len() as u64 { ", …" } else { "" };
        lines.push(format!(
            "  {} device{} (e.g. {}{more}): {r}",
            thousands(r.count),
            plural(r.count as usize),
            r.samples.join(", ")
        ));
    }
    if c.running_before.len() > MAX_RUNNING_GROUPS {
        let rest = &c.running_before[MAX_RUNNING_GROUPS..];
        let devices: u64 = rest.iter().map(|r| r.count).sum();
        lines.push(format!(
            "  … {} more groups ({} devices); --format json lists them all",
            rest.len(),
            thousands(devices)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }

    #[test]
    fn enum_words_pad_in_columns() {
        use crate::model::ConfigurationKind;
        use crate::plan::{ActionKind, StepOp};
        assert_eq!(format!("{:<8}|", ConfigurationKind::Layered), "layered |");
        assert_eq!(ConfigurationKind::DeviceManagement.to_string(), "device management");
        assert_eq!(format!("{:>7}", StepOp::Delete), " delete");
        assert_eq!(ActionKind::NoOp.to_string(), "no-op");
        assert_eq!(super::plural(1), "");
        assert_eq!(super::plural(0), "s");
    }
}
