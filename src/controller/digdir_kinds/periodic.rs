//! The Digdir provider's periodic steady-state pass: finds drift made by hand at Digdir and has it
//! repaired.
//!
//! Every resync period:
//! 1. the settled resources (Ready, not deleting, nothing pending) are taken from the controllers'
//!    reflector stores, so the pass reads nothing from Kubernetes (no Secret or Pod is listed);
//! 2. the registrations are listed **once** (one `GET /clients` for all resources of both kinds; none
//!    at all when no resource is settled) and each is compared with the desired payload
//!    ([`crate::core::digdir::drift`]);
//! 3. a client's JWKS is read only when due (about every
//!    [`crate::core::digdir::Config::jwks_check_every`], jittered per client) and compared with the
//!    kids portvakt registered last (`status.keyIDs`);
//! 4. MaskinportenClients that expose scopes: the organisation's scopes are listed once per pass and
//!    each ACL is read when due (jittered, [`crate::core::digdir::Config::acl_check_every`]); a scope
//!    or consumer changed by hand is drift ([`super::exposed::check_drift`]); no call at all when no
//!    resource exposes a scope;
//! 5. a drifted resource (or one whose identity more than one active client carries) is logged,
//!    counted and annotated `digdir.nais.io/resync: "true"`: its own reconcile then makes a full pass
//!    and repairs it, serialised with every other reconcile of that resource. The annotation survives
//!    a restart, so a repair is never lost; the reconcile reports it with a Warning event
//!    [`events::DRIFT_REPAIRED`] naming what differed and what it changed.
//!
//! With nothing drifted a pass makes exactly one list call and no write anywhere. A Digdir failure
//! during the pass never flips a Ready resource to not Ready: it is logged, counted
//! (`portvakt_periodic_checks_total{provider="digdir",result=<error>}`) and shown in a condition of
//! its own, [`DRIFT_CHECK`]`=False` on the resources it could not check, written once when the
//! checks start failing and removed by the first check that succeeds again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use serde_json::json;

use super::registration::{check_scopes_for, observed_json};
use super::{DigdirProvider, DigdirResource, Stores};
use crate::controller::context::{Counters, Shared};
use crate::controller::pass::{Pass, object_key};
use crate::controller::{Error, Kind};
use crate::core::digdir::ScopeCacheUse;
use crate::core::digdir::drift::{self as cdrift, Drift};
use crate::core::digdir::registration as creg;
use crate::core::digdir::status::{self as cstatus, events};
use crate::core::digdir::wire::ClientRegistration;

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

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Resources compared.
    pub checked: usize,
    /// JWKS read.
    pub jwks_read: usize,
    /// ACLs of exposed scopes read.
    pub acls_read: usize,
    /// `(object, description)` of each drift found.
    pub drifted: Vec<(String, String)>,
}

impl DigdirProvider {
    /// What the last completed steady-state pass did.
    pub fn drift_report(&self) -> PassReport {
        lock(self).last.clone()
    }
}

fn lock(p: &DigdirProvider) -> std::sync::MutexGuard<'_, DriftState> {
    p.drift.lock().unwrap_or_else(|e| e.into_inner())
}

/// The condition that says a periodic comparison with Digdir failed (present only then).
pub const DRIFT_CHECK: &str = "DriftChecked";

/// One periodic pass, with its outcome logged, counted and shown on the resources.
pub(super) async fn run_once(p: &DigdirProvider, shared: &Shared) {
    let result = pass(p, shared).await;
    shared.metrics.periodic_check(
        "digdir",
        result.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
    );
    let stores: Stores = p.stores();
    let failure = result.as_ref().err();
    show_check(shared, stores.idporten.as_ref(), failure).await;
    show_check(shared, stores.maskinporten.as_ref(), failure).await;
    match result {
        Ok(r) => {
            tracing::debug!(
                checked = r.checked,
                jwks_read = r.jwks_read,
                acls_read = r.acls_read,
                drifted = r.drifted.len(),
                "periodic pass done"
            );
            lock(p).last = r;
        }
        Err(e) => {
            Counters::inc(&shared.counters.failures);
            tracing::warn!(error = %e, error_kind = e.metric_label(), "periodic pass at Digdir failed; retried next period (Ready is unchanged; the resources show it in DriftChecked)");
        }
    }
}

