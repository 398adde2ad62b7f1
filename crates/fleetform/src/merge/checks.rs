//! Per-device checks on stacks and merged manifests: what the hub accepts but a device
//! would suffer from (docs/hub-semantics.md#per-device-checks).
//!
//! Checks are computed once per group of devices sharing a match set (and the manifest
//! checks once per distinct manifest), then summed into [`Warning`]s that carry a device
//! count and up to [`SAMPLE_SIZE`] sample device ids.

use std::io;

use serde::Serialize;
use serde_json::Value;

use super::{EDGE_AGENT, EDGE_HUB, EffectiveManifest, MergeDeployment, SkipReason, Stack, route_text};
use crate::model::Priority;
use crate::route::parse_route;

/// Desired properties of one twin are limited to 32 KB (docs/hub-semantics.md#limits), counted by
/// the hub's size rule ([`crate::spec::limits::hub_twin_size`]), as `validate` counts them.
pub const TWIN_DESIRED_LIMIT: usize = crate::spec::limits::TWIN_DESIRED_LIMIT;
/// One property value is limited to 4 KB.
pub const TWIN_VALUE_LIMIT: usize = 4 * 1024;
/// How many sample device ids a group or a warning keeps.
pub const SAMPLE_SIZE: usize = 5;

/// One finding, without the devices it concerns. JSON: `{"check": "<kebab-case>", ...}`.
///
/// The derived order (variant, then fields) is the order warnings are reported in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Check {
    /// A route delivers to `BrokeredEndpoint("/modules/<module>/...")` but the merged
    /// manifest has no module `<module>`.
    RouteToMissingModule { route: String, module: String, from: String },
    /// A route reads `/messages/modules/<module>/...` but the merged manifest has no
    /// module `<module>`.
    RouteFromMissingModule { route: String, module: String, from: String },
    /// A merged route does not parse; the edge hub would reject the whole configuration.
    InvalidRoute { route: String, from: String, message: String },
    /// A twin's merged desired properties exceed 32 KB.
    TwinDesiredTooLarge { twin: String, bytes: usize, limit: usize },
    /// A single string value exceeds 4 KB.
    TwinValueTooLarge { twin: String, path: String, bytes: usize, limit: usize, from: String },
    /// Several standard deployments of the same priority match: the newest wins, so the
    /// result depends on creation time.
    EqualPriorityStandards { priority: Priority, winner: String, losers: Vec<String> },
    /// Two layered deployments of equal priority write the same path: the newest wins.
    EqualPriorityLayeredOverlap { twin: String, path: String, priority: Priority, winner: String, loser: String },
    /// A layered deployment lands on devices with no standard deployment: those devices
    /// get no full manifest (the agent reports 417).
    LayeredWithoutStandard { deployment: String },
    /// A layered deployment applies to none of the devices it targets (its priority is
    /// never above the standard deployment it meets, or there never is one).
    LayeredNeverApplies { deployment: String },
    /// Devices matched by no deployment: unmanaged, they keep their current modules.
    Unmanaged,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::RouteToMissingModule { route, module, from } => {
                write!(f, "route `{route}` (from `{from}`) sends to module `{module}`, which the device does not run")
            }
            Check::RouteFromMissingModule { route, module, from } => {
                write!(f, "route `{route}` (from `{from}`) reads from module `{module}`, which the device does not run")
            }
            Check::InvalidRoute { route, from, message } => {
                write!(f, "route `{route}` (from `{from}`) is invalid: {message}")
            }
            Check::TwinDesiredTooLarge { twin, bytes, limit } => {
                write!(f, "merged desired properties of `{twin}` are {bytes} bytes, over the hub's {limit}-byte limit")
            }
            Check::TwinValueTooLarge { twin, path, bytes, limit, from } => {
                write!(f, "`{twin}` value `{path}` (from `{from}`) is {bytes} bytes, over the hub's {limit}-byte limit")
            }
            Check::EqualPriorityStandards { priority, winner, losers } => write!(
                f,
                "standard deployments `{winner}` and `{}` both match at priority {priority}; `{winner}` wins only because it is newer",
                losers.join("`, `")
            ),
            Check::EqualPriorityLayeredOverlap { twin, path, priority, winner, loser } => write!(
                f,
                "layered deployments `{winner}` and `{loser}` both write `{twin}` `{path}` at priority {priority}; the newer `{winner}` wins"
            ),
            Check::LayeredWithoutStandard { deployment } => write!(
                f,
                "layered deployment `{deployment}` lands on devices with no standard deployment: they get no full manifest"
            ),
            Check::LayeredNeverApplies { deployment } => {
                write!(f, "layered deployment `{deployment}` applies to none of the devices it targets")
            }
            Check::Unmanaged => {
                f.write_str("devices matched by no deployment are unmanaged and keep their current modules")
            }
        }
    }
}

