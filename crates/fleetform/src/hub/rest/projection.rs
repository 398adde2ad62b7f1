//! Reading only what a plan's conditions read: a projection query over IoT Edge devices, and
//! its rows rebuilt into twins with every value back at its place
//! (docs/hub-semantics.md#projection-queries).
//!
//! The hub answers `SELECT deviceId, tags.location AS p0 FROM devices` with flat rows such as
//! `{"deviceId": "d1", "p0": {...}}`. Every path gets its own short alias: an un-aliased
//! column is named after the path's last segment *as the twin spells it*, which the reader
//! cannot know in advance, and two paths ending in the same name would collide. Short
//! aliases also keep each row small, since every row repeats them.

use serde_json::{Map, Value};

use crate::model::{AgentReport, EDGE_AGENT, ReadPaths, Twin, TwinPath};
use crate::query::{Literal, MAX_QUERY_CHARS, Path, eq_ignore_case};

use super::HubError;

/// The column holding the Edge capability. Every row read has it true (the query's WHERE),
/// but it is selected anyway so that a rebuilt twin says so itself, as a whole twin would.
const EDGE_COLUMN: &str = "iotEdge";

/// A projection query and how to read its rows back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectedQuery {
    /// The query text sent to `POST /devices/query`.
    pub text: String,
    /// Each alias with the twin path whose value it holds.
    columns: Vec<(String, TwinPath)>,
}

impl ProjectedQuery {
    /// The query for `paths`: `deviceId`, the Edge capability and each path under alias
    /// `p<i>`, of IoT Edge devices only. Paths the query selects anyway (`deviceId`,
    /// `capabilities.iotEdge`) are not selected twice.
    pub fn new(paths: &ReadPaths) -> ProjectedQuery {
        let mut text = format!("SELECT deviceId, capabilities.iotEdge AS {EDGE_COLUMN}");
        let mut columns = Vec::new();
        for path in paths.paths() {
            if is_selected_anyway(path) {
                continue;
            }
            let alias = format!("p{}", columns.len());
            // The query language's own printer quotes a segment that is not a plain name
            // (`[[my-tag]]`), so the hub reads exactly the segments the condition named.
            let written = Path::from_names(path.segments()).to_string();
            text.push_str(&format!(", {written} AS {alias}"));
            columns.push((alias, path.clone()));
        }
        text.push_str(" FROM devices WHERE capabilities.iotEdge = true");
        ProjectedQuery { text, columns }
    }

    /// A row of this query as a twin: `deviceId`, `capabilities.iotEdge` and each column's
    /// value at its path. A column missing from the row is a property the twin does not
    /// have (the hub leaves undefined values out), so it stays missing: conditions on it
    /// are undefined, exactly as on the whole twin.
    pub fn twin(&self, row: Value) -> Result<Twin, HubError> {
        let Value::Object(mut row) = row else {
            return Twin::from_value(row).map_err(|shape| HubError::TwinWithoutId { shape });
        };
        let mut twin = Map::new();
        if let Some(id) = take_ignoring_case(&mut row, "deviceId") {
            twin.insert("deviceId".into(), id);
        }
        let edge = take_ignoring_case(&mut row, EDGE_COLUMN).unwrap_or(Value::Bool(false));
        let mut twin = Value::Object(twin);
        place(&mut twin, &["capabilities".to_string(), "iotEdge".to_string()], edge);
        for (alias, path) in &self.columns {
            if let Some(value) = row.remove(alias) {
                place(&mut twin, path.segments(), value);
            }
        }
        Twin::from_value(twin).map_err(|shape| HubError::TwinWithoutId { shape })
    }
}

/// The column holding an `$edgeAgent` twin's reported modules map.
const MODULES_COLUMN: &str = "m";

/// The queries that read the reported modules of the `$edgeAgent` twins of `devices`, each
/// within the hub's [`MAX_QUERY_CHARS`] (docs/hub-semantics.md#query-language): the ids
/// packed into `deviceId IN [...]` lists, in the order given. An id too long to fit even
/// alone cannot be a device id (the hub caps them at 128 characters) and is left out.
pub fn agent_module_queries(devices: &[String]) -> Vec<String> {
    let head = format!("{} AND deviceId IN [", all_agent_modules_query());
    let tail = "]";
    let room = MAX_QUERY_CHARS - head.chars().count() - tail.len();
    let mut queries = Vec::new();
    let mut list = String::new();
    let mut used = 0;
    for id in devices {
        let literal = Literal::String(id.clone()).to_string();
        let len = literal.chars().count();
        if len > room {
            continue;
        }
        if !list.is_empty() && used + 2 + len > room {
            queries.push(format!("{head}{list}{tail}"));
            list.clear();
            used = 0;
        }
        if !list.is_empty() {
            list.push_str(", ");
            used += 2;
        }
        list.push_str(&literal);
        used += len;
    }
    if !list.is_empty() {
        queries.push(format!("{head}{list}{tail}"));
    }
    queries
}

