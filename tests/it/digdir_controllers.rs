//! The IDPortenClient and MaskinportenClient controllers, running for real against the embedded
//! Kubernetes API server (in-process client) and the Digdir simulator (served on 127.0.0.1:0).

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use portvakt::controller::{self, Counters, RunOptions};
use portvakt::core;
use portvakt::crd::{IDPortenClient, MaskinportenClient};
use portvakt::digdir::{ClientRegistration, Jwk};
use portvakt::keys;
use portvakt_sim::digdir::{FaultRule, FaultTimes};
use serde_json::{Value, json};

use crate::support::*;

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
    // Ready with one key (registered before the app got it); the next key is deferred.
    let ctx = env.ctx.clone().expect("ctx");
    let kids = env.jwks_kids(&client_id);
    assert_eq!(
        kids,
        std::slice::from_ref(&jwk.kid),
        "only the app's key at first"
    );
    assert_eq!(Counters::get(&ctx.counters.keys_generated), 1);
    assert!(
        Counters::get(&ctx.counters.keygen_cpu_micros) > 0,
        "key CPU counted"
    );
    assert_eq!(ctx.digdir.deferred_next_keys(), 1);
    // A pass within the delay does nothing.
    let writes_before = env.digdir.stats().writes();
    env.pass_idp(&ctx, "app").await;
    assert_eq!(env.digdir.stats().writes(), writes_before);
    // Once the delay is over, a pass makes and registers the next key; the app's Secret stays.
    env.clock
        .advance(env.core_config().next_key_delay + Duration::from_secs(1));
    env.annotate("app", "touch", "2").await;
    wait_until("next key registered", async || {
        env.jwks_kids(&client_id).len() == 2
    })
    .await;
    let kids = env.jwks_kids(&client_id);
    assert!(kids.contains(&jwk.kid), "{kids:?}");
    assert_eq!(Counters::get(&ctx.counters.keys_generated), 2);
    assert_eq!(
        data(
            &env.secret("app-idporten").await.expect("Secret"),
            "IDPORTEN_CLIENT_JWK"
        ),
        data(&s, "IDPORTEN_CLIENT_JWK"),
        "the app's key is unchanged"
    );
    wait_until("nothing deferred", async || {
        ctx.digdir.deferred_next_keys() == 0
    })
    .await;
    assert_eq!(
        Counters::get(&ctx.counters.workload_scans),
        0,
        "no Secret but the app's own: nothing to scan for"
    );

    // Steady state: another pass writes nothing anywhere.
    let writes_before = env.digdir.stats().writes();
    let secret_writes = Counters::get(&ctx.counters.secret_writes);
    let status_writes = Counters::get(&ctx.counters.status_writes);
    env.pass_idp(&ctx, "app").await;
    assert_eq!(env.digdir.stats().writes(), writes_before);
    assert_eq!(Counters::get(&ctx.counters.secret_writes), secret_writes);
    assert_eq!(Counters::get(&ctx.counters.status_writes), status_writes);
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
    let cfg = core::digdir::Config {
        cluster_name: CLUSTER.into(),
        ..core::digdir::Config::default()
    };
    let spec: portvakt::crd::IDPortenClientSpec = serde_json::from_value(spec("x")).expect("spec");
    let p = core::digdir::registration::idporten_payload(&cfg, NS, name, &spec);
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
async fn many_creates_share_one_list_of_registrations() {
    let mut env = env().await;
    let ctx = env.run();
    let names: Vec<String> = (0..12).map(|i| format!("app{i}")).collect();
    for n in &names {
        env.create_idp(n, spec(&format!("{n}-secret"))).await;
    }
    for n in &names {
        env.wait_ready(n).await;
    }
    for n in &names {
        assert_eq!(env.clients_with_description(&desc(n)).len(), 1, "{n}");
    }
    let lists = env
        .sim
        .journal()
        .iter()
        .filter(|c| c.method == axum::http::Method::GET && c.path == "/api/v1/clients")
        .count();
    // One list for all the creates, not one per resource.
    assert_eq!(lists, 1, "list calls for {} creates", names.len());
    assert_eq!(Counters::get(&ctx.counters.client_creates), 12);
    assert_eq!(ctx.digdir.registrations.len(), 12, "own creates recorded");
    // A brand-new client's JWKS is not read: it has none.
    assert_eq!(
        env.sim
            .journal()
            .iter()
            .filter(|c| c.method == axum::http::Method::GET && c.path.ends_with("/jwks"))
            .count(),
        0
    );
}

