//! The REST backend: a real IoT Hub (or the emulator) over HTTPS (docs/hub-semantics.md#rest-api, #query-paging, #throttling).
//!
//! Every request carries `api-version=2021-04-12` and a SAS token signed locally from the
//! connection string, or an Entra ID token (`credential::HubSignIn`); either is renewed a
//! few minutes before it expires. Throttling
//! (429) and server errors (5xx) are retried with exponential backoff and full jitter,
//! honouring `Retry-After`, until an overall deadline; so are transport failures (a
//! refused or reset connection, a timeout, a body cut short), see `retry::Replay`. Other
//! failures map to [`HubError`] variants that say what to do (`error.rs`). Nothing here
//! ever formats the key or a token.
//!
//! A plan reads only the twin paths its conditions reference, of IoT Edge devices
//! (`projection.rs`, docs/hub-semantics.md#projection-queries), and with a known tier every
//! request waits for its operation class's budget (`pacer.rs`, docs/hub-semantics.md#pacing).

mod error;
pub mod pacer;
mod paging;
mod progress;
pub mod projection;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connection::ConnectionString;
use super::credential::{EntraCredential, HubSignIn};
use super::{
    Configuration, Etag, HubError, HubRead, HubSpecError, HubWrite, IfMatch, MAX_CONFIGURATIONS, Projection, Twin,
};
use error::error_from;
use retry::{Replay, Reply};

pub use error::{HubErrorBody, parse_error_body};
pub use pacer::{OperationClass, Pacer, Quota, Tier};
pub use progress::{ProgressObserver, ReadProgress, ReadStage, TwinKind};

pub const API_VERSION: &str = "2021-04-12";
/// The most rows one query page may hold (the hub's cap on `x-ms-max-item-count`).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Tuning for [`RestHub`]. The defaults suit a real hub.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// Base URL replacing `https://<HostName>` (the emulator, sovereign clouds).
    pub endpoint: Option<String>,
    /// How long one operation may take, retries included.
    pub deadline: Duration,
    pub connect_timeout: Duration,
    /// How long to wait for a response once connected.
    pub read_timeout: Duration,
    /// Rows per query page (`x-ms-max-item-count`), 1 to [`MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// First backoff step; attempt n waits up to `base × 2ⁿ`, at most `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Lifetime of each SAS token.
    pub token_ttl: Duration,
    /// Whether twin reads report to `on_progress`; false spares the COUNT queries that
    /// size the report.
    pub progress: bool,
    /// Told how far twin reads have got (the CLI draws a bar from it).
    pub on_progress: Option<ProgressObserver>,
    /// Keeps requests within a share of the hub's quotas; `None` sends as fast as the hub
    /// answers (429s still back off).
    pub pacer: Option<Arc<Pacer>>,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions {
            endpoint: None,
            deadline: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            page_size: MAX_PAGE_SIZE,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            token_ttl: Duration::from_secs(3600),
            progress: true,
            on_progress: None,
            pacer: None,
        }
    }
}

/// An IoT Hub reached over its REST API.
pub struct RestHub {
    sign_in: HubSignIn,
    base: String,
    client: Client,
    options: RestOptions,
    stats: RequestCounters,
}

/// What a [`RestHub`] has sent and received so far, counted on the client side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Query requests (`POST /devices/query`), every page and every retry.
    pub queries: u64,
    /// Configuration requests (list, get, create, update, delete, testQueries).
    pub configurations: u64,
    /// Single twin reads.
    pub twin_reads: u64,
    /// Response body bytes received, all requests together.
    pub body_bytes: u64,
}

#[derive(Default)]
struct RequestCounters {
    queries: std::sync::atomic::AtomicU64,
    configurations: std::sync::atomic::AtomicU64,
    twin_reads: std::sync::atomic::AtomicU64,
    body_bytes: std::sync::atomic::AtomicU64,
}

impl RequestCounters {
    fn record(&self, class: OperationClass, body_bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let counter = match class {
            OperationClass::Queries => &self.queries,
            OperationClass::Configurations => &self.configurations,
            OperationClass::TwinReads => &self.twin_reads,
        };
        counter.fetch_add(1, Relaxed);
        self.body_bytes.fetch_add(body_bytes as u64, Relaxed);
    }

