//! `portvakt run`: the controllers against a real (or embedded) cluster and Digdir.
//!
//! Every flag has a `PORTVAKT_*` environment equivalent. Bad configuration fails at start,
//! naming the setting, before anything is read or written.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use portvakt::clock::Clock;
use portvakt::controller::{self, Context, RunOptions};
use portvakt::digdir::{DigdirClient, DigdirConfig, DigdirEnvironment};
use portvakt::keys::{FileSigner, Signer};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// This cluster's name: Digdir registrations are identified as `<cluster>:<namespace>:<name>`.
    /// Use the name digdirator used, or every client is created again.
    #[arg(long, env = "PORTVAKT_CLUSTER_NAME")]
    pub cluster_name: String,
    /// Digdir environment whose URLs are used: `test` or `prod`.
    #[arg(long, env = "PORTVAKT_DIGDIR_ENV")]
    pub digdir_env: String,
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
    pub digdir_admin_client_id: String,
    /// Space-separated admin scopes asked for in the grant.
    #[arg(
        long,
        env = "PORTVAKT_DIGDIR_ADMIN_SCOPES",
        default_value = "idporten:dcr.write idporten:dcr.read idporten:scopes.write"
    )]
    pub digdir_admin_scopes: String,
    /// The admin private key (PKCS#8/PKCS#1 PEM or a JWK), mounted from a Secret.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_KEY_FILE")]
    pub digdir_admin_key_file: PathBuf,
    /// The business certificate chain (PEM, leaf first) sent as `x5c`.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE")]
    pub digdir_admin_cert_chain_file: Option<PathBuf>,
    /// Instead of a certificate chain: the `kid` of a key registered on the admin client.
    #[arg(long, env = "PORTVAKT_DIGDIR_ADMIN_KID")]
    pub digdir_admin_kid: Option<String>,
    /// Default client name for registrations whose spec has none.
    #[arg(
        long,
        env = "PORTVAKT_CLIENT_NAME",
        default_value = "ARBEIDS- OG VELFERDSETATEN"
    )]
    pub client_name: String,
    /// Default client URI (and post-logout redirect URI) for registrations whose spec has none.
    #[arg(
        long,
        env = "PORTVAKT_CLIENT_URI",
        default_value = "https://www.nav.no"
    )]
    pub client_uri: String,
    /// Scope registered on a MaskinportenClient that consumes none (Digdir refuses clients without scopes).
    #[arg(
        long,
        env = "PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE",
        default_value = "nav:test/api"
    )]
    pub maskinporten_default_scope: String,
    /// Run the IDPortenClient controller.
    #[arg(long, env = "PORTVAKT_IDPORTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub idporten: bool,
    /// Run the MaskinportenClient controller.
    #[arg(long, env = "PORTVAKT_MASKINPORTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub maskinporten: bool,
    /// Concurrent reconciles per controller.
    #[arg(long, env = "PORTVAKT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// How often every resource is looked at again (e.g. 30s, 10m, 1h).
    #[arg(long, env = "PORTVAKT_RESYNC_PERIOD", default_value = "1h")]
    pub resync_period: String,
    /// How long Digdir may take to accept a newly registered key (documented: up to 2 minutes).
    #[arg(long, env = "PORTVAKT_KEY_PROPAGATION", default_value = "2m")]
    pub key_propagation: String,
    /// How long after a resource's first key is registered its next key (kept for a later
    /// rotation) is made: a burst of new resources spends its CPU on first keys first.
    #[arg(long, env = "PORTVAKT_NEXT_KEY_DELAY", default_value = "5m")]
    pub next_key_delay: String,
    /// Health and metrics endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "PORTVAKT_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
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

fn digdir_config(args: &RunArgs) -> anyhow::Result<DigdirConfig> {
    let env: DigdirEnvironment = args.digdir_env.parse().map_err(|_| {
        anyhow::anyhow!(
            "--digdir-env: {:?} is not `test` or `prod`",
            args.digdir_env
        )
    })?;
    if args.digdir_admin_client_id.trim().is_empty() {
        bail!("--digdir-admin-client-id is empty");
    }
    let mut config = DigdirConfig::preset(env, args.digdir_admin_client_id.trim());
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
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("Digdir configuration: {problem}"))?;
    Ok(config)
}

fn signer(args: &RunArgs) -> anyhow::Result<Arc<dyn Signer>> {
    if args.digdir_admin_cert_chain_file.is_none() && args.digdir_admin_kid.is_none() {
        bail!(
            "--digdir-admin-cert-chain-file or --digdir-admin-kid: one is needed so Maskinporten can verify the admin grant"
        );
    }
    let signer = FileSigner::from_files(
        &args.digdir_admin_key_file,
        args.digdir_admin_cert_chain_file.as_deref(),
        args.digdir_admin_kid.clone(),
    )
    .map_err(|e| anyhow::anyhow!("--digdir-admin-key-file/--digdir-admin-cert-chain-file: {e}"))?;
    Ok(Arc::new(signer))
}

