//! Progressive rollouts (`rollout { … }`, docs/rollouts.md) end to end: the real binary
//! against the emulator (`fleetform hub serve`) on 127.0.0.1, over a small fleet whose
//! waves are counted by hand below. What each device runs is read from the emulator's
//! `$edgeAgent` module twins (`configurations.<id>.status = Applied`), never from the plan.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cli, transcript};
use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Configuration, HubRead, HubWrite, IfMatch};
use fleetform::manifest::LABEL_NAME;

/// The fleet: 11 production IoT Edge devices, one staging, one production non-Edge.
///
/// | device | ring | building | in wave |
/// |---|---|---|---|
/// | d-c1, d-c2 | canary | 20, 43 | 1 (canary) |
/// | d-b1 … d-b4 | — | 20 | 2 (b20) |
/// | d-f1 … d-f5 | — | 43 | 3 (fleet) |
///
/// So the new deployment targets 2, then 2 + 4 = 6, then 6 + 5 = 11 devices, and the
/// waves move 2, 4 and 5. d-b1 and d-b2 are `flaky` (the failing cohort of the rollback test).
fn fleet_devices() -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut dev = |id: &str, tags: serde_json::Value, edge: bool| {
        out.push(serde_json::json!({"deviceId": id, "capabilities": {"iotEdge": edge}, "tags": tags}));
    };
    dev("d-c1", serde_json::json!({"env": "prod", "ring": "canary", "building": "20"}), true);
    dev("d-c2", serde_json::json!({"env": "prod", "ring": "canary", "building": "43"}), true);
    for i in 1..=4 {
        let flaky = i <= 2;
        dev(&format!("d-b{i}"), serde_json::json!({"env": "prod", "building": "20", "flaky": flaky}), true);
    }
    for i in 1..=5 {
        dev(&format!("d-f{i}"), serde_json::json!({"env": "prod", "building": "43"}), true);
    }
    dev("d-s1", serde_json::json!({"env": "staging", "building": "20"}), true);
    dev("d-x1", serde_json::json!({"env": "prod", "building": "20"}), false);
    out
}

const WAVE1: [&str; 2] = ["d-c1", "d-c2"];
const WAVE2: [&str; 4] = ["d-b1", "d-b2", "d-b3", "d-b4"];
const WAVE3: [&str; 5] = ["d-f1", "d-f2", "d-f3", "d-f4", "d-f5"];

fn all_prod() -> Vec<&'static str> {
    WAVE1.iter().chain(&WAVE2).chain(&WAVE3).copied().collect()
}

const ROLLOUT: &str = r#"
    rollout {
        wave "canary" "tags.ring='canary'"
        wave "b20" "tags.building='20'"
        wave "fleet"
        promote success=1.0 min-devices=1
        rollback failure=0.2
    }"#;

fn base(image: &str, rollout: bool) -> String {
    format!(
        r#"deployment "base" {{
    priority 10
    target "tags.env='prod'"{}
    runtime {{
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }}
    module "M" image="{image}"
}}
"#,
        if rollout { ROLLOUT } else { "" }
    )
}

fn extra(image: &str) -> String {
    format!(
        r#"layered "extra" {{
    priority 20
    target "tags.env='prod'"{ROLLOUT}
    module "X" image="{image}"
}}
"#
    )
}

struct Server {
    process: common::EmulatorProcess,
    _dir: tempfile::TempDir,
    files: tempfile::TempDir,
}

fn start(flags: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    std::fs::write(state.join("configurations.json"), "[]").unwrap();
    let lines: Vec<String> = fleet_devices().iter().map(|d| d.to_string()).collect();
    std::fs::write(state.join("devices.jsonl"), lines.join("\n") + "\n").unwrap();
    let process = common::EmulatorProcess::start(&state, flags);
    Server { process, _dir: dir, files: tempfile::tempdir().unwrap() }
}

impl Server {
    fn hub(&self) -> RestHub {
        let conn: ConnectionString = self.process.connection.parse().unwrap();
        let options = RestOptions { endpoint: Some(self.process.url.clone()), progress: false, ..Default::default() };
        RestHub::new(conn, options).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = cli();
        cmd.args(args).args(["--hub", &self.process.connection, "--endpoint", &self.process.url]);
        cmd.env("FLEETFORM_WAIT_INTERVAL_MS", "200");
        // The emulator recomputes metrics on every read; IoT Hub every five minutes.
        cmd.env("FLEETFORM_METRICS_INTERVAL", "0s");
        cmd
    }

