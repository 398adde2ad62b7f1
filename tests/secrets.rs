//! No secret leaves fleetform (issue #11). Each test plants distinctive values on the hub
//! (the hub's old token and registry passwords) and in the environment (the declared
//! secrets), runs the real binary and asserts that no byte of stdout, stderr or any file
//! it wrote holds one of them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{EXAMPLE_DEPLOYMENTS, EXAMPLE_ENV, fleetform, with_example_env};
use serde_json::Value;

/// Planted on the hub: the value conference-camera's deployed `API_TOKEN` holds, and
/// every registry password the hub's configurations hold.
const HUB_TOKEN: &str = "OLD_TOKEN_123-hub-7c1q";
const HUB_PASSWORD: &str = "hub-registry-pw-3k9v";
/// Planted in a module twin only (a registry password the twin still carries).
const TWIN_PASSWORD: &str = "twin-only-pw-8m2d";
/// A conference-room device: both camera deployments and the base target it.
const DEVICE: &str = "b43-f2-conf-000188";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deployments() -> PathBuf {
    root().join(EXAMPLE_DEPLOYMENTS)
}

/// Every value that must never be shown: the hub's and the environment's.
fn forbidden() -> Vec<&'static str> {
    let mut out = vec![HUB_TOKEN, HUB_PASSWORD, TWIN_PASSWORD];
    out.extend(EXAMPLE_ENV.iter().map(|(_, v)| *v));
    out
}

