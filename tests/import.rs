//! `fleetform import`: a hub's deployments round-trip through KDL (against the emulator,
//! over REST) with adoption as a label-only update, and a VS Code / iotedgedev
//! `deployment.json` becomes KDL with `(env)` references.

mod common;

use std::path::Path;
use std::process::Output;

use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Hub, HubWrite};
use fleetform::manifest::{MapEnv, SecretMode};
use fleetform::plan::{ActionKind, PlanOptions, StepOp};
use serde_json::Value;

/// `fleetform hub serve` on a temp copy of the example hub; killed on drop.
struct Emulator {
    _process: common::EmulatorProcess,
    url: String,
    connection: String,
    _state: tempfile::TempDir,
}

fn emulator() -> Emulator {
    let state = common::campus_hub_copy();
    let process = common::EmulatorProcess::start(state.path(), &[]);
    Emulator { url: process.url.clone(), connection: process.connection.clone(), _process: process, _state: state }
}

impl Emulator {
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = common::sealed();
        cmd.args(args).args(["--hub", &self.connection, "--endpoint", &self.url]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn hub(&self) -> RestHub {
        let conn: ConnectionString = self.connection.parse().unwrap();
        RestHub::new(conn, RestOptions { endpoint: Some(self.url.clone()), progress: false, ..Default::default() })
            .unwrap()
    }
}

/// The secrets the example hub holds, under the names import chose.
const SECRETS: &[(&str, &str)] = &[
    ("API_TOKEN", "demo"),
    ("CONTOSO_PASSWORD", "demo"),
    ("VISION_PASSWORD", "demo"),
    ("FLEETFORM_HASH_KEY", "demo-hash-key-for-the-example-hub"),
];

fn plan_of(dir: &Path, hub: &dyn Hub) -> fleetform::plan::Plan {
    let ws = fleetform::spec::Workspace::load(&[dir.to_path_buf()]).unwrap();
    assert!(ws.problems.is_empty(), "{:?}", ws.problems);
    let env = MapEnv(SECRETS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let rendered = fleetform::manifest::render_all(&ws.deployments, &env, SecretMode::Reveal).unwrap();
    let current = hub.configurations().unwrap();
    fleetform::plan::plan(rendered, current, &fleetform::hub::Fleet(hub), &PlanOptions::default()).unwrap()
}

#[test]
fn hub_import_round_trips_and_adopts_in_place() {
    let emu = emulator();
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("deployments");
    let out = emu.run(&["import", "--out", dir.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set these before plan/apply: API_TOKEN, CONTOSO_PASSWORD, VISION_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("demo"), "secret values are never printed: {stderr}");
    let hotfix = std::fs::read_to_string(dir.join("manual-hotfix.kdl")).unwrap();
    assert!(hotfix.contains("adopt \"manual-hotfix\""), "{hotfix}");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("\"demo\""), "registry passwords and the API token stay out: {text}");
        assert_eq!(fleetform::spec::fmt::format_source(&text).unwrap(), text, "written formatted");
    }

    // The CLI plan: nothing created or replaced, only the adoption's label update.
    let out = emu.run(&["plan", dir.to_str().unwrap(), "--format", "json"], SECRETS);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &plan["summary"];
    assert_eq!(summary["create"], 0, "{summary}");
    assert_eq!(summary["replace"], 0, "{summary}");
    assert_eq!(summary["delete"], 0, "{summary}");
    // conference-camera is on the example hub under hash scheme 1: relabelled in place too.
    assert_eq!(summary["update"], 2, "{summary}");
    assert_eq!(summary["devices_changed"], 0, "{summary}");
    let updated: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "update")
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["conference-camera", "manual-hotfix"]);
    let update = plan["actions"].as_array().unwrap().iter().find(|a| a["name"] == "manual-hotfix").unwrap();
    assert_eq!(update["name"], "manual-hotfix");
    assert_eq!(update["after"], "manual-hotfix", "the hub object keeps its id");
    let fields: Vec<&str> =
        update["field_changes"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["labels.fleetform-hash-scheme", "labels.fleetform-name"]);

    // Carrying the update out (as apply does: the declared object, If-Match) is accepted
    // by the hub as a mutable-field change, and the next plan is empty.
    let hub = emu.hub();
    let plan = plan_of(&dir, &hub);
    assert_eq!(plan.steps.len(), 2);
    for step in &plan.steps {
        assert_eq!(step.op, StepOp::Update);
        let declared = plan.declared.iter().find(|r| r.configuration.id == step.id).unwrap();
        hub.update_configuration(&declared.configuration, step.etag.as_ref().unwrap()).unwrap();
    }
    assert!(plan.steps.iter().any(|s| s.id == "manual-hotfix"));
    let again = plan_of(&dir, &hub);
    assert!(!again.has_changes(), "{:?}", again.actions);
    let hotfix = again.actions.iter().find(|a| a.name == "manual-hotfix").unwrap();
    assert_eq!(hotfix.action, ActionKind::NoOp);
    assert!(again.actions.iter().all(|a| a.action != ActionKind::Unmanaged), "{:?}", again.actions);
}

