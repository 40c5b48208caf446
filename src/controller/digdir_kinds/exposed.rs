//! Steps for Maskinporten API providers: the scopes a MaskinportenClient exposes
//! (`spec.scopes.exposes`) and who may consume them. The decisions are the pure plan's
//! ([`crate::core::digdir::scopes`]); this module reads what the plan needs, carries out one
//! resource's share of it ([`crate::digdir::scopes::apply`]) and reports.
//!
//! - [`validate`]: a resource that exposes a scope needs `--maskinporten-scope-prefix`; without it the
//!   pass stops before anything is written (`Ready=False`, `ConfigurationError`).
//! - [`sync`] (a full pass): one `GET /scopes?inactive=true`, the ACLs of this resource's existing
//!   scopes, the plan over every MaskinportenClient of the cluster (from the controller's cache:
//!   ownership depends on all of them), then this resource's changes in plan order, each with an
//!   event. A consumer Digdir refuses is named in `InvalidExposedScopesConsumers` (Ready stays True);
//!   a scope another resource owns gives `Ready=False` naming the owner (the two never fight); a scope
//!   no longer exposed is left active, with an event.
//! - A create or grant whose answer never came may still land: the same change waits until it has
//!   had time to (the provider's create settle time) and is then planned again from fresh reads,
//!   never sent again blindly.
//! - [`finalize`] (deletion, also under `digdir.nais.io/preserve`): enabled scopes stay, disabled
//!   ones are deactivated.
//! - [`check_drift`] (the periodic pass): the scope list once per pass, each ACL on a jittered
//!   cadence; a settled resource whose scopes or consumers were changed by hand is asked for a
//!   repair.
//! - [`observe`]: `--observe`, reading only.
//!
//! Delegation sources are read from Digdir on first need (a resource with `delegationSource`).
//! Nothing here logs keys, tokens or client secrets.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use kube::Resource;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;

use super::{DigdirProvider, DigdirResource};
use crate::conditions;
use crate::controller::context::Shared;
use crate::controller::pass::{Pass, object_key};
use crate::controller::{Error, Kind};
use crate::core::digdir::drift as cdrift;
use crate::core::digdir::observe::{Action, scope_actions};
use crate::core::digdir::scopes::{
    self as cscopes, ExposingResource, Observed, Plan, Problem, ResourceId, ResourceProblem,
    ScopeAction, ScopeChange, ScopeSettings,
};
use crate::core::digdir::status::events;
use crate::crd::{ExposedScope, MaskinportenClient};
use crate::digdir::scopes::ApplyReport;
use crate::digdir::{DelegationSource, ScopeRegistration};

/// The setting exposed scopes need.
pub const PREFIX_SETTING: &str = "--maskinporten-scope-prefix";

/// How long a pass waits for the controller's cache of MaskinportenClients to fill.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// How many ACL calls (reads, grants, revokes) one pass has in flight at once: a provider with
/// thousands of consumers is granted in parallel, not one call after the other.
pub const ACL_CONCURRENCY: usize = 16;

/// What the exposed-scope steps remember between passes (in memory: a restart only means the first
/// ACL reads are spread over one period again, and a wait for an unknown outcome starts over).
#[derive(Default)]
pub(crate) struct ExposedState {
    /// Digdir's delegation sources, read on first need.
    sources: tokio::sync::Mutex<Option<Vec<DelegationSource>>>,
    inner: Mutex<Inner>,
    /// `--observe`: one scope list and one list of MaskinportenClients for the whole report.
    observe_scopes: tokio::sync::OnceCell<Vec<ScopeRegistration>>,
    observe_resources: tokio::sync::OnceCell<Vec<ExposingResource>>,
}

