//! The content hash (scheme 2): a missing key is refused, a hub written under scheme 1 is
//! relabelled in place (no replace storm) and converges, and plan and apply agree across
//! processes only with the same key. The brute-force proof sits beside the hash, in
//! src/manifest/render.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::transcript;

use fleetform::manifest::{self, LABEL_HASH, LABEL_HASH_SCHEME, MapEnv, SecretMode};
use fleetform::model::Configuration;
use serde_json::Value;

const DEMO_KEY: &str = "demo-hash-key-for-the-example-hub";
/// The README's secrets: what the example hub's configurations were rendered with.
const DEMO: &[(&str, &str)] =
    &[("ACR_PASSWORD", "demo"), ("VISION_REGISTRY_PASSWORD", "demo"), ("CAMERA_API_TOKEN", "demo")];

fn deployments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/deployments")
}

fn cli(key: Option<&str>) -> std::process::Command {
    let mut cmd = common::sealed();
    cmd.envs(DEMO.iter().copied()).stdin(Stdio::null());
    if let Some(k) = key {
        cmd.env(manifest::HASH_KEY_VAR, k);
    }
    cmd
}

fn plan_json(hub: &[&str], key: &str) -> Value {
    let out = cli(Some(key)).arg("plan").arg(deployments()).args(hub).args(["--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn action<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["actions"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

fn configurations(dir: &Path) -> Vec<Configuration> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("configurations.json")).unwrap()).unwrap()
}

#[test]
fn without_the_key_plan_refuses_at_the_secret_and_prints_no_secret() {
    let hub = common::campus_hub_copy();
    let mut cmd = cli(None);
    cmd.envs([("ACR_PASSWORD", "acr-secret-9f3b"), ("CAMERA_API_TOKEN", "camera-token-4e2a")]);
    let out = cmd.arg("plan").arg(deployments()).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLEETFORM_HASH_KEY is not set, and deployment campus-base holds secrets"), "{err}");
    assert!(err.contains("base.kdl:9:76"), "names file, line and column: {err}");
    assert!(!err.contains("acr-secret-9f3b") && !err.contains("camera-token-4e2a"), "{err}");
    assert!(out.stdout.is_empty(), "no plan on a refusal");

    let short = cli(Some("short-key")).arg("plan").arg(deployments()).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("FLEETFORM_HASH_KEY is 9 characters long"));
}

#[test]
fn a_hub_written_entirely_under_scheme_1_is_relabelled_without_a_replace() {
    // The repository's own deployments on the hub, as an older fleetform wrote them.
    let ws = fleetform::spec::Workspace::load(&[deployments()]).unwrap();
    let mut env: MapEnv = MapEnv(DEMO.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    env.0.insert(manifest::HASH_KEY_VAR.into(), DEMO_KEY.into());
    let old: Vec<Configuration> = ws
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut c = manifest::render(d, &env, SecretMode::Reveal).unwrap().configuration;
            let hash = manifest::legacy_hash(c.content.modules_content.as_ref().unwrap());
            c.labels.remove(LABEL_HASH_SCHEME);
            c.labels.insert(LABEL_HASH.into(), hash.clone());
            c.id = format!("{}-{}", d.name, &hash[..8]).into();
            c.etag = Some(format!("\"old{i}\"").parse().unwrap());
            c.created_time_utc = Some("2026-01-01T00:00:00Z".into());
            c
        })
        .collect();
    let hub = common::campus_hub_copy();
    std::fs::write(hub.path().join("configurations.json"), serde_json::to_string_pretty(&old).unwrap()).unwrap();

    let hub_arg = ["--hub", hub.path().to_str().unwrap()];
    let plan = plan_json(&hub_arg, DEMO_KEY);
    let summary = &plan["summary"];
    assert_eq!((summary["update"].as_u64(), summary["replace"].as_u64()), (Some(5), Some(0)), "{summary}");
    assert_eq!((summary["create"].as_u64(), summary["devices_changed"].as_u64()), (Some(0), Some(0)), "{summary}");
    for c in &old {
        let a = action(&plan, &c.labels["fleetform-name"]);
        assert_eq!(a["after"], c.id.as_str(), "keeps the hub object: {a}");
        let fields: Vec<&str> =
            a["field_changes"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["labels.fleetform-hash-scheme", "labels.fleetform-hash"], "{a}");
    }

    let out = cli(Some(DEMO_KEY))
        .args(["apply", "--auto-approve", "--allow-dirty"])
        .arg(deployments())
        .args(hub_arg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Apply complete: 0 created, 5 updated, 0 deleted."));
    let after = configurations(hub.path());
    assert_eq!(after.iter().map(|c| &c.id).collect::<Vec<_>>(), old.iter().map(|c| &c.id).collect::<Vec<_>>());
    assert!(after.iter().all(|c| c.labels[LABEL_HASH_SCHEME] == manifest::HASH_SCHEME));
    let again =
        cli(Some(DEMO_KEY)).arg("plan").arg(deployments()).args(hub_arg).arg("--detailed-exitcode").output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
}