#[tokio::test]
async fn client_created_before_a_restart_is_adopted_from_a_fresh_list() {
    let mut env = env().await;
    env.run();
    env.create_idp("a", spec("a-secret")).await;
    env.wait_ready("a").await;
    env.stop().await;
    // While the operator is down, a client for "b" appears (as after a crash between the create
    // and the status write).
    let existing = env
        .digdir
        .create_client(&registration("b"))
        .await
        .expect("pre-create")
        .client_id
        .expect("id");
    let ctx = env.run();
    env.create_idp("b", spec("b-secret")).await;
    let o = env.wait_ready("b").await;
    assert_eq!(
        o.status.and_then(|s| s.client_id).as_deref(),
        Some(existing.as_str())
    );
    assert_eq!(env.clients_with_description(&desc("b")).len(), 1);
    assert_eq!(Counters::get(&ctx.counters.client_creates), 0);
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

/// An unchanged resource is not reconciled while nothing is due (periodic passes come and go
/// without it), and time alone brings its pass when something is: the daily full synchronisation,
/// then the renewal of keys near expiry (only the shared clock moved; the resource did not change).
#[tokio::test]
async fn a_steady_resource_gets_a_pass_only_when_something_is_due() {
    let mut env = env().await;
    let cfg = core::digdir::Config {
        next_key_delay: Duration::ZERO,
        ..env.core_config()
    };
    let ctx = env.run_with(cfg, PASS);
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let client_id = o
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .expect("id");
    let synced = |o: &IDPortenClient| {
        o.status
            .as_ref()
            .and_then(|s| s.synchronization_time.as_ref())
            .map(|t| t.0)
    };
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
    // Settled (a sentinel pass runs after every echo of the operator's own writes).
    env.pass_idp(&ctx, "app").await;
    let first_sync = synced(&env.idp().get("app").await.expect("get")).expect("synced");
    let reconciles = Counters::get(&ctx.counters.reconciles);
    wait_passes(&ctx, 3).await;
    assert_eq!(
        Counters::get(&ctx.counters.reconciles),
        reconciles,
        "nothing due: not reconciled while periodic passes run"
    );

    // A day later the full synchronisation is due: a pass comes by itself.
    env.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let o = env
        .wait_idp("app", "the daily full synchronisation", |o| {
            synced(o).is_some_and(|t| t > first_sync)
        })
        .await;
    assert!(Counters::get(&ctx.counters.reconciles) > reconciles);
    assert!(is_ready(o.meta().generation, o.status.as_ref()));

    // Keys within `renew_before` (30 days) of their expiry a year after registration: renewed
    // without any change to the resource, and the app keeps its key.
    let before = exp(&env);
    let secret_rv = env
        .secret("app-1")
        .await
        .expect("secret")
        .metadata
        .resource_version;
    env.clock.advance(Duration::from_secs(334 * 86400));
    wait_until("keys renewed by the clock alone", async || {
        exp(&env) > before
    })
    .await;
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
    // Renewed: nothing is due again for a day, so no pass follows (no loop).
    env.pass_idp(&ctx, "app").await;
    let reconciles = Counters::get(&ctx.counters.reconciles);
    wait_passes(&ctx, 3).await;
    assert_eq!(Counters::get(&ctx.counters.reconciles), reconciles);
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
    env.create_idp("app", spec("app-1")).await;
    // Its generation already observed (as after a switch-over), so the first status write of the
    // pass is the client ID's, right after the create.
    env.idp()
        .patch_status(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}})),
        )
        .await
        .expect("status");
    // The status write after the create fails once: the next pass must adopt, not create again.
    env.kube.inject_fault(
        portvakt_sim::kube::FaultRule::status(500)
            .method("PATCH")
            .path("/apis/nais.io/v1/namespaces/default/idportenclients/app/status")
            .once(),
    );
    let ctx = env.run();
    env.wait_ready("app").await;
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
    // The failure really hit the write of the client ID right after the create...
    let failed: Vec<_> = env
        .kube
        .journal()
        .into_iter()
        .filter(|e| {
            e.method == "PATCH"
                && e.path == "/apis/nais.io/v1/namespaces/default/idportenclients/app/status"
                && e.status == 500
        })
        .collect();
    assert_eq!(failed.len(), 1, "the injected fault fired once");
    assert!(
        failed[0]
            .body
            .as_deref()
            .is_some_and(|b| b.contains("clientID")),
        "it was the client-ID write: {:?}",
        failed[0].body
    );
    // ...and the next pass adopted the client instead of creating a second one.
    assert_eq!(Counters::get(&ctx.counters.client_creates), 1);
}