/// The settings checked before anything is read or written.
pub struct Settings {
    config: DigdirConfig,
    signer: Arc<dyn Signer>,
    key_propagation: Duration,
    next_key_delay: Duration,
}

/// Checks every setting, failing on the first bad one and naming it.
pub fn settings(args: &RunArgs) -> anyhow::Result<Settings> {
    if args.cluster_name.trim().is_empty() {
        bail!("--cluster-name is empty: registrations are named <cluster>:<namespace>:<name>");
    }
    let config = digdir_config(args)?;
    let key_propagation = parse_duration("--key-propagation", &args.key_propagation)?;
    let next_key_delay = parse_duration("--next-key-delay", &args.next_key_delay)?;
    let signer = signer(args)?;
    Ok(Settings {
        config,
        signer,
        key_propagation,
        next_key_delay,
    })
}

/// Builds everything from checked settings: the Digdir client, the providers' metadata and the context.
pub async fn build_context(
    args: &RunArgs,
    settings: Settings,
    clock: Clock,
    client: kube::Client,
) -> anyhow::Result<Arc<Context>> {
    let Settings {
        config,
        signer,
        key_propagation,
        next_key_delay,
    } = settings;
    let digdir = DigdirClient::new(&config, signer, clock.clone())
        .map_err(|e| anyhow::anyhow!("Digdir client: {e}"))?;
    let http = digdir.http().clone();
    let idporten = portvakt::digdir::fetch_metadata(
        &http,
        &config.idporten_well_known_url,
        "/.well-known/openid-configuration",
    )
    .await
    .map_err(|e| anyhow::anyhow!("--idporten-well-known-url: {e}"))?;
    let maskinporten = portvakt::digdir::fetch_metadata(
        &http,
        &config.maskinporten_well_known_url,
        "/.well-known/oauth-authorization-server",
    )
    .await
    .map_err(|e| anyhow::anyhow!("--maskinporten-well-known-url: {e}"))?;
    let core_config = portvakt::core::Config {
        cluster_name: args.cluster_name.trim().to_string(),
        client_name: args.client_name.clone(),
        client_uri: args.client_uri.clone(),
        maskinporten_default_scope: args.maskinporten_default_scope.clone(),
        idporten: portvakt::core::ProviderMetadata {
            well_known_url: config.idporten_well_known_url.clone(),
            issuer: idporten.issuer,
            jwks_uri: idporten.jwks_uri,
            token_endpoint: idporten.token_endpoint,
        },
        maskinporten: portvakt::core::ProviderMetadata {
            well_known_url: config.maskinporten_well_known_url.clone(),
            issuer: maskinporten.issuer,
            jwks_uri: maskinporten.jwks_uri,
            token_endpoint: maskinporten.token_endpoint,
        },
        key_propagation,
        next_key_delay,
        ..portvakt::core::Config::default()
    };
    Ok(Context::new(client, digdir, core_config, clock))
}

/// The controller options from the flags.
pub fn run_options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let resync_period = parse_duration("--resync-period", &args.resync_period)?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !args.idporten && !args.maskinporten {
        bail!("--idporten=false and --maskinporten=false: no controller left to run");
    }
    Ok(RunOptions {
        idporten: args.idporten,
        maskinporten: args.maskinporten,
        concurrency: args.concurrency,
        resync_period,
        shutdown: CancellationToken::new(),
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let opts = run_options(&args)?;
    let settings = settings(&args)?;
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes: no usable kubeconfig or in-cluster configuration")?;
    let ctx = build_context(&args, settings, Clock::system(), client).await?;
    if args.observe {
        let report = controller::observe(&ctx, &opts)
            .await
            .map_err(|e| anyhow::anyhow!("observing: {e}"))?;
        print!("{report}");
        return Ok(());
    }
    let health = super::health::serve(args.metrics_address, ctx.clone())
        .await
        .with_context(|| {
            format!(
                "--metrics-address: cannot listen on {}",
                args.metrics_address
            )
        })?;
    tracing::info!(cluster = %args.cluster_name, metrics = %health, "portvakt running");
    let shutdown = opts.shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
    #[cfg(unix)]
    {
        let shutdown = opts.shutdown.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                shutdown.cancel();
            });
        }
    }
    controller::run(ctx, opts).await;
    Ok(())
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
    }
}
