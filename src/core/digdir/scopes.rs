//! Scopes of MaskinportenClients, decided without IO: which exposed scopes to create, update,
//! reactivate or deactivate at Digdir and whose access to grant or revoke ([`plan`]), and which
//! consumed scopes a client may register ([`consumed_scopes`], [`client_scopes`]).
//!
//! Exposed scopes (`spec.scopes.exposes`), in the manner of digdirator's `pkg/digdir/scopes`:
//! - A scope's name is `<prefix>:<product><separator><name>` ([`full_name`]); the separator is
//!   `spec.separator` when set, else `/` when the name contains `/`, else `:`.
//! - Defaults: `atMaxAge` 30, `allowedIntegrations` `[maskinporten]`, visibility public, token type
//!   self-contained, not accessible for all; `delegationSource` is sent as its issuer (from Digdir's
//!   `/delegationsources`).
//! - The owner is recorded in the scope's description as digdirator records it,
//!   `<product> - <cluster>:<namespace>:<name>` ([`scope_description`]), so ownership survives a
//!   switch-over in either direction. One organisation often runs several clusters, and Digdir lists
//!   all of its scopes: only a scope whose description names this cluster is this instance's to
//!   update, deactivate, report or repair. A scope whose description names no owner (made by hand) is
//!   adopted by the resource that exposes it. A scope named by another resource that still exposes
//!   it (here or in another cluster) is left alone and the second resource gets a problem naming the
//!   owner; the two never fight. A scope whose owner in this cluster no longer exposes it (or is
//!   gone) passes to the resource that exposes it now.
//! - Enabled scopes are created when missing, updated when a managed field differs
//!   ([`SCOPE_FIELDS`]), reactivated when inactive (Digdir answers a POST of a deactivated scope
//!   with 409). A scope whose `enabled` is false is deactivated; a missing disabled scope is not
//!   created.
//! - A scope removed from the spec stays active (consumers depend on it) and is reported as
//!   [`Orphan`]. When a resource is deleted its enabled scopes stay and its disabled ones are
//!   deactivated (also under `digdir.nais.io/preserve`, which spares only the client).
//! - Consumers: every listed orgno is granted, a DENIED one is granted again, an orgno no longer
//!   listed is revoked (a DENIED entry is left as it is). An orgno that is not nine digits is a
//!   per-scope problem; the other grants go on.
//!
//! Several clusters of one organisation, two resources claiming one name, and a crash between any two
//! changes all converge: the plan depends only on what Digdir lists, and applying it then planning
//! again yields no change.
//!
//! The plan reads and produces Digdir's wire types ([`super::wire`]: plain data, no IO), so a
//! planned registration is byte for byte the body digdirator would send. Reading and applying are
//! in `crate::digdir::scopes`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::wire::{
    AccessState, ConsumerRegistration, DelegationSource as DigdirDelegationSource, IntegrationType,
    ScopeRegistration, TokenType, Visibility,
};
use crate::crd::{ExposedScope, MaskinportenClientSpec, ScopeVisibility};

/// `atMaxAge` when the spec has none (seconds).
pub const DEFAULT_AT_MAX_AGE: i64 = 30;
/// The setting that names the scope a client without usable scopes is registered with.
pub const DEFAULT_SCOPE_SETTING: &str = "--maskinporten-default-scope";
/// The scope fields portvakt manages, in the order an update names them.
pub const SCOPE_FIELDS: &[&str] = &[
    "description",
    "accessible_for_all",
    "allowed_integration_types",
    "at_max_age",
    "delegation_source",
    "visibility",
    "token_type",
    "requires_user_consent",
    "requires_user_authentication",
    "requires_pseudonymous_tokens",
];

/// A resource's identity, `<cluster>:<namespace>:<name>` (as in a client's description).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceId {
    pub fn new(cluster: &str, namespace: &str, name: &str) -> Self {
        Self {
            cluster: cluster.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.cluster, self.namespace, self.name)
    }
}

/// One MaskinportenClient of this cluster as the plan sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExposingResource {
    pub namespace: String,
    pub name: String,
    /// `spec.scopes.exposes`, in spec order.
    pub exposes: Vec<ExposedScope>,
    /// The resource has a deletion timestamp (its finalizer runs).
    pub deleting: bool,
}

impl ExposingResource {
    pub fn from_spec(
        namespace: &str,
        name: &str,
        spec: &MaskinportenClientSpec,
        deleting: bool,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            exposes: spec
                .scopes
                .as_ref()
                .and_then(|s| s.exposes.clone())
                .unwrap_or_default(),
            deleting,
        }
    }
}

/// What the plan needs to know besides the resources and Digdir's listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSettings {
    /// This instance's cluster name (the `<cluster>` of every identity).
    pub cluster_name: String,
    /// The organisation's scope prefix new scopes are created under (e.g. `nav`).
    pub prefix: String,
    /// Delegation source name → issuer, from `GET /delegationsources`.
    pub delegation_sources: BTreeMap<String, String>,
}

impl ScopeSettings {
    pub fn new(cluster_name: &str, prefix: &str) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            prefix: prefix.into(),
            delegation_sources: BTreeMap::new(),
        }
    }

    /// Sets the delegation sources from Digdir's list.
    pub fn with_delegation_sources(mut self, sources: &[DigdirDelegationSource]) -> Self {
        self.delegation_sources = sources
            .iter()
            .map(|s| (s.name.clone(), s.issuer.clone()))
            .collect();
        self
    }
}

/// What Digdir holds: the organisation's scopes (`GET /scopes?inactive=true`) and the ACLs read so
/// far (`GET /scopes/access?scope=`), by full scope name. Read the ACLs [`acls_to_read`] names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub scopes: Vec<ScopeRegistration>,
    pub acls: BTreeMap<String, Vec<ConsumerRegistration>>,
}

/// One change to make at Digdir, for the resource that owns the scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeChange {
    pub resource: ResourceId,
    /// The full scope name (`prefix:subscope`).
    pub scope: String,
    pub action: ScopeAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScopeAction {
    /// `POST /scopes` with this body; consumer grants follow as their own changes.
    Create { registration: ScopeRegistration },
    /// `PUT /scopes?scope=` with this body: `fields` (names from [`SCOPE_FIELDS`]) differ.
    Update {
        registration: ScopeRegistration,
        fields: Vec<&'static str>,
    },
    /// `PUT /scopes?scope=` with `active: true`: the scope was deactivated.
    Reactivate { registration: ScopeRegistration },
    /// `DELETE /scopes?scope=`: the spec disables the scope.
    Deactivate,
    /// `PUT /scopes/access/{orgno}?scope=`: a listed consumer without access.
    Grant { orgno: String },
    /// The same PUT for a consumer whose access is DENIED.
    Regrant { orgno: String },
    /// `DELETE /scopes/access/{orgno}?scope=`: a consumer no longer listed.
    Revoke { orgno: String },
}

impl ScopeAction {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Update { .. } => "update",
            Self::Reactivate { .. } => "reactivate",
            Self::Deactivate => "deactivate",
            Self::Grant { .. } => "grant",
            Self::Regrant { .. } => "regrant",
            Self::Revoke { .. } => "revoke",
        }
    }

    /// The consumer a grant, re-grant or revoke is about.
    pub fn orgno(&self) -> Option<&str> {
        match self {
            Self::Grant { orgno } | Self::Regrant { orgno } | Self::Revoke { orgno } => Some(orgno),
            _ => None,
        }
    }
}