#[tokio::test]
async fn digdir_errors_for_a_while_end_ready_without_duplicate() {
    let mut env = env().await;
    env.sim.inject_fault(
        FaultRule::status(500)
            .method("POST")
            .path("/api/v1/clients")
            .times(FaultTimes::Times(6)),
    );
    env.sim.inject_fault(
        FaultRule::throttle(1)
            .method("GET")
            .path("/api/v1/clients")
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
    let ctx = env.operator(env.core_config());
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

// ---------------------------------------------------------------------------------------------
// The periodic steady-state pass, many keys in use, timeouts, rotation with propagation delay.

const PASS: Duration = Duration::from_millis(300);

#[tokio::test]
async fn drift_in_registration_is_repaired_and_reported() {
    let mut env = env().await;
    let cfg = env.core_config();
    let ctx = env.run_with(cfg, PASS);
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let id = o.status.and_then(|s| s.client_id).expect("id");
    let want = json!(["https://app.example.com/oauth2/callback"]);
    let secret_rv = env
        .secret("app-1")
        .await
        .expect("secret")
        .metadata
        .resource_version;

    // Someone changes the redirect URI in Samarbeidsportalen.
    env.sim
        .edit_client(
            &id,
            &json!({"redirect_uris": ["https://evil.example.com/cb"]}),
        )
        .expect("edit");
    assert_ne!(env.sim.client(&id).expect("client")["redirect_uris"], want);
    wait_until("registration repaired", async || {
        env.sim.client(&id).expect("client")["redirect_uris"] == want
    })
    .await;
    wait_until("DriftRepaired event", async || {
        !events_for(&env, "app", "DriftRepaired").await.is_empty()
    })
    .await;
    let evs = events_for(&env, "app", "DriftRepaired").await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].0, "Warning");
    assert!(
        evs[0].1.contains("redirect_uris"),
        "names the field: {}",
        evs[0].1
    );
    assert_eq!(Counters::get(&ctx.counters.drift_found), 1);
    assert_eq!(Counters::get(&ctx.counters.drift_repaired), 1);
    // The resync annotation it used is consumed; nothing else changed; still one client.
    let o = env
        .wait_idp("app", "resync consumed", |o| {
            !o.annotations().contains_key("digdir.nais.io/resync")
        })
        .await;
    assert!(is_ready(o.meta().generation, o.status.as_ref()));
    assert_eq!(
        env.secret("app-1")
            .await
            .expect("secret")
            .metadata
            .resource_version,
        secret_rv,
        "the app Secret is not rewritten"
    );
    assert_eq!(env.clients_with_description(&desc("app")).len(), 1);
    // Repaired once: later passes find nothing.
    wait_passes(&ctx, 3).await;
    assert_eq!(Counters::get(&ctx.counters.drift_found), 1);
}

