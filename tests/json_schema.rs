//! `schema/plan.schema.json` and `schema/explain.schema.json`: the checked-in files are
//! what `fleetform schema` generates from the output types, the example's real outputs
//! validate against them, and documents that break the documented shape do not.

mod common;

use std::path::Path;

use common::{cli, stderr};
use serde_json::{Value, json};

const HUB: &str = "examples/campus/hub";
const DEPLOYMENTS: &str = "examples/campus/deployments";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_json(args: &[&str]) -> Value {
    let out = cli().current_dir(root()).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON: {e}"))
}

fn checked_in(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("schema").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator(schema: &Value) -> jsonschema::Validator {
    // The schemas declare draft 2020-12; the validator must honour that, not guess.
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::new(schema).expect("the schema is itself valid JSON Schema 2020-12")
}

/// An edit that makes a valid document break the documented shape.
type Breaks = Box<dyn Fn(&mut Value)>;

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn the_checked_in_schemas_are_what_the_types_generate() {
    for (doc, file) in [("plan", "plan.schema.json"), ("explain", "explain.schema.json")] {
        let out = cli().args(["schema", doc]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let on_disk = std::fs::read(root().join("schema").join(file)).unwrap();
        assert!(
            out.stdout == on_disk,
            "schema/{file} is stale: regenerate it with `cargo run -- schema {doc} > schema/{file}` and review the diff"
        );
    }
}

#[test]
fn the_example_plans_validate_against_the_plan_schema() {
    let schema = checked_in("plan.schema.json");
    let v = validator(&schema);
    // The top-level fields schema/plan.md documents, all required.
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for field in ["format_version", "hub", "summary", "actions", "steps", "cohorts", "warnings"] {
        assert!(required.contains(&field), "the plan schema does not require {field}: {required:?}");
    }
    let plans = [
        // Every action kind but delete, cohorts with changes, warnings.
        run_json(&["plan", "--format", "json", "--hub", HUB, DEPLOYMENTS]),
        // Deletes.
        run_json(&["plan", "--format", "json", "--prune", "--hub", HUB, DEPLOYMENTS]),
        // The hub's own deployments: nothing to do.
        run_json(&["plan", "--format", "json", "--hub", HUB, "examples/campus/hub-state"]),
    ];
    let kinds: Vec<&str> =
        plans.iter().flat_map(|p| p["actions"].as_array().unwrap()).map(|a| a["action"].as_str().unwrap()).collect();
    for kind in ["create", "update", "replace", "delete", "orphan", "unmanaged", "no-op"] {
        assert!(kinds.contains(&kind), "no example plan has a {kind} action to check");
    }
    assert!(plans.iter().any(|p| !p["warnings"].as_array().unwrap().is_empty()), "no warning to check");
    for plan in &plans {
        assert_eq!(errors(&v, plan), Vec::<String>::new());
    }
}

#[test]
fn the_example_explanations_validate_against_the_explain_schema() {
    let schema = checked_in("explain.schema.json");
    let v = validator(&schema);
    let plan = run_json(&["plan", "--format", "json", "--hub", HUB, DEPLOYMENTS]);
    // One device of every stack the plan leaves, plus one unmanaged and one not IoT Edge
    // (the devices tests/cli_explain.rs uses), as declared and as on the hub now.
    let mut devices: Vec<String> =
        plan["cohorts"].as_array().unwrap().iter().map(|c| c["samples"][0].as_str().unwrap().to_string()).collect();
    devices.extend(["edge-000295".to_string(), "dev-000069".to_string()]);
    let mut skipped = 0;
    for device in &devices {
        for extra in [&[][..], &["--current"][..]] {
            let mut args = vec!["explain", device.as_str(), DEPLOYMENTS, "--hub", HUB, "--format", "json"];
            args.extend(extra);
            let doc = run_json(&args);
            skipped += doc["stack"]["skipped"].as_array().unwrap().len();
            assert_eq!(errors(&v, &doc), Vec::<String>::new(), "explain {device} {extra:?}");
        }
    }
    assert!(skipped > 0, "no explanation has a skipped deployment to check");
}

#[test]
fn a_plan_with_base_validates_with_its_change() {
    // A repository holding the example's deployments, committed once; the working tree
    // then bumps one image, and `--base HEAD` adds the change's own plan as `change`.
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join(DEPLOYMENTS), &dir.path().join("deployments"));
    let repo = git2::Repository::init(dir.path()).unwrap();
    let mut index = repo.index().unwrap();
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.com").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "deployments", &tree, &[]).unwrap();
    let base = dir.path().join("deployments/base.kdl");
    let text = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, text.replace("telemetry:3.2.0", "telemetry:3.3.0")).unwrap();

    let hub = root().join(HUB);
    let out = cli()
        .current_dir(dir.path())
        .args(["plan", "deployments", "--base", "HEAD", "--format", "json", "--hub"])
        .arg(&hub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let change = &plan["change"];
    assert!(change.is_object(), "no change in a --base plan");
    assert!(change.get("change").is_none(), "the change's plan nests another");
    assert_eq!(change["summary"]["replace"], 1, "{}", change["summary"]);
    let v = validator(&checked_in("plan.schema.json"));
    assert_eq!(errors(&v, &plan), Vec::<String>::new());
    let mut broken = plan.clone();
    broken["change"]["summary"] = json!("one replace");
    assert!(!v.is_valid(&broken), "the schema does not describe `change`");
}

/// Documents that break what schema/plan.md promises are refused: the schema would catch
/// an output that changed shape.
#[test]
fn the_plan_schema_refuses_what_the_documentation_rules_out() {
    let v = validator(&checked_in("plan.schema.json"));
    let good = run_json(&["plan", "--format", "json", "--hub", HUB, DEPLOYMENTS]);
    let broken: Vec<(&str, Breaks)> = vec![
        ("no summary.devices", Box::new(|p| drop(p["summary"].as_object_mut().unwrap().remove("devices")))),
        ("a count as a string", Box::new(|p| p["summary"]["create"] = json!("1"))),
        ("an unknown action", Box::new(|p| p["actions"][0]["action"] = json!("upsert"))),
        ("a step op apply does not run", Box::new(|p| p["steps"][0]["op"] = json!("patch"))),
        ("a step without its number", Box::new(|p| drop(p["steps"][0].as_object_mut().unwrap().remove("number")))),
        ("a change of no known kind", Box::new(|p| p["cohorts"][0]["changes"][0]["kind"] = json!("module-renamed"))),
        ("a warning of no known check", Box::new(|p| p["warnings"][0]["check"] = json!("looks-odd"))),
        ("a negative device count", Box::new(|p| p["cohorts"][0]["count"] = json!(-1))),
        ("no format_version", Box::new(|p| drop(p.as_object_mut().unwrap().remove("format_version")))),
    ];
    assert!(errors(&v, &good).is_empty());
    for (what, breaks) in broken {
        let mut doc = good.clone();
        breaks(&mut doc);
        assert!(!v.is_valid(&doc), "the plan schema accepts {what}");
    }
}

#[test]
fn the_explain_schema_refuses_what_the_documentation_rules_out() {
    let v = validator(&checked_in("explain.schema.json"));
    let good = run_json(&["explain", "b20-f3-conf-000062", DEPLOYMENTS, "--hub", HUB, "--format", "json"]);
    assert!(errors(&v, &good).is_empty());
    let broken: Vec<(&str, Breaks)> = vec![
        ("a state other than declared or current", Box::new(|e| e["state"] = json!("planned"))),
        ("is_edge as a string", Box::new(|e| e["is_edge"] = json!("true"))),
        (
            "a skip without its reason",
            Box::new(|e| drop(e["stack"]["skipped"][0].as_object_mut().unwrap().remove("reason"))),
        ),
        (
            "a module entry without its value",
            Box::new(|e| {
                let modules = e["manifest"]["modules"].as_object_mut().unwrap();
                let first = modules.values_mut().next().unwrap();
                first.as_object_mut().unwrap().remove("value");
            }),
        ),
        ("no manifest", Box::new(|e| drop(e.as_object_mut().unwrap().remove("manifest")))),
    ];
    for (what, breaks) in broken {
        let mut doc = good.clone();
        breaks(&mut doc);
        assert!(!v.is_valid(&doc), "the explain schema accepts {what}");
    }
}
