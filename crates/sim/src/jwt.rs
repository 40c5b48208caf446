//! Keys, certificates and JWTs shared by the simulators: signing keys, the test CA that
//! issues business certificates, JWK conversion, and JWT signature checks.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use serde_json::{Value, json};

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key pair with a `kid`: the simulator's signing keys, and a helper for tests
/// that need a client key.
#[derive(Clone)]
pub struct RsaKey {
    pub kid: String,
    key: RsaPrivateKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("kid", &self.kid).finish()
    }
}

impl RsaKey {
    /// A fresh RSA-2048 key.
    pub fn generate(kid: impl Into<String>) -> Result<Self, CryptoError> {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        Self::from_private(kid.into(), key)
    }

    fn from_private(kid: String, key: RsaPrivateKey) -> Result<Self, CryptoError> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        Ok(Self { kid, key, encoding })
    }

    /// From a private JWK (`n`, `e`, `d`, `p`, `q`), as the Secrets hold it.
    pub fn from_private_jwk(jwk: &Value) -> Result<Self, CryptoError> {
        let part = |name: &str| -> Result<BigUint, CryptoError> {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| CryptoError::InvalidJwk(format!("missing `{name}`")))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| CryptoError::InvalidJwk(format!("`{name}` is not base64url")))?;
            Ok(BigUint::from_bytes_be(&bytes))
        };
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = RsaPrivateKey::from_components(
            part("n")?,
            part("e")?,
            part("d")?,
            vec![part("p")?, part("q")?],
        )
        .map_err(|e| CryptoError::InvalidJwk(e.to_string()))?;
        Self::from_private(kid, key)
    }

    pub fn private_key_pem(&self) -> Result<String, CryptoError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| CryptoError::Key(e.to_string()))
    }

    pub fn n(&self) -> String {
        b64u(&self.key.n().to_bytes_be())
    }
    pub fn e(&self) -> String {
        b64u(&self.key.e().to_bytes_be())
    }

    /// The public JWK as Digdir wants it posted.
    pub fn public_jwk(&self) -> Value {
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": self.n(), "e": self.e()})
    }

    /// The full private JWK (n, e, d, p, q, dp, dq, qi, kid, alg, use).
    pub fn private_jwk(&self) -> Value {
        let primes = self.key.primes();
        let mut jwk = self.public_jwk();
        if let Some(map) = jwk.as_object_mut() {
            map.insert("d".into(), b64u(&self.key.d().to_bytes_be()).into());
            if let [p, q, ..] = primes {
                map.insert("p".into(), b64u(&p.to_bytes_be()).into());
                map.insert("q".into(), b64u(&q.to_bytes_be()).into());
            }
            if let Some(dp) = self.key.dp() {
                map.insert("dp".into(), b64u(&dp.to_bytes_be()).into());
            }
            if let Some(dq) = self.key.dq() {
                map.insert("dq".into(), b64u(&dq.to_bytes_be()).into());
            }
            if let Some(qi) = self.key.crt_coefficient() {
                map.insert("qi".into(), b64u(&qi.to_bytes_be()).into());
            }
        }
        jwk
    }

    /// Signs `claims` with RS256 and this key's `kid` in the header.
    pub fn sign(&self, claims: &Value) -> Result<String, CryptoError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        self.sign_with_header(&header, claims)
    }

    /// Signs with a caller-built header (e.g. `x5c` instead of `kid`).
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> Result<String, CryptoError> {
        jsonwebtoken::encode(header, claims, &self.encoding)
            .map_err(|e| CryptoError::Jwt(e.to_string()))
    }

    /// The RSASSA-PKCS1-v1_5 signature of a SHA-256 `digest` (what a KMS signs: the hash, not the message).
    pub fn sign_sha256_digest(&self, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest)
            .map_err(|e| CryptoError::Key(e.to_string()))
    }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> Result<String, CryptoError> {
        use rsa::pkcs8::EncodePublicKey;
        self.key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| CryptoError::Key(e.to_string()))
    }

    pub(crate) fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, CryptoError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        rcgen::KeyPair::try_from(der.as_bytes()).map_err(|e| CryptoError::Key(e.to_string()))
    }
}

/// The simulator's certificate authority, standing in for Buypass/Commfides.
pub struct TestCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
}

/// OID of the X.520 `serialNumber` attribute, where Norwegian business certificates carry
/// the organisation number.
const OID_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];

