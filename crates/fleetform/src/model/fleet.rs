//! A fleet as the pure stages read it: device twins in batches, from wherever they live.
//! The hub backends provide it; `plan`, `explain` and `query` only ever see this trait.

use serde_json::Value;

use super::{Twin, TwinPath};

/// Why reading the fleet failed: the backend's own diagnostic, kept whole (code, help,
/// labels), so that a stage above reports it exactly as the backend wrote it.
pub struct ReadError(Box<dyn miette::Diagnostic + Send + Sync + 'static>);

impl ReadError {
    pub fn new(e: impl miette::Diagnostic + Send + Sync + 'static) -> Self {
        ReadError(Box::new(e))
    }

    /// The backend's error, for callers that want to tell its kinds apart.
    pub fn inner(&self) -> &(dyn miette::Diagnostic + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl miette::Diagnostic for ReadError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn miette::Diagnostic> {
        self.0.diagnostic_source()
    }
}

/// Every device twin of a fleet, in batches, possibly from several threads at once.
pub trait FleetRead: Send + Sync {
    /// What this fleet is, for messages (`snapshot examples/campus/hub`, a host name).
    fn describe(&self) -> String;

    /// Which fleet this is, stable across the ways of naming it (see the hub's identity).
    fn identity(&self) -> String {
        self.describe()
    }

    /// Hands every device twin to `visit`, in batches; `projection` says which parts of
    /// the twin are needed.
    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError>;

    /// Hands every module twin (`SELECT * FROM devices.modules` rows) to `visit`, in
    /// batches like [`FleetRead::device_batches`].
    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), ReadError> + Sync)) -> Result<(), ReadError>;

    /// Hands `visit` what the `$edgeAgent` twin of each of `devices` reports running, in
    /// batches. A device without an `$edgeAgent` twin gets no report. `plan` calls this only
    /// for devices whose modules it cannot infer (unmanaged today, or about to get a
    /// deployment without modules). `edge_devices`, the fleet's IoT Edge devices, is what
    /// reading every agent twin instead would cost: a backend that can ask for just these
    /// devices does, unless asking costs more. By default the module twins are scanned.
    fn agent_reports(
        &self,
        devices: &DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<AgentReport>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        let _ = edge_devices;
        AgentReport::scan(devices, |each| self.module_batches(each), visit)
    }
}

/// Device ids in byte order, each once, with a compact index of them. `plan` asks for the
/// agent reports of up to every device of a fleet (on an empty hub, a million ids) and
/// both the reader and the plan look every report up: a `HashMap<&str, u32>` beside the
/// list was 50 MB at a million, a binary search of the list a dozen cache misses a lookup
/// (1.5 s of CPU). The index holds only positions (5 bytes a slot) and finds an id with
/// one probe and one comparison, as a rule.
#[derive(Clone, Default)]
pub struct DeviceIds {
    ids: Vec<String>,
    index: hashbrown::HashTable<u32>,
}

impl DeviceIds {
    /// The ids sorted, duplicates dropped (linear when they come sorted already).
    pub fn new(mut ids: Vec<String>) -> DeviceIds {
        ids.sort_unstable();
        ids.dedup();
        let mut index = hashbrown::HashTable::with_capacity(ids.len());
        for (at, id) in ids.iter().enumerate() {
            index.insert_unique(hash_id(id), at as u32, |&i| hash_id(&ids[i as usize]));
        }
        DeviceIds { ids, index }
    }

    /// Where `id` is in [`DeviceIds::as_slice`], if it is one of them.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.find(hash_id(id), |&i| self.ids[i as usize] == id).map(|&i| i as usize)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl std::fmt::Debug for DeviceIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.ids).finish()
    }
}

/// Fx, not SipHash: the ids come from the user's own fleet, not from a peer choosing
/// collisions, and SipHash was most of a million lookups' time.
fn hash_id(id: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(id)
}

impl FromIterator<String> for DeviceIds {
    fn from_iter<I: IntoIterator<Item = String>>(ids: I) -> DeviceIds {
        DeviceIds::new(ids.into_iter().collect())
    }
}

/// The module twin of the IoT Edge agent, which reports what the device runs.
pub const EDGE_AGENT: &str = "$edgeAgent";

/// What one device's `$edgeAgent` twin reports running.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentReport {
    pub device_id: String,
    /// `properties.reported.modules`: module name → what the agent reports of it (its
    /// `settings.image`, `runtimeStatus`…); system modules are reported apart and are not
    /// in it. `None` when the twin reports no such map (an agent that never connected).
    pub modules: Option<Value>,
}

impl AgentReport {
    /// The reports of `devices` from a scan of every module twin (`module_batches`): the
    /// default of both read traits, [`FleetRead`] and the hub's, each with its own error.
    pub fn scan<E>(
        devices: &DeviceIds,
        module_batches: impl FnOnce(&(dyn Fn(Vec<Value>) -> Result<(), E> + Sync)) -> Result<(), E>,
        visit: &(dyn Fn(Vec<AgentReport>) -> Result<(), E> + Sync),
    ) -> Result<(), E> {
        module_batches(&|batch| {
            let reports: Vec<AgentReport> =
                batch.iter().filter_map(|m| AgentReport::of_module_twin(m, devices)).collect();
            if reports.is_empty() { Ok(()) } else { visit(reports) }
        })
    }

