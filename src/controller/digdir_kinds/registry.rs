//! The registration index: which clients at Digdir carry which resource's identity, from **one** list
//! of the registrations shared by every reconcile (instead of one list per create or adoption, which
//! made a cold start of N resources cost N lists of a growing registry).
//!
//! - Filled by a list when first needed (so after a restart it is always built fresh: a client
//!   created just before a crash, its client ID not yet in status, is found and adopted, never
//!   created twice), refreshed by the periodic pass's list and whenever it is older than [`MAX_AGE`].
//! - Kept current by portvakt's own creates, updates and deletes.
//! - **A create whose outcome is unknown** (timeout, 5xx, lost connection: Digdir may still be
//!   working on it, or it may land later) makes the identity *uncertain* for the client's request
//!   timeout plus a margin: a lookup in that window answers [`Lookup::Uncertain`] and no second POST
//!   is decided until the window is over and a fresh list says whether the first one landed.
//! - Several active clients with one identity (a late answer, a second operator, a copy made by hand)
//!   are all returned ([`Lookup::Found`] lists them oldest first), so the reconcile can keep one and
//!   deactivate the others.
//! - One list runs at a time (single flight); the index's state is locked only briefly, never across
//!   a call to Digdir. A create or delete recorded while a list is under way is applied after the
//!   list's result, never overwritten by it. Two reconciles of the same resource never run at once
//!   (the controller serialises them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;
use crate::digdir::{ClientRegistration, DigdirClient, DigdirError};

/// The index is listed again when older than this (the periodic pass usually refreshes it first).
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// (description, integration type).
type IdentityKey = (String, String);

/// What the index knows about an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No active client has it.
    Absent,
    /// Active clients with it, oldest first (by creation time, then client ID).
    Found(Vec<String>),
    /// An earlier create's outcome is unknown until this instant (by the shared clock).
    Uncertain { until: Timestamp },
}

#[derive(Clone, Debug)]
enum Change {
    Record(Box<ClientRegistration>),
    Forget(String),
}

#[derive(Default)]
struct State {
    /// When the index was listed; `None`: list before the next lookup.
    listed_at: Option<Timestamp>,
    /// Identity → active client IDs with their creation time.
    by_identity: HashMap<IdentityKey, BTreeMap<String, Option<Timestamp>>>,
    /// Active client ID → its identity.
    by_id: HashMap<String, IdentityKey>,
    /// Identities whose last create has an unknown outcome, until when.
    uncertain: HashMap<IdentityKey, Timestamp>,
    /// Changes recorded while a list is under way (replayed over its result); `None`: no list.
    during_list: Option<Vec<Change>>,
}

fn created(c: &ClientRegistration) -> Option<Timestamp> {
    c.created.as_deref().and_then(|s| s.parse().ok())
}

impl State {
    fn insert(&mut self, c: &ClientRegistration) {
        let Some(id) = c.client_id.clone().filter(|s| !s.is_empty()) else {
            return;
        };
        self.remove(&id);
        if !c.is_active() {
            return;
        }
        let ident = (
            c.description.clone(),
            c.integration_type.as_str().to_string(),
        );
        self.by_identity
            .entry(ident.clone())
            .or_default()
            .insert(id.clone(), created(c));
        self.by_id.insert(id, ident);
    }

