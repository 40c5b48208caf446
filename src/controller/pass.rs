//! One pass over one resource of any kind: the shared flow, and the IO helpers a kind's pipeline uses.
//!
//! The flow ([`reconcile`]):
//! 1. a resource this instance does not manage ([`Kind::is_mine`]) is left alone;
//! 2. a resource being deleted: [`Kind::cleanup`] once, then the finalizers are removed (a conflict
//!    on that write re-reads and retries the write only, never the cleanup);
//! 3. otherwise: [`Kind::validate`] (pure, before anything is written), the finalizer, the kind's
//!    pipeline ([`Kind::apply`]), the consumed annotations removed (only after success), the status
//!    written when it changed;
//! 4. a failure is reported once per distinct message: `Ready=False` with the error's reason, for the
//!    resource's current generation (`observedGeneration` is set by every status write), and a
//!    Warning event; the retry backs off from the first failure.
//! 5. every status write carries kstatus' `Reconciling`/`Stalled`, derived from its `Ready`
//!    ([`crate::conditions::set_progress`]): a stalled failure (the error's
//!    [`Error::is_stalled`]) is `Stalled=True`, a retry pending or a new generation is
//!    `Reconciling=True`, Ready for this generation has neither.
//!
//! Nothing here logs keys, tokens or client secrets.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Counters, MAX_BACKOFF, Shared};
use super::error::Error;
use super::keygen::Priority;
use super::kind::{Kind, KindStatus};
use super::schedule::Schedule;
use super::secret_store::{self, AnnotationMode, OwnerId, SecretError};
use super::workload_scan;
use crate::core::Key;
use crate::core::workloads::References;
use crate::metrics::PassOutcome;

/// What a pass of a kind runs with: the shared state and the kind's provider.
pub struct KindContext<K: Kind> {
    pub shared: Arc<Shared>,
    pub provider: Arc<K::Provider>,
    /// What no watch reports is looked at again this often ([`super::RunOptions::resync_period`]).
    pub resync: Duration,
    /// When each resource's next pass is due (nothing due: no pass until it changes).
    pub schedule: Arc<Schedule<K>>,
}

/// Asks for another pass of one resource as soon as possible (say, once a key made off the
/// critical path is at hand).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Event reasons written by the shared flow (digdirator's and azurerator's).
pub mod events {
    pub const SYNCHRONIZED: &str = "Synchronized";
    pub const FAILED_SYNCHRONIZATION: &str = "FailedSynchronization";
}

/// One pass over `obj`: what the kind's pipeline steps use.
pub struct Pass<'a, K: Kind> {
    pub obj: &'a K,
    pub shared: &'a Shared,
    pub provider: &'a K::Provider,
    pub api: Api<K>,
    pub namespace: String,
    pub name: String,
    /// `Kind/namespace/name`, for logs and per-object state.
    pub key: String,
    pub resync: Duration,
    /// `--observe`: nothing may be written.
    pub read_only: bool,
    /// Asks for another pass of this resource (`None` in a read-only pass).
    pub wake: Option<Wake>,
}

impl<'a, K: Kind> Pass<'a, K> {
    pub fn new(
        obj: &'a K,
        shared: &'a Shared,
        provider: &'a K::Provider,
        resync: Duration,
        read_only: bool,
    ) -> Result<Self, Error> {
        let namespace = obj
            .namespace()
            .ok_or_else(|| Error::Internal(format!("{} without a namespace", K::kind(&()))))?;
        let name = obj.name_any();
        Ok(Self {
            api: Api::namespaced(shared.client.clone(), &namespace),
            key: object_key::<K>(&namespace, &name),
            obj,
            shared,
            provider,
            namespace,
            name,
            resync,
            read_only,
            wake: None,
        })
    }

    pub fn generation(&self) -> Option<i64> {
        self.obj.meta().generation
    }

    /// Whether annotation `name` is `"true"`.
    pub fn annotation_true(&self, name: &str) -> bool {
        self.obj
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .is_some_and(|v| v == "true")
    }

