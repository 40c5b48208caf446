//! The self-service API under `/api/v1`: clients, client key sets, scopes and accesses.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::Inner;
use super::error::{ApiError, FieldError};
use super::state::{
    Client, ClientJwks, IssuedToken, KEY_LIFETIME_SECS, Scope, ScopeAccess, State, StoredJwk,
    parse_client, parse_jwks,
};

type ApiResult = Result<Response, ApiError>;

const READ: &[&str] = &["idporten:dcr.read"];
const CREATE: &[&str] = &["idporten:dcr.write"];
const MODIFY: &[&str] = &["idporten:dcr.write", "idporten:dcr.modify"];
const SCOPES_READ: &[&str] = &["idporten:scopes.read", "idporten:scopes.write"];
const SCOPES_WRITE: &[&str] = &["idporten:scopes.write"];

pub fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/clients", get(list_clients).post(create_client))
        .route(
            "/clients/{id}",
            get(get_client).put(update_client).delete(delete_client),
        )
        .route("/clients/{id}/secret", post(new_secret))
        .route(
            "/clients/{id}/jwks",
            get(get_jwks)
                .post(post_jwks)
                .put(post_jwks)
                .delete(delete_jwks),
        )
        .route(
            "/scopes",
            get(list_scopes)
                .post(create_scope)
                .put(update_scope)
                .delete(delete_scope),
        )
        .route("/scopes/scope", get(get_scope))
        .route("/scopes/all", get(public_scopes))
        .route("/scopes/access", get(list_access))
        .route("/scopes/access/all", get(my_accesses))
        .route(
            "/scopes/access/{orgno}",
            put(grant_access).delete(revoke_access),
        )
        .route("/prefix", get(my_prefixes))
        .route("/delegationsources", get(delegation_sources))
        .route("/organizations/{orgno}", get(organisation))
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn query(raw: &Option<String>) -> HashMap<String, String> {
    raw.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("a JSON request body is required"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Checks the bearer token and that it carries one of `scopes`.
fn authorize(inner: &Inner, headers: &HeaderMap, scopes: &[&str]) -> Result<IssuedToken, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "a Maskinporten bearer token is required",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let now = inner.clock.unix_seconds();
    let state = inner.lock_state();
    let Some(issued) = state.tokens.get(token).cloned() else {
        return Err(ApiError::unauthorized("the access token is not valid"));
    };
    if issued.exp <= now {
        return Err(ApiError::unauthorized("the access token has expired"));
    }
    if !scopes.iter().any(|s| issued.scopes.iter().any(|t| t == s)) {
        return Err(ApiError::forbidden(format!(
            "the access token lacks the scope {}",
            scopes.join(" or ")
        )));
    }
    Ok(issued)
}

/// The client `id` as the token's organisation may see it.
fn owned_client<'a>(state: &'a mut State, id: &str, org: &str) -> Result<&'a mut Client, ApiError> {
    match state.clients.get_mut(id) {
        Some(c) if c.hidden => Err(ApiError::forbidden(format!(
            "client {id} is managed by Digdir"
        ))),
        Some(c) if c.client_orgno != org => Err(ApiError::forbidden(format!(
            "client {id} does not belong to organisation {org}"
        ))),
        Some(c) => Ok(c),
        None => Err(ApiError::not_found(format!("client {id} not found"))),
    }
}

fn new_secret_value() -> String {
    crate::jwt::random_token(48)
}

fn uses_secret(method: &str) -> bool {
    method.starts_with("client_secret_")
}

async fn list_clients(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, READ)?;
    let inactive = flag(&query(&raw), "inactive");
    let state = inner.lock_state();
    let mut clients: Vec<&Client> = state
        .clients
        .values()
        .filter(|c| !c.hidden && c.client_orgno == token.orgno && (c.active || inactive))
        .collect();
    clients.sort_by_key(|c| c.created);
    Ok(ok(Value::Array(
        clients.iter().map(|c| c.render(false)).collect(),
    )))
}

