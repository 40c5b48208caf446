//! The tenant's identity-platform endpoints: `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/discovery/v2.0/keys` and the v2.0 token endpoint `/{tenant}/oauth2/v2.0/token`
//! (client credentials only), answering as Entra does:
//!
//! - the client authenticates with one of its client secrets, a certificate assertion (RS256 with
//!   `x5t`, PS256 with `x5t#S256`; the certificate found by thumbprint among the app's
//!   keyCredentials; `aud` = the token endpoint, or the tenant's issuer as some clients send it;
//!   `iss` = `sub` = the client id), or a federated assertion matching one of its federated identity
//!   credentials (issuer, subject, audience) signed by a trusted issuer's key;
//! - `scope` is one `<resource>/.default`, the resource named by appId or identifier URI and present
//!   in the tenant as a service principal;
//! - a token for a resource whose service principal requires assignment is issued only to clients
//!   holding an app role assignment on it, and carries the assigned roles in `roles`. Pre-authorization
//!   (`api.preAuthorizedApplications`) applies to delegated (user) flows only, so it never stands in
//!   for an assignment here.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::Inner;
use super::error::{GraphApiError, OAuthError};
use super::seed::{MICROSOFT_GRAPH_APP_ID, MICROSOFT_GRAPH_RESOURCE};
use super::state::{App, DEFAULT_ROLE_ID, State};
use crate::jwt as crypto;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Tolerance on `exp`/`nbf` of assertions (Entra allows a few minutes).
pub const CLOCK_SKEW_SECS: i64 = 300;

/// How the client proved who it is (`azpacr`/`appidacr`: 1 = secret, 2 = certificate or assertion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    Secret,
    Assertion,
}

/// Whether `tenant` (from the URL) names this tenant: its id or one of its domains.
pub fn is_tenant(state: &State, tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(&state.tenant_id)
        || state
            .tenant_domains()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(tenant))
}

fn unknown_tenant(tenant: &str) -> Response {
    OAuthError::new(
        "invalid_request",
        90002,
        format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
    )
    .into_response()
}

pub async fn openid_configuration(
    AxState(inner): AxState<Arc<Inner>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = inner.lock_state();
    if !is_tenant(&state, &tenant) {
        return unknown_tenant(&tenant);
    }
    let base = inner.base_url(&headers);
    let tid = &state.tenant_id;
    axum::Json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
            "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
    .into_response()
}

