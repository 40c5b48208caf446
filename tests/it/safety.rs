//! Crash, fault and bad-input runs against the binary (`portvakt sim` with its fault layer, and
//! `portvakt run`), each asserting a promise: exactly one registration per resource, no key in use
//! removed, no side effect repeated by a failing pass, no answer taken on trust.

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use portvakt::crd::MaskinportenClient;
use serde_json::{Value, json};

use crate::procs::{SimProcess, start_sim, wait_for};

const NS: &str = "team-a";
/// `portvakt sim` writes this cluster name into run.env.
const CLUSTER: &str = "portvakt-sim";

fn desc(name: &str) -> String {
    format!("{CLUSTER}:{NS}:{name}")
}

async fn namespace(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace");
    let _ = api.create(&PostParams::default(), &ns).await;
}

fn mp_api(client: &kube::Client) -> Api<MaskinportenClient> {
    Api::namespaced(client.clone(), NS)
}

async fn create_mp(client: &kube::Client, name: &str, secret: &str) {
    let obj: MaskinportenClient = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"secretName": secret, "scopes": {"consumes": [{"name": "krr:global/kontaktinformasjon.read"}]}},
    }))
    .expect("MaskinportenClient");
    mp_api(client)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create MaskinportenClient");
}

/// `Ready`'s (status, reason, message) for the resource's current generation, if any.
async fn ready_of(client: &kube::Client, name: &str) -> Option<(String, String, String)> {
    let o = mp_api(client).get_opt(name).await.ok()??;
    let generation = o.metadata.generation;
    let st = o.status?;
    let c = portvakt::conditions::find(st.conditions.as_deref()?, "Ready")?;
    (c.observed_generation == generation)
        .then(|| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn is_ready(client: &kube::Client, name: &str) -> bool {
    ready_of(client, name)
        .await
        .is_some_and(|(s, _, _)| s == "True")
}

async fn secret(client: &kube::Client, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .expect("get Secret")
}

fn secret_kid(s: &Secret) -> String {
    let raw = &s.data.as_ref().expect("data")["MASKINPORTEN_CLIENT_JWK"].0;
    let jwk: Value = serde_json::from_slice(raw).expect("JWK");
    jwk["kid"].as_str().expect("kid").to_string()
}

async fn registered_kids(sim: &SimProcess, name: &str) -> Vec<String> {
    let id = sim.active_clients(&desc(name)).await[0]["client_id"]
        .as_str()
        .expect("client_id")
        .to_string();
    sim.jwks_kids(&id).await
}

async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    api.list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// Digdir holds the creates past the operator's request timeout and then acts on them anyway (a
/// late answer). Before the fix the operator looked the client up (not there yet) and posted again:
/// two active clients per resource. Now it waits past the timeout before it decides.
#[tokio::test]
async fn creates_answered_late_end_with_exactly_one_client_each() {
    let sim = start_sim(&[
        "--digdir-fault",
        "POST /api/v1/clients latency=1500ms times=3",
    ])
    .await;
    let client = sim.client().await;
    namespace(&client).await;
    let _op = sim.start_operator(&[("PORTVAKT_DIGDIR_REQUEST_TIMEOUT", "500ms")]);
    for n in ["late-a", "late-b", "late-c"] {
        create_mp(&client, n, &format!("{n}-mp")).await;
    }
    wait_for("every resource Ready", 60, async || {
        for n in ["late-a", "late-b", "late-c"] {
            if !is_ready(&client, n).await {
                return false;
            }
        }
        true
    })
    .await;
    for n in ["late-a", "late-b", "late-c"] {
        let active = sim.active_clients(&desc(n)).await;
        assert_eq!(active.len(), 1, "{n}: {active:#?}");
    }
    let creates = sim.digdir_calls("POST", |p| p == "/api/v1/clients").await;
    assert_eq!(creates.len(), 3, "each create was sent once: {creates:#?}");
}

/// SIGKILL while Digdir's answer to the create is still on its way (the client exists at Digdir,
/// its ID is in no status): the next operator adopts it, never creates a second.
#[tokio::test]
async fn sigkill_during_the_create_still_ends_with_one_client() {
    let sim = start_sim(&[
        "--digdir-fault",
        "POST /api/v1/clients latency-after=20s once",
    ])
    .await;
    let client = sim.client().await;
    namespace(&client).await;
    let mut op = sim.start_operator(&[]);
    create_mp(&client, "crash-create", "crash-create-mp").await;
    wait_for("the create to reach Digdir", 30, async || {
        !sim.active_clients(&desc("crash-create")).await.is_empty()
    })
    .await;
    op.kill9();
    let _op = sim.start_operator(&[]);
    wait_for("Ready after the restart", 60, async || {
        is_ready(&client, "crash-create").await
    })
    .await;
    assert_eq!(sim.active_clients(&desc("crash-create")).await.len(), 1);
    let creates = sim.digdir_calls("POST", |p| p == "/api/v1/clients").await;
    assert_eq!(creates.len(), 1, "{creates:#?}");
}

/// SIGKILL while the first key's registration is on its way: the key was stored before it was
/// posted, so the next operator hands out that very key — no key is made or lost.
#[tokio::test]
async fn sigkill_during_the_key_registration_keeps_the_stored_key() {
    let sim = start_sim(&[
        "--digdir-fault",
        "POST /api/v1/clients/ latency-after=20s once",
    ])
    .await;
    let client = sim.client().await;
    namespace(&client).await;
    let mut op = sim.start_operator(&[]);
    create_mp(&client, "crash-keys", "crash-keys-mp").await;
    let mut held_kids = Vec::new();
    wait_for("the JWKS POST to reach Digdir", 30, async || {
        let posts = sim.digdir_calls("POST", |p| p.ends_with("/jwks")).await;
        if let Some(body) = posts.first().and_then(|c| c["body"].as_str()) {
            let body: Value = serde_json::from_str(body).expect("JSON");
            held_kids = body["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k["kid"].as_str().unwrap_or_default().to_string())
                .collect();
            return true;
        }
        false
    })
    .await;
    op.kill9();
    assert!(
        secret(&client, "crash-keys-mp").await.is_none(),
        "the app had no key yet"
    );
    let op = sim.start_operator(&[]);
    wait_for("Ready after the restart", 60, async || {
        is_ready(&client, "crash-keys").await
    })
    .await;
    let s = secret(&client, "crash-keys-mp").await.expect("app Secret");
    assert_eq!(
        held_kids,
        [secret_kid(&s)],
        "the app got the key that was stored and registered before the crash"
    );
    assert_eq!(
        op.metric("portvakt_keys_generated_total").await,
        0.0,
        "the restarted operator made no key"
    );
    assert_eq!(sim.active_clients(&desc("crash-keys")).await.len(), 1);
}

/// Two in-place rotations while a Pod that started before both still runs: every key it may hold
/// stays registered; once the Pod is gone, the replaced keys are removed.
#[tokio::test]
async fn in_place_rotations_keep_every_key_a_running_pod_may_hold_then_remove_them() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    namespace(&client).await;
    let _op = sim.start_operator(&[("PORTVAKT_NEXT_KEY_DELAY", "0s")]);
    create_mp(&client, "rot", "rot-mp").await;
    wait_for("Ready", 60, async || is_ready(&client, "rot").await).await;
    let k1 = secret_kid(&secret(&client, "rot-mp").await.expect("Secret"));
    // A Pod reading the Secret into its environment (no kubelet: its start is its creation time).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app-1"},
        "spec": {"containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": "rot-mp"}}]}]}
    }))
    .expect("Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create Pod");
    let annotate = async |k: &str, v: &str| {
        mp_api(&client)
            .patch(
                "rot",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {k: v}}})),
            )
            .await
            .expect("annotate");
    };
    let mut kids = vec![k1.clone()];
    for round in 0..2 {
        annotate("digdir.nais.io/rotate", "true").await;
        let before = kids.last().cloned().expect("kid");
        wait_for("the Secret rotated in place", 60, async || {
            secret(&client, "rot-mp")
                .await
                .is_some_and(|s| secret_kid(&s) != before)
        })
        .await;
        kids.push(secret_kid(
            &secret(&client, "rot-mp").await.expect("Secret"),
        ));
        wait_for("the rotation consumed", 30, async || {
            !mp_api(&client)
                .get("rot")
                .await
                .expect("get")
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("digdir.nais.io/rotate")
        })
        .await;
        let registered = registered_kids(&sim, "rot").await;
        for k in &kids {
            assert!(
                registered.contains(k),
                "round {round}: key {k} a running Pod may hold is not registered: {registered:?}"
            );
        }
    }
    // The Pod is gone: nothing can hold the replaced keys; the next pass removes them.
    pods.delete("app-1", &DeleteParams::default())
        .await
        .expect("delete Pod");
    annotate("digdir.nais.io/resync", "true").await;
    wait_for("the replaced keys removed", 60, async || {
        let registered = registered_kids(&sim, "rot").await;
        !registered.contains(&kids[0]) && !registered.contains(&kids[1])
    })
    .await;
    let registered = registered_kids(&sim, "rot").await;
    assert!(registered.contains(&kids[2]), "{registered:?}");
}

