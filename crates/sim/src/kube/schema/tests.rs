//! The schema semantics against liberator's real CRDs and the shared example manifests.

use serde_json::{Value, json};

use super::*;

/// The repository's test data (copies of liberator's CRDs and the example manifests; see tests/data/README.md).
fn reference(rel: &str) -> String {
    format!("{}/../../tests/data/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn crd_schema(plural: &str) -> Value {
    let crd = yaml(&reference(&format!("liberator-crds/nais.io_{plural}.yaml")));
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .expect("CRD has a schema")
}

fn example(name: &str) -> Value {
    yaml(&reference(&format!("examples/{name}.yaml")))
}

fn maskinporten() -> Value {
    crd_schema("maskinportenclients")
}
fn idporten() -> Value {
    crd_schema("idportenclients")
}
fn azure() -> Value {
    crd_schema("azureadapplications")
}

/// Prune + default + validate (create).
fn check(schema: &Value, mut obj: Value) -> Vec<Cause> {
    prune_and_default(schema, &mut obj);
    validate(schema, &obj, None)
}

/// Prune + default both, then validate as an update.
fn check_update(schema: &Value, mut old: Value, mut obj: Value) -> Vec<Cause> {
    prune_and_default(schema, &mut old);
    prune_and_default(schema, &mut obj);
    validate(schema, &obj, Some(&old))
}

/// Sets the value at a JSON pointer, creating missing objects on the way.
fn set(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        cur = match cur {
            Value::Array(a) => {
                let idx: usize = s.parse().expect("index");
                if last {
                    a[idx] = v;
                    break;
                }
                &mut a[idx]
            }
            Value::Object(m) => {
                if last {
                    m.insert(s.to_string(), v);
                    break;
                }
                m.entry(s.to_string()).or_insert_with(|| json!({}))
            }
            _ => panic!("cannot descend into {s}"),
        };
    }
}

fn with(mut obj: Value, pointer: &str, v: Value) -> Value {
    set(&mut obj, pointer, v);
    obj
}

fn without(mut obj: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    match obj.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(key);
        }
        Some(Value::Array(a)) => {
            a.remove(key.parse::<usize>().expect("index"));
        }
        _ => panic!("no parent at {parent}"),
    }
    obj
}

/// Asserts exactly one cause at `field` whose message contains `fragment`, and returns it.
fn rejected(causes: &[Cause], field: &str, fragment: &str) -> Cause {
    let hits: Vec<&Cause> = causes.iter().filter(|c| c.field == field).collect();
    assert!(
        hits.iter().any(|c| c.message.contains(fragment)),
        "expected a cause at {field} containing {fragment:?}, got {causes:#?}"
    );
    hits.into_iter()
        .find(|c| c.message.contains(fragment))
        .cloned()
        .expect("found above")
}

const EXPOSE0: &str = "/spec/scopes/exposes/0";

#[test]
fn every_shared_example_is_accepted_unchanged() {
    for (name, schema) in [
        ("azureadapplication", azure()),
        ("idportenclient", idporten()),
        ("maskinportenclient", maskinporten()),
        ("maskinportenclient-consumer", maskinporten()),
        ("maskinportenclient-delegation", maskinporten()),
    ] {
        let mut obj = example(name);
        let original = obj.clone();
        let pruned = prune_and_default(&schema, &mut obj);
        assert!(pruned.is_empty(), "{name}: pruned {pruned:?}");
        let causes = validate(&schema, &obj, None);
        assert!(causes.is_empty(), "{name}: {causes:#?}");
        // and as an update against itself and against the original
        assert!(validate(&schema, &obj, Some(&obj)).is_empty());
        if name != "idportenclient" {
            assert_eq!(
                obj, original,
                "{name}: only declared defaults may change the object"
            );
        }
    }
}

