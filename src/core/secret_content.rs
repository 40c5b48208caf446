//! When a Secret write would change anything, and what the write sends: the rules every kind's
//! Secrets follow (an unchanged Secret is never rewritten: Reloader restarts the app's Pods on any
//! data change).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

fn subset(
    want: Option<&BTreeMap<String, String>>,
    have: Option<&BTreeMap<String, String>>,
) -> bool {
    want.into_iter()
        .flatten()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

/// Whether writing `desired` over `existing` would change anything portvakt manages: the data (byte
/// for byte, no key more or less), portvakt's labels and annotations, and the controller owner
/// reference (uid included, so a restored Secret gets its owner's new uid). Labels and annotations
/// others added are left alone.
pub fn needs_write(existing: &Secret, desired: &Secret) -> bool {
    let empty = BTreeMap::new();
    let have_data = existing.data.as_ref().unwrap_or(&empty);
    let want_data = desired.data.as_ref().unwrap_or(&empty);
    if have_data != want_data || existing.string_data.as_ref().is_some_and(|s| !s.is_empty()) {
        return true;
    }
    if !subset(
        desired.metadata.labels.as_ref(),
        existing.metadata.labels.as_ref(),
    ) || !subset(
        desired.metadata.annotations.as_ref(),
        existing.metadata.annotations.as_ref(),
    ) {
        return true;
    }
    // blockOwnerDeletion is not compared: a Secret made by another tool without it works the same,
    // and rewriting it would be churn.
    let id = |r: &OwnerReference| {
        (
            r.api_version.clone(),
            r.kind.clone(),
            r.name.clone(),
            r.uid.clone(),
        )
    };
    let controller = |s: &Secret| {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(id)
    };
    controller(desired) != controller(existing)
}

/// `desired` merged onto `existing` for an update: portvakt's data, labels, annotations and controller
/// reference; others' labels, annotations and non-controller references kept; resourceVersion kept
/// for optimistic concurrency.
pub fn merged_for_update(existing: &Secret, desired: &Secret) -> Secret {
    let mut out = existing.clone();
    let mut labels = existing.metadata.labels.clone().unwrap_or_default();
    labels.extend(desired.metadata.labels.clone().unwrap_or_default());
    let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
    annotations.extend(desired.metadata.annotations.clone().unwrap_or_default());
    let mut refs: Vec<OwnerReference> = existing
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.controller != Some(true))
        .collect();
    refs.extend(
        desired
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default(),
    );
    out.metadata.labels = Some(labels);
    out.metadata.annotations = Some(annotations);
    out.metadata.owner_references = Some(refs);
    out.data = desired.data.clone();
    out.string_data = None;
    out
}
