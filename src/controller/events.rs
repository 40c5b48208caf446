//! Kubernetes events (`events.k8s.io/v1`) on the resources portvakt manages, written as
//! kube-runtime's `Recorder` writes them (a repeat of an event within six minutes adds to the first
//! one's `series` instead of creating another), with memory that does not grow with the cluster.
//!
//! kube's recorder keeps a full copy of every event of the last six minutes; at 2,000 resources that
//! was over half of the operator's heap (7 KiB per resource). This one keeps, per recent event, only
//! what a repeat needs (the event's name and count), for at most [`MAX_RECENT`] events: past that,
//! the oldest is forgotten and its next repeat is a new event, as client-go's bounded cache does.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

/// How long a repeat adds to an earlier event's series (kube-runtime's and client-go's).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// Recent events remembered for their series, at most.
pub const MAX_RECENT: usize = 4096;

/// One event to publish.
pub struct Event<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

/// What makes two events the same (a repeat adds to the series).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding_uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    warning: bool,
    reason: String,
    action: String,
}

struct Recent {
    /// The written event's namespace and name, its count so far, and when it was last seen.
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
    /// Which entry of `order` is this one's (older ones for the same key are stale).
    seq: u64,
}

#[derive(Default)]
struct Memory {
    by_key: HashMap<Key, Recent>,
    /// Keys by when they were last seen, oldest first, with the `seq` they were entered with.
    order: VecDeque<(Key, u64)>,
    seq: u64,
}

impl Memory {
    /// The series so far of `key`, if it was seen within the window.
    fn get(&mut self, key: &Key, now: Timestamp) -> Option<(String, String, i32)> {
        self.forget_old(now);
        self.by_key
            .get(key)
            .filter(|r| r.last + SERIES_WINDOW > now)
            .map(|r| (r.namespace.clone(), r.name.clone(), r.count))
    }

    fn put(&mut self, key: Key, namespace: String, name: String, count: i32, now: Timestamp) {
        self.seq += 1;
        let seq = self.seq;
        self.order.push_back((key.clone(), seq));
        self.by_key.insert(
            key,
            Recent {
                name,
                namespace,
                count,
                last: now,
                seq,
            },
        );
        while self.by_key.len() > MAX_RECENT {
            self.pop_oldest();
        }
        // Stale entries (keys seen again since) are dropped as they reach the front; bound them too.
        while self.order.len() > 2 * MAX_RECENT {
            self.pop_oldest();
        }
    }

    fn forget(&mut self, key: &Key) {
        self.by_key.remove(key);
    }

    fn forget_old(&mut self, now: Timestamp) {
        while let Some((key, seq)) = self.order.front() {
            match self.by_key.get(key) {
                Some(r) if r.seq == *seq && r.last + SERIES_WINDOW > now => return,
                _ => self.pop_oldest(),
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, seq)) = self.order.pop_front()
            && self.by_key.get(&key).is_some_and(|r| r.seq == seq)
        {
            self.by_key.remove(&key);
        }
    }
}

/// See the module documentation.
pub struct EventWriter {
    client: kube::Client,
    controller: String,
    instance: String,
    memory: Mutex<Memory>,
}

impl EventWriter {
    /// Events reported by `controller` (`reportingController`) from `instance` (the pod, else the
    /// controller's name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            memory: Mutex::default(),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `ev` about `regarding`: a new event, or a repeat of one within the window.
    pub async fn publish(
        &self,
        ev: &Event<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key {
            regarding_uid: regarding.uid.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            kind: regarding.kind.clone(),
            warning: matches!(ev.type_, EventType::Warning),
            reason: ev.reason.to_string(),
            action: ev.action.to_string(),
        };
        let earlier = self.memory().get(&key, now);
        if let Some((namespace, name, count)) = earlier {
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let series =
                json!({"series": {"count": count + 1, "lastObservedTime": MicroTime(now)}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    self.memory().put(key, namespace, name, count + 1, now);
                    return Ok(());
                }
                // The event is gone (its TTL at the API server): a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => self.memory().forget(&key),
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = K8sEvent {
            action: Some(ev.action.to_string()),
            reason: Some(ev.reason.to_string()),
            note: Some(ev.note.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await?;
        // A first occurrence counts as 1; its first repeat makes the series' count 2.
        self.memory().put(key, namespace, name, 1, now);
        Ok(())
    }

    /// Events remembered for their series (for tests: it never exceeds [`MAX_RECENT`]).
    pub fn remembered(&self) -> usize {
        self.memory().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        Key {
            regarding_uid: Some(format!("uid-{i}")),
            namespace: Some("ns".into()),
            name: Some(format!("app-{i}")),
            kind: Some("MaskinportenClient".into()),
            warning: false,
            reason: "Synchronized".into(),
            action: "Synchronized-1".into(),
        }
    }

    #[test]
    fn a_repeat_within_the_window_continues_the_series() {
        let mut m = Memory::default();
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1000);
        m.put(key(1), "ns".into(), "app-1.1".into(), 1, t0);
        let t1 = t0 + SignedDuration::from_mins(5);
        assert_eq!(m.get(&key(1), t1), Some(("ns".into(), "app-1.1".into(), 1)));
        m.put(key(1), "ns".into(), "app-1.1".into(), 2, t1);
        // The window runs from the last repeat.
        let t2 = t1 + SignedDuration::from_mins(5);
        assert_eq!(m.get(&key(1), t2).map(|e| e.2), Some(2));
        assert_eq!(m.get(&key(2), t2), None);
    }

    #[test]
    fn an_event_older_than_the_window_is_forgotten() {
        let mut m = Memory::default();
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1000);
        m.put(key(1), "ns".into(), "a".into(), 1, t0);
        m.put(
            key(2),
            "ns".into(),
            "b".into(),
            1,
            t0 + SignedDuration::from_mins(3),
        );
        let later = t0 + SignedDuration::from_mins(7);
        assert_eq!(m.get(&key(1), later), None);
        assert!(m.get(&key(2), later).is_some());
        assert_eq!(m.by_key.len(), 1);
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest_first() {
        let mut m = Memory::default();
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1000);
        for i in 0..MAX_RECENT + 100 {
            m.put(key(i), "ns".into(), format!("e{i}"), 1, t0);
            // Repeats of one key leave stale queue entries behind; they are bounded too.
            m.put(key(0), "ns".into(), "e0".into(), 2, t0);
        }
        assert_eq!(m.by_key.len(), MAX_RECENT);
        assert!(m.order.len() <= 2 * MAX_RECENT);
        assert!(m.get(&key(MAX_RECENT + 99), t0).is_some());
        assert!(m.get(&key(1), t0).is_none(), "the oldest went first");
        assert!(m.get(&key(0), t0).is_some(), "a key seen again stays");
    }
}
