//! The pure core of the IDPortenClient and MaskinportenClient kinds: desired state from the spec plus
//! what was observed, turned into decisions. No IO; every "now" is passed in.
//!
//! - [`registration`]: the Digdir client registration per integration type, the identity
//!   (`<cluster>:<namespace>:<name>` + integration type) and the "does Digdir need a PUT" comparison.
//! - [`app_secret`]: the Secret per kind with digdirator's keys, labels, annotation and owner reference,
//!   and the "would a write change anything" comparison; the next-key Secret and its bookkeeping.
//! - [`keyplan`]: which keys to register, when to make or promote a key, which Secrets to delete
//!   (see its module doc for the rotation design).
//! - [`status`]: status and conditions after success or failure.
//! - [`observe`]: the per-resource report of `--observe`.
//! - [`drift`]: the periodic steady-state pass: which registrations drifted, whose JWKS is due.
//! - [`due`]: when an unchanged resource's next pass is due (nothing due: no pass).
//! - [`scopes`]: the exposed scopes of API providers and their consumers (the plan), and which
//!   consumed scopes a client may use.
//! - [`wire`]: Digdir's wire types (plain data; the client in `crate::digdir` sends and reads them).

pub mod app_secret;
pub mod drift;
pub mod due;
pub mod keyplan;
pub mod observe;
pub mod registration;
pub mod scopes;
pub mod status;
pub mod wire;

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

/// The two Digdir kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigdirKind {
    IDPorten,
    Maskinporten,
}

impl DigdirKind {
    pub fn kind(self) -> &'static str {
        match self {
            DigdirKind::IDPorten => "IDPortenClient",
            DigdirKind::Maskinporten => "MaskinportenClient",
        }
    }
    /// The `type` label of managed Secrets (digdirator's).
    pub const fn secret_type_label(self) -> &'static str {
        match self {
            DigdirKind::IDPorten => "digdirator.nais.io",
            DigdirKind::Maskinporten => "maskinporten.digdirator.nais.io",
        }
    }
    /// The prefix of the Secret's keys.
    pub fn env_prefix(self) -> &'static str {
        match self {
            DigdirKind::IDPorten => "IDPORTEN",
            DigdirKind::Maskinporten => "MASKINPORTEN",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            DigdirKind::IDPorten => "idporten",
            DigdirKind::Maskinporten => "maskinporten",
        }
    }
}

/// Configuration of the core. Defaults are digdirator's (NAV's), override them per installation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster name in `<cluster>:<namespace>:<name>`. A wrong one would duplicate every client.
    pub cluster_name: String,
    pub client_name: String,
    pub client_uri: String,
    pub access_token_lifetime: i64,
    pub session_lifetime: i64,
    /// Registered when a MaskinportenClient has no (valid) consumed scope (Digdir refuses a client
    /// without one). No default: it must be a scope the installation's organisation owns.
    pub maskinporten_default_scope: Option<String>,
    /// The scope prefix Digdir assigned to the organisation (e.g. `nav`): exposed scopes are named
    /// `<prefix>:<product><separator><name>`. No default; needed once a resource exposes a scope.
    pub maskinporten_scope_prefix: Option<String>,
    pub idporten: super::ProviderMetadata,
    pub maskinporten: super::ProviderMetadata,
    /// How long Digdir may take to recognise a newly registered key (documented: up to 2 minutes).
    pub key_propagation: Duration,
    /// Keys are re-registered this long before they expire.
    pub renew_before: Duration,
    /// Digdir's cap on keys per client.
    pub max_keys: usize,
    /// The periodic pass reads a client's JWKS (to find keys removed by hand) about this often,
    /// jittered per client (see [`drift`]).
    pub jwks_check_every: Duration,
    /// The periodic pass reads the ACL of each exposed scope about this often, jittered per scope
    /// (the organisation's scope list is read every pass).
    pub acl_check_every: Duration,
    /// After a first sync (one key), the next key is made once the first key has been registered
    /// this long (see [`keyplan`]); zero makes both keys in the first sync.
    pub next_key_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_name: String::new(),
            client_name: "ARBEIDS- OG VELFERDSETATEN".into(),
            client_uri: "https://www.nav.no".into(),
            access_token_lifetime: 3600,
            session_lifetime: 7200,
            maskinporten_default_scope: None,
            maskinporten_scope_prefix: None,
            idporten: super::ProviderMetadata::default(),
            maskinporten: super::ProviderMetadata::default(),
            key_propagation: Duration::from_secs(120),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            max_keys: 5,
            jwks_check_every: Duration::from_secs(24 * 3600),
            acl_check_every: Duration::from_secs(24 * 3600),
            next_key_delay: Duration::from_secs(300),
        }
    }
}

impl Config {
    pub fn metadata(&self, kind: DigdirKind) -> &super::ProviderMetadata {
        match kind {
            DigdirKind::IDPorten => &self.idporten,
            DigdirKind::Maskinporten => &self.maskinporten,
        }
    }
}

/// Who reads the consumed-scope cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeCacheUse {
    /// A resource's own pass: fresh for 10 minutes (digdirator's cache time), and refetched at once
    /// when it does not know a scope the resource consumes.
    Reconcile,
    /// The periodic pass: whatever its age (a reconcile keeps it fresh; a change of access is picked
    /// up by the resource's own full pass); fetched only when there is none.
    Periodic,
}

/// How long the consumed-scope cache is fresh for a reconcile.
pub const SCOPE_CACHE_TTL: Duration = Duration::from_secs(600);

/// Whether the consumed-scope cache (`(fetched, approved, open)`) must be fetched again before
/// `scopes` are judged.
pub fn scope_cache_stale(
    cache: Option<(Timestamp, &BTreeSet<String>, &BTreeSet<String>)>,
    scopes: &[String],
    now: Timestamp,
    usage: ScopeCacheUse,
) -> bool {
    let Some((fetched, approved, open)) = cache else {
        return true;
    };
    if usage == ScopeCacheUse::Periodic {
        return false;
    }
    let age_ok = now
        .duration_since(fetched)
        .try_into()
        .is_ok_and(|age: Duration| age < SCOPE_CACHE_TTL);
    let unknown = scopes
        .iter()
        .any(|s| !approved.contains(s) && !open.contains(s));
    !age_ok || unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_cache_policy() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let approved = BTreeSet::from(["a:x".to_string()]);
        let open = BTreeSet::from(["open:y".to_string()]);
        let scopes = ["a:x".to_string(), "open:y".to_string()];
        let fresh = Some((now, &approved, &open));
        assert!(!scope_cache_stale(
            fresh,
            &scopes,
            now,
            ScopeCacheUse::Reconcile
        ));
        let old = Some((now - jiff::SignedDuration::from_secs(601), &approved, &open));
        assert!(scope_cache_stale(
            old,
            &scopes,
            now,
            ScopeCacheUse::Reconcile
        ));
        assert!(!scope_cache_stale(
            old,
            &scopes,
            now,
            ScopeCacheUse::Periodic
        ));
        let unknown = ["b:z".to_string()];
        assert!(scope_cache_stale(
            fresh,
            &unknown,
            now,
            ScopeCacheUse::Reconcile
        ));
        assert!(!scope_cache_stale(
            fresh,
            &unknown,
            now,
            ScopeCacheUse::Periodic
        ));
        assert!(scope_cache_stale(
            None,
            &scopes,
            now,
            ScopeCacheUse::Periodic
        ));
    }
}
