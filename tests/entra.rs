//! Microsoft Entra ID sign-in, end to end on 127.0.0.1: the real `fleetform` binary gets its
//! token from `azure_identity` talking to a local token authority over HTTPS (a test CA
//! trusted through `SSL_CERT_FILE`, the authority named by `AZURE_AUTHORITY_HOST`), or from a
//! stand-in `az`, and the emulator (`hub serve --entra-issuer --entra-jwks`) verifies the
//! Bearer token the way the hub does. Expectations come from the documented flows
//! (docs/hub-semantics.md#entra-rbac), never from fleetform's own output.

#[path = "common/entra.rs"]
mod authority;
mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use authority::{Authority, CLIENT_ID, IOT_HUB_AUDIENCE, Settings, TENANT};
use common::{EXAMPLE_DEPLOYMENTS, EmulatorProcess, campus_hub_copy, cli, stderr, stdout, transcript};
use fleetform::hub::HubRead;
use fleetform::hub::credential::{CredentialKind, EntraCredential};
use fleetform::hub::rest::{RestHub, RestOptions};

/// What GitHub Actions writes for a job that may request an OIDC token: a JWT from
/// token.actions.githubusercontent.com; its contents are the authority's business, the
/// client only hands the text over.
const FEDERATED_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3Rva2VuLmFjdGlvbnMuZ2l0aHVidXNlcmNvbnRlbnQuY29tIn0.c2lnbmF0dXJl";
const HUB_HOST: &str = "myhub.azure-devices.net";

fn authority(audience: &str, lifetime: u64) -> Authority {
    Authority::start(Settings {
        audience: audience.to_string(),
        lifetime,
        expected_assertion: FEDERATED_TOKEN.to_string(),
    })
}

/// The emulator over a copy of the example hub, trusting `authority`'s tokens.
fn emulator(authority: &Authority) -> (EmulatorProcess, tempfile::TempDir) {
    let dir = campus_hub_copy();
    let jwks = authority.jwks_file.to_str().unwrap();
    let process = EmulatorProcess::start(dir.path(), &["--entra-issuer", authority.issuer(), "--entra-jwks", jwks]);
    (process, dir)
}

/// `fleetform plan` of the example against `hub` at `endpoint`, signed in through
/// workload identity federation.
fn plan_with_workload(authority: &Authority, endpoint: &str, token_file: &Path) -> Output {
    with_workload(authority, token_file, &["plan", "--hub", HUB_HOST, "--endpoint", endpoint, EXAMPLE_DEPLOYMENTS])
}

fn with_workload(authority: &Authority, token_file: &Path, args: &[&str]) -> Output {
    as_app(authority, "AZURE_FEDERATED_TOKEN_FILE", token_file, args)
}

/// `fleetform args` signed in as the test app registration, its credential in `variable`.
fn as_app(authority: &Authority, variable: &str, value: &Path, args: &[&str]) -> Output {
    cli()
        .args(args)
        .env(variable, value)
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_AUTHORITY_HOST", authority.url())
        .env("SSL_CERT_FILE", &authority.ca_file)
        .output()
        .unwrap()
}

fn federated_token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("azure-identity-token");
    std::fs::write(&path, FEDERATED_TOKEN).unwrap();
    path
}

fn assert_no_token(texts: &[&str], tokens: &[String]) {
    for text in texts {
        for token in tokens {
            // The signature part is what would let anyone replay a token.
            let signature = token.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "a token leaked into:\n{text}");
        }
        assert!(!text.contains(FEDERATED_TOKEN), "the federated token leaked into:\n{text}");
        assert!(!text.contains("Bearer ey"), "a Bearer header leaked into:\n{text}");
    }
}

