//! `--ref` and `--base` on real git repositories built in the test with git2: a main
//! branch, a feature branch that changes an image, deletes a file and renames a
//! deployment, and a main that moved on after the branch was cut.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use git2::{IndexAddOption, Repository, Signature};
use serde_json::Value;

fn campus_hub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub")
}

fn commit(repo: &Repository, message: &str) -> git2::Oid {
    let mut index = repo.index().unwrap();
    index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("test", "test@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).unwrap()
}

fn switch(repo: &Repository, branch: &str) {
    repo.set_head(&format!("refs/heads/{branch}")).unwrap();
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// main: the campus deployments, then a later commit raising building-monitoring's
/// priority. feature (cut before that): Telemetry 3.2.0 -> 3.3.0, canary.kdl deleted,
/// route-override renamed route-patch. HEAD is feature.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_opts(dir.path(), git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
    let deployments = dir.path().join("deployments");
    std::fs::create_dir(&deployments).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/deployments");
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), deployments.join(entry.file_name())).unwrap();
    }
    let first = commit(&repo, "campus deployments");
    repo.branch("feature", &repo.find_commit(first).unwrap(), false).unwrap();
    edit(&deployments.join("monitoring.kdl"), "priority 30", "priority 31");
    commit(&repo, "main moves on");

    switch(&repo, "feature");
    edit(&deployments.join("base.kdl"), "telemetry:3.2.0", "telemetry:3.3.0");
    std::fs::remove_file(deployments.join("canary.kdl")).unwrap();
    edit(&deployments.join("route-override.kdl"), "layered \"route-override\"", "layered \"route-patch\"");
    std::fs::rename(deployments.join("route-override.kdl"), deployments.join("route-patch.kdl")).unwrap();
    commit(&repo, "feature: new telemetry, no canary, route-patch");
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    common::cli().args(args).current_dir(dir).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn failing(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a["action"].as_str().unwrap().to_string()))
        .collect()
}

fn action<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str())
}

#[test]
fn validate_reads_other_commits() {
    let dir = repository();
    let head: Value = serde_json::from_str(&ok(dir.path(), &["validate", "deployments", "--format", "json"])).unwrap();
    // feature: canary.kdl deleted, route-override renamed.
    assert_eq!(head["deployments"].as_array().unwrap().len(), 4);
    let main: Value =
        serde_json::from_str(&ok(dir.path(), &["validate", "deployments", "--ref", "main", "--format", "json"]))
            .unwrap();
    let files: Vec<&str> = main["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(files.contains(&"main:deployments/canary.kdl"), "{files:?}");
    assert!(files.contains(&"main:deployments/route-override.kdl"), "{files:?}");
    let names: Vec<&str> =
        main["deployments"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"campus-canary") && names.contains(&"route-override"), "{names:?}");
    // A file deleted in the working tree's branch is read from the commit that has it.
    let text = ok(dir.path(), &["validate", "deployments/canary.kdl", "--ref", "main"]);
    assert!(text.contains("1 deployment in 1 file: valid"), "{text}");
    // From a subdirectory, paths are relative to it, as in the working tree.
    let text = ok(&dir.path().join("deployments"), &["validate", ".", "--ref", "main~1"]);
    assert!(text.contains("5 deployments in 5 files: valid"), "{text}");
}

#[test]
fn ref_errors_are_clear() {
    let dir = repository();
    let err = failing(dir.path(), &["validate", "deployments", "--ref", "no-such-branch"]);
    assert!(err.contains("unknown revision `no-such-branch`"), "{err}");
    let err = failing(dir.path(), &["validate", "deployments/route-patch.kdl", "--ref", "main"]);
    assert!(err.contains("is not in commit main"), "{err}");
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("a.kdl"), "").unwrap();
    let err = failing(plain.path(), &["validate", ".", "--ref", "HEAD"]);
    assert!(err.contains("not inside a git repository"), "{err}");
}

