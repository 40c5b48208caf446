//! The binary's commands that start the embedded world: `portvakt sim` and `portvakt demo`.

mod bench;
mod demo;
mod health;
mod manifests;
mod run;
mod sim;
mod table;

pub use bench::{BenchArgs, run_bench};
pub use demo::{DemoArgs, run_demo};
pub use run::{RunArgs, run};
pub use sim::{SimArgs, run_sim};
