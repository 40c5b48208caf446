//! The simulated directory: applications (their documents, credentials, federated credentials,
//! owners), service principals, app role assignments, delegated permission grants and groups, with
//! the documented rules enforced on every write (external-api-rules.md F–I):
//!
//! - PATCH keeps properties it does not name; complex properties (`api`, `web`, `spa`, …) are merged
//!   property by property; collections are replaced by what is sent (`[]` clears one).
//! - `passwordCredentials` cannot be written; `keyCredentials` are replaced as a set, and every entry
//!   must carry its certificate (`key`): a certificate that should stay is sent again.
//! - App roles and delegated scopes must be disabled (`isEnabled: false`) in one write before a later
//!   write removes them; a new one must be enabled; a scope still referenced by
//!   `api.preAuthorizedApplications` cannot be removed.
//! - identifierUris: unique in the tenant, at most 255 characters (120 for personal-account
//!   audiences, at most 50 URIs there), no wildcards, and the tenant's identifier-URI policy for URIs
//!   added to apps that receive v1 tokens.
//! - Limits: 700 roles + scopes, 50 APIs / 400 permissions in requiredResourceAccess, about 1000 items
//!   over all collections of an app, 2 client secrets for personal-account audiences, 20 federated
//!   credentials, certificates valid at most a year after `startDateTime`.
//!
//! New applications and service principals can be made invisible to reads for a while (eventual
//! consistency, by the shared clock).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::cert::{self, ParsedCert};
use super::error::GraphApiError;
use super::seed::{
    ACCESS_AS_APPLICATION_ID, DEFAULT_ACCESS_ID, GRAPH_SCOPES, GraphSeed, IdentifierUriPolicy,
    MICROSOFT_GRAPH_APP_ID, MICROSOFT_GRAPH_RESOURCE, OPERATOR_GRAPH_ROLES, SeedApp,
};

/// The all-zero app role id: "default access", assignable without a role.
pub const DEFAULT_ROLE_ID: &str = "00000000-0000-0000-0000-000000000000";
pub const MAX_ENTITLEMENTS: usize = 700;
pub const MAX_COLLECTION_ITEMS: usize = 1000;
pub const MAX_REQUIRED_RESOURCES: usize = 50;
pub const MAX_REQUIRED_PERMISSIONS: usize = 400;
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;
pub const MAX_PERSONAL_SECRETS: usize = 2;
pub const MAX_IDENTIFIER_URI_LEN: usize = 255;
pub const MAX_PERSONAL_IDENTIFIER_URI_LEN: usize = 120;
pub const MAX_PERSONAL_IDENTIFIER_URIS: usize = 50;
const YEAR: SignedDuration = SignedDuration::from_hours(24 * 365);
/// Slack on the one-year certificate rule (leap years, clocks rounding to the day).
const CERT_SLACK: SignedDuration = SignedDuration::from_hours(48);

const SIGN_IN_AUDIENCES: &[&str] = &[
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
];
const GROUP_MEMBERSHIP_CLAIMS: &[&str] = &[
    "None",
    "SecurityGroup",
    "All",
    "ApplicationGroup",
    "DirectoryRole",
];
const READ_ONLY_APP: &[&str] = &[
    "id",
    "appId",
    "createdDateTime",
    "deletedDateTime",
    "publisherDomain",
];

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn ts(t: Timestamp) -> String {
    t.to_string()
}

fn parse_time(field: &str, v: &Value) -> Result<Option<Timestamp>, GraphApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s.parse::<Timestamp>().map(Some).map_err(|_| {
            GraphApiError::invalid_property(
                field,
                "InvalidValue",
                format!("Invalid value for '{field}': {s:?} is not an ISO 8601 date-time"),
            )
        }),
        _ => Err(GraphApiError::invalid_property(
            field,
            "InvalidValue",
            format!("Invalid value for '{field}': expected a date-time string"),
        )),
    }
}

/// A certificate registered on an application.
#[derive(Clone, Debug)]
pub struct KeyCred {
    pub key_id: String,
    pub display_name: Option<String>,
    pub usage: String,
    pub cert: ParsedCert,
    pub start: Timestamp,
    pub end: Timestamp,
    /// SHA-1 thumbprint bytes, base64 (Graph's `customKeyIdentifier` default).
    pub custom_key_identifier: String,
    pub x5t: String,
    pub x5t_s256: String,
}

impl KeyCred {
    pub fn render(&self, with_key: bool) -> Value {
        json!({
            "customKeyIdentifier": self.custom_key_identifier,
            "displayName": self.display_name,
            "endDateTime": ts(self.end),
            "key": with_key.then(|| STANDARD.encode(&self.cert.der)),
            "keyId": self.key_id,
            "startDateTime": ts(self.start),
            "type": "AsymmetricX509Cert",
            "usage": self.usage,
        })
    }
}

/// A client secret. `secret` is never rendered after addPassword.
#[derive(Clone)]
pub struct Password {
    pub key_id: String,
    pub display_name: Option<String>,
    pub secret: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Password")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

impl Password {
    pub fn render(&self, secret: bool) -> Value {
        json!({
            "customKeyIdentifier": null,
            "displayName": self.display_name,
            "endDateTime": ts(self.end),
            "hint": self.secret.chars().take(3).collect::<String>(),
            "keyId": self.key_id,
            "secretText": secret.then(|| self.secret.clone()),
            "startDateTime": ts(self.start),
        })
    }
}

/// A federated identity credential.
#[derive(Clone, Debug)]
pub struct Fic {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub description: Option<String>,
}

impl Fic {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "issuer": self.issuer, "subject": self.subject,
            "audiences": self.audiences, "description": self.description,
        })
    }
}

#[derive(Clone, Debug)]
pub struct App {
    pub id: String,
    pub app_id: String,
    pub unique_name: Option<String>,
    /// The writable properties as Graph renders them (displayName, api, web, appRoles, …).
    pub doc: Map<String, Value>,
    pub keys: Vec<KeyCred>,
    pub passwords: Vec<Password>,
    pub fics: Vec<Fic>,
    pub owners: Vec<String>,
    pub created: Timestamp,
    pub visible_at: Timestamp,
    pub seq: u64,
    /// Registered in another tenant (Microsoft Graph): backs a service principal here, is not listed.
    pub foreign: bool,
}

impl App {
    pub fn display_name(&self) -> &str {
        self.doc
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn array(&self, path: &[&str]) -> Vec<Value> {
        let mut v = self.doc.get(path[0]);
        for p in &path[1..] {
            v = v.and_then(|x| x.get(*p));
        }
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    }

    pub fn roles(&self) -> Vec<Value> {
        self.array(&["appRoles"])
    }

    pub fn scopes(&self) -> Vec<Value> {
        self.array(&["api", "oauth2PermissionScopes"])
    }

    pub fn pre_authorized(&self) -> Vec<Value> {
        self.array(&["api", "preAuthorizedApplications"])
    }

    pub fn identifier_uris(&self) -> Vec<String> {
        strings(&self.array(&["identifierUris"]))
    }

    /// `api.requestedAccessTokenVersion`, 1 when null.
    pub fn token_version(&self) -> i64 {
        self.doc
            .get("api")
            .and_then(|a| a.get("requestedAccessTokenVersion"))
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    pub fn sign_in_audience(&self) -> &str {
        self.doc
            .get("signInAudience")
            .and_then(Value::as_str)
            .unwrap_or("AzureADMyOrg")
    }

    pub fn personal(&self) -> bool {
        matches!(
            self.sign_in_audience(),
            "AzureADandPersonalMicrosoftAccount" | "PersonalMicrosoftAccount"
        )
    }

    pub fn visible(&self, now: Timestamp) -> bool {
        now >= self.visible_at
    }

    /// The enabled app role with this id.
    pub fn enabled_role(&self, role_id: &str) -> Option<Value> {
        self.roles().into_iter().find(|r| {
            r.get("id").and_then(Value::as_str) == Some(role_id)
                && r.get("isEnabled").and_then(Value::as_bool) == Some(true)
        })
    }

    pub fn render(&self, with_keys: bool, tenant_domain: &str) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), self.id.clone().into());
        map.insert("appId".into(), self.app_id.clone().into());
        map.insert("uniqueName".into(), json!(self.unique_name));
        map.insert("createdDateTime".into(), ts(self.created).into());
        map.insert("deletedDateTime".into(), Value::Null);
        map.insert("publisherDomain".into(), tenant_domain.into());
        for (k, v) in &self.doc {
            map.insert(k.clone(), v.clone());
        }
        map.insert(
            "keyCredentials".into(),
            self.keys.iter().map(|k| k.render(with_keys)).collect(),
        );
        map.insert(
            "passwordCredentials".into(),
            self.passwords.iter().map(|p| p.render(false)).collect(),
        );
        Value::Object(map)
    }
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Debug)]
pub struct Sp {
    pub id: String,
    pub app_id: String,
    /// Writable properties: accountEnabled, appRoleAssignmentRequired, tags, notes, description, …
    pub doc: Map<String, Value>,
    pub owners: Vec<String>,
    pub visible_at: Timestamp,
    pub seq: u64,
}

