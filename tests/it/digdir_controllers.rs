//! The IDPortenClient and MaskinportenClient controllers, running for real against the embedded
//! Kubernetes API server (in-process client) and the Digdir simulator (served on 127.0.0.1:0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use portvakt::clock::Clock;
use portvakt::controller::{self, Context, Counters, RunOptions};
use portvakt::core::{self, ProviderMetadata};
use portvakt::crd::{IDPortenClient, MaskinportenClient};
use portvakt::digdir::{
    ClientRegistration, DigdirClient, DigdirConfig, DigdirEnvironment, Jwk, RetryPolicy,
};
use portvakt::keys::{self, FileSigner, KeyReference};
use portvakt::sim::digdir::{DigdirSim, FaultRule, FaultTimes, Seed, SimHandle, WellKnownUrls};
use portvakt::sim::kube::ApiServer;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const CLUSTER: &str = "test-cluster";

struct Env {
    kube: ApiServer,
    client: kube::Client,
    sim: DigdirSim,
    _sim_handle: SimHandle,
    urls: WellKnownUrls,
    clock: Clock,
    digdir: DigdirClient,
    ctx: Option<Arc<Context>>,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn env() -> Env {
    portvakt::install_crypto_provider();
    let clock = Clock::system();
    let kube_server = ApiServer::new(clock.clone());
    let client = kube_server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in portvakt::crd::crds().expect("crds") {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("install CRD");
    }
    let sim = DigdirSim::new(clock.clone(), Seed::default());
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve sim");
    let urls = sim.well_known_urls(&handle.url());
    let creds = sim.admin_credentials();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&creds.private_key_pem).expect("admin key");
    let signer = Arc::new(FileSigner::new(key, KeyReference::Kid(creds.kid.clone())));
    let mut config = DigdirConfig::preset(DigdirEnvironment::Test, creds.client_id.clone());
    config.base_url = urls.admin_base_url.clone();
    config.maskinporten_well_known_url = urls.maskinporten.well_known_url.clone();
    config.idporten_well_known_url = urls.idporten.well_known_url.clone();
    config.retry = RetryPolicy::fast(4);
    config.request_timeout = Duration::from_secs(5);
    let digdir = DigdirClient::new(&config, signer, clock.clone()).expect("digdir client");
    Env {
        kube: kube_server,
        client,
        sim,
        _sim_handle: handle,
        urls,
        clock,
        digdir,
        ctx: None,
        shutdown: CancellationToken::new(),
    }
}

fn md(p: &portvakt::sim::digdir::ProviderUrls) -> ProviderMetadata {
    ProviderMetadata {
        well_known_url: p.well_known_url.clone(),
        issuer: p.issuer.clone(),
        jwks_uri: p.jwks_uri.clone(),
        token_endpoint: p.token_endpoint.clone(),
    }
}

impl Env {
    fn core_config(&self) -> core::Config {
        core::Config {
            cluster_name: CLUSTER.into(),
            idporten: md(&self.urls.idporten),
            maskinporten: md(&self.urls.maskinporten),
            key_propagation: Duration::ZERO,
            ..core::Config::default()
        }
    }

    /// Starts both controllers.
    fn run(&mut self) -> Arc<Context> {
        let ctx = Context::new(
            self.client.clone(),
            self.digdir.clone(),
            self.core_config(),
            self.clock.clone(),
        );
        let opts = RunOptions {
            concurrency: 4,
            shutdown: self.shutdown.clone(),
            ..RunOptions::default()
        };
        tokio::spawn(controller::run(ctx.clone(), opts));
        self.ctx = Some(ctx.clone());
        ctx
    }

    /// Stops the controllers (simulates the operator going down).
    async fn stop(&mut self) {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.shutdown = CancellationToken::new();
    }

