//! One pass over an IDPortenClient or MaskinportenClient, as a short pipeline of named steps:
//!
//! ```text
//! validate → load Secrets → exposed scopes → registration → keys → app Secret → status
//! ```
//!
//! Order of effects, chosen so any crash converges to exactly one registration and no lost key:
//! 1. everything that can be checked is checked before anything is written ([`validate`]);
//! 2. the Secrets are read first: one owned by someone else stops the pass before Digdir is touched;
//! 3. exposed scopes and their consumers (API providers, [`super::exposed`]), before the client as
//!    digdirator does;
//! 4. registration ([`super::registration`]): found by `status.clientID`, else adopted by description
//!    and integration type, else created — and the client ID is written to status at once;
//! 5. keys ([`super::keys`]): a new key is stored before it is registered; the JWKS POST happens
//!    before any Secret hands a key out;
//! 6. the app Secret, written only when its content would change; unreferenced old Secrets deleted;
//! 7. the status the pure core decides ([`crate::core::digdir::status`]);
//! 8. when the next pass is due if nothing changes ([`crate::core::digdir::due`]): the daily full
//!    synchronisation, the key renewal, a deferred next key, a rotation's wait — nothing else, so
//!    an unchanged resource is not reconciled in between.
//!
//! Nothing here logs keys, tokens or client secrets.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use super::registration::{self, Registration};
use super::{DigdirProvider, DigdirResource, exposed, keys};
use crate::controller::pass::Pass;
use crate::controller::secret_store::AnnotationMode;
use crate::controller::{Applied, Error, Kind};
use crate::core::digdir::keyplan::ManagedSecret;
use crate::core::digdir::status::{self as cstatus, events};
use crate::core::digdir::{DigdirKind, app_secret as csecret, due as cdue, registration as creg};
use crate::core::secret_content;
use crate::core::{Key, validation};

/// Checks the spec before anything is written: the Secret name the API server will judge.
pub(super) fn validate<K: DigdirResource>(obj: &K, provider: &DigdirProvider) -> Result<(), Error> {
    validation::dns1123_subdomain("spec.secretName", obj.secret_name())
        .map_err(|(field, message)| Error::InvalidSpec { field, message })?;
    registration::validate(obj, provider)?;
    exposed::validate(obj, provider)
}

/// Everything read about a resource's Secrets.
pub(crate) struct SecretsView {
    /// The Secret named by `spec.secretName` (owned by the resource).
    pub app: Option<Secret>,
    /// Every app Secret of the resource (labels `app` + `type`, owned), the named one included.
    pub managed: Vec<Secret>,
    /// portvakt's next-key Secret.
    pub next: Option<Secret>,
}

/// Step: the resource's Secrets. A Secret of either name owned by anyone else stops the pass.
pub(crate) async fn load<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<SecretsView, Error> {
    let app = pass.get_owned_secret(pass.obj.secret_name()).await?;
    let managed = pass
        .app_secrets(&app.iter().collect::<Vec<_>>())
        .await?
        .into_iter()
        .filter(|s| csecret::is_managed_app_secret(&s.metadata, K::KIND, &pass.name))
        .collect();
    let next = pass
        .get_owned_secret(&csecret::next_key_secret_name(K::KIND, &pass.name))
        .await?;
    Ok(SecretsView { app, managed, next })
}

/// The managed Secrets as the key plan sees them.
pub(crate) fn managed_secrets(kind: DigdirKind, view: &SecretsView) -> Vec<ManagedSecret> {
    view.managed
        .iter()
        .map(|s| ManagedSecret {
            name: s.metadata.name.clone().unwrap_or_default(),
            created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            key: csecret::app_secret_jwk(s, kind).and_then(|j| Key::parse(&j).ok()),
        })
        .collect()
}

