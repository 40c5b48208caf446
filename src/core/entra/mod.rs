//! The pure core of the AzureAdApplication kind: what azurerator would make of a resource in Entra ID
//! and in Kubernetes, and the decisions of a pass, from the spec plus what was observed. No IO; every
//! "now" is passed in.
//!
//! - [`application`]: the application portvakt wants (display name, identifier URIs, tags, optional
//!   claims, redirect URIs, permissions with azurerator's fixed ids, ...) and the PATCH that makes an
//!   observed application so (empty when nothing differs: no write).
//! - [`preauth`]: `preAuthorizedApplications` resolved to apps, the pre-authorized list Graph gets and
//!   the app role assignments (apps and groups) to add and to remove.
//! - [`credentials`]: the current and next credential sets, when to add or rotate them and which
//!   credentials may be revoked (never one a workload may still hold).
//! - [`certificate`]: the self-signed certificate and the private JWK azurerator hands out.
//! - [`secret`]: the Secret with azurerator's 16 keys, prefix, labels, annotation and owner.
//! - [`status`]: status after a pass, and whether a pass may leave Entra alone.
//! - [`due`]: when the next pass is due if nothing changes (no blanket resync).
//! - [`observe`]: the `--observe` report of one resource.
//! - [`drift`]: what the periodic pass compares (hand-made changes in Entra).

pub mod application;
pub mod certificate;
pub mod credentials;
pub mod drift;
pub mod due;
pub mod observe;
pub mod preauth;
pub mod secret;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::Digest as _;

use super::ProviderMetadata;

/// azurerator's finalizer.
pub const FINALIZER: &str = "azure.nais.io/finalizer";
/// azurerator's older finalizer, honoured on deletion and replaced.
pub const LEGACY_FINALIZER: &str = "finalizer.azurerator.nais.io";
/// Present (any value): a full synchronisation; a comma-separated list, one element consumed per pass.
pub const ANN_RESYNC: &str = "azure.nais.io/resync";
/// Present (any value): rotate the credentials.
pub const ANN_ROTATE: &str = "azure.nais.io/rotate";
/// Present (any value) at deletion: the application stays in Entra ID, only its credentials go.
pub const ANN_PRESERVE: &str = "azure.nais.io/preserve";
/// The deployment's correlation id, copied into `status.correlationId`.
pub const ANN_CORRELATION_ID: &str = "nais.io/deploymentCorrelationID";
/// The `type` label of the Secrets (azurerator's).
pub const SECRET_TYPE_LABEL: &str = "azurerator.nais.io";
/// Tags that mark an application as azurerator's (and portvakt's): `azurerator_appreg`, legacy `iac_appreg`.
pub const MANAGED_TAG: &str = "azurerator_appreg";
pub const LEGACY_MANAGED_TAG: &str = "iac_appreg";
/// Resync list element of the periodic pass (drift) and of the sweep (pre-authorized apps found).
pub const RESYNC_DRIFT: &str = "drift";
pub const RESYNC_SWEEPER: &str = "sweeper";

/// Event reasons (azurerator's, plus portvakt's `DriftRepaired`).
pub mod events {
    pub const CREATED_IN_AZURE: &str = "CreatedInAzure";
    pub const UPDATED_IN_AZURE: &str = "UpdatedInAzure";
    pub const ROTATED_IN_AZURE: &str = "RotatedInAzure";
    pub const DELETED_IN_AZURE: &str = "DeletedInAzure";
    pub const SYNCHRONIZED: &str = "Synchronized";
    pub const ACCESS_POLICY_ASSIGNED: &str = "AccessPolicyAssigned";
    pub const ACCESS_POLICY_SKIPPED: &str = "AccessPolicySkipped";
    pub const DRIFT_REPAIRED: &str = "DriftRepaired";
}

/// Settings of the core (azurerator's configuration, §6.2 of the reference).
#[derive(Clone, Debug)]
pub struct Config {
    /// `<cluster>` in `<cluster>:<namespace>:<name>`; azurerator's `cluster-name`.
    pub cluster_name: String,
    /// The tenant's id (`azure.tenant.id`): `AZURE_APP_TENANT_ID`, `status.synchronizationTenant`.
    pub tenant_id: String,
    /// The tenant's name (`azure.tenant.name`), compared with `spec.tenant`.
    pub tenant_name: String,
    /// `validations.tenant.required`: a resource without `spec.tenant` is another instance's.
    pub tenant_required: bool,
    /// Microsoft Graph's service principal in the tenant (`azure.permissiongrant-resource-id`).
    pub permission_grant_resource_id: String,
    /// `azure.features.app-role-assignment-required.enabled`.
    pub assignment_required: bool,
    /// `azure.features.groups-assignment.enabled`.
    pub groups_assignment: bool,
    /// `azure.features.groups-assignment.all-users-group-id`.
    pub all_users_group_ids: Vec<String>,
    /// `azure.features.group-membership-claim.default`.
    pub group_membership_claim_default: String,
    /// `secret-rotation.max-age`.
    pub max_age: Duration,
    /// The tenant's OpenID configuration (fetched at start), for the Secret.
    pub metadata: ProviderMetadata,
    /// A full synchronisation happens at least this often even for an unchanged resource.
    pub full_sync_every: Duration,
    /// How long a credential that a replaced Secret held stays registered at least after the
    /// replacement when no running workload is known to hold it (azurerator revokes ~5 min later).
    pub revoke_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_name: String::new(),
            tenant_id: String::new(),
            tenant_name: String::new(),
            tenant_required: false,
            permission_grant_resource_id: String::new(),
            assignment_required: false,
            groups_assignment: false,
            all_users_group_ids: Vec::new(),
            group_membership_claim_default: "ApplicationGroup".into(),
            max_age: Duration::from_secs(2880 * 3600),
            metadata: ProviderMetadata::default(),
            full_sync_every: Duration::from_secs(24 * 3600),
            revoke_grace: Duration::from_secs(5 * 60),
        }
    }
}

