//! The condition policy shared by every kind (`IDPortenClient`, `MaskinportenClient`, `AzureAdApplication`).
//!
//! - `Ready=True` (reason [`reason::SYNCHRONIZED`]) means the registration, its keys/credentials and the
//!   Secret are in place and match the spec, apart from items named in a separate *degraded* condition
//!   ([`INVALID_CONSUMED_SCOPES`], [`INVALID_EXPOSED_SCOPES_CONSUMERS`], [`PRE_AUTHORIZED_APPS_NOT_FOUND`]).
//!   A degraded condition is `True` while something is wrong (digdirator's polarity), reason
//!   [`reason::FAILED`], and its message names the items; it is `False` with reason [`reason::VALIDATED`]
//!   otherwise. A degraded condition never turns `Ready` to `False` on its own.
//! - `Ready=False` with a specific CamelCase reason (see [`reason`]) and a message naming the field or
//!   the external error for anything else.
//! - Every condition carries `observedGeneration`; `lastTransitionTime` changes only when `status`
//!   changes (like Go's `meta.SetStatusCondition`). A condition is current only when its
//!   `observedGeneration` equals `metadata.generation` ([`is_ready`] checks that).
//! - For the Digdir kinds the controllers may also keep digdirator's `Error` condition ([`set_error`]),
//!   so tooling written against digdirator keeps working.
//! - kstatus' conditions ([`RECONCILING`], [`STALLED`], "abnormal-true": present only while `True`)
//!   follow from `Ready` on every status write ([`set_progress`]): `Ready=True` for the current
//!   generation removes both; `Ready=False` with a reason that needs a change by someone
//!   ([`is_stalled_reason`]) is `Stalled=True`; anything else not Ready (a new generation, a retry
//!   pending, waiting) is `Reconciling=True`. So kstatus (Flux) and Argo CD read Current, Failed or
//!   InProgress, and no extra write is ever made for them.
//!
//! All functions are pure: the caller passes the time (from [`crate::clock::Clock`]) and writes status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the one kstatus, Flux, Argo CD and `kubectl wait --for=condition=Ready` read.
pub const READY: &str = "Ready";
/// Condition type kept from digdirator: `True` after a failed reconcile, `False` after a successful one.
pub const ERROR: &str = "Error";
/// Degraded condition (Maskinporten, from digdirator): consumed scopes the organisation has no access to.
pub const INVALID_CONSUMED_SCOPES: &str = "InvalidConsumedScopes";
/// Degraded condition (Maskinporten, from digdirator): exposed-scope consumers Digdir rejected.
pub const INVALID_EXPOSED_SCOPES_CONSUMERS: &str = "InvalidExposedScopesConsumers";
/// Degraded condition (AzureAdApplication): pre-authorized applications not found (yet) in Entra ID.
pub const PRE_AUTHORIZED_APPS_NOT_FOUND: &str = "PreAuthorizedAppsNotFound";

/// kstatus condition: the resource is being worked on (a generation not synchronised yet, a retry
/// pending, a wait). Present only while `True`.
pub const RECONCILING: &str = "Reconciling";
/// kstatus condition: the resource cannot get Ready until someone changes something (its spec, an
/// operator setting, a Secret in the way). Present only while `True`.
pub const STALLED: &str = "Stalled";

/// The degraded condition types: while `True` they name items that are left out, but `Ready` may be `True`.
pub const DEGRADED_TYPES: [&str; 3] = [
    INVALID_CONSUMED_SCOPES,
    INVALID_EXPOSED_SCOPES_CONSUMERS,
    PRE_AUTHORIZED_APPS_NOT_FOUND,
];

/// Condition reasons (CamelCase, matching the CRD's reason pattern).
pub mod reason {
    // --- digdirator's reasons (digdirator.md §1.5) ---
    /// `Ready=True`: everything is in place and matches the spec. Also `Error=False` after success.
    pub const SYNCHRONIZED: &str = "Synchronized";
    /// digdirator's `Ready=False` while a reconcile is under way.
    pub const PROCESSING: &str = "Processing";
    /// `Error=True` and degraded conditions that are `True`.
    pub const FAILED: &str = "Failed";
    /// Degraded conditions that are `False` (all items valid).
    pub const VALIDATED: &str = "Validated";

