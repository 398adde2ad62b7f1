//! Model -> Configuration JSON (IOTHUB.md §1), with the content-hash id.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{LABEL_HASH, LABEL_NAME, MASK, chunk_create_options};
use crate::hub::wire::{Configuration, ConfigurationContent, Metrics};
use crate::spec::diag::{Code, Problem};
use crate::spec::model::*;
use crate::spec::rules::MAX_CREATE_OPTIONS_CHUNKS;

/// Where `(env)` values come from.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables (tests, saved plans).
#[derive(Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Whether sensitive values are shown (only for `--show-secrets` and the request sent to
/// the hub) or replaced by [`MASK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    Reveal,
    Mask,
}

/// A deployment as the hub will receive it.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub configuration: Configuration,
    /// SHA-256 of the canonical content, secrets resolved (hex, first 16 digits).
    pub hash: String,
    /// JSON pointers (into `configuration.content.modulesContent`) of sensitive values.
    pub sensitive: Vec<String>,
    /// The hub configuration this deployment adopts (`adopt "<id>"` in KDL), if any.
    pub adopt: Option<String>,
}

/// Renders every deployment, collecting every problem (missing variables).
pub fn render_all(deployments: &[Deployment], env: &dyn Env, mode: SecretMode) -> Result<Vec<Rendered>, Vec<Problem>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for d in deployments {
        match render(d, env, mode) {
            Ok(r) => out.push(r),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Renders one deployment. The id hash is computed over the revealed content, so that a
/// changed secret changes the id (content is immutable on the hub) without the output
/// ever showing the secret.
pub fn render(d: &Deployment, env: &dyn Env, mode: SecretMode) -> Result<Rendered, Vec<Problem>> {
    let mut r = Renderer { env, problems: Vec::new(), sensitive: Vec::new() };
    let modules_content = match d.kind {
        DeploymentKind::Standard => r.standard(d),
        DeploymentKind::Layered => r.layered(d),
    };
    if !r.problems.is_empty() {
        return Err(r.problems);
    }
    let canonical = serde_json::to_string(&modules_content).unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut modules_content = modules_content;
    let mut sensitive = r.sensitive;
    sensitive.sort();
    sensitive.dedup();
    if mode == SecretMode::Mask {
        mask(&mut modules_content, &sensitive);
    }
    let mut labels = d.labels.clone();
    labels.insert(LABEL_NAME.to_string(), d.name.0.clone());
    labels.insert(LABEL_HASH.to_string(), hash.clone());
    let metrics = (!d.metrics.is_empty()).then(|| Metrics {
        results: BTreeMap::new(),
        queries: d.metrics.iter().map(|m| (m.name.clone(), m.query.text.clone())).collect(),
    });
    let modules_content: BTreeMap<String, Map<String, Value>> = modules_content
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                match v {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            )
        })
        .collect();
    let configuration = Configuration {
        id: format!("{}-{}", d.name, &hash[..8]),
        schema_version: Some("1.0".to_string()),
        labels,
        content: ConfigurationContent { modules_content: Some(modules_content), ..Default::default() },
        target_condition: d.target.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
        priority: i64::from(d.priority.0),
        metrics,
        ..Default::default()
    };
    Ok(Rendered { configuration, hash, sensitive, adopt: d.adopt.clone() })
}

