//! `--format markdown`: a pull-request comment. The summary comes first, a banner warns of
//! deletions and replacements, device cohorts sit in `<details>`, and the whole comment
//! stays under GitHub's 65,536-character limit by summarising its tail.

use std::fmt::Write;

use super::{summary_line, thousands};
use crate::plan::{ActionKind, Cohort, Plan};

/// Below GitHub's limit of 65,536 characters, with room for the closing lines.
pub const MAX_CHARS: usize = 65_000;

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;")
}

/// A list item's text: change lines start with `+`, `-` or `~`, and a list item starting
/// with `+ ` or `- ` is a nested list in CommonMark, so a leading marker is escaped.
fn item(s: &str) -> String {
    let text = escape(s);
    if text.starts_with("+ ") || text.starts_with("- ") { format!("\\{text}") } else { text }
}

pub fn plan_markdown(plan: &Plan) -> String {
    plan_markdown_titled(plan, "fleetform plan", MAX_CHARS)
}

/// [`plan_markdown`] under another heading and within `max_chars` (`plan --base` prints
/// the change under review, then the plan against the hub, in one comment).
pub fn plan_markdown_titled(plan: &Plan, title: &str, max_chars: usize) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "### {title}\n");
    let _ = writeln!(head, "**{}**\n", summary_line(plan));
    if let Some(banner) = super::text::without_secrets_banner(plan) {
        let _ = writeln!(head, "> [!NOTE]\n> {}\n", escape(&banner));
    }
    if let Some(banner) = super::text::winner_flip_banner(plan) {
        let _ = writeln!(head, "> [!CAUTION]\n> {}\n", escape(&banner));
    }
    let replaced = plan.count(ActionKind::Replace);
    let deleted = plan.count(ActionKind::Delete);
    if replaced + deleted > 0 {
        let _ = writeln!(
            head,
            "> [!WARNING]\n> This plan deletes {deleted} and replaces {replaced} deployment{}. Replacements create the new deployment before deleting the old one.\n",
            if replaced + deleted == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(head, "| | Deployment | Kind | Priority | Action |\n|---|---|---|---|---|");
    for a in &plan.actions {
        let what = match a.action {
            ActionKind::Create => format!("create `{}`", a.after.as_deref().unwrap_or("")),
            ActionKind::Update => {
                let fields: Vec<String> = a.field_changes.iter().map(|f| format!("`{}`", f.field)).collect();
                format!("update {}", fields.join(", "))
            }
            ActionKind::Replace => format!("replace → `{}`", a.after.as_deref().unwrap_or("")),
            ActionKind::Delete => "**delete**".to_string(),
            ActionKind::Orphan => "orphaned, kept (`--prune` deletes it)".to_string(),
            ActionKind::Unmanaged => "unmanaged, not touched".to_string(),
            ActionKind::NoOp => "no change".to_string(),
            ActionKind::Rollout => format!("rollout: {}", super::rollout::writes_text(a, "`")),
        };
        let _ = writeln!(
            head,
            "| `{}` | `{}` | {} | {} | {} |",
            a.action.symbol(),
            escape(&a.name),
            a.kind,
            a.priority,
            what
        );
    }
    let mut details = String::new();
    for a in &plan.actions {
        let content = plan.content_changes.get(&a.name);
        if a.field_changes.is_empty() && content.is_none() {
            continue;
        }
        let _ = writeln!(details, "\n**`{}`**", escape(&a.name));
        for f in &a.field_changes {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref().map_or("(none)".to_string(), |v| {
                    serde_json::to_string(&plan.redactor.value(v)).unwrap_or_default()
                })
            };
            let _ =
                writeln!(details, "- `{}`: `{}` → `{}`", f.field, escape(&show(&f.before)), escape(&show(&f.after)));
        }
        for c in content.into_iter().flatten() {
            let _ = writeln!(details, "- {}", item(&c.to_string()));
        }
    }
    head.push_str(&details);
    head.push_str(&super::rollout::rollouts_markdown(&plan.rollouts));
    if !plan.steps.is_empty() {
        let _ = writeln!(head, "\n<details><summary>Steps apply will run ({})</summary>\n", plan.steps.len());
        for s in &plan.steps {
            let _ = writeln!(head, "{}. {:?} `{}` (priority {})", s.number, s.op, s.id, s.priority);
        }
        let _ = writeln!(head, "\n</details>");
    }

    let mut tail = String::new();
    if !plan.warnings.is_empty() {
        let _ = writeln!(tail, "\n#### Warnings\n");
        for w in &plan.warnings {
            let _ = writeln!(tail, "- {}", item(&w.to_string()));
        }
    }

    let t = &plan.totals;
    let mut cohorts = format!(
        "\n<details><summary>Device impact: {} of {} IoT Edge devices change, in {} cohort{}</summary>\n\n",
        thousands(t.changed),
        thousands(t.edge_devices),
        plan.cohorts.len(),
        if plan.cohorts.len() == 1 { "" } else { "s" }
    );
    let closing = "\n</details>\n";
    let budget = max_chars.saturating_sub(head.len() + tail.len() + closing.len() + 200);
    let mut shown = 0;
    for c in &plan.cohorts {
        let block = cohort_markdown(c);
        if cohorts.len() + block.len() > budget {
            break;
        }
        cohorts.push_str(&block);
        shown += 1;
    }
    if shown < plan.cohorts.len() {
        let rest = &plan.cohorts[shown..];
        let devices: u64 = rest.iter().map(|c| c.count).sum();
        let _ = writeln!(
            cohorts,
            "\n*… {} more cohort{} ({} device{}) not shown to stay within the comment size limit; run `fleetform plan --format json` for all of them.*",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            thousands(devices),
            if devices == 1 { "" } else { "s" }
        );
    }
    cohorts.push_str(closing);
    let mut out = head;
    out.push_str(&cohorts);
    out.push_str(&tail);
    out
}

