//! Leader election on a `coordination.k8s.io/v1` Lease: of the replicas, only the one holding the
//! Lease runs the controllers and writes; the others stand by (ready, reconciling nothing) and one
//! takes over once the leader has not renewed for the lease duration.
//!
//! The algorithm is client-go's (`tools/leaderelection`), which controller-runtime, digdirator
//! and azurerator use:
//! - a candidate reads the Lease; one held by another replica counts as expired only when the
//!   candidate has seen it unchanged (same resourceVersion) for the lease duration by its own
//!   clock (no comparison of clocks across nodes); an expired or free Lease is taken, a held one
//!   renewed, with an update pinned to the resourceVersion read (a conflict means someone else won);
//! - the leader renews every retry period. If no renewal has succeeded within the renew deadline
//!   (shorter than the lease duration) of the last successful one's start, it has lost the Lease:
//!   its controllers are aborted at once, its [`WriteGate`] is closed (every Kubernetes and provider
//!   write is refused from the renew deadline on, even if a task is still running), and
//!   [`run_elected`] returns [`LeaseLost`], on which the binary exits (caches and provider state
//!   may be stale after another leader's work; a fresh start re-joins as a standby).
//! - on a stop (SIGTERM) the controllers drain, the Lease is renewed meanwhile, then released, so
//!   a standby takes over at its next retry instead of after the lease duration.
//!
//! So a standby starts writing no earlier than the lease duration after the last renewal it saw,
//! and the old leader stops writing at its renew deadline, before that.
//!
//! Why not a crate: kube-lease-manager (the one maintained crate on kube 5) never reports a lost
//! lease while renewals fail (its watch loop retries errors and keeps the last state, so a leader
//! cut off from the API server keeps believing it leads while a standby takes over), has no renew
//! deadline, renews with patches not pinned to the resourceVersion, compares the holder's
//! wall-clock `renewTime` with the local clock (safe only within its grace period of clock skew),
//! and uses the system clock, so tests could not move time with the shared [`Clock`].
//! kube-leader-election is on kube 4 and kubert's lease on kube 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::task::AbortOnDropHandle;

use super::context::Context;
use super::error::describe_kube;
use super::{RunOptions, run};
use crate::clock::Clock;

/// The Lease and its timing.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The Lease's name (the release's, e.g. `portvakt`).
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its Pod's name).
    pub identity: String,
    /// How long a standby waits, after the last renewal it saw, before taking the Lease.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timing: the deadline must end before a standby may take over, and renewals
    /// must fit before the deadline. The problem is `(setting, message)`, the setting named as its
    /// flag's suffix (`renew-deadline`) or, for the Lease's identity, `name`, `namespace`, `identity`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.lease_duration.subsec_nanos() != 0
            || self.lease_duration.is_zero()
            || i32::try_from(self.lease_duration.as_secs()).is_err()
        {
            return Err((
                "lease-duration",
                format!(
                    "{:?} is not a whole number of seconds from 1s (the Lease stores seconds)",
                    self.lease_duration
                ),
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err((
                "renew-deadline",
                format!(
                    "{:?} must be shorter than the lease duration ({:?}), or a standby could start before the leader stops",
                    self.renew_deadline, self.lease_duration
                ),
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err((
                "retry-period",
                format!(
                    "{:?} must be above 0 and shorter than the renew deadline ({:?})",
                    self.retry_period, self.renew_deadline
                ),
            ));
        }
        for (what, v) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("identity", &self.identity),
        ] {
            if v.trim().is_empty() {
                return Err((what, "is empty".into()));
            }
        }
        Ok(())
    }
}

/// Whether this replica may write now: open for good without leader election; with it, open only
/// until the renew deadline of the last successful renewal (by the shared clock), and closed for
/// good once the Lease is lost. Checked before every write ([`WriteGateLayer`] for Kubernetes, the
/// provider clients' hooks for the providers).
#[derive(Debug)]
pub struct WriteGate {
    clock: Clock,
    /// Writes are allowed while the clock is before this (Unix milliseconds).
    until_ms: AtomicI64,
}

impl WriteGate {
    /// Always open (no leader election: the only replica).
    pub fn open(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            until_ms: AtomicI64::new(i64::MAX),
        })
    }

    /// Closed until a Lease is acquired.
    pub fn closed(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            until_ms: AtomicI64::new(i64::MIN),
        })
    }

    pub fn may_write(&self) -> bool {
        self.clock.now().as_millisecond() < self.until_ms.load(Ordering::SeqCst)
    }

    fn allow_until(&self, until: Timestamp) {
        self.until_ms
            .store(until.as_millisecond(), Ordering::SeqCst);
    }

    fn close(&self) {
        self.until_ms.store(i64::MIN, Ordering::SeqCst);
    }
}

