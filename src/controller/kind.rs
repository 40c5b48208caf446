//! The seam every kind plugs into.
//!
//! A kind implements [`Kind`]: its CRD type, its status ([`KindStatus`]), its names (finalizer,
//! annotations, Secret label: [`KindNames`]) and its provider-specific steps ([`Kind::apply`],
//! [`Kind::cleanup`], [`Kind::observe`]). Everything else is written once, in this module's siblings,
//! and used by every kind: the watches and the own-write filter ([`super::wiring`]), backoff, the
//! finalizer, consuming annotations, status writes with `observedGeneration`, events and failure
//! reporting ([`super::pass`]), the one Secret writer with the one ownership rule
//! ([`super::secret_store`]), the workload scanner ([`super::workload_scan`]), key generation
//! ([`super::keygen`]), the schedule of passes that fall due ([`super::schedule`]), the periodic pass (one [`Provider::periodic_pass`] per provider) and the
//! `--observe` report ([`super::observe`]).
//!
//! Adding a kind: implement [`Kind`] for its CRD type (and [`Provider`] for its provider's shared
//! state), then add it to [`super::builtin_kinds`].

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::reflector::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Shared;
use super::error::Error;
use super::pass::Pass;
use crate::core::observe::Action as ObserveAction;

/// The status fields every kind's status has.
pub trait KindStatus:
    Clone + Default + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation(&self) -> Option<i64>;
    fn set_observed_generation(&mut self, generation: Option<i64>);

    /// kstatus' `Reconciling` and `Stalled`, derived from `Ready` ([`crate::conditions::set_progress`]).
    /// The shared flow calls it on every status write; a kind need not.
    fn set_progress(&mut self, generation: Option<i64>, now: Timestamp) -> bool {
        crate::conditions::set_progress(self.conditions_mut(), generation, now)
    }
}

/// What a kind's finalizer, annotations and Secrets are called.
#[derive(Clone, Copy, Debug)]
pub struct KindNames {
    /// The finalizer portvakt adds.
    pub finalizer: &'static str,
    /// Older finalizers of the anchor, replaced by [`Self::finalizer`] and honoured on deletion.
    pub legacy_finalizers: &'static [&'static str],
    /// Annotations a successful pass consumes (removes), e.g. `resync` and `rotate`.
    pub consumed_annotations: &'static [&'static str],
    /// The annotation asking for a full pass (set by the periodic pass when it finds drift).
    pub resync_annotation: &'static str,
    /// The `type` label on the Secrets portvakt writes for this kind; the owned-Secret watch selects
    /// by it (metadata only), so no other Secret is watched or cached.
    pub secret_type_label: &'static str,
}

/// The shared state of one provider (Digdir, Entra): its client, caches and indexes.
pub trait Provider: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// The periodic steady-state pass over this provider's resources: find drift made by hand at
    /// the provider and have it repaired. Runs every resync period; the default does nothing.
    fn periodic_pass<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, ()> {
        let _ = shared;
        Box::pin(async {})
    }

    /// Work of the provider on its own schedule while the controllers run (Entra's sweep for
    /// pre-authorized apps in other clusters), until `shutdown`. Not run by `--observe`. Default:
    /// none.
    fn background(
        self: std::sync::Arc<Self>,
        shared: std::sync::Arc<Shared>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let _ = (shared, shutdown);
        Box::pin(async {})
    }
}

/// What a successful pass of a kind's pipeline ended with.
#[derive(Debug)]
pub struct Applied<S> {
    /// The status to write (`None`: the current status is still right; nothing is written).
    pub status: Option<S>,
    /// The next pass is due after this long, by the shared clock (`None`: nothing is due; the
    /// resource is not reconciled again until it, or a Secret it owns, changes). No blanket resync:
    /// a kind says here when its next thing is due (a renewal, a periodic full check, a wait).
    pub requeue: Option<Duration>,
    /// What the pass changed, in words (reported when it repaired drift).
    pub changes: Vec<String>,
    /// Whether the pass did everything it was asked for. An unfinished pass (a rotation that waits
    /// for its key to age) keeps the annotations that asked (`rotate`, `resync`) for its retry.
    pub complete: bool,
}

/// One kind, as the shared wiring sees it.
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Status: KindStatus;
    type Provider: Provider;
    const NAMES: KindNames;

    fn status(&self) -> Option<&Self::Status>;

    /// Whether this instance manages the resource at all. One that is not (another tenant's, say) is
    /// left entirely alone: no finalizer, no status, no event.
    fn is_mine(&self, provider: &Self::Provider) -> bool {
        let _ = provider;
        true
    }

    /// Checks everything about the spec that can be checked before anything is written anywhere.
    fn validate(&self, provider: &Self::Provider) -> Result<(), Error>;

    /// The kind's pipeline for a resource that is not being deleted (validated, finalizer in place).
    fn apply<'a>(
        pass: &'a Pass<'a, Self>,
    ) -> impl Future<Output = Result<Applied<Self::Status>, Error>> + Send + 'a;

    /// Deletion: remove what the resource registered at the provider (unless it is to be preserved).
    /// Runs once per deletion; the shared code removes the finalizer after it.
    fn cleanup<'a>(pass: &'a Pass<'a, Self>)
    -> impl Future<Output = Result<(), Error>> + Send + 'a;

    /// `--observe`: what a pass would do, reading only.
    fn observe<'a>(
        pass: &'a Pass<'a, Self>,
    ) -> impl Future<Output = Result<Vec<ObserveAction>, Error>> + Send + 'a;

    /// The status after a failed pass: `prev` with `Ready=False` (`reason`, `message`) and whatever
    /// the kind's anchor records on failure.
    fn failure_status(
        prev: Option<&Self::Status>,
        generation: Option<i64>,
        now: Timestamp,
        reason: &str,
        message: &str,
    ) -> Self::Status;

    /// After a successful pass (e.g. to report a drift repair). Default: nothing.
    fn after_success<'a>(
        pass: &'a Pass<'a, Self>,
        changes: &'a [String],
    ) -> impl Future<Output = ()> + Send + 'a {
        let _ = (pass, changes);
        async {}
    }

    /// What a successful pass leaves of consumed annotation `name` whose value is `value` (`None`:
    /// remove it). Default: removed (azurerator's `resync` list loses only its first element).
    fn annotation_after_pass(name: &str, value: &str) -> Option<String> {
        let _ = (name, value);
        None
    }

    /// Hands the provider this kind's reflector store (for its periodic pass). Default: unused.
    fn attach_store(provider: &Self::Provider, store: Store<Self>) {
        let _ = (provider, store);
    }
}
