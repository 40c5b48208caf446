//! Manifests for schema tests (`crd_schema.rs`): test data, kept out of the production library.
//!
//! - [`invalid_manifests`]: for every validation rule in liberator's CRDs, one manifest that breaks it
//!   (on create) and the field path the API server's error must name (`details.causes[].field`, as the real
//!   server reports it: `spec.scopes.exposes[0].atMaxAge`; CEL rules on an object name the object).
//! - [`invalid_updates`]: rules that only apply on update (transition rules with `oldSelf`).
//! - [`invalid_statuses`]: rules of the status schema (conditions), for writes to the status subresource.
//! - [`valid_manifests`]: edge cases liberator's CRDs accept and portvakt must accept too.

use serde_json::{Value, json};

fn obj(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "nais.io/v1",
        "kind": kind,
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec,
    })
}

/// An `IDPortenClient` named `name` with the given spec.
pub fn idporten(name: &str, spec: Value) -> Value {
    obj("IDPortenClient", name, spec)
}

/// A `MaskinportenClient` named `name` with the given spec.
pub fn maskinporten(name: &str, spec: Value) -> Value {
    obj("MaskinportenClient", name, spec)
}

/// An `AzureAdApplication` named `name` with the given spec.
pub fn azure(name: &str, spec: Value) -> Value {
    obj("AzureAdApplication", name, spec)
}

/// A `MaskinportenClient` exposing one scope: `{enabled: true, name: "api", product: "arbeid"}` merged with
/// `fields` (a `null` value removes a field).
pub fn exposing(name: &str, fields: Value) -> Value {
    let mut scope = json!({ "enabled": true, "name": "api", "product": "arbeid" });
    if let (Some(s), Some(f)) = (scope.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            if v.is_null() {
                s.remove(k);
            } else {
                s.insert(k.clone(), v.clone());
            }
        }
    }
    maskinporten(
        name,
        json!({ "secretName": "s", "scopes": { "exposes": [scope] } }),
    )
}

fn federated(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "name": format!("cred-{i}"),
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": format!("repo:org/repo-{i}:ref:refs/heads/main"),
                "audience": "api://AzureADTokenExchange",
            })
        })
        .collect()
}

fn azure_fed(name: &str, creds: Vec<Value>) -> Value {
    azure(
        name,
        json!({ "secretName": "s", "federatedCredentials": creds }),
    )
}

fn with_cred(field: &str, value: Value) -> Vec<Value> {
    let mut c = federated(1);
    if let Some(o) = c[0].as_object_mut() {
        if value.is_null() {
            o.remove(field);
        } else {
            o.insert(field.to_string(), value);
        }
    }
    c
}

