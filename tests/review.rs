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

fn typo() -> String {
    standard("typo", "tags.enviroment='prod'", "contoso.azurecr.io/campus/telemetry:3.4.0")
}

/// `floor-two` written the way the fleet's twins hold the values.
fn fixed() -> String {
    FLOOR.replace("floor='2'", "floor=2").replace(".flor ", ".floor ")
}

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
        devices
            .push(json!({"deviceId": "leaf-00", "capabilities": {"iotEdge": false}, "tags": {"environment": "prod"}}));
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
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", typo().as_str())]);
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
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", typo().as_str())]);
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
    let repo = Repo::new(&[("floor.kdl", fixed().as_str())]);
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
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", typo().as_str())]);
    let out = repo.plan(&["--fail-on", "W013"]);
    assert_eq!(out.status.code(), Some(4), "{}", transcript(&out));
    assert!(stdout(&out).trim_end().ends_with("2 devices change."), "the whole plan is printed first");
    assert!(stderr(&out).contains("--fail-on names: W013 (exit 4)"), "{}", stderr(&out));
    // Codes that do not fire leave the exit code alone; `all` takes any warning.
    assert_eq!(repo.plan(&["--fail-on", "W001,W004"]).status.code(), Some(0));
    assert_eq!(repo.plan(&["--fail-on", "all", "--format", "json"]).status.code(), Some(4));
    let fixed = Repo::new(&[("floor.kdl", fixed().as_str())]);
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
    let repo = Repo::new(&[("floor.kdl", FLOOR), ("typo.kdl", typo().as_str())]);
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
    let repo = Repo::new(&[("floor.kdl", fixed().as_str())]);
    let out = repo.plan(&["--format", "markdown"]);
    let rendered = html(&stdout(&out));
    assert!(rendered.contains("<li>+ module Telemetry (contoso.azurecr.io/campus/telemetry:3.3.0)</li>"), "{rendered}");
    assert!(!rendered.contains("<li>\n<ul>"), "{rendered}");
}

// ---------------------------------------------------------------------------------------------
// Equal-priority ties (W020 in validate, W006 and W014 in plan).

fn standard(name: &str, target: &str, image: &str) -> String {
    format!(
        r#"deployment "{name}" {{
    priority 10
    target "{target}"
    runtime {{
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }}
    module "Telemetry" image="{image}"
}}
"#
    )
}

