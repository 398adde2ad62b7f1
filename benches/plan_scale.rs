//! Planning a large fleet from a snapshot, end to end: the real `fleetform plan --format
//! json` binary over a generated fleet with 100 deployments, wall time and peak memory,
//! next to `jq` doing only the target matching over the same twins.
//!
//! ```text
//! cargo bench --bench plan_scale                    # 100,000 devices
//! cargo bench --bench plan_scale -- 1000000         # 1,000,000 devices (≈1.7 GB of twins)
//! cargo bench --bench plan_scale -- 100000 1000000  # both
//! PLAN_SCALE_RUNS=5 cargo bench --bench plan_scale  # more runs per row (default 3)
//! ```
//!
//! Fleets are generated once with `fleetform hub generate --devices N --deployments 100
//! --seed 1` into `target/plan-scale/fleet-N` and reused. Peak memory is the child's
//! maximum resident set (`wait4`'s rusage), so each row measures one process alone. The
//! jq row translates each target condition to a jq filter (exact-case keys, jq's own
//! comparisons: a stand-in for "only the matching", not the hub's rules) and counts the
//! matching deployments per IoT Edge device; it is skipped, saying so, when `jq` is not
//! on PATH. Criterion is not used: one run takes seconds and the figure wanted is wall
//! time and memory of a process, not a confidence interval.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetform::query::{CmpOp, ConditionRoot, Expr, ExprKind, Literal, parse_condition};

const DEPLOYMENTS: usize = 100;

fn fleetform_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetform")
}

/// One finished child: wall time and peak resident memory.
struct Measured {
    wall: Duration,
    max_rss_kib: u64,
    stdout_bytes: u64,
}

/// Runs `command` with stdout to `out`, waits with `wait4` for its own rusage.
fn measure(mut command: Command, out: &Path) -> Measured {
    let file = std::fs::File::create(out).expect("create output file");
    command.stdout(Stdio::from(file)).stderr(Stdio::inherit());
    let start = Instant::now();
    let child = command.spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data filled in by the kernel; the pid is our own child,
    // not yet waited for (the `Child` is forgotten so that it is not waited twice).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    std::mem::forget(child);
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed: status {status}");
    Measured {
        wall,
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss as u64,
        stdout_bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
    }
}

/// The fleet of `devices` devices, generated on first use; a `complete` marker written
/// last keeps a half-generated fleet (an interrupted run) from being reused.
fn fleet(root: &Path, devices: usize) -> PathBuf {
    let dir = root.join(format!("fleet-{devices}"));
    let marker = dir.join("complete");
    if marker.is_file() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(root).expect("create target/plan-scale");
    println!("generating {devices} devices × {DEPLOYMENTS} deployments into {} …", dir.display());
    let mut generate = Command::new(fleetform_bin());
    generate.args(["hub", "generate", "--devices", &devices.to_string(), "--deployments", &DEPLOYMENTS.to_string()]);
    generate.args(["--seed", "1", "--out"]).arg(&dir);
    let m = measure(generate, &root.join("generate.out"));
    println!("  generated in {:.1} s", m.wall.as_secs_f64());
    std::fs::write(&marker, b"").expect("write marker");
    dir
}

/// The target conditions of the generated deployments, as written in the KDL.
fn target_conditions(fleet: &Path) -> Vec<String> {
    let kdl = std::fs::read_to_string(fleet.join("deployments/fleet.kdl")).expect("read deployments/fleet.kdl");
    let targets: Vec<String> =
        kdl.lines().filter_map(|l| l.trim().strip_prefix("target \"")?.strip_suffix('"').map(str::to_string)).collect();
    assert_eq!(targets.len(), DEPLOYMENTS, "expected one `target` line per generated deployment");
    targets
}

fn jq_literal(l: &Literal) -> String {
    match l {
        Literal::Null => "null".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::Number(n) => n.to_string(),
        Literal::String(s) => serde_json::to_string(s).expect("a string serialises"),
    }
}

