//! `portvakt sim`: the embedded API server, the Digdir simulator and the Entra simulator on
//! loopback, with a kubeconfig for kubectl and the settings `portvakt run` needs to talk to the
//! simulators.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use portvakt::clock::Clock;
use portvakt_sim::digdir::{DigdirSim, Seed};
use portvakt_sim::graph::{GraphSeed, GraphSim, MICROSOFT_GRAPH_APP_ID};
use portvakt_sim::kube::ApiServer;
use portvakt_sim::{ServeHandle, serve_on};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Address of the Kubernetes API server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", env = "PORTVAKT_SIM_LISTEN")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig that points at the embedded server.
    #[arg(
        long,
        default_value = "portvakt-sim.kubeconfig",
        env = "PORTVAKT_SIM_KUBECONFIG"
    )]
    pub kubeconfig: PathBuf,
    /// Install portvakt's CRDs on start (otherwise `kubectl apply -f crds/` does it).
    #[arg(long)]
    pub install_crds: bool,
    /// Address of the Digdir simulator (self-service API, Maskinporten, ID-porten).
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "PORTVAKT_SIM_DIGDIR_LISTEN"
    )]
    pub digdir_listen: SocketAddr,
    /// Fixed latency added to every Digdir self-service API call (e.g. 20ms).
    #[arg(long, default_value = "0ms")]
    pub digdir_latency: String,
    /// Seed data for the Digdir simulator (JSON; every field optional).
    #[arg(long)]
    pub digdir_seed: Option<PathBuf>,
    /// Directory for the admin credentials and `run.env` (the settings for `portvakt run`).
    #[arg(long, default_value = "portvakt-sim")]
    pub state_dir: PathBuf,
    /// A fault injected into the Digdir simulator from the start, in the one-line form
    /// `[METHOD] /path-prefix ACTION [WHEN]` (e.g. `POST /api/v1/clients status=503 retry-after=5 for=30s`;
    /// README: "Faults"). Repeat for more. More can be added while running: POST to `/_sim/faults`.
    #[arg(long = "digdir-fault", value_name = "RULE")]
    pub digdir_faults: Vec<String>,
    /// A fault injected into the embedded Kubernetes API server from the start (same form, e.g.
    /// `PATCH /apis/nais.io status=409 once`). Repeat for more.
    #[arg(long = "kube-fault", value_name = "RULE")]
    pub kube_faults: Vec<String>,
    /// Address of the Entra simulator (Microsoft Graph and the tenant's token endpoint).
    #[arg(long, default_value = "127.0.0.1:0", env = "PORTVAKT_SIM_GRAPH_LISTEN")]
    pub graph_listen: SocketAddr,
    /// Latency of every Graph call (e.g. 50ms; a write holds its object that long, so overlapping
    /// writes to one object get Graph's 409).
    #[arg(long, default_value = "0ms")]
    pub graph_latency: String,
    /// How long new applications and service principals stay invisible to reads (e.g. 10s; off by
    /// default).
    #[arg(long, default_value = "0s")]
    pub graph_eventual_consistency: String,
    /// Graph's documented write limit per app and tenant: 3,000 writes per 2 min 30 s, then 429 with
    /// Retry-After.
    #[arg(long)]
    pub graph_throttling: bool,
    /// Seed data for the Entra simulator (JSON; every field optional).
    #[arg(long)]
    pub graph_seed: Option<PathBuf>,
    /// A fault injected into the Entra simulator from the start (same form, e.g.
    /// `POST /v1.0/servicePrincipals throttle=5 once`). Repeat for more.
    #[arg(long = "graph-fault", value_name = "RULE")]
    pub graph_faults: Vec<String>,
}

/// Parses the `--*-fault` rules (all of them, before anything starts), naming the flag.
fn parse_faults(
    flag: &str,
    rules: &[String],
    clock: &Clock,
) -> anyhow::Result<Vec<portvakt_sim::fault::FaultRule>> {
    rules
        .iter()
        .map(|r| {
            portvakt_sim::fault::FaultRule::parse(r, clock.now())
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        })
        .collect()
}

/// The simulator's latency: a plain number means milliseconds here (it is always small).
fn parse_latency(setting: &str, value: &str) -> anyhow::Result<std::time::Duration> {
    match value.trim().parse::<u64>() {
        Ok(ms) => Ok(std::time::Duration::from_millis(ms)),
        Err(_) => super::run::parse_duration(setting, value),
    }
}

