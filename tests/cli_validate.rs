//! `fleetform validate`: the examples pass, and every bad input is reported with its
//! location and what to do (snapshots show exactly what a user sees).

mod common;

use common::*;

#[test]
fn example_campus_is_valid() {
    let out = fleetform().args(["validate", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(stdout(&out), "5 deployments in 5 files: valid\n");
}

#[test]
fn every_bad_input_is_a_spanned_diagnostic() {
    let mut entries: Vec<_> = std::fs::read_dir("tests/bad").unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    assert!(entries.len() >= 20, "at least 20 bad inputs");
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let out = fleetform().arg("validate").arg(&path).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", transcript(&out));
        assert!(!err.contains("panicked"), "{name} panicked");
        assert!(err.contains("fleetform::"), "{name}: no diagnostic code");
        assert!(err.contains("help:"), "{name}: no help line");
        // The header names file:line:col.
        let located = err
            .lines()
            .any(|l| l.contains(",-[tests/bad/") && l.trim_end().ends_with(']') && l.matches(':').count() >= 2);
        assert!(located, "{name}: no file:line:col in\n{err}");
        insta::assert_snapshot!(name, transcript(&out));
    }
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let out = fleetform().args(["validate", "tests/bad"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // One file with a syntax error does not hide the problems in the others.
    assert!(err.contains("fleetform::syntax"));
    assert!(err.contains("fleetform::too-many"));
    assert!(err.contains("fleetform::not-in-layered"));
    let count_line = err.lines().last().unwrap();
    let n: usize = count_line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 34, "{count_line}");
}

#[test]
fn json_diagnostics_carry_positions() {
    let out = fleetform().args(["validate", "--format", "json", "tests/bad/status_typo.kdl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let p = &v["problems"][0];
    assert_eq!(p["code"], "invalid-enum");
    assert_eq!(p["file"], "tests/bad/status_typo.kdl");
    assert_eq!(p["line"], 9);
    assert_eq!(p["column"], 16);
    assert!(p["help"].as_str().unwrap().contains("did you mean \"running\""));

    let ok = fleetform().args(["validate", "--format", "json", EXAMPLE_DEPLOYMENTS]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["deployments"].as_array().unwrap().len(), 5);
}

#[test]
fn missing_path_is_a_clear_error() {
    let out = fleetform().args(["validate", "no/such/dir"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such/dir: no such file or directory"));
}

#[test]
fn spans_point_inside_strings() {
    // The double quote sits at column 30 of line 3, inside the KDL string.
    let out =
        fleetform().args(["validate", "--format", "json", "tests/bad/target_double_quotes.kdl"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(3), Some(30)));
    let out =
        fleetform().args(["validate", "--format", "json", "tests/bad/create_options_not_json.kdl"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The trailing comma's closing brace: `{"HostConfig": {"Memory": 1024,}}`
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(9), Some(57)));
}

#[test]
fn create_options_over_the_agents_limit_are_rejected() {
    // 100 pieces of 512 characters is the most the agent joins.
    let env: Vec<String> = (0..520).map(|i| format!("\"X{i}={}\"", "y".repeat(100))).collect();
    let text = format!(
        "deployment \"a\" {{\n    priority 1\n    target \"*\"\n    runtime {{\n        edge-agent image=\"a\"\n        edge-hub image=\"b\"\n    }}\n    module \"M\" image=\"m\" {{\n        create-options #\"{{\"Env\":[{}]}}\"#\n    }}\n}}\n",
        env.join(",")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.kdl");
    std::fs::write(&file, text).unwrap();
    let out = fleetform().args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"][0]["code"], "too-many");
    assert_eq!(v["problems"][0]["line"], 9);
    assert!(v["problems"][0]["message"].as_str().unwrap().contains("characters long once compacted"));
}
