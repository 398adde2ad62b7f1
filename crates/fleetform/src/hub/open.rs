//! Which hub a `--hub` value names, and opening it.
//!
//! The text is turned into a [`HubSpec`] once, so that everything after knows whether it
//! holds a snapshot directory or a connection string, and no error past that point can
//! echo a text that may hold a key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::connection::{ConnectionString, ConnectionStringError};
use super::credential::{CredentialKind, EntraCredential};
use super::rest::{RestHub, RestOptions};
use super::snapshot::{SNAPSHOT_INFO_FILE, SnapshotHub};
use super::{Configuration, Etag, Hub, HubError, HubRead, HubWrite, IfMatch, Projection, Twin};

/// The environment variable read when no `--hub` is given.
pub const CONNECTION_STRING_ENV: &str = "IOTHUB_CONNECTION_STRING";

/// A hub, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubSpec {
    /// A snapshot directory (it existed when the spec was parsed).
    Snapshot(PathBuf),
    /// A hub reached over REST.
    Connection(ConnectionString),
    /// A hub reached over REST, signed in with Microsoft Entra ID (docs/hub-semantics.md#entra-rbac).
    Entra { host_name: String, credential: CredentialKind },
}

/// The DNS suffix of IoT hubs in the public cloud: a bare host name ending so is a hub to
/// sign in to with Entra ID. Not the sovereign clouds': their hubs take tokens for another
/// resource (docs/hub-semantics.md#entra-rbac), which fleetform does not request.
const HUB_SUFFIXES: [&str; 1] = [".azure-devices.net"];

/// Whether `text` can only be a host name (and optional port): letters, digits, `.`,
/// `-`, `:`, with a dot or a port.
fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !text.starts_with(['.', '-', ':'])
        && text.contains(['.', ':'])
}

