//! A faithful simulator of one Microsoft Entra tenant: Microsoft Graph v1.0 (`/v1.0/...`) and the
//! tenant's identity-platform endpoints (`/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/discovery/v2.0/keys`, `/{tenant}/oauth2/v2.0/token`), enforcing the documented rules
//! (../shared/reference/external-api-rules.md F–K, external-apis.md §3) with Graph's error shapes.
//!
//! One axum router on plain HTTP, behind the shared fault layer (faults, call journal, `/_sim/`
//! control routes). `serve` fixes the base URL (`http://{addr}`, used as the authority and in
//! `@odata.nextLink`); served some other way, the base comes from the `Host` header.
//!
//! Choices where the documentation is silent or unsure (each tested in tests/it/graph_sim.rs):
//! - New apps default to `signInAudience: AzureADMyOrg`, `requestedAccessTokenVersion: null`.
//! - Every keyCredential in a PATCH must carry its certificate (`key`); whether real Graph keeps an
//!   echoed entry without `key` is unconfirmed, and a client that always sends it works with both.
//!   The key is rendered only when `$select` names `keyCredentials`.
//! - addPassword ignores a client-chosen `keyId`; removePassword of an unknown keyId answers 400.
//! - A duplicate service principal, uniqueName, grant or federated-credential name answers 409
//!   `Request_MultipleObjectsWithSameKeyValue`; a duplicate app role assignment 400.
//! - The all-zero app role id ("default access") may be assigned to any principal.
//! - `$filter` string comparisons ignore case, as directory lookups do.
//! - A write holds its target object for the write latency (real time, 0 by default); an overlapping
//!   write to the same object answers 409 `Directory_ConcurrencyViolation`. Optionally the object also
//!   refuses writes for a settle time after each write (shared clock), as Graph refuses rapid
//!   credential changes (azurerator#448). Writes to different objects never conflict.
//! - Changing an enabled app role or scope in place is allowed (the documentation contradicts
//!   itself); removing one that is enabled is not.
//! - `scope=api://{appId}/.default` names the app even when `api://{appId}` is not among its
//!   identifier URIs.
//! - Eventual consistency (off by default) hides new applications and service principals from reads,
//!   writes by id, service-principal creation (`NoBackingApplicationObject`) and the token endpoint
//!   until the shared clock passes their creation plus the delay. The upsert by uniqueName sees them
//!   (the key is enforced at write time), so a repeated upsert never creates a second app.
//! - Federated credentials are verified against issuer keys the simulator is told
//!   ([`GraphSim::trust_issuer`]); Entra fetches them from the issuer's discovery document.
//! - Microsoft Graph exists as a service principal (its application lives in Microsoft's tenant); the
//!   operator's app holds Application.ReadWrite.All, AppRoleAssignment.ReadWrite.All,
//!   DelegatedPermissionGrant.ReadWrite.All and GroupMember.Read.All on it. Graph calls need a valid
//!   token for Graph but are not checked against those permissions.

pub mod app;
pub mod cert;
pub mod error;
mod graph_api;
mod login;
pub mod odata;
pub mod seed;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use jiff::SignedDuration;
use serde_json::{Value, json};

pub use crate::fault::{CallRecord, FaultAction, FaultRule, FaultTimes};
use crate::fault::{ErrorShape, FaultLayer};
pub use crate::jwt::RsaKey;
pub use cert::TestCertificate;
pub use error::{CONCURRENCY_MESSAGE, CONCURRENCY_VIOLATION, GraphApiError, OAuthError, SimError};
pub use login::{CLIENT_ASSERTION_TYPE, CLOCK_SKEW_SECS};
use portvakt_clock::Clock;
pub use seed::{
    ACCESS_AS_APPLICATION_ID, DEFAULT_ACCESS_ID, GraphSeed, IdentifierUriPolicy,
    MICROSOFT_GRAPH_APP_ID, MICROSOFT_GRAPH_RESOURCE, SeedApp, SeedGroup, SeedIssuer,
};
pub use state::DEFAULT_ROLE_ID;
use state::{AppKey, Fic, State};