/// A device count with the smallest few device ids, so that summing groups in any order
/// gives the same samples.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceSample {
    pub count: u64,
    pub samples: Vec<String>,
}

impl DeviceSample {
    pub fn add(&mut self, device_id: &str) {
        self.count += 1;
        self.offer(device_id);
    }

    fn offer(&mut self, device_id: &str) {
        if self.samples.len() == SAMPLE_SIZE && self.samples.last().is_some_and(|last| last.as_str() <= device_id) {
            return;
        }
        if let Err(at) = self.samples.binary_search_by(|s| s.as_str().cmp(device_id)) {
            self.samples.insert(at, device_id.to_owned());
            self.samples.truncate(SAMPLE_SIZE);
        }
    }

    pub fn merge(&mut self, other: &DeviceSample) {
        self.count += other.count;
        for id in &other.samples {
            self.offer(id);
        }
    }
}

/// A check with the devices it concerns. JSON: the check's fields, plus `devices` (count)
/// and `samples` (up to 5 device ids, smallest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Warning {
    #[serde(flatten)]
    pub check: Check,
    pub devices: u64,
    pub samples: Vec<String>,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.devices == 1 { "" } else { "s" };
        write!(f, "{} ({} device{plural}", self.check, self.devices)?;
        if !self.samples.is_empty() {
            let more = if self.devices > self.samples.len() as u64 { ", …" } else { "" };
            write!(f, ": {}{more}", self.samples.join(", "))?;
        }
        f.write_str(")")
    }
}

impl Warning {
    pub fn new(check: Check, devices: &DeviceSample) -> Self {
        Warning { check, devices: devices.count, samples: devices.samples.clone() }
    }
}

/// Counts bytes instead of storing them: sizes are measured without building the text.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serialised size of a JSON value in bytes (compact, as the hub stores it).
pub fn json_size(value: &Value) -> usize {
    let mut count = ByteCount(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        // Writing a `Value` to a counter cannot fail; count what was written regardless.
        Err(_) => count.0,
    }
}

fn origin_id(manifest: &EffectiveManifest, twin: &str, path: &[&str]) -> String {
    manifest.provenance.origin(twin, path).map(|(_, o)| o.from.clone()).unwrap_or_default()
}

fn oversized_strings<'v>(
    manifest: &EffectiveManifest,
    twin: &str,
    path: &mut Vec<&'v str>,
    value: &'v Value,
    out: &mut Vec<Check>,
) {
    match value {
        Value::String(s) if s.len() > TWIN_VALUE_LIMIT => {
            out.push(Check::TwinValueTooLarge {
                twin: twin.to_owned(),
                path: path.join("."),
                bytes: s.len(),
                limit: TWIN_VALUE_LIMIT,
                from: origin_id(manifest, twin, path),
            });
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k);
                oversized_strings(manifest, twin, path, v, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            // An array is one twin value: its elements have no path of their own.
            for v in items {
                oversized_strings(manifest, twin, path, v, out);
            }
        }
        _ => {}
    }
}

