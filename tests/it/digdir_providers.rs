//! Maskinporten API providers through the controllers: MaskinportenClients exposing scopes
//! (`spec.scopes.exposes`) against the embedded Kubernetes API server and the Digdir simulator —
//! scopes created, updated, deactivated and reactivated, consumers granted, revoked and granted
//! again, refused consumers, owners that never fight, faults in the middle of a grant sequence,
//! drift made by hand, two clusters of one organisation, deletion and `--observe`. The end-to-end
//! run against the binary is at the bottom.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use portvakt::controller::digdir_kinds::DigdirProvider;
use portvakt::controller::{self, Context, Counters, RunOptions, Shared};
use portvakt::core;
use portvakt::crd::MaskinportenClient;
use portvakt::digdir::{IntegrationType, ScopeRegistration, TokenType, Visibility};
use portvakt_sim::digdir::{FaultRule, Organisation, Seed};
use portvakt_sim::kube::ApiServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Consumers the default seed knows, plus the extra ones [`seed`] adds.
const A: &str = "987654321";
const B: &str = "123456789";
const C: &str = "910753614";
const D: &str = "889640782";
const E: &str = "991825827";
const F: &str = "810000001";
const PASS: Duration = Duration::from_millis(300);

/// The default seed and one more organisation (six consumers besides the admin's own).
fn seed() -> Seed {
    let mut seed = Seed::default();
    seed.organisations.push(Organisation {
        orgno: F.into(),
        name: "EKSTRA TESTORGANISASJON AS".into(),
    });
    seed
}

fn entry(product: &str, name: &str, consumers: &[&str]) -> Value {
    json!({
        "enabled": true, "product": product, "name": name,
        "consumers": consumers.iter().map(|o| json!({"orgno": o})).collect::<Vec<_>>(),
    })
}

fn provider(exposes: Value) -> Value {
    json!({"secretName": "provider-secret", "scopes": {"exposes": exposes}})
}

fn full(subscope: &str) -> String {
    format!("{SIM_PREFIX}:{subscope}")
}

/// The scope as the simulated Digdir holds it.
fn scope(env: &Env, name: &str) -> Option<Value> {
    env.sim.scopes().into_iter().find(|s| s["name"] == name)
}

