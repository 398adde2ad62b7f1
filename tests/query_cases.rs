//! Table-driven tests of the query engine's public API.
//!
//! The device twin shape, the example conditions and the example queries follow the public IoT
//! Hub docs (query language reference, "queries for device and module twins", IoT Edge
//! deployment docs); the rest are edge cases of the hub's semantics.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fleetform::query::{
    CompiledCondition, Condition, ConditionSet, QueryErrorKind, Scratch, Tri, check_target_condition, parse_condition,
    parse_query, targets_device,
};
use serde_json::{Value, json};

// ---- a counting allocator, to prove evaluation does not allocate -----------------------------

struct Counting;

thread_local! {
    // `const` init: no lazy registration, so touching it from the allocator cannot recurse.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// ---- fixtures --------------------------------------------------------------------------------

/// The device twin used throughout the query-language docs.
fn doc_twin() -> Value {
    json!({
        "deviceId": "myDeviceId",
        "etag": "AAAAAAAAAAc=",
        "status": "enabled",
        "statusUpdateTime": "0001-01-01T00:00:00",
        "connectionState": "Disconnected",
        "lastActivityTime": "0001-01-01T00:00:00",
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "version": 2,
        "capabilities": {"iotEdge": false},
        "tags": {"location": {"region": "US", "plant": "Redmond43"}},
        "properties": {
            "desired": {
                "telemetryConfig": {"configId": "db00ebf5-eeeb-42be-86a1-458cccb69e57", "sendFrequencyInSecs": 300},
                "$metadata": {},
                "$version": 4
            },
            "reported": {
                "connectivity": {"type": "cellular"},
                "telemetryConfig": {"configId": "db00ebf5-eeeb-42be-86a1-458cccb69e57", "sendFrequencyInSecs": 300, "status": "Success"},
                "$metadata": {},
                "$version": 7
            }
        }
    })
}

/// A realistic IoT Edge device twin.
fn edge_twin() -> Value {
    json!({
        "deviceId": "linuxprod1",
        "capabilities": {"iotEdge": true},
        "tags": {
            "environment": "prod",
            "operator": "John",
            "location": {"building": "20", "floor": 3},
            "roomtype": "conference"
        },
        "properties": {
            "desired": {"$version": 12},
            "reported": {
                "firmware": "2.3",
                "hardware": {"model": "4000x"},
                "devicemodel": "4000x",
                "$version": 40
            }
        }
    })
}

fn twin_named(name: &str) -> Value {
    match name {
        "doc" => doc_twin(),
        "edge" => edge_twin(),
        inline => serde_json::from_str(inline).expect("fixture JSON"),
    }
}

const T: Tri = Tri::True;
const F: Tri = Tri::False;
const U: Tri = Tri::Undefined;

const NULLS: &str = r#"{"tags":{"owner":null}}"#;
const ARRAYS: &str = r#"{"tags":{"list":["a","b"],"n":5,"enabled":true}}"#;
const QUOTES: &str = r#"{"deviceId":"it's-a-device","tags":{"name":"O'Brien","n":5}}"#;
const ESCAPED: &str = r#"{"tags":{"a.b":"dot","my-tag":1},"configurations":{"my-config":{"status":"Applied"}}}"#;
const UNICODE: &str = r#"{"tags":{"Région":"EU","env":"a","ENV":"b"}}"#;

/// (condition, twin, expected value)
const CONDITIONS: &[(&str, &str, Tri)] = &[
    // Examples from the query-language docs.
    ("tags.location.region = 'US'", "doc", T),
    ("tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60", "doc", T),
    ("properties.reported.telemetryConfig.sendFrequencyInSecs < 60", "doc", F),
    ("properties.reported.connectivity.type IN ['wired', 'wifi']", "doc", F),
    ("properties.reported.connectivity.type IN ['wired', 'cellular']", "doc", T),
    ("properties.reported.connectivity.type NIN ['wired', 'wifi']", "doc", T),
    ("is_defined(properties.reported.connectivity)", "doc", T),
    ("IS_DEFINED(properties.reported.battery)", "doc", F),
    ("tags.location.plant = 'Redmond43'", "doc", T),
    (
        "tags.location.region = 'US' AND (tags.location.plant = 'Redmond43' OR tags.location.plant = 'Redmond44')",
        "doc",
        T,
    ),
    ("properties.desired.telemetryConfig.configId = properties.reported.telemetryConfig.configId", "doc", T),
    ("properties.desired.$version = 4", "doc", T),
    // Target conditions from the IoT Edge deployment docs.
    ("tags.environment='prod'", "edge", T),
    ("tags.environment='prod' AND tags.operator='John'", "edge", T),
    ("tags.environment='prod' OR tags.location='westus'", "edge", T),
    ("tags.operator='John' AND tags.environment='prod' AND NOT deviceId='linuxprod1'", "edge", F),
    ("properties.reported.devicemodel='4000x'", "edge", T),
    ("deviceId='linuxprod1'", "edge", T),
    ("tags.environment='prod' AND tags.location.building='20' AND properties.reported.firmware >= '2.0'", "edge", T),
    ("capabilities.iotEdge = true", "edge", T),
    ("*", "edge", T),
    // Case: names insensitive, strings sensitive.
    ("tags.location.region = 'us'", "doc", F),
    ("TAGS.Location.REGION = 'US'", "doc", T),
    ("status = 'enabled'", "doc", T),
    ("Status = 'Enabled'", "doc", F),
    ("configurations.[[MY-CONFIG]].STATUS = 'Applied'", ESCAPED, T),
    ("tags.RÉGION = 'EU'", UNICODE, T),
    ("tags.ENV = 'b'", UNICODE, T),
    ("tags.env = 'a'", UNICODE, T),
    // Types never equal across kinds; ordering only for two numbers or two strings.
    ("properties.desired.$version = '4'", "doc", F),
    ("properties.desired.$version != '4'", "doc", T),
    ("properties.desired.$version <> 4", "doc", F),
    ("properties.desired.$version > '3'", "doc", U),
    ("properties.desired.telemetryConfig = properties.reported.telemetryConfig", "doc", U),
    ("tags.enabled = true", ARRAYS, T),
    ("tags.enabled > false", ARRAYS, U),
    ("tags.n = '5'", ARRAYS, F),
    ("'10' < '9'", "doc", T),
    // Missing properties and three-valued logic.
    ("properties.reported.missing = 'x'", "doc", U),
    ("NOT properties.reported.missing = 'x'", "doc", U),
    ("NOT tags.location.region = 'EU'", "doc", T),
    ("NOT NOT tags.location.region = 'US'", "doc", T),
    ("properties.reported.missing = 'x' AND tags.location.region = 'EU'", "doc", F),
    ("properties.reported.missing = 'x' OR tags.location.region = 'US'", "doc", T),
    ("properties.reported.missing = 'x' OR tags.location.region = 'EU'", "doc", U),
    ("properties.reported.missing = 'x' AND tags.location.region = 'US'", "doc", U),
    ("tags.missing.deeper.still = 1", "doc", U),
    ("deviceId.length = 1", "doc", U),
    // Non-boolean conditions are never true.
    ("true", "doc", T),
    ("1", "doc", U),
    ("'x'", "doc", U),
    ("null", "doc", U),
    ("tags.location", "doc", U),
    // Nulls: defined, equal to null, a type of their own.
    ("IS_DEFINED(tags.owner)", NULLS, T),
    ("tags.owner = null", NULLS, T),
    ("IS_NULL(tags.owner)", NULLS, T),
    ("IS_NULL(tags.nothing)", NULLS, F),
    ("tags.owner != 'x'", NULLS, T),
    ("tags.owner < 1", NULLS, U),
    // Arrays and objects.
    ("tags.list = ['a', 'b']", ARRAYS, U),
    ("IS_ARRAY(tags.list)", ARRAYS, T),
    ("tags.list IN ['a']", ARRAYS, U),
    ("IS_OBJECT(tags)", ARRAYS, T),
    ("IS_PRIMITIVE(tags.n)", ARRAYS, T),
    ("IS_PRIMITIVE(tags.list)", ARRAYS, F),
    ("IS_BOOL(tags.enabled) AND IS_NUMBER(tags.n)", ARRAYS, T),
    ("IS_NUMBER(tags.n) AND IS_STRING(tags.list)", ARRAYS, F),
    // IN / NIN.
    ("tags.n IN [1, 5, 'five']", ARRAYS, T),
    ("tags.n IN ['5']", ARRAYS, F),
    ("tags.n NIN ['5']", ARRAYS, T),
    ("tags.missing NIN ['5']", ARRAYS, U),
    ("tags.enabled IN [true, null]", ARRAYS, T),
    ("tags.n IN []", ARRAYS, F),
    // Strings, '' escapes, STARTSWITH/ENDSWITH.
    ("tags.name = 'O''Brien'", QUOTES, T),
    // The hub grammar's backslash escapes, in target conditions too.
    (r"tags.name = 'O\'Brien'", QUOTES, T),
    (r"deviceId = 'it\u0027s-a-device'", QUOTES, T),
    (r"tags.name = 'O\u0027Brien' AND tags.n = 5", QUOTES, T),
    (r"tags.name = '\u004F''Brien'", QUOTES, T),
    (r"tags.name = 'O\\Brien'", QUOTES, F),
    (r"tags.path = 'C:\\data'", r#"{"tags":{"path":"C:\\data"}}"#, T),
    (r#"tags.q = '\"x\"'"#, r#"{"tags":{"q":"\"x\""}}"#, T),
    (r"tags.env = '\u0070rod'", r#"{"tags":{"env":"prod"}}"#, T),
    (r"tags.env = '\u0070rod'", r#"{"tags":{"env":"\\u0070rod"}}"#, F),
    ("STARTSWITH(deviceId, 'it''s')", QUOTES, T),
    ("ENDSWITH(deviceId, '-device')", QUOTES, T),
    ("ENDSWITH(deviceId, 'DEVICE')", QUOTES, F),
    ("STARTSWITH(tags.missing, 'x')", QUOTES, U),
    ("STARTSWITH(tags.n, '5')", QUOTES, U),
    ("NOT STARTSWITH(deviceId, 'x')", QUOTES, T),
    // [[ ]] segments.
    ("tags.[[a.b]] = 'dot'", ESCAPED, T),
    ("tags.[[my-tag]] = 1", ESCAPED, T),
    ("configurations.[[my-config]].status = 'Applied'", ESCAPED, T),
    ("tags.a.b = 'dot'", ESCAPED, U),
    // Numbers: hex, exponent, negative, arithmetic.
    ("cloudToDeviceMessageCount = 0", "doc", T),
    ("cloudToDeviceMessageCount + 1 = 1", "doc", T),
    ("version * 2 = 4", "doc", T),
    ("version % 2 = 0", "doc", T),
    ("version - 3 = -1", "doc", T),
    ("-version = -2", "doc", T),
    ("version / 0 = 1", "doc", U),
    ("tags.location.region + 1 = 2", "doc", U),
    ("version = 0x2", "doc", T),
    ("0x10 = 16", "doc", T),
    ("version >= 1.5e0", "doc", T),
    ("version > -1", "doc", T),
    ("version = 2.0", "doc", T),
    ("1 + 2 * 3 = 7", "doc", T),
    ("(1 + 2) * 3 = 9", "doc", T),
];

#[test]
fn condition_table() {
    assert!(CONDITIONS.len() >= 60, "{} cases", CONDITIONS.len());
    let mut failures = Vec::new();
    for &(text, twin, expected) in CONDITIONS {
        let compiled = match CompiledCondition::parse(text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{text}: parse error {e}"));
                continue;
            }
        };
        let twin = twin_named(twin);
        let got = compiled.evaluate(&twin);
        if got != expected {
            failures.push(format!("{text}: expected {expected}, got {got}"));
        }
        assert_eq!(compiled.matches(&twin), expected == Tri::True);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn condition_set_agrees_with_the_table() {
    let mut set = ConditionSet::new();
    let parsed: Vec<Condition> = CONDITIONS.iter().map(|(t, _, _)| parse_condition(t).expect("parses")).collect();
    for c in &parsed {
        set.add(c);
    }
    let twins: Vec<Value> =
        ["doc", "edge", NULLS, ARRAYS, QUOTES, ESCAPED, UNICODE].iter().map(|n| twin_named(n)).collect();
    let mut scratch = Scratch::new();
    for twin in &twins {
        let r = set.resolve(twin, &mut scratch);
        for (id, c) in parsed.iter().enumerate() {
            assert_eq!(r.evaluate(id), CompiledCondition::new(c).evaluate(twin), "{c}");
        }
    }
}

// ---- targeting -----------------------------------------------------------------------------

#[test]
fn targeting_requires_an_edge_device() {
    let edge = edge_twin();
    let leaf = doc_twin();
    let star = CompiledCondition::parse("*").unwrap();
    assert!(targets_device(&star, &edge));
    assert!(!targets_device(&star, &leaf));
    let nothing = CompiledCondition::new(&Condition::nothing());
    assert!(!targets_device(&nothing, &edge));
    let by_region = CompiledCondition::parse("tags.location.region = 'US'").unwrap();
    assert!(by_region.matches(&leaf));
    assert!(!targets_device(&by_region, &leaf), "not an IoT Edge device");
    let by_env = CompiledCondition::parse("tags.environment = 'prod'").unwrap();
    assert!(targets_device(&by_env, &edge));
}

#[test]
fn explain_names_the_failing_clause() {
    let text = "tags.environment='prod' AND tags.location.building='40' AND properties.reported.battery > 10";
    let c = CompiledCondition::parse(text).unwrap();
    let out = c.explain(&edge_twin());
    let summary: Vec<(&str, Tri)> = out.iter().map(|o| (o.text.as_str(), o.value)).collect();
    assert_eq!(
        summary,
        [("tags.environment='prod'", T), ("tags.location.building='40'", F), ("properties.reported.battery > 10", U)]
    );
    assert_eq!(&text[out[1].offset..out[1].offset + out[1].len], out[1].text);
}

#[test]
fn target_condition_rules() {
    let c = parse_condition("tags.a = 1 AND properties.desired.x = 2").unwrap();
    let errors = check_target_condition(&c);
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].offset, errors[0].len), (15, 20));
    assert_eq!(
        errors[0].help().as_deref(),
        Some("target conditions may only use tags, properties.reported and deviceId")
    );
}

#[test]
fn parse_errors_carry_spans_and_help() {
    let cases: &[(&str, usize, &str)] = &[
        ("tags.a = \"x\"", 9, "double quotes are not allowed in target conditions; use single quotes"),
        ("STARTS_WITH(deviceId, 'a')", 0, "unknown function STARTS_WITH — did you mean STARTSWITH?"),
        ("tags.a = 'abc", 9, "close the string with the quote that opened it; write \\' for a quote inside a string"),
        (
            "tags.a = 'a\\tb'",
            11,
            "the escapes are \\' \\\" \\\\ and \\uXXXX (four hex digits); write \\\\ for a backslash",
        ),
        ("(tags.a = 1", 0, "add the missing ')'"),
        ("tags.a = 1)", 10, "remove this ')' or add the matching '('"),
        ("", 0, "an empty target condition targets no device; use '*' to target every IoT Edge device"),
    ];
    for &(text, offset, help) in cases {
        let e = parse_condition(text).unwrap_err();
        assert_eq!(e.offset, offset, "{text}");
        assert_eq!(e.help().as_deref(), Some(help), "{text}");
        assert!(!e.message().is_empty());
    }
    let e = parse_query("SELECT deviceId, AVG(version) AS v FROM devices").unwrap_err();
    assert_eq!((e.offset, e.kind), (7, QueryErrorKind::NotGrouped("deviceId".into())));
    let e = parse_query("SELECT MAX(version FROM devices").unwrap_err();
    assert_eq!(e.offset, 19);
    assert!(e.message().contains("MAX takes one argument"), "{}", e.message());
    // A full query takes double quotes, so its errors never speak of target conditions.
    assert!(parse_query("SELECT * FROM devices WHERE tags.a = \"x\"").is_ok());
    let e = parse_query("SELECT * FROM devices WHERE tags.a = \"x").unwrap_err();
    assert_eq!((e.offset, e.kind.clone()), (37, QueryErrorKind::UnterminatedString));
    assert!(!e.help().unwrap().contains("not allowed"));
    // Spans after an escape still point at the right bytes.
    let text = r"tags.a = '\u0070' AND properties.desired.x = 1";
    let errors = check_target_condition(&parse_condition(text).unwrap());
    assert_eq!(&text[errors[0].offset..errors[0].offset + errors[0].len], "properties.desired.x");
    let e = parse_condition("tags.a = 1 tags.b = 2").unwrap_err();
    assert!(matches!(e.kind, QueryErrorKind::TrailingInput(_)));
    assert_eq!(e.offset, 11);
}

// ---- full queries ----------------------------------------------------------------------------

fn fleet() -> Vec<Value> {
    vec![
        json!({"deviceId": "d1", "capabilities": {"iotEdge": true}, "status": "enabled",
               "tags": {"location": {"region": "US", "plant": "Redmond43"}},
               "properties": {"reported": {"telemetryConfig": {"status": "Success", "sendFrequencyInSecs": 300}}}}),
        json!({"deviceId": "d2", "capabilities": {"iotEdge": true}, "status": "enabled",
               "tags": {"location": {"region": "US", "plant": "Redmond43"}},
               "properties": {"reported": {"telemetryConfig": {"status": "Pending", "sendFrequencyInSecs": 30}}}}),
        json!({"deviceId": "d3", "capabilities": {"iotEdge": true}, "status": "disabled",
               "tags": {"location": {"region": "EU", "plant": "Dublin"}},
               "properties": {"reported": {"telemetryConfig": {"status": "Success", "sendFrequencyInSecs": 60}}}}),
        json!({"deviceId": "d4", "capabilities": {"iotEdge": false}, "status": "enabled",
               "tags": {"location": {"region": "US", "plant": "Seattle"}},
               "properties": {"reported": {"telemetryConfig": {"status": "Error"}}}}),
        json!({"deviceId": "d5", "capabilities": {"iotEdge": false}, "status": "enabled"}),
    ]
}

fn modules() -> Vec<Value> {
    let agent = |device: &str, status: &str, code: i64| {
        json!({"deviceId": device, "moduleId": "$edgeAgent",
               "configurations": {"dep-1": {"status": status}},
               "properties": {"desired": {"$version": 5},
                              "reported": {"lastDesiredVersion": 5, "lastDesiredStatus": {"code": code}}}})
    };
    vec![
        agent("d1", "Applied", 200),
        agent("d2", "Applied", 400),
        agent("d3", "Targeted", 200),
        json!({"deviceId": "d1", "moduleId": "scanner", "properties": {"reported": {"status": "scanning"}}}),
        json!({"deviceId": "d3", "moduleId": "scanner", "properties": {"reported": {"status": "scanning"}}}),
    ]
}

/// (query, expected rows); `FROM devices.modules` queries run over [`modules`], others over
/// [`fleet`].
fn query_cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "SELECT deviceId FROM devices WHERE tags.location.region = 'US'",
            json!([{"deviceId": "d1"}, {"deviceId": "d2"}, {"deviceId": "d4"}]),
        ),
        (
            "SELECT deviceId FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
            json!([{"deviceId": "d1"}]),
        ),
        (
            "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
            json!([
                {"status": "Success", "numberOfDevices": 2},
                {"status": "Pending", "numberOfDevices": 1},
                {"status": "Error", "numberOfDevices": 1},
                {"numberOfDevices": 1}
            ]),
        ),
        ("SELECT COUNT() AS totalNumberOfDevices FROM devices", json!([{"totalNumberOfDevices": 5}])),
        (
            "select count() as n from devices where capabilities.iotEdge = true and tags.location.region = 'US'",
            json!([{"n": 2}]),
        ),
        ("SELECT TOP 2 deviceId FROM devices", json!([{"deviceId": "d1"}, {"deviceId": "d2"}])),
        ("SELECT TOP 0 * FROM devices", json!([])),
        (
            "SELECT tags.location.region, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location) GROUP BY tags.location.region",
            json!([{"region": "US", "n": 3}, {"region": "EU", "n": 1}]),
        ),
        (
            "SELECT tags.location.region AS r, status, COUNT() AS n FROM devices GROUP BY tags.location.region, status",
            json!([
                {"r": "US", "status": "enabled", "n": 3},
                {"r": "EU", "status": "disabled", "n": 1},
                {"status": "enabled", "n": 1}
            ]),
        ),
        (
            "SELECT deviceId, tags.location AS loc FROM devices WHERE deviceId = 'd3'",
            json!([{"deviceId": "d3", "loc": {"region": "EU", "plant": "Dublin"}}]),
        ),
        (
            "SELECT * FROM devices WHERE deviceId = 'd5'",
            json!([{"deviceId": "d5", "capabilities": {"iotEdge": false}, "status": "enabled"}]),
        ),
        // A projected path is named as the twin spells it (the docs' `SELECT DeviceID, ...`
        // examples return `deviceId`); an alias is kept as written.
        ("SELECT LastActivityTime, DEVICEID FROM devices WHERE status = 'disabled'", json!([{"deviceId": "d3"}])),
        (
            "SELECT DeviceId, Tags.Location.Region FROM devices WHERE deviceId = 'd1'",
            json!([{"deviceId": "d1", "region": "US"}]),
        ),
        ("SELECT DeviceId AS DEVICE FROM devices WHERE deviceId = 'd2'", json!([{"DEVICE": "d2"}])),
        (
            "SELECT TAGS.LOCATION.REGION, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location) GROUP BY tags.location.region",
            json!([{"region": "US", "n": 3}, {"region": "EU", "n": 1}]),
        ),
        // AVG, SUM, MIN, MAX over the numbers of each group (300, 30 and 60; d4 and d5 have
        // none), with COUNT() and GROUP BY; a group without numbers leaves them out.
        (
            "SELECT AVG(properties.reported.telemetryConfig.sendFrequencyInSecs) AS avg, \
             SUM(properties.reported.telemetryConfig.sendFrequencyInSecs) AS total, \
             MIN(properties.reported.telemetryConfig.sendFrequencyInSecs) AS lo, \
             MAX(properties.reported.telemetryConfig.sendFrequencyInSecs) AS hi, COUNT() AS n FROM devices",
            json!([{"avg": 130, "total": 390, "lo": 30, "hi": 300, "n": 5}]),
        ),
        (
            "SELECT tags.location.region AS region, avg(properties.reported.telemetryConfig.sendFrequencyInSecs) AS avg, \
             Max(properties.reported.telemetryConfig.sendFrequencyInSecs) AS hi, COUNT() AS n FROM devices \
             GROUP BY tags.location.region",
            json!([
                {"region": "US", "avg": 165, "hi": 300, "n": 3},
                {"region": "EU", "avg": 60, "hi": 60, "n": 1},
                {"n": 1}
            ]),
        ),
        (
            "SELECT AVG(properties.reported.telemetryConfig.sendFrequencyInSecs / 8) AS avg FROM devices WHERE deviceId IN ['d1', 'd2']",
            json!([{"avg": 20.625}]),
        ),
        ("SELECT MIN(properties.reported.telemetryConfig.sendFrequencyInSecs) FROM devices", json!([{"$1": 30}])),
        (
            "SELECT SUM(properties.reported.telemetryConfig.sendFrequencyInSecs) AS s, COUNT() AS n FROM devices WHERE deviceId = 'none'",
            json!([{"n": 0}]),
        ),
        // Full queries take double-quoted strings and the grammar's backslash escapes.
        ("SELECT deviceId FROM devices WHERE tags.location.plant = \"Dublin\"", json!([{"deviceId": "d3"}])),
        (
            r#"SELECT deviceId FROM devices WHERE tags.location.region IN ["EU", 'x\'y'] OR deviceId = "d\u0032""#,
            json!([{"deviceId": "d2"}, {"deviceId": "d3"}]),
        ),
        (r"SELECT COUNT() AS n FROM devices WHERE tags.location.plant = 'Redmond\u0034\u0033'", json!([{"n": 2}])),
        (
            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[dep-1]].status = 'Applied'",
            json!([{"deviceId": "d1"}, {"deviceId": "d2"}]),
        ),
        (
            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[dep-1]].status = 'Applied' \
             AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200",
            json!([{"deviceId": "d1"}]),
        ),
        (
            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[dep-1]].status = 'Applied' \
             AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200",
            json!([{"deviceId": "d2"}]),
        ),
        (
            "SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['d1', 'd2']",
            json!([{"deviceId": "d1", "moduleId": "scanner"}]),
        ),
        ("SELECT COUNT() AS n FROM devices.modules WHERE moduleId = '$edgeAgent'", json!([{"n": 3}])),
    ]
}

