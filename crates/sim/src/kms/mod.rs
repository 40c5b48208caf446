//! A simulator of the two Google endpoints a KMS signer calls: Cloud KMS `asymmetricSign` (and
//! `publicKey`) on `/v1/...`, and the GCE/GKE metadata server's token endpoint on `/computeMetadata/...`,
//! on one router behind the shared fault layer ([`crate::fault`], with `/_sim/faults` and `/_sim/journal`).
//!
//! - Each key version (`projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N`) holds its own
//!   RSA-2048 key (`RSA_SIGN_PKCS1_2048_SHA256`) and signs the SHA-256 digest it is sent.
//! - The metadata server hands out random bearer tokens (only with `Metadata-Flavor: Google`) that expire
//!   after [`KmsSim::set_token_lifetime`] by the shared clock; KMS accepts only those, unexpired.
//! - Errors are Google's: `{"error": {"code", "message", "status"}}` from KMS, with the canonical status
//!   names; plain text from the metadata server, as the real one answers.
//!
//! Choices where Google's behaviour is broader than needed: an unknown key version and a key the caller may
//! not use both answer 403 `PERMISSION_DENIED` "(or it may not exist)", as KMS does for a caller without
//! access; a disabled version answers 400 `FAILED_PRECONDITION`; `digestCrc32c` is not checked.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use portvakt_clock::Clock;
use serde_json::{Value, json};

use crate::fault::{CallRecord, ErrorShape, FaultLayer, FaultRule};
use crate::jwt::{CryptoError, RsaKey};

/// The metadata server's token path (the pod's service account under workload identity).
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// The algorithm every simulated key version has.
pub const ALGORITHM: &str = "RSA_SIGN_PKCS1_2048_SHA256";
const JOURNAL_CAP: usize = 10_000;
const MAX_BODY: usize = 64 * 1024;

struct KeyVersion {
    key: RsaKey,
    enabled: bool,
    /// Whether the pod's service account holds `cloudkms.cryptoKeyVersions.useToSign` on it.
    may_sign: bool,
}

struct SimState {
    keys: BTreeMap<String, KeyVersion>,
    /// Issued token → expiry.
    tokens: HashMap<String, Timestamp>,
    token_lifetime: Duration,
    tokens_issued: u64,
    signatures: u64,
}

struct Inner {
    clock: Clock,
    faults: Arc<FaultLayer>,
    state: Mutex<SimState>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The simulator. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct KmsSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KmsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSim").finish_non_exhaustive()
    }
}

/// A Google API error: status code, canonical name, message.
fn google_error(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    google_error_named(status, name, message)
}

fn google_error_named(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": name}})),
    )
        .into_response()
}

fn text_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Injected faults answer as the real endpoints do: Google's JSON error from KMS, plain text from the
/// metadata server.
struct GoogleErrorShape;

impl ErrorShape for GoogleErrorShape {
    fn error(&self, path: &str, status: StatusCode, message: &str) -> Response {
        if path.starts_with("/computeMetadata/") {
            text_error(status, message)
        } else {
            google_error(status, message)
        }
    }
}