impl fmt::Display for ScopeChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scope;
        match &self.action {
            ScopeAction::Create { .. } => write!(f, "create scope `{s}`"),
            ScopeAction::Update { fields, .. } => {
                write!(f, "update scope `{s}` ({})", fields.join(", "))
            }
            ScopeAction::Reactivate { .. } => write!(f, "reactivate scope `{s}`"),
            ScopeAction::Deactivate => write!(f, "deactivate scope `{s}`"),
            ScopeAction::Grant { orgno } => {
                write!(f, "grant organisation {orgno} access to `{s}`")
            }
            ScopeAction::Regrant { orgno } => write!(
                f,
                "grant organisation {orgno} access to `{s}` again (it was DENIED)"
            ),
            ScopeAction::Revoke { orgno } => {
                write!(f, "revoke organisation {orgno}'s access to `{s}`")
            }
        }
    }
}

/// Something about a resource's exposed scopes that portvakt cannot or will not do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The scope's description names another resource that still exposes it.
    #[error("owned by {owner} (the scope's description names it); this resource leaves it alone")]
    OwnedByOther { owner: ResourceId },
    /// A consumer that cannot be granted access (not nine digits, or refused by Digdir).
    #[error("organisation {orgno} cannot be granted access: {reason}")]
    InvalidConsumer { orgno: String, reason: String },
    #[error("{field}: delegation source `{name}` is not one Digdir lists ({known})")]
    UnknownDelegationSource {
        field: String,
        name: String,
        known: String,
    },
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    /// No scope prefix is configured: no scope can be named.
    #[error(
        "no scope prefix is configured (the prefix Digdir assigned to the organisation, e.g. `nav`)"
    )]
    NoScopePrefix,
    /// Two entries of one resource name the same scope (the later one is used).
    #[error("{field} names the same scope as {later}; {later} is used")]
    Duplicate { field: String, later: String },
}

/// A problem of one resource, about one scope where it has a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceProblem {
    pub resource: ResourceId,
    pub scope: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for ResourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(s) => write!(f, "scope `{s}`: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

/// A resource takes over a scope: one made by hand (`from: None`), or one whose owner in this
/// cluster no longer exposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adoption {
    pub resource: ResourceId,
    pub scope: String,
    pub from: Option<ResourceId>,
}

/// An active scope of this cluster that no resource exposes any more: left active, reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub scope: String,
    pub owner: ResourceId,
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// In order: per resource and exposed entry, the scope change first, then its ACL changes.
    pub changes: Vec<ScopeChange>,
    pub problems: Vec<ResourceProblem>,
    pub adopted: Vec<Adoption>,
    pub orphaned: Vec<Orphan>,
    /// Managed scopes whose ACL was not in [`Observed::acls`]: no ACL change was planned for them.
    pub unread_acls: Vec<String>,
}

impl Plan {
    /// Nothing to change at Digdir.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn changes_for<'a>(&'a self, id: &'a ResourceId) -> impl Iterator<Item = &'a ScopeChange> {
        self.changes.iter().filter(move |c| &c.resource == id)
    }

    pub fn problems_for<'a>(
        &'a self,
        id: &'a ResourceId,
    ) -> impl Iterator<Item = &'a ResourceProblem> {
        self.problems.iter().filter(move |p| &p.resource == id)
    }
}

/// The separator between product and name: `spec.separator`, else `/` when the name has one, else `:`.
pub fn separator(exposed: &ExposedScope) -> &str {
    match exposed.separator.as_deref() {
        Some(s) if !s.is_empty() => s,
        _ if exposed.name.contains('/') => "/",
        _ => ":",
    }
}

/// `<product><separator><name>`.
pub fn subscope(exposed: &ExposedScope) -> String {
    format!("{}{}{}", exposed.product, separator(exposed), exposed.name)
}

/// `<prefix>:<product><separator><name>`.
pub fn full_name(prefix: &str, exposed: &ExposedScope) -> String {
    format!("{prefix}:{}", subscope(exposed))
}

/// `<product> - <cluster>:<namespace>:<name>`, digdirator's scope description.
pub fn scope_description(product: &str, owner: &ResourceId) -> String {
    format!("{product} - {owner}")
}

/// The owner a scope description names, if it has digdirator's form.
pub fn parse_owner(description: &str) -> Option<ResourceId> {
    let (product, urn) = description.split_once(" - ")?;
    if product.is_empty()
        || !product
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return None;
    }
    let mut parts = urn.rsplitn(3, ':');
    let name = parts.next()?;
    let namespace = parts.next()?;
    let cluster = parts.next()?;
    let k8s_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    };
    if cluster.trim().is_empty() || cluster.contains(char::is_whitespace) {
        return None;
    }
    if !k8s_name(namespace) || !k8s_name(name) {
        return None;
    }
    Some(ResourceId::new(cluster, namespace, name))
}

/// The registration portvakt wants for `exposed` (entry `index` of `owner`'s spec).
fn registration(
    settings: &ScopeSettings,
    owner: &ResourceId,
    index: usize,
    exposed: &ExposedScope,
) -> Result<ScopeRegistration, Problem> {
    let field = |f: &str| format!("spec.scopes.exposes[{index}].{f}");
    let delegation_source = match exposed.delegation_source {
        None => None,
        Some(source) => match settings.delegation_sources.get(source.as_str()) {
            Some(issuer) if !issuer.is_empty() => Some(issuer.clone()),
            _ => {
                let known: Vec<&str> = settings
                    .delegation_sources
                    .keys()
                    .map(String::as_str)
                    .collect();
                return Err(Problem::UnknownDelegationSource {
                    field: field("delegationSource"),
                    name: source.as_str().into(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        },
    };
    let allowed = match &exposed.allowed_integrations {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|t| IntegrationType::from(t.as_str()))
            .collect(),
        _ => vec![IntegrationType::Maskinporten],
    };
    Ok(ScopeRegistration {
        accessible_for_all: exposed.accessible_for_all.unwrap_or(false),
        active: exposed.enabled,
        allowed_integration_types: allowed,
        at_max_age: exposed.at_max_age.unwrap_or(DEFAULT_AT_MAX_AGE),
        authorization_max_lifetime: None,
        delegation_source,
        description: scope_description(&exposed.product, owner),
        long_description: None,
        name: String::new(),
        owner_orgno: None,
        prefix: settings.prefix.clone(),
        requires_pseudonymous_tokens: false,
        requires_user_authentication: false,
        requires_user_consent: false,
        subscope: subscope(exposed),
        token_type: TokenType::SelfContained,
        visibility: match exposed.visibility {
            Some(ScopeVisibility::Private) => Visibility::Private,
            _ => Visibility::Public,
        },
        created: None,
        last_updated: None,
    })
}

/// The spec checks the plan depends on (the CRD schema checks the rest).
fn check_spec(index: usize, exposed: &ExposedScope) -> Result<(), Problem> {
    let invalid = |f: &str, message: &str| Problem::InvalidSpec {
        field: format!("spec.scopes.exposes[{index}].{f}"),
        message: message.into(),
    };
    if exposed.product.is_empty() {
        return Err(invalid("product", "must not be empty"));
    }
    if exposed.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if let Some(sep) = &exposed.separator
        && !matches!(sep.as_str(), "/" | ":" | ".")
    {
        return Err(invalid(
            "separator",
            "must be one of \"/\", \":\" and \".\"",
        ));
    }
    Ok(())
}

/// The managed fields that differ between Digdir's `current` and the `desired` registration.
pub fn differing_fields(
    current: &ScopeRegistration,
    desired: &ScopeRegistration,
) -> Vec<&'static str> {
    let types = |s: &ScopeRegistration| -> BTreeSet<String> {
        s.allowed_integration_types
            .iter()
            .map(|t| t.as_str().to_string())
            .collect()
    };
    let source = |s: &ScopeRegistration| s.delegation_source.clone().filter(|d| !d.is_empty());
    let mut out = Vec::new();
    for &field in SCOPE_FIELDS {
        let differs = match field {
            "description" => current.description != desired.description,
            "accessible_for_all" => current.accessible_for_all != desired.accessible_for_all,
            "allowed_integration_types" => types(current) != types(desired),
            "at_max_age" => current.at_max_age != desired.at_max_age,
            "delegation_source" => source(current) != source(desired),
            "visibility" => current.visibility != desired.visibility,
            "token_type" => current.token_type != desired.token_type,
            "requires_user_consent" => {
                current.requires_user_consent != desired.requires_user_consent
            }
            "requires_user_authentication" => {
                current.requires_user_authentication != desired.requires_user_authentication
            }
            "requires_pseudonymous_tokens" => {
                current.requires_pseudonymous_tokens != desired.requires_pseudonymous_tokens
            }
            _ => false,
        };
        if differs {
            out.push(field);
        }
    }
    out
}

/// One valid exposed entry.
struct Entry<'a> {
    resource: usize,
    index: usize,
    exposed: &'a ExposedScope,
    name: String,
    registration: ScopeRegistration,
}

/// The entries a resource manages, with the existing scope where Digdir has one.
struct Managed<'a> {
    entry: Entry<'a>,
    existing: Option<&'a ScopeRegistration>,
    deleting: bool,
}