/// A jq filter for the subset of the language the generated conditions use.
fn jq_expr(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Literal(l) => out.push_str(&jq_literal(l)),
        ExprKind::Path(p) => {
            for s in &p.segments {
                let _ = write!(out, ".{}", serde_json::to_string(&s.name).expect("a string serialises"));
            }
        }
        ExprKind::And(items) | ExprKind::Or(items) => {
            let op = if matches!(e.kind, ExprKind::And(_)) { " and " } else { " or " };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(op);
                }
                out.push('(');
                jq_expr(item, out);
                out.push(')');
            }
        }
        ExprKind::Not(inner) => {
            out.push('(');
            jq_expr(inner, out);
            out.push_str(" | not)");
        }
        ExprKind::Compare(op, l, r) => {
            let op = match op {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            out.push('(');
            jq_expr(l, out);
            let _ = write!(out, " {op} ");
            jq_expr(r, out);
            out.push(')');
        }
        other => panic!("the jq row does not translate {other:?}"),
    }
}

/// Per IoT Edge device: how many deployments target it.
fn jq_program(conditions: &[String]) -> String {
    let mut out = String::from("select(.capabilities.iotEdge == true) | [");
    for (i, text) in conditions.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let condition = parse_condition(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        out.push_str("(if ");
        match &condition.root {
            ConditionRoot::Expr(e) => jq_expr(e, &mut out),
            ConditionRoot::All => out.push_str("true"),
            ConditionRoot::Nothing => out.push_str("false"),
        }
        let _ = write!(out, " then {i} else empty end)");
    }
    out.push_str("] | length");
    out
}

fn jq_available() -> bool {
    Command::new("jq").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn row(what: &str, devices: usize, runs: &[Measured]) {
    let mut walls: Vec<f64> = runs.iter().map(|m| m.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    let rss = runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    println!(
        "{what:<28} {devices:>9} devices: best {:.2} s, median {:.2} s over {} runs; peak RSS {rss:.0} MiB; output {} bytes",
        walls[0],
        walls[walls.len() / 2],
        walls.len(),
        runs[0].stdout_bytes
    );
}

fn main() {
    // `cargo bench` passes `--bench`; flags are not ours.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.replace('_', "").parse().unwrap_or_else(|_| panic!("`{a}` is not a device count")))
        .collect();
    let sizes = if sizes.is_empty() { vec![100_000] } else { sizes };
    let runs: usize = std::env::var("PLAN_SCALE_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plan-scale");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("plan_scale: {cores} cores, {runs} runs per row, binary {}", fleetform_bin());
    let jq = jq_available();
    for devices in sizes {
        let dir = fleet(&root, devices);
        let plans: Vec<Measured> = (0..runs)
            .map(|_| {
                let mut plan = Command::new(fleetform_bin());
                plan.args(["plan", "--format", "json", "--hub"]).arg(&dir).arg(dir.join("deployments"));
                plan.env("NO_COLOR", "1");
                measure(plan, &root.join("plan.json"))
            })
            .collect();
        let plan_json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("plan.json")).expect("read plan output"))
                .expect("plan --format json prints JSON");
        assert!(plan_json.is_object(), "plan JSON is an object");
        row("fleetform plan --format json", devices, &plans);
        if !jq {
            println!("{:<28} {devices:>9} devices: skipped, `jq` is not on PATH", "jq (target matching only)");
            continue;
        }
        let program = jq_program(&target_conditions(&dir));
        let jqs: Vec<Measured> = (0..runs)
            .map(|_| {
                let mut jq = Command::new("jq");
                jq.args(["-c", &program]).arg(dir.join("devices.jsonl"));
                measure(jq, &root.join("jq.out"))
            })
            .collect();
        let edge = std::fs::read_to_string(root.join("jq.out")).expect("read jq output").lines().count();
        row("jq (target matching only)", devices, &jqs);
        println!("{:<28} {devices:>9} devices: {edge} IoT Edge devices matched by jq", "");
    }
}
