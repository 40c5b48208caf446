//! Which app Secrets each resource has, by name only: fed by the metadata-only watch of the Secrets
//! portvakt wrote ([`super::wiring`]) and by portvakt's own writes and deletes, so a pass reads its
//! Secrets by name instead of listing its namespace's Secrets by label.
//!
//! A label-selected LIST costs the API server a scan of every Secret in the namespace (kube-apiserver
//! filters labels after reading them), so one per pass made N passes cost N scans: at 10,000
//! resources it was a quarter of the simulated API server's CPU and growing with N.
//!
//! An app Secret is one labelled `app=<resource>` and `type=<kind's label>` (both operators' rule); the
//! index keeps `(type, namespace, app) → names` and the reverse, a few hundred bytes a Secret. It may briefly lack a
//! Secret someone else created (until its watch event arrives, which then triggers the owner's pass)
//! and may name one already deleted (a read finds it gone): a pass reads each named Secret, so what it
//! acts on is always the API server's current content. Until the watch has listed once, a pass waits
//! ([`SecretIndex::names`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher;

/// The labels an app Secret carries (digdirator's and azurerator's).
pub const LABEL_APP: &str = "app";
pub const LABEL_TYPE: &str = "type";

/// How long a pass waits for the first list of the Secrets before it gives up (and is retried).
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// The app Secrets of one type, both ways round, so a Secret that was deleted or lost its labels is
/// found by its name without a scan (every write of a next-key Secret, which has no `app` label,
/// is such an event).
#[derive(Default)]
struct Names {
    /// `(namespace, app)` → the Secrets' names.
    by_app: HashMap<(String, String), BTreeSet<String>>,
    /// `(namespace, name)` → the app it is indexed under.
    app_of: HashMap<(String, String), String>,
}

impl Names {
    fn insert(&mut self, ns: &str, app: &str, name: &str) {
        let previous = self
            .app_of
            .insert((ns.to_string(), name.to_string()), app.to_string());
        if let Some(old) = previous.filter(|old| old != app) {
            self.unlink(ns, &old, name);
        }
        self.by_app
            .entry((ns.to_string(), app.to_string()))
            .or_default()
            .insert(name.to_string());
    }

    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(app) = self.app_of.remove(&(ns.to_string(), name.to_string())) {
            self.unlink(ns, &app, name);
        }
    }

    fn unlink(&mut self, ns: &str, app: &str, name: &str) {
        let key = (ns.to_string(), app.to_string());
        if let Some(set) = self.by_app.get_mut(&key) {
            set.remove(name);
            if set.is_empty() {
                self.by_app.remove(&key);
            }
        }
    }
}

#[derive(Default)]
struct Part {
    /// Listed at least once.
    ready: bool,
    /// A (re)list in progress: what it has delivered so far.
    relisting: Option<Names>,
    names: Names,
}

/// See the module documentation.
pub struct SecretIndex {
    parts: Mutex<HashMap<String, Part>>,
    /// Bumped when a part becomes ready (wakes [`SecretIndex::names`]).
    listed: tokio::sync::watch::Sender<u64>,
}

impl Default for SecretIndex {
    fn default() -> Self {
        Self {
            parts: Mutex::default(),
            listed: tokio::sync::watch::channel(0).0,
        }
    }
}

/// `(type, namespace, app, name)` of an app Secret, `None` for any other.
fn identity(meta: &ObjectMeta) -> Option<(&str, &str, &str, &str)> {
    let labels = meta.labels.as_ref()?;
    Some((
        labels.get(LABEL_TYPE)?,
        meta.namespace.as_deref()?,
        labels.get(LABEL_APP)?,
        meta.name.as_deref()?,
    ))
}

