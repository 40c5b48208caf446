//! `status.synchronizationHash`, computed exactly as liberator does (digdirator.md §1.6):
//! `fmt.Sprintf("%x", hashstructure.Hash(json.Marshal(spec)))` with mitchellh/hashstructure v1.
//!
//! Two pieces have to be reproduced byte for byte: Go's `encoding/json` output for the spec (struct
//! order, `omitempty` dropping empty strings and slices but keeping pointers to zero values, HTML
//! escaping), and hashstructure's treatment of a `[]byte` as an ordered slice of `uint8`, each element
//! hashed on its own with FNV-1 (64-bit, not 1a) and folded in with `hashUpdateOrdered`.

use serde_json::{Map, Value};

use crate::crd::{
    AccessPolicyInboundRule, AzureAdApplicationSpec, ConsumedScope, ExposedScope,
    ExposedScopeConsumer, IDPortenClientSpec, MaskinportenClientSpec,
};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1_64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for b in bytes {
        h = h.wrapping_mul(FNV_PRIME);
        h ^= u64::from(*b);
    }
    h
}

/// hashstructure v1 over a `[]byte`: per element `FNV1(b)`, folded with `FNV1(le(h) || le(cur))`.
pub fn hashstructure_bytes(input: &[u8]) -> u64 {
    let mut h: u64 = 0;
    let mut buf = [0u8; 16];
    for b in input {
        let cur = fnv1_64(&[*b]);
        buf[..8].copy_from_slice(&h.to_le_bytes());
        buf[8..].copy_from_slice(&cur.to_le_bytes());
        h = fnv1_64(&buf);
    }
    h
}

/// Serializes a JSON value as Go's `encoding/json` does: compact, with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped. These characters only occur inside strings, so escaping the whole text is exact.
pub fn go_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The hash of a JSON text, as lowercase hex without padding.
pub fn hash_json_text(text: &str) -> String {
    format!("{:x}", hashstructure_bytes(text.as_bytes()))
}

// `omitempty` helpers: Go drops "" strings and empty or nil slices, keeps pointers to zero values.
fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(s) = v.filter(|s| !s.is_empty()) {
        m.insert(key.into(), Value::String(s.into()));
    }
}
fn put_strs(m: &mut Map<String, Value>, key: &str, v: Option<&Vec<String>>) {
    if let Some(list) = v.filter(|l| !l.is_empty()) {
        m.insert(key.into(), Value::from(list.clone()));
    }
}
fn put_ptr<T: Into<Value> + Copy>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(x) = v {
        m.insert(key.into(), x.into());
    }
}

/// Go's JSON of an `IDPortenClientSpec`, in struct order.
pub fn idporten_spec_go_json(spec: &IDPortenClientSpec) -> String {
    let mut m = Map::new();
    put_ptr(&mut m, "accessTokenLifetime", spec.access_token_lifetime);
    put_str(&mut m, "clientURI", spec.client_uri.as_deref());
    put_str(&mut m, "clientName", spec.client_name.as_deref());
    put_str(
        &mut m,
        "integrationType",
        Some(spec.integration_type.as_str()),
    );
    put_str(
        &mut m,
        "frontchannelLogoutURI",
        spec.frontchannel_logout_uri.as_deref(),
    );
    put_strs(
        &mut m,
        "postLogoutRedirectURIs",
        spec.post_logout_redirect_uris.as_ref(),
    );
    put_str(&mut m, "redirectURI", spec.redirect_uri.as_deref());
    put_strs(&mut m, "redirectURIs", spec.redirect_uris.as_ref());
    m.insert("secretName".into(), Value::String(spec.secret_name.clone()));
    put_strs(&mut m, "scopes", spec.scopes.as_ref());
    put_ptr(&mut m, "sessionLifetime", spec.session_lifetime);
    put_ptr(&mut m, "ssoDisabled", spec.sso_disabled);
    go_json(&Value::Object(m))
}

fn consumed_go(c: &ConsumedScope) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(c.name.clone()));
    Value::Object(m)
}

fn consumer_go(c: &ExposedScopeConsumer) -> Value {
    let mut m = Map::new();
    m.insert("orgno".into(), Value::String(c.orgno.clone()));
    put_str(&mut m, "name", c.name.as_deref());
    Value::Object(m)
}

