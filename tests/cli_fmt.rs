//! `fleetform fmt`: canonical layout, comments kept, `--check` changes nothing.

mod common;

use common::*;

#[test]
fn examples_are_formatted() {
    let out = fleetform().args(["fmt", "--check", "examples"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn check_names_files_then_fmt_fixes_them_keeping_comments() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "// why this exists\ndeployment   \"a\" {\n  priority 10 // bump for the canary\n  target \"*\"\n      runtime { edge-agent image=\"x\"; edge-hub image=\"y\" }\n}\n";
    let file = dir.path().join("a.kdl");
    std::fs::write(&file, messy).unwrap();
    let tidy = dir.path().join("b.kdl");
    std::fs::write(&tidy, "layered \"b\" {\n    priority 1\n    target \"*\"\n}\n").unwrap();

    let out = fleetform().args(["fmt", "--check"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), file.display().to_string());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), messy, "--check changes nothing");

    let out = fleetform().arg("fmt").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        formatted,
        "// why this exists\ndeployment \"a\" {\n    priority 10 // bump for the canary\n    target \"*\"\n    runtime {\n        edge-agent image=\"x\"\n        edge-hub image=\"y\"\n    }\n}\n"
    );
    let out = fleetform().args(["fmt", "--check"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn fmt_leaves_invalid_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.kdl");
    std::fs::write(&file, "deployment \"a\" {\n").unwrap();
    let out = fleetform().arg("fmt").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fleetform::syntax"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "deployment \"a\" {\n");
}