#[tokio::test]
async fn key_removed_by_hand_is_registered_again() {
    let mut env = env().await;
    let cfg = core::digdir::Config {
        jwks_check_every: Duration::from_secs(3600),
        next_key_delay: Duration::ZERO,
        ..env.core_config()
    };
    let ctx = env.run_with(cfg, PASS);
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let id = o.status.and_then(|s| s.client_id).expect("id");
    let app_kid = kid_of(&env.secret("app-1").await.expect("secret"));
    let before = env.jwks_kids(&id);
    assert!(before.contains(&app_kid));

    assert!(env.sim.remove_key(&id, &app_kid), "removed by hand");
    // JWKS are read on their own slower cadence: not within a few passes of the first sighting...
    wait_passes(&ctx, 3).await;
    assert!(!env.jwks_kids(&id).contains(&app_kid), "not read yet");
    assert_eq!(Counters::get(&ctx.counters.drift_found), 0);
    // ...but within one period (jittered) of it.
    env.clock.advance(Duration::from_secs(2 * 3600));
    wait_until("key registered again", async || {
        env.jwks_kids(&id).contains(&app_kid)
    })
    .await;
    let mut after = env.jwks_kids(&id);
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(after, before, "the same set as before the removal");
    wait_until("DriftRepaired event", async || {
        !events_for(&env, "app", "DriftRepaired").await.is_empty()
    })
    .await;
    let evs = events_for(&env, "app", "DriftRepaired").await;
    assert_eq!(evs[0].0, "Warning");
    assert!(
        evs[0].1.contains(&format!("keys removed: {app_kid}")),
        "names the key: {}",
        evs[0].1
    );
    assert_eq!(Counters::get(&ctx.counters.drift_repaired), 1);
}

#[tokio::test]
async fn steady_state_pass_lists_once_and_writes_nothing() {
    let mut env = env().await;
    let cfg = env.core_config();
    let ctx = env.run_with(cfg, PASS);
    for name in ["a", "b", "c"] {
        env.create_idp(name, spec(&format!("{name}-secret"))).await;
    }
    let mp: Api<MaskinportenClient> = Api::namespaced(env.client.clone(), NS);
    let obj: MaskinportenClient = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": "mp", "namespace": NS},
        "spec": {"secretName": "mp-secret", "scopes": {"consumes": [{"name": "krr:global/kontaktinformasjon.read"}]}},
    }))
    .expect("obj");
    mp.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    for name in ["a", "b", "c"] {
        env.wait_ready(name).await;
    }
    wait_until("MaskinportenClient Ready", async || {
        let o = mp.get("mp").await.expect("get");
        is_ready(o.meta().generation, o.status.as_ref())
    })
    .await;
    wait_passes(&ctx, 1).await;
    let rv = env.kube.resource_version();
    let start = env.sim.journal().len();
    let writes = env.digdir.stats().writes();
    let reconciles = Counters::get(&ctx.counters.reconciles);
    wait_passes(&ctx, 3).await;
    // Nothing is due for an unchanged resource: the periodic pass needs no reconcile of any.
    assert_eq!(
        Counters::get(&ctx.counters.reconciles),
        reconciles,
        "no reconcile of an unchanged resource"
    );
    let calls: Vec<String> = env.sim.journal()[start..]
        .iter()
        .filter(|c| c.path.starts_with("/api/v1"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    // Exactly one list per pass (4 resources of both kinds, 3 passes), and nothing else at the
    // admin API.
    assert_eq!(calls, vec!["GET /api/v1/clients"; 3], "{calls:?}");
    assert_eq!(env.digdir.stats().writes(), writes, "no Digdir write");
    assert_eq!(env.kube.resource_version(), rv, "no Kubernetes write");
    assert_eq!(Counters::get(&ctx.counters.drift_found), 0);
    assert_eq!(
        ctx.digdir.drift_report().checked,
        4,
        "every resource compared"
    );
}

fn replica_set_using(secret: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("rs-{secret}"), "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"rs": secret}},
            "template": {
                "metadata": {"labels": {"rs": secret}},
                "spec": {
                    "containers": [{"name": "app", "image": "app"}],
                    "volumes": [{"name": "creds", "secret": {"secretName": secret}}]
                }
            }
        }
    })
}