    fn remove(&mut self, id: &str) {
        if let Some(ident) = self.by_id.remove(id)
            && let Some(ids) = self.by_identity.get_mut(&ident)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_identity.remove(&ident);
            }
        }
    }

    fn apply(&mut self, change: Change) {
        if let Some(pending) = self.during_list.as_mut() {
            pending.push(change.clone());
        }
        match change {
            Change::Record(c) => self.insert(&c),
            Change::Forget(id) => self.remove(&id),
        }
    }

    fn fill(&mut self, listed: &[ClientRegistration], now: Timestamp) {
        self.by_identity.clear();
        self.by_id.clear();
        for c in listed {
            self.insert(c);
        }
        for change in self.during_list.take().unwrap_or_default() {
            match change {
                Change::Record(c) => self.insert(&c),
                Change::Forget(id) => self.remove(&id),
            }
        }
        self.by_identity.shrink_to_fit();
        self.by_id.shrink_to_fit();
        self.listed_at = Some(now);
    }

    fn lookup(&self, key: &IdentityKey, now: Timestamp) -> Lookup {
        if let Some(until) = self.uncertain.get(key)
            && now < *until
        {
            return Lookup::Uncertain { until: *until };
        }
        match self.by_identity.get(key) {
            None => Lookup::Absent,
            Some(ids) => {
                let mut v: Vec<(&String, &Option<Timestamp>)> = ids.iter().collect();
                // Oldest first; a client without a creation time sorts last.
                v.sort_by(|a, b| match (a.1, b.1) {
                    (Some(x), Some(y)) => x.cmp(y).then_with(|| a.0.cmp(b.0)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.0.cmp(b.0),
                });
                Lookup::Found(v.into_iter().map(|(id, _)| id.clone()).collect())
            }
        }
    }

    fn fresh(&self, now: Timestamp, max_age: Duration) -> bool {
        self.listed_at.is_some_and(|t| {
            now.duration_since(t)
                .try_into()
                .is_ok_and(|age: Duration| age <= max_age)
        })
    }
}

/// See the module documentation.
pub struct RegistrationIndex {
    state: Mutex<State>,
    /// Held while a list runs: one list at a time.
    listing: tokio::sync::Mutex<()>,
    clock: Clock,
}

