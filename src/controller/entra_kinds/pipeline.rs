//! One pass over an AzureAdApplication, as a pipeline of named steps:
//!
//! ```text
//! validate → load Secrets → (up to date? done) → application → credentials + Secret → status
//! ```
//!
//! Order of effects, chosen so any crash converges to exactly one application and no lost
//! credential:
//! 1. everything that can be checked is checked before anything is written ([`validate`]);
//! 2. the Secrets are read first: one of `spec.secretName` owned by someone else stops the pass
//!    before Entra is touched;
//! 3. a resource whose status says everything is in place (same generation, hash, Secret and tenant,
//!    no `resync`/`rotate`, credentials within their max age, nothing left to revoke) makes no Graph
//!    call at all;
//! 4. otherwise the application step ([`super::application`]) and the credential step
//!    ([`super::credentials`]), then the status the pure core decides; apps elsewhere in the cluster
//!    that wait for this one are asked to resync;
//! 5. when the next pass is due if nothing changes ([`crate::core::entra::due`]): the daily full
//!    synchronisation, the rotation at max age, a grace period's end, a revisit of what no watch
//!    reports — nothing else, so an unchanged resource is not reconciled in between.
//!
//! Nothing here logs credentials, keys or tokens.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use super::{EntraProvider, application, credentials, periodic};
use crate::controller::keygen::Priority;
use crate::controller::pass::Pass;
use crate::controller::{Applied, Error};
use crate::core::entra::credentials::{self as cc, Credentials, Mode};
use crate::core::entra::due as cdue;
use crate::core::entra::secret as csecret;
use crate::core::entra::status::{self as cstatus, Freshness, Success};
use crate::core::entra::{self as ce, application as capp, events};
use crate::core::{hash, validation};
use crate::crd::{AzureAdApplication, AzureAdApplicationStatus};

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::invalid_spec(field, message)
}

/// Checks the spec before anything is written.
pub(super) fn validate(obj: &AzureAdApplication, _p: &EntraProvider) -> Result<(), Error> {
    let spec = &obj.spec;
    validation::dns1123_subdomain("spec.secretName", &spec.secret_name)
        .map_err(|(field, message)| Error::InvalidSpec { field, message })?;
    let prefix = csecret::prefix(spec.secret_key_prefix.as_deref());
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(invalid(
            "spec.secretKeyPrefix",
            format!(
                "{:?} would make Secret keys like {prefix}_APP_CLIENT_ID, but keys may hold only letters, digits, '_', '-' and '.'",
                spec.secret_key_prefix.as_deref().unwrap_or_default()
            ),
        ));
    }
    let permission_ok = |v: &str| {
        !v.is_empty()
            && v.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/')
            })
    };
    for (i, r) in spec
        .pre_authorized_applications
        .iter()
        .flatten()
        .enumerate()
    {
        if r.application.trim().is_empty() {
            return Err(invalid(
                format!("spec.preAuthorizedApplications[{i}].application"),
                "must name an application",
            ));
        }
        let p = r.permissions.as_ref();
        for (kind, list) in [
            ("scopes", p.and_then(|p| p.scopes.as_ref())),
            ("roles", p.and_then(|p| p.roles.as_ref())),
        ] {
            for (j, v) in list.into_iter().flatten().enumerate() {
                if !permission_ok(v) {
                    return Err(invalid(
                        format!("spec.preAuthorizedApplications[{i}].permissions.{kind}[{j}]"),
                        format!("{v:?} must match ^[a-z0-9-_./]+$"),
                    ));
                }
            }
        }
    }
    let fcs = spec.federated_credentials.as_deref().unwrap_or_default();
    if fcs.len() > 20 {
        return Err(invalid(
            "spec.federatedCredentials",
            format!("at most 20 are allowed, there are {}", fcs.len()),
        ));
    }
    for (i, f) in fcs.iter().enumerate() {
        for (field, value, max) in [
            ("name", &f.name, 120),
            ("issuer", &f.issuer, 600),
            ("subject", &f.subject, 600),
            ("audience", &f.audience, 600),
        ] {
            let n = value.chars().count();
            if n == 0 || n > max {
                return Err(invalid(
                    format!("spec.federatedCredentials[{i}].{field}"),
                    format!("must be 1 to {max} characters (it is {n})"),
                ));
            }
        }
        if !url::Url::parse(&f.issuer).is_ok_and(|u| u.scheme() == "https" || u.scheme() == "http")
        {
            return Err(invalid(
                format!("spec.federatedCredentials[{i}].issuer"),
                format!("{:?} is not the issuer's URL", f.issuer),
            ));
        }
        if fcs[..i]
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&f.name))
        {
            return Err(invalid(
                format!("spec.federatedCredentials[{i}].name"),
                format!("{:?} is used twice", f.name),
            ));
        }
        if fcs[..i]
            .iter()
            .any(|o| o.issuer == f.issuer && o.subject == f.subject)
        {
            return Err(invalid(
                format!("spec.federatedCredentials[{i}]"),
                "each combination of (issuer, subject) must be unique",
            ));
        }
    }
    Ok(())
}

