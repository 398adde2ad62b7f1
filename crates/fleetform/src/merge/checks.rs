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
    /// A condition compares a path with a literal of one JSON type, but on most IoT Edge
    /// twins that have the path it holds another type: a comparison of values of different
    /// types is undefined, never true, so those devices silently fall out of the condition
    /// (docs/hub-semantics.md#undefined).
    LiteralTypeMismatch {
        deployment: String,
        query: QueryKind,
        /// The metric's name, for a metric query.
        #[serde(skip_serializing_if = "Option::is_none")]
        metric: Option<String>,
        /// The wave's name, for a rollout wave's condition.
        #[serde(skip_serializing_if = "Option::is_none")]
        wave: Option<String>,
        path: String,
        /// The comparison as written.
        comparison: String,
        literal_type: JsonType,
        /// How many IoT Edge twins hold the path with each type, most first.
        fleet_types: Vec<TypeCount>,
    },
    /// A condition reads a path that no IoT Edge twin of the fleet has.
    PathOnNoTwin {
        deployment: String,
        query: QueryKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        metric: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        wave: Option<String>,
        path: String,
        /// The path with its first unknown segment replaced by the closest existing one.
        did_you_mean: Option<String>,
    },
    /// A deployment's target condition matches no IoT Edge device of the fleet.
    TargetsNoDevice { deployment: String },
    /// A replace changes which standard deployment wins on these devices between two of
    /// equal priority: the re-created one is newer, and the newest wins a tie
    /// (docs/hub-semantics.md#standard-winner).
    StandardWinnerFlips { priority: Priority, from: String, to: String },
    /// A metric names a fleetform deployment id literally (`configurations.[[kiosk-1a2b3c4d]]`):
    /// every content change of `names` re-creates it under a new id, and the metric then
    /// counts nothing (schema/language.md "`$self`").
    MetricNamesLiteralId { deployment: String, metric: String, id: String, names: String },
    /// A `FROM devices` metric reads a reported property that only the runtime's module
    /// twins carry (`$edgeAgent`, `$edgeHub`): a device twin does not have it, so the
    /// metric counts no row for it (docs/hub-semantics.md#custom-metrics).
    MetricReadsModuleTwinOnDevices { deployment: String, metric: String, path: String },
    /// The edgeAgent image's tag is a version older than 1.0.10, which introduced schema
    /// 1.1, while the deployment writes a newer schemaVersion (docs/hub-semantics.md#schema-versions).
    RuntimeImageOlderThanSchema { deployment: String, module: String, image: String, schema: String },
    /// A route reads from or sends to a module this deployment does not declare, one
    /// letter or so off a module it does declare.
    RouteModuleMisspelt { deployment: String, route: String, module: String, did_you_mean: String },
    /// A wave of a rollout targets fewer IoT Edge devices than its `min-devices`: the
    /// rollout will stop at that wave until a person lowers `min-devices` (docs/rollouts.md).
    WaveBelowMinDevices { deployment: String, wave: String, targeted: u64, min_devices: u64 },
}

/// Which query of a deployment a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QueryKind {
    /// The target condition.
    Target,
    /// A custom metric (its name is beside it).
    Metric,
    /// The condition of a rollout wave (its name is beside it).
    Wave,
}

/// "target", "metric `name`" or "rollout wave `name` condition", as the messages name a query.
fn query_label(kind: QueryKind, metric: &Option<String>, wave: &Option<String>) -> String {
    match (kind, metric, wave) {
        (QueryKind::Metric, Some(name), _) => format!("metric `{name}`"),
        (QueryKind::Metric, None, _) => "metric".to_owned(),
        (QueryKind::Wave, _, Some(name)) => format!("rollout wave `{name}` condition"),
        (QueryKind::Wave, _, None) => "rollout wave condition".to_owned(),
        (QueryKind::Target, ..) => "target".to_owned(),
    }
}

/// The JSON type of a twin value or of a query literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JsonType {
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl JsonType {
    pub const ALL: [JsonType; 6] =
        [JsonType::String, JsonType::Number, JsonType::Boolean, JsonType::Null, JsonType::Object, JsonType::Array];

    pub fn of(value: &Value) -> JsonType {
        match value {
            Value::String(_) => JsonType::String,
            Value::Number(_) => JsonType::Number,
            Value::Bool(_) => JsonType::Boolean,
            Value::Null => JsonType::Null,
            Value::Object(_) => JsonType::Object,
            Value::Array(_) => JsonType::Array,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
            JsonType::Object => "object",
            JsonType::Array => "array",
        }
    }

    /// How a value of this type is written in the query language, for hints.
    fn example(self) -> &'static str {
        match self {
            JsonType::String => "a quoted string such as '2'",
            JsonType::Number => "a bare number such as 2",
            JsonType::Boolean => "true or false",
            JsonType::Null => "IS_NULL(…)",
            JsonType::Object | JsonType::Array => "a path below it",
        }
    }
}

