//! The client registration portvakt wants at Digdir, built exactly as digdirator builds it
//! (digdirator.md §3.5), and the comparison with what Digdir holds, so an unchanged resource costs
//! no write.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Config;
use crate::crd::{IDPortenClientSpec, IntegrationType, MaskinportenClientSpec};

/// `ClientRegistration` as digdirator sends it, fields in its serialisation order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub access_token_lifetime: i64,
    pub application_type: String,
    pub authorization_lifetime: i64,
    pub client_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_uri: String,
    pub description: String,
    pub frontchannel_logout_session_required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub frontchannel_logout_uri: String,
    pub grant_types: Vec<String>,
    pub integration_type: String,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refresh_token_lifetime: i64,
    pub refresh_token_usage: String,
    pub scopes: Vec<String>,
    pub sso_disabled: bool,
    pub token_endpoint_auth_method: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Payload {
    pub fn to_json(&self) -> Value {
        // A struct of strings, lists and integers always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `<cluster>:<namespace>:<name>`: the identity of a registration at Digdir (liberator's
/// `UniformResourceName`).
pub fn description(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}:{namespace}:{name}")
}

/// Digdirator's default scopes per ID-porten integration type.
pub fn idporten_default_scopes(t: IntegrationType) -> Vec<String> {
    match t {
        IntegrationType::Idporten | IntegrationType::ApiKlient => {
            vec!["openid".into(), "profile".into()]
        }
        IntegrationType::Krr => vec![
            "krr:global/kontaktinformasjon.read".into(),
            "krr:global/digitalpost.read".into(),
        ],
    }
}

/// `redirect_uris`: `dedup(redirectURIs ++ [redirectURI])`, empty values skipped, order kept.
pub fn idporten_redirect_uris(spec: &IDPortenClientSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let listed = spec.redirect_uris.iter().flatten();
    for uri in listed.chain(spec.redirect_uri.iter()) {
        if !uri.is_empty() && !out.contains(uri) {
            out.push(uri.clone());
        }
    }
    out
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.filter(|s| !s.is_empty()).cloned()
}

/// The registration of an IDPortenClient.
pub fn idporten_payload(
    cfg: &Config,
    namespace: &str,
    name: &str,
    spec: &IDPortenClientSpec,
) -> Payload {
    let session = spec.session_lifetime.unwrap_or(cfg.session_lifetime);
    Payload {
        access_token_lifetime: spec
            .access_token_lifetime
            .unwrap_or(cfg.access_token_lifetime),
        application_type: "web".into(),
        authorization_lifetime: session,
        client_name: non_empty(spec.client_name.as_ref())
            .unwrap_or_else(|| cfg.client_name.clone()),
        client_uri: non_empty(spec.client_uri.as_ref()).unwrap_or_else(|| cfg.client_uri.clone()),
        description: description(&cfg.cluster_name, namespace, name),
        frontchannel_logout_session_required: true,
        frontchannel_logout_uri: spec.frontchannel_logout_uri.clone().unwrap_or_default(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        integration_type: spec.integration_type.as_str().into(),
        // Digdirator falls back to the *configured* client URI here, not spec.clientURI.
        post_logout_redirect_uris: Some(
            spec.post_logout_redirect_uris
                .clone()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| vec![cfg.client_uri.clone()]),
        ),
        redirect_uris: Some(idporten_redirect_uris(spec)),
        refresh_token_lifetime: session,
        refresh_token_usage: "ONETIME".into(),
        scopes: spec
            .scopes
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| idporten_default_scopes(spec.integration_type)),
        sso_disabled: spec.sso_disabled.unwrap_or(false),
        token_endpoint_auth_method: "private_key_jwt".into(),
    }
}

