//! The Entra simulator (Microsoft Graph v1.0 and the tenant's token endpoint), served on
//! 127.0.0.1:0 and driven over HTTP like the real services: each documented rule it enforces.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use portvakt::clock::Clock;
use portvakt_sim::ServeHandle;
use portvakt_sim::graph::{
    ACCESS_AS_APPLICATION_ID, CLIENT_ASSERTION_TYPE, EntraUrls, FaultRule, GraphSeed, GraphSim,
    IdentifierUriPolicy, RsaKey, TestCertificate,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const OTHER_APP: &str = "atgcp1-dev:other-namespace:other-app";
const EXAMPLE_GROUPS: [&str; 2] = [
    "2720e397-081d-4d9b-852e-0d81f45a304f",
    "c3c94454-aefc-44f9-9076-58ea47547941",
];

struct Env {
    sim: GraphSim,
    handle: ServeHandle,
    urls: EntraUrls,
    clock: Clock,
    http: reqwest::Client,
    token: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn start() -> Env {
    start_with(GraphSeed::default()).await
}

async fn start_with(seed: GraphSeed) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = Clock::system();
    let sim = GraphSim::new(clock.clone(), seed);
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let urls = sim.urls(&handle.url());
    let token = sim.operator_graph_token().expect("operator token");
    Env {
        sim,
        handle,
        urls,
        clock,
        http: reqwest::Client::new(),
        token,
    }
}

impl Env {
    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.urls.graph_api)
        };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call_with(reqwest::Method::GET, path, None, &[]).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call_with(reqwest::Method::POST, path, Some(&body), &[])
            .await
    }
    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call_with(reqwest::Method::PATCH, path, Some(&body), &[])
            .await
    }
    async fn delete(&self, path: &str) -> Answer {
        self.call_with(reqwest::Method::DELETE, path, None, &[])
            .await
    }

    async fn create_app(&self, body: Value) -> Value {
        let a = self.post("/applications", body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    /// A v2-token app with a service principal.
    async fn create_app_with_sp(&self, name: &str, required: bool) -> (Value, Value) {
        let app = self
            .create_app(json!({"displayName": name, "api": {"requestedAccessTokenVersion": 2}}))
            .await;
        let sp = self
            .post(
                "/servicePrincipals",
                json!({"appId": app["appId"], "appRoleAssignmentRequired": required}),
            )
            .await;
        assert_eq!(sp.status, StatusCode::CREATED, "{}", sp.body);
        (app, sp.body)
    }

    async fn add_password(&self, object_id: &str) -> Value {
        let a = self
            .post(
                &format!("/applications/{object_id}/addPassword"),
                json!({"passwordCredential": {"displayName": "test"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(&self.urls.token_endpoint)
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = r.status();
        (status, r.json().await.expect("JSON"))
    }

    async fn secret_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        self.token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .await
    }

    async fn assertion_token(
        &self,
        client_id: &str,
        assertion: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        self.token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .await
    }

    fn assertion_claims(&self, client_id: &str, aud: &str) -> Value {
        let now = self.clock.unix_seconds();
        json!({"aud": aud, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(),
               "nbf": now, "iat": now, "exp": now + 300})
    }
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn sign(key: &RsaKey, alg: Algorithm, thumb: (&str, String), claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("JWT".into());
    match thumb.0 {
        "x5t" => header.x5t = Some(thumb.1),
        _ => header.x5t_s256 = Some(thumb.1),
    }
    key.sign_with_header(&header, claims).expect("sign")
}

#[tokio::test]
async fn the_default_seed_holds_the_examples_groups_and_the_other_clusters_app() {
    let env = start().await;
    for id in EXAMPLE_GROUPS {
        let g = env.get(&format!("/groups/{id}")).await;
        assert_eq!(g.status, StatusCode::OK, "{}", g.body);
        assert_eq!(g.body["id"], id);
        assert!(
            g.body["displayName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        );
    }
    let found = env
        .get(&format!(
            "/applications?$filter=displayName eq '{OTHER_APP}'"
        ))
        .await;
    assert_eq!(found.status, StatusCode::OK);
    let apps = found.body["value"].as_array().expect("value").clone();
    assert_eq!(apps.len(), 1, "{}", found.body);
    assert_eq!(
        apps[0]["uniqueName"],
        Value::Null,
        "azurerator's apps have no uniqueName"
    );
    let app_id = apps[0]["appId"].as_str().expect("appId");
    let sp = env
        .get(&format!("/servicePrincipals?$filter=appId eq '{app_id}'"))
        .await;
    assert_eq!(sp.body["value"].as_array().map(Vec::len), Some(1));
    let roles: Vec<&str> = apps[0]["appRoles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert!(roles.contains(&"access_as_application"), "{roles:?}");
    assert!(
        apps[0]["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == ACCESS_AS_APPLICATION_ID),
        "azurerator's fixed id"
    );

    // A seed file changes only what it names.
    let seed = GraphSeed::from_json(
        r#"{"groups": [{"id": "0b3c9d1e-2f4a-4b5c-8d6e-7f8091a2b3c4", "displayName": "only"}]}"#,
    )
    .expect("seed");
    let env = start_with(seed).await;
    assert_eq!(env.sim.groups().len(), 1);
    assert_eq!(env.sim.apps_named(OTHER_APP).len(), 1);
    let missing = env.get(&format!("/groups/{}", EXAMPLE_GROUPS[0])).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&missing.body), "Request_ResourceNotFound");
}

#[tokio::test]
async fn patch_replaces_collections_and_merges_complex_properties() {
    let env = start().await;
    let app = env
        .create_app(json!({
            "displayName": "c:ns:patch",
            "tags": ["a", "b"],
            "api": {"requestedAccessTokenVersion": 2},
            "web": {"redirectUris": ["https://one.example/cb", "https://two.example/cb"], "logoutUrl": "https://one.example/logout"},
        }))
        .await;
    assert_eq!(
        app["identifierUris"],
        json!([]),
        "a new app has no identifier URIs"
    );
    let id = app["id"].as_str().unwrap();
    let p = env
        .patch(
            &format!("/applications/{id}"),
            json!({"tags": ["c"], "web": {"redirectUris": ["https://three.example/cb"]}, "api": {"preAuthorizedApplications": []}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.body);
    assert_eq!(p.body, Value::Null, "PATCH answers 204 without a body");
    let now = env.get(&format!("/applications/{id}")).await.body;
    assert_eq!(now["tags"], json!(["c"]), "a collection is replaced");
    assert_eq!(
        now["web"]["redirectUris"],
        json!(["https://three.example/cb"])
    );
    assert_eq!(
        now["web"]["logoutUrl"], "https://one.example/logout",
        "properties of a complex property that the PATCH does not name stay"
    );
    assert_eq!(now["api"]["requestedAccessTokenVersion"], 2);
    assert_eq!(now["displayName"], "c:ns:patch", "properties left out stay");

    let cleared = env
        .patch(&format!("/applications/{id}"), json!({"tags": []}))
        .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    assert_eq!(env.sim.app(id).unwrap()["tags"], json!([]), "[] clears");

    for (body, target) in [
        (json!({"tags": null}), "tags"),
        (json!({"noSuchProperty": 1}), "noSuchProperty"),
        (json!({"web": {"noSuch": 1}}), "web.noSuch"),
        (json!({"appId": "x"}), "appId"),
        (json!({"passwordCredentials": []}), "passwordCredentials"),
    ] {
        let r = env
            .patch(&format!("/applications/{id}"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"][0]["target"], target,
            "{}",
            r.body
        );
    }
}

fn scope(id: &str, value: &str, enabled: bool) -> Value {
    json!({"id": id, "value": value, "type": "Admin", "isEnabled": enabled,
           "adminConsentDisplayName": value, "adminConsentDescription": value})
}

fn role(id: &str, value: &str, enabled: bool) -> Value {
    json!({"id": id, "value": value, "displayName": value, "description": value,
           "allowedMemberTypes": ["Application"], "isEnabled": enabled})
}

#[tokio::test]
async fn scopes_and_roles_are_disabled_before_they_are_removed() {
    let env = start().await;
    let keep = "1b4f8c3e-0000-4000-8000-000000000001";
    let gone = "1b4f8c3e-0000-4000-8000-000000000002";
    let app = env
        .create_app(json!({
            "displayName": "c:ns:perms",
            "api": {"oauth2PermissionScopes": [scope(keep, "keep", true), scope(gone, "gone", true)]},
            "appRoles": [role(keep, "keep", true), role(gone, "gone", true)],
        }))
        .await;
    let path = format!("/applications/{}", app["id"].as_str().unwrap());

    let removed = env
        .patch(
            &path,
            json!({"api": {"oauth2PermissionScopes": [scope(keep, "keep", true)]}}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        removed.body["error"]["details"][0]["code"],
        "CannotDeleteOrUpdateEnabledEntitlement"
    );
    let removed = env
        .patch(&path, json!({"appRoles": [role(keep, "keep", true)]}))
        .await;
    assert_eq!(removed.status, StatusCode::BAD_REQUEST);

    let disabled = env
        .patch(
            &path,
            json!({"api": {"oauth2PermissionScopes": [scope(keep, "keep", true), scope(gone, "gone", false)]},
                   "appRoles": [role(keep, "keep", true), role(gone, "gone", false)]}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.body);
    let then_removed = env
        .patch(
            &path,
            json!({"api": {"oauth2PermissionScopes": [scope(keep, "keep", true)]}, "appRoles": [role(keep, "keep", true)]}),
        )
        .await;
    assert_eq!(
        then_removed.status,
        StatusCode::NO_CONTENT,
        "{}",
        then_removed.body
    );
    let now = env.get(&path).await.body;
    assert_eq!(now["appRoles"].as_array().unwrap().len(), 1);
    assert_eq!(
        now["api"]["oauth2PermissionScopes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A new permission must be created enabled.
    let fresh = "1b4f8c3e-0000-4000-8000-000000000003";
    let r = env
        .patch(
            &path,
            json!({"appRoles": [role(keep, "keep", true), role(fresh, "fresh", false)]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // A scope that a pre-authorized app still refers to cannot be removed, even disabled.
    let client = "3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f";
    let pre = env
        .patch(
            &path,
            json!({"api": {"oauth2PermissionScopes": [scope(keep, "keep", false)],
                           "preAuthorizedApplications": [{"appId": client, "delegatedPermissionIds": [keep]}]}}),
        )
        .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT, "{}", pre.body);
    let stuck = env
        .patch(&path, json!({"api": {"oauth2PermissionScopes": []}}))
        .await;
    assert_eq!(stuck.status, StatusCode::BAD_REQUEST);
    assert!(
        stuck.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pre-authorization"),
        "{}",
        stuck.body
    );
    let both = env
        .patch(
            &path,
            json!({"api": {"oauth2PermissionScopes": [], "preAuthorizedApplications": []}}),
        )
        .await;
    assert_eq!(both.status, StatusCode::NO_CONTENT, "{}", both.body);
}

#[tokio::test]
async fn a_password_is_shown_once_and_removed_by_key_id() {
    let env = start().await;
    let (app, _sp) = env.create_app_with_sp("c:ns:secret", false).await;
    let id = app["id"].as_str().unwrap();
    let app_id = app["appId"].as_str().unwrap();
    let added = env.add_password(id).await;
    let secret = added["secretText"]
        .as_str()
        .expect("secretText")
        .to_string();
    assert!((16..=64).contains(&secret.len()), "{secret}");
    assert_eq!(added["hint"], secret[..3]);
    let start: jiff::Timestamp = added["startDateTime"].as_str().unwrap().parse().unwrap();
    let end: jiff::Timestamp = added["endDateTime"].as_str().unwrap().parse().unwrap();
    assert!(
        end.duration_since(start).as_hours() >= 2 * 365 * 24 - 1,
        "defaults to two years"
    );

    let read = env.get(&format!("/applications/{id}")).await.body;
    let creds = read["passwordCredentials"].as_array().unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["secretText"], Value::Null, "never readable again");
    assert_eq!(creds[0]["hint"], secret[..3]);
    assert!(!read.to_string().contains(&secret));

    let (status, token) = env
        .secret_token(app_id, &secret, &format!("{app_id}/.default"))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");

    let unknown = env
        .post(
            &format!("/applications/{id}/removePassword"),
            json!({"keyId": "0d5c2e1f-3a4b-4c5d-8e6f-708192a3b4c5"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let removed = env
        .post(
            &format!("/applications/{id}/removePassword"),
            json!({"keyId": added["keyId"]}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_eq!(env.sim.app(id).unwrap()["passwordCredentials"], json!([]));
    let (status, err) = env
        .secret_token(app_id, &secret, &format!("{app_id}/.default"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error_codes"], json!([7000215]), "{err}");

    let set = env
        .post(
            "/applications",
            json!({"displayName": "c:ns:nope", "passwordCredentials": [{"displayName": "x"}]}),
        )
        .await;
    assert_eq!(
        set.status,
        StatusCode::BAD_REQUEST,
        "passwords are not set by POST"
    );
}

fn key_credential(cert: &TestCertificate, key_id: &str) -> Value {
    json!({"keyId": key_id, "type": "AsymmetricX509Cert", "usage": "Verify",
           "key": cert.key_credential_value(), "displayName": key_id})
}

#[tokio::test]
async fn key_credentials_are_replaced_as_a_set() {
    let env = start().await;
    let app = env.create_app(json!({"displayName": "c:ns:keys"})).await;
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let a = TestCertificate::generate("a", 300).unwrap();
    let b = TestCertificate::generate("b", 300).unwrap();
    let (ka, kb) = (
        "5a1b2c3d-0000-4000-8000-00000000000a",
        "5a1b2c3d-0000-4000-8000-00000000000b",
    );
    let r = env
        .patch(
            &path,
            json!({"keyCredentials": [key_credential(&a, ka), key_credential(&b, kb)]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let listed = env.get(&path).await.body;
    assert_eq!(listed["keyCredentials"].as_array().unwrap().len(), 2);
    assert_eq!(
        listed["keyCredentials"][0]["key"],
        Value::Null,
        "the certificate is not returned unless selected"
    );
    let selected = env
        .get(&format!("{path}?$select=keyCredentials"))
        .await
        .body;
    assert_eq!(
        selected["keyCredentials"][0]["key"],
        a.key_credential_value()
    );
    assert!(
        selected.get("displayName").is_none(),
        "$select keeps only what it names"
    );

    let r = env
        .patch(&path, json!({"keyCredentials": [key_credential(&b, kb)]}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let ids: Vec<Value> = env.get(&path).await.body["keyCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyId"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(kb)],
        "the certificate not sent again is gone"
    );

    let mut echoed = listed["keyCredentials"][1].clone();
    echoed["key"] = Value::Null;
    let r = env.patch(&path, json!({"keyCredentials": [echoed]})).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "an entry without its certificate is refused"
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key is required")
    );

    let r = env
        .patch(
            &path,
            json!({"keyCredentials": [key_credential(&a, ka), key_credential(&a, kb)]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "the same certificate twice"
    );
    let mut long = key_credential(&a, ka);
    long["startDateTime"] = json!("2030-01-01T00:00:00Z");
    long["endDateTime"] = json!("2031-06-01T00:00:00Z");
    let r = env.patch(&path, json!({"keyCredentials": [long]})).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "more than a year: {}",
        r.body
    );
    let r = env.patch(&path, json!({"keyCredentials": []})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        env.sim.app(app["id"].as_str().unwrap()).unwrap()["keyCredentials"],
        json!([])
    );
}

#[tokio::test]
async fn the_token_endpoint_takes_secrets_and_certificate_assertions() {
    let env = start().await;
    let op = env.sim.operator();
    let graph = "https://graph.microsoft.com/.default";

    let (status, body) = env
        .secret_token(&op.client_id, &op.client_secret, graph)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_u64(),
        "expires_in is an integer: {body}"
    );
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["appid"], op.client_id);
    assert_eq!(claims["appidacr"], "1");
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("Application.ReadWrite.All")),
        "{claims}"
    );

    let cert = TestCertificate::generate("operator", 300).unwrap();
    env.sim
        .add_certificate(&op.client_id, &cert.cert_der)
        .unwrap();
    let aud = env.urls.token_endpoint.clone();
    let rs256 = sign(
        &cert.key,
        Algorithm::RS256,
        ("x5t", cert.x5t()),
        &env.assertion_claims(&op.client_id, &aud),
    );
    let (status, body) = env.assertion_token(&op.client_id, &rs256, graph).await;
    assert_eq!(status, StatusCode::OK, "RS256 with x5t: {body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["appidacr"],
        "2"
    );

    let ps256 = sign(
        &cert.key,
        Algorithm::PS256,
        ("x5t#S256", cert.x5t_s256()),
        &env.assertion_claims(&op.client_id, &aud),
    );
    let (status, body) = env.assertion_token(&op.client_id, &ps256, graph).await;
    assert_eq!(status, StatusCode::OK, "PS256 with x5t#S256: {body}");

    // The issuer form of the audience, which some clients send, is accepted too.
    let issuer_aud = sign(
        &cert.key,
        Algorithm::RS256,
        ("x5t", cert.x5t()),
        &env.assertion_claims(&op.client_id, &env.urls.issuer),
    );
    let (status, body) = env.assertion_token(&op.client_id, &issuer_aud, graph).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let wrong = sign(
        &cert.key,
        Algorithm::RS256,
        ("x5t", cert.x5t()),
        &env.assertion_claims(
            &op.client_id,
            "https://login.microsoftonline.com/another-tenant/oauth2/v2.0/token",
        ),
    );
    let (status, body) = env.assertion_token(&op.client_id, &wrong, graph).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong audience: {body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("audience")
    );

    let stranger = TestCertificate::generate("stranger", 300).unwrap();
    let unknown = sign(
        &stranger.key,
        Algorithm::RS256,
        ("x5t", stranger.x5t()),
        &env.assertion_claims(&op.client_id, &aud),
    );
    let (status, body) = env.assertion_token(&op.client_id, &unknown, graph).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error_codes"],
        json!([700027]),
        "unknown thumbprint: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not registered")
    );

    // The right thumbprint on a signature from another key.
    let forged = sign(
        &stranger.key,
        Algorithm::RS256,
        ("x5t", cert.x5t()),
        &env.assertion_claims(&op.client_id, &aud),
    );
    let (status, body) = env.assertion_token(&op.client_id, &forged, graph).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    let mut stale = env.assertion_claims(&op.client_id, &aud);
    stale["exp"] = json!(env.clock.unix_seconds() - 3600);
    let expired = sign(&cert.key, Algorithm::RS256, ("x5t", cert.x5t()), &stale);
    let (_, body) = env.assertion_token(&op.client_id, &expired, graph).await;
    assert_eq!(body["error_codes"], json!([700024]), "{body}");

    let (status, body) = env
        .secret_token(
            &op.client_id,
            &op.client_secret,
            "https://graph.microsoft.com/User.Read",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"], "invalid_scope",
        "client credentials need /.default"
    );
    let r = env
        .http
        .post(
            env.urls
                .token_endpoint
                .replace(&op.tenant_id, "no-such-tenant.example"),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_codes"],
        json!([90002])
    );

    let oidc: Value = env
        .http
        .get(&env.urls.well_known_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["token_endpoint"], env.urls.token_endpoint);
    assert_eq!(oidc["issuer"], env.urls.issuer);
    let jwks: Value = env
        .http
        .get(oidc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let token = env.token.clone();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some(kid)
    );
}

#[tokio::test]
async fn a_token_for_another_app_needs_an_assignment_when_required_and_carries_its_roles() {
    let env = start().await;
    let (client, client_sp) = env.create_app_with_sp("c:ns:client", false).await;
    let client_id = client["appId"].as_str().unwrap();
    let secret = env.add_password(client["id"].as_str().unwrap()).await["secretText"]
        .as_str()
        .unwrap()
        .to_string();
    let api_role = "7c1d2e3f-0000-4000-8000-0000000000a1";
    let (resource, resource_sp) = env.create_app_with_sp("c:ns:api", true).await;
    let rpath = format!("/applications/{}", resource["id"].as_str().unwrap());
    let resource_id = resource["appId"].as_str().unwrap();
    let r = env
        .patch(
            &rpath,
            json!({"identifierUris": [format!("api://{resource_id}")],
                   "appRoles": [role(api_role, "access_as_application", true)],
                   "api": {"oauth2PermissionScopes": [scope(api_role, "access_as_application", true)]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let scope_for = format!("api://{resource_id}/.default");

    let (status, body) = env.secret_token(client_id, &secret, &scope_for).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_codes"], json!([501051]), "not assigned: {body}");

    // Pre-authorization is for delegated flows; it does not stand in for an assignment.
    let pre = env
        .patch(
            &rpath,
            json!({"api": {"preAuthorizedApplications": [{"appId": client_id, "delegatedPermissionIds": [api_role]}]}}),
        )
        .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT, "{}", pre.body);
    let (_, body) = env.secret_token(client_id, &secret, &scope_for).await;
    assert_eq!(body["error_codes"], json!([501051]), "{body}");

    let assign = env
        .post(
            &format!("/servicePrincipals/{}/appRoleAssignedTo", resource_sp["id"].as_str().unwrap()),
            json!({"principalId": client_sp["id"], "resourceId": resource_sp["id"], "appRoleId": api_role}),
        )
        .await;
    assert_eq!(assign.status, StatusCode::CREATED, "{}", assign.body);
    let (status, body) = env.secret_token(client_id, &secret, &scope_for).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"], resource_id,
        "a v2 token's audience is the appId"
    );
    assert_eq!(claims["azp"], client_id);
    assert_eq!(claims["roles"], json!(["access_as_application"]));
    assert_eq!(claims["iss"], env.urls.issuer);

    // A resource that does not require assignment issues a token without roles.
    let (open, _) = env.create_app_with_sp("c:ns:open", false).await;
    let (status, body) = env
        .secret_token(
            client_id,
            &secret,
            &format!("{}/.default", open["appId"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        claims_of(body["access_token"].as_str().unwrap())
            .get("roles")
            .is_none()
    );

    // A resource without a service principal is not found.
    let bare = env.create_app(json!({"displayName": "c:ns:bare"})).await;
    let (_, body) = env
        .secret_token(
            client_id,
            &secret,
            &format!("{}/.default", bare["appId"].as_str().unwrap()),
        )
        .await;
    assert_eq!(body["error_codes"], json!([500011]), "{body}");
}

#[tokio::test]
async fn federated_assertions_match_issuer_subject_and_audience() {
    let env = start().await;
    let op = env.sim.operator();
    let issuer = "https://oidc.cluster.example";
    let key = RsaKey::generate("k8s-key").unwrap();
    env.sim
        .trust_issuer(issuer, &json!({"keys": [key.public_jwk()]}));
    env.sim
        .add_federated_credential(
            &op.client_id,
            "kubernetes",
            issuer,
            "system:serviceaccount:portvakt:portvakt",
            "api://AzureADTokenExchange",
        )
        .unwrap();
    let now = env.clock.unix_seconds();
    let claims = |sub: &str, aud: &str| json!({"iss": issuer, "sub": sub, "aud": [aud], "iat": now, "nbf": now, "exp": now + 600});
    let graph = "https://graph.microsoft.com/.default";
    let good = key
        .sign(&claims(
            "system:serviceaccount:portvakt:portvakt",
            "api://AzureADTokenExchange",
        ))
        .unwrap();
    let (status, body) = env.assertion_token(&op.client_id, &good, graph).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let other_sub = key
        .sign(&claims(
            "system:serviceaccount:x:y",
            "api://AzureADTokenExchange",
        ))
        .unwrap();
    let (_, body) = env.assertion_token(&op.client_id, &other_sub, graph).await;
    assert_eq!(body["error_codes"], json!([700213]), "{body}");
    let other_aud = key
        .sign(&claims(
            "system:serviceaccount:portvakt:portvakt",
            "api://other",
        ))
        .unwrap();
    let (_, body) = env.assertion_token(&op.client_id, &other_aud, graph).await;
    assert_eq!(body["error_codes"], json!([700212]), "{body}");
    let untrusted = RsaKey::generate("k8s-key").unwrap();
    let forged = untrusted
        .sign(&claims(
            "system:serviceaccount:portvakt:portvakt",
            "api://AzureADTokenExchange",
        ))
        .unwrap();
    let (status, body) = env.assertion_token(&op.client_id, &forged, graph).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn new_objects_are_invisible_until_the_clock_passes_the_delay() {
    let env = start().await;
    env.sim.set_eventual_consistency(Duration::from_secs(30));
    let app = env.create_app(json!({"displayName": "c:ns:slow"})).await;
    let id = app["id"].as_str().unwrap();
    let app_id = app["appId"].as_str().unwrap();
    assert_eq!(
        app["displayName"], "c:ns:slow",
        "the create answer is complete"
    );

    let get = env.get(&format!("/applications/{id}")).await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&get.body), "Request_ResourceNotFound");
    let patch = env
        .patch(
            &format!("/applications/{id}"),
            json!({"identifierUris": [format!("api://{app_id}")]}),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let listed = env
        .get("/applications?$filter=displayName eq 'c:ns:slow'")
        .await;
    assert_eq!(listed.body["value"], json!([]));
    let sp = env
        .post("/servicePrincipals", json!({"appId": app_id}))
        .await;
    assert_eq!(sp.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        sp.body["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );

    env.clock.advance(Duration::from_secs(31));
    assert_eq!(
        env.get(&format!("/applications/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/applications?$filter=displayName eq 'c:ns:slow'")
            .await
            .body["value"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let sp = env
        .post("/servicePrincipals", json!({"appId": app_id}))
        .await;
    assert_eq!(sp.status, StatusCode::CREATED, "{}", sp.body);
    let sp_id = sp.body["id"].as_str().unwrap();
    assert_eq!(
        env.get(&format!("/servicePrincipals/{sp_id}")).await.status,
        StatusCode::NOT_FOUND,
        "the new service principal lags too"
    );
    env.clock.advance(Duration::from_secs(31));
    assert_eq!(
        env.get(&format!("/servicePrincipals/{sp_id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn overlapping_writes_to_one_app_conflict_and_to_different_apps_do_not() {
    let env = start().await;
    let one = env.create_app(json!({"displayName": "c:ns:one"})).await;
    let two = env.create_app(json!({"displayName": "c:ns:two"})).await;
    env.sim.set_write_latency(Duration::from_millis(300));
    let p1 = format!("/applications/{}", one["id"].as_str().unwrap());
    let p2 = format!("/applications/{}", two["id"].as_str().unwrap());
    let add = format!("{p1}/addPassword");
    let (a, b) = tokio::join!(
        env.patch(&p1, json!({"tags": ["first"]})),
        env.post(&add, json!({})),
    );
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");
    let conflict = if a.status == StatusCode::CONFLICT {
        a
    } else {
        b
    };
    assert_eq!(error_code(&conflict.body), "Directory_ConcurrencyViolation");
    assert_eq!(env.sim.write_conflicts(), 1);

    let (a, b) = tokio::join!(
        env.patch(&p1, json!({"tags": ["x"]})),
        env.patch(&p2, json!({"tags": ["y"]})),
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT)
    );
    assert!(
        env.sim.peak_concurrent_writes() >= 2,
        "different apps are written at the same time"
    );
    assert_eq!(env.sim.write_conflicts(), 1);
}

#[tokio::test]
async fn rapid_writes_to_one_app_conflict_until_it_has_settled() {
    let env = start().await;
    let app = env.create_app(json!({"displayName": "c:ns:settle"})).await;
    let id = app["id"].as_str().unwrap();
    env.sim.set_write_settle_time(Duration::from_secs(2));
    assert_eq!(
        env.post(&format!("/applications/{id}/addPassword"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let next = env
        .post(&format!("/applications/{id}/addPassword"), json!({}))
        .await;
    assert_eq!(
        next.status,
        StatusCode::CONFLICT,
        "right after the first: {}",
        next.body
    );
    assert_eq!(error_code(&next.body), "Directory_ConcurrencyViolation");
    let other = env.create_app(json!({"displayName": "c:ns:settle2"})).await;
    let p = env
        .patch(
            &format!("/applications/{}", other["id"].as_str().unwrap()),
            json!({"tags": ["x"]}),
        )
        .await;
    assert_eq!(
        p.status,
        StatusCode::NO_CONTENT,
        "another app is not affected"
    );
    env.clock.advance(Duration::from_secs(2));
    assert_eq!(
        env.post(&format!("/applications/{id}/addPassword"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.sim.app(id).unwrap()["passwordCredentials"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn collections_are_paged_with_next_links() {
    let env = start().await;
    for i in 0..5 {
        env.create_app(json!({"displayName": format!("c:paged:{i}")}))
            .await;
    }
    let mut url = format!(
        "{}/applications?$filter=startswith(displayName,'c:paged:')&$top=2",
        env.urls.graph_api
    );
    let mut names = vec![];
    let mut pages = 0;
    loop {
        let page = env.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        for a in page.body["value"].as_array().unwrap() {
            names.push(a["displayName"].as_str().unwrap().to_string());
        }
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&env.urls.graph_api), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..5).map(|i| format!("c:paged:{i}")).collect::<Vec<_>>()
    );

    env.sim.set_page_size(1);
    let first = env.get("/groups").await;
    assert_eq!(first.body["value"].as_array().map(Vec::len), Some(1));
    assert!(
        first.body["@odata.nextLink"].is_string(),
        "the default page size applies"
    );
    let bad = env.get("/applications?$top=1000").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn errors_carry_code_message_and_request_id() {
    let env = start().await;
    let a = env
        .call_with(
            reqwest::Method::GET,
            "/applications/5f0e0000-0000-4000-8000-000000000000",
            None,
            &[("client-request-id", "my-correlation")],
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let error = &a.body["error"];
    assert_eq!(error["code"], "Request_ResourceNotFound");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let request_id = a.headers.get("request-id").unwrap().to_str().unwrap();
    assert_eq!(error["innerError"]["request-id"], request_id);
    assert_eq!(error["innerError"]["client-request-id"], "my-correlation");
    assert!(error["innerError"]["date"].is_string());

    let r = env.get("/noSuchCollection").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["error"]["innerError"]["request-id"].is_string());
    let r = env
        .call_with(reqwest::Method::PUT, "/applications", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.body["error"]["code"].is_string());
    let filter = env.get("/applications?$filter=displayName ne 'x'").await;
    assert_eq!(error_code(&filter.body), "Request_UnsupportedQuery");
}

#[tokio::test]
async fn faults_go_through_the_shared_layer() {
    let env = start().await;
    let app = env.create_app(json!({"displayName": "c:ns:faults"})).await;
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let added = env
        .http
        .post(format!("{}/_sim/faults", env.handle.url()))
        .body("PATCH /v1.0/applications status=409 once\nGET /v1.0/groups throttle=7 once")
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let conflict = env.patch(&path, json!({"tags": ["x"]})).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&conflict.body), "Directory_ConcurrencyViolation");
    assert!(conflict.body["error"]["innerError"]["request-id"].is_string());
    assert_eq!(
        env.sim.app(app["id"].as_str().unwrap()).unwrap()["tags"],
        json!([]),
        "nothing happened"
    );
    let throttled = env.get("/groups").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&throttled.body), "TooManyRequests");
    assert_eq!(throttled.headers.get("retry-after").unwrap(), "7");
    assert_eq!(
        env.get("/groups").await.status,
        StatusCode::OK,
        "once means once"
    );

    let journal: Value = env
        .http
        .get(format!("{}/_sim/journal", env.handle.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let faulted: Vec<&Value> = journal["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["faulted"] == true)
        .collect();
    assert_eq!(faulted.len(), 2, "{journal}");
    assert_eq!(faulted[0]["status"], 409);

    env.sim
        .inject_fault(FaultRule::status(503).path("/").method("POST").once());
    let (status, body) = env
        .secret_token(
            &env.sim.operator().client_id,
            "x",
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["error"], "temporarily_unavailable",
        "the token endpoint's own shape"
    );
}

#[tokio::test]
async fn identifier_uris_are_unique_and_follow_the_tenant_policy() {
    let env = start().await;
    // An app that receives v1 tokens: the default policy wants a tenant identifier.
    let app = env.create_app(json!({"displayName": "c:ns:uris"})).await;
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let app_id = app["appId"].as_str().unwrap();
    let r = env
        .patch(&path, json!({"identifierUris": ["api://c.ns.uris"]}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy"),
        "{}",
        r.body
    );
    let ok = env
        .patch(&path, json!({"identifierUris": [format!("api://{app_id}"), "https://api.portvakt.example/uris"]}))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    // Apps that request v2 tokens are exempt (azurerator's api://cluster.ns.name).
    let v2 = env
        .patch(&path, json!({"api": {"requestedAccessTokenVersion": 2}, "identifierUris": [format!("api://{app_id}"), "api://c.ns.uris"]}))
        .await;
    assert_eq!(v2.status, StatusCode::NO_CONTENT, "{}", v2.body);

    env.sim
        .set_identifier_uri_policy(IdentifierUriPolicy::DefaultOnly);
    let other = env.create_app(json!({"displayName": "c:ns:strict"})).await;
    let opath = format!("/applications/{}", other["id"].as_str().unwrap());
    let oid = other["appId"].as_str().unwrap();
    let r = env
        .patch(
            &opath,
            json!({"identifierUris": [format!("api://{oid}/scope")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = env
        .patch(
            &opath,
            json!({"identifierUris": [format!("api://{}/{oid}", env.sim.tenant_id())]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    env.sim.set_identifier_uri_policy(IdentifierUriPolicy::None);
    let dup = env
        .patch(&opath, json!({"identifierUris": ["api://c.ns.uris"]}))
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(dup.body["error"]["details"][0]["code"], "ObjectConflict");
    for bad in [
        "api://*.example",
        &format!("api://{}", "x".repeat(260)),
        "not a uri",
    ] {
        let r = env.patch(&opath, json!({"identifierUris": [bad]})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn the_upsert_by_unique_name_creates_once_then_updates() {
    let env = start().await;
    let path = "/applications(uniqueName='portvakt-c-ns-up')";
    let body = json!({"displayName": "c:ns:up", "tags": ["one"]});
    let no_prefer = env.patch(path, body.clone()).await;
    assert_eq!(
        no_prefer.status,
        StatusCode::NOT_FOUND,
        "without Prefer it is an update"
    );
    let e = &env;
    let upsert = |body: Value| async move {
        e.call_with(
            reqwest::Method::PATCH,
            path,
            Some(&body),
            &[("Prefer", "create-if-missing")],
        )
        .await
    };
    let created = upsert(body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["uniqueName"], "portvakt-c-ns-up");
    let updated = upsert(json!({"displayName": "c:ns:up", "tags": ["two"]})).await;
    assert_eq!(updated.status, StatusCode::NO_CONTENT);
    let apps = env.sim.apps_named("c:ns:up");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["tags"], json!(["two"]));
    let by_key = env.get(path).await;
    assert_eq!(by_key.body["id"], created.body["id"]);
    let missing_name = env
        .call_with(
            reqwest::Method::PATCH,
            "/applications(uniqueName='other')",
            Some(&json!({"tags": []})),
            &[("Prefer", "create-if-missing")],
        )
        .await;
    assert_eq!(
        missing_name.status,
        StatusCode::BAD_REQUEST,
        "displayName is required to create"
    );
}

#[tokio::test]
async fn graph_refuses_missing_foreign_expired_and_revoked_tokens() {
    let env = start().await;
    let r = env
        .http
        .get(format!("{}/groups", env.urls.graph_api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "InvalidAuthenticationToken"
    );

    // A token for another audience.
    let (client, _) = env.create_app_with_sp("c:ns:tok", false).await;
    let secret = env.add_password(client["id"].as_str().unwrap()).await["secretText"]
        .as_str()
        .unwrap()
        .to_string();
    let app_id = client["appId"].as_str().unwrap();
    let (_, t) = env
        .secret_token(app_id, &secret, &format!("{app_id}/.default"))
        .await;
    let r = env
        .http
        .get(format!("{}/groups", env.urls.graph_api))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    env.sim.revoke_tokens();
    assert_eq!(env.get("/groups").await.status, StatusCode::UNAUTHORIZED);
    let mut env = env;
    env.token = env.sim.operator_graph_token().unwrap();
    assert_eq!(env.get("/groups").await.status, StatusCode::OK);
    env.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        env.get("/groups").await.status,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
}

#[tokio::test]
async fn writes_beyond_the_limit_are_throttled_until_the_window_passes() {
    let env = start().await;
    env.sim.set_write_limit(Some((2, Duration::from_secs(10))));
    env.create_app(json!({"displayName": "c:ns:w1"})).await;
    env.create_app(json!({"displayName": "c:ns:w2"})).await;
    let third = env
        .post("/applications", json!({"displayName": "c:ns:w3"}))
        .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = third.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    assert!(third.headers.contains_key("x-ms-throttle-information"));
    assert_eq!(
        env.get("/groups").await.status,
        StatusCode::OK,
        "reads are not limited"
    );
    env.clock.advance(Duration::from_secs(wait));
    let later = env
        .post("/applications", json!({"displayName": "c:ns:w3"}))
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
}

#[tokio::test]
async fn service_principals_assignments_grants_and_owners_follow_graphs_rules() {
    let env = start().await;
    let (app, sp) = env.create_app_with_sp("c:ns:sp", false).await;
    let sp_id = sp["id"].as_str().unwrap();
    assert_eq!(sp["appId"], app["appId"]);
    assert_eq!(sp["displayName"], "c:ns:sp");
    let dup = env
        .post("/servicePrincipals", json!({"appId": app["appId"]}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(
        error_code(&dup.body),
        "Request_MultipleObjectsWithSameKeyValue"
    );
    let p = env
        .patch(
            &format!("/servicePrincipals/{sp_id}"),
            json!({"tags": ["HideApp"], "appRoleAssignmentRequired": true}),
        )
        .await;
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.body);
    let read = env
        .get(&format!(
            "/servicePrincipals(appId='{}')",
            app["appId"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(read["tags"], json!(["HideApp"]));
    assert_eq!(read["appRoleAssignmentRequired"], true);

    // Groups get the default-access role; a role must allow the member type.
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let app_only = "8d2e3f40-0000-4000-8000-0000000000b1";
    env.patch(
        &path,
        json!({"appRoles": [role(app_only, "app-only", true)]}),
    )
    .await;
    let to = format!("/servicePrincipals/{sp_id}/appRoleAssignedTo");
    let group = EXAMPLE_GROUPS[0];
    let r = env
        .post(
            &to,
            json!({"principalId": group, "resourceId": sp_id, "appRoleId": app_only}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a group cannot hold an Application-only role"
    );
    let r = env
        .post(&to, json!({"principalId": group, "resourceId": sp_id, "appRoleId": "00000000-0000-0000-0000-000000000000"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["principalType"], "Group");
    let again = env
        .post(&to, json!({"principalId": group, "resourceId": sp_id, "appRoleId": "00000000-0000-0000-0000-000000000000"}))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "already assigned");
    let other_sp = env
        .sim
        .service_principal("3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f")
        .unwrap();
    let r = env
        .post(
            &to,
            json!({"principalId": other_sp["id"], "resourceId": sp_id, "appRoleId": app_only}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let listed = env.get(&to).await.body;
    assert_eq!(listed["value"].as_array().unwrap().len(), 2);
    let aid = r.body["id"].as_str().unwrap();
    assert_eq!(
        env.delete(&format!("{to}/{aid}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.delete(&format!("{to}/{aid}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(env.sim.assignments(sp_id).len(), 1);

    // Delegated consent for Microsoft Graph scopes that exist.
    let graph_sp = env
        .sim
        .service_principal("00000003-0000-0000-c000-000000000000")
        .unwrap();
    let grant = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp["id"], "scope": "openid User.Read GroupMember.Read.All"});
    let r = env.post("/oauth2PermissionGrants", grant.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        env.post("/oauth2PermissionGrants", grant).await.status,
        StatusCode::CONFLICT
    );
    let bad = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp["id"], "scope": "Nope.Read"});
    assert_eq!(
        env.post("/oauth2PermissionGrants", bad).await.status,
        StatusCode::BAD_REQUEST
    );
    let found = env
        .get(&format!(
            "/oauth2PermissionGrants?$filter=clientId eq '{sp_id}'"
        ))
        .await
        .body;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);

    // The operator becomes an owner once.
    let op = env.sim.operator();
    let owner = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", op.service_principal_id)});
    assert_eq!(
        env.post(&format!("{path}/owners/$ref"), owner.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.post(&format!("{path}/owners/$ref"), owner).await.status,
        StatusCode::BAD_REQUEST
    );
    let owners = env.get(&format!("{path}/owners")).await.body;
    assert_eq!(owners["value"][0]["id"], op.service_principal_id);
    assert_eq!(
        owners["value"][0]["@odata.type"],
        "#microsoft.graph.servicePrincipal"
    );

    // Deleting the app takes its service principal and assignments along.
    assert_eq!(env.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert!(
        env.sim
            .service_principal(app["appId"].as_str().unwrap())
            .is_none()
    );
    assert!(env.sim.assignments(sp_id).is_empty());
    assert_eq!(env.sim.deleted_applications().len(), 1);
    assert_eq!(env.get(&path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn credential_and_federation_limits_are_enforced() {
    let env = start().await;
    let personal = env
        .create_app(json!({"displayName": "c:ns:personal", "signInAudience": "AzureADandPersonalMicrosoftAccount", "api": {"requestedAccessTokenVersion": 2}}))
        .await;
    let pid = personal["id"].as_str().unwrap();
    env.add_password(pid).await;
    env.add_password(pid).await;
    let third = env
        .post(&format!("/applications/{pid}/addPassword"), json!({}))
        .await;
    assert_eq!(
        third.status,
        StatusCode::BAD_REQUEST,
        "two secrets for personal-account audiences"
    );
    let v1 = env
        .post(
            "/applications",
            json!({"displayName": "c:ns:v1", "signInAudience": "PersonalMicrosoftAccount"}),
        )
        .await;
    assert_eq!(
        v1.status,
        StatusCode::BAD_REQUEST,
        "personal accounts need v2 tokens"
    );

    let app = env.create_app(json!({"displayName": "c:ns:fic"})).await;
    let fics = format!(
        "/applications/{}/federatedIdentityCredentials",
        app["id"].as_str().unwrap()
    );
    let fic = |name: &str, sub: &str| json!({"name": name, "issuer": "https://issuer.example", "subject": sub, "audiences": ["api://AzureADTokenExchange"]});
    for i in 0..20 {
        let r = env
            .post(&fics, fic(&format!("fic-{i}"), &format!("sub-{i}")))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    assert_eq!(
        env.post(&fics, fic("fic-20", "sub-20")).await.status,
        StatusCode::BAD_REQUEST,
        "at most 20"
    );
    assert_eq!(
        env.delete(&format!("{fics}/fic-19")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.post(&fics, fic("fic-0", "sub-x")).await.status,
        StatusCode::CONFLICT,
        "names are unique"
    );
    assert_eq!(
        env.post(&fics, fic("fic-x", "sub-0")).await.status,
        StatusCode::BAD_REQUEST,
        "(issuer, subject) is unique"
    );
    let two_audiences = json!({"name": "two", "issuer": "https://issuer.example", "subject": "s", "audiences": ["a", "b"]});
    assert_eq!(
        env.post(&fics, two_audiences).await.status,
        StatusCode::BAD_REQUEST
    );
    let renamed = env
        .patch(&format!("{fics}/fic-0"), json!({"name": "renamed"}))
        .await;
    assert_eq!(
        renamed.status,
        StatusCode::BAD_REQUEST,
        "the name is immutable"
    );
    let moved = env
        .patch(&format!("{fics}/fic-0"), json!({"subject": "new-subject"}))
        .await;
    assert_eq!(moved.status, StatusCode::NO_CONTENT, "{}", moved.body);
}

#[tokio::test]
async fn filters_quote_strings_and_refuse_what_graph_refuses() {
    let env = start().await;
    env.create_app(json!({"displayName": "c:o'brien:app"}))
        .await;
    let found = env
        .get("/applications?$filter=displayName eq 'c:o''brien:app'")
        .await;
    assert_eq!(
        found.body["value"].as_array().map(Vec::len),
        Some(1),
        "{}",
        found.body
    );
    let injected = env
        .get("/applications?$filter=displayName eq 'x'' or startswith(displayName,''c'")
        .await;
    assert_eq!(
        injected.body["value"],
        json!([]),
        "a quote inside the literal stays in it"
    );
    let unsupported = env.get("/applications?$filter=notes eq 'x'").await;
    assert_eq!(error_code(&unsupported.body), "Request_UnsupportedQuery");
    let search = env.get("/applications?$search=\"displayName:c\"").await;
    assert_eq!(
        search.status,
        StatusCode::BAD_REQUEST,
        "advanced queries need ConsistencyLevel"
    );
    let tagged = env
        .get("/servicePrincipals?$filter=appId eq '3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f'")
        .await;
    assert_eq!(tagged.body["value"].as_array().map(Vec::len), Some(1));
}
