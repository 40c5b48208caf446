//! Maskinporten API providers end to end, without the controllers: portvakt's Digdir client against
//! the simulator for every `/scopes` route and rule, the exposed-scope plan (`core::scopes`) observed
//! and applied through it (`digdir::scopes`), faults in the middle of a grant sequence, answers that
//! are not what Digdir documents, and the Maskinporten tokens consumers and suppliers get for an
//! exposed scope.

use std::collections::BTreeSet;
use std::time::Duration;

use portvakt::clock::Clock;
use portvakt::core::digdir::scopes::{
    self, ExposingResource, Plan, Problem, ScopeAction, ScopeSettings, consumed_scopes,
};
use portvakt::crd::{ExposedScope, ExposedScopeConsumer, MaskinportenClient};
use portvakt::digdir::scopes::{ApplyReport, apply, observe};
use portvakt::digdir::{
    AccessState, DigdirClient, DigdirError, IntegrationType, ScopeRegistration, TokenType,
    Visibility,
};
use portvakt_sim::digdir::{
    DigdirSim, FaultRule, JWT_BEARER, RsaKey, Seed, SeedScope, SimHandle, WellKnownUrls,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::digdir_client;

/// The admin organisation of the default seed (KARTVERKET) and its scope prefix.
const ADMIN_ORG: &str = "971040238";
const PREFIX: &str = "kartverket";
const CLUSTER: &str = "prod-a";
const OTHER_CLUSTER: &str = "prod-b";
const ALTINN_ISSUER: &str = "https://tt02.altinn.no/";
/// Digdir's organisation in the seed: the supplier in the delegation tests.
const SUPPLIER: &str = "991825827";

struct Env {
    sim: DigdirSim,
    _handle: SimHandle,
    urls: WellKnownUrls,
    clock: Clock,
    digdir: DigdirClient,
    http: reqwest::Client,
}

async fn start() -> Env {
    start_with(Seed::default(), Duration::from_secs(5)).await
}

async fn start_with(seed: Seed, timeout: Duration) -> Env {
    portvakt::install_crypto_provider();
    let clock = Clock::system();
    let sim = DigdirSim::new(clock.clone(), seed);
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve sim");
    let urls = sim.well_known_urls(&handle.url());
    let digdir = digdir_client(&sim, &urls, &clock, timeout);
    Env {
        sim,
        _handle: handle,
        urls,
        clock,
        digdir,
        http: reqwest::Client::new(),
    }
}

/// A scope as `core::scopes` would create it, here built by hand to drive the client directly.
fn registration(subscope: &str, description: &str) -> ScopeRegistration {
    ScopeRegistration {
        active: true,
        allowed_integration_types: vec![IntegrationType::Maskinporten],
        at_max_age: 30,
        description: description.into(),
        prefix: PREFIX.into(),
        subscope: subscope.into(),
        token_type: TokenType::SelfContained,
        visibility: Visibility::Public,
        ..ScopeRegistration::default()
    }
}

fn exposed(product: &str, name: &str, consumers: &[&str]) -> ExposedScope {
    ExposedScope {
        enabled: true,
        name: name.into(),
        product: product.into(),
        consumers: Some(
            consumers
                .iter()
                .map(|o| ExposedScopeConsumer {
                    orgno: o.to_string(),
                    name: None,
                })
                .collect(),
        ),
        ..ExposedScope::default()
    }
}

fn resource(namespace: &str, name: &str, exposes: Vec<ExposedScope>) -> ExposingResource {
    ExposingResource {
        namespace: namespace.into(),
        name: name.into(),
        exposes,
        deleting: false,
    }
}

/// One of tests/data/examples, as the controller would hand it to the plan.
fn example(file: &str) -> ExposingResource {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let value: Value = serde_saphyr::from_str(&text).expect("YAML");
    let mp: MaskinportenClient = serde_json::from_value(value).expect("MaskinportenClient");
    ExposingResource::from_spec(
        mp.metadata.namespace.as_deref().unwrap_or_default(),
        mp.metadata.name.as_deref().unwrap_or_default(),
        &mp.spec,
        false,
    )
}

impl Env {
    /// The plan's settings for `cluster`, with the delegation sources read from Digdir.
    async fn settings(&self, cluster: &str) -> ScopeSettings {
        let sources = self.digdir.delegation_sources().await.expect("sources");
        ScopeSettings::new(cluster, PREFIX).with_delegation_sources(&sources)
    }

    /// One pass: observe, plan, apply every change.
    async fn sync(
        &self,
        settings: &ScopeSettings,
        resources: &[ExposingResource],
    ) -> (Plan, ApplyReport) {
        let observed = observe(&self.digdir, settings, resources)
            .await
            .expect("observe");
        let plan = scopes::plan(settings, resources, &observed);
        let report = apply(&self.digdir, &plan.changes).await;
        (plan, report)
    }

    /// A pass that completes, after which the next plan changes nothing.
    async fn converge(&self, settings: &ScopeSettings, resources: &[ExposingResource]) -> Plan {
        let (plan, report) = self.sync(settings, resources).await;
        assert!(report.is_complete(), "{:?}", report.failed);
        let observed = observe(&self.digdir, settings, resources)
            .await
            .expect("observe");
        let again = scopes::plan(settings, resources, &observed);
        assert!(
            again.is_empty(),
            "not converged: {:?}",
            again
                .changes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        );
        plan
    }

    /// The ACL as the client reads it: (consumer, state), sorted.
    async fn acl(&self, scope: &str) -> Vec<(String, AccessState)> {
        let mut acl: Vec<(String, AccessState)> = self
            .digdir
            .list_scope_access(scope)
            .await
            .expect("acl")
            .into_iter()
            .map(|a| (a.consumer_orgno, a.state))
            .collect();
        acl.sort_by(|a, b| a.0.cmp(&b.0));
        acl
    }

    /// A Maskinporten token request by `client_id`, optionally for a consumer (`consumer_org`).
    async fn token(
        &self,
        key: &RsaKey,
        client_id: &str,
        scope: &str,
        consumer_org: Option<&str>,
    ) -> (StatusCode, Value) {
        let now = self.clock.unix_seconds();
        let mut claims = json!({
            "iss": client_id, "aud": self.urls.maskinporten.issuer, "scope": scope,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(consumer) = consumer_org {
            claims["consumer_org"] = json!(consumer);
        }
        let grant = key.sign(&claims).expect("sign");
        let r = self
            .http
            .post(&self.urls.maskinporten.token_endpoint)
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.as_str())])
            .send()
            .await
            .expect("token request");
        let status = r.status();
        (status, r.json().await.expect("JSON"))
    }

    /// The claims of an access token, after checking its signature against Maskinporten's JWKS.
    async fn verified_claims(&self, token: &str) -> Value {
        let jwks: Value = self
            .http
            .get(&self.urls.maskinporten.jwks_uri)
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        let key = &jwks["keys"][0];
        let dk = jsonwebtoken::DecodingKey::from_rsa_components(
            key["n"].as_str().expect("n"),
            key["e"].as_str().expect("e"),
        )
        .expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &dk, &validation)
            .expect("token verifies")
            .claims
    }

    /// Admin API calls the simulator journaled with this method and path.
    fn calls(&self, method: &str, path: &str) -> usize {
        self.sim
            .journal()
            .iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .count()
    }
}