#[derive(Default)]
struct Inner {
    /// Creates (`orgno` `None`) and grants whose outcome is unknown → when a new attempt may be
    /// decided.
    uncertain: HashMap<(String, Option<String>), Timestamp>,
    /// `(scope, orgno)` Digdir refused (400): not drift, and not asked again until the next full pass.
    refused: HashSet<(String, String)>,
    /// When each exposed scope's ACL was last read, and when the periodic pass first saw the scope.
    acl_read: HashMap<String, Timestamp>,
    first_seen: HashMap<String, Timestamp>,
    /// The active scopes each resource of this cluster owns, from the last scope list.
    owners: HashMap<ResourceId, BTreeSet<String>>,
}

impl ExposedState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers who owns which active scope of this cluster (from a full scope list).
    fn record_listing(&self, cluster: &str, listed: &[ScopeRegistration]) {
        let mut owners: HashMap<ResourceId, BTreeSet<String>> = HashMap::new();
        for s in listed.iter().filter(|s| s.active) {
            if let Some(owner) = cscopes::parse_owner(&s.description)
                && owner.cluster == cluster
            {
                owners.entry(owner).or_default().insert(s.full_name());
            }
        }
        self.lock().owners = owners;
    }

    fn owns_any(&self, id: &ResourceId) -> bool {
        self.lock().owners.get(id).is_some_and(|s| !s.is_empty())
    }

    fn acl_was_read(&self, scope: &str, at: Timestamp) {
        self.lock().acl_read.insert(scope.to_string(), at);
    }

    /// An error while a change of `changes` still waits for an earlier unknown outcome.
    fn check_uncertain(&self, changes: &[&ScopeChange], now: Timestamp) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.uncertain.retain(|_, until| *until > now);
        for c in changes {
            let Some(key) = uncertain_key(c) else {
                continue;
            };
            if let Some(until) = inner.uncertain.get(&key) {
                let retry_in = now
                    .duration_until(*until)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(200));
                return Err(Error::Wait {
                    message: format!(
                        "An earlier attempt to {c} got no clear answer from Digdir; waiting until {} to learn whether it went through before trying again",
                        Timestamp::from_second(until.as_second()).unwrap_or(*until)
                    ),
                    retry_in,
                });
            }
        }
        Ok(())
    }
}

/// The key under which an unknown outcome of `c` is remembered (creates and grants only: they are
/// the changes Digdir does not make idempotent).
fn uncertain_key(c: &ScopeChange) -> Option<(String, Option<String>)> {
    match &c.action {
        ScopeAction::Create { .. } => Some((c.scope.clone(), None)),
        ScopeAction::Grant { orgno } | ScopeAction::Regrant { orgno } => {
            Some((c.scope.clone(), Some(orgno.clone())))
        }
        _ => None,
    }
}

