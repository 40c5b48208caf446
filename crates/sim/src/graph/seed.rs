//! What the simulated Entra tenant holds when it starts: the tenant, the operator's own app registration
//! (with a client secret and Microsoft Graph application permissions), Microsoft Graph's service
//! principal, groups, other apps (e.g. another cluster's, already created by azurerator) and trusted
//! issuers for federated credentials.
//!
//! Loadable from JSON like the Digdir seed; every field has a default, so a file only needs what it
//! changes. The default names what `tests/data/examples/azureadapplication.yaml` refers to: its two
//! groups and the app `atgcp1-dev:other-namespace:other-app`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Microsoft Graph's appId (the same in every tenant).
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Microsoft Graph's resource URI (`https://graph.microsoft.com/.default` asks for it).
pub const MICROSOFT_GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// azurerator's fixed ids of the two permissions every app exposes.
pub const ACCESS_AS_APPLICATION_ID: &str = "00000001-abcd-9001-0000-000000000000";
pub const DEFAULT_ACCESS_ID: &str = "00000000-1337-d34d-b33f-000000000000";

/// The tenant's policy for newly added identifier URIs (identifier-uri-restrictions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentifierUriPolicy {
    /// No restriction beyond uniqueness and format.
    None,
    /// `uriAdditionWithoutUniqueTenantIdentifier` (enabled by Microsoft in 2025): a new URI on an app
    /// that receives v1 tokens must contain the tenant id, the app id or a verified domain.
    #[default]
    UniqueTenantIdentifier,
    /// `nonDefaultUriAddition`: only `api://{appId}` or `api://{tenantId}/{appId}` on apps that receive
    /// v1 tokens.
    DefaultOnly,
}

/// A group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct SeedGroup {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
}

/// An app registration (with a service principal unless `service_principal` is false).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SeedApp {
    pub display_name: String,
    /// A fresh GUID when empty.
    pub app_id: String,
    /// A fresh GUID when empty.
    pub object_id: String,
    pub unique_name: Option<String>,
    pub tags: Vec<String>,
    /// `api://{appId}` is added in front when `default_identifier_uri` is set.
    pub identifier_uris: Vec<String>,
    pub default_identifier_uri: bool,
    /// Each value becomes an app role (member type Application) and a delegated scope with the same id,
    /// as azurerator makes them. `access_as_application` and `defaultaccess` get azurerator's fixed ids.
    pub permissions: Vec<String>,
    pub requested_access_token_version: Option<i64>,
    pub service_principal: bool,
    pub app_role_assignment_required: bool,
    /// A client secret the app can use at the token endpoint (none when empty).
    pub client_secret: String,
}

impl Default for SeedApp {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            app_id: String::new(),
            object_id: String::new(),
            unique_name: None,
            tags: vec![],
            identifier_uris: vec![],
            default_identifier_uri: true,
            permissions: vec![],
            requested_access_token_version: Some(2),
            service_principal: true,
            app_role_assignment_required: false,
            client_secret: String::new(),
        }
    }
}

/// An external issuer whose tokens federated identity credentials may trust (Kubernetes, Google),
/// with its public keys (a JWKS). Entra fetches them from the issuer's discovery document; the
/// simulator is told them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeedIssuer {
    pub issuer: String,
    pub jwks: Value,
}

/// Seed data of the simulated tenant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GraphSeed {
    pub tenant_id: String,
    /// The initial domain (`*.onmicrosoft.com`); also accepted in place of the tenant id in URLs.
    pub tenant_name: String,
    /// Verified domains besides the initial one.
    pub verified_domains: Vec<String>,
    /// The operator's app registration; its Graph permissions are assigned and `client_secret` is
    /// registered on it (a fresh one when empty).
    pub operator: SeedApp,
    pub groups: Vec<SeedGroup>,
    pub apps: Vec<SeedApp>,
    pub trusted_issuers: Vec<SeedIssuer>,
    pub identifier_uri_policy: IdentifierUriPolicy,
    /// Seconds (by the shared clock) a new application or service principal stays invisible to reads.
    pub eventual_consistency_secs: u64,
    /// Default page size of collections (Graph's is 100).
    pub page_size: usize,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: i64,
}

