//! Maskinporten's token endpoint, and the JWT-grant / client-assertion check it shares
//! with ID-porten's token endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::crypto;
use super::error::OAuthError;
use super::state::{IssuedToken, JWT_BEARER, State};
use super::{Inner, Issuers};

/// Allowed difference between a grant's `iat` and the simulator's clock.
pub const CLOCK_SKEW_SECS: i64 = 10;
/// Longest allowed `exp - iat` of a grant.
pub const MAX_GRANT_LIFETIME_SECS: i64 = 120;

pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A grant or client assertion that passed every check.
pub struct VerifiedGrant {
    pub client_id: String,
    pub orgno: String,
    pub claims: Value,
    /// `private_key_jwt` (registered key) or `virksomhetssertifikat` (x5c).
    pub amr: &'static str,
}

/// Verifies a JWT grant / client assertion for real: header, client, audience, times,
/// key (registered `kid` or `x5c` business certificate), signature and `jti` reuse.
pub fn verify_grant(
    inner: &Inner,
    state: &mut State,
    token: &str,
    audiences: &[String],
    require_sub: bool,
) -> Result<VerifiedGrant, OAuthError> {
    let now = inner.clock.unix_seconds();
    let delay = state.propagation_delay;
    let header = crypto::raw_header(token)
        .map_err(|e| OAuthError::grant(format!("Invalid assertion: {e}")))?;
    let claims = crypto::raw_claims(token)
        .map_err(|e| OAuthError::grant(format!("Invalid assertion: {e}")))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(alg) = crypto::parse_alg(alg_name) else {
        return Err(OAuthError::grant(format!(
            "Invalid assertion: alg `{alg_name}` is not supported (RS256, RS384, RS512)"
        )));
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(OAuthError::grant("Invalid assertion: kid must be a string")),
    };
    let x5c = match header.get("x5c") {
        None => None,
        Some(Value::Array(items)) => {
            let mut ders = vec![];
            for item in items {
                match item.as_str().and_then(crypto::x5c_entry) {
                    Some(der) => ders.push(der),
                    None => {
                        return Err(OAuthError::grant(
                            "MP-123: Invalid assertion: x5c entries must be base64 DER certificates",
                        ));
                    }
                }
            }
            Some(ders)
        }
        Some(_) => {
            return Err(OAuthError::grant(
                "MP-123: Invalid assertion: x5c must be an array of strings",
            ));
        }
    };
    if kid.is_none() && x5c.is_none() {
        return Err(OAuthError::grant(
            "Invalid assertion: the JWT header must contain kid or x5c",
        ));
    }

    let Some(iss) = claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(OAuthError::grant(
            "Invalid assertion: iss (client_id) is required",
        ));
    };
    if require_sub {
        let sub = claims.get("sub").and_then(Value::as_str);
        if sub.is_some_and(|s| s != iss) {
            return Err(OAuthError::client(
                "Invalid client assertion: sub must equal iss",
            ));
        }
    }
    let Some(client) = state
        .clients
        .get(&iss)
        .filter(|c| c.runtime_known(now, delay))
        .cloned()
    else {
        return Err(OAuthError::client(format!(
            "MP-100: client not found: {iss}"
        )));
    };

    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.iter().any(|x| x == a),
        Some(Value::Array(items)) => {
            items.len() == 1
                && items[0]
                    .as_str()
                    .is_some_and(|a| audiences.iter().any(|x| x == a))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthError::grant(format!(
            "MP-110: Invalid assertion: invalid audience, expected `{}`",
            audiences.first().cloned().unwrap_or_default()
        )));
    }

    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    let Some(iat) = int("iat") else {
        return Err(OAuthError::grant("Invalid assertion: iat is required"));
    };
    let Some(exp) = int("exp") else {
        return Err(OAuthError::grant("Invalid assertion: exp is required"));
    };
    if iat > now + CLOCK_SKEW_SECS {
        return Err(OAuthError::grant(
            "Invalid assertion: Issue time is after now",
        ));
    }
    if iat < now - CLOCK_SKEW_SECS {
        return Err(OAuthError::grant(format!(
            "Invalid assertion: iat must be within {CLOCK_SKEW_SECS} s of the server's time"
        )));
    }
    if exp - iat > MAX_GRANT_LIFETIME_SECS {
        return Err(OAuthError::grant(format!(
            "Invalid assertion: lifetime (exp - iat) {} s exceeds {MAX_GRANT_LIFETIME_SECS} s",
            exp - iat
        )));
    }
    if exp + CLOCK_SKEW_SECS < now {
        return Err(OAuthError::grant(
            "MP-130: Invalid assertion: the JWT is expired",
        ));
    }
    if let Some(nbf) = int("nbf")
        && nbf > now + CLOCK_SKEW_SECS
    {
        return Err(OAuthError::grant(
            "Invalid assertion: the JWT is not valid yet (nbf)",
        ));
    }

    let current = client
        .jwks
        .as_ref()
        .map(|j| j.keys.as_slice())
        .unwrap_or_default();
    let (key, amr) = if let Some(chain) = &x5c {
        let verified = crypto::verify_chain(chain, &inner.ca.cert_der, now).map_err(|e| {
            OAuthError::grant(format!("Invalid assertion: invalid certificate: {e}"))
        })?;
        if verified.orgno.as_deref() != Some(client.client_orgno.as_str()) {
            return Err(OAuthError::grant(
                "MP-122: the organisation number in the certificate does not match the client's owner",
            ));
        }
        if !current.is_empty() {
            let leaf = chain
                .first()
                .map(|d| crypto::x5c_encode(d))
                .unwrap_or_default();
            let locked = current.iter().any(|k| {
                k.x5c
                    .as_ref()
                    .and_then(|x| x.first())
                    .is_some_and(|c| *c == leaf)
            });
            if !locked {
                return Err(OAuthError::grant(
                    "Invalid assertion: the client has registered keys and must use kid, not x5c",
                ));
            }
        }
        (
            jsonwebtoken::DecodingKey::from_rsa_raw_components(&verified.n, &verified.e),
            "virksomhetssertifikat",
        )
    } else {
        let kid = kid.clone().unwrap_or_default();
        let found = current
            .iter()
            .find(|k| k.kid == kid && k.posted.as_second() + delay <= now)
            .or_else(|| {
                client
                    .retired
                    .iter()
                    .find(|(k, removed)| k.kid == kid && removed.as_second() + delay > now)
                    .map(|(k, _)| k)
            });
        let Some(jwk) = found else {
            return Err(OAuthError::grant(
                "Invalid assertion. Client authentication failed. Unknown key identifier (kid) for client.",
            ));
        };
        if jwk.exp <= now {
            return Err(OAuthError::grant(
                "MP-121: Invalid assertion: the client's key has expired",
            ));
        }
        let Some(key) = crypto::decoding_key(&jwk.n, &jwk.e) else {
            return Err(OAuthError::grant(
                "Invalid assertion: the registered key is unusable",
            ));
        };
        (key, "private_key_jwt")
    };
    if !crypto::verify_signature(token, alg, &key) {
        return Err(OAuthError::grant(
            "Invalid assertion. Client authentication failed. Signature verification failed.",
        ));
    }

    let replay_key = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) => format!("{iss}\0{jti}"),
        None => format!("{iss}\0#{}", crypto::s256(token)),
    };
    if state.used_grants.contains_key(&replay_key) {
        return Err(OAuthError::grant(
            "MP-012: Invalid assertion: Grant is used before",
        ));
    }
    state.used_grants.insert(replay_key, exp);

    Ok(VerifiedGrant {
        client_id: iss,
        orgno: client.client_orgno.clone(),
        claims,
        amr,
    })
}

