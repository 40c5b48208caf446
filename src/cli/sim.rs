//! `portvakt sim`: the embedded API server on loopback, with a kubeconfig for kubectl.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use portvakt::clock::Clock;
use portvakt::sim::kube::ApiServer;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Address of the Kubernetes API server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", env = "PORTVAKT_SIM_LISTEN")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig that points at the embedded server.
    #[arg(long, default_value = "portvakt-sim.kubeconfig", env = "PORTVAKT_SIM_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Install portvakt's CRDs on start (otherwise `kubectl apply -f crds/` does it).
    #[arg(long)]
    pub install_crds: bool,
}

pub async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen: {} is not a loopback address; the simulator has no authentication and serves only 127.0.0.1/::1",
            args.listen
        );
    }
    let server = ApiServer::new(Clock::system());
    let handle = server
        .serve(args.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", args.listen))?;
    if args.install_crds {
        super::demo::install_crds(&server.client()).await?;
    }
    let url = handle.url();
    write_kubeconfig(&args.kubeconfig, &url)?;
    let path = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());
    println!("Embedded Kubernetes API server listening on {url}");
    println!("kubeconfig: {}", path.display());
    println!();
    println!("Use it with:");
    println!("  export KUBECONFIG={}", path.display());
    println!("  kubectl apply -f crds/");
    println!("  kubectl apply -f examples/");
    println!("  kubectl get idportenclients,maskinportenclients -A");
    println!();
    println!("Stop with Ctrl-C.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    drop(handle);
    Ok(())
}

/// Writes the kubeconfig atomically, so a reader never sees half a file.
pub fn write_kubeconfig(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let yaml = ApiServer::kubeconfig_yaml(url, "default");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).with_context(|| format!("--kubeconfig: writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("--kubeconfig: writing {}", path.display()))?;
    Ok(())
}
