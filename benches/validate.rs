//! `validate` on large inputs: the cost of loading and checking a workspace and of
//! rendering its problems as text.
//!
//! (a) 8,000 problems in one file, parsed, checked and rendered as `validate` prints them
//!     (this was quadratic: 34 s);
//! (b) a valid ~10 MB file: 110 standard deployments of 3 modules, each module with a twin
//!     just under the hub's 32 KB, about what a large real repository holds in total.
//!
//! Run: `cargo bench --bench validate -- --warm-up-time 1 --measurement-time 5`.

use std::fmt::Write as _;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use fleetform::spec::{SourceFile, Workspace};

fn many_problems(n: usize) -> String {
    (0..n).map(|i| format!("unknown{i} \"x\"\n")).collect()
}

/// A standard deployment with `modules` modules, each twin `keys` properties of 1,000
/// characters (`keys` = 30 is 30,120 bytes by the hub's rule).
fn large_valid(deployments: usize, modules: usize, keys: usize) -> String {
    let value = "a".repeat(1_000);
    let mut out = String::new();
    for d in 0..deployments {
        let _ = write!(
            out,
            "deployment \"d{d:03}\" {{\n    priority {d}\n    target \"tags.ring={d}\"\n    runtime {{\n        edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"\n        edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\"\n    }}\n"
        );
        for m in 0..modules {
            let _ = writeln!(
                out,
                "    module \"m{m}\" image=\"contoso.azurecr.io/m{m}:1.0\" {{\n        env LOG_LEVEL=\"info\"\n        twin {{"
            );
            for k in 0..keys {
                let _ = writeln!(out, "            k{k:02} \"{value}\"");
            }
            let _ = writeln!(out, "        }}\n    }}");
        }
        out.push_str("}\n");
    }
    out
}

fn validate(text: &str) -> (usize, usize) {
    let ws = Workspace::from_sources(vec![SourceFile::new("bench.kdl", "bench.kdl", text.to_string())]);
    // Rendered as `validate` prints them, so the cost of the text output is included.
    let rendered: usize = ws.problems.iter().map(|p| format!("{:?}", miette::Report::new(p.clone())).len()).sum();
    (ws.deployments.len(), ws.problems.len() + rendered)
}

fn bench(c: &mut Criterion) {
    let problems = many_problems(8_000);
    let (_, n) = validate(&problems);
    assert!(n > 8_000, "the input must produce its problems");
    let mut g = c.benchmark_group("validate");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(problems.len() as u64));
    g.bench_function("8000 problems, text", |b| b.iter(|| black_box(validate(black_box(&problems)))));

    let large = large_valid(110, 3, 30);
    let (deployments, problems) = validate(&large);
    assert_eq!((deployments, problems), (110, 0), "the large input must be valid");
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function(format!("valid file, {} MB", large.len() / 1_000_000), |b| {
        b.iter(|| black_box(validate(black_box(&large))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