fn party(orgno: &str) -> Value {
    json!({"authority": "iso6523-actorid-upis", "ID": format!("0192:{orgno}")})
}

fn mp_error(body: &Value) -> String {
    format!("{} {}", body["error"], body["error_description"])
}

#[tokio::test]
async fn scopes_are_created_read_listed_deactivated_and_reactivated_by_name() {
    let env = start().await;
    // A subscope with "/", so the name must travel URL-encoded.
    let name = "kartverket:produktomraade/data/read";
    let created = env
        .digdir
        .create_scope(&registration(
            "produktomraade/data/read",
            "produktomraade - prod-a:ns:app",
        ))
        .await
        .expect("create");
    assert_eq!(created.full_name(), name);
    assert!(created.active);
    assert_eq!(created.owner_orgno.as_deref(), Some(ADMIN_ORG));

    let found = env.digdir.get_scope(name).await.expect("get");
    assert_eq!(
        found.map(|s| s.description),
        Some("produktomraade - prod-a:ns:app".into())
    );
    assert!(
        env.digdir
            .get_scope("kartverket:nothing")
            .await
            .expect("get")
            .is_none()
    );
    let get = env
        .sim
        .journal()
        .into_iter()
        .find(|r| r.path == "/api/v1/scopes/scope")
        .expect("journaled");
    assert!(
        get.query
            .contains("scope=kartverket%3Aproduktomraade%2Fdata%2Fread"),
        "the name is URL-encoded: {}",
        get.query
    );
    assert_eq!(get.query_param("scope").as_deref(), Some(name));

    // Deactivated: hidden from the active listing, shown with inactive=true.
    let deleted = env.digdir.delete_scope(name).await.expect("deactivate");
    assert!(!deleted.active);
    let names = |list: Vec<ScopeRegistration>| -> Vec<String> {
        list.into_iter().map(|s| s.full_name()).collect()
    };
    assert!(!names(env.digdir.list_scopes(false).await.expect("list")).contains(&name.into()));
    let all = env.digdir.list_scopes(true).await.expect("list");
    assert!(all.iter().any(|s| s.full_name() == name && !s.active));

    // A POST does not bring it back (409); a PUT with active: true does.
    let err = env
        .digdir
        .create_scope(&registration("produktomraade/data/read", "again"))
        .await
        .expect_err("409");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("reactivate it with PUT"), "{err}");
    let mut reactivate = registration("produktomraade/data/read", "produktomraade - prod-a:ns:app");
    reactivate.at_max_age = 120;
    let back = env
        .digdir
        .update_scope(name, &reactivate)
        .await
        .expect("PUT");
    assert!(back.active);
    assert_eq!(back.at_max_age, 120);
    let put = env
        .sim
        .journal()
        .into_iter()
        .find(|r| r.method == http::Method::PUT && r.path == "/api/v1/scopes")
        .expect("journaled");
    assert_eq!(put.query_param("scope").as_deref(), Some(name));
    let body: Value = serde_json::from_str(put.body.as_deref().expect("body")).expect("json");
    assert_eq!(body["active"], true);

    // A prefix the organisation does not own, and a scope another organisation owns.
    let mut foreign = registration("x", "x");
    foreign.prefix = "krr".into();
    let err = env.digdir.create_scope(&foreign).await.expect_err("403");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        err.to_string()
            .contains("not assigned to organisation 971040238"),
        "{err}"
    );
    let err = env
        .digdir
        .delete_scope("krr:global/kontaktinformasjon.read")
        .await
        .expect_err("403");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        env.sim
            .scopes()
            .iter()
            .any(|s| s["name"] == "krr:global/kontaktinformasjon.read" && s["active"] == true)
    );
    // The prefixes the organisation may create scopes under.
    let prefixes: BTreeSet<String> = env
        .digdir
        .list_prefixes()
        .await
        .expect("prefixes")
        .into_iter()
        .map(|p| p.prefix)
        .collect();
    assert_eq!(prefixes, ["kartverket", "nav"].map(String::from).into());
}

