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
pub(crate) struct Server {
    base_url: String,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
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
        let mut local = listener.local_addr().map_err(bind_error)?;
        // A server bound to every interface is still reached through loopback.
        if local.ip().is_unspecified() {
            local.set_ip(match local.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        let base_url = format!("http://{local}");
        let mut stop = shutdown.subscribe();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // An error means the handle is gone: stop as well.
                    let _ = stop.wait_for(|stopping| *stopping).await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(sandbox, %error, "sandbox server stopped");
            }
        });
        tracing::info!(sandbox, %base_url, "sandbox listening");
        Ok(Server {
            base_url,
            shutdown,
            task: Some(task),
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops accepting, lets answers in flight finish (held answers are released), and waits for that.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
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
    if take_one(&faults.drop_next) {
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
