//! The REST backend: a real IoT Hub (or the emulator) over HTTPS (IOTHUB.md §4).
//!
//! Every request carries `api-version=2021-04-12` and a SAS token signed locally from the
//! connection string; the token is renewed a few minutes before it expires. Throttling
//! (429) and server errors (5xx) are retried with exponential backoff and full jitter,
//! honouring `Retry-After`, until an overall deadline; so are transport failures (a
//! refused or reset connection, a timeout, a body cut short), see [`Replay`]. Other
//! failures map to [`HubError`] variants that say what to do. Nothing here ever formats
//! the key or a token.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connection::{ConnectionString, SasToken};
use super::{Configuration, HubError, HubRead, HubSpecError, HubWrite, MAX_CONFIGURATIONS, Projection, Twin};

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
    /// Show a progress bar on stderr while reading twins (only when stderr is a terminal).
    pub progress: bool,
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
        }
    }
}

/// Renew a token when less than this is left, so a slow request never arrives expired.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// An IoT Hub reached over its REST API.
pub struct RestHub {
    connection: ConnectionString,
    base: String,
    client: Client,
    token: Mutex<Option<SasToken>>,
    /// Jitter source for backoff; seeded from the OS so clients do not retry in step.
    options: RestOptions,
}

impl std::fmt::Debug for RestHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestHub")
            .field("host_name", &self.connection.host_name)
            .field("key_name", &self.connection.key_name)
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
        let base = match &options.endpoint {
            Some(url) => {
                let url = url.trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(HubSpecError::EndpointNotAUrl { url: url.to_string() }.into());
                }
                url.to_string()
            }
            None => format!("https://{}", connection.host_name),
        };
        let client = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.read_timeout)
            .user_agent(concat!("fleetform/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|cause| HubError::HttpClient { cause })?;
        let mut options = options;
        options.page_size = options.page_size.clamp(1, MAX_PAGE_SIZE);
        Ok(RestHub { connection, base, client, token: Mutex::new(None), options })
    }

    pub fn host_name(&self) -> &str {
        &self.connection.host_name
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn authorization(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(t) if t.expiry > now + RENEW_MARGIN.as_secs() => t.header_value().to_string(),
            _ => {
                let token = SasToken::new(&self.connection, now + self.options.token_ttl.as_secs().max(60));
                let header = token.header_value().to_string();
                *slot = Some(token);
                header
            }
        }
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={API_VERSION}", self.base)
    }

    /// Sends a request built by `build` and reads its whole body, retrying 429, 5xx and
    /// transport failures until the deadline (whether a transport failure may be retried
    /// is `replay`'s to say). Returns the first reply that is neither; the caller maps
    /// errors.
    fn send(
        &self,
        operation: &str,
        replay: Replay,
        build: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, HubError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut attempt: u32 = 0;
        loop {
            let request = build(&self.client).header("Authorization", self.authorization());
            // The body is read inside the loop: a connection reset half-way through a
            // page is as retryable as one before the status line.
            let outcome = request.send().and_then(|resp| {
                let status = resp.status();
                let headers = resp.headers().clone();
                resp.bytes().map(|body| Reply { status, headers, body: body.to_vec(), attempts: attempt + 1 })
            });
            let retry_in = match outcome {
                Ok(reply) if retryable(reply.status) => {
                    let wait = retry_after(&reply.headers).unwrap_or_else(|| self.backoff(attempt));
                    if Instant::now() + wait > deadline {
                        return Err(error_from(operation, None, reply));
                    }
                    wait
                }
                Ok(reply) => return Ok(reply),
                Err(e) if e.is_connect() || replay.after_unknown_outcome() => {
                    let wait = self.backoff(attempt);
                    if Instant::now() + wait > deadline {
                        return Err(unreachable(operation, &self.base, &e, attempt + 1, replay));
                    }
                    wait
                }
                Err(e) => return Err(unreachable(operation, &self.base, &e, attempt + 1, replay)),
            };
            std::thread::sleep(retry_in);
            attempt = attempt.saturating_add(1);
        }
    }

    /// Full jitter: uniform in [0, min(max, base × 2ⁿ)], which spreads retrying clients
    /// apart instead of having them return in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.options.base_backoff.saturating_mul(1u32 << attempt.min(20)).min(self.options.max_backoff);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(uniform_up_to(millis))
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
        let resp = self.send(&op, Replay::Idempotent, &|c| c.get(&url))?;
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
        let resp = self.send(op, Replay::Idempotent, &|c| c.post(&url).json(&body))?;
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
        let resp = self.send(&op, Replay::Idempotent, &|c| c.get(&url))?;
        if !resp.status.is_success() {
            // Not `NotFound`: that variant speaks of deployments. A missing twin stays an
            // HTTP 404 with the hub's DeviceNotFound / ModuleNotFound code.
            return Err(error_from(&op, None, resp));
        }
        Self::json(&op, resp)
    }

    /// Runs `query` on `POST /devices/query`, page by page, handing each page to `visit`.
    /// Returns the number of rows read.
    pub fn query_pages(
        &self,
        query: &str,
        visit: &mut dyn FnMut(Vec<Value>) -> Result<(), HubError>,
    ) -> Result<u64, HubError> {
        let op = "query twins";
        let url = self.url("/devices/query");
        let body = serde_json::json!({ "query": query });
        let page_size = self.options.page_size.to_string();
        let mut continuation: Option<String> = None;
        let mut rows = 0u64;
        loop {
            let token = continuation.clone();
            let resp = self.send(op, Replay::Idempotent, &|c| {
                let req = c.post(&url).header("x-ms-max-item-count", &page_size).json(&body);
                match &token {
                    Some(t) => req.header("x-ms-continuation", t),
                    None => req,
                }
            })?;
            if !resp.status.is_success() {
                return Err(error_from(op, None, resp));
            }
            continuation = resp
                .headers
                .get("x-ms-continuation")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let page: Vec<Value> = Self::json(op, resp)?;
            rows += page.len() as u64;
            visit(page)?;
            if continuation.is_none() {
                return Ok(rows);
            }
        }
    }

    /// `SELECT COUNT() AS n FROM …`, for sizing the progress bar.
    fn count(&self, collection: &str) -> Option<u64> {
        let mut n = None;
        self.query_pages(&format!("SELECT COUNT() AS n FROM {collection}"), &mut |rows| {
            n = rows.first().and_then(|r| r.get("n")).and_then(Value::as_u64);
            Ok(())
        })
        .ok()?;
        n
    }

    fn progress(&self, collection: &str, what: &'static str) -> indicatif::ProgressBar {
        if !self.options.progress || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = match self.count(collection) {
            Some(total) => indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, {eta} left)")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(format!("reading {what}"));
        bar
    }

    fn read_all(
        &self,
        collection: &str,
        what: &'static str,
        visit: &mut dyn FnMut(Vec<Value>) -> Result<(), HubError>,
    ) -> Result<(), HubError> {
        let bar = self.progress(collection, what);
        let result = self.query_pages(&format!("SELECT * FROM {collection}"), &mut |rows| {
            bar.inc(rows.len() as u64);
            visit(rows)
        });
        bar.finish_and_clear();
        result.map(drop)
    }
}