#[test]
fn workload_identity_federation_signs_in_and_plans_like_a_key_does() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let out = plan_with_workload(&authority, &hub.url, &federated_token_file(work.path()));
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    // One token for the whole run: the plan's several requests reuse it.
    let requests = authority.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    // The client-credentials grant with a federated assertion, for the IoT Hub scope.
    assert_eq!(request["grant_type"], "client_credentials");
    assert_eq!(request["client_id"], CLIENT_ID);
    assert_eq!(request["scope"], "https://iothubs.azure.net/.default");
    assert_eq!(request["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert_eq!(request["client_assertion"], FEDERATED_TOKEN);
    assert_no_token(&[&stdout(&out), &stderr(&out)], &authority.issued());

    // The same plan as with the emulator's key: signing in changes who asks, not the answer.
    let with_key =
        cli().args(["plan", "--hub", &hub.connection, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS]).output().unwrap();
    assert_eq!(with_key.status.code(), out.status.code(), "{}", transcript(&with_key));
    let sas_host = hub.url.trim_start_matches("http://");
    assert_eq!(stdout(&out).replace(HUB_HOST, sas_host), stdout(&with_key));
}

#[test]
fn apply_writes_with_an_entra_token() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let token_file = federated_token_file(work.path());
    let args = ["apply", "--auto-approve", "--hub", HUB_HOST, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS];
    let out = with_workload(&authority, &token_file, &args);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_no_token(&[&stdout(&out), &stderr(&out)], &authority.issued());
    // Checked with the key, not the token: the hub now holds what the files declare.
    let again = cli()
        .args(["plan", "--detailed-exitcode", "--hub", &hub.connection, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "no changes left: {}", transcript(&again));
}

#[test]
fn a_client_secret_signs_in_and_is_never_shown() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let out = cli()
        .args(["plan", "--hub", HUB_HOST, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS])
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_SECRET", authority::CLIENT_SECRET)
        .env("AZURE_AUTHORITY_HOST", authority.url())
        .env("SSL_CERT_FILE", &authority.ca_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let requests = authority.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["client_secret"], authority::CLIENT_SECRET);
    assert_eq!(requests[0]["scope"], "https://iothubs.azure.net/.default");
    assert!(!transcript(&out).contains(authority::CLIENT_SECRET));
    assert_no_token(&[&stdout(&out), &stderr(&out)], &authority.issued());

    // A wrong secret: the authority's reason, never the secret.
    let out = cli()
        .args(["plan", "--hub", HUB_HOST, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS])
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_SECRET", "wrong-secret-value-7Qx")
        .env("AZURE_AUTHORITY_HOST", authority.url())
        .env("SSL_CERT_FILE", &authority.ca_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("client-secret credential failed") && err.contains("AADSTS7000215"), "{err}");
    assert!(!err.contains("wrong-secret-value-7Qx"), "{err}");
}

#[test]
fn a_token_for_another_audience_is_refused_with_the_reason_and_what_to_do() {
    // A token for Azure Resource Manager: what a credential asked for the wrong scope gets.
    let authority = authority("https://management.azure.com", 3600);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let out = plan_with_workload(&authority, &hub.url, &federated_token_file(work.path()));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    // The message as read, whatever the terminal width wrapped.
    let flat = err.split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
    for needle in [
        "the hub refused the Entra ID token (HTTP 401 IotHubUnauthorizedAccess)",
        "the Bearer token is for the audience https://management.azure.com, not https://iothubs.azure.net",
        "scope https://iothubs.azure.net/.default",
        "IoT Hub Data Reader",
    ] {
        assert!(flat.contains(needle), "missing {needle:?} in\n{err}");
    }
    assert_no_token(&[&stdout(&out), &err], &authority.issued());
}

#[test]
fn an_unknown_federated_assertion_fails_sign_in_with_the_authority_reason() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("stale-token");
    std::fs::write(&token_file, "eyJ.c3RhbGU.c2ln").unwrap();
    let out = plan_with_workload(&authority, &hub.url, &token_file);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(err.contains("signing in to Entra ID with the workload credential failed"), "{err}");
    assert!(err.contains("AADSTS700211"), "the authority's reason reaches the user:\n{err}");
    assert!(!err.contains("c3RhbGU"), "{err}");
}

