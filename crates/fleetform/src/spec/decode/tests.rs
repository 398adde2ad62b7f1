//! The decoder end to end: KDL text in, deployments and problems out.

use super::*;

fn names_in(doc: &KdlDocument, kind: &str, out: &mut std::collections::BTreeSet<String>) {
    for n in doc.nodes() {
        if n.name().value() == kind
            && let Some(KdlValue::String(s)) = n.entries().first().filter(|e| e.name().is_none()).map(|e| e.value())
        {
            out.insert(s.clone());
        }
        if let Some(c) = n.children() {
            names_in(c, kind, out);
        }
    }
}

fn runtime_with(hub_body: &str, module_body: &str) -> (Vec<Deployment>, Vec<Problem>) {
    let text = format!(
        "deployment \"d\" {{\n    priority 1\n    target \"*\"\n    runtime schema=\"1.3\" {{\n        edge-agent image=\"a:1\"\n        edge-hub image=\"h:1\" {{\n            {hub_body}\n        }}\n    }}\n    module \"m\" image=\"m:1\" {{\n        {module_body}\n    }}\n}}\n"
    );
    let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text));
    let mut problems = Vec::new();
    let ds = parse_file(&file, &mut problems);
    (ds, problems)
}

/// Numbers are checked against the width edgeHub reads them with: timeToLiveSecs is
/// an int32, storeLimits.maxSizeBytes an int64.
#[test]
fn store_and_forward_numbers_fit_the_hubs_types() {
    let (ds, p) = runtime_with("store-and-forward ttl=2147483647 max-size-bytes=9223372036854775807", "");
    assert!(p.is_empty(), "{p:?}");
    let rt = ds[0].runtime.as_ref().unwrap();
    assert_eq!((rt.store_and_forward_ttl, rt.store_max_size_bytes), (i32::MAX as u32, Some(i64::MAX as u64)));
    for bad in ["store-and-forward ttl=3000000000", "store-and-forward ttl=1 max-size-bytes=9223372036854775808"] {
        let (_, p) = runtime_with(bad, "");
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(p[0].to_string().contains("store-and-forward"), "{bad}: {}", p[0]);
    }
}

#[test]
fn store_limits_need_edge_hub_schema_1_2() {
    let file = Arc::new(SourceFile::new(
        "t.kdl",
        "t.kdl",
        "deployment \"d\" {\n priority 1\n target \"*\"\n runtime {\n edge-agent image=\"a:1\"\n edge-hub image=\"h:1\" schema=\"1.1\" {\n store-and-forward ttl=10 max-size-bytes=100\n }\n }\n}\n".to_string(),
    ));
    let mut p = Vec::new();
    parse_file(&file, &mut p);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].to_string().contains("max-size-bytes needs edgeHub schema 1.2"), "{}", p[0]);
    // Line 7, at `max-size-bytes=100`.
    assert_eq!(file.line_col(p[0].span.offset()).0, 7);
}

#[test]
fn mqtt_broker_is_an_edge_hub_json_object() {
    let (ds, p) = runtime_with("mqtt-broker {\n bridges {\n - endpoint=\"$upstream\"\n }\n }", "");
    assert!(p.is_empty(), "{p:?}");
    let rt = ds[0].runtime.as_ref().unwrap();
    assert_eq!(rt.mqtt_broker, Some(serde_json::json!({ "bridges": [{ "endpoint": "$upstream" }] })));
    // The edge hub reads `integrity` only from schema 1.3 (the default here is 1.2).
    let (_, p) = runtime_with("integrity {\n signature bytes=\"b\"\n }", "");
    assert!(p.len() == 1 && p[0].to_string().contains("needs edgeHub schema 1.3"), "{p:?}");
    for bad in ["mqtt-broker \"[1]\"", "mqtt-broker", "mqtt-broker (env)\"X\""] {
        let (_, p) = runtime_with(bad, "");
        assert!(!p.is_empty(), "{bad}");
    }
}

#[test]
fn integrity_needs_agent_schema_1_3() {
    let text = |schema: &str| {
        format!(
            "deployment \"d\" {{\n priority 1\n target \"*\"\n runtime schema=\"{schema}\" {{\n integrity {{\n signature bytes=\"b\" algorithm=\"ES256\"\n }}\n edge-agent image=\"a:1\"\n edge-hub image=\"h:1\"\n }}\n}}\n"
        )
    };
    let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text("1.3")));
    let mut p = Vec::new();
    let ds = parse_file(&file, &mut p);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        ds[0].runtime.as_ref().unwrap().integrity,
        Some(serde_json::json!({ "signature": { "bytes": "b", "algorithm": "ES256" } }))
    );
    let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text("1.1")));
    let mut p = Vec::new();
    parse_file(&file, &mut p);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].to_string().contains("integrity needs edgeAgent schema 1.3"), "{}", p[0]);
}