#[tokio::test]
async fn access_is_granted_refused_for_unknown_orgnos_denied_regranted_and_revoked() {
    let env = start().await;
    let name = "kartverket:api:read";
    env.digdir
        .create_scope(&registration("api:read", "api - prod-a:ns:app"))
        .await
        .expect("create");

    let access = env
        .digdir
        .grant_scope_access("987654321", name)
        .await
        .expect("grant");
    assert_eq!(access.state, AccessState::Approved);
    assert_eq!(access.owner_orgno, ADMIN_ORG);
    let err = env
        .digdir
        .grant_scope_access("999999999", name)
        .await
        .expect_err("an orgno the simulator does not know");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.is_client_error());
    assert!(err.to_string().contains("999999999"), "{err}");
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Approved)]
    );

    // Denied by hand in Samarbeidsportalen: listed as DENIED, granted again by a PUT.
    env.sim.set_scope_access(name, "987654321", "DENIED");
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Denied)]
    );
    assert!(
        env.digdir
            .find_scope_access("987654321", name)
            .await
            .expect("find")
            .is_none()
    );
    env.digdir
        .grant_scope_access("987654321", name)
        .await
        .expect("regrant");
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Approved)]
    );
    assert!(
        env.digdir
            .find_scope_access("987654321", name)
            .await
            .expect("find")
            .is_some()
    );
    assert_eq!(env.sim.scope_access_grants(name, "987654321"), 2);

    let revoked = env
        .digdir
        .revoke_scope_access("987654321", name)
        .await
        .expect("revoke");
    assert_eq!(
        revoked.map(|a| a.consumer_orgno).as_deref(),
        Some("987654321")
    );
    assert!(env.acl(name).await.is_empty());
    assert!(
        env.digdir
            .revoke_scope_access("987654321", name)
            .await
            .expect("again")
            .is_none(),
        "revoking what is gone is done, not an error"
    );
}

#[tokio::test]
async fn what_the_organisation_may_consume_is_read_and_split() {
    let mut seed = Seed::default();
    seed.scopes.push(SeedScope {
        name: "difitest:open".into(),
        owner_orgno: SUPPLIER.into(),
        description: "open to all".into(),
        accessible_for_all: true,
        allowed_integration_types: vec!["maskinporten".into()],
        ..SeedScope::default()
    });
    seed.scopes.push(SeedScope {
        name: "difitest:closed".into(),
        owner_orgno: SUPPLIER.into(),
        description: "needs an access".into(),
        allowed_integration_types: vec!["maskinporten".into()],
        ..SeedScope::default()
    });
    let env = start_with(seed, Duration::from_secs(5)).await;
    env.sim
        .set_scope_access("difitest:closed", ADMIN_ORG, "REQUESTED");

    let granted = env
        .digdir
        .list_access_granted_to_us()
        .await
        .expect("accesses");
    assert!(
        granted.iter().all(|a| a.consumer_orgno == ADMIN_ORG),
        "{granted:?}"
    );
    let open = env.digdir.list_open_scopes().await.expect("open scopes");
    assert!(open.iter().all(|s| s.accessible_for_all), "{open:?}");
    let consumed: Vec<String> = [
        "krr:global/kontaktinformasjon.read",
        "difitest:open",
        "difitest:closed",
        "nav:unknown",
    ]
    .map(String::from)
    .into();
    let split = consumed_scopes(&consumed, &granted, &open);
    assert_eq!(
        split.usable,
        ["krr:global/kontaktinformasjon.read", "difitest:open"]
    );
    assert_eq!(split.unusable, ["difitest:closed", "nav:unknown"]);
}