    /// The report of `twin`, a module twin as `SELECT * FROM devices.modules` returns it,
    /// when it is the `$edgeAgent` twin of one of `wanted`.
    pub fn of_module_twin(twin: &Value, wanted: &DeviceIds) -> Option<AgentReport> {
        if twin.get("moduleId").and_then(Value::as_str) != Some(EDGE_AGENT) {
            return None;
        }
        let device = twin.get("deviceId").and_then(Value::as_str)?;
        if !wanted.contains(device) {
            return None;
        }
        let modules = twin.pointer("/properties/reported/modules").filter(|m| m.is_object()).cloned();
        Some(AgentReport { device_id: device.to_string(), modules })
    }
}

/// A fleet held in memory: twins built by a test, or read once and planned against
/// several times.
#[derive(Clone, Debug, Default)]
pub struct Twins {
    /// What [`FleetRead::describe`] says.
    pub name: String,
    pub devices: Vec<Twin>,
    /// Module twins as the hub returns them.
    pub modules: Vec<Value>,
}

impl Twins {
    pub fn new(name: impl Into<String>, devices: Vec<Twin>) -> Self {
        Twins { name: name.into(), devices, modules: Vec::new() }
    }
}

impl FleetRead for Twins {
    /// Every twin whole whatever the projection: it is already in memory, and a
    /// projection only ever promises the parts asked for, never their absence.
    fn device_batches(
        &self,
        _projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        one_batch(&self.devices, visit)
    }

    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), ReadError> + Sync)) -> Result<(), ReadError> {
        one_batch(&self.modules, visit)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// All of `items` as a single batch; none at all when there are none, as a backend does.
fn one_batch<T: Clone>(items: &[T], visit: &dyn Fn(Vec<T>) -> Result<(), ReadError>) -> Result<(), ReadError> {
    if items.is_empty() {
        return Ok(());
    }
    visit(items.to_vec())
}

/// How much of each device twin the readers keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Projection {
    /// The whole twin as the hub returned it.
    #[default]
    Full,
    /// Only what an IoT Edge target condition may reference (docs/hub-semantics.md: `deviceId`,
    /// `tags`, `properties.reported`) and `capabilities` (which devices are Edge). The
    /// rest is checked as JSON but never built into values, which is most of the cost
    /// of reading a twin: the plan over a million devices reads with this.
    Targeting,
    /// Only `deviceId`, the IoT Edge capability and these paths, of IoT Edge devices: what a
    /// plan needs once it knows every condition it evaluates. A backend may return more
    /// (a snapshot reader may read [`Projection::Targeting`]), never less.
    Paths(ReadPaths),
}

/// The twin paths a set of conditions reads, each at most once, shortest first when one
/// is a prefix of another (then only the prefix is read: it holds the longer one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadPaths(std::sync::Arc<[TwinPath]>);

impl ReadPaths {
    /// The paths, deduplicated and with paths under another one dropped. Property names
    /// are case-insensitive in the query language, so duplicates are found ignoring case.
    pub fn new(paths: impl IntoIterator<Item = TwinPath>) -> ReadPaths {
        // Char by char, as the query language's name comparison folds case (`str::to_lowercase`
        // would treat a final sigma apart and merge names the lookup tells apart).
        let lower = |p: &TwinPath| {
            p.segments().iter().map(|s| s.chars().flat_map(char::to_lowercase).collect::<String>()).collect::<Vec<_>>()
        };
        let mut all: Vec<(Vec<String>, TwinPath)> = paths.into_iter().map(|p| (lower(&p), p)).collect();
        all.sort();
        let mut kept: Vec<(Vec<String>, TwinPath)> = Vec::new();
        for (key, path) in all {
            if kept.last().is_some_and(|(k, _)| key.starts_with(k)) {
                continue;
            }
            kept.push((key, path));
        }
        ReadPaths(kept.into_iter().map(|(_, p)| p).collect())
    }

    pub fn paths(&self) -> &[TwinPath] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_a_sorted_set_found_by_position() {
        let ids: DeviceIds = ["d10", "d2", "d1", "d2", "D1"].map(String::from).into_iter().collect();
        // Byte order: upper case first, "d10" before "d2"; the second "d2" is dropped.
        assert_eq!(ids.as_slice(), ["D1", "d1", "d10", "d2"]);
        assert_eq!(ids.position("d10"), Some(2));
        assert_eq!(ids.position("d2"), Some(3));
        assert!(ids.contains("D1") && !ids.contains("d3") && !ids.contains(""));
        assert!(DeviceIds::default().is_empty() && !DeviceIds::default().contains("d1"));
        // Many ids (the index grows past its first tables): each found where it sits.
        let many: DeviceIds = (0..20_000).rev().map(|i| format!("dev-{i}")).collect();
        for (at, id) in many.as_slice().iter().enumerate() {
            assert_eq!(many.position(id), Some(at));
        }
        assert!(many.as_slice().windows(2).all(|w| w[0] < w[1]));
        assert!(!many.contains("dev-20000") && !many.contains("dev-") && !many.contains("DEV-1"));
    }
}