    fn idp(&self) -> Api<IDPortenClient> {
        Api::namespaced(self.client.clone(), NS)
    }
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn create_idp(&self, name: &str, spec: Value) -> IDPortenClient {
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

    /// Waits until `f` holds for the resource (polling), or panics with the last state.
    async fn wait_idp(
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

    async fn wait_ready(&self, name: &str) -> IDPortenClient {
        self.wait_idp(name, "Ready", |o| {
            is_ready(o.meta().generation, o.status.as_ref())
        })
        .await
    }

    fn clients_with_description(&self, desc: &str) -> Vec<Value> {
        self.sim
            .clients()
            .into_iter()
            .filter(|c| c["description"] == desc && c["active"] != false)
            .collect()
    }

    fn jwks_kids(&self, client_id: &str) -> Vec<String> {
        self.sim
            .jwks(client_id)
            .and_then(|j| j["keys"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k["kid"].as_str().map(String::from))
            .collect()
    }

    async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get secret")
    }

    async fn annotate(&self, name: &str, key: &str, value: &str) {
        self.idp()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotate");
    }
}

fn is_ready(generation: Option<i64>, st: Option<&portvakt::crd::DigdiratorStatus>) -> bool {
    st.and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| portvakt::conditions::is_ready(c, generation))
}

fn ready_condition(o: &IDPortenClient) -> Option<(String, String, String)> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn data(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .unwrap_or_default()
}

fn kid_of(s: &Secret) -> String {
    let jwk: Value = serde_json::from_str(&data(s, "IDPORTEN_CLIENT_JWK")).expect("JWK JSON");
    jwk["kid"].as_str().expect("kid").to_string()
}

fn spec(secret: &str) -> Value {
    json!({"secretName": secret, "redirectURIs": ["https://app.example.com/oauth2/callback"]})
}

fn desc(name: &str) -> String {
    format!("{CLUSTER}:{NS}:{name}")
}

#[tokio::test]
async fn create_gives_ready_secret_and_one_client() {
    let mut env = env().await;
    env.run();
    env.create_idp("app", spec("app-idporten")).await;
    let o = env.wait_ready("app").await;
    let st = o.status.clone().expect("status");
    let client_id = st.client_id.clone().expect("clientID");
    assert_eq!(
        st.synchronization_secret_name.as_deref(),
        Some("app-idporten")
    );
    assert_eq!(st.synchronization_state.as_deref(), Some("Synchronized"));
    assert_eq!(
        st.synchronization_hash.as_deref(),
        Some(core::hash::idporten_hash(&o.spec).as_str())
    );
    assert!(
        o.finalizers()
            .iter()
            .any(|f| f == "digdirator.nais.io/finalizer")
    );

    let clients = env.clients_with_description(&desc("app"));
    assert_eq!(clients.len(), 1, "{clients:#?}");
    assert_eq!(clients[0]["client_id"], client_id.as_str());
    assert_eq!(
        clients[0]["redirect_uris"],
        json!(["https://app.example.com/oauth2/callback"])
    );

    let s = env.secret("app-idporten").await.expect("Secret");
    let keys: Vec<_> = s.data.as_ref().expect("data").keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "IDPORTEN_CLIENT_ID",
            "IDPORTEN_CLIENT_JWK",
            "IDPORTEN_ISSUER",
            "IDPORTEN_JWKS_URI",
            "IDPORTEN_REDIRECT_URI",
            "IDPORTEN_TOKEN_ENDPOINT",
            "IDPORTEN_WELL_KNOWN_URL"
        ]
    );
    assert_eq!(data(&s, "IDPORTEN_CLIENT_ID"), client_id);
    assert_eq!(data(&s, "IDPORTEN_ISSUER"), env.urls.idporten.issuer);
    let jwk =
        keys::PrivateJwk::from_json(&data(&s, "IDPORTEN_CLIENT_JWK")).expect("full private JWK");
    assert_eq!((jwk.alg.as_str(), jwk.use_.as_str()), ("RS256", "sig"));
    assert_eq!(s.labels().get("app").map(String::as_str), Some("app"));
    assert_eq!(
        s.labels().get("type").map(String::as_str),
        Some("digdirator.nais.io")
    );
    assert_eq!(
        s.annotations()
            .get("reloader.stakater.com/match")
            .map(String::as_str),
        Some("true")
    );
    let owner = &s.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("IDPortenClient", "app", Some(true))
    );
    // The app's key is registered, and so is a next key.
    let kids = env.jwks_kids(&client_id);
    assert!(kids.contains(&jwk.kid), "{kids:?}");
    assert_eq!(kids.len(), 2, "current + next: {kids:?}");

    // Steady state: another pass writes nothing anywhere.
    let ctx = env.ctx.clone().expect("ctx");
    let writes_before = env.digdir.stats().writes();
    let secret_writes = Counters::get(&ctx.counters.secret_writes);
    env.annotate("app", "touch", "1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.digdir.stats().writes(), writes_before);
    assert_eq!(Counters::get(&ctx.counters.secret_writes), secret_writes);
}