    // --- portvakt's Ready=False reasons ---
    /// Not reconciled yet, or waiting for something that is expected to happen by itself.
    pub const PENDING: &str = "Pending";
    /// The spec cannot be acted on (e.g. empty `secretName`, a changed immutable field); message names the field.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The Secret named by `spec.secretName` exists and is owned by someone else; it is never overwritten.
    pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
    /// The Digdir self-service API failed or refused; message carries its error.
    pub const DIGDIR_ERROR: &str = "DigdirError";
    /// Microsoft Graph / Entra ID failed or refused; message carries its error.
    pub const ENTRA_ERROR: &str = "EntraError";
    /// An external API throttled us (429/503 with Retry-After); a retry is scheduled.
    pub const THROTTLED: &str = "Throttled";
    /// The Kubernetes API failed (e.g. writing the Secret); message carries the error.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// The operator configuration does not allow this resource (e.g. unknown tenant); message says why.
    pub const CONFIGURATION_ERROR: &str = "ConfigurationError";
    /// The resource is being deleted and its registration removed.
    pub const DELETING: &str = "Deleting";
    /// portvakt itself failed (a bug or an internal fault, not the user's manifest); retried.
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// Whether a `Ready=False` reason means the resource is stuck until someone changes something:
/// retrying would only repeat the failure ([`STALLED`]).
pub fn is_stalled_reason(ready_reason: &str) -> bool {
    matches!(
        ready_reason,
        reason::INVALID_SPEC | reason::CONFIGURATION_ERROR | reason::SECRET_NOT_OWNED
    )
}

/// Sets [`RECONCILING`] and [`STALLED`] from the `Ready` condition (see the module doc), in place.
/// Returns whether anything changed. Both carry Ready's reason and message, so kstatus and Argo CD
/// show why.
pub fn set_progress(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let ready = find(conditions, READY).map(|c| {
        (
            c.status == "True" && c.observed_generation == generation,
            c.status == "False" && is_stalled_reason(&c.reason),
            c.reason.clone(),
            c.message.clone(),
        )
    });
    let (reconciling, stalled) = match ready {
        Some((true, _, _, _)) => (None, None),
        Some((false, true, r, m)) => (None, Some((r, m))),
        Some((false, false, r, m)) => (Some((r, m)), None),
        None => (
            Some((
                reason::PENDING.to_string(),
                "Not synchronised yet".to_string(),
            )),
            None,
        ),
    };
    let mut changed = false;
    for (type_, set) in [(RECONCILING, reconciling), (STALLED, stalled)] {
        changed |= match set {
            Some((r, m)) => set_condition(conditions, type_, true, &r, &m, generation, now),
            None => remove_condition(conditions, type_),
        };
    }
    changed
}

/// Upper bound of `message` in the CRD's condition schema (characters).
pub const MAX_MESSAGE_CHARS: usize = 32768;
/// Upper bound of `reason` in the CRD's condition schema.
pub const MAX_REASON_CHARS: usize = 1024;

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// Sets (adds or updates) the condition of `type_`, in place. Returns whether anything changed.
///
/// `lastTransitionTime` is set to `now` (truncated to whole seconds, as the API stores it) when the
/// condition is new or its status changes; otherwise it is kept. Reason, message and observedGeneration
/// are always updated. An invalid reason is replaced by `Unknown`; the message is cut to
/// [`MAX_MESSAGE_CHARS`]. The order of existing conditions is kept.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: impl Into<Status>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = status.into().as_str();
    let reason = if valid_reason(reason) {
        reason
    } else {
        "Unknown"
    };
    let message = truncate_chars(message, MAX_MESSAGE_CHARS);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let mut changed = false;
        if c.status != status {
            c.status = status.to_string();
            c.last_transition_time = Time(whole_seconds(now));
            changed = true;
        }
        if c.reason != reason {
            c.reason = reason.to_string();
            changed = true;
        }
        if c.message != message {
            c.message = message.to_string();
            changed = true;
        }
        if c.observed_generation != generation {
            c.observed_generation = generation;
            changed = true;
        }
        changed
    } else {
        conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: Time(whole_seconds(now)),
        });
        true
    }
}

/// `Ready=True`, reason [`reason::SYNCHRONIZED`]. Returns whether anything changed.
pub fn ready(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    set_condition(
        conditions,
        READY,
        true,
        reason::SYNCHRONIZED,
        message,
        generation,
        now,
    )
}

/// `Ready=False` with a specific `reason` (see [`reason`]) and a message naming the field or the
/// external error. Returns whether anything changed.
pub fn not_ready(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    set_condition(conditions, READY, false, reason, message, generation, now)
}

