//! End to end: the real `fleetform hub serve` binary on 127.0.0.1, driven by the REST backend
//! (`RestHub`) and by the real `fleetform query` / `fleetform snapshot` commands.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetform::hub::connection::ConnectionString;
use fleetform::hub::rest::{RestHub, RestOptions};
use fleetform::hub::{Configuration, HubError, HubRead, HubWrite, Projection};
use fleetform::model::{Etag, IfMatch, Priority};
use serde_json::{Value, json};

/// A running emulator; killed (and reaped) on drop, so a failing test leaves no process.
struct Server {
    process: common::EmulatorProcess,
    url: String,
    connection: String,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

/// A temp copy of the example hub: its devices, module twins and deployments.
fn campus_copy() -> tempfile::TempDir {
    common::campus_hub_copy()
}

/// The example hub's fleet with no deployments, for tests that create their own.
fn campus_fleet() -> tempfile::TempDir {
    let dir = campus_copy();
    std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    dir
}

fn start(dir: tempfile::TempDir, flags: &[&str]) -> Server {
    let state = dir.path().to_path_buf();
    let process = common::EmulatorProcess::start(&state, flags);
    Server { url: process.url.clone(), connection: process.connection.clone(), process, _dir: dir, state }
}

impl Server {
    fn hub(&self) -> RestHub {
        self.hub_with(RestOptions::default())
    }

    fn hub_with(&self, options: RestOptions) -> RestHub {
        let conn: ConnectionString = self.connection.parse().unwrap();
        RestHub::new(conn, RestOptions { endpoint: Some(self.url.clone()), progress: false, ..options }).unwrap()
    }

    fn stats(&self) -> Value {
        let resp = reqwest::blocking::get(format!("{}/emulator/stats", self.url)).unwrap();
        resp.json().unwrap()
    }

