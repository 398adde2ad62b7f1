//! Entra ID Bearer tokens, accepted next to SAS tokens (docs/hub-semantics.md#entra-rbac).
//!
//! A real hub trusts tokens that Entra ID signed for the audience `https://iothubs.azure.net`.
//! The emulator trusts the issuer and signing keys it is given (`hub serve --entra-issuer URL
//! --entra-jwks FILE`): a local token authority in tests, or a tenant's published keys. It
//! checks what the hub checks of the token itself — signature, issuer, audience, validity
//! window — and says which check failed, since that text is what reaches the user; it does
//! not model role assignments. No refusal quotes the token.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// The audience of IoT Hub data-plane tokens (the scope without `/.default`).
pub const IOT_HUB_AUDIENCE: &str = "https://iothubs.azure.net";

/// Why the Entra settings cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EntraConfigError {
    #[error("{}: cannot read the JSON Web Key Set", path.display())]
    #[diagnostic(code(fleetform::emulator::entra_jwks))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not a JSON Web Key Set ({{\"keys\": [...]}})", path.display())]
    #[diagnostic(
        code(fleetform::emulator::entra_jwks),
        help(
            "use the document the issuer's jwks_uri serves, e.g. https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys"
        )
    )]
    NotJwks {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: the key set holds no RSA or elliptic-curve public key", path.display())]
    #[diagnostic(
        code(fleetform::emulator::entra_jwks),
        help("Entra ID signs with RSA keys (RS256); give their public JWKs")
    )]
    NoKeys { path: PathBuf },

    #[error("--entra-issuer {issuer}: expected an https:// URL such as https://sts.windows.net/<tenant>/")]
    #[diagnostic(code(fleetform::emulator::entra_issuer))]
    BadIssuer { issuer: String },
}

/// Why a Bearer token was refused; the text is the 401's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotConfigured,
    Malformed,
    /// `alg` is not an asymmetric signature (HS256 would let anyone holding the public
    /// key sign; `none` signs nothing).
    Algorithm {
        alg: String,
    },
    UnknownKey {
        kid: Option<String>,
    },
    BadSignature,
    WrongIssuer {
        found: String,
        expected: String,
    },
    WrongAudience {
        found: String,
    },
    Expired {
        seconds_ago: u64,
    },
    NotYetValid {
        in_seconds: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotConfigured => f.write_str(
                "Bearer tokens are not accepted: this emulator was started without --entra-issuer and --entra-jwks",
            ),
            Refusal::Malformed => f.write_str("the Bearer token is not a signed JWT (header.payload.signature)"),
            Refusal::Algorithm { alg } => {
                write!(f, "the Bearer token is signed with {alg}; only RS*, PS* and ES* are accepted")
            }
            Refusal::UnknownKey { kid: Some(kid) } => {
                write!(f, "the Bearer token is signed with key {kid}, which the issuer's key set does not hold")
            }
            Refusal::UnknownKey { kid: None } => {
                f.write_str("the Bearer token names no key (kid) and the issuer's key set holds several")
            }
            Refusal::BadSignature => f.write_str("the Bearer token's signature does not verify"),
            Refusal::WrongIssuer { found, expected } => {
                write!(f, "the Bearer token was issued by {found}, not by the trusted issuer {expected}")
            }
            Refusal::WrongAudience { found } => write!(
                f,
                "the Bearer token is for the audience {found}, not {IOT_HUB_AUDIENCE}: request it for the scope \
                 {IOT_HUB_AUDIENCE}/.default"
            ),
            Refusal::Expired { seconds_ago } => write!(f, "the Bearer token expired {seconds_ago} s ago"),
            Refusal::NotYetValid { in_seconds } => {
                write!(f, "the Bearer token is not valid for another {in_seconds} s")
            }
        }
    }
}

/// The trusted issuer and its keys.
#[derive(Clone)]
pub struct EntraVerifier {
    issuer: String,
    keys: JwkSet,
}