/// For each validation rule in liberator's CRDs, a manifest that breaks it on create:
/// (case name, manifest, field path the error must name).
pub fn invalid_manifests() -> Vec<(&'static str, Value, &'static str)> {
    let mut v: Vec<(&'static str, Value, &'static str)> = vec![
        // ---------------- IDPortenClient ----------------
        (
            "idporten: secretName required",
            idporten("a", json!({ "clientName": "x" })),
            "spec.secretName",
        ),
        (
            "idporten: secretName must be a string",
            idporten("a", json!({ "secretName": 5 })),
            "spec.secretName",
        ),
        (
            "idporten: accessTokenLifetime minimum 1",
            idporten("a", json!({ "secretName": "s", "accessTokenLifetime": 0 })),
            "spec.accessTokenLifetime",
        ),
        (
            "idporten: accessTokenLifetime maximum 3600",
            idporten(
                "a",
                json!({ "secretName": "s", "accessTokenLifetime": 3601 }),
            ),
            "spec.accessTokenLifetime",
        ),
        (
            "idporten: accessTokenLifetime must be an integer",
            idporten(
                "a",
                json!({ "secretName": "s", "accessTokenLifetime": "60" }),
            ),
            "spec.accessTokenLifetime",
        ),
        (
            "idporten: accessTokenLifetime must not be fractional",
            idporten(
                "a",
                json!({ "secretName": "s", "accessTokenLifetime": 60.5 }),
            ),
            "spec.accessTokenLifetime",
        ),
        (
            "idporten: sessionLifetime minimum 3600",
            idporten("a", json!({ "secretName": "s", "sessionLifetime": 3599 })),
            "spec.sessionLifetime",
        ),
        (
            "idporten: sessionLifetime maximum 28800",
            idporten("a", json!({ "secretName": "s", "sessionLifetime": 28801 })),
            "spec.sessionLifetime",
        ),
        (
            "idporten: clientName must be a string",
            idporten("a", json!({ "secretName": "s", "clientName": ["x"] })),
            "spec.clientName",
        ),
        (
            "idporten: clientURI pattern (http without localhost)",
            idporten(
                "a",
                json!({ "secretName": "s", "clientURI": "http://example.com" }),
            ),
            "spec.clientURI",
        ),
        (
            "idporten: clientURI pattern (ftp)",
            idporten(
                "a",
                json!({ "secretName": "s", "clientURI": "ftp://example.com" }),
            ),
            "spec.clientURI",
        ),
        (
            "idporten: clientURI pattern ($ only at the very end, RE2)",
            idporten(
                "a",
                json!({ "secretName": "s", "clientURI": "http://localhost:8080\n" }),
            ),
            "spec.clientURI",
        ),
        (
            "idporten: frontchannelLogoutURI pattern",
            idporten(
                "a",
                json!({ "secretName": "s", "frontchannelLogoutURI": "example.com/logout" }),
            ),
            "spec.frontchannelLogoutURI",
        ),
        (
            "idporten: redirectURI pattern",
            idporten(
                "a",
                json!({ "secretName": "s", "redirectURI": "HTTPS://example.com" }),
            ),
            "spec.redirectURI",
        ),
        (
            "idporten: redirectURIs item pattern",
            idporten(
                "a",
                json!({ "secretName": "s", "redirectURIs": ["https://ok.example.com/cb", "http://example.com/cb"] }),
            ),
            "spec.redirectURIs[1]",
        ),
        (
            "idporten: redirectURIs must be an array",
            idporten(
                "a",
                json!({ "secretName": "s", "redirectURIs": "https://example.com/cb" }),
            ),
            "spec.redirectURIs",
        ),
        (
            "idporten: postLogoutRedirectURIs item pattern",
            idporten(
                "a",
                json!({ "secretName": "s", "postLogoutRedirectURIs": ["//example.com"] }),
            ),
            "spec.postLogoutRedirectURIs[0]",
        ),
        (
            "idporten: integrationType enum",
            idporten(
                "a",
                json!({ "secretName": "s", "integrationType": "maskinporten" }),
            ),
            "spec.integrationType",
        ),
        (
            "idporten: scopes items must be strings",
            idporten("a", json!({ "secretName": "s", "scopes": ["openid", 7] })),
            "spec.scopes[1]",
        ),
        (
            "idporten: ssoDisabled must be a boolean",
            idporten("a", json!({ "secretName": "s", "ssoDisabled": "true" })),
            "spec.ssoDisabled",
        ),
        // ---------------- MaskinportenClient ----------------
        (
            "maskinporten: secretName required",
            maskinporten("m", json!({ "scopes": {} })),
            "spec.secretName",
        ),
        (
            "maskinporten: scopes must be an object",
            maskinporten("m", json!({ "secretName": "s", "scopes": ["a"] })),
            "spec.scopes",
        ),
        (
            "maskinporten: consumes[].name required",
            maskinporten(
                "m",
                json!({ "secretName": "s", "scopes": { "consumes": [{}] } }),
            ),
            "spec.scopes.consumes[0].name",
        ),
        (
            "maskinporten: exposes[].enabled required",
            exposing("m", json!({ "enabled": null })),
            "spec.scopes.exposes[0].enabled",
        ),
        (
            "maskinporten: exposes[].enabled must be a boolean",
            exposing("m", json!({ "enabled": "yes" })),
            "spec.scopes.exposes[0].enabled",
        ),
        (
            "maskinporten: exposes[].name required",
            exposing("m", json!({ "name": null })),
            "spec.scopes.exposes[0].name",
        ),
        (
            "maskinporten: exposes[].product required",
            exposing("m", json!({ "product": null })),
            "spec.scopes.exposes[0].product",
        ),
        (
            "maskinporten: exposes[].name pattern (uppercase)",
            exposing("m", json!({ "name": "Innsyn" })),
            "spec.scopes.exposes[0].name",
        ),
        (
            "maskinporten: exposes[].name pattern (trailing slash)",
            exposing("m", json!({ "name": "api/" })),
            "spec.scopes.exposes[0].name",
        ),
        (
            "maskinporten: exposes[].product pattern (Produktområde)",
            exposing("m", json!({ "product": "Produktområde" })),
            "spec.scopes.exposes[0].product",
        ),
        (
            "maskinporten: exposes[].product pattern (dash)",
            exposing("m", json!({ "product": "my-area" })),
            "spec.scopes.exposes[0].product",
        ),
        (
            "maskinporten: exposes[].atMaxAge minimum 30",
            exposing("m", json!({ "atMaxAge": 29 })),
            "spec.scopes.exposes[0].atMaxAge",
        ),
        (
            "maskinporten: exposes[].atMaxAge maximum 680",
            exposing("m", json!({ "atMaxAge": 1000 })),
            "spec.scopes.exposes[0].atMaxAge",
        ),
        (
            "maskinporten: exposes[].allowedIntegrations minItems 1",
            exposing("m", json!({ "allowedIntegrations": [] })),
            "spec.scopes.exposes[0].allowedIntegrations",
        ),
        (
            "maskinporten: exposes[].allowedIntegrations items must be strings",
            exposing("m", json!({ "allowedIntegrations": [1] })),
            "spec.scopes.exposes[0].allowedIntegrations[0]",
        ),
        (
            "maskinporten: exposes[].accessibleForAll must be a boolean",
            exposing("m", json!({ "accessibleForAll": "true" })),
            "spec.scopes.exposes[0].accessibleForAll",
        ),
        (
            "maskinporten: consumers[].orgno required",
            exposing("m", json!({ "consumers": [{ "name": "Org AS" }] })),
            "spec.scopes.exposes[0].consumers[0].orgno",
        ),
        (
            "maskinporten: consumers[].orgno pattern (8 digits)",
            exposing("m", json!({ "consumers": [{ "orgno": "12345678" }] })),
            "spec.scopes.exposes[0].consumers[0].orgno",
        ),
        (
            "maskinporten: consumers[].orgno pattern (10 digits)",
            exposing(
                "m",
                json!({ "consumers": [{ "orgno": "123456789" }, { "orgno": "1234567890" }] }),
            ),
            "spec.scopes.exposes[0].consumers[1].orgno",
        ),
        (
            "maskinporten: consumers[].orgno pattern (\\d is ASCII only)",
            exposing("m", json!({ "consumers": [{ "orgno": "١٢٣٤٥٦٧٨٩" }] })),
            "spec.scopes.exposes[0].consumers[0].orgno",
        ),
        (
            "maskinporten: consumers[].orgno must be a string",
            exposing("m", json!({ "consumers": [{ "orgno": 123456789 }] })),
            "spec.scopes.exposes[0].consumers[0].orgno",
        ),
        (
            "maskinporten: delegationSource enum",
            exposing(
                "m",
                json!({ "delegationSource": "altin", "separator": "/" }),
            ),
            "spec.scopes.exposes[0].delegationSource",
        ),
        (
            "maskinporten: separator maxLength 1",
            exposing("m", json!({ "separator": "//" })),
            "spec.scopes.exposes[0].separator",
        ),
        (
            "maskinporten: separator minLength 1",
            exposing("m", json!({ "separator": "" })),
            "spec.scopes.exposes[0].separator",
        ),
        (
            "maskinporten: separator pattern",
            exposing("m", json!({ "separator": "-" })),
            "spec.scopes.exposes[0].separator",
        ),
        (
            "maskinporten: visibility enum",
            exposing("m", json!({ "visibility": "internal" })),
            "spec.scopes.exposes[0].visibility",
        ),
        (
            "maskinporten: CEL separator required with delegationSource",
            exposing("m", json!({ "delegationSource": "altinn" })),
            "spec.scopes.exposes[0]",
        ),
        (
            "maskinporten: CEL separator must be / with delegationSource",
            exposing(
                "m",
                json!({ "delegationSource": "altinn", "separator": ":" }),
            ),
            "spec.scopes.exposes[0]",
        ),
        // ---------------- AzureAdApplication ----------------
        (
            "azure: secretName required",
            azure("z", json!({ "replyUrls": [] })),
            "spec.secretName",
        ),
        (
            "azure: allowAllUsers must be a boolean",
            azure("z", json!({ "secretName": "s", "allowAllUsers": "false" })),
            "spec.allowAllUsers",
        ),
        (
            "azure: singlePageApplication must be a boolean",
            azure(
                "z",
                json!({ "secretName": "s", "singlePageApplication": 1 }),
            ),
            "spec.singlePageApplication",
        ),
        (
            "azure: claims.extra enum",
            azure(
                "z",
                json!({ "secretName": "s", "claims": { "extra": ["NAVident", "email"] } }),
            ),
            "spec.claims.extra[1]",
        ),
        (
            "azure: claims.groups[].id must be a string",
            azure(
                "z",
                json!({ "secretName": "s", "claims": { "groups": [{ "id": 42 }] } }),
            ),
            "spec.claims.groups[0].id",
        ),
        (
            "azure: groupMembershipClaims enum",
            azure(
                "z",
                json!({ "secretName": "s", "groupMembershipClaims": "Everything" }),
            ),
            "spec.groupMembershipClaims",
        ),
        (
            "azure: preAuthorizedApplications[].application required",
            azure(
                "z",
                json!({ "secretName": "s", "preAuthorizedApplications": [{ "namespace": "n" }] }),
            ),
            "spec.preAuthorizedApplications[0].application",
        ),
        (
            "azure: permissions.roles item pattern",
            azure(
                "z",
                json!({ "secretName": "s", "preAuthorizedApplications": [{ "application": "a", "permissions": { "roles": ["Admin"] } }] }),
            ),
            "spec.preAuthorizedApplications[0].permissions.roles[0]",
        ),
        (
            "azure: permissions.scopes item pattern",
            azure(
                "z",
                json!({ "secretName": "s", "preAuthorizedApplications": [{ "application": "a", "permissions": { "scopes": ["read", "read all"] } }] }),
            ),
            "spec.preAuthorizedApplications[0].permissions.scopes[1]",
        ),
        (
            "azure: replyUrls[].url pattern (no scheme)",
            azure(
                "z",
                json!({ "secretName": "s", "replyUrls": [{ "url": "app.example.com/cb" }] }),
            ),
            "spec.replyUrls[0].url",
        ),
        (
            "azure: replyUrls[].url pattern (nothing after scheme)",
            azure(
                "z",
                json!({ "secretName": "s", "replyUrls": [{ "url": "https://" }] }),
            ),
            "spec.replyUrls[0].url",
        ),
        (
            "azure: replyUrls items must be objects",
            azure(
                "z",
                json!({ "secretName": "s", "replyUrls": ["https://app.example.com/cb"] }),
            ),
            "spec.replyUrls[0]",
        ),
        (
            "azure: federatedCredentials maxItems 20",
            azure_fed("z", federated(21)),
            "spec.federatedCredentials",
        ),
        (
            "azure: federatedCredentials[].name required",
            azure_fed("z", with_cred("name", Value::Null)),
            "spec.federatedCredentials[0].name",
        ),
        (
            "azure: federatedCredentials[].issuer required",
            azure_fed("z", with_cred("issuer", Value::Null)),
            "spec.federatedCredentials[0].issuer",
        ),
        (
            "azure: federatedCredentials[].subject required",
            azure_fed("z", with_cred("subject", Value::Null)),
            "spec.federatedCredentials[0].subject",
        ),
        (
            "azure: federatedCredentials[].audience required",
            azure_fed("z", with_cred("audience", Value::Null)),
            "spec.federatedCredentials[0].audience",
        ),
        (
            "azure: federatedCredentials[].name minLength 1",
            azure_fed("z", with_cred("name", json!(""))),
            "spec.federatedCredentials[0].name",
        ),
        (
            "azure: federatedCredentials[].name maxLength 120",
            azure_fed("z", with_cred("name", json!("n".repeat(121)))),
            "spec.federatedCredentials[0].name",
        ),
        (
            "azure: federatedCredentials[].issuer minLength 1",
            azure_fed("z", with_cred("issuer", json!(""))),
            "spec.federatedCredentials[0].issuer",
        ),
        (
            "azure: federatedCredentials[].issuer maxLength 600",
            azure_fed(
                "z",
                with_cred("issuer", json!(format!("https://{}", "i".repeat(593)))),
            ),
            "spec.federatedCredentials[0].issuer",
        ),
        (
            "azure: federatedCredentials[].subject minLength 1",
            azure_fed("z", with_cred("subject", json!(""))),
            "spec.federatedCredentials[0].subject",
        ),
        (
            "azure: federatedCredentials[].subject maxLength 600",
            azure_fed("z", with_cred("subject", json!("s".repeat(601)))),
            "spec.federatedCredentials[0].subject",
        ),
        (
            "azure: federatedCredentials[].audience minLength 1",
            azure_fed("z", with_cred("audience", json!(""))),
            "spec.federatedCredentials[0].audience",
        ),
        (
            "azure: federatedCredentials[].audience maxLength 600 (characters, not bytes)",
            azure_fed("z", with_cred("audience", json!("å".repeat(601)))),
            "spec.federatedCredentials[0].audience",
        ),
    ];
    // list-type map keyed by name: a duplicate name is rejected on the second item.
    let mut dup = federated(2);
    dup[1]["name"] = json!("cred-0");
    v.push((
        "azure: federatedCredentials list-map key name unique",
        azure_fed("z", dup),
        "spec.federatedCredentials[1]",
    ));
    // CEL: (issuer, subject) unique across items with different names.
    let mut same = federated(2);
    same[1]["subject"] = same[0]["subject"].clone();
    v.push((
        "azure: CEL (issuer, subject) unique",
        azure_fed("z", same),
        "spec.federatedCredentials",
    ));
    v
}

