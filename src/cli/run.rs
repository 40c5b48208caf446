//! `portvakt run`: the controllers against a real (or embedded) cluster and the providers.
//!
//! Every flag has a `PORTVAKT_*` environment equivalent. Settings come in one group per provider; a
//! provider's settings are required and checked only when one of its kinds is enabled. Bad
//! configuration fails at start, naming the setting, before anything is read or written. SIGTERM and
//! SIGINT are handled before anything else and stop the process promptly in every state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kube::client::ClientBuilder;
use portvakt::clock::Clock;
use portvakt::controller::digdir_kinds::DigdirProvider;
use portvakt::controller::leader::{Election, LeaseSettings, WriteGate, WriteGateLayer};
use portvakt::controller::{self, Context, RunOptions, Shared};
use portvakt::digdir::{DigdirClient, DigdirConfig, DigdirEnvironment};
use portvakt::keys::{KeyReference, Signer};
use portvakt::metrics::{DigdirStats, ProviderHooks};
use tokio_util::sync::CancellationToken;

/// The Digdir kinds and their provider's settings.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Digdir (IDPortenClient, MaskinportenClient)")]
pub struct DigdirArgs {
    /// Run the IDPortenClient controller.
    #[arg(long, env = "PORTVAKT_IDPORTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub idporten: bool,
    /// Run the MaskinportenClient controller.
    #[arg(long, env = "PORTVAKT_MASKINPORTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub maskinporten: bool,
    /// Digdir environment whose URLs are used: `test` or `prod`.
    #[arg(long, env = "PORTVAKT_DIGDIR_ENV")]
    pub digdir_env: Option<String>,
    /// Overrides the environment's self-service API base URL.
    #[arg(long, env = "PORTVAKT_DIGDIR_BASE_URL")]
    pub digdir_base_url: Option<String>,
    /// Overrides the environment's Maskinporten well-known URL.
    #[arg(long, env = "PORTVAKT_MASKINPORTEN_WELL_KNOWN_URL")]
    pub maskinporten_well_known_url: Option<String>,
    /// Overrides the environment's ID-porten well-known URL.
    #[arg(long, env = "PORTVAKT_IDPORTEN_WELL_KNOWN_URL")]
    pub idporten_well_known_url: Option<String>,
    /// The admin client's client_id at Digdir.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_CLIENT_ID")]
    pub digdir_admin_client_id: Option<String>,
    /// Space-separated admin scopes asked for in the grant.
    #[arg(
        long,
        env = "PORTVAKT_DIGDIR_ADMIN_SCOPES",
        default_value = "idporten:dcr.write idporten:dcr.read idporten:scopes.write"
    )]
    pub digdir_admin_scopes: String,
    /// The admin key: a file or a Cloud KMS key version, named by a certificate chain or a kid.
    #[command(flatten)]
    pub admin_key: super::admin_key::AdminKeyArgs,
    /// How long one call to Digdir may take (e.g. 30s). A create whose answer does not come in time
    /// holds the next create of that client for this long again (the answer may still land).
    #[arg(long, env = "PORTVAKT_DIGDIR_REQUEST_TIMEOUT", default_value = "30s")]
    pub digdir_request_timeout: String,
    /// Client name registered for resources whose spec has none (your organisation's name).
    #[arg(long, env = "PORTVAKT_CLIENT_NAME")]
    pub client_name: Option<String>,
    /// Client URI (and post-logout redirect URI) for registrations whose spec has none.
    #[arg(long, env = "PORTVAKT_CLIENT_URI")]
    pub client_uri: Option<String>,
    /// Scope registered on a MaskinportenClient that consumes no scope the organisation may use
    /// (Digdir refuses clients without one): a scope your organisation owns. No default.
    #[arg(long, env = "PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE")]
    pub maskinporten_default_scope: Option<String>,
    /// The scope prefix Digdir assigned to your organisation (digdirator's: `nav`): exposed scopes
    /// (`spec.scopes.exposes`) are named `<prefix>:<product><separator><name>`. No default; a
    /// MaskinportenClient that exposes a scope is not Ready while it is unset.
    #[arg(long, env = "PORTVAKT_MASKINPORTEN_SCOPE_PREFIX")]
    pub maskinporten_scope_prefix: Option<String>,
    /// How long Digdir may take to accept a newly registered key (documented: up to 2 minutes).
    #[arg(long, env = "PORTVAKT_KEY_PROPAGATION", default_value = "2m")]
    pub key_propagation: String,
    /// How long after a resource's first key is registered its next key (kept for a later
    /// rotation) is made at the earliest; it is then made on idle CPU, after every first key.
    #[arg(long, env = "PORTVAKT_NEXT_KEY_DELAY", default_value = "5m")]
    pub next_key_delay: String,
}

