//! The AzureAdApplication controller against the Entra simulator and the embedded API server
//! (support.rs's world with its Entra part): what azurerator would make, and how portvakt does it
//! without duplicates, lost credentials or needless writes.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use portvakt::controller::Counters;
use portvakt::crd::AzureAdApplication;
use portvakt_sim::graph::{GraphSeed, MICROSOFT_GRAPH_APP_ID};
use serde_json::{Value, json};

use crate::support::{
    CLUSTER, Env, NS, env, events_for, graph_calls_since, graph_mark, graph_writes_since,
    wait_passes, wait_until,
};

const OTHER_APP: &str = "atgcp1-dev:other-namespace:other-app";
const OTHER_APP_ID: &str = "3f8e2c1a-7b6d-4a5e-9f0c-2d4b6a8e1c3f";
const GROUP_1: &str = "2720e397-081d-4d9b-852e-0d81f45a304f";
const GROUP_2: &str = "c3c94454-aefc-44f9-9076-58ea47547941";

async fn entra_env() -> Env {
    let mut env = env().await;
    env.start_entra(GraphSeed::default()).await;
    env
}

fn dn(ns: &str, name: &str) -> String {
    format!("{CLUSTER}:{ns}:{name}")
}

fn data(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .unwrap_or_default()
}

fn ready(o: &AzureAdApplication) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| portvakt::conditions::is_ready(c, o.meta().generation))
}

fn condition(o: &AzureAdApplication, type_: &str) -> Option<(String, String, String)> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| portvakt::conditions::find(c, type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn one_app(env: &Env, name: &str) -> Value {
    let apps = env.graph_sim().apps_named(name);
    assert_eq!(apps.len(), 1, "exactly one app named {name}: {apps:#?}");
    apps.into_iter().next().unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_new_resource_gets_azurerators_application_secret_and_status() {
    let mut env = entra_env().await;
    let op = env.run();
    env.create_aad(
        NS,
        "app",
        json!({"secretName": "app-azure", "replyUrls": [{"url": "https://app.example/oauth2/callback"}],
               "logoutUrl": "https://app.example/oauth2/logout"}),
    )
    .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let st = o.status.clone().expect("status");
    let app = one_app(&env, &dn(NS, "app"));
    let client_id = app["appId"].as_str().unwrap().to_string();
    assert_eq!(st.client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(st.object_id.as_deref(), app["id"].as_str());
    assert_eq!(
        st.synchronization_hash.as_deref(),
        Some(portvakt::core::hash::azure_hash(&o.spec).as_str())
    );
    assert_eq!(
        st.synchronization_tenant.as_deref(),
        Some(env.graph_sim().tenant_id().as_str())
    );
    assert_eq!(st.synchronization_secret_name.as_deref(), Some("app-azure"));
    assert!(st.synchronization_secret_rotation_time.is_some());
    assert!(
        o.meta()
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "azure.nais.io/finalizer")
    );

    // What azurerator puts on every app.
    assert_eq!(app["signInAudience"], "AzureADMyOrg");
    assert_eq!(app["api"]["requestedAccessTokenVersion"], 2);
    assert!(strings(&app["tags"]).contains(&"azurerator_appreg".to_string()));
    let uris = strings(&app["identifierUris"]);
    assert!(uris.contains(&format!("api://{client_id}")), "{uris:?}");
    assert!(
        uris.contains(&format!("api://{CLUSTER}.{NS}.app")),
        "{uris:?}"
    );
    assert_eq!(
        strings(&app["web"]["redirectUris"]),
        vec!["https://app.example/oauth2/callback"]
    );
    assert_eq!(app["web"]["logoutUrl"], "https://app.example/oauth2/logout");
    assert_eq!(app["groupMembershipClaims"], "ApplicationGroup");
    let scopes: Vec<String> = app["api"]["oauth2PermissionScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["value"].as_str().unwrap(),
                s["id"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        scopes.contains(&"defaultaccess=00000000-1337-d34d-b33f-000000000000".into()),
        "{scopes:?}"
    );
    assert!(scopes.contains(&"access_as_application=00000001-abcd-9001-0000-000000000000".into()));
    let pre: Vec<String> = app["api"]["preAuthorizedApplications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["appId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        pre,
        vec![client_id.clone()],
        "the app pre-authorizes itself"
    );
    let sp = env
        .graph_sim()
        .service_principal(&client_id)
        .expect("service principal");
    assert!(strings(&sp["tags"]).contains(&"HideApp".to_string()));
    let op_sp = env.graph_sim().operator().service_principal_id;
    assert!(
        env.graph_sim()
            .owners(app["id"].as_str().unwrap())
            .contains(&op_sp)
    );
    assert!(
        env.graph_sim()
            .owners(sp["id"].as_str().unwrap())
            .contains(&op_sp)
    );
    let graph_sp = env
        .graph_sim()
        .service_principal(MICROSOFT_GRAPH_APP_ID)
        .unwrap()["id"]
        .clone();
    let grants: Vec<Value> = env
        .graph_sim()
        .grants()
        .into_iter()
        .filter(|g| g["clientId"] == sp["id"])
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["resourceId"], graph_sp);
    assert_eq!(grants[0]["scope"], "openid User.Read GroupMember.Read.All");
    assert_eq!(app["passwordCredentials"].as_array().unwrap().len(), 2);
    assert_eq!(app["keyCredentials"].as_array().unwrap().len(), 2);

    // The Secret: azurerator's 16 keys, labels, annotation, owner.
    let s = env.secrets().get("app-azure").await.expect("secret");
    let keys: BTreeSet<&str> = s
        .data
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 16, "{keys:?}");
    assert_eq!(data(&s, "AZURE_APP_CLIENT_ID"), client_id);
    assert_eq!(data(&s, "AZURE_APP_TENANT_ID"), env.graph_sim().tenant_id());
    assert_eq!(
        data(&s, "AZURE_OPENID_CONFIG_TOKEN_ENDPOINT"),
        env.entra_world().urls.token_endpoint
    );
    let pre: Value = serde_json::from_str(&data(&s, "AZURE_APP_PRE_AUTHORIZED_APPS")).unwrap();
    assert_eq!(pre, json!([{"name": dn(NS, "app"), "clientId": client_id}]));
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(
        (labels["app"].as_str(), labels["type"].as_str()),
        ("app", "azurerator.nais.io")
    );
    assert_eq!(
        s.metadata.annotations.clone().unwrap()["reloader.stakater.com/match"],
        "true"
    );
    let jwk: Value = serde_json::from_str(&data(&s, "AZURE_APP_JWK")).unwrap();
    assert_eq!(jwk["kid"], jwk["x5t"]);
    let key_ids: Vec<String> = app["keyCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyId"].as_str().unwrap().to_string())
        .collect();
    assert!(key_ids.contains(&data(&s, "AZURE_APP_CERTIFICATE_KEY_ID")));
    assert!(key_ids.contains(&data(&s, "AZURE_APP_NEXT_CERTIFICATE_KEY_ID")));
    assert!(!events_for(&env, "app", "CreatedInAzure").await.is_empty());

    // Steady state: another pass makes no Graph call at all, and writes nothing in Kubernetes.
    let mark = graph_mark(env.graph_sim());
    let secret_writes = Counters::get(&op.counters.secret_writes);
    let status_writes = Counters::get(&op.counters.status_writes);
    env.pass(&env.aad(NS), &op, "app").await;
    assert_eq!(
        graph_calls_since(env.graph_sim(), mark),
        Vec::<String>::new()
    );
    assert_eq!(Counters::get(&op.counters.secret_writes), secret_writes);
    assert_eq!(Counters::get(&op.counters.status_writes), status_writes);

    // A full synchronisation of an unchanged app reads but writes nothing.
    let mark = graph_mark(env.graph_sim());
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"azure.nais.io/resync": "true"}}})),
        )
        .await
        .unwrap();
    env.wait_aad(NS, "app", "the resync consumed", |o| {
        o.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("azure.nais.io/resync"))
    })
    .await;
    let calls = graph_calls_since(env.graph_sim(), mark);
    assert!(!calls.is_empty(), "a resync reads");
    assert_eq!(
        graph_writes_since(env.graph_sim(), mark),
        Vec::<String>::new(),
        "{calls:#?}"
    );
}

