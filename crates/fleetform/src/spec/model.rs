//! The typed model of a deployment, as declared in KDL.
//!
//! Every value keeps the span it came from so that later stages (rendering, plan) can
//! point back into the file, and every value that may be a secret knows it is one.

use std::collections::BTreeMap;
use std::sync::Arc;

use miette::SourceSpan;
use serde::Serialize;

use super::source::SourceFile;

pub use crate::model::ids::{DeploymentId, DeploymentName, Priority};

/// Standard deployments carry the runtime; layered ones add to a standard one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentKind {
    Standard,
    Layered,
}

impl DeploymentKind {
    /// The KDL node name that declares this kind.
    pub fn node_name(self) -> &'static str {
        match self {
            DeploymentKind::Standard => "deployment",
            DeploymentKind::Layered => "layered",
        }
    }
}

/// Where something was declared: the file and the byte span in it.
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: Arc<SourceFile>,
    pub span: SourceSpan,
}

impl Origin {
    /// `file:line:col`, 1-based, as editors and CI annotations expect.
    pub fn location(&self) -> String {
        let (line, col) = self.file.line_col(self.span.offset());
        format!("{}:{}:{}", self.file.name, line, col)
    }
}

impl PartialEq for Origin {
    // Two models are equal when they declare the same thing, wherever it was written.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A target condition or metric query, with the span of the string's *contents* so that
/// a parse error can point at the exact character inside the KDL string.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryText {
    pub text: String,
    /// Source offset of each byte of `text` (plus one past the end), when the string was
    /// written in a form whose bytes can be mapped (quoted or raw, single line).
    pub offsets: Option<Arc<[usize]>>,
    pub origin: Origin,
}

impl QueryText {
    /// The source span of `len` bytes of the string starting at byte `start`, falling back
    /// to the whole string's span when the mapping is unknown.
    pub fn span_of(&self, start: usize, len: usize) -> SourceSpan {
        match &self.offsets {
            Some(map) if start < map.len() => {
                let end = (start + len).min(map.len() - 1);
                let from = map[start];
                let to = map[end].max(from + 1);
                SourceSpan::new(from.into(), to - from)
            }
            _ => self.origin.span,
        }
    }
}

/// Where a scalar value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// Written in the file.
    Literal,
    /// `(env)"NAME"`: read from the environment variable `NAME` when rendering.
    Env(String),
}

/// A scalar as declared: JSON-compatible value plus whether it is a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// For `ValueSource::Env` this is the variable's name as a string until resolved.
    pub value: serde_json::Value,
    pub source: ValueSource,
    /// Registry passwords and values marked `(secret)`: masked in every output.
    pub sensitive: bool,
    pub origin: Origin,
}

impl Scalar {
    pub fn literal(value: serde_json::Value, origin: Origin) -> Self {
        Scalar { value, source: ValueSource::Literal, sensitive: false, origin }
    }
}

/// A JSON document declared in KDL (twin properties, create options): the value plus the
/// scalars inside it that need resolving or masking, keyed by JSON pointer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct JsonDoc {
    pub value: serde_json::Value,
    pub scalars: Vec<(String, Scalar)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Registry {
    pub name: String,
    pub address: Scalar,
    pub username: Scalar,
    pub password: Scalar,
    pub origin: Origin,
}

/// `createOptions`: a JSON document the agent passes to Docker.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateOptions {
    pub doc: JsonDoc,
    pub origin: Origin,
}

/// Settings shared by custom modules and the two system modules.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ModuleSettings {
    pub image: Option<Scalar>,
    pub create_options: Option<CreateOptions>,
    pub env: BTreeMap<String, Scalar>,
    pub status: Option<String>,
    pub restart_policy: Option<String>,
    pub startup_order: Option<u32>,
    pub image_pull_policy: Option<String>,
    /// `settings.digest` (edgeAgent schema 1.3+): the image digest the agent pins to.
    pub digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    pub version: Option<String>,
    pub settings: ModuleSettings,
    pub origin: Origin,
}