#[tokio::test]
async fn delegation_sources_are_read_without_a_token_under_api_v1_or_the_root() {
    let env = start().await;
    let sources = env.digdir.delegation_sources().await.expect("sources");
    assert_eq!(sources.len(), 1);
    assert_eq!(
        (sources[0].name.as_str(), sources[0].issuer.as_str()),
        ("altinn", ALTINN_ISSUER)
    );
    assert_eq!(
        env.digdir.stats().token_grants,
        0,
        "no admin token was fetched for it"
    );
    assert_eq!(env.calls("GET", "/api/v1/delegationsources"), 1);

    // Where /api/v1/delegationsources is not served, the documented root path is read.
    env.sim.inject_fault(
        FaultRule::status(404)
            .method("GET")
            .path("/api/v1/delegationsources")
            .once(),
    );
    let again = env
        .digdir
        .delegation_sources()
        .await
        .expect("sources from the root");
    assert_eq!(again, sources);
    assert_eq!(env.calls("GET", "/delegationsources"), 1);
    assert_eq!(env.digdir.stats().token_grants, 0);

    // The simulator serves both paths, with or without a token.
    let token = env.digdir.auth().token().await.expect("admin token");
    for url in [
        format!("{}/delegationsources", env.urls.admin_base_url),
        format!("{}/delegationsources", env.urls.admin_api_url),
    ] {
        for with_token in [false, true] {
            let mut req = env.http.get(&url);
            if with_token {
                req = req.bearer_auth(token.secret());
            }
            let r = req.send().await.expect("GET");
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            let body: Value = r.json().await.expect("json");
            assert_eq!(body[0]["issuer"], ALTINN_ISSUER, "{url}");
        }
    }
}