    fn snapshot(&self) -> RequestStats {
        use std::sync::atomic::Ordering::Relaxed;
        RequestStats {
            queries: self.queries.load(Relaxed),
            configurations: self.configurations.load(Relaxed),
            twin_reads: self.twin_reads.load(Relaxed),
            body_bytes: self.body_bytes.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for RestHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestHub")
            .field("sign_in", &self.sign_in)
            .field("base", &self.base)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The answer of `POST /configurations/testQueries`: empty strings mean "valid".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestQueriesResult {
    #[serde(default)]
    pub target_condition_error: String,
    #[serde(default)]
    pub custom_metric_query_errors: std::collections::BTreeMap<String, String>,
}

impl RestHub {
    pub fn new(connection: ConnectionString, options: RestOptions) -> Result<RestHub, HubError> {
        RestHub::signed_in(HubSignIn::shared_key(connection), options)
    }

    /// A hub reached with an Entra ID token instead of a key.
    pub fn with_entra(
        host_name: String,
        credential: EntraCredential,
        options: RestOptions,
    ) -> Result<RestHub, HubError> {
        RestHub::signed_in(HubSignIn::Entra { host_name, credential }, options)
    }

    fn signed_in(sign_in: HubSignIn, options: RestOptions) -> Result<RestHub, HubError> {
        let base = match &options.endpoint {
            Some(url) => {
                let url = url.trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(HubSpecError::EndpointNotAUrl { url: url.to_string() }.into());
                }
                url.to_string()
            }
            None => format!("https://{}", sign_in.host_name()),
        };
        let mut builder = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.read_timeout)
            .user_agent(concat!("fleetform/", env!("CARGO_PKG_VERSION")));
        // A proxy in the environment is for the way out; a hub on this machine (the
        // emulator, a tunnel) is reached directly, or an HTTP_PROXY meant for package
        // downloads would swallow every request to it.
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|cause| HubError::HttpClient { cause })?;
        let mut options = options;
        options.page_size = options.page_size.clamp(1, MAX_PAGE_SIZE);
        Ok(RestHub { sign_in, base, client, options, stats: RequestCounters::default() })
    }

    pub fn host_name(&self) -> &str {
        self.sign_in.host_name()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Requests sent and bytes received so far.
    pub fn stats(&self) -> RequestStats {
        self.stats.snapshot()
    }

    fn authorization(&self) -> Result<String, HubError> {
        Ok(self.sign_in.header_value(self.options.token_ttl)?)
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={API_VERSION}", self.base)
    }

    fn json<T: for<'de> Deserialize<'de>>(operation: &str, reply: Reply) -> Result<T, HubError> {
        serde_json::from_slice(&reply.body).map_err(|e| HubError::Http {
            operation: operation.to_string(),
            status: reply.status.as_u16(),
            code: "UnexpectedResponse".into(),
            message: format!("the response is not the expected JSON: {e}"),
            help: None,
        })
    }

    /// `GET /configurations/{id}`.
    pub fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        let op = format!("get deployment {id}");
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(id)));
        let resp = self.send(&op, OperationClass::Configurations, Replay::Idempotent, &|c| c.get(&url))?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(id), resp));
        }
        Self::json(&op, resp)
    }

    /// `POST /configurations/testQueries`: lets the hub check a target condition and
    /// custom metric queries without creating anything.
    pub fn test_queries(
        &self,
        target_condition: &str,
        custom_metric_queries: &std::collections::BTreeMap<String, String>,
    ) -> Result<TestQueriesResult, HubError> {
        let op = "test queries";
        let url = self.url("/configurations/testQueries");
        let body =
            serde_json::json!({ "targetCondition": target_condition, "customMetricQueries": custom_metric_queries });
        let resp = self.send(op, OperationClass::Configurations, Replay::Idempotent, &|c| c.post(&url).json(&body))?;
        if !resp.status.is_success() {
            return Err(error_from(op, None, resp));
        }
        Self::json(op, resp)
    }

    /// `GET /twins/{deviceId}`.
    pub fn device_twin(&self, device_id: &str) -> Result<Value, HubError> {
        self.get_twin(&format!("/twins/{}", urlencoding::encode(device_id)), device_id)
    }

    /// `GET /twins/{deviceId}/modules/{moduleId}`.
    pub fn module_twin(&self, device_id: &str, module_id: &str) -> Result<Value, HubError> {
        let path = format!("/twins/{}/modules/{}", urlencoding::encode(device_id), urlencoding::encode(module_id));
        self.get_twin(&path, &format!("{device_id}/{module_id}"))
    }

    fn get_twin(&self, path: &str, what: &str) -> Result<Value, HubError> {
        let op = format!("get twin {what}");
        let url = self.url(path);
        // Twin reads are metered per second, far above what fleetform sends; not paced.
        let resp = self.send(&op, OperationClass::TwinReads, Replay::Idempotent, &|c| c.get(&url))?;
        if !resp.status.is_success() {
            // Not `NotFound`: that variant speaks of deployments. A missing twin stays an
            // HTTP 404 with the hub's DeviceNotFound / ModuleNotFound code.
            return Err(error_from(&op, None, resp));
        }
        Self::json(&op, resp)
    }
}

