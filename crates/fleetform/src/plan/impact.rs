//! What a plan does to the fleet: every device's stack before and after, folded over the
//! twins once; the declared state merged once per distinct stack; devices grouped into
//! cohorts by their change.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

// Fx, not SipHash: cohort keys hash whole change lists (module names, images, twin paths),
// and SipHash over them was 7% of a 20k plan's instructions. The keys come from the user's
// own deployments and fleet, not from a peer choosing collisions.
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::diff::{Change, diff};
use super::redact::Redactor;
use super::running::{self, Running, RunningGroups};
use super::state::DeploymentState;
use crate::merge::{self, DeviceSample, EffectiveManifest, Grouper, MatchSet, MergeDeployment, Stack, Warning};
use crate::model::{AgentReport, ConfigurationKind, DeploymentId, DeviceIds};
use crate::model::{FleetRead, Projection, ReadError, ReadPaths, Twin, TwinPath};
use crate::query::{ConditionId, ConditionMemo, ConditionSet, Tri, is_edge_device, parse_condition};

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
    pub(crate) fn of(stack: &Stack) -> Self {
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
    /// What the devices run today, as their `$edgeAgent` twins report it, grouped: only for
    /// cohorts whose devices' modules the deployments cannot tell ([`running::needs_report`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub running_before: Vec<Running>,
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
    /// After apply: how many IoT Edge devices each deployment's (by id) target matches,
    /// applied or not.
    pub targeted: BTreeMap<String, u64>,
}

/// Devices sharing the same matches: before-indices, then after-indices shifted past them.
type Pairs = FxHashMap<MatchSet, (DeviceSample, Option<Vec<String>>)>;

/// The IoT Edge devices that match the same deployments before and the same after.
pub(super) struct MatchPair {
    pub(super) before: MatchSet,
    pub(super) after: MatchSet,
    pub(super) devices: DeviceSample,
    /// Every device id, kept only where the agent's report may be needed
    /// ([`AlsoRead::running_before`]): the ordinary plan keeps none.
    pub(super) device_ids: Option<Vec<String>>,
}

