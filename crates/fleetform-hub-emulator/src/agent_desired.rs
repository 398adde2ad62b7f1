//! What the hub adds to the merged `$edgeAgent` desired properties: each module and system
//! module carries `"configuration": {"id": <deployment>}`, the deployment that supplied it
//! (the edge agent's desired-properties schema reads this field per module:
//! Azure/iotedge edge-agent `config.json`, `ConfigurationInfo`).

use serde_json::{Value, json};

use fleetform::merge::{EDGE_AGENT, EffectiveManifest};

/// The merged `$edgeAgent` desired document with each module's configuration id filled in.
pub(crate) fn edge_agent_desired(manifest: &EffectiveManifest) -> Value {
    let mut doc = manifest.edge_agent.clone();
    for section in ["systemModules", "modules"] {
        let Some(Value::Object(modules)) = doc.get_mut(section) else {
            continue;
        };
        for (name, module) in modules.iter_mut() {
            let Value::Object(fields) = module else {
                continue;
            };
            let path = [section, name.as_str()];
            // The writer of the module itself (or of the whole document); a module assembled
            // from several writes inside it is credited to the last of them, which wins.
            let from = manifest
                .provenance
                .origin(EDGE_AGENT, &path)
                .map(|(_, o)| o.from.clone())
                .or_else(|| manifest.provenance.under(EDGE_AGENT, &path).last().map(|(_, o)| o.from.clone()));
            if let Some(id) = from {
                fields.insert("configuration".into(), json!({ "id": id }));
            }
        }
    }
    doc
}
