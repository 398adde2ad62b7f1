//! Hand-computed merge scenarios (docs/hub-semantics.md#standard-winner) and properties of the merge engine.

use fleetform::merge::{
    Check, CreatedAt, EffectiveManifest, MatchSet, MergeDeployment, SkipReason, Skipped, Stack, explain, merge,
    merge_fleet, stack,
};
use fleetform::model::{Configuration, ConfigurationKind, DeploymentId, Priority};
use serde_json::{Value, json};

/// A configuration as the hub lists it, with `createdTimeUtc` when `created` is set.
fn config(id: &str, priority: i64, created: Option<&str>, modules_content: Value) -> Configuration {
    let mut c = json!({
        "id": id,
        "priority": priority,
        "targetCondition": "*",
        "content": {"modulesContent": modules_content},
    });
    if let Some(t) = created {
        c["createdTimeUtc"] = json!(t);
    }
    serde_json::from_value(c).unwrap()
}

fn existing(id: &str, priority: i64, created: &str, content: Value) -> MergeDeployment {
    MergeDeployment::existing(&config(id, priority, Some(created), content)).unwrap().unwrap()
}

fn pending(id: &str, priority: i64, apply_index: u32, content: Value) -> MergeDeployment {
    MergeDeployment::pending(&config(id, priority, None, content), apply_index).unwrap()
}

fn base_content(image: &str) -> Value {
    json!({
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "hub:1.5"}}
            },
            "modules": {
                "sensor": {"type": "docker", "status": "running", "restartPolicy": "always",
                           "settings": {"image": image}},
                "filter": {"type": "docker", "status": "running", "restartPolicy": "always",
                           "settings": {"image": "filter:1"}}
            }
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {
                "sensorToFilter": "FROM /messages/modules/sensor/outputs/temp INTO BrokeredEndpoint(\"/modules/filter/inputs/in\")",
                "filterUp": {"route": "FROM /messages/modules/filter/* INTO $upstream", "priority": 0, "timeToLiveSecs": 60}
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        }},
        "filter": {"properties.desired": {"threshold": 10, "settings": {"a": 1, "b": 2}}}
    })
}

fn all(n: u32) -> MatchSet {
    MatchSet::from_indices(0..n)
}

fn origin(m: &EffectiveManifest, twin: &str, path: &[&str]) -> (String, String, Vec<String>) {
    let (at, o) = m.provenance.origin(twin, path).unwrap();
    (at.dotted(), o.from.clone(), o.overrode.clone())
}

fn skipped(id: &str, reason: SkipReason) -> Skipped {
    Skipped { id: id.into(), reason }
}

fn checks(ds: &[MergeDeployment], s: &Stack, m: &EffectiveManifest) -> Vec<Check> {
    fleetform::merge::checks::device_checks(ds, s, m)
}

#[test]
fn standard_tie_goes_to_the_newest_and_pending_is_newest_of_all() {
    let mut ds = vec![
        existing("older", 10, "2024-05-01T10:00:00.5Z", base_content("sensor:old")),
        // Fewer fraction digits but a later instant.
        existing("newer", 10, "2024-05-01T10:00:01Z", base_content("sensor:new")),
        existing("low", 5, "2025-01-01T00:00:00Z", base_content("sensor:low")),
    ];
    let s = stack(&ds, &all(3));
    assert_eq!(s.standard.as_deref(), Some("newer"));
    assert_eq!(
        s.skipped,
        vec![
            skipped("low", SkipReason::OutrankedStandard { by: "newer".into() }),
            skipped("older", SkipReason::LostTie { to: "newer".into() }),
        ]
    );
    let m = merge(&ds, &s);
    assert_eq!(m.modules().unwrap()["sensor"]["settings"]["image"], "sensor:new");
    assert_eq!(
        origin(&m, "$edgeAgent", &["modules", "sensor", "settings"]),
        ("modules.sensor".into(), "newer".into(), vec![])
    );
    assert_eq!(
        checks(&ds, &s, &m),
        vec![Check::EqualPriorityStandards {
            priority: Priority(10),
            winner: "newer".into(),
            losers: vec!["older".into()]
        }]
    );

    ds.push(pending("replacement", 10, 0, base_content("sensor:pending")));
    let s = stack(&ds, &all(4));
    assert_eq!(s.standard.as_deref(), Some("replacement"));
    let m = merge(&ds, &s);
    assert_eq!(m.modules().unwrap()["sensor"]["settings"]["image"], "sensor:pending");
}

