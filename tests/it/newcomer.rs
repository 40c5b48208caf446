//! What a new user meets in the first hour: conditions in words, status that says which generation
//! it is about, a process that stops on SIGTERM in every state, readiness that tells the truth, and
//! events that say what happened.

use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::{Patch, PatchParams};
use portvakt::controller::Counters;
use portvakt_sim::kube::FaultRule;
use serde_json::{Value, json};

use crate::support::*;

/// A Secret write the API server refuses gives a condition in words: the server's message, naming
/// the field, and the reason saying whose problem it is — never a Rust `Debug` dump.
#[tokio::test]
async fn a_refused_secret_write_reads_as_words_naming_the_field() {
    let mut env = env().await;
    env.kube.inject_fault(
        FaultRule::status(422)
            .method("POST")
            .path("/api/v1/namespaces/default/secrets")
            .message("Secret \"app-1\" is invalid: metadata.labels: Invalid value: \"x\": a label is too long"),
    );
    env.run();
    env.create_idp("app", spec("app-1")).await;
    let o = env
        .wait_idp("app", "Ready=False", |o| {
            ready_condition(o).is_some_and(|(s, r, _)| s == "False" && r == "InvalidSpec")
        })
        .await;
    let (_, _, message) = ready_condition(&o).expect("Ready");
    assert!(
        message.contains("creating Secret default/")
            && message.contains("422 Invalid")
            && message.contains("metadata.labels"),
        "{message}"
    );
    for dump in ["Status {", "Some(", "ListMeta", "continue_"] {
        assert!(
            !message.contains(dump),
            "a Debug dump in the condition: {message}"
        );
    }
    let error = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, "Error"))
        .expect("digdirator's Error condition");
    assert!(!error.message.contains("Status {"), "{}", error.message);
}

/// Every status write names the generation it is about, and never reports a new generation under
/// a stale `Ready=True`: kstatus reads the top-level `observedGeneration` beside the conditions.
#[tokio::test]
async fn every_status_write_is_about_the_generation_it_names() {
    let mut env = env().await;
    let op = env.run();
    // A new resource that fails has an observedGeneration.
    env.create_idp(
        "bad",
        json!({"secretName": "bad-1", "redirectURIs": ["https://app.example.com/cb#fragment"]}),
    )
    .await;
    let o = env
        .wait_idp("bad", "DigdirError", |o| {
            ready_condition(o).is_some_and(|(s, r, _)| s == "False" && r == "DigdirError")
        })
        .await;
    assert_eq!(
        o.status.as_ref().and_then(|s| s.observed_generation),
        Some(1)
    );

    // A Ready resource whose spec changes: every status write carries the new generation and its
    // Ready condition is about that generation.
    env.create_idp("app", spec("app-1")).await;
    env.wait_ready("app").await;
    env.kube.clear_journal();
    env.idp()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"redirectURIs": ["https://app.example.com/other"]}})),
        )
        .await
        .expect("update");
    env.wait_idp("app", "Ready for generation 2", |o| {
        o.meta().generation == Some(2) && is_ready(Some(2), o.status.as_ref())
    })
    .await;
    let writes: Vec<Value> = env
        .kube
        .journal()
        .into_iter()
        .filter(|c| c.method == "PATCH" && c.path.ends_with("/idportenclients/app/status"))
        .filter_map(|c| serde_json::from_str(c.body.as_deref()?).ok())
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        let st = &w["status"];
        assert_eq!(st["observedGeneration"], 2, "{w}");
        let ready = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .expect("every write says Ready");
        assert_eq!(ready["observedGeneration"], 2, "a stale Ready in {w}");
    }
    assert!(Counters::get(&op.counters.status_writes) > 0);
}

/// The event for registering the deferred next key says that is what happened.
#[tokio::test]
async fn the_deferred_next_key_event_says_the_next_key_was_registered() {
    let mut env = env().await;
    let op = env.run();
    env.create_idp("app", spec("app-1")).await;
    env.wait_ready("app").await;
    env.clock
        .advance(env.core_config().next_key_delay + Duration::from_secs(1));
    env.pass_idp(&op, "app").await;
    wait_until("the next key registered", async || {
        op.digdir.deferred_next_keys() == 0
    })
    .await;
    let notes = events_for(&env, "app", "UpdatedInDigDir").await;
    assert!(
        notes
            .iter()
            .any(|(_, n)| n.contains("next key (for a later rotation) registered")),
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|(_, n)| n.contains("not registered")),
        "{notes:?}"
    );
}