fn exposed_go(e: &ExposedScope) -> Value {
    let mut m = Map::new();
    m.insert("enabled".into(), Value::Bool(e.enabled));
    m.insert("name".into(), Value::String(e.name.clone()));
    m.insert("product".into(), Value::String(e.product.clone()));
    put_ptr(&mut m, "atMaxAge", e.at_max_age);
    put_strs(
        &mut m,
        "allowedIntegrations",
        e.allowed_integrations.as_ref(),
    );
    if let Some(cs) = e.consumers.as_ref().filter(|c| !c.is_empty()) {
        m.insert(
            "consumers".into(),
            Value::Array(cs.iter().map(consumer_go).collect()),
        );
    }
    put_ptr(&mut m, "accessibleForAll", e.accessible_for_all);
    if let Some(d) = e.delegation_source {
        m.insert("delegationSource".into(), Value::String(d.as_str().into()));
    }
    // Pointer fields: kept even when empty.
    if let Some(s) = &e.separator {
        m.insert("separator".into(), Value::String(s.clone()));
    }
    if let Some(v) = e.visibility {
        m.insert("visibility".into(), Value::String(v.as_str().into()));
    }
    Value::Object(m)
}

/// Go's JSON of a `MaskinportenClientSpec`, in struct order (`scopes` is a struct, always present).
pub fn maskinporten_spec_go_json(spec: &MaskinportenClientSpec) -> String {
    let mut m = Map::new();
    put_str(&mut m, "clientName", spec.client_name.as_deref());
    let mut scopes = Map::new();
    if let Some(s) = &spec.scopes {
        if let Some(c) = s.consumes.as_ref().filter(|c| !c.is_empty()) {
            scopes.insert(
                "consumes".into(),
                Value::Array(c.iter().map(consumed_go).collect()),
            );
        }
        if let Some(e) = s.exposes.as_ref().filter(|e| !e.is_empty()) {
            scopes.insert(
                "exposes".into(),
                Value::Array(e.iter().map(exposed_go).collect()),
            );
        }
    }
    m.insert("scopes".into(), Value::Object(scopes));
    m.insert("secretName".into(), Value::String(spec.secret_name.clone()));
    go_json(&Value::Object(m))
}

fn inbound_rule_go(r: &AccessPolicyInboundRule) -> Value {
    // `AccessPolicyRule` is embedded (`json:",inline"`, which encoding/json ignores: the fields are
    // promoted): application (no omitempty), namespace, cluster; then the permissions pointer.
    let mut m = Map::new();
    m.insert("application".into(), Value::String(r.application.clone()));
    put_str(&mut m, "namespace", r.namespace.as_deref());
    put_str(&mut m, "cluster", r.cluster.as_deref());
    if let Some(p) = &r.permissions {
        let mut pm = Map::new();
        put_strs(&mut pm, "scopes", p.scopes.as_ref());
        put_strs(&mut pm, "roles", p.roles.as_ref());
        m.insert("permissions".into(), Value::Object(pm));
    }
    Value::Object(m)
}

/// A Go slice field without `omitempty`: `null` when nil, `[...]` (possibly empty) otherwise.
fn go_slice<T>(v: Option<&Vec<T>>, f: impl Fn(&T) -> Value) -> Value {
    match v {
        None => Value::Null,
        Some(items) => Value::Array(items.iter().map(f).collect()),
    }
}

