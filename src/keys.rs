//! RSA keys, JWKs and RS256 JWTs.
//!
//! - [`generate_key`] makes an RSA-2048 key as a full private JWK (`kid` = UUID v4, digdirator's convention,
//!   `alg: RS256`, `use: sig`). The primes come from AWS-LC (`aws-lc-rs`, native code: about a third
//!   of the CPU of the pure-Rust `rsa` crate's [`generate_key_pure_rust`], kept for the benchmark's
//!   before/after figure); the components are read back through the `rsa` crate, validated, and encoded
//!   exactly as before. It is CPU-heavy: call it from `tokio::task::spawn_blocking`.
//! - [`PrivateJwk`] serialises in go-jose's field order, so the JSON looks like what digdirator writes into
//!   `*_CLIENT_JWK`, and parses back (strictly, naming the bad field) from a Secret.
//! - [`Signer`] is what the Digdir admin authentication signs with. It is asynchronous, so a backend may call
//!   out: [`FileSigner`] loads a PEM key (or a JWK) and, optionally, the business-certificate chain for `x5c`;
//!   [`crate::kms::GcpKmsSigner`] has Google Cloud KMS sign the same JWS signing input.
//!
//! Nothing here logs key material; `Debug` of private keys is redacted.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The key size portvakt generates (Digdir accepts only RS256 with 2048-bit keys).
pub const RSA_BITS: usize = 2048;
/// The smallest RSA key accepted when parsing.
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    #[error("invalid JWK: field `{field}` {problem}")]
    JwkField {
        field: &'static str,
        problem: String,
    },
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Pem { path: String, problem: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("encoding JWT: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// A remote signer (a cloud KMS) failed; the message names the service and the key, never a token.
    #[error(transparent)]
    Kms(#[from] crate::kms::KmsError),
}

impl KeyError {
    /// Whether signing again later might work (a KMS that is unavailable or throttling).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Kms(e) if e.is_retryable())
    }
}

impl KeyError {
    /// The file the error is about, if it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            KeyError::Io { path, .. } | KeyError::Pem { path, .. } => Some(path),
            _ => None,
        }
    }
}

pub type Result<T, E = KeyError> = std::result::Result<T, E>;

/// Installs rustls' ring crypto provider as the process default (reqwest is built without one).
/// Safe to call any number of times; "already installed" is not an error.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A new key ID: a UUID v4, as digdirator makes them (`uuid.New().String()`).
pub fn new_kid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn b64u(n: &BigUint) -> String {
    URL_SAFE_NO_PAD.encode(n.to_bytes_be())
}

fn b64u_field(field: &'static str, value: &str) -> Result<BigUint> {
    if value.is_empty() {
        return Err(KeyError::JwkField {
            field,
            problem: "is empty".into(),
        });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| KeyError::JwkField {
            field,
            problem: format!("is not base64url: {e}"),
        })?;
    Ok(BigUint::from_bytes_be(&bytes))
}

/// A full private RSA JWK, as stored in `IDPORTEN_CLIENT_JWK` / `MASKINPORTEN_CLIENT_JWK`.
///
/// Field order matches go-jose (digdirator): `use, kty, kid, alg, n, e, d, p, q, dp, dq, qi`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateJwk {
    #[serde(rename = "use")]
    pub use_: String,
    pub kty: String,
    pub kid: String,
    pub alg: String,
    pub n: String,
    pub e: String,
    pub d: String,
    pub p: String,
    pub q: String,
    pub dp: String,
    pub dq: String,
    pub qi: String,
}

impl fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateJwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.use_)
            .finish_non_exhaustive()
    }
}

/// A public RSA JWK, as registered at Digdir: `{"use","kty","kid","alg","n","e"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    #[serde(rename = "use")]
    pub use_: String,
    pub kty: String,
    pub kid: String,
    pub alg: String,
    pub n: String,
    pub e: String,
}

/// Makes a new RSA-2048 key as a private JWK with a UUID v4 `kid`. CPU-heavy (tens of ms): run it
/// in `spawn_blocking`.
pub fn generate_key() -> Result<PrivateJwk> {
    generate_key_with_kid(new_kid())
}

