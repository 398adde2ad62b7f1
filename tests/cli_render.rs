//! `fleetform render`: golden renders of every example deployment, checked field by field
//! against the hub's shapes (docs/hub-semantics.md#edge-content), and secrets never shown unless asked.

mod common;

use common::*;
use serde_json::Value;

const NAMES: &[&str] = &["campus-base", "campus-canary", "building-monitoring", "conference-camera", "route-override"];

fn render(name: &str, extra: &[&str]) -> (std::process::Output, Value) {
    let mut cmd = fleetform();
    with_example_env(&mut cmd).args(["render", name, EXAMPLE_DEPLOYMENTS]).args(extra);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v = serde_json::from_slice(&out.stdout).unwrap();
    (out, v)
}

fn obj<'a>(v: &'a Value, what: &str) -> &'a serde_json::Map<String, Value> {
    v.as_object().unwrap_or_else(|| panic!("{what} is not an object: {v}"))
}

/// Module JSON as the agent's schema requires it.
fn check_module(m: &Value, what: &str, system_agent: bool) {
    let m = obj(m, what);
    assert_eq!(m["type"], "docker", "{what}.type");
    if !system_agent {
        assert!(["running", "stopped"].contains(&m["status"].as_str().unwrap()), "{what}.status");
        assert!(
            ["never", "on-failure", "on-unhealthy", "always"].contains(&m["restartPolicy"].as_str().unwrap()),
            "{what}.restartPolicy"
        );
    }
    let settings = obj(&m["settings"], &format!("{what}.settings"));
    assert!(settings["image"].is_string(), "{what}.settings.image");
    let mut joined = String::new();
    for (k, v) in settings {
        if let Some(n) = k.strip_prefix("createOptions") {
            assert!(n.is_empty() || (n.len() == 2 && n.parse::<u32>().is_ok()), "{what}: piece {k}");
            let s = v.as_str().unwrap();
            assert!(s.chars().count() <= 512, "{what}.{k} is over 512 characters");
            joined.push_str(s);
        }
    }
    if !joined.is_empty() {
        let parsed: Value =
            serde_json::from_str(&joined).unwrap_or_else(|e| panic!("{what} createOptions is not JSON: {e}"));
        assert!(parsed.is_object());
    }
    if let Some(env) = m.get("env") {
        for (k, v) in obj(env, "env") {
            assert!(!k.contains(['.', '$', '#', '+', ' ']), "{what}: env name {k}");
            let val = &obj(v, k)["value"];
            assert!(val.is_string() || val.is_number() || val.is_boolean(), "{what}.env.{k}.value");
        }
    }
}

#[test]
fn standard_renders_match_the_hub_shape() {
    for name in ["campus-base", "campus-canary"] {
        let (_, c) = render(name, &[]);
        let id = c["id"].as_str().unwrap();
        assert!(id.starts_with(&format!("{name}-")) && id.len() == name.len() + 9, "{id}");
        assert!(id[name.len() + 1..].chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()));
        assert_eq!(c["labels"]["fleetform-name"], *name);
        assert!(c["labels"]["fleetform-hash"].as_str().unwrap().starts_with(&id[name.len() + 1..]));
        assert!(c["priority"].is_i64());
        let mc = obj(&c["content"]["modulesContent"], "modulesContent");
        let agent = obj(&mc["$edgeAgent"], "$edgeAgent");
        assert_eq!(
            agent.keys().collect::<Vec<_>>(),
            ["properties.desired"],
            "standard: $edgeAgent holds properties.desired whole"
        );
        let desired = &agent["properties.desired"];
        assert!(["1.0", "1.1"].contains(&desired["schemaVersion"].as_str().unwrap()));
        assert_eq!(desired["runtime"]["type"], "docker");
        assert!(desired["runtime"]["settings"]["minDockerVersion"].is_string());
        assert!(desired["runtime"]["settings"]["loggingOptions"].is_string());
        let creds = obj(&desired["runtime"]["settings"]["registryCredentials"], "registryCredentials");
        for (rn, r) in creds {
            for f in ["username", "password", "address"] {
                assert!(r[f].is_string(), "registry {rn}.{f}");
            }
        }
        check_module(&desired["systemModules"]["edgeAgent"], "edgeAgent", true);
        check_module(&desired["systemModules"]["edgeHub"], "edgeHub", false);
        for (mn, m) in obj(&desired["modules"], "modules") {
            assert!(mn.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'));
            check_module(m, mn, false);
        }
        let hub = obj(&mc["$edgeHub"]["properties.desired"], "$edgeHub");
        assert!(["1.0", "1.1", "1.2", "1.3"].contains(&hub["schemaVersion"].as_str().unwrap()));
        assert!(hub["storeAndForwardConfiguration"]["timeToLiveSecs"].is_u64());
        for (rn, r) in obj(&hub["routes"], "routes") {
            match r {
                Value::String(s) => assert!(s.starts_with("FROM "), "{rn}"),
                Value::Object(o) => {
                    assert!(o["route"].is_string());
                    assert!(o["priority"].as_u64().unwrap() <= 9);
                    assert!(o["timeToLiveSecs"].is_u64());
                }
                _ => panic!("route {rn} is neither a string nor an object"),
            }
        }
        for (twin, content) in mc.iter().filter(|(k, _)| !k.starts_with('$')) {
            assert_eq!(
                obj(content, twin).keys().collect::<Vec<_>>(),
                ["properties.desired"],
                "standard twin {twin} is whole"
            );
        }
    }
}