impl Sp {
    pub fn visible(&self, now: Timestamp) -> bool {
        now >= self.visible_at
    }

    pub fn assignment_required(&self) -> bool {
        self.doc
            .get("appRoleAssignmentRequired")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Clone, Debug)]
pub struct Assignment {
    pub id: String,
    pub app_role_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub principal_display_name: String,
    pub resource_id: String,
    pub resource_display_name: String,
    pub created: Timestamp,
}

impl Assignment {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id, "appRoleId": self.app_role_id, "createdDateTime": ts(self.created),
            "deletedDateTime": null, "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id, "principalType": self.principal_type,
            "resourceDisplayName": self.resource_display_name, "resourceId": self.resource_id,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub consent_type: String,
    pub principal_id: Option<String>,
    pub resource_id: String,
    pub scope: String,
}

impl Grant {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id, "clientId": self.client_id, "consentType": self.consent_type,
            "principalId": self.principal_id, "resourceId": self.resource_id, "scope": self.scope,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
}

impl Group {
    pub fn render(&self) -> Value {
        let nickname: String = self
            .display_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        json!({
            "id": self.id, "displayName": self.display_name, "description": self.description,
            "mailNickname": nickname, "mailEnabled": false, "securityEnabled": true,
            "groupTypes": [], "createdDateTime": null,
        })
    }
}

/// Settings that tests change while the simulator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub eventual_consistency: SignedDuration,
    pub page_size: usize,
    pub token_lifetime_secs: i64,
    pub identifier_uri_policy: IdentifierUriPolicy,
    /// Real time each write to one object takes; overlapping writes to one object conflict.
    pub write_latency: std::time::Duration,
    /// How long (shared clock) after a write ends its object keeps refusing writes with 409, as Graph
    /// does to rapid credential changes that have not converged (azurerator#448).
    pub write_settle: SignedDuration,
    /// At most `n` writes per window (shared clock), then 429.
    pub write_limit: Option<(usize, SignedDuration)>,
}

/// Writes in progress, for the concurrency rule and the test hooks.
#[derive(Debug, Default)]
pub struct WriteTracker {
    pub in_flight: HashMap<String, usize>,
    pub total: usize,
    pub peak_total: usize,
    pub conflicts: u64,
    pub recent: VecDeque<Timestamp>,
    /// When the last write to each object ended.
    pub last_write: HashMap<String, Timestamp>,
}

pub struct State {
    pub tenant_id: String,
    pub tenant_name: String,
    pub verified_domains: Vec<String>,
    pub apps: BTreeMap<String, App>,
    pub sps: BTreeMap<String, Sp>,
    pub assignments: Vec<Assignment>,
    pub grants: Vec<Grant>,
    pub groups: BTreeMap<String, Group>,
    /// Issuer → public JWKs.
    pub trusted_issuers: HashMap<String, Vec<Value>>,
    pub revoked_tokens: HashSet<String>,
    /// `uti` of every token issued (so that [`super::GraphSim::revoke_tokens`] can revoke them).
    pub issued_tokens: Vec<String>,
    pub deleted_apps: Vec<(String, String, Timestamp)>,
    pub settings: Settings,
    pub writes: WriteTracker,
    pub operator_app_id: String,
    seq: u64,
}