#[tokio::test]
async fn answers_that_are_not_what_digdir_documents_are_refused() {
    let env = start().await;
    let name = "kartverket:api:read";
    env.digdir
        .create_scope(&registration("api:read", "api - prod-a:ns:app"))
        .await
        .expect("create");
    let unexpected = |e: &DigdirError| {
        assert!(matches!(e, DigdirError::Decode { .. }), "{e:?}");
        assert!(e.to_string().contains("unexpected answer"), "{e}");
        e.to_string()
    };

    // `{}` where a list is documented.
    env.sim.inject_fault(
        FaultRule::body(200, "{}")
            .method("GET")
            .path("/api/v1/scopes")
            .once(),
    );
    unexpected(
        &env.digdir
            .list_scopes(true)
            .await
            .expect_err("an object is no list"),
    );

    // `{}` decodes into an access with no consumer: refused, not taken as a grant.
    env.sim.inject_fault(
        FaultRule::body(200, "{}")
            .method("PUT")
            .path("/api/v1/scopes/access/987654321")
            .once(),
    );
    let e = env
        .digdir
        .grant_scope_access("987654321", name)
        .await
        .expect_err("{}");
    assert!(unexpected(&e).contains("without consumer_orgno"), "{e}");
    assert!(
        env.acl(name).await.is_empty(),
        "the faked answer granted nothing"
    );

    // A listing with one entry that has no documented state.
    env.sim.inject_fault(
        FaultRule::body(
            200,
            r#"[{"consumer_orgno":"987654321","scope":"kartverket:api:read","state":"PENDING"}]"#,
        )
        .method("GET")
        .path("/api/v1/scopes/access")
        .once(),
    );
    let e = env
        .digdir
        .list_scope_access(name)
        .await
        .expect_err("PENDING");
    assert!(unexpected(&e).contains("PENDING"), "{e}");

    // A scope without a name, and the answer about another scope than the one asked for.
    env.sim.inject_fault(
        FaultRule::body(200, r#"{"description":"x","active":true}"#)
            .method("GET")
            .path("/api/v1/scopes/scope")
            .once(),
    );
    let e = env.digdir.get_scope(name).await.expect_err("no name");
    assert!(unexpected(&e).contains("without prefix or subscope"), "{e}");
    env.sim.inject_fault(
        FaultRule::body(
            200,
            r#"{"name":"kartverket:other","prefix":"kartverket","subscope":"other","active":false}"#,
        )
        .method("DELETE")
        .path("/api/v1/scopes")
        .once(),
    );
    let e = env
        .digdir
        .delete_scope(name)
        .await
        .expect_err("another scope");
    assert!(
        unexpected(&e).contains("asked for `kartverket:api:read`"),
        "{e}"
    );

    // Delegation sources without an issuer.
    env.sim.inject_fault(
        FaultRule::body(200, r#"[{"name":"altinn"}]"#)
            .method("GET")
            .path("/api/v1/delegationsources")
            .once(),
    );
    unexpected(
        &env.digdir
            .delegation_sources()
            .await
            .expect_err("no issuer"),
    );

    // None of them was retried: each faked answer was one request.
    assert_eq!(env.digdir.stats().retries, 0);
    // And the real state is untouched.
    assert!(
        env.digdir
            .get_scope(name)
            .await
            .expect("get")
            .is_some_and(|s| s.active)
    );
}

#[tokio::test]
async fn faults_in_the_middle_of_a_grant_sequence_end_with_the_exact_acl_and_no_duplicate_grants() {
    let env = start_with(Seed::default(), Duration::from_millis(400)).await;
    let settings = env.settings(CLUSTER).await;
    let name = "kartverket:api/data";
    let mut scope = exposed("api", "data", &["991825827"]);
    scope.separator = Some("/".into());
    env.converge(&settings, &[resource("ns", "app", vec![scope.clone()])])
        .await;
    assert_eq!(
        env.acl(name).await,
        [("991825827".into(), AccessState::Approved)]
    );

    // Four new consumers and one removed, each call hit by a different fault.
    let consumers = ["123456789", "889640782", "910753614", "987654321"];
    scope.consumers = Some(
        consumers
            .iter()
            .map(|o| ExposedScopeConsumer {
                orgno: o.to_string(),
                name: None,
            })
            .collect(),
    );
    let grant = |orgno: &str| format!("/api/v1/scopes/access/{orgno}");
    // Refused before it was handled: simply retried.
    env.sim.inject_fault(
        FaultRule::status(503)
            .method("PUT")
            .path(&grant("987654321"))
            .once(),
    );
    // Handled, then answered 500: the access exists; looked up, not granted twice.
    env.sim.inject_fault(
        FaultRule::status_after_handling(500)
            .method("PUT")
            .path(&grant("123456789"))
            .once(),
    );
    // Handled, then the answer comes after the client gave up.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_millis(1500))
            .method("PUT")
            .path(&grant("910753614"))
            .once(),
    );
    // Throttled.
    env.sim.inject_fault(
        FaultRule::throttle(0)
            .method("PUT")
            .path(&grant("889640782"))
            .once(),
    );
    // The revoke times out after it was done; the retry finds nothing to revoke.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_millis(1500))
            .method("DELETE")
            .path(&grant("991825827"))
            .once(),
    );

    let before = env.digdir.stats();
    let plan = env
        .converge(&settings, &[resource("ns", "app", vec![scope])])
        .await;
    let planned: Vec<(&str, Option<&str>)> = plan
        .changes
        .iter()
        .map(|c| (c.action.label(), c.action.orgno()))
        .collect();
    assert_eq!(
        planned,
        [
            ("grant", Some("123456789")),
            ("grant", Some("889640782")),
            ("grant", Some("910753614")),
            ("grant", Some("987654321")),
            ("revoke", Some("991825827")),
        ]
    );
    assert_eq!(
        env.acl(name).await,
        consumers.map(|o| (o.to_string(), AccessState::Approved))
    );
    for orgno in consumers {
        assert_eq!(
            env.sim.scope_access_grants(name, orgno),
            1,
            "{orgno} was granted once"
        );
    }
    let stats = env.digdir.stats();
    assert_eq!(
        stats.create_lookups - before.create_lookups,
        3,
        "one lookup per answer that left the grant open: the 503, the 500 and the timeout"
    );
    assert!(stats.retries > before.retries);
    assert!(env.sim.faults().rules().is_empty(), "every fault fired");
}

