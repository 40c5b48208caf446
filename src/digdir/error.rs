//! Typed errors of the Digdir client and its admin authentication.

use std::time::Duration;

use super::types::ApiErrorResponse;

/// Longest raw body kept in an error (they end up in status conditions).
pub const MAX_BODY_IN_ERROR: usize = 512;

/// Errors of the Maskinporten JWT-bearer grant (admin authentication).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint answered with an OAuth error (`invalid_grant`, `invalid_scope`, ...).
    #[error("Maskinporten token request failed: HTTP {status}: {error}{}", describe(.error_description))]
    OAuth {
        status: u16,
        error: String,
        error_description: Option<String>,
    },
    /// The token endpoint failed without an OAuth error body (e.g. a 5xx page).
    #[error("Maskinporten token request failed: HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Maskinporten token request failed: {0}")]
    Transport(String),
    #[error("Maskinporten token response: {0}")]
    Decode(String),
    #[error("metadata {url}: {problem}")]
    Metadata { url: String, problem: String },
    #[error("signing the admin grant: {0}")]
    Signing(#[from] crate::keys::KeyError),
}

fn describe(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl AuthError {
    /// Whether trying the grant again might help (5xx, 429, transport errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http { status, .. } | Self::OAuth { status, .. } => {
                *status >= 500 || *status == 429
            }
            Self::Transport(_) => true,
            Self::Metadata { .. } => true,
            // A KMS that is unavailable or throttling; a bad key stays bad.
            Self::Signing(e) => e.is_retryable(),
            Self::Decode(_) => false,
        }
    }
}

/// Errors of a Digdir API call.
#[derive(Debug, thiserror::Error)]
pub enum DigdirError {
    /// Digdir answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No answer: timeout, connection refused or reset.
    #[error("Digdir {method} {path}: {problem}")]
    Transport {
        method: String,
        path: String,
        problem: String,
        timeout: bool,
        /// The request never left (connect failed): a POST can be retried without a lookup.
        connect: bool,
    },
    /// A success answer whose body is not what the API documents (not the JSON shape, or without
    /// the fields portvakt relies on).
    #[error("Digdir {method} {path}: unexpected answer: {problem}")]
    Decode {
        method: String,
        path: String,
        problem: String,
    },
    #[error("Digdir admin authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("Digdir client configuration: {0}")]
    Config(String),
}

/// An error answer from Digdir.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Digdir {method} {path}: HTTP {status}: {message}{}", correlation(.correlation_id))]
pub struct ApiError {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Digdir's `error` code, if any.
    pub error: Option<String>,
    /// Digdir's `error_description`, field errors, or the raw body (truncated).
    pub message: String,
    pub correlation_id: Option<String>,
    /// For 429/503: how long Digdir asked us to wait.
    pub retry_after: Option<Duration>,
}

fn correlation(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (correlation_id {id})"))
        .unwrap_or_default()
}

