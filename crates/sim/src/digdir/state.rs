//! The simulator's stored world: clients, their key sets, scopes and accesses, and the
//! bookkeeping of the token endpoints (used `jti`s, authorization codes, issued tokens).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::error::{ApiError, FieldError};
use super::seed::{KRR_CONTACT, KRR_DIGITALPOST, Seed};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A key lives at most a year after it was posted.
pub const KEY_LIFETIME_SECS: i64 = 365 * 24 * 3600;
pub const MAX_KEYS: usize = 5;

/// One registered public key.
#[derive(Clone, Debug)]
pub struct StoredJwk {
    pub kid: String,
    pub alg: String,
    pub n: String,
    pub e: String,
    pub x5c: Option<Vec<String>>,
    /// Unix seconds.
    pub exp: i64,
    pub created: Timestamp,
    pub last_updated: Timestamp,
    /// When the key reached the token endpoints' view (posted time; see propagation delay).
    pub posted: Timestamp,
}

impl StoredJwk {
    pub fn render(&self) -> Value {
        let mut v = json!({
            "kty": "RSA", "kid": self.kid, "use": "sig", "alg": self.alg, "n": self.n, "e": self.e,
            "exp": self.exp, "created": self.created.to_string(), "last_updated": self.last_updated.to_string(),
        });
        if let (Some(x5c), Some(map)) = (&self.x5c, v.as_object_mut()) {
            map.insert("x5c".into(), json!(x5c));
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct ClientJwks {
    pub keys: Vec<StoredJwk>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    /// The admin client: usable at the token endpoint, not listed by the admin API.
    pub hidden: bool,
    pub fields: ClientFields,
    pub client_orgno: String,
    pub active: bool,
    pub created: Timestamp,
    pub last_updated: Timestamp,
    pub deactivated: Option<Timestamp>,
    pub client_secret: Option<String>,
    pub jwks: Option<ClientJwks>,
    /// Keys removed from the set, still accepted until the removal has propagated.
    pub retired: Vec<(StoredJwk, Timestamp)>,
}

/// The settable part of a client registration.
#[derive(Clone, Debug, Default)]
pub struct ClientFields {
    pub client_name: Option<String>,
    pub description: Option<String>,
    pub integration_type: String,
    pub application_type: String,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub frontchannel_logout_session_required: bool,
    pub sso_disabled: bool,
    pub access_token_lifetime: i64,
    pub authorization_lifetime: i64,
    pub refresh_token_lifetime: i64,
    pub refresh_token_usage: String,
    pub code_challenge_method: String,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
}

impl Client {
    pub fn render(&self, with_secret: bool) -> Value {
        let f = &self.fields;
        let mut v = json!({
            "client_id": self.client_id,
            "client_name": f.client_name,
            "client_orgno": self.client_orgno,
            "description": f.description,
            "active": self.active,
            "application_type": f.application_type,
            "integration_type": f.integration_type,
            "scopes": f.scopes,
            "grant_types": f.grant_types,
            "token_endpoint_auth_method": f.token_endpoint_auth_method,
            "redirect_uris": f.redirect_uris,
            "post_logout_redirect_uris": f.post_logout_redirect_uris,
            "frontchannel_logout_uri": f.frontchannel_logout_uri,
            "frontchannel_logout_session_required": f.frontchannel_logout_session_required,
            "sso_disabled": f.sso_disabled,
            "access_token_lifetime": f.access_token_lifetime,
            "authorization_lifetime": f.authorization_lifetime,
            "refresh_token_lifetime": f.refresh_token_lifetime,
            "refresh_token_usage": f.refresh_token_usage,
            "code_challenge_method": f.code_challenge_method,
            "client_uri": f.client_uri,
            "logo_uri": f.logo_uri,
            "onbehalfof": [],
            "created": self.created.to_string(),
            "last_updated": self.last_updated.to_string(),
        });
        if let (true, Some(secret), Some(map)) =
            (with_secret, &self.client_secret, v.as_object_mut())
        {
            map.insert("client_secret".into(), secret.clone().into());
        }
        v
    }

    pub fn render_jwks(&self) -> Option<Value> {
        let jwks = self.jwks.as_ref()?;
        Some(json!({
            "keys": jwks.keys.iter().map(StoredJwk::render).collect::<Vec<_>>(),
            "created": jwks.created.to_string(),
            "last_updated": jwks.last_updated.to_string(),
        }))
    }

    /// Whether the token endpoints know this client at `now` (after propagation).
    pub fn runtime_known(&self, now: i64, delay: i64) -> bool {
        if self.active {
            self.created.as_second() + delay <= now
        } else {
            self.deactivated.is_some_and(|d| {
                d.as_second() + delay > now && self.created.as_second() + delay <= now
            })
        }
    }

    pub fn is_maskinporten(&self) -> bool {
        matches!(
            self.fields.integration_type.as_str(),
            "maskinporten" | "krr"
        )
    }
}

#[derive(Clone, Debug)]
pub struct Scope {
    pub prefix: String,
    pub subscope: String,
    pub description: String,
    pub long_description: Option<String>,
    pub active: bool,
    pub allowed_integration_types: Vec<String>,
    pub at_max_age: Option<i64>,
    pub authorization_max_lifetime: Option<i64>,
    pub delegation_source: Option<String>,
    pub accessible_for_all: bool,
    pub visibility: String,
    pub token_type: String,
    pub requires_user_consent: bool,
    pub requires_user_authentication: bool,
    pub requires_pseudonymous_tokens: bool,
    pub enforced_aud_for_access_token: Option<String>,
    pub owner_orgno: String,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

impl Scope {
    /// A scope with Digdir's defaults (active, public, self-contained, no description yet).
    pub fn new(prefix: String, subscope: String, owner_orgno: String, now: Timestamp) -> Self {
        Self {
            prefix,
            subscope,
            description: String::new(),
            long_description: None,
            active: true,
            allowed_integration_types: vec![],
            at_max_age: None,
            authorization_max_lifetime: None,
            delegation_source: None,
            accessible_for_all: false,
            visibility: "PUBLIC".into(),
            token_type: "SELF_CONTAINED".into(),
            requires_user_consent: false,
            requires_user_authentication: false,
            requires_pseudonymous_tokens: false,
            enforced_aud_for_access_token: None,
            owner_orgno,
            created: now,
            last_updated: now,
        }
    }

    pub fn name(&self) -> String {
        format!("{}:{}", self.prefix, self.subscope)
    }
    pub fn render(&self) -> Value {
        json!({
            "prefix": self.prefix,
            "subscope": self.subscope,
            "name": self.name(),
            "description": self.description,
            "long_description": self.long_description,
            "active": self.active,
            "allowed_integration_types": self.allowed_integration_types,
            "at_max_age": self.at_max_age,
            "authorization_max_lifetime": self.authorization_max_lifetime,
            "delegation_source": self.delegation_source,
            "accessible_for_all": self.accessible_for_all,
            "visibility": self.visibility,
            "token_type": self.token_type,
            "requires_user_consent": self.requires_user_consent,
            "requires_user_authentication": self.requires_user_authentication,
            "requires_pseudonymous_tokens": self.requires_pseudonymous_tokens,
            "enforced_aud_for_access_token": self.enforced_aud_for_access_token,
            "owner_orgno": self.owner_orgno,
            "created": self.created.to_string(),
            "last_updated": self.last_updated.to_string(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ScopeAccess {
    pub scope: String,
    pub consumer_orgno: String,
    pub owner_orgno: String,
    pub state: String,
    pub active: bool,
    pub created: Timestamp,
    pub last_updated: Timestamp,
    /// How many grants (`PUT /scopes/access/{orgno}`) were carried out for this access: a test of
    /// idempotent clients counts them.
    pub grants: u32,
}

impl ScopeAccess {
    pub fn render(&self, seed: &Seed) -> Value {
        json!({
            "scope": self.scope,
            "state": self.state,
            "consumer_orgno": self.consumer_orgno,
            "consumer_organization_name": seed.org_name(&self.consumer_orgno),
            "owner_orgno": self.owner_orgno,
            "owner_organization_name": seed.org_name(&self.owner_orgno),
            "created": self.created.to_string(),
            "last_updated": self.last_updated.to_string(),
        })
    }
}

/// A pending ID-porten authorization code.
#[derive(Clone, Debug)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub acr: String,
    pub pid: String,
    pub expires: i64,
}

/// What the simulator remembers about an access token it issued.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub orgno: String,
    pub scopes: Vec<String>,
    pub exp: i64,
}

pub struct State {
    pub seed: Seed,
    pub clients: BTreeMap<String, Client>,
    pub scopes: BTreeMap<String, Scope>,
    pub accesses: Vec<ScopeAccess>,
    /// Altinn delegations standing in for Altinn: (consumer orgno, supplier orgno, scope).
    pub delegations: Vec<(String, String, String)>,
    /// `client_id\0jti` (or a hash of the whole grant) → expiry.
    pub used_grants: HashMap<String, i64>,
    pub codes: HashMap<String, AuthCode>,
    pub tokens: HashMap<String, IssuedToken>,
    pub propagation_delay: i64,
}

impl State {
    pub fn new(seed: Seed, now: Timestamp) -> Self {
        let mut scopes = BTreeMap::new();
        let mut accesses = vec![];
        for s in &seed.scopes {
            let (prefix, subscope) = s.name.split_once(':').unwrap_or(("", s.name.as_str()));
            let scope = Scope {
                prefix: prefix.into(),
                subscope: subscope.into(),
                description: s.description.clone(),
                long_description: None,
                active: true,
                allowed_integration_types: s.allowed_integration_types.clone(),
                at_max_age: s.at_max_age,
                authorization_max_lifetime: None,
                delegation_source: s.delegation_source.clone(),
                accessible_for_all: s.accessible_for_all,
                visibility: s.visibility.clone(),
                token_type: "SELF_CONTAINED".into(),
                requires_user_consent: false,
                requires_user_authentication: false,
                requires_pseudonymous_tokens: false,
                enforced_aud_for_access_token: None,
                owner_orgno: s.owner_orgno.clone(),
                created: now,
                last_updated: now,
            };
            for consumer in &s.consumers {
                accesses.push(ScopeAccess {
                    scope: s.name.clone(),
                    consumer_orgno: consumer.clone(),
                    owner_orgno: s.owner_orgno.clone(),
                    state: "APPROVED".into(),
                    active: true,
                    created: now,
                    last_updated: now,
                    grants: 0,
                });
            }
            scopes.insert(s.name.clone(), scope);
        }
        Self {
            propagation_delay: i64::try_from(seed.propagation_delay_secs).unwrap_or(i64::MAX / 4),
            delegations: seed.altinn_delegations.clone(),
            seed,
            clients: BTreeMap::new(),
            scopes,
            accesses,
            used_grants: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Whether `consumer` has delegated `scope` to `supplier` (in "Altinn").
    pub fn delegated(&self, consumer: &str, supplier: &str, scope: &str) -> bool {
        self.delegations
            .iter()
            .any(|(c, s, sc)| c == consumer && s == supplier && sc == scope)
    }

    /// Whether `orgno` may use `scope` (owner, APPROVED access, or accessible to all).
    pub fn org_may_use(&self, orgno: &str, scope: &Scope) -> bool {
        scope.accessible_for_all
            || scope.owner_orgno == orgno
            || self.accesses.iter().any(|a| {
                a.active
                    && a.state == "APPROVED"
                    && a.consumer_orgno == orgno
                    && a.scope == scope.name()
            })
    }

    /// Whether `kid` is registered on some client other than `client_id`.
    pub fn kid_owner_other_than(&self, kid: &str, client_id: &str) -> Option<String> {
        self.clients
            .values()
            .filter(|c| c.client_id != client_id)
            .find(|c| {
                c.jwks
                    .as_ref()
                    .is_some_and(|j| j.keys.iter().any(|k| k.kid == kid))
                    || c.retired.iter().any(|(k, _)| k.kid == kid)
            })
            .map(|c| c.client_id.clone())
    }

    pub fn prune(&mut self, now: i64) {
        self.used_grants.retain(|_, exp| *exp + 600 > now);
        self.codes.retain(|_, c| c.expires > now);
        self.tokens.retain(|_, t| t.exp > now);
    }
}

// ---- parsing and validation of client registrations ----

const LOGIN_TYPES: [&str; 3] = ["idporten", "api_klient", "ansattporten"];
const BUILTIN_LOGIN_SCOPES: [&str; 4] = ["openid", "profile", "eidas", "no_pid"];

fn field_str(map: &Map<String, Value>, name: &str, errs: &mut Vec<FieldError>) -> Option<String> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errs.push(FieldError::new(name, "must be a string"));
            None
        }
    }
}

fn field_list(
    map: &Map<String, Value>,
    name: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Vec<String>> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = vec![];
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => errs.push(FieldError::new(format!("{name}[{i}]"), "must be a string")),
                }
            }
            Some(out)
        }
        Some(_) => {
            errs.push(FieldError::new(name, "must be an array of strings"));
            None
        }
    }
}

fn field_bool(map: &Map<String, Value>, name: &str, errs: &mut Vec<FieldError>) -> Option<bool> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errs.push(FieldError::new(name, "must be a boolean"));
            None
        }
    }
}