    /// Writes the deployment files (outside any git repository: no commit to check).
    fn declare(&self, files: &[(&str, String)]) -> PathBuf {
        let dir = self.files.path().join("deployments");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn apply(&self, paths: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.command(&["apply", "--auto-approve", "--timeout", "60s"]);
        cmd.arg(paths).args(extra);
        cmd.output().unwrap()
    }

    fn plan_json(&self, paths: &Path) -> serde_json::Value {
        let out = self.command(&["plan", "--format", "json"]).arg(paths).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn named(&self, name: &str) -> Vec<Configuration> {
        let mut out: Vec<Configuration> = self
            .hub()
            .configurations()
            .unwrap()
            .into_iter()
            .filter(|c| c.labels.get(LABEL_NAME).map(String::as_str) == Some(name))
            .collect();
        out.sort_by(|a, b| a.created_time_utc.cmp(&b.created_time_utc));
        out
    }

    /// Per IoT Edge device: the deployments its `$edgeAgent` twin lists as Applied.
    fn applied(&self) -> BTreeMap<String, Vec<String>> {
        let found = std::sync::Mutex::new(BTreeMap::new());
        self.hub()
            .module_batches(&|batch| {
                for m in batch {
                    if m["moduleId"] != "$edgeAgent" {
                        continue;
                    }
                    let mut ids: Vec<String> = m["configurations"]
                        .as_object()
                        .map(|c| c.iter().filter(|(_, s)| s["status"] == "Applied").map(|(id, _)| id.clone()).collect())
                        .unwrap_or_default();
                    ids.sort();
                    found.lock().unwrap().insert(m["deviceId"].as_str().unwrap().to_string(), ids);
                }
                Ok(())
            })
            .unwrap();
        found.into_inner().unwrap()
    }

    /// Polls until `id` reports every targeted device (success or failure), at most 20 s.
    fn settle(&self, id: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let c = self.hub().configuration(id).unwrap();
            let m = &c.system_metrics.as_ref().unwrap().results;
            let reported = m["reportedSuccessfulCount"] + m["reportedFailedCount"];
            if reported >= m["targetedCount"] && m["appliedCount"] == m["targetedCount"] {
                return;
            }
            assert!(Instant::now() < until, "{id} never settled: {m:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn targeted(&self, id: &str) -> i64 {
        self.hub().configuration(id).unwrap().system_metrics.unwrap().results["targetedCount"]
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// The devices of `applied` on `id` (as the standard deployment), sorted.
fn on(applied: &BTreeMap<String, Vec<String>>, id: &str) -> Vec<String> {
    applied.iter().filter(|(_, ids)| ids.iter().any(|i| i == id)).map(|(d, _)| d.clone()).collect()
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// v1 applied (an ordinary create), settled; then v2 declared. Returns (O id, paths).
fn v1_then_v2(server: &Server, files: impl Fn(&str) -> Vec<(&'static str, String)>, name: &str) -> (String, PathBuf) {
    let v1 = server.declare(&files("1.0"));
    let out = server.apply(&v1, &[]);
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    let old = server.named(name)[0].id.to_string();
    server.settle(&old);
    (old, server.declare(&files("2.0")))
}

#[test]
fn a_three_wave_rollout_is_promoted_over_successive_applies() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");

    // The plan's wave plan, from the merge engine: hand-computed counts above.
    let plan = server.plan_json(&paths);
    let r = &plan["rollouts"][0];
    assert_eq!(r["next"]["decision"], "start", "{r}");
    let waves = r["waves"].as_array().unwrap();
    let counts: Vec<(u64, u64)> =
        waves.iter().map(|w| (w["targeted"].as_u64().unwrap(), w["moves"].as_u64().unwrap())).collect();
    assert_eq!(counts, [(2, 2), (6, 4), (11, 5)], "{r}");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 1, "only N is created: {}", plan["steps"]);
    assert_eq!(plan["steps"][0]["reason"], "rollout start");
    let warnings = plan["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().all(|w| w["code"] != "W006" && w["code"] != "W014"),
        "the O/N tie is intended: {warnings:?}"
    );

    // What a reviewer sees: the rollout section of the text plan and of the PR comment.
    let section = |text: &str, from: &str, to: &str| -> String {
        let start = text.find(from).unwrap_or_else(|| panic!("{from} in {text}"));
        let end = text[start..].find(to).map_or(text.len(), |e| start + e);
        text[start..end].to_string()
    };
    let out = server.command(&["plan"]).arg(&paths).output().unwrap();
    insta::assert_snapshot!("rollout_plan_text", section(&stdout(&out), "Rollouts (", "Device impact"));
    let out = server.command(&["plan", "--format", "markdown"]).arg(&paths).output().unwrap();
    insta::assert_snapshot!("rollout_plan_markdown", section(&stdout(&out), "#### Rollouts", "<details>"));

    // Start: N on the canary devices only, O untouched everywhere else.
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    assert!(stdout(&out).contains("rollout base: started wave 1 (canary)"), "{}", transcript(&out));
    let new = server.named("base").iter().find(|c| c.id != old).unwrap().id.to_string();
    assert_eq!(server.hub().configuration(&old).unwrap().target_condition, "tags.env='prod'");
    assert_eq!(server.targeted(&new), 2, "the plan said the first wave targets 2");
    let applied = server.applied();
    assert_eq!(on(&applied, &new), sorted(&WAVE1));
    assert_eq!(on(&applied, &old), sorted(&[&WAVE2[..], &WAVE3[..]].concat()));

    // Against IoT Hub's five-minute metric runs (the default), the canary's counts are not
    // trusted before the hub has recomputed them, even once every device reported.
    server.settle(&new);
    let before = server.hub().configuration(&new).unwrap().etag;
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s"]);
    let out = cmd.arg(&paths).env_remove("FLEETFORM_METRICS_INTERVAL").output().unwrap();
    assert_eq!(code(&out), Some(11), "{}", transcript(&out));
    assert!(
        stdout(&out).contains("wait in wave 1 (canary): the hub recomputes metrics every 5m, so its counts may still be the previous wave's"),
        "{}",
        transcript(&out)
    );
    assert_eq!(server.hub().configuration(&new).unwrap().etag, before, "a wait writes nothing");
    let mut cmd = server.command(&["plan"]);
    let out = cmd.arg(&paths).env("FLEETFORM_METRICS_INTERVAL", "five").output().unwrap();
    assert_eq!(code(&out), Some(1), "{}", transcript(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FLEETFORM_METRICS_INTERVAL=\"five\" is not a duration"),
        "{}",
        transcript(&out)
    );

    // Before the devices report, a scheduled apply waits and leaves the hub alone.
    let before = server.hub().configuration(&new).unwrap().etag;
    let out = server.apply(&paths, &[]);
    if code(&out) == Some(11) {
        assert!(stdout(&out).contains("wait in wave 1 (canary)"), "{}", transcript(&out));
        assert_eq!(server.hub().configuration(&new).unwrap().etag, before, "a wait writes nothing");
    } else {
        // The emulator's devices may already have reported: then it promoted.
        assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    }

    // Each apply after the wave reported promotes once, then completes.
    let mut expected_targeted = vec![6, 11];
    if code(&out) == Some(10) {
        assert_eq!(server.targeted(&new), 6);
        expected_targeted.remove(0);
    }
    for targeted in expected_targeted {
        server.settle(&new);
        let out = server.apply(&paths, &[]);
        assert_eq!(code(&out), Some(10), "{}", transcript(&out));
        assert!(stdout(&out).contains("rollout base: promoted wave"), "{}", transcript(&out));
        assert_eq!(server.targeted(&new), targeted, "{}", transcript(&out));
        if targeted == 6 {
            let applied = server.applied();
            assert_eq!(on(&applied, &new), sorted(&[&WAVE1[..], &WAVE2[..]].concat()));
            assert_eq!(on(&applied, &old), sorted(&WAVE3));
        }
    }
    server.settle(&new);
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    assert!(stdout(&out).contains("rollout base: complete: deleted"), "{}", transcript(&out));
    let left = server.named("base");
    assert_eq!(left.len(), 1, "O is deleted");
    assert_eq!(left[0].id, new.as_str());
    assert_eq!(left[0].target_condition, "tags.env='prod'");
    assert!(left[0].labels.keys().all(|k| !k.starts_with("fleetform-rollout")), "{:?}", left[0].labels);
    assert_eq!(on(&server.applied(), &new), sorted(&all_prod()));
    let out = server.command(&["plan", "--detailed-exitcode"]).arg(&paths).output().unwrap();
    assert_eq!(code(&out), Some(0), "converged: {}", transcript(&out));
}

#[test]
fn a_failing_wave_rolls_back_and_every_device_ends_on_the_old_content() {
    let server = start(&["--simulate-success-after", "0.3", "--simulate-failure-where", "tags.flaky = true"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    let new = server.named("base").iter().find(|c| c.id != old).unwrap().id.to_string();
    server.settle(&new);
    // Wave 1 (the canary devices, none flaky) succeeds: promoted to wave 2.
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    server.settle(&new);
    // Wave 2: d-b1 and d-b2 fail, 2 of 6 = 33% > 20%: rolled back.
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(12), "{}", transcript(&out));
    assert!(
        stdout(&out).contains("rollout base: rolled back in wave 2 (b20): 2 of 6 devices reported failure"),
        "{}",
        transcript(&out)
    );
    let left = server.named("base");
    assert_eq!(left.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [old.as_str()], "N is deleted");
    assert_eq!(left[0].labels.get("fleetform-rolled-back").map(String::as_str), Some(new.as_str()));
    assert_eq!(left[0].labels.get("fleetform-rolled-back-devices").map(String::as_str), Some("d-b1,d-b2"));
    let applied = server.applied();
    assert_eq!(on(&applied, &old), sorted(&all_prod()), "every device is back on O");
    assert!(applied.values().all(|ids| !ids.contains(&new)));

    // A scheduled apply of the same content leaves it rolled back.
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(12), "{}", transcript(&out));
    assert!(stdout(&out).contains("rolled back earlier"), "{}", transcript(&out));
    assert_eq!(server.named("base").len(), 1);
    // The hub is not on the declared content: a drift check must not read it as in sync.
    let out = server.command(&["plan", "--detailed-exitcode"]).arg(&paths).output().unwrap();
    assert_eq!(code(&out), Some(2), "rolled back is out of sync: {}", transcript(&out));

    // status names the rollback, the rule and the failing devices.
    let out = server.command(&["status"]).output().unwrap();
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("rolled back: {new}")), "{text}");
    assert!(text.contains("rule rollback failure=0.2"), "{text}");
    assert!(text.contains("d-b1, d-b2"), "{text}");

    // --restart-rollout retries the same content from wave 1.
    let out = server.apply(&paths, &["--restart-rollout"]);
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    assert_eq!(server.targeted(&new), 2);
    assert!(!server.hub().configuration(&old).unwrap().labels.contains_key("fleetform-rolled-back"));
}

#[test]
fn a_layered_deployment_rolls_out_in_one_apply_with_wait() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base("m:1.0", false)), ("extra.kdl", extra(&format!("x:{v}")))];
    let (old, paths) = v1_then_v2(&server, files, "extra");
    let standard = server.named("base")[0].id.to_string();
    let out = server.apply(&paths, &["--wait=60s"]);
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    let text = stdout(&out);
    for line in [
        "rollout extra: started wave 1 (canary)",
        "rollout extra: promoted wave 1 (canary) → wave 2 (b20)",
        "rollout extra: promoted wave 2 (b20) → wave 3 (fleet)",
        "rollout extra: complete: deleted",
    ] {
        assert!(text.contains(line), "{line}: {}", transcript(&out));
    }
    let left = server.named("extra");
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, old.as_str());
    let applied = server.applied();
    assert_eq!(on(&applied, &left[0].id), sorted(&all_prod()));
    assert_eq!(on(&applied, &standard), sorted(&all_prod()), "the standard deployment stays under the layer");
}

