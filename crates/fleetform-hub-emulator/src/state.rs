//! The emulator's hub: configurations and twins in memory, every change written through to
//! the state directory, and the REST subset of docs/hub-semantics.md#rest-api as a synchronous request →
//! reply function (the HTTP layer in `mod.rs` only moves bytes).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::EmulatorError;
use crate::agent_desired::edge_agent_desired;
use crate::load::{self, module_key};
use crate::quota::{ClassStats, OpClass, QuotaOptions, Quotas, Throttled};
use crate::store::{CorruptTwin, TwinStore};
use fleetform::hub::connection::{self, SecretKey};
use fleetform::hub::snapshot::{self, AtomicFile, Snapshot, SnapshotWriter, TwinFormat};
use fleetform::hub::{MAX_CONFIGURATIONS, Twin};
use fleetform::merge::{self, EDGE_AGENT, EDGE_HUB, EffectiveManifest, MatchSet, MergeDeployment};
use fleetform::model::ModuleTwin;
use fleetform::model::{Configuration, Etag, IfMatch, Metrics, Priority};
use fleetform::query::{
    CompiledCondition, Condition, Query, Selection, is_edge_device, parse_condition, parse_query, targets_device,
};

/// The service api-versions the emulator answers: the ones the az CLI's IoT extension has sent
/// over its history (2019-10-01, 2020-09-30, 2021-04-12, 2024-03-31; the last is what it and
/// the current service SDKs send now) and the data-plane previews between them. The
/// configuration, twin and query surface the emulator serves is the same in all of them.
pub const API_VERSIONS: [&str; 6] =
    ["2019-10-01", "2020-05-31-preview", "2020-06-30-preview", "2020-09-30", "2021-04-12", "2024-03-31"];
/// The hub's error code for a missing or unknown api-version (the service SDKs' error-code
/// list has it as 400001).
pub const BAD_API_VERSION_CODE: &str = "InvalidProtocolVersion";
/// The emulator's error code for a full hub. No public source shows the hub's own code for
/// this case; the REST client maps this one to `HubError::TooManyConfigurations`.
pub const TOO_MANY_CODE: &str = "TooManyConfigurationsOnHub";
/// The file in the state directory holding the emulator's policy name and key.
pub const KEY_FILE: &str = "emulator.json";
const DEFAULT_PAGE: usize = 100;
/// The largest query page the hub serves (docs/hub-semantics.md#query-paging).
pub const MAX_PAGE: usize = 1000;

/// How the emulator behaves beyond plain storage.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Devices report their `$edgeAgent` desired version this long after it changes.
    pub simulate_success_after: Option<Duration>,
    /// Share (0–1) of devices that report failure (500) instead of success.
    pub simulate_failure_share: f64,
    /// Devices whose twin matches this target condition report failure (500): a failure
    /// confined to a cohort, the same devices on every run. Adds to the share above.
    pub simulate_failure_where: Option<String>,
    /// Share (0–1) of requests answered 429.
    pub inject_429: f64,
    /// Share (0–1) of requests answered 503.
    pub inject_503: f64,
    pub seed: u64,
    /// Per-minute operation quotas of a tier (none: unthrottled).
    pub quotas: Option<QuotaOptions>,
    /// Recount a configuration's metrics at most this often, as IoT Hub's five-minute
    /// configuration runs do (docs/hub-semantics.md#system-metrics); between runs reads return the
    /// last run's counts. `None` recounts on every read.
    pub metrics_interval: Option<Duration>,
}

/// Counters exposed on `GET /_emulator/stats` (and its older name `/emulator/stats`).
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests with a supported api-version (the stats endpoint itself not counted).
    pub requests: u64,
    pub injected429: u64,
    pub injected503: u64,
    pub unauthorized: u64,
    pub configuration_changes: u64,
    pub reports_simulated: u64,
    /// Answered 429 because a class was over its quota (`--tier`/`--units`).
    pub throttled: u64,
    /// Per operation class: authorized requests, quota 429s, rows and body bytes served.
    pub classes: Classes,
}

/// [`ClassStats`] by operation class, keyed as in the JSON.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Classes {
    pub queries: ClassStats,
    pub configurations: ClassStats,
    pub twin_reads: ClassStats,
}

/// What one metric run of a configuration counted, and when.
struct MetricRun {
    at: Instant,
    system: Option<Metrics>,
    custom: BTreeMap<String, i64>,
}

/// One HTTP request, reduced to what the handlers need.
pub struct Request {
    pub method: String,
    /// Path as sent, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// One HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Body>,
    /// Twins or result rows in the body, for the per-class counts.
    pub rows: u64,
}

/// A reply body: a tree, or JSON text written straight from stored twins.
#[derive(Debug)]
pub enum Body {
    Json(Value),
    Text(Vec<u8>),
}

impl Body {
    /// The body as a tree (tests and callers that inspect replies).
    pub fn into_value(self) -> Value {
        match self {
            Body::Json(v) => v,
            Body::Text(t) => serde_json::from_slice(&t).unwrap_or(Value::Null),
        }
    }
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, headers: Vec::new(), body: Some(Body::Json(body)), rows: 0 }
    }

    fn text(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, headers: Vec::new(), body: Some(Body::Text(body)), rows: 0 }
    }

    fn rows(mut self, rows: u64) -> Reply {
        self.rows = rows;
        self
    }

    fn empty(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: None, rows: 0 }
    }

    /// The body as a tree, if any.
    pub fn value(self) -> Option<Value> {
        self.body.map(Body::into_value)
    }
}

/// The hub the emulator serves.
pub struct Emulator {
    /// `--simulate-failure-where`, compiled.
    failing_cohort: Option<CompiledCondition>,
    dir: PathBuf,
    /// `host:port`, as it appears in the printed connection string.
    host: String,
    key_name: String,
    key: SecretKey,
    configs: Vec<Configuration>,
    devices: TwinStore,
    /// `deviceId` → position in `devices`.
    device_pos: HashMap<Box<str>, u32>,
    modules: TwinStore,
    /// [`module_key`] → position in `modules`.
    module_pos: HashMap<Box<str>, u32>,
    devices_format: TwinFormat,
    modules_format: TwinFormat,
    behaviour: Behaviour,
    faults: ChaCha8Rng,
    /// Device → when its `$edgeAgent` desired document last changed, until it reports.
    pending: HashMap<String, Instant>,
    stats: Stats,
    quotas: Quotas,
    tracking: u64,
    /// Decompression buffer reused across requests.
    scratch: Vec<u8>,
    /// Metric query text → row count, valid until twins or configurations change next:
    /// clients poll configurations (and so every metric) far more often than anything
    /// changes, and each count reads every twin.
    counts: std::cell::RefCell<HashMap<String, i64>>,
    /// Configuration id → its last metric run, under [`Behaviour::metrics_interval`].
    runs: std::cell::RefCell<HashMap<String, MetricRun>>,
    /// Whom Bearer tokens are trusted from; `None` refuses them (SAS only).
    entra: Option<crate::auth::EntraVerifier>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    key_name: String,
    key: String,
}

