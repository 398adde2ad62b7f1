//! `fleetform plan` on the example: every action kind, cohorts, all three formats (as
//! snapshots a reviewer reads), saved plans without secrets, exit codes, and the Markdown
//! size cap on a large generated fleet.

mod common;

use common::*;
use serde_json::Value;

const HUB: &str = "examples/campus/hub";

fn plan(args: &[&str]) -> std::process::Output {
    let mut cmd = fleetform();
    with_demo_env(&mut cmd);
    cmd.args(["plan", "--hub", HUB, EXAMPLE_DEPLOYMENTS]).args(args).output().unwrap()
}

#[test]
fn text_plan_of_the_example() {
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    for needle in [
        "  + campus-canary",
        "  ~ building-monitoring",
        "+/- campus-base",
        "! legacy-sensors",
        "? manual-hotfix",
        "  ~ conference-camera",
        "= route-override",
    ] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
    assert!(
        text.trim_end().ends_with("Plan: 1 to create, 2 to update, 1 to replace, 0 to delete. 270 devices change.")
    );
    assert!(!text.contains('\u{1b}'), "no colour when not a terminal");
    insta::assert_snapshot!("plan_text", text);
}

#[test]
fn markdown_plan_of_the_example() {
    let out = plan(&["--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(md.starts_with("### fleetform plan\n\n**Plan: 1 to create"));
    assert!(md.contains("> [!WARNING]\n> This plan deletes 0 and replaces 1 deployment."));
    assert!(md.contains("<details><summary>Device impact: 270 of 286 IoT Edge devices change"));
    insta::assert_snapshot!("plan_markdown", md);
}

#[test]
fn json_plan_of_the_example() {
    let out = plan(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    let actions: Vec<(&str, &str)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("building-monitoring", "update"),
            ("campus-base", "replace"),
            ("campus-canary", "create"),
            ("conference-camera", "update"),
            ("legacy-sensors", "orphan"),
            ("manual-hotfix", "unmanaged"),
            ("route-override", "no-op"),
        ]
    );
    let steps: Vec<(&str, &str)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["op"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("update", "conference-camera"),
            ("update", "building-monitoring"),
            ("create", "campus-canary"),
            ("create", "campus-base"),
            ("delete", "campus-base")
        ]
    );
    let replace = &v["actions"][1];
    assert_eq!(replace["before"][0].as_str().unwrap().len(), "campus-base-".len() + 8);
    assert_ne!(replace["before"][0], replace["after"]);
    let cohorts = v["cohorts"].as_array().unwrap();
    assert!(cohorts.len() >= 5);
    let total: u64 = cohorts
        .iter()
        .filter(|c| !c["changes"].as_array().unwrap().is_empty())
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, v["summary"]["devices_changed"].as_u64().unwrap());
    assert!(cohorts.iter().all(|c| c["samples"].as_array().unwrap().len() <= 5));
    insta::assert_json_snapshot!("plan_json", v);
}

#[test]
fn secrets_never_appear_in_any_format_or_saved_plan() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("plan.json");
    for format in ["text", "markdown", "json"] {
        let mut cmd = fleetform();
        with_example_env(&mut cmd);
        let out = cmd
            .args(["plan", "--hub", HUB, EXAMPLE_DEPLOYMENTS, "--diff", "--format", format, "--out"])
            .arg(&saved)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        let all = transcript(&out) + &std::fs::read_to_string(&saved).unwrap();
        for (_, secret) in EXAMPLE_ENV {
            assert!(!all.contains(secret), "{format} output leaks a secret");
        }
        // The hub's copies hold the demo password: it is masked too.
        assert!(!all.contains("\"demo\""), "{format} output leaks the hub's password");
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(v["kind"], "fleetform-plan");
    // Other secrets than the hub's give other content hashes: more replacements.
    assert!(v["steps"].as_array().unwrap().len() > 4);
    assert!(v["hub_etags"].as_object().unwrap().len() >= 5);
    assert_eq!(v["configurations"].as_array().unwrap().len(), 5);
    assert!(v["configurations"][0]["hash"].as_str().unwrap().len() == 16);
}