#[tokio::test]
async fn update_changes_registration_and_secret() {
    let mut env = env().await;
    env.run();
    env.create_idp("app", spec("app-idporten")).await;
    let o = env.wait_ready("app").await;
    let client_id = o.status.and_then(|s| s.client_id).expect("clientID");
    env.idp()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"redirectURIs": ["https://new.example.com/cb"]}})),
        )
        .await
        .expect("patch");
    let o = env
        .wait_idp("app", "generation 2 ready", |o| {
            o.meta().generation == Some(2) && is_ready(Some(2), o.status.as_ref())
        })
        .await;
    assert_eq!(
        o.status.and_then(|s| s.client_id).as_deref(),
        Some(client_id.as_str())
    );
    let c = env.sim.client(&client_id).expect("client");
    assert_eq!(c["redirect_uris"], json!(["https://new.example.com/cb"]));
    let s = env.secret("app-idporten").await.expect("secret");
    assert_eq!(
        data(&s, "IDPORTEN_REDIRECT_URI"),
        "https://new.example.com/cb"
    );
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
}

fn registration(name: &str) -> ClientRegistration {
    let cfg = core::Config {
        cluster_name: CLUSTER.into(),
        ..core::Config::default()
    };
    let spec: portvakt::crd::IDPortenClientSpec = serde_json::from_value(spec("x")).expect("spec");
    let p = core::registration::idporten_payload(&cfg, NS, name, &spec);
    serde_json::from_value(p.to_json()).expect("registration")
}

#[tokio::test]
async fn adopts_existing_registration_without_duplicate() {
    let mut env = env().await;
    let mut reg = registration("app");
    reg.redirect_uris = Some(vec!["https://old.example.com/cb".into()]);
    let existing = env.digdir.create_client(&reg).await.expect("pre-create");
    let existing_id = existing.client_id.expect("id");
    env.run();
    env.create_idp("app", spec("app-idporten")).await;
    let o = env.wait_ready("app").await;
    assert_eq!(
        o.status.and_then(|s| s.client_id).as_deref(),
        Some(existing_id.as_str())
    );
    let clients = env.clients_with_description(&desc("app"));
    assert_eq!(clients.len(), 1);
    // Drift from the spec is repaired on adoption.
    assert_eq!(
        clients[0]["redirect_uris"],
        json!(["https://app.example.com/oauth2/callback"])
    );
}

