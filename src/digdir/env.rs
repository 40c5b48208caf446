//! Digdir environments (test, prod), the client configuration, retry policy and provider metadata.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::AuthError;

/// digdirator's default admin scopes.
pub const DEFAULT_ADMIN_SCOPES: &[&str] = &[
    "idporten:dcr.write",
    "idporten:dcr.read",
    "idporten:scopes.write",
];

/// Maskinporten's metadata path (RFC 8414).
pub const MASKINPORTEN_WELL_KNOWN_PATH: &str = "/.well-known/oauth-authorization-server";
/// ID-porten's metadata path (OIDC discovery).
pub const OIDC_WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigdirEnvironment {
    Test,
    Prod,
}

impl DigdirEnvironment {
    /// The self-service API host (without `/api/v1`).
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Test => "https://api.test.samarbeid.digdir.no",
            Self::Prod => "https://api.samarbeid.digdir.no",
        }
    }

    /// Maskinporten's issuer, the `aud` of every grant (trailing slash included).
    pub fn maskinporten_issuer(self) -> &'static str {
        match self {
            Self::Test => "https://test.maskinporten.no/",
            Self::Prod => "https://maskinporten.no/",
        }
    }

    pub fn maskinporten_well_known_url(self) -> &'static str {
        match self {
            Self::Test => "https://test.maskinporten.no/.well-known/oauth-authorization-server",
            Self::Prod => "https://maskinporten.no/.well-known/oauth-authorization-server",
        }
    }

    /// ID-porten's issuer (no trailing slash).
    pub fn idporten_issuer(self) -> &'static str {
        match self {
            Self::Test => "https://test.idporten.no",
            Self::Prod => "https://idporten.no",
        }
    }

    pub fn idporten_well_known_url(self) -> &'static str {
        match self {
            Self::Test => "https://test.idporten.no/.well-known/openid-configuration",
            Self::Prod => "https://idporten.no/.well-known/openid-configuration",
        }
    }
}

impl fmt::Display for DigdirEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Test => "test",
            Self::Prod => "prod",
        })
    }
}

impl FromStr for DigdirEnvironment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "test" => Ok(Self::Test),
            "prod" | "production" => Ok(Self::Prod),
            other => Err(format!(
                "unknown Digdir environment {other:?} (expected \"test\" or \"prod\")"
            )),
        }
    }
}

/// Retries: exponential backoff with jitter, capped attempts, Retry-After honoured up to a cap.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// A Retry-After longer than this is not waited out: the error is returned (with `retry_after`) so the
    /// caller can requeue instead of holding a worker.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Tiny delays, for tests.
    pub fn fast(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
            multiplier: 2.0,
            max_retry_after: Duration::from_secs(5),
        }
    }

    /// The backoff before retry number `retry` (1-based): exponential, capped, "equal jitter"
    /// (half fixed, half random) so that concurrent callers spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        use rand::Rng as _;
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1).min(30) as i32);
        let base = self.initial_delay.as_secs_f64() * exp;
        let capped = base.min(self.max_delay.as_secs_f64()).max(0.0);
        let half = capped / 2.0;
        let jitter = if half > 0.0 {
            rand::thread_rng().gen_range(0.0..=half)
        } else {
            0.0
        };
        Duration::from_secs_f64(half + jitter)
    }
}

/// Everything the Digdir client needs. Build it with [`DigdirConfig::preset`] and override what differs.
#[derive(Clone, Debug)]
pub struct DigdirConfig {
    /// Self-service API base URL; `/api/v1` is appended unless it already ends with it.
    pub base_url: String,
    pub maskinporten_well_known_url: String,
    pub idporten_well_known_url: String,
    /// The admin client's `client_id` (the grant's `iss`).
    pub admin_client_id: String,
    /// Admin scopes requested in the grant.
    pub scopes: Vec<String>,
    pub retry: RetryPolicy,
    /// Per-request timeout (connect + answer).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Lifetime of the grant JWT (`exp - iat`), at most 120 s.
    pub grant_lifetime: Duration,
    /// The admin token is renewed this long before it expires.
    pub token_refresh_margin: Duration,
}

