//! Whether two deployments' contents mean the same to the edge runtime.
//!
//! Content is immutable on the hub, so adopting a configuration whose content fleetform
//! would write differently (a spaced or differently split createOptions, an empty one)
//! would otherwise mean replacing it with identical settings. The agent joins the
//! createOptions pieces and parses them as JSON, treating empty, blank and `null` as no
//! options; the edge runtime matches field names case-insensitively (in `$edgeAgent` and
//! `$edgeHub`); a route object holding only `route` is the plain route string. Those are
//! the only differences forgiven here.

use serde_json::{Map, Value};

use super::join_create_options;
use crate::model::ConfigurationContent;

/// `a` and `b` configure devices identically (see the module comment).
pub fn same_content(a: &ConfigurationContent, b: &ConfigurationContent) -> bool {
    if a == b {
        return true;
    }
    let norm = |c: &ConfigurationContent| {
        let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
        // Only the runtime's own twins are read case-insensitively; a custom module's
        // desired properties mean whatever that module makes of them.
        if let Some(Value::Object(mc)) = v.get_mut("modulesContent") {
            for (twin, t) in mc.iter_mut() {
                if twin == "$edgeAgent" || twin == "$edgeHub" {
                    normalise(t);
                }
            }
        }
        v
    };
    norm(a) == norm(b)
}

/// Keys whose spelling the runtime does not care about, in the spelling fleetform writes.
const KNOWN_KEYS: &[&str] = &[
    "schemaVersion",
    "runtime",
    "systemModules",
    "modules",
    "type",
    "settings",
    "minDockerVersion",
    "loggingOptions",
    "registryCredentials",
    "edgeAgent",
    "edgeHub",
    "status",
    "restartPolicy",
    "startupOrder",
    "imagePullPolicy",
    "env",
    "version",
    "image",
    "digest",
    "routes",
    "storeAndForwardConfiguration",
    "timeToLiveSecs",
    "storeLimits",
    "maxSizeBytes",
    "value",
    "route",
    "priority",
    "address",
    "username",
    "password",
];

fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let renamed: Map<String, Value> = std::mem::take(m)
                .into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let name = match lower.strip_prefix("createoptions") {
                        Some(n) => format!("createOptions{n}"),
                        None => KNOWN_KEYS.iter().find(|n| n.eq_ignore_ascii_case(&k)).map_or(k, |n| n.to_string()),
                    };
                    (name, v)
                })
                .collect();
            *m = renamed;
            if m.contains_key("createOptions")
                && let Some(Ok(joined)) = join_create_options(m)
            {
                m.retain(|k, _| !k.starts_with("createOptions"));
                let trimmed = joined.trim();
                if !trimmed.is_empty() && trimmed != "null" {
                    let parsed = serde_json::from_str::<Value>(trimmed).unwrap_or(Value::String(joined));
                    m.insert("createOptions".into(), parsed);
                }
            }
            for child in m.values_mut() {
                normalise(child);
            }
            // A route object with neither priority nor TTL is the plain route: edgeHub
            // gives both their defaults either way.
            if m.len() == 1
                && let Some(Value::String(route)) = m.get("route")
            {
                *v = Value::String(route.clone());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content(settings: Value) -> ConfigurationContent {
        serde_json::from_value(json!({ "modulesContent": {
            "$edgeAgent": { "properties.desired.modules.m": { "type": "docker", "settings": settings } }
        }}))
        .unwrap()
    }

    #[test]
    fn forgives_only_what_the_agent_ignores() {
        let canonical = content(json!({ "image": "i", "createOptions": "{\"A\":{\"B\":1}}" }));
        let spaced = content(json!({ "image": "i", "createOptions": "{ \"A\": {\n \"B\": 1 } }" }));
        let split = content(json!({ "image": "i", "createOptions": "{\"A\":{", "createOptions01": "\"B\":1}}" }));
        let cased = content(json!({ "Image": "i", "createoptions": "{\"A\":{\"B\":1}}" }));
        for same in [&spaced, &split, &cased] {
            assert!(same_content(&canonical, same));
        }
        let none = content(json!({ "image": "i" }));
        assert!(same_content(&none, &content(json!({ "image": "i", "createOptions": null }))));
        let hub = |routes: Value| -> ConfigurationContent {
            serde_json::from_value(json!({ "modulesContent": {
                "$edgeHub": { "properties.desired": { "routes": routes } },
                "custom": { "properties.desired": { "Value": 1 } }
            }}))
            .unwrap()
        };
        let plain = hub(json!({ "r": "FROM /* INTO $upstream" }));
        assert!(same_content(&plain, &hub(json!({ "r": { "Route": "FROM /* INTO $upstream" } }))));
        assert!(!same_content(&plain, &hub(json!({ "r": { "route": "FROM /* INTO $upstream", "priority": 1 } }))));
        // A custom module's twin is compared exactly: its keys mean what the module says.
        let custom = |twin: Value| -> ConfigurationContent {
            serde_json::from_value(json!({ "modulesContent": { "custom": { "properties.desired": twin } } })).unwrap()
        };
        assert!(!same_content(&custom(json!({ "Value": 1 })), &custom(json!({ "value": 1 }))));
        for empty in ["", "  ", "null"] {
            assert!(same_content(&none, &content(json!({ "image": "i", "createOptions": empty }))), "{empty:?}");
        }
        // Values, JSON inside createOptions and unknown keys still count.
        assert!(!same_content(&canonical, &content(json!({ "image": "j", "createOptions": "{\"A\":{\"B\":1}}" }))));
        assert!(!same_content(&canonical, &content(json!({ "image": "i", "createOptions": "{\"A\":{\"b\":1}}" }))));
        assert!(!same_content(&none, &content(json!({ "image": "i", "createOptions": "{}" }))));
        assert!(!same_content(&none, &content(json!({ "image": "i", "Extra": 1 }))));
    }
}
