//! /healthz, /readyz and /metrics for `portvakt run`.
//!
//! - `/readyz` answers 200 while the process is healthy: its settings were valid (it would not have
//!   started otherwise), the Kubernetes API server answers, and — while this replica runs the
//!   controllers (it leads, or there is no leader election) — every kind's cache has been filled.
//!   A standby is ready: a rolling update of two replicas under a PodDisruptionBudget would stall
//!   otherwise. A provider outage does not make the pod unready (that is reported on the resources
//!   and in metrics, as is leadership).
//! - `/healthz` answers 200 unless the controllers are stuck ([`portvakt::controller::liveness`]:
//!   a pass running for longer than `--stuck-pass-after`, or a controller that stopped) or the
//!   process is stopping; the kubelet then restarts the container.
//! - `/metrics`: [`portvakt::metrics`], Prometheus text format 0.0.4.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use portvakt::controller::Context;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

struct Health {
    ctx: Arc<Context>,
    api_url: String,
    shutdown: CancellationToken,
    /// A pass running this long means the controllers are stuck.
    stuck_after: Duration,
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
    stuck_after: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = Arc::new(Health {
        ctx,
        api_url,
        shutdown: shutdown.clone(),
        stuck_after,
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

async fn healthz(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    if h.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping".into());
    }
    match h.ctx.liveness.problem(h.ctx.clock.now(), h.stuck_after) {
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("stuck: {p}")),
        None => (StatusCode::OK, "ok".into()),
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
    drop(last);
    if problem.is_none()
        && let Some((kind, _)) = h.ctx.metrics.kinds().into_iter().find(|(_, s)| !s.synced)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the {kind} cache is not filled yet (its first list is under way)"),
        );
    }
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

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, portvakt::metrics::CONTENT_TYPE)],
        h.ctx.metrics.render(),
    )
}
