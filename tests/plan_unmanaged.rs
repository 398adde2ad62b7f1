//! Issue #16 item 6: for devices whose modules the deployments cannot tell (unmanaged today
//! and getting a standard deployment, or getting one that declares no modules), plan reads
//! their `$edgeAgent` twins, and only theirs, and lists what they run today and what the
//! change does to each module, in text, markdown and JSON; over REST one packed query per
//! 8192 characters of device ids, through the same pacer as every query.

mod common;

use std::path::Path;

use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Fleet, HubRead, SnapshotHub};
use fleetform::manifest::{MapEnv, SecretMode, render_all};
use serde_json::{Value, json};

const KIOSK: &str = r#"deployment "kiosk" {
    priority 10
    target "tags.role='kiosk'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
    module "web" image="nginx:1.25"
    module "api" image="acme/api:2"
}
"#;

/// A standard deployment without modules: it removes every module from its devices.
const WIPE: &str = r#"deployment "wipe" {
    priority 10
    target "tags.role='retired'"
    runtime {
        edge-agent image="mcr.microsoft.com/azureiotedge-agent:1.5"
        edge-hub image="mcr.microsoft.com/azureiotedge-hub:1.5"
    }
}
"#;

fn device(id: &str, role: &str, edge: bool) -> Value {
    json!({"deviceId": id, "capabilities": {"iotEdge": edge}, "tags": {"role": role}, "properties": {"reported": {}}})
}

/// An `$edgeAgent` twin reporting `modules` (name, image) running; none reports no map.
fn agent(id: &str, modules: Option<&[(&str, &str)]>) -> Value {
    let mut reported = json!({"lastDesiredStatus": {"code": 200}});
    if let Some(modules) = modules {
        let map: serde_json::Map<String, Value> = modules
            .iter()
            .map(|(name, image)| (name.to_string(), json!({"settings": {"image": image}, "runtimeStatus": "running"})))
            .collect();
        reported["modules"] = Value::Object(map);
    }
    json!({"deviceId": id, "moduleId": "$edgeAgent", "properties": {"desired": {}, "reported": reported}})
}