/// Replaces the values at `pointers` by the mask.
pub(crate) fn mask(root: &mut Map<String, Value>, pointers: &[String]) {
    let mut wrapped = Value::Object(std::mem::take(root));
    for p in pointers {
        if let Some(v) = wrapped.pointer_mut(p) {
            *v = Value::String(MASK.to_string());
        }
    }
    if let Value::Object(m) = wrapped {
        *root = m;
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

struct Renderer<'a> {
    env: &'a dyn Env,
    problems: Vec<Problem>,
    sensitive: Vec<String>,
}

impl Renderer<'_> {
    /// The value of a scalar, resolving `(env)`; records it as sensitive at `pointer`.
    fn scalar(&mut self, s: &Scalar, pointer: &str) -> Value {
        if s.sensitive {
            self.sensitive.push(pointer.to_string());
        }
        match &s.source {
            ValueSource::Literal => s.value.clone(),
            ValueSource::Env(var) => match self.env.var(var) {
                Some(v) => Value::String(v),
                None => {
                    self.problems.push(
                        Problem::new(Code::MissingEnv, &s.origin.file, s.origin.span, format!("environment variable {var} is not set"), format!("reads {var}"))
                            .with_help(format!("set {var} before running fleetform (plan and apply read `(env)` values when rendering; a secret's value is never printed)")),
                    );
                    Value::Null
                }
            },
        }
    }

    fn doc(&mut self, doc: &JsonDoc, pointer: &str) -> Value {
        let mut v = doc.value.clone();
        for (p, s) in &doc.scalars {
            let resolved = self.scalar(s, &format!("{pointer}{p}"));
            if let Some(slot) = v.pointer_mut(p) {
                *slot = resolved;
            }
        }
        v
    }

    fn settings(&mut self, s: &ModuleSettings, pointer: &str, with_status: bool) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("docker"));
        if with_status {
            m.insert("status".into(), json!(s.status.clone().unwrap_or_else(|| "running".into())));
            m.insert("restartPolicy".into(), json!(s.restart_policy.clone().unwrap_or_else(|| "always".into())));
        }
        if let Some(o) = s.startup_order {
            m.insert("startupOrder".into(), json!(o));
        }
        if let Some(p) = &s.image_pull_policy {
            m.insert("imagePullPolicy".into(), json!(p));
        }
        let mut settings = Map::new();
        if let Some(image) = &s.image {
            let v = self.scalar(image, &format!("{pointer}/settings/image"));
            settings.insert("image".into(), v);
        }
        if let Some(d) = &s.digest {
            settings.insert("digest".into(), json!(d));
        }
        if let Some(co) = &s.create_options {
            let doc = self.doc(&co.doc, "");
            let compact = serde_json::to_string(&doc).unwrap_or_default();
            let pieces = chunk_create_options(&compact);
            if pieces.len() > MAX_CREATE_OPTIONS_CHUNKS {
                self.problems.push(
                    Problem::new(Code::TooMany, &co.origin.file, co.origin.span, format!("create-options is {} characters long", compact.chars().count()), "too long")
                        .with_help("the agent joins at most 100 pieces of 512 characters (51,200 characters); shorten the create options"),
                );
            }
            for (k, v) in pieces {
                settings.insert(k, Value::String(v));
            }
        }
        m.insert("settings".into(), Value::Object(settings));
        if !s.env.is_empty() {
            let mut env = Map::new();
            for (k, v) in &s.env {
                let val = self.scalar(v, &format!("{pointer}/env/{}/value", escape_pointer(k)));
                env.insert(k.clone(), json!({ "value": val }));
            }
            m.insert("env".into(), Value::Object(env));
        }
        Value::Object(m)
    }

    fn module(&mut self, m: &Module, pointer: &str) -> Value {
        let mut v = self.settings(&m.settings, pointer, true);
        if let (Some(version), Value::Object(map)) = (&m.version, &mut v) {
            map.insert("version".into(), json!(version));
        }
        v
    }

    fn registry(&mut self, r: &Registry, pointer: &str) -> Value {
        let address = self.scalar(&r.address, &format!("{pointer}/address"));
        let username = self.scalar(&r.username, &format!("{pointer}/username"));
        let password = self.scalar(&r.password, &format!("{pointer}/password"));
        json!({ "address": address, "username": username, "password": password })
    }

    fn route(r: &Route) -> Value {
        if r.priority.is_none() && r.ttl.is_none() {
            return json!(r.text.text);
        }
        let mut m = Map::new();
        m.insert("route".into(), json!(r.text.text));
        if let Some(p) = r.priority {
            m.insert("priority".into(), json!(p));
        }
        if let Some(t) = r.ttl {
            m.insert("timeToLiveSecs".into(), json!(t));
        }
        Value::Object(m)
    }

    fn standard(&mut self, d: &Deployment) -> Map<String, Value> {
        let mut content = Map::new();
        let Some(rt) = &d.runtime else { return content };
        let base = "/$edgeAgent/properties.desired";
        let mut registries = Map::new();
        for (name, r) in &rt.registries {
            let v = self.registry(r, &format!("{base}/runtime/settings/registryCredentials/{}", escape_pointer(name)));
            registries.insert(name.clone(), v);
        }
        let mut runtime_settings = Map::new();
        runtime_settings.insert("minDockerVersion".into(), json!(rt.min_docker_version));
        runtime_settings.insert("loggingOptions".into(), json!(rt.logging_options));
        if !registries.is_empty() {
            runtime_settings.insert("registryCredentials".into(), Value::Object(registries));
        }
        let agent = self.settings(&rt.edge_agent, &format!("{base}/systemModules/edgeAgent"), false);
        let hub = self.settings(&rt.edge_hub, &format!("{base}/systemModules/edgeHub"), true);
        let mut modules = Map::new();
        for (name, m) in &d.modules {
            let v = self.module(m, &format!("{base}/modules/{}", escape_pointer(name)));
            modules.insert(name.clone(), v);
        }
        content.insert(
            "$edgeAgent".into(),
            json!({ "properties.desired": {
                "schemaVersion": rt.agent_schema,
                "runtime": { "type": "docker", "settings": runtime_settings },
                "systemModules": { "edgeAgent": agent, "edgeHub": hub },
                "modules": modules,
            }}),
        );
        if let (Some(integrity), Some(Value::Object(agent))) =
            (&rt.integrity, content.get_mut("$edgeAgent").and_then(|h| h.get_mut("properties.desired")))
        {
            agent.insert("integrity".into(), integrity.clone());
        }
        let routes: Map<String, Value> = d.routes.iter().map(|(n, r)| (n.clone(), Self::route(r))).collect();
        let mut store = Map::new();
        store.insert("timeToLiveSecs".into(), json!(rt.store_and_forward_ttl));
        if let Some(max) = rt.store_max_size_bytes {
            store.insert("storeLimits".into(), json!({ "maxSizeBytes": max }));
        }
        content.insert(
            "$edgeHub".into(),
            json!({ "properties.desired": {
                "schemaVersion": rt.hub_schema,
                "routes": routes,
                "storeAndForwardConfiguration": store,
            }}),
        );
        if let (Some(mqtt), Some(Value::Object(hub))) =
            (&rt.mqtt_broker, content.get_mut("$edgeHub").and_then(|h| h.get_mut("properties.desired")))
        {
            hub.insert("mqttBroker".into(), mqtt.clone());
        }
        if let (Some(integrity), Some(Value::Object(hub))) =
            (&rt.hub_integrity, content.get_mut("$edgeHub").and_then(|h| h.get_mut("properties.desired")))
        {
            hub.insert("integrity".into(), integrity.clone());
        }
        // A standard deployment writes each module twin's desired properties whole, so
        // its twin nodes (whole or by path) are assembled into one document.
        let mut twins: BTreeMap<&str, Value> = BTreeMap::new();
        for t in &d.twins {
            let pointer = format!(
                "/{}/properties.desired{}",
                escape_pointer(&t.module),
                t.path.iter().map(|s| format!("/{}", escape_pointer(s))).collect::<String>()
            );
            let v = self.doc(&t.doc, &pointer);
            let root = twins.entry(t.module.as_str()).or_insert_with(|| json!({}));
            set_path(root, &t.path, v);
        }
        for (module, desired) in twins {
            content.insert(module.to_string(), json!({ "properties.desired": desired }));
        }
        content
    }

    fn layered(&mut self, d: &Deployment) -> Map<String, Value> {
        let mut content = Map::new();
        let mut agent = Map::new();
        for (name, m) in &d.modules {
            let key = format!("properties.desired.modules.{name}");
            let v = self.module(m, &format!("/$edgeAgent/{}", escape_pointer(&key)));
            agent.insert(key, v);
        }
        for (name, r) in &d.registries {
            let key = format!("properties.desired.runtime.settings.registryCredentials.{name}");
            let v = self.registry(r, &format!("/$edgeAgent/{}", escape_pointer(&key)));
            agent.insert(key, v);
        }
        // The hub requires `$edgeAgent` in every edge deployment, even when empty.
        content.insert("$edgeAgent".into(), Value::Object(agent));
        if !d.routes.is_empty() {
            let hub: Map<String, Value> =
                d.routes.iter().map(|(n, r)| (format!("properties.desired.routes.{n}"), Self::route(r))).collect();
            content.insert("$edgeHub".into(), Value::Object(hub));
        }
        for t in &d.twins {
            let key = t.key();
            let v = self.doc(&t.doc, &format!("/{}/{}", escape_pointer(&t.module), escape_pointer(&key)));
            let entry = content.entry(t.module.clone()).or_insert_with(|| json!({}));
            if let Value::Object(m) = entry {
                m.insert(key, v);
            }
        }
        content
    }
}

/// Writes `value` at `path` inside `root`, creating objects on the way.
pub fn set_path(root: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        match (root, value) {
            (Value::Object(r), Value::Object(v)) => r.extend(v),
            (r, v) => *r = v,
        }
        return;
    };
    let mut cur = root;
    for seg in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = match cur {
            Value::Object(m) => m.entry(seg.clone()).or_insert_with(|| json!({})),
            _ => return,
        };
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), value);
    }
}
