//! kube-runtime wiring of one kind, shared by every kind: the watch of the resources (every change
//! reaches the reflector store; a reconcile only for a change that calls for one and that is not
//! portvakt's own write echoed back), the metadata-only watch of the Secrets portvakt wrote for the
//! kind (selected by their `type` label, so no other Secret is watched; their names feed
//! [`super::secret_index`]), and the resources
//! whose next pass falls due ([`super::schedule`]). Nothing else starts a pass: an unchanged resource
//! with nothing due is not reconciled at all.

use std::sync::Arc;

use futures::StreamExt;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::context::OwnWrites;
use super::kind::Kind;
use super::pass::{self, KindContext, kind_name};
use super::schedule;

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

/// The annotation `kubectl apply` keeps the whole last-applied manifest in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the store keeps of a resource: everything but its `managedFields` and kubectl's
/// last-applied copy of the manifest, which nothing in portvakt reads (together often larger than the
/// rest of the object; at 10,000 resources they would be most of the store).
fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// One kind's controller: its reflector store and the future that runs it until `shutdown`.
pub fn controller_for<K: Kind>(
    kc: Arc<KindContext<K>>,
    concurrency: u16,
    shutdown: CancellationToken,
) -> (
    Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = kc.shared.client.clone();
    let api: Api<K> = Api::all(client.clone());
    let secrets: Api<PartialObjectMeta<Secret>> = Api::all(client);
    let selector = format!("type={}", K::NAMES.secret_type_label);
    let (reader, writer) = reflector::store();
    let own = kc.shared.clone();
    let resources = watcher(api, watcher::Config::default())
        .modify(trim::<K>)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash::<K>, PredicateConfig::default())
        .try_filter(move |obj| {
            let (own, echo) = (own.clone(), OwnWrites::echo(kind_name::<K>(), obj.meta()));
            async move { !own.own_writes.is_own_settled(echo).await }
        });
    // A change or deletion of an owned Secret by anyone else triggers its owner's reconcile;
    // portvakt's own writes echoed back do not. Deletions always trigger.
    let own = kc.shared.clone();
    let index = kc.shared.clone();
    let owned_secrets = watcher(secrets, watcher::Config::default().labels(&selector))
        // The index first, so the pass an event triggers already finds the Secret there.
        .inspect_ok(move |ev| index.secret_index.observe(K::NAMES.secret_type_label, ev))
        .try_filter(move |ev| {
            let own = own.clone();
            let echo = match ev {
                watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                    OwnWrites::echo("Secret", &s.metadata)
                }
                _ => None,
            };
            async move { !own.own_writes.is_own_settled(echo).await }
        })
        .touched_objects();
    let controller = Controller::for_stream(resources, reader)
        .owns_stream(owned_secrets)
        .reconcile_on(kc.schedule.clone().triggers(schedule::TICK))
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    let store = controller.store();
    let fut = controller
        .run(pass::reconcile::<K>, pass::error_policy::<K>, kc)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        });
    (store, fut)
}
