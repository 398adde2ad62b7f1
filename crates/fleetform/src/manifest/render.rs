//! Model -> Configuration JSON (docs/hub-semantics.md#configuration, #create-options), with the content-hash id.

use std::collections::{BTreeMap, HashMap};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{LABEL_HASH, LABEL_HASH_SCHEME, LABEL_NAME, MASK, chunk_create_options};
use crate::model::sensitive::name_looks_secret;
use crate::model::{Configuration, ConfigurationContent, Metrics, TwinPath};
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
    /// The content hash (scheme [`HASH_SCHEME`], hex, first 16 digits): SHA-256 of the
    /// masked canonical content and of a keyed MAC per secret, see [`content_hash`].
    pub hash: String,
    /// JSON pointers (into `configuration.content.modulesContent`) of sensitive values.
    pub sensitive: Vec<String>,
    /// The hub configuration this deployment adopts (`adopt "<id>"` in KDL), if any.
    pub adopt: Option<String>,
    /// Each metric's query as written, before `[[$self]]` was filled in: what the
    /// language-level warnings read (a literal id there was typed by hand).
    pub written_metrics: BTreeMap<String, String>,
    /// `rollout { … }`: not content, so not in the hash; plan reads it (issue #17).
    pub rollout: Option<crate::spec::model::Rollout>,
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

/// Renders one deployment. The id hash changes when a secret changes (content is
/// immutable on the hub, so a rotated secret must reach it under a new id), yet cannot be
/// used to test guesses of a secret without the hash key: see [`content_hash`].
pub fn render(d: &Deployment, env: &dyn Env, mode: SecretMode) -> Result<Rendered, Vec<Problem>> {
    let mut r = Renderer { env, problems: Vec::new(), sensitive: Vec::new(), first_secret: None };
    let modules_content = match d.kind {
        DeploymentKind::Standard => r.standard(d),
        DeploymentKind::Layered => r.layered(d),
    };
    if !r.problems.is_empty() {
        return Err(r.problems);
    }
    let mut sensitive = r.sensitive;
    sensitive.sort();
    sensitive.dedup();
    let key = match (r.first_secret, hash_key(env)) {
        (_, Ok(key)) => Some(key),
        (None, Err(_)) => None,
        (Some(origin), Err(why)) => return Err(vec![hash_key_problem(&d.name.0, &origin, why)]),
    };
    let hash = content_hash(&d.name.0, &modules_content, &sensitive, key.as_ref());
    let mut modules_content = modules_content;
    if mode == SecretMode::Mask {
        mask(&mut modules_content, &sensitive);
    }
    let mut labels = d.labels.clone();
    labels.insert(LABEL_NAME.to_string(), d.name.0.clone());
    labels.insert(LABEL_HASH.to_string(), hash.clone());
    labels.insert(LABEL_HASH_SCHEME.to_string(), HASH_SCHEME.to_string());
    let id = format!("{}-{}", d.name, &hash[..8]);
    // `[[$self]]` becomes the id computed just above. No cycle: the hash covers
    // modulesContent only (see `content_hash`), never metrics, target, priority or labels,
    // which the hub lets change in place, so filling a metric cannot change the id it names.
    let metrics = (!d.metrics.is_empty()).then(|| Metrics {
        results: BTreeMap::new(),
        queries: d.metrics.iter().map(|m| (m.name.clone(), fill_self(&m.query.text, &id))).collect(),
    });
    let written_metrics = d.metrics.iter().map(|m| (m.name.clone(), m.query.text.clone())).collect();
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
        id: id.into(),
        schema_version: Some("1.0".to_string()),
        labels,
        content: ConfigurationContent { modules_content: Some(modules_content), ..Default::default() },
        target_condition: d.target.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
        priority: d.priority,
        metrics,
        ..Default::default()
    };
    Ok(Rendered { configuration, hash, sensitive, adopt: d.adopt.clone(), written_metrics, rollout: d.rollout.clone() })
}

/// The segment a metric query writes for the id of its own deployment
/// (schema/language.md "Target conditions and metric queries").
pub const SELF_SEGMENT: &str = "[[$self]]";

