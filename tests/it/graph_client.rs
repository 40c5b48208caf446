//! The Graph client and the operator's authentication against the Entra simulator (served on
//! 127.0.0.1:0), with the simulator's clock shared so that waits move time instead of sleeping.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use portvakt::clock::Clock;
use portvakt::conditions::reason;
use portvakt::entra::{
    ApiApplicationPatch, AppRole, ApplicationPatch, AssertionAlgorithm, CertificateCredential,
    ClientSecret, DEFAULT_APP_ROLE_ID, EnsureOutcome, EntraAuthError, EntraConfig,
    FederatedIdentityCredential, GraphClient, GraphError, KeyCredential, NewAppRoleAssignment,
    NewPasswordCredential, NewServicePrincipal, OAuth2PermissionGrant, OperatorCredential,
    PermissionScope, PreAuthorizedApplication, ServicePrincipalPatch, UpsertOutcome, WaitMode,
};
use portvakt_sim::ServeHandle;
use portvakt_sim::graph::{
    CallRecord, EntraUrls, FaultRule, GraphSeed, GraphSim, MICROSOFT_GRAPH_APP_ID, RsaKey,
    TestCertificate,
};
use serde_json::{Value, json};

const OTHER_APP: &str = "atgcp1-dev:other-namespace:other-app";
const OTHER_APP_ID: &str = "3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f";
const GROUP: &str = "2720e397-081d-4d9b-852e-0d81f45a304f";

struct Env {
    sim: GraphSim,
    handle: ServeHandle,
    urls: EntraUrls,
    clock: Clock,
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = Clock::system();
    let sim = GraphSim::new(clock.clone(), GraphSeed::default());
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let urls = sim.urls(&handle.url());
    Env {
        sim,
        handle,
        urls,
        clock,
    }
}

impl Env {
    fn config(&self, credential: OperatorCredential) -> EntraConfig {
        let mut c = EntraConfig::new(
            self.sim.tenant_id(),
            self.sim.operator().client_id,
            credential,
        );
        c.authority = self.urls.authority.clone();
        c.graph_url = self.urls.graph_api.clone();
        c.request_timeout = Duration::from_secs(5);
        c.wait = WaitMode::AdvanceClock;
        c
    }

    fn secret_config(&self) -> EntraConfig {
        self.config(OperatorCredential::ClientSecret(ClientSecret::new(
            self.sim.operator().client_secret,
        )))
    }

    fn client(&self) -> GraphClient {
        GraphClient::new(&self.secret_config(), self.clock.clone()).expect("client")
    }

    fn calls(&self, method: &str, path_prefix: &str) -> Vec<CallRecord> {
        self.sim
            .journal()
            .into_iter()
            .filter(|c| c.method.as_str() == method && c.path.starts_with(path_prefix))
            .collect()
    }

    fn token_calls(&self) -> Vec<CallRecord> {
        self.calls(
            "POST",
            &format!("/{}/oauth2/v2.0/token", self.sim.tenant_id()),
        )
    }
}

