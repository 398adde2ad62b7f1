//! The names and numbers the hub keys deployments by, each a type so that a name is never
//! passed where a hub id is expected, nor an etag compared in two spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A deployment's name as written in KDL (and in the `fleetform-name` label). The hub id
/// is this plus a content hash.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentName(pub String);

impl fmt::Display for DeploymentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for DeploymentName {
    type Err = IdError;

    /// A name becomes part of the hub id, so it obeys the id's rules.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeploymentId::check(s)?;
        Ok(DeploymentName(s.to_string()))
    }
}

/// A configuration id on the hub (`<name>-<8 hex>` for managed deployments).
///
/// The hub's rule for configuration ids: at most 128 characters, lowercase letters, digits
/// and `- + % _ * ! '`, no spaces (MicrosoftDocs/azure-docs, the `--config-id` help of
/// `az iot hub configuration create` in the automatic device management articles: "up to
/// 128 characters long. Lowercase letters and the following special characters are
/// allowed: `-+%_*!'`"; the C# service SDK's `Configuration(string configurationId)` says
/// the same: "Lowercase and the following special characters are allowed: [-+%_*!']").
///
/// Ids read from a hub, a snapshot or a saved plan are taken as they are (`From<String>`,
/// serde): the hub is the authority on what it stored, and refusing to read a hub whose
/// ids another tool made would leave it unmanageable. `FromStr` checks the rule for ids
/// fleetform makes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct DeploymentId(pub String);

impl DeploymentId {
    /// The longest id the hub accepts, in characters.
    pub const MAX_CHARS: usize = 128;
    /// The characters besides lowercase ASCII letters and digits an id may hold.
    pub const SPECIAL: &'static str = "-+%_*!'";