/// Go's JSON of the anonymous struct liberator hashes for an AzureAdApplication (azurerator.md §2.3):
/// `ReplyUrls`, `PreAuthorizedApplications`, `LogoutUrl`, `Tenant`, `Claims`, `SecretKeyPrefix` under
/// their Go field names (no tags, no omitempty: nil slices and pointers are `null`, strings `""`),
/// then `singlePageApplication`, `allowAllUsers`, `groupMembershipClaims`, `federatedCredentials`
/// (tagged, omitempty). `secretName` is not hashed.
pub fn azure_spec_go_json(spec: &AzureAdApplicationSpec) -> String {
    let mut m = Map::new();
    m.insert(
        "ReplyUrls".into(),
        go_slice(spec.reply_urls.as_ref(), |u| {
            let mut um = Map::new();
            put_str(&mut um, "url", u.url.as_deref());
            Value::Object(um)
        }),
    );
    m.insert(
        "PreAuthorizedApplications".into(),
        go_slice(spec.pre_authorized_applications.as_ref(), inbound_rule_go),
    );
    m.insert(
        "LogoutUrl".into(),
        Value::String(spec.logout_url.clone().unwrap_or_default()),
    );
    m.insert(
        "Tenant".into(),
        Value::String(spec.tenant.clone().unwrap_or_default()),
    );
    m.insert(
        "Claims".into(),
        match &spec.claims {
            None => Value::Null,
            Some(c) => {
                let mut cm = Map::new();
                if let Some(extra) = c.extra.as_ref().filter(|e| !e.is_empty()) {
                    let names: Vec<Value> = extra
                        .iter()
                        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                        .collect();
                    cm.insert("extra".into(), Value::Array(names));
                }
                if let Some(groups) = c.groups.as_ref().filter(|g| !g.is_empty()) {
                    let gs: Vec<Value> = groups
                        .iter()
                        .map(|g| {
                            let mut gm = Map::new();
                            put_str(&mut gm, "id", g.id.as_deref());
                            Value::Object(gm)
                        })
                        .collect();
                    cm.insert("groups".into(), Value::Array(gs));
                }
                Value::Object(cm)
            }
        },
    );
    m.insert(
        "SecretKeyPrefix".into(),
        Value::String(spec.secret_key_prefix.clone().unwrap_or_default()),
    );
    put_ptr(
        &mut m,
        "singlePageApplication",
        spec.single_page_application,
    );
    put_ptr(&mut m, "allowAllUsers", spec.allow_all_users);
    if let Some(g) = spec.group_membership_claims {
        m.insert(
            "groupMembershipClaims".into(),
            Value::String(g.as_str().into()),
        );
    }
    if let Some(fcs) = spec
        .federated_credentials
        .as_ref()
        .filter(|f| !f.is_empty())
    {
        // liberator HEAD's field order (name, issuer, subject, audience), all required (no omitempty).
        let list: Vec<Value> = fcs
            .iter()
            .map(|f| {
                let mut fm = Map::new();
                fm.insert("name".into(), Value::String(f.name.clone()));
                fm.insert("issuer".into(), Value::String(f.issuer.clone()));
                fm.insert("subject".into(), Value::String(f.subject.clone()));
                fm.insert("audience".into(), Value::String(f.audience.clone()));
                Value::Object(fm)
            })
            .collect();
        m.insert("federatedCredentials".into(), Value::Array(list));
    }
    go_json(&Value::Object(m))
}

/// `synchronizationHash` of an AzureAdApplication spec.
pub fn azure_hash(spec: &AzureAdApplicationSpec) -> String {
    hash_json_text(&azure_spec_go_json(spec))
}

/// `synchronizationHash` of an IDPortenClient spec.
pub fn idporten_hash(spec: &IDPortenClientSpec) -> String {
    hash_json_text(&idporten_spec_go_json(spec))
}