#[tokio::test]
async fn delete_removes_client_unless_preserved() {
    let mut env = env().await;
    env.run();
    env.create_idp("gone", spec("gone-secret")).await;
    env.create_idp("kept", spec("kept-secret")).await;
    let gone = env
        .wait_ready("gone")
        .await
        .status
        .and_then(|s| s.client_id)
        .expect("id");
    let kept = env
        .wait_ready("kept")
        .await
        .status
        .and_then(|s| s.client_id)
        .expect("id");
    env.annotate("kept", "digdir.nais.io/preserve", "true")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.idp()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    env.idp()
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.idp().get_opt("gone").await.expect("get").is_some()
        || env.idp().get_opt("kept").await.expect("get").is_some()
    {
        assert!(Instant::now() < deadline, "resources not finalized");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = env
        .sim
        .client(&gone)
        .expect("deactivated client is still visible");
    assert_eq!(g["active"], false, "{g}");
    let k = env.sim.client(&kept).expect("kept");
    assert_ne!(k["active"], false, "{k}");
}

#[tokio::test]
async fn deletion_while_operator_down_is_handled_at_start() {
    let mut env = env().await;
    env.run();
    env.create_idp("app", spec("app-secret")).await;
    let id = env
        .wait_ready("app")
        .await
        .status
        .and_then(|s| s.client_id)
        .expect("id");
    env.stop().await;
    env.idp()
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        env.idp().get_opt("app").await.expect("get").is_some(),
        "finalizer holds it"
    );
    env.run();
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.idp().get_opt("app").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "not finalized after start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.sim.client(&id).expect("client")["active"], false);
}

#[tokio::test]
async fn switch_over_from_digdirator_keeps_key_and_secret_bytes() {
    let mut env = env().await;
    // What digdirator left behind: a client with a registered key, the CR with status and finalizer,
    // and the Secret.
    let created = env
        .digdir
        .create_client(&registration("app"))
        .await
        .expect("client");
    let client_id = created.client_id.expect("id");
    let jwk = keys::generate_key().expect("key");
    env.digdir
        .register_jwks(&client_id, &[Jwk::from(jwk.public())])
        .await
        .expect("jwks");
    env.create_idp("app", spec("app-idporten")).await;
    let st = json!({"status": {
        "clientID": client_id, "observedGeneration": 1, "synchronizationSecretName": "app-idporten",
        "synchronizationState": "Synchronized", "keyIDs": [jwk.kid],
    }});
    let cr = env
        .idp()
        .patch_status("app", &PatchParams::default(), &Patch::Merge(st))
        .await
        .expect("status");
    env.idp()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["digdirator.nais.io/finalizer"]}})),
        )
        .await
        .expect("finalizer");
    let owner = cr.controller_owner_ref(&()).expect("owner ref");
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-idporten", "namespace": NS,
            "labels": {"app": "app", "type": "digdirator.nais.io"},
            "annotations": {"reloader.stakater.com/match": "true"}},
        "type": "Opaque",
    }))
    .expect("secret");
    let mut secret = secret;
    secret.metadata.owner_references = Some(vec![owner]);
    let md = &env.urls.idporten;
    secret.data = Some(
        [
            ("IDPORTEN_CLIENT_ID", client_id.clone()),
            ("IDPORTEN_CLIENT_JWK", jwk.to_json()),
            (
                "IDPORTEN_REDIRECT_URI",
                "https://app.example.com/oauth2/callback".to_string(),
            ),
            ("IDPORTEN_WELL_KNOWN_URL", md.well_known_url.clone()),
            ("IDPORTEN_ISSUER", md.issuer.clone()),
            ("IDPORTEN_JWKS_URI", md.jwks_uri.clone()),
            ("IDPORTEN_TOKEN_ENDPOINT", md.token_endpoint.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), bytes(&v)))
        .collect(),
    );
    let before = env
        .secrets()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");

    env.run();
    let o = env.wait_ready("app").await;
    assert_eq!(
        o.status.and_then(|s| s.client_id).as_deref(),
        Some(client_id.as_str())
    );
    let after = env.secret("app-idporten").await.expect("secret");
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "Secret rewritten: {:#?} -> {:#?}",
        before.metadata, after.metadata
    );
    let kids = env.jwks_kids(&client_id);
    assert!(
        kids.contains(&jwk.kid),
        "digdirator's key still registered: {kids:?}"
    );
    assert_eq!(kids.len(), 2, "plus a pre-registered next key: {kids:?}");
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
}

