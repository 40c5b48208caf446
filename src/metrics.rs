//! The operator's Prometheus metrics: what is measured, under which names, and how `/metrics` is
//! encoded (Prometheus text format 0.0.4, through the `prometheus-client` crate).
//!
//! Every kind is measured in one place: the shared pass flow ([`crate::controller::pass`]) reports
//! each pass, each event and each deletion here; a kind only reports its credential's expiry
//! ([`crate::controller::Pass::report_credential_expiry`]).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `controller_runtime_reconcile_total` | counter | controller, result | passes, by result: `success`, `error`, `requeue_after` (a pass that waits, e.g. for a create to settle) |
//! | `controller_runtime_reconcile_errors_total` | counter | controller | failed passes (not waits) |
//! | `controller_runtime_reconcile_time_seconds` | histogram | controller | pass duration (controller-runtime's buckets) |
//! | `controller_runtime_active_workers` | gauge | controller | passes running now |
//! | `controller_runtime_max_concurrent_reconciles` | gauge | controller | `--concurrency` |
//! | `portvakt_reconcile_failures_total` | counter | kind, error | failed passes by [`crate::controller::Error::metric_label`] (`waiting` for waits) |
//! | `portvakt_resources` | gauge | kind, ready | resources by `Ready` for their generation: `true`, `false`, `unknown` |
//! | `portvakt_credential_expiry_timestamp_seconds` | gauge | kind, namespace, name | when the credential the resource's app uses expires at the provider |
//! | `portvakt_admin_certificate_expiry_timestamp_seconds` | gauge | | when the admin certificate (the x5c leaf) expires; absent in kid mode |
//! | `portvakt_provider_requests_total` | counter | provider, method, route, status | outbound calls (route: the path with IDs as `:id`); status `2xx`…`5xx`, or `error` without an answer |
//! | `portvakt_provider_request_duration_seconds` | histogram | provider, method, route | outbound call latency |
//! | `portvakt_provider_up` | gauge | provider | 1 while the provider's last call got an answer below 500 |
//! | `portvakt_periodic_checks_total` | counter | provider, result | the provider's periodic drift checks: `ok`, or the failure's [`crate::controller::Error::metric_label`] |
//! | `leader_election_master_status` | gauge | name | 1 while this replica holds the Lease `name` (client-go's name) |
//! | `portvakt_unhandled_resources` | gauge | kind | resources of kinds no enabled controller handles (left alone), counted at start |
//! | `portvakt_*_total` (reconciles, keys_generated, secret_writes, …) | counter | | the [`Counters`] the benchmark reads |
//! | `portvakt_urgent_keys_generated_total`, `portvakt_urgent_key_generation_cpu_seconds_total`, `portvakt_idle_keys_generated_total` | counter | | keys a pass waited for (first keys, asked-for rotations) and their CPU time, and the deferred next keys made on idle CPU ([`KeyGenStats`]) |
//!
//! digdirator's and azurerator's own counters are kept under exactly their names, so dashboards and
//! alerts keep working after a switch: `idporten_client_*_count`, `maskinporten_client_*_count`,
//! `maskinporten_scope_*_count`, `maskinporten_scope_consumer_*_count` and `azureadapp_*_count`
//! (table [`LEGACY`]), labelled `namespace` and pre-initialised to 0 for every namespace that has
//! resources, and the gauges `idporten_client_total`, `maskinporten_client_total`,
//! `azureadapp_total`. `prometheus-client` appends `_total` to every counter, so these are encoded
//! here, as the Go client writes them (`# TYPE idporten_client_created_count counter`). Their
//! `created`, `updated` and `rotated` follow the events a pass publishes (`CreatedInDigDir`, …,
//! [`EVENT_COUNTERS`]); `processed`, `failed_processing`, `failed_invalid_config` and `deleted`
//! follow the pass's outcome; the scope counters follow [`Metrics::scope_changes`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::controller::context::Counters;
use crate::controller::digdir_kinds::DigdirProvider;
use crate::controller::keygen::KeyGenerator;
use crate::controller::leader::WriteGate;
use crate::controller::{Error, Kind, KindStatus};
use crate::core::digdir::scopes::{ScopeAction, ScopeChange};
use crate::digdir::CallHooks;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`.
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Buckets of `portvakt_provider_request_duration_seconds`.
const CALL_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One kind's counters of the operator it replaces.
pub struct LegacyKind {
    /// The kind (`IDPortenClient`).
    pub kind: &'static str,
    /// The counters' prefix: `{prefix}_{outcome}_count`.
    pub prefix: &'static str,
    /// The outcomes it had counters for.
    pub outcomes: &'static [&'static str],
    /// Other counter families of the kind (full names).
    pub extra: &'static [&'static str],
    /// The gauge of how many resources of the kind exist.
    pub total: &'static str,
    /// The operator whose names these are.
    pub operator: &'static str,
}

/// digdirator's (digdirator.md §6.3) and azurerator's (azurerator.md §6.5) counters.
/// `maskinporten_client_failed_invalid_config_count` is left out, as digdirator never registered it.
pub const LEGACY: &[LegacyKind] = &[
    LegacyKind {
        kind: "IDPortenClient",
        prefix: "idporten_client",
        outcomes: &[
            "created",
            "updated",
            "rotated",
            "processed",
            "failed_processing",
            "failed_invalid_config",
            "deleted",
        ],
        extra: &[],
        total: "idporten_client_total",
        operator: "digdirator",
    },
    LegacyKind {
        kind: "MaskinportenClient",
        prefix: "maskinporten_client",
        outcomes: &[
            "created",
            "updated",
            "rotated",
            "processed",
            "failed_processing",
            "deleted",
        ],
        extra: &[
            SCOPE_CREATED,
            SCOPE_UPDATED,
            SCOPE_DELETED,
            SCOPE_REACTIVATED,
            SCOPE_CONSUMER_CREATED,
            SCOPE_CONSUMER_UPDATED,
            SCOPE_CONSUMER_DELETED,
        ],
        total: "maskinporten_client_total",
        operator: "digdirator",
    },
    LegacyKind {
        kind: "AzureAdApplication",
        prefix: "azureadapp",
        outcomes: &[
            "created",
            "updated",
            "rotated",
            "processed",
            "failed_processing",
            "deleted",
            "skipped",
        ],
        extra: &[],
        total: "azureadapp_total",
        operator: "azurerator",
    },
];

const SCOPE_CREATED: &str = "maskinporten_scope_created_count";
const SCOPE_UPDATED: &str = "maskinporten_scope_updated_count";
const SCOPE_DELETED: &str = "maskinporten_scope_deleted_count";
const SCOPE_REACTIVATED: &str = "maskinporten_scope_reactivated_count";
const SCOPE_CONSUMER_CREATED: &str = "maskinporten_scope_consumer_created_count";
const SCOPE_CONSUMER_UPDATED: &str = "maskinporten_scope_consumer_updated_count";
const SCOPE_CONSUMER_DELETED: &str = "maskinporten_scope_consumer_deleted_count";

/// Event reasons that count a provider action (digdirator's and azurerator's reasons): the
/// outcome counted for the kind whose pass published it.
pub const EVENT_COUNTERS: &[(&str, &str)] = &[
    ("CreatedInDigDir", "created"),
    ("UpdatedInDigDir", "updated"),
    ("RotatedInDigDir", "rotated"),
    ("CreatedInAzure", "created"),
    ("UpdatedInAzure", "updated"),
    ("RotatedInAzure", "rotated"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: &'static str,
    method: String,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    provider: &'static str,
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    provider: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    kind: &'static str,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindReadyLabels {
    kind: &'static str,
    ready: &'static str,
}

/// How a pass ended, for the metrics.
#[derive(Clone, Copy, Debug)]
pub enum PassOutcome<'a> {
    /// Done; `deleted`: the resource's deletion was completed (cleanup done, finalizer removed).
    Success { deleted: bool },
    /// Failed (or waits: [`Error::Wait`]).
    Failed(&'a Error),
}

/// A resource as the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceState {
    pub namespace: String,
    /// `true`, `false` or `unknown` (no `Ready` for the current generation).
    pub ready: &'static str,
}

/// What the metrics read from one kind's cache at scrape time.
#[derive(Clone, Debug, Default)]
pub struct KindSnapshot {
    /// Whether the kind's cache has been filled (its first list is done).
    pub synced: bool,
    pub resources: Vec<ResourceState>,
}

type SnapshotFn = Box<dyn Fn() -> KindSnapshot + Send + Sync>;

/// What is read at scrape time: the kinds' caches, the legacy counters, the admin certificate.
#[derive(Default)]
struct ScrapeState {
    kinds: Mutex<Vec<(&'static str, SnapshotFn)>>,
    /// Legacy counter family → namespace → value.
    legacy: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    admin_certificate_expiry: Mutex<Option<i64>>,
    /// Resources of kinds no enabled controller handles, by kind (counted at start).
    unhandled: Mutex<Vec<(&'static str, u64)>>,
    /// Provider-specific metrics, read at scrape time ([`Metrics::add_collector`]).
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
}

impl std::fmt::Debug for ScrapeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ScrapeState {
    fn snapshots(&self) -> Vec<(&'static str, KindSnapshot)> {
        lock(&self.kinds).iter().map(|(k, f)| (*k, f())).collect()
    }
}

/// Scrape-time metrics: resources by kind and Ready, the admin certificate's expiry, and the
/// operator's [`Counters`].
#[derive(Debug)]
struct ScrapeCollector {
    state: Arc<ScrapeState>,
    counters: Arc<Counters>,
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_ready: BTreeMap<(&'static str, &'static str), i64> = BTreeMap::new();
        for (kind, snap) in self.state.snapshots() {
            for r in ["true", "false", "unknown"] {
                by_ready.entry((kind, r)).or_default();
            }
            for r in &snap.resources {
                *by_ready.entry((kind, r.ready)).or_default() += 1;
            }
        }
        let mut m = encoder.encode_descriptor(
            "portvakt_resources",
            "Resources by kind and by Ready for their current generation (true, false, unknown)",
            None,
            MetricType::Gauge,
        )?;
        for ((kind, ready), n) in by_ready {
            ConstGauge::new(n).encode(m.encode_family(&KindReadyLabels { kind, ready })?)?;
        }
        let unhandled = lock(&self.state.unhandled).clone();
        if !unhandled.is_empty() {
            let mut m = encoder.encode_descriptor(
                "portvakt_unhandled_resources",
                "Resources of kinds no enabled controller handles (left alone), counted at start",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in unhandled {
                ConstGauge::new(n as i64).encode(m.encode_family(&KindLabels { kind })?)?;
            }
        }
        if let Some(at) = *lock(&self.state.admin_certificate_expiry) {
            let m = encoder.encode_descriptor(
                "portvakt_admin_certificate_expiry_timestamp_seconds",
                "When the admin certificate (the leaf of the x5c chain) expires, as Unix seconds",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(at).encode(m)?;
        }
        let c = &self.counters;
        let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 15] = [
            ("portvakt_reconciles", "Passes started", &c.reconciles),
            ("portvakt_passes_done", "Passes finished", &c.passes_done),
            (
                "portvakt_workload_scans",
                "Workload scans",
                &c.workload_scans,
            ),
            (
                "portvakt_keys_generated",
                "Keys generated",
                &c.keys_generated,
            ),
            ("portvakt_secret_writes", "Secret writes", &c.secret_writes),
            (
                "portvakt_secret_deletes",
                "Secret deletions",
                &c.secret_deletes,
            ),
            ("portvakt_status_writes", "Status writes", &c.status_writes),
            ("portvakt_jwks_reads", "JWKS reads at Digdir", &c.jwks_reads),
            (
                "portvakt_jwks_posts",
                "JWKS registrations at Digdir",
                &c.jwks_posts,
            ),
            (
                "portvakt_client_creates",
                "Clients created at Digdir",
                &c.client_creates,
            ),
            (
                "portvakt_client_updates",
                "Clients updated at Digdir",
                &c.client_updates,
            ),
            (
                "portvakt_client_deletes",
                "Clients deleted at Digdir",
                &c.client_deletes,
            ),
            (
                "portvakt_drift_found",
                "Drift found by the steady-state pass",
                &c.drift_found,
            ),
            (
                "portvakt_drift_repaired",
                "Drift repaired",
                &c.drift_repaired,
            ),
            (
                "portvakt_periodic_passes",
                "Periodic steady-state passes completed (one list for all resources)",
                &c.drift_passes,
            ),
        ];
        for (name, help, value) in counters {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(Counters::get(value)).encode(m)?;
        }
        let m = encoder.encode_descriptor(
            "portvakt_key_generation_cpu",
            "CPU time spent generating keys",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(Counters::get(&c.keygen_cpu_micros) as f64 / 1e6).encode(m)?;
        Ok(())
    }
}

/// The operator's metrics (one per process, in [`crate::controller::Shared`]).
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    active_workers: Family<ControllerLabels, Gauge>,
    max_concurrent: Family<ControllerLabels, Gauge>,
    failures: Family<FailureLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    call_time: Family<RouteLabels, Histogram, fn() -> Histogram>,
    provider_up: Family<ProviderLabels, Gauge>,
    periodic_checks: Family<CheckLabels, Counter>,
    credential_expiry: Family<ResourceLabels, Gauge>,
    leader: Family<LeaseLabels, Gauge>,
    state: Arc<ScrapeState>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The `controller` label of a kind: its name in lower case, as controller-runtime names a
/// controller after the kind it is `For`.
pub fn controller_label(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

impl Metrics {
    /// The registry with every family, reading `counters` at scrape time.
    pub fn new(counters: Arc<Counters>) -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(RECONCILE_BUCKETS));
        registry.register_with_unit(
            "controller_runtime_reconcile_time",
            "Length of time per reconciliation per controller",
            Unit::Seconds,
            reconcile_time.clone(),
        );
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        let max_concurrent = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "portvakt_reconcile_failures",
            "Failed passes by kind and error (waiting: a pass that waits for something)",
            failures.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "portvakt_provider_requests",
            "Outbound calls to the providers by route and status class (error: no answer)",
            calls.clone(),
        );
        let call_time: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS));
        registry.register_with_unit(
            "portvakt_provider_request_duration",
            "Latency of outbound calls to the providers",
            Unit::Seconds,
            call_time.clone(),
        );
        let provider_up = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "portvakt_provider_up",
            "1 while the provider's last call got an answer below 500",
            provider_up.clone(),
        );
        let periodic_checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "portvakt_periodic_checks",
            "The providers' periodic drift checks by result (ok, or why one failed)",
            periodic_checks.clone(),
        );
        let credential_expiry = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "portvakt_credential_expiry_timestamp_seconds",
            "When the credential a resource's app uses expires at the provider, as Unix seconds",
            credential_expiry.clone(),
        );
        let leader = Family::<LeaseLabels, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let state = Arc::new(ScrapeState::default());
        registry.register_collector(Box::new(ScrapeCollector {
            state: state.clone(),
            counters,
        }));
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            max_concurrent,
            failures,
            calls,
            call_time,
            provider_up,
            periodic_checks,
            credential_expiry,
            leader,
            state,
        }
    }

    /// `/metrics`: every family in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        use prometheus_client::encoding::prometheus_text::encode;
        let mut out = String::new();
        let mut extra = Registry::default();
        for c in lock(&self.state.collectors).iter() {
            extra.register_collector(Box::new(SharedCollector(c.clone())));
        }
        if let Err(e) = encode(&mut out, &self.registry).and_then(|()| encode(&mut out, &extra)) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        self.render_legacy(&mut out);
        out
    }

    /// Adds metrics read at scrape time (a provider's own).
    pub fn add_collector(&self, collector: Arc<dyn Collector>) {
        lock(&self.state.collectors).push(collector);
    }

    /// The legacy counters, as the Go client writes counters (no `_total` appended).
    fn render_legacy(&self, out: &mut String) {
        let snapshots = self.state.snapshots();
        let namespaces: BTreeSet<String> = snapshots
            .iter()
            .flat_map(|(_, s)| s.resources.iter().map(|r| r.namespace.clone()))
            .collect();
        let values = lock(&self.state.legacy);
        for (kind, snap) in &snapshots {
            let Some(legacy) = LEGACY.iter().find(|l| l.kind == *kind) else {
                continue;
            };
            let _ = writeln!(
                out,
                "# HELP {total} Number of {kind} resources\n# TYPE {total} gauge\n{total} {}",
                snap.resources.len(),
                total = legacy.total,
            );
            let families = legacy
                .outcomes
                .iter()
                .map(|o| format!("{}_{o}_count", legacy.prefix))
                .chain(legacy.extra.iter().map(|s| s.to_string()));
            for family in families {
                let counted = values.get(family.as_str());
                let mut series: BTreeMap<&str, u64> =
                    namespaces.iter().map(|n| (n.as_str(), 0)).collect();
                for (ns, v) in counted.into_iter().flatten() {
                    series.insert(ns, *v);
                }
                let what = family
                    .strip_prefix(legacy.prefix)
                    .unwrap_or(&family)
                    .trim_start_matches('_')
                    .trim_end_matches("_count")
                    .replace('_', " ");
                let _ = writeln!(
                    out,
                    "# HELP {family} {kind} resources by namespace: {what} ({}'s counter)\n# TYPE {family} counter",
                    legacy.operator,
                );
                for (ns, v) in series {
                    let _ = writeln!(out, "{family}{{namespace=\"{}\"}} {v}", escape_label(ns));
                }
            }
        }
    }

    /// Counts `outcome` in the legacy family of `kind` for `namespace` (ignored for a kind or
    /// outcome the replaced operator had no counter for).
    fn count_legacy(&self, kind: &str, outcome: &str, namespace: &str) {
        let Some(legacy) = LEGACY.iter().find(|l| l.kind == kind) else {
            return;
        };
        let Some(o) = legacy.outcomes.iter().find(|o| **o == outcome) else {
            return;
        };
        let family: &'static str = legacy_family(legacy.prefix, o);
        self.count_family(family, namespace);
    }

    fn count_family(&self, family: &'static str, namespace: &str) {
        let mut values = lock(&self.state.legacy);
        *values
            .entry(family)
            .or_default()
            .entry(namespace.to_string())
            .or_default() += 1;
    }

    /// A kind's controller started with `concurrency` workers; its cache is read at scrape time
    /// (`portvakt_resources`, the legacy gauges and pre-initialised namespaces, `/readyz`).
    pub fn track_kind<K: Kind>(&self, concurrency: u16, store: Store<K>) {
        let kind = crate::controller::pass::kind_name::<K>();
        self.max_concurrent
            .get_or_create(&ControllerLabels {
                controller: controller_label(kind),
            })
            .set(i64::from(concurrency));
        let snapshot: SnapshotFn = Box::new(move || KindSnapshot {
            synced: store.wait_until_ready().now_or_never().is_some(),
            resources: store
                .state()
                .iter()
                .filter_map(|o| {
                    let generation = o.meta().generation;
                    let ready = match o.status().and_then(|s| {
                        crate::conditions::find(s.conditions(), crate::conditions::READY)
                    }) {
                        Some(c) if c.observed_generation == generation && c.status == "True" => {
                            "true"
                        }
                        Some(c) if c.observed_generation == generation && c.status == "False" => {
                            "false"
                        }
                        _ => "unknown",
                    };
                    Some(ResourceState {
                        namespace: o.meta().namespace.clone()?,
                        ready,
                    })
                })
                .collect(),
        });
        let mut kinds = lock(&self.state.kinds);
        kinds.retain(|(k, _)| *k != kind);
        kinds.push((kind, snapshot));
    }

    /// What the kinds' caches hold now.
    pub fn kinds(&self) -> Vec<(&'static str, KindSnapshot)> {
        self.state.snapshots()
    }

    /// A pass started: counted in `controller_runtime_active_workers` until the guard is dropped.
    pub fn pass_started(self: &Arc<Self>, kind: &'static str) -> ActiveWorker {
        let labels = ControllerLabels {
            controller: controller_label(kind),
        };
        self.active_workers.get_or_create(&labels).inc();
        ActiveWorker {
            metrics: self.clone(),
            labels,
        }
    }

    /// A pass of `kind` in `namespace` ended after `elapsed`.
    pub fn pass_finished(
        &self,
        kind: &'static str,
        namespace: &str,
        outcome: PassOutcome<'_>,
        elapsed: Duration,
    ) {
        let controller = controller_label(kind);
        let result = match outcome {
            PassOutcome::Success { .. } => "success",
            PassOutcome::Failed(Error::Wait { .. }) => "requeue_after",
            PassOutcome::Failed(_) => "error",
        };
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.clone(),
                result,
            })
            .inc();
        let labels = ControllerLabels { controller };
        self.reconcile_time
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        match outcome {
            PassOutcome::Success { deleted: false } => {
                self.count_legacy(kind, "processed", namespace)
            }
            PassOutcome::Success { deleted: true } => self.count_legacy(kind, "deleted", namespace),
            PassOutcome::Failed(e) => {
                self.failures
                    .get_or_create(&FailureLabels {
                        kind,
                        error: e.metric_label(),
                    })
                    .inc();
                if matches!(e, Error::Wait { .. }) {
                    return;
                }
                self.reconcile_errors.get_or_create(&labels).inc();
                self.count_legacy(kind, "failed_processing", namespace);
                if matches!(e, Error::InvalidSpec { .. } | Error::Configuration { .. }) {
                    self.count_legacy(kind, "failed_invalid_config", namespace);
                }
            }
        }
    }

    /// An event a pass of `kind` published (see [`EVENT_COUNTERS`]).
    pub fn event_published(&self, kind: &str, namespace: &str, reason: &str) {
        if let Some((_, outcome)) = EVENT_COUNTERS.iter().find(|(r, _)| *r == reason) {
            self.count_legacy(kind, outcome, namespace);
        }
    }

    /// Exposed-scope changes made at Digdir (`maskinporten_scope_*_count`,
    /// `maskinporten_scope_consumer_*_count`), counted in the namespace of the resource that asked.
    pub fn scope_changes<'a>(&self, changes: impl IntoIterator<Item = &'a ScopeChange>) {
        for c in changes {
            let family = match c.action {
                ScopeAction::Create { .. } => SCOPE_CREATED,
                ScopeAction::Update { .. } => SCOPE_UPDATED,
                ScopeAction::Reactivate { .. } => SCOPE_REACTIVATED,
                ScopeAction::Deactivate => SCOPE_DELETED,
                ScopeAction::Grant { .. } => SCOPE_CONSUMER_CREATED,
                ScopeAction::Regrant { .. } => SCOPE_CONSUMER_UPDATED,
                ScopeAction::Revoke { .. } => SCOPE_CONSUMER_DELETED,
            };
            self.count_family(family, &c.resource.namespace);
        }
    }

    /// When the credential the resource's app uses expires (`None`: unknown, the series is removed).
    pub fn set_credential_expiry(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        expires_at: Option<Timestamp>,
    ) {
        let labels = ResourceLabels {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        match expires_at {
            Some(at) => {
                self.credential_expiry
                    .get_or_create(&labels)
                    .set(at.as_second());
            }
            None => {
                self.credential_expiry.remove(&labels);
            }
        }
    }

    /// A resource is gone: its series are removed.
    pub fn forget_resource(&self, kind: &'static str, namespace: &str, name: &str) {
        self.set_credential_expiry(kind, namespace, name, None);
    }

    /// This replica stopped reconciling (it no longer leads): its per-resource series would only
    /// go stale, so they are removed.
    pub fn forget_resources(&self) {
        self.credential_expiry.clear();
    }

    /// How many resources there are of each kind no enabled controller handles.
    pub fn set_unhandled(&self, counts: &[(&'static str, u64)]) {
        *lock(&self.state.unhandled) = counts.to_vec();
    }

    /// When the admin certificate expires (`None`: kid mode, the series is absent).
    pub fn set_admin_certificate_expiry(&self, expires_at: Option<Timestamp>) {
        *lock(&self.state.admin_certificate_expiry) = expires_at.map(|t| t.as_second());
    }

    /// Whether this replica holds the leader Lease `name`.
    pub fn set_leader(&self, name: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels {
                name: name.to_string(),
            })
            .set(i64::from(leading));
    }

    /// A periodic drift check of `provider` ended: `ok`, or the failure's metric label.
    pub fn periodic_check(&self, provider: &'static str, result: &'static str) {
        self.periodic_checks
            .get_or_create(&CheckLabels { provider, result })
            .inc();
    }

    /// An outbound call to `provider`: its route (path with IDs as `:id`), the answer's status
    /// (`None`: no answer) and how long it took.
    pub fn provider_call(
        &self,
        provider: &'static str,
        method: &str,
        route: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let class = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        self.calls
            .get_or_create(&CallLabels {
                provider,
                method: method.to_string(),
                route: route.to_string(),
                status: class,
            })
            .inc();
        self.call_time
            .get_or_create(&RouteLabels {
                provider,
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        self.provider_up
            .get_or_create(&ProviderLabels { provider })
            .set(i64::from(status.is_some_and(|s| s < 500)));
    }
}

#[derive(Debug)]
struct SharedCollector(Arc<dyn Collector>);

impl Collector for SharedCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The Digdir provider's own metrics: next keys deferred (the benchmark waits for 0), and its
/// client's call counts.
pub struct DigdirStats(pub Arc<DigdirProvider>);

impl std::fmt::Debug for DigdirStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigdirStats")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

impl Collector for DigdirStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = encoder.encode_descriptor(
            "portvakt_next_keys_deferred",
            "Resources whose next key is not made yet (made after --next-key-delay)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.deferred_next_keys() as i64).encode(m)?;
        let s = self.0.client.stats();
        let mut m = encoder.encode_descriptor(
            "portvakt_digdir_requests",
            "Requests sent to Digdir's self-service API, every attempt",
            None,
            MetricType::Counter,
        )?;
        for (method, n) in [
            ("GET", s.gets),
            ("POST", s.posts),
            ("PUT", s.puts),
            ("DELETE", s.deletes),
        ] {
            ConstCounter::new(n).encode(m.encode_family(&MethodLabels { method })?)?;
        }
        for (name, help, n) in [
            (
                "portvakt_digdir_retries",
                "Retries of failed Digdir calls",
                s.retries,
            ),
            (
                "portvakt_digdir_token_grants",
                "Admin grants posted to Maskinporten",
                s.token_grants,
            ),
        ] {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(n).encode(m)?;
        }
        Ok(())
    }
}

/// The key generator's figures by priority: the keys someone waited for (first keys, asked-for
/// rotations), which time to Ready is bound by, apart from the deferred next keys made on idle CPU.
pub struct KeyGenStats(pub KeyGenerator);

impl std::fmt::Debug for KeyGenStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyGenStats")
    }
}

impl Collector for KeyGenStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let k = self.0.stats();
        let m = encoder.encode_descriptor(
            "portvakt_urgent_keys_generated",
            "Keys generated that a pass waited for (first keys, asked-for rotations)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(k.urgent_keys).encode(m)?;
        let m = encoder.encode_descriptor(
            "portvakt_urgent_key_generation_cpu",
            "CPU time spent generating keys a pass waited for",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(k.urgent_cpu_micros as f64 / 1e6).encode(m)?;
        let m = encoder.encode_descriptor(
            "portvakt_idle_keys_generated",
            "Deferred next keys generated in the background, on idle CPU",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(k.idle_keys).encode(m)?;
        Ok(())
    }
}

/// The [`CallHooks`] of a provider's client: its calls measured, its writes refused while the
/// [`WriteGate`] is closed.
pub struct ProviderHooks {
    pub provider: &'static str,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<WriteGate>,
}

impl CallHooks for ProviderHooks {
    fn may_write(&self) -> bool {
        self.gate.may_write()
    }

    fn call_done(&self, method: &str, path: &str, status: Option<u16>, elapsed: Duration) {
        self.metrics
            .provider_call(self.provider, method, &route_of(path), status, elapsed);
    }
}

/// Counts a running pass in `controller_runtime_active_workers` while alive.
pub struct ActiveWorker {
    metrics: Arc<Metrics>,
    labels: ControllerLabels,
}

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        self.metrics
            .active_workers
            .get_or_create(&self.labels)
            .dec();
    }
}

/// `{prefix}_{outcome}_count` as a `&'static str` (the table is static; each name is made once).
fn legacy_family(prefix: &'static str, outcome: &'static str) -> &'static str {
    static NAMES: Mutex<BTreeMap<(&str, &str), &'static str>> = Mutex::new(BTreeMap::new());
    let mut names = lock(&NAMES);
    names
        .entry((prefix, outcome))
        .or_insert_with(|| Box::leak(format!("{prefix}_{outcome}_count").into_boxed_str()))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The route of a request path: segments with a digit in them (client IDs, organisation
/// numbers) become `:id`, so the label's values stay few.
pub fn route_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            // Ids: organisation numbers (digits), GUIDs (digits and dashes); an alternate key
            // (`applications(uniqueName='…')`) keeps its collection. Names such as
            // `oauth2PermissionGrants` have digits too and stay.
            let digits = seg.bytes().any(|b| b.is_ascii_digit());
            if let Some(i) = seg.find('(') {
                format!("{}(:key)", &seg[..i])
            } else if digits && (seg.bytes().all(|b| b.is_ascii_digit()) || seg.contains('-')) {
                ":id".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// When the leaf certificate of an `x5c` chain (base64 DER, leaf first) expires.
pub fn x5c_leaf_not_after(x5c: &[String]) -> Result<Timestamp, String> {
    let der = crate::keys::x5c_leaf_der(x5c)
        .ok_or_else(|| "the certificate chain is empty or not base64".to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("the leaf certificate cannot be read: {e}"))?;
    Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|e| format!("the leaf certificate's notAfter is out of range: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids() {
        assert_eq!(
            route_of("/clients/5f0c1f3e-2a4b-4c1d-9e8f-0a1b2c3d4e5f/jwks"),
            "/clients/:id/jwks"
        );
        assert_eq!(route_of("/scopes/access/889640782"), "/scopes/access/:id");
        assert_eq!(route_of("/scopes/access/all"), "/scopes/access/all");
        assert_eq!(route_of("/clients"), "/clients");
        assert_eq!(
            route_of("/applications/4b4e7c7e-e580-4e05-962c-d585ba090759/addPassword"),
            "/applications/:id/addPassword"
        );
        assert_eq!(
            route_of("/oauth2PermissionGrants"),
            "/oauth2PermissionGrants"
        );
        assert_eq!(
            route_of("/applications(uniqueName='portvakt-8650326bd2')"),
            "/applications(:key)"
        );
    }

    /// The names `portvakt bench` reads: periodic passes, and the keys someone waited for apart.
    #[tokio::test]
    async fn key_and_periodic_pass_figures_under_the_benchmark_s_names() {
        use crate::controller::keygen::Priority;
        let counters = Arc::new(Counters::default());
        let keygen = KeyGenerator::new(1);
        let m = Metrics::new(counters.clone());
        m.add_collector(Arc::new(KeyGenStats(keygen.clone())));
        Counters::inc(&counters.drift_passes);
        keygen
            .generate(Priority::Urgent, &counters)
            .await
            .expect("key");
        let text = m.render();
        for line in [
            "portvakt_periodic_passes_total 1",
            "portvakt_urgent_keys_generated_total 1",
            "portvakt_idle_keys_generated_total 0",
            "portvakt_keys_generated_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let cpu = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        let urgent = cpu("portvakt_urgent_key_generation_cpu_seconds_total");
        assert!(urgent > 0.0);
        assert_eq!(urgent, cpu("portvakt_key_generation_cpu_seconds_total"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn legacy_counters_only_for_outcomes_the_old_operator_had() {
        let m = Metrics::new(Arc::default());
        m.count_legacy("MaskinportenClient", "failed_invalid_config", "ns");
        m.count_legacy("IDPortenClient", "failed_invalid_config", "ns");
        m.count_legacy("Widget", "created", "ns");
        let values = lock(&m.state.legacy);
        assert_eq!(values.len(), 1, "{values:?}");
        assert_eq!(
            values["idporten_client_failed_invalid_config_count"]["ns"],
            1
        );
    }
}
