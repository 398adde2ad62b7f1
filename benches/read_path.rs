//! The live-hub read path (#15): one plan over REST against the emulator and one from the
//! snapshot of the same fleet, side by side.
//!
//! Reports the wall time of each, the requests and response bytes per 1,000 IoT Edge devices
//! (counted by the client), the bytes per device of the projection against `SELECT *`, and
//! the simulated read time of a 1,000,000-device hub at S1×1 and S3×1 from the pacer's
//! budget. Fails (exit 1) when the two plans' JSON differ, when a module-twin page is read,
//! when the device pages exceed one per 1,000 Edge devices, or when the projection saves
//! less than 5× the bytes.
//!
//! Run: `cargo bench --bench read_path` (READ_PATH_DEVICES=N to change the fleet, 20,000 by
//! default).
//!
//! With `READ_PATH_TIER=S1` (or S2, S3) the emulator enforces that tier's quotas for one unit
//! and the client paces itself to its default share of them, both over a metering window of
//! `READ_PATH_WINDOW` (default `1s`: a minute's request counts in a second, so a 1M-device
//! S1 read that takes 90 minutes on a hub is rehearsed in 90 s). The run then fails when the
//! emulator answered any request with a quota 429 or when the paced plan read more pages
//! than the unpaced one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{MAX_PAGE_SIZE, OperationClass, Pacer, Quota, RestHub, RestOptions, Tier};
use fleetform::hub::{Fleet, HubRead, SnapshotHub};
use fleetform::manifest::{MapEnv, SecretMode, render_all};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetform");
const EDGE_SHARE: f64 = 0.9;
const DEPLOYMENTS: u32 = 100;

/// `fleetform hub serve`, killed on drop.
struct Emulator {
    child: Child,
    url: String,
    connection: String,
    quota: Option<Quota>,
}

impl Emulator {
    fn start(state: &Path, quota: Option<Quota>) -> Emulator {
        let mut command = Command::new(BIN);
        command.args(["hub", "serve", "--listen", "127.0.0.1:0", "--state"]).arg(state);
        if let Some(q) = &quota {
            command.args(["--tier", tier_name(q.tier), "--units", &q.units.to_string(), "--quota-window"]);
            command.arg(format!("{}ms", q.window.as_millis()));
        }
        let mut child = command
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fleetform binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (mut url, mut connection) = (None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("fleetform hub emulator listening on ") {
                url = Some(u.to_string());
            }
            if let Some(c) = line.strip_prefix("connection string: ") {
                connection = Some(c.to_string());
            }
            if url.is_some() && connection.is_some() {
                break;
            }
        }
        let (Some(url), Some(connection)) = (url, connection) else {
            let _ = child.kill();
            fail("the emulator did not print its banner");
        };
        Emulator { child, url, connection, quota }
    }

    /// A client paced to the emulator's quota, when it has one.
    fn hub(&self) -> RestHub {
        let conn: ConnectionString = self.connection.parse().expect("the emulator's connection string parses");
        let pacer = self.quota.map(|q| std::sync::Arc::new(Pacer::new(q)));
        RestHub::new(
            conn,
            RestOptions { endpoint: Some(self.url.clone()), progress: false, pacer, ..Default::default() },
        )
        .expect("the REST client starts")
    }

