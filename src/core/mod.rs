//! The pure core of the IDPortenClient and MaskinportenClient controllers: desired state from the spec
//! plus what was observed, turned into decisions. No IO; every "now" is passed in.
//!
//! - [`hash`]: `status.synchronizationHash` exactly as liberator computes it.
//! - [`registration`]: the Digdir client registration per integration type, the identity
//!   (`<cluster>:<namespace>:<name>` + integration type) and the "does Digdir need a PUT" comparison.
//! - [`secret`]: the Secret per kind with digdirator's keys, labels, annotation and owner reference,
//!   and the "would a write change anything" comparison.
//! - [`keyplan`]: which keys to register, when to make or promote a key, which Secrets to delete
//!   (see its module doc for the rotation design).
//! - [`status`]: status and conditions after success or failure.
//! - [`observe`]: the per-resource report of `--observe`.
//! - [`drift`]: the periodic steady-state pass: which registrations drifted, whose JWKS is due.

pub mod drift;
pub mod hash;
pub mod keyplan;
pub mod observe;
pub mod registration;
pub mod secret;
pub mod status;

use std::time::Duration;

use crate::keys::{KeyError, PrivateJwk, PublicJwk};

/// The two Digdir kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    IDPorten,
    Maskinporten,
}

impl Kind {
    pub fn kind(self) -> &'static str {
        match self {
            Kind::IDPorten => "IDPortenClient",
            Kind::Maskinporten => "MaskinportenClient",
        }
    }
    /// The `type` label of managed Secrets (digdirator's).
    pub fn secret_type_label(self) -> &'static str {
        match self {
            Kind::IDPorten => "digdirator.nais.io",
            Kind::Maskinporten => "maskinporten.digdirator.nais.io",
        }
    }
    /// The prefix of the Secret's keys.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Kind::IDPorten => "IDPORTEN",
            Kind::Maskinporten => "MASKINPORTEN",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Kind::IDPorten => "idporten",
            Kind::Maskinporten => "maskinporten",
        }
    }
}

/// OAuth metadata of a provider, as written into the Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub well_known_url: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
}

/// Configuration of the core. Defaults are digdirator's (NAV's), override them per installation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster name in `<cluster>:<namespace>:<name>`. A wrong one would duplicate every client.
    pub cluster_name: String,
    pub client_name: String,
    pub client_uri: String,
    pub access_token_lifetime: i64,
    pub session_lifetime: i64,
    /// Registered when a MaskinportenClient has no (valid) consumed scope.
    pub maskinporten_default_scope: String,
    pub idporten: ProviderMetadata,
    pub maskinporten: ProviderMetadata,
    /// How long Digdir may take to recognise a newly registered key (documented: up to 2 minutes).
    pub key_propagation: Duration,
    /// Keys are re-registered this long before they expire.
    pub renew_before: Duration,
    /// Digdir's cap on keys per client.
    pub max_keys: usize,
    /// The periodic pass reads a client's JWKS (to find keys removed by hand) about this often,
    /// jittered per client (see [`drift`]).
    pub jwks_check_every: Duration,
    /// After a first sync (one key), the next key is made once the first key has been registered
    /// this long (see [`keyplan`]); zero makes both keys in the first sync.
    pub next_key_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_name: String::new(),
            client_name: "ARBEIDS- OG VELFERDSETATEN".into(),
            client_uri: "https://www.nav.no".into(),
            access_token_lifetime: 3600,
            session_lifetime: 7200,
            maskinporten_default_scope: "nav:test/api".into(),
            idporten: ProviderMetadata::default(),
            maskinporten: ProviderMetadata::default(),
            key_propagation: Duration::from_secs(120),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            max_keys: 5,
            jwks_check_every: Duration::from_secs(24 * 3600),
            next_key_delay: Duration::from_secs(300),
        }
    }
}

impl Config {
    pub fn metadata(&self, kind: Kind) -> &ProviderMetadata {
        match kind {
            Kind::IDPorten => &self.idporten,
            Kind::Maskinporten => &self.maskinporten,
        }
    }
}

/// A client key: the private JWK exactly as stored (its bytes are reused as they are, so a Secret
/// written by digdirator stays byte-identical) and its public half.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub kid: String,
    pub private_json: String,
    pub public: PublicJwk,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Parses a private JWK as stored in a Secret, keeping its bytes.
    pub fn parse(private_json: &str) -> Result<Key, KeyError> {
        let jwk = PrivateJwk::from_json(private_json)?;
        Ok(Key {
            kid: jwk.kid.clone(),
            private_json: private_json.to_string(),
            public: jwk.public(),
        })
    }

    /// A freshly generated key.
    pub fn from_private(jwk: &PrivateJwk) -> Key {
        Key {
            kid: jwk.kid.clone(),
            private_json: jwk.to_json(),
            public: jwk.public(),
        }
    }

    /// A placeholder key for tests and for `--observe` (which must not spend CPU on real keys).
    pub fn placeholder(kid: &str) -> Key {
        Key {
            kid: kid.to_string(),
            private_json: format!("{{\"kid\":\"{kid}\"}}"),
            public: PublicJwk {
                use_: "sig".into(),
                kty: "RSA".into(),
                kid: kid.to_string(),
                alg: "RS256".into(),
                n: "placeholder".into(),
                e: "AQAB".into(),
            },
        }
    }
}
