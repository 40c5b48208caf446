//! Reading, writing and deleting the Secrets portvakt manages: the one Secret writer every kind uses.
//!
//! - Ownership is the one rule of [`crate::core::ownership`]: a Secret controlled by anything else, or
//!   by nothing, is never written or deleted ([`SecretError::NotOwned`]).
//! - Writes happen only when the content would change (the caller's comparison), as a create or as a
//!   replace carrying the read `resourceVersion` (a concurrent change gives a conflict and a retry,
//!   never a lost update).
//! - Deletes carry a uid + resourceVersion precondition, so a Secret changed since it was judged
//!   unused is not removed.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

pub use crate::core::ownership::OwnerId;
use crate::core::ownership::{controller_of, is_controlled_by};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "Secret {namespace}/{name} exists and is controlled by {controller}, not by {owner}; it is left untouched"
    )]
    NotOwned {
        namespace: String,
        name: String,
        controller: String,
        owner: String,
    },
    #[error(
        "{verb} Secret {namespace}/{name}: {}",
        crate::controller::error::describe_kube(source)
    )]
    Kube {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl SecretError {
    /// Whether the API server refused the Secret as invalid (422: a name or content it does not accept).
    pub fn is_invalid(&self) -> bool {
        matches!(self, SecretError::Kube { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 422))
    }

    /// Whether the API said the object changed or appeared meanwhile (retry soon).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SecretError::Kube { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 409))
    }
}

/// What an update does with the Secret's existing annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationMode {
    /// Keep others' annotations, set portvakt's (app Secrets: other tools annotate them too).
    Merge,
    /// Replace them all (a Secret whose annotations are portvakt's bookkeeping alone).
    Replace,
}

/// Fails with [`SecretError::NotOwned`] unless `existing` is controlled by `owner`.
pub fn check_owned(existing: &Secret, owner: OwnerId<'_>) -> Result<(), SecretError> {
    if is_controlled_by(&existing.metadata, owner) {
        return Ok(());
    }
    Err(SecretError::NotOwned {
        namespace: existing.metadata.namespace.clone().unwrap_or_default(),
        name: existing.metadata.name.clone().unwrap_or_default(),
        controller: controller_of(&existing.metadata),
        owner: owner.describe(),
    })
}

fn kube_err(verb: &'static str, ns: &str, name: &str) -> impl FnOnce(kube::Error) -> SecretError {
    let (namespace, name) = (ns.to_string(), name.to_string());
    move |source| SecretError::Kube {
        verb,
        namespace,
        name,
        source: Box::new(source),
    }
}

pub async fn get(api: &Api<Secret>, ns: &str, name: &str) -> Result<Option<Secret>, SecretError> {
    api.get_opt(name)
        .await
        .map_err(kube_err("reading", ns, name))
}

/// Secrets in the namespace matching a label selector (one list call per 500).
pub async fn list_labelled(
    api: &Api<Secret>,
    ns: &str,
    selector: &str,
) -> Result<Vec<Secret>, SecretError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels(selector).limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api
            .list(&lp)
            .await
            .map_err(kube_err("listing", ns, selector))?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Creates `desired`, or updates `existing` (which must be controlled by `owner`) to `desired` merged
/// onto it ([`crate::core::secret_content::merged_for_update`]), carrying the read resourceVersion.
/// Returns the Secret as the API server stored it.
pub async fn write(
    api: &Api<Secret>,
    owner: OwnerId<'_>,
    existing: Option<&Secret>,
    desired: &Secret,
    annotations: AnnotationMode,
) -> Result<Secret, SecretError> {
    let ns = desired.metadata.namespace.clone().unwrap_or_default();
    let name = desired.metadata.name.clone().unwrap_or_default();
    match existing {
        None => api
            .create(&PostParams::default(), desired)
            .await
            .map_err(kube_err("creating", &ns, &name)),
        Some(e) => {
            check_owned(e, owner)?;
            let mut m = crate::core::secret_content::merged_for_update(e, desired);
            if annotations == AnnotationMode::Replace {
                m.metadata.annotations = desired.metadata.annotations.clone();
            }
            api.replace(&name, &PostParams::default(), &m)
                .await
                .map_err(kube_err("updating", &ns, &name))
        }
    }
}

/// Deletes `secret` if it is still owned by `owner` and unchanged since read. A 404 counts as done.
pub async fn delete(
    api: &Api<Secret>,
    owner: OwnerId<'_>,
    secret: &Secret,
) -> Result<(), SecretError> {
    check_owned(secret, owner)?;
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.metadata.uid.clone(),
            resource_version: secret.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("deleting", &ns, &name)(e)),
    }
}
