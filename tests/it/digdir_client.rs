//! The Digdir API client and its admin authentication against small in-test axum stubs
//! (Maskinporten token endpoint + `/api/v1/clients`), with fault injection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use portvakt::clock::Clock;
use portvakt::digdir::{
    AuthError, ClientRegistration, DigdirClient, DigdirConfig, DigdirEnvironment, DigdirError,
    IntegrationType, Jwk, RetryPolicy,
};
use portvakt::keys::{self, FileSigner, KeyReference, PrivateJwk, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const ADMIN_CLIENT_ID: &str = "0f3e9b1c-admin";

fn admin_key() -> &'static PrivateJwk {
    static KEY: OnceLock<PrivateJwk> = OnceLock::new();
    KEY.get_or_init(|| keys::generate_key().expect("key generation"))
}

/// A signer with an `x5c` business-certificate chain, loaded from files as in production.
fn admin_signer(dir: &std::path::Path) -> Arc<dyn Signer> {
    let rsa = admin_key().to_rsa().expect("rsa");
    let key_path = dir.join("admin.key");
    let chain_path = dir.join("admin-chain.pem");
    std::fs::write(&key_path, keys::rsa_key_to_pem(&rsa).expect("pem")).expect("write key");
    let cert =
        keys::self_signed_business_cert(&rsa, "PORTVAKT TEST AS", "889640782").expect("cert");
    std::fs::write(&chain_path, cert).expect("write chain");
    Arc::new(FileSigner::from_files(&key_path, Some(&chain_path), None).expect("signer"))
}

#[derive(Clone, Debug)]
enum Fault {
    /// Answer with this status, body and headers, without doing anything.
    Reject {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Do the work, then answer 500.
    ProcessThen500,
    /// Do the work, then hold the answer back (the client times out).
    ProcessThenHang(Duration),
}

fn reject(status: u16) -> Fault {
    Fault::Reject {
        status,
        body: String::new(),
        headers: Vec::new(),
    }
}

#[derive(Default)]
struct StubState {
    issuer: String,
    /// Verified grant claims and headers, in order.
    grants: Vec<(Value, Value)>,
    jtis: HashSet<String>,
    /// Headers of grants refused for having no x5c.
    rejected_headers: Vec<Value>,
    issued: Vec<String>,
    /// Scopes the admin client holds (`None` = any).
    allowed_scopes: Option<Vec<String>>,
    token_faults: VecDeque<Fault>,
    /// (method, path) -> faults, taken one per request.
    faults: HashMap<(String, String), VecDeque<Fault>>,
    clients: Vec<Value>,
    jwks: HashMap<String, Value>,
    /// (method, path, when) of every API request.
    journal: Vec<(String, String, Instant)>,
    next_id: u64,
}

#[derive(Clone)]
struct Stub {
    state: Arc<Mutex<StubState>>,
    addr: SocketAddr,
}

impl Stub {
    async fn start() -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(StubState {
            issuer: format!("http://{addr}/"),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(well_known))
            .route("/token", post(token))
            .route("/api/v1/clients", get(list_clients).post(create_client))
            .route(
                "/api/v1/clients/{id}",
                get(get_client).put(update_client).delete(delete_client),
            )
            .route("/api/v1/clients/{id}/jwks", get(get_jwks).post(post_jwks))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { state, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn config(&self) -> DigdirConfig {
        let mut config = DigdirConfig::preset(DigdirEnvironment::Test, ADMIN_CLIENT_ID);
        config.base_url = self.url();
        config.maskinporten_well_known_url =
            format!("{}/.well-known/oauth-authorization-server", self.url());
        config.idporten_well_known_url = format!("{}/.well-known/openid-configuration", self.url());
        config.retry = RetryPolicy::fast(4);
        config.request_timeout = Duration::from_secs(5);
        config
    }

    fn fault(&self, method: &str, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .push_back(fault);
    }

    fn journal(&self, method: &str, path: &str) -> Vec<Instant> {
        self.state
            .lock()
            .unwrap()
            .journal
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .map(|(_, _, t)| *t)
            .collect()
    }

    fn grants(&self) -> usize {
        self.state.lock().unwrap().grants.len()
    }

    fn clients(&self) -> Vec<Value> {
        self.state.lock().unwrap().clients.clone()
    }
}

type Shared = State<Arc<Mutex<StubState>>>;

async fn well_known(State(state): Shared) -> Json<Value> {
    let issuer = state.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}token"),
        "jwks_uri": format!("{issuer}jwk"),
    }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Verifies the grant as Maskinporten does: signature against the x5c leaf, aud = issuer exactly, iss,
/// lifetime ≤ 120 s, jti unused, scopes allowed.
async fn token(State(state): Shared, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(Fault::Reject { status, body, .. }) = s.token_faults.pop_front() {
        return (StatusCode::from_u16(status).unwrap(), body).into_response();
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no assertion");
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "bad header");
    };
    let Some(x5c) = header.x5c.clone() else {
        s.rejected_headers
            .push(serde_json::to_value(&header).unwrap());
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "no x5c");
    };
    let Some(leaf) = keys::x5c_leaf_der(&x5c) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "bad x5c");
    };
    let Ok(public) = keys::cert_public_key(&leaf) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "bad certificate");
    };
    let decoding = jsonwebtoken::DecodingKey::from_rsa_raw_components(
        &public.n().to_bytes_be(),
        &public.e().to_bytes_be(),
    );
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[s.issuer.clone()]);
    validation.set_issuer(&[ADMIN_CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &decoding, &validation) {
        Ok(data) => data.claims,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string()),
    };
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "iat/exp");
    };
    if exp - iat > 120 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "exp too far ahead",
        );
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    if jti.is_empty() || !s.jtis.insert(jti) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Grant is used before",
        );
    }
    let scope = claims["scope"].as_str().unwrap_or_default().to_string();
    if let Some(allowed) = &s.allowed_scopes
        && let Some(bad) = scope.split(' ').find(|sc| !allowed.iter().any(|a| a == sc))
    {
        let description = format!("Invalid scope: {bad} (trace_id: t-1)");
        s.grants
            .push((serde_json::to_value(&header).unwrap(), claims));
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &description);
    }
    let access_token = format!("admin-token-{}", s.issued.len() + 1);
    s.issued.push(access_token.clone());
    s.grants
        .push((serde_json::to_value(&header).unwrap(), claims));
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 120,
        "scope": scope,
    }))
    .into_response()
}

