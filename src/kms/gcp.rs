//! Google Cloud KMS `asymmetricSign` as a [`Signer`].
//!
//! `POST {kms}/v1/{key version}:asymmetricSign` with `{"digest":{"sha256":"<base64>"}}` and the metadata
//! server's bearer token; the answer's `signature` (base64) is the RSASSA-PKCS1-v1_5 signature that ends the
//! JWT. A 401 drops the cached token and tries once more with a fresh one (a token revoked early).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::metadata::MetadataTokenSource;
use super::{KmsError, truncate};
use crate::clock::Clock;
use crate::digdir::AccessToken;
use crate::keys::{self, JwtHeader, KeyReference, SignFuture, Signer};

/// The Cloud KMS REST endpoint.
pub const DEFAULT_KMS_URL: &str = "https://cloudkms.googleapis.com";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks that `name` is a full key version name,
/// `projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N` (a key without its version is the
/// usual mistake). `setting` names the flag in the error.
pub fn validate_key_version_name(setting: &'static str, name: &str) -> Result<(), KmsError> {
    const SHAPE: [&str; 5] = [
        "projects",
        "locations",
        "keyRings",
        "cryptoKeys",
        "cryptoKeyVersions",
    ];
    let problem = |why: String| KmsError::Config {
        setting,
        problem: format!(
            "{name:?} {why}; expected projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY/cryptoKeyVersions/N"
        ),
    };
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != SHAPE.len() * 2 {
        return Err(problem(format!(
            "has {} path segments, not 10",
            parts.len()
        )));
    }
    for (pair, expected) in parts.chunks(2).zip(SHAPE) {
        let (label, value) = (pair[0], pair[1]);
        if label != expected {
            return Err(problem(format!("has {label:?} where {expected:?} belongs")));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if value.is_empty() || !value.chars().all(allowed) {
            return Err(problem(format!(
                "has {value:?} after {label}/ (letters, digits, - and _ only)"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignResponse {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// Signs RS256 JWTs with a Cloud KMS key version.
pub struct GcpKmsSigner {
    http: reqwest::Client,
    key_version: String,
    sign_url: String,
    tokens: Arc<MetadataTokenSource>,
    reference: KeyReference,
}

impl fmt::Debug for GcpKmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsSigner")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

impl GcpKmsSigner {
    /// A signer for `key_version` (checked with [`validate_key_version_name`]) at `kms_url`, with tokens from
    /// the metadata server at `metadata_url`, naming the key in JWTs by `reference`.
    pub fn new(
        key_version: &str,
        reference: KeyReference,
        kms_url: &str,
        metadata_url: &str,
        clock: Clock,
    ) -> Result<Self, KmsError> {
        validate_key_version_name("KMS key version", key_version)?;
        for (setting, url) in [("KMS URL", kms_url), ("metadata server URL", metadata_url)] {
            let parsed = url::Url::parse(url).map_err(|e| KmsError::Config {
                setting,
                problem: format!("{url:?} is not a URL: {e}"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(KmsError::Config {
                    setting,
                    problem: format!("{url:?} is not an http(s) URL"),
                });
            }
        }
        keys::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("portvakt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KmsError::Config {
                setting: "HTTP client",
                problem: crate::provider_http::describe_reqwest(&e),
            })?;
        let tokens = Arc::new(MetadataTokenSource::new(http.clone(), metadata_url, clock));
        Ok(Self {
            sign_url: format!(
                "{}/v1/{key_version}:asymmetricSign",
                kms_url.trim_end_matches('/')
            ),
            key_version: key_version.to_string(),
            http,
            tokens,
            reference,
        })
    }

    /// The token source (to see how often it fetched).
    pub fn tokens(&self) -> &MetadataTokenSource {
        &self.tokens
    }

    /// The raw signature of `digest` (SHA-256), retrying once with a fresh token after a 401.
    async fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
        let token = self.tokens.token().await?;
        match self.sign_once(&token, digest).await {
            Err(KmsError::Api { status: 401, .. }) => {
                self.tokens.invalidate(&token).await;
                let fresh = self.tokens.token().await?;
                self.sign_once(&fresh, digest).await
            }
            other => other,
        }
    }

    async fn sign_once(&self, token: &AccessToken, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
        let transport = |e: reqwest::Error| KmsError::Transport {
            key: self.key_version.clone(),
            problem: crate::provider_http::describe_reqwest(&e),
        };
        let body = serde_json::json!({ "digest": { "sha256": STANDARD.encode(digest) } });
        let resp = self
            .http
            .post(&self.sign_url)
            .bearer_auth(token.secret())
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            let (code, message) = match serde_json::from_slice::<GoogleErrorBody>(&bytes) {
                Ok(b) => (b.error.status, truncate(&b.error.message)),
                Err(_) => (String::new(), truncate(&String::from_utf8_lossy(&bytes))),
            };
            return Err(KmsError::Api {
                key: self.key_version.clone(),
                status,
                code: if code.is_empty() {
                    "(no Google error status)".into()
                } else {
                    code
                },
                message,
            });
        }
        let decode = |problem: String| KmsError::Decode {
            key: self.key_version.clone(),
            problem,
        };
        let parsed: SignResponse = serde_json::from_slice(&bytes)
            .map_err(|e| decode(format!("not an AsymmetricSignResponse: {e}")))?;
        if let Some(name) = parsed.name.as_deref()
            && name != self.key_version
        {
            return Err(decode(format!("signed by {name:?}, not the key asked for")));
        }
        let signature = STANDARD
            .decode(parsed.signature.as_bytes())
            .map_err(|e| decode(format!("`signature` is not base64: {e}")))?;
        if signature.is_empty() {
            return Err(decode("`signature` is empty".into()));
        }
        Ok(signature)
    }
}

impl Signer for GcpKmsSigner {
    fn key_reference(&self) -> KeyReference {
        self.reference.clone()
    }

    fn sign<'a>(&'a self, header: &'a JwtHeader, claims: &'a serde_json::Value) -> SignFuture<'a> {
        Box::pin(async move {
            let input = keys::jws_signing_input(header, claims)?;
            let digest = Sha256::digest(input.as_bytes());
            let signature = self.sign_digest(&digest).await?;
            Ok(keys::compact_jwt(&input, &signature))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_version_names_are_checked_naming_the_setting() {
        let ok = "projects/nais-dev/locations/europe-north1/keyRings/digdirator/cryptoKeys/admin/cryptoKeyVersions/1";
        assert!(validate_key_version_name("--x", ok).is_ok());
        for (bad, fragment) in [
            (
                "projects/p/locations/l/keyRings/r/cryptoKeys/k",
                "8 path segments",
            ),
            (
                "projects/p/locations/l/keyRings/r/keys/k/cryptoKeyVersions/1",
                "\"keys\" where \"cryptoKeys\"",
            ),
            (
                "projects/<project-id>/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
                "<project-id>",
            ),
            ("", "1 path segments"),
        ] {
            let e = validate_key_version_name("--digdir-admin-kms-key-path", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--digdir-admin-kms-key-path: ") && e.contains(fragment),
                "{bad}: {e}"
            );
        }
    }
}
