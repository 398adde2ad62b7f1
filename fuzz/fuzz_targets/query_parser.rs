//! Parses arbitrary UTF-8 as a condition and as a query; whatever parses must print to text
//! that parses back to the same tree, and must evaluate/run on a twin without panicking.
#![no_main]

use std::sync::OnceLock;

use fleetform::query::{CompiledCondition, check_target_condition, parse_condition, parse_query};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn twin() -> &'static Value {
    static TWIN: OnceLock<Value> = OnceLock::new();
    TWIN.get_or_init(|| {
        json!({
            "deviceId": "dev-1",
            "moduleId": "$edgeAgent",
            "capabilities": {"iotEdge": true},
            "tags": {"environment": "prod", "location": {"building": "20", "floor": 3},
                     "a.b": [1, "x", null], "owner": null},
            "configurations": {"my-config": {"status": "Applied"}},
            "properties": {"desired": {"$version": 4},
                           "reported": {"firmware": "2.1", "battery": 55.5, "ok": true}}
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_condition(text) {
        Ok(cond) => {
            let printed = cond.to_string();
            let again = parse_condition(&printed)
                .unwrap_or_else(|e| panic!("canonical text {printed:?} does not parse: {e}"));
            assert_eq!(again, cond, "round trip changed {printed:?}");
            let compiled = CompiledCondition::new(&cond);
            let value = compiled.evaluate(twin());
            let clauses = compiled.explain(twin());
            assert!(!clauses.is_empty());
            assert_eq!(CompiledCondition::new(&again).evaluate(twin()), value);
            let _ = check_target_condition(&cond);
        }
        Err(e) => assert!(e.offset + e.len <= text.len() && text.is_char_boundary(e.offset)),
    }
    if let Ok(query) = parse_query(text) {
        let printed = query.to_string();
        let again = parse_query(&printed)
            .unwrap_or_else(|e| panic!("canonical text {printed:?} does not parse: {e}"));
        assert_eq!(again, query, "round trip changed {printed:?}");
        let rows = query.run(std::iter::once(twin()));
        assert!(rows.len() <= 1 || query.is_aggregate());
    }
});