impl Emulator {
    /// Loads the state directory (a snapshot directory), creating the key file on first start.
    pub fn open(dir: &Path, host: String, behaviour: Behaviour) -> Result<Emulator, EmulatorError> {
        for (name, share) in [
            ("--simulate-failure-share", behaviour.simulate_failure_share),
            ("--inject-429", behaviour.inject_429),
            ("--inject-503", behaviour.inject_503),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(EmulatorError::BadOption(format!("{name} {share}: give a share between 0 and 1")));
            }
        }
        if behaviour.inject_429 + behaviour.inject_503 > 1.0 {
            return Err(EmulatorError::BadOption("--inject-429 and --inject-503 add up to more than 1".into()));
        }
        let failing_cohort = match &behaviour.simulate_failure_where {
            Some(text) => Some(CompiledCondition::new(&parse_condition(text).map_err(|e| {
                EmulatorError::BadOption(format!("--simulate-failure-where {text:?}: {}", e.message()))
            })?)),
            None => None,
        };
        let (key_name, key) = load_or_create_key(dir)?;
        remove_stale_temp_files(dir);
        let snap = Snapshot::open(dir)?;
        let mut configs = snap.configurations()?;
        // A hand-written or exported snapshot may lack what the hub stamps on creation; the
        // merge needs createdTimeUtc to order equal priorities, and updates need an etag.
        let mut stamped = false;
        for c in &mut configs {
            if c.created_time_utc.is_none() || c.etag.is_none() {
                let stamp = now_utc();
                c.created_time_utc.get_or_insert_with(|| stamp.clone());
                c.last_updated_time_utc.get_or_insert_with(|| stamp.clone());
                c.etag.get_or_insert_with(|| new_etag(&format!("{}\n{stamp}", c.id)));
                stamped = true;
            }
        }
        if stamped {
            SnapshotWriter::create(dir)?.write_configurations(&configs)?;
        }
        let devices_format = snap.devices_file().map_or(TwinFormat::JsonLines, |f| f.format);
        let modules_format = snap.modules_file().map_or(TwinFormat::JsonLines, |f| f.format);
        if let Some(q) = &behaviour.quotas {
            if q.units == 0 {
                return Err(EmulatorError::BadOption("--units 0: a hub has at least one unit".into()));
            }
            if q.window.is_zero() {
                return Err(EmulatorError::BadOption("--quota-window 0: give a window longer than zero".into()));
            }
        }
        // The two files are independent: one thread each halves start-up on two cores.
        let (devices, modules) = std::thread::scope(|scope| {
            let modules = scope.spawn(|| {
                load::load(snap.modules_file(), true, || {
                    snap.module_twins()?.map(|t| t.map(ModuleTwin::into_value)).collect::<Result<Vec<_>, _>>()
                })
            });
            let devices = load::load(snap.devices_file(), false, || {
                snap.devices()?.map(|t| t.map(Twin::into_value)).collect::<Result<Vec<_>, _>>()
            });
            (devices, modules.join())
        });
        let devices = devices?;
        let modules = modules.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let now = Instant::now();
        let behaviour_quotas = behaviour.quotas.clone();
        let mut emulator = Emulator {
            dir: dir.to_path_buf(),
            host,
            key_name,
            key,
            configs,
            devices: devices.store,
            device_pos: devices.positions,
            modules: modules.store,
            module_pos: modules.positions,
            devices_format,
            modules_format,
            faults: ChaCha8Rng::seed_from_u64(behaviour.seed),
            behaviour,
            pending: HashMap::new(),
            stats: Stats::default(),
            quotas: Quotas::new(behaviour_quotas, now),
            tracking: 0,
            scratch: Vec::new(),
            counts: Default::default(),
            runs: Default::default(),
            entra: None,
            failing_cohort,
        };
        // A restart must not forget devices that have not reported yet.
        if emulator.behaviour.simulate_success_after.is_some() {
            let mut scratch = Vec::new();
            for i in 0..emulator.modules.len() {
                let m = emulator.modules.value(i, &mut scratch)?;
                if str_at(&m, "moduleId") == Some(EDGE_AGENT)
                    && !agent_in_sync(&m)
                    && let Some(d) = str_at(&m, "deviceId")
                {
                    emulator.pending.insert(d.to_string(), now);
                }
            }
        }
        // Twins follow from configurations; a crash between writing the two is healed here.
        let (devices_changed, modules_changed) = emulator.reassign(now)?;
        emulator.persist_twins(devices_changed, modules_changed)?;
        Ok(emulator)
    }

    /// Accepts Entra ID Bearer tokens that `verifier` trusts, next to SAS tokens.
    pub fn accept_entra(&mut self, verifier: crate::auth::EntraVerifier) {
        self.entra = Some(verifier);
    }

    /// The connection string users need, key included.
    pub fn connection_string(&self) -> String {
        connection::ConnectionString {
            host_name: self.host.clone(),
            key_name: self.key_name.clone(),
            key: self.key.clone(),
        }
        .expose()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.classes = Classes {
            queries: self.quotas.class(OpClass::Queries),
            configurations: self.quotas.class(OpClass::Configurations),
            twin_reads: self.quotas.class(OpClass::TwinReads),
        };
        stats.throttled = OpClass::ALL.iter().map(|&c| self.quotas.class(c).throttled).sum();
        stats
    }

    /// Twins held and their compressed size, for the start-up line.
    pub fn holding(&self) -> (usize, usize, usize) {
        (self.devices.len(), self.modules.len(), self.devices.packed_bytes() + self.modules.packed_bytes())
    }

    /// Answers one request.
    pub fn handle(&mut self, req: &Request, now: Instant) -> Reply {
        let path = req.path.trim_end_matches('/').to_string();
        // The stats endpoint is the emulator's own (no hub has it): unauthenticated, not
        // counted, never throttled. `/emulator/stats` is its older name.
        if path == "/_emulator/stats" || path == "/emulator/stats" {
            return Reply::json(200, serde_json::to_value(self.stats()).unwrap_or(Value::Null));
        }
        self.stats.requests += 1;
        let params = query_params(req.query.as_deref());
        match params.get("api-version").map(String::as_str) {
            None => return self.error(400, BAD_API_VERSION_CODE, "the api-version query parameter is required"),
            Some(v) if !API_VERSIONS.contains(&v) => {
                let text = format!("api-version {v} is not supported; use one of {}", API_VERSIONS.join(", "));
                return self.error(400, BAD_API_VERSION_CODE, &text);
            }
            Some(_) => {}
        }
        if let Err(why) = self.authenticate(&req.headers) {
            self.stats.unauthorized += 1;
            return self.error(401, "IotHubUnauthorizedAccess", &why);
        }
        let class = op_class(&path);
        if let Some(class) = class
            && let Err(over) = self.quotas.admit(class, now)
        {
            return self.throttled(over);
        }
        let mut reply = self.dispatch(req, &path, &params, now);
        if let Some(class) = class
            && (200..300).contains(&reply.status)
        {
            // Counted as sent: the tree is written out here rather than by the HTTP layer.
            if let Some(Body::Json(v)) = &reply.body {
                reply.body = Some(Body::Text(serde_json::to_vec(v).unwrap_or_default()));
            }
            let bytes = match &reply.body {
                Some(Body::Text(t)) => t.len() as u64,
                _ => 0,
            };
            self.quotas.served(class, reply.rows, bytes);
        }
        reply
    }

    /// The hub's answer past a quota: 429 with its error body (docs/hub-semantics.md#quotas).
    fn throttled(&mut self, over: Throttled) -> Reply {
        let text = format!(
            "{} are throttled at {} per {} s on {}x{} (fleetform hub serve --tier {} --units {}); retry in {:.1} s",
            over.class.name(),
            over.limit,
            self.quotas.options().map_or(60, |o| o.window.as_secs().max(1)),
            over.tier,
            over.units,
            over.tier,
            over.units,
            over.resets_in.as_secs_f64()
        );
        self.error(429, "ThrottlingException", &text)
    }

    fn dispatch(&mut self, req: &Request, path: &str, params: &HashMap<String, String>, now: Instant) -> Reply {
        let roll: f64 = self.faults.r#gen();
        if roll < self.behaviour.inject_429 {
            self.stats.injected429 += 1;
            return self.error(429, "ThrottlingException", "injected throttling (fleetform hub serve --inject-429)");
        }
        if roll < self.behaviour.inject_429 + self.behaviour.inject_503 {
            self.stats.injected503 += 1;
            return self.error(503, "ServiceUnavailable", "injected outage (fleetform hub serve --inject-503)");
        }
        if let Err(e) = self.settle(now) {
            return self.error(500, "ServerError", &format!("the emulator could not save its state: {e}"));
        }
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| urlencoding::decode(s).map(|c| c.into_owned()).unwrap_or_else(|_| s.to_string()))
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["configurations"]) => self.list(params, now),
            ("POST", ["configurations", "testQueries"]) => self.test_queries(&req.body),
            ("GET", ["configurations", id]) => match self.configs.iter().find(|c| c.id == *id) {
                Some(c) => Reply::json(200, self.with_metrics(c, now)).rows(1),
                None => self.not_found_config(id),
            },
            ("PUT", ["configurations", id]) => self.put(id, req, now),
            ("DELETE", ["configurations", id]) => self.delete(id, req, now),
            ("POST", ["devices", "query"]) => self.query(req),
            ("GET", ["twins", d]) => match self.device_pos.get(*d) {
                Some(&i) => self.stored(false, i as usize),
                None => self.error(404, "DeviceNotFound", &format!("device {d} does not exist")),
            },
            ("GET", ["twins", d, "modules", m]) => match self.module_pos.get(&module_key(d, m)) {
                Some(&i) => self.stored(true, i as usize),
                None => self.error(404, "ModuleNotFound", &format!("module {m} on device {d} does not exist")),
            },
            (_, ["configurations", ..] | ["devices", "query"] | ["twins", ..]) => {
                self.error(405, "MethodNotAllowed", &format!("{} is not supported on {path}", req.method))
            }
            _ => self.error(404, "NotFound", &format!("no such resource: {path}")),
        }
    }

    fn error(&mut self, status: u16, code: &str, text: &str) -> Reply {
        self.tracking += 1;
        let tracking = format!("{:016X}-emulator-{}", self.behaviour.seed, self.tracking);
        Reply {
            status,
            headers: vec![("iothub-errorcode", code.to_string())],
            body: Some(Body::Json(json!({
                "Message": format!("ErrorCode:{code};{text}"),
                "ExceptionMessage": format!("Tracking ID:{tracking}-TimeStamp:{}", now_utc()),
            }))),
            rows: 0,
        }
    }

    /// One stored twin as its JSON text.
    fn stored(&mut self, module: bool, index: usize) -> Reply {
        let mut text = Vec::new();
        let store = if module { &self.modules } else { &self.devices };
        match store.read_into(index, &mut text) {
            Ok(()) => Reply::text(200, text).rows(1),
            Err(e) => self.error(500, "ServerError", &e.to_string()),
        }
    }

    fn not_found_config(&mut self, id: &str) -> Reply {
        self.error(404, "ConfigurationNotFound", &format!("configuration {id} does not exist"))
    }

    /// Whether the request carries a credential this hub accepts. Today that is a SAS token;
    /// another scheme is one more arm here.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), String> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        match header.and_then(crate::auth::bearer_token) {
            Some(token) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                crate::auth::check_bearer(self.entra.as_ref(), token, now).map_err(|r| r.to_string())
            }
            None => self.check_sas(headers).map_err(str::to_string),
        }
    }

    /// Checks the SAS token: policy name, expiry, resource and signature.
    fn check_sas(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value =
            headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("the Authorization header is missing")?;
        let sas =
            connection::parse_sas_header(value).ok_or("the Authorization header is not a SharedAccessSignature")?;
        if sas.key_name != self.key_name {
            return Err("unknown shared access policy");
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if sas.expiry <= now {
            return Err("the SAS token has expired");
        }
        // The token must be for this hub: the advertised host or the Host the client dialled
        // (they differ when the emulator listens on 0.0.0.0).
        let decoded = urlencoding::decode(&sas.resource).map(|c| c.to_lowercase()).unwrap_or_default();
        let dialled = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_lowercase();
        let audience = decoded.split('/').next().unwrap_or("");
        if audience != self.host.to_lowercase() && audience != dialled {
            return Err("the SAS token is for another hub");
        }
        if !connection::verify(&self.key, &sas.resource, sas.expiry, &sas.signature) {
            return Err("the SAS signature does not match");
        }
        Ok(())
    }

    fn list(&mut self, params: &HashMap<String, String>, now: Instant) -> Reply {
        let top = match params.get("top").map(|t| t.parse::<usize>()) {
            None => MAX_CONFIGURATIONS,
            Some(Ok(n)) => n,
            Some(Err(_)) => return self.error(400, "ArgumentInvalid", "top must be a non-negative integer"),
        };
        let list: Vec<Value> = self.configs.iter().take(top).map(|c| self.with_metrics(c, now)).collect();
        let n = list.len() as u64;
        Reply::json(200, Value::Array(list)).rows(n)
    }

    fn put(&mut self, id: &str, req: &Request, now: Instant) -> Reply {
        // A `Configuration` cannot hold a priority the hub refuses, but the hub reports
        // that after the id and query checks, so the body is read without it first.
        let (mut incoming, bad_priority) = match serde_json::from_slice::<Configuration>(&req.body) {
            Ok(c) => (c, false),
            Err(e) => match without_refused_priority(&req.body) {
                Some(c) => (c, true),
                None => return self.error(400, "ArgumentInvalid", &format!("the body is not a Configuration: {e}")),
            },
        };
        if incoming.id.is_empty() {
            incoming.id = id.into();
        }
        if incoming.id != id {
            return self.error(
                400,
                "ArgumentInvalid",
                "the configuration id in the body differs from the one in the URL",
            );
        }
        if let Err(why) = check_id(id) {
            return self.error(400, "ArgumentInvalid", &why);
        }
        if let Err(why) = check_queries(&incoming) {
            return self.error(400, "ArgumentInvalid", &why);
        }
        if bad_priority {
            return self.error(400, "ArgumentInvalid", "priority must be a non-negative 32-bit integer");
        }
        // An unquoted etag is no precondition on the hub: the request counts as a create.
        let if_match = req
            .headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| *v == "*" || Etag::is_quoted(v));
        let stamp = now_utc();
        let existing = self.configs.iter().position(|c| c.id == id);
        let (status, stored) = match (if_match, existing) {
            (None, Some(_)) => {
                return self.error(409, "ConfigurationAlreadyExists", &format!("configuration {id} already exists"));
            }
            (None, None) => {
                if self.configs.len() >= MAX_CONFIGURATIONS {
                    return self.error(
                        400,
                        TOO_MANY_CODE,
                        &format!("the hub already holds {MAX_CONFIGURATIONS} configurations"),
                    );
                }
                let mut c = incoming;
                c.created_time_utc = Some(stamp.clone());
                c.last_updated_time_utc = Some(stamp.clone());
                c.etag = Some(new_etag(&stamp));
                c.system_metrics = None;
                strip_results(&mut c);
                self.configs.push(c.clone());
                (201, c)
            }
            (Some(_), None) => return self.not_found_config(id),
            (Some(tag), Some(pos)) => {
                let current = &self.configs[pos];
                if !admits(tag, current) {
                    return self.error(
                        412,
                        "PreconditionFailed",
                        &format!("the etag in If-Match is not the current etag of configuration {id}"),
                    );
                }
                if incoming.content != current.content {
                    return self.error(
                        400,
                        "ArgumentInvalid",
                        "Configuration identifier and Content cannot be updated",
                    );
                }
                let mut c = current.clone();
                c.labels = incoming.labels;
                c.priority = incoming.priority;
                c.target_condition = incoming.target_condition;
                c.metrics = incoming.metrics;
                strip_results(&mut c);
                c.last_updated_time_utc = Some(stamp.clone());
                c.etag = Some(new_etag(&stamp));
                self.configs[pos] = c.clone();
                (200, c)
            }
        };
        self.after_change(now);
        match self.save_all(now) {
            Ok(()) => Reply::json(status, self.with_metrics(&stored, now)),
            Err(e) => self.error(500, "ServerError", &format!("the emulator could not save its state: {e}")),
        }
    }

    fn delete(&mut self, id: &str, req: &Request, now: Instant) -> Reply {
        let Some(pos) = self.configs.iter().position(|c| c.id == id) else {
            return self.not_found_config(id);
        };
        let tag = req.headers.get("if-match").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("*");
        if !admits(tag, &self.configs[pos]) {
            return self.error(
                412,
                "PreconditionFailed",
                &format!("the etag in If-Match is not the current etag of configuration {id}"),
            );
        }
        self.configs.remove(pos);
        self.runs.get_mut().remove(id);
        self.after_change(now);
        match self.save_all(now) {
            Ok(()) => Reply::empty(204),
            Err(e) => self.error(500, "ServerError", &format!("the emulator could not save its state: {e}")),
        }
    }

    fn after_change(&mut self, _now: Instant) {
        self.stats.configuration_changes += 1;
        self.counts.get_mut().clear();
    }

    /// Writes configurations, then re-derives and writes twins.
    fn save_all(&mut self, now: Instant) -> Result<(), EmulatorError> {
        SnapshotWriter::create(&self.dir)?.write_configurations(&self.configs)?;
        let (d, m) = self.reassign(now)?;
        self.persist_twins(d, m)
    }

    fn persist_twins(&self, devices: bool, modules: bool) -> Result<(), EmulatorError> {
        if devices {
            write_store(&self.dir, &self.devices, self.devices_format, false)?;
        }
        if modules {
            write_store(&self.dir, &self.modules, self.modules_format, true)?;
        }
        Ok(())
    }

    fn test_queries(&mut self, body: &[u8]) -> Reply {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return self.error(400, "ArgumentInvalid", "the body is not JSON");
        };
        let target = body.get("targetCondition").and_then(Value::as_str).unwrap_or("");
        let target_error = match target.trim() {
            "" => String::new(),
            t => parse_condition(t).err().map(|e| e.message()).unwrap_or_default(),
        };
        let mut metric_errors = Map::new();
        if let Some(queries) = body.get("customMetricQueries").and_then(Value::as_object) {
            for (name, q) in queries {
                let text = q.as_str().unwrap_or("");
                let err = parse_query(text).err().map(|e| e.message()).unwrap_or_default();
                metric_errors.insert(name.clone(), Value::String(err));
            }
        }
        Reply::json(200, json!({"targetConditionError": target_error, "customMetricQueryErrors": metric_errors}))
    }

    fn query(&mut self, req: &Request) -> Reply {
        let Some(text) = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string))
        else {
            return self.error(400, "ArgumentInvalid", "the body must be {\"query\": \"SELECT ...\"}");
        };
        // The hub's limit on query text (docs/hub-semantics.md#query-language), so that a
        // reader that packs queries (plan's `$edgeAgent` reads) is held to it here too.
        let chars = text.chars().count();
        if chars > fleetform::query::MAX_QUERY_CHARS {
            return self.error(
                400,
                "ArgumentInvalid",
                &format!("query: {chars} characters, over the limit of {}", fleetform::query::MAX_QUERY_CHARS),
            );
        }
        let query = match parse_query(&text) {
            Ok(q) => q,
            Err(e) => return self.error(400, "ArgumentInvalid", &format!("query: {}", e.message())),
        };
        let page =
            match req.headers.get("x-ms-max-item-count").map(|v| v.to_str().ok().and_then(|s| s.parse::<usize>().ok()))
            {
                None => DEFAULT_PAGE,
                Some(Some(n)) if (1..=MAX_PAGE).contains(&n) => n,
                Some(_) => {
                    return self.error(
                        400,
                        "ArgumentInvalid",
                        &format!("x-ms-max-item-count must be between 1 and {MAX_PAGE}"),
                    );
                }
            };
        let resume = match req.headers.get("x-ms-continuation") {
            None => Resume::default(),
            Some(v) => match v.to_str().ok().and_then(decode_continuation) {
                Some(r) => r,
                None => return self.error(400, "ArgumentInvalid", "x-ms-continuation is not a token this hub issued"),
            },
        };
        let result = if query.is_aggregate() || !query.group_by.is_empty() {
            self.aggregate_page(&query, page, resume)
        } else {
            self.scan_page(&query, page, resume)
        };
        match result {
            Ok((body, rows, next)) => {
                let mut reply = Reply::text(200, body).rows(rows);
                reply.headers.push(("x-ms-item-type", "Twin".to_string()));
                if let Some(next) = next {
                    reply.headers.push(("x-ms-continuation", encode_continuation(next)));
                }
                reply
            }
            Err(e) => self.error(500, "ServerError", &e.to_string()),
        }
    }

    /// One page of a plain query, scanned from where the last page stopped: only twins that
    /// pass WHERE are parsed beyond their text, and `SELECT *` rows are the stored text.
    fn scan_page(
        &mut self,
        query: &Query,
        page: usize,
        resume: Resume,
    ) -> Result<(Vec<u8>, u64, Option<Resume>), CorruptTwin> {
        let store = if query.from_modules() { &self.modules } else { &self.devices };
        let filter = query.filter.as_ref().map(|_| CompiledCondition::new(&query.where_condition()));
        let limit = query.top.map_or(u64::MAX, |n| n);
        // The SELECT list alone, run over the page's passing twins at once.
        let projection = match &query.selection {
            Selection::All => None,
            Selection::Items(_) => Some(Query { top: None, filter: None, ..query.clone() }),
        };
        let want = (page as u64).min(limit.saturating_sub(resume.returned)) as usize;
        let mut body = Vec::with_capacity(page * 256);
        body.push(b'[');
        let mut picked: Vec<Value> = Vec::new();
        let mut rows = 0usize;
        let mut pos = resume.position as usize;
        let scratch = &mut self.scratch;
        while pos < store.len() && rows < want {
            store.read_into(pos, scratch)?;
            pos += 1;
            if filter.is_none() && projection.is_none() {
                if rows > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(scratch);
                rows += 1;
                continue;
            }
            let Ok(twin) = serde_json::from_slice::<Value>(scratch) else {
                continue;
            };
            if filter.as_ref().is_some_and(|f| !f.matches(&twin)) {
                continue;
            }
            rows += 1;
            match projection {
                Some(_) => picked.push(twin),
                None => {
                    if rows > 1 {
                        body.push(b',');
                    }
                    body.extend_from_slice(scratch);
                }
            }
        }
        if let Some(projection) = &projection {
            for (i, row) in projection.run(picked.iter()).iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                serde_json::to_writer(&mut body, row).expect("writing JSON to memory");
            }
        }
        body.push(b']');
        let returned = resume.returned + rows as u64;
        let next = (pos < store.len() && returned < limit).then_some(Resume { position: pos as u64, returned });
        Ok((body, rows as u64, next))
    }

    /// One page of an aggregate query's rows (computed over every twin for each page: such
    /// results are a few rows, and metrics are the common case).
    fn aggregate_page(
        &mut self,
        query: &Query,
        page: usize,
        resume: Resume,
    ) -> Result<(Vec<u8>, u64, Option<Resume>), CorruptTwin> {
        let rows = self.run_query(query)?;
        let start = (resume.position as usize).min(rows.len());
        let end = (start + page).min(rows.len());
        let body = serde_json::to_vec(&rows[start..end]).expect("writing JSON to memory");
        let next = (end < rows.len()).then_some(Resume { position: end as u64, returned: end as u64 });
        Ok((body, (end - start) as u64, next))
    }

    /// Every row of `query`, WHERE applied while streaming so that only passing twins become
    /// trees.
    fn run_query(&self, query: &Query) -> Result<Vec<Value>, CorruptTwin> {
        let store = if query.from_modules() { &self.modules } else { &self.devices };
        let filter = query.filter.as_ref().map(|_| CompiledCondition::new(&query.where_condition()));
        let mut scratch = Vec::new();
        let mut passing = Vec::new();
        for i in 0..store.len() {
            let twin = store.value(i, &mut scratch)?;
            if filter.as_ref().is_none_or(|f| f.matches(&twin)) {
                passing.push(twin);
            }
        }
        Ok(Query { filter: None, ..query.clone() }.run(passing.iter()))
    }

    /// A configuration as GET returns it: with system metrics and custom metric results,
    /// from the last metric run when runs are scheduled (an update does not rerun them).
    fn with_metrics(&self, c: &Configuration, now: Instant) -> Value {
        let due =
            |run: &MetricRun| self.behaviour.metrics_interval.is_none_or(|every| now.duration_since(run.at) >= every);
        let last =
            self.runs.borrow().get(c.id.as_str()).filter(|r| !due(r)).map(|r| (r.system.clone(), r.custom.clone()));
        let (system, counts) = match last {
            Some(last) => last,
            None => {
                let counted = self.metric_run(c);
                if self.behaviour.metrics_interval.is_some() {
                    let run = MetricRun { at: now, system: counted.0.clone(), custom: counted.1.clone() };
                    self.runs.borrow_mut().insert(c.id.to_string(), run);
                }
                counted
            }
        };
        let mut out = c.clone();
        out.system_metrics = system;
        let mut custom = out.metrics.take().unwrap_or_default();
        // A metric added since the last run has no count until the next one.
        custom.results = custom.queries.keys().filter_map(|k| Some((k.clone(), *counts.get(k)?))).collect();
        out.metrics = Some(custom);
        serde_json::to_value(&out).unwrap_or(Value::Null)
    }

    /// One metric run of `c`: its system metrics (IoT Edge deployments) and the count of
    /// each custom metric query.
    fn metric_run(&self, c: &Configuration) -> (Option<Metrics>, BTreeMap<String, i64>) {
        let custom = c.metrics.iter().flat_map(|m| &m.queries).map(|(name, q)| (name.clone(), self.count(q))).collect();
        if !c.is_edge() {
            return (c.system_metrics.clone(), custom);
        }
        let id = &c.id;
        let applied = format!(
            "select deviceId from devices.modules where moduleId = '$edgeAgent' and configurations.[[{id}]].status = 'Applied'"
        );
        let reported = "properties.desired.$version = properties.reported.lastDesiredVersion";
        let success = format!("{applied} and {reported} and properties.reported.lastDesiredStatus.code = 200");
        let failed = format!("{applied} and {reported} and properties.reported.lastDesiredStatus.code != 200");
        let targeted = match c.target_condition.trim() {
            "*" => "select deviceId from devices where capabilities.iotEdge = true".to_string(),
            t => format!("select deviceId from devices where capabilities.iotEdge = true and {t}"),
        };
        let targeted_count = if c.target_condition.trim().is_empty() { 0 } else { self.count(&targeted) };
        let mut m = Metrics::default();
        m.results.insert("targetedCount".into(), targeted_count);
        m.results.insert("appliedCount".into(), self.count(&applied));
        m.results.insert("reportedSuccessfulCount".into(), self.count(&success));
        m.results.insert("reportedFailedCount".into(), self.count(&failed));
        m.queries.insert("targetedCount".into(), targeted);
        m.queries.insert("appliedCount".into(), applied);
        m.queries.insert("reportedSuccessfulCount".into(), success);
        m.queries.insert("reportedFailedCount".into(), failed);
        (Some(m), custom)
    }

    /// Rows a query returns (0 for one that does not parse: it was checked on PUT).
    fn count(&self, text: &str) -> i64 {
        if let Some(&n) = self.counts.borrow().get(text) {
            return n;
        }
        let n = self.count_now(text);
        self.counts.borrow_mut().insert(text.to_string(), n);
        n
    }

    fn count_now(&self, text: &str) -> i64 {
        let Ok(q) = parse_query(text) else {
            return 0;
        };
        if !q.is_aggregate() && q.group_by.is_empty() && q.top.is_none() {
            return self.count_matching(&q);
        }
        let Ok(rows) = self.run_query(&q) else {
            return 0;
        };
        // A COUNT() query returns its count as a row; anything else counts rows.
        if q.is_aggregate()
            && rows.len() == 1
            && let Some(n) = rows[0].as_object().and_then(|o| o.values().next()).and_then(Value::as_i64)
        {
            return n;
        }
        i64::try_from(rows.len()).unwrap_or(i64::MAX)
    }

    /// Twins passing a plain query's WHERE, without keeping any.
    fn count_matching(&self, q: &Query) -> i64 {
        let store = if q.from_modules() { &self.modules } else { &self.devices };
        let Some(_) = &q.filter else {
            return store.len() as i64;
        };
        let filter = CompiledCondition::new(&q.where_condition());
        let mut scratch = Vec::new();
        let n = (0..store.len()).filter(|&i| store.value(i, &mut scratch).is_ok_and(|t| filter.matches(&t))).count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Assigns deployments to devices as the hub does (docs/hub-semantics.md#standard-winner, #layered-stack, #merge-layered, #twin-status): `configurations`
    /// statuses on device and `$edgeAgent` twins, merged desired properties on module twins.
    /// Returns whether device twins and module twins changed.
    fn reassign(&mut self, now: Instant) -> Result<(bool, bool), EmulatorError> {
        let mut deployments = Vec::new();
        let mut conditions = Vec::new();
        for c in &self.configs {
            if let Ok(Some(d)) = MergeDeployment::existing(c) {
                conditions.push(CompiledCondition::new(&compile_target(&c.target_condition)));
                deployments.push(d);
            }
        }
        let mut manifests: HashMap<(Option<u32>, Vec<u32>, bool), EffectiveManifest> = HashMap::new();
        let (mut devices_changed, mut modules_changed) = (false, false);
        let mut scratch = std::mem::take(&mut self.scratch);
        for i in 0..self.devices.len() {
            self.devices.read_into(i, &mut scratch)?;
            // With no deployment, a twin without statuses stays as it is: a light read of
            // its ids and statuses decides that without building its tree (this is every
            // device of a freshly generated hub at start-up).
            if deployments.is_empty() {
                let Ok(light) = serde_json::from_slice::<Light>(&scratch) else {
                    continue;
                };
                if light.configurations.is_none_or(|c| c.is_empty()) {
                    if light.capabilities.and_then(|c| c.iot_edge) == Some(true)
                        && let Some(device) = light.device_id
                    {
                        let device = device.into_owned();
                        modules_changed |= self.clear_agent_statuses(&device, &mut scratch)?;
                    }
                    continue;
                }
            }
            let Ok(mut twin) = serde_json::from_slice::<Value>(&scratch) else {
                continue;
            };
            let Some(device_id) = str_at(&twin, "deviceId").map(str::to_string) else {
                continue;
            };
            let mut matches = MatchSet::new();
            for (k, cond) in conditions.iter().enumerate() {
                if targets_device(cond, &twin) {
                    matches.insert(k as u32);
                }
            }
            let stack = merge::stack(&deployments, &matches);
            let applied: Vec<u32> = stack.applied_indices().collect();
            let statuses: Map<String, Value> = matches
                .iter()
                .map(|k| {
                    let status = if applied.contains(&k) { "Applied" } else { "Targeted" };
                    (deployments[k as usize].id.to_string(), json!({ "status": status }))
                })
                .collect();
            if set_configurations(&mut twin, &statuses) {
                self.devices.set_value(i, &twin);
                devices_changed = true;
            }
            if !is_edge_device(&twin) {
                continue;
            }
            let agent = self.module_index(&device_id, EDGE_AGENT, &mut modules_changed);
            let mut agent_twin = self.modules.value(agent, &mut scratch)?;
            if set_configurations(&mut agent_twin, &statuses) {
                self.modules.set_value(agent, &agent_twin);
                modules_changed = true;
            }
            let key = stack.merge_key();
            let manifest = manifests.entry(key).or_insert_with(|| merge::merge(&deployments, &stack));
            // With no deployment matching, the hub changes nothing on the device: it keeps its
            // last desired properties, unmanaged (MicrosoftDocs azure-docs,
            // articles/iot-edge/how-to-deploy-at-scale.md, "Modify a deployment" and "Delete a
            // deployment"). Clearing them would make the agent report 417 or stop modules.
            if manifest.unmanaged {
                continue;
            }
            let mut docs: Vec<(String, Value)> =
                vec![(EDGE_AGENT.into(), edge_agent_desired(manifest)), (EDGE_HUB.into(), manifest.edge_hub.clone())];
            docs.extend(manifest.twins.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (module, doc) in docs {
                let pos = self.module_index(&device_id, &module, &mut modules_changed);
                let mut module_twin = self.modules.value(pos, &mut scratch)?;
                if set_desired(&mut module_twin, doc) {
                    self.modules.set_value(pos, &module_twin);
                    modules_changed = true;
                    if module == EDGE_AGENT {
                        self.pending.insert(device_id.clone(), now);
                    }
                }
            }
        }
        self.scratch = scratch;
        if devices_changed || modules_changed {
            self.counts.get_mut().clear();
        }
        Ok((devices_changed, modules_changed))
    }

    /// Makes sure an Edge device outside every deployment has an `$edgeAgent` twin without
    /// deployment statuses; whether that changed anything.
    fn clear_agent_statuses(&mut self, device: &str, scratch: &mut Vec<u8>) -> Result<bool, EmulatorError> {
        let mut created = false;
        let agent = self.module_index(device, EDGE_AGENT, &mut created);
        self.modules.read_into(agent, scratch)?;
        let clean =
            serde_json::from_slice::<Light>(scratch).is_ok_and(|l| l.configurations.is_some_and(|c| c.is_empty()));
        if clean {
            return Ok(created);
        }
        let mut twin = self.modules.value(agent, scratch)?;
        if set_configurations(&mut twin, &Map::new()) {
            self.modules.set_value(agent, &twin);
            return Ok(true);
        }
        Ok(created)
    }

    /// The position of a module twin, created (as the hub creates `$edgeHub` and module
    /// twins when a deployment first names them) if missing.
    fn module_index(&mut self, device: &str, module: &str, created: &mut bool) -> usize {
        let key = module_key(device, module);
        if let Some(&i) = self.module_pos.get(&key) {
            return i as usize;
        }
        let mut twin = json!({
            "deviceId": device,
            "moduleId": module,
            "etag": "AAAAAAAAAAE=",
            "status": "enabled",
            "connectionState": "Disconnected",
            "version": 1,
            "properties": { "desired": { "$version": 1 }, "reported": { "$version": 1 } },
        });
        if module == EDGE_AGENT {
            twin["configurations"] = json!({});
        }
        self.modules.push_value(&twin);
        let i = self.modules.len() - 1;
        self.module_pos.insert(key, i as u32);
        *created = true;
        i
    }

    /// Lets devices report: every `$edgeAgent` whose desired document changed at least
    /// `--simulate-success-after` ago reports its version, with 200, 500 (a seeded share of
    /// devices) or 417 (no full manifest).
    fn settle(&mut self, now: Instant) -> Result<(), EmulatorError> {
        let Some(after) = self.behaviour.simulate_success_after else {
            return Ok(());
        };
        let due: Vec<String> =
            self.pending.iter().filter(|(_, t)| now.duration_since(**t) >= after).map(|(d, _)| d.clone()).collect();
        if due.is_empty() {
            return Ok(());
        }
        for device in &due {
            self.pending.remove(device);
            let Some(&pos) = self.module_pos.get(&module_key(device, EDGE_AGENT)) else {
                continue;
            };
            let pos = pos as usize;
            let in_cohort = match (&self.failing_cohort, self.device_pos.get(device.as_str())) {
                (Some(cond), Some(&at)) => {
                    self.devices.value(at as usize, &mut self.scratch).is_ok_and(|twin| cond.matches(&twin))
                }
                _ => false,
            };
            let fails = in_cohort || fails(self.behaviour.seed, device, self.behaviour.simulate_failure_share);
            let mut twin = self.modules.value(pos, &mut self.scratch)?;
            let agent = &mut twin;
            let desired = agent.pointer("/properties/desired").cloned().unwrap_or(Value::Null);
            let version = desired.get("$version").cloned().unwrap_or(json!(1));
            let (code, description) = if desired.get("systemModules").is_none() {
                (417, "empty configuration: no standard deployment applies")
            } else if in_cohort {
                (500, "simulated failure (fleetform hub serve --simulate-failure-where)")
            } else if fails {
                (500, "simulated failure (fleetform hub serve --simulate-failure-share)")
            } else {
                (200, "")
            };
            let reported = ensure_child(ensure_object(agent, "properties"), "reported");
            reported.insert("lastDesiredVersion".into(), version);
            reported.insert("lastDesiredStatus".into(), json!({ "code": code, "description": description }));
            let v = reported.get("$version").and_then(Value::as_i64).unwrap_or(0) + 1;
            reported.insert("$version".into(), json!(v));
            self.modules.set_value(pos, &twin);
            self.stats.reports_simulated += 1;
        }
        self.counts.get_mut().clear();
        self.persist_twins(false, true)
    }
}

/// Removes temp files an interrupted write left behind (`AtomicFile` names them
/// `.<target>.<random>.tmp`); they are never read, only clutter.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours =
            [snapshot::CONFIGURATIONS_FILE, snapshot::DEVICES_JSON, snapshot::DEVICES_JSONL, snapshot::MODULES_JSON]
                .iter()
                .chain([snapshot::MODULES_JSONL, KEY_FILE].iter())
                .any(|target| name.starts_with(&format!(".{target}.")));
        if ours && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a device is in the simulated failing share: a hash of seed and id, so the same
/// devices fail in every run and whatever order they report in.
fn fails(seed: u64, device: &str, share: f64) -> bool {
    let digest = sha2::Sha256::digest(format!("{seed}\n{device}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) as f64 / u64::MAX as f64) < share
}

fn agent_in_sync(agent: &Value) -> bool {
    agent.pointer("/properties/desired/$version") == agent.pointer("/properties/reported/lastDesiredVersion")
}

fn compile_target(text: &str) -> Condition {
    match text.trim() {
        "" => Condition::nothing(),
        t => parse_condition(t).unwrap_or_else(|_| Condition::nothing()),
    }
}

/// The body as a configuration when its only fault is an integer priority outside the
/// hub's range.
fn without_refused_priority(body: &[u8]) -> Option<Configuration> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let priority = v.get_mut("priority")?;
    Priority::try_from(priority.as_i64()?).err()?;
    *priority = Value::from(0);
    serde_json::from_value(v).ok()
}

fn check_queries(c: &Configuration) -> Result<(), String> {
    if !c.target_condition.trim().is_empty() {
        parse_condition(&c.target_condition).map_err(|e| format!("targetCondition: {}", e.message()))?;
    }
    if let Some(m) = &c.metrics {
        for (name, q) in &m.queries {
            parse_query(q).map_err(|e| format!("metric {name}: {}", e.message()))?;
        }
    }
    Ok(())
}

/// Deployment ids: at most 128 of lowercase letters, digits and `- + % _ * ! '` (docs/hub-semantics.md#ids).
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("a configuration id has 1 to 128 characters".into());
    }
    match id.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-+%_*!'".contains(*c))) {
        Some(bad) => Err(format!("the configuration id may not contain `{bad}`")),
        None => Ok(()),
    }
}

