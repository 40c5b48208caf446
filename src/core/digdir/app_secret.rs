//! The Secrets of a Digdir kind, and the rules for touching them.
//!
//! - The app Secret (`spec.secretName`): digdirator's exact keys, labels `app=<name>` and
//!   `type=<kind type>`, annotation `reloader.stakater.com/match: "true"` and a controller owner
//!   reference. It is rewritten only when that would change something ([`needs_write`]), because
//!   Reloader restarts the app's Pods on any data change.
//! - The next-key Secret ([`next_key_secret_name`]): portvakt's own, holding the pre-registered next
//!   key and the registration bookkeeping (see [`super::keyplan`]). It carries the `type` label (so the
//!   owned-Secret watch sees it) but no `app` label, so neither digdirator nor portvakt ever mistakes it
//!   for an app Secret.
//! - "Owned" means a controller owner reference with apiVersion `nais.io/v1`, this kind and this name.
//!   The uid is not compared: uids change when a cluster is restored from backup.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{Config, DigdirKind};
use crate::core::Key;
use crate::core::ownership::{OwnerId, is_controlled_by};
use crate::crd::API_VERSION;

pub const LABEL_APP: &str = "app";
pub const LABEL_TYPE: &str = "type";
pub const RELOADER_ANNOTATION: &str = "reloader.stakater.com/match";

pub const ANN_CLIENT_ID: &str = "portvakt.nais.io/client-id";
pub const ANN_REGISTERED_KIDS: &str = "portvakt.nais.io/registered-kids";
pub const ANN_KEYS_EXPIRE_AT: &str = "portvakt.nais.io/keys-expire-at";
pub const ANN_NEXT_REGISTERED_AT: &str = "portvakt.nais.io/next-key-registered-at";
/// Keys replaced in place that a running Pod may still hold (JSON list; public halves only).
pub const ANN_REPLACED_KEYS: &str = "portvakt.nais.io/replaced-keys";
/// Data key of the next-key Secret holding the private JWK.
pub const NEXT_KEY_DATA: &str = "JWK";

/// The resource a Secret belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: DigdirKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: API_VERSION.into(),
            kind: self.kind.kind().into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The owner identity of a resource of `kind` named `name` (for the ownership rule).
pub fn owner_id(kind: DigdirKind, name: &str) -> OwnerId<'_> {
    OwnerId {
        api_version: API_VERSION,
        kind: kind.kind(),
        name,
    }
}

/// Whether `meta` has a controller owner reference to `kind`/`name` (apiVersion nais.io/v1).
pub fn is_owned_by(meta: &ObjectMeta, kind: DigdirKind, name: &str) -> bool {
    is_controlled_by(meta, owner_id(kind, name))
}

/// Labels of app Secrets, also the selector of managed Secrets.
pub fn app_labels(kind: DigdirKind, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP.to_string(), name.to_string()),
        (LABEL_TYPE.to_string(), kind.secret_type_label().to_string()),
    ])
}

/// Whether a Secret is a managed app Secret of this resource: labels `app` and `type`, owned.
pub fn is_managed_app_secret(meta: &ObjectMeta, kind: DigdirKind, name: &str) -> bool {
    let labels = meta.labels.as_ref();
    let has = |k: &str, v: &str| labels.and_then(|l| l.get(k)).is_some_and(|x| x == v);
    has(LABEL_APP, name)
        && has(LABEL_TYPE, kind.secret_type_label())
        && is_owned_by(meta, kind, name)
}

/// The values an app Secret is built from.
#[derive(Clone, Debug)]
pub struct AppSecretInputs<'a> {
    pub owner: &'a Owner,
    pub secret_name: &'a str,
    pub client_id: &'a str,
    pub key: &'a Key,
    /// IDPortenClient: `IDPORTEN_REDIRECT_URI`. MaskinportenClient: `MASKINPORTEN_SCOPES`.
    pub kind_value: String,
}

/// `IDPORTEN_REDIRECT_URI`: `spec.redirectURI` if set, else `spec.redirectURIs[0]`, else "".
pub fn idporten_redirect_uri(spec: &crate::crd::IDPortenClientSpec) -> String {
    spec.redirect_uri
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| spec.redirect_uris.as_ref().and_then(|l| l.first().cloned()))
        .unwrap_or_default()
}

