//! Traces reach an OpenTelemetry collector: a real OTLP/gRPC trace collector runs in the test,
//! the receipts and tokens binaries export to it (`OTEL_EXPORTER_OTLP_ENDPOINT`), and one call
//! that carries a W3C `traceparent` shows up there as one trace across both services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fiscus_e2e::{ReceiptsCluster, bread_sale, unique_terminal};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::Mutex;

/// The trace the caller is in, and the caller's own span (W3C trace context, hex).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// The `service.name` each binary gives its spans (kit names them `fiscus-<service>`).
const RECEIPTS: &str = "fiscus-receipts";
const TOKENS: &str = "fiscus-tokens";

/// How long spans may take to reach the collector before the test gives up.
const DEADLINE: Duration = Duration::from_secs(20);

/// An OTLP/gRPC trace collector that keeps every export it receives.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().await.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a free port of 127.0.0.1 for as long as the test runs.
    async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let collector = Self::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .expect("the collector serves");
        });
        (collector, addr)
    }

    /// Every span received so far.
    async fn spans(&self) -> Vec<Exported> {
        let received = self.received.lock().await;
        let mut spans = Vec::new();
        for request in received.iter() {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans.resource.as_ref();
                let service = attribute(resource, "service.name");
                let version = attribute(resource, "service.version");
                let pod = attribute(resource, "k8s.pod.name");
                for scope_spans in &resource_spans.scope_spans {
                    for span in &scope_spans.spans {
                        spans.push(Exported {
                            service: service.clone(),
                            version: version.clone(),
                            pod: pod.clone(),
                            name: span.name.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                        });
                    }
                }
            }
        }
        spans
    }
}

/// One span as the collector received it, ids in hex.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    /// The resource's `service.version`.
    version: String,
    /// The resource's `k8s.pod.name` (from OTEL_RESOURCE_ATTRIBUTES, which the chart fills from
    /// the downward API).
    pod: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

fn attribute(resource: Option<&Resource>, key: &str) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            any_value::Value::StringValue(name) => name.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_the_collector_and_join_the_callers_trace() {
    let (collector, collector_addr) = Collector::start().await;
    let endpoint = format!("http://{collector_addr}");
    let telemetry_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // The batch exporter's default is 5 s between exports.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        // What the chart sets from the downward API.
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.pod.name=fiscus-receipts-0,k8s.namespace.name=fiscal",
        ),
    ];

    let cluster = ReceiptsCluster::start("", &telemetry_env, &[])
        .await
        .expect("the services start");
    let mut client = cluster.client().await;
    // The caller is in trace TRACE_ID, in its span CALLER_SPAN_ID, sampled.
    let mut request = tonic::Request::new(bread_sale(&unique_terminal("12345678901")));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .expect("valid metadata"),
    );
    let receipt = client
        .sign_receipt(request)
        .await
        .expect("signs")
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!(receipt.receipt_number, 1);

    // Spans are exported in batches: poll the collector until everything is there.
    let started = tokio::time::Instant::now();
    let (sign, jwks) = loop {
        let spans = collector.spans().await;
        // (b) the receipts server's span of the call, in the caller's trace.
        let sign = spans
            .iter()
            .find(|s| s.name == "fiscus.v1.ReceiptService/SignReceipt" && s.trace_id == TRACE_ID)
            .cloned();
        // (c) the token service's span of the key fetch SignReceipt made (to check the bearer
        // token), in the same trace.
        let jwks = spans
            .iter()
            .find(|s| s.name == "fiscus.v1.TokenService/GetJwks" && s.trace_id == TRACE_ID)
            .cloned();
        if let (Some(sign), Some(jwks)) = (&sign, &jwks) {
            break (sign.clone(), jwks.clone());
        }
        let missing: Vec<&str> = [
            (
                sign.is_none(),
                "the receipts SignReceipt span in the caller's trace",
            ),
            (
                jwks.is_none(),
                "the tokens GetJwks span in the caller's trace",
            ),
        ]
        .into_iter()
        .filter_map(|(missing, what)| missing.then_some(what))
        .collect();
        assert!(
            started.elapsed() < DEADLINE,
            "within {DEADLINE:?} the collector did not get {}; it got:\n{}",
            missing.join(" nor "),
            spans
                .iter()
                .map(|s| format!("  {s:?}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // (a) the spans arrive under the service's name and version, with the pod's attributes.
    assert_eq!(sign.service, RECEIPTS, "{sign:?}");
    assert_eq!(sign.version, env!("CARGO_PKG_VERSION"), "{sign:?}");
    assert_eq!(sign.pod, "fiscus-receipts-0", "{sign:?}");
    // (b) the server span is the child of the caller's span, not the root of a trace of its own.
    assert_eq!(
        sign.parent_span_id, CALLER_SPAN_ID,
        "the receipts span continues the caller's span: {sign:?}"
    );
    // (c) the token service's span is the child of the receipts span that called it.
    assert_eq!(jwks.service, TOKENS, "{jwks:?}");
    assert_eq!(
        jwks.parent_span_id, sign.span_id,
        "the tokens span is a child of the receipts span: {jwks:?} under {sign:?}"
    );
}
