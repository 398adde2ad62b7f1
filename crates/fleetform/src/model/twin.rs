//! Device and module twins as the hub's query and twin endpoints return them.
//!
//! A twin is kept as the `serde_json::Value` the hub sent, because target conditions and
//! metric queries may reference any path in it (docs/hub-semantics.md#query-language). The ids are copied out once
//! at read time: the plan looks them up for every device, and a `Value` lookup plus a
//! type check each time would be wasted work over a million twins.

use serde_json::{Map, Value};

/// One device twin (`SELECT * FROM devices` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    device_id: String,
    value: Value,
}

/// One module twin (`GET /twins/{deviceId}/modules/{moduleId}`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleTwin {
    device_id: String,
    module_id: String,
    value: Value,
}

/// Why a JSON value is not a twin. The snapshot reader adds the file and line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinShapeError {
    /// The value is not a JSON object.
    NotAnObject,
    /// A required id field is absent, not a string, or empty.
    MissingField(&'static str),
}

impl Twin {
    /// Wraps a device twin, checking that it is an object with a non-empty `deviceId`.
    pub fn from_value(value: Value) -> Result<Self, TwinShapeError> {
        let device_id = required_str(&value, "deviceId")?.to_owned();
        Ok(Twin { device_id, value })
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The whole twin as the hub returned it.
    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn into_value(self) -> Value {
        self.value
    }

    /// `capabilities.iotEdge = true`: only such devices are targeted by IoT Edge
    /// deployments (docs/hub-semantics.md#targeting). Anything else (absent, `false`, a string) is not Edge.
    pub fn is_edge(&self) -> bool {
        self.value.get("capabilities").and_then(|c| c.get("iotEdge")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// The `tags` object, if the twin has one.
    pub fn tags(&self) -> Option<&Map<String, Value>> {
        self.value.get("tags").and_then(Value::as_object)
    }

    /// A value by dotted path (`tags.location.building`), exact-case. The query engine
    /// does its own case-insensitive lookup; this is for reports and tests.
    pub fn get_path(&self, dotted: &str) -> Option<&Value> {
        dotted.split('.').try_fold(&self.value, |v, segment| v.get(segment))
    }
}

impl ModuleTwin {
    /// Wraps a module twin, checking that it has non-empty `deviceId` and `moduleId`.
    pub fn from_value(value: Value) -> Result<Self, TwinShapeError> {
        let device_id = required_str(&value, "deviceId")?.to_owned();
        let module_id = required_str(&value, "moduleId")?.to_owned();
        Ok(ModuleTwin { device_id, module_id, value })
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn into_value(self) -> Value {
        self.value
    }

    /// The `configurations` map the hub keeps on `$edgeAgent` twins
    /// (`{ <id>: { status: "Targeted" | "Applied" } }`), if present.
    pub fn configurations(&self) -> Option<&Map<String, Value>> {
        self.value.get("configurations").and_then(Value::as_object)
    }
}

fn required_str<'a>(value: &'a Value, field: &'static str) -> Result<&'a str, TwinShapeError> {
    let object = value.as_object().ok_or(TwinShapeError::NotAnObject)?;
    match object.get(field).and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(TwinShapeError::MissingField(field)),
    }
}

/// The kinds of twin a snapshot file holds. Sealed: the snapshot reader relies on the
/// identity key being unique per file.
pub trait TwinRecord: Sized + Send + sealed::Sealed {
    /// Singular noun for messages ("device twin", "module twin").
    const WHAT: &'static str;

    fn from_value(value: Value) -> Result<Self, TwinShapeError>;

    /// Appends the identity that must be unique within one file to `out`.
    fn write_key(&self, out: &mut String);
}

impl TwinRecord for Twin {
    const WHAT: &'static str = "device twin";

    fn from_value(value: Value) -> Result<Self, TwinShapeError> {
        Twin::from_value(value)
    }

    fn write_key(&self, out: &mut String) {
        out.push_str(&self.device_id);
    }
}

impl TwinRecord for ModuleTwin {
    const WHAT: &'static str = "module twin";

    fn from_value(value: Value) -> Result<Self, TwinShapeError> {
        ModuleTwin::from_value(value)
    }

    fn write_key(&self, out: &mut String) {
        // Device ids cannot contain '/', so "device/module" is unambiguous and also
        // reads naturally in a duplicate report.
        out.push_str(&self.device_id);
        out.push('/');
        out.push_str(&self.module_id);
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Twin {}
    impl Sealed for super::ModuleTwin {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_twin_needs_a_string_device_id() {
        let t = Twin::from_value(json!({"deviceId": "d1", "capabilities": {"iotEdge": true},
            "tags": {"location": {"building": "20"}}}))
        .unwrap();
        assert_eq!(t.device_id(), "d1");
        assert!(t.is_edge());
        assert_eq!(t.get_path("tags.location.building"), Some(&json!("20")));
        assert_eq!(t.get_path("tags.location.floor"), None);
        assert_eq!(Twin::from_value(json!({"deviceId": 5})), Err(TwinShapeError::MissingField("deviceId")));
        assert_eq!(Twin::from_value(json!({"deviceId": ""})), Err(TwinShapeError::MissingField("deviceId")));
        assert_eq!(Twin::from_value(json!(["d1"])), Err(TwinShapeError::NotAnObject));
    }

    #[test]
    fn iot_edge_must_be_boolean_true() {
        let plain = Twin::from_value(json!({"deviceId": "d", "capabilities": {"iotEdge": "true"}})).unwrap();
        assert!(!plain.is_edge());
        let none = Twin::from_value(json!({"deviceId": "d"})).unwrap();
        assert!(!none.is_edge());
    }

    #[test]
    fn module_twin_key_joins_device_and_module() {
        let m =
            ModuleTwin::from_value(json!({"deviceId": "d", "moduleId": "$edgeAgent", "configurations": {}})).unwrap();
        let mut key = String::new();
        m.write_key(&mut key);
        assert_eq!(key, "d/$edgeAgent");
        assert!(m.configurations().unwrap().is_empty());
        assert_eq!(ModuleTwin::from_value(json!({"deviceId": "d"})), Err(TwinShapeError::MissingField("moduleId")));
    }
}