impl Default for GraphSeed {
    fn default() -> Self {
        Self {
            tenant_id: "6a3c1f0e-2b4d-4e8f-9a1b-3c5d7e9f1a2b".into(),
            tenant_name: "portvaktsim.onmicrosoft.com".into(),
            verified_domains: vec!["portvakt.example".into()],
            operator: SeedApp {
                display_name: "portvakt".into(),
                app_id: "b7f1d3a5-9c2e-4f6a-8b0d-1e3f5a7c9b2d".into(),
                default_identifier_uri: false,
                permissions: vec![],
                ..SeedApp::default()
            },
            groups: vec![
                SeedGroup {
                    id: "2720e397-081d-4d9b-852e-0d81f45a304f".into(),
                    display_name: "tilgangsstyring-main-developers".into(),
                    description: Some("Developers of tilgangsstyring-main".into()),
                },
                SeedGroup {
                    id: "c3c94454-aefc-44f9-9076-58ea47547941".into(),
                    display_name: "tilgangsstyring-main-readers".into(),
                    description: Some("Readers of tilgangsstyring-main".into()),
                },
            ],
            apps: vec![SeedApp {
                display_name: "atgcp1-dev:other-namespace:other-app".into(),
                app_id: "3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f".into(),
                tags: vec![
                    "azurerator_appreg".into(),
                    "WindowsAzureActiveDirectoryIntegratedApp".into(),
                ],
                identifier_uris: vec!["api://atgcp1-dev.other-namespace.other-app".into()],
                permissions: vec!["access_as_application".into(), "defaultaccess".into()],
                app_role_assignment_required: true,
                ..SeedApp::default()
            }],
            trusted_issuers: vec![],
            identifier_uri_policy: IdentifierUriPolicy::default(),
            eventual_consistency_secs: 0,
            page_size: 100,
            token_lifetime_secs: 3599,
        }
    }
}

impl GraphSeed {
    /// Parses a seed from JSON; absent fields keep their defaults.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Microsoft Graph's application permissions the operator is granted, with their well-known ids.
pub const OPERATOR_GRAPH_ROLES: &[(&str, &str)] = &[
    (
        "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
        "Application.ReadWrite.All",
    ),
    (
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "AppRoleAssignment.ReadWrite.All",
    ),
    (
        "8e8e4742-1d95-4f68-9d56-6ee75648c72a",
        "DelegatedPermissionGrant.ReadWrite.All",
    ),
    (
        "98830695-27a2-44f7-8c18-0c3ebc9698f6",
        "GroupMember.Read.All",
    ),
];

/// Microsoft Graph's delegated scopes azurerator consents to (User.Read, openid, GroupMember.Read.All).
pub const GRAPH_SCOPES: &[(&str, &str)] = &[
    ("e1fe6dd8-ba31-4d61-89e7-88639da4683d", "User.Read"),
    ("37f7f235-527c-4136-accd-4a02d197296e", "openid"),
    (
        "bc024368-1153-4739-b217-4326f2e966d0",
        "GroupMember.Read.All",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_keeps_defaults() {
        let seed = GraphSeed::from_json(
            r#"{"eventualConsistencySecs": 30, "identifierUriPolicy": "defaultOnly",
                "groups": [{"id": "g-1", "displayName": "one"}]}"#,
        )
        .expect("valid seed");
        assert_eq!(seed.eventual_consistency_secs, 30);
        assert_eq!(seed.identifier_uri_policy, IdentifierUriPolicy::DefaultOnly);
        assert_eq!(seed.groups.len(), 1);
        assert_eq!(seed.page_size, 100);
        assert_eq!(
            seed.apps[0].display_name,
            "atgcp1-dev:other-namespace:other-app"
        );
    }
}