/// As [`generate_key`], with a given `kid`.
pub fn generate_key_with_kid(kid: String) -> Result<PrivateJwk> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::Generate("AWS-LC could not generate an RSA-2048 key".into()))?;
    let der: Pkcs8V1Der<'static> = pair
        .as_der()
        .map_err(|_| KeyError::Generate("AWS-LC could not export the key as PKCS#8".into()))?;
    // Read back (and validated) by the `rsa` crate, so the JWK is encoded exactly as before.
    let key = RsaPrivateKey::from_pkcs8_der(der.as_ref())
        .map_err(|e| KeyError::Generate(format!("reading the generated key: {e}")))?;
    if key.n().bits() != RSA_BITS {
        return Err(KeyError::Generate(format!(
            "expected a {RSA_BITS}-bit modulus, got {} bits",
            key.n().bits()
        )));
    }
    PrivateJwk::from_rsa(&key, kid)
}

/// An RSA-2048 key made by the pure-Rust `rsa` crate (what [`generate_key`] did before it used
/// AWS-LC): kept so the benchmark measures both in one run, and the tests check both give the same
/// JWK format.
pub fn generate_key_pure_rust() -> Result<PrivateJwk> {
    let mut rng = rand::thread_rng();
    let key =
        RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(|e| KeyError::Generate(e.to_string()))?;
    PrivateJwk::from_rsa(&key, new_kid())
}

impl PrivateJwk {
    /// The JWK of an RSA key (two primes), with `alg: RS256`, `use: sig`.
    pub fn from_rsa(key: &RsaPrivateKey, kid: String) -> Result<Self> {
        let mut key = key.clone();
        key.precompute()
            .map_err(|e| KeyError::InvalidKey(e.to_string()))?;
        let primes = key.primes();
        if primes.len() != 2 {
            return Err(KeyError::InvalidKey(format!(
                "expected 2 primes, found {}",
                primes.len()
            )));
        }
        let (Some(dp), Some(dq), Some(qi)) = (key.dp(), key.dq(), key.crt_coefficient()) else {
            return Err(KeyError::InvalidKey("missing CRT values".into()));
        };
        Ok(Self {
            use_: "sig".into(),
            kty: "RSA".into(),
            kid,
            alg: "RS256".into(),
            n: b64u(key.n()),
            e: b64u(key.e()),
            d: b64u(key.d()),
            p: b64u(&primes[0]),
            q: b64u(&primes[1]),
            dp: b64u(dp),
            dq: b64u(dq),
            qi: b64u(&qi),
        })
    }

