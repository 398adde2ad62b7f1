//! The manifest corpus (tests/corpus): deployment manifests in the shapes the az CLI,
//! VS Code / iotedgedev and the iotedge end-to-end suite write. Each one is imported,
//! validated and rendered back by the real binary, and the rendered modulesContent is
//! compared with the original: only the normalisations schema/language.md lists may
//! differ. Then the same corpus, served by the emulator, is adopted by `import --hub`
//! with no content change in the next plan.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Deployments holding registry passwords need a hash key (README, "The content hash").
const HASH_KEY: (&str, &str) = ("FLEETFORM_HASH_KEY", "corpus-hash-key-0123456789abcdef01");

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/templates/iotedgedev")
}

/// The manifest's modulesContent, whatever the wrapping (whole configuration, legacy key).
fn modules_content(doc: &Value) -> Map<String, Value> {
    let content = doc.get("content").filter(|c| c.is_object()).unwrap_or(doc);
    content.get("modulesContent").or_else(|| content.get("moduleContent")).unwrap().as_object().unwrap().clone()
}

/// Registry names to passwords anywhere in a modulesContent.
fn passwords(mc: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let agent = &mc["$edgeAgent"];
    if let Some(regs) =
        agent.pointer("/properties.desired/runtime/settings/registryCredentials").and_then(Value::as_object)
    {
        for (n, r) in regs {
            out.insert(n.clone(), password_of(r));
        }
    }
    for (k, r) in agent.as_object().unwrap() {
        if let Some(n) = k.strip_prefix("properties.desired.runtime.settings.registryCredentials.") {
            out.insert(n.to_string(), password_of(r));
        }
    }
    out
}

/// A registry's password, however its key is spelt (the runtime ignores case).
fn password_of(registry: &Value) -> String {
    let m = registry.as_object().unwrap();
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case("password")).unwrap().1.as_str().unwrap().to_string()
}

/// The variable `import --manifest` names a registry's password after (README, import).
fn password_var(registry: &str) -> String {
    let mut v: String =
        registry.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    v.push_str("_PASSWORD");
    v
}

/// The documented normalisations (schema/language.md), applied to the original: key
/// spelling as the runtime reads it (case-insensitive), createOptions joined from its
/// pieces and parsed as JSON, empty/blank/`null` createOptions dropped, a route object
/// with only `route` written as the plain string.
fn normalise(v: &mut Value) {
    const KEYS: &[&str] = &[
        "image",
        "status",
        "restartPolicy",
        "settings",
        "type",
        "version",
        "value",
        "route",
        "priority",
        "timeToLiveSecs",
        "address",
        "username",
        "password",
    ];
    if let Value::Object(m) = v {
        let old = std::mem::take(m);
        let mut pieces: BTreeMap<String, String> = BTreeMap::new();
        for (k, child) in old {
            let lower = k.to_ascii_lowercase();
            if let Some(n) = lower.strip_prefix("createoptions") {
                pieces.insert(n.to_string(), child.as_str().unwrap_or_default().to_string());
            } else {
                let k = KEYS.iter().find(|c| c.eq_ignore_ascii_case(&k)).map_or(k, |c| c.to_string());
                m.insert(k, child);
            }
        }
        if !pieces.is_empty() {
            let joined: String = pieces.values().cloned().collect();
            if !joined.trim().is_empty() && joined.trim() != "null" {
                m.insert("createOptions".into(), serde_json::from_str(&joined).unwrap());
            }
        }
        for child in m.values_mut() {
            normalise(child);
        }
        if m.len() == 1
            && let Some(Value::String(route)) = m.get("route")
        {
            *v = Value::String(route.clone());
        }
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(normalise);
    }
}

/// Every leaf (and empty object) by path.
fn flatten(v: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                flatten(c, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, c) in items.iter().enumerate() {
                flatten(c, &format!("{path}/{i}"), out);
            }
        }
        leaf => {
            out.insert(path.to_string(), leaf.clone());
        }
    }
}