/// A hub where `base` (older) and `site` (newer) are both applied at priority 10 on
/// every device, so `site` wins the tie; the repository then bumps `base`'s image.
fn tied_hub() -> Repo {
    let repo = Repo::new(&[
        ("base.kdl", &standard("base", "tags.environment='prod'", "contoso.azurecr.io/telemetry:1.0")),
        ("site.kdl", &standard("site", "tags.location.building='20'", "contoso.azurecr.io/telemetry:2.0")),
    ]);
    let render = |name: &str, created: &str| {
        let out = fleetform().current_dir(repo.dir.path()).args(["render", name, "deployments"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        let mut c: Value = serde_json::from_slice(&out.stdout).unwrap();
        c["createdTimeUtc"] = json!(created);
        c["etag"] = json!("MQ==");
        c
    };
    let on_hub = json!([render("base", "2026-11-01T08:00:00Z"), render("site", "2026-11-02T08:00:00Z")]);
    std::fs::write(repo.dir.path().join("hub/configurations.json"), on_hub.to_string()).unwrap();
    std::fs::write(
        repo.dir.path().join("deployments/base.kdl"),
        standard("base", "tags.environment='prod'", "contoso.azurecr.io/telemetry:1.1"),
    )
    .unwrap();
    repo
}

#[test]
fn validate_warns_of_equal_priority_standards_whose_targets_can_meet() {
    let repo = tied_hub();
    let out = fleetform().current_dir(repo.dir.path()).args(["validate", "deployments"]).output().unwrap();
    // A warning, not a problem: the files are valid.
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    insta::assert_snapshot!("review_validate_tie", stderr(&out));
    let out = fleetform()
        .current_dir(repo.dir.path())
        .args(["validate", "deployments", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    let w = &v["warnings"][0];
    assert_eq!(
        (&w["code"], &w["check"], &w["priority"]),
        (&json!("W020"), &json!("equal-priority-overlap"), &json!(10))
    );
    assert_eq!((&w["first"], &w["second"]), (&json!("base"), &json!("site")));
    assert_eq!(w["first_at"], "deployments/base.kdl:1:12");
    // Targets pinned to different values of one tag cannot meet: no warning.
    let apart = Repo::new(&[
        ("a.kdl", &standard("a", "tags.environment='prod'", "x.io/t:1")),
        ("b.kdl", &standard("b", "tags.environment='dev'", "x.io/t:1")),
    ]);
    let out = fleetform()
        .current_dir(apart.dir.path())
        .args(["validate", "deployments", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["warnings"], json!([]));
}

#[test]
fn a_replace_that_flips_a_tie_heads_the_plan_in_every_format() {
    let repo = tied_hub();
    let out = repo.plan(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    // All 6 IoT Edge devices run `site` today (the newer); the re-created `base` is newer still.
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("!! W014 A replace changes which standard deployment wins on 6 devices: `site-"),
        "{text}"
    );
    insta::assert_snapshot!("review_tie_flip_banner", first);

    let md = stdout(&repo.plan(&["--format", "markdown"]));
    let rendered = html(&md);
    let alert = rendered.find("markdown-alert-caution").unwrap_or_else(|| panic!("no caution alert:\n{rendered}"));
    assert!(alert < rendered.find("<table>").unwrap(), "the banner comes before the table");

    let ws = warnings(&repo.plan(&["--format", "json"]));
    let flip = ws.iter().find(|w| w["code"] == "W014").expect("W014 in JSON");
    assert_eq!(flip["check"], "standard-winner-flips");
    assert_eq!(flip["devices"], 6);
    assert!(flip["from"].as_str().unwrap().starts_with("site-") && flip["to"].as_str().unwrap().starts_with("base-"));
    // The tie itself is W006 with the devices concerned.
    let tie = ws.iter().find(|w| w["code"] == "W006").expect("W006 in JSON");
    assert_eq!(tie["devices"], 6);
    assert_eq!(repo.plan(&["--fail-on", "W014"]).status.code(), Some(4));
}

// ---------------------------------------------------------------------------------------------
// validate: every problem at once, with the hints a newcomer needs.

/// Six problems in two deployments: before, the bad priority hid the target, the metric and
/// the route of `broken` until it was fixed.
const EVERY_PROBLEM: &str = r#"deployment "broken" {
    priority -1
    target "tags.roomtype = conference"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.3.0"
    route "up" "FROM /messages/modules/Telemetry/outputs/* INTO $upstrem"
    metric "m1" "SELECT deviceId FROM devices WHERE"
    metric "m2" "SELECT deviceId FROM devices"
    metric "m3" "SELECT deviceId FROM devices"
    metric "m4" "SELECT deviceId FROM devices"
    metric "m5" "SELECT deviceId FROM devices"
    metric "m6" "SELECT deviceId FROM devices"
}
deployment "other" {
    priority 1
    target "tag.environment = 'x'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.3.0" {
        env SendData=#true
    }
}
"#;

const BARE_BOOLEAN: &str = r#"deployment "flags" {
    priority 1
    target "*"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Telemetry" image="contoso.azurecr.io/campus/telemetry:3.3.0" {
        env SendData=true
    }
}
"#;

fn validate_file(name: &str, text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    fleetform().current_dir(dir.path()).args(["validate", name]).output().unwrap()
}

#[test]
fn validate_reports_every_problem_of_a_deployment_at_once_with_hints() {
    let out = validate_file("broken.kdl", EVERY_PROBLEM);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.trim_end().ends_with("6 problems found"), "{err}");
    for needle in [
        "priority -1 is out of range",
        "more than 5 metrics",
        "quote it: 'conference'",
        "metric query: expected a value",
        "did you mean `$upstream`?",
        "did you mean `tags.environment`?",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }
    insta::assert_snapshot!("review_every_problem", err);
}

#[test]
fn a_bare_boolean_is_taught_as_kdl_2_writes_it() {
    let out = validate_file("flags.kdl", BARE_BOOLEAN);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("flags.kdl:9:22"), "{err}");
    assert!(err.contains("booleans are written `#true` and `#false` in KDL 2"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// `plan --base` when the hub equals the base, and `--diff` in Markdown.

/// `tied_hub`'s repository as a git repository: `main` holds the deployments the hub runs
/// (base on 1.0), `feature` bumps base's image. The hub equals the merge base.
fn hub_equal_to_base() -> Repo {
    let repo = tied_hub();
    let base = repo.dir.path().join("deployments/base.kdl");
    let bumped = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, bumped.replace("telemetry:1.1", "telemetry:1.0")).unwrap();
    let git =
        git2::Repository::init_opts(repo.dir.path(), git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
    let commit = |message: &str| {
        let mut index = git.index().unwrap();
        index.add_all(["deployments/*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        index.write().unwrap();
        let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("test", "test@example.com").unwrap();
        let parent = git.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        git.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).unwrap()
    };
    let first = commit("what the hub runs");
    git.branch("feature", &git.find_commit(first).unwrap(), false).unwrap();
    git.set_head("refs/heads/feature").unwrap();
    std::fs::write(&base, bumped).unwrap();
    commit("base: telemetry 1.1");
    repo
}

#[test]
fn plan_base_against_a_hub_equal_to_the_base_prints_the_plan_once() {
    let repo = hub_equal_to_base();
    let md = stdout(&repo.plan(&["--base", "main", "--format", "markdown"]));
    assert_eq!(md.matches("<summary>Device impact").count(), 1, "one plan, not two:\n{md}");
    assert!(
        md.contains("The hub matches the base of this change: applying it makes exactly the changes above"),
        "{md}"
    );
    let rendered = html(&md);
    assert_eq!(rendered.matches("<table>").count(), 1, "{rendered}");
    assert_eq!(rendered.matches("<h3>").count(), 2, "{rendered}");

    let text = stdout(&repo.plan(&["--base", "main"]));
    assert_eq!(text.matches("Device impact").count(), 1, "{text}");
    assert!(text.contains("Plan against the hub\n====================\nThe hub matches the base"), "{text}");
    assert!(
        text.trim_end().ends_with("Plan: 0 to create, 0 to update, 1 to replace, 0 to delete. 6 devices change."),
        "{text}"
    );
}

#[test]
fn markdown_diff_is_one_fenced_diff_block() {
    let repo = tied_hub();
    let md = stdout(&repo.plan(&["--format", "markdown", "--diff"]));
    let rendered = html(&md);
    let start =
        rendered.find("<pre><code class=\"language-diff\">").unwrap_or_else(|| panic!("no diff block:\n{rendered}"));
    let block = &rendered[start..rendered[start..].find("</code></pre>").unwrap() + start];
    let line = |sign: char, image: &str| {
        block
            .lines()
            .any(|l| l.starts_with(sign) && l.trim_start_matches(sign).trim() == format!("\"image\": \"{image}\""))
    };
    assert!(line('-', "contoso.azurecr.io/telemetry:1.0") && line('+', "contoso.azurecr.io/telemetry:1.1"), "{block}");
    // Nothing of the diff leaks out of the block as lists or headings.
    let after_table = &rendered[rendered.find("</table>").unwrap()..];
    assert!(!after_table.contains("<h1>") && !after_table.contains("<h2>"), "{rendered}");
    assert_eq!(rendered.matches("<pre>").count(), 1);
}

// ---------------------------------------------------------------------------------------------
// `status` names the devices that fail a rollout.

#[test]
fn status_names_a_sample_of_the_failing_devices_with_their_agent_status() {
    let repo = tied_hub();
    let hub = repo.dir.path().join("hub");
    let configurations: Value =
        serde_json::from_slice(&std::fs::read(hub.join("configurations.json")).unwrap()).unwrap();
    let site = configurations[1]["id"].as_str().unwrap().to_string();
    // Eight agents applied `site`: 01 reports 200; 03 reports 400 but on an older desired
    // version (the hub does not count it); the other six fail, and 07 is the sixth smallest.
    let agent = |device: &str, code: i64, desired: i64, reported: i64| {
        json!({
            "deviceId": device, "moduleId": "$edgeAgent",
            "configurations": { site.clone(): { "status": "Applied" } },
            "properties": {
                "desired": { "$version": desired },
                "reported": { "lastDesiredVersion": reported,
                              "lastDesiredStatus": { "code": code, "description": if code == 200 { "" } else { "image pull failed" } } }
            }
        })
    };
    let modules = json!([
        agent("dev-06", 500, 2, 2), agent("dev-05", 406, 2, 2), agent("dev-04", 400, 2, 2),
        agent("dev-03", 400, 3, 2), agent("dev-02", 400, 2, 2), agent("dev-01", 200, 2, 2),
        agent("dev-00", 400, 2, 2), agent("dev-07", 412, 2, 2),
        // Another module of a failing device is not its agent.
        {"deviceId": "dev-08", "moduleId": "Telemetry", "configurations": { site.clone(): { "status": "Applied" } }},
    ]);
    std::fs::write(hub.join("modules.json"), modules.to_string()).unwrap();
    let out = fleetform().current_dir(repo.dir.path()).args(["status", "--hub", "hub"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    // Hand-picked: the five smallest failing ids, 01 (200) and 03 (stale version) left out.
    let block = &text[text.find(&format!("({site})")).unwrap()..];
    assert!(
        block.contains(
            "      failing devices (first 5):\n        dev-00 reports 400: image pull failed\n        dev-02 reports 400: image pull failed\n        dev-04 reports 400: image pull failed\n        dev-05 reports 406: image pull failed\n        dev-06 reports 500: image pull failed\n"
        ),
        "{text}"
    );
    let out =
        fleetform().current_dir(repo.dir.path()).args(["status", "--hub", "hub", "--format", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v["managed"].as_array().unwrap().iter().find(|d| d["id"] == site.as_str()).unwrap();
    assert_eq!(d["failed_devices"][0], json!({"device_id": "dev-00", "code": 400, "description": "image pull failed"}));
    assert_eq!(d["failed_devices"].as_array().unwrap().len(), 5);
    let other = v["managed"].as_array().unwrap().iter().find(|d| d["id"] != site.as_str()).unwrap();
    assert!(other.get("failed_devices").is_none(), "{other}");
}

// ---------------------------------------------------------------------------------------------
// A twin setting moved to another `path` (issue #16 item 9).

const SENSOR_TWIN: &str = r#"layered "sensor-interval" {
    priority 30
    target "tags.environment='prod'"
    twin "SimulatedTemperatureSensor" path="SendInterval" { value 5 }
}
"#;

#[test]
fn a_twin_path_change_is_summarised_by_module_and_path_not_as_a_secret() {
    // The hub runs the deployment as written with path="SendInterval"; the change writes
    // the same setting one level up, path="SendInterval.value" → the whole subsection.
    let repo = Repo::new(&[("sensor.kdl", SENSOR_TWIN)]);
    let render =
        fleetform().current_dir(repo.dir.path()).args(["render", "sensor-interval", "deployments"]).output().unwrap();
    assert_eq!(render.status.code(), Some(0), "{}", transcript(&render));
    let mut on_hub: Value = serde_json::from_slice(&render.stdout).unwrap();
    on_hub["createdTimeUtc"] = json!("2026-01-01T00:00:00Z");
    on_hub["etag"] = json!("\"1\"");
    std::fs::write(repo.dir.path().join("hub/configurations.json"), serde_json::to_string(&[on_hub]).unwrap()).unwrap();
    let moved = SENSOR_TWIN.replace(r#"path="SendInterval" { value 5 }"#, r#"path="SendInterval.value" "5""#);
    std::fs::write(repo.dir.path().join("deployments/sensor.kdl"), &moved).unwrap();
    let out = repo.plan(&["--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let md = stdout(&out);
    assert!(!md.contains("runtime content"), "{md}");
    assert!(!md.contains("sensitive value changed"), "{md}");
    let rendered = html(&md);
    // Hand-derived: the old copy writes key properties.desired.SendInterval = {"value":5},
    // the new one properties.desired.SendInterval.value = 5; the merged documents are equal.
    assert!(
        rendered.contains(
            "<li>~ twin SimulatedTemperatureSensor properties.desired.SendInterval.value: (not written) → 5</li>"
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains(
            "<li>~ twin SimulatedTemperatureSensor properties.desired.SendInterval: {\"value\":5} → (not written)</li>"
        ),
        "{rendered}"
    );
    assert!(!rendered.contains("<li>\n<ul>"), "{rendered}");
}
