//! What every pass of every kind shares ([`Shared`]: the Kubernetes client, the clock, the event
//! event writer, counters and metrics, liveness, portvakt's own writes, backoff, key generation) and the operator's
//! [`Context`]: the shared part plus one part per configured provider (Digdir, Entra, …).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::events::EventWriter;
use super::keygen::KeyGenerator;
use super::kind::Provider;
use super::liveness::Liveness;
use super::secret_index::SecretIndex;
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
/// event carrying one of those versions is an echo and triggers nothing. A pass often writes an object
/// more than once (a finalizer, then its status; a Secret created, then its bookkeeping): the echo of
/// the first write arrives after the second, so the last few versions count, not only the latest.
/// Any other change — someone else's write, a deletion, a re-created object — carries another
/// version and still triggers.
///
/// The echo can arrive before the write's answer does (the API server sends both at once): a watch
/// asks [`OwnWrites::is_own_settled`], which waits for a write of that object still in flight
/// ([`OwnWrites::begin`]) to be answered, at most [`IN_FLIGHT_WAIT`].
#[derive(Debug)]
pub(crate) struct OwnWrites {
    versions: Mutex<HashMap<String, Vec<String>>>,
    in_flight: Mutex<HashMap<String, usize>>,
    /// Bumped when a write is answered (wakes the watches waiting for it).
    answered: tokio::sync::watch::Sender<u64>,
}

impl Default for OwnWrites {
    fn default() -> Self {
        Self {
            versions: Mutex::default(),
            in_flight: Mutex::default(),
            answered: tokio::sync::watch::channel(0).0,
        }
    }
}

/// Versions of one object remembered as portvakt's own (the latest last).
const OWN_VERSIONS: usize = 4;

/// How long a watch event waits for portvakt's write of the same object to be answered.
pub(crate) const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// A watch event's object key and version ([`OwnWrites::echo`]).
pub(crate) struct Echo {
    key: String,
    rv: String,
}

/// A write of one object in flight ([`OwnWrites::begin`]); record its answer before dropping this.
pub(crate) struct InFlight<'a> {
    own: &'a OwnWrites,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        {
            let mut m = self.own.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
        self.own.answered.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl OwnWrites {
    /// A write of `kind` `namespace/name` starts; it is answered when the guard drops.
    pub(crate) fn begin(&self, kind: &str, namespace: &str, name: &str) -> InFlight<'_> {
        let key = format!("{kind}/{namespace}/{name}");
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key.clone()).or_insert(0) += 1;
        InFlight { own: self, key }
    }

    fn writing(&self, key: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// What a watch event is judged by, taken from it at once (its key and version), so the check
    /// can wait without holding on to the event's metadata. `None`: it carries no version.
    pub(crate) fn echo(kind: &str, meta: &ObjectMeta) -> Option<Echo> {
        Some(Echo {
            key: Self::key(kind, meta)?,
            rv: meta.resource_version.clone()?,
        })
    }

    /// Whether `echo` is one of portvakt's recent writes, once no write of that object is in flight
    /// (or after [`IN_FLIGHT_WAIT`]).
    pub(crate) async fn is_own_settled(&self, echo: Option<Echo>) -> bool {
        let Some(echo) = echo else {
            return false;
        };
        if self.writing(&echo.key) {
            let mut rx = self.answered.subscribe();
            let _ = tokio::time::timeout(IN_FLIGHT_WAIT, rx.wait_for(|_| !self.writing(&echo.key)))
                .await;
        }
        self.recorded(&echo)
    }

    fn recorded(&self, echo: &Echo) -> bool {
        let m = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&echo.key).is_some_and(|v| v.contains(&echo.rv))
    }

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
        let mut m = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let versions = m.entry(key).or_default();
        if versions.len() >= OWN_VERSIONS {
            versions.remove(0);
        }
        versions.push(rv.clone());
    }

    /// Forgets an object portvakt deleted (or whose owner is gone).
    pub(crate) fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let mut m = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&format!("{kind}/{namespace}/{name}"));
    }

    /// Whether portvakt wrote a version of the object other than this one: the cache may not have
    /// caught up with that write (resource versions only compare for equality, so a newer write by
    /// someone else looks the same; reading it again is right in both cases).
    pub(crate) fn is_behind(&self, kind: &str, meta: &ObjectMeta) -> bool {
        let Some(key) = Self::key(kind, meta) else {
            return false;
        };
        let m = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key)
            .and_then(|v| v.last())
            .is_some_and(|rv| meta.resource_version.as_ref() != Some(rv))
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
    pub events: EventWriter,
    pub counters: Arc<Counters>,
    /// The Prometheus metrics (`/metrics`), fed by the shared pass flow.
    pub metrics: Arc<Metrics>,
    /// Passes in flight and controllers that stopped (`/healthz`).
    pub liveness: Liveness,
    /// Registrations are identified as `<cluster>:<namespace>:<name>` at every provider.
    pub cluster_name: String,
    pub(crate) own_writes: OwnWrites,
    /// The app Secrets of every resource, by name (fed by each kind's Secret watch).
    pub secret_index: SecretIndex,
    pub(crate) backoff: Backoff,
    /// Key generation off the async threads, one per core at a time, first keys first.
    pub keygen: KeyGenerator,
}

