//! Status types shared by the Digdir kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `DigdiratorStatus`: the observed state of an [`IDPortenClient`](super::IDPortenClient) or a
/// [`MaskinportenClient`](super::MaskinportenClient). Field names are digdirator's, so status written by
/// digdirator is read unchanged after a switch-over.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DigdiratorStatus {
    /// The client ID of this client at Digdir.
    #[serde(rename = "clientID", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Standard conditions (`Ready`, plus the degraded conditions of [`crate::conditions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The ID of the processing transaction last performed on this resource.
    #[serde(
        rename = "correlationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    /// The key IDs of the JWKs registered for the client at Digdir.
    #[serde(rename = "keyIDs", default, skip_serializing_if = "Option::is_none")]
    pub key_ids: Option<Vec<String>>,
    /// The `metadata.generation` most recently observed.
    #[serde(
        rename = "observedGeneration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// The hash of the spec (digdirator's `Hash()`).
    #[serde(
        rename = "synchronizationHash",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_hash: Option<String>,
    /// `spec.secretName` at the last successful synchronization.
    #[serde(
        rename = "synchronizationSecretName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_secret_name: Option<String>,
    /// The last known state during synchronization (an event reason such as `Synchronized`).
    #[serde(
        rename = "synchronizationState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_state: Option<String>,
    /// The last time the resource was synchronized successfully.
    #[serde(
        rename = "synchronizationTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_time: Option<Time>,
}
