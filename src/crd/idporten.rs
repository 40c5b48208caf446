//! `IDPortenClient` (`nais.io/v1`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DigdiratorStatus;

/// `IDPortenClientSpec`: the desired state of an ID-porten client.
///
/// Fields are declared in liberator's Go struct order, so serializing the spec gives the same key order as
/// digdirator's hash input (digdirator.md §1.6).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "nais.io",
    version = "v1",
    kind = "IDPortenClient",
    namespaced,
    status = "DigdiratorStatus",
    shortname = "idportenclient",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct IDPortenClientSpec {
    /// Maximum lifetime in seconds of access tokens from ID-porten (1..=3600).
    #[serde(
        rename = "accessTokenLifetime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_token_lifetime: Option<i64>,
    /// URL to the client, shown as a 'back' button or on errors (pattern `IDPORTEN_URI_PATTERN`).
    #[serde(rename = "clientURI", default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Client name registered at Digdir.
    #[serde(
        rename = "clientName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_name: Option<String>,
    /// Integration type; immutable (CEL `self == oldSelf`); defaults to `idporten`.
    #[serde(rename = "integrationType", default)]
    pub integration_type: IntegrationType,
    /// URL that ID-porten calls when another client in the same session logs out.
    #[serde(
        rename = "frontchannelLogoutURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub frontchannel_logout_uri: Option<String>,
    /// Valid URIs to redirect to after logout.
    #[serde(
        rename = "postLogoutRedirectURIs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Deprecated single redirect URI; merged into `redirectURIs`.
    #[serde(
        rename = "redirectURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_uri: Option<String>,
    /// Redirect URIs registered at Digdir.
    #[serde(
        rename = "redirectURIs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_uris: Option<Vec<String>>,
    /// Name of the Secret to write the credentials into (required; may be empty per the schema).
    #[serde(rename = "secretName")]
    pub secret_name: String,
    /// OAuth2 scopes registered on the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Maximum session lifetime in seconds (3600..=28800).
    #[serde(
        rename = "sessionLifetime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_lifetime: Option<i64>,
    /// Disables SSO for this client.
    #[serde(
        rename = "ssoDisabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sso_disabled: Option<bool>,
}

/// `spec.integrationType` of an [`IDPortenClient`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum IntegrationType {
    #[serde(rename = "krr")]
    Krr,
    #[default]
    #[serde(rename = "idporten")]
    Idporten,
    #[serde(rename = "api_klient")]
    ApiKlient,
}

impl IntegrationType {
    /// The wire value (`krr`, `idporten`, `api_klient`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Krr => "krr",
            Self::Idporten => "idporten",
            Self::ApiKlient => "api_klient",
        }
    }
}

/// The pattern liberator puts on every ID-porten URI field (Go RE2 semantics; unanchored alternation).
pub const IDPORTEN_URI_PATTERN: &str = r"^(https:\/\/)|(http:\/\/localhost\:).+$";
