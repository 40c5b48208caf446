//! The arithmetic every kind's due time shares: a point in time as a delay from now, and the
//! soonest of several delays.
//!
//! A time-based due that has already passed (the pass just made could not settle it) is not
//! retried at once, which could loop: it comes back after the resync period.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// `d` as a signed duration, saturating (a period too long for it is as good as never).
pub fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// How long from `now` until `at`; `resync` when `at` is now or already past.
pub fn until(now: Timestamp, at: Timestamp, resync: Duration) -> Duration {
    Duration::try_from(at.duration_since(now))
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(resync)
}

/// The daily full synchronisation: `every` after the last (`None`: none yet, so none is due).
pub fn full_sync_in(
    now: Timestamp,
    synchronized_at: Option<Timestamp>,
    every: Duration,
    resync: Duration,
) -> Option<Duration> {
    synchronized_at
        .and_then(|t| t.checked_add(signed(every)).ok())
        .map(|at| until(now, at, resync))
}

/// The soonest of the delays, at least one second; `None` when none is given.
pub fn soonest(delays: impl IntoIterator<Item = Option<Duration>>) -> Option<Duration> {
    delays
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_time_already_passed_or_now_is_the_resync_period_away() {
        let now = ts("2026-01-01T00:00:00Z");
        let hour = Duration::from_secs(3600);
        assert_eq!(
            until(now, ts("2026-01-01T00:00:30Z"), hour),
            Duration::from_secs(30)
        );
        assert_eq!(until(now, now, hour), hour);
        assert_eq!(until(now, ts("2025-12-31T00:00:00Z"), hour), hour);
    }

    #[test]
    fn the_soonest_delay_is_never_under_a_second() {
        assert_eq!(soonest([None, None]), None);
        assert_eq!(
            soonest([
                Some(Duration::from_secs(9)),
                None,
                Some(Duration::from_secs(4))
            ]),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            soonest([Some(Duration::ZERO)]),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn an_unbounded_full_sync_period_saturates_instead_of_failing() {
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(
            full_sync_in(now, None, Duration::from_secs(60), Duration::from_secs(1)),
            None
        );
        // Past the end of time: no due time rather than a wrapped one.
        assert_eq!(
            full_sync_in(now, Some(now), Duration::MAX, Duration::from_secs(1)),
            None
        );
    }
}
