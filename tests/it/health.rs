//! The binary's health and metrics endpoints: `/healthz` fails on a stuck pass, `/readyz` is ready
//! once the caches are filled, `/metrics` is Prometheus text with the admin certificate's expiry
//! (absent in kid mode).

use kube::api::{Api, PostParams};
use serde_json::json;

use crate::procs::{start_sim, wait_for};

const TEAM: &str = "team-a";

async fn namespace(client: &kube::Client) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": TEAM}})).expect("ns"),
    )
    .await
    .expect("namespace");
}

async fn create_mp(client: &kube::Client, name: &str) {
    let api: Api<portvakt::crd::MaskinportenClient> = Api::namespaced(client.clone(), TEAM);
    let obj = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": name, "namespace": TEAM},
        "spec": {"secretName": format!("{name}-mp"), "scopes": {"consumes": [{"name": "krr:global/kontaktinformasjon.read"}]}},
    }))
    .expect("MaskinportenClient");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

/// A create Digdir sits on: the pass hangs, and `/healthz` says so (the kubelet would restart
/// the container), naming the resource; `/readyz` stays ready.
#[tokio::test]
async fn healthz_fails_while_a_pass_hangs() {
    let sim = start_sim(&["--digdir-fault", "POST /api/v1/clients latency=25s once"]).await;
    let client = sim.client().await;
    namespace(&client).await;
    let op = sim.start_operator(&[
        ("PORTVAKT_STUCK_PASS_AFTER", "1s"),
        ("PORTVAKT_DIGDIR_REQUEST_TIMEOUT", "60s"),
    ]);
    wait_for("ready", 30, async || op.get("/readyz").await.0 == 200).await;
    assert_eq!(op.get("/healthz").await, (200, "ok".to_string()));
    create_mp(&client, "hangs").await;
    wait_for("/healthz to fail", 30, async || {
        op.get("/healthz").await.0 == 503
    })
    .await;
    let (_, body) = op.get("/healthz").await;
    assert!(
        body.starts_with("stuck: the pass of MaskinportenClient/team-a/hangs has been running for"),
        "{body}"
    );
    assert_eq!(
        op.get("/readyz").await.0,
        200,
        "a hung provider does not make the pod unready"
    );
}

/// The admin certificate's expiry is the x5c leaf's notAfter; the scrape is Prometheus text.
#[tokio::test]
async fn metrics_carry_the_admin_certificate_expiry() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    namespace(&client).await;
    let op = sim.start_operator(&[]);
    wait_for("ready", 30, async || op.get("/readyz").await.0 == 200).await;
    let chain_file = sim.run_env()["PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE"].clone();
    let pem = std::fs::read(&chain_file).expect("chain");
    let (_, leaf) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let leaf = leaf.parse_x509().expect("certificate");
    let not_after = leaf.validity().not_after.timestamp() as f64;
    let addr = op.metrics_address().await;
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = crate::metrics::parse(&r.text().await.expect("text"));
    assert_eq!(
        m.value("portvakt_admin_certificate_expiry_timestamp_seconds", &[]),
        not_after
    );
    // The credential expiry appears with the first resource.
    create_mp(&client, "first").await;
    wait_for("the credential's expiry", 30, async || {
        op.metrics()
            .await
            .get(
                "portvakt_credential_expiry_timestamp_seconds",
                &[
                    ("kind", "MaskinportenClient"),
                    ("namespace", TEAM),
                    ("name", "first"),
                ],
            )
            .is_some_and(|t| {
                // Digdir expires a key a year after it is registered.
                let now = jiff::Timestamp::now().as_second() as f64;
                t > now + 300.0 * 86400.0 && t < now + 400.0 * 86400.0
            })
    })
    .await;
    assert_eq!(
        op.metrics()
            .await
            .get("leader_election_master_status", &[("name", "portvakt")]),
        None,
        "no election, no leader gauge"
    );

    // In kid mode there is no certificate, so no expiry.
    let kid = sim.start_operator_without(
        &["PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE"],
        &[("PORTVAKT_DIGDIR_ADMIN_KID", "admin-key-1")],
    );
    wait_for("kid mode ready", 30, async || {
        kid.get("/readyz").await.0 == 200
    })
    .await;
    let m = kid.metrics().await;
    assert!(
        m.series("portvakt_admin_certificate_expiry_timestamp_seconds")
            .is_empty(),
        "absent in kid mode"
    );
}
