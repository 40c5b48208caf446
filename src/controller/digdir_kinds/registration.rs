//! Step: the client registration at Digdir. Found by `status.clientID`, else adopted by description
//! and integration type (from the shared index: no list per resource), else created; a PUT only when
//! the registration differs from the desired one. The client ID is written to status at once, before
//! anything else, so a crash never leads to a second client.
//!
//! - After a create whose outcome is unknown, no second create is decided until the first one has
//!   had time to land ([`super::registry::Lookup::Uncertain`]); the pass waits (`Ready=False`,
//!   `Pending`) instead.
//! - Several active clients with this resource's identity (a late answer, a second operator, a copy
//!   made by hand): the one the status names is kept (else the oldest); the others are deactivated,
//!   with an event and a log line — except one whose client ID is in a Secret of this resource that a
//!   workload references.

use std::collections::BTreeSet;

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::pipeline::SecretsView;
use super::registry::Lookup;
use super::{DigdirResource, ScopeAccess};
use crate::controller::pass::Pass;
use crate::controller::{Counters, Error};
use crate::core::digdir::registration::{self as creg};
use crate::core::digdir::scopes as cscopes;
use crate::core::digdir::status::{self as cstatus, events};
use crate::core::digdir::{DigdirKind, ScopeCacheUse, scope_cache_stale};
use crate::crd::DigdiratorStatus;
use crate::digdir::{AccessState, ClientRegistration, DigdirError};

/// Event reason: a second client with the resource's identity was deactivated (or kept, in use).
pub const DUPLICATE_REGISTRATION: &str = "DuplicateRegistration";

/// What the registration step established.
pub(crate) struct Registration {
    pub client_id: String,
    /// Maskinporten: consumed scopes without access (`None` when not checked).
    pub invalid_scopes: Option<Vec<String>>,
    pub created: bool,
    /// Fields a PUT changed.
    pub updated: Vec<&'static str>,
}

impl Registration {
    /// The registration is left alone this pass (status is current).
    pub fn unchanged(client_id: String) -> Self {
        Self {
            client_id,
            invalid_scopes: None,
            created: false,
            updated: Vec::new(),
        }
    }
}

/// Whether a client ID is one Digdir could have issued (a UUID-like token; never empty).
pub(crate) fn well_formed_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':')
}

fn unexpected(method: &str, path: &str, problem: impl Into<String>) -> Error {
    Error::Digdir(DigdirError::Decode {
        method: method.into(),
        path: path.into(),
        problem: problem.into(),
    })
}

/// The active clients with this resource's identity, from the index (for deletion and `--observe`).
pub(crate) async fn find_ids<K: DigdirResource>(
    pass: &Pass<'_, K>,
    desc: &str,
) -> Result<Vec<String>, Error> {
    let p = pass.provider;
    match p
        .registrations
        .find(&p.client, desc, pass.obj.integration_type())
        .await?
    {
        Lookup::Found(ids) => Ok(ids),
        Lookup::Absent => Ok(Vec::new()),
        Lookup::Uncertain { until } => Err(wait_for_create(pass, until)),
    }
}

fn wait_for_create<K: DigdirResource>(pass: &Pass<'_, K>, until: Timestamp) -> Error {
    let now = pass.shared.clock.now();
    let retry_in = now
        .duration_until(until)
        .try_into()
        .unwrap_or(std::time::Duration::ZERO)
        .max(std::time::Duration::from_millis(200));
    Error::Wait {
        message: format!(
            "An earlier create of this client at Digdir got no clear answer; waiting until {} to learn whether it went through before creating it again",
            Timestamp::from_second(until.as_second()).unwrap_or(until)
        ),
        retry_in,
    }
}

/// Valid and invalid consumed scopes, with digdirator's rule: a scope is usable when access to it is
/// APPROVED for the organisation or it is open to all; anything unknown is not. The cache is used as
/// [`scope_cache_stale`] decides for `usage`.
pub(crate) async fn check_scopes<K: DigdirResource>(
    pass: &Pass<'_, K>,
    scopes: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    check_scopes_for(
        pass.provider,
        &pass.shared.clock,
        scopes,
        ScopeCacheUse::Reconcile,
    )
    .await
}

