//! The error bodies the simulator answers with: Microsoft Graph's
//! `{"error":{"code","message","details","innerError":{"date","request-id","client-request-id"}}}`
//! on `/v1.0`, and the identity platform's OAuth errors (`AADSTS…`) on the login endpoints.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Errors of the simulator's own setup and helpers (not HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("key or certificate: {0}")]
    Crypto(String),
    #[error("seed: {0}")]
    Seed(String),
}

impl From<crate::jwt::CryptoError> for SimError {
    fn from(e: crate::jwt::CryptoError) -> Self {
        SimError::Crypto(e.to_string())
    }
}

/// The code Entra answers overlapping writes to one object with.
pub const CONCURRENCY_VIOLATION: &str = "Directory_ConcurrencyViolation";
/// The message that goes with it (as Graph sends it).
pub const CONCURRENCY_MESSAGE: &str =
    "Error due to concurrent requests being made to the tenant. Please wait briefly and retry.";

/// One entry of `error.details[]`.
#[derive(Clone, Debug)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub target: String,
}

/// A Graph error answer.
#[derive(Clone, Debug)]
pub struct GraphApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl GraphApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: vec![],
            retry_after: None,
        }
    }

    /// 400 `Request_BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 `Request_BadRequest` with one detail naming the property at fault.
    pub fn invalid_property(target: &str, detail_code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::bad_request(message.clone());
        e.details.push(ErrorDetail {
            code: detail_code.into(),
            message,
            target: target.into(),
        });
        e
    }

    /// 404 `Request_ResourceNotFound`, worded as Graph words it.
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    pub fn concurrency() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            CONCURRENCY_VIOLATION,
            CONCURRENCY_MESSAGE,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    pub fn throttled(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests are being made to the tenant. Please wait and retry.",
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// The JSON body, with `innerError` carrying the request id.
    pub fn body(&self, request_id: &str, client_request_id: Option<&str>) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "innerError": inner_error(request_id, client_request_id),
        });
        if !self.details.is_empty()
            && let Some(map) = error.as_object_mut()
        {
            map.insert(
                "details".into(),
                self.details
                    .iter()
                    .map(|d| json!({"code": d.code, "message": d.message, "target": d.target}))
                    .collect(),
            );
        }
        json!({ "error": error })
    }

    /// The answer, with `request-id` (fresh) and `client-request-id` headers.
    pub fn respond(&self, client_request_id: Option<&str>) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut response = (
            self.status,
            axum::Json(self.body(&request_id, client_request_id)),
        )
            .into_response();
        set_request_ids(&mut response, &request_id, client_request_id);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let h = response.headers_mut();
            h.insert(
                "x-ms-throttle-scope",
                HeaderValue::from_static("Tenant_Application/ReadWrite/Application"),
            );
            h.insert(
                "x-ms-throttle-information",
                HeaderValue::from_static("WriteLimitExceeded"),
            );
        }
        response
    }
}

/// Graph's `innerError` object.
pub fn inner_error(request_id: &str, client_request_id: Option<&str>) -> Value {
    json!({
        "date": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": request_id,
        "client-request-id": client_request_id.unwrap_or(request_id),
    })
}

pub fn set_request_ids(response: &mut Response, request_id: &str, client_request_id: Option<&str>) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(client_request_id.unwrap_or(request_id)) {
        h.insert("client-request-id", v);
    }
}

/// An error of the v2.0 token endpoint, as the identity platform sends it.
#[derive(Clone, Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    /// `invalid_client`, `invalid_request`, `invalid_scope`, `unauthorized_client`, ...
    pub error: &'static str,
    /// The `AADSTS` number.
    pub aadsts: u32,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            aadsts,
            description: description.into(),
        }
    }

    /// 401 `invalid_client` (bad secret, bad assertion).
    pub fn client(aadsts: u32, description: impl Into<String>) -> Self {
        let mut e = Self::new("invalid_client", aadsts, description);
        e.status = StatusCode::UNAUTHORIZED;
        e
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let now = jiff::Timestamp::now();
        let timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.aadsts, self.description
            ),
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.aadsts),
        });
        (self.status, axum::Json(body)).into_response()
    }
}