/// Everything read about a resource's Secrets.
pub(crate) struct SecretsView {
    /// The Secret named by `spec.secretName` (the resource's).
    pub app: Option<Secret>,
    /// Every managed Secret of the resource (labels `app` + `type`, owned), the app's included.
    pub managed: Vec<Secret>,
    /// The set in the Secret last synchronised (`status.synchronizationSecretName`, else the app's).
    pub latest: Option<Credentials>,
    /// The tenant that Secret names (`AZURE_APP_TENANT_ID`).
    pub latest_tenant: Option<String>,
}

/// Step: the resource's Secrets. A Secret of `spec.secretName` owned by anyone else stops the pass.
pub(crate) async fn load(pass: &Pass<'_, AzureAdApplication>) -> Result<SecretsView, Error> {
    let app = pass.get_owned_secret(&pass.obj.spec.secret_name).await?;
    let managed: Vec<Secret> = pass
        .app_secrets(&app.iter().collect::<Vec<_>>())
        .await?
        .into_iter()
        .filter(|s| csecret::is_managed(&s.metadata, &pass.name))
        .collect();
    let synced = pass
        .obj
        .status
        .as_ref()
        .and_then(|s| s.synchronization_secret_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| pass.obj.spec.secret_name.clone());
    let latest_secret = managed
        .iter()
        .chain(app.iter())
        .find(|s| s.metadata.name.as_deref() == Some(synced.as_str()));
    let latest = latest_secret.and_then(csecret::read_credentials);
    let latest_tenant = latest_secret.and_then(csecret::tenant_id);
    Ok(SecretsView {
        app,
        managed,
        latest,
        latest_tenant,
    })
}

/// Whether the Secret still holds the set and client the status records (read from Kubernetes only).
fn secret_intact(view: &SecretsView, st: Option<&AzureAdApplicationStatus>) -> bool {
    let Some(app) = &view.app else { return false };
    let Some(creds) = csecret::read_credentials(app) else {
        return false;
    };
    let Some(st) = st else { return false };
    let recorded = cstatus::status_key_ids(st);
    let ids = cc::KeyIds::of(&creds);
    csecret::client_id(app) == st.client_id
        && ids
            .passwords
            .iter()
            .all(|p| recorded.passwords.iter().any(|r| r.eq_ignore_ascii_case(p)))
        && ids.certificates.iter().all(|c| {
            recorded
                .certificates
                .iter()
                .any(|r| r.eq_ignore_ascii_case(c))
        })
}

