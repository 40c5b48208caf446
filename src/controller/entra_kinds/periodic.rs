//! What the Entra provider does on its own schedule:
//!
//! - **The steady-state comparison** (every resync period, [`run_once`]): the settled resources
//!   (Ready, not deleting, nothing pending) come from the controller's reflector store; the cluster's
//!   applications are listed **once** (`startswith(displayName,'<cluster>:')`, paged; nothing at all
//!   when no resource is settled) and each is compared with what its resource wants
//!   ([`crate::core::entra::drift`]). A drifted resource (a redirect URI or pre-authorization removed
//!   by hand, an app deleted) is logged, counted and given `azure.nais.io/resync: drift`; its own pass
//!   repairs it and reports what it changed (Warning event `DriftRepaired`).
//! - **The sweep** (every `--entra-sweep-interval`, [`sweep_loop`], azurerator's sweeper): resources
//!   whose pre-authorized apps were not found, or that pre-authorize apps of other clusters, are
//!   looked at again (lookups cached for half the interval): one whose app now exists (or was
//!   recreated with another client id) is asked to resync. Nothing tells one cluster of another's apps.
//! - **Apps waiting for this one** ([`resync_dependents`]): when a pass creates an app (or its client
//!   id changes), every resource in the cluster whose rules name it and whose status does not list it
//!   as assigned gets the app's name appended to its `azure.nais.io/resync` list, at once.
//!
//! A Graph failure here is logged and counted; it never flips a Ready resource to not Ready.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::FutureExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::EntraProvider;
use crate::controller::context::{Counters, Shared};
use crate::controller::pass::{Pass, object_key};
use crate::controller::{Error, Kind};
use crate::core::entra::preauth::{self, Found};
use crate::core::entra::{self as ce, application as capp, drift as cdrift, events};
use crate::crd::AzureAdApplication;

/// What the provider remembers between runs (in memory; a restart only means drift found just
/// before it is reported without what it was).
#[derive(Debug, Default)]
pub(crate) struct DriftState {
    /// Drift found, by object key, until the repairing pass reports it.
    pending: HashMap<String, String>,
    /// Sweep lookups: display name → (when, what was found).
    lookups: HashMap<String, (Timestamp, Option<Found>)>,
    last: PassReport,
}

/// What one steady-state comparison did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub checked: usize,
    /// `(object, what differs)` of each drift found.
    pub drifted: Vec<(String, String)>,
}

fn lock(p: &EntraProvider) -> std::sync::MutexGuard<'_, DriftState> {
    p.drift.lock().unwrap_or_else(|e| e.into_inner())
}

impl EntraProvider {
    /// What the last completed steady-state comparison did.
    pub fn drift_report(&self) -> PassReport {
        lock(self).last.clone()
    }
}

/// The drift the periodic pass found for `key`, if any (taken: reported once).
pub(crate) fn take_drift(p: &EntraProvider, key: &str) -> Option<String> {
    lock(p).pending.remove(key)
}

/// Reports a repair of drift found by the periodic pass.
pub(crate) async fn report_repair(
    pass: &Pass<'_, AzureAdApplication>,
    found: &str,
    changes: &[String],
) {
    if changes.is_empty() {
        tracing::info!(object = %pass.key, drift = %found, "drift gone before the repair; nothing changed");
        return;
    }
    let done = changes.join("; ");
    tracing::warn!(object = %pass.key, drift = %found, repaired = %done, "drift in Entra ID repaired");
    Counters::inc(&pass.shared.counters.drift_repaired);
    pass.publish(
        EventType::Warning,
        events::DRIFT_REPAIRED,
        format!("Drift repaired: {found}; {done}"),
    )
    .await;
}

fn objects(p: &EntraProvider) -> Vec<Arc<AzureAdApplication>> {
    p.store()
        .filter(|s| {
            s.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
        .map(|s| s.state())
        .unwrap_or_default()
}

fn key_of(o: &AzureAdApplication) -> String {
    object_key::<AzureAdApplication>(
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Appends `element` to the resource's `azure.nais.io/resync` list (its own pass then runs).
async fn request_resync(
    shared: &Shared,
    obj: &AzureAdApplication,
    element: &str,
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<AzureAdApplication> = Api::namespaced(shared.client.clone(), &ns);
    // Read the current list: the store may lag behind a pass that just consumed an element.
    let current = match api.get_opt(&obj.name_any()).await {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(()),
        Err(e) => return Err(Error::kube(format!("reading {}", key_of(obj)), e)),
    };
    let value = ce::resync_append(
        current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ce::ANN_RESYNC))
            .map(String::as_str),
        element,
    );
    let patch = json!({"metadata": {
        "annotations": {ce::ANN_RESYNC: value},
        "resourceVersion": current.metadata.resource_version,
    }});
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
        // Changed meanwhile (its own pass ran): that pass saw the newest state or will be followed
        // by the next sweep; asking again is harmless but not needed.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(
            format!("asking {} for a resync", key_of(obj)),
            e,
        )),
    }
}

