//! Which of a device's matching deployments apply, and in what order (docs/hub-semantics.md#standard-winner, #layered-stack).

use std::cmp::Ordering;

use serde::Serialize;

use super::{MatchSet, MergeDeployment};
use crate::model::{ConfigurationKind, DeploymentId};

/// The deployments that apply to a device, in the order the hub applies them.
///
/// JSON: `standard` (id or null), `layered` (ids in the order applied: the last one wins
/// where two write the same path), `skipped` (every other matching deployment, sorted by
/// id, each `{id, reason}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub standard: Option<DeploymentId>,
    pub layered: Vec<DeploymentId>,
    pub skipped: Vec<Skipped>,
    #[serde(skip)]
    standard_index: Option<u32>,
    #[serde(skip)]
    layered_indices: Vec<u32>,
}

impl Stack {
    /// A stack of these ids alone, for tests of what reads stacks by id.
    #[cfg(test)]
    pub(crate) fn of_ids(standard: Option<&str>, layered: &[&str]) -> Stack {
        Stack {
            standard: standard.map(DeploymentId::from),
            layered: layered.iter().map(|&id| DeploymentId::from(id)).collect(),
            skipped: Vec::new(),
            standard_index: None,
            layered_indices: Vec::new(),
        }
    }

    /// Index (into the deployment list) of the applied standard deployment.
    pub fn standard_index(&self) -> Option<u32> {
        self.standard_index
    }

    /// Indices of the applied layered deployments, in the order applied.
    pub fn layered_indices(&self) -> &[u32] {
        &self.layered_indices
    }

    /// Every applied deployment, standard first, in the order applied.
    pub fn applied_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.standard_index.into_iter().chain(self.layered_indices.iter().copied())
    }

    /// The part of the stack that determines the merged documents: two devices with the
    /// same key get the same manifest. With no standard deployment, whether a layered one
    /// matched decides the manifest's flags (`no_standard`, or `unmanaged` when nothing
    /// matched), so the key carries it: a device that matches nothing must never share the
    /// manifest of one that matches only layered deployments.
    pub fn merge_key(&self) -> (Option<u32>, Vec<u32>, bool) {
        let no_standard =
            self.standard_index.is_none() && self.skipped.iter().any(|s| s.reason == SkipReason::NoStandard);
        (self.standard_index, self.layered_indices.clone(), no_standard)
    }
}

/// A matching deployment that does not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    pub id: DeploymentId,
    pub reason: SkipReason,
}

/// Why a matching deployment does not apply. JSON: `{"kind": "<kebab-case variant>", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SkipReason {
    /// A standard deployment of higher priority applies instead.
    OutrankedStandard { by: String },
    /// A standard deployment of equal priority, created more recently, applies instead.
    LostTie { to: String },
    /// A layered deployment at or below the applied standard deployment's priority.
    LayeredNotAboveStandard { standard: String },
    /// A layered deployment with no standard deployment under it.
    NoStandard,
    /// A device-management configuration: not an edge deployment at all.
    NotEdge,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::OutrankedStandard { by } => {
                write!(f, "outranked by standard deployment `{by}`")
            }
            SkipReason::LostTie { to } => {
                write!(f, "same priority as standard deployment `{to}`, which is newer and wins")
            }
            SkipReason::LayeredNotAboveStandard { standard } => {
                write!(f, "priority not above the applied standard deployment `{standard}`")
            }
            SkipReason::NoStandard => f.write_str("no standard deployment to layer on"),
            SkipReason::NotEdge => f.write_str("not an IoT Edge deployment"),
        }
    }
}

/// Newest-first order among deployments of equal priority. The id breaks exact ties
/// (two existing deployments created in the same tick) so the result never depends on
/// the order of the deployment list.
fn age_order(a: &MergeDeployment, b: &MergeDeployment) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id))
}

