//! The cluster's skeleton: every process serves its services with health and reflection,
//! refuses bad configuration with one clear line, and stops gracefully.

use fiscus_e2e::{Process, TEST_MASTER_KEY, health, list_services, run_to_exit};
use tonic_health::pb::health_check_response::ServingStatus;

const SERVICES: [(&str, &str); 4] = [
    ("receipts", "fiscus.v1.ReceiptService"),
    ("payments", "fiscus.v1.PaymentService"),
    ("shifts", "fiscus.v1.ShiftService"),
    ("tokens", "fiscus.v1.TokenService"),
];

#[tokio::test]
async fn each_service_binary_serves_its_service_with_health_and_reflection() {
    for (kind, service) in SERVICES {
        let process = Process::service(kind, &[]).await.expect("starts");
        let listed = list_services(process.channel().await)
            .await
            .expect("reflection");
        assert!(listed.iter().any(|s| s == service), "{kind}: {listed:?}");
        assert!(
            listed.iter().any(|s| s == "grpc.health.v1.Health"),
            "{listed:?}"
        );
        for name in [service, ""] {
            let status = health(process.channel().await, name).await.expect("health");
            assert_eq!(status, ServingStatus::Serving, "{kind}: health of {name:?}");
        }
        let (exit, _) = process.terminate().await.expect("stops");
        assert!(exit.success(), "{kind} exited with {exit}");
    }
}

#[tokio::test]
async fn dev_serves_all_four_services_on_one_port() {
    let data = tempfile::tempdir().expect("tempdir");
    let process = Process::dev(data.path()).await.expect("starts");
    let listed = list_services(process.channel().await)
        .await
        .expect("reflection");
    for (_, service) in SERVICES {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} in {listed:?}"
        );
        let status = health(process.channel().await, service)
            .await
            .expect("health");
        assert_eq!(status, ServingStatus::Serving, "{service}");
    }
    for file in [
        "receipts.db",
        "payments.db",
        "shifts.db",
        "tokens.db",
        "master.key",
    ] {
        assert!(data.path().join(file).exists(), "{file} in the data dir");
    }
    let (exit, _) = process.terminate().await.expect("stops");
    assert!(exit.success(), "fiscus dev exited with {exit}");
}

#[tokio::test]
async fn dev_keeps_its_journal_chain_and_keys_across_restarts() {
    use fiscus_proto::v1 as pb;
    use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
    let data = tempfile::tempdir().expect("tempdir");
    let till = pb::Terminal {
        merchant_tin: "37900846788".into(),
        branch_no: "001".into(),
        pos_no: "001".into(),
    };
    let sale = || fiscus_e2e::bread_sale(&till);
    // The journal, its chain and its key outlive the process: the second run goes on where the
    // first stopped, and verifies both receipts.
    let mut first_id = String::new();
    for round in 1..=2u64 {
        let process = Process::dev(data.path()).await.expect("starts");
        let token = process.dev_token.clone().expect("a dev token");
        let mut client = ReceiptServiceClient::with_interceptor(
            process.channel().await,
            fiscus_e2e::Bearer::new(token.trim()),
        );
        let receipt = client
            .sign_receipt(sale())
            .await
            .expect("signs")
            .into_inner()
            .receipt
            .expect("receipt");
        assert_eq!(receipt.receipt_number, round);
        if round == 1 {
            first_id = receipt.id;
        } else {
            let first = client
                .get_receipt(pb::GetReceiptRequest {
                    terminal: None,
                    lookup: Some(pb::get_receipt_request::Lookup::ReceiptId(first_id.clone())),
                })
                .await
                .expect("the first run's receipt is still there");
            assert_eq!(
                first.into_inner().receipt.expect("receipt").receipt_number,
                1
            );
        }
        let verdict = client
            .verify_journal(pb::VerifyJournalRequest {
                terminal: Some(till.clone()),
                ..Default::default()
            })
            .await
            .expect("verifies")
            .into_inner();
        assert!(verdict.ok && verdict.count_checked == round, "{verdict:?}");
        let (exit, _) = process.terminate().await.expect("stops");
        assert!(exit.success());
    }
}

