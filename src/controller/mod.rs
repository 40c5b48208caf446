//! kube-runtime wiring of the IDPortenClient and MaskinportenClient controllers.
//!
//! A reconcile is thin: load the observation (the resource, its Secrets, the registration at Digdir
//! when needed), ask the pure core ([`crate::core`]) what to do, apply that, write status. See
//! [`digdir`] for the pass itself.
//!
//! ```text
//! let ctx = Context::new(kube_client, digdir_client, core_config, clock);
//! controller::run(ctx, RunOptions::default()).await;          // until cancelled
//! let report = controller::observe(&ctx, &RunOptions::default()).await?;  // --observe: no writes
//! ```

pub mod digdir;
pub mod drift;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::core::{self, Kind};
use crate::crd::{IDPortenClient, MaskinportenClient};
use crate::digdir::DigdirClient;

pub use digdir::{DigdirResource, Error};

/// Counters of what the controllers did (for tests, the benchmark and `--observe`).
#[derive(Debug, Default)]
pub struct Counters {
    pub reconciles: AtomicU64,
    pub failures: AtomicU64,
    pub workload_scans: AtomicU64,
    pub keys_generated: AtomicU64,
    /// CPU time spent generating keys, in microseconds (thread CPU time of each `generate_key`;
    /// wall time where the kernel does not report it).
    pub keygen_cpu_micros: AtomicU64,
    pub secret_writes: AtomicU64,
    pub secret_deletes: AtomicU64,
    pub jwks_reads: AtomicU64,
    pub jwks_posts: AtomicU64,
    pub client_creates: AtomicU64,
    pub client_updates: AtomicU64,
    pub client_deletes: AtomicU64,
    /// Periodic steady-state passes completed (see [`drift`]).
    pub drift_passes: AtomicU64,
    /// Drift found at Digdir (each triggers a repairing reconcile).
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

/// Everything a reconcile needs.
pub struct Context {
    pub client: kube::Client,
    pub digdir: DigdirClient,
    pub config: core::Config,
    pub clock: Clock,
    pub recorder: Recorder,
    pub counters: Counters,
    /// A full pass (Digdir read) happens at least this often even for an unchanged resource.
    pub full_sync_every: Duration,
    /// Failures per object, for exponential backoff.
    backoff: Mutex<HashMap<String, u32>>,
    /// Maskinporten: scopes the organisation may consume (cached 10 minutes, as digdirator does).
    pub(crate) scope_access: tokio::sync::Mutex<Option<digdir::ScopeAccess>>,
    /// What the periodic pass found and when it read each JWKS.
    pub(crate) drift: Mutex<drift::DriftState>,
    /// Which client belongs to which resource, from one shared list (see [`registry`]).
    pub registrations: registry::RegistrationIndex,
    /// Key generations running at once (CPU-bound: one per core; more only adds threads and
    /// allocator arenas).
    pub(crate) keygen_slots: tokio::sync::Semaphore,
    /// Resources whose next key is deferred (see [`core::keyplan`]), by object key.
    deferred_next: Mutex<HashSet<String>>,
    /// The resourceVersion of portvakt's own last write of each object (see [`OwnWrites`]).
    pub(crate) own_writes: OwnWrites,
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

    /// Whether this version of the object is portvakt's own last write of it.
    pub(crate) fn is_own(&self, kind: &str, meta: &ObjectMeta) -> bool {
        let (Some(key), Some(rv)) = (Self::key(kind, meta), meta.resource_version.as_ref()) else {
            return false;
        };
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key) == Some(rv)
    }
}

/// The parts of a resource whose change calls for a reconcile: generation (spec), annotations
/// (resync, rotate, preserve), labels, finalizers and deletion. Status alone does not: only
/// portvakt writes it.
fn trigger_hash<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let m = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.generation.hash(&mut h);
    m.annotations.hash(&mut h);
    m.labels.hash(&mut h);
    m.finalizers.hash(&mut h);
    m.deletion_timestamp.as_ref().map(|t| t.0).hash(&mut h);
    Some(h.finish())
}

