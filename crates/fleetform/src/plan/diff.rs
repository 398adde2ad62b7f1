//! What changes for a device: the semantic difference between two effective manifests,
//! in the terms an operator reviews (module image 1.0 → 1.1, env added, route changed,
//! twin path changed), with secrets redacted.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::redact::Redactor;
use crate::merge::EffectiveManifest;

/// At most this many twin paths are listed per module twin; the rest are counted.
const MAX_TWIN_PATHS: usize = 12;

/// One difference. Values are compact, redacted JSON text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// No deployment matches any more: the device keeps running what it runs.
    BecomesUnmanaged,
    /// Matched by a deployment again after being unmanaged.
    BecomesManaged,
    /// Layered deployments only: the agent will report 417 (empty configuration).
    LosesStandard,
    ModuleAdded {
        module: String,
        image: Option<String>,
    },
    ModuleRemoved {
        module: String,
    },
    ModuleChanged {
        module: String,
        field: String,
        before: Option<String>,
        after: Option<String>,
    },
    /// `edgeAgent` / `edgeHub` settings.
    SystemModuleChanged {
        module: String,
        field: String,
        before: Option<String>,
        after: Option<String>,
    },
    /// `$edgeAgent` runtime settings, schema versions, store-and-forward.
    RuntimeChanged {
        field: String,
        before: Option<String>,
        after: Option<String>,
    },
    RouteAdded {
        route: String,
        text: String,
    },
    RouteRemoved {
        route: String,
    },
    RouteChanged {
        route: String,
        before: String,
        after: String,
    },
    TwinChanged {
        module: String,
        path: String,
        before: Option<String>,
        after: Option<String>,
    },
    /// More twin paths changed than are listed.
    TwinPathsOmitted {
        module: String,
        count: usize,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn arrow(f: &mut fmt::Formatter<'_>, before: &Option<String>, after: &Option<String>) -> fmt::Result {
            match (before, after) {
                (Some(b), Some(a)) => write!(f, "{b} → {a}"),
                (None, Some(a)) => write!(f, "added {a}"),
                (Some(b), None) => write!(f, "removed (was {b})"),
                (None, None) => Ok(()),
            }
        }
        match self {
            Change::BecomesUnmanaged => f.write_str("becomes unmanaged: no deployment targets it; it keeps its current modules"),
            Change::BecomesManaged => f.write_str("becomes managed: a standard deployment now applies"),
            Change::LosesStandard => {
                f.write_str("no standard deployment applies: layered ones alone leave it without a full manifest (the agent reports 417)")
            }
            Change::ModuleAdded { module, image } => match image {
                Some(i) => write!(f, "+ module {module} ({i})"),
                None => write!(f, "+ module {module}"),
            },
            Change::ModuleRemoved { module } => write!(f, "- module {module}"),
            Change::ModuleChanged { module, field, before, after } => {
                write!(f, "~ module {module} {field}: ")?;
                arrow(f, before, after)
            }
            Change::SystemModuleChanged { module, field, before, after } => {
                write!(f, "~ {module} {field}: ")?;
                arrow(f, before, after)
            }
            Change::RuntimeChanged { field, before, after } => {
                write!(f, "~ runtime {field}: ")?;
                arrow(f, before, after)
            }
            Change::RouteAdded { route, text } => write!(f, "+ route {route}: {text}"),
            Change::RouteRemoved { route } => write!(f, "- route {route}"),
            Change::RouteChanged { route, before, after } => write!(f, "~ route {route}: {before} → {after}"),
            Change::TwinChanged { module, path, before, after } => {
                write!(f, "~ twin {module} {path}: ")?;
                arrow(f, before, after)
            }
            Change::TwinPathsOmitted { module, count } => write!(f, "~ twin {module}: {count} more paths changed"),
        }
    }
}

