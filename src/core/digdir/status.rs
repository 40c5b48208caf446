//! Status after a pass, through the shared condition policy ([`crate::conditions`]), with digdirator's
//! field values (`synchronizationState` = the last event reason, `Error` condition kept).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, reason};
use crate::crd::DigdiratorStatus;

pub const ANN_RESYNC: &str = "digdir.nais.io/resync";
pub const ANN_ROTATE: &str = "digdir.nais.io/rotate";
pub const ANN_PRESERVE: &str = "digdir.nais.io/preserve";
pub const FINALIZER: &str = "digdirator.nais.io/finalizer";
pub const LEGACY_FINALIZER: &str = "finalizer.digdirator.nais.io";

/// Event reasons (digdirator.md §2.9), plus portvakt's own.
pub mod events {
    pub const SYNCHRONIZED: &str = "Synchronized";
    pub const FAILED_SYNCHRONIZATION: &str = "FailedSynchronization";
    pub const CREATED_IN_DIGDIR: &str = "CreatedInDigDir";
    pub const UPDATED_IN_DIGDIR: &str = "UpdatedInDigDir";
    pub const ROTATED_IN_DIGDIR: &str = "RotatedInDigDir";
    pub const DELETED_IN_DIGDIR: &str = "DeletedInDigDir";
    /// Referenced Secrets whose keys no longer fit in Digdir's 5-key cap.
    pub const KEYS_DROPPED: &str = "KeysDropped";
    pub const ADOPTED_IN_DIGDIR: &str = "AdoptedInDigDir";
    pub const DRIFT_REPAIRED: &str = "DriftRepaired";
    /// Exposed scopes (digdirator's reasons).
    pub const CREATED_SCOPE: &str = "CreatedScopeInDigDir";
    pub const UPDATED_SCOPE: &str = "UpdatedScopeInDigDir";
    pub const ACTIVATED_SCOPE: &str = "ActivatedScopeInDigDir";
    pub const DEACTIVATED_SCOPE: &str = "DeactivatedScopeInDigDir";
    pub const UPDATED_ACL: &str = "UpdatedACLForScopeInDigDir";
    /// portvakt's: a scope made by hand (or left by a resource that no longer exposes it) taken over.
    pub const ADOPTED_SCOPE: &str = "AdoptedScopeInDigDir";
    /// portvakt's: a scope removed from `spec.scopes.exposes` is left active at Digdir.
    pub const SCOPE_LEFT_ACTIVE: &str = "ScopeLeftActiveInDigDir";
    /// portvakt's: two entries of `spec.scopes.exposes` name one scope (the later one is used).
    pub const DUPLICATE_SCOPE: &str = "DuplicateExposedScope";
}

/// How many items (scopes, Secrets) a condition message names before it says how many more.
pub const MAX_ITEMS_IN_MESSAGE: usize = 50;

/// Condition type naming referenced Secrets whose keys are not registered (more than 5 in use).
pub const KEYS_DROPPED_CONDITION: &str = "KeysDropped";

fn annotation_true(ann: Option<&BTreeMap<String, String>>, key: &str) -> bool {
    ann.and_then(|a| a.get(key)).is_some_and(|v| v == "true")
}

pub fn wants_resync(ann: Option<&BTreeMap<String, String>>) -> bool {
    annotation_true(ann, ANN_RESYNC)
}
pub fn wants_rotate(ann: Option<&BTreeMap<String, String>>) -> bool {
    annotation_true(ann, ANN_ROTATE)
}
pub fn preserve(ann: Option<&BTreeMap<String, String>>) -> bool {
    annotation_true(ann, ANN_PRESERVE)
}

/// Whether Digdir can be left alone this pass (the Secret and keys are still checked): the status
/// is Ready for this generation, no `resync`/`rotate` annotation, no failure condition, and the last
/// full synchronisation is younger than `full_sync_every`.
pub fn is_up_to_date(
    generation: Option<i64>,
    status: Option<&DigdiratorStatus>,
    annotations: Option<&BTreeMap<String, String>>,
    now: Timestamp,
    full_sync_every: Duration,
) -> bool {
    let Some(st) = status else { return false };
    let conds = st.conditions.as_deref().unwrap_or(&[]);
    let fresh = st.synchronization_time.as_ref().is_some_and(|t| {
        let age = now.duration_since(t.0);
        age.as_secs() >= 0 && (age.as_secs() as u64) < full_sync_every.as_secs()
    });
    generation.is_some()
        && st.observed_generation == generation
        && st.client_id.as_deref().is_some_and(|c| !c.is_empty())
        && !wants_resync(annotations)
        && !wants_rotate(annotations)
        && conditions::is_ready(conds, generation)
        && !conditions::is_true_for(conds, conditions::ERROR, generation)
        && !conditions::is_true_for(conds, conditions::INVALID_CONSUMED_SCOPES, generation)
        && fresh
}

