//! `portvakt demo`: the embedded world end to end, for a newcomer after a fresh clone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject};
use portvakt::clock::Clock;
use portvakt_sim::digdir::{DigdirSim, ProviderUrls, Seed, app};
use portvakt_sim::graph::{GraphSeed, GraphSim};
use portvakt_sim::kube::ApiServer;
use serde_json::Value;

use super::manifests;
use super::run::RunArgs;

/// The examples shipped in examples/, built into the binary so the demo runs from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "idportenclient.yaml",
        include_str!("../../examples/idportenclient.yaml"),
    ),
    (
        "maskinportenclient-consumer.yaml",
        include_str!("../../examples/maskinportenclient-consumer.yaml"),
    ),
    (
        "maskinportenclient.yaml",
        include_str!("../../examples/maskinportenclient.yaml"),
    ),
    (
        "maskinportenclient-delegation.yaml",
        include_str!("../../examples/maskinportenclient-delegation.yaml"),
    ),
    (
        "azureadapplication.yaml",
        include_str!("../../examples/azureadapplication.yaml"),
    ),
];

/// The supplier a consumer of the delegation example delegates its access to, in the simulated
/// Altinn (ARBEIDS- OG VELFERDSETATEN in the simulator's seed).
const DEMO_SUPPLIER: &str = "889640782";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep everything running afterwards and print the kubeconfig path.
    #[arg(long)]
    pub serve: bool,
    /// Apply the manifests in this directory instead of the built-in examples/.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// Where `--serve` writes its kubeconfig.
    #[arg(long, default_value = "portvakt-demo.kubeconfig")]
    pub kubeconfig: PathBuf,
}

pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let clock = Clock::system();
    let server = ApiServer::new(clock.clone());
    let client = server.client();

    println!(
        "== Starting the embedded Kubernetes API server, the Digdir simulator and the Entra simulator"
    );
    let digdir = DigdirSim::try_new(clock.clone(), Seed::default())
        .context("the Digdir simulator's default seed")?;
    let digdir_handle =
        super::sim::serve_digdir(&digdir, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let digdir_url = digdir_handle.url();
    let graph = GraphSim::try_new(clock.clone(), GraphSeed::default())
        .context("the Entra simulator's default seed")?;
    let graph_handle =
        super::sim::serve_graph(&graph, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let graph_url = graph_handle.url();
    let state = tempfile::tempdir().context("creating a temporary directory")?;
    super::sim::write_run_settings(
        &digdir,
        &digdir_url,
        Some((&graph, graph_url.as_str())),
        state.path(),
        "portvakt-demo",
    )?;
    println!("Digdir simulator (self-service API, Maskinporten, ID-porten) at {digdir_url}");
    println!("Entra simulator (Microsoft Graph, the tenant's token endpoint) at {graph_url}");

    println!("== Installing portvakt's CRDs");
    manifests::install_crds(&client).await?;

    println!("== Starting portvakt's controllers");
    let run_args = run_args_for_sim(&digdir, &digdir_url, &graph, &graph_url, state.path())?;
    let settings = super::run::settings(&run_args)?;
    let gate = portvakt::controller::leader::WriteGate::open(clock.clone());
    let ctx =
        super::run::build_context(&run_args, settings, clock.clone(), client.clone(), gate).await?;
    let opts = super::run::run_options(&run_args, tokio_util::sync::CancellationToken::new())?;
    let shutdown = opts.shutdown.clone();
    let handled = portvakt::controller::enabled_kinds(&ctx, &opts);
    let controllers = tokio::spawn(portvakt::controller::run(ctx, opts));

    let objects = load_examples(args.examples.as_ref())?;
    println!("== Applying {} example resources", objects.len());
    for (origin, obj) in &objects {
        manifests::apply(&client, obj)
            .await
            .with_context(|| format!("{origin} was rejected"))?;
        println!(
            "{}/{} applied ({origin})",
            manifests::kind_of(obj).to_lowercase(),
            manifests::name_of(obj)
        );
    }

    // Resources of kinds no controller in this demo handles are named, not waited for.
    let (objects, unhandled): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|(_, o)| handled.contains(&manifests::kind_of(o)));
    for (origin, obj) in &unhandled {
        println!(
            "{}/{} ({origin}): not handled — no controller for {} runs in this demo",
            manifests::kind_of(obj).to_lowercase(),
            manifests::name_of(obj),
            manifests::kind_of(obj)
        );
    }
    if objects.is_empty() {
        shutdown.cancel();
        bail!(
            "none of the examples is of a kind this demo handles ({})",
            handled.join(", ")
        );
    }
    println!("== Waiting until every example is Ready");
    let outcome = wait_all_ready(&client, &objects, Duration::from_secs(120)).await;
    println!();
    for plural in [
        "idportenclients",
        "maskinportenclients",
        "azureadapplications",
    ] {
        if !objects
            .iter()
            .any(|(_, o)| format!("{}s", manifests::kind_of(o).to_lowercase()) == plural)
        {
            continue;
        }
        println!("The server's table for `kubectl get {plural} -A` (rendered by portvakt):");
        let table = get_table(&client, &format!("/apis/nais.io/v1/{plural}")).await?;
        print!("{}", super::table::render(&table, true));
        println!();
    }
    let resources = match outcome {
        Ok(resources) => resources,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };

    println!("== Summary");
    for r in &resources {
        print_summary(&client, r).await?;
    }
    println!(
        "(Each Digdir resource also has a Secret portvakt-next-<kind>-<name>: portvakt's own, holding the next key,\n \
         already registered at Digdir, for the next rotation. Apps do not use it. An AzureAdApplication's Secret holds\n \
         its next credentials itself, as azurerator's does: AZURE_APP_NEXT_*.)"
    );

    println!("== Proving the credentials work, as an app would, from the Secrets alone");
    let mut failures = 0;
    for r in &resources {
        match prove(&client, r, &clock).await {
            Ok(line) => println!("OK   {line}"),
            Err(e) => {
                failures += 1;
                println!("FAIL {} {}/{}: {e:#}", r.kind, r.namespace, r.name);
            }
        }
    }
    let exposed = exposed_scopes(&resources)?;
    if !exposed.is_empty() {
        println!();
        println!("== Exposed scopes at Digdir and their consumers");
        print_exposed(&digdir, &exposed);
        println!();
        println!("== Proving access to the exposed scopes, as a consumer and a supplier would");
        for line in prove_exposed(&digdir, &digdir_url, &exposed, &clock).await {
            match line {
                Ok(line) => println!("OK   {line}"),
                Err(e) => {
                    failures += 1;
                    println!("FAIL {e:#}");
                }
            }
        }
    }
    if failures > 0 {
        shutdown.cancel();
        bail!("{failures} credential proof(s) failed");
    }

    if args.serve {
        let handle = server
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("listening on 127.0.0.1")?;
        super::sim::write_kubeconfig(&args.kubeconfig, &handle.url())?;
        println!();
        println!(
            "Serving on {}; kubeconfig: {}",
            handle.url(),
            args.kubeconfig.display()
        );
        println!(
            "Try: KUBECONFIG={} kubectl get idportenclients,maskinportenclients,azureadapplications -A",
            args.kubeconfig.display()
        );
        println!("Stop with Ctrl-C.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
    drop(graph_handle);
    if unhandled.is_empty() {
        println!("Demo complete: every example is Ready and its credentials work.");
    } else {
        println!(
            "Demo complete: every example of a handled kind is Ready and its credentials work ({} not handled).",
            unhandled.len()
        );
    }
    Ok(())
}

/// The settings `portvakt run` would get from `portvakt sim`'s run.env (with the NAIS chart's Entra
/// features on: assignment required, groups assignment).
fn run_args_for_sim(
    digdir: &DigdirSim,
    digdir_url: &str,
    graph: &GraphSim,
    graph_url: &str,
    state: &std::path::Path,
) -> anyhow::Result<RunArgs> {
    let urls = digdir.well_known_urls(digdir_url);
    let creds = digdir.admin_credentials();
    let op = graph.operator();
    let graph_urls = graph.urls(graph_url);
    let graph_sp = graph
        .service_principal(portvakt_sim::graph::MICROSOFT_GRAPH_APP_ID)
        .and_then(|s| s["id"].as_str().map(str::to_string))
        .context("the Entra simulator has no service principal of Microsoft Graph")?;
    Ok(RunArgs {
        cluster_name: "portvakt-demo".into(),
        digdir: super::run::DigdirArgs {
            idporten: true,
            maskinporten: true,
            digdir_env: Some("test".into()),
            digdir_base_url: Some(urls.admin_base_url),
            maskinporten_well_known_url: Some(urls.maskinporten.well_known_url),
            idporten_well_known_url: Some(urls.idporten.well_known_url),
            digdir_admin_client_id: Some(creds.client_id),
            digdir_admin_scopes: creds.scopes.join(" "),
            admin_key: super::admin_key::AdminKeyArgs {
                digdir_admin_key_file: Some(state.join("admin-key.pem")),
                digdir_admin_cert_chain_file: Some(state.join("admin-chain.pem")),
                ..Default::default()
            },
            digdir_request_timeout: "30s".into(),
            client_name: Some("portvakt demo".into()),
            client_uri: Some("https://portvakt.example".into()),
            // A scope the simulated organisation owns (its seed).
            maskinporten_default_scope: Some(super::sim::SIM_DEFAULT_SCOPE.into()),
            // A prefix the simulated organisation is assigned (its seed).
            maskinporten_scope_prefix: Some(super::sim::SIM_SCOPE_PREFIX.into()),
            key_propagation: "0s".into(),
            next_key_delay: "5m".into(),
        },
        entra: super::run::EntraArgs {
            azure: Some(true),
            entra_tenant_id: Some(op.tenant_id.clone()),
            entra_tenant_name: op.tenant_name.clone(),
            entra_tenant_required: false,
            entra_client_id: Some(op.client_id.clone()),
            entra_client_secret_file: Some(state.join("entra-client-secret")),
            entra_certificate_key_file: None,
            entra_certificate_file: None,
            entra_certificate_algorithm: "PS256".into(),
            entra_federated_token_file: None,
            entra_google_federated: false,
            entra_google_identity_url: portvakt::entra::GOOGLE_METADATA_IDENTITY_URL.into(),
            entra_permissiongrant_resource_id: Some(graph_sp),
            entra_authority: graph_urls.authority,
            entra_graph_url: graph_urls.graph_api,
            entra_app_role_assignment_required: true,
            entra_groups_assignment: true,
            entra_all_users_group_ids: String::new(),
            entra_group_membership_claim_default: "ApplicationGroup".into(),
            entra_secret_rotation_max_age: "2880h".into(),
            entra_sweep_interval: "5m".into(),
            entra_request_timeout: "30s".into(),
        },
        concurrency: 4,
        resync_period: "1h".into(),
        metrics_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        stuck_pass_after: "10m".into(),
        // One embedded world, one operator: no election.
        leader_election: super::run::LeaderElectionArgs::default(),
        observe: false,
    })
}

struct ReadyResource {
    kind: String,
    namespace: String,
    name: String,
    object: Value,
}

async fn wait_all_ready(
    client: &kube::Client,
    objects: &[(String, Value)],
    limit: Duration,
) -> anyhow::Result<Vec<ReadyResource>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for (_, obj) in objects {
            let resource = manifests::api_resource(obj)?;
            let namespace = manifests::namespace_of(obj)
                .unwrap_or("default")
                .to_string();
            let name = manifests::name_of(obj).to_string();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            let current = api.get(&name).await?;
            let value = serde_json::to_value(&current)?;
            let generation = value
                .pointer("/metadata/generation")
                .and_then(Value::as_i64);
            let conditions: Vec<Condition> = value
                .pointer("/status/conditions")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .with_context(|| {
                    format!("{} {namespace}/{name}: status.conditions", resource.kind)
                })?
                .unwrap_or_default();
            let is_ready = portvakt::conditions::is_ready(&conditions, generation);
            let entry = ReadyResource {
                kind: resource.kind.clone(),
                namespace,
                name,
                object: value,
            };
            if is_ready {
                ready.push(entry)
            } else {
                waiting.push(entry)
            }
        }
        if waiting.is_empty() {
            return Ok(ready);
        }
        if tokio::time::Instant::now() >= deadline {
            let mut why = Vec::new();
            for w in &waiting {
                let ready_condition = w
                    .object
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                    })
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c.get("reason").and_then(Value::as_str).unwrap_or(""),
                            c.get("message").and_then(Value::as_str).unwrap_or("")
                        )
                    })
                    .unwrap_or_else(|| "no Ready condition yet".into());
                why.push(format!(
                    "{} {}/{}: {ready_condition}",
                    w.kind, w.namespace, w.name
                ));
            }
            bail!(
                "not Ready within {}s:\n  {}",
                limit.as_secs(),
                why.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn secret_name(r: &ReadyResource) -> String {
    r.object
        .pointer("/spec/secretName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn secret_data(
    client: &kube::Client,
    r: &ReadyResource,
) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
    let name = secret_name(r);
    let secret = api
        .get(&name)
        .await
        .with_context(|| format!("Secret {}/{name}", r.namespace))?;
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        out.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    Ok(out)
}

async fn print_summary(client: &kube::Client, r: &ReadyResource) -> anyhow::Result<()> {
    // digdirator's status says clientID, azurerator's clientId.
    let client_id = r
        .object
        .pointer("/status/clientID")
        .or_else(|| r.object.pointer("/status/clientId"))
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let data = secret_data(client, r).await?;
    println!("{} {}/{}", r.kind, r.namespace, r.name);
    println!("  client ID:  {client_id}");
    println!(
        "  Secret:     {} ({})",
        secret_name(r),
        data.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    for c in r
        .object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  condition:  {}={} ({}) {}",
            c.get("type").and_then(Value::as_str).unwrap_or(""),
            c.get("status").and_then(Value::as_str).unwrap_or(""),
            c.get("reason").and_then(Value::as_str).unwrap_or(""),
            c.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(())
}

/// Uses nothing but the Secret's values, as an app would.
async fn prove(client: &kube::Client, r: &ReadyResource, clock: &Clock) -> anyhow::Result<String> {
    let data = secret_data(client, r).await?;
    let get = |k: &str| {
        data.get(k)
            .cloned()
            .with_context(|| format!("the Secret has no {k}"))
    };
    match r.kind.as_str() {
        "MaskinportenClient" => {
            let jwk: Value = serde_json::from_str(&get("MASKINPORTEN_CLIENT_JWK")?)
                .context("MASKINPORTEN_CLIENT_JWK is not JSON")?;
            let urls = ProviderUrls {
                issuer: get("MASKINPORTEN_ISSUER")?,
                well_known_url: get("MASKINPORTEN_WELL_KNOWN_URL")?,
                token_endpoint: get("MASKINPORTEN_TOKEN_ENDPOINT")?,
                jwks_uri: get("MASKINPORTEN_JWKS_URI")?,
                authorization_endpoint: None,
            };
            let mut scopes = get("MASKINPORTEN_SCOPES")?;
            let mut note = "";
            if scopes.trim().is_empty() {
                // An API provider that consumes nothing: its client is registered with the default
                // scope (Digdir refuses a client without one).
                scopes = super::sim::SIM_DEFAULT_SCOPE.to_string();
                note = " (it consumes none: the default scope it is registered with)";
            }
            let token = app::maskinporten_token(
                &urls,
                &get("MASKINPORTEN_CLIENT_ID")?,
                &jwk,
                &scopes,
                clock,
            )
            .await
            .map_err(|e| anyhow::anyhow!("Maskinporten refused the grant: {e}"))?;
            let (token_type, expires_in) = token_type_and_expiry(&token);
            Ok(format!(
                "{} {}/{}: Maskinporten issued a {token_type} token (expires_in {expires_in}) for scope {:?}{note}",
                r.kind,
                r.namespace,
                r.name,
                token.get("scope").and_then(Value::as_str).unwrap_or("")
            ))
        }
        "IDPortenClient" => {
            let jwk: Value = serde_json::from_str(&get("IDPORTEN_CLIENT_JWK")?)
                .context("IDPORTEN_CLIENT_JWK is not JSON")?;
            let well_known = get("IDPORTEN_WELL_KNOWN_URL")?;
            let metadata: Value = reqwest::get(&well_known)
                .await
                .with_context(|| format!("GET {well_known}"))?
                .json()
                .await
                .context("the well-known document is not JSON")?;
            let urls = ProviderUrls {
                issuer: get("IDPORTEN_ISSUER")?,
                well_known_url: well_known.clone(),
                token_endpoint: get("IDPORTEN_TOKEN_ENDPOINT")?,
                jwks_uri: get("IDPORTEN_JWKS_URI")?,
                authorization_endpoint: metadata
                    .get("authorization_endpoint")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            let tokens = app::idporten_login(
                &urls,
                &get("IDPORTEN_CLIENT_ID")?,
                &jwk,
                &get("IDPORTEN_REDIRECT_URI")?,
                "openid profile",
                clock,
            )
            .await
            .map_err(|e| anyhow::anyhow!("the ID-porten login failed: {e}"))?;
            let has_id_token = tokens.get("id_token").and_then(Value::as_str).is_some();
            if !has_id_token {
                bail!("ID-porten answered without an id_token");
            }
            Ok(format!(
                "{} {}/{}: ID-porten login (authorization code + PKCE, private_key_jwt) returned an id_token and an access token",
                r.kind, r.namespace, r.name
            ))
        }
        "AzureAdApplication" => {
            let jwk: Value = serde_json::from_str(&get("AZURE_APP_JWK")?)
                .context("AZURE_APP_JWK is not JSON")?;
            let client_id = get("AZURE_APP_CLIENT_ID")?;
            let token = portvakt_sim::graph::app::certificate_token(
                &get("AZURE_OPENID_CONFIG_TOKEN_ENDPOINT")?,
                &client_id,
                &jwk,
                &format!("api://{client_id}/.default"),
                clock,
            )
            .await
            .map_err(|e| anyhow::anyhow!("Entra refused the client-credentials grant: {e}"))?;
            let claims = portvakt_sim::graph::app::claims(
                token
                    .get("access_token")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
            .map_err(|e| anyhow::anyhow!("the access token: {e}"))?;
            let (token_type, expires_in) = token_type_and_expiry(&token);
            Ok(format!(
                "{} {}/{}: Entra issued a {token_type} token (expires_in {expires_in}) for its own API with the certificate in AZURE_APP_JWK (roles {})",
                r.kind,
                r.namespace,
                r.name,
                claims
                    .get("roles")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "none".into()),
            ))
        }
        other => bail!("no credential proof for kind {other}"),
    }
}

/// An exposed scope of a Ready example: its full name and what the spec asks for.
struct Exposed {
    resource: String,
    scope: String,
    consumers: Vec<String>,
    delegation: bool,
}

/// The exposed scopes of the Ready MaskinportenClients (enabled ones), named as portvakt names them.
fn exposed_scopes(resources: &[ReadyResource]) -> anyhow::Result<Vec<Exposed>> {
    let mut out = Vec::new();
    for r in resources.iter().filter(|r| r.kind == "MaskinportenClient") {
        let mp: portvakt::crd::MaskinportenClient = serde_json::from_value(r.object.clone())
            .with_context(|| format!("MaskinportenClient {}/{}", r.namespace, r.name))?;
        let exposes = mp.spec.scopes.and_then(|s| s.exposes).unwrap_or_default();
        for e in exposes.iter().filter(|e| e.enabled) {
            out.push(Exposed {
                resource: format!("{}/{}", r.namespace, r.name),
                scope: portvakt::core::digdir::scopes::full_name(super::sim::SIM_SCOPE_PREFIX, e),
                consumers: e
                    .consumers
                    .iter()
                    .flatten()
                    .map(|c| c.orgno.clone())
                    .collect(),
                delegation: e.delegation_source.is_some(),
            });
        }
    }
    Ok(out)
}

/// Each exposed scope as the simulated Digdir holds it, with its consumers.
fn print_exposed(digdir: &DigdirSim, exposed: &[Exposed]) {
    let scopes = digdir.scopes();
    let accesses = digdir.scope_accesses();
    for e in exposed {
        let Some(s) = scopes.iter().find(|s| s["name"] == e.scope.as_str()) else {
            println!(
                "{} (MaskinportenClient {}): not at Digdir",
                e.scope, e.resource
            );
            continue;
        };
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        println!("{} (MaskinportenClient {})", e.scope, e.resource);
        println!(
            "  at Digdir:  {}, {}, at_max_age {}s, description {:?}{}",
            if s["active"] == true {
                "active"
            } else {
                "inactive"
            },
            text("visibility"),
            s["at_max_age"],
            text("description"),
            s.get("delegation_source")
                .and_then(Value::as_str)
                .map(|d| format!(", delegation source {d}"))
                .unwrap_or_default()
        );
        for a in accesses.iter().filter(|a| a["scope"] == e.scope.as_str()) {
            println!(
                "  consumer:   {} {} ({})",
                a["consumer_orgno"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or(""),
                a["consumer_organization_name"].as_str().unwrap_or("")
            );
        }
    }
}

/// The `consumer` (and `supplier`) organisation numbers a Maskinporten token names.
fn parties(token: &Value) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let access = token
        .get("access_token")
        .and_then(Value::as_str)
        .context("the token answer has no access_token")?;
    let claims = portvakt_sim::jwt::raw_claims(access)
        .map_err(|e| anyhow::anyhow!("the access token does not decode: {e}"))?;
    let id = |k: &str| {
        claims
            .pointer(&format!("/{k}/ID"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok((
        id("consumer").context("the token names no consumer")?,
        id("supplier"),
        claims
            .get("delegation_source")
            .and_then(Value::as_str)
            .map(str::to_string),
    ))
}

/// Per exposed scope: a client of its first consumer (registered in the simulator as that
/// organisation's own admin would) gets a token for it; for a scope with a delegation source, a
/// supplier the consumer delegated to in (the simulated) Altinn gets a token carrying both.
async fn prove_exposed(
    digdir: &DigdirSim,
    digdir_url: &str,
    exposed: &[Exposed],
    clock: &Clock,
) -> Vec<anyhow::Result<String>> {
    let urls = digdir.well_known_urls(digdir_url).maskinporten;
    let mut out = Vec::new();
    for e in exposed {
        let Some(consumer) = e.consumers.first() else {
            continue;
        };
        let proof = async {
            let key = portvakt_sim::digdir::RsaKey::generate(uuid::Uuid::new_v4().to_string())
                .context("generating a key")?;
            let client = digdir
                .add_maskinporten_client(consumer, &[e.scope.as_str()], &key)
                .map_err(|err| {
                    anyhow::anyhow!("registering a client of {consumer}: {}", err.description)
                })?;
            let token =
                app::maskinporten_token(&urls, &client, &key.private_jwk(), &e.scope, clock)
                    .await
                    .map_err(|err| {
                        anyhow::anyhow!("Maskinporten refused {consumer}'s grant: {err}")
                    })?;
            let (named, _, _) = parties(&token)?;
            anyhow::Ok(format!(
                "a client of consumer {consumer} got a token for {} (consumer {named}, expires_in {})",
                e.scope, token["expires_in"]
            ))
        };
        out.push(
            proof
                .await
                .with_context(|| format!("{} ({})", e.scope, e.resource)),
        );
        if !e.delegation {
            continue;
        }
        let proof = async {
            digdir.delegate(consumer, DEMO_SUPPLIER, &e.scope);
            let key = portvakt_sim::digdir::RsaKey::generate(uuid::Uuid::new_v4().to_string())
                .context("generating a key")?;
            let client = digdir
                .add_maskinporten_client(DEMO_SUPPLIER, &[e.scope.as_str()], &key)
                .map_err(|err| {
                    anyhow::anyhow!("registering the supplier's client: {}", err.description)
                })?;
            let token = app::maskinporten_token_for_consumer(
                &urls,
                &client,
                &key.private_jwk(),
                &e.scope,
                consumer,
                clock,
            )
            .await
            .map_err(|err| anyhow::anyhow!("Maskinporten refused the supplier's grant: {err}"))?;
            let (named, supplier, source) = parties(&token)?;
            let supplier = supplier.context("the delegated token names no supplier")?;
            anyhow::Ok(format!(
                "supplier {DEMO_SUPPLIER}, delegated by {consumer} in Altinn, got a token for {} (consumer {named}, supplier {supplier}, delegation_source {})",
                e.scope,
                source.unwrap_or_default()
            ))
        };
        out.push(
            proof
                .await
                .with_context(|| format!("{} ({}), delegated", e.scope, e.resource)),
        );
    }
    out
}

fn load_examples(dir: Option<&PathBuf>) -> anyhow::Result<Vec<(String, Value)>> {
    let mut sources: Vec<(String, String)> = Vec::new();
    match dir {
        None => {
            for (name, text) in EXAMPLES {
                sources.push((format!("examples/{name}"), (*text).to_string()));
            }
        }
        Some(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("--examples: cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                sources.push((path.display().to_string(), text));
            }
        }
    }
    let mut objects = Vec::new();
    for (origin, text) in sources {
        for obj in manifests::parse_documents(&text, &origin)? {
            objects.push((origin.clone(), obj));
        }
    }
    if objects.is_empty() {
        bail!("no example resources found");
    }
    Ok(objects)
}

/// GET with kubectl's Accept header, so the server answers a Table with printer columns.
pub async fn get_table(client: &kube::Client, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path)
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .context("building a table request")?;
    let table: Value = client
        .request(request)
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok(table)
}

/// A token answer's `token_type` and `expires_in`, as the demo prints them.
fn token_type_and_expiry(token: &Value) -> (&str, String) {
    (
        token
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        token
            .get("expires_in")
            .map(Value::to_string)
            .unwrap_or_default(),
    )
}
