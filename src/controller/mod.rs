//! The controller layer: kube-runtime wiring shared by every kind, and the kinds plugged into it.
//!
//! | file | job |
//! |---|---|
//! | [`kind`] | the seam: the [`Kind`] and [`Provider`] traits a kind implements |
//! | [`context`] | what every pass shares ([`Shared`]) and the operator's [`Context`] (shared + providers) |
//! | [`pass`] | one pass: the shared flow (finalizer, validation, status, failure reporting) and the IO helpers a pipeline uses |
//! | [`wiring`] | the watches of one kind, the own-write filter and the trigger hash |
//! | [`error`] | every error with its condition reason and metric label, in one place |
//! | [`secret_store`] | the one Secret writer, with the one ownership rule |
//! | [`workload_scan`] | which Secrets the workloads of a namespace reference |
//! | [`keygen`] | key generation: a prioritised queue (first keys before next keys), off the async threads |
//! | [`schedule`] | when each resource's next pass is due, by the shared clock (nothing due: no pass) |
//! | [`periodic`] | the periodic steady-state pass of each provider |
//! | [`observe`] | the `--observe` report |
//! | [`leader`] | leader election on a Lease: only the leader runs the controllers and writes |
//! | [`liveness`] | whether the controllers are stuck (`/healthz`) |
//! | [`digdir_kinds`] | IDPortenClient and MaskinportenClient: the Digdir provider and its pipeline |
//! | [`entra_kinds`] | AzureAdApplication: the Entra provider, its pipeline, drift, the sweep |
//!
//! ```text
//! let ctx = Context::new(Shared::new(kube_client, clock, "dev-gcp")).with_provider(digdir);
//! controller::run(Arc::new(ctx), RunOptions::default()).await;           // until cancelled
//! let report = controller::observe(&ctx, &RunOptions::default()).await?;  // --observe: no writes
//! ```

pub mod context;
pub mod digdir_kinds;
pub mod entra_kinds;
pub mod error;
pub mod events;
pub mod keygen;
pub mod kind;
pub mod leader;
pub mod liveness;
pub mod observe;
pub mod pass;
pub mod periodic;
pub mod schedule;
pub mod secret_index;
pub mod secret_store;
pub mod wiring;
pub mod workload_scan;

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use context::{Context, Counters, Shared};
pub use error::Error;
pub use kind::{Applied, Kind, KindNames, KindStatus, Provider};
pub use pass::{KindContext, Pass};

use crate::crd::{AzureAdApplication, IDPortenClient, MaskinportenClient};

/// Options of [`run`] and [`observe`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Kinds turned off (by kind name, e.g. `IDPortenClient`). A kind whose provider is not
    /// configured does not run either.
    pub disabled: BTreeSet<String>,
    /// Concurrent reconciles per controller.
    pub concurrency: u16,
    /// Each provider's periodic steady-state pass (one list for all resources) runs this often. A
    /// resource itself is reconciled only when it changes or something is due (its pass says when);
    /// what no watch reports (say, workloads still referencing an old Secret) is looked at again
    /// after this long.
    pub resync_period: Duration,
    /// Stops the controllers when cancelled.
    pub shutdown: CancellationToken,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            disabled: BTreeSet::new(),
            concurrency: 16,
            resync_period: Duration::from_secs(3600),
            shutdown: CancellationToken::new(),
        }
    }
}

/// A kind as the operator runs it: started, observed, counted.
pub trait KindEntry: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Whether the kind's provider is configured in `ctx`.
    fn available(&self, ctx: &Context) -> bool;
    /// Starts the kind's controller (its provider must be configured).
    fn start(&self, ctx: &Arc<Context>, opts: &RunOptions) -> Option<tokio::task::JoinHandle<()>>;
    /// Adds the kind's resources to an `--observe` report.
    fn observe<'a>(
        &'a self,
        ctx: &'a Context,
        report: &'a mut crate::core::observe::Report,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// The [`KindEntry`] of kind `K`.
pub struct Entry<K>(PhantomData<fn() -> K>);

/// The entry of kind `K` (for [`run_kinds`]).
pub fn entry<K: Kind>() -> Box<dyn KindEntry> {
    Box::new(Entry::<K>(PhantomData))
}

impl<K: Kind> KindEntry for Entry<K> {
    fn kind(&self) -> &'static str {
        pass::kind_name::<K>()
    }

    fn available(&self, ctx: &Context) -> bool {
        ctx.provider::<K::Provider>().is_some()
    }

    fn start(&self, ctx: &Arc<Context>, opts: &RunOptions) -> Option<tokio::task::JoinHandle<()>> {
        let provider = ctx.provider::<K::Provider>()?;
        let kc = Arc::new(KindContext::<K> {
            shared: ctx.shared.clone(),
            provider: provider.clone(),
            resync: opts.resync_period,
            schedule: Arc::new(schedule::Schedule::new(ctx.shared.clock.clone())),
        });
        let (store, fut) = wiring::controller_for::<K>(kc, opts.concurrency, opts.shutdown.clone());
        ctx.metrics.track_kind::<K>(opts.concurrency, store.clone());
        K::attach_store(&provider, store);
        let shared = ctx.shared.clone();
        let shutdown = opts.shutdown.clone();
        Some(tokio::spawn(async move {
            use futures::FutureExt;
            let ended = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
            let kind = self::pass::kind_name::<K>();
            match ended {
                Err(_) => shared.liveness.controller_stopped(kind, "it panicked"),
                Ok(()) if !shutdown.is_cancelled() => {
                    shared.liveness.controller_stopped(kind, "its watch ended")
                }
                Ok(()) => {}
            }
        }))
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Context,
        report: &'a mut crate::core::observe::Report,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(observe::observe_kind::<K>(ctx, report))
    }
}