#[test]
fn maskinporten_numeric_bounds_with_real_wording() {
    let s = maskinporten();
    let base = example("maskinportenclient-delegation");
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/atMaxAge"), json!(1000)),
    );
    assert_eq!(
        c,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: 1000: spec.scopes.exposes[0].atMaxAge in body should be less than or equal to 680".into(),
            field: "spec.scopes.exposes[0].atMaxAge".into(),
        }]
    );
    assert_eq!(
        invalid_message("MaskinportenClient", "nais.io", "delegated-api", &c),
        "MaskinportenClient.nais.io \"delegated-api\" is invalid: spec.scopes.exposes[0].atMaxAge: Invalid value: 1000: spec.scopes.exposes[0].atMaxAge in body should be less than or equal to 680"
    );
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/atMaxAge"), json!(29)),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].atMaxAge",
        "Invalid value: 29: spec.scopes.exposes[0].atMaxAge in body should be greater than or equal to 30",
    );
    assert!(
        check(
            &s,
            with(base.clone(), &format!("{EXPOSE0}/atMaxAge"), json!(680))
        )
        .is_empty()
    );
    assert!(
        check(
            &s,
            with(base.clone(), &format!("{EXPOSE0}/atMaxAge"), json!(30))
        )
        .is_empty()
    );
    // wrong type
    let c = check(&s, with(base, &format!("{EXPOSE0}/atMaxAge"), json!("60")));
    let cause = rejected(
        &c,
        "spec.scopes.exposes[0].atMaxAge",
        "Invalid value: \"string\": spec.scopes.exposes[0].atMaxAge in body must be of type integer: \"string\"",
    );
    assert_eq!(cause.reason, "FieldValueTypeInvalid");
}

#[test]
fn maskinporten_orgno_pattern_follows_go() {
    let s = maskinporten();
    let base = example("maskinportenclient");
    let p = "/spec/scopes/exposes/0/consumers/1/orgno";
    for bad in [
        "12345678",
        "1234567890",
        "12345678a",
        "123456789\n",
        "١٢٣٤٥٦٧٨٩",
        "12345678９",
    ] {
        let c = check(&s, with(base.clone(), p, json!(bad)));
        let cause = rejected(
            &c,
            "spec.scopes.exposes[0].consumers[1].orgno",
            "spec.scopes.exposes[0].consumers[1].orgno in body should match '^\\d{9}$'",
        );
        assert_eq!(cause.reason, "FieldValueInvalid");
        assert!(
            cause
                .message
                .starts_with(&format!("Invalid value: {}", go_quote(bad)))
        );
    }
    let c = check(&s, without(base.clone(), p));
    let cause = rejected(
        &c,
        "spec.scopes.exposes[0].consumers[1].orgno",
        "Required value",
    );
    assert_eq!(cause.reason, "FieldValueRequired");
    assert_eq!(cause.message, "Required value");
}