fn strip_results(c: &mut Configuration) {
    if let Some(m) = &mut c.metrics {
        m.results.clear();
    }
}

fn set_configurations(twin: &mut Value, statuses: &Map<String, Value>) -> bool {
    let Some(obj) = twin.as_object_mut() else {
        return false;
    };
    let current = obj.get("configurations");
    if current.is_none() && statuses.is_empty() {
        return false;
    }
    let new = Value::Object(statuses.clone());
    if current == Some(&new) {
        return false;
    }
    obj.insert("configurations".into(), new);
    true
}

/// Replaces a module twin's desired properties with `doc` when they differ (ignoring the
/// hub-maintained `$version` and `$metadata`), bumping `$version` and the twin version.
fn set_desired(twin: &mut Value, doc: Value) -> bool {
    let mut doc = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let desired = ensure_child(ensure_object(twin, "properties"), "desired");
    let mut current = desired.clone();
    let version = current.remove("$version").and_then(|v| v.as_i64()).unwrap_or(0);
    current.remove("$metadata");
    if current == doc {
        return false;
    }
    doc.insert("$version".into(), json!(version + 1));
    *desired = doc;
    if let Some(obj) = twin.as_object_mut() {
        let v = obj.get("version").and_then(Value::as_i64).unwrap_or(0) + 1;
        obj.insert("version".into(), json!(v));
    }
    true
}

