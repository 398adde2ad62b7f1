//! Reading a device twin's JSON for a known set of conditions: only the paths they read
//! are built into values, everything else is checked as JSON and skipped.
//!
//! A generated twin is about 1.7 KB of JSON of which a plan's hundred target conditions
//! read a few dozen bytes; building the whole `serde_json::Value` tree (maps, owned keys
//! and strings) was a third of the time of planning over a million devices.
//!
//! What a projected twin holds, for paths `P` ([`ReadPaths`]):
//! - `deviceId` and `capabilities` whole (the id and the IoT Edge capability,
//!   docs/hub-semantics.md#targeting);
//! - every path of `P` whole, under every spelling of its segments that matches ignoring
//!   case: the query language looks a property up by its exact name first, then by a
//!   case-insensitive scan (docs/hub-semantics.md#query-language), so keeping all the
//!   spellings keeps the lookup's answer;
//! - the containers on the way (`tags`, `properties`, `properties.reported`,
//!   `properties.desired` always, so that the shape check reports a twin alike whichever
//!   way it was read) as objects of the kept members, or `null` when they are not objects
//!   (a lookup below a non-object finds nothing either way).
//!
//! Anything that is not an object at the top becomes `null`, so that the caller reports
//! "not a JSON object" exactly as for a full read.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::eval::eq_ignore_case;
use crate::model::ReadPaths;

/// Top-level members kept whole whatever the conditions read.
const ALWAYS_WHOLE: [&str; 2] = ["deviceId", "capabilities"];
/// Containers kept (as objects of their kept members) so that their shape stays visible.
const ALWAYS_ROUTED: [&[&str]; 3] = [&["tags"], &["properties", "reported"], &["properties", "desired"]];

/// Which members of an object to keep.
#[derive(Clone, Debug, Default)]
struct Node {
    /// Member names (as the conditions spell them; matched ignoring case) and what to keep
    /// of each.
    members: Vec<(Box<str>, Keep)>,
}

#[derive(Clone, Debug)]
enum Keep {
    Whole,
    Within(Node),
}

impl Node {
    fn member(&self, key: &str) -> Option<&Keep> {
        self.members.iter().find(|(name, _)| eq_ignore_case(name, key)).map(|(_, keep)| keep)
    }

    /// Adds `path` below this node; `whole` keeps its last segment whole, else only routes
    /// through it. A path under one kept whole adds nothing.
    fn add(&mut self, path: &[&str], whole: bool) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let at = match self.members.iter().position(|(name, _)| eq_ignore_case(name, first)) {
            Some(at) => at,
            None => {
                self.members.push(((*first).into(), Keep::Within(Node::default())));
                self.members.len() - 1
            }
        };
        let keep = &mut self.members[at].1;
        match keep {
            Keep::Whole => {}
            Keep::Within(_) if rest.is_empty() && whole => *keep = Keep::Whole,
            Keep::Within(node) => node.add(rest, whole),
        }
    }
}

/// Reads twins keeping only what conditions reading `paths` can see; build it once per
/// set of conditions and use it for every twin (`Sync`: share it between threads).
///
/// ```
/// use fleetform::model::{ReadPaths, TwinPath};
/// use fleetform::query::TwinProjector;
///
/// let paths = ReadPaths::new([TwinPath::parse("tags.location.building").unwrap()]);
/// let projector = TwinProjector::new(&paths);
/// let twin = projector.parse(br#"{"deviceId":"d1","tags":{"Location":{"building":"20","floor":3}},"etag":"x"}"#)?;
/// assert_eq!(twin, serde_json::json!({"deviceId":"d1","tags":{"Location":{"building":"20"}}}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TwinProjector {
    root: Node,
}

impl TwinProjector {
    pub fn new(paths: &ReadPaths) -> TwinProjector {
        let mut root = Node::default();
        for name in ALWAYS_WHOLE {
            root.add(&[name], true);
        }
        for route in ALWAYS_ROUTED {
            root.add(route, false);
        }
        for path in paths.paths() {
            let segments: Vec<&str> = path.segments().iter().map(String::as_str).collect();
            root.add(&segments, true);
        }
        TwinProjector { root }
    }

