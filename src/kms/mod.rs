//! Signing the Digdir admin grant with a key held in a cloud KMS, so the private key never reaches the pod
//! (how digdirator signs, with `--digdir.admin.kms-key-path`).
//!
//! - [`GcpKmsSigner`]: Google Cloud KMS `asymmetricSign` (REST) on an `RSA_SIGN_PKCS1_*_SHA256` key version,
//!   over the SHA-256 digest of the JWS signing input. The JWT names the key as a file key does: the business
//!   certificate chain (`x5c`, read from a file at start) or a `kid` registered on the admin client.
//! - [`MetadataTokenSource`]: the bearer token for KMS, from the GCE/GKE metadata server (the pod's workload
//!   identity), cached until shortly before it expires; one fetch serves concurrent callers.
//!
//! Both base URLs are settable, so tests point them at `portvakt_sim::kms`. Tokens are never logged or put
//! into an error. Azure Key Vault's `sign` is not here: its workload identity is an exchange of a projected
//! ServiceAccount token at Entra ID, not a metadata GET, so it needs a token source of its own.

mod gcp;
mod metadata;

pub use gcp::{DEFAULT_KMS_URL, GcpKmsSigner, validate_key_version_name};
pub use metadata::{DEFAULT_METADATA_URL, MetadataTokenSource, TOKEN_PATH};

/// Failures of a KMS signer. Messages name the service, the key and what to check; never a token.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// A setting is malformed (checked before any call).
    #[error("{setting}: {problem}")]
    Config {
        setting: &'static str,
        problem: String,
    },
    /// The metadata server could not be reached.
    #[error("GCP metadata server {url}: {problem}")]
    MetadataTransport { url: String, problem: String },
    /// The metadata server refused a token.
    #[error("GCP metadata server gave no token for the pod's service account: HTTP {status}: {message}{}", metadata_hint(*.status))]
    Metadata { status: u16, message: String },
    /// The metadata server answered 200 with something that is not a token.
    #[error("GCP metadata server: unexpected token response: {0}")]
    MetadataDecode(String),
    /// Cloud KMS could not be reached.
    #[error("Cloud KMS asymmetricSign on {key}: {problem}")]
    Transport { key: String, problem: String },
    /// Cloud KMS answered with an error (Google's `{"error": {code, message, status}}`).
    #[error("Cloud KMS asymmetricSign on {key}: HTTP {status} {code}: {message}{}", kms_hint(*.status))]
    Api {
        key: String,
        status: u16,
        /// Google's canonical code (`PERMISSION_DENIED`, `UNAVAILABLE`, ...).
        code: String,
        message: String,
    },
    /// Cloud KMS answered 200 with something that is not a signature of this key.
    #[error("Cloud KMS asymmetricSign on {key}: unexpected response: {problem}")]
    Decode { key: String, problem: String },
}

impl KmsError {
    /// Whether trying again later might work: no answer, throttling or a server error.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::MetadataTransport { .. } | Self::Transport { .. } => true,
            Self::Metadata { status, .. } | Self::Api { status, .. } => {
                *status == 429 || *status >= 500
            }
            Self::Config { .. } | Self::MetadataDecode(_) | Self::Decode { .. } => false,
        }
    }
}

fn metadata_hint(status: u16) -> &'static str {
    match status {
        401 | 403 | 404 => {
            " (is workload identity set up: the ServiceAccount annotated with iam.gke.io/gcp-service-account, \
             and that Google service account granting roles/iam.workloadIdentityUser to it?)"
        }
        _ => "",
    }
}

fn kms_hint(status: u16) -> &'static str {
    match status {
        403 => {
            " (the pod's Google service account needs roles/cloudkms.signer on this key, and the key version must exist)"
        }
        401 => " (the metadata server's token was refused)",
        _ => "",
    }
}

/// Cuts an error text from a remote answer to a length that fits a status condition.
fn truncate(text: &str) -> String {
    const MAX: usize = 512;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