/// How many twins hold a path with one JSON type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub json_type: JsonType,
    pub twins: u64,
}

/// A warning's stable code (`W001`…), for `plan --fail-on` and for reviewers who decide
/// which warnings block a change. Codes are never reused for another meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WarningCode(pub u16);

impl std::fmt::Display for WarningCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "W{:03}", self.0)
    }
}

/// In JSON a code is its text (`"W011"`).
impl schemars::JsonSchema for WarningCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WarningCode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^W[0-9]{3}$" })
    }
}

impl Serialize for WarningCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a text is not a warning code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error(
    "`{given}` is not a warning code (known: W001 to W018, W020 and W021; README \"Reading a plan as a reviewer\")"
)]
#[diagnostic(
    code(fleetform::warning_code),
    help(
        "warning codes are W followed by three digits, such as W006; README \"Reading a plan as a reviewer\" lists them"
    )
)]
pub struct BadWarningCode {
    pub given: String,
}

impl std::str::FromStr for WarningCode {
    type Err = BadWarningCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadWarningCode { given: s.to_owned() };
        let digits = s.strip_prefix(['W', 'w']).ok_or_else(bad)?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u16 = digits.parse().map_err(|_| bad())?;
        WarningCode::KNOWN.contains(&WarningCode(n)).then_some(WarningCode(n)).ok_or_else(bad)
    }
}

impl WarningCode {
    /// Every code a warning of `plan` or `validate` can carry.
    pub const KNOWN: [WarningCode; 20] = [
        WarningCode(1),
        WarningCode(2),
        WarningCode(3),
        WarningCode(4),
        WarningCode(5),
        WarningCode(6),
        WarningCode(7),
        WarningCode(8),
        WarningCode(9),
        WarningCode(10),
        WarningCode(11),
        WarningCode(12),
        WarningCode(13),
        WarningCode(14),
        WarningCode(15),
        WarningCode(16),
        WarningCode(17),
        WarningCode(18),
        WarningCode(20),
        WarningCode(21),
    ];
    /// `validate`: equal-priority standard deployments whose targets can overlap.
    pub const VALIDATE_EQUAL_PRIORITY: WarningCode = WarningCode(20);
}

impl Check {
    /// The check's stable code (README "Reading a plan as a reviewer").
    pub fn code(&self) -> WarningCode {
        WarningCode(match self {
            Check::RouteToMissingModule { .. } => 1,
            Check::RouteFromMissingModule { .. } => 2,
            Check::InvalidRoute { .. } => 3,
            Check::TwinDesiredTooLarge { .. } => 4,
            Check::TwinValueTooLarge { .. } => 5,
            Check::EqualPriorityStandards { .. } => 6,
            Check::EqualPriorityLayeredOverlap { .. } => 7,
            Check::LayeredWithoutStandard { .. } => 8,
            Check::LayeredNeverApplies { .. } => 9,
            Check::Unmanaged => 10,
            Check::LiteralTypeMismatch { .. } => 11,
            Check::PathOnNoTwin { .. } => 12,
            Check::TargetsNoDevice { .. } => 13,
            Check::StandardWinnerFlips { .. } => 14,
            Check::MetricNamesLiteralId { .. } => 15,
            Check::MetricReadsModuleTwinOnDevices { .. } => 16,
            Check::RuntimeImageOlderThanSchema { .. } => 17,
            Check::RouteModuleMisspelt { .. } => 18,
            Check::WaveBelowMinDevices { .. } => 21,
        })
    }

