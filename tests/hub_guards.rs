//! Issue #12 ("every guard fails closed"), the hub side: half snapshots, the identity of
//! the hub a saved plan was made against, retried reads, and twins of the wrong shape.
//! The real binary, run as a user would, against snapshot directories and 127.0.0.1.

mod common;

use std::path::Path;

use common::{stderr, stdout, transcript};

use common::fleetform;

/// stderr with miette's line wrapping undone, so that messages can be matched whole.
fn flat_stderr(o: &std::process::Output) -> String {
    stderr(o).split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ")
}

fn query(hub: &Path, text: &str) -> std::process::Output {
    fleetform().args(["query", text, "--hub"]).arg(hub).output().unwrap()
}

/// Item 5: a snapshot directory missing one of its two files is an error naming the file,
/// never an empty hub or an empty fleet; explicitly empty files are fine.
#[test]
fn a_half_snapshot_is_refused_and_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path();
    std::fs::write(hub.join("devices.jsonl"), "{\"deviceId\":\"a\",\"capabilities\":{\"iotEdge\":true}}\n").unwrap();
    let out = query(hub, "SELECT deviceId FROM devices");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = flat_stderr(&out);
    assert!(err.contains("configurations.json is missing"), "{err}");
    assert!(err.contains("it holds devices.jsonl"), "{err}");
    assert!(err.contains("fleetform snapshot --hub"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", transcript(&out));

    std::fs::remove_file(hub.join("devices.jsonl")).unwrap();
    std::fs::write(hub.join("configurations.json"), "[]").unwrap();
    let out = common::with_example_env(&mut fleetform())
        .args(["plan", common::EXAMPLE_DEPLOYMENTS, "--hub"])
        .arg(hub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = flat_stderr(&out);
    assert!(err.contains("devices.json or devices.jsonl is missing"), "{err}");
    assert!(err.contains("it holds configurations.json"), "{err}");

    // Explicitly empty: a hub with no deployments and no devices.
    std::fs::write(hub.join("devices.jsonl"), "").unwrap();
    let out = query(hub, "SELECT deviceId FROM devices");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(stdout(&out), "", "{}", transcript(&out));
}

/// Item 7: a saved plan names its hub by a stable identity: the canonical path of a
/// snapshot directory, whatever spelling `--hub` used; a copy elsewhere is another hub.
#[test]
fn a_saved_plan_knows_its_hub_by_canonical_path() {
    let work = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::copy_dir(&root.join("examples/campus/hub"), &work.path().join("hub"));
    common::copy_dir(&root.join("examples/campus/hub"), &work.path().join("copy"));
    let deployments = root.join(common::EXAMPLE_DEPLOYMENTS);
    let run = |args: &[&str]| {
        common::with_example_env(&mut fleetform())
            .current_dir(work.path())
            .args(args)
            .arg(&deployments)
            .output()
            .unwrap()
    };
    let out = run(&["plan", "--hub", "./hub", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(work.path().join("p.json")).unwrap()).unwrap();
    let canonical = std::fs::canonicalize(work.path().join("hub")).unwrap();
    assert_eq!(saved["hub_id"], format!("snapshot {}", canonical.display()), "{saved}");

    // The copy holds the same deployments, but it is another hub.
    let out = run(&["apply", "p.json", "--auto-approve", "--hub", "copy"]);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(flat_stderr(&out).contains("the plan was made against snapshot"), "{}", transcript(&out));
    let untouched = std::fs::read(work.path().join("copy/configurations.json")).unwrap();
    assert_eq!(untouched, std::fs::read(root.join("examples/campus/hub/configurations.json")).unwrap());

    // `hub` is `./hub`: carried out.
    let out = run(&["apply", "p.json", "--auto-approve", "--hub", "hub"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(stdout(&out).contains("Apply complete"), "{}", transcript(&out));
}

/// What the flaky server does with one connection.
#[derive(Clone, Copy)]
enum Conn {
    /// Drop it with the request unread: Linux answers with a TCP reset.
    Reset,
    /// Answer 200 with a body cut short of its Content-Length.
    CutBody,
    /// Answer 200 with this JSON body.
    Ok(&'static str),
}

/// A one-request-per-connection HTTP server on 127.0.0.1 that treats its connections as
/// `script` says (the last entry repeats); returns its URL and the connection count.
fn flaky_server(script: Vec<Conn>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let what = script[n.min(script.len() - 1)];
            if let Conn::Reset = what {
                // Let the request arrive, then close with it unread.
                std::thread::sleep(std::time::Duration::from_millis(50));
                drop(stream);
                continue;
            }
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(k) = stream.read(&mut buf) {
                if k == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let reply = match what {
                Conn::CutBody => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n[{\"deviceId\"".to_string(),
                Conn::Ok(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                Conn::Reset => unreachable!(),
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, count)
}

fn rest_hub(url: &str, deadline: std::time::Duration) -> fleetform::hub::rest::RestHub {
    use fleetform::hub::rest::{RestHub, RestOptions};
    let conn =
        "HostName=flaky.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0c2VjcmV0".parse().unwrap();
    let options = RestOptions {
        endpoint: Some(url.to_string()),
        progress: false,
        deadline,
        base_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    RestHub::new(conn, options).unwrap()
}

/// Item 8: a connection reset, or a body cut short, during a read is retried like a 5xx.
#[test]
fn reads_are_retried_after_connection_resets() {
    use std::sync::atomic::Ordering;
    let twin = r#"{"deviceId":"a","capabilities":{"iotEdge":true},"tags":{"environment":"prod"}}"#;
    // GET: two resets and a cut body, then the twin.
    let (url, count) = flaky_server(vec![Conn::Reset, Conn::Reset, Conn::CutBody, Conn::Ok(twin)]);
    let hub = rest_hub(&url, std::time::Duration::from_secs(30));
    let got = hub.device_twin("a").unwrap();
    assert_eq!(got["tags"]["environment"], "prod");
    assert_eq!(count.load(Ordering::SeqCst), 4);

    // A twin query page, through the CLI.
    let (url, count) = flaky_server(vec![Conn::Reset, Conn::Ok(r#"[{"deviceId":"a"},{"deviceId":"b"}]"#)]);
    let out = fleetform()
        .args(["query", "SELECT deviceId FROM devices", "--endpoint", &url, "--hub"])
        .arg("HostName=flaky.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0c2VjcmV0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(stdout(&out), "a\nb\n", "{}", transcript(&out));
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // A hub that always resets: given up at the deadline, counting the attempts, no secret shown.
    let (url, count) = flaky_server(vec![Conn::Reset]);
    let hub = rest_hub(&url, std::time::Duration::from_millis(600));
    let err = hub.device_twin("a").unwrap_err().to_string();
    let attempts = count.load(Ordering::SeqCst);
    assert!(attempts >= 3, "{attempts} attempts: {err}");
    assert!(err.contains(&format!("after {attempts} attempts")), "{err}");
    assert!(err.contains("get twin a: failed talking to"), "{err}");
    assert!(!err.contains("c2VjcmV0") && !err.contains("SharedAccessSignature"), "{err}");
}

/// Four device twins: two right, two of the wrong shape in three ways.
const MISSHAPEN: &str = r#"{"deviceId":"good-1","capabilities":{"iotEdge":true},"tags":{"environment":"prod"},"properties":{"desired":{},"reported":{}}}
{"deviceId":"bad-tags","capabilities":{"iotEdge":true},"tags":"environment=prod","properties":{"desired":{},"reported":{}}}
{"deviceId":"bad-edge","capabilities":{"iotEdge":"yes"},"tags":{"environment":"prod"},"properties":null}
{"deviceId":"good-2","capabilities":{"iotEdge":true},"tags":{"environment":"prod"}}
"#;

fn misshapen_hub() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    std::fs::write(dir.path().join("devices.jsonl"), MISSHAPEN).unwrap();
    dir
}

/// The warning as written by hand from MISSHAPEN: 2 twins, one line per kind of problem.
fn assert_shape_warning(out: &std::process::Output) {
    let err = flat_stderr(out);
    assert!(err.contains("warning: 2 device twins are of the wrong shape"), "{}", transcript(out));
    assert!(err.contains("`tags` is not an object (read as no tags): 1 twin: bad-tags"), "{}", transcript(out));
    assert!(
        err.contains("`capabilities.iotEdge` is not true or false (read as not IoT Edge): 1 twin: bad-edge"),
        "{}",
        transcript(out)
    );
    assert!(
        err.contains("`properties` is not an object (read as nothing desired or reported): 1 twin: bad-edge"),
        "{}",
        transcript(out)
    );
    assert!(!err.contains("good-1") && !err.contains("good-2"), "{}", transcript(out));
}

/// Item 9: twins of the wrong shape are counted and named in query, plan and explain
/// (snapshot reader), and in query over the REST reader (the emulator serving them).
#[test]
fn twins_of_the_wrong_shape_are_counted_and_named() {
    let hub = misshapen_hub();
    let out = query(hub.path(), "tags.environment='prod'");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    // Only the two well-formed twins match; the others are read as untagged / not Edge.
    assert_eq!(stdout(&out), "good-1\ngood-2\n", "{}", transcript(&out));
    assert_shape_warning(&out);

    let out = common::with_example_env(&mut fleetform())
        .args(["plan", common::EXAMPLE_DEPLOYMENTS, "--format", "json", "--hub"])
        .arg(hub.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_shape_warning(&out);

    let out = common::with_example_env(&mut fleetform())
        .args(["explain", "good-1", common::EXAMPLE_DEPLOYMENTS, "--hub"])
        .arg(hub.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_shape_warning(&out);

    // A snapshot of well-formed twins warns of nothing.
    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("configurations.json"), "[]").unwrap();
    let good: String = MISSHAPEN.lines().filter(|l| l.contains("\"good-")).map(|l| format!("{l}\n")).collect();
    std::fs::write(clean.path().join("devices.jsonl"), good).unwrap();
    let out = query(clean.path(), "tags.environment='prod'");
    assert_eq!(stdout(&out), "good-1\ngood-2\n", "{}", transcript(&out));
    assert!(!stderr(&out).contains("wrong shape"), "{}", transcript(&out));

    // The REST reader: the emulator serves the same twins, through a projection query that
    // asks only for the paths the condition reads, of IoT Edge devices
    // (docs/hub-semantics.md#projection-queries). The hub itself leaves out `bad-edge` (its
    // `iotEdge` is not true) and `bad-tags`' missing column, so the result is the same and no
    // twin of the wrong shape ever arrives to be named.
    let server = common::EmulatorProcess::start(hub.path(), &[]);
    let out = fleetform()
        .args(["query", "tags.environment='prod'", "--endpoint", &server.url, "--hub", &server.connection])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(stdout(&out), "good-1\ngood-2\n", "{}", transcript(&out));
    assert!(!stderr(&out).contains("wrong shape"), "{}", transcript(&out));
}

/// Review of #12, item 7: a `properties.desired` of the wrong shape is reported by the
/// snapshot reader's targeting projection too (plan, query), as explain's full read does.
#[test]
fn a_desired_of_the_wrong_shape_is_reported_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
    std::fs::write(
        dir.path().join("devices.jsonl"),
        concat!(
            r#"{"deviceId":"bad-desired","capabilities":{"iotEdge":true},"tags":{"environment":"prod"},"properties":{"desired":"x","reported":{}}}"#,
            "\n",
            r#"{"deviceId":"good-1","capabilities":{"iotEdge":true},"tags":{"environment":"prod"},"properties":{"desired":{"a":{"b":[1]}},"reported":{}}}"#,
            "\n"
        ),
    )
    .unwrap();
    let said = "warning: 1 device twin is of the wrong shape";
    let line = "`properties.desired` is not an object (read as nothing desired): 1 twin: bad-desired";
    let out = query(dir.path(), "tags.environment='prod'");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let plan = common::with_example_env(&mut fleetform())
        .args(["plan", common::EXAMPLE_DEPLOYMENTS, "--format", "json", "--hub"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", transcript(&plan));
    let explain = common::with_example_env(&mut fleetform())
        .args(["explain", "good-1", common::EXAMPLE_DEPLOYMENTS, "--hub"])
        .arg(dir.path())
        .output()
        .unwrap();
    for out in [&out, &plan, &explain] {
        let err = flat_stderr(out);
        assert!(err.contains(said) && err.contains(line), "{}", transcript(out));
        assert!(!err.contains("good-1\n") && !err.contains(": 1 twin: good-1"), "{}", transcript(out));
    }
}
