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
    f.set_len(4 * 1024 * 1024 + 1).unwrap();
    let out = fleetform().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("is 4194305 bytes; deployment files may be at most 4194304 bytes"), "{err}");
}

/// A standard deployment with one module, whose twin is `twin_body` (KDL children).
fn with_twin(twin_body: &str) -> String {
    format!(
        "deployment \"big\" {{\n    priority 1\n    target \"tags.a='b'\"\n    runtime {{\n        edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"\n        edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\"\n    }}\n    module \"M\" image=\"m:1\" {{\n        twin {{\n{twin_body}        }}\n    }}\n}}\n"
    )
}

/// `n` twin properties `k10`, `k11`, … each holding `counted` letters and `tabs` tabs
/// (control characters, which the hub does not count).
fn twin_props(n: usize, counted: usize, tabs: usize) -> String {
    let value = format!("{}{}", "a".repeat(counted), "\\t".repeat(tabs));
    (10..10 + n).map(|i| format!("            k{i} \"{value}\"\n")).collect()
}

/// The hub counts each key's UTF-8 bytes plus each value's characters (control
/// characters excluded): 40 × (3 + 1,000) = 40,120 bytes, over 32,768.
#[test]
fn a_twin_over_the_hubs_32_kb_is_a_spanned_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.kdl");
    std::fs::write(&file, with_twin(&twin_props(40, 1_000, 0))).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("40120 bytes by the hub's size rule"), "{err}");
    // The `twin` node is on line 9, indented 8.
    assert!(err.contains(&format!("{}:9:9]", file.display())), "{err}");

    let out = fleetform().args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let p = &json["problems"][0];
    assert_eq!((p["code"].as_str(), p["line"].as_u64(), p["column"].as_u64()), (Some("too-many"), Some(9), Some(9)));
    assert_eq!(
        p["message"],
        "deployment \"big\" writes 40120 bytes of desired properties into `M`; the hub allows 32768"
    );
    assert_eq!(json["problems"].as_array().unwrap().len(), 1, "{json}");
}

/// Exactly 32 × (3 + 1,021) = 32,768 by the hub's rule is allowed, though the JSON text
/// (quotes, colons, and tabs written as `\t`) is well over 32 KB.
#[test]
fn a_twin_at_the_limit_by_the_hubs_rule_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.kdl");
    std::fs::write(&file, with_twin(&twin_props(32, 1_021, 100))).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));

    // One more character anywhere tips it over.
    let mut props = twin_props(32, 1_021, 100);
    props.push_str("            k \"\"\n");
    std::fs::write(&file, with_twin(&props)).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(stderr(&out).contains("writes 32769 bytes"), "{}", stderr(&out));
}

/// Module settings all live in `$edgeAgent`'s twin: too much of them is an error on the
/// biggest module.
#[test]
fn edge_agent_desired_properties_over_32_kb_point_at_the_biggest_module() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.kdl");
    let modules: String = (0..30)
        .map(|i| {
            let value = "v".repeat(if i == 7 { 3_000 } else { 1_000 });
            format!("    module \"m{i:02}\" image=\"m:1\" {{\n        env BIG=\"{value}\"\n    }}\n")
        })
        .collect();
    let text = format!("layered \"agent\" {{\n    priority 5\n    target \"tags.a='b'\"\n{modules}}}\n");
    std::fs::write(&file, text).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    // Modules take 3 lines each after the 3-line header; m07's name is on line 4 + 7 × 3.
    assert!(err.contains(&format!("{}:25:12]", file.display())), "{err}");
    // By hand, per module: "m07" 3, type+docker 10, status+running 13,
    // restartPolicy+always 19, settings+image+"m:1" 16, env+BIG+value 11, plus the value:
    // 72 + 3,000 = 3,072 for m07, 1,072 for each of the other 29; plus "modules" (7):
    // 7 + 29 × 1,072 + 3,072 = 34,167.
    assert!(err.contains("largest module: 3072 bytes"), "{err}");
    let out = fleetform().args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json["problems"][0]["message"],
        "deployment \"agent\" writes 34167 bytes of desired properties into `$edgeAgent`; the hub allows 32768"
    );
}

/// A createOptions JSON error inside a 1 MB string prints a short window, in KDL and in
/// an imported manifest.
#[test]
fn a_megabyte_of_bad_create_options_prints_a_bounded_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("co.kdl");
    let filler = "x".repeat(1_000_000);
    let bad = format!("{{\"HostConfig\":{{\"Binds\":\"{filler}\",}}}}");
    let text = with_twin("").replace(
        "module \"M\" image=\"m:1\" {\n",
        &format!("module \"M\" image=\"m:1\" {{\n        create-options #\"{bad}\"#\n"),
    );
    std::fs::write(&file, text).unwrap();
    let out = fleetform().args(["validate"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("create-options is not valid JSON"), "{err}");
    assert!(err.len() < 20_000, "{} bytes of error", err.len());

    let manifest = dir.path().join("deployment.json");
    let json = serde_json::json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "a:1"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "h:1"}}
            },
            "modules": {"M": {"type": "docker", "status": "running", "restartPolicy": "always",
                "settings": {"image": "m:1", "createOptions": bad}}}
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}, "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}
    }});
    std::fs::write(&manifest, serde_json::to_string(&json).unwrap()).unwrap();
    let out = fleetform()
        .args(["import", "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("createOptions is not JSON"), "{err}");
    assert!(err.len() < 20_000, "{} bytes of error", err.len());
}

/// The 52 MB manifest took 56 s and 2.3 GB; anything over the hub's own ceiling is
/// refused before it is read.
#[test]
fn oversized_manifests_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("deployment.json");
    let f = std::fs::File::create(&manifest).unwrap();
    f.set_len(52_000_000).unwrap();
    let out = fleetform()
        .args(["import", "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    let err = err.split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
    assert!(err.contains("is 52000000 bytes; deployment manifests may be at most 4194304 bytes"), "{err}");
    assert!(err.contains("32 KB of desired properties per twin"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing written");
}

/// `fmt` and `--ref` read through the same size limit as `validate`.
#[test]
fn fmt_and_git_reads_share_the_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.kdl");
    let text = format!("// {}\n", "x".repeat(4 * 1024 * 1024));
    std::fs::write(&file, &text).unwrap();
    let out = fleetform().arg("fmt").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(stderr(&out).contains("deployment files may be at most 4194304 bytes"), "{}", stderr(&out));

    let repo = git2::Repository::init(dir.path()).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(std::path::Path::new("big.kdl")).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "big", &tree, &[]).unwrap();
    std::fs::write(&file, "").unwrap();
    let out = fleetform().args(["validate", "--ref", "HEAD"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("HEAD:big.kdl is 4194308 bytes; deployment files may be at most 4194304 bytes"), "{err}");
}