/// Whether credentials or Secrets may be waiting to go.
fn cleanup_pending(
    view: &SecretsView,
    st: Option<&AzureAdApplicationStatus>,
    spec_name: &str,
) -> bool {
    let others = view
        .managed
        .iter()
        .any(|s| s.metadata.name.as_deref() != Some(spec_name));
    let Some(app) = &view.app else { return true };
    let Some(creds) = csecret::read_credentials(app) else {
        return true;
    };
    let recorded = st.map(cstatus::status_key_ids).unwrap_or_default();
    others || cc::cleanup_pending(&recorded, &cc::KeyIds::of(&creds), &csecret::history(app))
}

/// The pipeline for a resource that is not being deleted.
pub(super) async fn apply(
    pass: &Pass<'_, AzureAdApplication>,
) -> Result<Applied<AzureAdApplicationStatus>, Error> {
    let obj = pass.obj;
    let p = pass.provider;
    let cfg = &p.config;
    let now = pass.shared.clock.now();
    let annotations = obj.metadata.annotations.as_ref();
    let status = obj.status.clone().unwrap_or_default();
    let spec_hash = hash::azure_hash(&obj.spec);
    let view = load(pass).await?;
    let rotation_time = status
        .synchronization_secret_rotation_time
        .as_ref()
        .map(|t| t.0);
    let full_sync_at = lock_full_syncs(p).get(&pass.key).copied();
    let fresh = cstatus::is_up_to_date(&Freshness {
        generation: pass.generation(),
        status: obj.status.as_ref(),
        annotations,
        hash: &spec_hash,
        secret_name: &obj.spec.secret_name,
        tenant_id: &cfg.tenant_id,
        now,
        full_sync_every: cfg.full_sync_every,
        full_sync_at,
        max_age: cfg.max_age,
        secret_valid: secret_intact(&view, obj.status.as_ref()),
        cleanup_pending: cleanup_pending(&view, obj.status.as_ref(), &obj.spec.secret_name),
    });
    if fresh {
        return Ok(Applied {
            status: None,
            requeue: next_pass_in(pass, &status, full_sync_at, rotation_time, None, false),
            changes: vec![],
            complete: true,
        });
    }

    let desired = capp::desired(cfg, &pass.namespace, &pass.name, &obj.spec);
    let upfront = credentials::keys_needed_upfront(pass, &view);
    let (app, keys) = futures::try_join!(
        application::sync(pass, &desired, &status),
        // Keys a pass waits for: before any deferred next key of another kind.
        pass.generate_keys(upfront, Priority::Urgent)
    )?;
    let creds = credentials::sync(pass, &view, &app, &status, keys).await?;

    let (assigned, unassigned) = crate::core::entra::preauth::status_lists(&app.resolved);
    let mut changes = app.changes.clone();
    changes.extend(creds.changes.iter().cloned());
    let changed = !changes.is_empty() || creds.secret_written || !creds.deleted_secrets.is_empty();
    let correlation_id = annotations
        .and_then(|a| a.get(ce::ANN_CORRELATION_ID))
        .cloned()
        .or_else(|| (!changed).then(|| status.correlation_id.clone()).flatten())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let success = Success {
        client_id: app.app.app_id.clone(),
        object_id: app.app.id.clone(),
        service_principal_id: app.sp.id.clone(),
        secret_name: obj.spec.secret_name.clone(),
        hash: spec_hash,
        correlation_id,
        tenant_id: cfg.tenant_id.clone(),
        tenant_name: cfg.tenant_name.clone(),
        rotated_at: creds.rotated_at,
        assigned: assigned.clone(),
        unassigned: unassigned.clone(),
        key_ids: creds.key_ids.clone(),
    };
    let new_status = cstatus::after_pass(
        obj.status.as_ref(),
        pass.generation(),
        now,
        &success,
        changed,
    );
    report(pass, &app, &creds, &status, &assigned, &unassigned).await;
    if let Some(found) = periodic::take_drift(p, &pass.key) {
        periodic::report_repair(pass, &found, &changes).await;
    }
    let previous_client = status.client_id.as_deref().unwrap_or_default();
    if app.created() || previous_client != app.app.app_id {
        periodic::resync_dependents(pass, &desired.display_name, &app.app.app_id).await;
    }
    let rotation_time = creds.rotated_at.or(rotation_time);
    let revisit = leaves_revisit(pass, &view, &status, &creds);
    let after = new_status.as_ref().unwrap_or(&status);
    // This full pass is the daily one too, whether or not it wrote a status.
    lock_full_syncs(p).insert(pass.key.clone(), now);
    let requeue = next_pass_in(
        pass,
        after,
        Some(now),
        rotation_time,
        creds.requeue,
        revisit,
    );
    Ok(Applied {
        status: new_status,
        requeue,
        changes,
        complete: true,
    })
}

