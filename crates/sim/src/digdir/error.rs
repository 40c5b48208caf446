//! The error bodies the simulator answers with: Digdir's `ApiErrorResponse` on the
//! self-service API, OAuth2 errors on the token endpoints.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Errors of the simulator's own setup and helpers (not HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("key generation or encoding failed: {0}")]
    Key(String),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("signing a JWT failed: {0}")]
    Jwt(String),
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    #[error("login failed: {0}")]
    Login(String),
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("unexpected answer from the simulator: {0}")]
    Unexpected(String),
}

impl From<crate::jwt::CryptoError> for SimError {
    fn from(e: crate::jwt::CryptoError) -> Self {
        use crate::jwt::CryptoError as C;
        match e {
            C::Key(m) => SimError::Key(m),
            C::Certificate(m) => SimError::Certificate(m),
            C::Jwt(m) => SimError::Jwt(m),
            C::InvalidJwk(m) => SimError::InvalidJwk(m),
        }
    }
}

/// One entry of `errors[]` in Digdir's error body.
#[derive(Clone, Debug)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error of the self-service API, rendered as `ApiErrorResponse`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub description: String,
    pub fields: Vec<FieldError>,
    pub object: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            description: description.into(),
            fields: vec![],
            object: String::new(),
        }
    }
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    /// 400 naming the fields at fault.
    pub fn fields(object: &str, fields: Vec<FieldError>) -> Self {
        let description = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request".into(),
            description,
            fields,
            object: object.into(),
        }
    }
    pub fn field(object: &str, field: &str, message: impl Into<String>) -> Self {
        Self::fields(object, vec![FieldError::new(field, message)])
    }
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }
    pub fn conflict(description: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", description)
    }
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", description)
    }
    pub fn unauthorized(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    pub fn body(&self) -> Value {
        api_error_body(
            self.status,
            &self.error,
            &self.description,
            &self.object,
            &self.fields,
        )
    }
}

/// Digdir's `ApiErrorResponse` body.
pub fn api_error_body(
    status: StatusCode,
    error: &str,
    description: &str,
    object: &str,
    fields: &[FieldError],
) -> Value {
    let errors: Vec<Value> = if fields.is_empty() {
        vec![json!({
            "errorMessage": description,
            "isFieldError": false,
            "objectName": object,
            "fieldIdentifier": null,
        })]
    } else {
        fields
            .iter()
            .map(|f| {
                json!({
                    "errorMessage": f.message,
                    "isFieldError": true,
                    "objectName": object,
                    "fieldIdentifier": f.field,
                })
            })
            .collect()
    };
    json!({
        "status": status.as_u16(),
        "timestamp": jiff::Timestamp::now().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "error": error,
        "error_description": description,
        "errors": errors,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// An OAuth2 error from a token or authorization endpoint.
#[derive(Clone, Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
    pub fn grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
    pub fn request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }
    pub fn scope(description: impl Into<String>) -> Self {
        Self::new("invalid_scope", description)
    }
    pub fn client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!("{} (trace_id: {trace})", self.description),
        });
        (self.status, axum::Json(body)).into_response()
    }
}