/// What the renderer may add that the original left to the runtime's defaults
/// (docs/hub-semantics.md#edge-content / the agent's documented defaults).
fn documented_default(path: &str, value: &Value) -> bool {
    let ends = |s: &str| path.ends_with(s);
    (ends("/type") && value == "docker")
        || (ends("/status") && value == "running")
        || (ends("/restartPolicy") && value == "always")
        || (ends("/runtime/settings/minDockerVersion") && value == "v1.25")
        || (ends("/runtime/settings/loggingOptions") && value == "")
        || (ends("/storeAndForwardConfiguration/timeToLiveSecs") && value == 7200)
        || (ends("/routes") && value == &json!({}))
        || (ends("/modules") && value == &json!({}))
        || (ends("/settings") && value == &json!({}))
}

/// The rendered modulesContent holds every value of the original, unchanged, and adds
/// only documented defaults.
fn assert_same(name: &str, original: &Map<String, Value>, rendered: &Map<String, Value>) {
    let mut a = Value::Object(original.clone());
    let mut b = Value::Object(rendered.clone());
    normalise(&mut a);
    normalise(&mut b);
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten(&a, "", &mut fa);
    flatten(&b, "", &mut fb);
    for (path, v) in &fa {
        assert_eq!(fb.get(path), Some(v), "{name}: {path} lost or changed\nrendered: {b:#}");
    }
    for (path, v) in &fb {
        if !fa.contains_key(path) {
            assert!(documented_default(path, v), "{name}: rendering added {path} = {v}");
        }
    }
}

struct RoundTrip {
    name: String,
    kdl: String,
    rendered: Value,
}

/// import --manifest, validate, render --show-secrets: the real binary, as a user runs it.
fn round_trip(manifest: &Path, out: &Path, env: &[(String, String)]) -> RoundTrip {
    let o = import_manifest(manifest, out);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{}: {}", manifest.display(), err);
    let secrets: Vec<&str> = env.iter().filter(|(k, _)| k.ends_with("_PASSWORD")).map(|(_, v)| v.as_str()).collect();
    for secret in &secrets {
        assert!(!err.contains(secret), "{}: a secret was printed: {err}", manifest.display());
    }
    let file = err.lines().find_map(|l| l.strip_prefix("wrote ")).unwrap().to_string();
    let kdl = std::fs::read_to_string(&file).unwrap();
    for secret in &secrets {
        assert!(!kdl.contains(secret), "{file}: a registry password reached the file:\n{kdl}");
    }
    let name = Path::new(&file).file_stem().unwrap().to_string_lossy().to_string();
    let o = common::fleetform().arg("validate").arg(&file).output().unwrap();
    assert!(o.status.success(), "{file} does not validate:\n{kdl}\n{}", common::transcript(&o));
    let mut cmd = common::fleetform();
    cmd.args(["render", &name]).arg(&file).arg("--show-secrets").env(HASH_KEY.0, HASH_KEY.1);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{file}: {}", common::transcript(&o));
    let rendered: Value = serde_json::from_slice(&o.stdout).unwrap();
    std::fs::remove_file(&file).unwrap();
    RoundTrip { name, kdl, rendered }
}

#[test]
fn every_corpus_manifest_imports_validates_and_renders_back() {
    let files = corpus();
    assert!(files.len() >= 25, "the corpus has {} manifests", files.len());
    let out = tempfile::tempdir().unwrap();
    for f in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let mc = modules_content(&doc);
        let env: Vec<(String, String)> = passwords(&mc).into_iter().map(|(r, p)| (password_var(&r), p)).collect();
        let rt = round_trip(f, out.path(), &env);
        let rendered = rt.rendered["content"]["modulesContent"].as_object().unwrap();
        assert_same(&rt.name, &mc, rendered);
        let layered = !mc["$edgeAgent"].as_object().unwrap().contains_key("properties.desired");
        assert_eq!(rt.kdl.starts_with("layered "), layered, "{}:\n{}", rt.name, rt.kdl);
        if doc.get("content").is_some() {
            // A whole configuration keeps its id, priority, target, labels and metrics.
            assert_eq!(rt.name, doc["id"].as_str().unwrap());
            assert_eq!(rt.rendered["priority"], doc["priority"], "{}", rt.name);
            assert_eq!(rt.rendered["targetCondition"], doc["targetCondition"], "{}", rt.name);
            for (k, v) in doc["labels"].as_object().unwrap() {
                assert_eq!(&rt.rendered["labels"][k], v, "{}: label {k}", rt.name);
            }
            let queries = |v: &Value| v["metrics"]["queries"].as_object().cloned().unwrap_or_default();
            assert_eq!(queries(&rt.rendered), queries(&doc), "{}", rt.name);
        } else {
            assert_eq!(rt.rendered["priority"], 10, "{}", rt.name);
        }
    }
}

