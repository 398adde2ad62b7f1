//! The query and route inputs of issue #13 (items 8, 9, 12) through the real binary: a
//! deployment file whose metric uses double quotes, whose target uses the hub grammar's
//! escapes and whose route names a single-quoted BrokeredEndpoint validates; the same
//! target with double quotes is an error at its exact column.

mod common;

use common::*;

const GOOD: &str = r#"deployment "inputs" {
    priority 10
    target "tags.name = 'O\\'Brien' AND tags.env = '\\u0070rod'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "Filter" image="contoso.azurecr.io/filter:1.0"
    route "to-filter" "FROM /messages/* INTO BrokeredEndpoint('/modules/Filter/inputs/in')"
    metric "filtering" "SELECT deviceId FROM devices.modules WHERE moduleId = \"$edgeAgent\" AND properties.reported.note = 'a\\\\b'"
}
"#;

#[test]
fn double_quoted_metrics_escapes_and_single_quoted_endpoints_validate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inputs.kdl"), GOOD).unwrap();
    let out = fleetform().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn double_quotes_in_a_target_condition_are_an_error_at_their_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD.replace(r"tags.env = '\\u0070rod'", r#"tags.env = \"prod\""#);
    std::fs::write(dir.path().join("inputs.kdl"), &bad).unwrap();
    let out = fleetform().args(["validate", "--format", "json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["problems"][0];
    assert_eq!(p["help"], "double quotes are not allowed in target conditions; use single quotes", "{v}");
    // Line 3, at the opening `\"` in the KDL source.
    let column = bad.lines().nth(2).unwrap().find(r#"\"prod"#).unwrap() + 1;
    assert_eq!((p["line"].as_u64(), p["column"].as_u64()), (Some(3), Some(column as u64)), "{v}");
}