impl DigdirError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            Self::Auth(AuthError::OAuth { status, .. } | AuthError::Http { status, .. }) => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The details of an error answer from Digdir.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }

    pub fn correlation_id(&self) -> Option<&str> {
        match self {
            Self::Api(e) => e.correlation_id.as_deref(),
            _ => None,
        }
    }

    /// Digdir's message (for API errors), else the error's text.
    pub fn message(&self) -> String {
        match self {
            Self::Api(e) => e.message.clone(),
            other => other.to_string(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Whether Digdir asked us to slow down (429, or 503 with Retry-After).
    pub fn is_throttled(&self) -> bool {
        match self.status() {
            Some(429) => true,
            Some(503) => self.retry_after().is_some(),
            _ => false,
        }
    }

    /// The label of the failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Api(_) if self.is_throttled() => "digdir_throttled",
            Self::Api(e) if e.status >= 500 => "digdir_server_error",
            Self::Api(_) => "digdir_refused",
            Self::Transport { timeout: true, .. } => "digdir_timeout",
            Self::Transport { .. } => "digdir_unreachable",
            Self::Decode { .. } => "digdir_unexpected_answer",
            Self::Auth(_) => "digdir_auth",
            Self::Config(_) => "digdir_config",
        }
    }

    /// 4xx other than 429: the request is wrong and will stay wrong (bad input, forbidden, conflict).
    pub fn is_client_error(&self) -> bool {
        matches!(self.status(), Some(s) if (400..500).contains(&s) && s != 429)
    }

    /// Whether a retry might succeed: 5xx, 429, timeouts and connection errors, and retryable grant failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(e) => e.status >= 500 || e.status == 429,
            Self::Transport { .. } => true,
            Self::Auth(e) => e.is_retryable(),
            Self::Decode { .. } | Self::Config(_) => false,
        }
    }

    /// Whether the server may have acted on the request even though we got no success answer
    /// (timeouts, 5xx, connection reset after sending): a non-idempotent create must look before retrying.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Api(e) => e.status >= 500,
            Self::Transport { connect, .. } => !connect,
            _ => false,
        }
    }

    /// Whether a request that got no answer may still be acted on later (a timeout, a connection
    /// lost after sending, a gateway's 504 while the backend works on): a lookup right now cannot
    /// tell whether a create will have happened.
    pub fn may_land_later(&self) -> bool {
        match self {
            Self::Api(e) => e.status == 504,
            Self::Transport { connect, .. } => !connect,
            _ => false,
        }
    }

    /// Builds an API error from a response's status, headers and body.
    pub(crate) fn from_response(
        method: &str,
        path: &str,
        status: u16,
        header_correlation_id: Option<String>,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let parsed: Option<ApiErrorResponse> = serde_json::from_slice(body).ok();
        let raw = truncate(&String::from_utf8_lossy(body));
        let (error, message, body_correlation) = match parsed {
            Some(p) => {
                let field_errors: Vec<String> = p
                    .errors
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| match (e.field_identifier, e.error_message) {
                        (Some(f), Some(m)) => Some(format!("{f}: {m}")),
                        (None, Some(m)) => Some(m),
                        _ => None,
                    })
                    .collect();
                let mut message = p.error_description.clone().unwrap_or_default();
                // Digdir often repeats a field error in error_description: say each thing once.
                for fe in field_errors {
                    if message.contains(&fe) {
                        continue;
                    }
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&fe);
                }
                if message.is_empty() {
                    message = p.error.clone().unwrap_or_else(|| raw.clone());
                }
                (p.error, message, p.correlation_id)
            }
            None => (None, raw, None),
        };
        let message = if message.is_empty() {
            http_reason(status).to_string()
        } else {
            truncate(&message)
        };
        Self::Api(Box::new(ApiError {
            method: method.to_string(),
            path: path.to_string(),
            status,
            error,
            message,
            correlation_id: body_correlation.or(header_correlation_id),
            retry_after,
        }))
    }
}

fn http_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

pub(crate) fn truncate(s: &str) -> String {
    crate::provider_http::cut_body(s, MAX_BODY_IN_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_carries_description_and_correlation_id() {
        let body = br#"{"status":400,"correlation_id":"c-1","error":"invalid_request",
            "error_description":"Invalid redirect_uri","errors":[{"errorMessage":"must be https","fieldIdentifier":"redirect_uris"}]}"#;
        let err =
            DigdirError::from_response("POST", "/clients", 400, Some("h-1".into()), None, body);
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.correlation_id(), Some("c-1"));
        assert_eq!(
            err.message(),
            "Invalid redirect_uri; redirect_uris: must be https"
        );
        assert!(err.to_string().contains("correlation_id c-1"));
        assert!(!err.is_retryable());

        let err = DigdirError::from_response(
            "GET",
            "/clients",
            502,
            Some("h-2".into()),
            None,
            b"<html>bad gateway</html>",
        );
        assert_eq!(err.correlation_id(), Some("h-2"));
        assert_eq!(err.message(), "<html>bad gateway</html>");
        assert!(err.is_retryable() && err.is_ambiguous());

        let err = DigdirError::from_response("GET", "/x", 404, None, None, b"");
        assert_eq!(err.message(), "Not Found");

        // A field error Digdir also put into error_description is said once.
        let body = br#"{"error":"invalid_request","error_description":"redirect_uris[0]: must not contain a fragment",
            "errors":[{"errorMessage":"must not contain a fragment","fieldIdentifier":"redirect_uris[0]"}]}"#;
        let err = DigdirError::from_response("POST", "/clients", 400, None, None, body);
        assert_eq!(
            err.message(),
            "redirect_uris[0]: must not contain a fragment"
        );
    }
}
