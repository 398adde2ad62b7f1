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

fn many_problems(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let file = dir.join("many.kdl");
    let text: String = (0..n).map(|i| format!("unknown{i} \"x\"\n")).collect();
    std::fs::write(&file, text).unwrap();
    file
}

/// Text output showed every problem and re-scanned the file for each: 8,000 took 34 s.
/// The bound here is a coarse guard against going quadratic again, not a measurement
/// (benches/validate.rs measures).
#[test]
fn thousands_of_problems_render_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = many_problems(dir.path(), 9_000);
    let started = std::time::Instant::now();
    let out = fleetform().args(["validate", "--max-problems", "0"]).arg(&file).output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("9000 problems found"), "{}", &err[err.len().saturating_sub(500)..]);
    assert!(err.contains(&format!("{}:9000:1", file.display())), "last problem shown with its location");
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
}

#[test]
fn text_output_caps_the_problems_shown_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = many_problems(dir.path(), 250);
    let name = file.display().to_string();
    let out = fleetform().arg("validate").arg(&file).output().unwrap();
    let err = stderr(&out);
    assert!(err.contains(&format!("{name}:100:1")), "{err}");
    assert!(!err.contains(&format!("{name}:101:1")), "only 100 by default");
    assert!(err.contains("… and 150 more problems (--max-problems 0 shows all)"), "{err}");
    assert!(err.contains("250 problems found"), "{err}");

    let out = fleetform().args(["validate", "--max-problems", "3"]).arg(&file).output().unwrap();
    let err = stderr(&out);
    assert!(err.contains(&format!("{name}:3:1")) && !err.contains(&format!("{name}:4:1")), "{err}");
    assert!(err.contains("… and 247 more problems"), "{err}");

    // JSON is for machines: every problem, uncapped.
    let out = fleetform().args(["validate", "--format", "json", "--max-problems", "3"]).arg(&file).output().unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["problems"].as_array().unwrap().len(), 250);
}

/// A problem inside a 1 MB line showed the whole line; the snippet is now a window.
#[test]
fn a_problem_in_a_huge_line_prints_a_short_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wide.kdl");
    let filler = "a".repeat(1_000_000);
    std::fs::write(&file, format!("deployment \"a\" {{ x \"{filler}\"; bogus 1 \"{filler}\" }}\n")).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.len() < 20_000, "snippet not truncated: {} bytes", err.len());
    assert!(err.contains("bogus"), "{err}");
    // `deployment "a" { x "` is 20 characters, then the filler, then `"; `.
    assert!(err.contains(&format!("{}:1:1000024]", file.display())), "location still exact");
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.kdl");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(16 * 1024 * 1024 + 1).unwrap();
    let out = fleetform().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("is 16777217 bytes; deployment files may be at most 16777216 bytes"), "{err}");
}