/// Sets a degraded condition (one of [`DEGRADED_TYPES`]): `Some(problem)` gives `True`/`Failed`/problem,
/// `None` gives `False`/`Validated`/`ok_message`. Returns whether anything changed.
pub fn set_degraded(
    conditions: &mut Vec<Condition>,
    type_: &str,
    problem: Option<&str>,
    ok_message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    match problem {
        Some(problem) => set_condition(
            conditions,
            type_,
            true,
            reason::FAILED,
            problem,
            generation,
            now,
        ),
        None => set_condition(
            conditions,
            type_,
            false,
            reason::VALIDATED,
            ok_message,
            generation,
            now,
        ),
    }
}

/// digdirator's `Error` condition: `Some(error)` gives `True`/`Failed`/error, `None` gives
/// `False`/`Synchronized`/"Processing completed without errors". Returns whether anything changed.
pub fn set_error(
    conditions: &mut Vec<Condition>,
    error: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    match error {
        Some(e) => set_condition(conditions, ERROR, true, reason::FAILED, e, generation, now),
        None => set_condition(
            conditions,
            ERROR,
            false,
            reason::SYNCHRONIZED,
            "Processing completed without errors",
            generation,
            now,
        ),
    }
}

/// Removes the condition of `type_`. Returns whether it was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is `True` and was set for `generation`.
pub fn is_true_for(conditions: &[Condition], type_: &str, generation: Option<i64>) -> bool {
    find(conditions, type_)
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// Whether the resource is Ready for its current `metadata.generation`: `Ready=True` and the
/// condition's observedGeneration equals `generation` (a stale `Ready=True` does not count).
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    is_true_for(conditions, READY, generation)
}

/// The degraded conditions that are currently `True`.
pub fn degraded(conditions: &[Condition]) -> Vec<&Condition> {
    conditions
        .iter()
        .filter(|c| DEGRADED_TYPES.contains(&c.type_.as_str()) && c.status == "True")
        .collect()
}

/// Whether `reason` satisfies the CRD's reason schema: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`,
/// 1..=1024 characters.
pub fn valid_reason(reason: &str) -> bool {
    let b = reason.as_bytes();
    let ok_mid = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':');
    let ok_last = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    match b {
        [] => false,
        [first, ..] if !first.is_ascii_alphabetic() => false,
        [_] => true,
        [_, mid @ .., last] => {
            b.len() <= MAX_REASON_CHARS && mid.iter().all(ok_mid) && ok_last(last)
        }
    }
}

