//! Conformance tests of the embedded Kubernetes API server, driven through kube's own
//! client and runtime (in-process, plus a loopback port).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use portvakt::clock::Clock;
use portvakt_sim::kube::{ApiServer, FaultRule};
use serde_json::{Value, json};
use tower::ServiceExt;

fn server() -> (ApiServer, Client) {
    let server = ApiServer::new(Clock::system());
    let client = server.client();
    (server, client)
}

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request through the router: (status, headers, JSON body or Null).
async fn raw(
    server: &ApiServer,
    method: &str,
    uri: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> (u16, http::HeaderMap, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.into()))
        .unwrap();
    let resp = server.router().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.no"},
        "spec": {"group": "example.no", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 0, "maximum": 10},
                        "color": {"type": "string", "default": "blue"},
                        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string"}, "value": {"type": "string"}}}},
                        "tags": {"type": "array", "items": {"type": "string"}}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}, "observedGeneration": {"type": "integer"},
                        "conditions": {"type": "array", "items": {"type": "object", "properties": {
                            "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}}}}}}}]}
    })
}

fn widget_ar() -> ApiResource {
    ApiResource {
        group: "example.no".into(),
        version: "v1".into(),
        api_version: "example.no/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

async fn install_widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(widget_crd()).unwrap(),
    )
    .await
    .unwrap();
    Api::namespaced_with(client.clone(), "default", &widget_ar())
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.no/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_not_found() {
    let (server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let created = api
        .create(&PostParams::default(), &cm("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(meta.generation.is_none(), "ConfigMaps carry no generation");

    let (code, reason, _) = api_err(
        api.create(&PostParams::default(), &cm("a", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv2: u64 = updated.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1, "one global, increasing resourceVersion");
    stale.data = Some(BTreeMap::from([("k".to_string(), "v3".to_string())]));
    let (code, reason, msg) = api_err(
        api.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{msg}");

    // generateName
    let mut gen_ = cm("", &[], &[]);
    gen_.metadata.name = None;
    gen_.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &gen_).await.unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);

    // 404 as a proper Status
    let (status, _, body) = raw(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps/missing",
        "",
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["details"]["name"], "missing");
    assert_eq!(body["details"]["kind"], "configmaps");
    assert!(api.get_opt("missing").await.unwrap().is_none());

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert!(
        server
            .get_object("v1", "ConfigMap", Some("default"), "a")
            .is_none()
    );
}

#[tokio::test]
async fn list_with_selectors_and_pagination() {
    let (_server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (i, (app, tier)) in [
        ("a", "web"),
        ("a", "db"),
        ("b", "web"),
        ("c", ""),
        ("b", "db"),
    ]
    .iter()
    .enumerate()
    {
        let mut labels = vec![("app", *app)];
        if !tier.is_empty() {
            labels.push(("tier", *tier));
        }
        api.create(&PostParams::default(), &cm(&format!("cm{i}"), &labels, &[]))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    for (sel, want) in [
        ("app=a", vec!["cm0", "cm1"]),
        ("app==b,tier=db", vec!["cm4"]),
        ("app!=a", vec!["cm2", "cm3", "cm4"]),
        ("app in (a,c)", vec!["cm0", "cm1", "cm3"]),
        ("app notin (a,c)", vec!["cm2", "cm4"]),
        ("tier", vec!["cm0", "cm1", "cm2", "cm4"]),
        ("!tier", vec!["cm3"]),
    ] {
        let got = names(api.list(&ListParams::default().labels(sel)).await.unwrap());
        assert_eq!(got, want, "selector {sel}");
    }
    let got = names(
        api.list(&ListParams::default().fields("metadata.name=cm2"))
            .await
            .unwrap(),
    );
    assert_eq!(got, vec!["cm2"]);
    let got = names(
        api.list(&ListParams::default().fields("metadata.name!=cm2,metadata.namespace=default"))
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 4);

    // limit + continue
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.metadata.resource_version.is_some());
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, vec!["cm0", "cm1", "cm2", "cm3", "cm4"]);

    // resourceVersion=0 (any semantic) and across namespaces
    let all: Api<ConfigMap> = Api::all(client);
    let l = all.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(l.items.len(), 5);
}

#[tokio::test]
async fn watch_resume_bookmarks_timeout_and_410() {
    let (server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let first = api
        .create(&PostParams::default(), &cm("w0", &[("app", "x")], &[]))
        .await
        .unwrap();
    let rv = first.resource_version().unwrap();
    api.create(&PostParams::default(), &cm("w1", &[("app", "x")], &[]))
        .await
        .unwrap();
    api.patch(
        "w0",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await
    .unwrap();
    // Leaves the selector: seen as DELETED by a watcher of app=x.
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();

    let wp = WatchParams::default().labels("app=x").timeout(1);
    let events: Vec<_> = api
        .watch(&wp, &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            WatchEvent::Bookmark(_) => "BOOKMARK".to_string(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["ADDED w1", "MODIFIED w0", "DELETED w1", "BOOKMARK"],
        "stream ended cleanly after timeoutSeconds with a bookmark"
    );

    // From "0": the current state as ADDED.
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(e, WatchEvent::Added(_))));

    // Too old → 410 Expired ERROR event.
    server.set_watch_history(2);
    for i in 0..5 {
        api.patch(
            "w0",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    match events.first() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_watcher_resumes_and_relists_after_410() {
    let (server, client) = server();
    server.set_bookmark_interval(Duration::from_millis(200));
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("before", &[], &[]))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let stream = watcher(api.clone(), watcher::Config::default().timeout(30))
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    let has = |name: &str| reader.state().iter().any(|c| c.name_any() == name);
    eventually("initial list", || has("before")).await;

    // Dropped watches resume from the last resourceVersion, without a re-list.
    server.clear_journal();
    server.drop_watches();
    api.create(&PostParams::default(), &cm("after-drop", &[], &[]))
        .await
        .unwrap();
    eventually("after-drop", || has("after-drop")).await;
    let j = server.journal();
    assert!(j.iter().any(|e| {
        e.query_param("watch").as_deref() == Some("true")
            && e.query_param("resourceVersion")
                .is_some_and(|rv| rv != "0" && !rv.is_empty())
    }));

    // A forced 410 makes the watcher re-list, and it still sees later changes.
    server.clear_journal();
    server.force_watch_expired(1);
    server.drop_watches();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.create(&PostParams::default(), &cm("after-410", &[], &[]))
        .await
        .unwrap();
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    eventually("after-410 and before gone", || {
        has("after-410") && !has("before")
    })
    .await;
    let j = server.journal();
    let relisted = j.iter().any(|e| {
        e.method == "GET"
            && e.path == "/api/v1/namespaces/default/configmaps"
            && e.query_param("watch").is_none()
    });
    assert!(relisted, "watcher re-listed after 410: {j:#?}");
    task.abort();
}

#[tokio::test]
async fn finalizer_round_trip_with_kube_helper() {
    let (server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let obj = api
        .create(&PostParams::default(), &cm("fin", &[], &[]))
        .await
        .unwrap();
    let cleaned = Arc::new(AtomicBool::new(false));
    let run = |obj: ConfigMap| {
        let api = api.clone();
        let cleaned = cleaned.clone();
        async move {
            finalizer(&api, "example.no/cleanup", Arc::new(obj), |ev| async move {
                if let FinalizerEvent::Cleanup(_) = ev {
                    cleaned.store(true, Ordering::SeqCst);
                }
                Ok::<_, std::io::Error>(Action::await_change())
            })
            .await
        }
    };
    run(obj).await.unwrap();
    let obj = api.get("fin").await.unwrap();
    assert_eq!(obj.finalizers(), ["example.no/cleanup"]);
    run(obj).await.unwrap();

    let deleted = api.delete("fin", &DeleteParams::default()).await.unwrap();
    let marked = deleted
        .left()
        .expect("object returned while finalizers remain");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));

    // No new finalizers once deleting.
    let (code, _, _) = api_err(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.no/cleanup", "x/y"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422);

    let obj = api.get("fin").await.unwrap();
    run(obj).await.unwrap();
    assert!(cleaned.load(Ordering::SeqCst));
    assert!(
        api.get_opt("fin").await.unwrap().is_none(),
        "removing the last finalizer deletes"
    );
    assert!(
        server
            .get_object("v1", "configmaps", Some("default"), "fin")
            .is_none()
    );
}

#[tokio::test]
async fn server_side_apply_managers_conflicts_and_removal() {
    let (_server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let apply = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let a = PatchParams::apply("mgr-a");
    let b = PatchParams::apply("mgr-b");
    api.patch("ssa", &a, &Patch::Apply(apply(json!({"x": "1", "y": "1"}))))
        .await
        .unwrap();
    // mgr-a stops sending y: removed.
    let o = api
        .patch("ssa", &a, &Patch::Apply(apply(json!({"x": "1"}))))
        .await
        .unwrap();
    assert_eq!(
        o.data.unwrap(),
        BTreeMap::from([("x".to_string(), "1".to_string())])
    );
    // mgr-b sets x differently: conflict.
    let (code, reason, msg) = api_err(
        api.patch("ssa", &b, &Patch::Apply(apply(json!({"x": "2"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("mgr-a") && msg.contains(".data.x"), "{msg}");
    // Same value is shared, no conflict; then mgr-a dropping x keeps it (mgr-b owns it too).
    api.patch("ssa", &b, &Patch::Apply(apply(json!({"x": "1", "z": "b"}))))
        .await
        .unwrap();
    let o = api
        .patch("ssa", &a, &Patch::Apply(apply(json!({"w": "a"}))))
        .await
        .unwrap();
    let data = o.data.clone().unwrap();
    assert_eq!(data.get("x").map(String::as_str), Some("1"));
    assert_eq!(data.get("w").map(String::as_str), Some("a"));
    // force takes ownership.
    let o = api
        .patch(
            "ssa",
            &a.clone().force(),
            &Patch::Apply(apply(json!({"w": "a", "z": "forced"}))),
        )
        .await
        .unwrap();
    assert_eq!(o.data.unwrap().get("z").map(String::as_str), Some("forced"));
    let managers: Vec<String> = o
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"mgr-a".to_string()) && managers.contains(&"mgr-b".to_string()));
    // mgr-b no longer owns z: omitting it does not remove mgr-a's z.
    let o = api
        .patch("ssa", &b, &Patch::Apply(apply(json!({"x": "1"}))))
        .await
        .unwrap();
    assert_eq!(o.data.unwrap().get("z").map(String::as_str), Some("forced"));

    // fieldManager is required for apply.
    let (code, _, _) = api_err(
        api.patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Apply(apply(json!({}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422);

    // List-map semantics from the schema: two managers own different items.
    let widgets = install_widgets(&client).await;
    let w = |items: Value| json!({"apiVersion": "example.no/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "items": items}});
    widgets
        .patch(
            "w",
            &a,
            &Patch::Apply(w(json!([{"name": "a1", "value": "1"}]))),
        )
        .await
        .unwrap();
    widgets
        .patch(
            "w",
            &b,
            &Patch::Apply(w(json!([{"name": "b1", "value": "2"}]))),
        )
        .await
        .unwrap();
    let item_names = |o: &DynamicObject| -> Vec<String> {
        o.data["spec"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        item_names(&widgets.get("w").await.unwrap()),
        vec!["a1", "b1"]
    );
    widgets
        .patch("w", &a, &Patch::Apply(w(json!([]))))
        .await
        .unwrap();
    assert_eq!(
        item_names(&widgets.get("w").await.unwrap()),
        vec!["b1"],
        "mgr-a's item removed, mgr-b's kept"
    );
    // Apply to the status subresource with conditions keyed by type.
    let st = json!({"apiVersion": "example.no/v1", "kind": "Widget", "metadata": {"name": "w"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let o = widgets
        .patch_status("w", &PatchParams::apply("ctrl").force(), &Patch::Apply(st))
        .await
        .unwrap();
    assert_eq!(o.data["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(o.data["spec"]["size"], 1);
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (_server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(
        &PostParams::default(),
        &cm("p", &[], &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();
    let o = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data.unwrap(),
        BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );

    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "20"}
    ]))
    .unwrap();
    let o = api
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ok))
        .await
        .unwrap();
    assert_eq!(o.data.unwrap()["b"], "20");
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "nope"},
        {"op": "replace", "path": "/data/b", "value": "30"}
    ]))
    .unwrap();
    let (code, _, _) = api_err(
        api.patch("p", &PatchParams::default(), &Patch::Json::<()>(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "failed test op");
    assert_eq!(
        api.get("p").await.unwrap().data.unwrap()["b"],
        "20",
        "nothing stored"
    );

    // Strategic merge on a built-in merges containers by name.
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let d = deploys
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}})),
        )
        .await
        .unwrap();
    let images: Vec<String> = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| c.image.clone().unwrap())
        .collect();
    assert_eq!(images, vec!["a:1", "b:2"]);
    assert_eq!(d.metadata.generation, Some(2));

    // Strategic merge on a custom resource: 415.
    let widgets = install_widgets(&client).await;
    widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    let (code, reason, _) = api_err(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    // Patching a missing object: 404.
    let (code, _, _) = api_err(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn crd_registration_status_split_generation_and_validation() {
    let (server, client) = server();
    let widgets = install_widgets(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.no").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "NamesAccepted" && c.status == "True")
    );

    let w = widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(w.data["spec"]["color"], "blue", "schema default applied");

    // Main endpoint ignores status; generation bumps on spec only.
    let mut w2 = w.clone();
    w2.data["status"] = json!({"phase": "Sneaky"});
    w2.data["spec"]["size"] = json!(2);
    let w2 = widgets
        .replace("w", &PostParams::default(), &w2)
        .await
        .unwrap();
    assert!(
        w2.data
            .get("status")
            .is_none_or(|s| s.get("phase").is_none())
    );
    assert_eq!(w2.metadata.generation, Some(2));
    // Status endpoint ignores everything else; no generation bump.
    let w3 = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"size": 9}, "status": {"phase": "Ready", "observedGeneration": 2}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(w3.data["status"]["phase"], "Ready");
    assert_eq!(w3.data["spec"]["size"], 2);
    assert_eq!(w3.metadata.generation, Some(2));
    // Metadata-only changes do not bump generation.
    let w4 = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(w4.metadata.generation, Some(2));

    // Schema validation: 422 Invalid naming the field.
    let big = json!({"apiVersion": "example.no/v1", "kind": "Widget", "metadata": {"name": "big"}, "spec": {"size": 11}});
    let (status, _, body) = raw(
        &server,
        "POST",
        "/apis/example.no/v1/namespaces/default/widgets",
        "application/json",
        serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["kind"], "Widget");
    assert_eq!(body["details"]["group"], "example.no");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Widget.example.no \"big\" is invalid"),
        "{body}"
    );
    assert!(
        body["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"].as_str().unwrap_or("").contains("spec.size")),
        "{body}"
    );
    // Unknown fields: Strict rejects, Warn warns.
    let unknown = serde_json::to_vec(
        &json!({"apiVersion": "example.no/v1", "kind": "Widget", "metadata": {"name": "u"}, "spec": {"size": 1, "bogus": 1}}),
    )
    .unwrap();
    let uri = "/apis/example.no/v1/namespaces/default/widgets";
    let (status, _, body) = raw(
        &server,
        "POST",
        &format!("{uri}?fieldValidation=Strict"),
        "application/json",
        unknown.clone(),
    )
    .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(
        body["message"].as_str().unwrap().contains("spec.bogus"),
        "{body}"
    );
    assert!(
        server
            .get_object("example.no/v1", "widgets", Some("default"), "u")
            .is_none()
    );
    let (status, headers, body) = raw(
        &server,
        "POST",
        &format!("{uri}?fieldValidation=Warn"),
        "application/json",
        unknown,
    )
    .await;
    assert_eq!(status, 201);
    assert!(body["spec"].get("bogus").is_none(), "pruned");
    let warning = headers.get("warning").unwrap().to_str().unwrap();
    assert!(
        warning.starts_with("299 - ") && warning.contains("spec.bogus"),
        "{warning}"
    );

    // Deleting the CRD removes its objects and its API.
    crds.delete("widgets.example.no", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        server
            .list_objects("example.no/v1", "widgets", None)
            .is_empty()
    );
    let (status, _, _) = raw(&server, "GET", uri, "", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn garbage_collection_cascades_and_orphans() {
    let (server, client) = server();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let owner_ref = |o: &ConfigMap| OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: o.name_any(),
        uid: o.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let root = cms
        .create(&PostParams::default(), &cm("root", &[], &[]))
        .await
        .unwrap();
    let mut mid = cm("mid", &[], &[]);
    mid.metadata.owner_references = Some(vec![owner_ref(&root)]);
    let mid = cms.create(&PostParams::default(), &mid).await.unwrap();
    let mut leaf = Secret::default();
    leaf.metadata.name = Some("leaf".into());
    leaf.metadata.owner_references = Some(vec![owner_ref(&mid)]);
    secrets.create(&PostParams::default(), &leaf).await.unwrap();

    cms.delete("root", &DeleteParams::background())
        .await
        .unwrap();
    eventually("cascade", || {
        server
            .get_object("v1", "configmaps", Some("default"), "mid")
            .is_none()
            && server
                .get_object("v1", "secrets", Some("default"), "leaf")
                .is_none()
    })
    .await;

    // Orphan keeps the dependent and drops the reference.
    let root = cms
        .create(&PostParams::default(), &cm("root2", &[], &[]))
        .await
        .unwrap();
    let mut dep = cm("dep", &[], &[]);
    dep.metadata.owner_references = Some(vec![owner_ref(&root)]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.delete("root2", &DeleteParams::orphan()).await.unwrap();
    let dep = cms.get("dep").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn namespace_deletion_and_terminating_namespace() {
    let (server, client) = server();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("plain", &[], &[]))
        .await
        .unwrap();
    let mut held = cm("held", &[], &[]);
    held.metadata.finalizers = Some(vec!["example.no/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(cms.get_opt("plain").await.unwrap().is_none());
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    let late = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}});
    let (status, _, body) = raw(
        &server,
        "POST",
        "/api/v1/namespaces/doomed/configmaps",
        "application/json",
        serde_json::to_vec(&late).unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("because it is being terminated")
    );

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("namespace gone", || {
        server
            .get_object("v1", "namespaces", None, "doomed")
            .is_none()
    })
    .await;

    // Creating into a missing namespace: 404 for the namespace.
    let ghost: Api<ConfigMap> = Api::namespaced(client, "ghost");
    let (code, reason, msg) = api_err(
        ghost
            .create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert!(msg.contains("namespaces \"ghost\" not found"), "{msg}");
}

#[tokio::test]
async fn secrets_string_data_and_immutability() {
    let (server, client) = server();
    let api: Api<Secret> = Api::default_namespaced(client);
    let s: Secret = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.string_data.is_none(), "stringData never returned");
    let data = created.data.unwrap();
    assert_eq!(data["password"].0, b"hunter2");
    assert_eq!(data["user"].0, b"admin");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(
        server
            .get_object("v1", "Secret", Some("default"), "s")
            .unwrap()
            .get("stringData")
            .is_none()
    );

    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"k": "not base64!"}});
    let (status, _, body) = raw(
        &server,
        "POST",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    // Not base64: the body cannot be decoded, a 400 (as kube-apiserver answers).
    assert_eq!(status, 400, "{body}");
    assert!(
        server
            .get_object("v1", "Secret", Some("default"), "bad")
            .is_none()
    );

    let (code, _, _) = api_err(
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"type": "kubernetes.io/tls"})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422, "type is immutable");

    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"immutable": true})),
    )
    .await
    .unwrap();
    let (code, _, _) = api_err(
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "new"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422, "immutable data");
    // Metadata may still change.
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
}

/// The ConfigMap `default/target` the event tests write events about.
async fn event_target(client: &Client) -> ConfigMap {
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("target", &[], &[]))
        .await
        .unwrap()
}

#[tokio::test]
async fn events_are_served_as_core_v1_with_involved_object_selectors() {
    let (_server, client) = server();
    let target = event_target(&client).await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "portvakt-test".into(),
            instance: Some("pod-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&ev, &target.object_ref(&()))
        .await
        .unwrap();
    // A repeat is sent as a merge patch with a series.
    recorder
        .publish(&ev, &target.object_ref(&()))
        .await
        .unwrap();

    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    let sel = format!(
        "involvedObject.kind=ConfigMap,involvedObject.name=target,involvedObject.namespace=default,involvedObject.uid={}",
        target.uid().unwrap()
    );
    let list = core
        .list(&ListParams::default().fields(&sel))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.message.as_deref(), Some("all good"));
    assert_eq!(e.reason.as_deref(), Some("Synced"));
    // events.k8s.io's reportingController is core v1's reportingComponent (no source is made up,
    // as kube-apiserver converts it).
    assert_eq!(e.reporting_component.as_deref(), Some("portvakt-test"));
    assert_eq!(e.involved_object.name.as_deref(), Some("target"));
    assert!(e.series.is_some() || e.count.unwrap_or(0) >= 2);
    let none = core
        .list(&ListParams::default().fields("involvedObject.name=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // The same object through events.k8s.io/v1.
    let new_api: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let evs = new_api.list(&ListParams::default()).await.unwrap();
    assert_eq!(evs.items.len(), 1);
    assert_eq!(evs.items[0].note.as_deref(), Some("all good"));
    assert_eq!(
        evs.items[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("target")
    );
}

/// portvakt's own event writer: a repeat within the window patches the first event's series
/// (count 2, then 3); another action is an event of its own; a repeat whose event is gone (deleted,
/// as the API server's TTL does) is written anew.
#[tokio::test]
async fn the_event_writer_folds_repeats_into_a_series() {
    use portvakt::controller::events::{Event as PvEvent, EventWriter};
    let (_server, client) = server();
    let target = event_target(&client).await;
    let writer = EventWriter::new(client.clone(), "portvakt", Some("pod-1".into()));
    let reference = target.object_ref(&());
    let ev = |action: &'static str| PvEvent {
        type_: EventType::Normal,
        reason: "Synchronized",
        action,
        note: format!("note of {action}"),
    };
    for _ in 0..3 {
        writer.publish(&ev("a"), &reference).await.unwrap();
    }
    writer.publish(&ev("b"), &reference).await.unwrap();
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let mut evs = api.list(&ListParams::default()).await.unwrap().items;
    evs.sort_by_key(|e| e.action.clone());
    assert_eq!(evs.len(), 2, "one event per action");
    assert_eq!(evs[0].action.as_deref(), Some("a"));
    assert_eq!(evs[0].series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(evs[0].reporting_controller.as_deref(), Some("portvakt"));
    assert_eq!(evs[0].reporting_instance.as_deref(), Some("pod-1"));
    assert_eq!(evs[0].note.as_deref(), Some("note of a"));
    assert_eq!(evs[1].series, None);
    assert_eq!(writer.remembered(), 2);

    api.delete(
        evs[0].metadata.name.as_deref().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    writer.publish(&ev("a"), &reference).await.unwrap();
    let evs = api.list(&ListParams::default()).await.unwrap().items;
    let a: Vec<_> = evs
        .iter()
        .filter(|e| e.action.as_deref() == Some("a"))
        .collect();
    assert_eq!(a.len(), 1, "written anew");
    assert_eq!(a[0].series, None);
}

#[tokio::test]
async fn fault_injection_and_journal() {
    let (server, client) = server();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("f", &[], &[]))
        .await
        .unwrap();
    server.clear_journal();
    server.inject_fault(
        FaultRule::status(500)
            .method("GET")
            .path("/api/v1/namespaces/default/configmaps/f")
            .once(),
    );
    let (code, reason, _) = api_err(api.get("f").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    api.get("f").await.unwrap();
    server.inject_fault(
        FaultRule::status(429)
            .path("/api/v1/namespaces/default/configmaps")
            .count(2),
    );
    assert_eq!(api_err(api.get("f").await.unwrap_err()).0, 429);
    assert_eq!(
        api_err(api.list(&ListParams::default()).await.unwrap_err()).0,
        429
    );
    api.get("f").await.unwrap();
    // Until cleared.
    server.inject_fault(FaultRule::status(503).method("PATCH"));
    for _ in 0..3 {
        let err = api
            .patch("f", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err();
        assert_eq!(api_err(err).0, 503);
    }
    server.clear_faults();
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
    api.patch("f", &PatchParams::apply("me"), &Patch::Apply(cfg))
        .await
        .unwrap();
    // Latency.
    server.inject_fault(FaultRule::latency(Duration::from_millis(300)).once());
    let t = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));

    let j = server.journal();
    let statuses: Vec<u16> = j.iter().map(|e| e.status).collect();
    assert_eq!(&statuses[..5], &[500, 200, 429, 429, 200]);
    let apply = j
        .iter()
        .find(|e| e.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .unwrap();
    assert_eq!(apply.method, "PATCH");
    assert_eq!(apply.query_param("fieldManager").as_deref(), Some("me"));
    assert!(apply.body.as_deref().unwrap().contains("\"a\""));
}

#[tokio::test]
async fn bad_input_gets_proper_statuses_and_stores_nothing() {
    let (server, _client) = server();
    let before = server
        .list_objects("v1", "configmaps", Some("default"))
        .len();
    let cms = "/api/v1/namespaces/default/configmaps";
    let json_ct = "application/json";
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", cms, json_ct, b"{not json", 400, "BadRequest"),
        ("POST", cms, json_ct, b"[1,2]", 400, "BadRequest"),
        (
            "POST",
            cms,
            json_ct,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
        ),
        (
            "POST",
            cms,
            json_ct,
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
        ),
        (
            "POST",
            cms,
            json_ct,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#,
            422,
            "Invalid",
        ),
        (
            "POST",
            cms,
            json_ct,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
            422,
            "Invalid",
        ),
        (
            "POST",
            "/apis/example.no/v1/namespaces/default/gadgets",
            json_ct,
            b"{}",
            404,
            "NotFound",
        ),
        ("GET", "/apis/nope.io/v1", "", b"", 404, "NotFound"),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            b"{}",
            415,
            "UnsupportedMediaType",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x?fieldManager=t",
            "application/apply-patch+yaml",
            b"a: [unclosed",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a+in+b",
            "",
            b"",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?fieldSelector=spec.x%3D1",
            "",
            b"",
            400,
            "BadRequest",
        ),
    ];
    for (method, uri, ct, body, want, reason) in cases {
        let (status, _, resp) = raw(&server, method, uri, ct, body.to_vec()).await;
        assert_eq!(status, want, "{method} {uri}: {resp}");
        assert_eq!(resp["kind"], "Status", "{method} {uri}");
        assert_eq!(resp["reason"], reason, "{method} {uri}: {resp}");
    }
    // Oversized body: 413.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let (status, _, resp) = raw(&server, "POST", cms, json_ct, big).await;
    assert_eq!(status, 413);
    assert_eq!(resp["reason"], "RequestEntityTooLarge");
    assert_eq!(
        server
            .list_objects("v1", "configmaps", Some("default"))
            .len(),
        before
    );

    // Version.
    let (status, _, v) = raw(&server, "GET", "/version", "", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some("33"))
    );
}

#[tokio::test]
async fn loopback_server_with_kubeconfig() {
    let server = ApiServer::new(Clock::system());
    let handle = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let yaml = ApiServer::kubeconfig_yaml(&handle.url(), "default");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let list_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &list_rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("net", &[], &[]))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(o)))) => assert_eq!(o.name_any(), "net"),
        other => panic!("expected ADDED over the socket, got {other:?}"),
    }
    handle.shutdown().await;
}
