//! Fixtures the unit tests of several stages share.

use crate::manifest::{MapEnv, Rendered, SecretMode, render_all};
use crate::model::{Twin, Twins};
use crate::plan::PlaceholderEnv;
use crate::spec::{SourceFile, Workspace};

/// One standard deployment for the production devices, with a runtime and module `M` at
/// image `m:1.0`.
pub(crate) const PROD_STANDARD: &str = r#"
deployment "a" {
    priority 10
    target "tags.environment='prod'"
    runtime {
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
}
"#;

/// The deployments of one KDL text, which must be valid, rendered as `plan` renders them
/// with no variable set (an `(env)` value stands as its placeholder).
pub(crate) fn rendered(text: &str) -> Vec<Rendered> {
    let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text.to_string())]);
    assert!(ws.problems.is_empty(), "{:?}", ws.problems);
    render_all(&ws.deployments, &PlaceholderEnv(&MapEnv::default()), SecretMode::Reveal).unwrap()
}

/// The campus example's device twins, as its snapshot holds them.
pub(crate) fn campus_fleet() -> Twins {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/campus/hub/devices.json");
    let values: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Twins::new("snapshot examples/campus/hub", values.into_iter().map(|v| Twin::from_value(v).unwrap()).collect())
}
