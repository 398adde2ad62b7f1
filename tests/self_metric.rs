//! Issue #16, the language side: `configurations.[[$self]]` in a metric reaches the hub as
//! the deployment's real id (plan, then apply against the emulator), and the warnings of
//! what a deployment says (W015 literal id, W016 a `FROM devices` metric over module-twin
//! properties, W017 an edgeAgent older than its schema, W018 a misspelt module in a route)
//! in validate and in plan's text, markdown and JSON.

mod common;

use std::path::Path;

use common::{cli, transcript};
use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Configuration, HubRead};
use serde_json::Value;

const SELF_METRIC: &str = "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[$self]].status = 'Applied'";

fn selfcheck(image: &str) -> String {
    format!(
        r#"deployment "selfcheck" {{
    priority 1000
    target "tags.location.building='12'"
    runtime {{
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }}
    module "SimulatedTemperature" image="{image}"
    route "up" "FROM /messages/modules/SimulatedTemperature/* INTO $upstream"
    metric "applied" "{SELF_METRIC}"
}}
"#
    )
}

/// One deployment that trips each language warning once, beside `selfcheck`.
const LINT: &str = r#"deployment "lint" {
    priority 5
    target "tags.location.building='40'"
    runtime schema="1.1" {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.0.9"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "SimulatedTemperature" image="mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"
    route "typo" "FROM /messages/modules/SimulatedTemprature/* INTO $upstream"
    metric "succeeded" "SELECT deviceId FROM devices WHERE properties.reported.lastDesiredStatus.code = 200"
    metric "stale" "SELECT deviceId FROM devices.modules WHERE configurations.[[selfcheck-0123abcd]].status = 'Applied'"
}
"#;

fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

struct Server {
    _process: common::EmulatorProcess,
    url: String,
    connection: String,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = common::campus_hub_copy();
    let process = common::EmulatorProcess::start(dir.path(), &[]);
    Server { url: process.url.clone(), connection: process.connection.clone(), _process: process, _dir: dir }
}

impl Server {
    fn run(&self, args: &[&str], paths: &Path) -> std::process::Output {
        let mut cmd = cli();
        cmd.args(args).args(["--hub", &self.connection, "--endpoint", &self.url]).arg(paths);
        cmd.output().unwrap()
    }

    fn configurations(&self) -> Vec<Configuration> {
        let conn: ConnectionString = self.connection.parse().unwrap();
        RestHub::new(conn, RestOptions { endpoint: Some(self.url.clone()), progress: false, ..Default::default() })
            .unwrap()
            .configurations()
            .unwrap()
    }
}

/// IoT Edge devices of the example hub in building 12, counted from its twin file by hand
/// (a string "12": one twin holds the number 20 elsewhere, and types never compare equal).
fn building_12_edge_devices() -> i64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub/devices.json");
    let twins: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    twins
        .iter()
        .filter(|t| t.pointer("/tags/location/building") == Some(&Value::from("12")))
        .filter(|t| t.pointer("/capabilities/iotEdge") == Some(&Value::Bool(true)))
        .count() as i64
}

#[test]
fn a_self_metric_reaches_the_hub_with_the_real_id_and_follows_a_replace() {
    let server = start();
    let ws =
        workspace(&[("selfcheck.kdl", &selfcheck("mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"))]);
    let expected = building_12_edge_devices();
    assert!(expected > 0);
    for image in [
        "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
        "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.6",
    ] {
        std::fs::write(ws.path().join("selfcheck.kdl"), selfcheck(image)).unwrap();
        let plan = server.run(&["plan", "--format", "json"], ws.path());
        assert!(plan.status.success(), "{}", transcript(&plan));
        let plan_json = String::from_utf8_lossy(&plan.stdout).to_string();
        assert!(!plan_json.contains("[[$self]]"), "the plan shows the query the hub stores: {plan_json}");
        let diff = image.ends_with(":1.6").then(|| {
            let out = server.run(&["plan", "--diff"], ws.path());
            assert!(out.status.success(), "{}", transcript(&out));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(!text.contains("[[$self]]"), "{text}");
            text
        });
        let out = server.run(&["apply", "--auto-approve", "--timeout", "60s"], ws.path());
        assert!(out.status.success(), "{}", transcript(&out));
        let ours: Vec<Configuration> = server
            .configurations()
            .into_iter()
            .filter(|c| c.labels.get("fleetform-name").map(String::as_str) == Some("selfcheck"))
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        let c = &ours[0];
        let metrics = c.metrics.as_ref().expect("custom metrics");
        let id = c.id.to_string();
        assert_eq!(metrics.queries["applied"], SELF_METRIC.replace("$self", &id));
        if let Some(diff) = &diff {
            // The replace's --diff shows the metric moving from the old id to the new one.
            assert!(diff.contains(&format!("configurations.[[{id}]].status")), "{diff}");
        }
        // The hub counts the metric over the real id: every device the deployment won.
        assert_eq!(metrics.results.get("applied").copied(), Some(expected), "{id}: {metrics:?}");
    }
}

fn codes(warnings: &Value) -> Vec<String> {
    let mut v: Vec<String> =
        warnings.as_array().unwrap().iter().map(|w| w["code"].as_str().unwrap_or_default().to_string()).collect();
    v.sort();
    v
}

#[test]
fn each_language_warning_in_validate_and_in_plan_text_markdown_and_json() {
    let ws = workspace(&[("selfcheck.kdl", &selfcheck("m:1.5")), ("lint.kdl", LINT)]);
    let expected = ["W015", "W016", "W017", "W018"];

    let out = cli().args(["validate", "--format", "json"]).arg(ws.path()).output().unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(codes(&json["warnings"]), expected, "{json}");
    let out = cli().arg("validate").arg(ws.path()).output().unwrap();
    let text = transcript(&out);
    for needle in [
        "W015 `lint` metric `stale` names `selfcheck-0123abcd` literally",
        "W016 `lint` metric `succeeded` reads `properties.reported.lastDesiredStatus.code` FROM devices",
        "FROM devices.modules WHERE moduleId = '$edgeAgent' AND",
        "W017 `lint` pairs edgeAgent image `mcr.microsoft.com/azureiotedge-agent:1.0.9` with $edgeAgent schemaVersion 1.1",
        "W018 `lint` route `typo` names module `SimulatedTemprature`, which it does not declare; did you mean `SimulatedTemperature`?",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
    assert!(!text.contains("W015 `selfcheck`"), "the filled-in $self is not a literal id: {text}");

    let server = start();
    let out = server.run(&["plan", "--format", "json"], ws.path());
    assert!(out.status.success(), "{}", transcript(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&Value> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| expected.contains(&w["code"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(ours.len(), 4, "{:#}", json["warnings"]);
    let w016 = ours.iter().find(|w| w["code"] == "W016").unwrap();
    assert_eq!(w016["check"], "metric-reads-module-twin-on-devices");
    assert_eq!(w016["path"], "properties.reported.lastDesiredStatus.code");
    for format in ["text", "markdown"] {
        let out = server.run(&["plan", "--format", format], ws.path());
        let text = transcript(&out);
        for code in expected {
            assert!(text.contains(code), "{format}: {code}\n{text}");
        }
    }
    // --fail-on picks them like any other code.
    let out = server.run(&["plan", "--fail-on", "W018"], ws.path());
    assert_eq!(out.status.code(), Some(4), "{}", transcript(&out));
}
