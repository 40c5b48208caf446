//! Simulators of the systems portvakt talks to: an embedded Kubernetes API server ([`kube`]),
//! Digdir ([`digdir`]), a Microsoft Entra tenant ([`graph`]: Microsoft Graph and the tenant's token
//! endpoint), and Google Cloud KMS with the metadata server's token endpoint ([`kms`]). Used by the
//! tests, `portvakt sim` and `portvakt demo`; not part of the production image.
//!
//! Shared by every simulator: [`fault`] (fault injection and the call journal, with their `/_sim/`
//! control routes), [`jwt`] (RSA keys, a test CA, JWT and x5c helpers for verifying what clients
//! send), [`serve_on`] (serving on loopback).

pub mod digdir;
pub mod fault;
pub mod graph;
pub mod jwt;
pub mod kms;
pub mod kube;
mod serve;

pub use serve::{ServeHandle, serve_on};