impl State {
    pub fn new(seed: &GraphSeed, operator_secret: &str, now: Timestamp) -> Self {
        let mut state = State {
            tenant_id: seed.tenant_id.clone(),
            tenant_name: seed.tenant_name.clone(),
            verified_domains: seed.verified_domains.clone(),
            apps: BTreeMap::new(),
            sps: BTreeMap::new(),
            assignments: vec![],
            grants: vec![],
            groups: BTreeMap::new(),
            trusted_issuers: seed
                .trusted_issuers
                .iter()
                .map(|i| {
                    let keys = i
                        .jwks
                        .get("keys")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    (i.issuer.clone(), keys)
                })
                .collect(),
            revoked_tokens: HashSet::new(),
            issued_tokens: vec![],
            deleted_apps: vec![],
            settings: Settings {
                eventual_consistency: SignedDuration::from_secs(
                    i64::try_from(seed.eventual_consistency_secs).unwrap_or(i64::MAX / 4),
                ),
                page_size: seed.page_size.clamp(1, 999),
                token_lifetime_secs: seed.token_lifetime_secs.max(1),
                identifier_uri_policy: seed.identifier_uri_policy,
                write_latency: std::time::Duration::ZERO,
                write_settle: SignedDuration::ZERO,
                write_limit: None,
            },
            writes: WriteTracker::default(),
            operator_app_id: String::new(),
            seq: 0,
        };
        let long_ago = now
            .checked_sub(SignedDuration::from_hours(24 * 30))
            .unwrap_or(now);
        for g in &seed.groups {
            state.groups.insert(
                g.id.clone(),
                Group {
                    id: g.id.clone(),
                    display_name: g.display_name.clone(),
                    description: g.description.clone(),
                },
            );
        }
        // Microsoft Graph: a service principal here, its application in Microsoft's tenant.
        let graph_roles: Vec<Value> = OPERATOR_GRAPH_ROLES
            .iter()
            .map(|(id, value)| {
                json!({"id": id, "value": value, "displayName": value, "description": value,
                       "allowedMemberTypes": ["Application"], "isEnabled": true, "origin": "Application"})
            })
            .collect();
        let graph_scopes: Vec<Value> = GRAPH_SCOPES
            .iter()
            .map(|(id, value)| {
                json!({"id": id, "value": value, "type": "User", "isEnabled": true,
                       "adminConsentDisplayName": value, "adminConsentDescription": value})
            })
            .collect();
        let mut graph_doc = app_template("Microsoft Graph");
        graph_doc.insert("identifierUris".into(), json!([MICROSOFT_GRAPH_RESOURCE]));
        graph_doc.insert("appRoles".into(), Value::Array(graph_roles));
        if let Some(api) = graph_doc.get_mut("api").and_then(Value::as_object_mut) {
            api.insert("oauth2PermissionScopes".into(), Value::Array(graph_scopes));
        }
        let graph_app = App {
            id: new_guid(),
            app_id: MICROSOFT_GRAPH_APP_ID.into(),
            unique_name: None,
            doc: graph_doc,
            keys: vec![],
            passwords: vec![],
            fics: vec![],
            owners: vec![],
            created: long_ago,
            visible_at: long_ago,
            seq: state.next_seq(),
            foreign: true,
        };
        let graph_sp = state.seed_sp(&graph_app, false, long_ago);
        state.apps.insert(graph_app.id.clone(), graph_app);

        let operator = state.seed_app(&seed.operator, long_ago, Some(operator_secret));
        state.operator_app_id = operator.0.clone();
        if let Some(op_sp) = operator.1 {
            for (role_id, _) in OPERATOR_GRAPH_ROLES {
                state.assignments.push(Assignment {
                    id: assignment_id(),
                    app_role_id: (*role_id).into(),
                    principal_id: op_sp.clone(),
                    principal_type: "ServicePrincipal".into(),
                    principal_display_name: seed.operator.display_name.clone(),
                    resource_id: graph_sp.clone(),
                    resource_display_name: "Microsoft Graph".into(),
                    created: long_ago,
                });
            }
        }
        for app in &seed.apps {
            let secret = (!app.client_secret.is_empty()).then_some(app.client_secret.as_str());
            state.seed_app(app, long_ago, secret);
        }
        state
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn seed_sp(&mut self, app: &App, required: bool, at: Timestamp) -> String {
        let id = new_guid();
        let mut doc = sp_template();
        doc.insert("appRoleAssignmentRequired".into(), required.into());
        let seq = self.next_seq();
        self.sps.insert(
            id.clone(),
            Sp {
                id: id.clone(),
                app_id: app.app_id.clone(),
                doc,
                owners: vec![],
                visible_at: at,
                seq,
            },
        );
        id
    }

    /// Adds a seeded app (and its service principal); returns (appId, SP id).
    fn seed_app(
        &mut self,
        seed: &SeedApp,
        at: Timestamp,
        secret: Option<&str>,
    ) -> (String, Option<String>) {
        let app_id = if seed.app_id.is_empty() {
            new_guid()
        } else {
            seed.app_id.clone()
        };
        let id = if seed.object_id.is_empty() {
            new_guid()
        } else {
            seed.object_id.clone()
        };
        let mut doc = app_template(&seed.display_name);
        let mut uris = vec![];
        if seed.default_identifier_uri {
            uris.push(format!("api://{app_id}"));
        }
        uris.extend(seed.identifier_uris.iter().cloned());
        doc.insert("identifierUris".into(), json!(uris));
        doc.insert("tags".into(), json!(seed.tags));
        let mut roles = vec![];
        let mut scopes = vec![];
        for p in &seed.permissions {
            let pid = match p.as_str() {
                "access_as_application" => ACCESS_AS_APPLICATION_ID.to_string(),
                "defaultaccess" => DEFAULT_ACCESS_ID.to_string(),
                _ => new_guid(),
            };
            roles.push(
                json!({"id": pid, "value": p, "displayName": p, "description": p,
                              "allowedMemberTypes": ["Application"], "isEnabled": true}),
            );
            scopes.push(
                json!({"id": pid, "value": p, "type": "Admin", "isEnabled": true,
                               "adminConsentDisplayName": p, "adminConsentDescription": p,
                               "userConsentDisplayName": null, "userConsentDescription": null}),
            );
        }
        doc.insert("appRoles".into(), Value::Array(roles));
        if let Some(api) = doc.get_mut("api").and_then(Value::as_object_mut) {
            api.insert("oauth2PermissionScopes".into(), Value::Array(scopes));
            api.insert(
                "requestedAccessTokenVersion".into(),
                json!(seed.requested_access_token_version),
            );
        }
        let passwords = secret
            .map(|s| {
                vec![Password {
                    key_id: new_guid(),
                    display_name: Some("seeded".into()),
                    secret: s.to_string(),
                    start: at,
                    end: at.checked_add(YEAR * 10).unwrap_or(at),
                }]
            })
            .unwrap_or_default();
        let app = App {
            id: id.clone(),
            app_id: app_id.clone(),
            unique_name: seed.unique_name.clone(),
            doc,
            keys: vec![],
            passwords,
            fics: vec![],
            owners: vec![],
            created: at,
            visible_at: at,
            seq: self.next_seq(),
            foreign: false,
        };
        let sp = seed
            .service_principal
            .then(|| self.seed_sp(&app, seed.app_role_assignment_required, at));
        self.apps.insert(id, app);
        (app_id, sp)
    }

    // ---- lookups ----

    pub fn app_by_app_id(&self, app_id: &str) -> Option<&App> {
        self.apps
            .values()
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    pub fn sp_by_app_id(&self, app_id: &str) -> Option<&Sp> {
        self.sps
            .values()
            .find(|s| s.app_id.eq_ignore_ascii_case(app_id))
    }

    /// A visible, local application by object id, appId or uniqueName.
    pub fn find_app(&self, key: &AppKey, now: Timestamp) -> Option<&App> {
        let found = match key {
            AppKey::Id(id) => self.apps.get(id),
            AppKey::AppId(x) => self.app_by_app_id(x),
            AppKey::UniqueName(x) => self
                .apps
                .values()
                .find(|a| a.unique_name.as_deref() == Some(x.as_str())),
        };
        found.filter(|a| !a.foreign && a.visible(now))
    }

    pub fn find_app_id(&self, key: &AppKey, now: Timestamp) -> Result<String, GraphApiError> {
        self.find_app(key, now)
            .map(|a| a.id.clone())
            .ok_or_else(|| GraphApiError::not_found(key.text()))
    }

    pub fn find_sp(&self, key: &AppKey, now: Timestamp) -> Option<&Sp> {
        let found = match key {
            AppKey::Id(id) => self.sps.get(id),
            AppKey::AppId(x) => self.sp_by_app_id(x),
            AppKey::UniqueName(_) => None,
        };
        found.filter(|s| s.visible(now))
    }

    /// The application behind a service principal.
    pub fn sp_app(&self, sp: &Sp) -> Option<&App> {
        self.app_by_app_id(&sp.app_id)
    }

    pub fn tenant_domains(&self) -> Vec<String> {
        let mut d = vec![self.tenant_name.clone()];
        d.extend(self.verified_domains.iter().cloned());
        d
    }

    fn new_visible_at(&self, now: Timestamp) -> Timestamp {
        now.checked_add(self.settings.eventual_consistency)
            .unwrap_or(now)
    }

    // ---- rendering ----

    pub fn render_app(&self, app: &App, with_keys: bool) -> Value {
        app.render(with_keys, &self.tenant_name)
    }

    pub fn render_sp(&self, sp: &Sp) -> Value {
        let app = self.sp_app(sp);
        let name = app
            .map(|a| a.display_name().to_string())
            .unwrap_or_default();
        let mut names = vec![sp.app_id.clone()];
        if let Some(a) = app {
            names.extend(a.identifier_uris());
        }
        let mut map = Map::new();
        map.insert("id".into(), sp.id.clone().into());
        map.insert("appId".into(), sp.app_id.clone().into());
        map.insert("displayName".into(), name.clone().into());
        map.insert("appDisplayName".into(), name.into());
        map.insert(
            "appOwnerOrganizationId".into(),
            if app.is_some_and(|a| a.foreign) {
                "f8cdef31-a31e-4b4a-93e4-5f571e91255a".into()
            } else {
                self.tenant_id.clone().into()
            },
        );
        map.insert("servicePrincipalType".into(), "Application".into());
        map.insert("servicePrincipalNames".into(), json!(names));
        map.insert(
            "appRoles".into(),
            Value::Array(app.map(App::roles).unwrap_or_default()),
        );
        map.insert(
            "oauth2PermissionScopes".into(),
            Value::Array(app.map(App::scopes).unwrap_or_default()),
        );
        map.insert("keyCredentials".into(), json!([]));
        map.insert("passwordCredentials".into(), json!([]));
        for (k, v) in &sp.doc {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }

    /// A directory object (as `owners` lists them).
    pub fn render_directory_object(&self, id: &str) -> Option<Value> {
        if let Some(sp) = self.sps.get(id) {
            let mut v = self.render_sp(sp);
            if let Some(m) = v.as_object_mut() {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.servicePrincipal".into(),
                );
            }
            return Some(v);
        }
        if let Some(app) = self.apps.get(id) {
            let mut v = self.render_app(app, false);
            if let Some(m) = v.as_object_mut() {
                m.insert("@odata.type".into(), "#microsoft.graph.application".into());
            }
            return Some(v);
        }
        None
    }

    // ---- applications ----

    /// POST /applications (and the create half of the upsert).
    pub fn create_app(
        &mut self,
        body: &Value,
        unique_name: Option<String>,
        now: Timestamp,
    ) -> Result<String, GraphApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| GraphApiError::bad_request("The request body must be a JSON object."))?;
        let name = body
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name.trim().is_empty() {
            return Err(GraphApiError::invalid_property(
                "displayName",
                "MissingValue",
                "Property 'displayName' is required.",
            ));
        }
        let unique_name = match (unique_name, body.get("uniqueName")) {
            (Some(u), Some(Value::String(b))) if &u != b => {
                return Err(GraphApiError::invalid_property(
                    "uniqueName",
                    "InvalidValue",
                    "uniqueName in the body differs from the key in the URL.",
                ));
            }
            (Some(u), _) => Some(u),
            (None, Some(Value::String(b))) => Some(b.clone()),
            (None, None | Some(Value::Null)) => None,
            (None, Some(_)) => {
                return Err(GraphApiError::invalid_property(
                    "uniqueName",
                    "InvalidValue",
                    "uniqueName must be a string.",
                ));
            }
        };
        if let Some(u) = &unique_name {
            if u.is_empty() || u.len() > 120 {
                return Err(GraphApiError::invalid_property(
                    "uniqueName",
                    "InvalidValue",
                    "uniqueName must be 1 to 120 characters.",
                ));
            }
            if self
                .apps
                .values()
                .any(|a| a.unique_name.as_deref() == Some(u.as_str()))
            {
                return Err(GraphApiError::new(
                    StatusCode::CONFLICT,
                    "Request_MultipleObjectsWithSameKeyValue",
                    format!(
                        "Another object with the same value for property uniqueName already exists: '{u}'."
                    ),
                ));
            }
        }
        let app_id = new_guid();
        let mut app = App {
            id: new_guid(),
            app_id,
            unique_name,
            doc: app_template(""),
            keys: vec![],
            passwords: vec![],
            fics: vec![],
            owners: vec![],
            created: now,
            visible_at: self.new_visible_at(now),
            seq: 0,
            foreign: false,
        };
        let mut body = body.clone();
        body.remove("uniqueName");
        let candidate = self.apply_app_patch(&app, &body, now, true)?;
        app.doc = candidate.doc;
        app.keys = candidate.keys;
        self.validate_app(&app, None)?;
        app.seq = self.next_seq();
        let id = app.id.clone();
        self.apps.insert(id.clone(), app);
        Ok(id)
    }