pub async fn jwks(
    AxState(inner): AxState<Arc<Inner>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = inner.lock_state();
    if !is_tenant(&state, &tenant) {
        return unknown_tenant(&tenant);
    }
    let base = inner.base_url(&headers);
    let k = &inner.signing;
    axum::Json(json!({"keys": [{
        "kty": "RSA", "use": "sig", "kid": k.x5t, "x5t": k.x5t, "n": k.key.n(), "e": k.key.e(),
        "x5c": [crypto::x5c_encode(&k.cert_der)],
        "issuer": format!("{base}/{}/v2.0", state.tenant_id),
    }]}))
    .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    AxState(inner): AxState<Arc<Inner>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let base = inner.base_url(&headers);
    match issue(&inner, &tenant, &base, &form) {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Issues a token as the endpoint would, returning the access token alone.
pub(crate) fn issue_for_tests(
    inner: &Inner,
    tenant: &str,
    base: &str,
    form: &HashMap<String, String>,
) -> Result<String, OAuthError> {
    let v = issue(inner, tenant, base, form)?;
    Ok(v["access_token"].as_str().unwrap_or_default().to_string())
}

fn issue(
    inner: &Inner,
    tenant: &str,
    base: &str,
    form: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    if !is_tenant(&state, tenant) {
        return Err(OAuthError::new(
            "invalid_request",
            90002,
            format!("Tenant '{tenant}' not found."),
        ));
    }
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    if grant_type != "client_credentials" {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            70003,
            format!(
                "The app requested an unsupported grant type '{grant_type}'; the simulator supports client_credentials."
            ),
        ));
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    if scope.is_empty() {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    }
    let mut scopes = scope.split_whitespace();
    let resource_name = match (
        scopes.next().and_then(|s| s.strip_suffix("/.default")),
        scopes.next(),
    ) {
        (Some(r), None) if !r.is_empty() => r.to_string(),
        _ => {
            return Err(OAuthError::new(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
    };

    let (client, auth) = authenticate(inner, &state, tenant, base, form, now)?;
    let tenant_id = state.tenant_id.clone();
    let Some(client_sp) = state
        .sp_by_app_id(&client.app_id)
        .filter(|s| s.visible(now))
    else {
        return Err(OAuthError::new(
            "invalid_client",
            7000229,
            format!(
                "The client application {} is missing service principal in the tenant {tenant_id}.",
                client.app_id
            ),
        ));
    };
    let client_sp_id = client_sp.id.clone();
    let Some(resource) = resolve_resource(&state, &resource_name, now) else {
        return Err(OAuthError::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource_name} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                state.tenant_name
            ),
        ));
    };
    let resource_sp = state.sp_by_app_id(&resource.app_id).cloned();
    let Some(resource_sp) = resource_sp.filter(|s| s.visible(now)) else {
        return Err(OAuthError::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource_name} was not found in the tenant named {}.",
                state.tenant_name
            ),
        ));
    };
    let assigned: Vec<String> = state
        .assignments
        .iter()
        .filter(|a| a.principal_id == client_sp_id && a.resource_id == resource_sp.id)
        .map(|a| a.app_role_id.clone())
        .collect();
    let self_token = resource.app_id == client.app_id;
    if resource_sp.assignment_required() && assigned.is_empty() && !self_token {
        return Err(OAuthError::new(
            "invalid_grant",
            501051,
            format!(
                "Application '{}'({}) is not assigned to a role for the application '{}'({}).",
                client.app_id,
                client.display_name(),
                resource.app_id,
                resource.display_name()
            ),
        ));
    }
    let roles: Vec<String> = assigned
        .iter()
        .filter(|id| id.as_str() != DEFAULT_ROLE_ID)
        .filter_map(|id| resource.enabled_role(id))
        .filter(|r| {
            r.get("allowedMemberTypes")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("Application")))
        })
        .filter_map(|r| r.get("value").and_then(Value::as_str).map(str::to_string))
        .collect();

    let lifetime = state.settings.token_lifetime_secs;
    let iat = now.as_second();
    let uti = crypto::random_token(16);
    let acr = if auth == ClientAuth::Secret { "1" } else { "2" };
    let mut claims = if resource.token_version() == 2 && resource.app_id != MICROSOFT_GRAPH_APP_ID {
        json!({
            "aud": resource.app_id, "iss": format!("{base}/{tenant_id}/v2.0"),
            "iat": iat, "nbf": iat, "exp": iat + lifetime,
            "azp": client.app_id, "azpacr": acr, "oid": client_sp_id, "sub": client_sp_id,
            "tid": tenant_id, "ver": "2.0", "idtyp": "app", "uti": uti, "rh": "0.sim",
        })
    } else {
        let aud = if resource.app_id == MICROSOFT_GRAPH_APP_ID {
            MICROSOFT_GRAPH_RESOURCE.to_string()
        } else {
            resource_name.clone()
        };
        json!({
            "aud": aud, "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": iat, "nbf": iat, "exp": iat + lifetime,
            "appid": client.app_id, "appidacr": acr, "idp": format!("https://sts.windows.net/{tenant_id}/"),
            "oid": client_sp_id, "sub": client_sp_id, "tid": tenant_id, "ver": "1.0",
            "idtyp": "app", "uti": uti, "rh": "0.sim",
        })
    };
    if !roles.is_empty()
        && let Some(map) = claims.as_object_mut()
    {
        map.insert("roles".into(), json!(roles));
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(inner.signing.x5t.clone());
    header.x5t = Some(inner.signing.x5t.clone());
    let token = inner
        .signing
        .key
        .sign_with_header(&header, &claims)
        .map_err(|e| {
            OAuthError::new("server_error", 50000, format!("signing failed: {e}"))
                .with_status(StatusCode::INTERNAL_SERVER_ERROR)
        })?;
    if state.issued_tokens.len() >= 100_000 {
        state.issued_tokens.clear();
    }
    state.issued_tokens.push(uti);
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
}

/// The app a `/.default` scope names: by appId, by identifier URI, or `api://{appId}`.
fn resolve_resource(state: &State, name: &str, now: jiff::Timestamp) -> Option<App> {
    let name = name.trim_end_matches('/');
    state
        .apps
        .values()
        .find(|a| {
            (a.foreign || a.visible(now))
                && (a.app_id.eq_ignore_ascii_case(name)
                    || a.identifier_uris()
                        .iter()
                        .any(|u| u.trim_end_matches('/').eq_ignore_ascii_case(name))
                    || name.eq_ignore_ascii_case(&format!("api://{}", a.app_id)))
        })
        .cloned()
}