/// The pipeline for a resource that is not being deleted.
pub(super) async fn apply<K: DigdirResource>(
    pass: &Pass<'_, K>,
) -> Result<Applied<crate::crd::DigdiratorStatus>, Error> {
    let obj = pass.obj;
    let provider = pass.provider;
    let now = pass.shared.clock.now();
    let up_to_date = cstatus::is_up_to_date(
        pass.generation(),
        Kind::status(obj),
        obj.meta().annotations.as_ref(),
        now,
        provider.full_sync_every,
    );
    let mut status = Kind::status(obj).cloned().unwrap_or_default();
    let status_had_client_id = status.client_id.as_deref().is_some_and(|c| !c.is_empty());

    let view = load(pass).await?;
    let exposed = if up_to_date {
        exposed::ExposedDone::default()
    } else {
        exposed::sync(pass).await?
    };
    let reg = if up_to_date {
        Registration::unchanged(status.client_id.clone().unwrap_or_default())
    } else {
        registration::sync(pass, &view, &mut status).await?
    };
    let mut changes = exposed.changes.clone();
    if reg.created && status_had_client_id {
        changes.push("registration re-created".to_string());
    }
    if !reg.updated.is_empty() {
        changes.push(format!("registration updated ({})", reg.updated.join(", ")));
    }

    let keys = keys::sync(pass, &view, &reg, &status).await?;
    // The app's key expires with the registered set (the next-key Secret's bookkeeping).
    pass.report_credential_expiry(keys.registered.expires_at);
    changes.extend(keys.changes.iter().cloned());
    if let Some(wait) = keys.actions.wait {
        let st = cstatus::pending(
            Some(&status),
            pass.generation(),
            now,
            &format!(
                "Rotation waits {}s for Digdir to recognise the next key",
                wait.as_secs()
            ),
        );
        provider.set_deferred_next(&pass.key, false);
        return Ok(Applied {
            requeue: next_pass_in(pass, &status, &view, &reg, &keys),
            status: (Some(&st) != Kind::status(obj)).then_some(st),
            changes,
            complete: false,
        });
    }

    let secret_written = app_secret(pass, &view, &reg, &keys).await?;
    let changed = !up_to_date
        || keys.posted
        || secret_written
        || !keys.deleted.is_empty()
        || !exposed.changes.is_empty();

    let success = cstatus::Success {
        client_id: reg.client_id.clone(),
        secret_name: obj.secret_name().to_string(),
        hash: obj.spec_hash(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        key_ids: keys
            .key_ids
            .clone()
            .or_else(|| (!up_to_date).then(|| keys.registered.kids.clone())),
        invalid_scopes: reg.invalid_scopes.clone(),
        dropped: keys.actions.dropped.clone(),
        invalid_consumers: exposed.invalid_consumers,
    };
    let new_status = cstatus::after_pass(Some(&status), pass.generation(), now, &success, changed);
    if new_status.is_some() && (!up_to_date || secret_written) {
        pass.publish(
            EventType::Normal,
            events::SYNCHRONIZED,
            "Resource is up-to-date".into(),
        )
        .await;
    }
    provider.set_deferred_next(
        &pass.key,
        keys.actions.next_due_in.is_some() || keys.actions.next_waits,
    );
    let after = new_status.as_ref().unwrap_or(&status);
    Ok(Applied {
        requeue: next_pass_in(pass, after, &view, &reg, &keys),
        status: new_status,
        changes,
        complete: true,
    })
}

/// Step: when the next pass is due if nothing changes (see [`cdue`]), from the status the pass
/// leaves and what its key step registered.
fn next_pass_in<K: DigdirResource>(
    pass: &Pass<'_, K>,
    status: &crate::crd::DigdiratorStatus,
    view: &SecretsView,
    reg: &Registration,
    keys: &keys::KeysDone,
) -> Option<std::time::Duration> {
    let a = &keys.actions;
    // Old app Secrets stay while workloads reference them: no watch says when that ends.
    let old_secrets = view.managed.iter().any(|s| {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        name != pass.obj.secret_name() && !keys.deleted.iter().any(|d| d == name)
    });
    let no_access = reg.invalid_scopes.as_ref().is_some_and(|s| !s.is_empty());
    cdue::next_pass_in(&cdue::DueInputs {
        now: pass.shared.clock.now(),
        synchronized_at: status.synchronization_time.as_ref().map(|t| t.0),
        full_sync_every: pass.provider.full_sync_every,
        keys_expire_at: keys.registered.expires_at,
        renew_before: pass.provider.config.renew_before,
        // The key generator wakes the resource when its deferred next key is at hand: no pass runs
        // only to ask for it when the delay is over.
        next_key_in: a.next_due_in.filter(|d| !pass.defer_idle_key(*d)),
        rotation_wait: a.wait,
        revisit: old_secrets || !a.replaced.is_empty() || !a.dropped.is_empty() || no_access,
        resync: pass.resync,
    })
}

/// Step: the app Secret, written only when its content would change; then unreferenced old Secrets
/// deleted and keys that no longer fit reported. Returns whether the app Secret was written.
async fn app_secret<K: DigdirResource>(
    pass: &Pass<'_, K>,
    view: &SecretsView,
    reg: &Registration,
    keys: &keys::KeysDone,
) -> Result<bool, Error> {
    let current = keys
        .actions
        .current
        .as_ref()
        .ok_or_else(|| Error::Internal("the key plan left the app without a key".into()))?;
    let owner = owner::<K>(pass)?;
    let desired = csecret::desired_app_secret(
        &pass.provider.config,
        &csecret::AppSecretInputs {
            owner: &owner,
            secret_name: pass.obj.secret_name(),
            client_id: &reg.client_id,
            key: current,
            kind_value: pass.obj.secret_kind_value(),
        },
    );
    let write = view
        .app
        .as_ref()
        .is_none_or(|s| secret_content::needs_write(s, &desired));
    if write {
        pass.write_secret(view.app.as_ref(), &desired, AnnotationMode::Merge)
            .await?;
    }
    for name in &keys.deleted {
        if let Some(s) = view
            .managed
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
        {
            pass.delete_secret(s).await?;
        }
    }
    if !keys.actions.dropped.is_empty() {
        pass.publish(
            EventType::Warning,
            events::KEYS_DROPPED,
            format!(
                "More than {} keys in use; not registered: keys of Secrets {}",
                pass.provider.config.max_keys,
                keys.actions.dropped.join(", ")
            ),
        )
        .await;
    }
    Ok(write)
}

/// The owner of the resource's Secrets.
pub(crate) fn owner<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<csecret::Owner, Error> {
    Ok(csecret::Owner {
        kind: K::KIND,
        namespace: pass.namespace.clone(),
        name: pass.name.clone(),
        uid: pass
            .obj
            .meta()
            .uid
            .clone()
            .ok_or_else(|| Error::Internal(format!("{} has no metadata.uid", pass.key)))?,
    })
}

/// Deletion: the client at Digdir is deleted unless `digdir.nais.io/preserve` is set. Exposed scopes:
/// enabled ones stay, disabled ones are deactivated (also under preserve; [`exposed::finalize`]).
pub(super) async fn cleanup<K: DigdirResource>(pass: &Pass<'_, K>) -> Result<(), Error> {
    let obj = pass.obj;
    let provider = pass.provider;
    exposed::finalize(pass).await?;
    provider.set_deferred_next(&pass.key, false);
    if cstatus::preserve(obj.meta().annotations.as_ref()) {
        tracing::info!(
            "resource deleted; its client at Digdir is preserved (digdir.nais.io/preserve)"
        );
    } else {
        let desc = creg::description(&provider.config.cluster_name, &pass.namespace, &pass.name);
        let ids: Vec<String> = match obj
            .status()
            .and_then(|s| s.client_id.clone())
            .filter(|s| !s.is_empty())
        {
            Some(id) => vec![id],
            None => registration::find_ids(pass, &desc).await?,
        };
        for id in ids {
            match provider.client.delete_client(&id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            provider.registrations.forget(&id);
            crate::controller::Counters::inc(&pass.shared.counters.client_deletes);
            tracing::info!(    client_id = %id, "client deleted at Digdir");
        }
    }
    pass.forget_own(&[
        obj.secret_name().to_string(),
        csecret::next_key_secret_name(K::KIND, &pass.name),
    ]);
    Ok(())
}
