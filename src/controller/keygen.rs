//! Key generation, shared by every kind: a prioritised queue in front of one key per core at a time
//! (the work is CPU-bound; more at once only adds threads and allocator arenas), off the async
//! threads, its CPU time counted.
//!
//! - [`Priority::Urgent`] (a resource waiting for its first key, a rotation someone asked for) always
//!   goes before [`Priority::Idle`] (a deferred next key, needed only by a later rotation). Within a
//!   priority, first come first served. A key already being made is never interrupted, so an urgent
//!   key waits at most for one key per core.
//! - A pass that wants an idle key does not wait for it (that would hold one of the controller's
//!   workers while first keys queue behind it): it [`KeyGenerator::request`]s one, made on idle CPU,
//!   and gets the call-back when it is at hand; the resource's next pass [`KeyGenerator::take`]s it.
//!   A key waiting to be taken is held only in memory (never logged); one never taken is forgotten
//!   with its resource ([`KeyGenerator::forget`]), and a lost one costs only a new request.
//! - A request may name a time before which the key is not wanted ([`KeyGenerator::request_after`],
//!   by the shared clock): the first pass of a new resource asks for its deferred next key at once,
//!   so no pass runs only to ask for it when the delay is over. One timer task releases the due
//!   requests into the idle queue. A request forgotten meanwhile (the resource is gone, or a
//!   rotation made its key at once) makes no key.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::core::due::signed;

use super::context::Counters;
use super::error::Error;
use crate::core::Key;

/// Which keys go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Someone waits for the key: a resource's first key, a rotation that was asked for.
    Urgent,
    /// A deferred next key: made when no urgent key waits.
    Idle,
}

/// What a [`KeyGenerator::request`]er is called back with once its key is at hand (or failed).
pub type Ready = Box<dyn FnOnce() + Send>;

/// Keys made so far, by priority (for metrics and the benchmark).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    pub urgent_keys: u64,
    pub urgent_cpu_micros: u64,
    pub idle_keys: u64,
    pub idle_cpu_micros: u64,
}

/// See the module documentation.
#[derive(Clone)]
pub struct KeyGenerator {
    inner: Arc<Inner>,
}

struct Inner {
    cores: usize,
    /// The clock a request's not-before time goes by (the one the key plan reads).
    clock: Clock,
    queue: Mutex<Queue>,
    /// The work of one key: returns the key, or a message.
    work: fn() -> Result<Key, String>,
    urgent_keys: AtomicU64,
    urgent_cpu_micros: AtomicU64,
    idle_keys: AtomicU64,
    idle_cpu_micros: AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Keys being made.
    busy: usize,
    urgent: VecDeque<oneshot::Sender<Slot>>,
    idle: VecDeque<oneshot::Sender<Slot>>,
    /// Owners whose requested key is deferred, queued or being made, with the request's ticket (a
    /// request forgotten and made again gets a new one, so the old one's work is not done twice).
    requested: HashMap<String, u64>,
    tickets: u64,
    /// Requests not wanted before their time, by (time, ticket).
    deferred: BTreeMap<(Timestamp, u64), Deferred>,
    /// Whether the task releasing deferred requests runs.
    releasing: bool,
    /// Requested keys at hand, with their CPU time (counted when taken).
    ready: HashMap<String, (Key, u64)>,
}

impl Queue {
    /// Whether request `ticket` of `owner` still stands (not forgotten, nor replaced by a new one).
    fn stands(&self, owner: &str, ticket: u64) -> bool {
        self.requested.get(owner) == Some(&ticket)
    }
}

struct Deferred {
    owner: String,
    ready: Ready,
}

/// The right to make one key on one core; handed to the next waiter when dropped.
struct Slot {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            let inner = self.inner.clone();
            let mut q = inner.lock();
            q.busy = q.busy.saturating_sub(1);
            inner.dispatch(&mut q);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands free slots to waiters: every urgent one before any idle one.
    fn dispatch(self: &Arc<Self>, q: &mut Queue) {
        while q.busy < self.cores {
            let Some(tx) = q.urgent.pop_front().or_else(|| q.idle.pop_front()) else {
                return;
            };
            q.busy += 1;
            if let Err(mut slot) = tx.send(Slot {
                inner: self.clone(),
                armed: true,
            }) {
                // The waiter is gone (its pass was cancelled): the slot goes to the next one.
                slot.armed = false;
                q.busy -= 1;
            }
        }
    }
}

fn default_work() -> Result<Key, String> {
    crate::keys::generate_key()
        .map(|jwk| Key::from_private(&jwk))
        .map_err(|e| e.to_string())
}