/// What `plan --base` says in place of the plan against the hub when it would repeat the
/// change section line for line.
pub const SAME_AS_CHANGE: &str = "The hub matches the base of this change: applying it makes exactly the changes above, with the same device impact.";

/// `plan --base --format markdown`: the change under review, then the plan against the
/// hub, in one comment; the second is a sentence when it equals the first.
pub fn plan_markdown_with_base(change: &Plan, plan: &Plan) -> String {
    if change.same_changes(plan) {
        let mut out = plan_markdown_titled(change, "What this change does", MAX_CHARS - 400);
        let _ = writeln!(out, "\n### fleetform plan\n\n**{}**\n\n{SAME_AS_CHANGE}", summary_line(plan));
        return out;
    }
    // One PR comment holds both sections: each gets half of GitHub's limit.
    let mut out = plan_markdown_titled(change, "What this change does", MAX_CHARS / 2);
    out.push('\n');
    out.push_str(&plan_markdown_titled(plan, "fleetform plan", MAX_CHARS / 2));
    out
}

/// `--diff` in a comment: each diff in a `diff` code fence (raw `+`/`-` lines would render as
/// lists and headings), folded in `<details>`. The fence is longer than any run of
/// backticks inside, so no content can close it.
pub fn unified_diffs_markdown(plan: &Plan) -> String {
    let diffs = super::text::unified_diffs(plan);
    if diffs.trim().is_empty() {
        return String::new();
    }
    let longest = diffs.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!(
        "\n<details><summary>Diff of the replaced and updated deployments</summary>\n\n{fence}diff\n{}\n{fence}\n\n</details>\n",
        diffs.trim_matches('\n')
    )
}

fn cohort_markdown(c: &Cohort) -> String {
    let mut s = String::new();
    let stacks = if c.stack_before == c.stack_after {
        format!("`{}`", c.stack_after)
    } else {
        format!("`{}` → `{}`", c.stack_before, c.stack_after)
    };
    let more = if c.count > c.samples.len() as u64 { ", …" } else { "" };
    let _ = writeln!(
        s,
        "**{} device{}**: {stacks}  \n<sub>e.g. {}{more}</sub>\n",
        thousands(c.count),
        if c.count == 1 { "" } else { "s" },
        c.samples.iter().map(|d| format!("`{}`", escape(d))).collect::<Vec<_>>().join(", ")
    );
    if let Some((head, groups)) = super::running_lines(c).split_first() {
        let _ = writeln!(s, "- {}", item(head));
        for g in groups {
            let _ = writeln!(s, "  - {}", item(g.trim_start()));
        }
    }
    if c.changes.is_empty() {
        let _ = writeln!(s, "- same manifest, from other deployments");
    }
    for ch in &c.changes {
        let _ = writeln!(s, "- {}", item(&ch.to_string()));
    }
    s.push('\n');
    s
}
