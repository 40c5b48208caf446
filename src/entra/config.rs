//! Settings of the Graph client and the operator's authentication to Entra: the tenant, the
//! authority and Graph base URL (both settable, so tests point them at the simulator), the
//! credential, retry policies, timeouts and paging.

use std::time::Duration;

use super::auth::OperatorCredential;
pub use crate::digdir::RetryPolicy;

/// The public cloud's authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Microsoft Graph v1.0.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// The scope the operator asks for: Graph with its application permissions.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The audience of federated credentials (workload identity, Google) Entra expects.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Where a GCE/GKE workload gets a Google-signed ID token for Entra (azurerator's
/// `azure.auth.google.enabled`).
pub const GOOGLE_METADATA_IDENTITY_URL: &str = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=api://AzureADTokenExchange&format=full";

/// How the client waits between retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitMode {
    /// Sleeps (production).
    #[default]
    Sleep,
    /// Moves the shared [`crate::clock::Clock`] forward by the wait instead of sleeping: against a
    /// simulator that keeps time by the same clock, a Retry-After or a replication delay then passes
    /// at once, and tests can assert how long the client waited.
    AdvanceClock,
}

/// Everything the Graph client needs. Build it with [`EntraConfig::new`] and override what differs.
#[derive(Clone, Debug)]
pub struct EntraConfig {
    /// The tenant (GUID, or a domain).
    pub tenant_id: String,
    /// The operator app's client id.
    pub client_id: String,
    pub credential: OperatorCredential,
    /// `https://login.microsoftonline.com` (the token endpoint is `{authority}/{tenant}/oauth2/v2.0/token`).
    pub authority: String,
    /// `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// The scope asked for in the grant.
    pub scope: String,
    /// Retries of 5xx, 429, 409 `Directory_ConcurrencyViolation`, timeouts and connection errors.
    pub retry: RetryPolicy,
    /// Retries of 404 / `NoBackingApplicationObject` right after this client created the object
    /// (replication lag; Microsoft advises retrying for a minute or two).
    pub consistency_retry: RetryPolicy,
    /// How long after creating an object a 404 for it counts as replication lag.
    pub consistency_window: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The token is renewed this long before it expires (at most half its lifetime).
    pub token_refresh_margin: Duration,
    /// `exp - nbf` of certificate assertions (Entra recommends 5–10 minutes).
    pub assertion_lifetime: Duration,
    /// At most this many pages of one collection (azurerator's `azure.pagination.max-pages`).
    pub max_pages: usize,
    /// `$top` of list calls (`None`: Graph's default page size).
    pub page_size: Option<usize>,
    pub wait: WaitMode,
}

impl EntraConfig {
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        credential: OperatorCredential,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            credential,
            authority: DEFAULT_AUTHORITY.to_string(),
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            scope: GRAPH_SCOPE.to_string(),
            retry: RetryPolicy::default(),
            consistency_retry: RetryPolicy {
                max_attempts: 10,
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(20),
                multiplier: 2.0,
                max_retry_after: Duration::from_secs(60),
            },
            consistency_window: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            token_refresh_margin: Duration::from_secs(5 * 60),
            assertion_lifetime: Duration::from_secs(5 * 60),
            max_pages: 1000,
            page_size: None,
            wait: WaitMode::Sleep,
        }
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`: where grants go, and the `aud` of assertions.
    pub fn token_endpoint(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority.trim_end_matches('/'),
            self.tenant_id
        )
    }

    /// Graph's base URL without a trailing slash.
    pub fn graph_base(&self) -> String {
        self.graph_url.trim_end_matches('/').to_string()
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("authority", &self.authority),
            ("graph_url", &self.graph_url),
        ] {
            let url = url::Url::parse(value).map_err(|e| format!("{name} {value:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{name} {value:?}: not an http(s) URL"));
            }
        }
        let tenant_ok = !self.tenant_id.is_empty()
            && self
                .tenant_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !tenant_ok {
            return Err(format!(
                "tenant_id {:?}: must be the tenant's GUID or domain",
                self.tenant_id
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err("client_id is empty".into());
        }
        if !self.scope.ends_with("/.default") {
            return Err(format!(
                "scope {:?}: client credentials need a scope ending in /.default",
                self.scope
            ));
        }
        if self.retry.max_attempts == 0 || self.consistency_retry.max_attempts == 0 {
            return Err(
                "retry.max_attempts and consistency_retry.max_attempts must be at least 1".into(),
            );
        }
        if self.max_pages == 0 {
            return Err("max_pages must be at least 1".into());
        }
        if let Some(top) = self.page_size
            && !(1..=999).contains(&top)
        {
            return Err(format!("page_size {top}: Graph allows 1 to 999"));
        }
        if self.assertion_lifetime.is_zero() || self.assertion_lifetime > Duration::from_secs(3600)
        {
            return Err(format!(
                "assertion_lifetime {:?}: must be between 1 second and an hour",
                self.assertion_lifetime
            ));
        }
        self.credential.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::auth::ClientSecret;

    #[test]
    fn defaults_point_at_the_public_cloud_and_bad_settings_are_named() {
        let c = EntraConfig::new(
            "tenant.example",
            "client",
            OperatorCredential::ClientSecret(ClientSecret::new("s3cret-value")),
        );
        assert_eq!(
            c.token_endpoint(),
            "https://login.microsoftonline.com/tenant.example/oauth2/v2.0/token"
        );
        assert_eq!(c.graph_base(), "https://graph.microsoft.com/v1.0");
        assert!(c.validate().is_ok());
        assert!(
            !format!("{c:?}").contains("s3cret-value"),
            "Debug hides the secret"
        );
        let mut bad = c.clone();
        bad.tenant_id = "a/b".into();
        assert!(bad.validate().unwrap_err().contains("tenant_id"));
        let mut bad = c.clone();
        bad.scope = "https://graph.microsoft.com/User.Read".into();
        assert!(bad.validate().unwrap_err().contains("scope"));
        let mut bad = c;
        bad.page_size = Some(1000);
        assert!(bad.validate().unwrap_err().contains("page_size"));
    }
}
