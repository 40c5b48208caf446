//! An injectable clock shared by the simulators and the operator.
//!
//! It is wall-clock time plus an adjustable offset. Tests move time forward with
//! [`Clock::advance`] (key expiry, rotation age, Retry-After) without sleeping and
//! without `tokio::time::pause`, which would break kube's watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The real time, with no offset.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> Timestamp {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let now = Timestamp::now();
        now.checked_add(jiff::SignedDuration::from_millis(offset))
            .unwrap_or(now)
    }

    /// Seconds since the Unix epoch, as JWT `iat`/`exp` use them.
    pub fn unix_seconds(&self) -> i64 {
        self.now().as_second()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The current offset from wall-clock time.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_is_shared_between_clones() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600 * 24 * 365));
        let after = other.now();
        let gained = after.duration_since(before).as_secs();
        assert!(gained >= 3600 * 24 * 365, "gained only {gained}s");
    }
}
