//! The portvakt binary: the operator, its simulators and its demo.

use std::path::PathBuf;

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portvakt",
    version,
    about = "OAuth2/OIDC clients in ID-porten, Maskinporten and Entra ID, from nais.io/v1 resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions portvakt owns (exactly what crds/ holds).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Run the embedded Kubernetes API server (and simulators) on loopback until stopped.
    #[cfg(feature = "sim")]
    Sim(cli::SimArgs),
    /// Run the controllers against the cluster of the kubeconfig (or in-cluster) and Digdir.
    Run(Box<cli::RunArgs>),
    /// Start everything embedded, apply examples/, show the result and exit.
    #[cfg(feature = "sim")]
    Demo(cli::DemoArgs),
    /// Benchmark `portvakt run` against `portvakt sim` (N MaskinportenClients, fixed Digdir latency).
    #[cfg(feature = "sim")]
    Bench(cli::BenchArgs),
}

/// Prints a failure as the error and its causes alone (never anyhow's backtrace, which
/// `RUST_BACKTRACE=1` would add: a bad setting is not a crash) and exits 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo's own output is the presentation: its operator logs only warnings unless asked.
    #[cfg(feature = "sim")]
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Bench(_));
    #[cfg(not(feature = "sim"))]
    let quiet = false;
    init_tracing(if quiet { "warn" } else { "warn,portvakt=info" });
    portvakt::install_crypto_provider();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, Command::Run(_)) {
        // The operator's blocking work is key generation (CPU-bound, one per core at a time) plus
        // the odd file read or DNS lookup: a few threads suffice, and each extra thread would
        // bring its own allocator arena.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.max_blocking_threads(cores + 2);
    }
    let runtime = builder.build().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Crds { write: None } => {
                print!("{}", portvakt::crd::crds_yaml());
                Ok(())
            }
            Command::Crds { write: Some(dir) } => {
                for (file, yaml) in portvakt::crd::crd_files() {
                    let path = dir.join(file);
                    std::fs::write(&path, yaml)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(())
            }
            Command::Run(args) => cli::run(*args).await,
            #[cfg(feature = "sim")]
            Command::Sim(args) => cli::run_sim(args).await,
            #[cfg(feature = "sim")]
            Command::Demo(args) => cli::run_demo(args).await,
            #[cfg(feature = "sim")]
            Command::Bench(args) => cli::run_bench(args).await,
        }
    })
}

/// Logs go to stderr. The level is `PORTVAKT_LOG`, else `RUST_LOG` (tracing's filter syntax, e.g.
/// `info` or `warn,portvakt=debug`), else `warn,portvakt=info` (`warn` for the demo). The format is
/// `PORTVAKT_LOG_FORMAT`:
/// `text` (colour only on a terminal) or `json` (one object a line, with the resource's kind,
/// namespace and name on every line of a pass); the default is text on a terminal, JSON otherwise.
fn init_tracing(default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PORTVAKT_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("PORTVAKT_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        Ok(other) => {
            eprintln!("PORTVAKT_LOG_FORMAT: {other:?} is not `text` or `json`; using text");
            false
        }
        Err(_) => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .init();
    } else {
        builder.with_ansi(terminal).init();
    }
}