#[test]
fn iotedgedev_template_resolves_env_dotenv_and_module_images() {
    let dir = template_dir();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("deployment.expected.json")).unwrap()).unwrap();
    // Registry fields stay `(env)` references; plan reads them from the environment.
    let env: Vec<(String, String)> = [
        ("CONTAINER_REGISTRY_SERVER", "corpusregistry.azurecr.io"),
        ("CONTAINER_REGISTRY_USERNAME", "corpususer"),
        ("CONTAINER_REGISTRY_PASSWORD", "corpus-template-pass-4"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = tempfile::tempdir().unwrap();
    let rt = round_trip(&dir.join("deployment.template.json"), out.path(), &env);
    assert!(rt.kdl.contains("password=(env)\"CONTAINER_REGISTRY_PASSWORD\""), "{}", rt.kdl);
    assert!(!rt.kdl.contains("${"), "every placeholder is resolved or a reference:\n{}", rt.kdl);
    let rendered = rt.rendered;
    assert_same(
        "iotedgedev",
        expected["modulesContent"].as_object().unwrap(),
        rendered["content"]["modulesContent"].as_object().unwrap(),
    );
}

#[test]
fn unresolved_template_placeholders_are_all_named_with_their_place() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(template_dir().join("deployment.template.json")).unwrap();
    // No .env and no modules/ beside it: SITE_NAME and both module images are unknown.
    std::fs::write(tmp.path().join("deployment.template.json"), &text).unwrap();
    let o = import_manifest(&tmp.path().join("deployment.template.json"), &tmp.path().join("out"));
    assert!(!o.status.success());
    let err = common::stderr(&o);
    // Line and column counted by hand in the template.
    for want in [
        "${MODULES.SampleModule} at ",
        "deployment.template.json:54:25",
        "${MODULES.SampleModule.arm32v7} at ",
        "deployment.template.json:66:25",
        "${SITE_NAME} at ",
        "deployment.template.json:56:31",
        "3 placeholders cannot be resolved",
        ".env file beside the template",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!tmp.path().join("out").exists(), "nothing is written on error");
}

/// The corpus as hub configurations, as the az CLI would have created them.
fn corpus_configurations() -> Vec<Value> {
    let mut out = Vec::new();
    let mut files = corpus();
    files.push(template_dir().join("deployment.expected.json"));
    for (i, f) in files.iter().enumerate() {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let stem = f.file_stem().unwrap().to_string_lossy().replace('.', "-");
        let whole = doc.get("content").is_some();
        let field = |k: &str, d: Value| if whole { doc[k].clone() } else { d };
        out.push(json!({
            "id": field("id", json!(stem)),
            "schemaVersion": "1.0",
            "labels": field("labels", json!({})),
            "content": { "modulesContent": modules_content(&doc) },
            "targetCondition": field("targetCondition", json!(format!("tags.corpus='{stem}'"))),
            "createdTimeUtc": format!("2025-01-01T00:00:{i:02}Z"),
            "lastUpdatedTimeUtc": format!("2025-01-01T00:00:{i:02}Z"),
            "priority": field("priority", json!(10 + i)),
            "metrics": field("metrics", json!({ "results": {}, "queries": {} })),
            "etag": "MQ==",
        }));
    }
    out
}