#[test]
fn the_example_hubs_scheme_1_deployment_converges_on_the_emulator() {
    let state = common::campus_hub_copy();
    let emu = common::EmulatorProcess::start(state.path(), &[]);
    let hub = ["--hub", emu.connection.as_str(), "--endpoint", emu.url.as_str()];
    let plan = plan_json(&hub, DEMO_KEY);
    let camera = action(&plan, "conference-camera");
    assert_eq!(camera["action"], "update", "{camera}");
    assert_eq!(camera["after"], "conference-camera-9ace891d");
    let changes = camera["field_changes"].as_array().unwrap();
    assert_eq!(changes[0]["field"], "labels.fleetform-hash-scheme");
    assert_eq!(changes[1]["before"], "9ace891d814d99d8", "the scheme-1 hash the hub holds");

    let out = cli(Some(DEMO_KEY))
        .args(["apply", "--auto-approve", "--timeout", "60s"])
        .arg(deployments())
        .args(hub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = transcript(&out);
    assert!(text.contains("update conference-camera-9ace891d (conference-camera): done"), "{text}");
    let again =
        cli(Some(DEMO_KEY)).arg("plan").arg(deployments()).args(hub).arg("--detailed-exitcode").output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes. The hub matches the repository."));
}

#[test]
fn a_saved_plan_applies_in_another_process_with_the_same_key_only() {
    let hub = common::campus_hub_copy();
    let file = hub.path().join("plan.json");
    let out = cli(Some(DEMO_KEY))
        .arg("plan")
        .arg(deployments())
        .arg("--hub")
        .arg(hub.path())
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(!saved.contains(DEMO_KEY), "the key is not saved");
    let before = std::fs::read(hub.path().join("configurations.json")).unwrap();

    let other = "another-hash-key-of-at-least-32-chars";
    // The plan is sealed under the key: another key fails its MAC first.
    let refused = cli(Some(other)).arg("apply").arg(&file).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", transcript(&refused));
    let err = String::from_utf8_lossy(&refused.stderr).replace("\n  | ", " ");
    assert!(err.contains("altered_plan") && err.contains("its MAC does not match"), "{err}");
    assert!(!err.contains(other), "{err}");
    // Sealed again under the other key, it is stale: the content hashes differ.
    let mut value: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let mac = fleetform::plan::saved::plan_mac(other.as_bytes(), &value);
    value["mac"] = serde_json::json!(mac.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let resealed = hub.path().join("other-key.json");
    std::fs::write(&resealed, serde_json::to_vec(&value).unwrap()).unwrap();
    let refused = cli(Some(other)).arg("apply").arg(&resealed).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", transcript(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("the saved plan is stale") && err.contains("now renders to hash"), "{err}");
    assert!(!err.contains(other), "{err}");
    assert_eq!(std::fs::read(hub.path().join("configurations.json")).unwrap(), before, "nothing was written");

    let applied = cli(Some(DEMO_KEY)).arg("apply").arg(&file).arg("--hub").arg(hub.path()).output().unwrap();
    assert_eq!(applied.status.code(), Some(0), "{}", transcript(&applied));
}