/// Rules that only apply on update: (case name, stored object, updated object, field path).
pub fn invalid_updates() -> Vec<(&'static str, Value, Value, &'static str)> {
    let old = idporten(
        "a",
        json!({ "secretName": "s", "integrationType": "idporten" }),
    );
    vec![
        (
            "idporten: CEL integrationType immutable",
            old.clone(),
            idporten("a", json!({ "secretName": "s", "integrationType": "krr" })),
            "spec.integrationType",
        ),
        (
            // Defaulting applies on update too: removing the field is judged as the default `idporten`.
            "idporten: CEL integrationType immutable (removed field defaults to idporten)",
            idporten("a", json!({ "secretName": "s", "integrationType": "krr" })),
            idporten("a", json!({ "secretName": "s" })),
            "spec.integrationType",
        ),
    ]
}

/// Updates liberator's CRDs accept: (case name, stored object, updated object).
pub fn valid_updates() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "idporten: removing integrationType when it is the default",
            idporten(
                "a",
                json!({ "secretName": "s", "integrationType": "idporten" }),
            ),
            idporten("a", json!({ "secretName": "s" })),
        ),
        (
            "azure: tenant may change (immutability rule was removed in 2025)",
            azure("z", json!({ "secretName": "s", "tenant": "a" })),
            azure("z", json!({ "secretName": "s", "tenant": "b" })),
        ),
    ]
}