#[test]
fn hub_import_adopts_the_whole_corpus_without_content_changes() {
    let configs = corpus_configurations();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("configurations.json"), serde_json::to_string_pretty(&configs).unwrap()).unwrap();
    std::fs::write(state.path().join("devices.json"), "[]").unwrap();
    std::fs::write(state.path().join("modules.json"), "[]").unwrap();
    let emu = common::EmulatorProcess::start(state.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("deployments");
    let hub_args = ["--hub", emu.connection.as_str(), "--endpoint", emu.url.as_str()];
    let o = common::fleetform().arg("import").args(hub_args).arg("--out").arg(&dir).output().unwrap();
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("skipped"), "every corpus deployment is adopted:\n{err}");
    assert!(err.contains(&format!("{} deployments imported", configs.len())), "{err}");
    // The passwords, under the variables import chose (it names them; values come from
    // the library, as the CLI never prints them).
    let typed: Vec<fleetform::model::Configuration> =
        configs.iter().map(|c| serde_json::from_value(c.clone()).unwrap()).collect();
    let (imported, _) = fleetform::import::from_hub(&typed);
    let env: Vec<(String, String)> =
        imported.iter().flat_map(|i| i.env.iter()).filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
    for (_, secret) in &env {
        assert!(!err.contains(secret.as_str()), "{err}");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains(secret.as_str()), "{text}");
        }
    }
    let mut cmd = common::fleetform();
    cmd.arg("plan").arg(&dir).args(hub_args).args(["--format", "json"]).env(HASH_KEY.0, HASH_KEY.1);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", common::transcript(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary = &plan["summary"];
    assert_eq!(summary["create"], 0, "{summary}\n{:#}", plan["actions"]);
    assert_eq!(summary["replace"], 0, "{summary}\n{:#}", plan["actions"]);
    assert_eq!(summary["delete"], 0, "{summary}");
    assert_eq!(summary["devices_changed"], 0, "{summary}");
    for a in plan["actions"].as_array().unwrap() {
        assert_eq!(a["action"], "update", "{a:#}");
        let fields: Vec<&str> =
            a["field_changes"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert!(fields.iter().all(|f| f.starts_with("labels.")), "only labels change on adoption: {a:#}");
    }
    // Adoption has to go through: the hub refuses any update whose content differs from
    // what it stores, so apply must send the stored content, not its own spelling of it.
    let run = |args: &[&str]| {
        let mut cmd = common::fleetform();
        cmd.args(args).arg(&dir).args(hub_args).env(HASH_KEY.0, HASH_KEY.1);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let o = run(&["apply", "--auto-approve"]);
    let text = common::transcript(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("0 created, {} updated, 0 deleted", configs.len())), "{text}");
    for (_, secret) in &env {
        assert!(!text.contains(secret.as_str()), "{text}");
    }
    let o = run(&["plan"]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert!(common::stdout(&o).contains("No changes. The hub matches the repository."), "{}", common::transcript(&o));
    // The hub still holds every configuration's content exactly as it was, under its id.
    let o = common::fleetform()
        .args(["snapshot"])
        .args(hub_args)
        .arg("--out")
        .arg(out.path().join("snap"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::transcript(&o));
    let after: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("snap/configurations.json")).unwrap()).unwrap();
    assert_eq!(after.len(), configs.len());
    for c in &configs {
        let now = after.iter().find(|a| a["id"] == c["id"]).unwrap_or_else(|| panic!("{} is gone", c["id"]));
        assert_eq!(now["content"], c["content"], "{}", c["id"]);
    }
}

#[test]
fn a_secret_is_never_substituted_into_template_text() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(template_dir().join("deployment.template.json")).unwrap();
    let text = text.replace("SITE=${SITE_NAME}", "PASS=${CONTAINER_REGISTRY_PASSWORD}");
    std::fs::write(tmp.path().join("deployment.template.json"), text).unwrap();
    common::copy_dir(&template_dir().join("modules"), &tmp.path().join("modules"));
    std::fs::copy(template_dir().join(".env"), tmp.path().join(".env")).unwrap();
    let o = import_manifest(&tmp.path().join("deployment.template.json"), &tmp.path().join("out"));
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(err.contains("${CONTAINER_REGISTRY_PASSWORD} looks like a secret"), "{err}");
    assert!(!err.contains("corpus-template-pass-4"), "{err}");
    assert!(!tmp.path().join("out").exists());
}

// Real-world inputs that once went wrong (issue #13's adversarial review). Expectations
// are written from iotedgedev's and python-dotenv's documented behaviour and the hub's
// rules, not taken from fleetform's output.