/// [`check_scopes`] without a pass (the periodic pass uses the cache as it is).
pub(crate) async fn check_scopes_for(
    p: &super::DigdirProvider,
    clock: &crate::clock::Clock,
    scopes: &[String],
    usage: ScopeCacheUse,
) -> Result<(Vec<String>, Vec<String>), Error> {
    if scopes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut cache = p.scope_access.lock().await;
    let now = clock.now();
    let known = cache.as_ref().map(|c| (c.fetched, &c.approved, &c.open));
    if scope_cache_stale(known, scopes, now, usage) {
        let approved: BTreeSet<String> = p
            .client
            .list_access_granted_to_us()
            .await?
            .into_iter()
            .filter(|a| a.state == AccessState::Approved)
            .map(|a| a.scope)
            .collect();
        let open = p
            .client
            .list_open_scopes()
            .await?
            .into_iter()
            .filter(|s| s.accessible_for_all)
            .map(|s| s.full_name())
            .collect();
        *cache = Some(ScopeAccess {
            fetched: now,
            approved,
            open,
        });
    }
    let c = cache
        .as_ref()
        .ok_or_else(|| Error::Internal("the scope cache is empty after a fill".into()))?;
    Ok(scopes
        .iter()
        .cloned()
        .partition(|s| c.approved.contains(s) || c.open.contains(s)))
}

/// A Maskinporten client is registered with its `usable` consumed scopes, or else the default scope:
/// Digdir refuses a client without any. Without either, the error names the setting.
pub(super) fn require_client_scope(
    p: &super::DigdirProvider,
    usable: &[String],
) -> Result<(), Error> {
    let default = p.config.maskinporten_default_scope.as_deref();
    cscopes::client_scopes(usable, default.unwrap_or_default())
        .map(drop)
        .map_err(|_| Error::Configuration {
            setting: cscopes::DEFAULT_SCOPE_SETTING,
            message: "the client consumes no scope the organisation may use \
                      (spec.scopes.consumes), and Digdir refuses a Maskinporten client without one: \
                      set it to a scope your organisation owns"
                .into(),
        })
}

/// Checks before anything is written: a MaskinportenClient that consumes nothing at all needs the
/// default scope (one whose consumed scopes turn out unusable is told in [`sync`]).
pub(super) fn validate<K: DigdirResource>(obj: &K, p: &super::DigdirProvider) -> Result<(), Error> {
    match obj.consumed_scopes() {
        Some(consumed) if consumed.is_empty() => require_client_scope(p, &[]),
        _ => Ok(()),
    }
}

