//! `fiscus bench --only ebarimt`: SignReceipt for an e-barimt merchant, the POSAPI sandbox
//! answering in 20 ms, beside the built-in signer in the same receipt service; the same with the
//! POSAPI down (store-and-forward: the till must not feel it); the outbox draining what the
//! outage queued once the POSAPI is back; and the built-in signer again, on the journal the
//! outage grew, as the down run's yardstick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_providers::ebarimt::{EbarimtMerchant, EbarimtSandbox, EbarimtSandboxConfig};

use crate::bench::{
    BUILTIN_MERCHANT, BenchArgs, InProcess, Run, Tally, bench_config, request, sign_receipts,
};

/// The merchant fiscalized on e-barimt.
const EBARIMT_MERCHANT: &str = "61001234567";
/// How long the sandbox takes to answer each call.
const POSAPI_LATENCY: Duration = Duration::from_millis(20);

pub async fn run(args: &BenchArgs, suffix: &str, settings: &ConnectSettings) -> anyhow::Result<()> {
    println!(
        "\nfiscus bench: SignReceipt for an e-barimt merchant (POSAPI sandbox answering in {} ms) \
         beside the built-in signer, {} clients over {} terminals, {} s per run, Postgres + Redis",
        POSAPI_LATENCY.as_millis(),
        args.clients,
        args.terminals,
        args.seconds
    );
    let sandbox = EbarimtSandbox::start(EbarimtSandboxConfig {
        lotteries: u64::MAX,
        ..EbarimtSandboxConfig::default().with_merchant(EbarimtMerchant::new(
            EBARIMT_MERCHANT,
            "Э-Баримт Дэлгүүр ХХК",
        ))
    })
    .await?;
    sandbox.set_latency(POSAPI_LATENCY);
    // The outbox as shipped (its defaults), for both merchants of one receipt service.
    let config = bench_config(args, suffix)?.with_section_defaults(&format!(
        r#"
[[receipts.merchants]]
tin = "{BUILTIN_MERCHANT}"
name = "Дээж Дэлгүүр ХХК"

[[receipts.merchants]]
tin = "{EBARIMT_MERCHANT}"
name = "Э-Баримт Дэлгүүр ХХК"
provider = "ebarimt"
[receipts.merchants.ebarimt]
posapi_url = "{url}"
api_url = "{url}"
district_code = "2501"
"#,
        url = sandbox.base_url()
    ))?;
    let schema = format!("bench_ebarimt_{}", &suffix[..12]);
    let service = InProcess::start(
        &fiscus_receipts::MODULE,
        config,
        args,
        &schema,
        settings,
        false,
    )
    .await?;
    let db = Database::connect(&args.database_url, &schema, settings).await?;

    let local = sign_receipts(args, service.addr, BUILTIN_MERCHANT, Arc::default()).await?;
    let up_states = Arc::new(Tally::default());
    let up = sign_receipts(args, service.addr, EBARIMT_MERCHANT, up_states.clone()).await?;
    // What the run left for the background goes before the outage starts.
    drained(&db, Duration::from_secs(120)).await?;

    sandbox.set_down(true).await?;
    let down_states = Arc::new(Tally::default());
    let down = sign_receipts(args, service.addr, EBARIMT_MERCHANT, down_states.clone()).await?;
    let queued = queued(&db).await?;

    // Back: a till's next receipt finds it so, and the outbox delivers what waited.
    let documents_before = sandbox.documents();
    sandbox.set_down(false).await?;
    let back = Instant::now();
    ReceiptServiceClient::connect(format!("http://{}", service.addr))
        .await?
        .sign_receipt(request(EBARIMT_MERCHANT, args.terminals))
        .await?;
    drained(&db, Duration::from_secs(600)).await?;
    let drain = back.elapsed();
    let delivered = sandbox.documents() - documents_before;
    // The built-in signer again, on the journal the outage grew: the down run's yardstick.
    let local_after = sign_receipts(args, service.addr, BUILTIN_MERCHANT, Arc::default()).await?;

    println!();
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "", "receipts/s", "p50 ms", "p99 ms", "ACCEPTED", "PENDING"
    );
    let row = |label: &str, run: &Run, states: Option<&Tally>| {
        let count = |state| states.map_or("-".to_owned(), |t: &Tally| t.of(state).to_string());
        println!(
            "{label:<34} {:>12.0} {:>10.2} {:>10.2} {:>10} {:>10}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99),
            count(pb::FiscalState::Accepted),
            count(pb::FiscalState::Pending),
        );
    };
    row("built-in signer", &local, None);
    row("e-barimt, POSAPI up", &up, Some(&up_states));
    row("e-barimt, POSAPI down", &down, Some(&down_states));
    row("built-in signer, after the outage", &local_after, None);
    println!(
        "\noutbox drain: {queued} receipts queued during the outage (+1 after it), delivered in \
         {:.1} s once the POSAPI was back: {:.0} receipts/s ({} documents made, schema \
         violations {}); p99 with the POSAPI down {:.2} ms against {:.2} and {:.2} ms \
         local-only before and after (goal: within noise)",
        drain.as_secs_f64(),
        delivered as f64 / drain.as_secs_f64(),
        delivered,
        sandbox.schema_violations(),
        down.percentile(0.99),
        local.percentile(0.99),
        local_after.percentile(0.99),
    );
    db.close().await;
    service.stop().await?;
    sandbox.shutdown().await;
    Ok(())
}

/// Receipts the outbox still holds.
async fn queued(db: &Database) -> anyhow::Result<i64> {
    let Database::Postgres(pool) = db else {
        anyhow::bail!("the e-barimt benchmark runs on Postgres");
    };
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(pool)
        .await?)
}

/// Waits until the outbox is empty, `at_most` long.
async fn drained(db: &Database, at_most: Duration) -> anyhow::Result<()> {
    let began = Instant::now();
    while queued(db).await? > 0 {
        anyhow::ensure!(
            began.elapsed() < at_most,
            "the outbox did not drain within {at_most:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
