//! Issue #15, the live-hub read path: a plan over REST reads only what its conditions need
//! (a projection of IoT Edge devices, no module twins unless unmanaged devices get a
//! deployment), stays inside its pace, and equals
//! the plan from a snapshot of the same fleet; `plan --twins` says how old its twins are.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{OperationClass, Pacer, Quota, RestHub, RestOptions, Tier};
use fleetform::hub::{Fleet, HubRead, SnapshotHub};
use fleetform::manifest::{MapEnv, SecretMode, render_all};
use serde_json::Value;

/// A generated fleet: `devices` twins, 80% IoT Edge, with 12 matching deployments.
fn generated(devices: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = common::sealed()
        .args(["hub", "generate", "--edge-share", "0.8", "--deployments", "12", "--devices"])
        .arg(devices.to_string())
        .arg("--out")
        .arg(dir.path().join("hub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// IoT Edge devices in a snapshot's device file, counted from the file itself.
fn edge_devices_in(hub: &Path) -> u64 {
    let text = std::fs::read_to_string(hub.join("devices.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["capabilities"]["iotEdge"] == Value::Bool(true))
        .count() as u64
}

fn rest(server: &common::EmulatorProcess, options: RestOptions) -> RestHub {
    let conn: ConnectionString = server.connection.parse().unwrap();
    RestHub::new(conn, RestOptions { endpoint: Some(server.url.clone()), progress: false, ..options }).unwrap()
}

/// The plan of the generated deployments against `hub`, as the JSON `plan --format json`
/// prints, with the hub's description taken out (it names the hub, which differs).
fn plan_json(deployments: &Path, hub: &dyn HubRead) -> Value {
    let ws = fleetform::spec::Workspace::load(&[deployments.to_path_buf()]).unwrap();
    let declared = render_all(&ws.deployments, &MapEnv(Default::default()), SecretMode::Reveal).unwrap();
    let plan =
        fleetform::plan::plan(declared, hub.configurations().unwrap(), &Fleet(hub), &Default::default()).unwrap();
    let mut json = fleetform::render::json::plan_json(&plan);
    json["hub"] = Value::Null;
    json
}

#[test]
fn a_plan_over_rest_reads_one_page_per_thousand_edge_devices_and_equals_the_snapshot_plan() {
    let dir = generated(2500);
    let hub_dir = dir.path().join("hub");
    let edge = edge_devices_in(&hub_dir);
    assert!(edge > 1000 && edge < 2500, "{edge}");
    let state = tempfile::tempdir().unwrap();
    common::copy_dir(&hub_dir, state.path());
    let server = common::EmulatorProcess::start(state.path(), &[]);

    let over_rest = rest(&server, RestOptions::default());
    let online = plan_json(&hub_dir.join("deployments"), &over_rest);
    let offline = plan_json(&hub_dir.join("deployments"), &SnapshotHub::open(&hub_dir).unwrap());
    assert_eq!(online, offline);
    assert_eq!(online["summary"]["devices"], 2500, "non-Edge devices are counted though not read");
    assert_eq!(online["summary"]["edge_devices"], edge);
    assert!(online["cohorts"].as_array().is_some_and(|c| !c.is_empty()), "{online}");

    // One COUNT for the device total, then one page per 1,000 IoT Edge devices; the
    // configurations in one request. The generated hub has no deployments yet, so every
    // IoT Edge device is unmanaged: the plan also reads what the agents of those that get a
    // standard deployment run. Their ids (19 characters quoted, 2 to separate) take more
    // `IN [...]` queries of 8192 characters (under 400 ids each) than reading every agent
    // twin's modules map a page of 1,000 at a time, so those pages are read: as many as for
    // the device twins.
    let stats = over_rest.stats();
    let reported: u64 = online["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["running_before"].as_array().cloned().unwrap_or_default())
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert!(reported.div_ceil(400) > edge.div_ceil(1000), "{reported} of {edge}");
    assert_eq!(stats.queries, 1 + edge.div_ceil(1000) + edge.div_ceil(1000), "{stats:?}");
    assert_eq!(stats.configurations, 1, "{stats:?}");
    assert_eq!(stats.twin_reads, 0, "{stats:?}");

    // Once applied, the same plan is an ordinary one: nothing unmanaged gets a deployment,
    // and not one module twin is read.
    let out = common::sealed()
        .args(["apply", "--auto-approve", "--hub", &server.connection, "--endpoint", &server.url])
        .arg(hub_dir.join("deployments"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::transcript(&out));
    let after_apply = rest(&server, RestOptions::default());
    let again = plan_json(&hub_dir.join("deployments"), &after_apply);
    assert_eq!(again["summary"]["devices_changed"], 0, "{again}");
    let stats = after_apply.stats();
    assert_eq!(stats.queries, 1 + edge.div_ceil(1000), "{stats:?}");

    // The rows hold only the paths read: far fewer bytes than whole twins.
    let whole = rest(&server, RestOptions::default());
    whole.query_pages("SELECT * FROM devices WHERE capabilities.iotEdge = true", &mut |_| Ok(())).unwrap();
    let projected_bytes = over_rest.stats().body_bytes;
    assert!(whole.stats().body_bytes > 5 * projected_bytes, "{} vs {projected_bytes}", whole.stats().body_bytes);
}

#[test]
fn paced_reads_keep_to_their_budget_and_plan_the_same() {
    let dir = generated(1200);
    let hub_dir = dir.path().join("hub");
    let state = tempfile::tempdir().unwrap();
    common::copy_dir(&hub_dir, state.path());
    let server = common::EmulatorProcess::start(state.path(), &[]);
    // S1, one unit, half, in a one-second window: 10 queries a second, 1 at once, then one
    // every 0.1 s. Pages of 100 rows: 1 count + ~10 pages.
    let quota = Quota { window: Duration::from_secs(1), ..Quota::new(Tier::S1, 1) };
    let paced = rest(
        &server,
        RestOptions { page_size: 100, pacer: Some(std::sync::Arc::new(Pacer::new(quota))), ..Default::default() },
    );
    let started = Instant::now();
    let online = plan_json(&hub_dir.join("deployments"), &paced);
    let took = started.elapsed();
    let queries = paced.stats().queries;
    assert!(queries >= 9, "{queries}");
    // The budget allows no faster than this; the emulator is much faster.
    let least = quota.time_for(OperationClass::Queries, queries);
    assert!(took >= least, "{queries} queries in {took:?}, under the {least:?} the pace allows");
    assert_eq!(online, plan_json(&hub_dir.join("deployments"), &SnapshotHub::open(&hub_dir).unwrap()));
}

/// `plan --twins`: the deployments from the emulator, the twins from a snapshot taken by
/// `fleetform snapshot`; the plan is the one against the emulator, and stderr says the age.
#[test]
fn plan_with_twins_from_a_snapshot_says_their_age_and_warns_when_old() {
    let state = common::campus_hub_copy();
    let server = common::EmulatorProcess::start(state.path(), &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let snap = tempfile::tempdir().unwrap();
    let snap_dir = snap.path().join("twins");
    let hub = ["--hub", &server.connection, "--endpoint", &server.url];
    let out = common::sealed().args(["snapshot", "--out"]).arg(&snap_dir).args(hub).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let info: Value = serde_json::from_slice(&std::fs::read(snap_dir.join("snapshot.json")).unwrap()).unwrap();
    assert!(info["twinsReadAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{info}");

    let plan = |extra: &[&str]| {
        let out = common::sealed()
            .current_dir(root)
            .args(["plan", "examples/campus/deployments", "--format", "json"])
            .args(hub)
            .args(extra)
            .envs(common::DEMO_ENV.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        (common::stdout(&out), common::stderr(&out))
    };
    let twins = snap_dir.to_str().unwrap();
    let (direct, _) = plan(&[]);
    let (from_snapshot, said) = plan(&["--twins", twins]);
    assert_eq!(from_snapshot, direct);
    assert!(said.contains(&format!("Device twins from {twins}, read under a minute ago (")), "{said}");
    assert!(!said.contains("warning"), "{said}");

    // Three days old: past the default 24h, not past 4d.
    let three_days_ago = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400 + 120);
    let stamp = humantime::format_rfc3339_seconds(three_days_ago).to_string();
    std::fs::write(snap_dir.join("snapshot.json"), format!("{{\"twinsReadAt\": \"{stamp}\"}}")).unwrap();
    let (_, said) = plan(&["--twins", twins]);
    assert!(said.contains(&format!("read 3days 2m ago ({stamp})")), "{said}");
    assert!(
        said.contains(&format!(
            "warning: the device twins are older than --twins-max-age 1day: device counts may be out of date; refresh them with `fleetform snapshot --out {twins}`"
        )),
        "{said}"
    );
    let (_, said) = plan(&["--twins", twins, "--twins-max-age", "4d"]);
    assert!(!said.contains("warning"), "{said}");

    // A snapshot without snapshot.json is dated by its device file, and says so.
    std::fs::remove_file(snap_dir.join("snapshot.json")).unwrap();
    let (_, said) = plan(&["--twins", twins]);
    assert!(said.contains("by the device file's time: the snapshot records none"), "{said}");

    // A malformed one is an error naming the file.
    std::fs::write(snap_dir.join("snapshot.json"), "{\"twinsReadAt\": \"last week\"}").unwrap();
    let out = common::sealed()
        .current_dir(root)
        .args(["plan", "examples/campus/deployments", "--twins", twins])
        .args(hub)
        .envs(common::DEMO_ENV.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("snapshot.json: twinsReadAt \"last week\" is not an RFC 3339 time"), "{err}");
}