#[test]
fn layered_at_or_below_the_base_is_skipped() {
    let layer = |id: &str, p: i64| {
        existing(
            id,
            p,
            "2024-01-01T00:00:00Z",
            json!({"$edgeAgent": {"properties.desired.modules.extra": {"settings": {"image": id}}}}),
        )
    };
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        layer("below", 5),
        layer("equal", 10),
        layer("above", 11),
    ];
    let s = stack(&ds, &all(4));
    assert_eq!(s.standard.as_deref(), Some("base"));
    assert_eq!(s.layered, vec!["above"]);
    let not_above = SkipReason::LayeredNotAboveStandard { standard: "base".into() };
    assert_eq!(s.skipped, vec![skipped("below", not_above.clone()), skipped("equal", not_above)]);
    let m = merge(&ds, &s);
    assert_eq!(m.modules().unwrap()["extra"]["settings"]["image"], "above");

    // Fleet-wide: `below` and `equal` never apply anywhere they land.
    let fleet = merge_fleet(&ds, [("dev-1", all(4)), ("dev-2", MatchSet::from_indices([0, 1]))]);
    let never: Vec<_> = fleet
        .warnings
        .iter()
        .filter(|w| matches!(w.check, Check::LayeredNeverApplies { .. }))
        .map(|w| (w.check.clone(), w.devices, w.samples.clone()))
        .collect();
    assert_eq!(
        never,
        vec![
            (
                Check::LayeredNeverApplies { deployment: "below".into() },
                2,
                vec!["dev-1".to_string(), "dev-2".to_string()]
            ),
            (Check::LayeredNeverApplies { deployment: "equal".into() }, 1, vec!["dev-1".to_string()]),
        ]
    );
}

#[test]
fn layered_overwrites_a_route_and_a_twin_subsection() {
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        existing(
            "tune",
            20,
            "2024-02-01T00:00:00Z",
            json!({
                "$edgeAgent": {"properties.desired.modules.sensor.settings.image": "s:2"},
                "$edgeHub": {"properties.desired.routes.filterUp": "FROM /messages/modules/filter/outputs/alerts INTO $upstream"},
                "filter": {"properties.desired.settings": {"a": 5}}
            }),
        ),
    ];
    let s = stack(&ds, &all(2));
    assert_eq!(s.layered, vec!["tune"]);
    let m = merge(&ds, &s);

    // Route replaced whole (object form gone), the other route untouched.
    assert_eq!(m.routes().unwrap()["filterUp"], "FROM /messages/modules/filter/outputs/alerts INTO $upstream");
    assert_eq!(
        origin(&m, "$edgeHub", &["routes", "filterUp"]),
        ("routes.filterUp".into(), "tune".into(), vec!["base".into()])
    );
    assert_eq!(origin(&m, "$edgeHub", &["routes", "sensorToFilter"]).1, "base");

    // One field of a module patched: the module unit stays the base's.
    let sensor = &m.modules().unwrap()["sensor"];
    assert_eq!(sensor["settings"]["image"], "s:2");
    assert_eq!(sensor["restartPolicy"], "always");
    assert_eq!(
        origin(&m, "$edgeAgent", &["modules", "sensor", "settings", "image"]),
        ("modules.sensor.settings.image".into(), "tune".into(), vec!["base".into()])
    );
    assert_eq!(
        origin(&m, "$edgeAgent", &["modules", "sensor", "status"]),
        ("modules.sensor".into(), "base".into(), vec![])
    );

    // Twin subsection replaced: `settings.b` is gone, `threshold` kept.
    assert_eq!(m.twins["filter"], json!({"threshold": 10, "settings": {"a": 5}}));
    assert_eq!(origin(&m, "filter", &["settings", "a"]), ("settings.a".into(), "tune".into(), vec!["base".into()]));
    assert_eq!(origin(&m, "filter", &["threshold"]).1, "base");
    let (_, b) = m.provenance.origin("filter", &["settings", "b"]).unwrap();
    assert!(b.removed && b.from == "tune");
    assert!(checks(&ds, &s, &m).is_empty());

    // The explain shape the CLI prints.
    let view = explain(&ds, &s, &m).to_json();
    assert_eq!(view["stack"]["standard"], "base");
    assert_eq!(view["stack"]["layered"], json!(["tune"]));
    assert_eq!(view["stack"]["skipped"], json!([]));
    assert_eq!(view["manifest"]["modules"]["filter"]["from"], "base");
    assert_eq!(view["manifest"]["modules"]["sensor"]["from"], "base");
    assert_eq!(
        view["manifest"]["modules"]["sensor"]["details"],
        json!([{"path": "modules.sensor.settings.image", "from": "tune", "overrode": ["base"]}])
    );
    assert_eq!(view["manifest"]["routes"]["filterUp"]["from"], "tune");
    assert_eq!(view["manifest"]["routes"]["filterUp"]["overrode"], json!(["base"]));
    assert_eq!(
        view["manifest"]["routes"]["sensorToFilter"]["route"],
        "FROM /messages/modules/sensor/outputs/temp INTO BrokeredEndpoint(\"/modules/filter/inputs/in\")"
    );
    assert_eq!(view["manifest"]["runtime"]["from"], "base");
    assert_eq!(view["manifest"]["runtime"]["value"]["type"], "docker");
    assert_eq!(view["manifest"]["store_and_forward"]["from"], "base");
    assert_eq!(view["manifest"]["system_modules"]["edgeHub"]["from"], "base");
    assert_eq!(view["manifest"]["twins"]["filter"]["desired"], json!({"threshold": 10, "settings": {"a": 5}}));
    assert_eq!(
        view["manifest"]["twins"]["filter"]["provenance"][0],
        json!({"path": "settings.a", "from": "tune", "overrode": ["base"]})
    );
}

