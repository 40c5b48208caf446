//! The runtime endpoints apps use: metadata, JWKS, ID-porten's authorization endpoint
//! (logging in a synthetic person without a browser) and ID-porten's token endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::error::OAuthError;
use super::state::AuthCode;
use super::token::{parse_form, verify_grant};
use super::{Inner, Issuers};
use crate::jwt::{self as crypto, RsaKey};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an authorization code stays usable.
pub const CODE_LIFETIME_SECS: i64 = 60;

fn jwks_of(key: &RsaKey) -> Value {
    json!({"keys": [key.public_jwk()]})
}

pub async fn maskinporten_metadata(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
) -> Response {
    let i = inner.issuers(&headers);
    let m = &i.maskinporten;
    axum::Json(json!({
        "issuer": m,
        "token_endpoint": format!("{m}token"),
        "jwks_uri": format!("{m}jwk"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "grant_types_supported": [super::state::JWT_BEARER],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
    }))
    .into_response()
}

pub async fn maskinporten_jwks(AxState(inner): AxState<Arc<Inner>>) -> Response {
    axum::Json(jwks_of(&inner.mp_key)).into_response()
}

pub async fn idporten_metadata(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
) -> Response {
    let i = inner.issuers(&headers);
    let b = &i.idporten;
    axum::Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "jwks_uri": format!("{b}/jwks.json"),
        "userinfo_endpoint": format!("{b}/userinfo"),
        "end_session_endpoint": format!("{b}/endsession"),
        "scopes_supported": ["openid", "profile"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": ["idporten-loa-substantial", "idporten-loa-high"],
        "claims_supported": ["sub", "pid", "acr", "amr", "nonce", "locale", "sid", "auth_time"],
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
    }))
    .into_response()
}

pub async fn idporten_jwks(AxState(inner): AxState<Arc<Inner>>) -> Response {
    axum::Json(jwks_of(&inner.idp_key)).into_response()
}

/// The parameters of an authorization request.
#[derive(Clone, Debug, Default)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub acr_values: Option<String>,
    /// Simulator only: log in this person instead of the seed's `login_pid`.
    pub login_hint: Option<String>,
}

impl AuthorizeRequest {
    fn from_query(q: &HashMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).cloned();
        Self {
            client_id: get("client_id").unwrap_or_default(),
            redirect_uri: get("redirect_uri").unwrap_or_default(),
            response_type: get("response_type").unwrap_or_default(),
            scope: get("scope").unwrap_or_default(),
            state: get("state"),
            nonce: get("nonce"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
            acr_values: get("acr_values"),
            login_hint: get("login_hint"),
        }
    }
}

/// The answer to an authorization request.
#[derive(Clone, Debug)]
pub enum AuthorizeOutcome {
    /// Redirect to the client (a `code`, or an OAuth `error`): the full Location.
    Redirect {
        location: String,
        code: Option<String>,
    },
    /// The request cannot be redirected (unknown client or redirect URI): shown to the user.
    Refused(OAuthError),
}

fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// Performs the login: validates the request and, if it is good, logs in the synthetic person.
pub fn authorize(inner: &Inner, issuers: &Issuers, req: &AuthorizeRequest) -> AuthorizeOutcome {
    let now = inner.clock.unix_seconds();
    let mut state = inner.lock_state();
    let delay = state.propagation_delay;
    let Some(client) = state
        .clients
        .get(&req.client_id)
        .filter(|c| c.runtime_known(now, delay) && c.active)
        .cloned()
    else {
        return AuthorizeOutcome::Refused(OAuthError::client(format!(
            "unknown client `{}`",
            req.client_id
        )));
    };
    if !matches!(
        client.fields.integration_type.as_str(),
        "idporten" | "api_klient" | "krr"
    ) || !client
        .fields
        .grant_types
        .iter()
        .any(|g| g == "authorization_code")
    {
        return AuthorizeOutcome::Refused(OAuthError::new(
            "unauthorized_client",
            "the client is not an ID-porten login client",
        ));
    }
    if !client.fields.redirect_uris.contains(&req.redirect_uri) {
        return AuthorizeOutcome::Refused(OAuthError::request(format!(
            "redirect_uri `{}` is not registered for the client",
            req.redirect_uri
        )));
    }
    let fail = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &req.state {
            params.push(("state", s));
        }
        params.push(("iss", &issuers.idporten));
        AuthorizeOutcome::Redirect {
            location: with_params(&req.redirect_uri, &params),
            code: None,
        }
    };
    if req.response_type != "code" {
        return fail("unsupported_response_type", "response_type must be `code`");
    }
    let scopes: Vec<&str> = req.scope.split_whitespace().collect();
    if !scopes.contains(&"openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    if let Some(s) = scopes
        .iter()
        .find(|s| !client.fields.scopes.iter().any(|c| c == *s))
    {
        return fail(
            "invalid_scope",
            &format!("the client is not registered with the scope `{s}`"),
        );
    }
    let pkce_required = client.fields.code_challenge_method == "S256";
    match (&req.code_challenge, req.code_challenge_method.as_deref()) {
        (Some(_), Some("S256")) => {}
        (Some(_), Some(other)) => {
            return fail(
                "invalid_request",
                &format!("code_challenge_method `{other}` is not supported; use S256"),
            );
        }
        (Some(_), None) => {
            return fail("invalid_request", "code_challenge_method=S256 is required");
        }
        (None, _) if pkce_required => {
            return fail("invalid_request", "PKCE (code_challenge, S256) is required");
        }
        (None, _) => {}
    }
    let acr = match req.acr_values.as_deref().map(str::trim) {
        None | Some("") => "idporten-loa-substantial".to_string(),
        Some(v @ ("idporten-loa-substantial" | "idporten-loa-high")) => v.to_string(),
        Some(other) => {
            return fail(
                "invalid_request",
                &format!("acr_values `{other}` is not supported"),
            );
        }
    };
    let code = crypto::random_token(32);
    let pid = req
        .login_hint
        .clone()
        .unwrap_or_else(|| state.seed.login_pid.clone());
    state.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            nonce: req.nonce.clone(),
            scope: scopes.join(" "),
            acr,
            pid,
            expires: now + CODE_LIFETIME_SECS,
        },
    );
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        params.push(("state", s));
    }
    params.push(("iss", &issuers.idporten));
    AuthorizeOutcome::Redirect {
        location: with_params(&req.redirect_uri, &params),
        code: Some(code),
    }
}

/// `GET /idporten/authorize`: the synthetic person logs in at once; 302 to the client.
pub async fn authorize_endpoint(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q: HashMap<String, String> = raw
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let issuers = inner.issuers(&headers);
    match authorize(&inner, &issuers, &AuthorizeRequest::from_query(&q)) {
        AuthorizeOutcome::Redirect { location, .. } => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        AuthorizeOutcome::Refused(e) => e.into_response(),
    }
}

/// `POST /idporten/token`.
pub async fn idporten_token(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let issuers = inner.issuers(&headers);
    match exchange(&inner, &issuers, &headers, &body) {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| s.to_string())
    };
    Some((dec(id), dec(secret)))
}

