//! The KDL deployment decoder on arbitrary text: it must never panic, every problem must
//! point inside the file, formatting must be idempotent, and whatever validates must render
//! and read back byte-identically.
#![no_main]

use fleetform::manifest::{self, Env, SecretMode};
use fleetform::spec::{SourceFile, Workspace, fmt::format_source};
use libfuzzer_sys::fuzz_target;

/// Every variable is set, so rendering exercises `(env)` values; each value is long enough
/// to serve as `FLEETFORM_HASH_KEY` (at least 32 characters), which keys secrets in the hash.
struct AnyEnv;

impl Env for AnyEnv {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("value-of-{name}-long-enough-for-a-hash-key"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ws = Workspace::from_sources(vec![SourceFile::new("fuzz.kdl", "fuzz.kdl", text.to_string())]);
    for p in &ws.problems {
        assert!(p.span.offset() + p.span.len() <= text.len(), "span outside the file: {}", p.message);
        let _ = p.location();
    }
    if let Ok(once) = format_source(text) {
        let twice = format_source(&once).expect("formatted text parses");
        assert_eq!(once, twice, "fmt is idempotent");
    }
    if ws.problems.is_empty() {
        for d in &ws.deployments {
            let first = manifest::render(d, &AnyEnv, SecretMode::Reveal).expect("valid deployments render");
            let back = manifest::read(&first.configuration).expect("rendered deployments read back");
            let again = manifest::render(&back, &AnyEnv, SecretMode::Reveal).expect("read-back renders");
            assert_eq!(
                serde_json::to_string(&first.configuration).unwrap(),
                serde_json::to_string(&again.configuration).unwrap()
            );
        }
    }
});