const JOURNAL_CAP: usize = 200_000;
/// Largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The tenant's token-signing key and its certificate (published in the JWKS).
pub(crate) struct SigningKey {
    pub(crate) key: RsaKey,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) x5t: String,
}

pub(crate) struct Inner {
    pub(crate) clock: Clock,
    state: Mutex<State>,
    faults: Arc<FaultLayer>,
    base_url: RwLock<Option<String>>,
    pub(crate) signing: SigningKey,
    operator: OperatorCredentials,
}

impl Inner {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://{host}` the simulator is reached at (fixed by `serve`, else the `Host` header).
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = self.base_url.read().ok().and_then(|b| b.clone()) {
            return base;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// What the operator needs to authenticate to the simulated tenant with a client secret.
#[derive(Clone)]
pub struct OperatorCredentials {
    pub tenant_id: String,
    pub tenant_name: String,
    /// The operator app's appId (`client_id`).
    pub client_id: String,
    pub client_secret: String,
    /// The operator app's object id.
    pub object_id: String,
    /// The operator's service principal id.
    pub service_principal_id: String,
}

impl std::fmt::Debug for OperatorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The simulator's URLs when served at a base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntraUrls {
    /// The authority (`https://login.microsoftonline.com` for real Entra).
    pub authority: String,
    /// Graph's v1.0 base (`https://graph.microsoft.com/v1.0` for real Graph).
    pub graph_api: String,
    pub token_endpoint: String,
    pub well_known_url: String,
    pub jwks_uri: String,
    /// The issuer of v2.0 tokens.
    pub issuer: String,
}

/// The simulator. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct GraphSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSim").finish_non_exhaustive()
    }
}

impl GraphSim {
    /// A simulator seeded with `seed`; panics only if key generation fails.
    pub fn new(clock: Clock, seed: GraphSeed) -> Self {
        #[allow(clippy::expect_used)]
        Self::try_new(clock, seed).expect("generating the Entra simulator's keys")
    }

