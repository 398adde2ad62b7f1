//! Keeping secrets out of plans. Merging and diffing work on the real content (a changed
//! password must be seen as a change); everything shown or saved goes through a
//! [`Redactor`] that knows every secret value in play.

use std::collections::HashSet;

use serde_json::Value;

use crate::manifest::{LABEL_NAME, MASK, Rendered};
use crate::model::Configuration;

pub use crate::model::sensitive::name_looks_secret;

fn holds_redacted(v: &Value) -> bool {
    match v {
        Value::String(s) => s == REDACTED,
        Value::Object(m) => m.values().any(holds_redacted),
        Value::Array(items) => items.iter().any(holds_redacted),
        _ => false,
    }
}

/// Calls `f` with the JSON pointer and text of every string leaf.
fn leaves(v: &Value, at: String, f: &mut dyn FnMut(String, &str)) {
    match v {
        Value::String(s) => f(at, s),
        Value::Object(m) => {
            for (k, child) in m {
                leaves(child, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), f);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                leaves(child, format!("{at}/{i}"), f);
            }
        }
        _ => {}
    }
}

/// Shown instead of two different values that are both secret.
pub const SECRET_CHANGED: &str = "(sensitive value changed)";

/// What `snapshot --redact` writes in place of every sensitive value. Plans read it as a
/// secret whose value is unknown: masked, and never reported as "changed" or "unchanged".
pub const REDACTED: &str = "(redacted by fleetform snapshot --redact)";

/// Shown when one side of a comparison is a value a redacted snapshot withheld.
pub const SECRET_UNKNOWN: &str = "(sensitive, not in the redacted snapshot)";

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: HashSet<String>,
    /// Numbers held at a sensitive place, by their JSON text. A secret need not be a
    /// string (`API_TOKEN: 987654321`); booleans and null are not collected (masking
    /// every `true` would hide the plan) and are masked by place instead.
    numbers: HashSet<String>,
    /// Values of credential-named Docker `Env` entries inside createOptions
    /// (`"DB_PASSWORD=…"`): they sit inside a longer string, so they are masked wherever
    /// they occur in a string, not only as a whole value.
    embedded: Vec<String>,
}

/// The values of credential-named `NAME=VALUE` entries of the `Env` array of a
/// createOptions document.
pub fn create_options_env_secrets(create_options: &str) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_str::<Value>(create_options) else { return Vec::new() };
    let Some(Value::Array(env)) = doc.get("Env") else { return Vec::new() };
    env.iter()
        .filter_map(Value::as_str)
        .filter_map(|e| e.split_once('='))
        .filter(|(name, value)| name_looks_secret(name) && !value.is_empty())
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

impl Redactor {
    /// Collects the secrets of the declared deployments (every value rendered as
    /// sensitive) and of the hub's configurations (every registry password).
    pub fn new(declared: &[Rendered], hub: &[Configuration]) -> Self {
        let mut r = Redactor::default();
        r.add(REDACTED);
        for d in declared {
            let content = serde_json::to_value(&d.configuration.content.modules_content).unwrap_or(Value::Null);
            for p in &d.sensitive {
                if let Some(v) = content.pointer(p) {
                    r.add_value(v);
                }
            }
        }
        // The hub does not record which of its values were secret, so its old value at a
        // path is secret when the declared deployment of the same name says that path is
        // (its old token must not show next to the new one's mask).
        for d in declared {
            let Some(name) = d.configuration.labels.get(LABEL_NAME) else { continue };
            for c in hub.iter().filter(|c| c.labels.get(LABEL_NAME) == Some(name)) {
                let Ok(content) = serde_json::to_value(&c.content.modules_content) else { continue };
                for p in &d.sensitive {
                    if let Some(v) = content.pointer(p) {
                        r.add_value(v);
                    }
                }
            }
        }
        for c in hub.iter().chain(declared.iter().map(|d| &d.configuration)) {
            if let Some(mc) = &c.content.modules_content {
                for twin in mc.values() {
                    for (k, v) in twin {
                        r.collect_passwords(v, k.contains("registryCredentials"));
                        r.collect_secret_looking(v);
                        r.collect_create_options(v);
                    }
                }
            }
        }
        // A value secret in one version of a deployment is secret in all of them: another
        // hub version holding the same string at another path is still that secret, and a
        // path that holds a secret in one version holds one in the others.
        let mut pointers = HashSet::new();
        for c in hub {
            let Ok(content) = serde_json::to_value(&c.content.modules_content) else { continue };
            leaves(&content, String::new(), &mut |p, s| {
                if r.is_secret(s) {
                    pointers.insert((c.labels.get(LABEL_NAME).cloned(), p));
                }
            });
        }
        for c in hub.iter().chain(declared.iter().map(|d| &d.configuration)) {
            let Ok(content) = serde_json::to_value(&c.content.modules_content) else { continue };
            let name = c.labels.get(LABEL_NAME).cloned();
            for (n, p) in &pointers {
                if n.is_some()
                    && *n == name
                    && let Some(Value::String(s)) = content.pointer(p)
                {
                    r.add(s);
                }
            }
        }
        r
    }