/// One pass over the fleet.
pub(super) struct Fold {
    pub(super) pairs: Vec<MatchPair>,
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
    also: &AlsoRead<'_>,
) -> Result<Impact, ReadError> {
    let Fold { pairs, devices, edge_devices } = fold_devices(before, after, fleet, also)?;
    let (before, after) = (&before.deployments, &after.deployments);
    let mut targeted: BTreeMap<String, u64> = after.iter().map(|d| (d.id.to_string(), 0)).collect();
    for p in &pairs {
        for i in p.after.iter() {
            *targeted.entry(after[i as usize].id.to_string()).or_default() += p.devices.count;
        }
    }

    // The current state's manifests, merged once per distinct stack of a pair.
    let mut cache_b: FxHashMap<ManifestKey, EffectiveManifest> = FxHashMap::default();
    let before_of: Vec<(StackIds, ManifestKey)> = pairs
        .iter()
        .map(|p| {
            let sb = merge::stack(before, &p.before);
            let key = cached(&mut cache_b, before, &sb, p.before.is_empty());
            (StackIds::of(&sb), key)
        })
        .collect();

    // The declared state, merged once per distinct stack: warnings, and the documents
    // devices will run, each diffed against the pairs' current ones as soon as it is
    // merged and freed then (holding them all was most of the plan's memory).
    let mut grouper = Grouper::new(after);
    for p in &pairs {
        grouper.add_devices(&p.after, &p.devices);
    }
    let stacked = grouper.stack_groups();
    let mut pairs_of: Vec<Vec<usize>> = vec![Vec::new(); stacked.manifest_count()];
    let mut after_of: Vec<Option<StackIds>> = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let group = stacked.group_of(&p.after);
        if let Some((_, manifest)) = group {
            pairs_of[manifest.0 as usize].push(i);
        }
        after_of.push(group.map(|(stack, _)| StackIds::of(stack)));
    }
    let (merged, diffs) = stacked.finish_each(|manifest, ma| {
        // The same for every pair of this manifest: made once, for the first that needs it.
        let mut declared_here: Option<Declared> = None;
        pairs_of[manifest.0 as usize]
            .iter()
            .map(|&i| {
                let mb = &cache_b[&before_of[i].1];
                // Only these pairs can need their agents' reports, and only while `ma` is
                // still in hand: it is freed once this visit returns.
                let declared = (pairs[i].device_ids.is_some() && running::needs_report(mb, ma))
                    .then(|| declared_here.get_or_insert_with(|| running::declared_modules(ma, redactor)).clone());
                (i, (diff(mb, ma, redactor), declared))
            })
            .collect::<Vec<_>>()
    });
    let mut changes_of: Vec<Option<(Vec<Change>, Option<Declared>)>> = vec![None; pairs.len()];
    for (i, changes) in diffs.into_iter().flatten() {
        changes_of[i] = Some(changes);
    }
    let warnings = merged.warnings;
    let mut expected_applied: BTreeMap<String, u64> = after.iter().map(|d| (d.id.to_string(), 0)).collect();
    for g in &merged.groups {
        for id in g.stack.standard.iter().chain(&g.stack.layered) {
            *expected_applied.entry(id.to_string()).or_default() += g.devices;
        }
    }

    let mut cohorts: FxHashMap<CohortKey, DeviceSample> = FxHashMap::default();
    // Cohorts whose devices' modules only their agents can tell: their devices, with what
    // is declared for them.
    let mut unknown: Vec<Unknown> = Vec::new();
    let mut totals = DeviceTotals { devices, edge_devices, ..Default::default() };
    for ((MatchPair { devices: sample, device_ids, .. }, (ib, _)), (ia, changes)) in
        pairs.into_iter().zip(before_of).zip(after_of.into_iter().zip(changes_of))
    {
        let (Some(ia), Some((changes, declared))) = (ia, changes) else { continue };
        if changes.is_empty() && ib == ia {
            continue;
        }
        if changes.is_empty() {
            totals.restacked += sample.count;
        } else {
            totals.changed += sample.count;
        }
        let key = (ib, ia, changes);
        if let (Some(ids), Some(declared)) = (device_ids, declared)
            && !key.2.is_empty()
        {
            unknown.push((key.clone(), declared, ids));
        }
        cohorts.entry(key).or_default().merge(&sample);
    }
    let running = running_before(fleet, unknown, edge_devices, redactor)?;
    drop_elsewhere(cache_b);
    Ok(Impact { cohorts: sorted_cohorts(cohorts, running), totals, warnings, expected_applied, targeted })
}

type CohortKey = (StackIds, StackIds, Vec<Change>);

/// The modules declared for a cohort's devices: name → image.
type Declared = BTreeMap<String, Option<String>>;

/// A cohort's devices whose modules only their agents can tell: the cohort, the modules
/// declared for them, their ids (moved out of the pass's pairs: a million on an empty hub).
type Unknown = (CohortKey, Declared, Vec<String>);