#[test]
fn maskinporten_required_fields() {
    let s = maskinporten();
    let base = example("maskinportenclient-delegation");
    let c = check(&s, without(base.clone(), "/spec/secretName"));
    assert_eq!(
        c[0],
        Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.secretName".into()
        }
    );
    assert_eq!(
        invalid_message("MaskinportenClient", "nais.io", "x", &c[..1]),
        "MaskinportenClient.nais.io \"x\" is invalid: spec.secretName: Required value"
    );
    // An empty secretName satisfies `required`.
    assert!(check(&s, with(base.clone(), "/spec/secretName", json!(""))).is_empty());
    for f in ["enabled", "name", "product"] {
        let c = check(&s, without(base.clone(), &format!("{EXPOSE0}/{f}")));
        rejected(&c, &format!("spec.scopes.exposes[0].{f}"), "Required value");
    }
    let consumer = example("maskinportenclient-consumer");
    let c = check(&s, without(consumer, "/spec/scopes/consumes/0/name"));
    rejected(&c, "spec.scopes.consumes[0].name", "Required value");
    // A missing spec is fine for the schema (spec is not required), a missing required nested is not.
    let c = check(
        &s,
        json!({"apiVersion": "nais.io/v1", "kind": "MaskinportenClient", "metadata": {"name": "x"}}),
    );
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn maskinporten_patterns_enums_lengths() {
    let s = maskinporten();
    let base = example("maskinportenclient-delegation");
    // product pattern (the documented "Produktområde" is rejected)
    let c = check(
        &s,
        with(
            base.clone(),
            &format!("{EXPOSE0}/product"),
            json!("Produktområde"),
        ),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].product",
        "Invalid value: \"Produktområde\": spec.scopes.exposes[0].product in body should match '^[a-z0-9]+$'",
    );
    // scope name pattern
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/name"), json!("Test2")),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].name",
        "should match '^([a-zæøå0-9]+\\/?)+",
    );
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/name"), json!("test2\n")),
    );
    rejected(&c, "spec.scopes.exposes[0].name", "should match");
    assert!(
        check(
            &s,
            with(
                base.clone(),
                &format!("{EXPOSE0}/name"),
                json!("blåbær/read")
            )
        )
        .is_empty()
    );
    // consumed scope name: no pattern in the CRD; any string goes
    assert!(
        check(
            &s,
            with(
                example("maskinportenclient-consumer"),
                "/spec/scopes/consumes/0/name",
                json!("Anything Goes")
            )
        )
        .is_empty()
    );
    // delegationSource enum
    let c = check(
        &s,
        with(
            base.clone(),
            &format!("{EXPOSE0}/delegationSource"),
            json!("altinn3"),
        ),
    );
    let cause = rejected(
        &c,
        "spec.scopes.exposes[0].delegationSource",
        "Unsupported value: \"altinn3\": supported values: \"altinn\"",
    );
    assert_eq!(cause.reason, "FieldValueNotSupported");
    // visibility enum
    let c = check(
        &s,
        with(
            base.clone(),
            &format!("{EXPOSE0}/visibility"),
            json!("internal"),
        ),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].visibility",
        "Unsupported value: \"internal\": supported values: \"private\", \"public\"",
    );
    // separator: maxLength, minLength, pattern
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/separator"), json!("//")),
    );
    let cause = rejected(
        &c,
        "spec.scopes.exposes[0].separator",
        "Too long: may not be more than 1 byte",
    );
    assert_eq!(cause.reason, "FieldValueTooLong");
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/separator"), json!("")),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].separator",
        "Invalid value: \"\": spec.scopes.exposes[0].separator in body should be at least 1 chars long",
    );
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/separator"), json!("-")),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].separator",
        "should match '^[\\/:.]$'",
    );
    // allowedIntegrations minItems
    let c = check(
        &s,
        with(
            base.clone(),
            &format!("{EXPOSE0}/allowedIntegrations"),
            json!([]),
        ),
    );
    rejected(
        &c,
        "spec.scopes.exposes[0].allowedIntegrations",
        "spec.scopes.exposes[0].allowedIntegrations in body should have at least 1 items",
    );
    // boolean type
    let c = check(&s, with(base, &format!("{EXPOSE0}/enabled"), json!("true")));
    rejected(
        &c,
        "spec.scopes.exposes[0].enabled",
        "must be of type boolean",
    );
}

#[test]
fn maskinporten_cel_separator_and_delegation_source() {
    let s = maskinporten();
    let base = example("maskinportenclient-delegation");
    let msg = "scopes.exposes[].separator must be set to \"/\" when scopes.exposes[].delegationSource is set";
    let c = check(
        &s,
        with(base.clone(), &format!("{EXPOSE0}/separator"), json!(":")),
    );
    assert_eq!(
        c,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"object\": {msg}"),
            field: "spec.scopes.exposes[0]".into(),
        }]
    );
    let c = check(&s, without(base.clone(), &format!("{EXPOSE0}/separator")));
    rejected(&c, "spec.scopes.exposes[0]", msg);
    // no delegationSource: any valid separator is fine
    let no_deleg = without(base.clone(), &format!("{EXPOSE0}/delegationSource"));
    assert!(
        check(
            &s,
            with(no_deleg, &format!("{EXPOSE0}/separator"), json!(":"))
        )
        .is_empty()
    );
    // A blocking OpenAPI error (enum) means CEL is not evaluated, as the API server does.
    let bad = with(base, &format!("{EXPOSE0}/delegationSource"), json!("nope"));
    let c = check(&s, with(bad, &format!("{EXPOSE0}/separator"), json!(":")));
    assert_eq!(c.len(), 2, "{c:#?}");
    assert_eq!(c[1].field, "<nil>");
    assert!(
        c[1].message
            .contains("some validation rules were not checked")
    );
}

