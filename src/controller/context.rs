//! What every pass of every kind shares ([`Shared`]: the Kubernetes client, the clock, the event
//! recorder, counters and metrics, liveness, portvakt's own writes, backoff, key generation) and the operator's
//! [`Context`]: the shared part plus one part per configured provider (Digdir, Entra, …).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{Recorder, Reporter};

use super::keygen::KeyGenerator;
use super::kind::Provider;
use super::liveness::Liveness;
use crate::clock::Clock;
use crate::metrics::{KeyGenStats, Metrics};

/// Counters of what the controllers did (for tests, the benchmark, metrics and `--observe`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Passes started.
    pub reconciles: AtomicU64,
    /// Passes finished (successfully or not): a test waits on it instead of sleeping.
    pub passes_done: AtomicU64,
    pub failures: AtomicU64,
    pub workload_scans: AtomicU64,
    pub keys_generated: AtomicU64,
    /// CPU time spent generating keys, in microseconds (thread CPU time of each key; wall time
    /// where the kernel does not report it).
    pub keygen_cpu_micros: AtomicU64,
    pub secret_writes: AtomicU64,
    pub secret_deletes: AtomicU64,
    pub status_writes: AtomicU64,
    pub jwks_reads: AtomicU64,
    pub jwks_posts: AtomicU64,
    pub client_creates: AtomicU64,
    pub client_updates: AtomicU64,
    pub client_deletes: AtomicU64,
    /// Periodic steady-state passes completed.
    pub drift_passes: AtomicU64,
    /// Drift found at a provider (each triggers a repairing reconcile).
    pub drift_found: AtomicU64,
    /// Drift repaired by a reconcile.
    pub drift_repaired: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// portvakt's own writes, so the watches can tell them from everyone else's.
///
/// A reconcile that writes its resource (finalizer, status, consumed annotations) or one of its
/// Secrets has already done everything that write calls for; the watch event echoing it back would
/// only run the same pass again. Each write's answer carries the object's new resourceVersion; a watch
/// event carrying exactly that version is the echo and triggers nothing. Any other change — someone
/// else's write, a deletion, a re-created object — carries another version and still triggers.
#[derive(Debug, Default)]
pub(crate) struct OwnWrites(Mutex<HashMap<String, String>>);

impl OwnWrites {
    fn key(kind: &str, meta: &ObjectMeta) -> Option<String> {
        Some(format!(
            "{kind}/{}/{}",
            meta.namespace.as_deref()?,
            meta.name.as_deref()?
        ))
    }

    /// Records the object as portvakt's write answered it.
    pub(crate) fn record(&self, kind: &str, meta: &ObjectMeta) {
        let (Some(key), Some(rv)) = (Self::key(kind, meta), meta.resource_version.as_ref()) else {
            return;
        };
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(key, rv.clone());
    }

    /// Forgets an object portvakt deleted (or whose owner is gone).
    pub(crate) fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&format!("{kind}/{namespace}/{name}"));
    }

    /// Whether portvakt wrote a version of the object other than this one: the cache may not have
    /// caught up with that write (resource versions only compare for equality, so a newer write by
    /// someone else looks the same; reading it again is right in both cases).
    pub(crate) fn is_behind(&self, kind: &str, meta: &ObjectMeta) -> bool {
        let Some(key) = Self::key(kind, meta) else {
            return false;
        };
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key)
            .is_some_and(|rv| meta.resource_version.as_ref() != Some(rv))
    }

    /// Whether this version of the object is portvakt's own last write of it.
    pub(crate) fn is_own(&self, kind: &str, meta: &ObjectMeta) -> bool {
        let (Some(key), Some(rv)) = (Self::key(kind, meta), meta.resource_version.as_ref()) else {
            return false;
        };
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key) == Some(rv)
    }
}

/// Failures per object, for exponential backoff.
#[derive(Debug, Default)]
pub(crate) struct Backoff(Mutex<HashMap<String, u32>>);

/// The longest backoff, also the retry of a stalled resource (a foreign Secret in the way may be
/// removed without any event portvakt watches).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait: 1 s doubling to [`MAX_BACKOFF`], or
    /// the provider's Retry-After when longer.
    pub(crate) fn fail(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let n = {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = Duration::from_secs(1u64 << (n - 1).min(9)).min(MAX_BACKOFF);
        retry_after.map_or(exp, |r| r.max(exp))
    }

    pub(crate) fn reset(&self, key: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(key);
    }
}

/// What every pass of every kind shares.
pub struct Shared {
    pub client: kube::Client,
    pub clock: Clock,
    pub recorder: Recorder,
    pub counters: Arc<Counters>,
    /// The Prometheus metrics (`/metrics`), fed by the shared pass flow.
    pub metrics: Arc<Metrics>,
    /// Passes in flight and controllers that stopped (`/healthz`).
    pub liveness: Liveness,
    /// Registrations are identified as `<cluster>:<namespace>:<name>` at every provider.
    pub cluster_name: String,
    pub(crate) own_writes: OwnWrites,
    pub(crate) backoff: Backoff,
    /// Key generation off the async threads, one per core at a time, first keys first.
    pub keygen: KeyGenerator,
}

impl Shared {
    pub fn new(client: kube::Client, clock: Clock, cluster_name: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "portvakt".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let counters = Arc::new(Counters::default());
        let keygen = KeyGenerator::default();
        let metrics = Arc::new(Metrics::new(counters.clone()));
        metrics.add_collector(Arc::new(KeyGenStats(keygen.clone())));
        Self {
            client,
            clock,
            recorder,
            metrics,
            counters,
            liveness: Liveness::default(),
            cluster_name: cluster_name.to_string(),
            own_writes: OwnWrites::default(),
            backoff: Backoff::default(),
            keygen,
        }
    }
}

/// The operator: what every kind shares, plus the configured providers (each kind finds its own by
/// type; a kind whose provider is not configured cannot run).
pub struct Context {
    pub shared: Arc<Shared>,
    providers: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    periodic: Vec<Arc<dyn Provider>>,
}

impl std::ops::Deref for Context {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Context {
    /// A context with no provider yet (add them with [`Context::with_provider`]).
    pub fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            providers: HashMap::new(),
            periodic: Vec::new(),
        }
    }

    /// Adds a provider (one of each type).
    pub fn with_provider<P: Provider>(mut self, provider: Arc<P>) -> Self {
        self.providers.insert(
            TypeId::of::<P>(),
            provider.clone() as Arc<dyn Any + Send + Sync>,
        );
        self.periodic.push(provider);
        self
    }

    /// The provider of type `P`, if configured.
    pub fn provider<P: Provider>(&self) -> Option<Arc<P>> {
        self.providers
            .get(&TypeId::of::<P>())
            .and_then(|p| p.clone().downcast::<P>().ok())
    }

    /// Every configured provider (for the periodic pass).
    pub(crate) fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.periodic
    }
}
