//! Guards on input size and shape: what would abort, crawl or exhaust memory is refused
//! with a spanned problem instead.

mod common;

use common::*;

/// 1,500+ levels overflowed the stack (exit 134) in the KDL parser, the decoder and `fmt`.
#[test]
fn deep_nesting_is_a_spanned_problem_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.kdl");
    // Level 1 on line 1, level 2 on line 2; the 127th `k {` on line 3 opens level 129,
    // its brace at column 3 * 126 + 3.
    let text = format!("deployment \"a\" {{\n    twin {{\n{}\n{}\n", "k {".repeat(2_000), "}".repeat(2_002));
    std::fs::write(&file, &text).unwrap();
    let name = file.display().to_string();

    let out = fleetform().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("nested more than 128 levels deep"), "{err}");
    assert!(err.contains(&format!("{name}:3:381")), "{err}");

    let out = fleetform().args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let p = &json["problems"][0];
    assert_eq!((p["line"].as_u64(), p["column"].as_u64()), (Some(3), Some(381)), "{p}");
    assert_eq!(p["code"], "too-many");

    // Top level, for fmt: refused, and the file is left as it was.
    let top = "a {".repeat(5_000);
    std::fs::write(&file, &top).unwrap();
    let out = fleetform().arg("fmt").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(stderr(&out).contains(&format!("{name}:1:387")), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), top);
}

/// Exactly at the limit is still read (and then judged on its content as usual).
#[test]
fn nesting_at_the_limit_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.kdl");
    std::fs::write(&file, format!("{}{}\n", "a {".repeat(128), "}".repeat(128))).unwrap();
    let out = fleetform().args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    assert!(!stdout(&out).contains("nested more than"), "{}", transcript(&out));
    assert!(out.status.code().is_some(), "no crash: {}", transcript(&out));
}
