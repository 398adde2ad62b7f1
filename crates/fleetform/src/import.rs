//! `fleetform import`: KDL files from a hub's deployments or from a `deployment.json`.
//!
//! Hub import reads each IoT Edge configuration back into the model ([`manifest::read`]),
//! turns registry passwords into `(env)` references (their values are secrets and never
//! belong in the repository), and marks deployments fleetform does not manage yet with
//! `adopt "<hub id>"`, so that the first plan updates their labels in place rather than
//! recreating them (see [`crate::plan::adopt_ids`]).
//!
//! Manifest import converts the file VS Code and iotedgedev produce: a standard
//! deployment's `modulesContent`, createOptions as JSON objects or (possibly split)
//! strings, and `${VAR}` placeholders, which become `(env)"VAR"` references.

mod dotenv;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::manifest::{self, LABEL_HASH, LABEL_NAME, MapEnv, SecretMode};
use crate::model::sensitive::name_looks_secret;
use crate::model::{Configuration, ConfigurationContent, ConfigurationKind};
use crate::spec::model::*;
use crate::spec::rules::{MAX_NAME_LEN, valid_deployment_char};
use crate::spec::{SourceFile, Workspace};

/// Why a manifest could not be imported.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("{file}: not JSON: {message} (line {line}, column {column})")]
    #[diagnostic(code(fleetform::import::not_json))]
    NotJson { file: String, message: String, line: usize, column: usize },
    #[error("{file}: no modulesContent with $edgeAgent (and, for a standard deployment, $edgeHub)")]
    #[diagnostic(
        code(fleetform::import::not_a_manifest),
        help(
            "give a deployment manifest: {{\"modulesContent\": {{\"$edgeAgent\": …, \"$edgeHub\": …}}}}, a layered one ({{\"$edgeAgent\": {{\"properties.desired.modules.NAME\": …}}}}), or a whole configuration (`az iot edge deployment show`)"
        )
    )]
    NotAManifest { file: String },
    #[error("{file}: {} placeholder{} cannot be resolved: {}", .unresolved.len(), if .unresolved.len() == 1 { "" } else { "s" }, .unresolved.join(", "))]
    #[diagnostic(
        code(fleetform::import::unresolved_placeholder),
        help(
            "set each variable in the environment or in the .env file beside the template; ${{MODULES.Name}} needs modules/Name/module.json beside the template (image.repository and image.tag.version), or write the image name instead"
        )
    )]
    Unresolved { file: String, unresolved: Vec<String> },
    #[error("{file}: ${{{var}}} looks like a secret and would be written in clear into the KDL file")]
    #[diagnostic(
        code(fleetform::import::secret_in_text),
        help(
            "give the module the value through its env instead (`\"env\": {{\"{var}\": {{\"value\": \"${{{var}}}\"}}}}` becomes `(env)\"{var}\"`), or write the text without it"
        )
    )]
    SecretInText { file: String, var: String },
    #[error("{file}: {message}")]
    #[diagnostic(code(fleetform::import::bad_template_input), help("fix the file named, or remove it"))]
    BadTemplateInput { file: String, message: String },
    #[error("{file}: {path}: {problem}")]
    #[diagnostic(
        code(fleetform::import::bad_field),
        help(
            "nothing was written; fix the value in the file (priority, target and name can also be given with --priority, --target, --name)"
        )
    )]
    BadField { file: String, path: String, problem: String },
    #[error("{file}: {message}")]
    #[diagnostic(code(fleetform::import::bad_create_options))]
    BadCreateOptions { file: String, message: String },
    #[error("{file}: fleetform cannot express this deployment so that it validates: {}", .problems.join("; "))]
    #[diagnostic(
        code(fleetform::import::would_not_validate),
        help(
            "nothing was written; fix the manifest (or the configuration on the hub) so that it is a deployment the IoT Edge runtime accepts, or keep managing it outside fleetform"
        )
    )]
    WouldNotValidate { file: String, problems: Vec<String> },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] manifest::ReadError),
    #[error("{file} is {size} bytes; deployment manifests may be at most {max} bytes")]
    #[diagnostic(
        code(fleetform::too_large),
        help(
            "the hub accepts at most 32 KB of desired properties per twin ($edgeAgent, $edgeHub and one per module), so a larger manifest could not be deployed anyway; check that this is a deployment manifest, or split it into layered deployments"
        )
    )]
    TooLarge { file: String, size: u64, max: u64 },
    #[error("{file}: {message}")]
    #[diagnostic(code(fleetform::io))]
    ReadFile { file: String, message: String },
    #[error("\"{name}\" is not a usable deployment name")]
    #[diagnostic(code(fleetform::import::bad_name), help("pass --name with lowercase letters, digits and `-`"))]
    BadName { name: String },
}