/// A copy of the iotedgedev template folder, changed by `edit` (template text, .env text,
/// module.json text), to import from.
fn template_copy(edit: impl FnOnce(&mut String, &mut String, &mut String)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = template_dir();
    let mut template = std::fs::read_to_string(src.join("deployment.template.json")).unwrap();
    let mut dotenv = std::fs::read_to_string(src.join(".env")).unwrap();
    let module = src.join("modules/SampleModule/module.json");
    let mut module_json = std::fs::read_to_string(&module).unwrap();
    edit(&mut template, &mut dotenv, &mut module_json);
    std::fs::write(tmp.path().join("deployment.template.json"), template).unwrap();
    std::fs::write(tmp.path().join(".env"), dotenv).unwrap();
    std::fs::create_dir_all(tmp.path().join("modules/SampleModule")).unwrap();
    std::fs::write(tmp.path().join("modules/SampleModule/module.json"), module_json).unwrap();
    tmp
}

/// `import --manifest FILE --out DIR/out`, none of the template variables set in the
/// (sealed) environment.
fn import_manifest(file: &Path, out: &Path) -> std::process::Output {
    common::fleetform().args(["import", "--manifest"]).arg(file).arg("--out").arg(out).output().unwrap()
}

/// Whether `text` says `want`, however miette wrapped its lines (at 100 columns, in the
/// middle of long paths too).
fn says(text: &str, want: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '|').collect::<String>();
    squash(text).contains(&squash(want))
}

#[test]
fn a_template_expands_module_json_bare_placeholders_and_dotenv_as_iotedgedev_does() {
    let tmp = template_copy(|template, dotenv, module| {
        *template = template.replace("\"timeToLiveSecs\": 7200", "\"timeToLiveSecs\": ${TTL}");
        assert!(template.contains("${TTL}"));
        *module = module.replace("\"version\": \"0.0.3\"", "\"version\": \"0.0.${BUILD}\"");
        assert!(module.contains("${BUILD}"));
        // python-dotenv: an inline comment after whitespace is not part of the value; a
        // quoted value keeps its `#`; `${VAR}` expands from earlier lines.
        *dotenv = dotenv.replace(
            "CONTAINER_REGISTRY_SERVER=corpusregistry.azurecr.io",
            "CONTAINER_REGISTRY_SERVER=corpusregistry.azurecr.io # the registry",
        );
        dotenv.push_str("MAJOR=4\nBUILD=${MAJOR}2 # build number\nTTL=600\nNOTE=\"a # b\"\n");
    });
    let out = tmp.path().join("out");
    let o = import_manifest(&tmp.path().join("deployment.template.json"), &out);
    assert!(o.status.success(), "{}", common::transcript(&o));
    let file = out.join(format!("{}.kdl", tmp.path().file_name().unwrap().to_string_lossy().to_lowercase()));
    let kdl = std::fs::read_dir(&out).unwrap().next().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap());
    let kdl = kdl.unwrap_or_else(|| panic!("nothing written to {}", file.display()));
    assert!(kdl.contains("corpusregistry.azurecr.io/samplemodule:0.0.42-amd64"), "{kdl}");
    assert!(kdl.contains("corpusregistry.azurecr.io/samplemodule:0.0.42-arm32v7"), "{kdl}");
    assert!(kdl.contains("store-and-forward ttl=600"), "{kdl}");
    assert!(!kdl.contains("# the registry") && !kdl.contains("${"), "{kdl}");
}