    /// Fleet-wide findings about a query, not about the devices it concerns: their device
    /// count is not worth printing when it is 0.
    fn about_query(&self) -> bool {
        matches!(
            self,
            Check::PathOnNoTwin { .. }
                | Check::TargetsNoDevice { .. }
                | Check::MetricNamesLiteralId { .. }
                | Check::MetricReadsModuleTwinOnDevices { .. }
                | Check::RuntimeImageOlderThanSchema { .. }
                | Check::RouteModuleMisspelt { .. }
                | Check::WaveBelowMinDevices { .. }
        )
    }
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
            Check::LiteralTypeMismatch {
                deployment,
                query,
                metric,
                wave,
                path,
                comparison,
                literal_type,
                fleet_types,
            } => {
                let query = query_label(*query, metric, wave);
                let counts: Vec<String> =
                    fleet_types.iter().map(|t| format!("{} {}", t.json_type.word(), t.twins)).collect();
                let most = fleet_types.first().map_or(JsonType::Null, |t| t.json_type);
                write!(
                    f,
                    "`{deployment}` {query}: `{comparison}` compares with a {}, but `{path}` is a {} on most IoT Edge twins that have it ({}): a comparison across types is never true, so the condition misses them; write {}",
                    literal_type.word(),
                    most.word(),
                    counts.join(", "),
                    most.example()
                )
            }
            Check::PathOnNoTwin { deployment, query, metric, wave, path, did_you_mean } => {
                let query = query_label(*query, metric, wave);
                write!(f, "`{deployment}` {query} reads `{path}`, which no IoT Edge twin of the fleet has")?;
                match did_you_mean {
                    Some(p) => write!(f, "; did you mean `{p}`?"),
                    None => Ok(()),
                }
            }
            Check::StandardWinnerFlips { priority, from, to } => write!(
                f,
                "the standard deployment these devices run flips from `{from}` to `{to}`, only because the replace makes `{to}` the newer of two at priority {priority}"
            ),
            Check::TargetsNoDevice { deployment } => {
                write!(f, "`{deployment}` targets no IoT Edge device of the fleet: apply would roll it out nowhere")
            }
            Check::MetricNamesLiteralId { deployment, metric, id, names } if names == deployment => write!(
                f,
                "`{deployment}` metric `{metric}` names `{id}` literally: this id changes with every content change, and the metric then counts nothing; write configurations.[[$self]]"
            ),
            Check::MetricNamesLiteralId { deployment, metric, id, names } => write!(
                f,
                "`{deployment}` metric `{metric}` names `{id}` literally: that id of `{names}` changes with every content change of `{names}`, and the metric then counts nothing"
            ),
            Check::MetricReadsModuleTwinOnDevices { deployment, metric, path } => write!(
                f,
                "`{deployment}` metric `{metric}` reads `{path}` FROM devices, but only the runtime's module twins report it, so no device twin row matches; write SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND …"
            ),
            Check::RuntimeImageOlderThanSchema { deployment, module, image, schema } => {
                let setting =
                    if module == "edgeAgent" { "runtime schema=\"1.0\"" } else { "edge-hub … schema=\"1.0\"" };
                write!(
                    f,
                    "`{deployment}` pairs {module} image `{image}` with ${module} schemaVersion {schema}: schema 1.1 came with IoT Edge 1.0.10, which an older {module} does not read (the agent reports 412, invalid schema version); use an image of 1.0.10 or later, or `{setting}`"
                )
            }
            Check::RouteModuleMisspelt { deployment, route, module, did_you_mean } => write!(
                f,
                "`{deployment}` route `{route}` names module `{module}`, which it does not declare; did you mean `{did_you_mean}`?"
            ),
            Check::WaveBelowMinDevices { deployment, wave, targeted, min_devices } => write!(
                f,
                "`{deployment}` rollout wave `{wave}` targets {targeted} IoT Edge device{}, fewer than min-devices={min_devices}: the rollout will stop there until a person lowers min-devices",
                if *targeted == 1 { "" } else { "s" }
            ),
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
    /// [`Check::code`], kept beside the check so every output shows the same code.
    pub code: WarningCode,
    #[serde(flatten)]
    pub check: Check,
    pub devices: u64,
    pub samples: Vec<String>,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.check)?;
        if self.devices == 0 && self.check.about_query() {
            return Ok(());
        }
        let plural = if self.devices == 1 { "" } else { "s" };
        write!(f, " ({} device{plural}", self.devices)?;
        if !self.samples.is_empty() {
            let more = if self.devices > self.samples.len() as u64 { ", …" } else { "" };
            write!(f, ": {}{more}", self.samples.join(", "))?;
        }
        f.write_str(")")
    }
}

impl Warning {
    pub fn new(check: Check, devices: &DeviceSample) -> Self {
        Warning { code: check.code(), check, devices: devices.count, samples: devices.samples.clone() }
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
            "W010 devices matched by no deployment are unmanaged and keep their current modules (6 devices: a, b, c, d, e, …)"
        );
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["code"], "W010");
        assert_eq!(json["check"], "unmanaged");
        assert_eq!(json["devices"], 6);
        assert_eq!(json["samples"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn warning_codes_parse_only_when_known() {
        assert_eq!("W012".parse::<WarningCode>(), Ok(WarningCode(12)));
        assert_eq!("w006".parse::<WarningCode>(), Ok(WarningCode(6)));
        assert_eq!("W015".parse::<WarningCode>(), Ok(WarningCode(15)));
        for bad in ["W12", "W0120", "E012", "W999", "W019", "", "W-01"] {
            assert!(bad.parse::<WarningCode>().is_err(), "{bad}");
        }
        assert_eq!(WarningCode(7).to_string(), "W007");
    }

    #[test]
    fn json_size_matches_serialisation() {
        let v = serde_json::json!({"a": [1, "two", {"b": null}]});
        assert_eq!(json_size(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