/// A Secret name the API server would refuse fails the pass before anything is written anywhere:
/// no Digdir call, no key, no Secret, one event, and a retry does not repeat anything.
#[tokio::test]
async fn a_secret_name_the_api_server_refuses_changes_nothing_anywhere() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    namespace(&client).await;
    let op = sim.start_operator(&[]);
    create_mp(&client, "bad-name", "Bad_Name").await;
    let long = "a".repeat(300);
    create_mp(&client, "long-name", &long).await;
    for n in ["bad-name", "long-name"] {
        wait_for("Ready=False InvalidSpec", 30, async || {
            ready_of(&client, n).await.is_some_and(|(s, r, m)| {
                s == "False" && r == "InvalidSpec" && m.contains("spec.secretName")
            })
        })
        .await;
    }
    // Another pass (asked for by a change), then the same: nothing.
    let failures = op.metric("portvakt_reconcile_failures_total").await;
    mp_api(&client)
        .patch(
            "bad-name",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .expect("annotate");
    wait_for("the second pass", 30, async || {
        op.metric("portvakt_reconcile_failures_total").await > failures
    })
    .await;
    let admin_calls: Vec<Value> = sim
        .digdir_journal()
        .await
        .into_iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.starts_with("/api/")))
        .collect();
    assert!(
        admin_calls.is_empty(),
        "Digdir was called: {admin_calls:#?}"
    );
    assert_eq!(op.metric("portvakt_keys_generated_total").await, 0.0);
    let secrets = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list");
    assert!(secrets.items.is_empty(), "no Secret written");
    assert_eq!(
        events(&client, "bad-name", "FailedSynchronization")
            .await
            .len(),
        1,
        "one event, not one per pass"
    );
}

