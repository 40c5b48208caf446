//! The Digdir self-service API client (`{base}/api/v1`).
//!
//! - Every call carries `Authorization: Bearer <admin token>` and `Content-Type: application/json`
//!   (digdirator.md §3.3). A 401 drops the cached token and tries once more with a new grant.
//! - Retries with exponential backoff and jitter on 5xx, 429 (Retry-After in seconds or as an HTTP date,
//!   honoured up to [`RetryPolicy::max_retry_after`]), timeouts and connection errors; never on other 4xx.
//! - Creates and grants (POST `/clients`, POST `/scopes`, PUT `/scopes/access/{orgno}`) are not
//!   idempotent at Digdir. After a 5xx answer the object is looked up (clients by `description` +
//!   `integration_type`, scopes by name, accesses by scope and consumer) before the write is tried
//!   again. After no answer (timeout, connection lost after sending, 504) the request may still
//!   land, so the write is never repeated: a scope or access is looked up and returned if found,
//!   otherwise (and always for a client, which has no unique name) the error goes to the caller.
//!   Other writes are idempotent and simply retried; a revoke or delete of something already gone
//!   counts as done.
//! - Every answer is checked before it is used (`validate` on each wire type): one that is not what
//!   the API documents is [`DigdirError::Decode`] ("unexpected answer"), never taken on trust.
//! - Counters of calls made ([`DigdirClient::stats`]) for the benchmark and for tests; every answered
//!   (or unanswered) call and every write about to be sent goes through the [`CallHooks`] (metrics,
//!   leader election: a replica that does not lead sends no write).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::{AccessToken, AdminAuth};
use super::env::{DigdirConfig, RetryPolicy};
use super::error::DigdirError;
use super::types::{
    AccessState, ClientRegistration, ConsumerRegistration, DelegationSource, IntegrationType, Jwk,
    JwksRequest, JwksResponse, ScopePrefix, ScopeRegistration,
};
use crate::clock::Clock;
use crate::keys::Signer;

type Result<T, E = DigdirError> = std::result::Result<T, E>;

/// Characters escaped in a path segment (client ids are UUIDs; this guards against anything else).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub use crate::provider_http::describe_reqwest;

/// Calls made so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP requests sent to the API (every attempt counts).
    pub requests: u64,
    pub gets: u64,
    pub posts: u64,
    pub puts: u64,
    pub deletes: u64,
    /// Requests that were retries of an earlier failed attempt.
    pub retries: u64,
    /// Lookups made after an ambiguous create failure.
    pub create_lookups: u64,
    /// Grants posted to Maskinporten's token endpoint.
    pub token_grants: u64,
}

impl CallStats {
    /// POST + PUT + DELETE.
    pub fn writes(&self) -> u64 {
        self.posts + self.puts + self.deletes
    }
}

#[derive(Default, Debug)]
struct Counters {
    requests: AtomicU64,
    gets: AtomicU64,
    posts: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    retries: AtomicU64,
    create_lookups: AtomicU64,
}

/// Told about every call the client sends, and asked before each write (metrics; leader election).
pub trait CallHooks: Send + Sync {
    /// Whether a write (any method but GET) may be sent now. A refused write is not sent: it fails
    /// as a connection failure would (nothing reached Digdir), naming why.
    fn may_write(&self) -> bool {
        true
    }
    /// A call to `path` (relative to the API, IDs in it) ended: its status, or `None` without an
    /// answer, and how long it took.
    fn call_done(&self, method: &str, path: &str, status: Option<u16>, elapsed: Duration) {
        let _ = (method, path, status, elapsed);
    }
}

/// Why a write was not sent ([`CallHooks::may_write`]).
pub const WRITE_REFUSED: &str = "not sent: this replica does not hold the leader Lease";

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api: String,
    /// The API host (`api` without `/api/v1`).
    root: String,
    auth: AdminAuth,
    retry: RetryPolicy,
    clock: Clock,
    counters: Counters,
    hooks: std::sync::OnceLock<Arc<dyn CallHooks>>,
}

impl std::fmt::Debug for dyn CallHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallHooks")
    }
}

/// The Digdir API client. Cheap to clone (shared state, one token cache).
#[derive(Clone, Debug)]
pub struct DigdirClient {
    inner: Arc<Inner>,
}

/// One request, replayable on retry.
struct Request {
    method: Method,
    /// Relative to `/api/v1`, starting with `/`.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    auth: bool,
    /// Relative to the API host instead of `/api/v1`.
    root: bool,
}

