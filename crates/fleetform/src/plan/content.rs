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
    for a in actions.iter().filter(|a| a.action == ActionKind::Replace) {
        // Compare with the newest copy on the hub.
        let copies: Vec<&Configuration> =
            a.before.iter().filter_map(|b| current.iter().find(|c| c.id == b.id)).collect();
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