/// Leader election: which Lease, and its timing.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Leader election (several replicas)")]
pub struct LeaderElectionArgs {
    /// The coordination.k8s.io/v1 Lease the replicas elect their leader on (name it after the
    /// release). Only the leader reconciles and writes; the others stand by. Needs POD_NAMESPACE (the
    /// Lease's namespace) and POD_NAME (this replica's identity) from the downward API. Unset: no
    /// election (run one replica only).
    #[arg(long, env = "PORTVAKT_LEADER_ELECTION_LEASE_NAME")]
    pub leader_election_lease_name: Option<String>,
    /// How long a standby waits after the last renewal it saw before it takes the Lease (whole seconds).
    #[arg(
        long,
        env = "PORTVAKT_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s"
    )]
    pub leader_election_lease_duration: String,
    /// How long the leader keeps leading without a successful renewal (shorter than the lease
    /// duration); then it stops writing and exits.
    #[arg(
        long,
        env = "PORTVAKT_LEADER_ELECTION_RENEW_DEADLINE",
        default_value = "10s"
    )]
    pub leader_election_renew_deadline: String,
    /// How often the leader renews and a standby looks.
    #[arg(
        long,
        env = "PORTVAKT_LEADER_ELECTION_RETRY_PERIOD",
        default_value = "2s"
    )]
    pub leader_election_retry_period: String,
}

/// The AzureAdApplication kind and its provider's settings (azurerator's, reference §6.2).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Entra ID (AzureAdApplication)")]
pub struct EntraArgs {
    /// Run the AzureAdApplication controller. Default: on when --entra-tenant-id is given, off
    /// otherwise (so a Digdir-only install needs no Entra setting).
    #[arg(long, env = "PORTVAKT_AZURE", action = clap::ArgAction::Set)]
    pub azure: Option<bool>,
    /// The tenant's id (GUID): `AZURE_APP_TENANT_ID`, `status.synchronizationTenant` (azurerator's
    /// azure.tenant.id).
    #[arg(long, env = "PORTVAKT_ENTRA_TENANT_ID")]
    pub entra_tenant_id: Option<String>,
    /// The tenant's name, compared with `spec.tenant` (azurerator's azure.tenant.name): resources
    /// naming another tenant are left alone.
    #[arg(long, env = "PORTVAKT_ENTRA_TENANT_NAME", default_value = "")]
    pub entra_tenant_name: String,
    /// Leave resources without `spec.tenant` alone (azurerator's validations.tenant.required).
    #[arg(long, env = "PORTVAKT_ENTRA_TENANT_REQUIRED", default_value_t = false, action = clap::ArgAction::Set)]
    pub entra_tenant_required: bool,
    /// The operator's app (client id). Under Application.ReadWrite.OwnedBy it must be the identity
    /// azurerator ran as, or the existing apps cannot be seen.
    #[arg(long, env = "PORTVAKT_ENTRA_CLIENT_ID")]
    pub entra_client_id: Option<String>,
    /// The operator's credential, one of: a client secret (a file mounted from a Secret) ...
    #[arg(long, env = "PORTVAKT_ENTRA_CLIENT_SECRET_FILE")]
    pub entra_client_secret_file: Option<PathBuf>,
    /// ... a certificate: its private key (PEM) ...
    #[arg(long, env = "PORTVAKT_ENTRA_CERTIFICATE_KEY_FILE")]
    pub entra_certificate_key_file: Option<PathBuf>,
    /// ... and the certificate (PEM), registered on the operator's app ...
    #[arg(long, env = "PORTVAKT_ENTRA_CERTIFICATE_FILE")]
    pub entra_certificate_file: Option<PathBuf>,
    /// ... signed as PS256 (x5t#S256) or RS256 (x5t) ...
    #[arg(
        long,
        env = "PORTVAKT_ENTRA_CERTIFICATE_ALGORITHM",
        default_value = "PS256"
    )]
    pub entra_certificate_algorithm: String,
    /// ... a federated token in a file (Kubernetes workload identity, re-read for every grant) ...
    #[arg(long, env = "PORTVAKT_ENTRA_FEDERATED_TOKEN_FILE")]
    pub entra_federated_token_file: Option<PathBuf>,
    /// ... or a Google-signed ID token from the GCE metadata server (azurerator's
    /// azure.auth.google.enabled: the same federated subject).
    #[arg(long, env = "PORTVAKT_ENTRA_GOOGLE_FEDERATED", default_value_t = false, action = clap::ArgAction::Set)]
    pub entra_google_federated: bool,
    /// Where the metadata server hands out Google ID tokens for Entra.
    #[arg(long, env = "PORTVAKT_ENTRA_GOOGLE_IDENTITY_URL", default_value = portvakt::entra::GOOGLE_METADATA_IDENTITY_URL)]
    pub entra_google_identity_url: String,
    /// The object id of Microsoft Graph's service principal in the tenant (the resource of the
    /// delegated grant every app gets; azurerator's azure.permissiongrant-resource-id).
    #[arg(long, env = "PORTVAKT_ENTRA_PERMISSIONGRANT_RESOURCE_ID")]
    pub entra_permissiongrant_resource_id: Option<String>,
    /// The identity platform's authority (the token endpoint is {authority}/{tenant}/oauth2/v2.0/token).
    #[arg(long, env = "PORTVAKT_ENTRA_AUTHORITY", default_value = portvakt::entra::DEFAULT_AUTHORITY)]
    pub entra_authority: String,
    /// Microsoft Graph's v1.0 base URL.
    #[arg(long, env = "PORTVAKT_ENTRA_GRAPH_URL", default_value = portvakt::entra::DEFAULT_GRAPH_URL)]
    pub entra_graph_url: String,
    /// Service principals require an app role assignment (azurerator's
    /// azure.features.app-role-assignment-required.enabled; the NAIS chart turns it on).
    #[arg(long, env = "PORTVAKT_ENTRA_APP_ROLE_ASSIGNMENT_REQUIRED", default_value_t = false, action = clap::ArgAction::Set)]
    pub entra_app_role_assignment_required: bool,
    /// Assign `spec.claims.groups` to the apps (azurerator's groups-assignment.enabled; the NAIS
    /// chart turns it on).
    #[arg(long, env = "PORTVAKT_ENTRA_GROUPS_ASSIGNMENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub entra_groups_assignment: bool,
    /// Comma-separated group ids assigned for `allowAllUsers: true` (with assignment required).
    #[arg(long, env = "PORTVAKT_ENTRA_ALL_USERS_GROUP_IDS", default_value = "")]
    pub entra_all_users_group_ids: String,
    /// `groupMembershipClaims` of apps whose spec has none.
    #[arg(
        long,
        env = "PORTVAKT_ENTRA_GROUP_MEMBERSHIP_CLAIM_DEFAULT",
        default_value = "ApplicationGroup"
    )]
    pub entra_group_membership_claim_default: String,
    /// Credentials older than this are replaced (azurerator's secret-rotation.max-age; the NAIS
    /// chart sets 168h).
    #[arg(
        long,
        env = "PORTVAKT_ENTRA_SECRET_ROTATION_MAX_AGE",
        default_value = "2880h"
    )]
    pub entra_secret_rotation_max_age: String,
    /// How often resources whose pre-authorized apps were not found (or are in other clusters) are
    /// looked at again (azurerator's controller.sweep-interval).
    #[arg(long, env = "PORTVAKT_ENTRA_SWEEP_INTERVAL", default_value = "5m")]
    pub entra_sweep_interval: String,
    /// How long one call to Graph may take.
    #[arg(long, env = "PORTVAKT_ENTRA_REQUEST_TIMEOUT", default_value = "30s")]
    pub entra_request_timeout: String,
}