    /// The resource's owner identity (for the ownership rule of its Secrets).
    pub fn owner(&self) -> OwnerId<'_> {
        OwnerId {
            api_version: api_version::<K>(),
            kind: kind_name::<K>(),
            name: &self.name,
        }
    }

    fn guard(&self, what: &str) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::Internal(format!(
                "{what} attempted in a read-only pass (--observe)"
            )));
        }
        Ok(())
    }

    /// Writes `status` (merge patch of the status subresource), stamped with the resource's current
    /// generation: kstatus reads `status.observedGeneration` beside the conditions, so every write
    /// says which generation its `Ready` is about. `Reconciling` and `Stalled` are set from `Ready`
    /// in the same write ([`KindStatus::set_progress`]), never in a write of their own.
    pub async fn write_status(&self, status: &K::Status) -> Result<(), Error> {
        self.guard("a status write")?;
        let mut st = status.clone();
        st.set_observed_generation(self.generation());
        st.set_progress(self.generation(), self.shared.clock.now());
        let _in_flight = self.begin_write();
        let written = self
            .api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": st })),
            )
            .await
            .map_err(|e| Error::kube(format!("writing the status of {}", self.key), e))?;
        Counters::inc(&self.shared.counters.status_writes);
        self.record_own(&written);
        Ok(())
    }

    /// Marks a write of the resource in flight until the guard drops (after [`Self::record_own`]).
    fn begin_write(&self) -> super::context::InFlight<'_> {
        self.shared
            .own_writes
            .begin(kind_name::<K>(), &self.namespace, &self.name)
    }

    fn record_own(&self, written: &K) {
        self.shared
            .own_writes
            .record(kind_name::<K>(), written.meta());
    }

    /// Publishes an event on the resource. Repeats of the same note fold into one series; a
    /// different note is its own event (the note is part of the action). A provider action's event
    /// (`CreatedInDigDir`, …) is counted in the replaced operator's metrics.
    pub async fn publish(&self, type_: EventType, reason: &str, note: String) {
        if self.read_only {
            return;
        }
        self.shared
            .metrics
            .event_published(kind_name::<K>(), &self.namespace, reason);
        let action = format!("{reason}-{:016x}", note_hash(&note));
        let ev = super::events::Event {
            type_,
            reason,
            action: &action,
            note: super::error::cut(&note, 1024),
        };
        if let Err(e) = self
            .shared
            .events
            .publish(&ev, &self.obj.object_ref(&()))
            .await
        {
            tracing::debug!(object = %self.key, error = %super::error::describe_kube(&e), "publishing an event failed");
        }
    }

    /// When the credential this resource's app uses expires at the provider (`None`: unknown),
    /// for `portvakt_credential_expiry_timestamp_seconds`.
    pub fn report_credential_expiry(&self, expires_at: Option<jiff::Timestamp>) {
        if !self.read_only {
            self.shared.metrics.set_credential_expiry(
                kind_name::<K>(),
                &self.namespace,
                &self.name,
                expires_at,
            );
        }
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.shared.client.clone(), &self.namespace)
    }

    /// The Secret `name` in the resource's namespace, if any.
    pub async fn get_secret(&self, name: &str) -> Result<Option<Secret>, Error> {
        Ok(secret_store::get(&self.secrets(), &self.namespace, name).await?)
    }

    /// The Secret `name` if it exists and belongs to this resource; [`SecretError::NotOwned`] if it
    /// belongs to anyone else.
    pub async fn get_owned_secret(&self, name: &str) -> Result<Option<Secret>, Error> {
        let s = self.get_secret(name).await?;
        if let Some(s) = &s {
            secret_store::check_owned(s, self.owner())?;
        }
        Ok(s)
    }

    /// The resource's app Secrets (labelled `app=<name>` and `type=<the kind's label>`), read by name
    /// from [`super::secret_index`] rather than by a label-selected list; `known` are Secrets this
    /// pass read already (not read again). Each is read, so its content is current; one deleted
    /// meanwhile is left out.
    ///
    /// A read-only pass (`--observe`, which runs without the watches) lists them by label instead.
    pub async fn app_secrets(&self, known: &[&Secret]) -> Result<Vec<Secret>, Error> {
        if self.read_only {
            let selector = format!(
                "{}={},{}={}",
                super::secret_index::LABEL_APP,
                self.name,
                super::secret_index::LABEL_TYPE,
                K::NAMES.secret_type_label
            );
            return Ok(
                secret_store::list_labelled(&self.secrets(), &self.namespace, &selector).await?,
            );
        }
        let names = self
            .shared
            .secret_index
            .names(
                K::NAMES.secret_type_label,
                &self.namespace,
                &self.name,
                super::secret_index::READY_WAIT,
            )
            .await
            .ok_or_else(|| Error::Wait {
                message: format!(
                    "waiting for the first list of the Secrets labelled type={} (the operator needs list and watch on secrets)",
                    K::NAMES.secret_type_label
                ),
                retry_in: Duration::from_secs(5),
            })?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match known
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
            {
                Some(s) => out.push((*s).clone()),
                None => out.extend(self.get_secret(&name).await?),
            }
        }
        Ok(out)
    }

    /// Creates `desired`, or updates `existing` (which must be this resource's) to it. Only call it
    /// when the content would change: every write may restart the app's Pods (Reloader).
    pub async fn write_secret(
        &self,
        existing: Option<&Secret>,
        desired: &Secret,
        annotations: AnnotationMode,
    ) -> Result<Secret, Error> {
        self.guard("a Secret write")?;
        let _in_flight = self.shared.own_writes.begin(
            "Secret",
            &self.namespace,
            desired.metadata.name.as_deref().unwrap_or_default(),
        );
        let written = secret_store::write(
            &self.secrets(),
            self.owner(),
            existing,
            desired,
            annotations,
        )
        .await?;
        self.shared.own_writes.record("Secret", &written.metadata);
        self.shared.secret_index.written(&written.metadata);
        Counters::inc(&self.shared.counters.secret_writes);
        tracing::info!(
            secret = written.metadata.name.as_deref().unwrap_or_default(),
            "Secret {}",
            if existing.is_some() {
                "updated"
            } else {
                "created"
            }
        );
        Ok(written)
    }

    /// Deletes `secret` (which must be this resource's, unchanged since it was read).
    pub async fn delete_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.guard("a Secret deletion")?;
        secret_store::delete(&self.secrets(), self.owner(), secret).await?;
        self.shared.secret_index.deleted(&secret.metadata);
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        self.shared
            .own_writes
            .forget("Secret", &self.namespace, name);
        Counters::inc(&self.shared.counters.secret_deletes);
        tracing::info!(secret = name, "Secret deleted (no workload references it)");
        Ok(())
    }

    /// Which Secrets the namespace's workloads reference, and how.
    pub async fn scan_workloads(&self) -> Result<References, Error> {
        Counters::inc(&self.shared.counters.workload_scans);
        Ok(workload_scan::scan(&self.shared.client, &self.namespace).await?)
    }

    /// `n` new keys, generated off the async threads, after every key of a higher priority.
    pub async fn generate_keys(&self, n: usize, priority: Priority) -> Result<Vec<Key>, Error> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(
                self.shared
                    .keygen
                    .generate(priority, &self.shared.counters)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The key made on idle CPU for this resource, if one is at hand; otherwise asks for one (the
    /// resource gets a pass when it is) and returns `None`. A read-only pass never asks.
    pub fn idle_key(&self) -> Option<Key> {
        let keygen = &self.shared.keygen;
        if let Some(k) = keygen.take(&self.key, &self.shared.counters) {
            return Some(k);
        }
        if let Some(wake) = self.wake.clone() {
            keygen.request(&self.key, Box::new(move || wake()));
        }
        None
    }

    /// Asks for this resource's deferred next key, made on idle CPU once `after` has passed (by the
    /// shared clock); the resource gets a pass when it is at hand. Returns whether that pass will
    /// come (asked for now or earlier), so nothing else need be scheduled for it; `false` for a
    /// read-only pass, or when the key is already at hand (the caller schedules a pass as before).
    pub fn defer_idle_key(&self, after: std::time::Duration) -> bool {
        let keygen = &self.shared.keygen;
        let Some(wake) = self.wake.clone() else {
            return false;
        };
        keygen.request_after(&self.key, after, Box::new(move || wake()))
            || keygen.is_requested(&self.key)
    }

    /// Forgets the own writes of a resource that is gone (its Secrets' are forgotten by name).
    pub fn forget_own(&self, secrets: &[String]) {
        let own = &self.shared.own_writes;
        own.forget(kind_name::<K>(), &self.namespace, &self.name);
        for s in secrets {
            own.forget("Secret", &self.namespace, s);
        }
    }
}

/// A `Resource` name of a derived CRD type: a `&'static str` behind a Cow.
fn static_str(s: std::borrow::Cow<'static, str>) -> &'static str {
    match s {
        std::borrow::Cow::Borrowed(s) => s,
        std::borrow::Cow::Owned(s) => Box::leak(s.into_boxed_str()),
    }
}

/// The kind's name (`IDPortenClient`).
pub fn kind_name<K: Kind>() -> &'static str {
    static_str(K::kind(&()))
}

/// The kind's apiVersion (`nais.io/v1`).
pub fn api_version<K: Kind>() -> &'static str {
    static_str(K::api_version(&()))
}