#[test]
fn diagnostics_name_the_commit() {
    let dir = repository();
    let repo = Repository::open(dir.path()).unwrap();
    edit(&dir.path().join("deployments/base.kdl"), "priority 10", "priority -1");
    commit(&repo, "broken");
    let err = failing(dir.path(), &["validate", "deployments", "--ref", "HEAD"]);
    assert!(err.contains("HEAD:deployments/base.kdl"), "{err}");
    // The working tree is what it is; --ref HEAD~1 is the good commit.
    ok(dir.path(), &["validate", "deployments", "--ref", "HEAD~1"]);
}

#[test]
fn plan_and_render_from_a_ref() {
    let dir = repository();
    let hub = campus_hub();
    let hub = hub.to_str().unwrap();
    let at_main: Value = serde_json::from_str(&ok(
        dir.path(),
        &["plan", "deployments", "--ref", "main", "--hub", hub, "--format", "json"],
    ))
    .unwrap();
    let at_main = actions(&at_main);
    assert_eq!(action(&at_main, "campus-canary"), Some("create"));
    assert_eq!(action(&at_main, "route-override"), Some("no-op"), "{at_main:?}");
    let at_head: Value =
        serde_json::from_str(&ok(dir.path(), &["plan", "deployments", "--hub", hub, "--format", "json"])).unwrap();
    let at_head = actions(&at_head);
    assert_eq!(action(&at_head, "campus-canary"), None);
    assert_eq!(action(&at_head, "route-patch"), Some("create"));
    let rendered = ok(dir.path(), &["render", "campus-base", "deployments", "--ref", "main"]);
    assert!(rendered.contains("telemetry:3.2.0"), "{rendered}");
    let rendered = ok(dir.path(), &["render", "campus-base", "deployments"]);
    assert!(rendered.contains("telemetry:3.3.0"), "{rendered}");
}

#[test]
fn plan_base_shows_the_change_and_its_device_impact() {
    let dir = repository();
    let hub = campus_hub();
    let hub = hub.to_str().unwrap();
    let json: Value = serde_json::from_str(&ok(
        dir.path(),
        &["plan", "deployments", "--base", "main", "--hub", hub, "--format", "json"],
    ))
    .unwrap();
    let change = &json["change"];
    let list = actions(change);
    assert_eq!(action(&list, "campus-base"), Some("replace"), "{list:?}");
    assert_eq!(action(&list, "campus-canary"), Some("delete"), "{list:?}");
    assert_eq!(action(&list, "route-override"), Some("delete"), "{list:?}");
    assert_eq!(action(&list, "route-patch"), Some("create"), "{list:?}");
    // Compared with the merge base, not main's tip: main's later priority change to
    // building-monitoring is not part of this branch's change.
    assert_eq!(action(&list, "building-monitoring"), Some("no-op"), "{list:?}");
    assert!(change["hub"].as_str().unwrap().starts_with("declared at main@"), "{}", change["hub"]);
    assert!(change["summary"]["devices_changed"].as_u64().unwrap() > 0);
    let cohorts = change["cohorts"].as_array().unwrap();
    let texts: Vec<&str> = cohorts
        .iter()
        .flat_map(|c| c["changes"].as_array().unwrap().iter().map(|x| x["text"].as_str().unwrap()))
        .collect();
    assert!(texts.iter().any(|t| t.contains("telemetry:3.3.0")), "{texts:?}");
    // The regular plan against the hub is still there, beside the change.
    assert_eq!(action(&actions(&json), "manual-hotfix"), Some("unmanaged"));

    let md = ok(dir.path(), &["plan", "deployments", "--base", "main", "--hub", hub, "--format", "markdown"]);
    let change_at = md.find("### What this change does").expect("change section");
    let plan_at = md.find("### fleetform plan").expect("plan section");
    assert!(change_at < plan_at);
    let text = ok(dir.path(), &["plan", "deployments", "--base", "main", "--hub", hub]);
    assert!(text.starts_with("What this change does"), "{text}");
    assert!(text.contains("Plan against the hub"), "{text}");

    // With --ref, the head side is that commit: main, against its merge base with HEAD
    // (feature; the first commit), changes only building-monitoring's priority.
    let json: Value = serde_json::from_str(&ok(
        dir.path(),
        &["plan", "deployments", "--ref", "main", "--base", "main", "--hub", hub, "--format", "json"],
    ))
    .unwrap();
    let list = actions(&json["change"]);
    assert_eq!(action(&list, "building-monitoring"), Some("update"), "{list:?}");
    assert!(list.iter().filter(|(n, _)| n != "building-monitoring").all(|(_, a)| a == "no-op"), "{list:?}");
}