/// [`DRIFT_CHECK`] after a periodic pass: `False` on every settled resource when the pass failed,
/// removed where present when it succeeded. Only a change is written, as a merge patch guarded by
/// the cached object's resourceVersion (a resource a reconcile is writing is skipped; the next
/// period tries again), and recorded as portvakt's own write so it starts no reconcile.
async fn show_check<K: DigdirResource>(
    shared: &Shared,
    store: Option<&Store<K>>,
    failure: Option<&Error>,
) {
    let objs: Vec<Arc<K>> = match failure {
        Some(_) => settled(store).into_iter().map(|(o, _)| o).collect(),
        None => objects(store),
    };
    let now = shared.clock.now();
    let writes = objs.into_iter().filter_map(|o| {
        let status = Kind::status(o.as_ref())?;
        let mut conditions = crate::controller::KindStatus::conditions(status).to_vec();
        let changed = match failure {
            Some(e) => crate::conditions::set_condition(
                &mut conditions,
                DRIFT_CHECK,
                false,
                e.reason(),
                &format!(
                    "The periodic comparison with Digdir failed: {e}. Ready is unchanged; the check runs again next period"
                ),
                o.meta().generation,
                now,
            ),
            None => crate::conditions::remove_condition(&mut conditions, DRIFT_CHECK),
        };
        changed.then_some((o, conditions))
    });
    let mut writes = futures::stream::iter(writes)
        .map(|(o, conditions)| async move {
            let api: Api<K> =
                Api::namespaced(shared.client.clone(), &o.namespace().unwrap_or_default());
            let patch = json!({
                "metadata": {"resourceVersion": o.meta().resource_version},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(&o.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(written) => shared
                    .own_writes
                    .record(crate::controller::pass::kind_name::<K>(), written.meta()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => tracing::debug!(object = %key_of(o.as_ref()), error = %crate::controller::error::describe_kube(&e), "DriftChecked not written"),
            }
        })
        .buffer_unordered(8);
    while writes.next().await.is_some() {}
}

/// The store's objects, or none while its first list has not completed (a kind whose watch fails,
/// e.g. a missing CRD, does not hold up the pass for the other kind).
pub(super) fn objects<K: Kind>(store: Option<&Store<K>>) -> Vec<Arc<K>> {
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
                Kind::status(o.as_ref()),
                o.meta().annotations.as_ref(),
                o.meta().deletion_timestamp.is_some(),
            )?
            .to_string();
            Some((o, id))
        })
        .collect()
}

