//! The periodic steady-state pass: finds drift made by hand at Digdir and has it repaired.
//!
//! Every `resync_period` (see [`super::RunOptions`]):
//! 1. the settled resources (Ready, not deleting, nothing pending) are taken from the controllers'
//!    reflector stores, so the pass reads nothing from Kubernetes (no Secret or Pod is listed);
//! 2. the registrations are listed **once** (one `GET /clients` for all resources; none at all when
//!    no resource is settled) and each is compared with the desired payload
//!    ([`crate::core::drift`]);
//! 3. a client's JWKS is read only when due (about every [`crate::core::Config::jwks_check_every`],
//!    jittered per client) and compared with the kids portvakt registered last (`status.keyIDs`);
//! 4. a drifted resource is logged, counted and annotated `digdir.nais.io/resync: "true"`: its own
//!    reconcile then makes a full pass (registration compared, JWKS read) and repairs it, serialised
//!    with every other reconcile of that resource. The annotation survives a restart, so a repair
//!    is never lost; the reconcile reports it with a Warning event [`events::DRIFT_REPAIRED`] naming
//!    what differed and what it changed.
//!
//! With nothing drifted a pass makes exactly one list call and no write anywhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::digdir::{self as dd, DigdirResource, Error, object_key};
use super::{Context, Counters};
use crate::core::drift::{self as cdrift, Drift, Tracked};
use crate::core::status::{self as cstatus, events};
use crate::crd::{IDPortenClient, MaskinportenClient};

/// What the pass remembers between runs (in memory; lost on restart, which only means the first
/// JWKS reads are spread over one period again).
#[derive(Debug, Default)]
pub(crate) struct DriftState {
    /// Drift found, by object key, until the repairing reconcile reports it.
    pending: HashMap<String, String>,
    /// When each client's JWKS was last read.
    jwks_read: HashMap<String, Timestamp>,
    /// When the pass first saw each client.
    first_seen: HashMap<String, Timestamp>,
    /// What the last completed pass did.
    last: PassReport,
}

/// The controllers' reflector stores (`None` for a disabled controller).
#[derive(Clone, Default)]
pub struct Stores {
    pub idporten: Option<Store<IDPortenClient>>,
    pub maskinporten: Option<Store<MaskinportenClient>>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Resources compared.
    pub checked: usize,
    /// JWKS read.
    pub jwks_read: usize,
    /// `(object, description)` of each drift found.
    pub drifted: Vec<(String, String)>,
}

impl Context {
    /// What the last completed steady-state pass did.
    pub fn drift_report(&self) -> PassReport {
        lock(self).last.clone()
    }
}

fn lock(ctx: &Context) -> std::sync::MutexGuard<'_, DriftState> {
    ctx.drift.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a pass every `period` until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, stores: Stores, period: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match pass(&ctx, &stores).await {
            Ok(r) => {
                tracing::debug!(
                    checked = r.checked,
                    jwks_read = r.jwks_read,
                    drifted = r.drifted.len(),
                    "periodic pass done"
                );
                lock(&ctx).last = r;
            }
            Err(e) => tracing::warn!(error = %e, "periodic pass failed; retried next period"),
        }
        Counters::inc(&ctx.counters.drift_passes);
    }
}

