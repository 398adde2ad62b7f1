//! Device twins of the wrong shape: `tags` that is a string, `capabilities.iotEdge: "yes"`,
//! `properties: null`. The hub never returns those, but hand-written or mangled snapshots
//! (and proxies) can; the readers then see "no tags", "not an Edge device", "nothing
//! reported", and the device silently drops out of every target. [`ShapeChecked`] wraps a
//! hub, counts such twins while they are read, and says so with sample device ids.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use super::{Configuration, Etag, Hub, HubError, HubRead, HubWrite, IfMatch, Projection, Twin};

/// How many device ids a warning names per kind of problem.
pub const SAMPLES: usize = 5;

/// One way a device twin's member has the wrong JSON type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShapeIssue {
    /// `tags` present but not an object: read as "no tags".
    TagsNotObject,
    /// `capabilities` present but not an object: read as "not an IoT Edge device".
    CapabilitiesNotObject,
    /// `capabilities.iotEdge` present but not `true`/`false`: read as "not an IoT Edge device".
    IotEdgeNotBoolean,
    /// `properties` present but not an object: read as "nothing desired or reported".
    PropertiesNotObject,
    /// `properties.reported` present but not an object: read as "nothing reported".
    ReportedNotObject,
    /// `properties.desired` present but not an object: read as "nothing desired".
    DesiredNotObject,
}

impl ShapeIssue {
    /// What the member is and how it was read.
    pub fn describe(self) -> &'static str {
        match self {
            ShapeIssue::TagsNotObject => "`tags` is not an object (read as no tags)",
            ShapeIssue::CapabilitiesNotObject => "`capabilities` is not an object (read as not IoT Edge)",
            ShapeIssue::IotEdgeNotBoolean => "`capabilities.iotEdge` is not true or false (read as not IoT Edge)",
            ShapeIssue::PropertiesNotObject => "`properties` is not an object (read as nothing desired or reported)",
            ShapeIssue::ReportedNotObject => "`properties.reported` is not an object (read as nothing reported)",
            ShapeIssue::DesiredNotObject => "`properties.desired` is not an object (read as nothing desired)",
        }
    }
}

/// The problems of one twin. A projected twin ([`Projection::Targeting`]) keeps no
/// `properties.desired`, only a `null` in its place when it was not an object, and its
/// non-object `properties` arrive as `null`.
pub fn issues(twin: &Twin) -> Vec<ShapeIssue> {
    let mut out = Vec::new();
    let value = twin.value();
    let not_object = |v: Option<&Value>| v.is_some_and(|v| !v.is_object());
    if not_object(value.get("tags")) {
        out.push(ShapeIssue::TagsNotObject);
    }
    match value.get("capabilities") {
        Some(Value::Object(c)) if c.get("iotEdge").is_some_and(|v| !v.is_boolean()) => {
            out.push(ShapeIssue::IotEdgeNotBoolean);
        }
        Some(Value::Object(_)) | None => {}
        Some(_) => out.push(ShapeIssue::CapabilitiesNotObject),
    }
    match value.get("properties") {
        Some(Value::Object(p)) => {
            if not_object(p.get("reported")) {
                out.push(ShapeIssue::ReportedNotObject);
            }
            if not_object(p.get("desired")) {
                out.push(ShapeIssue::DesiredNotObject);
            }
        }
        Some(_) => out.push(ShapeIssue::PropertiesNotObject),
        None => {}
    }
    out
}

/// Per kind of problem: how many twins, and the first few device ids (in the order read;
/// sorted, so that parallel readers report the same ones).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShapeReport {
    /// Twins with at least one problem.
    pub twins: u64,
    pub issues: BTreeMap<ShapeIssue, IssueCount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IssueCount {
    pub count: u64,
    /// The lexicographically smallest device ids with this problem, at most [`SAMPLES`].
    pub samples: Vec<String>,
}

impl ShapeReport {
    pub fn is_empty(&self) -> bool {
        self.twins == 0
    }

    pub fn add(&mut self, twin: &Twin) {
        let found = issues(twin);
        if found.is_empty() {
            return;
        }
        self.twins += 1;
        for issue in found {
            let entry = self.issues.entry(issue).or_default();
            entry.count += 1;
            // Keep the smallest ids: the same samples whatever order batches arrive in.
            let id = twin.device_id();
            if entry.samples.len() < SAMPLES || entry.samples.last().is_some_and(|last| id < last.as_str()) {
                let at = entry.samples.binary_search_by(|s| s.as_str().cmp(id)).unwrap_or_else(|i| i);
                if entry.samples.get(at).map(String::as_str) != Some(id) {
                    entry.samples.insert(at, id.to_string());
                    entry.samples.truncate(SAMPLES);
                }
            }
        }
    }

    fn merge(&mut self, other: ShapeReport) {
        self.twins += other.twins;
        for (issue, count) in other.issues {
            let entry = self.issues.entry(issue).or_default();
            entry.count += count.count;
            entry.samples.extend(count.samples);
            entry.samples.sort();
            entry.samples.dedup();
            entry.samples.truncate(SAMPLES);
        }
    }
}