/// A pass can run on a cached object that has not seen the last status write yet (a resync asked
/// for by another app's pass lands between this app's Secret write and its status write). The
/// credentials in the Secret are still this tenant's: no new ones are registered.
#[tokio::test]
async fn a_pass_on_a_status_one_write_behind_registers_no_new_credentials() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.and_then(|s| s.object_id).expect("object id");
    let before = password_ids(&env, &object_id);
    assert_eq!(before.len(), 2, "a current and a next password");

    // The status as it was before the first pass recorded the tenant, then a pass.
    let mark = graph_mark(env.graph_sim());
    env.aad(NS)
        .patch_status(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"synchronizationTenant": null}})),
        )
        .await
        .unwrap();
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"azure.nais.io/resync": "true"}}})),
        )
        .await
        .unwrap();
    env.wait_aad(NS, "app", "the resync consumed", |o| {
        o.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("azure.nais.io/resync"))
    })
    .await;
    let writes = graph_writes_since(env.graph_sim(), mark);
    assert!(
        !writes.iter().any(|c| c.ends_with("/addPassword")),
        "new credentials were registered: {writes:#?}"
    );
    assert_eq!(password_ids(&env, &object_id), before);
}

/// Events about `name` in namespace `ns` with this reason, as notes.
async fn events_in(env: &Env, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), ns);
    api.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

fn token_endpoint(env: &Env) -> String {
    env.entra_world().urls.token_endpoint.clone()
}

/// A client-credentials token for `audience`'s API using the certificate in the Secret `secret`.
async fn token_with_secret_jwk(
    env: &Env,
    ns: &str,
    secret: &str,
    audience: &str,
) -> Result<Value, String> {
    let s = env.secrets_in(ns).get(secret).await.expect("secret");
    let jwk: Value = serde_json::from_str(&data(&s, "AZURE_APP_JWK")).unwrap();
    portvakt_sim::graph::app::certificate_token(
        &token_endpoint(env),
        &data(&s, "AZURE_APP_CLIENT_ID"),
        &jwk,
        &format!("api://{audience}/.default"),
        &env.clock,
    )
    .await
}

#[tokio::test]
async fn the_secrets_certificate_and_password_get_tokens() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let client_id = o.status.unwrap().client_id.unwrap();
    let t = token_with_secret_jwk(&env, NS, "app-azure", &client_id)
        .await
        .expect("certificate grant");
    assert_eq!(t["token_type"], "Bearer");
    let claims = portvakt_sim::graph::app::claims(t["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["azp"], client_id.as_str());
    let s = env.secrets().get("app-azure").await.unwrap();
    for key in ["AZURE_APP_CLIENT_SECRET", "AZURE_APP_NEXT_CLIENT_SECRET"] {
        portvakt_sim::graph::app::secret_token(
            &token_endpoint(&env),
            &client_id,
            &data(&s, key),
            &format!("api://{client_id}/.default"),
        )
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    // The next JWK works too (a rotation hands it out).
    let jwk: Value = serde_json::from_str(&data(&s, "AZURE_APP_NEXT_JWK")).unwrap();
    portvakt_sim::graph::app::certificate_token(
        &token_endpoint(&env),
        &client_id,
        &jwk,
        &format!("api://{client_id}/.default"),
        &env.clock,
    )
    .await
    .expect("next certificate");
}

#[tokio::test]
async fn a_changed_spec_updates_the_app_and_removes_permissions_disabled_first() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(
        NS,
        "app",
        json!({"secretName": "app-azure", "replyUrls": [{"url": "https://a.example/cb"}],
               "preAuthorizedApplications": [{"application": "client", "permissions": {"roles": ["read"], "scopes": ["write"]}}]}),
    )
    .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let secret_before = env.secrets().get("app-azure").await.unwrap();
    let app = one_app(&env, &dn(NS, "app"));
    let values: Vec<String> = app["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert!(
        values.contains(&"read".to_string()) && values.contains(&"write".to_string()),
        "{values:?}"
    );
    assert_eq!(
        condition(&o, "PreAuthorizedAppsNotFound").unwrap().0,
        "True",
        "client does not exist"
    );

    let mark = graph_mark(env.graph_sim());
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replyUrls": [{"url": "https://b.example/cb"}], "preAuthorizedApplications": null,
                                          "singlePageApplication": true}})),
        )
        .await
        .unwrap();
    let o2 = env
        .wait_aad(NS, "app", "the new generation Ready", |n| {
            ready(n) && n.meta().generation > o.meta().generation
        })
        .await;
    let app = one_app(&env, &dn(NS, "app"));
    assert_eq!(
        strings(&app["spa"]["redirectUris"]),
        vec!["https://b.example/cb"]
    );
    assert!(
        strings(&app["web"]["redirectUris"]).is_empty(),
        "the other list is cleared"
    );
    let values: Vec<String> = app["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        values.len(),
        2,
        "only azurerator's two are left: {values:?}"
    );
    let writes = graph_writes_since(env.graph_sim(), mark);
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.as_str() == "PATCH /v1.0/applications/{id}")
            .count(),
        3,
        "disable, remove, then the rest: {writes:#?}"
    );
    assert!(
        !writes.iter().any(|w| w.contains("addPassword")),
        "no new credentials for a spec change: {writes:#?}"
    );
    assert_eq!(
        condition(&o2, "PreAuthorizedAppsNotFound").unwrap().0,
        "False"
    );
    assert!(!events_for(&env, "app", "UpdatedInAzure").await.is_empty());
    // The credentials in the Secret stayed.
    let secret_after = env.secrets().get("app-azure").await.unwrap();
    assert_eq!(
        data(&secret_after, "AZURE_APP_CLIENT_SECRET"),
        data(&secret_before, "AZURE_APP_CLIENT_SECRET")
    );
}