/// An iotedgedev-style template: createOptions as objects (one long enough to be split
/// on the hub), edgeHub's as a string already split in two, `${VAR}` placeholders.
fn template() -> Value {
    let labels: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("com.example.label{i:02}"), Value::String(format!("value-{i:02}-padding")))).collect();
    let hub_options = r#"{"HostConfig":{"PortBindings":{"5671/tcp":[{"HostPort":"5671"}],"8883/tcp":[{"HostPort":"8883"}],"443/tcp":[{"HostPort":"443"}]}}}"#;
    let (a, b) = hub_options.split_at(40);
    serde_json::json!({
        "$schema-template": "4.0.0",
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "runtime": {
                        "type": "docker",
                        "settings": {
                            "minDockerVersion": "v1.25",
                            "loggingOptions": "",
                            "registryCredentials": {
                                "myacr": {
                                    "username": "${CONTAINER_REGISTRY_USERNAME}",
                                    "password": "${CONTAINER_REGISTRY_PASSWORD}",
                                    "address": "${CONTAINER_REGISTRY_ADDRESS}"
                                }
                            }
                        }
                    },
                    "systemModules": {
                        "edgeAgent": {
                            "type": "docker",
                            "settings": { "image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": {} }
                        },
                        "edgeHub": {
                            "type": "docker",
                            "status": "running",
                            "restartPolicy": "always",
                            "settings": {
                                "image": "mcr.microsoft.com/azureiotedge-hub:1.5",
                                "createOptions": a,
                                "createOptions01": b
                            }
                        }
                    },
                    "modules": {
                        "SensorModule": {
                            "version": "1.0",
                            "type": "docker",
                            "status": "running",
                            "restartPolicy": "always",
                            "env": { "API_KEY": { "value": "${SENSOR_API_KEY}" }, "MODE": { "value": "fast" } },
                            "settings": {
                                "image": "${MODULES.SensorModule}",
                                "createOptions": { "Labels": labels, "HostConfig": { "Privileged": true } }
                            }
                        }
                    }
                }
            },
            "$edgeHub": {
                "properties.desired": {
                    "schemaVersion": "1.2",
                    "routes": { "sensorToUpstream": "FROM /messages/modules/SensorModule/outputs/* INTO $upstream" },
                    "storeAndForwardConfiguration": { "timeToLiveSecs": 7200 }
                }
            },
            "SensorModule": {
                "properties.desired": { "endpoint": "${SENSOR_ENDPOINT}", "interval": 30 }
            }
        }
    })
}