/// A grant that got no answer and is not there (yet) may still land: the client does not send it
/// again, it reports the timeout, and the next pass grants what is still missing.
#[tokio::test]
async fn a_grant_without_an_answer_is_not_sent_again_until_the_next_pass() {
    let env = start_with(Seed::default(), Duration::from_millis(400)).await;
    let settings = env.settings(CLUSTER).await;
    let name = "kartverket:api:read";
    env.converge(
        &settings,
        &[resource("ns", "app", vec![exposed("api", "read", &[])])],
    )
    .await;
    let path = "/api/v1/scopes/access/987654321";
    // Held before it is handled: the client gives up with nothing granted.
    env.sim.inject_fault(
        FaultRule::latency(Duration::from_secs(3))
            .method("PUT")
            .path(path)
            .once(),
    );
    let with_consumer = [resource(
        "ns",
        "app",
        vec![exposed("api", "read", &["987654321"])],
    )];
    let (plan, report) = env.sync(&settings, &with_consumer).await;
    assert_eq!(plan.changes.len(), 1);
    let (failed, err) = report.failed.as_ref().expect("the grant failed");
    assert_eq!(failed.action.orgno(), Some("987654321"));
    assert!(err.may_land_later(), "{err}");
    assert_eq!(env.calls("PUT", path), 1, "not sent again");
    assert_eq!(env.digdir.stats().create_lookups, 1, "looked up once");

    // The next pass grants what is missing (the held request was dropped with the connection).
    env.converge(&settings, &with_consumer).await;
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Approved)]
    );
    assert_eq!(env.sim.scope_access_grants(name, "987654321"), 1);
}

#[tokio::test]
async fn a_refused_consumer_is_a_problem_of_its_scope_and_the_other_grants_go_on() {
    let env = start().await;
    let settings = env.settings(CLUSTER).await;
    let name = "kartverket:api:read";
    // Nine digits, so the plan tries it; the simulator does not know the organisation.
    let r = resource(
        "ns",
        "app",
        vec![exposed("api", "read", &["999999999", "987654321"])],
    );
    let (plan, report) = env.sync(&settings, std::slice::from_ref(&r)).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(plan.changes.len(), 3);
    assert_eq!(report.applied.len(), 2, "the create and the known consumer");
    assert_eq!(report.problems.len(), 1);
    let problem = &report.problems[0];
    assert_eq!(problem.scope.as_deref(), Some(name));
    assert_eq!(problem.resource.to_string(), "prod-a:ns:app");
    let Problem::InvalidConsumer { orgno, reason } = &problem.problem else {
        panic!("{problem}")
    };
    assert_eq!(orgno, "999999999");
    assert!(
        reason.contains("not a known organisation number"),
        "{reason}"
    );
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Approved)]
    );
}

