//! AzureAdApplication through the seam ([`crate::controller::Kind`]): the Entra provider's shared
//! state ([`EntraProvider`]: the Graph client, the settings, caches and the reflector store) and the
//! kind's names. The pass is a pipeline ([`pipeline`]) whose steps are [`application`] (the app, its
//! service principal, permissions, pre-authorized apps, assignments, grant, owners, federated
//! credentials) and [`credentials`] (the credential sets, the Secret, revocation); [`observe`] is
//! `--observe`; [`periodic`] the steady-state comparison, the sweep for pre-authorized apps in other
//! clusters and the resync of apps that refer to one that appeared.

pub mod application;
pub mod credentials;
pub mod observe;
pub mod periodic;
pub mod pipeline;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::context::Shared;
use super::kind::{Kind, KindNames, KindStatus, Provider};
use super::pass::Pass;
use super::{Applied, Error};
use crate::core::entra::{self as ce, status as cstatus};
use crate::crd::{AzureAdApplication, AzureAdApplicationStatus};
use crate::entra::{GraphClient, Group};

/// How long a group lookup is cached (azurerator: 24 h).
const GROUP_CACHE: Duration = Duration::from_secs(24 * 3600);

/// The Entra provider: its Graph client and what every AzureAdApplication pass shares.
pub struct EntraProvider {
    pub graph: GraphClient,
    pub config: ce::Config,
    /// The operator's own app (its service principal is made an owner of every app).
    pub operator_client_id: String,
    /// How often the sweep looks for pre-authorized apps in other clusters (azurerator's
    /// `controller.sweep-interval`).
    pub sweep_interval: Duration,
    operator_sp: tokio::sync::OnceCell<String>,
    groups: Mutex<HashMap<String, (Timestamp, Option<Group>)>>,
    pub(crate) store: Mutex<Option<Store<AzureAdApplication>>>,
    pub(crate) drift: Mutex<periodic::DriftState>,
    /// Resources another instance owns (another tenant), by object key: logged once, counted.
    other_tenant: Mutex<HashSet<String>>,
    /// When each resource's last full synchronisation found nothing to change, by object key. Such
    /// a pass writes no status (so `status.synchronizationTime` stays older), yet the daily full
    /// synchronisation is done: remembered here (lost on restart, which costs one full pass).
    pub(crate) full_syncs: Mutex<HashMap<String, Timestamp>>,
    pub(crate) counters: EntraCounters,
}

/// What the Entra provider did (tests, the benchmark, `/metrics`).
#[derive(Debug, Default)]
pub struct EntraCounters {
    /// Sweeps completed.
    pub sweeps: AtomicU64,
    /// Resyncs asked for by the sweep.
    pub sweep_resyncs: AtomicU64,
    /// Resyncs asked for because a pre-authorized app appeared in this cluster.
    pub dependent_resyncs: AtomicU64,
}

impl EntraProvider {
    pub fn new(
        graph: GraphClient,
        config: ce::Config,
        operator_client_id: String,
        sweep_interval: Duration,
    ) -> Self {
        Self {
            graph,
            config,
            operator_client_id,
            sweep_interval,
            operator_sp: tokio::sync::OnceCell::new(),
            groups: Mutex::new(HashMap::new()),
            store: Mutex::new(None),
            drift: Mutex::new(periodic::DriftState::default()),
            other_tenant: Mutex::new(HashSet::new()),
            full_syncs: Mutex::new(HashMap::new()),
            counters: EntraCounters::default(),
        }
    }