#[tokio::test]
async fn more_than_five_keys_in_use_keeps_the_prioritised_ones_and_reports_the_rest() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let mut env = env().await;
    env.run();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let rss: Api<ReplicaSet> = Api::namespaced(env.client.clone(), NS);
    env.create_idp("app", spec("app-1")).await;
    env.wait_ready("app").await;
    let mut kids = std::collections::BTreeMap::new();
    // app-1, app-2 used by running Pods; app-3..app-6 by scaled-up ReplicaSets; app-7 current.
    for i in 1..=7 {
        let name = format!("app-{i}");
        if i > 1 {
            // Distinct creation times, so "newest" is well defined.
            env.clock.advance(Duration::from_secs(10));
            env.idp()
                .patch(
                    "app",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"secretName": name}})),
                )
                .await
                .expect("patch");
            env.wait_idp("app", &format!("rotated to {name}"), |o| {
                is_ready(o.meta().generation, o.status.as_ref())
                    && o.status
                        .as_ref()
                        .and_then(|s| s.synchronization_secret_name.as_deref())
                        == Some(name.as_str())
            })
            .await;
        }
        kids.insert(
            name.clone(),
            kid_of(&env.secret(&name).await.expect("secret")),
        );
        match i {
            1 | 2 => {
                pods.create(&PostParams::default(), &pod_using(&name))
                    .await
                    .expect("pod");
            }
            3..=6 => {
                let rs: ReplicaSet = serde_json::from_value(replica_set_using(&name)).expect("rs");
                rss.create(&PostParams::default(), &rs).await.expect("rs");
            }
            _ => {}
        }
    }
    let o = env.idp().get("app").await.expect("get");
    let id = o.status.clone().and_then(|s| s.client_id).expect("id");
    let next = env
        .secret(&core::digdir::app_secret::next_key_secret_name(
            core::digdir::DigdirKind::IDPorten,
            "app",
        ))
        .await
        .expect("next-key Secret");
    let next_kid = core::digdir::app_secret::read_next_key_secret(&next)
        .0
        .expect("next key")
        .kid;

    // Current, keys of running Pods, the next key, then the newest scaled template: five.
    let mut want: Vec<String> = ["app-7", "app-1", "app-2", "app-6"]
        .iter()
        .map(|n| kids[*n].clone())
        .chain([next_kid])
        .collect();
    want.sort();
    let mut got = env.jwks_kids(&id);
    got.sort();
    assert_eq!(got, want);

    // The Secrets whose keys did not fit are named in a condition and an event, and kept.
    let cond = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, "KeysDropped"))
        .cloned()
        .expect("KeysDropped condition");
    assert_eq!(cond.status, "True");
    for dropped in ["app-3", "app-4", "app-5"] {
        assert!(cond.message.contains(dropped), "{}", cond.message);
        assert!(env.secret(dropped).await.is_some(), "{dropped} kept");
    }
    for kept in ["app-1", "app-2", "app-6"] {
        assert!(!cond.message.contains(&format!("{kept},")) && !cond.message.ends_with(kept));
    }
    let evs = events_for(&env, "app", "KeysDropped").await;
    assert!(
        evs.iter()
            .any(|(t, n)| t == "Warning"
                && ["app-3", "app-4", "app-5"].iter().all(|d| n.contains(d))),
        "{evs:?}"
    );
}

#[tokio::test]
async fn digdir_timeouts_for_a_while_end_ready_with_one_client() {
    use axum::http::Method;
    let mut env = env().await;
    env.set_request_timeout(Duration::from_millis(400));
    // The create goes through but its answer comes too late; reads hang for a while too.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_secs(2))
            .method(Method::POST)
            .path("/api/v1/clients")
            .times(FaultTimes::Times(2)),
    );
    env.sim.inject_fault(
        FaultRule::latency(Duration::from_secs(2))
            .method(Method::GET)
            .path("/api/v1/clients")
            .times(FaultTimes::Times(3)),
    );
    env.run();
    env.create_idp("app", spec("app-1")).await;
    let o = env.wait_ready("app").await;
    let id = o.status.and_then(|s| s.client_id).expect("id");
    let clients = env.clients_with_description(&desc("app"));
    assert_eq!(clients.len(), 1, "{clients:#?}");
    assert_eq!(clients[0]["client_id"], id.as_str());
    let stats = env.digdir.stats();
    assert!(stats.retries >= 1, "the timeouts happened: {stats:?}");
    let creates = env
        .sim
        .journal()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/api/v1/clients")
        .count();
    assert_eq!(creates, 1, "the timed-out create was never repeated");
    let s = env.secret("app-1").await.expect("secret");
    assert_eq!(data(&s, "IDPORTEN_CLIENT_ID"), id);
    assert!(env.jwks_kids(&id).contains(&kid_of(&s)));
}