/// Items for a condition or event message: the first `max` joined by ", ", then "and N more" (a
/// list of thousands of scopes must not make a 32 KB message).
pub fn list_for_message(items: &[String], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    format!("{} and {} more", items[..max].join(", "), items.len() - max)
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn ready_cond(c: &[Condition]) -> &Condition {
        find(c, READY).unwrap()
    }

    #[test]
    fn new_condition_gets_all_fields_and_the_transition_time() {
        let mut c = vec![];
        assert!(not_ready(&mut c, reason::PENDING, "waiting", Some(1), t(0)));
        let r = ready_cond(&c);
        assert_eq!(r.status, "False");
        assert_eq!(r.reason, "Pending");
        assert_eq!(r.message, "waiting");
        assert_eq!(r.observed_generation, Some(1));
        assert_eq!(r.last_transition_time, Time(t(0)));
    }

    #[test]
    fn transition_time_kept_when_only_message_changes() {
        let mut c = vec![];
        not_ready(
            &mut c,
            reason::DIGDIR_ERROR,
            "500 from Digdir",
            Some(1),
            t(0),
        );
        assert!(not_ready(
            &mut c,
            reason::DIGDIR_ERROR,
            "503 from Digdir",
            Some(1),
            t(10)
        ));
        assert_eq!(ready_cond(&c).message, "503 from Digdir");
        assert_eq!(ready_cond(&c).last_transition_time, Time(t(0)));
    }

    #[test]
    fn transition_time_kept_when_only_reason_or_generation_changes() {
        let mut c = vec![];
        not_ready(&mut c, reason::DIGDIR_ERROR, "m", Some(1), t(0));
        assert!(not_ready(
            &mut c,
            reason::SECRET_NOT_OWNED,
            "m",
            Some(1),
            t(5)
        ));
        assert!(not_ready(
            &mut c,
            reason::SECRET_NOT_OWNED,
            "m",
            Some(2),
            t(6)
        ));
        let r = ready_cond(&c);
        assert_eq!(r.reason, "SecretNotOwned");
        assert_eq!(r.observed_generation, Some(2));
        assert_eq!(r.last_transition_time, Time(t(0)));
    }

    #[test]
    fn transition_time_changes_when_status_changes() {
        let mut c = vec![];
        not_ready(&mut c, reason::PENDING, "m", Some(1), t(0));
        assert!(ready(&mut c, "up to date", Some(1), t(7)));
        assert_eq!(ready_cond(&c).status, "True");
        assert_eq!(ready_cond(&c).reason, "Synchronized");
        assert_eq!(ready_cond(&c).last_transition_time, Time(t(7)));
        assert!(not_ready(
            &mut c,
            reason::DIGDIR_ERROR,
            "boom",
            Some(1),
            t(9)
        ));
        assert_eq!(ready_cond(&c).last_transition_time, Time(t(9)));
    }

    #[test]
    fn identical_set_is_not_a_change() {
        let mut c = vec![];
        ready(&mut c, "ok", Some(3), t(0));
        let before = c.clone();
        assert!(!ready(&mut c, "ok", Some(3), t(100)));
        assert_eq!(c, before);
    }

    #[test]
    fn transition_time_is_whole_seconds_and_survives_a_round_trip() {
        let mut c = vec![];
        let now = t(0)
            .checked_add(jiff::SignedDuration::from_millis(750))
            .unwrap();
        ready(&mut c, "ok", Some(1), now);
        assert_eq!(ready_cond(&c).last_transition_time, Time(t(0)));
        let json = serde_json::to_value(&c).unwrap();
        let back: Vec<Condition> = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn other_conditions_and_order_are_kept() {
        let mut c = vec![];
        set_error(&mut c, None, Some(1), t(0));
        ready(&mut c, "ok", Some(1), t(0));
        set_degraded(
            &mut c,
            INVALID_CONSUMED_SCOPES,
            None,
            "all good",
            Some(1),
            t(0),
        );
        not_ready(&mut c, reason::DIGDIR_ERROR, "x", Some(1), t(1));
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [ERROR, READY, INVALID_CONSUMED_SCOPES]);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn is_ready_requires_true_and_current_generation() {
        let mut c = vec![];
        assert!(!is_ready(&c, Some(1)));
        ready(&mut c, "ok", Some(1), t(0));
        assert!(is_ready(&c, Some(1)));
        assert!(!is_ready(&c, Some(2)), "stale Ready must not count");
        not_ready(
            &mut c,
            reason::INVALID_SPEC,
            "spec.secretName is empty",
            Some(2),
            t(1),
        );
        assert!(!is_ready(&c, Some(2)));
    }

    #[test]
    fn degraded_conditions_do_not_touch_ready() {
        let mut c = vec![];
        ready(&mut c, "ok", Some(1), t(0));
        assert!(set_degraded(
            &mut c,
            INVALID_CONSUMED_SCOPES,
            Some("Organization has no access to scopes: [a:b]"),
            "Organization has access to all consumed scopes",
            Some(1),
            t(1),
        ));
        assert!(is_ready(&c, Some(1)));
        let d = degraded(&c);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].status, "True");
        assert_eq!(d[0].reason, "Failed");
        assert!(set_degraded(
            &mut c,
            INVALID_CONSUMED_SCOPES,
            None,
            "Organization has access to all consumed scopes",
            Some(1),
            t(2),
        ));
        let x = find(&c, INVALID_CONSUMED_SCOPES).unwrap();
        assert_eq!(
            (x.status.as_str(), x.reason.as_str()),
            ("False", "Validated")
        );
        assert_eq!(x.last_transition_time, Time(t(2)));
        assert!(degraded(&c).is_empty());
    }

    #[test]
    fn digdirator_error_condition() {
        let mut c = vec![];
        set_error(&mut c, Some("400: invalid_client_metadata"), Some(4), t(0));
        let e = find(&c, ERROR).unwrap();
        assert_eq!((e.status.as_str(), e.reason.as_str()), ("True", "Failed"));
        assert_eq!(e.message, "400: invalid_client_metadata");
        set_error(&mut c, None, Some(4), t(1));
        let e = find(&c, ERROR).unwrap();
        assert_eq!(
            (e.status.as_str(), e.reason.as_str()),
            ("False", "Synchronized")
        );
        assert_eq!(e.message, "Processing completed without errors");
        assert_eq!(e.observed_generation, Some(4));
    }

    #[test]
    fn unknown_status_and_remove() {
        let mut c = vec![];
        set_condition(
            &mut c,
            READY,
            Status::Unknown,
            reason::PENDING,
            "",
            None,
            t(0),
        );
        assert_eq!(ready_cond(&c).status, "Unknown");
        assert_eq!(ready_cond(&c).observed_generation, None);
        assert!(remove_condition(&mut c, READY));
        assert!(!remove_condition(&mut c, READY));
        assert!(c.is_empty());
    }

    #[test]
    fn reasons_follow_the_crd_pattern() {
        for r in [
            reason::SYNCHRONIZED,
            reason::PROCESSING,
            reason::FAILED,
            reason::VALIDATED,
            reason::PENDING,
            reason::INVALID_SPEC,
            reason::SECRET_NOT_OWNED,
            reason::DIGDIR_ERROR,
            reason::ENTRA_ERROR,
            reason::THROTTLED,
            reason::KUBERNETES_ERROR,
            reason::CONFIGURATION_ERROR,
            reason::DELETING,
        ] {
            assert!(valid_reason(r), "{r}");
        }
        for bad in ["", "1abc", "has space", "trailing:", "a-b", "Ærlig"] {
            assert!(!valid_reason(bad), "{bad:?}");
        }
        assert!(valid_reason("A"));
        assert!(valid_reason("a,b:c_"));
        assert!(!valid_reason(&"a".repeat(1025)));
    }

    #[test]
    fn invalid_reason_is_replaced_and_long_message_cut() {
        let mut c = vec![];
        let long = "ø".repeat(MAX_MESSAGE_CHARS + 10);
        not_ready(&mut c, "not a reason", &long, Some(1), t(0));
        assert_eq!(ready_cond(&c).reason, "Unknown");
        assert_eq!(ready_cond(&c).message.chars().count(), MAX_MESSAGE_CHARS);
        // Setting the same over-long message again is not a change.
        assert!(!not_ready(&mut c, "not a reason", &long, Some(1), t(1)));
    }

    #[test]
    fn progress_follows_ready_new_generation_retry_stall_and_recovery() {
        let mut c = vec![];
        // Nothing yet: Reconciling.
        assert!(set_progress(&mut c, Some(1), t(0)));
        assert!(is_true_for(&c, RECONCILING, Some(1)));
        // A retry pending (a provider error): Reconciling, with Ready's reason and message.
        not_ready(&mut c, reason::DIGDIR_ERROR, "HTTP 503", Some(1), t(1));
        set_progress(&mut c, Some(1), t(1));
        let r = find(&c, RECONCILING).unwrap();
        assert_eq!(
            (r.reason.as_str(), r.message.as_str()),
            ("DigdirError", "HTTP 503")
        );
        assert!(find(&c, STALLED).is_none());
        // Stuck until the spec changes: Stalled, not Reconciling.
        not_ready(
            &mut c,
            reason::SECRET_NOT_OWNED,
            "Secret s belongs to x",
            Some(1),
            t(2),
        );
        assert!(set_progress(&mut c, Some(1), t(2)));
        assert!(is_true_for(&c, STALLED, Some(1)));
        assert!(find(&c, RECONCILING).is_none());
        // Recovered: both gone; setting it again changes nothing (no extra write).
        ready(&mut c, "ok", Some(1), t(3));
        assert!(set_progress(&mut c, Some(1), t(3)));
        assert!(find(&c, STALLED).is_none() && find(&c, RECONCILING).is_none());
        assert!(!set_progress(&mut c, Some(1), t(4)));
        // A Ready=True of an older generation does not count: Reconciling.
        assert!(set_progress(&mut c, Some(2), t(5)));
        assert!(is_true_for(&c, RECONCILING, Some(2)));
    }

    #[test]
    fn stalled_reasons() {
        for r in [
            reason::INVALID_SPEC,
            reason::CONFIGURATION_ERROR,
            reason::SECRET_NOT_OWNED,
        ] {
            assert!(is_stalled_reason(r), "{r}");
        }
        for r in [
            reason::PENDING,
            reason::DIGDIR_ERROR,
            reason::THROTTLED,
            reason::KUBERNETES_ERROR,
            reason::INTERNAL_ERROR,
        ] {
            assert!(!is_stalled_reason(r), "{r}");
        }
    }

    #[test]
    fn is_true_for_other_types() {
        let mut c = vec![];
        set_degraded(
            &mut c,
            PRE_AUTHORIZED_APPS_NOT_FOUND,
            Some("app a.b.c not found"),
            "",
            Some(2),
            t(0),
        );
        assert!(is_true_for(&c, PRE_AUTHORIZED_APPS_NOT_FOUND, Some(2)));
        assert!(!is_true_for(&c, PRE_AUTHORIZED_APPS_NOT_FOUND, Some(1)));
    }
}