fn pod_using(secret: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{secret}"), "namespace": NS},
        "spec": {
            "containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": secret}}]}]
        }
    }))
    .expect("pod")
}

#[tokio::test]
async fn rotation_keeps_key_of_secret_a_pod_still_uses() {
    let mut env = env().await;
    env.run();
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let client_id = o.status.and_then(|s| s.client_id).expect("id");
    let old_kid = kid_of(&env.secret("app-1").await.expect("secret"));
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod_using("app-1"))
        .await
        .expect("pod");

    env.idp()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretName": "app-2"}})),
        )
        .await
        .expect("patch");
    let o = env
        .wait_idp("app", "rotated to app-2", |o| {
            is_ready(o.meta().generation, o.status.as_ref())
                && o.status
                    .as_ref()
                    .and_then(|s| s.synchronization_secret_name.as_deref())
                    == Some("app-2")
        })
        .await;
    assert_eq!(
        o.status.and_then(|s| s.client_id).as_deref(),
        Some(client_id.as_str())
    );
    let new_kid = kid_of(&env.secret("app-2").await.expect("new secret"));
    assert_ne!(new_kid, old_kid);
    let kids = env.jwks_kids(&client_id);
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    assert!(
        env.secret("app-1").await.is_some(),
        "old Secret kept while the Pod uses it"
    );

    // The Pod goes; the next full pass removes the old Secret and its key.
    pods.delete("pod-app-1", &DeleteParams::default())
        .await
        .expect("delete pod");
    env.annotate("app", "digdir.nais.io/resync", "true").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.secret("app-1").await.is_some() || env.jwks_kids(&client_id).contains(&old_kid) {
        assert!(
            Instant::now() < deadline,
            "old Secret/key not cleaned up: {:?}",
            env.jwks_kids(&client_id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.jwks_kids(&client_id).contains(&new_kid));
}

#[tokio::test]
async fn keys_are_renewed_before_they_expire() {
    let mut env = env().await;
    env.run();
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let client_id = o.status.and_then(|s| s.client_id).expect("id");
    let exp = |env: &Env| -> i64 {
        env.sim
            .jwks(&client_id)
            .and_then(|j| j["keys"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k["exp"].as_i64())
            .min()
            .unwrap_or(0)
    };
    let first = exp(&env);
    assert!(
        first > env.clock.unix_seconds() + 300 * 86400,
        "a year ahead: {first}"
    );
    let secret_rv = env
        .secret("app-1")
        .await
        .expect("secret")
        .metadata
        .resource_version;
    env.clock.advance(Duration::from_secs(340 * 86400));
    env.annotate("app", "touch", "1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while exp(&env) <= first {
        assert!(Instant::now() < deadline, "keys not renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exp(&env) > env.clock.unix_seconds() + 300 * 86400);
    assert_eq!(
        env.secret("app-1")
            .await
            .expect("secret")
            .metadata
            .resource_version,
        secret_rv,
        "no new key for the app"
    );
}

#[tokio::test]
async fn unowned_secret_is_never_touched() {
    let mut env = env().await;
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken", "namespace": NS}, "stringData": {"A": "b"}
    }))
    .expect("secret");
    let before = env
        .secrets()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create");
    env.run();
    env.create_idp("app", spec("taken")).await;
    let o = env
        .wait_idp("app", "SecretNotOwned", |o| {
            ready_condition(o).is_some_and(|(s, r, _)| s == "False" && r == "SecretNotOwned")
        })
        .await;
    let (_, _, message) = ready_condition(&o).expect("Ready");
    assert!(message.contains("taken"), "{message}");
    let after = env.secret("taken").await.expect("secret");
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(
        env.clients_with_description(&desc("app")).is_empty(),
        "nothing registered"
    );
}

#[tokio::test]
async fn crash_between_create_and_status_still_one_client() {
    let mut env = env().await;
    // The status write after the create fails once: the next pass must adopt, not create again.
    env.kube.inject_fault(
        portvakt::sim::kube::FaultRule::status(500)
            .method("PATCH")
            .path("/apis/nais.io/v1/namespaces/default/idportenclients/app/status")
            .times(1),
    );
    env.run();
    env.create_idp("app", spec("app-1")).await;
    env.wait_ready("app").await;
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
}

#[tokio::test]
async fn digdir_errors_for_a_while_end_ready_without_duplicate() {
    let mut env = env().await;
    env.sim.inject_fault(
        FaultRule::status(
            Some(axum::http::Method::POST),
            "/api/v1/clients",
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        )
        .times(FaultTimes::Times(6)),
    );
    env.sim.inject_fault(
        FaultRule::throttle(Some(axum::http::Method::GET), "/api/v1/clients", 1)
            .times(FaultTimes::Times(3)),
    );
    env.run();
    env.create_idp("app", spec("app-1")).await;
    env.wait_ready("app").await;
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
}

#[tokio::test]
async fn rejected_redirect_uri_gives_ready_false_with_digdirs_message() {
    let mut env = env().await;
    env.run();
    env.create_idp(
        "app",
        json!({"secretName": "app-1", "redirectURIs": ["https://app.example.com/cb#fragment"]}),
    )
    .await;
    let o = env
        .wait_idp("app", "DigdirError", |o| {
            ready_condition(o).is_some_and(|(s, r, _)| s == "False" && r == "DigdirError")
        })
        .await;
    let (_, _, message) = ready_condition(&o).expect("Ready");
    assert!(message.contains("fragment"), "{message}");
    assert!(
        env.secret("app-1").await.is_none(),
        "no Secret without a registration"
    );
    assert!(env.clients_with_description(&desc("app")).is_empty());
}

#[tokio::test]
async fn maskinporten_client_with_consumed_scope() {
    let mut env = env().await;
    env.run();
    let api: Api<MaskinportenClient> = Api::namespaced(env.client.clone(), NS);
    let obj: MaskinportenClient = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": "mp", "namespace": NS},
        "spec": {"secretName": "mp-secret", "scopes": {"consumes": [{"name": "krr:global/kontaktinformasjon.read"}]}},
    }))
    .expect("obj");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let deadline = Instant::now() + Duration::from_secs(30);
    let o = loop {
        let o = api.get("mp").await.expect("get");
        if is_ready(o.meta().generation, o.status.as_ref()) {
            break o;
        }
        assert!(Instant::now() < deadline, "not ready: {:#?}", o.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = o.status.and_then(|s| s.client_id).expect("id");
    let c = env.sim.client(&id).expect("client");
    assert_eq!(c["integration_type"], "maskinporten");
    assert_eq!(c["scopes"], json!(["krr:global/kontaktinformasjon.read"]));
    let s = env.secrets().get("mp-secret").await.expect("secret");
    assert_eq!(
        data(&s, "MASKINPORTEN_SCOPES"),
        "krr:global/kontaktinformasjon.read"
    );
    assert_eq!(
        s.labels().get("type").map(String::as_str),
        Some("maskinporten.digdirator.nais.io")
    );
}

#[tokio::test]
async fn observe_reports_and_writes_nothing() {
    let mut env = env().await;
    env.create_idp("new-app", spec("new-secret")).await;
    let ctx = Context::new(
        env.client.clone(),
        env.digdir.clone(),
        env.core_config(),
        env.clock.clone(),
    );
    let rv = env.kube.resource_version();
    let report = controller::observe(&ctx, &RunOptions::default())
        .await
        .expect("observe");
    assert_eq!(env.kube.resource_version(), rv, "no Kubernetes write");
    assert_eq!(env.digdir.stats().writes(), 0, "no Digdir write");
    let text = report.to_string();
    assert!(
        text.contains("IDPortenClient default/new-app: create"),
        "{text}"
    );
    assert_eq!(report.totals().get("create"), Some(&1));
    env.ctx = None;
}
