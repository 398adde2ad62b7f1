//! Saved plans (`plan --out FILE`): exactly what apply will do, and what it was computed
//! from, so that apply can carry it out and refuse it once the hub or the repository has
//! moved on. Secrets are left out: contents are stored redacted, with the content hash
//! the resolved (secret-bearing) content must still have at apply time.

use crate::model::DeploymentId;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Plan;
use super::steps::Step;
use crate::manifest::{LABEL_HASH, LABEL_NAME};
use crate::model::{Configuration, Etag};

pub const SAVED_KIND: &str = "fleetform-plan";
pub const SAVED_VERSION: u32 = 1;

/// One declared deployment as the plan rendered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedConfiguration {
    pub name: String,
    pub id: DeploymentId,
    /// `fleetform-hash`: SHA-256 of the resolved content (first 16 hex digits).
    pub hash: String,
    /// The configuration with every sensitive value masked.
    pub configuration: Configuration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    /// When the plan was made (UTC, RFC 3339).
    pub created: String,
    /// The git commit the deployment files came from, when they are in a repository.
    pub source_commit: Option<String>,
    /// The hub as the user named it, for messages.
    pub hub: String,
    /// The hub's stable identity ([`crate::model::FleetRead::identity`]): what apply compares.
    /// Missing in plans saved before it existed; apply refuses those.
    #[serde(default)]
    pub hub_id: Option<String>,
    pub steps: Vec<Step>,
    pub configurations: Vec<SavedConfiguration>,
    /// Every managed configuration on the hub when planned: id → etag. Apply refuses the
    /// plan when this no longer matches.
    pub hub_etags: BTreeMap<String, Option<Etag>>,
    pub summary: String,
    /// Devices each deployment (by id) should be applied to after apply (for `--wait`).
    #[serde(default)]
    pub expected_applied: BTreeMap<String, u64>,
    /// The deployment paths the plan was made from, as given; `apply PLANFILE` re-renders
    /// these when no paths follow the plan file.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Whether the plan deletes undeclared managed deployments. Apply re-derives the plan
    /// with this setting, so a delete added by hand to a plan made without `--prune` is not
    /// a step of the re-derived plan and is refused.
    #[serde(default)]
    pub prune: bool,
    /// HMAC-SHA256 (hex) over the rest of the file ([`plan_mac`]), written when
    /// `FLEETFORM_HASH_KEY` is set at plan time. The re-derivation bounds what an edit can
    /// do; the MAC refuses any edit at all, `prune` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl SavedPlan {
    pub fn new(plan: &Plan, source_commit: Option<String>, summary: String) -> Self {
        let configurations = plan
            .declared
            .iter()
            .map(|r| SavedConfiguration {
                name: r.configuration.labels.get(LABEL_NAME).cloned().unwrap_or_default(),
                id: r.configuration.id.clone(),
                hash: r.configuration.labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                configuration: plan.redactor.configuration(&r.configuration),
            })
            .collect();
        let hub_etags = plan
            .current
            .iter()
            .filter(|c| c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH))
            .map(|c| (c.id.to_string(), c.etag.clone()))
            .collect();
        SavedPlan {
            kind: SAVED_KIND.to_string(),
            format_version: SAVED_VERSION,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source_commit,
            hub: plan.hub.clone(),
            hub_id: Some(plan.hub_id.clone()),
            prune: plan.count(crate::plan::ActionKind::Delete) > 0,
            steps: plan.steps.clone(),
            configurations,
            hub_etags,
            summary,
            expected_applied: plan.expected_applied.clone(),
            paths: Vec::new(),
            mac: None,
        }
    }

    /// Sets [`SavedPlan::mac`] under `key` (the `FLEETFORM_HASH_KEY` value), over the plan
    /// as it stands: call it last, once every other field is final.
    pub fn seal(&mut self, key: &[u8]) -> Result<(), serde_json::Error> {
        self.mac = None;
        let value = serde_json::to_value(&*self)?;
        self.mac = Some(hex(&plan_mac(key, &value)));
        Ok(())
    }
}

/// What the MAC key is derived for: the same `FLEETFORM_HASH_KEY` also keys the content
/// hash, and a MAC made for one use must never verify for the other.
const MAC_CONTEXT: &[u8] = b"fleetform saved plan v1";