/// One deployment converted to KDL.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The deployment's name (also the file name without `.kdl`).
    pub name: String,
    /// The formatted file contents.
    pub text: String,
    /// Environment variables the file reads, with the value the hub holds when known
    /// (hub import of registry passwords). Values are secrets: never print them.
    pub env: Vec<(String, Option<String>)>,
    /// What the user should know: renamed ids, content that adoption will replace,
    /// placeholders that could not become references.
    pub notes: Vec<String>,
}

/// A hub configuration left out, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// A hub id made into a deployment name: lowercase, characters a hub id allows, no
/// leading or trailing `-`, short enough for the hash suffix.
pub fn sanitize_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars().flat_map(char::to_lowercase) {
        let c = if valid_deployment_char(c) { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(MAX_NAME_LEN);
    out
}

/// `contoso-acr` -> `CONTOSO_ACR_PASSWORD`.
pub fn password_variable(registry: &str) -> String {
    let mut out: String =
        registry.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.push_str("_PASSWORD");
    out
}

/// Imports every IoT Edge deployment among `configs` (device-management configurations
/// and contents fleetform cannot express are skipped, with the reason).
pub fn from_hub(configs: &[Configuration]) -> (Vec<Imported>, Vec<Skipped>) {
    let mut out: Vec<Imported> = Vec::new();
    let mut skipped = Vec::new();
    // Passwords by variable, so that two registries of the same name share a variable
    // only when they share a password.
    let mut passwords: BTreeMap<String, String> = BTreeMap::new();
    let mut configs: Vec<&Configuration> = configs.iter().collect();
    // Newest first, so that of two copies of a deployment (an interrupted replace) the
    // one devices run is imported.
    configs.sort_by(|a, b| b.created_time_utc.cmp(&a.created_time_utc).then_with(|| a.id.cmp(&b.id)));
    for c in configs {
        if c.kind() == ConfigurationKind::DeviceManagement {
            skipped.push(Skipped { id: c.id.to_string(), reason: "not an IoT Edge deployment".into() });
            continue;
        }
        let mut d = match manifest::read(c) {
            Ok(d) => d,
            Err(e) => {
                skipped.push(Skipped { id: c.id.to_string(), reason: e.to_string() });
                continue;
            }
        };
        let mut notes = Vec::new();
        let managed = c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH);
        if !managed {
            let name = sanitize_name(c.labels.get(LABEL_NAME).map(String::as_str).unwrap_or(c.id.as_str()));
            if name.is_empty() {
                skipped.push(Skipped { id: c.id.to_string(), reason: "no usable name can be made from its id".into() });
                continue;
            }
            if name != c.id {
                notes.push(format!("hub id \"{}\" is not a valid deployment name; named it \"{name}\"", c.id));
            }
            d.name = DeploymentName(name);
            d.adopt = Some(c.id.to_string());
        }
        if let Some(first) = out.iter().find(|i| i.name == d.name.0) {
            skipped.push(Skipped {
                id: c.id.to_string(),
                reason: format!("an older copy of \"{}\" (a newer one was imported)", first.name),
            });
            continue;
        }
        let mut env = Vec::new();
        let mut values = MapEnv::default();
        let deployment_name = d.name.0.clone();
        let registries = d.runtime.as_mut().map(|r| &mut r.registries).into_iter().chain([&mut d.registries]);
        for regs in registries {
            for r in regs.values_mut() {
                let ValueSource::Literal = r.password.source else { continue };
                let value = r.password.value.as_str().unwrap_or_default().to_string();
                let mut var = password_variable(&r.name);
                if passwords.get(&var).is_some_and(|v| *v != value) {
                    var = password_variable(&format!("{deployment_name}_{}", r.name));
                }
                passwords.insert(var.clone(), value.clone());
                values.0.insert(var.clone(), value.clone());
                r.password = Scalar {
                    value: Value::String(var.clone()),
                    source: ValueSource::Env(var.clone()),
                    sensitive: true,
                    origin: r.password.origin.clone(),
                };
                env.push((var, Some(value)));
            }
        }
        for (var, value) in secret_looking_env_to_refs(&mut d, &mut passwords) {
            values.0.insert(var.clone(), value.clone());
            env.push((var, Some(value)));
        }
        let text = manifest::to_kdl(&d);
        if let Err(e) = check_written(&format!("hub:{}", c.id), &d.name.0, &text) {
            skipped.push(Skipped { id: c.id.to_string(), reason: e.to_string() });
            continue;
        }
        // Adoption keeps the hub object only when the content fleetform renders is the
        // hub's, byte for byte (content is immutable); say so up front when it is not.
        // Only the content is compared, so any hash key does; the hash is dropped.
        let mut content_only = values.clone();
        content_only
            .0
            .entry(manifest::HASH_KEY_VAR.to_string())
            .or_insert_with(|| "k".repeat(manifest::HASH_KEY_MIN_CHARS));
        if let Ok(r) = manifest::render(&d, &content_only, SecretMode::Reveal)
            && !manifest::same_content(&r.configuration.content, &c.content)
        {
            notes.push(format!(
                "{}: fleetform writes this content differently (e.g. defaults it spells out); the first apply will replace it with the same settings",
                c.id
            ));
        }
        out.push(Imported { name: d.name.0.clone(), text, env, notes });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, skipped)
}

