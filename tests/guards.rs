//! Issue #12: every guard fails closed. The real binary against snapshot copies of the
//! example hub: hand-edited saved plans, symlinks, empty folders with --prune, FIFOs and
//! devices as paths, fmt through a link, and a repository git cannot read.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{DEMO_ENV, cli, transcript};

use proptest::prelude::*;
use serde_json::{Value, json};

fn deployments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/campus/deployments")
}

fn configurations(hub: &Path) -> Vec<u8> {
    std::fs::read(hub.join("configurations.json")).unwrap()
}

/// A snapshot copy of the example hub and the plan of the example against it, as JSON.
fn saved_plan() -> (tempfile::TempDir, Value) {
    let hub = common::campus_hub_copy();
    let file = hub.path().join("made.json");
    let out =
        cli().args(["plan", "--hub"]).arg(hub.path()).arg(deployments()).arg("--out").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let plan = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    (hub, plan)
}

/// `plan` with its MAC made again under the test's key, as whoever holds the key could:
/// the re-derivation must refuse the edit all the same.
fn resealed(plan: &Value) -> Value {
    let key = DEMO_ENV.iter().find(|(k, _)| *k == "FLEETFORM_HASH_KEY").unwrap().1;
    let mut plan = plan.clone();
    let mac = fleetform::plan::saved::plan_mac(key.as_bytes(), &plan);
    plan["mac"] = json!(mac.iter().map(|b| format!("{b:02x}")).collect::<String>());
    plan
}

/// `apply FILE PATHS` of `plan` (resealed) written to `name` in a fresh directory.
fn apply_edited(hub: &Path, plan: &Value, name: &str) -> Output {
    apply_as_written(hub, &resealed(plan), name)
}

/// `apply FILE PATHS` of `plan` exactly as given.
fn apply_as_written(hub: &Path, plan: &Value, name: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, serde_json::to_vec_pretty(plan).unwrap()).unwrap();
    cli().arg("apply").arg(&file).arg(deployments()).arg("--hub").arg(hub).output().unwrap()
}

fn steps(plan: &mut Value) -> &mut Vec<Value> {
    plan["steps"].as_array_mut().unwrap()
}

#[test]
fn an_appended_delete_of_an_unmanaged_deployment_is_refused() {
    let (hub, mut plan) = saved_plan();
    let n = steps(&mut plan).len() + 1;
    steps(&mut plan).push(json!({
        "number": n, "op": "delete", "name": "manual-hotfix", "id": "manual-hotfix",
        "priority": 0, "etag": null, "reason": "delete"
    }));
    let before = configurations(hub.path());
    let out = apply_edited(hub.path(), &plan, "plan.json");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the saved plan asks for what planning now would not do"), "{err}");
    assert!(err.contains("is not what planning now would do") && err.contains("(delete manual-"), "{err}");
    assert_eq!(configurations(hub.path()), before, "nothing was written");
}

/// The example plan is made without `--prune`: the orphaned `legacy-sensors` is kept. A
/// delete of it added by hand is what `plan --prune` would do, but not this plan.
#[test]
fn an_appended_prune_delete_in_a_plan_made_without_prune_is_refused() {
    let (hub, mut plan) = saved_plan();
    assert_eq!(plan["prune"], json!(false));
    let n = steps(&mut plan).len() + 1;
    steps(&mut plan).push(json!({
        "number": n, "op": "delete", "name": "legacy-sensors", "id": "legacy-sensors-d0574997",
        "priority": 35, "etag": null, "reason": "delete"
    }));
    let before = configurations(hub.path());
    let out = apply_edited(hub.path(), &plan, "plan.json");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", "");
    assert!(
        err.contains("step 6 (delete legacy-sensors") && err.contains("is not what planning now would do"),
        "{err}"
    );
    assert_eq!(configurations(hub.path()), before, "nothing was written");
}

#[test]
fn an_update_turned_into_a_delete_is_refused() {
    let (hub, mut plan) = saved_plan();
    let update = steps(&mut plan).iter_mut().find(|s| s["op"] == "update").expect("the example plan has an update");
    update["op"] = json!("delete");
    let before = configurations(hub.path());
    let out = apply_edited(hub.path(), &plan, "plan.json");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not what planning now would do"), "{err}");
    assert!(err.contains("the plan leaves out"), "the update is missing too: {err}");
    assert_eq!(configurations(hub.path()), before);
}