fn require_loopback(setting: &str, addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "{setting}: {addr} is not a loopback address; the simulators have no real authentication and serve only 127.0.0.1/::1"
        );
    }
    Ok(())
}

pub async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    require_loopback("--listen", args.listen)?;
    require_loopback("--digdir-listen", args.digdir_listen)?;
    require_loopback("--graph-listen", args.graph_listen)?;
    let latency = parse_latency("--digdir-latency", &args.digdir_latency)?;
    let graph_latency = parse_latency("--graph-latency", &args.graph_latency)?;
    let graph_lag = super::run::parse_duration(
        "--graph-eventual-consistency",
        &args.graph_eventual_consistency,
    )?;
    let graph_seed = match &args.graph_seed {
        None => GraphSeed::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--graph-seed: cannot read {}", path.display()))?;
            GraphSeed::from_json(&text)
                .with_context(|| format!("--graph-seed: {} is not a valid seed", path.display()))?
        }
    };
    let seed = match &args.digdir_seed {
        None => Seed::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--digdir-seed: cannot read {}", path.display()))?;
            Seed::from_json(&text)
                .with_context(|| format!("--digdir-seed: {} is not a valid seed", path.display()))?
        }
    };
    let clock = Clock::system();
    let digdir_faults = parse_faults("--digdir-fault", &args.digdir_faults, &clock)?;
    let kube_faults = parse_faults("--kube-fault", &args.kube_faults, &clock)?;
    let graph_faults = parse_faults("--graph-fault", &args.graph_faults, &clock)?;
    let graph = GraphSim::try_new(clock.clone(), graph_seed)
        .context("--graph-seed: the seed is inconsistent")?;
    configure_graph(
        &graph,
        graph_latency,
        graph_lag,
        args.graph_throttling,
        &clock,
    )?;
    for rule in graph_faults {
        graph.inject_fault(rule);
    }
    let server = ApiServer::new(clock.clone());
    let digdir =
        DigdirSim::try_new(clock, seed).context("--digdir-seed: the seed is inconsistent")?;
    digdir.set_latency(latency);
    for rule in digdir_faults {
        digdir.inject_fault(rule);
    }
    for rule in kube_faults {
        server.inject_fault(rule);
    }

    let handle = server
        .serve(args.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", args.listen))?;
    let digdir_handle = serve_digdir(&digdir, args.digdir_listen).await?;
    let digdir_url = digdir_handle.url();
    let graph_handle = serve_graph(&graph, args.graph_listen).await?;
    let graph_url = graph_handle.url();
    if args.install_crds {
        super::manifests::install_crds(&server.client()).await?;
    }
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("--state-dir: cannot create {}", args.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&args.state_dir).unwrap_or(args.state_dir.clone());
    let run_env = write_run_settings(
        &digdir,
        &digdir_url,
        Some((&graph, graph_url.as_str())),
        &state_dir,
        "portvakt-sim",
    )?;
    let url = handle.url();
    write_kubeconfig(&args.kubeconfig, &url)?;
    let path = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());

    println!("Embedded Kubernetes API server listening on {url}");
    println!("Digdir simulator listening on {digdir_url}");
    println!("Entra simulator listening on {graph_url}");
    println!("kubeconfig: {}", path.display());
    println!("run settings: {}", run_env.display());
    println!();
    println!("Use it with:");
    println!("  export KUBECONFIG={}", path.display());
    println!("  kubectl apply -f crds/");
    println!("  kubectl create namespace team-a");
    println!("  kubectl apply -f examples/maskinportenclient-consumer.yaml");
    println!("  set -a; . {}; set +a; portvakt run", run_env.display());
    println!("  kubectl get idportenclients,maskinportenclients,azureadapplications -A");
    println!();
    println!("Faults and the call journal (README: \"Faults\"):");
    println!(
        "  curl -X POST {digdir_url}/_sim/faults -d 'POST /api/v1/clients status=503 for=30s'"
    );
    println!("  curl {digdir_url}/_sim/journal        curl {url}/_sim/journal");
    println!();
    println!("Stop with Ctrl-C.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(handle);
    drop(digdir_handle);
    drop(graph_handle);
    Ok(())
}

