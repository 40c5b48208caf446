//! The periodic steady-state pass: every resync period each configured provider compares what it
//! registered with what the resources want and has drift repaired ([`super::Provider::periodic_pass`];
//! the Digdir one is in [`super::digdir_kinds::periodic`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::context::{Context, Counters};

/// Runs every provider's periodic pass every `period` until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, period: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for p in ctx.providers() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = p.periodic_pass(&ctx.shared) => {}
            }
        }
        Counters::inc(&ctx.counters.drift_passes);
    }
}