#[test]
fn digest_is_a_module_setting() {
    let (ds, p) = runtime_with("", "digest \"sha256:abc\"");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(ds[0].modules["m"].settings.digest.as_deref(), Some("sha256:abc"));
    let (_, p) = runtime_with("", "digest 5");
    assert_eq!(p.len(), 1, "{p:?}");
}

/// schema/fleetform.kdl documents exactly the nodes and properties the parser accepts.
#[test]
fn schema_file_matches_the_parser() {
    let doc: KdlDocument = include_str!("../../../../../schema/fleetform.kdl").parse().unwrap();
    let mut nodes = std::collections::BTreeSet::new();
    names_in(&doc, "node", &mut nodes);
    let mut props = std::collections::BTreeSet::new();
    names_in(&doc, "prop", &mut props);
    let parser_nodes: std::collections::BTreeSet<String> = [
        deployment::DEPLOYMENT_CHILDREN,
        deployment::LAYERED_CHILDREN,
        runtime::RUNTIME_CHILDREN,
        runtime::AGENT_CHILDREN,
        runtime::HUB_CHILDREN,
        module::MODULE_CHILDREN,
        rollout::ROLLOUT_CHILDREN,
        &["deployment", "layered"],
    ]
    .concat()
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(nodes, parser_nodes);
    let parser_props: std::collections::BTreeSet<String> = [
        runtime::RUNTIME_PROPS,
        rollout::PROMOTE_PROPS,
        rollout::ROLLBACK_PROPS,
        &["image", "version", "schema", "ttl", "max-size-bytes", "path", "priority", "address", "username", "password"],
    ]
    .concat()
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(props, parser_props);
}

/// A deployment with `target` and one `metric`, as written; the problems and, for each,
/// the text its span covers.
fn self_case(target: &str, metric: &str) -> (Vec<Deployment>, Vec<(String, String)>) {
    let text = format!(
        "deployment \"d\" {{\n    priority 1\n    target \"{target}\"\n    runtime {{\n        edge-agent image=\"a:1.5\"\n        edge-hub image=\"h:1.5\"\n    }}\n    metric \"m\" \"{metric}\"\n}}\n"
    );
    let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text.clone()));
    let mut problems = Vec::new();
    let ds = parse_file(&file, &mut problems);
    let found = problems
        .iter()
        .map(|p| (p.to_string(), text[p.span.offset()..p.span.offset() + p.span.len()].to_string()))
        .collect();
    (ds, found)
}

#[test]
fn self_inside_configurations_brackets_is_a_valid_metric_reference() {
    let (ds, p) = self_case(
        "*",
        "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[$self]].status = 'Applied'",
    );
    assert!(p.is_empty(), "{p:?}");
    assert!(ds[0].metrics[0].query.text.contains("[[$self]]"));
}

#[test]
fn self_misspelt_or_misplaced_is_an_error_on_the_exact_characters() {
    let q = |cond: &str| format!("SELECT deviceId FROM devices WHERE {cond}");
    for (metric, covered, says) in [
        (q("configurations.[[$slef]].status = 'Applied'"), "[[$slef]]", "`[[$slef]]` is not a deployment reference"),
        (q("configurations.[[self]].status = 'Applied'"), "[[self]]", "`[[self]]` is not a deployment reference"),
        (q("configurations.[[$SELF]].status = 'Applied'"), "[[$SELF]]", "`[[$SELF]]` is not a deployment reference"),
        (q("configurations.$self.status = 'Applied'"), "$self", "outside `[[ ]]`"),
        (q("tags.[[$self]] = 'x'"), "[[$self]]", "names this deployment's configuration"),
    ] {
        let (_, p) = self_case("*", &metric);
        assert_eq!(p.len(), 1, "{metric}: {p:?}");
        assert!(p[0].0.contains(says), "{metric}: {}", p[0].0);
        assert_eq!(p[0].1, covered, "{metric}");
    }
    // `$version` and `$edgeAgent` are not near `$self`: nothing to say.
    let (_, p) = self_case("*", &q("properties.desired.$version = 1 AND moduleId = '$edgeAgent'"));
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn self_in_a_target_condition_is_an_error() {
    let (_, p) = self_case("configurations.[[$self]].status = 'Applied'", "SELECT deviceId FROM devices");
    assert!(
        p.iter().any(|(m, covered)| m.contains("only appear in metric queries") && covered == "[[$self]]"),
        "{p:?}"
    );
}
