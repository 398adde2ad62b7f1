//! `fleetform fmt` on arbitrary text: it must never panic, formatting twice changes
//! nothing, and the formatted text decodes to the same deployments with the same problems.
#![no_main]

use fleetform::spec::{SourceFile, Workspace, fmt::format_source, limits};
use libfuzzer_sys::fuzz_target;

fn model(text: &str) -> (String, Vec<String>) {
    let ws = Workspace::from_sources(vec![SourceFile::new("fuzz.kdl", "fuzz.kdl", text.to_string())]);
    // Spans move when text is reformatted, so compare what the problems say, not where.
    let problems = ws.problems.iter().map(|p| format!("{}: {}", p.code.as_str(), p.message)).collect();
    (
        format!("{:?}", ws.deployments.iter().map(|d| (&d.name, d.kind, d.priority, &d.labels)).collect::<Vec<_>>()),
        problems,
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The CLI refuses such files before formatting; the formatter itself recurses.
    if limits::too_deep(text).is_some() {
        return;
    }
    let Ok(once) = format_source(text) else { return };
    let twice = format_source(&once).expect("formatted text parses");
    assert_eq!(once, twice, "fmt is idempotent");
    assert_eq!(model(text), model(&once), "formatting changes no meaning");
});