    /// Parses and validates a private JWK (e.g. from a Secret). Errors name the offending field.
    pub fn from_json(json: &str) -> Result<Self> {
        let raw: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| KeyError::InvalidJwk(format!("not JSON: {e}")))?;
        let obj = raw
            .as_object()
            .ok_or_else(|| KeyError::InvalidJwk("not a JSON object".into()))?;
        let field = |name: &'static str| -> Result<String> {
            match obj.get(name) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(serde_json::Value::String(_)) => Err(KeyError::JwkField {
                    field: name,
                    problem: "is empty".into(),
                }),
                Some(_) => Err(KeyError::JwkField {
                    field: name,
                    problem: "is not a string".into(),
                }),
                None => Err(KeyError::JwkField {
                    field: name,
                    problem: "is missing".into(),
                }),
            }
        };
        let jwk = Self {
            use_: field("use")?,
            kty: field("kty")?,
            kid: field("kid")?,
            alg: field("alg")?,
            n: field("n")?,
            e: field("e")?,
            d: field("d")?,
            p: field("p")?,
            q: field("q")?,
            dp: field("dp")?,
            dq: field("dq")?,
            qi: field("qi")?,
        };
        if jwk.kty != "RSA" {
            return Err(KeyError::JwkField {
                field: "kty",
                problem: format!("is {:?}, expected \"RSA\"", jwk.kty),
            });
        }
        if jwk.alg != "RS256" {
            return Err(KeyError::JwkField {
                field: "alg",
                problem: format!("is {:?}, expected \"RS256\"", jwk.alg),
            });
        }
        if jwk.use_ != "sig" {
            return Err(KeyError::JwkField {
                field: "use",
                problem: format!("is {:?}, expected \"sig\"", jwk.use_),
            });
        }
        // Validates the numbers (and that n = p*q etc.).
        jwk.to_rsa()?;
        Ok(jwk)
    }

    /// The JWK as JSON (go-jose field order).
    pub fn to_json(&self) -> String {
        // Serialising a struct of Strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The RSA key, validated (at least 2048 bits, consistent components).
    pub fn to_rsa(&self) -> Result<RsaPrivateKey> {
        let n = b64u_field("n", &self.n)?;
        let e = b64u_field("e", &self.e)?;
        let d = b64u_field("d", &self.d)?;
        let p = b64u_field("p", &self.p)?;
        let q = b64u_field("q", &self.q)?;
        if n.bits() < MIN_RSA_BITS {
            return Err(KeyError::JwkField {
                field: "n",
                problem: format!("is a {}-bit modulus, need {MIN_RSA_BITS}", n.bits()),
            });
        }
        let key = RsaPrivateKey::from_components(n, e, d, vec![p, q])
            .map_err(|err| KeyError::InvalidJwk(format!("inconsistent RSA components: {err}")))?;
        key.validate()
            .map_err(|err| KeyError::InvalidJwk(format!("inconsistent RSA components: {err}")))?;
        Ok(key)
    }

    /// The public half, as registered at Digdir.
    pub fn public(&self) -> PublicJwk {
        PublicJwk {
            use_: self.use_.clone(),
            kty: self.kty.clone(),
            kid: self.kid.clone(),
            alg: self.alg.clone(),
            n: self.n.clone(),
            e: self.e.clone(),
        }
    }

    /// Signs `claims` as an RS256 JWT with header `{"alg":"RS256","kid":<kid>,"typ":"JWT"}`.
    pub fn sign_jwt(&self, claims: &impl Serialize) -> Result<String> {
        let key = self.to_rsa()?;
        sign_rs256(&key, &JwtHeader::with_kid(self.kid.clone()), claims)
    }
}

impl PublicJwk {
    /// The RSA public key.
    pub fn to_rsa(&self) -> Result<RsaPublicKey> {
        let n = b64u_field("n", &self.n)?;
        let e = b64u_field("e", &self.e)?;
        RsaPublicKey::new(n, e).map_err(|err| KeyError::InvalidJwk(err.to_string()))
    }

    /// A `jsonwebtoken` decoding key for verifying JWTs signed with the private half.
    pub fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey> {
        jsonwebtoken::DecodingKey::from_rsa_components(&self.n, &self.e)
            .map_err(|err| KeyError::InvalidJwk(err.to_string()))
    }
}

/// A JWT (JWS) header as portvakt sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtHeader {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Base64 (standard, not url-safe) DER certificates, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

impl JwtHeader {
    pub fn with_kid(kid: String) -> Self {
        Self {
            alg: "RS256".into(),
            kid: Some(kid),
            typ: Some("JWT".into()),
            x5c: None,
        }
    }

    pub fn with_x5c(chain: Vec<String>) -> Self {
        Self {
            alg: "RS256".into(),
            kid: None,
            typ: Some("JWT".into()),
            x5c: Some(chain),
        }
    }
}

/// The JWS signing input `base64url(header) "." base64url(claims)` of an RS256 JWT (the bytes every
/// [`Signer`] signs). `header.alg` must be RS256.
pub fn jws_signing_input(header: &JwtHeader, claims: &impl Serialize) -> Result<String> {
    if header.alg != "RS256" {
        return Err(KeyError::Sign(format!("unsupported alg {:?}", header.alg)));
    }
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    ))
}