impl EntraArgs {
    /// Whether the AzureAdApplication controller runs.
    pub fn enabled(&self) -> bool {
        self.azure.unwrap_or(self.entra_tenant_id.is_some())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// This cluster's name: registrations are identified as `<cluster>:<namespace>:<name>`.
    /// Use the name digdirator used, or every client is created again.
    #[arg(long, env = "PORTVAKT_CLUSTER_NAME")]
    pub cluster_name: String,
    #[command(flatten)]
    pub digdir: DigdirArgs,
    #[command(flatten)]
    pub entra: EntraArgs,
    /// Concurrent reconciles per controller.
    #[arg(long, env = "PORTVAKT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// How often each provider's steady-state check runs (one list for all resources), and how
    /// often what no watch reports (old Secrets still referenced by workloads) is looked at again.
    /// A resource is otherwise reconciled only when it changes or something is due (its daily full
    /// synchronisation, a key renewal). A duration: 30s, 10m, 1h; a plain number is seconds; at
    /// least 1s.
    #[arg(long, env = "PORTVAKT_RESYNC_PERIOD", default_value = "1h")]
    pub resync_period: String,
    /// Health and metrics endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "PORTVAKT_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// /healthz fails (and the kubelet restarts the container) when a pass has been running this
    /// long: every call has a timeout, so such a pass is hung.
    #[arg(long, env = "PORTVAKT_STUCK_PASS_AFTER", default_value = "10m")]
    pub stuck_pass_after: String,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// Make no writes anywhere; report what would be done per resource, with totals, and exit.
    #[arg(long)]
    pub observe: bool,
}

/// Parses "20ms", "90s", "5m", "1h", "2d" or a plain number of seconds; the error names `setting`.
/// Every duration flag of the binary goes through it.
pub fn parse_duration(setting: &str, value: &str) -> anyhow::Result<Duration> {
    let v = value.trim();
    let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = digits.parse().with_context(|| {
        format!("{setting}: {value:?} is not a duration like 20ms, 30s, 10m or 1h")
    })?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        _ => bail!("{setting}: {value:?} has an unknown unit (use ms, s, m, h or d)"),
    })
}

/// [`parse_duration`], refusing values below `min` (a zero resync period would busy-loop).
pub fn parse_duration_min(setting: &str, value: &str, min: Duration) -> anyhow::Result<Duration> {
    let d = parse_duration(setting, value)?;
    if d < min {
        bail!(
            "{setting}: {value:?} is too short; the minimum is {}",
            human(min)
        );
    }
    Ok(d)
}

fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

fn required<'a, T>(value: &'a Option<T>, setting: &str, why: &str) -> anyhow::Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{setting} is required {why}"))
}

const FOR_DIGDIR: &str =
    "while a Digdir kind is enabled (turn them off with --idporten=false --maskinporten=false)";

fn digdir_config(args: &DigdirArgs) -> anyhow::Result<DigdirConfig> {
    let env_name = required(&args.digdir_env, "--digdir-env", FOR_DIGDIR)?;
    let env: DigdirEnvironment = env_name
        .parse()
        .map_err(|_| anyhow::anyhow!("--digdir-env: {env_name:?} is not `test` or `prod`"))?;
    let admin = required(
        &args.digdir_admin_client_id,
        "--digdir-admin-client-id",
        FOR_DIGDIR,
    )?;
    if admin.trim().is_empty() {
        bail!("--digdir-admin-client-id is empty");
    }
    let mut config = DigdirConfig::preset(env, admin.trim());
    if let Some(url) = &args.digdir_base_url {
        config.base_url = url.clone();
    }
    if let Some(url) = &args.maskinporten_well_known_url {
        config.maskinporten_well_known_url = url.clone();
    }
    if let Some(url) = &args.idporten_well_known_url {
        config.idporten_well_known_url = url.clone();
    }
    config.scopes = args
        .digdir_admin_scopes
        .split_whitespace()
        .map(str::to_string)
        .collect();
    config.request_timeout = parse_duration_min(
        "--digdir-request-timeout",
        &args.digdir_request_timeout,
        Duration::from_millis(100),
    )?;
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("Digdir configuration: {problem}"))?;
    Ok(config)
}

fn signer(args: &DigdirArgs) -> anyhow::Result<Arc<dyn Signer>> {
    // The rule (key file or KMS; chain or kid) is checked before anything is read.
    let source = args.admin_key.source()?;
    source.build(Clock::system())
}

/// The Digdir settings, checked.
pub struct DigdirSettings {
    config: DigdirConfig,
    signer: Arc<dyn Signer>,
    key_propagation: Duration,
    next_key_delay: Duration,
    client_name: String,
    client_uri: String,
    maskinporten_default_scope: Option<String>,
    maskinporten_scope_prefix: Option<String>,
}

/// The settings checked before anything is read or written.
pub struct Settings {
    digdir: Option<DigdirSettings>,
    entra: Option<EntraSettings>,
    /// The leader Lease (`None`: no election).
    pub lease: Option<LeaseSettings>,
    pub stuck_pass_after: Duration,
}

/// The leader election's settings: the Lease from the flags, its namespace from `POD_NAMESPACE`
/// and this replica's identity from `POD_NAME`.
fn lease_settings(args: &LeaderElectionArgs) -> anyhow::Result<Option<LeaseSettings>> {
    let Some(name) = args
        .leader_election_lease_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{var} is required with --leader-election-lease-name (set it from the downward API: fieldRef metadata.{})",
                    if var == "POD_NAME" { "name" } else { "namespace" }
                )
            })
    };
    let namespace = from_env("POD_NAMESPACE")?;
    let identity = from_env("POD_NAME")?;
    let mut lease = LeaseSettings::new(name, namespace.trim(), identity.trim());
    lease.lease_duration = parse_duration(
        "--leader-election-lease-duration",
        &args.leader_election_lease_duration,
    )?;
    lease.renew_deadline = parse_duration(
        "--leader-election-renew-deadline",
        &args.leader_election_renew_deadline,
    )?;
    lease.retry_period = parse_duration(
        "--leader-election-retry-period",
        &args.leader_election_retry_period,
    )?;
    lease.validate().map_err(|(setting, problem)| {
        let setting = match setting {
            "namespace" => "POD_NAMESPACE".to_string(),
            "identity" => "POD_NAME".to_string(),
            other => format!("--leader-election-{other}"),
        };
        anyhow::anyhow!("{setting}: {problem}")
    })?;
    Ok(Some(lease))
}

const FOR_ENTRA: &str = "while the AzureAdApplication controller is enabled (--azure, on when --entra-tenant-id is given)";

/// The Entra settings, checked.
pub struct EntraSettings {
    config: portvakt::entra::EntraConfig,
    core: portvakt::core::entra::Config,
    sweep_interval: Duration,
}

