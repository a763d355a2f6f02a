//! What every sandbox shares: binding, serving on the caller's runtime, shutdown, fault injection
//! (latency, failures, lost answers) and random secrets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error("{sandbox} sandbox: cannot bind {addr}: {source}")]
    Bind {
        sandbox: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{sandbox} sandbox: invalid configuration: {detail}")]
    Config {
        sandbox: &'static str,
        detail: String,
    },
}

/// The default bind address of every sandbox: loopback, a port of the kernel's choosing.
pub(crate) const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A running sandbox HTTP server; dropping it stops the server.
///
/// It can be taken down and brought back on the same port ([`Server::set_down`]): down, it does
/// not listen at all, so connections are refused as by a machine whose service is stopped.
pub(crate) struct Server {
    sandbox: &'static str,
    /// The address the listener was bound to (its port fixed), to bind again when brought back.
    bound: SocketAddr,
    base_url: String,
    router: Router,
    shutdown: watch::Sender<bool>,
    /// The listening incarnation; `None` while down.
    serving: tokio::sync::Mutex<Option<Serving>>,
    /// Incarnations taken down whose connections may still be finishing.
    finishing: Mutex<Vec<JoinHandle<()>>>,
}

/// One period of listening, from start or [`Server::set_down`]`(false)` to the next take-down.
struct Serving {
    stop: watch::Sender<bool>,
    /// Fires when the listener is closed (its socket dropped).
    closed: tokio::sync::oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

/// A listener that says when it is dropped: a take-down returns only once connections are refused.
struct ClosingListener {
    inner: TcpListener,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ClosingListener {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

impl axum::serve::Listener for ClosingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl std::future::Future<Output = (Self::Io, Self::Addr)> + Send {
        axum::serve::Listener::accept(&mut self.inner)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Server {
    /// A shutdown channel to hand to [`Faults`] before the router is built.
    pub(crate) fn shutdown_channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
        watch::channel(false)
    }

    /// Binds `addr` and serves `router` on the current Tokio runtime until shut down.
    pub(crate) async fn start(
        sandbox: &'static str,
        addr: SocketAddr,
        router: Router,
        shutdown: watch::Sender<bool>,
    ) -> Result<Self, SandboxError> {
        let bind_error = |source| SandboxError::Bind {
            sandbox,
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let mut local = bound;
        // A server bound to every interface is still reached through loopback.
        if local.ip().is_unspecified() {
            local.set_ip(match local.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        let base_url = format!("http://{local}");
        let serving = serve(sandbox, listener, router.clone(), &shutdown);
        tracing::info!(sandbox, %base_url, "sandbox listening");
        Ok(Server {
            sandbox,
            bound,
            base_url,
            router,
            shutdown,
            serving: tokio::sync::Mutex::new(Some(serving)),
            finishing: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Down: stops listening (returns once connections are refused; answers in flight finish).
    /// Up again: listens on the same port. Either is a no-op when already so.
    pub(crate) async fn set_down(&self, down: bool) -> Result<(), SandboxError> {
        let mut serving = self.serving.lock().await;
        match (down, serving.take()) {
            (true, Some(incarnation)) => {
                let _ = incarnation.stop.send(true);
                // An error means the task is gone, and its listener with it.
                let _ = incarnation.closed.await;
                lock(&self.finishing).push(incarnation.task);
                tracing::info!(sandbox = self.sandbox, base_url = %self.base_url, "sandbox down");
            }
            (false, None) => {
                let listener =
                    TcpListener::bind(self.bound)
                        .await
                        .map_err(|source| SandboxError::Bind {
                            sandbox: self.sandbox,
                            addr: self.bound,
                            source,
                        })?;
                *serving = Some(serve(
                    self.sandbox,
                    listener,
                    self.router.clone(),
                    &self.shutdown,
                ));
                tracing::info!(sandbox = self.sandbox, base_url = %self.base_url, "sandbox up again");
            }
            (_, unchanged) => *serving = unchanged,
        }
        Ok(())
    }

    /// Stops accepting, lets answers in flight finish (held answers are released), and waits for that.
    pub(crate) async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(serving) = self.serving.lock().await.take() {
            let _ = serving.task.await;
        }
        let finishing = std::mem::take(&mut *lock(&self.finishing));
        for task in finishing {
            let _ = task.await;
        }
    }
}

/// Serves `router` on `listener` until the sandbox shuts down or this incarnation is stopped.
fn serve(
    sandbox: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: &watch::Sender<bool>,
) -> Serving {
    let (stop, mut stopped) = watch::channel(false);
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    let listener = ClosingListener {
        inner: listener,
        closed: Some(closed_tx),
    };
    let mut shutting_down = shutdown.subscribe();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // An error means the handle is gone: stop as well.
                tokio::select! {
                    _ = shutting_down.wait_for(|stopping| *stopping) => {}
                    _ = stopped.wait_for(|stopping| *stopping) => {}
                }
            })
            .await;
        if let Err(error) = served {
            tracing::warn!(sandbox, %error, "sandbox server stopped");
        }
    });
    Serving { stop, closed, task }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Test controls every sandbox has: a request counter, failures, latency, lost answers.
pub(crate) struct Faults {
    requests: AtomicU64,
    /// The W3C `traceparent` of the last request, as sent.
    last_traceparent: std::sync::Mutex<Option<String>>,
    fail_next: AtomicU32,
    drop_next: AtomicU32,
    /// The share of requests whose answer is lost, as `f64` bits (0: none).
    drop_ratio_bits: AtomicU64,
    latency_nanos: AtomicU64,
    shutdown: watch::Receiver<bool>,
    unavailable: fn() -> Response,
}

impl Faults {
    /// `unavailable` answers a request told to fail, in the upstream's own words.
    pub(crate) fn new(unavailable: fn() -> Response, shutdown: watch::Receiver<bool>) -> Self {
        Faults {
            requests: AtomicU64::new(0),
            last_traceparent: std::sync::Mutex::new(None),
            fail_next: AtomicU32::new(0),
            drop_next: AtomicU32::new(0),
            drop_ratio_bits: AtomicU64::new(0),
            latency_nanos: AtomicU64::new(0),
            shutdown,
            unavailable,
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn last_traceparent(&self) -> Option<String> {
        self.last_traceparent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub(crate) fn drop_next(&self, n: u32) {
        self.drop_next.store(n, Ordering::SeqCst);
    }

    /// From now on each request's answer is lost with probability `ratio` (clamped to 0..=1).
    pub(crate) fn set_drop_ratio(&self, ratio: f64) {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self.drop_ratio_bits
            .store(ratio.to_bits(), Ordering::SeqCst);
    }

    /// Whether this request's answer is to be lost by the drop ratio.
    fn dropped_by_ratio(&self) -> bool {
        let ratio = f64::from_bits(self.drop_ratio_bits.load(Ordering::SeqCst));
        if ratio <= 0.0 {
            return false;
        }
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            return false;
        }
        // 53 random bits: a uniform draw in [0, 1).
        let draw = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        draw < ratio
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::SeqCst);
    }

    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::SeqCst))
    }

    async fn stopping(&self) {
        let mut stop = self.shutdown.clone();
        let _ = stop.wait_for(|stopping| *stopping).await;
    }
}

/// Takes one from a "next n requests" counter; false once it is at zero.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Middleware: counts the request, then applies latency, a failure, or a lost answer.
pub(crate) async fn inject_faults(
    State(faults): State<Arc<Faults>>,
    request: Request,
    next: Next,
) -> Response {
    faults.requests.fetch_add(1, Ordering::SeqCst);
    *faults
        .last_traceparent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = faults.stopping() => return (faults.unavailable)(),
        }
    }
    if take_one(&faults.fail_next) {
        return (faults.unavailable)();
    }
    let response = next.run(request).await;
    if take_one(&faults.drop_next) || faults.dropped_by_ratio() {
        // Done but never answered: the caller times out not knowing the outcome.
        faults.stopping().await;
        return (faults.unavailable)();
    }
    response
}

/// A fresh opaque secret: 32 random bytes, base64url without padding.
pub(crate) fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `n` uniformly random decimal digits (an OTP code).
pub(crate) fn random_digits(n: usize) -> Result<String, getrandom::Error> {
    let mut digits = String::with_capacity(n);
    let mut bytes = [0u8; 16];
    while digits.len() < n {
        getrandom::fill(&mut bytes)?;
        // 250 = 25 × 10: rejecting 250..=255 keeps every digit equally likely.
        for byte in bytes.iter().filter(|b| **b < 250) {
            if digits.len() == n {
                break;
            }
            digits.push(char::from(b'0' + byte % 10));
        }
    }
    Ok(digits)
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Locks sandbox state; a panicked handler must not take the sandbox down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The response for an internal sandbox failure (no randomness); not part of any contract.
pub(crate) fn internal_error(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "sandbox internal error");
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "sandbox internal error",
    )
        .into_response()
}
