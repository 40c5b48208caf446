//! When an IDPortenClient's or MaskinportenClient's next pass is due if nothing about it changes.
//!
//! A change (spec, annotations, an owned Secret) starts a pass by itself; this decides only what
//! time alone makes due, so a steady resource is not looked at in between:
//! - the daily full synchronisation (`status.synchronizationTime` + the full-sync period);
//! - the renewal of its keys at Digdir (their earliest expiry, less `renew_before`);
//! - a deferred next key ([`super::keyplan::KeyActions::next_due_in`]);
//! - a rotation waiting for its next key to age ([`super::keyplan::KeyActions::wait`]);
//! - a revisit after the resync period when the outcome depends on something no watch reports:
//!   old Secrets kept while workloads reference them, keys replaced in place while a Pod may hold
//!   them, keys left out of Digdir's cap, scopes the organisation has no access to.
//!
//! A time-based due that has already passed (the pass just made could not settle it) is not
//! retried at once, which could loop: it comes back after the resync period.

use std::time::Duration;

use jiff::Timestamp;

use crate::core::due::{full_sync_in, signed, soonest, until};

/// What the due time of a pass is made of.
#[derive(Clone, Debug)]
pub struct DueInputs {
    pub now: Timestamp,
    /// The last full synchronisation (`status.synchronizationTime`); `None`: none yet.
    pub synchronized_at: Option<Timestamp>,
    pub full_sync_every: Duration,
    /// The earliest expiry of the registered keys (bookkeeping); `None`: unknown.
    pub keys_expire_at: Option<Timestamp>,
    pub renew_before: Duration,
    /// The deferred next key is to be made after this long.
    pub next_key_in: Option<Duration>,
    /// A rotation waits this long for its next key to age.
    pub rotation_wait: Option<Duration>,
    /// The outcome depends on workloads or scope access (see the module documentation).
    pub revisit: bool,
    /// The resync period: the revisit, and the retry of a due time already passed.
    pub resync: Duration,
}

/// How long from `now` the next pass is due (at least one second), or `None` when nothing will
/// be due until something changes.
pub fn next_pass_in(inp: &DueInputs) -> Option<Duration> {
    let full_sync = full_sync_in(
        inp.now,
        inp.synchronized_at,
        inp.full_sync_every,
        inp.resync,
    );
    let renewal = inp
        .keys_expire_at
        .and_then(|t| t.checked_sub(signed(inp.renew_before)).ok())
        .map(|at| until(inp.now, at, inp.resync));
    soonest([
        full_sync,
        renewal,
        inp.next_key_in,
        inp.rotation_wait,
        inp.revisit.then_some(inp.resync),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);
    const HOUR: Duration = Duration::from_secs(3600);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A resource synchronised just now, with keys good for a year.
    fn steady() -> DueInputs {
        DueInputs {
            now: ts("2025-06-01T12:00:00Z"),
            synchronized_at: Some(ts("2025-06-01T12:00:00Z")),
            full_sync_every: DAY,
            keys_expire_at: Some(ts("2026-06-01T12:00:00Z")),
            renew_before: 30 * DAY,
            next_key_in: None,
            rotation_wait: None,
            revisit: false,
            resync: HOUR,
        }
    }

    #[test]
    fn a_steady_resource_is_due_only_for_its_daily_full_sync() {
        assert_eq!(next_pass_in(&steady()), Some(DAY));
        // Half a day later (a pass for a change of its own): the rest of the day.
        let mut inp = steady();
        inp.now = ts("2025-06-02T00:00:00Z");
        assert_eq!(next_pass_in(&inp), Some(12 * HOUR));
    }

    #[test]
    fn keys_near_expiry_are_due_for_renewal_before_the_full_sync() {
        let mut inp = steady();
        // Expiring in 30 days and 6 hours: renewal due in 6 hours (30 days ahead).
        inp.keys_expire_at = Some(ts("2025-07-01T18:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(6 * HOUR));
        // No full sync recorded: the renewal alone decides.
        inp.synchronized_at = None;
        assert_eq!(next_pass_in(&inp), Some(6 * HOUR));
    }

    #[test]
    fn deferred_next_keys_and_rotation_waits_come_first_when_sooner() {
        let mut inp = steady();
        inp.next_key_in = Some(Duration::from_secs(300));
        assert_eq!(next_pass_in(&inp), Some(Duration::from_secs(300)));
        inp.rotation_wait = Some(Duration::from_secs(90));
        assert_eq!(next_pass_in(&inp), Some(Duration::from_secs(90)));
        // Never sooner than a second.
        inp.rotation_wait = Some(Duration::ZERO);
        assert_eq!(next_pass_in(&inp), Some(Duration::from_secs(1)));
    }

    #[test]
    fn what_no_watch_reports_is_revisited_each_resync_period() {
        let mut inp = steady();
        inp.revisit = true;
        assert_eq!(next_pass_in(&inp), Some(HOUR));
        inp.resync = 2 * DAY;
        assert_eq!(next_pass_in(&inp), Some(DAY), "the full sync is sooner");
    }

    #[test]
    fn a_due_time_already_passed_comes_back_after_the_resync_period_not_at_once() {
        let mut inp = steady();
        // Keys already inside the renewal window (the renewal just failed to move them).
        inp.keys_expire_at = Some(ts("2025-06-20T00:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(HOUR));
        // The full sync a day old (a pass that could not make it).
        let mut inp = steady();
        inp.synchronized_at = Some(ts("2025-05-31T00:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(HOUR));
    }

    #[test]
    fn nothing_known_means_nothing_due() {
        let inp = DueInputs {
            synchronized_at: None,
            keys_expire_at: None,
            ..steady()
        };
        assert_eq!(next_pass_in(&inp), None);
    }
}
