//! Sending a request until it gets an answer worth returning: 429, 5xx and transport
//! failures are retried with exponential backoff and full jitter, honouring
//! `Retry-After`, until the operation's deadline.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;

use super::error::{error_from, unreachable};
use super::{HubError, OperationClass, RestHub};

impl RestHub {
    /// Sends a request built by `build` (an operation of `class`, paced by the options'
    /// pacer) and reads its whole body, retrying 429, 5xx and
    /// transport failures until the deadline (whether a transport failure may be retried
    /// is `replay`'s to say). Returns the first reply that is neither; the caller maps
    /// errors.
    pub(super) fn send(
        &self,
        operation: &str,
        class: OperationClass,
        replay: Replay,
        build: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, HubError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut attempt: u32 = 0;
        loop {
            // Every attempt is metered by the hub, a retry like the first.
            if let Some(pacer) = &self.options.pacer {
                pacer.acquire(class);
            }
            let request = build(&self.client).header("Authorization", self.authorization()?);
            // The body is read inside the loop: a connection reset half-way through a
            // page is as retryable as one before the status line.
            let outcome = request.send().and_then(|resp| {
                let status = resp.status();
                let headers = resp.headers().clone();
                resp.bytes().map(|body| Reply { status, headers, body: body.to_vec(), attempts: attempt + 1 })
            });
            self.stats.record(class, outcome.as_ref().map_or(0, |r| r.body.len()));
            let retry_in = match outcome {
                Ok(reply) if reply.status.as_u16() == 401 => {
                    let code = reply.headers.get("iothub-errorcode").and_then(|v| v.to_str().ok());
                    let body = super::parse_error_body(code, &reply.body);
                    match self.sign_in.refused(operation, &body.code, &body.message) {
                        Some(refused) => return Err(refused.into()),
                        None => return Ok(reply),
                    }
                }
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
}

/// A response read whole, with the attempt it took.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    pub(super) attempts: u32,
}

/// Whether a request may be sent again after a transport failure that leaves its outcome
/// unknown (the connection reset after the request went out, a timeout, a body cut short).
/// A connection that was never made sent nothing, and is retried whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Replay {
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
    use super::super::{HubRead, RestOptions};
    use super::*;
    use crate::hub::connection::ConnectionString;

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
}
