//! Certificates as Entra sees them: thumbprints (`x5t` = base64url SHA-1 of the DER, `x5t#S256` =
//! base64url SHA-256), the certificate inside a `keyCredential.key` (base64 of DER, or of PEM text as
//! azurerator sends it), and self-signed test certificates.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use sha1::Digest as _;

use super::error::SimError;
use crate::jwt::RsaKey;

/// base64url SHA-1 of a DER certificate: the `x5t` header.
pub fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der))
}

/// base64url SHA-256 of a DER certificate: the `x5t#S256` header.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// Upper-case hex SHA-1, as Entra prints thumbprints in its messages.
pub fn hex_thumbprint(der: &[u8]) -> String {
    sha1::Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// What the simulator keeps of a certificate.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    pub der: Vec<u8>,
    /// base64url `n` and `e` of the RSA key.
    pub n: String,
    pub e: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// Decodes a `keyCredential.key`: standard base64 of a DER certificate, or of its PEM text.
pub fn parse_key_credential(key: &str) -> Result<ParsedCert, String> {
    let bytes = STANDARD
        .decode(key.trim())
        .map_err(|_| "key is not base64".to_string())?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        pem_to_der(&text).ok_or_else(|| "key holds PEM text without a CERTIFICATE".to_string())?
    } else {
        bytes
    };
    parse_der(&der)
}

fn pem_to_der(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// Parses a DER X.509 certificate with an RSA key.
pub fn parse_der(der: &[u8]) -> Result<ParsedCert, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        parse_x509_certificate(der).map_err(|_| "key is not an X.509 certificate".to_string())?;
    let public = cert
        .public_key()
        .parsed()
        .map_err(|e| format!("certificate key: {e}"))?;
    let x509_parser::public_key::PublicKey::RSA(rsa) = public else {
        return Err("the certificate's key is not RSA".into());
    };
    let strip = |b: &[u8]| {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        URL_SAFE_NO_PAD.encode(&b[start..])
    };
    let ts = |t: ASN1Time| Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(ParsedCert {
        der: der.to_vec(),
        n: strip(rsa.modulus),
        e: strip(rsa.exponent),
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
    })
}

/// A self-signed RSA certificate with its key, for tests (an operator's or an app's certificate).
#[derive(Clone)]
pub struct TestCertificate {
    pub key: RsaKey,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate")
            .field("x5t", &self.x5t())
            .finish_non_exhaustive()
    }
}

impl TestCertificate {
    /// A fresh RSA-2048 key and a certificate for `common_name`, valid from a day ago for
    /// `valid_days` days.
    pub fn generate(common_name: &str, valid_days: i64) -> Result<Self, SimError> {
        let key = RsaKey::generate(uuid::Uuid::new_v4().to_string())?;
        Self::for_key(key, common_name, valid_days)
    }

    pub fn for_key(key: RsaKey, common_name: &str, valid_days: i64) -> Result<Self, SimError> {
        let cert_err = |e: rcgen::Error| SimError::Crypto(e.to_string());
        use rustls::pki_types::pem::PemObject as _;
        let key_pem = key.private_key_pem()?;
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| SimError::Crypto(e.to_string()))?;
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .map_err(cert_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        // Midnight UTC of the day `days` from now, in rcgen's date type.
        let date = |days: i64| {
            let now = Timestamp::now();
            let day = now
                .checked_add(jiff::SignedDuration::from_hours(24 * days))
                .unwrap_or(now)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date();
            rcgen::date_time_ymd(i32::from(day.year()), day.month() as u8, day.day() as u8)
        };
        params.not_before = date(-1);
        params.not_after = date(valid_days);
        let cert = params.self_signed(&pair).map_err(cert_err)?;
        Ok(Self {
            key_pem,
            key,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        })
    }

    pub fn x5t(&self) -> String {
        x5t(&self.cert_der)
    }

    pub fn x5t_s256(&self) -> String {
        x5t_s256(&self.cert_der)
    }

    /// The certificate as `keyCredential.key` wants it (standard base64 of the DER).
    pub fn key_credential_value(&self) -> String {
        STANDARD.encode(&self.cert_der)
    }
}
