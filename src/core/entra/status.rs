//! Status of an AzureAdApplication after a pass, through the shared condition policy
//! ([`crate::conditions`]): azurerator's fields (`clientId`, `objectId`, `servicePrincipalId`,
//! `synchronization*`, `preAuthorizedApps`, key ids, `correlationId`) plus `conditions` and
//! `observedGeneration`. The degraded condition `PreAuthorizedAppsNotFound` names the pre-authorized
//! apps not found (yet); it never makes `Ready` false.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::credentials::KeyIds;
use crate::conditions;
use crate::crd::{AzureAdApplicationStatus, AzureAdPreAuthorizedApp, AzureAdPreAuthorizedApps};

/// How many items a condition message names before it says how many more.
pub const MAX_ITEMS_IN_MESSAGE: usize = 50;
pub const READY_MESSAGE: &str = "Azure application is up-to-date";

fn whole(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// What a successful pass established.
#[derive(Clone, Debug, Default)]
pub struct Success {
    pub client_id: String,
    pub object_id: String,
    pub service_principal_id: String,
    pub secret_name: String,
    pub hash: String,
    /// `nais.io/deploymentCorrelationID`, or a fresh id for a synchronisation.
    pub correlation_id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    /// Set when credentials were added or rotated in this pass.
    pub rotated_at: Option<Timestamp>,
    pub assigned: Vec<AzureAdPreAuthorizedApp>,
    pub unassigned: Vec<AzureAdPreAuthorizedApp>,
    /// Managed credentials still registered.
    pub key_ids: KeyIds,
}

/// The status after success: Ready=True/Synchronized, the degraded condition, azurerator's fields.
pub fn success(
    prev: Option<&AzureAdApplicationStatus>,
    generation: Option<i64>,
    now: Timestamp,
    s: &Success,
) -> AzureAdApplicationStatus {
    let mut st = prev.cloned().unwrap_or_default();
    let mut conds = st.conditions.take().unwrap_or_default();
    conditions::ready(&mut conds, READY_MESSAGE, generation, now);
    let missing: Vec<String> = s
        .unassigned
        .iter()
        .filter_map(|a| a.access_policy_rule.as_ref())
        .map(|r| {
            format!(
                "{}:{}:{}",
                r.cluster.as_deref().unwrap_or_default(),
                r.namespace.as_deref().unwrap_or_default(),
                r.application
            )
        })
        .collect();
    let problem = (!missing.is_empty()).then(|| {
        format!(
            "Pre-authorized applications not found in Entra ID (yet): {}",
            conditions::list_for_message(&missing, MAX_ITEMS_IN_MESSAGE)
        )
    });
    conditions::set_degraded(
        &mut conds,
        conditions::PRE_AUTHORIZED_APPS_NOT_FOUND,
        problem.as_deref(),
        "All pre-authorized applications were found",
        generation,
        now,
    );
    st.conditions = Some(conds);
    st.observed_generation = generation;
    st.client_id = Some(s.client_id.clone());
    st.object_id = Some(s.object_id.clone());
    st.service_principal_id = Some(s.service_principal_id.clone());
    st.correlation_id = Some(s.correlation_id.clone());
    st.synchronization_hash = Some(s.hash.clone());
    st.synchronization_secret_name = Some(s.secret_name.clone());
    st.synchronization_state = Some(super::events::SYNCHRONIZED.into());
    st.synchronization_tenant = Some(s.tenant_id.clone());
    st.synchronization_tenant_name = Some(s.tenant_name.clone());
    st.synchronization_time = Some(whole(now));
    if let Some(t) = s.rotated_at {
        st.synchronization_secret_rotation_time = Some(whole(t));
    }
    st.password_key_ids = Some(s.key_ids.passwords.clone());
    st.certificate_key_ids = Some(s.key_ids.certificates.clone());
    st.pre_authorized_apps = Some(AzureAdPreAuthorizedApps {
        assigned_count: Some(s.assigned.len() as i64),
        assigned: Some(s.assigned.clone()),
        unassigned_count: Some(s.unassigned.len() as i64),
        unassigned: Some(s.unassigned.clone()),
    });
    st
}

/// The status after a pass, or `None` when the current one still says everything (`changed`: the
/// pass changed something in Entra or in a Secret, so the synchronisation time and correlation id
/// are new).
pub fn after_pass(
    prev: Option<&AzureAdApplicationStatus>,
    generation: Option<i64>,
    now: Timestamp,
    s: &Success,
    changed: bool,
) -> Option<AzureAdApplicationStatus> {
    let new = success(prev, generation, now, s);
    if changed {
        return Some(new);
    }
    let stable = |st: &AzureAdApplicationStatus| AzureAdApplicationStatus {
        synchronization_time: None,
        correlation_id: None,
        ..st.clone()
    };
    match prev {
        Some(p) if stable(p) == stable(&new) => None,
        _ => Some(new),
    }
}

/// The status after a failure: Ready=False with `reason`; everything else kept.
pub fn failure(
    prev: Option<&AzureAdApplicationStatus>,
    generation: Option<i64>,
    now: Timestamp,
    ready_reason: &str,
    message: &str,
) -> AzureAdApplicationStatus {
    let mut st = prev.cloned().unwrap_or_default();
    let mut conds = st.conditions.take().unwrap_or_default();
    conditions::not_ready(&mut conds, ready_reason, message, generation, now);
    st.conditions = Some(conds);
    st.observed_generation = generation;
    st
}

/// The key ids recorded in status.
pub fn status_key_ids(st: &AzureAdApplicationStatus) -> KeyIds {
    KeyIds {
        passwords: st.password_key_ids.clone().unwrap_or_default(),
        certificates: st.certificate_key_ids.clone().unwrap_or_default(),
    }
}

/// What [`is_up_to_date`] decides on.
#[derive(Clone, Debug)]
pub struct Freshness<'a> {
    pub generation: Option<i64>,
    pub status: Option<&'a AzureAdApplicationStatus>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    pub hash: &'a str,
    pub secret_name: &'a str,
    pub tenant_id: &'a str,
    pub now: Timestamp,
    pub full_sync_every: Duration,
    /// The last full synchronisation that changed nothing (and so wrote no status), if newer than
    /// `status.synchronizationTime`.
    pub full_sync_at: Option<Timestamp>,
    pub max_age: Duration,
    /// The Secret holds a readable set whose key ids are the ones last recorded.
    pub secret_valid: bool,
    /// Credentials may be waiting to be revoked.
    pub cleanup_pending: bool,
}

