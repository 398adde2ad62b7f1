//! Who supplied each part of a merged manifest, and what it replaced.
//!
//! Provenance is recorded per *unit*: the granularity a reader cares about, which depends
//! on the twin:
//! - `$edgeAgent`: `modules.<name>`, `systemModules.<name>`, `runtime.settings.<key>`
//!   (`runtime.settings.registryCredentials.<name>` for registries), `runtime.<key>`, and
//!   other top-level keys (`schemaVersion`);
//! - `$edgeHub`: `routes.<name>`, `storeAndForwardConfiguration.<key>`, other top-level keys;
//! - any other module twin: every leaf (a non-object value or an empty object).
//!
//! A write deeper than a unit (a layered `properties.desired.modules.m.settings.image`)
//! gets its own entry below the unit's, so the most specific origin of any path is found
//! by longest-prefix lookup ([`Provenance::origin`]).

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{EDGE_AGENT, EDGE_HUB};
use crate::model::Priority;

/// The origin of one unit of a merged manifest.
///
/// JSON: `from` (deployment id), `overrode` (ids whose writes this one replaced, oldest
/// first), `removed` (present and true when the write deleted the path: a `null`, or a
/// wider write that dropped it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Origin {
    pub from: String,
    pub overrode: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    #[serde(skip)]
    pub(crate) from_index: u32,
}

impl Origin {
    /// Index of the deployment that supplied this unit.
    pub fn from_index(&self) -> u32 {
        self.from_index
    }
}

/// One provenance entry with its path, as a renderer walks them.
/// JSON: `path` (dotted, `""` for the whole twin), `from`, `overrode`, `removed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PathOrigin {
    pub path: String,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Two layered deployments of equal priority wrote overlapping paths; the newest won
/// (docs/hub-semantics.md#layered-stack). JSON: `twin`, `path` (dotted), `priority`, `winner`, `loser`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Conflict {
    pub twin: String,
    pub path: String,
    pub priority: Priority,
    pub winner: String,
    pub loser: String,
}

/// Provenance of a merged manifest: (twin, path) → [`Origin`].
///
/// A path is stored as one string, its segments joined by NUL: one allocation per entry,
/// and since NUL sorts below every other character, everything under a path is one
/// contiguous range of the ordered map, right after the path itself. JSON:
/// `{twin: [{path, from, overrode, removed?}, ...]}` with twins and paths in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    twins: BTreeMap<String, BTreeMap<String, Origin>>,
}

const SEP: char = '\0';

/// A path inside a twin, as stored in [`Provenance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProvPath<'a>(&'a str);

impl<'a> ProvPath<'a> {
    /// The path's segments (none for the whole twin).
    pub fn segments(&self) -> impl Iterator<Item = &'a str> + 'a {
        let key = self.0;
        key.split(SEP).filter(move |_| !key.is_empty())
    }

    /// Number of segments.
    pub fn depth(&self) -> usize {
        if self.0.is_empty() { 0 } else { self.0.matches(SEP).count() + 1 }
    }

    /// The dotted form (`modules.sensor.settings.image`; `""` for the whole twin).
    pub fn dotted(&self) -> String {
        self.0.replace(SEP, ".")
    }
}

impl std::fmt::Display for ProvPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// The identity of the deployment performing a write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer<'a> {
    pub index: u32,
    pub id: &'a str,
}

fn key_of<S: AsRef<str>>(path: &[S]) -> String {
    let mut key = String::with_capacity(path.iter().map(|s| s.as_ref().len() + 1).sum());
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(seg.as_ref());
    }
    key
}

/// Whether `key` is `prefix` or lies below it.
fn is_under(key: &str, prefix: &str) -> bool {
    prefix.is_empty() || (key.starts_with(prefix) && (key.len() == prefix.len() || key.as_bytes()[prefix.len()] == 0))
}

fn overlaps(a: &str, b: &str) -> bool {
    is_under(a, b) || is_under(b, a)
}

