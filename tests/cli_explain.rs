//! `fleetform explain`: one device of every stack in the example, as snapshots, and the
//! documented JSON shape.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

const HUB: &str = "examples/campus/hub";

fn explain(device: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = fleetform();
    with_demo_env(&mut cmd).args(["explain", device, EXAMPLE_DEPLOYMENTS, "--hub", HUB]).args(extra).output().unwrap()
}

/// One device per distinct stack after apply, taken from the plan's cohorts, plus devices
/// the plan does not move (unmanaged, not IoT Edge).
fn one_device_per_stack() -> BTreeMap<String, String> {
    let mut cmd = fleetform();
    let out =
        with_demo_env(&mut cmd).args(["plan", "--format", "json", "--hub", HUB, EXAMPLE_DEPLOYMENTS]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut picks = BTreeMap::new();
    for c in v["cohorts"].as_array().unwrap() {
        let stack = serde_json::to_string(&c["stack_after"]).unwrap();
        picks.entry(stack).or_insert_with(|| c["samples"][0].as_str().unwrap().to_string());
    }
    picks.insert("unmanaged".into(), "edge-000295".into());
    picks.insert("not iot edge".into(), "dev-000069".into());
    picks
}

#[test]
fn explains_one_device_of_every_stack() {
    let picks = one_device_per_stack();
    assert!(picks.len() >= 8, "{picks:?}");
    for device in picks.values() {
        let out = explain(device, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        let text = stdout(&out);
        assert!(text.starts_with(&format!("Device {device} ")));
        assert!(!text.contains("\"demo\""), "secrets are masked");
        insta::assert_snapshot!(format!("explain_{device}"), text);
    }
}

#[test]
fn json_shape() {
    let out = explain("b20-f3-conf-000062", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device"], "b20-f3-conf-000062");
    assert_eq!(v["state"], "declared");
    assert!(v["stack"]["standard"].as_str().unwrap().starts_with("campus-canary-"));
    let layered: Vec<&str> = v["stack"]["layered"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(layered[0].starts_with("building-monitoring-") && layered[1].starts_with("conference-camera-"));
    let skipped = &v["stack"]["skipped"][0];
    assert!(skipped["id"].as_str().unwrap().starts_with("campus-base-"));
    assert_eq!(skipped["reason"]["kind"], "outranked-standard");
    let modules = v["manifest"]["modules"].as_object().unwrap();
    assert!(modules["Monitor"]["from"].as_str().unwrap().starts_with("building-monitoring-"));
    assert_eq!(modules["Telemetry"]["value"]["settings"]["image"], "contoso.azurecr.io/campus/telemetry:3.3.0-rc1");
    assert!(v["manifest"]["routes"]["camera-to-telemetry"]["from"].as_str().unwrap().starts_with("conference-camera-"));
    let twin = &v["manifest"]["twins"]["Telemetry"];
    assert_eq!(twin["desired"]["reporting"]["occupancy"]["source"], "OccupancyCamera");
    assert!(twin["provenance"].as_array().unwrap().iter().any(|p| p["path"] == "reporting.occupancy.source"));
    // The registry password is masked in the merged runtime.
    let runtime = serde_json::to_string(&v["manifest"]["runtime"]).unwrap();
    assert!(runtime.contains("(sensitive)") && !runtime.contains("\"demo\""));
    assert_eq!(v["deployments"].as_array().unwrap().len(), 7);
}

#[test]
fn current_state_differs_from_declared() {
    let now = explain("b20-f3-conf-000062", &["--current", "--format", "json"]);
    let v: Value = serde_json::from_slice(&now.stdout).unwrap();
    assert_eq!(v["state"], "current");
    // Before apply the canary does not exist: campus-base applies.
    assert!(v["stack"]["standard"].as_str().unwrap().starts_with("campus-base-"));
}

#[test]
fn unknown_device_is_a_clear_error() {
    let out = explain("no-such-device", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no device no-such-device on snapshot examples/campus/hub"));
}