/// A response read whole, with the attempt it took.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    attempts: u32,
}

/// Whether a request may be sent again after a transport failure that leaves its outcome
/// unknown (the connection reset after the request went out, a timeout, a body cut short).
/// A connection that was never made sent nothing, and is retried whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replay {
    /// Reads (GET, the query and testQueries POSTs): repeating one changes nothing.
    Idempotent,
    /// Writes the hub itself guards against being applied twice: a create repeated after
    /// it landed gets 409 ConfigurationAlreadyExists, an update or delete carries the
    /// etag it was planned from and gets 412 or 404. Apply resolves those by reading the
    /// hub back, and counts the step done only when the hub holds exactly what it
    /// wrote; anything else fails the step. So a replay can never write twice, nor
    /// over a change someone else made.
    Guarded,
}

impl Replay {
    fn after_unknown_outcome(self) -> bool {
        match self {
            Replay::Idempotent | Replay::Guarded => true,
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the hub, and a malformed
/// value falls back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

fn unreachable(operation: &str, base: &str, e: &reqwest::Error, attempts: u32, replay: Replay) -> HubError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // A write that may have reached the hub: say so, rather than let "failed" read as
    // "nothing happened".
    let outcome = if replay == Replay::Guarded && !e.is_connect() {
        " (the write may have reached the hub; plan again to see)"
    } else {
        ""
    };
    // reqwest's message names the URL (no secrets: the token travels in a header); the
    // innermost cause says what happened ("connection reset by peer").
    let mut innermost = None;
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let cause = match innermost {
        Some(inner) if !e.to_string().contains(&inner) => format!("{e}: {inner}"),
        _ => e.to_string(),
    };
    HubError::Unreachable {
        operation: operation.to_string(),
        message: format!(
            "{what} talking to {base} after {attempts} attempt{}{outcome}: {cause}",
            if attempts == 1 { "" } else { "s" }
        ),
    }
}

/// The hub's error: `ErrorCode:<Name>;<text>` in the body's `Message`, or the
/// `iothub-errorcode` header.
#[derive(Debug, Default, PartialEq)]
pub struct HubErrorBody {
    pub code: String,
    pub message: String,
}

pub fn parse_error_body(header_code: Option<&str>, body: &[u8]) -> HubErrorBody {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("Message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (code_in_body, text) = match message.strip_prefix("ErrorCode:").and_then(|m| m.split_once(';')) {
        Some((code, text)) => (Some(code.trim().to_string()), text.trim().to_string()),
        None => (None, message.trim().to_string()),
    };
    let code = code_in_body.or_else(|| header_code.map(str::to_string)).unwrap_or_default();
    let message = if text.is_empty() { String::from_utf8_lossy(body).chars().take(300).collect() } else { text };
    HubErrorBody { code, message }
}

fn error_from(operation: &str, id: Option<&str>, reply: Reply) -> HubError {
    let header_code = reply.headers.get("iothub-errorcode").and_then(|v| v.to_str().ok());
    let parsed = parse_error_body(header_code, &reply.body);
    map_status(operation, id, reply.status.as_u16(), parsed, reply.attempts)
}

fn map_status(operation: &str, id: Option<&str>, status: u16, body: HubErrorBody, attempts: u32) -> HubError {
    // The id-carrying variants only make sense for requests about one deployment or twin;
    // a 404 on the list or query endpoint means a wrong --endpoint, and is reported as HTTP.
    match (status, body.code.as_str(), id) {
        (_, "ConfigurationAlreadyExists", Some(id)) | (409, _, Some(id)) => HubError::AlreadyExists { id: id.into() },
        (412, _, Some(id)) => HubError::PreconditionFailed { id: id.into() },
        (404, _, Some(id)) => HubError::NotFound { id: id.into() },
        _ => map_other(operation, status, body, attempts),
    }
}

fn map_other(operation: &str, status: u16, body: HubErrorBody, attempts: u32) -> HubError {
    match (status, body.code.as_str()) {
        (_, "TooManyConfigurationsOnHub") => HubError::TooManyConfigurations { limit: MAX_CONFIGURATIONS },
        (401, code) => HubError::Http {
            operation: operation.to_string(),
            status,
            code: if code.is_empty() { "IotHubUnauthorizedAccess".into() } else { code.to_string() },
            message: "the key is wrong or the policy lacks registry read/write".into(),
            help: Some(
                "check the SharedAccessKey in the connection string, and that the policy (e.g. iothubowner) grants \
                 registry read and registry write"
                    .into(),
            ),
        },
        (_, code) => {
            let help = match status {
                429 => Some(format!(
                    "the hub kept throttling (gave up after {attempts} attempts); wait a minute, or raise the hub's \
                     units or tier"
                )),
                500..=599 => Some(format!("the hub kept failing (gave up after {attempts} attempts); try again later")),
                400 => Some("the hub rejected the request as invalid".into()),
                _ => None,
            };
            HubError::Http {
                operation: operation.to_string(),
                status,
                code: code.to_string(),
                message: body.message,
                help,
            }
        }
    }
}

/// Double-quotes an etag for `If-Match` unless it already is (or is `*`): the hub treats
/// an unquoted etag as no precondition at all.
pub fn quote_etag(etag: &str) -> String {
    if etag == "*" || (etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"')) {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
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
            Some(_) => format!("hub {} at {}", self.connection.host_name, self.base),
            None => format!("hub {}", self.connection.host_name),
        }
    }

    /// The HostName, lowercased (DNS names are case-insensitive): what the SAS token is
    /// signed for, so the hub the key belongs to, whatever `--endpoint` routes through.
    fn identity(&self) -> String {
        format!("hub {}", self.connection.host_name.to_ascii_lowercase())
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        let op = "list deployments";
        let url = self.url(&format!("/configurations?top={MAX_CONFIGURATIONS}"));
        let resp = self.send(op, Replay::Idempotent, &|c| c.get(&url))?;
        if !resp.status.is_success() {
            return Err(error_from(op, None, resp));
        }
        Self::json(op, resp)
    }

    /// The query endpoint returns whole twins whatever is needed, so `projection` has
    /// nothing to save here (it matters for snapshot files, where parsing dominates).
    fn device_batches(
        &self,
        _projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.read_all("devices", "device twins", &mut |rows| {
            let twins = rows
                .into_iter()
                .map(|v| Twin::from_value(v).map_err(|shape| HubError::TwinWithoutId { shape }))
                .collect::<Result<Vec<_>, _>>()?;
            visit(twins)
        })
    }

    fn module_batches(&self, visit: &(dyn Fn(Vec<Value>) -> Result<(), HubError> + Sync)) -> Result<(), HubError> {
        self.read_all("devices.modules", "module twins", &mut |rows| visit(rows))
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
        let resp = self.send(&op, Replay::Guarded, &|c| c.put(&url).json(&body))?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(&config.id), resp));
        }
        Self::json(&op, resp)
    }

    fn update_configuration(&self, config: &Configuration, etag: &str) -> Result<Configuration, HubError> {
        let op = format!("update deployment {}", config.id);
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(&config.id)));
        let mut body = put_body(config);
        body.etag = Some(etag.trim_matches('"').to_string());
        let if_match = quote_etag(etag);
        let resp = self.send(&op, Replay::Guarded, &|c| c.put(&url).header("If-Match", &if_match).json(&body))?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(&config.id), resp));
        }
        Self::json(&op, resp)
    }

    fn delete_configuration(&self, id: &str, etag: &str) -> Result<(), HubError> {
        let op = format!("delete deployment {id}");
        let url = self.url(&format!("/configurations/{}", urlencoding::encode(id)));
        let if_match = quote_etag(etag);
        let resp = self.send(&op, Replay::Guarded, &|c| c.delete(&url).header("If-Match", &if_match))?;
        if !resp.status.is_success() {
            return Err(error_from(&op, Some(id), resp));
        }
        Ok(())
    }
}