/// `MASKINPORTEN_SCOPES`: every `consumes` name (valid or not, never the default scope), joined by a
/// single space.
pub fn maskinporten_scopes(spec: &crate::crd::MaskinportenClientSpec) -> String {
    super::registration::maskinporten_consumed(spec).join(" ")
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

/// The app Secret as it should be.
pub fn desired_app_secret(cfg: &Config, inp: &AppSecretInputs<'_>) -> Secret {
    let kind = inp.owner.kind;
    let p = kind.env_prefix();
    let md = cfg.metadata(kind);
    let kind_key = match kind {
        DigdirKind::IDPorten => "REDIRECT_URI",
        DigdirKind::Maskinporten => "SCOPES",
    };
    let data: BTreeMap<String, ByteString> = [
        ("CLIENT_ID", inp.client_id),
        ("CLIENT_JWK", inp.key.private_json.as_str()),
        (kind_key, inp.kind_value.as_str()),
        ("WELL_KNOWN_URL", md.well_known_url.as_str()),
        ("ISSUER", md.issuer.as_str()),
        ("JWKS_URI", md.jwks_uri.as_str()),
        ("TOKEN_ENDPOINT", md.token_endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{p}_{k}"), bytes(v)))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(inp.secret_name.to_string()),
            namespace: Some(inp.owner.namespace.clone()),
            labels: Some(app_labels(kind, &inp.owner.name)),
            annotations: Some(BTreeMap::from([(
                RELOADER_ANNOTATION.to_string(),
                "true".to_string(),
            )])),
            owner_references: Some(vec![inp.owner.owner_reference()]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The private JWK held by an app Secret of `kind`, if any (not validated).
pub fn app_secret_jwk(secret: &Secret, kind: DigdirKind) -> Option<String> {
    let key = format!("{}_CLIENT_JWK", kind.env_prefix());
    let raw = secret.data.as_ref()?.get(&key)?;
    String::from_utf8(raw.0.clone()).ok()
}

/// Name of the next-key Secret: `portvakt-next-<idporten|maskinporten>-<name>`, shortened with a hash
/// when it would exceed the 253 characters of a Secret name.
pub fn next_key_secret_name(kind: DigdirKind, name: &str) -> String {
    let full = format!("portvakt-next-{}-{name}", kind.short());
    if full.len() <= 253 {
        return full;
    }
    let h = crate::core::hash::hash_json_text(&full);
    let keep: String = full.chars().take(253 - 1 - h.len()).collect();
    format!("{}-{h}", keep.trim_end_matches(['-', '.']))
}

/// What portvakt recorded about the keys it registered, kept on the next-key Secret so a steady-state
/// pass needs no JWKS read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The client the record is about; a record about another client is ignored.
    pub client_id: String,
    /// The kids of the last JWKS posted.
    pub registered_kids: Vec<String>,
    /// The earliest expiry Digdir reported for them.
    pub expires_at: Option<Timestamp>,
    /// When the next key was first registered (it is handed out only after the propagation delay).
    pub next_registered_at: Option<Timestamp>,
    /// Keys replaced in place by rotations that a running Pod may still hold.
    pub replaced: Vec<super::keyplan::ReplacedKey>,
}

/// The next key and bookkeeping read from a next-key Secret. A JWK that does not parse counts as no
/// next key (a fresh one replaces it).
pub fn read_next_key_secret(secret: &Secret) -> (Option<Key>, Bookkeeping) {
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let ts = |k: &str| ann.get(k).and_then(|v| v.parse::<Timestamp>().ok());
    let book = Bookkeeping {
        client_id: ann.get(ANN_CLIENT_ID).cloned().unwrap_or_default(),
        registered_kids: ann
            .get(ANN_REGISTERED_KIDS)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        expires_at: ts(ANN_KEYS_EXPIRE_AT),
        next_registered_at: ts(ANN_NEXT_REGISTERED_AT),
        // A record that does not parse is treated as empty: its keys then stay registered only as
        // long as the Secrets holding them say.
        replaced: ann
            .get(ANN_REPLACED_KEYS)
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
    };
    let key = secret
        .data
        .as_ref()
        .and_then(|d| d.get(NEXT_KEY_DATA))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .and_then(|s| Key::parse(&s).ok());
    (key, book)
}

/// The next-key Secret as it should be.
pub fn desired_next_key_secret(owner: &Owner, key: &Key, book: &Bookkeeping) -> Secret {
    let mut ann = BTreeMap::new();
    ann.insert(ANN_CLIENT_ID.to_string(), book.client_id.clone());
    ann.insert(
        ANN_REGISTERED_KIDS.to_string(),
        book.registered_kids.join(","),
    );
    if let Some(t) = book.expires_at {
        ann.insert(ANN_KEYS_EXPIRE_AT.to_string(), t.to_string());
    }
    if let Some(t) = book.next_registered_at {
        ann.insert(ANN_NEXT_REGISTERED_AT.to_string(), t.to_string());
    }
    if !book.replaced.is_empty()
        && let Ok(v) = serde_json::to_string(&book.replaced)
    {
        ann.insert(ANN_REPLACED_KEYS.to_string(), v);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(next_key_secret_name(owner.kind, &owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(BTreeMap::from([(
                LABEL_TYPE.to_string(),
                owner.kind.secret_type_label().to_string(),
            )])),
            annotations: Some(ann),
            owner_references: Some(vec![owner.owner_reference()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            NEXT_KEY_DATA.to_string(),
            bytes(&key.private_json),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Whether the bookkeeping annotations of an existing next-key Secret differ from `book` (the
/// annotations portvakt owns there are replaced, not merged).
pub fn bookkeeping_differs(existing: &Secret, book: &Bookkeeping) -> bool {
    let (_, have) = read_next_key_secret(existing);
    have != *book
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret_content::{merged_for_update, needs_write};

    fn owner() -> Owner {
        Owner {
            kind: DigdirKind::IDPorten,
            namespace: "team".into(),
            name: "app".into(),
            uid: "u1".into(),
        }
    }

    fn cfg() -> Config {
        Config {
            idporten: crate::core::ProviderMetadata {
                well_known_url: "https://test.idporten.no/.well-known/openid-configuration".into(),
                issuer: "https://test.idporten.no".into(),
                jwks_uri: "https://test.idporten.no/jwks.json".into(),
                token_endpoint: "https://test.idporten.no/token".into(),
            },
            ..Config::default()
        }
    }

    #[test]
    fn app_secret_has_digdirators_keys_labels_annotation_owner() {
        let key = Key::placeholder("k1");
        let o = owner();
        let s = desired_app_secret(
            &cfg(),
            &AppSecretInputs {
                owner: &o,
                secret_name: "app-secret",
                client_id: "cid",
                key: &key,
                kind_value: "https://app/cb".into(),
            },
        );
        let keys: Vec<_> = s.data.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "IDPORTEN_CLIENT_ID",
                "IDPORTEN_CLIENT_JWK",
                "IDPORTEN_ISSUER",
                "IDPORTEN_JWKS_URI",
                "IDPORTEN_REDIRECT_URI",
                "IDPORTEN_TOKEN_ENDPOINT",
                "IDPORTEN_WELL_KNOWN_URL"
            ]
        );
        let d = s.data.as_ref().unwrap();
        assert_eq!(d["IDPORTEN_CLIENT_ID"].0, b"cid");
        assert_eq!(d["IDPORTEN_CLIENT_JWK"].0, key.private_json.as_bytes());
        assert_eq!(s.metadata.labels.as_ref().unwrap()["app"], "app");
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["type"],
            "digdirator.nais.io"
        );
        assert_eq!(
            s.metadata.annotations.as_ref().unwrap()[RELOADER_ANNOTATION],
            "true"
        );
        let r = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
            ("nais.io/v1", "IDPortenClient", "app")
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert!(is_managed_app_secret(
            &s.metadata,
            DigdirKind::IDPorten,
            "app"
        ));
        assert!(!is_managed_app_secret(
            &s.metadata,
            DigdirKind::Maskinporten,
            "app"
        ));
        assert!(!is_managed_app_secret(
            &s.metadata,
            DigdirKind::IDPorten,
            "other"
        ));
    }

    #[test]
    fn writes_only_on_change() {
        let key = Key::placeholder("k1");
        let o = owner();
        let inputs = AppSecretInputs {
            owner: &o,
            secret_name: "s",
            client_id: "cid",
            key: &key,
            kind_value: String::new(),
        };
        let desired = desired_app_secret(&cfg(), &inputs);
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("7".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "x".into());
        existing
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("other".into(), "y".into());
        assert!(!needs_write(&existing, &desired));
        // A restored owner (new uid) is repaired.
        let mut restored = existing.clone();
        restored.metadata.owner_references.as_mut().unwrap()[0].uid = "old".into();
        assert!(needs_write(&restored, &desired));
        let mut no_block = existing.clone();
        no_block.metadata.owner_references.as_mut().unwrap()[0].block_owner_deletion = None;
        assert!(!needs_write(&no_block, &desired));
        let mut changed = existing.clone();
        changed
            .data
            .as_mut()
            .unwrap()
            .insert("EXTRA".into(), bytes("x"));
        assert!(needs_write(&changed, &desired));
        let merged = merged_for_update(&changed, &desired);
        assert!(!needs_write(&merged, &desired));
        assert_eq!(merged.metadata.labels.as_ref().unwrap()["team"], "x");
        assert_eq!(merged.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn next_key_secret_roundtrip_and_name() {
        let o = owner();
        let key = Key::placeholder("next");
        let book = Bookkeeping {
            client_id: "cid".into(),
            registered_kids: vec!["a".into(), "b".into()],
            expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            next_registered_at: Some("2029-01-01T00:00:00Z".parse().unwrap()),
            replaced: vec![crate::core::digdir::keyplan::ReplacedKey {
                secret: "app-secret".into(),
                kid: "old".into(),
                n: "AQAB".into(),
                e: "AQAB".into(),
                replaced_at: "2028-06-01T00:00:00Z".parse().unwrap(),
            }],
        };
        let s = desired_next_key_secret(&o, &key, &book);
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("portvakt-next-idporten-app")
        );
        assert!(s.metadata.labels.as_ref().unwrap().get("app").is_none());
        let (_, got) = read_next_key_secret(&s);
        assert_eq!(got, book);
        assert!(!bookkeeping_differs(&s, &book));
        let long = "a".repeat(253);
        let n = next_key_secret_name(DigdirKind::Maskinporten, &long);
        assert!(n.len() <= 253);
        assert_ne!(n, next_key_secret_name(DigdirKind::IDPorten, &long));
    }
}