#[test]
fn new_content_mid_rollout_is_refused_with_13() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    assert_eq!(code(&server.apply(&paths, &[])), Some(10));
    let newer = server.declare(&files("3.0"));
    let before = server.hub().configurations().unwrap();
    let out = server.apply(&newer, &[]);
    assert_eq!(code(&out), Some(13), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--restart-rollout"), "{}", transcript(&out));
    assert_eq!(server.hub().configurations().unwrap().len(), before.len(), "nothing written");
    let out = server.command(&["plan", "--detailed-exitcode"]).arg(&newer).output().unwrap();
    assert_eq!(code(&out), Some(2), "a refused rollout is out of sync: {}", transcript(&out));
    let text = stdout(&out);
    let new = server.named("base")[1].id.to_string();
    // The action line names the ids on the hub and that nothing is written; the summary
    // says apply refuses the whole run, as it then does.
    assert!(text.contains(&format!("rollout {old}, {new}: nothing written (see Rollouts)")), "{text}");
    assert!(
        text.contains("Apply refuses it all and writes nothing (exit 13)") || text.contains("No changes now"),
        "{text}"
    );
    // Back to O's content with --restart-rollout: the line names the unfinished N it deletes.
    let back = server.declare(&files("1.0"));
    let out = server.command(&["plan", "--restart-rollout"]).arg(&back).output().unwrap();
    assert!(stdout(&out).contains(&format!("update {old} in place, delete {new}")), "{}", transcript(&out));
    let newer = server.declare(&files("3.0"));
    let out = server.apply(&newer, &["--restart-rollout", "--format", "json"]);
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let next = &v["rollouts"][0]["next"];
    assert_eq!(next["decision"], "start", "{v}");
    assert!(next["replaces"].as_str().is_some_and(|r| r != old), "{v}");
    let ids: Vec<String> = server.named("base").iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids.len(), 2, "O and the newest N: {ids:?}");
    assert_eq!(ids[0], old);
}