#[test]
fn a_dropped_create_of_a_replace_is_refused() {
    // Without its create, a replace's delete alone would remove the deployment.
    let (hub, mut plan) = saved_plan();
    let at = steps(&mut plan).iter().position(|s| s["op"] == "create" && s["reason"] == "replace");
    let Some(at) = at else { return };
    steps(&mut plan).remove(at);
    let before = configurations(hub.path());
    let out = apply_edited(hub.path(), &plan, "plan.json");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert_eq!(configurations(hub.path()), before);
}

#[test]
fn a_plan_file_is_known_by_its_content_not_its_name() {
    let (hub, plan) = saved_plan();
    let out = apply_edited(hub.path(), &plan, "p.plan");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Applying the plan saved at"), "{}", transcript(&out));
}

/// What applying `plan` (unchanged) does to a fresh hub copy: the reference the property
/// compares against, by each configuration's id and fleetform labels.
fn outcome(hub: &Path) -> Vec<(String, Value)> {
    let configs: Vec<Value> = serde_json::from_slice(&configurations(hub)).unwrap();
    let mut out: Vec<(String, Value)> =
        configs.iter().map(|c| (c["id"].as_str().unwrap_or_default().to_string(), c["labels"].clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[derive(Clone, Debug)]
enum Mutation {
    SetOp(usize, &'static str),
    Remove(usize),
    Swap(usize, usize),
    SetId(usize, &'static str),
    AppendDelete(&'static str),
    SetReason(usize, &'static str),
    Nothing,
}

const IDS: &[&str] = &["manual-hotfix", "campus-base-85df888b", "legacy-sensors-d0574997", "route-override-e7029ec9"];

fn mutation() -> impl Strategy<Value = Mutation> {
    let op = prop::sample::select(vec!["create", "update", "delete"]);
    let id = prop::sample::select(IDS.to_vec());
    let reason = prop::sample::select(vec!["create", "update", "replace", "delete", "stale copy"]);
    prop_oneof![
        (0..8usize, op).prop_map(|(i, o)| Mutation::SetOp(i, o)),
        (0..8usize).prop_map(Mutation::Remove),
        (0..8usize, 0..8usize).prop_map(|(i, j)| Mutation::Swap(i, j)),
        (0..8usize, id.clone()).prop_map(|(i, d)| Mutation::SetId(i, d)),
        id.prop_map(Mutation::AppendDelete),
        (0..8usize, reason).prop_map(|(i, r)| Mutation::SetReason(i, r)),
        Just(Mutation::Nothing),
    ]
}

fn mutate(plan: &mut Value, m: &Mutation) {
    let steps = steps(plan);
    let len = steps.len();
    match *m {
        Mutation::SetOp(i, op) => steps[i % len]["op"] = json!(op),
        Mutation::Remove(i) => {
            steps.remove(i % len);
        }
        Mutation::Swap(i, j) => steps.swap(i % len, j % len),
        Mutation::SetId(i, id) => steps[i % len]["id"] = json!(id),
        Mutation::AppendDelete(id) => steps.push(json!({
            "number": len + 1, "op": "delete", "name": id, "id": id,
            "priority": 0, "etag": null, "reason": "delete"
        })),
        Mutation::SetReason(i, r) => steps[i % len]["reason"] = json!(r),
        Mutation::Nothing => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any edit of a saved plan's steps is either refused with the hub untouched, or does
    /// exactly what the unedited plan (the one planning derives) does.
    #[test]
    fn a_mutated_plan_is_refused_or_does_what_the_rederived_plan_does(m in mutation()) {
        let (reference_hub, plan) = saved_plan();
        let reference = apply_edited(reference_hub.path(), &plan, "plan.json");
        prop_assert_eq!(reference.status.code(), Some(0), "{}", transcript(&reference));
        let expected = outcome(reference_hub.path());

        let hub = common::campus_hub_copy();
        let mut edited = plan.clone();
        mutate(&mut edited, &m);
        let before = configurations(hub.path());
        let out = apply_edited(hub.path(), &edited, "plan.json");
        match out.status.code() {
            Some(0) => prop_assert_eq!(outcome(hub.path()), expected, "{}", transcript(&out)),
            Some(1) => prop_assert_eq!(configurations(hub.path()), before, "{}", transcript(&out)),
            other => prop_assert!(false, "exit {:?}: {}", other, transcript(&out)),
        }
        // Whatever happened, the unmanaged deployment is still there.
        prop_assert!(outcome(hub.path()).iter().any(|(id, _)| id == "manual-hotfix"));
    }
}

#[cfg(unix)]
#[test]
fn symlinked_files_and_folders_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(deployments(), dir.path().join("linked")).unwrap();
    let single = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(deployments().join("base.kdl"), single.path().join("base.kdl")).unwrap();
    let direct = cli().arg("validate").arg(deployments()).output().unwrap();
    let linked = cli().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(linked.status.code(), Some(0), "{}", transcript(&linked));
    assert_eq!(
        String::from_utf8_lossy(&linked.stdout),
        String::from_utf8_lossy(&direct.stdout),
        "the same deployments through a link"
    );
    let one = cli().arg("validate").arg(single.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&one.stdout).contains("in 1 file: valid"), "{}", transcript(&one));
    // A link back up is a loop, reported rather than walked forever.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let looped = cli().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(looped.status.code(), Some(1), "{}", transcript(&looped));
}

#[test]
fn prune_with_no_deployments_is_refused_unless_allowed() {
    let empty = tempfile::tempdir().unwrap();
    let hub = common::campus_hub_copy();
    let before = configurations(hub.path());
    for cmd in [&["plan", "--prune"][..], &["apply", "--prune", "--auto-approve", "--allow-dirty"][..]] {
        let out = cli().args(cmd).arg("--hub").arg(hub.path()).arg(empty.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {}", transcript(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no deployments found in") && err.contains("--allow-empty"), "{err}");
        assert_eq!(configurations(hub.path()), before);
    }
    let out =
        cli().args(["plan", "--prune", "--allow-empty", "--hub"]).arg(hub.path()).arg(empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("campus-base"), "{}", transcript(&out));
    // Without --prune nothing is deleted, so an empty folder is only a warning.
    let val = cli().arg("validate").arg(empty.path()).output().unwrap();
    assert_eq!(val.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&val.stderr).contains("warning: no deployments found in"), "{}", transcript(&val));
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("x.kdl");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
        let out = cli().arg("validate").arg(path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}: {}", path.display(), transcript(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a regular file"), "{err}");
    }
    let out = cli().arg("fmt").arg(&fifo).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
}

#[cfg(unix)]
#[test]
fn fmt_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.kdl");
    std::fs::write(&target, "layered   \"b\" {\n  priority 1\n  target \"*\"\n}\n").unwrap();
    let link = dir.path().join("link.kdl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = cli().arg("fmt").arg(&link).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "layered \"b\" {\n    priority 1\n    target \"*\"\n}\n");
}