#[test]
fn whole_desired_replaces_lower_deployments_twin() {
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        existing(
            "reset",
            20,
            "2024-01-01T00:00:00Z",
            json!({"$edgeAgent": {}, "filter": {"properties.desired": {"mode": "strict"}}}),
        ),
    ];
    let s = stack(&ds, &all(2));
    let m = merge(&ds, &s);
    assert_eq!(m.twins["filter"], json!({"mode": "strict"}));
    assert_eq!(origin(&m, "filter", &["mode"]), ("mode".into(), "reset".into(), vec![]));
    for gone in [&["threshold"][..], &["settings", "a"], &["settings", "b"]] {
        let (_, o) = m.provenance.origin("filter", gone).unwrap();
        assert!(o.removed, "{gone:?}");
        assert_eq!((o.from.as_str(), o.overrode.clone()), ("reset", vec!["base".to_string()]));
    }
    // `$edgeAgent: {}` writes nothing: the agent document is the base's.
    assert_eq!(m.edge_agent, base_content("s:1")["$edgeAgent"]["properties.desired"]);
}

#[test]
fn layered_without_a_base_gives_no_manifest() {
    let ds = vec![existing(
        "monitor",
        20,
        "2024-01-01T00:00:00Z",
        json!({"$edgeAgent": {"properties.desired.modules.mon": {"settings": {"image": "m"}}}}),
    )];
    let s = stack(&ds, &all(1));
    assert_eq!(s.standard, None);
    assert_eq!(s.skipped, vec![skipped("monitor", SkipReason::NoStandard)]);
    let m = merge(&ds, &s);
    assert!(m.no_standard && !m.unmanaged && !m.is_managed());
    assert_eq!(m.edge_agent, json!({}));
    assert!(m.provenance.is_empty());
    assert_eq!(checks(&ds, &s, &m), vec![Check::LayeredWithoutStandard { deployment: "monitor".into() }]);
}

