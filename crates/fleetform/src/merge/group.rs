//! Fleet-wide merging, grouped so that cost grows with distinct stacks, not devices.
//!
//! Devices that match the same set of deployments get the same stack, the same manifest
//! and the same findings, so each distinct [`MatchSet`] is stacked and checked once, and
//! each distinct stack is merged once (different match sets often give one stack: a
//! skipped deployment changes the set, not the result). Per device only a 4-byte group
//! index is kept, so a million devices cost a few megabytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::apply::merge_documents;
use super::checks::{Check, DeviceSample, Warning, manifest_checks, stack_checks};
use super::{EffectiveManifest, MatchSet, MergeDeployment, Stack, merge, stack};
use crate::model::ConfigurationKind;

/// Index of a group in [`Fleet::groups`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

/// Index of a manifest in [`Fleet::manifests`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ManifestId(pub u32);

/// Devices sharing one match set.
///
/// JSON: `id`, `matches` (deployment indices), `stack`, `manifest` (index into the
/// fleet's `manifests`), `devices` (count), `samples` (up to 5 ids, smallest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub id: GroupId,
    pub matches: MatchSet,
    pub stack: Stack,
    pub manifest: ManifestId,
    pub devices: u64,
    pub samples: Vec<String>,
}

/// The merged fleet.
///
/// JSON: `groups` (in first-seen order), `manifests` (one per distinct stack, unless
/// dropped by [`Grouper::finish_without_manifests`]),
/// `warnings` (sorted). The per-device index is not serialised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fleet {
    pub groups: Vec<Group>,
    pub manifests: Vec<EffectiveManifest>,
    pub warnings: Vec<Warning>,
    /// Group of each device, by the order devices were added.
    #[serde(skip)]
    pub device_groups: Vec<GroupId>,
}

impl Fleet {
    /// The group of the `ordinal`-th device added.
    pub fn group_of(&self, ordinal: usize) -> Option<&Group> {
        let id = self.device_groups.get(ordinal)?;
        self.groups.get(id.0 as usize)
    }

    /// A kept manifest (`None` after [`Grouper::finish_without_manifests`]).
    pub fn manifest(&self, id: ManifestId) -> Option<&EffectiveManifest> {
        self.manifests.get(id.0 as usize)
    }

    /// A group's manifest: the kept one when there is one, else merged again.
    pub fn merged<'a>(&'a self, deployments: &[MergeDeployment], group: &Group) -> Cow<'a, EffectiveManifest> {
        match self.manifest(group.manifest) {
            Some(m) => Cow::Borrowed(m),
            None => Cow::Owned(merge(deployments, &group.stack)),
        }
    }

    /// The manifest of the `ordinal`-th device added.
    pub fn manifest_of(&self, ordinal: usize) -> Option<&EffectiveManifest> {
        self.manifest(self.group_of(ordinal)?.manifest)
    }

    pub fn device_count(&self) -> usize {
        self.device_groups.len()
    }
}

/// How much of each merged manifest [`Grouper`] keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Full,
    Documents,
    Nothing,
}

/// Collects devices by match set, then merges each distinct set once.
pub struct Grouper<'d> {
    deployments: &'d [MergeDeployment],
    index: HashMap<MatchSet, GroupId>,
    groups: Vec<(MatchSet, DeviceSample)>,
    device_groups: Vec<GroupId>,
}

impl<'d> Grouper<'d> {
    pub fn new(deployments: &'d [MergeDeployment]) -> Self {
        Grouper { deployments, index: HashMap::new(), groups: Vec::new(), device_groups: Vec::new() }
    }

    /// Adds one device. The match set is borrowed, so a caller can reuse one buffer for
    /// every device; it is copied only when it starts a new group.
    pub fn add(&mut self, device_id: &str, matches: &MatchSet) -> GroupId {
        let id = self.group_for(matches);
        self.groups[id.0 as usize].1.add(device_id);
        self.device_groups.push(id);
        id
    }

    /// Adds devices already counted and sampled elsewhere (a plan groups devices by their
    /// match sets before and after, then hands each side's groups here). No per-device
    /// group index is kept for them.
    pub fn add_devices(&mut self, matches: &MatchSet, devices: &DeviceSample) -> GroupId {
        let id = self.group_for(matches);
        self.groups[id.0 as usize].1.merge(devices);
        id
    }

