//! The binary's commands that start the embedded world: `portvakt sim` and `portvakt demo`.

mod admin_key;
#[cfg(feature = "sim")]
mod bench;
#[cfg(feature = "sim")]
mod bench_entra;
#[cfg(feature = "sim")]
mod demo;
mod health;
#[cfg(feature = "sim")]
mod manifests;
mod run;
#[cfg(feature = "sim")]
mod sim;
#[cfg(feature = "sim")]
mod table;

#[cfg(feature = "sim")]
pub use bench::{BenchArgs, run_bench};
#[cfg(feature = "sim")]
pub use demo::{DemoArgs, run_demo};
pub use run::{RunArgs, run};
#[cfg(feature = "sim")]
pub use sim::{SimArgs, run_sim};
