//! When each resource's next pass is due, by the shared clock.
//!
//! A resource is reconciled when it (or a Secret it owns) changes, and otherwise only when something
//! is due: the pass says when ([`super::Applied::requeue`]: a key renewal, the daily full
//! synchronisation, a deferred next key, a rotation waiting for its key to age), and the resource is
//! entered here. Nothing due: no entry, no pass — the steady state costs nothing per resource.
//!
//! The schedule goes by the shared [`Clock`] (so tests move time with `clock.advance`): its trigger
//! stream ([`Schedule::triggers`]) looks at the earliest entry at most once per tick and sends every
//! resource that is due to the controller. One entry per resource; a later pass replaces it.
//! [`Schedule::wake`] asks for a pass at once, apart from the entries, so a pass that ends just after
//! the wake (and sets its own entry) cannot undo it; a wake during a pass gets a pass after it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::clock::Clock;

/// How often the trigger stream looks at the clock at most (a due time is met within this).
pub const TICK: Duration = Duration::from_secs(1);

/// See the module documentation.
pub struct Schedule<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    clock: Clock,
    inner: Mutex<Entries<K>>,
    wakes: futures::channel::mpsc::UnboundedSender<ObjectRef<K>>,
    woken: Mutex<Option<futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>>>,
}

struct Entries<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// (due, sequence) → resource; the sequence keeps equal due times apart.
    by_time: BTreeMap<(Timestamp, u64), ObjectRef<K>>,
    by_obj: HashMap<ObjectRef<K>, (Timestamp, u64)>,
    seq: u64,
}