/// The strict ancestors of a key, nearest first (the whole-twin key `""` last).
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    let cuts = key.match_indices(SEP).map(|(i, _)| i).collect::<Vec<_>>();
    let whole = (!key.is_empty()).then_some("");
    cuts.into_iter().rev().map(move |i| &key[..i]).chain(whole)
}

/// The unit depth of a path: a write stops expanding into entries at this many segments.
fn unit_len(twin: &str, path: &[&str]) -> usize {
    let seg = |i: usize| path.get(i).copied();
    match twin {
        EDGE_AGENT => match seg(0) {
            Some("modules" | "systemModules") => 2,
            Some("runtime") => match (seg(1), seg(2)) {
                (Some("settings"), Some("registryCredentials")) => 4,
                (Some("settings"), _) => 3,
                _ => 2,
            },
            _ => 1,
        },
        EDGE_HUB => match seg(0) {
            Some("routes" | "storeAndForwardConfiguration") => 2,
            _ => 1,
        },
        _ => usize::MAX,
    }
}

/// The unit keys a value written at `path` consists of.
fn expand<'v>(twin: &str, path: &mut Vec<&'v str>, value: &'v Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() && path.len() < unit_len(twin, path) => {
            for (k, v) in map {
                path.push(k);
                expand(twin, path, v, out);
                path.pop();
            }
        }
        // Nulls inside a written value are dropped from the document (a null deletes a
        // desired property), so they supply nothing.
        Value::Null => {}
        _ => out.push(key_of(path)),
    }
}

fn push_unique(list: &mut Vec<String>, id: &str) {
    if !list.iter().any(|x| x == id) {
        list.push(id.to_owned());
    }
}

impl Provenance {
    /// Records that `by` wrote `value` at `path` of `twin` (an empty path is the whole
    /// desired document; a `null` value deletes). Returns the origins it replaced, for
    /// conflict detection.
    pub(crate) fn record(&mut self, twin: &str, path: &[String], value: &Value, by: Writer<'_>) -> Vec<Origin> {
        let entries = match self.twins.get_mut(twin) {
            Some(entries) => entries,
            None => self.twins.entry(twin.to_owned()).or_default(),
        };
        let key = key_of(path);

        // Everything at or under the path is replaced.
        let under: Vec<String> = entries
            .range::<str, _>((Bound::Included(key.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| is_under(k, &key))
            .map(|(k, _)| k.clone())
            .collect();
        let replaced: Vec<(String, Origin)> =
            under.into_iter().filter_map(|k| entries.remove(&k).map(|o| (k, o))).collect();
        // An entry above the path (the unit this write patches) stays, but the write
        // overrides part of it.
        let ancestor = ancestors(&key).find_map(|a| entries.get(a)).cloned();

        let mut new_keys = Vec::new();
        if value.is_null() {
            new_keys.push(key.clone());
        } else {
            let mut segments: Vec<&str> = path.iter().map(String::as_str).collect();
            expand(twin, &mut segments, value, &mut new_keys);
        }
        let removed_write = value.is_null();

        let overrode_for = |target: &str| {
            let mut ids = Vec::new();
            let sources = replaced.iter().filter(|(k, _)| overlaps(k, target)).map(|(_, o)| o).chain(ancestor.as_ref());
            for o in sources {
                for id in o.overrode.iter().chain(std::iter::once(&o.from)) {
                    if id != by.id {
                        push_unique(&mut ids, id);
                    }
                }
            }
            ids
        };

        for k in &new_keys {
            let overrode = overrode_for(k);
            entries.insert(
                k.clone(),
                Origin { from: by.id.to_owned(), overrode, removed: removed_write, from_index: by.index },
            );
        }
        // What the write dropped without replacing (a wider write that no longer has a
        // module, a route or a twin key) leaves a tombstone, so a reader can say who
        // removed it.
        for (k, o) in &replaced {
            if o.from_index == by.index || new_keys.iter().any(|n| overlaps(n, k)) {
                continue;
            }
            let mut overrode = o.overrode.clone();
            push_unique(&mut overrode, &o.from);
            overrode.retain(|id| id != by.id);
            entries.insert(k.clone(), Origin { from: by.id.to_owned(), overrode, removed: true, from_index: by.index });
        }
        if entries.is_empty() {
            self.twins.remove(twin);
        }
        replaced.into_iter().map(|(_, o)| o).chain(ancestor).collect()
    }

    /// The most specific origin covering `path` of `twin`: the entry at the path or at its
    /// longest recorded prefix. Returns the entry's path with it.
    pub fn origin(&self, twin: &str, path: &[&str]) -> Option<(ProvPath<'_>, &Origin)> {
        let entries = self.twins.get(twin)?;
        let key = key_of(path);
        std::iter::once(key.as_str())
            .chain(ancestors(&key))
            .find_map(|k| entries.get_key_value(k))
            .map(|(k, o)| (ProvPath(k), o))
    }

    /// Entries at or below `prefix` of `twin`, in path order.
    pub fn under<'a>(&'a self, twin: &str, prefix: &[&str]) -> impl Iterator<Item = (ProvPath<'a>, &'a Origin)> + 'a {
        let key = key_of(prefix);
        let start = key.clone();
        self.twins
            .get(twin)
            .into_iter()
            .flat_map(move |m| m.range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded)))
            .take_while(move |(k, _)| is_under(k, &key))
            .map(|(k, o)| (ProvPath(k), o))
    }

    /// Twins with recorded provenance.
    pub fn twins(&self) -> impl Iterator<Item = &str> {
        self.twins.keys().map(String::as_str)
    }

    /// Every entry of one twin, in path order.
    pub fn entries<'a>(&'a self, twin: &str) -> impl Iterator<Item = (ProvPath<'a>, &'a Origin)> + 'a {
        self.twins.get(twin).into_iter().flat_map(|m| m.iter().map(|(k, o)| (ProvPath(k), o)))
    }

    /// Entries of one twin in their serialised form.
    pub fn path_origins(&self, twin: &str) -> Vec<PathOrigin> {
        self.entries(twin).map(|(k, o)| PathOrigin { path: k.dotted(), origin: o.clone() }).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.twins.is_empty()
    }
}