fn key_of<K: Kind>(o: &K) -> String {
    object_key::<K>(
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

fn all_keys<K: Kind>(store: Option<&Store<K>>) -> impl Iterator<Item = String> {
    objects(store).into_iter().map(|o| key_of(o.as_ref()))
}

/// One pass: list once, compare, read the JWKS that are due, trigger repairs.
pub async fn pass(p: &DigdirProvider, shared: &Shared) -> Result<PassReport, Error> {
    let stores: Stores = p.stores();
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
        let mut st = lock(p);
        st.pending.retain(|k, _| known.contains(k));
        st.jwks_read.retain(|id, _| clients.contains(id.as_str()));
        st.first_seen.retain(|id, _| clients.contains(id.as_str()));
    }
    let mut report = PassReport::default();
    if idp.is_empty() && mp.is_empty() {
        return Ok(report);
    }
    // The one list of the pass also refreshes the registration index the reconciles adopt from.
    let listed = p.registrations.refresh(&p.client).await?;
    // Each registration is turned into JSON only when its resource is compared, one at a time: at
    // 10,000 clients a map of them all was a transient 30 MB.
    let active: HashMap<&str, &ClientRegistration> = listed
        .iter()
        .filter(|c| c.is_active())
        .filter_map(|c| Some((c.client_id.as_deref()?, c)))
        .collect();
    let duplicated: HashSet<(String, String)> = p
        .registrations
        .duplicates()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    check_kind(p, shared, &idp, &active, &duplicated, &mut report).await?;
    check_kind(p, shared, &mp, &active, &duplicated, &mut report).await?;
    super::exposed::check_drift(p, shared, stores.maskinporten.as_ref(), &mut report).await?;
    Ok(report)
}

async fn check_kind<K: DigdirResource>(
    p: &DigdirProvider,
    shared: &Shared,
    objs: &[(Arc<K>, String)],
    active: &HashMap<&str, &ClientRegistration>,
    duplicated: &HashSet<(String, String)>,
    report: &mut PassReport,
) -> Result<(), Error> {
    let mut drifted: HashMap<String, Drift> = HashMap::new();
    for (obj, id) in objs {
        let valid = match obj.consumed_scopes() {
            Some(s) => {
                check_scopes_for(p, &shared.clock, &s, ScopeCacheUse::Periodic)
                    .await?
                    .0
            }
            None => Vec::new(),
        };
        let desired = obj.payload(&p.config, &valid);
        let observed = active.get(id.as_str()).map(|c| observed_json(c));
        if let Some(d) = cdrift::registration_drift(&desired, observed.as_ref()) {
            drifted.insert(key_of(obj.as_ref()), d);
        }
    }
    report.checked += objs.len();
    for (obj, _) in objs {
        let desc = creg::description(
            &p.config.cluster_name,
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        );
        if duplicated.contains(&(desc, obj.integration_type().to_string())) {
            drifted.insert(key_of(obj.as_ref()), Drift::Duplicated);
        }
    }

    let every = p.config.jwks_check_every;
    for (obj, id) in objs {
        let key = key_of(obj.as_ref());
        if drifted.contains_key(&key) {
            continue; // the repairing pass reads the JWKS anyway
        }
        let Some(expected) = Kind::status(obj.as_ref()).and_then(|s| s.key_ids.clone()) else {
            continue;
        };
        let now = shared.clock.now();
        let due = {
            let mut st = lock(p);
            let first_seen = *st.first_seen.entry(id.clone()).or_insert(now);
            cdrift::jwks_read_due(id, st.jwks_read.get(id).copied(), first_seen, now, every)
        };
        if !due {
            continue;
        }
        let jwks = p.client.get_jwks(id).await?;
        Counters::inc(&shared.counters.jwks_reads);
        report.jwks_read += 1;
        lock(p).jwks_read.insert(id.clone(), shared.clock.now());
        let kids: Vec<String> = jwks
            .map(|j| j.keys.into_iter().map(|k| k.kid).collect())
            .unwrap_or_default();
        if let Some(d) = cdrift::key_drift(&expected, &kids) {
            drifted.insert(key, d);
        }
    }

    for (obj, id) in objs {
        let key = key_of(obj.as_ref());
        let Some(d) = drifted.get(&key) else {
            continue;
        };
        let what = d.describe();
        tracing::warn!(object = %key, client_id = %id, drift = %what, "drift at Digdir; repairing");
        flag_drift(p, shared, obj.as_ref(), &key, &what).await?;
        report.drifted.push((key, what));
    }
    Ok(())
}

/// Drift found on `obj` (logged by the caller): counted, remembered for the repair's report, and a
/// repair asked for.
pub(super) async fn flag_drift<K: DigdirResource>(
    p: &DigdirProvider,
    shared: &Shared,
    obj: &K,
    key: &str,
    what: &str,
) -> Result<(), Error> {
    Counters::inc(&shared.counters.drift_found);
    lock(p)
        .pending
        .entry(key.to_string())
        .and_modify(|w| {
            w.push_str("; ");
            w.push_str(what);
        })
        .or_insert_with(|| what.to_string());
    request_resync(shared, obj).await
}

/// Asks the resource's own reconcile for a full pass (the `resync` annotation it consumes after
/// success).
async fn request_resync<K: DigdirResource>(shared: &Shared, obj: &K) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(shared.client.clone(), &ns);
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
        Err(e) => Err(Error::kube(
            format!("asking {} for a resync", key_of(obj)),
            e,
        )),
    }
}

/// Called after a successful `resync` pass: if the periodic pass had found drift on this resource,
/// reports what was repaired (a Warning event, a log line, a counter).
pub(super) async fn report_repair<K: DigdirResource>(pass: &Pass<'_, K>, repairs: &[String]) {
    let key = &pass.key;
    let Some(found) = lock(pass.provider).pending.remove(key) else {
        return;
    };
    if repairs.is_empty() {
        tracing::info!(object = %key, drift = %found, "drift gone before the repair; nothing changed");
        return;
    }
    let done = repairs.join("; ");
    tracing::warn!(object = %key, drift = %found, repaired = %done, "drift at Digdir repaired");
    Counters::inc(&pass.shared.counters.drift_repaired);
    pass.publish(
        EventType::Warning,
        events::DRIFT_REPAIRED,
        format!("Drift repaired: {found}; {done}"),
    )
    .await;
}