impl Request {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            auth: true,
            root: false,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| DigdirError::Config(format!("encoding request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    fn no_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    fn at_root(mut self) -> Self {
        self.root = true;
        self
    }
}

impl DigdirClient {
    /// Builds the HTTP client (rustls with ring; the process-wide provider is installed if missing)
    /// and the admin authentication.
    pub fn new(config: &DigdirConfig, signer: Arc<dyn Signer>, clock: Clock) -> Result<Self> {
        config.validate().map_err(DigdirError::Config)?;
        crate::keys::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("portvakt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DigdirError::Config(format!("HTTP client: {}", describe_reqwest(&e))))?;
        let auth = AdminAuth::new(http.clone(), config, signer, clock.clone());
        Ok(Self::from_parts(http, config, auth, clock))
    }

    /// Assembles a client from an HTTP client and an [`AdminAuth`] (e.g. one with fixed metadata).
    pub fn from_parts(
        http: reqwest::Client,
        config: &DigdirConfig,
        auth: AdminAuth,
        clock: Clock,
    ) -> Self {
        let api = config.api_v1_url();
        let root = api.trim_end_matches("/api/v1").to_string();
        Self {
            inner: Arc::new(Inner {
                http,
                api,
                root,
                auth,
                retry: config.retry.clone(),
                clock,
                counters: Counters::default(),
                hooks: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets the [`CallHooks`] of this client and its clones (once; `false` if already set).
    pub fn set_hooks(&self, hooks: Arc<dyn CallHooks>) -> bool {
        self.inner.hooks.set(hooks).is_ok()
    }

    pub fn auth(&self) -> &AdminAuth {
        &self.inner.auth
    }

    /// The HTTP client (shares the connection pool; for metadata fetches).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn stats(&self) -> CallStats {
        let c = &self.inner.counters;
        CallStats {
            requests: c.requests.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
            posts: c.posts.load(Ordering::Relaxed),
            puts: c.puts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            create_lookups: c.create_lookups.load(Ordering::Relaxed),
            token_grants: self.inner.auth.grant_count(),
        }
    }

    // ---- clients ----

    /// `GET /clients` (with `?inactive=true` to include deactivated clients).
    pub async fn list_clients(&self, inactive: bool) -> Result<Vec<ClientRegistration>> {
        let mut req = Request::new(Method::GET, "/clients");
        if inactive {
            req = req.query("inactive", "true");
        }
        self.json_call(req).await
    }

    /// `GET /clients/{id}`.
    pub async fn get_client(&self, client_id: &str) -> Result<ClientRegistration> {
        self.json_call(Request::new(
            Method::GET,
            format!("/clients/{}", seg(client_id)),
        ))
        .await
    }

    /// The active client with this `description` and `integration_type` (digdirator's identity), if any.
    pub async fn find_client(
        &self,
        description: &str,
        integration_type: &IntegrationType,
    ) -> Result<Option<ClientRegistration>> {
        Ok(self.list_clients(false).await?.into_iter().find(|c| {
            c.is_active() && c.description == description && &c.integration_type == integration_type
        }))
    }

    /// `POST /clients`. Clients have no unique name, so a create is never simply repeated:
    /// - after a 5xx *answer* (Digdir finished with the request, whatever it did) the client is
    ///   looked up by description and integration type before posting again, and returned if found;
    /// - after no answer (a timeout, a connection lost after sending, a 504 from a gateway) the
    ///   request may still be under way and land later, so a lookup proves nothing: the error is
    ///   returned at once ([`DigdirError::may_land_later`]) and the caller decides when it is safe
    ///   to look again (the controller waits past the request timeout).
    pub async fn create_client(
        &self,
        registration: &ClientRegistration,
    ) -> Result<ClientRegistration> {
        let req = || Request::new(Method::POST, "/clients").json(registration);
        let description = registration.description.as_str();
        let integration_type = &registration.integration_type;
        let lookup = || self.find_client(description, integration_type);
        self.create_with_lookup(req, lookup, WhenLate::Fail).await
    }

    /// `PUT /clients/{id}` (the full registration).
    pub async fn update_client(
        &self,
        client_id: &str,
        registration: &ClientRegistration,
    ) -> Result<ClientRegistration> {
        let req =
            Request::new(Method::PUT, format!("/clients/{}", seg(client_id))).json(registration)?;
        self.json_call(req).await
    }

    /// `DELETE /clients/{id}` (Digdir deactivates). A 404 counts as done.
    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        let req = Request::new(Method::DELETE, format!("/clients/{}", seg(client_id)));
        match self.call(req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /clients/{id}/jwks`. `None` when Digdir answers 404 (no JWKS registered).
    pub async fn get_jwks(&self, client_id: &str) -> Result<Option<JwksResponse>> {
        let req = Request::new(Method::GET, format!("/clients/{}/jwks", seg(client_id)));
        match self.json_call(req).await {
            Ok(jwks) => Ok(Some(jwks)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /clients/{id}/jwks`: replaces the whole set with `keys` (public JWKs, at most 5).
    pub async fn register_jwks(&self, client_id: &str, keys: &[Jwk]) -> Result<JwksResponse> {
        let body = JwksRequest {
            keys: keys.to_vec(),
        };
        let req =
            Request::new(Method::POST, format!("/clients/{}/jwks", seg(client_id))).json(&body)?;
        // Idempotent: the same set posted twice leaves the same state.
        self.json_call(req).await
    }

    /// `DELETE /clients/{id}/jwks`: removes every key. A 404 counts as done.
    pub async fn delete_jwks(&self, client_id: &str) -> Result<()> {
        let req = Request::new(Method::DELETE, format!("/clients/{}/jwks", seg(client_id)));
        match self.call(req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- scopes ----
    //
    // Scope names go in the `scope` query parameter, URL-encoded (they contain `:` and often `/`).

    /// `GET /scopes` (own organisation's scopes; `inactive=true` includes deactivated ones).
    pub async fn list_scopes(&self, inactive: bool) -> Result<Vec<ScopeRegistration>> {
        let mut req = Request::new(Method::GET, "/scopes");
        if inactive {
            req = req.query("inactive", "true");
        }
        self.json_call(req).await
    }

    /// `GET /scopes/scope?scope=<name>&inactive=true`: one scope, active or not. `None` on 404.
    pub async fn get_scope(&self, name: &str) -> Result<Option<ScopeRegistration>> {
        let req = Request::new(Method::GET, "/scopes/scope")
            .query("scope", name)
            .query("inactive", "true");
        match self.json_call::<ScopeRegistration>(req).await {
            Ok(scope) if scope.full_name() == name => Ok(Some(scope)),
            Ok(scope) => Err(unexpected(
                "GET",
                "/scopes/scope",
                format!("asked for `{name}`, got `{}`", scope.full_name()),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /scopes/all?accessible_for_all=true`: public scopes every organisation may use.
    pub async fn list_open_scopes(&self) -> Result<Vec<ScopeRegistration>> {
        self.json_call(Request::new(Method::GET, "/scopes/all").query("accessible_for_all", "true"))
            .await
    }

    /// Own scope `prefix:subscope` (active or not), found in the listing (`GET /scopes?inactive=true`).
    pub async fn find_scope(&self, name: &str) -> Result<Option<ScopeRegistration>> {
        Ok(self
            .list_scopes(true)
            .await?
            .into_iter()
            .find(|s| s.full_name() == name))
    }

    /// `POST /scopes`. After a 5xx answer the scope is looked up by name before the POST is tried
    /// again; after no answer it is looked up and, if not there (yet), the error is returned (the
    /// next pass decides). A deactivated scope of the same name answers 409: reactivate it with
    /// [`Self::update_scope`].
    pub async fn create_scope(&self, scope: &ScopeRegistration) -> Result<ScopeRegistration> {
        let name = scope.full_name();
        let req = || Request::new(Method::POST, "/scopes").json(scope);
        let created: ScopeRegistration = self
            .create_with_lookup(req, || self.find_scope(&name), WhenLate::LookThenFail)
            .await?;
        expect_scope("POST", "/scopes", &name, created)
    }

    /// `PUT /scopes?scope=<name>` with the whole registration (update, or reactivate with
    /// `active: true`).
    pub async fn update_scope(
        &self,
        name: &str,
        scope: &ScopeRegistration,
    ) -> Result<ScopeRegistration> {
        let req = Request::new(Method::PUT, "/scopes")
            .query("scope", name)
            .json(scope)?;
        let updated = self.json_call(req).await?;
        expect_scope("PUT", "/scopes", name, updated)
    }

    /// `DELETE /scopes?scope=<name>`: deactivates (Digdir keeps the scope and its accesses).
    pub async fn delete_scope(&self, name: &str) -> Result<ScopeRegistration> {
        let deleted = self
            .json_call(Request::new(Method::DELETE, "/scopes").query("scope", name))
            .await?;
        expect_scope("DELETE", "/scopes", name, deleted)
    }

    /// `GET /scopes/access?scope=<name>`: the ACL of one of our scopes.
    pub async fn list_scope_access(&self, name: &str) -> Result<Vec<ConsumerRegistration>> {
        let acl: Vec<ConsumerRegistration> = self
            .json_call(Request::new(Method::GET, "/scopes/access").query("scope", name))
            .await?;
        match acl.iter().find(|a| a.scope != name) {
            Some(other) => Err(unexpected(
                "GET",
                "/scopes/access",
                format!("the ACL of `{name}` lists an access to `{}`", other.scope),
            )),
            None => Ok(acl),
        }
    }

    /// The APPROVED access of `consumer_orgno` to our scope `name`, if any
    /// (`GET /scopes/access?scope=<name>&consumer_orgno=<orgno>`).
    pub async fn find_scope_access(
        &self,
        consumer_orgno: &str,
        name: &str,
    ) -> Result<Option<ConsumerRegistration>> {
        let req = Request::new(Method::GET, "/scopes/access")
            .query("scope", name)
            .query("consumer_orgno", consumer_orgno);
        let acl: Vec<ConsumerRegistration> = self.json_call(req).await?;
        Ok(acl.into_iter().find(|a| {
            a.consumer_orgno == consumer_orgno
                && a.scope == name
                && a.state == AccessState::Approved
        }))
    }

    /// `GET /scopes/access/all`: accesses granted to our organisation by others.
    pub async fn list_access_granted_to_us(&self) -> Result<Vec<ConsumerRegistration>> {
        self.json_call(Request::new(Method::GET, "/scopes/access/all"))
            .await
    }

    /// `PUT /scopes/access/{consumer_orgno}?scope=<name>` (no body): grant access (also to a consumer
    /// whose access was DENIED). After an answer that leaves the outcome open, the APPROVED access is
    /// looked up before the PUT is sent again (after no answer, the PUT is not sent again at all),
    /// so a grant is made once. An orgno Digdir does not know answers 400.
    pub async fn grant_scope_access(
        &self,
        consumer_orgno: &str,
        name: &str,
    ) -> Result<ConsumerRegistration> {
        let path = format!("/scopes/access/{}", seg(consumer_orgno));
        let req = || Ok(Request::new(Method::PUT, path.clone()).query("scope", name));
        let access: ConsumerRegistration = self
            .create_with_lookup(
                req,
                || self.find_scope_access(consumer_orgno, name),
                WhenLate::LookThenFail,
            )
            .await?;
        if access.consumer_orgno != consumer_orgno
            || access.scope != name
            || access.state != AccessState::Approved
        {
            return Err(unexpected(
                "PUT",
                &path,
                format!(
                    "granting {consumer_orgno} access to `{name}` answered the access of {} to `{}` in state {}",
                    access.consumer_orgno, access.scope, access.state
                ),
            ));
        }
        Ok(access)
    }

    /// `DELETE /scopes/access/{consumer_orgno}?scope=<name>`: revoke access. `None` when there was
    /// no access to revoke (404), so a retry after a lost answer is not an error.
    pub async fn revoke_scope_access(
        &self,
        consumer_orgno: &str,
        name: &str,
    ) -> Result<Option<ConsumerRegistration>> {
        let req = Request::new(
            Method::DELETE,
            format!("/scopes/access/{}", seg(consumer_orgno)),
        )
        .query("scope", name);
        match self.json_call(req).await {
            Ok(access) => Ok(Some(access)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /prefix`: the scope prefixes Digdir assigned to our organisation.
    pub async fn list_prefixes(&self) -> Result<Vec<ScopePrefix>> {
        self.json_call(Request::new(Method::GET, "/prefix")).await
    }

    /// The delegation sources, without a token: `{base}/api/v1/delegationsources` as digdirator
    /// reads it, and `{base}/delegationsources` (the path Digdir's documentation shows) when the
    /// first answers 404.
    pub async fn delegation_sources(&self) -> Result<Vec<DelegationSource>> {
        let req = Request::new(Method::GET, "/delegationsources").no_auth();
        match self.json_call(req).await {
            Err(e) if e.is_not_found() => {
                let req = Request::new(Method::GET, "/delegationsources")
                    .no_auth()
                    .at_root();
                self.json_call(req).await
            }
            other => other,
        }
    }

    // ---- machinery ----

    async fn json_call<T: DeserializeOwned + Answer>(&self, req: Request) -> Result<T> {
        let method = req.method.to_string();
        let path = req.path.clone();
        let body = self.call(req).await?;
        decode(&method, &path, &body)
    }

    /// Sends with retries (for idempotent requests).
    async fn call(&self, req: Request) -> Result<Bytes> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            match self.send_once(&req, &mut reauthenticated).await {
                Ok(body) => return Ok(body),
                Err(e) => match self.retry_delay(&e, attempt) {
                    Some(delay) => {
                        tracing::warn!(
                            method = %req.method, path = %req.path, attempt, ?delay, error = %e,
                            "Digdir call failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// A non-idempotent create: after an ambiguous failure, wait, look the object up, and only post again
    /// if it is not there. After no answer at all ([`DigdirError::may_land_later`]) it never posts
    /// again: with [`WhenLate::LookThenFail`] it returns the object if the lookup finds it, else the
    /// error, so the next pass decides once the request has had time to land.
    async fn create_with_lookup<T, R, L, Fut>(
        &self,
        req: R,
        lookup: L,
        when_late: WhenLate,
    ) -> Result<T>
    where
        T: DeserializeOwned + Answer,
        R: Fn() -> Result<Request>,
        L: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let request = req()?;
            let err = match self.send_once(&request, &mut reauthenticated).await {
                Ok(body) => {
                    return decode(request.method.as_str(), &request.path, &body);
                }
                Err(e) => e,
            };
            let late = err.may_land_later();
            if late && when_late == WhenLate::Fail {
                return Err(err);
            }
            let Some(delay) = self.retry_delay(&err, attempt) else {
                return Err(err);
            };
            tracing::warn!(
                method = %request.method, path = %request.path, attempt, ?delay, error = %err,
                "Digdir create failed; retrying"
            );
            tokio::time::sleep(delay).await;
            if err.is_ambiguous() {
                self.inner
                    .counters
                    .create_lookups
                    .fetch_add(1, Ordering::Relaxed);
                match lookup().await {
                    Ok(Some(found)) => {
                        tracing::info!(
                            path = %request.path,
                            "the create had gone through after all; using the existing object"
                        );
                        return Ok(found);
                    }
                    Ok(None) if late => return Err(err),
                    Ok(None) => {}
                    Err(lookup_err) => {
                        // Unknown whether the create happened: do not post again, let the caller retry
                        // later (it looks before creating).
                        tracing::warn!(error = %lookup_err, "lookup after a failed create failed too");
                        return Err(err);
                    }
                }
            }
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How long to wait before retrying after `err` on attempt `attempt`, or `None` to give up.
    fn retry_delay(&self, err: &DigdirError, attempt: u32) -> Option<Duration> {
        let policy = &self.inner.retry;
        // Grant failures were already retried inside AdminAuth.
        if matches!(err, DigdirError::Auth(_))
            || !err.is_retryable()
            || attempt >= policy.max_attempts
        {
            return None;
        }
        match err.retry_after() {
            Some(wait) if wait > policy.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(policy.backoff(attempt)),
        }
    }

    async fn send_once(&self, req: &Request, reauthenticated: &mut bool) -> Result<Bytes> {
        loop {
            let token = if req.auth {
                Some(self.inner.auth.token().await?)
            } else {
                None
            };
            match self.send_with(req, token.as_ref()).await {
                Err(e) if e.status() == Some(401) && !*reauthenticated => {
                    if let Some(token) = &token {
                        // The token was rejected (revoked, clock skew): get a new one, once.
                        *reauthenticated = true;
                        self.inner.auth.invalidate(token).await;
                        tracing::info!(path = %req.path, "Digdir answered 401; renewing the admin token");
                        continue;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    async fn send_with(&self, req: &Request, token: Option<&AccessToken>) -> Result<Bytes> {
        let hooks = self.inner.hooks.get();
        if req.method != Method::GET && hooks.is_some_and(|h| !h.may_write()) {
            return Err(DigdirError::Transport {
                method: req.method.to_string(),
                path: req.path.clone(),
                problem: WRITE_REFUSED.into(),
                timeout: false,
                connect: true,
            });
        }
        let started = std::time::Instant::now();
        let result = self.send_unhooked(req, token).await;
        if let Some(h) = hooks {
            let status = match &result {
                Ok((status, _)) => Some(*status),
                Err(e) => e.status(),
            };
            h.call_done(req.method.as_str(), &req.path, status, started.elapsed());
        }
        result.map(|(_, body)| body)
    }

    /// Sends once; the answer's status and body.
    async fn send_unhooked(
        &self,
        req: &Request,
        token: Option<&AccessToken>,
    ) -> Result<(u16, Bytes)> {
        let c = &self.inner.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        match req.method {
            Method::GET => &c.gets,
            Method::POST => &c.posts,
            Method::PUT => &c.puts,
            _ => &c.deletes,
        }
        .fetch_add(1, Ordering::Relaxed);

        let base = if req.root {
            &self.inner.root
        } else {
            &self.inner.api
        };
        let url = format!("{base}{}", req.path);
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), &url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(token) = token {
            builder = builder.bearer_auth(token.secret());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let method = req.method.as_str();
        let transport = |e: reqwest::Error| DigdirError::Transport {
            method: method.to_string(),
            path: req.path.clone(),
            problem: describe_reqwest(&e),
            timeout: e.is_timeout(),
            connect: e.is_connect(),
        };
        let resp = builder.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let correlation_id = ["x-correlation-id", "correlation-id", "x-request-id"]
            .iter()
            .find_map(|h| resp.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, &self.inner.clock));
        let body = resp.bytes().await.map_err(transport)?;
        tracing::debug!(method, path = %req.path, status, "Digdir call");
        if (200..300).contains(&status) {
            Ok((status, body))
        } else {
            Err(DigdirError::from_response(
                method,
                &req.path,
                status,
                correlation_id,
                retry_after,
                &body,
            ))
        }
    }
}

/// An answer that is not what the API documents.
fn unexpected(method: &str, path: &str, problem: impl Into<String>) -> DigdirError {
    DigdirError::Decode {
        method: method.to_string(),
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// Decodes and checks an answer: the JSON shape, then the fields portvakt relies on.
fn decode<T: DeserializeOwned + Answer>(method: &str, path: &str, body: &[u8]) -> Result<T> {
    let value: T =
        serde_json::from_slice(body).map_err(|e| unexpected(method, path, e.to_string()))?;
    value.check().map_err(|p| unexpected(method, path, p))?;
    Ok(value)
}

/// The scope an answer is about must be the one asked for.
fn expect_scope(
    method: &str,
    path: &str,
    name: &str,
    scope: ScopeRegistration,
) -> Result<ScopeRegistration> {
    if scope.full_name() == name {
        Ok(scope)
    } else {
        Err(unexpected(
            method,
            path,
            format!("asked for `{name}`, got `{}`", scope.full_name()),
        ))
    }
}

/// What a create does after a request that got no answer (it may still land).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WhenLate {
    /// Return the error at once: the object has no unique name, so only the caller can tell
    /// (after waiting) whether it was made (clients).
    Fail,
    /// Look it up by its unique name: found, it is the answer; not found, return the error
    /// without writing again (scopes, accesses).
    LookThenFail,
}

/// An answer body the client checks before using it (see each type's `validate`).
trait Answer {
    fn check(&self) -> Result<(), String>;
}

macro_rules! answer {
    ($($t:ty),* $(,)?) => {
        $(impl Answer for $t {
            fn check(&self) -> Result<(), String> {
                self.validate()
            }
        })*
    };
}

// A client answer is checked by the controller itself: a create's answer without a usable client_id
// means "the create may have happened", which only the caller can act on (it lists again).
impl Answer for ClientRegistration {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

answer!(
    JwksResponse,
    ScopeRegistration,
    ConsumerRegistration,
    DelegationSource,
    ScopePrefix,
);

impl<T: Answer> Answer for Vec<T> {
    fn check(&self) -> Result<(), String> {
        for (i, item) in self.iter().enumerate() {
            item.check().map_err(|p| format!("[{i}]: {p}"))?;
        }
        Ok(())
    }
}

/// `Retry-After`: delta-seconds or an HTTP date (relative to `clock`).
pub fn parse_retry_after(value: &str, clock: &Clock) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(value).ok()?;
    let wait = at.duration_since(clock.now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let clock = Clock::system();
        assert_eq!(parse_retry_after("3", &clock), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("0.05", &clock),
            Some(Duration::from_millis(50))
        );
        let in_ten = clock
            .now()
            .checked_add(jiff::SignedDuration::from_secs(10))
            .expect("time");
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&in_ten)
            .expect("date");
        let wait = parse_retry_after(&date, &clock).expect("parsed");
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:01 GMT", &clock),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", &clock), None);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("a1b2-c3"), "a1b2-c3");
        assert_eq!(seg("../x"), "..%2Fx");
    }
}
