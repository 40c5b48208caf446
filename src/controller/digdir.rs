//! One pass over an IDPortenClient or MaskinportenClient.
//!
//! Order of effects, chosen so any crash converges to exactly one registration and no lost key:
//! 1. finalizer added (or the deletion handled: Digdir client deleted unless preserved, finalizers
//!    removed);
//! 2. registration: found by `status.clientID`, else adopted by description + integration type, else
//!    created — and the client ID is written to status at once, before anything else;
//!    a PUT only when the registration differs from the desired one;
//! 3. keys ([`crate::core::keyplan`]): a new next key is stored before it is registered; the JWKS POST
//!    happens before any Secret hands a key out;
//! 4. the app Secret, written only when its content would change; unreferenced old Secrets deleted;
//! 5. `resync`/`rotate` annotations removed, status and events written.
//!
//! Nothing here logs keys, tokens or client secrets.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Counters};
use crate::conditions::reason;
use crate::core::keyplan::{
    self, CurrentSource, KeyActions, KeyInputs, KeyPlan, ManagedSecret, Registered,
};
use crate::core::registration::{self, Identity, Payload};
use crate::core::secret::{self as csecret, Bookkeeping, Owner};
use crate::core::status::{self as cstatus, events};
use crate::core::{Key, Kind, hash, observe};
use crate::crd::{DigdiratorStatus, IDPortenClient, MaskinportenClient};
use crate::digdir::{AccessState, ClientRegistration, DigdirError, Jwk};
use crate::secrets::{self, OwnerId, SecretError};
use crate::workloads::{self, References, ScanError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Digdir(#[from] DigdirError),
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Scan(#[from] ScanError),
    #[error("Kubernetes API: {0}")]
    Kube(Box<kube::Error>),
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    Generate(#[from] keyplan::GenerateError),
    #[error("resource has no {0}")]
    Incomplete(&'static str),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(Box::new(e))
    }
}

impl Error {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Digdir(e) => e.retry_after(),
            _ => None,
        }
    }
    /// The Ready=False reason of the condition policy.
    pub fn ready_reason(&self) -> &'static str {
        match self {
            Error::Digdir(e) if e.status() == Some(429) => reason::THROTTLED,
            Error::Digdir(_) => reason::DIGDIR_ERROR,
            Error::Secret(SecretError::NotOwned { .. }) => reason::SECRET_NOT_OWNED,
            Error::Secret(_) | Error::Scan(_) | Error::Kube(_) => reason::KUBERNETES_ERROR,
            Error::InvalidSpec(_) | Error::Incomplete(_) => reason::INVALID_SPEC,
            Error::Generate(_) => reason::PENDING,
        }
    }
}

/// Access to consumed scopes (Maskinporten), as digdirator checks it.
#[derive(Clone, Debug)]
pub struct ScopeAccess {
    pub fetched: Timestamp,
    pub approved: BTreeSet<String>,
    pub open: BTreeSet<String>,
}

/// What differs between the two kinds.
pub trait DigdirResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn digdir_status(&self) -> Option<&DigdiratorStatus>;
    fn secret_name(&self) -> &str;
    fn spec_hash(&self) -> String;
    /// The integration type at Digdir.
    fn integration_type(&self) -> &'static str;
    /// IDPORTEN_REDIRECT_URI / MASKINPORTEN_SCOPES.
    fn secret_kind_value(&self) -> String;
    /// Consumed scopes to check for access (Maskinporten only).
    fn consumed_scopes(&self) -> Option<Vec<String>> {
        None
    }
    fn payload(&self, cfg: &crate::core::Config, valid_scopes: &[String]) -> Payload;
}

impl DigdirResource for IDPortenClient {
    const KIND: Kind = Kind::IDPorten;
    fn digdir_status(&self) -> Option<&DigdiratorStatus> {
        self.status.as_ref()
    }
    fn secret_name(&self) -> &str {
        &self.spec.secret_name
    }
    fn spec_hash(&self) -> String {
        hash::idporten_hash(&self.spec)
    }
    fn integration_type(&self) -> &'static str {
        self.spec.integration_type.as_str()
    }
    fn secret_kind_value(&self) -> String {
        csecret::idporten_redirect_uri(&self.spec)
    }
    fn payload(&self, cfg: &crate::core::Config, _: &[String]) -> Payload {
        registration::idporten_payload(
            cfg,
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &self.spec,
        )
    }
}

impl DigdirResource for MaskinportenClient {
    const KIND: Kind = Kind::Maskinporten;
    fn digdir_status(&self) -> Option<&DigdiratorStatus> {
        self.status.as_ref()
    }
    fn secret_name(&self) -> &str {
        &self.spec.secret_name
    }
    fn spec_hash(&self) -> String {
        hash::maskinporten_hash(&self.spec)
    }
    fn integration_type(&self) -> &'static str {
        "maskinporten"
    }
    fn secret_kind_value(&self) -> String {
        csecret::maskinporten_scopes(&self.spec)
    }
    fn consumed_scopes(&self) -> Option<Vec<String>> {
        Some(registration::maskinporten_consumed(&self.spec))
    }
    fn payload(&self, cfg: &crate::core::Config, valid: &[String]) -> Payload {
        registration::maskinporten_payload(
            cfg,
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &self.spec,
            valid,
        )
    }
}

