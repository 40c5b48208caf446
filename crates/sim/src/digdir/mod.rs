//! A faithful simulator of Digdir: the self-service API (`/api/v1`), Maskinporten
//! (`/maskinporten/...`) and ID-porten (`/idporten/...`), enforcing the documented rules
//! (../shared/reference/external-api-rules.md, sections A–E) with Digdir's error shapes.
//!
//! Everything is one axum router on plain HTTP. Issuers follow the URL the simulator is
//! served at: Maskinporten `{base}/maskinporten/` (trailing slash, as the real issuer),
//! ID-porten `{base}/idporten` (none). `serve` fixes `{base}` to `http://{addr}`; when the
//! router is served some other way, `{base}` comes from the request's `Host` header.
//!
//! Choices where the documentation is silent or contradicts itself:
//! - POST `/clients` and POST `/jwks` answer 200 (OAPI); DELETE answers 200 with no body.
//! - A `kid` is unique across all clients (including deactivated ones); re-posting a key
//!   the client already has renews its `exp` (a year from the re-post). A kid held by
//!   another client answers 409.
//! - Posted keys must be RSA, `use: sig`, RS256/RS384/RS512, at least 2048 bits; an empty
//!   set is refused (use DELETE).
//! - Changes reach the token endpoints after `Seed::propagation_delay_secs` (default 0;
//!   Digdir documents 0–2 minutes): a new key or client is unknown until then, a removed
//!   key or deactivated client still works until then.
//! - The admin client is registered "by Digdir": it is not listed by `/clients`, its
//!   key carries the business certificate in `x5c` (so both `x5c` and `kid` grants work)
//!   and expires ten years after start, so tests that move the clock a year keep working.
//! - Maskinporten clients must have a scope (digdirator#108) that exists, is active,
//!   allows the integration type and is not `accessible_for_all`; the consumer org's access
//!   is checked when a token is issued (MP-250), and a scope's `at_max_age` caps the token's
//!   lifetime. A supplier's grant with `consumer_org` needs the consumer's APPROVED access and a
//!   delegation from consumer to supplier ("Altinn": seeded, or [`DigdirSim::delegate`]); the token
//!   then names `consumer`, `supplier` and `delegation_source`.
//! - Scopes: the prefix must be assigned to the caller's organisation; POST of a name that exists
//!   (active or deactivated) answers 409, and a deactivated scope is reactivated by PUT with
//!   `active: true`. PUT replaces the whole scope (absent settings take their defaults; the name,
//!   owner and, unless the body sets it, the active state stay). Granting access to an organisation
//!   the simulator does not know answers 400; an access is APPROVED by a grant, DENIED or REQUESTED
//!   only by hand ([`DigdirSim::set_scope_access`]). A grant of an existing access is carried out
//!   again and counted ([`DigdirSim::scope_access_grants`]).
//! - `/delegationsources` is public and served both under `/api/v1` and at the root.

mod admin_api;
pub mod app;
pub mod error;
mod oidc;
pub mod seed;
mod state;
mod token;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::SignedDuration;
use serde_json::Value;

pub use crate::fault::{CallRecord, FaultAction, FaultRule, FaultTimes};
use crate::fault::{ErrorShape, FaultLayer};
use crate::jwt as crypto;
pub use crate::jwt::RsaKey;
pub use error::{ApiError, OAuthError, SimError};
pub use oidc::{AuthorizeOutcome, AuthorizeRequest};
pub use oidc::{CLIENT_ASSERTION_TYPE, CODE_LIFETIME_SECS};
use portvakt_clock::Clock;
pub use seed::{Organisation, Seed, SeedDelegationSource, SeedScope};
use state::{Client, ClientFields, ClientJwks, State, StoredJwk};
pub use state::{JWT_BEARER, KEY_LIFETIME_SECS, MAX_KEYS};
pub use token::{CLOCK_SKEW_SECS, MAX_GRANT_LIFETIME_SECS};