async fn get_client(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let token = authorize(&inner, &headers, READ)?;
    let mut state = inner.lock_state();
    Ok(ok(
        owned_client(&mut state, &id, &token.orgno)?.render(false)
    ))
}

async fn create_client(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let token = authorize(&inner, &headers, CREATE)?;
    let body = json_body(&body)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let fields = parse_client(&body, None, &state)?;
    let orgno = match body.get("client_orgno").and_then(Value::as_str) {
        Some(o) if o != token.orgno => {
            if !token.scopes.iter().any(|s| s == "idporten:dcr.supplier") {
                return Err(ApiError::forbidden(format!(
                    "only a supplier (idporten:dcr.supplier) may create clients for organisation {o}"
                )));
            }
            o.to_string()
        }
        _ => token.orgno.clone(),
    };
    let client_id = match body.get("client_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => {
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            {
                return Err(ApiError::field(
                    "client",
                    "client_id",
                    "contains characters that are not allowed",
                ));
            }
            if state.clients.contains_key(id) {
                return Err(ApiError::conflict(format!(
                    "a client with client_id {id} already exists (deactivated clients are not reactivated by POST)"
                )));
            }
            id.to_string()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let client_secret = uses_secret(&fields.token_endpoint_auth_method).then(new_secret_value);
    let client = Client {
        client_id: client_id.clone(),
        hidden: false,
        fields,
        client_orgno: orgno,
        active: true,
        created: now,
        last_updated: now,
        deactivated: None,
        client_secret,
        jwks: None,
        retired: vec![],
    };
    let rendered = client.render(true);
    state.clients.insert(client_id, client);
    Ok(ok(rendered))
}

async fn update_client(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let token = authorize(&inner, &headers, MODIFY)?;
    let body = json_body(&body)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let existing = owned_client(&mut state, &id, &token.orgno)?.clone();
    if !existing.active {
        return Err(ApiError::conflict(format!("client {id} is deactivated")));
    }
    if let Some(body_id) = body.get("client_id").and_then(Value::as_str)
        && body_id != id
    {
        return Err(ApiError::field(
            "client",
            "client_id",
            format!("`{body_id}` does not match the client in the path ({id})"),
        ));
    }
    if let Some(o) = body.get("client_orgno").and_then(Value::as_str)
        && o != existing.client_orgno
    {
        return Err(ApiError::field(
            "client",
            "client_orgno",
            "the owner cannot be changed",
        ));
    }
    let fields = parse_client(&body, Some(&existing), &state)?;
    let client = owned_client(&mut state, &id, &token.orgno)?;
    if !uses_secret(&fields.token_endpoint_auth_method) {
        client.client_secret = None;
    } else if client.client_secret.is_none() {
        client.client_secret = Some(new_secret_value());
    }
    client.fields = fields;
    client.last_updated = now;
    Ok(ok(client.render(false)))
}

async fn delete_client(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let token = authorize(&inner, &headers, CREATE)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let client = owned_client(&mut state, &id, &token.orgno)?;
    if client.active {
        client.active = false;
        client.deactivated = Some(now);
        client.last_updated = now;
    }
    Ok(StatusCode::OK.into_response())
}

async fn new_secret(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let token = authorize(&inner, &headers, MODIFY)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let client = owned_client(&mut state, &id, &token.orgno)?;
    if !client.active {
        return Err(ApiError::conflict(format!("client {id} is deactivated")));
    }
    if !uses_secret(&client.fields.token_endpoint_auth_method) {
        return Err(ApiError::bad_request(
            "the client does not use a client secret (token_endpoint_auth_method)",
        ));
    }
    client.client_secret = Some(new_secret_value());
    client.last_updated = now;
    Ok(ok(client.render(true)))
}

async fn get_jwks(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let token = authorize(&inner, &headers, READ)?;
    let mut state = inner.lock_state();
    let client = owned_client(&mut state, &id, &token.orgno)?;
    client
        .render_jwks()
        .map(ok)
        .ok_or_else(|| ApiError::not_found(format!("client {id} has no registered keys")))
}

async fn post_jwks(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let token = authorize(&inner, &headers, MODIFY)?;
    let body = json_body(&body)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let active = owned_client(&mut state, &id, &token.orgno)?.active;
    if !active {
        return Err(ApiError::conflict(format!("client {id} is deactivated")));
    }
    let posted = parse_jwks(&body, &id, &state)?;
    let client = owned_client(&mut state, &id, &token.orgno)?;
    let old = client.jwks.take();
    let old_keys = old.as_ref().map(|j| j.keys.clone()).unwrap_or_default();
    let exp = now.as_second() + KEY_LIFETIME_SECS;
    let mut keys = vec![];
    for (kid, alg, n, e, x5c) in posted {
        let same = old_keys
            .iter()
            .find(|k| k.kid == kid && k.n == n && k.e == e)
            .or_else(|| {
                client
                    .retired
                    .iter()
                    .map(|(k, _)| k)
                    .find(|k| k.kid == kid && k.n == n && k.e == e)
            });
        // Re-posting a key renews its expiry; a key the runtime already knows stays known.
        let (created, known) = match same {
            Some(k) => (k.created, k.posted),
            None => (now, now),
        };
        keys.push(StoredJwk {
            kid,
            alg,
            n,
            e,
            x5c,
            exp,
            created,
            last_updated: now,
            posted: known,
        });
    }
    client
        .retired
        .retain(|(k, _)| !keys.iter().any(|n| n.kid == k.kid));
    for k in old_keys {
        if !keys.iter().any(|n| n.kid == k.kid && n.n == k.n) {
            client.retired.push((k, now));
        }
    }
    client.jwks = Some(ClientJwks {
        keys,
        created: old.map(|o| o.created).unwrap_or(now),
        last_updated: now,
    });
    client.last_updated = now;
    Ok(ok(client.render_jwks().unwrap_or(Value::Null)))
}

async fn delete_jwks(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let token = authorize(&inner, &headers, MODIFY)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let client = owned_client(&mut state, &id, &token.orgno)?;
    if let Some(old) = client.jwks.take() {
        for k in old.keys {
            client.retired.push((k, now));
        }
    }
    client.last_updated = now;
    Ok(StatusCode::OK.into_response())
}

// ---- scopes ----

fn scope_param(q: &HashMap<String, String>) -> Result<String, ApiError> {
    q.get("scope")
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the query parameter `scope` is required"))
}

fn visible_to(state: &State, scope: &Scope, org: &str) -> bool {
    scope.owner_orgno == org
        || scope.visibility == "PUBLIC"
        || state
            .accesses
            .iter()
            .any(|a| a.active && a.consumer_orgno == org && a.scope == scope.name())
}

async fn list_scopes(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_READ)?;
    let q = query(&raw);
    let state = inner.lock_state();
    if let Some(name) = q.get("scope") {
        return single_scope(&state, name, &token.orgno);
    }
    let inactive = flag(&q, "inactive");
    let list: Vec<Value> = state
        .scopes
        .values()
        .filter(|s| s.owner_orgno == token.orgno && (s.active || inactive))
        .map(Scope::render)
        .collect();
    Ok(ok(Value::Array(list)))
}