impl DigdirConfig {
    pub fn preset(env: DigdirEnvironment, admin_client_id: impl Into<String>) -> Self {
        Self {
            base_url: env.base_url().to_string(),
            maskinporten_well_known_url: env.maskinporten_well_known_url().to_string(),
            idporten_well_known_url: env.idporten_well_known_url().to_string(),
            admin_client_id: admin_client_id.into(),
            scopes: DEFAULT_ADMIN_SCOPES.iter().map(|s| s.to_string()).collect(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            grant_lifetime: Duration::from_secs(120),
            token_refresh_margin: Duration::from_secs(30),
        }
    }

    /// `{base_url}/api/v1`, without a trailing slash.
    pub fn api_v1_url(&self) -> String {
        api_v1_url(&self.base_url)
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("base_url", &self.base_url),
            (
                "maskinporten_well_known_url",
                &self.maskinporten_well_known_url,
            ),
            ("idporten_well_known_url", &self.idporten_well_known_url),
        ] {
            let url = url::Url::parse(value).map_err(|e| format!("{name} {value:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{name} {value:?}: not an http(s) URL"));
            }
        }
        if self.admin_client_id.trim().is_empty() {
            return Err("admin_client_id is empty".into());
        }
        if self.scopes.is_empty() {
            return Err("scopes is empty".into());
        }
        if self.grant_lifetime > Duration::from_secs(120) || self.grant_lifetime.is_zero() {
            return Err(format!(
                "grant_lifetime {:?}: must be between 1 and 120 seconds",
                self.grant_lifetime
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// Appends `/api/v1` unless the URL's path already ends with it (digdirator's rule).
pub fn api_v1_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/v1") {
        base.to_string()
    } else {
        format!("{base}/api/v1")
    }
}

/// The parts of a provider's metadata that portvakt uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
}

/// Fetches and validates a well-known document as digdirator (liberator) does: HTTP 200, JSON,
/// non-empty `jwks_uri` and `token_endpoint`, and the URL equal to the issuer joined with `well_known_path`.
pub async fn fetch_metadata(
    http: &reqwest::Client,
    well_known_url: &str,
    well_known_path: &str,
) -> Result<ProviderMetadata, AuthError> {
    let err = |problem: String| AuthError::Metadata {
        url: well_known_url.to_string(),
        problem,
    };
    let resp = http.get(well_known_url).send().await.map_err(|e| {
        err(format!(
            "request failed: {}",
            crate::provider_http::describe_reqwest(&e)
        ))
    })?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(err(format!("HTTP {}", status.as_u16())));
    }
    let is_json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(err("Content-Type is not application/json".into()));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| err(format!("reading body: {e}")))?;
    let metadata: ProviderMetadata =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("decoding: {e}")))?;
    if metadata.token_endpoint.is_empty() {
        return Err(err("token_endpoint is empty".into()));
    }
    if metadata.jwks_uri.is_empty() {
        return Err(err("jwks_uri is empty".into()));
    }
    let expected = format!(
        "{}{}",
        metadata.issuer.trim_end_matches('/'),
        well_known_path
    );
    if expected != well_known_url {
        return Err(err(format!(
            "issuer {:?} does not match the well-known URL (expected {expected})",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_api_url() {
        let c = DigdirConfig::preset(DigdirEnvironment::Test, "admin");
        assert_eq!(
            c.api_v1_url(),
            "https://api.test.samarbeid.digdir.no/api/v1"
        );
        assert_eq!(
            c.scopes.join(" "),
            "idporten:dcr.write idporten:dcr.read idporten:scopes.write"
        );
        assert!(c.validate().is_ok());
        assert_eq!(api_v1_url("http://x/api/v1/"), "http://x/api/v1");
        for env in [DigdirEnvironment::Test, DigdirEnvironment::Prod] {
            assert_eq!(
                format!(
                    "{}{}",
                    env.maskinporten_issuer().trim_end_matches('/'),
                    MASKINPORTEN_WELL_KNOWN_PATH
                ),
                env.maskinporten_well_known_url()
            );
            assert_eq!(
                format!("{}{}", env.idporten_issuer(), OIDC_WELL_KNOWN_PATH),
                env.idporten_well_known_url()
            );
        }
        assert_eq!(
            "prod".parse::<DigdirEnvironment>(),
            Ok(DigdirEnvironment::Prod)
        );
        let mut bad = c.clone();
        bad.grant_lifetime = Duration::from_secs(121);
        assert!(bad.validate().unwrap_err().contains("grant_lifetime"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for retry in 1..10 {
            let d = p.backoff(retry);
            assert!(d <= Duration::from_millis(1000), "{d:?}");
        }
        let first = p.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        assert!(p.backoff(5) >= Duration::from_millis(500));
    }
}