#[test]
fn a_device_matching_nothing_is_unmanaged() {
    let ds = vec![existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1"))];
    let s = stack(&ds, &MatchSet::new());
    let m = merge(&ds, &s);
    assert!(m.unmanaged && !m.no_standard);
    assert_eq!(s.standard, None);
    let fleet = merge_fleet(&ds, [("z-dev", MatchSet::new()), ("a-dev", MatchSet::new()), ("m-dev", all(1))]);
    assert_eq!(fleet.groups.len(), 2);
    assert_eq!(fleet.warnings.len(), 1);
    assert_eq!(fleet.warnings[0].check, Check::Unmanaged);
    assert_eq!(fleet.warnings[0].devices, 2);
    assert_eq!(fleet.warnings[0].samples, vec!["a-dev", "z-dev"]);
    assert!(fleet.manifest_of(0).unwrap().unmanaged);
    assert!(fleet.manifest_of(2).unwrap().is_managed());
    assert_eq!(
        fleet.warnings[0].to_string(),
        "W010 devices matched by no deployment are unmanaged and keep their current modules (2 devices: a-dev, z-dev)"
    );
}

#[test]
fn equal_priority_layered_overlap_newest_wins_and_is_warned() {
    let mon = |image: &str| {
        json!({"$edgeAgent": {"properties.desired.modules.mon": {"settings": {"image": image}}},
               "$edgeHub": {"properties.desired.routes.monUp": "FROM /messages/modules/mon/* INTO $upstream"}})
    };
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        pending("mon-new", 20, 0, mon("mon:2")),
        existing("mon-old", 20, "2024-06-01T00:00:00Z", mon("mon:1")),
    ];
    let s = stack(&ds, &all(3));
    assert_eq!(s.layered, vec!["mon-old", "mon-new"]);
    let m = merge(&ds, &s);
    assert_eq!(m.modules().unwrap()["mon"]["settings"]["image"], "mon:2");
    assert_eq!(
        origin(&m, "$edgeAgent", &["modules", "mon"]),
        ("modules.mon".into(), "mon-new".into(), vec!["mon-old".into()])
    );
    let overlap = |twin: &str, path: &str| Check::EqualPriorityLayeredOverlap {
        twin: twin.into(),
        path: path.into(),
        priority: Priority(20),
        winner: "mon-new".into(),
        loser: "mon-old".into(),
    };
    assert_eq!(checks(&ds, &s, &m), vec![overlap("$edgeAgent", "modules.mon"), overlap("$edgeHub", "routes.monUp")]);
}

/// Paths that differ inside one module or route still collide: by the hub's rules
/// (docs/hub-semantics.md#layered-stack) the newer equal-priority layer wins, and field reports say only its writes apply.
#[test]
fn equal_priority_layers_touching_one_module_or_route_are_warned() {
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        existing(
            "env-old",
            20,
            "2024-03-01T00:00:00Z",
            json!({"$edgeAgent": {"properties.desired.modules.sensor.env.MODE": {"value": "fast"}},
                   "$edgeHub": {"properties.desired.routes.up.priority": 1},
                   "sensor": {"properties.desired.a": 1}}),
        ),
        existing(
            "image-new",
            20,
            "2024-06-01T00:00:00Z",
            json!({"$edgeAgent": {"properties.desired.modules.sensor.settings.image": "s:2"},
                   "$edgeHub": {"properties.desired.routes.up.route": "FROM /* INTO $upstream"},
                   "sensor": {"properties.desired.b": 2}}),
        ),
        // A higher layer on the same module is ordinary layering, not a tie.
        existing(
            "above",
            30,
            "2024-02-01T00:00:00Z",
            json!({"$edgeAgent": {"properties.desired.modules.sensor.env.X": {"value": "1"}}}),
        ),
    ];
    let s = stack(&ds, &all(4));
    let m = merge(&ds, &s);
    let tie = |twin: &str, path: &str| Check::EqualPriorityLayeredOverlap {
        twin: twin.into(),
        path: path.into(),
        priority: Priority(20),
        winner: "image-new".into(),
        loser: "env-old".into(),
    };
    // Distinct paths of the custom module twin `sensor` are not a collision.
    assert_eq!(checks(&ds, &s, &m), vec![tie("$edgeAgent", "modules.sensor"), tie("$edgeHub", "routes.up")]);
}

