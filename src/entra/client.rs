//! The Microsoft Graph v1.0 client: applications, credentials, permissions, service principals, app
//! role assignments, delegated grants, owners, federated identity credentials and groups.
//!
//! How it deals with Entra's behaviour (external-apis.md §3, external-api-rules.md F–J):
//! - Every call carries the operator's bearer token and a fresh `client-request-id`; a 401 drops the
//!   cached token and tries once more with a new grant.
//! - 429 (and 503 with `Retry-After`) waits what Graph asks, up to [`RetryPolicy::max_retry_after`];
//!   5xx, timeouts, connection errors and 409 `Directory_ConcurrencyViolation` are retried with
//!   exponential backoff and jitter. Waiting goes through [`WaitMode`]: a real sleep in production,
//!   the shared clock against a simulator.
//! - Replication lag: a 404 (or `NoBackingApplicationObject`) for an object this client created
//!   within [`EntraConfig::consistency_window`] is retried with its own bounded backoff
//!   ([`EntraConfig::consistency_retry`]); any other 404 is an answer.
//! - No fixed sleeps between writes (azurerator sleeps 10 s): writes to one object are serialised
//!   in the client (a lock per object), which is what Graph's concurrency violations come from.
//! - Creates are not idempotent: after an answer that leaves open whether Graph acted (timeout, 5xx),
//!   the object is looked up (applications by displayName, service principals by appId, assignments by
//!   principal and role, grants by client and resource, federated credentials by name) before the
//!   POST is sent again. A lost addPassword answer leaves a secret nobody can read: the client removes
//!   it (found by its display name) and adds another. For new applications, [`GraphClient::ensure_application`]
//!   uses the documented upsert by uniqueName, which is safe to repeat.
//! - `@odata.nextLink` is followed (same host only) up to [`EntraConfig::max_pages`].
//! - Counters of calls made ([`GraphClient::stats`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::{AccessToken, EntraAuth, wait};
use super::config::{EntraConfig, RetryPolicy, WaitMode};
use super::error::GraphError;
use super::types::*;
use crate::clock::Clock;
use crate::digdir::client::{CallHooks, WRITE_REFUSED, describe_reqwest, parse_retry_after};

type Result<T, E = GraphError> = std::result::Result<T, E>;

/// Characters escaped in a path segment: ids are GUIDs, alternate keys are OData literals
/// (`'`, `(`, `)`, `=` stay).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Characters escaped in query values (spaces as `%20`, not `+`).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b':');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// An OData string literal: quoted, with `'` doubled (azurerator does not escape; portvakt does).
pub fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `property eq 'value'`.
pub fn eq_filter(property: &str, value: &str) -> String {
    format!("{property} eq {}", odata_string(value))
}

/// Calls made so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP requests sent to Graph (every attempt counts).
    pub requests: u64,
    pub gets: u64,
    pub posts: u64,
    pub patches: u64,
    pub deletes: u64,
    /// Requests that were retries of an earlier failed attempt (any reason).
    pub retries: u64,
    /// 429 answers (or 503 with Retry-After) seen.
    pub throttled: u64,
    /// Retries after 409 `Directory_ConcurrencyViolation`.
    pub concurrency_retries: u64,
    /// Retries after a 404 / `NoBackingApplicationObject` that was replication lag.
    pub consistency_retries: u64,
    /// Lookups made after an ambiguous create failure.
    pub create_lookups: u64,
    /// Pages of collections read.
    pub pages: u64,
    /// Grants posted to the token endpoint.
    pub token_grants: u64,
    /// Total time waited between attempts.
    pub waited: Duration,
}

impl CallStats {
    /// POST + PATCH + DELETE.
    pub fn writes(&self) -> u64 {
        self.posts + self.patches + self.deletes
    }
}

#[derive(Default, Debug)]
struct Counters {
    requests: AtomicU64,
    gets: AtomicU64,
    posts: AtomicU64,
    patches: AtomicU64,
    deletes: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    concurrency_retries: AtomicU64,
    consistency_retries: AtomicU64,
    create_lookups: AtomicU64,
    pages: AtomicU64,
    waited_ms: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// `https://graph.microsoft.com/v1.0`.
    base: String,
    /// `https://graph.microsoft.com`: nextLinks must stay on it.
    origin: String,
    auth: EntraAuth,
    retry: RetryPolicy,
    consistency_retry: RetryPolicy,
    consistency_window: Duration,
    clock: Clock,
    wait: WaitMode,
    max_pages: usize,
    page_size: Option<usize>,
    counters: Counters,
    /// Objects (object ids and appIds) this client created, and when.
    created: Mutex<HashMap<String, Timestamp>>,
    /// One lock per object written.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Metrics and the leader's write gate (the same hooks as the Digdir client's).
    hooks: std::sync::OnceLock<Arc<dyn CallHooks>>,
}

/// The Graph client. Cheap to clone (shared state, one token cache, one set of write locks).
#[derive(Clone, Debug)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

/// One request, replayable on retry.
#[derive(Clone, Debug)]
struct Request {
    method: Method,
    /// Relative to the Graph base (starting with `/`), or an absolute nextLink.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    headers: Vec<(&'static str, &'static str)>,
    /// Ids the request names: a 404 soon after this client created one of them is replication lag.
    fresh: Vec<String>,
    /// Treat a 404 / `NoBackingApplicationObject` as replication lag whoever created the object (a
    /// service principal's new app; an app the upsert just reported).
    lag_expected: bool,
}

impl Request {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: vec![],
            body: None,
            headers: vec![],
            fresh: vec![],
            lag_expected: false,
        }
    }

    fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| GraphError::Config(format!("encoding request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn fresh(mut self, id: &str) -> Self {
        self.fresh.push(id.to_string());
        self
    }
}

