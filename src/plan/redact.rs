//! Keeping secrets out of plans. Merging and diffing work on the real content (a changed
//! password must be seen as a change); everything shown or saved goes through a
//! [`Redactor`] that knows every secret value in play.

use std::collections::HashSet;

use serde_json::Value;

use crate::hub::wire::Configuration;
use crate::manifest::{MASK, Rendered};

/// Shown instead of two different values that are both secret.
pub const SECRET_CHANGED: &str = "(sensitive value changed)";

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: HashSet<String>,
}

impl Redactor {
    /// Collects the secrets of the declared deployments (every value rendered as
    /// sensitive) and of the hub's configurations (every registry password).
    pub fn new(declared: &[Rendered], hub: &[Configuration]) -> Self {
        let mut r = Redactor::default();
        for d in declared {
            let content = serde_json::to_value(&d.configuration.content.modules_content).unwrap_or(Value::Null);
            for p in &d.sensitive {
                if let Some(Value::String(s)) = content.pointer(p) {
                    r.add(s);
                }
            }
        }
        for c in hub.iter().chain(declared.iter().map(|d| &d.configuration)) {
            if let Some(mc) = &c.content.modules_content {
                for twin in mc.values() {
                    for (k, v) in twin {
                        r.collect_passwords(v, k.contains("registryCredentials"));
                    }
                }
            }
        }
        r
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
                        if let Value::String(s) = child {
                            self.add(s);
                        }
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

    /// A copy with every secret string replaced by the mask.
    pub fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) if self.is_secret(s) => Value::String(MASK.to_string()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), self.value(v))).collect()),
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
            return (Some(SECRET_CHANGED.to_string()), Some(SECRET_CHANGED.to_string()));
        }
        (b, a)
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
}