/// The store's objects, or none while its first list has not completed (a kind whose watch fails,
/// e.g. a missing CRD, does not hold up the pass for the other kind).
fn objects<K: DigdirResource>(store: Option<&Store<K>>) -> Vec<Arc<K>> {
    store
        .filter(|s| {
            s.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
        .map(|s| s.state())
        .unwrap_or_default()
}

fn settled<K: DigdirResource>(store: Option<&Store<K>>) -> Vec<(Arc<K>, String)> {
    objects(store)
        .into_iter()
        .filter_map(|o| {
            let id = cdrift::settled_client_id(
                o.meta().generation,
                o.digdir_status(),
                o.meta().annotations.as_ref(),
                o.meta().deletion_timestamp.is_some(),
            )?
            .to_string();
            Some((o, id))
        })
        .collect()
}

fn all_keys<K: DigdirResource>(store: Option<&Store<K>>) -> impl Iterator<Item = String> {
    objects(store).into_iter().map(|o| object_key(o.as_ref()))
}

/// One pass: list once, compare, read the JWKS that are due, trigger repairs.
pub async fn pass(ctx: &Context, stores: &Stores) -> Result<PassReport, Error> {
    let idp = settled(stores.idporten.as_ref());
    let mp = settled(stores.maskinporten.as_ref());
    {
        // Forget what belongs to resources that are gone.
        let known: HashSet<String> = all_keys(stores.idporten.as_ref())
            .chain(all_keys(stores.maskinporten.as_ref()))
            .collect();
        let clients: HashSet<&str> = idp
            .iter()
            .map(|(_, id)| id.as_str())
            .chain(mp.iter().map(|(_, id)| id.as_str()))
            .collect();
        let mut st = lock(ctx);
        st.pending.retain(|k, _| known.contains(k));
        st.jwks_read.retain(|id, _| clients.contains(id.as_str()));
        st.first_seen.retain(|id, _| clients.contains(id.as_str()));
    }
    let mut report = PassReport::default();
    if idp.is_empty() && mp.is_empty() {
        return Ok(report);
    }
    // The one list of the pass also refreshes the registration index the reconciles adopt from.
    let listed = ctx.registrations.refresh(&ctx.digdir).await?;
    let active: HashMap<String, Value> = listed
        .iter()
        .filter(|c| c.is_active())
        .filter_map(|c| Some((c.client_id.clone()?, dd::observed_json(c))))
        .collect();
    check_kind(ctx, &idp, &active, &mut report).await?;
    check_kind(ctx, &mp, &active, &mut report).await?;
    Ok(report)
}

async fn check_kind<K: DigdirResource>(
    ctx: &Context,
    objs: &[(Arc<K>, String)],
    active: &HashMap<String, Value>,
    report: &mut PassReport,
) -> Result<(), Error> {
    let mut tracked = Vec::with_capacity(objs.len());
    for (obj, id) in objs {
        let valid = match obj.consumed_scopes() {
            Some(s) => dd::valid_scopes_cached(ctx, &s).await?,
            None => Vec::new(),
        };
        tracked.push(Tracked {
            object: object_key(obj.as_ref()),
            client_id: id.clone(),
            desired: obj.payload(&ctx.config, &valid),
        });
    }
    report.checked += tracked.len();
    let mut drifted: HashMap<String, Drift> = cdrift::find_drift(&tracked, active)
        .into_iter()
        .map(|(t, d)| (t.object.clone(), d))
        .collect();

    let every = ctx.config.jwks_check_every;
    for (obj, id) in objs {
        let key = object_key(obj.as_ref());
        if drifted.contains_key(&key) {
            continue; // the repairing pass reads the JWKS anyway
        }
        let Some(expected) = obj.digdir_status().and_then(|s| s.key_ids.clone()) else {
            continue;
        };
        let now = ctx.clock.now();
        let due = {
            let mut st = lock(ctx);
            let first_seen = *st.first_seen.entry(id.clone()).or_insert(now);
            cdrift::jwks_read_due(id, st.jwks_read.get(id).copied(), first_seen, now, every)
        };
        if !due {
            continue;
        }
        let jwks = ctx.digdir.get_jwks(id).await?;
        Counters::inc(&ctx.counters.jwks_reads);
        report.jwks_read += 1;
        lock(ctx).jwks_read.insert(id.clone(), ctx.clock.now());
        let kids: Vec<String> = jwks
            .map(|j| j.keys.into_iter().map(|k| k.kid).collect())
            .unwrap_or_default();
        if let Some(d) = cdrift::key_drift(&expected, &kids) {
            drifted.insert(key, d);
        }
    }

    for (obj, id) in objs {
        let key = object_key(obj.as_ref());
        let Some(d) = drifted.get(&key) else {
            continue;
        };
        let what = d.describe();
        tracing::warn!(object = %key, client_id = %id, drift = %what, "drift at Digdir; repairing");
        Counters::inc(&ctx.counters.drift_found);
        lock(ctx).pending.insert(key.clone(), what.clone());
        request_resync(ctx, obj.as_ref()).await?;
        report.drifted.push((key, what));
    }
    Ok(())
}

/// Asks the resource's own reconcile for a full pass (the `resync` annotation it consumes after
/// success).
async fn request_resync<K: DigdirResource>(ctx: &Context, obj: &K) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": {cstatus::ANN_RESYNC: "true"}}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Called after a successful `resync` pass: if the periodic pass had found drift on this resource,
/// reports what was repaired (a Warning event, a log line, a counter).
pub(super) async fn report_repair<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    key: &str,
    repairs: &[String],
) {
    let Some(found) = lock(ctx).pending.remove(key) else {
        return;
    };
    if repairs.is_empty() {
        tracing::info!(object = %key, drift = %found, "drift gone before the repair; nothing changed");
        return;
    }
    let done = repairs.join("; ");
    tracing::warn!(object = %key, drift = %found, repaired = %done, "drift at Digdir repaired");
    Counters::inc(&ctx.counters.drift_repaired);
    dd::publish(
        ctx,
        obj,
        EventType::Warning,
        events::DRIFT_REPAIRED,
        format!("Drift repaired: {found}; {done}"),
    )
    .await;
}
