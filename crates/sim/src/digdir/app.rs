//! What an app does with its credentials, against the simulator or real Digdir: get a
//! Maskinporten token with its private JWK, and complete an ID-porten login
//! (authorization code + PKCE, `private_key_jwt`). Used by tests and `portvakt demo`.

use serde_json::{Value, json};

use super::ProviderUrls;
use super::error::SimError;
use super::oidc::CLIENT_ASSERTION_TYPE;
use super::state::JWT_BEARER;
use crate::jwt::{self as crypto, RsaKey};
use portvakt_clock::Clock;

fn http_client() -> Result<reqwest::Client, SimError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SimError::Http(e.to_string()))
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> Result<(u16, Value), SimError> {
    let response = http_client()?
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| SimError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| SimError::Unexpected(e.to_string()))?;
    Ok((status, body))
}

/// A JWT grant / client assertion signed with `jwk` (`kid` from the JWK in the header).
pub fn sign_assertion(jwk: &Value, claims: &Value) -> Result<String, SimError> {
    Ok(RsaKey::from_private_jwk(jwk)?.sign(claims)?)
}

/// Gets a Maskinporten token for `client_id` with its private JWK. Returns the token
/// response (`access_token`, `token_type`, `expires_in`, `scope`).
pub async fn maskinporten_token(
    maskinporten: &ProviderUrls,
    client_id: &str,
    jwk: &Value,
    scopes: &str,
    clock: &Clock,
) -> Result<Value, SimError> {
    token_request(maskinporten, client_id, jwk, scopes, None, clock).await
}

/// Gets a Maskinporten token as a supplier acting for `consumer_org`, which delegated the scope to
/// the supplier in Altinn: the grant carries `consumer_org`, and the token names `consumer`,
/// `supplier` and `delegation_source`.
pub async fn maskinporten_token_for_consumer(
    maskinporten: &ProviderUrls,
    client_id: &str,
    jwk: &Value,
    scopes: &str,
    consumer_org: &str,
    clock: &Clock,
) -> Result<Value, SimError> {
    token_request(
        maskinporten,
        client_id,
        jwk,
        scopes,
        Some(consumer_org),
        clock,
    )
    .await
}

async fn token_request(
    maskinporten: &ProviderUrls,
    client_id: &str,
    jwk: &Value,
    scopes: &str,
    consumer_org: Option<&str>,
    clock: &Clock,
) -> Result<Value, SimError> {
    let now = clock.unix_seconds();
    let mut claims = json!({
        "iss": client_id, "aud": maskinporten.issuer, "scope": scopes,
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(consumer) = consumer_org {
        claims["consumer_org"] = json!(consumer);
    }
    let grant = sign_assertion(jwk, &claims)?;
    let (status, body) = post_form(
        &maskinporten.token_endpoint,
        &[("grant_type", JWT_BEARER), ("assertion", &grant)],
    )
    .await?;
    if status != 200 {
        return Err(SimError::Unexpected(format!(
            "token endpoint answered {status}: {body}"
        )));
    }
    Ok(body)
}

/// Logs in through ID-porten as `client_id` (authorization code + PKCE S256, then
/// `private_key_jwt` at the token endpoint). Returns the token response (`id_token`,
/// `access_token`, ...), after checking `state` and the id_token's `nonce`.
pub async fn idporten_login(
    idporten: &ProviderUrls,
    client_id: &str,
    jwk: &Value,
    redirect_uri: &str,
    scopes: &str,
    clock: &Clock,
) -> Result<Value, SimError> {
    let verifier = crypto::random_token(48);
    let challenge = crypto::s256(&verifier);
    let state = crypto::random_token(16);
    let nonce = crypto::random_token(16);
    let Some(authorize) = &idporten.authorization_endpoint else {
        return Err(SimError::Login("no authorization endpoint".into()));
    };
    let response = http_client()?
        .get(authorize)
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", scopes),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .map_err(|e| SimError::Http(e.to_string()))?;
    if response.status().as_u16() != 302 {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(SimError::Login(format!(
            "authorize answered {status}: {body}"
        )));
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SimError::Login("no Location in the authorize answer".into()))?;
    let url = url::Url::parse(location).map_err(|e| SimError::Login(e.to_string()))?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = param("error") {
        return Err(SimError::Login(format!(
            "{error}: {}",
            param("error_description").unwrap_or_default()
        )));
    }
    if param("state").as_deref() != Some(state.as_str()) {
        return Err(SimError::Login("state does not match".into()));
    }
    let code = param("code").ok_or_else(|| SimError::Login("no code in the redirect".into()))?;
    let now = clock.unix_seconds();
    let assertion = sign_assertion(
        jwk,
        &json!({
            "iss": client_id, "sub": client_id, "aud": idporten.issuer,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        }),
    )?;
    let (status, body) = post_form(
        &idporten.token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await?;
    if status != 200 {
        return Err(SimError::Login(format!(
            "token endpoint answered {status}: {body}"
        )));
    }
    let id_token = body
        .get("id_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let claims = crypto::raw_claims(id_token).map_err(SimError::Login)?;
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce.as_str()) {
        return Err(SimError::Login("id_token nonce does not match".into()));
    }
    Ok(body)
}
