//! Per-device layered merge: what each device runs once the hub has stacked the standard
//! and layered deployments that target it (docs/hub-semantics.md#standard-winner).
//!
//! The engine works on the hub's wire content (`Configuration.content.modulesContent`), so
//! that the hub's current configurations and fleetform's rendered declared ones go through
//! the same code. The pipeline for one device is:
//!
//! 1. the query engine decides which deployments match the device: a [`MatchSet`] of
//!    indices into the deployment list;
//! 2. [`stack`] picks the standard deployment that applies and the layered ones applied on
//!    top of it, in the order applied, and says why every other match was skipped;
//! 3. [`merge`] replays the stack's writes into an [`EffectiveManifest`]: the merged
//!    `$edgeAgent` and `$edgeHub` desired documents, every module twin's desired
//!    properties, and the [`Provenance`] of each module, route, runtime setting and twin
//!    path;
//! 4. [`checks`] flags what the hub would accept but the device would suffer from.
//!
//! For a fleet, [`Grouper`] / [`merge_fleet`] do steps 2–4 once per distinct match set
//! (and the merge once per distinct stack), so the cost grows with the number of distinct
//! stacks, not with the number of devices. [`explain`] turns one device's stack and
//! manifest into the JSON shape `fleetform explain --format json` prints.
//!
//! Everything returned derives `serde::Serialize`; field names are part of the JSON output
//! and documented on each type.

mod apply;
pub mod checks;
mod group;
mod provenance;
mod stack;
mod view;

use crate::model::DeploymentId;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::model::{Configuration, ConfigurationKind, Priority};

pub use apply::merge;
pub use checks::{BadWarningCode, Check, DeviceSample, JsonType, QueryKind, TypeCount, Warning, WarningCode};
pub use group::{Fleet, Group, GroupId, Grouper, ManifestId, Stacked, merge_fleet};
pub use provenance::{Conflict, Origin, PathOrigin, ProvPath, Provenance};
pub use stack::{SkipReason, Skipped, Stack, stack};
pub use view::{Entry, ExplainView, ManifestView, RemovedPart, RouteEntry, TwinView, explain};

/// The module twin that carries the agent's desired document.
pub use crate::model::EDGE_AGENT;
/// The module twin that carries the edge hub's desired document (routes).
pub const EDGE_HUB: &str = "$edgeHub";

/// One deployment as the merge sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeDeployment {
    /// The hub id (for declared deployments, the id they will be created with).
    pub id: DeploymentId,
    pub kind: ConfigurationKind,
    pub priority: Priority,
    pub created: CreatedAt,
    /// `modulesContent`: module twin id to the keys written into that twin
    /// (`properties.desired` or dotted `properties.desired.<path>`).
    pub content: BTreeMap<String, Map<String, Value>>,
}

/// Why a configuration cannot enter the merge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeInputError {
    #[error("configuration `{id}` has no createdTimeUtc, so its age cannot be compared")]
    MissingCreatedTime { id: String },
    #[error("configuration `{id}`: {source}")]
    BadCreatedTime { id: String, source: TimeError },
}

impl MergeDeployment {
    /// Wraps a hub configuration. `None` for device-management configurations, which the
    /// merge (like fleetform as a whole) leaves alone.
    pub fn from_configuration(config: &Configuration, created: CreatedAt) -> Option<Self> {
        let kind = config.kind();
        let content = config.content.modules_content.clone()?;
        if kind == ConfigurationKind::DeviceManagement {
            return None;
        }
        Some(MergeDeployment { id: config.id.clone(), kind, priority: config.priority, created, content })
    }

    /// A configuration read from the hub, aged by its `createdTimeUtc`.
    pub fn existing(config: &Configuration) -> Result<Option<Self>, MergeInputError> {
        if config.kind() == ConfigurationKind::DeviceManagement {
            return Ok(None);
        }
        let text = config
            .created_time_utc
            .as_deref()
            .ok_or_else(|| MergeInputError::MissingCreatedTime { id: config.id.to_string() })?;
        let time = HubTime::parse(text)
            .map_err(|source| MergeInputError::BadCreatedTime { id: config.id.to_string(), source })?;
        Ok(Self::from_configuration(config, CreatedAt::Existing(time)))
    }

    /// A configuration not yet on the hub: it will be created at apply time, as the
    /// `apply_index`-th creation.
    pub fn pending(config: &Configuration, apply_index: u32) -> Option<Self> {
        Self::from_configuration(config, CreatedAt::Pending(apply_index))
    }
}

