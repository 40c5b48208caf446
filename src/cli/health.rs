//! /healthz, /readyz and /metrics (Prometheus text) for `portvakt run`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use portvakt::controller::Context;

pub async fn serve(addr: SocketAddr, ctx: Arc<Context>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(ctx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(local)
}

async fn metrics(State(ctx): State<Arc<Context>>) -> String {
    let c = &ctx.counters;
    let mut out = String::new();
    let counters = [
        ("portvakt_reconciles_total", &c.reconciles),
        ("portvakt_reconcile_failures_total", &c.failures),
        ("portvakt_workload_scans_total", &c.workload_scans),
        ("portvakt_keys_generated_total", &c.keys_generated),
        ("portvakt_secret_writes_total", &c.secret_writes),
        ("portvakt_secret_deletes_total", &c.secret_deletes),
        ("portvakt_jwks_reads_total", &c.jwks_reads),
        ("portvakt_jwks_posts_total", &c.jwks_posts),
        ("portvakt_client_creates_total", &c.client_creates),
        ("portvakt_client_updates_total", &c.client_updates),
        ("portvakt_client_deletes_total", &c.client_deletes),
    ];
    for (name, value) in counters {
        let _ = writeln!(
            out,
            "# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE portvakt_key_generation_cpu_seconds_total counter\nportvakt_key_generation_cpu_seconds_total {:.6}",
        c.keygen_cpu_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# TYPE portvakt_next_keys_deferred gauge\nportvakt_next_keys_deferred {}",
        ctx.deferred_next_keys()
    );
    let s = ctx.digdir.stats();
    let _ = writeln!(out, "# TYPE portvakt_digdir_requests_total counter");
    for (method, n) in [
        ("GET", s.gets),
        ("POST", s.posts),
        ("PUT", s.puts),
        ("DELETE", s.deletes),
    ] {
        let _ = writeln!(
            out,
            "portvakt_digdir_requests_total{{method=\"{method}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE portvakt_digdir_retries_total counter\nportvakt_digdir_retries_total {}",
        s.retries
    );
    let _ = writeln!(
        out,
        "# TYPE portvakt_digdir_token_grants_total counter\nportvakt_digdir_token_grants_total {}",
        s.token_grants
    );
    out
}