#[test]
fn the_azure_cli_credential_takes_the_token_az_prints() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let token = authority.sign(IOT_HUB_AUDIENCE, 3600);
    let expires_on = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let bin = authority::fake_az(work.path(), &token, expires_on);
    // No AZURE_* variables: `auto` falls to the Azure CLI; the hub comes from FLEETFORM_HUB.
    let out = cli()
        .args(["plan", "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS])
        .env("FLEETFORM_HUB", HUB_HOST)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let args = std::fs::read_to_string(work.path().join("az-args.txt")).unwrap();
    assert_eq!(
        args.lines().next(),
        Some("account get-access-token -o json --scope https://iothubs.azure.net/.default")
    );
    assert_no_token(&[&stdout(&out), &stderr(&out)], &[token]);
    assert!(authority.requests().is_empty(), "az, not the authority, was asked");
}

#[test]
fn an_expiring_token_is_renewed_before_the_hub_would_refuse_it() {
    let authority = authority(IOT_HUB_AUDIENCE, 4);
    let (hub, _state) = emulator(&authority);
    let work = tempfile::tempdir().unwrap();
    let token_file = federated_token_file(work.path());
    let authority_url = authority.url();
    let token_path = token_file.to_str().unwrap().to_string();
    let env = move |name: &str| match name {
        "AZURE_CLIENT_ID" => Some(CLIENT_ID.to_string()),
        "AZURE_TENANT_ID" => Some(TENANT.to_string()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(token_path.clone()),
        "AZURE_AUTHORITY_HOST" => Some(authority_url.clone()),
        _ => None,
    };
    trust_test_ca(&authority.ca_file);
    let credential = EntraCredential::new(CredentialKind::Auto, &env).unwrap();
    assert_eq!(credential.kind(), CredentialKind::Workload);
    let options = RestOptions { endpoint: Some(hub.url.clone()), ..RestOptions::default() };
    let rest = RestHub::with_entra(HUB_HOST.to_string(), credential, options).unwrap();

    rest.configurations().unwrap();
    rest.configurations().unwrap();
    assert_eq!(authority.requests().len(), 1, "a fresh token is reused");
    std::thread::sleep(Duration::from_millis(4200));
    rest.configurations().expect("a new token was fetched for the request after expiry");
    let issued = authority.issued();
    assert_eq!(issued.len(), 2, "{} token requests", authority.requests().len());
    assert_ne!(issued[0], issued[1]);

    // The first token is expired by now: had it been sent again, the hub would have refused it.
    let stale = reqwest::blocking::Client::new()
        .get(format!("{}/configurations?top=100&api-version=2021-04-12", hub.url))
        .bearer_auth(&issued[0])
        .send()
        .unwrap();
    assert_eq!(stale.status().as_u16(), 401);
    let body = stale.text().unwrap();
    assert!(body.contains("the Bearer token expired"), "{body}");
    assert_no_token(&[&format!("{rest:?}")], &issued);
}

/// The identity client's TLS trust is the platform's store, which `SSL_CERT_FILE` extends;
/// this is the only test in this binary that signs in inside the test process, and every
/// other test runs the binary with an environment of its own.
fn trust_test_ca(ca: &Path) {
    // SAFETY: no other thread of this test binary reads SSL_CERT_FILE; the children other
    // tests spawn get a cleared environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", ca) };
}

/// An app certificate as `az ad sp create-for-rbac --create-cert` leaves it: one PEM with
/// the certificate and its unencrypted PKCS#8 RSA key. Returns the PEM text, its `x5t`
/// (base64url SHA-1 of the certificate DER, computed here) and the public key as JWK
/// modulus and exponent.
fn app_certificate(seed: u64) -> (String, String, String, String) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rand::SeedableRng as _;
    use rsa::pkcs8::EncodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    use sha1::Digest as _;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let key_pem = private.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string();
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "fleetform-ci");
    let certificate = params.self_signed(&key).unwrap();
    let x5t = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(certificate.der()));
    let modulus = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
    let exponent = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
    (format!("{}{key_pem}", certificate.pem()), x5t, modulus, exponent)
}

