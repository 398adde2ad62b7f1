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

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::hub::wire::{Configuration, ConfigurationContent, ConfigurationKind};
use crate::manifest::{self, LABEL_HASH, LABEL_NAME, MapEnv, SecretMode};
use crate::plan::redact::name_looks_secret;
use crate::spec::model::*;
use crate::spec::rules::{MAX_NAME_LEN, valid_deployment_char};
use crate::spec::{SourceFile, Workspace};

/// Why a manifest could not be imported.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("{file}: not JSON: {message} (line {line}, column {column})")]
    #[diagnostic(code(fleetform::import::not_json))]
    NotJson { file: String, message: String, line: usize, column: usize },
    #[error("{file}: no modulesContent with $edgeAgent and $edgeHub")]
    #[diagnostic(
        code(fleetform::import::not_a_manifest),
        help("give a deployment manifest: {{\"modulesContent\": {{\"$edgeAgent\": …, \"$edgeHub\": …}}}}")
    )]
    NotAManifest { file: String },
    #[error("{file}: {message}")]
    #[diagnostic(code(fleetform::import::bad_create_options))]
    BadCreateOptions { file: String, message: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] manifest::ReadError),
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
            skipped.push(Skipped { id: c.id.clone(), reason: "not an IoT Edge deployment".into() });
            continue;
        }
        let mut d = match manifest::read(c) {
            Ok(d) => d,
            Err(e) => {
                skipped.push(Skipped { id: c.id.clone(), reason: e.to_string() });
                continue;
            }
        };
        let mut notes = Vec::new();
        let managed = c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH);
        if !managed {
            let name = sanitize_name(c.labels.get(LABEL_NAME).unwrap_or(&c.id));
            if name.is_empty() {
                skipped.push(Skipped { id: c.id.clone(), reason: "no usable name can be made from its id".into() });
                continue;
            }
            if name != c.id {
                notes.push(format!("hub id \"{}\" is not a valid deployment name; named it \"{name}\"", c.id));
            }
            d.name = DeploymentName(name);
            d.adopt = Some(c.id.clone());
        }
        if let Some(first) = out.iter().find(|i| i.name == d.name.0) {
            skipped.push(Skipped {
                id: c.id.clone(),
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
        check_written(&d.name.0, &text, &mut notes);
        // Adoption keeps the hub object only when the content fleetform renders is the
        // hub's, byte for byte (content is immutable); say so up front when it is not.
        if let Ok(r) = manifest::render(&d, &values, SecretMode::Reveal)
            && r.configuration.content != c.content
        {
            notes.push(format!(
                "{}: the hub's content is not in fleetform's canonical form (e.g. createOptions spacing or key order); the first apply will replace it with identical settings",
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
            let Value::String(value) = &s.value else { continue };
            let value = value.clone();
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
    out
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

/// Parses the written text back: import never writes a file `validate` rejects without
/// saying so.
fn check_written(name: &str, text: &str, notes: &mut Vec<String>) {
    let ws = Workspace::from_sources(vec![SourceFile::new(format!("{name}.kdl"), format!("{name}.kdl"), text.into())]);
    for p in &ws.problems {
        notes.push(format!("{name}.kdl: {p} (edit the file before planning)"));
    }
}

/// How a `deployment.json` becomes a deployment.
#[derive(Clone, Debug)]
pub struct ManifestOptions {
    pub name: String,
    pub priority: i32,
    /// `None`: `target #null` (targets nothing until a target is written).
    pub target: Option<String>,
}

/// Converts a deployment manifest (`{"modulesContent": {...}}`, or a whole configuration
/// with `content.modulesContent`) into one standard deployment. `file` names it in errors.
pub fn from_manifest(file: &str, text: &str, opts: &ManifestOptions) -> Result<Imported, ImportError> {
    let json: Value = serde_json::from_str(text).map_err(|e| ImportError::NotJson {
        file: file.to_string(),
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let mc = json
        .get("modulesContent")
        .or_else(|| json.get("content").and_then(|c| c.get("modulesContent")))
        .and_then(Value::as_object)
        .filter(|m| m.contains_key("$edgeAgent") && m.contains_key("$edgeHub"))
        .ok_or_else(|| ImportError::NotAManifest { file: file.to_string() })?;
    let name = sanitize_name(&opts.name);
    if name.is_empty() {
        return Err(ImportError::BadName { name: opts.name.clone() });
    }
    let mut notes = Vec::new();
    if name != opts.name {
        notes.push(format!("\"{}\" is not a valid deployment name; named it \"{name}\"", opts.name));
    }
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
        id: name.clone(),
        content: ConfigurationContent { modules_content: Some(modules_content), ..Default::default() },
        target_condition: opts.target.clone().unwrap_or_default(),
        priority: i64::from(opts.priority),
        ..Default::default()
    };
    let mut d = manifest::read(&config)?;
    d.name = DeploymentName(name.clone());
    if opts.target.is_none() {
        notes.push(format!("{name}: no --target given; wrote `target #null` (targets no device until you set one)"));
    }
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    placeholders_to_env(&mut d, &mut env, &mut notes);
    for var in env.keys().filter(|v| v.starts_with("MODULES.")) {
        notes.push(format!(
            "{name}: ${{{var}}} is an iotedgedev build placeholder (the image it builds); set {var} or write the image name"
        ));
    }
    let text = manifest::to_kdl(&d);
    check_written(&name, &text, &mut notes);
    Ok(Imported { name, text, env: env.into_iter().collect(), notes })
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub/configurations.json");
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