#[test]
fn two_concurrent_applies_promote_a_wave_once() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    assert_eq!(code(&server.apply(&paths, &[])), Some(10));
    let new = server.named("base").iter().find(|c| c.id != old).unwrap().id.to_string();
    server.settle(&new);
    let spawn = || {
        server
            .command(&["apply", "--auto-approve", "--timeout", "60s"])
            .arg(&paths)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    // A write that found the same promotion already on the hub (same labels, same second)
    // says "already holds this update": only real writes count.
    let writes: usize = outs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.starts_with("[1/1] update") && l.ends_with(": done"))
                .count()
        })
        .sum();
    for o in &outs {
        assert!(matches!(code(o), Some(10 | 11)), "{}", transcript(o));
    }
    // Consistent: O untouched, N at one wave with that wave's target.
    let hub = server.named("base");
    assert_eq!(hub.len(), 2);
    let n = hub.iter().find(|c| c.id == new.as_str()).unwrap();
    let wave = n.labels["fleetform-rollout-wave"].as_str();
    let expected = match wave {
        "1" => "(tags.env='prod') AND ((tags.ring='canary') OR (tags.building='20'))",
        "2" => "tags.env='prod'",
        other => panic!("wave {other}"),
    };
    assert_eq!(n.target_condition, expected);
    let advanced: usize = wave.parse().unwrap();
    assert_eq!(writes, advanced, "each promotion written once: {}\n{}", transcript(&outs[0]), transcript(&outs[1]));
    assert_eq!(hub.iter().find(|c| c.id == old.as_str()).unwrap().target_condition, "tags.env='prod'");
}