/// The query of every `$edgeAgent` twin's reported modules map.
pub fn all_agent_modules_query() -> String {
    format!(
        "SELECT deviceId, properties.reported.modules AS {MODULES_COLUMN} FROM devices.modules WHERE moduleId = {}",
        Literal::String(EDGE_AGENT.to_string())
    )
}

/// A row of an [`agent_module_queries`] (or [`all_agent_modules_query`]) query as a report; `None` for a row without a
/// device id. A row without the column is an agent that reports no modules map (the hub
/// leaves undefined values out).
pub fn agent_report(row: Value) -> Option<AgentReport> {
    let Value::Object(mut row) = row else { return None };
    let device_id = take_ignoring_case(&mut row, "deviceId")?.as_str()?.to_string();
    let modules = row.remove(MODULES_COLUMN).filter(Value::is_object);
    Some(AgentReport { device_id, modules })
}

/// Whether the query selects `path` whatever the conditions say.
fn is_selected_anyway(path: &TwinPath) -> bool {
    match path.segments() {
        [id] => eq_ignore_case(id, "deviceId"),
        [caps, edge] => eq_ignore_case(caps, "capabilities") && eq_ignore_case(edge, "iotEdge"),
        _ => false,
    }
}

fn take_ignoring_case(row: &mut Map<String, Value>, name: &str) -> Option<Value> {
    if let Some(v) = row.remove(name) {
        return Some(v);
    }
    let key = row.keys().find(|k| eq_ignore_case(k, name))?.clone();
    row.remove(&key)
}

