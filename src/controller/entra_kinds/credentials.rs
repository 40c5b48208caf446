//! Step: the credential sets, the Secret and revocation ([`crate::core::entra::credentials`]
//! decides; this gathers and applies).
//!
//! Order of effects, so a crash at any point loses nothing a workload holds:
//! 1. new credentials are registered in Entra (a password per set through addPassword, whose secret
//!    Graph shows once; the certificates in one PATCH of the set) — an unreadable leftover of a
//!    crashed pass is one of portvakt's, not in any Secret, and is revoked by a later pass;
//! 2. the Secret is written, only when its content changes, recording what an in-place rewrite
//!    replaced;
//! 3. only then credentials are revoked, never one in the Secret, in a managed Secret a workload
//!    references, or replaced in place while a running Pod may still hold it; the workload scan runs
//!    only when something might go;
//! 4. managed Secrets of other names that no workload references are deleted.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use super::application::AppDone;
use super::pipeline::SecretsView;
use crate::controller::Error;
use crate::controller::keygen::Priority;
use crate::controller::pass::Pass;
use crate::controller::secret_store::AnnotationMode;
use crate::core::Key;
use crate::core::entra::certificate;
use crate::core::entra::credentials::{
    self as cc, CredentialSet, Credentials, KeyIds, Mode, ModeInputs, Replaced, RevokeInputs,
};
use crate::core::entra::secret::{self as csecret, PreAuthorizedEntry};
use crate::core::secret_content;
use crate::core::workloads::References;
use crate::crd::{AzureAdApplication, AzureAdApplicationStatus};
use crate::entra::{KeyCredential, NewPasswordCredential, PasswordCredential};

/// Lifetime of new credentials (azurerator's: a year).
const CREDENTIAL_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(365 * 24);

/// What the step did.
pub(crate) struct CredsDone {
    pub mode: Mode,
    pub rotated_at: Option<Timestamp>,
    pub secret_written: bool,
    pub revoked: Vec<String>,
    pub deleted_secrets: Vec<String>,
    /// Managed credentials still registered (status).
    pub key_ids: KeyIds,
    /// Look again after this long (revocations waiting for a grace period).
    pub requeue: Option<Duration>,
    pub changes: Vec<String>,
}

/// The mode's inputs other than what Entra holds.
pub(crate) fn mode_inputs<'a>(
    pass: &Pass<'_, AzureAdApplication>,
    view: &'a SecretsView,
    status: &AzureAdApplicationStatus,
    passwords: &'a [PasswordCredential],
    keys: &'a [KeyCredential],
) -> ModeInputs<'a> {
    let cfg = &pass.provider.config;
    let synced = status
        .synchronization_secret_name
        .as_deref()
        .filter(|n| !n.is_empty());
    ModeInputs {
        now: pass.shared.clock.now(),
        latest: view.latest.as_ref(),
        passwords,
        keys,
        rotation_time: status
            .synchronization_secret_rotation_time
            .as_ref()
            .map(|t| t.0),
        max_age: cfg.max_age,
        // The Secret says which tenant its credentials belong to; the status may be one write
        // behind (a pass on a cached object that has not seen the last status write yet), and
        // reading it alone made new credentials on such a pass.
        tenant_unchanged: match view.latest_tenant.as_deref() {
            Some(t) => t.eq_ignore_ascii_case(&cfg.tenant_id),
            None => status
                .synchronization_tenant
                .as_deref()
                .is_some_and(|t| t.contains(&cfg.tenant_id)),
        },
        rotate_annotation: crate::core::entra::wants_rotate(pass.obj.metadata.annotations.as_ref()),
        secret_name_changed: synced.is_some_and(|n| n != pass.obj.spec.secret_name),
    }
}

/// How many keys a pass will certainly need, before Graph is asked (so they are made while Graph
/// answers): 2 without a readable set, 1 for an asked-for rotation.
pub(crate) fn keys_needed_upfront(
    pass: &Pass<'_, AzureAdApplication>,
    view: &SecretsView,
) -> usize {
    if view.latest.is_none() {
        2
    } else if crate::core::entra::wants_rotate(pass.obj.metadata.annotations.as_ref()) {
        1
    } else {
        0
    }
}

fn common_name(pass: &Pass<'_, AzureAdApplication>) -> String {
    format!(
        "{}.{}.{}",
        pass.name, pass.namespace, pass.provider.config.cluster_name
    )
}