impl Serialize for Provenance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Entries<'a>(&'a BTreeMap<String, Origin>);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (k, o) in self.0 {
                    seq.serialize_element(&PathOrigin { path: ProvPath(k).dotted(), origin: o.clone() })?;
                }
                seq.end()
            }
        }
        let mut map = s.serialize_map(Some(self.twins.len()))?;
        for (twin, entries) in &self.twins {
            map.serialize_entry(twin, &Entries(entries))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(s: &str) -> Vec<String> {
        if s.is_empty() { Vec::new() } else { s.split('.').map(str::to_owned).collect() }
    }

    fn w(index: u32, id: &str) -> Writer<'_> {
        Writer { index, id }
    }

    fn paths(prov: &Provenance, twin: &str) -> Vec<(String, String, Vec<String>, bool)> {
        prov.entries(twin).map(|(k, o)| (k.dotted(), o.from.clone(), o.overrode.clone(), o.removed)).collect()
    }

    #[test]
    fn agent_documents_expand_into_units() {
        let mut prov = Provenance::default();
        let doc = json!({
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25",
                "registryCredentials": {"acr": {"address": "a"}, "other": {"address": "b"}}}},
            "systemModules": {"edgeAgent": {"type": "docker"}, "edgeHub": {"type": "docker"}},
            "modules": {"m1": {"settings": {"image": "x"}}, "m2": {}}
        });
        prov.record(EDGE_AGENT, &[], &doc, w(0, "base"));
        let got: Vec<String> = prov.entries(EDGE_AGENT).map(|(k, _)| k.dotted()).collect();
        assert_eq!(
            got,
            vec![
                "modules.m1",
                "modules.m2",
                "runtime.settings.minDockerVersion",
                "runtime.settings.registryCredentials.acr",
                "runtime.settings.registryCredentials.other",
                "runtime.type",
                "schemaVersion",
                "systemModules.edgeAgent",
                "systemModules.edgeHub",
            ]
        );
    }

    #[test]
    fn deeper_writes_sit_below_the_unit_and_win_lookups() {
        let mut prov = Provenance::default();
        prov.record(EDGE_AGENT, &[], &json!({"modules": {"m": {"settings": {"image": "a"}}}}), w(0, "base"));
        let replaced = prov.record(EDGE_AGENT, &p("modules.m.settings.image"), &json!("b"), w(1, "patch"));
        assert_eq!(replaced.len(), 1, "the module unit is overridden in part");
        let (at, o) = prov.origin(EDGE_AGENT, &["modules", "m", "settings", "image"]).unwrap();
        assert_eq!((at.dotted(), o.from.as_str()), ("modules.m.settings.image".into(), "patch"));
        assert_eq!(o.overrode, vec!["base"]);
        let (at, o) = prov.origin(EDGE_AGENT, &["modules", "m", "status"]).unwrap();
        assert_eq!((at.dotted(), o.from.as_str()), ("modules.m".into(), "base"));
        assert_eq!(prov.under(EDGE_AGENT, &["modules", "m"]).count(), 2);
        assert_eq!(prov.under(EDGE_AGENT, &["modules", "n"]).count(), 0);
        // Replacing the whole module again collects the full history.
        prov.record(EDGE_AGENT, &p("modules.m"), &json!({"x": 1}), w(2, "top"));
        assert_eq!(
            paths(&prov, EDGE_AGENT),
            vec![("modules.m".into(), "top".into(), vec!["base".into(), "patch".into()], false)]
        );
    }

    #[test]
    fn twin_leaves_nulls_and_tombstones() {
        let mut prov = Provenance::default();
        prov.record("filter", &[], &json!({"a": {"b": 1, "c": [1, 2]}, "d": {}, "e": "x"}), w(0, "base"));
        assert_eq!(prov.entries("filter").map(|(k, _)| k.dotted()).collect::<Vec<_>>(), vec!["a.b", "a.c", "d", "e"]);
        prov.record("filter", &p("e"), &Value::Null, w(1, "del"));
        // Whole-desired replace: `a.*` and `d` are dropped (tombstones), `z` is new.
        prov.record("filter", &[], &json!({"z": true}), w(2, "whole"));
        assert_eq!(
            paths(&prov, "filter"),
            vec![
                ("a.b".into(), "whole".into(), vec!["base".into()], true),
                ("a.c".into(), "whole".into(), vec!["base".into()], true),
                ("d".into(), "whole".into(), vec!["base".into()], true),
                ("e".into(), "whole".into(), vec!["base".into(), "del".into()], true),
                ("z".into(), "whole".into(), vec![], false),
            ]
        );
        let json = serde_json::to_value(&prov).unwrap();
        assert_eq!(json["filter"][4], json!({"path": "z", "from": "whole", "overrode": []}));
        assert_eq!(json["filter"][0]["removed"], json!(true));
    }

    #[test]
    fn self_overrides_are_not_overrides() {
        let mut prov = Provenance::default();
        prov.record(EDGE_HUB, &[], &json!({"routes": {"r": "FROM /* INTO $upstream"}}), w(0, "a"));
        prov.record(EDGE_HUB, &p("routes.r"), &json!("FROM /messages/* INTO $upstream"), w(0, "a"));
        let (_, o) = prov.origin(EDGE_HUB, &["routes", "r"]).unwrap();
        assert!(o.overrode.is_empty());
        // An empty whole document is recorded as one entry for the twin itself.
        let mut empty = Provenance::default();
        empty.record("m", &[], &json!({}), w(3, "e"));
        assert_eq!(paths(&empty, "m"), vec![(String::new(), "e".into(), vec![], false)]);
    }
}
