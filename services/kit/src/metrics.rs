//! Prometheus metrics of a process: one registry, served as text on the admin port
//! ([`crate::admin`]), and the RED metrics of every RPC under the names the grpc-ecosystem
//! uses (`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`).
//!
//! Metrics are process-wide, as Prometheus scrapes a process: each crate keeps its own in
//! statics made with [`register`], so that each is registered once however many services the
//! process hosts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// The process's registry (for the exposition, and for crates that register their own).
pub fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `metric` under `name` and gives it back; call once per metric, from a static.
/// A counter's name gets `_total` appended in the exposition.
pub fn register<M: Metric + Clone>(name: &str, help: &str, metric: M) -> M {
    registry().register(name, help, metric.clone());
    metric
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

/// Watch streams open in this process, by the service whose streams they are: one family for
/// every service, since a process may host several (`fiscus dev`).
static WATCHERS: LazyLock<Family<StreamLabels, Gauge>> = LazyLock::new(|| {
    register(
        "fiscus_watchers_open",
        "Watch streams open in this process",
        Family::default(),
    )
});

/// A watch stream of `stream` (`receipts`, `payments`) opened (`1`) or ended (`-1`); a change
/// of 0 shows the series (at 0) before the first stream.
pub fn watchers(stream: &'static str, change: i64) {
    WATCHERS
        .get_or_create(&StreamLabels { stream })
        .inc_by(change);
}

/// The watch streams of `stream` open now.
pub fn watchers_open(stream: &'static str) -> i64 {
    WATCHERS.get_or_create(&StreamLabels { stream }).get()
}

/// Seconds buckets for latencies from half a millisecond to about half a minute.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The Prometheus text exposition (format 0.0.4) of everything registered.
pub fn exposition() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry());
    text
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InFlight {
    grpc_service: &'static str,
    grpc_method: &'static str,
}

struct Red {
    started: Family<Rpc, Counter>,
    handled: Family<Handled, Counter>,
    handling: Family<Rpc, Histogram, fn() -> Histogram>,
    in_flight: Family<InFlight, Gauge>,
}

static RED: LazyLock<Red> = LazyLock::new(|| Red {
    started: register(
        "grpc_server_started",
        "RPCs started on the server",
        Family::default(),
    ),
    handled: register(
        "grpc_server_handled",
        "RPCs completed on the server, by gRPC status code",
        Family::default(),
    ),
    handling: register(
        "grpc_server_handling_seconds",
        "Time from an RPC's start to its last message, seconds",
        Family::new_with_constructor(latency_histogram),
    ),
    in_flight: register(
        "fiscus_grpc_server_in_flight",
        "RPCs being handled now",
        Family::default(),
    ),
});

/// Every RPC the process may serve, by path (`/fiscus.v1.ReceiptService/SignReceipt`), with
/// its service, method and kind, read from the descriptor sets the process serves. Anything
/// else is counted as one `unknown` method, so that a scan cannot grow the series without end.
static METHODS: LazyLock<HashMap<String, Rpc>> = LazyLock::new(|| {
    let sets = [
        fiscus_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashMap::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let service_name: &'static str =
                    Box::leak(format!("{}.{}", file.package(), service.name()).into_boxed_str());
                for method in &service.method {
                    let grpc_type = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    let method_name: &'static str = Box::leak(method.name().into());
                    methods.insert(
                        format!("/{service_name}/{method_name}"),
                        Rpc {
                            grpc_type,
                            grpc_service: service_name,
                            grpc_method: method_name,
                        },
                    );
                }
            }
        }
    }
    methods
});

const UNKNOWN: Rpc = Rpc {
    grpc_type: "unknown",
    grpc_service: "unknown",
    grpc_method: "unknown",
};

/// The status code as grpc-go spells it, which dashboards and alerts of the ecosystem expect.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status an HTTP/2 header map carries, if any.
fn grpc_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// One RPC being measured; recorded once, when its status is known (or the caller went away).
struct Measured {
    rpc: Rpc,
    started: Instant,
}

impl Measured {
    fn start(path: &str) -> Self {
        let rpc = METHODS.get(path).cloned().unwrap_or(UNKNOWN);
        RED.started.get_or_create(&rpc).inc();
        RED.in_flight.get_or_create(&in_flight(&rpc)).inc();
        Self {
            rpc,
            started: Instant::now(),
        }
    }

    fn finish(self, code: Code) {
        let rpc = self.rpc;
        RED.handling
            .get_or_create(&rpc)
            .observe(self.started.elapsed().as_secs_f64());
        RED.in_flight.get_or_create(&in_flight(&rpc)).dec();
        RED.handled
            .get_or_create(&Handled {
                grpc_type: rpc.grpc_type,
                grpc_service: rpc.grpc_service,
                grpc_method: rpc.grpc_method,
                grpc_code: code_name(code),
            })
            .inc();
    }
}

fn in_flight(rpc: &Rpc) -> InFlight {
    InFlight {
        grpc_service: rpc.grpc_service,
        grpc_method: rpc.grpc_method,
    }
}

/// The tower layer that measures every RPC: started, handled by code, latency, in flight.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Metered { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for Metered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let measured = Measured::start(request.uri().path());
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            // An error is answered in the headers alone; anything else ends with trailers.
            if let Some(code) = grpc_code(response.headers()) {
                measured.finish(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = Observed {
                body,
                measured: Some(measured),
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

/// A response body that records its RPC when the trailers say how it ended.
struct Observed {
    body: Body,
    measured: Option<Measured>,
}

impl Observed {
    fn finish(&mut self, code: Code) {
        if let Some(measured) = self.measured.take() {
            measured.finish(code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            Poll::Ready(None) => self.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Observed {
    /// A body dropped before its trailers: the caller went away.
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contract_is_known_with_its_kind() {
        let sign = &METHODS["/fiscus.v1.ReceiptService/SignReceipt"];
        assert_eq!(
            (sign.grpc_type, sign.grpc_service, sign.grpc_method),
            ("unary", "fiscus.v1.ReceiptService", "SignReceipt")
        );
        assert_eq!(
            METHODS["/fiscus.v1.ReceiptService/WatchReceipt"].grpc_type,
            "server_stream"
        );
        assert_eq!(
            METHODS["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"].grpc_type,
            "bidi_stream"
        );
        assert!(METHODS.contains_key("/grpc.health.v1.Health/Check"));
        assert!(!METHODS.contains_key("/x.Y/Z"));
    }

    #[test]
    fn an_rpc_is_counted_started_and_handled_with_its_code() {
        let before = exposition();
        let measured = Measured::start("/fiscus.v1.ShiftService/OpenShift");
        measured.finish(Code::FailedPrecondition);
        let after = exposition();
        let line = "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"fiscus.v1.ShiftService\",grpc_method=\"OpenShift\",grpc_code=\"FailedPrecondition\"} 1";
        assert!(!before.contains(line) && after.contains(line), "{after}");
        assert!(
            after.contains("grpc_server_handling_seconds_bucket{"),
            "{after}"
        );
    }
}