/// `spec.scopes.consumes[].name`, in order (what MASKINPORTEN_SCOPES lists).
pub fn maskinporten_consumed(spec: &MaskinportenClientSpec) -> Vec<String> {
    spec.scopes
        .iter()
        .flat_map(|s| s.consumes.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

/// The registration of a MaskinportenClient. `valid_scopes` are the consumed scopes the organisation
/// may use; when none remain, the configured default scope is registered (Digdir rejects a client
/// without scopes; the controller refuses to go on when none is configured, naming the setting).
pub fn maskinporten_payload(
    cfg: &Config,
    namespace: &str,
    name: &str,
    spec: &MaskinportenClientSpec,
    valid_scopes: &[String],
) -> Payload {
    let scopes = if valid_scopes.is_empty() {
        cfg.maskinporten_default_scope.iter().cloned().collect()
    } else {
        valid_scopes.to_vec()
    };
    Payload {
        access_token_lifetime: cfg.access_token_lifetime,
        application_type: "web".into(),
        authorization_lifetime: cfg.session_lifetime,
        client_name: non_empty(spec.client_name.as_ref())
            .unwrap_or_else(|| cfg.client_name.clone()),
        client_uri: cfg.client_uri.clone(),
        description: description(&cfg.cluster_name, namespace, name),
        frontchannel_logout_session_required: false,
        frontchannel_logout_uri: String::new(),
        grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer".into()],
        integration_type: "maskinporten".into(),
        post_logout_redirect_uris: None,
        redirect_uris: None,
        refresh_token_lifetime: 0,
        refresh_token_usage: "ONETIME".into(),
        scopes,
        sso_disabled: false,
        token_endpoint_auth_method: "private_key_jwt".into(),
    }
}

/// Normalises a registration field for comparison: absent, `null`, `""`, `[]` and `0` are "unset";
/// lists compare as sorted (Digdir may reorder; order carries no meaning for these lists).
fn norm(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Number(n) if n.as_i64() == Some(0) => None,
        Value::Array(a) => {
            let mut items: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            items.sort();
            Some(Value::from(items))
        }
        other => Some(other.clone()),
    }
}

/// Fields of `desired` whose value at Digdir differs; empty means no PUT is needed.
///
/// Every field portvakt sends is compared. Fields it leaves out are compared too when the user can
/// clear them (`frontchannel_logout_uri`); fields Digdir fills in by itself (e.g. a Maskinporten
/// client's `refresh_token_lifetime`) are not, or every pass would write.
pub fn differing_fields(desired: &Payload, observed: &Value) -> Vec<&'static str> {
    const FIELDS: [&str; 17] = [
        "access_token_lifetime",
        "application_type",
        "authorization_lifetime",
        "client_name",
        "client_uri",
        "description",
        "frontchannel_logout_session_required",
        "frontchannel_logout_uri",
        "grant_types",
        "integration_type",
        "post_logout_redirect_uris",
        "redirect_uris",
        "refresh_token_lifetime",
        "refresh_token_usage",
        "scopes",
        "sso_disabled",
        "token_endpoint_auth_method",
    ];
    let want = desired.to_json();
    FIELDS
        .into_iter()
        .filter(|f| {
            let w = norm(want.get(*f));
            if w.is_none() && *f != "frontchannel_logout_uri" {
                return false;
            }
            // `false` is the Go zero value digdirator always sends; Digdir may omit it.
            let o = norm(observed.get(*f));
            let o = if o == Some(Value::Bool(false)) {
                None
            } else {
                o
            };
            let w = if w == Some(Value::Bool(false)) {
                None
            } else {
                w
            };
            w != o
        })
        .collect()
}

/// How the controller finds the registration it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `status.clientID` names a registration that exists.
    Known(String),
    /// No client ID in status (or a stale one): a registration with our description and integration
    /// type exists and is taken over.
    Adopt(String),
    /// Nothing matches: create one.
    Create,
}

/// A registration as listed by Digdir, reduced to what identity needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub client_id: String,
    pub description: String,
    pub integration_type: String,
}