#[test]
fn status_conditions_are_validated() {
    let s = maskinporten();
    let mut obj = example("maskinportenclient");
    let cond = json!({"type": "Ready", "status": "True", "reason": "Synchronized", "message": "", "lastTransitionTime": "2025-01-02T03:04:05Z", "observedGeneration": 1});
    set(&mut obj, "/status/conditions", json!([cond.clone()]));
    assert!(check(&s, obj.clone()).is_empty());
    let c = check(
        &s,
        with(obj.clone(), "/status/conditions/0/status", json!("Maybe")),
    );
    rejected(
        &c,
        "status.conditions[0].status",
        "supported values: \"True\", \"False\", \"Unknown\"",
    );
    let c = check(
        &s,
        with(obj.clone(), "/status/conditions/0/reason", json!("not ok!")),
    );
    rejected(&c, "status.conditions[0].reason", "should match");
    let c = check(
        &s,
        with(obj.clone(), "/status/conditions/0/reason", json!("")),
    );
    rejected(
        &c,
        "status.conditions[0].reason",
        "should be at least 1 chars long",
    );
    let c = check(
        &s,
        with(
            obj.clone(),
            "/status/conditions/0/observedGeneration",
            json!(-1),
        ),
    );
    rejected(
        &c,
        "status.conditions[0].observedGeneration",
        "greater than or equal to 0",
    );
    let c = check(
        &s,
        with(
            obj.clone(),
            "/status/conditions/0/lastTransitionTime",
            json!("yesterday"),
        ),
    );
    let cause = rejected(
        &c,
        "status.conditions[0].lastTransitionTime",
        "Invalid value: \"yesterday\": status.conditions[0].lastTransitionTime in body must be of type date-time: \"yesterday\"",
    );
    assert_eq!(cause.reason, "FieldValueTypeInvalid");
    let c = check(
        &s,
        with(
            obj.clone(),
            "/status/conditions/0/type",
            json!("x".repeat(317)),
        ),
    );
    rejected(
        &c,
        "status.conditions[0].type",
        "may not be more than 316 bytes",
    );
    let c = check(
        &s,
        with(
            obj.clone(),
            "/status/conditions/0/message",
            json!("é".repeat(32768)),
        ),
    );
    assert!(c.is_empty(), "maxLength counts characters: {c:?}");
    for f in ["type", "status", "reason", "message", "lastTransitionTime"] {
        let c = check(
            &s,
            without(obj.clone(), &format!("/status/conditions/0/{f}")),
        );
        rejected(&c, &format!("status.conditions[0].{f}"), "Required value");
    }
}

#[test]
fn idporten_rules() {
    let s = idporten();
    let base = example("idportenclient");
    for (f, lo, hi) in [
        ("accessTokenLifetime", 1, 3600),
        ("sessionLifetime", 3600, 28800),
    ] {
        let p = format!("/spec/{f}");
        assert!(check(&s, with(base.clone(), &p, json!(lo))).is_empty());
        assert!(check(&s, with(base.clone(), &p, json!(hi))).is_empty());
        let c = check(&s, with(base.clone(), &p, json!(hi + 1)));
        rejected(
            &c,
            &format!("spec.{f}"),
            &format!("should be less than or equal to {hi}"),
        );
        let c = check(&s, with(base.clone(), &p, json!(lo - 1)));
        rejected(
            &c,
            &format!("spec.{f}"),
            &format!("should be greater than or equal to {lo}"),
        );
    }
    for f in ["clientURI", "frontchannelLogoutURI", "redirectURI"] {
        let c = check(
            &s,
            with(
                base.clone(),
                &format!("/spec/{f}"),
                json!("http://example.com"),
            ),
        );
        rejected(
            &c,
            &format!("spec.{f}"),
            "should match '^(https:\\/\\/)|(http:\\/\\/localhost\\:).+$'",
        );
        assert!(
            check(
                &s,
                with(
                    base.clone(),
                    &format!("/spec/{f}"),
                    json!("http://localhost:8080/x")
                )
            )
            .is_empty()
        );
    }
    for f in ["redirectURIs", "postLogoutRedirectURIs"] {
        let c = check(
            &s,
            with(
                base.clone(),
                &format!("/spec/{f}"),
                json!(["https://ok", "ftp://no"]),
            ),
        );
        rejected(&c, &format!("spec.{f}[1]"), "Invalid value: \"ftp://no\"");
    }
    let c = check(
        &s,
        with(base.clone(), "/spec/integrationType", json!("maskinporten")),
    );
    rejected(
        &c,
        "spec.integrationType",
        "Unsupported value: \"maskinporten\": supported values: \"krr\", \"idporten\", \"api_klient\"",
    );
    let c = check(&s, with(base.clone(), "/spec/ssoDisabled", json!("yes")));
    rejected(&c, "spec.ssoDisabled", "must be of type boolean");
    let c = check(&s, with(base.clone(), "/spec/scopes", json!("openid")));
    rejected(&c, "spec.scopes", "must be of type array");
    let c = check(&s, without(base, "/spec/secretName"));
    rejected(&c, "spec.secretName", "Required value");
}

