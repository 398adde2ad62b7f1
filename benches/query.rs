//! Target-condition evaluation throughput.
//!
//! (a) one compiled 3-clause condition on a realistic twin;
//! (b) a `ConditionSet` of 100 conditions over 1,000 varied twins (100,000 evaluations per
//!     iteration; criterion reports evaluations per second as elements/s);
//! (c) the same 100 × 1,000 with one `CompiledCondition` per condition, for comparison.
//!
//! Run: `cargo bench --bench query`.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use fleetform::query::{CompiledCondition, ConditionSet, Scratch, parse_condition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const ENVIRONMENTS: [&str; 4] = ["prod", "staging", "dev", "test"];
const ROOMS: [&str; 4] = ["conference", "office", "lab", "lobby"];
const MODELS: [&str; 3] = ["4000x", "5000x", "edge-mini"];

/// A device twin with about 30 properties, shaped like the hub returns it.
fn twin(rng: &mut ChaCha8Rng, i: usize) -> Value {
    let building = rng.gen_range(1..=40).to_string();
    let mut tags = json!({
        "environment": ENVIRONMENTS[rng.gen_range(0..ENVIRONMENTS.len())],
        "location": {"building": building, "floor": rng.gen_range(0..10), "city": "Redmond"},
        "roomtype": ROOMS[rng.gen_range(0..ROOMS.len())],
        "ring": rng.gen_range(0..4),
    });
    if rng.gen_bool(0.3) {
        tags["owner"] = json!(format!("team-{}", rng.gen_range(0..5)));
    }
    json!({
        "deviceId": format!("dev-{i:05}"),
        "etag": "AAAAAAAAAAc=",
        "deviceEtag": "NTY4MTQ2MTI3",
        "status": "enabled",
        "statusUpdateTime": "0001-01-01T00:00:00Z",
        "connectionState": if rng.gen_bool(0.9) { "Connected" } else { "Disconnected" },
        "lastActivityTime": "2026-11-25T10:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
        "modelId": "",
        "version": rng.gen_range(1..500),
        "capabilities": {"iotEdge": rng.gen_bool(0.95)},
        "tags": tags,
        "properties": {
            "desired": {
                "telemetryInterval": 30,
                "$metadata": {"$lastUpdated": "2026-11-25T10:00:00Z"},
                "$version": rng.gen_range(1..50)
            },
            "reported": {
                "firmware": format!("{}.{}", rng.gen_range(1..4), rng.gen_range(0..10)),
                "hardware": {"model": MODELS[rng.gen_range(0..MODELS.len())], "ram": 4096},
                "os": {"name": "Ubuntu", "version": "22.04"},
                "battery": rng.gen_range(0..100),
                "telemetryConfig": {"status": "Success", "sendFrequencyInSecs": 300},
                "$metadata": {"$lastUpdated": "2026-11-25T10:00:00Z"},
                "$version": rng.gen_range(1..500)
            }
        }
    })
}

/// 100 varied target conditions drawn from the shapes deployments use.
fn conditions(rng: &mut ChaCha8Rng) -> Vec<String> {
    (0..100)
        .map(|i| {
            let env = ENVIRONMENTS[rng.gen_range(0..ENVIRONMENTS.len())];
            let b = rng.gen_range(1..=40);
            match i % 10 {
                0 => format!("tags.environment='{env}'"),
                1 => format!("tags.environment='{env}' AND tags.location.building='{b}'"),
                2 => format!(
                    "tags.environment='{env}' AND tags.location.building='{b}' AND properties.reported.firmware >= '2.0'"
                ),
                3 => format!("tags.location.building IN ['{b}', '{}', '{}']", b + 1, b + 2),
                4 => format!(
                    "tags.roomtype = '{}' AND NOT deviceId = 'dev-{:05}'",
                    ROOMS[i % ROOMS.len()],
                    rng.gen_range(0..1000)
                ),
                5 => "IS_DEFINED(tags.owner) AND tags.ring < 2".to_string(),
                6 => format!("STARTSWITH(deviceId, 'dev-00{}')", i % 10),
                7 => format!(
                    "properties.reported.hardware.model = '{}' OR tags.location.floor > {}",
                    MODELS[i % MODELS.len()],
                    rng.gen_range(0..10)
                ),
                8 => format!("(tags.environment = '{env}' OR tags.environment = 'test') AND properties.reported.battery >= 20"),
                _ => "*".to_string(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let twins: Vec<Value> = (0..1000).map(|i| twin(&mut rng, i)).collect();
    let texts = conditions(&mut rng);

    // (a) one condition, one twin.
    let one = CompiledCondition::parse(
        "tags.environment='prod' AND tags.location.building='20' AND properties.reported.firmware >= '2.0'",
    )
    .expect("bench condition parses");
    let mut t = twins[0].clone();
    t["tags"]["environment"] = json!("prod");
    t["tags"]["location"]["building"] = json!("20");
    t["properties"]["reported"]["firmware"] = json!("2.3");
    assert!(one.matches(&t));
    let mut g = c.benchmark_group("single");
    g.throughput(Throughput::Elements(1));
    g.bench_function("compiled_3_clauses_match", |b| b.iter(|| black_box(&one).matches(black_box(&t))));
    g.finish();

    // (b) 100 conditions × 1,000 twins through one ConditionSet.
    let mut set = ConditionSet::new();
    let compiled: Vec<CompiledCondition> = texts
        .iter()
        .map(|text| {
            let cond = parse_condition(text).expect("bench conditions parse");
            set.add(&cond);
            CompiledCondition::new(&cond)
        })
        .collect();
    let evaluations = (twins.len() * set.len()) as u64;
    let mut g = c.benchmark_group("fleet");
    g.throughput(Throughput::Elements(evaluations));
    g.sample_size(20);
    let mut scratch = Scratch::new();
    g.bench_function("condition_set_100x1000", |b| {
        b.iter(|| {
            let mut matched = 0usize;
            for twin in &twins {
                let r = set.resolve(twin, &mut scratch);
                for id in 0..set.len() {
                    matched += usize::from(r.matches(id));
                }
            }
            black_box(matched)
        })
    });
    // (c) the same work with independent compiled conditions.
    g.bench_function("compiled_each_100x1000", |b| {
        b.iter(|| {
            let mut matched = 0usize;
            for twin in &twins {
                for cond in &compiled {
                    matched += usize::from(cond.matches(twin));
                }
            }
            black_box(matched)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