/// With the API server unreachable, `portvakt run` still stops on SIGTERM at once, and its log
/// names the URL it could not reach.
#[tokio::test]
async fn sigterm_stops_the_operator_when_the_api_server_cannot_be_reached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        portvakt_sim::kube::ApiServer::kubeconfig_yaml("http://127.0.0.1:1", "default"),
    )
    .expect("kubeconfig");
    let sim = crate::procs::start_sim(&[]).await;
    let mut op = sim.start_operator(&[("KUBECONFIG", kubeconfig.to_str().expect("utf-8"))]);
    // Give it time to get stuck on the API server, then ask it to stop.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) && op.running() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(op.running(), "it keeps trying:\n{}", op.log_text());
    let (status, took) = op.terminate();
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert!(status.success() || status.code().is_some(), "{status:?}");
}

/// /readyz tells the truth: not ready while the API server cannot be reached.
#[tokio::test]
async fn readyz_is_not_ready_while_the_api_server_is_down() {
    let sim = crate::procs::start_sim(&[]).await;
    let op = sim.start_operator(&[]);
    let addr = op.metrics_address().await;
    let ready = reqwest::get(format!("http://{addr}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    // The API server goes away (the simulator is killed).
    drop(sim);
    let mut last = String::new();
    crate::procs::wait_for("/readyz to say 503", 20, async || {
        match reqwest::get(format!("http://{addr}/readyz")).await {
            Ok(r) if r.status() == 503 => {
                last = r.text().await.unwrap_or_default();
                true
            }
            _ => false,
        }
    })
    .await;
    assert!(
        last.contains("cannot be reached") && last.contains("127.0.0.1:"),
        "{last}"
    );
}

/// A kind no enabled controller handles is left alone, counted in the log and in a gauge.
#[tokio::test]
async fn resources_of_a_kind_no_controller_handles_are_counted_and_left_alone() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    use portvakt::crd::AzureAdApplication;
    let sim = crate::procs::start_sim(&[]).await;
    let client = sim.client().await;
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "tilgangsstyring-main"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/examples/azureadapplication.yaml"),
    )
    .expect("example");
    let app: AzureAdApplication = serde_saphyr::from_str(&text).expect("AzureAdApplication");
    let apps: Api<AzureAdApplication> = Api::namespaced(client.clone(), "tilgangsstyring-main");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create");
    // The Entra controller turned off (run.env configures it): the kind is not handled.
    let op = sim.start_operator(&[("PORTVAKT_AZURE", "false")]);
    crate::procs::wait_for("the count logged", 30, async || {
        op.log_text().contains("1 AzureAdApplication resources")
    })
    .await;
    assert_eq!(
        op.metric("portvakt_unhandled_resources{kind=\"AzureAdApplication\"}")
            .await,
        1.0
    );
    let got = apps.get("test-app").await.expect("get");
    assert!(got.metadata.finalizers.is_none(), "no finalizer added");
    assert!(got.status.is_none(), "no status written");
}

/// `portvakt demo --examples DIR` handles an AzureAdApplication too and proves its Secret: a
/// client-credentials token with the certificate in AZURE_APP_JWK.
#[test]
fn the_demo_handles_an_azure_ad_application_and_proves_its_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/examples");
    for f in ["idportenclient.yaml", "azureadapplication.yaml"] {
        std::fs::copy(data.join(f), dir.path().join(f)).expect("copy");
    }
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["demo", "--examples"])
        .arg(dir.path())
        .output()
        .expect("portvakt demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("not handled"), "{text}");
    assert!(text.contains("OK   IDPortenClient"), "{text}");
    assert!(
        text.contains(
            "OK   AzureAdApplication tilgangsstyring-main/test-app: Entra issued a Bearer token"
        ) && text.contains("with the certificate in AZURE_APP_JWK"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(100), "{text}");
}
