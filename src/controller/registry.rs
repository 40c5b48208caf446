//! The registration index: which client at Digdir belongs to which resource, from **one** list of
//! the registrations shared by every reconcile (instead of one list per create or adoption, which
//! made a cold start of N resources cost N lists of a growing registry).
//!
//! - Filled by a list when first needed (so after a restart it is always built fresh: a client
//!   created just before a crash, its client ID not yet in status, is found and adopted, never
//!   created twice), refreshed by the periodic pass's list ([`super::drift`]) and whenever it is
//!   older than [`MAX_AGE`].
//! - Kept current by portvakt's own creates, updates and deletes. A create that fails without a
//!   clear answer (timeout, 5xx, lost connection: the client may exist) marks the index stale, so
//!   the next lookup lists again before anything is created.
//! - The list runs under the index's lock: concurrent lookups wait for one list, and a create
//!   recorded meanwhile is applied after the list's result, never overwritten by it. Two reconciles
//!   of the same resource never run at once (the controller serialises them), so one resource never
//!   gets two clients.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::digdir::{ClientRegistration, DigdirClient, DigdirError};

/// The index is listed again when older than this (the periodic pass usually refreshes it first).
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

type Identity = (String, String);

#[derive(Default)]
struct State {
    /// When the index was listed; `None`: list before the next lookup.
    listed_at: Option<Instant>,
    /// (description, integration type) → active client IDs.
    by_identity: HashMap<Identity, BTreeSet<String>>,
    /// Active client ID → its (description, integration type).
    by_id: HashMap<String, Identity>,
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
            .insert(id.clone());
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

    fn fill(&mut self, listed: &[ClientRegistration]) {
        self.by_identity.clear();
        self.by_id.clear();
        for c in listed {
            self.insert(c);
        }
        self.by_identity.shrink_to_fit();
        self.by_id.shrink_to_fit();
        self.listed_at = Some(Instant::now());
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct RegistrationIndex {
    state: tokio::sync::Mutex<State>,
}

impl RegistrationIndex {
    /// The active client with this description and integration type (the lowest client ID when
    /// there are several, as [`crate::core::registration::identify`] picks), listing first when the
    /// index is stale.
    pub async fn find(
        &self,
        digdir: &DigdirClient,
        description: &str,
        integration_type: &str,
    ) -> Result<Option<String>, DigdirError> {
        let mut st = self.state.lock().await;
        if st.listed_at.is_none_or(|t| t.elapsed() > MAX_AGE) {
            let listed = digdir.list_clients(false).await?;
            st.fill(&listed);
        }
        let key = (description.to_string(), integration_type.to_string());
        Ok(st
            .by_identity
            .get(&key)
            .and_then(|ids| ids.iter().next().cloned()))
    }

    /// Lists the registrations (always: the periodic pass's one list), refreshes the index with
    /// the result and returns it.
    pub async fn refresh(
        &self,
        digdir: &DigdirClient,
    ) -> Result<Vec<ClientRegistration>, DigdirError> {
        let mut st = self.state.lock().await;
        let listed = digdir.list_clients(false).await?;
        st.fill(&listed);
        Ok(listed)
    }

    /// Records a registration portvakt created, updated or read (an inactive one is dropped).
    pub async fn record(&self, c: &ClientRegistration) {
        self.state.lock().await.insert(c);
    }

    /// Records a client portvakt deleted or found gone.
    pub async fn forget(&self, client_id: &str) {
        self.state.lock().await.remove(client_id);
    }

    /// The next lookup lists first (after an outcome portvakt cannot know, such as a failed create).
    pub async fn invalidate(&self) {
        self.state.lock().await.listed_at = None;
    }

    /// Active clients in the index (for tests and metrics).
    pub async fn len(&self) -> usize {
        self.state.lock().await.by_id.len()
    }

    /// Whether the index holds nothing.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(id: &str, desc: &str, active: bool) -> ClientRegistration {
        serde_json::from_value(json!({
            "client_id": id,
            "description": desc,
            "integration_type": "idporten",
            "active": active,
        }))
        .unwrap()
    }

    #[test]
    fn fill_insert_remove() {
        let mut st = State::default();
        st.fill(&[
            reg("b", "c:ns:a", true),
            reg("a", "c:ns:a", true),
            reg("x", "c:ns:x", false),
        ]);
        let key = ("c:ns:a".to_string(), "idporten".to_string());
        assert_eq!(
            st.by_identity[&key].iter().next().map(String::as_str),
            Some("a")
        );
        assert!(
            !st.by_id.contains_key("x"),
            "inactive clients are not indexed"
        );
        st.remove("a");
        st.remove("b");
        assert!(st.by_identity.is_empty() && st.by_id.is_empty());
        st.insert(&reg("c", "c:ns:a", true));
        st.insert(&reg("c", "c:ns:a", false));
        assert!(st.by_id.is_empty(), "a deactivated client leaves the index");
    }
}