/// Step: the registration (see the module documentation).
pub(crate) async fn sync<K: DigdirResource>(
    pass: &Pass<'_, K>,
    view: &SecretsView,
    status: &mut DigdiratorStatus,
) -> Result<Registration, Error> {
    let obj = pass.obj;
    let p = pass.provider;
    let desc = creg::description(&p.config.cluster_name, &pass.namespace, &pass.name);
    let (valid, invalid_scopes) = match obj.consumed_scopes() {
        Some(scopes) => {
            let (v, i) = check_scopes(pass, &scopes).await?;
            (v, Some(i))
        }
        None => (Vec::new(), None),
    };
    if obj.consumed_scopes().is_some() {
        require_client_scope(p, &valid)?;
    }
    let payload = obj.payload(&p.config, &valid);
    let body: ClientRegistration = serde_json::from_value(payload.to_json())
        .map_err(|e| Error::Internal(format!("encoding the registration payload: {e}")))?;

    let mut observed: Option<ClientRegistration> = None;
    if let Some(id) = status.client_id.clone().filter(|s| !s.is_empty()) {
        match p.client.get_client(&id).await {
            Ok(c) if c.is_active() => {
                p.registrations.record(&c);
                observed = Some(c);
            }
            Ok(_) => p.registrations.forget(&id),
            Err(e) if e.is_not_found() => p.registrations.forget(&id),
            Err(e) => return Err(e.into()),
        }
    }
    // Adoption by description. The index may be stale: a client it names that is gone makes it
    // list again (once) before anything is decided.
    let mut duplicates: Vec<String> = Vec::new();
    for attempt in 0..2 {
        if observed.is_some() {
            break;
        }
        let ids = match p
            .registrations
            .find(&p.client, &desc, obj.integration_type())
            .await?
        {
            Lookup::Absent => break,
            Lookup::Uncertain { until } => return Err(wait_for_create(pass, until)),
            Lookup::Found(ids) => ids,
        };
        let Some(id) = ids.first().cloned() else {
            break;
        };
        let c = match p.client.get_client(&id).await {
            Ok(c) if c.is_active() || attempt > 0 => c,
            Ok(_) => {
                p.registrations.forget(&id);
                p.registrations.invalidate();
                continue;
            }
            Err(e) if e.is_not_found() && attempt == 0 => {
                p.registrations.forget(&id);
                p.registrations.invalidate();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        p.registrations.record(&c);
        duplicates = ids.into_iter().skip(1).collect();
        pass.publish(
            EventType::Normal,
            events::UPDATED_IN_DIGDIR,
            format!("Client {id} adopted (description {desc})"),
        )
        .await;
        tracing::info!(client_id = %id, "adopted the existing client at Digdir");
        observed = Some(c);
    }
    let mut created = false;
    let mut updated = Vec::new();
    let client_id = match observed {
        Some(c) => {
            let id = c.client_id.clone().unwrap_or_default();
            if c.integration_type.as_str() != payload.integration_type {
                return Err(Error::invalid_spec(
                    "spec.integrationType",
                    format!(
                        "cannot change the integration type of an existing client (Digdir has {}, the spec asks for {})",
                        c.integration_type.as_str(),
                        payload.integration_type
                    ),
                ));
            }
            let diff = creg::differing_fields(&payload, &observed_json(&c));
            if !diff.is_empty() {
                let answer = p.client.update_client(&id, &body).await?;
                p.registrations.record(&with_identity(answer, &body, &id));
                Counters::inc(&pass.shared.counters.client_updates);
                pass.publish(
                    EventType::Normal,
                    events::UPDATED_IN_DIGDIR,
                    format!("Client is updated ({})", diff.join(", ")),
                )
                .await;
                tracing::info!(        client_id = %id, fields = %diff.join(", "), "client updated at Digdir");
                updated = diff;
            }
            id
        }
        None => {
            let answer = match p.client.create_client(&body).await {
                Ok(c) => c,
                Err(e) => {
                    if e.may_land_later() {
                        // It may still land: decide nothing until it has had time to.
                        p.registrations.create_uncertain(
                            &desc,
                            obj.integration_type(),
                            p.create_settle,
                        );
                    } else if e.is_ambiguous() {
                        // It may exist: list again before the next create is decided.
                        p.registrations.invalidate();
                    }
                    return Err(e.into());
                }
            };
            let id = answer
                .client_id
                .clone()
                .filter(|id| well_formed_client_id(id))
                .ok_or_else(|| {
                    // The create may have happened: look before creating again.
                    p.registrations.invalidate();
                    unexpected(
                        "POST",
                        "/clients",
                        format!(
                            "the answer's client_id is {:?}, not a client ID",
                            answer.client_id.as_deref().unwrap_or("missing")
                        ),
                    )
                })?;
            Counters::inc(&pass.shared.counters.client_creates);
            created = true;
            p.registrations.record(&with_identity(answer, &body, &id));
            pass.publish(
                EventType::Normal,
                events::CREATED_IN_DIGDIR,
                "Client is registered".into(),
            )
            .await;
            tracing::info!(    client_id = %id, "client created at Digdir");
            id
        }
    };
    if status.client_id.as_deref() != Some(client_id.as_str()) {
        // Written before anything else, so a crash never leads to a second client. The write says
        // the resource is not Ready for this generation yet (keys and Secret follow).
        status.client_id = Some(client_id.clone());
        let st = cstatus::pending(
            Some(status),
            pass.generation(),
            pass.shared.clock.now(),
            &format!(
                "Client {client_id} registered at Digdir; registering keys and writing the Secret"
            ),
        );
        pass.write_status(&st).await?;
        *status = st;
    }
    if duplicates.is_empty()
        && let Some(Lookup::Found(ids)) = p.registrations.peek(&desc, obj.integration_type())
    {
        duplicates = ids.into_iter().filter(|i| *i != client_id).collect();
    }
    if !duplicates.is_empty() {
        deactivate_duplicates(pass, view, &client_id, &duplicates).await?;
    }
    Ok(Registration {
        client_id,
        invalid_scopes,
        created,
        updated,
    })
}

/// Deactivates the other active clients with this resource's identity, except any whose client ID
/// is held by a Secret of this resource that a workload references.
async fn deactivate_duplicates<K: DigdirResource>(
    pass: &Pass<'_, K>,
    view: &SecretsView,
    keep: &str,
    others: &[String],
) -> Result<(), Error> {
    let p = pass.provider;
    let holders = |id: &str| -> Vec<String> {
        view.managed
            .iter()
            .filter(|s| client_id_in(s, K::KIND).as_deref() == Some(id))
            .filter_map(|s| s.metadata.name.clone())
            .collect()
    };
    let mut refs = None;
    for other in others.iter().filter(|o| o.as_str() != keep) {
        let holding = holders(other);
        if !holding.is_empty() {
            let r = match &refs {
                Some(r) => r,
                None => refs.insert(pass.scan_workloads().await?),
            };
            if let Some(s) = holding.iter().find(|s| r.is_referenced(s)) {
                let note = format!(
                    "Client {other} has the same identity as {keep} but is kept: Secret {s} holds its client ID and a workload uses it"
                );
                tracing::warn!(        duplicate = %other, kept = %keep, secret = %s, "duplicate client kept: in use");
                pass.publish(EventType::Warning, DUPLICATE_REGISTRATION, note)
                    .await;
                continue;
            }
        }
        match p.client.delete_client(other).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        p.registrations.forget(other);
        Counters::inc(&pass.shared.counters.client_deletes);
        tracing::warn!(duplicate = %other, kept = %keep, "duplicate client deactivated at Digdir");
        pass.publish(
            EventType::Warning,
            DUPLICATE_REGISTRATION,
            format!("Client {other} had the same identity as {keep} and was deactivated at Digdir"),
        )
        .await;
    }
    Ok(())
}

/// The client ID an app Secret of `kind` holds.
fn client_id_in(s: &k8s_openapi::api::core::v1::Secret, kind: DigdirKind) -> Option<String> {
    let key = format!("{}_CLIENT_ID", kind.env_prefix());
    let raw = s.data.as_ref()?.get(&key)?;
    String::from_utf8(raw.0.clone()).ok()
}

pub(crate) fn observed_json(c: &ClientRegistration) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_default()
}

/// Digdir's answer to a create or update, with the identity fields of what was sent when the answer
/// leaves them out (so the index always knows the client).
fn with_identity(
    mut c: ClientRegistration,
    sent: &ClientRegistration,
    id: &str,
) -> ClientRegistration {
    if c.client_id.as_deref().is_none_or(str::is_empty) {
        c.client_id = Some(id.to_string());
    }
    if c.description.is_empty() {
        c.description = sent.description.clone();
        c.integration_type = sent.integration_type.clone();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_looking_client_id_is_taken() {
        assert!(well_formed_client_id(
            "0b1f2a6e-3c1d-4a63-9c7e-1f5b0e3d2a11"
        ));
        for bad in ["", "a/b", "x y", &"a".repeat(200)] {
            assert!(!well_formed_client_id(bad), "{bad:?}");
        }
    }
}
