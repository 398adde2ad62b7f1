//! Equal-priority layered deployments writing one module or route (issue #13 item 13): `plan`
//! (text, Markdown, JSON) and `explain` warn, naming the devices where both land. The fleet is
//! four hand-written twins, so which devices are affected is known without the engine: `e1`
//! and `e2` (building 20, IoT Edge) get both layers; `e3` (building 21) gets only `mon-all`;
//! `leaf` is not an IoT Edge device.

mod common;

use common::*;
use serde_json::{Value, json};

const BASE: &str = r#"
deployment "base" {
    priority 10
    target "*"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/telemetry:1.0"
}
"#;

const MON_ALL: &str = r#"
layered "mon-all" {
    priority 30
    target "tags.building IN ['20', '21']"
    module "Monitor" image="contoso.azurecr.io/monitor:1.0"
    route "monitor-up" "FROM /messages/modules/Monitor/outputs/* INTO $upstream"
}
"#;

const MON_20: &str = r#"
layered "mon-20" {
    priority 30
    target "tags.building = '20'"
    module "Monitor" image="contoso.azurecr.io/monitor:2.0"
    route "monitor-up" "FROM /messages/modules/Monitor/outputs/* INTO $upstream"
}
"#;

fn fleet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let deployments = dir.path().join("deployments");
    std::fs::create_dir_all(&deployments).unwrap();
    for (name, text) in [("base.kdl", BASE), ("mon-all.kdl", MON_ALL), ("mon-20.kdl", MON_20)] {
        std::fs::write(deployments.join(name), text).unwrap();
    }
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    let device = |id: &str, building: &str, edge: bool| {
        json!({"deviceId": id, "etag": "AAAAAAAAAAE=", "status": "enabled", "version": 2,
               "tags": {"building": building}, "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}},
               "capabilities": {"iotEdge": edge}})
    };
    let devices = json!([
        device("e1", "20", true),
        device("e2", "20", true),
        device("e3", "21", true),
        device("leaf", "20", false)
    ]);
    std::fs::write(hub.join("devices.json"), devices.to_string()).unwrap();
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    dir
}

fn run(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    let mut cmd = fleetform();
    cmd.current_dir(dir.path()).args(args).arg("--hub").arg("hub").arg("deployments").output().unwrap()
}

#[test]
fn plan_warns_in_every_format_with_the_devices_both_land_on() {
    let dir = fleet();
    let out = run(&dir, &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ties: Vec<&Value> =
        v["warnings"].as_array().unwrap().iter().filter(|w| w["check"] == "equal-priority-layered-overlap").collect();
    let mut where_: Vec<(&str, &str)> =
        ties.iter().map(|w| (w["twin"].as_str().unwrap(), w["path"].as_str().unwrap())).collect();
    where_.sort();
    assert_eq!(where_, vec![("$edgeAgent", "modules.Monitor"), ("$edgeHub", "routes.monitor-up")]);
    for w in &ties {
        assert_eq!(w["priority"], 30);
        assert_eq!(w["devices"], 2, "{w}");
        assert_eq!(w["samples"], json!(["e1", "e2"]));
        let mut pair = [w["winner"].as_str().unwrap(), w["loser"].as_str().unwrap()];
        pair.sort();
        assert!(pair[0].starts_with("mon-20-") && pair[1].starts_with("mon-all-"), "{pair:?}");
    }

    for format in ["text", "markdown"] {
        let out = run(&dir, &["plan", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("both write")).collect();
        assert_eq!(lines.len(), 2, "{format}:\n{text}");
        assert!(lines[0].contains("`$edgeAgent` `modules.Monitor` at priority 30"), "{}", lines[0]);
        assert!(lines[1].contains("`$edgeHub` `routes.monitor-up` at priority 30"), "{}", lines[1]);
        for l in lines {
            assert!(l.ends_with("(2 devices: e1, e2)"), "{format}: {l}");
        }
    }
}

#[test]
fn explain_warns_only_where_both_layers_land() {
    let dir = fleet();
    let out = run(&dir, &["explain", "e1"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    let warnings = text.split("\nWarnings:").nth(1).unwrap_or_else(|| panic!("no warnings:\n{text}"));
    assert!(warnings.contains("both write `$edgeAgent` `modules.Monitor` at priority 30"), "{warnings}");
    assert!(warnings.contains("both write `$edgeHub` `routes.monitor-up` at priority 30"), "{warnings}");

    let out = run(&dir, &["explain", "e3"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(!stdout(&out).contains("both write"), "{}", stdout(&out));
}