fn form(record: &CallRecord) -> Vec<(String, String)> {
    form_urlencoded::parse(record.body.as_deref().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn field(record: &CallRecord, name: &str) -> Option<String> {
    form(record)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("part");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url"),
    )
    .expect("json")
}

fn new_app(name: &str) -> ApplicationPatch {
    ApplicationPatch {
        display_name: Some(name.into()),
        api: Some(ApiApplicationPatch {
            requested_access_token_version: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn scope(id: &str, value: &str) -> PermissionScope {
    PermissionScope {
        id: id.into(),
        value: value.into(),
        kind: "Admin".into(),
        is_enabled: true,
        admin_consent_display_name: Some(value.into()),
        admin_consent_description: Some(value.into()),
        ..Default::default()
    }
}

fn role(id: &str, value: &str) -> AppRole {
    AppRole {
        id: id.into(),
        value: Some(value.into()),
        display_name: Some(value.into()),
        description: Some(value.into()),
        allowed_member_types: vec!["Application".into()],
        is_enabled: true,
        origin: None,
    }
}

#[tokio::test]
async fn the_secret_grant_is_cached_renewed_before_expiry_and_dropped_once_on_401() {
    let env = start().await;
    let graph = env.client();
    assert!(graph.get_group(GROUP).await.unwrap().is_some());
    assert!(graph.get_group(GROUP).await.unwrap().is_some());
    assert_eq!(graph.stats().token_grants, 1, "the token is cached");
    let grant = &env.token_calls()[0];
    assert_eq!(
        field(grant, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        field(grant, "scope").as_deref(),
        Some("https://graph.microsoft.com/.default")
    );
    assert_eq!(
        field(grant, "client_id"),
        Some(env.sim.operator().client_id)
    );

    // 3599 s tokens are renewed 5 minutes before they expire.
    env.clock.advance(Duration::from_secs(3599 - 300 - 10));
    graph.get_group(GROUP).await.unwrap();
    assert_eq!(graph.stats().token_grants, 1);
    env.clock.advance(Duration::from_secs(20));
    graph.get_group(GROUP).await.unwrap();
    assert_eq!(
        graph.stats().token_grants,
        2,
        "renewed shortly before expiry"
    );

    // A revoked token: Graph answers 401, the client gets a new one once and succeeds.
    env.sim.revoke_tokens();
    graph.get_group(GROUP).await.unwrap();
    assert_eq!(graph.stats().token_grants, 3);
    // A 401 that does not go away: one renewal, then the error.
    env.sim
        .inject_fault(FaultRule::status(401).method("GET").path("/v1.0/groups"));
    let err = graph.get_group(GROUP).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        graph.stats().token_grants,
        4,
        "one renewal per request, not a loop"
    );
    assert_eq!(err.condition_reason(), reason::CONFIGURATION_ERROR);
}

#[tokio::test]
async fn a_wrong_secret_is_a_typed_error_that_never_shows_the_secret() {
    let env = start().await;
    let config = env.config(OperatorCredential::ClientSecret(ClientSecret::new(
        "definitely-not-the-secret",
    )));
    assert!(!format!("{config:?}").contains("definitely-not-the-secret"));
    let graph = GraphClient::new(&config, env.clock.clone()).unwrap();
    let err = graph.get_group(GROUP).await.unwrap_err();
    let Some(EntraAuthError::OAuth {
        status,
        error,
        codes,
        ..
    }) = err.auth()
    else {
        panic!("expected an OAuth error, got {err:?}");
    };
    assert_eq!((*status, error.as_str()), (401, "invalid_client"));
    assert_eq!(codes, &vec![7000215]);
    assert!(!err.to_string().contains("definitely-not-the-secret"));
    assert_eq!(err.condition_reason(), reason::CONFIGURATION_ERROR);
    assert_eq!(err.metric_label(), "auth");
    assert_eq!(
        graph.stats().token_grants,
        1,
        "a refused secret is not retried"
    );
}

#[tokio::test]
async fn certificate_assertions_are_rs256_with_x5t_or_ps256_with_x5t_s256() {
    let env = start().await;
    let op = env.sim.operator();
    let cert = TestCertificate::generate("portvakt operator", 300).unwrap();
    env.sim
        .add_certificate(&op.client_id, &cert.cert_der)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("tls.key");
    let cert_path = dir.path().join("tls.crt");
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();

    for (alg, header_field, thumb) in [
        (AssertionAlgorithm::Rs256, "x5t", cert.x5t()),
        (AssertionAlgorithm::Ps256, "x5t#S256", cert.x5t_s256()),
    ] {
        env.sim.clear_journal();
        let credential = CertificateCredential::from_files(&key_path, &cert_path, alg).unwrap();
        let graph = GraphClient::new(
            &env.config(OperatorCredential::Certificate(credential)),
            env.clock.clone(),
        )
        .unwrap();
        graph.get_group(GROUP).await.unwrap();
        env.clock.advance(Duration::from_secs(3600));
        graph.get_group(GROUP).await.unwrap();
        let grants = env.token_calls();
        assert_eq!(grants.len(), 2);
        let mut jtis = HashSet::new();
        for g in &grants {
            assert_eq!(
                field(g, "client_assertion_type").as_deref(),
                Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            );
            assert!(field(g, "client_secret").is_none());
            let assertion = field(g, "client_assertion").unwrap();
            let header = jwt_part(&assertion, 0);
            let claims = jwt_part(&assertion, 1);
            assert_eq!(header[header_field], thumb, "{header}");
            assert_eq!(
                header["alg"],
                if alg == AssertionAlgorithm::Rs256 {
                    "RS256"
                } else {
                    "PS256"
                }
            );
            assert_eq!(claims["aud"], env.urls.token_endpoint);
            assert_eq!(claims["iss"], op.client_id);
            assert_eq!(claims["sub"], op.client_id);
            let life = claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap();
            assert!((60..=600).contains(&life), "short-lived: {life}");
            jtis.insert(claims["jti"].as_str().unwrap().to_string());
        }
        assert_eq!(jtis.len(), 2, "a fresh jti per assertion");
    }

    // A certificate the app does not know: the error names the cause, not the assertion.
    let stranger = TestCertificate::generate("stranger", 300).unwrap();
    let credential = CertificateCredential::from_pem(
        &stranger.key_pem,
        &stranger.cert_pem,
        AssertionAlgorithm::Rs256,
    )
    .unwrap();
    let graph = GraphClient::new(
        &env.config(OperatorCredential::Certificate(credential)),
        env.clock.clone(),
    )
    .unwrap();
    let err = graph.get_group(GROUP).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("AADSTS700027") && text.contains("not registered"),
        "{text}"
    );
    let assertion = field(env.token_calls().last().unwrap(), "client_assertion").unwrap();
    assert!(!text.contains(&assertion));

    // A key that is not the certificate's is refused before anything is sent.
    let err = CertificateCredential::from_pem(
        &stranger.key_pem,
        &cert.cert_pem,
        AssertionAlgorithm::Rs256,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    let err = CertificateCredential::from_files(
        &dir.path().join("missing.key"),
        &cert_path,
        AssertionAlgorithm::Rs256,
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.key"), "{err}");
}

#[tokio::test]
async fn the_federated_token_file_is_read_again_for_every_grant() {
    let env = start().await;
    let op = env.sim.operator();
    let issuer = "https://oidc.prod-cluster.example";
    let subject = "system:serviceaccount:portvakt:portvakt";
    let key = RsaKey::generate("sa-key").unwrap();
    env.sim
        .trust_issuer(issuer, &json!({"keys": [key.public_jwk()]}));
    env.sim
        .add_federated_credential(
            &op.client_id,
            "kubernetes",
            issuer,
            subject,
            "api://AzureADTokenExchange",
        )
        .unwrap();
    let sa_token = |lifetime: i64| {
        let now = env.clock.unix_seconds();
        key.sign(&json!({"iss": issuer, "sub": subject, "aud": ["api://AzureADTokenExchange"],
                          "iat": now, "nbf": now, "exp": now + lifetime, "jti": uuid::Uuid::new_v4().to_string()}))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let first = sa_token(600);
    std::fs::write(&file, format!("{first}\n")).unwrap();
    env.sim.set_token_lifetime(600);
    let graph = GraphClient::new(
        &env.config(OperatorCredential::FederatedTokenFile(file.clone())),
        env.clock.clone(),
    )
    .unwrap();
    graph.get_group(GROUP).await.unwrap();

    // The kubelet rotates the file; the first token has expired by the next grant.
    env.clock.advance(Duration::from_secs(700));
    let second = sa_token(600);
    std::fs::write(&file, &second).unwrap();
    graph.get_group(GROUP).await.unwrap();
    let sent: Vec<String> = env
        .token_calls()
        .iter()
        .map(|g| field(g, "client_assertion").unwrap())
        .collect();
    assert_eq!(
        sent,
        vec![first, second],
        "each grant sends what the file holds then"
    );

    std::fs::write(&file, "  \n").unwrap();
    env.clock.advance(Duration::from_secs(700));
    let err = graph.get_group(GROUP).await.unwrap_err();
    assert!(
        err.to_string().contains("azure-identity-token") && err.to_string().contains("empty"),
        "{err}"
    );
}

#[derive(Clone)]
struct MetadataStub {
    key: RsaKey,
    calls: Arc<AtomicUsize>,
}

async fn identity(
    State(stub): State<MetadataStub>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, String) {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.".into(),
        );
    }
    let audience = q.get("audience").cloned().unwrap_or_default();
    if q.get("format").map(String::as_str) != Some("full") {
        return (StatusCode::BAD_REQUEST, "format=full expected".into());
    }
    let now = jiff::Timestamp::now().as_second();
    let token = stub
        .key
        .sign(&json!({"iss": "https://accounts.google.com", "sub": "104857600000000000001",
                      "aud": audience, "azp": "104857600000000000001", "iat": now, "exp": now + 3600,
                      "email": "portvakt@project.iam.gserviceaccount.com"}))
        .unwrap();
    (StatusCode::OK, token)
}

#[tokio::test]
async fn the_google_metadata_flow_sends_a_google_id_token_as_the_assertion() {
    let env = start().await;
    let op = env.sim.operator();
    let stub = MetadataStub {
        key: RsaKey::generate("google-key").unwrap(),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    env.sim.trust_issuer(
        "https://accounts.google.com",
        &json!({"keys": [stub.key.public_jwk()]}),
    );
    env.sim
        .add_federated_credential(
            &op.client_id,
            "google",
            "https://accounts.google.com",
            "104857600000000000001",
            "api://AzureADTokenExchange",
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
            get(identity),
        )
        .with_state(stub.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let path = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=api://AzureADTokenExchange&format=full";
    let graph = GraphClient::new(
        &env.config(OperatorCredential::GoogleMetadata {
            identity_url: format!("http://{addr}{path}"),
        }),
        env.clock.clone(),
    )
    .unwrap();
    graph.get_group(GROUP).await.unwrap();
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
    let assertion = field(&env.token_calls()[0], "client_assertion").unwrap();
    assert_eq!(
        jwt_part(&assertion, 1)["iss"],
        "https://accounts.google.com"
    );
    assert_eq!(jwt_part(&assertion, 1)["aud"], "api://AzureADTokenExchange");
    // Without the header the metadata server refuses (the stub is honest about it).
    let refused = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let wrong = GraphClient::new(
        &env.config(OperatorCredential::GoogleMetadata {
            identity_url: format!("http://{addr}/computeMetadata/v1/nothing-here"),
        }),
        env.clock.clone(),
    )
    .unwrap();
    let err = wrong.get_group(GROUP).await.unwrap_err();
    assert!(
        matches!(err.auth(), Some(EntraAuthError::Metadata { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("nothing-here") && err.to_string().contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn a_created_app_gets_identifier_uris_and_a_service_principal_through_replication_lag() {
    let env = start().await;
    let graph = env.client();
    env.sim.set_eventual_consistency(Duration::from_secs(20));
    let before = env.clock.offset();
    let app = graph
        .create_application(&new_app("c:ns:lag"))
        .await
        .unwrap();
    let uris = vec![
        format!("api://{}", app.app_id),
        "api://c.ns.lag".to_string(),
    ];
    graph.set_identifier_uris(&app.id, &uris).await.unwrap();
    let s = graph.stats();
    assert!(s.consistency_retries >= 1, "{s:?}");
    assert!(
        env.clock.offset() - before >= Duration::from_secs(20),
        "waited by the clock"
    );
    assert_eq!(env.sim.app(&app.id).unwrap()["identifierUris"], json!(uris));
    let patches = env.calls("PATCH", &format!("/v1.0/applications/{}", app.id));
    assert_eq!(patches.first().map(|c| c.status), Some(404));
    assert_eq!(patches.last().map(|c| c.status), Some(204));

    let app2 = graph
        .create_application(&new_app("c:ns:lag2"))
        .await
        .unwrap();
    let sp = graph
        .create_service_principal(&NewServicePrincipal {
            app_id: app2.app_id.clone(),
            app_role_assignment_required: Some(true),
            tags: Some(vec!["HideApp".into()]),
        })
        .await
        .unwrap();
    assert_eq!(sp.app_id, app2.app_id);
    let statuses: Vec<u16> = env
        .calls("POST", "/v1.0/servicePrincipals")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses.first(),
        Some(&400),
        "NoBackingApplicationObject first: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "then created once: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&201));
    assert_eq!(
        env.sim.service_principal(&app2.app_id).unwrap()["tags"],
        json!(["HideApp"])
    );

    // A 404 for something this client did not just create is an answer, not lag.
    let retries = graph.stats().retries;
    let err = graph
        .get_application("0f0e0d0c-0b0a-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(graph.stats().retries, retries, "returned at once");
}

#[tokio::test]
async fn the_upsert_creates_once_and_ensure_adopts_by_display_name() {
    let env = start().await;
    let graph = env.client();
    let body = new_app("c:ns:upsert");
    match graph
        .upsert_application("portvakt-c-ns-upsert", &body)
        .await
        .unwrap()
    {
        UpsertOutcome::Created(app) => {
            assert_eq!(app.unique_name.as_deref(), Some("portvakt-c-ns-upsert"))
        }
        other => panic!("expected Created, got {other:?}"),
    }
    assert_eq!(
        graph
            .upsert_application("portvakt-c-ns-upsert", &body)
            .await
            .unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(env.sim.apps_named("c:ns:upsert").len(), 1);
    let prefer: Vec<_> = env
        .calls("PATCH", "/v1.0/applications(uniqueName=")
        .into_iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(prefer, vec![201, 204]);

    // azurerator's app (no uniqueName) is adopted by its display name, with no write at all.
    let writes = graph.stats().writes();
    let adopted = graph
        .ensure_application(OTHER_APP, "portvakt-other", &ApplicationPatch::default())
        .await
        .unwrap();
    assert_eq!(adopted.outcome, EnsureOutcome::Found);
    assert_eq!(adopted.application.app_id, OTHER_APP_ID);
    assert_eq!(graph.stats().writes(), writes);
    assert_eq!(adopted.application.unique_name, None);

    // A new one is created; asked again right away (reads lag), it is recovered, not duplicated.
    env.sim.set_eventual_consistency(Duration::from_secs(30));
    let created = graph
        .ensure_application("c:ns:new", "portvakt-c-ns-new", &new_app("ignored"))
        .await
        .unwrap();
    assert_eq!(created.outcome, EnsureOutcome::Created);
    assert_eq!(created.application.display_name, "c:ns:new");
    let again = graph
        .ensure_application("c:ns:new", "portvakt-c-ns-new", &new_app("ignored"))
        .await
        .unwrap();
    assert_eq!(again.outcome, EnsureOutcome::Recovered);
    assert_eq!(again.application.id, created.application.id);
    assert_eq!(env.sim.apps_named("c:ns:new").len(), 1);
    env.clock.advance(Duration::from_secs(31));
    let third = graph
        .ensure_application("c:ns:new", "portvakt-c-ns-new", &new_app("ignored"))
        .await
        .unwrap();
    assert_eq!(third.outcome, EnsureOutcome::Found);

    // Two apps with one display name: an error naming both, as azurerator refuses.
    let a = graph
        .create_application(&new_app("c:ns:twice"))
        .await
        .unwrap();
    let b = graph
        .create_application(&new_app("c:ns:twice"))
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(31));
    let err = graph
        .find_application_by_display_name("c:ns:twice")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Duplicate { count: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&a.id) && err.to_string().contains(&b.id),
        "{err}"
    );
    assert_eq!(err.metric_label(), "duplicate");

    // Names are OData-quoted.
    graph
        .create_application(&new_app("c:o'brien:app"))
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(31));
    let found = graph
        .find_application_by_display_name("c:o'brien:app")
        .await
        .unwrap();
    assert_eq!(
        found.map(|a| a.display_name).as_deref(),
        Some("c:o'brien:app")
    );
}

#[tokio::test]
async fn throttling_waits_what_retry_after_says() {
    let env = start().await;
    let graph = env.client();
    graph.get_group(GROUP).await.unwrap();
    env.sim.clear_journal();
    env.sim.inject_fault(
        FaultRule::throttle(7)
            .method("GET")
            .path("/v1.0/groups")
            .once(),
    );
    let before = env.clock.offset();
    assert!(graph.get_group(GROUP).await.unwrap().is_some());
    let s = graph.stats();
    assert_eq!(s.throttled, 1);
    assert_eq!(s.waited, Duration::from_secs(7));
    assert!(env.clock.offset() - before >= Duration::from_secs(7));
    let calls = env.calls("GET", "/v1.0/groups");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    assert!(
        calls[1].time.duration_since(calls[0].time).as_secs() >= 7,
        "the retry came 7 s later"
    );

    // A Retry-After longer than the client waits is returned, to be requeued.
    env.sim.inject_fault(
        FaultRule::throttle(600)
            .method("GET")
            .path("/v1.0/groups")
            .once(),
    );
    let err = graph.get_group(GROUP).await.unwrap_err();
    assert!(err.is_throttled());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert_eq!(err.condition_reason(), reason::THROTTLED);
    assert_eq!(err.metric_label(), "throttled");

    // The simulator's own write limit, honoured the same way.
    env.sim.set_write_limit(Some((1, Duration::from_secs(10))));
    graph.create_application(&new_app("c:ns:t1")).await.unwrap();
    graph.create_application(&new_app("c:ns:t2")).await.unwrap();
    assert_eq!(env.sim.apps_named("c:ns:t2").len(), 1);
    assert_eq!(graph.stats().throttled, 3);
}

#[tokio::test]
async fn concurrency_violations_are_retried_with_backoff() {
    let env = start().await;
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:409"))
        .await
        .unwrap();
    env.sim.inject_fault(
        FaultRule::status(409)
            .method("PATCH")
            .path("/v1.0/applications/")
            .count(2),
    );
    graph
        .update_application(
            &app.id,
            &ApplicationPatch {
                tags: Some(vec!["x".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = graph.stats();
    assert_eq!(s.concurrency_retries, 2);
    assert!(s.waited > Duration::ZERO, "backed off");
    let statuses: Vec<u16> = env
        .calls("PATCH", "/v1.0/applications/")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![409, 409, 204]);
    assert_eq!(env.sim.app(&app.id).unwrap()["tags"], json!(["x"]));

    // A conflict that is not about concurrency is not retried.
    let err = graph
        .create_service_principal(&NewServicePrincipal {
            app_id: MICROSOFT_GRAPH_APP_ID.into(),
            ..Default::default()
        })
        .await;
    // (an existing service principal is found instead)
    assert_eq!(err.unwrap().app_id, MICROSOFT_GRAPH_APP_ID);
}

#[tokio::test]
async fn rapid_credential_writes_back_off_by_the_clock_instead_of_fixed_sleeps() {
    let env = start().await;
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:rapid"))
        .await
        .unwrap();
    // Graph refuses writes to an app for a while after the last one (azurerator#448, which azurerator
    // answers with a 10 s sleep before every credential write).
    env.sim.set_write_settle_time(Duration::from_secs(1));
    let before = env.clock.offset();
    for name in ["current", "next"] {
        graph
            .add_password(
                &app.id,
                &NewPasswordCredential {
                    display_name: format!("azurerator-{name}"),
                    start_date_time: None,
                    end_date_time: None,
                },
            )
            .await
            .unwrap();
    }
    let s = graph.stats();
    assert!(
        s.concurrency_retries >= 1,
        "the second write met a 409: {s:?}"
    );
    assert!(
        s.waited >= Duration::from_secs(1) && s.waited < Duration::from_secs(10),
        "{s:?}"
    );
    assert_eq!(
        env.clock.offset() - before,
        s.waited,
        "waited by the shared clock, nothing else"
    );
    assert_eq!(
        env.sim.app(&app.id).unwrap()["passwordCredentials"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "two passwords, no duplicates from the retries"
    );
}

#[tokio::test]
async fn a_timed_out_post_is_looked_up_and_not_repeated() {
    let env = start().await;
    let mut config = env.secret_config();
    config.request_timeout = Duration::from_millis(300);
    let graph = GraphClient::new(&config, env.clock.clone()).unwrap();
    graph.get_group(GROUP).await.unwrap();
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_secs(3))
            .method("POST")
            .path("/v1.0/applications")
            .once(),
    );
    let app = graph
        .create_application(&new_app("c:ns:timeout"))
        .await
        .unwrap();
    assert_eq!(env.sim.apps_named("c:ns:timeout").len(), 1, "created once");
    assert_eq!(app.id, env.sim.apps_named("c:ns:timeout")[0]["id"]);
    let s = graph.stats();
    assert_eq!((s.posts, s.create_lookups), (1, 1), "{s:?}");

    // A lost addPassword answer: the unreadable secret is removed and another added.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_secs(3))
            .method("POST")
            .path(&format!("/v1.0/applications/{}/addPassword", app.id))
            .once(),
    );
    let password = graph
        .add_password(
            &app.id,
            &NewPasswordCredential {
                display_name: "azurerator-2026-01-01T00:00:00Z".into(),
                start_date_time: None,
                end_date_time: None,
            },
        )
        .await
        .unwrap();
    assert!(password.secret_text.is_some());
    let stored = env.sim.app(&app.id).unwrap()["passwordCredentials"].clone();
    assert_eq!(stored.as_array().map(Vec::len), Some(1), "{stored}");
    assert_eq!(stored[0]["keyId"], password.key_id);
    assert_eq!(
        env.calls(
            "POST",
            &format!("/v1.0/applications/{}/removePassword", app.id)
        )
        .len(),
        1
    );

    // The upsert is safe to repeat after a timeout.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_secs(3))
            .method("PATCH")
            .path("/v1.0/applications(uniqueName=")
            .once(),
    );
    let outcome = graph
        .upsert_application("portvakt-timeout", &new_app("c:ns:upsert-timeout"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome::Updated,
        "the retry found what the first attempt made"
    );
    assert_eq!(env.sim.apps_named("c:ns:upsert-timeout").len(), 1);
}

#[tokio::test]
async fn collections_are_read_across_pages() {
    let env = start().await;
    let graph = env.client();
    for _ in 0..5 {
        graph
            .create_application(&new_app("c:ns:many"))
            .await
            .unwrap();
    }
    env.sim.set_page_size(2);
    let pages = graph.stats().pages;
    let apps = graph
        .list_applications_by_display_name("c:ns:many")
        .await
        .unwrap();
    assert_eq!(apps.len(), 5);
    assert_eq!(
        apps.iter()
            .map(|a| a.id.clone())
            .collect::<HashSet<_>>()
            .len(),
        5
    );
    assert_eq!(graph.stats().pages - pages, 3);

    let mut config = env.secret_config();
    config.max_pages = 2;
    let limited = GraphClient::new(&config, env.clock.clone()).unwrap();
    let err = limited
        .list_applications_by_display_name("c:ns:many")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::PageLimit { pages: 2, .. }),
        "{err:?}"
    );

    let mut config = env.secret_config();
    config.page_size = Some(4);
    let top = GraphClient::new(&config, env.clock.clone()).unwrap();
    assert_eq!(
        top.list_applications_by_display_name("c:ns:many")
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(top.stats().pages, 2, "$top=4");
}

#[tokio::test]
async fn graph_errors_are_typed_with_code_details_and_request_id() {
    let env = start().await;
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:dup-uri"))
        .await
        .unwrap();
    let err = graph
        .set_identifier_uris(
            &app.id,
            &["api://atgcp1-dev.other-namespace.other-app".into()],
        )
        .await
        .unwrap_err();
    let api = err.api().expect("an API error");
    assert_eq!(api.status, 400);
    assert_eq!(api.code.as_deref(), Some("Request_BadRequest"));
    assert!(err.has_code("ObjectConflict"));
    assert!(api.message.contains("identifierUris"));
    let request_id = err.request_id().expect("request id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
    assert!(api.client_request_id.is_some());
    assert!(err.to_string().contains(request_id));
    assert_eq!(err.condition_reason(), reason::INVALID_SPEC);
    assert_eq!(err.metric_label(), "bad_request");
    assert!(!err.is_retryable());
    assert_eq!(graph.stats().retries, 0);

    env.sim
        .inject_fault(FaultRule::status(503).method("GET").path("/v1.0/groups"));
    let err = graph.get_group(GROUP).await.unwrap_err();
    assert_eq!(err.metric_label(), "server_error");
    assert_eq!(err.condition_reason(), reason::ENTRA_ERROR);
    assert!(err.request_id().is_some());
    assert_eq!(graph.stats().retries, 4, "5 attempts in all");
}

#[tokio::test]
async fn writes_to_one_app_are_serialised_in_the_client_without_sleeping() {
    let env = start().await;
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:serial"))
        .await
        .unwrap();
    let cert = TestCertificate::generate("serial", 300).unwrap();
    env.sim.set_write_latency(Duration::from_millis(60));
    let before = env.clock.offset();
    let tags = ApplicationPatch {
        tags: Some(vec!["t".into()]),
        ..Default::default()
    };
    let password = NewPasswordCredential {
        display_name: "p1".into(),
        start_date_time: None,
        end_date_time: None,
    };
    let uris = [format!("api://{}", app.app_id)];
    let keys = [KeyCredential::certificate(&cert.cert_der, "k1")];
    let (a, b, c, d) = tokio::join!(
        graph.update_application(&app.id, &tags),
        graph.add_password(&app.id, &password),
        graph.set_identifier_uris(&app.id, &uris),
        graph.set_key_credentials(&app.id, &keys),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    d.unwrap();
    assert_eq!(
        env.sim.write_conflicts(),
        0,
        "no two writes to the app overlapped"
    );
    let s = graph.stats();
    assert_eq!(
        (s.concurrency_retries, s.waited),
        (0, Duration::ZERO),
        "and nothing waited: {s:?}"
    );
    assert_eq!(env.clock.offset(), before);
    let stored = env.sim.app(&app.id).unwrap();
    assert_eq!(stored["tags"], json!(["t"]));
    assert_eq!(
        stored["passwordCredentials"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(stored["keyCredentials"].as_array().map(Vec::len), Some(1));

    // Two clients (no shared lock) writing at once do conflict; the 409 is retried and both succeed.
    // The simulator holds a write for real time here, so these two back off by sleeping (briefly).
    let sleeping = || {
        let mut config = env.secret_config();
        config.wait = WaitMode::Sleep;
        config.retry = portvakt::entra::RetryPolicy {
            max_attempts: 50,
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..Default::default()
        };
        GraphClient::new(&config, env.clock.clone()).unwrap()
    };
    let (one, other) = (sleeping(), sleeping());
    let notes = ApplicationPatch {
        notes: Some("from one".into()),
        ..Default::default()
    };
    let tags = ApplicationPatch {
        tags: Some(vec!["u".into()]),
        ..Default::default()
    };
    let (x, y) = tokio::join!(
        one.update_application(&app.id, &notes),
        other.update_application(&app.id, &tags),
    );
    x.unwrap();
    y.unwrap();
    assert!(
        env.sim.write_conflicts() >= 1,
        "the simulator saw the overlap"
    );
    assert!(one.stats().concurrency_retries + other.stats().concurrency_retries >= 1);

    // Writes to different apps are not serialised with each other.
    let second = graph
        .create_application(&new_app("c:ns:serial2"))
        .await
        .unwrap();
    let p_notes = ApplicationPatch {
        notes: Some("p".into()),
        ..Default::default()
    };
    let q_notes = ApplicationPatch {
        notes: Some("q".into()),
        ..Default::default()
    };
    let (p, q) = tokio::join!(
        graph.update_application(&app.id, &p_notes),
        graph.update_application(&second.id, &q_notes),
    );
    p.unwrap();
    q.unwrap();
    assert!(env.sim.peak_concurrent_writes() >= 2);
}

#[tokio::test]
async fn permissions_are_disabled_before_removal_and_pre_authorizations_trimmed() {
    let env = start().await;
    let graph = env.client();
    let keep = "2c3d4e5f-0000-4000-8000-000000000001";
    let gone = "2c3d4e5f-0000-4000-8000-000000000002";
    let mut body = new_app("c:ns:perm");
    body.app_roles = Some(vec![role(keep, "keep"), role(gone, "gone")]);
    body.api = Some(ApiApplicationPatch {
        requested_access_token_version: Some(2),
        oauth2_permission_scopes: Some(vec![scope(keep, "keep"), scope(gone, "gone")]),
        ..Default::default()
    });
    let app = graph.create_application(&body).await.unwrap();
    graph
        .set_pre_authorized_applications(
            &app.id,
            &[PreAuthorizedApplication {
                app_id: OTHER_APP_ID.into(),
                delegated_permission_ids: vec![keep.into(), gone.into()],
            }],
        )
        .await
        .unwrap();
    let current = graph.get_application(&app.id).await.unwrap();
    let change = graph
        .replace_permissions(&current, &[scope(keep, "keep")], &[role(keep, "keep")])
        .await
        .unwrap();
    assert_eq!(change.patches, 2);
    assert_eq!(change.removed.len(), 2);
    assert_eq!(
        change.pre_authorizations_trimmed,
        vec![OTHER_APP_ID.to_string()]
    );
    let now = graph.get_application(&app.id).await.unwrap();
    assert_eq!(
        now.scopes()
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        vec![keep]
    );
    assert_eq!(
        now.app_roles
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec![keep]
    );
    assert_eq!(
        now.pre_authorized_applications()[0].delegated_permission_ids,
        vec![keep.to_string()]
    );

    // Adding only: one PATCH.
    let added = "2c3d4e5f-0000-4000-8000-000000000003";
    let change = graph
        .replace_permissions(
            &now,
            &[scope(keep, "keep"), scope(added, "added")],
            &[role(keep, "keep"), role(added, "added")],
        )
        .await
        .unwrap();
    assert_eq!(change.patches, 1);
    assert_eq!(
        graph
            .get_application(&app.id)
            .await
            .unwrap()
            .app_roles
            .len(),
        2
    );
}

#[tokio::test]
async fn service_principals_assignments_grants_owners_and_federated_credentials() {
    let env = start().await;
    let graph = env.client();
    let op = env.sim.operator();
    let mut body = new_app("c:ns:full");
    let access = "3d4e5f60-0000-4000-8000-000000000001";
    body.app_roles = Some(vec![role(access, "access_as_application")]);
    let app = graph.create_application(&body).await.unwrap();
    let sp = graph
        .create_service_principal(&NewServicePrincipal {
            app_id: app.app_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        graph
            .find_service_principal_by_app_id(&app.app_id)
            .await
            .unwrap()
            .map(|s| s.id),
        Some(sp.id.clone())
    );
    graph
        .update_service_principal(
            &sp.id,
            &ServicePrincipalPatch {
                app_role_assignment_required: Some(true),
                tags: Some(vec!["HideApp".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let read = graph.get_service_principal(&sp.id).await.unwrap();
    assert!(read.app_role_assignment_required);
    assert_eq!(read.tags, vec!["HideApp".to_string()]);

    let other_sp = graph
        .find_service_principal_by_app_id(OTHER_APP_ID)
        .await
        .unwrap()
        .unwrap();
    let to_app = NewAppRoleAssignment {
        principal_id: other_sp.id.clone(),
        resource_id: sp.id.clone(),
        app_role_id: access.into(),
    };
    let a = graph.assign_app_role(&to_app).await.unwrap();
    let again = graph.assign_app_role(&to_app).await.unwrap();
    assert_eq!(again.id, a.id, "an assignment already there is returned");
    let to_group = NewAppRoleAssignment {
        principal_id: GROUP.into(),
        resource_id: sp.id.clone(),
        app_role_id: DEFAULT_APP_ROLE_ID.into(),
    };
    graph.assign_app_role(&to_group).await.unwrap();
    let listed = graph.list_app_role_assigned_to(&sp.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|x| x.principal_type.as_deref() == Some("Group"))
    );
    assert_eq!(
        graph
            .list_app_role_assignments(&other_sp.id)
            .await
            .unwrap()
            .len(),
        1
    );
    graph
        .remove_app_role_assignment(&sp.id, &a.id)
        .await
        .unwrap();
    graph
        .remove_app_role_assignment(&sp.id, &a.id)
        .await
        .unwrap();
    assert_eq!(env.sim.assignments(&sp.id).len(), 1);

    let graph_sp = graph
        .find_service_principal_by_app_id(MICROSOFT_GRAPH_APP_ID)
        .await
        .unwrap()
        .unwrap();
    let grant = OAuth2PermissionGrant {
        client_id: sp.id.clone(),
        consent_type: "AllPrincipals".into(),
        resource_id: graph_sp.id.clone(),
        scope: "openid User.Read GroupMember.Read.All".into(),
        ..Default::default()
    };
    let g = graph.create_oauth2_permission_grant(&grant).await.unwrap();
    let g2 = graph.create_oauth2_permission_grant(&grant).await.unwrap();
    assert_eq!(g.id, g2.id, "an existing grant is returned");
    graph
        .update_oauth2_permission_grant(&g.id, "openid User.Read")
        .await
        .unwrap();
    assert_eq!(
        graph.list_oauth2_permission_grants(&sp.id).await.unwrap()[0].scope,
        "openid User.Read"
    );
    graph.delete_oauth2_permission_grant(&g.id).await.unwrap();
    assert!(env.sim.grants().is_empty());

    graph
        .add_application_owner(&app.id, &op.service_principal_id)
        .await
        .unwrap();
    graph
        .add_application_owner(&app.id, &op.service_principal_id)
        .await
        .unwrap();
    graph
        .add_service_principal_owner(&sp.id, &op.service_principal_id)
        .await
        .unwrap();
    assert_eq!(
        env.sim.owners(&app.id),
        vec![op.service_principal_id.clone()]
    );
    assert_eq!(
        graph.list_application_owners(&app.id).await.unwrap()[0].id,
        op.service_principal_id
    );
    assert_eq!(
        graph
            .list_service_principal_owners(&sp.id)
            .await
            .unwrap()
            .len(),
        1
    );

    let fic = FederatedIdentityCredential {
        name: "github".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:org/repo:ref:refs/heads/main".into(),
        audiences: vec!["api://AzureADTokenExchange".into()],
        ..Default::default()
    };
    let created = graph
        .create_federated_credential(&app.id, &fic)
        .await
        .unwrap();
    assert!(created.id.is_some());
    let same = graph
        .create_federated_credential(&app.id, &fic)
        .await
        .unwrap();
    assert_eq!(same.id, created.id, "one with the same name is returned");
    let moved = FederatedIdentityCredential {
        subject: "repo:org/repo:environment:prod".into(),
        ..fic.clone()
    };
    graph
        .update_federated_credential(&app.id, &moved)
        .await
        .unwrap();
    assert_eq!(
        graph.list_federated_credentials(&app.id).await.unwrap()[0].subject,
        moved.subject
    );
    graph
        .delete_federated_credential(&app.id, "github")
        .await
        .unwrap();
    graph
        .delete_federated_credential(&app.id, "github")
        .await
        .unwrap();
    assert!(env.sim.federated_credentials(&app.id).is_empty());

    assert_eq!(
        graph.get_group(GROUP).await.unwrap().map(|g| g.id),
        Some(GROUP.to_string())
    );
    assert_eq!(
        graph
            .get_group("4e5f6071-0000-4000-8000-000000000000")
            .await
            .unwrap(),
        None
    );
    let by_name = graph
        .find_groups_by_display_name("tilgangsstyring-main-developers")
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);

    graph.delete_application(&app.id).await.unwrap();
    graph.delete_application(&app.id).await.unwrap();
    assert!(env.sim.app(&app.id).is_none());
    let _ = &env.handle;
}

#[tokio::test]
async fn certificates_are_replaced_as_a_set_keeping_what_is_asked() {
    let env = start().await;
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:certs"))
        .await
        .unwrap();
    let a = TestCertificate::generate("a", 300).unwrap();
    let b = TestCertificate::generate("b", 300).unwrap();
    let ka = KeyCredential::certificate(&a.cert_der, "azurerator-a");
    let kb = KeyCredential::certificate(&b.cert_der, "azurerator-b");
    graph
        .set_key_credentials(&app.id, std::slice::from_ref(&ka))
        .await
        .unwrap();
    let written = graph
        .update_key_credentials(&app.id, |_| true, vec![kb.clone()])
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    let listed = graph.key_credentials(&app.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|k| k.key.is_some()),
        "read with their certificates"
    );
    let patches = graph.stats().patches;
    graph
        .update_key_credentials(&app.id, |_| true, vec![])
        .await
        .unwrap();
    assert_eq!(
        graph.stats().patches,
        patches,
        "nothing to change, nothing written"
    );
    graph
        .update_key_credentials(&app.id, |k| k.key_id == kb.key_id, vec![])
        .await
        .unwrap();
    let left = graph.key_credentials(&app.id).await.unwrap();
    assert_eq!(
        left.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(),
        vec![kb.key_id.clone()]
    );
    graph.set_key_credentials(&app.id, &[]).await.unwrap();
    assert!(graph.key_credentials(&app.id).await.unwrap().is_empty());
}

/// Everything the client logs, for checking that nothing secret gets there.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_assertions_and_tokens_never_reach_the_log() {
    // Alone in a process of its own: tracing caches whether a call site is enabled, and a call site
    // first reached by another test's thread (no subscriber there) while this one registers its
    // subscriber can stay cached as disabled, losing lines this test looks for.
    const ALONE: &str = "PORTVAKT_TEST_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "graph_client::secrets_assertions_and_tokens_never_reach_the_log",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(ALONE, "1")
            .output()
            .expect("running the test alone");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the test did not run: {text}");
        return;
    }
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("portvakt=trace"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runs on one thread (current-thread runtime), so this catches all of it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let env = start().await;
    let op = env.sim.operator();
    let graph = env.client();
    let app = graph
        .create_application(&new_app("c:ns:quiet"))
        .await
        .unwrap();
    env.sim.inject_fault(
        FaultRule::status(503)
            .method("POST")
            .path("/v1.0/applications/")
            .once(),
    );
    let password = graph
        .add_password(
            &app.id,
            &NewPasswordCredential {
                display_name: "azurerator-q".into(),
                start_date_time: None,
                end_date_time: None,
            },
        )
        .await
        .unwrap();
    env.sim.revoke_tokens();
    graph.get_group(GROUP).await.unwrap();
    let token = graph.auth().token().await.unwrap();

    let cert = TestCertificate::generate("quiet", 300).unwrap();
    env.sim
        .add_certificate(&op.client_id, &cert.cert_der)
        .unwrap();
    let credential =
        CertificateCredential::from_pem(&cert.key_pem, &cert.cert_pem, AssertionAlgorithm::Rs256)
            .unwrap();
    let by_cert = GraphClient::new(
        &env.config(OperatorCredential::Certificate(credential)),
        env.clock.clone(),
    )
    .unwrap();
    by_cert.get_group(GROUP).await.unwrap();
    let wrong = GraphClient::new(
        &env.config(OperatorCredential::ClientSecret(ClientSecret::new(
            "wrong-secret-value",
        ))),
        env.clock.clone(),
    )
    .unwrap();
    assert!(wrong.get_group(GROUP).await.is_err());
    let assertion = field(
        env.token_calls().iter().rev().nth(1).unwrap(),
        "client_assertion",
    )
    .unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("retrying") && text.contains("401"),
        "the client did log: {text}"
    );
    let secret_text = password.secret_text.unwrap();
    for (what, needle) in [
        ("client secret", op.client_secret.as_str()),
        ("wrong secret", "wrong-secret-value"),
        ("access token", token.secret()),
        ("password secretText", secret_text.expose()),
        ("assertion", assertion.as_str()),
    ] {
        assert!(!text.contains(needle), "the {what} was logged");
    }
}