/// The compact JWT from its signing input and the raw RSASSA-PKCS1-v1_5 signature.
pub fn compact_jwt(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Signs `header.claims` with RSASSA-PKCS1-v1_5 SHA-256 (blinded). `header.alg` must be RS256.
pub fn sign_rs256(
    key: &RsaPrivateKey,
    header: &JwtHeader,
    claims: &impl Serialize,
) -> Result<String> {
    let signing_input = jws_signing_input(header, claims)?;
    let signing_key = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let signature = signing_key
        .try_sign_with_rng(&mut rand::thread_rng(), signing_input.as_bytes())
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    Ok(compact_jwt(&signing_input, &signature.to_bytes()))
}

/// How a JWT names the key that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyReference {
    /// `kid` of a key registered on the client.
    Kid(String),
    /// `x5c`: base64 (standard) DER certificates, leaf first.
    X5c(Vec<String>),
}

/// What [`Signer::sign`] returns: the compact JWT, once the backend has signed.
pub type SignFuture<'a> = futures::future::BoxFuture<'a, Result<String>>;

/// Something that signs RS256 JWTs with a key it holds (in memory from a file, or in a KMS).
///
/// `sign` returns a boxed future so the trait stays usable as `Arc<dyn Signer>` while a backend calls out.
pub trait Signer: Send + Sync {
    /// The key reference this signer puts into JWT headers.
    fn key_reference(&self) -> KeyReference;

    /// The header this signer's JWTs carry (`alg: RS256`, `typ: JWT`, and `kid` or `x5c`).
    fn header(&self) -> JwtHeader {
        match self.key_reference() {
            KeyReference::Kid(kid) => JwtHeader::with_kid(kid),
            KeyReference::X5c(chain) => JwtHeader::with_x5c(chain),
        }
    }

    /// Signs `claims` under `header` and returns the compact JWT.
    fn sign<'a>(&'a self, header: &'a JwtHeader, claims: &'a serde_json::Value) -> SignFuture<'a>;
}

/// A [`Signer`] whose RSA key is held in memory, loaded from files mounted from a Secret.
pub struct FileSigner {
    key: RsaPrivateKey,
    reference: KeyReference,
}

impl fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSigner")
            .field(
                "reference",
                &match &self.reference {
                    KeyReference::Kid(kid) => format!("kid {kid}"),
                    KeyReference::X5c(chain) => format!("x5c ({} certificates)", chain.len()),
                },
            )
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    pub fn new(key: RsaPrivateKey, reference: KeyReference) -> Self {
        Self { key, reference }
    }

    /// Signs with a private JWK, naming it by its `kid`.
    pub fn from_jwk(jwk: &PrivateJwk) -> Result<Self> {
        Ok(Self::new(jwk.to_rsa()?, KeyReference::Kid(jwk.kid.clone())))
    }

    /// Loads the key from `key_path` and references it either by the certificate chain in `cert_chain_path`
    /// (`x5c`) or by `kid`. The key file is PEM (PKCS#8 or PKCS#1) or a private JWK (JSON); a JWK's own `kid`
    /// is used when no chain and no `kid` are given.
    pub fn from_files(
        key_path: &Path,
        cert_chain_path: Option<&Path>,
        kid: Option<String>,
    ) -> Result<Self> {
        let (key, jwk_kid) = load_private_key_file(key_path)?;
        let reference = match (cert_chain_path, kid.or(jwk_kid)) {
            (Some(chain), _) => KeyReference::X5c(load_cert_chain(chain)?),
            (None, Some(kid)) => KeyReference::Kid(kid),
            (None, None) => {
                return Err(KeyError::Pem {
                    path: key_path.display().to_string(),
                    problem: "neither a certificate chain nor a kid to reference the key by".into(),
                });
            }
        };
        Ok(Self::new(key, reference))
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }
}

impl Signer for FileSigner {
    fn key_reference(&self) -> KeyReference {
        self.reference.clone()
    }

