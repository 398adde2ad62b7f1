//! Issue #12 ("every guard fails closed"), the hub side: half snapshots, the identity of
//! the hub a saved plan was made against, retried reads, and twins of the wrong shape.
//! The real binary, run as a user would, against snapshot directories and 127.0.0.1.

mod common;

use std::path::Path;

use common::{stderr, stdout, transcript};

use common::fleetform;

/// stderr with miette's line wrapping undone, so that messages can be matched whole.
fn flat_stderr(o: &std::process::Output) -> String {
    stderr(o).split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ")
}

fn query(hub: &Path, text: &str) -> std::process::Output {
    fleetform().args(["query", text, "--hub"]).arg(hub).output().unwrap()
}

/// Item 5: a snapshot directory missing one of its two files is an error naming the file,
/// never an empty hub or an empty fleet; explicitly empty files are fine.
#[test]
fn a_half_snapshot_is_refused_and_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path();
    std::fs::write(hub.join("devices.jsonl"), "{\"deviceId\":\"a\",\"capabilities\":{\"iotEdge\":true}}\n").unwrap();
    let out = query(hub, "SELECT deviceId FROM devices");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = flat_stderr(&out);
    assert!(err.contains("configurations.json is missing"), "{err}");
    assert!(err.contains("it holds devices.jsonl"), "{err}");
    assert!(err.contains("fleetform snapshot --hub"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", transcript(&out));

    std::fs::remove_file(hub.join("devices.jsonl")).unwrap();
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    let out = common::with_example_env(&mut fleetform())
        .args(["plan", common::EXAMPLE_DEPLOYMENTS, "--hub"])
        .arg(hub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = flat_stderr(&out);
    assert!(err.contains("devices.json or devices.jsonl is missing"), "{err}");
    assert!(err.contains("it holds configurations.json"), "{err}");

    // Explicitly empty: a hub with no deployments and no devices.
    std::fs::write(hub.join("devices.jsonl"), "").unwrap();
    let out = query(hub, "SELECT deviceId FROM devices");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(stdout(&out), "", "{}", transcript(&out));
}

/// Item 7: a saved plan names its hub by a stable identity: the canonical path of a
/// snapshot directory, whatever spelling `--hub` used; a copy elsewhere is another hub.
#[test]
fn a_saved_plan_knows_its_hub_by_canonical_path() {
    let work = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::copy_dir(&root.join("examples/campus/hub"), &work.path().join("hub"));
    common::copy_dir(&root.join("examples/campus/hub"), &work.path().join("copy"));
    let deployments = root.join(common::EXAMPLE_DEPLOYMENTS);
    let run = |args: &[&str]| {
        common::with_example_env(&mut fleetform())
            .current_dir(work.path())
            .args(args)
            .arg(&deployments)
            .env_remove("FLEETFORM_HUB")
            .output()
            .unwrap()
    };
    let out = run(&["plan", "--hub", "./hub", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(work.path().join("p.json")).unwrap()).unwrap();
    let canonical = std::fs::canonicalize(work.path().join("hub")).unwrap();
    assert_eq!(saved["hub_id"], format!("snapshot {}", canonical.display()), "{saved}");

    // The copy holds the same deployments, but it is another hub.
    let out = run(&["apply", "p.json", "--auto-approve", "--hub", "copy"]);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(flat_stderr(&out).contains("the plan was made against snapshot"), "{}", transcript(&out));
    let untouched = std::fs::read(work.path().join("copy/configurations.json")).unwrap();
    assert_eq!(untouched, std::fs::read(root.join("examples/campus/hub/configurations.json")).unwrap());

    // `hub` is `./hub`: carried out.
    let out = run(&["apply", "p.json", "--auto-approve", "--hub", "hub"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(stdout(&out).contains("Apply complete"), "{}", transcript(&out));
}
