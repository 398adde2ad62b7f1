//! Microsoft Entra ID sign-in for the REST backend (docs/hub-semantics.md#entra-rbac).
//!
//! The tokens come from the Azure SDK's identity crate, `azure_identity`: fleetform speaks no
//! OAuth itself, it only picks the credential and caches what it returns. The crate is
//! async; the REST backend is not, so each [`EntraCredential`] owns a one-thread runtime it
//! blocks on. A token is held as the crate's `Secret` and leaves this module only as the
//! `Authorization` header value; `Debug` redacts it and no error carries it.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_core::time::OffsetDateTime;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::certificate::{CertificateAssertion, CertificateError};
use super::connection::{ConnectionString, SasToken};

/// The scope of the IoT Hub data plane (docs/hub-semantics.md#entra-rbac).
pub const IOT_HUB_SCOPE: &str = "https://iothubs.azure.net/.default";

/// Renew a token when less than this is left, or less than half its life: a slow request
/// must not arrive with an expired token, and a short-lived token must still be reused.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// Which Entra ID credential signs in (`--hub-credential`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// Chosen from the environment, in the order of [`CredentialKind::detect`].
    Auto,
    /// A service principal's client secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret,
    /// A service principal's certificate: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_CERTIFICATE_PATH` (a PEM file with the certificate and its unencrypted
    /// RSA private key).
    ClientCertificate,
    /// Workload identity federation: a federated token (GitHub Actions OIDC, AKS) in
    /// `AZURE_FEDERATED_TOKEN_FILE`, exchanged for `AZURE_CLIENT_ID` in `AZURE_TENANT_ID`.
    Workload,
    /// The managed identity of the Azure VM, App Service or container running fleetform
    /// (`AZURE_CLIENT_ID` picks a user-assigned one).
    ManagedIdentity,
    /// The account `az login` signed in.
    AzureCli,
}

impl CredentialKind {
    /// The `--hub-credential` value naming this kind.
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::Auto => "auto",
            CredentialKind::ClientSecret => "client-secret",
            CredentialKind::ClientCertificate => "client-certificate",
            CredentialKind::Workload => "workload",
            CredentialKind::ManagedIdentity => "managed-identity",
            CredentialKind::AzureCli => "azure-cli",
        }
    }

    /// What `auto` means in this environment: a federated token file, then a client
    /// secret, then a client certificate, then an App Service / Functions / Arc managed-identity endpoint, and
    /// otherwise the Azure CLI. Each is chosen by the variables it needs being set, never
    /// by trying one and falling back on failure: a sign-in that fails says why, instead
    /// of the error of the last credential tried. A VM's managed identity has no variable
    /// to detect (its endpoint is the instance metadata service), so it is only used when
    /// asked for.
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> CredentialKind {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        if set("AZURE_FEDERATED_TOKEN_FILE") {
            CredentialKind::Workload
        } else if set("AZURE_CLIENT_SECRET") {
            CredentialKind::ClientSecret
        } else if set("AZURE_CLIENT_CERTIFICATE_PATH") {
            CredentialKind::ClientCertificate
        } else if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") {
            CredentialKind::ManagedIdentity
        } else {
            CredentialKind::AzureCli
        }
    }
}