    fn sign<'a>(&'a self, header: &'a JwtHeader, claims: &'a serde_json::Value) -> SignFuture<'a> {
        // In-memory RSA signing takes about a millisecond: no need to leave the task.
        Box::pin(std::future::ready(sign_rs256(&self.key, header, claims)))
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The RSA key of a PEM (PKCS#8 or PKCS#1) or private-JWK file.
pub fn load_private_key(path: &Path) -> Result<RsaPrivateKey> {
    Ok(load_private_key_file(path)?.0)
}

/// The RSA key of a PEM (PKCS#8 or PKCS#1) or private-JWK file, with the JWK's `kid`.
fn load_private_key_file(path: &Path) -> Result<(RsaPrivateKey, Option<String>)> {
    let text = read_file(path)?;
    if text.trim_start().starts_with('{') {
        let jwk = PrivateJwk::from_json(&text).map_err(|e| KeyError::Pem {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        Ok((jwk.to_rsa()?, Some(jwk.kid)))
    } else {
        Ok((load_rsa_key_pem(path, &text)?, None))
    }
}

fn load_rsa_key_pem(path: &Path, text: &str) -> Result<RsaPrivateKey> {
    let pem_err = |problem: String| KeyError::Pem {
        path: path.display().to_string(),
        problem,
    };
    let der = PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| pem_err(format!("no PEM private key: {e}")))?;
    let key = match &der {
        PrivateKeyDer::Pkcs8(k) => RsaPrivateKey::from_pkcs8_der(k.secret_pkcs8_der())
            .map_err(|e| pem_err(format!("not an RSA PKCS#8 key: {e}")))?,
        PrivateKeyDer::Pkcs1(k) => RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
            .map_err(|e| pem_err(format!("not an RSA PKCS#1 key: {e}")))?,
        _ => {
            return Err(pem_err(
                "not an RSA key (SEC1/EC keys are not supported)".into(),
            ));
        }
    };
    if key.n().bits() < MIN_RSA_BITS {
        return Err(pem_err(format!(
            "{}-bit RSA key, need at least {MIN_RSA_BITS}",
            key.n().bits()
        )));
    }
    Ok(key)
}

/// Loads an RSA private key from a PEM file (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn load_rsa_key_file(path: &Path) -> Result<RsaPrivateKey> {
    let text = read_file(path)?;
    load_rsa_key_pem(path, &text)
}

/// Every `CERTIFICATE` block of a PEM file, in file order, as base64 (standard) DER: the `x5c` value.
pub fn load_cert_chain(path: &Path) -> Result<Vec<String>> {
    let text = read_file(path)?;
    parse_cert_chain(&text).map_err(|problem| KeyError::Pem {
        path: path.display().to_string(),
        problem,
    })
}

/// As [`load_cert_chain`], from PEM text.
pub fn parse_cert_chain(pem: &str) -> std::result::Result<Vec<String>, String> {
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
        chain.push(STANDARD.encode(cert.as_ref()));
    }
    if chain.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(chain)
}

/// The PKCS#8 PEM of an RSA key (for writing test fixtures and the simulator's admin key).
pub fn rsa_key_to_pem(key: &RsaPrivateKey) -> Result<String> {
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| KeyError::InvalidKey(e.to_string()))?;
    Ok(pem.to_string())
}

/// A self-signed X.509 certificate (PEM) for `key`, shaped like a Norwegian business certificate: subject
/// `CN=<common_name>, O=<common_name>, serialNumber=<org_number>`. For tests and the simulator.
pub fn self_signed_business_cert(
    key: &RsaPrivateKey,
    common_name: &str,
    org_number: &str,
) -> Result<String> {
    let cert_err = |e: rcgen::Error| KeyError::Certificate(e.to_string());
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::InvalidKey(e.to_string()))?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    dn.push(rcgen::DnType::OrganizationName, common_name);
    // 2.5.4.5 serialNumber: where Norwegian business certificates carry the organisation number.
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), org_number);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key_pair).map_err(cert_err)?;
    Ok(cert.pem())
}

/// The DER bytes of the first certificate in an `x5c` array.
pub fn x5c_leaf_der(x5c: &[String]) -> Option<Vec<u8>> {
    x5c.first().and_then(|c| STANDARD.decode(c).ok())
}

/// The RSA public key of a DER certificate (to verify a grant signed with its key).
pub fn cert_public_key(der: &[u8]) -> Result<RsaPublicKey> {
    use rsa::pkcs8::DecodePublicKey;
    // Find the SubjectPublicKeyInfo inside the certificate with rcgen's parser-free approach: walk the DER.
    let spki =
        find_spki(der).ok_or_else(|| KeyError::InvalidKey("no RSA key in certificate".into()))?;
    RsaPublicKey::from_public_key_der(spki).map_err(|e| KeyError::InvalidKey(e.to_string()))
}