fn lock_full_syncs(
    p: &EntraProvider,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, jiff::Timestamp>> {
    p.full_syncs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Step: when the next pass is due if nothing changes ([`cdue`]), from the status the pass leaves.
fn next_pass_in(
    pass: &Pass<'_, AzureAdApplication>,
    status: &AzureAdApplicationStatus,
    full_sync_at: Option<jiff::Timestamp>,
    rotation_time: Option<jiff::Timestamp>,
    grace_ends_in: Option<std::time::Duration>,
    revisit: bool,
) -> Option<std::time::Duration> {
    let cfg = &pass.provider.config;
    cdue::next_pass_in(&cdue::DueInputs {
        now: pass.shared.clock.now(),
        synchronized_at: status
            .synchronization_time
            .as_ref()
            .map(|t| t.0)
            .max(full_sync_at),
        full_sync_every: cfg.full_sync_every,
        rotation_at: cc::rotation_due(rotation_time, cfg.max_age),
        grace_ends_in,
        revisit,
        resync: pass.resync,
    })
}

/// Whether a full pass leaves something only workloads settle, which no watch reports (managed
/// Secrets of other names still referenced, credentials kept or remembered for a Pod that may hold
/// them), or more of the resync list than it consumed: looked at again after the resync period.
fn leaves_revisit(
    pass: &Pass<'_, AzureAdApplication>,
    view: &SecretsView,
    status: &AzureAdApplicationStatus,
    creds: &credentials::CredsDone,
) -> bool {
    let spec_name = pass.obj.spec.secret_name.as_str();
    let others_left = view.managed.iter().any(|s| {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        name != spec_name && !creds.deleted_secrets.iter().any(|d| d == name)
    });
    // What the pass started with; a pass that settled it costs one more look, without Graph calls.
    let remembered = view.app.as_ref().is_some_and(|app| {
        csecret::read_credentials(app).is_some_and(|c| {
            cc::cleanup_pending(
                &cstatus::status_key_ids(status),
                &cc::KeyIds::of(&c),
                &csecret::history(app),
            )
        })
    });
    let more_resyncs = pass
        .obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ce::ANN_RESYNC))
        .is_some_and(|v| ce::resync_after_pass(v).is_some());
    others_left || remembered || more_resyncs
}