fn prefix(p: &DigdirProvider) -> Option<&str> {
    p.config
        .maskinporten_scope_prefix
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Checks before anything is written: a resource that exposes a scope needs the scope prefix.
pub(super) fn validate<K: DigdirResource>(obj: &K, p: &DigdirProvider) -> Result<(), Error> {
    let exposes = obj.exposed_scopes().is_some_and(|e| !e.is_empty());
    if exposes && prefix(p).is_none() {
        return Err(Error::Configuration {
            setting: PREFIX_SETTING,
            message: "spec.scopes.exposes names scopes, and an exposed scope is named \
                      <prefix>:<product><separator><name> with the scope prefix Digdir assigned to \
                      the organisation: set it (digdirator's was `nav`)"
                .into(),
        });
    }
    Ok(())
}

fn resource_id(p: &DigdirProvider, namespace: &str, name: &str) -> ResourceId {
    ResourceId::new(&p.config.cluster_name, namespace, name)
}

fn exposing_of(o: &MaskinportenClient) -> ExposingResource {
    ExposingResource::from_spec(
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default(),
        &o.spec,
        o.metadata.deletion_timestamp.is_some(),
    )
}

/// The plan's view of `pass.obj` (its spec as this pass sees it).
fn me<K: DigdirResource>(pass: &Pass<'_, K>, exposes: &[ExposedScope]) -> ExposingResource {
    ExposingResource {
        namespace: pass.namespace.clone(),
        name: pass.name.clone(),
        exposes: exposes.to_vec(),
        deleting: pass.obj.meta().deletion_timestamp.is_some(),
    }
}

/// Every MaskinportenClient of the cluster as the plan sees it, with `me` as this pass sees it. The
/// plan needs all of them: a resource left out would look gone and its scopes pass to another.
async fn cluster_resources<K: DigdirResource>(
    pass: &Pass<'_, K>,
    me: ExposingResource,
) -> Result<Vec<ExposingResource>, Error> {
    let p = pass.provider;
    let mut all: Vec<ExposingResource> = match p.stores().maskinporten {
        Some(store) => {
            tokio::time::timeout(CACHE_WAIT, store.wait_until_ready())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| Error::Wait {
                    message: "waiting for the list of MaskinportenClients (exposed scopes are \
                              decided over all of them)"
                        .into(),
                    retry_in: Duration::from_secs(5),
                })?;
            store.state().iter().map(|o| exposing_of(o)).collect()
        }
        // --observe (no controller, so no cache): one list for the whole report.
        None => p
            .exposed
            .observe_resources
            .get_or_try_init(|| async {
                let api: Api<MaskinportenClient> = Api::all(pass.shared.client.clone());
                let list = api
                    .list(&Default::default())
                    .await
                    .map_err(|e| Error::kube("listing MaskinportenClients", e))?;
                Ok::<_, Error>(list.items.iter().map(exposing_of).collect())
            })
            .await?
            .clone(),
    };
    all.retain(|r| !(r.namespace == me.namespace && r.name == me.name));
    all.push(me);
    Ok(all)
}

/// The plan's settings; Digdir's delegation sources are read the first time a resource names one.
async fn settings(
    p: &DigdirProvider,
    resources: &[ExposingResource],
) -> Result<ScopeSettings, Error> {
    let mut s = ScopeSettings::new(&p.config.cluster_name, prefix(p).unwrap_or_default());
    let needs_sources = resources
        .iter()
        .flat_map(|r| &r.exposes)
        .any(|e| e.delegation_source.is_some());
    if needs_sources {
        let mut cached = p.exposed.sources.lock().await;
        if cached.is_none() {
            *cached = Some(p.client.delegation_sources().await?);
        }
        s = s.with_delegation_sources(cached.as_deref().unwrap_or_default());
    }
    Ok(s)
}

/// The full names `exposes` gives (valid entries or not).
fn names(settings: &ScopeSettings, exposes: &[ExposedScope]) -> BTreeSet<String> {
    exposes
        .iter()
        .map(|e| cscopes::full_name(&settings.prefix, e))
        .collect()
}