/// The Entra simulator's latency (reads wait it; writes hold their object for it), replication lag
/// and Graph's documented write limit.
pub fn configure_graph(
    graph: &GraphSim,
    latency: std::time::Duration,
    eventual_consistency: std::time::Duration,
    throttling: bool,
    clock: &Clock,
) -> anyhow::Result<()> {
    if !latency.is_zero() {
        graph.set_write_latency(latency);
        let rule = format!("GET /v1.0 latency={}ms", latency.as_millis());
        graph.inject_fault(
            portvakt_sim::fault::FaultRule::parse(&rule, clock.now())
                .map_err(|e| anyhow::anyhow!("--graph-latency: {e}"))?,
        );
    }
    graph.set_eventual_consistency(eventual_consistency);
    if throttling {
        graph.set_write_limit(Some((3000, std::time::Duration::from_secs(150))));
    }
    Ok(())
}

/// Serves the Entra simulator plus `/_sim/graph/calls`, a count of the calls it answered (the
/// benchmark reads it), until the handle is dropped.
pub async fn serve_graph(graph: &GraphSim, addr: SocketAddr) -> anyhow::Result<ServeHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--graph-listen: cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("--graph-listen: no local address")?;
    graph.set_base_url(&format!("http://{local}"));
    let stats = graph.clone();
    let app = graph.router().merge(Router::new().route(
        "/_sim/graph/calls",
        get(move || {
            let sim = stats.clone();
            async move { axum::Json(graph_call_counts(&sim)) }
        }),
    ));
    serve_on(listener, app, async {}).context("--graph-listen: serving")
}

fn graph_call_counts(sim: &GraphSim) -> serde_json::Value {
    let mut graph = 0u64;
    let mut writes = 0u64;
    let mut tokens = 0u64;
    let mut throttled = 0u64;
    let mut conflicts = 0u64;
    let mut by_route = std::collections::BTreeMap::<String, u64>::new();
    for call in sim.journal() {
        if call.path.starts_with("/v1.0/") {
            graph += 1;
            if call.method != http::Method::GET {
                writes += 1;
            }
            match call.status {
                429 => throttled += 1,
                409 => conflicts += 1,
                _ => {}
            }
        } else if call.path.ends_with("/token") {
            tokens += 1;
        }
        let route: Vec<String> = call
            .path
            .split('/')
            .map(|seg| {
                if seg.len() >= 32 && seg.contains('-') && !seg.contains('(') {
                    "{id}".to_string()
                } else if let Some(i) = seg.find('(') {
                    format!("{}(…)", &seg[..i])
                } else {
                    seg.to_string()
                }
            })
            .collect();
        *by_route
            .entry(format!("{} {}", call.method, route.join("/")))
            .or_default() += 1;
    }
    json!({"graph": graph, "graph_writes": writes, "token": tokens, "throttled": throttled,
           "conflicts": conflicts, "by_route": by_route})
}

/// Serves the Digdir simulator plus `/_sim/digdir/calls`, a count of the calls it answered
/// (the benchmark reads it), `/_sim/digdir/clients`, every client it holds, and the API-provider
/// routes (every scope with its consumers; a client of another organisation; an Altinn delegation),
/// until the handle is dropped.
pub async fn serve_digdir(digdir: &DigdirSim, addr: SocketAddr) -> anyhow::Result<ServeHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--digdir-listen: cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("--digdir-listen: no local address")?;
    let url = format!("http://{local}");
    digdir.set_base_url(&url);
    let stats = digdir.clone();
    let listing = digdir.clone();
    let keys = digdir.clone();
    let providers = provider_routes(digdir);
    let app = digdir.router().merge(providers).merge(
        Router::new()
            .route(
                "/_sim/digdir/calls",
                get(move || {
                    let sim = stats.clone();
                    async move { axum::Json(call_counts(&sim)) }
                }),
            )
            // Every client the simulator holds (active and deactivated), as its admin API renders
            // them: for tests and for looking from outside without an admin token.
            .route(
                "/_sim/digdir/clients",
                get(move || {
                    let sim = listing.clone();
                    async move { axum::Json(sim.clients()) }
                }),
            )
            // A client's registered keys, as `GET /clients/{id}/jwks` renders them (null: none).
            .route(
                "/_sim/digdir/clients/{id}/jwks",
                get(
                    move |axum::extract::Path(id): axum::extract::Path<String>| {
                        let sim = keys.clone();
                        async move { axum::Json(sim.jwks(&id)) }
                    },
                ),
            ),
    );
    serve_on(listener, app, async {}).context("--digdir-listen: serving")
}