fn entra_settings(args: &EntraArgs, cluster: &str) -> anyhow::Result<EntraSettings> {
    use portvakt::entra::{
        AssertionAlgorithm, CertificateCredential, ClientSecret, EntraConfig, OperatorCredential,
    };
    let tenant = required(&args.entra_tenant_id, "--entra-tenant-id", FOR_ENTRA)?
        .trim()
        .to_string();
    let client = required(&args.entra_client_id, "--entra-client-id", FOR_ENTRA)?
        .trim()
        .to_string();
    if client.is_empty() {
        bail!("--entra-client-id is empty");
    }
    let grant_resource = required(
        &args.entra_permissiongrant_resource_id,
        "--entra-permissiongrant-resource-id",
        FOR_ENTRA,
    )?
    .trim()
    .to_string();
    if uuid::Uuid::parse_str(&grant_resource).is_err() {
        bail!(
            "--entra-permissiongrant-resource-id: {grant_resource:?} is not an object id (the GUID of Microsoft Graph's service principal in the tenant)"
        );
    }
    let given: Vec<&str> = [
        (
            "--entra-client-secret-file",
            args.entra_client_secret_file.is_some(),
        ),
        (
            "--entra-certificate-key-file/--entra-certificate-file",
            args.entra_certificate_key_file.is_some() || args.entra_certificate_file.is_some(),
        ),
        (
            "--entra-federated-token-file",
            args.entra_federated_token_file.is_some(),
        ),
        ("--entra-google-federated", args.entra_google_federated),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if given.len() != 1 {
        bail!(
            "the operator's Entra credential: give exactly one of --entra-client-secret-file, --entra-certificate-key-file with --entra-certificate-file, --entra-federated-token-file or --entra-google-federated{}",
            if given.is_empty() {
                String::new()
            } else {
                format!(" (given: {})", given.join(", "))
            }
        );
    }
    let credential = if let Some(path) = &args.entra_client_secret_file {
        OperatorCredential::ClientSecret(
            ClientSecret::from_file(path)
                .map_err(|e| anyhow::anyhow!("--entra-client-secret-file: {e}"))?,
        )
    } else if args.entra_certificate_key_file.is_some() || args.entra_certificate_file.is_some() {
        let key = required(
            &args.entra_certificate_key_file,
            "--entra-certificate-key-file",
            "with --entra-certificate-file",
        )?;
        let cert = required(
            &args.entra_certificate_file,
            "--entra-certificate-file",
            "with --entra-certificate-key-file",
        )?;
        let algorithm = match args
            .entra_certificate_algorithm
            .to_ascii_uppercase()
            .as_str()
        {
            "PS256" => AssertionAlgorithm::Ps256,
            "RS256" => AssertionAlgorithm::Rs256,
            other => bail!("--entra-certificate-algorithm: {other:?} is not PS256 or RS256"),
        };
        OperatorCredential::Certificate(
            CertificateCredential::from_files(key, cert, algorithm).map_err(|e| {
                anyhow::anyhow!("--entra-certificate-key-file/--entra-certificate-file: {e}")
            })?,
        )
    } else if let Some(path) = &args.entra_federated_token_file {
        OperatorCredential::FederatedTokenFile(path.clone())
    } else {
        OperatorCredential::GoogleMetadata {
            identity_url: args.entra_google_identity_url.clone(),
        }
    };
    let mut config = EntraConfig::new(tenant.clone(), client, credential);
    config.authority = args.entra_authority.clone();
    config.graph_url = args.entra_graph_url.clone();
    config.page_size = Some(999);
    config.request_timeout = parse_duration_min(
        "--entra-request-timeout",
        &args.entra_request_timeout,
        Duration::from_millis(100),
    )?;
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("Entra configuration: {problem}"))?;
    let claims = portvakt::core::entra::application::normalise_group_membership_claims(
        &args.entra_group_membership_claim_default,
    )
    .ok_or_else(|| {
        anyhow::anyhow!(
            "--entra-group-membership-claim-default: {:?} is not one of {}",
            args.entra_group_membership_claim_default,
            portvakt::core::entra::application::GROUP_MEMBERSHIP_CLAIMS.join(", ")
        )
    })?;
    let all_users: Vec<String> = args
        .entra_all_users_group_ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = all_users.iter().find(|g| uuid::Uuid::parse_str(g).is_err()) {
        bail!("--entra-all-users-group-ids: {bad:?} is not a group's object id (a GUID)");
    }
    let max_age = parse_duration_min(
        "--entra-secret-rotation-max-age",
        &args.entra_secret_rotation_max_age,
        Duration::from_secs(60),
    )?;
    let sweep_interval = parse_duration_min(
        "--entra-sweep-interval",
        &args.entra_sweep_interval,
        Duration::from_secs(1),
    )?;
    let core = portvakt::core::entra::Config {
        cluster_name: cluster.to_string(),
        tenant_id: tenant,
        tenant_name: args.entra_tenant_name.trim().to_string(),
        tenant_required: args.entra_tenant_required,
        permission_grant_resource_id: grant_resource,
        assignment_required: args.entra_app_role_assignment_required,
        groups_assignment: args.entra_groups_assignment,
        all_users_group_ids: all_users,
        group_membership_claim_default: claims.to_string(),
        max_age,
        ..portvakt::core::entra::Config::default()
    };
    Ok(EntraSettings {
        config,
        core,
        sweep_interval,
    })
}