#[test]
fn idporten_integration_type_default_and_immutability() {
    let s = idporten();
    let base = example("idportenclient");
    let mut obj = without(base.clone(), "/spec/integrationType");
    prune_and_default(&s, &mut obj);
    assert_eq!(
        obj.pointer("/spec/integrationType"),
        Some(&json!("idporten"))
    );
    // a null is replaced by the default, too
    let mut obj = with(base.clone(), "/spec/integrationType", Value::Null);
    prune_and_default(&s, &mut obj);
    assert_eq!(
        obj.pointer("/spec/integrationType"),
        Some(&json!("idporten"))
    );

    let krr = with(base.clone(), "/spec/integrationType", json!("krr"));
    // create with any allowed value: the transition rule is not evaluated
    assert!(check(&s, krr.clone()).is_empty());
    // unchanged update
    assert!(check_update(&s, krr.clone(), krr.clone()).is_empty());
    let msg = "integrationType is immutable; delete and recreate the IDPortenClient to change integrationType";
    let c = check_update(
        &s,
        krr.clone(),
        with(krr.clone(), "/spec/integrationType", json!("api_klient")),
    );
    assert_eq!(
        c,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"string\": {msg}"),
            field: "spec.integrationType".into(),
        }]
    );
    // removing the field on update is judged against the default ("idporten" != "krr")
    let c = check_update(&s, krr.clone(), without(krr, "/spec/integrationType"));
    rejected(&c, "spec.integrationType", msg);
    // and removing it when it was the default is fine
    assert!(check_update(&s, base.clone(), without(base, "/spec/integrationType")).is_empty());
}

#[test]
fn azure_rules() {
    let s = azure();
    let base = example("azureadapplication");
    let c = check(
        &s,
        with(
            base.clone(),
            "/spec/claims/extra",
            json!(["NAVident", "email"]),
        ),
    );
    rejected(
        &c,
        "spec.claims.extra[1]",
        "Unsupported value: \"email\": supported values: \"NAVident\", \"azp_name\"",
    );
    let c = check(
        &s,
        with(
            base.clone(),
            "/spec/groupMembershipClaims",
            json!("Everyone"),
        ),
    );
    rejected(
        &c,
        "spec.groupMembershipClaims",
        "Unsupported value: \"Everyone\"",
    );
    let c = check(
        &s,
        with(base.clone(), "/spec/replyUrls/0/url", json!("ftp://x")),
    );
    rejected(
        &c,
        "spec.replyUrls[0].url",
        "should match '^https?:\\/\\/.+$'",
    );
    let c = check(
        &s,
        without(
            base.clone(),
            "/spec/preAuthorizedApplications/0/application",
        ),
    );
    rejected(
        &c,
        "spec.preAuthorizedApplications[0].application",
        "Required value",
    );
    for f in ["roles", "scopes"] {
        let c = check(
            &s,
            with(
                base.clone(),
                &format!("/spec/preAuthorizedApplications/0/permissions/{f}"),
                json!(["ok-1", "Not OK"]),
            ),
        );
        rejected(
            &c,
            &format!("spec.preAuthorizedApplications[0].permissions.{f}[1]"),
            "should match '^[a-z0-9-_./]+$'",
        );
    }
    let c = check(&s, without(base.clone(), "/spec/secretName"));
    rejected(&c, "spec.secretName", "Required value");
    // logoutUrl is not constrained by the schema
    assert!(check(&s, with(base, "/spec/logoutUrl", json!("http://whatever"))).is_empty());
}

fn fc(name: &str, issuer: &str, subject: &str) -> Value {
    json!({"name": name, "issuer": issuer, "subject": subject, "audience": "api://AzureADTokenExchange"})
}

