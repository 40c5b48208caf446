//! The embedded Kubernetes API server.

pub mod discovery;
pub mod openapi;
pub mod resource;
pub mod schema;
pub mod table;