/// When a deployment was created, for breaking priority ties (newest wins).
///
/// Every existing deployment is older than every pending one, and pending ones are
/// created in apply order; the derived `Ord` encodes exactly that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreatedAt {
    /// On the hub, created at this instant. JSON: `{"existing": "2024-05-01T10:00:00.1234567Z"}`.
    Existing(HubTime),
    /// Not yet on the hub; created at apply time as the n-th creation. JSON: `{"pending": n}`.
    Pending(u32),
}

/// An instant as the hub reports it (`createdTimeUtc`), comparable to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HubTime(DateTime<Utc>);

/// A `createdTimeUtc` that is not an ISO-8601 instant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an ISO-8601 timestamp such as 2024-05-01T10:00:00.1234567Z")]
pub struct TimeError {
    pub text: String,
}

impl HubTime {
    /// Parses the hub's ISO-8601 timestamps, which carry a variable number of fraction
    /// digits (`10:00:00Z`, `10:00:00.5Z`, `10:00:00.1234567Z`). String comparison would
    /// order those wrongly, hence a real instant. A timestamp without a zone is UTC (the
    /// hub writes `0001-01-01T00:00:00` for "never").
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let trimmed = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
            return Ok(HubTime(t.with_timezone(&Utc)));
        }
        NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|t| HubTime(t.and_utc()))
            .map_err(|_| TimeError { text: text.to_owned() })
    }
}

impl std::fmt::Display for HubTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl Serialize for HubTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for CreatedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreatedAt::Existing(t) => write!(f, "created {t}"),
            CreatedAt::Pending(n) => write!(f, "created at apply time (#{n})"),
        }
    }
}

/// The set of deployments (indices into the deployment list) whose target condition a
/// device matches. A bitset: 100 deployments fit inline in two words, so hashing and
/// comparing sets for grouping costs next to nothing and allocates nothing.
///
/// Kept normalised (no trailing zero words) so that equal sets are equal values.
/// JSON: the sorted list of indices.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MatchSet {
    words: SmallVec<[u64; 2]>,
}

