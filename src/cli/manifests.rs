//! Reading manifests and applying them the way `kubectl apply --server-side` does.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

pub const FIELD_MANAGER: &str = "portvakt-demo";

/// Splits a multi-document YAML stream into JSON objects, skipping empty documents.
pub fn parse_documents(source: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(source).with_context(|| format!("{origin}: not valid YAML"))?;
    let mut objects = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(_) => objects.push(doc),
            other => bail!("{origin}: a document is not a Kubernetes object: {other}"),
        }
    }
    Ok(objects)
}

pub fn namespace_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace").and_then(Value::as_str)
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn kind_of(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// The API resource of a nais.io/v1 (or other simple) kind: plural = lowercase kind + "s".
pub fn api_resource(obj: &Value) -> anyhow::Result<ApiResource> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .context("apiVersion is missing")?;
    let kind = kind_of(obj);
    if kind.is_empty() {
        bail!("kind is missing");
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok(ApiResource::from_gvk_with_plural(
        &gvk,
        &format!("{}s", kind.to_ascii_lowercase()),
    ))
}

pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
    }
    Ok(())
}

/// Server-side applies one namespaced object, creating its namespace first.
pub async fn apply(client: &kube::Client, obj: &Value) -> anyhow::Result<DynamicObject> {
    let resource = api_resource(obj)?;
    let namespace = namespace_of(obj).unwrap_or("default");
    ensure_namespace(client, namespace).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let applied = api
        .patch(
            name_of(obj),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("applying {} {namespace}/{}", kind_of(obj), name_of(obj)))?;
    Ok(applied)
}

/// Creates or updates portvakt's CRDs and waits until the server serves them.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crds = portvakt::crd::crds().context("portvakt's own CRDs do not parse")?;
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .with_context(|| format!("installing CRD {name}"))?;
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let cond = kube::runtime::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(10),
            kube::runtime::wait::await_condition(api.clone(), &name, cond),
        )
        .await
        .with_context(|| format!("CRD {name} was not established within 10s"))??;
    }
    Ok(())
}