impl fmt::Debug for EntraVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraVerifier").field("issuer", &self.issuer).field("keys", &self.keys.keys.len()).finish()
    }
}

impl EntraVerifier {
    /// Trusts tokens from `issuer` signed by a key in the JWKS file at `path`.
    pub fn from_file(issuer: &str, path: &Path) -> Result<EntraVerifier, EntraConfigError> {
        let text = std::fs::read(path).map_err(|source| EntraConfigError::Read { path: path.to_path_buf(), source })?;
        let keys: JwkSet = serde_json::from_slice(&text)
            .map_err(|source| EntraConfigError::NotJwks { path: path.to_path_buf(), source })?;
        EntraVerifier::new(issuer, keys, path)
    }

    fn new(issuer: &str, keys: JwkSet, path: &Path) -> Result<EntraVerifier, EntraConfigError> {
        // Loopback http is allowed: a local authority needs no certificate to name itself.
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
        if !(issuer.starts_with("https://") || loopback.iter().any(|l| issuer.starts_with(l))) {
            return Err(EntraConfigError::BadIssuer { issuer: issuer.to_string() });
        }
        let asymmetric =
            |a: &AlgorithmParameters| matches!(a, AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_));
        let keys = JwkSet { keys: keys.keys.into_iter().filter(|k| asymmetric(&k.algorithm)).collect() };
        if keys.keys.is_empty() {
            return Err(EntraConfigError::NoKeys { path: path.to_path_buf() });
        }
        Ok(EntraVerifier { issuer: issuer.to_string(), keys })
    }

    /// Checks a token (the text after `Bearer `) at `now` (Unix seconds): signature
    /// first, so that nothing is said about the claims of a token nobody trusted signed.
    pub fn verify(&self, token: &str, now: u64) -> Result<(), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let asymmetric = matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
        );
        if !asymmetric {
            return Err(Refusal::Algorithm { alg: format!("{:?}", header.alg) });
        }
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid),
            None if self.keys.keys.len() == 1 => self.keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| Refusal::UnknownKey { kid: header.kid.clone() })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| Refusal::UnknownKey { kid: header.kid.clone() })?;
        // The claims are checked below, one by one, to say which one is wrong.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    Refusal::Algorithm { alg: format!("{:?}", header.alg) }
                }
                _ => Refusal::Malformed,
            })?
            .claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("").to_string();
        let iss = text("iss");
        if iss != self.issuer {
            return Err(Refusal::WrongIssuer { found: iss, expected: self.issuer.clone() });
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.iter().any(|a| a.trim_end_matches('/') == IOT_HUB_AUDIENCE) {
            return Err(Refusal::WrongAudience { found: audiences.join(", ") });
        }
        let time = |name: &str| claims.get(name).and_then(Value::as_u64);
        match time("exp") {
            Some(exp) if exp > now => {}
            Some(exp) => return Err(Refusal::Expired { seconds_ago: now - exp }),
            None => return Err(Refusal::Malformed),
        }
        if let Some(nbf) = time("nbf").filter(|nbf| *nbf > now) {
            return Err(Refusal::NotYetValid { in_seconds: nbf - now });
        }
        Ok(())
    }
}