const JOURNAL_CAP: usize = 200_000;
/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// The issuers as seen by one request.
#[derive(Clone, Debug)]
pub struct Issuers {
    pub base: String,
    /// `{base}/maskinporten/`
    pub maskinporten: String,
    /// `{base}/idporten`
    pub idporten: String,
}

impl Issuers {
    fn for_base(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            maskinporten: format!("{base}/maskinporten/"),
            idporten: format!("{base}/idporten"),
            base,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) clock: Clock,
    state: Mutex<State>,
    faults: Arc<FaultLayer>,
    base_url: RwLock<Option<String>>,
    pub(crate) ca: crypto::TestCa,
    pub(crate) mp_key: RsaKey,
    pub(crate) idp_key: RsaKey,
    admin: AdminCredentials,
}

impl Inner {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn issuers(&self, headers: &HeaderMap) -> Issuers {
        if let Some(base) = self.base_url.read().ok().and_then(|b| b.clone()) {
            return Issuers::for_base(&base);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        Issuers::for_base(&format!("http://{host}"))
    }
}

/// What the operator needs to authenticate as the admin client.
#[derive(Clone)]
pub struct AdminCredentials {
    pub client_id: String,
    pub orgno: String,
    /// PKCS#8 PEM of the admin key (the business certificate's key, also registered as `kid`).
    pub private_key_pem: String,
    /// The business certificate chain, leaf first, PEM.
    pub certificate_chain_pem: String,
    /// The simulator's CA certificate (the chain's root), PEM.
    pub ca_certificate_pem: String,
    /// kid of the admin key as registered on the admin client.
    pub kid: String,
    /// Scopes the admin client is granted.
    pub scopes: Vec<String>,
    key: RsaKey,
    leaf_der: Vec<u8>,
    ca_der: Vec<u8>,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("client_id", &self.client_id)
            .field("orgno", &self.orgno)
            .field("kid", &self.kid)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl AdminCredentials {
    /// The admin key as a private JWK.
    pub fn private_jwk(&self) -> Value {
        self.key.private_jwk()
    }

    fn claims(&self, audience: &str, scopes: &str, now_unix: i64) -> Value {
        serde_json::json!({
            "iss": self.client_id, "aud": audience, "scope": scopes,
            "iat": now_unix, "nbf": now_unix, "exp": now_unix + 120,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// A JWT grant with `kid` in the header (test helper; the operator builds its own).
    pub fn grant_with_kid(
        &self,
        audience: &str,
        scopes: &str,
        now_unix: i64,
    ) -> Result<String, SimError> {
        Ok(self.key.sign(&self.claims(audience, scopes, now_unix))?)
    }

    /// A JWT grant with the certificate chain in `x5c` (test helper).
    pub fn grant_with_x5c(
        &self,
        audience: &str,
        scopes: &str,
        now_unix: i64,
    ) -> Result<String, SimError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5c = Some(vec![
            crypto::x5c_encode(&self.leaf_der),
            crypto::x5c_encode(&self.ca_der),
        ]);
        Ok(self
            .key
            .sign_with_header(&header, &self.claims(audience, scopes, now_unix))?)
    }

    /// The admin signing key (for tests that craft unusual grants).
    pub fn key(&self) -> &RsaKey {
        &self.key
    }
}

/// A further admin key enrolled with [`DigdirSim::enroll_admin_key`].
#[derive(Clone, Debug)]
pub struct AdminKeyEnrolment {
    /// The key's `kid` on the admin client.
    pub kid: String,
    /// Its business certificate chain (leaf, then the simulator's CA), PEM: the `x5c` of a grant.
    pub certificate_chain_pem: String,
}

/// URLs of one provider when the simulator is served at a base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderUrls {
    pub issuer: String,
    pub well_known_url: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// ID-porten only.
    pub authorization_endpoint: Option<String>,
}

/// All URLs of the simulator served at a base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WellKnownUrls {
    /// Self-service API base (the client appends `/api/v1`).
    pub admin_base_url: String,
    /// `{admin_base_url}/api/v1`.
    pub admin_api_url: String,
    pub maskinporten: ProviderUrls,
    pub idporten: ProviderUrls,
}

/// The simulator. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct DigdirSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DigdirSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigdirSim").finish_non_exhaustive()
    }
}