pub(crate) fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// FNV-1a of an event note (only to tell notes apart).
fn note_hash(note: &str) -> u64 {
    note.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) async fn publish<K: DigdirResource>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    // kube's Recorder folds events with the same type, reason, action and object into one series
    // and keeps the *first* note, so a later "keys of Secrets X dropped" or "fields Y repaired" would
    // show a stale message. Repeats of the same note still fold; a different note is its own event.
    let ev = Event {
        type_,
        reason: reason.into(),
        action: format!("{reason}-{:016x}", note_hash(&note)),
        note: Some(note),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing event failed");
    }
}

fn to_registration(p: &Payload) -> Result<ClientRegistration, Error> {
    serde_json::from_value(p.to_json())
        .map_err(|e| Error::InvalidSpec(format!("registration payload: {e}")))
}

pub(super) fn observed_json(c: &ClientRegistration) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_default()
}

async fn patch_status<K: DigdirResource>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    st: &DigdiratorStatus,
) -> Result<(), Error> {
    let o = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": st })),
        )
        .await?;
    record_own(ctx, &o);
    Ok(())
}

/// Records a write of the resource (its answer) as portvakt's own (see [`super::OwnWrites`]).
fn record_own<K: DigdirResource>(ctx: &Context, written: &K) {
    ctx.own_writes.record(K::kind(&()).as_ref(), written.meta());
}

/// The controller entry point.
pub async fn reconcile<K: DigdirResource>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    resync: Duration,
) -> Result<Action, Error> {
    Counters::inc(&ctx.counters.reconciles);
    let key = object_key(obj.as_ref());
    let ns = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let resync_pass = cstatus::wants_resync(obj.meta().annotations.as_ref());
    let result = if obj.meta().deletion_timestamp.is_some() {
        finalize(obj.as_ref(), &ctx, &api)
            .await
            .map(|a| (a, Vec::new()))
    } else {
        apply(obj.as_ref(), &ctx, &api, resync).await
    };
    match result {
        Ok((action, repairs)) => {
            ctx.reset_backoff(&key);
            if resync_pass {
                super::drift::report_repair(obj.as_ref(), &ctx, &key, &repairs).await;
            }
            Ok(action)
        }
        Err(err) => {
            if obj.meta().deletion_timestamp.is_none() {
                report_failure(obj.as_ref(), &ctx, &api, &err).await;
            }
            Err(err)
        }
    }
}

async fn report_failure<K: DigdirResource>(obj: &K, ctx: &Context, api: &Api<K>, err: &Error) {
    let message = err.to_string();
    // Re-read: the client ID may have been written earlier in this pass.
    let current = api.get_status(&obj.name_any()).await.ok();
    let prev = current
        .as_ref()
        .and_then(|o| o.digdir_status())
        .or(obj.digdir_status());
    let st = cstatus::failure(
        prev,
        obj.meta().generation,
        ctx.clock.now(),
        err.ready_reason(),
        &message,
    );
    if prev != Some(&st) {
        if let Err(e) = patch_status(ctx, api, &obj.name_any(), &st).await {
            tracing::debug!(error = %e, "writing failure status failed");
        }
        publish(
            ctx,
            obj,
            EventType::Warning,
            events::FAILED_SYNCHRONIZATION,
            message,
        )
        .await;
    }
}

fn has_finalizer<K: Resource>(obj: &K, f: &str) -> bool {
    obj.meta().finalizers.iter().flatten().any(|x| x == f)
}

/// Adds portvakt's finalizer and drops the legacy one (optimistic: carries resourceVersion).
async fn ensure_finalizer<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
) -> Result<(), Error> {
    if has_finalizer(obj, cstatus::FINALIZER) && !has_finalizer(obj, cstatus::LEGACY_FINALIZER) {
        return Ok(());
    }
    let mut list: Vec<String> = obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != cstatus::LEGACY_FINALIZER && *f != cstatus::FINALIZER)
        .cloned()
        .collect();
    list.push(cstatus::FINALIZER.into());
    let patch =
        json!({"metadata": {"finalizers": list, "resourceVersion": obj.meta().resource_version}});
    let o = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    record_own(ctx, &o);
    Ok(())
}