fn write_lines(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A hub without deployments: kiosks running modules no deployment declared (two with an
/// old web and a simulator, one already as declared, one without an agent twin, one whose
/// agent reports no modules map), a retired device, a device of another role (which stays
/// unmanaged: its agent must not be read) and a non-Edge kiosk.
fn fleet() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (hub, deployments) = (dir.path().join("hub"), dir.path().join("deployments"));
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::create_dir_all(&deployments).unwrap();
    std::fs::write(deployments.join("kiosk.kdl"), KIOSK).unwrap();
    std::fs::write(deployments.join("wipe.kdl"), WIPE).unwrap();
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    let old = [("sim", "acme/sim:1.0"), ("web", "nginx:1.24")];
    let devices = [
        device("k1", "kiosk", true),
        device("k2", "kiosk", true),
        device("k3", "kiosk", true),
        device("k4", "kiosk", true),
        device("k5", "kiosk", true),
        device("r1", "retired", true),
        device("o1", "other", true),
        device("leaf", "kiosk", false),
    ];
    let modules = [
        agent("k1", Some(&old)),
        agent("k2", Some(&old)),
        agent("k3", Some(&[("web", "nginx:1.25"), ("api", "acme/api:2")])),
        agent("k5", None),
        agent("r1", Some(&[("legacy", "acme/legacy:3")])),
        agent("o1", Some(&[("x", "x:1")])),
    ];
    write_lines(&hub.join("devices.jsonl"), &devices);
    write_lines(&hub.join("modules.jsonl"), &modules);
    (dir, hub, deployments)
}

fn plan_cli(deployments: &Path, hub: &[&str], format: &str) -> (String, String) {
    let out = common::cli().arg("plan").arg(deployments).args(hub).args(["--format", format]).output().unwrap();
    assert!(out.status.success(), "{}", common::transcript(&out));
    (common::stdout(&out), common::stderr(&out))
}

#[test]
fn unmanaged_devices_show_what_their_agents_run_in_text_markdown_and_json() {
    let (_dir, hub, deployments) = fleet();
    let hub_arg = hub.to_str().unwrap();
    let (text, _) = plan_cli(&deployments, &["--hub", hub_arg], "text");
    insta::assert_snapshot!(text.replace(hub_arg, "[hub]"));

    let (markdown, _) = plan_cli(&deployments, &["--hub", hub_arg], "markdown");
    assert!(markdown.contains("- running today, as their $edgeAgent reports:\n"), "{markdown}");
    assert!(
        markdown.contains(
            "  - 2 devices (e.g. k1, k2): - sim (acme/sim:1.0) removed, ~ web (nginx:1.24 → nginx:1.25) replaced\n"
        ),
        "{markdown}"
    );
    assert!(markdown.contains("  - 1 device: - legacy (acme/legacy:3) removed\n"), "{markdown}");

    let (json, _) = plan_cli(&deployments, &["--hub", hub_arg], "json");
    let json: Value = serde_json::from_str(&json).unwrap();
    let cohorts = json["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 2, "{json:#}");
    // The kiosks, grouped by what they run, largest first, the unknown after the known.
    let kiosks = &cohorts[0]["running_before"];
    let removed = |m: &str, image: &str| json!({"module": m, "image": image, "fate": "removed"});
    assert_eq!(
        kiosks,
        &json!([
            {"count": 2, "samples": ["k1", "k2"], "modules": [
                removed("sim", "acme/sim:1.0"),
                {"module": "web", "image": "nginx:1.24", "fate": "replaced", "image_after": "nginx:1.25"},
            ]},
            {"count": 2, "samples": ["k4", "k5"], "modules": null},
            {"count": 1, "samples": ["k3"], "modules": [
                {"module": "api", "image": "acme/api:2", "fate": "kept"},
                {"module": "web", "image": "nginx:1.25", "fate": "kept"},
            ]},
        ])
    );
    // The deployment without modules removes what the retired device runs.
    assert_eq!(cohorts[1]["samples"], json!(["r1"]));
    assert_eq!(
        cohorts[1]["running_before"],
        json!([{"count": 1, "samples": ["r1"], "modules": [removed("legacy", "acme/legacy:3")]}])
    );
    // o1 stays unmanaged: no cohort, nothing read for it.
    assert!(!json.to_string().contains("\"x:1\""), "{json:#}");
}

fn rest(server: &common::EmulatorProcess) -> RestHub {
    let conn: ConnectionString = server.connection.parse().unwrap();
    RestHub::new(conn, RestOptions { endpoint: Some(server.url.clone()), progress: false, ..Default::default() })
        .unwrap()
}

fn plan_json(deployments: &Path, hub: &dyn HubRead) -> Value {
    let ws = fleetform::spec::Workspace::load(&[deployments.to_path_buf()]).unwrap();
    let env = MapEnv(common::DEMO_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let declared = render_all(&ws.deployments, &env, SecretMode::Reveal).unwrap();
    let plan =
        fleetform::plan::plan(declared, hub.configurations().unwrap(), &Fleet(hub), &Default::default()).unwrap();
    let mut json = fleetform::render::json::plan_json(&plan);
    json["hub"] = Value::Null;
    json
}

/// Over REST the agents' reports come from one projected `devices.modules` query: the
/// same plan as from the snapshot's module twins, for one query more than the plan that
/// needs none.
#[test]
fn over_rest_the_reports_cost_one_query_and_equal_the_snapshot_plan() {
    let (_dir, hub, deployments) = fleet();
    let state = tempfile::tempdir().unwrap();
    common::copy_dir(&hub, state.path());
    let server = common::EmulatorProcess::start(state.path(), &[]);
    let over_rest = rest(&server);
    let online = plan_json(&deployments, &over_rest);
    assert_eq!(online, plan_json(&deployments, &SnapshotHub::open(&hub).unwrap()));
    assert!(online["cohorts"][0]["running_before"].is_array(), "{online:#}");
    // The device COUNT, one page of the 7 IoT Edge devices, one `$edgeAgent` query.
    assert_eq!(over_rest.stats().queries, 3, "{:?}", over_rest.stats());
}

/// 1,200 unmanaged devices about to be managed: their ids need two queries of at most
/// 8192 characters (each `'u-0000'` takes 8, and 2 more to separate it), and the emulator
/// refuses longer ones as the hub does.
#[test]
fn many_devices_are_read_in_as_few_queries_as_the_query_limit_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, deployments) = (dir.path().join("hub"), dir.path().join("deployments"));
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::create_dir_all(&deployments).unwrap();
    std::fs::write(deployments.join("kiosk.kdl"), KIOSK).unwrap();
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    let n = 1200;
    let ids: Vec<String> = (0..n).map(|i| format!("u-{i:04}")).collect();
    let devices: Vec<Value> = ids.iter().map(|id| device(id, "kiosk", true)).collect();
    let modules: Vec<Value> = ids.iter().map(|id| agent(id, Some(&[("sim", "acme/sim:1.0")]))).collect();
    write_lines(&hub.join("devices.jsonl"), &devices);
    write_lines(&hub.join("modules.jsonl"), &modules);
    let server = common::EmulatorProcess::start(&hub, &[]);
    let over_rest = rest(&server);
    let json = plan_json(&deployments, &over_rest);
    assert_eq!(json["cohorts"][0]["running_before"][0]["count"], n, "{json:#}");

    let head = "SELECT deviceId, properties.reported.modules AS m FROM devices.modules WHERE moduleId = '$edgeAgent' AND deviceId IN [";
    let per_query = (8192 - head.len() - "]".len() + 2) / 10;
    assert!(per_query < n, "{per_query}");
    let agent_queries = n.div_ceil(per_query) as u64;
    assert_eq!(agent_queries, 2);
    // The COUNT, two pages of devices (1,000 a page), then the agents' queries.
    assert_eq!(over_rest.stats().queries, 1 + 2 + agent_queries, "{:?}", over_rest.stats());
}