/// `Kind/namespace/name`.
pub fn object_key<K: Kind>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

/// FNV-1a of an event note (only to tell notes apart).
fn note_hash(note: &str) -> u64 {
    note.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn has_finalizer<K: Resource>(obj: &K, f: &str) -> bool {
    obj.meta().finalizers.iter().flatten().any(|x| x == f)
}

fn ours<K: Kind>(f: &str) -> bool {
    f == K::NAMES.finalizer || K::NAMES.legacy_finalizers.contains(&f)
}

/// Adds the kind's finalizer and drops legacy ones (optimistic: carries the resourceVersion).
async fn ensure_finalizer<K: Kind>(pass: &Pass<'_, K>) -> Result<(), Error> {
    let obj = pass.obj;
    let has_legacy = K::NAMES
        .legacy_finalizers
        .iter()
        .any(|f| has_finalizer(obj, f));
    if has_finalizer(obj, K::NAMES.finalizer) && !has_legacy {
        return Ok(());
    }
    let mut list: Vec<String> = obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| !ours::<K>(f))
        .cloned()
        .collect();
    list.push(K::NAMES.finalizer.into());
    let patch =
        json!({"metadata": {"finalizers": list, "resourceVersion": obj.meta().resource_version}});
    let _in_flight = pass.begin_write();
    let o = pass
        .api
        .patch(&pass.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| Error::kube(format!("adding the finalizer to {}", pass.key), e))?;
    pass.record_own(&o);
    Ok(())
}

