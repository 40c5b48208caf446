//! Shared test support: the embedded Kubernetes API server (in-process client, portvakt's CRDs
//! installed) and the Digdir simulator (served on 127.0.0.1:0), optionally the Entra simulator
//! ([`Env::start_entra`]), the operator started against them,
//! resource builders, waits on signals (never a fixed sleep followed by "nothing happened") and the
//! call journals, to assert exactly which calls a pass made.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use portvakt::clock::Clock;
use portvakt::controller::digdir_kinds::DigdirProvider;
use portvakt::controller::entra_kinds::EntraProvider;
use portvakt::controller::{self, Context, Counters, RunOptions, Shared};
use portvakt::core::ProviderMetadata;
use portvakt::core::digdir::Config;
use portvakt::crd::{AzureAdApplication, IDPortenClient, MaskinportenClient};
use portvakt::digdir::{DigdirClient, DigdirConfig, DigdirEnvironment, RetryPolicy};
use portvakt::keys::{FileSigner, KeyReference};
use portvakt_sim::digdir::{DigdirSim, Seed, SimHandle, WellKnownUrls};
use portvakt_sim::graph::{EntraUrls, GraphSeed, GraphSim, MICROSOFT_GRAPH_APP_ID};
use portvakt_sim::kube::ApiServer;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const NS: &str = "default";
pub const CLUSTER: &str = "test-cluster";
/// The scope the simulator's organisation owns (its default seed).
pub const SIM_SCOPE: &str = "nav:test/api";
/// A scope prefix the simulator's organisation is assigned (its default seed).
pub const SIM_PREFIX: &str = "kartverket";

/// The operator as a test runs it: the context and its Digdir provider.
pub struct Operator {
    pub ctx: Arc<Context>,
    pub digdir: Arc<DigdirProvider>,
    /// The Entra provider, when the Entra simulator runs ([`Env::start_entra`]).
    pub entra: Option<Arc<EntraProvider>>,
}

impl Operator {
    pub fn entra(&self) -> &EntraProvider {
        self.entra
            .as_deref()
            .expect("the Entra provider (Env::start_entra)")
    }
}

/// The Entra simulator of an [`Env`] (served on 127.0.0.1:0, on the Env's clock).
pub struct EntraWorld {
    pub sim: GraphSim,
    pub urls: EntraUrls,
    _handle: portvakt_sim::ServeHandle,
    /// Settings of the operator's Entra provider for the next [`Env::run`].
    pub config: portvakt::core::entra::Config,
    pub sweep_interval: Duration,
}

impl std::ops::Deref for Operator {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

pub struct Env {
    pub kube: ApiServer,
    pub client: kube::Client,
    pub sim: DigdirSim,
    pub _sim_handle: SimHandle,
    pub urls: WellKnownUrls,
    pub clock: Clock,
    pub digdir: DigdirClient,
    pub request_timeout: Duration,
    pub ctx: Option<Arc<Operator>>,
    pub shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<()>>,
    pub entra: Option<EntraWorld>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Installs portvakt's CRDs into the embedded server.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in portvakt::crd::crds().expect("crds") {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("install CRD");
    }
}

pub async fn env() -> Env {
    env_with_seed(Seed::default()).await
}

pub async fn env_with_seed(seed: Seed) -> Env {
    portvakt::install_crypto_provider();
    let clock = Clock::system();
    let kube_server = ApiServer::new(clock.clone());
    let client = kube_server.client();
    install_crds(&client).await;
    let sim = DigdirSim::new(clock.clone(), seed);
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve sim");
    let urls = sim.well_known_urls(&handle.url());
    let request_timeout = Duration::from_secs(5);
    let digdir = digdir_client(&sim, &urls, &clock, request_timeout);
    Env {
        kube: kube_server,
        client,
        sim,
        _sim_handle: handle,
        urls,
        clock,
        digdir,
        request_timeout,
        ctx: None,
        shutdown: CancellationToken::new(),
        running: None,
        entra: None,
    }
}

/// portvakt's Digdir client against the simulator, with `timeout` per request.
pub fn digdir_client(
    sim: &DigdirSim,
    urls: &WellKnownUrls,
    clock: &Clock,
    timeout: Duration,
) -> DigdirClient {
    let creds = sim.admin_credentials();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&creds.private_key_pem).expect("admin key");
    let signer = Arc::new(FileSigner::new(key, KeyReference::Kid(creds.kid.clone())));
    let mut config = DigdirConfig::preset(DigdirEnvironment::Test, creds.client_id.clone());
    config.base_url = urls.admin_base_url.clone();
    config.maskinporten_well_known_url = urls.maskinporten.well_known_url.clone();
    config.idporten_well_known_url = urls.idporten.well_known_url.clone();
    config.retry = RetryPolicy::fast(4);
    config.request_timeout = timeout;
    DigdirClient::new(&config, signer, clock.clone()).expect("digdir client")
}

