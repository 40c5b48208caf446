//! The operator's authentication to Entra: the client-credentials grant at
//! `{authority}/{tenant}/oauth2/v2.0/token` for `https://graph.microsoft.com/.default`
//! (external-apis.md §3.1, external-api-rules.md K), with one of
//!
//! - a client secret (`client_secret`);
//! - a certificate assertion: a JWT signed with the certificate's key, RS256 with `x5t` (the
//!   base64url SHA-1 thumbprint of the certificate) or PS256 with `x5t#S256`; claims `aud` = the
//!   token endpoint, `iss` = `sub` = the client id, `nbf`/`iat`/`exp` a few minutes apart and a fresh
//!   `jti`;
//! - a federated credential: a token from a file (Kubernetes workload identity,
//!   `AZURE_FEDERATED_TOKEN_FILE`), re-read for every grant because the kubelet rotates it, or a
//!   Google-issued ID token from the GCE metadata server (azurerator with `azure.auth.google.enabled`),
//!   sent as `client_assertion` with `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
//!
//! The token is cached until [`EntraConfig::token_refresh_margin`] before it expires; one grant serves
//! every concurrent caller; [`EntraAuth::invalidate`] drops it (the client calls it once on a 401).
//! The secret, the assertion and the token are never logged and never appear in errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use sha1::Digest as _;

use super::config::{EntraConfig, GOOGLE_METADATA_IDENTITY_URL, RetryPolicy, WaitMode};
use super::error::{EntraAuthError, truncate};
use crate::clock::Clock;
pub use crate::digdir::AccessToken;

/// `client_assertion_type` of assertions.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Reads the secret from a file (mounted from a Kubernetes Secret), trimmed.
    pub fn from_file(path: &Path) -> Result<Self, EntraAuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EntraAuthError::Credential(format!("reading the client secret {}: {e}", path.display()))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(EntraAuthError::Credential(format!(
                "the client secret file {} is empty",
                path.display()
            )));
        }
        Ok(Self(secret.to_string()))
    }

    /// The secret itself, for the token request. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How a certificate assertion is signed and names its certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// RS256 with `x5t` (SHA-1 thumbprint): what azurerator-era clients send; still accepted.
    #[default]
    Rs256,
    /// PS256 with `x5t#S256` (SHA-256 thumbprint): what the current Entra documentation asks for.
    Ps256,
}

/// The operator's certificate and private key, for assertions.
#[derive(Clone)]
pub struct CertificateCredential {
    key: jsonwebtoken::EncodingKey,
    cert_der: Vec<u8>,
    algorithm: AssertionAlgorithm,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t", &self.x5t())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl CertificateCredential {
    /// From PEM text: an RSA private key (PKCS#8 or PKCS#1) and its certificate (the first
    /// `CERTIFICATE` block).
    pub fn from_pem(
        key_pem: &str,
        cert_pem: &str,
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, EntraAuthError> {
        let key = parse_rsa_key(key_pem).map_err(|p| {
            EntraAuthError::Credential(format!("the certificate's private key: {p}"))
        })?;
        let chain = crate::keys::parse_cert_chain(cert_pem)
            .map_err(|p| EntraAuthError::Credential(format!("the certificate: {p}")))?;
        let cert_der = chain
            .first()
            .and_then(|c| STANDARD.decode(c).ok())
            .ok_or_else(|| EntraAuthError::Credential("the certificate: no certificate".into()))?;
        let public = crate::keys::cert_public_key(&cert_der)
            .map_err(|e| EntraAuthError::Credential(format!("the certificate: {e}")))?;
        if public != key.to_public_key() {
            return Err(EntraAuthError::Credential(
                "the private key does not belong to the certificate".into(),
            ));
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| EntraAuthError::Credential(format!("the private key: {e}")))?;
        Ok(Self {
            key: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
            cert_der,
            algorithm,
        })
    }

    /// From files (mounted from a Kubernetes Secret); errors name the file.
    pub fn from_files(
        key_path: &Path,
        cert_path: &Path,
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, EntraAuthError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| EntraAuthError::Credential(format!("reading {}: {e}", p.display())))
        };
        let key = read(key_path)?;
        let cert = read(cert_path)?;
        Self::from_pem(&key, &cert, algorithm).map_err(|e| match e {
            EntraAuthError::Credential(m) => EntraAuthError::Credential(format!(
                "{} / {}: {m}",
                key_path.display(),
                cert_path.display()
            )),
            other => other,
        })
    }

    /// base64url SHA-1 of the certificate (`x5t`), as Entra identifies it.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&self.cert_der))
    }

    /// base64url SHA-256 of the certificate (`x5t#S256`).
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.cert_der))
    }

    pub fn algorithm(&self) -> AssertionAlgorithm {
        self.algorithm
    }

    /// The certificate (DER), e.g. to register it on the operator's app.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A signed assertion for `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, EntraAuthError> {
        let mut header = match self.algorithm {
            AssertionAlgorithm::Rs256 => {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                h.x5t = Some(self.x5t());
                h
            }
            AssertionAlgorithm::Ps256 => {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
                h.x5t_s256 = Some(self.x5t_s256());
                h
            }
        };
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| EntraAuthError::Credential(format!("signing the assertion: {e}")))
    }
}