impl RegistrationIndex {
    pub fn new(clock: Clock) -> Self {
        Self {
            state: Mutex::new(State::default()),
            listing: tokio::sync::Mutex::new(()),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists the registrations and fills the index with the result.
    async fn list(&self, digdir: &DigdirClient) -> Result<Vec<ClientRegistration>, DigdirError> {
        self.lock().during_list = Some(Vec::new());
        let listed = digdir.list_clients(false).await;
        let mut st = self.lock();
        match listed {
            Ok(listed) => {
                st.fill(&listed, self.clock.now());
                Ok(listed)
            }
            Err(e) => {
                st.during_list = None;
                Err(e)
            }
        }
    }

    /// The active clients with this description and integration type, listing first when the index
    /// is stale (one list at a time; concurrent lookups wait for it).
    pub async fn find(
        &self,
        digdir: &DigdirClient,
        description: &str,
        integration_type: &str,
    ) -> Result<Lookup, DigdirError> {
        let key = (description.to_string(), integration_type.to_string());
        {
            let st = self.lock();
            let now = self.clock.now();
            if let l @ Lookup::Uncertain { .. } = st.lookup(&key, now) {
                return Ok(l);
            }
            if st.fresh(now, MAX_AGE) {
                return Ok(st.lookup(&key, now));
            }
        }
        let _one = self.listing.lock().await;
        // Someone else may have listed while this lookup waited.
        if !self.lock().fresh(self.clock.now(), MAX_AGE) {
            self.list(digdir).await?;
        }
        Ok(self.lock().lookup(&key, self.clock.now()))
    }

    /// What the index knows about an identity without listing: `None` when it is stale.
    pub fn peek(&self, description: &str, integration_type: &str) -> Option<Lookup> {
        let st = self.lock();
        let now = self.clock.now();
        st.fresh(now, MAX_AGE).then(|| {
            st.lookup(
                &(description.to_string(), integration_type.to_string()),
                now,
            )
        })
    }

    /// Identities held by more than one active client (for the periodic pass), with their clients
    /// oldest first.
    pub fn duplicates(&self) -> Vec<((String, String), Vec<String>)> {
        let st = self.lock();
        let now = self.clock.now();
        st.by_identity
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .filter_map(|(k, _)| match st.lookup(k, now) {
                Lookup::Found(ids) => Some((k.clone(), ids)),
                _ => None,
            })
            .collect()
    }

    /// Lists the registrations (always: the periodic pass's one list), refreshes the index with
    /// the result and returns it.
    pub async fn refresh(
        &self,
        digdir: &DigdirClient,
    ) -> Result<Vec<ClientRegistration>, DigdirError> {
        let _one = self.listing.lock().await;
        self.list(digdir).await
    }

    /// Records a registration portvakt created, updated or read (an inactive one is dropped); a
    /// create that is known clears the identity's uncertainty.
    pub fn record(&self, c: &ClientRegistration) {
        let mut st = self.lock();
        st.uncertain.remove(&(
            c.description.clone(),
            c.integration_type.as_str().to_string(),
        ));
        st.apply(Change::Record(Box::new(c.clone())));
    }

    /// Records a client portvakt deleted or found gone.
    pub fn forget(&self, client_id: &str) {
        self.lock().apply(Change::Forget(client_id.to_string()));
    }

    /// A create of this identity failed without a clear answer: until `settle` has passed no
    /// lookup of it decides anything, and the next lookup after that lists first.
    pub fn create_uncertain(&self, description: &str, integration_type: &str, settle: Duration) {
        let until =
            self.clock.now() + SignedDuration::try_from(settle).unwrap_or(SignedDuration::ZERO);
        let mut st = self.lock();
        st.uncertain.insert(
            (description.to_string(), integration_type.to_string()),
            until,
        );
        st.listed_at = None;
    }

    /// The next lookup lists first.
    pub fn invalidate(&self) {
        self.lock().listed_at = None;
    }

    /// Active clients in the index (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(id: &str, desc: &str, active: bool, created: &str) -> ClientRegistration {
        serde_json::from_value(json!({
            "client_id": id,
            "description": desc,
            "integration_type": "idporten",
            "active": active,
            "created": created,
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn fill_insert_remove_and_duplicates_oldest_first() {
        let mut st = State::default();
        st.fill(
            &[
                reg("b", "c:ns:a", true, "2025-01-01T00:00:00Z"),
                reg("a", "c:ns:a", true, "2025-02-01T00:00:00Z"),
                reg("x", "c:ns:x", false, "2025-01-01T00:00:00Z"),
            ],
            now(),
        );
        let key = ("c:ns:a".to_string(), "idporten".to_string());
        assert_eq!(
            st.lookup(&key, now()),
            Lookup::Found(vec!["b".into(), "a".into()])
        );
        assert!(
            !st.by_id.contains_key("x"),
            "inactive clients are not indexed"
        );
        st.remove("a");
        st.remove("b");
        assert!(st.by_identity.is_empty() && st.by_id.is_empty());
        assert_eq!(st.lookup(&key, now()), Lookup::Absent);
        st.insert(&reg("c", "c:ns:a", true, ""));
        st.insert(&reg("c", "c:ns:a", false, ""));
        assert!(st.by_id.is_empty(), "a deactivated client leaves the index");
    }

    #[test]
    fn changes_during_a_list_survive_its_result() {
        let mut st = State {
            during_list: Some(Vec::new()),
            ..State::default()
        };
        // A create recorded while the list was under way; the list did not see it yet.
        st.apply(Change::Record(Box::new(reg("new", "c:ns:n", true, ""))));
        st.fill(&[reg("old", "c:ns:o", true, "")], now());
        let key = ("c:ns:n".to_string(), "idporten".to_string());
        assert_eq!(st.lookup(&key, now()), Lookup::Found(vec!["new".into()]));
    }

    #[test]
    fn an_uncertain_create_holds_lookups_until_it_settles() {
        let clock = Clock::system();
        let index = RegistrationIndex::new(clock.clone());
        index.lock().fill(&[], clock.now());
        index.create_uncertain("c:ns:a", "idporten", Duration::from_secs(60));
        let key = ("c:ns:a".to_string(), "idporten".to_string());
        assert!(matches!(
            index.lock().lookup(&key, clock.now()),
            Lookup::Uncertain { .. }
        ));
        assert!(
            index.lock().listed_at.is_none(),
            "the next lookup lists again"
        );
        clock.advance(Duration::from_secs(61));
        assert_eq!(index.lock().lookup(&key, clock.now()), Lookup::Absent);
        // A create that became known clears it at once.
        index.create_uncertain("c:ns:a", "idporten", Duration::from_secs(60));
        index.record(&reg("id1", "c:ns:a", true, ""));
        assert_eq!(
            index.lock().lookup(&key, clock.now()),
            Lookup::Found(vec!["id1".into()])
        );
    }
}