/// What a successful pass established.
#[derive(Clone, Debug, Default)]
pub struct Success {
    pub client_id: String,
    pub secret_name: String,
    pub hash: String,
    pub correlation_id: String,
    /// Kids registered by a POST in this pass (unchanged otherwise).
    pub key_ids: Option<Vec<String>>,
    /// Maskinporten: consumed scopes without access (`None` for IDPortenClient).
    pub invalid_scopes: Option<Vec<String>>,
    /// Referenced Secrets whose keys do not fit.
    pub dropped: Vec<String>,
    /// Maskinporten API providers: consumers of exposed scopes that cannot be granted access, each
    /// naming the organisation and the scope (`None`: not checked this pass; the condition stays).
    pub invalid_consumers: Option<Vec<String>>,
}

/// Status after success: Ready=True/Synchronized, Error=False, digdirator's fields.
pub fn success(
    prev: Option<&DigdiratorStatus>,
    generation: Option<i64>,
    now: Timestamp,
    s: &Success,
) -> DigdiratorStatus {
    let mut st = prev.cloned().unwrap_or_default();
    let mut conds = st.conditions.take().unwrap_or_default();
    conditions::ready(
        &mut conds,
        "Resource is up-to-date with DigDir",
        generation,
        now,
    );
    conditions::set_error(&mut conds, None, generation, now);
    if let Some(invalid) = &s.invalid_scopes {
        let msg = (!invalid.is_empty()).then(|| {
            format!(
                "Organization has no access to scopes: [{}]",
                conditions::list_for_message(invalid, MAX_ITEMS_IN_MESSAGE)
            )
        });
        conditions::set_degraded(
            &mut conds,
            conditions::INVALID_CONSUMED_SCOPES,
            msg.as_deref(),
            "Organization has access to all consumed scopes",
            generation,
            now,
        );
    }
    if let Some(invalid) = &s.invalid_consumers {
        let msg = (!invalid.is_empty()).then(|| {
            format!(
                "Consumers of exposed scopes not granted access: [{}]",
                conditions::list_for_message(invalid, MAX_ITEMS_IN_MESSAGE)
            )
        });
        conditions::set_degraded(
            &mut conds,
            conditions::INVALID_EXPOSED_SCOPES_CONSUMERS,
            msg.as_deref(),
            "Every consumer of the exposed scopes has access",
            generation,
            now,
        );
    }
    if s.dropped.is_empty() {
        conditions::remove_condition(&mut conds, KEYS_DROPPED_CONDITION);
    } else {
        conditions::set_condition(
            &mut conds,
            KEYS_DROPPED_CONDITION,
            true,
            reason::FAILED,
            &format!(
                "More than 5 keys in use; keys of these Secrets are not registered at Digdir: {}",
                conditions::list_for_message(&s.dropped, MAX_ITEMS_IN_MESSAGE)
            ),
            generation,
            now,
        );
    }
    st.conditions = Some(conds);
    st.client_id = Some(s.client_id.clone());
    st.correlation_id = Some(s.correlation_id.clone());
    if let Some(k) = &s.key_ids {
        st.key_ids = Some(k.clone());
    }
    st.observed_generation = generation;
    st.synchronization_hash = Some(s.hash.clone());
    st.synchronization_secret_name = Some(s.secret_name.clone());
    st.synchronization_state = Some(events::SYNCHRONIZED.into());
    st.synchronization_time = Some(Time(Timestamp::from_second(now.as_second()).unwrap_or(now)));
    st
}

/// The status after a successful pass, or `None` when the current one still says everything: a pass
/// that changed nothing and leaves every condition as it was writes nothing (the steady state costs
/// no write). `changed`: the pass changed something at Digdir or in a Secret, or made a full
/// synchronisation (the sync time and correlation ID are then new).
pub fn after_pass(
    prev: Option<&DigdiratorStatus>,
    generation: Option<i64>,
    now: Timestamp,
    s: &Success,
    changed: bool,
) -> Option<DigdiratorStatus> {
    let new = success(prev, generation, now, s);
    if changed {
        return Some(new);
    }
    let stable = |st: &DigdiratorStatus| DigdiratorStatus {
        synchronization_time: None,
        correlation_id: None,
        ..st.clone()
    };
    match prev {
        Some(p) if stable(p) == stable(&new) => None,
        _ => Some(new),
    }
}