struct Resolution<'a> {
    managed: Vec<Managed<'a>>,
    problems: Vec<ResourceProblem>,
    adopted: Vec<Adoption>,
    /// Every full name some entry names (valid or not), with the resources naming it.
    named: BTreeMap<String, BTreeSet<usize>>,
}

fn resolve<'a>(
    settings: &ScopeSettings,
    resources: &'a [ExposingResource],
    listed: &'a [ScopeRegistration],
) -> Resolution<'a> {
    let ids: Vec<ResourceId> = resources
        .iter()
        .map(|r| ResourceId::new(&settings.cluster_name, &r.namespace, &r.name))
        .collect();
    let by_name: BTreeMap<String, &ScopeRegistration> =
        listed.iter().map(|s| (s.full_name(), s)).collect();
    let mut problems = Vec::new();
    let mut named: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut entries: Vec<Entry<'a>> = Vec::new();
    if settings.prefix.trim().is_empty() {
        for (r, resource) in resources.iter().enumerate() {
            if !resource.exposes.is_empty() {
                problems.push(ResourceProblem {
                    resource: ids[r].clone(),
                    scope: None,
                    problem: Problem::NoScopePrefix,
                });
            }
        }
        return Resolution {
            managed: Vec::new(),
            problems,
            adopted: Vec::new(),
            named,
        };
    }

    for (r, resource) in resources.iter().enumerate() {
        let mut latest: BTreeMap<String, usize> = BTreeMap::new();
        for (index, exposed) in resource.exposes.iter().enumerate() {
            if !exposed.product.is_empty() && !exposed.name.is_empty() {
                named
                    .entry(full_name(&settings.prefix, exposed))
                    .or_default()
                    .insert(r);
            }
            let checked = check_spec(index, exposed)
                .and_then(|()| registration(settings, &ids[r], index, exposed));
            let registration = match checked {
                Ok(reg) => reg,
                Err(problem) => {
                    problems.push(ResourceProblem {
                        resource: ids[r].clone(),
                        scope: None,
                        problem,
                    });
                    continue;
                }
            };
            let name = full_name(&settings.prefix, exposed);
            if let Some(earlier) = latest.insert(name.clone(), entries.len()) {
                let dropped = &entries[earlier];
                problems.push(ResourceProblem {
                    resource: ids[r].clone(),
                    scope: Some(name.clone()),
                    problem: Problem::Duplicate {
                        field: format!("spec.scopes.exposes[{}]", dropped.index),
                        later: format!("spec.scopes.exposes[{index}]"),
                    },
                });
            }
            entries.push(Entry {
                resource: r,
                index,
                exposed,
                name,
                registration,
            });
        }
        // Keep only the last entry per name (digdirator: the last one wins).
        let keep: BTreeSet<usize> = latest.into_values().collect();
        let mut position = 0;
        entries.retain(|e| {
            let here = position;
            position += 1;
            e.resource != r || keep.contains(&here)
        });
    }

    // A resource still holds a name while any entry of its spec (deleting or not, valid or not)
    // names it: a spec that is wrong for a while does not hand its scopes to someone else.
    let holds = |r: usize, name: &str| named.get(name).is_some_and(|h| h.contains(&r));
    let resource_of = |id: &ResourceId| ids.iter().position(|i| i == id);

    // The claimants of each name, best first: non-deleting resources, enabled before disabled
    // (so a disabled copy never keeps a scope from being created), then by identity.
    let mut claimants: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if !resources[e.resource].deleting {
            claimants.entry(e.name.clone()).or_default().push(i);
        }
    }
    for list in claimants.values_mut() {
        list.sort_by_key(|i| (!entries[*i].exposed.enabled, &ids[entries[*i].resource]));
    }

    let mut winner: BTreeMap<usize, Option<Adoption>> = BTreeMap::new();
    for (name, list) in &claimants {
        let existing = by_name.get(name).copied();
        let owner = existing.and_then(|s| parse_owner(&s.description));
        let first = list[0];
        let first_id = &ids[entries[first].resource];
        let (chosen, adoption, blocker) = match &owner {
            Some(o) if o.cluster != settings.cluster_name => (None, None, Some(o.clone())),
            Some(o) => match resource_of(o) {
                Some(r) if holds(r, name) => {
                    let pick = list.iter().copied().find(|i| entries[*i].resource == r);
                    (pick, None, Some(o.clone()))
                }
                _ => (
                    Some(first),
                    Some(Adoption {
                        resource: first_id.clone(),
                        scope: name.clone(),
                        from: Some(o.clone()),
                    }),
                    Some(first_id.clone()),
                ),
            },
            None if existing.is_some() => (
                Some(first),
                Some(Adoption {
                    resource: first_id.clone(),
                    scope: name.clone(),
                    from: None,
                }),
                Some(first_id.clone()),
            ),
            None => (Some(first), None, Some(first_id.clone())),
        };
        if let Some(c) = chosen {
            // A disabled entry may deactivate what it takes over, but does not make it its own.
            let adoption = adoption.filter(|_| entries[c].exposed.enabled);
            winner.insert(c, adoption);
        }
        for &i in list {
            if Some(i) == chosen {
                continue;
            }
            if let Some(owner) = &blocker {
                problems.push(ResourceProblem {
                    resource: ids[entries[i].resource].clone(),
                    scope: Some(name.clone()),
                    problem: Problem::OwnedByOther {
                        owner: owner.clone(),
                    },
                });
            }
        }
    }

    let mut managed = Vec::new();
    let mut adopted = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let existing = by_name.get(&entry.name).copied();
        let deleting = resources[entry.resource].deleting;
        if deleting {
            // Finalizing: only scopes this resource owns, or hand-made ones, are touched.
            let owner = existing.and_then(|s| parse_owner(&s.description));
            let mine = owner.as_ref().is_none_or(|o| *o == ids[entry.resource]);
            if existing.is_some() && mine {
                managed.push(Managed {
                    entry,
                    existing,
                    deleting,
                });
            }
            continue;
        }
        if let Some(adoption) = winner.remove(&i) {
            adopted.extend(adoption);
            managed.push(Managed {
                entry,
                existing,
                deleting,
            });
        }
    }
    Resolution {
        managed,
        problems,
        adopted,
        named,
    }
}

/// The scopes whose ACL the plan needs (`GET /scopes/access?scope=` each): the existing scopes
/// this cluster manages and keeps enabled.
pub fn acls_to_read(
    settings: &ScopeSettings,
    resources: &[ExposingResource],
    listed: &[ScopeRegistration],
) -> Vec<String> {
    resolve(settings, resources, listed)
        .managed
        .iter()
        .filter(|m| !m.deleting && m.entry.exposed.enabled && m.existing.is_some())
        .map(|m| m.entry.name.clone())
        .collect()
}

