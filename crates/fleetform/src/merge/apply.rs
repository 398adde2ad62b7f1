//! Replaying a stack's writes into merged desired documents (docs/hub-semantics.md#merge-layered,
//! #layered-stack).
//!
//! Every content key is a write into one module twin's desired properties:
//! `properties.desired` replaces the whole document; `properties.desired.<a>.<b>` replaces
//! exactly the value at `a.b`, creating intermediate objects. A `null` deletes, as it does
//! in any desired-properties patch. Writes are replayed deployment by deployment in the
//! order the stack applies them, so the last write of a path wins.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::provenance::Writer;
use super::{Conflict, EDGE_AGENT, EDGE_HUB, EffectiveManifest, MergeDeployment, Provenance, SkipReason, Stack};
use crate::model::{ConfigurationKind, TwinPath};

/// The desired-properties path a content key writes, or `None` for keys that are not
/// desired properties (which the hub would reject; the manifest layer reports them).
pub(crate) fn desired_path(key: &str) -> Option<TwinPath> {
    TwinPath::from_desired_key(key).ok()
}

/// A copy of `value` without `null` members: a null in desired properties means "absent".
/// Cloned first and pruned in place, because cloning a JSON map copies its tree wholesale
/// while rebuilding it key by key costs far more.
fn without_nulls(value: &Value) -> Value {
    fn prune(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(prune);
            }
            Value::Array(items) => items.iter_mut().for_each(prune),
            _ => {}
        }
    }
    let mut copy = value.clone();
    prune(&mut copy);
    copy
}

/// Writes `value` at `path` of `doc` with the hub's patch rules: a `null` deletes (and
/// a `null` for the whole document leaves it empty).
pub(crate) fn write_path(doc: &mut Value, path: &TwinPath, value: &Value) {
    match (path.is_root(), value.is_null()) {
        (true, true) => *doc = Value::Object(Map::new()),
        (false, true) => {
            path.remove(doc);
        }
        (_, false) => path.set(doc, without_nulls(value)),
    }
}

/// Merges the stack into the effective manifest: the standard deployment's documents, then
/// every applied layered deployment's writes in the order applied, with provenance.
///
/// With no standard deployment the manifest is empty and flagged: `no_standard` when
/// layered deployments matched (the device gets no full manifest), `unmanaged` when nothing
/// did (the device keeps what it runs).
pub fn merge(deployments: &[MergeDeployment], stack: &Stack) -> EffectiveManifest {
    merge_with(deployments, stack, true)
}

/// [`merge`] for a caller that throws the provenance away: it is still recorded where it
/// finds conflicts (two applied layered deployments of one priority), and left empty
/// otherwise. Recording it was a fifth of merging a large fleet for nothing.
pub(crate) fn merge_documents(deployments: &[MergeDeployment], stack: &Stack) -> EffectiveManifest {
    merge_with(deployments, stack, false)
}

/// Whether a write by one applied layered deployment can replace one by another of the
/// same priority: the only case in which the replaced origins make a conflict.
fn layered_priorities_collide(deployments: &[MergeDeployment], stack: &Stack) -> bool {
    let mut seen = Vec::new();
    for index in stack.applied_indices() {
        let Some(d) = deployments.get(index as usize) else {
            continue;
        };
        if d.kind != ConfigurationKind::Layered {
            continue;
        }
        if seen.contains(&d.priority) {
            return true;
        }
        seen.push(d.priority);
    }
    false
}

