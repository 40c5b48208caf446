//! What the simulated Digdir environment holds when it starts: like Digdir's TEST
//! environment as seen by one organisation's admin client.
//!
//! Loadable from JSON (`portvakt sim --digdir-seed file.json`); every field has a default,
//! so a file only needs what it changes.

use serde::{Deserialize, Serialize};

/// An organisation known to the simulator (orgno, name).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Organisation {
    pub orgno: String,
    pub name: String,
}

/// A scope that exists when the simulator starts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SeedScope {
    /// `prefix:subscope`.
    pub name: String,
    pub owner_orgno: String,
    pub description: String,
    /// `PUBLIC` or `PRIVATE`.
    pub visibility: String,
    pub allowed_integration_types: Vec<String>,
    pub accessible_for_all: bool,
    pub at_max_age: Option<i64>,
    pub delegation_source: Option<String>,
    /// Organisations granted access (state APPROVED).
    pub consumers: Vec<String>,
}

impl Default for SeedScope {
    fn default() -> Self {
        Self {
            name: String::new(),
            owner_orgno: String::new(),
            description: String::new(),
            visibility: "PUBLIC".into(),
            allowed_integration_types: vec![],
            accessible_for_all: false,
            at_max_age: None,
            delegation_source: None,
            consumers: vec![],
        }
    }
}

/// A delegation source (Altinn) as `GET /delegationsources` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeedDelegationSource {
    pub name: String,
    pub issuer: String,
}

/// Seed data of the simulator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Seed {
    /// `test` (http and localhost redirect URIs allowed, as in Digdir's TEST) or `prod`.
    pub environment: String,
    /// The organisation of the admin client (owner of every client it creates).
    pub admin_orgno: String,
    /// client_id of the admin client; a fresh UUID when empty.
    pub admin_client_id: String,
    /// Scopes granted to the admin client.
    pub admin_scopes: Vec<String>,
    /// Lifetime of admin access tokens, seconds.
    pub admin_access_token_lifetime: i64,
    /// Organisations known to the environment (consumers in ACLs must be among them).
    pub organisations: Vec<Organisation>,
    /// Scope prefixes assigned to organisations: (prefix, owner orgno).
    pub prefixes: Vec<(String, String)>,
    pub scopes: Vec<SeedScope>,
    pub delegation_sources: Vec<SeedDelegationSource>,
    /// Altinn delegations: (consumer orgno, supplier orgno, scope).
    pub altinn_delegations: Vec<(String, String, String)>,
    /// Seconds before a change made through the admin API (a new key, a new client) is seen
    /// by the token endpoints. Digdir documents 0–2 minutes; 0 here by default.
    pub propagation_delay_secs: u64,
    /// The synthetic person ID-porten logs in.
    pub login_pid: String,
}

pub const KRR_CONTACT: &str = "krr:global/kontaktinformasjon.read";
pub const KRR_DIGITALPOST: &str = "krr:global/digitalpost.read";

impl Default for Seed {
    fn default() -> Self {
        let admin = "971040238".to_string();
        let digdir = "991825827".to_string();
        let org = |orgno: &str, name: &str| Organisation {
            orgno: orgno.into(),
            name: name.into(),
        };
        let krr = |name: &str, description: &str| SeedScope {
            name: name.into(),
            owner_orgno: digdir.clone(),
            description: description.into(),
            allowed_integration_types: vec!["maskinporten".into(), "krr".into()],
            consumers: vec![admin.clone()],
            ..SeedScope::default()
        };
        Self {
            environment: "test".into(),
            admin_orgno: admin.clone(),
            admin_client_id: String::new(),
            admin_scopes: vec![
                "idporten:dcr.write".into(),
                "idporten:dcr.read".into(),
                "idporten:scopes.write".into(),
            ],
            admin_access_token_lifetime: 600,
            organisations: vec![
                org(&admin, "KARTVERKET"),
                org(&digdir, "DIGITALISERINGSDIREKTORATET"),
                org("987654321", "HUSLØS HURTIG TIGER AS"),
                org("123456789", "KOSTBAR LEKKER APE AS"),
                org("910753614", "SPRUDLENDE TEST ORGANISASJON AS"),
                org("889640782", "ARBEIDS- OG VELFERDSETATEN"),
            ],
            prefixes: vec![
                ("kartverket".into(), admin.clone()),
                ("nav".into(), admin.clone()),
                ("krr".into(), digdir.clone()),
                ("difitest".into(), digdir.clone()),
            ],
            scopes: vec![
                krr(KRR_CONTACT, "Kontaktinformasjon fra KRR"),
                krr(KRR_DIGITALPOST, "Digital post-adresse fra KRR"),
                SeedScope {
                    name: "nav:test/api".into(),
                    owner_orgno: admin.clone(),
                    description: "Default client scope (digdirator's default)".into(),
                    allowed_integration_types: vec!["maskinporten".into()],
                    consumers: vec![admin.clone()],
                    ..SeedScope::default()
                },
            ],
            delegation_sources: vec![SeedDelegationSource {
                name: "altinn".into(),
                issuer: "https://tt02.altinn.no/".into(),
            }],
            altinn_delegations: vec![],
            propagation_delay_secs: 0,
            login_pid: "24079409630".into(),
        }
    }
}

impl Seed {
    /// Parses a seed from JSON; absent fields keep their defaults.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn org_name(&self, orgno: &str) -> Option<&str> {
        self.organisations
            .iter()
            .find(|o| o.orgno == orgno)
            .map(|o| o.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seed_names_the_example_organisations_and_krr_scopes() {
        let seed = Seed::default();
        for orgno in ["987654321", "123456789", "910753614", "971040238"] {
            assert!(seed.org_name(orgno).is_some(), "{orgno} missing");
        }
        assert!(seed.scopes.iter().any(|s| s.name == KRR_CONTACT));
        assert!(seed.scopes.iter().any(|s| s.name == KRR_DIGITALPOST));
    }

    #[test]
    fn partial_json_keeps_defaults() {
        let seed = Seed::from_json(r#"{"admin_orgno":"889640782","propagation_delay_secs":120}"#)
            .expect("valid seed");
        assert_eq!(seed.admin_orgno, "889640782");
        assert_eq!(seed.propagation_delay_secs, 120);
        assert_eq!(seed.environment, "test");
        assert!(!seed.scopes.is_empty());
    }
}