async fn finalize<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
) -> Result<Action, Error> {
    ctx.set_deferred_next(&object_key(obj), false);
    if !has_finalizer(obj, cstatus::FINALIZER) && !has_finalizer(obj, cstatus::LEGACY_FINALIZER) {
        return Ok(Action::await_change());
    }
    if !cstatus::preserve(obj.meta().annotations.as_ref()) {
        let ns = obj.namespace().unwrap_or_default();
        let desc = registration::description(&ctx.config.cluster_name, &ns, &obj.name_any());
        let id = match obj
            .digdir_status()
            .and_then(|s| s.client_id.clone())
            .filter(|s| !s.is_empty())
        {
            Some(id) => Some(id),
            None => find_by_description(ctx, &desc, obj.integration_type()).await?,
        };
        if let Some(id) = id {
            ctx.digdir.delete_client(&id).await?;
            ctx.registrations.forget(&id).await;
            Counters::inc(&ctx.counters.client_deletes);
            tracing::info!(object = %object_key(obj), client_id = %id, "deleted client at Digdir");
        }
    }
    let rest: Vec<String> = obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != cstatus::LEGACY_FINALIZER && *f != cstatus::FINALIZER)
        .cloned()
        .collect();
    let patch =
        json!({"metadata": {"finalizers": rest, "resourceVersion": obj.meta().resource_version}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => {
            forget_own::<K>(ctx, obj);
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            forget_own::<K>(ctx, obj);
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}

/// The active client with this description and integration type, from the shared registration
/// index ([`super::registry`]): no list per resource.
async fn find_by_description(
    ctx: &Context,
    desc: &str,
    integration_type: &str,
) -> Result<Option<String>, Error> {
    Ok(ctx
        .registrations
        .find(&ctx.digdir, desc, integration_type)
        .await?)
}

/// Whether a failed create may still have created the client (no answer, or a server error).
fn create_outcome_unknown(e: &DigdirError) -> bool {
    e.status().is_none_or(|s| s >= 500)
}

/// Valid and invalid consumed scopes, with digdirator's rule: a scope is usable when access to it is
/// APPROVED for the organisation or it is open to all; anything unknown is not.
async fn check_scopes(
    ctx: &Context,
    scopes: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    if scopes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut cache = ctx.scope_access.lock().await;
    let now = ctx.clock.now();
    let fresh = cache
        .as_ref()
        .is_some_and(|c| now.duration_since(c.fetched).as_secs() < 600);
    let unknown = cache.as_ref().is_none_or(|c| {
        scopes
            .iter()
            .any(|s| !c.approved.contains(s) && !c.open.contains(s))
    });
    if !fresh || unknown {
        let approved = ctx
            .digdir
            .list_access_granted_to_us()
            .await?
            .into_iter()
            .filter(|a| a.state == AccessState::Approved)
            .map(|a| a.scope)
            .collect();
        let open = ctx
            .digdir
            .list_open_scopes()
            .await?
            .into_iter()
            .filter(|s| s.accessible_for_all)
            .map(|s| s.full_name())
            .collect();
        *cache = Some(ScopeAccess {
            fetched: now,
            approved,
            open,
        });
    }
    let c = cache.as_ref().ok_or(Error::Incomplete("scope access"))?;
    let (valid, invalid) = scopes
        .iter()
        .cloned()
        .partition(|s| c.approved.contains(s) || c.open.contains(s));
    Ok((valid, invalid))
}

/// The usable consumed scopes for the periodic pass: from the cache whatever its age (a reconcile
/// keeps it fresh; a change of access is picked up by the resource's own full pass), fetched only
/// when there is no cache yet.
pub(super) async fn valid_scopes_cached(
    ctx: &Context,
    scopes: &[String],
) -> Result<Vec<String>, Error> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    {
        let cache = ctx.scope_access.lock().await;
        if let Some(c) = cache.as_ref() {
            return Ok(scopes
                .iter()
                .filter(|s| c.approved.contains(*s) || c.open.contains(*s))
                .cloned()
                .collect());
        }
    }
    Ok(check_scopes(ctx, scopes).await?.0)
}

/// Result of the registration step.
struct Registration {
    client_id: String,
    invalid_scopes: Option<Vec<String>>,
    created: bool,
    /// Fields a PUT changed.
    updated: Vec<&'static str>,
}

async fn sync_registration<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
    status: &mut DigdiratorStatus,
) -> Result<Registration, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let desc = registration::description(&ctx.config.cluster_name, &ns, &name);
    let (valid, invalid_scopes) = match obj.consumed_scopes() {
        Some(scopes) => {
            let (v, i) = check_scopes(ctx, &scopes).await?;
            (v, Some(i))
        }
        None => (Vec::new(), None),
    };
    let payload = obj.payload(&ctx.config, &valid);
    let body = to_registration(&payload)?;

    let mut observed: Option<ClientRegistration> = None;
    if let Some(id) = status.client_id.clone().filter(|s| !s.is_empty()) {
        match ctx.digdir.get_client(&id).await {
            Ok(c) if c.is_active() => {
                ctx.registrations.record(&c).await;
                observed = Some(c);
            }
            Ok(_) => ctx.registrations.forget(&id).await,
            Err(e) if e.is_not_found() => ctx.registrations.forget(&id).await,
            Err(e) => return Err(e.into()),
        }
    }
    // Adoption by description. The index may be stale: a client it names that is gone makes it
    // list again (once) before anything is decided.
    for attempt in 0..2 {
        if observed.is_some() {
            break;
        }
        let Some(id) = find_by_description(ctx, &desc, obj.integration_type()).await? else {
            break;
        };
        let c = match ctx.digdir.get_client(&id).await {
            Ok(c) if c.is_active() || attempt > 0 => c,
            Ok(_) => {
                ctx.registrations.forget(&id).await;
                ctx.registrations.invalidate().await;
                continue;
            }
            Err(e) if e.is_not_found() && attempt == 0 => {
                ctx.registrations.forget(&id).await;
                ctx.registrations.invalidate().await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        ctx.registrations.record(&c).await;
        publish(
            ctx,
            obj,
            EventType::Normal,
            events::UPDATED_IN_DIGDIR,
            format!("Client {id} adopted (description {desc})"),
        )
        .await;
        observed = Some(c);
    }
    let mut created = false;
    let mut updated = Vec::new();
    let client_id = match observed {
        Some(c) => {
            let id = c.client_id.clone().unwrap_or_default();
            if c.integration_type.as_str() != payload.integration_type {
                return Err(Error::InvalidSpec(format!(
                    "cannot update immutable integration type (existing: {}, desired: {})",
                    c.integration_type.as_str(),
                    payload.integration_type
                )));
            }
            let diff = registration::differing_fields(&payload, &observed_json(&c));
            if !diff.is_empty() {
                let c = ctx.digdir.update_client(&id, &body).await?;
                ctx.registrations
                    .record(&with_identity(c, &body, &id))
                    .await;
                Counters::inc(&ctx.counters.client_updates);
                publish(
                    ctx,
                    obj,
                    EventType::Normal,
                    events::UPDATED_IN_DIGDIR,
                    format!("Client is updated ({})", diff.join(", ")),
                )
                .await;
                updated = diff;
            }
            id
        }
        None => {
            let c = match ctx.digdir.create_client(&body).await {
                Ok(c) => c,
                Err(e) => {
                    if create_outcome_unknown(&e) {
                        // The client may exist: list again before the next create is decided.
                        ctx.registrations.invalidate().await;
                    }
                    return Err(e.into());
                }
            };
            Counters::inc(&ctx.counters.client_creates);
            created = true;
            let id = c
                .client_id
                .clone()
                .ok_or(Error::Incomplete("client_id in Digdir's answer"))?;
            ctx.registrations
                .record(&with_identity(c, &body, &id))
                .await;
            publish(
                ctx,
                obj,
                EventType::Normal,
                events::CREATED_IN_DIGDIR,
                "Client is registered".into(),
            )
            .await;
            id
        }
    };
    if status.client_id.as_deref() != Some(client_id.as_str()) {
        // Written before anything else, so a crash never leads to a second client.
        status.client_id = Some(client_id.clone());
        let o = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"clientID": client_id}})),
            )
            .await?;
        record_own(ctx, &o);
    }
    Ok(Registration {
        client_id,
        invalid_scopes,
        created,
        updated,
    })
}