#[test]
fn azure_federated_credentials() {
    let s = azure();
    let base = example("azureadapplication");
    let ok = with(
        base.clone(),
        "/spec/federatedCredentials",
        json!([fc("a", "https://i", "s1"), fc("b", "https://i", "s2")]),
    );
    assert!(check(&s, ok.clone()).is_empty());
    // list-map key uniqueness
    let c = check(
        &s,
        with(
            base.clone(),
            "/spec/federatedCredentials",
            json!([fc("a", "https://i", "s1"), fc("a", "https://i", "s2")]),
        ),
    );
    let cause = rejected(
        &c,
        "spec.federatedCredentials[1]",
        "Duplicate value: map[string]interface {}{\"name\":\"a\"}",
    );
    assert_eq!(cause.reason, "FieldValueDuplicate");
    // CEL: (issuer, subject) unique
    let c = check(
        &s,
        with(
            base.clone(),
            "/spec/federatedCredentials",
            json!([fc("a", "https://i", "s1"), fc("b", "https://i", "s1")]),
        ),
    );
    assert_eq!(
        c,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message:
                "Invalid value: \"array\": each combination of (issuer, subject) must be unique"
                    .into(),
            field: "spec.federatedCredentials".into(),
        }]
    );
    // maxItems 20
    let many: Vec<Value> = (0..21)
        .map(|i| fc(&format!("n{i}"), "https://i", &format!("s{i}")))
        .collect();
    let c = check(
        &s,
        with(base.clone(), "/spec/federatedCredentials", json!(many)),
    );
    let cause = rejected(
        &c,
        "spec.federatedCredentials",
        "Too many: 21: must have at most 20 items",
    );
    assert_eq!(cause.reason, "FieldValueTooMany");
    // lengths and required fields
    for (f, max) in [
        ("name", 120),
        ("issuer", 600),
        ("subject", 600),
        ("audience", 600),
    ] {
        let c = check(
            &s,
            with(
                ok.clone(),
                &format!("/spec/federatedCredentials/0/{f}"),
                json!("x".repeat(max + 1)),
            ),
        );
        rejected(
            &c,
            &format!("spec.federatedCredentials[0].{f}"),
            &format!("may not be more than {max} bytes"),
        );
        let c = check(
            &s,
            with(
                ok.clone(),
                &format!("/spec/federatedCredentials/0/{f}"),
                json!(""),
            ),
        );
        rejected(
            &c,
            &format!("spec.federatedCredentials[0].{f}"),
            "should be at least 1 chars long",
        );
        let c = check(
            &s,
            without(ok.clone(), &format!("/spec/federatedCredentials/0/{f}")),
        );
        rejected(
            &c,
            &format!("spec.federatedCredentials[0].{f}"),
            "Required value",
        );
    }
}

#[test]
fn pruning_reports_unknown_fields_and_drops_nulls() {
    let s = maskinporten();
    let mut obj = example("maskinportenclient-delegation");
    set(&mut obj, "/spec/foo", json!(1));
    set(&mut obj, "/spec/scopes/exposes/0/bar", json!({"x": 1}));
    set(&mut obj, "/spec/clientName", Value::Null);
    set(&mut obj, "/metadata/bogus", json!("x"));
    set(&mut obj, "/metadata/labels", json!({"a": "b"}));
    set(&mut obj, "/topLevel", json!(true));
    let pruned = prune_and_default(&s, &mut obj);
    assert_eq!(
        pruned,
        vec![
            "metadata.bogus",
            "spec.foo",
            "spec.scopes.exposes[0].bar",
            "topLevel"
        ]
    );
    assert_eq!(obj.pointer("/spec/foo"), None);
    assert_eq!(obj.pointer("/spec/clientName"), None);
    assert_eq!(obj.pointer("/metadata/labels/a"), Some(&json!("b")));
    assert_eq!(obj.pointer("/apiVersion"), Some(&json!("nais.io/v1")));
    assert!(validate(&s, &obj, None).is_empty());
}

