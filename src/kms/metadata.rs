//! The pod's Google access token from the GCE/GKE metadata server (workload identity).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use super::{KmsError, truncate};
use crate::clock::Clock;
use crate::digdir::AccessToken;

/// Where the metadata server answers in a GKE pod (or on a GCE VM).
pub const DEFAULT_METADATA_URL: &str = "http://metadata.google.internal";
/// The token of the instance's default service account (under workload identity: the pod's).
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is fetched again this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

struct Cached {
    token: AccessToken,
    refresh_at: Timestamp,
}

/// Fetches and caches the access token. `Debug` never shows the token.
pub struct MetadataTokenSource {
    http: reqwest::Client,
    url: String,
    clock: Clock,
    cache: tokio::sync::Mutex<Option<Cached>>,
    fetches: AtomicU64,
}

impl fmt::Debug for MetadataTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataTokenSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl MetadataTokenSource {
    /// A source asking the metadata server at `base_url` (e.g. [`DEFAULT_METADATA_URL`]).
    pub fn new(http: reqwest::Client, base_url: &str, clock: Clock) -> Self {
        Self {
            http,
            url: format!("{}{TOKEN_PATH}", base_url.trim_end_matches('/')),
            clock,
            cache: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched (successfully or not).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one, or a new one (one fetch for all concurrent callers).
    pub async fn token(&self) -> Result<AccessToken, KmsError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && self.clock.now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, expires_in) = self.fetch().await?;
        let keep = expires_in
            .saturating_sub(REFRESH_MARGIN)
            .max(expires_in / 2);
        let now = self.clock.now();
        let refresh_at = jiff::SignedDuration::try_from(keep)
            .ok()
            .and_then(|keep| now.checked_add(keep).ok())
            .unwrap_or(now);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets `token` if it is the cached one (KMS refused it), so the next call fetches anew.
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == token) {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), KmsError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| KmsError::MetadataTransport {
            url: self.url.clone(),
            problem: crate::provider_http::describe_reqwest(&e),
        };
        let resp = self
            .http
            .get(&self.url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(KmsError::Metadata {
                status,
                message: truncate(&String::from_utf8_lossy(&body)),
            });
        }
        // The body holds the token: a decode error must not quote it.
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            KmsError::MetadataDecode(format!(
                "not {{access_token, expires_in}} JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if parsed.access_token.is_empty() {
            return Err(KmsError::MetadataDecode("empty access_token".into()));
        }
        tracing::debug!(
            expires_in = parsed.expires_in,
            "obtained a Google access token from the metadata server"
        );
        Ok((
            AccessToken::new(parsed.access_token),
            Duration::from_secs(parsed.expires_in),
        ))
    }
}
