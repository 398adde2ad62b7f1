//! Hub backends: where configurations and device twins come from and go to.
//!
//! Every backend — a snapshot directory, the REST API of a real hub, the local emulator —
//! implements [`Hub`], so plan, explain, query and apply work the same against each.

pub mod connection;
pub mod rest;
pub mod shape;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;

pub use crate::model::fleet::{FleetRead, Projection, ReadError};
pub use snapshot::{Snapshot, SnapshotError};

pub use crate::model::{Configuration, Twin};

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HubError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Snapshot(#[from] SnapshotError),

    #[error("deployment {id} already exists on the hub (ConfigurationAlreadyExists)")]
    #[diagnostic(
        code(fleetform::hub::already_exists),
        help("another apply may have created it; plan again to see the hub as it is now")
    )]
    AlreadyExists { id: String },

    #[error("deployment {id} changed on the hub since it was read (etag mismatch, HTTP 412)")]
    #[diagnostic(
        code(fleetform::hub::precondition_failed),
        help("someone else changed it; plan again and review the new plan before applying")
    )]
    PreconditionFailed { id: String },

    #[error("deployment {id} does not exist on the hub (HTTP 404)")]
    #[diagnostic(code(fleetform::hub::not_found), help("plan again to see the hub as it is now"))]
    NotFound { id: String },

    #[error("the hub already holds {limit} configurations, its limit")]
    #[diagnostic(
        code(fleetform::hub::too_many),
        help("a standard hub holds at most 100 deployments (layered included); delete unused ones or prune orphans")
    )]
    TooManyConfigurations { limit: usize },

    #[error("{operation}: HTTP {status} {code}: {message}")]
    #[diagnostic(code(fleetform::hub::http))]
    Http {
        operation: String,
        status: u16,
        code: String,
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Connection(#[from] connection::ConnectionStringError),

    #[error("{operation}: {message}")]
    #[diagnostic(
        code(fleetform::hub::unreachable),
        help("check the network, the HostName in the connection string, and --endpoint if given")
    )]
    Unreachable { operation: String, message: String },

    #[error("{0}")]
    #[diagnostic(code(fleetform::hub::other))]
    Other(String),

    /// A failure of a pure stage's visitor, carried through a backend's batch reader.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(ReadError),
}

/// Reading a hub: its configurations and the twins of its devices.
pub trait HubRead: Send + Sync {
    /// What this hub is, for messages (`snapshot examples/campus/hub`, a host name).
    fn describe(&self) -> String;

    /// Which hub this is, stable across the ways of naming it: saved plans record it and
    /// apply refuses a plan made against another one. The display text is not enough:
    /// `--hub ./hub` and `--hub hub` are one snapshot, and two emulators behind the same
    /// URL at different times are two hubs. Defaults to [`HubRead::describe`].
    fn identity(&self) -> String {
        self.describe()
    }

    /// Every configuration, device-management ones included (the list endpoint).
    fn configurations(&self) -> Result<Vec<Configuration>, HubError>;

    /// Every device twin, handed to `visit` in batches, possibly from several threads at
    /// once. `projection` says which parts of the twin are needed.
    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError>;

    /// Every module twin (`SELECT * FROM devices.modules`), in batches like
    /// [`HubRead::device_batches`].
    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError>;

    /// One configuration (`GET /configurations/{id}`), with its metrics where the hub
    /// computes them; [`HubError::NotFound`] when it does not exist.
    fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.configurations()?.into_iter().find(|c| c.id == id).ok_or_else(|| HubError::NotFound { id: id.to_string() })
    }

    /// Whether [`HubRead::configuration`] returns live system metrics (a hub or the
    /// emulator does; a snapshot directory only holds whatever was exported).
    fn live_metrics(&self) -> bool {
        false
    }
}

/// Changing a hub's configurations, each write guarded by the etag it was read with.
pub trait HubWrite: Send + Sync {
    /// Creates a configuration; fails with [`HubError::AlreadyExists`] if the id exists.
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError>;

    /// Replaces the mutable fields of a configuration, if its etag is still `etag`.
    fn update_configuration(&self, config: &Configuration, etag: &str) -> Result<Configuration, HubError>;