impl TestCa {
    pub fn generate() -> Result<Self, CryptoError> {
        let key =
            rcgen::KeyPair::generate().map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "portvakt Digdir simulator test CA",
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "portvakt simulator");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2080, 1, 1);
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
            params,
        })
    }

    /// A business certificate for `orgno` on `subject_key`; returns (DER, PEM).
    pub fn issue_business_certificate(
        &self,
        orgno: &str,
        org_name: &str,
        subject_key: &RsaKey,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        self.issue_for(orgno, org_name, &subject_key.rcgen_key_pair()?)
    }

    /// A business certificate for `orgno` on the RSA public key `n`/`e` (base64url, as in a JWK): for a key
    /// whose private half the simulator never sees (one held in a KMS). Returns (DER, PEM).
    pub fn issue_business_certificate_for_public_key(
        &self,
        orgno: &str,
        org_name: &str,
        n: &str,
        e: &str,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        use rsa::pkcs1::EncodeRsaPublicKey;
        let part = |name: &str, text: &str| -> Result<BigUint, CryptoError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| CryptoError::InvalidJwk(format!("`{name}` is not base64url")))?;
            Ok(BigUint::from_bytes_be(&bytes))
        };
        let public = rsa::RsaPublicKey::new(part("n", n)?, part("e", e)?)
            .map_err(|e| CryptoError::InvalidJwk(e.to_string()))?;
        let der = public
            .to_pkcs1_der()
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        self.issue_for(orgno, org_name, &RsaPublicKeyData(der.as_bytes().to_vec()))
    }

    fn issue_for(
        &self,
        orgno: &str,
        org_name: &str,
        public: &impl rcgen::PublicKeyData,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{org_name} TEST"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org_name);
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
            orgno,
        );
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2080, 1, 1);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(public, &issuer).map_err(cert_err)?;
        Ok((cert.der().to_vec(), cert.pem()))
    }
}

/// An RSA public key (PKCS#1 `RSAPublicKey` DER) as rcgen wants a certificate's subject key.
struct RsaPublicKeyData(Vec<u8>);

impl rcgen::PublicKeyData for RsaPublicKeyData {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

fn cert_err(e: rcgen::Error) -> CryptoError {
    CryptoError::Certificate(e.to_string())
}

/// What a verified `x5c` chain yields.
pub struct VerifiedCert {
    pub orgno: Option<String>,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// Verifies a certificate chain (leaf first, DER) up to `ca_der` at `now_unix`; returns
/// the leaf's organisation number and RSA public key.
pub fn verify_chain(
    chain: &[Vec<u8>],
    ca_der: &[u8],
    now_unix: i64,
) -> Result<VerifiedCert, String> {
    use x509_parser::prelude::*;
    let (_, ca) = parse_x509_certificate(ca_der).map_err(|e| format!("CA: {e}"))?;
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = parse_x509_certificate(der)
            .map_err(|_| format!("x5c[{i}] is not a DER certificate"))?;
        parsed.push(cert);
    }
    let Some(leaf) = parsed.first() else {
        return Err("x5c is empty".into());
    };
    let at = ASN1Time::from_timestamp(now_unix).map_err(|e| e.to_string())?;
    for (i, cert) in parsed.iter().enumerate() {
        if !cert.validity().is_valid_at(at) {
            return Err(format!("certificate x5c[{i}] is not valid now"));
        }
        // The next certificate signs this one, until the chain reaches the trusted CA
        // (which may or may not be included).
        let next_is_ca = chain.get(i + 1).is_none_or(|d| d.as_slice() == ca_der);
        let signer = if next_is_ca {
            Some(&ca)
        } else {
            parsed.get(i + 1)
        };
        let anchored = signer.is_some_and(|s| cert.verify_signature(Some(s.public_key())).is_ok());
        if !anchored {
            return Err(format!(
                "certificate x5c[{i}] is not issued by a trusted CA"
            ));
        }
        if next_is_ca {
            break;
        }
    }
    let orgno = leaf
        .subject()
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .filter_map(|a| a.as_str().ok())
        .map(|s| s.trim_start_matches("NTRNO-").to_string())
        .next();
    let public = leaf.public_key().parsed().map_err(|e| e.to_string())?;
    let x509_parser::public_key::PublicKey::RSA(rsa) = public else {
        return Err("the business certificate's key is not RSA".into());
    };
    let strip = |b: &[u8]| {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    Ok(VerifiedCert {
        orgno,
        n: strip(rsa.modulus),
        e: strip(rsa.exponent),
    })
}

/// Parses a JWT's header as raw JSON (so that a malformed `x5c` or an unsupported `alg`
/// can be reported precisely).
pub fn raw_header(token: &str) -> Result<Value, String> {
    let first = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| "the JWT header is not base64url".to_string())?;
    let header: Value =
        serde_json::from_slice(&bytes).map_err(|_| "the JWT header is not JSON".to_string())?;
    if !header.is_object() {
        return Err("the JWT header is not a JSON object".into());
    }
    Ok(header)
}

/// Parses a JWT's payload without checking it.
pub fn raw_claims(token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("the JWT does not have three parts".into());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url".to_string())?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| "the JWT payload is not JSON".to_string())?;
    if !claims.is_object() {
        return Err("the JWT payload is not a JSON object".into());
    }
    Ok(claims)
}

pub fn parse_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        _ => None,
    }
}