#[test]
fn manifest_import_converts_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("deployment.template.json");
    let tpl = template();
    std::fs::write(&file, serde_json::to_string_pretty(&tpl).unwrap()).unwrap();
    // iotedgedev's module folder: ${MODULES.SensorModule} is its repository:version-platform.
    let module_dir = tmp.path().join("modules/SensorModule");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(
        module_dir.join("module.json"),
        r#"{"image": {"repository": "myacr.azurecr.io/sensor", "tag": {"version": "1.0.0", "platforms": {"amd64": "./Dockerfile"}}}}"#,
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let out = common::sealed()
        .args(["import", "--manifest"])
        .arg(&file)
        .args(["--name", "Sensor-App", "--priority", "5", "--target", "tags.environment='dev'", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("named it \"sensor-app\""), "{stderr}");
    for var in ["CONTAINER_REGISTRY_PASSWORD", "SENSOR_API_KEY", "SENSOR_ENDPOINT"] {
        assert!(stderr.contains(var), "{var} listed: {stderr}");
    }
    let text = std::fs::read_to_string(out_dir.join("sensor-app.kdl")).unwrap();
    for needle in [
        "deployment \"sensor-app\"",
        "priority 5",
        "password=(env)\"CONTAINER_REGISTRY_PASSWORD\"",
        "address=(env)\"CONTAINER_REGISTRY_ADDRESS\"",
        "image=\"myacr.azurecr.io/sensor:1.0.0-amd64\"",
        "API_KEY=(env)\"SENSOR_API_KEY\"",
        "endpoint (env)\"SENSOR_ENDPOINT\"",
        "create-options {",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    // Rendered with the variables set, it is the template with the placeholders filled
    // in and the createOptions pieces the hub expects.
    let env = [
        ("CONTAINER_REGISTRY_USERNAME", "user"),
        ("CONTAINER_REGISTRY_PASSWORD", "pw"),
        ("CONTAINER_REGISTRY_ADDRESS", "myacr.azurecr.io"),
        ("SENSOR_API_KEY", "k"),
        ("SENSOR_ENDPOINT", "https://example.test"),
        ("FLEETFORM_HASH_KEY", "a-hash-key-for-the-import-tests-000"),
    ];
    let mut cmd = common::sealed();
    cmd.args(["render", "sensor-app", "--show-secrets"]).arg(&out_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["targetCondition"], "tags.environment='dev'");
    let desired = &config["content"]["modulesContent"]["$edgeAgent"]["properties.desired"];
    let sensor = &desired["modules"]["SensorModule"];
    assert_eq!(sensor["settings"]["image"], "myacr.azurecr.io/sensor:1.0.0-amd64");
    assert_eq!(sensor["env"]["API_KEY"]["value"], "k");
    assert_eq!(desired["runtime"]["settings"]["registryCredentials"]["myacr"]["password"], "pw");
    let settings = sensor["settings"].as_object().unwrap();
    assert!(settings.contains_key("createOptions01"), "long createOptions are split again: {settings:?}");
    let joined = fleetform::manifest::join_create_options(settings).unwrap().unwrap();
    let original = &tpl["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["SensorModule"]["settings"]["createOptions"];
    assert_eq!(&serde_json::from_str::<Value>(&joined).unwrap(), original);
    let hub_settings = desired["systemModules"]["edgeHub"]["settings"].as_object().unwrap();
    let hub_joined = fleetform::manifest::join_create_options(hub_settings).unwrap().unwrap();
    let hub_value: Value = serde_json::from_str(&hub_joined).unwrap();
    assert_eq!(hub_value["HostConfig"]["PortBindings"]["443/tcp"][0]["HostPort"], "443");
    let twin = &config["content"]["modulesContent"]["SensorModule"]["properties.desired"];
    assert_eq!(twin["endpoint"], "https://example.test");
    assert_eq!(twin["interval"], 30);
}

#[test]
fn manifest_import_rejects_what_is_not_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.json");
    std::fs::write(&file, r#"{"modulesContent": {"$edgeAgent": {}}}"#).unwrap();
    let out = common::sealed()
        .args(["import", "--manifest"])
        .arg(&file)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no modulesContent with $edgeAgent"), "{stderr}");
    std::fs::write(&file, "{not json").unwrap();
    let out = common::sealed()
        .args(["import", "--manifest"])
        .arg(&file)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}
