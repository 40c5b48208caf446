//! `portvakt demo`: the embedded world end to end, for a newcomer after a fresh clone.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use portvakt::clock::Clock;
use portvakt::sim::kube::ApiServer;
use serde_json::Value;

use super::manifests;

/// The examples shipped in examples/, built into the binary so the demo runs from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    ("idportenclient.yaml", include_str!("../../examples/idportenclient.yaml")),
    (
        "maskinportenclient-consumer.yaml",
        include_str!("../../examples/maskinportenclient-consumer.yaml"),
    ),
];

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep everything running afterwards and print the kubeconfig path.
    #[arg(long)]
    pub serve: bool,
    /// Apply the manifests in this directory instead of the built-in examples/.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// Where `--serve` writes its kubeconfig.
    #[arg(long, default_value = "portvakt-demo.kubeconfig")]
    pub kubeconfig: PathBuf,
}

pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let server = ApiServer::new(Clock::system());
    let client = server.client();

    println!("== Installing portvakt's CRDs into the embedded API server");
    install_crds(&client).await?;

    let objects = load_examples(args.examples.as_ref())?;
    println!("== Applying {} example resources", objects.len());
    for (origin, obj) in &objects {
        manifests::apply(&client, obj)
            .await
            .with_context(|| format!("{origin} was rejected"))?;
        println!(
            "{}/{} applied ({origin})",
            manifests::kind_of(obj).to_lowercase(),
            manifests::name_of(obj)
        );
    }

    println!();
    for plural in ["idportenclients", "maskinportenclients", "azureadapplications"] {
        if !objects
            .iter()
            .any(|(_, o)| format!("{}s", manifests::kind_of(o).to_lowercase()) == plural)
        {
            continue;
        }
        println!("$ kubectl get {plural} -A");
        let table = get_table(&client, &format!("/apis/nais.io/v1/{plural}")).await?;
        print!("{}", super::table::render(&table, true));
        println!();
    }

    if args.serve {
        let handle = server
            .serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("listening on 127.0.0.1")?;
        super::sim::write_kubeconfig(&args.kubeconfig, &handle.url())?;
        println!("Serving on {}; kubeconfig: {}", handle.url(), args.kubeconfig.display());
        println!("Stop with Ctrl-C.");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    Ok(())
}

/// Creates or updates portvakt's CRDs and waits until the server serves them.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crds = portvakt::crd::crds().context("portvakt's own CRDs do not parse")?;
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(manifests::FIELD_MANAGER).force(),
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

fn load_examples(dir: Option<&PathBuf>) -> anyhow::Result<Vec<(String, Value)>> {
    let mut sources: Vec<(String, String)> = Vec::new();
    match dir {
        None => {
            for (name, text) in EXAMPLES {
                sources.push((format!("examples/{name}"), (*text).to_string()));
            }
        }
        Some(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("--examples: cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                sources.push((path.display().to_string(), text));
            }
        }
    }
    let mut objects = Vec::new();
    for (origin, text) in sources {
        for obj in manifests::parse_documents(&text, &origin)? {
            objects.push((origin.clone(), obj));
        }
    }
    if objects.is_empty() {
        bail!("no example resources found");
    }
    Ok(objects)
}

/// GET with kubectl's Accept header, so the server answers a Table with printer columns.
pub async fn get_table(client: &kube::Client, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path)
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .context("building a table request")?;
    let table: Value = client
        .request(request)
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok(table)
}