/// The hub does not say which environment values are secrets; the ones whose name looks
/// like a credential become `(secret-env)` references, so that the file going into git
/// holds the variable's name and never the hub's value. Returns (variable, hub value).
fn secret_looking_env_to_refs(d: &mut Deployment, taken: &mut BTreeMap<String, String>) -> Vec<(String, String)> {
    let deployment = d.name.0.clone();
    let mut out = Vec::new();
    for m in d.modules.values_mut() {
        for (k, s) in m.settings.env.iter_mut() {
            if s.source != ValueSource::Literal || !name_looks_secret(k) {
                continue;
            }
            // A number or boolean the hub holds is a secret too; the variable holds its
            // text (the agent hands env values to Docker as text anyway).
            let value = match &s.value {
                Value::String(v) => v.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            // Same name, same value: one variable; otherwise qualify by module, then deployment.
            let var = [k.clone(), format!("{}_{k}", m.name), format!("{deployment}_{}_{k}", m.name)]
                .into_iter()
                .map(|v| env_variable(&v))
                .find(|v| taken.get(v).is_none_or(|old| *old == value))
                .unwrap_or_else(|| env_variable(&format!("{deployment}_{}_{k}", m.name)));
            taken.insert(var.clone(), value.clone());
            *s = env_scalar(&var, true, &s.origin);
            out.push((var, value));
        }
    }
    // A credential-named Docker `Env` entry in createOptions (`"DB_PASSWORD=…"`) moves to
    // the module's env as `(secret-env)`: the agent adds its env settings to the
    // container's environment, so the container sees the same variable, and createOptions
    // (stored in clear, unable to read the environment) no longer holds it.
    for m in d.modules.values_mut() {
        let Some(co) = m.settings.create_options.as_mut() else { continue };
        let Some(Value::Array(entries)) = co.doc.value.get_mut("Env") else { continue };
        let mut moved = Vec::new();
        entries.retain(|e| {
            let Some((name, value)) = e.as_str().and_then(|e| e.split_once('=')) else { return true };
            if !name_looks_secret(name) || value.is_empty() {
                return true;
            }
            // A module env setting of the same name already gives the container that
            // variable; the createOptions copy is not written (import's note says the
            // content differs from the hub's).
            if !m.settings.env.contains_key(name) {
                moved.push((name.to_string(), value.to_string()));
            }
            false
        });
        if entries.is_empty()
            && let Value::Object(o) = &mut co.doc.value
        {
            o.remove("Env");
        }
        let origin = co.origin.clone();
        for (name, value) in moved {
            let var = [name.clone(), format!("{}_{name}", m.name), format!("{deployment}_{}_{name}", m.name)]
                .into_iter()
                .map(|v| env_variable(&v))
                .find(|v| taken.get(v).is_none_or(|old| *old == value))
                .unwrap_or_else(|| env_variable(&format!("{deployment}_{}_{name}", m.name)));
            taken.insert(var.clone(), value.clone());
            m.settings.env.insert(name, env_scalar(&var, true, &origin));
            out.push((var, value));
        }
    }
    // Twin properties under a credential-named key (`camera.apiKey`, every leaf of a
    // `secrets` object) likewise: the file names the variable, never the hub's value.
    for t in &mut d.twins {
        let mut found = Vec::new();
        secret_twin_leaves(&t.doc.value, "", &t.path, false, &mut found);
        for (pointer, name, value) in found {
            if t.doc.scalars.iter().any(|(p, _)| *p == pointer) {
                continue;
            }
            let base = format!("{}_{name}", t.module);
            let var = [base.clone(), format!("{deployment}_{base}")]
                .into_iter()
                .map(|v| env_variable(&v))
                .find(|v| taken.get(v).is_none_or(|old| *old == value))
                .unwrap_or_else(|| env_variable(&format!("{deployment}_{base}_{}", out.len())));
            taken.insert(var.clone(), value.clone());
            if let Some(slot) = t.doc.value.pointer_mut(&pointer) {
                *slot = Value::String(var.clone());
            }
            t.doc.scalars.push((pointer, env_scalar(&var, true, &t.origin)));
            out.push((var, value));
        }
    }
    out
}

/// (JSON pointer, name for the variable, text) of every scalar leaf of a twin document
/// that sits under a credential-named key. `path` is the twin section's own path, which
/// can itself be credential-named.
fn secret_twin_leaves(v: &Value, pointer: &str, path: &[String], under: bool, out: &mut Vec<(String, String, String)>) {
    let under = under || path.iter().any(|p| name_looks_secret(p));
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let ptr = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                secret_twin_leaves(child, &ptr, &[], under || name_looks_secret(k), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                secret_twin_leaves(child, &format!("{pointer}/{i}"), &[], under, out);
            }
        }
        _ if !under => {}
        Value::String(s) => out.push((pointer.to_string(), pointer_name(pointer), s.clone())),
        Value::Number(n) => out.push((pointer.to_string(), pointer_name(pointer), n.to_string())),
        Value::Bool(b) => out.push((pointer.to_string(), pointer_name(pointer), b.to_string())),
        Value::Null => {}
    }
}