/// The message of a write refused by a closed [`WriteGate`].
pub const NOT_LEADER: &str = "not sent: this replica does not hold the leader Lease";

/// A tower layer for the Kubernetes client: every request but a read (GET, HEAD, OPTIONS) is
/// refused, unsent, while the [`WriteGate`] is closed. The Lease's own client does without it.
#[derive(Clone, Debug)]
pub struct WriteGateLayer(pub Arc<WriteGate>);

impl<S> tower::Layer<S> for WriteGateLayer {
    type Service = WriteGateService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WriteGateService {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// See [`WriteGateLayer`].
#[derive(Clone, Debug)]
pub struct WriteGateService<S> {
    inner: S,
    gate: Arc<WriteGate>,
}

impl<S, B> tower::Service<http::Request<B>> for WriteGateService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<S::Response, tower::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let read = matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !read && !self.gate.may_write() {
            let what = format!("{} {}: {NOT_LEADER}", req.method(), req.uri().path());
            return Box::pin(async move { Err(what.into()) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Leader election for [`run_elected`].
pub struct Election {
    /// A client without the [`WriteGateLayer`] (the Lease is written while the gate is closed).
    pub client: kube::Client,
    pub settings: LeaseSettings,
    /// The gate the operator's clients check; opened while leading.
    pub gate: Arc<WriteGate>,
}

/// The leader lost its Lease (renewals failed until the renew deadline, or another replica holds
/// it): the controllers were stopped; the process should exit.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {namespace}/{name}: {why}")]
pub struct LeaseLost {
    pub namespace: String,
    pub name: String,
    pub why: String,
}

/// A Lease version as this replica first saw it.
#[derive(Clone, Debug)]
struct Observed {
    resource_version: Option<String>,
    holder: Option<String>,
    duration: Duration,
    /// When this replica first saw this version (its own clock).
    seen_at: Timestamp,
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease (acquired or renewed).
    Holding,
    /// Another replica holds it, validly.
    HeldBy(String),
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    clock: Clock,
    observed: Option<Observed>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings, clock: Clock) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            clock,
            observed: None,
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Records `lease` as seen at `now` unless this version was seen before; returns the record.
    fn observe(&mut self, lease: &Lease, now: Timestamp) -> Observed {
        let rv = lease.metadata.resource_version.clone();
        if let Some(o) = &self.observed
            && o.resource_version == rv
        {
            return o.clone();
        }
        let spec = lease.spec.clone().unwrap_or_default();
        let observed = Observed {
            resource_version: rv,
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.settings.lease_duration, Duration::from_secs),
            seen_at: now,
        };
        self.observed = Some(observed.clone());
        observed
    }

    /// Takes the Lease if it is free or expired, renews it if this replica holds it. `now` is when
    /// the attempt started (the renew deadline counts from it).
    async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<Attempt, kube::Error> {
        let me = self.settings.identity.clone();
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, now);
                    Ok(Attempt::Holding)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldBy(
                    "another replica (it created the Lease first)".into(),
                )),
                Err(e) => Err(e),
            };
        };
        let observed = self.observe(&lease, now);
        let mine = observed.holder.as_deref() == Some(me.as_str());
        if let Some(holder) = &observed.holder
            && !mine
            && after(observed.seen_at, observed.duration) > now
        {
            return Ok(Attempt::HeldBy(holder.clone()));
        }
        let mut spec = lease.spec.clone().unwrap_or_default();
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(me);
        spec.lease_duration_seconds = Some(self.lease_seconds());
        spec.renew_time = Some(MicroTime(now));
        let mut update = lease.clone();
        update.spec = Some(spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &update)
            .await
        {
            Ok(written) => {
                self.observe(&written, now);
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldBy(
                "another replica (it wrote the Lease first)".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on a stop), so a standby takes it at its next look. Only a Lease this
    /// replica still holds, at the version it last wrote, is changed.
    async fn release(&mut self) {
        let Ok(Some(lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        let now = self.clock.now();
        let mut update = lease.clone();
        update.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..spec
        });
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &update)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.settings.name, "released the leader Lease"),
            Err(e) => {
                tracing::warn!(lease = %self.settings.name, error = %describe_kube(&e), "releasing the leader Lease failed; a standby takes over when it expires")
            }
        }
    }
}

/// A retry period with client-go's jitter (up to 20% longer), so standbys do not look in step.
fn jittered(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.2))
}