    /// Values under a name that looks like a secret (`API_TOKEN: {value: …}` in a module's
    /// env, or a plain `"password": "…"` anywhere in the content).
    fn collect_secret_looking(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if name_looks_secret(k) {
                        // A whole object or array under a credential-named key is secret,
                        // except a module env entry, whose secret is its `value`.
                        match child.as_object().and_then(|o| o.get("value")) {
                            Some(v) => self.add_value(v),
                            None => self.add_value(child),
                        }
                    }
                    self.collect_secret_looking(child);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect_secret_looking(i)),
            _ => {}
        }
    }

    /// Secrets in the Docker `Env` of every module's createOptions (joined from its pieces).
    fn collect_create_options(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Ok(joined)) = crate::manifest::join_create_options(m) {
                    for (_, secret) in create_options_env_secrets(&joined) {
                        self.add(&secret);
                        // The JSON text escapes what JSON escapes; mask that spelling too.
                        let escaped = serde_json::to_string(&secret).unwrap_or_default();
                        let escaped = escaped.trim_matches('"').to_string();
                        for e in [secret, escaped] {
                            if !self.embedded.contains(&e) {
                                self.embedded.push(e);
                            }
                        }
                    }
                }
                m.values().for_each(|c| self.collect_create_options(c));
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect_create_options(i)),
            _ => {}
        }
    }

    /// `s` with every embedded secret replaced by `marker`, when it holds one.
    fn mask_embedded(&self, s: &str, marker: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for e in &self.embedded {
            let cur = out.as_deref().unwrap_or(s);
            if cur.contains(e.as_str()) {
                out = Some(cur.replace(e.as_str(), marker));
            }
        }
        out
    }

    /// Every string and number leaf of a value found at a sensitive place.
    pub fn add_value(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Number(n) => {
                self.numbers.insert(n.to_string());
            }
            Value::Object(m) => m.values().for_each(|c| self.add_value(c)),
            Value::Array(items) => items.iter().for_each(|c| self.add_value(c)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    pub fn add(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.secrets.insert(secret.to_string());
        }
    }

    fn collect_passwords(&mut self, v: &Value, in_credentials: bool) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if in_credentials && k == "password" {
                        self.add_value(child);
                    } else {
                        self.collect_passwords(child, in_credentials || k == "registryCredentials");
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect_passwords(i, in_credentials)),
            _ => {}
        }
    }

    pub fn is_secret(&self, s: &str) -> bool {
        self.secrets.contains(s)
    }

    fn is_secret_number(&self, n: &serde_json::Number) -> bool {
        self.numbers.contains(&n.to_string())
    }

    /// A copy with every secret value replaced by the mask: known secret strings and
    /// numbers anywhere, and whatever sits under a credential-named key (booleans too).
    pub fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) if self.is_secret(s) => Value::String(MASK.to_string()),
            Value::String(s) if !self.embedded.is_empty() => {
                Value::String(self.mask_embedded(s, MASK).unwrap_or_else(|| s.clone()))
            }
            Value::Number(n) if self.is_secret_number(n) => Value::String(MASK.to_string()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let masked = match v {
                            Value::Bool(_) if name_looks_secret(k) => Value::String(MASK.to_string()),
                            Value::Object(o)
                                if name_looks_secret(k) && matches!(o.get("value"), Some(Value::Bool(_))) =>
                            {
                                let mut o = o.clone();
                                o.insert("value".into(), Value::String(MASK.to_string()));
                                Value::Object(o)
                            }
                            other => self.value(other),
                        };
                        (k.clone(), masked)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.value(i)).collect()),
            other => other.clone(),
        }
    }

    /// Compact text of a value, redacted.
    pub fn text(&self, v: &Value) -> String {
        match self.value(v) {
            Value::String(s) => s,
            other => serde_json::to_string(&other).unwrap_or_default(),
        }
    }

    /// The pair of texts shown for a change from `before` to `after`. When the two differ
    /// only in secrets, both read "(sensitive value changed)".
    pub fn pair(&self, before: Option<&Value>, after: Option<&Value>) -> (Option<String>, Option<String>) {
        let b = before.map(|v| self.text(v));
        let a = after.map(|v| self.text(v));
        if b == a && before != after {
            let text = if before.is_some_and(holds_redacted) || after.is_some_and(holds_redacted) {
                SECRET_UNKNOWN
            } else {
                SECRET_CHANGED
            };
            return (Some(text.to_string()), Some(text.to_string()));
        }
        (b, a)
    }

    /// Like [`Redactor::pair`] for a value at a dotted `path` (a twin property, an env
    /// variable): when a name on the path looks like a credential, both sides are masked
    /// whatever their type.
    pub fn pair_at(
        &self,
        path: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> (Option<String>, Option<String>) {
        // Any name on the way counts: a whole object under `secrets` is secret.
        if !path.split(['.', '/']).any(name_looks_secret) {
            return self.pair(before, after);
        }
        if before.is_some() && after.is_some() && before != after {
            let text = if before.is_some_and(holds_redacted) || after.is_some_and(holds_redacted) {
                SECRET_UNKNOWN
            } else {
                SECRET_CHANGED
            };
            return (Some(text.to_string()), Some(text.to_string()));
        }
        (before.map(|_| MASK.to_string()), after.map(|_| MASK.to_string()))
    }

    /// Replaces, in a value read from the hub (a configuration's content, a twin), every
    /// known secret and every value that is sensitive by its place (a registry password, a
    /// setting whose name looks like a credential) with [`REDACTED`]. The place matters for
    /// twins: they can hold secrets of deployments no longer on the hub.
    pub fn redact_in_place(&self, v: &mut Value) {
        self.redact_at(v, false, REDACTED);
    }

    /// Like [`Redactor::redact_in_place`] with the plain mask, for output (`query` rows).
    pub fn mask_in_place(&self, v: &mut Value) {
        self.redact_at(v, false, MASK);
    }

    fn redact_at(&self, v: &mut Value, in_credentials: bool, marker: &str) {
        match v {
            Value::String(s) if self.is_secret(s) => *s = marker.to_string(),
            Value::String(s) if !self.embedded.is_empty() => {
                if let Some(masked) = self.mask_embedded(s, marker) {
                    *s = masked;
                }
            }
            Value::Number(n) if self.is_secret_number(n) => *v = Value::String(marker.to_string()),
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    if (in_credentials && k == "password") || name_looks_secret(k) {
                        // Whatever the type: `API_TOKEN: {value: …}` in a module's env keeps
                        // its shape, anything else is replaced whole.
                        match child.as_object_mut().and_then(|o| o.get_mut("value")) {
                            Some(v) => *v = Value::String(marker.to_string()),
                            None => *child = Value::String(marker.to_string()),
                        }
                        continue;
                    }
                    self.redact_at(child, in_credentials || k.contains("registryCredentials"), marker);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_at(i, in_credentials, marker)),
            _ => {}
        }
    }

    /// Redacts a whole configuration (for saved plans and `--diff`).
    pub fn configuration(&self, c: &Configuration) -> Configuration {
        let mut out = c.clone();
        if let Some(mc) = out.content.modules_content.as_mut() {
            for twin in mc.values_mut() {
                for v in twin.values_mut() {
                    *v = self.value(v);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_secrets_and_says_when_only_a_secret_changed() {
        let mut r = Redactor::default();
        r.add("old-pw");
        r.add("new-pw");
        assert_eq!(r.value(&json!({"a": ["old-pw", "x"]})), json!({"a": ["(sensitive)", "x"]}));
        let (b, a) = r.pair(Some(&json!({"password": "old-pw"})), Some(&json!({"password": "new-pw"})));
        assert_eq!((b.as_deref(), a.as_deref()), (Some(SECRET_CHANGED), Some(SECRET_CHANGED)));
        let (b, a) = r.pair(Some(&json!("1.0")), Some(&json!("1.1")));
        assert_eq!((b.as_deref(), a.as_deref()), (Some("1.0"), Some("1.1")));
    }

    #[test]
    fn hub_registry_passwords_are_secrets() {
        let c: Configuration = serde_json::from_value(json!({
            "id": "x",
            "content": {"modulesContent": {
                "$edgeAgent": {"properties.desired": {"runtime": {"settings": {"registryCredentials": {"r": {"address": "a", "username": "u", "password": "hub-pw"}}}}}},
                "$edgeHub": {}
            }}
        }))
        .unwrap();
        let layered: Configuration = serde_json::from_value(json!({
            "id": "y",
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.runtime.settings.registryCredentials.v": {"address": "a", "username": "u", "password": "layer-pw"}}}}
        }))
        .unwrap();
        let r = Redactor::new(&[], &[c, layered]);
        assert!(r.is_secret("hub-pw") && r.is_secret("layer-pw"));
        assert!(!r.is_secret("u"));
    }

    fn camera(id: &str, token: &str, extra: Value) -> Configuration {
        serde_json::from_value(json!({
            "id": id,
            "labels": {"fleetform-name": "camera"},
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.modules.cam": {
                "env": {"CAM_CODE": {"value": token}, "LEVEL": {"value": "info"}},
                "settings": extra
            }}}}
        }))
        .unwrap()
    }

    #[test]
    fn sensitive_places_are_masked_whatever_the_type() {
        let c: Configuration = serde_json::from_value(json!({
            "id": "x",
            "content": {"modulesContent": {
                "$edgeAgent": {"properties.desired.modules.m": {
                    "env": {"API_TOKEN": {"value": 987654321}},
                    "settings": {"createOptions": "{\"Env\":[\"DB_PASSWORD=co-pw\",\"MODE=x\"]}"}
                }},
                "m": {"properties.desired": {"secrets": {"inner": "obj-pw", "n": 424242}, "tokens": ["arr-pw"]}}
            }}
        }))
        .unwrap();
        let r = Redactor::new(&[], &[c]);
        assert_eq!(r.text(&json!(987654321)), MASK);
        assert_eq!(
            r.value(&json!({"n": 424242, "s": "obj-pw", "t": ["arr-pw"]})),
            json!({"n": MASK, "s": MASK, "t": [MASK]})
        );
        assert_eq!(r.text(&json!("{\"Env\":[\"DB_PASSWORD=co-pw\"]}")), "{\"Env\":[\"DB_PASSWORD=(sensitive)\"]}");
        assert_eq!(r.value(&json!({"enabled": true, "password": true})), json!({"enabled": true, "password": MASK}));
        let (b, a) = r.pair_at("camera.password", Some(&json!(true)), Some(&json!(false)));
        assert_eq!((b.as_deref(), a.as_deref()), (Some(SECRET_CHANGED), Some(SECRET_CHANGED)));
        let (b, a) = r.pair_at("camera.mode", Some(&json!(1)), Some(&json!(2)));
        assert_eq!((b.as_deref(), a.as_deref()), (Some("1"), Some("2")));
        let mut twin = json!({"secrets": {"n": 5}, "password": false, "mode": 424242});
        r.mask_in_place(&mut twin);
        assert_eq!(twin, json!({"secrets": MASK, "password": MASK, "mode": MASK}));
    }

    #[test]
    fn names_that_look_like_credentials() {
        for n in ["API_TOKEN", "DbPassword", "client_secret", "SAS_KEY", "key", "IOTHUB_CONNECTION_STRING", "apiKey"] {
            assert!(name_looks_secret(n), "{n}");
        }
        for n in ["LEVEL", "keyboard", "monkey", "image", "KEYVAULT_URL", "address", "username"] {
            assert!(!name_looks_secret(n), "{n}");
        }
    }

    #[test]
    fn a_path_secret_in_one_version_is_secret_in_every_version_of_that_name() {
        // CAM_CODE does not look like a secret by its name; the older hub version holds a
        // value known to be secret there (a registry password elsewhere), so the newer
        // version's value at the same path is masked too.
        let old = camera("camera-1", "shared-pw", json!({}));
        let new = camera("camera-2", "rotated-code", json!({}));
        let base: Configuration = serde_json::from_value(json!({
            "id": "base",
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.runtime.settings.registryCredentials.r": {"password": "shared-pw"}}}}
        }))
        .unwrap();
        let other: Configuration = serde_json::from_value(json!({
            "id": "other",
            "labels": {"fleetform-name": "other"},
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.modules.cam": {"env": {"CAM_CODE": {"value": "not-secret"}}}}}}
        }))
        .unwrap();
        let r = Redactor::new(&[], &[old, new, base, other]);
        assert!(r.is_secret("shared-pw") && r.is_secret("rotated-code"));
        assert!(!r.is_secret("info"), "a plain setting stays visible");
        assert!(!r.is_secret("not-secret"), "only versions sharing the name");
    }

    #[test]
    fn hub_values_named_like_secrets_are_secrets() {
        let c: Configuration = serde_json::from_value(json!({
            "id": "x",
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.modules.m": {
                "env": {"API_TOKEN": {"value": "hub-token"}, "LEVEL": {"value": "debug"}}
            }}}}
        }))
        .unwrap();
        let r = Redactor::new(&[], &[c]);
        assert!(r.is_secret("hub-token"));
        assert!(!r.is_secret("debug"));
        let (b, a) = r.pair(Some(&json!("hub-token")), Some(&json!(MASK)));
        assert_eq!((b.as_deref(), a.as_deref()), (Some(SECRET_CHANGED), Some(SECRET_CHANGED)));
    }

    #[test]
    fn redacting_a_twin_masks_by_place_and_value() {
        let mut r = Redactor::default();
        r.add("known");
        let mut twin = json!({"properties": {"desired": {
            "runtime": {"settings": {"registryCredentials": {"a": {"username": "u", "password": "pw"}}}},
            "modules": {"m": {"env": {"DB_PASSWORD": {"value": "db"}, "LEVEL": {"value": "known"}, "MODE": {"value": "x"}}}}
        }}});
        r.redact_in_place(&mut twin);
        let d = &twin["properties"]["desired"];
        assert_eq!(
            d["runtime"]["settings"]["registryCredentials"]["a"],
            json!({"username": "u", "password": REDACTED})
        );
        assert_eq!(d["modules"]["m"]["env"]["DB_PASSWORD"]["value"], REDACTED);
        assert_eq!(d["modules"]["m"]["env"]["LEVEL"]["value"], REDACTED);
        assert_eq!(d["modules"]["m"]["env"]["MODE"]["value"], "x");
        let mut r = Redactor::new(&[], &[]);
        r.add("declared-secret");
        let (b, a) = r.pair(Some(&json!({"v": REDACTED})), Some(&json!({"v": "declared-secret"})));
        assert_eq!((b.as_deref(), a.as_deref()), (Some(SECRET_UNKNOWN), Some(SECRET_UNKNOWN)));
    }
}
