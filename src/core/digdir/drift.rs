//! The periodic steady-state pass: which resources drifted at Digdir, and whose JWKS is due for a
//! read. No IO; the controller lists the registrations once per pass and asks this module.
//!
//! - **Registrations** are compared every pass: one `GET /clients` for all resources, each compared
//!   with its desired payload ([`super::registration::differing_fields`]). A registration that is
//!   gone (deleted or deactivated by hand) is drift too.
//! - **Keys** cost one JWKS read per client, so they are read on a slower cadence
//!   ([`super::Config::jwks_check_every`]), jittered per client so the reads spread out instead of
//!   arriving together. The first read after the operator starts falls anywhere in the first period
//!   (a restart does not read every JWKS at once); later reads come every period ±10 %.
//! - **Exposed scopes** (API providers): the organisation's scope list is compared every pass (one
//!   `GET /scopes`); each scope's ACL costs one read, so it is read on the JWKS cadence
//!   ([`acl_read_due`], [`super::Config::acl_check_every`], jittered per scope).
//! - Only resources in a settled state are checked: Ready for their generation, not being deleted,
//!   no `resync`/`rotate` pending (their own reconcile is about to look at Digdir anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::registration::{self, Payload};
use super::status as cstatus;
use crate::conditions;
use crate::crd::DigdiratorStatus;

/// What differs at Digdir from what portvakt set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// These registration fields were changed.
    Fields(Vec<&'static str>),
    /// The registration is gone (deleted or deactivated).
    Missing,
    /// More than one active client carries the resource's identity.
    Duplicated,
    /// The registered keys differ from what portvakt registered last.
    Keys {
        /// Registered by portvakt, no longer at Digdir.
        removed: Vec<String>,
        /// At Digdir, not registered by portvakt.
        added: Vec<String>,
    },
}

impl Drift {
    /// A one-line description for events and logs (names fields and kids; never key material).
    pub fn describe(&self) -> String {
        match self {
            Drift::Fields(f) => format!("registration changed at Digdir ({})", f.join(", ")),
            Drift::Missing => "registration deleted or deactivated at Digdir".into(),
            Drift::Duplicated => {
                "more than one active client at Digdir carries this resource's identity".into()
            }
            Drift::Keys { removed, added } => {
                let mut parts = Vec::new();
                if !removed.is_empty() {
                    parts.push(format!("keys removed: {}", removed.join(", ")));
                }
                if !added.is_empty() {
                    parts.push(format!("unknown keys added: {}", added.join(", ")));
                }
                format!("registered keys changed at Digdir ({})", parts.join("; "))
            }
        }
    }
}

/// The client ID of a resource the pass should check, or `None` when it is not settled (not Ready for
/// its generation, being deleted, a `resync`/`rotate` pending, no client ID yet).
pub fn settled_client_id<'a>(
    generation: Option<i64>,
    status: Option<&'a DigdiratorStatus>,
    annotations: Option<&BTreeMap<String, String>>,
    deleting: bool,
) -> Option<&'a str> {
    let st = status?;
    let id = st.client_id.as_deref().filter(|s| !s.is_empty())?;
    let conds = st.conditions.as_deref().unwrap_or(&[]);
    let settled = !deleting
        && generation.is_some()
        && st.observed_generation == generation
        && !cstatus::wants_resync(annotations)
        && !cstatus::wants_rotate(annotations)
        && conditions::is_ready(conds, generation);
    settled.then_some(id)
}

/// Registration drift of one resource: `observed` is its registration among the *active* listed
/// ones (`None` when absent).
pub fn registration_drift(desired: &Payload, observed: Option<&Value>) -> Option<Drift> {
    let Some(observed) = observed else {
        return Some(Drift::Missing);
    };
    let fields = registration::differing_fields(desired, observed);
    (!fields.is_empty()).then_some(Drift::Fields(fields))
}

/// Key drift: `expected` are the kids portvakt registered last (`status.keyIDs`), `registered` the
/// kids in the JWKS Digdir holds now.
pub fn key_drift(expected: &[String], registered: &[String]) -> Option<Drift> {
    let want: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let have: BTreeSet<&str> = registered.iter().map(String::as_str).collect();
    let removed: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
    let added: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
    (!removed.is_empty() || !added.is_empty()).then_some(Drift::Keys { removed, added })
}