    /// The group of a match set, started empty the first time the set is seen.
    fn group_for(&mut self, matches: &MatchSet) -> GroupId {
        if let Some(&id) = self.index.get(matches) {
            return id;
        }
        let id = GroupId(self.groups.len() as u32);
        self.index.insert(matches.clone(), id);
        self.groups.push((matches.clone(), DeviceSample::default()));
        id
    }

    /// Number of distinct match sets seen so far.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Stacks, merges and checks every group, keeping every distinct manifest in
    /// [`Fleet::manifests`].
    pub fn finish(self) -> Fleet {
        self.finish_with(Keep::Full)
    }

    /// Like [`Grouper::finish`], but keeps only the merged documents of each manifest
    /// (its provenance and conflicts, which dominate its size, are dropped once checked).
    /// For comparing what devices run, as a plan does, at a fraction of the memory.
    pub fn finish_documents(self) -> Fleet {
        self.finish_with(Keep::Documents)
    }

    /// Like [`Grouper::finish`], but drops each manifest once it is checked:
    /// [`Fleet::manifests`] stays empty and [`Group::manifest`] only tells which groups
    /// share a manifest. Merged documents are large next to a stack (a JSON tree per
    /// module and twin), so with tens of thousands of distinct stacks this keeps memory
    /// to the groups; re-merge a group on demand with [`Fleet::merged`].
    pub fn finish_without_manifests(self) -> Fleet {
        self.finish_with(Keep::Nothing)
    }

    fn finish_with(self, keep: Keep) -> Fleet {
        self.stack_groups().finish_inner(keep, |_, _| ()).0
    }

    /// Stacks every group and numbers the distinct stacks, merging nothing yet: the
    /// caller can see which groups share a manifest before the manifests exist, then
    /// merge with [`Stacked::finish_each`].
    pub fn stack_groups(self) -> Stacked<'d> {
        let deployments = self.deployments;
        // Stack every group, and number the distinct stacks in first-seen order.
        let mut by_stack: HashMap<(Option<u32>, Vec<u32>, bool), ManifestId> = HashMap::new();
        let mut distinct: Vec<usize> = Vec::new();
        let mut stacked = Vec::with_capacity(self.groups.len());
        for (i, (matches, devices)) in self.groups.into_iter().enumerate() {
            let stack = stack(deployments, &matches);
            let next = ManifestId(distinct.len() as u32);
            let id = *by_stack.entry(stack.merge_key()).or_insert(next);
            if id == next {
                distinct.push(i);
            }
            stacked.push((matches, devices, stack, id));
        }
        Stacked { deployments, index: self.index, stacked, distinct, device_groups: self.device_groups }
    }
}

/// A [`Grouper`]'s groups, stacked, with their distinct stacks numbered but not merged.
pub struct Stacked<'d> {
    deployments: &'d [MergeDeployment],
    index: HashMap<MatchSet, GroupId>,
    stacked: Vec<(MatchSet, DeviceSample, Stack, ManifestId)>,
    /// Per distinct stack: the first group that has it.
    distinct: Vec<usize>,
    device_groups: Vec<GroupId>,
}

