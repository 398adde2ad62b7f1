//! The hub's `Configuration` object exactly as the REST API sends and receives it
//! (docs/hub-semantics.md#configuration, #rest-api). Everything that crosses the wire or sits in a snapshot's
//! `configurations.json` goes through these types, so that the snapshot, REST and
//! emulator backends agree on one shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::ids::{DeploymentId, Etag, Priority};

/// One configuration as returned by `GET /configurations/{id}` and the list endpoint.
///
/// Fields the hub sets (`createdTimeUtc`, `etag`, metric results…) are optional so that
/// the same type renders a create request, which must not carry them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    pub id: DeploymentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// The hub sends `null` for a configuration without labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub content: ConfigurationContent,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time_utc: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Etag>,
}

/// `content`: IoT Edge deployments use `modulesContent`; ADM configurations use the others.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    /// Module twin id (`$edgeAgent`, `$edgeHub`, a custom module) to the keys the
    /// deployment writes into that twin (`properties.desired` or dotted sub-paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_content: Option<BTreeMap<String, Map<String, Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_content: Option<Value>,
}

/// `metrics` and `systemMetrics`: named queries and, on reads, their counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Metrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: BTreeMap<String, i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub queries: BTreeMap<String, String>,
}

/// What kind of configuration this is, judged the way the hub does: by content shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigurationKind {
    /// An IoT Edge deployment whose `$edgeAgent` carries `properties.desired` whole.
    Standard,
    /// An IoT Edge deployment written as dotted keys (no system modules).
    Layered,
    /// An automatic device/module management configuration: never touched by fleetform.
    DeviceManagement,
}

impl Configuration {
    /// No flag marks a layered deployment: a standard one has `properties.desired`
    /// at the root of `$edgeAgent`, a layered one does not (docs/hub-semantics.md#layered-vs-standard).
    pub fn kind(&self) -> ConfigurationKind {
        match &self.content.modules_content {
            None => ConfigurationKind::DeviceManagement,
            Some(mc) => match mc.get("$edgeAgent") {
                Some(agent) if agent.contains_key("properties.desired") => ConfigurationKind::Standard,
                _ => ConfigurationKind::Layered,
            },
        }
    }

    pub fn is_edge(&self) -> bool {
        self.kind() != ConfigurationKind::DeviceManagement
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ConfigurationKind {
    /// The word plans, status and explain print for the kind (`{:<8}` pads it, so it is a
    /// plain word, not the serde name).
    pub fn word(self) -> &'static str {
        match self {
            ConfigurationKind::Standard => "standard",
            ConfigurationKind::Layered => "layered",
            ConfigurationKind::DeviceManagement => "device management",
        }
    }
}

impl std::fmt::Display for ConfigurationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that the plan's column width applies.
        f.pad(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hub_nulls_and_classifies_content() {
        let std: Configuration = serde_json::from_str(
            r#"{"id":"a","labels":null,"content":{"modulesContent":{"$edgeAgent":{"properties.desired":{}}}},
                "targetCondition":"*","priority":1,"metrics":{"results":null,"queries":null},"etag":"MQ=="}"#,
        )
        .unwrap();
        assert_eq!(std.kind(), ConfigurationKind::Standard);
        assert!(std.labels.is_empty());
        let layered: Configuration = serde_json::from_str(
            r#"{"id":"b","content":{"modulesContent":{"$edgeAgent":{"properties.desired.modules.m":{}}}}}"#,
        )
        .unwrap();
        assert_eq!(layered.kind(), ConfigurationKind::Layered);
        let adm: Configuration =
            serde_json::from_str(r#"{"id":"c","content":{"deviceContent":{"properties.desired.x":1}}}"#).unwrap();
        assert_eq!(adm.kind(), ConfigurationKind::DeviceManagement);
    }
}
