//! Throughput of the fleet generator and the snapshot readers at benchmark scale.
//!
//! `cargo bench --bench generate` generates 100,000 devices into a temp directory and
//! times generation, the serial reader and the parallel reader. For the 1,000,000-device
//! figures and their peak memory, run the phases separately under `/usr/bin/time -v`:
//!
//! ```text
//! cargo bench --bench generate --no-run        # prints the binary's path
//! /usr/bin/time -v target/release/deps/generate-… generate /tmp/fleet 1000000
//! /usr/bin/time -v target/release/deps/generate-… read /tmp/fleet 0      # serial
//! /usr/bin/time -v target/release/deps/generate-… read /tmp/fleet 2      # 2 workers
//! /usr/bin/time -v target/release/deps/generate-… read /tmp/fleet 2 targeting
//! ```
//!
//! Criterion is not used: one run at this size takes seconds and the figure wanted is
//! devices per second plus memory, not a confidence interval over microseconds.

use std::path::Path;
use std::time::Instant;

use fleetform::hub::snapshot::{Projection, Snapshot};
use fleetform_hub_emulator::generate::{GenerateOptions, generate};

fn run_generate(dir: &Path, devices: usize) {
    let start = Instant::now();
    let summary = generate(&GenerateOptions { devices, seed: 1, ..GenerateOptions::default() }, dir).expect("generate");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "generate: {} devices ({} edge) in {secs:.2} s = {:.0} devices/s; devices.jsonl {:.1} MiB, modules.jsonl {:.1} MiB",
        summary.devices,
        summary.edge_devices,
        summary.devices as f64 / secs,
        summary.devices_bytes as f64 / 1048576.0,
        summary.modules_bytes as f64 / 1048576.0,
    );
}

/// `threads == 0` reads serially with the iterator; otherwise with `par_fold_devices`.
fn run_read(dir: &Path, threads: usize, projection: Projection) {
    let snapshot = Snapshot::open(dir).expect("open").with_projection(projection.clone());
    let start = Instant::now();
    let (devices, edge) = if threads == 0 {
        let mut counts = (0usize, 0usize);
        for twin in snapshot.devices().expect("devices") {
            let twin = twin.expect("twin");
            counts.0 += 1;
            counts.1 += usize::from(twin.is_edge());
        }
        counts
    } else {
        snapshot
            .par_fold_devices(
                threads,
                || (0usize, 0usize),
                |acc, twin| {
                    acc.0 += 1;
                    acc.1 += usize::from(twin.is_edge());
                },
            )
            .expect("par_fold")
            .into_iter()
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let secs = start.elapsed().as_secs_f64();
    let mode = match threads {
        0 => "serial".to_string(),
        n => format!("{n} workers"),
    };
    println!(
        "read ({mode}, {projection:?}): {devices} devices ({edge} edge) in {secs:.2} s = {:.0} devices/s",
        devices as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes `--bench`; flags are not ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let number = |i: usize, default: usize| args.get(i).map(|s| s.parse().expect("a number")).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("generate") => run_generate(Path::new(&args[1]), number(2, 1_000_000)),
        Some("read") => {
            let projection = match args.get(3).map(String::as_str) {
                Some("targeting") => Projection::Targeting,
                _ => Projection::Full,
            };
            run_read(Path::new(&args[1]), number(2, 0), projection)
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            run_generate(dir.path(), 100_000);
            for projection in [Projection::Full, Projection::Targeting] {
                run_read(dir.path(), 0, projection.clone());
                run_read(dir.path(), 2, projection);
            }
        }
    }
}