fn field_int(map: &Map<String, Value>, name: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => {
                errs.push(FieldError::new(name, "must be a non-negative integer"));
                None
            }
        },
    }
}

fn one_of(value: &str, allowed: &[&str], name: &str, errs: &mut Vec<FieldError>) {
    if !allowed.contains(&value) {
        errs.push(FieldError::new(
            name,
            format!("`{value}` is not one of {}", allowed.join(", ")),
        ));
    }
}

/// Parses and validates a client registration body. `existing` is the stored client on PUT.
pub fn parse_client(
    body: &Value,
    existing: Option<&Client>,
    state: &State,
) -> Result<ClientFields, ApiError> {
    const OBJ: &str = "client";
    let Some(map) = body.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let mut errs = vec![];
    let integration_type = field_str(map, "integration_type", &mut errs);
    let integration_type = match (integration_type, existing) {
        (Some(t), Some(c)) if t != c.fields.integration_type => {
            errs.push(FieldError::new(
                "integration_type",
                format!(
                    "integration_type cannot be changed (is `{}`, got `{t}`)",
                    c.fields.integration_type
                ),
            ));
            c.fields.integration_type.clone()
        }
        (Some(t), _) => t,
        (None, Some(c)) => c.fields.integration_type.clone(),
        (None, None) => {
            errs.push(FieldError::new("integration_type", "is required"));
            String::new()
        }
    };
    if !integration_type.is_empty() {
        one_of(
            &integration_type,
            &[
                "ansattporten",
                "api_klient",
                "eformidling",
                "idporten",
                "idporten_saml2",
                "krr",
                "maskinporten",
            ],
            "integration_type",
            &mut errs,
        );
        if matches!(integration_type.as_str(), "eformidling" | "idporten_saml2") {
            errs.push(FieldError::new(
                "integration_type",
                format!("`{integration_type}` integrations are managed by Digdir and cannot be registered here"),
            ));
        }
    }
    let is_mp = matches!(integration_type.as_str(), "maskinporten" | "krr");
    let is_login = LOGIN_TYPES.contains(&integration_type.as_str());

    let application_type =
        field_str(map, "application_type", &mut errs).unwrap_or_else(|| "web".into());
    one_of(
        &application_type,
        &["web", "browser", "native"],
        "application_type",
        &mut errs,
    );
    let public_client = application_type != "web";

    let default_method = if is_mp {
        "private_key_jwt"
    } else if public_client {
        "none"
    } else {
        "client_secret_basic"
    };
    let method = field_str(map, "token_endpoint_auth_method", &mut errs)
        .unwrap_or_else(|| default_method.into());
    if method == "client_secret_jwt" {
        errs.push(FieldError::new(
            "token_endpoint_auth_method",
            "client_secret_jwt is not supported",
        ));
    } else {
        one_of(
            &method,
            &[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_method",
            &mut errs,
        );
    }

    let default_grants: Vec<String> = if is_mp {
        vec![JWT_BEARER.into()]
    } else {
        vec!["authorization_code".into()]
    };
    let grant_types = field_list(map, "grant_types", &mut errs).unwrap_or(default_grants);
    for (i, g) in grant_types.iter().enumerate() {
        let name = format!("grant_types[{i}]");
        match g.as_str() {
            "authorization_code" | "refresh_token" | JWT_BEARER | "jwt_bearer_token" => {}
            "implicit" | "password" | "client_credentials" => errs.push(FieldError::new(
                name,
                format!("the `{g}` grant is not supported"),
            )),
            other => errs.push(FieldError::new(
                name,
                format!("unknown grant type `{other}`"),
            )),
        }
    }
    let has_jwt_bearer = grant_types
        .iter()
        .any(|g| g == JWT_BEARER || g == "jwt_bearer_token");

    let default_scopes: Vec<String> = match integration_type.as_str() {
        "idporten" | "api_klient" | "ansattporten" => vec!["openid".into(), "profile".into()],
        "krr" => vec![KRR_CONTACT.into(), KRR_DIGITALPOST.into()],
        _ => vec![],
    };
    let scopes = field_list(map, "scopes", &mut errs).unwrap_or(default_scopes);
    let redirect_uris = field_list(map, "redirect_uris", &mut errs).unwrap_or_default();
    let post_logout_redirect_uris =
        field_list(map, "post_logout_redirect_uris", &mut errs).unwrap_or_default();
    let frontchannel_logout_uri =
        field_str(map, "frontchannel_logout_uri", &mut errs).filter(|s| !s.is_empty());

    if is_mp {
        if application_type != "web" {
            errs.push(FieldError::new(
                "application_type",
                "a Maskinporten client must be `web`",
            ));
        }
        if method != "private_key_jwt" {
            errs.push(FieldError::new(
                "token_endpoint_auth_method",
                "a Maskinporten client must use private_key_jwt (static secrets are not allowed)",
            ));
        }
        if !has_jwt_bearer || grant_types.len() != 1 {
            errs.push(FieldError::new(
                "grant_types",
                format!("a Maskinporten client must have exactly the grant type {JWT_BEARER}"),
            ));
        }
        if scopes.is_empty() {
            errs.push(FieldError::new(
                "scopes",
                "a Maskinporten client needs at least one scope",
            ));
        }
        if integration_type == "krr" {
            for (i, s) in scopes.iter().enumerate() {
                if s != KRR_CONTACT && s != KRR_DIGITALPOST {
                    errs.push(FieldError::new(
                        format!("scopes[{i}]"),
                        format!("a krr client can only have the KRR scopes, not `{s}`"),
                    ));
                }
            }
        } else {
            for (i, s) in scopes.iter().enumerate() {
                check_registrable_scope(
                    state,
                    s,
                    &integration_type,
                    &format!("scopes[{i}]"),
                    &mut errs,
                );
            }
        }
    } else if is_login {
        if public_client && method != "none" {
            errs.push(FieldError::new(
                "token_endpoint_auth_method",
                format!("a `{application_type}` client must use `none`"),
            ));
        }
        if !public_client && method == "none" {
            errs.push(FieldError::new(
                "token_endpoint_auth_method",
                "a `web` client must authenticate",
            ));
        }
        if !grant_types.iter().any(|g| g == "authorization_code") {
            errs.push(FieldError::new(
                "grant_types",
                "a login client needs authorization_code",
            ));
        }
        if has_jwt_bearer {
            errs.push(FieldError::new(
                "grant_types",
                "the jwt-bearer grant is for Maskinporten clients",
            ));
        }
        if redirect_uris.is_empty() {
            errs.push(FieldError::new(
                "redirect_uris",
                "at least one redirect URI is required",
            ));
        }
        if !scopes.iter().any(|s| s == "openid") {
            errs.push(FieldError::new(
                "scopes",
                "a login client needs the `openid` scope",
            ));
        }
        for (i, s) in scopes.iter().enumerate() {
            if BUILTIN_LOGIN_SCOPES.contains(&s.as_str()) {
                continue;
            }
            if integration_type == "api_klient" {
                check_registrable_scope(
                    state,
                    s,
                    &integration_type,
                    &format!("scopes[{i}]"),
                    &mut errs,
                );
            } else {
                errs.push(FieldError::new(
                    format!("scopes[{i}]"),
                    format!("an {integration_type} client may only have openid, profile, eidas and no_pid, not `{s}`"),
                ));
            }
        }
    }

    let prod = state.seed.environment == "prod";
    for (i, uri) in redirect_uris.iter().enumerate() {
        check_uri(
            uri,
            &format!("redirect_uris[{i}]"),
            prod,
            &application_type,
            &mut errs,
        );
    }
    for (i, uri) in post_logout_redirect_uris.iter().enumerate() {
        check_uri(
            uri,
            &format!("post_logout_redirect_uris[{i}]"),
            prod,
            &application_type,
            &mut errs,
        );
    }
    if let Some(uri) = &frontchannel_logout_uri
        && check_uri(
            uri,
            "frontchannel_logout_uri",
            prod,
            &application_type,
            &mut errs,
        )
    {
        let domain = registrable_domain(uri);
        if !redirect_uris.is_empty()
            && !redirect_uris
                .iter()
                .any(|r| registrable_domain(r) == domain)
        {
            errs.push(FieldError::new(
                "frontchannel_logout_uri",
                "must share its domain with one of the redirect URIs",
            ));
        }
    }

    let refresh_token_usage =
        field_str(map, "refresh_token_usage", &mut errs).unwrap_or_else(|| "ONETIME".into());
    one_of(
        &refresh_token_usage,
        &["ONETIME", "REUSE"],
        "refresh_token_usage",
        &mut errs,
    );
    let code_challenge_method =
        field_str(map, "code_challenge_method", &mut errs).unwrap_or_else(|| "S256".into());
    one_of(
        &code_challenge_method,
        &["none", "S256"],
        "code_challenge_method",
        &mut errs,
    );
    let client_name = field_str(map, "client_name", &mut errs);
    let description = field_str(map, "description", &mut errs);
    let client_uri = field_str(map, "client_uri", &mut errs);
    let logo_uri = field_str(map, "logo_uri", &mut errs);
    let access_token_lifetime = field_int(map, "access_token_lifetime", &mut errs).unwrap_or(120);
    let authorization_lifetime =
        field_int(map, "authorization_lifetime", &mut errs).unwrap_or(7200);
    let refresh_token_lifetime = field_int(map, "refresh_token_lifetime", &mut errs).unwrap_or(600);
    let frontchannel_logout_session_required =
        field_bool(map, "frontchannel_logout_session_required", &mut errs).unwrap_or(false);
    let sso_disabled =
        field_bool(map, "sso_disabled", &mut errs).unwrap_or(integration_type == "ansattporten");
    // Type-check the fields we accept but do not store separately.
    let _ = field_bool(map, "active", &mut errs);
    let _ = field_str(map, "client_id", &mut errs);
    let _ = field_str(map, "client_orgno", &mut errs);

    if !errs.is_empty() {
        return Err(ApiError::fields(OBJ, errs));
    }
    Ok(ClientFields {
        client_name,
        description,
        integration_type,
        application_type,
        scopes,
        grant_types,
        token_endpoint_auth_method: method,
        redirect_uris,
        post_logout_redirect_uris,
        frontchannel_logout_uri,
        frontchannel_logout_session_required,
        sso_disabled,
        access_token_lifetime,
        authorization_lifetime,
        refresh_token_lifetime,
        refresh_token_usage,
        code_challenge_method,
        client_uri,
        logo_uri,
    })
}

fn check_registrable_scope(
    state: &State,
    name: &str,
    integration_type: &str,
    field: &str,
    errs: &mut Vec<FieldError>,
) {
    match state.scopes.get(name) {
        None => errs.push(FieldError::new(
            field,
            format!("scope `{name}` does not exist"),
        )),
        Some(s) if !s.active => errs.push(FieldError::new(
            field,
            format!("scope `{name}` is inactive"),
        )),
        Some(s) if s.accessible_for_all => errs.push(FieldError::new(
            field,
            format!("scope `{name}` is accessible for all and cannot be registered on a client"),
        )),
        Some(s)
            if !s.allowed_integration_types.is_empty()
                && !s
                    .allowed_integration_types
                    .iter()
                    .any(|t| t == integration_type) =>
        {
            errs.push(FieldError::new(
                field,
                format!("scope `{name}` does not allow integration type `{integration_type}`"),
            ))
        }
        Some(_) => {}
    }
}

/// Checks one URI; returns whether it parsed.
fn check_uri(
    uri: &str,
    field: &str,
    prod: bool,
    application_type: &str,
    errs: &mut Vec<FieldError>,
) -> bool {
    let parsed = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => {
            errs.push(FieldError::new(
                field,
                format!("`{uri}` is not an absolute URI"),
            ));
            return false;
        }
    };
    if parsed.fragment().is_some() {
        errs.push(FieldError::new(field, "must not contain a fragment"));
    }
    if uri.contains('*') {
        errs.push(FieldError::new(field, "wildcards are not allowed"));
    }
    let native = application_type == "native";
    match parsed.scheme() {
        "https" => {}
        "http" if !prod || native => {}
        "http" => errs.push(FieldError::new(field, "must use https")),
        _ if native => {}
        other => errs.push(FieldError::new(
            field,
            format!("scheme `{other}` is not allowed"),
        )),
    }
    let localhost = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if prod && localhost && !native {
        errs.push(FieldError::new(
            field,
            "localhost is not allowed in production",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) && !native {
        errs.push(FieldError::new(field, "must have a host"));
    }
    true
}

fn registrable_domain(uri: &str) -> String {
    let host = url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() <= 2 || host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    labels[labels.len() - 2..].join(".")
}

/// One key of a posted set: kid, alg, n, e, x5c.
pub type PostedKey = (String, String, String, String, Option<Vec<String>>);

/// Validates a JWK set posted for a client; returns the keys to store (before expiry/time
/// stamps are filled in).
pub fn parse_jwks(
    body: &Value,
    client_id: &str,
    state: &State,
) -> Result<Vec<PostedKey>, ApiError> {
    const OBJ: &str = "jwks";
    let Some(keys) = body.get("keys").and_then(Value::as_array) else {
        return Err(ApiError::field(
            OBJ,
            "keys",
            "the body must be a JWK set: {\"keys\": [...]}",
        ));
    };
    if keys.is_empty() {
        return Err(ApiError::field(
            OBJ,
            "keys",
            "the key set is empty; use DELETE to remove all keys",
        ));
    }
    if keys.len() > MAX_KEYS {
        return Err(ApiError::field(
            OBJ,
            "keys",
            format!("at most {MAX_KEYS} keys are allowed, got {}", keys.len()),
        ));
    }
    let mut errs = vec![];
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let at = |f: &str| format!("keys[{i}].{f}");
        let Some(map) = key.as_object() else {
            errs.push(FieldError::new(
                format!("keys[{i}]"),
                "must be a JSON object",
            ));
            continue;
        };
        let s = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_string);
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if map.contains_key(private) {
                errs.push(FieldError::new(
                    at(private),
                    "private key material must not be posted",
                ));
            }
        }
        match s("kty").as_deref() {
            Some("RSA") => {}
            Some(other) => errs.push(FieldError::new(
                at("kty"),
                format!("`{other}` is not supported; use RSA"),
            )),
            None => errs.push(FieldError::new(at("kty"), "is required")),
        }
        match s("use").as_deref() {
            Some("sig") => {}
            Some(other) => errs.push(FieldError::new(
                at("use"),
                format!("must be `sig`, not `{other}`"),
            )),
            None => errs.push(FieldError::new(at("use"), "is required (`sig`)")),
        }
        let alg = s("alg");
        match alg.as_deref() {
            Some("RS256" | "RS384" | "RS512") => {}
            Some(other) => errs.push(FieldError::new(
                at("alg"),
                format!("`{other}` is not supported; use RS256"),
            )),
            None => errs.push(FieldError::new(at("alg"), "is required")),
        }
        let kid = s("kid");
        match kid.as_deref() {
            None | Some("") => errs.push(FieldError::new(at("kid"), "is required")),
            Some(k)
                if !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
            {
                errs.push(FieldError::new(
                    at("kid"),
                    "may contain only letters, digits, `.`, `_` and `-`",
                ))
            }
            Some(k) if !seen.insert(k.to_string()) => errs.push(FieldError::new(
                at("kid"),
                format!("kid `{k}` appears twice"),
            )),
            Some(_) => {}
        }
        let n = s("n");
        let e = s("e");
        match n.as_deref().map(crate::jwt::modulus_bits) {
            None => errs.push(FieldError::new(at("n"), "is required")),
            Some(None) => errs.push(FieldError::new(at("n"), "is not base64url")),
            Some(Some(bits)) if bits < 2048 => errs.push(FieldError::new(
                at("n"),
                format!("the key is {bits} bits; at least 2048 are required"),
            )),
            Some(Some(_)) => {}
        }
        if e.as_deref().and_then(crate::jwt::modulus_bits).is_none() {
            errs.push(FieldError::new(at("e"), "is required (base64url)"));
        }
        let x5c = match map.get("x5c") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            Some(_) => {
                errs.push(FieldError::new(at("x5c"), "must be an array of strings"));
                None
            }
        };
        if let (Some(kid), Some(alg), Some(n), Some(e)) = (kid, alg, n, e) {
            out.push((kid, alg, n, e, x5c));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::fields(OBJ, errs));
    }
    for (kid, ..) in &out {
        if let Some(other) = state.kid_owner_other_than(kid, client_id) {
            let _ = other;
            return Err(ApiError::conflict(format!(
                "kid `{kid}` is already registered on another client; kids must be unique"
            )));
        }
    }
    Ok(out)
}