/// The differences between what a device runs before and after.
pub fn diff(before: &EffectiveManifest, after: &EffectiveManifest, redact: &Redactor) -> Vec<Change> {
    let mut out = Vec::new();
    if after.unmanaged {
        if !before.unmanaged {
            out.push(Change::BecomesUnmanaged);
        }
        return out;
    }
    if after.no_standard && !before.no_standard {
        out.push(Change::LosesStandard);
    }
    if !before.is_managed() && after.is_managed() {
        // Nothing known was running: list what arrives, not every field of it.
        out.push(Change::BecomesManaged);
        let empty = Map::new();
        let agent = after.edge_agent.as_object().unwrap_or(&empty);
        for key in ["systemModules", "modules"] {
            for (name, m) in agent.get(key).and_then(Value::as_object).unwrap_or(&empty) {
                out.push(Change::ModuleAdded {
                    module: name.clone(),
                    image: m.pointer("/settings/image").map(|v| redact.text(v)),
                });
            }
        }
        for (name, r) in after.routes().unwrap_or(&empty) {
            out.push(Change::RouteAdded { route: name.clone(), text: route_text(r, redact) });
        }
        return out;
    }
    let empty = Map::new();
    let obj = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let b_agent = if before.is_managed() { before.edge_agent.as_object().unwrap_or(&empty) } else { &empty };
    let a_agent = if after.is_managed() { after.edge_agent.as_object().unwrap_or(&empty) } else { &empty };

    // Modules.
    let b_mods = obj(b_agent.get("modules"));
    let a_mods = obj(a_agent.get("modules"));
    for name in keys(&b_mods, &a_mods) {
        match (b_mods.get(&name), a_mods.get(&name)) {
            (None, Some(m)) => out.push(Change::ModuleAdded {
                module: name.clone(),
                image: m.pointer("/settings/image").map(|v| redact.text(v)),
            }),
            (Some(_), None) => out.push(Change::ModuleRemoved { module: name.clone() }),
            (Some(b), Some(a)) if b != a => {
                for (field, before, after) in module_fields(b, a, redact) {
                    out.push(Change::ModuleChanged { module: name.clone(), field, before, after });
                }
            }
            _ => {}
        }
    }
    // System modules.
    let b_sys = obj(b_agent.get("systemModules"));
    let a_sys = obj(a_agent.get("systemModules"));
    for name in keys(&b_sys, &a_sys) {
        let (b, a) = (b_sys.get(&name).unwrap_or(&Value::Null), a_sys.get(&name).unwrap_or(&Value::Null));
        if b != a {
            for (field, before, after) in module_fields(b, a, redact) {
                out.push(Change::SystemModuleChanged { module: name.clone(), field, before, after });
            }
        }
    }
    // Runtime and schema versions.
    let mut runtime_fields = Vec::new();
    leaf_diff(b_agent.get("runtime"), a_agent.get("runtime"), "runtime", &mut runtime_fields);
    leaf_diff(
        b_agent.get("schemaVersion"),
        a_agent.get("schemaVersion"),
        "$edgeAgent.schemaVersion",
        &mut runtime_fields,
    );
    let b_hub = if before.is_managed() { before.edge_hub.as_object().unwrap_or(&empty) } else { &empty };
    let a_hub = if after.is_managed() { after.edge_hub.as_object().unwrap_or(&empty) } else { &empty };
    leaf_diff(b_hub.get("schemaVersion"), a_hub.get("schemaVersion"), "$edgeHub.schemaVersion", &mut runtime_fields);
    leaf_diff(
        b_hub.get("storeAndForwardConfiguration"),
        a_hub.get("storeAndForwardConfiguration"),
        "storeAndForwardConfiguration",
        &mut runtime_fields,
    );
    for (field, b, a) in runtime_fields {
        let field = field.strip_prefix("runtime.").unwrap_or(&field).to_string();
        let (before, after) = redact.pair(b.as_ref(), a.as_ref());
        out.push(Change::RuntimeChanged { field, before, after });
    }
    // Routes.
    let b_routes = obj(b_hub.get("routes"));
    let a_routes = obj(a_hub.get("routes"));
    for name in keys(&b_routes, &a_routes) {
        match (b_routes.get(&name), a_routes.get(&name)) {
            (None, Some(r)) => out.push(Change::RouteAdded { route: name.clone(), text: route_text(r, redact) }),
            (Some(_), None) => out.push(Change::RouteRemoved { route: name.clone() }),
            (Some(b), Some(a)) if b != a => out.push(Change::RouteChanged {
                route: name.clone(),
                before: route_text(b, redact),
                after: route_text(a, redact),
            }),
            _ => {}
        }
    }
    // Module twins.
    let twin_names: BTreeSet<&String> = before.twins.keys().chain(after.twins.keys()).collect();
    for twin in twin_names {
        let b = if before.is_managed() { before.twins.get(twin) } else { None };
        let a = if after.is_managed() { after.twins.get(twin) } else { None };
        let mut fields = Vec::new();
        leaf_diff(b, a, "", &mut fields);
        let total = fields.len();
        for (path, b, a) in fields.into_iter().take(MAX_TWIN_PATHS) {
            let (before, after) = redact.pair_at(&path, b.as_ref(), a.as_ref());
            let path = if path.is_empty() { "properties.desired".to_string() } else { path };
            out.push(Change::TwinChanged { module: twin.clone(), path, before, after });
        }
        if total > MAX_TWIN_PATHS {
            out.push(Change::TwinPathsOmitted { module: twin.clone(), count: total - MAX_TWIN_PATHS });
        }
    }
    out
}

fn keys(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let set: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    set.into_iter().cloned().collect()
}

fn route_text(v: &Value, redact: &Redactor) -> String {
    match v {
        Value::String(s) => redact.text(&Value::String(s.clone())),
        Value::Object(o) => {
            let mut text = o.get("route").map(|r| redact.text(r)).unwrap_or_default();
            if let Some(p) = o.get("priority") {
                text.push_str(&format!(" (priority {p}"));
                if let Some(t) = o.get("timeToLiveSecs") {
                    text.push_str(&format!(", ttl {t}s"));
                }
                text.push(')');
            } else if let Some(t) = o.get("timeToLiveSecs") {
                text.push_str(&format!(" (ttl {t}s)"));
            }
            text
        }
        other => redact.text(other),
    }
}