/// What the devices of `unknown` run, by cohort: one read of their `$edgeAgent` twins,
/// nothing at all when there are none. Each report is compared with its cohort's
/// declaration as it arrives, on the reading threads, and only the groups are kept: holding
/// every report until the read ended was a map of every unmanaged device's id and modules
/// (a million of them on an empty hub).
fn running_before(
    fleet: &dyn FleetRead,
    mut unknown: Vec<Unknown>,
    edge_devices: u64,
    redactor: &Redactor,
) -> Result<FxHashMap<CohortKey, Vec<Running>>, ReadError> {
    if unknown.is_empty() {
        return Ok(FxHashMap::default());
    }
    // Several pairs can end in one cohort: each cohort once, and per device the cohort and
    // the declaration (the pair's) it is compared with. The ids are moved, not copied: the
    // list the read is given is the one the reports are looked up in.
    let mut cohort_of: FxHashMap<&CohortKey, u32> = FxHashMap::default();
    let mut cohorts: Vec<&CohortKey> = Vec::new();
    let mut declared: Vec<&Declared> = Vec::with_capacity(unknown.len());
    let mut owned: Vec<(String, Owner)> = Vec::new();
    for (key, decl, ids) in &mut unknown {
        let c = *cohort_of.entry(key).or_insert_with(|| {
            cohorts.push(key);
            (cohorts.len() - 1) as u32
        });
        let pair = declared.len() as u32;
        declared.push(decl);
        owned.extend(std::mem::take(ids).into_iter().map(|id| (id, Owner { cohort: c, pair })));
    }
    drop(cohort_of);
    owned.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // One entry per distinct id, and all its occurrences: a fleet read over REST may list a
    // device twice (pages overlap while devices are added), and each occurrence is counted
    // in its cohort with the one report, as the pass counted it.
    let mut devices: Vec<String> = Vec::with_capacity(owned.len());
    let mut owners: Vec<Owner> = Vec::with_capacity(owned.len());
    let mut first_owner: Vec<u32> = Vec::with_capacity(owned.len() + 1);
    for (id, o) in owned {
        if devices.last() != Some(&id) {
            first_owner.push(owners.len() as u32);
            devices.push(id);
        }
        owners.push(o);
    }
    first_owner.push(owners.len() as u32);
    let owners_of = |i: usize| &owners[first_owner[i] as usize..first_owner[i + 1] as usize];
    // Sorted and distinct already: kept in this order, so positions index `owners`.
    debug_assert!(devices.windows(2).all(|w| w[0] < w[1]), "ids sorted and distinct");
    let devices = DeviceIds::new(devices);
    let reported: Vec<AtomicBool> = (0..devices.len()).map(|_| AtomicBool::new(false)).collect();
    let groups: Vec<Mutex<RunningGroups>> = cohorts.iter().map(|_| Mutex::default()).collect();
    fleet.agent_reports(&devices, edge_devices, &|batch: Vec<AgentReport>| {
        for r in &batch {
            let Some(i) = devices.position(&r.device_id) else { continue };
            // An agent twin is reported once (the snapshot refuses duplicates, the hub
            // returns one row per twin); should one come twice, the first counts.
            if reported[i].swap(true, Ordering::Relaxed) {
                continue;
            }
            for o in owners_of(i) {
                let modules = running::running_modules(r.modules.as_ref(), declared[o.pair as usize], redactor);
                groups[o.cohort as usize].lock().unwrap_or_else(|e| e.into_inner()).add(&r.device_id, modules);
            }
        }
        Ok(())
    })?;
    let mut groups: Vec<RunningGroups> =
        groups.into_iter().map(|g| g.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
    // No report at all: what the device runs is unknown.
    for (i, (id, seen)) in devices.as_slice().iter().zip(&reported).enumerate() {
        if !seen.load(Ordering::Relaxed) {
            for o in owners_of(i) {
                groups[o.cohort as usize].add(id, None);
            }
        }
    }
    Ok(cohorts.into_iter().zip(groups).map(|(k, g)| (k.clone(), g.finish())).collect())
}

/// A device whose agent's report is read: its cohort and the pair whose declaration it is
/// compared with (indices in `running_before`'s lists).
struct Owner {
    cohort: u32,
    pair: u32,
}

/// Frees `value` on a thread of its own. The merged documents are a JSON tree per module
/// and distinct stack: at 100k devices freeing them took a tenth of the plan's CPU on the
/// thread that still has to render, while the other core idled. If the process exits
/// first, the OS reclaims the memory all the same.
fn drop_elsewhere<T: Send + 'static>(value: T) {
    if std::thread::Builder::new().name("drop".into()).spawn(move || drop(value)).is_err() {
        // No thread to be had: the value was moved into the failed closure and is
        // freed here, as it would have been without this helper.
    }
}

/// What one thread has folded so far. Kept across batches (a pool of lanes, one per
/// thread that visits at once), so that a combination of values is evaluated once per
/// thread over the whole fleet, not once per batch.
struct Lane<'s> {
    memo: ConditionMemo<'s>,
    /// Per combination: its index in `pairs`, once known.
    pair_of: Vec<Option<u32>>,
    /// Distinct match sets (combinations often differ only in deployments nobody targets),
    /// with their device ids where [`AlsoRead::running_before`] may need them.
    pairs: Vec<(MatchSet, DeviceSample, Option<Vec<String>>)>,
    index: FxHashMap<MatchSet, u32>,
    devices: u64,
    edge_devices: u64,
}

impl<'s> Lane<'s> {
    fn new(set: &'s ConditionSet) -> Self {
        Lane {
            memo: ConditionMemo::new(set),
            pair_of: Vec::new(),
            pairs: Vec::new(),
            index: FxHashMap::default(),
            devices: 0,
            edge_devices: 0,
        }
    }
}

