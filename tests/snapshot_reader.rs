//! The snapshot directory reader and writer, through the public API only.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use fleetform::hub::snapshot::{Snapshot, SnapshotError, SnapshotWriter, TwinFormat};
use fleetform::model::Twin;
use fleetform::model::{Configuration, Priority};
use fleetform_hub_emulator::generate::{GenerateOptions, generate};
use serde_json::{Value, json};

fn twin_json(i: usize) -> String {
    format!(
        r#"{{"deviceId":"d-{i:06}","capabilities":{{"iotEdge":{}}},"tags":{{"environment":"prod","location":{{"building":"{}","floor":{}}}}},"properties":{{"desired":{{}},"reported":{{"firmware":"2.4.1"}}}}}}"#,
        !i.is_multiple_of(10),
        20 + i % 3,
        1 + i % 8
    )
}

fn jsonl(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        writeln!(out, "{}", twin_json(i)).unwrap();
    }
    out
}

fn snapshot_with(file: &str, content: &str) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(file), content).unwrap();
    fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    let snap = Snapshot::open(dir.path()).unwrap();
    (dir, snap)
}

fn serial_ids(snap: &Snapshot) -> Result<Vec<String>, SnapshotError> {
    snap.devices().unwrap().map(|t| t.map(|t| t.device_id().to_string())).collect()
}

fn parallel_ids(snap: &Snapshot, threads: usize) -> Result<BTreeSet<String>, SnapshotError> {
    let parts =
        snap.par_fold_devices(threads, Vec::new, |ids: &mut Vec<String>, t: Twin| ids.push(t.device_id().to_string()))?;
    assert_eq!(parts.len(), threads);
    let total: usize = parts.iter().map(Vec::len).sum();
    let set: BTreeSet<String> = parts.into_iter().flatten().collect();
    assert_eq!(set.len(), total, "each twin folded exactly once");
    Ok(set)
}

#[test]
fn json_and_jsonl_read_the_same_twins() {
    let n = 1200;
    let (_a, lines) = snapshot_with("devices.jsonl", &jsonl(n));
    let array: Vec<Value> = (0..n).map(|i| serde_json::from_str(&twin_json(i)).unwrap()).collect();
    let (_b, pretty) = snapshot_with("devices.json", &serde_json::to_string_pretty(&array).unwrap());
    let from_lines: Vec<Twin> = lines.devices().unwrap().map(Result::unwrap).collect();
    let from_array: Vec<Twin> = pretty.devices().unwrap().map(Result::unwrap).collect();
    assert_eq!(from_lines.len(), n);
    assert_eq!(from_lines, from_array);
    assert_eq!(from_lines[7].device_id(), "d-000007");
    assert_eq!(from_lines[7].value(), &array[7]);
    assert_eq!(from_lines.iter().filter(|t| t.is_edge()).count(), n - n / 10);
    for snap in [&lines, &pretty] {
        for threads in [1, 2, 3] {
            let ids = parallel_ids(snap, threads).unwrap();
            assert_eq!(ids.len(), n);
            assert!(ids.contains("d-001199"));
        }
    }
}

#[test]
fn reads_50k_lines_lazily_before_a_broken_tail() {
    // A reader that collected the file first would fail before yielding anything.
    let n = 50_000;
    let mut text = jsonl(n);
    text.push_str("{\"deviceId\": \"broken\",\n");
    let (_d, snap) = snapshot_with("devices.jsonl", &text);
    let mut reader = snap.devices().unwrap();
    let mut ok = 0;
    let error = loop {
        match reader.next() {
            Some(Ok(_)) => ok += 1,
            Some(Err(e)) => break e,
            None => panic!("the broken last line must be an error"),
        }
    };
    assert_eq!(ok, n);
    assert!(reader.next().is_none(), "the reader stops after an error");
    let message = error.to_string();
    assert!(message.contains(&format!("devices.jsonl:{}:", n + 1)), "{message}");
}

#[test]
fn malformed_line_names_file_line_and_column() {
    let mut text = jsonl(5);
    text.insert_str(text.find("{\"deviceId\":\"d-000002\"").unwrap() + 12, " nope");
    let (dir, snap) = snapshot_with("devices.jsonl", &text);
    let e = serial_ids(&snap).unwrap_err();
    let expected = format!("{}:3:15", dir.path().join("devices.jsonl").display());
    assert!(e.to_string().starts_with("malformed JSON at "), "{e}");
    assert!(e.to_string().contains(&expected), "{e} / {expected}");
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(help.contains(".jsonl"), "{help}");
    // The parallel reader reports the same error.
    assert_eq!(parallel_ids(&snap, 2).unwrap_err().to_string(), e.to_string());
}