/// One steady-state comparison, with its outcome logged.
pub(super) async fn run_once(p: &EntraProvider, shared: &Shared) {
    match compare(p, shared).await {
        Ok(r) => {
            tracing::debug!(
                checked = r.checked,
                drifted = r.drifted.len(),
                "periodic pass done"
            );
            lock(p).last = r;
        }
        Err(e) => {
            Counters::inc(&shared.counters.failures);
            tracing::warn!(error = %e, error_kind = e.metric_label(), "periodic pass in Entra ID failed; retried next period (no resource's status changes)");
        }
    }
}

/// List once, compare, ask drifted resources to resync.
pub async fn compare(p: &EntraProvider, shared: &Shared) -> Result<PassReport, Error> {
    let all = objects(p);
    {
        let known: HashSet<String> = all.iter().map(|o| key_of(o)).collect();
        lock(p).pending.retain(|k, _| known.contains(k));
    }
    let settled: Vec<(Arc<AzureAdApplication>, String)> = all
        .into_iter()
        .filter(|o| o.is_mine(p))
        .filter_map(|o| {
            let id = cdrift::settled_object_id(
                o.metadata.generation,
                Kind::status(o.as_ref()),
                o.metadata.annotations.as_ref(),
                o.metadata.deletion_timestamp.is_some(),
            )?
            .to_string();
            Some((o, id))
        })
        .collect();
    let mut report = PassReport::default();
    if settled.is_empty() {
        return Ok(report);
    }
    let listed = p
        .graph
        .list_applications_with_display_name_prefix(&format!("{}:", p.config.cluster_name))
        .await?;
    let by_id: HashMap<String, &crate::entra::Application> = listed
        .iter()
        .map(|a| (a.id.to_ascii_lowercase(), a))
        .collect();
    report.checked = settled.len();
    for (obj, id) in &settled {
        let key = key_of(obj);
        let ns = obj.namespace().unwrap_or_default();
        let desired = capp::desired(&p.config, &ns, &obj.name_any(), &obj.spec);
        let what: Vec<String> = match by_id.get(&id.to_ascii_lowercase()) {
            None => vec!["the application is gone from Entra ID".into()],
            Some(app) if app.display_name != desired.display_name => {
                vec![format!(
                    "the application's display name is {:?}",
                    app.display_name
                )]
            }
            Some(app) => {
                let assigned = obj
                    .status
                    .as_ref()
                    .map(cdrift::assigned_client_ids)
                    .unwrap_or_default();
                cdrift::find(&desired, app, &assigned)
            }
        };
        if what.is_empty() {
            continue;
        }
        let what = what.join(", ");
        tracing::warn!(object = %key, object_id = %id, drift = %what, "drift in Entra ID; repairing");
        Counters::inc(&shared.counters.drift_found);
        lock(p).pending.insert(key.clone(), what.clone());
        request_resync(shared, obj, ce::RESYNC_DRIFT).await?;
        report.drifted.push((key, what));
    }
    Ok(report)
}

/// The sweep, every `sweep_interval` until `shutdown`.
pub(super) async fn sweep_loop(
    p: Arc<EntraProvider>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(p.sweep_interval) => {}
        }
        let done = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sweep(&p, &shared) => r,
        };
        match done {
            Ok(n) => tracing::debug!(resynced = n, "sweep done"),
            Err(e) => {
                Counters::inc(&shared.counters.failures);
                tracing::warn!(error = %e, error_kind = e.metric_label(), "sweep for pre-authorized apps failed; retried next interval");
            }
        }
        p.counters
            .sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One sweep: returns how many resources were asked to resync.
