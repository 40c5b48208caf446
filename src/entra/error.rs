//! Typed errors of the Graph client and of the operator's authentication to Entra.
//!
//! Every Graph error answer keeps Graph's `code` (and `details[].code`), its message and the
//! `request-id` Microsoft support asks for. [`GraphError::metric_label`] names the error for metrics,
//! and [`GraphError::condition_reason`] picks the `Ready=False` reason: `Throttled`, `InvalidSpec`
//! (Graph refused what the spec asked for), `ConfigurationError` (the operator's credentials or
//! permissions) or `EntraError`.

use std::time::Duration;

use crate::conditions::reason;

/// Longest raw body kept in an error (they end up in status conditions).
pub const MAX_BODY_IN_ERROR: usize = 512;

/// Graph's code for overlapping writes to one object.
pub const CONCURRENCY_VIOLATION: &str = "Directory_ConcurrencyViolation";
/// Graph's code (and detail code) for a service principal created before its app has replicated.
pub const NO_BACKING_APPLICATION_OBJECT: &str = "NoBackingApplicationObject";
pub const RESOURCE_NOT_FOUND: &str = "Request_ResourceNotFound";
/// Graph's code for "already exists" (a second service principal, grant or name).
pub const MULTIPLE_OBJECTS_WITH_SAME_KEY: &str = "Request_MultipleObjectsWithSameKeyValue";

/// Errors of the client-credentials grant against the tenant's v2.0 token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EntraAuthError {
    /// The token endpoint refused with an OAuth error (`invalid_client`, `invalid_scope`, ...).
    #[error("Entra token request failed: HTTP {status}: {error}{}", describe(.description))]
    OAuth {
        status: u16,
        error: String,
        /// `error_description` (names the `AADSTS` code; never holds the secret or assertion).
        description: Option<String>,
        /// `error_codes` (the AADSTS numbers).
        codes: Vec<u64>,
        trace_id: Option<String>,
        correlation_id: Option<String>,
    },
    /// The token endpoint failed without an OAuth error body.
    #[error("Entra token request failed: HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Entra token request failed: {0}")]
    Transport(String),
    #[error("Entra token response: {0}")]
    Decode(String),
    /// The operator's credential could not be read or used (key, certificate, token file).
    #[error("Entra operator credential: {0}")]
    Credential(String),
    /// The GCE metadata server did not hand out an identity token.
    #[error("Google metadata server {url}: {problem}")]
    Metadata { url: String, problem: String },
}

fn describe(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl EntraAuthError {
    /// Whether trying the grant again might help (5xx, 429, transport errors, the metadata server).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::OAuth { status, .. } | Self::Http { status, .. } => {
                *status >= 500 || *status == 429
            }
            Self::Transport(_) | Self::Metadata { .. } => true,
            Self::Decode(_) | Self::Credential(_) => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::OAuth { status, .. } | Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One entry of Graph's `error.details`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

/// An error answer from Microsoft Graph.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Graph {method} {path}: HTTP {status}{}: {message}{}{}", code_part(.code), detail_part(.details), request_part(.request_id))]
pub struct GraphApiError {
    pub method: String,
    /// Path (and query) relative to the Graph base URL.
    pub path: String,
    pub status: u16,
    /// `error.code`, e.g. `Request_BadRequest`, `Directory_ConcurrencyViolation`.
    pub code: Option<String>,
    /// `error.message`, or the raw body (truncated).
    pub message: String,
    pub details: Vec<ErrorDetail>,
    /// `innerError.request-id` (or the `request-id` header).
    pub request_id: Option<String>,
    /// The `client-request-id` this client sent.
    pub client_request_id: Option<String>,
    /// `innerError.date`.
    pub date: Option<String>,
    /// For 429/503: how long Graph asked us to wait.
    pub retry_after: Option<Duration>,
}

fn code_part(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn detail_part(details: &[ErrorDetail]) -> String {
    let parts: Vec<String> = details
        .iter()
        .filter_map(|d| match (&d.target, d.code.is_empty()) {
            (Some(t), false) => Some(format!("{t}: {}", d.code)),
            (None, false) => Some(d.code.clone()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(", "))
    }
}

fn request_part(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (request-id {id})"))
        .unwrap_or_default()
}

impl GraphApiError {
    /// Whether `code` is the error's code or one of its details' codes.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code) || self.details.iter().any(|d| d.code == code)
    }
}

/// What kind of failure an error is, for choosing what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 429 (or 503 with Retry-After): wait and retry.
    Throttled,
    /// Graph refused the request as invalid (400): what the spec asked for cannot be done as asked.
    InvalidRequest,
    /// 404.
    NotFound,
    /// A state conflict other than concurrency (409): e.g. the object exists already.
    Conflict,
    /// The operator's own credentials or permissions (token refused, 401, 403, bad configuration).
    Configuration,
    /// Entra failed (5xx, a concurrency conflict that outlasted the retries, no answer, a bad answer).
    Provider,
}

/// Errors of a Graph call.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error status.
    #[error("{0}")]
    Api(Box<GraphApiError>),
    /// No answer: timeout, connection refused or reset.
    #[error("Graph {method} {path}: {problem}")]
    Transport {
        method: String,
        path: String,
        problem: String,
        timeout: bool,
        /// The request never left (connect failed): a POST can be retried without a lookup.
        connect: bool,
    },
    /// A success answer whose body is not what Graph documents.
    #[error("Graph {method} {path}: unexpected response: {problem}")]
    Decode {
        method: String,
        path: String,
        problem: String,
    },
    #[error("Entra authentication: {0}")]
    Auth(Box<EntraAuthError>),
    #[error("Entra client configuration: {0}")]
    Config(String),
    /// More than one application has the display name that identifies an app (azurerator's
    /// "found more than one matching azure application"): a person must remove the extra ones.
    #[error("found {count} applications named {display_name:?} in Entra ID; the display name must identify one application (remove the duplicates: {ids})", ids = .object_ids.join(", "))]
    Duplicate {
        display_name: String,
        count: usize,
        object_ids: Vec<String>,
    },
    /// A collection had more pages than allowed; nothing is decided on a partial list.
    #[error("Graph GET {path}: more than {pages} pages; refusing to act on a partial list")]
    PageLimit { path: String, pages: usize },
}