/// The Secret azurerator writes, key by key (azurerator.md §5).
fn azurerator_secret(
    env: &Env,
    owner: &AzureAdApplication,
    name: &str,
    client_id: &str,
    sets: &[(String, String, String, String); 2],
) -> Secret {
    let urls = &env.entra_world().urls;
    let tid = env.graph_sim().tenant_id();
    let [(s1, p1, c1, j1), (s2, p2, c2, j2)] = sets;
    let d = json!({
        "AZURE_APP_CLIENT_ID": client_id, "AZURE_APP_CLIENT_SECRET": s1, "AZURE_APP_JWK": j1,
        "AZURE_APP_JWKS": format!("{{\"keys\":[{j1}]}}"), "AZURE_APP_PASSWORD_KEY_ID": p1,
        "AZURE_APP_CERTIFICATE_KEY_ID": c1, "AZURE_APP_NEXT_CLIENT_SECRET": s2, "AZURE_APP_NEXT_JWK": j2,
        "AZURE_APP_NEXT_PASSWORD_KEY_ID": p2, "AZURE_APP_NEXT_CERTIFICATE_KEY_ID": c2,
        "AZURE_APP_PRE_AUTHORIZED_APPS": format!("[{{\"name\":\"{}\",\"clientId\":\"{client_id}\"}}]", dn(NS, "legacy")),
        "AZURE_APP_TENANT_ID": tid, "AZURE_APP_WELL_KNOWN_URL": urls.well_known_url,
        "AZURE_OPENID_CONFIG_ISSUER": urls.issuer, "AZURE_OPENID_CONFIG_JWKS_URI": urls.jwks_uri,
        "AZURE_OPENID_CONFIG_TOKEN_ENDPOINT": urls.token_endpoint,
    });
    let string_data: std::collections::BTreeMap<String, String> =
        serde_json::from_value(d).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app": "legacy", "type": "azurerator.nais.io"},
            "annotations": {"reloader.stakater.com/match": "true"},
            "ownerReferences": [{"apiVersion": "nais.io/v1", "kind": "AzureAdApplication", "name": "legacy",
                "uid": owner.meta().uid, "controller": true, "blockOwnerDeletion": true}]},
        "stringData": string_data,
    }))
    .unwrap()
}

#[tokio::test]
async fn an_app_azurerator_made_is_adopted_with_its_credentials_and_secret_untouched() {
    let mut seed = GraphSeed::default();
    seed.apps.push(portvakt_sim::graph::SeedApp {
        display_name: dn(NS, "legacy"),
        tags: vec![
            "azurerator_appreg".into(),
            "WindowsAzureActiveDirectoryIntegratedApp".into(),
        ],
        identifier_uris: vec![format!("api://{CLUSTER}.{NS}.legacy")],
        permissions: vec!["access_as_application".into(), "defaultaccess".into()],
        ..Default::default()
    });
    let mut env = env().await;
    env.start_entra(seed).await;
    let sim = env.graph_sim().clone();
    let app = one_app(&env, &dn(NS, "legacy"));
    let object_id = app["id"].as_str().unwrap().to_string();
    let client_id = app["appId"].as_str().unwrap().to_string();
    // azurerator's credentials: two passwords and two certificates named azurerator-….
    let graph = env.graph_client();
    let mut sets = Vec::new();
    let mut certs = Vec::new();
    for i in 0..2 {
        let pw = graph
            .add_password(
                &object_id,
                &portvakt::entra::NewPasswordCredential {
                    display_name: format!("azurerator-2026-01-0{}T00:00:00Z", i + 1),
                    start_date_time: None,
                    end_date_time: None,
                },
            )
            .await
            .unwrap();
        let key = portvakt::core::Key::from_private(&portvakt::keys::generate_key().unwrap());
        let cert =
            portvakt::core::entra::certificate::certificate_key(&key, "legacy", env.clock.now())
                .unwrap();
        let kc = portvakt::entra::KeyCredential::certificate(
            &cert.cert_der,
            format!("azurerator-2026-01-0{}T00:00:00Z", i + 1),
        );
        sets.push((
            pw.secret_text.unwrap().expose().to_string(),
            pw.key_id,
            kc.key_id.clone().unwrap(),
            cert.jwk_json.clone(),
        ));
        certs.push(kc);
    }
    graph.set_key_credentials(&object_id, &certs).await.unwrap();
    let sets: [(String, String, String, String); 2] = [sets[0].clone(), sets[1].clone()];

    // The resource as azurerator left it: its status (no conditions), its finalizer, its Secret.
    let obj: AzureAdApplication = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "AzureAdApplication",
        "metadata": {"name": "legacy", "namespace": NS, "finalizers": ["finalizer.azurerator.nais.io"]},
        "spec": {"secretName": "legacy-azure"},
    }))
    .unwrap();
    let obj = env
        .aad(NS)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    let hash = portvakt::core::hash::azure_hash(&obj.spec);
    assert_eq!(hash, "fb3ded02e59f9458", "liberator's vector");
    env.aad(NS)
        .patch_status(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "clientId": client_id, "objectId": object_id, "synchronizationHash": hash,
                "synchronizationSecretName": "legacy-azure", "synchronizationState": "Synchronized",
                "synchronizationTenant": sim.tenant_id(), "synchronizationTenantName": sim.operator().tenant_name,
                "synchronizationSecretRotationTime": env.clock.now().to_string(),
                "passwordKeyIds": [sets[0].1], "certificateKeyIds": [sets[0].2],
            }})),
        )
        .await
        .unwrap();
    let secret = azurerator_secret(&env, &obj, "legacy-azure", &client_id, &sets);
    let secret = env
        .secrets()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let op = env.run();
    let o = env.wait_aad_ready(NS, "legacy").await;
    let st = o.status.clone().unwrap();
    assert_eq!(
        st.object_id.as_deref(),
        Some(object_id.as_str()),
        "adopted, not created"
    );
    one_app(&env, &dn(NS, "legacy"));
    let app = sim.app(&object_id).unwrap();
    assert_eq!(
        app["passwordCredentials"].as_array().unwrap().len(),
        2,
        "no new credentials"
    );
    assert_eq!(app["keyCredentials"].as_array().unwrap().len(), 2);
    let after = env.secrets().get("legacy-azure").await.unwrap();
    assert_eq!(
        after.data, secret.data,
        "azurerator's Secret is not rewritten"
    );
    assert_eq!(
        after.metadata.resource_version,
        secret.metadata.resource_version
    );
    assert_eq!(Counters::get(&op.counters.secret_writes), 0);
    assert!(
        o.meta()
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "azure.nais.io/finalizer")
    );
    assert!(
        !o.meta()
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "finalizer.azurerator.nais.io")
    );
    assert_eq!(st.synchronization_hash.as_deref(), Some("fb3ded02e59f9458"));
    let mut kept = st.password_key_ids.clone().unwrap();
    kept.sort();
    let mut both = vec![sets[0].1.clone(), sets[1].1.clone()];
    both.sort();
    assert_eq!(
        kept, both,
        "both of azurerator's passwords are portvakt's own now"
    );
}