/// Journals the request, checks the bearer token, and takes a fault if one is queued.
/// `Err` is the response to send instead of doing the work.
#[allow(clippy::result_large_err)] // a test stub
fn enter(
    s: &mut StubState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Fault>, Response> {
    s.journal
        .push((method.to_string(), path.to_string(), Instant::now()));
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if s.issued.last().map(String::as_str) != Some(token) {
        return Err((StatusCode::UNAUTHORIZED, "bad token").into_response());
    }
    let fault = s
        .faults
        .get_mut(&(method.to_string(), path.to_string()))
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Reject {
            status,
            body,
            headers,
        }) => {
            let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            Err(resp)
        }
        other => Ok(other),
    }
}

async fn finish(fault: Option<Fault>, ok: Response) -> Response {
    match fault {
        Some(Fault::ProcessThen500) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({"status": 500, "error": "server_error", "error_description": "Uventet feil",
                "correlation_id": "c-500"}),
            ),
        )
            .into_response(),
        Some(Fault::ProcessThenHang(d)) => {
            tokio::time::sleep(d).await;
            ok
        }
        _ => ok,
    }
}

async fn list_clients(State(state): Shared, method: Method, headers: HeaderMap) -> Response {
    let (fault, body) = {
        let mut s = state.lock().unwrap();
        let fault = match enter(&mut s, &method, "/clients", &headers) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        (fault, Json(Value::Array(s.clients.clone())).into_response())
    };
    finish(fault, body).await
}