/// Routes for testing API providers from outside the process:
/// - `GET /_sim/digdir/scopes`: every scope (all owners, active or not) with its active accesses;
/// - `POST /_sim/digdir/consumer-clients` `{"orgno", "scopes": [...]}`: a Maskinporten client of
///   another organisation, registered as that organisation's own admin would; answers its
///   `client_id` and private `jwk` (a test key made for it, to sign its grants);
/// - `POST /_sim/digdir/delegations` `{"consumer", "supplier", "scope"}`: the consumer delegates the
///   scope to the supplier in (the simulated) Altinn.
fn provider_routes(digdir: &DigdirSim) -> Router {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;
    let listing = digdir.clone();
    let clients = digdir.clone();
    let delegations = digdir.clone();
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Router::new()
        .route(
            "/_sim/digdir/scopes",
            get(move || {
                let sim = listing.clone();
                async move {
                    let accesses = sim.scope_accesses();
                    let scopes: Vec<serde_json::Value> = sim
                        .scopes()
                        .into_iter()
                        .map(|mut s| {
                            let acl: Vec<&serde_json::Value> = accesses
                                .iter()
                                .filter(|a| a["scope"] == s["name"])
                                .collect();
                            s["accesses"] = json!(acl);
                            s
                        })
                        .collect();
                    Json(scopes)
                }
            }),
        )
        .route(
            "/_sim/digdir/consumer-clients",
            post(move |Json(body): Json<serde_json::Value>| {
                let sim = clients.clone();
                async move {
                    let orgno = text(&body, "orgno").unwrap_or_default();
                    let scopes: Vec<String> = body["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect();
                    let key = tokio::task::spawn_blocking(|| {
                        portvakt_sim::digdir::RsaKey::generate(uuid::Uuid::new_v4().to_string())
                    })
                    .await;
                    let Ok(Ok(key)) = key else {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "generating a key failed")
                            .into_response();
                    };
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    match sim.add_maskinporten_client(&orgno, &refs, &key) {
                        Ok(id) => {
                            Json(json!({"client_id": id, "jwk": key.private_jwk()})).into_response()
                        }
                        Err(e) => e.into_response(),
                    }
                }
            }),
        )
        .route(
            "/_sim/digdir/delegations",
            post(move |Json(body): Json<serde_json::Value>| {
                let sim = delegations.clone();
                async move {
                    match (
                        text(&body, "consumer"),
                        text(&body, "supplier"),
                        text(&body, "scope"),
                    ) {
                        (Some(c), Some(s), Some(scope)) => {
                            sim.delegate(&c, &s, &scope);
                            StatusCode::CREATED.into_response()
                        }
                        _ => (
                            StatusCode::BAD_REQUEST,
                            "the body needs \"consumer\", \"supplier\" and \"scope\"",
                        )
                            .into_response(),
                    }
                }
            }),
        )
}

fn call_counts(sim: &DigdirSim) -> serde_json::Value {
    let mut admin = 0u64;
    let mut admin_writes = 0u64;
    let mut tokens = 0u64;
    let mut by_route = std::collections::BTreeMap::<String, u64>::new();
    // Reads of each exposed scope's ACL (`GET /scopes/access?scope=`), by scope.
    let mut acl_reads = std::collections::BTreeMap::<String, u64>::new();
    for call in sim.journal() {
        if call.method == http::Method::GET
            && call.path.trim_end_matches('/') == "/api/v1/scopes/access"
            && let Some((_, scope)) =
                url::form_urlencoded::parse(call.query.as_bytes()).find(|(k, _)| k == "scope")
        {
            *acl_reads.entry(scope.into_owned()).or_default() += 1;
        }
        if call.path.starts_with("/api/") {
            admin += 1;
            if call.method != http::Method::GET {
                admin_writes += 1;
            }
        } else if call.path.ends_with("/token") {
            tokens += 1;
        }
        // Route without ids, so the counts stay few.
        let route: Vec<&str> = call
            .path
            .split('/')
            .map(|seg| {
                if seg.len() >= 32 && seg.contains('-') {
                    "{id}"
                } else if seg.len() == 9 && seg.bytes().all(|b| b.is_ascii_digit()) {
                    "{orgno}"
                } else {
                    seg
                }
            })
            .collect();
        *by_route
            .entry(format!("{} {}", call.method, route.join("/")))
            .or_default() += 1;
    }
    json!({"admin_api": admin, "admin_api_writes": admin_writes, "token": tokens, "by_route": by_route, "acl_reads": acl_reads})
}

