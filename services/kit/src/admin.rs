//! The admin port of a process, apart from gRPC: `/metrics` in the Prometheus text format.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::server::Shutdown;

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::exposition(),
    )
}

/// Binds the admin port (so a taken port stops the process at start) and serves it until
/// `shutdown`. Answers the address it listens on.
pub async fn start(addr: SocketAddr, mut shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(metrics));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the admin port stopped");
        }
    });
    Ok(local)
}