async fn create_client(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> Response {
    let (fault, resp) = {
        let mut s = state.lock().unwrap();
        let fault = match enter(&mut s, &method, "/clients", &headers) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        if body["redirect_uris"].as_array().is_some_and(|a| {
            a.iter()
                .any(|u| u.as_str().is_some_and(|u| u.starts_with("ftp:")))
        }) {
            let err = json!({"status": 400, "correlation_id": "corr-400", "error": "invalid_request",
                "error_description": "redirect_uris: ftp is not an allowed scheme"});
            return (StatusCode::BAD_REQUEST, Json(err)).into_response();
        }
        s.next_id += 1;
        body["client_id"] = json!(format!("client-{}", s.next_id));
        body["active"] = json!(true);
        s.clients.push(body.clone());
        (fault, (StatusCode::CREATED, Json(body)).into_response())
    };
    finish(fault, resp).await
}

async fn get_client(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = format!("/clients/{id}");
    if let Err(resp) = enter(&mut s, &method, &path, &headers) {
        return resp;
    }
    match s.clients.iter().find(|c| c["client_id"] == id.as_str()) {
        Some(c) => Json(c.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error_description": "not found"})),
        )
            .into_response(),
    }
}

async fn update_client(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = format!("/clients/{id}");
    if let Err(resp) = enter(&mut s, &method, &path, &headers) {
        return resp;
    }
    match s.clients.iter_mut().find(|c| c["client_id"] == id.as_str()) {
        Some(c) => {
            body["client_id"] = json!(id);
            body["active"] = json!(true);
            *c = body.clone();
            Json(body).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_client(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = format!("/clients/{id}");
    if let Err(resp) = enter(&mut s, &method, &path, &headers) {
        return resp;
    }
    match s.clients.iter_mut().find(|c| c["client_id"] == id.as_str()) {
        Some(c) => {
            c["active"] = json!(false);
            StatusCode::OK.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_jwks(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = format!("/clients/{id}/jwks");
    if let Err(resp) = enter(&mut s, &method, &path, &headers) {
        return resp;
    }
    match s.jwks.get(&id) {
        Some(jwks) => Json(jwks.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn post_jwks(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = format!("/clients/{id}/jwks");
    if let Err(resp) = enter(&mut s, &method, &path, &headers) {
        return resp;
    }
    let keys = body["keys"].as_array().cloned().unwrap_or_default();
    if keys.len() > 5 || keys.iter().any(|k| k["use"] != "sig") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_description": "bad jwks"})),
        )
            .into_response();
    }
    let stored: Vec<Value> = keys
        .into_iter()
        .map(|mut k| {
            k["exp"] = json!(2_000_000_000i64);
            k
        })
        .collect();
    let jwks = json!({"keys": stored, "created": "2025-01-01T00:00:00Z", "last_updated": "2025-01-01T00:00:00Z"});
    s.jwks.insert(id, jwks.clone());
    (StatusCode::CREATED, Json(jwks)).into_response()
}

fn maskinporten_client(name: &str) -> ClientRegistration {
    ClientRegistration {
        access_token_lifetime: 3600,
        authorization_lifetime: 7200,
        client_name: "NAV".into(),
        description: format!("test-cluster:team:{name}"),
        grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer".into()],
        integration_type: IntegrationType::Maskinporten,
        scopes: vec!["nav:test/api".into()],
        ..Default::default()
    }
}

fn client(stub: &Stub, dir: &std::path::Path) -> (DigdirClient, Clock) {
    let clock = Clock::system();
    let client =
        DigdirClient::new(&stub.config(), admin_signer(dir), clock.clone()).expect("client");
    (client, clock)
}

#[tokio::test]
async fn grant_has_the_documented_claims_and_the_token_is_cached() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (digdir, clock) = client(&stub, dir.path());

    for _ in 0..3 {
        digdir.list_clients(false).await.expect("list");
    }
    // Concurrent callers share one token too.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let d = digdir.clone();
            tokio::spawn(async move { d.list_clients(false).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().expect("list");
    }
    assert_eq!(stub.grants(), 1, "one grant for eight calls");
    assert_eq!(digdir.stats().token_grants, 1);
    assert_eq!(digdir.stats().gets, 8);

    let (header, claims) = stub.state.lock().unwrap().grants[0].clone();
    assert_eq!(header["alg"], "RS256");
    assert!(header["x5c"].as_array().is_some_and(|a| a.len() == 1));
    assert!(
        header.get("kid").is_none_or(Value::is_null),
        "x5c, not kid: {header}"
    );
    assert_eq!(
        claims["aud"],
        format!("{}/", stub.url()),
        "aud = issuer exactly"
    );
    assert_eq!(claims["iss"], ADMIN_CLIENT_ID);
    assert_eq!(
        claims["scope"],
        "idporten:dcr.write idporten:dcr.read idporten:scopes.write"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 120, "lifetime {}", exp - iat);
    assert!((iat - jiff::Timestamp::now().as_second()).abs() <= 5);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());

    // Shortly before the token expires (120 s, 30 s margin), a new grant with a new jti is made.
    clock.advance(Duration::from_secs(100));
    digdir.list_clients(false).await.expect("list");
    assert_eq!(stub.grants(), 2);
    let s = stub.state.lock().unwrap();
    assert_ne!(s.grants[0].1["jti"], s.grants[1].1["jti"]);
    assert!(
        s.grants[1].1["iat"].as_i64().unwrap() >= iat + 100,
        "iat follows the clock"
    );
}

#[tokio::test]
async fn grant_with_kid_and_oauth_errors_are_typed() {
    let stub = Stub::start().await;
    stub.state.lock().unwrap().allowed_scopes = Some(vec!["idporten:dcr.read".into()]);
    let clock = Clock::system();
    let signer = Arc::new(FileSigner::from_jwk(admin_key()).expect("signer"));
    assert_eq!(
        signer.key_reference(),
        KeyReference::Kid(admin_key().kid.clone())
    );
    let digdir = DigdirClient::new(&stub.config(), signer, clock).expect("client");
    let err = digdir
        .list_clients(false)
        .await
        .expect_err("no x5c → rejected");
    match &err {
        DigdirError::Auth(AuthError::OAuth { status, error, .. }) => {
            assert_eq!((*status, error.as_str()), (400, "invalid_grant"));
        }
        other => panic!("expected an OAuth error, got {other:?}"),
    }
    // The kid was in the header (this stub wants x5c), and a 400 is not retried.
    let rejected = stub.state.lock().unwrap().rejected_headers.clone();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["kid"], admin_key().kid.as_str());
    assert!(rejected[0]["x5c"].is_null());

    // A scope the admin client lacks fails the grant, with Maskinporten's description.
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());
    let err = digdir.list_clients(false).await.expect_err("scope");
    let DigdirError::Auth(AuthError::OAuth {
        error,
        error_description,
        ..
    }) = &err
    else {
        panic!("expected an OAuth error, got {err:?}");
    };
    assert_eq!(error, "invalid_scope");
    assert!(
        error_description
            .as_deref()
            .unwrap()
            .contains("idporten:dcr.write")
    );
    assert!(err.to_string().contains("invalid_scope"));
    assert_eq!(stub.grants(), 1, "no retry on an OAuth 400");
    assert!(stub.journal("GET", "/clients").is_empty());
}

#[tokio::test]
async fn token_endpoint_5xx_is_retried() {
    let stub = Stub::start().await;
    stub.state
        .lock()
        .unwrap()
        .token_faults
        .extend([reject(503), reject(500)]);
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());
    digdir
        .list_clients(false)
        .await
        .expect("list after retries");
    assert_eq!(stub.grants(), 1);
    assert_eq!(digdir.stats().token_grants, 3);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let stub = Stub::start().await;
    stub.fault("GET", "/clients", reject(500));
    stub.fault("GET", "/clients", reject(502));
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());
    digdir.list_clients(false).await.expect("third try works");
    assert_eq!(stub.journal("GET", "/clients").len(), 3);
    assert_eq!(digdir.stats().retries, 2);

    // Attempts are capped: four 500s in a row with max_attempts = 4 give the last error.
    for _ in 0..4 {
        stub.fault("GET", "/clients", reject(500));
    }
    let err = digdir.list_clients(false).await.expect_err("gives up");
    assert_eq!(err.status(), Some(500));
    assert_eq!(stub.journal("GET", "/clients").len(), 7);
}

#[tokio::test]
async fn retry_after_is_respected() {
    let stub = Stub::start().await;
    stub.fault(
        "GET",
        "/clients",
        Fault::Reject {
            status: 429,
            body: String::new(),
            headers: vec![("retry-after", "1".into())],
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());
    digdir.list_clients(false).await.expect("after waiting");
    let times = stub.journal("GET", "/clients");
    assert_eq!(times.len(), 2);
    let waited = times[1] - times[0];
    // The policy's own backoff is ≤ 10 ms: only Retry-After explains a one-second wait.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");

    // An HTTP-date Retry-After in the past means "now".
    stub.fault(
        "GET",
        "/clients",
        Fault::Reject {
            status: 503,
            body: String::new(),
            headers: vec![("retry-after", "Thu, 01 Jan 1970 00:00:01 GMT".into())],
        },
    );
    digdir.list_clients(false).await.expect("after date");

    // A Retry-After beyond the policy's cap (5 s in tests) is returned to the caller to requeue.
    stub.fault(
        "GET",
        "/clients",
        Fault::Reject {
            status: 429,
            body: String::new(),
            headers: vec![("retry-after", "3600".into())],
        },
    );
    let started = Instant::now();
    let err = digdir
        .list_clients(false)
        .await
        .expect_err("too long to wait");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_digdirs_message() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());

    let mut reg = maskinporten_client("bad");
    reg.redirect_uris = Some(vec!["ftp://example".into()]);
    let err = digdir.create_client(&reg).await.expect_err("rejected");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.correlation_id(), Some("corr-400"));
    assert_eq!(err.message(), "redirect_uris: ftp is not an allowed scheme");
    assert!(err.to_string().contains("corr-400"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(stub.journal("POST", "/clients").len(), 1, "no retry on 400");
    assert!(
        stub.journal("GET", "/clients").is_empty(),
        "no lookup on 400"
    );

    // The correlation id from the header when the body has none; 403 and 409 are not retried either.
    stub.fault(
        "GET",
        "/clients",
        Fault::Reject {
            status: 403,
            body: "Forbidden".into(),
            headers: vec![("x-correlation-id", "hdr-1".into())],
        },
    );
    let err = digdir.list_clients(false).await.expect_err("403");
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.correlation_id(), Some("hdr-1"));
    assert_eq!(err.message(), "Forbidden");
    assert_eq!(stub.journal("GET", "/clients").len(), 1);
}

#[tokio::test]
async fn create_after_500_finds_the_client_instead_of_duplicating() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());

    stub.fault("POST", "/clients", Fault::ProcessThen500);
    let created = digdir
        .create_client(&maskinporten_client("app-a"))
        .await
        .expect("found after 500");
    assert_eq!(created.client_id.as_deref(), Some("client-1"));
    assert_eq!(stub.clients().len(), 1, "no duplicate");
    assert_eq!(stub.journal("POST", "/clients").len(), 1);
    assert_eq!(stub.journal("GET", "/clients").len(), 1, "one lookup");
    assert_eq!(digdir.stats().create_lookups, 1);

    // A 500 before anything happened: the lookup finds nothing, the POST is repeated, one client.
    stub.fault("POST", "/clients", reject(500));
    let created = digdir
        .create_client(&maskinporten_client("app-b"))
        .await
        .expect("second try");
    assert_eq!(created.description, "test-cluster:team:app-b");
    assert_eq!(stub.clients().len(), 2);
    assert_eq!(stub.journal("POST", "/clients").len(), 3);

    // Same description but another integration type is not a match.
    let found = digdir
        .find_client("test-cluster:team:app-a", &IntegrationType::Idporten)
        .await
        .expect("list");
    assert!(found.is_none());
}

/// A create that timed out may still land (the request can be under way): the client never posts
/// it again, and says so (the controller waits before it looks again; Safety issue).
#[tokio::test]
async fn a_create_that_timed_out_is_not_posted_again_by_the_client() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = stub.config();
    config.request_timeout = Duration::from_millis(300);
    let digdir =
        DigdirClient::new(&config, admin_signer(dir.path()), Clock::system()).expect("client");

    stub.fault(
        "POST",
        "/clients",
        Fault::ProcessThenHang(Duration::from_secs(3)),
    );
    let err = digdir
        .create_client(&maskinporten_client("slow"))
        .await
        .expect_err("timed out");
    assert!(
        matches!(err, DigdirError::Transport { timeout: true, .. }) && err.may_land_later(),
        "{err}"
    );
    assert_eq!(stub.clients().len(), 1, "no duplicate");
    assert_eq!(stub.journal("POST", "/clients").len(), 1);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.base_url = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let digdir =
        DigdirClient::new(&config, admin_signer(dir.path()), Clock::system()).expect("client");
    let err = digdir
        .create_client(&maskinporten_client("x"))
        .await
        .expect_err("nobody there");
    assert!(
        matches!(err, DigdirError::Transport { connect: true, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let stats = digdir.stats();
    assert_eq!(stats.posts, 4, "all attempts used");
    assert_eq!(
        stats.create_lookups, 0,
        "a refused connection needs no lookup"
    );
}

#[tokio::test]
async fn expired_token_answered_401_is_renewed_once() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());
    digdir.list_clients(false).await.expect("list");
    // The server forgets the token (e.g. revoked): one 401, a new grant, success.
    stub.state
        .lock()
        .unwrap()
        .issued
        .push("something-else".into());
    digdir
        .list_clients(false)
        .await
        .expect("list after re-grant");
    assert_eq!(stub.grants(), 2);
}

#[tokio::test]
async fn client_crud_and_jwks() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (digdir, _) = client(&stub, dir.path());

    let created = digdir
        .create_client(&maskinporten_client("app"))
        .await
        .expect("create");
    let id = created.client_id.clone().expect("id");
    let sent = &stub.clients()[0];
    assert!(sent["redirect_uris"].is_null() && sent["post_logout_redirect_uris"].is_null());
    assert_eq!(sent["integration_type"], "maskinporten");

    let mut changed = created.clone();
    changed.scopes.push("nav:test/other".into());
    let updated = digdir.update_client(&id, &changed).await.expect("update");
    assert_eq!(updated.scopes.len(), 2);
    assert_eq!(digdir.get_client(&id).await.expect("get").scopes.len(), 2);

    // No JWKS yet: 404 → None.
    assert!(digdir.get_jwks(&id).await.expect("get jwks").is_none());

    let k1 = admin_key().public();
    let k2 = keys::generate_key().expect("key").public();
    let response = digdir
        .register_jwks(&id, &[Jwk::from(&k1), Jwk::from(&k2)])
        .await
        .expect("post jwks");
    assert_eq!(
        response
            .keys
            .iter()
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>(),
        [k1.kid.as_str(), k2.kid.as_str()]
    );
    assert!(response.keys.iter().all(|k| k.exp == Some(2_000_000_000)));
    // The keys went out as public JWKs with use/kty/kid/alg/n/e, nothing private.
    let stored = stub.state.lock().unwrap().jwks[&id].clone();
    let first = stored["keys"][0].as_object().unwrap();
    let mut fields: Vec<_> = first.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["alg", "e", "exp", "kid", "kty", "n", "use"]);
    assert_eq!(first["use"], "sig");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(first["e"].as_str().unwrap())
            .unwrap(),
        [1, 0, 1]
    );
    let got = digdir.get_jwks(&id).await.expect("get").expect("some");
    assert_eq!(got.keys.len(), 2);

    // Too many keys: Digdir's 400, not retried.
    let six: Vec<Jwk> = (0..6).map(|_| Jwk::from(&k1)).collect();
    let err = digdir.register_jwks(&id, &six).await.expect_err("6 keys");
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        stub.journal("POST", &format!("/clients/{id}/jwks")).len(),
        2
    );

    digdir.delete_client(&id).await.expect("delete");
    assert_eq!(stub.clients()[0]["active"], false);
    digdir
        .delete_client("unknown")
        .await
        .expect("404 counts as deleted");
    assert!(
        digdir
            .find_client("test-cluster:team:app", &IntegrationType::Maskinporten)
            .await
            .expect("list")
            .is_none(),
        "an inactive client is not adopted"
    );
    assert_eq!(digdir.stats().token_grants, 1);
}

