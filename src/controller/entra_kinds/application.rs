//! Step: the application in Entra ID and everything around it, written only where it differs.
//!
//! 1. the pre-authorized apps are looked up (by display name, then their service principal) while
//!    the app itself is found by its display name (azurerator's, adopted) or created with the
//!    crash-safe upsert by uniqueName (a retry after a crash finds what the first attempt made);
//! 2. its service principal (tag `HideApp`, assignment required per the setting), found or created;
//! 3. permissions through the disable-then-remove replacement when they differ; one PATCH with every
//!    other field that differs (identifier URIs, redirect URIs, pre-authorized apps, …);
//! 4. at once, each on its own object: the delegated grant (never updated once there), the operator
//!    as owner of the app and the service principal, the app role assignments (apps and groups), the
//!    federated identity credentials.
//!
//! Objects this pass created are not read back (a new service principal has no assignments yet).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};

use super::EntraProvider;
use crate::controller::Error;
use crate::controller::pass::Pass;
use crate::core::entra::application::{self, Desired, GRANT_SCOPE};
use crate::core::entra::preauth::{self, Found, Resolved, Rule};
use crate::crd::{AzureAdApplication, AzureAdApplicationStatus};
use crate::entra::{
    AppRole, Application, EnsureOutcome, FederatedIdentityCredential, GraphError,
    NewAppRoleAssignment, NewServicePrincipal, OAuth2PermissionGrant, ServicePrincipal,
    ServicePrincipalPatch,
};

/// The description portvakt gives the federated identity credentials it makes (only those are
/// ever changed or removed).
pub const FEDERATED_DESCRIPTION: &str = "managed by portvakt (spec.federatedCredentials)";
/// The service principal's tag that hides the app from users' app lists.
pub const HIDE_APP: &str = "HideApp";
/// Pre-authorized apps looked up at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// What the step established.
pub(crate) struct AppDone {
    pub app: Application,
    pub outcome: EnsureOutcome,
    pub sp: ServicePrincipal,
    /// The rules as found, the app itself last.
    pub resolved: Vec<Resolved>,
    /// What the step changed, in words.
    pub changes: Vec<String>,
}

impl AppDone {
    pub fn created(&self) -> bool {
        self.outcome == EnsureOutcome::Created
    }
}