#[test]
fn routes_to_and_from_missing_modules_are_warned() {
    let ds = vec![
        existing("base", 10, "2024-01-01T00:00:00Z", base_content("s:1")),
        existing(
            "wiring",
            20,
            "2024-01-01T00:00:00Z",
            json!({"$edgeAgent": {},
            "$edgeHub": {
                "properties.desired.routes.toGhost": "FROM /messages/* INTO BrokeredEndpoint(\"/modules/ghost/inputs/in\")",
                "properties.desired.routes.fromPhantom": {"route": "FROM /messages/modules/phantom/outputs/* INTO $upstream", "priority": 1},
                "properties.desired.routes.broken": "FROM /messages/* INTO somewhere"
            }}),
        ),
    ];
    let fleet = merge_fleet(&ds, (0..7).map(|i| (format!("d{i}"), all(2))));
    let got: Vec<Check> = fleet.warnings.iter().map(|w| w.check.clone()).collect();
    assert_eq!(
        got,
        vec![
            Check::RouteToMissingModule { route: "toGhost".into(), module: "ghost".into(), from: "wiring".into() },
            Check::RouteFromMissingModule {
                route: "fromPhantom".into(),
                module: "phantom".into(),
                from: "wiring".into()
            },
            Check::InvalidRoute {
                route: "broken".into(),
                from: "wiring".into(),
                message: "sink must be $upstream or BrokeredEndpoint(\"/modules/<module>/inputs/<input>\")".into()
            },
        ]
    );
    assert!(fleet.warnings.iter().all(|w| w.devices == 7 && w.samples.len() == 5));
    let json = serde_json::to_value(&fleet.warnings[0]).unwrap();
    assert_eq!(
        json,
        json!({"code": "W001", "check": "route-to-missing-module", "route": "toGhost", "module": "ghost",
               "from": "wiring", "devices": 7, "samples": ["d0", "d1", "d2", "d3", "d4"]})
    );
}

#[test]
fn oversized_documents_and_values_are_warned() {
    let big = "x".repeat(5000);
    let mut content = base_content("s:1");
    content["filter"]["properties.desired"]["blob"] = json!(big);
    let many: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("m{i}"), json!({"settings": {"image": "y".repeat(900)}}))).collect();
    content["$edgeAgent"]["properties.desired"]["modules"] = Value::Object(many);
    let ds = vec![existing("base", 10, "2024-01-01T00:00:00Z", content)];
    let s = stack(&ds, &all(1));
    let m = merge(&ds, &s);
    let found = checks(&ds, &s, &m);
    assert!(found.iter().any(|c| matches!(c,
        Check::TwinDesiredTooLarge { twin, bytes, .. } if twin == "$edgeAgent" && *bytes > 32768)));
    assert!(found.contains(&Check::TwinValueTooLarge {
        twin: "filter".into(),
        path: "blob".into(),
        bytes: 5000,
        limit: 4096,
        from: "base".into()
    }));
}