#[test]
fn a_saved_plan_starts_a_rollout_and_a_plan_saved_before_it_is_then_stale() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    let saved = |name: &str| {
        let file = server.files.path().join(name);
        let out = server.command(&["plan"]).arg("--out").arg(&file).arg(&paths).output().unwrap();
        assert_eq!(code(&out), Some(0), "{}", transcript(&out));
        file
    };
    let (first, second) = (saved("first.plan"), saved("second.plan"));
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!((&steps[0]["op"], &steps[0]["reason"]), (&"create".into(), &"rollout start".into()), "{steps:?}");

    let out = server.command(&["apply", "--auto-approve"]).arg(&first).arg(&paths).output().unwrap();
    assert_eq!(code(&out), Some(10), "{}", transcript(&out));
    assert!(stdout(&out).contains("rollout base: started wave 1 (canary)"), "{}", transcript(&out));
    let on_hub = server.named("base");
    assert_eq!(on_hub.len(), 2, "{on_hub:?}");
    let new = on_hub.iter().find(|c| c.id != old.as_str()).unwrap();
    assert_eq!(new.target_condition, "(tags.env='prod') AND (tags.ring='canary')");
    assert_eq!(server.hub().configuration(&old).unwrap().target_condition, "tags.env='prod'", "O untouched");

    // The second plan was made before the start: carrying it out would start it again.
    let etag = server.hub().configuration(&new.id).unwrap().etag;
    let out = server.command(&["apply", "--auto-approve"]).arg(&second).arg(&paths).output().unwrap();
    assert_eq!(code(&out), Some(1), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"), "{}", transcript(&out));
    assert_eq!(server.named("base").len(), 2, "nothing created");
    assert_eq!(server.hub().configuration(&new.id).unwrap().etag, etag, "nothing written");
}