#[tokio::test]
async fn deletion_removes_the_app_unless_preserved_then_only_its_credentials_go() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(NS, "gone", json!({"secretName": "gone-azure"}))
        .await;
    env.create_aad(NS, "kept", json!({"secretName": "kept-azure"}))
        .await;
    let gone = env.wait_aad_ready(NS, "gone").await;
    env.wait_aad_ready(NS, "kept").await;
    let kept_app = one_app(&env, &dn(NS, "kept"));
    let kept_id = kept_app["id"].as_str().unwrap().to_string();
    // A credential made by hand survives the preserve.
    let hand = env
        .graph_client()
        .add_password(
            &kept_id,
            &portvakt::entra::NewPasswordCredential {
                display_name: "made in the portal".into(),
                start_date_time: None,
                end_date_time: None,
            },
        )
        .await
        .unwrap();
    env.aad(NS)
        .patch(
            "kept",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"azure.nais.io/preserve": "true"}}})),
        )
        .await
        .unwrap();
    for name in ["gone", "kept"] {
        env.aad(NS)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_until("both resources gone", async || {
        env.aad(NS).get_opt("gone").await.unwrap().is_none()
            && env.aad(NS).get_opt("kept").await.unwrap().is_none()
    })
    .await;
    let deleted = env.graph_sim().deleted_applications();
    assert!(
        deleted.iter().any(|(id, _, _)| Some(id.as_str())
            == gone.status.as_ref().and_then(|s| s.object_id.as_deref()))
    );
    assert!(env.graph_sim().apps_named(&dn(NS, "gone")).is_empty());
    let kept = env.graph_sim().app(&kept_id).expect("preserved");
    let pws: Vec<String> = kept["passwordCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["keyId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        pws,
        vec![hand.key_id],
        "only the hand-made password is left"
    );
    assert!(kept["keyCredentials"].as_array().unwrap().is_empty());
    assert!(!events_for(&env, "gone", "DeletedInAzure").await.is_empty());
}

async fn namespace(env: &Env, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .expect("namespace");
}

#[tokio::test]
async fn a_pre_authorized_app_created_later_in_another_namespace_is_assigned_at_once() {
    let mut env = entra_env().await;
    namespace(&env, "team-a").await;
    namespace(&env, "team-b").await;
    let op = env.run();
    env.create_aad(
        "team-a",
        "api",
        json!({"secretName": "api-azure", "preAuthorizedApplications": [
            {"application": "client", "namespace": "team-b", "permissions": {"roles": ["read"]}},
            {"application": "other-app", "namespace": "other-namespace", "cluster": "atgcp1-dev"}]}),
    )
    .await;
    let o = env.wait_aad_ready("team-a", "api").await;
    let (status, reason, message) = condition(&o, "PreAuthorizedAppsNotFound").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Failed"));
    assert!(message.contains(&dn("team-b", "client")), "{message}");
    let pre = o
        .status
        .as_ref()
        .unwrap()
        .pre_authorized_apps
        .clone()
        .unwrap();
    assert_eq!(
        (pre.assigned_count, pre.unassigned_count),
        (Some(2), Some(1)),
        "self and the other cluster's app"
    );
    let api = one_app(&env, &dn("team-a", "api"));
    let api_sp = env
        .graph_sim()
        .service_principal(api["appId"].as_str().unwrap())
        .unwrap();
    let other_sp = env.graph_sim().service_principal(OTHER_APP_ID).unwrap();
    let assigned = |sp: &Value| -> Vec<String> {
        env.graph_sim()
            .assignments(api_sp["id"].as_str().unwrap())
            .iter()
            .filter(|a| a["principalId"] == sp["id"])
            .map(|a| a["appRoleId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        assigned(&other_sp),
        vec!["00000001-abcd-9001-0000-000000000000"],
        "{OTHER_APP} gets access_as_application"
    );
    assert!(
        !events_in(&env, "team-a", "api", "AccessPolicySkipped")
            .await
            .is_empty()
    );

    // The client appears: the api is resynced at once (not at the next sweep or resync period).
    let sweeps =
        portvakt::controller::entra_kinds::EntraProvider::count(&op.entra().counters().sweeps);
    env.create_aad("team-b", "client", json!({"secretName": "client-azure"}))
        .await;
    let client = env.wait_aad_ready("team-b", "client").await;
    let client_id = client.status.unwrap().client_id.unwrap();
    let o = env
        .wait_aad("team-a", "api", "the client assigned", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.pre_authorized_apps.as_ref())
                .is_some_and(|p| p.unassigned_count == Some(0))
        })
        .await;
    assert_eq!(
        condition(&o, "PreAuthorizedAppsNotFound").unwrap().0,
        "False"
    );
    assert_eq!(
        portvakt::controller::entra_kinds::EntraProvider::count(&op.entra().counters().sweeps),
        sweeps,
        "no sweep needed"
    );
    let client_sp = env.graph_sim().service_principal(&client_id).unwrap();
    let mut roles = assigned(&client_sp);
    roles.sort();
    let api = one_app(&env, &dn("team-a", "api"));
    let read = api["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "read")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expected = vec!["00000001-abcd-9001-0000-000000000000".to_string(), read];
    expected.sort();
    assert_eq!(roles, expected);
    assert!(
        api["api"]["preAuthorizedApplications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["appId"] == client_id.as_str()),
        "pre-authorized"
    );
    let s = env.secrets_in("team-a").get("api-azure").await.unwrap();
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&data(&s, "AZURE_APP_PRE_AUTHORIZED_APPS"))
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
    assert!(
        names.contains(&dn("team-b", "client")) && names.contains(&OTHER_APP.to_string()),
        "{names:?}"
    );
    assert!(
        o.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("azure.nais.io/resync")),
        "the resync was consumed"
    );
}