impl Default for KeyGenerator {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// How often the releasing task looks at the clock at most (a deferred request is released within
/// this of its time; the key plan defers by the same clock, so a pass never finds it early).
const RELEASE_TICK: Duration = Duration::from_secs(1);

/// Clears [`Queue::releasing`] when the releasing task ends, however it ends (its runtime may stop).
struct Releasing(Option<Weak<Inner>>);

impl Drop for Releasing {
    fn drop(&mut self) {
        if let Some(inner) = self.0.as_ref().and_then(Weak::upgrade) {
            inner.lock().releasing = false;
        }
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

impl KeyGenerator {
    /// At most `cores` keys at a time (at least one).
    pub fn new(cores: usize) -> Self {
        Self::with_work(cores, default_work)
    }

    /// The same, with requests' not-before times going by `clock`.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self::build(self.inner.cores, self.inner.work, clock)
    }

    fn with_work(cores: usize, work: fn() -> Result<Key, String>) -> Self {
        Self::build(cores, work, Clock::system())
    }

    fn build(cores: usize, work: fn() -> Result<Key, String>, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                cores: cores.max(1),
                clock,
                queue: Mutex::new(Queue::default()),
                work,
                urgent_keys: AtomicU64::new(0),
                urgent_cpu_micros: AtomicU64::new(0),
                idle_keys: AtomicU64::new(0),
                idle_cpu_micros: AtomicU64::new(0),
            }),
        }
    }

    /// Waits for a free core, after every waiter of the same priority and every urgent one.
    async fn acquire(&self, priority: Priority) -> Result<Slot, Error> {
        let rx = {
            let mut q = self.inner.lock();
            let (tx, rx) = oneshot::channel();
            match priority {
                Priority::Urgent => q.urgent.push_back(tx),
                Priority::Idle => q.idle.push_back(tx),
            }
            self.inner.dispatch(&mut q);
            rx
        };
        rx.await
            .map_err(|_| Error::KeyGeneration("the key generator stopped".into()))
    }

    /// Makes one key on a free core; returns it with its CPU time in microseconds.
    async fn make(&self, priority: Priority) -> Result<(Key, u64), Error> {
        let slot = self.acquire(priority).await?;
        self.make_on(slot, priority).await
    }

    /// Makes one key on the core `slot` holds.
    async fn make_on(&self, slot: Slot, priority: Priority) -> Result<(Key, u64), Error> {
        let work = self.inner.work;
        let (key, micros) = tokio::task::spawn_blocking(move || {
            // The slot is held until the CPU work is over, even if the caller went away.
            let _slot = slot;
            let cpu0 = thread_cpu_nanos();
            let wall0 = std::time::Instant::now();
            let key = work();
            let micros = match (cpu0, thread_cpu_nanos()) {
                (Some(a), Some(b)) if b >= a => (b - a) / 1000,
                _ => u64::try_from(wall0.elapsed().as_micros()).unwrap_or(u64::MAX),
            };
            (key, micros)
        })
        .await
        .map_err(|e| Error::KeyGeneration(e.to_string()))?;
        let (keys, cpu) = match priority {
            Priority::Urgent => (&self.inner.urgent_keys, &self.inner.urgent_cpu_micros),
            Priority::Idle => (&self.inner.idle_keys, &self.inner.idle_cpu_micros),
        };
        cpu.fetch_add(micros, Ordering::Relaxed);
        let key = key.map_err(Error::KeyGeneration)?;
        keys.fetch_add(1, Ordering::Relaxed);
        Ok((key, micros))
    }

    /// A new RSA-2048 key, made when every key of a higher priority (and every earlier one of the
    /// same priority) has had its core.
    pub async fn generate(&self, priority: Priority, counters: &Counters) -> Result<Key, Error> {
        let (key, micros) = self.make(priority).await?;
        Counters::add(&counters.keygen_cpu_micros, micros);
        Counters::inc(&counters.keys_generated);
        Ok(key)
    }

    /// Asks for an idle-priority key for `owner` (an object key), made in the background;
    /// `ready` is called once it is at hand, or once making it failed (the next pass asks again).
    /// Returns `false` (and drops `ready`) when one is already requested or at hand.
    pub fn request(&self, owner: &str, ready: Ready) -> bool {
        self.request_after(owner, Duration::ZERO, ready)
    }

    /// [`KeyGenerator::request`], the key not made before `after` from now (by the shared clock).
    pub fn request_after(&self, owner: &str, after: Duration, ready: Ready) -> bool {
        let now = self.inner.clock.now();
        let at = now.checked_add(signed(after)).unwrap_or(Timestamp::MAX);
        let ticket = {
            let mut q = self.inner.lock();
            if q.ready.contains_key(owner) || q.requested.contains_key(owner) {
                return false;
            }
            q.tickets += 1;
            let ticket = q.tickets;
            q.requested.insert(owner.to_string(), ticket);
            if at > now {
                let owner = owner.to_string();
                q.deferred.insert((at, ticket), Deferred { owner, ready });
                if !q.releasing {
                    q.releasing = true;
                    tokio::spawn(release(Releasing(Some(Arc::downgrade(&self.inner)))));
                }
                return true;
            }
            ticket
        };
        self.spawn_request(owner.to_string(), ticket, ready);
        true
    }

    /// Makes the requested key in the background (unless the request is forgotten before it gets
    /// its core), keeps it for its owner and calls `ready`.
    fn spawn_request(&self, owner: String, ticket: u64, ready: Ready) {
        let this = self.clone();
        tokio::spawn(async move {
            let made = match this.acquire(Priority::Idle).await {
                Ok(slot) if this.wanted(&owner, ticket) => this.make_on(slot, Priority::Idle).await,
                // Forgotten while it queued: the core goes to the next waiter.
                Ok(_) => return,
                Err(e) => Err(e),
            };
            let wanted = {
                let mut q = this.inner.lock();
                let wanted = q.stands(&owner, ticket);
                if wanted {
                    q.requested.remove(&owner);
                    if let Ok(km) = made.as_ref() {
                        q.ready.insert(owner.clone(), km.clone());
                    }
                }
                wanted
            };
            if let Err(e) = &made {
                tracing::warn!(object = %owner, error = %e, "generating a next key failed; the next pass asks again");
            }
            if wanted {
                ready();
            }
        });
    }

    /// Whether request `ticket` of `owner` still stands.
    fn wanted(&self, owner: &str, ticket: u64) -> bool {
        self.inner.lock().stands(owner, ticket)
    }

    /// Whether a key requested for `owner` is queued or being made (not yet at hand).
    pub fn is_requested(&self, owner: &str) -> bool {
        self.inner.lock().requested.contains_key(owner)
    }

    /// The key made for `owner` by an earlier [`KeyGenerator::request`], if it is at hand (its CPU
    /// time is counted now).
    pub fn take(&self, owner: &str, counters: &Counters) -> Option<Key> {
        let (key, micros) = self.inner.lock().ready.remove(owner)?;
        Counters::add(&counters.keygen_cpu_micros, micros);
        Counters::inc(&counters.keys_generated);
        Some(key)
    }

    /// Forgets what was requested or made for `owner` (a resource that is gone).
    pub fn forget(&self, owner: &str) {
        let mut q = self.inner.lock();
        q.requested.remove(owner);
        q.ready.remove(owner);
    }

    /// Keys made so far, by priority.
    pub fn stats(&self) -> KeyStats {
        let i = &self.inner;
        KeyStats {
            urgent_keys: i.urgent_keys.load(Ordering::Relaxed),
            urgent_cpu_micros: i.urgent_cpu_micros.load(Ordering::Relaxed),
            idle_keys: i.idle_keys.load(Ordering::Relaxed),
            idle_cpu_micros: i.idle_cpu_micros.load(Ordering::Relaxed),
        }
    }
}