/// Per device: which deployments match before and after, as one set (after-indices
/// shifted past the before ones) so that the lookup needs no copy.
/// Another fold that rides on the impact's pass over the fleet, so that a plan reads the
/// twins once (over REST every page counts against the hub's query quota).
pub struct AlsoRead<'a> {
    /// The paths it reads, besides the target conditions'.
    pub paths: Vec<TwinPath>,
    /// Sees every batch of twins.
    pub visit: &'a (dyn Fn(&[Twin]) + Sync),
    /// Whether to read, for the devices whose modules the deployments cannot tell, what
    /// their agents report running ([`Cohort::running_before`]). Off for the `--base`
    /// section, which compares two declared states and not what the hub runs.
    pub running_before: bool,
}

pub(super) fn fold_devices(
    before: &DeploymentState,
    after: &DeploymentState,
    fleet: &dyn FleetRead,
    also: &AlsoRead<'_>,
) -> Result<Fold, ReadError> {
    // One condition set for both states: a condition shared by several deployments (or
    // unchanged by the plan) is evaluated once per combination of the values it reads.
    let mut set = ConditionSet::new();
    let mut by_text: FxHashMap<String, Option<ConditionId>> = FxHashMap::default();
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
    // Which match sets may need the agent's report, decided once per set from the kinds
    // alone (the merge that settles it comes after the pass): no standard deployment
    // before and one after, or a standard one after that declares no modules.
    let is_standard = |d: &MergeDeployment| d.kind == ConfigurationKind::Standard;
    let before_standard: Vec<bool> = before.deployments.iter().map(is_standard).collect();
    let after_standard: Vec<bool> = after.deployments.iter().map(is_standard).collect();
    let after_empty: Vec<bool> = after.deployments.iter().map(|d| is_standard(d) && declares_no_modules(d)).collect();
    let may_need_report = |both: &MatchSet| {
        let mut standard_before = false;
        let (mut standard_after, mut empty_after) = (false, false);
        for i in both.iter() {
            if i < shift {
                standard_before |= before_standard[i as usize];
            } else {
                standard_after |= after_standard[(i - shift) as usize];
                empty_after |= after_empty[(i - shift) as usize];
            }
        }
        also.running_before && standard_after && (!standard_before || empty_after)
    };
    let match_set = |outcomes: &[Tri]| {
        let mut both = MatchSet::new();
        let targets = |c: &Option<ConditionId>| c.is_some_and(|c| outcomes.get(c).is_some_and(|t| t.is_true()));
        for (i, c) in before_conds.iter().enumerate() {
            if targets(c) {
                both.insert(i as u32);
            }
        }
        for (i, c) in after_conds.iter().enumerate() {
            if targets(c) {
                both.insert(shift + i as u32);
            }
        }
        both
    };
    let idle: Mutex<Vec<Lane<'_>>> = Mutex::new(Vec::new());
    let paths = ReadPaths::new(set.read_paths().paths().iter().cloned().chain(also.paths.iter().cloned()));
    fleet.device_batches(Projection::Paths(paths), &|batch| {
        (also.visit)(&batch);
        let taken = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut lane = taken.unwrap_or_else(|| Lane::new(&set));
        lane.devices += batch.len() as u64;
        for twin in &batch {
            // Deployments target IoT Edge devices only (docs/hub-semantics.md#targeting).
            if !is_edge_device(twin.value()) {
                continue;
            }
            lane.edge_devices += 1;
            let combination = lane.memo.classify(twin.value()) as usize;
            if combination >= lane.pair_of.len() {
                lane.pair_of.resize(combination + 1, None);
            }
            let pair = match lane.pair_of[combination] {
                Some(pair) => pair,
                None => {
                    let both = match_set(lane.memo.outcomes(combination as u32));
                    let next = lane.pairs.len() as u32;
                    let pair = *lane.index.entry(both.clone()).or_insert(next);
                    if pair == next {
                        let ids = may_need_report(&both).then(Vec::new);
                        lane.pairs.push((both, DeviceSample::default(), ids));
                    }
                    lane.pair_of[combination] = Some(pair);
                    pair
                }
            };
            let (_, sample, ids) = &mut lane.pairs[pair as usize];
            sample.add(twin.device_id());
            if let Some(ids) = ids {
                ids.push(twin.device_id().to_string());
            }
        }
        idle.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
        Ok(())
    })?;
    let lanes = idle.into_inner().unwrap_or_else(|e| e.into_inner());
    let (mut device_count, mut edge_count) = (0, 0);
    let mut pairs: Pairs = FxHashMap::default();
    for lane in lanes {
        device_count += lane.devices;
        edge_count += lane.edge_devices;
        for (both, sample, ids) in lane.pairs {
            match pairs.get_mut(&both) {
                Some((kept, kept_ids)) => {
                    kept.merge(&sample);
                    if let (Some(k), Some(i)) = (kept_ids, ids) {
                        k.extend(i);
                    }
                }
                None => {
                    pairs.insert(both, (sample, ids));
                }
            }
        }
    }
    let pairs = pairs
        .into_iter()
        .map(|(both, (devices, device_ids))| MatchPair {
            before: both.iter().filter(|&i| i < shift).collect(),
            after: both.iter().filter(|&i| i >= shift).map(|i| i - shift).collect(),
            devices,
            device_ids,
        })
        .collect();
    Ok(Fold { pairs, devices: device_count, edge_devices: edge_count })
}