/// Status after a failure: Ready=False with `reason`, Error=True with the message (not while the pass
/// only waits: reason `Pending`). `clientID` is kept.
pub fn failure(
    prev: Option<&DigdiratorStatus>,
    generation: Option<i64>,
    now: Timestamp,
    ready_reason: &str,
    message: &str,
) -> DigdiratorStatus {
    let mut st = prev.cloned().unwrap_or_default();
    let mut conds = st.conditions.take().unwrap_or_default();
    conditions::not_ready(&mut conds, ready_reason, message, generation, now);
    if ready_reason != reason::PENDING {
        conditions::set_error(&mut conds, Some(message), generation, now);
        st.synchronization_state = Some(events::FAILED_SYNCHRONIZATION.into());
    }
    st.conditions = Some(conds);
    st.observed_generation = generation;
    st
}

/// Status while a rotation waits for the next key to be recognised by Digdir.
pub fn pending(
    prev: Option<&DigdiratorStatus>,
    generation: Option<i64>,
    now: Timestamp,
    message: &str,
) -> DigdiratorStatus {
    let mut st = prev.cloned().unwrap_or_default();
    let mut conds = st.conditions.take().unwrap_or_default();
    conditions::not_ready(&mut conds, reason::PENDING, message, generation, now);
    st.conditions = Some(conds);
    st.observed_generation = generation;
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn success_then_up_to_date_then_stale() {
        let s = Success {
            client_id: "cid".into(),
            secret_name: "sec".into(),
            hash: "abc".into(),
            correlation_id: "corr".into(),
            key_ids: Some(vec!["k1".into()]),
            invalid_scopes: Some(vec!["nav:x".into()]),
            dropped: vec![],
            invalid_consumers: None,
        };
        let st = success(None, Some(3), now(), &s);
        assert_eq!(st.client_id.as_deref(), Some("cid"));
        assert_eq!(st.synchronization_state.as_deref(), Some("Synchronized"));
        assert_eq!(st.synchronization_secret_name.as_deref(), Some("sec"));
        assert_eq!(st.observed_generation, Some(3));
        let conds = st.conditions.clone().unwrap();
        assert!(conditions::is_ready(&conds, Some(3)));
        let e = conditions::find(&conds, "Error").unwrap();
        assert_eq!(
            (e.status.as_str(), e.reason.as_str()),
            ("False", "Synchronized")
        );
        let i = conditions::find(&conds, "InvalidConsumedScopes").unwrap();
        assert_eq!(i.message, "Organization has no access to scopes: [nav:x]");
        // Invalid consumed scopes make digdirator retry, so not "up to date".
        let day = Duration::from_secs(86400);
        assert!(!is_up_to_date(Some(3), Some(&st), None, now(), day));
        let s2 = Success {
            invalid_scopes: Some(vec![]),
            ..s
        };
        let st = success(Some(&st), Some(3), now(), &s2);
        assert!(is_up_to_date(Some(3), Some(&st), None, now(), day));
        assert!(!is_up_to_date(Some(4), Some(&st), None, now(), day));
        let ann = BTreeMap::from([(ANN_ROTATE.to_string(), "true".to_string())]);
        assert!(!is_up_to_date(Some(3), Some(&st), Some(&ann), now(), day));
        let ann = BTreeMap::from([(ANN_RESYNC.to_string(), "yes".to_string())]);
        assert!(is_up_to_date(Some(3), Some(&st), Some(&ann), now(), day));
        let later = now() + jiff::SignedDuration::from_hours(25);
        assert!(!is_up_to_date(Some(3), Some(&st), None, later, day));
    }

    #[test]
    fn failure_keeps_client_id_and_sets_error() {
        let st = success(
            None,
            Some(1),
            now(),
            &Success {
                client_id: "cid".into(),
                ..Default::default()
            },
        );
        let st = failure(
            Some(&st),
            Some(2),
            now(),
            reason::DIGDIR_ERROR,
            "HTTP 400: bad redirect (correlation id x)",
        );
        assert_eq!(st.client_id.as_deref(), Some("cid"));
        let conds = st.conditions.unwrap();
        let r = conditions::find(&conds, "Ready").unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "DigdirError")
        );
        assert!(conditions::is_true_for(&conds, "Error", Some(2)));
        assert_eq!(
            st.synchronization_state.as_deref(),
            Some("FailedSynchronization")
        );
    }

    #[test]
    fn a_pass_that_changed_nothing_writes_nothing_but_a_new_generation_is_written() {
        let s = Success {
            client_id: "cid".into(),
            invalid_scopes: Some(vec![]),
            ..Default::default()
        };
        let st = success(None, Some(2), now(), &s);
        let later = now() + jiff::SignedDuration::from_secs(60);
        assert_eq!(after_pass(Some(&st), Some(2), later, &s, false), None);
        let changed = after_pass(Some(&st), Some(2), later, &s, true).expect("written");
        assert_eq!(changed.synchronization_time.unwrap().0, later);
        let next_gen = after_pass(Some(&st), Some(3), later, &s, false).expect("written");
        assert_eq!(next_gen.observed_generation, Some(3));
        assert!(conditions::is_ready(
            next_gen.conditions.as_deref().unwrap(),
            Some(3)
        ));
    }

    #[test]
    fn every_failure_and_pending_status_names_its_generation() {
        let st = failure(
            None,
            Some(5),
            now(),
            reason::INVALID_SPEC,
            "spec.secretName: bad",
        );
        assert_eq!(st.observed_generation, Some(5));
        let st = pending(Some(&st), Some(6), now(), "waiting");
        assert_eq!(st.observed_generation, Some(6));
        // Waiting is not an error: digdirator's Error condition is not raised for it.
        let st = failure(None, Some(1), now(), reason::PENDING, "waiting for Digdir");
        assert!(conditions::find(st.conditions.as_deref().unwrap(), "Error").is_none());
    }

    #[test]
    fn thousands_of_invalid_scopes_make_a_short_message_with_a_count() {
        let invalid: Vec<String> = (0..6000).map(|i| format!("org:scope{i}")).collect();
        let s = Success {
            invalid_scopes: Some(invalid),
            ..Default::default()
        };
        let st = success(None, Some(1), now(), &s);
        let c =
            conditions::find(st.conditions.as_deref().unwrap(), "InvalidConsumedScopes").unwrap();
        assert!(c.message.len() < 2000, "{} bytes", c.message.len());
        assert!(c.message.contains("and 5950 more"), "{}", c.message);
    }

    #[test]
    fn refused_consumers_are_a_degraded_condition_and_ready_stays_true() {
        let refused = Success {
            client_id: "cid".into(),
            invalid_consumers: Some(vec![
                "999999999 for `kartverket:api:read` (Digdir refused it)".into(),
            ]),
            ..Default::default()
        };
        let st = success(None, Some(1), now(), &refused);
        let conds = st.conditions.clone().unwrap();
        assert!(conditions::is_ready(&conds, Some(1)));
        let c = conditions::find(&conds, conditions::INVALID_EXPOSED_SCOPES_CONSUMERS).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Failed"));
        assert!(c.message.contains("999999999") && c.message.contains("kartverket:api:read"));
        // Nothing new: no write. Not checked this pass (`None`): the condition stays as it was.
        let later = now() + jiff::SignedDuration::from_secs(60);
        assert_eq!(after_pass(Some(&st), Some(1), later, &refused, false), None);
        let unchecked = Success {
            invalid_consumers: None,
            ..refused.clone()
        };
        assert_eq!(
            after_pass(Some(&st), Some(1), later, &unchecked, false),
            None
        );
        // The consumer is fixed: the condition turns False and the status is written.
        let fixed = Success {
            invalid_consumers: Some(vec![]),
            ..refused
        };
        let st = after_pass(Some(&st), Some(1), later, &fixed, false).expect("written");
        let c = conditions::find(
            st.conditions.as_deref().unwrap(),
            conditions::INVALID_EXPOSED_SCOPES_CONSUMERS,
        )
        .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Validated")
        );
    }

    #[test]
    fn dropped_keys_condition() {
        let s = Success {
            dropped: vec!["old-1".into()],
            ..Default::default()
        };
        let st = success(None, Some(1), now(), &s);
        let c =
            conditions::find(st.conditions.as_deref().unwrap(), KEYS_DROPPED_CONDITION).unwrap();
        assert!(c.message.contains("old-1"));
        let st = success(Some(&st), Some(1), now(), &Success::default());
        assert!(
            conditions::find(st.conditions.as_deref().unwrap(), KEYS_DROPPED_CONDITION).is_none()
        );
    }
}