/// Why the value naming a hub (the CLI's `--hub`, `--endpoint`) names none. The texts say
/// what is wrong with the value; which flag or variable gave it is the caller's to add.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HubSpecError {
    /// No value, and no connection string in the environment either.
    #[error("no hub given")]
    #[diagnostic(code(fleetform::hub::no_hub))]
    NoHubGiven,

    /// `env:NAME` named a variable that is unset or not UTF-8.
    #[error("environment variable {name} is not set (or not UTF-8)")]
    #[diagnostic(code(fleetform::hub::env_unset))]
    EnvVarUnset { name: String },

    /// A value that looks like a path and is not a directory.
    #[error("{}: no such directory", path.display())]
    #[diagnostic(code(fleetform::hub::not_a_directory))]
    NotADirectory { path: PathBuf },

    /// `--hub-credential` given with a value that is not a host name.
    #[error(
        "Entra ID sign-in needs the hub's host name (<hub>.azure-devices.net), not a snapshot or connection string"
    )]
    #[diagnostic(code(fleetform::hub::credential_without_host))]
    CredentialWithoutHost,

    /// Neither a directory nor a recognisable connection string, but with `=` or `;`: it
    /// may be a mangled connection string, so it is not shown.
    #[error("the value is not a directory and not a connection string (not shown: it may hold a key)")]
    #[diagnostic(code(fleetform::hub::unrecognised))]
    Unrecognised,

    /// A REST base URL given for a snapshot directory.
    #[error("an endpoint applies to a hub reached by connection string, not to the snapshot directory {}", path.display())]
    #[diagnostic(code(fleetform::hub::endpoint_with_snapshot))]
    EndpointWithSnapshot { path: PathBuf },

    /// The REST base URL is not an `http://` or `https://` URL.
    #[error("{url}: expected a URL such as http://127.0.0.1:8080 or https://<hub>.azure-devices.us")]
    #[diagnostic(code(fleetform::hub::endpoint_not_a_url))]
    EndpointNotAUrl { url: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Connection(#[from] ConnectionStringError),
}

impl From<HubSpecError> for HubError {
    /// A connection string's own error stays [`HubError::Connection`], as callers have
    /// always matched it.
    fn from(e: HubSpecError) -> HubError {
        match e {
            HubSpecError::Connection(e) => HubError::Connection(e),
            other => HubError::Spec(other),
        }
    }
}

impl HubSpec {
    /// Reads a `--hub` value:
    /// - a directory is a snapshot;
    /// - `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` is a hub reached over REST;
    /// - `env:NAME` reads that connection string from variable `NAME`.
    pub fn parse(text: &str) -> Result<HubSpec, HubSpecError> {
        if let Some(name) = text.strip_prefix("env:") {
            let value = std::env::var(name).map_err(|_| HubSpecError::EnvVarUnset { name: name.to_string() })?;
            return Ok(HubSpec::Connection(value.parse()?));
        }
        if ConnectionString::looks_like(text) {
            return Ok(HubSpec::Connection(text.parse()?));
        }
        let path = Path::new(text);
        if path.is_dir() {
            return Ok(HubSpec::Snapshot(path.to_path_buf()));
        }
        if text.contains(['=', ';']) {
            return Err(HubSpecError::Unrecognised);
        }
        Err(HubSpecError::NotADirectory { path: path.to_path_buf() })
    }

    /// [`HubSpec::parse`] of the value given, or without one of
    /// `IOTHUB_CONNECTION_STRING` ([`CONNECTION_STRING_ENV`]).
    pub fn resolve(given: Option<&str>) -> Result<HubSpec, HubSpecError> {
        HubSpec::resolve_signed_in(given, None)
    }

    /// [`HubSpec::resolve`], and with `credential` the value is a host name to sign in to
    /// with that Entra ID credential (any host: the emulator, a custom domain). Without
    /// it, a host name ending in `.azure-devices.net` that is not a
    /// directory signs in with [`CredentialKind::Auto`].
    pub fn resolve_signed_in(given: Option<&str>, credential: Option<CredentialKind>) -> Result<HubSpec, HubSpecError> {
        let entra =
            |text: &str, kind: CredentialKind| HubSpec::Entra { host_name: text.trim().to_string(), credential: kind };
        let text = given.map(str::trim);
        match (text, credential) {
            (Some(text), Some(kind)) if is_host_name(text) && !Path::new(text).is_dir() => {
                return Ok(entra(text, kind));
            }
            (Some(text), None)
                if is_host_name(text)
                    && HUB_SUFFIXES
                        .iter()
                        .any(|s| text.to_ascii_lowercase().split(':').next().unwrap_or("").ends_with(s))
                    && !Path::new(text).is_dir() =>
            {
                return Ok(entra(text, CredentialKind::Auto));
            }
            (_, Some(_)) if given.is_some() => return Err(HubSpecError::CredentialWithoutHost),
            _ => {}
        }
        match given {
            Some(text) => HubSpec::parse(text),
            None => match std::env::var(CONNECTION_STRING_ENV) {
                Ok(v) if !v.trim().is_empty() => HubSpec::parse(&v),
                _ => Err(HubSpecError::NoHubGiven),
            },
        }
    }

    /// Opens the hub. `options` tune the REST backend (`options.endpoint` replaces the
    /// base URL `https://<HostName>`, for the emulator and sovereign clouds); a snapshot
    /// takes no endpoint and ignores the rest.
    pub fn open(&self, options: RestOptions) -> Result<Box<dyn Hub>, HubError> {
        match self {
            HubSpec::Connection(connection) => Ok(Box::new(RestHub::new(connection.clone(), options)?)),
            HubSpec::Entra { host_name, credential } => {
                let credential = EntraCredential::from_process_env(*credential)?;
                Ok(Box::new(RestHub::with_entra(host_name.clone(), credential, options)?))
            }
            HubSpec::Snapshot(path) if options.endpoint.is_some() => {
                Err(HubSpecError::EndpointWithSnapshot { path: path.clone() }.into())
            }
            HubSpec::Snapshot(path) => Ok(Box::new(SnapshotHub::open(path)?)),
        }
    }
}

/// Opens the hub a `--hub` argument names (see [`HubSpec::parse`]); without one, the
/// one `IOTHUB_CONNECTION_STRING` names.
///
/// `endpoint` replaces the REST base URL (`https://<HostName>`), for the emulator and for
/// sovereign clouds; it makes no sense with a snapshot.
pub fn open(spec: Option<&str>, endpoint: Option<&str>) -> Result<Box<dyn Hub>, HubError> {
    open_with(spec, endpoint, RestOptions::default())
}

/// [`open`] with the REST backend's tuning (deadline, backoff…); `options.endpoint` is
/// replaced by `endpoint`. The options are ignored for a snapshot directory.
pub fn open_with(spec: Option<&str>, endpoint: Option<&str>, options: RestOptions) -> Result<Box<dyn Hub>, HubError> {
    open_signed_in(spec, endpoint, None, options)
}

/// [`open_with`], signing in with the Entra ID `credential` when one is given (see
/// [`HubSpec::resolve_signed_in`]).
pub fn open_signed_in(
    spec: Option<&str>,
    endpoint: Option<&str>,
    credential: Option<CredentialKind>,
    options: RestOptions,
) -> Result<Box<dyn Hub>, HubError> {
    HubSpec::resolve_signed_in(spec, credential)?
        .open(RestOptions { endpoint: endpoint.map(str::to_string), ..options })
}

/// A live hub whose device twins come from a snapshot taken earlier (`plan --twins`): its
/// configurations (the one thing a plan must read fresh) and every write go to the hub; the
/// twins, which a million-device hub takes its whole query quota for hours to send, are read
/// from the snapshot. It is the live hub for saved plans and apply (its identity).
pub struct TwinsFromSnapshot {
    live: Box<dyn Hub>,
    twins: SnapshotHub,
}

impl TwinsFromSnapshot {
    pub fn new(live: Box<dyn Hub>, twins: SnapshotHub) -> TwinsFromSnapshot {
        TwinsFromSnapshot { live, twins }
    }

    /// The snapshot the twins come from.
    pub fn twins(&self) -> &SnapshotHub {
        &self.twins
    }
}

impl HubRead for TwinsFromSnapshot {
    /// The live hub's: the plan is a plan against it (`plan --twins` says on its own line
    /// where the twins came from and how old they are).
    fn describe(&self) -> String {
        self.live.describe()
    }

    fn identity(&self) -> String {
        self.live.identity()
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        self.live.configurations()
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.twins.device_batches(projection, visit)
    }

    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), HubError> + Sync)) -> Result<(), HubError> {
        self.twins.module_batches(visit)
    }

    /// From the snapshot, like the device twins: what the devices ran when it was taken.
    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<crate::model::AgentReport>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.twins.agent_reports(devices, edge_devices, visit)
    }

    fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.live.configuration(id)
    }

    fn live_metrics(&self) -> bool {
        self.live.live_metrics()
    }
}

