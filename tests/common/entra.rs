//! A local Microsoft Entra ID token authority for the sign-in tests: HTTPS on 127.0.0.1
//! (the identity crate refuses an http authority) with a certificate from a test CA the
//! client is told to trust through `SSL_CERT_FILE`, serving the v2.0 token endpoint
//! `POST /{tenant}/oauth2/v2.0/token` for the client-credentials grant with a client
//! assertion (workload identity federation), and issuing ES256 JWTs from a test key whose
//! JWKS the emulator is given.
//!
//! Request and response shapes follow the Microsoft identity platform's documentation of the
//! client credentials flow ("Second case: Access token request with a certificate" /
//! federated credential): form fields `client_id`, `scope`, `grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion` (or `client_secret` for a service principal's secret); answer `{token_type, expires_in, ext_expires_in, access_token}`;
//! errors `{error, error_description, error_codes}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "5f1c2a7e-0b7d-4a53-9a47-1e2f0c3d4b5a";
pub const IOT_HUB_AUDIENCE: &str = "https://iothubs.azure.net";
const KEY_ID: &str = "fleetform-test-key-1";
/// The client secret the authority accepts (the client-secret credential's case).
pub const CLIENT_SECRET: &str = "test-client-secret-Zk3~9vQ";

/// What the authority issues, changeable while it runs.
pub struct Settings {
    /// The `aud` claim of issued tokens.
    pub audience: String,
    /// Seconds each token lives (`expires_in`, and `exp - iat`).
    pub lifetime: u64,
    /// The federated token the client must present as its assertion.
    pub expected_assertion: String,
}

/// One token request as received: its form fields.
pub type TokenRequest = HashMap<String, String>;

struct Shared {
    settings: Mutex<Settings>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: Mutex<Vec<String>>,
    /// Certificates registered on the app: base64url SHA-1 thumbprint (`x5t`) and public key.
    certificates: Mutex<Vec<(String, jsonwebtoken::DecodingKey)>>,
    signing: EncodingKey,
    issuer: String,
}

/// A running authority; its runtime stops when this is dropped.
pub struct Authority {
    shared: Arc<Shared>,
    pub host: String,
    /// The test CA's certificate (PEM), for `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    /// The signing key set (JWKS), for `hub serve --entra-jwks`.
    pub jwks_file: PathBuf,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Authority {
    pub fn start(settings: Settings) -> Authority {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, tls) = test_certificates();
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signing = EncodingKey::from_ec_der(&key.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(KEY_ID.into());
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap()).unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let host = format!("127.0.0.1:{}", addr.port());
        let shared = Arc::new(Shared {
            settings: Mutex::new(settings),
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            certificates: Mutex::new(Vec::new()),
            signing,
            issuer: format!("https://{host}/{TENANT}/v2.0"),
        });
        let app = axum::Router::new().fallback(token_endpoint).with_state(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        runtime.spawn(async move {
            let _ = axum::serve(TlsListener { tcp: listener, acceptor }, app).await;
        });
        Authority { shared, host, ca_file, jwks_file, _runtime: runtime, _dir: dir }
    }

    /// `AZURE_AUTHORITY_HOST`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The `iss` of issued tokens, for `hub serve --entra-issuer`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every access token issued so far, to check none leaks into output.
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued.lock().unwrap().clone()
    }

    /// Uploads a certificate to the app registration: its `x5t` thumbprint and RSA public
    /// key (modulus and exponent, base64url), which client assertions are checked against.
    pub fn register_certificate(&self, x5t: &str, modulus: &str, exponent: &str) {
        let key = jsonwebtoken::DecodingKey::from_rsa_components(modulus, exponent).unwrap();
        self.shared.certificates.lock().unwrap().push((x5t.to_string(), key));
    }