#[tokio::test]
async fn bad_configuration_stops_with_one_clear_line() {
    let config_dir = tempfile::tempdir().expect("tempdir");
    let broken_toml = config_dir.path().join("broken.toml");
    std::fs::write(&broken_toml, "[server\nlisten = 1").expect("write");
    let broken = broken_toml.to_str().expect("utf-8 path");
    let missing = config_dir.path().join("missing.toml");
    let missing = missing.to_str().expect("utf-8 path");

    let key = ("FISCUS_KEYS__MASTER_KEY", TEST_MASTER_KEY);
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Vec<&str>, Env<'_>, &str)> = vec![
        (
            "unknown key",
            vec![],
            vec![key, ("FISCUS_SERVER__LISTEN_ADRESS", "127.0.0.1:1")],
            "listen_adress",
        ),
        (
            "wrong type",
            vec![],
            vec![key, ("FISCUS_SERVER__REQUEST_TIMEOUT_MS", "soon")],
            "server.request_timeout_ms",
        ),
        (
            "pool too small",
            vec![],
            vec![key, ("FISCUS_DATABASE__MAX_CONNECTIONS", "1")],
            "database.max_connections must be at least 2",
        ),
        ("missing secret", vec![], vec![], "FISCUS_KEYS__MASTER_KEY"),
        (
            "malformed secret",
            vec![],
            vec![("FISCUS_KEYS__MASTER_KEY", "not-hex")],
            "keys.master_key",
        ),
        (
            "unreachable postgres",
            vec![],
            vec![
                key,
                ("FISCUS_SERVER__LISTEN", "127.0.0.1:0"),
                (
                    "FISCUS_DATABASE__URL",
                    "postgres://postgres:hunter2@127.0.0.1:1/test",
                ),
            ],
            "cannot connect to postgres://postgres:***@127.0.0.1:1/test",
        ),
        (
            "missing config file",
            vec!["--config", missing],
            vec![key],
            "does not exist",
        ),
        (
            "broken config file",
            vec!["--config", broken],
            vec![key],
            "broken.toml",
        ),
    ];
    for (case, args, env, expected) in cases {
        let (status, _stdout, stderr) = run_to_exit("fiscus-receipts", &args, &env)
            .await
            .expect("runs");
        assert!(!status.success(), "{case}: exited with {status}");
        assert_eq!(status.code(), Some(1), "{case}: {stderr}");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{case}: one line on stderr, got {stderr:?}");
        assert!(
            lines[0].contains(expected),
            "{case}: {:?} lacks {expected:?}",
            lines[0]
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{case}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "{case}: a password reached stderr"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_a_service_gracefully_with_exit_0() {
    let process = Process::service("shifts", &[]).await.expect("starts");
    process.stop_gracefully().await;
}

#[tokio::test]
async fn fiscus_migrate_makes_every_services_schema_and_is_a_no_op_the_second_time() {
    let postgres = fiscus_e2e::PrivatePostgres::start().expect("a private Postgres");
    let url = postgres.url();
    for round in ["first", "second"] {
        let (exit, stdout, stderr) = run_to_exit(
            "fiscus",
            &["migrate"],
            &[
                ("FISCUS_DATABASE__URL", url.as_str()),
                ("FISCUS_TELEMETRY__LOG_FORMAT", "json"),
            ],
        )
        .await
        .expect("runs");
        assert!(exit.success(), "{round} run: {exit}\n{stdout}\n{stderr}");
        assert_eq!(
            stdout.matches("\"migrated\"").count(),
            4,
            "{round}: {stdout}"
        );
    }
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema LIKE 'fiscus\\_%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    for expected in [
        "fiscus_receipts.receipts",
        "fiscus_receipts.operations",
        "fiscus_tokens.operations",
        "fiscus_payments.operations",
        "fiscus_shifts.operations",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
    pool.close().await;
}
