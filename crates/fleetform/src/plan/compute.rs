//! Computing a plan: actions from the configurations, then every device's stack and
//! effective manifest before and after apply, grouped into cohorts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

use super::actions::{Action, ActionKind, classify};
use super::diff::{Change, diff};
use super::redact::Redactor;
use super::steps::{Step, StepOp, steps};
use crate::hub::{Hub, HubError, Projection};
use crate::manifest::Rendered;
use crate::merge::{
    self, CreatedAt, DeviceSample, EffectiveManifest, Grouper, MatchSet, MergeDeployment, Stack, Warning,
};
use crate::model::{Configuration, ConfigurationKind};
use crate::query::{ConditionId, ConditionSet, Scratch, parse_condition};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] HubError),
    #[error("configuration {id} on the hub has {problem}")]
    #[diagnostic(
        code(fleetform::plan::bad_hub_configuration),
        help(
            "the hub sets createdTimeUtc on every configuration; a snapshot must keep it (re-export it with `fleetform snapshot`)"
        )
    )]
    BadHubConfiguration { id: String, problem: String },
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Delete managed deployments that are no longer declared.
    pub prune: bool,
}

/// The deployments a device gets: the standard one and the layered ones, in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StackIds {
    pub standard: Option<String>,
    pub layered: Vec<String>,
    /// Layered deployments that target the device but have no standard one to apply on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without_standard: Vec<String>,
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

/// A complete plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub hub: String,
    /// [`crate::hub::Hub::identity`] of the hub planned against.
    pub hub_id: String,
    pub actions: Vec<Action>,
    pub steps: Vec<Step>,
    /// For replaced deployments: what their content change means, by deployment name.
    pub content_changes: BTreeMap<String, Vec<Change>>,
    pub cohorts: Vec<Cohort>,
    pub totals: DeviceTotals,
    /// Findings on the declared state (after apply).
    pub warnings: Vec<Warning>,
    /// The configurations read from the hub (with real content: never print unredacted).
    pub current: Vec<Configuration>,
    /// What apply writes (with real content: never print unredacted).
    pub declared: Vec<Rendered>,
    pub redactor: Redactor,
    /// After apply: how many IoT Edge devices each deployment (by id) should be applied
    /// to, from the merge of the declared state; `apply --wait` waits for these counts.
    pub expected_applied: BTreeMap<String, u64>,
}

