//! Signing the Digdir admin grant with a key held in Google Cloud KMS: portvakt's `GcpKmsSigner` against the
//! KMS and metadata-server simulator (`portvakt_sim::kms`), its grants judged by the Digdir simulator.

use std::sync::Arc;
use std::time::Duration;

use portvakt::clock::Clock;
use portvakt::digdir::{DigdirClient, DigdirConfig, DigdirEnvironment, RetryPolicy};
use portvakt::keys::{self, KeyReference, Signer};
use portvakt::kms::GcpKmsSigner;
use portvakt_sim::ServeHandle;
use portvakt_sim::digdir::{CallRecord, DigdirSim, FaultRule, Seed, WellKnownUrls};
use portvakt_sim::kms::{KmsSim, TOKEN_PATH};
use serde_json::{Value, json};

const KEY: &str = "projects/nav-test/locations/europe-north1/keyRings/digdirator/cryptoKeys/admin/cryptoKeyVersions/1";
const OTHER_KEY: &str = "projects/nav-test/locations/europe-north1/keyRings/digdirator/cryptoKeys/admin/cryptoKeyVersions/2";

struct World {
    clock: Clock,
    kms: KmsSim,
    kms_url: String,
    _kms_handle: ServeHandle,
    digdir: DigdirSim,
    urls: WellKnownUrls,
    _digdir_handle: ServeHandle,
    /// The KMS key's business certificate chain (PEM), as Digdir knows it.
    chain_pem: String,
    kid: String,
}

async fn world() -> World {
    portvakt::install_crypto_provider();
    let clock = Clock::system();
    let kms = KmsSim::new(clock.clone());
    let public = kms.create_key_version(KEY).expect("key version");
    let kms_handle = kms
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve kms");
    let digdir = DigdirSim::new(clock.clone(), Seed::default());
    let digdir_handle = digdir
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve digdir");
    let urls = digdir.well_known_urls(&digdir_handle.url());
    // Digdir knows the KMS key only by its public half: a business certificate issued for it.
    let enrolled = digdir
        .enroll_admin_key(
            "kms-admin-key",
            public["n"].as_str().expect("n"),
            public["e"].as_str().expect("e"),
        )
        .expect("enrol the KMS key");
    World {
        clock,
        kms,
        kms_url: kms_handle.url(),
        _kms_handle: kms_handle,
        digdir,
        urls,
        _digdir_handle: digdir_handle,
        chain_pem: enrolled.certificate_chain_pem,
        kid: enrolled.kid,
    }
}

impl World {
    fn x5c(&self) -> KeyReference {
        KeyReference::X5c(keys::parse_cert_chain(&self.chain_pem).expect("chain"))
    }

    fn signer(&self, key: &str, reference: KeyReference) -> Arc<GcpKmsSigner> {
        Arc::new(
            GcpKmsSigner::new(
                key,
                reference,
                &self.kms_url,
                &self.kms_url,
                self.clock.clone(),
            )
            .expect("signer"),
        )
    }

    fn digdir_client(&self, signer: Arc<dyn Signer>) -> DigdirClient {
        let creds = self.digdir.admin_credentials();
        let mut config = DigdirConfig::preset(DigdirEnvironment::Test, creds.client_id.clone());
        config.base_url = self.urls.admin_base_url.clone();
        config.maskinporten_well_known_url = self.urls.maskinporten.well_known_url.clone();
        config.idporten_well_known_url = self.urls.idporten.well_known_url.clone();
        config.retry = RetryPolicy::fast(3);
        DigdirClient::new(&config, signer, self.clock.clone()).expect("digdir client")
    }

    fn kms_calls(&self, path_part: &str) -> Vec<CallRecord> {
        self.kms
            .journal()
            .into_iter()
            .filter(|c| c.path.contains(path_part))
            .collect()
    }

    fn token_grants(&self) -> Vec<CallRecord> {
        self.digdir
            .journal()
            .into_iter()
            .filter(|c| c.path == "/maskinporten/token")
            .collect()
    }
}

/// The header of the assertion in a journaled grant.
fn grant_header(call: &CallRecord) -> Value {
    let body = call.body.as_deref().expect("grant body");
    let assertion = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "assertion")
        .map(|(_, v)| v.into_owned())
        .expect("assertion");
    portvakt_sim::jwt::raw_header(&assertion).expect("JWT header")
}