#[test]
fn diff_shows_the_replaced_json() {
    let out = plan(&["--diff"]);
    let text = stdout(&out);
    assert!(text.contains("--- campus-base-"));
    assert!(text.contains("-                \"image\": \"contoso.azurecr.io/campus/telemetry:3.1.4\""), "{text}");
    assert!(text.contains("+                \"image\": \"contoso.azurecr.io/campus/telemetry:3.2.0\""));
    assert!(text.contains("-  \"targetCondition\": \"tags.location.building = '20'\","));
}

#[test]
fn prune_deletes_orphans_last() {
    let out = plan(&["--prune", "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let legacy = v["actions"].as_array().unwrap().iter().find(|a| a["name"] == "legacy-sensors").unwrap();
    assert_eq!(legacy["action"], "delete");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    // Deletes run from the lowest priority up: campus-base (10) before legacy-sensors (35).
    assert_eq!((steps[4]["op"].as_str(), steps[4]["name"].as_str()), (Some("delete"), Some("campus-base")));
    assert_eq!((steps[5]["op"].as_str(), steps[5]["name"].as_str()), (Some("delete"), Some("legacy-sensors")));
    assert!(stdout(&plan(&["--prune"])).contains("1 to delete"));
}

#[test]
fn detailed_exitcode_and_no_changes() {
    let out = plan(&["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    // A hub that already holds the declared state: nothing to do.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(std::path::Path::new(HUB), dir.path());
    let render = |name: &str| -> Value {
        let mut cmd = fleetform();
        with_demo_env(&mut cmd);
        let out = cmd.args(["render", name, EXAMPLE_DEPLOYMENTS, "--show-secrets"]).output().unwrap();
        let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["createdTimeUtc"] = Value::String("2026-05-01T00:00:00Z".into());
        v["etag"] = Value::String("\"x\"".into());
        v
    };
    let configs: Vec<Value> =
        ["campus-base", "campus-canary", "building-monitoring", "conference-camera", "route-override"]
            .iter()
            .map(|n| render(n))
            .collect();
    std::fs::write(dir.path().join("configurations.json"), serde_json::to_string(&configs).unwrap()).unwrap();
    let mut cmd = fleetform();
    with_demo_env(&mut cmd);
    let out = cmd.args(["plan", "--detailed-exitcode", EXAMPLE_DEPLOYMENTS, "--hub"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(stdout(&out).trim_end().ends_with("No changes. The hub matches the repository."));
}

#[test]
fn plan_errors_are_clear() {
    let out = fleetform().args(["plan", "--hub", "no/such/hub", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ACR_PASSWORD is not set"), "secrets are needed to plan: {}", stderr(&out));
    let mut cmd = fleetform();
    with_example_env(&mut cmd);
    let out = cmd.args(["plan", "--hub", "no/such/hub", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such/hub"), "{}", stderr(&out));
}

#[test]
fn markdown_stays_under_the_comment_limit_on_a_large_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let out =
        fleetform().args(["hub", "generate", "--devices", "30000", "--seed", "7", "--out"]).arg(&hub).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    // One layered deployment per building and per room type: hundreds of cohorts.
    let deployments = dir.path().join("deployments");
    std::fs::create_dir_all(&deployments).unwrap();
    let mut kdl = String::from(
        "deployment \"base\" {\n    priority 10\n    target \"tags.environment='prod'\"\n    runtime {\n        edge-agent image=\"a:1\"\n        edge-hub image=\"h:1\"\n    }\n    module \"Core\" image=\"core:1\"\n}\n",
    );
    for b in 1..=120 {
        kdl.push_str(&format!(
            "layered \"building-{b}\" {{\n    priority {}\n    target \"tags.location.building = '{b}'\"\n    module \"B{b}\" image=\"registry.example/building-{b}-collector:{b}.0\"\n    route \"b{b}\" \"FROM /messages/modules/B{b}/outputs/* INTO $upstream\"\n}}\n",
            100 + b
        ));
    }
    for (i, room) in ["office", "conference", "lab", "lobby", "datacenter"].iter().enumerate() {
        kdl.push_str(&format!(
            "layered \"room-{room}\" {{\n    priority {}\n    target \"tags.roomtype = '{room}'\"\n    module \"Room\" image=\"room-{room}:1\"\n}}\n",
            300 + i
        ));
    }
    std::fs::write(deployments.join("fleet.kdl"), kdl).unwrap();
    let out = fleetform().args(["plan", "--format", "markdown", "--hub"]).arg(&hub).arg(&deployments).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let md = stdout(&out);
    assert!(md.chars().count() <= 65_000, "{} characters", md.chars().count());
    assert!(md.contains("more cohorts ("), "the tail is summarised with counts");
    assert!(md.contains("not shown to stay within the comment size limit"));
}

/// `plan --without-secrets` (issue #16 item 5): a reviewer with none of the example's
/// secrets. The example reads ACR_PASSWORD (campus-base, campus-canary),
/// VISION_REGISTRY_PASSWORD and CAMERA_API_TOKEN (conference-camera), and those three hold
/// secrets, so their ids also depend on FLEETFORM_HASH_KEY; building-monitoring and
/// route-override read no variable and keep their exact ids.
#[test]
fn plans_without_secrets_with_unknown_ids_and_refuses_to_save() {
    let missing = ["ACR_PASSWORD", "CAMERA_API_TOKEN", "FLEETFORM_HASH_KEY", "VISION_REGISTRY_PASSWORD"];
    let bare = |args: &[&str]| {
        let mut cmd = fleetform();
        cmd.args(["plan", "--hub", HUB, EXAMPLE_DEPLOYMENTS]).args(args).output().unwrap()
    };
    let text_out = bare(&["--without-secrets"]);
    assert_eq!(text_out.status.code(), Some(0), "{}", transcript(&text_out));
    let text = stdout(&text_out);
    assert!(text.starts_with(&format!("!! Planned without secrets: {} not set.", missing.join(", "))), "{text}");
    assert!(text.contains("campus-canary-<unknown: depends on ACR_PASSWORD, FLEETFORM_HASH_KEY>"), "{text}");
    // Unaffected deployments are planned exactly, and the devices that change are the
    // same 270 the plan with secrets finds (text_plan_of_the_example).
    assert!(text.contains("update building-monitoring-9caefb77 in place"), "{text}");
    assert!(text.contains("no change (route-override-e7029ec9)"), "{text}");
    assert!(text.trim_end().ends_with("270 devices change."), "{text}");
    // No id hashed over a placeholder is ever shown for the deployments that read secrets.
    for name in ["campus-base", "campus-canary", "conference-camera"] {
        let hashed = text.match_indices(&format!("{name}-")).any(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.len() >= 8
                && rest[..8].chars().all(|c| c.is_ascii_hexdigit())
                && !["campus-base-85df888b", "conference-camera-9ace891d"].iter().any(|old| text[i..].starts_with(old))
        });
        assert!(!hashed, "{name} shows a hashed id without its secrets");
    }

    let json_out = bare(&["--without-secrets", "--format", "json"]);
    assert_eq!(json_out.status.code(), Some(0), "{}", transcript(&json_out));
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(v["without_secrets"]["missing"], serde_json::json!(missing));
    assert_eq!(
        v["without_secrets"]["unknown_ids"]["conference-camera"],
        serde_json::json!(["CAMERA_API_TOKEN", "FLEETFORM_HASH_KEY", "VISION_REGISTRY_PASSWORD"])
    );
    assert!(v["without_secrets"]["unknown_ids"].get("building-monitoring").is_none());

    // Markdown in CI implies it; the comment says what was missing.
    let mut cmd = fleetform();
    let md_out = cmd
        .env("CI", "true")
        .args(["plan", "--hub", HUB, EXAMPLE_DEPLOYMENTS, "--format", "markdown"])
        .output()
        .unwrap();
    assert_eq!(md_out.status.code(), Some(0), "{}", transcript(&md_out));
    assert!(stderr(&md_out).contains("implied by --format markdown with CI set"), "{}", transcript(&md_out));
    let md = stdout(&md_out);
    assert!(
        md.contains("> [!NOTE]\n> Planned without secrets: ACR\\_PASSWORD")
            || md.contains("> [!NOTE]\n> Planned without secrets: ACR_PASSWORD"),
        "{md}"
    );
    insta::assert_snapshot!("plan_markdown_without_secrets", md);

    // Without CI, a missing secret is still an error, and such a plan is never saved.
    assert_eq!(bare(&[]).status.code(), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("plan.json");
    let out = bare(&["--without-secrets", "--out", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(stderr(&out).contains("cannot save a plan made without secrets"), "{}", transcript(&out));
    assert!(!saved.exists());
}