fn with_certificate(authority: &Authority, path: &Path, args: &[&str]) -> Output {
    as_app(authority, "AZURE_CLIENT_CERTIFICATE_PATH", path, args)
}

#[test]
fn a_client_certificate_signs_in_and_plans_like_a_key_does() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let (pem, x5t, n, e) = app_certificate(1);
    authority.register_certificate(&x5t, &n, &e);
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("fleetform-ci.pem");
    std::fs::write(&path, &pem).unwrap();

    // `auto` picks the certificate from AZURE_CLIENT_CERTIFICATE_PATH.
    let plan = ["plan", "--hub", HUB_HOST, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS];
    let out = with_certificate(&authority, &path, &plan);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let requests = authority.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert!(!requests[0].contains_key("client_secret"));
    let header = jsonwebtoken::decode_header(&requests[0]["client_assertion"]).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.x5t.as_deref(), Some(x5t.as_str()));
    assert_no_token(&[&stdout(&out), &stderr(&out)], &authority.issued());
    let key_body: String = pem.split("-----BEGIN PRIVATE KEY-----").nth(1).unwrap().lines().nth(1).unwrap().into();
    assert!(!transcript(&out).contains(&key_body), "key material leaked");

    let with_key =
        cli().args(["plan", "--hub", &hub.connection, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS]).output().unwrap();
    let sas_host = hub.url.trim_start_matches("http://");
    assert_eq!(stdout(&out).replace(HUB_HOST, sas_host), stdout(&with_key));

    // Asked for by name, with a fresh assertion (a new jti) for the new token request.
    let named = ["plan", "--hub-credential", "client-certificate", "--hub", HUB_HOST, "--endpoint", &hub.url];
    let out = with_certificate(&authority, &path, &[&named[..], &[EXAMPLE_DEPLOYMENTS]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let requests = authority.requests();
    assert_ne!(requests[0]["client_assertion"], requests[1]["client_assertion"]);
}

#[test]
fn a_certificate_the_app_does_not_know_is_refused_with_the_authority_reason() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (hub, _state) = emulator(&authority);
    let (_, registered, n, e) = app_certificate(1);
    authority.register_certificate(&registered, &n, &e);
    let (other, other_x5t, _, _) = app_certificate(2);
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("other.pem");
    std::fs::write(&path, other).unwrap();
    let out =
        with_certificate(&authority, &path, &["plan", "--hub", HUB_HOST, "--endpoint", &hub.url, EXAMPLE_DEPLOYMENTS]);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("client-certificate credential failed") && err.contains("AADSTS700027"), "{err}");
    assert!(err.contains(&other_x5t), "the authority names the thumbprint it did not find: {err}");
}

#[test]
fn a_certificate_file_without_a_key_is_a_clear_error() {
    let authority = authority(IOT_HUB_AUDIENCE, 3600);
    let (pem, _, _, _) = app_certificate(1);
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("cert-only.pem");
    let certificate_only = pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap();
    std::fs::write(&path, certificate_only).unwrap();
    let plan = ["plan", "--hub", HUB_HOST, "--endpoint", "http://127.0.0.1:9", EXAMPLE_DEPLOYMENTS];
    let out = with_certificate(&authority, &path, &plan);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("holds no private key") && err.contains(path.to_str().unwrap()), "{err}");
    assert!(authority.requests().is_empty(), "no sign-in is attempted without a key");

    // A missing file names the path too.
    let missing = work.path().join("nowhere.pem");
    let err = stderr(&with_certificate(&authority, &missing, &plan));
    assert!(err.contains("cannot read the client certificate") && err.contains("nowhere.pem"), "{err}");
}
