//! What a replacement changes in a deployment's own content: the old copy on the hub and
//! the new declaration compared as partial manifests.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::actions::{Action, ActionKind};
use super::diff::{Change, diff};
use super::redact::Redactor;
use crate::manifest::Rendered;
use crate::merge::{self, EffectiveManifest};
use crate::model::{Configuration, ConfigurationKind, TwinPath};

/// A deployment's own content as a partial manifest: what it writes into each twin.
fn content_manifest(c: &Configuration) -> EffectiveManifest {
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    for (twin, keys) in c.content.modules_content.iter().flatten() {
        let doc = docs.entry(twin.clone()).or_insert_with(|| Value::Object(Map::new()));
        for (k, v) in keys {
            // Keys outside `properties.desired` write nothing a device runs.
            let Ok(path) = TwinPath::from_desired_key(k) else { continue };
            crate::manifest::set_path(doc, path.segments(), v.clone());
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

/// For each replaced deployment (by name): how its content changes.
pub fn content_changes(
    actions: &[Action],
    current: &[Configuration],
    declared: &[Rendered],
    redactor: &Redactor,
) -> BTreeMap<String, Vec<Change>> {
    let mut out = BTreeMap::new();
    for a in actions.iter().filter(|a| matches!(a.action, ActionKind::Replace | ActionKind::Rollout)) {
        // Compare with the newest copy on the hub (for a rollout: with the old content).
        let copies: Vec<&Configuration> = a
            .before
            .iter()
            .filter(|b| a.action == ActionKind::Replace || a.after.as_ref() != Some(&b.id))
            .filter_map(|b| current.iter().find(|c| c.id == b.id))
            .filter(|c| a.action == ActionKind::Replace || !c.labels.contains_key(super::rollout::LABEL_FROM))
            .collect();
        if copies.is_empty() {
            continue;
        }
        let old = super::actions::newest(&copies);
        let Some(new) = declared.iter().find(|r| a.after.as_deref() == Some(r.configuration.id.as_str())) else {
            continue;
        };
        let mut changes = diff(&content_manifest(old), &content_manifest(&new.configuration), redactor);
        if old.kind() != new.configuration.kind() {
            let kind = |k: ConfigurationKind| k.word().to_string();
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
            // Same documents, written under other keys: a layered twin setting moved to
            // another `path` (which decides what it overwrites on the device), or a
            // setting split or joined. Named by module and key, not as a secret.
            changes = written_changes(old, &new.configuration, redactor);
        }
        if changes.is_empty() {
            // Same document, same keys, different bytes: a secret changed (it is part of the id).
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

/// The keys (`properties.desired[.<path>]`) whose written value differs between two
/// copies of a deployment, per twin: module twins as twin changes at the key's path, the
/// runtime twins as runtime changes. Values pass through the redactor, masked only
/// where the value or a name on its path is sensitive.
fn written_changes(old: &Configuration, new: &Configuration, redactor: &Redactor) -> Vec<Change> {
    let empty = BTreeMap::new();
    let old_content = old.content.modules_content.as_ref().unwrap_or(&empty);
    let new_content = new.content.modules_content.as_ref().unwrap_or(&empty);
    let twins: std::collections::BTreeSet<&String> = old_content.keys().chain(new_content.keys()).collect();
    let mut out = Vec::new();
    for twin in twins {
        let no_keys = Map::new();
        let b = old_content.get(twin).unwrap_or(&no_keys);
        let a = new_content.get(twin).unwrap_or(&no_keys);
        let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        for key in keys {
            let (before, after) = (b.get(key), a.get(key));
            if before == after {
                continue;
            }
            // A credential-named setting inside the written value is masked by its place.
            let masked = |v: Option<&Value>| {
                v.cloned().map(|mut v| {
                    redactor.mask_in_place(&mut v);
                    v
                })
            };
            let (before, after) = redactor.pair_at(key, masked(before).as_ref(), masked(after).as_ref());
            let before = Some(before.unwrap_or_else(|| "(not written)".into()));
            let after = Some(after.unwrap_or_else(|| "(not written)".into()));
            if twin == merge::EDGE_AGENT || twin == merge::EDGE_HUB {
                out.push(Change::RuntimeChanged { field: format!("{twin} {key}"), before, after });
            } else {
                out.push(Change::TwinChanged { module: twin.clone(), path: key.clone(), before, after });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layered(twin_keys: Value) -> Configuration {
        serde_json::from_value(serde_json::json!({
            "id": "x-1",
            "content": {"modulesContent": twin_keys},
            "targetCondition": "tags.a = 'b'",
            "priority": 10,
        }))
        .unwrap()
    }

    /// The issue #16 symptom: a layered twin setting moved from `path="SendInterval"` to the
    /// whole `properties.desired` writes the same document, and read as
    /// `~ runtime content: (sensitive value changed)`.
    #[test]
    fn a_twin_path_change_is_named_by_module_and_key_not_as_a_secret() {
        let old = layered(serde_json::json!({"SimulatedTemperatureSensor": {"properties.desired.SendInterval": 5}}));
        let new =
            layered(serde_json::json!({"SimulatedTemperatureSensor": {"properties.desired": {"SendInterval": 5}}}));
        let r = Redactor::new(&[], &[]);
        assert!(diff(&content_manifest(&old), &content_manifest(&new), &r).is_empty(), "same document");
        let shown: Vec<String> = written_changes(&old, &new, &r).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"~ twin SimulatedTemperatureSensor properties.desired: (not written) → {"SendInterval":5}"#,
                "~ twin SimulatedTemperatureSensor properties.desired.SendInterval: 5 → (not written)",
            ]
        );
        assert!(shown.iter().all(|s| !s.contains("sensitive")), "{shown:?}");
    }

    #[test]
    fn a_credential_named_twin_key_stays_masked() {
        let old = layered(serde_json::json!({"Cam": {"properties.desired.apiKey": "old-key-1"}}));
        let new = layered(serde_json::json!({"Cam": {"properties.desired": {"apiKey": "old-key-1"}}}));
        let shown: Vec<String> =
            written_changes(&old, &new, &Redactor::new(&[], &[])).iter().map(ToString::to_string).collect();
        assert!(!shown.is_empty());
        assert!(shown.iter().all(|s| !s.contains("old-key-1")), "{shown:?}");
    }
}
