//! `cargo bench --bench emulator_scale`: the real `fleetform hub serve` over a generated
//! fleet of 1,000,000 devices (EMULATOR_SCALE_DEVICES to change): start-up time, peak
//! resident memory (VmHWM), and rows per second — wall and per emulator CPU second — served
//! for `SELECT *` pages and projection pages of 1000 rows. Talks to 127.0.0.1 only.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetform::hub::connection::{ConnectionString, SasToken};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_fleetform");

fn main() {
    let devices: usize = std::env::var("EMULATOR_SCALE_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let started = Instant::now();
    let generated = Command::new(BIN)
        .args(["hub", "generate", "--devices", &devices.to_string(), "--seed", "7", "--out"])
        .arg(dir.path())
        .output()
        .expect("fleetform hub generate runs");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    println!("generated {devices} devices in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut server = Server::start(dir.path());
    let startup = started.elapsed();
    let after_load = vm_hwm_kib(server.child.id());
    println!(
        "start-up: {:.2} s (target < 10 s), VmHWM after load: {:.0} MiB",
        startup.as_secs_f64(),
        after_load as f64 / 1024.0
    );

    let all = server.page_through("SELECT * FROM devices");
    all.print("SELECT * FROM devices");
    let projected = server.page_through(
        "SELECT deviceId, tags.location.building, properties.reported.firmware AS firmware FROM devices \
         WHERE capabilities.iotEdge = true",
    );
    projected.print("projection, WHERE capabilities.iotEdge = true");
    let peak = vm_hwm_kib(server.child.id());
    println!("peak VmHWM: {:.0} MiB (target < 2048 MiB)", peak as f64 / 1024.0);
    server.stop();
    assert_eq!(all.rows, devices as u64, "SELECT * must return every device");
}

struct Server {
    child: Child,
    url: String,
    auth: String,
    client: reqwest::blocking::Client,
}

struct Run {
    rows: u64,
    pages: u64,
    bytes: u64,
    wall: Duration,
    cpu: Duration,
}

impl Run {
    fn print(&self, what: &str) {
        println!(
            "{what}: {} rows in {} pages, {:.0} MiB, {:.2} s wall, {:.2} s emulator CPU: {:.0} rows/s wall, {:.0} rows per CPU-second",
            self.rows,
            self.pages,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.rows as f64 / self.wall.as_secs_f64(),
            self.rows as f64 / self.cpu.as_secs_f64().max(1e-9)
        );
    }
}

impl Server {
    fn start(state: &std::path::Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fleetform hub serve starts");
        let stdout = child.stdout.take().expect("piped");
        let (mut url, mut conn) = (None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("fleetform hub emulator listening on ") {
                url = Some(u.to_string());
            }
            if let Some(c) = line.strip_prefix("connection string: ") {
                conn = Some(c.to_string());
            }
            if url.is_some() && conn.is_some() {
                break;
            }
        }
        let url = url.expect("the banner names the URL");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let conn: ConnectionString =
            conn.expect("the banner has a connection string").parse().expect("a connection string");
        let expiry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 86_400;
        let auth = SasToken::new(&conn, expiry).header_value().to_string();
        Server { child, url, auth, client: reqwest::blocking::Client::new() }
    }

    fn page_through(&self, query: &str) -> Run {
        let cpu_before = cpu_time(self.child.id());
        let started = Instant::now();
        let (mut rows, mut pages, mut bytes) = (0u64, 0u64, 0u64);
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .post(format!("{}/devices/query?api-version=2021-04-12", self.url))
                .header("authorization", &self.auth)
                .header("x-ms-max-item-count", "1000")
                .json(&json!({ "query": query }));
            if let Some(t) = &token {
                req = req.header("x-ms-continuation", t);
            }
            let resp = req.send().expect("the emulator answers");
            assert_eq!(resp.status().as_u16(), 200);
            token = resp.headers().get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.bytes().expect("a body");
            bytes += body.len() as u64;
            // Counting rows needs the rows: the parse is the client's cost, not the emulator's
            // (its CPU is measured separately below).
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("a JSON array");
            rows += page.len() as u64;
            pages += 1;
            if token.is_none() {
                break;
            }
        }
        Run { rows, pages, bytes, wall: started.elapsed(), cpu: cpu_time(self.child.id()).saturating_sub(cpu_before) }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of a process, from /proc/PID/stat (clock ticks of 1/100 s on Linux).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