    /// How many resources were left alone as another tenant's (or without a required tenant).
    pub fn other_tenant_resources(&self) -> usize {
        self.other_tenant
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn counters(&self) -> &EntraCounters {
        &self.counters
    }

    pub fn count(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// The operator's service principal (looked up once).
    pub(crate) async fn operator_sp_id(&self) -> Result<String, Error> {
        self.operator_sp
            .get_or_try_init(|| async {
                match self
                    .graph
                    .find_service_principal_by_app_id(&self.operator_client_id)
                    .await?
                {
                    Some(sp) => Ok(sp.id),
                    None => Err(Error::Configuration {
                        setting: "--entra-client-id",
                        message: format!(
                            "the operator's app {} has no service principal in the tenant; it cannot be made an owner of the apps it manages",
                            self.operator_client_id
                        ),
                    }),
                }
            })
            .await
            .cloned()
    }

    /// A group, cached for a day (azurerator's); `None` when there is no such group.
    pub(crate) async fn group(&self, id: &str, now: Timestamp) -> Result<Option<Group>, Error> {
        let cached = {
            let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            g.get(id).cloned()
        };
        if let Some((at, group)) = cached
            && now.duration_since(at).unsigned_abs() < GROUP_CACHE
        {
            return Ok(group);
        }
        let group = self.graph.get_group(id).await?;
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (now, group.clone()));
        Ok(group)
    }

    pub(crate) fn store(&self) -> Option<Store<AzureAdApplication>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Provider for EntraProvider {
    fn name(&self) -> &'static str {
        "Entra ID"
    }

    fn periodic_pass<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, ()> {
        Box::pin(periodic::run_once(self, shared))
    }

    fn background(
        self: std::sync::Arc<Self>,
        shared: std::sync::Arc<Shared>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(periodic::sweep_loop(self, shared, shutdown))
    }
}

impl KindStatus for AzureAdApplicationStatus {
    fn conditions(&self) -> &[Condition] {
        self.conditions.as_deref().unwrap_or(&[])
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        self.conditions.get_or_insert_with(Vec::new)
    }
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

impl Kind for AzureAdApplication {
    type Status = AzureAdApplicationStatus;
    type Provider = EntraProvider;
    const NAMES: KindNames = KindNames {
        finalizer: ce::FINALIZER,
        legacy_finalizers: &[ce::LEGACY_FINALIZER],
        consumed_annotations: &[ce::ANN_RESYNC, ce::ANN_ROTATE],
        resync_annotation: ce::ANN_RESYNC,
        secret_type_label: ce::SECRET_TYPE_LABEL,
    };

    fn status(&self) -> Option<&AzureAdApplicationStatus> {
        self.status.as_ref()
    }

    /// Another tenant's resource (or one without a tenant where one is required) belongs to another
    /// instance: it is left entirely alone, logged once and counted.
    fn is_mine(&self, provider: &EntraProvider) -> bool {
        if ce::is_addressed(self.spec.tenant.as_deref(), &provider.config) {
            return true;
        }
        let key = crate::controller::pass::object_key::<Self>(
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
        );
        let new = provider
            .other_tenant
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        if new {
            let why = match self.spec.tenant.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => format!(
                    "its spec.tenant {t:?} is not this instance's tenant {:?}",
                    provider.config.tenant_name
                ),
                None => "it names no spec.tenant and this instance requires one".to_string(),
            };
            tracing::info!(object = %key, "left alone: {why}; another instance owns it (no status, finalizer or event)");
        }
        false
    }

    fn validate(&self, provider: &EntraProvider) -> Result<(), Error> {
        pipeline::validate(self, provider)
    }

    async fn apply<'a>(
        pass: &'a Pass<'a, Self>,
    ) -> Result<Applied<AzureAdApplicationStatus>, Error> {
        pipeline::apply(pass).await
    }

    async fn cleanup<'a>(pass: &'a Pass<'a, Self>) -> Result<(), Error> {
        pipeline::cleanup(pass).await
    }

    async fn observe<'a>(
        pass: &'a Pass<'a, Self>,
    ) -> Result<Vec<crate::core::observe::Action>, Error> {
        observe::observe_one(pass).await
    }

    fn failure_status(
        prev: Option<&AzureAdApplicationStatus>,
        generation: Option<i64>,
        now: Timestamp,
        reason: &str,
        message: &str,
    ) -> AzureAdApplicationStatus {
        cstatus::failure(prev, generation, now, reason, message)
    }

    fn annotation_after_pass(name: &str, value: &str) -> Option<String> {
        if name == ce::ANN_RESYNC {
            ce::resync_after_pass(value)
        } else {
            None
        }
    }

    fn attach_store(provider: &EntraProvider, store: Store<Self>) {
        *provider.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }
}