#[tokio::test]
async fn groups_are_assigned_the_default_role_behind_the_feature_settings() {
    let mut env = env().await;
    env.start_entra(GraphSeed::default()).await;
    {
        let w = env.entra.as_mut().unwrap();
        w.config.groups_assignment = true;
        w.config.assignment_required = true;
        w.config.all_users_group_ids = vec![GROUP_2.into()];
    }
    env.run();
    env.create_aad(
        NS,
        "app",
        json!({"secretName": "app-azure", "allowAllUsers": true,
               "claims": {"groups": [{"id": GROUP_1}, {"id": "00000000-dead-beef-0000-000000000000"}]}}),
    )
    .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let sp = env
        .graph_sim()
        .service_principal(&o.status.unwrap().client_id.unwrap())
        .unwrap();
    assert_eq!(sp["appRoleAssignmentRequired"], true);
    let mut groups: Vec<(String, String)> = env
        .graph_sim()
        .assignments(sp["id"].as_str().unwrap())
        .iter()
        .filter(|a| a["principalType"] == "Group")
        .map(|a| {
            (
                a["principalId"].as_str().unwrap().to_string(),
                a["appRoleId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    groups.sort();
    let zero = "00000000-0000-0000-0000-000000000000".to_string();
    let mut expected = vec![
        (GROUP_1.to_string(), zero.clone()),
        (GROUP_2.to_string(), zero.clone()),
    ];
    expected.sort();
    assert_eq!(
        groups, expected,
        "the claimed group and the all-users group; the missing one skipped"
    );

    // A group dropped from the spec loses its assignment.
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allowAllUsers": false}})),
        )
        .await
        .unwrap();
    wait_until("the all-users group unassigned", async || {
        !env.graph_sim()
            .assignments(sp["id"].as_str().unwrap())
            .iter()
            .any(|a| a["principalId"] == GROUP_2)
    })
    .await;
    assert!(
        env.graph_sim()
            .assignments(sp["id"].as_str().unwrap())
            .iter()
            .any(|a| a["principalId"] == GROUP_1)
    );
}

#[tokio::test]
async fn federated_credentials_follow_the_spec_and_hand_made_ones_stay() {
    let mut env = entra_env().await;
    env.run();
    let fc = |subject: &str| {
        json!({"name": "gha", "issuer": "https://token.actions.githubusercontent.com",
                                     "subject": subject, "audience": "api://AzureADTokenExchange"})
    };
    env.create_aad(NS, "app", json!({"secretName": "app-azure", "federatedCredentials": [fc("repo:org/app:ref:refs/heads/main")]}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.as_ref().unwrap().object_id.clone().unwrap();
    let client_id = o.status.as_ref().unwrap().client_id.clone().unwrap();
    let fics = env.graph_sim().federated_credentials(&object_id);
    assert_eq!(fics.len(), 1, "{fics:?}");
    assert_eq!(fics[0]["subject"], "repo:org/app:ref:refs/heads/main");
    assert_eq!(fics[0]["audiences"], json!(["api://AzureADTokenExchange"]));
    env.graph_sim()
        .add_federated_credential(
            &client_id,
            "by-hand",
            "https://issuer.example",
            "someone",
            "api://AzureADTokenExchange",
        )
        .unwrap();

    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"federatedCredentials": [fc("repo:org/app:environment:prod")]}}),
            ),
        )
        .await
        .unwrap();
    wait_until("the subject updated", async || {
        env.graph_sim()
            .federated_credentials(&object_id)
            .iter()
            .any(|f| f["subject"] == "repo:org/app:environment:prod")
    })
    .await;
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"federatedCredentials": null}})),
        )
        .await
        .unwrap();
    wait_until("portvakt's credential removed", async || {
        !env.graph_sim()
            .federated_credentials(&object_id)
            .iter()
            .any(|f| f["name"] == "gha")
    })
    .await;
    let left: Vec<Value> = env.graph_sim().federated_credentials(&object_id);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "by-hand");
}

fn pod_using(ns: &str, name: &str, secret: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": secret}}]}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "image": "app", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}}}]}
    }))
    .expect("pod")
}

fn password_ids(env: &Env, object_id: &str) -> Vec<String> {
    env.graph_sim().app(object_id).unwrap()["passwordCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["keyId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_rotation_keeps_what_a_pod_still_uses_and_revokes_it_once_the_pod_is_gone() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-1"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.as_ref().unwrap().object_id.clone().unwrap();
    let old = env.secrets().get("app-1").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod_using(NS, "pod-1", "app-1"))
        .await
        .unwrap();

    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretName": "app-2"}})),
        )
        .await
        .unwrap();
    env.wait_aad(NS, "app", "rotated to app-2", |o| {
        ready(o)
            && o.status
                .as_ref()
                .and_then(|s| s.synchronization_secret_name.as_deref())
                == Some("app-2")
    })
    .await;
    let new = env.secrets().get("app-2").await.unwrap();
    // Rotation: the next set (registered long ago) becomes current; a new next.
    assert_eq!(
        data(&new, "AZURE_APP_CLIENT_SECRET"),
        data(&old, "AZURE_APP_NEXT_CLIENT_SECRET")
    );
    assert_eq!(
        data(&new, "AZURE_APP_PASSWORD_KEY_ID"),
        data(&old, "AZURE_APP_NEXT_PASSWORD_KEY_ID")
    );
    assert_ne!(
        data(&new, "AZURE_APP_NEXT_PASSWORD_KEY_ID"),
        data(&old, "AZURE_APP_NEXT_PASSWORD_KEY_ID")
    );
    assert!(
        env.secrets().get_opt("app-1").await.unwrap().is_some(),
        "the old Secret stays while the Pod uses it"
    );
    let pws = password_ids(&env, &object_id);
    assert!(
        pws.contains(&data(&old, "AZURE_APP_PASSWORD_KEY_ID")),
        "the Pod's password stays: {pws:?}"
    );
    assert_eq!(pws.len(), 3);
    assert!(!events_for(&env, "app", "RotatedInAzure").await.is_empty());

    // The Pod goes: the next full pass deletes the old Secret and revokes what only it held.
    pods.delete("pod-1", &DeleteParams::default())
        .await
        .unwrap();
    env.aad(NS)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"azure.nais.io/resync": "true"}}})),
        )
        .await
        .unwrap();
    wait_until("the old Secret and password gone", async || {
        env.secrets().get_opt("app-1").await.unwrap().is_none()
            && password_ids(&env, &object_id).len() == 2
    })
    .await;
    let pws = password_ids(&env, &object_id);
    assert!(
        pws.contains(&data(&new, "AZURE_APP_PASSWORD_KEY_ID"))
            && pws.contains(&data(&new, "AZURE_APP_NEXT_PASSWORD_KEY_ID"))
    );
}

#[tokio::test]
async fn max_age_rotation_by_the_clock_keeps_the_replaced_set_for_a_pod_that_started_before() {
    let mut env = env().await;
    env.start_entra(GraphSeed::default()).await;
    env.entra.as_mut().unwrap().config.max_age = Duration::from_secs(168 * 3600);
    let op = env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.as_ref().unwrap().object_id.clone().unwrap();
    let before = env.secrets().get("app-azure").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod_using(NS, "pod-1", "app-azure"))
        .await
        .unwrap();

    // A week and an hour later: the set is older than the max age, a new one replaces it in place.
    env.clock.advance(Duration::from_secs(169 * 3600));
    env.pass(&env.aad(NS), &op, "app").await;
    wait_until("the Secret holds a new set", async || {
        let s = env.secrets().get("app-azure").await.unwrap();
        data(&s, "AZURE_APP_PASSWORD_KEY_ID") != data(&before, "AZURE_APP_PASSWORD_KEY_ID")
    })
    .await;
    let now = env.secrets().get("app-azure").await.unwrap();
    assert_ne!(
        data(&now, "AZURE_APP_NEXT_PASSWORD_KEY_ID"),
        data(&before, "AZURE_APP_NEXT_PASSWORD_KEY_ID"),
        "both new"
    );
    let pws = password_ids(&env, &object_id);
    assert_eq!(
        pws.len(),
        4,
        "the replaced set stays while the Pod (started before) may hold it: {pws:?}"
    );
    assert!(
        now.metadata
            .annotations
            .clone()
            .unwrap()
            .contains_key("portvakt.nais.io/replaced-credentials")
    );

    // Past the grace period the Pod still runs: still kept. Once it is gone, the old set goes.
    env.clock.advance(Duration::from_secs(600));
    env.pass(&env.aad(NS), &op, "app").await;
    assert_eq!(password_ids(&env, &object_id).len(), 4);
    pods.delete("pod-1", &DeleteParams::default())
        .await
        .unwrap();
    env.pass(&env.aad(NS), &op, "app").await;
    wait_until("the replaced set revoked", async || {
        password_ids(&env, &object_id).len() == 2
    })
    .await;
    let pws = password_ids(&env, &object_id);
    assert!(pws.contains(&data(&now, "AZURE_APP_PASSWORD_KEY_ID")));
}

