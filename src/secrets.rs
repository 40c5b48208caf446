//! Writing and deleting the Secrets portvakt manages; shared by every kind.
//!
//! - "Owned" = a controller owner reference with the owner's apiVersion, kind and name. The uid is not
//!   compared (it changes after a backup restore). A Secret owned by anything else, or by nothing, is
//!   never written or deleted: [`SecretError::NotOwned`].
//! - Writes happen only when the content would change (the caller's comparison), as a create or as a
//!   replace carrying the read `resourceVersion` (a concurrent change gives a conflict and a retry,
//!   never a lost update).
//! - Deletes carry a uid + resourceVersion precondition, so a Secret changed since it was judged
//!   unused is not removed.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

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
    #[error("{verb} Secret {namespace}/{name}: {source}")]
    Kube {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl SecretError {
    /// Whether the API said the object changed or appeared meanwhile (retry soon).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SecretError::Kube { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 409))
    }
}

/// Whether `meta` has a controller reference to `api_version`/`kind`/`name`.
pub fn is_controlled_by(meta: &ObjectMeta, api_version: &str, kind: &str, name: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.api_version == api_version
            && r.kind == kind
            && r.name == name
    })
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Updated,
    Unchanged,
}

/// The owner identity used for ownership checks.
#[derive(Clone, Copy, Debug)]
pub struct OwnerId<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl OwnerId<'_> {
    fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

fn controller_of(meta: &ObjectMeta) -> String {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| format!("{} {}", r.kind, r.name))
        .unwrap_or_else(|| "nothing".into())
}

/// Fails with [`SecretError::NotOwned`] unless `existing` is controlled by `owner`.
pub fn check_owned(existing: &Secret, owner: OwnerId<'_>) -> Result<(), SecretError> {
    if is_controlled_by(
        &existing.metadata,
        owner.api_version,
        owner.kind,
        owner.name,
    ) {
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

/// Creates `desired`, or replaces `existing` with `merged` (desired merged onto existing) when
/// `changed`. `existing` must be owned by `owner`.
pub async fn write(
    api: &Api<Secret>,
    owner: OwnerId<'_>,
    existing: Option<&Secret>,
    desired: &Secret,
    merged: impl FnOnce(&Secret) -> Secret,
    changed: bool,
) -> Result<WriteOutcome, SecretError> {
    let ns = desired.metadata.namespace.clone().unwrap_or_default();
    let name = desired.metadata.name.clone().unwrap_or_default();
    match existing {
        None => {
            api.create(&PostParams::default(), desired)
                .await
                .map_err(kube_err("creating", &ns, &name))?;
            Ok(WriteOutcome::Created)
        }
        Some(e) => {
            check_owned(e, owner)?;
            if !changed {
                return Ok(WriteOutcome::Unchanged);
            }
            let m = merged(e);
            api.replace(&name, &PostParams::default(), &m)
                .await
                .map_err(kube_err("updating", &ns, &name))?;
            Ok(WriteOutcome::Updated)
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
