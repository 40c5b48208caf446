//! The application portvakt wants in Entra ID for a resource (what azurerator puts on every app,
//! azurerator.md §3.1–3.3), and the PATCH that makes an observed application so.
//!
//! - identity: display name `<cluster>:<namespace>:<name>`; `signInAudience: AzureADMyOrg`;
//!   `api.requestedAccessTokenVersion: 2`; tags `azurerator_appreg` and
//!   `WindowsAzureActiveDirectoryIntegratedApp` (others' tags are kept);
//! - identifier URIs `api://<clientId>` and `api://<cluster>.<namespace>.<name>` added, never removed;
//! - optional claims `idtyp` (access token) and `sid` (ID token) merged into what is there;
//! - `requiredResourceAccess` (User.Read, openid, GroupMember.Read.All) set on create only, as
//!   azurerator does;
//! - redirect URIs from `replyUrls` (valid URLs, de-duplicated) on `web`, or on `spa` with
//!   `singlePageApplication`; both lists are sent when either differs, so the other is cleared;
//!   `web.logoutUrl`; implicit grants off;
//! - `groupMembershipClaims`: the spec's, else the configured default where Graph has none;
//! - permissions: `defaultaccess` and `access_as_application` with azurerator's fixed ids, plus every
//!   scope and role name of `preAuthorizedApplications[].permissions`; each name is both a scope (type
//!   Admin) and an app role (member type Application) with one shared id; existing ids are kept by
//!   name, new ones derived from the app's identity and the name (a repeated pass makes the same id).
//!
//! [`update`] compares field by field and sets only what differs: an unchanged app gives an empty
//! patch, so a steady-state pass writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use sha2::Digest as _;

use super::Config;
use crate::crd::AzureAdApplicationSpec;
use crate::entra::{
    ApiApplicationPatch, AppRole, Application, ApplicationPatch, ImplicitGrantSettings,
    OptionalClaim, OptionalClaims, PermissionScope, RequiredResourceAccess, ResourceAccess,
    SpaApplicationPatch, WebApplicationPatch,
};

/// azurerator's fixed id of the `access_as_application` permission.
pub const ACCESS_AS_APPLICATION: &str = "access_as_application";
pub const ACCESS_AS_APPLICATION_ID: &str = "00000001-abcd-9001-0000-000000000000";
/// azurerator's fixed id of the `defaultaccess` permission.
pub const DEFAULT_ACCESS: &str = "defaultaccess";
pub const DEFAULT_ACCESS_ID: &str = "00000000-1337-d34d-b33f-000000000000";
/// Tags on every app.
pub const TAGS: [&str; 2] = [
    super::MANAGED_TAG,
    "WindowsAzureActiveDirectoryIntegratedApp",
];
/// Microsoft Graph's appId and the delegated scopes every app asks for (User.Read, openid,
/// GroupMember.Read.All).
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const GRAPH_SCOPE_IDS: [&str; 3] = [
    "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    "37f7f235-527c-4136-accd-4a02d197296e",
    "bc024368-1153-4739-b217-4326f2e966d0",
];
/// The delegated grant's scope (azurerator's `oauth2permissiongrant.go`).
pub const GRANT_SCOPE: &str = "openid User.Read GroupMember.Read.All";
/// `groupMembershipClaims` values Graph accepts (normalised case-insensitively, as azurerator does).
pub const GROUP_MEMBERSHIP_CLAIMS: [&str; 5] = [
    "All",
    "DirectoryRole",
    "SecurityGroup",
    "ApplicationGroup",
    "None",
];

/// `value` normalised to Graph's spelling, or `None` when it is not one of
/// [`GROUP_MEMBERSHIP_CLAIMS`].
pub fn normalise_group_membership_claims(value: &str) -> Option<&'static str> {
    GROUP_MEMBERSHIP_CLAIMS
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(value.trim()))
}