/// No blanket resync: a steady AzureAdApplication is not reconciled while periodic passes run, and
/// the shared clock alone brings its pass when something is due: the rotation at max age, then the
/// revocation of the replaced set once no Pod may hold it.
#[tokio::test]
async fn a_steady_application_gets_a_pass_only_when_something_is_due() {
    let mut env = entra_env().await;
    env.entra.as_mut().unwrap().config.max_age = Duration::from_secs(168 * 3600);
    let cfg = env.core_config();
    let op = env.run_with(cfg, Duration::from_millis(300));
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.as_ref().unwrap().object_id.clone().unwrap();
    // Settled (a sentinel pass runs after every echo of the operator's own writes).
    env.pass(&env.aad(NS), &op, "app").await;
    let reconciles = Counters::get(&op.counters.reconciles);
    wait_passes(&op, 3).await;
    assert_eq!(
        Counters::get(&op.counters.reconciles),
        reconciles,
        "nothing due: not reconciled while periodic passes run"
    );

    // A week and an hour later, with a Pod on the Secret: rotated by the clock alone, the replaced
    // set kept while the Pod may hold it.
    let before = env.secrets().get("app-azure").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.create(&PostParams::default(), &pod_using(NS, "pod-1", "app-azure"))
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(169 * 3600));
    wait_until("rotated by the clock alone", async || {
        let s = env.secrets().get("app-azure").await.unwrap();
        data(&s, "AZURE_APP_PASSWORD_KEY_ID") != data(&before, "AZURE_APP_PASSWORD_KEY_ID")
    })
    .await;
    assert_eq!(password_ids(&env, &object_id).len(), 4);

    // Past the grace period the Pod still runs: the pass the clock brings keeps the set.
    let done = Counters::get(&op.counters.passes_done);
    env.clock.advance(Duration::from_secs(601));
    wait_until("the pass at the grace period's end", async || {
        Counters::get(&op.counters.passes_done) > done
    })
    .await;
    assert_eq!(password_ids(&env, &object_id).len(), 4);
    // The Pod gone (no watch reports it): revoked on the revisit a resync period later.
    pods.delete("pod-1", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("the replaced set revoked by the clock alone", async || {
        password_ids(&env, &object_id).len() == 2
    })
    .await;

    // Settled again: at most one more look, then nothing until the next thing is due (no loop).
    wait_passes(&op, 5).await;
    let reconciles = Counters::get(&op.counters.reconciles);
    wait_passes(&op, 3).await;
    assert_eq!(
        Counters::get(&op.counters.reconciles),
        reconciles,
        "nothing due after the revocation"
    );
}

/// The daily full synchronisation of an unchanged application changes nothing and so writes no
/// status; it still counts as the day's, so the next one is a day later, not every resync period.
#[tokio::test]
async fn the_daily_full_synchronisation_comes_once_a_day() {
    let mut env = entra_env().await;
    let cfg = env.core_config();
    let op = env.run_with(cfg, Duration::from_millis(300));
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    env.wait_aad_ready(NS, "app").await;
    env.pass(&env.aad(NS), &op, "app").await;
    let status_writes = Counters::get(&op.counters.status_writes);

    // A day and an hour later: one full pass (Graph is read), nothing written.
    let reconciles = Counters::get(&op.counters.reconciles);
    let mark = graph_mark(env.graph_sim());
    env.clock.advance(Duration::from_secs(25 * 3600));
    wait_until("the daily full synchronisation", async || {
        Counters::get(&op.counters.reconciles) > reconciles
            && !graph_calls_since(env.graph_sim(), mark).is_empty()
    })
    .await;
    wait_passes(&op, 2).await;
    assert_eq!(
        graph_writes_since(env.graph_sim(), mark),
        Vec::<String>::new()
    );
    assert_eq!(Counters::get(&op.counters.status_writes), status_writes);

    // Then nothing until the next day, however many resync periods go by.
    let reconciles = Counters::get(&op.counters.reconciles);
    let mark = graph_mark(env.graph_sim());
    env.clock.advance(Duration::from_secs(3 * 3600));
    wait_passes(&op, 4).await;
    assert_eq!(
        Counters::get(&op.counters.reconciles),
        reconciles,
        "a full pass every resync period: {:#?}",
        graph_calls_since(env.graph_sim(), mark)
    );
}