fn is_orgno(s: &str) -> bool {
    s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The changes that make Digdir hold what `resources` expose (see the module doc for the rules).
///
/// `resources` must be every MaskinportenClient of this cluster (from a synced cache): a resource
/// left out looks gone, and its scopes pass to whoever else exposes them.
pub fn plan(settings: &ScopeSettings, resources: &[ExposingResource], observed: &Observed) -> Plan {
    let resolution = resolve(settings, resources, &observed.scopes);
    let mut plan = Plan {
        problems: resolution.problems,
        adopted: resolution.adopted,
        ..Plan::default()
    };
    let ids: Vec<ResourceId> = resources
        .iter()
        .map(|r| ResourceId::new(&settings.cluster_name, &r.namespace, &r.name))
        .collect();
    let mut managed = resolution.managed;
    managed.sort_by_key(|m| (m.entry.resource, m.entry.index));

    for m in &managed {
        let id = &ids[m.entry.resource];
        let name = &m.entry.name;
        let exposed = m.entry.exposed;
        let change = |action| ScopeChange {
            resource: id.clone(),
            scope: name.clone(),
            action,
        };
        if m.deleting {
            if !exposed.enabled && m.existing.is_some_and(|s| s.active) {
                plan.changes.push(change(ScopeAction::Deactivate));
            }
            continue;
        }
        let registration = m.entry.registration.clone();
        let acl: Option<&[ConsumerRegistration]> = match m.existing {
            None if !exposed.enabled => continue,
            None => {
                plan.changes
                    .push(change(ScopeAction::Create { registration }));
                Some(&[])
            }
            Some(current) if !exposed.enabled => {
                if current.active {
                    plan.changes.push(change(ScopeAction::Deactivate));
                }
                continue;
            }
            Some(current) => {
                if !current.active {
                    plan.changes
                        .push(change(ScopeAction::Reactivate { registration }));
                } else {
                    let fields = differing_fields(current, &registration);
                    if !fields.is_empty() {
                        plan.changes.push(change(ScopeAction::Update {
                            registration,
                            fields,
                        }));
                    }
                }
                observed.acls.get(name).map(Vec::as_slice)
            }
        };
        let Some(acl) = acl else {
            plan.unread_acls.push(name.clone());
            continue;
        };
        let mut wanted = BTreeSet::new();
        for consumer in exposed.consumers.iter().flatten() {
            if is_orgno(&consumer.orgno) {
                wanted.insert(consumer.orgno.as_str());
            } else {
                plan.problems.push(ResourceProblem {
                    resource: id.clone(),
                    scope: Some(name.clone()),
                    problem: Problem::InvalidConsumer {
                        orgno: consumer.orgno.clone(),
                        reason: "an organisation number has nine digits".into(),
                    },
                });
            }
        }
        // The strongest state per consumer (Digdir may list history next to the current entry).
        let mut held: BTreeMap<&str, &AccessState> = BTreeMap::new();
        for entry in acl {
            let rank = |s: &AccessState| match s {
                AccessState::Approved => 3,
                AccessState::Requested => 2,
                AccessState::Denied => 1,
                AccessState::Other(_) => 0,
            };
            let slot = held
                .entry(entry.consumer_orgno.as_str())
                .or_insert(&entry.state);
            if rank(&entry.state) > rank(slot) {
                *slot = &entry.state;
            }
        }
        for orgno in &wanted {
            match held.get(orgno) {
                Some(AccessState::Approved) => {}
                Some(AccessState::Denied) => plan.changes.push(change(ScopeAction::Regrant {
                    orgno: orgno.to_string(),
                })),
                _ => plan.changes.push(change(ScopeAction::Grant {
                    orgno: orgno.to_string(),
                })),
            }
        }
        for (orgno, state) in &held {
            if !wanted.contains(orgno) && **state != AccessState::Denied {
                plan.changes.push(change(ScopeAction::Revoke {
                    orgno: orgno.to_string(),
                }));
            }
        }
    }

    let adopted: BTreeSet<&str> = plan.adopted.iter().map(|a| a.scope.as_str()).collect();
    for scope in &observed.scopes {
        let name = scope.full_name();
        if !scope.active || resolution.named.contains_key(&name) || adopted.contains(name.as_str())
        {
            continue;
        }
        if let Some(owner) = parse_owner(&scope.description)
            && owner.cluster == settings.cluster_name
        {
            plan.orphaned.push(Orphan { scope: name, owner });
        }
    }
    plan
}

/// Consumed scopes split by whether the organisation may use them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumedScopes {
    pub usable: Vec<String>,
    pub unusable: Vec<String>,
}