/// Digdir's documentation shows `/delegationsources` on the API host, digdirator reads it under
/// `/api/v1`: against a server with only the documented path, the client falls back to it, and
/// neither request carries a token.
#[tokio::test]
async fn delegation_sources_fall_back_to_the_documented_path_without_a_token() {
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/delegationsources",
            get(|| async {
                Json(json!([{"name": "altinn", "issuer": "https://tt02.altinn.no/",
                              "created": "2020-01-01T00:00:00Z", "lastUpdated": "2021-01-01T00:00:00Z"}]))
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let record = record.clone();
                async move {
                    let auth = req.headers().contains_key(http::header::AUTHORIZATION);
                    record.lock().unwrap().push((req.uri().path().to_string(), auth));
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = DigdirConfig::preset(DigdirEnvironment::Test, ADMIN_CLIENT_ID);
    config.base_url = format!("http://{addr}");
    // Nothing answers here: a token request would fail the test.
    config.maskinporten_well_known_url = format!("http://{addr}/no-metadata");
    config.retry = RetryPolicy::fast(2);
    let client =
        DigdirClient::new(&config, admin_signer(dir.path()), Clock::system()).expect("client");
    let sources = client.delegation_sources().await.expect("sources");
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].issuer, "https://tt02.altinn.no/");
    assert_eq!(
        sources[0].last_updated.as_deref(),
        Some("2021-01-01T00:00:00Z")
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("/api/v1/delegationsources".to_string(), false),
            ("/delegationsources".to_string(), false),
        ]
    );
    assert_eq!(client.stats().token_grants, 0);
}