fn exchange(
    inner: &Inner,
    issuers: &Issuers,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let form = parse_form(body);
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type `{other}` is not supported by the simulator"),
            ));
        }
        None => return Err(OAuthError::request("grant_type is required")),
    }
    let now = inner.clock.unix_seconds();
    let mut state = inner.lock_state();
    state.prune(now);
    let unauthorized = |msg: String| OAuthError::client(msg).with_status(StatusCode::UNAUTHORIZED);

    // Client authentication.
    let (client_id, amr) = if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(CLIENT_ASSERTION_TYPE) {
            return Err(OAuthError::request(format!(
                "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
            )));
        }
        let audiences = [
            issuers.idporten.clone(),
            format!("{}/token", issuers.idporten),
        ];
        let grant = verify_grant(inner, &mut state, assertion, &audiences, true)
            .map_err(|e| OAuthError::client(e.description).with_status(StatusCode::UNAUTHORIZED))?;
        if form
            .get("client_id")
            .is_some_and(|id| *id != grant.client_id)
        {
            return Err(unauthorized(
                "client_id does not match the client assertion".into(),
            ));
        }
        let method = state
            .clients
            .get(&grant.client_id)
            .map(|c| c.fields.token_endpoint_auth_method.clone())
            .unwrap_or_default();
        if method != "private_key_jwt" {
            return Err(unauthorized(format!(
                "the client is registered for {method}, not private_key_jwt"
            )));
        }
        (grant.client_id, "private_key_jwt")
    } else {
        let (id, secret, method) = match (basic_auth(headers), form.get("client_secret")) {
            (Some((id, secret)), _) => (id, Some(secret), "client_secret_basic"),
            (None, Some(secret)) => (
                form.get("client_id").cloned().unwrap_or_default(),
                Some(secret.clone()),
                "client_secret_post",
            ),
            (None, None) => (
                form.get("client_id").cloned().unwrap_or_default(),
                None,
                "none",
            ),
        };
        let Some(client) = state.clients.get(&id).filter(|c| c.active) else {
            return Err(unauthorized(format!("unknown client `{id}`")));
        };
        if client.fields.token_endpoint_auth_method != method {
            return Err(unauthorized(format!(
                "the client must authenticate with {}",
                client.fields.token_endpoint_auth_method
            )));
        }
        if secret.is_some() && client.client_secret != secret {
            return Err(unauthorized("invalid client secret".into()));
        }
        (
            id,
            if method == "none" {
                "none"
            } else {
                "client_secret"
            },
        )
    };

    let Some(code_value) = form.get("code") else {
        return Err(OAuthError::request("code is required"));
    };
    let Some(code) = state.codes.remove(code_value) else {
        return Err(OAuthError::grant(
            "the authorization code is invalid, expired or already used",
        ));
    };
    if code.client_id != client_id {
        return Err(OAuthError::grant(
            "the authorization code was issued to another client",
        ));
    }
    if code.expires <= now {
        return Err(OAuthError::grant("the authorization code has expired"));
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return Err(OAuthError::grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&code.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if crypto::s256(verifier) == *challenge => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::grant(
                "PKCE verification failed (code_verifier)",
            ));
        }
        (Some(_), None) => return Err(OAuthError::grant("code_verifier is required")),
        (None, Some(_)) => {
            return Err(OAuthError::grant(
                "code_verifier sent but no code_challenge was",
            ));
        }
        (None, None) => {}
    }
    let Some(client) = state.clients.get(&client_id).cloned() else {
        return Err(unauthorized(format!("unknown client `{client_id}`")));
    };
    let lifetime = client.fields.access_token_lifetime.max(1);
    let sub = {
        let digest = crypto::s256(&format!("{}:{}", code.pid, client.client_orgno));
        digest.chars().take(43).collect::<String>()
    };
    let sid = uuid::Uuid::new_v4().to_string();
    let id_token_claims = json!({
        "iss": issuers.idporten, "aud": client_id, "sub": sub, "pid": code.pid, "acr": code.acr,
        "amr": ["TestID"], "nonce": code.nonce, "auth_time": now, "iat": now, "exp": now + 120,
        "sid": sid, "locale": "nb", "jti": uuid::Uuid::new_v4().to_string(),
    });
    let access_claims = json!({
        "iss": issuers.idporten, "client_id": client_id, "client_amr": amr, "token_type": "Bearer",
        "scope": code.scope, "pid": code.pid, "sub": sub, "acr": code.acr, "amr": ["TestID"],
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{}", client.client_orgno)},
        "iat": now, "exp": now + lifetime, "jti": uuid::Uuid::new_v4().to_string(),
    });
    let server = |e: crate::jwt::CryptoError| {
        OAuthError::new("server_error", e.to_string())
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let id_token = inner.idp_key.sign(&id_token_claims).map_err(server)?;
    let access_token = inner.idp_key.sign(&access_claims).map_err(server)?;
    Ok(json!({
        "access_token": access_token,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": code.scope,
    }))
}