/// Whether a deployment's `$edgeAgent` content declares no modules: on its own it removes
/// every module from the devices it applies to (docs/hub-semantics.md#unmanaged).
fn declares_no_modules(d: &MergeDeployment) -> bool {
    let Some(agent) = d.content.get(crate::model::EDGE_AGENT) else { return true };
    let whole = agent.get("properties.desired").and_then(|p| p.get("modules"));
    let dotted = agent.get("properties.desired.modules");
    let named = agent.keys().any(|k| k.starts_with("properties.desired.modules."));
    !named && [whole, dotted].into_iter().flatten().all(|m| m.as_object().is_none_or(|m| m.is_empty()))
}

fn sorted_cohorts(
    cohorts: FxHashMap<CohortKey, DeviceSample>,
    mut running: FxHashMap<CohortKey, Vec<Running>>,
) -> Vec<Cohort> {
    let mut cohorts: Vec<Cohort> = cohorts
        .into_iter()
        .map(|(key, s)| {
            let running_before = running.remove(&key).unwrap_or_default();
            let (stack_before, stack_after, changes) = key;
            Cohort { count: s.count, samples: s.samples, stack_before, stack_after, changes, running_before }
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
    cache: &mut FxHashMap<ManifestKey, EffectiveManifest>,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::model::{Twin, Twins};
    use crate::plan::{Fate, PlanOptions, plan};
    use crate::test_support::{PROD_STANDARD, rendered};

    fn device(id: &str) -> Twin {
        Twin::from_value(json!({"deviceId": id, "capabilities": {"iotEdge": true}, "tags": {"environment": "prod"}}))
            .unwrap()
    }

    /// A device listed twice (REST pages that overlap) is counted twice by the pass, and
    /// both occurrences get its one agent report, as they did when every report was kept.
    #[test]
    fn a_device_read_twice_gets_its_agents_report_both_times() {
        let declared = rendered(PROD_STANDARD);
        let mut fleet = Twins::new("fleet", ["d1", "d1", "d2", "d3"].map(device).to_vec());
        fleet.modules = vec![json!({"deviceId": "d1", "moduleId": "$edgeAgent",
            "properties": {"reported": {"modules": {"X": {"settings": {"image": "x:1"}}}}}})];
        let p = plan(declared, Vec::new(), &fleet, &PlanOptions::default()).unwrap();
        assert_eq!(p.cohorts.len(), 1);
        assert_eq!(p.cohorts[0].count, 4);
        let running = &p.cohorts[0].running_before;
        type Group<'r> = (u64, Vec<&'r str>, Option<Vec<(&'r str, Fate)>>);
        let got: Vec<Group<'_>> = running
            .iter()
            .map(|r| {
                let modules = r.modules.as_ref().map(|ms| ms.iter().map(|m| (m.module.as_str(), m.fate)).collect());
                (r.count, r.samples.iter().map(String::as_str).collect(), modules)
            })
            .collect();
        assert_eq!(got, [(2, vec!["d1"], Some(vec![("X", Fate::Removed)])), (2, vec!["d2", "d3"], None)]);
    }
}
