//! Grouping + merging a fleet: 100,000 devices (and 1,000,000) against 100 deployments
//! (10 standard, 90 layered) with realistic contents. Match sets are drawn from a seeded,
//! skewed distribution, so a few stacks cover most devices and a long tail of rare ones
//! gives some thousands of distinct sets.
//!
//! Run with `cargo bench --bench merge`. Target: under 1 s for 100,000 devices.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fleetform::merge::{CreatedAt, Grouper, HubTime, MatchSet, MergeDeployment};
use fleetform::model::{ConfigurationKind, Priority};
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

const STANDARD: usize = 10;
const LAYERED: usize = 90;
const MODULE_POOL: usize = 40;

fn module_name(i: usize) -> String {
    format!("mod{i:02}")
}

fn module_definition(rng: &mut ChaCha8Rng, name: &str, version: u32) -> Value {
    // Create options as the agent sees them: compact JSON text.
    let create_options = json!({
        "HostConfig": {
            "Binds": [format!("/var/lib/{name}:/data")],
            "PortBindings": {"8080/tcp": [{"HostPort": format!("{}", 8000 + rng.gen_range(0..999))}]},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
        },
        "Env": [format!("MODULE={name}")]
    })
    .to_string();
    json!({
        "version": "1.0",
        "type": "docker",
        "status": "running",
        "restartPolicy": "always",
        "startupOrder": rng.gen_range(0..5),
        "env": {
            "LOG_LEVEL": {"value": "info"},
            "INTERVAL": {"value": rng.gen_range(1..60)},
        },
        "settings": {
            "image": format!("contoso.azurecr.io/{name}:{version}.{}", rng.gen_range(0..9)),
            "createOptions": create_options,
        }
    })
}

fn module_twin(rng: &mut ChaCha8Rng) -> Value {
    json!({
        "reporting": {"interval": rng.gen_range(5..300), "batch": rng.gen_range(1..100)},
        "thresholds": {"temperature": {"high": rng.gen_range(50..90), "low": rng.gen_range(0..20)},
                       "humidity": {"high": rng.gen_range(60..95)}},
        "features": {"compression": rng.r#gen::<bool>(), "buffering": rng.r#gen::<bool>()},
        "labels": ["edge", "bench"],
    })
}

fn pick_modules(rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = rng.gen_range(1..=5);
    let mut picked: Vec<usize> = (0..n).map(|_| rng.gen_range(0..MODULE_POOL)).collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

fn deployments(rng: &mut ChaCha8Rng) -> Vec<MergeDeployment> {
    let created = |i: usize| {
        CreatedAt::Existing(
            HubTime::parse(&format!("2024-{:02}-{:02}T10:00:00.{}Z", 1 + i % 12, 1 + i % 28, 1234567 + i))
                .expect("valid timestamp"),
        )
    };
    let mut out = Vec::with_capacity(STANDARD + LAYERED);
    for s in 0..STANDARD {
        let mut modules = Map::new();
        let mut routes = Map::new();
        let mut content: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let picked = pick_modules(rng);
        for (k, &m) in picked.iter().enumerate() {
            let name = module_name(m);
            modules.insert(name.clone(), module_definition(rng, &name, 1));
            routes
                .insert(format!("{name}Up"), json!(format!("FROM /messages/modules/{name}/outputs/* INTO $upstream")));
            if let Some(&next) = picked.get(k + 1) {
                routes.insert(
                    format!("{name}To{}", module_name(next)),
                    json!({"route": format!("FROM /messages/modules/{name}/outputs/out WHERE $body.level > 2 INTO BrokeredEndpoint(\"/modules/{}/inputs/in\")", module_name(next)), "priority": 1, "timeToLiveSecs": 3600}),
                );
            }
            let mut twin = Map::new();
            twin.insert("properties.desired".into(), module_twin(rng));
            content.insert(name, twin);
        }
        let mut agent = Map::new();
        agent.insert(
            "properties.desired".into(),
            json!({
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {
                    "minDockerVersion": "v1.25", "loggingOptions": "",
                    "registryCredentials": {"contoso": {"username": "contoso", "password": "secret", "address": "contoso.azurecr.io"}}}},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
                                "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5",
                                             "createOptions": "{\"HostConfig\":{\"PortBindings\":{\"443/tcp\":[{\"HostPort\":\"443\"}],\"5671/tcp\":[{\"HostPort\":\"5671\"}],\"8883/tcp\":[{\"HostPort\":\"8883\"}]}}}"}}
                },
                "modules": modules,
            }),
        );
        let mut hub = Map::new();
        hub.insert(
            "properties.desired".into(),
            json!({"schemaVersion": "1.1", "routes": routes, "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}),
        );
        content.insert("$edgeAgent".into(), agent);
        content.insert("$edgeHub".into(), hub);
        out.push(MergeDeployment {
            id: format!("base-{s:02}").into(),
            kind: ConfigurationKind::Standard,
            priority: Priority::try_from(1 + s as i64).unwrap(),
            created: created(s),
            content,
        });
    }
    for l in 0..LAYERED {
        let mut agent = Map::new();
        let mut hub = Map::new();
        let mut content: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for m in pick_modules(rng) {
            let name = module_name(m);
            agent.insert(format!("properties.desired.modules.{name}"), module_definition(rng, &name, 2));
            hub.insert(
                format!("properties.desired.routes.{name}Up"),
                json!(format!("FROM /messages/modules/{name}/* INTO $upstream")),
            );
            let twin = content.entry(name).or_default();
            match rng.gen_range(0..3) {
                0 => {
                    twin.insert("properties.desired".into(), module_twin(rng));
                }
                1 => {
                    twin.insert("properties.desired.reporting".into(), json!({"interval": rng.gen_range(5..60)}));
                }
                _ => {
                    twin.insert("properties.desired.thresholds.temperature.high".into(), json!(rng.gen_range(60..80)));
                }
            }
        }
        content.insert("$edgeAgent".into(), agent);
        content.insert("$edgeHub".into(), hub);
        // Mostly above every base; a few at low priorities, which some stacks skip.
        let priority = if l % 15 == 0 { rng.gen_range(1..=10) } else { 20 + (l as i64 % 30) };
        out.push(MergeDeployment {
            id: format!("layer-{l:02}").into(),
            kind: ConfigurationKind::Layered,
            priority: Priority::try_from(priority).unwrap(),
            created: created(STANDARD + l),
            content,
        });
    }
    out
}