fn authenticate(
    inner: &Inner,
    state: &State,
    tenant: &str,
    base: &str,
    form: &HashMap<String, String>,
    now: jiff::Timestamp,
) -> Result<(App, ClientAuth), OAuthError> {
    let client_id = form.get("client_id").map(String::as_str);
    let find_client = |id: &str| -> Result<App, OAuthError> {
        state
            .app_by_app_id(id)
            .filter(|a| !a.foreign && a.visible(now))
            .cloned()
            .ok_or_else(|| {
                OAuthError::new(
                    "unauthorized_client",
                    700016,
                    format!("Application with identifier '{id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", state.tenant_name),
                )
            })
    };
    if let Some(secret) = form.get("client_secret") {
        let Some(id) = client_id else {
            return Err(OAuthError::new(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ));
        };
        let app = find_client(id)?;
        let matching: Vec<_> = app
            .passwords
            .iter()
            .filter(|p| &p.secret == secret)
            .collect();
        if matching.iter().any(|p| p.start <= now && now < p.end) {
            return Ok((app, ClientAuth::Secret));
        }
        if !matching.is_empty() {
            return Err(OAuthError::client(
                7000222,
                format!(
                    "The provided client secret keys for app '{}' are expired.",
                    app.app_id
                ),
            ));
        }
        return Err(OAuthError::client(
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.app_id
            ),
        ));
    }
    let Some(assertion) = form.get("client_assertion") else {
        return Err(OAuthError::client(
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        ));
    };
    if form.get("client_assertion_type").map(String::as_str) != Some(CLIENT_ASSERTION_TYPE) {
        return Err(OAuthError::new(
            "invalid_request",
            7000218,
            format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}."),
        ));
    }
    let malformed = |why: String| {
        OAuthError::client(
            50027,
            format!("JWT token is invalid or malformed. [Reason - {why}]"),
        )
    };
    let header = crypto::raw_header(assertion).map_err(malformed)?;
    let claims = crypto::raw_claims(assertion).map_err(malformed)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let has_thumbprint = header.get("x5t").is_some() || header.get("x5t#S256").is_some();
    let own = client_id.is_none_or(|c| c.eq_ignore_ascii_case(&iss));
    if has_thumbprint && own && state.app_by_app_id(&iss).is_some() {
        let app = certificate_assertion(state, tenant, base, assertion, &header, &claims, now)?;
        return Ok((app, ClientAuth::Assertion));
    }
    let Some(id) = client_id else {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let app = find_client(id)?;
    federated_assertion(inner, state, &app, assertion, &header, &claims, now)?;
    Ok((app, ClientAuth::Assertion))
}

fn audiences(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

fn check_times(claims: &Value, now: i64) -> Result<(), OAuthError> {
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    let valid = exp.is_some_and(|e| now <= e + CLOCK_SKEW_SECS)
        && nbf.is_none_or(|n| n <= now + CLOCK_SKEW_SECS);
    if !valid {
        return Err(OAuthError::client(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {}, expiry time of assertion {}.",
                nbf.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                exp.map(|e| e.to_string())
                    .unwrap_or_else(|| "(none)".into())
            ),
        ));
    }
    Ok(())
}

