//! Exposed scopes against Digdir: reading what [`crate::core::digdir::scopes::plan`] needs ([`observe`]) and
//! carrying out its changes ([`apply`]).
//!
//! [`apply`] goes through the changes in order and stops at the first failure, except that a
//! consumer Digdir refuses (400 on a grant: an organisation number it does not know) becomes a
//! problem of that scope and the remaining changes go on. Every change is safe to repeat (creates and
//! grants look before they write again; see [`super::client`]), so after a failure or a crash the
//! next observe-plan-apply picks up where this one stopped.

use std::collections::BTreeMap;

use super::client::DigdirClient;
use super::error::DigdirError;
use crate::core::digdir::scopes::{
    self, ExposingResource, Observed, Problem, ResourceProblem, ScopeAction, ScopeChange,
    ScopeSettings,
};

/// The organisation's scopes (`GET /scopes?inactive=true`) and the ACLs of the ones this cluster
/// manages ([`scopes::acls_to_read`]): everything [`scopes::plan`] needs.
pub async fn observe(
    digdir: &DigdirClient,
    settings: &ScopeSettings,
    resources: &[ExposingResource],
) -> Result<Observed, DigdirError> {
    let listed = digdir.list_scopes(true).await?;
    let mut acls = BTreeMap::new();
    for name in scopes::acls_to_read(settings, resources, &listed) {
        let acl = digdir.list_scope_access(&name).await?;
        acls.insert(name, acl);
    }
    Ok(Observed {
        scopes: listed,
        acls,
    })
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// The changes made, in order (for events and metrics).
    pub applied: Vec<ScopeChange>,
    /// Consumers Digdir refused, per scope (the change was not made).
    pub problems: Vec<ResourceProblem>,
    /// The change that failed and why; the changes after it were not tried.
    pub failed: Option<(ScopeChange, DigdirError)>,
}

impl ApplyReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_none()
    }
}

/// Makes `changes` at Digdir, in order (see the module doc). Apply one resource's changes at a time
/// ([`scopes::Plan::changes_for`]) so one resource's failure does not hold up another's.
pub async fn apply<'a>(
    digdir: &DigdirClient,
    changes: impl IntoIterator<Item = &'a ScopeChange>,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    for change in changes {
        let name = change.scope.as_str();
        let outcome = match &change.action {
            ScopeAction::Create { registration } => {
                digdir.create_scope(registration).await.map(drop)
            }
            ScopeAction::Update { registration, .. } | ScopeAction::Reactivate { registration } => {
                digdir.update_scope(name, registration).await.map(drop)
            }
            ScopeAction::Deactivate => digdir.delete_scope(name).await.map(drop),
            ScopeAction::Grant { orgno } | ScopeAction::Regrant { orgno } => {
                match digdir.grant_scope_access(orgno, name).await {
                    Err(e) if e.status() == Some(400) => {
                        tracing::warn!(scope = name, orgno, error = %e, "Digdir refused a consumer");
                        report.problems.push(ResourceProblem {
                            resource: change.resource.clone(),
                            scope: Some(change.scope.clone()),
                            problem: Problem::InvalidConsumer {
                                orgno: orgno.clone(),
                                reason: format!("Digdir refused it: {}", e.message()),
                            },
                        });
                        continue;
                    }
                    other => other.map(drop),
                }
            }
            ScopeAction::Revoke { orgno } => {
                digdir.revoke_scope_access(orgno, name).await.map(drop)
            }
        };
        match outcome {
            Ok(()) => report.applied.push(change.clone()),
            Err(e) => {
                report.failed = Some((change.clone(), e));
                break;
            }
        }
    }
    report
}
