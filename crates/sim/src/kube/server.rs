//! [`ApiServer`]: the shared state, kubeconfig and the test hooks (the HTTP side, its router,
//! in-process client and loopback serving, is in [`super::handlers`], which depends on this and
//! not the other way round).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::fault::{CallRecord, ErrorShape, FaultLayer, FaultRule};

use super::error::ApiResult;
use super::registry;
use super::resource::ResourceInfo;
use super::selector::Selectors;
use super::store::{Store, WriteOpts, served};
use portvakt_clock::Clock;

/// Largest accepted request body (the real server's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
const JOURNAL_CAP: usize = 20_000;
const DEFAULT_HISTORY: usize = 2_000;

struct Inner {
    store: Mutex<Store>,
    clock: Clock,
    faults: Arc<FaultLayer>,
    drop_watches: watch::Sender<u64>,
    force_expired: AtomicU32,
    bookmark_ms: AtomicU32,
}

/// The embedded Kubernetes API server. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

fn recover<'a, T>(
    r: Result<MutexGuard<'a, T>, std::sync::PoisonError<MutexGuard<'a, T>>>,
) -> MutexGuard<'a, T> {
    r.unwrap_or_else(|e| e.into_inner())
}

impl ApiServer {
    /// A server with the built-in types and the namespaces a new cluster has (default,
    /// kube-node-lease, kube-public, kube-system).
    pub fn new(clock: Clock) -> Self {
        let (drop_watches, _) = watch::channel(0);
        let server = Self {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::new(clock.clone(), DEFAULT_HISTORY)),
                clock: clock.clone(),
                faults: FaultLayer::new(clock.clone(), StatusShape, JOURNAL_CAP, MAX_BODY),
                drop_watches,
                force_expired: AtomicU32::new(0),
                bookmark_ms: AtomicU32::new(2_000),
            }),
        };
        {
            let mut store = server.lock();
            let info = store.registry.find("", "v1", "namespaces").cloned();
            if let Some(info) = info {
                for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
                    let _ = store.create(
                        &info,
                        None,
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                        &WriteOpts {
                            manager: "kube-apiserver".into(),
                            ..WriteOpts::default()
                        },
                    );
                }
            }
        }
        server
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        recover(self.inner.store.lock())
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// The fault rules and the call journal.
    pub fn faults(&self) -> &Arc<FaultLayer> {
        &self.inner.faults
    }

    /// A kubeconfig for a plain-HTTP server with an empty user.
    pub fn kubeconfig_yaml(url: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: portvakt\n  cluster:\n    server: {url}\ncontexts:\n- name: portvakt\n  context:\n    cluster: portvakt\n    namespace: {namespace}\n    user: portvakt\ncurrent-context: portvakt\nusers:\n- name: portvakt\n  user: {{}}\npreferences: {{}}\n"
        )
    }

    /// Registers (or replaces) a resource type.
    pub fn register(&self, info: ResourceInfo) {
        self.lock().registry.register(info);
    }

    /// The registered resource types.
    pub fn resources(&self) -> Vec<ResourceInfo> {
        self.lock().registry.all().to_vec()
    }

    // ----- test hooks -----

    /// One object as served at `api_version`, by kind, plural, singular or short name.
    pub fn get_object(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.lock();
        let info = store
            .registry
            .find_any(api_version, kind_or_plural)?
            .clone();
        store.get(&info, namespace, name).ok()
    }

    /// Writes an object straight into the store (no validation; stamps metadata, emits events).
    pub fn put_object(&self, obj: Value) -> ApiResult<Value> {
        self.lock().put_object(obj)
    }

    /// Objects of a type, optionally in one namespace.
    pub fn list_objects(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let store = self.lock();
        let Some(info) = store.registry.find_any(api_version, plural).cloned() else {
            return Vec::new();
        };
        store
            .served_objects(&info, namespace)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Deletes an object as a DELETE request would (finalizers, GC). Returns its last state.
    pub fn delete_object(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut store = self.lock();
        let info = store
            .registry
            .find_any(api_version, kind_or_plural)?
            .clone();
        let key = Store::key(&info, namespace, name);
        store
            .delete_key(&key, super::store::Propagation::Background)
            .map(|(v, _)| served(&info, &v))
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().current_rv()
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

    /// Ends every open watch stream now (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.inner.drop_watches.send_modify(|n| *n += 1);
    }

    /// The next `n` watch requests get `410 Expired` (kube's watcher then re-lists).
    pub fn force_watch_expired(&self, n: u32) {
        self.inner.force_expired.fetch_add(n, Ordering::SeqCst);
    }

    /// Forgets the watch history: resuming from any older resourceVersion gets 410.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// How many events the watch history keeps.
    pub fn set_watch_history(&self, events: usize) {
        self.lock().set_history_cap(events);
    }

    /// How often watches with allowWatchBookmarks get a BOOKMARK.
    pub fn set_bookmark_interval(&self, every: Duration) {
        let ms = u32::try_from(every.as_millis()).unwrap_or(u32::MAX).max(10);
        self.inner.bookmark_ms.store(ms, Ordering::SeqCst);
    }

    pub(super) fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.inner.bookmark_ms.load(Ordering::SeqCst)))
    }

    pub(super) fn take_forced_expiry(&self) -> bool {
        self.inner
            .force_expired
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.inner.drop_watches.subscribe()
    }

    /// Label/field selector matching as the server does it (for other simulators).
    pub fn matches(
        api_version: &str,
        plural: &str,
        obj: &Value,
        labels: &str,
        fields: &str,
    ) -> bool {
        let (group, _) = registry::split_api_version(api_version);
        let Ok(labels) = super::selector::LabelSelector::parse(labels) else {
            return false;
        };
        let Ok(fields) = super::selector::FieldSelector::parse(fields, group, plural) else {
            return false;
        };
        Selectors { labels, fields }.matches(obj)
    }
}

/// Injected faults answer with a `Status` body, as the real server does (429 and 503 also carry
/// `details.retryAfterSeconds` and `Retry-After`, which client-go and kube honour).
struct StatusShape;

impl ErrorShape for StatusShape {
    fn error(
        &self,
        _path: &str,
        status: http::StatusCode,
        message: &str,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let code = status.as_u16();
        let mut err = super::error::ApiError::new(code, super::error::reason_for(code), message);
        if code == 429 || code == 503 {
            err = err.with_details(json!({"retryAfterSeconds": 1}));
        }
        let mut resp = err.into_response();
        if code == 429 || code == 503 {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