/// HMAC-SHA256 over the canonical form of `plan` (every member but a top-level `mac`,
/// object keys sorted, no whitespace) under HMAC-SHA256(key, [`MAC_CONTEXT`]).
pub fn plan_mac(key: &[u8], plan: &serde_json::Value) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    // HMAC takes a key of any length, so neither `new_from_slice` can fail.
    let mut derive = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    derive.update(MAC_CONTEXT);
    let mac_key = derive.finalize().into_bytes();
    let mut mac = HmacSha256::new_from_slice(&mac_key).expect("HMAC accepts any key length");
    let mut text = String::new();
    match plan {
        serde_json::Value::Object(members) => {
            let without: serde_json::Map<String, serde_json::Value> =
                members.iter().filter(|(k, _)| k.as_str() != "mac").map(|(k, v)| (k.clone(), v.clone())).collect();
            canonical(&serde_json::Value::Object(without), &mut text);
        }
        other => canonical(other, &mut text),
    }
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Why a saved plan's MAC does not vouch for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacProblem {
    /// The key is set but the plan has no MAC (made without the key, or the MAC removed).
    Missing,
    /// The MAC is not the one the key gives for this content: the file was edited.
    Mismatch,
    /// The plan has a MAC but no key is set to check it with.
    NoKey,
}

/// Checks the `mac` member of a saved plan as read (`plan`, the whole JSON document).
/// A plan without a MAC, read without a key, passes: nothing can be checked, and the
/// re-derivation still bounds what it can do.
pub fn verify_mac(plan: &serde_json::Value, key: Option<&[u8]>) -> Result<(), MacProblem> {
    let mac = plan.get("mac");
    match (key, mac) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(MacProblem::NoKey),
        (Some(_), None) => Err(MacProblem::Missing),
        (Some(key), Some(mac)) => {
            let expected = plan_mac(key, plan);
            // Compared in constant time, so the file's owner cannot learn the MAC byte by byte.
            let given = mac.as_str().and_then(unhex).unwrap_or_default();
            let equal = given.len() == expected.len()
                && given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if equal { Ok(()) } else { Err(MacProblem::Mismatch) }
        }
    }
}

/// JSON with object keys in byte order and no whitespace: the same text whatever order
/// the members were written or read in.
fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&members[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_mac_covers_every_member_and_ignores_member_order() {
        let key = b"demo-hash-key-for-the-example-hub";
        let plan = json!({"kind": "fleetform-plan", "prune": false, "steps": [{"op": "create", "n": 1.5}]});
        let mac = hex(&plan_mac(key, &plan));
        let mut sealed = plan.clone();
        sealed["mac"] = json!(mac);
        assert_eq!(verify_mac(&sealed, Some(key)), Ok(()));
        // Reordered members: the same plan.
        let reordered: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"mac":"{mac}","steps":[{{"n":1.5,"op":"create"}}],"prune":false,"kind":"fleetform-plan"}}"#
        ))
        .unwrap();
        assert_eq!(verify_mac(&reordered, Some(key)), Ok(()));
        let mut edited = sealed.clone();
        edited["prune"] = json!(true);
        assert_eq!(verify_mac(&edited, Some(key)), Err(MacProblem::Mismatch));
        let mut added = sealed.clone();
        added["extra"] = json!(null);
        assert_eq!(verify_mac(&added, Some(key)), Err(MacProblem::Mismatch));
        assert_eq!(verify_mac(&sealed, Some(b"another key of the same length, 33")), Err(MacProblem::Mismatch));
        assert_eq!(verify_mac(&plan, Some(key)), Err(MacProblem::Missing));
        assert_eq!(verify_mac(&sealed, None), Err(MacProblem::NoKey));
        assert_eq!(verify_mac(&plan, None), Ok(()));
        let mut garbage = sealed.clone();
        garbage["mac"] = json!("zz");
        assert_eq!(verify_mac(&garbage, Some(key)), Err(MacProblem::Mismatch));
    }

    #[test]
    fn the_mac_key_is_not_the_hash_key() {
        // Independent reference: HMAC-SHA256 straight under the hash key must differ.
        use hmac::{Hmac, Mac};
        let key = b"demo-hash-key-for-the-example-hub";
        let plan = json!({"a": 1});
        let mut direct = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        direct.update(br#"{"a":1}"#);
        let direct: [u8; 32] = direct.finalize().into_bytes().into();
        assert_ne!(plan_mac(key, &plan), direct);
        // And the two-step derivation, done by hand, is what plan_mac computes.
        let mut k = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        k.update(b"fleetform saved plan v1");
        let k = k.finalize().into_bytes();
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&k).unwrap();
        m.update(br#"{"a":1}"#);
        let m: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(plan_mac(key, &plan), m);
    }
}