impl CredentialKind {
    /// What to check when this credential gets no token.
    fn sign_in_help(self) -> &'static str {
        match self {
            CredentialKind::Workload => {
                "check AZURE_CLIENT_ID and AZURE_TENANT_ID, that the app registration has a federated credential \
                 for this workload (issuer, subject), and that the federated token file is fresh (they expire)"
            }
            CredentialKind::ClientSecret => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and that the client secret has not expired or been rotated"
            }
            CredentialKind::ClientCertificate => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and that the certificate in AZURE_CLIENT_CERTIFICATE_PATH is \
                 the one uploaded to the app registration and has not expired"
            }
            CredentialKind::ManagedIdentity => {
                "check that this machine has a managed identity, and AZURE_CLIENT_ID if it is a user-assigned one"
            }
            CredentialKind::AzureCli | CredentialKind::Auto => {
                "install the Azure CLI and run `az login` (or set AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_SECRET or \
                 AZURE_CLIENT_CERTIFICATE_PATH to sign in another way; --hub-credential chooses)"
            }
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why no token could be had. Never holds a token or a secret: the identity crate's
/// errors are about requests and responses, and its token type redacts itself.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CredentialError {
    #[error("Entra ID sign-in with the {kind} credential needs the environment variable {name}, which is not set")]
    #[diagnostic(
        code(fleetform::hub::credential_env),
        help(
            "set {name}, or choose another credential with --hub-credential \
             (client-secret, client-certificate, workload, managed-identity, azure-cli)"
        )
    )]
    MissingVariable { kind: CredentialKind, name: &'static str },

    #[error("the {kind} credential could not be set up")]
    #[diagnostic(code(fleetform::hub::credential_setup), help("check the AZURE_* variables the credential reads"))]
    Setup {
        kind: CredentialKind,
        #[source]
        cause: azure_core::Error,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Certificate(#[from] CertificateError),

    #[error("signing in to Entra ID with the {kind} credential failed (scope {IOT_HUB_SCOPE})")]
    #[diagnostic(code(fleetform::hub::credential_token))]
    Token {
        kind: CredentialKind,
        #[source]
        cause: azure_core::Error,
        #[help]
        help: &'static str,
    },

    /// The hub answered 401 to a Bearer token: the token is not for the hub, has expired,
    /// or the identity holds no data-plane role. `message` is the hub's own text.
    #[error("{operation}: the hub refused the Entra ID token (HTTP 401 {code}): {message}")]
    #[diagnostic(
        code(fleetform::hub::entra_refused),
        help(
            "the token must be for the scope {IOT_HUB_SCOPE}, and the signed-in identity needs a data-plane role on \
             this hub: IoT Hub Data Reader to plan, explain, status, query and snapshot, IoT Hub Data Contributor to \
             apply (Registry and Twin Contributor cannot write configurations); a new role assignment can take \
             minutes to apply; see README \"Signing in with Microsoft Entra ID\""
        )
    )]
    Refused { operation: String, code: String, message: String },

    #[error("could not start the runtime that drives Entra ID sign-in")]
    #[diagnostic(code(fleetform::hub::credential_runtime))]
    Runtime {
        #[source]
        cause: std::io::Error,
    },
}

/// A token as the hub wants it, with when it expires.
struct Cached {
    header: Secret,
    obtained: OffsetDateTime,
    expires: OffsetDateTime,
}

impl Cached {
    fn fresh(&self, now: OffsetDateTime) -> bool {
        let life = (self.expires - self.obtained).max(azure_core::time::Duration::ZERO);
        let margin = azure_core::time::Duration::try_from(RENEW_MARGIN).unwrap_or(azure_core::time::Duration::MAX);
        now + margin.min(life / 2) < self.expires
    }
}

/// A token credential for the IoT Hub scope, and the token it last returned.
pub struct EntraCredential {
    kind: CredentialKind,
    inner: Arc<dyn TokenCredential>,
    runtime: tokio::runtime::Runtime,
    cached: Mutex<Option<Cached>>,
}