/// Reads the ACLs the plan needs of the scopes in `wanted` ([`ACL_CONCURRENCY`] at a time).
async fn read_acls(
    p: &DigdirProvider,
    clock: &crate::clock::Clock,
    settings: &ScopeSettings,
    resources: &[ExposingResource],
    listed: &[ScopeRegistration],
    wanted: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<crate::digdir::ConsumerRegistration>>, Error> {
    let names: Vec<String> = cscopes::acls_to_read(settings, resources, listed)
        .into_iter()
        .filter(|n| wanted(n))
        .collect();
    let read: Vec<(String, Vec<crate::digdir::ConsumerRegistration>)> =
        futures::stream::iter(names)
            .map(|name| async move {
                let acl = p.client.list_scope_access(&name).await?;
                p.exposed.acl_was_read(&name, clock.now());
                Ok::<_, Error>((name, acl))
            })
            .buffer_unordered(ACL_CONCURRENCY)
            .try_collect()
            .await?;
    Ok(read.into_iter().collect())
}

/// Carries out one resource's changes: the scope changes in plan order, stopping at the first
/// failure; then the consumer changes, [`ACL_CONCURRENCY`] at a time, none started after a failure.
/// (Each change is safe to repeat, so the next pass picks up what is left.)
async fn apply(p: &DigdirProvider, changes: &[&ScopeChange]) -> ApplyReport {
    let (scope_changes, acl_changes): (Vec<&ScopeChange>, Vec<&ScopeChange>) =
        changes.iter().partition(|c| c.action.orgno().is_none());
    let mut report = crate::digdir::scopes::apply(&p.client, scope_changes).await;
    if report.failed.is_some() {
        return report;
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    // By index: a stream of borrowed items trips the compiler's higher-ranked lifetimes in a Send
    // future.
    let acl_changes = &acl_changes;
    let mut results = futures::stream::iter(0..acl_changes.len())
        .map(|i| async move {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return ApplyReport::default();
            }
            let r = crate::digdir::scopes::apply(&p.client, [acl_changes[i]]).await;
            if r.failed.is_some() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        })
        .buffer_unordered(ACL_CONCURRENCY);
    // Folded in as they come (thousands of grants: no list of one-change reports).
    while let Some(part) = results.next().await {
        report.applied.extend(part.applied);
        report.problems.extend(part.problems);
        if report.failed.is_none() {
            report.failed = part.failed;
        }
    }
    report
}

/// What the step did.
#[derive(Debug, Default)]
pub(crate) struct ExposedDone {
    /// Consumers that cannot be granted access, each naming the organisation and the scope (`None`:
    /// not checked; the condition stays as it is).
    pub invalid_consumers: Option<Vec<String>>,
    /// The changes made at Digdir, in words (events name them one by one; a drift repair lists them).
    pub changes: Vec<String>,
}

/// Step: the resource's exposed scopes and their consumers (see the module documentation).
pub(crate) async fn sync<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<ExposedDone, Error> {
    let Some(exposes) = pass.obj.exposed_scopes() else {
        return Ok(ExposedDone::default());
    };
    let p = pass.provider;
    let id = resource_id(p, &pass.namespace, &pass.name);
    let had_condition = Kind::status(pass.obj)
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| {
            conditions::find(c, conditions::INVALID_EXPOSED_SCOPES_CONSUMERS).is_some()
        });
    // Nothing exposed and no scope of this resource seen: no Digdir call (most clients only consume).
    if exposes.is_empty() && !p.exposed.owns_any(&id) {
        return Ok(ExposedDone {
            invalid_consumers: had_condition.then(Vec::new),
            changes: Vec::new(),
        });
    }
    let resources = cluster_resources(pass, me(pass, exposes)).await?;
    let settings = settings(p, &resources).await?;
    let listed = p.client.list_scopes(true).await?;
    p.exposed.record_listing(&settings.cluster_name, &listed);
    let mine = names(&settings, exposes);
    let clock = &pass.shared.clock;
    let acls = read_acls(p, clock, &settings, &resources, &listed, |n| {
        mine.contains(n)
    })
    .await?;
    let plan = cscopes::plan(
        &settings,
        &resources,
        &Observed {
            scopes: listed,
            acls,
        },
    );
    let changes: Vec<&ScopeChange> = plan.changes_for(&id).collect();
    p.exposed.check_uncertain(&changes, clock.now())?;
    let report = apply(p, &changes).await;
    pass.shared.metrics.scope_changes(&report.applied);

    let mut done = ExposedDone::default();
    for change in &report.applied {
        if let Some(key) = uncertain_key(change) {
            let mut inner = p.exposed.lock();
            inner.uncertain.remove(&key);
            if let (s, Some(orgno)) = key {
                inner.refused.remove(&(s, orgno));
            }
        }
        if done.changes.len() < CHANGES_DESCRIBED {
            done.changes.push(change.to_string());
        }
    }
    if report.applied.len() > CHANGES_DESCRIBED {
        done.changes.push(format!(
            "and {} more changes to exposed scopes",
            report.applied.len() - CHANGES_DESCRIBED
        ));
    }
    announce(pass, &report.applied).await;
    for problem in &report.problems {
        if let Problem::InvalidConsumer { orgno, .. } = &problem.problem
            && let Some(scope) = &problem.scope
        {
            p.exposed
                .lock()
                .refused
                .insert((scope.clone(), orgno.clone()));
        }
    }
    if let Some((change, err)) = report.failed {
        if err.may_land_later()
            && let Some(key) = uncertain_key(&change)
        {
            // It may still land: decide nothing about it until it has had time to.
            let until = clock
                .now()
                .checked_add(p.create_settle)
                .unwrap_or(Timestamp::MAX);
            p.exposed.lock().uncertain.insert(key, until);
        }
        tracing::warn!(object = %pass.key, change = %change, error = %err, "a change to exposed scopes at Digdir failed");
        return Err(err.into());
    }
    report_outcome(pass, &id, &plan).await;
    let mut invalid = Vec::new();
    let mut fatal = None;
    for problem in plan.problems_for(&id).chain(report.problems.iter()) {
        match &problem.problem {
            Problem::InvalidConsumer { orgno, reason } => invalid.push(format!(
                "{orgno} for `{}` ({reason})",
                problem.scope.as_deref().unwrap_or_default()
            )),
            Problem::Duplicate { .. } => {
                pass.publish(
                    EventType::Warning,
                    events::DUPLICATE_SCOPE,
                    problem.to_string(),
                )
                .await;
            }
            _ => {
                fatal.get_or_insert_with(|| problem_error(&settings, exposes, problem));
            }
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    done.invalid_consumers = (!exposes.is_empty() || had_condition).then_some(invalid);
    Ok(done)
}

/// The error a problem that stops the pass becomes, naming the field (or setting) and the owner.
fn problem_error(
    settings: &ScopeSettings,
    exposes: &[ExposedScope],
    problem: &ResourceProblem,
) -> Error {
    let field = problem
        .scope
        .as_deref()
        .and_then(|scope| {
            exposes
                .iter()
                .rposition(|e| cscopes::full_name(&settings.prefix, e) == scope)
        })
        .map(|i| format!("spec.scopes.exposes[{i}]"))
        .unwrap_or_else(|| "spec.scopes.exposes".into());
    match &problem.problem {
        Problem::NoScopePrefix => Error::Configuration {
            setting: PREFIX_SETTING,
            message: problem.problem.to_string(),
        },
        // These name their own field.
        Problem::InvalidSpec { field, message } => Error::invalid_spec(field.clone(), message),
        Problem::UnknownDelegationSource { field, .. } => {
            Error::invalid_spec(field.clone(), problem.problem.to_string())
        }
        _ => Error::invalid_spec(field, problem.to_string()),
    }
}

/// How many changes a pass describes in words (for a drift repair's report) before it counts them.
const CHANGES_DESCRIBED: usize = 50;

/// How many organisations one ACL event names before it says how many more.
const ORGS_IN_EVENT: usize = 20;

/// Events for the changes made at Digdir (digdirator's reasons and wording): one per scope change,
/// and one per scope for each kind of consumer change, naming the organisations (a provider with
/// thousands of consumers gets a handful of events, not thousands). A log line per change.
async fn announce<K: DigdirResource>(pass: &Pass<'_, K>, applied: &[ScopeChange]) {
    let mut acl: BTreeMap<(&str, &'static str), Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for change in applied {
        let s = &change.scope;
        *counts.entry(change.action.label()).or_default() += 1;
        tracing::debug!(object = %pass.key, scope = %s, orgno = change.action.orgno().unwrap_or_default(),
            action = change.action.label(), "exposed scope changed at Digdir");
        let (type_, reason, note) = match &change.action {
            ScopeAction::Create { .. } => (
                EventType::Normal,
                events::CREATED_SCOPE,
                format!("Created scope \"{s}\""),
            ),
            ScopeAction::Update { fields, .. } => (
                EventType::Normal,
                events::UPDATED_SCOPE,
                format!("Updated scope \"{s}\" ({})", fields.join(", ")),
            ),
            ScopeAction::Reactivate { .. } => (
                EventType::Normal,
                events::ACTIVATED_SCOPE,
                format!("Activated scope \"{s}\""),
            ),
            // A Warning, as digdirator's: consumers lose access.
            ScopeAction::Deactivate => (
                EventType::Warning,
                events::DEACTIVATED_SCOPE,
                format!("Deactivated scope \"{s}\"; consumers no longer have access"),
            ),
            ScopeAction::Grant { orgno }
            | ScopeAction::Regrant { orgno }
            | ScopeAction::Revoke { orgno } => {
                let what = match &change.action {
                    ScopeAction::Grant { .. } => "granted access to",
                    ScopeAction::Regrant { .. } => "granted access again (it was DENIED) to",
                    _ => "revoked access to",
                };
                acl.entry((s.as_str(), what))
                    .or_default()
                    .push(orgno.clone());
                continue;
            }
        };
        pass.publish(type_, reason, note).await;
    }
    if !counts.is_empty() {
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        tracing::info!(object = %pass.key, changes = %summary.join(" "), "exposed scopes changed at Digdir");
    }
    for ((scope, what), mut orgnos) in acl {
        orgnos.sort();
        let quoted: Vec<String> = orgnos.iter().map(|o| format!("\"{o}\"")).collect();
        let who = match quoted.as_slice() {
            [one] => format!("consumer {one}"),
            _ => format!(
                "consumers {}",
                conditions::list_for_message(&quoted, ORGS_IN_EVENT)
            ),
        };
        pass.publish(
            EventType::Normal,
            events::UPDATED_ACL,
            format!("ACL: {what} scope \"{scope}\" for {who}"),
        )
        .await;
    }
}

/// Events for the scopes the resource took over and those it no longer exposes.
async fn report_outcome<K: DigdirResource>(pass: &Pass<'_, K>, id: &ResourceId, plan: &Plan) {
    for a in plan.adopted.iter().filter(|a| &a.resource == id) {
        let from = match &a.from {
            Some(owner) => format!("from {owner}, which no longer exposes it"),
            None => "its description named no owner (made by hand)".into(),
        };
        tracing::info!(object = %pass.key, scope = %a.scope, "exposed scope adopted");
        pass.publish(
            EventType::Normal,
            events::ADOPTED_SCOPE,
            format!("Adopted scope \"{}\" ({from})", a.scope),
        )
        .await;
    }
    for o in plan.orphaned.iter().filter(|o| &o.owner == id) {
        tracing::info!(object = %pass.key, scope = %o.scope, "scope no longer exposed; left active at Digdir");
        pass.publish(
            EventType::Normal,
            events::SCOPE_LEFT_ACTIVE,
            format!(
                "Scope \"{}\" is no longer in spec.scopes.exposes; it stays active at Digdir because consumers may depend on it (list it with enabled: false to deactivate it)",
                o.scope
            ),
        )
        .await;
    }
}

/// Deletion: the resource's disabled scopes are deactivated; enabled ones stay (consumers depend on
/// them), also under `digdir.nais.io/preserve`, as digdirator does.
pub(super) async fn finalize<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<(), Error> {
    let Some(exposes) = pass.obj.exposed_scopes() else {
        return Ok(());
    };
    for e in exposes.iter().filter(|e| e.enabled) {
        tracing::info!(object = %pass.key, scope = %e.name, product = %e.product,
            "resource deleted; its enabled exposed scope stays active at Digdir");
    }
    if exposes.iter().all(|e| e.enabled) {
        return Ok(()); // nothing a deletion changes: no Digdir call
    }
    let p = pass.provider;
    let id = resource_id(p, &pass.namespace, &pass.name);
    let resources = cluster_resources(pass, me(pass, exposes)).await?;
    let settings = settings(p, &resources).await?;
    let listed = p.client.list_scopes(true).await?;
    let plan = cscopes::plan(
        &settings,
        &resources,
        &Observed {
            scopes: listed,
            acls: BTreeMap::new(),
        },
    );
    let changes: Vec<&ScopeChange> = plan.changes_for(&id).collect();
    let report = apply(p, &changes).await;
    pass.shared.metrics.scope_changes(&report.applied);
    for change in &report.applied {
        tracing::info!(object = %pass.key, scope = %change.scope, "resource deleted; its disabled scope was deactivated at Digdir");
    }
    match report.failed {
        Some((_, err)) => Err(err.into()),
        None => Ok(()),
    }
}

/// The periodic pass's share: the scope list once, the ACLs that are due, and a repair asked for
/// each settled MaskinportenClient whose exposed scopes or consumers differ at Digdir.
pub(super) async fn check_drift(
    p: &DigdirProvider,
    shared: &Shared,
    store: Option<&Store<MaskinportenClient>>,
    report: &mut super::periodic::PassReport,
) -> Result<(), Error> {
    let objs = super::periodic::objects(store);
    if !objs
        .iter()
        .any(|o| o.exposed_scopes().is_some_and(|e| !e.is_empty()))
    {
        return Ok(()); // no provider in this cluster: no scope call at all
    }
    let resources: Vec<ExposingResource> = objs.iter().map(|o| exposing_of(o)).collect();
    let settings = settings(p, &resources).await?;
    let listed = p.client.list_scopes(true).await?;
    p.exposed.record_listing(&settings.cluster_name, &listed);
    // Only settled resources (Ready for their generation, nothing pending) are checked: the others'
    // own passes are about to look at Digdir anyway.
    let settled: Vec<(&Arc<MaskinportenClient>, ResourceId)> = objs
        .iter()
        .filter(|o| {
            cdrift::settled_client_id(
                o.meta().generation,
                Kind::status(o.as_ref()),
                o.meta().annotations.as_ref(),
                o.meta().deletion_timestamp.is_some(),
            )
            .is_some()
        })
        .filter(|o| o.exposed_scopes().is_some_and(|e| !e.is_empty()))
        .map(|o| {
            let id = resource_id(
                p,
                o.meta().namespace.as_deref().unwrap_or_default(),
                o.meta().name.as_deref().unwrap_or_default(),
            );
            (o, id)
        })
        .collect();
    let checked: BTreeSet<String> = settled
        .iter()
        .flat_map(|(o, _)| names(&settings, o.exposed_scopes().unwrap_or_default()))
        .collect();
    let now = shared.clock.now();
    let due: BTreeSet<String> = {
        let mut inner = p.exposed.lock();
        inner.acl_read.retain(|s, _| checked.contains(s));
        inner.first_seen.retain(|s, _| checked.contains(s));
        checked
            .iter()
            .filter(|s| {
                let first = *inner.first_seen.entry(s.to_string()).or_insert(now);
                cdrift::acl_read_due(
                    s,
                    inner.acl_read.get(*s).copied(),
                    first,
                    now,
                    p.config.acl_check_every,
                )
            })
            .cloned()
            .collect()
    };
    let acls = read_acls(p, &shared.clock, &settings, &resources, &listed, |n| {
        due.contains(n)
    })
    .await?;
    report.acls_read += acls.len();
    let plan = cscopes::plan(
        &settings,
        &resources,
        &Observed {
            scopes: listed,
            acls,
        },
    );
    let refused = p.exposed.lock().refused.clone();
    for (obj, id) in settled {
        let differences: Vec<String> = plan
            .changes_for(&id)
            .filter(|c| {
                c.action
                    .orgno()
                    .is_none_or(|o| !refused.contains(&(c.scope.clone(), o.to_string())))
            })
            .map(|c| c.to_string())
            .collect();
        if differences.is_empty() {
            continue;
        }
        let key = object_key::<MaskinportenClient>(&id.namespace, &id.name);
        let what = format!(
            "exposed scopes differ at Digdir (to repair: {})",
            differences.join("; ")
        );
        tracing::warn!(object = %key, drift = %what, "drift at Digdir; repairing");
        super::periodic::flag_drift(p, shared, obj.as_ref(), &key, &what).await?;
        report.drifted.push((key, what));
    }
    Ok(())
}

/// `--observe`: the exposed-scope changes a pass would make, and the scopes left active.
pub(super) async fn observe<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<Vec<Action>, Error> {
    let Some(exposes) = pass.obj.exposed_scopes() else {
        return Ok(Vec::new());
    };
    let p = pass.provider;
    let id = resource_id(p, &pass.namespace, &pass.name);
    let listed = p
        .exposed
        .observe_scopes
        .get_or_try_init(|| async { p.client.list_scopes(true).await })
        .await?;
    p.exposed.record_listing(&p.config.cluster_name, listed);
    if exposes.is_empty() && !p.exposed.owns_any(&id) {
        return Ok(Vec::new());
    }
    let resources = cluster_resources(pass, me(pass, exposes)).await?;
    let settings = settings(p, &resources).await?;
    let mine = names(&settings, exposes);
    let acls = read_acls(p, &pass.shared.clock, &settings, &resources, listed, |n| {
        mine.contains(n)
    })
    .await?;
    let plan = cscopes::plan(
        &settings,
        &resources,
        &Observed {
            scopes: listed.clone(),
            acls,
        },
    );
    let mut actions = scope_actions(
        plan.changes_for(&id),
        plan.orphaned.iter().filter(|o| o.owner == id),
    );
    if let Some(problem) = plan.problems_for(&id).find(|pr| {
        !matches!(
            pr.problem,
            Problem::InvalidConsumer { .. } | Problem::Duplicate { .. }
        )
    }) {
        actions.push(Action::Blocked(
            problem_error(&settings, exposes, problem).message(),
        ));
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creates_and_grants_wait_for_an_unknown_outcome() {
        let id = ResourceId::new("c", "ns", "api");
        let change = |action| ScopeChange {
            resource: id.clone(),
            scope: "org:api".into(),
            action,
        };
        assert_eq!(
            uncertain_key(&change(ScopeAction::Create {
                registration: Default::default()
            })),
            Some(("org:api".into(), None))
        );
        assert_eq!(
            uncertain_key(&change(ScopeAction::Regrant {
                orgno: "123456789".into()
            })),
            Some(("org:api".into(), Some("123456789".into())))
        );
        // Idempotent at Digdir: simply done again.
        assert_eq!(uncertain_key(&change(ScopeAction::Deactivate)), None);
        assert_eq!(
            uncertain_key(&change(ScopeAction::Revoke {
                orgno: "123456789".into()
            })),
            None
        );

        let state = ExposedState::default();
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let grant = change(ScopeAction::Grant {
            orgno: "123456789".into(),
        });
        state.lock().uncertain.insert(
            uncertain_key(&grant).unwrap(),
            now + jiff::SignedDuration::from_secs(10),
        );
        let err = state.check_uncertain(&[&grant], now).unwrap_err();
        assert!(matches!(err, Error::Wait { .. }), "{err}");
        assert!(err.message().contains("123456789"), "{}", err.message());
        // Other changes are not held, and after the window the grant is decided again.
        let revoke = change(ScopeAction::Revoke {
            orgno: "123456789".into(),
        });
        assert!(state.check_uncertain(&[&revoke], now).is_ok());
        let later = now + jiff::SignedDuration::from_secs(11);
        assert!(state.check_uncertain(&[&grant], later).is_ok());
        assert!(state.lock().uncertain.is_empty(), "forgotten once past");
    }
}
