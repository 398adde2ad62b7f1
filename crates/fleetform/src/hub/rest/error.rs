//! What a failed request means: the hub's status and error body, or the transport's
//! failure, mapped to the [`HubError`] variant that says what to do.

use serde_json::Value;

use super::retry::{Replay, Reply};
use super::{HubError, MAX_CONFIGURATIONS};

pub(super) fn unreachable(operation: &str, base: &str, e: &reqwest::Error, attempts: u32, replay: Replay) -> HubError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // A write that may have reached the hub: say so, rather than let "failed" read as
    // "nothing happened".
    let outcome = if replay == Replay::Guarded && !e.is_connect() {
        " (the write may have reached the hub; plan again to see)"
    } else {
        ""
    };
    // reqwest's message names the URL (no secrets: the token travels in a header); the
    // innermost cause says what happened ("connection reset by peer").
    let mut innermost = None;
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let cause = match innermost {
        Some(inner) if !e.to_string().contains(&inner) => format!("{e}: {inner}"),
        _ => e.to_string(),
    };
    HubError::Unreachable {
        operation: operation.to_string(),
        message: format!(
            "{what} talking to {base} after {attempts} attempt{}{outcome}: {cause}",
            if attempts == 1 { "" } else { "s" }
        ),
    }
}

/// The hub's error: `ErrorCode:<Name>;<text>` in the body's `Message`, or the
/// `iothub-errorcode` header.
#[derive(Debug, Default, PartialEq)]
pub struct HubErrorBody {
    pub code: String,
    pub message: String,
}

pub fn parse_error_body(header_code: Option<&str>, body: &[u8]) -> HubErrorBody {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("Message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (code_in_body, text) = match message.strip_prefix("ErrorCode:").and_then(|m| m.split_once(';')) {
        Some((code, text)) => (Some(code.trim().to_string()), text.trim().to_string()),
        None => (None, message.trim().to_string()),
    };
    let code = code_in_body.or_else(|| header_code.map(str::to_string)).unwrap_or_default();
    let message = if text.is_empty() { String::from_utf8_lossy(body).chars().take(300).collect() } else { text };
    HubErrorBody { code, message }
}

pub(super) fn error_from(operation: &str, id: Option<&str>, reply: Reply) -> HubError {
    let header_code = reply.headers.get("iothub-errorcode").and_then(|v| v.to_str().ok());
    let parsed = parse_error_body(header_code, &reply.body);
    map_status(operation, id, reply.status.as_u16(), parsed, reply.attempts)
}

pub(super) fn map_status(
    operation: &str,
    id: Option<&str>,
    status: u16,
    body: HubErrorBody,
    attempts: u32,
) -> HubError {
    // The id-carrying variants only make sense for requests about one deployment or twin;
    // a 404 on the list or query endpoint means a wrong --endpoint, and is reported as HTTP.
    match (status, body.code.as_str(), id) {
        (_, "ConfigurationAlreadyExists", Some(id)) | (409, _, Some(id)) => HubError::AlreadyExists { id: id.into() },
        (412, _, Some(id)) => HubError::PreconditionFailed { id: id.into() },
        (404, _, Some(id)) => HubError::NotFound { id: id.into() },
        _ => map_other(operation, status, body, attempts),
    }
}

fn map_other(operation: &str, status: u16, body: HubErrorBody, attempts: u32) -> HubError {
    match (status, body.code.as_str()) {
        (_, "TooManyConfigurationsOnHub") => HubError::TooManyConfigurations { limit: MAX_CONFIGURATIONS },
        (401, code) => HubError::Http {
            operation: operation.to_string(),
            status,
            code: if code.is_empty() { "IotHubUnauthorizedAccess".into() } else { code.to_string() },
            message: "the key is wrong or the policy lacks registry read/write".into(),
            help: Some(
                "check the SharedAccessKey in the connection string, and that the policy (e.g. iothubowner) grants \
                 registry read and registry write"
                    .into(),
            ),
        },
        (_, code) => {
            let help = match status {
                429 => Some(format!(
                    "the hub kept throttling (gave up after {attempts} attempts); wait a minute, or raise the hub's \
                     units or tier"
                )),
                500..=599 => Some(format!("the hub kept failing (gave up after {attempts} attempts); try again later")),
                400 => Some("the hub rejected the request as invalid".into()),
                _ => None,
            };
            HubError::Http {
                operation: operation.to_string(),
                status,
                code: code.to_string(),
                message: body.message,
                help,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_yield_code_and_text() {
        let body = br#"{"Message":"ErrorCode:PreconditionFailed;Precondition failed: etag mismatch","ExceptionMessage":"Tracking ID:abc"}"#;
        let parsed = parse_error_body(None, body);
        assert_eq!(parsed.code, "PreconditionFailed");
        assert_eq!(parsed.message, "Precondition failed: etag mismatch");
        let from_header = parse_error_body(Some("ThrottlingException"), b"busy");
        assert_eq!(from_header, HubErrorBody { code: "ThrottlingException".into(), message: "busy".into() });
        let err = map_status("list", None, 503, from_header, 4);
        assert!(err.to_string().contains("HTTP 503 ThrottlingException"), "{err}");
        assert!(matches!(
            map_status("x", Some("a"), 412, HubErrorBody::default(), 1),
            HubError::PreconditionFailed { .. }
        ));
        let exists = HubErrorBody { code: "ConfigurationAlreadyExists".into(), message: String::new() };
        assert!(matches!(map_status("x", Some("a"), 400, exists, 1), HubError::AlreadyExists { .. }));
        let e401 = map_status("x", None, 401, HubErrorBody::default(), 1);
        assert!(e401.to_string().contains("the key is wrong or the policy lacks registry read/write"));
    }
}