impl Shared {
    pub fn new(client: kube::Client, clock: Clock, cluster_name: &str) -> Self {
        let events = EventWriter::new(client.clone(), "portvakt", std::env::var("POD_NAME").ok());
        let counters = Arc::new(Counters::default());
        let keygen = KeyGenerator::default().with_clock(clock.clone());
        let metrics = Arc::new(Metrics::new(counters.clone()));
        metrics.add_collector(Arc::new(KeyGenStats(keygen.clone())));
        Self {
            client,
            clock,
            events,
            metrics,
            counters,
            liveness: Liveness::default(),
            cluster_name: cluster_name.to_string(),
            own_writes: OwnWrites::default(),
            secret_index: SecretIndex::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether version `rv` of `kind` ns/app is recorded as portvakt's own.
    fn is_own(own: &OwnWrites, kind: &str, rv: &str) -> bool {
        OwnWrites::echo(kind, &meta(rv)).is_some_and(|e| own.recorded(&e))
    }

    fn meta(rv: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("app".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_echo_of_an_earlier_write_in_the_same_pass_is_own() {
        let own = OwnWrites::default();
        own.record("Secret", &meta("10"));
        own.record("Secret", &meta("11"));
        // The echo of "10" arrives after "11" was written.
        assert!(is_own(&own, "Secret", "10"));
        assert!(is_own(&own, "Secret", "11"));
        // Someone else's version, or another kind's object of the same name, is not.
        assert!(!is_own(&own, "Secret", "12"));
        assert!(!is_own(&own, "MaskinportenClient", "11"));
        // Behind unless it is the latest write.
        assert!(own.is_behind("Secret", &meta("10")));
        assert!(!own.is_behind("Secret", &meta("11")));
    }

    #[tokio::test]
    async fn an_echo_that_arrives_before_the_answer_waits_for_it() {
        let own = std::sync::Arc::new(OwnWrites::default());
        let guard = own.begin("Secret", "ns", "app");
        let check = {
            let own = own.clone();
            tokio::spawn(async move {
                let echo = OwnWrites::echo("Secret", &meta("7"));
                own.is_own_settled(echo).await
            })
        };
        tokio::task::yield_now().await;
        assert!(
            !check.is_finished(),
            "it waits while the write is in flight"
        );
        own.record("Secret", &meta("7"));
        drop(guard);
        assert!(
            check.await.unwrap(),
            "the echo of the answered write is own"
        );
        // Nothing in flight: answered at once.
        assert!(
            !own.is_own_settled(OwnWrites::echo("Secret", &meta("8")))
                .await
        );
    }

    #[test]
    fn only_the_last_few_versions_are_remembered() {
        let own = OwnWrites::default();
        for rv in 1..=OWN_VERSIONS + 1 {
            own.record("Secret", &meta(&rv.to_string()));
        }
        assert!(!is_own(&own, "Secret", "1"));
        assert!(is_own(&own, "Secret", "2"));
        own.forget("Secret", "ns", "app");
        assert!(!is_own(&own, "Secret", "2"));
    }
}