/// Computes the stack for one device from the deployments it matches.
///
/// Indices in `matches` beyond the deployment list are ignored: the set comes from the
/// query engine, which evaluates the same list.
pub fn stack(deployments: &[MergeDeployment], matches: &MatchSet) -> Stack {
    let mut standards: Vec<u32> = Vec::new();
    let mut layered: Vec<u32> = Vec::new();
    let mut skipped = Vec::new();
    for i in matches.iter() {
        let Some(d) = deployments.get(i as usize) else {
            continue;
        };
        match d.kind {
            ConfigurationKind::Standard => standards.push(i),
            ConfigurationKind::Layered => layered.push(i),
            ConfigurationKind::DeviceManagement => {
                skipped.push(Skipped { id: d.id.clone(), reason: SkipReason::NotEdge })
            }
        }
    }
    let dep = |i: u32| &deployments[i as usize];

    // Highest priority first; on equal priority the newest first.
    standards.sort_by(|&a, &b| dep(b).priority.cmp(&dep(a).priority).then_with(|| age_order(dep(b), dep(a))));
    let winner = standards.first().copied();
    if let Some(w) = winner {
        let wd = dep(w);
        for &loser in &standards[1..] {
            let ld = dep(loser);
            let reason = if ld.priority == wd.priority {
                SkipReason::LostTie { to: wd.id.to_string() }
            } else {
                SkipReason::OutrankedStandard { by: wd.id.to_string() }
            };
            skipped.push(Skipped { id: ld.id.clone(), reason });
        }
    }

    // Applied in ascending priority, ties oldest first, so that the later (winning) write
    // of each path is the higher priority or, at equal priority, the newest.
    layered.sort_by(|&a, &b| dep(a).priority.cmp(&dep(b).priority).then_with(|| age_order(dep(a), dep(b))));
    let mut applied = Vec::with_capacity(layered.len());
    for l in layered {
        let ld = dep(l);
        match winner {
            None => skipped.push(Skipped { id: ld.id.clone(), reason: SkipReason::NoStandard }),
            Some(w) if ld.priority <= dep(w).priority => skipped.push(Skipped {
                id: ld.id.clone(),
                reason: SkipReason::LayeredNotAboveStandard { standard: dep(w).id.to_string() },
            }),
            Some(_) => applied.push(l),
        }
    }
    skipped.sort();

    Stack {
        standard: winner.map(|w| dep(w).id.clone()),
        layered: applied.iter().map(|&l| dep(l).id.clone()).collect(),
        skipped,
        standard_index: winner,
        layered_indices: applied,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::merge::{CreatedAt, HubTime};
    use crate::model::Priority;

    fn dep(id: &str, kind: ConfigurationKind, priority: i32, created: CreatedAt) -> MergeDeployment {
        MergeDeployment { id: id.into(), kind, priority: Priority(priority), created, content: BTreeMap::new() }
    }

    fn at(s: &str) -> CreatedAt {
        CreatedAt::Existing(HubTime::parse(s).unwrap())
    }

    use ConfigurationKind::{DeviceManagement, Layered, Standard};

    #[test]
    fn highest_priority_standard_wins_and_ties_go_to_the_newest() {
        let ds = vec![
            dep("old", Standard, 10, at("2024-01-01T00:00:00.9Z")),
            dep("new", Standard, 10, at("2024-01-01T00:00:00.10Z")),
            dep("low", Standard, 5, at("2025-01-01T00:00:00Z")),
            dep("adm", DeviceManagement, 50, CreatedAt::Pending(0)),
        ];
        let s = stack(&ds, &MatchSet::from_indices([0, 1, 2, 3]));
        // .9 s is later than .10 s: "old" is the newer one despite its text.
        assert_eq!(s.standard.as_deref(), Some("old"));
        assert_eq!(s.standard_index(), Some(0));
        assert_eq!(
            s.skipped,
            vec![
                Skipped { id: "adm".into(), reason: SkipReason::NotEdge },
                Skipped { id: "low".into(), reason: SkipReason::OutrankedStandard { by: "old".into() } },
                Skipped { id: "new".into(), reason: SkipReason::LostTie { to: "old".into() } },
            ]
        );
    }

    #[test]
    fn layered_apply_above_the_standard_in_priority_then_age_order() {
        let ds = vec![
            dep("base", Standard, 10, at("2024-01-01T00:00:00Z")),
            dep("l30", Layered, 30, at("2024-01-01T00:00:00Z")),
            dep("l20-new", Layered, 20, CreatedAt::Pending(0)),
            dep("l20-old", Layered, 20, at("2024-06-01T00:00:00Z")),
            dep("l10", Layered, 10, at("2024-01-01T00:00:00Z")),
            dep("l5", Layered, 5, at("2024-01-01T00:00:00Z")),
        ];
        let s = stack(&ds, &MatchSet::from_indices(0..6));
        assert_eq!(s.layered, vec!["l20-old", "l20-new", "l30"]);
        assert_eq!(s.layered_indices(), &[3, 2, 1]);
        let reason = SkipReason::LayeredNotAboveStandard { standard: "base".into() };
        assert_eq!(
            s.skipped,
            vec![Skipped { id: "l10".into(), reason: reason.clone() }, Skipped { id: "l5".into(), reason },]
        );
        assert_eq!(s.applied_indices().collect::<Vec<_>>(), vec![0, 3, 2, 1]);
    }

    #[test]
    fn layered_without_standard_and_empty_matches() {
        let ds = vec![dep("l", Layered, 30, CreatedAt::Pending(0))];
        let s = stack(&ds, &MatchSet::from_indices([0, 7]));
        assert_eq!(s.standard, None);
        assert!(s.layered.is_empty());
        assert_eq!(s.skipped[0].reason, SkipReason::NoStandard);
        let none = stack(&ds, &MatchSet::new());
        assert_eq!(none.standard, None);
        assert!(none.skipped.is_empty() && none.layered.is_empty());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"standard": null, "layered": [], "skipped": [{"id": "l", "reason": {"kind": "no-standard"}}]})
        );
    }
}
