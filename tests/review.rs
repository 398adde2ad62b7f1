//! What a reviewer reads in a plan (issue #16): warning codes and `plan --fail-on`, the
//! fleet-aware checks of target conditions and metrics, and Markdown that a CommonMark/GFM
//! renderer turns into the structure a pull-request comment needs.
//!
//! The fleet is built here so that each finding has a hand-counted expectation: six IoT
//! Edge devices in production, four whose `tags.location.floor` is the number 2 and two
//! whose floor is the string "2", and one leaf device (not IoT Edge, never counted).

mod common;

use common::*;
use serde_json::{Value, json};

/// `floor-two` compares the floor with a string (W011) and has a metric reading a misspelt
/// path (W012); `typo` targets a misspelt tag (W012) and so no device (W013).
const FLOOR: &str = r#"deployment "floor-two" {
    priority 10
    target "tags.environment='prod' AND tags.location.floor='2'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.3.0"
    metric "reporting" "SELECT deviceId FROM devices WHERE tags.location.flor = 2"
}
"#;

const TYPO: &str = r#"deployment "typo" {
    priority 20
    target "tags.enviroment='prod'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.4.0"
}
"#;

/// The same deployments written the way the fleet's twins hold the values.
const FIXED: &str = r#"deployment "floor-two" {
    priority 10
    target "tags.environment='prod' AND tags.location.floor=2"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.3.0"
    metric "reporting" "SELECT deviceId FROM devices WHERE tags.location.floor = 2"
}
"#;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let hub = dir.path().join("hub");
        std::fs::create_dir_all(&hub).unwrap();
        std::fs::write(hub.join("configurations.json"), "[]").unwrap();
        let mut devices: Vec<Value> = (0..6)
            .map(|i| {
                let floor = if i < 4 { json!(2) } else { json!("2") };
                json!({
                    "deviceId": format!("dev-{i:02}"),
                    "capabilities": {"iotEdge": true},
                    "tags": {"environment": "prod", "location": {"building": "20", "floor": floor}},
                    "properties": {"reported": {}}
                })
            })
            .collect();
        devices.push(json!({"deviceId": "leaf-00", "capabilities": {"iotEdge": false}, "tags": {"environment": "prod"}}));
        std::fs::write(hub.join("devices.json"), serde_json::to_string_pretty(&devices).unwrap()).unwrap();
        let deps = dir.path().join("deployments");
        std::fs::create_dir_all(&deps).unwrap();
        for (name, text) in files {
            std::fs::write(deps.join(name), text).unwrap();
        }
        Repo { dir }
    }

    fn plan(&self, args: &[&str]) -> std::process::Output {
        fleetform()
            .current_dir(self.dir.path())
            .args(["plan", "--hub", "hub", "deployments"])
            .args(args)
            .output()
            .unwrap()
    }
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading:?} in\n{text}"));
    let rest = &text[start..];
    rest.find("\n\n").map_or(rest, |end| &rest[..end])
}

fn warnings(out: &std::process::Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", transcript(out)));
    v["warnings"].as_array().unwrap().clone()
}