/// Digdir's answer to a create or update, with the identity fields of what was sent when the answer
/// leaves them out (so the index always knows the client).
fn with_identity(
    mut c: ClientRegistration,
    sent: &ClientRegistration,
    id: &str,
) -> ClientRegistration {
    if c.client_id.as_deref().is_none_or(str::is_empty) {
        c.client_id = Some(id.to_string());
    }
    if c.description.is_empty() {
        c.description = sent.description.clone();
        c.integration_type = sent.integration_type.clone();
    }
    c
}

/// Everything read about a resource's Secrets.
struct SecretsView {
    app: Option<Secret>,
    managed: Vec<Secret>,
    next: Option<Secret>,
}

async fn load_secrets<K: DigdirResource>(obj: &K, ctx: &Context) -> Result<SecretsView, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let sapi: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = owner_id::<K>(&name);
    let app = secrets::get(&sapi, &ns, obj.secret_name()).await?;
    if let Some(s) = &app {
        secrets::check_owned(s, owner)?;
    }
    let selector = format!("app={name},type={}", K::KIND.secret_type_label());
    let managed = secrets::list_labelled(&sapi, &ns, &selector)
        .await?
        .into_iter()
        .filter(|s| csecret::is_managed_app_secret(&s.metadata, K::KIND, &name))
        .collect();
    let next = secrets::get(&sapi, &ns, &csecret::next_key_secret_name(K::KIND, &name)).await?;
    if let Some(s) = &next {
        secrets::check_owned(s, owner)?;
    }
    Ok(SecretsView { app, managed, next })
}

fn owner_id<K: DigdirResource>(name: &str) -> OwnerId<'_> {
    OwnerId {
        api_version: crate::crd::API_VERSION,
        kind: K::KIND.kind(),
        name,
    }
}

fn managed_secrets(kind: Kind, view: &SecretsView) -> Vec<ManagedSecret> {
    view.managed
        .iter()
        .map(|s| ManagedSecret {
            name: s.metadata.name.clone().unwrap_or_default(),
            created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            key: csecret::app_secret_jwk(s, kind).and_then(|j| Key::parse(&j).ok()),
        })
        .collect()
}

fn registered_from_jwks(resp: Option<crate::digdir::JwksResponse>, now: Timestamp) -> Registered {
    let keys = resp.map(|r| r.keys).unwrap_or_default();
    let expires_at = keys
        .iter()
        .filter_map(|k| k.exp)
        .min()
        .and_then(|s| Timestamp::from_second(s).ok())
        .or_else(|| (!keys.is_empty()).then(|| now + jiff::SignedDuration::from_hours(365 * 24)));
    Registered {
        kids: keys.into_iter().map(|k| k.kid).collect(),
        expires_at,
    }
}

