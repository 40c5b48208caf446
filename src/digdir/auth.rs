//! Admin authentication: the Maskinporten JWT-bearer grant (digdirator.md §3.2, external-apis.md §1.2).
//!
//! `POST {token_endpoint}` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`;
//! the JWT is RS256, its header carries the business-certificate chain (`x5c`) or the `kid` of a key
//! registered on the admin client (whatever the [`Signer`] provides), and its claims are `aud` = the
//! Maskinporten issuer exactly, `iss` = the admin client id, `scope`, `iat`, `nbf`, `exp` (≤ 120 s later)
//! and a fresh UUID `jti`. The token is cached until `token_refresh_margin` before it expires, and one
//! grant serves every concurrent caller. Tokens and keys are never logged.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::env::{DigdirConfig, MASKINPORTEN_WELL_KNOWN_PATH, ProviderMetadata, RetryPolicy};
use super::error::{AuthError, truncate};
use crate::clock::Clock;
use crate::keys::Signer;

/// The JWT-bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A bearer token. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself, for the `Authorization` header. Do not log it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Obtains and caches the admin access token.
pub struct AdminAuth {
    http: reqwest::Client,
    client_id: String,
    scopes: String,
    well_known_url: String,
    signer: Arc<dyn Signer>,
    clock: Clock,
    grant_lifetime: Duration,
    refresh_margin: Duration,
    retry: RetryPolicy,
    metadata: tokio::sync::Mutex<Option<ProviderMetadata>>,
    cache: crate::provider_http::TokenCache,
    grants: AtomicU64,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("well_known_url", &self.well_known_url)
            .finish_non_exhaustive()
    }
}

impl AdminAuth {
    /// Token endpoint and issuer are read from `config.maskinporten_well_known_url` on first use
    /// (or set with [`AdminAuth::with_metadata`]).
    pub fn new(
        http: reqwest::Client,
        config: &DigdirConfig,
        signer: Arc<dyn Signer>,
        clock: Clock,
    ) -> Self {
        Self {
            http,
            client_id: config.admin_client_id.clone(),
            scopes: config.scopes.join(" "),
            well_known_url: config.maskinporten_well_known_url.clone(),
            signer,
            clock,
            grant_lifetime: config.grant_lifetime.min(Duration::from_secs(120)),
            refresh_margin: config.token_refresh_margin,
            retry: config.retry.clone(),
            metadata: tokio::sync::Mutex::new(None),
            cache: crate::provider_http::TokenCache::default(),
            grants: AtomicU64::new(0),
        }
    }

    /// Uses this metadata instead of fetching the well-known document.
    pub fn with_metadata(mut self, metadata: ProviderMetadata) -> Self {
        self.metadata = tokio::sync::Mutex::new(Some(metadata));
        self
    }

    /// Maskinporten's metadata (fetched once, then kept).
    pub async fn metadata(&self) -> Result<ProviderMetadata, AuthError> {
        let mut guard = self.metadata.lock().await;
        if let Some(m) = guard.as_ref() {
            return Ok(m.clone());
        }
        let m = super::env::fetch_metadata(
            &self.http,
            &self.well_known_url,
            MASKINPORTEN_WELL_KNOWN_PATH,
        )
        .await?;
        *guard = Some(m.clone());
        Ok(m)
    }

    /// How many grants were posted to the token endpoint (successful or not).
    pub fn grant_count(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }

    /// A valid admin token: the cached one, or a new grant.
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        self.cache
            .get(&self.clock, self.refresh_margin, || {
                self.grant_with_retries()
            })
            .await
    }

    /// Forgets `token` if it is the cached one (Digdir answered 401 to it), so the next call makes a grant.
    pub async fn invalidate(&self, token: &AccessToken) {
        self.cache.invalidate(token).await;
    }

    /// The claims of a grant (exposed for tests and the simulator).
    pub fn grant_claims(&self, issuer: &str) -> serde_json::Value {
        let now = self.clock.unix_seconds();
        serde_json::json!({
            "aud": issuer,
            "iss": self.client_id,
            "scope": self.scopes,
            "iat": now,
            "nbf": now,
            "exp": now + self.grant_lifetime.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    async fn grant_with_retries(&self) -> Result<(AccessToken, Duration), AuthError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.grant_once().await {
                Ok(ok) => return Ok(ok),
                Err(e) if e.is_retryable() && attempt < self.retry.max_attempts => {
                    let delay = self.retry.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?delay, "Maskinporten admin grant failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn grant_once(&self) -> Result<(AccessToken, Duration), AuthError> {
        let metadata = self.metadata().await?;
        let claims = self.grant_claims(&metadata.issuer);
        let header = self.signer.header();
        let assertion = self.signer.sign(&header, &claims).await?;
        self.grants.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(&metadata.token_endpoint)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| AuthError::Transport(crate::provider_http::describe_reqwest(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| AuthError::Transport(crate::provider_http::describe_reqwest(&e)))?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<OAuthErrorBody>(&body) {
                Ok(e) => AuthError::OAuth {
                    status,
                    error: e.error,
                    error_description: e.error_description.map(|d| truncate(&d)),
                },
                Err(_) => AuthError::Http {
                    status,
                    body: truncate(&String::from_utf8_lossy(&body)),
                },
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Decode(format!("not a token response: {e}")))?;
        if parsed.access_token.is_empty() {
            return Err(AuthError::Decode("empty access_token".into()));
        }
        let expires_in = parsed
            .expires_in
            .as_ref()
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            // Maskinporten always sends expires_in; without it, assume a short life.
            .unwrap_or(Duration::from_secs(60));
        tracing::debug!(
            expires_in = expires_in.as_secs(),
            "obtained Maskinporten admin token"
        );
        Ok((AccessToken::new(parsed.access_token), expires_in))
    }
}