#[test]
fn malformed_twin_inside_a_pretty_array_points_into_the_file() {
    let text =
        "[\n  {\n    \"deviceId\": \"a\"\n  },\n  {\n    \"deviceId\": \"b\",\n    \"tags\": {\"x\": tru}\n  }\n]\n";
    let (_d, snap) = snapshot_with("devices.json", text);
    match serial_ids(&snap).unwrap_err() {
        SnapshotError::Syntax { file, line, column, .. } => {
            assert!(file.ends_with("devices.json"));
            assert_eq!(line, 7);
            assert_eq!(column, 22, "at the brace after `tru`");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn twin_without_device_id_is_an_error_not_skipped() {
    let mut lines: Vec<String> = (0..20).map(twin_json).collect();
    lines[16] = r#"{"tags":{"environment":"prod"}}"#.into();
    let (_d, snap) = snapshot_with("devices.jsonl", &(lines.join("\n") + "\n"));
    let e = serial_ids(&snap).unwrap_err();
    assert!(
        e.to_string().starts_with("twin without deviceId at ") && e.to_string().ends_with("devices.jsonl:17"),
        "{e}"
    );
    assert_eq!(parallel_ids(&snap, 2).unwrap_err().to_string(), e.to_string());
}

#[test]
fn duplicate_device_ids_are_reported_with_both_lines() {
    let mut lines: Vec<String> = (0..30_000).map(twin_json).collect();
    lines[25_000] = twin_json(1234);
    lines[28_000] = twin_json(99);
    let (_d, snap) = snapshot_with("devices.jsonl", &(lines.join("\n") + "\n"));
    let e = serial_ids(&snap).unwrap_err();
    match &e {
        SnapshotError::Duplicate { key, line, first_line, .. } => {
            assert_eq!(key, "d-001234");
            assert_eq!((*first_line, *line), (1235, 25_001));
        }
        other => panic!("{other:?}"),
    }
    for threads in [2, 3] {
        assert_eq!(parallel_ids(&snap, threads).unwrap_err().to_string(), e.to_string());
    }
}

#[test]
fn parallel_reader_reports_the_first_of_several_errors() {
    let mut lines: Vec<String> = (0..40_000).map(twin_json).collect();
    lines[39_000] = "{ not json".into();
    lines[31_000] = r#"{"noId": 1}"#.into();
    lines[35_000] = "[1, 2]".into();
    let (_d, snap) = snapshot_with("devices.jsonl", &(lines.join("\n") + "\n"));
    let serial = serial_ids(&snap).unwrap_err();
    assert!(serial.to_string().ends_with("devices.jsonl:31001"), "{serial}");
    for threads in [1, 2, 4] {
        assert_eq!(parallel_ids(&snap, threads).unwrap_err().to_string(), serial.to_string());
    }
}

#[test]
fn writer_is_atomic_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap");
    let writer = SnapshotWriter::create(&out).unwrap();
    let configs = vec![Configuration {
        id: "campus-base-3f9a1c2e".into(),
        priority: Priority(10),
        target_condition: "tags.environment='prod'".into(),
        ..Configuration::default()
    }];
    writer.write_configurations(&configs).unwrap();
    let twins: Vec<Value> = (0..100).map(|i| json!({"deviceId": format!("d{i}")})).collect();
    writer.write_devices(TwinFormat::JsonLines, &twins).unwrap();
    writer
        .write_module_twins(
            TwinFormat::JsonLines,
            [json!({"deviceId": "d1", "moduleId": "$edgeAgent", "configurations": {}})],
        )
        .unwrap();
    // Rewriting (what apply does) replaces the content in place.
    let mut updated = configs.clone();
    updated[0].priority = Priority(11);
    writer.write_configurations(&updated).unwrap();

    let mut names: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["configurations.json", "devices.jsonl", "modules.jsonl"]);
    let snap = Snapshot::open(&out).unwrap();
    assert_eq!(snap.configurations().unwrap(), updated);
    assert_eq!(snap.devices().unwrap().count(), 100);
    let module = snap.module_twins().unwrap().next().unwrap().unwrap();
    assert_eq!((module.device_id(), module.module_id()), ("d1", "$edgeAgent"));
}

#[test]
fn generated_snapshot_reads_back_serially_and_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let summary =
        generate(&GenerateOptions { devices: 20_000, seed: 42, ..GenerateOptions::default() }, dir.path()).unwrap();
    assert_eq!(summary.devices, 20_000);
    let snap = Snapshot::open(dir.path()).unwrap();
    let mut edge = 0;
    for twin in snap.devices().unwrap() {
        edge += usize::from(twin.unwrap().is_edge());
    }
    assert_eq!(edge, summary.edge_devices);
    let counts = snap.par_fold_devices(2, || 0usize, |n, _twin| *n += 1).unwrap();
    assert_eq!(counts.iter().sum::<usize>(), 20_000);
    let modules = snap.par_fold_module_twins(2, || 0usize, |n, _twin| *n += 1).unwrap();
    assert_eq!(modules.iter().sum::<usize>(), summary.edge_devices);
}