/// Whether Entra can be left alone this pass: Ready for this generation, the same hash, Secret name
/// and tenant as the last synchronisation, no `resync`/`rotate`, credentials within the max age, the
/// Secret intact, nothing waiting to be revoked, and the last full synchronisation younger than
/// `full_sync_every`. azurerator's own status (no conditions) is never up to date: the first pass
/// after a switch-over looks at everything once.
pub fn is_up_to_date(f: &Freshness<'_>) -> bool {
    let Some(st) = f.status else { return false };
    let conds = st.conditions.as_deref().unwrap_or(&[]);
    let synced = st
        .synchronization_time
        .as_ref()
        .map(|t| t.0)
        .max(f.full_sync_at);
    let fresh = synced.is_some_and(|t| {
        let age = f.now.duration_since(t);
        age.as_secs() >= 0 && age.unsigned_abs() < f.full_sync_every
    });
    let rotation = st
        .synchronization_secret_rotation_time
        .as_ref()
        .map(|t| t.0);
    f.generation.is_some()
        && st.observed_generation == f.generation
        && conditions::is_ready(conds, f.generation)
        && st.client_id.as_deref().is_some_and(|c| !c.is_empty())
        && st.synchronization_hash.as_deref() == Some(f.hash)
        && st.synchronization_secret_name.as_deref() == Some(f.secret_name)
        && st
            .synchronization_tenant
            .as_deref()
            .is_some_and(|t| !f.tenant_id.is_empty() && t.contains(f.tenant_id))
        && !super::wants_resync(f.annotations)
        && !super::wants_rotate(f.annotations)
        && !super::credentials::expired(rotation, f.max_age, f.now)
        && f.secret_valid
        && !f.cleanup_pending
        && fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::reason;
    use crate::crd::AccessPolicyRule;

    fn now() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    fn ok() -> Success {
        Success {
            client_id: "cid".into(),
            object_id: "obj".into(),
            service_principal_id: "sp".into(),
            secret_name: "sec".into(),
            hash: "h".into(),
            correlation_id: "corr".into(),
            tenant_id: "tid".into(),
            tenant_name: "example.org".into(),
            rotated_at: Some(now()),
            assigned: vec![AzureAdPreAuthorizedApp {
                client_id: Some("cid".into()),
                ..Default::default()
            }],
            unassigned: vec![AzureAdPreAuthorizedApp {
                access_policy_rule: Some(AccessPolicyRule {
                    application: "b".into(),
                    namespace: Some("team".into()),
                    cluster: Some("prod".into()),
                }),
                reason: Some("not found".into()),
                ..Default::default()
            }],
            key_ids: KeyIds {
                passwords: vec!["p1".into(), "p2".into()],
                certificates: vec!["c1".into(), "c2".into()],
            },
        }
    }

    fn freshness<'a>(st: &'a AzureAdApplicationStatus) -> Freshness<'a> {
        Freshness {
            generation: Some(2),
            status: Some(st),
            annotations: None,
            hash: "h",
            secret_name: "sec",
            tenant_id: "tid",
            now: now() + jiff::SignedDuration::from_secs(60),
            full_sync_every: Duration::from_secs(86400),
            full_sync_at: None,
            max_age: Duration::from_secs(168 * 3600),
            secret_valid: true,
            cleanup_pending: false,
        }
    }

    #[test]
    fn success_has_azurerators_fields_and_the_degraded_condition() {
        let st = success(None, Some(2), now(), &ok());
        assert_eq!(st.client_id.as_deref(), Some("cid"));
        assert_eq!(st.synchronization_state.as_deref(), Some("Synchronized"));
        assert_eq!(st.synchronization_tenant.as_deref(), Some("tid"));
        assert_eq!(
            st.synchronization_tenant_name.as_deref(),
            Some("example.org")
        );
        let pre = st.pre_authorized_apps.clone().unwrap();
        assert_eq!(
            (pre.assigned_count, pre.unassigned_count),
            (Some(1), Some(1))
        );
        let conds = st.conditions.clone().unwrap();
        assert!(conditions::is_ready(&conds, Some(2)));
        let d = conditions::find(&conds, conditions::PRE_AUTHORIZED_APPS_NOT_FOUND).unwrap();
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Failed"));
        assert!(d.message.ends_with("prod:team:b"), "{}", d.message);
        let all_found = Success {
            unassigned: vec![],
            ..ok()
        };
        let st2 = success(Some(&st), Some(2), now(), &all_found);
        let d = conditions::find(
            st2.conditions.as_deref().unwrap(),
            conditions::PRE_AUTHORIZED_APPS_NOT_FOUND,
        )
        .unwrap();
        assert_eq!(d.status, "False");
    }

    /// A full pass that changed nothing writes no status; the time it was made counts as the last
    /// full synchronisation all the same, or every later pass would be a full one.
    #[test]
    fn a_full_pass_without_a_status_write_counts_as_the_daily_synchronisation() {
        let st = success(None, Some(2), now(), &ok());
        let mut f = freshness(&st);
        f.now = now() + jiff::SignedDuration::from_hours(25);
        assert!(!is_up_to_date(&f), "a day old: a full pass is due");
        f.full_sync_at = Some(now() + jiff::SignedDuration::from_hours(24));
        assert!(is_up_to_date(&f), "the full pass an hour ago counts");
        f.full_sync_at = Some(now() - jiff::SignedDuration::from_hours(1));
        assert!(!is_up_to_date(&f), "an older one does not");
    }

    #[test]
    fn up_to_date_only_when_nothing_asks_for_a_look() {
        let st = success(None, Some(2), now(), &ok());
        assert!(is_up_to_date(&freshness(&st)));
        type Change = Box<dyn Fn(&mut Freshness)>;
        let checks: Vec<(&str, Change)> = vec![
            ("generation", Box::new(|f| f.generation = Some(3))),
            ("hash", Box::new(|f| f.hash = "other")),
            ("secret name", Box::new(|f| f.secret_name = "other")),
            ("tenant", Box::new(|f| f.tenant_id = "other")),
            ("secret", Box::new(|f| f.secret_valid = false)),
            ("cleanup", Box::new(|f| f.cleanup_pending = true)),
            (
                "stale",
                Box::new(|f| f.now = now() + jiff::SignedDuration::from_hours(25)),
            ),
            ("max age", Box::new(|f| f.max_age = Duration::from_secs(30))),
        ];
        for (what, change) in checks {
            let mut f = freshness(&st);
            change(&mut f);
            assert!(!is_up_to_date(&f), "{what}");
        }
        for ann in [super::super::ANN_RESYNC, super::super::ANN_ROTATE] {
            let a = BTreeMap::from([(ann.to_string(), "false".to_string())]);
            let mut f = freshness(&st);
            f.annotations = Some(&a);
            assert!(!is_up_to_date(&f), "{ann} counts by presence");
        }
        // azurerator's status (no conditions) is never up to date.
        let mut azurerator = st.clone();
        azurerator.conditions = None;
        azurerator.observed_generation = None;
        assert!(!is_up_to_date(&freshness(&azurerator)));
    }

    #[test]
    fn a_pass_that_changed_nothing_writes_nothing() {
        let st = success(None, Some(2), now(), &ok());
        let later = now() + jiff::SignedDuration::from_secs(60);
        let same = Success {
            correlation_id: "other".into(),
            rotated_at: None,
            ..ok()
        };
        assert!(after_pass(Some(&st), Some(2), later, &same, false).is_none());
        assert!(after_pass(Some(&st), Some(2), later, &same, true).is_some());
        assert!(after_pass(Some(&st), Some(3), later, &same, false).is_some());
        let f = failure(
            Some(&st),
            Some(3),
            later,
            reason::ENTRA_ERROR,
            "Graph said no",
        );
        assert_eq!(f.client_id.as_deref(), Some("cid"));
        assert!(!conditions::is_ready(
            f.conditions.as_deref().unwrap(),
            Some(3)
        ));
        assert_eq!(f.observed_generation, Some(3));
    }
}