#[test]
fn a_wave_smaller_than_min_devices_is_warned_in_the_plan() {
    let server = start(&[]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true).replace("min-devices=1", "min-devices=3"))];
    let v1 = server.declare(&files("1.0"));
    assert_eq!(code(&server.apply(&v1, &[])), Some(0));
    let plan = server.plan_json(&server.declare(&files("2.0")));
    let w021: Vec<&serde_json::Value> =
        plan["warnings"].as_array().unwrap().iter().filter(|w| w["code"] == "W021").collect();
    // Hand-computed: the canary targets 2 devices, fewer than 3; the next waves 6 and 11.
    assert_eq!(w021.len(), 1, "{}", plan["warnings"]);
    assert_eq!(
        (&w021[0]["deployment"], &w021[0]["wave"], &w021[0]["targeted"], &w021[0]["min_devices"]),
        (&"base".into(), &"canary".into(), &2.into(), &3.into())
    );
    let out = server.command(&["plan"]).arg(server.declare(&files("2.0"))).output().unwrap();
    assert!(
        stdout(&out).contains("W021 `base` rollout wave `canary` targets 2 IoT Edge devices, fewer than min-devices=3"),
        "{}",
        transcript(&out)
    );
    // A misspelt wave path is found once, as the wave's: the wave target the rollout builds
    // from it is not checked again as the deployment's target.
    let misspelt =
        files("2.0").into_iter().map(|(n, t)| (n, t.replace("tags.ring=", "tags.rign="))).collect::<Vec<_>>();
    let plan = server.plan_json(&server.declare(&misspelt));
    let w012: Vec<(&serde_json::Value, &serde_json::Value, &serde_json::Value)> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "W012")
        .map(|w| (&w["query"], &w["wave"], &w["path"]))
        .collect();
    assert_eq!(w012, [(&"wave".into(), &"canary".into(), &"tags.rign".into())], "{}", plan["warnings"]);
}