/// Releases deferred requests into the idle queue as they fall due; ends when none is left (the
/// next deferred request starts it again) or the generator is gone.
async fn release(mut guard: Releasing) {
    loop {
        let Some(inner) = guard.0.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let now = inner.clock.now();
        let (due, wait) = {
            let mut q = inner.lock();
            let mut due = Vec::new();
            while let Some(e) = q.deferred.first_entry() {
                if e.key().0 > now {
                    break;
                }
                let ((_, ticket), d) = e.remove_entry();
                // A forgotten request is dropped here, its call-back with it.
                if q.stands(&d.owner, ticket) {
                    due.push((ticket, d));
                }
            }
            let wait = match q.deferred.first_key_value() {
                Some(((next, _), _)) => Some(
                    Duration::try_from(next.duration_since(now))
                        .map_or(RELEASE_TICK, |d| d.min(RELEASE_TICK)),
                ),
                None => {
                    // Cleared under the lock that saw the map empty: a request after this starts
                    // a new task.
                    q.releasing = false;
                    guard.0 = None;
                    None
                }
            };
            (due, wait)
        };
        let this = KeyGenerator { inner };
        for (ticket, d) in due {
            this.spawn_request(d.owner, ticket, d.ready);
        }
        drop(this);
        let Some(wait) = wait else { return };
        tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quick() -> Result<Key, String> {
        Ok(Key::placeholder("made"))
    }

    /// Waiters in the queue (one lock: the guard of `lock()` lives to the end of the statement).
    fn waiting(g: &KeyGenerator) -> usize {
        let q = g.inner.lock();
        q.urgent.len() + q.idle.len()
    }

    /// Registers a waiter and lets it reach the queue before the next one (the queue is FIFO).
    async fn waiter(
        g: &KeyGenerator,
        p: Priority,
        name: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (g2, order) = (g.clone(), order.clone());
        let queued = waiting(g);
        let h = tokio::spawn(async move {
            let slot = g2.acquire(p).await.expect("slot");
            order.lock().unwrap().push(name);
            drop(slot);
        });
        while waiting(g) == queued {
            tokio::task::yield_now().await;
        }
        h
    }

    #[tokio::test]
    async fn urgent_keys_go_before_idle_ones_first_come_first_served() {
        let g = KeyGenerator::with_work(1, quick);
        let order = Arc::new(Mutex::new(Vec::new()));
        // The one core is busy; then idle and urgent waiters arrive, mixed.
        let busy = g.acquire(Priority::Idle).await.expect("slot");
        let mut hs = Vec::new();
        for (p, name) in [
            (Priority::Idle, "idle-1"),
            (Priority::Urgent, "urgent-1"),
            (Priority::Idle, "idle-2"),
            (Priority::Urgent, "urgent-2"),
        ] {
            hs.push(waiter(&g, p, name, &order).await);
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody runs while the core is busy"
        );
        drop(busy);
        for h in hs {
            h.await.expect("waiter");
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["urgent-1", "urgent-2", "idle-1", "idle-2"]
        );
        assert_eq!(g.inner.lock().busy, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_does_not_keep_the_core() {
        let g = KeyGenerator::with_work(1, quick);
        let order = Arc::new(Mutex::new(Vec::new()));
        let busy = g.acquire(Priority::Urgent).await.expect("slot");
        let gone = {
            let g = g.clone();
            tokio::spawn(async move {
                let _ = g.acquire(Priority::Urgent).await;
                unreachable!("cancelled before it got the core");
            })
        };
        while g.inner.lock().urgent.is_empty() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        let next = waiter(&g, Priority::Idle, "idle", &order).await;
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the core went to the next waiter")
            .expect("waiter");
        assert_eq!(*order.lock().unwrap(), ["idle"]);
    }

    #[tokio::test]
    async fn at_most_one_key_per_core_at_a_time() {
        let g = KeyGenerator::with_work(2, quick);
        let a = g.acquire(Priority::Urgent).await.expect("slot");
        let _b = g.acquire(Priority::Idle).await.expect("slot");
        let third = {
            let g = g.clone();
            tokio::spawn(async move { g.acquire(Priority::Urgent).await.map(drop) })
        };
        while g.inner.lock().urgent.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(g.inner.lock().busy, 2);
        drop(a);
        third
            .await
            .expect("task")
            .expect("slot after one was freed");
    }

    #[tokio::test]
    async fn a_requested_key_is_made_in_the_background_and_taken_once() {
        let g = KeyGenerator::with_work(1, quick);
        let counters = Counters::default();
        let (tx, rx) = oneshot::channel();
        assert!(g.request(
            "Kind/ns/a",
            Box::new(move || {
                let _ = tx.send(());
            })
        ));
        assert!(
            !g.request("Kind/ns/a", Box::new(|| unreachable!("asked twice"))),
            "one request per owner"
        );
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("called back")
            .expect("sender");
        assert!(!g.is_requested("Kind/ns/a"));
        assert!(g.take("Kind/ns/b", &counters).is_none(), "only its owner's");
        let key = g.take("Kind/ns/a", &counters).expect("at hand");
        assert_eq!(key.kid, "made");
        assert!(g.take("Kind/ns/a", &counters).is_none(), "taken once");
        assert_eq!(Counters::get(&counters.keys_generated), 1);
        assert_eq!(g.stats().idle_keys, 1);
        assert_eq!(g.stats().urgent_keys, 0);
    }

    #[tokio::test]
    async fn a_background_key_waits_for_urgent_ones_and_a_forgotten_one_is_dropped() {
        let g = KeyGenerator::with_work(1, quick);
        let counters = Counters::default();
        let busy = g.acquire(Priority::Urgent).await.expect("slot");
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        assert!(g.request(
            "Kind/ns/a",
            Box::new(move || o.lock().unwrap().push("next-a"))
        ));
        while g.inner.lock().idle.is_empty() {
            tokio::task::yield_now().await;
        }
        let first = waiter(&g, Priority::Urgent, "first", &order).await;
        // Requested and forgotten before it gets its core: never made, nobody called back.
        let forgotten = Arc::new(Mutex::new(false));
        let f = forgotten.clone();
        assert!(g.request("Kind/ns/gone", Box::new(move || *f.lock().unwrap() = true)));
        while g.inner.lock().idle.len() < 2 {
            tokio::task::yield_now().await;
        }
        g.forget("Kind/ns/gone");
        drop(busy);
        first.await.expect("urgent waiter");
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let settled = {
                    let q = g.inner.lock();
                    q.idle.is_empty() && q.busy == 0
                };
                if settled && g.stats().idle_keys == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the one wanted background key made");
        assert_eq!(*order.lock().unwrap(), ["first", "next-a"]);
        assert_eq!(g.stats().idle_keys, 1, "the forgotten one was not made");
        assert!(g.take("Kind/ns/gone", &counters).is_none());
        assert!(!*forgotten.lock().unwrap());
        assert!(g.take("Kind/ns/a", &counters).is_some());
    }

    #[tokio::test]
    async fn a_deferred_request_is_made_only_once_its_time_has_come_by_the_shared_clock() {
        let clock = Clock::system();
        let g = KeyGenerator::with_work(1, quick).with_clock(clock.clone());
        let counters = Counters::default();
        let (tx, mut rx) = oneshot::channel();
        assert!(g.request_after(
            "Kind/ns/a",
            Duration::from_secs(600),
            Box::new(move || {
                let _ = tx.send(());
            })
        ));
        assert!(g.is_requested("Kind/ns/a"), "a deferred request stands");
        assert!(
            !g.request_after("Kind/ns/a", Duration::ZERO, Box::new(|| unreachable!())),
            "one request per owner, deferred or not"
        );
        // Several release ticks go by on the real clock; the shared clock says it is not yet due.
        tokio::time::sleep(RELEASE_TICK * 2 + Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "not called back before its time");
        assert_eq!(g.stats().idle_keys, 0, "not made before its time");
        clock.advance(Duration::from_secs(601));
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("called back once due")
            .expect("sender");
        assert!(!g.is_requested("Kind/ns/a"));
        assert!(g.take("Kind/ns/a", &counters).is_some());
        assert_eq!(g.stats().idle_keys, 1);
        // Nothing deferred is left: the releasing task has ended (a later request starts another).
        tokio::time::timeout(Duration::from_secs(5), async {
            while g.inner.lock().releasing {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the releasing task ends");
    }

    #[tokio::test]
    async fn a_deferred_request_forgotten_and_asked_again_makes_one_key_for_the_new_one() {
        let clock = Clock::system();
        let g = KeyGenerator::with_work(1, quick).with_clock(clock.clone());
        let counters = Counters::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        assert!(g.request_after(
            "Kind/ns/a",
            Duration::from_secs(60),
            Box::new(move || c.lock().unwrap().push("old"))
        ));
        g.forget("Kind/ns/a");
        assert!(!g.is_requested("Kind/ns/a"));
        let c = calls.clone();
        assert!(g.request_after(
            "Kind/ns/a",
            Duration::from_secs(120),
            Box::new(move || c.lock().unwrap().push("new"))
        ));
        clock.advance(Duration::from_secs(121));
        tokio::time::timeout(Duration::from_secs(5), async {
            while g.stats().idle_keys < 1 || g.is_requested("Kind/ns/a") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the standing request is served");
        // Let any stray work of the forgotten request show itself.
        tokio::time::timeout(Duration::from_secs(5), async {
            while g.inner.lock().releasing || g.inner.lock().busy > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("settled");
        assert_eq!(*calls.lock().unwrap(), ["new"]);
        assert_eq!(g.stats().idle_keys, 1, "the forgotten request made no key");
        assert!(g.take("Kind/ns/a", &counters).is_some());
    }

    #[tokio::test]
    async fn generate_counts_the_key_and_its_cpu() {
        let g = KeyGenerator::new(1);
        let counters = Counters::default();
        let key = g
            .generate(Priority::Urgent, &counters)
            .await
            .expect("a real key");
        crate::keys::PrivateJwk::from_json(&key.private_json).expect("a full private key");
        assert_eq!(Counters::get(&counters.keys_generated), 1);
        assert!(Counters::get(&counters.keygen_cpu_micros) > 0);
        assert_eq!(g.stats().urgent_keys, 1);
        assert!(g.stats().urgent_cpu_micros > 0);
    }
}