impl Plan {
    pub fn count(&self, kind: ActionKind) -> usize {
        self.actions.iter().filter(|a| a.action == kind).count()
    }

    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Makes the plan for `declared` (rendered with secrets resolved) against `hub`.
pub fn plan(mut declared: Vec<Rendered>, hub: &dyn Hub, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let current = hub.configurations()?;
    super::actions::adopt_ids(&mut declared, &current);
    let actions = classify(&declared, &current, opts.prune);
    let steps = steps(&actions);
    let redactor = Redactor::new(&declared, &current);

    let before = before_state(&current)?;
    let after = after_state(&current, &declared, &actions, &steps)?;
    let content_changes = content_changes(&actions, &current, &declared, &redactor);

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
    let before_conds: Vec<Option<ConditionId>> = before.iter().map(|(_, t)| cond_of(t)).collect();
    let after_conds: Vec<Option<ConditionId>> = after.iter().map(|(_, t)| cond_of(t)).collect();
    let before: Vec<MergeDeployment> = before.into_iter().map(|(d, _)| d).collect();
    let after: Vec<MergeDeployment> = after.into_iter().map(|(d, _)| d).collect();

    // Per device: which deployments match before and after, as one set (after-indices
    // shifted past the before ones) so that the lookup needs no copy.
    let shift = before.len() as u32;
    type Pairs = HashMap<MatchSet, DeviceSample>;
    let pairs: Mutex<Pairs> = Mutex::new(HashMap::new());
    let totals = Mutex::new((0u64, 0u64));
    hub.device_batches(Projection::Targeting, &|batch| {
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
    let pairs: Vec<(MatchSet, MatchSet, DeviceSample)> = pairs
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|(both, sample)| {
            let b = both.iter().filter(|&i| i < shift).collect();
            let a = both.iter().filter(|&i| i >= shift).map(|i| i - shift).collect();
            (b, a, sample)
        })
        .collect();

    // The declared state, merged once per distinct stack: warnings, and the documents
    // devices will run.
    let mut grouper = Grouper::new(&after);
    for (_, a, sample) in &pairs {
        grouper.add_devices(a, sample);
    }
    let fleet = grouper.finish_documents();
    let warnings = fleet.warnings.clone();
    let mut expected_applied: BTreeMap<String, u64> = after.iter().map(|d| (d.id.clone(), 0)).collect();
    for g in &fleet.groups {
        for id in g.stack.standard.iter().chain(&g.stack.layered) {
            *expected_applied.entry(id.clone()).or_default() += g.devices;
        }
    }
    let after_groups: HashMap<&MatchSet, &merge::Group> = fleet.groups.iter().map(|g| (&g.matches, g)).collect();

    let mut cache_b: HashMap<ManifestKey, EffectiveManifest> = HashMap::new();
    let mut cohorts: HashMap<(StackIds, StackIds, Vec<Change>), DeviceSample> = HashMap::new();
    let mut totals = DeviceTotals { devices: device_count, edge_devices: edge_count, ..Default::default() };
    for (b, a, sample) in &pairs {
        let Some(group) = after_groups.get(a) else { continue };
        let Some(ma) = fleet.manifest(group.manifest) else { continue };
        let sb = merge::stack(&before, b);
        let mb = cached(&mut cache_b, &before, &sb, b.is_empty());
        let changes = diff(&cache_b[&mb], ma, &redactor);
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

    Ok(Plan {
        hub: hub.describe(),
        hub_id: hub.identity(),
        actions,
        steps,
        content_changes,
        cohorts,
        totals,
        warnings,
        current,
        declared,
        redactor,
        expected_applied,
    })
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

/// The hub's edge deployments as they are, each with its target condition.
pub(crate) fn before_state(current: &[Configuration]) -> Result<Vec<(MergeDeployment, String)>, PlanError> {
    let mut out = Vec::new();
    for c in current.iter().filter(|c| c.is_edge()) {
        out.push((existing(c)?, c.target_condition.clone()));
    }
    Ok(out)
}

fn existing(c: &Configuration) -> Result<MergeDeployment, PlanError> {
    match MergeDeployment::existing(c) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(PlanError::BadHubConfiguration { id: c.id.clone(), problem: "no IoT Edge content".into() }),
        Err(e) => Err(PlanError::BadHubConfiguration { id: c.id.clone(), problem: e.to_string() }),
    }
}

/// The edge deployments once apply has run: untouched ones as they are, updated ones with
/// their new mutable fields (and their old creation time), created ones as created at
/// apply time, in apply order.
pub(crate) fn after_state(
    current: &[Configuration],
    declared: &[Rendered],
    actions: &[Action],
    steps: &[Step],
) -> Result<Vec<(MergeDeployment, String)>, PlanError> {
    let deleted: Vec<&str> = steps.iter().filter(|s| s.op == StepOp::Delete).map(|s| s.id.as_str()).collect();
    let declared_by_id: HashMap<&str, &Configuration> =
        declared.iter().map(|r| (r.configuration.id.as_str(), &r.configuration)).collect();
    let kept_declared: Vec<&str> = actions
        .iter()
        .filter(|a| matches!(a.action, ActionKind::NoOp | ActionKind::Update))
        .filter_map(|a| a.after.as_deref())
        .collect();
    let mut out = Vec::new();
    for c in current.iter().filter(|c| c.is_edge() && !deleted.contains(&c.id.as_str())) {
        let mut d = existing(c)?;
        let mut target = c.target_condition.clone();
        if kept_declared.contains(&c.id.as_str())
            && let Some(decl) = declared_by_id.get(c.id.as_str())
        {
            d.priority = decl.priority;
            target = decl.target_condition.clone();
        }
        out.push((d, target));
    }
    for (n, s) in steps.iter().filter(|s| s.op == StepOp::Create).enumerate() {
        if let Some(c) = declared_by_id.get(s.id.as_str())
            && let Some(d) = MergeDeployment::from_configuration(c, CreatedAt::Pending(n as u32))
        {
            out.push((d, c.target_condition.clone()));
        }
    }
    Ok(out)
}

/// A deployment's own content as a partial manifest: what it writes into each twin.
fn content_manifest(c: &Configuration) -> EffectiveManifest {
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    for (twin, keys) in c.content.modules_content.iter().flatten() {
        let doc = docs.entry(twin.clone()).or_insert_with(|| Value::Object(Map::new()));
        for (k, v) in keys {
            let path: Vec<String> = match k.strip_prefix("properties.desired") {
                Some("") => Vec::new(),
                Some(rest) => rest.trim_start_matches('.').split('.').map(str::to_string).collect(),
                None => continue,
            };
            crate::manifest::set_path(doc, &path, v.clone());
        }
    }
    let edge_agent = docs.remove(merge::EDGE_AGENT).unwrap_or_else(|| Value::Object(Map::new()));
    let edge_hub = docs.remove(merge::EDGE_HUB).unwrap_or_else(|| Value::Object(Map::new()));
    EffectiveManifest {
        no_standard: false,
        unmanaged: false,
        edge_agent,
        edge_hub,
        twins: docs,
        provenance: Default::default(),
        conflicts: Vec::new(),
    }
}

fn content_changes(
    actions: &[Action],
    current: &[Configuration],
    declared: &[Rendered],
    redactor: &Redactor,
) -> BTreeMap<String, Vec<Change>> {
    let mut out = BTreeMap::new();
    for a in actions.iter().filter(|a| a.action == ActionKind::Replace) {
        // Compare with the newest copy on the hub.
        let copies: Vec<&Configuration> =
            a.before.iter().filter_map(|b| current.iter().find(|c| c.id == b.id)).collect();
        if copies.is_empty() {
            continue;
        }
        let old = super::actions::newest(&copies);
        let Some(new) = declared.iter().find(|r| Some(&r.configuration.id) == a.after.as_ref()) else { continue };
        let mut changes = diff(&content_manifest(old), &content_manifest(&new.configuration), redactor);
        if old.kind() != new.configuration.kind() {
            let kind = |k: ConfigurationKind| format!("{k:?}").to_lowercase();
            changes.insert(
                0,
                Change::RuntimeChanged {
                    field: "deployment kind".into(),
                    before: Some(kind(old.kind())),
                    after: Some(kind(new.configuration.kind())),
                },
            );
        }
        if changes.is_empty() {
            // Same document, different bytes: a secret changed (it is part of the id).
            changes.push(Change::RuntimeChanged {
                field: "content".into(),
                before: Some(super::redact::SECRET_CHANGED.into()),
                after: Some(super::redact::SECRET_CHANGED.into()),
            });
        }
        out.insert(a.name.clone(), changes);
    }
    out
}
