//! `MaskinportenClient` (`nais.io/v1`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DigdiratorStatus;

/// `MaskinportenClientSpec`: the desired state of a Maskinporten client.
///
/// Fields are declared in liberator's Go struct order (digdirator.md §1.6).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "nais.io",
    version = "v1",
    kind = "MaskinportenClient",
    namespaced,
    status = "DigdiratorStatus",
    shortname = "maskinportenclient",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct MaskinportenClientSpec {
    /// Client name registered at Digdir.
    #[serde(
        rename = "clientName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_name: Option<String>,
    /// Consumed and exposed scopes. Go always serializes this struct; treat `None` as empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<MaskinportenScope>,
    /// Name of the Secret to write the credentials into (required; may be empty per the schema).
    #[serde(rename = "secretName")]
    pub secret_name: String,
}

/// `spec.scopes`: scopes the client consumes and scopes it exposes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct MaskinportenScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumes: Option<Vec<ConsumedScope>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposes: Option<Vec<ExposedScope>>,
}

/// `spec.scopes.consumes[]`: a fully qualified scope the client may request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct ConsumedScope {
    pub name: String,
}

/// `spec.scopes.exposes[]`: a scope `<prefix>:<product><separator><name>` exposed to other organisations.
///
/// CEL on the object: `separator` must be `"/"` when `delegationSource` is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ExposedScope {
    /// `false` deactivates the scope at Digdir.
    pub enabled: bool,
    /// The subscope (pattern [`EXPOSED_SCOPE_NAME_PATTERN`]).
    pub name: String,
    /// The product area (pattern `^[a-z0-9]+$`).
    pub product: String,
    /// Max access token lifetime in seconds (30..=680); the operator defaults it to 30.
    #[serde(rename = "atMaxAge", default, skip_serializing_if = "Option::is_none")]
    pub at_max_age: Option<i64>,
    /// Allowed integrations (minItems 1); the operator defaults it to `["maskinporten"]`.
    #[serde(
        rename = "allowedIntegrations",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_integrations: Option<Vec<String>>,
    /// External organisations granted access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<ExposedScopeConsumer>>,
    /// Allow any organisation to access the scope.
    #[serde(
        rename = "accessibleForAll",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub accessible_for_all: Option<bool>,
    /// Delegation source (only `altinn`); requires `separator: "/"`.
    #[serde(
        rename = "delegationSource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delegation_source: Option<DelegationSource>,
    /// Separator between product and name: one of `/`, `:`, `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// `private` or `public` (the operator defaults it to public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<ScopeVisibility>,
}

/// `spec.scopes.exposes[].consumers[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct ExposedScopeConsumer {
    /// Nine-digit organisation number.
    pub orgno: String,
    /// Informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `spec.scopes.exposes[].delegationSource`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DelegationSource {
    #[serde(rename = "altinn")]
    Altinn,
}

impl DelegationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Altinn => "altinn",
        }
    }
}

/// `spec.scopes.exposes[].visibility`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ScopeVisibility {
    #[serde(rename = "private")]
    Private,
    #[serde(rename = "public")]
    Public,
}

impl ScopeVisibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
        }
    }
}

/// Pattern of `spec.scopes.exposes[].name` (Go RE2 semantics).
pub const EXPOSED_SCOPE_NAME_PATTERN: &str =
    r"^([a-zæøå0-9]+\/?)+(\:[a-zæøå0-9]+)*[a-zæøå0-9]+(\.[a-zæøå0-9]+)*$";