/// A running simulator; shuts down when dropped.
pub type SimHandle = crate::ServeHandle;

impl DigdirSim {
    /// A simulator seeded with `seed`; panics only if key generation fails.
    pub fn new(clock: Clock, seed: Seed) -> Self {
        #[allow(clippy::expect_used)]
        Self::try_new(clock, seed).expect("generating the Digdir simulator's keys")
    }

    pub fn try_new(clock: Clock, mut seed: Seed) -> Result<Self, SimError> {
        let now = clock.now();
        if seed.admin_client_id.is_empty() {
            seed.admin_client_id = uuid::Uuid::new_v4().to_string();
        }
        let ca = crypto::TestCa::generate()?;
        let mp_key = RsaKey::generate(format!("mp-{}", uuid::Uuid::new_v4().simple()))?;
        let idp_key = RsaKey::generate(format!("idp-{}", uuid::Uuid::new_v4().simple()))?;
        let admin_key = RsaKey::generate(uuid::Uuid::new_v4().to_string())?;
        let org_name = seed
            .org_name(&seed.admin_orgno)
            .unwrap_or("ADMIN ORGANISATION")
            .to_string();
        let (leaf_der, leaf_pem) =
            ca.issue_business_certificate(&seed.admin_orgno, &org_name, &admin_key)?;
        let admin = AdminCredentials {
            client_id: seed.admin_client_id.clone(),
            orgno: seed.admin_orgno.clone(),
            private_key_pem: admin_key.private_key_pem()?,
            certificate_chain_pem: format!("{leaf_pem}{}", ca.cert_pem),
            ca_certificate_pem: ca.cert_pem.clone(),
            kid: admin_key.kid.clone(),
            scopes: seed.admin_scopes.clone(),
            key: admin_key.clone(),
            leaf_der: leaf_der.clone(),
            ca_der: ca.cert_der.clone(),
        };
        let long_ago = now
            .checked_sub(SignedDuration::from_hours(24 * 30))
            .unwrap_or(now);
        let admin_client = Client {
            client_id: admin.client_id.clone(),
            hidden: true,
            fields: ClientFields {
                client_name: Some(format!("{org_name} admin client")),
                description: Some("Self-service API admin client (registered by Digdir)".into()),
                integration_type: "maskinporten".into(),
                application_type: "web".into(),
                scopes: seed.admin_scopes.clone(),
                grant_types: vec![state::JWT_BEARER.into()],
                token_endpoint_auth_method: "private_key_jwt".into(),
                access_token_lifetime: seed.admin_access_token_lifetime,
                authorization_lifetime: 7200,
                refresh_token_lifetime: 600,
                refresh_token_usage: "ONETIME".into(),
                code_challenge_method: "S256".into(),
                ..ClientFields::default()
            },
            client_orgno: seed.admin_orgno.clone(),
            active: true,
            created: long_ago,
            last_updated: long_ago,
            deactivated: None,
            client_secret: None,
            jwks: Some(ClientJwks {
                keys: vec![StoredJwk {
                    kid: admin_key.kid.clone(),
                    alg: "RS256".into(),
                    n: admin_key.n(),
                    e: admin_key.e(),
                    x5c: Some(vec![crypto::x5c_encode(&leaf_der)]),
                    exp: now.as_second() + 10 * state::KEY_LIFETIME_SECS,
                    created: long_ago,
                    last_updated: long_ago,
                    posted: long_ago,
                }],
                created: long_ago,
                last_updated: long_ago,
            }),
            retired: vec![],
        };
        let mut state = State::new(seed, now);
        state
            .clients
            .insert(admin_client.client_id.clone(), admin_client);
        Ok(Self {
            inner: Arc::new(Inner {
                clock: clock.clone(),
                state: Mutex::new(state),
                faults: FaultLayer::new(clock.clone(), DigdirErrorShape, JOURNAL_CAP, MAX_BODY),
                base_url: RwLock::new(None),
                ca,
                mp_key,
                idp_key,
                admin,
            }),
        })
    }