/// The scope's active accesses, as (consumer, state), sorted.
fn acl(env: &Env, name: &str) -> Vec<(String, String)> {
    let mut acl: Vec<(String, String)> = env
        .sim
        .scope_accesses()
        .into_iter()
        .filter(|a| a["scope"] == name)
        .map(|a| {
            (
                a["consumer_orgno"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    acl.sort();
    acl
}

fn approved(orgnos: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = orgnos
        .iter()
        .map(|o| (o.to_string(), "APPROVED".to_string()))
        .collect();
    v.sort();
    v
}

async fn set_exposes(env: &Env, name: &str, exposes: Value) {
    env.mp()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scopes": {"exposes": exposes}}})),
        )
        .await
        .expect("patch spec");
}

/// (status, reason, message) of a condition.
fn condition(o: &MaskinportenClient, type_: &str) -> Option<(String, String, String)> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn event_notes(env: &Env, name: &str, reason: &str) -> Vec<(String, String)> {
    events_for(env, name, reason).await
}

async fn wait_event(env: &Env, name: &str, reason: &str, contains: &str) -> (String, String) {
    let mut found = None;
    wait_until(&format!("a {reason} event with {contains:?}"), async || {
        found = event_notes(env, name, reason)
            .await
            .into_iter()
            .find(|(_, note)| note.contains(contains));
        found.is_some()
    })
    .await;
    found.expect("found")
}

/// Scope calls without the ACL reads and writes (GET /scopes, POST/PUT/DELETE /scopes).
fn scope_level(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !c.contains("/scopes/access"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn exposed_scopes_are_created_updated_deactivated_and_reactivated() {
    let mut env = env().await;
    let op = env.run();
    let name = full("api:read");
    env.create_mp("provider", provider(json!([entry("api", "read", &[A])])))
        .await;
    let o = env.wait_mp_ready("provider").await;

    let s = scope(&env, &name).expect("the scope is created");
    assert_eq!(s["description"], "api - test-cluster:default:provider");
    assert_eq!(s["active"], true);
    assert_eq!(s["at_max_age"], 30);
    assert_eq!(s["allowed_integration_types"], json!(["maskinporten"]));
    assert_eq!(s["visibility"], "PUBLIC");
    assert_eq!(s["token_type"], "SELF_CONTAINED");
    assert_eq!(s["accessible_for_all"], false);
    assert_eq!(acl(&env, &name), approved(&[A]));
    let (t, _) = wait_event(&env, "provider", "CreatedScopeInDigDir", &name).await;
    assert_eq!(t, "Normal");
    let (_, note) = wait_event(&env, "provider", "UpdatedACLForScopeInDigDir", A).await;
    assert!(note.contains(&name), "{note}");
    // digdirator's counters follow what was done at Digdir.
    let m = crate::metrics::parse(&op.metrics.render());
    for family in [
        "maskinporten_scope_created_count",
        "maskinporten_scope_consumer_created_count",
    ] {
        assert_eq!(
            m.value(family, &[("namespace", "default")]),
            1.0,
            "{family}"
        );
    }
    assert_eq!(
        condition(&o, "InvalidExposedScopesConsumers").map(|c| (c.0, c.1)),
        Some(("False".into(), "Validated".into()))
    );
    // It consumes nothing: its own client is registered with the default scope.
    let id = o.status.and_then(|s| s.client_id).expect("client id");
    assert_eq!(
        env.sim.client(&id).expect("client")["scopes"],
        json!([SIM_SCOPE])
    );

    // Update: one PUT naming the field, no create.
    let mut changed = entry("api", "read", &[A]);
    changed["atMaxAge"] = json!(120);
    let mark = digdir_mark(&env.sim);
    set_exposes(&env, "provider", json!([changed])).await;
    env.wait_mp_ready("provider").await;
    assert_eq!(scope(&env, &name).expect("scope")["at_max_age"], 120);
    assert_eq!(
        digdir_scope_calls_since(&env.sim, mark),
        [
            "GET /api/v1/scopes?inactive=true".to_string(),
            format!("GET /api/v1/scopes/access?scope={name}"),
            format!("PUT /api/v1/scopes?scope={name}"),
        ]
    );
    wait_event(&env, "provider", "UpdatedScopeInDigDir", "at_max_age").await;

    // Deactivate (enabled: false): consumers lose access; a Warning, as digdirator's.
    let mut disabled = changed.clone();
    disabled["enabled"] = json!(false);
    let mark = digdir_mark(&env.sim);
    set_exposes(&env, "provider", json!([disabled])).await;
    env.wait_mp_ready("provider").await;
    assert_eq!(scope(&env, &name).expect("scope")["active"], false);
    assert_eq!(
        digdir_scope_calls_since(&env.sim, mark),
        [
            "GET /api/v1/scopes?inactive=true".to_string(),
            format!("DELETE /api/v1/scopes?scope={name}"),
        ]
    );
    let (t, _) = wait_event(&env, "provider", "DeactivatedScopeInDigDir", &name).await;
    assert_eq!(t, "Warning");

    // Reactivate: a PUT, never a POST (Digdir answers a POST of a deactivated scope with 409);
    // the consumers kept by Digdir need no new grant.
    let mark = digdir_mark(&env.sim);
    set_exposes(&env, "provider", json!([changed])).await;
    env.wait_mp_ready("provider").await;
    assert_eq!(scope(&env, &name).expect("scope")["active"], true);
    assert_eq!(
        digdir_scope_calls_since(&env.sim, mark),
        [
            "GET /api/v1/scopes?inactive=true".to_string(),
            format!("GET /api/v1/scopes/access?scope={name}"),
            format!("PUT /api/v1/scopes?scope={name}"),
        ]
    );
    wait_event(&env, "provider", "ActivatedScopeInDigDir", &name).await;
    assert_eq!(acl(&env, &name), approved(&[A]));
    assert_eq!(env.sim.scope_access_grants(&name, A), 1, "granted once");
}

#[tokio::test]
async fn consumers_are_added_removed_and_denied_ones_granted_again() {
    let mut env = env().await;
    env.run();
    let name = full("data:read");
    env.create_mp(
        "provider",
        provider(json!([entry("data", "read", &[A, B])])),
    )
    .await;
    env.wait_mp_ready("provider").await;
    assert_eq!(acl(&env, &name), approved(&[A, B]));
    // One event for the scope's new consumers, naming each.
    let (_, note) = wait_event(&env, "provider", "UpdatedACLForScopeInDigDir", "granted").await;
    assert_eq!(
        note,
        format!("ACL: granted access to scope \"{name}\" for consumers \"{B}\", \"{A}\"")
    );

    // Someone denies B in Samarbeidsportalen; the spec drops A and adds C.
    env.sim.set_scope_access(&name, B, "DENIED");
    let mark = digdir_mark(&env.sim);
    set_exposes(&env, "provider", json!([entry("data", "read", &[B, C])])).await;
    env.wait_mp_ready("provider").await;
    assert_eq!(acl(&env, &name), approved(&[B, C]));
    let mut calls = digdir_scope_calls_since(&env.sim, mark);
    calls.sort();
    let mut expected = [
        "GET /api/v1/scopes?inactive=true".to_string(),
        format!("GET /api/v1/scopes/access?scope={name}"),
        format!("PUT /api/v1/scopes/access/{B}?scope={name}"),
        format!("PUT /api/v1/scopes/access/{C}?scope={name}"),
        format!("DELETE /api/v1/scopes/access/{A}?scope={name}"),
    ];
    expected.sort();
    assert_eq!(calls, expected, "one read of each, one change per consumer");
    assert_eq!(env.sim.scope_access_grants(&name, B), 2, "B granted again");
    assert_eq!(env.sim.scope_access_grants(&name, C), 1);
    let (_, note) = wait_event(&env, "provider", "UpdatedACLForScopeInDigDir", "DENIED").await;
    assert!(note.contains(B) && note.contains(&name), "{note}");
    wait_event(&env, "provider", "UpdatedACLForScopeInDigDir", "revoked").await;
}

#[tokio::test]
async fn an_unknown_orgno_is_named_in_a_degraded_condition_and_ready_stays_true() {
    let mut env = env().await;
    let op = env.run();
    let name = full("api:read");
    // Nine digits (the schema accepts it) but not an organisation Digdir knows.
    env.create_mp(
        "provider",
        provider(json!([entry("api", "read", &["999999999", A])])),
    )
    .await;
    let o = env.wait_mp_ready("provider").await;
    let (status, reason, message) =
        condition(&o, "InvalidExposedScopesConsumers").expect("condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Failed"));
    assert!(
        message.contains("999999999") && message.contains(&name),
        "names the organisation and the scope: {message}"
    );
    assert_eq!(acl(&env, &name), approved(&[A]), "the other grant went on");

    // Nothing new on the next pass: no Digdir call about scopes, no status write.
    let writes = Counters::get(&op.counters.status_writes);
    let mark = digdir_mark(&env.sim);
    env.pass(&env.mp(), &op, "provider").await;
    assert!(digdir_scope_calls_since(&env.sim, mark).is_empty());
    assert_eq!(Counters::get(&op.counters.status_writes), writes);

    // The spec is fixed: the condition turns False.
    set_exposes(&env, "provider", json!([entry("api", "read", &[A])])).await;
    let o = env.wait_mp_ready("provider").await;
    assert_eq!(
        condition(&o, "InvalidExposedScopesConsumers").map(|c| (c.0, c.1)),
        Some(("False".into(), "Validated".into()))
    );
}

#[tokio::test]
async fn a_consumed_scope_without_access_is_named_and_left_off_the_client() {
    let mut env = env().await;
    env.run();
    let krr = "krr:global/kontaktinformasjon.read";
    // Digdir's scope, but the organisation has no access to it.
    let other = "krr:global/digitalpost.write";
    env.create_mp(
        "consumer",
        json!({"secretName": "consumer-secret", "scopes": {"consumes": [{"name": krr}, {"name": other}]}}),
    )
    .await;
    let o = env.wait_mp_ready("consumer").await;
    let (status, _, message) = condition(&o, "InvalidConsumedScopes").expect("condition");
    assert_eq!(status, "True");
    assert!(
        message.contains(other) && !message.contains(krr),
        "{message}"
    );
    let id = o.status.and_then(|s| s.client_id).expect("client id");
    assert_eq!(
        env.sim.client(&id).expect("client")["scopes"],
        json!([krr]),
        "only the usable scope is registered"
    );
    let secret = env.secret("consumer-secret").await.expect("secret");
    assert_eq!(
        data(&secret, "MASKINPORTEN_SCOPES"),
        format!("{krr} {other}"),
        "the Secret lists what the spec consumes, as digdirator's"
    );
}

#[tokio::test]
async fn a_client_with_no_valid_scope_and_no_default_is_not_ready_naming_the_setting() {
    let mut env = env().await;
    let cfg = core::digdir::Config {
        maskinporten_default_scope: None,
        ..env.core_config()
    };
    env.run_with(cfg, Duration::from_secs(3600));
    // Consumes only a scope the organisation may not use.
    env.create_mp(
        "consumer",
        json!({"secretName": "consumer-secret", "scopes": {"consumes": [{"name": "krr:global/digitalpost.write"}]}}),
    )
    .await;
    // Only exposes (the SKIP example's shape): stopped before anything is written anywhere.
    env.create_mp("provider", provider(json!([entry("api", "read", &[A])])))
        .await;
    for name in ["consumer", "provider"] {
        let o = env
            .wait_mp(name, "Ready=False", |o| {
                condition(o, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "ConfigurationError")
            })
            .await;
        let (_, _, message) = condition(&o, "Ready").expect("Ready");
        assert!(
            message.contains("--maskinporten-default-scope"),
            "{message}"
        );
        assert!(env.clients_with_description(&desc(name)).is_empty());
    }
    assert!(scope(&env, &full("api:read")).is_none(), "no scope created");
}

#[tokio::test]
async fn without_a_scope_prefix_an_exposing_resource_is_not_ready_naming_the_setting() {
    let mut env = env().await;
    let cfg = core::digdir::Config {
        maskinporten_scope_prefix: None,
        ..env.core_config()
    };
    env.run_with(cfg, Duration::from_secs(3600));
    let scopes_before = env.sim.scopes().len();
    env.create_mp("provider", provider(json!([entry("api", "read", &[A])])))
        .await;
    let o = env
        .wait_mp("provider", "Ready=False", |o| {
            condition(o, "Ready").is_some_and(|c| c.1 == "ConfigurationError")
        })
        .await;
    let (_, _, message) = condition(&o, "Ready").expect("Ready");
    assert!(message.contains("--maskinporten-scope-prefix"), "{message}");
    assert_eq!(env.sim.scopes().len(), scopes_before);
    assert!(env.clients_with_description(&desc("provider")).is_empty());
}

#[tokio::test]
async fn two_resources_exposing_one_scope_never_fight() {
    let mut env = env().await;
    let op = env.run();
    let name = full("shared:api");
    env.create_mp("first", provider(json!([entry("shared", "api", &[A])])))
        .await;
    env.wait_mp_ready("first").await;
    let mut second = provider(json!([entry("shared", "api", &[B])]));
    second["secretName"] = json!("second-secret");
    env.create_mp("second", second).await;
    let o = env
        .wait_mp("second", "Ready=False", |o| {
            condition(o, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "InvalidSpec")
        })
        .await;
    let (_, _, message) = condition(&o, "Ready").expect("Ready");
    assert!(
        message.contains("spec.scopes.exposes[0]")
            && message.contains(&name)
            && message.contains("test-cluster:default:first"),
        "names the field, the scope and the owner: {message}"
    );
    // Neither undoes the other: the first's consumers, the first's description.
    env.pass(&env.mp(), &op, "first").await;
    env.pass(&env.mp(), &op, "second").await;
    assert_eq!(acl(&env, &name), approved(&[A]));
    assert_eq!(
        scope(&env, &name).expect("scope")["description"],
        "shared - test-cluster:default:first"
    );

    // The first stops exposing it: the second takes it over (its consumers, its description).
    set_exposes(&env, "first", json!([])).await;
    env.wait_mp_ready("first").await;
    env.pass(&env.mp(), &op, "second").await;
    env.wait_mp_ready("second").await;
    assert_eq!(acl(&env, &name), approved(&[B]));
    assert_eq!(
        scope(&env, &name).expect("scope")["description"],
        "shared - test-cluster:default:second"
    );
    wait_event(&env, "second", "AdoptedScopeInDigDir", "first").await;
}

#[tokio::test]
async fn a_scope_removed_from_the_spec_stays_active_and_is_reported() {
    let mut env = env().await;
    env.run();
    let kept = full("api:read");
    let removed = full("api:write");
    env.create_mp(
        "provider",
        provider(json!([
            entry("api", "read", &[A]),
            entry("api", "write", &[A])
        ])),
    )
    .await;
    env.wait_mp_ready("provider").await;
    let mark = digdir_mark(&env.sim);
    set_exposes(&env, "provider", json!([entry("api", "read", &[A])])).await;
    env.wait_mp_ready("provider").await;
    let s = scope(&env, &removed).expect("scope");
    assert_eq!(s["active"], true, "consumers depend on it");
    assert_eq!(acl(&env, &removed), approved(&[A]));
    assert!(
        scope_level(&digdir_scope_calls_since(&env.sim, mark))
            .iter()
            .all(|c| c.starts_with("GET ")),
        "nothing written"
    );
    let (t, note) = wait_event(&env, "provider", "ScopeLeftActiveInDigDir", &removed).await;
    assert_eq!(t, "Normal");
    assert!(
        note.contains("enabled: false"),
        "says how to deactivate: {note}"
    );
    assert_eq!(scope(&env, &kept).expect("scope")["active"], true);

    // --observe reports it too, and writes nothing.
    env.stop().await;
    let ctx = env.operator(env.core_config());
    let writes = env.digdir.stats().writes();
    let report = controller::observe(&ctx, &RunOptions::default())
        .await
        .expect("observe");
    assert_eq!(env.digdir.stats().writes(), writes);
    let text = report.to_string();
    assert!(
        text.contains(&format!("scope {removed} no longer exposed: left active")),
        "{text}"
    );
    assert_eq!(report.totals().get("scope-left-active"), Some(&1), "{text}");
}

#[tokio::test]
async fn a_deactivated_scope_answers_409_to_a_create_and_is_adopted_and_reactivated_by_put() {
    let mut env = env().await;
    let name = full("legacy:api");
    // Made by hand (its description names no owner), then deactivated.
    let by_hand = ScopeRegistration {
        active: true,
        allowed_integration_types: vec![IntegrationType::Maskinporten],
        at_max_age: 30,
        description: "made in Samarbeidsportalen".into(),
        prefix: SIM_PREFIX.into(),
        subscope: "legacy:api".into(),
        token_type: TokenType::SelfContained,
        visibility: Visibility::Public,
        ..ScopeRegistration::default()
    };
    env.digdir.create_scope(&by_hand).await.expect("create");
    env.digdir.delete_scope(&name).await.expect("deactivate");
    let err = env.digdir.create_scope(&by_hand).await.expect_err("409");
    assert_eq!(err.status(), Some(409), "{err}");

    env.run();
    let mark = digdir_mark(&env.sim);
    env.create_mp("provider", provider(json!([entry("legacy", "api", &[A])])))
        .await;
    env.wait_mp_ready("provider").await;
    let s = scope(&env, &name).expect("scope");
    assert_eq!(s["active"], true);
    assert_eq!(s["description"], "legacy - test-cluster:default:provider");
    let calls = scope_level(&digdir_scope_calls_since(&env.sim, mark));
    assert_eq!(
        calls,
        [
            "GET /api/v1/scopes?inactive=true".to_string(),
            format!("PUT /api/v1/scopes?scope={name}"),
        ],
        "reactivated by PUT, never POSTed"
    );
    assert_eq!(acl(&env, &name), approved(&[A]));
    wait_event(&env, "provider", "AdoptedScopeInDigDir", "made by hand").await;
}

#[tokio::test]
async fn faults_in_the_middle_of_a_grant_sequence_end_with_the_exact_acl_and_no_duplicate_grants() {
    let mut env = env_with_seed(seed()).await;
    env.set_request_timeout(Duration::from_secs(1));
    env.run();
    let name = full("api:data");
    env.create_mp("provider", provider(json!([entry("api", "data", &[F])])))
        .await;
    env.wait_mp_ready("provider").await;

    let grant = |orgno: &str| format!("/api/v1/scopes/access/{orgno}");
    // Refused before it was handled: retried.
    env.sim
        .inject_fault(FaultRule::status(503).method("PUT").path(&grant(A)).once());
    // Handled, then answered 500: looked up and found, not granted twice.
    env.sim.inject_fault(
        FaultRule::status_after_handling(500)
            .method("PUT")
            .path(&grant(B))
            .once(),
    );
    // Handled, then the answer comes after the client gave up: looked up and found.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_millis(1500))
            .method("PUT")
            .path(&grant(C))
            .once(),
    );
    // Throttled.
    env.sim
        .inject_fault(FaultRule::throttle(0).method("PUT").path(&grant(D)).once());
    // Held before it is handled: the client gives up, finds nothing, and the pass fails; the grant
    // lands 2.5 s after it was sent. The next pass (after the 1 s backoff) must not send it again
    // blindly: it waits until the grant had time to land (timeout + 1 s), then reads the ACL.
    env.sim.inject_fault(
        FaultRule::latency(Duration::from_millis(2500))
            .method("PUT")
            .path(&grant(E))
            .once(),
    );
    // The revoke is done, but its answer comes late; the retry finds nothing left to revoke.
    env.sim.inject_fault(
        FaultRule::latency_after_handling(Duration::from_millis(1500))
            .method("DELETE")
            .path(&grant(F))
            .once(),
    );
    set_exposes(
        &env,
        "provider",
        json!([entry("api", "data", &[A, B, C, D, E])]),
    )
    .await;
    env.wait_mp_ready("provider").await;

    assert_eq!(acl(&env, &name), approved(&[A, B, C, D, E]));
    for orgno in [A, B, C, D, E] {
        assert_eq!(
            env.sim.scope_access_grants(&name, orgno),
            1,
            "{orgno} granted exactly once"
        );
    }
    let puts_of_e = env
        .sim
        .journal()
        .iter()
        .filter(|c| c.method == "PUT" && c.path == grant(E))
        .count();
    assert_eq!(
        puts_of_e, 1,
        "the grant without an answer was never sent again"
    );
    assert!(env.sim.faults().rules().is_empty(), "every fault fired");
    let waited = events_for(&env, "provider", "FailedSynchronization").await;
    assert!(
        !waited.iter().any(|(_, n)| n.contains("no clear answer")),
        "waiting is not reported as a failure: {waited:?}"
    );
}

#[tokio::test]
async fn drift_made_by_hand_is_repaired_and_the_steady_state_reads_each_acl_once_a_period() {
    let mut env = env().await;
    let cfg = core::digdir::Config {
        acl_check_every: Duration::from_secs(3600),
        ..env.core_config()
    };
    let ctx = env.run_with(cfg, PASS);
    let x = full("api:read");
    let y = full("api:write");
    env.create_mp(
        "provider",
        provider(json!([
            entry("api", "read", &[A, B]),
            entry("api", "write", &[A])
        ])),
    )
    .await;
    env.wait_mp_ready("provider").await;
    wait_passes(&ctx, 1).await;

    // Steady state: one scope list per pass, no ACL read before it is due, no write anywhere.
    let mark = digdir_mark(&env.sim);
    let rv = env.kube.resource_version();
    let writes = env.digdir.stats().writes();
    wait_passes(&ctx, 3).await;
    let calls = digdir_scope_calls_since(&env.sim, mark);
    assert!(
        calls
            .iter()
            .all(|c| c == "GET /api/v1/scopes?inactive=true"),
        "{calls:?}"
    );
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(env.digdir.stats().writes(), writes, "no Digdir write");
    assert_eq!(env.kube.resource_version(), rv, "no Kubernetes write");

    // In Samarbeidsportalen: A's access to X is removed and C is added.
    env.digdir.revoke_scope_access(A, &x).await.expect("revoke");
    env.digdir.grant_scope_access(C, &x).await.expect("grant");
    // ACLs are read on their own cadence: not within a few passes...
    wait_passes(&ctx, 3).await;
    assert_eq!(acl(&env, &x), approved(&[B, C]), "not read yet");
    assert_eq!(Counters::get(&ctx.counters.drift_found), 0);
    // ...but within one (jittered) period; each ACL once.
    let mark = digdir_mark(&env.sim);
    env.clock.advance(Duration::from_secs(2 * 3600));
    wait_until("ACL repaired", async || acl(&env, &x) == approved(&[A, B])).await;
    let (t, note) = wait_event(&env, "provider", "DriftRepaired", A).await;
    assert_eq!(t, "Warning");
    assert!(note.contains(C) && note.contains(&x), "{note}");
    assert_eq!(Counters::get(&ctx.counters.drift_repaired), 1);
    wait_passes(&ctx, 2).await;
    for s in [&x, &y] {
        let reads = digdir_scope_calls_since(&env.sim, mark)
            .iter()
            .filter(|c| **c == format!("GET /api/v1/scopes/access?scope={s}"))
            .count();
        // One read by the periodic pass, one by the repairing pass.
        assert!(reads <= 2, "{s} read {reads} times");
    }

    // Someone deactivates Y: found on the next pass (the scope list), reactivated.
    env.digdir.delete_scope(&y).await.expect("deactivate");
    wait_until("scope reactivated", async || {
        scope(&env, &y).is_some_and(|s| s["active"] == true)
    })
    .await;
    wait_event(
        &env,
        "provider",
        "DriftRepaired",
        &format!("reactivate scope `{y}`"),
    )
    .await;
    assert_eq!(acl(&env, &y), approved(&[A]));
    assert_eq!(Counters::get(&ctx.counters.drift_repaired), 2);
    // Repaired once: later passes find nothing.
    wait_passes(&ctx, 3).await;
    assert_eq!(Counters::get(&ctx.counters.drift_found), 2);
}

/// A second cluster of the same organisation: its own API server and operator, the same Digdir.
struct OtherCluster {
    client: kube::Client,
    _server: ApiServer,
    shutdown: CancellationToken,
}

impl Drop for OtherCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn other_cluster(env: &Env, cluster: &str) -> OtherCluster {
    let server = ApiServer::new(env.clock.clone());
    let client = server.client();
    install_crds(&client).await;
    let config = core::digdir::Config {
        cluster_name: cluster.into(),
        ..env.core_config()
    };
    let digdir = digdir_client(&env.sim, &env.urls, &env.clock, env.request_timeout);
    let provider = Arc::new(DigdirProvider::new(
        digdir,
        config,
        env.clock.clone(),
        env.request_timeout,
    ));
    let ctx = Arc::new(
        Context::new(Shared::new(client.clone(), env.clock.clone(), cluster))
            .with_provider(provider),
    );
    let shutdown = CancellationToken::new();
    let opts = RunOptions {
        concurrency: 4,
        resync_period: PASS,
        shutdown: shutdown.clone(),
        ..RunOptions::default()
    };
    tokio::spawn(controller::run(ctx, opts));
    OtherCluster {
        client,
        _server: server,
        shutdown,
    }
}

#[tokio::test]
async fn two_clusters_of_one_organisation_leave_each_others_scopes_alone() {
    let mut env = env().await;
    let op = env.run_with(env.core_config(), PASS);
    let other = other_cluster(&env, "other-cluster").await;
    let other_mp: Api<MaskinportenClient> = Api::namespaced(other.client.clone(), NS);
    let one = full("one:api");
    let two = full("two:api");
    // The same namespace and name in both clusters.
    env.create_mp("api", provider(json!([entry("one", "api", &[A])])))
        .await;
    let obj: MaskinportenClient = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": "api", "namespace": NS},
        "spec": provider(json!([entry("two", "api", &[B])])),
    }))
    .expect("obj");
    other_mp
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    env.wait_mp_ready("api").await;
    wait_until("the other cluster's resource Ready", async || {
        let o = other_mp.get("api").await.expect("get");
        is_ready(o.meta().generation, o.status.as_ref())
    })
    .await;
    assert_eq!(
        scope(&env, &one).expect("one")["description"],
        "one - test-cluster:default:api"
    );
    assert_eq!(
        scope(&env, &two).expect("two")["description"],
        "two - other-cluster:default:api"
    );

    // Several steady-state passes of both: neither writes to the other's scope.
    let mark = digdir_mark(&env.sim);
    wait_passes(&op, 3).await;
    let writes: Vec<String> = digdir_scope_calls_since(&env.sim, mark)
        .into_iter()
        .filter(|c| !c.starts_with("GET "))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(acl(&env, &one), approved(&[A]));
    assert_eq!(acl(&env, &two), approved(&[B]));

    // The other cluster's resource also claims this cluster's scope: told, nothing touched.
    other_mp
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scopes": {"exposes": [
                entry("two", "api", &[B]), entry("one", "api", &[C])
            ]}}})),
        )
        .await
        .expect("patch");
    let mut message = String::new();
    wait_until("the other cluster's resource told", async || {
        let o = other_mp.get("api").await.expect("get");
        match condition(&o, "Ready") {
            Some((s, r, m)) if s == "False" && r == "InvalidSpec" => {
                message = m;
                true
            }
            _ => false,
        }
    })
    .await;
    assert!(
        message.contains("test-cluster:default:api") && message.contains(&one),
        "{message}"
    );
    assert_eq!(
        acl(&env, &one),
        approved(&[A]),
        "this cluster's consumers kept"
    );
    assert_eq!(
        scope(&env, &one).expect("one")["description"],
        "one - test-cluster:default:api"
    );

    // Deleting this cluster's resource leaves its enabled scope, and the other's, alone.
    env.mp()
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("deleted", async || {
        env.mp().get_opt("api").await.expect("get").is_none()
    })
    .await;
    assert_eq!(scope(&env, &one).expect("one")["active"], true);
    assert_eq!(scope(&env, &two).expect("two")["active"], true);
    assert_eq!(acl(&env, &two), approved(&[B]));
}