/// `synchronizationHash` of a MaskinportenClient spec.
pub fn maskinporten_hash(spec: &MaskinportenClientSpec) -> String {
    hash_json_text(&maskinporten_spec_go_json(spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{IntegrationType, MaskinportenScope};

    #[test]
    fn liberator_vectors() {
        assert_eq!(
            hash_json_text(r#"{"redirectURIs":["https://test.com"],"secretName":"test"}"#),
            "de6ecbc3b6cb148b"
        );
        assert_eq!(
            hash_json_text(r#"{"scopes":{},"secretName":""}"#),
            "fcd4a1835320374a"
        );
    }

    #[test]
    fn empty_maskinporten_spec_matches_vector() {
        let spec = MaskinportenClientSpec::default();
        assert_eq!(
            maskinporten_spec_go_json(&spec),
            r#"{"scopes":{},"secretName":""}"#
        );
        assert_eq!(maskinporten_hash(&spec), "fcd4a1835320374a");
        // Empty lists are omitted like nil ones.
        let spec = MaskinportenClientSpec {
            scopes: Some(MaskinportenScope {
                consumes: Some(vec![]),
                exposes: None,
            }),
            ..Default::default()
        };
        assert_eq!(maskinporten_hash(&spec), "fcd4a1835320374a");
    }

    #[test]
    fn idporten_json_follows_struct_order_and_omitempty() {
        let spec = IDPortenClientSpec {
            redirect_uris: Some(vec!["https://test.com".into()]),
            secret_name: "test".into(),
            client_name: Some(String::new()),
            access_token_lifetime: Some(0),
            sso_disabled: Some(false),
            ..Default::default()
        };
        assert_eq!(
            idporten_spec_go_json(&spec),
            r#"{"accessTokenLifetime":0,"integrationType":"idporten","redirectURIs":["https://test.com"],"secretName":"test","ssoDisabled":false}"#
        );
        let spec = IDPortenClientSpec {
            integration_type: IntegrationType::Krr,
            client_uri: Some("https://a.no/?x=1&y=<2>".into()),
            secret_name: "s".into(),
            ..Default::default()
        };
        assert_eq!(
            idporten_spec_go_json(&spec),
            r#"{"clientURI":"https://a.no/?x=1\u0026y=\u003c2\u003e","integrationType":"krr","secretName":"s"}"#
        );
    }

    #[test]
    fn azure_minimal_spec_matches_liberators_vector() {
        let spec = AzureAdApplicationSpec {
            secret_name: "ignored: secretName is not hashed".into(),
            ..Default::default()
        };
        assert_eq!(
            azure_spec_go_json(&spec),
            r#"{"ReplyUrls":null,"PreAuthorizedApplications":null,"LogoutUrl":"","Tenant":"","Claims":null,"SecretKeyPrefix":""}"#
        );
        assert_eq!(azure_hash(&spec), "fb3ded02e59f9458");
    }

    #[test]
    fn azure_json_keeps_go_nil_versus_empty_and_escapes_html() {
        use crate::crd::{
            AccessPolicyPermissions, AzureAdClaims, AzureAdGroup, AzureAdReplyUrl,
            GroupMembershipClaims,
        };
        // An empty list in the stored object is `[]`, not `null`: a different hash.
        let spec = AzureAdApplicationSpec {
            reply_urls: Some(vec![]),
            ..Default::default()
        };
        assert!(azure_spec_go_json(&spec).starts_with(r#"{"ReplyUrls":[],"#));
        assert_ne!(azure_hash(&spec), "fb3ded02e59f9458");

        let spec = AzureAdApplicationSpec {
            reply_urls: Some(vec![AzureAdReplyUrl {
                url: Some("https://a.example/cb?x=1&y=2".into()),
            }]),
            pre_authorized_applications: Some(vec![AccessPolicyInboundRule {
                application: "b".into(),
                namespace: Some(String::new()),
                cluster: Some("c".into()),
                permissions: Some(AccessPolicyPermissions {
                    roles: Some(vec!["read".into()]),
                    scopes: Some(vec!["write".into()]),
                }),
            }]),
            claims: Some(AzureAdClaims {
                extra: None,
                groups: Some(vec![AzureAdGroup {
                    id: Some("g".into()),
                }]),
            }),
            allow_all_users: Some(false),
            group_membership_claims: Some(GroupMembershipClaims::All),
            secret_name: "s".into(),
            ..Default::default()
        };
        assert_eq!(
            azure_spec_go_json(&spec),
            concat!(
                r#"{"ReplyUrls":[{"url":"https://a.example/cb?x=1\u0026y=2"}],"#,
                r#""PreAuthorizedApplications":[{"application":"b","cluster":"c","permissions":{"scopes":["write"],"roles":["read"]}}],"#,
                r#""LogoutUrl":"","Tenant":"","Claims":{"groups":[{"id":"g"}]},"SecretKeyPrefix":"","#,
                r#""allowAllUsers":false,"groupMembershipClaims":"All"}"#
            )
        );
    }

    #[test]
    fn azure_hash_of_the_example_manifest() {
        // tests/data/examples/azureadapplication.yaml, hashed with the same algorithm in Python
        // (hashstructure v1 over Go's JSON).
        let yaml = include_str!("../../tests/data/examples/azureadapplication.yaml");
        let obj: crate::crd::AzureAdApplication = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(azure_hash(&obj.spec), "f19e9c6c9705a9b9");
    }

    #[test]
    fn hash_is_unpadded_lowercase_hex() {
        assert_eq!(hashstructure_bytes(b""), 0);
        assert_eq!(hash_json_text(""), "0");
        let h = idporten_hash(&IDPortenClientSpec::default());
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