impl Stacked<'_> {
    /// Number of distinct stacks: the manifests [`Stacked::finish_each`] merges.
    pub fn manifest_count(&self) -> usize {
        self.distinct.len()
    }

    /// The stack of the group of `matches`, and the manifest it shares with others.
    pub fn group_of(&self, matches: &MatchSet) -> Option<(&Stack, ManifestId)> {
        let id = self.index.get(matches)?;
        let (_, _, stack, manifest) = self.stacked.get(id.0 as usize)?;
        Some((stack, *manifest))
    }

    /// Like [`Grouper::finish_without_manifests`], but hands each merged manifest (its
    /// documents; provenance only where a finding needs it) to `visit` on the thread that
    /// merged it, and frees it there. Results come back indexed by [`ManifestId`]. Holding
    /// every distinct stack's documents at once was most of a large plan's memory, and
    /// faulting that memory in most of its time.
    pub fn finish_each<R: Send>(self, visit: impl Fn(ManifestId, &EffectiveManifest) -> R + Sync) -> (Fleet, Vec<R>) {
        self.finish_inner(Keep::Nothing, visit)
    }

    fn finish_inner<R: Send>(
        self,
        keep: Keep,
        visit: impl Fn(ManifestId, &EffectiveManifest) -> R + Sync,
    ) -> (Fleet, Vec<R>) {
        let Stacked { deployments, stacked, distinct, device_groups, .. } = self;
        // Merge and check each distinct stack once, on every core: merging is pure, and
        // with thousands of distinct stacks it is most of the work.
        let numbered: Vec<(ManifestId, usize)> =
            distinct.iter().enumerate().map(|(m, &i)| (ManifestId(m as u32), i)).collect();
        let merged = parallel_map(&numbered, |&(id, i)| {
            // Provenance only names the deployment a finding blames (`from`), never
            // decides whether there is one: merge without it, and again with it only
            // for the few stacks that have findings.
            let stack = &stacked[i].2;
            let mut manifest = match keep {
                Keep::Full => merge(deployments, stack),
                Keep::Documents | Keep::Nothing => merge_documents(deployments, stack),
            };
            let mut checks = manifest_checks(&manifest);
            if !matches!(keep, Keep::Full) && !checks.is_empty() {
                manifest = merge(deployments, stack);
                checks = manifest_checks(&manifest);
            }
            let visited = visit(id, &manifest);
            let kept = match keep {
                Keep::Full => Some(manifest),
                Keep::Documents => {
                    Some(EffectiveManifest { provenance: Default::default(), conflicts: Vec::new(), ..manifest })
                }
                Keep::Nothing => None,
            };
            (checks, kept, visited)
        });
        let mut manifest_findings = Vec::with_capacity(merged.len());
        let mut manifests = Vec::new();
        let mut visits = Vec::with_capacity(merged.len());
        for (checks, kept, visited) in merged {
            manifest_findings.push(checks);
            manifests.extend(kept);
            visits.push(visited);
        }
        let mut findings: BTreeMap<Check, DeviceSample> = BTreeMap::new();
        // Per deployment: the devices it matches, and how many it applies to.
        let mut matched: Vec<DeviceSample> = vec![DeviceSample::default(); deployments.len()];
        let mut applied: Vec<u64> = vec![0; deployments.len()];
        let mut groups = Vec::with_capacity(stacked.len());
        for (i, (matches, devices, stack, manifest_id)) in stacked.into_iter().enumerate() {
            for check in
                manifest_findings[manifest_id.0 as usize].iter().cloned().chain(stack_checks(deployments, &stack))
            {
                findings.entry(check).or_default().merge(&devices);
            }
            for d in matches.iter() {
                if let Some(m) = matched.get_mut(d as usize) {
                    m.merge(&devices);
                }
            }
            for &d in stack.layered_indices() {
                applied[d as usize] += devices.count;
            }
            groups.push(Group {
                id: GroupId(i as u32),
                matches,
                stack,
                manifest: manifest_id,
                devices: devices.count,
                samples: devices.samples,
            });
        }

        for (i, d) in deployments.iter().enumerate() {
            if d.kind == ConfigurationKind::Layered && matched[i].count > 0 && applied[i] == 0 {
                findings.insert(Check::LayeredNeverApplies { deployment: d.id.to_string() }, matched[i].clone());
            }
        }

        let fleet = Fleet {
            groups,
            manifests,
            warnings: findings.into_iter().map(|(check, devices)| Warning::new(check, &devices)).collect(),
            device_groups,
        };
        (fleet, visits)
    }
}

/// Groups and merges a whole fleet: `(device id, match set)` for every device.
pub fn merge_fleet<I, S>(deployments: &[MergeDeployment], devices: I) -> Fleet
where
    I: IntoIterator<Item = (S, MatchSet)>,
    S: AsRef<str>,
{
    let mut grouper = Grouper::new(deployments);
    for (id, matches) in devices {
        grouper.add(id.as_ref(), &matches);
    }
    grouper.finish()
}

/// `items.iter().map(f)` on every available core, results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        // A panic in a worker is a bug in merge; re-raise it here rather than hide it.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}