#[tokio::test]
async fn a_kms_signed_grant_is_accepted_by_digdir_with_x5c_and_with_kid() {
    let w = world().await;

    let digdir = w.digdir_client(w.signer(KEY, w.x5c()));
    digdir
        .list_clients(false)
        .await
        .expect("an admin call with a KMS-signed x5c grant");
    let grants = w.token_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].status, 200);
    let header = grant_header(&grants[0]);
    assert_eq!(header["alg"], "RS256");
    assert!(
        header.get("kid").is_none(),
        "x5c mode sends no kid: {header}"
    );
    assert_eq!(
        header["x5c"],
        json!(keys::parse_cert_chain(&w.chain_pem).unwrap())
    );
    // One token from the metadata server, one signature from KMS, with that token.
    assert_eq!(w.kms_calls(TOKEN_PATH).len(), 1);
    let signs = w.kms_calls(":asymmetricSign");
    assert_eq!(signs.len(), 1);
    assert_eq!(signs[0].path, format!("/v1/{KEY}:asymmetricSign"));
    assert_eq!(signs[0].status, 200);

    let digdir = w.digdir_client(w.signer(KEY, KeyReference::Kid(w.kid.clone())));
    digdir
        .list_clients(false)
        .await
        .expect("an admin call with a KMS-signed kid grant");
    let header = grant_header(w.token_grants().last().expect("grant"));
    assert_eq!(header["kid"], w.kid.as_str());
    assert!(header.get("x5c").is_none(), "{header}");

    // A key version the certificate was not issued for: Digdir refuses the grant (the signature is checked).
    w.kms.create_key_version(OTHER_KEY).expect("key version");
    let digdir = w.digdir_client(w.signer(OTHER_KEY, w.x5c()));
    let err = digdir
        .list_clients(false)
        .await
        .expect_err("a grant signed by another key")
        .to_string();
    assert!(err.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn the_metadata_token_is_cached_until_shortly_before_it_expires() {
    let w = world().await;
    w.kms.set_token_lifetime(Duration::from_secs(600));
    let signer = w.signer(KEY, w.x5c());
    let header = signer.header();
    let claims = json!({"iss": "admin", "exp": 4_000_000_000i64});

    // Concurrent first signatures share one token fetch.
    let all = futures::future::join_all((0..8).map(|_| signer.sign(&header, &claims))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(w.kms.tokens_issued(), 1);
    assert_eq!(w.kms.signatures(), 8);

    // Still fresh 9 minutes later; within a minute of expiry a new token is fetched.
    w.clock.advance(Duration::from_secs(530));
    signer.sign(&header, &claims).await.expect("sign");
    assert_eq!(w.kms.tokens_issued(), 1);
    w.clock.advance(Duration::from_secs(20));
    signer.sign(&header, &claims).await.expect("sign");
    assert_eq!(w.kms.tokens_issued(), 2);
    assert_eq!(signer.tokens().fetch_count(), 2);
    assert_eq!(w.kms_calls(TOKEN_PATH).len(), 2);

    // A token KMS no longer accepts (revoked early): dropped, fetched again, and the signature made.
    w.kms.revoke_tokens();
    signer
        .sign(&header, &claims)
        .await
        .expect("sign after a 401");
    assert_eq!(w.kms.tokens_issued(), 3);
    let statuses: Vec<u16> = w
        .kms_calls(":asymmetricSign")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(&statuses[statuses.len() - 2..], &[401, 200]);
}

#[tokio::test]
async fn kms_and_metadata_failures_are_clear_errors_without_tokens() {
    let w = world().await;
    let header = keys::JwtHeader::with_kid("k".into());
    let claims = json!({"iss": "admin"});

    // The metadata server refuses (no workload identity): named, with what to check; KMS never called.
    w.kms.inject_fault(
        FaultRule::status(401)
            .method("GET")
            .path("/computeMetadata/")
            .once(),
    );
    let signer = w.signer(KEY, w.x5c());
    let err = signer
        .sign(&header, &claims)
        .await
        .expect_err("no token")
        .to_string();
    assert!(
        err.contains("metadata server")
            && err.contains("HTTP 401")
            && err.contains("workload identity"),
        "{err}"
    );
    assert!(w.kms_calls(":asymmetricSign").is_empty());

    // KMS refuses: the key and Google's status named, and the role to grant.
    w.kms.set_may_sign(KEY, false);
    let err = signer
        .sign(&header, &claims)
        .await
        .expect_err("permission denied");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(KEY)
            && text.contains("HTTP 403 PERMISSION_DENIED")
            && text.contains("roles/cloudkms.signer"),
        "{text}"
    );
    assert!(!text.contains("ya29."), "no token in errors: {text}");

    // Through the Digdir client: the failure names the signing step and is not retried.
    let digdir = w.digdir_client(signer.clone());
    let err = digdir
        .list_clients(false)
        .await
        .expect_err("no grant")
        .to_string();
    assert!(
        err.contains("signing the admin grant") && err.contains("PERMISSION_DENIED"),
        "{err}"
    );
    assert!(
        w.token_grants().is_empty(),
        "nothing was sent to Maskinporten"
    );
    assert_eq!(
        w.kms_calls(":asymmetricSign")
            .iter()
            .filter(|c| c.status == 403)
            .count(),
        2,
        "a refused key is not retried"
    );

    // KMS briefly unavailable: the grant is retried and goes through.
    w.kms.set_may_sign(KEY, true);
    w.kms
        .inject_fault(FaultRule::status(503).method("POST").path("/v1/").once());
    digdir
        .list_clients(false)
        .await
        .expect("retried after a 503 from KMS");
    let last: Vec<u16> = w
        .kms_calls(":asymmetricSign")
        .iter()
        .rev()
        .take(2)
        .map(|c| c.status)
        .collect();
    assert_eq!(last, [200, 503]);

    // A 200 that is no signature.
    w.kms
        .inject_fault(FaultRule::body(200, r#"{"name": "x"}"#).path("/v1/").once());
    let err = signer
        .sign(&header, &claims)
        .await
        .expect_err("garbage")
        .to_string();
    assert!(
        err.contains("unexpected response") && err.contains(KEY),
        "{err}"
    );
}

/// `portvakt run --observe` with the KMS settings: the binary wires the flags to the signer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portvakt_run_signs_with_kms_from_its_settings() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, PostParams};
    let w = world().await;
    let kube = portvakt_sim::kube::ApiServer::new(w.clock.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(kube.client());
    for crd in portvakt::crd::crds().expect("crds") {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("install CRD");
    }
    // One resource, so that --observe has to ask Digdir (and so sign a grant).
    let example: kube::api::DynamicObject = serde_saphyr::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/examples/idportenclient.yaml"),
        )
        .expect("example"),
    )
    .expect("yaml");
    let ns = example.metadata.namespace.clone().expect("namespace");
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.client())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let resource = kube::api::ApiResource::erase::<portvakt::crd::IDPortenClient>(&());
    Api::<kube::api::DynamicObject>::namespaced_with(kube.client(), &ns, &resource)
        .create(&PostParams::default(), &example)
        .await
        .expect("IDPortenClient");
    let kube_handle = kube
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve kube");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        portvakt_sim::kube::ApiServer::kubeconfig_yaml(&kube_handle.url(), "default"),
    )
    .expect("kubeconfig");
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, &w.chain_pem).expect("chain");

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portvakt"));
    cmd.args(["run", "--observe"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTVAKT_") {
            cmd.env_remove(k);
        }
    }
    let creds = w.digdir.admin_credentials();
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("PORTVAKT_CLUSTER_NAME", "test-cluster")
        .env("PORTVAKT_DIGDIR_ENV", "test")
        .env("PORTVAKT_DIGDIR_BASE_URL", &w.urls.admin_base_url)
        .env(
            "PORTVAKT_MASKINPORTEN_WELL_KNOWN_URL",
            &w.urls.maskinporten.well_known_url,
        )
        .env(
            "PORTVAKT_IDPORTEN_WELL_KNOWN_URL",
            &w.urls.idporten.well_known_url,
        )
        .env("PORTVAKT_DIGDIR_ADMIN_CLIENT_ID", &creds.client_id)
        .env("PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH", KEY)
        .env("PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE", &chain)
        .env("PORTVAKT_GCP_KMS_URL", &w.kms_url)
        .env("PORTVAKT_GCP_METADATA_URL", &w.kms_url)
        .env("PORTVAKT_CLIENT_NAME", "TEST ORG")
        .env("PORTVAKT_CLIENT_URI", "https://example.org")
        .env("PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE", "test:api");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("portvakt run --observe within 60s")
        .expect("running portvakt");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(w.kms_calls(TOKEN_PATH).len(), 1, "{text}");
    assert!(
        w.kms_calls(":asymmetricSign")
            .iter()
            .any(|c| c.status == 200),
        "{text}"
    );
    assert!(
        w.token_grants().iter().any(|c| c.status == 200),
        "Maskinporten accepted the binary's KMS-signed grant:\n{text}"
    );
}