impl fmt::Display for ShapeReport {
    /// `warning: 3 device twins have the wrong shape …` and one line per kind of problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {} device twin{} of the wrong shape, read as if the member were absent (such devices match no target that needs it):",
            self.twins,
            if self.twins == 1 { " is" } else { "s are" }
        )?;
        for (issue, count) in &self.issues {
            let more = count.count.saturating_sub(count.samples.len() as u64);
            write!(
                f,
                "\n  {}: {} twin{}: {}",
                issue.describe(),
                count.count,
                if count.count == 1 { "" } else { "s" },
                count.samples.join(", ")
            )?;
            if more > 0 {
                write!(f, ", … and {more} more")?;
            }
        }
        Ok(())
    }
}

/// A hub whose device twins are checked for their shape as they are read. The report
/// covers the latest complete read of the device twins (plan reads them once; counting a
/// second read on top would double every figure).
pub struct ShapeChecked {
    inner: Box<dyn Hub>,
    report: Mutex<ShapeReport>,
}

impl ShapeChecked {
    pub fn new(inner: Box<dyn Hub>) -> Self {
        ShapeChecked { inner, report: Mutex::new(ShapeReport::default()) }
    }

    pub fn report(&self) -> ShapeReport {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// So that callers holding a `Box<dyn Hub>` and a `ShapeChecked` read alike.
impl AsRef<dyn Hub + 'static> for ShapeChecked {
    fn as_ref(&self) -> &(dyn Hub + 'static) {
        self
    }
}

impl HubRead for ShapeChecked {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        self.inner.configurations()
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        let tally = Mutex::new(ShapeReport::default());
        self.inner.device_batches(projection, &|batch| {
            let mut local = ShapeReport::default();
            for twin in &batch {
                local.add(twin);
            }
            if !local.is_empty() {
                tally.lock().unwrap_or_else(|e| e.into_inner()).merge(local);
            }
            visit(batch)
        })?;
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = tally.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(())
    }

    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), HubError> + Sync)) -> Result<(), HubError> {
        self.inner.module_batches(visit)
    }

    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<crate::model::AgentReport>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.inner.agent_reports(devices, edge_devices, visit)
    }

    fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.inner.configuration(id)
    }

    fn live_metrics(&self) -> bool {
        self.inner.live_metrics()
    }
}

impl HubWrite for ShapeChecked {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        self.inner.create_configuration(config)
    }

    fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError> {
        self.inner.update_configuration(config, etag)
    }

    fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError> {
        self.inner.delete_configuration(id, if_match)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin(v: Value) -> Twin {
        Twin::from_value(v).unwrap()
    }

    #[test]
    fn wrong_shapes_are_named_and_right_ones_pass() {
        let good = twin(json!({"deviceId": "ok", "tags": {}, "capabilities": {"iotEdge": false},
                               "properties": {"desired": {}, "reported": {}}}));
        assert_eq!(issues(&good), []);
        assert_eq!(issues(&twin(json!({"deviceId": "bare"}))), []);
        assert_eq!(issues(&twin(json!({"deviceId": "t", "tags": "prod"}))), [ShapeIssue::TagsNotObject]);
        assert_eq!(
            issues(&twin(json!({"deviceId": "e", "capabilities": {"iotEdge": "yes"}}))),
            [ShapeIssue::IotEdgeNotBoolean]
        );
        assert_eq!(issues(&twin(json!({"deviceId": "c", "capabilities": true}))), [ShapeIssue::CapabilitiesNotObject]);
        assert_eq!(issues(&twin(json!({"deviceId": "p", "properties": null}))), [ShapeIssue::PropertiesNotObject]);
        assert_eq!(
            issues(&twin(json!({"deviceId": "r", "properties": {"reported": [1], "desired": 3}}))),
            [ShapeIssue::ReportedNotObject, ShapeIssue::DesiredNotObject]
        );
    }

    #[test]
    fn reports_keep_counts_and_the_smallest_sample_ids() {
        let mut report = ShapeReport::default();
        for i in (0..12).rev() {
            report.add(&twin(json!({"deviceId": format!("d{i:02}"), "tags": "x"})));
        }
        report.add(&twin(json!({"deviceId": "fine"})));
        assert_eq!(report.twins, 12);
        let tags = &report.issues[&ShapeIssue::TagsNotObject];
        assert_eq!(tags.count, 12);
        assert_eq!(tags.samples, ["d00", "d01", "d02", "d03", "d04"]);
        let text = report.to_string();
        assert!(text.starts_with("warning: 12 device twins are of the wrong shape"), "{text}");
        assert!(
            text.contains("`tags` is not an object (read as no tags): 12 twins: d00, d01, d02, d03, d04, … and 7 more"),
            "{text}"
        );
    }
}