fn with_status(mut o: Value, status: Value) -> Value {
    o["status"] = status;
    o
}

fn condition(fields: Value) -> Value {
    let mut c = json!({
        "type": "Ready",
        "status": "True",
        "reason": "Synchronized",
        "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    });
    if let (Some(c), Some(f)) = (c.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// Status-schema rules, for writes to the status subresource: (case name, object with status, field).
pub fn invalid_statuses() -> Vec<(&'static str, Value, &'static str)> {
    let base = || idporten("a", json!({ "secretName": "s" }));
    let az = || azure("z", json!({ "secretName": "s" }));
    vec![
        (
            "status: condition reason required",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "reason": null }))] }),
            ),
            "status.conditions[0].reason",
        ),
        (
            "status: condition reason pattern",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "reason": "not ok" }))] }),
            ),
            "status.conditions[0].reason",
        ),
        (
            "status: condition status enum",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "status": "Yes" }))] }),
            ),
            "status.conditions[0].status",
        ),
        (
            "status: condition lastTransitionTime required",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "lastTransitionTime": null }))] }),
            ),
            "status.conditions[0].lastTransitionTime",
        ),
        (
            "status: condition observedGeneration minimum 0",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "observedGeneration": -1 }))] }),
            ),
            "status.conditions[0].observedGeneration",
        ),
        (
            "status: condition type pattern",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({ "type": "Not Ready" }))] }),
            ),
            "status.conditions[0].type",
        ),
        (
            "status: conditions keyed by type (portvakt superset)",
            with_status(
                base(),
                json!({ "conditions": [condition(json!({})), condition(json!({ "status": "False" }))] }),
            ),
            "status.conditions[1]",
        ),
        (
            "status: azure condition reason pattern (portvakt superset)",
            with_status(
                az(),
                json!({ "conditions": [condition(json!({ "reason": "" }))] }),
            ),
            "status.conditions[0].reason",
        ),
        (
            "status: azure assignedCount must be an integer",
            with_status(
                az(),
                json!({ "preAuthorizedApps": { "assignedCount": "1" } }),
            ),
            "status.preAuthorizedApps.assignedCount",
        ),
        (
            "status: azure accessPolicyRule.application required",
            with_status(
                az(),
                json!({ "preAuthorizedApps": { "assigned": [{ "accessPolicyRule": { "namespace": "n" } }] } }),
            ),
            "status.preAuthorizedApps.assigned[0].accessPolicyRule.application",
        ),
    ]
}

