//! `fleetform hub serve` as a throttled hub: per-class quotas answered with the hub's 429
//! body, request counts per class, the hub's projection shapes and its page-size cap.
//! Expectations are written by hand from docs/hub-semantics.md#quotas, #query-paging and
//! #projections, not taken from the emulator's output.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use fleetform::hub::connection::{ConnectionString, SasToken};
use serde_json::{Value, json};

/// Five devices: three IoT Edge (one without a building tag), two not.
fn fleet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    let twins = [
        json!({"deviceId": "edge-1", "status": "enabled", "lastActivityTime": "2026-05-07T00:50:38Z",
               "capabilities": {"iotEdge": true},
               "tags": {"location": {"building": "20", "floor": 1}},
               "properties": {"reported": {"fw": "2.1", "$version": 3}}}),
        json!({"deviceId": "sensor-1", "status": "enabled", "capabilities": {"iotEdge": false},
               "tags": {"location": {"building": "20"}}, "properties": {"reported": {"fw": "1.0"}}}),
        json!({"deviceId": "edge-2", "status": "disabled", "capabilities": {"iotEdge": true},
               "tags": {"location": {"building": "41"}}, "properties": {"reported": {"fw": "2.4"}}}),
        json!({"deviceId": "sensor-2", "status": "enabled", "tags": {}}),
        json!({"deviceId": "edge-3", "status": "enabled", "capabilities": {"iotEdge": true},
               "tags": {"location": {"floor": 2}}, "properties": {"reported": {}}}),
    ];
    let lines: String = twins.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(dir.path().join("devices.jsonl"), lines).unwrap();
    dir
}

struct Hub {
    process: common::EmulatorProcess,
    client: reqwest::blocking::Client,
    auth: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: usize,
    body: Value,
}

impl Hub {
    fn start(flags: &[&str]) -> Hub {
        let dir = fleet();
        let process = common::EmulatorProcess::start(dir.path(), flags);
        let auth = sign(&process.connection);
        Hub { process, client: reqwest::blocking::Client::new(), auth, _dir: dir }
    }

    fn send(&self, method: reqwest::Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}?api-version=2021-04-12", self.process.url))
            .header("authorization", &self.auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.bytes().unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_slice(&text).unwrap() };
        Answer { status, headers, bytes: text.len(), body }
    }

    fn query(&self, text: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(reqwest::Method::POST, "/devices/query", headers, Some(json!({ "query": text })))
    }

    fn stats(&self) -> Value {
        reqwest::blocking::get(format!("{}/_emulator/stats", self.process.url)).unwrap().json().unwrap()
    }
}

fn sign(connection: &str) -> String {
    let conn: ConnectionString = connection.parse().unwrap();
    let expiry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    SasToken::new(&conn, expiry).header_value().to_string()
}

#[test]
fn past_the_s1_query_quota_the_hub_answers_429_throttling_exception() {
    let hub = Hub::start(&["--tier", "S1", "--units", "1", "--quota-window", "1h"]);
    // S1, one unit: 20 queries a minute (here: a window of an hour).
    for i in 0..20 {
        assert_eq!(hub.query("SELECT * FROM devices", &[]).status, 200, "query {i}");
    }
    let over = hub.query("SELECT * FROM devices", &[]);
    assert_eq!(over.status, 429);
    assert_eq!(over.headers["iothub-errorcode"], "ThrottlingException");
    let message = over.body["Message"].as_str().unwrap();
    assert!(message.starts_with("ErrorCode:ThrottlingException;"), "{message}");
    assert!(over.body["ExceptionMessage"].as_str().unwrap().starts_with("Tracking ID:"), "{}", over.body);
    // Configurations have their own quota (20 per minute per unit), still untouched.
    assert_eq!(hub.send(reqwest::Method::GET, "/configurations", &[], None).status, 200);
    let stats = hub.stats();
    assert_eq!(stats["classes"]["queries"]["requests"], 21);
    assert_eq!(stats["classes"]["queries"]["throttled"], 1);
    assert_eq!(stats["classes"]["configurations"]["requests"], 1);
    assert_eq!(stats["throttled"], 1);
}

#[test]
fn the_quota_comes_back_when_the_window_turns() {
    let hub = Hub::start(&["--tier", "S1", "--quota-window", "2s"]);
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(hub.query("SELECT deviceId FROM devices", &[]).status, 200);
    }
    let over = hub.query("SELECT deviceId FROM devices", &[]);
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(over.status, 429);
    }
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()) + Duration::from_millis(300));
    assert_eq!(hub.query("SELECT deviceId FROM devices", &[]).status, 200);
}

#[test]
fn without_a_tier_nothing_is_throttled() {
    let hub = Hub::start(&[]);
    for _ in 0..30 {
        assert_eq!(hub.query("SELECT deviceId FROM devices", &[]).status, 200);
    }
    assert_eq!(hub.stats()["throttled"], 0);
}