    /// Deletes a configuration, if its etag is still `etag`.
    fn delete_configuration(&self, id: &str, etag: &str) -> Result<(), HubError>;
}

/// A hub that can be read and written: what apply needs. Every backend is one.
pub trait Hub: HubRead + HubWrite {}

impl<T: HubRead + HubWrite + ?Sized> Hub for T {}

/// A hub seen as the pure stages see it: a fleet of device twins. Read errors keep
/// their diagnostics (code, help) whole.
pub struct Fleet<'h>(pub &'h dyn HubRead);

impl FleetRead for Fleet<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn identity(&self) -> String {
        self.0.identity()
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        // The visitor's own error travels through the backend as a HubError and comes
        // back out unchanged.
        self.0.device_batches(projection, &|batch| visit(batch).map_err(HubError::Read)).map_err(read_error)
    }

    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), ReadError> + Sync),
    ) -> Result<(), ReadError> {
        self.0.module_batches(&|batch| visit(batch).map_err(HubError::Read)).map_err(read_error)
    }
}

/// A backend's error as a read error: the visitor's own comes back out unchanged.
fn read_error(e: HubError) -> ReadError {
    match e {
        HubError::Read(inner) => inner,
        other => ReadError::new(other),
    }
}

/// A snapshot directory as a hub. Writes rewrite `configurations.json` atomically (temp
/// file, fsync, rename), so a crash leaves either the old or the new file, never a mix.
pub struct SnapshotHub {
    snapshot: Snapshot,
    dir: PathBuf,
    /// Serialises writers within this process; each write re-reads the file first.
    write_lock: Mutex<()>,
}

/// The most configurations a standard hub holds (IOTHUB.md §4).
pub const MAX_CONFIGURATIONS: usize = 100;

impl SnapshotHub {
    pub fn open(dir: &Path) -> Result<SnapshotHub, HubError> {
        Ok(SnapshotHub { snapshot: Snapshot::open(dir)?, dir: dir.to_path_buf(), write_lock: Mutex::new(()) })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn modify<T>(&self, change: impl FnOnce(&mut Vec<Configuration>) -> Result<T, HubError>) -> Result<T, HubError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut configs = self.configurations()?;
        let out = change(&mut configs)?;
        snapshot::SnapshotWriter::create(&self.dir)?.write_configurations(&configs)?;
        Ok(out)
    }
}