fn certificate_assertion(
    state: &State,
    tenant: &str,
    base: &str,
    assertion: &str,
    header: &Value,
    claims: &Value,
    now: jiff::Timestamp,
) -> Result<App, OAuthError> {
    let malformed = |why: String| {
        OAuthError::client(
            50027,
            format!("JWT token is invalid or malformed. [Reason - {why}]"),
        )
    };
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => jsonwebtoken::Algorithm::RS256,
        Some("PS256") => jsonwebtoken::Algorithm::PS256,
        other => {
            return Err(malformed(format!(
                "the client assertion's alg {other:?} is not supported (RS256 with x5t, PS256 with x5t#S256)"
            )));
        }
    };
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if claims.get("sub").and_then(Value::as_str) != Some(iss) {
        return Err(malformed("sub must equal iss (the client id)".into()));
    }
    let app = state
        .app_by_app_id(iss)
        .filter(|a| !a.foreign && a.visible(now))
        .cloned()
        .ok_or_else(|| {
            OAuthError::new(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{iss}' was not found in the directory '{}'.",
                    state.tenant_name
                ),
            )
        })?;
    let mut accepted = vec![];
    let mut names = vec![state.tenant_id.clone(), tenant.to_string()];
    names.extend(state.tenant_domains());
    for t in &names {
        accepted.push(format!("{base}/{t}/oauth2/v2.0/token"));
    }
    // The issuer form, which some clients send as the audience.
    accepted.push(format!("{base}/{}/v2.0", state.tenant_id));
    let auds = audiences(claims);
    if !auds.iter().any(|a| {
        accepted
            .iter()
            .any(|x| x.eq_ignore_ascii_case(a.trim_end_matches('/')))
    }) {
        return Err(OAuthError::client(
            50027,
            format!(
                "JWT token is invalid or malformed. [Reason - the audience {auds:?} of the client assertion is not this tenant's token endpoint ({base}/{}/oauth2/v2.0/token)]",
                state.tenant_id
            ),
        ));
    }
    check_times(claims, now.as_second())?;
    let s256 = header.get("x5t#S256").and_then(Value::as_str);
    let sha1 = header.get("x5t").and_then(Value::as_str);
    let key = app.keys.iter().find(|k| {
        k.usage == "Verify"
            && match (s256, sha1) {
                (Some(t), _) => k.x5t_s256 == t,
                (None, Some(t)) => k.x5t == t,
                _ => false,
            }
    });
    let thumb = sha1
        .or(s256)
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .map(|b| b.iter().map(|x| format!("{x:02X}")).collect::<String>())
        .unwrap_or_default();
    let Some(key) = key else {
        return Err(OAuthError::client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                app.app_id
            ),
        ));
    };
    if now < key.start || now >= key.end || now < key.cert.not_before || now >= key.cert.not_after {
        return Err(OAuthError::client(
            700027,
            format!(
                "The certificate with thumbprint '{thumb}' is not within its valid time range on application '{}'.",
                app.app_id
            ),
        ));
    }
    let valid = crypto::decoding_key(&key.cert.n, &key.cert.e)
        .is_some_and(|k| crypto::verify_signature(assertion, alg, &k));
    if !valid {
        return Err(OAuthError::client(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    Ok(app)
}

fn federated_assertion(
    _inner: &Inner,
    state: &State,
    app: &App,
    assertion: &str,
    header: &Value,
    claims: &Value,
    now: jiff::Timestamp,
) -> Result<(), OAuthError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let by_issuer: Vec<_> = app.fics.iter().filter(|f| f.issuer == iss).collect();
    if by_issuer.is_empty() {
        return Err(OAuthError::new(
            "invalid_request",
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    let by_subject: Vec<_> = by_issuer.iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        return Err(OAuthError::new(
            "invalid_request",
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    let auds = audiences(claims);
    if !by_subject
        .iter()
        .any(|f| f.audiences.iter().any(|a| auds.contains(a)))
    {
        return Err(OAuthError::new(
            "invalid_request",
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience {auds:?}."
            ),
        ));
    }
    check_times(claims, now.as_second())?;
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = state.trusted_issuers.get(iss).cloned().unwrap_or_default();
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(crypto::parse_alg)
        .unwrap_or(jsonwebtoken::Algorithm::RS256);
    let valid = keys
        .iter()
        .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
        .filter_map(|k| {
            crypto::decoding_key(
                k.get("n").and_then(Value::as_str).unwrap_or_default(),
                k.get("e").and_then(Value::as_str).unwrap_or_default(),
            )
        })
        .any(|k| crypto::verify_signature(assertion, alg, &k));
    if !valid {
        return Err(OAuthError::client(
            700027,
            format!(
                "Client assertion failed signature validation: no key of issuer '{iss}' verifies it."
            ),
        ));
    }
    Ok(())
}

/// Checks a Graph bearer token: signed by this tenant, for Microsoft Graph, in its lifetime, not revoked.
pub fn check_graph_token(inner: &Inner, headers: &HeaderMap) -> Result<(), GraphApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(GraphApiError::unauthorized("Access token is empty."));
    }
    let key = crypto::decoding_key(&inner.signing.key.n(), &inner.signing.key.e());
    let signed =
        key.is_some_and(|k| crypto::verify_signature(token, jsonwebtoken::Algorithm::RS256, &k));
    if !signed {
        return Err(GraphApiError::unauthorized(
            "Access token validation failure. Invalid signature.",
        ));
    }
    let claims = crypto::raw_claims(token).map_err(GraphApiError::unauthorized)?;
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if aud != MICROSOFT_GRAPH_RESOURCE && aud != MICROSOFT_GRAPH_APP_ID {
        return Err(GraphApiError::unauthorized(
            "Access token validation failure. Invalid audience.",
        ));
    }
    let now = inner.clock.unix_seconds();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if now >= exp {
        return Err(GraphApiError::unauthorized(
            "Lifetime validation failed, the token is expired.",
        ));
    }
    let uti = claims
        .get("uti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if inner.lock_state().revoked_tokens.contains(uti) {
        return Err(GraphApiError::unauthorized(
            "Continuous access evaluation resulted in challenge: the token has been revoked.",
        ));
    }
    Ok(())
}