/// The key in a MaskinportenClient's Secret gets a token right now.
async fn token_with_secret_key(env: &Env, secret: &Secret) -> Result<Value, String> {
    let jwk: Value = serde_json::from_str(&data(secret, "MASKINPORTEN_CLIENT_JWK"))
        .map_err(|e| e.to_string())?;
    portvakt_sim::digdir::app::maskinporten_token(
        &env.urls.maskinporten,
        &data(secret, "MASKINPORTEN_CLIENT_ID"),
        &jwk,
        "krr:global/kontaktinformasjon.read",
        &env.clock,
    )
    .await
    .map_err(|e| e.to_string())
}

fn mp_kid(s: &Secret) -> String {
    let jwk: Value = serde_json::from_str(&data(s, "MASKINPORTEN_CLIENT_JWK")).expect("JWK");
    jwk["kid"].as_str().expect("kid").to_string()
}

#[tokio::test]
async fn rotation_with_propagation_delay_only_hands_out_accepted_keys() {
    let mut env = env().await;
    let delay = Duration::from_secs(120);
    env.sim.set_propagation_delay(delay);
    let cfg = core::digdir::Config {
        key_propagation: delay,
        next_key_delay: Duration::ZERO,
        ..env.core_config()
    };
    env.run_with(cfg, Duration::from_secs(3600));
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
    let ready = async |api: &Api<MaskinportenClient>| {
        let o = api.get("mp").await.expect("get");
        is_ready(o.meta().generation, o.status.as_ref())
    };
    wait_until("Ready", async || ready(&api).await).await;
    let secret = env.secret("mp-secret").await.expect("secret");
    // A brand-new client is unknown to the token endpoint until it has propagated.
    assert!(token_with_secret_key(&env, &secret).await.is_err());
    env.clock.advance(delay + Duration::from_secs(1));
    token_with_secret_key(&env, &secret)
        .await
        .expect("token with the first key");
    let k1 = mp_kid(&secret);

    // Rotation 1: the next key has been registered for longer than the delay: handed out at once.
    let annotate = async |k: &str, v: &str| {
        api.patch(
            "mp",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {k: v}}})),
        )
        .await
        .expect("annotate");
    };
    annotate("digdir.nais.io/rotate", "true").await;
    let mut changed = None;
    wait_until("Secret rotated", async || {
        let s = env.secret("mp-secret").await.expect("secret");
        let new = mp_kid(&s) != k1;
        if new {
            changed = Some(s);
        }
        new
    })
    .await;
    let s2 = changed.take().expect("rotated Secret");
    let token = token_with_secret_key(&env, &s2).await;
    assert!(
        token.is_ok(),
        "the new key works the moment the app gets it: {token:?}"
    );
    let k2 = mp_kid(&s2);
    wait_until("rotate consumed", async || {
        !api.get("mp")
            .await
            .expect("get")
            .annotations()
            .contains_key("digdir.nais.io/rotate")
    })
    .await;

    // Rotation 2 right away: the fresh next key is not recognised yet, so nothing is handed out
    // (and if something were, it would have to work).
    annotate("digdir.nais.io/rotate", "true").await;
    let pending = async || {
        let o = api.get("mp").await.expect("get");
        o.status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .and_then(|c| portvakt::conditions::find(c, "Ready"))
            .is_some_and(|c| c.status == "False" && c.reason == "Pending")
    };
    wait_until("rotation pending or done", async || {
        let s = env.secret("mp-secret").await.expect("secret");
        if mp_kid(&s) != k2 {
            changed = Some(s);
            return true;
        }
        pending().await
    })
    .await;
    if let Some(s) = changed.take() {
        let token = token_with_secret_key(&env, &s).await;
        assert!(
            token.is_ok(),
            "a key handed out before Digdir accepts it: {token:?}"
        );
        panic!("rotated although the next key had not propagated yet");
    }
    let op = env.ctx.clone().expect("running");
    env.pass(&api, &op, "mp").await;
    let s = env.secret("mp-secret").await.expect("secret");
    assert_eq!(mp_kid(&s), k2, "no unrecognised key handed out");
    token_with_secret_key(&env, &s)
        .await
        .expect("the app's key still works while the rotation waits");

    // Once the next key has aged, the rotation completes, and the new key works at once.
    env.clock.advance(delay + Duration::from_secs(1));
    annotate("touch", "1").await;
    wait_until("Secret rotated again", async || {
        let s = env.secret("mp-secret").await.expect("secret");
        let new = mp_kid(&s) != k2;
        if new {
            changed = Some(s);
        }
        new
    })
    .await;
    let s3 = changed.take().expect("rotated Secret");
    let token = token_with_secret_key(&env, &s3).await;
    assert!(
        token.is_ok(),
        "the new key works the moment the app gets it: {token:?}"
    );
    wait_until("Ready", async || ready(&api).await).await;
}