/// Every kind portvakt runs. Adding a kind: implement [`Kind`] for it and list it here.
pub fn builtin_kinds() -> Vec<Box<dyn KindEntry>> {
    vec![
        entry::<IDPortenClient>(),
        entry::<MaskinportenClient>(),
        entry::<AzureAdApplication>(),
    ]
}

fn enabled<'a>(
    kinds: &'a [Box<dyn KindEntry>],
    ctx: &'a Context,
    opts: &'a RunOptions,
) -> impl Iterator<Item = &'a dyn KindEntry> {
    kinds
        .iter()
        .map(|k| k.as_ref())
        .filter(|k| !opts.disabled.contains(k.kind()) && k.available(ctx))
}

/// The kinds that run with this context and these options.
pub fn enabled_kinds(ctx: &Context, opts: &RunOptions) -> Vec<&'static str> {
    let kinds = builtin_kinds();
    enabled(&kinds, ctx, opts).map(|k| k.kind()).collect()
}

/// How many resources there are of each kind portvakt owns a CRD for but that no enabled
/// controller handles (metadata only, paginated). They are left entirely alone — no event,
/// finalizer or status — since another operator (azurerator, say, during a staged switch) may still
/// own them; this only counts them.
pub async fn count_unhandled(
    ctx: &Context,
    opts: &RunOptions,
) -> Result<Vec<(&'static str, u64)>, Error> {
    let handled = enabled_kinds(ctx, opts);
    let mut out = Vec::new();
    for (kind, count) in [
        (
            "IDPortenClient",
            count_of::<IDPortenClient>(ctx, &handled).await,
        ),
        (
            "MaskinportenClient",
            count_of::<MaskinportenClient>(ctx, &handled).await,
        ),
        (
            "AzureAdApplication",
            count_of::<AzureAdApplication>(ctx, &handled).await,
        ),
    ] {
        if let Some(n) = count? {
            out.push((kind, n));
        }
    }
    ctx.metrics.set_unhandled(&out);
    Ok(out)
}

/// The number of `K` resources, unless the kind is handled (`None`). A kind whose CRD is not
/// installed counts 0.
async fn count_of<K>(ctx: &Context, handled: &[&str]) -> Result<Option<u64>, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).to_string();
    if handled.contains(&kind.as_str()) {
        return Ok(None);
    }
    let api: kube::Api<kube::api::PartialObjectMeta<K>> = kube::Api::all(ctx.client.clone());
    let mut n = 0u64;
    let mut token: Option<String> = None;
    loop {
        let mut lp = kube::api::ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = match api.list_metadata(&lp).await {
            Ok(p) => p,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Some(0)),
            Err(e) => return Err(Error::kube(format!("counting {kind} resources"), e)),
        };
        n += page.items.len() as u64;
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(Some(n)),
        }
    }
}

/// Runs the enabled built-in kinds' controllers, and each provider's periodic pass, until
/// `opts.shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, opts: RunOptions) {
    run_kinds(ctx, builtin_kinds(), opts).await
}

/// [`run`] for a given list of kinds. Dropping the future stops every controller at once (their
/// tasks are aborted, as when the leader Lease is lost).
pub async fn run_kinds(ctx: Arc<Context>, kinds: Vec<Box<dyn KindEntry>>, opts: RunOptions) {
    use tokio_util::task::AbortOnDropHandle;
    let mut handles = Vec::new();
    for k in enabled(&kinds, &ctx, &opts) {
        if let Some(h) = k.start(&ctx, &opts) {
            tracing::debug!(kind = k.kind(), "controller started");
            handles.push(AbortOnDropHandle::new(h));
        }
    }
    handles.push(AbortOnDropHandle::new(tokio::spawn(periodic::run(
        ctx.clone(),
        opts.resync_period,
        opts.shutdown.clone(),
    ))));
    for p in ctx.providers() {
        handles.push(AbortOnDropHandle::new(tokio::spawn(
            p.clone()
                .background(ctx.shared.clone(), opts.shutdown.clone()),
        )));
    }
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!(error = %e, "controller task ended abnormally");
        }
    }
}

/// `--observe`: what the controllers would do for every resource, making no writes anywhere
/// (Kubernetes and the providers are only read).
pub async fn observe(
    ctx: &Context,
    opts: &RunOptions,
) -> Result<crate::core::observe::Report, Error> {
    observe_kinds(ctx, &builtin_kinds(), opts).await
}

/// [`observe`] for a given list of kinds.
pub async fn observe_kinds(
    ctx: &Context,
    kinds: &[Box<dyn KindEntry>],
    opts: &RunOptions,
) -> Result<crate::core::observe::Report, Error> {
    let mut report = crate::core::observe::Report::default();
    for k in enabled(kinds, ctx, opts) {
        k.observe(ctx, &mut report).await?;
    }
    Ok(report)
}
