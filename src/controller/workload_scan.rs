//! The workload scan: lists a namespace's Pods and workload templates and records, through the pure
//! rule in [`crate::core::workloads`], which Secrets they reference and how.
//!
//! The scan lists each kind in pages of [`PAGE_SIZE`] and keeps only the names found, never the
//! objects; each page is dropped before the next is read. It runs on demand, when something might be
//! removed, not on every pass, and at most [`MAX_CONCURRENT_SCANS`] scans run at once (a burst of
//! reconciles must not hold many namespaces' Pods in memory together).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, ObjectList};
use serde::de::DeserializeOwned;

use crate::core::workloads::{
    References, Usage, cronjob_usage, deployment_usage, job_usage, replicaset_usage,
    statefulset_usage,
};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "listing {kind} in namespace {namespace}: {}",
        crate::controller::error::describe_kube(source)
    )]
    List {
        kind: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// Page size of the scan's list calls.
pub const PAGE_SIZE: u32 = 100;

/// Scans running at once (process-wide).
pub const MAX_CONCURRENT_SCANS: usize = 2;

static SCAN_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_SCANS);

async fn for_each_page<K, F>(
    api: Api<K>,
    kind: &'static str,
    ns: &str,
    mut f: F,
) -> Result<(), ScanError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug + kube::Resource,
    F: FnMut(&K),
{
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page: ObjectList<K> = api.list(&lp).await.map_err(|source| ScanError::List {
            kind,
            namespace: ns.to_string(),
            source,
        })?;
        let next = page.metadata.continue_.clone();
        page.items.iter().for_each(&mut f);
        drop(page);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(()),
        }
    }
}

/// Scans a namespace's Pods and workload templates. Calls the API once per page of each kind.
pub async fn scan(client: &kube::Client, namespace: &str) -> Result<References, ScanError> {
    // The semaphore is never closed, so acquiring only waits.
    let _slot = SCAN_SLOTS.acquire().await.ok();
    let mut refs = References::default();
    let c = client.clone();
    for_each_page(
        Api::<Pod>::namespaced(c.clone(), namespace),
        "pods",
        namespace,
        |p| refs.add_pod(p),
    )
    .await?;
    for_each_page(
        Api::<ReplicaSet>::namespaced(c.clone(), namespace),
        "replicasets",
        namespace,
        |o| {
            let t = o
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref());
            refs.add_spec(t, replicaset_usage(o));
        },
    )
    .await?;
    for_each_page(
        Api::<Deployment>::namespaced(c.clone(), namespace),
        "deployments",
        namespace,
        |o| {
            let t = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            refs.add_spec(t, deployment_usage(o));
        },
    )
    .await?;
    for_each_page(
        Api::<StatefulSet>::namespaced(c.clone(), namespace),
        "statefulsets",
        namespace,
        |o| {
            let t = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            refs.add_spec(t, statefulset_usage(o));
        },
    )
    .await?;
    for_each_page(
        Api::<DaemonSet>::namespaced(c.clone(), namespace),
        "daemonsets",
        namespace,
        |o| {
            let t = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            refs.add_spec(t, Usage::ScaledTemplate);
        },
    )
    .await?;
    for_each_page(
        Api::<Job>::namespaced(c.clone(), namespace),
        "jobs",
        namespace,
        |o| {
            let t = o.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            refs.add_spec(t, job_usage(o));
        },
    )
    .await?;
    for_each_page(
        Api::<CronJob>::namespaced(c, namespace),
        "cronjobs",
        namespace,
        |o| {
            let t = o
                .spec
                .as_ref()
                .and_then(|s| s.job_template.spec.as_ref())
                .and_then(|j| j.template.spec.as_ref());
            refs.add_spec(t, cronjob_usage(o));
        },
    )
    .await?;
    Ok(refs)
}
