//! The certificate credential azurerator makes (azurerator.md §4.1) and the JWK it hands out.
//!
//! A self-signed X.509 certificate for an RSA-2048 key (serial random, valid from the day before for
//! a year, key usage digitalSignature, extended key usage clientAuth, not a CA), registered in Entra
//! as a `keyCredential`. Apps get the **private** JWK: `use: sig`, `kty: RSA`, `kid` = `x5t` (the
//! base64url SHA-1 of the certificate, the thumbprint Entra finds the certificate by), `alg: RS256`,
//! `n`, `e`, `d`, `p`, `q`, `dp`, `dq`, `qi`, `x5c` (the certificate), `x5t`, `x5t#S256`, in go-jose's
//! order. The subject is `CN=<name>.<namespace>.<cluster>` (azurerator's own organisation fields are
//! left out: no client reads them).
//!
//! Pure computation: the key comes from the shared key generator, the time is passed in.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::core::Key;
use crate::keys::PrivateJwk;

/// The JWK in the Secret (`AZURE_APP_JWK`), go-jose's field order: the private key's fields
/// (the same as Digdir's JWK), then the certificate's.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraJwk {
    #[serde(flatten)]
    pub key: PrivateJwk,
    pub x5c: Vec<String>,
    pub x5t: String,
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

impl std::fmt::Debug for EntraJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraJwk")
            .field("kid", &self.key.kid)
            .finish_non_exhaustive()
    }
}

/// A certificate credential: the JWK for the Secret and the certificate for Graph.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey {
    pub jwk: EntraJwk,
    /// The JWK's JSON exactly as it goes into (or came from) the Secret.
    pub jwk_json: String,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey")
            .field("x5t", &self.jwk.x5t)
            .finish_non_exhaustive()
    }
}

/// base64url (no padding) SHA-1 of a DER certificate.
pub fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der))
}

/// base64url SHA-256 of a DER certificate.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// The certificate for `key` (the subject `common_name`, valid from the day before `now` for a
/// year) and its JWK.
pub fn certificate_key(
    key: &Key,
    common_name: &str,
    now: Timestamp,
) -> Result<CertificateKey, String> {
    let jwk = PrivateJwk::from_json(&key.private_json).map_err(|e| e.to_string())?;
    let rsa = jwk.to_rsa().map_err(|e| e.to_string())?;
    use rsa::pkcs8::EncodePrivateKey as _;
    let pkcs8 = rsa.to_pkcs8_der().map_err(|e| e.to_string())?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let date = |days: i64| {
        let day = now
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap_or(now)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        rcgen::date_time_ymd(i32::from(day.year()), day.month() as u8, day.day() as u8)
    };
    params.not_before = date(-1);
    params.not_after = date(365);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.self_signed(&pair).map_err(|e| e.to_string())?;
    let der = cert.der().to_vec();
    let thumb = x5t(&der);
    let out = EntraJwk {
        key: PrivateJwk {
            use_: "sig".into(),
            kty: "RSA".into(),
            kid: thumb.clone(),
            alg: "RS256".into(),
            ..jwk
        },
        x5c: vec![STANDARD.encode(&der)],
        x5t: thumb,
        x5t_s256: x5t_s256(&der),
    };
    let jwk_json = serde_json::to_string(&out).map_err(|e| e.to_string())?;
    Ok(CertificateKey {
        jwk: out,
        jwk_json,
        cert_der: der,
    })
}

/// Reads a JWK from a Secret: a valid private RSA key with its certificate in `x5c`, the key the
/// certificate's. Errors say what is wrong (never the key).
pub fn parse_jwk(json: &str) -> Result<CertificateKey, String> {
    // The private key's fields are checked by the shared JWK reader.
    let private = PrivateJwk::from_json(json).map_err(|e| e.to_string())?;
    let jwk: EntraJwk = serde_json::from_str(json).map_err(|e| format!("JWK: {e}"))?;
    let der = jwk
        .x5c
        .first()
        .and_then(|c| STANDARD.decode(c).ok())
        .ok_or("JWK: x5c holds no certificate")?;
    let public = crate::keys::cert_public_key(&der).map_err(|e| e.to_string())?;
    let rsa = private.to_rsa().map_err(|e| e.to_string())?;
    if public != rsa.to_public_key() {
        return Err("JWK: the certificate in x5c is not the key's".into());
    }
    Ok(CertificateKey {
        jwk,
        jwk_json: json.to_string(),
        cert_der: der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_jwk_is_a_full_private_key_with_its_certificate_and_kid_x5t() {
        let key = Key::from_private(&crate::keys::generate_key().unwrap());
        let c = certificate_key(&key, "a.team.dev", now()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&c.jwk_json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "use", "kty", "kid", "alg", "n", "e", "d", "p", "q", "dp", "dq", "qi", "x5c",
                "x5t", "x5t#S256"
            ]
        );
        assert_eq!(v["kid"], v["x5t"]);
        assert_eq!(v["alg"], "RS256");
        assert_eq!(v["use"], "sig");
        assert_eq!(c.jwk.x5t, x5t(&c.cert_der));
        assert_eq!(
            crate::keys::cert_public_key(&c.cert_der).unwrap(),
            key.public.to_rsa().unwrap()
        );
        // It reads back, and a certificate of another key is refused.
        assert_eq!(parse_jwk(&c.jwk_json).unwrap().cert_der, c.cert_der);
        let other = certificate_key(
            &Key::from_private(&crate::keys::generate_key().unwrap()),
            "x",
            now(),
        )
        .unwrap();
        let mut mixed = c.jwk.clone();
        mixed.x5c = other.jwk.x5c.clone();
        let err = parse_jwk(&serde_json::to_string(&mixed).unwrap()).unwrap_err();
        assert!(err.contains("not the key's"), "{err}");
        assert!(!format!("{c:?}").contains(&c.jwk.key.d));
    }
}