/// The tenant's OpenID configuration (issuer, JWKS and token endpoint for the Secrets), fetched at
/// start as azurerator does.
async fn entra_metadata(
    config: &portvakt::entra::EntraConfig,
) -> anyhow::Result<portvakt::core::ProviderMetadata> {
    let url = format!(
        "{}/{}/v2.0/.well-known/openid-configuration",
        config.authority.trim_end_matches('/'),
        config.tenant_id
    );
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .context("HTTP client")?;
    let doc: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| {
            format!("--entra-authority: fetching the tenant's OpenID configuration {url}")
        })?
        .json()
        .await
        .with_context(|| format!("--entra-authority: {url} is not JSON"))?;
    let field = |name: &str| -> anyhow::Result<String> {
        doc.get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .with_context(|| format!("--entra-authority: {url} has no {name}"))
    };
    Ok(portvakt::core::ProviderMetadata {
        well_known_url: url.clone(),
        issuer: field("issuer")?,
        jwks_uri: field("jwks_uri")?,
        token_endpoint: field("token_endpoint")?,
    })
}

/// Builds the Entra provider: its Graph client and the tenant's metadata.
async fn entra_provider(
    s: EntraSettings,
    clock: Clock,
) -> anyhow::Result<portvakt::controller::entra_kinds::EntraProvider> {
    let metadata = entra_metadata(&s.config).await?;
    let graph = portvakt::entra::GraphClient::new(&s.config, clock)
        .map_err(|e| anyhow::anyhow!("Graph client: {e}"))?;
    let core = portvakt::core::entra::Config { metadata, ..s.core };
    Ok(portvakt::controller::entra_kinds::EntraProvider::new(
        graph,
        core,
        s.config.client_id.clone(),
        s.sweep_interval,
    ))
}

/// Checks every setting of every enabled provider, failing on the first bad one and naming it.
pub fn settings(args: &RunArgs) -> anyhow::Result<Settings> {
    if args.cluster_name.trim().is_empty() {
        bail!("--cluster-name is empty: registrations are named <cluster>:<namespace>:<name>");
    }
    let d = &args.digdir;
    let digdir = if d.idporten || d.maskinporten {
        let config = digdir_config(d)?;
        let key_propagation = parse_duration("--key-propagation", &d.key_propagation)?;
        let next_key_delay = parse_duration("--next-key-delay", &d.next_key_delay)?;
        let client_name = required(&d.client_name, "--client-name", FOR_DIGDIR)?.clone();
        let client_uri = required(&d.client_uri, "--client-uri", FOR_DIGDIR)?.clone();
        url::Url::parse(&client_uri)
            .map_err(|e| anyhow::anyhow!("--client-uri: {client_uri:?} is not a URL ({e})"))?;
        let signer = signer(d)?;
        let maskinporten_scope_prefix = scope_prefix(d.maskinporten_scope_prefix.as_deref())?;
        Some(DigdirSettings {
            config,
            signer,
            key_propagation,
            next_key_delay,
            client_name,
            client_uri,
            maskinporten_default_scope: d
                .maskinporten_default_scope
                .clone()
                .filter(|s| !s.trim().is_empty()),
            maskinporten_scope_prefix,
        })
    } else {
        None
    };
    let entra = if args.entra.enabled() {
        Some(entra_settings(&args.entra, args.cluster_name.trim())?)
    } else {
        None
    };
    let lease = lease_settings(&args.leader_election)?;
    let stuck_pass_after = parse_duration_min(
        "--stuck-pass-after",
        &args.stuck_pass_after,
        Duration::from_secs(1),
    )?;
    Ok(Settings {
        digdir,
        entra,
        lease,
        stuck_pass_after,
    })
}

/// `--maskinporten-scope-prefix`: unset or empty is none; otherwise one word as Digdir assigns them
/// (`nav`, `kartverket`), without the `:` that follows it in a scope name.
fn scope_prefix(value: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "--maskinporten-scope-prefix: {v:?} is not a scope prefix (lowercase letters and digits, like `nav`; without the `:` that follows it in a scope name)"
        );
    }
    Ok(Some(v.to_string()))
}

