//! Fault injection per route and the call journal.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use jiff::Timestamp;

/// How often a fault fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTimes {
    /// The next matching call only.
    Once,
    /// The next `n` matching calls.
    Times(u32),
    /// Every matching call until [`super::DigdirSim::clear_faults`].
    Always,
    /// Every matching call whose simulated time (the shared Clock) lies in `[from, until)`.
    Window { from: Timestamp, until: Timestamp },
}

/// What a fault does to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status (and a JSON error body) instead of handling the call.
    Status {
        status: StatusCode,
        /// Seconds, sent as `Retry-After`.
        retry_after: Option<u64>,
    },
    /// Delay the call by this much (real time), then handle it normally. A latency longer
    /// than the client's timeout makes a timeout.
    Latency(Duration),
    /// Handle the call (its effect happens), then answer with this status anyway: the
    /// "did my POST go through?" case.
    StatusAfterHandling(StatusCode),
    /// Handle the call to completion (even if the client gives up), then delay the
    /// answer: a client timeout after the change was made.
    LatencyAfterHandling(Duration),
}

/// One injected fault: matches calls by method (any when `None`) and path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    pub method: Option<Method>,
    pub path_prefix: String,
    pub action: FaultAction,
    pub times: FaultTimes,
}

impl FaultRule {
    /// A one-shot status answer on `method` + `path_prefix`.
    pub fn status(method: Option<Method>, path_prefix: &str, status: StatusCode) -> Self {
        Self {
            method,
            path_prefix: path_prefix.into(),
            action: FaultAction::Status {
                status,
                retry_after: None,
            },
            times: FaultTimes::Once,
        }
    }

    /// A one-shot 429 with `Retry-After: secs`.
    pub fn throttle(method: Option<Method>, path_prefix: &str, secs: u64) -> Self {
        Self {
            method,
            path_prefix: path_prefix.into(),
            action: FaultAction::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(secs),
            },
            times: FaultTimes::Once,
        }
    }

    pub fn latency(method: Option<Method>, path_prefix: &str, latency: Duration) -> Self {
        Self {
            method,
            path_prefix: path_prefix.into(),
            action: FaultAction::Latency(latency),
            times: FaultTimes::Once,
        }
    }

    pub fn times(mut self, times: FaultTimes) -> Self {
        self.times = times;
        self
    }

    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&self.path_prefix)
    }
}

/// One call the simulator received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// Simulated time (the shared Clock) when the call arrived.
    pub time: Timestamp,
    /// Whether an injected fault decided the answer.
    pub faulted: bool,
}

/// The active fault rules, with their remaining counts.
#[derive(Default)]
pub struct Faults {
    rules: Vec<(FaultRule, Option<u32>)>,
}

impl Faults {
    pub fn add(&mut self, rule: FaultRule) {
        let remaining = match rule.times {
            FaultTimes::Once => Some(1),
            FaultTimes::Times(n) => Some(n),
            FaultTimes::Always | FaultTimes::Window { .. } => None,
        };
        self.rules.push((rule, remaining));
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The actions that apply to this call (consuming counted rules).
    pub fn take(&mut self, method: &Method, path: &str, now: Timestamp) -> Vec<FaultAction> {
        let mut out = vec![];
        for (rule, remaining) in &mut self.rules {
            if !rule.matches(method, path) {
                continue;
            }
            if let FaultTimes::Window { from, until } = rule.times
                && !(from <= now && now < until)
            {
                continue;
            }
            match remaining {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            out.push(rule.action.clone());
        }
        self.rules.retain(|(_, remaining)| *remaining != Some(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_fire_that_many_times_and_windows_follow_the_clock() {
        let now = Timestamp::now();
        let mut faults = Faults::default();
        faults.add(
            FaultRule::status(
                Some(Method::POST),
                "/api/v1/clients",
                StatusCode::BAD_GATEWAY,
            )
            .times(FaultTimes::Times(2)),
        );
        assert!(faults.take(&Method::GET, "/api/v1/clients", now).is_empty());
        assert_eq!(
            faults
                .take(&Method::POST, "/api/v1/clients/x/jwks", now)
                .len(),
            1
        );
        assert_eq!(faults.take(&Method::POST, "/api/v1/clients", now).len(), 1);
        assert!(
            faults
                .take(&Method::POST, "/api/v1/clients", now)
                .is_empty()
        );

        let until = now
            .checked_add(jiff::SignedDuration::from_secs(60))
            .expect("time");
        faults.add(
            FaultRule::latency(None, "/maskinporten", Duration::from_millis(1))
                .times(FaultTimes::Window { from: now, until }),
        );
        assert_eq!(
            faults.take(&Method::POST, "/maskinporten/token", now).len(),
            1
        );
        assert_eq!(
            faults.take(&Method::POST, "/maskinporten/token", now).len(),
            1
        );
        assert!(
            faults
                .take(&Method::POST, "/maskinporten/token", until)
                .is_empty()
        );
    }
}