/// Puts `value` at `segments` inside `twin`, creating the objects on the way. Names match
/// ignoring case, as the query language does: `tags.location.building` and
/// `TAGS.Location.floor` end up in one `tags.location` object, so that a lookup of either
/// spelling finds both, as it would in the whole twin.
fn place(twin: &mut Value, segments: &[String], value: Value) {
    let Some((leaf, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = twin;
    for segment in parents {
        let Value::Object(map) = cur else {
            return;
        };
        let key = existing_key(map, segment).unwrap_or_else(|| segment.clone());
        let next = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        // A prefix and a path under it are never both read (ReadPaths keeps the prefix), so
        // a non-object on the way cannot be a value some other column put there.
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if let Value::Object(map) = cur {
        let key = existing_key(map, leaf).unwrap_or_else(|| leaf.clone());
        map.insert(key, value);
    }
}

fn existing_key(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| eq_ignore_case(k, name)).cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::query::{ConditionSet, Scratch, Tri, parse_condition, parse_query};

    fn set_of(conditions: &[&str]) -> ConditionSet {
        let parsed: Vec<_> = conditions.iter().map(|c| parse_condition(c).unwrap()).collect();
        ConditionSet::with_conditions(&parsed)
    }

    #[test]
    fn the_query_selects_exactly_the_paths_read_of_edge_devices() {
        let set = set_of(&[
            "tags.location.building='20' AND tags.environment='prod'",
            "TAGS.Location.floor > 2 OR properties.reported.firmware='2.1'",
            "deviceId = 'd1' AND tags.[[my-tag]] = 1",
        ]);
        let q = ProjectedQuery::new(&set.read_paths());
        assert_eq!(
            q.text,
            "SELECT deviceId, capabilities.iotEdge AS iotEdge, properties.reported.firmware AS p0, \
             tags.environment AS p1, tags.location.building AS p2, TAGS.Location.floor AS p3, \
             tags.[[my-tag]] AS p4 FROM devices WHERE capabilities.iotEdge = true"
        );
        // The hub's language accepts it.
        parse_query(&q.text).unwrap();
    }

    #[test]
    fn a_condition_on_the_edge_capability_itself_is_not_selected_twice() {
        let q = ProjectedQuery::new(&set_of(&["capabilities.iotEdge = true AND tags.a.b = 1"]).read_paths());
        assert_eq!(
            q.text,
            "SELECT deviceId, capabilities.iotEdge AS iotEdge, tags.a.b AS p0 FROM devices WHERE capabilities.iotEdge = true"
        );
        let none = ProjectedQuery::new(&ReadPaths::default());
        assert_eq!(
            none.text,
            "SELECT deviceId, capabilities.iotEdge AS iotEdge FROM devices WHERE capabilities.iotEdge = true"
        );
    }

    /// Conditions give the same answer on the rebuilt twin as on the whole one; the rows
    /// are written by hand the way the hub shapes them (aliases as keys, undefined left out).
    #[test]
    fn rebuilt_rows_evaluate_as_the_whole_twin() {
        let conditions = [
            "tags.location.building='20' AND tags.environment='prod'",
            "TAGS.Location.floor > 2",
            "properties.reported.firmware = '2.1'",
            "NOT (properties.reported.firmware = '2.1')",
            "is_defined(tags.missing)",
        ];
        let set = set_of(&conditions);
        let q = ProjectedQuery::new(&set.read_paths());
        let whole = json!({
            "deviceId": "d1", "etag": "AAAA", "capabilities": {"iotEdge": true},
            "tags": {"environment": "prod", "Location": {"building": "20", "Floor": 3}},
            "properties": {"desired": {"big": "x"}, "reported": {"temp": 1}}
        });
        // p0 firmware (undefined: left out), p1 environment, p2 building, p3 floor, p4 missing.
        let row = json!({"deviceId": "d1", "iotEdge": true, "p1": "prod", "p2": "20", "p3": 3});
        let rebuilt = q.twin(row).unwrap();
        // TAGS.Location.floor lands in the object tags.location.building created.
        assert_eq!(
            rebuilt.value(),
            &json!({
                "deviceId": "d1", "capabilities": {"iotEdge": true},
                "tags": {"environment": "prod", "location": {"building": "20", "floor": 3}}
            })
        );
        let eval = |twin: &Value| {
            let mut scratch = Scratch::new();
            let mut out = Vec::new();
            set.evaluate_all(twin, &mut scratch, &mut out);
            out
        };
        assert_eq!(eval(rebuilt.value()), eval(&whole));
        assert_eq!(eval(&whole), [Tri::True, Tri::True, Tri::Undefined, Tri::Undefined, Tri::False]);
        assert!(rebuilt.is_edge());
        assert_eq!(rebuilt.device_id(), "d1");
    }

    #[test]
    fn a_row_without_a_device_id_is_an_error() {
        let q = ProjectedQuery::new(&ReadPaths::default());
        assert!(matches!(q.twin(json!({"iotEdge": true})), Err(HubError::TwinWithoutId { .. })));
        assert!(matches!(q.twin(json!([1])), Err(HubError::TwinWithoutId { .. })));
    }

    #[test]
    fn agent_module_queries_pack_every_device_once_within_the_query_limit() {
        // Apostrophes are valid in device ids; 2,000 ids of 40 characters do not fit one query.
        let mut devices: Vec<String> = (0..2000).map(|i| format!("device-with-a-long-name-{i:016}")).collect();
        devices.push("o'brien".to_string());
        let queries = agent_module_queries(&devices);
        assert!(queries.len() > 1, "{}", queries.len());
        let mut seen = Vec::new();
        for q in &queries {
            assert!(q.chars().count() <= MAX_QUERY_CHARS, "{}", q.chars().count());
            let parsed = parse_query(q).unwrap();
            assert!(parsed.from_modules());
            // Each query matches exactly the agent twins of its own devices.
            let cond = crate::query::CompiledCondition::new(&parsed.where_condition());
            for d in &devices {
                if cond.matches(&json!({"deviceId": d, "moduleId": "$edgeAgent"})) {
                    seen.push(d.clone());
                }
                assert!(!cond.matches(&json!({"deviceId": d, "moduleId": "$edgeHub"})));
            }
        }
        seen.sort();
        devices.sort();
        assert_eq!(seen, devices);
        // Every query but the last is full: the next id (at most 44 characters quoted) did
        // not fit, so there are no more queries than the ids need.
        for q in &queries[..queries.len() - 1] {
            assert!(q.chars().count() > MAX_QUERY_CHARS - 46, "{}", q.chars().count());
        }
        assert!(agent_module_queries(&[]).is_empty());
    }

    #[test]
    fn agent_rows_become_reports_and_a_missing_column_is_no_modules_map() {
        let r = agent_report(json!({"deviceId": "d1", "m": {"sim": {"settings": {"image": "a:1"}}}})).unwrap();
        assert_eq!(r.device_id, "d1");
        assert_eq!(r.modules, Some(json!({"sim": {"settings": {"image": "a:1"}}})));
        assert_eq!(agent_report(json!({"deviceId": "d2"})).unwrap().modules, None);
        assert_eq!(agent_report(json!({"m": {}})), None);
    }
}