#[test]
fn apply_safety_hooks() {
    let dir = repository();
    let repo = Repository::open(dir.path()).unwrap();
    let deployments = dir.path().join("deployments");
    assert!(!fleetform::git::is_dirty(&deployments).unwrap());
    let first = repo.revparse_single("main~1").unwrap().id().to_string();
    let main = repo.revparse_single("main").unwrap().id().to_string();
    assert!(fleetform::git::commit_is_ancestor_of_head(dir.path(), &first).unwrap());
    assert!(!fleetform::git::commit_is_ancestor_of_head(dir.path(), &main).unwrap(), "main is not behind feature");
    std::fs::write(deployments.join("new.kdl"), "// new\n").unwrap();
    assert!(fleetform::git::is_dirty(&deployments).unwrap());
    assert_eq!(fleetform::git::merge_base(dir.path(), "main").unwrap(), first);
}

#[test]
fn apply_refuses_a_dirty_tree_unless_allowed() {
    let dir = repository();
    let deployments = dir.path().join("deployments");
    edit(&deployments.join("base.kdl"), "telemetry:3.3.0", "telemetry:3.4.0");
    let hub = tempfile::tempdir().unwrap();
    for f in ["configurations.json", "devices.json", "modules.json"] {
        std::fs::copy(campus_hub().join(f), hub.path().join(f)).unwrap();
    }
    let hub_arg = hub.path().to_string_lossy().into_owned();
    let err = failing(dir.path(), &["apply", "--auto-approve", "--hub", &hub_arg, "deployments"]);
    assert!(err.contains("deployments has uncommitted changes"), "{err}");
    assert!(err.contains("--allow-dirty"));
    let before = std::fs::read_to_string(hub.path().join("configurations.json")).unwrap();
    assert_eq!(before, std::fs::read_to_string(campus_hub().join("configurations.json")).unwrap(), "nothing written");
    ok(dir.path(), &["apply", "--auto-approve", "--allow-dirty", "--hub", &hub_arg, "deployments"]);
    let after = std::fs::read_to_string(hub.path().join("configurations.json")).unwrap();
    assert!(after.contains("telemetry:3.4.0"));
}

#[test]
fn explain_and_apply_read_a_ref() {
    let dir = repository();
    let hub_arg = campus_hub().to_string_lossy().into_owned();
    // HEAD (feature) runs Telemetry 3.3.0; main still has 3.2.0.
    let head = ok(dir.path(), &["explain", "b43-f1-dc-000195", "deployments", "--hub", &hub_arg]);
    assert!(head.contains("telemetry:3.3.0"), "{head}");
    let main = ok(dir.path(), &["explain", "b43-f1-dc-000195", "deployments", "--ref", "main", "--hub", &hub_arg]);
    assert!(main.contains("telemetry:3.2.0"), "{main}");

    // Apply from main while the working tree is dirty: the tree does not matter, main's
    // content is written and labelled with main's commit.
    edit(&dir.path().join("deployments/base.kdl"), "telemetry:3.3.0", "telemetry:9.9.9");
    let hub = tempfile::tempdir().unwrap();
    for f in ["configurations.json", "devices.json", "modules.json"] {
        std::fs::copy(campus_hub().join(f), hub.path().join(f)).unwrap();
    }
    let hub_copy = hub.path().to_string_lossy().into_owned();
    ok(dir.path(), &["apply", "--auto-approve", "--ref", "main", "--hub", &hub_copy, "deployments"]);
    let written = std::fs::read_to_string(hub.path().join("configurations.json")).unwrap();
    assert!(written.contains("telemetry:3.2.0") && !written.contains("9.9.9"));
    let repo = Repository::open(dir.path()).unwrap();
    let main_id = repo.revparse_single("main").unwrap().id().to_string();
    assert!(written.contains(&format!("\"fleetform-commit\": \"{main_id}\"")), "commit label is main's");
}