/// Looks up one pre-authorized app: found when its application and its service principal exist.
pub(crate) async fn resolve(p: &EntraProvider, rule: Rule) -> Result<Resolved, Error> {
    let g = &p.graph;
    let app = match g.find_application_by_display_name(&rule.urn).await {
        Ok(app) => app,
        Err(e @ GraphError::Duplicate { .. }) => {
            return Ok(Resolved {
                reason: Some(format!("skipped '{}': {e}", rule.urn)),
                rule,
                found: None,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let Some(app) = app else {
        return Ok(Resolved {
            reason: Some(preauth::not_found_reason(&rule.urn, &p.config)),
            rule,
            found: None,
        });
    };
    match g.find_service_principal_by_app_id(&app.app_id).await? {
        Some(sp) => Ok(Resolved {
            rule,
            found: Some(Found {
                client_id: app.app_id,
                sp_id: sp.id,
            }),
            reason: None,
        }),
        None => Ok(Resolved {
            reason: Some(format!(
                "skipped '{}'; it has no service principal in the tenant yet",
                rule.urn
            )),
            rule,
            found: None,
        }),
    }
}

/// Every rule of the spec except the app itself, looked up (a few at a time).
pub(crate) async fn resolve_all(
    p: &EntraProvider,
    own: &str,
    rules: Vec<Rule>,
) -> Result<Vec<Resolved>, Error> {
    futures::stream::iter(rules.into_iter().filter(|r| r.urn != own))
        .map(|r| resolve(p, r))
        .buffered(LOOKUPS_AT_ONCE)
        .try_collect()
        .await
}

/// Client ids and service principals the previous pass pre-authorized (status).
pub(crate) fn previous(status: &AzureAdApplicationStatus) -> (BTreeSet<String>, BTreeSet<String>) {
    let assigned = status
        .pre_authorized_apps
        .iter()
        .flat_map(|p| p.assigned.iter().flatten());
    let mut clients = BTreeSet::new();
    let mut sps = BTreeSet::new();
    for a in assigned {
        if let Some(c) = &a.client_id {
            clients.insert(c.clone());
        }
        if let Some(s) = &a.service_principal_object_id {
            sps.insert(s.clone());
        }
    }
    (clients, sps)
}

/// The step (see the module documentation).
pub(crate) async fn sync(
    pass: &Pass<'_, AzureAdApplication>,
    desired: &Desired,
    status: &AzureAdApplicationStatus,
) -> Result<AppDone, Error> {
    let p = pass.provider;
    let g = &p.graph;
    let cfg = &p.config;
    let rules = preauth::rules(cfg, &pass.namespace, &pass.obj.spec);
    let body = application::create_body(desired);
    let unique = crate::core::entra::unique_name(&desired.display_name);
    let (ensured, mut resolved) = futures::try_join!(
        async {
            g.ensure_application(&desired.display_name, &unique, &body)
                .await
                .map_err(Error::from)
        },
        resolve_all(p, &desired.display_name, rules),
    )?;
    let app = ensured.application;
    let outcome = ensured.outcome;
    let mut changes = Vec::new();
    match outcome {
        EnsureOutcome::Created => changes.push("application created".to_string()),
        EnsureOutcome::Recovered => {
            changes.push("application found by its uniqueName and updated".to_string())
        }
        EnsureOutcome::Found => {}
    }

    // The service principal.
    let new_sp = || NewServicePrincipal {
        app_id: app.app_id.clone(),
        app_role_assignment_required: Some(cfg.assignment_required),
        tags: Some(vec![HIDE_APP.to_string()]),
    };
    let (sp, sp_created) = match outcome {
        EnsureOutcome::Created => (g.create_service_principal(&new_sp()).await?, true),
        _ => match g.find_service_principal_by_app_id(&app.app_id).await? {
            Some(sp) => (sp, false),
            None => (g.create_service_principal(&new_sp()).await?, true),
        },
    };
    if sp_created {
        changes.push("service principal created".into());
    } else if cfg.assignment_required
        && (!sp.app_role_assignment_required || !sp.tags.iter().any(|t| t == HIDE_APP))
    {
        // azurerator never turns assignment required off again.
        let mut tags = sp.tags.clone();
        if !tags.iter().any(|t| t == HIDE_APP) {
            tags.push(HIDE_APP.into());
        }
        g.update_service_principal(
            &sp.id,
            &ServicePrincipalPatch {
                app_role_assignment_required: Some(true),
                tags: Some(tags),
                ..Default::default()
            },
        )
        .await?;
        changes.push("service principal: appRoleAssignmentRequired".into());
    }

    // Permissions, then one PATCH of everything else that differs.
    let mut update = application::update(desired, &app);
    let (scopes, roles) = match update.permissions.take() {
        Some((scopes, roles)) => {
            let change = g.replace_permissions(&app, &scopes, &roles).await?;
            if !change.removed.is_empty() {
                changes.push(format!(
                    "permissions disabled and removed: {}",
                    change.removed.join(", ")
                ));
            }
            (scopes, roles)
        }
        None => (app.scopes().to_vec(), app.app_roles.clone()),
    };
    resolved.push(preauth::self_rule(
        cfg,
        &pass.namespace,
        &pass.name,
        Found {
            client_id: app.app_id.clone(),
            sp_id: sp.id.clone(),
        },
    ));
    let (prev_clients, prev_sps) = previous(status);
    let observed_pre = app.pre_authorized_applications();
    let pre = preauth::pre_authorized(&resolved, &scopes, observed_pre, &prev_clients);
    if !preauth::same_pre_authorized(observed_pre, &pre) {
        update
            .patch
            .api
            .get_or_insert_with(Default::default)
            .pre_authorized_applications = Some(pre);
        update.fields.push("preAuthorizedApplications");
    }
    let plain: Vec<&'static str> = update
        .fields
        .iter()
        .copied()
        .filter(|f| *f != "permissions")
        .collect();
    if !plain.is_empty() {
        g.update_application(&app.id, &update.patch).await?;
    }
    if outcome != EnsureOutcome::Created && !update.fields.is_empty() {
        changes.push(format!(
            "application updated ({})",
            update.fields.join(", ")
        ));
    }

    // Grant, owners, assignments and federated credentials: different objects, at once.
    let (grant, owners, assignments, federated) = futures::try_join!(
        grant(p, &sp, sp_created),
        owners(p, &app, &sp, outcome == EnsureOutcome::Created, sp_created),
        assignments(pass, &sp, sp_created, &resolved, &roles, &prev_sps),
        federated(pass, &app, outcome == EnsureOutcome::Created),
    )?;
    changes.extend(grant);
    changes.extend(owners);
    changes.extend(assignments);
    changes.extend(federated);
    Ok(AppDone {
        app,
        outcome,
        sp,
        resolved,
        changes,
    })
}

/// The delegated grant (openid User.Read GroupMember.Read.All on Microsoft Graph), made once.
async fn grant(
    p: &EntraProvider,
    sp: &ServicePrincipal,
    sp_created: bool,
) -> Result<Vec<String>, Error> {
    let resource = &p.config.permission_grant_resource_id;
    if !sp_created {
        let existing = p.graph.list_oauth2_permission_grants(&sp.id).await?;
        if existing
            .iter()
            .any(|g| g.resource_id.eq_ignore_ascii_case(resource))
        {
            return Ok(vec![]);
        }
    }
    p.graph
        .create_oauth2_permission_grant(&OAuth2PermissionGrant {
            id: String::new(),
            client_id: sp.id.clone(),
            consent_type: "AllPrincipals".into(),
            principal_id: None,
            resource_id: resource.clone(),
            scope: GRANT_SCOPE.into(),
        })
        .await?;
    Ok(vec!["delegated permission grant made".into()])
}

/// The operator's service principal as owner of the app and of its service principal (needed to
/// keep managing them under `Application.ReadWrite.OwnedBy`).
async fn owners(
    p: &EntraProvider,
    app: &Application,
    sp: &ServicePrincipal,
    app_created: bool,
    sp_created: bool,
) -> Result<Vec<String>, Error> {
    let me = p.operator_sp_id().await?;
    let g = &p.graph;
    let mut changes = Vec::new();
    let app_owned = !app_created
        && g.list_application_owners(&app.id)
            .await?
            .iter()
            .any(|o| o.id.eq_ignore_ascii_case(&me));
    if !app_owned {
        g.add_application_owner(&app.id, &me).await?;
        if !app_created {
            changes.push("operator made owner of the application".into());
        }
    }
    let sp_owned = !sp_created
        && g.list_service_principal_owners(&sp.id)
            .await?
            .iter()
            .any(|o| o.id.eq_ignore_ascii_case(&me));
    if !sp_owned {
        g.add_service_principal_owner(&sp.id, &me).await?;
        if !sp_created {
            changes.push("operator made owner of the service principal".into());
        }
    }
    Ok(changes)
}

/// App role assignments on the app's service principal: the found pre-authorized apps (and the
/// app itself) and the groups.
async fn assignments(
    pass: &Pass<'_, AzureAdApplication>,
    sp: &ServicePrincipal,
    sp_created: bool,
    resolved: &[Resolved],
    roles: &[AppRole],
    previous_sps: &BTreeSet<String>,
) -> Result<Vec<String>, Error> {
    let p = pass.provider;
    let g = &p.graph;
    let now = pass.shared.clock.now();
    let (claimed, all_users) = preauth::group_ids(&p.config, &pass.obj.spec);
    let mut groups = Vec::new();
    for id in &claimed {
        match p.group(id, now).await? {
            Some(group) => groups.push(group.id),
            None => {
                tracing::warn!(group = %id, "spec.claims.groups names a group that does not exist in the tenant; skipped")
            }
        }
    }
    for id in &all_users {
        match p.group(id, now).await? {
            Some(group) => groups.push(group.id),
            None => {
                return Err(Error::Configuration {
                    setting: "--entra-all-users-group-ids",
                    message: format!("group {id} does not exist in the tenant"),
                });
            }
        }
    }
    let wanted = preauth::wanted_assignments(resolved, roles, &groups);
    let observed = if sp_created {
        vec![]
    } else {
        g.list_app_role_assigned_to(&sp.id).await?
    };
    let mut managed: BTreeSet<String> = previous_sps.clone();
    managed.extend(
        wanted
            .iter()
            .filter(|w| w.principal_type == "ServicePrincipal")
            .map(|w| w.principal_id.clone()),
    );
    managed.insert(sp.id.clone());
    let (add, remove) =
        preauth::assignment_changes(&wanted, &observed, &managed, p.config.groups_assignment);
    let mut changes = Vec::new();
    for w in &add {
        g.assign_app_role(&NewAppRoleAssignment {
            principal_id: w.principal_id.clone(),
            resource_id: sp.id.clone(),
            app_role_id: w.app_role_id.clone(),
        })
        .await?;
        if w.principal_id != sp.id {
            changes.push(format!(
                "role {} assigned to {}",
                w.app_role_id, w.principal
            ));
        }
    }
    for a in &remove {
        g.remove_app_role_assignment(&sp.id, &a.id).await?;
        changes.push(format!(
            "role {} of {} revoked",
            a.app_role_id,
            a.principal_display_name
                .as_deref()
                .unwrap_or(&a.principal_id)
        ));
    }
    Ok(changes)
}

/// `spec.federatedCredentials` as federated identity credentials on the app (only the ones portvakt
/// made are changed or removed).
async fn federated(
    pass: &Pass<'_, AzureAdApplication>,
    app: &Application,
    app_created: bool,
) -> Result<Vec<String>, Error> {
    let g = &pass.provider.graph;
    let wanted: Vec<FederatedIdentityCredential> = pass
        .obj
        .spec
        .federated_credentials
        .iter()
        .flatten()
        .map(|f| FederatedIdentityCredential {
            id: None,
            name: f.name.clone(),
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audiences: vec![f.audience.clone()],
            description: Some(FEDERATED_DESCRIPTION.into()),
        })
        .collect();
    if wanted.is_empty() && app_created {
        return Ok(vec![]);
    }
    let observed = if app_created {
        vec![]
    } else {
        g.list_federated_credentials(&app.id).await?
    };
    let mut changes = Vec::new();
    for w in &wanted {
        match observed
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(&w.name))
        {
            None => {
                g.create_federated_credential(&app.id, w).await?;
                changes.push(format!("federated credential {} created", w.name));
            }
            Some(o)
                if o.issuer != w.issuer || o.subject != w.subject || o.audiences != w.audiences =>
            {
                g.update_federated_credential(&app.id, w).await?;
                changes.push(format!("federated credential {} updated", w.name));
            }
            Some(_) => {}
        }
    }
    for o in &observed {
        let ours = o.description.as_deref() == Some(FEDERATED_DESCRIPTION);
        if ours && !wanted.iter().any(|w| w.name.eq_ignore_ascii_case(&o.name)) {
            g.delete_federated_credential(&app.id, &o.name).await?;
            changes.push(format!("federated credential {} removed", o.name));
        }
    }
    Ok(changes)
}
