//! Whether the controllers are stuck (`/healthz`): a pass in flight for longer than any pass can
//! honestly take, or a controller that stopped while it should be running.
//!
//! Every outbound call has a timeout and a pass never sleeps for long (a wait is a requeue), so a
//! pass that has run for many minutes is hung, and restarting the process is the remedy. A
//! controller that ended (it panicked, or its watch stream ended) while the operator was not
//! stopping reconciles nothing any more. Time is the shared [`Clock`]'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::Clock;

/// How long a pass may run before `/healthz` calls the controllers stuck (the default of
/// `--stuck-pass-after`).
pub const STUCK_PASS_AFTER: Duration = Duration::from_secs(600);

/// Passes in flight and controllers that stopped.
#[derive(Debug, Default)]
pub struct Liveness {
    next: AtomicU64,
    in_flight: Mutex<HashMap<u64, (String, Timestamp)>>,
    stopped: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Liveness {
    /// A pass of `key` (`Kind/namespace/name`) started; it is in flight until the guard is dropped.
    pub fn pass_started<'a>(&'a self, key: &str, clock: &Clock) -> InFlight<'a> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.in_flight).insert(id, (key.to_string(), clock.now()));
        InFlight { liveness: self, id }
    }

    /// The controller of `kind` ended while it should have kept running (`why` says how).
    pub fn controller_stopped(&self, kind: &str, why: &str) {
        tracing::error!(kind, why, "a controller stopped; /healthz now fails");
        lock(&self.stopped).push(format!("the {kind} controller stopped ({why})"));
    }

    /// What is stuck, in words, or `None`: a controller that stopped, or the oldest pass when it
    /// has been running for `stuck_after` or longer.
    pub fn problem(&self, now: Timestamp, stuck_after: Duration) -> Option<String> {
        if let Some(p) = lock(&self.stopped).first() {
            return Some(p.clone());
        }
        let in_flight = lock(&self.in_flight);
        let (key, started) = in_flight.values().min_by_key(|(_, t)| *t)?;
        let running = now.duration_since(*started);
        let running = Duration::try_from(running).unwrap_or_default();
        (running >= stuck_after).then(|| {
            format!(
                "the pass of {key} has been running for {}s ({} passes in flight)",
                running.as_secs(),
                in_flight.len()
            )
        })
    }
}

/// A pass in flight (removed from [`Liveness`] when dropped, however the pass ends).
pub struct InFlight<'a> {
    liveness: &'a Liveness,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.liveness.in_flight).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_pass_is_stuck_and_a_finished_one_is_forgotten() {
        let clock = Clock::system();
        let l = Liveness::default();
        let limit = Duration::from_secs(600);
        assert_eq!(l.problem(clock.now(), limit), None);
        let pass = l.pass_started("IDPortenClient/team/app", &clock);
        assert_eq!(l.problem(clock.now(), limit), None);
        clock.advance(Duration::from_secs(601));
        let p = l.problem(clock.now(), limit).expect("stuck");
        assert!(
            p.contains("IDPortenClient/team/app") && p.contains("601s"),
            "{p}"
        );
        drop(pass);
        assert_eq!(l.problem(clock.now(), limit), None);
    }

    #[test]
    fn a_stopped_controller_is_a_problem() {
        let clock = Clock::system();
        let l = Liveness::default();
        l.controller_stopped("MaskinportenClient", "it panicked");
        let p = l.problem(clock.now(), STUCK_PASS_AFTER).expect("problem");
        assert!(p.contains("MaskinportenClient controller stopped"), "{p}");
    }
}
