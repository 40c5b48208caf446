//! Microsoft Entra ID through Microsoft Graph v1.0: the operator's authentication (client secret,
//! certificate assertion, or a federated token from a file or the GCE metadata server), a typed
//! Graph client with retries, replication-lag handling, crash-safe creates and per-object write
//! serialisation, and the wire types. What the AzureAdApplication controller stands on.
//!
//! ```text
//! let credential = OperatorCredential::ClientSecret(ClientSecret::from_file(path)?);
//! let config = EntraConfig::new(tenant_id, client_id, credential);
//! let graph = GraphClient::new(&config, Clock::system())?;
//! let app = graph.ensure_application("cluster:ns:name", "portvakt-…", &body).await?;
//! ```

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod types;

pub use auth::{
    AccessToken, AssertionAlgorithm, CLIENT_ASSERTION_TYPE, CertificateCredential, ClientSecret,
    EntraAuth, OperatorCredential,
};
pub use client::{CallStats, GraphClient, eq_filter, odata_string};
pub use config::{
    DEFAULT_AUTHORITY, DEFAULT_GRAPH_URL, EntraConfig, FEDERATED_AUDIENCE,
    GOOGLE_METADATA_IDENTITY_URL, GRAPH_SCOPE, RetryPolicy, WaitMode,
};
pub use error::{EntraAuthError, ErrorDetail, ErrorKind, GraphApiError, GraphError};
pub use types::*;