fn text<'a>(twin: &'a Twin, path: &str) -> Option<&'a str> {
    twin.get_path(path).and_then(Value::as_str)
}

/// The counts `examples/campus/hub/README.md` gives, checked against the data with the
/// example deployments' target conditions written out by hand.
#[test]
fn campus_example_matches_its_readme() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub");
    let snap = Snapshot::open(&dir).unwrap();
    // The hub's configurations come from examples/campus/hub-state (tests/example_hub.rs).
    assert_eq!(snap.configurations().unwrap().len(), 6);
    let twins: Vec<Twin> = snap.devices().unwrap().map(Result::unwrap).collect();
    let edge: Vec<&Twin> = twins.iter().filter(|t| t.is_edge()).collect();
    let count = |f: &dyn Fn(&Twin) -> bool| edge.iter().filter(|t| f(t)).count();
    let prod = |t: &Twin| text(t, "tags.environment") == Some("prod");
    let building = |t: &Twin| text(t, "tags.location.building").map(str::to_owned);
    let in_building = |t: &Twin, b: &str| building(t).as_deref() == Some(b);

    assert_eq!(twins.len(), 299);
    assert_eq!(edge.len(), 286);
    let base = count(&prod);
    let canary = count(&|t| prod(t) && in_building(t, "20") && t.get_path("tags.location.floor") == Some(&json!(3)));
    let monitoring = count(&|t| in_building(t, "20") || in_building(t, "21"));
    let camera = count(&|t| text(t, "tags.roomtype") == Some("conference"));
    let route = count(&|t| in_building(t, "40"));
    let staging = count(&|t| text(t, "tags.environment") == Some("staging"));
    let layered_without_base = count(&|t| {
        !prod(t)
            && (in_building(t, "20")
                || in_building(t, "21")
                || in_building(t, "40")
                || text(t, "tags.roomtype") == Some("conference"))
    });
    assert_eq!((base, canary, monitoring, camera, route, staging, layered_without_base), (266, 8, 131, 59, 48, 18, 15));

    let plain_b20 = twins.iter().filter(|t| !t.is_edge() && in_building(t, "20")).count();
    assert_eq!(plain_b20, 10);
    assert_eq!(twins.iter().filter(|t| t.tags().is_none()).count(), 1);
    let no_floor: Vec<&str> = twins
        .iter()
        .filter(|t| t.tags().is_some() && t.get_path("tags.location.floor").is_none())
        .map(Twin::device_id)
        .collect();
    assert_eq!(no_floor, ["b20-off-000296"]);

    let agents: Vec<_> = snap.module_twins().unwrap().map(Result::unwrap).collect();
    assert_eq!(agents.len(), edge.len());
    assert!(agents.iter().all(|m| m.module_id() == "$edgeAgent" && m.configurations().is_some_and(|c| c.is_empty())));
}

#[test]
#[should_panic(expected = "fold failed")]
fn a_panic_in_the_fold_reaches_the_caller_instead_of_hanging() {
    // One worker and far more batches than the queue holds: the producer would block
    // forever if the worker's exit went unnoticed.
    let (_d, snap) = snapshot_with("devices.jsonl", &jsonl(60_000));
    let _ = snap.par_fold_devices(
        1,
        || (),
        |_, twin: Twin| {
            if twin.device_id() == "d-000010" {
                panic!("fold failed");
            }
        },
    );
}