#[test]
fn query_table() {
    let (devices, mods) = (fleet(), modules());
    for (text, expected) in query_cases() {
        let q = parse_query(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let rows = if q.from_modules() { &mods } else { &devices };
        assert_eq!(Value::Array(q.run(rows)), expected, "{text}");
        // The canonical text runs the same.
        let again = parse_query(&q.to_string()).unwrap();
        assert_eq!(Value::Array(again.run(rows)), expected, "{}", q);
    }
}

// ---- no allocation per evaluation --------------------------------------------------------------

#[test]
fn evaluation_does_not_allocate() {
    let texts = [
        "tags.environment='prod' AND tags.location.building='20' AND properties.reported.firmware >= '2.0'",
        "tags.location.floor IN [1, 2, 3] OR NOT STARTSWITH(deviceId, 'linux')",
        "IS_DEFINED(tags.missing) OR properties.reported.hardware.model = '4000x'",
        "tags.RoomType = 'conference' AND properties.desired.$version * 2 > 10",
        "*",
    ];
    let mut set = ConditionSet::new();
    let compiled: Vec<CompiledCondition> = texts
        .iter()
        .map(|t| {
            let c = parse_condition(t).unwrap();
            set.add(&c);
            CompiledCondition::new(&c)
        })
        .collect();
    let twins = vec![edge_twin(), doc_twin(), twin_named(ARRAYS)];
    let mut scratch = Scratch::new();
    let mut out = Vec::with_capacity(texts.len());
    // Warm up: the scratch buffer grows to the set's slot count once.
    set.evaluate_all(&twins[0], &mut scratch, &mut out);

    let before = allocations();
    let mut matched = 0;
    for _ in 0..100 {
        for twin in &twins {
            set.evaluate_all(twin, &mut scratch, &mut out);
            matched += out.iter().filter(|t| t.is_true()).count();
            for c in &compiled {
                matched += usize::from(c.matches(twin));
            }
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "evaluation allocated");
    // The counter does count: one allocation shows up.
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert!(allocations() > after);
    drop(probe);
    assert!(matched > 0);

    // Recycling the scratch for twins of another lifetime keeps its buffer.
    let scratch = scratch.recycle();
    let local = edge_twin();
    let mut scratch = scratch;
    let before = allocations();
    let r = set.resolve(&local, &mut scratch);
    assert!(r.targets(0));
    assert_eq!(allocations() - before, 0, "recycled scratch reallocated");
}