fn ensure_object<'v>(value: &'v mut Value, key: &str) -> &'v mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    ensure_child(value.as_object_mut().expect("just made an object"), key)
}

fn ensure_child<'v>(obj: &'v mut Map<String, Value>, key: &str) -> &'v mut Map<String, Value> {
    let slot = obj.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = urlencoding::decode(k).ok()?.into_owned();
            let v = urlencoding::decode(&v.replace('+', " ")).ok()?.into_owned();
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

/// Where the next page of a query starts: the twin (or, for aggregates, the result row)
/// to look at next and how many rows earlier pages returned (for `TOP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Resume {
    position: u64,
    returned: u64,
}

fn encode_continuation(r: Resume) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("fleetform-emulator:{}:{}", r.position, r.returned))
}

fn decode_continuation(token: &str) -> Option<Resume> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (position, returned) = text.strip_prefix("fleetform-emulator:")?.split_once(':')?;
    Some(Resume { position: position.parse().ok()?, returned: returned.parse().ok()? })
}

/// Which throttled operation class a request path belongs to (none for paths the hub does
/// not have; they are answered 404 without using a quota).
fn op_class(path: &str) -> Option<OpClass> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("configurations"), _) => Some(OpClass::Configurations),
        (Some("devices"), Some("query")) => Some(OpClass::Queries),
        (Some("twins"), _) => Some(OpClass::TwinReads),
        _ => None,
    }
}