impl From<EntraAuthError> for GraphError {
    fn from(e: EntraAuthError) -> Self {
        Self::Auth(Box::new(e))
    }
}

impl GraphError {
    /// The authentication failure, if that is what this is.
    pub fn auth(&self) -> Option<&EntraAuthError> {
        match self {
            Self::Auth(e) => Some(e),
            _ => None,
        }
    }

    pub fn api(&self) -> Option<&GraphApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of an error answer (Graph's or the token endpoint's).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            Self::Auth(e) => e.status(),
            _ => None,
        }
    }

    /// Graph's error code.
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|e| e.code.as_deref())
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.api().is_some_and(|e| e.has_code(code))
    }

    /// Graph's `request-id` (for Microsoft support; put it in events and status).
    pub fn request_id(&self) -> Option<&str> {
        self.api().and_then(|e| e.request_id.as_deref())
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|e| e.retry_after)
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_throttled(&self) -> bool {
        match self.api() {
            Some(e) => e.status == 429 || (e.status == 503 && e.retry_after.is_some()),
            None => false,
        }
    }

    /// 409 `Directory_ConcurrencyViolation`: another write to the same object was in progress.
    pub fn is_concurrency_violation(&self) -> bool {
        self.status() == Some(409) && self.has_code(CONCURRENCY_VIOLATION)
    }

    /// Graph says the object exists already (a second service principal, grant, name, assignment).
    pub fn is_already_exists(&self) -> bool {
        match self.api() {
            Some(e) => {
                e.has_code(MULTIPLE_OBJECTS_WITH_SAME_KEY)
                    || (e.status == 400 && e.message.contains("already exist"))
            }
            None => false,
        }
    }

    /// Whether the answer may be replication lag right after a create: 404, or a service principal
    /// refused for want of its (new) application.
    pub fn is_replication_lag(&self) -> bool {
        match self.api() {
            Some(e) => {
                e.status == 404
                    || e.has_code(RESOURCE_NOT_FOUND)
                    || e.has_code(NO_BACKING_APPLICATION_OBJECT)
            }
            None => false,
        }
    }

    /// Whether a retry might succeed: 5xx, 429, 409 concurrency violations, timeouts, connection
    /// errors, retryable grant failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(e) => e.status >= 500 || e.status == 429 || self.is_concurrency_violation(),
            Self::Transport { .. } => true,
            Self::Auth(e) => e.is_retryable(),
            Self::Decode { .. }
            | Self::Config(_)
            | Self::Duplicate { .. }
            | Self::PageLimit { .. } => false,
        }
    }

    /// Whether Graph may have acted although no success answer came (timeout, 5xx, connection lost
    /// after sending): a create must look before it tries again.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Api(e) => e.status >= 500,
            Self::Transport { connect, .. } => !connect,
            _ => false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            _ if self.is_throttled() => ErrorKind::Throttled,
            Self::Api(e) => match e.status {
                400 => ErrorKind::InvalidRequest,
                401 | 403 => ErrorKind::Configuration,
                404 => ErrorKind::NotFound,
                409 if !self.is_concurrency_violation() => ErrorKind::Conflict,
                _ => ErrorKind::Provider,
            },
            Self::Auth(e) => match e.as_ref() {
                EntraAuthError::OAuth { status, .. } | EntraAuthError::Http { status, .. }
                    if *status < 500 && *status != 429 =>
                {
                    ErrorKind::Configuration
                }
                EntraAuthError::Credential(_) => ErrorKind::Configuration,
                _ => ErrorKind::Provider,
            },
            Self::Config(_) => ErrorKind::Configuration,
            _ => ErrorKind::Provider,
        }
    }

    /// The `Ready=False` reason for this error ([`crate::conditions::reason`]).
    pub fn condition_reason(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Throttled => reason::THROTTLED,
            ErrorKind::InvalidRequest => reason::INVALID_SPEC,
            ErrorKind::Configuration => reason::CONFIGURATION_ERROR,
            ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Provider => reason::ENTRA_ERROR,
        }
    }

    /// A short, stable label for metrics (`error="..."`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Api(e) => match e.status {
                429 => "throttled",
                409 if self.is_concurrency_violation() => "concurrency_violation",
                409 => "conflict",
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                503 if e.retry_after.is_some() => "throttled",
                s if s >= 500 => "server_error",
                _ => "client_error",
            },
            Self::Transport { timeout: true, .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Decode { .. } => "decode",
            Self::Auth(_) => "auth",
            Self::Config(_) => "config",
            Self::Duplicate { .. } => "duplicate",
            Self::PageLimit { .. } => "page_limit",
        }
    }

    /// Builds an API error from an error answer.
    pub(crate) fn from_response(
        method: &str,
        path: &str,
        status: u16,
        header_request_id: Option<String>,
        client_request_id: Option<String>,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Option<ErrorBody>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
            #[serde(default)]
            details: Option<Vec<DetailBody>>,
            #[serde(rename = "innerError", alias = "innererror", default)]
            inner: Option<Inner>,
        }
        #[derive(serde::Deserialize)]
        struct DetailBody {
            code: Option<String>,
            message: Option<String>,
            target: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(rename = "request-id")]
            request_id: Option<String>,
            date: Option<String>,
        }
        let parsed = serde_json::from_slice::<Body>(body)
            .ok()
            .and_then(|b| b.error);
        let raw = truncate(&String::from_utf8_lossy(body));
        let (code, message, details, request_id, date) = match parsed {
            Some(e) => {
                let details = e
                    .details
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| ErrorDetail {
                        code: d.code.unwrap_or_default(),
                        message: d.message.map(|m| truncate(&m)).unwrap_or_default(),
                        target: d.target,
                    })
                    .collect();
                let (rid, date) = e.inner.map(|i| (i.request_id, i.date)).unwrap_or_default();
                (e.code, e.message.unwrap_or_default(), details, rid, date)
            }
            None => (None, raw, vec![], None, None),
        };
        let message = if message.is_empty() {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_string()
        } else {
            truncate(&message)
        };
        Self::Api(Box::new(GraphApiError {
            method: method.to_string(),
            path: path.to_string(),
            status,
            code,
            message,
            details,
            request_id: request_id.or(header_request_id),
            client_request_id,
            date,
            retry_after,
        }))
    }
}

