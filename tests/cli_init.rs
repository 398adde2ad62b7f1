//! `fleetform init`: the README's three commands from nothing to a first plan, the
//! refusal to overwrite, and no half-written skeleton.

mod common;

use std::path::Path;

use common::{fleetform, stderr, stdout};

const SKELETON: &[&str] = &[
    "deployments/base.kdl",
    ".github/workflows/fleetform-plan.yml",
    ".github/workflows/fleetform-apply.yml",
    ".gitignore",
    "README.md",
];

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    fleetform().current_dir(dir).args(args).output().unwrap()
}

#[test]
fn three_commands_from_nothing_to_a_first_plan() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    // The README's "Start a repository" commands, verbatim.
    let init = run(dir, &["init", "my-fleet"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let generate = run(dir, &["hub", "generate", "--devices", "300", "--out", "my-fleet/local-hub"]);
    assert!(generate.status.success(), "{}", stderr(&generate));
    let plan = run(dir, &["plan", "--hub", "my-fleet/local-hub", "my-fleet/deployments"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    // An empty generated hub: the one declared deployment is created, and every
    // production IoT Edge device in it gets its modules.
    assert!(text.contains("+ fleet-base  standard   p10  create fleet-base-"), "{text}");
    assert!(
        text.contains(
            "+ module SimulatedTemperatureSensor (mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5)"
        ),
        "{text}"
    );
    assert!(text.contains("Plan: 1 to create, 0 to update, 0 to replace, 0 to delete."), "{text}");
    // No secrets in the skeleton: planning needed no FLEETFORM_HASH_KEY and nothing warns
    // about the files themselves.
    assert!(!stderr(&plan).contains("error"), "{}", stderr(&plan));

    for rel in SKELETON {
        assert!(dir.join("my-fleet").join(rel).is_file(), "{rel} missing");
    }
    // The generated snapshot the quick start made is ignored by the .gitignore written.
    let ignore = std::fs::read_to_string(dir.join("my-fleet/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "/local-hub/"), "{ignore}");
    let validate = run(dir, &["validate", "my-fleet/deployments"]);
    assert_eq!(stdout(&validate), "1 deployment in 1 file: valid\n");
}

#[test]
fn the_workflows_written_are_the_examples_and_use_the_action() {
    let home = tempfile::tempdir().unwrap();
    assert!(run(home.path(), &["init"]).status.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (written, example) in [
        (".github/workflows/fleetform-plan.yml", "examples/ci/github-pr-plan.yml"),
        (".github/workflows/fleetform-apply.yml", "examples/ci/github-apply.yml"),
    ] {
        let body = std::fs::read_to_string(home.path().join(written)).unwrap();
        assert_eq!(body, std::fs::read_to_string(root.join(example)).unwrap(), "{written}");
        assert!(body.contains("uses: your-org/fleetform@main"), "{written} does not use the action");
    }
}

#[test]
fn existing_files_are_listed_and_nothing_is_written() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    std::fs::write(dir.join("README.md"), "mine\n").unwrap();
    std::fs::create_dir_all(dir.join("deployments")).unwrap();
    std::fs::write(dir.join("deployments/base.kdl"), "// mine\n").unwrap();

    let out = run(dir, &["init", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(". already holds deployments/base.kdl, README.md"), "{err}");
    assert!(err.contains("nothing was written") && err.contains("--force"), "{err}");
    assert!(!dir.join(".gitignore").exists() && !dir.join(".github").exists(), "init wrote something after refusing");
    assert_eq!(std::fs::read_to_string(dir.join("README.md")).unwrap(), "mine\n");

    let forced = run(dir, &["init", ".", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(std::fs::read_to_string(dir.join("README.md")).unwrap().starts_with("# IoT Edge deployments"));
    assert!(dir.join(".github/workflows/fleetform-plan.yml").is_file());
}

#[test]
fn a_failure_half_way_leaves_no_file_and_no_directory() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    // `.github` is a file: the workflows cannot be written, after the deployment was staged.
    std::fs::write(dir.join(".github"), "").unwrap();
    let out = run(dir, &["init", "repo-a"]);
    assert!(out.status.success(), "a sibling file is not in the way: {}", stderr(&out));
    std::fs::create_dir(dir.join("repo-b")).unwrap();
    std::fs::write(dir.join("repo-b/.github"), "").unwrap();

    let out = run(dir, &["init", "repo-b"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot create repo-b/.github/workflows"), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.join("repo-b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [".github"], "init left files behind");
}