#[test]
fn defaults_apply_recursively_and_in_items() {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "a": {"type": "string", "default": "x"},
                    "inner": {"type": "object", "default": {"b": 1}, "properties": {
                        "b": {"type": "integer"}, "c": {"type": "integer", "default": 3}}},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "k": {"type": "string"}, "v": {"type": "integer", "default": 7}}}},
                    "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                        "z": {"type": "boolean", "default": true}}}},
                    "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "n": {"type": "string", "nullable": true}
                }
            }
        }
    });
    let mut obj = json!({"spec": {"items": [{"k": "a"}, {"k": "b", "v": 1}], "m": {"one": {}},
        "keep": {"anything": {"goes": null}}, "n": null}});
    let pruned = prune_and_default(&schema, &mut obj);
    assert!(pruned.is_empty());
    assert_eq!(
        obj,
        json!({"spec": {"items": [{"k": "a", "v": 7}, {"k": "b", "v": 1}], "m": {"one": {"z": true}},
            "keep": {"anything": {"goes": null}}, "n": null, "a": "x", "inner": {"b": 1, "c": 3}}})
    );
    let mut empty = json!({});
    prune_and_default(&schema, &mut empty);
    assert_eq!(
        empty,
        json!({"spec": {"a": "x", "inner": {"b": 1, "c": 3}}})
    );
    assert!(validate(&schema, &obj, None).is_empty());
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    let s = maskinporten();
    let base = example("maskinportenclient");
    let stored = with(
        base.clone(),
        "/spec/scopes/exposes/0/product",
        json!("Produktområde"),
    );
    // an update that touches something else keeps the old invalid value
    let updated = with(stored.clone(), "/spec/clientName", json!("new name"));
    assert!(check_update(&s, stored.clone(), updated).is_empty());
    // changing the invalid value to another invalid value is rejected
    let changed = with(
        stored.clone(),
        "/spec/scopes/exposes/0/product",
        json!("ÆØÅ"),
    );
    rejected(
        &check_update(&s, stored, changed),
        "spec.scopes.exposes[0].product",
        "should match",
    );
}

#[test]
fn list_type_set_and_nullable() {
    let schema = json!({"type": "object", "properties": {
        "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "n": {"type": "integer", "nullable": true},
        "i": {"type": "array", "items": {"type": "integer"}}
    }});
    let c = validate(
        &schema,
        &json!({"s": ["a", "b", "a"], "n": null, "i": [1, null]}),
        None,
    );
    assert_eq!(c.len(), 3, "{c:#?}");
    rejected(
        &c,
        "i[1]",
        "Invalid value: \"null\": i[1] in body must be of type integer: \"null\"",
    );
    rejected(&c, "s[2]", "Duplicate value: \"a\"");
    assert_eq!(c[2].field, "<nil>");
}

#[test]
fn messages_and_formatting() {
    assert_eq!(go_float(680.0), "680");
    assert_eq!(go_float(1.5), "1.5");
    assert_eq!(go_float(1e21), "1e+21");
    assert_eq!(go_float(0.00001), "1e-05");
    assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    let c = vec![
        Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.a".into(),
        },
        Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.b".into(),
        },
    ];
    assert_eq!(
        invalid_message("Secret", "", "s", &c),
        "Secret \"s\" is invalid: [spec.a: Required value, spec.b: Required value]"
    );
    assert_eq!(
        invalid_message("Secret", "", "s", &[]),
        "Secret \"s\" is invalid"
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let schemas = [
        maskinporten(),
        idporten(),
        azure(),
        json!({}),
        json!(null),
        json!([1]),
        json!({"type": 5, "properties": []}),
    ];
    let values = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"spec": null}),
        json!({"spec": {"scopes": {"exposes": [null, 1, "x", {"atMaxAge": 1e300}]}}}),
        json!({"spec": {"federatedCredentials": [1, null]}}),
        json!({"spec": {"federatedCredentials": {"a": 1}}}),
        json!({"metadata": "x", "spec": [1]}),
    ];
    for s in &schemas {
        for v in &values {
            let mut v = v.clone();
            let _ = prune_and_default(s, &mut v);
            let _ = validate(s, &v, None);
            let _ = validate(s, &v, Some(&json!({"spec": {"integrationType": "krr"}})));
        }
    }
    let weird = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(", "format": "date-time"},
        "b": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object"}},
        "c": {"type": "object", "x-kubernetes-validations": [{"rule": "self.nope.nope == 1"}, {"rule": "((("}]}}});
    let c = validate(
        &weird,
        &json!({"a": "x", "b": [{"k": 1}, {"k": 1}, 3], "c": {}}),
        None,
    );
    assert!(!c.is_empty());
}
