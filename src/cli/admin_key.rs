//! The Digdir admin key settings of `portvakt run`: the key is a mounted file or a Google Cloud KMS key
//! version, and the admin grant names it by the business-certificate chain (`x5c`) or by a `kid`.
//!
//! [`AdminKeyArgs::source`] checks the rule — exactly one of key file and KMS key; exactly one of chain and
//! kid — before anything is read, naming the settings; [`AdminKeySource::build`] then reads the files.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use portvakt::clock::Clock;
use portvakt::keys::{self, FileSigner, KeyReference, Signer};
use portvakt::kms::{self, GcpKmsSigner};

#[derive(clap::Args, Debug, Clone)]
pub struct AdminKeyArgs {
    /// The admin private key (PKCS#8/PKCS#1 PEM or a JWK), mounted from a Secret. Or use
    /// --digdir-admin-kms-key-path.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_KEY_FILE")]
    pub digdir_admin_key_file: Option<PathBuf>,
    /// Instead of a key file: the Google Cloud KMS key version that signs the admin grant,
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N` (digdirator's
    /// --digdir.admin.kms-key-path). The token comes from the pod's workload identity.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH")]
    pub digdir_admin_kms_key_path: Option<String>,
    /// The business certificate chain (PEM, leaf first) sent as `x5c`. Or use --digdir-admin-kid.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE")]
    pub digdir_admin_cert_chain_file: Option<PathBuf>,
    /// Instead of a certificate chain: the `kid` of a key registered on the admin client.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_KID")]
    pub digdir_admin_kid: Option<String>,
    /// The Cloud KMS REST endpoint (for a private endpoint or a simulator).
    #[arg(long, env = "PORTVAKT_GCP_KMS_URL", default_value = kms::DEFAULT_KMS_URL)]
    pub gcp_kms_url: String,
    /// The GCE/GKE metadata server that hands out the pod's Google access token.
    #[arg(long, env = "PORTVAKT_GCP_METADATA_URL", default_value = kms::DEFAULT_METADATA_URL)]
    pub gcp_metadata_url: String,
}

impl Default for AdminKeyArgs {
    fn default() -> Self {
        Self {
            digdir_admin_key_file: None,
            digdir_admin_kms_key_path: None,
            digdir_admin_cert_chain_file: None,
            digdir_admin_kid: None,
            gcp_kms_url: kms::DEFAULT_KMS_URL.into(),
            gcp_metadata_url: kms::DEFAULT_METADATA_URL.into(),
        }
    }
}

/// How the grant names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyNaming {
    /// `x5c` from this PEM file.
    Chain(PathBuf),
    Kid(String),
}

/// Where the admin key is, checked but not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKeySource {
    File {
        key: PathBuf,
        naming: KeyNaming,
    },
    GcpKms {
        key_version: String,
        naming: KeyNaming,
        kms_url: String,
        metadata_url: String,
    },
}

fn set<T: AsRef<str>>(value: &Option<T>) -> Option<&str> {
    value
        .as_ref()
        .map(|v| v.as_ref().trim())
        .filter(|v| !v.is_empty())
}

fn set_path(value: &Option<PathBuf>) -> Option<PathBuf> {
    value.clone().filter(|p| !p.as_os_str().is_empty())
}

impl AdminKeyArgs {
    /// Checks the rule and the KMS settings without reading anything.
    pub fn source(&self) -> anyhow::Result<AdminKeySource> {
        let naming = match (
            set_path(&self.digdir_admin_cert_chain_file),
            set(&self.digdir_admin_kid),
        ) {
            (Some(_), Some(_)) => bail!(
                "--digdir-admin-cert-chain-file and --digdir-admin-kid are both set: the admin grant names its key \
                 by one of them (x5c or kid); unset the other"
            ),
            (None, None) => bail!(
                "--digdir-admin-cert-chain-file or --digdir-admin-kid: one is needed so Maskinporten can verify the admin grant"
            ),
            (Some(chain), None) => KeyNaming::Chain(chain),
            (None, Some(kid)) => KeyNaming::Kid(kid.to_string()),
        };
        match (
            set_path(&self.digdir_admin_key_file),
            set(&self.digdir_admin_kms_key_path),
        ) {
            (Some(_), Some(_)) => bail!(
                "--digdir-admin-key-file and --digdir-admin-kms-key-path are both set: the admin key is either a \
                 mounted file or a Cloud KMS key version; unset the other"
            ),
            (None, None) => bail!(
                "--digdir-admin-key-file or --digdir-admin-kms-key-path: one is needed (the admin key as a mounted \
                 file, or the Cloud KMS key version that holds it)"
            ),
            (Some(key), None) => Ok(AdminKeySource::File { key, naming }),
            (None, Some(key_version)) => {
                kms::validate_key_version_name("--digdir-admin-kms-key-path", key_version)?;
                for (setting, url) in [
                    ("--gcp-kms-url", &self.gcp_kms_url),
                    ("--gcp-metadata-url", &self.gcp_metadata_url),
                ] {
                    let ok =
                        url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                    if !ok {
                        bail!("{setting}: {url:?} is not an http(s) URL");
                    }
                }
                Ok(AdminKeySource::GcpKms {
                    key_version: key_version.to_string(),
                    naming,
                    kms_url: self.gcp_kms_url.clone(),
                    metadata_url: self.gcp_metadata_url.clone(),
                })
            }
        }
    }
}

impl KeyNaming {
    fn load(&self) -> anyhow::Result<KeyReference> {
        Ok(match self {
            Self::Chain(path) => KeyReference::X5c(
                keys::load_cert_chain(path)
                    .map_err(|e| anyhow::anyhow!("--digdir-admin-cert-chain-file: {e}"))?,
            ),
            Self::Kid(kid) => KeyReference::Kid(kid.clone()),
        })
    }
}

impl AdminKeySource {
    /// Reads the files and builds the signer (no network call: KMS is first asked at the first grant).
    pub fn build(&self, clock: Clock) -> anyhow::Result<Arc<dyn Signer>> {
        Ok(match self {
            Self::File { key, naming } => {
                // The key first: a bad key file is reported as such even when the chain is bad too.
                let key = keys::load_private_key(key)
                    .map_err(|e| anyhow::anyhow!("--digdir-admin-key-file: {e}"))?;
                Arc::new(FileSigner::new(key, naming.load()?))
            }
            Self::GcpKms {
                key_version,
                naming,
                kms_url,
                metadata_url,
            } => {
                let reference = naming.load()?;
                Arc::new(
                    GcpKmsSigner::new(key_version, reference, kms_url, metadata_url, clock)
                        .map_err(|e| anyhow::anyhow!("--digdir-admin-kms-key-path: {e}"))?,
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_VERSION: &str =
        "projects/p/locations/europe-north1/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";

    fn args(key: bool, kms: bool, chain: bool, kid: bool) -> AdminKeyArgs {
        AdminKeyArgs {
            digdir_admin_key_file: key.then(|| "/k.pem".into()),
            digdir_admin_kms_key_path: kms.then(|| KEY_VERSION.into()),
            digdir_admin_cert_chain_file: chain.then(|| "/chain.pem".into()),
            digdir_admin_kid: kid.then(|| "kid-1".into()),
            ..AdminKeyArgs::default()
        }
    }

    #[test]
    fn exactly_one_key_and_exactly_one_naming() {
        assert_eq!(
            args(true, false, true, false).source().unwrap(),
            AdminKeySource::File {
                key: "/k.pem".into(),
                naming: KeyNaming::Chain("/chain.pem".into())
            }
        );
        assert!(matches!(
            args(false, true, false, true).source().unwrap(),
            AdminKeySource::GcpKms { naming: KeyNaming::Kid(ref k), .. } if k == "kid-1"
        ));
        for (a, names) in [
            (
                args(true, true, true, false),
                &["--digdir-admin-key-file", "--digdir-admin-kms-key-path"][..],
            ),
            (
                args(false, false, true, false),
                &["--digdir-admin-key-file", "--digdir-admin-kms-key-path"],
            ),
            (
                args(true, false, true, true),
                &["--digdir-admin-cert-chain-file", "--digdir-admin-kid"],
            ),
            (
                args(false, true, false, false),
                &["--digdir-admin-cert-chain-file", "--digdir-admin-kid"],
            ),
        ] {
            let e = a.source().unwrap_err().to_string();
            assert!(names.iter().all(|n| e.contains(n)), "{a:?}: {e}");
        }
        let mut empty_kid = args(true, false, true, false);
        empty_kid.digdir_admin_kid = Some(" ".into());
        assert!(empty_kid.source().is_ok(), "an empty kid counts as unset");

        let mut bad = args(false, true, true, false);
        bad.digdir_admin_kms_key_path =
            Some("projects/p/locations/l/keyRings/r/cryptoKeys/k".into());
        let e = bad.source().unwrap_err().to_string();
        assert!(
            e.contains("--digdir-admin-kms-key-path") && e.contains("cryptoKeyVersions"),
            "{e}"
        );
        let mut bad = args(false, true, true, false);
        bad.gcp_metadata_url = "metadata.google.internal".into();
        let e = bad.source().unwrap_err().to_string();
        assert!(e.contains("--gcp-metadata-url"), "{e}");
    }
}