impl fmt::Debug for EntraCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraCredential").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl EntraCredential {
    /// The credential `kind` names, configured from the process environment.
    pub fn from_process_env(kind: CredentialKind) -> Result<EntraCredential, CredentialError> {
        EntraCredential::new(kind, &|name| std::env::var(name).ok())
    }

    /// The credential `kind` names, configured from the variables `env` returns
    /// (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_CERTIFICATE_PATH`, `AZURE_AUTHORITY_HOST`). TLS trust follows the
    /// platform's store, which `SSL_CERT_FILE` and `SSL_CERT_DIR` extend.
    pub fn new(kind: CredentialKind, env: &dyn Fn(&str) -> Option<String>) -> Result<EntraCredential, CredentialError> {
        let kind = match kind {
            CredentialKind::Auto => CredentialKind::detect(env),
            other => other,
        };
        // reqwest 0.13, which the identity crate uses, finds its TLS crypto in the process
        // default; ring is what the hub client already uses. Installing fails only when a
        // provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let var = |name: &'static str| {
            env(name).filter(|v| !v.is_empty()).ok_or(CredentialError::MissingVariable { kind, name })
        };
        let setup = |cause| CredentialError::Setup { kind, cause };
        let authority_host =
            env("AZURE_AUTHORITY_HOST").filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.into());
        let client_options = ClientOptions { cloud: authority(env), ..Default::default() };
        let inner: Arc<dyn TokenCredential> = match kind {
            CredentialKind::Auto => unreachable!("resolved above"),
            CredentialKind::Workload => {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options },
                    client_id: Some(var("AZURE_CLIENT_ID")?),
                    tenant_id: Some(var("AZURE_TENANT_ID")?),
                    token_file_path: Some(PathBuf::from(var("AZURE_FEDERATED_TOKEN_FILE")?)),
                };
                WorkloadIdentityCredential::new(Some(options)).map_err(setup)?
            }
            CredentialKind::ClientSecret => {
                let tenant = var("AZURE_TENANT_ID")?;
                let client = var("AZURE_CLIENT_ID")?;
                let secret = Secret::new(var("AZURE_CLIENT_SECRET")?);
                let options = ClientSecretCredentialOptions { client_options };
                ClientSecretCredential::new(&tenant, client, secret, Some(options)).map_err(setup)?
            }
            CredentialKind::ClientCertificate => {
                let tenant = var("AZURE_TENANT_ID")?;
                let client = var("AZURE_CLIENT_ID")?;
                let path = PathBuf::from(var("AZURE_CLIENT_CERTIFICATE_PATH")?);
                // The identity crate posts to `<authority>/<tenant>/oauth2/v2.0/token`; the
                // assertion's `aud` must be that endpoint exactly.
                let endpoint = format!("{}/{tenant}/oauth2/v2.0/token", authority_host.trim_end_matches('/'));
                let assertion = CertificateAssertion::load(&path, client.clone(), endpoint)?;
                let options = ClientAssertionCredentialOptions { client_options };
                ClientAssertionCredential::new(tenant, client, assertion, Some(options)).map_err(setup)?
            }
            CredentialKind::ManagedIdentity => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: env("AZURE_CLIENT_ID").filter(|v| !v.is_empty()).map(UserAssignedId::ClientId),
                    client_options,
                };
                ManagedIdentityCredential::new(Some(options)).map_err(setup)?
            }
            CredentialKind::AzureCli => AzureCliCredential::new(None).map_err(setup)?,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|cause| CredentialError::Runtime { cause })?;
        Ok(EntraCredential { kind, inner, runtime, cached: Mutex::new(None) })
    }

    /// The credential actually used (`auto` resolved).
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// `Bearer <token>`, reusing the last token while it is fresh. Only the HTTP client
    /// should call this.
    pub fn header_value(&self) -> Result<String, CredentialError> {
        let mut slot = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let now = OffsetDateTime::now_utc();
        if let Some(cached) = slot.as_ref().filter(|c| c.fresh(now)) {
            return Ok(cached.header.secret().to_string());
        }
        let token = self
            .runtime
            .block_on(self.inner.get_token(&[IOT_HUB_SCOPE], None))
            .map_err(|cause| CredentialError::Token { kind: self.kind, cause, help: self.kind.sign_in_help() })?;
        let header = format!("Bearer {}", token.token.secret());
        *slot = Some(Cached { header: Secret::new(header.clone()), obtained: now, expires: token.expires_on });
        Ok(header)
    }

    /// Forgets the cached token, so that the next request asks for a new one.
    pub fn forget(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// How the REST backend proves who it is: a SAS token signed from a connection string's
/// key (docs/hub-semantics.md#sas), or an Entra ID token (docs/hub-semantics.md#entra-rbac).
pub enum HubSignIn {
    SharedKey { connection: ConnectionString, token: Mutex<Option<SasToken>> },
    Entra { host_name: String, credential: EntraCredential },
}

impl fmt::Debug for HubSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubSignIn::SharedKey { connection, .. } => f
                .debug_struct("SharedKey")
                .field("host_name", &connection.host_name)
                .field("key_name", &connection.key_name)
                .finish_non_exhaustive(),
            HubSignIn::Entra { host_name, credential } => {
                f.debug_struct("Entra").field("host_name", host_name).field("credential", credential).finish()
            }
        }
    }
}

impl HubSignIn {
    pub fn shared_key(connection: ConnectionString) -> HubSignIn {
        HubSignIn::SharedKey { connection, token: Mutex::new(None) }
    }

    /// The hub's HostName, as given.
    pub fn host_name(&self) -> &str {
        match self {
            HubSignIn::SharedKey { connection, .. } => &connection.host_name,
            HubSignIn::Entra { host_name, .. } => host_name,
        }
    }