fn party(orgno: &str) -> Value {
    json!({"authority": "iso6523-actorid-upis", "ID": format!("0192:{orgno}")})
}

/// `POST /maskinporten/token`.
pub async fn maskinporten_token(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let issuers = inner.issuers(&headers);
    match issue(&inner, &issuers, &body) {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn issue(inner: &Inner, issuers: &Issuers, body: &[u8]) -> Result<Value, OAuthError> {
    let form = parse_form(body);
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type `{other}` is not supported; use {JWT_BEARER}"),
            ));
        }
        None => return Err(OAuthError::request("grant_type is required")),
    }
    let Some(assertion) = form.get("assertion").filter(|a| !a.is_empty()) else {
        return Err(OAuthError::request("assertion is required"));
    };
    let now = inner.clock.unix_seconds();
    let mut state = inner.lock_state();
    state.prune(now);
    let grant = verify_grant(
        inner,
        &mut state,
        assertion,
        std::slice::from_ref(&issuers.maskinporten),
        false,
    )?;
    let Some(client) = state.clients.get(&grant.client_id).cloned() else {
        return Err(OAuthError::client("client not found"));
    };
    if !client.hidden && !client.is_maskinporten() {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!(
                "client with integration type `{}` may not use the jwt-bearer grant",
                client.fields.integration_type
            ),
        ));
    }
    let requested: Vec<String> = match grant.claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => vec![],
    };
    if requested.is_empty() {
        return Err(OAuthError::scope("scope is required"));
    }
    let consumer_org = grant.claims.get("consumer_org").and_then(Value::as_str);
    if consumer_org.is_some() && grant.claims.get("iss_onbehalfof").is_some() {
        return Err(OAuthError::request(
            "consumer_org and iss_onbehalfof are mutually exclusive",
        ));
    }
    if consumer_org == Some(grant.orgno.as_str()) {
        return Err(OAuthError::request(
            "consumer_org must not be the client's own organisation",
        ));
    }

    let mut lifetime = if client.hidden {
        state.seed.admin_access_token_lifetime
    } else {
        client.fields.access_token_lifetime
    };
    let mut delegation_source = None;
    if client.hidden {
        for s in &requested {
            if !state.seed.admin_scopes.contains(s) {
                return Err(OAuthError::scope(format!(
                    "MP-200: the client is not allowed the scope `{s}`"
                )));
            }
        }
    } else {
        for s in &requested {
            let Some(scope) = state.scopes.get(s).filter(|sc| sc.active) else {
                return Err(OAuthError::scope(format!(
                    "MP-200: `{s}` is not a valid scope"
                )));
            };
            if !scope.accessible_for_all && !client.fields.scopes.contains(s) {
                return Err(OAuthError::scope(format!(
                    "MP-200: the client is not registered with the scope `{s}`"
                )));
            }
            if !scope.allowed_integration_types.is_empty()
                && !scope
                    .allowed_integration_types
                    .contains(&client.fields.integration_type)
            {
                return Err(OAuthError::scope(format!(
                    "MP-201: the scope `{s}` does not allow integration type `{}`",
                    client.fields.integration_type
                )));
            }
            let consumer = consumer_org.unwrap_or(&grant.orgno);
            if let Some(consumer) = consumer_org {
                let Some(source) = &scope.delegation_source else {
                    return Err(OAuthError::scope(format!(
                        "the scope `{s}` has no delegation source and cannot be used with consumer_org"
                    )));
                };
                if !state.delegated(consumer, &grant.orgno, s) {
                    return Err(OAuthError::grant(format!(
                        "MP-251: {consumer} has not delegated `{s}` to {} in Altinn",
                        grant.orgno
                    )));
                }
                delegation_source = Some(source.clone());
            }
            if !state.org_may_use(consumer, scope) {
                return Err(OAuthError::scope(format!(
                    "MP-250: organisation {consumer} has not been granted access to `{s}`"
                )));
            }
            if let Some(max) = scope.at_max_age {
                lifetime = lifetime.min(max);
            }
        }
    }

    let aud = match grant.claims.get("resource") {
        Some(Value::Array(items)) if items.len() == 1 => items[0].clone(),
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items.clone()),
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::String("unspecified".into()),
    };
    let scope = requested.join(" ");
    let mut claims = json!({
        "iss": issuers.maskinporten,
        "client_amr": grant.amr,
        "token_type": "Bearer",
        "client_id": grant.client_id,
        "aud": aud,
        "scope": scope,
        "client_orgno": grant.orgno,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(map) = claims.as_object_mut() {
        match consumer_org {
            Some(consumer) => {
                map.insert("consumer".into(), party(consumer));
                map.insert("supplier".into(), party(&grant.orgno));
                if let Some(source) = delegation_source {
                    map.insert("delegation_source".into(), source.into());
                }
            }
            None => {
                map.insert("consumer".into(), party(&grant.orgno));
            }
        }
    }
    let token = inner.mp_key.sign(&claims).map_err(|e| {
        OAuthError::new("server_error", e.to_string())
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    })?;
    state.tokens.insert(
        token.clone(),
        IssuedToken {
            orgno: grant.orgno.clone(),
            scopes: requested.clone(),
            exp: now + lifetime,
        },
    );
    Ok(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
    }))
}
