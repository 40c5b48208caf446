//! The binary's commands that start the embedded world: `portvakt sim` and `portvakt demo`.

mod demo;
mod manifests;
mod sim;
mod table;

pub use demo::{DemoArgs, run_demo};
pub use sim::{SimArgs, run_sim};
