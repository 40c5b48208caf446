//! The embedded Kubernetes API server.
//!
//! [`ApiServer`] serves the Kubernetes API from memory: an axum router used
//! in-process by kube's `Client` (tests), or on a loopback port (`portvakt sim`,
//! `portvakt demo`, the real kubectl). See `store` for the write semantics, `watch`
//! for watch streams, `apply` for server-side apply, `protobuf` for the protobuf wire format of
//! built-in types, `table` and `printers` for `kubectl get` output, [`crate::fault`] for the shared
//! fault and journal layer. `tests/it/differential.rs` measures it against a real kube-apiserver;
//! what differs on purpose is listed in the README ("The embedded API server: known limits").

pub mod apply;
pub mod discovery;
pub mod error;
pub mod events;
pub mod fields;
pub mod handlers;
pub mod managed;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod registry;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod types;
pub mod watch;

pub use crate::ServeHandle;
pub use crate::fault::{CallRecord, FaultAction, FaultRule, FaultTimes};
pub use error::{ApiError, StatusCause};
pub use resource::{PrinterColumn, ResourceInfo};
pub use server::ApiServer;