/// The step (see the module documentation). `keys` were generated ahead (more are made if needed).
pub(crate) async fn sync(
    pass: &Pass<'_, AzureAdApplication>,
    view: &SecretsView,
    app: &AppDone,
    status: &AzureAdApplicationStatus,
    mut keys: Vec<Key>,
) -> Result<CredsDone, Error> {
    let p = pass.provider;
    let g = &p.graph;
    let cfg = &p.config;
    let now = pass.shared.clock.now();
    let object_id = app.app.id.as_str();
    let mut passwords = app.app.password_credentials.clone();
    let mut registered_keys = app.app.key_credentials.clone();
    let mode = cc::mode(&mode_inputs(
        pass,
        view,
        status,
        &passwords,
        &registered_keys,
    ));
    match &mode {
        Mode::Keep => {}
        Mode::Rotate(why) => tracing::info!(reason = %why, "rotating the credentials"),
        Mode::Add(why) => tracing::info!(reason = %why, "registering new credentials"),
    }
    let wanted = match &mode {
        Mode::Keep => 0,
        Mode::Rotate(_) => 1,
        Mode::Add(_) => 2,
    };
    if keys.len() < wanted {
        keys.extend(
            pass.generate_keys(wanted - keys.len(), Priority::Urgent)
                .await?,
        );
    }
    let mut changes = Vec::new();
    let new_sets = if wanted > 0 {
        let mut sets = Vec::new();
        let mut new_keys = Vec::new();
        for key in keys.iter().take(wanted) {
            let cert = certificate::certificate_key(key, &common_name(pass), now)
                .map_err(|e| Error::KeyGeneration(format!("the certificate: {e}")))?;
            let display_name = cc::new_display_name(now);
            let added = g
                .add_password(
                    object_id,
                    &NewPasswordCredential {
                        display_name: display_name.clone(),
                        start_date_time: Some(now.to_string()),
                        end_date_time: Some((now + CREDENTIAL_LIFETIME).to_string()),
                    },
                )
                .await?;
            let secret = added
                .secret_text
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default();
            let kc = KeyCredential::certificate(&cert.cert_der, display_name);
            let key_id = kc.key_id.clone().unwrap_or_default();
            passwords.push(added.clone());
            sets.push(CredentialSet {
                client_secret: secret,
                password_key_id: added.key_id.clone(),
                certificate_key_id: key_id,
                certificate: cert,
            });
            new_keys.push(kc);
        }
        let written = if app.created() {
            g.set_key_credentials(object_id, &new_keys).await?;
            new_keys
        } else {
            g.update_key_credentials(object_id, |_| true, new_keys)
                .await?
        };
        registered_keys = written;
        sets
    } else {
        vec![]
    };
    let latest = view.latest.clone();
    let (credentials, rotated_at) = match (&mode, latest) {
        (Mode::Keep, Some(latest)) => (latest, None),
        (Mode::Rotate(why), Some(latest)) => {
            changes.push(format!("credentials rotated ({why})"));
            let next = new_sets
                .into_iter()
                .next()
                .ok_or_else(|| Error::Internal("a rotation without a new credential set".into()))?;
            (cc::rotated(&latest, next), Some(now))
        }
        (Mode::Add(why), _) => {
            changes.push(format!("new credentials ({why})"));
            let mut it = new_sets.into_iter();
            let (Some(current), Some(next)) = (it.next(), it.next()) else {
                return Err(Error::Internal(
                    "a new credential set without two credentials".into(),
                ));
            };
            (Credentials { current, next }, Some(now))
        }
        _ => {
            return Err(Error::Internal(
                "keep or rotate without a readable set".into(),
            ));
        }
    };
    let in_secret = KeyIds::of(&credentials);
    let registered = cc::managed_ids(&passwords, &registered_keys);

    // What an in-place rewrite replaces, and whether anything might go: only then a workload scan.
    let secret_name = pass.obj.spec.secret_name.as_str();
    let before = view.app.as_ref().and_then(csecret::read_credentials);
    let replaced = before
        .as_ref()
        .filter(|b| KeyIds::of(b) != in_secret)
        .map(|b| cc::replaced_ids(b, &in_secret));
    let old_history = view.app.as_ref().map(csecret::history).unwrap_or_default();
    let others: Vec<&Secret> = view
        .managed
        .iter()
        .filter(|s| s.metadata.name.as_deref() != Some(secret_name))
        .collect();
    let might_revoke = registered
        .passwords
        .iter()
        .chain(registered.certificates.iter())
        .any(|id| {
            !in_secret
                .passwords
                .iter()
                .chain(in_secret.certificates.iter())
                .any(|x| x.eq_ignore_ascii_case(id))
        });
    let refs: Option<References> = if might_revoke || !others.is_empty() || !old_history.is_empty()
    {
        Some(pass.scan_workloads().await?)
    } else {
        None
    };
    let grace = jiff::SignedDuration::try_from(cfg.revoke_grace).unwrap_or_default();
    let in_grace = |r: &Replaced| now.duration_since(r.at) < grace;
    let history = cc::next_history(&old_history, replaced, now, &registered, |r| {
        in_grace(r)
            || refs
                .as_ref()
                .is_none_or(|refs| refs.may_hold_content_before(secret_name, r.at))
    });

    // The Secret.
    let owner = owner(pass)?;
    let pre: Vec<PreAuthorizedEntry> = app
        .resolved
        .iter()
        .filter_map(|r| {
            r.found.as_ref().map(|f| PreAuthorizedEntry {
                name: r.rule.urn.clone(),
                client_id: f.client_id.clone(),
            })
        })
        .collect();
    let prefix = csecret::prefix(pass.obj.spec.secret_key_prefix.as_deref());
    let desired = csecret::desired(
        cfg,
        &csecret::Inputs {
            owner: &owner,
            secret_name,
            prefix: &prefix,
            client_id: &app.app.app_id,
            credentials: &credentials,
            pre_authorized: &pre,
            history: &history,
            had_history: view
                .app
                .as_ref()
                .is_some_and(csecret::has_history_annotation),
        },
    );
    let secret_written = view
        .app
        .as_ref()
        .is_none_or(|s| secret_content::needs_write(s, &desired));
    if secret_written {
        pass.write_secret(view.app.as_ref(), &desired, AnnotationMode::Merge)
            .await?;
    }

    // Revocation and unreferenced Secrets, only with the scan.
    let mut revoked = Vec::new();
    let mut deleted_secrets = Vec::new();
    let mut key_ids = registered.clone();
    if let Some(refs) = &refs {
        let mut referenced = KeyIds::default();
        for s in view.managed.iter().filter(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n != secret_name && refs.is_referenced(n))
        }) {
            referenced.extend(&csecret::key_ids(s));
        }
        let held = cc::held_ids(&history);
        let rev = cc::revocations(&RevokeInputs {
            now,
            in_secret: &in_secret,
            referenced: &referenced,
            held: &held,
            passwords: &passwords,
            keys: &registered_keys,
        });
        for id in &rev.passwords {
            match g.remove_password(object_id, id).await {
                Ok(()) => {}
                // Gone already (removed by hand, or by a pass that crashed after it).
                Err(e) if e.is_not_found() || e.status() == Some(400) => {
                    tracing::info!(key_id = %id, error = %e, "password already gone");
                }
                Err(e) => return Err(e.into()),
            }
            revoked.push(id.clone());
        }
        if !rev.certificates.is_empty() {
            let gone = rev.certificates.clone();
            g.update_key_credentials(
                object_id,
                |k| {
                    !k.key_id
                        .as_deref()
                        .is_some_and(|id| gone.iter().any(|g| g.eq_ignore_ascii_case(id)))
                },
                vec![],
            )
            .await?;
            revoked.extend(gone);
        }
        if !rev.is_empty() {
            changes.push(format!("{} credentials revoked", revoked.len()));
        }
        key_ids = rev.kept;
        for s in others {
            let name = s.metadata.name.clone().unwrap_or_default();
            if !refs.is_referenced(&name) {
                pass.delete_secret(s).await?;
                deleted_secrets.push(name);
            }
        }
    }
    // Look again when the first remembered replacement leaves its grace period (Pods that may
    // hold one are looked at again each resync period).
    let requeue = history
        .iter()
        .filter_map(|r| {
            let left = grace - now.duration_since(r.at);
            left.is_positive().then(|| left.unsigned_abs())
        })
        .min()
        .map(|d| d + Duration::from_secs(1));
    Ok(CredsDone {
        mode,
        rotated_at,
        secret_written,
        revoked,
        deleted_secrets,
        key_ids,
        requeue,
        changes,
    })
}

/// The owner of the resource's Secrets.
pub(crate) fn owner(pass: &Pass<'_, AzureAdApplication>) -> Result<csecret::Owner, Error> {
    Ok(csecret::Owner {
        namespace: pass.namespace.clone(),
        name: pass.name.clone(),
        uid: pass
            .obj
            .metadata
            .uid
            .clone()
            .ok_or_else(|| Error::Internal(format!("{} has no metadata.uid", pass.key)))?,
    })
}