impl KmsSim {
    pub fn new(clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                faults: FaultLayer::new(clock.clone(), GoogleErrorShape, JOURNAL_CAP, MAX_BODY),
                clock,
                state: Mutex::new(SimState {
                    keys: BTreeMap::new(),
                    tokens: HashMap::new(),
                    token_lifetime: Duration::from_secs(3599),
                    tokens_issued: 0,
                    signatures: 0,
                }),
            }),
        }
    }

    /// `/v1/...` (KMS) and `/computeMetadata/...` (metadata server), behind the fault layer, with the
    /// `/_sim/` control routes.
    pub fn router(&self) -> Router {
        let app = Router::new()
            .route(TOKEN_PATH, get(metadata_token))
            .route("/v1/{*resource}", get(kms_get).post(kms_post))
            .fallback(|| async { google_error(StatusCode::NOT_FOUND, "Not Found") })
            .with_state(self.inner.clone());
        crate::fault::control_routes(&self.inner.faults)
            .merge(crate::fault::wrap(app, &self.inner.faults))
    }

    /// Serves the router on `addr` (port 0 for any free port); the URL is both the KMS and the metadata URL.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<crate::ServeHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        crate::serve_on(listener, self.router(), async {})
    }

    // ---- test hooks ----

    /// Creates key version `name` with a fresh RSA-2048 key, enabled and usable by the pod; returns its
    /// public JWK (`n`, `e`). An existing version of that name is replaced.
    pub fn create_key_version(&self, name: &str) -> Result<Value, CryptoError> {
        let key = RsaKey::generate(name)?;
        let public = key.public_jwk();
        self.inner.lock().keys.insert(
            name.to_string(),
            KeyVersion {
                key,
                enabled: true,
                may_sign: true,
            },
        );
        Ok(public)
    }

    /// The public JWK of key version `name`.
    pub fn public_jwk(&self, name: &str) -> Option<Value> {
        self.inner.lock().keys.get(name).map(|k| k.key.public_jwk())
    }

    /// Enables or disables key version `name` (a disabled one refuses to sign).
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        if let Some(k) = self.inner.lock().keys.get_mut(name) {
            k.enabled = enabled;
        }
    }

    /// Grants or revokes the pod's `roles/cloudkms.signer` on key version `name`.
    pub fn set_may_sign(&self, name: &str, may_sign: bool) {
        if let Some(k) = self.inner.lock().keys.get_mut(name) {
            k.may_sign = may_sign;
        }
    }

    /// How long new metadata tokens live (by the shared clock); default 3599 s, as Google's.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner.lock().token_lifetime = lifetime;
    }

    /// Makes every token issued so far invalid (KMS answers 401 to them).
    pub fn revoke_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Tokens handed out by the metadata server.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.lock().tokens_issued
    }

    /// Signatures made by KMS.
    pub fn signatures(&self) -> u64 {
        self.inner.lock().signatures
    }

    pub fn journal(&self) -> Vec<CallRecord> {
        self.inner.faults.journal()
    }

    pub fn inject_fault(&self, rule: FaultRule) {
        self.inner.faults.inject(rule);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.clear_faults();
    }

    /// The fault rules and the call journal.
    pub fn faults(&self) -> &Arc<FaultLayer> {
        &self.inner.faults
    }
}

async fn metadata_token(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let flavor = headers.get("metadata-flavor").and_then(|v| v.to_str().ok());
    if flavor != Some("Google") {
        return text_error(
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor\": \"Google\"",
        );
    }
    let token = format!("ya29.sim-{}", crate::jwt::random_token(24));
    let now = inner.clock.now();
    let mut state = inner.lock();
    let lifetime = state.token_lifetime;
    let expiry = SignedDuration::try_from(lifetime)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now);
    state.tokens.insert(token.clone(), expiry);
    state.tokens_issued += 1;
    axum::Json(json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

/// Whether the request carries a token the metadata server issued that has not expired.
fn authenticated(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let now = inner.clock.now();
    inner
        .lock()
        .tokens
        .get(token)
        .is_some_and(|expiry| now < *expiry)
}

fn unauthenticated() -> Response {
    google_error(
        StatusCode::UNAUTHORIZED,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    )
}

fn permission_denied(name: &str, permission: &str) -> Response {
    google_error(
        StatusCode::FORBIDDEN,
        &format!("Permission '{permission}' denied on resource '{name}' (or it may not exist)."),
    )
}

/// `POST /v1/{name}:asymmetricSign`.
async fn kms_post(
    State(inner): State<Arc<Inner>>,
    Path(resource): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(name) = resource.strip_suffix(":asymmetricSign") else {
        return google_error(
            StatusCode::NOT_FOUND,
            &format!("no method on {resource:?} (only :asymmetricSign is simulated)"),
        );
    };
    if !authenticated(&inner, &headers) {
        return unauthenticated();
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid JSON payload received. {e}"),
            );
        }
    };
    let digest = request
        .pointer("/digest/sha256")
        .and_then(Value::as_str)
        .and_then(|d| STANDARD.decode(d).ok());
    let Some(digest) = digest else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "digest.sha256: a base64 SHA-256 digest is required for key algorithm RSA_SIGN_PKCS1_2048_SHA256",
        );
    };
    if digest.len() != 32 {
        return google_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The digest must be 32 bytes for SHA-256, got {} bytes.",
                digest.len()
            ),
        );
    }
    let mut state = inner.lock();
    let Some(version) = state.keys.get(name).filter(|k| k.may_sign) else {
        return permission_denied(name, "cloudkms.cryptoKeyVersions.useToSign");
    };
    if !version.enabled {
        return google_error_named(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            &format!("{name} is not enabled, current state is: DISABLED."),
        );
    }
    let signature = match version.key.sign_sha256_digest(&digest) {
        Ok(s) => s,
        Err(e) => return google_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    state.signatures += 1;
    axum::Json(json!({
        "signature": STANDARD.encode(signature),
        "verifiedDigestCrc32c": false,
        "name": name,
        "protectionLevel": "HSM",
    }))
    .into_response()
}