#[tokio::test]
async fn secret_key_prefix_replaces_azure_in_every_key() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(
        NS,
        "app",
        json!({"secretName": "app-azure", "secretKeyPrefix": "my_"}),
    )
    .await;
    env.wait_aad_ready(NS, "app").await;
    let s = env.secrets().get("app-azure").await.unwrap();
    let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys.len(), 16);
    assert!(
        keys.iter()
            .all(|k| k.starts_with("MY_APP_") || k.starts_with("MY_OPENID_CONFIG_")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn another_tenants_resource_is_left_entirely_alone() {
    let mut env = entra_env().await;
    let op = env.run();
    let mark = graph_mark(env.graph_sim());
    env.create_aad(
        NS,
        "theirs",
        json!({"secretName": "theirs-azure", "tenant": "other.example"}),
    )
    .await;
    env.create_aad(
        NS,
        "mine",
        json!({"secretName": "mine-azure", "tenant": env.graph_sim().operator().tenant_name}),
    )
    .await;
    env.wait_aad_ready(NS, "mine").await;
    wait_until("the other tenant's resource counted", async || {
        op.entra().other_tenant_resources() == 1
    })
    .await;
    let theirs = env.aad(NS).get("theirs").await.unwrap();
    assert!(theirs.status.is_none(), "no status");
    assert!(
        theirs
            .meta()
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty()),
        "no finalizer"
    );
    assert!(env.graph_sim().apps_named(&dn(NS, "theirs")).is_empty());
    assert!(
        env.secrets()
            .get_opt("theirs-azure")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        events_for(&env, "theirs", "FailedSynchronization")
            .await
            .is_empty()
    );
    assert!(
        !graph_calls_since(env.graph_sim(), mark)
            .iter()
            .any(|c| c.contains("theirs"))
    );
}

#[tokio::test]
async fn new_objects_invisible_to_reads_for_a_while_still_give_one_app() {
    let mut env = entra_env().await;
    env.graph_sim()
        .set_eventual_consistency(Duration::from_secs(20));
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    env.wait_aad_ready(NS, "app").await;
    one_app(&env, &dn(NS, "app"));
    let lagged = env
        .graph_sim()
        .journal()
        .iter()
        .filter(|c| c.status == 404 || c.status == 400)
        .count();
    assert!(lagged > 0, "reads of the new objects were refused at first");
}

#[tokio::test]
async fn throttling_is_waited_out_as_graph_asks() {
    let mut env = entra_env().await;
    env.graph_sim().inject_fault(
        portvakt_sim::graph::FaultRule::parse(
            "POST /v1.0/servicePrincipals throttle=7 times=2",
            env.clock.now(),
        )
        .unwrap(),
    );
    let start = env.clock.now();
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    env.wait_aad_ready(NS, "app").await;
    let j = env.graph_sim().journal();
    let sps: Vec<u16> = j
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/v1.0/servicePrincipals")
        .map(|c| c.status)
        .collect();
    assert_eq!(sps, vec![429, 429, 201], "retried after each Retry-After");
    assert!(
        env.clock.now().duration_since(start).as_secs() >= 14,
        "waited 2 × 7 s (on the shared clock)"
    );
    one_app(&env, &dn(NS, "app"));
    assert_eq!(
        env.graph_sim()
            .service_principals()
            .iter()
            .filter(|s| s["displayName"] == dn(NS, "app"))
            .count(),
        1
    );
}

#[tokio::test]
async fn concurrent_writes_refused_with_409_are_retried_without_fixed_sleeps() {
    let mut env = entra_env().await;
    // Graph refuses rapid changes to one object (azurerator#448): 2 s settle after each write.
    env.graph_sim()
        .set_write_settle_time(Duration::from_secs(2));
    let start = env.clock.now();
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let o = env.wait_aad_ready(NS, "app").await;
    assert!(
        env.graph_sim().write_conflicts() > 0,
        "the writes did conflict"
    );
    let object_id = o.status.unwrap().object_id.unwrap();
    assert_eq!(
        password_ids(&env, &object_id).len(),
        2,
        "no duplicate credential from a retried write"
    );
    one_app(&env, &dn(NS, "app"));
    let waited = env.clock.now().duration_since(start).as_secs();
    assert!(
        waited < 60,
        "backoff, not 10 s sleeps between writes: {waited} s"
    );
}

#[tokio::test]
async fn a_crash_between_create_and_status_still_gives_one_app() {
    let mut env = entra_env().await;
    // New objects stay unlisted for a while (so the app is not found by its display name when the
    // operator comes back). The pass creates the app, then fails before it can record it in status
    // (the step after the create fails every time), and the operator goes down.
    env.graph_sim()
        .set_eventual_consistency(Duration::from_secs(30));
    env.graph_sim().inject_fault(
        portvakt_sim::graph::FaultRule::parse(
            "POST /v1.0/servicePrincipals status=500",
            env.clock.now(),
        )
        .unwrap(),
    );
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    wait_until("the app created in Entra", async || {
        !env.graph_sim().apps_named(&dn(NS, "app")).is_empty()
    })
    .await;
    env.wait_aad(NS, "app", "the failure reported", |o| {
        condition(o, "Ready").is_some_and(|c| c.1 == "EntraError")
    })
    .await;
    env.stop().await;
    assert!(
        env.aad(NS)
            .get("app")
            .await
            .unwrap()
            .status
            .unwrap()
            .object_id
            .is_none(),
        "status does not know the app"
    );
    let mark = graph_mark(env.graph_sim());
    env.graph_sim().clear_faults();
    env.run();
    let o = env.wait_aad_ready(NS, "app").await;
    let app = one_app(&env, &dn(NS, "app"));
    assert_eq!(o.status.unwrap().object_id.as_deref(), app["id"].as_str());
    let calls = graph_calls_since(env.graph_sim(), mark);
    assert!(
        calls.iter().any(|c| c == "PATCH /v1.0/applications(…)"),
        "found again through the upsert by uniqueName: {calls:#?}"
    );
    assert_eq!(
        env.graph_sim()
            .service_principals()
            .iter()
            .filter(|s| s["appId"] == app["appId"])
            .count(),
        1
    );
}

#[tokio::test]
async fn a_secret_someone_else_owns_stops_the_pass_before_entra_is_touched() {
    let mut env = entra_env().await;
    env.secrets()
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "taken", "namespace": NS}, "stringData": {"x": "y"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mark = graph_mark(env.graph_sim());
    env.run();
    env.create_aad(NS, "app", json!({"secretName": "taken"}))
        .await;
    let o = env
        .wait_aad(NS, "app", "SecretNotOwned", |o| {
            condition(o, "Ready").is_some_and(|c| c.1 == "SecretNotOwned")
        })
        .await;
    assert!(condition(&o, "Ready").unwrap().2.contains("taken"));
    assert!(
        graph_calls_since(env.graph_sim(), mark).is_empty(),
        "no Graph call"
    );
    assert_eq!(data(&env.secrets().get("taken").await.unwrap(), "x"), "y");
}

#[tokio::test]
async fn drift_made_by_hand_in_entra_is_found_by_the_periodic_pass_and_repaired() {
    let mut env = entra_env().await;
    let cfg = env.core_config();
    let op = env.run_with(cfg, Duration::from_secs(1));
    env.create_aad(
        NS,
        "app",
        json!({"secretName": "app-azure", "replyUrls": [{"url": "https://app.example/cb"}],
               "preAuthorizedApplications": [{"application": "other-app", "namespace": "other-namespace", "cluster": "atgcp1-dev"}]}),
    )
    .await;
    let o = env.wait_aad_ready(NS, "app").await;
    let object_id = o.status.unwrap().object_id.unwrap();
    wait_passes(&op, 1).await;
    assert!(
        op.entra().drift_report().drifted.is_empty(),
        "no drift in the steady state"
    );

    // By hand in the portal: a redirect URI removed, the other app's pre-authorization deleted.
    let graph = env.graph_client();
    graph
        .update_application(
            &object_id,
            &portvakt::entra::ApplicationPatch {
                web: Some(portvakt::entra::WebApplicationPatch {
                    redirect_uris: Some(vec![]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    graph
        .set_pre_authorized_applications(&object_id, &[])
        .await
        .unwrap();
    wait_until("the drift repaired", async || {
        let app = env.graph_sim().app(&object_id).unwrap();
        strings(&app["web"]["redirectUris"]) == vec!["https://app.example/cb"]
            && app["api"]["preAuthorizedApplications"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["appId"] == OTHER_APP_ID)
    })
    .await;
    wait_until("the repair reported", async || {
        !events_for(&env, "app", "DriftRepaired").await.is_empty()
    })
    .await;
    let (kind, note) = events_for(&env, "app", "DriftRepaired").await.remove(0);
    assert_eq!(kind, "Warning");
    assert!(
        note.contains("redirectUris") && note.contains("preAuthorizedApplications"),
        "{note}"
    );
    assert!(Counters::get(&op.counters.drift_repaired) >= 1);
}

#[tokio::test]
async fn the_sweep_finds_a_pre_authorized_app_of_another_cluster_that_appeared() {
    let mut env = entra_env().await;
    env.entra.as_mut().unwrap().sweep_interval = Duration::from_secs(1);
    let op = env.run();
    env.create_aad(
        NS,
        "api",
        json!({"secretName": "api-azure", "preAuthorizedApplications": [{"application": "late", "namespace": "far", "cluster": "prod-gcp"}]}),
    )
    .await;
    let o = env.wait_aad_ready(NS, "api").await;
    assert_eq!(
        o.status
            .unwrap()
            .pre_authorized_apps
            .unwrap()
            .unassigned_count,
        Some(1)
    );
    let sweeps =
        portvakt::controller::entra_kinds::EntraProvider::count(&op.entra().counters().sweeps);
    wait_until("a sweep", async || {
        portvakt::controller::entra_kinds::EntraProvider::count(&op.entra().counters().sweeps)
            > sweeps
    })
    .await;
    // The other cluster's operator creates its app (nothing tells this cluster).
    let graph = env.graph_client();
    let late = graph
        .ensure_application(
            "prod-gcp:far:late",
            "late-unique",
            &portvakt::entra::ApplicationPatch::default(),
        )
        .await
        .unwrap()
        .application;
    graph
        .create_service_principal(&portvakt::entra::NewServicePrincipal {
            app_id: late.app_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let o = env
        .wait_aad(NS, "api", "the late app assigned", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.pre_authorized_apps.as_ref())
                .is_some_and(|p| p.unassigned_count == Some(0))
        })
        .await;
    assert!(
        portvakt::controller::entra_kinds::EntraProvider::count(
            &op.entra().counters().sweep_resyncs
        ) >= 1
    );
    let assigned = o
        .status
        .unwrap()
        .pre_authorized_apps
        .unwrap()
        .assigned
        .unwrap();
    assert!(
        assigned
            .iter()
            .any(|a| a.client_id.as_deref() == Some(late.app_id.as_str()))
    );
}

#[tokio::test]
async fn observe_reports_what_a_pass_would_do_and_writes_nothing() {
    let mut env = entra_env().await;
    env.run();
    env.create_aad(NS, "done", json!({"secretName": "done-azure"}))
        .await;
    env.wait_aad_ready(NS, "done").await;
    env.stop().await;
    env.create_aad(NS, "new", json!({"secretName": "new-azure"}))
        .await;
    let op = env.operator(env.core_config());
    let mark = graph_mark(env.graph_sim());
    let report =
        portvakt::controller::observe(&op.ctx, &portvakt::controller::RunOptions::default())
            .await
            .expect("observe");
    let text = report.to_string();
    assert!(text.contains("AzureAdApplication default/new: create; register keys (new credentials: new application); write-secret"), "{text}");
    assert!(
        text.contains("AzureAdApplication default/done: unchanged"),
        "{text}"
    );
    assert_eq!(
        graph_writes_since(env.graph_sim(), mark),
        Vec::<String>::new()
    );
    assert!(env.graph_sim().apps_named(&dn(NS, "new")).is_empty());
    assert!(env.aad(NS).get("new").await.unwrap().status.is_none());
}

/// `kubectl` (the real binary on PATH) against `portvakt sim`, `manifest` on stdin.
fn kubectl_apply(sim: &crate::procs::SimProcess, manifest: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .args(["apply", "-f", "-"])
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// End to end with kubectl and the binaries: app B calls app A. With assignment required, B gets a
/// token for A's audience only after A pre-authorizes B, and the token carries the role.
#[tokio::test]
async fn with_kubectl_and_the_binary_b_gets_a_token_for_a_only_after_a_pre_authorizes_b() {
    let sim = crate::procs::start_sim(&[]).await;
    let client = sim.client().await;
    let op = sim.start_operator(&[("PORTVAKT_ENTRA_APP_ROLE_ASSIGNMENT_REQUIRED", "true")]);
    kubectl_apply(
        &sim,
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}"#,
    );
    let app = |name: &str, extra: &str| {
        format!(
            "apiVersion: nais.io/v1\nkind: AzureAdApplication\nmetadata:\n  name: {name}\n  namespace: team\nspec:\n  secretName: {name}-azure\n{extra}"
        )
    };
    kubectl_apply(
        &sim,
        &format!("{}---\n{}", app("api", ""), app("client", "")),
    );
    let apps: Api<AzureAdApplication> = Api::namespaced(client.clone(), "team");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let ready_now = async |name: &str| {
        apps.get_opt(name)
            .await
            .ok()
            .flatten()
            .is_some_and(|o| ready(&o))
    };
    crate::procs::wait_for("both Ready", 60, async || {
        ready_now("api").await && ready_now("client").await
    })
    .await;
    let api_id = apps
        .get("api")
        .await
        .unwrap()
        .status
        .unwrap()
        .client_id
        .unwrap();
    let b = secrets.get("client-azure").await.unwrap();
    let jwk: Value = serde_json::from_str(&data(&b, "AZURE_APP_JWK")).unwrap();
    let clock = portvakt::clock::Clock::system();
    let token = async || {
        portvakt_sim::graph::app::certificate_token(
            &data(&b, "AZURE_OPENID_CONFIG_TOKEN_ENDPOINT"),
            &data(&b, "AZURE_APP_CLIENT_ID"),
            &jwk,
            &format!("api://{api_id}/.default"),
            &clock,
        )
        .await
    };
    let refused = token().await.expect_err("not pre-authorized yet");
    assert!(
        refused.contains("invalid_grant") && refused.contains("not assigned"),
        "{refused}"
    );

    kubectl_apply(
        &sim,
        &app(
            "api",
            "  preAuthorizedApplications:\n    - application: client\n      permissions:\n        roles: [read]\n",
        ),
    );
    crate::procs::wait_for("A pre-authorizes B", 60, async || {
        apps.get("api")
            .await
            .ok()
            .and_then(|o| o.status)
            .and_then(|s| s.pre_authorized_apps)
            .is_some_and(|p| {
                p.assigned.iter().flatten().any(|a| {
                    a.access_policy_rule
                        .as_ref()
                        .is_some_and(|r| r.application == "client")
                })
            })
    })
    .await;
    let t = token().await.expect("a token once A pre-authorizes B");
    let claims = portvakt_sim::graph::app::claims(t["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["aud"], api_id.as_str());
    let mut roles = strings(&claims["roles"]);
    roles.sort();
    assert_eq!(roles, vec!["access_as_application", "read"], "{claims}");
    let a = secrets.get("api-azure").await.unwrap();
    let pre: Vec<Value> = serde_json::from_str(&data(&a, "AZURE_APP_PRE_AUTHORIZED_APPS")).unwrap();
    assert!(
        pre.iter().any(|p| p["name"] == "portvakt-sim:team:client"),
        "{pre:?}"
    );
    drop(op);
}