#[test]
fn unresolved_placeholders_in_module_json_and_outside_strings_are_all_named() {
    let tmp = template_copy(|template, dotenv, module| {
        *template = template.replace("\"timeToLiveSecs\": 7200", "\"timeToLiveSecs\": ${TTL}");
        *module = module.replace("\"version\": \"0.0.3\"", "\"version\": \"0.0.${BUILD}\"");
        dotenv.push_str("# BUILD and TTL are not set\n");
    });
    let template = std::fs::read_to_string(tmp.path().join("deployment.template.json")).unwrap();
    let ttl_line = template.lines().position(|l| l.contains("${TTL}")).unwrap() + 1;
    let ttl_col = template.lines().nth(ttl_line - 1).unwrap().find("${TTL}").unwrap() + 1;
    let out = tmp.path().join("out");
    let o = import_manifest(&tmp.path().join("deployment.template.json"), &out);
    assert!(!o.status.success(), "{}", common::transcript(&o));
    let err = common::stderr(&o);
    // module.json line 7 is `      "version": "0.0.${BUILD}",`: the placeholder at column 23.
    for want in [
        format!("${{TTL}} at {}:{ttl_line}:{ttl_col}", tmp.path().join("deployment.template.json").display()),
        format!("${{BUILD}} at {}:7:23", tmp.path().join("modules/SampleModule/module.json").display()),
        "2 placeholders cannot be resolved".to_string(),
    ] {
        assert!(says(&err, &want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("not JSON"), "{err}");
    assert!(!out.exists(), "nothing is written on error");
}

#[test]
fn an_unparsable_dotenv_line_is_named_and_nothing_is_written() {
    let tmp = template_copy(|_, dotenv, _| dotenv.push_str("SITE_NAME=\"unterminated\n"));
    let out = tmp.path().join("out");
    let o = import_manifest(&tmp.path().join("deployment.template.json"), &out);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(says(&err, ".env:7") && says(&err, "no closing quote"), "{err}");
    assert!(!out.exists());
}

/// vscode-default.json, changed by `edit`, written (as `name`) where import reads it.
fn manifest_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/manifests/vscode-default.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut doc);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    file
}

#[test]
fn a_manifest_with_a_byte_order_mark_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = manifest_variant(tmp.path(), "bom", |_| {});
    let text = std::fs::read_to_string(&plain).unwrap();
    std::fs::write(&plain, format!("\u{feff}{text}")).unwrap();
    let o = import_manifest(&plain, &tmp.path().join("out"));
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert!(tmp.path().join("out/bom.kdl").exists());
}

#[test]
fn import_refuses_what_it_cannot_write_as_a_valid_file_naming_the_problem() {
    const AGENT: &str = "/modulesContent/$edgeAgent/properties.desired";
    let (agent, hub) = (AGENT, "/modulesContent/$edgeHub/properties.desired");
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = |pointer: String, v: Value| -> Edit {
        Box::new(move |d: &mut Value| *d.pointer_mut(&pointer).unwrap() = v.clone())
    };
    fn first_module(d: &Value) -> String {
        d.pointer(&format!("{AGENT}/modules")).unwrap().as_object().unwrap().keys().next().unwrap().clone()
    }
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "co-array",
            Box::new(move |d: &mut Value| {
                let m = first_module(d);
                *d.pointer_mut(&format!("{agent}/modules/{m}/settings/createOptions")).unwrap() = json!("[]");
            }),
            vec!["settings.createOptions", "must hold a JSON object", "not an array"],
        ),
        (
            "co-number",
            Box::new(move |d: &mut Value| {
                let m = first_module(d);
                *d.pointer_mut(&format!("{agent}/modules/{m}/settings/createOptions")).unwrap() = json!("5");
            }),
            vec!["settings.createOptions", "not a number"],
        ),
        ("agent-schema-1-4", set(format!("{agent}/schemaVersion"), json!("1.4")), vec!["1.4"]),
        (
            "hub11-mqtt",
            Box::new(move |d: &mut Value| {
                let h = d.pointer_mut(hub).unwrap().as_object_mut().unwrap();
                h.insert("schemaVersion".into(), json!("1.1"));
                h.insert("mqttBroker".into(), json!({ "authorizations": [] }));
            }),
            vec!["mqtt-broker needs edgeHub schema 1.2"],
        ),
        (
            "hub11-store-limits",
            Box::new(move |d: &mut Value| {
                let h = d.pointer_mut(hub).unwrap().as_object_mut().unwrap();
                h.insert("schemaVersion".into(), json!("1.1"));
                h.insert(
                    "storeAndForwardConfiguration".into(),
                    json!({ "timeToLiveSecs": 7200, "storeLimits": { "maxSizeBytes": 100 } }),
                );
            }),
            vec!["max-size-bytes needs edgeHub schema 1.2"],
        ),
        (
            "case-twins",
            Box::new(move |d: &mut Value| {
                let m = first_module(d);
                let s = d.pointer_mut(&format!("{agent}/modules/{m}/settings")).unwrap().as_object_mut().unwrap();
                s.insert("Image".into(), json!("other:1"));
            }),
            vec!["settings.image", "\"Image\" and \"image\" differ only in case"],
        ),
        (
            "whole-priority-float",
            Box::new(|d: &mut Value| {
                *d = json!({ "id": "whole", "priority": 5.0, "targetCondition": "tags.a='b'", "labels": {}, "content": d.clone() });
            }),
            vec!["priority", "whole number", "5.0"],
        ),
        (
            "whole-priority-negative",
            Box::new(|d: &mut Value| {
                *d = json!({ "id": "neg", "priority": -1, "targetCondition": "tags.a='b'", "labels": {}, "content": d.clone() });
            }),
            vec!["priority"],
        ),
    ];
    for (name, edit, wants) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let file = manifest_variant(tmp.path(), name, edit);
        let out = tmp.path().join("out");
        let o = import_manifest(&file, &out);
        let text = common::transcript(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {text}");
        assert!(says(&text, &format!("{name}.json")), "{name}: the file is named: {text}");
        for want in wants {
            assert!(says(&text, want), "{name}: missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("no modulesContent"), "{name}: {text}");
        assert!(!out.exists(), "{name}: nothing is written");
    }
}

#[test]
fn store_limits_under_edge_hub_1_1_fail_validate_at_their_place() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("d.kdl");
    std::fs::write(
        &file,
        "deployment \"d\" {\n    priority 1\n    target \"*\"\n    runtime {\n        edge-agent image=\"a:1.5\"\n        edge-hub image=\"h:1.5\" schema=\"1.1\" {\n            store-and-forward ttl=10 max-size-bytes=100\n        }\n    }\n}\n",
    )
    .unwrap();
    let o = common::fleetform().arg("validate").arg(&file).output().unwrap();
    assert!(!o.status.success());
    let text = common::transcript(&o);
    assert!(says(&text, "max-size-bytes needs edgeHub schema 1.2 or later (this edge-hub has 1.1)"), "{text}");
    assert!(text.contains("d.kdl:7:"), "{text}");
}