impl HubWrite for TwinsFromSnapshot {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        self.live.create_configuration(config)
    }

    fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError> {
        self.live.update_configuration(config, etag)
    }

    fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError> {
        self.live.delete_configuration(id, if_match)
    }
}

/// When a snapshot's twins were read, and how fleetform knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinsReadAt {
    /// `snapshot.json`, written by `fleetform snapshot`.
    Recorded(SystemTime),
    /// No `snapshot.json` (a snapshot from `hub generate`, an older fleetform, or made by
    /// hand): the device file's modification time, the last time it was written.
    FileModified(SystemTime),
}

impl TwinsReadAt {
    pub fn time(self) -> SystemTime {
        match self {
            TwinsReadAt::Recorded(t) | TwinsReadAt::FileModified(t) => t,
        }
    }

    /// How old the twins are at `now`; zero for a time in the future (a skewed clock).
    pub fn age(self, now: SystemTime) -> Duration {
        now.duration_since(self.time()).unwrap_or_default()
    }
}

/// Why a snapshot's age cannot be told.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TwinsAgeError {
    #[error("{}: cannot read it: {source}", path.display())]
    #[diagnostic(code(fleetform::hub::snapshot_info))]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{}: not {{\"twinsReadAt\": \"<RFC 3339 time>\"}}: {source}", path.display())]
    #[diagnostic(
        code(fleetform::hub::snapshot_info),
        help(
            "the file is written by `fleetform snapshot`; take the snapshot again, or delete the file to fall back to the device file's time"
        )
    )]
    Malformed { path: PathBuf, source: serde_json::Error },

    #[error("{}: twinsReadAt {value:?} is not an RFC 3339 time such as 2026-01-31T02:00:00Z", path.display())]
    #[diagnostic(code(fleetform::hub::snapshot_info), help("take the snapshot again"))]
    BadTime { path: PathBuf, value: String },

    #[error("{}: no device twin file to date the snapshot by", dir.display())]
    #[diagnostic(code(fleetform::hub::snapshot_info))]
    NoDevices { dir: PathBuf },
}

