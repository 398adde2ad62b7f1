//! What a plan does to the fleet: every device's stack before and after, folded over the
//! twins once; the declared state merged once per distinct stack; devices grouped into
//! cohorts by their change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use super::diff::{Change, diff};
use super::redact::Redactor;
use super::state::DeploymentState;
use crate::merge::{self, DeviceSample, EffectiveManifest, Grouper, MatchSet, MergeDeployment, Stack, Warning};
use crate::model::DeploymentId;
use crate::model::{FleetRead, Projection, ReadError};
use crate::query::{ConditionId, ConditionSet, Scratch, parse_condition};

/// The deployments a device gets: the standard one and the layered ones, in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
pub struct StackIds {
    pub standard: Option<DeploymentId>,
    pub layered: Vec<DeploymentId>,
    /// Layered deployments that target the device but have no standard one to apply on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without_standard: Vec<DeploymentId>,
}

impl StackIds {
    fn of(stack: &Stack) -> Self {
        let without_standard =
            stack.skipped.iter().filter(|s| s.reason == merge::SkipReason::NoStandard).map(|s| s.id.clone()).collect();
        StackIds { standard: stack.standard.clone(), layered: stack.layered.clone(), without_standard }
    }

    pub fn is_empty(&self) -> bool {
        self.standard.is_none() && self.layered.is_empty() && self.without_standard.is_empty()
    }
}

impl std::fmt::Display for StackIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.standard {
            Some(s) => f.write_str(s)?,
            None if self.without_standard.is_empty() => return f.write_str("(none)"),
            None => return write!(f, "(no standard; {} not applied)", self.without_standard.join(", ")),
        }
        for l in &self.layered {
            write!(f, " + {l}")?;
        }
        Ok(())
    }
}

/// Devices that share a stack before, a stack after, and the same change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cohort {
    pub count: u64,
    /// Up to 5 device ids, smallest first.
    pub samples: Vec<String>,
    pub stack_before: StackIds,
    pub stack_after: StackIds,
    /// Empty when only the stack changes (same manifest from other deployments).
    pub changes: Vec<Change>,
}

/// Device counts over the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceTotals {
    /// Every device twin read.
    pub devices: u64,
    /// IoT Edge devices (the only ones deployments target).
    pub edge_devices: u64,
    /// Devices whose effective manifest changes.
    pub changed: u64,
    /// Devices that move to other deployments with the same manifest.
    pub restacked: u64,
}

/// The fleet's side of a plan.
#[derive(Clone, Debug, Default)]
pub struct Impact {
    /// Largest first.
    pub cohorts: Vec<Cohort>,
    pub totals: DeviceTotals,
    /// Findings on the state after apply.
    pub warnings: Vec<Warning>,
    /// After apply: how many IoT Edge devices each deployment (by id) should be applied to.
    pub expected_applied: BTreeMap<String, u64>,
}

/// Devices sharing the same matches: before-indices, then after-indices shifted past them.
type Pairs = HashMap<MatchSet, DeviceSample>;

/// The IoT Edge devices that match the same deployments before and the same after.
struct MatchPair {
    before: MatchSet,
    after: MatchSet,
    devices: DeviceSample,
}

/// One pass over the fleet.
struct Fold {
    pairs: Vec<MatchPair>,
    /// Every device twin read.
    devices: u64,
    edge_devices: u64,
}

/// Moving the devices of `fleet` from `before` to `after`.
pub fn impact(
    before: &DeploymentState,
    after: &DeploymentState,
    fleet: &dyn FleetRead,
    redactor: &Redactor,
) -> Result<Impact, ReadError> {
    let Fold { pairs, devices, edge_devices } = fold_devices(before, after, fleet)?;
    let (before, after) = (&before.deployments, &after.deployments);

    // The declared state, merged once per distinct stack: warnings, and the documents
    // devices will run.
    let mut grouper = Grouper::new(after);
    for p in &pairs {
        grouper.add_devices(&p.after, &p.devices);
    }
    let merged = grouper.finish_documents();
    let warnings = merged.warnings.clone();
    let mut expected_applied: BTreeMap<String, u64> = after.iter().map(|d| (d.id.to_string(), 0)).collect();
    for g in &merged.groups {
        for id in g.stack.standard.iter().chain(&g.stack.layered) {
            *expected_applied.entry(id.to_string()).or_default() += g.devices;
        }
    }
    let after_groups: HashMap<&MatchSet, &merge::Group> = merged.groups.iter().map(|g| (&g.matches, g)).collect();

    let mut cache_b: HashMap<ManifestKey, EffectiveManifest> = HashMap::new();
    let mut cohorts: HashMap<(StackIds, StackIds, Vec<Change>), DeviceSample> = HashMap::new();
    let mut totals = DeviceTotals { devices, edge_devices, ..Default::default() };
    for MatchPair { before: b, after: a, devices: sample } in &pairs {
        let Some(group) = after_groups.get(a) else { continue };
        let Some(ma) = merged.manifest(group.manifest) else { continue };
        let sb = merge::stack(before, b);
        let mb = cached(&mut cache_b, before, &sb, b.is_empty());
        let changes = diff(&cache_b[&mb], ma, redactor);
        let (ib, ia) = (StackIds::of(&sb), StackIds::of(&group.stack));
        if changes.is_empty() && ib == ia {
            continue;
        }
        if changes.is_empty() {
            totals.restacked += sample.count;
        } else {
            totals.changed += sample.count;
        }
        cohorts.entry((ib, ia, changes)).or_default().merge(sample);
    }
    Ok(Impact { cohorts: sorted_cohorts(cohorts), totals, warnings, expected_applied })
}

