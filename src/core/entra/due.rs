//! When an AzureAdApplication's next pass is due if nothing about it changes.
//!
//! A change (spec, annotations, its Secret) starts a pass by itself; this decides only what time
//! alone makes due, so a steady resource is not looked at in between:
//! - the daily full synchronisation (`status.synchronizationTime` + the full-sync period);
//! - the rotation of its credentials, a second after they reach their max age;
//! - the end of the grace period of a credential replaced in place (its revocation waits for it);
//! - a revisit after the resync period when the outcome depends on something no watch reports:
//!   managed Secrets of other names kept while workloads reference them, credentials kept or
//!   remembered as replaced while a Pod may hold them, or more elements of the
//!   `azure.nais.io/resync` list than the pass consumed (one per pass, as azurerator does).
//!
//! A time-based due that has already passed (the pass just made could not settle it) is not
//! retried at once, which could loop: it comes back after the resync period.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::core::due::{full_sync_in, soonest, until};

/// What the due time of a pass is made of.
#[derive(Clone, Debug)]
pub struct DueInputs {
    pub now: Timestamp,
    /// The last full synchronisation (`status.synchronizationTime`); `None`: none yet.
    pub synchronized_at: Option<Timestamp>,
    pub full_sync_every: Duration,
    /// When the credentials reach their max age (`None`: no rotation time recorded).
    pub rotation_at: Option<Timestamp>,
    /// A replaced credential's grace period ends after this long.
    pub grace_ends_in: Option<Duration>,
    /// The outcome depends on workloads or on more of the resync list (see the module documentation).
    pub revisit: bool,
    /// The resync period: the revisit, and the retry of a due time already passed.
    pub resync: Duration,
}

/// How long from `now` the next pass is due (at least one second), or `None` when nothing will be
/// due until something changes.
pub fn next_pass_in(inp: &DueInputs) -> Option<Duration> {
    let full_sync = full_sync_in(
        inp.now,
        inp.synchronized_at,
        inp.full_sync_every,
        inp.resync,
    );
    // A second late, so the pass finds the max age reached.
    let rotation = inp
        .rotation_at
        .and_then(|t| t.checked_add(SignedDuration::from_secs(1)).ok())
        .map(|at| until(inp.now, at, inp.resync));
    soonest([
        full_sync,
        rotation,
        inp.grace_ends_in,
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

    /// A resource synchronised just now, its credentials rotated a day ago (max age 180 days).
    fn steady() -> DueInputs {
        DueInputs {
            now: ts("2026-03-01T12:00:00Z"),
            synchronized_at: Some(ts("2026-03-01T12:00:00Z")),
            full_sync_every: DAY,
            rotation_at: Some(ts("2026-08-27T12:00:00Z")),
            grace_ends_in: None,
            revisit: false,
            resync: HOUR,
        }
    }

    #[test]
    fn a_steady_resource_is_due_only_for_its_daily_full_sync() {
        assert_eq!(next_pass_in(&steady()), Some(DAY));
        let mut inp = steady();
        inp.now = ts("2026-03-02T00:00:00Z");
        assert_eq!(next_pass_in(&inp), Some(12 * HOUR));
    }

    #[test]
    fn the_rotation_is_due_a_second_after_the_max_age() {
        let mut inp = steady();
        inp.rotation_at = Some(ts("2026-03-01T18:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(6 * HOUR + Duration::from_secs(1)));
        inp.synchronized_at = None;
        assert_eq!(next_pass_in(&inp), Some(6 * HOUR + Duration::from_secs(1)));
    }

    #[test]
    fn a_grace_period_and_a_revisit_come_first_when_sooner() {
        let mut inp = steady();
        inp.grace_ends_in = Some(Duration::from_secs(300));
        assert_eq!(next_pass_in(&inp), Some(Duration::from_secs(300)));
        let mut inp = steady();
        inp.revisit = true;
        assert_eq!(next_pass_in(&inp), Some(HOUR));
        inp.resync = 2 * DAY;
        assert_eq!(next_pass_in(&inp), Some(DAY), "the full sync is sooner");
    }

    #[test]
    fn a_due_time_already_passed_comes_back_after_the_resync_period_not_at_once() {
        let mut inp = steady();
        inp.rotation_at = Some(ts("2026-02-01T00:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(HOUR));
        let mut inp = steady();
        inp.synchronized_at = Some(ts("2026-02-27T00:00:00Z"));
        assert_eq!(next_pass_in(&inp), Some(HOUR));
    }

    #[test]
    fn nothing_known_means_nothing_due() {
        let inp = DueInputs {
            synchronized_at: None,
            rotation_at: None,
            ..steady()
        };
        assert_eq!(next_pass_in(&inp), None);
    }
}
