//! The Secret of an AzureAdApplication, exactly as azurerator writes it (azurerator.md §5).
//!
//! Name `spec.secretName`, type Opaque, labels `app=<name>` and `type=azurerator.nais.io`, annotation
//! `reloader.stakater.com/match: "true"`, a controller owner reference to the resource, and 16 keys
//! with prefix `P` (`secretKeyPrefix` upper-cased without a trailing `_`, `AZURE` when empty):
//! `P_APP_CLIENT_ID`, `P_APP_CLIENT_SECRET`, `P_APP_JWK`, `P_APP_JWKS`, `P_APP_PASSWORD_KEY_ID`,
//! `P_APP_CERTIFICATE_KEY_ID`, `P_APP_NEXT_CLIENT_SECRET`, `P_APP_NEXT_JWK`,
//! `P_APP_NEXT_PASSWORD_KEY_ID`, `P_APP_NEXT_CERTIFICATE_KEY_ID`, `P_APP_PRE_AUTHORIZED_APPS`,
//! `P_APP_TENANT_ID`, `P_APP_WELL_KNOWN_URL`, `P_OPENID_CONFIG_ISSUER`, `P_OPENID_CONFIG_JWKS_URI`,
//! `P_OPENID_CONFIG_TOKEN_ENDPOINT`.
//!
//! portvakt adds one annotation of its own when a Secret was rewritten in place
//! ([`ANN_REPLACED_CREDENTIALS`]: the key ids it held before, never a secret), so credentials a
//! running Pod may still hold are not revoked.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

use super::Config;
use super::certificate::parse_jwk;
use super::credentials::{CredentialSet, Credentials, KeyIds, Replaced};
use crate::core::ownership::{OwnerId, is_controlled_by};
use crate::crd::API_VERSION;

pub const KIND: &str = "AzureAdApplication";
pub const LABEL_APP: &str = "app";
pub const LABEL_TYPE: &str = "type";
pub const RELOADER_ANNOTATION: &str = "reloader.stakater.com/match";
/// Key ids the Secret held before an in-place rewrite, and when (JSON list).
pub const ANN_REPLACED_CREDENTIALS: &str = "portvakt.nais.io/replaced-credentials";

/// The key prefix for `secretKeyPrefix` (azurerator: `ToUpper(TrimSuffix(prefix, "_"))`, default `AZURE`).
pub fn prefix(secret_key_prefix: Option<&str>) -> String {
    let p = secret_key_prefix.unwrap_or_default();
    let p = p.strip_suffix('_').unwrap_or(p).to_uppercase();
    if p.is_empty() { "AZURE".into() } else { p }
}

/// The 16 key names for prefix `p`, in azurerator's order.
pub fn key_names(p: &str) -> [String; 16] {
    [
        format!("{p}_APP_CLIENT_ID"),
        format!("{p}_APP_CLIENT_SECRET"),
        format!("{p}_APP_JWK"),
        format!("{p}_APP_JWKS"),
        format!("{p}_APP_PASSWORD_KEY_ID"),
        format!("{p}_APP_CERTIFICATE_KEY_ID"),
        format!("{p}_APP_NEXT_CLIENT_SECRET"),
        format!("{p}_APP_NEXT_JWK"),
        format!("{p}_APP_NEXT_PASSWORD_KEY_ID"),
        format!("{p}_APP_NEXT_CERTIFICATE_KEY_ID"),
        format!("{p}_APP_PRE_AUTHORIZED_APPS"),
        format!("{p}_APP_TENANT_ID"),
        format!("{p}_APP_WELL_KNOWN_URL"),
        format!("{p}_OPENID_CONFIG_ISSUER"),
        format!("{p}_OPENID_CONFIG_JWKS_URI"),
        format!("{p}_OPENID_CONFIG_TOKEN_ENDPOINT"),
    ]
}

/// The resource a Secret belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Labels of the Secrets, also the selector of managed Secrets.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP.to_string(), name.to_string()),
        (LABEL_TYPE.to_string(), super::SECRET_TYPE_LABEL.to_string()),
    ])
}

/// Whether a Secret is a managed Secret of this resource: both labels, owned by it.
pub fn is_managed(meta: &ObjectMeta, name: &str) -> bool {
    let l = meta.labels.as_ref();
    let has = |k: &str, v: &str| l.and_then(|l| l.get(k)).is_some_and(|x| x == v);
    has(LABEL_APP, name)
        && has(LABEL_TYPE, super::SECRET_TYPE_LABEL)
        && is_controlled_by(
            meta,
            OwnerId {
                api_version: API_VERSION,
                kind: KIND,
                name,
            },
        )
}

