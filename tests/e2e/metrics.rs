//! Metrics as an SRE sees them: a real Prometheus scrapes a running receipt service's admin
//! port and answers queries about what the service did.

use std::time::Duration;

use fiscus_e2e::{ReceiptsCluster, bread_sale, unique_terminal};
use fiscus_proto::v1 as pb;

/// Prometheus from Debian's `prometheus` package (`make test` installs it with promtool), on a
/// port and a data directory of its own, scraping `target` every second. Killed when dropped.
struct Prometheus {
    _child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn scraping(target: std::net::SocketAddr) -> Self {
        // reqwest is built without a TLS provider of its own; plain HTTP still wants one set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: fiscus-receipts\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = fiscus_e2e::free_port().expect("a port");
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "prometheus runs (Debian's `prometheus` package; `make test` installs it when missing)",
            );
        Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The value of an instant query's first series, once Prometheus answers it.
    async fn value(&self, query: &str) -> Option<f64> {
        let url =
            url::Url::parse_with_params(&format!("{}/api/v1/query", self.url), [("query", query)])
                .ok()?;
        let answer: serde_json::Value = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Waits (a minute at most) until `query` answers at least `least`.
    async fn eventually(&self, query: &str, least: f64) -> f64 {
        for _ in 0..600 {
            if let Some(value) = self.value(query).await.filter(|v| *v >= least) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus never answered {query} with {least} or more");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_receipts_signed_and_rpc_latencies() {
    let cluster = ReceiptsCluster::start("", &[], &[])
        .await
        .expect("the services start");
    let admin = cluster
        .receipts
        .admin
        .expect("the receipt service logs its admin port");
    let prometheus = Prometheus::scraping(admin).await;
    let mut client = cluster.client().await;
    let till = unique_terminal("12345678901");
    for _ in 0..5 {
        client.sign_receipt(bread_sale(&till)).await.expect("signs");
    }
    // A refused call is counted with its code.
    let refused = client
        .sign_receipt(pb::SignReceiptRequest::default())
        .await
        .expect_err("empty");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let signed = prometheus
        .eventually(
            r#"sum(fiscus_receipts_signed_total{provider="builtin",fiscal_state="LOCAL_SIGNED"})"#,
            5.0,
        )
        .await;
    assert_eq!(signed, 5.0);
    let handled = prometheus
        .eventually(
            r#"sum(grpc_server_handled_total{grpc_method="SignReceipt",grpc_code="OK"})"#,
            5.0,
        )
        .await;
    assert_eq!(handled, 5.0);
    prometheus
        .eventually(
            r#"sum(grpc_server_handled_total{grpc_method="SignReceipt",grpc_code="InvalidArgument"})"#,
            1.0,
        )
        .await;
    let samples = prometheus
        .eventually(
            r#"sum(grpc_server_handling_seconds_count{grpc_service="fiscus.v1.ReceiptService",grpc_method="SignReceipt"})"#,
            6.0,
        )
        .await;
    assert_eq!(samples, 6.0, "every SignReceipt timed");
    let p99 = prometheus
        .eventually(
            r#"histogram_quantile(0.99, sum by (le) (grpc_server_handling_seconds_bucket{grpc_method="SignReceipt"}))"#,
            0.0,
        )
        .await;
    assert!(p99 > 0.0, "a latency quantile from the histogram: {p99}");
    prometheus.eventually("fiscus_journal_writer_up", 1.0).await;
}
