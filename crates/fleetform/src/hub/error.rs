use crate::model::fleet::ReadError;
use crate::model::twin::TwinShapeError;

use super::connection::ConnectionStringError;
use super::open::HubSpecError;
use super::snapshot::SnapshotError;

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
    Connection(#[from] ConnectionStringError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Credential(#[from] super::credential::CredentialError),

    #[error("{operation}: {message}")]
    #[diagnostic(
        code(fleetform::hub::unreachable),
        help("check the network, the HostName in the connection string, and --endpoint if given")
    )]
    Unreachable { operation: String, message: String },

    /// The `--hub` / `--endpoint` values do not name a usable hub.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(HubSpecError),

    #[error("cannot start the HTTP client: {cause}")]
    #[diagnostic(code(fleetform::hub::http_client))]
    HttpClient { cause: reqwest::Error },

    /// A query row the hub sent is not a device twin; `shape` says what is wrong with it.
    #[error("the hub returned a device twin without a deviceId ({shape:?})")]
    #[diagnostic(code(fleetform::hub::twin_without_id))]
    TwinWithoutId { shape: TwinShapeError },

    /// A failure of a pure stage's visitor, carried through a backend's batch reader.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(ReadError),
}