/// The application a resource wants, independent of what Graph holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub display_name: String,
    /// `api://<cluster>.<namespace>.<name>` (the other default, `api://<clientId>`, needs the client id).
    pub readable_identifier_uri: String,
    pub web_redirect_uris: Vec<String>,
    pub spa_redirect_uris: Vec<String>,
    pub logout_url: String,
    /// The spec's `groupMembershipClaims` (overrides Graph's), or `None` (Graph's kept, the default
    /// where it has none).
    pub group_membership_claims: Option<String>,
    pub default_group_membership_claims: String,
    /// Permission names (always `access_as_application` and `defaultaccess`).
    pub permissions: BTreeSet<String>,
}

/// The redirect URIs of `replyUrls`: valid http(s) URLs, each once, in order.
pub fn redirect_uris(spec: &AzureAdApplicationSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in spec.reply_urls.iter().flatten() {
        let Some(raw) = u.url.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            continue;
        };
        let ok = url::Url::parse(raw)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
        if ok && !out.iter().any(|o| o == raw) {
            out.push(raw.to_string());
        }
    }
    out
}

/// Every permission name: the two defaults and each scope and role the pre-authorized apps are given.
pub fn permission_names(spec: &AzureAdApplicationSpec) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [ACCESS_AS_APPLICATION, DEFAULT_ACCESS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for rule in spec.pre_authorized_applications.iter().flatten() {
        if let Some(p) = &rule.permissions {
            for n in p.scopes.iter().flatten().chain(p.roles.iter().flatten()) {
                let n = n.trim();
                if !n.is_empty() {
                    names.insert(n.to_string());
                }
            }
        }
    }
    names
}

/// The resource's desired application.
pub fn desired(
    cfg: &Config,
    namespace: &str,
    name: &str,
    spec: &AzureAdApplicationSpec,
) -> Desired {
    let uris = redirect_uris(spec);
    let spa = spec.single_page_application == Some(true);
    Desired {
        display_name: super::display_name(&cfg.cluster_name, namespace, name),
        readable_identifier_uri: format!("api://{}.{namespace}.{name}", cfg.cluster_name),
        web_redirect_uris: if spa { vec![] } else { uris.clone() },
        spa_redirect_uris: if spa { uris } else { vec![] },
        logout_url: spec.logout_url.clone().unwrap_or_default(),
        group_membership_claims: spec.group_membership_claims.map(|g| g.as_str().to_string()),
        default_group_membership_claims: cfg.group_membership_claim_default.clone(),
        permissions: permission_names(spec),
    }
}