/// This thread's CPU time in nanoseconds (`/proc/thread-self/schedstat`), if the kernel reports it.
fn thread_cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Generates a key off the async threads, at most one per core at a time, and counts its CPU time.
async fn generate_key(ctx: &Context) -> Result<Key, Error> {
    let _slot = ctx
        .keygen_slots
        .acquire()
        .await
        .map_err(|e| keyplan::GenerateError(e.to_string()))?;
    let (jwk, micros) = tokio::task::spawn_blocking(|| {
        let cpu0 = thread_cpu_nanos();
        let wall0 = std::time::Instant::now();
        let jwk = crate::keys::generate_key();
        let micros = match (cpu0, thread_cpu_nanos()) {
            (Some(a), Some(b)) if b >= a => (b - a) / 1000,
            _ => u64::try_from(wall0.elapsed().as_micros()).unwrap_or(u64::MAX),
        };
        (jwk, micros)
    })
    .await
    .map_err(|e| keyplan::GenerateError(e.to_string()))?;
    Counters::add(&ctx.counters.keygen_cpu_micros, micros);
    let jwk = jwk.map_err(|e| keyplan::GenerateError(e.to_string()))?;
    Counters::inc(&ctx.counters.keys_generated);
    Ok(Key::from_private(&jwk))
}

/// The key-plan inputs that do not change while the plan gathers more observations.
struct KeyBase<'a> {
    now: Timestamp,
    secret_name: &'a str,
    synced_secret_name: Option<&'a str>,
    rotate: bool,
    managed: &'a [ManagedSecret],
    next: Option<&'a Key>,
    next_registered_at: Option<Timestamp>,
}

/// Gathers what the key plan needs (JWKS read, workload scan) and plans. With `real_keys` the keys
/// the plan asks for are generated off the async threads; without (`--observe`) placeholders are used.
async fn plan_keys(
    ctx: &Context,
    client_id: &str,
    ns: &str,
    base: &KeyBase<'_>,
    registered: &mut Option<Registered>,
    refs: &mut Option<References>,
    real_keys: bool,
) -> Result<KeyActions, Error> {
    loop {
        let inputs = KeyInputs {
            now: base.now,
            secret_name: base.secret_name,
            synced_secret_name: base.synced_secret_name,
            rotate: base.rotate,
            managed: base.managed,
            next: base.next,
            next_registered_at: base.next_registered_at,
            registered: registered.as_ref(),
            refs: refs.as_ref(),
        };
        // Count the keys the final plan needs, with placeholders, then make that many for real.
        let mut n = 0u32;
        let mut fake = || {
            n += 1;
            Ok(Key::placeholder(&format!("planned-{n}")))
        };
        let planned = keyplan::plan(&ctx.config, &inputs, &mut fake)?;
        match planned {
            KeyPlan::NeedRegistered => {
                Counters::inc(&ctx.counters.jwks_reads);
                let resp = if client_id.is_empty() {
                    None
                } else {
                    ctx.digdir.get_jwks(client_id).await?
                };
                *registered = Some(registered_from_jwks(resp, ctx.clock.now()));
            }
            KeyPlan::NeedScan => {
                Counters::inc(&ctx.counters.workload_scans);
                *refs = Some(workloads::scan(&ctx.client, ns).await?);
            }
            KeyPlan::Act(a) if n == 0 || !real_keys => return Ok(*a),
            KeyPlan::Act(_) => {
                let mut made = Vec::new();
                for _ in 0..n {
                    made.push(generate_key(ctx).await?);
                }
                made.reverse();
                let mut real = || {
                    made.pop()
                        .ok_or_else(|| keyplan::GenerateError("plan changed".into()))
                };
                return match keyplan::plan(&ctx.config, &inputs, &mut real)? {
                    KeyPlan::Act(a) => Ok(*a),
                    _ => Err(keyplan::GenerateError("plan changed".into()).into()),
                };
            }
        }
    }
}

