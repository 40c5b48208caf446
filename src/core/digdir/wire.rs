//! Wire types of the Digdir self-service API (`/api/v1`), field for field as digdirator sends them
//! (digdirator.md §3.5–3.7): same names, same order, same `null`/omitted choices.
//!
//! Decoding is lenient about what does not matter (missing or `null` fields take defaults, unknown
//! enum values of settings are kept as `Other`), but every answer is then checked against what the
//! API documents (`validate`): an answer without the fields portvakt relies on (a scope without a
//! name, an access without a documented state, a key without a kid) is refused, never taken on
//! trust. Client registrations are checked by the controller, which must act on a create's answer
//! without a usable `client_id` (the create may have happened).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::PublicJwk;

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero_or_none(v: &Option<i64>) -> bool {
    matches!(v, None | Some(0))
}

/// A string-valued enum that keeps unknown values (`Other`) instead of failing.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $value,)*
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($value => Self::$variant,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

string_enum!(
    /// `integration_type`. Immutable once a client exists.
    IntegrationType {
        ApiKlient => "api_klient",
        Idporten => "idporten",
        Maskinporten => "maskinporten",
        Krr => "krr",
        Ansattporten => "ansattporten",
    }
);

impl Default for IntegrationType {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

string_enum!(
    /// `application_type`.
    ApplicationType {
        Web => "web",
        Native => "native",
        Browser => "browser",
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from a macro
impl Default for ApplicationType {
    fn default() -> Self {
        Self::Web
    }
}

string_enum!(
    /// `token_endpoint_auth_method`.
    TokenEndpointAuthMethod {
        PrivateKeyJwt => "private_key_jwt",
        ClientSecretPost => "client_secret_post",
        ClientSecretBasic => "client_secret_basic",
        None => "none",
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from a macro
impl Default for TokenEndpointAuthMethod {
    fn default() -> Self {
        Self::PrivateKeyJwt
    }
}

string_enum!(
    /// `refresh_token_usage`.
    RefreshTokenUsage {
        Onetime => "ONETIME",
        Reuse => "REUSE",
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from a macro
impl Default for RefreshTokenUsage {
    fn default() -> Self {
        Self::Onetime
    }
}

/// Grant types digdirator uses.
pub mod grant_types {
    pub const AUTHORIZATION_CODE: &str = "authorization_code";
    pub const REFRESH_TOKEN: &str = "refresh_token";
    pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
}

/// A string that never shows up in `Debug` output or logs (a client secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A client registration (`ClientRegistration`), sent on POST/PUT and returned by every client endpoint.
///
/// The sent fields are in digdirator's order with its `omitempty`/`null` behaviour. The response-only fields
/// (`active`, `created`, `last_updated`, `supplier_orgno`, `client_secret`, ...) are never sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistration {
    #[serde(default, deserialize_with = "null_as_default")]
    pub access_token_lifetime: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub application_type: ApplicationType,
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_lifetime: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_orgno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub frontchannel_logout_session_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontchannel_logout_uri: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub grant_types: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub integration_type: IntegrationType,
    /// `null` for Maskinporten clients, a list (never null) for ID-porten clients.
    #[serde(default)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `null` for Maskinporten clients, a list (possibly empty) for ID-porten clients.
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    /// Omitted when zero (Maskinporten clients).
    #[serde(default, skip_serializing_if = "is_zero_or_none")]
    pub refresh_token_lifetime: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub refresh_token_usage: RefreshTokenUsage,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scopes: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sso_disabled: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,

    // Response-only fields: read, never sent.
    #[serde(default, skip_serializing)]
    pub active: Option<bool>,
    #[serde(default, skip_serializing)]
    pub created: Option<String>,
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing)]
    pub supplier_orgno: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<Redacted>,
    #[serde(default, skip_serializing)]
    pub jwks_uri: Option<String>,
}

impl ClientRegistration {
    /// Whether Digdir reports the client as active (a missing `active` counts as active).
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }
}

/// One key of a client's JWKS. On POST: the public JWK (`use, kty, kid, alg, n, e`); on GET, Digdir adds
/// `exp` (Unix seconds) and possibly `created`/`last_updated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
    /// Expiry, Unix seconds (set by Digdir, a year after posting).
    #[serde(default, skip_serializing)]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing)]
    pub created: Option<String>,
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

impl From<PublicJwk> for Jwk {
    fn from(k: PublicJwk) -> Self {
        Self {
            use_: Some(k.use_),
            kty: Some(k.kty),
            kid: k.kid,
            alg: Some(k.alg),
            n: Some(k.n),
            e: Some(k.e),
            ..Self::default()
        }
    }
}

impl From<&PublicJwk> for Jwk {
    fn from(k: &PublicJwk) -> Self {
        Self::from(k.clone())
    }
}

impl JwksResponse {
    /// Every key of an answer must have a `kid`.
    pub fn validate(&self) -> Result<(), String> {
        match self.keys.iter().position(|k| k.kid.trim().is_empty()) {
            Some(i) => Err(format!("keys[{i}] has no kid")),
            None => Ok(()),
        }
    }
}

/// `POST /clients/{id}/jwks` body: the whole set (it replaces what is registered).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksRequest {
    pub keys: Vec<Jwk>,
}

/// `GET`/`POST /clients/{id}/jwks` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub keys: Vec<Jwk>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub last_updated: Option<String>,
}

string_enum!(
    /// `token_type` of a scope.
    TokenType {
        SelfContained => "SELF_CONTAINED",
        Opaque => "OPAQUE",
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from a macro
impl Default for TokenType {
    fn default() -> Self {
        Self::SelfContained
    }
}

string_enum!(
    /// `visibility` of a scope.
    Visibility {
        Public => "PUBLIC",
        Private => "PRIVATE",
        Internal => "INTERNAL",
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from a macro
impl Default for Visibility {
    fn default() -> Self {
        Self::Public
    }
}

/// A scope registration (`ScopeRegistration`), digdirator's field order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeRegistration {
    #[serde(default, deserialize_with = "null_as_default")]
    pub accessible_for_all: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub active: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_integration_types: Vec<IntegrationType>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub at_max_age: i64,
    #[serde(default, skip_serializing_if = "is_zero_or_none")]
    pub authorization_max_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_source: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_description: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_orgno: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub prefix: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub requires_pseudonymous_tokens: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub requires_user_authentication: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub requires_user_consent: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subscope: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub token_type: TokenType,
    #[serde(default, deserialize_with = "null_as_default")]
    pub visibility: Visibility,

    // Response-only.
    #[serde(default, skip_serializing)]
    pub created: Option<String>,
    #[serde(default, skip_serializing)]
    pub last_updated: Option<String>,
}

impl ScopeRegistration {
    /// `prefix:subscope`, the scope's name as Digdir addresses it.
    pub fn full_name(&self) -> String {
        if self.name.is_empty() {
            format!("{}:{}", self.prefix, self.subscope)
        } else {
            self.name.clone()
        }
    }

    /// An answer's scope must have a prefix and a subscope, and a `name` (when given) that is
    /// `prefix:subscope`.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefix.trim().is_empty() || self.subscope.trim().is_empty() {
            let name = if self.name.is_empty() {
                "a scope".to_string()
            } else {
                format!("scope `{}`", self.name)
            };
            return Err(format!("{name} without prefix or subscope"));
        }
        let expected = format!("{}:{}", self.prefix, self.subscope);
        if !self.name.is_empty() && self.name != expected {
            return Err(format!(
                "scope `{}` with prefix `{}` and subscope `{}`",
                self.name, self.prefix, self.subscope
            ));
        }
        Ok(())
    }
}

string_enum!(
    /// `state` of a scope access.
    AccessState {
        Requested => "REQUESTED",
        Approved => "APPROVED",
        Denied => "DENIED",
    }
);

impl Default for AccessState {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

/// A scope access (`ConsumerRegistration` / `ScopeAccess`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRegistration {
    #[serde(default, deserialize_with = "null_as_default")]
    pub consumer_orgno: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_orgno: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scope: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: AccessState,
}

impl ConsumerRegistration {
    /// An answer's access must name the consumer and the scope and have a documented state
    /// (REQUESTED, APPROVED or DENIED).
    pub fn validate(&self) -> Result<(), String> {
        if self.consumer_orgno.trim().is_empty() {
            return Err("a scope access without consumer_orgno".into());
        }
        if self.scope.trim().is_empty() {
            return Err(format!(
                "a scope access of {} without scope",
                self.consumer_orgno
            ));
        }
        if let AccessState::Other(state) = &self.state {
            return Err(format!(
                "access of {} to `{}` has state {state:?} (expected REQUESTED, APPROVED or DENIED)",
                self.consumer_orgno, self.scope
            ));
        }
        Ok(())
    }
}

/// A delegation source (`GET /delegationsources`). The date is `last_updated` or `lastUpdated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationSource {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(
        default,
        alias = "lastUpdated",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated: Option<String>,
}

impl DelegationSource {
    /// A delegation source must have a name and an issuer.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.issuer.trim().is_empty() {
            return Err(format!(
                "a delegation source without name or issuer (name {:?}, issuer {:?})",
                self.name, self.issuer
            ));
        }
        Ok(())
    }
}

