//! Serving a simulator's router on a loopback socket, shared by every simulator.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;

/// A server listening on a socket; shuts down on drop or [`ServeHandle::shutdown`].
pub struct ServeHandle {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Serves `router` on `listener`; `on_shutdown` runs when shutdown starts (e.g. to end open watches).
pub fn serve_on<F>(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    on_shutdown: F,
) -> std::io::Result<ServeHandle>
where
    F: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
                on_shutdown.await;
            })
            .await;
    });
    Ok(ServeHandle {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

impl ServeHandle {
    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits (at most 5 s) for the server.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