#[tokio::test]
async fn deletion_keeps_enabled_scopes_and_deactivates_disabled_ones_also_when_preserved() {
    let mut env = env().await;
    for preserve in [false, true] {
        env.run();
        let name = if preserve { "kept" } else { "gone" };
        let enabled = full(&format!("{name}:read"));
        let disabled = full(&format!("{name}:write"));
        let mut spec = provider(json!([
            entry(name, "read", &[A]),
            entry(name, "write", &[A])
        ]));
        spec["secretName"] = json!(format!("{name}-secret"));
        env.create_mp(name, spec).await;
        let o = env.wait_mp_ready(name).await;
        let client_id = o.status.and_then(|s| s.client_id).expect("client id");
        // With the operator down, the second scope is disabled and the resource deleted.
        env.stop().await;
        let mut write = entry(name, "write", &[A]);
        write["enabled"] = json!(false);
        set_exposes(&env, name, json!([entry(name, "read", &[A]), write])).await;
        if preserve {
            env.annotate_mp(name, "digdir.nais.io/preserve", "true")
                .await;
        }
        env.mp()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        env.run();
        wait_until("deleted", async || {
            env.mp().get_opt(name).await.expect("get").is_none()
        })
        .await;
        assert_eq!(scope(&env, &enabled).expect("scope")["active"], true);
        assert_eq!(
            acl(&env, &enabled),
            approved(&[A]),
            "its consumers keep access"
        );
        assert_eq!(scope(&env, &disabled).expect("scope")["active"], false);
        let client = env.sim.client(&client_id).expect("client");
        assert_eq!(
            client["active"] != false,
            preserve,
            "the client is deleted unless preserved"
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn observe_reports_scope_and_consumer_changes_with_totals_and_writes_nothing() {
    let mut env = env().await;
    env.run();
    let x = full("api:read");
    env.create_mp("provider", provider(json!([entry("api", "read", &[A, B])])))
        .await;
    env.wait_mp_ready("provider").await;
    env.stop().await;
    // What a pass would do: a new scope with a consumer, one consumer dropped, one added, a field.
    let mut read = entry("api", "read", &[B, C]);
    read["atMaxAge"] = json!(60);
    set_exposes(&env, "provider", json!([read, entry("api", "write", &[A])])).await;
    let ctx = env.operator(env.core_config());
    let rv = env.kube.resource_version();
    let writes = env.digdir.stats().writes();
    let report = controller::observe(&ctx, &RunOptions::default())
        .await
        .expect("observe");
    assert_eq!(env.kube.resource_version(), rv, "no Kubernetes write");
    assert_eq!(env.digdir.stats().writes(), writes, "no Digdir write");
    let text = report.to_string();
    for expected in [
        format!("update scope {x} (at_max_age)"),
        format!("grant {C} access to {x}"),
        format!("revoke {A}'s access to {x}"),
        format!("create scope {}", full("api:write")),
        format!("grant {A} access to {}", full("api:write")),
    ] {
        assert!(text.contains(&expected), "{expected}: {text}");
    }
    let totals = report.totals();
    assert_eq!(totals.get("create-scope"), Some(&1), "{text}");
    assert_eq!(totals.get("update-scope"), Some(&1), "{text}");
    assert_eq!(totals.get("grant"), Some(&2), "{text}");
    assert_eq!(totals.get("revoke"), Some(&1), "{text}");
    assert!(text.contains("totals: 1 resources"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// End to end: `portvakt sim` and `portvakt run` as child processes, manifests applied with kubectl,
// tokens requested as a consumer's and a supplier's apps would.

mod e2e {
    use std::process::Command;

    use portvakt_sim::digdir::JWT_BEARER;
    use serde_json::{Value, json};

    use crate::procs::{SimProcess, start_sim, wait_for};

    fn kubectl_apply(sim: &SimProcess, manifest: &str) {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&sim.kubeconfig)
            .args(["apply", "-f", "-"])
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl (part of the machine image)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn example(file: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/examples")
            .join(file);
        std::fs::read_to_string(path).expect("example")
    }

    async fn ready_at_generation(sim: &SimProcess, ns: &str, name: &str) -> bool {
        let api: kube::Api<portvakt::crd::MaskinportenClient> =
            kube::Api::namespaced(sim.client().await, ns);
        match api.get_opt(name).await {
            Ok(Some(o)) => crate::support::is_ready(o.metadata.generation, o.status.as_ref()),
            _ => false,
        }
    }

    async fn post(sim: &SimProcess, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", sim.digdir_url))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A client of `orgno` registered (by that organisation's own admin) with `scope`.
    async fn consumer_client(sim: &SimProcess, orgno: &str, scope: &str) -> (String, Value) {
        let c = post(
            sim,
            "/_sim/digdir/consumer-clients",
            json!({"orgno": orgno, "scopes": [scope]}),
        )
        .await;
        (
            c["client_id"].as_str().expect("client_id").to_string(),
            c["jwk"].clone(),
        )
    }

    /// A token request as the client's app makes it: (status, answer).
    async fn token(
        sim: &SimProcess,
        client_id: &str,
        jwk: &Value,
        scope: &str,
        consumer_org: Option<&str>,
    ) -> (u16, Value) {
        let issuer = format!("{}/maskinporten/", sim.digdir_url);
        let now = jiff::Timestamp::now().as_second();
        let mut claims = json!({
            "iss": client_id, "aud": issuer, "scope": scope,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(c) = consumer_org {
            claims["consumer_org"] = json!(c);
        }
        let grant = portvakt_sim::digdir::app::sign_assertion(jwk, &claims).expect("sign");
        let r = reqwest::Client::new()
            .post(format!("{issuer}token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.as_str())])
            .send()
            .await
            .expect("token request");
        (r.status().as_u16(), r.json().await.expect("JSON"))
    }

    fn party(token: &Value, who: &str) -> Option<String> {
        let claims =
            portvakt_sim::jwt::raw_claims(token["access_token"].as_str()?).expect("claims");
        claims
            .pointer(&format!("/{who}/ID"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_gets_a_token_while_granted_and_a_supplier_with_a_delegation_gets_one_for_it()
     {
        let sim = start_sim(&[]).await;
        for ns in ["tilgangsstyring-main", "team-a"] {
            kubectl_apply(
                &sim,
                &format!(
                    "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{ns}\"}}}}"
                ),
            );
        }
        let _op = sim.start_operator(&[]);
        // The SKIP example: `innsyn` exposed to 987654321 and 123456789.
        let skip = example("maskinportenclient.yaml");
        kubectl_apply(&sim, &skip);
        wait_for("the provider Ready", 60, async || {
            ready_at_generation(&sim, "tilgangsstyring-main", "test-client").await
        })
        .await;
        let scope = "kartverket:produktomraade:innsyn";
        let (client, jwk) = consumer_client(&sim, "987654321", scope).await;
        let (status, t) = token(&sim, &client, &jwk, scope, None).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["scope"], scope);
        assert_eq!(party(&t, "consumer").as_deref(), Some("0192:987654321"));

        // The provider drops 987654321: its next token request is refused.
        let without = skip.replace(
            "          - name: HUSLØS HURTIG TIGER AS\n            orgno: \"987654321\"\n",
            "",
        );
        assert_ne!(without, skip, "the example names the consumer as expected");
        kubectl_apply(&sim, &without);
        wait_for("the provider Ready again", 60, async || {
            let api: kube::Api<portvakt::crd::MaskinportenClient> =
                kube::Api::namespaced(sim.client().await, "tilgangsstyring-main");
            let o = api.get("test-client").await.expect("get");
            o.metadata.generation == Some(2)
                && crate::support::is_ready(o.metadata.generation, o.status.as_ref())
        })
        .await;
        let (status, t) = token(&sim, &client, &jwk, scope, None).await;
        assert_eq!(status, 400, "{t}");
        assert!(
            t["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("987654321")),
            "{t}"
        );
        // The other consumer still gets one.
        let (other, other_jwk) = consumer_client(&sim, "123456789", scope).await;
        assert_eq!(token(&sim, &other, &other_jwk, scope, None).await.0, 200);

        // The delegation example: 910753614 delegates its access to a supplier in Altinn.
        kubectl_apply(&sim, &example("maskinportenclient-delegation.yaml"));
        wait_for("the delegating provider Ready", 60, async || {
            ready_at_generation(&sim, "team-a", "delegated-api").await
        })
        .await;
        let scope = "kartverket:difitest/test2";
        let supplier = "889640782";
        let (client, jwk) = consumer_client(&sim, supplier, scope).await;
        // Without the delegation: refused.
        let (status, t) = token(&sim, &client, &jwk, scope, Some("910753614")).await;
        assert_eq!(status, 400, "{t}");
        post(
            &sim,
            "/_sim/digdir/delegations",
            json!({"consumer": "910753614", "supplier": supplier, "scope": scope}),
        )
        .await;
        let (status, t) = token(&sim, &client, &jwk, scope, Some("910753614")).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(party(&t, "consumer").as_deref(), Some("0192:910753614"));
        assert_eq!(party(&t, "supplier").as_deref(), Some("0192:889640782"));
        assert!(t["expires_in"].as_i64().is_some_and(|s| s <= 60), "{t}");
    }
}