impl Context {
    pub fn new(
        client: kube::Client,
        digdir: DigdirClient,
        config: core::Config,
        clock: Clock,
    ) -> Arc<Self> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "portvakt".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Arc::new(Self {
            client,
            digdir,
            config,
            clock,
            recorder,
            counters: Counters::default(),
            full_sync_every: Duration::from_secs(24 * 3600),
            backoff: Mutex::new(HashMap::new()),
            scope_access: tokio::sync::Mutex::new(None),
            drift: Mutex::new(drift::DriftState::default()),
            registrations: registry::RegistrationIndex::default(),
            keygen_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            deferred_next: Mutex::new(HashSet::new()),
            own_writes: OwnWrites::default(),
        })
    }

    /// Resources whose next key is still deferred (made in a later pass).
    pub fn deferred_next_keys(&self) -> usize {
        self.deferred_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub(crate) fn set_deferred_next(&self, key: &str, deferred: bool) {
        let mut s = self.deferred_next.lock().unwrap_or_else(|p| p.into_inner());
        if deferred {
            if !s.contains(key) {
                s.insert(key.to_string());
            }
        } else {
            s.remove(key);
        }
    }

    /// Records a failure of `key` and returns how long to wait: 1 s doubling to 5 minutes, or the
    /// server's Retry-After when longer.
    pub(crate) fn backoff(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let n = {
            let mut m = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = Duration::from_secs(1u64 << (n - 1).min(9)).min(Duration::from_secs(300));
        retry_after.map_or(exp, |r| r.max(exp))
    }

    pub(crate) fn reset_backoff(&self, key: &str) {
        let mut m = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(key);
    }
}

/// Options of [`run`] and [`observe`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub idporten: bool,
    pub maskinporten: bool,
    /// Concurrent reconciles per controller.
    pub concurrency: u16,
    /// Every resource is reconciled at least this often (no Digdir call unless something is due),
    /// and the periodic steady-state pass ([`drift`]) runs this often: one list of the registrations
    /// for all resources, compared with the desired ones, drift repaired.
    pub resync_period: Duration,
    /// Stops the controllers when cancelled.
    pub shutdown: CancellationToken,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            idporten: true,
            maskinporten: true,
            concurrency: 16,
            resync_period: Duration::from_secs(3600),
            shutdown: CancellationToken::new(),
        }
    }
}

fn error_policy<K: DigdirResource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    Counters::inc(&ctx.counters.failures);
    let key = digdir::object_key(obj.as_ref());
    let wait = ctx.backoff(&key, err.retry_after());
    tracing::warn!(kind = K::KIND.kind(), object = %key, error = %err, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// One kind's controller: its reflector store (read by the periodic pass) and the future that runs it.
fn controller_for<K: DigdirResource>(
    ctx: Arc<Context>,
    opts: &RunOptions,
) -> (
    Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<K> = Api::all(ctx.client.clone());
    let secrets: Api<PartialObjectMeta<Secret>> = Api::all(ctx.client.clone());
    let selector = format!("type={}", K::KIND.secret_type_label());
    let shutdown = opts.shutdown.clone();
    let resync = opts.resync_period;
    // The resources: every change reaches the store; a reconcile only for a change that calls for
    // one (not status alone) and that is not portvakt's own write echoed back.
    let (reader, writer) = reflector::store();
    let own = ctx.clone();
    let resources = watcher(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash::<K>, PredicateConfig::default())
        .try_filter(move |obj| {
            let own_write = own.own_writes.is_own(K::kind(&()).as_ref(), obj.meta());
            std::future::ready(!own_write)
        });
    // The owned Secrets (metadata only): a change or deletion by anyone else triggers its owner's
    // reconcile; portvakt's own writes echoed back do not. Deletions always trigger.
    let own = ctx.clone();
    let owned_secrets = watcher(secrets, watcher::Config::default().labels(&selector))
        .try_filter(move |ev| {
            let own_write = match ev {
                watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                    own.own_writes.is_own("Secret", &s.metadata)
                }
                _ => false,
            };
            std::future::ready(!own_write)
        })
        .touched_objects();
    let controller = Controller::for_stream(resources, reader)
        .owns_stream(owned_secrets)
        .with_config(ControllerConfig::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    let store = controller.store();
    let fut = controller
        .run(
            move |obj, ctx| async move { digdir::reconcile::<K>(obj, ctx, resync).await },
            error_policy::<K>,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        });
    (store, fut)
}

/// Runs the enabled controllers, and the periodic steady-state pass over them, until
/// `opts.shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, opts: RunOptions) {
    let mut handles = Vec::new();
    let mut stores = drift::Stores::default();
    if opts.idporten {
        let (store, fut) = controller_for::<IDPortenClient>(ctx.clone(), &opts);
        stores.idporten = Some(store);
        handles.push(tokio::spawn(fut));
    }
    if opts.maskinporten {
        let (store, fut) = controller_for::<MaskinportenClient>(ctx.clone(), &opts);
        stores.maskinporten = Some(store);
        handles.push(tokio::spawn(fut));
    }
    handles.push(tokio::spawn(drift::run(
        ctx.clone(),
        stores,
        opts.resync_period,
        opts.shutdown.clone(),
    )));
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!(error = %e, "controller task ended abnormally");
        }
    }
}

/// `--observe`: what the controllers would do for every resource, making no writes anywhere
/// (Kubernetes and Digdir are only read).
pub async fn observe(ctx: &Context, opts: &RunOptions) -> Result<core::observe::Report, Error> {
    let mut report = core::observe::Report::default();
    if opts.idporten {
        digdir::observe_kind::<IDPortenClient>(ctx, &mut report).await?;
    }
    if opts.maskinporten {
        digdir::observe_kind::<MaskinportenClient>(ctx, &mut report).await?;
    }
    Ok(report)
}

/// The kinds this module runs.
pub const KINDS: [Kind; 2] = [Kind::IDPorten, Kind::Maskinporten];