    pub fn try_new(clock: Clock, seed: GraphSeed) -> Result<Self, SimError> {
        let now = clock.now();
        let secret = if seed.operator.client_secret.is_empty() {
            format!("pvk~{}", crate::jwt::random_token(27))
        } else {
            seed.operator.client_secret.clone()
        };
        let state = State::new(&seed, &secret, now);
        let operator_app = state
            .app_by_app_id(&state.operator_app_id)
            .ok_or_else(|| SimError::Seed("the operator app was not created".into()))?;
        let operator = OperatorCredentials {
            tenant_id: state.tenant_id.clone(),
            tenant_name: state.tenant_name.clone(),
            client_id: operator_app.app_id.clone(),
            client_secret: secret,
            object_id: operator_app.id.clone(),
            service_principal_id: state
                .sp_by_app_id(&operator_app.app_id)
                .map(|s| s.id.clone())
                .ok_or_else(|| SimError::Seed("the operator has no service principal".into()))?,
        };
        let signing_cert =
            TestCertificate::generate("portvakt Entra simulator token signing", 3650)?;
        let signing = SigningKey {
            x5t: signing_cert.x5t(),
            cert_der: signing_cert.cert_der.clone(),
            key: signing_cert.key.clone(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                clock: clock.clone(),
                state: Mutex::new(state),
                faults: FaultLayer::new(clock, GraphErrorShape, JOURNAL_CAP, MAX_BODY),
                base_url: RwLock::new(None),
                signing,
                operator,
            }),
        })
    }

    /// Everything on one router: `/v1.0/...` and `/{tenant}/...`, plus `/_sim/` control routes.
    pub fn router(&self) -> Router {
        let app = Router::new()
            .route("/v1.0/{*rest}", any(graph_api::handle))
            .route("/{tenant}/oauth2/v2.0/token", post(login::token))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(login::openid_configuration),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(login::jwks))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.inner.clone());
        crate::fault::control_routes(&self.inner.faults)
            .merge(crate::fault::wrap(app, &self.inner.faults))
    }

    /// Serves the router on `addr` (port 0 for any free port).
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<crate::ServeHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_unspecified() {
            self.set_base_url(&format!("http://{addr}"));
        }
        crate::serve_on(listener, self.router(), async {})
    }

    /// Fixes the base URL (authority, Graph base, nextLinks) instead of the `Host` header.
    pub fn set_base_url(&self, base_url: &str) {
        if let Ok(mut b) = self.inner.base_url.write() {
            *b = Some(base_url.trim_end_matches('/').to_string());
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn operator(&self) -> OperatorCredentials {
        self.inner.operator.clone()
    }

    pub fn tenant_id(&self) -> String {
        self.inner.operator.tenant_id.clone()
    }

    /// The URLs of this simulator served at `base_url`.
    pub fn urls(&self, base_url: &str) -> EntraUrls {
        let base = base_url.trim_end_matches('/');
        let tid = &self.inner.operator.tenant_id;
        EntraUrls {
            authority: base.to_string(),
            graph_api: format!("{base}/v1.0"),
            token_endpoint: format!("{base}/{tid}/oauth2/v2.0/token"),
            well_known_url: format!("{base}/{tid}/v2.0/.well-known/openid-configuration"),
            jwks_uri: format!("{base}/{tid}/discovery/v2.0/keys"),
            issuer: format!("{base}/{tid}/v2.0"),
        }
    }

    /// The token-signing key's public JWK (what `/discovery/v2.0/keys` lists).
    pub fn signing_jwk(&self) -> Value {
        let k = &self.inner.signing;
        json!({"kty": "RSA", "use": "sig", "kid": k.x5t, "x5t": k.x5t, "n": k.key.n(), "e": k.key.e()})
    }

    // ---- test hooks: reading the directory ----

    /// Every application of the tenant (including ones not yet visible to reads), as GET renders them.
    pub fn apps(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        let mut apps: Vec<_> = state.apps.values().filter(|a| !a.foreign).collect();
        apps.sort_by_key(|a| a.seq);
        apps.iter().map(|a| state.render_app(a, false)).collect()
    }

    /// An application by object id.
    pub fn app(&self, object_id: &str) -> Option<Value> {
        let state = self.inner.lock_state();
        state
            .apps
            .get(object_id)
            .filter(|a| !a.foreign)
            .map(|a| state.render_app(a, true))
    }

    /// Applications with this display name (exact match).
    pub fn apps_named(&self, display_name: &str) -> Vec<Value> {
        self.apps()
            .into_iter()
            .filter(|a| a["displayName"] == display_name)
            .collect()
    }

    /// The application with this appId.
    pub fn app_by_app_id(&self, app_id: &str) -> Option<Value> {
        let state = self.inner.lock_state();
        state
            .app_by_app_id(app_id)
            .filter(|a| !a.foreign)
            .map(|a| state.render_app(a, true))
    }

    /// The service principal of `app_id`.
    pub fn service_principal(&self, app_id: &str) -> Option<Value> {
        let state = self.inner.lock_state();
        state.sp_by_app_id(app_id).map(|s| state.render_sp(s))
    }

    pub fn service_principals(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        let mut sps: Vec<_> = state.sps.values().collect();
        sps.sort_by_key(|s| s.seq);
        sps.iter().map(|s| state.render_sp(s)).collect()
    }

    /// App role assignments on the service principal `resource_sp_id`.
    pub fn assignments(&self, resource_sp_id: &str) -> Vec<Value> {
        let state = self.inner.lock_state();
        state
            .assignments
            .iter()
            .filter(|a| a.resource_id == resource_sp_id)
            .map(|a| a.render())
            .collect()
    }

    pub fn grants(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        state.grants.iter().map(|g| g.render()).collect()
    }

    pub fn groups(&self) -> Vec<Value> {
        let state = self.inner.lock_state();
        state.groups.values().map(|g| g.render()).collect()
    }

    /// Owners (directory object ids) of an application or service principal.
    pub fn owners(&self, object_id: &str) -> Vec<String> {
        let state = self.inner.lock_state();
        state
            .apps
            .get(object_id)
            .map(|a| a.owners.clone())
            .or_else(|| state.sps.get(object_id).map(|s| s.owners.clone()))
            .unwrap_or_default()
    }

    pub fn federated_credentials(&self, object_id: &str) -> Vec<Value> {
        let state = self.inner.lock_state();
        state
            .apps
            .get(object_id)
            .map(|a| a.fics.iter().map(Fic::render).collect())
            .unwrap_or_default()
    }

    /// (object id, display name, when) of deleted applications (Entra keeps them 30 days).
    pub fn deleted_applications(&self) -> Vec<(String, String, jiff::Timestamp)> {
        self.inner.lock_state().deleted_apps.clone()
    }

    /// How many writes were refused with 409 `Directory_ConcurrencyViolation`.
    pub fn write_conflicts(&self) -> u64 {
        self.inner.lock_state().writes.conflicts
    }

    /// The most writes that were in progress at once (over all objects).
    pub fn peak_concurrent_writes(&self) -> usize {
        self.inner.lock_state().writes.peak_total
    }

    // ---- test hooks: changing the world ----

    /// How long (shared clock) a new application or service principal stays invisible to reads.
    pub fn set_eventual_consistency(&self, delay: Duration) {
        self.inner.lock_state().settings.eventual_consistency =
            SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    }

    /// Real time every write holds its target object (overlapping writes to it then conflict).
    pub fn set_write_latency(&self, latency: Duration) {
        self.inner.lock_state().settings.write_latency = latency;
    }

    /// After a write to an object ends, further writes to it answer 409
    /// `Directory_ConcurrencyViolation` for this long (shared clock), as Graph does to rapid changes
    /// that have not converged. `Duration::ZERO` (the default) turns it off.
    pub fn set_write_settle_time(&self, settle: Duration) {
        self.inner.lock_state().settings.write_settle =
            SignedDuration::try_from(settle).unwrap_or(SignedDuration::MAX);
    }

    /// At most `writes` writes per `per` (shared clock); more answer 429 with `Retry-After`.
    /// `None` lifts the limit.
    pub fn set_write_limit(&self, limit: Option<(usize, Duration)>) {
        let mut state = self.inner.lock_state();
        state.settings.write_limit = limit.map(|(n, per)| {
            (
                n.max(1),
                SignedDuration::try_from(per).unwrap_or(SignedDuration::MAX),
            )
        });
        state.writes.recent.clear();
    }

    /// The default page size of collections.
    pub fn set_page_size(&self, size: usize) {
        self.inner.lock_state().settings.page_size = size.clamp(1, 999);
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.inner.lock_state().settings.token_lifetime_secs = secs.max(1);
    }

    pub fn set_identifier_uri_policy(&self, policy: IdentifierUriPolicy) {
        self.inner.lock_state().settings.identifier_uri_policy = policy;
    }

    /// Every token issued so far is refused by Graph from now on (401), as after a revocation.
    pub fn revoke_tokens(&self) {
        let mut state = self.inner.lock_state();
        let issued = std::mem::take(&mut state.issued_tokens);
        state.revoked_tokens.extend(issued);
    }

    pub fn add_group(&self, id: &str, display_name: &str) {
        self.inner.lock_state().groups.insert(
            id.to_string(),
            state::Group {
                id: id.to_string(),
                display_name: display_name.to_string(),
                description: None,
            },
        );
    }

    /// Tokens of `issuer` are verified with these public keys (`{"keys":[...]}`).
    pub fn trust_issuer(&self, issuer: &str, jwks: &Value) {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.inner
            .lock_state()
            .trusted_issuers
            .insert(issuer.to_string(), keys);
    }

    /// Registers a certificate (DER) on the app with `app_id`, as an admin would in the portal;
    /// returns its keyId.
    pub fn add_certificate(&self, app_id: &str, cert_der: &[u8]) -> Result<String, GraphApiError> {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        let id = state.find_app_id(&AppKey::AppId(app_id.to_string()), now)?;
        let app = state
            .apps
            .get(&id)
            .ok_or_else(|| GraphApiError::not_found(&id))?;
        let mut creds: Vec<Value> = app
            .keys
            .iter()
            .map(|k| {
                let mut v = k.render(true);
                if let Some(m) = v.as_object_mut() {
                    m.remove("customKeyIdentifier");
                }
                v
            })
            .collect();
        let key_id = state::new_guid();
        creds.push(json!({
            "keyId": key_id, "type": "AsymmetricX509Cert", "usage": "Verify",
            "key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_der),
            "displayName": "added by a test",
        }));
        state.patch_app(&id, &json!({ "keyCredentials": creds }), now)?;
        Ok(key_id)
    }

    /// Adds a federated identity credential to the app with `app_id`.
    pub fn add_federated_credential(
        &self,
        app_id: &str,
        name: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) -> Result<(), GraphApiError> {
        let now = self.inner.clock.now();
        let mut state = self.inner.lock_state();
        let id = state.find_app_id(&AppKey::AppId(app_id.to_string()), now)?;
        state.create_fic(
            &id,
            &json!({"name": name, "issuer": issuer, "subject": subject, "audiences": [audience]}),
        )?;
        Ok(())
    }

    /// A Graph token for the operator, minted in-process (for tests that call Graph over HTTP).
    pub fn operator_graph_token(&self) -> Result<String, OAuthError> {
        let base = self
            .inner
            .base_url
            .read()
            .ok()
            .and_then(|b| b.clone())
            .unwrap_or_else(|| "http://localhost".into());
        let op = &self.inner.operator;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", op.client_id.as_str()),
            ("client_secret", op.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let token = login::issue_for_tests(&self.inner, &op.tenant_id, &base, &form)?;
        Ok(token)
    }

    // ---- faults and journal (the shared layer) ----

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

    pub fn faults(&self) -> &Arc<FaultLayer> {
        &self.inner.faults
    }
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    graph_api::unknown_route(&path).respond(None)
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path().to_string();
    GraphApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        format!(
            "The HTTP method '{}' is not allowed on '{path}'.",
            req.method()
        ),
    )
    .respond(None)
}

/// Injected faults answer as Entra does: a Graph error on `/v1.0` (409 as
/// `Directory_ConcurrencyViolation`, 429 as `TooManyRequests`), an identity-platform OAuth error on
/// the login endpoints.
struct GraphErrorShape;

impl ErrorShape for GraphErrorShape {
    fn error(&self, path: &str, status: StatusCode, message: &str) -> Response {
        if path.starts_with("/v1.0") {
            let code = match status.as_u16() {
                400 => "Request_BadRequest",
                401 => "InvalidAuthenticationToken",
                403 => "Authorization_RequestDenied",
                404 => "Request_ResourceNotFound",
                409 => CONCURRENCY_VIOLATION,
                413 => "Request_EntityTooLarge",
                429 => "TooManyRequests",
                503 => "serviceNotAvailable",
                504 => "gatewayTimeout",
                _ => "Service_InternalServerError",
            };
            let message = if status == StatusCode::CONFLICT {
                CONCURRENCY_MESSAGE
            } else {
                message
            };
            GraphApiError::new(status, code, message).respond(None)
        } else {
            let (error, aadsts) = match status.as_u16() {
                429 => ("temporarily_unavailable", 50196),
                s if s >= 500 => ("temporarily_unavailable", 90033),
                _ => ("invalid_request", 90014),
            };
            OAuthError::new(error, aadsts, message.to_string())
                .with_status(status)
                .into_response()
        }
    }
}
