//! The Digdir self-service API (ID-porten / Maskinporten client registration): admin authentication,
//! a typed client with retries, wire types, environment presets, and exposed scopes read and applied
//! for [`crate::core::digdir::scopes`] ([`scopes`]).
//!
//! ```text
//! let config = DigdirConfig::preset(DigdirEnvironment::Test, "admin-client-id");
//! let signer = Arc::new(FileSigner::from_files(key, Some(chain), None)?);
//! let digdir = DigdirClient::new(&config, signer, Clock::system())?;
//! let clients = digdir.list_clients(false).await?;
//! ```

pub mod auth;
pub mod client;
pub mod env;
pub mod error;
pub mod scopes;
/// The wire types (plain data, shared with the pure core).
pub use crate::core::digdir::wire as types;

pub use auth::{AccessToken, AdminAuth, JWT_BEARER_GRANT};
pub use client::{CallHooks, CallStats, DigdirClient};
pub use env::{
    DEFAULT_ADMIN_SCOPES, DigdirConfig, DigdirEnvironment, ProviderMetadata, RetryPolicy,
    fetch_metadata,
};
pub use error::{ApiError, AuthError, DigdirError};
pub use types::*;