async fn apply<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
    resync: Duration,
) -> Result<(Action, Vec<String>), Error> {
    ensure_finalizer(obj, ctx, api).await?;
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let generation = obj.meta().generation;
    let annotations = obj.meta().annotations.as_ref();
    if obj.secret_name().is_empty() {
        return Err(Error::InvalidSpec("spec.secretName is empty".into()));
    }
    let now = ctx.clock.now();
    let up_to_date = cstatus::is_up_to_date(
        generation,
        obj.digdir_status(),
        annotations,
        now,
        ctx.full_sync_every,
    );
    let mut status = obj.digdir_status().cloned().unwrap_or_default();
    let status_had_client_id = status.client_id.as_deref().is_some_and(|c| !c.is_empty());

    // Secrets first: an unowned Secret stops the pass before Digdir is touched.
    let view = load_secrets(obj, ctx).await?;

    let reg = if up_to_date {
        Registration {
            client_id: status.client_id.clone().unwrap_or_default(),
            invalid_scopes: None,
            created: false,
            updated: Vec::new(),
        }
    } else {
        sync_registration(obj, ctx, api, &mut status).await?
    };
    let client_id = reg.client_id.clone();
    // What this pass changed at Digdir (reported when it repairs drift).
    let mut repairs = Vec::new();
    if reg.created && status_had_client_id {
        repairs.push("registration re-created".to_string());
    }
    if !reg.updated.is_empty() {
        repairs.push(format!("registration updated ({})", reg.updated.join(", ")));
    }

    // Keys.
    let (next_key, book) = match &view.next {
        Some(s) => csecret::read_next_key_secret(s),
        None => (None, Bookkeeping::default()),
    };
    let book_valid = book.client_id == client_id && !reg.created;
    let next_key = next_key.filter(|_| book_valid);
    let force_read = cstatus::wants_resync(annotations);
    let mut registered = if reg.created {
        // Created in this pass: nothing is registered yet, no JWKS read needed.
        Some(Registered::default())
    } else {
        (book_valid && !force_read && book.expires_at.is_some()).then(|| Registered {
            kids: book.registered_kids.clone(),
            expires_at: book.expires_at,
        })
    };
    let mut refs = None;
    let managed = managed_secrets(K::KIND, &view);
    let next_registered_at = if book_valid {
        book.next_registered_at
    } else {
        None
    };
    let base = KeyBase {
        now,
        secret_name: obj.secret_name(),
        synced_secret_name: status.synchronization_secret_name.as_deref(),
        rotate: cstatus::wants_rotate(annotations),
        managed: &managed,
        next: next_key.as_ref(),
        next_registered_at,
    };
    let actions = plan_keys(
        ctx,
        &client_id,
        &ns,
        &base,
        &mut registered,
        &mut refs,
        true,
    )
    .await?;
    let registered = registered.unwrap_or_default();

    let sapi: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = obj
        .meta()
        .uid
        .clone()
        .ok_or(Error::Incomplete("metadata.uid"))?;
    let owner = Owner {
        kind: K::KIND,
        namespace: ns.clone(),
        name: name.clone(),
        uid,
    };
    let oid = owner_id::<K>(&name);
    let mut changed = !up_to_date;

    // Store a new next key before registering it.
    let mut new_book = Bookkeeping {
        client_id: client_id.clone(),
        registered_kids: registered.kids.clone(),
        expires_at: registered.expires_at,
        next_registered_at: if actions.next_is_new {
            None
        } else {
            next_registered_at
        },
    };
    let mut next_secret = view.next.clone();
    if actions.next_is_new {
        let desired = csecret::desired_next_key_secret(&owner, &actions.next, &new_book);
        next_secret = Some(write_next(ctx, &sapi, oid, next_secret.as_ref(), &desired).await?);
        Counters::inc(&ctx.counters.secret_writes);
    }
    let mut key_ids = None;
    if let Some(set) = &actions.register {
        let jwks: Vec<Jwk> = set.iter().map(|k| Jwk::from(&k.public)).collect();
        let resp = ctx.digdir.register_jwks(&client_id, &jwks).await?;
        Counters::inc(&ctx.counters.jwks_posts);
        let reg_now = registered_from_jwks(Some(resp), ctx.clock.now());
        let kids: Vec<String> = if reg_now.kids.is_empty() {
            set.iter().map(|k| k.kid.clone()).collect()
        } else {
            reg_now.kids.clone()
        };
        let next_was_registered = registered.kids.contains(&actions.next.kid);
        new_book.registered_kids = kids.clone();
        new_book.expires_at = reg_now
            .expires_at
            .or(Some(now + jiff::SignedDuration::from_hours(365 * 24)));
        if !next_was_registered || new_book.next_registered_at.is_none() {
            new_book.next_registered_at = Some(ctx.clock.now());
        }
        key_ids = Some(kids);
        changed = true;
        repairs.push(format!(
            "keys registered ({})",
            actions.post_reasons.join(", ")
        ));
        if actions.rotated {
            publish(
                ctx,
                obj,
                EventType::Normal,
                events::ROTATED_IN_DIGDIR,
                "Client credentials is rotated".into(),
            )
            .await;
        } else if actions.source != CurrentSource::Generated {
            publish(
                ctx,
                obj,
                EventType::Normal,
                events::UPDATED_IN_DIGDIR,
                format!(
                    "Client credentials is refreshed ({})",
                    actions.post_reasons.join(", ")
                ),
            )
            .await;
        }
    }
    if new_book.next_registered_at.is_none() && registered.kids.contains(&actions.next.kid) {
        // Registered before portvakt recorded it: count from now, conservatively.
        new_book.next_registered_at = Some(ctx.clock.now());
    }
    let next_needs_write = next_secret
        .as_ref()
        .is_none_or(|s| csecret::bookkeeping_differs(s, &new_book))
        || next_secret.as_ref().is_some_and(|s| {
            csecret::read_next_key_secret(s).0.map(|k| k.kid) != Some(actions.next.kid.clone())
        });
    if next_needs_write {
        let desired = csecret::desired_next_key_secret(&owner, &actions.next, &new_book);
        write_next(ctx, &sapi, oid, next_secret.as_ref(), &desired).await?;
        Counters::inc(&ctx.counters.secret_writes);
    }

    if let Some(wait) = actions.wait {
        let st = cstatus::pending(
            Some(&status),
            generation,
            ctx.clock.now(),
            &format!(
                "Rotation waits {}s for Digdir to recognise the next key",
                wait.as_secs()
            ),
        );
        if Some(&st) != obj.digdir_status() {
            patch_status(ctx, api, &name, &st).await?;
        }
        ctx.set_deferred_next(&object_key(obj), false);
        return Ok((Action::requeue(wait), repairs));
    }

    // The app Secret.
    let current = actions
        .current
        .as_ref()
        .ok_or(Error::Incomplete("current key"))?;
    let desired = csecret::desired_app_secret(
        &ctx.config,
        &csecret::AppSecretInputs {
            owner: &owner,
            secret_name: obj.secret_name(),
            client_id: &client_id,
            key: current,
            kind_value: obj.secret_kind_value(),
        },
    );
    let write = view
        .app
        .as_ref()
        .is_none_or(|s| csecret::needs_write(s, &desired));
    if write {
        write_app(ctx, &sapi, oid, view.app.as_ref(), &desired).await?;
        Counters::inc(&ctx.counters.secret_writes);
        changed = true;
    }
    for name_to_delete in &actions.delete {
        if let Some(s) = view
            .managed
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name_to_delete))
        {
            secrets::delete(&sapi, oid, s).await?;
            ctx.own_writes.forget(
                "Secret",
                &ns,
                s.metadata.name.as_deref().unwrap_or_default(),
            );
            Counters::inc(&ctx.counters.secret_deletes);
            changed = true;
        }
    }
    if !actions.dropped.is_empty() {
        publish(
            ctx,
            obj,
            EventType::Warning,
            events::KEYS_DROPPED,
            format!(
                "More than {} keys in use; not registered: keys of Secrets {}",
                ctx.config.max_keys,
                actions.dropped.join(", ")
            ),
        )
        .await;
    }

    // Consume the annotations only after success.
    let consumed: Vec<&str> = [cstatus::ANN_RESYNC, cstatus::ANN_ROTATE]
        .into_iter()
        .filter(|a| annotations.is_some_and(|m| m.contains_key(*a)))
        .collect();
    if !consumed.is_empty() {
        let ann: serde_json::Map<String, serde_json::Value> = consumed
            .iter()
            .map(|a| (a.to_string(), serde_json::Value::Null))
            .collect();
        let o = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": ann}})),
            )
            .await?;
        record_own(ctx, &o);
    }

    let prev_dropped = obj
        .digdir_status()
        .and_then(|s| {
            crate::conditions::find(
                s.conditions.as_deref().unwrap_or(&[]),
                cstatus::KEYS_DROPPED_CONDITION,
            )
        })
        .is_some();
    if changed || prev_dropped == actions.dropped.is_empty() {
        let st = cstatus::success(
            Some(&status),
            generation,
            ctx.clock.now(),
            &cstatus::Success {
                client_id: client_id.clone(),
                secret_name: obj.secret_name().to_string(),
                hash: obj.spec_hash(),
                correlation_id: uuid::Uuid::new_v4().to_string(),
                key_ids: key_ids.or_else(|| (!up_to_date).then(|| registered.kids.clone())),
                invalid_scopes: reg.invalid_scopes.clone(),
                dropped: actions.dropped.clone(),
            },
        );
        patch_status(ctx, api, &name, &st).await?;
        if !up_to_date || write {
            publish(
                ctx,
                obj,
                EventType::Normal,
                events::SYNCHRONIZED,
                "Resource is up-to-date".into(),
            )
            .await;
        }
    }
    let key = object_key(obj);
    ctx.set_deferred_next(&key, actions.next_due_in.is_some());
    let requeue = actions.next_due_in.map_or(resync, |d| d.min(resync));
    Ok((Action::requeue(requeue), repairs))
}

