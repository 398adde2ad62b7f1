//! render -> read -> render is byte-identical, for the examples and for generated
//! deployments of every shape (chunked createOptions, routes as strings and objects,
//! whole and sub-path twins, standard and layered).

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetform::manifest::{self, MapEnv, SecretMode};
use fleetform::spec::*;
use miette::SourceSpan;
use proptest::prelude::*;
use serde_json::Value;

fn origin() -> Origin {
    Origin { file: Arc::new(SourceFile::new("gen.kdl", "gen.kdl", String::new())), span: SourceSpan::new(0.into(), 0) }
}

fn lit(v: Value) -> Scalar {
    Scalar::literal(v, origin())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,40}".prop_map(Value::String),
        // Long strings push createOptions past 512 characters, into several pieces.
        "[a-zé]{300,1400}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z][A-Za-z0-9]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[A-Za-z][A-Za-z0-9]{0,6}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn env_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(Value::String),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool)
    ]
}

fn settings() -> impl Strategy<Value = ModuleSettings> {
    (
        "[a-z]{1,10}\\.azurecr\\.io/[a-z]{1,8}:[0-9]\\.[0-9]",
        prop::option::of(json_object()),
        prop::collection::btree_map("[A-Z][A-Z_]{0,8}", env_value(), 0..3),
        prop::option::of(prop::sample::select(vec!["running", "stopped"])),
        prop::option::of(prop::sample::select(vec!["never", "on-failure", "on-unhealthy", "always"])),
        prop::option::of(any::<u32>()),
        prop::option::of(prop::sample::select(vec!["on-create", "never"])),
        prop::option::of("sha256:[0-9a-f]{8}"),
    )
        .prop_map(|(image, co, env, status, restart, order, pull, digest)| ModuleSettings {
            image: Some(lit(Value::String(image))),
            create_options: co.map(|v| CreateOptions { doc: JsonDoc { value: v, scalars: vec![] }, origin: origin() }),
            env: env.into_iter().map(|(k, v)| (k, lit(v))).collect(),
            status: status.map(str::to_string),
            restart_policy: restart.map(str::to_string),
            startup_order: order,
            image_pull_policy: pull.map(str::to_string),
            digest,
        })
}

fn registry() -> impl Strategy<Value = (String, Registry)> {
    ("[a-z]{1,8}", "[a-z]{1,8}", "[ -~]{1,20}").prop_map(|(name, user, pass)| {
        let mut password = lit(Value::String(pass));
        password.sensitive = true;
        let r = Registry {
            name: name.clone(),
            address: lit(Value::String(format!("{name}.azurecr.io"))),
            username: lit(Value::String(user)),
            password,
            origin: origin(),
        };
        (name, r)
    })
}

fn route() -> impl Strategy<Value = Route> {
    ("[a-z][a-z0-9-]{0,8}", "[a-zA-Z]{1,8}", prop::option::of(0u8..=9), prop::option::of(any::<u32>())).prop_map(
        |(name, m, priority, ttl)| Route {
            name,
            text: QueryText {
                text: format!("FROM /messages/modules/{m}/outputs/* INTO $upstream"),
                offsets: None,
                origin: origin(),
            },
            priority,
            ttl,
            origin: origin(),
        },
    )
}