/// A uniform draw from `0..=max` from the operating system's generator: backoff draws are
/// rare (one per retry), so a seeded generator per client would buy nothing.
fn uniform_up_to(max: u64) -> u64 {
    let mut bytes = [0u8; 8];
    // Without entropy the longest wait is still a valid one; only the spreading is lost.
    if getrandom::getrandom(&mut bytes).is_err() {
        return max;
    }
    u64::from_le_bytes(bytes) % (max.saturating_add(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote_etag("MQ=="), "\"MQ==\"");
        assert_eq!(quote_etag("\"MQ==\""), "\"MQ==\"");
        assert_eq!(quote_etag("*"), "*");
        assert_eq!(quote_etag("\""), "\"\"\"");
    }

    #[test]
    fn error_bodies_yield_code_and_text() {
        let body = br#"{"Message":"ErrorCode:PreconditionFailed;Precondition failed: etag mismatch","ExceptionMessage":"Tracking ID:abc"}"#;
        let parsed = parse_error_body(None, body);
        assert_eq!(parsed.code, "PreconditionFailed");
        assert_eq!(parsed.message, "Precondition failed: etag mismatch");
        let from_header = parse_error_body(Some("ThrottlingException"), b"busy");
        assert_eq!(from_header, HubErrorBody { code: "ThrottlingException".into(), message: "busy".into() });
        let err = map_status("list", None, 503, from_header, 4);
        assert!(err.to_string().contains("HTTP 503 ThrottlingException"), "{err}");
        assert!(matches!(
            map_status("x", Some("a"), 412, HubErrorBody::default(), 1),
            HubError::PreconditionFailed { .. }
        ));
        let exists = HubErrorBody { code: "ConfigurationAlreadyExists".into(), message: String::new() };
        assert!(matches!(map_status("x", Some("a"), 400, exists, 1), HubError::AlreadyExists { .. }));
        let e401 = map_status("x", None, 401, HubErrorBody::default(), 1);
        assert!(e401.to_string().contains("the key is wrong or the policy lacks registry read/write"));
    }

    /// A one-shot local HTTP server answering each connection with the next canned response.
    fn canned(responses: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 8192];
                let n = stream.read(&mut buf).unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                stream.write_all(response.as_bytes()).unwrap();
            }
            requests
        });
        (url, handle)
    }

    #[test]
    fn retry_after_is_honoured_and_requests_carry_version_and_token() {
        let (url, server) = canned(vec![
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
        ]);
        let conn: ConnectionString =
            "HostName=h.example;SharedAccessKeyName=owner;SharedAccessKey=c2VjcmV0".parse().unwrap();
        let hub = RestHub::new(
            conn,
            RestOptions {
                endpoint: Some(url),
                base_backoff: Duration::from_millis(1),
                progress: false,
                ..RestOptions::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        assert!(hub.configurations().unwrap().is_empty());
        assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not waited for");
        let requests = server.join().unwrap();
        assert_eq!(requests.len(), 3);
        for r in &requests {
            assert!(r.starts_with("GET /configurations?top=100&api-version=2021-04-12 "), "{r}");
            assert!(r.to_ascii_lowercase().contains("authorization: sharedaccesssignature sr=h.example&sig="), "{r}");
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
        let header = hub.authorization();
        let signature = super::super::connection::parse_sas_header(&header).unwrap().signature;
        let mut texts = vec![format!("{hub:?}"), hub.describe(), format!("{:?}", hub.token.lock().unwrap())];
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