/// The identity of an application in Entra ID: `<cluster>:<namespace>:<name>`.
pub fn display_name(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}:{namespace}:{name}")
}

/// The `uniqueName` portvakt gives the applications it creates (the key of the crash-safe upsert):
/// derived from the display name, in the characters and length Graph allows.
pub fn unique_name(display_name: &str) -> String {
    let digest = sha2::Sha256::digest(display_name.as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("portvakt-{hex}")
}

/// Whether this instance handles a resource with `spec.tenant` (azurerator's `tenant.go`): the
/// tenant's name exactly, or none when a tenant is not required.
pub fn is_addressed(spec_tenant: Option<&str>, cfg: &Config) -> bool {
    match spec_tenant.filter(|t| !t.is_empty()) {
        Some(t) => t == cfg.tenant_name,
        None => !cfg.tenant_required,
    }
}

fn has(annotations: Option<&BTreeMap<String, String>>, key: &str) -> bool {
    annotations.is_some_and(|a| a.contains_key(key))
}

/// `azure.nais.io/resync` present (any value, even `false`).
pub fn wants_resync(annotations: Option<&BTreeMap<String, String>>) -> bool {
    has(annotations, ANN_RESYNC)
}

/// `azure.nais.io/rotate` present.
pub fn wants_rotate(annotations: Option<&BTreeMap<String, String>>) -> bool {
    has(annotations, ANN_ROTATE)
}

/// `azure.nais.io/preserve` present.
pub fn preserve(annotations: Option<&BTreeMap<String, String>>) -> bool {
    has(annotations, ANN_PRESERVE)
}

/// The resync list without its first element (`None`: remove the annotation).
pub fn resync_after_pass(value: &str) -> Option<String> {
    let rest: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

/// The resync list with `element` appended, unless it is already the last one (azurerator's
/// synchronizer).
pub fn resync_append(value: Option<&str>, element: &str) -> String {
    let mut list: Vec<&str> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.last() != Some(&element) {
        list.push(element);
    }
    list.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, required: bool) -> Config {
        Config {
            tenant_name: name.into(),
            tenant_required: required,
            ..Config::default()
        }
    }

    #[test]
    fn tenants_are_compared_by_name_and_an_empty_one_only_when_not_required() {
        assert!(is_addressed(Some("nav.no"), &cfg("nav.no", false)));
        assert!(!is_addressed(
            Some("trygdeetaten.no"),
            &cfg("nav.no", false)
        ));
        assert!(
            !is_addressed(Some("NAV.no"), &cfg("nav.no", false)),
            "exact"
        );
        assert!(is_addressed(None, &cfg("nav.no", false)));
        assert!(is_addressed(Some(""), &cfg("nav.no", false)));
        assert!(!is_addressed(None, &cfg("nav.no", true)));
        assert!(!is_addressed(Some("x"), &cfg("", false)));
    }

    #[test]
    fn the_resync_list_loses_its_first_element_per_pass() {
        assert_eq!(resync_after_pass("true"), None);
        assert_eq!(resync_after_pass("false"), None, "presence counts");
        assert_eq!(resync_after_pass(""), None);
        assert_eq!(
            resync_after_pass("c:ns:a, c:ns:b,sweeper").as_deref(),
            Some("c:ns:b,sweeper")
        );
        assert_eq!(resync_append(None, "c:ns:a"), "c:ns:a");
        assert_eq!(resync_append(Some("c:ns:a"), "c:ns:a"), "c:ns:a");
        assert_eq!(resync_append(Some("c:ns:a"), "c:ns:b"), "c:ns:a,c:ns:b");
        assert_eq!(
            resync_append(Some("c:ns:a,c:ns:b"), "c:ns:a"),
            "c:ns:a,c:ns:b,c:ns:a"
        );
    }

    #[test]
    fn identity_and_unique_name() {
        assert_eq!(display_name("dev", "team", "app"), "dev:team:app");
        let u = unique_name("dev:team:app");
        assert!(u.starts_with("portvakt-") && u.len() == 49, "{u}");
        assert_eq!(u, unique_name("dev:team:app"));
        assert_ne!(u, unique_name("dev:team:app2"));
        assert!(u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