/// A device that is not IoT Edge, known only by being counted: not a valid device id (the
/// hub allows no spaces in one), so it can never be mistaken for a real device, and no
/// Edge capability, so no condition is ever evaluated for it.
fn not_edge_stand_in() -> Result<Twin, HubError> {
    let value =
        serde_json::json!({ "deviceId": "(not IoT Edge: counted, not read)", "capabilities": { "iotEdge": false } });
    Twin::from_value(value).map_err(|shape| HubError::TwinWithoutId { shape })
}

/// The body of a PUT: the configuration without the fields the hub owns.
fn put_body(config: &Configuration) -> Configuration {
    let mut body = config.clone();
    body.etag = None;
    body.created_time_utc = None;
    body.last_updated_time_utc = None;
    body.system_metrics = None;
    if let Some(m) = &mut body.metrics {
        m.results.clear();
    }
    body
}

impl HubRead for RestHub {
    fn describe(&self) -> String {
        match &self.options.endpoint {
            Some(_) => format!("hub {} at {}", self.host_name(), self.base),
            None => format!("hub {}", self.host_name()),
        }
    }

    /// The HostName, lowercased (DNS names are case-insensitive): what the SAS token is
    /// signed for, so the hub the key belongs to, whatever `--endpoint` routes through.
    fn identity(&self) -> String {
        format!("hub {}", self.host_name().to_ascii_lowercase())
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        let op = "list deployments";
        let url = self.url(&format!("/configurations?top={MAX_CONFIGURATIONS}"));
        let resp = self.send(op, OperationClass::Configurations, Replay::Idempotent, &|c| c.get(&url))?;
        if !resp.status.is_success() {
            return Err(error_from(op, None, resp));
        }
        Self::json(op, resp)
    }

    /// With [`Projection::Paths`], a projection query of IoT Edge devices
    /// ([`projection::ProjectedQuery`]): only the referenced paths travel. Devices that are
    /// not IoT Edge are counted (`SELECT COUNT()`, one request) but not read, and handed to
    /// `visit` as count-only stand-ins (see [`not_edge_stand_in`]) so that a fleet's device
    /// total is the hub's. Other projections read whole twins (`SELECT *`).
    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        let Projection::Paths(paths) = projection else {
            return self.read_all(
                TwinKind::Devices,
                "SELECT * FROM devices",
                "SELECT COUNT() AS n FROM devices",
                &mut |rows| {
                    let twins = rows
                        .into_iter()
                        .map(|v| Twin::from_value(v).map_err(|shape| HubError::TwinWithoutId { shape }))
                        .collect::<Result<Vec<_>, _>>()?;
                    visit(twins)
                },
            );
        };
        let query = projection::ProjectedQuery::new(&paths);
        let count_query = "SELECT COUNT() AS n FROM devices";
        // Without the total the plan would count only the Edge devices: refused, not guessed.
        let total = self.count(count_query)?.ok_or_else(|| HubError::Http {
            operation: "count devices".into(),
            status: 200,
            code: "UnexpectedResponse".into(),
            message: format!("`{count_query}` returned no count"),
            help: None,
        })?;
        let mut edge = 0u64;
        self.read_all(
            TwinKind::Devices,
            &query.text,
            "SELECT COUNT() AS n FROM devices WHERE capabilities.iotEdge = true",
            &mut |rows| {
                edge += rows.len() as u64;
                visit(rows.into_iter().map(|row| query.twin(row)).collect::<Result<Vec<_>, _>>()?)
            },
        )?;
        // Queries are eventually consistent: a device added between the count and the read
        // can make the read exceed the count; then there are simply no stand-ins.
        let mut others = total.saturating_sub(edge);
        while others > 0 {
            let n = others.min(self.options.page_size as u64);
            visit((0..n).map(|_| not_edge_stand_in()).collect::<Result<Vec<_>, _>>()?)?;
            others -= n;
        }
        Ok(())
    }

    /// Every module twin (`SELECT * FROM devices.modules`). `plan` never calls this; the
    /// callers are `snapshot` (it copies them) and `query … FROM devices.modules`
    /// (docs/hub-semantics.md#projection-queries).
    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), HubError> + Sync)) -> Result<(), HubError> {
        self.read_all(
            TwinKind::Modules,
            "SELECT * FROM devices.modules",
            "SELECT COUNT() AS n FROM devices.modules",
            &mut |rows| visit(rows),
        )
    }

    /// Only the asked devices' `$edgeAgent` twins, and of them only the reported modules
    /// map: `SELECT deviceId, properties.reported.modules AS m FROM devices.modules WHERE
    /// moduleId = '$edgeAgent' AND deviceId IN [...]`, as many devices per query as the
    /// hub's 8192 characters of query text hold ([`projection::agent_module_queries`]).
    /// When that takes more queries than reading every agent twin's map a page at a time
    /// (a first plan, where most of the fleet is unmanaged), every agent twin is read
    /// instead and the others dropped. Either way each query is paced like any other.
    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<crate::model::AgentReport>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        let queries = projection::agent_module_queries(devices.as_slice());
        let scan_pages = edge_devices.div_ceil(self.options.page_size as u64).max(1);
        if queries.len() as u64 <= scan_pages {
            for query in queries {
                self.query_pages(&query, &mut |rows| {
                    let reports: Vec<crate::model::AgentReport> =
                        rows.into_iter().filter_map(projection::agent_report).collect();
                    if reports.is_empty() { Ok(()) } else { visit(reports) }
                })?;
            }
            return Ok(());
        }
        self.query_pages(&projection::all_agent_modules_query(), &mut |rows| {
            let reports: Vec<crate::model::AgentReport> = rows
                .into_iter()
                .filter_map(projection::agent_report)
                .filter(|r| devices.contains(&r.device_id))
                .collect();
            if reports.is_empty() { Ok(()) } else { visit(reports) }
        })?;
        Ok(())
    }

    fn configuration(&self, id: &str) -> Result<Configuration, HubError> {
        RestHub::configuration(self, id)
    }

    fn live_metrics(&self) -> bool {
        true
    }
}