/// Deletion: the kind's cleanup once, then the finalizers removed. The removal is pinned to the
/// resourceVersion; on a conflict the object is re-read and only the removal retried. Returns
/// whether this pass completed the deletion (cleanup done, finalizer removed).
async fn finalize<K: Kind>(pass: &Pass<'_, K>) -> Result<bool, Error> {
    let obj = pass.obj;
    let mine = obj.meta().finalizers.iter().flatten().any(|f| ours::<K>(f));
    if !mine {
        return Ok(false);
    }
    K::cleanup(pass).await?;
    let mut current = obj.clone();
    for _ in 0..5 {
        let rest: Vec<String> = current
            .meta()
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !ours::<K>(f))
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": current.meta().resource_version}});
        match pass
            .api
            .patch(&pass.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => match pass.api.get_opt(&pass.name).await {
                Ok(Some(o)) if o.meta().finalizers.iter().flatten().any(|f| ours::<K>(f)) => {
                    current = o;
                }
                Ok(_) => return Ok(true),
                Err(e) => {
                    return Err(Error::kube(format!("re-reading {}", pass.key), e));
                }
            },
            Err(e) => {
                return Err(Error::kube(
                    format!("removing the finalizer of {}", pass.key),
                    e,
                ));
            }
        }
    }
    Err(Error::Internal(format!(
        "removing the finalizer of {}: the object kept changing",
        pass.key
    )))
}