fn pointer_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', "_")
}

/// A usable environment variable name: uppercase letters, digits and `_`.
fn env_variable(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Parses the written text back: import never writes a file `validate` rejects. `source`
/// names the input (the manifest file, or `hub:ID`) in the error.
fn check_written(source: &str, name: &str, text: &str) -> Result<(), ImportError> {
    let ws = Workspace::from_sources(vec![SourceFile::new(format!("{name}.kdl"), format!("{name}.kdl"), text.into())]);
    if ws.problems.is_empty() {
        return Ok(());
    }
    Err(ImportError::WouldNotValidate {
        file: source.to_string(),
        problems: ws.problems.iter().map(|p| p.to_string()).collect(),
    })
}

/// Reads a manifest for [`from_manifest`], refusing one over
/// [`crate::spec::limits::MAX_MANIFEST_BYTES`] (or not a regular file) before reading it.
pub fn read_manifest_file(path: &std::path::Path, display: &str) -> Result<String, ImportError> {
    let max = crate::spec::limits::MAX_MANIFEST_BYTES;
    let meta = std::fs::metadata(path)
        .map_err(|e| ImportError::ReadFile { file: display.to_string(), message: e.to_string() })?;
    if !meta.is_file() {
        // A FIFO or device would block or never end.
        return Err(ImportError::ReadFile { file: display.to_string(), message: "not a regular file".into() });
    }
    if meta.len() > max {
        return Err(ImportError::TooLarge { file: display.to_string(), size: meta.len(), max });
    }
    std::fs::read_to_string(path)
        .map_err(|e| ImportError::ReadFile { file: display.to_string(), message: e.to_string() })
}

/// How a `deployment.json` becomes a deployment.
#[derive(Clone, Debug, Default)]
pub struct ManifestOptions {
    /// `--name`; else a whole configuration's id, else `default_name`.
    pub name: Option<String>,
    pub default_name: String,
    /// `--priority`; else a whole configuration's priority, else 10.
    pub priority: Option<i32>,
    /// `--target`; else a whole configuration's target condition; `None` either way:
    /// `target #null` (targets nothing until a target is written).
    pub target: Option<String>,
    /// The folder the manifest is in: where a template's `.env` and `modules/` are.
    pub dir: Option<std::path::PathBuf>,
}

/// The priority a manifest gets when neither `--priority` nor the file gives one.
pub const DEFAULT_MANIFEST_PRIORITY: i32 = 10;

/// Converts a deployment manifest into one deployment. `file` names it in errors.
///
/// Accepted shapes: `{"modulesContent": {...}}` (standard, or layered when `$edgeAgent`
/// holds dotted `properties.desired.…` keys), the legacy `moduleContent` key the az CLI
/// still takes, and a whole configuration (`az iot edge deployment show`), whose id,
/// priority, target condition, labels and metrics are kept. iotedgedev templates have
/// their `${VAR}` and `${MODULES.Name}` placeholders resolved ([`resolve_placeholders`]).
pub fn from_manifest(file: &str, text: &str, opts: &ManifestOptions) -> Result<Imported, ImportError> {
    // Windows editors save JSON with a byte order mark; the JSON itself starts after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut notes = Vec::new();
    let vars = if text.contains("${") { Some(TemplateVars::load(opts.dir.as_deref(), &mut notes)?) } else { None };
    // iotedgedev expands variables in the template's text before it parses the JSON, so
    // `"timeToLiveSecs": ${TTL}` is a number once TTL is set.
    let parsed = match &vars {
        Some(v) => std::borrow::Cow::Owned(v.expand_outside_strings(file, text)?),
        None => std::borrow::Cow::Borrowed(text),
    };
    let mut json: Value = serde_json::from_str(&parsed).map_err(|e| ImportError::NotJson {
        file: file.to_string(),
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    if let Some(vars) = &vars {
        resolve_placeholders(file, text, &mut json, vars)?;
    }
    let whole = json.get("content").is_some_and(Value::is_object);
    let content = if whole { &json["content"] } else { &json };
    let mc = content
        .get("modulesContent")
        .or_else(|| content.get("moduleContent"))
        .and_then(Value::as_object)
        .filter(|m| m.get("$edgeAgent").is_some_and(Value::is_object))
        .ok_or_else(|| ImportError::NotAManifest { file: file.to_string() })?;
    let layered = !mc["$edgeAgent"].get("properties.desired").is_some_and(Value::is_object);
    let nothing = mc.values().all(|v| v.as_object().is_none_or(Map::is_empty));
    if (!layered && !mc.contains_key("$edgeHub")) || nothing {
        return Err(ImportError::NotAManifest { file: file.to_string() });
    }
    let field = |k: &str| if whole { json.get(k) } else { None };
    let raw_name = opts
        .name
        .clone()
        .or_else(|| field("labels").and_then(|l| l.get(LABEL_NAME)).and_then(Value::as_str).map(str::to_string))
        .or_else(|| field("id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| opts.default_name.clone());
    let name = sanitize_name(&raw_name);
    if name.is_empty() {
        return Err(ImportError::BadName { name: raw_name });
    }
    if name != raw_name {
        notes.push(format!("\"{raw_name}\" is not a valid deployment name; named it \"{name}\""));
    }
    let priority = match (opts.priority, field("priority")) {
        (Some(p), _) => i64::from(p),
        (None, Some(p)) => p.as_i64().ok_or_else(|| ImportError::BadField {
            file: file.to_string(),
            path: "priority".into(),
            problem: format!("expected a whole number from 0 to 2147483647, found {p}"),
        })?,
        (None, None) => i64::from(DEFAULT_MANIFEST_PRIORITY),
    };
    // A configuration holds only priorities the hub accepts. The two ways out keep the
    // errors they had when the manifest reader and `validate` caught them.
    let priority = match Priority::try_from(priority) {
        Ok(p) => p,
        Err(_) if i32::try_from(priority).is_ok() => {
            return Err(ImportError::WouldNotValidate {
                file: file.to_string(),
                problems: vec![format!("priority {priority} is out of range")],
            });
        }
        Err(_) => {
            return Err(ImportError::BadField {
                file: file.to_string(),
                path: "priority".into(),
                problem: "out of the int32 range".into(),
            });
        }
    };
    let target = opts
        .target
        .clone()
        .or_else(|| field("targetCondition").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string));
    let labels: BTreeMap<String, String> = field("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let metrics =
        field("metrics").and_then(|m| m.get("queries")).and_then(Value::as_object).map(|q| crate::model::Metrics {
            results: BTreeMap::new(),
            queries: q.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
        });
    let mut modules_content: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (twin, v) in mc {
        let mut v = v.clone();
        normalise_create_options(&mut v, file)?;
        let Value::Object(m) = v else {
            return Err(ImportError::NotAManifest { file: file.to_string() });
        };
        modules_content.insert(twin.clone(), m);
    }
    let config = Configuration {
        id: name.clone().into(),
        labels,
        content: ConfigurationContent { modules_content: Some(modules_content), ..Default::default() },
        target_condition: target.clone().unwrap_or_default(),
        priority,
        metrics,
        ..Default::default()
    };
    // Named by the file, not by the id import made up for it.
    let mut d = manifest::read(&config).map_err(|e| match e {
        manifest::ReadError::Unsupported { path, problem, .. } => {
            ImportError::BadField { file: file.to_string(), path, problem }
        }
        manifest::ReadError::NotEdge { .. } => ImportError::NotAManifest { file: file.to_string() },
    })?;
    d.name = DeploymentName(name.clone());
    if target.is_none() {
        notes.push(format!("{name}: no --target given; wrote `target #null` (targets no device until you set one)"));
    }
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    placeholders_to_env(&mut d, &mut env, &mut notes);
    let text = manifest::to_kdl(&d);
    check_written(file, &name, &text)?;
    Ok(Imported { name, text, env: env.into_iter().collect(), notes })
}

/// Where a `${…}` placeholder sits in the template, 1-based, for error messages.
fn placeholder_locations(text: &str, var: &str) -> Vec<(usize, usize)> {
    let needle = format!("${{{var}}}");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find(&needle) {
            let col = line[..from + at].chars().count() + 1;
            out.push((i + 1, col));
            from += at + needle.len();
        }
    }
    out
}

/// Variables a template can read: the process environment first, then `.env`.
struct TemplateVars {
    dotenv: BTreeMap<String, String>,
    dir: Option<std::path::PathBuf>,
    /// Secret-looking variables that would be substituted into text.
    secrets: std::cell::RefCell<Vec<String>>,
    /// Unresolved placeholders found before the walk over the template's strings (outside
    /// strings, or in a module.json), each with its place.
    elsewhere: std::cell::RefCell<Vec<String>>,
}

impl TemplateVars {
    /// The variables beside a template: its `.env` (if any) under the process environment.
    fn load(dir: Option<&std::path::Path>, notes: &mut Vec<String>) -> Result<Self, ImportError> {
        let dotenv = match dir.map(|d| d.join(".env")) {
            Some(p) if p.is_file() => {
                let t = std::fs::read_to_string(&p).map_err(|e| ImportError::BadTemplateInput {
                    file: p.display().to_string(),
                    message: e.to_string(),
                })?;
                notes.push(format!("read variables from {}", p.display()));
                dotenv::parse(&t, &|k| std::env::var(k).ok()).map_err(|e| ImportError::BadTemplateInput {
                    file: format!("{}:{}", p.display(), e.line),
                    message: format!("{} (as python-dotenv reads it, which iotedgedev uses)", e.message),
                })?
            }
            _ => BTreeMap::new(),
        };
        Ok(TemplateVars {
            dotenv,
            dir: dir.map(std::path::Path::to_path_buf),
            secrets: Default::default(),
            elsewhere: Default::default(),
        })
    }

    /// Substitutes the `${VAR}`s that stand outside JSON strings (a bare number or value,
    /// as in `"timeToLiveSecs": ${TTL}`), as iotedgedev's text expansion does; the ones in
    /// strings are left to [`resolve_placeholders`], which knows what each string is. An
    /// unset one is recorded with its line and column, to be reported with all the others.
    fn expand_outside_strings(&self, file: &str, text: &str) -> Result<String, ImportError> {
        let mut out = String::with_capacity(text.len());
        let (mut in_string, mut escaped) = (false, false);
        let (mut line, mut col) = (1usize, 1usize);
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if !in_string
                && rest.starts_with("${")
                && let Some(end) = rest.find('}')
            {
                let var = &rest[2..end];
                let plain = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    match self.var(var) {
                        Some(v) => {
                            if name_looks_secret(var) {
                                return Err(ImportError::SecretInText { file: file.to_string(), var: var.to_string() });
                            }
                            out.push_str(&v);
                        }
                        None => {
                            // Named with the rest once the JSON is read; `null` keeps it parsable.
                            self.elsewhere.borrow_mut().push(format!("${{{var}}} at {file}:{line}:{col}"));
                            out.push_str("null");
                        }
                    }
                    col += rest[..=end].chars().count();
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            }
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Ok(out)
    }

    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| self.dotenv.get(name).cloned())
    }

    /// `${MODULES.Name}` / `${MODULES.Name.platform}`, as iotedgedev builds it: the
    /// module's `image.repository` (itself with `${VAR}`s) + `:` + `image.tag.version` +
    /// `-` + the platform (`DEFAULT_PLATFORM`, else amd64), which must be one the module
    /// lists under `image.tag.platforms`.
    fn module_image(&self, spec: &str, file: &str) -> Result<Option<String>, ImportError> {
        let mut parts = spec.splitn(2, '.');
        let module = parts.next().unwrap_or_default();
        let platform = match parts.next() {
            Some(p) => p.to_string(),
            None => self.var("DEFAULT_PLATFORM").unwrap_or_else(|| "amd64".to_string()),
        };
        let Some(dir) = &self.dir else { return Ok(None) };
        let path = dir.join("modules").join(module).join("module.json");
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
        let bad = |message: String| ImportError::BadTemplateInput { file: path.display().to_string(), message };
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let image = &json["image"];
        let (Some(repo), Some(version)) = (image["repository"].as_str(), image["tag"]["version"].as_str()) else {
            return Err(bad("needs image.repository and image.tag.version".into()));
        };
        if image["tag"]["platforms"].get(&platform).is_none() {
            let _ = file;
            return Ok(None);
        }
        // iotedgedev expands variables in the whole module.json; the image's parts are the
        // only ones that reach the deployment.
        let mut missing = Vec::new();
        let repo = self.substitute(repo, &mut missing);
        let version = self.substitute(version, &mut missing);
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            let shown = path.display().to_string();
            let mut elsewhere = self.elsewhere.borrow_mut();
            for var in &missing {
                for (l, c) in placeholder_locations(&text, var) {
                    let at = format!("${{{var}}} at {shown}:{l}:{c}");
                    // Two platforms of one module read the same module.json.
                    if !elsewhere.contains(&at) {
                        elsewhere.push(at);
                    }
                }
            }
            return Ok(Some(String::new()));
        }
        Ok(Some(format!("{repo}:{version}-{platform}")))
    }

    /// Replaces every resolvable plain `${VAR}` in `s`; the unset ones go to `missing`.
    fn substitute(&self, s: &str, missing: &mut Vec<String>) -> String {
        dotenv::expand_placeholders(s, |var| {
            if name_looks_secret(var) && self.var(var).is_some() {
                self.secrets.borrow_mut().push(var.to_string());
            }
            match self.var(var) {
                Some(v) if !var.starts_with("MODULES.") => Some(v),
                _ => {
                    missing.push(var.to_string());
                    None
                }
            }
        })
    }
}

/// Resolves an iotedgedev template's placeholders in place. A string that is exactly
/// `${VAR}` outside createOptions and routes is kept: it becomes an `(env)"VAR"`
/// reference (a registry password stays out of the file). Every other `${VAR}` (inside
/// a longer string, in createOptions or routes, which cannot read the environment) is
/// replaced by its value, and `${MODULES.Name}` by the image iotedgedev would build.
/// Placeholders that cannot be resolved are all named, with their line and column.
fn resolve_placeholders(file: &str, text: &str, json: &mut Value, vars: &TemplateVars) -> Result<(), ImportError> {
    let mut missing = Vec::new();
    walk_template(json, false, vars, file, &mut missing)?;
    // Fails closed: a value substituted into text ends up in the repository.
    if let Some(var) = vars.secrets.borrow().first() {
        return Err(ImportError::SecretInText { file: file.to_string(), var: var.clone() });
    }
    let elsewhere = vars.elsewhere.borrow();
    if missing.is_empty() && elsewhere.is_empty() {
        return Ok(());
    }
    missing.sort();
    missing.dedup();
    let unresolved: Vec<String> = missing
        .iter()
        .flat_map(|var| {
            let at = placeholder_locations(text, var);
            if at.is_empty() {
                vec![format!("${{{var}}}")]
            } else {
                at.into_iter().map(|(l, c)| format!("${{{var}}} at {file}:{l}:{c}")).collect()
            }
        })
        .chain(elsewhere.iter().cloned())
        .collect();
    Err(ImportError::Unresolved { file: file.to_string(), unresolved })
}

fn walk_template(
    v: &mut Value,
    literal_only: bool,
    vars: &TemplateVars,
    file: &str,
    missing: &mut Vec<String>,
) -> Result<(), ImportError> {
    match v {
        Value::String(s) if s.contains("${") => {
            if let Some(spec) = s.strip_prefix("${MODULES.").and_then(|r| r.strip_suffix('}')) {
                match vars.module_image(spec, file)? {
                    Some(image) => *s = image,
                    None => missing.push(format!("MODULES.{spec}")),
                }
            } else if literal_only || placeholder(s).is_none() {
                *s = vars.substitute(s, missing);
            }
        }
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                let literal = literal_only
                    || k.to_ascii_lowercase().starts_with("createoptions")
                    || k == "routes"
                    || k.starts_with("properties.desired.routes.");
                walk_template(child, literal, vars, file, missing)?;
            }
        }
        Value::Array(items) => {
            for i in items {
                walk_template(i, literal_only, vars, file, missing)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rewrites createOptions written as JSON objects (iotedgedev templates) or split into
/// `createOptionsNN` pieces into the one compact string the hub carries, everywhere in a
/// twin's desired properties.
fn normalise_create_options(v: &mut Value, file: &str) -> Result<(), ImportError> {
    match v {
        Value::Object(m) => {
            if m.contains_key("createOptions") {
                let joined = match m.get("createOptions") {
                    Some(Value::String(_)) => match manifest::join_create_options(m) {
                        Some(Ok(s)) => s,
                        Some(Err(message)) => return Err(ImportError::BadCreateOptions { file: file.into(), message }),
                        None => String::new(),
                    },
                    Some(other) => serde_json::to_string(other).unwrap_or_default(),
                    None => String::new(),
                };
                let pieces: Vec<String> = m
                    .keys()
                    .filter(|k| k.strip_prefix("createOptions").is_some_and(|n| !n.is_empty()))
                    .cloned()
                    .collect();
                for k in pieces {
                    m.remove(&k);
                }
                // The agent reads empty, blank and `null` createOptions as no options.
                if joined.trim().is_empty() || joined.trim() == "null" {
                    m.remove("createOptions");
                    return Ok(());
                }
                // Re-serialised compactly so that the hub's chunking applies cleanly.
                let compact = match serde_json::from_str::<Value>(&joined) {
                    Ok(doc) => serde_json::to_string(&doc).unwrap_or(joined),
                    Err(e) => {
                        return Err(ImportError::BadCreateOptions {
                            file: file.into(),
                            message: format!("createOptions is not JSON: {e}"),
                        });
                    }
                };
                m.insert("createOptions".into(), Value::String(compact));
            }
            for child in m.values_mut() {
                normalise_create_options(child, file)?;
            }
        }
        Value::Array(items) => {
            for i in items {
                normalise_create_options(i, file)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `${VAR}` (a whole string) -> `VAR`.
fn placeholder(s: &str) -> Option<&str> {
    let var = s.strip_prefix("${")?.strip_suffix('}')?;
    (!var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')).then_some(var)
}

fn env_scalar(var: &str, sensitive: bool, origin: &Origin) -> Scalar {
    Scalar {
        value: Value::String(var.to_string()),
        source: ValueSource::Env(var.to_string()),
        sensitive,
        origin: origin.clone(),
    }
}

/// Turns every `${VAR}` string in the model into an `(env)` reference, and every literal
/// registry password into `(env)"<REGISTRY>_PASSWORD"`. Placeholders inside a longer
/// string, or inside createOptions (which can't read the environment), are listed in
/// `notes` and left as text.
fn placeholders_to_env(d: &mut Deployment, env: &mut BTreeMap<String, Option<String>>, notes: &mut Vec<String>) {
    let name = d.name.0.clone();
    let mut convert =
        |s: &mut Scalar, what: &str, env: &mut BTreeMap<String, Option<String>>, notes: &mut Vec<String>| {
            let ValueSource::Literal = s.source else { return };
            let Value::String(text) = &s.value else { return };
            if let Some(var) = placeholder(text) {
                env.insert(var.to_string(), None);
                *s = env_scalar(var, s.sensitive, &s.origin);
            } else if text.contains("${") {
                notes
                    .push(format!("{name}: {what} \"{text}\" has a placeholder inside a longer text; edit it by hand"));
            }
        };
    let mut registries: Vec<&mut Registry> = d.registries.values_mut().collect();
    if let Some(r) = d.runtime.as_mut() {
        registries.extend(r.registries.values_mut());
        for (which, s) in [("edgeAgent", &mut r.edge_agent), ("edgeHub", &mut r.edge_hub)] {
            settings_to_env(&name, which, s, env, notes, &mut convert);
        }
    }
    for r in registries {
        convert(&mut r.address, &format!("registry {} address", r.name), env, notes);
        convert(&mut r.username, &format!("registry {} username", r.name), env, notes);
        convert(&mut r.password, &format!("registry {} password", r.name), env, notes);
        if r.password.source == ValueSource::Literal {
            let var = password_variable(&r.name);
            env.insert(var.clone(), None);
            r.password = env_scalar(&var, true, &r.password.origin);
        }
    }
    for m in d.modules.values_mut() {
        settings_to_env(&name, &m.name.clone(), &mut m.settings, env, notes, &mut convert);
    }
    for t in &mut d.twins {
        let mut found = Vec::new();
        collect_placeholders(&t.doc.value, "", &mut found);
        for (pointer, var) in found {
            if let Some(v) = t.doc.value.pointer_mut(&pointer) {
                *v = Value::String(var.clone());
            }
            env.insert(var.clone(), None);
            t.doc.scalars.push((pointer, env_scalar(&var, false, &t.origin)));
        }
    }
}

type Convert<'c> = dyn FnMut(&mut Scalar, &str, &mut BTreeMap<String, Option<String>>, &mut Vec<String>) + 'c;

fn settings_to_env(
    name: &str,
    module: &str,
    s: &mut ModuleSettings,
    env: &mut BTreeMap<String, Option<String>>,
    notes: &mut Vec<String>,
    convert: &mut Convert<'_>,
) {
    if let Some(img) = s.image.as_mut() {
        convert(img, &format!("module {module} image"), env, notes);
    }
    for (k, v) in s.env.iter_mut() {
        convert(v, &format!("module {module} env {k}"), env, notes);
    }
    if let Some(co) = &s.create_options
        && serde_json::to_string(&co.doc.value).is_ok_and(|t| t.contains("${"))
    {
        notes.push(format!(
            "{name}: module {module} createOptions holds a ${{…}} placeholder; createOptions can't read the environment, edit it by hand"
        ));
    }
}

fn collect_placeholders(v: &Value, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => {
            if let Some(var) = placeholder(s) {
                out.push((pointer.to_string(), var.to_string()));
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                collect_placeholders(child, &format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_placeholders(child, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_variables() {
        assert_eq!(sanitize_name("Manual_Hotfix.v2"), "manual_hotfix-v2");
        assert_eq!(sanitize_name("--A  B--"), "a-b");
        assert_eq!(sanitize_name("###"), "");
        assert_eq!(password_variable("contoso-acr"), "CONTOSO_ACR_PASSWORD");
        assert_eq!(password_variable("1reg"), "_1REG_PASSWORD");
        assert_eq!(placeholder("${ACR_USER}"), Some("ACR_USER"));
        assert_eq!(placeholder("x${A}"), None);
    }

    #[test]
    fn campus_hub_imports_and_adopts_the_unmanaged_deployment() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/campus/hub/configurations.json");
        let configs: Vec<Configuration> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (imported, skipped) = from_hub(&configs);
        assert!(skipped.is_empty(), "{skipped:?}");
        let names: Vec<&str> = imported.iter().map(|i| i.name.as_str()).collect();
        assert!(names.contains(&"campus-base") && names.contains(&"manual-hotfix"), "{names:?}");
        let hotfix = imported.iter().find(|i| i.name == "manual-hotfix").unwrap();
        assert!(hotfix.text.contains("adopt \"manual-hotfix\""), "{}", hotfix.text);
        let base = imported.iter().find(|i| i.name == "campus-base").unwrap();
        assert!(!base.text.contains("adopt"), "managed deployments need no adoption");
        assert!(base.text.contains("password=(env)\"CONTOSO_PASSWORD\""), "{}", base.text);
        assert!(!base.text.contains("\"demo\""), "the password value never reaches the file");
        assert_eq!(base.env, vec![("CONTOSO_PASSWORD".to_string(), Some("demo".to_string()))]);
        for i in &imported {
            assert!(i.notes.is_empty(), "{}: {:?}", i.name, i.notes);
            if i.name == "conference-camera" {
                assert!(i.text.contains("API_TOKEN=(secret-env)\"API_TOKEN\""), "{}", i.text);
                assert!(i.env.iter().any(|(v, _)| v == "API_TOKEN"), "{:?}", i.env);
            }
        }
    }
}
