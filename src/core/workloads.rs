//! Which Secrets the workloads of a namespace reference, and how: shared by every kind that must not
//! remove a credential still in use.
//!
//! A reference is any Pod, or any ReplicaSet/Deployment/StatefulSet/DaemonSet/Job/CronJob pod template,
//! naming the Secret in a volume (projected volumes included), `env[].valueFrom.secretKeyRef` or
//! `envFrom[].secretRef`, in containers, initContainers or ephemeralContainers — whatever the labels
//! (digdirator only looked at objects labelled `app=<name>`, and missed projected volumes).
//!
//! This module is the pure rule; the controller's scanner (`controller::workload_scan`) lists the
//! objects and feeds each one through it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, Pod, PodSpec};

/// How a Secret is used; a later variant matters more (ordering is the key-retention priority).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Usage {
    /// Referenced only by templates that run nothing now (a scaled-to-0 ReplicaSet kept for rollback,
    /// a finished Job, a suspended CronJob).
    IdleTemplate,
    /// Referenced by a template that runs or will run Pods.
    ScaledTemplate,
    /// Referenced by a Pod that is not finished.
    RunningPod,
}

/// Secret name → its most important usage, and when the oldest still-running container that may
/// hold its content started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub by_secret: BTreeMap<String, Usage>,
    /// Secret name → the earliest start of a container of a running Pod referencing it. A Secret
    /// rewritten in place after that instant may still be held in its old form (environment
    /// variables never change; mounted files change late).
    pub oldest_start: BTreeMap<String, Timestamp>,
}

impl References {
    pub fn add(&mut self, secret: &str, usage: Usage) {
        let e = self.by_secret.entry(secret.to_string()).or_insert(usage);
        if usage > *e {
            *e = usage;
        }
    }
    /// Records that a running container referencing `secret` started at `started`.
    pub fn started(&mut self, secret: &str, started: Timestamp) {
        let e = self
            .oldest_start
            .entry(secret.to_string())
            .or_insert(started);
        if started < *e {
            *e = started;
        }
    }

    /// Whether a running Pod referencing `secret` may still hold what the Secret held before
    /// `replaced_at`: one of its containers started before then (or its start is unknown).
    pub fn may_hold_content_before(&self, secret: &str, replaced_at: Timestamp) -> bool {
        self.usage(secret) == Some(Usage::RunningPod)
            && self
                .oldest_start
                .get(secret)
                .is_none_or(|t| *t < replaced_at)
    }

    /// Adds a Pod's references, with the start of its oldest container (its creation time where no
    /// container start is known).
    pub fn add_pod(&mut self, pod: &Pod) {
        let Some(usage) = pod_usage(pod) else {
            return;
        };
        let started = oldest_container_start(pod);
        if let Some(spec) = pod.spec.as_ref() {
            for name in secret_names_in_pod_spec(spec) {
                self.add(&name, usage);
                if let Some(t) = started {
                    self.started(&name, t);
                }
            }
        }
    }

    pub fn usage(&self, secret: &str) -> Option<Usage> {
        self.by_secret.get(secret).copied()
    }
    pub fn is_referenced(&self, secret: &str) -> bool {
        self.by_secret.contains_key(secret)
    }
    pub fn add_spec(&mut self, spec: Option<&PodSpec>, usage: Usage) {
        if let Some(spec) = spec {
            for name in secret_names_in_pod_spec(spec) {
                self.add(&name, usage);
            }
        }
    }
}

fn env_refs(
    out: &mut BTreeSet<String>,
    env: Option<&Vec<EnvVar>>,
    env_from: Option<&Vec<EnvFromSource>>,
) {
    for e in env.into_iter().flatten() {
        if let Some(r) = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            out.insert(r.name.clone());
        }
    }
    for e in env_from.into_iter().flatten() {
        if let Some(r) = &e.secret_ref {
            out.insert(r.name.clone());
        }
    }
}

fn container_refs(out: &mut BTreeSet<String>, containers: Option<&Vec<Container>>) {
    for c in containers.into_iter().flatten() {
        env_refs(out, c.env.as_ref(), c.env_from.as_ref());
    }
}

/// Every Secret name a pod spec references (volumes incl. projected, env, envFrom; all container kinds).
pub fn secret_names_in_pod_spec(spec: &PodSpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            out.insert(name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                out.insert(s.name.clone());
            }
        }
    }
    container_refs(&mut out, Some(&spec.containers));
    container_refs(&mut out, spec.init_containers.as_ref());
    for c in spec.ephemeral_containers.iter().flatten() {
        env_refs(&mut out, c.env.as_ref(), c.env_from.as_ref());
    }
    out.retain(|n| !n.is_empty());
    out
}

/// When a Pod's oldest container started: the earliest `startedAt` of its running (or terminated,
/// for a container about to restart) containers, init and ephemeral ones included; the Pod's
/// creation time when none is known.
pub fn oldest_container_start(pod: &Pod) -> Option<Timestamp> {
    let statuses = pod.status.iter().flat_map(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .chain(s.init_container_statuses.iter().flatten())
            .chain(s.ephemeral_container_statuses.iter().flatten())
    });
    let started = statuses
        .filter_map(|c| {
            let state = c.state.as_ref()?;
            state
                .running
                .as_ref()
                .and_then(|r| r.started_at.as_ref())
                .or_else(|| {
                    state
                        .terminated
                        .as_ref()
                        .and_then(|t| t.started_at.as_ref())
                })
                .map(|t| t.0)
        })
        .min();
    started.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Usage of a Pod's references: finished Pods reference nothing that matters.