/// Skewed match sets, the way tag-based targeting produces them: devices sit in sites
/// (building, line, region) whose popularity follows a Zipf-like law; each site has one
/// base deployment and a handful of layered ones; a minority of devices carry an extra
/// canary or per-device layer, a few match a second base, and 2% match nothing.
fn fleet(rng: &mut ChaCha8Rng, devices: usize) -> Vec<(String, MatchSet)> {
    const SITES: usize = 600;
    let base = WeightedIndex::new((0..STANDARD).map(|r| 1.0 / (r as f64 + 1.0))).expect("weights");
    let layer = WeightedIndex::new((0..LAYERED).map(|r| 1.0 / (r as f64 + 1.0).powf(1.1))).expect("weights");
    let layers_per_site = WeightedIndex::new([10.0, 25.0, 30.0, 20.0, 10.0, 5.0]).expect("weights");
    let sites: Vec<MatchSet> = (0..SITES)
        .map(|_| {
            let mut set = MatchSet::new();
            set.insert(base.sample(rng) as u32);
            for _ in 0..layers_per_site.sample(rng) {
                set.insert((STANDARD + layer.sample(rng)) as u32);
            }
            set
        })
        .collect();
    let site = WeightedIndex::new((0..SITES).map(|r| 1.0 / (r as f64 + 1.0))).expect("weights");
    (0..devices)
        .map(|i| {
            let id = format!("device-{i:07}");
            if rng.gen_bool(0.02) {
                return (id, MatchSet::new());
            }
            let mut set = sites[site.sample(rng)].clone();
            if rng.gen_bool(0.05) {
                set.insert((STANDARD + layer.sample(rng)) as u32);
            }
            if rng.gen_bool(0.01) {
                set.insert(base.sample(rng) as u32);
            }
            (id, set)
        })
        .collect()
}

fn run(
    deployments: &[MergeDeployment],
    devices: &[(String, MatchSet)],
    keep_manifests: bool,
) -> fleetform::merge::Fleet {
    let mut grouper = Grouper::new(deployments);
    for (id, set) in devices {
        grouper.add(id, set);
    }
    if keep_manifests { grouper.finish() } else { grouper.finish_without_manifests() }
}

fn distinct_manifests(fleet: &fleetform::merge::Fleet) -> u32 {
    fleet.groups.iter().map(|g| g.manifest.0 + 1).max().unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x00f1_ee7f);
    let deployments = deployments(&mut rng);
    let devices = fleet(&mut rng, 100_000);
    let started = std::time::Instant::now();
    let result = run(&deployments, &devices, true);
    eprintln!(
        "100000 devices: {} distinct match sets, {} distinct manifests, {} warnings; one run {:?}",
        result.groups.len(),
        distinct_manifests(&result),
        result.warnings.len(),
        started.elapsed()
    );
    let mut group = c.benchmark_group("merge_fleet");
    group.sample_size(10);
    group.bench_function("100000_devices_100_deployments", |b| b.iter(|| black_box(run(&deployments, &devices, true))));
    group.bench_function("100000_devices_100_deployments_lean", |b| {
        b.iter(|| black_box(run(&deployments, &devices, false)))
    });
    group.finish();

    // A million devices, timed once: criterion's repeated samples would take minutes on a
    // shared machine, and one run shows the scaling (grouping is linear in devices).
    // Manifests are dropped once checked, as a plan over a large fleet does.
    if std::env::var_os("FLEETFORM_BENCH_SKIP_1M").is_none() {
        let devices = fleet(&mut rng, 1_000_000);
        let started = std::time::Instant::now();
        let result = run(&deployments, &devices, false);
        eprintln!(
            "1000000 devices: {} distinct match sets, {} distinct manifests, {} warnings; one run {:?}",
            result.groups.len(),
            distinct_manifests(&result),
            result.warnings.len(),
            started.elapsed()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