    /// Signs a token as this authority would, for tests that need one without a request.
    pub fn sign(&self, audience: &str, lifetime: u64) -> String {
        sign(&self.shared, audience, lifetime)
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(shared: &Shared, audience: &str, lifetime: u64) -> String {
    let iat = now();
    let claims = json!({
        "aud": audience, "iss": shared.issuer, "iat": iat, "nbf": iat, "exp": iat + lifetime,
        "appid": CLIENT_ID, "tid": TENANT, "sub": "00000000-0000-0000-0000-0000000000aa",
        "oid": "00000000-0000-0000-0000-0000000000aa", "ver": "2.0",
    });
    let header = Header { kid: Some(KEY_ID.into()), ..Header::new(Algorithm::ES256) };
    jsonwebtoken::encode(&header, &claims, &shared.signing).unwrap()
}

fn form_fields(body: &[u8]) -> TokenRequest {
    let text = String::from_utf8_lossy(body).replace('+', " ");
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| urlencoding::decode(s).map(|c| c.into_owned()).unwrap_or_default();
            (decode(k), decode(v))
        })
        .collect()
}

fn entra_error(code: u32, error: &str, description: &str) -> Response {
    let body =
        json!({ "error": error, "error_description": format!("AADSTS{code}: {description}"), "error_codes": [code] });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, uri: axum::http::Uri, body: Bytes) -> Response {
    let fields = form_fields(&body);
    shared.requests.lock().unwrap().push(fields.clone());
    if uri.path() != format!("/{TENANT}/oauth2/v2.0/token") {
        return entra_error(90002, "invalid_tenant", "tenant not found");
    }
    let (audience, lifetime, expected) = {
        let s = shared.settings.lock().unwrap();
        (s.audience.clone(), s.lifetime, s.expected_assertion.clone())
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return entra_error(70003, "unsupported_grant_type", "only client_credentials is served here");
    }
    if field("client_id") != CLIENT_ID {
        return entra_error(700016, "unauthorized_client", "application not found in the directory");
    }
    if fields.contains_key("client_secret") {
        if field("client_secret") != CLIENT_SECRET {
            return entra_error(7000215, "invalid_client", "invalid client secret provided");
        }
    } else if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return entra_error(700211, "invalid_client", "no matching federated identity record found");
    } else if let Some(x5t) = jsonwebtoken::decode_header(field("client_assertion")).ok().and_then(|h| h.x5t) {
        if let Err(reason) = check_certificate_assertion(&shared, &x5t, field("client_assertion")) {
            return entra_error(700027, "invalid_client", &reason);
        }
    } else if field("client_assertion") != expected {
        return entra_error(700211, "invalid_client", "no matching federated identity record found");
    }
    let token = sign(&shared, &audience, lifetime);
    shared.issued.lock().unwrap().push(token.clone());
    let body =
        json!({ "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token });
    axum::Json(body).into_response()
}

/// The certificate credential's assertion as Microsoft documents it: RS256 over a
/// registered certificate's key (found by `x5t`), `aud` the token endpoint, `iss` = `sub` =
/// the client id, `jti`, `nbf`, `exp`.
fn check_certificate_assertion(shared: &Shared, x5t: &str, assertion: &str) -> Result<(), String> {
    let certificates = shared.certificates.lock().unwrap();
    let Some((_, key)) = certificates.iter().find(|(t, _)| t == x5t) else {
        return Err(format!(
            "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '{x5t}']"
        ));
    };
    let audience = shared.issuer.replace("/v2.0", "/oauth2/v2.0/token");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.to_string());
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, key, &validation)
        .map_err(|e| format!("Client assertion is not valid: {e}"))?
        .claims;
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err("Client assertion has no jti".into());
    }
    Ok(())
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            // A client that gives up on the handshake is the next one's problem, not ours.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A test CA (its PEM) and a server configuration with a leaf for 127.0.0.1 it signed.
fn test_certificates() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "fleetform test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), config)
}

/// A stand-in `az` on `PATH`: prints what `az account get-access-token --output json`
/// prints (Azure CLI 2.54 and later add `expires_on`), and records its arguments.
pub fn fake_az(dir: &Path, token: &str, expires_on: u64) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let json = json!({
        "accessToken": token,
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": expires_on,
        "subscription": "00000000-0000-0000-0000-0000000000ss",
        "tenant": TENANT,
        "tokenType": "Bearer",
    });
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncat <<'EOF'\n{}\nEOF\n",
        dir.join("az-args.txt").display(),
        serde_json::to_string_pretty(&json).unwrap()
    );
    let az = bin.join("az");
    std::fs::write(&az, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}