impl SecretIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Part>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One event of the watch of the Secrets labelled `type=<type_label>`.
    pub fn observe(&self, type_label: &str, ev: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut parts = self.lock();
        let part = parts.entry(type_label.to_string()).or_default();
        match ev {
            watcher::Event::Init => part.relisting = Some(Names::default()),
            watcher::Event::InitApply(s) => {
                if let (Some(pending), Some((_, ns, app, name))) =
                    (part.relisting.as_mut(), identity(&s.metadata))
                {
                    pending.insert(ns, app, name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = part.relisting.take() {
                    part.names = listed;
                }
                let first = !part.ready;
                part.ready = true;
                drop(parts);
                if first {
                    self.listed.send_modify(|n| *n += 1);
                }
            }
            watcher::Event::Apply(s) => match identity(&s.metadata) {
                Some((_, ns, app, name)) => part.names.insert(ns, app, name),
                // Not (or no longer) anyone's app Secret.
                None => Self::remove(part, &s.metadata),
            },
            watcher::Event::Delete(s) => Self::remove(part, &s.metadata),
        }
    }

    fn remove(part: &mut Part, meta: &ObjectMeta) {
        if let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) {
            part.names.remove(ns, name);
        }
    }

    /// A Secret portvakt wrote (entered at once, before its watch event).
    pub fn written(&self, meta: &ObjectMeta) {
        if let Some((type_label, ns, app, name)) = identity(meta) {
            let mut parts = self.lock();
            let part = parts.entry(type_label.to_string()).or_default();
            part.names.insert(ns, app, name);
            if let Some(pending) = part.relisting.as_mut() {
                pending.insert(ns, app, name);
            }
        }
    }

    /// A Secret portvakt deleted.
    pub fn deleted(&self, meta: &ObjectMeta) {
        if let Some((type_label, ns, _, name)) = identity(meta) {
            let mut parts = self.lock();
            if let Some(part) = parts.get_mut(type_label) {
                part.names.remove(ns, name);
                if let Some(pending) = part.relisting.as_mut() {
                    pending.remove(ns, name);
                }
            }
        }
    }

    fn ready(&self, type_label: &str) -> bool {
        self.lock().get(type_label).is_some_and(|p| p.ready)
    }

    /// The names of the app Secrets of resource `app` in `namespace`, once the Secrets labelled
    /// `type=<type_label>` have been listed (waiting up to `wait` for that; `None` if they were not).
    pub async fn names(
        &self,
        type_label: &str,
        namespace: &str,
        app: &str,
        wait: Duration,
    ) -> Option<BTreeSet<String>> {
        if !self.ready(type_label) {
            let mut rx = self.listed.subscribe();
            let listed = rx.wait_for(|_| self.ready(type_label));
            if !matches!(tokio::time::timeout(wait, listed).await, Ok(Ok(_))) {
                return None;
            }
        }
        let parts = self.lock();
        let names = parts
            .get(type_label)
            .and_then(|p| {
                p.names
                    .by_app
                    .get(&(namespace.to_string(), app.to_string()))
            })
            .cloned()
            .unwrap_or_default();
        Some(names)
    }

    /// Secrets indexed, over all types (for tests and the benchmark's memory account).
    pub fn len(&self) -> usize {
        self.lock().values().map(|p| p.names.app_of.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(ns: &str, name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Secret> {
        PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const T: &str = "maskinporten.digdir.nais.io";

    fn app(ns: &str, name: &str, owner: &str) -> PartialObjectMeta<Secret> {
        secret(ns, name, &[(LABEL_APP, owner), (LABEL_TYPE, T)])
    }

    async fn names_of(ix: &SecretIndex, ns: &str, owner: &str) -> Option<Vec<String>> {
        ix.names(T, ns, owner, Duration::from_millis(20))
            .await
            .map(|s| s.into_iter().collect())
    }

    #[tokio::test]
    async fn nothing_is_answered_before_the_first_list() {
        let ix = SecretIndex::default();
        assert_eq!(names_of(&ix, "ns", "a").await, None);
        ix.observe(T, &watcher::Event::Init);
        ix.observe(T, &watcher::Event::InitApply(app("ns", "a-1", "a")));
        assert_eq!(names_of(&ix, "ns", "a").await, None, "listing, not listed");
        ix.observe(T, &watcher::Event::InitDone);
        assert_eq!(names_of(&ix, "ns", "a").await, Some(vec!["a-1".into()]));
        assert_eq!(names_of(&ix, "other", "a").await, Some(vec![]));
    }

    #[tokio::test]
    async fn a_waiting_pass_is_answered_when_the_list_ends() {
        let ix = std::sync::Arc::new(SecretIndex::default());
        let waiter = {
            let ix = ix.clone();
            tokio::spawn(async move { ix.names(T, "ns", "a", Duration::from_secs(30)).await })
        };
        ix.observe(T, &watcher::Event::Init);
        ix.observe(T, &watcher::Event::InitApply(app("ns", "a-1", "a")));
        ix.observe(T, &watcher::Event::InitDone);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["a-1".to_string()]);
    }

    #[tokio::test]
    async fn events_and_own_writes_keep_it_current() {
        let ix = SecretIndex::default();
        ix.observe(T, &watcher::Event::Init);
        ix.observe(T, &watcher::Event::InitDone);
        // Not an app Secret (no app label: the next-key Secret), or another kind's.
        ix.observe(
            T,
            &watcher::Event::Apply(secret("ns", "next", &[(LABEL_TYPE, T)])),
        );
        ix.written(&app("ns", "a-2", "a").metadata);
        ix.observe(T, &watcher::Event::Apply(app("ns", "a-1", "a")));
        ix.observe(T, &watcher::Event::Apply(app("ns", "b-1", "b")));
        assert_eq!(
            names_of(&ix, "ns", "a").await,
            Some(vec!["a-1".into(), "a-2".into()])
        );
        ix.deleted(&app("ns", "a-2", "a").metadata);
        ix.observe(T, &watcher::Event::Delete(app("ns", "a-1", "a")));
        assert_eq!(names_of(&ix, "ns", "a").await, Some(vec![]));
        // Relabelled to another app: moved there.
        ix.observe(T, &watcher::Event::Apply(app("ns", "b-1", "c")));
        assert_eq!(names_of(&ix, "ns", "b").await, Some(vec![]));
        assert_eq!(names_of(&ix, "ns", "c").await, Some(vec!["b-1".into()]));
        // Relabelled away from any app: gone.
        ix.observe(
            T,
            &watcher::Event::Apply(secret("ns", "b-1", &[(LABEL_TYPE, T)])),
        );
        assert_eq!(names_of(&ix, "ns", "c").await, Some(vec![]));
        assert!(ix.is_empty());
    }

    #[tokio::test]
    async fn a_relist_replaces_what_was_known_but_keeps_own_writes_during_it() {
        let ix = SecretIndex::default();
        ix.observe(T, &watcher::Event::Init);
        ix.observe(T, &watcher::Event::InitApply(app("ns", "gone", "a")));
        ix.observe(T, &watcher::Event::InitDone);
        // The watch expired; a relist no longer has "gone" (deleted meanwhile, no event seen).
        ix.observe(T, &watcher::Event::Init);
        ix.observe(T, &watcher::Event::InitApply(app("ns", "kept", "a")));
        ix.written(&app("ns", "new", "a").metadata);
        // While relisting the old answer stands.
        assert_eq!(
            names_of(&ix, "ns", "a").await,
            Some(vec!["gone".into(), "new".into()])
        );
        ix.observe(T, &watcher::Event::InitDone);
        assert_eq!(
            names_of(&ix, "ns", "a").await,
            Some(vec!["kept".into(), "new".into()])
        );
    }
}
