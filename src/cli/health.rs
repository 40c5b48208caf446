//! /healthz, /readyz and /metrics (Prometheus text) for `portvakt run`.
//!
//! - `/readyz` answers 200 while the process is healthy: its settings were valid (it would not have
//!   started otherwise) and the Kubernetes API server answers. While it cannot be reached it answers
//!   503 naming the URL. A provider outage does not make the pod unready (that is reported on the
//!   resources and in metrics).
//! - `/healthz` answers 200 until the process is stopping.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use portvakt::controller::Context;
use portvakt::controller::digdir_kinds::DigdirProvider;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

struct Health {
    ctx: Arc<Context>,
    api_url: String,
    shutdown: CancellationToken,
    /// The last API server check: when, and its problem (`None`: reachable).
    last_check: Mutex<Option<(Instant, Option<String>)>>,
}

/// How long one API server check is trusted.
const CHECK_TTL: Duration = Duration::from_secs(5);

pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Context>,
    api_url: String,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = Arc::new(Health {
        ctx,
        api_url,
        shutdown: shutdown.clone(),
        last_check: Mutex::new(None),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(local)
}

async fn healthz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    if h.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping".into());
    }
    let mut last = h.last_check.lock().await;
    let problem = match &*last {
        Some((at, problem)) if at.elapsed() < CHECK_TTL => problem.clone(),
        _ => {
            let answer =
                tokio::time::timeout(Duration::from_secs(3), h.ctx.client.apiserver_version())
                    .await;
            let problem = match answer {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(portvakt::controller::error::describe_kube(&e)),
                Err(_) => Some("no answer within 3s".to_string()),
            };
            *last = Some((Instant::now(), problem.clone()));
            problem
        }
    };
    match problem {
        None => (StatusCode::OK, "ok".into()),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the Kubernetes API server at {} cannot be reached: {p}",
                h.api_url
            ),
        ),
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> String {
    let ctx = &h.ctx;
    let c = &ctx.counters;
    let mut out = String::new();
    let counters = [
        ("portvakt_reconciles_total", &c.reconciles),
        ("portvakt_reconcile_failures_total", &c.failures),
        ("portvakt_workload_scans_total", &c.workload_scans),
        ("portvakt_keys_generated_total", &c.keys_generated),
        ("portvakt_secret_writes_total", &c.secret_writes),
        ("portvakt_secret_deletes_total", &c.secret_deletes),
        ("portvakt_status_writes_total", &c.status_writes),
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
    let _ = writeln!(out, "# TYPE portvakt_unhandled_resources gauge");
    for (kind, n) in ctx
        .unhandled
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(out, "portvakt_unhandled_resources{{kind=\"{kind}\"}} {n}");
    }
    if let Some(d) = ctx.provider::<DigdirProvider>() {
        let _ = writeln!(
            out,
            "# TYPE portvakt_next_keys_deferred gauge\nportvakt_next_keys_deferred {}",
            d.deferred_next_keys()
        );
        let s = d.client.stats();
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
    }
    out
}