    /// The emulator's own counters (`GET /_emulator/stats`).
    fn stats(&self) -> Value {
        reqwest::blocking::get(format!("{}/_emulator/stats", self.url))
            .and_then(|r| r.json())
            .unwrap_or_else(|e| fail(&format!("the emulator's stats: {e}")))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fail(why: &str) -> ! {
    eprintln!("read_path: FAILED: {why}");
    std::process::exit(1)
}

fn plan_json(deployments: &Path, hub: &dyn HubRead) -> (Value, Duration) {
    let started = Instant::now();
    let ws = fleetform::spec::Workspace::load(&[deployments.to_path_buf()]).expect("the generated deployments load");
    let declared = render_all(&ws.deployments, &MapEnv(Default::default()), SecretMode::Reveal)
        .unwrap_or_else(|_| fail("the generated deployments do not render"));
    let current = hub.configurations().unwrap_or_else(|e| fail(&format!("reading the configurations: {e}")));
    let plan = fleetform::plan::plan(declared, current, &Fleet(hub), &Default::default())
        .unwrap_or_else(|e| fail(&format!("planning: {e}")));
    let took = started.elapsed();
    let mut json = fleetform::render::json::plan_json(&plan);
    // The hub's name is the one thing that must differ.
    json["hub"] = Value::Null;
    (json, took)
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::S1 => "S1",
        Tier::S2 => "S2",
        Tier::S3 => "S3",
    }
}

/// `READ_PATH_TIER` and `READ_PATH_WINDOW`: the quota both sides keep, if any.
fn quota_from_env() -> Option<Quota> {
    let tier = match std::env::var("READ_PATH_TIER").ok()?.to_ascii_uppercase().as_str() {
        "S1" => Tier::S1,
        "S2" => Tier::S2,
        "S3" => Tier::S3,
        other => fail(&format!("READ_PATH_TIER={other}: expected S1, S2 or S3")),
    };
    let window = std::env::var("READ_PATH_WINDOW").unwrap_or_else(|_| "1s".into());
    let window = humantime::parse_duration(&window)
        .unwrap_or_else(|e| fail(&format!("READ_PATH_WINDOW={window}: {e} (e.g. 1s, 500ms)")));
    Some(Quota { window, ..Quota::new(tier, 1) })
}

fn per_thousand(n: u64, edge: u64) -> f64 {
    n as f64 * 1000.0 / edge as f64
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument would mean nothing here.
    let devices: u32 = std::env::var("READ_PATH_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let hub_dir = dir.path().join("hub");
    let out = Command::new(BIN)
        .args(["hub", "generate", "--devices", &devices.to_string(), "--edge-share", &EDGE_SHARE.to_string()])
        .args(["--deployments", &DEPLOYMENTS.to_string(), "--out"])
        .arg(&hub_dir)
        .env_clear()
        .output()
        .expect("hub generate runs");
    if !out.status.success() {
        fail(&format!("hub generate: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let deployments = hub_dir.join("deployments");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("the state dir");
    for name in ["configurations.json", "devices.jsonl", "modules.jsonl"] {
        std::fs::copy(hub_dir.join(name), state.join(name)).expect("the fleet copies");
    }
    let quota = quota_from_env();
    let emulator = Emulator::start(&state, quota);

    let snapshot = SnapshotHub::open(&hub_dir).unwrap_or_else(|e| fail(&format!("the snapshot: {e}")));
    let (offline, offline_took) = plan_json(&deployments, &snapshot);
    let rest = emulator.hub();
    let (online, online_took) = plan_json(&deployments, &rest);
    if online != offline {
        fail("the plan over REST differs from the plan from the snapshot");
    }
    // Read before the unpaced comparison reads below add to the emulator's counts.
    let served = emulator.stats();
    let edge = online["summary"]["edge_devices"].as_u64().unwrap_or(0).max(1);
    let stats = rest.stats();
    // One COUNT for the device total, then the pages.
    let pages = stats.queries.saturating_sub(1);
    let fewest = edge.div_ceil(MAX_PAGE_SIZE as u64);

    let whole = emulator.hub();
    let mut whole_rows = 0u64;
    whole
        .query_pages("SELECT * FROM devices WHERE capabilities.iotEdge = true", &mut |rows| {
            whole_rows += rows.len() as u64;
            Ok(())
        })
        .unwrap_or_else(|e| fail(&format!("SELECT *: {e}")));
    let whole_per_device = whole.stats().body_bytes as f64 / whole_rows.max(1) as f64;
    // The configurations' bytes are not per device: only the query pages count here.
    let projected = emulator.hub();
    let query = fleetform::hub::rest::projection::ProjectedQuery::new(&read_paths(&deployments));
    let mut projected_rows = 0u64;
    projected
        .query_pages(&query.text, &mut |rows| {
            projected_rows += rows.len() as u64;
            Ok(())
        })
        .unwrap_or_else(|e| fail(&format!("the projection: {e}")));
    let projected_per_device = projected.stats().body_bytes as f64 / projected_rows.max(1) as f64;

    println!("read_path: {devices} devices, {edge} IoT Edge, {DEPLOYMENTS} deployments");
    println!("  plan from the snapshot:         {:>8.3} s", offline_took.as_secs_f64());
    println!("  plan over REST (emulator):      {:>8.3} s   identical JSON: yes", online_took.as_secs_f64());
    if let Some(q) = &quota {
        let throttled = served["throttled"].as_u64().unwrap_or(u64::MAX);
        let queries = served["classes"]["queries"]["requests"].as_u64().unwrap_or(0);
        let minutes = online_took.as_secs_f64() / q.window.as_secs_f64();
        println!(
            "  quota {}×{} (window {:?}, share {}: {} queries a window): {queries} queries served, {throttled} quota 429s; {minutes:.1} windows = {minutes:.1} min on a hub",
            tier_name(q.tier),
            q.units,
            q.window,
            q.share,
            q.budget(OperationClass::Queries)
        );
        if throttled != 0 {
            fail(&format!("the paced plan drew {throttled} quota 429s from the emulator"));
        }
    }
    println!(
        "  requests: {} queries ({pages} device pages, fewest possible {fewest}; 1 count), {} configuration, {} twin reads; 0 module-twin pages",
        stats.queries, stats.configurations, stats.twin_reads
    );
    println!(
        "  per 1,000 IoT Edge devices:     {:>8.2} requests, {:>10.0} bytes",
        per_thousand(stats.queries + stats.configurations, edge),
        per_thousand(stats.body_bytes, edge)
    );
    println!(
        "  bytes per device: projection {projected_per_device:.0}, SELECT * {whole_per_device:.0} ({:.1}× fewer)",
        whole_per_device / projected_per_device
    );
    let million_pages = (1_000_000.0 * EDGE_SHARE / MAX_PAGE_SIZE as f64).ceil() as u64;
    for (tier, name) in [(Tier::S1, "S1×1"), (Tier::S3, "S3×1")] {
        let quota = Quota::new(tier, 1);
        // The device total's COUNT and the progress bar's, then the pages.
        let t = quota.time_for(OperationClass::Queries, million_pages + 2);
        println!(
            "  simulated 1M-device read at {name} (share {}, {} queries a minute): {million_pages} pages + 2 counts in {}",
            quota.share,
            quota.budget(OperationClass::Queries),
            humantime::format_duration(Duration::from_secs(t.as_secs()))
        );
    }
    if pages > fewest {
        fail(&format!("{pages} device pages for {edge} IoT Edge devices; {fewest} would do"));
    }
    if whole_per_device < 5.0 * projected_per_device {
        fail("the projection saves less than 5× the bytes of SELECT *");
    }
}

/// The paths the plan's conditions read (the generated hub holds no deployments yet, so the
/// declared targets are all of them).
fn read_paths(deployments: &Path) -> fleetform::model::ReadPaths {
    let ws = fleetform::spec::Workspace::load(&[deployments.to_path_buf()]).expect("the generated deployments load");
    let declared = render_all(&ws.deployments, &MapEnv(Default::default()), SecretMode::Reveal)
        .unwrap_or_else(|_| fail("the generated deployments do not render"));
    let conditions: Vec<_> = declared
        .iter()
        .filter_map(|r| fleetform::query::parse_condition(&r.configuration.target_condition).ok())
        .collect();
    fleetform::query::ConditionSet::with_conditions(&conditions).read_paths()
}