/// `query` with every `[[$self]]` replaced by `[[<id>]]`.
pub fn fill_self(query: &str, id: &str) -> String {
    query.replace(SELF_SEGMENT, &format!("[[{id}]]"))
}

/// Resolves every `(env)` value to the mask: what `validate` can know without the
/// environment plan and apply run in.
struct PlaceholderEnv;

impl Env for PlaceholderEnv {
    fn var(&self, _name: &str) -> Option<String> {
        Some(MASK.to_string())
    }
}

/// The desired properties a deployment writes into each twin (`$edgeAgent`, `$edgeHub`,
/// then module twins), as one document per twin: a standard deployment's whole
/// `properties.desired`, or a layered deployment's `properties.desired.<path>` entries
/// nested under their paths. `(env)` values count as the mask, since their values are
/// known only where plan runs (which checks the merged, resolved twins again).
pub fn desired_documents(d: &Deployment) -> Vec<(String, Value)> {
    let mut r = Renderer { env: &PlaceholderEnv, problems: Vec::new(), sensitive: Vec::new(), first_secret: None };
    let content = match d.kind {
        DeploymentKind::Standard => r.standard(d),
        DeploymentKind::Layered => r.layered(d),
    };
    let mut out: Vec<(String, Value)> = content
        .into_iter()
        .map(|(twin, v)| {
            let mut doc = json!({});
            if let Value::Object(entries) = v {
                for (key, value) in entries {
                    let Ok(path) = TwinPath::from_desired_key(&key) else {
                        continue;
                    };
                    set_path(&mut doc, path.segments(), value);
                }
            }
            (twin, doc)
        })
        .collect();
    // System twins first, as plan lists them.
    out.sort_by_key(|(twin, _)| !twin.starts_with('$'));
    out
}

/// The environment variable holding the key of the content hash's per-secret MACs.
pub const HASH_KEY_VAR: &str = "FLEETFORM_HASH_KEY";

/// A key shorter than this could itself be guessed offline from a published id.
pub const HASH_KEY_MIN_CHARS: usize = 32;

/// The content-hash scheme written to `fleetform-hash-scheme`. Scheme 1 (no label) was
/// an unkeyed SHA-256 of the content with secrets in clear: an offline guessing oracle.
pub const HASH_SCHEME: &str = "2";