impl MatchSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_indices<I: IntoIterator<Item = u32>>(indices: I) -> Self {
        indices.into_iter().collect()
    }

    pub fn insert(&mut self, index: u32) {
        let word = (index / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (index % 64);
    }

    pub fn remove(&mut self, index: u32) {
        let word = (index / 64) as usize;
        if let Some(w) = self.words.get_mut(word) {
            *w &= !(1 << (index % 64));
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    pub fn contains(&self, index: u32) -> bool {
        self.words.get((index / 64) as usize).is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    pub fn clear(&mut self) {
        self.words.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Indices in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

impl FromIterator<u32> for MatchSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = MatchSet::new();
        for i in iter {
            set.insert(i);
        }
        set
    }
}

impl std::fmt::Debug for MatchSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for MatchSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// The merged result for one device (or one group of devices sharing a stack).
///
/// JSON fields: `no_standard`, `unmanaged`, `edge_agent` (merged `$edgeAgent` desired
/// properties: `schemaVersion`, `runtime`, `systemModules`, `modules`), `edge_hub` (merged
/// `$edgeHub` desired properties: `routes`, `storeAndForwardConfiguration`), `twins`
/// (every other module twin written by the stack: id → desired properties),
/// `provenance`, `conflicts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EffectiveManifest {
    /// Layered deployments matched but no standard one: the device gets no full manifest
    /// (the agent reports 417), so the documents are empty.
    pub no_standard: bool,
    /// No edge deployment matched: the hub changes nothing, the device keeps running
    /// whatever it runs now. The documents are empty and mean "unknown", not "nothing".
    pub unmanaged: bool,
    pub edge_agent: Value,
    pub edge_hub: Value,
    pub twins: BTreeMap<String, Value>,
    pub provenance: Provenance,
    /// Paths written by two layered deployments of equal priority (newest won).
    pub conflicts: Vec<Conflict>,
}

impl EffectiveManifest {
    pub(crate) fn empty(no_standard: bool, unmanaged: bool) -> Self {
        EffectiveManifest {
            no_standard,
            unmanaged,
            edge_agent: Value::Object(Map::new()),
            edge_hub: Value::Object(Map::new()),
            twins: BTreeMap::new(),
            provenance: Provenance::default(),
            conflicts: Vec::new(),
        }
    }

    /// A standard deployment applies: the documents are what the device will run.
    pub fn is_managed(&self) -> bool {
        !self.no_standard && !self.unmanaged
    }

    /// `$edgeAgent` `modules`: module name → module definition.
    pub fn modules(&self) -> Option<&Map<String, Value>> {
        self.edge_agent.get("modules")?.as_object()
    }

    /// `$edgeAgent` `systemModules` (`edgeAgent`, `edgeHub`).
    pub fn system_modules(&self) -> Option<&Map<String, Value>> {
        self.edge_agent.get("systemModules")?.as_object()
    }

    /// `$edgeAgent` `runtime`.
    pub fn runtime(&self) -> Option<&Value> {
        self.edge_agent.get("runtime")
    }

    /// `$edgeHub` `routes`: route name → route string or `{route, priority, timeToLiveSecs}`.
    pub fn routes(&self) -> Option<&Map<String, Value>> {
        self.edge_hub.get("routes")?.as_object()
    }

    pub fn has_module(&self, name: &str) -> bool {
        self.modules().is_some_and(|m| m.contains_key(name))
    }

    /// The desired document of any twin, `$edgeAgent` and `$edgeHub` included.
    pub fn twin(&self, twin: &str) -> Option<&Value> {
        match twin {
            EDGE_AGENT => Some(&self.edge_agent),
            EDGE_HUB => Some(&self.edge_hub),
            other => self.twins.get(other),
        }
    }
}

/// The route text of a route value: a bare string, or the `route` field of the object
/// form (edge hub schema 1.1+).
pub fn route_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("route")?.as_str(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_times_compare_by_instant_not_by_text() {
        let whole = HubTime::parse("2024-05-01T10:00:00Z").unwrap();
        let half = HubTime::parse("2024-05-01T10:00:00.5Z").unwrap();
        let seven = HubTime::parse("2024-05-01T10:00:00.1234567Z").unwrap();
        let later = HubTime::parse("2024-05-01T10:00:00.12345671Z").unwrap();
        // As text, "…00Z" sorts after "…00.5Z"; as instants it is earlier.
        assert!(whole < seven && seven < later && later < half);
        let offset = HubTime::parse("2024-05-01T12:00:00+02:00").unwrap();
        assert_eq!(offset, whole);
        let naive = HubTime::parse("0001-01-01T00:00:00").unwrap();
        assert!(naive < whole);
        assert_eq!(seven.to_string(), "2024-05-01T10:00:00.123456700Z");
        assert!(HubTime::parse("yesterday").is_err());
        assert!(CreatedAt::Existing(half) < CreatedAt::Pending(0));
        assert!(CreatedAt::Pending(0) < CreatedAt::Pending(1));
    }

    #[test]
    fn match_sets_are_normalised_bitsets() {
        let mut a = MatchSet::from_indices([3, 70, 129]);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 70, 129]);
        assert_eq!(a.len(), 3);
        assert!(a.contains(70) && !a.contains(71) && !a.contains(1000));
        a.remove(129);
        assert_eq!(a, MatchSet::from_indices([70, 3]));
        a.remove(3);
        a.remove(70);
        assert!(a.is_empty());
        assert_eq!(a, MatchSet::new());
        assert_eq!(serde_json::to_string(&MatchSet::from_indices([5, 1])).unwrap(), "[1,5]");
    }

    #[test]
    fn existing_configuration_needs_a_readable_created_time() {
        let mut c: Configuration = serde_json::from_str(
            r#"{"id":"a","content":{"modulesContent":{"$edgeAgent":{"properties.desired":{}}}},"priority":3}"#,
        )
        .unwrap();
        assert_eq!(MergeDeployment::existing(&c), Err(MergeInputError::MissingCreatedTime { id: "a".into() }));
        c.created_time_utc = Some("2024-05-01T10:00:00.1234567Z".into());
        let d = MergeDeployment::existing(&c).unwrap().unwrap();
        assert_eq!(d.kind, ConfigurationKind::Standard);
        assert_eq!(d.priority, Priority(3));
        let adm: Configuration = serde_json::from_str(r#"{"id":"c","content":{"deviceContent":{}}}"#).unwrap();
        assert_eq!(MergeDeployment::existing(&adm), Ok(None));
        assert_eq!(MergeDeployment::pending(&adm, 0), None);
    }
}