/// When the twins of the snapshot in `dir` were read: `snapshot.json` if there is one,
/// else the device file's modification time.
pub fn twins_read_at(snapshot: &SnapshotHub) -> Result<TwinsReadAt, TwinsAgeError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Info {
        twins_read_at: String,
    }
    let dir = snapshot.snapshot().dir();
    let path = dir.join(SNAPSHOT_INFO_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let info: Info = serde_json::from_slice(&bytes)
                .map_err(|source| TwinsAgeError::Malformed { path: path.clone(), source })?;
            let at = humantime::parse_rfc3339_weak(info.twins_read_at.trim())
                .map_err(|_| TwinsAgeError::BadTime { path, value: info.twins_read_at.clone() })?;
            Ok(TwinsReadAt::Recorded(at))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = snapshot
                .snapshot()
                .devices_file()
                .ok_or_else(|| TwinsAgeError::NoDevices { dir: dir.to_path_buf() })?;
            let modified = std::fs::metadata(&file.path)
                .and_then(|m| m.modified())
                .map_err(|source| TwinsAgeError::Read { path: file.path.clone(), source })?;
            Ok(TwinsReadAt::FileModified(modified))
        }
        Err(source) => Err(TwinsAgeError::Read { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::connection;
    use crate::hub::snapshot::hub::tests::hub_with_devices;

    #[test]
    fn host_names_sign_in_with_entra() {
        let auto = HubSpec::resolve_signed_in(Some("MyHub.azure-devices.net"), None).unwrap();
        assert_eq!(
            auto,
            HubSpec::Entra { host_name: "MyHub.azure-devices.net".into(), credential: CredentialKind::Auto }
        );
        let cli = HubSpec::resolve_signed_in(Some("127.0.0.1:8484"), Some(CredentialKind::AzureCli)).unwrap();
        assert_eq!(cli, HubSpec::Entra { host_name: "127.0.0.1:8484".into(), credential: CredentialKind::AzureCli });
        // Without a credential, another host name is still read as a path.
        assert!(matches!(
            HubSpec::resolve_signed_in(Some("hub.example.com"), None),
            Err(HubSpecError::NotADirectory { .. })
        ));
        let with_key = "HostName=h;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0";
        assert!(matches!(
            HubSpec::resolve_signed_in(Some(with_key), Some(CredentialKind::Workload)),
            Err(HubSpecError::CredentialWithoutHost)
        ));
        assert!(!is_host_name("a/b.c") && !is_host_name("x=y.z") && !is_host_name("plain") && !is_host_name(".x"));
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
        assert!(both.to_string().contains("an endpoint applies to a hub reached by connection string"), "{both}");
        assert_eq!(open(dir.path().to_str(), None).unwrap().describe(), format!("snapshot {}", dir.path().display()));
        let nowhere = open(Some("/no/such/dir"), None).err().unwrap();
        assert!(nowhere.to_string().contains("no such directory"), "{nowhere}");
        let bad_url = open(Some("HostName=h;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0"), Some("127.0.0.1:1"));
        assert!(bad_url.err().unwrap().to_string().contains("expected a URL"));
    }

    #[test]
    fn a_snapshot_is_dated_by_its_info_file_or_its_device_file() {
        let (dir, _hub) = hub_with_devices();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        let modified = twins_read_at(&hub).unwrap();
        assert!(matches!(modified, TwinsReadAt::FileModified(_)), "{modified:?}");
        std::fs::write(dir.path().join(SNAPSHOT_INFO_FILE), r#"{"twinsReadAt": "2026-01-31T02:00:00Z"}"#).unwrap();
        let recorded = twins_read_at(&hub).unwrap();
        // 2026-01-31T02:00:00Z is 1,769,824,800 s after the epoch.
        assert_eq!(recorded, TwinsReadAt::Recorded(SystemTime::UNIX_EPOCH + Duration::from_secs(1_769_824_800)));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_769_824_800 + 90_000);
        assert_eq!(recorded.age(later), Duration::from_secs(90_000));
        std::fs::write(dir.path().join(SNAPSHOT_INFO_FILE), r#"{"twinsReadAt": "yesterday"}"#).unwrap();
        let bad = twins_read_at(&hub).unwrap_err();
        assert!(bad.to_string().contains(r#""yesterday" is not an RFC 3339 time"#), "{bad}");
        std::fs::write(dir.path().join(SNAPSHOT_INFO_FILE), "[").unwrap();
        assert!(matches!(twins_read_at(&hub), Err(TwinsAgeError::Malformed { .. })));
    }
}