    fn fleetform(&self, args: &[&str]) -> std::process::Output {
        let out =
            common::sealed().args(args).args(["--hub", &self.connection, "--endpoint", &self.url]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

fn fleetform_offline(args: &[&str], hub: &Path) -> std::process::Output {
    let out = common::sealed().args(args).arg("--hub").arg(hub).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn standard(id: &str, priority: i64, target: &str) -> Configuration {
    serde_json::from_value(json!({
        "id": id,
        "schemaVersion": "1.0",
        "labels": {"owner": "tests"},
        "priority": priority,
        "targetCondition": target,
        "content": {"modulesContent": {
            "$edgeAgent": {"properties.desired": {
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                                "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}
                },
                "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                       "settings": {"image": "contoso.azurecr.io/sensor:1.0", "createOptions": "{}"}}}
            }},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.2", "routes": {"up": "FROM /messages/* INTO $upstream"},
                                                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
            "sensor": {"properties.desired": {"interval": 30}}
        }},
        "metrics": {"queries": {"sensorRunning": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND IS_DEFINED(properties.desired.modules.sensor)"}}
    }))
    .unwrap()
}

fn layered(id: &str, priority: i64, target: &str) -> Configuration {
    serde_json::from_value(json!({
        "id": id,
        "priority": priority,
        "targetCondition": target,
        "content": {"modulesContent": {
            "$edgeAgent": {"properties.desired.modules.camera": {"type": "docker", "status": "running", "restartPolicy": "always",
                                                                 "settings": {"image": "contoso.azurecr.io/camera:2.0", "createOptions": "{}"}}},
            "$edgeHub": {"properties.desired.routes.camera": "FROM /messages/modules/camera/* INTO $upstream"}
        }}
    }))
    .unwrap()
}

#[test]
fn query_lists_the_same_devices_as_the_snapshot() {
    let server = start(campus_copy(), &[]);
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub");
    for text in [
        "tags.environment='prod'",
        "tags.location.building IN ['20', '21']",
        "*",
        "SELECT deviceId FROM devices WHERE tags.roomtype = 'conference'",
        "SELECT COUNT() AS n FROM devices GROUP BY tags.location.building",
        "SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.lastDesiredStatus.code = 200",
    ] {
        let online = server.fleetform(&["query", text]);
        let offline = fleetform_offline(&["query", text], &original);
        assert!(!online.stdout.is_empty(), "{text}");
        assert_eq!(String::from_utf8_lossy(&online.stdout), String::from_utf8_lossy(&offline.stdout), "{text}");
    }
    let prod = server.fleetform(&["query", "tags.environment='prod'"]);
    assert_eq!(String::from_utf8_lossy(&prod.stdout).lines().count(), 266);

    // The example's deployments are served with metrics; targetedCount agrees with what
    // `fleetform query` finds offline for the same target condition.
    let configs = server.hub().configurations().unwrap();
    assert_eq!(configs.len(), 6);
    for c in &configs {
        let offline = fleetform_offline(&["query", &c.target_condition], &original);
        let expected = String::from_utf8_lossy(&offline.stdout).lines().count() as i64;
        let results = &c.system_metrics.as_ref().unwrap().results;
        assert_eq!(results["targetedCount"], expected, "{}", c.id);
        assert!(results["appliedCount"] <= expected, "{}", c.id);
    }
    let base = configs.iter().find(|c| c.id.starts_with("campus-base")).unwrap();
    assert_eq!(base.system_metrics.as_ref().unwrap().results["targetedCount"], 266);

    // The connection string from IOTHUB_CONNECTION_STRING, and from a named variable.
    for (hub_arg, var) in [(None, "IOTHUB_CONNECTION_STRING"), (Some("env:MY_HUB"), "MY_HUB")] {
        let mut cmd = common::sealed();
        cmd.args(["query", "tags.environment='prod'", "--endpoint", &server.url]).env(var, &server.connection);
        if let Some(h) = hub_arg {
            cmd.args(["--hub", h]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{var}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, prod.stdout, "{var}");
    }
}

#[test]
fn snapshot_of_the_emulator_reads_like_the_original() {
    let server = start(campus_fleet(), &[]);
    let hub = server.hub();
    hub.create_configuration(&standard("base", 10, "tags.environment='prod'")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let written = server.fleetform(&["snapshot", "--out", out.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&written.stderr).contains("1 configuration, 299 device twins"));
    for name in ["configurations.json", "devices.jsonl", "modules.jsonl"] {
        assert!(out.path().join(name).is_file(), "{name}");
    }
    for text in ["tags.location.building = '43'", "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeHub'"] {
        let online = server.fleetform(&["query", text]);
        let offline = fleetform_offline(&["query", text], out.path());
        assert_eq!(online.stdout, offline.stdout, "{text}");
    }
    // The deployment created $edgeHub and sensor module twins on every targeted device.
    let edge_hubs =
        fleetform_offline(&["query", "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeHub'"], out.path());
    assert_eq!(String::from_utf8_lossy(&edge_hubs.stdout).lines().count(), 266);
    let configs: Vec<Configuration> =
        serde_json::from_slice(&std::fs::read(out.path().join("configurations.json")).unwrap()).unwrap();
    assert_eq!(configs[0].system_metrics.as_ref().unwrap().results["targetedCount"], 266);
}

#[test]
fn etags_ids_and_content_are_guarded() {
    let server = start(campus_fleet(), &[]);
    let hub = server.hub();
    let config = standard("guarded", 10, "tags.location.building='12'");
    let created = hub.create_configuration(&config).unwrap();
    let etag = created.etag.clone().unwrap();
    assert!(!Etag::is_quoted(etag.as_str()), "the hub sends etags unquoted in the body: {etag}");
    assert!(created.created_time_utc.is_some() && created.last_updated_time_utc.is_some());

    assert!(matches!(hub.create_configuration(&config), Err(HubError::AlreadyExists { id }) if id == "guarded"));

    let mut changed = created.clone();
    changed.priority = Priority(11);
    changed.labels.insert("stage".into(), "two".into());
    // The backend quotes the bare etag; the emulator would treat an unquoted one as a create.
    let updated = hub.update_configuration(&changed, &etag).unwrap();
    assert_eq!(updated.priority, Priority(11));
    assert_ne!(updated.etag, created.etag);
    assert!(updated.created_time_utc == created.created_time_utc);
    assert!(matches!(hub.update_configuration(&changed, &etag), Err(HubError::PreconditionFailed { .. })));

    let mut new_content = updated.clone();
    new_content.content = layered("x", 1, "*").content;
    let immutable = hub.update_configuration(&new_content, updated.etag.as_ref().unwrap()).unwrap_err();
    assert!(matches!(&immutable, HubError::Http { status: 400, code, .. } if code == "ArgumentInvalid"), "{immutable}");
    assert!(immutable.to_string().contains("Content cannot be updated"), "{immutable}");

    assert!(matches!(
        hub.delete_configuration("guarded", &IfMatch::Etag(etag.clone())),
        Err(HubError::PreconditionFailed { .. })
    ));
    assert!(matches!(hub.configuration("missing"), Err(HubError::NotFound { id }) if id == "missing"));
    assert!(matches!(hub.delete_configuration("missing", &IfMatch::Any), Err(HubError::NotFound { .. })));
    let mut ghost = standard("ghost", 1, "*");
    ghost.etag = Some("AAAA".parse().unwrap());
    assert!(matches!(hub.update_configuration(&ghost, &"AAAA".parse().unwrap()), Err(HubError::NotFound { .. })));
    hub.delete_configuration("guarded", &IfMatch::Etag(updated.etag.clone().unwrap())).unwrap();
    assert!(hub.configurations().unwrap().is_empty());

    let bad_query = standard("bad", 1, "tags.x = \"double\"");
    assert!(matches!(hub.create_configuration(&bad_query), Err(HubError::Http { status: 400, .. })));
    let bad_id = standard("Upper", 1, "*");
    assert!(matches!(hub.create_configuration(&bad_id), Err(HubError::Http { status: 400, .. })));

    // Validation without creating anything.
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("ok".to_string(), "SELECT deviceId FROM devices".to_string());
    metrics.insert("broken".to_string(), "SELECT FROM".to_string());
    let tested = hub.test_queries("tags.a = 'b' AND", &metrics).unwrap();
    assert!(!tested.target_condition_error.is_empty());
    assert_eq!(tested.custom_metric_query_errors["ok"], "");
    assert!(!tested.custom_metric_query_errors["broken"].is_empty());

    // Twins by id.
    let twin = hub.device_twin("b20-f1-off-000001").unwrap();
    assert_eq!(twin["tags"]["location"]["building"], "20");
    let agent = hub.module_twin("b20-f1-off-000001", "$edgeAgent").unwrap();
    assert_eq!(agent["moduleId"], "$edgeAgent");
    let missing = hub.device_twin("nope").unwrap_err();
    assert!(matches!(&missing, HubError::Http { status: 404, code, .. } if code == "DeviceNotFound"), "{missing}");
    let missing = hub.module_twin("b20-f1-off-000001", "nope").unwrap_err();
    assert!(matches!(&missing, HubError::Http { status: 404, code, .. } if code == "ModuleNotFound"), "{missing}");
}

#[test]
fn wrong_keys_and_api_versions_are_refused() {
    let server = start(campus_fleet(), &[]);
    let conn: ConnectionString = server.connection.parse().unwrap();
    let wrong = format!("HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey=d3Jvbmcta2V5", conn.host_name);
    let hub = RestHub::new(
        wrong.parse().unwrap(),
        RestOptions { endpoint: Some(server.url.clone()), progress: false, ..RestOptions::default() },
    )
    .unwrap();
    let err = hub.configurations().unwrap_err();
    assert!(matches!(&err, HubError::Http { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("the key is wrong or the policy lacks registry read/write"), "{err}");
    assert!(!err.to_string().contains("d3Jvbmcta2V5"));

    let client = reqwest::blocking::Client::new();
    let token = fleetform::hub::connection::SasToken::new(&conn, 4_000_000_000);
    // The versions the az CLI's IoT extension sent over its history, the previews between, and
    // ones the hub does not have.
    for (query, status) in [
        ("", 400),
        ("?api-version=1999-01-01", 400),
        ("?api-version=2021-04-12-preview", 400),
        ("?api-version=2019-10-01", 200),
        ("?api-version=2020-05-31-preview", 200),
        ("?api-version=2020-06-30-preview", 200),
        ("?api-version=2020-09-30", 200),
        ("?api-version=2021-04-12", 200),
        ("?api-version=2024-03-31", 200),
    ] {
        let resp = client
            .get(format!("{}/configurations{query}", server.url))
            .header("Authorization", token.header_value())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{query}");
        if status == 400 {
            assert_eq!(resp.headers()["iothub-errorcode"], "InvalidProtocolVersion");
            let body: Value = resp.json().unwrap();
            assert!(body["Message"].as_str().unwrap().starts_with("ErrorCode:InvalidProtocolVersion;"));
            assert!(body["ExceptionMessage"].as_str().unwrap().starts_with("Tracking ID:"));
        }
    }
    let expired = fleetform::hub::connection::SasToken::new(&conn, 1_000_000_000);
    let resp = client
        .get(format!("{}/configurations?api-version=2021-04-12", server.url))
        .header("Authorization", expired.header_value())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(server.stats()["unauthorized"], 2);
}

#[test]
fn queries_page_with_continuation_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let status = common::sealed()
        .args(["hub", "generate", "--devices", "100", "--seed", "3", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let server = start(dir, &[]);
    let hub = server.hub_with(RestOptions { page_size: 7, ..RestOptions::default() });
    let mut pages = Vec::new();
    let rows = hub
        .query_pages("SELECT * FROM devices", &mut |page| {
            pages.push(page.len());
            Ok(())
        })
        .unwrap();
    assert_eq!(rows, 100);
    assert_eq!(pages.len(), 15);
    assert!(pages[..14].iter().all(|&n| n == 7) && pages[14] == 2, "{pages:?}");
    let ids = std::sync::Mutex::new(std::collections::BTreeSet::new());
    hub.device_batches(Projection::Full, &|batch| {
        ids.lock().unwrap().extend(batch.into_iter().map(|t| t.device_id().to_string()));
        Ok(())
    })
    .unwrap();
    assert_eq!(ids.into_inner().unwrap().len(), 100);
}

#[test]
fn retries_ride_out_injected_throttling_and_outages() {
    let server = start(campus_fleet(), &["--inject-429", "0.3", "--inject-503", "0.2", "--seed", "7"]);
    let hub = server.hub_with(RestOptions {
        page_size: 50,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..RestOptions::default()
    });
    for round in 0..3 {
        let id = format!("retry-{round}");
        hub.create_configuration(&standard(&id, round, "tags.location.building='40'")).unwrap();
        let count = std::sync::atomic::AtomicUsize::new(0);
        hub.device_batches(Projection::Targeting, &|b| {
            count.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(count.into_inner(), 299);
    }
    assert_eq!(hub.configurations().unwrap().len(), 3);
    let stats = server.stats();
    assert!(stats["injected429"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["injected503"].as_u64().unwrap() > 0, "{stats}");

    // With a deadline too short to wait out the faults, the error says what happened.
    let impatient = server.hub_with(RestOptions {
        deadline: Duration::from_millis(1),
        base_backoff: Duration::from_millis(100),
        ..RestOptions::default()
    });
    let mut saw_give_up = false;
    for _ in 0..40 {
        if let Err(e) = impatient.configurations() {
            assert!(matches!(&e, HubError::Http { status: 429 | 503, .. }), "{e}");
            saw_give_up = true;
            break;
        }
    }
    assert!(saw_give_up);
}

#[test]
fn deployments_are_assigned_merged_and_reported() {
    let server = start(campus_fleet(), &["--simulate-success-after", "0.3", "--simulate-failure-share", "0.2"]);
    let hub = server.hub();
    hub.create_configuration(&standard("base", 10, "tags.environment='prod'")).unwrap();
    hub.create_configuration(&layered("camera", 40, "tags.roomtype='conference'")).unwrap();

    // A prod conference-room device: base applied, camera layered on top.
    let device = "b20-f1-conf-000006";
    let twin = hub.device_twin(device).unwrap();
    assert_eq!(twin["tags"]["roomtype"], "conference", "{twin}");
    assert_eq!(twin["configurations"]["base"]["status"], "Applied");
    assert_eq!(twin["configurations"]["camera"]["status"], "Applied");
    let agent = hub.module_twin(device, "$edgeAgent").unwrap();
    let desired = &agent["properties"]["desired"];
    assert!(desired["modules"]["sensor"].is_object() && desired["modules"]["camera"].is_object(), "{desired}");
    assert!(desired["$version"].as_i64().unwrap() >= 2);
    // As on a hub, each module and system module names the deployment that supplied it.
    assert_eq!(desired["modules"]["sensor"]["configuration"], json!({"id": "base"}));
    assert_eq!(desired["modules"]["camera"]["configuration"], json!({"id": "camera"}));
    assert_eq!(desired["systemModules"]["edgeAgent"]["configuration"], json!({"id": "base"}));
    assert_eq!(desired["systemModules"]["edgeHub"]["configuration"], json!({"id": "base"}));
    assert_eq!(desired["modules"]["sensor"]["settings"]["image"], "contoso.azurecr.io/sensor:1.0");
    let edge_hub = hub.module_twin(device, "$edgeHub").unwrap();
    assert!(edge_hub["properties"]["desired"]["routes"]["camera"].is_string());
    assert_eq!(hub.module_twin(device, "sensor").unwrap()["properties"]["desired"]["interval"], 30);

    let base = hub.configuration("base").unwrap();
    let sys = &base.system_metrics.as_ref().unwrap().results;
    assert_eq!(sys["targetedCount"], 266);
    assert_eq!(sys["appliedCount"], 266);
    assert_eq!(base.metrics.as_ref().unwrap().results["sensorRunning"], 266);

    // Devices report after 0.3 s: a seeded fifth of them fail.
    std::thread::sleep(Duration::from_millis(600));
    let base = hub.configuration("base").unwrap();
    let sys = &base.system_metrics.as_ref().unwrap().results;
    let (ok, failed) = (sys["reportedSuccessfulCount"], sys["reportedFailedCount"]);
    assert_eq!(ok + failed, 266, "{sys:?}");
    assert!((25..=80).contains(&failed), "{sys:?}");

    // Lowering the layered deployment below the base makes it Targeted, not Applied.
    let camera = hub.configuration("camera").unwrap();
    let mut lower = camera.clone();
    lower.priority = Priority(5);
    hub.update_configuration(&lower, camera.etag.as_ref().unwrap()).unwrap();
    let twin = hub.device_twin(device).unwrap();
    assert_eq!(twin["configurations"]["camera"]["status"], "Targeted");
    let agent = hub.module_twin(device, "$edgeAgent").unwrap();
    assert!(agent["properties"]["desired"]["modules"]["camera"].is_null());

    // The emulator's state is a snapshot directory: plan and query read it offline.
    let configs: Vec<Configuration> =
        serde_json::from_slice(&std::fs::read(server.state.join("configurations.json")).unwrap()).unwrap();
    assert_eq!(configs.len(), 2);
    let offline = fleetform_offline(
        &["query", "SELECT deviceId FROM devices.modules WHERE configurations.[[camera]].status = 'Targeted'"],
        &server.state,
    );
    assert_eq!(String::from_utf8_lossy(&offline.stdout).lines().count(), 59);
}

#[test]
fn state_survives_kill_9() {
    let dir = campus_copy();
    let state = dir.path().to_path_buf();
    let mut server = start(dir, &[]);
    // Short deadline: once the server is gone the writer must stop retrying quickly.
    let hub = server.hub_with(RestOptions { deadline: Duration::from_secs(1), ..RestOptions::default() });
    // Create and delete until the server dies, so the kill lands in the middle of writes.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = done.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..10_000 {
            let id = format!("k{i}");
            let Ok(created) = hub.create_configuration(&standard(&id, 1, "tags.location.building='21'")) else {
                break;
            };
            if i % 2 == 0
                && hub.delete_configuration(&id, &created.etag.clone().map_or(IfMatch::Any, IfMatch::Etag)).is_err()
            {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Kill once a few changes went through (however slow the machine), mid-stream.
    let waited = std::time::Instant::now();
    while done.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(waited.elapsed() < Duration::from_secs(60), "no configuration change within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(37));
    server.process.kill(); // SIGKILL
    writer.join().unwrap();
    let snap = fleetform::hub::Snapshot::open(&state).unwrap();
    let configs = snap.configurations().unwrap();
    assert_eq!(snap.devices().unwrap().count(), 299);
    assert!(snap.module_twins().unwrap().all(|t| t.is_ok()));
    // And it starts again from there, re-deriving twins from the configurations.
    let dir = server._dir.path().to_path_buf();
    assert_eq!(dir, state);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&state).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let again = start(copy, &[]);
    assert_eq!(again.hub().configurations().unwrap().len(), configs.len());
}

#[test]
fn plan_is_the_same_against_the_emulator_as_against_the_snapshot() {
    let server = start(campus_copy(), &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = |hub: &[&str]| {
        let out = common::sealed()
            .current_dir(root)
            .args(["plan", "examples/campus/deployments", "--format", "json"])
            .args(hub)
            .envs(common::DEMO_ENV.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let online = plan(&["--hub", &server.connection, "--endpoint", &server.url]);
    let offline = plan(&["--hub", "examples/campus/hub"]);
    // Only the hub's description differs.
    let host = server.url.trim_start_matches("http://");
    let online = online.replace(&format!("hub {host} at {}", server.url), "snapshot examples/campus/hub");
    assert!(online.len() > 1000);
    assert_eq!(online, offline);
}

/// Issue #12 item 1: a device that stops matching every deployment keeps what it was
/// last given. Microsoft's docs (articles/iot-edge/module-deployment-monitoring.md, "If a
/// device doesn't meet the target condition of any deployment, the device isn't updated
/// and keeps running its current modules"; how-to-deploy-at-scale.md, deleting a
/// deployment) say the hub leaves such a device alone.
#[test]
fn devices_that_match_no_deployment_keep_their_desired_properties() {
    let server = start(campus_fleet(), &["--simulate-success-after", "0.1"]);
    let hub = server.hub();
    let created = hub.create_configuration(&standard("base", 10, "tags.environment='prod'")).unwrap();
    let device = "b20-f1-conf-000006";
    std::thread::sleep(Duration::from_millis(400));
    let before = hub.module_twin(device, "$edgeAgent").unwrap();
    // Written by hand from the deployment above, not read back from the engine.
    let expected_modules = json!({"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                             "settings": {"image": "contoso.azurecr.io/sensor:1.0", "createOptions": "{}"},
                                             "configuration": {"id": "base"}}});
    assert_eq!(before["properties"]["desired"]["modules"], expected_modules, "{before}");
    assert_eq!(before["properties"]["reported"]["lastDesiredStatus"]["code"], 200, "{before}");
    let sensor_before = hub.module_twin(device, "sensor").unwrap();
    assert_eq!(sensor_before["properties"]["desired"]["interval"], 30);

    // Narrow the target so that this device matches nothing.
    let mut narrowed = created.clone();
    narrowed.target_condition = format!("tags.environment='prod' AND deviceId != '{device}'");
    let narrowed = hub.update_configuration(&narrowed, created.etag.as_ref().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let twin = hub.device_twin(device).unwrap();
    assert!(twin["configurations"].get("base").is_none(), "{twin}");
    let after = hub.module_twin(device, "$edgeAgent").unwrap();
    assert_eq!(after["properties"]["desired"], before["properties"]["desired"], "narrowed: {after}");
    assert_eq!(after["properties"]["reported"]["lastDesiredStatus"]["code"], 200, "narrowed: {after}");
    assert_eq!(
        hub.module_twin(device, "sensor").unwrap()["properties"]["desired"],
        sensor_before["properties"]["desired"]
    );

    // Delete the deployment: no device changes at all.
    let mut prod = Vec::new();
    hub.query_pages(
        "SELECT deviceId FROM devices WHERE tags.environment='prod' AND capabilities.iotEdge = true",
        &mut |rows| {
            prod.extend(rows.into_iter().filter_map(|r| r["deviceId"].as_str().map(str::to_string)));
            Ok(())
        },
    )
    .unwrap();
    let neighbour = prod.iter().find(|d| *d != device).expect("another prod edge device").as_str();
    let neighbour_before = hub.module_twin(neighbour, "$edgeAgent").unwrap();
    assert_eq!(neighbour_before["properties"]["desired"]["modules"], expected_modules);
    hub.delete_configuration("base", &IfMatch::Etag(narrowed.etag.clone().unwrap())).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    for (d, was) in [(device, &before), (neighbour, &neighbour_before)] {
        let now = hub.module_twin(d, "$edgeAgent").unwrap();
        assert_eq!(now["properties"]["desired"], was["properties"]["desired"], "deleted: {d}: {now}");
        assert_eq!(now["properties"]["reported"]["lastDesiredStatus"]["code"], 200, "deleted: {d}: {now}");
        assert_eq!(now["configurations"], json!({}), "deleted: {d}: {now}");
    }
    assert_eq!(
        hub.module_twin(neighbour, "$edgeHub").unwrap()["properties"]["desired"]["routes"]["up"],
        "FROM /messages/* INTO $upstream"
    );
}

#[test]
fn a_bad_metrics_interval_or_hold_is_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    for flag in ["--metrics-interval", "--hold-writes"] {
        let out = common::cli()
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(dir.path())
            .args([flag, "five"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}: {}", common::transcript(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("five"), "{flag}: {err}");
        assert!(out.stdout.is_empty(), "{flag}: nothing served: {}", common::transcript(&out));
    }
}