#[test]
fn stats_count_requests_rows_and_bytes_per_class() {
    let hub = Hub::start(&[]);
    // Five devices in pages of three: two pages, 3 + 2 rows.
    let first = hub.query("SELECT * FROM devices", &[("x-ms-max-item-count", "3")]);
    let token = first.headers["x-ms-continuation"].to_str().unwrap().to_string();
    let second = hub.query("SELECT * FROM devices", &[("x-ms-max-item-count", "3"), ("x-ms-continuation", &token)]);
    assert!(second.headers.get("x-ms-continuation").is_none());
    assert_eq!((first.body.as_array().unwrap().len(), second.body.as_array().unwrap().len()), (3, 2));
    let twin = hub.send(reqwest::Method::GET, "/twins/edge-2", &[], None);
    assert_eq!(twin.body["deviceId"], "edge-2");
    let missing = hub.send(reqwest::Method::GET, "/twins/nobody", &[], None);
    assert_eq!(missing.status, 404);
    let list = hub.send(reqwest::Method::GET, "/configurations", &[], None);
    assert_eq!(list.body, json!([]));

    let stats = hub.stats();
    let q = &stats["classes"]["queries"];
    assert_eq!((q["requests"].as_u64(), q["rows"].as_u64()), (Some(2), Some(5)));
    assert_eq!(q["bytes"].as_u64(), Some((first.bytes + second.bytes) as u64));
    let t = &stats["classes"]["twinReads"];
    // The 404 is a request of the class but serves nothing.
    assert_eq!((t["requests"].as_u64(), t["rows"].as_u64()), (Some(2), Some(1)));
    assert_eq!(t["bytes"].as_u64(), Some(twin.bytes as u64));
    let c = &stats["classes"]["configurations"];
    assert_eq!((c["requests"].as_u64(), c["rows"].as_u64(), c["bytes"].as_u64()), (Some(1), Some(0), Some(2)));
    assert_eq!(stats["requests"], 5);
}

#[test]
fn projections_come_back_in_the_hubs_shape() {
    let hub = Hub::start(&[]);
    // Un-aliased paths are named after their last segment, aliases as given; a property the
    // twin lacks is left out of its row (docs/hub-semantics.md#projections).
    let rows = hub.query(
        "SELECT deviceId, tags.location.building, properties.reported.fw AS firmware FROM devices \
         WHERE capabilities.iotEdge = true",
        &[],
    );
    assert_eq!(rows.status, 200);
    assert_eq!(
        rows.body,
        json!([
            {"deviceId": "edge-1", "building": "20", "firmware": "2.1"},
            {"deviceId": "edge-2", "building": "41", "firmware": "2.4"},
            {"deviceId": "edge-3"},
        ])
    );
    // Names are matched ignoring case and come back spelt as in the twin: the query page's
    // `SELECT DeviceId, LastActivityTime` example returns `deviceId` and `lastActivityTime`.
    let rows = hub.query(
        "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND tags.location.floor = 1",
        &[],
    );
    assert_eq!(rows.body, json!([{"deviceId": "edge-1", "lastActivityTime": "2026-05-07T00:50:38Z"}]));
    // An object-valued path comes back whole.
    let rows = hub.query("SELECT tags.location FROM devices WHERE deviceId = 'edge-3'", &[]);
    assert_eq!(rows.body, json!([{"location": {"floor": 2}}]));
    // Projection pages: two rows a page, TOP across pages.
    let first = hub.query("SELECT TOP 3 deviceId FROM devices", &[("x-ms-max-item-count", "2")]);
    let token = first.headers["x-ms-continuation"].to_str().unwrap().to_string();
    let second =
        hub.query("SELECT TOP 3 deviceId FROM devices", &[("x-ms-max-item-count", "2"), ("x-ms-continuation", &token)]);
    assert_eq!(first.body, json!([{"deviceId": "edge-1"}, {"deviceId": "sensor-1"}]));
    assert_eq!(second.body, json!([{"deviceId": "edge-2"}]));
    assert!(second.headers.get("x-ms-continuation").is_none());
    // Aggregates keep their shape.
    let count = hub.query("SELECT COUNT() AS n FROM devices WHERE capabilities.iotEdge = true", &[]);
    assert_eq!(count.body, json!([{"n": 3}]));
}

#[test]
fn the_page_size_cap_is_1000() {
    let hub = Hub::start(&[]);
    assert_eq!(hub.query("SELECT * FROM devices", &[("x-ms-max-item-count", "1000")]).status, 200);
    let over = hub.query("SELECT * FROM devices", &[("x-ms-max-item-count", "1001")]);
    assert_eq!(over.status, 400);
    assert!(over.body["Message"].as_str().unwrap().contains("between 1 and 1000"), "{}", over.body);
    assert_eq!(hub.query("SELECT * FROM devices", &[("x-ms-max-item-count", "0")]).status, 400);
}

#[cfg(unix)]
#[test]
fn sigterm_prints_the_counts_per_class() {
    let dir = fleet();
    let mut child = common::sealed()
        .args(["hub", "serve", "--listen", "127.0.0.1:0", "--tier", "S3", "--state"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&banner).contains("try:") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "the emulator ended before its banner");
        banner.push(byte[0]);
    }
    let banner = String::from_utf8_lossy(&banner).into_owned();
    let url = banner.lines().find_map(|l| l.strip_prefix("fleetform hub emulator listening on ")).unwrap();
    let conn = banner.lines().find_map(|l| l.strip_prefix("connection string: ")).unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{url}/devices/query?api-version=2021-04-12"))
        .header("authorization", sign(conn))
        .json(&json!({"query": "SELECT deviceId FROM devices"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("emulator stopped: 1 requests, 0 throttled 429"), "{stderr}");
    let queries = stderr.lines().find(|l| l.trim_start().starts_with("queries")).unwrap();
    let fields: Vec<&str> = queries.split_whitespace().collect();
    assert_eq!(&fields[..7], ["queries", "1", "requests", "0", "throttled", "5", "rows"], "{stderr}");
    assert!(!stderr.contains(conn), "the connection string leaked to stderr");
}
