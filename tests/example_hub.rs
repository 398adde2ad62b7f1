//! The example hub's `configurations.json` is rendered from `examples/campus/hub-state/`:
//! this test keeps them in step (refresh with `FLEETFORM_BLESS=1`).

use std::path::Path;

use fleetform::manifest::{self, MapEnv, SecretMode};
use fleetform::model::Configuration;
use fleetform::spec::Workspace;

/// The README's hash key for the example hub.
const DEMO_HASH_KEY: &str = "demo-hash-key-for-the-example-hub";

/// Deployments on the example hub that an older fleetform wrote, under hash scheme 1 (no
/// `fleetform-hash-scheme` label, unkeyed hash): a plan adopts the new hash in place.
const SCHEME_1: &[&str] = &["conference-camera"];

fn demo_env() -> MapEnv {
    MapEnv(
        [
            ("ACR_PASSWORD", "demo"),
            ("VISION_REGISTRY_PASSWORD", "demo"),
            ("CAMERA_API_TOKEN", "demo"),
            ("FLEETFORM_HASH_KEY", DEMO_HASH_KEY),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

fn hub_state() -> Vec<Configuration> {
    let ws = Workspace::load(&["examples/campus/hub-state".into()]).unwrap();
    assert!(ws.problems.is_empty(), "{:?}", ws.problems);
    let mut out = Vec::new();
    for (i, d) in ws.deployments.iter().enumerate() {
        let mut c = manifest::render(d, &demo_env(), SecretMode::Reveal).unwrap().configuration;
        if c.labels.remove("unmanaged").is_some() {
            c.labels.retain(|k, _| !k.starts_with("fleetform-"));
            c.id = d.name.0.clone().into();
        } else if SCHEME_1.contains(&d.name.0.as_str()) {
            let old = manifest::legacy_hash(c.content.modules_content.as_ref().unwrap());
            c.labels.remove(manifest::LABEL_HASH_SCHEME);
            c.labels.insert(manifest::LABEL_HASH.to_string(), old.clone());
            c.id = format!("{}-{}", d.name, &old[..8]).into();
        }
        // What the hub adds: creation and update times, an etag, metric results.
        let created = format!("2026-0{}-1{}T08:{:02}:00.1234567Z", 3 + i % 6, i % 10, 7 * i % 60);
        c.created_time_utc = Some(created.clone());
        c.last_updated_time_utc = Some(created);
        c.etag = Some(format!("\"MQ{i}=\"").parse().unwrap());
        c.system_metrics = Some(fleetform::model::Metrics { results: Default::default(), queries: Default::default() });
        out.push(c);
    }
    out
}

#[test]
fn example_hub_configurations_are_up_to_date() {
    let path = Path::new("examples/campus/hub/configurations.json");
    let expected = serde_json::to_string_pretty(&hub_state()).unwrap() + "\n";
    if std::env::var_os("FLEETFORM_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(committed == expected, "examples/campus/hub/configurations.json is stale: rerun with FLEETFORM_BLESS=1");
}