/// Returns the SubjectPublicKeyInfo of an X.509 certificate, by walking the TBSCertificate.
fn find_spki(der: &[u8]) -> Option<&[u8]> {
    // Returns (header_len, content_len) of the TLV at the start of `b`.
    fn tlv(b: &[u8]) -> Option<(usize, usize)> {
        let first_len = *b.get(1)?;
        if first_len < 0x80 {
            return Some((2, first_len as usize));
        }
        let n = (first_len & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        Some((2 + n, len))
    }
    fn content(b: &[u8]) -> Option<&[u8]> {
        let (h, l) = tlv(b)?;
        b.get(h..h.checked_add(l)?)
    }
    fn skip(b: &[u8]) -> Option<&[u8]> {
        let (h, l) = tlv(b)?;
        b.get(h.checked_add(l)?..)
    }
    let cert = content(der)?;
    let mut tbs = content(cert)?;
    // [0] version (optional)
    if *tbs.first()? == 0xa0 {
        tbs = skip(tbs)?;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = skip(tbs)?;
    }
    let (h, l) = tlv(tbs)?;
    tbs.get(..h.checked_add(l)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static PrivateJwk {
        static KEY: OnceLock<PrivateJwk> = OnceLock::new();
        KEY.get_or_init(|| generate_key().expect("key generation"))
    }

    #[test]
    fn generated_jwk_is_a_full_private_jwk() {
        let jwk = key();
        let value: serde_json::Value = serde_json::from_str(&jwk.to_json()).expect("json");
        for field in [
            "kty", "n", "e", "d", "p", "q", "dp", "dq", "qi", "kid", "alg", "use",
        ] {
            assert!(
                value.get(field).and_then(|v| v.as_str()).is_some(),
                "{field} missing"
            );
        }
        assert_eq!(value["kty"], "RSA");
        assert_eq!(value["alg"], "RS256");
        assert_eq!(value["use"], "sig");
        assert_eq!(value["e"], "AQAB");
        assert!(uuid::Uuid::parse_str(&jwk.kid).is_ok(), "kid is a UUID");
        assert_eq!(jwk.to_rsa().expect("rsa").n().bits(), 2048);
        // go-jose's order, like digdirator's Secrets.
        assert!(
            jwk.to_json()
                .starts_with(r#"{"use":"sig","kty":"RSA","kid":"#)
        );
    }

    /// The native generator and the pure-Rust one write the same JWK: the same fields in the same
    /// order, unpadded base64url numbers without leading zero bytes, `e` = AQAB, a UUID kid.
    #[test]
    fn native_and_pure_rust_keys_have_the_same_format() {
        let shape = |jwk: &PrivateJwk| -> Vec<(String, usize)> {
            let v: serde_json::Value = serde_json::from_str(&jwk.to_json()).expect("json");
            v.as_object()
                .expect("object")
                .iter()
                .map(|(k, v)| {
                    let s = v.as_str().expect("string");
                    let len = match k.as_str() {
                        "n" | "d" | "p" | "q" | "dp" | "dq" | "qi" => {
                            assert!(!s.contains('='), "{k} is unpadded");
                            let bytes = URL_SAFE_NO_PAD.decode(s).expect("base64url");
                            assert_ne!(bytes[0], 0, "{k} has no leading zero byte");
                            usize::from(k == "n") * bytes.len()
                        }
                        _ => 0,
                    };
                    (k.clone(), len)
                })
                .collect()
        };
        let native = generate_key().expect("native key");
        let pure = generate_key_pure_rust().expect("pure-Rust key");
        assert_eq!(shape(&native), shape(&pure));
        assert_eq!(
            shape(&native)[4],
            ("n".to_string(), 256),
            "a 2048-bit modulus"
        );
        for jwk in [&native, &pure] {
            assert_eq!((jwk.e.as_str(), jwk.alg.as_str()), ("AQAB", "RS256"));
            assert!(uuid::Uuid::parse_str(&jwk.kid).is_ok());
            PrivateJwk::from_json(&jwk.to_json()).expect("parses and validates");
        }
        assert_ne!(native.n, pure.n);
        assert_ne!(native.n, key().n, "every key is new");
    }

    #[test]
    fn jwk_round_trips_through_json() {
        let jwk = key();
        let back = PrivateJwk::from_json(&jwk.to_json()).expect("parse");
        assert_eq!(&back, jwk);
        assert_eq!(back.to_json(), jwk.to_json());
    }

    #[test]
    fn parse_names_the_bad_field() {
        let mut value: serde_json::Value = serde_json::from_str(&key().to_json()).expect("json");
        value.as_object_mut().expect("object").remove("kid");
        let err = PrivateJwk::from_json(&value.to_string()).expect_err("no kid");
        assert!(err.to_string().contains("`kid` is missing"), "{err}");

        let mut value: serde_json::Value = serde_json::from_str(&key().to_json()).expect("json");
        value["q"] = serde_json::Value::String(key().p.clone());
        let err = PrivateJwk::from_json(&value.to_string()).expect_err("bad q");
        assert!(err.to_string().contains("inconsistent"), "{err}");

        assert!(PrivateJwk::from_json("not json").is_err());
    }

    #[test]
    fn public_jwk_has_only_public_fields() {
        let public = serde_json::to_value(key().public()).expect("json");
        let mut fields: Vec<_> = public
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        fields.sort();
        assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);
    }

    #[test]
    fn jwt_verifies_with_the_public_jwk() {
        let jwk = key();
        let claims = serde_json::json!({"iss": "me", "aud": "you", "exp": 4_000_000_000i64});
        let token = jwk.sign_jwt(&claims).expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(jwk.kid.as_str()));
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);

        // Verify through jsonwebtoken's own JWK type, as an app's library would.
        let public_json = serde_json::to_string(&jwk.public()).expect("json");
        let jwk_lib: jsonwebtoken::jwk::Jwk = serde_json::from_str(&public_json).expect("jwk");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk_lib).expect("decoding key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["you"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
            .expect("verifies");
        assert_eq!(data.claims["iss"], "me");

        // And a different key does not verify it.
        let other = generate_key().expect("key");
        let wrong = other.public().decoding_key().expect("decoding key");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &wrong, &validation).is_err());
    }

    #[tokio::test]
    async fn file_signer_with_certificate_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rsa = key().to_rsa().expect("rsa");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, rsa_key_to_pem(&rsa).expect("pem")).expect("write");
        let cert = self_signed_business_cert(&rsa, "PORTVAKT TEST", "889640782").expect("cert");
        let chain_path = dir.path().join("chain.pem");
        std::fs::write(&chain_path, format!("{cert}{cert}")).expect("write");

        let signer = FileSigner::from_files(&key_path, Some(&chain_path), None).expect("signer");
        let KeyReference::X5c(chain) = signer.key_reference() else {
            panic!("expected x5c");
        };
        assert_eq!(chain.len(), 2);
        let leaf = x5c_leaf_der(&chain).expect("leaf");
        assert_eq!(cert_public_key(&leaf).expect("spki"), rsa.to_public_key());

        let header = signer.header();
        assert!(header.kid.is_none());
        let token = signer
            .sign(&header, &serde_json::json!({"exp": 4_000_000_000i64}))
            .await
            .expect("sign");
        let decoded = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(decoded.x5c, Some(chain));
        let public = key().public().decoding_key().expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &public, &validation).expect("verifies");

        // A JWK file works as the key too, referenced by its kid.
        let jwk_path = dir.path().join("key.json");
        std::fs::write(&jwk_path, key().to_json()).expect("write");
        let signer = FileSigner::from_files(&jwk_path, None, None).expect("signer");
        assert_eq!(signer.key_reference(), KeyReference::Kid(key().kid.clone()));

        // Missing files and garbage are errors naming the file.
        let err = FileSigner::from_files(&dir.path().join("nope"), None, Some("k".into()))
            .expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
        std::fs::write(&chain_path, "garbage").expect("write");
        let err = FileSigner::from_files(&key_path, Some(&chain_path), None).expect_err("chain");
        assert!(err.to_string().contains("chain.pem"), "{err}");
    }
}