/// A scope prefix assigned to an organisation (`GET /prefix`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopePrefix {
    #[serde(default, deserialize_with = "null_as_default")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_orgno: Option<String>,
}

impl ScopePrefix {
    pub fn validate(&self) -> Result<(), String> {
        if self.prefix.trim().is_empty() {
            return Err("a prefix entry without prefix".into());
        }
        Ok(())
    }
}

/// Digdir's error body (`ApiErrorResponse`). Every field optional: error bodies vary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorResponse {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub errors: Option<Vec<ApiFieldError>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFieldError {
    #[serde(default, rename = "errorMessage")]
    pub error_message: Option<String>,
    #[serde(default, rename = "isFieldError")]
    pub is_field_error: Option<bool>,
    #[serde(default, rename = "objectName")]
    pub object_name: Option<String>,
    #[serde(default, rename = "fieldIdentifier")]
    pub field_identifier: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README example payload from digdirator.md §3.5, byte for byte.
    #[test]
    fn idporten_payload_serialises_like_digdirator() {
        let reg = ClientRegistration {
            access_token_lifetime: 3600,
            application_type: ApplicationType::Web,
            authorization_lifetime: 7200,
            client_name: "ARBEIDS- OG VELFERDSETATEN".into(),
            client_uri: Some("https://domain.example".into()),
            description: "prod:my-team:my-app".into(),
            frontchannel_logout_session_required: true,
            frontchannel_logout_uri: Some(
                "https://domain.example/oauth2/logout/frontchannel".into(),
            ),
            grant_types: vec![
                grant_types::AUTHORIZATION_CODE.into(),
                grant_types::REFRESH_TOKEN.into(),
            ],
            integration_type: IntegrationType::Idporten,
            post_logout_redirect_uris: Some(vec![
                "https://domain.example/oauth2/logout/callback".into(),
            ]),
            redirect_uris: Some(vec!["https://domain.example/oauth2/callback".into()]),
            refresh_token_lifetime: Some(7200),
            refresh_token_usage: RefreshTokenUsage::Onetime,
            scopes: vec!["openid".into(), "profile".into()],
            sso_disabled: false,
            token_endpoint_auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
            ..Default::default()
        };
        let expected = r#"{"access_token_lifetime":3600,"application_type":"web","authorization_lifetime":7200,"client_name":"ARBEIDS- OG VELFERDSETATEN","client_uri":"https://domain.example","description":"prod:my-team:my-app","frontchannel_logout_session_required":true,"frontchannel_logout_uri":"https://domain.example/oauth2/logout/frontchannel","grant_types":["authorization_code","refresh_token"],"integration_type":"idporten","post_logout_redirect_uris":["https://domain.example/oauth2/logout/callback"],"redirect_uris":["https://domain.example/oauth2/callback"],"refresh_token_lifetime":7200,"refresh_token_usage":"ONETIME","scopes":["openid","profile"],"sso_disabled":false,"token_endpoint_auth_method":"private_key_jwt"}"#;
        assert_eq!(serde_json::to_string(&reg).expect("json"), expected);
    }

    #[test]
    fn maskinporten_payload_has_null_uris_and_no_refresh_lifetime() {
        let reg = ClientRegistration {
            integration_type: IntegrationType::Maskinporten,
            grant_types: vec![grant_types::JWT_BEARER.into()],
            refresh_token_lifetime: Some(0),
            ..Default::default()
        };
        let v = serde_json::to_value(&reg).expect("json");
        assert!(v["post_logout_redirect_uris"].is_null());
        assert!(v["redirect_uris"].is_null());
        assert!(v.get("refresh_token_lifetime").is_none());
        assert!(v.get("client_id").is_none());
        assert!(v.get("active").is_none());
    }

    #[test]
    fn responses_decode_leniently() {
        let json = r#"{"client_id":"abc","integration_type":"eformidling","scopes":null,
            "active":false,"client_secret":"s3cret","onbehalfof":[],"created":"2024-01-01T00:00:00Z"}"#;
        let reg: ClientRegistration = serde_json::from_str(json).expect("decode");
        assert_eq!(reg.client_id.as_deref(), Some("abc"));
        assert_eq!(
            reg.integration_type,
            IntegrationType::Other("eformidling".into())
        );
        assert!(reg.scopes.is_empty());
        assert!(!reg.is_active());
        assert!(!format!("{reg:?}").contains("s3cret"));
        assert!(
            !serde_json::to_string(&reg)
                .expect("json")
                .contains("s3cret")
        );

        let jwks: JwksResponse =
            serde_json::from_str(r#"{"keys":[{"kid":"k1","exp":1700000000}],"created":"x"}"#)
                .expect("jwks");
        assert_eq!(jwks.keys[0].exp, Some(1_700_000_000));

        let src: DelegationSource = serde_json::from_str(
            r#"{"name":"altinn","issuer":"https://tt02.altinn.no/","lastUpdated":"y"}"#,
        )
        .expect("src");
        assert_eq!(src.last_updated.as_deref(), Some("y"));
    }

    #[test]
    fn answers_without_the_fields_portvakt_relies_on_are_invalid() {
        let scope: ScopeRegistration = serde_json::from_str("{}").expect("lenient decode");
        assert!(scope.validate().is_err());
        let scope: ScopeRegistration =
            serde_json::from_str(r#"{"prefix":"nav","subscope":"a/b","name":"nav:a/b"}"#)
                .expect("scope");
        assert_eq!(scope.validate(), Ok(()));
        let mismatch: ScopeRegistration =
            serde_json::from_str(r#"{"prefix":"nav","subscope":"a","name":"nav:b"}"#)
                .expect("scope");
        assert!(mismatch.validate().is_err());

        let access: ConsumerRegistration = serde_json::from_str(
            r#"{"consumer_orgno":"987654321","scope":"nav:a","state":"DENIED","prefix":null}"#,
        )
        .expect("access");
        assert_eq!(access.validate(), Ok(()));
        for bad in [
            r#"{"scope":"nav:a","state":"APPROVED"}"#,
            r#"{"consumer_orgno":"987654321","state":"APPROVED"}"#,
            r#"{"consumer_orgno":"987654321","scope":"nav:a"}"#,
            r#"{"consumer_orgno":"987654321","scope":"nav:a","state":"GRANTED"}"#,
        ] {
            let access: ConsumerRegistration = serde_json::from_str(bad).expect("decodes");
            assert!(access.validate().is_err(), "{bad}");
        }

        let source: DelegationSource =
            serde_json::from_str(r#"{"name":"altinn","issuer":""}"#).expect("source");
        assert!(source.validate().is_err());
    }
}