fn parse_rsa_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no PEM private key: {e}"))?;
    let key = match &der {
        PrivateKeyDer::Pkcs8(k) => RsaPrivateKey::from_pkcs8_der(k.secret_pkcs8_der())
            .map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?,
        PrivateKeyDer::Pkcs1(k) => RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
            .map_err(|e| format!("not an RSA PKCS#1 key: {e}"))?,
        _ => return Err("not an RSA key".into()),
    };
    use rsa::traits::PublicKeyParts;
    if key.n().bits() < crate::keys::MIN_RSA_BITS {
        return Err(format!(
            "{}-bit RSA key, need at least {}",
            key.n().bits(),
            crate::keys::MIN_RSA_BITS
        ));
    }
    Ok(key)
}

/// What the operator authenticates with.
#[derive(Clone, Debug)]
pub enum OperatorCredential {
    ClientSecret(ClientSecret),
    Certificate(CertificateCredential),
    /// A federated token in a file, re-read for every grant (Kubernetes workload identity:
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    FederatedTokenFile(PathBuf),
    /// A Google-signed ID token for `api://AzureADTokenExchange` from the GCE metadata server.
    GoogleMetadata {
        /// The identity URL (with `audience` and `format=full`); [`GOOGLE_METADATA_IDENTITY_URL`] on GCP.
        identity_url: String,
    },
}

impl OperatorCredential {
    /// The Google metadata flow at its usual address.
    pub fn google_metadata() -> Self {
        Self::GoogleMetadata {
            identity_url: GOOGLE_METADATA_IDENTITY_URL.to_string(),
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ClientSecret(_) => "client-secret",
            Self::Certificate(_) => "certificate",
            Self::FederatedTokenFile(_) => "federated-token-file",
            Self::GoogleMetadata { .. } => "google-metadata",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Self::ClientSecret(s) if s.expose().trim().is_empty() => {
                Err("credential: the client secret is empty".into())
            }
            Self::FederatedTokenFile(p) if p.as_os_str().is_empty() => {
                Err("credential: the federated token file path is empty".into())
            }
            Self::GoogleMetadata { identity_url } => url::Url::parse(identity_url)
                .map(|_| ())
                .map_err(|e| format!("credential: identity_url {identity_url:?}: {e}")),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// Obtains and caches the operator's Graph token.
pub struct EntraAuth {
    http: reqwest::Client,
    client_id: String,
    token_endpoint: String,
    scope: String,
    credential: OperatorCredential,
    clock: Clock,
    refresh_margin: Duration,
    assertion_lifetime: Duration,
    retry: RetryPolicy,
    wait: WaitMode,
    cache: crate::provider_http::TokenCache,
    grants: AtomicU64,
}

impl fmt::Debug for EntraAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraAuth")
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .field("credential", &self.credential.kind())
            .finish_non_exhaustive()
    }
}

impl EntraAuth {
    pub fn new(http: reqwest::Client, config: &EntraConfig, clock: Clock) -> Self {
        Self {
            http,
            client_id: config.client_id.clone(),
            token_endpoint: config.token_endpoint(),
            scope: config.scope.clone(),
            credential: config.credential.clone(),
            clock,
            refresh_margin: config.token_refresh_margin,
            assertion_lifetime: config.assertion_lifetime,
            retry: config.retry.clone(),
            wait: config.wait,
            cache: crate::provider_http::TokenCache::default(),
            grants: AtomicU64::new(0),
        }
    }

