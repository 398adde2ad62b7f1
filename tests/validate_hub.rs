//! Issue #16 item 1: `validate --hub` (and `--twins DIR`) runs plan's fleet checks against
//! the device twins without planning — W011 a literal of another type than most twins
//! hold, W012 a path no twin has (with "did you mean"), W013 a deployment that targets no
//! device — and `--fail-on` exits 4 as plan does. Expectations are worked out by hand from
//! the fleet below.

mod common;

use std::path::Path;

use common::{cli, stderr, stdout, transcript};
use serde_json::{Value, json};

/// `'2'` is a string; four of the five twins hold a number at that path.
const FLOORS: &str = r#"deployment "floors" {
    priority 10
    target "tags.location.floor = '2'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "web" image="nginx:1.25"
}
"#;

/// Misspelt `environment`: no twin has the path, so it targets nobody too.
const TYPO: &str = r#"deployment "typo" {
    priority 20
    target "tags.enviroment = 'prod'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "web" image="nginx:1.25"
}
"#;

/// A building the fleet does not have.
const NOBODY: &str = r#"deployment "nobody" {
    priority 30
    target "tags.location.building = '99'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "web" image="nginx:1.25"
}
"#;

fn fleet() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (hub, deployments) = (dir.path().join("hub"), dir.path().join("deployments"));
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::create_dir_all(&deployments).unwrap();
    for (name, text) in [("floors.kdl", FLOORS), ("typo.kdl", TYPO), ("nobody.kdl", NOBODY)] {
        std::fs::write(deployments.join(name), text).unwrap();
    }
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    let twin = |id: &str, floor: Value| {
        json!({"deviceId": id, "capabilities": {"iotEdge": true},
               "tags": {"environment": "prod", "location": {"building": "20", "floor": floor}}})
    };
    let devices = [
        twin("d1", json!(1)),
        twin("d2", json!(2)),
        twin("d3", json!(2)),
        twin("d4", json!(3)),
        twin("d5", json!("2")),
        // Not IoT Edge: deployments never target it, and it counts for no check.
        json!({"deviceId": "leaf", "tags": {"location": {"floor": "2"}}}),
    ];
    let text: String = devices.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(hub.join("devices.jsonl"), text).unwrap();
    (dir, hub, deployments)
}

fn run(args: &[&str], deployments: &Path) -> std::process::Output {
    cli().arg("validate").arg(deployments).args(args).output().unwrap()
}