/// Removes the annotations a successful pass consumes (`resync`, `rotate`), or leaves what
/// [`Kind::annotation_after_pass`] keeps of one (the rest of a list). Pinned to the resourceVersion:
/// on a conflict the object is re-read and the update recomputed from its annotations, so a value
/// someone added meanwhile is not lost.
async fn consume_annotations<K: Kind>(pass: &Pass<'_, K>) -> Result<(), Error> {
    let mut current: Option<K> = None;
    for _ in 0..5 {
        let obj = current.as_ref().unwrap_or(pass.obj);
        let annotations = obj.meta().annotations.as_ref();
        let ann: serde_json::Map<String, serde_json::Value> = K::NAMES
            .consumed_annotations
            .iter()
            .filter_map(|a| {
                let value = annotations.and_then(|m| m.get(*a))?;
                let rest = K::annotation_after_pass(a, value);
                Some((
                    a.to_string(),
                    rest.map_or(serde_json::Value::Null, serde_json::Value::String),
                ))
            })
            .collect();
        if ann.is_empty() {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": ann, "resourceVersion": obj.meta().resource_version}});
        let _in_flight = pass.begin_write();
        match pass
            .api
            .patch(&pass.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(o) => {
                pass.record_own(&o);
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => match pass.api.get_opt(&pass.name).await {
                Ok(Some(o)) => current = Some(o),
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::kube(format!("re-reading {}", pass.key), e)),
            },
            Err(e) => {
                return Err(Error::kube(
                    format!("removing annotations of {}", pass.key),
                    e,
                ));
            }
        }
    }
    Err(Error::Internal(format!(
        "removing annotations of {}: the object kept changing",
        pass.key
    )))
}

/// The controller's reconcile function for kind `K`. Every log line of the pass carries the
/// resource's kind, namespace and name (the `pass` span). The pass is measured
/// ([`crate::metrics::Metrics::pass_finished`]) and tracked while in flight (`/healthz`).
pub async fn reconcile<K: Kind>(obj: Arc<K>, kc: Arc<KindContext<K>>) -> Result<Action, Error> {
    use tracing::Instrument;
    Counters::inc(&kc.shared.counters.reconciles);
    let kind = kind_name::<K>();
    let namespace = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    // Not `name`: the JSON format writes the span's own name under that key.
    let span = tracing::info_span!("pass", kind, namespace = %namespace, resource = %name);
    let worker = kc.shared.metrics.pass_started(kind);
    let in_flight = kc
        .shared
        .liveness
        .pass_started(&object_key::<K>(&namespace, &name), &kc.shared.clock);
    let started = std::time::Instant::now();
    let result = reconcile_once(obj, &kc).instrument(span).await;
    let outcome = match &result {
        Ok(Done::Managed { deleted, .. }) => Some(PassOutcome::Success { deleted: *deleted }),
        Ok(Done::NotMine) => None,
        Err(e) => Some(PassOutcome::Failed(e)),
    };
    if let Some(outcome) = outcome {
        kc.shared
            .metrics
            .pass_finished(kind, &namespace, outcome, started.elapsed());
    }
    drop((worker, in_flight));
    Counters::inc(&kc.shared.counters.passes_done);
    result.map(Done::action)
}

/// The object to pass: the cached one, unless portvakt wrote a version of it that the cache has not
/// caught up with. A pass can be triggered (another app's resync request, a Secret event) between
/// portvakt's status write and the watch event that brings it, and a pass on the status before
/// that write would redo what the write recorded (new credentials, a rotation); then the object is
/// read from the API server, once. `None`: it is gone.
async fn fresh<K: Kind>(obj: Arc<K>, shared: &Shared) -> Result<Option<Arc<K>>, Error> {
    if !shared.own_writes.is_behind(kind_name::<K>(), obj.meta()) {
        return Ok(Some(obj));
    }
    let namespace = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(shared.client.clone(), &namespace);
    let got = api.get_opt(&name).await.map_err(|e| {
        Error::kube(
            format!("reading {} {namespace}/{name}", kind_name::<K>()),
            e,
        )
    })?;
    Ok(got.map(Arc::new))
}

/// How a pass that did not fail ended.
enum Done {
    /// Not this instance's resource: left alone.
    NotMine,
    /// Done; `deleted`: its deletion was completed.
    Managed { action: Action, deleted: bool },
}

impl Done {
    fn action(self) -> Action {
        match self {
            Done::NotMine => Action::await_change(),
            Done::Managed { action, .. } => action,
        }
    }
}

async fn reconcile_once<K: Kind>(obj: Arc<K>, kc: &KindContext<K>) -> Result<Done, Error> {
    let Some(obj) = fresh(obj, &kc.shared).await? else {
        return Ok(Done::NotMine);
    };
    if !obj.is_mine(&kc.provider) {
        return Ok(Done::NotMine);
    }
    let mut pass = Pass::new(obj.as_ref(), &kc.shared, &kc.provider, kc.resync, false)?;
    let me = ObjectRef::from_obj(obj.as_ref());
    if obj.meta().deletion_timestamp.is_some() {
        kc.schedule.clear(&me);
        kc.shared.keygen.forget(&pass.key);
        let deleted = finalize(&pass).await?;
        kc.shared.backoff.reset(&pass.key);
        if deleted {
            kc.shared
                .metrics
                .forget_resource(kind_name::<K>(), &pass.namespace, &pass.name);
        }
        return Ok(Done::Managed {
            action: Action::await_change(),
            deleted,
        });
    }
    let (schedule, wake_ref) = (kc.schedule.clone(), me.clone());
    pass.wake = Some(Arc::new(move || schedule.wake(wake_ref.clone())));
    match run_pass(&pass).await {
        Ok(due) => {
            kc.shared.backoff.reset(&pass.key);
            // Nothing due: the resource is not looked at again until it changes.
            match due {
                Some(after) => kc.schedule.set(me, after),
                None => kc.schedule.clear(&me),
            }
            Ok(Done::Managed {
                action: Action::await_change(),
                deleted: false,
            })
        }
        Err(err) => {
            // The retry comes from the error policy's backoff; it schedules anew.
            kc.schedule.clear(&me);
            report_failure(&pass, &err).await;
            Err(err)
        }
    }
}

/// One pass; returns when the next one is due (`None`: nothing is due).
async fn run_pass<K: Kind>(pass: &Pass<'_, K>) -> Result<Option<Duration>, Error> {
    pass.obj.validate(pass.provider)?;
    ensure_finalizer(pass).await?;
    // A generation not seen yet is reported at once as not Ready (the provider may be slow or
    // retrying): kstatus, Flux and Argo CD then see it in progress rather than a stale Ready.
    if pass.obj.status().and_then(|s| s.observed_generation()) != pass.generation() {
        let st = K::failure_status(
            pass.obj.status(),
            pass.generation(),
            pass.shared.clock.now(),
            crate::conditions::reason::PENDING,
            &format!(
                "Synchronizing generation {} with {}",
                pass.generation().unwrap_or_default(),
                <K::Provider as super::Provider>::name(pass.provider)
            ),
        );
        pass.write_status(&st).await?;
    }
    let applied = K::apply(pass).await?;
    if applied.complete {
        consume_annotations(pass).await?;
    }
    if let Some(st) = &applied.status {
        pass.write_status(st).await?;
    }
    if applied.complete && pass.annotation_true(K::NAMES.resync_annotation) {
        K::after_success(pass, &applied.changes).await;
    }
    Ok(applied.requeue)
}

/// Reports a failed pass: `Ready=False` for this generation with the error's reason and message,
/// and a Warning event — both only when they say something new.
async fn report_failure<K: Kind>(pass: &Pass<'_, K>, err: &Error) {
    let message = err.message();
    // Re-read: the pass may have written status (a client ID) before it failed.
    let current = pass.api.get_status(&pass.name).await.ok();
    let prev = current
        .as_ref()
        .and_then(|o| o.status())
        .or(pass.obj.status());
    let mut st = K::failure_status(
        prev,
        pass.generation(),
        pass.shared.clock.now(),
        err.reason(),
        &message,
    );
    st.set_observed_generation(pass.generation());
    // As written (Reconciling/Stalled included), so an unchanged failure is not written again.
    st.set_progress(pass.generation(), pass.shared.clock.now());
    if prev == Some(&st) {
        return;
    }
    if let Err(e) = pass.write_status(&st).await {
        tracing::debug!(object = %pass.key, error = %e, "writing the failure status failed");
    }
    if !matches!(err, Error::Wait { .. }) {
        pass.publish(EventType::Warning, events::FAILED_SYNCHRONIZATION, message)
            .await;
    }
}

/// The controller's error policy: count, log, back off (Retry-After honoured; a stalled resource is
/// retried at the longest backoff, since the change it waits for may come without an event).
pub fn error_policy<K: Kind>(obj: Arc<K>, err: &Error, kc: Arc<KindContext<K>>) -> Action {
    Counters::inc(&kc.shared.counters.failures);
    let key = object_key::<K>(
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
    );
    let wait = match err {
        Error::Wait { retry_in, .. } => *retry_in,
        e if e.is_stalled() => MAX_BACKOFF,
        e => kc.shared.backoff.fail(&key, e.retry_after()),
    };
    if matches!(err, Error::Wait { .. }) {
        tracing::info!(object = %key, reason = %err, retry_in = ?wait, "waiting");
    } else {
        tracing::warn!(object = %key, error = %err, error_kind = err.metric_label(), retry_in = ?wait, "reconcile failed");
    }
    Action::requeue(wait)
}

/// Whether a Secret write failed because someone else owns the Secret.
pub fn is_not_owned(e: &Error) -> bool {
    matches!(e, Error::Secret(SecretError::NotOwned { .. }))
}
