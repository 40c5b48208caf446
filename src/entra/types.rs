//! Microsoft Graph v1.0 wire types: what Graph returns (unknown fields ignored, `null` collections
//! read as empty) and what the client sends.
//!
//! Patch types ([`ApplicationPatch`], [`ApiApplicationPatch`], …) serialise only the fields that are
//! set, because Graph keeps whatever a PATCH leaves out; a collection that is set is sent whole
//! (`Some(vec![])` clears it), because Graph replaces collections.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A page of a Graph collection.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// An application (app registration).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Application {
    /// The object id.
    pub id: String,
    /// The client id.
    pub app_id: String,
    pub display_name: String,
    pub unique_name: Option<String>,
    pub description: Option<String>,
    pub notes: Option<String>,
    pub sign_in_audience: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub identifier_uris: Vec<String>,
    pub group_membership_claims: Option<String>,
    pub api: Option<ApiApplication>,
    #[serde(deserialize_with = "null_as_default")]
    pub app_roles: Vec<AppRole>,
    pub web: Option<WebApplication>,
    pub spa: Option<SpaApplication>,
    pub optional_claims: Option<OptionalClaims>,
    #[serde(deserialize_with = "null_as_default")]
    pub required_resource_access: Vec<RequiredResourceAccess>,
    #[serde(deserialize_with = "null_as_default")]
    pub key_credentials: Vec<KeyCredential>,
    #[serde(deserialize_with = "null_as_default")]
    pub password_credentials: Vec<PasswordCredential>,
    pub created_date_time: Option<String>,
}

impl Application {
    /// `api.oauth2PermissionScopes` (empty when unset).
    pub fn scopes(&self) -> &[PermissionScope] {
        self.api
            .as_ref()
            .map(|a| a.oauth2_permission_scopes.as_slice())
            .unwrap_or_default()
    }