#[test]
fn fleet_aware_warnings_in_text_with_codes() {
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", TYPO)]);
    let out = repo.plan(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    // Hand-counted: the string literal misses the 4 number-valued floors; only the 2
    // string-valued ones change.
    assert!(text.contains("Device impact (7 devices read, 6 IoT Edge; 2 change"), "{text}");
    insta::assert_snapshot!("review_fleet_warnings_text", section(&text, "Warnings (after apply)"));
}

#[test]
fn fleet_aware_warnings_in_json_carry_code_and_counts() {
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", TYPO)]);
    let out = repo.plan(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let ws = warnings(&out);
    let codes: Vec<&str> = ws.iter().map(|w| w["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["W010", "W011", "W012", "W012", "W013"]);
    let mismatch = &ws[1];
    assert_eq!(mismatch["check"], "literal-type-mismatch");
    assert_eq!(mismatch["path"], "tags.location.floor");
    assert_eq!(mismatch["literal_type"], "string");
    assert_eq!(mismatch["query"], "target");
    assert_eq!(mismatch["fleet_types"], json!([{"type": "number", "twins": 4}, {"type": "string", "twins": 2}]));
    assert_eq!(mismatch["devices"], 4);
    assert_eq!(mismatch["samples"], json!(["dev-00", "dev-01", "dev-02", "dev-03"]));
    let metric = &ws[2];
    assert_eq!((&metric["query"], &metric["metric"]), (&json!("metric"), &json!("reporting")));
    assert_eq!(metric["did_you_mean"], "tags.location.floor");
    assert_eq!(ws[3]["path"], "tags.enviroment");
    assert_eq!(ws[3]["did_you_mean"], "tags.environment");
    assert_eq!(ws[4]["check"], "targets-no-device");
    assert!(ws[4]["deployment"].as_str().unwrap().starts_with("typo-"));
    for w in &ws {
        assert!(w["text"].as_str().unwrap().starts_with(w["code"].as_str().unwrap()), "{w}");
    }
}

#[test]
fn conditions_written_as_the_fleet_holds_the_values_give_no_fleet_warning() {
    let repo = Repo::new(&[("floor.kdl", FIXED)]);
    let out = repo.plan(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let codes: Vec<Value> = warnings(&out).iter().map(|w| w["code"].clone()).collect();
    assert!(codes.iter().all(|c| !["W011", "W012", "W013"].contains(&c.as_str().unwrap())), "{codes:?}");
    // The 4 number-valued floors are targeted now; the 2 string-valued ones are the
    // minority type (no warning: the literal has the type most twins hold) and the leaf
    // device is not IoT Edge.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["devices_changed"], 4);
}

#[test]
fn fail_on_exits_4_after_the_whole_plan_only_for_the_codes_named() {
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", TYPO)]);
    let out = repo.plan(&["--fail-on", "W013"]);
    assert_eq!(out.status.code(), Some(4), "{}", transcript(&out));
    assert!(stdout(&out).trim_end().ends_with("2 devices change."), "the whole plan is printed first");
    assert!(stderr(&out).contains("--fail-on names: W013 (exit 4)"), "{}", stderr(&out));
    // Codes that do not fire leave the exit code alone; `all` takes any warning.
    assert_eq!(repo.plan(&["--fail-on", "W001,W004"]).status.code(), Some(0));
    assert_eq!(repo.plan(&["--fail-on", "all", "--format", "json"]).status.code(), Some(4));
    let fixed = Repo::new(&[("floor.kdl", FIXED)]);
    assert_eq!(fixed.plan(&["--fail-on", "W011,W012,W013"]).status.code(), Some(0));
    // --fail-on decides before --detailed-exitcode: a failing review is not "has changes".
    assert_eq!(repo.plan(&["--fail-on", "W011", "--detailed-exitcode"]).status.code(), Some(4));
}

#[test]
fn fail_on_rejects_a_code_that_does_not_exist() {
    let repo = Repo::new(&[("floor.kdl", FLOOR)]);
    let out = repo.plan(&["--fail-on", "W011,W99"]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    insta::assert_snapshot!("review_fail_on_bad_code", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Markdown, through a real CommonMark/GFM renderer.

fn html(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(markdown, Options::ENABLE_TABLES | Options::ENABLE_GFM));
    out
}

#[test]
fn markdown_warnings_render_as_one_flat_list_with_codes() {
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", TYPO)]);
    let out = repo.plan(&["--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let rendered = html(&stdout(&out));
    let warnings = &rendered[rendered.find("<h4>Warnings</h4>").expect(&rendered)..];
    let list = &warnings[..warnings.find("</ul>").unwrap()];
    assert_eq!(list.matches("<li>").count(), 5, "{list}");
    assert_eq!(list.matches("<ul>").count(), 1, "no nested list: {list}");
    for code in ["W010", "W011", "W012", "W013"] {
        assert!(list.contains(&format!("<li>{code} ")), "{code} in {list}");
    }
    assert!(list.contains("did you mean <code>tags.environment</code>?"), "{list}");
}

#[test]
fn markdown_change_lines_are_list_items_not_nested_lists() {
    // "+ module …" after a list marker is a nested list in CommonMark: it must stay text.
    let repo = Repo::new(&[("floor.kdl", FIXED)]);
    let out = repo.plan(&["--format", "markdown"]);
    let rendered = html(&stdout(&out));
    assert!(rendered.contains("<li>+ module Telemetry (contoso.azurecr.io/campus/telemetry:3.3.0)</li>"), "{rendered}");
    assert!(!rendered.contains("<li>\n<ul>"), "{rendered}");
}
