//! What can go wrong talking to the API, and which of it is worth retrying.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status. `message` is Aiven's own text.
    #[error("HTTP {status}: {message}{}", code_suffix(.error_code))]
    Status {
        status: u16,
        message: String,
        error_code: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No (complete) answer: connection refused, reset, timed out, body cut off.
    #[error("{message}")]
    Transport { message: String, connect: bool },
    /// An answer that is not what the API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The run was cancelled (a signal) before this call could be made or retried.
    #[error("cancelled")]
    Cancelled,
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// The API's error body: `{"errors": [{"message", "status", "error_code"}], "message"}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: Option<String>,
    error_code: Option<String>,
}

impl ApiError {
    /// Builds the error from an error response. Bodies that are not JSON (a proxy's HTML
    /// page) are kept as text, shortened.
    pub fn from_response(status: u16, retry_after_header: Option<&str>, body: &[u8]) -> Self {
        let (message, error_code) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => {
                let first = b.errors.into_iter().next();
                let code = first.as_ref().and_then(|e| e.error_code.clone());
                let message = b
                    .message
                    .or_else(|| first.and_then(|e| e.message))
                    .unwrap_or_default();
                (message, code)
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(300).collect();
                (text, None)
            }
        };
        let message = if message.is_empty() {
            format!("{status} with no message")
        } else {
            message
        };
        let retry_after = retry_after_header
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or_else(|| try_again_in(&message));
        ApiError::Status {
            status,
            message,
            error_code,
            retry_after,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::Status { message, .. } | ApiError::Transport { message, .. } => message,
            ApiError::Decode(m) => m,
            ApiError::Cancelled => "cancelled",
        }
    }

    /// The body's `error_code`, which the API may leave out (the spec's "Errors").
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ApiError::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// 401, or 403 `authentication_failed`: the token is wrong (exit 3). The spec's
    /// "Failed responses" example is this 403, `{"error_code": "authentication_failed",
    /// "message": "Authentication failed"}`; its message is matched too because
    /// `error_code` is optional there.
    pub fn is_auth(&self) -> bool {
        match self {
            ApiError::Status { status: 401, .. } => true,
            ApiError::Status {
                status: 403,
                message,
                ..
            } => {
                self.error_code() == Some("authentication_failed")
                    || message.eq_ignore_ascii_case("Authentication failed")
            }
            _ => false,
        }
    }

    /// Authentication, or a 403 for lack of permission (exit 3 either way). A DELETE's 403
    /// may be termination protection instead: teardown reads the service to tell.
    pub fn is_auth_or_permission(&self) -> bool {
        self.is_auth() || self.status() == Some(403)
    }

    /// An untrusted TLS certificate: no retry will change that.
    fn is_certificate_problem(&self) -> bool {
        matches!(self, ApiError::Transport { message, .. } if message.to_ascii_lowercase().contains("certificate"))
    }

    /// Worth another attempt: the API or the network may answer differently next time.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport { .. } => !self.is_certificate_problem(),
            ApiError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            ApiError::Decode(_) | ApiError::Cancelled => false,
        }
    }

    /// The wait the API asked for: `Retry-After`, else "try again in Ns".
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            e if e.is_auth() => Some(
                "check AIVEN_TOKEN (or AIVEN_AUTH_TOKEN / --token-file): it must be a valid, unexpired Aiven token with access to the project"
                    .into(),
            ),
            ApiError::Status { status: 403, .. } => Some(
                "the token lacks a permission this needs (it must be able to create, read and delete services in the project), or a limit of the project or account refuses it: Aiven's message above says which"
                    .into(),
            ),
            // The spec's error codes for an unknown project ("Errors"); no source gives
            // the message's wording, so it is not read.
            e if e.status() == Some(404)
                && matches!(e.error_code(), Some("project_not_found" | "project_does_not_exist")) =>
            {
                Some(
                "check the project name (manifest `project`, --project or AIVEN_PROJECT)".into(),
                )
            }
            e if e.is_certificate_problem() => Some(
                "the API's TLS certificate is not trusted: behind a TLS-inspecting proxy, pass its CA with --ca-cert (AIVEN_CA_CERT)".into(),
            ),
            ApiError::Transport { connect: true, .. } => Some(
                "check --api-url / AIVEN_API_URL, and HTTPS_PROXY / NO_PROXY if a proxy is needed".into(),
            ),
            _ => None,
        }
    }
}

/// Parses the "try again in 28s" the API writes into its 429 messages (seen in
/// terraform-provider-aiven#575: "Rate limit 120 exceeded - try again in 28s"). Only a
/// wait: the status decides whether to retry, and another wording means our own backoff.
fn try_again_in(message: &str) -> Option<Duration> {
    let rest = &message[message.find("try again in ")? + "try again in ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let unit = rest[digits.len()..].chars().next();
    let n: u64 = digits.parse().ok()?;
    match unit {
        Some('s') | None => Some(Duration::from_secs(n)),
        Some('m') => Some(Duration::from_secs(n * 60)),
        _ => Some(Duration::from_secs(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_api_error_shape() {
        let body = br#"{"errors":[{"message":"Service name is already in use in this project","status":409}],"message":"Service name is already in use in this project"}"#;
        let e = ApiError::from_response(409, None, body);
        assert!(e.is_conflict());
        assert_eq!(
            e.message(),
            "Service name is already in use in this project"
        );
    }

    #[test]
    fn retry_after_from_header_then_from_text() {
        // The text as terraform-provider-aiven#575 quotes it.
        let body = br#"{"message":"too many requests in a given amount of time: Rate limit 120 exceeded - try again in 28s"}"#;
        assert_eq!(
            ApiError::from_response(429, None, body).retry_after(),
            Some(Duration::from_secs(28))
        );
        assert_eq!(
            ApiError::from_response(429, Some("3"), body).retry_after(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            ApiError::from_response(429, None, b"{}").retry_after(),
            None
        );
    }

    #[test]
    fn non_json_bodies_are_kept_as_text() {
        let e = ApiError::from_response(408, None, b"<html>Request Timeout</html>");
        assert_eq!(e.message(), "<html>Request Timeout</html>");
        assert!(e.is_transient());
    }

    #[test]
    fn a_protection_refusal_is_not_an_authentication_failure() {
        let auth = ApiError::from_response(
            403,
            None,
            br#"{"errors":[{"error_code":"authentication_failed","message":"Authentication failed","status":403}],"message":"Authentication failed"}"#,
        );
        assert!(auth.is_auth());
        // The text as terraform-provider-aiven#506 quotes it.
        let protected = ApiError::from_response(
            403,
            None,
            br#"{"errors":[{"message":"Service is protected against termination and shutdown. Remove termination protection first.","status":403}],"message":"Service is protected against termination and shutdown. Remove termination protection first."}"#,
        );
        assert!(!protected.is_auth());
        assert!(ApiError::from_response(401, None, br#"{"message":"Invalid token"}"#).is_auth());
    }
}