    /// The `Authorization` header value; a SAS token lives `sas_ttl` and is renewed
    /// [`RENEW_MARGIN`] before it expires. Only the HTTP client should call this.
    pub fn header_value(&self, sas_ttl: Duration) -> Result<String, CredentialError> {
        match self {
            HubSignIn::SharedKey { connection, token } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let mut slot = token.lock().unwrap_or_else(|e| e.into_inner());
                match &*slot {
                    Some(t) if t.expiry > now + RENEW_MARGIN.as_secs() => Ok(t.header_value().to_string()),
                    _ => {
                        let fresh = SasToken::new(connection, now + sas_ttl.as_secs().max(60));
                        let header = fresh.header_value().to_string();
                        *slot = Some(fresh);
                        Ok(header)
                    }
                }
            }
            HubSignIn::Entra { credential, .. } => credential.header_value(),
        }
    }

    /// What a 401 means for this sign-in: `None` for a SAS token (the REST backend's own
    /// mapping speaks of keys and policies); for a Bearer token, the hub's reason, and the
    /// cached token is dropped so that the next request signs in afresh.
    pub fn refused(&self, operation: &str, code: &str, message: &str) -> Option<CredentialError> {
        let HubSignIn::Entra { credential, .. } = self else { return None };
        credential.forget();
        Some(CredentialError::Refused {
            operation: operation.to_string(),
            code: if code.is_empty() { "IotHubUnauthorizedAccess".into() } else { code.to_string() },
            message: if message.is_empty() { "no reason given".into() } else { message.to_string() },
        })
    }
}

/// The public cloud's authority, where the identity crate signs in without `AZURE_AUTHORITY_HOST`.
const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// `AZURE_AUTHORITY_HOST` as the identity crate's cloud setting (sovereign clouds, a
/// private authority); the public cloud without it.
fn authority(env: &dyn Fn(&str) -> Option<String>) -> Option<Arc<CloudConfiguration>> {
    let host = env("AZURE_AUTHORITY_HOST").filter(|v| !v.is_empty())?;
    let mut custom = CustomConfiguration::default();
    custom.authority_host = host;
    Some(Arc::new(custom.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn auto_follows_the_documented_order() {
        let all = env_of(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("IDENTITY_ENDPOINT", "http://169.254.169.254"),
        ]);
        assert_eq!(CredentialKind::detect(&all), CredentialKind::Workload);
        let secret = env_of(&[("AZURE_CLIENT_SECRET", "s"), ("IDENTITY_ENDPOINT", "http://x")]);
        assert_eq!(CredentialKind::detect(&secret), CredentialKind::ClientSecret);
        let certificate = env_of(&[("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"), ("MSI_ENDPOINT", "http://x")]);
        assert_eq!(CredentialKind::detect(&certificate), CredentialKind::ClientCertificate);
        let msi = env_of(&[("AZURE_FEDERATED_TOKEN_FILE", ""), ("MSI_ENDPOINT", "http://x")]);
        assert_eq!(CredentialKind::detect(&msi), CredentialKind::ManagedIdentity);
        assert_eq!(CredentialKind::detect(&env_of(&[])), CredentialKind::AzureCli);
    }

    #[test]
    fn a_missing_variable_is_named_and_no_secret_is_shown() {
        let env = env_of(&[("AZURE_CLIENT_SECRET", "hunter2-secret"), ("AZURE_TENANT_ID", "t")]);
        let err = EntraCredential::new(CredentialKind::Auto, &env).unwrap_err();
        assert!(
            matches!(
                err,
                CredentialError::MissingVariable { kind: CredentialKind::ClientSecret, name: "AZURE_CLIENT_ID" }
            ),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn debug_shows_the_kind_only() {
        let env = env_of(&[
            ("AZURE_CLIENT_SECRET", "hunter2-secret"),
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
        ]);
        let credential = EntraCredential::new(CredentialKind::Auto, &env).unwrap();
        assert_eq!(credential.kind(), CredentialKind::ClientSecret);
        let shown = format!("{credential:?}");
        assert_eq!(shown, "EntraCredential { kind: ClientSecret, .. }");
    }

    #[test]
    fn renewal_keeps_a_margin_of_at_most_half_the_life() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let s = azure_core::time::Duration::seconds;
        let hour = Cached { header: Secret::new("h"), obtained: t0, expires: t0 + s(3600) };
        assert!(hour.fresh(t0 + s(3299)));
        assert!(!hour.fresh(t0 + s(3300)), "renewed 5 minutes before expiry");
        let short = Cached { header: Secret::new("h"), obtained: t0, expires: t0 + s(4) };
        assert!(short.fresh(t0 + s(1)));
        assert!(!short.fresh(t0 + s(2)), "a 4 s token is renewed after half its life");
    }
}