/// The id a new permission `value` gets on the app `display_name`: fixed for azurerator's two,
/// otherwise derived (a GUID from SHA-256), so every pass picks the same one.
pub fn permission_id(display_name: &str, value: &str) -> String {
    match value {
        ACCESS_AS_APPLICATION => ACCESS_AS_APPLICATION_ID.into(),
        DEFAULT_ACCESS => DEFAULT_ACCESS_ID.into(),
        _ => {
            let d = sha2::Sha256::digest(format!("{display_name}\n{value}").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            // RFC 4122 variant, version 8 (custom).
            b[6] = (b[6] & 0x0f) | 0x80;
            b[8] = (b[8] & 0x3f) | 0x80;
            uuid::Uuid::from_bytes(b).to_string()
        }
    }
}

fn scope(id: &str, value: &str) -> PermissionScope {
    PermissionScope {
        id: id.into(),
        value: value.into(),
        kind: "Admin".into(),
        is_enabled: true,
        admin_consent_display_name: Some(value.into()),
        admin_consent_description: Some(value.into()),
        user_consent_display_name: None,
        user_consent_description: None,
    }
}

fn role(id: &str, value: &str) -> AppRole {
    AppRole {
        id: id.into(),
        value: Some(value.into()),
        display_name: Some(value.into()),
        description: Some(value.into()),
        allowed_member_types: vec!["Application".into()],
        is_enabled: true,
        origin: None,
    }
}

/// The scopes and roles the app should have, keeping the ids Graph already has per name.
pub fn permissions(
    d: &Desired,
    observed: Option<&Application>,
) -> (Vec<PermissionScope>, Vec<AppRole>) {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    if let Some(app) = observed {
        for r in &app.app_roles {
            if let Some(v) = &r.value {
                ids.entry(v.clone()).or_insert_with(|| r.id.clone());
            }
        }
        for s in app.scopes() {
            ids.entry(s.value.clone()).or_insert_with(|| s.id.clone());
        }
    }
    let mut scopes = Vec::new();
    let mut roles = Vec::new();
    for name in &d.permissions {
        // azurerator's two keep their fixed ids whatever Graph holds.
        let id = match name.as_str() {
            ACCESS_AS_APPLICATION | DEFAULT_ACCESS => permission_id(&d.display_name, name),
            _ => ids
                .get(name)
                .cloned()
                .unwrap_or_else(|| permission_id(&d.display_name, name)),
        };
        scopes.push(scope(&id, name));
        roles.push(role(&id, name));
    }
    (scopes, roles)
}

/// The ids of the scope named `value` in `scopes`.
pub fn scope_id<'a>(scopes: &'a [PermissionScope], value: &str) -> Option<&'a str> {
    scopes
        .iter()
        .find(|s| s.value == value && s.is_enabled)
        .map(|s| s.id.as_str())
}

/// The role id named `value`.
pub fn role_id<'a>(roles: &'a [AppRole], value: &str) -> Option<&'a str> {
    roles
        .iter()
        .find(|r| r.value.as_deref() == Some(value) && r.is_enabled)
        .map(|r| r.id.as_str())
}

/// azurerator's optional claims: `idtyp` in access tokens, `sid` in ID tokens (essential).
pub fn default_optional_claims() -> OptionalClaims {
    let claim = |name: &str| OptionalClaim {
        name: name.into(),
        essential: true,
        source: None,
        additional_properties: vec![],
    };
    OptionalClaims {
        id_token: vec![claim("sid")],
        access_token: vec![claim("idtyp")],
        saml2_token: vec![],
    }
}

/// `existing` with the defaults merged in (a default replaces a claim of the same name).
pub fn merged_optional_claims(existing: Option<&OptionalClaims>) -> OptionalClaims {
    let defaults = default_optional_claims();
    let mut out = existing.cloned().unwrap_or_default();
    let merge = |list: &mut Vec<OptionalClaim>, add: &[OptionalClaim]| {
        for c in add {
            match list.iter_mut().find(|x| x.name == c.name) {
                Some(x) => *x = c.clone(),
                None => list.push(c.clone()),
            }
        }
    };
    merge(&mut out.id_token, &defaults.id_token);
    merge(&mut out.access_token, &defaults.access_token);
    out
}

/// The Graph delegated permissions every app asks for.
pub fn required_resource_access() -> Vec<RequiredResourceAccess> {
    vec![RequiredResourceAccess {
        resource_app_id: MICROSOFT_GRAPH_APP_ID.into(),
        resource_access: GRAPH_SCOPE_IDS
            .iter()
            .map(|id| ResourceAccess {
                id: (*id).into(),
                kind: "Scope".into(),
            })
            .collect(),
    }]
}

/// `identifierUris` the app should have: what it has, plus the two defaults.
pub fn identifier_uris(d: &Desired, observed: &[String], client_id: &str) -> Vec<String> {
    let mut out = observed.to_vec();
    for uri in [
        format!("api://{client_id}"),
        d.readable_identifier_uri.clone(),
    ] {
        if !out.iter().any(|u| u.eq_ignore_ascii_case(&uri)) {
            out.push(uri);
        }
    }
    out
}