pub fn pod_usage(pod: &Pod) -> Option<Usage> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        Some("Succeeded") | Some("Failed") => None,
        _ => Some(Usage::RunningPod),
    }
}

fn scaled(replicas: Option<i32>) -> Usage {
    // An unset replicas field means 1 for Deployments, ReplicaSets and StatefulSets.
    if replicas.unwrap_or(1) > 0 {
        Usage::ScaledTemplate
    } else {
        Usage::IdleTemplate
    }
}

pub fn replicaset_usage(rs: &ReplicaSet) -> Usage {
    scaled(rs.spec.as_ref().and_then(|s| s.replicas))
}
pub fn deployment_usage(d: &Deployment) -> Usage {
    scaled(d.spec.as_ref().and_then(|s| s.replicas))
}
pub fn statefulset_usage(s: &StatefulSet) -> Usage {
    scaled(s.spec.as_ref().and_then(|s| s.replicas))
}
pub fn job_usage(j: &Job) -> Usage {
    let done = j
        .status
        .as_ref()
        .is_some_and(|s| s.completion_time.is_some())
        || j.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    if done {
        Usage::IdleTemplate
    } else {
        Usage::ScaledTemplate
    }
}
pub fn cronjob_usage(c: &CronJob) -> Usage {
    if c.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
        Usage::IdleTemplate
    } else {
        Usage::ScaledTemplate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn extracts_every_reference_kind() {
        let s = spec(json!({
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol"}},
                {"name": "b", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "cm"}}]}},
                {"name": "c", "configMap": {"name": "notasecret"}}
            ],
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "envref", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}},
                    {"name": "Z", "value": "plain"}
                ],
                "envFrom": [{"secretRef": {"name": "envfrom"}}, {"configMapRef": {"name": "cm3"}}]
            }],
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init"}}]}],
            "ephemeralContainers": [{"name": "dbg", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "eph", "key": "k"}}}]}]
        }));
        let got: Vec<_> = secret_names_in_pod_spec(&s).into_iter().collect();
        assert_eq!(got, ["envfrom", "envref", "eph", "init", "proj", "vol"]);
    }

    #[test]
    fn usage_keeps_the_strongest() {
        let mut r = References::default();
        r.add("s", Usage::IdleTemplate);
        r.add("s", Usage::RunningPod);
        r.add("s", Usage::ScaledTemplate);
        assert_eq!(r.usage("s"), Some(Usage::RunningPod));
        assert!(!r.is_referenced("t"));
    }

    #[test]
    fn a_pods_oldest_container_start_decides_what_it_may_still_hold() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a", "envFrom": [{"secretRef": {"name": "app"}}]}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": true, "restartCount": 1,
                 "state": {"running": {"startedAt": "2026-01-03T00:00:00Z"}}},
                {"name": "b", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2026-01-02T00:00:00Z"}}}
            ]}
        }))
        .unwrap();
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            oldest_container_start(&pod),
            Some(ts("2026-01-02T00:00:00Z"))
        );
        let mut r = References::default();
        r.add_pod(&pod);
        assert!(r.may_hold_content_before("app", ts("2026-01-02T00:00:01Z")));
        assert!(!r.may_hold_content_before("app", ts("2026-01-01T23:59:59Z")));
        assert!(!r.may_hold_content_before("other", ts("2027-01-01T00:00:00Z")));
        // No container start known: the Pod's creation time.
        let pending: Pod = serde_json::from_value(json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        assert_eq!(
            oldest_container_start(&pending),
            Some(ts("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn usage_of_workloads() {
        let pod: Pod = serde_json::from_value(json!({"status": {"phase": "Succeeded"}})).unwrap();
        assert_eq!(pod_usage(&pod), None);
        let pod: Pod = serde_json::from_value(json!({"status": {"phase": "Pending"}})).unwrap();
        assert_eq!(pod_usage(&pod), Some(Usage::RunningPod));
        let rs: ReplicaSet =
            serde_json::from_value(json!({"spec": {"replicas": 0, "selector": {}}})).unwrap();
        assert_eq!(replicaset_usage(&rs), Usage::IdleTemplate);
        let d: Deployment =
            serde_json::from_value(json!({"spec": {"selector": {}, "template": {}}})).unwrap();
        assert_eq!(deployment_usage(&d), Usage::ScaledTemplate);
        let j: Job = serde_json::from_value(json!({"spec": {"template": {}}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}})).unwrap();
        assert_eq!(job_usage(&j), Usage::IdleTemplate);
        let c: CronJob = serde_json::from_value(
            json!({"spec": {"schedule": "* * * * *", "suspend": true, "jobTemplate": {}}}),
        )
        .unwrap();
        assert_eq!(cronjob_usage(&c), Usage::IdleTemplate);
    }
}
