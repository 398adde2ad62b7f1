//! `fleetform apply` and `fleetform status` end to end: the real binary against the
//! emulator (`fleetform hub serve`) on 127.0.0.1, and against snapshot directories.
//! Every server is killed when its test ends, and every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{DEMO_ENV, cli, transcript};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use fleetform::apply::{ApplyOptions, execute};
use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Configuration, HubRead};
use fleetform::manifest::{LABEL_COMMIT, LABEL_HASH, LABEL_NAME, MapEnv, SecretMode, render_all};
use fleetform::model::ConfigurationKind;
use fleetform::plan::StepOp;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deployments() -> PathBuf {
    root().join("examples/campus/deployments")
}

/// A running emulator over a temp copy of the example hub; killed and reaped on drop.
struct Server {
    _process: common::EmulatorProcess,
    url: String,
    connection: String,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(flags: &[&str]) -> Server {
    let dir = common::campus_hub_copy();
    let state = dir.path().to_path_buf();
    let process = common::EmulatorProcess::start(&state, flags);
    Server { url: process.url.clone(), connection: process.connection.clone(), _process: process, state, _dir: dir }
}

impl Server {
    fn hub(&self) -> RestHub {
        let conn: ConnectionString = self.connection.parse().unwrap();
        RestHub::new(conn, RestOptions { endpoint: Some(self.url.clone()), progress: false, ..Default::default() })
            .unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = cli();
        cmd.args(args).args(["--hub", &self.connection, "--endpoint", &self.url]);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn apply(&self, paths: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.command(&["apply", "--auto-approve"]);
        cmd.arg(paths).args(extra);
        // Every hub operation is bounded, so a test cannot hang on a stuck server.
        if !extra.contains(&"--timeout") {
            cmd.args(["--timeout", "60s"]);
        }
        cmd.output().unwrap()
    }

    /// `plan --detailed-exitcode` of `paths`: asserts it says "No changes".
    fn assert_converged(&self, paths: &Path) {
        let mut cmd = self.command(&["plan", "--detailed-exitcode"]);
        let out = cmd.arg(paths).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("No changes. The hub matches the repository."));
        assert_no_duplicates(&self.hub().configurations().unwrap());
    }
}

/// At most one managed configuration per deployment name.
fn assert_no_duplicates(configs: &[Configuration]) {
    let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in configs.iter().filter(|c| c.labels.contains_key(LABEL_HASH)) {
        if let Some(n) = c.labels.get(LABEL_NAME) {
            names.entry(n).or_default().push(&c.id);
        }
    }
    for (name, ids) in names {
        assert_eq!(ids.len(), 1, "{name} is on the hub more than once: {ids:?}");
    }
}

fn copy_deployments() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(deployments()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

/// The deployments with campus-base's Telemetry image bumped: a replacement.
fn bumped_deployments() -> tempfile::TempDir {
    let dir = copy_deployments();
    let base = dir.path().join("base.kdl");
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(text.contains("telemetry:3.2.0"));
    std::fs::write(&base, text.replace("telemetry:3.2.0", "telemetry:3.2.1")).unwrap();
    dir
}

#[test]
fn apply_converges_and_status_shows_commit_and_metrics() {
    let server = start(&[]);
    let out = server.apply(&deployments(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Apply complete: 2 created, 2 updated, 1 deleted."), "{}", transcript(&out));
    server.assert_converged(&deployments());

    // A second apply has nothing to do.
    let again = server.apply(&deployments(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes. The hub matches the repository."));

    let head = fleetform::git::head_commit(&deployments());
    let status = server.run(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", transcript(&status));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("campus-base (campus-base-"), "{text}");
    assert!(text.contains("Unmanaged IoT Edge deployments (1)"), "{text}");
    assert!(text.contains("targeted,") && text.contains("reported failed"), "{text}");
    // Custom metric results, as the hub computes them.
    assert!(text.contains("metrics: healthy ") && text.contains(", on-rc "), "{text}");
    let json = server.run(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let base = v["managed"].as_array().unwrap().iter().find(|d| d["name"] == "campus-base").unwrap();
    assert!(base["system_metrics"]["targeted"].as_i64().unwrap() > 0, "{base}");
    assert!(base["system_metrics"]["applied"].as_i64().unwrap() > 0, "{base}");
    assert!(base["metrics"]["healthy"].as_i64().unwrap() > 0, "{base}");
    assert_eq!(base["kind"], "standard");
    if let Some(head) = head {
        assert_eq!(base["commit"], head.as_str());
        assert!(text.contains(&format!("commit: {head}")), "{text}");
    }
}

/// Devices with an applied standard deployment, from the hub's own metrics.
fn devices_with_a_standard(hub: &RestHub) -> i64 {
    hub.configurations()
        .unwrap()
        .iter()
        .filter(|c| c.kind() == ConfigurationKind::Standard)
        .map(|c| hub.configuration(&c.id).unwrap().system_metrics.unwrap().results["appliedCount"])
        .sum()
}

#[test]
fn a_replace_creates_before_it_deletes_and_no_device_loses_its_standard() {
    let server = start(&[]);
    let out = server.apply(&deployments(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let hub = server.hub();
    let before = devices_with_a_standard(&hub);
    assert!(before > 200, "{before}");

    let bumped = bumped_deployments();
    let ws = fleetform::spec::Workspace::load(&[bumped.path().to_path_buf()]).unwrap();
    let env = MapEnv(DEMO_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let declared = render_all(&ws.deployments, &env, SecretMode::Reveal).unwrap();
    let current = hub.configurations().unwrap();
    let plan = fleetform::plan::plan(declared, current, &fleetform::hub::Fleet(&hub), &Default::default()).unwrap();
    let create = plan.steps.iter().find(|s| s.name == "campus-base" && s.op == StepOp::Create).unwrap();
    let delete = plan.steps.iter().find(|s| s.name == "campus-base" && s.op == StepOp::Delete).unwrap();
    assert!(create.number < delete.number, "{:?}", plan.steps);
    assert_ne!(create.id, delete.id);

    let mut checked = Vec::new();
    let report =
        execute(&hub, &plan.steps, &plan.declared, &ApplyOptions::default(), &AtomicBool::new(false), &mut |r| {
            // Between steps, every device that had a standard deployment applied still has one.
            checked.push((r.step.number, devices_with_a_standard(&hub)));
        });
    assert!(report.completed(), "{}", report.summary_text());
    assert_eq!(checked.len(), plan.steps.len());
    for (step, n) in &checked {
        assert_eq!(*n, before, "after step {step}, {n} devices have a standard deployment, not {before}");
    }
    server.assert_converged(bumped.path());
}

#[test]
fn injected_429s_and_503s_are_survived() {
    let server = start(&["--inject-429", "0.3", "--inject-503", "0.2"]);
    let out = server.apply(&deployments(), &["--timeout", "2m"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let stats: serde_json::Value =
        reqwest::blocking::get(format!("{}/emulator/stats", server.url)).unwrap().json().unwrap();
    assert!(stats["injected429"].as_u64().unwrap() > 0 && stats["injected503"].as_u64().unwrap() > 0, "{stats}");
    server.assert_converged(&deployments());
}

#[test]
fn a_killed_apply_converges_on_the_next_run() {
    // Throttling slows every step down, so the kill lands between the writes.
    let server = start(&["--inject-429", "0.3"]);
    let bumped = bumped_deployments();
    let initial = std::fs::read(server.state.join("configurations.json")).unwrap();
    let mut child = server
        .command(&["apply", "--auto-approve", "--timeout", "60s"])
        .arg(bumped.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = std::fs::read(server.state.join("configurations.json")).unwrap_or_default();
        if (!now.is_empty() && now != initial) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let finished_before_kill = child.try_wait().unwrap().is_some();
    eprintln!("apply had finished before the kill: {finished_before_kill}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_ne!(std::fs::read(server.state.join("configurations.json")).unwrap(), initial, "no step was written");
    if !finished_before_kill {
        // Mid-run: the hub is between the plan's states, not yet converged.
        let mut plan = server.command(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.arg(bumped.path()).output().unwrap().status.code(), Some(2));
    }
    let again = server.apply(bumped.path(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
    server.assert_converged(bumped.path());
}

#[test]
fn two_concurrent_applies_leave_a_valid_converged_hub() {
    let server = start(&[]);
    let spawn = || {
        server
            .command(&["apply", "--auto-approve", "--timeout", "60s"])
            .arg(deployments())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    for o in &outs {
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(outs.iter().any(|o| o.status.code() == Some(0)), "{}\n{}", transcript(&outs[0]), transcript(&outs[1]));
    for o in &outs {
        if o.status.code() != Some(0) {
            // The loser stops cleanly on the hub's etag or existence check.
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{}", transcript(o));
            assert!(err.contains("412") || err.contains("already exists"), "{}", transcript(o));
            assert!(String::from_utf8_lossy(&o.stdout).contains("Apply stopped"), "{}", transcript(o));
        }
    }
    server.assert_converged(&deployments());
}

#[test]
fn wait_succeeds_when_devices_report_success() {
    let server = start(&["--simulate-success-after", "1"]);
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s"]);
    let out = cmd.arg(deployments()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rollout complete: 4 deployments"), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting: campus-base-"), "{}", transcript(&out));
}

#[test]
fn wait_fails_when_devices_report_failure() {
    let server = start(&["--simulate-success-after", "1", "--simulate-failure-share", "0.5"]);
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s", "--format", "json"]);
    let started = Instant::now();
    let out = cmd.arg(deployments()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(started.elapsed() < Duration::from_secs(50), "failure should end the wait early");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completed"], true);
    assert_eq!(v["wait"]["outcome"], "failed", "{v}");
    assert!(v["wait"]["deployment"]["reported_failed"].as_i64().unwrap() > 0, "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Rollout failed: deployment"), "{}", transcript(&out));
}

/// A snapshot copy and a saved plan of the example against it.
fn saved_plan() -> (tempfile::TempDir, PathBuf) {
    let hub = common::campus_hub_copy();
    let file = hub.path().join("plan.json");
    let out =
        cli().args(["plan", "--hub"]).arg(hub.path()).arg(deployments()).arg("--out").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    (hub, file)
}

fn apply_plan_file(hub: &Path, file: &Path, paths: &Path) -> Output {
    cli().arg("apply").arg(file).arg(paths).arg("--hub").arg(hub).output().unwrap()
}

#[test]
fn a_saved_plan_is_carried_out_exactly_then_has_nothing_left() {
    let (hub, file) = saved_plan();
    // No paths after the plan file: the plan's own paths are re-rendered.
    let out = cli().arg("apply").arg(&file).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Apply complete: 2 created, 2 updated, 1 deleted."));
    let configs = fleetform::hub::SnapshotHub::open(hub.path()).unwrap().configurations().unwrap();
    assert_no_duplicates(&configs);
    if let Some(head) = fleetform::git::head_commit(&deployments()) {
        let base =
            configs.iter().find(|c| c.labels.get(LABEL_NAME).map(String::as_str) == Some("campus-base")).unwrap();
        assert_eq!(base.labels.get(LABEL_COMMIT), Some(&head));
    }
    // The same plan again is stale: the hub moved on.
    let twice = apply_plan_file(hub.path(), &file, &deployments());
    assert_eq!(twice.status.code(), Some(1), "{}", transcript(&twice));
}

#[test]
fn a_stale_saved_plan_is_refused_naming_the_configuration() {
    let (hub, file) = saved_plan();
    // Another apply changes the hub in between: campus-base replaced by other content.
    let bumped = bumped_deployments();
    let other = cli().args(["apply", "--auto-approve", "--hub"]).arg(hub.path()).arg(bumped.path()).output().unwrap();
    assert_eq!(other.status.code(), Some(0), "{}", transcript(&other));
    let before = std::fs::read(hub.path().join("configurations.json")).unwrap();
    let out = apply_plan_file(hub.path(), &file, &deployments());
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the saved plan is stale"), "{err}");
    assert!(err.contains("configuration campus-base-85df888b is no longer on the hub"), "{err}");
    assert!(err.contains("appeared on the hub"), "{err}");
    assert_eq!(std::fs::read(hub.path().join("configurations.json")).unwrap(), before, "nothing was written");
}

#[test]
fn a_saved_plan_is_refused_when_secrets_change_the_content() {
    let (hub, file) = saved_plan();
    let out = cli()
        .arg("apply")
        .arg(&file)
        .arg(deployments())
        .arg("--hub")
        .arg(hub.path())
        .env("ACR_PASSWORD", "rotated")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deployment campus-base (campus-base-") && err.contains("now renders to hash"), "{err}");
}

#[test]
fn without_a_terminal_apply_asks_for_auto_approve() {
    let hub = common::campus_hub_copy();
    let before = std::fs::read(hub.path().join("configurations.json")).unwrap();
    let out = cli().args(["apply", "--hub"]).arg(hub.path()).arg(deployments()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Refusing to apply: no terminal to confirm on"));
    assert_eq!(std::fs::read(hub.path().join("configurations.json")).unwrap(), before);
    // --wait against a snapshot says there is nothing to wait for.
    let waited =
        cli().args(["apply", "--auto-approve", "--wait", "--hub"]).arg(hub.path()).arg(deployments()).output().unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", transcript(&waited));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("nothing to wait for"), "{}", transcript(&waited));
}

#[test]
fn ctrl_c_stops_after_the_current_step_and_reports() {
    // Throttling makes each step take long enough to interrupt between them.
    let server = start(&["--inject-429", "0.3"]);
    let bumped = bumped_deployments();
    let initial = std::fs::read(server.state.join("configurations.json")).unwrap();
    let child = server
        .command(&["apply", "--auto-approve", "--timeout", "60s"])
        .arg(bumped.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read(server.state.join("configurations.json")).unwrap_or_default() == initial {
        assert!(Instant::now() < deadline, "no step was written within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("interrupted apply exited {:?}", out.status.code());
    if out.status.code() == Some(0) {
        // The signal arrived after the last step: nothing left to interrupt.
        assert!(stdout.contains("Apply complete"), "{}", transcript(&out));
    } else {
        assert_eq!(out.status.code(), Some(130), "{}", transcript(&out));
        assert!(stdout.contains("Apply interrupted"), "{}", transcript(&out));
        assert!(stdout.contains("Remaining:\n"), "{}", transcript(&out));
    }
    let again = server.apply(bumped.path(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
    server.assert_converged(bumped.path());
}

#[test]
fn wait_times_out_when_devices_never_report() {
    let server = start(&[]);
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=2s"]);
    let started = Instant::now();
    let out = cmd.arg(deployments()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(started.elapsed() < Duration::from_secs(55));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Apply complete"), "{}", transcript(&out));
    assert!(stdout.contains("Rollout timed out; still waiting for: "), "{}", transcript(&out));
    assert!(stdout.contains("building-monitoring-"), "{}", transcript(&out));
}

/// Issue #12 item 2: a deployment whose target matches no device is not "rolled out":
/// `--wait` names it and exits 3, while the others still roll out.
#[test]
fn wait_names_a_deployment_that_targets_no_device_and_exits_3() {
    let server = start(&["--simulate-success-after", "0.5"]);
    let dir = copy_deployments();
    let canary = dir.path().join("canary.kdl");
    let text = std::fs::read_to_string(&canary).unwrap();
    assert!(text.contains("tags.location.floor=3\""));
    std::fs::write(&canary, text.replace("tags.location.floor=3\"", "tags.location.floor=99\"")).unwrap();
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s"]);
    let out = cmd.arg(dir.path()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Rollout complete"), "{}", transcript(&out));
    assert!(
        stdout.contains("Rollout incomplete: 3 deployments applied and reported successful; 1 targets no device:"),
        "{}",
        transcript(&out)
    );
    let line = stdout.lines().find(|l| l.contains("targets no device (")).unwrap_or_default();
    assert!(line.trim_start().starts_with("campus-canary-"), "{}", transcript(&out));
    assert!(line.contains("targets no device (targeted 0, applied 0/0"), "{}", transcript(&out));

    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s", "--format", "json"]);
    let out = cmd.arg(dir.path()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    // Nothing left to write: no wait, plain success.
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn an_edited_plan_deleting_an_unmanaged_deployment_is_refused_by_the_emulator_run() {
    let server = start(&[]);
    let file = server.state.join("edited.plan");
    let out = server.command(&["plan"]).arg("--out").arg(&file).arg(deployments()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let mut plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let steps = plan["steps"].as_array_mut().unwrap();
    let number = steps.len() + 1;
    steps.push(serde_json::json!({
        "number": number, "op": "delete", "name": "manual-hotfix", "id": "manual-hotfix",
        "priority": 0, "etag": null, "reason": "delete"
    }));
    std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
    let before = server.hub().configurations().unwrap();
    let mut cmd = server.command(&["apply", "--timeout", "60s"]);
    let out = cmd.arg(&file).arg(deployments()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fleetform::apply::altered_plan"), "{}", transcript(&out));
    let after = server.hub().configurations().unwrap();
    assert!(after.iter().any(|c| c.id == "manual-hotfix"), "the unmanaged deployment is still there");
    let ids = |c: &[Configuration]| c.iter().map(|c| (c.id.clone(), c.etag.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "nothing was written");
}

/// Issue #12 item 1 on the example fleet: building 12 leaves campus-base's target and
/// matches no deployment any more. The hub leaves such devices alone (they keep their last
/// desired properties, unmanaged) — also when the fleet has devices that match only a
/// layered deployment, whose manifest (no standard, so empty) must never be reused for them.
#[test]
fn devices_that_leave_every_target_keep_their_desired_properties() {
    let server = start(&[]);
    let dir = copy_deployments();
    let out = server.apply(dir.path(), &[]);
    assert!(out.status.success(), "{}", transcript(&out));
    let hub = server.hub();
    let device = "b12-f1-dc-000280";
    let before = hub.module_twin(device, "$edgeAgent").unwrap();
    let modules = before["properties"]["desired"]["modules"].clone();
    assert!(modules.get("Telemetry").is_some() && modules.get("BacnetBridge").is_some(), "{before}");

    let base = dir.path().join("base.kdl");
    let text = std::fs::read_to_string(&base).unwrap();
    let narrowed = text.replace(
        "target \"tags.environment='prod'\"",
        "target \"tags.environment='prod' AND tags.location.building != '12'\"",
    );
    assert_ne!(narrowed, text, "base.kdl's target is as this test expects");
    std::fs::write(&base, narrowed).unwrap();
    let out = server.apply(dir.path(), &[]);
    assert!(out.status.success(), "{}", transcript(&out));
    let after = hub.module_twin(device, "$edgeAgent").unwrap();
    assert_eq!(after["properties"]["desired"]["modules"], modules, "{after}");
    assert_eq!(after["properties"]["desired"]["systemModules"], before["properties"]["desired"]["systemModules"]);
    let edge_hub = hub.module_twin(device, "$edgeHub").unwrap();
    assert!(edge_hub["properties"]["desired"]["routes"].as_object().is_some_and(|r| !r.is_empty()), "{edge_hub}");
}

/// Review of #12, item 6: a standard deployment every targeted device of which runs a
/// higher-priority one (here: priority 5 on campus-canary's devices, which run it at 20) is
/// targeted but applied nowhere. That is not a rollout: `--wait` says so and exits 3.
#[test]
fn wait_names_a_deployment_outranked_on_every_device_and_exits_3() {
    let server = start(&["--simulate-success-after", "0.5"]);
    let dir = copy_deployments();
    std::fs::write(
        dir.path().join("shadow.kdl"),
        r#"deployment "shadow" {
    priority 5
    target "tags.environment='prod' AND tags.location.building='20' AND tags.location.floor=3"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "S" image="contoso.azurecr.io/s:1.0"
}
"#,
    )
    .unwrap();
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s"]);
    let out = cmd.arg(dir.path()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Rollout complete"), "{}", transcript(&out));
    assert!(
        stdout.contains("deployments applied and reported successful; 1 is applied to no device:"),
        "{}",
        transcript(&out)
    );
    let line = stdout.lines().find(|l| l.trim_start().starts_with("shadow-")).unwrap_or_default();
    assert!(
        line.contains("applied to no device: every device it targets runs a higher-priority deployment"),
        "{}",
        transcript(&out)
    );
    // Targeted, but expected and applied nowhere.
    assert!(line.contains("applied 0/0") && !line.contains("targeted 0,"), "{}", transcript(&out));
}

/// Issue #16 item 7: a failure confined to one building (`hub serve
/// --simulate-failure-where`) ends `apply --wait`, which names failing devices: all of
/// them in building 12 (their ids start with `b12-` in the example), smallest ids first,
/// with the 500 the emulator reports for the cohort.
#[test]
fn wait_names_the_failing_devices_of_a_failing_cohort() {
    let server = start(&["--simulate-success-after", "1", "--simulate-failure-where", "tags.location.building = '12'"]);
    let mut cmd = server.command(&["apply", "--auto-approve", "--timeout", "60s", "--wait=60s", "--format", "json"]);
    let out = cmd.arg(deployments()).env("FLEETFORM_WAIT_INTERVAL_MS", "200").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["wait"]["outcome"], "failed", "{v}");
    let failed = v["wait"]["failed_devices"].as_array().expect("failing devices are named");
    assert!(!failed.is_empty() && failed.len() <= 5, "{v}");
    let ids: Vec<&str> = failed.iter().map(|f| f["device_id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|d| d.starts_with("b12-")), "only the cohort fails: {ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert!(failed.iter().all(|f| f["code"] == 500), "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("  {} reports 500: simulated failure", ids[0])), "{}", transcript(&out));
}

#[test]
fn a_bad_failure_cohort_condition_is_refused_at_start() {
    let state = common::campus_hub_copy();
    let out = cli()
        .args(["hub", "serve", "--listen", "127.0.0.1:0", "--simulate-failure-where", "tags.x = "])
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--simulate-failure-where"), "{}", transcript(&out));
}