fn set_env_token(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "API_TOKEN" {
                    child["value"] = Value::String(HUB_TOKEN.into());
                } else if k == "password" && child.is_string() {
                    *child = Value::String(HUB_PASSWORD.into());
                } else {
                    set_env_token(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(set_env_token),
        _ => {}
    }
}

/// A copy of the example hub with the planted values.
fn planted_hub() -> tempfile::TempDir {
    let dir = common::campus_hub_copy();
    let path = dir.path().join("configurations.json");
    let mut configs: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    set_env_token(&mut configs);
    std::fs::write(&path, serde_json::to_string_pretty(&configs).unwrap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(HUB_TOKEN) && text.contains(HUB_PASSWORD), "the plant took");

    let path = dir.path().join("modules.json");
    let mut modules: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    modules[0]["properties"]["desired"]["runtime"]["settings"]["registryCredentials"]["old"] =
        serde_json::json!({"address": "old.azurecr.io", "username": "old", "password": TWIN_PASSWORD});
    std::fs::write(&path, serde_json::to_string_pretty(&modules).unwrap()).unwrap();
    dir
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in forbidden() {
        assert!(!text.contains(secret), "{what} shows the secret {secret}:\n{text}");
    }
}

fn assert_output_clean(what: &str, o: &Output) {
    assert_clean(&format!("{what} (stdout)"), &o.stdout);
    assert_clean(&format!("{what} (stderr)"), &o.stderr);
}

/// Every file under `dir`, recursively.
fn assert_files_clean(what: &str, dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            assert_files_clean(what, &entry.path());
        } else {
            assert_clean(&format!("{what}: {}", entry.path().display()), &std::fs::read(entry.path()).unwrap());
        }
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn run(hub: &Path, args: &[&str]) -> Output {
    let mut cmd = fleetform();
    with_example_env(&mut cmd);
    cmd.args(args).arg("--hub").arg(hub).output().unwrap()
}

#[test]
fn plan_explain_and_status_never_show_the_hubs_or_the_declared_secrets() {
    let hub = planted_hub();
    let out_dir = tempfile::tempdir().unwrap();
    let plan_file = out_dir.path().join("plan.json");
    let d = deployments();
    let d = d.to_str().unwrap();
    let plan_args: [&[&str]; 5] = [
        &["plan", d],
        &["plan", "--format", "markdown", d],
        &["plan", "--format", "json", d],
        &["plan", "--diff", d],
        &["plan", "--out", plan_file.to_str().unwrap(), d],
    ];
    for args in plan_args {
        let o = run(hub.path(), args);
        assert!(o.status.success(), "{args:?}: {}", common::transcript(&o));
        assert_output_clean(&format!("{args:?}"), &o);
    }
    // The old token changed: the plan must say so, masked on both sides.
    let o = run(hub.path(), &["plan", d]);
    assert!(
        common::stdout(&o).contains("env.API_TOKEN: (sensitive value changed) → (sensitive value changed)"),
        "{}",
        common::transcript(&o)
    );
    assert_files_clean("plan --out", out_dir.path());
    #[cfg(unix)]
    assert_eq!(mode(&plan_file), 0o600, "a saved plan is owner-only");

    for args in [
        &["explain", DEVICE, d][..],
        &["explain", "--format", "json", DEVICE, d],
        &["explain", "--current", DEVICE, d],
        &["explain", "--current", "--format", "json", DEVICE, d],
        &["status"],
        &["status", "--format", "json"],
    ] {
        let o = run(hub.path(), args);
        assert!(o.status.success(), "{args:?}: {}", common::transcript(&o));
        assert_output_clean(&format!("{args:?}"), &o);
    }
    let o = run(hub.path(), &["explain", "--current", "--format", "json", DEVICE, d]);
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    let env = &json["manifest"]["modules"]["OccupancyCamera"]["value"]["env"]["API_TOKEN"]["value"];
    assert_eq!(env, &Value::String("(sensitive)".into()), "{json:#}");
}

#[test]
fn apply_text_and_json_never_show_the_hubs_or_the_declared_secrets() {
    let state = planted_hub();
    let server = common::EmulatorProcess::start(state.path(), &[]);
    for format in ["text", "json"] {
        let mut cmd = fleetform();
        with_example_env(&mut cmd);
        let o = cmd
            .args(["apply", "--auto-approve", "--timeout", "60s", "--format", format])
            .arg(deployments())
            .args(["--hub", &server.connection, "--endpoint", &server.url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", common::transcript(&o));
        assert_output_clean(&format!("apply --format {format}"), &o);
    }
}

#[test]
fn import_writes_secret_looking_values_as_secret_env_references() {
    let hub = planted_hub();
    let out = tempfile::tempdir().unwrap();
    let o = run(hub.path(), &["import", "--out", out.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_output_clean("import", &o);
    assert_files_clean("import", out.path());
    let camera = std::fs::read_to_string(out.path().join("conference-camera.kdl")).unwrap();
    assert!(camera.contains("API_TOKEN=(secret-env)\"API_TOKEN\""), "{camera}");
    assert!(common::stderr(&o).contains("API_TOKEN"), "lists the variable to set: {}", common::transcript(&o));
}

#[test]
fn snapshots_are_owner_only_and_redacted_ones_hold_no_secret() {
    let hub = planted_hub();
    let out = tempfile::tempdir().unwrap();
    let clear = out.path().join("clear");
    let o = run(hub.path(), &["snapshot", "--out", clear.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_output_clean("snapshot", &o);
    assert!(common::stderr(&o).contains("owner-only (0700, files 0600)"), "{}", common::transcript(&o));
    #[cfg(unix)]
    {
        assert_eq!(mode(&clear), 0o700);
        for f in std::fs::read_dir(&clear).unwrap() {
            assert_eq!(mode(&f.unwrap().path()), 0o600);
        }
    }

    let redacted = out.path().join("redacted");
    let o = run(hub.path(), &["snapshot", "--redact", "--out", redacted.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_output_clean("snapshot --redact", &o);
    assert_files_clean("snapshot --redact", &redacted);
    #[cfg(unix)]
    assert_eq!(mode(&redacted), 0o700);

    // A redacted snapshot still plans; what it withheld reads as unknown, never as a value.
    let d = deployments();
    let o = run(&redacted, &["plan", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_output_clean("plan on a redacted snapshot", &o);
    assert!(
        common::stdout(&o).contains("env.API_TOKEN: (sensitive, not in the redacted snapshot)"),
        "{}",
        common::transcript(&o)
    );
}

const KEY: &str = "c2VjcmV0LWtleS1ub3QtdG8tYmUtc2hvd24tOTk0Mg==";

#[test]
fn connection_string_errors_name_the_part_and_never_echo_the_key() {
    let cases: Vec<(String, &str)> = vec![
        (format!("SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"), "lacks HostName"),
        (format!("HostName = ;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"), "lacks HostName"),
        (format!("HostName=h.azure-devices.net {KEY};SharedAccessKeyName=a;SharedAccessKey={KEY}"), "not a host name"),
        (format!("HostName=h.azure-devices.net;SharedAccessKey={KEY}"), "lacks SharedAccessKeyName"),
        // A key split off by a stray `;`: without its `=` padding it is no Name=value part.
        (
            format!("HostName=h.azure-devices.net;{};SharedAccessKeyName=a", KEY.trim_end_matches('=')),
            "part 2 is not of the form Name=value",
        ),
        (format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey={KEY}"), "Event Hubs"),
        (format!("sharedaccesskey={KEY}"), "lacks HostName"),
        (format!("key={KEY}"), "not a connection string"),
    ];
    let fragment = &KEY[..12];
    for (text, expected) in &cases {
        let mut flag = fleetform();
        flag.args(["status", "--hub", text]);
        let mut env_var = fleetform();
        env_var.env("IOTHUB_CONNECTION_STRING", text).arg("status");
        let mut ff_hub = fleetform();
        ff_hub.env("FLEETFORM_HUB", text).arg("status");
        for (how, cmd) in
            [("--hub", &mut flag), ("IOTHUB_CONNECTION_STRING", &mut env_var), ("FLEETFORM_HUB", &mut ff_hub)]
        {
            let o = cmd.output().unwrap();
            let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
            assert!(!o.status.success(), "{how} {expected}: {all}");
            assert!(!all.contains(fragment), "{how}: the key is echoed: {all}");
            assert!(all.contains(expected), "{how}: expected \"{expected}\": {all}");
        }
    }
}

/// Secrets of every JSON type, planted at sensitive places of conference-camera on the
/// hub: a numeric env token, twin properties `password` (a number), `secrets` (an object)
/// and `tokens` (an array) under `camera`, and a credential-named twin string `apiKey`.
const TYPED_SECRETS: [&str; 6] = ["987654321", "31337", "PLANT_OBJ_11", "424242", "PLANT_ARR_12", "PLANT_TWINKEY_5"];

fn typed_hub() -> tempfile::TempDir {
    let dir = common::campus_hub_copy();
    let path = dir.path().join("configurations.json");
    let mut configs: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let camera = configs
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["labels"]["fleetform-name"] == "conference-camera")
        .expect("the example hub has conference-camera");
    let mc = &mut camera["content"]["modulesContent"];
    mc["$edgeAgent"]["properties.desired.modules.OccupancyCamera"]["env"]["API_TOKEN"]["value"] =
        serde_json::json!(987654321);
    let twin = &mut mc["OccupancyCamera"]["properties.desired.camera"];
    twin["password"] = serde_json::json!(31337);
    twin["secrets"] = serde_json::json!({"inner": "PLANT_OBJ_11", "n": 424242});
    twin["tokens"] = serde_json::json!(["PLANT_ARR_12"]);
    twin["apiKey"] = serde_json::json!("PLANT_TWINKEY_5");
    std::fs::write(&path, serde_json::to_string_pretty(&configs).unwrap()).unwrap();
    dir
}

fn assert_no_typed(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in TYPED_SECRETS {
        assert!(!text.contains(secret), "{what} shows the hub's secret {secret}:\n{text}");
    }
}

fn assert_tree_has_no_typed(what: &str, dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            assert_tree_has_no_typed(what, &entry.path());
        } else {
            assert_no_typed(&format!("{what}: {}", entry.path().display()), &std::fs::read(entry.path()).unwrap());
        }
    }
}

#[test]
fn hub_secrets_that_are_not_strings_are_masked_everywhere() {
    let hub = typed_hub();
    let d = deployments();
    let d = d.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let plan_file = out.path().join("plan.json");
    let device = "b20-f2-conf-000002";
    for args in [
        &["plan", d][..],
        &["plan", "--format", "json", d],
        &["plan", "--format", "markdown", d],
        &["plan", "--diff", d],
        &["plan", "--out", plan_file.to_str().unwrap(), d],
        &["explain", device, d],
        &["explain", "--format", "json", device, d],
        &["explain", "--current", device, d],
        &["explain", "--current", "--format", "json", device, d],
    ] {
        let o = run(hub.path(), args);
        assert!(o.status.success(), "{args:?}: {}", common::transcript(&o));
        assert_no_typed(&format!("{args:?} (stdout)"), &o.stdout);
        assert_no_typed(&format!("{args:?} (stderr)"), &o.stderr);
    }
    assert_tree_has_no_typed("plan --out", out.path());
    // The numeric token changed to the declared string: shown as a change of a secret.
    let o = run(hub.path(), &["plan", d]);
    assert!(
        common::stdout(&o).contains("env.API_TOKEN: (sensitive value changed) → (sensitive value changed)"),
        "{}",
        common::transcript(&o)
    );

    let snap = out.path().join("redacted");
    let o = run(hub.path(), &["snapshot", "--redact", "--out", snap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_tree_has_no_typed("snapshot --redact", &snap);

    let imported = out.path().join("imported");
    let o = run(hub.path(), &["import", "--out", imported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert_no_typed("import (stderr)", &o.stderr);
    assert_tree_has_no_typed("import", &imported);
    let camera = std::fs::read_to_string(imported.join("conference-camera.kdl")).unwrap();
    for written in [
        "API_TOKEN=(secret-env)\"API_TOKEN\"",
        "password (secret-env)\"OCCUPANCYCAMERA_PASSWORD\"",
        "apiKey (secret-env)\"OCCUPANCYCAMERA_APIKEY\"",
        "inner (secret-env)\"OCCUPANCYCAMERA_SECRETS_INNER\"",
        "- (secret-env)\"OCCUPANCYCAMERA_TOKENS_0\"",
    ] {
        assert!(camera.contains(written), "expected {written} in:\n{camera}");
    }
    assert!(common::stderr(&o).contains("OCCUPANCYCAMERA_APIKEY"), "lists the variable: {}", common::transcript(&o));
}

#[test]
fn hub_secrets_that_are_not_strings_never_show_in_apply() {
    let state = typed_hub();
    let server = common::EmulatorProcess::start(state.path(), &[]);
    for format in ["text", "json"] {
        let mut cmd = fleetform();
        with_example_env(&mut cmd);
        let o = cmd
            .args(["apply", "--auto-approve", "--timeout", "60s", "--format", format])
            .arg(deployments())
            .args(["--hub", &server.connection, "--endpoint", &server.url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", common::transcript(&o));
        assert_no_typed(&format!("apply --format {format} (stdout)"), &o.stdout);
        assert_no_typed(&format!("apply --format {format} (stderr)"), &o.stderr);
    }
}

/// A layered deployment whose credential-named env variable and twin property read the
/// environment without `(secret-env)`.
fn credential_named_env_deployment() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hk.kdl"),
        "layered \"hk\" {\n    priority 5\n    target \"tags.roomtype='conference'\"\n    module \"M\" image=\"x.azurecr.io/m:1\" {\n        env DB_PASSWORD=(env)\"DBPW\" PLAIN=(env)\"PLAINV\"\n        twin path=\"camera\" { apiKey (env)\"TWK\" }\n    }\n}\n",
    )
    .unwrap();
    dir
}

fn render_hk(dir: &Path, db: &str, key: &str, extra: &[&str]) -> Output {
    fleetform()
        .env("DBPW", db)
        .env("TWK", "PLANT_TWK_77")
        .env("PLAINV", "plain")
        .env("FLEETFORM_HASH_KEY", key)
        .args(["render", "hk"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn rendered_id(o: &Output) -> String {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", common::transcript(o)));
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn credential_named_env_values_are_masked_and_hashed_only_under_the_key() {
    let dir = credential_named_env_deployment();
    let (k1, k2) = ("first-hash-key-0123456789abcdef0123", "second-hash-key-0123456789abcdef012");
    let o = render_hk(dir.path(), "PLANT_DBPW_66", k1, &[]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(!text.contains("PLANT_DBPW_66") && !text.contains("PLANT_TWK_77"), "render masks them: {text}");
    assert!(text.contains("plain"), "a plain setting stays visible: {text}");
    // Keyed: the same secret under two keys gives two ids, so without the key the id
    // tests no guess; a rotated secret still changes the id.
    let id = rendered_id(&o);
    assert_ne!(id, rendered_id(&render_hk(dir.path(), "PLANT_DBPW_66", k2, &[])), "the hash must be keyed");
    assert_ne!(id, rendered_id(&render_hk(dir.path(), "rotated", k1, &[])), "a new secret, a new id");
    let o = render_hk(dir.path(), "PLANT_DBPW_66", k1, &["--show-secrets"]);
    assert!(common::stdout(&o).contains("PLANT_DBPW_66"), "--show-secrets reveals: {}", common::transcript(&o));
    // And a hash key is required, as for any secret.
    let o = fleetform()
        .env("DBPW", "x")
        .env("TWK", "y")
        .env("PLAINV", "z")
        .args(["render", "hk"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success() && common::stderr(&o).contains("FLEETFORM_HASH_KEY"), "{}", common::transcript(&o));
}

#[test]
fn a_connection_string_given_as_a_path_or_revision_is_refused_unechoed() {
    let cs = format!("HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
    let hub = common::campus_hub_copy();
    let hub = hub.path().to_str().unwrap();
    let d = deployments();
    let d = d.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["plan", &cs, "--hub", hub], "not a file or folder"),
        (vec!["validate", &cs], "not a file or folder"),
        (vec!["explain", DEVICE, &cs, "--hub", hub], "not a file or folder"),
        (vec!["plan", "--ref", &cs, d, "--hub", hub], "not a git revision"),
        (vec!["import", "--manifest", &cs, "--out", "x"], "not a file or folder"),
        (vec!["import", "--hub", hub, "--out", &cs], "not an output path"),
        (vec!["snapshot", "--hub", hub, "--out", &cs], "not an output path"),
    ];
    for (args, expected) in cases {
        let o = fleetform().current_dir(work.path()).args(&args).output().unwrap();
        let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
        assert!(!o.status.success(), "{args:?}: {all}");
        assert!(!all.contains(&KEY[..12]) && !all.contains("iothubowner"), "{args:?} echoes it: {all}");
        assert!(all.contains(expected) && all.contains("--hub"), "{args:?}: expected \"{expected}\": {all}");
    }
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0, "nothing created");
}

#[test]
fn query_rows_mask_registry_passwords_and_credential_named_values() {
    let hub = planted_hub();
    let text = "SELECT properties.desired FROM devices.modules WHERE moduleId='$edgeAgent'";
    for format in ["text", "json"] {
        let o = run(hub.path(), &["query", text, "--format", format]);
        assert!(o.status.success(), "{format}: {}", common::transcript(&o));
        assert_output_clean(&format!("query --format {format}"), &o);
        let out = common::stdout(&o);
        assert!(out.contains("(sensitive)") && out.contains("old.azurecr.io"), "masked, the rest kept: {out}");
    }
}

#[test]
fn credential_named_docker_env_in_create_options_is_masked_and_imported_as_secret_env() {
    let dir = common::campus_hub_copy();
    let path = dir.path().join("configurations.json");
    let mut configs: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let camera = configs
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["labels"]["fleetform-name"] == "conference-camera")
        .unwrap();
    let settings = &mut camera["content"]["modulesContent"]["$edgeAgent"]["properties.desired.modules.OccupancyCamera"]
        ["settings"];
    settings["createOptions"] =
        Value::String(r#"{"Env":["DB_PASSWORD=PLANT_CO_8","MODE=plain-co"],"HostConfig":{"Privileged":false}}"#.into());
    std::fs::write(&path, serde_json::to_string_pretty(&configs).unwrap()).unwrap();
    let d = deployments();
    let d = d.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let plan_file = out.path().join("plan.json");
    for args in [
        &["plan", d][..],
        &["plan", "--format", "json", d],
        &["plan", "--diff", d],
        &["plan", "--out", plan_file.to_str().unwrap(), d],
        &["explain", "--current", "b20-f2-conf-000002", d],
        &["explain", "--current", "--format", "json", "b20-f2-conf-000002", d],
    ] {
        let o = run(dir.path(), args);
        assert!(o.status.success(), "{args:?}: {}", common::transcript(&o));
        let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
        assert!(!all.contains("PLANT_CO_8"), "{args:?} shows it: {all}");
    }
    let o = run(dir.path(), &["plan", d]);
    assert!(common::stdout(&o).contains("plain-co"), "the rest of createOptions stays visible: {}", common::stdout(&o));
    assert!(!std::fs::read_to_string(&plan_file).unwrap().contains("PLANT_CO_8"));
    let imported = out.path().join("imported");
    let o = run(dir.path(), &["import", "--out", imported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(!all.contains("PLANT_CO_8"), "{all}");
    let camera = std::fs::read_to_string(imported.join("conference-camera.kdl")).unwrap();
    assert!(!camera.contains("PLANT_CO_8"), "{camera}");
    assert!(camera.contains("DB_PASSWORD=(secret-env)\"DB_PASSWORD\"") && camera.contains("plain-co"), "{camera}");
}