/// Forgets the own writes of a resource that is gone, and of its Secrets.
fn forget_own<K: DigdirResource>(ctx: &Context, obj: &K) {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    ctx.own_writes.forget(K::kind(&()).as_ref(), &ns, &name);
    ctx.own_writes.forget("Secret", &ns, obj.secret_name());
    ctx.own_writes.forget(
        "Secret",
        &ns,
        &csecret::next_key_secret_name(K::KIND, &name),
    );
}

/// Creates the app Secret, or replaces `existing` (owned by portvakt) with `desired` merged onto it.
async fn write_app(
    ctx: &Context,
    sapi: &Api<Secret>,
    oid: OwnerId<'_>,
    existing: Option<&Secret>,
    desired: &Secret,
) -> Result<(), Error> {
    let pp = kube::api::PostParams::default();
    let written = match existing {
        None => sapi
            .create(&pp, desired)
            .await
            .map_err(|e| secret_err("creating", desired, e))?,
        Some(e) => {
            secrets::check_owned(e, oid)?;
            let m = csecret::merged_for_update(e, desired);
            let name = desired.metadata.name.clone().unwrap_or_default();
            sapi.replace(&name, &pp, &m)
                .await
                .map_err(|e| secret_err("updating", desired, e))?
        }
    };
    ctx.own_writes.record("Secret", &written.metadata);
    Ok(())
}

async fn write_next(
    ctx: &Context,
    sapi: &Api<Secret>,
    oid: OwnerId<'_>,
    existing: Option<&Secret>,
    desired: &Secret,
) -> Result<Secret, Error> {
    let written = write_next_secret(sapi, oid, existing, desired).await?;
    ctx.own_writes.record("Secret", &written.metadata);
    Ok(written)
}

async fn write_next_secret(
    sapi: &Api<Secret>,
    oid: OwnerId<'_>,
    existing: Option<&Secret>,
    desired: &Secret,
) -> Result<Secret, Error> {
    let pp = kube::api::PostParams::default();
    match existing {
        None => Ok(sapi
            .create(&pp, desired)
            .await
            .map_err(|e| secret_err("creating", desired, e))?),
        Some(e) => {
            secrets::check_owned(e, oid)?;
            let mut m = csecret::merged_for_update(e, desired);
            // The bookkeeping annotations are portvakt's alone: replace, never merge.
            m.metadata.annotations = desired.metadata.annotations.clone();
            let name = desired.metadata.name.clone().unwrap_or_default();
            Ok(sapi
                .replace(&name, &pp, &m)
                .await
                .map_err(|e| secret_err("updating", desired, e))?)
        }
    }
}