    /// How many grants were posted to the token endpoint (successful or not).
    pub fn grant_count(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }

    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// A valid token: the cached one, or a new grant.
    pub async fn token(&self) -> Result<AccessToken, EntraAuthError> {
        self.cache
            .get(&self.clock, self.refresh_margin, || {
                self.grant_with_retries()
            })
            .await
    }

    /// Forgets `token` if it is the cached one (Graph answered 401 to it).
    pub async fn invalidate(&self, token: &AccessToken) {
        self.cache.invalidate(token).await;
    }

    /// The claims of a certificate assertion (exposed for tests).
    pub fn assertion_claims(&self) -> serde_json::Value {
        let now = self.clock.unix_seconds();
        serde_json::json!({
            "aud": self.token_endpoint,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + self.assertion_lifetime.as_secs() as i64,
        })
    }

    async fn grant_with_retries(&self) -> Result<(AccessToken, Duration), EntraAuthError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.grant_once().await {
                Ok(ok) => return Ok(ok),
                Err(e) if e.is_retryable() && attempt < self.retry.max_attempts => {
                    let delay = self.retry.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?delay, "Entra token request failed; retrying");
                    wait(self.wait, &self.clock, delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client-authentication fields of the form.
    async fn client_authentication(&self) -> Result<Vec<(&'static str, String)>, EntraAuthError> {
        let assertion = match &self.credential {
            OperatorCredential::ClientSecret(s) => {
                return Ok(vec![("client_secret", s.expose().to_string())]);
            }
            OperatorCredential::Certificate(c) => c.sign(&self.assertion_claims())?,
            OperatorCredential::FederatedTokenFile(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    EntraAuthError::Credential(format!(
                        "reading the federated token file {}: {e}",
                        path.display()
                    ))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(EntraAuthError::Credential(format!(
                        "the federated token file {} is empty",
                        path.display()
                    )));
                }
                token.to_string()
            }
            OperatorCredential::GoogleMetadata { identity_url } => {
                self.google_identity_token(identity_url).await?
            }
        };
        Ok(vec![
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
            ("client_assertion", assertion),
        ])
    }

    async fn google_identity_token(&self, url: &str) -> Result<String, EntraAuthError> {
        let err = |problem: String| EntraAuthError::Metadata {
            url: url.to_string(),
            problem,
        };
        let resp = self
            .http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| err(crate::provider_http::describe_reqwest(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| err(format!("reading the answer: {e}")))?;
        if status != 200 {
            return Err(err(format!("HTTP {status}: {}", truncate(&body))));
        }
        let token = body.trim();
        if token.split('.').count() != 3 {
            return Err(err("the answer is not a JWT".into()));
        }
        Ok(token.to_string())
    }

    async fn grant_once(&self) -> Result<(AccessToken, Duration), EntraAuthError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        form.extend(self.client_authentication().await?);
        self.grants.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| {
            EntraAuthError::Transport(crate::provider_http::describe_reqwest(&e))
        };
        let resp = self
            .http
            .post(&self.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<OAuthErrorBody>(&body) {
                Ok(e) => EntraAuthError::OAuth {
                    status,
                    error: e.error,
                    description: e.error_description.map(|d| truncate(&d)),
                    codes: e.error_codes,
                    trace_id: e.trace_id,
                    correlation_id: e.correlation_id,
                },
                Err(_) => EntraAuthError::Http {
                    status,
                    body: truncate(&String::from_utf8_lossy(&body)),
                },
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| EntraAuthError::Decode(format!("not a token response: {e}")))?;
        if parsed.access_token.is_empty() {
            return Err(EntraAuthError::Decode("empty access_token".into()));
        }
        if let Some(t) = &parsed.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(EntraAuthError::Decode(format!(
                "token_type {t:?}, expected Bearer"
            )));
        }
        let expires_in = parsed
            .expires_in
            .as_ref()
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            // Entra always sends expires_in; without it, assume a short life.
            .unwrap_or(Duration::from_secs(300));
        tracing::debug!(
            expires_in = expires_in.as_secs(),
            credential = self.credential.kind(),
            "obtained an Entra token"
        );
        Ok((AccessToken::new(parsed.access_token), expires_in))
    }
}

/// Waits `d` the way the configuration says.
pub(crate) async fn wait(mode: WaitMode, clock: &Clock, d: Duration) {
    match mode {
        WaitMode::Sleep => tokio::time::sleep(d).await,
        WaitMode::AdvanceClock => {
            clock.advance(d);
            tokio::task::yield_now().await;
        }
    }
}
