//! `fleetform hub serve`: a local IoT Hub speaking the REST subset fleetform uses
//! (docs/hub-semantics.md#rest-api) over a snapshot directory, so the REST backend is tested end to end and
//! users can rehearse an apply without a real hub.
//!
//! The hub logic lives in [`state`] as a synchronous request → reply function over the
//! in-memory state; this module is the HTTP shell (axum on tokio). One mutex serialises
//! requests: the emulator is for rehearsals and tests, where one consistent state matters
//! more than concurrency, and it makes every change a single atomic step on disk too.

mod agent_desired;
pub mod auth;
pub mod generate;
mod load;
pub mod quota;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

pub use quota::{ClassStats, OpClass, QuotaOptions, Tier};
pub use state::{Behaviour, Body, Emulator, Reply, Request, Stats};

use fleetform::hub::snapshot::SnapshotError;

/// Why the emulator could not start or save.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmulatorError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Snapshot(#[from] SnapshotError),

    #[error("{what}: {source}")]
    #[diagnostic(code(fleetform::emulator::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {message}", path.display())]
    #[diagnostic(
        code(fleetform::emulator::state),
        help("the file holds the emulator's key; delete it to have a new key made")
    )]
    BadState { path: PathBuf, message: String },

    #[error("{0}")]
    #[diagnostic(code(fleetform::emulator::option))]
    BadOption(String),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Corrupt(#[from] store::CorruptTwin),
}

/// `fleetform hub serve` options.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The state directory: a snapshot directory, rewritten as the hub changes.
    pub state: PathBuf,
    /// Where to listen; port 0 picks a free port ([`Serving`] says which).
    pub listen: SocketAddr,
    pub behaviour: Behaviour,
    /// Whom Entra ID Bearer tokens are trusted from (`--entra-issuer`, `--entra-jwks`).
    pub entra: Option<auth::EntraVerifier>,
    /// After each configuration write it makes, print `held: METHOD PATH` on stdout and
    /// delay the reply this long (`--hold-writes`): a test kills its client there, after the
    /// write and before the client learns of it, at every write in turn.
    pub hold_writes: Option<std::time::Duration>,
}

/// What a running emulator serves, for its caller to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// The base URL to pass as `--endpoint` (`http://127.0.0.1:8484`).
    pub url: String,
    /// The connection string whose key the emulator accepts, naming that host.
    pub connection_string: String,
    /// Device and module twins held, and their compressed bytes.
    pub devices: usize,
    pub modules: usize,
    pub packed_bytes: usize,
    /// How long loading the state took.
    pub loaded_in: std::time::Duration,
}

type Shared = Arc<Mutex<Emulator>>;

#[derive(Clone)]
struct App {
    emulator: Shared,
    hold_writes: Option<std::time::Duration>,
}

/// Runs the emulator until Ctrl-C or SIGTERM. `on_ready` sees what it serves once it
/// accepts connections (port 0 is resolved by then); the counts of what it did come back
/// when it stops.
pub fn serve(options: ServeOptions, on_ready: impl FnOnce(&Serving)) -> Result<Stats, EmulatorError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| EmulatorError::Io { what: what.clone(), source }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(io(&format!("listening on {}", options.listen)))?;
        let addr = listener.local_addr().map_err(io("reading the listening address"))?;
        // Clients sign for the host they are told; 0.0.0.0 is not one they can dial.
        let ip = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        let host = match addr {
            SocketAddr::V6(_) if !addr.ip().is_unspecified() => format!("[{ip}]:{}", addr.port()),
            _ => format!("{ip}:{}", addr.port()),
        };
        let state = options.state.clone();
        let behaviour = options.behaviour.clone();
        let host_for_state = host.clone();
        let loading = Instant::now();
        let mut emulator = tokio::task::spawn_blocking(move || Emulator::open(&state, host_for_state, behaviour))
            .await
            .map_err(|e| EmulatorError::BadOption(format!("loading the state failed: {e}")))??;
        if let Some(verifier) = options.entra {
            emulator.accept_entra(verifier);
        }
        let connection = emulator.connection_string();
        let (devices, modules, packed_bytes) = emulator.holding();
        let shared: Shared = Arc::new(Mutex::new(emulator));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(App { emulator: shared.clone(), hold_writes: options.hold_writes });
        on_ready(&Serving {
            url: format!("http://{host}"),
            connection_string: connection,
            devices,
            modules,
            packed_bytes,
            loaded_in: loading.elapsed(),
        });
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(io("serving HTTP"))?;
        let stats = shared.lock().unwrap_or_else(|e| e.into_inner()).stats();
        Ok(stats)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn handle(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let shared = app.emulator;
    let request = Request {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
    };
    // State changes fsync files: keep them off the async workers.
    let reply = tokio::task::spawn_blocking(move || {
        let mut emulator = shared.lock().unwrap_or_else(|e| e.into_inner());
        emulator.handle(&request, Instant::now())
    })
    .await;
    let wrote = matches!(method, Method::PUT | Method::DELETE) && uri.path().starts_with("/configurations/");
    if let (Some(hold), Ok(r)) = (app.hold_writes, &reply)
        && wrote
        && (200..300).contains(&r.status)
    {
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed stdout (its reader gone) must not fail the request.
            let _ = writeln!(out, "held: {method} {}", uri.path());
            let _ = out.flush();
        }
        tokio::time::sleep(hold).await;
    }
    match reply {
        Ok(reply) => into_response(reply),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the emulator failed handling this request").into_response(),
    }
}

fn into_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Some(Body::Json(body)) => (status, axum::Json(body)).into_response(),
        Some(Body::Text(text)) => {
            (status, [(axum::http::header::CONTENT_TYPE, "application/json; charset=utf-8")], text).into_response()
        }
        None => status.into_response(),
    };
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}