/// Which of `consumed` the organisation may use: those it has APPROVED access to
/// (`GET /scopes/access/all`) and those accessible to all (`GET /scopes/all?accessible_for_all=true`).
/// Order is kept, duplicates dropped.
pub fn consumed_scopes(
    consumed: &[String],
    granted_to_us: &[ConsumerRegistration],
    open: &[ScopeRegistration],
) -> ConsumedScopes {
    let approved: BTreeSet<&str> = granted_to_us
        .iter()
        .filter(|a| a.state == AccessState::Approved)
        .map(|a| a.scope.as_str())
        .collect();
    let open: BTreeSet<String> = open
        .iter()
        .filter(|s| s.accessible_for_all)
        .map(ScopeRegistration::full_name)
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = ConsumedScopes::default();
    for scope in consumed {
        if !seen.insert(scope.as_str()) {
            continue;
        }
        if approved.contains(scope.as_str()) || open.contains(scope) {
            out.usable.push(scope.clone());
        } else {
            out.unusable.push(scope.clone());
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Digdir refuses a Maskinporten client without scopes (digdirator#108).
    #[error(
        "the MaskinportenClient has no usable consumed scope and no default scope is configured: set {DEFAULT_SCOPE_SETTING}"
    )]
    NoDefaultScope,
}

/// The scopes to register on a Maskinporten client: the usable ones, or else the configured
/// default scope (`""`: none configured, an error naming [`DEFAULT_SCOPE_SETTING`]).
pub fn client_scopes(usable: &[String], default_scope: &str) -> Result<Vec<String>, ScopeError> {
    if !usable.is_empty() {
        return Ok(usable.to_vec());
    }
    match default_scope.trim() {
        "" => Err(ScopeError::NoDefaultScope),
        scope => Ok(vec![scope.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExposedScopeConsumer, MaskinportenClient};

    const CLUSTER: &str = "prod-a";
    const OTHER_CLUSTER: &str = "prod-b";
    const PREFIX: &str = "kartverket";
    const ALTINN_ISSUER: &str = "https://tt02.altinn.no/";

    fn settings() -> ScopeSettings {
        ScopeSettings::new(CLUSTER, PREFIX).with_delegation_sources(&[DigdirDelegationSource {
            name: "altinn".into(),
            issuer: ALTINN_ISSUER.into(),
            ..Default::default()
        }])
    }

    fn example(yaml: &str) -> ExposingResource {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("example YAML");
        let mp: MaskinportenClient = serde_json::from_value(value).expect("MaskinportenClient");
        ExposingResource::from_spec(
            mp.metadata.namespace.as_deref().unwrap_or_default(),
            mp.metadata.name.as_deref().unwrap_or_default(),
            &mp.spec,
            false,
        )
    }

    /// tests/data/examples/maskinportenclient.yaml: `innsyn` exposed to two organisations.
    fn skip_example() -> ExposingResource {
        example(include_str!(
            "../../../tests/data/examples/maskinportenclient.yaml"
        ))
    }

    /// tests/data/examples/maskinportenclient-delegation.yaml: `difitest/test2` with Altinn delegation.
    fn delegation_example() -> ExposingResource {
        example(include_str!(
            "../../../tests/data/examples/maskinportenclient-delegation.yaml"
        ))
    }

    fn exposed(product: &str, name: &str, consumers: &[&str]) -> ExposedScope {
        ExposedScope {
            enabled: true,
            name: name.into(),
            product: product.into(),
            consumers: Some(
                consumers
                    .iter()
                    .map(|o| ExposedScopeConsumer {
                        orgno: o.to_string(),
                        name: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn resource(namespace: &str, name: &str, exposes: Vec<ExposedScope>) -> ExposingResource {
        ExposingResource {
            namespace: namespace.into(),
            name: name.into(),
            exposes,
            deleting: false,
        }
    }

    fn id(cluster: &str, namespace: &str, name: &str) -> ResourceId {
        ResourceId::new(cluster, namespace, name)
    }

    /// A scope as `GET /scopes` lists it.
    fn listed(full: &str, description: &str, active: bool) -> ScopeRegistration {
        let (prefix, subscope) = full.split_once(':').expect("prefix:subscope");
        ScopeRegistration {
            accessible_for_all: false,
            active,
            allowed_integration_types: vec![IntegrationType::Maskinporten],
            at_max_age: DEFAULT_AT_MAX_AGE,
            description: description.into(),
            name: full.into(),
            owner_orgno: Some("971040238".into()),
            prefix: prefix.into(),
            subscope: subscope.into(),
            token_type: TokenType::SelfContained,
            visibility: Visibility::Public,
            ..Default::default()
        }
    }

    fn access(scope: &str, orgno: &str, state: AccessState) -> ConsumerRegistration {
        ConsumerRegistration {
            consumer_orgno: orgno.into(),
            owner_orgno: "971040238".into(),
            scope: scope.into(),
            state,
            ..Default::default()
        }
    }

    fn observed(scopes: Vec<ScopeRegistration>) -> Observed {
        let acls = scopes.iter().map(|s| (s.full_name(), vec![])).collect();
        Observed { scopes, acls }
    }

    /// What Digdir holds after `changes` (the simulator's rules: PUT replaces the managed fields,
    /// DELETE deactivates, a grant makes the access APPROVED, a revoke removes it from the ACL).
    fn apply(before: &Observed, changes: &[ScopeChange]) -> Observed {
        let mut after = before.clone();
        for c in changes {
            let acl = after.acls.entry(c.scope.clone()).or_default();
            match &c.action {
                ScopeAction::Grant { orgno } | ScopeAction::Regrant { orgno } => {
                    acl.retain(|a| &a.consumer_orgno != orgno);
                    acl.push(access(&c.scope, orgno, AccessState::Approved));
                }
                ScopeAction::Revoke { orgno } => acl.retain(|a| &a.consumer_orgno != orgno),
                _ => {}
            }
            let existing = after.scopes.iter_mut().find(|s| s.full_name() == c.scope);
            match (&c.action, existing) {
                (ScopeAction::Create { registration }, None) => {
                    let mut s = registration.clone();
                    s.name = c.scope.clone();
                    s.owner_orgno = Some("971040238".into());
                    after.scopes.push(s);
                }
                (
                    ScopeAction::Update { registration, .. }
                    | ScopeAction::Reactivate { registration },
                    Some(s),
                ) => {
                    let name = s.name.clone();
                    *s = registration.clone();
                    s.name = name;
                }
                (ScopeAction::Deactivate, Some(s)) => s.active = false,
                (
                    ScopeAction::Grant { .. }
                    | ScopeAction::Regrant { .. }
                    | ScopeAction::Revoke { .. },
                    Some(_),
                ) => {}
                (action, existing) => {
                    panic!("{} on {} ({existing:?})", action.label(), c.scope)
                }
            }
        }
        after
    }

    /// Plans, applies, and plans again: the second plan changes nothing.
    fn converges(resources: &[ExposingResource], before: &Observed) -> (Plan, Observed) {
        let first = plan(&settings(), resources, before);
        let after = apply(before, &first.changes);
        let again = plan(&settings(), resources, &after);
        assert!(
            again.is_empty(),
            "not idempotent: {:?}",
            again
                .changes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        );
        assert_eq!(again.problems, first.problems, "problems are stable");
        (first, after)
    }

    fn describe(plan: &Plan) -> Vec<String> {
        plan.changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn full_names_follow_the_separator_rule() {
        let mut e = exposed("produktomraade", "innsyn", &[]);
        assert_eq!(full_name("nav", &e), "nav:produktomraade:innsyn");
        e.name = "data/read".into();
        assert_eq!(full_name("nav", &e), "nav:produktomraade/data/read");
        e.separator = Some(".".into());
        assert_eq!(full_name("nav", &e), "nav:produktomraade.data/read");
        let d = delegation_example();
        assert_eq!(full_name("nav", &d.exposes[0]), "nav:difitest/test2");
    }

    #[test]
    fn owner_descriptions_round_trip_and_hand_made_ones_name_nobody() {
        let owner = id("dev-gcp", "team-a", "my-app");
        let d = scope_description("produktomraade", &owner);
        assert_eq!(d, "produktomraade - dev-gcp:team-a:my-app");
        assert_eq!(parse_owner(&d), Some(owner));
        // A cluster name with a colon still parses: namespace and name never have one.
        assert_eq!(
            parse_owner("p - eu:west:ns:app"),
            Some(id("eu:west", "ns", "app"))
        );
        for hand_made in [
            "",
            "Innsyn i matrikkelen",
            "p - ns:app",
            "Produkt - c:ns:app",
            "p - c:Team A:app",
            "p - c::app",
        ] {
            assert_eq!(parse_owner(hand_made), None, "{hand_made:?}");
        }
    }

    #[test]
    fn the_skip_example_is_created_with_digdirators_defaults_and_both_consumers() {
        let r = skip_example();
        let p = plan(&settings(), &[r], &Observed::default());
        let name = "kartverket:produktomraade:innsyn";
        assert_eq!(
            describe(&p),
            [
                format!("create scope `{name}`"),
                format!("grant organisation 123456789 access to `{name}`"),
                format!("grant organisation 987654321 access to `{name}`"),
            ]
        );
        let ScopeAction::Create { registration } = &p.changes[0].action else {
            panic!("not a create")
        };
        let json = serde_json::to_value(registration).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "accessible_for_all": false, "active": true,
                "allowed_integration_types": ["maskinporten"], "at_max_age": 30,
                "description": "produktomraade - prod-a:tilgangsstyring-main:test-client",
                "name": "", "prefix": "kartverket", "requires_pseudonymous_tokens": false,
                "requires_user_authentication": false, "requires_user_consent": false,
                "subscope": "produktomraade:innsyn", "token_type": "SELF_CONTAINED",
                "visibility": "PUBLIC",
            })
        );
        assert_eq!(
            p.changes[0].resource,
            id(CLUSTER, "tilgangsstyring-main", "test-client")
        );
        assert!(p.problems.is_empty() && p.orphaned.is_empty() && p.adopted.is_empty());
        converges(&[skip_example()], &Observed::default());
    }

    #[test]
    fn a_delegation_source_is_sent_as_its_issuer_and_an_unknown_one_is_a_problem() {
        let r = delegation_example();
        let p = plan(&settings(), std::slice::from_ref(&r), &Observed::default());
        let ScopeAction::Create { registration } = &p.changes[0].action else {
            panic!("not a create: {:?}", describe(&p))
        };
        assert_eq!(p.changes[0].scope, "kartverket:difitest/test2");
        assert_eq!(
            registration.delegation_source.as_deref(),
            Some(ALTINN_ISSUER)
        );
        assert_eq!(registration.at_max_age, 60);
        assert_eq!(registration.visibility, Visibility::Private);
        assert_eq!(registration.subscope, "difitest/test2");
        assert_eq!(
            describe(&p)[1],
            "grant organisation 910753614 access to `kartverket:difitest/test2`"
        );

        let without = ScopeSettings::new(CLUSTER, PREFIX);
        let p = plan(&without, &[r], &Observed::default());
        assert!(p.is_empty(), "nothing is created without the issuer");
        assert_eq!(
            p.problems[0].to_string(),
            "spec.scopes.exposes[0].delegationSource: delegation source `altinn` is not one Digdir lists (none)"
        );
    }

    #[test]
    fn changed_fields_are_updated_and_named() {
        let mut e = exposed("api", "read", &[]);
        e.at_max_age = Some(120);
        e.accessible_for_all = Some(true);
        e.allowed_integrations = Some(vec!["maskinporten".into(), "krr".into()]);
        let r = resource("ns", "app", vec![e]);
        let name = "kartverket:api:read";
        let current = listed(name, "api - prod-a:ns:app", true);
        let before = observed(vec![current]);
        let (p, _) = converges(&[r], &before);
        assert_eq!(
            describe(&p),
            [format!(
                "update scope `{name}` (accessible_for_all, allowed_integration_types, at_max_age)"
            )]
        );
        // The order of integration types does not matter.
        let mut e = exposed("api", "read", &[]);
        e.allowed_integrations = Some(vec!["maskinporten".into()]);
        let mut current = listed(name, "api - prod-a:ns:app", true);
        current.allowed_integration_types = vec![IntegrationType::Maskinporten];
        let p = plan(
            &settings(),
            &[resource("ns", "app", vec![e])],
            &observed(vec![current]),
        );
        assert!(p.is_empty(), "{:?}", describe(&p));
    }

    #[test]
    fn an_inactive_scope_is_reactivated_and_its_acl_kept_in_step() {
        let name = "kartverket:api:read";
        let r = resource("ns", "app", vec![exposed("api", "read", &["987654321"])]);
        let mut before = observed(vec![listed(name, "api - prod-a:ns:app", false)]);
        before.acls.insert(
            name.into(),
            vec![access(name, "987654321", AccessState::Approved)],
        );
        let (p, after) = converges(&[r], &before);
        assert_eq!(describe(&p), [format!("reactivate scope `{name}`")]);
        let ScopeAction::Reactivate { registration } = &p.changes[0].action else {
            panic!()
        };
        assert!(registration.active);
        assert!(after.scopes[0].active);
    }

    #[test]
    fn a_disabled_scope_is_deactivated_once_and_a_missing_one_not_created() {
        let name = "kartverket:api:read";
        let mut e = exposed("api", "read", &["987654321"]);
        e.enabled = false;
        let r = resource("ns", "app", vec![e.clone()]);
        let (p, after) = converges(
            std::slice::from_ref(&r),
            &observed(vec![listed(name, "api - prod-a:ns:app", true)]),
        );
        assert_eq!(describe(&p), [format!("deactivate scope `{name}`")]);
        assert!(!after.scopes[0].active);
        assert!(
            p.unread_acls.is_empty(),
            "a disabled scope's ACL is not needed"
        );
        assert!(acls_to_read(&settings(), std::slice::from_ref(&r), &after.scopes).is_empty());
        assert!(plan(&settings(), &[r], &Observed::default()).is_empty());
    }

    #[test]
    fn consumers_are_granted_denied_ones_regranted_and_removed_ones_revoked() {
        let name = "kartverket:api:read";
        let r = resource(
            "ns",
            "app",
            vec![exposed(
                "api",
                "read",
                &["987654321", "123456789", "910753614", "889640782"],
            )],
        );
        let mut before = observed(vec![listed(name, "api - prod-a:ns:app", true)]);
        before.acls.insert(
            name.into(),
            vec![
                access(name, "987654321", AccessState::Approved),
                access(name, "123456789", AccessState::Denied),
                access(name, "910753614", AccessState::Requested),
                access(name, "991825827", AccessState::Approved),
                access(name, "974760673", AccessState::Denied),
            ],
        );
        let (p, after) = converges(&[r], &before);
        assert_eq!(
            describe(&p),
            [
                format!("grant organisation 123456789 access to `{name}` again (it was DENIED)"),
                format!("grant organisation 889640782 access to `{name}`"),
                format!("grant organisation 910753614 access to `{name}`"),
                format!("revoke organisation 991825827's access to `{name}`"),
            ],
            "a DENIED consumer no longer listed is left as it is"
        );
        let mut acl: Vec<(String, AccessState)> = after.acls[name]
            .iter()
            .map(|a| (a.consumer_orgno.clone(), a.state.clone()))
            .collect();
        acl.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            acl,
            [
                ("123456789".to_string(), AccessState::Approved),
                ("889640782".to_string(), AccessState::Approved),
                ("910753614".to_string(), AccessState::Approved),
                ("974760673".to_string(), AccessState::Denied),
                ("987654321".to_string(), AccessState::Approved),
            ]
        );
    }

    #[test]
    fn an_invalid_orgno_is_a_problem_of_its_scope_and_the_other_grants_go_on() {
        let name = "kartverket:api:read";
        let r = resource(
            "ns",
            "app",
            vec![exposed(
                "api",
                "read",
                &["98765432", "123456789", "123456789"],
            )],
        );
        let (p, _) = converges(&[r], &Observed::default());
        assert_eq!(
            describe(&p),
            [
                format!("create scope `{name}`"),
                format!("grant organisation 123456789 access to `{name}`"),
            ]
        );
        assert_eq!(
            p.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [format!(
                "scope `{name}`: organisation 98765432 cannot be granted access: an organisation number has nine digits"
            )]
        );
    }

    #[test]
    fn two_clusters_of_one_organisation_leave_each_others_scopes_alone() {
        // Digdir lists both clusters' scopes to both.
        let a_scope = listed("kartverket:a:read", "a - prod-a:ns:app", true);
        let b_scope = listed("kartverket:b:read", "b - prod-b:ns:app", true);
        let b_orphan = listed("kartverket:b:old", "b - prod-b:ns:gone", true);
        let mut b_changed = listed("kartverket:b:write", "b - prod-b:ns:app", false);
        b_changed.at_max_age = 600;
        let mut before = observed(vec![a_scope, b_scope, b_orphan, b_changed]);
        before.acls.insert(
            "kartverket:b:read".into(),
            vec![access(
                "kartverket:b:read",
                "987654321",
                AccessState::Approved,
            )],
        );
        // Cluster A's resource of the same namespace and name exposes only its own scope.
        let a = resource("ns", "app", vec![exposed("a", "read", &[])]);
        let p = plan(&settings(), std::slice::from_ref(&a), &before);
        assert!(p.is_empty(), "{:?}", describe(&p));
        assert!(
            p.orphaned.is_empty(),
            "B's scopes are not A's to report: {:?}",
            p.orphaned
        );
        assert!(p.problems.is_empty());
        assert_eq!(
            acls_to_read(&settings(), &[a], &before.scopes),
            ["kartverket:a:read"]
        );

        // Cluster B sees the same listing the other way round.
        let b_settings = ScopeSettings::new(OTHER_CLUSTER, PREFIX);
        let b = resource(
            "ns",
            "app",
            vec![
                exposed("b", "read", &["987654321"]),
                exposed("b", "write", &[]),
            ],
        );
        let p = plan(&b_settings, &[b], &before);
        assert_eq!(describe(&p), ["reactivate scope `kartverket:b:write`"]);
        assert_eq!(
            p.orphaned,
            [Orphan {
                scope: "kartverket:b:old".into(),
                owner: id(OTHER_CLUSTER, "ns", "gone")
            }]
        );

        // A resource in A that exposes B's scope gets a problem naming B's owner; nothing is changed.
        let intruder = resource("team", "copy", vec![exposed("b", "read", &["123456789"])]);
        let p = plan(&settings(), &[intruder], &before);
        assert!(p.is_empty(), "{:?}", describe(&p));
        assert_eq!(
            p.problems,
            [ResourceProblem {
                resource: id(CLUSTER, "team", "copy"),
                scope: Some("kartverket:b:read".into()),
                problem: Problem::OwnedByOther {
                    owner: id(OTHER_CLUSTER, "ns", "app")
                },
            }]
        );
        assert_eq!(
            p.problems[0].to_string(),
            "scope `kartverket:b:read`: owned by prod-b:ns:app (the scope's description names it); this resource leaves it alone"
        );
    }

    #[test]
    fn a_hand_made_scope_is_adopted_by_the_resource_that_exposes_it() {
        let name = "kartverket:produktomraade:innsyn";
        let mut hand_made = listed(name, "Innsyn i tilgangsstyring", true);
        hand_made.token_type = TokenType::Opaque;
        let mut before = observed(vec![hand_made]);
        before.acls.insert(
            name.into(),
            vec![
                access(name, "987654321", AccessState::Approved),
                access(name, "991825827", AccessState::Approved),
            ],
        );
        let (p, after) = converges(&[skip_example()], &before);
        let owner = id(CLUSTER, "tilgangsstyring-main", "test-client");
        assert_eq!(
            p.adopted,
            [Adoption {
                resource: owner.clone(),
                scope: name.into(),
                from: None
            }]
        );
        assert_eq!(
            describe(&p),
            [
                format!("update scope `{name}` (description, token_type)"),
                format!("grant organisation 123456789 access to `{name}`"),
                format!("revoke organisation 991825827's access to `{name}`"),
            ]
        );
        assert_eq!(parse_owner(&after.scopes[0].description), Some(owner));
        assert!(
            plan(&settings(), &[skip_example()], &after)
                .adopted
                .is_empty()
        );
    }

    #[test]
    fn two_resources_exposing_one_scope_never_fight() {
        let name = "kartverket:api:read";
        let first = resource(
            "a-team",
            "api",
            vec![exposed("api", "read", &["987654321"])],
        );
        let second = resource(
            "b-team",
            "copy",
            vec![exposed("api", "read", &["123456789"])],
        );
        let blocked = |p: &Plan, who: &ResourceId, owner: &ResourceId| {
            assert_eq!(
                p.problems,
                [ResourceProblem {
                    resource: who.clone(),
                    scope: Some(name.into()),
                    problem: Problem::OwnedByOther {
                        owner: owner.clone()
                    },
                }]
            );
        };
        let a = id(CLUSTER, "a-team", "api");
        let b = id(CLUSTER, "b-team", "copy");
        // Neither exists yet: the first identity creates it, in whatever order the resources come.
        for resources in [
            vec![first.clone(), second.clone()],
            vec![second.clone(), first.clone()],
        ] {
            let (p, after) = converges(&resources, &Observed::default());
            assert!(
                p.changes.iter().all(|c| c.resource == a),
                "{:?}",
                describe(&p)
            );
            assert_eq!(
                describe(&p),
                [
                    format!("create scope `{name}`"),
                    format!("grant organisation 987654321 access to `{name}`"),
                ]
            );
            blocked(&p, &b, &a);
            assert_eq!(
                after.acls[name].len(),
                1,
                "the second resource's consumer is not granted"
            );
        }
        // Existing and owned by the second: the second keeps it, the first gets the problem.
        let mut before = observed(vec![listed(name, "api - prod-a:b-team:copy", true)]);
        before.acls.insert(
            name.into(),
            vec![access(name, "123456789", AccessState::Approved)],
        );
        let (p, _) = converges(&[first.clone(), second.clone()], &before);
        assert!(p.is_empty(), "{:?}", describe(&p));
        blocked(&p, &a, &b);
        // A deleting owner still holds its scope until it is gone.
        let mut leaving = second.clone();
        leaving.deleting = true;
        let p = plan(&settings(), &[first.clone(), leaving], &before);
        assert!(p.is_empty(), "{:?}", describe(&p));
        blocked(&p, &a, &b);
        // Once the owner no longer exposes it, it passes to the one that does.
        let (p, after) = converges(
            &[first.clone(), resource("b-team", "copy", vec![])],
            &before,
        );
        assert_eq!(
            p.adopted,
            [Adoption {
                resource: a.clone(),
                scope: name.into(),
                from: Some(b.clone())
            }]
        );
        assert_eq!(
            describe(&p),
            [
                format!("update scope `{name}` (description)"),
                format!("grant organisation 987654321 access to `{name}`"),
                format!("revoke organisation 123456789's access to `{name}`"),
            ]
        );
        assert_eq!(parse_owner(&after.scopes[0].description), Some(a));
    }

    #[test]
    fn a_scope_removed_from_the_spec_stays_active_and_is_reported() {
        let kept = listed("kartverket:api:read", "api - prod-a:ns:app", true);
        let removed = listed("kartverket:api:write", "api - prod-a:ns:app", true);
        let removed_inactive = listed("kartverket:api:old", "api - prod-a:ns:app", false);
        let hand_made = listed("kartverket:manual", "made in Samarbeidsportalen", true);
        let of_deleted = listed("kartverket:gone:read", "gone - prod-a:ns:deleted", true);
        let before = observed(vec![kept, removed, removed_inactive, hand_made, of_deleted]);
        let r = resource("ns", "app", vec![exposed("api", "read", &[])]);
        let p = plan(&settings(), &[r], &before);
        assert!(p.is_empty(), "nothing is deactivated: {:?}", describe(&p));
        assert_eq!(
            p.orphaned,
            [
                Orphan {
                    scope: "kartverket:api:write".into(),
                    owner: id(CLUSTER, "ns", "app")
                },
                Orphan {
                    scope: "kartverket:gone:read".into(),
                    owner: id(CLUSTER, "ns", "deleted")
                },
            ]
        );
    }

    #[test]
    fn deletion_keeps_enabled_scopes_and_deactivates_disabled_ones() {
        let enabled = exposed("api", "read", &["987654321"]);
        let mut disabled = exposed("api", "write", &["987654321"]);
        disabled.enabled = false;
        let mut disabled_foreign = exposed("other", "write", &[]);
        disabled_foreign.enabled = false;
        let mut r = resource(
            "ns",
            "app",
            vec![
                enabled,
                disabled,
                disabled_foreign,
                exposed("api", "new", &[]),
            ],
        );
        r.deleting = true;
        let before = observed(vec![
            listed("kartverket:api:read", "api - prod-a:ns:app", true),
            listed("kartverket:api:write", "api - prod-a:ns:app", true),
            listed(
                "kartverket:other:write",
                "other - prod-a:ns:someone-else",
                true,
            ),
        ]);
        let (p, after) = converges(std::slice::from_ref(&r), &before);
        assert_eq!(describe(&p), ["deactivate scope `kartverket:api:write`"]);
        assert!(after.scopes[0].active && !after.scopes[1].active && after.scopes[2].active);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert!(
            p.orphaned.is_empty(),
            "the resource is still there: {:?}",
            p.orphaned
        );
        assert!(acls_to_read(&settings(), &[r], &before.scopes).is_empty());
    }

    #[test]
    fn an_unread_acl_plans_no_consumer_change() {
        let name = "kartverket:api:read";
        let r = resource("ns", "app", vec![exposed("api", "read", &["987654321"])]);
        let before = Observed {
            scopes: vec![listed(name, "api - prod-a:ns:app", true)],
            acls: BTreeMap::new(),
        };
        assert_eq!(
            acls_to_read(&settings(), std::slice::from_ref(&r), &before.scopes),
            [name]
        );
        let p = plan(&settings(), &[r], &before);
        assert!(p.is_empty());
        assert_eq!(p.unread_acls, [name]);
    }

    #[test]
    fn a_scope_exposed_twice_by_one_resource_uses_the_later_entry() {
        let mut later = exposed("api", "read", &[]);
        later.at_max_age = Some(300);
        let r = resource("ns", "app", vec![exposed("api", "read", &[]), later]);
        let (p, _) = converges(&[r], &Observed::default());
        let ScopeAction::Create { registration } = &p.changes[0].action else {
            panic!()
        };
        assert_eq!(registration.at_max_age, 300);
        assert_eq!(
            p.problems[0].to_string(),
            "scope `kartverket:api:read`: spec.scopes.exposes[0] names the same scope as spec.scopes.exposes[1]; spec.scopes.exposes[1] is used"
        );
    }

    #[test]
    fn an_invalid_entry_is_a_problem_naming_the_field_and_blocks_nothing_else() {
        let mut bad = exposed("api", "read", &[]);
        bad.separator = Some("-".into());
        let r = resource("ns", "app", vec![bad, exposed("api", "write", &[])]);
        let p = plan(&settings(), &[r], &Observed::default());
        assert_eq!(describe(&p), ["create scope `kartverket:api:write`"]);
        assert_eq!(
            p.problems[0].to_string(),
            "spec.scopes.exposes[0].separator: must be one of \"/\", \":\" and \".\""
        );
    }

    #[test]
    fn a_whole_organisation_converges_from_a_mixed_state() {
        let mut disabled = exposed("api", "old", &[]);
        disabled.enabled = false;
        let resources = vec![
            skip_example(),
            delegation_example(),
            resource(
                "ns",
                "app",
                vec![exposed("api", "read", &["987654321"]), disabled],
            ),
            resource("ns", "copy", vec![exposed("api", "read", &["123456789"])]),
        ];
        let mut before = observed(vec![
            listed("kartverket:api:read", "api - prod-a:ns:app", false),
            listed("kartverket:api:old", "api - prod-a:ns:app", true),
            listed("kartverket:difitest/test2", "by hand", true),
            listed("kartverket:b:read", "b - prod-b:ns:app", true),
        ]);
        before.acls.insert(
            "kartverket:api:read".into(),
            vec![access(
                "kartverket:api:read",
                "987654321",
                AccessState::Denied,
            )],
        );
        let (p, after) = converges(&resources, &before);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(
            after
                .scopes
                .iter()
                .any(|s| s.full_name() == "kartverket:produktomraade:innsyn")
        );
        assert_eq!(
            after
                .scopes
                .iter()
                .find(|s| s.full_name() == "kartverket:difitest/test2")
                .and_then(|s| s.delegation_source.clone())
                .as_deref(),
            Some(ALTINN_ISSUER)
        );
        assert_eq!(
            after.acls["kartverket:api:read"][0].state,
            AccessState::Approved
        );
        let actions: BTreeSet<&str> = p.changes.iter().map(|c| c.action.label()).collect();
        assert_eq!(
            actions,
            [
                "create",
                "deactivate",
                "grant",
                "reactivate",
                "regrant",
                "update"
            ]
            .into_iter()
            .collect()
        );
    }

    #[test]
    fn an_owner_whose_entry_is_wrong_for_a_while_keeps_its_scope() {
        let name = "kartverket:api:read";
        // The owner's entry names a delegation source Digdir does not list (yet).
        let mut broken = exposed("api", "read", &[]);
        broken.delegation_source = Some(crate::crd::DelegationSource::Altinn);
        let owner = resource("a-team", "api", vec![broken]);
        let other = resource("b-team", "copy", vec![exposed("api", "read", &[])]);
        let before = observed(vec![listed(name, "api - prod-a:a-team:api", true)]);
        let no_sources = ScopeSettings::new(CLUSTER, PREFIX);
        let p = plan(&no_sources, &[owner, other], &before);
        assert!(p.is_empty(), "{:?}", describe(&p));
        assert!(p.adopted.is_empty());
        let kinds: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(kinds[0].contains("delegation source `altinn`"), "{kinds:?}");
        assert!(kinds[1].contains("owned by prod-a:a-team:api"), "{kinds:?}");
        assert!(p.orphaned.is_empty());
    }

    #[test]
    fn a_disabled_copy_does_not_keep_an_enabled_scope_from_being_created() {
        let name = "kartverket:api:read";
        let mut disabled = exposed("api", "read", &[]);
        disabled.enabled = false;
        // `a-team` sorts first but only disables the scope.
        let resources = [
            resource("a-team", "off", vec![disabled]),
            resource("b-team", "on", vec![exposed("api", "read", &["987654321"])]),
        ];
        let (p, _) = converges(&resources, &Observed::default());
        assert!(
            p.changes
                .iter()
                .all(|c| c.resource == id(CLUSTER, "b-team", "on"))
        );
        assert_eq!(describe(&p)[0], format!("create scope `{name}`"));
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].resource, id(CLUSTER, "a-team", "off"));
    }

    #[test]
    fn a_hand_made_scope_exposed_disabled_is_deactivated_not_adopted() {
        let name = "kartverket:api:read";
        let mut disabled = exposed("api", "read", &[]);
        disabled.enabled = false;
        let before = observed(vec![listed(name, "made by hand", true)]);
        let (p, after) = converges(&[resource("ns", "app", vec![disabled])], &before);
        assert_eq!(describe(&p), [format!("deactivate scope `{name}`")]);
        assert!(p.adopted.is_empty());
        assert_eq!(after.scopes[0].description, "made by hand");
    }

    #[test]
    fn without_a_prefix_nothing_is_planned_and_each_exposing_resource_is_told() {
        let settings = ScopeSettings::new(CLUSTER, "");
        let resources = [skip_example(), resource("ns", "consumer-only", vec![])];
        let p = plan(&settings, &resources, &Observed::default());
        assert!(p.is_empty());
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].problem, Problem::NoScopePrefix);
        assert_eq!(p.problems[0].resource.name, "test-client");
    }

    #[test]
    fn consumed_scopes_are_usable_when_approved_or_open_to_all() {
        let granted = [
            access(
                "krr:global/kontaktinformasjon.read",
                "971040238",
                AccessState::Approved,
            ),
            access("skatteetaten:mva", "971040238", AccessState::Denied),
            access("nav:requested", "971040238", AccessState::Requested),
        ];
        let mut open = listed("difi:open", "open", true);
        open.accessible_for_all = true;
        let public_only = listed("difi:public", "public but with an ACL", true);
        let consumed: Vec<String> = [
            "krr:global/kontaktinformasjon.read",
            "skatteetaten:mva",
            "difi:open",
            "difi:public",
            "nav:requested",
            "krr:global/kontaktinformasjon.read",
            "unknown:scope",
        ]
        .map(String::from)
        .to_vec();
        let split = consumed_scopes(&consumed, &granted, &[open, public_only]);
        assert_eq!(
            split.usable,
            ["krr:global/kontaktinformasjon.read", "difi:open"]
        );
        assert_eq!(
            split.unusable,
            [
                "skatteetaten:mva",
                "difi:public",
                "nav:requested",
                "unknown:scope"
            ]
        );
    }

    #[test]
    fn a_client_without_usable_scopes_needs_the_default_scope() {
        let usable = vec!["krr:global/kontaktinformasjon.read".to_string()];
        assert_eq!(client_scopes(&usable, "nav:test/api"), Ok(usable.clone()));
        assert_eq!(
            client_scopes(&[], "nav:test/api"),
            Ok(vec!["nav:test/api".to_string()])
        );
        let err = client_scopes(&[], " ").expect_err("no default");
        assert!(
            err.to_string().contains("--maskinporten-default-scope"),
            "{err}"
        );
    }
}
