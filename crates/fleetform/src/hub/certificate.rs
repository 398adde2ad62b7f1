//! The client-certificate credential's client assertion (docs/hub-semantics.md#entra-rbac).
//!
//! `azure_identity` offers a certificate credential only on OpenSSL; fleetform is rustls
//! throughout, so it hands the identity crate's `ClientAssertionCredential` an assertion it
//! signs itself. The token request stays the crate's; this module only makes the JWT the
//! Microsoft identity platform documents for certificate credentials: header `alg` RS256,
//! `typ` JWT, `x5t` and `x5t#S256` (the certificate's SHA-1 and SHA-256 thumbprints), claims
//! `aud` = the tenant's v2.0 token endpoint, `iss` = `sub` = the client id, a unique `jti`,
//! `nbf`, `exp`. The private key never leaves this module: `Debug` shows the path and the
//! thumbprint, and no error carries key bytes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha1::Digest as _;

/// How long an assertion is good for. It is used at once (a fresh one for every token
/// request), so a short life only limits what a captured one is worth; the slack covers
/// clock skew between this machine and Entra ID.
const ASSERTION_LIFETIME_SECS: u64 = 600;

/// Why the certificate file cannot sign an assertion. Holds the path, never key bytes.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CertificateError {
    #[error("cannot read the client certificate {}", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_read),
        help(
            "AZURE_CLIENT_CERTIFICATE_PATH must name a readable PEM file holding the certificate and its private key"
        )
    )]
    Read {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },

    #[error("the client certificate {} is not a PEM file", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_pem),
        help(
            "give a PEM file (-----BEGIN CERTIFICATE----- and -----BEGIN PRIVATE KEY-----); convert a .pfx with \
             `openssl pkcs12 -in cert.pfx -out cert.pem -nodes`"
        )
    )]
    NotPem {
        path: PathBuf,
        #[source]
        cause: pem::PemError,
    },

    #[error("the client certificate {} holds no certificate", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_missing),
        help("add the certificate registered on the app (-----BEGIN CERTIFICATE-----) to the PEM file")
    )]
    NoCertificate { path: PathBuf },

    #[error("the client certificate {} holds no private key", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_no_key),
        help("add the certificate's RSA private key (-----BEGIN PRIVATE KEY-----) to the PEM file")
    )]
    NoKey { path: PathBuf },

    #[error("the private key in {} is encrypted", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_encrypted),
        help(
            "fleetform cannot decrypt the key; provide an unencrypted PEM (`openssl pkcs8 -in key.pem -nocrypt \
             -topk8`) kept readable only by this user, or use another credential"
        )
    )]
    EncryptedKey { path: PathBuf },

    #[error("the private key in {} ({tag}) is not an RSA key fleetform can sign with", path.display())]
    #[diagnostic(
        code(fleetform::hub::certificate_key),
        help("Entra ID takes RS256 client assertions: the certificate's key must be RSA, in PKCS#8 or PKCS#1 PEM")
    )]
    BadKey { path: PathBuf, tag: String },
}

/// Signs the certificate credential's client assertion, afresh for every token request.
pub struct CertificateAssertion {
    path: PathBuf,
    client_id: String,
    audience: String,
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion").field("path", &self.path).field("x5t", &self.x5t).finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    /// Reads the PEM at `path` (the first certificate is the app's; the key must be RSA)
    /// and prepares assertions for `client_id` addressed to `token_endpoint`.
    pub fn load(path: &Path, client_id: String, token_endpoint: String) -> Result<Self, CertificateError> {
        let owned = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|cause| CertificateError::Read { path: owned(), cause })?;
        let blocks = pem::parse_many(&bytes).map_err(|cause| CertificateError::NotPem { path: owned(), cause })?;
        if blocks.is_empty() {
            return Err(CertificateError::NotPem { path: owned(), cause: pem::PemError::MissingData });
        }
        let certificate = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| CertificateError::NoCertificate { path: owned() })?;
        let key_block = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| CertificateError::NoKey { path: owned() })?;
        let key = match key_block.tag() {
            "ENCRYPTED PRIVATE KEY" => return Err(CertificateError::EncryptedKey { path: owned() }),
            "PRIVATE KEY" | "RSA PRIVATE KEY" => EncodingKey::from_rsa_pem(pem::encode(key_block).as_bytes())
                .map_err(|_| CertificateError::BadKey { path: owned(), tag: key_block.tag().to_string() })?,
            other => return Err(CertificateError::BadKey { path: owned(), tag: other.to_string() }),
        };
        let der = certificate.contents();
        let assertion = CertificateAssertion {
            path: owned(),
            client_id,
            audience: token_endpoint,
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)),
        };
        // A PKCS#8 block can hold an EC key, and an RSA block can be damaged: both show only
        // when signing, so sign once now rather than fail on the first token request.
        assertion
            .sign(now())
            .map_err(|_| CertificateError::BadKey { path: owned(), tag: key_block.tag().to_string() })?;
        Ok(assertion)
    }

    /// The certificate's SHA-1 thumbprint, base64url, as `x5t` carries it.
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    fn sign(&self, now: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        // The key signed once in `load`, so a failure here is not the user's file; say so
        // without the key.
        self.sign(now()).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("signing the client assertion with {} failed: {e}", self.path.display()),
            )
        })
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// 128 random bits: Entra ID rejects a replayed `jti`, so two assertions must never share one.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system's random number generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<CertificateAssertion, CertificateError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pem");
        std::fs::write(&path, text).unwrap();
        CertificateAssertion::load(&path, "client".into(), "https://login.example/t/oauth2/v2.0/token".into())
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_file_that_is_not_pem_is_named_as_such() {
        assert!(matches!(load_text("not a certificate"), Err(CertificateError::NotPem { .. })));
    }

    #[test]
    fn an_encrypted_key_is_refused_with_what_to_do() {
        let text = format!("{CERT}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAEC\n-----END ENCRYPTED PRIVATE KEY-----\n");
        let err = load_text(&text).unwrap_err();
        assert!(matches!(err, CertificateError::EncryptedKey { .. }), "{err:?}");
    }

    #[test]
    fn a_key_without_a_certificate_has_no_thumbprint() {
        let text = "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        assert!(matches!(load_text(text), Err(CertificateError::NoCertificate { .. })));
    }

    #[test]
    fn a_damaged_key_fails_when_loaded_not_at_the_first_token_request() {
        let text = format!("{CERT}-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n");
        let err = load_text(&text).unwrap_err();
        assert!(matches!(err, CertificateError::BadKey { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("AAEC"), "no key bytes in the error");
    }
}