fn secret_err(verb: &'static str, s: &Secret, source: kube::Error) -> Error {
    Error::Secret(SecretError::Kube {
        verb,
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    })
}

/// `--observe` for every resource of kind `K`: reads only.
pub async fn observe_kind<K: DigdirResource>(
    ctx: &Context,
    report: &mut observe::Report,
) -> Result<(), Error> {
    let api: Api<K> = Api::all(ctx.client.clone());
    let objs = api.list(&Default::default()).await?;
    let listed = ctx.digdir.list_clients(false).await?;
    for obj in objs.items {
        let actions = match observe_one(&obj, ctx, &listed).await {
            Ok(a) => a,
            Err(e) => vec![observe::Action::Blocked(e.to_string())],
        };
        report.resources.push(observe::ResourceReport {
            kind: K::KIND.kind(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            actions,
        });
    }
    Ok(())
}

async fn observe_one<K: DigdirResource>(
    obj: &K,
    ctx: &Context,
    listed: &[ClientRegistration],
) -> Result<Vec<observe::Action>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let desc = registration::description(&ctx.config.cluster_name, &ns, &name);
    let reduced: Vec<registration::Listed> = listed
        .iter()
        .filter(|c| c.is_active())
        .map(|c| registration::Listed {
            client_id: c.client_id.clone().unwrap_or_default(),
            description: c.description.clone(),
            integration_type: c.integration_type.as_str().to_string(),
        })
        .collect();
    let status_id = obj.digdir_status().and_then(|s| s.client_id.as_deref());
    let identity = registration::identify(status_id, &reduced, &desc, obj.integration_type());
    let deleting = obj.meta().deletion_timestamp.is_some();
    let mut o = observe::Observed {
        deleting,
        preserve: cstatus::preserve(obj.meta().annotations.as_ref()),
        identity: Some(&identity),
        ..Default::default()
    };
    if deleting {
        return Ok(observe::decide(&o));
    }
    let view = match load_secrets(obj, ctx).await {
        Ok(v) => v,
        Err(Error::Secret(e @ SecretError::NotOwned { .. })) => {
            o.blocked = Some(e.to_string());
            return Ok(observe::decide(&o));
        }
        Err(e) => return Err(e),
    };
    let (valid, _) = match obj.consumed_scopes() {
        Some(s) => check_scopes(ctx, &s).await?,
        None => (Vec::new(), Vec::new()),
    };
    let payload = obj.payload(&ctx.config, &valid);
    let client_id = match &identity {
        Identity::Known(id) | Identity::Adopt(id) => {
            if let Some(c) = listed
                .iter()
                .find(|c| c.client_id.as_deref() == Some(id.as_str()))
            {
                o.differing = registration::differing_fields(&payload, &observed_json(c));
            }
            id.clone()
        }
        Identity::Create => String::new(),
    };
    let managed = managed_secrets(K::KIND, &view);
    let (next_key, book) = match &view.next {
        Some(s) => csecret::read_next_key_secret(s),
        None => (None, Bookkeeping::default()),
    };
    let book_valid = !client_id.is_empty() && book.client_id == client_id;
    let next_key = next_key.filter(|_| book_valid);
    let mut registered = if client_id.is_empty() {
        Some(Registered::default())
    } else {
        (book_valid && book.expires_at.is_some()).then(|| Registered {
            kids: book.registered_kids.clone(),
            expires_at: book.expires_at,
        })
    };
    let mut refs = None;
    let status = obj.digdir_status().cloned().unwrap_or_default();
    let base = KeyBase {
        now: ctx.clock.now(),
        secret_name: obj.secret_name(),
        synced_secret_name: status.synchronization_secret_name.as_deref(),
        rotate: cstatus::wants_rotate(obj.meta().annotations.as_ref()),
        managed: &managed,
        next: next_key.as_ref(),
        next_registered_at: if book_valid {
            book.next_registered_at
        } else {
            None
        },
    };
    let actions = plan_keys(
        ctx,
        &client_id,
        &ns,
        &base,
        &mut registered,
        &mut refs,
        false,
    )
    .await?;
    if let Some(current) = &actions.current {
        let owner = Owner {
            kind: K::KIND,
            namespace: ns.clone(),
            name: name.clone(),
            uid: obj.meta().uid.clone().unwrap_or_default(),
        };
        let desired = csecret::desired_app_secret(
            &ctx.config,
            &csecret::AppSecretInputs {
                owner: &owner,
                secret_name: obj.secret_name(),
                client_id: if client_id.is_empty() {
                    "<new>"
                } else {
                    &client_id
                },
                key: current,
                kind_value: obj.secret_kind_value(),
            },
        );
        o.secret_write = view
            .app
            .as_ref()
            .is_none_or(|s| csecret::needs_write(s, &desired));
    }
    o.keys = Some(&actions);
    Ok(observe::decide(&o))
}