#[tokio::test]
async fn the_skip_example_is_exposed_and_its_consumers_get_tokens_while_approved() {
    let env = start().await;
    let settings = env.settings(CLUSTER).await;
    let provider = example("maskinportenclient.yaml");
    let name = "kartverket:produktomraade:innsyn";
    let plan = env
        .converge(&settings, std::slice::from_ref(&provider))
        .await;
    assert_eq!(plan.changes.len(), 3, "{:?}", plan.changes);
    let scope = env
        .digdir
        .get_scope(name)
        .await
        .expect("get")
        .expect("created");
    assert_eq!(
        scope.description,
        "produktomraade - prod-a:tilgangsstyring-main:test-client"
    );
    assert_eq!(scope.at_max_age, 30);
    assert_eq!(
        env.acl(name).await,
        [
            ("123456789".into(), AccessState::Approved),
            ("987654321".into(), AccessState::Approved)
        ]
    );

    // A consumer's own client, registered by that organisation, gets a token for the scope.
    let key = RsaKey::generate("consumer-key").expect("key");
    let client_id = env
        .sim
        .add_maskinporten_client("987654321", &[name], &key)
        .expect("consumer client");
    let (status, body) = env.token(&key, &client_id, name, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], name);
    assert_eq!(body["expires_in"], 30, "at_max_age bounds the lifetime");
    let claims = env
        .verified_claims(body["access_token"].as_str().expect("token"))
        .await;
    assert_eq!(claims["scope"], name);
    assert_eq!(claims["consumer"], party("987654321"));
    assert_eq!(claims["client_id"], client_id.as_str());
    assert!(claims.get("supplier").is_none(), "{claims}");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 30);

    // An organisation with no access cannot, even with the scope on its client.
    let outsider_key = RsaKey::generate("outsider-key").expect("key");
    let outsider = env
        .sim
        .add_maskinporten_client("910753614", &[name], &outsider_key)
        .expect("outsider client");
    let (status, body) = env.token(&outsider_key, &outsider, name, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(mp_error(&body).contains("MP-250"), "{body}");

    // The consumer is removed from the spec: revoked, and its next token request is refused.
    let mut without = provider.clone();
    without.exposes[0].consumers = Some(vec![ExposedScopeConsumer {
        orgno: "123456789".into(),
        name: None,
    }]);
    let plan = env.converge(&settings, &[without]).await;
    assert_eq!(
        plan.changes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        [format!(
            "revoke organisation 987654321's access to `{name}`"
        )]
    );
    let (status, body) = env.token(&key, &client_id, name, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    assert!(
        mp_error(&body).contains("MP-250: organisation 987654321"),
        "{body}"
    );

    // Denied by hand: refused as well until the spec's next pass grants it again.
    env.sim.set_scope_access(name, "123456789", "DENIED");
    let other_key = RsaKey::generate("other-consumer-key").expect("key");
    let other = env
        .sim
        .add_maskinporten_client("123456789", &[name], &other_key)
        .expect("client");
    let (status, _) = env.token(&other_key, &other, name, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let plan = env
        .converge(&settings, &[example("maskinportenclient.yaml")])
        .await;
    let labels: Vec<&str> = plan.changes.iter().map(|c| c.action.label()).collect();
    assert_eq!(labels, ["regrant", "grant"], "{:?}", plan.changes);
    let (status, body) = env.token(&other_key, &other, name, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_supplier_gets_a_token_for_a_consumer_only_with_approved_access_and_a_delegation() {
    let env = start().await;
    let settings = env.settings(CLUSTER).await;
    let name = "kartverket:difitest/test2";
    let consumer = "910753614";
    env.converge(&settings, &[example("maskinportenclient-delegation.yaml")])
        .await;
    let scope = env
        .digdir
        .get_scope(name)
        .await
        .expect("get")
        .expect("created");
    assert_eq!(scope.delegation_source.as_deref(), Some(ALTINN_ISSUER));
    assert_eq!(scope.visibility, Visibility::Private);
    assert_eq!(
        env.acl(name).await,
        [(consumer.into(), AccessState::Approved)]
    );

    // The supplier's own client carries the provider's scope; the supplier has no access itself.
    let key = RsaKey::generate("supplier-key").expect("key");
    let supplier_client = env
        .sim
        .add_maskinporten_client(SUPPLIER, &[name], &key)
        .expect("supplier client");
    let (status, body) = env.token(&key, &supplier_client, name, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not for itself: {body}");

    // No delegation in "Altinn" yet.
    let (status, body) = env
        .token(&key, &supplier_client, name, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(mp_error(&body).contains("MP-251"), "{body}");

    env.sim.delegate(consumer, SUPPLIER, name);
    let (status, body) = env
        .token(&key, &supplier_client, name, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 60, "the example's atMaxAge");
    let claims = env
        .verified_claims(body["access_token"].as_str().expect("token"))
        .await;
    assert_eq!(claims["consumer"], party(consumer));
    assert_eq!(claims["supplier"], party(SUPPLIER));
    assert_eq!(claims["delegation_source"], ALTINN_ISSUER);
    assert_eq!(claims["client_orgno"], SUPPLIER);
    assert_eq!(claims["scope"], name);

    // The consumer's access is denied: the delegation alone is not enough.
    env.sim.set_scope_access(name, consumer, "DENIED");
    let (status, body) = env
        .token(&key, &supplier_client, name, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(mp_error(&body).contains("MP-250"), "{body}");
    env.converge(&settings, &[example("maskinportenclient-delegation.yaml")])
        .await;
    let (status, _) = env
        .token(&key, &supplier_client, name, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The delegation is withdrawn.
    assert!(env.sim.revoke_delegation(consumer, SUPPLIER, name));
    let (status, body) = env
        .token(&key, &supplier_client, name, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(mp_error(&body).contains("MP-251"), "{body}");

    // A scope without a delegation source cannot be used with consumer_org.
    env.converge(
        &settings,
        &[
            example("maskinportenclient-delegation.yaml"),
            resource("ns", "plain", vec![exposed("plain", "read", &[consumer])]),
        ],
    )
    .await;
    let plain = "kartverket:plain:read";
    let plain_key = RsaKey::generate("supplier-plain").expect("key");
    let plain_client = env
        .sim
        .add_maskinporten_client(SUPPLIER, &[plain], &plain_key)
        .expect("client");
    env.sim.delegate(consumer, SUPPLIER, plain);
    let (status, body) = env
        .token(&plain_key, &plain_client, plain, Some(consumer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(mp_error(&body).contains("no delegation source"), "{body}");
}

#[tokio::test]
async fn two_clusters_of_one_organisation_share_digdir_without_touching_each_others_scopes() {
    let env = start().await;
    let a = env.settings(CLUSTER).await;
    let b = env.settings(OTHER_CLUSTER).await;
    let in_a = [resource(
        "team",
        "api",
        vec![exposed("api", "read", &["987654321"])],
    )];
    let in_b = [resource(
        "team",
        "api",
        vec![exposed("api", "write", &["123456789"])],
    )];
    env.converge(&a, &in_a).await;
    env.converge(&b, &in_b).await;

    // Each cluster's pass leaves the other's scope alone: no write to it, not reported orphaned.
    env.sim.clear_journal();
    let observed = observe(&env.digdir, &a, &in_a).await.expect("observe");
    let plan = scopes::plan(&a, &in_a, &observed);
    assert!(
        plan.is_empty() && plan.orphaned.is_empty() && plan.problems.is_empty(),
        "{plan:?}"
    );
    assert_eq!(
        env.calls("GET", "/api/v1/scopes/access"),
        1,
        "only A's own ACL is read"
    );
    let names: BTreeSet<String> = env
        .digdir
        .list_scopes(true)
        .await
        .expect("list")
        .into_iter()
        .filter(|s| s.prefix == PREFIX)
        .map(|s| format!("{} = {}", s.full_name(), s.description))
        .collect();
    assert_eq!(
        names,
        [
            "kartverket:api:read = api - prod-a:team:api",
            "kartverket:api:write = api - prod-b:team:api",
        ]
        .map(String::from)
        .into()
    );

    // A removes its scope from the spec: it stays active and is reported; B's never is.
    let emptied = [resource("team", "api", vec![])];
    let plan = env.converge(&a, &emptied).await;
    assert!(plan.is_empty());
    assert_eq!(plan.orphaned.len(), 1);
    assert_eq!(plan.orphaned[0].scope, "kartverket:api:read");
    assert!(
        env.digdir
            .get_scope("kartverket:api:read")
            .await
            .expect("get")
            .is_some_and(|s| s.active)
    );

    // A resource in A exposing B's scope gets a problem naming B's owner, and nothing changes.
    let intruder = [resource(
        "other",
        "copy",
        vec![exposed("api", "write", &["910753614"])],
    )];
    let (plan, report) = env.sync(&a, &intruder).await;
    assert!(plan.is_empty() && report.applied.is_empty());
    assert_eq!(plan.problems.len(), 1);
    assert!(
        plan.problems[0]
            .to_string()
            .contains("owned by prod-b:team:api"),
        "{}",
        plan.problems[0]
    );
    assert_eq!(
        env.acl("kartverket:api:write").await,
        [("123456789".into(), AccessState::Approved)]
    );
}

#[tokio::test]
async fn a_hand_made_scope_is_adopted_and_deletion_deactivates_only_disabled_scopes() {
    let env = start().await;
    let settings = env.settings(CLUSTER).await;
    let name = "kartverket:api:read";
    // Made by hand in Samarbeidsportalen, with a consumer the spec does not list.
    let mut hand_made = registration("api:read", "Les data fra API-et");
    hand_made.token_type = TokenType::Opaque;
    env.digdir
        .create_scope(&hand_made)
        .await
        .expect("create by hand");
    env.digdir
        .grant_scope_access("889640782", name)
        .await
        .expect("grant by hand");

    let mut disabled = exposed("api", "old", &[]);
    disabled.enabled = false;
    let mut r = resource(
        "ns",
        "app",
        vec![exposed("api", "read", &["987654321"]), disabled.clone()],
    );
    let plan = env.converge(&settings, std::slice::from_ref(&r)).await;
    assert_eq!(plan.adopted.len(), 1);
    assert_eq!(
        plan.changes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        [
            format!("update scope `{name}` (description, token_type)"),
            format!("grant organisation 987654321 access to `{name}`"),
            format!("revoke organisation 889640782's access to `{name}`"),
        ]
    );
    let adopted = env
        .digdir
        .get_scope(name)
        .await
        .expect("get")
        .expect("scope");
    assert_eq!(adopted.description, "api - prod-a:ns:app");
    assert_eq!(adopted.token_type, TokenType::SelfContained);
    assert!(
        env.digdir
            .get_scope("kartverket:api:old")
            .await
            .expect("get")
            .is_none(),
        "a disabled scope is not created"
    );

    // Enable `old`, then disable it again and delete the resource: `read` stays, `old` goes inactive.
    r.exposes[1].enabled = true;
    env.converge(&settings, std::slice::from_ref(&r)).await;
    r.exposes[1].enabled = false;
    r.deleting = true;
    let plan = env.converge(&settings, &[r]).await;
    assert_eq!(
        plan.changes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["deactivate scope `kartverket:api:old`"]
    );
    assert!(matches!(plan.changes[0].action, ScopeAction::Deactivate));
    let all = env.digdir.list_scopes(true).await.expect("list");
    let active = |n: &str| all.iter().find(|s| s.full_name() == n).map(|s| s.active);
    assert_eq!(
        active(name),
        Some(true),
        "consumers keep their enabled scope"
    );
    assert_eq!(active("kartverket:api:old"), Some(false));
    assert_eq!(
        env.acl(name).await,
        [("987654321".into(), AccessState::Approved)]
    );
}