#[tokio::test]
async fn secret_changed_or_deleted_by_someone_else_is_repaired_without_a_loop() {
    let mut env = env().await;
    let ctx = env.run();
    env.create_idp("app", spec("app-idporten")).await;
    env.wait_ready("app").await;
    let s = env.secret("app-idporten").await.expect("Secret");
    let client_id = data(&s, "IDPORTEN_CLIENT_ID");
    let kid = kid_of(&s);
    // The operator's own writes echoed back by the watches start no further passes: the one pass
    // a sentinel change starts (queued behind any echo, the watch being ordered) is the only one.
    let settled = Counters::get(&ctx.counters.reconciles);
    env.pass_idp(&ctx, "app").await;
    assert_eq!(Counters::get(&ctx.counters.reconciles), settled + 1);

    // Edited by someone else: repaired.
    env.secrets()
        .patch(
            "app-idporten",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"IDPORTEN_CLIENT_ID": "tampered"}})),
        )
        .await
        .expect("patch");
    wait_until("Secret repaired", async || {
        env.secret("app-idporten")
            .await
            .is_some_and(|s| data(&s, "IDPORTEN_CLIENT_ID") == client_id)
    })
    .await;

    // Deleted by someone else: written again, with the same key.
    env.secrets()
        .delete("app-idporten", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("Secret re-created", async || {
        env.secret("app-idporten")
            .await
            .is_some_and(|s| kid_of(&s) == kid && data(&s, "IDPORTEN_CLIENT_ID") == client_id)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Exactly which calls a pass makes; duplicates of a resource's identity; drift checks that fail.

/// A first pass of a new IDPortenClient makes exactly these calls at Digdir, in this order; a pass
/// with nothing to do makes none.
#[tokio::test]
async fn a_pass_makes_exactly_the_calls_it_needs() {
    let mut env = env().await;
    let op = env.run();
    let mark = digdir_mark(&env.sim);
    env.create_idp("app", spec("app-secret")).await;
    env.wait_ready("app").await;
    assert_eq!(
        digdir_calls_since(&env.sim, mark),
        [
            "GET /api/v1/clients",
            "POST /api/v1/clients",
            "POST /api/v1/clients/{id}/jwks",
        ],
        "one list (the shared index), the create, the first key"
    );
    let mark = digdir_mark(&env.sim);
    env.pass_idp(&op, "app").await;
    assert_eq!(
        digdir_calls_since(&env.sim, mark),
        Vec::<String>::new(),
        "a pass with nothing to do calls nothing"
    );
    // A spec change: the registration is read and updated, nothing else.
    env.idp()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"redirectURIs": ["https://app.example.com/other"]}})),
        )
        .await
        .expect("update");
    let mark = digdir_mark(&env.sim);
    env.wait_idp("app", "Ready for generation 2", |o| {
        o.meta().generation == Some(2) && is_ready(Some(2), o.status.as_ref())
    })
    .await;
    assert_eq!(
        digdir_calls_since(&env.sim, mark),
        ["GET /api/v1/clients/{id}", "PUT /api/v1/clients/{id}"]
    );
}

