//! Simulators of the systems portvakt talks to: an embedded Kubernetes API server
//! and Digdir. Used by the tests, `portvakt sim` and `portvakt demo`.

pub mod digdir;
pub mod fault;
pub mod kube;
mod serve;

pub use serve::{ServeHandle, serve_on};
