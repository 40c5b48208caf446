//! GitOps health: what kstatus (Flux, `sigs.k8s.io/cli-utils`, built from Go modules) and Argo CD
//! (our `deploy/argocd-health.lua`, run as Argo CD runs it: gopher-lua, Lua 5.1, no string
//! library) make of the status objects real passes write, for each kind, through create, update,
//! failure and recovery; and that the conditions they read cost no extra write.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use portvakt::conditions;
use portvakt::controller::Counters;
use portvakt::crd::{IDPortenClient, MaskinportenClient};
use portvakt_sim::kube::FaultRule;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::real_cluster::test_tools;
use crate::support::{Env, NS, SIM_SCOPE, env};

/// kstatus' and Argo CD's verdicts on one object.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    kstatus: String,
    argocd: String,
    kstatus_message: String,
    argocd_message: String,
}

struct Tools {
    kstatus: PathBuf,
    argolua: PathBuf,
}

fn tools() -> Option<Tools> {
    let found = test_tools(&["PORTVAKT_KSTATUS", "PORTVAKT_ARGOLUA"])?;
    Some(Tools {
        kstatus: found[0].clone(),
        argolua: found[1].clone(),
    })
}

fn health_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd-health.lua")
}

/// Runs `tool` with `args`, the object as JSON on stdin; its `{"status","message"}`.
fn run_tool(tool: &Path, args: &[&Path], obj: &Value) -> (String, String) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", tool.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(obj.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{} failed on {obj:#}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    (
        v["status"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn judge(t: &Tools, obj: &Value) -> Verdict {
    let (kstatus, kstatus_message) = run_tool(&t.kstatus, &[], obj);
    let (argocd, argocd_message) = run_tool(&t.argolua, &[&health_script()], obj);
    Verdict {
        kstatus,
        argocd,
        kstatus_message,
        argocd_message,
    }
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == status)
}

/// `Ready` for the object's generation: (status, reason).
fn ready_for_generation(obj: &Value) -> Option<(String, String)> {
    let c = condition(obj, "Ready")?;
    (c["observedGeneration"] == obj["metadata"]["generation"]).then(|| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
        )
    })
}

/// Polls the object (as an API client sees it) until `f` holds.
async fn wait_obj<K>(api: &Api<K>, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = match api.get_opt(name).await.expect("get") {
            Some(o) => serde_json::to_value(&o).expect("JSON"),
            None => Value::Null,
        };
        if f(&last) {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {last:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn patch_spec<K>(api: &Api<K>, name: &str, spec: Value)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("patch spec");
}

/// One kind through create (in progress, then Ready), a steady pass, an update that fails at
/// Digdir and recovers, a Secret in the way (stalled) and the fix.
async fn lifecycle<K>(t: &Tools, env: &mut Env, kind: &str, spec: Value, update: Value)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = "gitops";
    let api: Api<K> = Api::namespaced(env.client.clone(), NS);
    // Digdir is slow to create: the pass has written its first status and waits.
    env.sim.inject_fault(
        FaultRule::latency(Duration::from_secs(3))
            .method("POST")
            .path("/api/v1/clients")
            .once(),
    );
    let op = env.run();
    let obj: K = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .expect("resource");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");

    let creating = wait_obj(&api, name, "the first status", |o| {
        o["status"]["observedGeneration"] == 1 && condition_is(o, "Reconciling", "True")
    })
    .await;
    let v = judge(t, &creating);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("InProgress", "Progressing"),
        "while creating: {v:?} {creating:#}"
    );

    let ready = wait_obj(&api, name, "Ready", |o| {
        ready_for_generation(o).is_some_and(|(s, _)| s == "True")
    })
    .await;
    assert!(condition(&ready, "Reconciling").is_none() && condition(&ready, "Stalled").is_none());
    let v = judge(t, &ready);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Current", "Healthy"),
        "Ready: {v:?} {ready:#}"
    );

    // The steady state writes nothing, Reconciling and Stalled included.
    let writes = Counters::get(&op.counters.status_writes);
    env.pass(&api, &op, name).await;
    assert_eq!(
        Counters::get(&op.counters.status_writes),
        writes,
        "no status write in the steady state"
    );

    // An update Digdir refuses for a while: a retry is pending.
    env.sim.inject_fault(
        FaultRule::status(500)
            .method("PUT")
            .path("/api/v1/clients/"),
    );
    patch_spec(&api, name, update).await;
    let failing = wait_obj(
        &api,
        name,
        "Ready=False DigdirError for generation 2",
        |o| ready_for_generation(o).is_some_and(|(s, r)| s == "False" && r == "DigdirError"),
    )
    .await;
    assert_eq!(failing["status"]["observedGeneration"], 2);
    let reconciling = condition(&failing, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling["status"], "True");
    assert_eq!(reconciling["reason"], "DigdirError");
    assert!(condition(&failing, "Stalled").is_none());
    let v = judge(t, &failing);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("InProgress", "Progressing"),
        "a retry pending: {v:?} {failing:#}"
    );
    assert!(
        v.kstatus_message.contains("500") && v.argocd_message.contains("500"),
        "both say why: {v:?}"
    );

    env.sim.clear_faults();
    let recovered = wait_obj(&api, name, "Ready again after the outage", |o| {
        ready_for_generation(o).is_some_and(|(s, _)| s == "True")
    })
    .await;
    let v = judge(t, &recovered);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Current", "Healthy"),
        "recovered: {v:?}"
    );

    // A Secret someone else owns is in the way: nothing changes until someone acts.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "theirs", "namespace": NS}, "stringData": {"A": "b"}
    }))
    .expect("secret");
    env.secrets()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create the foreign Secret");
    patch_spec(&api, name, json!({"secretName": "theirs"})).await;
    let stalled = wait_obj(&api, name, "Stalled", |o| {
        ready_for_generation(o).is_some_and(|(s, r)| s == "False" && r == "SecretNotOwned")
    })
    .await;
    let c = condition(&stalled, "Stalled").expect("Stalled");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("True"), Some("SecretNotOwned"))
    );
    assert!(condition(&stalled, "Reconciling").is_none());
    let v = judge(t, &stalled);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Failed", "Degraded"),
        "stalled: {v:?} {stalled:#}"
    );
    assert!(
        v.kstatus_message.contains("theirs") && v.argocd_message.contains("theirs"),
        "both name the Secret: {v:?}"
    );

    patch_spec(&api, name, json!({"secretName": "gitops-own"})).await;
    let fixed = wait_obj(&api, name, "Ready after the fix", |o| {
        ready_for_generation(o).is_some_and(|(s, _)| s == "True")
    })
    .await;
    assert!(condition(&fixed, "Stalled").is_none() && condition(&fixed, "Reconciling").is_none());
    let v = judge(t, &fixed);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Current", "Healthy"),
        "fixed: {v:?}"
    );
}