    /// Parses one twin's JSON (the whole text must be one value), keeping only what the
    /// paths need. Syntax errors are serde_json's, with its line and column.
    pub fn parse(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let value = Projected { node: &self.root, top: true }.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// The visitor methods for everything but an object: arrays are skipped (still checked as
/// JSON) and every non-object stands as `null`. Shared by the projected readers, whose
/// only difference is which members of an object they keep.
macro_rules! non_objects_are_null {
    () => {
        fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Value, S::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Value::Null)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_str<E>(self, _: &str) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}
pub(crate) use non_objects_are_null;

/// A map key, borrowed from the input when it has no escapes (most keys): skipped
/// members then cost no allocation at all.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// One object on a kept route; anything else stands as `null`.
struct Projected<'n> {
    node: &'n Node,
    /// The twin itself, whose non-object form the caller reports.
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Projected<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Projected<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.top { "a twin object" } else { "a JSON value" })
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.node.member(&key) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Keep::Whole) => {
                    let value = map.next_value::<Value>()?;
                    out.insert(key.into_owned(), value);
                }
                Some(Keep::Within(node)) => {
                    let value = map.next_value_seed(Projected { node, top: false })?;
                    out.insert(key.into_owned(), value);
                }
            }
        }
        Ok(Value::Object(out))
    }

    crate::query::project::non_objects_are_null!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TwinPath;
    use serde_json::json;

    fn projector(paths: &[&str]) -> TwinProjector {
        TwinProjector::new(&ReadPaths::new(paths.iter().map(|p| TwinPath::parse(p).unwrap())))
    }

    #[test]
    fn keeps_the_paths_every_spelling_and_the_containers() {
        let p = projector(&["tags.env", "properties.reported.fw"]);
        let twin = br#"{"deviceId":"d","etag":"AAAA","capabilities":{"iotEdge":true},
            "tags":{"env":"prod","ENV":"x","other":{"deep":[1,2]}},
            "properties":{"desired":{"$version":3,"big":"yyyy"},"reported":{"fw":"1.2","Fw":"1.3","uptime":5}}}"#;
        assert_eq!(
            p.parse(twin).unwrap(),
            json!({"deviceId":"d","capabilities":{"iotEdge":true},
                "tags":{"env":"prod","ENV":"x"},
                "properties":{"desired":{},"reported":{"fw":"1.2","Fw":"1.3"}}})
        );
    }

    #[test]
    fn a_prefix_keeps_everything_below_it() {
        let p = projector(&["tags.location.building", "tags.location"]);
        let twin = br#"{"deviceId":"d","tags":{"location":{"building":"20","floor":[1]},"x":1}}"#;
        assert_eq!(p.parse(twin).unwrap(), json!({"deviceId":"d","tags":{"location":{"building":"20","floor":[1]}}}));
    }

    #[test]
    fn non_objects_on_a_route_stand_as_null() {
        let p = projector(&["tags.location.building"]);
        assert_eq!(
            p.parse(br#"{"deviceId":"d","tags":{"location":"x"},"properties":5}"#).unwrap(),
            json!({"deviceId":"d","tags":{"location":null},"properties":null})
        );
        assert_eq!(p.parse(br#"["d"]"#).unwrap(), Value::Null);
        assert_eq!(p.parse(b"7").unwrap(), Value::Null);
    }

    #[test]
    fn skipped_members_are_still_checked_as_json() {
        let p = projector(&["tags.env"]);
        let e = p.parse(b"{\"deviceId\":\"d\",\"etag\":\"\\q\"}").unwrap_err();
        assert!(e.is_syntax(), "{e}");
        let e = p.parse(br#"{"deviceId":"d"} x"#).unwrap_err();
        assert_eq!(e.column(), 18, "{e}");
    }
}