/// The key for the per-secret MACs of the content hash.
pub struct HashKey(Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Why there is no usable hash key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoHashKey {
    Unset,
    TooShort(usize),
}

fn hash_key(env: &dyn Env) -> Result<HashKey, NoHashKey> {
    let value = env.var(HASH_KEY_VAR).ok_or(NoHashKey::Unset)?;
    let chars = value.chars().count();
    if chars < HASH_KEY_MIN_CHARS {
        return Err(NoHashKey::TooShort(chars));
    }
    Ok(HashKey(value.into_bytes()))
}

fn hash_key_problem(deployment: &str, origin: &Origin, why: NoHashKey) -> Problem {
    let message = match why {
        NoHashKey::Unset => format!("{HASH_KEY_VAR} is not set, and deployment {deployment} holds secrets"),
        NoHashKey::TooShort(n) => {
            format!("{HASH_KEY_VAR} is {n} characters long; it needs at least {HASH_KEY_MIN_CHARS}")
        }
    };
    Problem::new(Code::MissingEnv, &origin.file, origin.span, message, "a secret").with_help(format!(
        "the deployment id and the fleetform-hash label cover each secret through a MAC keyed by {HASH_KEY_VAR}, so \
             that the published id cannot be used to test guesses of the secret; set it to the same random value \
             (e.g. `openssl rand -hex 32`) wherever plan and apply run, as a CI secret"
    ))
}

/// The content hash: SHA-256 over the canonical content with every secret masked, then,
/// per secret (by JSON pointer, sorted), HMAC-SHA256 under the hash key of the deployment
/// name, the pointer and the secret's value. A changed secret changes its MAC and so the
/// hash; without the key, a guess of the secret cannot be checked against the hash. The
/// name is in the MAC so that equal secrets in two deployments cannot be told equal.
/// `key` is needed only when `sensitive` is not empty.
pub(crate) fn content_hash(
    deployment: &str,
    revealed: &Map<String, Value>,
    sensitive: &[String],
    key: Option<&HashKey>,
) -> String {
    let mut masked = revealed.clone();
    mask(&mut masked, sensitive);
    let wrapped = Value::Object(revealed.clone());
    let mut h = Sha256::new();
    h.update(b"fleetform-hash-v2\n");
    h.update(serde_json::to_string(&masked).unwrap_or_default().as_bytes());
    for pointer in sensitive {
        let Some(value) = wrapped.pointer(pointer) else { continue };
        let Some(key) = key else { continue };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else { continue };
        for part in [deployment.as_bytes(), pointer.as_bytes(), value.to_string().as_bytes()] {
            // Length-prefixed, so that no two (name, pointer, value) triples feed the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        h.update(b"\n");
        h.update(pointer.as_bytes());
        h.update(b"=");
        h.update(mac.finalize().into_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The scheme-1 hash (no `fleetform-hash-scheme` label): unkeyed SHA-256 of the content
/// with secrets in clear. Kept only to build old-scheme hubs in tests and examples, and to
/// show in tests what it gave away; fleetform never writes it.
pub fn legacy_hash(revealed: &BTreeMap<String, Map<String, Value>>) -> String {
    let canonical = serde_json::to_string(revealed).unwrap_or_default();
    Sha256::digest(canonical.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
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

/// Pointers of the topmost values under a credential-named key.
fn secret_named(v: &Value, pointer: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{pointer}/{}", escape_pointer(k));
                if name_looks_secret(k) { out.push(p) } else { secret_named(child, &p, out) }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                secret_named(child, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

struct Renderer<'a> {
    env: &'a dyn Env,
    problems: Vec<Problem>,
    sensitive: Vec<String>,
    /// Where the first sensitive value is declared: what a missing hash key points at.
    first_secret: Option<Origin>,
}

impl Renderer<'_> {
    /// Records the value at `pointer` as sensitive: masked when published, and in the hash
    /// only through the keyed MAC.
    fn mark_sensitive(&mut self, pointer: &str, origin: &Origin) {
        self.sensitive.push(pointer.to_string());
        if self.first_secret.is_none() {
            self.first_secret = Some(origin.clone());
        }
    }

    /// The value of a scalar, resolving `(env)`; records it as sensitive at `pointer`.
    fn scalar(&mut self, s: &Scalar, pointer: &str) -> Value {
        if s.sensitive {
            self.mark_sensitive(pointer, &s.origin);
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

    /// A twin section, with everything under a credential-named key (or the whole
    /// section, when its path is one) recorded as sensitive, as plans mask it.
    fn twin_doc(&mut self, t: &TwinSetting, pointer: &str) -> Value {
        let v = self.doc(&t.doc, pointer);
        if t.path.iter().any(|p| name_looks_secret(p)) {
            self.mark_sensitive(pointer, &t.origin);
        } else {
            let mut found = Vec::new();
            secret_named(&v, pointer, &mut found);
            for p in found {
                self.mark_sensitive(&p, &t.origin);
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
                let at = format!("{pointer}/env/{}/value", escape_pointer(k));
                // What plans mask by its name is a secret here too, literal or `(env)`:
                // an unkeyed hash of it would let anyone test guesses against the id.
                if !v.sensitive && name_looks_secret(k) {
                    self.mark_sensitive(&at, &v.origin);
                }
                let val = self.scalar(v, &at);
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
            let v = self.twin_doc(t, &pointer);
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
            let v = self.twin_doc(t, &format!("/{}/{}", escape_pointer(&t.module), escape_pointer(&key)));
            let entry = content.entry(t.module.clone()).or_insert_with(|| json!({}));
            if let Value::Object(m) = entry {
                m.insert(key, v);
            }
        }
        content
    }
}

/// Writes `value` at `path` inside `root`, creating objects on the way. At the root an
/// object is merged into the document rather than replacing it, because a standard
/// deployment's whole-twin node and its path nodes build one document together.
pub fn set_path(root: &mut Value, path: &[String], value: Value) {
    if path.is_empty() {
        match (root, value) {
            (Value::Object(r), Value::Object(v)) => r.extend(v),
            (r, v) => *r = v,
        }
        return;
    }
    TwinPath::from(path).set(root, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Workspace;
    use crate::spec::source::SourceFile;

    const KEY: &str = "0123456789abcdef0123456789abcdef-ci";

    /// A deployment whose only secret is a 4-digit PIN: the worst case for guessing.
    const PIN: &str = r#"
deployment "kiosk" {
    priority 10
    target "tags.role='kiosk'"
    runtime {
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "Door" image="door:1.0" {
        env UNLOCK_PIN=(secret-env)"UNLOCK_PIN"
        env MODE="strict"
    }
}
"#;

    fn deployment(text: &str) -> Deployment {
        let ws = Workspace::from_sources(vec![SourceFile::new("kiosk.kdl", "kiosk.kdl", text.to_string())]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        ws.deployments.into_iter().next().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn with_pin(pin: &str, key: Option<&str>) -> Result<Rendered, Vec<Problem>> {
        let mut vars = vec![("UNLOCK_PIN", pin)];
        vars.extend(key.map(|k| (HASH_KEY_VAR, k)));
        render(&deployment(PIN), &env(&vars), SecretMode::Mask)
    }

    /// What a reader of a PR comment has: the masked content and the published hash.
    /// Builds the revealed content for a guess by writing it at the masked pointers.
    fn guess_content(published: &Rendered, guess: &str) -> BTreeMap<String, Map<String, Value>> {
        let mut revealed = published.configuration.content.modules_content.clone().unwrap();
        for p in &published.sensitive {
            let (module, rest) = p[1..].split_once('/').unwrap();
            let mut v = Value::Object(revealed[module].clone());
            *v.pointer_mut(&format!("/{rest}")).unwrap() = json!(guess);
            revealed.insert(module.to_string(), v.as_object().unwrap().clone());
        }
        revealed
    }

    #[test]
    fn the_scheme_1_hash_gave_a_4_digit_secret_away_and_the_keyed_one_does_not() {
        let published = with_pin("4821", Some(KEY)).unwrap();
        assert!(published.configuration.id.starts_with("kiosk-"));
        let text = serde_json::to_string(&published.configuration).unwrap();
        assert!(!text.contains("4821") && text.contains(MASK), "the published render is masked");
        let guesses = || (0..10_000).map(|n| format!("{n:04}"));

        // Scheme 1: the unkeyed hash of the revealed content. An attacker holding the old
        // hash finds the PIN by trying every value.
        let old_hash = legacy_hash(&guess_content(&published, "4821"));
        let found: Vec<String> = guesses().filter(|g| legacy_hash(&guess_content(&published, g)) == old_hash).collect();
        assert_eq!(found, ["4821"]);

        // Scheme 2 without the key: no guess reproduces the published hash, whatever key
        // (none, empty, or a guessed one) the attacker tries.
        for attacker_key in [None, Some(""), Some("guess-of-the-ci-hash-key-00000000")] {
            let key = attacker_key.map(|k| HashKey(k.as_bytes().to_vec()));
            let hits = guesses()
                .filter(|g| {
                    let revealed: Map<String, Value> =
                        guess_content(&published, g).into_iter().map(|(k, v)| (k, Value::Object(v))).collect();
                    content_hash("kiosk", &revealed, &published.sensitive, key.as_ref()) == published.hash
                })
                .count();
            assert_eq!(hits, 0, "key {attacker_key:?}");
        }
        // With the key the same search succeeds: the test above is not vacuous.
        let key = HashKey(KEY.as_bytes().to_vec());
        let found: Vec<String> = guesses()
            .filter(|g| {
                let revealed: Map<String, Value> =
                    guess_content(&published, g).into_iter().map(|(k, v)| (k, Value::Object(v))).collect();
                content_hash("kiosk", &revealed, &published.sensitive, Some(&key)) == published.hash
            })
            .collect();
        assert_eq!(found, ["4821"]);
    }

    #[test]
    fn rotating_a_secret_or_the_key_changes_the_id_and_the_same_inputs_give_the_same_id() {
        let a = with_pin("4821", Some(KEY)).unwrap();
        let again = with_pin("4821", Some(KEY)).unwrap();
        let rotated = with_pin("4822", Some(KEY)).unwrap();
        let other_key = with_pin("4821", Some("another-key-of-at-least-32-characters")).unwrap();
        assert_eq!(a.configuration.id, again.configuration.id);
        assert_eq!(a.hash, again.hash);
        assert_ne!(a.configuration.id, rotated.configuration.id);
        assert_ne!(a.hash, other_key.hash);
        assert_eq!(a.configuration.labels[LABEL_HASH_SCHEME], HASH_SCHEME);
        assert_eq!(a.configuration.labels[LABEL_HASH], a.hash);
        // The masked and the revealed render get the same id.
        let revealed =
            render(&deployment(PIN), &env(&[("UNLOCK_PIN", "4821"), (HASH_KEY_VAR, KEY)]), SecretMode::Reveal).unwrap();
        assert_eq!(revealed.configuration.id, a.configuration.id);
    }

    #[test]
    fn secrets_without_a_usable_key_are_refused_at_the_secret() {
        for (key, says) in [(None, "FLEETFORM_HASH_KEY is not set"), (Some("short"), "is 5 characters long")] {
            let problems = with_pin("4821", key).unwrap_err();
            assert_eq!(problems.len(), 1);
            let p = &problems[0];
            assert!(p.message.contains(says), "{}", p.message);
            assert!(p.help.as_deref().unwrap().contains(HASH_KEY_VAR));
            let at = &PIN[p.span.offset()..p.span.offset() + p.span.len()];
            assert!(at.contains("UNLOCK_PIN"), "points at the secret, not {at:?}");
            assert!(!format!("{p:?}").contains("4821"));
        }
    }

    #[test]
    fn without_secrets_no_key_is_needed_and_the_key_does_not_matter() {
        let plain = PIN.replace(r#"env UNLOCK_PIN=(secret-env)"UNLOCK_PIN""#, "");
        let without = render(&deployment(&plain), &env(&[]), SecretMode::Mask).unwrap();
        let with = render(&deployment(&plain), &env(&[(HASH_KEY_VAR, KEY)]), SecretMode::Mask).unwrap();
        assert!(without.sensitive.is_empty());
        assert_eq!(without.configuration.id, with.configuration.id);
    }
}

#[cfg(test)]
mod self_tests {
    use super::*;
    use crate::spec::Workspace;
    use crate::spec::source::SourceFile;

    fn deployment(image: &str, metric: &str) -> Rendered {
        let text = format!(
            "deployment \"kiosk\" {{\n priority 1\n target \"*\"\n runtime {{\n edge-agent image=\"a:1.5\"\n edge-hub image=\"h:1.5\"\n }}\n module \"m\" image=\"{image}\"\n metric \"m\" \"{metric}\"\n}}\n"
        );
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text)]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        render(&ws.deployments[0], &MapEnv::default(), SecretMode::Mask).unwrap()
    }

    /// The filled-in metric names the id the same render gives the deployment, and a
    /// change of content gives both a new id; a change of the metric alone keeps the id.
    #[test]
    fn self_is_filled_with_the_deployments_own_id_which_metrics_do_not_change() {
        let q = "SELECT deviceId FROM devices WHERE configurations.[[$self]].status = 'Applied'";
        let a = deployment("m:1", q);
        let b = deployment("m:2", q);
        for r in [&a, &b] {
            let id = r.configuration.id.to_string();
            assert!(id.starts_with("kiosk-") && id.len() == "kiosk-".len() + 8, "{id}");
            let filled = &r.configuration.metrics.as_ref().unwrap().queries["m"];
            assert_eq!(
                filled,
                &format!("SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied'")
            );
            assert_eq!(r.written_metrics["m"], q);
        }
        assert_ne!(a.configuration.id, b.configuration.id);
        let other_metric =
            deployment("m:1", "SELECT deviceId FROM devices WHERE configurations.[[$self]].status = 'Targeted'");
        assert_eq!(a.configuration.id, other_metric.configuration.id);
    }
}