#[test]
fn apply_stops_when_git_cannot_say_whether_the_tree_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(repo)
            .output()
            .unwrap();
        assert!(ok.status.success(), "git {args:?}: {}", transcript(&ok));
    };
    git(&["init", "-q"]);
    for e in std::fs::read_dir(deployments()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), repo.join(e.file_name())).unwrap();
    }
    git(&["add", "."]);
    git(&["commit", "-qm", "deployments"]);
    std::fs::write(repo.join(".git/index"), "not an index").unwrap();
    let hub = common::campus_hub_copy();
    let before = configurations(hub.path());
    let out = cli().args(["apply", "--auto-approve", "--hub"]).arg(hub.path()).arg(repo).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot tell whether") && err.contains("--allow-dirty"), "{err}");
    assert_eq!(configurations(hub.path()), before);
    let forced =
        cli().args(["apply", "--auto-approve", "--allow-dirty", "--hub"]).arg(hub.path()).arg(repo).output().unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", transcript(&forced));
}

/// Review of #12, item 4: with FLEETFORM_HASH_KEY set, `plan --out` seals the plan with a
/// MAC and apply refuses any edit, `prune` included, before reading the hub's state.
#[test]
fn a_sealed_plan_refuses_every_edit() {
    let (hub, plan) = saved_plan();
    let mac = plan["mac"].as_str().expect("plan --out with the key set writes a mac");
    assert_eq!(mac.len(), 64, "HMAC-SHA256 in hex: {mac}");
    let before = configurations(hub.path());
    let mut pruning = plan.clone();
    pruning["prune"] = json!(true);
    let mut dropped = plan.clone();
    dropped.as_object_mut().unwrap().remove("mac");
    let mut other_key = plan.clone();
    other_key["summary"] = json!("Plan: nothing to see here.");
    for (what, edited) in [("prune: true", &pruning), ("summary", &other_key)] {
        let out = apply_as_written(hub.path(), edited, "plan.json");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", transcript(&out));
        let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", " ");
        assert!(err.contains("fleetform::apply::altered_plan"), "{what}: {err}");
        assert!(err.contains("its MAC does not match its content"), "{what}: {err}");
    }
    let out = apply_as_written(hub.path(), &dropped, "plan.json");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", " ");
    assert!(err.contains("altered_plan") && err.contains("it has no MAC"), "{err}");
    // A sealed plan and no key to check it with: refused, saying which key to set.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let out = cli()
        .env_remove("FLEETFORM_HASH_KEY")
        .arg("apply")
        .arg(&file)
        .arg(deployments())
        .arg("--hub")
        .arg(hub.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", " ");
    assert!(err.contains("carries a MAC, but FLEETFORM_HASH_KEY is not set"), "{err}");
    assert_eq!(configurations(hub.path()), before, "nothing was written");
    // Unedited, it applies.
    let out = apply_as_written(hub.path(), &plan, "plan.json");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

/// Review of #12, item 4: a plan file that prunes over an empty set of deployments is
/// refused like `apply --prune` on an empty folder, unless --allow-empty: a crafted plan
/// (`paths: ["empty"]`, no configurations, `prune: true`) cannot delete every managed
/// deployment, even signed with the key.
#[test]
fn a_pruning_plan_over_no_deployments_needs_allow_empty() {
    let (hub, _) = saved_plan();
    let before = configurations(hub.path());
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("empty")).unwrap();
    // The re-derived plan's deletes, so that only the empty-set guard stands in the way.
    let pruned = cli()
        .current_dir(work.path())
        .args(["plan", "empty", "--prune", "--allow-empty", "--out", "p.json", "--hub"])
        .arg(hub.path())
        .output()
        .unwrap();
    assert_eq!(pruned.status.code(), Some(0), "{}", transcript(&pruned));
    let mut crafted: Value = serde_json::from_slice(&std::fs::read(work.path().join("p.json")).unwrap()).unwrap();
    assert!(steps(&mut crafted).iter().all(|s| s["op"] == "delete") && !steps(&mut crafted).is_empty());
    crafted["paths"] = json!(["empty"]);
    crafted["configurations"] = json!([]);
    crafted["prune"] = json!(true);
    std::fs::write(work.path().join("crafted.json"), serde_json::to_vec_pretty(&resealed(&crafted)).unwrap()).unwrap();
    let out = cli().current_dir(work.path()).args(["apply", "crafted.json", "--hub"]).arg(hub.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", " ");
    assert!(err.contains("no deployments found in empty") && err.contains("--allow-empty"), "{err}");
    assert_eq!(configurations(hub.path()), before, "nothing was deleted");
    let out = cli()
        .current_dir(work.path())
        .args(["apply", "crafted.json", "--allow-empty", "--hub"])
        .arg(hub.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "on purpose: {}", transcript(&out));
    assert_ne!(configurations(hub.path()), before);
}

/// Review of #12, item 5: a file starting with `{` is a plan file whatever its name, and
/// a broken one says where it breaks instead of being read as KDL.
#[test]
fn a_broken_plan_file_is_reported_as_json() {
    let (hub, plan) = saved_plan();
    let text = serde_json::to_string_pretty(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("trunc.json");
    std::fs::write(&truncated, &text[..300]).unwrap();
    let as_kdl = dir.path().join("saved.kdl");
    std::fs::write(&as_kdl, &text).unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"kind": "something-else"}"#).unwrap();
    let before = configurations(hub.path());
    let run =
        |file: &Path| cli().arg("apply").arg(file).arg(deployments()).arg("--hub").arg(hub.path()).output().unwrap();
    let out = run(&truncated);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", " ");
    assert!(err.contains("trunc.json is not a complete fleetform plan file: EOF while parsing"), "{err}");
    assert!(err.contains("at line ") && err.contains("column "), "{err}");
    assert!(!err.contains("kdl"), "not read as KDL: {err}");
    let out = run(&other);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr).replace("\n  | ", "");
    assert!(err.contains("its kind is `something-else`, not `fleetform-plan`"), "{err}");
    assert_eq!(configurations(hub.path()), before);
    let out = run(&as_kdl);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Applying the plan saved at"), "{}", transcript(&out));
}