/// What reassignment needs of a twin when no deployment exists, read without a tree.
#[derive(serde::Deserialize)]
struct Light<'a> {
    #[serde(rename = "deviceId", borrow, default)]
    device_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    capabilities: Option<LightCapabilities>,
    #[serde(default)]
    configurations: Option<Map<String, Value>>,
}

#[derive(serde::Deserialize)]
struct LightCapabilities {
    #[serde(rename = "iotEdge", default)]
    iot_edge: Option<bool>,
}

/// Rewrites a twin file from a store: `.jsonl` straight from the stored text, a pretty
/// `.json` through trees (hand-written snapshots, small).
fn write_store(dir: &Path, store: &TwinStore, format: TwinFormat, modules: bool) -> Result<(), EmulatorError> {
    let writer = SnapshotWriter::create(dir)?;
    let mut scratch = Vec::new();
    if format == TwinFormat::JsonLines {
        let target = dir.join(if modules { snapshot::MODULES_JSONL } else { snapshot::DEVICES_JSONL });
        let mut out = AtomicFile::create_private(&target).map_err(snapshot::SnapshotError::from)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut out);
        for i in 0..store.len() {
            store.read_into(i, &mut scratch)?;
            std::io::Write::write_all(&mut w, &scratch)
                .and_then(|()| std::io::Write::write_all(&mut w, b"\n"))
                .map_err(|source| EmulatorError::Io { what: format!("writing {}", target.display()), source })?;
        }
        std::io::Write::flush(&mut w)
            .map_err(|source| EmulatorError::Io { what: format!("writing {}", target.display()), source })?;
        drop(w);
        out.commit().map_err(snapshot::SnapshotError::from)?;
        return Ok(());
    }
    let mut file = if modules { writer.module_twins_file(format)? } else { writer.devices_file(format)? };
    for i in 0..store.len() {
        file.push(&store.value(i, &mut scratch)?)?;
    }
    file.commit()?;
    Ok(())
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Etags like the hub's: short base64. The hub's JSON bodies carry etags unquoted
/// (`"etag": "AAAAAAAAAAE="` in twins), so the emulator stores and sends them bare;
/// clients quote them for `If-Match`.
fn new_etag(stamp: &str) -> Etag {
    let digest = sha2::Sha256::digest(stamp.as_bytes());
    Etag::from_str(&base64::engine::general_purpose::STANDARD.encode(&digest[..6]))
        .expect("base64 of a digest is a non-empty text without quotes")
}