fn deployment() -> impl Strategy<Value = Deployment> {
    (
        any::<bool>(),
        "[a-z][a-z0-9-]{0,20}",
        0i32..100_000,
        prop::option::of("tags\\.[a-z]{1,6}='[a-z0-9]{0,6}'"),
        prop::collection::btree_map("[a-z]{1,8}", "[A-Za-z0-9]{0,10}", 0..3),
        prop::collection::btree_map(
            "[a-z]{1,8}",
            "SELECT deviceId FROM devices WHERE tags\\.[a-z]{1,5} = [0-9]{1,3}",
            0..3,
        ),
        prop::collection::btree_map(
            "[A-Za-z][A-Za-z0-9_-]{0,10}",
            (prop::option::of("[0-9]\\.[0-9]"), settings()),
            0..4,
        ),
        prop::collection::vec(route(), 0..3),
        prop::collection::vec(registry(), 0..2),
        (
            settings(),
            settings(),
            prop::sample::select(vec!["1.0", "1.1"]),
            prop::sample::select(vec!["1.1", "1.2", "1.3"]),
            // edgeHub reads timeToLiveSecs as an int32.
            0..=i32::MAX as u32,
            prop::option::of(0..=i64::MAX as u64),
        ),
        prop::collection::vec((any::<prop::sample::Index>(), prop::option::of("[a-z]{1,6}"), json_object()), 0..3),
    )
        .prop_map(|(layered, name, priority, target, labels, metrics, modules, routes, registries, rt, twins)| {
            let kind = if layered { DeploymentKind::Layered } else { DeploymentKind::Standard };
            let modules: BTreeMap<String, Module> = modules
                .into_iter()
                .map(|(n, (version, settings))| (n.clone(), Module { name: n, version, settings, origin: origin() }))
                .collect();
            let registries: BTreeMap<String, Registry> = registries.into_iter().collect();
            let (agent, hub, agent_schema, hub_schema, ttl, max_size) = rt;
            let runtime = (kind == DeploymentKind::Standard).then(|| Runtime {
                agent_schema: agent_schema.to_string(),
                hub_schema: hub_schema.to_string(),
                min_docker_version: "v1.25".into(),
                logging_options: String::new(),
                registries: registries.clone(),
                edge_agent: ModuleSettings { status: None, restart_policy: None, startup_order: None, ..agent },
                edge_hub: hub,
                store_and_forward_ttl: ttl,
                store_max_size_bytes: max_size,
                mqtt_broker: None,
                integrity: None,
                hub_integrity: None,
                origin: origin(),
            });
            // Twins target declared modules; a standard deployment's paths must not overlap.
            let mut twin_settings: Vec<TwinSetting> = Vec::new();
            let names: Vec<&String> = modules.keys().collect();
            for (idx, path, doc) in twins {
                if names.is_empty() {
                    break;
                }
                let module = names[idx.index(names.len())].clone();
                let path: Vec<String> = path.into_iter().collect();
                let overlaps = twin_settings
                    .iter()
                    .any(|t| t.module == module && (t.path.is_empty() || path.is_empty() || t.path == path));
                if !overlaps {
                    twin_settings.push(TwinSetting {
                        module,
                        path,
                        doc: JsonDoc { value: doc, scalars: vec![] },
                        origin: origin(),
                    });
                }
            }
            Deployment {
                name: DeploymentName(name),
                kind,
                priority: Priority(priority),
                target: target.map(|t| QueryText { text: t, offsets: None, origin: origin() }),
                labels,
                metrics: metrics
                    .into_iter()
                    .map(|(n, q)| Metric {
                        name: n,
                        query: QueryText { text: q, offsets: None, origin: origin() },
                        origin: origin(),
                    })
                    .collect(),
                runtime,
                registries: if layered { registries } else { BTreeMap::new() },
                modules,
                routes: routes.into_iter().map(|r| (r.name.clone(), r)).collect(),
                twins: twin_settings,
                adopt: None,
                rollout: None,
                origin: origin(),
            }
        })
}

/// No `(env)` values, only the content hash's key (deployments read back from the hub
/// hold their secrets as values).
fn key_only() -> MapEnv {
    MapEnv([("FLEETFORM_HASH_KEY".to_string(), "a-hash-key-for-the-round-trip-tests".to_string())].into())
}

fn rendered_text(d: &Deployment) -> String {
    let r = manifest::render(d, &key_only(), SecretMode::Reveal).expect("renders");
    serde_json::to_string_pretty(&r.configuration).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn render_read_render_is_byte_identical(d in deployment()) {
        let first = manifest::render(&d, &key_only(), SecretMode::Reveal).expect("renders");
        let back = manifest::read(&first.configuration).expect("reads back");
        let again = rendered_text(&back);
        prop_assert_eq!(serde_json::to_string_pretty(&first.configuration).unwrap(), again);
        // The JSON survives the wire too.
        let wire: fleetform::model::Configuration = serde_json::from_str(&serde_json::to_string(&first.configuration).unwrap()).unwrap();
        prop_assert_eq!(&wire, &first.configuration);
    }
}