/// A scope the simulated organisation owns (the Digdir simulator's default seed): `portvakt sim` and
/// the demo configure it as the Maskinporten default scope.
pub const SIM_DEFAULT_SCOPE: &str = "nav:test/api";

/// The scope prefix the simulated organisation (KARTVERKET in the default seed) is assigned:
/// `portvakt sim` and the demo configure it, so exposed scopes can be created.
pub const SIM_SCOPE_PREFIX: &str = "kartverket";

/// Writes the admin key and certificate chain (and the Entra operator's client secret) and a
/// `run.env` with the PORTVAKT_* settings that point `portvakt run` at these simulators.
pub fn write_run_settings(
    digdir: &DigdirSim,
    digdir_url: &str,
    graph: Option<(&GraphSim, &str)>,
    dir: &Path,
    cluster: &str,
) -> anyhow::Result<PathBuf> {
    let creds = digdir.admin_credentials();
    let urls = digdir.well_known_urls(digdir_url);
    let key = dir.join("admin-key.pem");
    let chain = dir.join("admin-chain.pem");
    write_private(&key, &creds.private_key_pem)?;
    std::fs::write(&chain, &creds.certificate_chain_pem)
        .with_context(|| format!("writing {}", chain.display()))?;
    let mut env = format!(
        "PORTVAKT_CLUSTER_NAME={cluster}\n\
         PORTVAKT_DIGDIR_ENV=test\n\
         PORTVAKT_DIGDIR_BASE_URL={}\n\
         PORTVAKT_MASKINPORTEN_WELL_KNOWN_URL={}\n\
         PORTVAKT_IDPORTEN_WELL_KNOWN_URL={}\n\
         PORTVAKT_DIGDIR_ADMIN_CLIENT_ID={}\n\
         PORTVAKT_DIGDIR_ADMIN_KEY_FILE={}\n\
         PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE={}\n\
         PORTVAKT_KEY_PROPAGATION=0s\n\
         PORTVAKT_CLIENT_NAME=portvakt-sim\n\
         PORTVAKT_CLIENT_URI=https://portvakt.example\n\
         PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE={SIM_DEFAULT_SCOPE}\n\
         PORTVAKT_MASKINPORTEN_SCOPE_PREFIX={SIM_SCOPE_PREFIX}\n\
         PORTVAKT_METRICS_ADDRESS=127.0.0.1:0\n",
        urls.admin_base_url,
        urls.maskinporten.well_known_url,
        urls.idporten.well_known_url,
        creds.client_id,
        key.display(),
        chain.display(),
    );

    if let Some((graph, url)) = graph {
        env.push_str(&entra_settings(graph, url, dir)?);
    }
    let path = dir.join("run.env");
    std::fs::write(&path, env).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The PORTVAKT_ENTRA_* lines for the Entra simulator at `url` (the client secret written to `dir`).
pub fn entra_settings(graph: &GraphSim, url: &str, dir: &Path) -> anyhow::Result<String> {
    let op = graph.operator();
    let secret = dir.join("entra-client-secret");
    write_private(&secret, &op.client_secret)?;
    let urls = graph.urls(url);
    let graph_sp = graph
        .service_principal(MICROSOFT_GRAPH_APP_ID)
        .and_then(|s| s["id"].as_str().map(str::to_string))
        .context("the Entra simulator has no service principal of Microsoft Graph")?;
    Ok(format!(
        "PORTVAKT_ENTRA_TENANT_ID={}\n\
         PORTVAKT_ENTRA_TENANT_NAME={}\n\
         PORTVAKT_ENTRA_CLIENT_ID={}\n\
         PORTVAKT_ENTRA_CLIENT_SECRET_FILE={}\n\
         PORTVAKT_ENTRA_PERMISSIONGRANT_RESOURCE_ID={graph_sp}\n\
         PORTVAKT_ENTRA_AUTHORITY={}\n\
         PORTVAKT_ENTRA_GRAPH_URL={}\n",
        op.tenant_id,
        op.tenant_name,
        op.client_id,
        secret.display(),
        urls.authority,
        urls.graph_api,
    ))
}

/// Private key files are readable by the owner only.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// Writes the kubeconfig atomically, so a reader never sees half a file.
pub fn write_kubeconfig(path: &Path, url: &str) -> anyhow::Result<()> {
    let yaml = ApiServer::kubeconfig_yaml(url, "default");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml)
        .with_context(|| format!("--kubeconfig: writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("--kubeconfig: writing {}", path.display()))?;
    Ok(())
}