#[test]
fn layered_renders_use_dotted_keys() {
    for name in ["building-monitoring", "conference-camera", "route-override"] {
        let (_, c) = render(name, &[]);
        let mc = obj(&c["content"]["modulesContent"], "modulesContent");
        let agent = obj(&mc["$edgeAgent"], "$edgeAgent must exist");
        assert!(!agent.contains_key("properties.desired"), "layered: no whole desired document");
        for (k, v) in agent {
            if let Some(m) = k.strip_prefix("properties.desired.modules.") {
                check_module(v, m, false);
            } else {
                assert!(k.starts_with("properties.desired.runtime.settings.registryCredentials."), "{k}");
            }
        }
        if let Some(hub) = mc.get("$edgeHub") {
            for k in obj(hub, "$edgeHub").keys() {
                assert!(k.starts_with("properties.desired.routes."), "{k}");
            }
        }
        for (twin, content) in mc.iter().filter(|(k, _)| !k.starts_with('$')) {
            for k in obj(content, twin).keys() {
                assert!(k == "properties.desired" || k.starts_with("properties.desired."), "{twin}: {k}");
            }
        }
    }
    let (_, camera) = render("conference-camera", &[]);
    let mc = &camera["content"]["modulesContent"];
    assert_eq!(mc["Telemetry"]["properties.desired.reporting.occupancy"]["source"], "OccupancyCamera");
    assert_eq!(mc["OccupancyCamera"]["properties.desired.camera"]["resolution"], "720p");
    let (_, ov) = render("route-override", &[]);
    assert_eq!(
        ov["content"]["modulesContent"]["$edgeHub"]["properties.desired.routes.telemetry-upstream"]["priority"],
        5
    );
}

#[test]
fn golden_renders() {
    for name in NAMES {
        let (out, _) = render(name, &[]);
        insta::assert_snapshot!(format!("render_{name}"), stdout(&out));
    }
}

#[test]
fn secrets_are_masked_unless_asked_for() {
    for name in NAMES {
        let (out, _) = render(name, &[]);
        let text = transcript(&out);
        for (_, secret) in EXAMPLE_ENV {
            assert!(!text.contains(secret), "{name} leaks a secret");
        }
    }
    let (_, base) = render("campus-base", &[]);
    let creds = &base["content"]["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]["registryCredentials"]
        ["contoso"];
    assert_eq!(creds["password"], "(sensitive)");
    let (_, shown) = render("campus-base", &["--show-secrets"]);
    let creds = &shown["content"]["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]["registryCredentials"]
        ["contoso"];
    assert_eq!(creds["password"], "acr-secret-9f3b");
    // Masking changes the output, never the id.
    assert_eq!(base["id"], shown["id"]);
    let (_, camera) = render("conference-camera", &[]);
    assert_eq!(
        camera["content"]["modulesContent"]["$edgeAgent"]["properties.desired.modules.OccupancyCamera"]["env"]["API_TOKEN"]
            ["value"],
        "(sensitive)"
    );
}

#[test]
fn a_changed_secret_changes_the_id() {
    let (_, a) = render("campus-base", &[]);
    let mut cmd = fleetform();
    with_example_env(&mut cmd).env("ACR_PASSWORD", "rotated").args(["render", "campus-base", EXAMPLE_DEPLOYMENTS]);
    let out = cmd.output().unwrap();
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(a["id"], b["id"]);
    assert!(!stdout(&out).contains("rotated"));
}

#[test]
fn missing_variable_names_itself_and_its_use() {
    let out = fleetform().args(["render", "campus-base", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("environment variable ACR_PASSWORD is not set"), "{err}");
    assert!(err.contains("examples/campus/deployments/base.kdl:9:"), "{err}");
    insta::assert_snapshot!("render_missing_env", transcript(&out));
}

#[test]
fn unknown_deployment_suggests_a_name() {
    let out = fleetform().args(["render", "campus-bse", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("did you mean `campus-base`?"), "{}", stderr(&out));
}

#[test]
fn render_refuses_an_invalid_workspace() {
    let out = fleetform().args(["render", "a", "tests/bad/status_typo.kdl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fix them before rendering"));
}

/// A reader that closes the pipe early (`fleetform query … | head -1`) ends the command
/// quietly, as with any Unix tool: no panic message, no error. The output (20,000 ids) is
/// larger than a pipe's buffer, so the write after the close really fails.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let generated =
        fleetform().args(["hub", "generate", "--devices", "20000", "--out"]).arg(dir.path()).output().unwrap();
    assert!(generated.status.success(), "{}", transcript(&generated));
    let mut child = sealed()
        .args(["query", "SELECT deviceId FROM devices", "--hub"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(status.success() || status.signal() == Some(libc_sigpipe()), "{status:?}: {err}");
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux and the BSDs
}
