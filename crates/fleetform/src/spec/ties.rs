//! Equal-priority standard deployments whose targets can meet: the hub then picks the
//! newest (docs/hub-semantics.md#standard-winner), and since every content change
//! re-creates a deployment under a new id, an image bump of the older one silently moves
//! every shared device over to it. `validate` sees only the files, so "can meet" is
//! decided without a fleet: two conditions are kept apart only when both pin one path to
//! values the other excludes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Deployment, DeploymentKind};
use crate::merge::WarningCode;
use crate::model::Priority;
use crate::query::{CmpOp, ConditionRoot, ExprKind, Literal, parse_condition};

/// A `validate` warning (W020): the deployments, their shared priority and where each is
/// declared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EqualPriorityOverlap {
    pub code: WarningCode,
    pub check: &'static str,
    pub priority: Priority,
    pub first: String,
    pub second: String,
    /// `file:line:col` of each deployment.
    pub first_at: String,
    pub second_at: String,
}

impl std::fmt::Display for EqualPriorityOverlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} standard deployments `{}` ({}) and `{}` ({}) both have priority {} and targets that can match the same device: the newer one wins there, and every content change re-creates a deployment, so an edit of the older one moves those devices to it; give one a higher priority",
            self.code, self.first, self.first_at, self.second, self.second_at, self.priority
        )
    }
}

/// What a condition's top-level AND clauses pin: each path (lowercased, as the hub
/// matches names) to the only values it may hold. `None`: the condition matches nothing.
fn pinned(text: &str) -> Option<BTreeMap<String, Vec<Literal>>> {
    let mut out = BTreeMap::new();
    // An empty condition targets nothing: its targetedCount is empty (docs/hub-semantics.md#system-metrics).
    if text.trim().is_empty() {
        return None;
    }
    // Text that does not parse is `validate`'s problem; it may match anything meanwhile.
    let Ok(condition) = parse_condition(text) else { return Some(out) };
    if condition.root == ConditionRoot::Nothing {
        return None;
    }
    for clause in condition.clauses() {
        let (path, values) = match &clause.kind {
            ExprKind::Compare(CmpOp::Eq, a, b) => match (&a.kind, &b.kind) {
                (ExprKind::Path(p), ExprKind::Literal(l)) | (ExprKind::Literal(l), ExprKind::Path(p)) => {
                    (p, vec![l.clone()])
                }
                _ => continue,
            },
            ExprKind::In { operand, list, negated: false } => match &operand.kind {
                ExprKind::Path(p) => (p, list.clone()),
                _ => continue,
            },
            _ => continue,
        };
        let key = path.to_string().to_lowercase();
        let entry: &mut Vec<Literal> = out.entry(key).or_insert_with(|| values.clone());
        // Two clauses on one path: only values both allow remain.
        entry.retain(|v| values.contains(v));
    }
    Some(out)
}

fn can_overlap(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (pinned(a), pinned(b)) else { return false };
    if a.values().chain(b.values()).any(Vec::is_empty) {
        return false;
    }
    a.iter().all(|(path, allowed)| b.get(path).is_none_or(|other| allowed.iter().any(|v| other.contains(v))))
}

/// Every pair of standard deployments of equal priority whose targets can overlap, in
/// declaration order.
pub fn equal_priority_overlaps(deployments: &[Deployment]) -> Vec<EqualPriorityOverlap> {
    let standard: Vec<&Deployment> = deployments.iter().filter(|d| d.kind == DeploymentKind::Standard).collect();
    let mut out = Vec::new();
    for (i, a) in standard.iter().enumerate() {
        for b in &standard[i + 1..] {
            let (Some(ta), Some(tb)) = (&a.target, &b.target) else { continue };
            if a.priority == b.priority && can_overlap(&ta.text, &tb.text) {
                out.push(EqualPriorityOverlap {
                    code: WarningCode::VALIDATE_EQUAL_PRIORITY,
                    check: "equal-priority-overlap",
                    priority: a.priority,
                    first: a.name.to_string(),
                    second: b.name.to_string(),
                    first_at: a.origin.location(),
                    second_at: b.origin.location(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::can_overlap;

    #[test]
    fn conditions_pinning_one_path_to_different_values_are_apart() {
        assert!(!can_overlap("tags.env='prod' AND tags.site='a'", "tags.env='dev'"));
        assert!(!can_overlap("tags.env IN ['prod', 'stage']", "tags.ENV = 'dev'"));
        assert!(!can_overlap("tags.env='prod' AND tags.env='dev'", "*"));
        assert!(!can_overlap("", "*"), "an empty target matches nothing");
    }

    #[test]
    fn anything_not_provably_apart_can_overlap() {
        assert!(can_overlap("tags.env='prod'", "tags.site='a'"));
        assert!(can_overlap("tags.env IN ['prod', 'stage']", "tags.env='stage' AND tags.x=1"));
        assert!(can_overlap("tags.env='prod' OR tags.env='dev'", "tags.env='dev'"));
        assert!(can_overlap("*", "tags.env='dev'"));
        // Different types never compare equal, but 2 and '2' are still different pins.
        assert!(!can_overlap("tags.floor=2", "tags.floor='2'"));
    }
}
