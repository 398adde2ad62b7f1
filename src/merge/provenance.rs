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

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{EDGE_AGENT, EDGE_HUB};

/// The origin of one unit of a merged manifest.
///
/// JSON: `from` (deployment id), `overrode` (ids whose writes this one replaced, oldest
/// first), `removed` (present and true when the write deleted the path: a `null`, or a
/// wider write that dropped it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathOrigin {
    pub path: String,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Two layered deployments of equal priority wrote overlapping paths; the newest won
/// (IOTHUB.md §2.3). JSON: `twin`, `path` (dotted), `priority`, `winner`, `loser`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Conflict {
    pub twin: String,
    pub path: String,
    pub priority: i64,
    pub winner: String,
    pub loser: String,
}

/// Provenance of a merged manifest: (twin, path) → [`Origin`].
///
/// Paths are segment vectors, so that everything under a path is one contiguous range of
/// the ordered map. JSON: `{twin: [{path, from, overrode, removed?}, ...]}` with twins and
/// paths in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    twins: BTreeMap<String, BTreeMap<Vec<String>, Origin>>,
}

/// The identity of the deployment performing a write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer<'a> {
    pub index: u32,
    pub id: &'a str,
}

/// The unit depth of a path: a write stops expanding into entries at this many segments.
fn unit_len(twin: &str, path: &[String]) -> usize {
    let seg = |i: usize| path.get(i).map(String::as_str);
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

/// The unit paths a value written at `path` consists of.
fn expand(twin: &str, path: &mut Vec<String>, value: &Value, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) if !map.is_empty() && path.len() < unit_len(twin, path) => {
            for (k, v) in map {
                path.push(k.clone());
                expand(twin, path, v, out);
                path.pop();
            }
        }
        // Nulls inside a written value are dropped from the document (a null deletes a
        // desired property), so they supply nothing.
        Value::Null => {}
        _ => out.push(path.clone()),
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
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
    pub(crate) fn record(
        &mut self,
        twin: &str,
        path: &[String],
        value: &Value,
        by: Writer<'_>,
    ) -> Vec<(Vec<String>, Origin)> {
        let entries = self.twins.entry(twin.to_owned()).or_default();

        // Everything at or under the path is replaced.
        let under: Vec<Vec<String>> = entries
            .range(path.to_vec()..)
            .take_while(|(k, _)| k.starts_with(path))
            .map(|(k, _)| k.clone())
            .collect();
        let mut replaced: Vec<(Vec<String>, Origin)> = under
            .into_iter()
            .filter_map(|k| entries.remove(&k).map(|o| (k, o)))
            .collect();
        // An entry above the path (the unit this write patches) stays, but the write
        // overrides part of it.
        let ancestor = (0..path.len()).rev().find_map(|n| {
            entries
                .get(&path[..n])
                .map(|o| (path[..n].to_vec(), o.clone()))
        });

        let mut new_paths = Vec::new();
        if value.is_null() {
            new_paths.push(path.to_vec());
        } else {
            expand(twin, &mut path.to_vec(), value, &mut new_paths);
        }
        let removed_write = value.is_null();

        let overrode_for = |target: &[String], replaced: &[(Vec<String>, Origin)]| {
            let mut ids = Vec::new();
            let sources = replaced
                .iter()
                .filter(|(k, _)| overlaps(k, target))
                .map(|(_, o)| o)
                .chain(ancestor.as_ref().map(|(_, o)| o));
            for o in sources {
                for id in o.overrode.iter().chain(std::iter::once(&o.from)) {
                    if id != by.id {
                        push_unique(&mut ids, id);
                    }
                }
            }
            ids
        };

        for p in &new_paths {
            let overrode = overrode_for(p, &replaced);
            entries.insert(
                p.clone(),
                Origin {
                    from: by.id.to_owned(),
                    overrode,
                    removed: removed_write,
                    from_index: by.index,
                },
            );
        }
        // What the write dropped without replacing (a wider write that no longer has a
        // module, a route or a twin key) leaves a tombstone, so a reader can say who
        // removed it.
        for (k, o) in &replaced {
            if o.from_index == by.index || new_paths.iter().any(|p| overlaps(p, k)) {
                continue;
            }
            let mut overrode = o.overrode.clone();
            push_unique(&mut overrode, &o.from);
            overrode.retain(|id| id != by.id);
            entries.insert(
                k.clone(),
                Origin {
                    from: by.id.to_owned(),
                    overrode,
                    removed: true,
                    from_index: by.index,
                },
            );
        }
        if entries.is_empty() {
            self.twins.remove(twin);
        }
        replaced.extend(ancestor);
        replaced
    }

    /// The most specific origin covering `path` of `twin`: the entry at the path or at its
    /// longest recorded prefix. Returns the entry's path with it.
    pub fn origin(&self, twin: &str, path: &[&str]) -> Option<(&[String], &Origin)> {
        let entries = self.twins.get(twin)?;
        let mut key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        loop {
            if let Some((k, o)) = entries.get_key_value(&key) {
                return Some((k.as_slice(), o));
            }
            key.pop()?;
        }
    }

    /// Entries at or below `prefix` of `twin`, in path order.
    pub fn under<'a>(
        &'a self,
        twin: &str,
        prefix: &[&str],
    ) -> impl Iterator<Item = (&'a [String], &'a Origin)> + 'a {
        let start: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
        let prefix_owned = start.clone();
        self.twins
            .get(twin)
            .into_iter()
            .flat_map(move |m| m.range(start.clone()..))
            .take_while(move |(k, _)| k.starts_with(&prefix_owned))
            .map(|(k, o)| (k.as_slice(), o))
    }

    /// Twins with recorded provenance.
    pub fn twins(&self) -> impl Iterator<Item = &str> {
        self.twins.keys().map(String::as_str)
    }

    /// Every entry of one twin, in path order.
    pub fn entries<'a>(&'a self, twin: &str) -> impl Iterator<Item = (&'a [String], &'a Origin)> {
        self.twins
            .get(twin)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, o)| (k.as_slice(), o)))
    }

    /// Entries of one twin in their serialised form.
    pub fn path_origins(&self, twin: &str) -> Vec<PathOrigin> {
        self.entries(twin)
            .map(|(k, o)| PathOrigin {
                path: k.join("."),
                origin: o.clone(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.twins.is_empty()
    }
}

impl Serialize for Provenance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Entries<'a>(&'a BTreeMap<Vec<String>, Origin>);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (k, o) in self.0 {
                    seq.serialize_element(&PathOrigin {
                        path: k.join("."),
                        origin: o.clone(),
                    })?;
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
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').map(str::to_owned).collect()
        }
    }

    fn w(index: u32, id: &str) -> Writer<'_> {
        Writer { index, id }
    }

    fn paths(prov: &Provenance, twin: &str) -> Vec<(String, String, Vec<String>, bool)> {
        prov.entries(twin)
            .map(|(k, o)| (k.join("."), o.from.clone(), o.overrode.clone(), o.removed))
            .collect()
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
        let got: Vec<String> = prov.entries(EDGE_AGENT).map(|(k, _)| k.join(".")).collect();
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
        prov.record(
            EDGE_AGENT,
            &[],
            &json!({"modules": {"m": {"settings": {"image": "a"}}}}),
            w(0, "base"),
        );
        let replaced = prov.record(
            EDGE_AGENT,
            &p("modules.m.settings.image"),
            &json!("b"),
            w(1, "patch"),
        );
        assert_eq!(replaced.len(), 1, "the module unit is overridden in part");
        let (at, o) = prov
            .origin(EDGE_AGENT, &["modules", "m", "settings", "image"])
            .unwrap();
        assert_eq!(
            (at.join("."), o.from.as_str()),
            ("modules.m.settings.image".into(), "patch")
        );
        assert_eq!(o.overrode, vec!["base"]);
        let (at, o) = prov
            .origin(EDGE_AGENT, &["modules", "m", "status"])
            .unwrap();
        assert_eq!(
            (at.join("."), o.from.as_str()),
            ("modules.m".into(), "base")
        );
        assert_eq!(prov.under(EDGE_AGENT, &["modules", "m"]).count(), 2);
        assert_eq!(prov.under(EDGE_AGENT, &["modules", "n"]).count(), 0);
        // Replacing the whole module again collects the full history.
        prov.record(EDGE_AGENT, &p("modules.m"), &json!({"x": 1}), w(2, "top"));
        assert_eq!(
            paths(&prov, EDGE_AGENT),
            vec![(
                "modules.m".into(),
                "top".into(),
                vec!["base".into(), "patch".into()],
                false
            )]
        );
    }

    #[test]
    fn twin_leaves_nulls_and_tombstones() {
        let mut prov = Provenance::default();
        prov.record(
            "filter",
            &[],
            &json!({"a": {"b": 1, "c": [1, 2]}, "d": {}, "e": "x"}),
            w(0, "base"),
        );
        assert_eq!(
            prov.entries("filter")
                .map(|(k, _)| k.join("."))
                .collect::<Vec<_>>(),
            vec!["a.b", "a.c", "d", "e"]
        );
        prov.record("filter", &p("e"), &Value::Null, w(1, "del"));
        // Whole-desired replace: `a.*` and `d` are dropped (tombstones), `z` is new.
        prov.record("filter", &[], &json!({"z": true}), w(2, "whole"));
        assert_eq!(
            paths(&prov, "filter"),
            vec![
                ("a.b".into(), "whole".into(), vec!["base".into()], true),
                ("a.c".into(), "whole".into(), vec!["base".into()], true),
                ("d".into(), "whole".into(), vec!["base".into()], true),
                (
                    "e".into(),
                    "whole".into(),
                    vec!["base".into(), "del".into()],
                    true
                ),
                ("z".into(), "whole".into(), vec![], false),
            ]
        );
        let json = serde_json::to_value(&prov).unwrap();
        assert_eq!(
            json["filter"][4],
            json!({"path": "z", "from": "whole", "overrode": []})
        );
        assert_eq!(json["filter"][0]["removed"], json!(true));
    }

    #[test]
    fn self_overrides_are_not_overrides() {
        let mut prov = Provenance::default();
        prov.record(
            EDGE_HUB,
            &[],
            &json!({"routes": {"r": "FROM /* INTO $upstream"}}),
            w(0, "a"),
        );
        prov.record(
            EDGE_HUB,
            &p("routes.r"),
            &json!("FROM /messages/* INTO $upstream"),
            w(0, "a"),
        );
        let (_, o) = prov.origin(EDGE_HUB, &["routes", "r"]).unwrap();
        assert!(o.overrode.is_empty());
        // An empty whole document is recorded as one entry for the twin itself.
        let mut empty = Provenance::default();
        empty.record("m", &[], &json!({}), w(3, "e"));
        assert_eq!(
            paths(&empty, "m"),
            vec![(String::new(), "e".into(), vec![], false)]
        );
    }
}