/// A fresh etag, quoted as the hub sends it.
fn new_etag(id: &str, now: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{id}\n{now}\n{}", std::process::id()).as_bytes());
    format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(&digest[..9]))
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl HubRead for SnapshotHub {
    fn describe(&self) -> String {
        format!("snapshot {}", self.dir.display())
    }

    /// The canonical path: symlinks, `.` and `..` resolved, so every spelling of the
    /// directory is one hub.
    fn identity(&self) -> String {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("snapshot {}", dir.display())
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        // Read every time (apply writes it) and never defaulted: a file removed since
        // `open` is an error, not a hub without deployments.
        let path = self.dir.join(snapshot::CONFIGURATIONS_FILE);
        Ok(snapshot::read_configurations(&path)?)
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        const BATCH: usize = 2048;
        let snapshot = Snapshot::open(&self.dir)?.with_projection(projection);
        if snapshot.devices_file().is_none() {
            return Ok(());
        }
        let failure: Mutex<Option<HubError>> = Mutex::new(None);
        let leftovers = snapshot.par_fold_devices(0, Vec::new, |batch: &mut Vec<Twin>, twin| {
            batch.push(twin);
            if batch.len() == BATCH {
                let full = std::mem::take(batch);
                if let Err(e) = visit(full) {
                    failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                }
            }
        })?;
        for batch in leftovers.into_iter().filter(|b| !b.is_empty()) {
            visit(batch)?;
        }
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        const BATCH: usize = 2048;
        if self.snapshot.modules_file().is_none() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(BATCH);
        for twin in self.snapshot.module_twins()? {
            batch.push(twin?.into_value());
            if batch.len() == BATCH {
                visit(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            visit(batch)?;
        }
        Ok(())
    }
}

impl HubWrite for SnapshotHub {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        self.modify(|configs| {
            if configs.iter().any(|c| c.id == config.id) {
                return Err(HubError::AlreadyExists { id: config.id.clone() });
            }
            if configs.len() >= MAX_CONFIGURATIONS {
                return Err(HubError::TooManyConfigurations { limit: MAX_CONFIGURATIONS });
            }
            let now = now_utc();
            let mut created = config.clone();
            created.created_time_utc = Some(now.clone());
            created.last_updated_time_utc = Some(now.clone());
            created.etag = Some(new_etag(&config.id, &now));
            configs.push(created.clone());
            Ok(created)
        })
    }

    fn update_configuration(&self, config: &Configuration, etag: &str) -> Result<Configuration, HubError> {
        self.modify(|configs| {
            let existing = configs
                .iter_mut()
                .find(|c| c.id == config.id)
                .ok_or_else(|| HubError::NotFound { id: config.id.clone() })?;
            if existing.etag.as_deref() != Some(etag) {
                return Err(HubError::PreconditionFailed { id: config.id.clone() });
            }
            // Content and id are immutable on the hub; only these fields change.
            let now = now_utc();
            existing.labels = config.labels.clone();
            existing.priority = config.priority;
            existing.target_condition = config.target_condition.clone();
            existing.metrics = config.metrics.clone();
            existing.last_updated_time_utc = Some(now.clone());
            existing.etag = Some(new_etag(&config.id, &now));
            Ok(existing.clone())
        })
    }

    fn delete_configuration(&self, id: &str, etag: &str) -> Result<(), HubError> {
        self.modify(|configs| {
            let pos =
                configs.iter().position(|c| c.id == id).ok_or_else(|| HubError::NotFound { id: id.to_string() })?;
            if etag != "*" && configs[pos].etag.as_deref() != Some(etag) {
                return Err(HubError::PreconditionFailed { id: id.to_string() });
            }
            configs.remove(pos);
            Ok(())
        })
    }
}

/// The environment variable read when no `--hub` is given.
pub const CONNECTION_STRING_ENV: &str = "IOTHUB_CONNECTION_STRING";

/// Opens the hub a `--hub` argument names:
/// - a directory is a snapshot;
/// - `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` is a hub reached over REST;
/// - `env:NAME` reads that connection string from variable `NAME`;
/// - nothing falls back to `IOTHUB_CONNECTION_STRING`.
///
/// `endpoint` replaces the REST base URL (`https://<HostName>`), for the emulator and for
/// sovereign clouds; it makes no sense with a snapshot.
pub fn open(spec: Option<&str>, endpoint: Option<&str>) -> Result<Box<dyn Hub>, HubError> {
    open_with(spec, endpoint, rest::RestOptions::default())
}

/// [`open`] with the REST backend's tuning (deadline, backoff…); `options.endpoint` is
/// replaced by `endpoint`. The options are ignored for a snapshot directory.
pub fn open_with(
    spec: Option<&str>,
    endpoint: Option<&str>,
    options: rest::RestOptions,
) -> Result<Box<dyn Hub>, HubError> {
    let from_env;
    let spec = match spec {
        Some(s) => s,
        None => match std::env::var(CONNECTION_STRING_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                from_env = v;
                from_env.as_str()
            }
            _ => {
                return Err(HubError::Other(format!(
                    "no hub given: pass --hub DIR (a snapshot directory, e.g. examples/campus/hub), --hub \"HostName=…\" \
                     or --hub env:NAME, or set FLEETFORM_HUB or {CONNECTION_STRING_ENV}"
                )));
            }
        },
    };
    let connection = if let Some(name) = spec.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|_| {
            HubError::Other(format!("--hub env:{name}: environment variable {name} is not set (or not UTF-8)"))
        })?;
        Some(value.parse::<connection::ConnectionString>()?)
    } else if connection::ConnectionString::looks_like(spec) {
        Some(spec.parse::<connection::ConnectionString>()?)
    } else {
        None
    };
    if let Some(connection) = connection {
        let options = rest::RestOptions { endpoint: endpoint.map(str::to_string), ..options };
        return Ok(Box::new(rest::RestHub::new(connection, options)?));
    }
    let path = Path::new(spec);
    if path.is_dir() {
        if endpoint.is_some() {
            return Err(HubError::Other(format!(
                "--endpoint applies to a hub reached by connection string, not to the snapshot directory {spec}"
            )));
        }
        return Ok(Box::new(SnapshotHub::open(path)?));
    }
    // A string with `=` or `;` that is neither a directory nor a recognisable connection
    // string may still be a mangled one: fail closed and do not echo it.
    if spec.contains(['=', ';']) {
        return Err(HubError::Other(
            "--hub: the value is not a directory and not a connection string (not shown: it may hold a key); --hub takes \
             a snapshot directory, a connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…) or env:NAME"
                .to_string(),
        ));
    }
    Err(HubError::Other(format!(
        "--hub {spec}: no such directory; --hub takes a snapshot directory, a connection string \
         (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…) or env:NAME"
    )))
}