impl<K: Resource> Schedule<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub fn new(clock: Clock) -> Self {
        let (wakes, woken) = futures::channel::mpsc::unbounded();
        Self {
            clock,
            wakes,
            woken: Mutex::new(Some(woken)),
            inner: Mutex::new(Entries {
                by_time: BTreeMap::new(),
                by_obj: HashMap::new(),
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `obj` is due after `after` (from now, by the shared clock); replaces an earlier entry.
    pub fn set(&self, obj: ObjectRef<K>, after: Duration) {
        let after = SignedDuration::try_from(after).unwrap_or(SignedDuration::MAX);
        let now = self.clock.now();
        let due = now.checked_add(after).unwrap_or(Timestamp::MAX);
        let mut e = self.lock();
        e.seq += 1;
        let at = (due, e.seq);
        if let Some(old) = e.by_obj.insert(obj.clone(), at) {
            e.by_time.remove(&old);
        }
        e.by_time.insert(at, obj);
    }

    /// A pass of `obj` as soon as possible (after the one running, if any).
    pub fn wake(&self, obj: ObjectRef<K>) {
        // Fails only once the controller (the receiver) is gone: nothing to wake then.
        let _ = self.wakes.unbounded_send(obj);
    }

    /// Nothing is due for `obj` (only a change of it wakes it).
    pub fn clear(&self, obj: &ObjectRef<K>) {
        let mut e = self.lock();
        if let Some(old) = e.by_obj.remove(obj) {
            e.by_time.remove(&old);
        }
    }

    /// When `obj` is due, if it is scheduled.
    pub fn due(&self, obj: &ObjectRef<K>) -> Option<Timestamp> {
        self.lock().by_obj.get(obj).map(|(t, _)| *t)
    }

    /// How many resources are scheduled.
    pub fn len(&self) -> usize {
        self.lock().by_obj.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every entry due at `now`, earliest first.
    fn take_due(&self, now: Timestamp) -> Vec<ObjectRef<K>> {
        let mut e = self.lock();
        let mut out = Vec::new();
        while let Some(entry) = e.by_time.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let obj = entry.remove();
            e.by_obj.remove(&obj);
            out.push(obj);
        }
        out
    }

    /// The earliest due time, if any.
    fn earliest(&self) -> Option<Timestamp> {
        self.lock().by_time.first_key_value().map(|((t, _), _)| *t)
    }

    /// The resources as they fall due or are woken, for the controller (`Controller::reconcile_on`;
    /// the wakes go to the first caller). Looks at the clock once per `tick` at most, sooner when the
    /// earliest entry is due sooner.
    pub fn triggers(self: Arc<Self>, tick: Duration) -> impl Stream<Item = ObjectRef<K>> + Send
    where
        K: 'static,
        K::DynamicType: Send + Sync,
    {
        let woken = self.woken.lock().unwrap_or_else(|p| p.into_inner()).take();
        let batches = futures::stream::unfold(self, move |s| async move {
            loop {
                let now = s.clock.now();
                let due = s.take_due(now);
                if !due.is_empty() {
                    return Some((futures::stream::iter(due), s));
                }
                let wait = s
                    .earliest()
                    .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
                    .map_or(tick, |d| d.min(tick));
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
        });
        let due = futures::StreamExt::flatten(batches);
        match woken {
            Some(w) => futures::stream::select(due, w).left_stream(),
            None => due.right_stream(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn obj(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("ns")
    }

    #[test]
    fn due_entries_come_out_earliest_first_and_once() {
        let clock = Clock::system();
        let s = Schedule::<ConfigMap>::new(clock.clone());
        s.set(obj("late"), Duration::from_secs(3600));
        s.set(obj("soon"), Duration::from_secs(60));
        s.set(obj("sooner"), Duration::from_secs(30));
        assert_eq!(s.len(), 3);
        assert!(s.take_due(clock.now()).is_empty(), "nothing is due yet");
        clock.advance(Duration::from_secs(61));
        assert_eq!(s.take_due(clock.now()), [obj("sooner"), obj("soon")]);
        assert!(s.take_due(clock.now()).is_empty(), "taken once");
        assert_eq!(s.len(), 1);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(s.take_due(clock.now()), [obj("late")]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_later_pass_replaces_the_entry_and_clear_removes_it() {
        let clock = Clock::system();
        let s = Schedule::<ConfigMap>::new(clock.clone());
        s.set(obj("a"), Duration::from_secs(10));
        s.set(obj("a"), Duration::from_secs(7200));
        assert_eq!(s.len(), 1);
        clock.advance(Duration::from_secs(11));
        assert!(
            s.take_due(clock.now()).is_empty(),
            "the earlier due time is gone"
        );
        let due = s.due(&obj("a")).expect("scheduled");
        assert!(due > clock.now());
        s.clear(&obj("a"));
        assert!(s.is_empty() && s.due(&obj("a")).is_none());
        s.clear(&obj("never-set"));
    }

    #[tokio::test]
    async fn the_trigger_stream_follows_the_shared_clock() {
        let clock = Clock::system();
        let s = Arc::new(Schedule::<ConfigMap>::new(clock.clone()));
        s.set(obj("renewal"), Duration::from_secs(340 * 86400));
        s.set(obj("now"), Duration::ZERO);
        let mut triggers = Box::pin(s.clone().triggers(Duration::from_millis(20)));
        let first = tokio::time::timeout(Duration::from_secs(5), triggers.next()).await;
        assert_eq!(first.expect("due at once"), Some(obj("now")));
        assert_eq!(s.due(&obj("now")), None);
        assert!(
            s.due(&obj("renewal")).is_some(),
            "not due before the clock moves"
        );
        clock.advance(Duration::from_secs(340 * 86400));
        let got = tokio::time::timeout(Duration::from_secs(5), triggers.next())
            .await
            .expect("due after the clock moved");
        assert_eq!(got, Some(obj("renewal")));
        assert!(s.is_empty());
        // A wake comes at once, whatever the entries say.
        s.set(obj("woken"), Duration::from_secs(3600));
        s.wake(obj("woken"));
        let got = tokio::time::timeout(Duration::from_secs(5), triggers.next()).await;
        assert_eq!(got.expect("woken at once"), Some(obj("woken")));
    }
}