/// The runtime section of a standard deployment: `$edgeAgent`'s runtime and system modules,
/// and the `$edgeHub` settings that are not routes.
#[derive(Clone, Debug, PartialEq)]
pub struct Runtime {
    pub agent_schema: String,
    pub hub_schema: String,
    pub min_docker_version: String,
    pub logging_options: String,
    pub registries: BTreeMap<String, Registry>,
    pub edge_agent: ModuleSettings,
    pub edge_hub: ModuleSettings,
    pub store_and_forward_ttl: u32,
    /// `storeAndForwardConfiguration.storeLimits.maxSizeBytes` (edgeHub 1.2+); the hub
    /// reads it as a signed 64-bit integer.
    pub store_max_size_bytes: Option<u64>,
    /// `$edgeHub` `mqttBroker` (edgeHub schema 1.2+): authorizations and bridges, a JSON
    /// object passed through as written.
    pub mqtt_broker: Option<serde_json::Value>,
    /// `$edgeAgent` `integrity` (edgeAgent schema 1.3): the signed-manifest header and
    /// signature, passed through as written.
    pub integrity: Option<serde_json::Value>,
    /// `$edgeHub` `integrity` (edgeHub schema 1.3), likewise.
    pub hub_integrity: Option<serde_json::Value>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub name: String,
    pub text: QueryText,
    pub priority: Option<u8>,
    pub ttl: Option<u32>,
    pub origin: Origin,
}

/// Desired properties written into one module twin: the whole `properties.desired`
/// (`path` empty) or one subsection (`properties.desired.<path>`).
#[derive(Clone, Debug, PartialEq)]
pub struct TwinSetting {
    pub module: String,
    pub path: Vec<String>,
    pub doc: JsonDoc,
    pub origin: Origin,
}

impl TwinSetting {
    pub fn key(&self) -> String {
        if self.path.is_empty() {
            "properties.desired".to_string()
        } else {
            format!("properties.desired.{}", self.path.join("."))
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub query: QueryText,
    pub origin: Origin,
}

/// One declared deployment, standard or layered.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    pub name: DeploymentName,
    pub kind: DeploymentKind,
    pub priority: Priority,
    /// `None` is `target #null`: deliberately targets no device.
    pub target: Option<QueryText>,
    pub labels: BTreeMap<String, String>,
    pub metrics: Vec<Metric>,
    /// Standard deployments only.
    pub runtime: Option<Runtime>,
    /// Layered deployments may add registry credentials of their own.
    pub registries: BTreeMap<String, Registry>,
    pub modules: BTreeMap<String, Module>,
    pub routes: BTreeMap<String, Route>,
    pub twins: Vec<TwinSetting>,
    /// `adopt "<hub id>"`: an existing hub configuration (written by `fleetform import`)
    /// that this deployment takes over. When its content equals this deployment's, plan
    /// updates its labels in place instead of replacing it.
    pub adopt: Option<String>,
    /// `rollout { … }`: a content change reaches the target wave by wave (issue #17).
    pub rollout: Option<Rollout>,
    pub origin: Origin,
}

/// How a content change of a deployment reaches its target: wave by wave, each wave
/// promoted when its devices report success, the whole change rolled back when they fail.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    /// In order; the last one covers the rest of the deployment's target.
    pub waves: Vec<Wave>,
    pub promote: PromoteRule,
    /// `None`: a failing wave waits for a person instead of rolling back.
    pub rollback: Option<RollbackRule>,
    pub origin: Origin,
}

/// One wave: the devices of the deployment's own target that also match `condition`.
#[derive(Clone, Debug, PartialEq)]
pub struct Wave {
    pub name: String,
    /// `None`: everything the deployment's target matches (the last wave only).
    pub condition: Option<QueryText>,
    pub origin: Origin,
}

/// When a wave is promoted to the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct PromoteRule {
    /// Share of the wave's targeted devices that must report success, 0.0..=1.0.
    pub success: f64,
    /// A wave with fewer targeted devices than this is never promoted automatically.
    pub min_devices: u64,
    /// How long the rule must have held since the wave started.
    pub soak: std::time::Duration,
    pub origin: Origin,
}

/// When a rollout is rolled back.
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackRule {
    /// Share of the wave's targeted devices reporting failure that rolls back, 0.0..=1.0.
    pub failure: f64,
    pub origin: Origin,
}

impl Rollout {
    /// The target condition the new deployment carries on the hub while waves
    /// `0..=through` are out: `(target) AND ((w0) OR … OR (w_through))`, or the target
    /// itself once the last wave is reached. It only ever widens, so no device the target
    /// matches is ever matched by neither the old nor the new deployment (docs/rollouts.md).
    pub fn wave_target(&self, target: &str, through: usize) -> String {
        let conditions: Vec<&str> =
            self.waves.iter().take(through + 1).map_while(|w| w.condition.as_ref().map(|q| q.text.trim())).collect();
        if through + 1 >= self.waves.len() || conditions.len() < through + 1 {
            return target.to_string();
        }
        let waves = if conditions.len() == 1 {
            format!("({})", conditions[0])
        } else {
            format!("({})", conditions.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" OR "))
        };
        // `*` is a whole condition of its own in the query language, not an operand.
        if target.trim() == "*" { waves } else { format!("({}) AND {waves}", target.trim()) }
    }
}