fn single_scope(state: &State, name: &str, org: &str) -> ApiResult {
    match state.scopes.get(name) {
        Some(s) if visible_to(state, s, org) => Ok(ok(s.render())),
        _ => Err(ApiError::not_found(format!("scope `{name}` not found"))),
    }
}

async fn get_scope(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_READ)?;
    let name = scope_param(&query(&raw))?;
    let state = inner.lock_state();
    single_scope(&state, &name, &token.orgno)
}

async fn public_scopes(AxState(inner): AxState<Arc<Inner>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = query(&raw);
    let inactive = flag(&q, "inactive");
    let state = inner.lock_state();
    let list: Vec<Value> = state
        .scopes
        .values()
        .filter(|s| s.visibility == "PUBLIC" && (s.active || inactive))
        .filter(|s| q.get("prefix").is_none_or(|p| *p == s.prefix))
        .filter(|s| {
            q.get("accessible_for_all")
                .is_none_or(|v| v.eq_ignore_ascii_case(&s.accessible_for_all.to_string()))
        })
        .filter(|s| {
            q.get("integration_type").is_none_or(|t| {
                s.allowed_integration_types.is_empty() || s.allowed_integration_types.contains(t)
            })
        })
        .map(Scope::render)
        .collect();
    Ok(ok(Value::Array(list)))
}

