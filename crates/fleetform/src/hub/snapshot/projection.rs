//! [`Projection::Targeting`] and [`Projection::Paths`]: reading a twin without building
//! what target conditions cannot reference (or do not), which dominates the cost of
//! planning over a large snapshot.

use serde_json::Value;

use crate::model::fleet::Projection;
use crate::query::TwinProjector;
use crate::query::project::Key;

/// Top-level twin members [`Projection::Targeting`] keeps, besides `properties.reported`.
const TARGETING_MEMBERS: [&str; 3] = ["deviceId", "capabilities", "tags"];

/// Builds the projected twin. Anything that is not an object becomes `null`, so that the
/// caller reports "not a JSON object" exactly as for a full read.
struct TargetingVisitor {
    /// Inside `properties`: keep `reported` only.
    properties: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for TargetingVisitor {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TargetingVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a twin object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        use serde::de::IgnoredAny;
        let mut out = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            // Property names are case-insensitive in the query language.
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if self.properties {
                if is("reported") {
                    out.insert(key.into_owned(), map.next_value::<Value>()?);
                } else if is("desired") {
                    // Not kept, but its shape is checked like a full read's (a `desired`
                    // that is not an object stands as `null`), so the wrong shape is
                    // reported whichever way the twin was read.
                    if !map.next_value_seed(IsObject)? {
                        out.insert(key.into_owned(), Value::Null);
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            } else if TARGETING_MEMBERS.iter().any(|m| is(m)) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else if is("properties") {
                let properties = map.next_value_seed(TargetingVisitor { properties: true })?;
                out.insert(key.into_owned(), properties);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }

    crate::query::project::non_objects_are_null!();
}

/// The members of a module twin that say what a device's agent reports running, by exact
/// name as `AgentReport::of_module_twin` looks them up: `deviceId` and `moduleId` at the
/// top, then `properties` → `reported` → `modules`, and of every module there only
/// `settings.image`, all a plan shows of what a device runs ([`crate::plan::Running`]).
/// Everything else is checked as JSON syntax and skipped (as every unread member is: a
/// number out of `f64`'s range or a lone surrogate escape there is not looked at): a module
/// twin is mostly the agent's runtime and system-module reports and each module's status,
/// exit codes and start times, which building as `Value`s (and freeing) made reading
/// `modules.jsonl` a fifth of an empty-hub plan's instructions. A module or container that
/// is not an object stands as `null`, which has no image either, as [`TargetingVisitor`]
/// does.
const AGENT_REPORT: Pick = Pick {
    path: &[
        Step::Member("properties"),
        Step::Member("reported"),
        Step::Member("modules"),
        Step::Every,
        Step::Member("settings"),
        Step::Member("image"),
    ],
    whole: &["deviceId", "moduleId"],
};

/// One step of a [`Pick`]'s path.
#[derive(Clone, Copy)]
enum Step {
    /// The member of this exact name.
    Member(&'static str),
    /// Every member.
    Every,
}

/// An object holding only the members on `path`, the last step's kept whole, and the
/// members named in `whole` kept whole beside them. A later duplicate replaces an earlier
/// member, as in a full read.
#[derive(Clone, Copy)]
struct Pick {
    path: &'static [Step],
    whole: &'static [&'static str],
}

impl<'de> serde::de::DeserializeSeed<'de> for Pick {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pick {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        let mut out = serde_json::Map::new();
        let rest = self.path.get(1..).unwrap_or_default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let on_path = self.path.first().is_some_and(|step| match step {
                Step::Member(name) => key == *name,
                Step::Every => true,
            });
            if on_path && !rest.is_empty() {
                out.insert(key.into_owned(), map.next_value_seed(Pick { path: rest, whole: &[] })?);
            } else if on_path || self.whole.contains(&key.as_ref()) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }

    crate::query::project::non_objects_are_null!();
}

/// Whether a value is a JSON object, read without building it.
struct IsObject;

impl<'de> serde::de::DeserializeSeed<'de> for IsObject {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IsObject {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(true)
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A [`Projection`] made ready for reading many twins: [`Projection::Paths`] builds its
/// path tree once per file, not once per twin.
#[derive(Clone, Debug)]
pub(super) enum Reading {
    Full,
    Targeting,
    Paths(TwinProjector),
    /// Module twins read for `$edgeAgent` reports only ([`AGENT_REPORT`]).
    AgentReports,
}

impl Reading {
    pub(super) fn new(projection: &Projection) -> Reading {
        match projection {
            Projection::Full => Reading::Full,
            Projection::Targeting => Reading::Targeting,
            Projection::Paths(paths) => Reading::Paths(TwinProjector::new(paths)),
        }
    }

    pub(super) fn parse(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        match self {
            Reading::Full => serde_json::from_slice(bytes),
            // Narrower projections are a promise of what is needed, not of what is absent.
            Reading::Targeting => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let value = serde::de::DeserializeSeed::deserialize(TargetingVisitor { properties: false }, &mut de)?;
                de.end()?;
                Ok(value)
            }
            Reading::Paths(projector) => projector.parse(bytes),
            Reading::AgentReports => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let value = serde::de::DeserializeSeed::deserialize(AGENT_REPORT, &mut de)?;
                de.end()?;
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Reading;

    #[test]
    fn agent_reports_keep_each_modules_image_and_nothing_else() {
        let twin = json!({
            "deviceId": "d1", "moduleId": "$edgeAgent", "etag": "x",
            "properties": {"desired": {"modules": {"A": {}}}, "reported": {
                "runtime": {"type": "docker"},
                "systemModules": {"edgeHub": {"settings": {"image": "hub:1.5"}}},
                "modules": {
                    "A": {"status": "running", "exitCode": 0, "settings": {"image": "a:1", "createOptions": "{}"}},
                    "B": {"settings": "not an object"},
                    "C": 7,
                    "D": {"settings": {"image": {"odd": true}}},
                },
            }},
        });
        let read = Reading::AgentReports.parse(twin.to_string().as_bytes()).unwrap();
        assert_eq!(
            read,
            json!({"deviceId": "d1", "moduleId": "$edgeAgent", "properties": {"reported": {"modules": {
                "A": {"settings": {"image": "a:1"}},
                "B": {"settings": null},
                "C": null,
                "D": {"settings": {"image": {"odd": true}}},
            }}}})
        );
        // A `modules` that is not an object stands as `null`: no report of modules.
        let odd = json!({"deviceId": "d1", "moduleId": "$edgeAgent", "properties": {"reported": {"modules": "x"}}});
        let read = Reading::AgentReports.parse(odd.to_string().as_bytes()).unwrap();
        assert_eq!(read["properties"]["reported"]["modules"], serde_json::Value::Null);
    }
}