/// The token of an `Authorization: Bearer …` header; `None` for any other scheme.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Checks a Bearer token against `verifier`, refusing every token when there is none.
pub fn check_bearer(verifier: Option<&EntraVerifier>, token: &str, now: u64) -> Result<(), Refusal> {
    verifier.ok_or(Refusal::NotConfigured)?.verify(token, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    const NOW: u64 = 1_800_000_000;

    /// A fresh P-256 key: its signing half, and a verifier trusting its public half.
    fn key_and_verifier(kid: &str) -> (EncodingKey, EntraVerifier) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signing = EncodingKey::from_ec_der(&pair.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        let verifier = EntraVerifier::new(ISSUER, JwkSet { keys: vec![jwk] }, Path::new("keys.json")).unwrap();
        (signing, verifier)
    }

    fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
        let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::ES256) };
        encode(&header, &claims, key).unwrap()
    }

    fn claims(aud: &str, exp: u64) -> Value {
        json!({ "iss": ISSUER, "aud": aud, "exp": exp, "nbf": NOW - 60, "oid": "00000000-0000-0000-0000-00000000000a" })
    }

    #[test]
    fn each_check_refuses_with_its_reason() {
        let (key, verifier) = key_and_verifier("k1");
        assert_eq!(verifier.verify(&token(&key, "k1", claims("https://iothubs.azure.net", NOW + 600)), NOW), Ok(()));
        assert_eq!(verifier.verify(&token(&key, "k1", claims("https://iothubs.azure.net/", NOW + 600)), NOW), Ok(()));
        let management = token(&key, "k1", claims("https://management.azure.com", NOW + 600));
        let refused = verifier.verify(&management, NOW).unwrap_err();
        assert_eq!(refused, Refusal::WrongAudience { found: "https://management.azure.com".into() });
        assert!(refused.to_string().contains("scope https://iothubs.azure.net/.default"), "{refused}");
        let expired = token(&key, "k1", claims("https://iothubs.azure.net", NOW - 5));
        assert_eq!(verifier.verify(&expired, NOW), Err(Refusal::Expired { seconds_ago: 5 }));
        let mut other_issuer = claims("https://iothubs.azure.net", NOW + 600);
        other_issuer["iss"] = json!("https://evil.example/");
        assert!(matches!(verifier.verify(&token(&key, "k1", other_issuer), NOW), Err(Refusal::WrongIssuer { .. })));
        let mut early = claims("https://iothubs.azure.net", NOW + 600);
        early["nbf"] = json!(NOW + 30);
        assert_eq!(verifier.verify(&token(&key, "k1", early), NOW), Err(Refusal::NotYetValid { in_seconds: 30 }));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused_before_its_claims_are_read() {
        let (_, verifier) = key_and_verifier("k1");
        let (stranger, _) = key_and_verifier("k1");
        // Wrong audience too: the signature must be what is reported.
        let forged = token(&stranger, "k1", claims("https://management.azure.com", NOW + 600));
        assert_eq!(verifier.verify(&forged, NOW), Err(Refusal::BadSignature));
        let unknown = token(&stranger, "k2", claims("https://iothubs.azure.net", NOW + 600));
        assert_eq!(verifier.verify(&unknown, NOW), Err(Refusal::UnknownKey { kid: Some("k2".into()) }));
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &claims("https://iothubs.azure.net", NOW + 1),
            &EncodingKey::from_secret(b"x"),
        );
        assert_eq!(verifier.verify(&hs.unwrap(), NOW), Err(Refusal::Algorithm { alg: "HS256".into() }));
        assert_eq!(verifier.verify("not-a-jwt", NOW), Err(Refusal::Malformed));
        assert_eq!(check_bearer(None, "x.y.z", NOW), Err(Refusal::NotConfigured));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_sas_is_not_bearer() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc"), Some("abc"));
        assert_eq!(bearer_token("SharedAccessSignature sr=h&sig=s&se=1&skn=p"), None);
    }

    #[test]
    fn a_key_set_without_public_keys_or_a_plain_http_issuer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
        assert!(matches!(EntraVerifier::from_file(ISSUER, &path), Err(EntraConfigError::NoKeys { .. })));
        std::fs::write(&path, "[]").unwrap();
        assert!(matches!(EntraVerifier::from_file(ISSUER, &path), Err(EntraConfigError::NotJwks { .. })));
        let (_, verifier) = key_and_verifier("k");
        let keys = verifier.keys.clone();
        assert!(matches!(
            EntraVerifier::new("http://sts.example/", keys, &path),
            Err(EntraConfigError::BadIssuer { .. })
        ));
    }
}
