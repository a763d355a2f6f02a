//! The gRPC server every fiscus process runs: health and reflection beside the services,
//! overload protection, and a graceful shutdown with a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::Service;

use crate::auth::AuthLayer;
use crate::config::ServerConfig;
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

/// Serves `routes` (whose fully-qualified gRPC names are `services`) plus `grpc.health.v1` and
/// server reflection on `listener` until `shutdown` resolves; then reports NOT_SERVING, waits
/// `drain_delay`, stops accepting, and gives in-flight RPCs `shutdown_grace` to finish.
pub async fn serve(
    config: &ServerConfig,
    listener: TcpListener,
    routes: RoutesBuilder,
    services: &[&'static str],
    auth: Option<AuthLayer>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in services.iter().copied().chain([""]) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fiscus_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut routes = routes;
    routes.add_service(health_service).add_service(reflection);

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        // One span per RPC, continuing the caller's W3C trace.
        .trace_fn(rpc_span)
        // No RPC runs forever: callers get DEADLINE_EXCEEDED instead of a hung connection.
        .timeout(config.request_timeout())
        // Bounds the work one connection can queue on this process.
        .concurrency_limit_per_connection(config.concurrency_limit_per_connection)
        // At the limit, refuse at once (UNAVAILABLE, retriable) rather than queue without bound.
        .load_shed(true)
        // Every RPC but health, reflection and token issuance needs a valid token and scope.
        .layer(tower::util::option_layer(auth))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = shutdown => {}
    }

    tracing::info!("shutdown requested: reporting NOT_SERVING");
    for name in services.iter().copied().chain([""]) {
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
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

/// An RPC of the contract whose implementation has not landed yet, and where it is tracked.
#[derive(Debug, Clone, Copy)]
pub struct Unlanded {
    /// The method name, as in the proto (`SignReceipt`).
    pub method: &'static str,
    /// What is missing and where it is tracked, shown to the caller.
    pub missing: &'static str,
}

/// Answers the [`Unlanded`] RPCs of a service with `UNIMPLEMENTED` naming what is missing,
/// and passes every other RPC to the service itself.
#[derive(Clone)]
pub struct WithUnlanded<S> {
    inner: S,
    unlanded: &'static [Unlanded],
}

impl<S> WithUnlanded<S> {
    pub fn new(inner: S, unlanded: &'static [Unlanded]) -> Self {
        Self { inner, unlanded }
    }
}

impl<S: NamedService> NamedService for WithUnlanded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for WithUnlanded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Self::Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        match self.unlanded.iter().find(|u| u.method == method) {
            Some(unlanded) => {
                let status = tonic::Status::unimplemented(format!(
                    "{}/{} is not available yet: {}",
                    S::NAME,
                    unlanded.method,
                    unlanded.missing
                ));
                Either::Left(ready(Ok(status.into_http())))
            }
            None => Either::Right(self.inner.call(request)),
        }
    }
}
