//! What an app does with the credentials in its AzureAdApplication Secret, against the simulator or
//! real Entra: the client-credentials grant with the certificate in `AZURE_APP_JWK` (an RS256
//! assertion with `x5t`, as Microsoft's libraries send it) or with `AZURE_APP_CLIENT_SECRET`. Used by
//! tests and `portvakt demo`.

use jsonwebtoken::{Algorithm, Header};
use portvakt_clock::Clock;
use serde_json::{Value, json};

use crate::jwt::RsaKey;

async fn post_form(url: &str, form: &[(&str, &str)]) -> Result<Value, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("POST {url}: the answer is not JSON: {e}"))?;
    if status == 200 {
        Ok(body)
    } else {
        Err(format!(
            "HTTP {status}: {}: {}",
            body["error"].as_str().unwrap_or("?"),
            body["error_description"].as_str().unwrap_or("")
        ))
    }
}

/// A client-credentials token for `scope` (`api://<client id>/.default`), the client authenticated
/// with a certificate assertion signed by the private JWK `jwk` (its `x5t` names the certificate).
pub async fn certificate_token(
    token_endpoint: &str,
    client_id: &str,
    jwk: &Value,
    scope: &str,
    clock: &Clock,
) -> Result<Value, String> {
    let key = RsaKey::from_private_jwk(jwk).map_err(|e| format!("the JWK: {e}"))?;
    let x5t = jwk["x5t"].as_str().ok_or("the JWK has no x5t")?;
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t = Some(x5t.to_string());
    let now = clock.unix_seconds();
    let assertion = key
        .sign_with_header(
            &header,
            &json!({
                "aud": token_endpoint, "iss": client_id, "sub": client_id,
                "jti": uuid::Uuid::new_v4().to_string(),
                "nbf": now, "iat": now, "exp": now + 300,
            }),
        )
        .map_err(|e| format!("signing the assertion: {e}"))?;
    post_form(
        token_endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ],
    )
    .await
}

/// A client-credentials token for `scope`, the client authenticated with its client secret.
pub async fn secret_token(
    token_endpoint: &str,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> Result<Value, String> {
    post_form(
        token_endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ],
    )
    .await
}

/// The claims of a token (not verified: for showing and asserting what it carries).
pub fn claims(token: &str) -> Result<Value, String> {
    crate::jwt::raw_claims(token)
}