/// A success answer.
struct Answer {
    status: u16,
    body: Bytes,
}

/// What a create with lookup ended with.
enum Created<T> {
    /// Graph answered the POST.
    Answer(Answer),
    /// The object was found (the earlier attempt had gone through, or it existed).
    Found(T),
}

enum RetryKind {
    Transient,
    Consistency,
}

/// Holds the write lock of one object; the map entry goes when nobody waits for it.
struct WriteGuard<'a> {
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let mut locks = recover(self.locks);
        // Ours and the map's: nobody else holds or waits for it.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            locks.remove(&self.key);
        }
    }
}

fn recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GraphClient {
    /// Builds the HTTP client (rustls with ring) and the authentication.
    pub fn new(config: &EntraConfig, clock: Clock) -> Result<Self> {
        config.validate().map_err(GraphError::Config)?;
        crate::keys::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("portvakt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Config(format!("HTTP client: {}", describe_reqwest(&e))))?;
        let auth = EntraAuth::new(http.clone(), config, clock.clone());
        let base = config.graph_base();
        let origin = url::Url::parse(&base)
            .map(|u| u.origin().ascii_serialization())
            .map_err(|e| GraphError::Config(format!("graph_url {base:?}: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                origin,
                auth,
                retry: config.retry.clone(),
                consistency_retry: config.consistency_retry.clone(),
                consistency_window: config.consistency_window,
                clock,
                wait: config.wait,
                max_pages: config.max_pages,
                page_size: config.page_size,
                counters: Counters::default(),
                created: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                hooks: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn auth(&self) -> &EntraAuth {
        &self.inner.auth
    }

    /// Sets the [`CallHooks`] of this client and its clones (once; `false` if already set).
    pub fn set_hooks(&self, hooks: Arc<dyn CallHooks>) -> bool {
        self.inner.hooks.set(hooks).is_ok()
    }

    pub fn stats(&self) -> CallStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallStats {
            requests: load(&c.requests),
            gets: load(&c.gets),
            posts: load(&c.posts),
            patches: load(&c.patches),
            deletes: load(&c.deletes),
            retries: load(&c.retries),
            throttled: load(&c.throttled),
            concurrency_retries: load(&c.concurrency_retries),
            consistency_retries: load(&c.consistency_retries),
            create_lookups: load(&c.create_lookups),
            pages: load(&c.pages),
            token_grants: self.inner.auth.grant_count(),
            waited: Duration::from_millis(load(&c.waited_ms)),
        }
    }

    // ---- applications ----

    /// `GET /applications/{id}`.
    pub async fn get_application(&self, object_id: &str) -> Result<Application> {
        self.json_call(Request::get(format!("/applications/{}", seg(object_id))).fresh(object_id))
            .await
    }

    /// Applications whose display name is `name` (`$filter=displayName eq '…'`, quoted).
    pub async fn list_applications_by_display_name(&self, name: &str) -> Result<Vec<Application>> {
        self.list(Request::get("/applications").query("$filter", eq_filter("displayName", name)))
            .await
    }

    /// The application identified by its display name (`cluster:namespace:name`), as azurerator finds
    /// it; more than one is [`GraphError::Duplicate`].
    pub async fn find_application_by_display_name(
        &self,
        name: &str,
    ) -> Result<Option<Application>> {
        let mut apps = self.list_applications_by_display_name(name).await?;
        match apps.len() {
            0 => Ok(None),
            1 => Ok(apps.pop()),
            count => Err(GraphError::Duplicate {
                display_name: name.to_string(),
                count,
                object_ids: apps.into_iter().map(|a| a.id).collect(),
            }),
        }
    }

    /// Every application whose display name starts with `prefix` (`$filter=startswith(displayName,'…')`,
    /// all pages): one listing of a cluster's apps (`<cluster>:`) for the periodic comparison.
    pub async fn list_applications_with_display_name_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<Application>> {
        let filter = format!("startswith(displayName,{})", odata_string(prefix));
        self.list(Request::get("/applications").query("$filter", filter))
            .await
    }

    /// The application with this appId (client id).
    pub async fn find_application_by_app_id(&self, app_id: &str) -> Result<Option<Application>> {
        let mut apps: Vec<Application> = self
            .list(Request::get("/applications").query("$filter", eq_filter("appId", app_id)))
            .await?;
        Ok(apps.pop())
    }

    /// `GET /applications(uniqueName='…')`; `None` when there is none.
    pub async fn get_application_by_unique_name(
        &self,
        unique_name: &str,
    ) -> Result<Option<Application>> {
        let req = Request::get(format!(
            "/applications(uniqueName={})",
            seg(&odata_string(unique_name))
        ));
        match self.json_call(req).await {
            Ok(app) => Ok(Some(app)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /applications` (`body.display_name` required). After a timeout or 5xx the app is looked up
    /// by display name before the POST is sent again, and returned if found.
    pub async fn create_application(&self, body: &ApplicationPatch) -> Result<Application> {
        let name = body
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| GraphError::Config("a new application needs a displayName".into()))?;
        let _name_lock = self.lock(&format!("displayName:{name}")).await;
        let req = Request::new(Method::POST, "/applications").json(body)?;
        let app: Application = match self
            .create_with_lookup(&req, || self.find_application_by_display_name(&name))
            .await?
        {
            Created::Answer(a) => decode(&req, &a.body)?,
            Created::Found(app) => app,
        };
        self.remember_created(&[&app.id, &app.app_id]);
        Ok(app)
    }

    /// The documented upsert: `PATCH /applications(uniqueName='…')` with `Prefer: create-if-missing`.
    /// Safe to repeat (a retry after a lost answer updates what the first attempt created).
    pub async fn upsert_application(
        &self,
        unique_name: &str,
        body: &ApplicationPatch,
    ) -> Result<UpsertOutcome> {
        let _lock = self.lock(&format!("uniqueName:{unique_name}")).await;
        let req = Request::new(
            Method::PATCH,
            format!(
                "/applications(uniqueName={})",
                seg(&odata_string(unique_name))
            ),
        )
        .header("Prefer", "create-if-missing")
        .json(body)?;
        let answer = self.call(&req).await?;
        if answer.status == 201 && !answer.body.is_empty() {
            let app: Application = decode(&req, &answer.body)?;
            self.remember_created(&[&app.id, &app.app_id]);
            return Ok(UpsertOutcome::Created(Box::new(app)));
        }
        Ok(UpsertOutcome::Updated)
    }

    /// The application named `display_name`, created if there is none, crash-safe:
    /// found by display name (azurerator's apps, which have no uniqueName, are adopted so) → returned
    /// untouched; otherwise the upsert by `unique_name` with `body` (which gets the display name)
    /// creates it, or finds what an earlier attempt created.
    pub async fn ensure_application(
        &self,
        display_name: &str,
        unique_name: &str,
        body: &ApplicationPatch,
    ) -> Result<EnsuredApplication> {
        let _name_lock = self.lock(&format!("displayName:{display_name}")).await;
        if let Some(app) = self.find_application_by_display_name(display_name).await? {
            return Ok(EnsuredApplication {
                application: app,
                outcome: EnsureOutcome::Found,
            });
        }
        let mut body = body.clone();
        body.display_name = Some(display_name.to_string());
        match self.upsert_application(unique_name, &body).await? {
            UpsertOutcome::Created(app) => Ok(EnsuredApplication {
                application: *app,
                outcome: EnsureOutcome::Created,
            }),
            UpsertOutcome::Updated => {
                // It exists (the upsert said so): a 404 now is replication lag.
                let mut req = Request::get(format!(
                    "/applications(uniqueName={})",
                    seg(&odata_string(unique_name))
                ));
                req.lag_expected = true;
                let app: Application = self.json_call(req).await?;
                Ok(EnsuredApplication {
                    application: app,
                    outcome: EnsureOutcome::Recovered,
                })
            }
        }
    }

    /// `PATCH /applications/{id}` (only what `patch` sets; collections replaced).
    pub async fn update_application(
        &self,
        object_id: &str,
        patch: &ApplicationPatch,
    ) -> Result<()> {
        let _lock = self.lock(object_id).await;
        self.patch_application_unlocked(object_id, patch).await
    }

    async fn patch_application_unlocked(
        &self,
        object_id: &str,
        patch: &ApplicationPatch,
    ) -> Result<()> {
        let req = Request::new(Method::PATCH, format!("/applications/{}", seg(object_id)))
            .fresh(object_id)
            .json(patch)?;
        self.call(&req).await.map(|_| ())
    }

    /// Sets `identifierUris` (a separate PATCH after create, since `api://{appId}` needs the appId;
    /// retried while a new app replicates).
    pub async fn set_identifier_uris(&self, object_id: &str, uris: &[String]) -> Result<()> {
        self.update_application(
            object_id,
            &ApplicationPatch {
                identifier_uris: Some(uris.to_vec()),
                ..Default::default()
            },
        )
        .await
    }

    /// `PATCH … {"api":{"preAuthorizedApplications":[…]}}` (the whole list).
    pub async fn set_pre_authorized_applications(
        &self,
        object_id: &str,
        apps: &[PreAuthorizedApplication],
    ) -> Result<()> {
        self.update_application(
            object_id,
            &ApplicationPatch {
                api: Some(ApiApplicationPatch {
                    pre_authorized_applications: Some(apps.to_vec()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
    }

    /// `DELETE /applications/{id}` (Entra keeps it 30 days in deleted items). A 404 counts as done.
    pub async fn delete_application(&self, object_id: &str) -> Result<()> {
        let _lock = self.lock(object_id).await;
        let req = Request::new(Method::DELETE, format!("/applications/{}", seg(object_id)));
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the app's delegated scopes and app roles with `scopes` and `roles`, as Graph requires:
    /// entries that go away are first disabled (one PATCH, which also drops them from
    /// `api.preAuthorizedApplications`) and removed in a second PATCH. `current` is a fresh read of the app.
    pub async fn replace_permissions(
        &self,
        current: &Application,
        scopes: &[PermissionScope],
        roles: &[AppRole],
    ) -> Result<PermissionChange> {
        let _lock = self.lock(&current.id).await;
        let kept_scope = |id: &str| scopes.iter().any(|s| s.id.eq_ignore_ascii_case(id));
        let kept_role = |id: &str| roles.iter().any(|r| r.id.eq_ignore_ascii_case(id));
        let gone_scopes: Vec<PermissionScope> = current
            .scopes()
            .iter()
            .filter(|s| !kept_scope(&s.id))
            .cloned()
            .collect();
        let gone_roles: Vec<AppRole> = current
            .app_roles
            .iter()
            .filter(|r| !kept_role(&r.id))
            .cloned()
            .collect();
        let mut change = PermissionChange::default();
        let final_patch = ApplicationPatch {
            api: Some(ApiApplicationPatch {
                oauth2_permission_scopes: Some(scopes.to_vec()),
                ..Default::default()
            }),
            app_roles: Some(roles.to_vec()),
            ..Default::default()
        };
        let gone_ids: Vec<String> = gone_scopes
            .iter()
            .map(|s| s.id.clone())
            .chain(gone_roles.iter().map(|r| r.id.clone()))
            .collect();
        let pre: Vec<PreAuthorizedApplication> = current.pre_authorized_applications().to_vec();
        let refers_to_gone = |p: &PreAuthorizedApplication| {
            p.delegated_permission_ids
                .iter()
                .any(|id| gone_scopes.iter().any(|s| s.id.eq_ignore_ascii_case(id)))
        };
        let trim = pre.iter().any(refers_to_gone);
        let must_disable = gone_scopes.iter().any(|s| s.is_enabled)
            || gone_roles.iter().any(|r| r.is_enabled)
            || trim;
        if must_disable {
            let mut phase_scopes = scopes.to_vec();
            phase_scopes.extend(gone_scopes.iter().cloned().map(|mut s| {
                s.is_enabled = false;
                s
            }));
            let mut phase_roles = roles.to_vec();
            phase_roles.extend(gone_roles.iter().cloned().map(|mut r| {
                r.is_enabled = false;
                r
            }));
            let trimmed: Option<Vec<PreAuthorizedApplication>> = trim.then(|| {
                pre.iter()
                    .map(|p| {
                        let mut p = p.clone();
                        if refers_to_gone(&p) {
                            change.pre_authorizations_trimmed.push(p.app_id.clone());
                        }
                        p.delegated_permission_ids.retain(|id| {
                            !gone_scopes.iter().any(|s| s.id.eq_ignore_ascii_case(id))
                        });
                        p
                    })
                    .collect()
            });
            let disable = ApplicationPatch {
                api: Some(ApiApplicationPatch {
                    oauth2_permission_scopes: Some(phase_scopes),
                    pre_authorized_applications: trimmed,
                    ..Default::default()
                }),
                app_roles: Some(phase_roles),
                ..Default::default()
            };
            self.patch_application_unlocked(&current.id, &disable)
                .await?;
            change.patches += 1;
        }
        self.patch_application_unlocked(&current.id, &final_patch)
            .await?;
        change.patches += 1;
        change.removed = gone_ids;
        Ok(change)
    }

    // ---- credentials ----

    /// `POST /applications/{id}/addPassword`: the answer holds the secret, the only time Graph shows it.
    /// If the answer is lost (timeout, 5xx), the credential that may have been made is found by its
    /// display name and removed before another is added, so no unreadable secret is left behind.
    pub async fn add_password(
        &self,
        object_id: &str,
        password: &NewPasswordCredential,
    ) -> Result<PasswordCredential> {
        let _lock = self.lock(object_id).await;
        let body = serde_json::json!({ "passwordCredential": password });
        let req = Request::new(
            Method::POST,
            format!("/applications/{}/addPassword", seg(object_id)),
        )
        .fresh(object_id)
        .json(&body)?;
        let mut plan = RetryState::default();
        loop {
            let err = match self.send_once(&req, &mut plan.reauthenticated).await {
                Ok(answer) => {
                    let created: PasswordCredential = decode(&req, &answer.body)?;
                    if created.secret_text.is_none() {
                        return Err(GraphError::Decode {
                            method: "POST".into(),
                            path: req.path.clone(),
                            problem: "the addPassword answer has no secretText".into(),
                        });
                    }
                    return Ok(created);
                }
                Err(e) => e,
            };
            let Some(delay) = self.plan_retry(&err, &req, &mut plan) else {
                return Err(err);
            };
            tracing::warn!(path = %req.path, ?delay, error = %err, "addPassword failed; retrying");
            self.pause(delay).await;
            if err.is_ambiguous() {
                bump(&self.inner.counters.create_lookups);
                let app = match self.get_application(object_id).await {
                    Ok(app) => app,
                    Err(lookup) => {
                        tracing::warn!(error = %lookup, "lookup after a failed addPassword failed too");
                        return Err(err);
                    }
                };
                for lost in app
                    .password_credentials
                    .iter()
                    .filter(|p| p.display_name.as_deref() == Some(password.display_name.as_str()))
                {
                    tracing::info!(key_id = %lost.key_id, "removing a password whose secret was lost with the answer");
                    self.remove_password_unlocked(object_id, &lost.key_id)
                        .await?;
                }
            }
            bump(&self.inner.counters.retries);
        }
    }

    /// `POST /applications/{id}/removePassword`. After a lost answer it checks whether the password is
    /// gone before trying again.
    pub async fn remove_password(&self, object_id: &str, key_id: &str) -> Result<()> {
        let _lock = self.lock(object_id).await;
        self.remove_password_unlocked(object_id, key_id).await
    }

    async fn remove_password_unlocked(&self, object_id: &str, key_id: &str) -> Result<()> {
        let req = Request::new(
            Method::POST,
            format!("/applications/{}/removePassword", seg(object_id)),
        )
        .fresh(object_id)
        .json(&serde_json::json!({ "keyId": key_id }))?;
        let mut plan = RetryState::default();
        loop {
            let err = match self.send_once(&req, &mut plan.reauthenticated).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let Some(delay) = self.plan_retry(&err, &req, &mut plan) else {
                return Err(err);
            };
            tracing::warn!(path = %req.path, ?delay, error = %err, "removePassword failed; retrying");
            self.pause(delay).await;
            if err.is_ambiguous() {
                bump(&self.inner.counters.create_lookups);
                if let Ok(app) = self.get_application(object_id).await
                    && !app
                        .password_credentials
                        .iter()
                        .any(|p| p.key_id.eq_ignore_ascii_case(key_id))
                {
                    return Ok(());
                }
            }
            bump(&self.inner.counters.retries);
        }
    }

    /// The app's certificates with their `key` (`$select=keyCredentials`), as a PATCH must send them.
    pub async fn key_credentials(&self, object_id: &str) -> Result<Vec<KeyCredential>> {
        let app: Application = self
            .json_call(
                Request::get(format!("/applications/{}", seg(object_id)))
                    .query("$select", "id,keyCredentials")
                    .fresh(object_id),
            )
            .await?;
        Ok(app.key_credentials)
    }

    /// `PATCH {"keyCredentials": […]}`: replaces the whole set (every certificate that stays must
    /// carry its `key`; `[]` removes all).
    pub async fn set_key_credentials(&self, object_id: &str, keys: &[KeyCredential]) -> Result<()> {
        self.update_application(
            object_id,
            &ApplicationPatch {
                key_credentials: Some(keys.to_vec()),
                ..Default::default()
            },
        )
        .await
    }

    /// Read-modify-write of the certificate set under the app's write lock: keeps the certificates
    /// `keep` accepts, appends `add`, and PATCHes the set (skipped when nothing changes). Returns the
    /// set written.
    pub async fn update_key_credentials(
        &self,
        object_id: &str,
        keep: impl Fn(&KeyCredential) -> bool,
        add: Vec<KeyCredential>,
    ) -> Result<Vec<KeyCredential>> {
        let _lock = self.lock(object_id).await;
        let current = self.key_credentials(object_id).await?;
        let before = current.len();
        let mut next: Vec<KeyCredential> = current.into_iter().filter(|k| keep(k)).collect();
        let unchanged = next.len() == before && add.is_empty();
        next.extend(add);
        if !unchanged {
            let patch = ApplicationPatch {
                key_credentials: Some(next.clone()),
                ..Default::default()
            };
            self.patch_application_unlocked(object_id, &patch).await?;
        }
        Ok(next)
    }

    // ---- federated identity credentials ----

    pub async fn list_federated_credentials(
        &self,
        object_id: &str,
    ) -> Result<Vec<FederatedIdentityCredential>> {
        self.list(
            Request::get(format!(
                "/applications/{}/federatedIdentityCredentials",
                seg(object_id)
            ))
            .fresh(object_id),
        )
        .await
    }

    /// `POST …/federatedIdentityCredentials`; one with the same name already there is returned.
    pub async fn create_federated_credential(
        &self,
        object_id: &str,
        credential: &FederatedIdentityCredential,
    ) -> Result<FederatedIdentityCredential> {
        let _lock = self.lock(object_id).await;
        let req = Request::new(
            Method::POST,
            format!(
                "/applications/{}/federatedIdentityCredentials",
                seg(object_id)
            ),
        )
        .fresh(object_id)
        .json(credential)?;
        let name = credential.name.clone();
        let lookup = || async {
            Ok(self
                .list_federated_credentials(object_id)
                .await?
                .into_iter()
                .find(|f| f.name.eq_ignore_ascii_case(&name)))
        };
        match self.create_with_lookup(&req, lookup).await? {
            Created::Answer(a) => decode(&req, &a.body),
            Created::Found(f) => Ok(f),
        }
    }

    /// `PATCH …/federatedIdentityCredentials/{name}` (issuer, subject, audiences; the name is fixed).
    pub async fn update_federated_credential(
        &self,
        object_id: &str,
        credential: &FederatedIdentityCredential,
    ) -> Result<()> {
        let _lock = self.lock(object_id).await;
        let body = serde_json::json!({
            "issuer": credential.issuer, "subject": credential.subject,
            "audiences": credential.audiences, "description": credential.description,
        });
        let req = Request::new(
            Method::PATCH,
            format!(
                "/applications/{}/federatedIdentityCredentials/{}",
                seg(object_id),
                seg(&credential.name)
            ),
        )
        .json(&body)?;
        self.call(&req).await.map(|_| ())
    }

    /// `DELETE …/federatedIdentityCredentials/{name}`. A 404 counts as done.
    pub async fn delete_federated_credential(&self, object_id: &str, name: &str) -> Result<()> {
        let _lock = self.lock(object_id).await;
        let req = Request::new(
            Method::DELETE,
            format!(
                "/applications/{}/federatedIdentityCredentials/{}",
                seg(object_id),
                seg(name)
            ),
        );
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- owners ----

    pub async fn list_application_owners(&self, object_id: &str) -> Result<Vec<DirectoryObject>> {
        self.list(Request::get(format!("/applications/{}/owners", seg(object_id))).fresh(object_id))
            .await
    }

    pub async fn list_service_principal_owners(&self, sp_id: &str) -> Result<Vec<DirectoryObject>> {
        self.list(Request::get(format!("/servicePrincipals/{}/owners", seg(sp_id))).fresh(sp_id))
            .await
    }

    /// Makes `owner_id` (e.g. the operator's service principal) an owner of the application; already
    /// being one counts as done.
    pub async fn add_application_owner(&self, object_id: &str, owner_id: &str) -> Result<()> {
        self.add_owner("applications", object_id, owner_id).await
    }

    pub async fn add_service_principal_owner(&self, sp_id: &str, owner_id: &str) -> Result<()> {
        self.add_owner("servicePrincipals", sp_id, owner_id).await
    }

    async fn add_owner(&self, collection: &str, target: &str, owner_id: &str) -> Result<()> {
        let _lock = self.lock(target).await;
        let body = serde_json::json!({
            "@odata.id": format!("{}/directoryObjects/{}", self.inner.base, owner_id)
        });
        let req = Request::new(
            Method::POST,
            format!("/{collection}/{}/owners/$ref", seg(target)),
        )
        .fresh(target)
        .json(&body)?;
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- service principals ----

    pub async fn get_service_principal(&self, sp_id: &str) -> Result<ServicePrincipal> {
        self.json_call(Request::get(format!("/servicePrincipals/{}", seg(sp_id))).fresh(sp_id))
            .await
    }

    /// The service principal of `app_id` (`$filter=appId eq '…'`).
    pub async fn find_service_principal_by_app_id(
        &self,
        app_id: &str,
    ) -> Result<Option<ServicePrincipal>> {
        let mut sps: Vec<ServicePrincipal> = self
            .list(Request::get("/servicePrincipals").query("$filter", eq_filter("appId", app_id)))
            .await?;
        Ok(sps.pop())
    }

    /// `POST /servicePrincipals`. `NoBackingApplicationObject` (the app has not replicated yet) is
    /// retried; one that exists already (or appears after a lost answer) is returned.
    pub async fn create_service_principal(
        &self,
        sp: &NewServicePrincipal,
    ) -> Result<ServicePrincipal> {
        let _lock = self.lock(&format!("sp-for:{}", sp.app_id)).await;
        let mut req = Request::new(Method::POST, "/servicePrincipals")
            .fresh(&sp.app_id)
            .json(sp)?;
        req.lag_expected = true;
        let found = match self
            .create_with_lookup(&req, || self.find_service_principal_by_app_id(&sp.app_id))
            .await?
        {
            Created::Answer(a) => decode::<ServicePrincipal>(&req, &a.body)?,
            Created::Found(s) => s,
        };
        self.remember_created(&[&found.id]);
        Ok(found)
    }

    /// `PATCH /servicePrincipals/{id}` (tags, appRoleAssignmentRequired, …).
    pub async fn update_service_principal(
        &self,
        sp_id: &str,
        patch: &ServicePrincipalPatch,
    ) -> Result<()> {
        let _lock = self.lock(sp_id).await;
        let req = Request::new(Method::PATCH, format!("/servicePrincipals/{}", seg(sp_id)))
            .fresh(sp_id)
            .json(patch)?;
        self.call(&req).await.map(|_| ())
    }

    // ---- app role assignments ----

    /// Who holds roles on the resource `resource_sp_id` (`GET …/appRoleAssignedTo`, all pages).
    pub async fn list_app_role_assigned_to(
        &self,
        resource_sp_id: &str,
    ) -> Result<Vec<AppRoleAssignment>> {
        self.list(
            Request::get(format!(
                "/servicePrincipals/{}/appRoleAssignedTo",
                seg(resource_sp_id)
            ))
            .fresh(resource_sp_id),
        )
        .await
    }

    /// The roles `principal_sp_id` holds on other resources.
    pub async fn list_app_role_assignments(
        &self,
        principal_sp_id: &str,
    ) -> Result<Vec<AppRoleAssignment>> {
        self.list(
            Request::get(format!(
                "/servicePrincipals/{}/appRoleAssignments",
                seg(principal_sp_id)
            ))
            .fresh(principal_sp_id),
        )
        .await
    }

    /// `POST /servicePrincipals/{resource}/appRoleAssignedTo` for an app's service principal or a
    /// group; an identical assignment already there is returned.
    pub async fn assign_app_role(
        &self,
        assignment: &NewAppRoleAssignment,
    ) -> Result<AppRoleAssignment> {
        let resource = assignment.resource_id.clone();
        let _lock = self.lock(&resource).await;
        let req = Request::new(
            Method::POST,
            format!("/servicePrincipals/{}/appRoleAssignedTo", seg(&resource)),
        )
        .fresh(&resource)
        .fresh(&assignment.principal_id)
        .json(assignment)?;
        let lookup = || async {
            Ok(self
                .list_app_role_assigned_to(&resource)
                .await?
                .into_iter()
                .find(|a| {
                    a.principal_id
                        .eq_ignore_ascii_case(&assignment.principal_id)
                        && a.app_role_id.eq_ignore_ascii_case(&assignment.app_role_id)
                }))
        };
        match self.create_with_lookup(&req, lookup).await? {
            Created::Answer(a) => decode(&req, &a.body),
            Created::Found(a) => Ok(a),
        }
    }

    /// `DELETE /servicePrincipals/{resource}/appRoleAssignedTo/{id}`. A 404 counts as done.
    pub async fn remove_app_role_assignment(
        &self,
        resource_sp_id: &str,
        assignment_id: &str,
    ) -> Result<()> {
        let _lock = self.lock(resource_sp_id).await;
        let req = Request::new(
            Method::DELETE,
            format!(
                "/servicePrincipals/{}/appRoleAssignedTo/{}",
                seg(resource_sp_id),
                seg(assignment_id)
            ),
        );
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- delegated permission grants ----

    /// Grants whose client is the service principal `client_sp_id`.
    pub async fn list_oauth2_permission_grants(
        &self,
        client_sp_id: &str,
    ) -> Result<Vec<OAuth2PermissionGrant>> {
        self.list(
            Request::get("/oauth2PermissionGrants")
                .query("$filter", eq_filter("clientId", client_sp_id)),
        )
        .await
    }

    /// `POST /oauth2PermissionGrants`; a grant with the same client, resource and consent type that is
    /// there already is returned.
    pub async fn create_oauth2_permission_grant(
        &self,
        grant: &OAuth2PermissionGrant,
    ) -> Result<OAuth2PermissionGrant> {
        let _lock = self.lock(&grant.client_id).await;
        let req = Request::new(Method::POST, "/oauth2PermissionGrants")
            .fresh(&grant.client_id)
            .json(grant)?;
        let lookup = || async {
            Ok(self
                .list_oauth2_permission_grants(&grant.client_id)
                .await?
                .into_iter()
                .find(|g| {
                    g.resource_id == grant.resource_id
                        && g.consent_type == grant.consent_type
                        && g.principal_id == grant.principal_id
                }))
        };
        match self.create_with_lookup(&req, lookup).await? {
            Created::Answer(a) => decode(&req, &a.body),
            Created::Found(g) => Ok(g),
        }
    }

    /// `PATCH /oauth2PermissionGrants/{id}` with a new scope list.
    pub async fn update_oauth2_permission_grant(&self, grant_id: &str, scope: &str) -> Result<()> {
        let _lock = self.lock(&format!("grant:{grant_id}")).await;
        let req = Request::new(
            Method::PATCH,
            format!("/oauth2PermissionGrants/{}", seg(grant_id)),
        )
        .json(&serde_json::json!({ "scope": scope }))?;
        self.call(&req).await.map(|_| ())
    }

    /// `DELETE /oauth2PermissionGrants/{id}`. A 404 counts as done.
    pub async fn delete_oauth2_permission_grant(&self, grant_id: &str) -> Result<()> {
        let _lock = self.lock(&format!("grant:{grant_id}")).await;
        let req = Request::new(
            Method::DELETE,
            format!("/oauth2PermissionGrants/{}", seg(grant_id)),
        );
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- groups ----

    /// `GET /groups/{id}`; `None` when there is no such group.
    pub async fn get_group(&self, group_id: &str) -> Result<Option<Group>> {
        match self
            .json_call(Request::get(format!("/groups/{}", seg(group_id))))
            .await
        {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn find_groups_by_display_name(&self, name: &str) -> Result<Vec<Group>> {
        self.list(Request::get("/groups").query("$filter", eq_filter("displayName", name)))
            .await
    }

    // ---- machinery ----

    /// The write lock of one object (held for the whole write, retries included).
    async fn lock(&self, key: &str) -> WriteGuard<'_> {
        let mutex = {
            let mut locks = recover(&self.inner.locks);
            locks
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let guard = mutex.lock_owned().await;
        WriteGuard {
            locks: &self.inner.locks,
            key: key.to_string(),
            _guard: guard,
        }
    }

    fn remember_created(&self, ids: &[&str]) {
        let now = self.inner.clock.now();
        let window = jiff::SignedDuration::try_from(self.inner.consistency_window)
            .unwrap_or(jiff::SignedDuration::MAX);
        let mut created = recover(&self.inner.created);
        created.retain(|_, at| now.duration_since(*at) < window);
        for id in ids.iter().filter(|id| !id.is_empty()) {
            created.insert(id.to_ascii_lowercase(), now);
        }
    }

    fn is_fresh(&self, ids: &[String]) -> bool {
        let now = self.inner.clock.now();
        let window = jiff::SignedDuration::try_from(self.inner.consistency_window)
            .unwrap_or(jiff::SignedDuration::MAX);
        let created = recover(&self.inner.created);
        ids.iter().any(|id| {
            created
                .get(&id.to_ascii_lowercase())
                .is_some_and(|at| now.duration_since(*at) < window)
        })
    }

    async fn pause(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .counters
            .waited_ms
            .fetch_add(ms, Ordering::Relaxed);
        wait(self.inner.wait, &self.inner.clock, d).await;
    }

    async fn json_call<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        let answer = self.call(&req).await?;
        decode(&req, &answer.body)
    }

    /// Every page of a collection.
    async fn list<T: DeserializeOwned>(&self, first: Request) -> Result<Vec<T>> {
        let mut req = first;
        if let Some(top) = self.inner.page_size {
            req = req.query("$top", top.to_string());
        }
        let path = req.path.clone();
        let mut out = vec![];
        for _ in 0..self.inner.max_pages {
            let page: Page<T> = self.json_call(req.clone()).await?;
            bump(&self.inner.counters.pages);
            out.extend(page.value);
            let Some(next) = page.next_link else {
                return Ok(out);
            };
            if !next.starts_with(&self.inner.origin) {
                return Err(GraphError::Decode {
                    method: "GET".into(),
                    path,
                    problem: format!(
                        "@odata.nextLink {next:?} leaves {}; not following it with our token",
                        self.inner.origin
                    ),
                });
            }
            req = Request {
                path: next,
                query: vec![],
                ..req
            };
        }
        Err(GraphError::PageLimit {
            path,
            pages: self.inner.max_pages,
        })
    }

    /// Sends with retries (for requests that are safe to repeat).
    async fn call(&self, req: &Request) -> Result<Answer> {
        let mut plan = RetryState::default();
        loop {
            match self.send_once(req, &mut plan.reauthenticated).await {
                Ok(answer) => return Ok(answer),
                Err(e) => match self.plan_retry(&e, req, &mut plan) {
                    Some(delay) => {
                        tracing::warn!(
                            method = %req.method, path = %display_path(&req.path), ?delay, error = %e,
                            "Graph call failed; retrying"
                        );
                        self.pause(delay).await;
                        bump(&self.inner.counters.retries);
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// A create: after an ambiguous failure, wait, look the object up, and only post again if it is
    /// not there. "Already exists" is answered by the lookup too.
    async fn create_with_lookup<T, L, Fut>(&self, req: &Request, lookup: L) -> Result<Created<T>>
    where
        L: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let mut plan = RetryState::default();
        loop {
            let err = match self.send_once(req, &mut plan.reauthenticated).await {
                Ok(answer) => return Ok(Created::Answer(answer)),
                Err(e) => e,
            };
            if err.is_already_exists() {
                bump(&self.inner.counters.create_lookups);
                return match lookup().await? {
                    Some(found) => Ok(Created::Found(found)),
                    None => Err(err),
                };
            }
            let Some(delay) = self.plan_retry(&err, req, &mut plan) else {
                return Err(err);
            };
            tracing::warn!(
                method = %req.method, path = %req.path, ?delay, error = %err,
                "Graph create failed; retrying"
            );
            self.pause(delay).await;
            if err.is_ambiguous() {
                bump(&self.inner.counters.create_lookups);
                match lookup().await {
                    Ok(Some(found)) => {
                        tracing::info!(path = %req.path, "the create had gone through after all; using the existing object");
                        return Ok(Created::Found(found));
                    }
                    Ok(None) => {}
                    Err(lookup_err) => {
                        // Unknown whether the create happened: do not post again; the caller retries
                        // later, and looks before it creates.
                        tracing::warn!(error = %lookup_err, "lookup after a failed create failed too");
                        return Err(err);
                    }
                }
            }
            bump(&self.inner.counters.retries);
        }
    }

    /// How long to wait before retrying after `err`, or `None` to give up. Updates the counts.
    fn plan_retry(
        &self,
        err: &GraphError,
        req: &Request,
        plan: &mut RetryState,
    ) -> Option<Duration> {
        let c = &self.inner.counters;
        if err.is_throttled() {
            bump(&c.throttled);
        }
        // Grant failures were already retried inside EntraAuth.
        if matches!(err, GraphError::Auth(_)) {
            return None;
        }
        let lag = err.is_replication_lag() && (req.lag_expected || self.is_fresh(&req.fresh));
        let kind = if lag {
            RetryKind::Consistency
        } else if err.is_retryable() {
            RetryKind::Transient
        } else {
            return None;
        };
        match kind {
            RetryKind::Consistency => {
                plan.consistency_attempts += 1;
                let policy = &self.inner.consistency_retry;
                if plan.consistency_attempts >= policy.max_attempts {
                    return None;
                }
                bump(&c.consistency_retries);
                Some(policy.backoff(plan.consistency_attempts))
            }
            RetryKind::Transient => {
                plan.transient_attempts += 1;
                let policy = &self.inner.retry;
                if plan.transient_attempts >= policy.max_attempts {
                    return None;
                }
                let delay = match err.retry_after() {
                    Some(wait) if wait > policy.max_retry_after => return None,
                    Some(wait) => wait,
                    None => policy.backoff(plan.transient_attempts),
                };
                if err.is_concurrency_violation() {
                    bump(&c.concurrency_retries);
                }
                Some(delay)
            }
        }
    }

    /// One attempt; a 401 renews the token once per request.
    async fn send_once(&self, req: &Request, reauthenticated: &mut bool) -> Result<Answer> {
        loop {
            let token = self.inner.auth.token().await?;
            match self.send_with(req, &token).await {
                Err(e) if e.status() == Some(401) && !*reauthenticated => {
                    *reauthenticated = true;
                    self.inner.auth.invalidate(&token).await;
                    tracing::info!(path = %display_path(&req.path), "Graph answered 401; renewing the token");
                }
                other => return other,
            }
        }
    }

    async fn send_with(&self, req: &Request, token: &AccessToken) -> Result<Answer> {
        let hooks = self.inner.hooks.get();
        if req.method != Method::GET && hooks.is_some_and(|h| !h.may_write()) {
            return Err(GraphError::Transport {
                method: req.method.to_string(),
                path: display_path(&req.path).to_string(),
                problem: WRITE_REFUSED.into(),
                timeout: false,
                connect: true,
            });
        }
        let started = std::time::Instant::now();
        let result = self.send_unhooked(req, token).await;
        if let Some(h) = hooks {
            let status = match &result {
                Ok(a) => Some(a.status),
                Err(e) => e.status(),
            };
            h.call_done(
                req.method.as_str(),
                display_path(&req.path),
                status,
                started.elapsed(),
            );
        }
        result
    }

    async fn send_unhooked(&self, req: &Request, token: &AccessToken) -> Result<Answer> {
        let c = &self.inner.counters;
        bump(&c.requests);
        bump(match req.method {
            Method::GET => &c.gets,
            Method::POST => &c.posts,
            Method::PATCH => &c.patches,
            _ => &c.deletes,
        });
        let mut url = if req.path.starts_with("http") {
            req.path.clone()
        } else {
            format!("{}{}", self.inner.base, req.path)
        };
        if !req.query.is_empty() {
            let q: Vec<String> = req
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
                .collect();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&q.join("&"));
        }
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), &url)
            .bearer_auth(token.secret())
            .header("client-request-id", &client_request_id);
        for (k, v) in &req.headers {
            builder = builder.header(*k, *v);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let method = req.method.as_str();
        let path = display_path(&req.path).to_string();
        let transport = |e: reqwest::Error| GraphError::Transport {
            method: method.to_string(),
            path: path.clone(),
            problem: describe_reqwest(&e),
            timeout: e.is_timeout(),
            connect: e.is_connect(),
        };
        let resp = builder.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, &self.inner.clock));
        let body = resp.bytes().await.map_err(transport)?;
        tracing::debug!(method, path = %path, status, request_id = request_id.as_deref().unwrap_or(""), "Graph call");
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(GraphError::from_response(
                method,
                &path,
                status,
                request_id,
                Some(client_request_id),
                retry_after,
                &body,
            ))
        }
    }
}

/// Attempts made for one request.
#[derive(Default)]
struct RetryState {
    transient_attempts: u32,
    consistency_attempts: u32,
    reauthenticated: bool,
}

/// A nextLink shown without its scheme and host.
fn display_path(path: &str) -> &str {
    match path.find("/v1.0/") {
        Some(i) if path.starts_with("http") => &path[i + 5..],
        _ => path,
    }
}

fn decode<T: DeserializeOwned>(req: &Request, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| GraphError::Decode {
        method: req.method.to_string(),
        path: display_path(&req.path).to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_literals_double_quotes_and_paths_keep_keys_readable() {
        assert_eq!(odata_string("o'brien"), "'o''brien'");
        assert_eq!(
            eq_filter("displayName", "c:ns:x' or 1 eq 1"),
            "displayName eq 'c:ns:x'' or 1 eq 1'"
        );
        assert_eq!(
            seg(&odata_string("a b/c")),
            "'a%20b%2Fc'",
            "a key cannot break out of its segment"
        );
        assert_eq!(
            utf8_percent_encode("displayName eq 'a:b'", QUERY).to_string(),
            "displayName%20eq%20'a:b'"
        );
        assert_eq!(
            display_path("https://graph.microsoft.com/v1.0/applications?$skiptoken=x"),
            "/applications?$skiptoken=x"
        );
    }
}