#[test]
fn device_management_configurations_stay_out() {
    let adm: Configuration = serde_json::from_value(json!({"id": "adm", "content": {"deviceContent": {}}})).unwrap();
    assert_eq!(adm.kind(), ConfigurationKind::DeviceManagement);
    assert!(MergeDeployment::pending(&adm, 0).is_none());
    let c = config("c", 1, None, json!({"$edgeAgent": {"properties.desired": {}}}));
    assert_eq!(MergeDeployment::pending(&c, 3).unwrap().created, CreatedAt::Pending(3));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const MODULES: [&str; 3] = ["a", "b", "c"];

    #[derive(Clone, Debug)]
    struct Spec {
        layered: bool,
        priority: i64,
        created: u8,
        modules: Vec<(usize, u8)>,
        routes: Vec<(usize, usize)>,
        twin: Vec<(usize, u8, bool)>,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            any::<bool>(),
            0i64..4,
            0u8..6,
            prop::collection::vec((0usize..3, 0u8..3), 0..3),
            prop::collection::vec((0usize..3, 0usize..3), 0..3),
            prop::collection::vec((0usize..3, 0u8..3, any::<bool>()), 0..3),
        )
            .prop_map(|(layered, priority, created, modules, routes, twin)| Spec {
                layered,
                priority,
                created,
                modules,
                routes,
                twin,
            })
    }

    fn created(n: u8) -> CreatedAt {
        // Half existing (with clashing instants), half pending.
        if n < 3 {
            CreatedAt::Existing(fleetform::merge::HubTime::parse(&format!("2024-01-01T00:00:0{n}.5Z")).unwrap())
        } else {
            CreatedAt::Pending(u32::from(n - 3))
        }
    }

    fn build(i: usize, s: &Spec) -> MergeDeployment {
        let module = |m: usize, v: u8| json!({"settings": {"image": format!("{}:{v}", MODULES[m])}});
        let route = |from: usize, to: usize| {
            Value::String(format!(
                "FROM /messages/modules/{}/* INTO BrokeredEndpoint(\"/modules/{}/inputs/in\")",
                MODULES[from], MODULES[to]
            ))
        };
        let mut content = serde_json::Map::new();
        if s.layered {
            let mut agent = serde_json::Map::new();
            for &(m, v) in &s.modules {
                agent.insert(format!("properties.desired.modules.{}", MODULES[m]), module(m, v));
            }
            content.insert("$edgeAgent".into(), Value::Object(agent));
            let mut hub = serde_json::Map::new();
            for &(f, t) in &s.routes {
                hub.insert(format!("properties.desired.routes.r{f}{t}"), route(f, t));
            }
            content.insert("$edgeHub".into(), Value::Object(hub));
        } else {
            let modules: serde_json::Map<String, Value> =
                s.modules.iter().map(|&(m, v)| (MODULES[m].to_string(), module(m, v))).collect();
            let routes: serde_json::Map<String, Value> =
                s.routes.iter().map(|&(f, t)| (format!("r{f}{t}"), route(f, t))).collect();
            content.insert(
                "$edgeAgent".into(),
                json!({"properties.desired": {"schemaVersion": "1.1", "modules": modules}}),
            );
            content
                .insert("$edgeHub".into(), json!({"properties.desired": {"schemaVersion": "1.1", "routes": routes}}));
        }
        for &(m, v, whole) in &s.twin {
            let twin = content.entry(MODULES[m].to_string()).or_insert_with(|| json!({}));
            let key = if whole { "properties.desired".to_string() } else { format!("properties.desired.k{v}") };
            twin[key] = json!({"v": v, "by": i});
        }
        MergeDeployment {
            id: format!("d{i}").into(),
            kind: if s.layered { ConfigurationKind::Layered } else { ConfigurationKind::Standard },
            priority: Priority::try_from(s.priority).unwrap(),
            created: created(s.created),
            content: serde_json::from_value(Value::Object(content)).unwrap(),
        }
    }

    fn fleet_input() -> impl Strategy<Value = (Vec<Spec>, Vec<bool>)> {
        prop::collection::vec(spec(), 1..7).prop_flat_map(|specs| {
            let n = specs.len();
            (Just(specs), prop::collection::vec(any::<bool>(), n))
        })
    }

    fn ids(s: &Stack) -> (Option<DeploymentId>, Vec<DeploymentId>, Vec<Skipped>) {
        (s.standard.clone(), s.layered.clone(), s.skipped.clone())
    }

    fn json_of(m: &EffectiveManifest) -> Value {
        serde_json::to_value(m).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn result_does_not_depend_on_list_order(
            (specs, matched) in fleet_input(),
            seed in any::<u64>(),
        ) {
            let ds: Vec<_> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
            let set: MatchSet = (0..ds.len() as u32).filter(|&i| matched[i as usize]).collect();
            let s1 = stack(&ds, &set);
            let m1 = merge(&ds, &s1);

            // A deterministic permutation from the seed.
            let mut order: Vec<usize> = (0..ds.len()).collect();
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let permuted: Vec<_> = order.iter().map(|&i| ds[i].clone()).collect();
            let pset: MatchSet = order
                .iter()
                .enumerate()
                .filter(|&(_, &orig)| matched[orig])
                .map(|(new, _)| new as u32)
                .collect();
            let s2 = stack(&permuted, &pset);
            let m2 = merge(&permuted, &s2);
            prop_assert_eq!(ids(&s1), ids(&s2));
            prop_assert_eq!(json_of(&m1), json_of(&m2));
        }

        #[test]
        fn an_empty_layered_deployment_changes_no_manifest(
            (specs, matched) in fleet_input(),
            priority in 0i64..5,
            created_n in 0u8..6,
            matches_it in any::<bool>(),
        ) {
            let mut ds: Vec<_> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
            let set: MatchSet = (0..ds.len() as u32).filter(|&i| matched[i as usize]).collect();
            let before = merge(&ds, &stack(&ds, &set));
            ds.push(MergeDeployment {
                id: "empty".into(),
                kind: ConfigurationKind::Layered,
                priority: Priority::try_from(priority).unwrap(),
                created: created(created_n),
                content: serde_json::from_value(json!({"$edgeAgent": {}})).unwrap(),
            });
            let mut with = set.clone();
            if matches_it {
                with.insert(ds.len() as u32 - 1);
            }
            let after = merge(&ds, &stack(&ds, &with));
            prop_assert_eq!(&before.edge_agent, &after.edge_agent);
            prop_assert_eq!(&before.edge_hub, &after.edge_hub);
            prop_assert_eq!(&before.twins, &after.twins);
            prop_assert_eq!(json_of(&before)["provenance"].clone(), json_of(&after)["provenance"].clone());
            prop_assert_eq!(&before.conflicts, &after.conflicts);
            // A device that matched nothing becomes "no standard" (it now matches a layered
            // deployment, docs/hub-semantics.md#layered-stack); any other keeps its flags.
            if !set.is_empty() || !matches_it {
                prop_assert_eq!((before.no_standard, before.unmanaged), (after.no_standard, after.unmanaged));
            }
        }

        #[test]
        fn grouping_equals_per_device_merging(
            specs in prop::collection::vec(spec(), 1..6),
            devices in prop::collection::vec(0u32..64, 1..40),
        ) {
            let ds: Vec<_> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
            let sets: Vec<MatchSet> = devices
                .iter()
                .map(|bits| (0..ds.len() as u32).filter(|i| bits & (1 << i) != 0).collect())
                .collect();
            let fleet = merge_fleet(
                &ds,
                sets.iter().enumerate().map(|(i, s)| (format!("dev{i:03}"), s.clone())),
            );
            prop_assert_eq!(fleet.device_count(), sets.len());
            let mut total = 0;
            for g in &fleet.groups {
                total += g.devices;
            }
            prop_assert_eq!(total, sets.len() as u64);
            for (i, set) in sets.iter().enumerate() {
                let s = stack(&ds, set);
                let m = merge(&ds, &s);
                let g = fleet.group_of(i).unwrap();
                prop_assert_eq!(&g.matches, set);
                prop_assert_eq!(ids(&g.stack), ids(&s));
                prop_assert_eq!(json_of(fleet.manifest(g.manifest).unwrap()), json_of(&m));
                // Every per-device finding is in the fleet's warnings, counting this device.
                for check in fleetform::merge::checks::device_checks(&ds, &s, &m) {
                    let w = fleet.warnings.iter().find(|w| w.check == check);
                    prop_assert!(w.is_some(), "missing {:?}", check);
                }
            }
            // Dropping manifests changes nothing but the kept documents.
            let mut lean = fleetform::merge::Grouper::new(&ds);
            for (i, s) in sets.iter().enumerate() {
                lean.add(&format!("dev{i:03}"), s);
            }
            let lean = lean.finish_without_manifests();
            prop_assert!(lean.manifests.is_empty());
            prop_assert_eq!(&lean.warnings, &fleet.warnings);
            prop_assert_eq!(&lean.device_groups, &fleet.device_groups);
            for g in &lean.groups {
                let kept = &fleet.groups[g.id.0 as usize];
                prop_assert_eq!(g.manifest, kept.manifest);
                prop_assert_eq!(
                    json_of(&lean.merged(&ds, g)),
                    json_of(&fleet.merged(&ds, kept))
                );
            }
            // Visiting each manifest as it is merged sees the documents the full fleet
            // keeps, once per distinct stack, with the same groups and warnings.
            let mut visited = fleetform::merge::Grouper::new(&ds);
            for (i, s) in sets.iter().enumerate() {
                visited.add(&format!("dev{i:03}"), s);
            }
            let stacked = visited.stack_groups();
            prop_assert_eq!(stacked.manifest_count(), fleet.manifests.len());
            for g in &fleet.groups {
                let (s, m) = stacked.group_of(&g.matches).unwrap();
                prop_assert_eq!(ids(s), ids(&g.stack));
                prop_assert_eq!(m, g.manifest);
            }
            let documents = |m: &EffectiveManifest| {
                serde_json::json!([m.no_standard, m.unmanaged, m.edge_agent, m.edge_hub, m.twins])
            };
            let (streamed, seen) = stacked.finish_each(|id, m| (id, documents(m)));
            prop_assert!(streamed.manifests.is_empty());
            prop_assert_eq!(&streamed.warnings, &fleet.warnings);
            prop_assert_eq!(seen.len(), fleet.manifests.len());
            for (at, (id, docs)) in seen.iter().enumerate() {
                prop_assert_eq!(id.0 as usize, at);
                prop_assert_eq!(docs, &documents(&fleet.manifests[at]));
            }
            let unmanaged = sets.iter().filter(|s| s.is_empty()).count() as u64;
            let reported = fleet
                .warnings
                .iter()
                .find(|w| w.check == Check::Unmanaged)
                .map_or(0, |w| w.devices);
            prop_assert_eq!(reported, unmanaged);
        }
    }
}