/// Runs the controllers ([`run`]) while this replica holds the Lease; stands by until then.
/// Returns `Ok` after a stop (`opts.shutdown`: controllers drained, Lease released), or
/// [`LeaseLost`] when the Lease was lost while leading (controllers aborted, writes refused).
pub async fn run_elected(
    ctx: Arc<Context>,
    opts: RunOptions,
    election: Election,
) -> Result<(), LeaseLost> {
    let Election {
        client,
        settings,
        gate,
    } = election;
    let clock = ctx.clock.clone();
    let metrics = ctx.metrics.clone();
    let mut elector = Elector::new(client, settings.clone(), clock.clone());
    let lease = format!("{}/{}", settings.namespace, settings.name);
    metrics.set_leader(&settings.name, false);
    gate.close();

    // Standing by.
    let mut last_holder = None;
    let mut last_error = None;
    let deadline = loop {
        if opts.shutdown.is_cancelled() {
            return Ok(());
        }
        let now = clock.now();
        match elector.try_acquire_or_renew(now).await {
            Ok(Attempt::Holding) => break after(now, settings.renew_deadline),
            Ok(Attempt::HeldBy(holder)) => {
                if last_holder.as_ref() != Some(&holder) {
                    tracing::info!(lease = %lease, holder = %holder, "standing by: another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(e) => {
                // Once per distinct error: a standby retries every retry period.
                let error = describe_kube(&e);
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(lease = %lease, error = %error, "reading the leader Lease failed; retrying");
                    last_error = Some(error);
                }
            }
        }
        tokio::select! {
            _ = opts.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(jittered(settings.retry_period)) => {}
        }
    };
    let mut deadline = deadline;
    gate.allow_until(deadline);
    metrics.set_leader(&settings.name, true);
    tracing::info!(lease = %lease, identity = %settings.identity, "leading: starting the controllers");

    // Leading: the controllers run until a stop, or until the Lease is lost.
    let leading = RunOptions {
        shutdown: opts.shutdown.child_token(),
        ..opts.clone()
    };
    let mut controllers = AbortOnDropHandle::new(tokio::spawn(run(ctx.clone(), leading)));
    let lost = loop {
        tokio::select! {
            _ = &mut controllers => break None,
            _ = tokio::time::sleep(settings.retry_period) => {}
        }
        let now = clock.now();
        if now >= deadline {
            break Some("no renewal succeeded within the renew deadline".to_string());
        }
        let left = Duration::try_from(deadline.duration_since(now)).unwrap_or_default();
        match tokio::time::timeout(left, elector.try_acquire_or_renew(now)).await {
            Ok(Ok(Attempt::Holding)) => {
                deadline = after(now, settings.renew_deadline);
                gate.allow_until(deadline);
            }
            Ok(Ok(Attempt::HeldBy(holder))) => break Some(format!("{holder} holds it now")),
            Ok(Err(e)) => {
                tracing::warn!(lease = %lease, error = %describe_kube(&e), "renewing the leader Lease failed; retrying until the renew deadline")
            }
            Err(_) => break Some("the renewal did not finish within the renew deadline".into()),
        }
        if clock.now() >= deadline {
            break Some("no renewal succeeded within the renew deadline".to_string());
        }
    };
    match lost {
        None => {
            // Stopped (or the controllers ended): give the Lease to a standby.
            elector.release().await;
            gate.close();
            metrics.set_leader(&settings.name, false);
            Ok(())
        }
        Some(why) => {
            gate.close();
            drop(controllers);
            metrics.set_leader(&settings.name, false);
            metrics.forget_resources();
            tracing::error!(lease = %lease, why = %why, "lost the leader Lease: the controllers were stopped and no more writes are sent");
            Err(LeaseLost {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
                why,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_checked() {
        let ok = LeaseSettings::new("portvakt", "ns", "pod-a");
        assert_eq!(ok.validate(), Ok(()));
        let mut s = ok.clone();
        s.renew_deadline = s.lease_duration;
        assert_eq!(s.validate().unwrap_err().0, "renew-deadline");
        let mut s = ok.clone();
        s.retry_period = s.renew_deadline;
        assert_eq!(s.validate().unwrap_err().0, "retry-period");
        let mut s = ok.clone();
        s.lease_duration = Duration::from_millis(1500);
        let (setting, message) = s.validate().unwrap_err();
        assert_eq!(setting, "lease-duration");
        assert!(message.contains("whole number of seconds"), "{message}");
        let mut s = ok;
        s.identity = " ".into();
        assert_eq!(s.validate().unwrap_err().0, "identity");
    }

    #[test]
    fn the_gate_follows_the_deadline() {
        let clock = Clock::system();
        assert!(WriteGate::open(clock.clone()).may_write());
        let gate = WriteGate::closed(clock.clone());
        assert!(!gate.may_write());
        gate.allow_until(after(clock.now(), Duration::from_secs(10)));
        assert!(gate.may_write());
        clock.advance(Duration::from_secs(10));
        assert!(!gate.may_write(), "closed from the deadline on");
    }
}