    /// PATCH /applications/{id}: merges `body` into the app and validates the result.
    pub fn patch_app(
        &mut self,
        id: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<(), GraphApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| GraphApiError::bad_request("The request body must be a JSON object."))?;
        let old = self
            .apps
            .get(id)
            .cloned()
            .ok_or_else(|| GraphApiError::not_found(id))?;
        let mut body = body.clone();
        match body.remove("uniqueName") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if old.unique_name.as_deref() == Some(u.as_str()) => {}
            Some(_) => {
                return Err(GraphApiError::invalid_property(
                    "uniqueName",
                    "InvalidValue",
                    "Property 'uniqueName' is immutable once set.",
                ));
            }
        }
        let candidate = self.apply_app_patch(&old, &body, now, false)?;
        self.validate_app(&candidate, Some(&old))?;
        self.apps.insert(id.to_string(), candidate);
        Ok(())
    }

    /// The app with `body` applied (not validated across properties yet).
    fn apply_app_patch(
        &self,
        app: &App,
        body: &Map<String, Value>,
        now: Timestamp,
        creating: bool,
    ) -> Result<App, GraphApiError> {
        let template = Value::Object(app_template(""));
        let mut next = app.clone();
        for (key, value) in body {
            if key.starts_with("@odata") {
                continue;
            }
            if READ_ONLY_APP.contains(&key.as_str()) {
                return Err(GraphApiError::invalid_property(
                    key,
                    "ReadOnlyProperty",
                    format!("Property '{key}' is read-only and cannot be set."),
                ));
            }
            match key.as_str() {
                "passwordCredentials" => {
                    let empty = value.as_array().is_some_and(Vec::is_empty) || value.is_null();
                    if !(creating && empty) {
                        return Err(GraphApiError::invalid_property(
                            "passwordCredentials",
                            "ReadOnlyProperty",
                            "Property 'passwordCredentials' cannot be set with POST or PATCH: use addPassword and removePassword.",
                        ));
                    }
                }
                "keyCredentials" => {
                    next.keys = parse_key_credentials(value, &app.keys, now)?;
                }
                _ => {
                    let Some(shape) = template.get(key) else {
                        return Err(GraphApiError::invalid_property(
                            key,
                            "InvalidProperty",
                            format!("Invalid property '{key}'."),
                        ));
                    };
                    let merged =
                        merge(key, next.doc.get(key).unwrap_or(&Value::Null), value, shape)?;
                    next.doc.insert(key.clone(), merged);
                }
            }
        }
        Ok(next)
    }

    /// Every rule that looks at the whole app (and the old app for what changed).
    fn validate_app(&self, app: &App, old: Option<&App>) -> Result<(), GraphApiError> {
        let doc = &app.doc;
        let name = app.display_name();
        if name.trim().is_empty() || name.chars().count() > 256 {
            return Err(GraphApiError::invalid_property(
                "displayName",
                "InvalidValue",
                "Property 'displayName' must be 1 to 256 characters.",
            ));
        }
        let audience = app.sign_in_audience();
        if !SIGN_IN_AUDIENCES.contains(&audience) {
            return Err(GraphApiError::invalid_property(
                "signInAudience",
                "InvalidValue",
                format!("Invalid value for signInAudience: {audience:?}."),
            ));
        }
        let version = doc
            .get("api")
            .and_then(|a| a.get("requestedAccessTokenVersion"))
            .cloned()
            .unwrap_or(Value::Null);
        if !(version.is_null() || version == json!(1) || version == json!(2)) {
            return Err(GraphApiError::invalid_property(
                "api.requestedAccessTokenVersion",
                "InvalidValue",
                "api.requestedAccessTokenVersion must be 1, 2 or null.",
            ));
        }
        if app.personal() && app.token_version() != 2 {
            return Err(GraphApiError::invalid_property(
                "api.requestedAccessTokenVersion",
                "InvalidValue",
                "api.requestedAccessTokenVersion must be 2 for apps that accept personal Microsoft accounts.",
            ));
        }
        match doc.get("groupMembershipClaims") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                for part in s.split(',').map(str::trim) {
                    if !GROUP_MEMBERSHIP_CLAIMS
                        .iter()
                        .any(|g| g.eq_ignore_ascii_case(part))
                    {
                        return Err(GraphApiError::invalid_property(
                            "groupMembershipClaims",
                            "InvalidValue",
                            format!("Invalid value for groupMembershipClaims: {s:?}."),
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(GraphApiError::invalid_property(
                    "groupMembershipClaims",
                    "InvalidValue",
                    "groupMembershipClaims must be a string.",
                ));
            }
        }
        check_string_list(doc.get("tags"), "tags")?;
        for (path, label) in [
            (&["web", "redirectUris"][..], "web.redirectUris"),
            (&["spa", "redirectUris"][..], "spa.redirectUris"),
            (
                &["publicClient", "redirectUris"][..],
                "publicClient.redirectUris",
            ),
        ] {
            let uris = app.array(path);
            check_string_list(Some(&Value::Array(uris.clone())), label)?;
            for u in strings(&uris) {
                if u.contains('*') || u.len() > 256 || url::Url::parse(&u).is_err() {
                    return Err(GraphApiError::invalid_property(
                        label,
                        "InvalidValue",
                        format!(
                            "Invalid value for {label}: {u:?} is not an absolute URI without wildcards (at most 256 characters)."
                        ),
                    ));
                }
            }
        }
        self.check_identifier_uris(app, old)?;
        let old_roles = old.map(App::roles).unwrap_or_default();
        let old_scopes = old.map(App::scopes).unwrap_or_default();
        let roles = app.roles();
        let scopes = app.scopes();
        check_entitlements("appRoles", &old_roles, &roles, true)?;
        check_entitlements("api.oauth2PermissionScopes", &old_scopes, &scopes, false)?;
        if roles.len() + scopes.len() > MAX_ENTITLEMENTS {
            return Err(GraphApiError::invalid_property(
                "appRoles",
                "LimitExceeded",
                format!(
                    "An application can define at most {MAX_ENTITLEMENTS} app roles and delegated permissions together."
                ),
            ));
        }
        // A scope and an app role that share an id must describe the same permission.
        for role in &roles {
            let id = role.get("id");
            if let Some(scope) = scopes.iter().find(|s| s.get("id") == id)
                && scope.get("value") != role.get("value")
            {
                return Err(GraphApiError::invalid_property(
                    "appRoles",
                    "InvalidValue",
                    format!(
                        "The app role and the delegated permission with id {} must have the same value.",
                        id.and_then(Value::as_str).unwrap_or_default()
                    ),
                ));
            }
        }
        let scope_ids: HashSet<&str> = scopes
            .iter()
            .filter_map(|s| s.get("id").and_then(Value::as_str))
            .collect();
        for (i, pre) in app.pre_authorized().iter().enumerate() {
            let field = format!("api.preAuthorizedApplications[{i}]");
            let Some(obj) = pre.as_object() else {
                return Err(GraphApiError::invalid_property(
                    &field,
                    "InvalidValue",
                    format!("{field} must be an object."),
                ));
            };
            for k in obj.keys() {
                if k != "appId" && k != "delegatedPermissionIds" {
                    return Err(GraphApiError::invalid_property(
                        &field,
                        "InvalidProperty",
                        format!("Invalid property '{k}' in {field}."),
                    ));
                }
            }
            if !obj
                .get("appId")
                .and_then(Value::as_str)
                .is_some_and(is_guid)
            {
                return Err(GraphApiError::invalid_property(
                    &field,
                    "InvalidValue",
                    format!("{field}.appId must be a GUID."),
                ));
            }
            for pid in strings(
                obj.get("delegatedPermissionIds")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            ) {
                if !scope_ids.contains(pid.as_str()) {
                    return Err(GraphApiError::invalid_property(
                        "api.preAuthorizedApplications",
                        "InvalidValue",
                        format!(
                            "{field} refers to delegated permission {pid}, which the application does not define. Remove the pre-authorization before removing the permission."
                        ),
                    ));
                }
            }
        }
        let required = doc
            .get("requiredResourceAccess")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let permissions: usize = required
            .iter()
            .map(|r| {
                r.get("resourceAccess")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            })
            .sum();
        if required.len() > MAX_REQUIRED_RESOURCES || permissions > MAX_REQUIRED_PERMISSIONS {
            return Err(GraphApiError::invalid_property(
                "requiredResourceAccess",
                "LimitExceeded",
                format!(
                    "requiredResourceAccess allows at most {MAX_REQUIRED_RESOURCES} APIs and {MAX_REQUIRED_PERMISSIONS} permissions."
                ),
            ));
        }
        let items = app.identifier_uris().len()
            + roles.len()
            + scopes.len()
            + app.pre_authorized().len()
            + app.array(&["web", "redirectUris"]).len()
            + app.array(&["spa", "redirectUris"]).len()
            + app.array(&["publicClient", "redirectUris"]).len()
            + app.array(&["tags"]).len()
            + permissions
            + app.keys.len()
            + app.passwords.len();
        if items > MAX_COLLECTION_ITEMS {
            return Err(GraphApiError::invalid_property(
                "application",
                "LimitExceeded",
                format!(
                    "The application would hold {items} items in its collections; the limit is about {MAX_COLLECTION_ITEMS}."
                ),
            ));
        }
        Ok(())
    }

    fn check_identifier_uris(&self, app: &App, old: Option<&App>) -> Result<(), GraphApiError> {
        let raw = app.array(&["identifierUris"]);
        check_string_list(Some(&Value::Array(raw)), "identifierUris")?;
        let uris = app.identifier_uris();
        let old_uris: HashSet<String> = old
            .map(|o| {
                o.identifier_uris()
                    .into_iter()
                    .map(|u| u.to_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let bad = |message: String| {
            GraphApiError::invalid_property("identifierUris", "InvalidValue", message)
        };
        let (max_len, personal) = if app.personal() {
            (MAX_PERSONAL_IDENTIFIER_URI_LEN, true)
        } else {
            (MAX_IDENTIFIER_URI_LEN, false)
        };
        if personal && uris.len() > MAX_PERSONAL_IDENTIFIER_URIS {
            return Err(bad(format!(
                "Apps that accept personal accounts can have at most {MAX_PERSONAL_IDENTIFIER_URIS} identifierUris."
            )));
        }
        let mut seen = HashSet::new();
        for uri in &uris {
            let lower = uri.to_lowercase();
            if !seen.insert(lower.clone()) {
                return Err(bad(format!("identifierUris contains {uri:?} twice.")));
            }
            if uri.contains('*') {
                return Err(bad(format!(
                    "identifierUris cannot contain wildcards: {uri:?}."
                )));
            }
            if uri.chars().count() > max_len {
                return Err(bad(format!(
                    "identifierUris values can be at most {max_len} characters: {uri:?}."
                )));
            }
            let Ok(parsed) = url::Url::parse(uri) else {
                return Err(bad(format!(
                    "identifierUris value {uri:?} is not a valid URI."
                )));
            };
            if personal && parsed.scheme() == "urn" {
                return Err(bad(format!(
                    "urn: identifierUris are not supported for apps that accept personal accounts: {uri:?}."
                )));
            }
            let taken = self.apps.values().any(|other| {
                other.id != app.id
                    && other
                        .identifier_uris()
                        .iter()
                        .any(|u| u.eq_ignore_ascii_case(uri))
            });
            if taken {
                return Err(GraphApiError::invalid_property(
                    "identifierUris",
                    "ObjectConflict",
                    "Another object with the same value for property identifierUris already exists.",
                ));
            }
            if !old_uris.contains(&lower) {
                self.check_uri_policy(app, uri, &parsed)?;
            }
        }
        Ok(())
    }

    /// The tenant's identifier-URI policy for a newly added URI.
    fn check_uri_policy(
        &self,
        app: &App,
        uri: &str,
        parsed: &url::Url,
    ) -> Result<(), GraphApiError> {
        if app.token_version() == 2 {
            return Ok(());
        }
        let lower = uri.to_lowercase();
        let app_id = app.app_id.to_lowercase();
        let tenant = self.tenant_id.to_lowercase();
        let allowed = match self.settings.identifier_uri_policy {
            IdentifierUriPolicy::None => true,
            IdentifierUriPolicy::DefaultOnly => {
                lower == format!("api://{app_id}") || lower == format!("api://{tenant}/{app_id}")
            }
            IdentifierUriPolicy::UniqueTenantIdentifier => {
                let host = parsed.host_str().unwrap_or_default().to_lowercase();
                lower.contains(&app_id)
                    || lower.contains(&tenant)
                    || self.tenant_domains().iter().any(|d| {
                        let d = d.to_lowercase();
                        host == d || host.ends_with(&format!(".{d}"))
                    })
            }
        };
        if allowed {
            return Ok(());
        }
        let rule = match self.settings.identifier_uri_policy {
            IdentifierUriPolicy::DefaultOnly => {
                "only api://{appId} or api://{tenantId}/{appId} may be added (nonDefaultUriAddition)"
            }
            _ => {
                "a new identifier URI must contain the tenant ID, the application ID or a verified domain (uriAdditionWithoutUniqueTenantIdentifier)"
            }
        };
        Err(GraphApiError::invalid_property(
            "identifierUris",
            "InvalidValue",
            format!(
                "The identifier URI {uri:?} is blocked by the tenant's app management policy: {rule}. Apps that request v2 access tokens (api.requestedAccessTokenVersion = 2) are exempt."
            ),
        ))
    }

    pub fn delete_app(&mut self, id: &str, now: Timestamp) -> Result<(), GraphApiError> {
        let app = self
            .apps
            .remove(id)
            .ok_or_else(|| GraphApiError::not_found(id))?;
        if let Some(sp) = self.sp_by_app_id(&app.app_id).map(|s| s.id.clone()) {
            self.remove_sp(&sp);
        }
        self.deleted_apps
            .push((app.id.clone(), app.display_name().to_string(), now));
        Ok(())
    }

    fn remove_sp(&mut self, sp_id: &str) {
        self.sps.remove(sp_id);
        self.assignments
            .retain(|a| a.principal_id != sp_id && a.resource_id != sp_id);
        self.grants
            .retain(|g| g.client_id != sp_id && g.resource_id != sp_id);
        for app in self.apps.values_mut() {
            app.owners.retain(|o| o != sp_id);
        }
        for sp in self.sps.values_mut() {
            sp.owners.retain(|o| o != sp_id);
        }
    }

    // ---- credentials ----

    pub fn add_password(
        &mut self,
        id: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<Value, GraphApiError> {
        let spec = match body.get("passwordCredential") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(GraphApiError::invalid_property(
                    "passwordCredential",
                    "InvalidValue",
                    "passwordCredential must be an object.",
                ));
            }
        };
        let app = self
            .apps
            .get(id)
            .ok_or_else(|| GraphApiError::not_found(id))?;
        if app.personal() && app.passwords.len() >= MAX_PERSONAL_SECRETS {
            return Err(GraphApiError::invalid_property(
                "passwordCredentials",
                "LimitExceeded",
                format!(
                    "Apps that accept personal accounts can have at most {MAX_PERSONAL_SECRETS} client secrets."
                ),
            ));
        }
        let start = parse_time(
            "passwordCredential.startDateTime",
            spec.get("startDateTime").unwrap_or(&Value::Null),
        )?
        .unwrap_or(now);
        let end = parse_time(
            "passwordCredential.endDateTime",
            spec.get("endDateTime").unwrap_or(&Value::Null),
        )?
        .unwrap_or_else(|| start.checked_add(YEAR * 2).unwrap_or(start));
        if end <= start {
            return Err(GraphApiError::invalid_property(
                "passwordCredential.endDateTime",
                "InvalidValue",
                "endDateTime must be after startDateTime.",
            ));
        }
        let display_name = match spec.get("displayName") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(GraphApiError::invalid_property(
                    "passwordCredential.displayName",
                    "InvalidValue",
                    "displayName must be a string.",
                ));
            }
        };
        let password = Password {
            key_id: new_guid(),
            display_name,
            secret: new_secret(),
            start,
            end,
        };
        let rendered = password.render(true);
        let mut candidate = app.clone();
        candidate.passwords.push(password);
        let old = app.clone();
        self.validate_app(&candidate, Some(&old))?;
        self.apps.insert(id.to_string(), candidate);
        Ok(rendered)
    }

    pub fn remove_password(&mut self, id: &str, body: &Value) -> Result<(), GraphApiError> {
        let key_id = body
            .get("keyId")
            .and_then(Value::as_str)
            .filter(|k| is_guid(k))
            .ok_or_else(|| {
                GraphApiError::invalid_property(
                    "keyId",
                    "MissingValue",
                    "removePassword needs the keyId (a GUID) of the password credential.",
                )
            })?
            .to_string();
        let app = self
            .apps
            .get_mut(id)
            .ok_or_else(|| GraphApiError::not_found(id))?;
        let before = app.passwords.len();
        app.passwords
            .retain(|p| !p.key_id.eq_ignore_ascii_case(&key_id));
        if app.passwords.len() == before {
            return Err(GraphApiError::invalid_property(
                "keyId",
                "InvalidValue",
                format!("No password credential with keyId {key_id} exists on the application."),
            ));
        }
        Ok(())
    }

    // ---- federated identity credentials ----

    pub fn create_fic(&mut self, app_id: &str, body: &Value) -> Result<Value, GraphApiError> {
        let app = self
            .apps
            .get(app_id)
            .ok_or_else(|| GraphApiError::not_found(app_id))?;
        let fic = parse_fic(body, None)?;
        if app.fics.len() >= MAX_FEDERATED_CREDENTIALS {
            return Err(GraphApiError::invalid_property(
                "federatedIdentityCredentials",
                "LimitExceeded",
                format!(
                    "An application can have at most {MAX_FEDERATED_CREDENTIALS} federated identity credentials."
                ),
            ));
        }
        if app
            .fics
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(&fic.name))
        {
            return Err(GraphApiError::new(
                StatusCode::CONFLICT,
                "Request_MultipleObjectsWithSameKeyValue",
                format!(
                    "A federated identity credential named '{}' already exists.",
                    fic.name
                ),
            ));
        }
        check_fic_unique(&app.fics, &fic)?;
        let rendered = fic.render();
        if let Some(app) = self.apps.get_mut(app_id) {
            app.fics.push(fic);
        }
        Ok(rendered)
    }

    pub fn patch_fic(
        &mut self,
        app_id: &str,
        key: &str,
        body: &Value,
    ) -> Result<(), GraphApiError> {
        let app = self
            .apps
            .get(app_id)
            .ok_or_else(|| GraphApiError::not_found(app_id))?;
        let pos = fic_position(app, key).ok_or_else(|| GraphApiError::not_found(key))?;
        let old = app.fics[pos].clone();
        let mut merged = old.render();
        if let (Some(m), Some(b)) = (merged.as_object_mut(), body.as_object()) {
            for (k, v) in b {
                if k == "name" && v.as_str() != Some(old.name.as_str()) {
                    return Err(GraphApiError::invalid_property(
                        "name",
                        "ReadOnlyProperty",
                        "The name of a federated identity credential cannot be changed.",
                    ));
                }
                if k == "id" {
                    continue;
                }
                m.insert(k.clone(), v.clone());
            }
        }
        let fic = parse_fic(&merged, Some(old.id.clone()))?;
        let others: Vec<Fic> = app
            .fics
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pos)
            .map(|(_, f)| f.clone())
            .collect();
        check_fic_unique(&others, &fic)?;
        if let Some(app) = self.apps.get_mut(app_id) {
            app.fics[pos] = fic;
        }
        Ok(())
    }

    pub fn delete_fic(&mut self, app_id: &str, key: &str) -> Result<(), GraphApiError> {
        let app = self
            .apps
            .get_mut(app_id)
            .ok_or_else(|| GraphApiError::not_found(app_id))?;
        let pos = fic_position(app, key).ok_or_else(|| GraphApiError::not_found(key))?;
        app.fics.remove(pos);
        Ok(())
    }

    // ---- owners ----

    pub fn add_owner(&mut self, target: &str, body: &Value) -> Result<(), GraphApiError> {
        let reference = body
            .get("@odata.id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GraphApiError::invalid_property(
                    "@odata.id",
                    "MissingValue",
                    "The request body must carry @odata.id, the URL of the directory object.",
                )
            })?;
        let owner = reference
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if !self.sps.contains_key(&owner) {
            return Err(GraphApiError::not_found(&owner));
        }
        let owners = if let Some(app) = self.apps.get_mut(target) {
            &mut app.owners
        } else if let Some(sp) = self.sps.get_mut(target) {
            &mut sp.owners
        } else {
            return Err(GraphApiError::not_found(target));
        };
        if owners.contains(&owner) {
            return Err(GraphApiError::bad_request(
                "One or more added object references already exist for the following modified properties: 'owners'.",
            ));
        }
        owners.push(owner);
        Ok(())
    }

    pub fn remove_owner(&mut self, target: &str, owner: &str) -> Result<(), GraphApiError> {
        let owners = if let Some(app) = self.apps.get_mut(target) {
            &mut app.owners
        } else if let Some(sp) = self.sps.get_mut(target) {
            &mut sp.owners
        } else {
            return Err(GraphApiError::not_found(target));
        };
        let before = owners.len();
        owners.retain(|o| o != owner);
        if owners.len() == before {
            return Err(GraphApiError::not_found(owner));
        }
        Ok(())
    }

    // ---- service principals ----

    pub fn create_sp(&mut self, body: &Value, now: Timestamp) -> Result<String, GraphApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| GraphApiError::bad_request("The request body must be a JSON object."))?;
        let app_id = body
            .get("appId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GraphApiError::invalid_property(
                    "appId",
                    "MissingValue",
                    "Property 'appId' is required.",
                )
            })?
            .to_string();
        let backed = self
            .app_by_app_id(&app_id)
            .is_some_and(|a| a.foreign || a.visible(now));
        if !backed {
            let mut e = GraphApiError::bad_request(format!(
                "The appId '{app_id}' of the service principal does not reference a valid application object."
            ));
            e.details.push(super::error::ErrorDetail {
                code: "NoBackingApplicationObject".into(),
                message: e.message.clone(),
                target: "appId".into(),
            });
            return Err(e);
        }
        if self.sp_by_app_id(&app_id).is_some() {
            return Err(GraphApiError::new(
                StatusCode::CONFLICT,
                "Request_MultipleObjectsWithSameKeyValue",
                format!(
                    "The service principal cannot be created, updated, or restored because the service principal name {app_id} is already in use."
                ),
            ));
        }
        let mut doc = sp_template();
        let mut rest = body.clone();
        rest.remove("appId");
        merge_sp(&mut doc, &rest)?;
        let id = new_guid();
        let seq = self.next_seq();
        self.sps.insert(
            id.clone(),
            Sp {
                id: id.clone(),
                app_id,
                doc,
                owners: vec![],
                visible_at: self.new_visible_at(now),
                seq,
            },
        );
        Ok(id)
    }

    pub fn patch_sp(&mut self, id: &str, body: &Value) -> Result<(), GraphApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| GraphApiError::bad_request("The request body must be a JSON object."))?;
        let sp = self
            .sps
            .get_mut(id)
            .ok_or_else(|| GraphApiError::not_found(id))?;
        let mut doc = sp.doc.clone();
        merge_sp(&mut doc, body)?;
        sp.doc = doc;
        Ok(())
    }

    pub fn delete_sp(&mut self, id: &str) -> Result<(), GraphApiError> {
        if !self.sps.contains_key(id) {
            return Err(GraphApiError::not_found(id));
        }
        self.remove_sp(id);
        Ok(())
    }

    // ---- app role assignments ----

    pub fn create_assignment(
        &mut self,
        resource_sp: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<Value, GraphApiError> {
        let field = |name: &str| -> Result<String, GraphApiError> {
            body.get(name)
                .and_then(Value::as_str)
                .filter(|s| is_guid(s))
                .map(str::to_string)
                .ok_or_else(|| {
                    GraphApiError::invalid_property(
                        name,
                        "MissingValue",
                        format!("Property '{name}' is required and must be a GUID."),
                    )
                })
        };
        let principal_id = field("principalId")?;
        let resource_id = field("resourceId")?;
        let app_role_id = field("appRoleId")?;
        if !resource_id.eq_ignore_ascii_case(resource_sp) {
            return Err(GraphApiError::invalid_property(
                "resourceId",
                "InvalidValue",
                "resourceId must be the id of the service principal in the URL.",
            ));
        }
        let resource = self
            .sps
            .get(resource_sp)
            .filter(|s| s.visible(now))
            .ok_or_else(|| GraphApiError::not_found(resource_sp))?;
        let resource_app = self
            .sp_app(resource)
            .ok_or_else(|| GraphApiError::not_found(resource_sp))?;
        let (principal_type, principal_name) = if let Some(sp) =
            self.sps.get(&principal_id).filter(|s| s.visible(now))
        {
            (
                "ServicePrincipal",
                self.sp_app(sp)
                    .map(|a| a.display_name().to_string())
                    .unwrap_or_default(),
            )
        } else if let Some(g) = self.groups.get(&principal_id) {
            ("Group", g.display_name.clone())
        } else {
            return Err(GraphApiError::bad_request(format!(
                "Resource '{principal_id}' does not exist or one of its queried reference-property objects are not present."
            )));
        };
        if app_role_id != DEFAULT_ROLE_ID {
            let member = if principal_type == "Group" {
                "User"
            } else {
                "Application"
            };
            let role = resource_app.enabled_role(&app_role_id);
            let allows = role.as_ref().is_some_and(|r| {
                r.get("allowedMemberTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(member)))
            });
            if !allows {
                return Err(GraphApiError::invalid_property(
                    "appRoleId",
                    "InvalidValue",
                    format!(
                        "Permission being assigned was not found on application '{}': no enabled app role {app_role_id} that allows member type {member}.",
                        resource_app.app_id
                    ),
                ));
            }
        }
        if self.assignments.iter().any(|a| {
            a.resource_id == resource_sp
                && a.principal_id.eq_ignore_ascii_case(&principal_id)
                && a.app_role_id.eq_ignore_ascii_case(&app_role_id)
        }) {
            return Err(GraphApiError::bad_request(
                "Permission being assigned already exists on the object.",
            ));
        }
        let a = Assignment {
            id: assignment_id(),
            app_role_id,
            principal_id,
            principal_type: principal_type.into(),
            principal_display_name: principal_name,
            resource_id: resource_sp.to_string(),
            resource_display_name: resource_app.display_name().to_string(),
            created: now,
        };
        let rendered = a.render();
        self.assignments.push(a);
        Ok(rendered)
    }

    pub fn delete_assignment(&mut self, resource_sp: &str, id: &str) -> Result<(), GraphApiError> {
        let before = self.assignments.len();
        self.assignments
            .retain(|a| !(a.resource_id == resource_sp && a.id == id));
        if self.assignments.len() == before {
            return Err(GraphApiError::not_found(id));
        }
        Ok(())
    }

    // ---- delegated permission grants ----

    pub fn create_grant(&mut self, body: &Value) -> Result<Value, GraphApiError> {
        let client_id = body
            .get("clientId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource_id = body
            .get("resourceId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let consent = body
            .get("consentType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let principal = body.get("principalId").and_then(Value::as_str);
        let scope = body
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.sps.contains_key(client_id) {
            return Err(GraphApiError::invalid_property(
                "clientId",
                "InvalidValue",
                format!("clientId '{client_id}' is not a service principal."),
            ));
        }
        let Some(resource) = self.sps.get(resource_id) else {
            return Err(GraphApiError::invalid_property(
                "resourceId",
                "InvalidValue",
                format!("resourceId '{resource_id}' is not a service principal."),
            ));
        };
        match (consent, principal) {
            ("AllPrincipals", None) | ("Principal", Some(_)) => {}
            _ => {
                return Err(GraphApiError::invalid_property(
                    "consentType",
                    "InvalidValue",
                    "consentType must be AllPrincipals (without principalId) or Principal (with principalId).",
                ));
            }
        }
        let known: HashSet<String> = self
            .sp_app(resource)
            .map(|a| {
                a.scopes()
                    .iter()
                    .filter_map(|s| s.get("value").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for s in scope.split_whitespace() {
            if !known.contains(s) {
                return Err(GraphApiError::invalid_property(
                    "scope",
                    "InvalidValue",
                    format!("The resource does not define the delegated permission '{s}'."),
                ));
            }
        }
        if self.grants.iter().any(|g| {
            g.client_id == client_id
                && g.resource_id == resource_id
                && g.consent_type == consent
                && g.principal_id.as_deref() == principal
        }) {
            return Err(GraphApiError::new(
                StatusCode::CONFLICT,
                "Request_MultipleObjectsWithSameKeyValue",
                "Permission entry already exists.",
            ));
        }
        let g = Grant {
            id: assignment_id(),
            client_id: client_id.into(),
            consent_type: consent.into(),
            principal_id: principal.map(str::to_string),
            resource_id: resource_id.into(),
            scope: scope.into(),
        };
        let rendered = g.render();
        self.grants.push(g);
        Ok(rendered)
    }

    pub fn patch_grant(&mut self, id: &str, body: &Value) -> Result<(), GraphApiError> {
        let scope = body
            .get("scope")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GraphApiError::invalid_property(
                    "scope",
                    "MissingValue",
                    "Only 'scope' can be changed.",
                )
            })?
            .to_string();
        let grant = self
            .grants
            .iter_mut()
            .find(|g| g.id == id)
            .ok_or_else(|| GraphApiError::not_found(id))?;
        grant.scope = scope;
        Ok(())
    }

    pub fn delete_grant(&mut self, id: &str) -> Result<(), GraphApiError> {
        let before = self.grants.len();
        self.grants.retain(|g| g.id != id);
        if self.grants.len() == before {
            return Err(GraphApiError::not_found(id));
        }
        Ok(())
    }
}

/// How a request names an application or service principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppKey {
    Id(String),
    AppId(String),
    UniqueName(String),
}

impl AppKey {
    pub fn text(&self) -> &str {
        match self {
            AppKey::Id(s) | AppKey::AppId(s) | AppKey::UniqueName(s) => s,
        }
    }
}

/// What a new application looks like before the body is applied; also the shape PATCH bodies are
/// checked against (unknown properties are refused).
pub fn app_template(display_name: &str) -> Map<String, Value> {
    let v = json!({
        "displayName": display_name,
        "description": null,
        "notes": null,
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "identifierUris": [],
        "groupMembershipClaims": null,
        "isFallbackPublicClient": null,
        "isDeviceOnlyAuthSupported": null,
        "serviceManagementReference": null,
        "tokenEncryptionKeyId": null,
        "defaultRedirectUri": null,
        "samlMetadataUrl": null,
        "oauth2RequirePostResponse": false,
        "api": {
            "acceptMappedClaims": null,
            "knownClientApplications": [],
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
            "requestedAccessTokenVersion": null,
        },
        "appRoles": [],
        "info": {
            "logoUrl": null, "marketingUrl": null, "privacyStatementUrl": null,
            "supportUrl": null, "termsOfServiceUrl": null,
        },
        "optionalClaims": null,
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "publicClient": {"redirectUris": []},
        "requiredResourceAccess": [],
        "spa": {"redirectUris": []},
        "web": {
            "homePageUrl": null,
            "logoutUrl": null,
            "redirectUris": [],
            "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false},
            "redirectUriSettings": [],
        },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const OPTIONAL_CLAIMS_SHAPE: &str = r#"{"idToken": [], "accessToken": [], "saml2Token": []}"#;

/// Merges `patch` into `current` for property `path`: objects property by property (keys checked
/// against `shape`), everything else (collections included) replaced.
fn merge(
    path: &str,
    current: &Value,
    patch: &Value,
    shape: &Value,
) -> Result<Value, GraphApiError> {
    let shape = if path == "optionalClaims" {
        serde_json::from_str(OPTIONAL_CLAIMS_SHAPE).unwrap_or(Value::Null)
    } else {
        shape.clone()
    };
    match (patch, &shape) {
        (Value::Null, Value::Array(_)) => Err(GraphApiError::invalid_property(
            path,
            "InvalidValue",
            format!("'{path}' is a collection and cannot be null: send [] to clear it."),
        )),
        (Value::Null, _) => Ok(Value::Null),
        (Value::Object(p), Value::Object(s)) => {
            let mut out = match current {
                Value::Object(c) => c.clone(),
                _ => s.clone(),
            };
            for (k, v) in p {
                let sub = format!("{path}.{k}");
                let Some(sub_shape) = s.get(k) else {
                    return Err(GraphApiError::invalid_property(
                        &sub,
                        "InvalidProperty",
                        format!("Invalid property '{sub}'."),
                    ));
                };
                let merged = merge(&sub, out.get(k).unwrap_or(&Value::Null), v, sub_shape)?;
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (_, Value::Object(_)) => Err(GraphApiError::invalid_property(
            path,
            "InvalidValue",
            format!("'{path}' is an object: send an object."),
        )),
        (Value::Array(_), _) => Ok(patch.clone()),
        (_, Value::Array(_)) => Err(GraphApiError::invalid_property(
            path,
            "InvalidValue",
            format!("'{path}' is a collection: send an array."),
        )),
        (Value::Object(_), _) => Err(GraphApiError::invalid_property(
            path,
            "InvalidValue",
            format!("Invalid value for '{path}'."),
        )),
        _ => Ok(patch.clone()),
    }
}

fn check_string_list(v: Option<&Value>, label: &str) -> Result<(), GraphApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(GraphApiError::invalid_property(
            label,
            "InvalidValue",
            format!("'{label}' must be a collection of strings."),
        )),
    }
}

/// The characters Graph allows in an app role or scope `value`.
fn valid_permission_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars().count() <= 120
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":!#$%&'()*+,-./;=?@[]^_{}~".contains(c))
}

/// Rules of `appRoles` (`roles`) or `api.oauth2PermissionScopes`: ids, values, the member types and
/// types, and "disable before you remove".
fn check_entitlements(
    label: &str,
    old: &[Value],
    new: &[Value],
    roles: bool,
) -> Result<(), GraphApiError> {
    let bad = |message: String| GraphApiError::invalid_property(label, "InvalidValue", message);
    let mut ids = HashSet::new();
    let mut values = HashSet::new();
    for (i, entry) in new.iter().enumerate() {
        let Some(obj) = entry.as_object() else {
            return Err(bad(format!("{label}[{i}] must be an object.")));
        };
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
        if !is_guid(id) {
            return Err(bad(format!("{label}[{i}].id must be a GUID.")));
        }
        if !ids.insert(id.to_lowercase()) {
            return Err(bad(format!("{label} contains id {id} twice.")));
        }
        let Some(enabled) = obj.get("isEnabled").and_then(Value::as_bool) else {
            return Err(bad(format!("{label}[{i}].isEnabled is required.")));
        };
        match obj.get("value") {
            Some(Value::String(v)) => {
                if !valid_permission_value(v) {
                    return Err(bad(format!(
                        "{label}[{i}].value {v:?} must be 1 to 120 characters from a-z, A-Z, 0-9 and :!#$%&'()*+,-./;=?@[]^_{{}}~, not starting with '.'."
                    )));
                }
                if !values.insert(v.to_lowercase()) {
                    return Err(bad(format!("{label} contains value {v:?} twice.")));
                }
            }
            None | Some(Value::Null) if roles => {}
            _ => return Err(bad(format!("{label}[{i}].value is required."))),
        }
        if roles {
            if obj.contains_key("origin") {
                return Err(bad(format!(
                    "{label}[{i}].origin is read-only and must not be sent."
                )));
            }
            let types = obj
                .get("allowedMemberTypes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if types.is_empty()
                || !types
                    .iter()
                    .all(|t| matches!(t.as_str(), Some("User" | "Application")))
            {
                return Err(bad(format!(
                    "{label}[{i}].allowedMemberTypes must hold User and/or Application."
                )));
            }
        } else if !matches!(
            obj.get("type").and_then(Value::as_str),
            Some("User" | "Admin")
        ) {
            return Err(bad(format!("{label}[{i}].type must be User or Admin.")));
        }
        let existed = old.iter().any(|o| {
            o.get("id")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(id))
        });
        if !existed && !enabled {
            return Err(bad(format!(
                "{label}[{i}] is new and must be created enabled (isEnabled: true)."
            )));
        }
    }
    for o in old {
        let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
        let enabled = o.get("isEnabled").and_then(Value::as_bool) == Some(true);
        if enabled && !ids.contains(&id.to_lowercase()) {
            return Err(GraphApiError::invalid_property(
                label,
                "CannotDeleteOrUpdateEnabledEntitlement",
                format!(
                    "Permission (scope or role) cannot be deleted or updated unless disabled first: {label} {id} ({}) is enabled.",
                    o.get("value").and_then(Value::as_str).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

fn parse_key_credentials(
    value: &Value,
    existing: &[KeyCred],
    now: Timestamp,
) -> Result<Vec<KeyCred>, GraphApiError> {
    let Some(items) = value.as_array() else {
        return Err(GraphApiError::invalid_property(
            "keyCredentials",
            "InvalidValue",
            "keyCredentials must be a collection.",
        ));
    };
    let mut out: Vec<KeyCred> = vec![];
    for (i, item) in items.iter().enumerate() {
        let field = format!("keyCredentials[{i}]");
        let bad = |m: String| GraphApiError::invalid_property(&field, "InvalidValue", m);
        let Some(obj) = item.as_object() else {
            return Err(bad(format!("{field} must be an object.")));
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "AsymmetricX509Cert" {
            return Err(bad(format!(
                "{field}.type must be AsymmetricX509Cert, not {kind:?}."
            )));
        }
        let usage = obj.get("usage").and_then(Value::as_str).unwrap_or_default();
        if usage != "Verify" && usage != "Sign" {
            return Err(bad(format!("{field}.usage must be Verify or Sign.")));
        }
        let key = obj.get("key").and_then(Value::as_str).ok_or_else(|| {
            bad(format!(
                "{field}.key is required: PATCH replaces the whole set, so every certificate that should stay is sent again with its key."
            ))
        })?;
        let parsed = cert::parse_key_credential(key).map_err(|e| bad(format!("{field}.{e}.")))?;
        let key_id = match obj.get("keyId") {
            None | Some(Value::Null) => new_guid(),
            Some(Value::String(k)) if is_guid(k) => k.to_lowercase(),
            Some(_) => return Err(bad(format!("{field}.keyId must be a GUID."))),
        };
        let kept = existing.iter().find(|k| k.key_id == key_id);
        let start = parse_time(
            &format!("{field}.startDateTime"),
            obj.get("startDateTime").unwrap_or(&Value::Null),
        )?
        .or(kept.map(|k| k.start))
        .unwrap_or(now);
        let end = parse_time(
            &format!("{field}.endDateTime"),
            obj.get("endDateTime").unwrap_or(&Value::Null),
        )?
        .or(kept.map(|k| k.end))
        .unwrap_or_else(|| {
            let year = start.checked_add(YEAR).unwrap_or(start);
            year.min(parsed.not_after)
        });
        if end <= start {
            return Err(bad(format!(
                "{field}.endDateTime must be after startDateTime."
            )));
        }
        if end > start.checked_add(YEAR + CERT_SLACK).unwrap_or(start) {
            return Err(bad(format!(
                "{field}.endDateTime is more than a year after startDateTime (key credential end date is invalid)."
            )));
        }
        let x5t = cert::x5t(&parsed.der);
        if out.iter().any(|k| k.key_id == key_id) {
            return Err(bad(format!(
                "keyCredentials contains keyId {key_id} twice."
            )));
        }
        if out.iter().any(|k| k.x5t == x5t && k.usage == usage) {
            return Err(bad(format!(
                "keyCredentials contains the same certificate twice (thumbprint {}).",
                cert::hex_thumbprint(&parsed.der)
            )));
        }
        let display_name = obj
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string);
        let custom = {
            use sha1::Digest as _;
            STANDARD.encode(sha1::Sha1::digest(&parsed.der))
        };
        out.push(KeyCred {
            key_id,
            display_name,
            usage: usage.into(),
            x5t_s256: cert::x5t_s256(&parsed.der),
            x5t,
            cert: parsed,
            start,
            end,
            custom_key_identifier: custom,
        });
    }
    Ok(out)
}

fn parse_fic(body: &Value, id: Option<String>) -> Result<Fic, GraphApiError> {
    let text = |name: &str, max: usize| -> Result<String, GraphApiError> {
        let v = body.get(name).and_then(Value::as_str).unwrap_or_default();
        if v.is_empty() || v.chars().count() > max {
            return Err(GraphApiError::invalid_property(
                name,
                "InvalidValue",
                format!("Property '{name}' is required and can be at most {max} characters."),
            ));
        }
        Ok(v.to_string())
    };
    let name = text("name", 120)?;
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.len() < 3
        || !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(GraphApiError::invalid_property(
            "name",
            "InvalidValue",
            "The name must be 3 to 120 characters of a-z, A-Z, 0-9, '-' and '_', starting with a letter or digit.",
        ));
    }
    let issuer = text("issuer", 600)?;
    if url::Url::parse(&issuer).is_err() {
        return Err(GraphApiError::invalid_property(
            "issuer",
            "InvalidValue",
            "The issuer must be a URL.",
        ));
    }
    let subject = text("subject", 600)?;
    let audiences: Vec<String> = body
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| strings(a))
        .unwrap_or_default();
    if audiences.len() != 1 || audiences[0].is_empty() || audiences[0].chars().count() > 600 {
        return Err(GraphApiError::invalid_property(
            "audiences",
            "InvalidValue",
            "audiences must hold exactly one value of at most 600 characters.",
        ));
    }
    Ok(Fic {
        id: id.unwrap_or_else(new_guid),
        name,
        issuer,
        subject,
        audiences,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn check_fic_unique(others: &[Fic], fic: &Fic) -> Result<(), GraphApiError> {
    if others
        .iter()
        .any(|f| f.issuer == fic.issuer && f.subject == fic.subject)
    {
        return Err(GraphApiError::bad_request(
            "A federated identity credential with the same issuer and subject already exists on the application.",
        ));
    }
    Ok(())
}

fn fic_position(app: &App, key: &str) -> Option<usize> {
    app.fics
        .iter()
        .position(|f| f.id == key || f.name.eq_ignore_ascii_case(key))
}

pub fn sp_template() -> Map<String, Value> {
    match json!({
        "accountEnabled": true,
        "appRoleAssignmentRequired": false,
        "tags": [],
        "notes": null,
        "description": null,
        "customSecurityAttributes": null,
        "preferredSingleSignOnMode": null,
        "loginUrl": null,
        "notificationEmailAddresses": [],
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn merge_sp(doc: &mut Map<String, Value>, body: &Map<String, Value>) -> Result<(), GraphApiError> {
    for (k, v) in body {
        if k.starts_with("@odata") {
            continue;
        }
        if !sp_template().contains_key(k) {
            return Err(GraphApiError::invalid_property(
                k,
                "InvalidProperty",
                format!("Invalid property '{k}' (or it is read-only) on a service principal."),
            ));
        }
        let ok = match k.as_str() {
            "accountEnabled" | "appRoleAssignmentRequired" => v.is_boolean(),
            "tags" | "notificationEmailAddresses" => {
                v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
            "customSecurityAttributes" => v.is_object() || v.is_null(),
            _ => v.is_string() || v.is_null(),
        };
        if !ok {
            return Err(GraphApiError::invalid_property(
                k,
                "InvalidValue",
                format!("Invalid value for '{k}'."),
            ));
        }
        doc.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// A client secret as Graph makes them: 40 characters, with `~` in fourth place.
fn new_secret() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    let mut rng = rand::thread_rng();
    let mut s: String = (0..40)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    s.replace_range(3..4, "~");
    s
}

/// An assignment or grant id (Graph's are 43-character base64url strings).
fn assignment_id() -> String {
    crate::jwt::random_token(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_look_like_graphs_and_patches_merge_objects_but_replace_collections() {
        let s = new_secret();
        assert_eq!(s.len(), 40);
        assert_eq!(&s[3..4], "~");
        let template = Value::Object(app_template(""));
        let current = json!({"requestedAccessTokenVersion": 2, "preAuthorizedApplications": [{"a": 1}],
                             "oauth2PermissionScopes": [], "acceptMappedClaims": null, "knownClientApplications": []});
        let merged = merge(
            "api",
            &current,
            &json!({"preAuthorizedApplications": []}),
            &template["api"],
        )
        .unwrap();
        assert_eq!(merged["requestedAccessTokenVersion"], 2);
        assert_eq!(merged["preAuthorizedApplications"], json!([]));
        assert!(merge("api", &current, &json!({"nope": 1}), &template["api"]).is_err());
        assert!(merge("tags", &json!([]), &json!("x"), &template["tags"]).is_err());
    }
}