/// A success answer whose client ID is empty is not a client: no status, no JWKS POST to
/// `/clients//jwks`, no Secret with an empty ID. The pass fails with Digdir's unexpected answer and
/// the retry creates the client properly.
#[tokio::test]
async fn an_answer_without_a_client_id_is_not_taken_on_trust() {
    let sim = start_sim(&[
        "--digdir-fault",
        r#"POST /api/v1/clients once body={"client_id": ""}"#,
    ])
    .await;
    let client = sim.client().await;
    namespace(&client).await;
    let _op = sim.start_operator(&[]);
    create_mp(&client, "trust", "trust-mp").await;
    wait_for("Ready after the retry", 60, async || {
        is_ready(&client, "trust").await
    })
    .await;
    let notes = events(&client, "trust", "FailedSynchronization").await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("unexpected answer") && n.contains("client_id")),
        "{notes:?}"
    );
    let bad = sim.digdir_calls("POST", |p| p.contains("//")).await;
    assert!(bad.is_empty(), "{bad:#?}");
    let s = secret(&client, "trust-mp").await.expect("Secret");
    let id = String::from_utf8(
        s.data.as_ref().expect("data")["MASKINPORTEN_CLIENT_ID"]
            .0
            .clone(),
    )
    .expect("utf-8");
    assert!(!id.is_empty());
    assert_eq!(sim.active_clients(&desc("trust")).await.len(), 1);
}

/// Digdir throttles for a window: resources show that they wait (Ready=False, Pending or
/// Throttled), then become Ready with one client each.
#[tokio::test]
async fn a_throttling_window_shows_as_waiting_then_ends_ready() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    namespace(&client).await;
    sim.digdir_fault("/api/v1 status=503 retry-after=1 for=4s")
        .await;
    let _op = sim.start_operator(&[]);
    create_mp(&client, "window", "window-mp").await;
    let mut seen = None;
    wait_for("Ready=False while Digdir throttles", 30, async || {
        seen = ready_of(&client, "window").await;
        seen.as_ref().is_some_and(|(s, _, _)| s == "False")
    })
    .await;
    let (_, reason, _) = seen.expect("seen");
    assert!(
        ["Pending", "Throttled", "DigdirError"].contains(&reason.as_str()),
        "{reason}"
    );
    wait_for("Ready after the window", 60, async || {
        is_ready(&client, "window").await
    })
    .await;
    assert_eq!(sim.active_clients(&desc("window")).await.len(), 1);
}

/// A conflict on the write that removes the finalizer is retried alone: Digdir gets one DELETE.
#[tokio::test]
async fn a_conflict_while_removing_the_finalizer_does_not_delete_twice() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    namespace(&client).await;
    let _op = sim.start_operator(&[]);
    create_mp(&client, "del", "del-mp").await;
    wait_for("Ready", 60, async || is_ready(&client, "del").await).await;
    let id = sim.active_clients(&desc("del")).await[0]["client_id"]
        .as_str()
        .expect("id")
        .to_string();
    sim.kube_fault(&format!(
        "PATCH /apis/nais.io/v1/namespaces/{NS}/maskinportenclients/del$ status=409 once"
    ))
    .await;
    mp_api(&client)
        .delete("del", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("deleted", 60, async || {
        mp_api(&client).get_opt("del").await.expect("get").is_none()
    })
    .await;
    let deletes = sim
        .digdir_calls("DELETE", |p| p == format!("/api/v1/clients/{id}"))
        .await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(sim.active_clients(&desc("del")).await.is_empty());
}