/// Applies the settable scope fields of `body` onto `scope`.
fn apply_scope_fields(state: &State, scope: &mut Scope, body: &Value, errs: &mut Vec<FieldError>) {
    let Some(map) = body.as_object() else {
        errs.push(FieldError::new("scope", "the body must be a JSON object"));
        return;
    };
    let s = |name: &str, errs: &mut Vec<FieldError>| match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => {
            errs.push(FieldError::new(name, "must be a string"));
            None
        }
    };
    let b = |name: &str, errs: &mut Vec<FieldError>| match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(v)) => Some(*v),
        Some(_) => {
            errs.push(FieldError::new(name, "must be a boolean"));
            None
        }
    };
    let i = |name: &str, errs: &mut Vec<FieldError>| match map.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => {
                errs.push(FieldError::new(name, "must be a non-negative integer"));
                None
            }
        },
    };
    if let Some(d) = s("description", errs) {
        scope.description = d;
    }
    if let Some(d) = s("long_description", errs) {
        scope.long_description = Some(d);
    }
    if let Some(v) = s("visibility", errs) {
        if matches!(v.as_str(), "PUBLIC" | "PRIVATE") {
            scope.visibility = v;
        } else {
            errs.push(FieldError::new("visibility", "must be PUBLIC or PRIVATE"));
        }
    }
    if let Some(v) = s("token_type", errs) {
        if matches!(v.as_str(), "SELF_CONTAINED" | "OPAQUE") {
            scope.token_type = v;
        } else {
            errs.push(FieldError::new(
                "token_type",
                "must be SELF_CONTAINED or OPAQUE",
            ));
        }
    }
    match s("delegation_source", errs) {
        Some(d) if d.is_empty() => scope.delegation_source = None,
        Some(d) => {
            if state.seed.delegation_sources.iter().any(|x| x.issuer == d) {
                scope.delegation_source = Some(d);
            } else {
                errs.push(FieldError::new(
                    "delegation_source",
                    format!("`{d}` is not the issuer of a known delegation source"),
                ));
            }
        }
        None => {}
    }
    if let Some(v) = s("enforced_aud_for_access_token", errs) {
        scope.enforced_aud_for_access_token = Some(v).filter(|v| !v.is_empty());
    }
    if let Some(v) = b("accessible_for_all", errs) {
        scope.accessible_for_all = v;
    }
    if let Some(v) = b("active", errs) {
        scope.active = v;
    }
    for (name, slot) in [
        ("requires_user_consent", &mut scope.requires_user_consent),
        (
            "requires_user_authentication",
            &mut scope.requires_user_authentication,
        ),
        (
            "requires_pseudonymous_tokens",
            &mut scope.requires_pseudonymous_tokens,
        ),
    ] {
        if let Some(v) = b(name, errs) {
            *slot = v;
        }
    }
    if let Some(v) = i("at_max_age", errs) {
        scope.at_max_age = Some(v);
    }
    if let Some(v) = i("authorization_max_lifetime", errs) {
        scope.authorization_max_lifetime = Some(v).filter(|v| *v > 0);
    }
    match map.get("allowed_integration_types") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut out = vec![];
            for (n, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(
                        t @ ("maskinporten" | "idporten" | "api_klient" | "krr" | "ansattporten"),
                    ) => out.push(t.to_string()),
                    _ => errs.push(FieldError::new(
                        format!("allowed_integration_types[{n}]"),
                        "is not a known integration type",
                    )),
                }
            }
            scope.allowed_integration_types = out;
        }
        Some(_) => errs.push(FieldError::new(
            "allowed_integration_types",
            "must be an array",
        )),
    }
}

