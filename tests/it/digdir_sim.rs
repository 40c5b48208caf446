//! The Digdir simulator, served on 127.0.0.1:0 and driven over HTTP like real Digdir.

use std::time::Duration;

use portvakt::clock::Clock;
use portvakt_sim::digdir::{
    AuthorizeRequest, DigdirSim, FaultRule, FaultTimes, JWT_BEARER, RsaKey, Seed, SimHandle,
    WellKnownUrls, app,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Env {
    sim: DigdirSim,
    _handle: SimHandle,
    urls: WellKnownUrls,
    clock: Clock,
    http: reqwest::Client,
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = Clock::system();
    let sim = DigdirSim::new(clock.clone(), Seed::default());
    let handle = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let urls = sim.well_known_urls(&handle.url());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Env {
        sim,
        _handle: handle,
        urls,
        clock,
        http,
    }
}

impl Env {
    async fn grant(&self, assertion: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(&self.urls.maskinporten.token_endpoint)
            .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
            .send()
            .await
            .expect("token request");
        let status = r.status();
        (status, r.json().await.expect("JSON body"))
    }

    fn admin_claims(&self, extra: Value) -> Value {
        let creds = self.sim.admin_credentials();
        let now = self.clock.unix_seconds();
        let mut claims = json!({
            "iss": creds.client_id, "aud": self.urls.maskinporten.issuer,
            "scope": "idporten:dcr.read idporten:dcr.write idporten:scopes.write",
            "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let (Some(map), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    async fn admin_token(&self) -> String {
        let creds = self.sim.admin_credentials();
        let grant = creds
            .grant_with_kid(
                &self.urls.maskinporten.issuer,
                &creds.scopes.join(" "),
                self.clock.unix_seconds(),
            )
            .expect("grant");
        let (status, body) = self.grant(&grant).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token().await;
        self.api_with(&token, method, path, body).await
    }

    async fn api_with(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.urls.admin_api_url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("api request");
        let status = r.status();
        let text = r.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    async fn create_maskinporten_client(&self, scopes: &[&str]) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/clients",
                Some(json!({
                    "integration_type": "maskinporten", "application_type": "web",
                    "client_name": "test", "description": "cluster:ns:app",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "grant_types": [JWT_BEARER], "scopes": scopes,
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["client_id"].as_str().expect("client_id").to_string()
    }

    async fn post_keys(&self, client_id: &str, keys: Vec<Value>) -> (StatusCode, Value) {
        self.api(
            reqwest::Method::POST,
            &format!("/clients/{client_id}/jwks"),
            Some(json!({ "keys": keys })),
        )
        .await
    }

    fn app_grant(&self, key: &RsaKey, client_id: &str, scope: &str) -> String {
        let now = self.clock.unix_seconds();
        key.sign(&json!({
            "iss": client_id, "aud": self.urls.maskinporten.issuer, "scope": scope,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        }))
        .expect("sign")
    }
}

fn assert_digdir_error(body: &Value) {
    assert!(
        body["correlation_id"].is_string(),
        "no correlation_id: {body}"
    );
    assert!(body["errors"].is_array(), "no errors[]: {body}");
    assert!(body["error_description"].is_string(), "{body}");
}

fn field_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["fieldIdentifier"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn admin_grant_with_certificate_or_kid_gets_a_verifiable_token() {
    let env = start().await;
    let creds = env.sim.admin_credentials();
    let now = env.clock.unix_seconds();
    for grant in [
        creds.grant_with_x5c(&env.urls.maskinporten.issuer, "idporten:dcr.read", now),
        creds.grant_with_kid(&env.urls.maskinporten.issuer, "idporten:dcr.read", now),
    ] {
        let (status, body) = env.grant(&grant.expect("grant")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].is_u64(), "{body}");
        assert_eq!(body["scope"], "idporten:dcr.read");

        // The access token verifies against the JWKS the metadata points to.
        let meta: Value = env
            .http
            .get(&env.urls.maskinporten.well_known_url)
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
        assert_eq!(meta["issuer"], env.urls.maskinporten.issuer);
        let jwks: Value = env
            .http
            .get(meta["jwks_uri"].as_str().expect("jwks_uri"))
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
        let token = jsonwebtoken::decode::<Value>(
            body["access_token"].as_str().expect("at"),
            &dk,
            &validation,
        )
        .expect("token verifies");
        assert_eq!(token.claims["client_id"], creds.client_id);
        assert_eq!(
            token.claims["consumer"]["ID"],
            format!("0192:{}", creds.orgno)
        );
        assert_eq!(token.claims["iss"], env.urls.maskinporten.issuer);
    }
}

#[tokio::test]
async fn admin_grant_rejections_follow_the_documented_rules() {
    let env = start().await;
    let creds = env.sim.admin_credentials();
    let key = creds.key();

    // Wrong audience (issuer without its trailing slash).
    let aud = env
        .urls
        .maskinporten
        .issuer
        .trim_end_matches('/')
        .to_string();
    let (status, body) = env
        .grant(
            &key.sign(&env.admin_claims(json!({"aud": aud})))
                .expect("sign"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("MP-110")
    );

    // Lifetime over 120 s.
    let now = env.clock.unix_seconds();
    let (_, body) = env
        .grant(
            &key.sign(&env.admin_claims(json!({"exp": now + 300})))
                .expect("sign"),
        )
        .await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // iat from the future.
    let (_, body) = env
        .grant(
            &key.sign(&env.admin_claims(json!({"iat": now + 60, "exp": now + 90})))
                .expect("sign"),
        )
        .await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // A reused jti.
    let claims = env.admin_claims(json!({"jti": "same-jti"}));
    let (status, _) = env.grant(&key.sign(&claims).expect("sign")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env.grant(&key.sign(&claims).expect("sign")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("used before"),
        "{body}"
    );

    // A bad signature: another key under the admin kid.
    let impostor = RsaKey::generate(creds.kid.clone()).expect("key");
    let (_, body) = env
        .grant(&impostor.sign(&env.admin_claims(json!({}))).expect("sign"))
        .await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("Signature")
    );

    // A scope the admin client lacks.
    let (status, body) = env
        .grant(
            &key.sign(&env.admin_claims(json!({"scope": "idporten:dcr.supplier"})))
                .expect("sign"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope", "{body}");

    // x5c as a single string (MP-123).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5c = Some(vec!["not-a-cert".into()]);
    let (_, body) = env
        .grant(
            &key.sign_with_header(&header, &env.admin_claims(json!({})))
                .expect("sign"),
        )
        .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("MP-123"),
        "{body}"
    );

    // Wrong grant type.
    let r = env
        .http
        .post(&env.urls.maskinporten.token_endpoint)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn client_crud_with_validation_and_immutable_integration_type() {
    let env = start().await;
    use reqwest::Method;

    // No token: 401 with a JSON body.
    let (status, body) = env.api_with("nope", Method::GET, "/clients", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_digdir_error(&body);

    let id = env
        .create_maskinporten_client(&["krr:global/kontaktinformasjon.read"])
        .await;
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "server assigns a UUID: {id}"
    );

    let (status, list) = env.api(Method::GET, "/clients", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (_, mut client) = env.api(Method::GET, &format!("/clients/{id}"), None).await;
    assert_eq!(client["description"], "cluster:ns:app");
    assert_eq!(client["client_orgno"], env.sim.admin_credentials().orgno);

    // Update: GET, modify, PUT back.
    client["scopes"] = json!([
        "krr:global/kontaktinformasjon.read",
        "krr:global/digitalpost.read"
    ]);
    let (status, updated) = env
        .api(Method::PUT, &format!("/clients/{id}"), Some(client.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["scopes"].as_array().map(Vec::len), Some(2));

    // integration_type cannot change.
    client["integration_type"] = json!("idporten");
    let (status, body) = env
        .api(Method::PUT, &format!("/clients/{id}"), Some(client))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_digdir_error(&body);
    assert_eq!(field_errors(&body), vec!["integration_type"]);

    // Validation errors name the field.
    let (status, body) = env
        .api(
            Method::POST,
            "/clients",
            Some(json!({"integration_type": "maskinporten", "token_endpoint_auth_method": "client_secret_basic",
                        "scopes": ["krr:global/kontaktinformasjon.read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        field_errors(&body).contains(&"token_endpoint_auth_method".to_string()),
        "{body}"
    );
    let (status, body) = env
        .api(
            Method::POST,
            "/clients",
            Some(json!({"integration_type": "maskinporten", "scopes": ["nosuch:scope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_errors(&body), vec!["scopes[0]"], "{body}");
    let (status, body) = env
        .api(
            Method::POST,
            "/clients",
            Some(json!({"integration_type": "idporten", "token_endpoint_auth_method": "private_key_jwt",
                        "grant_types": ["authorization_code"], "scopes": ["openid", "profile"],
                        "redirect_uris": ["https://app.example/cb#frag", "not a uri"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        field_errors(&body),
        vec!["redirect_uris[0]", "redirect_uris[1]"],
        "{body}"
    );
    let (status, body) = env.api(Method::POST, "/clients", Some(json!("nope"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_digdir_error(&body);

    // Delete deactivates: gone from the list, visible with inactive=true.
    let (status, _) = env
        .api(Method::DELETE, &format!("/clients/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = env.api(Method::GET, "/clients", None).await;
    assert_eq!(list, json!([]));
    let (_, list) = env.api(Method::GET, "/clients?inactive=true", None).await;
    assert_eq!(list[0]["active"], false, "{list}");
    // A POST does not recreate a deactivated client.
    let (status, body) = env
        .api(
            Method::POST,
            "/clients",
            Some(json!({"client_id": id, "integration_type": "maskinporten",
                        "scopes": ["krr:global/kontaktinformasjon.read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = env.api(Method::GET, "/clients/does-not-exist", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_digdir_error(&body);
}

#[tokio::test]
async fn jwks_rules_max_five_unique_kids_replace_and_expiry() {
    let env = start().await;
    let a = env
        .create_maskinporten_client(&["krr:global/kontaktinformasjon.read"])
        .await;
    let b = env
        .create_maskinporten_client(&["krr:global/kontaktinformasjon.read"])
        .await;
    let k1 = RsaKey::generate("k1").expect("key");
    let k2 = RsaKey::generate("k2").expect("key");

    let (status, body) = env
        .api(reqwest::Method::GET, &format!("/clients/{a}/jwks"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no keys yet: {body}");

    // Six keys are refused.
    let six: Vec<Value> = (0..6)
        .map(|i| {
            let mut j = k1.public_jwk();
            j["kid"] = json!(format!("six-{i}"));
            j
        })
        .collect();
    let (status, body) = env.post_keys(&a, six).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_digdir_error(&body);

    // `use` is required, private material refused.
    let mut no_use = k1.public_jwk();
    no_use.as_object_mut().expect("object").remove("use");
    let (status, body) = env.post_keys(&a, vec![no_use]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_errors(&body), vec!["keys[0].use"]);
    let (status, _) = env.post_keys(&a, vec![k1.private_jwk()]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = env
        .post_keys(&a, vec![k1.public_jwk(), k2.public_jwk()])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let exp = body["keys"][0]["exp"].as_i64().expect("exp");
    let year = portvakt_sim::digdir::KEY_LIFETIME_SECS;
    assert!(
        (exp - (env.clock.unix_seconds() + year)).abs() < 10,
        "exp a year out: {exp}"
    );

    // A kid of another client is refused; re-posting one's own kid is fine.
    let (status, body) = env.post_keys(&b, vec![k1.public_jwk()]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_digdir_error(&body);
    let (status, body) = env.post_keys(&a, vec![k1.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ...and the POST replaced the whole set.
    let jwks = env.sim.jwks(&a).expect("jwks");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(jwks["keys"][0]["kid"], "k1");

    let scope = "krr:global/kontaktinformasjon.read";
    let (status, body) = env.grant(&env.app_grant(&k1, &a, scope)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A year later the key has expired (MP-121); re-posting it renews it.
    env.clock.advance(Duration::from_secs(366 * 24 * 3600));
    let (status, body) = env.grant(&env.app_grant(&k1, &a, scope)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("MP-121"),
        "{body}"
    );
    let (status, _) = env.post_keys(&a, vec![k1.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env.grant(&env.app_grant(&k1, &a, scope)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn maskinporten_app_token_needs_a_registered_key_and_allowed_scopes() {
    let env = start().await;
    let scope = "krr:global/kontaktinformasjon.read";
    let id = env.create_maskinporten_client(&[scope]).await;
    let key = RsaKey::generate(uuid::Uuid::new_v4().to_string()).expect("key");
    let (status, _) = env.post_keys(&id, vec![key.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK);

    // The helper an app (or `portvakt demo`) uses, with the private JWK a Secret holds.
    let body = app::maskinporten_token(
        &env.urls.maskinporten,
        &id,
        &key.private_jwk(),
        scope,
        &env.clock,
    )
    .await
    .expect("token");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], scope);
    assert!(body["expires_in"].is_u64());

    // An unregistered key.
    let stranger = RsaKey::generate(uuid::Uuid::new_v4().to_string()).expect("key");
    let (status, body) = env.grant(&env.app_grant(&stranger, &id, scope)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("Unknown key identifier")
    );

    // A scope not registered on the client.
    let (_, body) = env
        .grant(&env.app_grant(&key, &id, "krr:global/digitalpost.read"))
        .await;
    assert_eq!(body["error"], "invalid_scope", "{body}");

    // A new key is recognised only after the propagation delay.
    env.clock.advance(Duration::from_secs(300));
    env.sim.set_propagation_delay(Duration::from_secs(120));
    let (status, _) = env
        .post_keys(&id, vec![key.public_jwk(), stranger.public_jwk()])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env.grant(&env.app_grant(&stranger, &id, scope)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not propagated yet");
    let (status, _) = env.grant(&env.app_grant(&key, &id, scope)).await;
    assert_eq!(status, StatusCode::OK, "a re-posted key stays known");
    env.clock.advance(Duration::from_secs(121));
    let (status, body) = env.grant(&env.app_grant(&stranger, &id, scope)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn idporten_login_with_pkce_and_private_key_jwt() {
    let env = start().await;
    let redirect = "https://app.example/oauth2/callback";
    let (status, client) = env
        .api(
            reqwest::Method::POST,
            "/clients",
            Some(json!({
                "integration_type": "idporten", "application_type": "web", "client_name": "app",
                "description": "cluster:ns:app", "token_endpoint_auth_method": "private_key_jwt",
                "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "profile"],
                "redirect_uris": [redirect], "post_logout_redirect_uris": ["https://app.example/logout"],
                "frontchannel_logout_uri": "https://app.example/oauth2/logout",
                "frontchannel_logout_session_required": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{client}");
    let id = client["client_id"].as_str().expect("id").to_string();
    let key = RsaKey::generate(uuid::Uuid::new_v4().to_string()).expect("key");
    let (status, _) = env.post_keys(&id, vec![key.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK);

    let tokens = app::idporten_login(
        &env.urls.idporten,
        &id,
        &key.private_jwk(),
        redirect,
        "openid profile",
        &env.clock,
    )
    .await
    .expect("login");
    let claims = portvakt_sim::jwt::raw_claims(tokens["id_token"].as_str().expect("id_token"))
        .expect("claims");
    assert_eq!(claims["aud"], id);
    assert_eq!(claims["iss"], env.urls.idporten.issuer);
    assert!(
        claims["pid"].is_string() && claims["acr"].is_string(),
        "{claims}"
    );
    assert!(tokens["access_token"].is_string());

    // A wrong code_verifier is refused, and a code works only once.
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let req = AuthorizeRequest {
        client_id: id.clone(),
        redirect_uri: redirect.into(),
        response_type: "code".into(),
        scope: "openid".into(),
        state: Some("s".into()),
        nonce: Some("n".into()),
        code_challenge: Some(portvakt_sim::jwt::s256(verifier)),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeRequest::default()
    };
    let exchange = |code: String, verifier: &'static str| {
        let now = env.clock.unix_seconds();
        let assertion = key
            .sign(&json!({"iss": id, "sub": id, "aud": env.urls.idporten.issuer, "iat": now, "exp": now + 60,
                          "jti": uuid::Uuid::new_v4().to_string()}))
            .expect("sign");
        let http = env.http.clone();
        let url = env.urls.idporten.token_endpoint.clone();
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                    (
                        "client_assertion_type",
                        portvakt_sim::digdir::CLIENT_ASSERTION_TYPE,
                    ),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .expect("token request");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let base = env.urls.admin_base_url.clone();
    let (code, location) = env.sim.authorize_login(&base, &req).expect("login");
    assert!(
        location.starts_with(redirect) && location.contains("state=s"),
        "{location}"
    );
    let (status, body) = exchange(code, "wrong-verifier-wrong-verifier-wrong-verifier").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (code, _) = env.sim.authorize_login(&base, &req).expect("login");
    let (status, body) = exchange(code.clone(), verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = exchange(code, verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code is single-use");

    // An unregistered redirect URI is not redirected to.
    let r = env
        .http
        .get(
            env.urls
                .idporten
                .authorization_endpoint
                .as_deref()
                .expect("authorize"),
        )
        .query(&[
            ("client_id", id.as_str()),
            ("redirect_uri", "https://evil.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn injected_faults_are_one_shot_and_journaled() {
    let env = start().await;
    let token = env.admin_token().await;
    use reqwest::Method;
    env.sim.inject_fault(
        FaultRule::status(500)
            .method(http::Method::GET)
            .path("/api/v1/clients")
            .once(),
    );
    let (status, body) = env.api_with(&token, Method::GET, "/clients", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_digdir_error(&body);
    let (status, _) = env.api_with(&token, Method::GET, "/clients", None).await;
    assert_eq!(status, StatusCode::OK, "one-shot");

    env.sim.inject_fault(
        FaultRule::throttle(7)
            .path("/api/v1/clients")
            .times(FaultTimes::Times(2)),
    );
    for _ in 0..2 {
        let r = env
            .http
            .get(format!("{}/clients", env.urls.admin_api_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
    let (status, _) = env.api_with(&token, Method::GET, "/clients", None).await;
    assert_eq!(status, StatusCode::OK);

    let calls: Vec<(String, u16, bool)> = env
        .sim
        .journal()
        .into_iter()
        .filter(|c| c.path == "/api/v1/clients")
        .map(|c| (c.method.to_string(), c.status, c.faulted))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET".into(), 500, true),
            ("GET".into(), 200, false),
            ("GET".into(), 429, true),
            ("GET".into(), 429, true),
            ("GET".into(), 200, false),
        ]
    );
}

#[tokio::test]
async fn scopes_and_access_grants_gate_maskinporten_tokens() {
    let env = start().await;
    use reqwest::Method;
    let (status, scope) = env
        .api(
            Method::POST,
            "/scopes",
            Some(json!({"prefix": "kartverket", "subscope": "produktomraade:innsyn", "description": "x",
                        "allowed_integration_types": ["maskinporten"], "visibility": "PRIVATE"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{scope}");
    let name = "kartverket:produktomraade:innsyn";
    assert_eq!(scope["name"], name);
    // A prefix the organisation does not own.
    let (status, body) = env
        .api(
            Method::POST,
            "/scopes",
            Some(json!({"prefix": "krr", "subscope": "x", "description": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let q = format!("scope={}", urlencode(name));
    let (status, access) = env
        .api(Method::PUT, &format!("/scopes/access/987654321?{q}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{access}");
    assert_eq!(access["state"], "APPROVED");
    let (status, _) = env
        .api(Method::PUT, &format!("/scopes/access/000000000?{q}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown orgno is a 400");
    let (_, list) = env
        .api(Method::GET, &format!("/scopes/access?{q}"), None)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Deactivate; a POST does not reactivate (409), a PUT with active=true does.
    let (status, body) = env.api(Method::DELETE, &format!("/scopes?{q}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], false);
    let (status, _) = env
        .api(
            Method::POST,
            "/scopes",
            Some(json!({"prefix": "kartverket", "subscope": "produktomraade:innsyn", "description": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = env
        .api(
            Method::PUT,
            &format!("/scopes?{q}"),
            // PUT replaces the whole scope: the settings are sent again.
            Some(
                json!({"active": true, "description": "y", "visibility": "PRIVATE",
                        "allowed_integration_types": ["maskinporten"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true);
    let (_, mine) = env.api(Method::GET, "/scopes?inactive=true", None).await;
    assert!(
        mine.as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == name))
    );

    // Public listing and accesses granted to the admin organisation.
    let r = env
        .http
        .get(format!(
            "{}/scopes/all?accessible_for_all=false",
            env.urls.admin_api_url
        ))
        .send()
        .await
        .expect("public");
    let public: Value = r.json().await.expect("json");
    assert!(
        public
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "krr:global/digitalpost.read"))
    );
    assert!(
        !public
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == name)),
        "private scopes are not public"
    );
    let (_, granted) = env.api(Method::GET, "/scopes/access/all", None).await;
    assert!(granted.as_array().is_some_and(|a| {
        a.iter()
            .any(|s| s["scope"] == "krr:global/kontaktinformasjon.read")
    }));

    // A client of the admin org may carry its own scope; the token names the consumer.
    let id = env.create_maskinporten_client(&[name]).await;
    let key = RsaKey::generate("own-scope-key").expect("key");
    let (status, _) = env.post_keys(&id, vec![key.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env.grant(&env.app_grant(&key, &id, name)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Unsupported method: still a JSON error body.
    let r = env
        .http
        .patch(format!("{}/clients", env.urls.admin_api_url))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = r.json().await.expect("JSON error body");
    assert_digdir_error(&body);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_timed_out_post_still_creates_the_client_and_hand_edits_show_as_drift() {
    let env = start().await;
    let token = env.admin_token().await;
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_secs(2))
            .method(http::Method::POST)
            .path("/api/v1/clients")
            .once(),
    );
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let result = impatient
        .post(format!("{}/clients", env.urls.admin_api_url))
        .bearer_auth(&token)
        .json(
            &json!({"integration_type": "maskinporten", "description": "c:ns:slow",
                      "scopes": ["krr:global/kontaktinformasjon.read"]}),
        )
        .send()
        .await;
    assert!(result.is_err(), "the client timed out");
    let clients = env.sim.clients();
    assert_eq!(clients.len(), 1, "the POST went through anyway");
    let id = clients[0]["client_id"].as_str().expect("id").to_string();

    // Hand edits: a changed scope list and a removed key.
    env.sim
        .edit_client(&id, &json!({"scopes": ["krr:global/digitalpost.read"]}))
        .expect("edit");
    assert_eq!(
        env.sim.client(&id).expect("client")["scopes"],
        json!(["krr:global/digitalpost.read"])
    );
    assert!(
        env.sim
            .edit_client(&id, &json!({"integration_type": "idporten"}))
            .is_err()
    );
    let key = RsaKey::generate("drift").expect("key");
    let (status, _) = env.post_keys(&id, vec![key.public_jwk()]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(env.sim.remove_key(&id, "drift"));
    assert!(env.sim.jwks(&id).is_none());
}

#[tokio::test]
async fn faults_and_the_journal_are_driven_over_http() {
    let env = start().await;
    let token = env.admin_token().await;
    let base = env.urls.admin_base_url.clone();
    // A rule in the one-line form, as a user's CI would send it.
    let r = env
        .http
        .post(format!("{base}/_sim/faults"))
        .body("GET /api/v1/clients status=503 retry-after=4 once\n# comments and blank lines are skipped\n")
        .send()
        .await
        .expect("POST /_sim/faults");
    assert_eq!(r.status(), StatusCode::CREATED);
    let listed: Value = env
        .http
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .expect("GET /_sim/faults")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        listed["rules"][0]["rule"],
        "GET /api/v1/clients status=503 retry-after=4 once"
    );
    let r = env
        .http
        .get(format!("{}/clients", env.urls.admin_api_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /clients");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("4")
    );
    assert_digdir_error(&r.json().await.expect("Digdir's error body"));
    let (status, _) = env
        .api_with(&token, reqwest::Method::GET, "/clients", None)
        .await;
    assert_eq!(status, StatusCode::OK, "once means once");

    // A rule that does not parse is refused with a message naming the word.
    let r = env
        .http
        .post(format!("{base}/_sim/faults"))
        .body("GET /api/v1/clients status=503 sometimes")
        .send()
        .await
        .expect("POST /_sim/faults");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.expect("JSON");
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("sometimes")),
        "{e}"
    );

    // The journal, newest last, with the faulted call marked; the control routes are not in it.
    let j: Value = env
        .http
        .get(format!("{base}/_sim/journal"))
        .send()
        .await
        .expect("GET /_sim/journal")
        .json()
        .await
        .expect("JSON");
    let calls = j["calls"].as_array().expect("calls");
    let listing: Vec<(&str, u64, bool)> = calls
        .iter()
        .filter(|c| c["path"] == "/api/v1/clients")
        .map(|c| {
            (
                c["method"].as_str().unwrap_or_default(),
                c["status"].as_u64().unwrap_or_default(),
                c["faulted"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(listing, [("GET", 503, true), ("GET", 200, false)]);
    assert!(
        calls
            .iter()
            .all(|c| !c["path"].as_str().unwrap_or_default().starts_with("/_sim/")),
        "control calls are not journaled"
    );
    let since = calls.last().and_then(|c| c["seq"].as_u64()).expect("seq") + 1;
    let j: Value = env
        .http
        .get(format!("{base}/_sim/journal?since={since}"))
        .send()
        .await
        .expect("GET /_sim/journal")
        .json()
        .await
        .expect("JSON");
    assert_eq!(j["calls"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_scope_put_replaces_the_whole_scope_and_access_states_are_listed() {
    use reqwest::Method;
    let env = start().await;
    let (status, body) = env
        .api(
            Method::POST,
            "/scopes",
            Some(json!({"prefix": "kartverket", "subscope": "api/read", "description": "first",
                        "long_description": "Samtykketekst", "visibility": "PRIVATE", "at_max_age": 300,
                        "allowed_integration_types": ["maskinporten"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let q = format!("scope={}", urlencode("kartverket:api/read"));

    // What the body leaves out takes its default; the name, owner and active state stay.
    let (status, body) = env
        .api(
            Method::PUT,
            &format!("/scopes?{q}"),
            Some(json!({"description": "second"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["description"], "second");
    assert_eq!(body["visibility"], "PUBLIC");
    assert!(
        body["at_max_age"].is_null() && body["long_description"].is_null(),
        "{body}"
    );
    assert_eq!(body["allowed_integration_types"], json!([]));
    assert_eq!(body["active"], true);
    assert_eq!(body["owner_orgno"], env.sim.admin_credentials().orgno);
    let (status, body) = env
        .api(
            Method::PUT,
            &format!("/scopes?{q}"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_errors(&body), ["description"]);
    let (status, body) = env
        .api(
            Method::PUT,
            &format!("/scopes?{q}"),
            Some(json!({"description": "x", "subscope": "api/write"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the name cannot change");
    assert_eq!(field_errors(&body), ["subscope"]);

    // Accesses: granted through the API (counted), denied and requested by hand.
    let (status, _) = env
        .api(Method::PUT, &format!("/scopes/access/987654321?{q}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    env.sim
        .set_scope_access("kartverket:api/read", "123456789", "REQUESTED");
    env.sim
        .set_scope_access("kartverket:api/read", "987654321", "DENIED");
    let (_, acl) = env
        .api(Method::GET, &format!("/scopes/access?{q}"), None)
        .await;
    let states: Vec<(String, String)> = acl
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["consumer_orgno"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("987654321".to_string(), "DENIED".to_string()),
            ("123456789".to_string(), "REQUESTED".to_string()),
        ]
    );
    assert_eq!(
        env.sim
            .scope_access_grants("kartverket:api/read", "987654321"),
        1
    );
    assert_eq!(
        env.sim
            .scope_access_grants("kartverket:api/read", "123456789"),
        0
    );

    // Clients of other organisations are registered like a POST would be.
    let key = RsaKey::generate("other-org").expect("key");
    assert!(
        env.sim
            .add_maskinporten_client("000000001", &["kartverket:api/read"], &key)
            .is_err(),
        "an organisation the simulator does not know"
    );
    let err = env
        .sim
        .add_maskinporten_client("987654321", &["kartverket:nothing"], &key)
        .expect_err("a scope that does not exist");
    assert!(
        err.description.contains("does not exist"),
        "{}",
        err.description
    );
    let id = env
        .sim
        .add_maskinporten_client("987654321", &["kartverket:api/read"], &key)
        .expect("client");
    assert!(
        env.sim
            .client(&id)
            .is_some_and(|c| c["client_orgno"] == "987654321"),
        "owned by the other organisation"
    );
}