/// The id a deployment gets (the plan says it), by name.
fn ids(deployments: &Path, hub: &Path) -> std::collections::BTreeMap<String, String> {
    let out = cli().arg("plan").arg(deployments).arg("--hub").arg(hub).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a["after"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn validate_hub_runs_the_fleet_checks_and_fail_on_sets_the_exit_code() {
    let (_dir, hub, deployments) = fleet();
    let server = common::EmulatorProcess::start(&hub, &[]);
    let on_hub = ["--hub", server.connection.as_str(), "--endpoint", server.url.as_str()];
    let id = ids(&deployments, &hub);
    let (floors, typo, nobody) = (&id["floors"], &id["typo"], &id["nobody"]);

    let out = run(&on_hub, &deployments);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let err = stderr(&out);
    // By hand: four of the five IoT Edge twins hold a number at the floor (the non-Edge
    // twin's string does not count), and those four are the ones `'2'` leaves out.
    let expected = [
        format!(
            "warning: W011 `{floors}` target: `tags.location.floor = '2'` compares with a string, but `tags.location.floor` is a number on most IoT Edge twins that have it (number 4, string 1): a comparison across types is never true, so the condition misses them; write a bare number such as 2 (4 devices: d1, d2, d3, d4)"
        ),
        format!(
            "warning: W012 `{typo}` target reads `tags.enviroment`, which no IoT Edge twin of the fleet has; did you mean `tags.environment`?"
        ),
        format!("warning: W013 `{nobody}` targets no IoT Edge device of the fleet: apply would roll it out nowhere"),
        format!("warning: W013 `{typo}` targets no IoT Edge device of the fleet: apply would roll it out nowhere"),
    ];
    let fleet_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: W01")).collect();
    assert_eq!(fleet_lines, expected, "{err}");
    assert!(stdout(&out).contains("3 deployments in 3 files: valid\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains(": 4 warnings\n"), "{}", stdout(&out));

    // JSON: the same four, with their fields.
    let out = run(&[&on_hub[..], &["--format", "json"]].concat(), &deployments);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    let codes: Vec<&str> = warnings.iter().map(|w| w["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["W011", "W012", "W013", "W013"], "{v:#}");
    let w011 = &warnings[0];
    assert_eq!(w011["deployment"], json!(floors));
    assert_eq!(w011["path"], "tags.location.floor");
    assert_eq!(w011["literal_type"], "string");
    assert_eq!(w011["fleet_types"], json!([{"type": "number", "twins": 4}, {"type": "string", "twins": 1}]));
    // The devices the comparison leaves out: the four number-valued twins.
    assert_eq!((w011["devices"].clone(), w011["samples"].clone()), (json!(4), json!(["d1", "d2", "d3", "d4"])));
    assert_eq!(warnings[1]["did_you_mean"], "tags.environment");
    let silent: Vec<&Value> = warnings[2..].iter().map(|w| &w["deployment"]).collect();
    assert_eq!(silent, [&json!(nobody), &json!(typo)]);
    assert!(v["fleet"]["hub"].as_str().is_some_and(|h| h.contains("127.0.0.1")), "{v:#}");

    // The same findings plan reports for the same fleet (one implementation).
    let plan = cli().arg("plan").arg(&deployments).args(on_hub).args(["--format", "json"]).output().unwrap();
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let fleet_checks = |ws: &[Value]| -> Vec<Value> {
        ws.iter().filter(|w| ["W011", "W012", "W013"].contains(&w["code"].as_str().unwrap_or(""))).cloned().collect()
    };
    assert_eq!(fleet_checks(warnings), fleet_checks(plan["warnings"].as_array().unwrap()));

    // --fail-on: 4 when a named code fires, 0 when none does.
    for (fail_on, code) in [("W011", 4), ("w013", 4), ("all", 4), ("W014,W010", 0)] {
        let out = run(&[&on_hub[..], &["--fail-on", fail_on]].concat(), &deployments);
        assert_eq!(out.status.code(), Some(code), "--fail-on {fail_on}: {}", transcript(&out));
        if code == 4 {
            assert!(stderr(&out).contains("--fail-on names"), "{}", transcript(&out));
        }
    }
    let out = run(&[&on_hub[..], &["--fail-on", "W999"]].concat(), &deployments);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));

    // --twins: the snapshot's twins, the same findings.
    let out = run(&["--twins", hub.to_str().unwrap(), "--format", "json"], &deployments);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let from_snapshot: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_snapshot["warnings"], v["warnings"]);
}

#[test]
fn validate_stays_offline_without_hub_even_with_fleetform_hub_set() {
    let (_dir, hub, deployments) = fleet();
    let out = cli().arg("validate").arg(&deployments).env("FLEETFORM_HUB", &hub).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(!stderr(&out).contains("W01"), "{}", transcript(&out));
    assert_eq!(stdout(&out), "3 deployments in 3 files: valid\n");
    // --fail-on applies to the warnings of the files alone too: none here.
    let out = cli().arg("validate").arg(&deployments).args(["--fail-on", "all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn problems_in_the_files_skip_the_fleet_and_exit_1() {
    let (_dir, hub, deployments) = fleet();
    std::fs::write(deployments.join("broken.kdl"), "deployment \"broken\" {\n    priority x\n}\n").unwrap();
    let out = run(&["--twins", hub.to_str().unwrap(), "--fail-on", "all"], &deployments);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(!stderr(&out).contains("W013"), "{}", transcript(&out));
}

#[test]
fn rollout_wave_conditions_are_checked_against_the_fleet_too() {
    let (_dir, hub, deployments) = fleet();
    for name in ["floors.kdl", "typo.kdl", "nobody.kdl"] {
        std::fs::remove_file(deployments.join(name)).unwrap();
    }
    // By hand: no twin has `tags.location.flor` (one letter from `floor`), and all five
    // IoT Edge twins hold the building as the string "20", never the number 20.
    let waved = r#"deployment "waved" {
    priority 10
    target "tags.environment = 'prod'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "web" image="nginx:1.25"
    rollout {
        wave "second-floor" "tags.location.flor = 2"
        wave "b20" "tags.location.building = 20"
        wave "all"
        promote success=1.0
    }
}
"#;
    std::fs::write(deployments.join("waved.kdl"), waved).unwrap();
    let id = ids(&deployments, &hub);
    let id = &id["waved"];
    let out = run(&["--twins", hub.to_str().unwrap()], &deployments);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let err = stderr(&out);
    let fleet_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: W01")).collect();
    assert_eq!(fleet_lines.len(), 2, "{err}");
    assert!(fleet_lines[0].starts_with(&format!("warning: W011 `{id}` rollout wave `b20` condition: `tags.location.building = 20` compares with a number, but `tags.location.building` is a string on most IoT Edge twins that have it (string 5)")), "{err}");
    assert_eq!(
        fleet_lines[1],
        format!(
            "warning: W012 `{id}` rollout wave `second-floor` condition reads `tags.location.flor`, which no IoT Edge twin of the fleet has; did you mean `tags.location.floor`?"
        ),
        "{err}"
    );
    let out = run(&["--twins", hub.to_str().unwrap(), "--format", "json"], &deployments);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(&Value, &Value, &Value, &Value)> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "W011" || w["code"] == "W012")
        .map(|w| (&w["code"], &w["query"], &w["wave"], &w["path"]))
        .collect();
    assert_eq!(
        found,
        [
            (&json!("W011"), &json!("wave"), &json!("b20"), &json!("tags.location.building")),
            (&json!("W012"), &json!("wave"), &json!("second-floor"), &json!("tags.location.flor")),
        ],
        "{v:#}"
    );
    assert!(v["warnings"].as_array().unwrap().iter().all(|w| w.get("metric").is_none()), "{v:#}");
}