/// A second active client with a resource's identity (a late answer, a second operator, a copy made
/// by hand) is found by the periodic pass and deactivated, with an event; the one the status names
/// is kept.
#[tokio::test]
async fn a_duplicate_registration_is_deactivated_and_the_named_one_kept() {
    let mut env = env().await;
    let cfg = env.core_config();
    let _op = env.run_with(cfg, PASS);
    env.create_idp("app", spec("app-secret")).await;
    let kept = env
        .wait_ready("app")
        .await
        .status
        .and_then(|s| s.client_id)
        .expect("id");
    // A copy with the same identity, made outside the operator.
    let copy = env
        .digdir
        .create_client(&registration("app"))
        .await
        .expect("copy")
        .client_id
        .expect("id");
    wait_until("the copy deactivated", async || {
        env.sim.client(&copy).is_some_and(|c| c["active"] == false)
    })
    .await;
    assert_ne!(env.sim.client(&kept).expect("kept")["active"], false);
    let notes = events_for(&env, "app", "DuplicateRegistration").await;
    assert!(
        notes
            .iter()
            .any(|(t, n)| t == "Warning" && n.contains(&copy) && n.contains(&kept)),
        "{notes:?}"
    );
    env.wait_ready("app").await;
}

/// A duplicate whose client ID is in a Secret of the resource that a running Pod uses is kept (and
/// said so), never deactivated under the Pod.
#[tokio::test]
async fn a_duplicate_a_workload_uses_is_kept() {
    let mut env = env().await;
    let cfg = env.core_config();
    let _op = env.run_with(cfg, PASS);
    let obj = env.create_idp("app", spec("app-secret")).await;
    env.wait_ready("app").await;
    let copy = env
        .digdir
        .create_client(&registration("app"))
        .await
        .expect("copy")
        .client_id
        .expect("id");
    // An older app Secret of this resource holding the copy's ID, used by a Pod.
    let owner = json!({"apiVersion": "nais.io/v1", "kind": "IDPortenClient", "name": "app",
        "uid": obj.meta().uid.clone().expect("uid"), "controller": true});
    let old: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-secret-old", "namespace": NS,
            "labels": {"app": "app", "type": "digdirator.nais.io"}, "ownerReferences": [owner]},
        "stringData": {"IDPORTEN_CLIENT_ID": copy}
    }))
    .expect("Secret");
    env.secrets()
        .create(&PostParams::default(), &old)
        .await
        .expect("old Secret");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod_using("app-secret-old"))
        .await
        .expect("Pod");
    wait_until("the duplicate reported as kept", async || {
        events_for(&env, "app", "DuplicateRegistration")
            .await
            .iter()
            .any(|(_, n)| n.contains(&copy) && n.contains("kept"))
    })
    .await;
    assert_ne!(env.sim.client(&copy).expect("copy")["active"], false);
}

/// The periodic check meeting Digdir errors never flips a Ready resource to not Ready.
#[tokio::test]
async fn a_failing_drift_check_leaves_ready_resources_ready() {
    let mut env = env().await;
    let cfg = env.core_config();
    let op = env.run_with(cfg, PASS);
    env.create_idp("app", spec("app-secret")).await;
    env.wait_ready("app").await;
    let failures = Counters::get(&op.counters.failures);
    env.sim
        .inject_fault(FaultRule::status(503).method("GET").path("/api/v1/clients"));
    wait_passes(&op, 2).await;
    assert!(
        Counters::get(&op.counters.failures) > failures,
        "the failed checks are counted"
    );
    let o = env.idp().get("app").await.expect("get");
    assert!(
        is_ready(o.meta().generation, o.status.as_ref()),
        "{:?}",
        o.status
    );
    // Shown in a condition of its own, with the reason and Digdir's answer, and in the metrics.
    let drift_check = |o: &IDPortenClient| {
        o.status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .and_then(|c| c.iter().find(|c| c.type_ == "DriftChecked"))
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let shown = env
        .wait_idp("app", "DriftChecked=False", |o| {
            drift_check(o).is_some_and(|c| c.0 == "False")
        })
        .await;
    let (_, reason, message) = drift_check(&shown).expect("condition");
    assert_eq!(reason, "DigdirError");
    assert!(
        message.contains("periodic comparison with Digdir failed") && message.contains("503"),
        "{message}"
    );
    assert!(is_ready(shown.meta().generation, shown.status.as_ref()));
    let rendered = op.metrics.render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("portvakt_periodic_checks_total{")
                && l.contains("provider=\"digdir\"")
                && !l.contains("result=\"ok\"")),
        "{rendered}"
    );
    // The first check that succeeds again removes it.
    env.sim.clear_faults();
    env.wait_idp("app", "DriftChecked gone", |o| drift_check(o).is_none())
        .await;
}