/// `GET /v1/{name}/publicKey`.
async fn kms_get(
    State(inner): State<Arc<Inner>>,
    Path(resource): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(name) = resource.strip_suffix("/publicKey") else {
        return google_error(
            StatusCode::NOT_FOUND,
            &format!("no resource {resource:?} (only .../publicKey is simulated)"),
        );
    };
    if !authenticated(&inner, &headers) {
        return unauthenticated();
    }
    let state = inner.lock();
    let Some(version) = state.keys.get(name) else {
        return permission_denied(name, "cloudkms.cryptoKeyVersions.viewPublicKey");
    };
    match version.key.public_key_pem() {
        Ok(pem) => axum::Json(json!({
            "pem": pem,
            "algorithm": ALGORITHM,
            "name": name,
            "protectionLevel": "HSM",
        }))
        .into_response(),
        Err(e) => google_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    const NAME: &str =
        "projects/p/locations/europe-north1/keyRings/r/cryptoKeys/admin/cryptoKeyVersions/1";

    async fn call(
        base: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn new_token(router: &str) -> String {
        let (status, body) = call(
            router,
            "GET",
            TOKEN_PATH,
            &[("Metadata-Flavor", "Google")],
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn signs_digests_for_holders_of_a_valid_token_and_answers_google_errors() {
        let clock = Clock::system();
        let sim = KmsSim::new(clock.clone());
        let jwk = sim.create_key_version(NAME).unwrap();
        sim.set_token_lifetime(Duration::from_secs(600));
        let handle = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = handle.url();
        let router = url.as_str();

        let (status, body) = call(router, "GET", TOKEN_PATH, &[], "").await;
        assert_eq!(status, 403, "no Metadata-Flavor header: {body}");

        let token = new_token(router).await;
        let bearer = format!("Bearer {token}");
        let digest = sha2::Sha256::digest(b"header.claims");
        let request = json!({"digest": {"sha256": STANDARD.encode(digest)}}).to_string();
        let path = format!("/v1/{NAME}:asymmetricSign");
        let (status, body) = call(
            router,
            "POST",
            &path,
            &[("Authorization", &bearer)],
            &request,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], NAME);
        let signature = STANDARD
            .decode(body["signature"].as_str().unwrap())
            .unwrap();
        let public = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwk["n"].as_str().unwrap())
                    .unwrap(),
            ),
            rsa::BigUint::from_bytes_be(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwk["e"].as_str().unwrap())
                    .unwrap(),
            ),
        )
        .unwrap();
        public
            .verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &digest,
                &signature,
            )
            .expect("a PKCS#1 v1.5 signature of the digest");

        // No token, a revoked one, an expired one: 401 UNAUTHENTICATED.
        let (status, body) = call(router, "POST", &path, &[], &request).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        clock.advance(Duration::from_secs(601));
        let (status, _) = call(
            router,
            "POST",
            &path,
            &[("Authorization", &bearer)],
            &request,
        )
        .await;
        assert_eq!(status, 401, "an expired token");
        let bearer = format!("Bearer {}", new_token(router).await);
        sim.revoke_tokens();
        let (status, _) = call(
            router,
            "POST",
            &path,
            &[("Authorization", &bearer)],
            &request,
        )
        .await;
        assert_eq!(status, 401, "a revoked token");

        let bearer = format!("Bearer {}", new_token(router).await);
        let auth = [("Authorization", bearer.as_str())];
        let other = format!("/v1/{}:asymmetricSign", NAME.replace("admin", "other"));
        let (status, body) = call(router, "POST", &other, &auth, &request).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );
        sim.set_enabled(NAME, false);
        let (status, body) = call(router, "POST", &path, &auth, &request).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (400, Some("FAILED_PRECONDITION"))
        );
        sim.set_enabled(NAME, true);
        let short = json!({"digest": {"sha256": STANDARD.encode([1u8; 20])}}).to_string();
        let (status, body) = call(router, "POST", &path, &auth, &short).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );

        // The public key, and injected faults in each endpoint's own shape.
        let (status, body) = call(router, "GET", &format!("/v1/{NAME}/publicKey"), &auth, "").await;
        assert_eq!(status, 200);
        assert!(
            body["pem"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        sim.inject_fault(FaultRule::status(503).path("/v1/").once());
        let (status, body) = call(router, "POST", &path, &auth, &request).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (503, Some("UNAVAILABLE"))
        );
        sim.inject_fault(FaultRule::status(404).path("/computeMetadata/").once());
        let (status, body) = call(
            router,
            "GET",
            TOKEN_PATH,
            &[("Metadata-Flavor", "Google")],
            "",
        )
        .await;
        assert!(status == 404 && body.is_string(), "plain text: {body}");
        assert_eq!(sim.signatures(), 1);
    }
}