async fn create_scope(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_WRITE)?;
    let body = json_body(&body)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let text = |n: &str| {
        body.get(n)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (prefix, subscope) = (text("prefix"), text("subscope"));
    let mut errs = vec![];
    if prefix.is_empty() {
        errs.push(FieldError::new("prefix", "is required"));
    }
    if subscope.is_empty() {
        errs.push(FieldError::new("subscope", "is required"));
    } else if !subscope
        .chars()
        .all(|c| c.is_lowercase() || c.is_ascii_digit() || matches!(c, '/' | '.' | ':' | '_' | '-'))
    {
        errs.push(FieldError::new(
            "subscope",
            "contains characters that are not allowed",
        ));
    }
    if text("description").is_empty() {
        errs.push(FieldError::new("description", "is required"));
    }
    if !errs.is_empty() {
        return Err(ApiError::fields("scope", errs));
    }
    if !state
        .seed
        .prefixes
        .iter()
        .any(|(p, owner)| *p == prefix && *owner == token.orgno)
    {
        return Err(ApiError::forbidden(format!(
            "the prefix `{prefix}` is not assigned to organisation {}",
            token.orgno
        )));
    }
    let name = format!("{prefix}:{subscope}");
    if let Some(existing) = state.scopes.get(&name) {
        return Err(ApiError::conflict(if existing.active {
            format!("scope `{name}` already exists")
        } else {
            format!("scope `{name}` exists but is deactivated; reactivate it with PUT")
        }));
    }
    let mut scope = Scope::new(prefix, subscope, token.orgno.clone(), now);
    apply_scope_fields(&state, &mut scope, &body, &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::fields("scope", errs));
    }
    let rendered = scope.render();
    state.scopes.insert(name, scope);
    Ok(ok(rendered))
}

fn owned_scope<'a>(state: &'a mut State, name: &str, org: &str) -> Result<&'a mut Scope, ApiError> {
    match state.scopes.get_mut(name) {
        Some(s) if s.owner_orgno == org => Ok(s),
        Some(_) => Err(ApiError::forbidden(format!(
            "scope `{name}` is not owned by organisation {org}"
        ))),
        None => Err(ApiError::not_found(format!("scope `{name}` not found"))),
    }
}

async fn update_scope(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_WRITE)?;
    let name = scope_param(&query(&raw))?;
    let body = json_body(&body)?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let existing = owned_scope(&mut state, &name, &token.orgno)?.clone();
    let mut errs = vec![];
    for (field, current) in [
        ("prefix", &existing.prefix),
        ("subscope", &existing.subscope),
    ] {
        if let Some(v) = body.get(field).and_then(Value::as_str)
            && !v.is_empty()
            && v != current
        {
            errs.push(FieldError::new(field, "the scope name cannot be changed"));
        }
    }
    if body
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.push(FieldError::new("description", "is required"));
    }
    // The whole object is replaced (as for clients: GET, modify, PUT it back); only the name, the
    // owner and the active state (unless the body sets it) stay.
    let mut scope = Scope::new(
        existing.prefix.clone(),
        existing.subscope.clone(),
        existing.owner_orgno.clone(),
        existing.created,
    );
    scope.active = existing.active;
    apply_scope_fields(&state, &mut scope, &body, &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::fields("scope", errs));
    }
    scope.last_updated = now;
    let rendered = scope.render();
    state.scopes.insert(name, scope);
    Ok(ok(rendered))
}

async fn delete_scope(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_WRITE)?;
    let name = scope_param(&query(&raw))?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    let scope = owned_scope(&mut state, &name, &token.orgno)?;
    scope.active = false;
    scope.last_updated = now;
    Ok(ok(scope.render()))
}

async fn list_access(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_READ)?;
    let q = query(&raw);
    let name = scope_param(&q)?;
    let inactive = flag(&q, "inactive");
    let mut state = inner.lock_state();
    owned_scope(&mut state, &name, &token.orgno)?;
    let list: Vec<Value> = state
        .accesses
        .iter()
        .filter(|a| a.scope == name && (a.active || inactive))
        .filter(|a| {
            q.get("consumer_orgno")
                .is_none_or(|c| *c == a.consumer_orgno)
        })
        .map(|a| a.render(&state.seed))
        .collect();
    Ok(ok(Value::Array(list)))
}