#[test]
fn examples_round_trip() {
    let ws = Workspace::load(&["examples/campus/deployments".into()]).unwrap();
    assert!(ws.problems.is_empty());
    let env = MapEnv(
        [
            ("ACR_PASSWORD", "a"),
            ("VISION_REGISTRY_PASSWORD", "b"),
            ("CAMERA_API_TOKEN", "c"),
            ("FLEETFORM_HASH_KEY", "a-hash-key-for-the-round-trip-tests"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    for d in &ws.deployments {
        let first = manifest::render(d, &env, SecretMode::Reveal).unwrap();
        let back = manifest::read(&first.configuration).unwrap();
        assert_eq!(back.name, d.name);
        assert_eq!(back.kind, d.kind);
        let mut again = manifest::render(&back, &key_only(), SecretMode::Reveal).unwrap();
        // The hub does not say which env values were `(secret-env)`, and the content hash
        // masks exactly the sensitive values: the id survives the round trip only when
        // the same values read back as sensitive. The content always does.
        if again.sensitive == first.sensitive {
            assert_eq!(first.configuration.id, again.configuration.id, "{}", d.name);
        } else {
            assert_ne!(first.configuration.id, again.configuration.id, "{}", d.name);
            again.configuration.id = first.configuration.id.clone();
            again.configuration.labels = first.configuration.labels.clone();
        }
        assert_eq!(
            serde_json::to_string_pretty(&first.configuration).unwrap(),
            serde_json::to_string_pretty(&again.configuration).unwrap(),
            "{}",
            d.name
        );
    }
}

#[test]
fn hub_shapes_read_back() {
    // Routes in both forms, chunked createOptions, hub-set fields and nulls.
    let text = r#"{
      "id": "legacy-1", "schemaVersion": "2.0", "labels": null, "priority": 5, "targetCondition": "*",
      "createdTimeUtc": "2024-05-01T10:00:00.1234567Z", "etag": "MQ==",
      "systemMetrics": {"results": {"targetedCount": 3}, "queries": {}}, "metrics": {"results": null, "queries": null},
      "content": {"modulesContent": {
        "$edgeAgent": {"properties.desired.modules.cam": {"type": "docker", "status": "running", "restartPolicy": "always",
            "settings": {"image": "x", "createOptions": "{\"a\":", "createOptions01": "1}"}}},
        "$edgeHub": {"properties.desired.routes.r1": "FROM /messages/* INTO $upstream",
                     "properties.desired.routes.r2": {"route": "FROM /messages/* INTO $upstream", "priority": 2, "timeToLiveSecs": 30}},
        "cam": {"properties.desired.settings.zone": {"x": 1}}
      }}
    }"#;
    let c: fleetform::model::Configuration = serde_json::from_str(text).unwrap();
    let d = manifest::read(&c).unwrap();
    assert_eq!(d.kind, DeploymentKind::Layered);
    assert_eq!(d.modules["cam"].settings.create_options.as_ref().unwrap().doc.value, serde_json::json!({"a": 1}));
    assert_eq!(d.routes["r2"].priority, Some(2));
    assert_eq!(d.routes["r2"].ttl, Some(30));
    assert_eq!(d.twins[0].path, vec!["settings".to_string(), "zone".to_string()]);
    // Something fleetform can't express is an error naming where it is.
    let mut odd = c.clone();
    odd.content
        .modules_content
        .as_mut()
        .unwrap()
        .get_mut("$edgeAgent")
        .unwrap()
        .insert("properties.desired.schemaVersion".into(), Value::String("1.1".into()));
    let err = manifest::read(&odd).unwrap_err().to_string();
    assert!(err.contains("$edgeAgent.properties.desired.schemaVersion"), "{err}");
}