/// What [`snapshot_from`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub configurations: usize,
    pub devices: u64,
    pub module_twins: u64,
}

/// Writes a snapshot directory from any hub: `configurations.json`, `devices.jsonl` and
/// `modules.jsonl` (every module twin: `$edgeAgent`, `$edgeHub` and custom modules). Each
/// file appears atomically, so an interrupted run leaves the previous files whole.
pub fn snapshot_from(hub: &dyn Hub, out: &Path) -> Result<SnapshotSummary, HubError> {
    snapshot_with(hub, out, false)
}

/// [`snapshot_from`], optionally redacted (`snapshot --redact`): every value that is a
/// secret by its place or is one of the hub's secrets becomes
/// [`crate::plan::redact::REDACTED`], in configurations and twins alike. The directory
/// and its files are owner-only either way.
pub fn snapshot_with(hub: &dyn Hub, out: &Path, redact: bool) -> Result<SnapshotSummary, HubError> {
    let writer = snapshot::SnapshotWriter::create(out)?;
    writer.restrict_dir()?;
    let mut configurations = hub.configurations()?;
    let redactor = redact.then(|| crate::plan::Redactor::new(&[], &configurations));
    fn scrub<'a>(
        r: Option<&crate::plan::Redactor>,
        v: &'a serde_json::Value,
    ) -> std::borrow::Cow<'a, serde_json::Value> {
        match r {
            Some(r) => {
                let mut v = v.clone();
                r.redact_in_place(&mut v);
                std::borrow::Cow::Owned(v)
            }
            None => std::borrow::Cow::Borrowed(v),
        }
    }
    let devices = Mutex::new(writer.devices_file(snapshot::TwinFormat::JsonLines)?);
    hub.device_batches(Projection::Full, &|batch| {
        let mut file = devices.lock().unwrap_or_else(|e| e.into_inner());
        batch.iter().try_for_each(|t| file.push(scrub(redactor.as_ref(), t.value()).as_ref())).map_err(HubError::from)
    })?;
    let modules = Mutex::new(writer.module_twins_file(snapshot::TwinFormat::JsonLines)?);
    hub.module_batches(&|batch| {
        let mut file = modules.lock().unwrap_or_else(|e| e.into_inner());
        batch.iter().try_for_each(|t| file.push(scrub(redactor.as_ref(), t).as_ref())).map_err(HubError::from)
    })?;
    if let Some(r) = &redactor {
        for c in &mut configurations {
            if let Some(mc) = c.content.modules_content.as_mut() {
                for twin in mc.values_mut() {
                    twin.values_mut().for_each(|v| r.redact_in_place(v));
                }
            }
        }
    }
    // Twins first, configurations last: a directory with configurations.json is only ever
    // a complete snapshot of this run or an older one.
    let devices = devices.into_inner().unwrap_or_else(|e| e.into_inner());
    let device_count = devices.records();
    devices.commit()?;
    let modules = modules.into_inner().unwrap_or_else(|e| e.into_inner());
    let module_count = modules.records();
    modules.commit()?;
    writer.write_configurations(&configurations)?;
    Ok(SnapshotSummary { configurations: configurations.len(), devices: device_count, module_twins: module_count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with_devices() -> (tempfile::TempDir, SnapshotHub) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        let devices: String =
            (0..5000).map(|i| format!("{{\"deviceId\":\"d{i}\",\"capabilities\":{{\"iotEdge\":true}}}}\n")).collect();
        std::fs::write(dir.path().join("devices.jsonl"), devices).unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        (dir, hub)
    }

    #[test]
    fn writes_are_guarded_by_etags_and_ids() {
        let (_dir, hub) = hub_with_devices();
        let c = Configuration { id: "a-1".into(), priority: 1, ..Default::default() };
        let created = hub.create_configuration(&c).unwrap();
        assert!(created.created_time_utc.is_some());
        assert!(matches!(hub.create_configuration(&c), Err(HubError::AlreadyExists { .. })));
        let etag = created.etag.clone().unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let mut changed = created.clone();
        changed.priority = 5;
        let updated = hub.update_configuration(&changed, &etag).unwrap();
        assert_eq!(updated.priority, 5);
        assert_ne!(updated.etag.as_deref(), Some(etag.as_str()));
        assert!(matches!(hub.update_configuration(&changed, &etag), Err(HubError::PreconditionFailed { .. })));
        assert!(matches!(hub.delete_configuration("a-1", &etag), Err(HubError::PreconditionFailed { .. })));
        hub.delete_configuration("a-1", updated.etag.as_deref().unwrap()).unwrap();
        assert!(matches!(hub.delete_configuration("a-1", "*"), Err(HubError::NotFound { .. })));
        assert!(hub.configurations().unwrap().is_empty());
    }

    #[test]
    fn the_configuration_limit_is_enforced() {
        let (_dir, hub) = hub_with_devices();
        for i in 0..MAX_CONFIGURATIONS {
            hub.create_configuration(&Configuration { id: format!("c{i}"), ..Default::default() }).unwrap();
        }
        let over = hub.create_configuration(&Configuration { id: "one-more".into(), ..Default::default() });
        assert!(matches!(over, Err(HubError::TooManyConfigurations { limit: 100 })));
    }

    #[test]
    fn open_tells_the_hub_forms_apart() {
        let rest = open(Some("HostName=h.example;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"), None).unwrap();
        assert_eq!(rest.describe(), "hub h.example");
        let local = open(
            Some("HostName=h.example;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"),
            Some("http://127.0.0.1:1/"),
        )
        .unwrap();
        assert_eq!(local.describe(), "hub h.example at http://127.0.0.1:1");
        // One hub whatever the HostName's case or the endpoint; another HostName is another hub.
        assert_eq!(local.identity(), "hub h.example");
        let upper = open(Some("HostName=H.Example;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"), None).unwrap();
        assert_eq!(upper.identity(), rest.identity());
        let other = open(Some("HostName=h2.example;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"), None).unwrap();
        assert_ne!(other.identity(), rest.identity());
        let missing = open(Some("env:FLEETFORM_TEST_SURELY_UNSET_VARIABLE"), None).err().unwrap();
        assert!(missing.to_string().contains("FLEETFORM_TEST_SURELY_UNSET_VARIABLE is not set"), "{missing}");
        let bad_key = open(Some("HostName=h;SharedAccessKeyName=p;SharedAccessKey=@@@"), None).err().unwrap();
        assert!(matches!(bad_key, HubError::Connection(connection::ConnectionStringError::BadKey)));
        let (dir, _hub) = hub_with_devices();
        let both = open(dir.path().to_str(), Some("http://127.0.0.1:1")).err().unwrap();
        assert!(both.to_string().contains("--endpoint applies to a hub reached by connection string"), "{both}");
        assert_eq!(open(dir.path().to_str(), None).unwrap().describe(), format!("snapshot {}", dir.path().display()));
        let nowhere = open(Some("/no/such/dir"), None).err().unwrap();
        assert!(nowhere.to_string().contains("no such directory"), "{nowhere}");
        let bad_url = open(Some("HostName=h;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"), Some("127.0.0.1:1"));
        assert!(bad_url.err().unwrap().to_string().contains("expected a URL"));
    }

    #[test]
    fn every_device_is_visited_once_in_batches() {
        let (_dir, hub) = hub_with_devices();
        let seen = Mutex::new(Vec::new());
        hub.device_batches(Projection::Targeting, &|batch| {
            seen.lock().unwrap().extend(batch.into_iter().map(|t| t.device_id().to_string()));
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5000);
    }
}