pub(crate) fn truncate(s: &str) -> String {
    crate::provider_http::cut_body(s, MAX_BODY_IN_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str, retry_after: Option<Duration>) -> GraphError {
        GraphError::from_response(
            "PATCH",
            "/applications/x",
            status,
            Some("hdr-id".into()),
            Some("mine".into()),
            retry_after,
            body.as_bytes(),
        )
    }

    #[test]
    fn graph_errors_keep_code_details_and_request_id_and_choose_a_reason() {
        let e = err(
            400,
            r#"{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property identifierUris already exists.",
                "details":[{"code":"ObjectConflict","message":"m","target":"identifierUris"}],
                "innerError":{"date":"2026-01-01T00:00:00","request-id":"body-id","client-request-id":"mine"}}}"#,
            None,
        );
        assert_eq!(e.code(), Some("Request_BadRequest"));
        assert!(e.has_code("ObjectConflict"));
        assert_eq!(e.request_id(), Some("body-id"));
        assert_eq!(e.metric_label(), "bad_request");
        assert_eq!(e.condition_reason(), reason::INVALID_SPEC);
        let text = e.to_string();
        assert!(
            text.contains("identifierUris: ObjectConflict") && text.contains("request-id body-id"),
            "{text}"
        );
        assert!(!e.is_retryable());

        let e = err(
            409,
            r#"{"error":{"code":"Directory_ConcurrencyViolation","message":"wait"}}"#,
            None,
        );
        assert!(e.is_concurrency_violation() && e.is_retryable());
        assert_eq!(e.metric_label(), "concurrency_violation");
        assert_eq!(e.condition_reason(), reason::ENTRA_ERROR);
        assert_eq!(
            e.request_id(),
            Some("hdr-id"),
            "the header when the body has none"
        );

        let e = err(429, "", Some(Duration::from_secs(3)));
        assert!(e.is_throttled());
        assert_eq!(e.condition_reason(), reason::THROTTLED);
        assert_eq!(e.api().unwrap().message, "Too Many Requests");

        let e = err(502, "<html>bad gateway</html>", None);
        assert!(e.is_retryable() && e.is_ambiguous());
        assert_eq!(e.metric_label(), "server_error");
        assert_eq!(
            err(403, "{}", None).condition_reason(),
            reason::CONFIGURATION_ERROR
        );
        assert!(
            err(
                404,
                r#"{"error":{"code":"Request_ResourceNotFound","message":"x"}}"#,
                None
            )
            .is_replication_lag()
        );
    }
}