/// A module's fields that differ: image, version, status, restartPolicy, startupOrder,
/// imagePullPolicy, createOptions (joined), env.<NAME>.
fn module_fields(b: &Value, a: &Value, redact: &Redactor) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let field = |v: &Value, k: &str| -> Option<Value> {
        match k {
            "image" => v.pointer("/settings/image").cloned(),
            "createOptions" => {
                let settings = v.get("settings")?.as_object()?;
                crate::manifest::join_create_options(settings).and_then(Result::ok).map(Value::String)
            }
            other => v.get(other).cloned(),
        }
    };
    for k in ["image", "version", "status", "restartPolicy", "startupOrder", "imagePullPolicy", "createOptions", "type"]
    {
        let (bv, av) = (field(b, k), field(a, k));
        if bv != av {
            let (before, after) = redact.pair(bv.as_ref(), av.as_ref());
            out.push((k.to_string(), before, after));
        }
    }
    let empty = Map::new();
    let b_env = b.get("env").and_then(Value::as_object).unwrap_or(&empty);
    let a_env = a.get("env").and_then(Value::as_object).unwrap_or(&empty);
    for name in keys(b_env, a_env) {
        let (bv, av) = (b_env.get(&name).and_then(|v| v.get("value")), a_env.get(&name).and_then(|v| v.get("value")));
        if bv != av {
            let (before, after) = redact.pair_at(&name, bv, av);
            out.push((format!("env.{name}"), before, after));
        }
    }
    out
}

/// Leaf-level differences between two JSON documents, as dotted paths. Arrays and
/// scalars are leaves.
fn leaf_diff(b: Option<&Value>, a: Option<&Value>, path: &str, out: &mut Vec<(String, Option<Value>, Option<Value>)>) {
    if b == a {
        return;
    }
    match (b, a) {
        (Some(Value::Object(bm)), Some(Value::Object(am))) => {
            for k in keys(bm, am) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                leaf_diff(bm.get(&k), am.get(&k), &p, out);
            }
        }
        (b, a) => out.push((path.to_string(), b.cloned(), a.cloned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(agent: Value, hub: Value, twins: &[(&str, Value)]) -> EffectiveManifest {
        EffectiveManifest {
            no_standard: false,
            unmanaged: false,
            edge_agent: agent,
            edge_hub: hub,
            twins: twins.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            provenance: Default::default(),
            conflicts: vec![],
        }
    }

    #[test]
    fn reports_modules_routes_runtime_and_twins_semantically() {
        let mut redact = Redactor::default();
        redact.add("pw-old");
        redact.add("pw-new");
        let before = manifest(
            json!({"schemaVersion": "1.1", "runtime": {"settings": {"registryCredentials": {"r": {"password": "pw-old"}}}},
                   "modules": {"A": {"settings": {"image": "a:1.0"}, "env": {"X": {"value": 1}}}, "Gone": {"settings": {"image": "g"}}}}),
            json!({"routes": {"r1": "FROM /a INTO $upstream", "r2": "FROM /b INTO $upstream"}}),
            &[("A", json!({"s": {"i": 1, "j": 2}}))],
        );
        let after = manifest(
            json!({"schemaVersion": "1.1", "runtime": {"settings": {"registryCredentials": {"r": {"password": "pw-new"}}}},
                   "modules": {"A": {"settings": {"image": "a:1.1"}, "env": {"X": {"value": 1}, "Y": {"value": "y"}}}, "New": {"settings": {"image": "n:2"}}}}),
            json!({"routes": {"r1": {"route": "FROM /a INTO $upstream", "priority": 1}, "r3": "FROM /c INTO $upstream"}}),
            &[("A", json!({"s": {"i": 2, "j": 2}}))],
        );
        let text: Vec<String> = diff(&before, &after, &redact).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            [
                "~ module A image: a:1.0 → a:1.1",
                "~ module A env.Y: added y",
                "- module Gone",
                "+ module New (n:2)",
                "~ runtime settings.registryCredentials.r.password: (sensitive value changed) → (sensitive value changed)",
                "~ route r1: FROM /a INTO $upstream → FROM /a INTO $upstream (priority 1)",
                "- route r2",
                "+ route r3: FROM /c INTO $upstream",
                "~ twin A s.i: 1 → 2",
            ]
        );
    }

    #[test]
    fn unmanaged_after_says_so_and_nothing_else() {
        let before = manifest(json!({"modules": {"A": {}}}), json!({}), &[]);
        let mut after = manifest(json!({}), json!({}), &[]);
        after.unmanaged = true;
        assert_eq!(diff(&before, &after, &Redactor::default()), [Change::BecomesUnmanaged]);
        assert!(diff(&after, &after, &Redactor::default()).is_empty());
    }
}