/// Issue #12 (review item 2): deployments/base.kdl, and a committed link
/// `deployments/shared -> ../shared` to the other four campus files.
fn linked_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    for sub in ["deployments", "shared"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/deployments");
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let into = if entry.file_name() == "base.kdl" { "deployments" } else { "shared" };
        std::fs::copy(entry.path(), dir.path().join(into).join(entry.file_name())).unwrap();
    }
    std::os::unix::fs::symlink("../shared", dir.path().join("deployments/shared")).unwrap();
    commit(&repo, "deployments with a linked folder");
    dir
}

/// An error as one line: miette wraps long messages, continuing them after `| `.
fn flat(err: &str) -> String {
    err.split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ")
}

fn files_of(validated: &Value) -> Vec<String> {
    validated["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

#[cfg(unix)]
#[test]
fn ref_follows_symlinks_inside_the_commit() {
    let dir = linked_repository();
    let at_head: Value =
        serde_json::from_str(&ok(dir.path(), &["validate", "deployments", "--ref", "HEAD", "--format", "json"]))
            .unwrap();
    assert_eq!(at_head["deployments"].as_array().unwrap().len(), 5, "{at_head}");
    // Named by the real path, which `git show HEAD:shared/canary.kdl` opens.
    assert!(files_of(&at_head).contains(&"HEAD:shared/canary.kdl".to_string()), "{at_head}");
    let worktree: Value =
        serde_json::from_str(&ok(dir.path(), &["validate", "deployments", "--format", "json"])).unwrap();
    assert_eq!(worktree["deployments"], at_head["deployments"], "the commit reads as its checkout does");
    // Pruning from the commit keeps the linked deployments: only the hub's undeclared
    // managed legacy-sensors goes.
    let hub = campus_hub();
    let hub = hub.to_str().unwrap();
    let plan: Value = serde_json::from_str(&ok(
        dir.path(),
        &["plan", "deployments", "--ref", "HEAD", "--prune", "--hub", hub, "--format", "json"],
    ))
    .unwrap();
    let list = actions(&plan);
    let deleted: Vec<&str> = list.iter().filter(|(_, a)| a == "delete").map(|(n, _)| n.as_str()).collect();
    assert_eq!(deleted, ["legacy-sensors"], "{list:?}");
    for name in ["campus-canary", "conference-camera", "building-monitoring", "route-override"] {
        assert!(action(&list, name).is_some(), "{name}: {list:?}");
    }

    // A linked file is read as its target's content, not as the link's text.
    let repo = Repository::open(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("deployments/shared")).unwrap();
    std::os::unix::fs::symlink("../shared/canary.kdl", dir.path().join("deployments/canary.kdl")).unwrap();
    commit(&repo, "link one file");
    let text = ok(dir.path(), &["validate", "deployments", "--ref", "HEAD"]);
    assert!(text.contains("2 deployments in 2 files: valid"), "{text}");
    // Also when the link is the path given.
    let text = ok(dir.path(), &["validate", "deployments/canary.kdl", "--ref", "HEAD"]);
    assert!(text.contains("1 deployment in 1 file: valid"), "{text}");
}

#[cfg(unix)]
#[test]
fn ref_refuses_links_that_leave_the_commit() {
    let dir = linked_repository();
    let repo = Repository::open(dir.path()).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.kdl"), "").unwrap();
    let outside_file = outside.path().join("x.kdl");
    let cases = [
        ("../nowhere", "link_target_missing", "is a symlink to ../nowhere, which is not in commit HEAD"),
        ("../shared/gone.kdl", "link_target_missing", "which is not in commit HEAD"),
        ("../../elsewhere", "link_outside", "which is outside the repository"),
        (outside_file.to_str().unwrap(), "link_outside", "which is outside the repository"),
        ("..", "link_loop", "symlinks loop"),
        ("bad.kdl", "link_loop", "symlinks loop"),
    ];
    for (target, code, says) in cases {
        let link = dir.path().join("deployments/bad.kdl");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        commit(&repo, &format!("link to {target}"));
        for cmd in [&["validate", "deployments", "--ref", "HEAD"][..], &["plan", "deployments", "--ref", "HEAD"]] {
            let mut args = cmd.to_vec();
            let hub = campus_hub();
            if cmd[0] == "plan" {
                args.extend(["--hub", hub.to_str().unwrap()]);
            }
            let err = flat(&failing(dir.path(), &args));
            assert!(err.contains(&format!("fleetform::git::{code}")), "{target}: {err}");
            assert!(err.contains("HEAD:deployments/bad.kdl") && err.contains(says), "{target}: {err}");
        }
    }
}

/// Review item 3: the dirty check sees a change reached through a followed symlink.
#[cfg(unix)]
#[test]
fn apply_sees_uncommitted_changes_behind_a_symlink() {
    let dir = linked_repository();
    let hub = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(campus_hub()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), hub.path().join(entry.file_name())).unwrap();
    }
    let hub = hub.path().to_str().unwrap().to_string();
    let apply = ["apply", "deployments", "--auto-approve", "--hub", hub.as_str()];
    edit(&dir.path().join("shared/canary.kdl"), "priority 20", "priority 21");
    let err = flat(&failing(dir.path(), &apply));
    assert!(err.contains("shared/canary.kdl") && err.contains("has uncommitted changes"), "{err}");
    assert!(err.contains("--allow-dirty"), "{err}");
    // An untracked file behind the link is not committed either.
    let repo = Repository::open(dir.path()).unwrap();
    commit(&repo, "canary at 21");
    std::fs::copy(dir.path().join("shared/monitoring.kdl"), dir.path().join("shared/zz-copy.kdl")).unwrap();
    let err = flat(&failing(dir.path(), &apply));
    assert!(err.contains("zz-copy.kdl") && err.contains("has uncommitted changes"), "{err}");
    std::fs::remove_file(dir.path().join("shared/zz-copy.kdl")).unwrap();
    // A link to a file in no repository: no commit records it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("shared/monitoring.kdl"), outside.path().join("m.kdl")).unwrap();
    std::fs::remove_file(dir.path().join("shared/monitoring.kdl")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("m.kdl"), dir.path().join("shared/monitoring.kdl")).unwrap();
    commit(&repo, "monitoring from outside");
    let err = flat(&failing(dir.path(), &apply));
    assert!(err.contains("which is in no git repository"), "{err}");
    let mut forced = apply.to_vec();
    forced.push("--allow-dirty");
    ok(dir.path(), &forced);
}

/// Review item 8: a `.git` file pointing at nothing is a broken repository, not none.
#[test]
fn a_broken_gitlink_fails_the_dirty_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".git"), "gitdir: /nonexistent/x\n").unwrap();
    let deployments = dir.path().join("deployments");
    std::fs::create_dir(&deployments).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/deployments/base.kdl"),
        deployments.join("base.kdl"),
    )
    .unwrap();
    let hub = campus_hub();
    let err = flat(&failing(dir.path(), &["apply", "deployments", "--auto-approve", "--hub", hub.to_str().unwrap()]));
    assert!(err.contains("cannot tell whether") && err.contains("is there but is not a usable repository"), "{err}");
    let err = failing(dir.path(), &["validate", "deployments", "--ref", "HEAD"]);
    assert!(err.contains("fleetform::git::broken_repository"), "{err}");
}