impl HubWrite for RestHub {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        let op = format!("create deployment {}", config.id);
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(&config.id)));
        let body = put_body(config);
        let resp = self.send(&op, OperationClass::Configurations, Replay::Guarded, &|c| c.put(&url).json(&body))?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(&config.id), resp));
        }
        Self::json(&op, resp)
    }

    fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError> {
        let op = format!("update deployment {}", config.id);
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(&config.id)));
        let mut body = put_body(config);
        body.etag = Some(etag.unquoted());
        let if_match = etag.header();
        let resp = self.send(&op, OperationClass::Configurations, Replay::Guarded, &|c| {
            c.put(&url).header("If-Match", &if_match).json(&body)
        })?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(&config.id), resp));
        }
        Self::json(&op, resp)
    }

    fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError> {
        let op = format!("delete deployment {id}");
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(id)));
        let if_match = if_match.header();
        let resp = self.send(&op, OperationClass::Configurations, Replay::Guarded, &|c| {
            c.delete(&url).header("If-Match", &if_match)
        })?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(id), resp));
        }
        Ok(())
    }
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)) else {
        return false;
    };
    // An IPv6 host comes back in its URL brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::error::{HubErrorBody, map_status};
    use super::*;

    #[test]
    fn loopback_endpoints_bypass_proxies() {
        for url in ["http://127.0.0.1:8080", "http://localhost:1/", "https://[::1]:443/x", "http://127.1.2.3"] {
            assert!(is_loopback(url), "{url}");
        }
        for url in ["https://h.azure-devices.net", "http://10.0.0.1:80", "https://127.0.0.1.example.com"] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let key = "c2VjcmV0LWtleS1ieXRlcy1mb3ItZmxlZXRmb3Jt";
        let conn: ConnectionString =
            format!("HostName=h.example;SharedAccessKeyName=owner;SharedAccessKey={key}").parse().unwrap();
        let hub = RestHub::new(
            conn,
            RestOptions {
                endpoint: Some("http://127.0.0.1:9".into()),
                deadline: Duration::from_millis(50),
                connect_timeout: Duration::from_millis(50),
                base_backoff: Duration::from_millis(1),
                ..RestOptions::default()
            },
        )
        .unwrap();
        let header = hub.authorization().unwrap();
        let signature = super::super::connection::parse_sas_header(&header).unwrap().signature;
        let mut texts = vec![format!("{hub:?}"), hub.describe(), format!("{:?}", hub.sign_in)];
        // A real failure path: nothing listens on port 9.
        let err = hub.configurations().unwrap_err();
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        for status in [400, 401, 404, 409, 412, 429, 500, 503] {
            let e = map_status("op", Some("id"), status, HubErrorBody::default(), 3);
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
        }
        for text in &texts {
            assert!(!text.contains(key), "key in {text}");
            assert!(!text.contains(&signature[..20]), "signature in {text}");
            assert!(!text.contains(&urlencoding::encode(&signature)[..20]), "signature in {text}");
            assert!(!text.contains("SharedAccessSignature"), "token in {text}");
        }
    }
}