pub fn md(p: &portvakt_sim::digdir::ProviderUrls) -> ProviderMetadata {
    ProviderMetadata {
        well_known_url: p.well_known_url.clone(),
        issuer: p.issuer.clone(),
        jwks_uri: p.jwks_uri.clone(),
        token_endpoint: p.token_endpoint.clone(),
    }
}

impl Env {
    /// Uses a Digdir client with this request timeout for the next [`Env::run`].
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
        self.digdir = digdir_client(&self.sim, &self.urls, &self.clock, timeout);
    }

    pub fn core_config(&self) -> Config {
        Config {
            cluster_name: CLUSTER.into(),
            idporten: md(&self.urls.idporten),
            maskinporten: md(&self.urls.maskinporten),
            key_propagation: Duration::ZERO,
            maskinporten_default_scope: Some(SIM_SCOPE.into()),
            maskinporten_scope_prefix: Some(SIM_PREFIX.into()),
            ..Config::default()
        }
    }

    /// The operator's context with the Digdir provider, and the Entra provider when the Entra
    /// simulator runs (not started).
    pub fn operator(&self, config: Config) -> Arc<Operator> {
        let digdir = Arc::new(DigdirProvider::new(
            self.digdir.clone(),
            config,
            self.clock.clone(),
            self.request_timeout,
        ));
        let mut ctx = Context::new(Shared::new(
            self.client.clone(),
            self.clock.clone(),
            CLUSTER,
        ))
        .with_provider(digdir.clone());
        let entra = self.entra.as_ref().map(|w| {
            Arc::new(EntraProvider::new(
                self.graph_client(),
                w.config.clone(),
                w.sim.operator().client_id,
                w.sweep_interval,
            ))
        });
        if let Some(e) = &entra {
            ctx = ctx.with_provider(e.clone());
        }
        Arc::new(Operator {
            ctx: Arc::new(ctx),
            digdir,
            entra,
        })
    }

    /// Starts the Entra simulator (seeded with `seed`, on this Env's clock); [`Env::run`] then runs
    /// the AzureAdApplication controller against it too.
    pub async fn start_entra(&mut self, seed: GraphSeed) -> &EntraWorld {
        let sim = GraphSim::new(self.clock.clone(), seed);
        let handle = sim
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve the Entra simulator");
        let urls = sim.urls(&handle.url());
        let graph_sp = sim
            .service_principal(MICROSOFT_GRAPH_APP_ID)
            .and_then(|s| s["id"].as_str().map(String::from))
            .expect("Microsoft Graph's service principal in the seed");
        let config = portvakt::core::entra::Config {
            cluster_name: CLUSTER.into(),
            tenant_id: sim.tenant_id(),
            tenant_name: sim.operator().tenant_name,
            permission_grant_resource_id: graph_sp,
            metadata: ProviderMetadata {
                well_known_url: urls.well_known_url.clone(),
                issuer: urls.issuer.clone(),
                jwks_uri: urls.jwks_uri.clone(),
                token_endpoint: urls.token_endpoint.clone(),
            },
            ..portvakt::core::entra::Config::default()
        };
        self.entra = Some(EntraWorld {
            sim,
            urls,
            _handle: handle,
            config,
            sweep_interval: Duration::from_secs(300),
        });
        self.entra.as_ref().expect("just set")
    }

    pub fn entra_world(&self) -> &EntraWorld {
        self.entra.as_ref().expect("Env::start_entra")
    }

    pub fn graph_sim(&self) -> &GraphSim {
        &self.entra_world().sim
    }

    /// The operator's Graph client against the Entra simulator: waits move the shared clock.
    pub fn graph_client(&self) -> portvakt::entra::GraphClient {
        let w = self.entra_world();
        let op = w.sim.operator();
        let mut c = portvakt::entra::EntraConfig::new(
            op.tenant_id.clone(),
            op.client_id.clone(),
            portvakt::entra::OperatorCredential::ClientSecret(portvakt::entra::ClientSecret::new(
                op.client_secret.clone(),
            )),
        );
        c.authority = w.urls.authority.clone();
        c.graph_url = w.urls.graph_api.clone();
        c.request_timeout = Duration::from_secs(5);
        c.page_size = Some(999);
        c.wait = portvakt::entra::WaitMode::AdvanceClock;
        portvakt::entra::GraphClient::new(&c, self.clock.clone()).expect("Graph client")
    }

    pub fn aad(&self, namespace: &str) -> Api<AzureAdApplication> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn create_aad(&self, namespace: &str, name: &str, spec: Value) -> AzureAdApplication {
        let obj: AzureAdApplication = serde_json::from_value(json!({
            "apiVersion": "nais.io/v1", "kind": "AzureAdApplication",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }))
        .expect("valid AzureAdApplication");
        self.aad(namespace)
            .create(&PostParams::default(), &obj)
            .await
            .expect("create AzureAdApplication")
    }

    /// Waits until `f` holds for the AzureAdApplication (polling), or panics with the last state.
    pub async fn wait_aad(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        f: impl Fn(&AzureAdApplication) -> bool,
    ) -> AzureAdApplication {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.aad(namespace).get_opt(name).await.expect("get");
            if let Some(o) = &got
                && f(o)
            {
                return o.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {:#?}", got.map(|o| o.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the AzureAdApplication is Ready for its generation.
    pub async fn wait_aad_ready(&self, namespace: &str, name: &str) -> AzureAdApplication {
        self.wait_aad(namespace, name, "Ready", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .is_some_and(|c| portvakt::conditions::is_ready(c, o.meta().generation))
        })
        .await
    }

    pub fn secrets_in(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Starts both controllers.
    pub fn run(&mut self) -> Arc<Operator> {
        let cfg = self.core_config();
        self.run_with(cfg, Duration::from_secs(3600))
    }

    /// Starts both controllers with this core configuration and resync period (which is also the
    /// period of the steady-state pass).
    pub fn run_with(&mut self, config: Config, resync_period: Duration) -> Arc<Operator> {
        let op = self.operator(config);
        let opts = RunOptions {
            concurrency: 4,
            resync_period,
            shutdown: self.shutdown.clone(),
            ..RunOptions::default()
        };
        self.running = Some(tokio::spawn(controller::run(op.ctx.clone(), opts)));
        self.ctx = Some(op.clone());
        op
    }

    /// Stops the controllers (the operator going down) and waits until they have.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        self.shutdown = CancellationToken::new();
    }

    pub fn idp(&self) -> Api<IDPortenClient> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn mp(&self) -> Api<MaskinportenClient> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_idp(&self, name: &str, spec: Value) -> IDPortenClient {
        let obj: IDPortenClient = serde_json::from_value(json!({
            "apiVersion": "nais.io/v1", "kind": "IDPortenClient",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }))
        .expect("valid IDPortenClient");
        self.idp()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create IDPortenClient")
    }

    pub async fn create_mp(&self, name: &str, spec: Value) -> MaskinportenClient {
        let obj: MaskinportenClient = serde_json::from_value(json!({
            "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }))
        .expect("valid MaskinportenClient");
        self.mp()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create MaskinportenClient")
    }

    /// Waits until `f` holds for the resource (polling), or panics with the last state.
    pub async fn wait_idp(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&IDPortenClient) -> bool,
    ) -> IDPortenClient {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.idp().get_opt(name).await.expect("get");
            if let Some(o) = &got
                && f(o)
            {
                return o.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {:#?}", got.map(|o| o.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Env::wait_idp`] for a MaskinportenClient.
    pub async fn wait_mp(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&MaskinportenClient) -> bool,
    ) -> MaskinportenClient {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.mp().get_opt(name).await.expect("get");
            if let Some(o) = &got
                && f(o)
            {
                return o.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {:#?}", got.map(|o| o.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the MaskinportenClient is Ready for its current generation.
    pub async fn wait_mp_ready(&self, name: &str) -> MaskinportenClient {
        self.wait_mp(name, "Ready", |o| {
            is_ready(o.meta().generation, o.status.as_ref())
        })
        .await
    }

    pub async fn wait_ready(&self, name: &str) -> IDPortenClient {
        self.wait_idp(name, "Ready", |o| {
            is_ready(o.meta().generation, o.status.as_ref())
        })
        .await
    }

    pub fn clients_with_description(&self, desc: &str) -> Vec<Value> {
        self.sim
            .clients()
            .into_iter()
            .filter(|c| c["description"] == desc && c["active"] != false)
            .collect()
    }

    pub fn jwks_kids(&self, client_id: &str) -> Vec<String> {
        self.sim
            .jwks(client_id)
            .and_then(|j| j["keys"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k["kid"].as_str().map(String::from))
            .collect()
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get secret")
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        self.idp()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotate");
    }

    pub async fn annotate_mp(&self, name: &str, key: &str, value: &str) {
        self.mp()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotate");
    }

    /// Runs one more pass of IDPortenClient `name` and waits until it has finished: a sentinel
    /// annotation is set, and the pass it starts is waited for. Passes already queued (say, by
    /// watch events of earlier writes) come first, since the watch is ordered.
    pub async fn pass_idp(&self, op: &Operator, name: &str) {
        self.pass(&self.idp(), op, name).await
    }

    /// [`Env::pass_idp`] for any kind.
    pub async fn pass<K>(&self, api: &Api<K>, op: &Operator, name: &str)
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let done = Counters::get(&op.counters.passes_done);
        let token = uuid::Uuid::new_v4().to_string();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test.portvakt.io/pass": token}}})),
        )
        .await
        .expect("annotate");
        wait_until("the pass to finish", async || {
            Counters::get(&op.counters.passes_done) > done
        })
        .await;
    }
}

pub fn is_ready(generation: Option<i64>, st: Option<&portvakt::crd::DigdiratorStatus>) -> bool {
    st.and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| portvakt::conditions::is_ready(c, generation))
}

pub fn ready_condition(o: &IDPortenClient) -> Option<(String, String, String)> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn data(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .unwrap_or_default()
}

pub fn kid_of(s: &Secret) -> String {
    let jwk: Value = serde_json::from_str(&data(s, "IDPORTEN_CLIENT_JWK")).expect("JWK JSON");
    jwk["kid"].as_str().expect("kid").to_string()
}

pub fn spec(secret: &str) -> Value {
    json!({"secretName": secret, "redirectURIs": ["https://app.example.com/oauth2/callback"]})
}

pub fn desc(name: &str) -> String {
    format!("{CLUSTER}:{NS}:{name}")
}

/// Events about `name` with this reason, as (type, note).
pub async fn events_for(env: &Env, name: &str, reason: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), NS);
    api.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Waits for `cond`, polling, up to 30 s.
pub async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the steady-state pass has completed `n` more passes.
pub async fn wait_passes(ctx: &Context, n: u64) {
    let target = Counters::get(&ctx.counters.drift_passes) + n;
    wait_until("steady-state passes", async || {
        Counters::get(&ctx.counters.drift_passes) >= target
    })
    .await;
}

/// The Digdir calls since journal position `since`, as "METHOD /path" (client IDs as `{id}`).
pub fn digdir_calls_since(sim: &DigdirSim, since: u64) -> Vec<String> {
    sim.faults()
        .journal_since(since)
        .into_iter()
        .filter(|c| c.path.starts_with("/api/"))
        .map(|c| {
            let path: Vec<&str> = c
                .path
                .split('/')
                .map(|seg| {
                    if seg.len() >= 32 && seg.contains('-') {
                        "{id}"
                    } else {
                        seg
                    }
                })
                .collect();
            format!("{} {}", c.method, path.join("/"))
        })
        .collect()
}

/// The next journal position of the Digdir simulator.
pub fn digdir_mark(sim: &DigdirSim) -> u64 {
    sim.faults().journal().last().map_or(0, |c| c.seq + 1)
}

/// The Digdir calls to `/scopes` routes since journal position `since`, as "METHOD /path?query"
/// with the query decoded (scope names are readable).
pub fn digdir_scope_calls_since(sim: &DigdirSim, since: u64) -> Vec<String> {
    sim.faults()
        .journal_since(since)
        .into_iter()
        .filter(|c| c.path.starts_with("/api/v1/scopes"))
        .map(|c| {
            let query: Vec<String> = url::form_urlencoded::parse(c.query.as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if query.is_empty() {
                format!("{} {}", c.method, c.path)
            } else {
                format!("{} {}?{}", c.method, c.path, query.join("&"))
            }
        })
        .collect()
}

/// A Graph path with its ids as `{id}` (GUIDs, and `(uniqueName='…')` keys as `(…)`).
pub fn graph_route(path: &str) -> String {
    let route: Vec<String> = path
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
    route.join("/")
}

/// The Graph calls (`/v1.0/…`) since journal position `since`, as "METHOD /route".
pub fn graph_calls_since(sim: &GraphSim, since: u64) -> Vec<String> {
    sim.faults()
        .journal_since(since)
        .into_iter()
        .filter(|c| c.path.starts_with("/v1.0/"))
        .map(|c| format!("{} {}", c.method, graph_route(&c.path)))
        .collect()
}

/// The Graph writes (not GET) since `since`.
pub fn graph_writes_since(sim: &GraphSim, since: u64) -> Vec<String> {
    graph_calls_since(sim, since)
        .into_iter()
        .filter(|c| !c.starts_with("GET "))
        .collect()
}

/// The next journal position of the Entra simulator.
pub fn graph_mark(sim: &GraphSim) -> u64 {
    sim.faults().journal().last().map_or(0, |c| c.seq + 1)
}