fn tags(observed: &[String]) -> Vec<String> {
    let mut out = observed.to_vec();
    for t in TAGS {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

const NO_IMPLICIT_GRANTS: ImplicitGrantSettings = ImplicitGrantSettings {
    enable_access_token_issuance: false,
    enable_id_token_issuance: false,
};

/// The body of a new application (`identifierUris` and the pre-authorized apps come in a PATCH
/// after it, since they need its client id).
pub fn create_body(d: &Desired) -> ApplicationPatch {
    let (scopes, roles) = permissions(d, None);
    ApplicationPatch {
        display_name: Some(d.display_name.clone()),
        sign_in_audience: Some("AzureADMyOrg".into()),
        tags: Some(tags(&[])),
        group_membership_claims: Some(
            d.group_membership_claims
                .clone()
                .unwrap_or_else(|| d.default_group_membership_claims.clone()),
        ),
        api: Some(ApiApplicationPatch {
            requested_access_token_version: Some(2),
            oauth2_permission_scopes: Some(scopes),
            ..Default::default()
        }),
        app_roles: Some(roles),
        web: Some(WebApplicationPatch {
            logout_url: Some(d.logout_url.clone()),
            redirect_uris: Some(d.web_redirect_uris.clone()),
            implicit_grant_settings: Some(NO_IMPLICIT_GRANTS),
            ..Default::default()
        }),
        spa: Some(SpaApplicationPatch {
            redirect_uris: Some(d.spa_redirect_uris.clone()),
        }),
        optional_claims: Some(default_optional_claims()),
        required_resource_access: Some(required_resource_access()),
        ..Default::default()
    }
}

/// What has to change on an observed application.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    /// One PATCH with every plain field that differs (empty: nothing to send).
    pub patch: ApplicationPatch,
    /// The scopes and roles to set through the disable-then-remove replacement, when they differ.
    pub permissions: Option<(Vec<PermissionScope>, Vec<AppRole>)>,
    /// What differs, in words (for events, drift reports and `--observe`).
    pub fields: Vec<&'static str>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let b: BTreeSet<&str> = b.iter().map(String::as_str).collect();
    a == b
}

fn same_scopes(a: &[PermissionScope], b: &[PermissionScope]) -> bool {
    let key = |s: &PermissionScope| {
        (
            s.id.to_ascii_lowercase(),
            s.value.clone(),
            s.kind.clone(),
            s.is_enabled,
            s.admin_consent_display_name.clone(),
            s.admin_consent_description.clone(),
        )
    };
    let a: BTreeSet<_> = a.iter().map(key).collect();
    let b: BTreeSet<_> = b.iter().map(key).collect();
    a == b
}

fn same_roles(a: &[AppRole], b: &[AppRole]) -> bool {
    let key = |r: &AppRole| {
        let mut types = r.allowed_member_types.clone();
        types.sort();
        (
            r.id.to_ascii_lowercase(),
            r.value.clone(),
            r.display_name.clone(),
            r.description.clone(),
            types,
            r.is_enabled,
        )
    };
    let a: BTreeSet<_> = a.iter().map(key).collect();
    let b: BTreeSet<_> = b.iter().map(key).collect();
    a == b
}

/// What makes `app` (as Graph returned it) the desired application; `client_id` is its appId.
pub fn update(d: &Desired, app: &Application) -> Update {
    let mut u = Update::default();
    let p = &mut u.patch;
    if app.sign_in_audience.as_deref() != Some("AzureADMyOrg") {
        p.sign_in_audience = Some("AzureADMyOrg".into());
        u.fields.push("signInAudience");
    }
    let want_tags = tags(&app.tags);
    if want_tags.len() != app.tags.len() {
        p.tags = Some(want_tags);
        u.fields.push("tags");
    }
    let want_uris = identifier_uris(d, &app.identifier_uris, &app.app_id);
    if want_uris.len() != app.identifier_uris.len() {
        p.identifier_uris = Some(want_uris);
        u.fields.push("identifierUris");
    }
    let gmc = match (&d.group_membership_claims, &app.group_membership_claims) {
        (Some(want), have) if have.as_deref() != Some(want.as_str()) => Some(want.clone()),
        (None, None) => Some(d.default_group_membership_claims.clone()),
        _ => None,
    };
    if let Some(g) = gmc {
        p.group_membership_claims = Some(g);
        u.fields.push("groupMembershipClaims");
    }
    let version = app
        .api
        .as_ref()
        .and_then(|a| a.requested_access_token_version);
    if version != Some(2) {
        p.api = Some(ApiApplicationPatch {
            requested_access_token_version: Some(2),
            ..Default::default()
        });
        u.fields.push("api.requestedAccessTokenVersion");
    }
    let claims = merged_optional_claims(app.optional_claims.as_ref());
    if app.optional_claims.as_ref() != Some(&claims) {
        p.optional_claims = Some(claims);
        u.fields.push("optionalClaims");
    }
    let web = app.web.clone().unwrap_or_default();
    let spa = app.spa.clone().unwrap_or_default();
    let redirects_differ = !same_set(&web.redirect_uris, &d.web_redirect_uris)
        || !same_set(&spa.redirect_uris, &d.spa_redirect_uris);
    let logout_differs = web.logout_url.as_deref().unwrap_or_default() != d.logout_url;
    let implicit_differs = web.implicit_grant_settings.unwrap_or_default() != NO_IMPLICIT_GRANTS;
    if redirects_differ || logout_differs || implicit_differs {
        let mut w = WebApplicationPatch::default();
        if redirects_differ {
            // Both lists, so the one not in use is cleared (azurerator's redirecturi.go).
            w.redirect_uris = Some(d.web_redirect_uris.clone());
            p.spa = Some(SpaApplicationPatch {
                redirect_uris: Some(d.spa_redirect_uris.clone()),
            });
            u.fields.push("redirectUris");
        }
        if logout_differs {
            w.logout_url = Some(d.logout_url.clone());
            u.fields.push("web.logoutUrl");
        }
        if implicit_differs {
            w.implicit_grant_settings = Some(NO_IMPLICIT_GRANTS);
            u.fields.push("web.implicitGrantSettings");
        }
        p.web = Some(w);
    }
    let (scopes, roles) = permissions(d, Some(app));
    if !same_scopes(app.scopes(), &scopes) || !same_roles(&app.app_roles, &roles) {
        u.permissions = Some((scopes, roles));
        u.fields.push("permissions");
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccessPolicyInboundRule, AccessPolicyPermissions, AzureAdReplyUrl};
    use crate::entra::{ApiApplication, SpaApplication, WebApplication};

    fn cfg() -> Config {
        Config {
            cluster_name: "dev".into(),
            ..Config::default()
        }
    }

    fn spec() -> AzureAdApplicationSpec {
        AzureAdApplicationSpec {
            secret_name: "s".into(),
            reply_urls: Some(vec![
                AzureAdReplyUrl {
                    url: Some("https://app.example/oauth2/callback".into()),
                },
                AzureAdReplyUrl {
                    url: Some("https://app.example/oauth2/callback".into()),
                },
                AzureAdReplyUrl {
                    url: Some("not a url".into()),
                },
                AzureAdReplyUrl { url: None },
            ]),
            pre_authorized_applications: Some(vec![AccessPolicyInboundRule {
                application: "b".into(),
                permissions: Some(AccessPolicyPermissions {
                    scopes: Some(vec!["read".into()]),
                    roles: Some(vec!["admin".into(), "read".into()]),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    /// What Graph returns after creating `create_body(d)`, with identifier URIs set.
    fn as_created(d: &Desired) -> Application {
        let body = create_body(d);
        let mut app = Application {
            id: "obj".into(),
            app_id: "cid".into(),
            display_name: d.display_name.clone(),
            sign_in_audience: body.sign_in_audience.clone(),
            tags: body.tags.clone().unwrap(),
            group_membership_claims: body.group_membership_claims.clone(),
            app_roles: body.app_roles.clone().unwrap(),
            optional_claims: body.optional_claims.clone(),
            ..Default::default()
        };
        let api = body.api.unwrap();
        app.api = Some(ApiApplication {
            requested_access_token_version: Some(2),
            oauth2_permission_scopes: api.oauth2_permission_scopes.unwrap(),
            ..Default::default()
        });
        let web = body.web.unwrap();
        app.web = Some(WebApplication {
            logout_url: web.logout_url,
            redirect_uris: web.redirect_uris.unwrap(),
            implicit_grant_settings: web.implicit_grant_settings,
            home_page_url: None,
        });
        app.spa = Some(SpaApplication {
            redirect_uris: body.spa.unwrap().redirect_uris.unwrap(),
        });
        app.identifier_uris = identifier_uris(d, &[], "cid");
        app
    }

    #[test]
    fn the_desired_app_is_azurerators() {
        let d = desired(&cfg(), "team", "a", &spec());
        assert_eq!(d.display_name, "dev:team:a");
        assert_eq!(d.readable_identifier_uri, "api://dev.team.a");
        assert_eq!(
            d.web_redirect_uris,
            vec!["https://app.example/oauth2/callback"]
        );
        assert!(d.spa_redirect_uris.is_empty());
        let names: Vec<&str> = d.permissions.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            ["access_as_application", "admin", "defaultaccess", "read"]
        );
        let body = create_body(&d);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["signInAudience"], "AzureADMyOrg");
        assert_eq!(
            json["tags"],
            serde_json::json!([
                "azurerator_appreg",
                "WindowsAzureActiveDirectoryIntegratedApp"
            ])
        );
        assert_eq!(json["groupMembershipClaims"], "ApplicationGroup");
        assert_eq!(json["api"]["requestedAccessTokenVersion"], 2);
        assert_eq!(json["optionalClaims"]["accessToken"][0]["name"], "idtyp");
        assert_eq!(json["optionalClaims"]["idToken"][0]["name"], "sid");
        assert_eq!(
            json["requiredResourceAccess"][0]["resourceAccess"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(json["web"]["logoutUrl"], "");
        assert!(json.get("identifierUris").is_none(), "set after create");
        // Scopes and roles share ids per name; the defaults have azurerator's.
        let scopes = body
            .api
            .as_ref()
            .unwrap()
            .oauth2_permission_scopes
            .clone()
            .unwrap();
        let roles = body.app_roles.clone().unwrap();
        assert_eq!(scope_id(&scopes, "defaultaccess"), Some(DEFAULT_ACCESS_ID));
        assert_eq!(
            role_id(&roles, "access_as_application"),
            Some(ACCESS_AS_APPLICATION_ID)
        );
        assert_eq!(scope_id(&scopes, "read"), role_id(&roles, "read"));
        assert!(scopes.iter().all(|s| s.kind == "Admin" && s.is_enabled));
        assert!(
            roles
                .iter()
                .all(|r| r.allowed_member_types == vec!["Application".to_string()])
        );
    }

    #[test]
    fn spa_takes_the_redirect_uris_and_ids_are_stable() {
        let mut s = spec();
        s.single_page_application = Some(true);
        let d = desired(&cfg(), "team", "a", &s);
        assert!(d.web_redirect_uris.is_empty());
        assert_eq!(d.spa_redirect_uris.len(), 1);
        assert_eq!(
            permission_id("dev:team:a", "read"),
            permission_id("dev:team:a", "read")
        );
        assert_ne!(
            permission_id("dev:team:a", "read"),
            permission_id("dev:team:b", "read")
        );
        assert!(uuid::Uuid::parse_str(&permission_id("x", "y")).is_ok());
    }

    #[test]
    fn an_app_as_created_needs_no_update() {
        let d = desired(&cfg(), "team", "a", &spec());
        let app = as_created(&d);
        let u = update(&d, &app);
        assert!(u.is_empty(), "{:?}", u.fields);
        assert_eq!(
            serde_json::to_value(&u.patch).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn a_removed_redirect_uri_is_put_back_with_both_lists() {
        let d = desired(&cfg(), "team", "a", &spec());
        let mut app = as_created(&d);
        app.web.as_mut().unwrap().redirect_uris.clear();
        let u = update(&d, &app);
        assert_eq!(u.fields, vec!["redirectUris"]);
        let json = serde_json::to_value(&u.patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"web": {"redirectUris": ["https://app.example/oauth2/callback"]}, "spa": {"redirectUris": []}})
        );
    }

    #[test]
    fn existing_ids_and_foreign_uris_tags_and_claims_are_kept() {
        let d = desired(&cfg(), "team", "a", &spec());
        let mut app = as_created(&d);
        // An azurerator app: its custom scope has a random id; someone added a tag and a claim.
        for s in &mut app.api.as_mut().unwrap().oauth2_permission_scopes {
            if s.value == "read" {
                s.id = "11111111-1111-1111-1111-111111111111".into();
            }
        }
        for r in &mut app.app_roles {
            if r.value.as_deref() == Some("read") {
                r.id = "11111111-1111-1111-1111-111111111111".into();
            }
        }
        app.tags.push("team-tag".into());
        app.identifier_uris.push("api://legacy".into());
        app.optional_claims
            .as_mut()
            .unwrap()
            .id_token
            .push(OptionalClaim {
                name: "email".into(),
                ..Default::default()
            });
        assert!(update(&d, &app).is_empty(), "{:?}", update(&d, &app).fields);
        // An old app without the readable URI, the claims or groupMembershipClaims gets them.
        app.identifier_uris = vec!["api://cid".into()];
        app.optional_claims = None;
        app.group_membership_claims = None;
        let u = update(&d, &app);
        assert_eq!(
            u.fields,
            vec!["identifierUris", "groupMembershipClaims", "optionalClaims"]
        );
        assert_eq!(
            u.patch.identifier_uris.unwrap(),
            vec!["api://cid", "api://dev.team.a"]
        );
        assert_eq!(
            u.patch.group_membership_claims.as_deref(),
            Some("ApplicationGroup")
        );
    }

    #[test]
    fn a_dropped_permission_goes_through_the_replacement() {
        let d = desired(&cfg(), "team", "a", &spec());
        let app = as_created(&d);
        let mut s = spec();
        s.pre_authorized_applications = None;
        let d2 = desired(&cfg(), "team", "a", &s);
        let u = update(&d2, &app);
        assert_eq!(u.fields, vec!["permissions"]);
        let (scopes, roles) = u.permissions.unwrap();
        let values: Vec<&str> = scopes.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["access_as_application", "defaultaccess"]);
        assert_eq!(roles.len(), 2);
    }

    #[test]
    fn group_membership_claims_from_the_spec_override_and_values_normalise() {
        let mut s = spec();
        s.group_membership_claims = Some(crate::crd::GroupMembershipClaims::All);
        let d = desired(&cfg(), "team", "a", &s);
        let mut app = as_created(&d);
        app.group_membership_claims = Some("SecurityGroup".into());
        assert_eq!(
            update(&d, &app).patch.group_membership_claims.as_deref(),
            Some("All")
        );
        // Without a spec value, what Graph has stays.
        let d = desired(&cfg(), "team", "a", &spec());
        assert!(update(&d, &app).patch.group_membership_claims.is_none());
        assert_eq!(
            normalise_group_membership_claims("applicationgroup"),
            Some("ApplicationGroup")
        );
        assert_eq!(normalise_group_membership_claims("Everyone"), None);
    }
}