/// An entry of `P_APP_PRE_AUTHORIZED_APPS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreAuthorizedEntry {
    pub name: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
}

/// What the Secret is built from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub owner: &'a Owner,
    pub secret_name: &'a str,
    pub prefix: &'a str,
    pub client_id: &'a str,
    pub credentials: &'a Credentials,
    /// The assigned pre-authorized apps, self included.
    pub pre_authorized: &'a [PreAuthorizedEntry],
    /// In-place replacements to remember (written only when there are any, or to clear old ones).
    pub history: &'a [Replaced],
    /// Whether the existing Secret carries the history annotation (then an empty history is written
    /// as `[]` rather than left behind).
    pub had_history: bool,
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

/// The Secret as it should be.
pub fn desired(cfg: &Config, inp: &Inputs<'_>) -> Secret {
    let [
        client_id,
        client_secret,
        jwk,
        jwks,
        password_key_id,
        certificate_key_id,
        next_client_secret,
        next_jwk,
        next_password_key_id,
        next_certificate_key_id,
        pre_authorized,
        tenant_id,
        well_known,
        issuer,
        jwks_uri,
        token_endpoint,
    ] = key_names(inp.prefix);
    let c = inp.credentials;
    let jwks_value = format!("{{\"keys\":[{}]}}", c.current.certificate.jwk_json);
    let pre = serde_json::to_string(inp.pre_authorized).unwrap_or_else(|_| "[]".into());
    let data: BTreeMap<String, ByteString> = [
        (client_id, inp.client_id.to_string()),
        (client_secret, c.current.client_secret.clone()),
        (jwk, c.current.certificate.jwk_json.clone()),
        (jwks, jwks_value),
        (password_key_id, c.current.password_key_id.clone()),
        (certificate_key_id, c.current.certificate_key_id.clone()),
        (next_client_secret, c.next.client_secret.clone()),
        (next_jwk, c.next.certificate.jwk_json.clone()),
        (next_password_key_id, c.next.password_key_id.clone()),
        (next_certificate_key_id, c.next.certificate_key_id.clone()),
        (pre_authorized, pre),
        (tenant_id, cfg.tenant_id.clone()),
        (well_known, cfg.metadata.well_known_url.clone()),
        (issuer, cfg.metadata.issuer.clone()),
        (jwks_uri, cfg.metadata.jwks_uri.clone()),
        (token_endpoint, cfg.metadata.token_endpoint.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k, bytes(&v)))
    .collect();
    let mut annotations = BTreeMap::from([(RELOADER_ANNOTATION.to_string(), "true".to_string())]);
    if !inp.history.is_empty() || inp.had_history {
        annotations.insert(
            ANN_REPLACED_CREDENTIALS.to_string(),
            serde_json::to_string(inp.history).unwrap_or_else(|_| "[]".into()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(inp.secret_name.to_string()),
            namespace: Some(inp.owner.namespace.clone()),
            labels: Some(labels(&inp.owner.name)),
            annotations: Some(annotations),
            owner_references: Some(vec![inp.owner.owner_reference()]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

/// The prefix a Secret was written with (the key ending in `_APP_CLIENT_ID`), so a Secret written
/// before `secretKeyPrefix` changed still reads.
pub fn prefix_of(secret: &Secret) -> Option<String> {
    secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .find_map(|k| k.strip_suffix("_APP_CLIENT_ID").map(str::to_string))
}

/// The client id a Secret holds.
pub fn client_id(secret: &Secret) -> Option<String> {
    let p = prefix_of(secret)?;
    value(secret, &format!("{p}_APP_CLIENT_ID")).filter(|v| !v.is_empty())
}

/// The tenant id a Secret holds (`P_APP_TENANT_ID`): the tenant its credentials were made in.
pub fn tenant_id(secret: &Secret) -> Option<String> {
    let p = prefix_of(secret)?;
    value(secret, &format!("{p}_APP_TENANT_ID")).filter(|v| !v.is_empty())
}

/// The current and next sets of a Secret, when all eight values are there and both JWKs are
/// valid keys with their certificates (azurerator's "latest credentials").
pub fn read_credentials(secret: &Secret) -> Option<Credentials> {
    let p = prefix_of(secret)?;
    let get = |k: &str| value(secret, &format!("{p}_APP_{k}")).filter(|v| !v.is_empty());
    let set = |next: bool| -> Option<CredentialSet> {
        let n = if next { "NEXT_" } else { "" };
        Some(CredentialSet {
            client_secret: get(&format!("{n}CLIENT_SECRET"))?,
            password_key_id: get(&format!("{n}PASSWORD_KEY_ID"))?,
            certificate_key_id: get(&format!("{n}CERTIFICATE_KEY_ID"))?,
            certificate: parse_jwk(&get(&format!("{n}JWK"))?).ok()?,
        })
    };
    Some(Credentials {
        current: set(false)?,
        next: set(true)?,
    })
}

/// Every key id a Secret names (current and next, whatever its prefix): what a workload that
/// references it may hold.
pub fn key_ids(secret: &Secret) -> KeyIds {
    let mut out = KeyIds::default();
    for (k, v) in secret.data.iter().flatten() {
        let v = String::from_utf8_lossy(&v.0).into_owned();
        if v.is_empty() {
            continue;
        }
        if k.ends_with("_APP_PASSWORD_KEY_ID") || k.ends_with("_APP_NEXT_PASSWORD_KEY_ID") {
            out.passwords.push(v);
        } else if k.ends_with("_APP_CERTIFICATE_KEY_ID")
            || k.ends_with("_APP_NEXT_CERTIFICATE_KEY_ID")
        {
            out.certificates.push(v);
        }
    }
    out
}

/// The in-place history a Secret carries (unreadable: none).
pub fn history(secret: &Secret) -> Vec<Replaced> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_REPLACED_CREDENTIALS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Whether a Secret carries the history annotation at all.
pub fn has_history_annotation(secret: &Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANN_REPLACED_CREDENTIALS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entra::certificate::certificate_key;
    use crate::core::{Key, ProviderMetadata};

    fn cert() -> super::super::certificate::CertificateKey {
        certificate_key(
            &Key::from_private(&crate::keys::generate_key().unwrap()),
            "a.team.dev",
            "2026-03-01T10:00:00Z".parse().unwrap(),
        )
        .unwrap()
    }

    fn creds() -> Credentials {
        let c = cert();
        let n = cert();
        Credentials {
            current: CredentialSet {
                client_secret: "cur~secret".into(),
                password_key_id: "pw-1".into(),
                certificate_key_id: "cert-1".into(),
                certificate: c,
            },
            next: CredentialSet {
                client_secret: "next~secret".into(),
                password_key_id: "pw-2".into(),
                certificate_key_id: "cert-2".into(),
                certificate: n,
            },
        }
    }

    fn cfg() -> Config {
        Config {
            tenant_id: "tid".into(),
            metadata: ProviderMetadata {
                well_known_url: "https://login.example/tid/v2.0/.well-known/openid-configuration"
                    .into(),
                issuer: "https://login.example/tid/v2.0".into(),
                jwks_uri: "https://login.example/tid/discovery/v2.0/keys".into(),
                token_endpoint: "https://login.example/tid/oauth2/v2.0/token".into(),
            },
            ..Config::default()
        }
    }

    fn owner() -> Owner {
        Owner {
            namespace: "team".into(),
            name: "a".into(),
            uid: "uid-1".into(),
        }
    }

    fn data(s: &Secret, k: &str) -> String {
        String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap()
    }

    #[test]
    fn prefixes_follow_azurerator() {
        assert_eq!(prefix(None), "AZURE");
        assert_eq!(prefix(Some("")), "AZURE");
        assert_eq!(prefix(Some("my_")), "MY");
        assert_eq!(prefix(Some("Other")), "OTHER");
        assert_eq!(key_names("MY")[13], "MY_OPENID_CONFIG_ISSUER");
    }

    #[test]
    fn the_secret_has_azurerators_sixteen_keys_labels_and_owner() {
        let c = creds();
        let o = owner();
        let pre = vec![PreAuthorizedEntry {
            name: "dev:team:b".into(),
            client_id: "cid-b".into(),
        }];
        let s = desired(
            &cfg(),
            &Inputs {
                owner: &o,
                secret_name: "a-secret",
                prefix: "AZURE",
                client_id: "cid-a",
                credentials: &c,
                pre_authorized: &pre,
                history: &[],
                had_history: false,
            },
        );
        let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys.len(), 16);
        let mut expected: Vec<String> = key_names("AZURE").to_vec();
        expected.sort();
        assert_eq!(keys, expected.iter().collect::<Vec<_>>());
        assert_eq!(data(&s, "AZURE_APP_CLIENT_ID"), "cid-a");
        assert_eq!(data(&s, "AZURE_APP_CLIENT_SECRET"), "cur~secret");
        assert_eq!(data(&s, "AZURE_APP_NEXT_PASSWORD_KEY_ID"), "pw-2");
        assert_eq!(
            data(&s, "AZURE_APP_PRE_AUTHORIZED_APPS"),
            r#"[{"name":"dev:team:b","clientId":"cid-b"}]"#
        );
        let jwks: serde_json::Value = serde_json::from_str(&data(&s, "AZURE_APP_JWKS")).unwrap();
        assert_eq!(
            jwks["keys"][0]["kid"],
            c.current.certificate.jwk.key.kid.as_str()
        );
        assert_eq!(data(&s, "AZURE_APP_TENANT_ID"), "tid");
        assert_eq!(
            data(&s, "AZURE_OPENID_CONFIG_TOKEN_ENDPOINT"),
            "https://login.example/tid/oauth2/v2.0/token"
        );
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["type"],
            "azurerator.nais.io"
        );
        assert_eq!(s.metadata.labels.as_ref().unwrap()["app"], "a");
        let ann = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1, "no history annotation without history");
        assert_eq!(ann[RELOADER_ANNOTATION], "true");
        let r = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.controller),
            ("AzureAdApplication", Some(true))
        );
        assert!(is_managed(&s.metadata, "a"));
        assert!(!is_managed(&s.metadata, "b"));

        // It reads back; key ids of both sets; the prefix is found from the keys.
        assert_eq!(read_credentials(&s), Some(c.clone()));
        assert_eq!(prefix_of(&s).as_deref(), Some("AZURE"));
        assert_eq!(client_id(&s).as_deref(), Some("cid-a"));
        let mut ids = key_ids(&s);
        ids.passwords.sort();
        assert_eq!(ids.passwords, vec!["pw-1", "pw-2"]);
        // A Secret missing a value, or with a broken JWK, has no usable credentials.
        let mut broken = s.clone();
        broken
            .data
            .as_mut()
            .unwrap()
            .remove("AZURE_APP_NEXT_CLIENT_SECRET");
        assert_eq!(read_credentials(&broken), None);
        let mut broken = s.clone();
        broken
            .data
            .as_mut()
            .unwrap()
            .insert("AZURE_APP_JWK".into(), bytes("{\"kty\":\"RSA\"}"));
        assert_eq!(read_credentials(&broken), None);
    }

    #[test]
    fn a_prefixed_secret_and_its_history() {
        let c = creds();
        let o = owner();
        let h = vec![Replaced {
            at: "2026-03-01T10:00:00Z".parse().unwrap(),
            ids: KeyIds {
                passwords: vec!["pw-0".into()],
                certificates: vec!["cert-0".into()],
            },
        }];
        let s = desired(
            &cfg(),
            &Inputs {
                owner: &o,
                secret_name: "a-secret",
                prefix: &prefix(Some("my_")),
                client_id: "cid-a",
                credentials: &c,
                pre_authorized: &[],
                history: &h,
                had_history: false,
            },
        );
        assert!(
            s.data
                .as_ref()
                .unwrap()
                .keys()
                .all(|k| k.starts_with("MY_"))
        );
        assert_eq!(data(&s, "MY_APP_PRE_AUTHORIZED_APPS"), "[]");
        assert_eq!(read_credentials(&s), Some(c.clone()));
        assert_eq!(history(&s), h);
        let text = s.metadata.annotations.as_ref().unwrap()[ANN_REPLACED_CREDENTIALS].clone();
        assert!(!text.contains("secret"), "only key ids: {text}");
        // Once the history is empty it is written as [] (not left behind).
        let s2 = desired(
            &cfg(),
            &Inputs {
                owner: &o,
                secret_name: "a-secret",
                prefix: "MY",
                client_id: "cid-a",
                credentials: &c,
                pre_authorized: &[],
                history: &[],
                had_history: true,
            },
        );
        assert_eq!(
            s2.metadata.annotations.as_ref().unwrap()[ANN_REPLACED_CREDENTIALS],
            "[]"
        );
        assert!(history(&s2).is_empty());
    }
}
