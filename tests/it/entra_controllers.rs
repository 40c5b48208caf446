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
    wait_until,
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
    assert_eq!(st.synchronization_tenant.as_deref(), Some(env.graph_sim().tenant_id().as_str()));
    assert_eq!(st.synchronization_secret_name.as_deref(), Some("app-azure"));
    assert!(st.synchronization_secret_rotation_time.is_some());
    assert!(o.meta().finalizers.iter().flatten().any(|f| f == "azure.nais.io/finalizer"));

    // What azurerator puts on every app.
    assert_eq!(app["signInAudience"], "AzureADMyOrg");
    assert_eq!(app["api"]["requestedAccessTokenVersion"], 2);
    assert!(strings(&app["tags"]).contains(&"azurerator_appreg".to_string()));
    let uris = strings(&app["identifierUris"]);
    assert!(uris.contains(&format!("api://{client_id}")), "{uris:?}");
    assert!(uris.contains(&format!("api://{CLUSTER}.{NS}.app")), "{uris:?}");
    assert_eq!(strings(&app["web"]["redirectUris"]), vec!["https://app.example/oauth2/callback"]);
    assert_eq!(app["web"]["logoutUrl"], "https://app.example/oauth2/logout");
    assert_eq!(app["groupMembershipClaims"], "ApplicationGroup");
    let scopes: Vec<String> = app["api"]["oauth2PermissionScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}={}", s["value"].as_str().unwrap(), s["id"].as_str().unwrap()))
        .collect();
    assert!(scopes.contains(&"defaultaccess=00000000-1337-d34d-b33f-000000000000".into()), "{scopes:?}");
    assert!(scopes.contains(&"access_as_application=00000001-abcd-9001-0000-000000000000".into()));
    let pre: Vec<String> = app["api"]["preAuthorizedApplications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["appId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pre, vec![client_id.clone()], "the app pre-authorizes itself");
    let sp = env.graph_sim().service_principal(&client_id).expect("service principal");
    assert!(strings(&sp["tags"]).contains(&"HideApp".to_string()));
    let op_sp = env.graph_sim().operator().service_principal_id;
    assert!(env.graph_sim().owners(app["id"].as_str().unwrap()).contains(&op_sp));
    assert!(env.graph_sim().owners(sp["id"].as_str().unwrap()).contains(&op_sp));
    let graph_sp = env.graph_sim().service_principal(MICROSOFT_GRAPH_APP_ID).unwrap()["id"].clone();
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
    let keys: BTreeSet<&str> = s.data.as_ref().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 16, "{keys:?}");
    assert_eq!(data(&s, "AZURE_APP_CLIENT_ID"), client_id);
    assert_eq!(data(&s, "AZURE_APP_TENANT_ID"), env.graph_sim().tenant_id());
    assert_eq!(data(&s, "AZURE_OPENID_CONFIG_TOKEN_ENDPOINT"), env.entra_world().urls.token_endpoint);
    let pre: Value = serde_json::from_str(&data(&s, "AZURE_APP_PRE_AUTHORIZED_APPS")).unwrap();
    assert_eq!(pre, json!([{"name": dn(NS, "app"), "clientId": client_id}]));
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!((labels["app"].as_str(), labels["type"].as_str()), ("app", "azurerator.nais.io"));
    assert_eq!(s.metadata.annotations.clone().unwrap()["reloader.stakater.com/match"], "true");
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
    assert_eq!(graph_calls_since(env.graph_sim(), mark), Vec::<String>::new());
    assert_eq!(Counters::get(&op.counters.secret_writes), secret_writes);
    assert_eq!(Counters::get(&op.counters.status_writes), status_writes);

    // A full synchronisation of an unchanged app reads but writes nothing.
    let mark = graph_mark(env.graph_sim());
    env.aad(NS)
        .patch("app", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"azure.nais.io/resync": "true"}}})))
        .await
        .unwrap();
    env.wait_aad(NS, "app", "the resync consumed", |o| {
        o.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key("azure.nais.io/resync"))
    })
    .await;
    let calls = graph_calls_since(env.graph_sim(), mark);
    assert!(!calls.is_empty(), "a resync reads");
    assert_eq!(graph_writes_since(env.graph_sim(), mark), Vec::<String>::new(), "{calls:#?}");
}