#[tokio::test]
async fn idporten_client_health_through_create_update_failure_and_recovery() {
    let Some(t) = tools() else { return };
    let mut env = env().await;
    lifecycle::<IDPortenClient>(
        &t,
        &mut env,
        "IDPortenClient",
        json!({"secretName": "gitops-1", "redirectURIs": ["https://app.example.com/oauth2/callback"]}),
        json!({"clientName": "Renamed app"}),
    )
    .await;
}

#[tokio::test]
async fn maskinporten_client_health_through_create_update_failure_and_recovery() {
    let Some(t) = tools() else { return };
    let mut env = env().await;
    lifecycle::<MaskinportenClient>(
        &t,
        &mut env,
        "MaskinportenClient",
        json!({"secretName": "gitops-1", "scopes": {"consumes": [{"name": SIM_SCOPE}]}}),
        json!({"clientName": "Renamed app"}),
    )
    .await;
}

/// A spec the API server refuses a Secret for is stalled from the first pass on (kstatus would
/// otherwise wait for the deploy's timeout).
#[tokio::test]
async fn an_invalid_spec_is_failed_at_once() {
    let Some(t) = tools() else { return };
    let mut env = env().await;
    env.run();
    env.create_idp(
        "bad",
        json!({"secretName": "Bad_Name", "redirectURIs": ["https://app.example.com/cb"]}),
    )
    .await;
    let obj = wait_obj(&env.idp(), "bad", "InvalidSpec", |o| {
        ready_for_generation(o).is_some_and(|(s, r)| s == "False" && r == "InvalidSpec")
    })
    .await;
    assert!(conditions::is_stalled_reason("InvalidSpec"));
    let v = judge(&t, &obj);
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Failed", "Degraded"),
        "{v:?}"
    );
    assert!(v.argocd_message.contains("Bad_Name"), "{v:?}");
}

/// The health check for the kind not yet implemented here (AzureAdApplication) reads the same
/// conditions: a status as azurerator left it (no Reconciling/Stalled) and as portvakt writes it.
#[test]
fn the_health_check_reads_azure_statuses_too() {
    let Some(t) = tools() else { return };
    let base = |generation: i64, observed: i64, conds: Value| {
        json!({
            "apiVersion": "nais.io/v1", "kind": "AzureAdApplication",
            "metadata": {"name": "app", "namespace": "team", "generation": generation},
            "status": {"observedGeneration": observed, "conditions": conds,
                       "synchronizationState": "Synchronized"},
        })
    };
    let ready = json!([{"type": "Ready", "status": "True", "reason": "Synchronized",
        "message": "up to date", "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    assert_eq!(judge(&t, &base(3, 3, ready)).argocd, "Healthy");
    let stalled = json!([
        {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.x: bad",
         "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "spec.x: bad",
         "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    let v = judge(&t, &base(3, 3, stalled));
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("Failed", "Degraded")
    );
    let v = judge(&t, &base(4, 3, json!([])));
    assert_eq!(
        (v.kstatus.as_str(), v.argocd.as_str()),
        ("InProgress", "Progressing")
    );
}

/// The ConfigMap snippet shipped in deploy/ carries exactly the script, under each kind's key.
#[test]
fn the_argocd_configmap_snippet_is_the_script() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(health_script()).expect("script");
    let cm: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo.join("deploy/argocd-cm-health.yaml")).expect("snippet"),
    )
    .expect("YAML");
    for kind in ["IDPortenClient", "MaskinportenClient", "AzureAdApplication"] {
        let key = format!("resource.customizations.health.nais.io_{kind}");
        assert_eq!(cm["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
}
