//! IoT Hub connection strings and shared access signatures (docs/hub-semantics.md#sas).
//!
//! The key never leaves this module in readable form: [`SecretKey`] has no accessor that
//! returns it, its `Debug` prints a placeholder, and the errors here name the part that is
//! wrong, never its value. The REST backend and the emulator both sign and verify through
//! [`sign`], so the two cannot drift apart.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a connection string is not usable. Messages never contain the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum ConnectionStringError {
    #[error("the connection string is empty")]
    #[diagnostic(
        code(fleetform::hub::connection_string),
        help("expected HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>")
    )]
    Empty,

    #[error("the connection string lacks {part}")]
    #[diagnostic(
        code(fleetform::hub::connection_string),
        help(
            "expected HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>; \
             copy it from the hub's \"Shared access policies\" page (iothubowner, or a policy with registry read/write)"
        )
    )]
    MissingPart { part: &'static str },

    // The part itself is never shown: a part without `=` is often a piece of the key
    // split off by a stray `;`.
    #[error("connection string part {index} is not of the form Name=value")]
    #[diagnostic(
        code(fleetform::hub::connection_string),
        help("parts are separated by `;` and each is Name=value; check for a stray `;` inside the key")
    )]
    Malformed { index: usize },

    #[error("this is an Event Hubs / Service Bus connection string (Endpoint=sb://…), not an IoT Hub one")]
    #[diagnostic(
        code(fleetform::hub::connection_string),
        help(
            "use the hub's own connection string, HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>, \
             from its \"Shared access policies\" page (not the built-in Event Hub-compatible endpoint)"
        )
    )]
    EventHubs,

    #[error("the connection string gives {part} twice")]
    #[diagnostic(code(fleetform::hub::connection_string))]
    Duplicate { part: &'static str },

    #[error("SharedAccessKey is not valid base64")]
    #[diagnostic(
        code(fleetform::hub::connection_string),
        help("the key is the base64 text shown as \"Primary key\" of the policy; check that it was copied whole")
    )]
    BadKey,

    /// `host` is the HostName up to its first character a host name cannot hold, so that
    /// a key pasted after it without a `;` is not shown.
    #[error("HostName `{host}…` is not a host name (it contains a space, `/`, `?`, `#` or `@`)")]
    #[diagnostic(code(fleetform::hub::connection_string), help("HostName is <hub>.azure-devices.net, followed by `;`"))]
    BadHost { host: String },
}

/// A shared access key, decoded. Deliberately opaque: no `Display`, a redacting `Debug`,
/// and the bytes are only reachable by [`sign`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Decodes a base64 key as the hub shows it.
    pub fn from_base64(text: &str) -> Result<SecretKey, ConnectionStringError> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| ConnectionStringError::BadKey)?;
        if bytes.is_empty() {
            return Err(ConnectionStringError::BadKey);
        }
        Ok(SecretKey(bytes))
    }

    /// Wraps raw key bytes (the emulator makes its key this way).
    pub fn from_bytes(bytes: Vec<u8>) -> SecretKey {
        SecretKey(bytes)
    }

    /// The key as base64, for the one place that must show it: the emulator printing the
    /// connection string users need to talk to it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub key_name: String,
    pub key: SecretKey,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &self.key)
            .finish()
    }
}

impl ConnectionString {
    /// Whether `text` looks like a connection string rather than a path: any `;`-separated
    /// part names a connection-string field (spaces around `=` allowed), or it mentions a
    /// shared access key at all. Deliberately generous: whatever it accepts is parsed and
    /// its errors never echo the text, whereas a "path" is printed back to the user.
    pub fn looks_like(text: &str) -> bool {
        const FIELDS: [&str; 9] = [
            "hostname",
            "sharedaccesskeyname",
            "sharedaccesskey",
            "sharedaccesssignature",
            "endpoint",
            "entitypath",
            "deviceid",
            "moduleid",
            "gatewayhostname",
        ];
        let lower = text.to_ascii_lowercase();
        lower.contains("sharedaccess")
            || lower.split(';').any(|part| part.split_once('=').is_some_and(|(name, _)| FIELDS.contains(&name.trim())))
    }