#[test]
fn an_old_deployment_deleted_by_hand_mid_rollout_is_refused_until_restarted() {
    let server = start(&["--simulate-success-after", "0.3"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    assert_eq!(code(&server.apply(&paths, &[])), Some(10), "wave 1 started");
    let new = server.named("base")[1].id.to_string();
    // Someone deletes O in the portal: the devices outside the canary wave lose "base".
    server.hub().delete_configuration(&old, &IfMatch::Any).unwrap();
    let before = server.hub().configurations().unwrap();
    let out = server.apply(&paths, &[]);
    assert_eq!(code(&out), Some(13), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{old}, which {new} replaces, is gone from the hub")), "{}", transcript(&out));
    assert!(err.contains("--restart-rollout"), "{}", transcript(&out));
    assert_eq!(server.hub().configurations().unwrap(), before, "nothing written");
    let out = server.command(&["plan"]).arg(&paths).output().unwrap();
    assert!(stdout(&out).contains("is gone from the hub"), "{}", transcript(&out));
    // The restart gives N the whole target at once.
    let out = server.apply(&paths, &["--restart-rollout"]);
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    let now = server.named("base");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!((now[0].id.to_string(), now[0].target_condition.as_str()), (new.clone(), "tags.env='prod'"));
    server.settle(&new);
    assert_eq!(on(&server.applied(), &new), sorted(&all_prod()));
}

#[test]
fn counts_read_between_the_hubs_metric_runs_promote_a_failing_wave_unless_the_client_waits() {
    // The emulator recounts metrics every 8 s, as IoT Hub does every five minutes (long
    // enough for the trusting client's three writes between two runs); the client waits a
    // second longer than that after each widening (the write lands a little
    // after the wave-started label's second).
    let flags = [
        "--simulate-success-after",
        "0.3",
        "--simulate-failure-where",
        "tags.flaky = true",
        "--metrics-interval",
        "8s",
    ];
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let run = |server: &Server, paths: &Path, interval: &str| {
        let mut cmd = server.command(&["apply", "--auto-approve", "--wait=60s", "--timeout", "60s"]);
        cmd.arg(paths).env("FLEETFORM_METRICS_INTERVAL", interval).output().unwrap()
    };

    // Trusting every read: right after the widening to wave 2 the hub still shows wave 1's
    // 2 of 2 successes, so the rollout runs to the end and d-b1, d-b2 keep failing on N.
    let server = start(&flags);
    let (old, paths) = v1_then_v2(&server, files, "base");
    let out = run(&server, &paths, "0s");
    assert_eq!(code(&out), Some(0), "{}", transcript(&out));
    assert!(!stdout(&out).contains("rolled back"), "{}", transcript(&out));
    let left = server.named("base");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].id, old.as_str());
    assert_eq!(on(&server.applied(), &left[0].id), sorted(&all_prod()), "the failing devices run N");

    // Waiting one metric run after each widening: wave 2's failures are seen, and rolled back.
    let server = start(&flags);
    let (old, paths) = v1_then_v2(&server, files, "base");
    let out = run(&server, &paths, "9s");
    assert_eq!(code(&out), Some(12), "{}", transcript(&out));
    assert!(
        stdout(&out).contains("rollout base: rolled back in wave 2 (b20): 2 of 6 devices reported failure"),
        "{}",
        transcript(&out)
    );
    assert!(stdout(&out).contains("the hub recomputes metrics every 9s"), "{}", transcript(&out));
    assert_eq!(server.named("base").iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [old.as_str()]);
    assert_eq!(on(&server.applied(), &old), sorted(&all_prod()), "every device is back on O");
}

#[test]
fn an_apply_killed_after_each_write_of_a_rollout_converges_and_makes_no_write_twice() {
    // Every deployment write is held 5 s before its reply, announced on the emulator's
    // stdout: each apply below is killed right there, after the write and before it learns
    // the write happened, so every write of the rollout is interrupted once, in turn.
    let server = start(&["--simulate-success-after", "0.3", "--hold-writes", "5s"]);
    let files = |v: &str| vec![("base.kdl", base(&format!("m:{v}"), true))];
    let (old, paths) = v1_then_v2(&server, files, "base");
    while server.process.next_line(Duration::from_millis(10)).is_some() {} // v1's own write
    let targets = [
        "(tags.env='prod') AND (tags.ring='canary')",
        "(tags.env='prod') AND ((tags.ring='canary') OR (tags.building='20'))",
        "tags.env='prod'",
    ];
    let mut killed_after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        assert!(Instant::now() < deadline, "the rollout did not complete; killed after {killed_after:?}");
        let mut child = server
            .command(&["apply", "--auto-approve", "--timeout", "60s"])
            .arg(&paths)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let exited = loop {
            if let Some(line) = server.process.next_line(Duration::from_millis(20))
                && let Some(write) = line.strip_prefix("held: ")
            {
                assert!(child.try_wait().unwrap().is_none(), "the client got its reply before the kill");
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
                killed_after.push(write.to_string());
                break None;
            }
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
        };
        // Whatever was cut short, the hub is in one of the rollout's states.
        let now = server.named("base");
        if now.len() == 2 {
            assert_eq!(now[0].id, old.as_str());
            assert_eq!(now[0].target_condition, "tags.env='prod'", "O untouched while N rolls out");
            assert!(targets.contains(&now[1].target_condition.as_str()), "{:?}", now[1].target_condition);
        } else {
            assert_eq!(now.len(), 1, "{now:?}");
        }
        match exited.map(|s| s.code()) {
            None => {}
            // A run that wrote nothing finished: the rollout is done, or waits for the wave.
            Some(Some(0)) if now.len() == 1 && now[0].id != old.as_str() => break,
            Some(Some(0 | 11)) => std::thread::sleep(Duration::from_millis(200)),
            Some(other) => panic!("apply exited {other:?}; killed after {killed_after:?}"),
        }
    }
    let left = server.named("base");
    let new = left[0].id.to_string();
    assert_eq!(left[0].target_condition, "tags.env='prod'");
    assert!(left[0].labels.keys().all(|k| !k.starts_with("fleetform-rollout")), "{:?}", left[0].labels);
    // Hand-listed, each once: create N at the canary, widen it twice, drop its rollout
    // labels, delete O. A write repeated after a kill would show up twice here.
    let put = format!("PUT /configurations/{new}");
    let expected = [put.clone(), put.clone(), put.clone(), put, format!("DELETE /configurations/{old}")];
    assert_eq!(killed_after, expected);
    server.settle(&new);
    assert_eq!(on(&server.applied(), &new), sorted(&all_prod()));
}