/// Edge cases liberator's CRDs accept (besides the shared examples): (case name, manifest).
pub fn valid_manifests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "idporten: minimal",
            idporten("a", json!({ "secretName": "s" })),
        ),
        (
            "idporten: empty secretName satisfies required",
            idporten("a", json!({ "secretName": "" })),
        ),
        (
            "idporten: bounds inclusive",
            idporten(
                "a",
                json!({ "secretName": "s", "accessTokenLifetime": 3600, "sessionLifetime": 28800 }),
            ),
        ),
        (
            "idporten: lower bounds inclusive",
            idporten(
                "a",
                json!({ "secretName": "s", "accessTokenLifetime": 1, "sessionLifetime": 3600 }),
            ),
        ),
        (
            "idporten: localhost URIs",
            idporten(
                "a",
                json!({ "secretName": "s", "redirectURIs": ["http://localhost:8080/cb"], "clientURI": "http://localhost:3000" }),
            ),
        ),
        (
            "idporten: the pattern's https alternative is unanchored at the end",
            idporten("a", json!({ "secretName": "s", "clientURI": "https://" })),
        ),
        (
            "idporten: the pattern's localhost alternative is unanchored at the start",
            idporten(
                "a",
                json!({ "secretName": "s", "redirectURI": "see http://localhost:1" }),
            ),
        ),
        (
            "idporten: every integrationType",
            idporten(
                "a",
                json!({ "secretName": "s", "integrationType": "api_klient", "scopes": [] }),
            ),
        ),
        (
            "idporten: krr",
            idporten(
                "a",
                json!({ "secretName": "s", "integrationType": "krr", "ssoDisabled": true }),
            ),
        ),
        (
            "maskinporten: minimal",
            maskinporten("m", json!({ "secretName": "s" })),
        ),
        (
            "maskinporten: empty scopes",
            maskinporten(
                "m",
                json!({ "secretName": "s", "scopes": { "consumes": [], "exposes": [] } }),
            ),
        ),
        (
            "maskinporten: disabled scope with bounds",
            exposing("m", json!({ "enabled": false, "atMaxAge": 680 })),
        ),
        (
            "maskinporten: atMaxAge 30",
            exposing("m", json!({ "atMaxAge": 30 })),
        ),
        (
            "maskinporten: name with slash, colon and dots",
            exposing("m", json!({ "name": "some/api:read.all" })),
        ),
        (
            "maskinporten: name with æøå",
            exposing("m", json!({ "name": "innsyn/søknad" })),
        ),
        (
            "maskinporten: separator without delegationSource",
            exposing("m", json!({ "separator": "." })),
        ),
        (
            "maskinporten: delegationSource with separator /",
            exposing(
                "m",
                json!({ "delegationSource": "altinn", "separator": "/", "visibility": "public", "accessibleForAll": true }),
            ),
        ),
        (
            "maskinporten: consumer without name",
            exposing("m", json!({ "consumers": [{ "orgno": "000000000" }] })),
        ),
        ("azure: minimal", azure("z", json!({ "secretName": "s" }))),
        (
            "azure: secretProtected is still declared (ignored)",
            azure("z", json!({ "secretName": "s", "secretProtected": true })),
        ),
        (
            "azure: logoutUrl is not validated",
            azure(
                "z",
                json!({ "secretName": "s", "logoutUrl": "http://not-https.example.com" }),
            ),
        ),
        (
            "azure: http reply URL",
            azure(
                "z",
                json!({ "secretName": "s", "replyUrls": [{ "url": "http://localhost/cb" }, {}] }),
            ),
        ),
        (
            "azure: every field",
            azure(
                "z",
                json!({
                    "secretName": "s",
                    "secretKeyPrefix": "ENTRA",
                    "tenant": "nav.no",
                    "allowAllUsers": true,
                    "singlePageApplication": false,
                    "groupMembershipClaims": "ApplicationGroup",
                    "claims": { "extra": ["NAVident", "azp_name"], "groups": [{ "id": "00000000-0000-0000-0000-000000000000" }, {}] },
                    "preAuthorizedApplications": [{ "application": "a", "namespace": "n", "cluster": "c", "permissions": { "roles": ["role.a/b_c-d"], "scopes": ["scope"] } }],
                }),
            ),
        ),
        (
            "azure: 20 federated credentials",
            azure_fed("z", federated(20)),
        ),
        (
            "azure: federated credential bounds",
            azure_fed(
                "z",
                vec![
                    json!({ "name": "n".repeat(120), "issuer": "i", "subject": "å".repeat(600), "audience": "a" }),
                ],
            ),
        ),
    ]
}