    /// Renders the connection string, key included: only for the emulator's banner.
    pub fn expose(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name,
            self.key_name,
            self.key.to_base64()
        )
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    /// Part names are matched case-insensitively (the SDKs do); other parts such as
    /// `DeviceId` or `GatewayHostName` are ignored. Values may contain `=` (base64 padding).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let (mut host, mut key_name, mut key) = (None, None, None);
        for (i, part) in text.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(ConnectionStringError::Malformed { index: i + 1 });
            };
            if name.trim().eq_ignore_ascii_case("endpoint") && value.trim_start().starts_with("sb://") {
                return Err(ConnectionStringError::EventHubs);
            }
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => (&mut host, "HostName"),
                "sharedaccesskeyname" => (&mut key_name, "SharedAccessKeyName"),
                "sharedaccesskey" => (&mut key, "SharedAccessKey"),
                _ => continue,
            };
            if slot.0.is_some() {
                return Err(ConnectionStringError::Duplicate { part: slot.1 });
            }
            *slot.0 = Some(value.trim().to_string());
        }
        let non_empty =
            |v: Option<String>, part| v.filter(|v| !v.is_empty()).ok_or(ConnectionStringError::MissingPart { part });
        let host_name = non_empty(host, "HostName")?;
        let key_name = non_empty(key_name, "SharedAccessKeyName")?;
        let key = SecretKey::from_base64(&non_empty(key, "SharedAccessKey")?)?;
        if let Some(bad) = host_name.find(|c: char| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace()) {
            return Err(ConnectionStringError::BadHost { host: host_name[..bad].to_string() });
        }
        Ok(ConnectionString { host_name, key_name, key })
    }
}

/// The resource a token is for: lowercase(urlencode(host)), used both as `sr=` and as the
/// first line of the signed text.
pub fn resource_uri(host: &str) -> String {
    urlencoding::encode(host).to_lowercase()
}

/// base64(HMAC-SHA256(key, resource + "\n" + expiry)).
pub fn sign(key: &SecretKey, resource: &str, expiry: u64) -> String {
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a signature in constant time.
pub fn verify(key: &SecretKey, resource: &str, expiry: u64, signature_base64: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature_base64) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// A signed `Authorization` header value. Opaque like the key: `Debug` redacts it.
#[derive(Clone)]
pub struct SasToken {
    header: String,
    pub expiry: u64,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasToken(<redacted>, expiry {})", self.expiry)
    }
}

impl SasToken {
    /// `SharedAccessSignature sr=<resource>&sig=<urlencoded signature>&se=<expiry>&skn=<policy>`.
    pub fn new(connection: &ConnectionString, expiry: u64) -> SasToken {
        let resource = resource_uri(&connection.host_name);
        let sig = sign(&connection.key, &resource, expiry);
        let header = format!(
            "SharedAccessSignature sr={resource}&sig={}&se={expiry}&skn={}",
            urlencoding::encode(&sig),
            urlencoding::encode(&connection.key_name)
        );
        SasToken { header, expiry }
    }

    /// The header value; only the HTTP client should call this.
    pub fn header_value(&self) -> &str {
        &self.header
    }
}

/// The parts of a `SharedAccessSignature …` header, as the emulator reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedSas {
    /// `sr` exactly as sent (still url-encoded): it is what was signed.
    pub resource: String,
    pub signature: String,
    pub expiry: u64,
    pub key_name: String,
}