/// A number in `[0, 1)` derived from the client ID and `salt`: the same inputs give the same
/// jitter (no randomness to carry around, and every operator replica agrees).
fn jitter_fraction(client_id: &str, salt: i64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id.bytes().chain(salt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 53 bits fit an f64 exactly.
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn scaled(every: Duration, factor: f64) -> SignedDuration {
    let secs = (every.as_secs_f64() * factor).max(0.0);
    SignedDuration::try_from(Duration::from_secs_f64(secs)).unwrap_or(SignedDuration::MAX)
}

/// When a client's JWKS is next read. Without a previous read (`last_read` `None`), somewhere in the
/// first period after `first_seen`; after a read, `every` later ±10 %.
pub fn next_jwks_read(
    client_id: &str,
    last_read: Option<Timestamp>,
    first_seen: Timestamp,
    every: Duration,
) -> Timestamp {
    let (from, factor) = match last_read {
        None => (first_seen, jitter_fraction(client_id, 0)),
        Some(t) => (
            t,
            0.9 + 0.2 * jitter_fraction(client_id, t.as_second().wrapping_add(1)),
        ),
    };
    from.checked_add(scaled(every, factor))
        .unwrap_or(Timestamp::MAX)
}

/// Whether a client's JWKS is due for a read at `now`.
pub fn jwks_read_due(
    client_id: &str,
    last_read: Option<Timestamp>,
    first_seen: Timestamp,
    now: Timestamp,
    every: Duration,
) -> bool {
    now >= next_jwks_read(client_id, last_read, first_seen, every)
}

/// Whether the ACL of the exposed scope `scope` is due for a read at `now`: the cadence of the JWKS
/// reads ([`next_jwks_read`]: the first read anywhere in the first period, then every period ±10 %),
/// keyed by the scope's full name, so the ACL reads of many scopes spread out too.
pub fn acl_read_due(
    scope: &str,
    last_read: Option<Timestamp>,
    first_seen: Timestamp,
    now: Timestamp,
    every: Duration,
) -> bool {
    now >= next_jwks_read(scope, last_read, first_seen, every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::digdir::Config;
    use crate::crd::IDPortenClientSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn payload() -> Payload {
        let spec: IDPortenClientSpec = serde_json::from_value(
            json!({"secretName": "s", "redirectURIs": ["https://a.example.com/cb"]}),
        )
        .unwrap();
        let cfg = Config {
            cluster_name: "c".into(),
            ..Config::default()
        };
        registration::idporten_payload(&cfg, "ns", "app", &spec)
    }

    #[test]
    fn unchanged_registration_is_no_drift() {
        let p = payload();
        assert_eq!(registration_drift(&p, Some(&p.to_json())), None);
    }

    #[test]
    fn changed_redirect_uri_is_named() {
        let p = payload();
        let mut o = p.to_json();
        o["redirect_uris"] = json!(["https://evil.example.com/cb"]);
        let d = registration_drift(&p, Some(&o));
        assert_eq!(d, Some(Drift::Fields(vec!["redirect_uris"])));
        assert!(d.unwrap().describe().contains("redirect_uris"));
    }

    #[test]
    fn absent_registration_is_missing() {
        assert_eq!(registration_drift(&payload(), None), Some(Drift::Missing));
    }

    #[test]
    fn key_drift_names_removed_and_added_kids() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(key_drift(&s(&["a", "b"]), &s(&["b", "a"])), None);
        assert_eq!(
            key_drift(&s(&["a", "b"]), &s(&["b", "x"])),
            Some(Drift::Keys {
                removed: s(&["a"]),
                added: s(&["x"])
            })
        );
        let d = key_drift(&s(&["a", "b"]), &s(&["b"])).unwrap();
        assert_eq!(
            d.describe(),
            "registered keys changed at Digdir (keys removed: a)"
        );
    }

    fn status(ready_gen: i64, observed: i64) -> DigdiratorStatus {
        let mut conds: Vec<Condition> = Vec::new();
        conditions::ready(
            &mut conds,
            "ok",
            Some(ready_gen),
            ts("2025-01-01T00:00:00Z"),
        );
        DigdiratorStatus {
            client_id: Some("id".into()),
            conditions: Some(conds),
            observed_generation: Some(observed),
            ..Default::default()
        }
    }

    #[test]
    fn only_settled_resources_are_checked() {
        let st = status(2, 2);
        assert_eq!(
            settled_client_id(Some(2), Some(&st), None, false),
            Some("id")
        );
        // Deleting, a newer generation, a pending resync or rotate, no status: not checked.
        assert_eq!(settled_client_id(Some(2), Some(&st), None, true), None);
        assert_eq!(settled_client_id(Some(3), Some(&st), None, false), None);
        for ann in [cstatus::ANN_RESYNC, cstatus::ANN_ROTATE] {
            let a: BTreeMap<String, String> = [(ann.to_string(), "true".to_string())].into();
            assert_eq!(settled_client_id(Some(2), Some(&st), Some(&a), false), None);
        }
        assert_eq!(settled_client_id(Some(2), None, None, false), None);
        let mut no_id = st.clone();
        no_id.client_id = Some(String::new());
        assert_eq!(settled_client_id(Some(2), Some(&no_id), None, false), None);
        let mut failing = st.clone();
        let conds = failing.conditions.as_mut().unwrap();
        conditions::not_ready(
            conds,
            "DigdirError",
            "x",
            Some(2),
            ts("2025-01-01T00:00:00Z"),
        );
        assert_eq!(
            settled_client_id(Some(2), Some(&failing), None, false),
            None
        );
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn first_jwks_reads_spread_over_the_first_period() {
        let start = ts("2025-06-01T00:00:00Z");
        let mut offsets: Vec<i64> = (0..200)
            .map(|i| {
                let t = next_jwks_read(&format!("client-{i}"), None, start, DAY);
                t.duration_since(start).as_secs()
            })
            .collect();
        assert!(
            offsets.iter().all(|&o| (0..86400).contains(&o)),
            "{offsets:?}"
        );
        offsets.sort();
        // Spread out, not bunched: both halves of the day get a fair share.
        let first_half = offsets.iter().filter(|&&o| o < 43200).count();
        assert!((60..=140).contains(&first_half), "{first_half}");
        assert!(offsets.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn later_jwks_reads_come_every_period_with_jitter() {
        let start = ts("2025-06-01T00:00:00Z");
        let last = ts("2025-06-02T03:00:00Z");
        let gaps: Vec<i64> = (0..200)
            .map(|i| {
                let t = next_jwks_read(&format!("client-{i}"), Some(last), start, DAY);
                t.duration_since(last).as_secs()
            })
            .collect();
        assert!(
            gaps.iter().all(|&g| (77760..=95040).contains(&g)),
            "within ±10 %: {gaps:?}"
        );
        let distinct: BTreeSet<i64> = gaps.iter().copied().collect();
        assert!(distinct.len() > 150, "jittered, not identical");
        // Deterministic: the same inputs give the same time.
        assert_eq!(
            next_jwks_read("x", Some(last), start, DAY),
            next_jwks_read("x", Some(last), start, DAY)
        );
    }

    #[test]
    fn due_only_when_the_time_has_come() {
        let start = ts("2025-06-01T00:00:00Z");
        let at = next_jwks_read("c", None, start, DAY);
        assert!(!jwks_read_due(
            "c",
            None,
            start,
            at - SignedDuration::from_secs(1),
            DAY
        ));
        assert!(jwks_read_due("c", None, start, at, DAY));
        let read = at;
        assert!(!jwks_read_due(
            "c",
            Some(read),
            start,
            read + SignedDuration::from_hours(21),
            DAY
        ));
        assert!(jwks_read_due(
            "c",
            Some(read),
            start,
            read + SignedDuration::from_hours(27),
            DAY
        ));
    }

    #[test]
    fn acl_reads_of_many_scopes_spread_out_and_come_once_a_period() {
        let start = ts("2025-06-01T00:00:00Z");
        let hour = SignedDuration::from_hours(1);
        // In any hour of the first day only a share of 50 scopes' ACLs fall due, not all at once.
        let due_in_first_hour = (0..50)
            .filter(|i| acl_read_due(&format!("org:api/s{i}"), None, start, start + hour, DAY))
            .count();
        assert!(due_in_first_hour < 10, "{due_in_first_hour}");
        // After a read, not again before most of a period has gone by.
        let read = start + hour;
        assert!(!acl_read_due(
            "org:api/s1",
            Some(read),
            start,
            read + hour * 20,
            DAY
        ));
        assert!(acl_read_due(
            "org:api/s1",
            Some(read),
            start,
            read + hour * 27,
            DAY
        ));
    }
}