    /// Everything on one router: `/api/v1`, `/maskinporten/...`, `/idporten/...`.
    pub fn router(&self) -> Router {
        let runtime = Router::new()
            .route(
                "/maskinporten/.well-known/oauth-authorization-server",
                get(oidc::maskinporten_metadata),
            )
            .route("/maskinporten/jwk", get(oidc::maskinporten_jwks))
            .route("/maskinporten/jwks", get(oidc::maskinporten_jwks))
            .route("/maskinporten/token", post(token::maskinporten_token))
            .route("/delegationsources", get(admin_api::delegation_sources))
            .route(
                "/idporten/.well-known/openid-configuration",
                get(oidc::idporten_metadata),
            )
            .route("/idporten/jwks.json", get(oidc::idporten_jwks))
            .route("/idporten/authorize", get(oidc::authorize_endpoint))
            .route("/idporten/token", post(oidc::idporten_token));
        let app = Router::new()
            .nest("/api/v1", admin_api::routes())
            .merge(runtime)
            .fallback(not_found)
            .layer(axum::middleware::from_fn(json_errors))
            .with_state(self.inner.clone());
        crate::fault::control_routes(&self.inner.faults)
            .merge(crate::fault::wrap(app, &self.inner.faults))
    }

    /// Serves the router on `addr` (port 0 for any free port).
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_unspecified() {
            self.set_base_url(&format!("http://{addr}"));
        }
        crate::serve_on(listener, self.router(), async {})
    }

    /// Fixes the base URL the issuers are derived from (instead of the `Host` header).
    pub fn set_base_url(&self, base_url: &str) {
        if let Ok(mut b) = self.inner.base_url.write() {
            *b = Some(base_url.trim_end_matches('/').to_string());
        }
    }

    pub fn admin_credentials(&self) -> AdminCredentials {
        self.inner.admin.clone()
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The URLs of this simulator when served at `base_url`.
    pub fn well_known_urls(&self, base_url: &str) -> WellKnownUrls {
        let i = Issuers::for_base(base_url);
        WellKnownUrls {
            admin_base_url: i.base.clone(),
            admin_api_url: format!("{}/api/v1", i.base),
            maskinporten: ProviderUrls {
                well_known_url: format!("{}.well-known/oauth-authorization-server", i.maskinporten),
                token_endpoint: format!("{}token", i.maskinporten),
                jwks_uri: format!("{}jwk", i.maskinporten),
                authorization_endpoint: None,
                issuer: i.maskinporten.clone(),
            },
            idporten: ProviderUrls {
                well_known_url: format!("{}/.well-known/openid-configuration", i.idporten),
                token_endpoint: format!("{}/token", i.idporten),
                jwks_uri: format!("{}/jwks.json", i.idporten),
                authorization_endpoint: Some(format!("{}/authorize", i.idporten)),
                issuer: i.idporten.clone(),
            },
        }
    }

    // ---- test hooks ----

    /// Every client of the admin API (active and deactivated), as GET renders them.
    pub fn clients(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        let mut clients: Vec<&Client> = state.clients.values().filter(|c| !c.hidden).collect();
        clients.sort_by_key(|c| c.created);
        clients.iter().map(|c| c.render(false)).collect()
    }

    pub fn client(&self, client_id: &str) -> Option<Value> {
        let state = self.inner.lock_state();
        state
            .clients
            .get(client_id)
            .filter(|c| !c.hidden)
            .map(|c| c.render(false))
    }

    /// The client's JWKS as GET `/clients/{id}/jwks` renders it (`None`: no keys).
    pub fn jwks(&self, client_id: &str) -> Option<Value> {
        let state = self.inner.lock_state();
        state.clients.get(client_id).and_then(Client::render_jwks)
    }

    /// Every scope (all owners, active and not).
    pub fn scopes(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        state.scopes.values().map(state::Scope::render).collect()
    }

    /// Every scope access (active ones; revoked ones have `active: false` internally).
    pub fn scope_accesses(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        state
            .accesses
            .iter()
            .filter(|a| a.active)
            .map(|a| a.render(&state.seed))
            .collect()
    }

    pub fn journal(&self) -> Vec<CallRecord> {
        self.inner.faults.journal()
    }

    pub fn clear_journal(&self) {
        self.inner.faults.clear_journal();
    }

    pub fn inject_fault(&self, rule: FaultRule) {
        self.inner.faults.inject(rule);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.clear_faults();
    }

    /// The fault rules and the call journal.
    pub fn faults(&self) -> &Arc<FaultLayer> {
        &self.inner.faults
    }

    /// A fixed (real-time) latency on every admin API call (`/api/v1`).
    pub fn set_latency(&self, latency: Duration) {
        self.inner.faults.set_base_latency("/api/", latency);
    }

    /// How long (simulated time) changes take to reach the token endpoints.
    pub fn set_propagation_delay(&self, delay: Duration) {
        let mut state = self.inner.lock_state();
        state.propagation_delay = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 4);
    }

    /// Grants `consumer_orgno` access to `scope` as its owner would (creating nothing else).
    pub fn grant_scope_access(&self, scope: &str, consumer_orgno: &str) {
        self.set_scope_access(scope, consumer_orgno, "APPROVED");
    }

    /// Sets the state of `consumer_orgno`'s access to `scope` (`APPROVED`, `DENIED` or
    /// `REQUESTED`) as a person in Samarbeidsportalen would, creating the access if needed. Not
    /// counted as a grant ([`Self::scope_access_grants`]).
    pub fn set_scope_access(&self, scope: &str, consumer_orgno: &str, access_state: &str) {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        let owner = state
            .scopes
            .get(scope)
            .map(|s| s.owner_orgno.clone())
            .unwrap_or_default();
        if let Some(a) = state
            .accesses
            .iter_mut()
            .find(|a| a.scope == scope && a.consumer_orgno == consumer_orgno)
        {
            a.state = access_state.into();
            a.active = true;
            a.last_updated = now;
            return;
        }
        state.accesses.push(state::ScopeAccess {
            scope: scope.into(),
            consumer_orgno: consumer_orgno.into(),
            owner_orgno: owner,
            state: access_state.into(),
            active: true,
            created: now,
            last_updated: now,
            grants: 0,
        });
    }

    /// How many grants through the API (`PUT /scopes/access/{orgno}`) were carried out for
    /// `consumer_orgno`'s access to `scope` (a duplicate grant shows as 2).
    pub fn scope_access_grants(&self, scope: &str, consumer_orgno: &str) -> u32 {
        let state = self.inner.lock_state();
        state
            .accesses
            .iter()
            .filter(|a| a.scope == scope && a.consumer_orgno == consumer_orgno)
            .map(|a| a.grants)
            .sum()
    }

    /// `consumer_orgno` delegates `scope` to `supplier_orgno` in "Altinn" (as the seed's
    /// `altinn_delegations` do).
    pub fn delegate(&self, consumer_orgno: &str, supplier_orgno: &str, scope: &str) {
        let mut state = self.inner.lock_state();
        if !state.delegated(consumer_orgno, supplier_orgno, scope) {
            state
                .delegations
                .push((consumer_orgno.into(), supplier_orgno.into(), scope.into()));
        }
    }

    /// Withdraws a delegation; true if it existed.
    pub fn revoke_delegation(
        &self,
        consumer_orgno: &str,
        supplier_orgno: &str,
        scope: &str,
    ) -> bool {
        let mut state = self.inner.lock_state();
        let before = state.delegations.len();
        state
            .delegations
            .retain(|(c, s, sc)| !(c == consumer_orgno && s == supplier_orgno && sc == scope));
        state.delegations.len() != before
    }

    /// Registers a Maskinporten client of another organisation (as that organisation's own admin
    /// would), with `scopes` and `key` as its one key. Validated like a POST; returns the client_id.
    pub fn add_maskinporten_client(
        &self,
        orgno: &str,
        scopes: &[&str],
        key: &RsaKey,
    ) -> Result<String, ApiError> {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        if state.seed.org_name(orgno).is_none() {
            return Err(ApiError::bad_request(format!(
                "organisation {orgno} is not known to the simulator"
            )));
        }
        let body = serde_json::json!({
            "integration_type": "maskinporten", "application_type": "web",
            "client_name": format!("client of {orgno}"), "description": format!("{orgno} test client"),
            "token_endpoint_auth_method": "private_key_jwt", "grant_types": [JWT_BEARER],
            "scopes": scopes,
        });
        let fields = state::parse_client(&body, None, &state)?;
        let client_id = uuid::Uuid::new_v4().to_string();
        let client = Client {
            client_id: client_id.clone(),
            hidden: false,
            fields,
            client_orgno: orgno.into(),
            active: true,
            created: now,
            last_updated: now,
            deactivated: None,
            client_secret: None,
            jwks: Some(ClientJwks {
                keys: vec![StoredJwk {
                    kid: key.kid.clone(),
                    alg: "RS256".into(),
                    n: key.n(),
                    e: key.e(),
                    x5c: None,
                    exp: now.as_second() + state::KEY_LIFETIME_SECS,
                    created: now,
                    last_updated: now,
                    posted: now,
                }],
                created: now,
                last_updated: now,
            }),
            retired: vec![],
        };
        state.clients.insert(client_id.clone(), client);
        Ok(client_id)
    }

    /// Changes a client as a person in Samarbeidsportalen would (drift): `patch` fields
    /// replace the stored ones, validated like a PUT.
    pub fn edit_client(&self, client_id: &str, patch: &Value) -> Result<(), ApiError> {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        let Some(existing) = state.clients.get(client_id).filter(|c| !c.hidden).cloned() else {
            return Err(ApiError::not_found(format!("client {client_id} not found")));
        };
        let mut merged = existing.render(false);
        if let (Some(map), Some(patch)) = (merged.as_object_mut(), patch.as_object()) {
            for (k, v) in patch {
                map.insert(k.clone(), v.clone());
            }
        }
        let fields = state::parse_client(&merged, Some(&existing), &state)?;
        if let Some(c) = state.clients.get_mut(client_id) {
            c.fields = fields;
            c.last_updated = now;
        }
        Ok(())
    }

    /// Enrols a further admin key by its public half (`n`/`e`, base64url: a key held in a KMS, whose private
    /// half the simulator never sees), as an organisation does with a new business certificate: the test CA
    /// issues a business certificate for the admin organisation over that key, and the key is registered on
    /// the admin client under `kid` with the certificate as `x5c`. Grants naming it by the returned chain
    /// (`x5c`) or by `kid` are then accepted.
    pub fn enroll_admin_key(
        &self,
        kid: &str,
        n: &str,
        e: &str,
    ) -> Result<AdminKeyEnrolment, SimError> {
        let now = self.inner.clock.now();
        let admin = &self.inner.admin;
        let org_name = {
            let state = self.inner.lock_state();
            state
                .seed
                .org_name(&admin.orgno)
                .unwrap_or("ADMIN ORGANISATION")
                .to_string()
        };
        let (leaf_der, leaf_pem) = self.inner.ca.issue_business_certificate_for_public_key(
            &admin.orgno,
            &org_name,
            n,
            e,
        )?;
        let mut state = self.inner.lock_state();
        let Some(jwks) = state
            .clients
            .get_mut(&admin.client_id)
            .and_then(|c| c.jwks.as_mut())
        else {
            return Err(SimError::Unexpected(
                "the admin client has no key set".into(),
            ));
        };
        jwks.keys.retain(|k| k.kid != kid);
        jwks.keys.push(StoredJwk {
            kid: kid.to_string(),
            alg: "RS256".into(),
            n: n.to_string(),
            e: e.to_string(),
            x5c: Some(vec![crypto::x5c_encode(&leaf_der)]),
            exp: now.as_second() + 10 * state::KEY_LIFETIME_SECS,
            created: now,
            last_updated: now,
            posted: now,
        });
        jwks.last_updated = now;
        Ok(AdminKeyEnrolment {
            kid: kid.to_string(),
            certificate_chain_pem: format!("{leaf_pem}{}", admin.ca_certificate_pem),
        })
    }

    /// Removes one key from a client's set by hand (drift); true if it was there.
    pub fn remove_key(&self, client_id: &str, kid: &str) -> bool {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        let Some(client) = state.clients.get_mut(client_id) else {
            return false;
        };
        let Some(jwks) = client.jwks.as_mut() else {
            return false;
        };
        let Some(pos) = jwks.keys.iter().position(|k| k.kid == kid) else {
            return false;
        };
        let key = jwks.keys.remove(pos);
        jwks.last_updated = now;
        if jwks.keys.is_empty() {
            client.jwks = None;
        }
        client.retired.push((key, now));
        true
    }

    /// Performs an ID-porten login without HTTP: the same checks as `/idporten/authorize`.
    /// Returns the authorization code and the Location the browser would be sent to.
    pub fn authorize_login(
        &self,
        base_url: &str,
        req: &AuthorizeRequest,
    ) -> Result<(String, String), SimError> {
        let issuers = Issuers::for_base(base_url);
        match oidc::authorize(&self.inner, &issuers, req) {
            AuthorizeOutcome::Redirect {
                location,
                code: Some(code),
            } => Ok((code, location)),
            AuthorizeOutcome::Redirect {
                location,
                code: None,
            } => Err(SimError::Login(location)),
            AuthorizeOutcome::Refused(e) => {
                Err(SimError::Login(format!("{}: {}", e.error, e.description)))
            }
        }
    }
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    ApiError::not_found(format!("no such resource: {path}")).into_response()
}

/// Injected faults answer as Digdir does: `{error, error_description}` on the admin API, an OAuth
/// error (`slow_down` for 429) on the token endpoints.
struct DigdirErrorShape;

impl ErrorShape for DigdirErrorShape {
    fn error(&self, path: &str, status: StatusCode, message: &str) -> Response {
        if path.starts_with("/api/") {
            ApiError::new(status, "server_error", message).into_response()
        } else {
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                "slow_down"
            } else {
                "server_error"
            };
            let mut e = OAuthError::new(code, message);
            e.status = status;
            e.into_response()
        }
    }
}

/// Makes sure every error answer has a JSON body (axum's own 405, say).
async fn json_errors(req: Request<Body>, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    ensure_json_error(&path, response).await
}

/// Rewrites an error answer without a JSON body (e.g. axum's own 405) into one.
async fn ensure_json_error(path: &str, response: Response) -> Response {
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let description = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    if path.starts_with("/api/") {
        ApiError::new(status, "invalid_request", description).into_response()
    } else {
        let mut e = OAuthError::new("invalid_request", description);
        e.status = status;
        e.into_response()
    }
}