/// Parses an `Authorization` header; `None` when it is not a complete SAS header.
pub fn parse_sas_header(value: &str) -> Option<ParsedSas> {
    let rest = value.trim().strip_prefix("SharedAccessSignature ")?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in rest.split('&') {
        let (name, v) = field.split_once('=')?;
        match name {
            "sr" => sr = Some(v.to_string()),
            "sig" => sig = Some(urlencoding::decode(v).ok()?.into_owned()),
            "se" => se = Some(v.parse().ok()?),
            "skn" => skn = Some(urlencoding::decode(v).ok()?.into_owned()),
            _ => {}
        }
    }
    Some(ParsedSas { resource: sr?, signature: sig?, expiry: se?, key_name: skn? })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hmac module:
    /// `base64(hmac.new(b64decode(key), b"myhub.azure-devices.net\n1700000000", sha256))`.
    const KEY: &str = "ZmxlZXRmb3JtLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
    const SIG: &str = "rqltpq34Rw5+CH3schds7Pdv7vXo5tW/Whtu6KRkp5g=";

    #[test]
    fn signs_the_known_vector() {
        let key = SecretKey::from_base64(KEY).unwrap();
        assert_eq!(resource_uri("myhub.azure-devices.net"), "myhub.azure-devices.net");
        assert_eq!(sign(&key, "myhub.azure-devices.net", 1_700_000_000), SIG);
        assert!(verify(&key, "myhub.azure-devices.net", 1_700_000_000, SIG));
        assert!(!verify(&key, "myhub.azure-devices.net", 1_700_000_001, SIG));
        let conn: ConnectionString =
            format!("HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
                .parse()
                .unwrap();
        let token = SasToken::new(&conn, 1_700_000_000);
        assert_eq!(
            token.header_value(),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=rqltpq34Rw5%2BCH3schds7Pdv7vXo5tW%2FWhtu6KRkp5g%3D\
             &se=1700000000&skn=iothubowner"
        );
        let parsed = parse_sas_header(token.header_value()).unwrap();
        assert_eq!(parsed.signature, SIG);
        assert_eq!(parsed.key_name, "iothubowner");
        assert_eq!(parsed.expiry, 1_700_000_000);
    }

    #[test]
    fn host_with_port_is_lowercased_after_encoding() {
        assert_eq!(resource_uri("127.0.0.1:8443"), "127.0.0.1%3a8443");
        assert_eq!(resource_uri("MyHub.Azure-Devices.net"), "myhub.azure-devices.net");
    }

    #[test]
    fn parse_errors_name_the_part_not_the_key() {
        let missing = "HostName=h;SharedAccessKey=c2VjcmV0".parse::<ConnectionString>().unwrap_err();
        assert_eq!(missing, ConnectionStringError::MissingPart { part: "SharedAccessKeyName" });
        let bad = "HostName=h;SharedAccessKeyName=p;SharedAccessKey=not*base64!".parse::<ConnectionString>();
        assert_eq!(bad.unwrap_err(), ConnectionStringError::BadKey);
        assert_eq!("".parse::<ConnectionString>().unwrap_err(), ConnectionStringError::Empty);
        let malformed = "HostName=h;c2VjcmV0;SharedAccessKey=c2VjcmV0".parse::<ConnectionString>().unwrap_err();
        assert!(!malformed.to_string().contains("c2VjcmV0"), "{malformed}");
        let dup = "HostName=h;hostname=i;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0".parse::<ConnectionString>();
        assert_eq!(dup.unwrap_err(), ConnectionStringError::Duplicate { part: "HostName" });
        let ok: ConnectionString =
            "hostname=h.example;sharedaccesskeyname=p;sharedaccesskey=c2VjcmV0;DeviceId=x".parse().unwrap();
        assert_eq!(ok.host_name, "h.example");
        assert!(!format!("{ok:?}").contains("c2VjcmV0"));
        assert!(ConnectionString::looks_like("HostName=x;SharedAccessKey=y"));
        assert!(!ConnectionString::looks_like("examples/campus/hub"));
        assert!(ConnectionString::looks_like("HostName = h;SharedAccessKey=y"));
        assert!(ConnectionString::looks_like("SharedAccessKeyName=iothubowner;SharedAccessKey=y"));
        assert!(ConnectionString::looks_like("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=y"));
        assert_eq!(
            "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=eQ==".parse::<ConnectionString>(),
            Err(ConnectionStringError::EventHubs)
        );
        assert_eq!(
            "SharedAccessKeyName=a;SharedAccessKey=eQ==".parse::<ConnectionString>(),
            Err(ConnectionStringError::MissingPart { part: "HostName" })
        );
    }
}
