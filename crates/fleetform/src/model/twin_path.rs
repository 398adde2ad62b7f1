//! A path into a twin's JSON, and the one way to read, write and delete at it.
//!
//! Deployments name what they write with dotted keys: `properties.desired` for a whole
//! desired document, `properties.desired.modules.m.settings` for one value inside it. The
//! hub reads the dots as separators (a twin key cannot contain one), so a path is a list of
//! segments, none of them empty.

use std::fmt;

use serde_json::{Map, Value};

/// The key prefix of a write into a twin's desired properties.
pub const DESIRED: &str = "properties.desired";

/// Segments of a path into a JSON document; empty means the document itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TwinPath(Vec<String>);

/// Why a key is not a path a deployment can write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum TwinPathError {
    #[error("`{key}` is not under properties.desired")]
    NotDesired { key: String },
    #[error("`{key}` has an empty segment")]
    EmptySegment { key: String },
}

impl TwinPath {
    /// The document itself.
    pub fn root() -> TwinPath {
        TwinPath(Vec::new())
    }

    /// A dotted path (`modules.m.settings`); the empty text is the root.
    pub fn parse(dotted: &str) -> Result<TwinPath, TwinPathError> {
        if dotted.is_empty() {
            return Ok(TwinPath::root());
        }
        let segments: Vec<String> = dotted.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(TwinPathError::EmptySegment { key: dotted.to_string() });
        }
        Ok(TwinPath(segments))
    }

    /// The path a deployment content key writes inside the desired document:
    /// `properties.desired` is the root, `properties.desired.<a>.<b>` is `a.b`.
    pub fn from_desired_key(key: &str) -> Result<TwinPath, TwinPathError> {
        if key == DESIRED {
            return Ok(TwinPath::root());
        }
        match key.strip_prefix(DESIRED).and_then(|rest| rest.strip_prefix('.')) {
            Some(rest) => match TwinPath::parse(rest) {
                Ok(path) if !path.is_root() => Ok(path),
                _ => Err(TwinPathError::EmptySegment { key: key.to_string() }),
            },
            None => Err(TwinPathError::NotDesired { key: key.to_string() }),
        }
    }

    /// The content key that writes at this path of the desired document.
    pub fn desired_key(&self) -> String {
        if self.0.is_empty() { DESIRED.to_string() } else { format!("{DESIRED}.{self}") }
    }

    /// A path from segments read elsewhere (a query's property path), taken as they are.
    pub fn from_segments(segments: Vec<String>) -> TwinPath {
        TwinPath(segments)
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn into_segments(self) -> Vec<String> {
        self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at this path, if every segment names a member of an object.
    pub fn get<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(doc, |v, segment| v.get(segment))
    }

    /// Writes `value` at this path, replacing whatever is there. Objects are created on the
    /// way, and a non-object in the way is replaced by one, as a deeper write does on the hub.
    pub fn set(&self, doc: &mut Value, value: Value) {
        let Some((last, parents)) = self.0.split_last() else {
            *doc = value;
            return;
        };
        let mut cur = doc;
        for segment in parents {
            cur = force_object(cur).entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
        }
        force_object(cur).insert(last.clone(), value);
    }

    /// Removes and returns the value at this path. Nothing is created on the way: removing
    /// under a path that does not exist changes nothing. The root cannot be removed.
    pub fn remove(&self, doc: &mut Value) -> Option<Value> {
        let (last, parents) = self.0.split_last()?;
        let mut cur = doc;
        for segment in parents {
            cur = cur.get_mut(segment.as_str())?;
        }
        cur.as_object_mut()?.remove(last.as_str())
    }
}

/// Makes `value` an object and returns its map.
fn force_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("the value was made an object just above"),
    }
}

impl fmt::Display for TwinPath {
    /// Dotted, as deployments and messages write it; the root is the empty text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.join("."))
    }
}

impl From<Vec<String>> for TwinPath {
    fn from(segments: Vec<String>) -> TwinPath {
        TwinPath(segments)
    }
}

impl From<&[String]> for TwinPath {
    fn from(segments: &[String]) -> TwinPath {
        TwinPath(segments.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(s: &str) -> TwinPath {
        TwinPath::parse(s).unwrap()
    }

    #[test]
    fn dotted_paths_split_into_segments() {
        assert_eq!(p("modules.m.settings").segments(), ["modules", "m", "settings"]);
        assert!(p("").is_root());
        assert_eq!(TwinPath::parse("a..b"), Err(TwinPathError::EmptySegment { key: "a..b".into() }));
        assert_eq!(TwinPath::parse("a."), Err(TwinPathError::EmptySegment { key: "a.".into() }));
        assert_eq!(p("modules.m").to_string(), "modules.m");
    }

    #[test]
    fn desired_keys_name_a_path_inside_the_desired_document() {
        assert_eq!(TwinPath::from_desired_key("properties.desired"), Ok(TwinPath::root()));
        assert_eq!(TwinPath::from_desired_key("properties.desired.modules.m"), Ok(p("modules.m")));
        assert_eq!(
            TwinPath::from_desired_key("properties.desiredx"),
            Err(TwinPathError::NotDesired { key: "properties.desiredx".into() })
        );
        assert_eq!(
            TwinPath::from_desired_key("properties.reported.x"),
            Err(TwinPathError::NotDesired { key: "properties.reported.x".into() })
        );
        assert_eq!(
            TwinPath::from_desired_key("properties.desired."),
            Err(TwinPathError::EmptySegment { key: "properties.desired.".into() })
        );
        assert_eq!(
            TwinPath::from_desired_key("properties.desired.a..b"),
            Err(TwinPathError::EmptySegment { key: "properties.desired.a..b".into() })
        );
        assert_eq!(p("routes.r").desired_key(), "properties.desired.routes.r");
        assert_eq!(TwinPath::root().desired_key(), "properties.desired");
    }

    #[test]
    fn get_follows_object_members_only() {
        let doc = json!({"a": {"b": [1], "c": 2}});
        assert_eq!(p("a.c").get(&doc), Some(&json!(2)));
        assert_eq!(p("").get(&doc), Some(&doc));
        assert_eq!(p("a.b.0").get(&doc), None);
        assert_eq!(p("a.x").get(&doc), None);
    }

    #[test]
    fn set_creates_objects_and_replaces_what_is_in_the_way() {
        let mut doc = json!({"a": 1, "keep": true});
        p("a.b.c").set(&mut doc, json!("v"));
        assert_eq!(doc, json!({"a": {"b": {"c": "v"}}, "keep": true}));
        p("a.b").set(&mut doc, json!(2));
        assert_eq!(doc, json!({"a": {"b": 2}, "keep": true}));
        p("").set(&mut doc, json!({"x": 1}));
        assert_eq!(doc, json!({"x": 1}));
        let mut scalar = json!(3);
        p("y").set(&mut scalar, json!(4));
        assert_eq!(scalar, json!({"y": 4}));
    }

    #[test]
    fn remove_never_creates() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "s": 3});
        assert_eq!(p("a.b").remove(&mut doc), Some(json!(1)));
        assert_eq!(doc, json!({"a": {"c": 2}, "s": 3}));
        assert_eq!(p("x.y").remove(&mut doc), None);
        assert_eq!(p("s.t").remove(&mut doc), None);
        assert_eq!(p("").remove(&mut doc), None);
        assert_eq!(doc, json!({"a": {"c": 2}, "s": 3}));
    }
}