pub async fn sweep(p: &EntraProvider, shared: &Shared) -> Result<usize, Error> {
    let now = shared.clock.now();
    let ttl = jiff::SignedDuration::try_from(p.sweep_interval / 2).unwrap_or_default();
    let mut asked = 0;
    for obj in objects(p) {
        if !obj.is_mine(p) || obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(st) = obj.status.as_ref() else {
            continue;
        };
        let Some(pre) = st.pre_authorized_apps.as_ref() else {
            continue;
        };
        let tenant_ok = st
            .synchronization_tenant
            .as_deref()
            .is_some_and(|t| t.contains(&p.config.tenant_id));
        if !tenant_ok || ce::wants_resync(obj.metadata.annotations.as_ref()) {
            continue;
        }
        let urn = |r: &crate::crd::AccessPolicyRule| {
            ce::display_name(
                r.cluster.as_deref().unwrap_or(&p.config.cluster_name),
                r.namespace
                    .as_deref()
                    .unwrap_or(obj.metadata.namespace.as_deref().unwrap_or_default()),
                &r.application,
            )
        };
        // (display name, the client id it had when assigned)
        let mut candidates: Vec<(String, Option<String>)> = pre
            .unassigned
            .iter()
            .flatten()
            .filter_map(|a| a.access_policy_rule.as_ref().map(|r| (urn(r), None)))
            .collect();
        candidates.extend(pre.assigned.iter().flatten().filter_map(|a| {
            let r = a.access_policy_rule.as_ref()?;
            let other_cluster = r
                .cluster
                .as_deref()
                .is_some_and(|c| c != p.config.cluster_name);
            other_cluster.then(|| (urn(r), a.client_id.clone()))
        }));
        let mut due = false;
        for (name, had) in candidates {
            let cached = lock(p)
                .lookups
                .get(&name)
                .filter(|(at, _)| now.duration_since(*at) < ttl)
                .map(|(_, f)| f.clone());
            let found = match cached {
                Some(f) => f,
                None => {
                    let rule = preauth::Rule {
                        rule: Default::default(),
                        urn: name.clone(),
                        scopes: Default::default(),
                        roles: Default::default(),
                    };
                    let f = super::application::resolve(p, rule).await?.found;
                    lock(p).lookups.insert(name.clone(), (now, f.clone()));
                    f
                }
            };
            let changed = match (&had, &found) {
                (None, Some(_)) => true,
                (Some(c), Some(f)) => !c.eq_ignore_ascii_case(&f.client_id),
                _ => false,
            };
            if changed {
                tracing::info!(object = %key_of(&obj), app = %name, "a pre-authorized app appeared (or was recreated); resyncing");
                due = true;
                break;
            }
        }
        if due {
            request_resync(shared, &obj, ce::RESYNC_SWEEPER).await?;
            p.counters
                .sweep_resyncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            asked += 1;
        }
    }
    lock(p)
        .lookups
        .retain(|_, (at, _)| now.duration_since(*at) < ttl);
    Ok(asked)
}

/// Asks every resource in the cluster that pre-authorizes `display_name` (and does not list it as
/// assigned with `client_id`) to resync. Failures are logged: the sweep catches them later.
pub(crate) async fn resync_dependents(
    pass: &Pass<'_, AzureAdApplication>,
    display_name: &str,
    client_id: &str,
) {
    let p = pass.provider;
    for obj in objects(p) {
        if key_of(&obj) == pass.key || !obj.is_mine(p) || obj.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let ns = obj.namespace().unwrap_or_default();
        let wants = preauth::rules(&p.config, &ns, &obj.spec)
            .iter()
            .any(|r| r.urn == display_name);
        if !wants {
            continue;
        }
        let already = obj
            .status
            .as_ref()
            .and_then(|s| s.pre_authorized_apps.as_ref())
            .is_some_and(|pre| {
                pre.assigned.iter().flatten().any(|a| {
                    a.client_id.as_deref() == Some(client_id)
                        && a.access_policy_rule.as_ref().is_some_and(|r| {
                            ce::display_name(
                                r.cluster.as_deref().unwrap_or(&p.config.cluster_name),
                                r.namespace.as_deref().unwrap_or(&ns),
                                &r.application,
                            ) == display_name
                        })
                })
            });
        if already {
            continue;
        }
        match request_resync(pass.shared, &obj, display_name).await {
            Ok(()) => {
                p.counters
                    .dependent_resyncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(object = %key_of(&obj), app = %display_name, "resyncing an app that pre-authorizes this one");
            }
            Err(e) => {
                tracing::warn!(object = %key_of(&obj), error = %e, "asking an app that pre-authorizes this one to resync failed; the sweep retries")
            }
        }
    }
}