/// azurerator's events for what the pass did.
async fn report(
    pass: &Pass<'_, AzureAdApplication>,
    app: &application::AppDone,
    creds: &credentials::CredsDone,
    prev: &AzureAdApplicationStatus,
    assigned: &[crate::crd::AzureAdPreAuthorizedApp],
    unassigned: &[crate::crd::AzureAdPreAuthorizedApp],
) {
    if app.created() {
        pass.publish(
            EventType::Normal,
            events::CREATED_IN_AZURE,
            "Azure application is created".into(),
        )
        .await;
    } else if !app.changes.is_empty() {
        pass.publish(
            EventType::Normal,
            events::UPDATED_IN_AZURE,
            format!("Azure application is updated: {}", app.changes.join("; ")),
        )
        .await;
    }
    if let Mode::Rotate(_) = creds.mode {
        pass.publish(
            EventType::Normal,
            events::ROTATED_IN_AZURE,
            "Azure credentials is rotated".into(),
        )
        .await;
    }
    // One event per pre-authorized app whose state changed since the last pass.
    let prev_lists = prev.pre_authorized_apps.clone().unwrap_or_default();
    let urn = |a: &crate::crd::AzureAdPreAuthorizedApp| {
        a.access_policy_rule
            .as_ref()
            .map(|r| {
                format!(
                    "{}:{}:{}",
                    r.cluster.as_deref().unwrap_or_default(),
                    r.namespace.as_deref().unwrap_or_default(),
                    r.application
                )
            })
            .unwrap_or_default()
    };
    let was = |list: &Option<Vec<crate::crd::AzureAdPreAuthorizedApp>>,
               a: &crate::crd::AzureAdPreAuthorizedApp| {
        list.iter()
            .flatten()
            .any(|b| urn(b) == urn(a) && b.client_id == a.client_id)
    };
    for a in assigned.iter().filter(|a| !was(&prev_lists.assigned, a)) {
        if urn(a)
            == ce::display_name(
                &pass.provider.config.cluster_name,
                &pass.namespace,
                &pass.name,
            )
        {
            continue;
        }
        pass.publish(
            EventType::Normal,
            events::ACCESS_POLICY_ASSIGNED,
            format!("assigned '{}'", urn(a)),
        )
        .await;
    }
    for a in unassigned
        .iter()
        .filter(|a| !was(&prev_lists.unassigned, a))
    {
        pass.publish(
            EventType::Warning,
            events::ACCESS_POLICY_SKIPPED,
            a.reason
                .clone()
                .unwrap_or_else(|| format!("skipped '{}'", urn(a))),
        )
        .await;
    }
    let anything = !app.changes.is_empty() || creds.secret_written || !creds.revoked.is_empty();
    if anything {
        pass.publish(
            EventType::Normal,
            events::SYNCHRONIZED,
            "Azure application is up-to-date".into(),
        )
        .await;
    }
}

/// The application of a resource, by its display name, else by the object id its status records
/// (a new app may not be listed yet).
pub(crate) async fn find_app(
    pass: &Pass<'_, AzureAdApplication>,
) -> Result<Option<crate::entra::Application>, Error> {
    let p = pass.provider;
    let name = ce::display_name(&p.config.cluster_name, &pass.namespace, &pass.name);
    if let Some(app) = p.graph.find_application_by_display_name(&name).await? {
        return Ok(Some(app));
    }
    let Some(id) = pass
        .obj
        .status
        .as_ref()
        .and_then(|s| s.object_id.clone())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    match p.graph.get_application(&id).await {
        Ok(app) if app.display_name == name => Ok(Some(app)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletion: the application is deleted unless `azure.nais.io/preserve` is set; then only the
/// credentials portvakt (or azurerator) made are revoked.
pub(super) async fn cleanup(pass: &Pass<'_, AzureAdApplication>) -> Result<(), Error> {
    let p = pass.provider;
    lock_full_syncs(p).remove(&pass.key);
    let app = find_app(pass).await?;
    if ce::preserve(pass.obj.metadata.annotations.as_ref()) {
        if let Some(app) = &app {
            for pw in app
                .password_credentials
                .iter()
                .filter(|c| cc::is_managed(c.display_name.as_deref()))
            {
                match p.graph.remove_password(&app.id, &pw.key_id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() || e.status() == Some(400) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            p.graph
                .update_key_credentials(
                    &app.id,
                    |k| !cc::is_managed(k.display_name.as_deref()),
                    vec![],
                )
                .await?;
        }
        tracing::info!(
            "resource deleted; its application in Entra ID is preserved (azure.nais.io/preserve), its credentials revoked"
        );
    } else if let Some(app) = &app {
        p.graph.delete_application(&app.id).await?;
        tracing::info!(object_id = %app.id, "application deleted in Entra ID");
        pass.publish(
            EventType::Normal,
            events::DELETED_IN_AZURE,
            "Azure application is deleted".into(),
        )
        .await;
    }
    pass.forget_own(std::slice::from_ref(&pass.obj.spec.secret_name));
    Ok(())
}