    /// `api.preAuthorizedApplications` (empty when unset).
    pub fn pre_authorized_applications(&self) -> &[PreAuthorizedApplication] {
        self.api
            .as_ref()
            .map(|a| a.pre_authorized_applications.as_slice())
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiApplication {
    pub accept_mapped_claims: Option<bool>,
    #[serde(deserialize_with = "null_as_default")]
    pub known_client_applications: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub oauth2_permission_scopes: Vec<PermissionScope>,
    #[serde(deserialize_with = "null_as_default")]
    pub pre_authorized_applications: Vec<PreAuthorizedApplication>,
    pub requested_access_token_version: Option<i32>,
}

/// A delegated permission (`api.oauth2PermissionScopes[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PermissionScope {
    pub id: String,
    pub value: String,
    /// `User` or `Admin`.
    #[serde(rename = "type")]
    pub kind: String,
    pub is_enabled: bool,
    pub admin_consent_display_name: Option<String>,
    pub admin_consent_description: Option<String>,
    pub user_consent_display_name: Option<String>,
    pub user_consent_description: Option<String>,
}

/// An app role (`appRoles[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppRole {
    pub id: String,
    pub value: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// `User` and/or `Application`.
    #[serde(deserialize_with = "null_as_default")]
    pub allowed_member_types: Vec<String>,
    pub is_enabled: bool,
    /// Read-only: never sent back.
    #[serde(skip_serializing)]
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreAuthorizedApplication {
    pub app_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub delegated_permission_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebApplication {
    pub home_page_url: Option<String>,
    pub logout_url: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub redirect_uris: Vec<String>,
    pub implicit_grant_settings: Option<ImplicitGrantSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SpaApplication {
    #[serde(deserialize_with = "null_as_default")]
    pub redirect_uris: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImplicitGrantSettings {
    pub enable_access_token_issuance: bool,
    pub enable_id_token_issuance: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OptionalClaims {
    #[serde(deserialize_with = "null_as_default")]
    pub id_token: Vec<OptionalClaim>,
    #[serde(deserialize_with = "null_as_default")]
    pub access_token: Vec<OptionalClaim>,
    #[serde(deserialize_with = "null_as_default")]
    pub saml2_token: Vec<OptionalClaim>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OptionalClaim {
    pub name: String,
    pub essential: bool,
    pub source: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub additional_properties: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequiredResourceAccess {
    pub resource_app_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub resource_access: Vec<ResourceAccess>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceAccess {
    pub id: String,
    /// `Scope` or `Role`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A certificate credential. Graph returns `key` only when asked for (`$select=keyCredentials`);
/// a PATCH of `keyCredentials` must send every certificate that stays with its `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyCredential {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `AsymmetricX509Cert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Verify`.
    pub usage: String,
    /// Standard base64 of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<String>,
    /// Read back from Graph (the thumbprint); not sent.
    #[serde(skip_serializing)]
    pub custom_key_identifier: Option<String>,
}

impl KeyCredential {
    /// A new certificate credential (`AsymmetricX509Cert`, `Verify`) for the DER certificate `der`,
    /// with a fresh keyId.
    pub fn certificate(der: &[u8], display_name: impl Into<String>) -> Self {
        use base64::Engine as _;
        Self {
            key_id: Some(uuid::Uuid::new_v4().to_string()),
            display_name: Some(display_name.into()),
            kind: "AsymmetricX509Cert".into(),
            usage: "Verify".into(),
            key: Some(base64::engine::general_purpose::STANDARD.encode(der)),
            start_date_time: None,
            end_date_time: None,
            custom_key_identifier: None,
        }
    }
}

/// A client secret's text. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// The secret itself, for the Secret. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// A password credential. `secret_text` is set only in the answer to addPassword.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordCredential {
    pub key_id: String,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
    #[serde(skip_serializing)]
    pub secret_text: Option<SecretText>,
}

/// The body of addPassword.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPasswordCredential {
    /// Should be unique on the app (e.g. `azurerator-<RFC3339 time>`): after an addPassword whose
    /// answer was lost, the client finds the unusable credential by this name and removes it.
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<String>,
}

/// What a PATCH (or POST, upsert) of an application sends: only what is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_uris: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_membership_claims: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiApplicationPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_roles: Option<Vec<AppRole>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<WebApplicationPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spa: Option<SpaApplicationPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional_claims: Option<OptionalClaims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_resource_access: Option<Vec<RequiredResourceAccess>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_credentials: Option<Vec<KeyCredential>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiApplicationPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_mapped_claims: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_client_applications: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2_permission_scopes: Option<Vec<PermissionScope>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_authorized_applications: Option<Vec<PreAuthorizedApplication>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_access_token_version: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebApplicationPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_page_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logout_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicit_grant_settings: Option<ImplicitGrantSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaApplicationPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
}

/// A service principal (enterprise application).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: Option<String>,
    pub account_enabled: Option<bool>,
    pub app_role_assignment_required: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub service_principal_names: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub app_roles: Vec<AppRole>,
    #[serde(deserialize_with = "null_as_default")]
    pub oauth2_permission_scopes: Vec<PermissionScope>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewServicePrincipal {
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_assignment_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_assignment_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_security_attributes: Option<serde_json::Value>,
}

/// An app role assignment (on a resource's `appRoleAssignedTo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    pub principal_id: String,
    /// `ServicePrincipal`, `Group` or `User`.
    pub principal_type: Option<String>,
    pub principal_display_name: Option<String>,
    pub resource_id: String,
    pub resource_display_name: Option<String>,
    pub created_date_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAppRoleAssignment {
    /// The service principal, group or user given the role.
    pub principal_id: String,
    /// The resource's service principal (the one in the URL).
    pub resource_id: String,
    /// The role; [`DEFAULT_APP_ROLE_ID`] for "default access".
    pub app_role_id: String,
}

/// The "default access" app role id (groups are assigned it).
pub const DEFAULT_APP_ROLE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// A delegated permission grant (admin consent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuth2PermissionGrant {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The client's service principal id.
    pub client_id: String,
    /// `AllPrincipals` or `Principal`.
    pub consent_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The resource's service principal id (Microsoft Graph's in the tenant).
    pub resource_id: String,
    /// Space-separated scope values.
    pub scope: String,
}

/// A directory object as `owners` lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectoryObject {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
    #[serde(rename = "appId")]
    pub app_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub mail_nickname: Option<String>,
    pub security_enabled: Option<bool>,
}

/// A federated identity credential of an application.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FederatedIdentityCredential {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(deserialize_with = "null_as_default")]
    pub audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the upsert by uniqueName did.
#[derive(Clone, Debug, PartialEq)]
pub enum UpsertOutcome {
    /// 201: the app did not exist and was created.
    Created(Box<Application>),
    /// 204: the app existed and was updated.
    Updated,
}

/// How [`super::GraphClient::ensure_application`] came by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// Found by display name (an app azurerator or an earlier run made): nothing was written.
    Found,
    /// Created now.
    Created,
    /// Not found by display name but present under its uniqueName (an earlier attempt created it and
    /// reads have not caught up, or its display name changed): updated with the body.
    Recovered,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnsuredApplication {
    pub application: Application,
    pub outcome: EnsureOutcome,
}

/// What [`super::GraphClient::replace_permissions`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionChange {
    /// PATCHes sent (1, or 2 when something had to be disabled before removal).
    pub patches: u32,
    /// Ids of scopes and roles that were disabled and then removed.
    pub removed: Vec<String>,
    /// appIds whose pre-authorization lost a removed scope.
    pub pre_authorizations_trimmed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_tolerates_nulls_and_unknown_fields_and_patches_send_only_what_is_set() {
        let app: Application = serde_json::from_str(
            r#"{"id":"o","appId":"a","displayName":"c:n:x","identifierUris":null,"tags":["t"],
                "appRoles":[{"id":"r","value":"v","allowedMemberTypes":["Application"],"isEnabled":true,"origin":"Application"}],
                "api":{"oauth2PermissionScopes":null,"requestedAccessTokenVersion":2},"somethingNew":1}"#,
        )
        .unwrap();
        assert!(app.identifier_uris.is_empty());
        assert_eq!(app.app_roles[0].origin.as_deref(), Some("Application"));
        assert!(app.scopes().is_empty());
        let role = serde_json::to_value(&app.app_roles[0]).unwrap();
        assert!(role.get("origin").is_none(), "origin is read-only");

        let patch = ApplicationPatch {
            api: Some(ApiApplicationPatch {
                pre_authorized_applications: Some(vec![]),
                ..Default::default()
            }),
            tags: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"tags": [], "api": {"preAuthorizedApplications": []}})
        );
        let p: PasswordCredential =
            serde_json::from_str(r#"{"keyId":"k","secretText":"abc~very-secret"}"#).unwrap();
        assert!(!format!("{p:?}").contains("very-secret"));
        assert_eq!(p.secret_text.unwrap().expose(), "abc~very-secret");
    }
}