async fn my_accesses(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_READ)?;
    let inactive = flag(&query(&raw), "inactive");
    let state = inner.lock_state();
    let list: Vec<Value> = state
        .accesses
        .iter()
        .filter(|a| a.consumer_orgno == token.orgno && (a.active || inactive))
        .map(|a| a.render(&state.seed))
        .collect();
    Ok(ok(Value::Array(list)))
}

async fn grant_access(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(orgno): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_WRITE)?;
    let name = scope_param(&query(&raw))?;
    let now = inner.clock.now();
    let mut state = inner.lock_state();
    owned_scope(&mut state, &name, &token.orgno)?;
    if orgno.len() != 9
        || !orgno.chars().all(|c| c.is_ascii_digit())
        || state.seed.org_name(&orgno).is_none()
    {
        return Err(ApiError::field(
            "scope_access",
            "consumer_orgno",
            format!("`{orgno}` is not a known organisation number"),
        ));
    }
    let owner = token.orgno.clone();
    let entry = match state
        .accesses
        .iter()
        .position(|a| a.scope == name && a.consumer_orgno == orgno)
    {
        Some(i) => {
            let a = &mut state.accesses[i];
            a.state = "APPROVED".into();
            a.active = true;
            a.last_updated = now;
            a.grants += 1;
            a.clone()
        }
        None => {
            let a = ScopeAccess {
                scope: name,
                consumer_orgno: orgno,
                owner_orgno: owner,
                state: "APPROVED".into(),
                active: true,
                created: now,
                last_updated: now,
                grants: 1,
            };
            state.accesses.push(a.clone());
            a
        }
    };
    Ok(ok(entry.render(&state.seed)))
}

async fn revoke_access(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    Path(orgno): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_WRITE)?;
    let name = scope_param(&query(&raw))?;
    let now: Timestamp = inner.clock.now();
    let mut state = inner.lock_state();
    owned_scope(&mut state, &name, &token.orgno)?;
    let Some(a) = state
        .accesses
        .iter_mut()
        .find(|a| a.scope == name && a.consumer_orgno == orgno && a.active)
    else {
        return Err(ApiError::not_found(format!(
            "organisation {orgno} has no access to `{name}`"
        )));
    };
    a.active = false;
    a.last_updated = now;
    let a = a.clone();
    Ok(ok(a.render(&state.seed)))
}

async fn my_prefixes(AxState(inner): AxState<Arc<Inner>>, headers: HeaderMap) -> ApiResult {
    let token = authorize(&inner, &headers, SCOPES_READ)?;
    let state = inner.lock_state();
    let list: Vec<Value> = state
        .seed
        .prefixes
        .iter()
        .filter(|(_, owner)| *owner == token.orgno)
        .map(|(p, owner)| json!({"prefix": p, "owner_orgno": owner}))
        .collect();
    Ok(ok(Value::Array(list)))
}

/// `GET /delegationsources`, served under `/api/v1` (as digdirator reads it) and at the root (as
/// Digdir documents it). Public: a token is neither needed nor checked.
pub(super) async fn delegation_sources(AxState(inner): AxState<Arc<Inner>>) -> ApiResult {
    let state = inner.lock_state();
    let list: Vec<Value> = state
        .seed
        .delegation_sources
        .iter()
        .map(|d| json!({"name": d.name, "issuer": d.issuer, "created": "2020-01-01T00:00:00Z", "last_updated": "2020-01-01T00:00:00Z"}))
        .collect();
    Ok(ok(Value::Array(list)))
}

async fn organisation(AxState(inner): AxState<Arc<Inner>>, Path(orgno): Path<String>) -> ApiResult {
    let state = inner.lock_state();
    match state.seed.org_name(&orgno) {
        Some(name) => Ok(ok(json!({"orgno": orgno, "name": name}))),
        None => Err(ApiError::not_found(format!(
            "organisation {orgno} not found"
        ))),
    }
}