/// Checks that depend only on the merged manifest: unmanaged devices, equal-priority
/// layered overlaps, routes against modules, sizes.
pub fn manifest_checks(manifest: &EffectiveManifest) -> Vec<Check> {
    let mut out = Vec::new();
    if manifest.unmanaged {
        out.push(Check::Unmanaged);
    }
    out.extend(manifest.conflicts.iter().map(|c| Check::EqualPriorityLayeredOverlap {
        twin: c.twin.clone(),
        path: c.path.clone(),
        priority: c.priority,
        winner: c.winner.clone(),
        loser: c.loser.clone(),
    }));
    if !manifest.is_managed() {
        return out;
    }
    if let Some(routes) = manifest.routes() {
        for (name, value) in routes {
            let from = origin_id(manifest, EDGE_HUB, &["routes", name]);
            let Some(text) = route_text(value) else {
                out.push(Check::InvalidRoute {
                    route: name.clone(),
                    from,
                    message: "a route is a string or an object with a `route` string".into(),
                });
                continue;
            };
            let route = match parse_route(text) {
                Ok(route) => route,
                Err(e) => {
                    out.push(Check::InvalidRoute { route: name.clone(), from, message: e.message });
                    continue;
                }
            };
            if let Some(module) = route.source.source_module()
                && !manifest.has_module(module)
            {
                out.push(Check::RouteFromMissingModule {
                    route: name.clone(),
                    module: module.to_owned(),
                    from: from.clone(),
                });
            }
            if let Some(module) = route.sink.sink_module()
                && !manifest.has_module(module)
            {
                out.push(Check::RouteToMissingModule { route: name.clone(), module: module.to_owned(), from });
            }
        }
    }
    let twins = [(EDGE_AGENT, &manifest.edge_agent), (EDGE_HUB, &manifest.edge_hub)]
        .into_iter()
        .chain(manifest.twins.iter().map(|(k, v)| (k.as_str(), v)));
    for (twin, doc) in twins {
        let bytes = crate::spec::limits::hub_twin_size(doc);
        if bytes > TWIN_DESIRED_LIMIT {
            out.push(Check::TwinDesiredTooLarge { twin: twin.to_owned(), bytes, limit: TWIN_DESIRED_LIMIT });
        }
        oversized_strings(manifest, twin, &mut Vec::new(), doc, &mut out);
    }
    out
}

/// Checks that depend on the stack: equal-priority standards, layered deployments without
/// a standard.
pub fn stack_checks(deployments: &[MergeDeployment], stack: &Stack) -> Vec<Check> {
    let mut out = Vec::new();
    let mut losers = Vec::new();
    for skipped in &stack.skipped {
        match &skipped.reason {
            SkipReason::LostTie { .. } => losers.push(skipped.id.to_string()),
            SkipReason::NoStandard => out.push(Check::LayeredWithoutStandard { deployment: skipped.id.to_string() }),
            _ => {}
        }
    }
    if let (Some(winner), Some(index), false) = (&stack.standard, stack.standard_index(), losers.is_empty()) {
        out.push(Check::EqualPriorityStandards {
            priority: deployments.get(index as usize).map_or(Priority::MIN, |d| d.priority),
            winner: winner.to_string(),
            losers,
        });
    }
    out
}

/// Every per-device check for one device (or group): [`manifest_checks`] and
/// [`stack_checks`], sorted. Fleet-wide checks ([`Check::LayeredNeverApplies`]) need the
/// whole fleet: see [`super::Fleet::warnings`].
pub fn device_checks(deployments: &[MergeDeployment], stack: &Stack, manifest: &EffectiveManifest) -> Vec<Check> {
    let mut out = manifest_checks(manifest);
    out.extend(stack_checks(deployments, stack));
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_the_smallest_ids_whatever_the_order() {
        let mut a = DeviceSample::default();
        for id in ["d9", "d3", "d7", "d1", "d5", "d2", "d8", "d3"] {
            a.add(id);
        }
        assert_eq!(a.count, 8);
        assert_eq!(a.samples, vec!["d1", "d2", "d3", "d5", "d7"]);
        let mut b = DeviceSample::default();
        b.add("d0");
        b.add("d6");
        b.merge(&a);
        assert_eq!(b.count, 10);
        assert_eq!(b.samples, vec!["d0", "d1", "d2", "d3", "d5"]);
    }

    #[test]
    fn warnings_display_counts_and_samples() {
        let mut s = DeviceSample::default();
        for id in ["a", "b", "c", "d", "e", "f"] {
            s.add(id);
        }
        let w = Warning::new(Check::Unmanaged, &s);
        assert_eq!(
            w.to_string(),
            "devices matched by no deployment are unmanaged and keep their current modules (6 devices: a, b, c, d, e, …)"
        );
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["check"], "unmanaged");
        assert_eq!(json["devices"], 6);
        assert_eq!(json["samples"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn json_size_matches_serialisation() {
        let v = serde_json::json!({"a": [1, "two", {"b": null}]});
        assert_eq!(json_size(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