/// Builds the Digdir provider: its client, the providers' metadata (fetched, cancellable).
async fn digdir_provider(
    cluster_name: &str,
    s: DigdirSettings,
    clock: Clock,
) -> anyhow::Result<DigdirProvider> {
    let request_timeout = s.config.request_timeout;
    let digdir = DigdirClient::new(&s.config, s.signer, clock.clone())
        .map_err(|e| anyhow::anyhow!("Digdir client: {e}"))?;
    let http = digdir.http().clone();
    let idporten = portvakt::digdir::fetch_metadata(
        &http,
        &s.config.idporten_well_known_url,
        "/.well-known/openid-configuration",
    )
    .await
    .map_err(|e| anyhow::anyhow!("--idporten-well-known-url: {e}"))?;
    let maskinporten = portvakt::digdir::fetch_metadata(
        &http,
        &s.config.maskinporten_well_known_url,
        "/.well-known/oauth-authorization-server",
    )
    .await
    .map_err(|e| anyhow::anyhow!("--maskinporten-well-known-url: {e}"))?;
    let core_config = portvakt::core::digdir::Config {
        cluster_name: cluster_name.to_string(),
        client_name: s.client_name,
        client_uri: s.client_uri,
        maskinporten_default_scope: s.maskinporten_default_scope,
        maskinporten_scope_prefix: s.maskinporten_scope_prefix,
        idporten: portvakt::core::ProviderMetadata {
            well_known_url: s.config.idporten_well_known_url.clone(),
            issuer: idporten.issuer,
            jwks_uri: idporten.jwks_uri,
            token_endpoint: idporten.token_endpoint,
        },
        maskinporten: portvakt::core::ProviderMetadata {
            well_known_url: s.config.maskinporten_well_known_url.clone(),
            issuer: maskinporten.issuer,
            jwks_uri: maskinporten.jwks_uri,
            token_endpoint: maskinporten.token_endpoint,
        },
        key_propagation: s.key_propagation,
        next_key_delay: s.next_key_delay,
        ..portvakt::core::digdir::Config::default()
    };
    Ok(DigdirProvider::new(
        digdir,
        core_config,
        clock,
        request_timeout,
    ))
}

/// Builds the operator's context from checked settings: the shared part and every enabled
/// provider, whose clients report to the metrics and send writes only while `gate` is open.
pub async fn build_context(
    args: &RunArgs,
    settings: Settings,
    clock: Clock,
    client: kube::Client,
    gate: Arc<WriteGate>,
) -> anyhow::Result<Arc<Context>> {
    let cluster = args.cluster_name.trim();
    let shared = Shared::new(client, clock.clone(), cluster);
    let metrics = shared.metrics.clone();
    let mut ctx = Context::new(shared);
    if let Some(d) = settings.digdir {
        match d.signer.key_reference() {
            KeyReference::X5c(chain) => match portvakt::metrics::x5c_leaf_not_after(&chain) {
                Ok(at) => metrics.set_admin_certificate_expiry(Some(at)),
                Err(problem) => tracing::warn!(
                    problem = %problem,
                    "--digdir-admin-cert-chain-file: the expiry of the admin certificate is not in the metrics"
                ),
            },
            KeyReference::Kid(_) => metrics.set_admin_certificate_expiry(None),
        }
        let provider = Arc::new(digdir_provider(cluster, d, clock.clone()).await?);
        provider.client.set_hooks(Arc::new(ProviderHooks {
            provider: "digdir",
            metrics: metrics.clone(),
            gate: gate.clone(),
        }));
        metrics.add_collector(Arc::new(DigdirStats(provider.clone())));
        ctx = ctx.with_provider(provider);
    }
    if let Some(e) = settings.entra {
        let provider = entra_provider(e, clock).await?;
        provider.graph.set_hooks(Arc::new(ProviderHooks {
            provider: "entra",
            metrics: metrics.clone(),
            gate,
        }));
        ctx = ctx.with_provider(Arc::new(provider));
    }
    Ok(Arc::new(ctx))
}

/// The controller options from the flags.
pub fn run_options(args: &RunArgs, shutdown: CancellationToken) -> anyhow::Result<RunOptions> {
    let resync_period = parse_duration_min(
        "--resync-period",
        &args.resync_period,
        Duration::from_secs(1),
    )?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let mut disabled = std::collections::BTreeSet::new();
    if !args.digdir.idporten {
        disabled.insert("IDPortenClient".to_string());
    }
    if !args.digdir.maskinporten {
        disabled.insert("MaskinportenClient".to_string());
    }
    if !args.entra.enabled() {
        disabled.insert("AzureAdApplication".to_string());
    }
    if !args.digdir.idporten && !args.digdir.maskinporten && !args.entra.enabled() {
        bail!(
            "--idporten=false, --maskinporten=false and no Entra tenant (--entra-tenant-id, or --azure=true): no controller left to run"
        );
    }
    Ok(RunOptions {
        disabled,
        concurrency: args.concurrency,
        resync_period,
        shutdown,
    })
}

/// Cancels `shutdown` on SIGTERM or SIGINT. Installed before anything else: as PID 1 in a container a
/// process without a handler ignores SIGTERM.
pub fn install_signal_handlers(shutdown: CancellationToken) -> anyhow::Result<()> {
    let on_int = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("SIGINT: stopping");
            on_int.cancel();
        }
    });
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            term.recv().await;
            tracing::info!("SIGTERM: stopping");
            shutdown.cancel();
        });
    }
    Ok(())
}

/// Runs `fut` unless `shutdown` comes first.
async fn or_stop<T>(
    shutdown: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        v = fut => Some(v),
    }
}

