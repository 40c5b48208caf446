//! `AzureAdApplication` (`nais.io/v1`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `AzureAdApplicationSpec`: the desired state of an Entra ID application.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "nais.io",
    version = "v1",
    kind = "AzureAdApplication",
    namespaced,
    status = "AzureAdApplicationStatus",
    shortname = "azureapp",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct AzureAdApplicationSpec {
    /// Whether all users in the tenant may access the application (default false).
    #[serde(
        rename = "allowAllUsers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_all_users: Option<bool>,
    /// Extra configuration of the claims in issued tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<AzureAdClaims>,
    /// Trust relationships with external identity providers (max 20, keyed by `name`, (issuer, subject)
    /// unique).
    #[serde(
        rename = "federatedCredentials",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub federated_credentials: Option<Vec<AzureAdFederatedCredential>>,
    /// Which groups are emitted in the `groups` claim.
    #[serde(
        rename = "groupMembershipClaims",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub group_membership_claims: Option<GroupMembershipClaims>,
    /// Front-channel logout URL (not validated by the schema).
    #[serde(rename = "logoutUrl", default, skip_serializing_if = "Option::is_none")]
    pub logout_url: Option<String>,
    /// Applications allowed to obtain tokens for this one.
    #[serde(
        rename = "preAuthorizedApplications",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_authorized_applications: Option<Vec<AccessPolicyInboundRule>>,
    /// Reply (redirect) URLs.
    #[serde(rename = "replyUrls", default, skip_serializing_if = "Option::is_none")]
    pub reply_urls: Option<Vec<AzureAdReplyUrl>>,
    /// Prefix replacing `AZURE` in the Secret's keys.
    #[serde(
        rename = "secretKeyPrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_key_prefix: Option<String>,
    /// Name of the Secret to write the credentials into (required; may be empty per the schema).
    #[serde(rename = "secretName")]
    pub secret_name: String,
    /// Removed from liberator in 2026; still declared so older manifests pass kubectl's strict field
    /// validation. **Ignored** by portvakt: it has no effect on credentials or cleanup.
    #[serde(
        rename = "secretProtected",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_protected: Option<bool>,
    /// Register redirect URIs as a single-page application (`spa`) instead of `web`.
    #[serde(
        rename = "singlePageApplication",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub single_page_application: Option<bool>,
    /// Tenant alias selecting which configured tenant to target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `spec.claims`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureAdClaims {
    /// Deprecated and ignored (`NAVident`, `azp_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Vec<AzureAdExtraClaim>>,
    /// Groups emitted in the `groups` claim and assigned to the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<AzureAdGroup>>,
}

/// `spec.claims.extra[]` (deprecated, ignored).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AzureAdExtraClaim {
    #[serde(rename = "NAVident")]
    NavIdent,
    #[serde(rename = "azp_name")]
    AzpName,
}

/// `spec.claims.groups[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AzureAdGroup {
    /// The group's object ID in Entra ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `spec.federatedCredentials[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AzureAdFederatedCredential {
    /// Audience of the external token (1..=600 chars).
    pub audience: String,
    /// URL of the external identity provider (1..=600 chars).
    pub issuer: String,
    /// Unique name of the credential (1..=120 chars); the list-map key.
    pub name: String,
    /// Identifier of the external workload (1..=600 chars).
    pub subject: String,
}

/// `spec.groupMembershipClaims`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GroupMembershipClaims {
    None,
    SecurityGroup,
    ApplicationGroup,
    DirectoryRole,
    All,
}

impl GroupMembershipClaims {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::SecurityGroup => "SecurityGroup",
            Self::ApplicationGroup => "ApplicationGroup",
            Self::DirectoryRole => "DirectoryRole",
            Self::All => "All",
        }
    }
}

/// `AccessPolicyRule`: an application, optionally in another namespace or cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AccessPolicyRule {
    pub application: String,
    /// Defaults to the namespace of the referring resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Defaults to the cluster of the referring resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// `AccessPolicyInboundRule`: `spec.preAuthorizedApplications[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AccessPolicyInboundRule {
    pub application: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<AccessPolicyPermissions>,
}

impl AccessPolicyInboundRule {
    /// The rule without its permissions.
    pub fn rule(&self) -> AccessPolicyRule {
        AccessPolicyRule {
            application: self.application.clone(),
            namespace: self.namespace.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// `spec.preAuthorizedApplications[].permissions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AccessPolicyPermissions {
    /// Custom roles (pattern `^[a-z0-9-_./]+$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Custom scopes (pattern `^[a-z0-9-_./]+$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `spec.replyUrls[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AzureAdReplyUrl {
    /// Pattern `^https?:\/\/.+$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `AzureAdApplicationStatus`: azurerator's status fields plus `observedGeneration` and `conditions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureAdApplicationStatus {
    /// Key IDs of the certificate credentials in use.
    #[serde(
        rename = "certificateKeyIds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_key_ids: Option<Vec<String>>,
    /// The application's client ID (`appId`).
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Standard conditions (portvakt addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The ID of the processing transaction last performed on this resource.
    #[serde(
        rename = "correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    /// The application object's ID.
    #[serde(rename = "objectId", default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The `metadata.generation` most recently observed (portvakt addition).
    #[serde(
        rename = "observedGeneration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// Key IDs of the password credentials in use.
    #[serde(
        rename = "passwordKeyIds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub password_key_ids: Option<Vec<String>>,
    /// Desired pre-authorized apps, split by whether they were found.
    #[serde(
        rename = "preAuthorizedApps",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_authorized_apps: Option<AzureAdPreAuthorizedApps>,
    /// The service principal's object ID.
    #[serde(
        rename = "servicePrincipalId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_principal_id: Option<String>,
    /// The spec hash (azurerator.md §2.3).
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
    /// The last time credentials were added or rotated.
    #[serde(
        rename = "synchronizationSecretRotationTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_secret_rotation_time: Option<Time>,
    /// The last known synchronization state (an event reason).
    #[serde(
        rename = "synchronizationState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_state: Option<String>,
    /// The tenant ID synchronized to.
    #[serde(
        rename = "synchronizationTenant",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_tenant: Option<String>,
    /// The tenant alias synchronized to.
    #[serde(
        rename = "synchronizationTenantName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_tenant_name: Option<String>,
    /// The last successful synchronization.
    #[serde(
        rename = "synchronizationTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub synchronization_time: Option<Time>,
}

/// `status.preAuthorizedApps`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureAdPreAuthorizedApps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<Vec<AzureAdPreAuthorizedApp>>,
    #[serde(
        rename = "assignedCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unassigned: Option<Vec<AzureAdPreAuthorizedApp>>,
    #[serde(
        rename = "unassignedCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub unassigned_count: Option<i64>,
}

/// One item of `status.preAuthorizedApps.assigned`/`unassigned`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct AzureAdPreAuthorizedApp {
    #[serde(
        rename = "accessPolicyRule",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_policy_rule: Option<AccessPolicyRule>,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Human-readable detail about the app's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(
        rename = "servicePrincipalObjectId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_principal_object_id: Option<String>,
}
