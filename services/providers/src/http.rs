//! The HTTP machinery every upstream client shares: rustls on ring with the platform's roots, a
//! whole-call timeout, bounded answers, and the mapping of transport failures onto [`ProviderError`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rustls_platform_verifier::BuilderVerifierExt;

use crate::error::{ProviderError, Upstream};

/// Upstream answers we read are small JSON documents; anything larger is a broken upstream.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Builds the client for one upstream. `timeout` bounds each whole call: connect, send, answer.
pub(crate) fn build_client(
    upstream: Upstream,
    timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    build_client_with(upstream, timeout, |builder| builder)
}

/// [`build_client`], with `configure` applied to the builder last (an upstream's own pool policy).
pub(crate) fn build_client_with(
    upstream: Upstream,
    timeout: Duration,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, ProviderError> {
    // ring rather than aws-lc-rs: a small C build on a small build machine, and an explicit
    // provider rather than a process-wide default another crate may or may not have installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::config(upstream, format!("TLS versions: {e}")))?
        .with_platform_verifier()
        .map_err(|e| ProviderError::config(upstream, format!("certificate verifier: {e}")))?
        .with_no_client_auth();
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        // Credentials are posted: never follow a redirect somewhere else with them.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fiscus-providers/", env!("CARGO_PKG_VERSION")));
    configure(builder)
        .build()
        .map_err(|e| ProviderError::config(upstream, format!("HTTP client: {}", chain(&e))))
}

/// A base URL checked once, so that every call can append its path.
pub(crate) fn parse_base_url(
    upstream: Upstream,
    base: &str,
) -> Result<reqwest::Url, ProviderError> {
    let url = reqwest::Url::parse(base)
        .map_err(|e| ProviderError::config(upstream, format!("base URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ProviderError::config(
            upstream,
            format!("base URL {base:?}: not an http(s) URL"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ProviderError::config(
            upstream,
            format!("base URL {base:?}: must not carry a query or fragment"),
        ));
    }
    Ok(url)
}

/// `base` with `segments` appended as path segments (each one percent-encoded).
pub(crate) fn join(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// What an upstream answered: its status and its (bounded) body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// How an HTTP status is to be read, before looking at the body.
pub(crate) enum StatusClass {
    Success,
    /// 408, 429 and 5xx: the upstream may answer differently later.
    Unavailable,
    /// Other 4xx: the upstream refuses this request.
    Refused,
    /// 1xx, 3xx: nothing an upstream of ours should answer.
    Unexpected,
}

pub(crate) fn classify(status: StatusCode) -> StatusClass {
    if status.is_success() {
        StatusClass::Success
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        StatusClass::Unavailable
    } else if status.is_client_error() {
        StatusClass::Refused
    } else {
        StatusClass::Unexpected
    }
}

/// Sends `request`, in the current trace (W3C `traceparent`), and reads the whole answer;
/// transport failures become `Unavailable`.
pub(crate) async fn exchange(
    upstream: Upstream,
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<Answer, ProviderError> {
    exchange_tracked(upstream, url, timeout, request)
        .await
        .map_err(|failure| failure.error)
}

/// Why an exchange got no answer, and whether the request can have reached the upstream.
pub(crate) struct Failure {
    pub error: ProviderError,
    /// True only when the request provably never left: the connection (DNS, TCP, TLS) could not
    /// be made, so not one byte of it was sent.
    pub unsent: bool,
}

/// [`exchange`], telling a request that never left from one whose fate is unknown.
pub(crate) async fn exchange_tracked(
    upstream: Upstream,
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<Answer, Failure> {
    let started = std::time::Instant::now();
    let answer = read_answer(upstream, url, timeout, request).await;
    let outcome = match &answer {
        Ok(answer) => match classify(answer.status) {
            StatusClass::Success => "ok",
            StatusClass::Refused => "refused",
            _ => "error",
        },
        Err(_) => "unreachable",
    };
    crate::metrics::observe(upstream, outcome, started.elapsed());
    answer
}

async fn read_answer(
    upstream: Upstream,
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<Answer, Failure> {
    let mut response = request
        .headers(trace_context())
        .send()
        .await
        .map_err(|e| Failure {
            // A connect error (resolving, connecting, the TLS handshake) comes before any of the
            // request is written; anything later may have been received.
            unsent: e.is_connect(),
            error: transport_error(upstream, url, timeout, e),
        })?;
    let status = response.status();
    let mut body = Vec::new();
    let sent = |error| Failure {
        error,
        unsent: false,
    };
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| sent(transport_error(upstream, url, timeout, e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(sent(ProviderError::Protocol {
                upstream,
                url: url.to_owned(),
                detail: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

/// The current span's trace context as headers, by the process's propagator (none when the
/// process does not trace).
pub(crate) fn trace_context() -> reqwest::header::HeaderMap {
    struct Headers(reqwest::header::HeaderMap);
    impl opentelemetry::propagation::Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(key.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current());
    let mut headers = Headers(reqwest::header::HeaderMap::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers)
    });
    headers.0
}

pub(crate) fn transport_error(
    upstream: Upstream,
    url: &str,
    timeout: Duration,
    error: reqwest::Error,
) -> ProviderError {
    let cause = if error.is_timeout() {
        format!("no answer within {timeout:?}")
    } else if error.is_connect() {
        format!("cannot connect: {}", chain(&error.without_url()))
    } else {
        chain(&error.without_url())
    };
    ProviderError::Unavailable {
        upstream,
        url: url.to_owned(),
        cause,
    }
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The start of a body, printable, for error messages about answers that are not JSON.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.push('…');
    }
    if out.trim().is_empty() {
        out = "(empty body)".to_owned();
    }
    out
}
