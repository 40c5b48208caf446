//! portvakt: registers OAuth2/OIDC clients in ID-porten, Maskinporten and Entra ID
//! from nais.io/v1 custom resources, and writes their credentials into Secrets.

/// The injectable clock shared with the simulators.
pub use portvakt_clock as clock;
pub mod conditions;
pub mod controller;
pub mod core;
pub mod crd;
pub mod digdir;
pub mod entra;
pub mod keys;
pub mod kms;
pub mod metrics;
pub mod provider_http;

/// Installs rustls' ring provider as the process default; kube and reqwest both use it.
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