/// Whether an `If-Match` value admits a write to `config`. A value that is no etag at all
/// (`""`) matches nothing, as on the hub.
fn admits(if_match: &str, config: &Configuration) -> bool {
    if_match.parse::<IfMatch>().is_ok_and(|m| m.admits(config.etag.as_ref()))
}

fn load_or_create_key(dir: &Path) -> Result<(String, SecretKey), EmulatorError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let file: KeyFile = serde_json::from_slice(&bytes)
                .map_err(|e| EmulatorError::BadState { path: path.clone(), message: e.to_string() })?;
            let key = SecretKey::from_base64(&file.key)
                .map_err(|e| EmulatorError::BadState { path: path.clone(), message: e.to_string() })?;
            Ok((file.key_name, key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.is_dir() {
                return Err(EmulatorError::Snapshot(snapshot::SnapshotError::NotADirectory { dir: dir.to_path_buf() }));
            }
            // The key must not be guessable from --seed (which only steers simulation), so
            // it comes from the OS.
            let mut bytes = vec![0u8; 32];
            ChaCha8Rng::from_entropy().fill(&mut bytes[..]);
            let key = SecretKey::from_bytes(bytes);
            let file = KeyFile { key_name: "iothubowner".into(), key: key.to_base64() };
            let mut out = AtomicFile::create(&path).map_err(snapshot::SnapshotError::from)?;
            serde_json::to_writer_pretty(&mut out, &file)
                .map_err(std::io::Error::from)
                .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
                .map_err(|source| EmulatorError::Io { what: format!("writing {}", path.display()), source })?;
            out.commit().map_err(snapshot::SnapshotError::from)?;
            // The key guards the emulated hub: readable by its owner only.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|source| EmulatorError::Io { what: format!("protecting {}", path.display()), source })?;
            }
            Ok((file.key_name, key))
        }
        Err(source) => Err(EmulatorError::Io { what: format!("reading {}", path.display()), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetform::hub::connection::{ConnectionString, SasToken};

    fn emulator(devices: usize, behaviour: Behaviour) -> (tempfile::TempDir, Emulator) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        let twins: String = (0..devices)
            .map(|i| {
                format!("{{\"deviceId\":\"d{i}\",\"capabilities\":{{\"iotEdge\":true}},\"tags\":{{\"n\":{i}}}}}\n")
            })
            .collect();
        std::fs::write(dir.path().join("devices.jsonl"), twins).unwrap();
        let emulator = Emulator::open(dir.path(), "127.0.0.1:1".into(), behaviour).unwrap();
        (dir, emulator)
    }

    fn request(emu: &Emulator, method: &str, path: &str, body: Value, if_match: Option<&str>) -> Request {
        let conn =
            ConnectionString { host_name: emu.host.clone(), key_name: emu.key_name.clone(), key: emu.key.clone() };
        let mut headers = HeaderMap::new();
        let token = SasToken::new(&conn, 4_000_000_000);
        headers.insert("authorization", token.header_value().parse().unwrap());
        if let Some(tag) = if_match {
            headers.insert("if-match", tag.parse().unwrap());
        }
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(format!("{q}&api-version=2021-04-12"))),
            None => (path.to_string(), Some("api-version=2021-04-12".to_string())),
        };
        Request { method: method.into(), path, query, headers, body: serde_json::to_vec(&body).unwrap() }
    }

    fn config(id: &str, target: &str) -> Value {
        json!({"id": id, "priority": 1, "targetCondition": target,
               "content": {"modulesContent": {"$edgeAgent": {"properties.desired": {"systemModules": {}, "modules": {}}}}}})
    }

    #[test]
    fn the_hundred_configuration_limit_holds() {
        let (_dir, mut emu) = emulator(3, Behaviour::default());
        let now = Instant::now();
        for i in 0..MAX_CONFIGURATIONS {
            let id = format!("c{i}");
            let req = request(&emu, "PUT", &format!("/configurations/{id}"), config(&id, "*"), None);
            assert_eq!(emu.handle(&req, now).status, 201, "{id}");
        }
        let req = request(&emu, "PUT", "/configurations/over", config("over", "*"), None);
        let reply = emu.handle(&req, now);
        assert_eq!(reply.status, 400);
        assert_eq!(reply.headers[0], ("iothub-errorcode", TOO_MANY_CODE.to_string()));
        // Every device carries the 100 statuses; only the newest equal-priority one applies.
        let twin = emu.handle(&request(&emu, "GET", "/twins/d0", Value::Null, None), now).value().unwrap();
        let statuses = twin["configurations"].as_object().unwrap();
        assert_eq!(statuses.len(), 100);
        assert_eq!(statuses.values().filter(|s| s["status"] == "Applied").count(), 1);
    }

    #[test]
    fn unquoted_if_match_is_a_create_and_star_matches_any_etag() {
        let (_dir, mut emu) = emulator(2, Behaviour::default());
        let now = Instant::now();
        let created =
            emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "*"), None), now).value().unwrap();
        let etag = created["etag"].as_str().unwrap().to_string();
        let mut update = config("a", "tags.n = 1");
        update["priority"] = json!(4);
        let bare = request(&emu, "PUT", "/configurations/a", update.clone(), Some(&etag));
        assert_eq!(emu.handle(&bare, now).status, 409);
        let quoted = request(&emu, "PUT", "/configurations/a", update.clone(), Some(&format!("\"{etag}\"")));
        let reply = emu.handle(&quoted, now);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.value().unwrap()["systemMetrics"]["results"]["targetedCount"], 1);
        let star = request(&emu, "PUT", "/configurations/a", update, Some("*"));
        assert_eq!(emu.handle(&star, now).status, 200);
        assert_eq!(emu.handle(&request(&emu, "DELETE", "/configurations/a", Value::Null, Some("*")), now).status, 204);
    }

    #[test]
    fn scheduled_metric_runs_keep_the_last_counts_until_the_interval_passes() {
        let every = Duration::from_secs(300);
        let (_dir, mut emu) = emulator(4, Behaviour { metrics_interval: Some(every), ..Default::default() });
        let t0 = Instant::now();
        let targeted = |emu: &mut Emulator, at: Instant| {
            let reply = emu.handle(&request(emu, "GET", "/configurations/a", Value::Null, None), at);
            reply.value().unwrap()["systemMetrics"]["results"]["targetedCount"].as_i64().unwrap()
        };
        let created = emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "tags.n = 1"), None), t0);
        assert_eq!(created.value().unwrap()["systemMetrics"]["results"]["targetedCount"], 1, "run on creation");
        // Widened to all four devices 10 s later: the target applies at once, the count does not.
        let widen = request(&emu, "PUT", "/configurations/a", config("a", "*"), Some("*"));
        let reply = emu.handle(&widen, t0 + Duration::from_secs(10)).value().unwrap();
        assert_eq!(reply["targetCondition"], "*");
        assert_eq!(reply["systemMetrics"]["results"]["targetedCount"], 1);
        assert_eq!(targeted(&mut emu, t0 + every - Duration::from_millis(1)), 1, "still the creation run");
        assert_eq!(targeted(&mut emu, t0 + every), 4, "the next run counts the new target");
        assert_eq!(targeted(&mut emu, t0 + every + Duration::from_secs(1)), 4);
        // A deleted and re-created configuration is counted afresh.
        assert_eq!(
            emu.handle(&request(&emu, "DELETE", "/configurations/a", Value::Null, Some("*")), t0 + every).status,
            204
        );
        let again = emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "tags.n = 2"), None), t0 + every);
        assert_eq!(again.value().unwrap()["systemMetrics"]["results"]["targetedCount"], 1);
        // Without a schedule every read recounts.
        let (_dir, mut emu) = emulator(4, Behaviour::default());
        emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "tags.n = 1"), None), t0);
        emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "*"), Some("*")), t0);
        assert_eq!(targeted(&mut emu, t0), 4);
    }

    #[test]
    fn continuation_tokens_round_trip_and_foreign_ones_are_refused() {
        let resume = Resume { position: 42, returned: 7 };
        assert_eq!(decode_continuation(&encode_continuation(resume)), Some(resume));
        assert_eq!(decode_continuation("bm9wZQ=="), None);
        let (_dir, mut emu) = emulator(5, Behaviour::default());
        let mut req = request(&emu, "POST", "/devices/query", json!({"query": "SELECT * FROM devices"}), None);
        req.headers.insert("x-ms-max-item-count", "2".parse().unwrap());
        let first = emu.handle(&req, Instant::now());
        let token = first.headers.iter().find(|(n, _)| *n == "x-ms-continuation").unwrap().1.clone();
        assert_eq!(first.value().unwrap().as_array().unwrap().len(), 2);
        req.headers.insert("x-ms-continuation", token.parse().unwrap());
        let second = emu.handle(&req, Instant::now());
        assert_eq!(second.value().unwrap()[0]["deviceId"], "d2");
        req.headers.insert("x-ms-continuation", "garbage".parse().unwrap());
        assert_eq!(emu.handle(&req, Instant::now()).status, 400);
    }

    #[test]
    fn loading_stamps_bare_configurations_and_clears_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let bare = json!([config("hand-written", "tags.n = 1")]);
        std::fs::write(dir.path().join("configurations.json"), bare.to_string()).unwrap();
        std::fs::write(
            dir.path().join("devices.jsonl"),
            "{\"deviceId\":\"d1\",\"capabilities\":{\"iotEdge\":true},\"tags\":{\"n\":1}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".devices.jsonl.abc123.tmp"), "torn").unwrap();
        let emu = Emulator::open(dir.path(), "127.0.0.1:1".into(), Behaviour::default()).unwrap();
        assert!(!dir.path().join(".devices.jsonl.abc123.tmp").exists());
        let saved = snapshot::read_configurations(&dir.path().join("configurations.json")).unwrap();
        assert!(saved[0].created_time_utc.is_some() && saved[0].etag.is_some());
        // The stamped deployment took part in assignment at once.
        let agent = emu.modules.value(emu.module_pos[&module_key("d1", EDGE_AGENT)] as usize, &mut Vec::new()).unwrap();
        assert_eq!(agent["configurations"]["hand-written"]["status"], "Applied");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key file is readable by others: {mode:o}");
        }
    }

    #[test]
    fn cached_query_rows_follow_changes() {
        let (_dir, mut emu) = emulator(4, Behaviour::default());
        let now = Instant::now();
        let applied = json!({"query": "SELECT deviceId FROM devices WHERE configurations.[[a]].status = 'Applied'"});
        let run = |emu: &mut Emulator| {
            let req = request(emu, "POST", "/devices/query", applied.clone(), None);
            emu.handle(&req, now).value().unwrap().as_array().unwrap().len()
        };
        assert_eq!(run(&mut emu), 0);
        assert_eq!(run(&mut emu), 0);
        emu.handle(&request(&emu, "PUT", "/configurations/a", config("a", "tags.n >= 2"), None), now);
        assert_eq!(run(&mut emu), 2);
        emu.handle(&request(&emu, "DELETE", "/configurations/a", Value::Null, None), now);
        assert_eq!(run(&mut emu), 0);
    }

    #[test]
    fn failing_devices_are_chosen_by_seed() {
        let picked: Vec<bool> = (0..1000).map(|i| fails(5, &format!("d{i}"), 0.25)).collect();
        let again: Vec<bool> = (0..1000).map(|i| fails(5, &format!("d{i}"), 0.25)).collect();
        assert_eq!(picked, again);
        let n = picked.iter().filter(|&&f| f).count();
        assert!((200..300).contains(&n), "{n}");
        assert!(!(0..100).any(|i| fails(5, &format!("d{i}"), 0.0)));
    }
}