    fn check(s: &str) -> Result<(), IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let chars = s.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(IdError::TooLong { id: s.to_string(), chars });
        }
        match s.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || Self::SPECIAL.contains(c))) {
            Some(found) => Err(IdError::Character { id: s.to_string(), found }),
            None => Ok(()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// An id is compared with, looked up by and printed as its text all over: these let it
// stand where a `&str` did without a conversion at every use.
impl std::ops::Deref for DeploymentId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for DeploymentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DeploymentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for DeploymentId {
    fn from(s: String) -> Self {
        DeploymentId(s)
    }
}

impl From<&str> for DeploymentId {
    fn from(s: &str) -> Self {
        DeploymentId(s.to_string())
    }
}

impl From<&String> for DeploymentId {
    fn from(s: &String) -> Self {
        DeploymentId(s.clone())
    }
}

impl From<DeploymentId> for String {
    fn from(id: DeploymentId) -> String {
        id.0
    }
}

impl PartialEq<str> for DeploymentId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DeploymentId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for DeploymentId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<DeploymentId> for String {
    fn eq(&self, other: &DeploymentId) -> bool {
        *self == other.0
    }
}

impl PartialEq<DeploymentId> for str {
    fn eq(&self, other: &DeploymentId) -> bool {
        self == other.0
    }
}

impl PartialEq<DeploymentId> for &str {
    fn eq(&self, other: &DeploymentId) -> bool {
        *self == other.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`: ids stand in columns (`{:<30}`) as the strings they replaced did.
        f.pad(&self.0)
    }
}

impl FromStr for DeploymentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s)?;
        Ok(DeploymentId(s.to_string()))
    }
}

/// Why a text is not a deployment name or id the hub would accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum IdError {
    #[error("a deployment id cannot be empty")]
    Empty,
    #[error("deployment id `{id}` has {chars} characters; the hub allows at most 128")]
    TooLong { id: String, chars: usize },
    #[error("deployment id `{id}` contains `{found}`; the hub allows lowercase letters, digits and -+%_*!'")]
    Character { id: String, found: char },
}

/// An etag. Its identity is the opaque value, without the quotes of the HTTP entity-tag:
/// the hub's JSON carries it bare (`"etag": "MQ=="`), the snapshot backend stamps it
/// quoted, and either spelling names the same etag. [`Etag::header`] is the one form
/// `If-Match` takes: quoted, since the hub treats an unquoted `If-Match` as no
/// precondition at all (azure-iot-sdk-python issue #983). The spelling it was read with is
/// what it is written back as, so a round trip through any backend or file never changes
/// an etag's text.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(into = "String", try_from = "String")]
pub struct Etag {
    text: String,
}

impl Etag {
    /// The `If-Match` header value that makes a write conditional on this etag.
    pub fn header(&self) -> String {
        format!("\"{}\"", self.opaque())
    }

    /// The value without quotes: what identifies the etag, and what the hub's JSON bodies
    /// carry.
    pub fn opaque(&self) -> &str {
        if Self::is_quoted(&self.text) { &self.text[1..self.text.len() - 1] } else { &self.text }
    }

    /// The text as it was read.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The same etag spelled bare, as the hub's JSON bodies carry it.
    pub fn unquoted(&self) -> Etag {
        Etag { text: self.opaque().to_string() }
    }

    /// Whether `text` is in the quoted form (the only form the hub reads in `If-Match` as
    /// a precondition).
    pub fn is_quoted(text: &str) -> bool {
        text.len() >= 2 && text.starts_with('"') && text.ends_with('"')
    }
}

impl PartialEq for Etag {
    fn eq(&self, other: &Self) -> bool {
        self.opaque() == other.opaque()
    }
}

impl Eq for Etag {}

impl std::hash::Hash for Etag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.opaque().hash(state);
    }
}

impl fmt::Display for Etag {
    /// As it was read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text)
    }
}

impl FromStr for Etag {
    type Err = EtagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let opaque = if Self::is_quoted(s) { &s[1..s.len() - 1] } else { s };
        if opaque.is_empty() {
            return Err(EtagError::Empty);
        }
        if s == "*" {
            return Err(EtagError::Wildcard);
        }
        if opaque.contains('"') {
            return Err(EtagError::Quote { text: s.to_string() });
        }
        Ok(Etag { text: s.to_string() })
    }
}

impl TryFrom<String> for Etag {
    type Error = EtagError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Etag> for String {
    fn from(e: Etag) -> String {
        e.text
    }
}

/// Why a text is not an etag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum EtagError {
    #[error("an etag cannot be empty")]
    Empty,
    #[error("`*` matches any etag but is none itself")]
    Wildcard,
    #[error("etag {text} has a double quote inside it")]
    Quote { text: String },
}

/// The precondition an `If-Match` header states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: whatever the current etag is.
    Any,
    Etag(Etag),
}

impl IfMatch {
    /// The `If-Match` header value.
    pub fn header(&self) -> String {
        match self {
            IfMatch::Any => "*".to_string(),
            IfMatch::Etag(e) => e.header(),
        }
    }

    /// Whether a resource whose etag is `current` meets the precondition. A resource
    /// without an etag meets only `*`.
    pub fn admits(&self, current: Option<&Etag>) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Etag(wanted) => current == Some(wanted),
        }
    }
}

impl FromStr for IfMatch {
    type Err = EtagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" { Ok(IfMatch::Any) } else { s.parse().map(IfMatch::Etag) }
    }
}

/// A deployment's priority: the hub's int32, where higher wins. The docs call it "a
/// positive integer" (MicrosoftDocs/azure-docs, `--priority` of `az iot hub configuration
/// create`), the REST API's `Configuration.priority` is an int32, and the hub accepts 0:
/// the range is `0..=i32::MAX`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(into = "i64", try_from = "i64")]
pub struct Priority(pub i32);

impl Priority {
    pub const MIN: Priority = Priority(0);
    pub const MAX: Priority = Priority(i32::MAX);

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<i64> for Priority {
    type Error = PriorityError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match i32::try_from(value) {
            Ok(p) if p >= 0 => Ok(Priority(p)),
            _ => Err(PriorityError::OutOfRange { value }),
        }
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

impl FromStr for Priority {
    type Err = PriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: i64 = s.trim().parse().map_err(|_| PriorityError::NotInteger { text: s.to_string() })?;
        Priority::try_from(value)
    }
}

/// Why a value is not a priority the hub accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PriorityError {
    #[error("priority {value} is outside 0..=2147483647 (a non-negative 32-bit integer)")]
    OutOfRange { value: i64 },
    #[error("priority `{text}` is not an integer")]
    NotInteger { text: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pad_like_strings_and_are_read_as_the_hub_stored_them() {
        let id = DeploymentId::from("campus-base-68afc0b2");
        assert_eq!(format!("[{id:<24}]"), "[campus-base-68afc0b2    ]");
        assert_eq!(format!("[{id:>22}]"), "[  campus-base-68afc0b2]");
        // An id another tool made, outside the rule for ids fleetform makes, still reads.
        let odd: DeploymentId = serde_json::from_str("\"Odd ID\"").unwrap();
        assert_eq!(odd, "Odd ID");
        assert!("Odd ID".parse::<DeploymentId>().is_err());
        assert_eq!(serde_json::to_string(&odd).unwrap(), "\"Odd ID\"");
    }

    #[test]
    fn ids_follow_the_hub_rules() {
        assert_eq!("base-1a2b3c4d".parse::<DeploymentId>().unwrap().as_str(), "base-1a2b3c4d");
        assert!("a-+%_*!'9".parse::<DeploymentId>().is_ok());
        assert_eq!("".parse::<DeploymentId>(), Err(IdError::Empty));
        assert_eq!("Base".parse::<DeploymentId>(), Err(IdError::Character { id: "Base".into(), found: 'B' }));
        assert_eq!("a b".parse::<DeploymentId>(), Err(IdError::Character { id: "a b".into(), found: ' ' }));
        assert_eq!("a/b".parse::<DeploymentId>(), Err(IdError::Character { id: "a/b".into(), found: '/' }));
        assert!("x".repeat(128).parse::<DeploymentId>().is_ok());
        assert_eq!("x".repeat(129).parse::<DeploymentId>(), Err(IdError::TooLong { id: "x".repeat(129), chars: 129 }));
        assert_eq!("edge".parse::<DeploymentName>().unwrap().to_string(), "edge");
        assert!("Edge".parse::<DeploymentName>().is_err());
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = DeploymentId("base-1a2b3c4d".into());
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""base-1a2b3c4d""#);
        assert_eq!(serde_json::from_str::<DeploymentId>(r#""base-1a2b3c4d""#).unwrap(), id);
        assert_eq!(serde_json::to_string(&DeploymentName("base".into())).unwrap(), r#""base""#);
    }

    #[test]
    fn etags_are_one_etag_whichever_spelling_they_were_read_in() {
        let bare: Etag = "MQ==".parse().unwrap();
        let quoted: Etag = "\"MQ==\"".parse().unwrap();
        assert_eq!(bare, quoted);
        assert_eq!(bare.header(), "\"MQ==\"");
        assert_eq!(quoted.header(), "\"MQ==\"");
        assert_eq!(bare.opaque(), "MQ==");
        assert_eq!(quoted.opaque(), "MQ==");
        assert_eq!(bare.to_string(), "MQ==");
        assert_eq!(quoted.to_string(), "\"MQ==\"");
        assert_ne!(bare, "Mg==".parse::<Etag>().unwrap());
        assert_eq!("".parse::<Etag>(), Err(EtagError::Empty));
        assert_eq!("\"\"".parse::<Etag>(), Err(EtagError::Empty));
        assert_eq!("*".parse::<Etag>(), Err(EtagError::Wildcard));
        assert_eq!("a\"b".parse::<Etag>(), Err(EtagError::Quote { text: "a\"b".into() }));
        assert_eq!("\"".parse::<Etag>(), Err(EtagError::Quote { text: "\"".into() }));
    }

    #[test]
    fn etags_are_written_back_as_they_were_read() {
        for text in [r#""MQ==""#, r#""\"MQ==\"""#] {
            let e: Etag = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&e).unwrap(), text);
        }
        assert!(serde_json::from_str::<Etag>(r#""""#).is_err());
    }

    #[test]
    fn if_match_admits_the_same_etag_or_anything_for_a_star() {
        let current: Etag = "MQ==".parse().unwrap();
        assert!("*".parse::<IfMatch>().unwrap().admits(Some(&current)));
        assert!("*".parse::<IfMatch>().unwrap().admits(None));
        assert!("\"MQ==\"".parse::<IfMatch>().unwrap().admits(Some(&current)));
        assert!("MQ==".parse::<IfMatch>().unwrap().admits(Some(&current)));
        assert!(!"\"Mg==\"".parse::<IfMatch>().unwrap().admits(Some(&current)));
        assert!(!"\"MQ==\"".parse::<IfMatch>().unwrap().admits(None));
        assert!(Etag::is_quoted("\"MQ==\"") && !Etag::is_quoted("MQ==") && !Etag::is_quoted("\""));
    }

    #[test]
    fn priorities_are_non_negative_int32() {
        assert_eq!("10".parse::<Priority>(), Ok(Priority(10)));
        assert_eq!("0".parse::<Priority>(), Ok(Priority::MIN));
        assert_eq!("2147483647".parse::<Priority>(), Ok(Priority::MAX));
        assert_eq!("2147483648".parse::<Priority>(), Err(PriorityError::OutOfRange { value: 2147483648 }));
        assert_eq!("-1".parse::<Priority>(), Err(PriorityError::OutOfRange { value: -1 }));
        assert_eq!("ten".parse::<Priority>(), Err(PriorityError::NotInteger { text: "ten".into() }));
        assert_eq!(Priority::try_from(7i64), Ok(Priority(7)));
        assert_eq!(i64::from(Priority(7)), 7);
        assert_eq!(Priority(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Priority(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Priority>("7").unwrap(), Priority(7));
        assert!(serde_json::from_str::<Priority>("-7").is_err());
    }
}