/// Decides identity from `status.clientID` and the listed registrations. Matching by description
/// considers only the expected integration type; several matches pick the lowest client ID so every
/// pass makes the same choice.
pub fn identify(
    status_client_id: Option<&str>,
    listed: &[Listed],
    description: &str,
    integration_type: &str,
) -> Identity {
    if let Some(id) = status_client_id.filter(|s| !s.is_empty())
        && listed.iter().any(|l| l.client_id == id)
    {
        return Identity::Known(id.to_string());
    }
    listed
        .iter()
        .filter(|l| l.description == description && l.integration_type == integration_type)
        .map(|l| l.client_id.clone())
        .min()
        .map(Identity::Adopt)
        .unwrap_or(Identity::Create)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConsumedScope, MaskinportenScope};
    use serde_json::json;

    fn cfg() -> Config {
        Config {
            cluster_name: "prod".into(),
            ..Config::default()
        }
    }

    #[test]
    fn idporten_payload_matches_digdirators_readme_example() {
        let spec = IDPortenClientSpec {
            client_uri: Some("https://domain.example".into()),
            frontchannel_logout_uri: Some(
                "https://domain.example/oauth2/logout/frontchannel".into(),
            ),
            post_logout_redirect_uris: Some(vec![
                "https://domain.example/oauth2/logout/callback".into(),
            ]),
            redirect_uris: Some(vec!["https://domain.example/oauth2/callback".into()]),
            secret_name: "my-secret".into(),
            ..Default::default()
        };
        let p = idporten_payload(&cfg(), "my-team", "my-app", &spec);
        let expected = r#"{"access_token_lifetime":3600,"application_type":"web","authorization_lifetime":7200,"client_name":"ARBEIDS- OG VELFERDSETATEN","client_uri":"https://domain.example","description":"prod:my-team:my-app","frontchannel_logout_session_required":true,"frontchannel_logout_uri":"https://domain.example/oauth2/logout/frontchannel","grant_types":["authorization_code","refresh_token"],"integration_type":"idporten","post_logout_redirect_uris":["https://domain.example/oauth2/logout/callback"],"redirect_uris":["https://domain.example/oauth2/callback"],"refresh_token_lifetime":7200,"refresh_token_usage":"ONETIME","scopes":["openid","profile"],"sso_disabled":false,"token_endpoint_auth_method":"private_key_jwt"}"#;
        assert_eq!(serde_json::to_string(&p).unwrap(), expected);
    }

    #[test]
    fn idporten_defaults() {
        let spec = IDPortenClientSpec {
            client_uri: Some("https://mine.example".into()),
            redirect_uri: Some("https://b".into()),
            redirect_uris: Some(vec!["https://a".into(), "https://b".into(), String::new()]),
            integration_type: IntegrationType::Krr,
            session_lifetime: Some(3600),
            access_token_lifetime: Some(60),
            sso_disabled: Some(true),
            secret_name: "s".into(),
            ..Default::default()
        };
        let p = idporten_payload(&cfg(), "ns", "n", &spec);
        assert_eq!(
            p.redirect_uris,
            Some(vec!["https://a".into(), "https://b".into()])
        );
        // Falls back to the configured client URI, not spec.clientURI.
        assert_eq!(
            p.post_logout_redirect_uris,
            Some(vec!["https://www.nav.no".into()])
        );
        assert_eq!(p.client_uri, "https://mine.example");
        assert_eq!(p.scopes, idporten_default_scopes(IntegrationType::Krr));
        assert_eq!(
            (p.authorization_lifetime, p.refresh_token_lifetime),
            (3600, 3600)
        );
        assert_eq!(p.access_token_lifetime, 60);
        assert!(p.sso_disabled);
        assert_eq!(p.integration_type, "krr");
        let json = p.to_json();
        assert!(json.get("frontchannel_logout_uri").is_none());
        // No redirect URIs at all: an empty list, never null.
        let p = idporten_payload(&cfg(), "ns", "n", &IDPortenClientSpec::default());
        assert_eq!(p.to_json()["redirect_uris"], json!([]));
        assert_eq!(p.scopes, vec!["openid", "profile"]);
    }

    #[test]
    fn maskinporten_payload_and_default_scope() {
        let spec = MaskinportenClientSpec {
            client_name: Some("mine".into()),
            scopes: Some(MaskinportenScope {
                consumes: Some(vec![ConsumedScope {
                    name: "nav:a".into(),
                }]),
                exposes: None,
            }),
            secret_name: "s".into(),
        };
        let p = maskinporten_payload(&cfg(), "ns", "n", &spec, &["nav:a".into()]);
        let j = p.to_json();
        assert_eq!(j["integration_type"], "maskinporten");
        assert_eq!(
            j["grant_types"],
            json!(["urn:ietf:params:oauth:grant-type:jwt-bearer"])
        );
        assert_eq!(j["redirect_uris"], Value::Null);
        assert_eq!(j["post_logout_redirect_uris"], Value::Null);
        assert!(j.get("refresh_token_lifetime").is_none());
        assert_eq!(j["frontchannel_logout_session_required"], false);
        assert_eq!(j["client_name"], "mine");
        assert_eq!(j["description"], "prod:ns:n");
        // No usable scope: the configured default, if there is one (the controller refuses to go
        // on without one, naming the setting).
        let with_default = Config {
            maskinporten_default_scope: Some("org:default/api".into()),
            ..cfg()
        };
        let p = maskinporten_payload(&with_default, "ns", "n", &spec, &[]);
        assert_eq!(p.scopes, vec!["org:default/api"]);
        let p = maskinporten_payload(&cfg(), "ns", "n", &spec, &[]);
        assert!(p.scopes.is_empty());
        assert_eq!(maskinporten_consumed(&spec), vec!["nav:a"]);
    }

    #[test]
    fn comparison_ignores_server_fields_and_order() {
        let p = idporten_payload(
            &cfg(),
            "ns",
            "n",
            &IDPortenClientSpec {
                redirect_uris: Some(vec!["https://a".into(), "https://b".into()]),
                ..Default::default()
            },
        );
        let mut observed = p.to_json();
        observed["client_id"] = json!("abc");
        observed["active"] = json!(true);
        observed["created"] = json!("2024-01-01");
        observed["redirect_uris"] = json!(["https://b", "https://a"]);
        assert!(differing_fields(&p, &observed).is_empty());
        observed["redirect_uris"] = json!(["https://evil"]);
        observed["frontchannel_logout_uri"] = json!("https://x");
        assert_eq!(
            differing_fields(&p, &observed),
            vec!["frontchannel_logout_uri", "redirect_uris"]
        );
        // Digdir filling in a Maskinporten refresh token lifetime is not drift.
        let m = maskinporten_payload(&cfg(), "ns", "n", &MaskinportenClientSpec::default(), &[]);
        let mut observed = m.to_json();
        observed["refresh_token_lifetime"] = json!(7200);
        observed["redirect_uris"] = json!([]);
        assert!(differing_fields(&m, &observed).is_empty());
    }

    #[test]
    fn identity() {
        let listed = vec![
            Listed {
                client_id: "c2".into(),
                description: "prod:ns:n".into(),
                integration_type: "idporten".into(),
            },
            Listed {
                client_id: "c1".into(),
                description: "prod:ns:n".into(),
                integration_type: "idporten".into(),
            },
            Listed {
                client_id: "m1".into(),
                description: "prod:ns:n".into(),
                integration_type: "maskinporten".into(),
            },
        ];
        assert_eq!(
            identify(Some("c2"), &listed, "prod:ns:n", "idporten"),
            Identity::Known("c2".into())
        );
        assert_eq!(
            identify(None, &listed, "prod:ns:n", "idporten"),
            Identity::Adopt("c1".into())
        );
        assert_eq!(
            identify(Some("gone"), &listed, "prod:ns:n", "maskinporten"),
            Identity::Adopt("m1".into())
        );
        assert_eq!(
            identify(None, &listed, "prod:ns:other", "idporten"),
            Identity::Create
        );
        assert_eq!(
            identify(Some(""), &listed, "test:ns:n", "idporten"),
            Identity::Create
        );
    }
}