#[test]
fn hub_import_skips_deployments_it_cannot_write_validly_and_says_why() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/manifests/vscode-default.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let config = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut mc = Value::Object(modules_content(&doc));
        edit(&mut mc);
        json!({
            "id": id, "schemaVersion": "1.0", "labels": {}, "content": { "modulesContent": mc },
            "targetCondition": "tags.a='b'", "createdTimeUtc": "2025-01-01T00:00:00Z",
            "lastUpdatedTimeUtc": "2025-01-01T00:00:00Z", "priority": 5, "etag": "MQ==",
            "metrics": { "results": {}, "queries": {} }
        })
    };
    let agent = "/$edgeAgent/properties.desired";
    let configs = vec![
        config("good", &|_| {}),
        config("bad-co", &|mc| {
            let modules = mc.pointer_mut(&format!("{agent}/modules")).unwrap().as_object_mut().unwrap();
            let m = modules.values_mut().next().unwrap();
            m["settings"]["createOptions"] = json!("[]");
        }),
        config("hub11-limits", &|mc| {
            let h = mc.pointer_mut("/$edgeHub/properties.desired").unwrap().as_object_mut().unwrap();
            h.insert("schemaVersion".into(), json!("1.1"));
            h.insert(
                "storeAndForwardConfiguration".into(),
                json!({ "timeToLiveSecs": 10, "storeLimits": { "maxSizeBytes": 100 } }),
            );
        }),
    ];
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("configurations.json"), serde_json::to_string(&configs).unwrap()).unwrap();
    std::fs::write(state.path().join("devices.json"), "[]").unwrap();
    std::fs::write(state.path().join("modules.json"), "[]").unwrap();
    let emu = common::EmulatorProcess::start(state.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("deployments");
    let o = common::fleetform()
        .arg("import")
        .args(["--hub", emu.connection.as_str(), "--endpoint", emu.url.as_str()])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(says(&err, "skipped bad-co:") && says(&err, "settings.createOptions: must hold a JSON object"), "{err}");
    assert!(says(&err, "skipped hub11-limits:") && says(&err, "max-size-bytes needs edgeHub schema 1.2"), "{err}");
    assert!(err.contains("1 deployment imported"), "{err}");
    let written: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(written, ["good.kdl"]);
}