/// How long passes under way get to finish after a stop was asked for (a pass cut short is safe:
/// every step converges on the next start).
const STOP_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    install_signal_handlers(shutdown.clone())?;
    let opts = run_options(&args, shutdown.clone())?;
    let settings = settings(&args)?;
    let Some(config) = or_stop(&shutdown, kube::Config::infer()).await else {
        return Ok(());
    };
    let mut config =
        config.context("Kubernetes: no usable kubeconfig or in-cluster configuration")?;
    let api_url = config.cluster_url.to_string();
    config
        .headers
        .push((http::header::USER_AGENT, user_agent()));
    let clock = Clock::system();
    let lease = settings.lease.clone();
    let stuck_after = settings.stuck_pass_after;
    // Without leader election this is the only replica; with it, writes wait for the Lease.
    let gate = if lease.is_some() && !args.observe {
        WriteGate::closed(clock.clone())
    } else {
        WriteGate::open(clock.clone())
    };
    let building = |what: &'static str| {
        let api_url = api_url.clone();
        move || format!("Kubernetes API server {api_url}: building the {what}")
    };
    let client = ClientBuilder::try_from(config.clone())
        .with_context(building("client"))?
        .with_layer(&WriteGateLayer(gate.clone()))
        .build();
    let lease_client = kube::Client::try_from(config).with_context(building("Lease client"))?;
    let Some(ctx) = or_stop(
        &shutdown,
        build_context(&args, settings, clock, client.clone(), gate.clone()),
    )
    .await
    else {
        return Ok(());
    };
    let ctx = ctx?;
    if args.observe {
        let Some(report) = or_stop(&shutdown, controller::observe(&ctx, &opts)).await else {
            return Ok(());
        };
        let report = report.map_err(|e| anyhow::anyhow!("observing: {e}"))?;
        print!("{report}");
        return Ok(());
    }
    let health = super::health::serve(
        args.metrics_address,
        ctx.clone(),
        api_url.clone(),
        shutdown.clone(),
        stuck_after,
    )
    .await
    .with_context(|| {
        format!(
            "--metrics-address: cannot listen on {}",
            args.metrics_address
        )
    })?;
    tracing::info!(cluster = %args.cluster_name, api_server = %api_url, metrics = %health, "portvakt running");
    match or_stop(&shutdown, controller::count_unhandled(&ctx, &opts)).await {
        None => return Ok(()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "counting resources of kinds no controller handles failed")
        }
        Some(Ok(counts)) => {
            for (kind, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
                tracing::info!(
                    kind,
                    count = n,
                    "{n} {kind} resources, but no enabled controller handles this kind: they are left alone (no event, finalizer or status), as another operator may still own them"
                );
            }
        }
    }
    let counters = ctx.shared.clone();
    let elected = lease.is_some();
    let controllers = async move {
        match lease {
            Some(settings) => {
                let election = Election {
                    client: lease_client,
                    settings,
                    gate,
                };
                controller::leader::run_elected(ctx, opts, election).await
            }
            None => {
                controller::run(ctx, opts).await;
                Ok(())
            }
        }
    };
    tokio::pin!(controllers);
    let stopped = async {
        shutdown.cancelled().await;
        // Once no pass is under way there is nothing to wait for — except, with leader election,
        // the Lease's release, which the controllers' future does once they have drained.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        loop {
            let c = &counters.counters;
            let busy = portvakt::controller::Counters::get(&c.reconciles)
                > portvakt::controller::Counters::get(&c.passes_done);
            if !busy && !elected {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "passes still under way {}s after the stop was asked for; exiting (they resume on the next start)",
                    STOP_GRACE.as_secs()
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        ended = &mut controllers => {
            // Lost the Lease: exit, so a fresh start re-joins as a standby with fresh caches.
            ended.map_err(|e| anyhow::anyhow!("{e}; exiting"))?;
        }
        _ = stopped => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// `portvakt/<version> (<POD_NAME>)`: the API server's audit log (and the embedded server's
/// journal) tells the replicas apart.
fn user_agent() -> http::HeaderValue {
    let version = concat!("portvakt/", env!("CARGO_PKG_VERSION"));
    std::env::var("POD_NAME")
        .ok()
        .and_then(|pod| http::HeaderValue::from_str(&format!("{version} ({pod})")).ok())
        .unwrap_or(http::HeaderValue::from_static(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("x", "20ms").unwrap(),
            Duration::from_millis(20)
        );
        assert_eq!(
            parse_duration("x", "2d").unwrap(),
            Duration::from_secs(2 * 86400)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("x", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        let err = parse_duration("--resync-period", "soon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--resync-period"), "{err}");
        let err = parse_duration("--resync-period", "5y")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown unit"), "{err}");
        let err = parse_duration_min("--resync-period", "0s", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--resync-period") && err.contains("minimum is 1s"),
            "{err}"
        );
    }

    #[test]
    fn scope_prefixes() {
        assert_eq!(scope_prefix(None).unwrap(), None);
        assert_eq!(scope_prefix(Some("  ")).unwrap(), None);
        assert_eq!(scope_prefix(Some(" nav ")).unwrap().as_deref(), Some("nav"));
        for bad in ["nav:", "Nav", "nav test", "nav/api"] {
            let err = scope_prefix(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("--maskinporten-scope-prefix"), "{err}");
        }
    }
}