fn merge_with(deployments: &[MergeDeployment], stack: &Stack, keep_provenance: bool) -> EffectiveManifest {
    if stack.standard_index().is_none() {
        let no_standard = stack.skipped.iter().any(|s| s.reason == SkipReason::NoStandard);
        return EffectiveManifest::empty(no_standard, !no_standard);
    }
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    let mut provenance = Provenance::default();
    let collide = layered_priorities_collide(deployments, stack);
    let record = keep_provenance || collide;
    let mut conflicts = BTreeSet::new();
    // Layered writers of each module and route, in the order applied: two equal-priority
    // layered deployments touching one module or route collide even when their paths inside
    // it differ (field reports say the hub then applies only the newest).
    let mut granules: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for index in stack.applied_indices() {
        let Some(d) = deployments.get(index as usize) else {
            continue;
        };
        let writer = Writer { index, id: &d.id };
        for (twin, keys) in &d.content {
            // Sorted by path so that, within one deployment, a parent is written before its
            // children whatever order the JSON map keeps its keys in.
            let mut writes: Vec<(TwinPath, &Value)> =
                keys.iter().filter_map(|(k, v)| Some((desired_path(k)?, v))).collect();
            writes.sort_by(|a, b| a.0.cmp(&b.0));
            if writes.is_empty() {
                continue;
            }
            if !docs.contains_key(twin) {
                docs.insert(twin.clone(), Value::Object(Map::new()));
            }
            let Some(doc) = docs.get_mut(twin) else { continue };
            for (path, value) in writes {
                write_path(doc, &path, value);
                let replaced =
                    if record { provenance.record(twin, path.segments(), value, writer) } else { Vec::new() };
                // Only layered deployments of one priority can collide, and most stacks
                // have none: their granules were a tenth of merging a large fleet.
                if d.kind != ConfigurationKind::Layered || !collide {
                    continue;
                }
                if let Some(granule) = granule(twin, path.segments()) {
                    let writers = granules.entry((twin.clone(), granule)).or_default();
                    if !writers.contains(&index) {
                        writers.push(index);
                    }
                }
                for origin in replaced {
                    let Some(other) = deployments.get(origin.from_index() as usize) else {
                        continue;
                    };
                    if origin.from_index() != index
                        && other.kind == ConfigurationKind::Layered
                        && other.priority == d.priority
                    {
                        conflicts.insert(Conflict {
                            twin: twin.clone(),
                            path: path.to_string(),
                            priority: d.priority,
                            winner: d.id.to_string(),
                            loser: other.id.to_string(),
                        });
                    }
                }
            }
        }
    }
    for ((twin, granule), writers) in &granules {
        for (i, &later) in writers.iter().enumerate() {
            for &earlier in &writers[..i] {
                let (Some(w), Some(l)) = (deployments.get(later as usize), deployments.get(earlier as usize)) else {
                    continue;
                };
                // A pair already reported on a path inside this module or route says enough.
                let inside = |c: &Conflict| {
                    c.twin == *twin
                        && c.winner == w.id
                        && c.loser == l.id
                        && (c.path == *granule || c.path.starts_with(&format!("{granule}.")))
                };
                if w.priority == l.priority && !conflicts.iter().any(inside) {
                    conflicts.insert(Conflict {
                        twin: twin.clone(),
                        path: granule.clone(),
                        priority: w.priority,
                        winner: w.id.to_string(),
                        loser: l.id.to_string(),
                    });
                }
            }
        }
    }
    let empty = || Value::Object(Map::new());
    EffectiveManifest {
        no_standard: false,
        unmanaged: false,
        edge_agent: docs.remove(EDGE_AGENT).unwrap_or_else(empty),
        edge_hub: docs.remove(EDGE_HUB).unwrap_or_else(empty),
        twins: docs,
        provenance,
        conflicts: conflicts.into_iter().collect(),
    }
}

/// The module (`modules.<m>`, `systemModules.<m>` in `$edgeAgent`) or route (`routes.<r>` in
/// `$edgeHub`) a desired-properties path writes into, if any.
fn granule(twin: &str, path: &[String]) -> Option<String> {
    let [first, name, ..] = path else {
        return None;
    };
    let owns = match twin {
        EDGE_AGENT => first == "modules" || first == "systemModules",
        EDGE_HUB => first == "routes",
        _ => false,
    };
    owns.then(|| format!("{first}.{name}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(s: &str) -> TwinPath {
        TwinPath::parse(s).unwrap()
    }

    #[test]
    fn desired_paths() {
        assert_eq!(desired_path("properties.desired"), Some(TwinPath::root()));
        assert_eq!(desired_path("properties.desired.routes.r"), Some(p("routes.r")));
        assert_eq!(desired_path("properties.desired."), None);
        assert_eq!(desired_path("properties.desired.a..b"), None);
        assert_eq!(desired_path("properties.desiredx"), None);
        assert_eq!(desired_path("tags.x"), None);
    }

    #[test]
    fn path_writes_create_replace_and_delete() {
        let mut doc = json!({"a": {"b": 1, "keep": true}, "s": "scalar"});
        write_path(&mut doc, &p("a.b"), &json!({"c": 2, "gone": null}));
        write_path(&mut doc, &p("x.y.z"), &json!([1, null]));
        write_path(&mut doc, &p("s.t"), &json!(3));
        assert_eq!(doc, json!({"a": {"b": {"c": 2}, "keep": true}, "x": {"y": {"z": [1, null]}}, "s": {"t": 3}}));
        write_path(&mut doc, &p("a.keep"), &Value::Null);
        write_path(&mut doc, &p("nothing.here"), &Value::Null);
        assert_eq!(doc["a"], json!({"b": {"c": 2}}));
        assert!(doc.get("nothing").is_none());
        write_path(&mut doc, &TwinPath::root(), &json!({"fresh": 1}));
        assert_eq!(doc, json!({"fresh": 1}));
        write_path(&mut doc, &TwinPath::root(), &Value::Null);
        assert_eq!(doc, json!({}));
    }
}
