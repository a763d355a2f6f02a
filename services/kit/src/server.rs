//! The gRPC server every fiscus process runs: health and reflection beside the services,
//! overload protection, and a graceful shutdown with a deadline.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::auth::AuthLayer;
use crate::config::ServerConfig;
use crate::deadline::DeadlineLayer;
use crate::health::Health;
use crate::metrics::MetricsLayer;
use crate::telemetry::rpc_span;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("server: cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server: reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds the listener early, so a taken port is reported before anything else starts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Tells long-lived work of a process (open streams, pollers) that it is shutting down.
#[derive(Clone, Debug)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

/// Starts a shutdown: what [`Shutdown`] waits for.
#[derive(Debug)]
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl Shutdown {
    /// A shutdown that has not begun, and its trigger.
    pub fn new() -> (ShutdownTrigger, Self) {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        (ShutdownTrigger(sender), Self(receiver))
    }

    /// Resolves once the shutdown has begun (at once if it has).
    pub async fn requested(&mut self) {
        // An error means the trigger is gone, which only happens as the process ends.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Serves `routes` (which hold the services and `health`'s server) plus server reflection (v1
/// and v1alpha) on `listener` until `signal` resolves; then reports NOT_SERVING, tells the
/// process's long-lived work to end (`stop`), waits `drain_delay`, stops accepting, and gives
/// in-flight RPCs `shutdown_grace` to finish. With `metered`, every RPC is measured
/// ([`crate::metrics`]).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    config: &ServerConfig,
    listener: TcpListener,
    routes: RoutesBuilder,
    auth: Option<AuthLayer>,
    metered: bool,
    health: &Health,
    stop: ShutdownTrigger,
    signal: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fiscus_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = routes;
    // v1alpha too: Python's grpcio, Postman, Evans and older grpcurl speak only that one.
    routes
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        // One span per RPC, continuing the caller's W3C trace.
        .trace_fn(rpc_span)
        // Bounds the work one connection can queue on this process.
        .concurrency_limit_per_connection(config.concurrency_limit_per_connection)
        // At the limit, refuse at once (UNAVAILABLE, retriable) rather than queue without bound.
        .load_shed(true)
        // Every RPC counted, timed and labelled with how it ended (the deadline's answers too).
        .layer(tower::util::option_layer(metered.then_some(MetricsLayer)))
        // No RPC runs forever: past its deadline the caller gets DEADLINE_EXCEEDED.
        .layer(DeadlineLayer {
            limit: config.request_timeout(),
        })
        // Every RPC but health, reflection and token issuance needs a valid token and scope.
        .layer(tower::util::option_layer(auth))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = signal => {}
    }

    tracing::info!("shutdown requested: reporting NOT_SERVING");
    health.shutting_down().await;
    // Open streams end now, so that they do not hold the drain up to its deadline.
    stop.trigger();
    if !config.drain_delay().is_zero() {
        tokio::select! {
            result = &mut server => return result.map_err(ServeError::from),
            () = tokio::time::sleep(config.drain_delay()) => {}
        }
    }
    let _ = stop_accepting.send(());
    let grace = config.shutdown_grace();
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => {
            tracing::info!("shutdown completed gracefully");
            result.map_err(ServeError::from)
        }
        Err(_) => {
            tracing::warn!(
                ?grace,
                "graceful shutdown did not complete in time, terminating now"
            );
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed by this call, not when the future
/// is first polled, so a SIGTERM that arrives while the server is still starting is not lost.
pub fn termination_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let sigterm = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server"))
            .ok()
    };
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut sigterm) = sigterm {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = ctrl_c => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
