//! The pure core: desired state from the spec plus what was observed, turned into decisions. No IO
//! (nothing here imports an IO module); every "now" is passed in.
//!
//! - [`digdir`]: the IDPortenClient and MaskinportenClient kinds (registration payload, key plan, Secret
//!   contents, status, `--observe` decisions, drift comparison).
//! - [`entra`]: the AzureAdApplication kind (the application, pre-authorized apps and assignments,
//!   credentials and their revocation, the Secret, status, `--observe`, drift).
//! - [`hash`]: `status.synchronizationHash` exactly as liberator computes it (every kind).
//! - [`workloads`]: which Secrets a workload references, and how (the rule that keeps credentials
//!   in use; the controller's scanner feeds it).
//! - [`observe`]: the `--observe` report (its actions and totals), for every kind.
//! - [`ownership`]: when a Secret belongs to a resource (the one rule every writer obeys).
//! - [`secret_content`]: whether a Secret write would change anything, and the merged update.
//! - [`scopes`]: MaskinportenClient scopes: exposed scopes and their consumers (what to change at
//!   Digdir) and consumed scopes (which a client may register).
//! - [`Key`], [`ProviderMetadata`]: shared by the kinds.

pub mod digdir;
pub mod due;
pub mod entra;
pub mod hash;
pub mod observe;
pub mod ownership;
pub mod secret_content;
pub mod validation;
pub mod workloads;

use crate::keys::{KeyError, PrivateJwk, PublicJwk};

/// OAuth metadata of a provider, as written into the Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub well_known_url: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
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

    /// A key known by its public half only (a replaced key kept registered): it is registered, never
    /// handed to an app.
    pub fn public_only(kid: &str, n: &str, e: &str) -> Key {
        Key {
            kid: kid.to_string(),
            private_json: String::new(),
            public: PublicJwk {
                use_: "sig".into(),
                kty: "RSA".into(),
                kid: kid.to_string(),
                alg: "RS256".into(),
                n: n.to_string(),
                e: e.to_string(),
            },
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