/// Per device: which deployments match before and after, as one set (after-indices
/// shifted past the before ones) so that the lookup needs no copy.
fn fold_devices(before: &DeploymentState, after: &DeploymentState, fleet: &dyn FleetRead) -> Result<Fold, ReadError> {
    // One condition set for both states: a condition shared by several deployments (or
    // unchanged by the plan) is evaluated once per device.
    let mut set = ConditionSet::new();
    let mut by_text: HashMap<String, Option<ConditionId>> = HashMap::new();
    let mut cond_of = |target: &str| -> Option<ConditionId> {
        *by_text.entry(target.to_string()).or_insert_with(|| {
            // An empty or unparsable condition targets nothing, as on the hub.
            if target.trim().is_empty() {
                return None;
            }
            parse_condition(target).ok().map(|c| set.add(&c))
        })
    };
    let before_conds: Vec<Option<ConditionId>> = before.targets.iter().map(|t| cond_of(t)).collect();
    let after_conds: Vec<Option<ConditionId>> = after.targets.iter().map(|t| cond_of(t)).collect();

    let shift = before.len() as u32;
    let pairs: Mutex<Pairs> = Mutex::new(HashMap::new());
    let totals = Mutex::new((0u64, 0u64));
    fleet.device_batches(Projection::Paths(set.read_paths()), &|batch| {
        let mut local: Pairs = HashMap::new();
        let mut scratch = Scratch::new();
        let mut edge = 0u64;
        let count = batch.len() as u64;
        let mut both = MatchSet::new();
        for twin in &batch {
            let resolved = set.resolve(twin.value(), &mut scratch);
            if !resolved.is_edge() {
                continue;
            }
            edge += 1;
            both.clear();
            for (i, c) in before_conds.iter().enumerate() {
                if c.is_some_and(|c| resolved.targets(c)) {
                    both.insert(i as u32);
                }
            }
            for (i, c) in after_conds.iter().enumerate() {
                if c.is_some_and(|c| resolved.targets(c)) {
                    both.insert(shift + i as u32);
                }
            }
            match local.get_mut(&both) {
                Some(sample) => sample.add(twin.device_id()),
                None => local.entry(both.clone()).or_default().add(twin.device_id()),
            }
        }
        let mut global = pairs.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in local {
            global.entry(k).or_default().merge(&v);
        }
        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
        t.0 += count;
        t.1 += edge;
        Ok(())
    })?;
    let (device_count, edge_count) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    let pairs = pairs
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|(both, devices)| MatchPair {
            before: both.iter().filter(|&i| i < shift).collect(),
            after: both.iter().filter(|&i| i >= shift).map(|i| i - shift).collect(),
            devices,
        })
        .collect();
    Ok(Fold { pairs, devices: device_count, edge_devices: edge_count })
}

fn sorted_cohorts(cohorts: HashMap<(StackIds, StackIds, Vec<Change>), DeviceSample>) -> Vec<Cohort> {
    let mut cohorts: Vec<Cohort> = cohorts
        .into_iter()
        .map(|((stack_before, stack_after, changes), s)| Cohort {
            count: s.count,
            samples: s.samples,
            stack_before,
            stack_after,
            changes,
        })
        .collect();
    cohorts.sort_by(|x, y| {
        y.count
            .cmp(&x.count)
            .then_with(|| x.stack_after.cmp(&y.stack_after))
            .then_with(|| x.stack_before.cmp(&y.stack_before))
            .then_with(|| x.samples.cmp(&y.samples))
    });
    cohorts
}

type ManifestKey = (Option<u32>, Vec<u32>, bool);

fn cached(
    cache: &mut HashMap<ManifestKey, EffectiveManifest>,
    deployments: &[MergeDeployment],
    stack: &Stack,
    matched_nothing: bool,
) -> ManifestKey {
    let key = stack.merge_key();
    debug_assert!(!matched_nothing || (key.0.is_none() && !key.2));
    // Only the documents are compared; provenance would multiply the memory.
    cache.entry(key.clone()).or_insert_with(|| EffectiveManifest {
        provenance: Default::default(),
        conflicts: Vec::new(),
        ..merge::merge(deployments, stack)
    });
    key
}