/// Checks the signature only (time claims are checked against the simulator's clock).
pub fn verify_signature(token: &str, alg: Algorithm, key: &DecodingKey) -> bool {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, key, &validation).is_ok()
}

/// A decoding key from JWK-style base64url `n`/`e`.
pub fn decoding_key(n: &str, e: &str) -> Option<DecodingKey> {
    DecodingKey::from_rsa_components(n, e).ok()
}

/// Decodes one `x5c` entry (standard base64, DER).
pub fn x5c_entry(entry: &str) -> Option<Vec<u8>> {
    STANDARD.decode(entry).ok()
}

pub fn x5c_encode(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// Modulus bit length of a base64url `n`.
pub fn modulus_bits(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).ok()?;
    let start = bytes.iter().position(|b| *b != 0)?;
    let lead = bytes[start];
    Some((bytes.len() - start - 1) * 8 + (8 - lead.leading_zeros() as usize))
}

/// base64url(SHA-256(input)), as PKCE S256 uses it.
pub fn s256(input: &str) -> String {
    use sha2::Digest;
    b64u(&sha2::Sha256::digest(input.as_bytes()))
}

pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    b64u(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_certificates_chain_only_to_their_own_ca() {
        let ca = TestCa::generate().expect("ca");
        let other = TestCa::generate().expect("ca");
        let key = RsaKey::generate("k").expect("key");
        let (leaf, _) = ca
            .issue_business_certificate("987654321", "TEST AS", &key)
            .expect("cert");
        let now = jiff::Timestamp::now().as_second();
        let verified = verify_chain(std::slice::from_ref(&leaf), &ca.cert_der, now).expect("valid");
        assert_eq!(verified.orgno.as_deref(), Some("987654321"));
        assert_eq!(b64u(&verified.n), key.n());
        assert!(verify_chain(&[leaf.clone(), ca.cert_der.clone()], &ca.cert_der, now).is_ok());
        assert!(verify_chain(std::slice::from_ref(&leaf), &other.cert_der, now).is_err());
        assert!(verify_chain(&[], &ca.cert_der, now).is_err());
    }

    #[test]
    fn a_certificate_for_a_bare_public_key_carries_that_key() {
        let ca = TestCa::generate().expect("ca");
        let key = RsaKey::generate("k").expect("key");
        let (leaf, _) = ca
            .issue_business_certificate_for_public_key("987654321", "TEST AS", &key.n(), &key.e())
            .expect("cert");
        let now = jiff::Timestamp::now().as_second();
        let verified = verify_chain(std::slice::from_ref(&leaf), &ca.cert_der, now).expect("valid");
        assert_eq!(verified.orgno.as_deref(), Some("987654321"));
        assert_eq!(b64u(&verified.n), key.n());
        assert_eq!(b64u(&verified.e), key.e());
    }

    #[test]
    fn private_jwk_round_trips_and_modulus_bits_are_counted() {
        let key = RsaKey::generate("k").expect("key");
        let again = RsaKey::from_private_jwk(&key.private_jwk()).expect("jwk");
        assert_eq!(again.n(), key.n());
        assert_eq!(again.kid, "k");
        assert_eq!(modulus_bits(&key.n()), Some(2048));
        assert_eq!(modulus_bits("AQAB"), Some(17));
        assert!(RsaKey::from_private_jwk(&key.public_jwk()).is_err());
    }
}

/// Key, certificate and JWT failures of the helpers above.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key generation or encoding failed: {0}")]
    Key(String),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("signing a JWT failed: {0}")]
    Jwt(String),
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
}
