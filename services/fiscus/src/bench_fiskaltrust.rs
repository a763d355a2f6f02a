//! `fiscus bench --only fiskaltrust`: SignReceipt for a fiskaltrust merchant, the sandbox
//! signing in 50 ms (fiskaltrust's and fiskaly's own latencies are 50–250 ms), beside the
//! built-in signer in the same receipt service; then the middleware out of reach while 10,000
//! receipts are made, and the time the outbox takes to have them all late-signed once it is
//! back (the zero receipts that close late signing included).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_providers::fiskaltrust::{FiskaltrustSandbox, FiskaltrustSandboxConfig};

use crate::bench::{
    BUILTIN_MERCHANT, BenchArgs, InProcess, Run, Tally, bench_config, connections, request,
    sign_receipts,
};

/// The merchant fiscalized on fiskaltrust (Italy).
const FISKALTRUST_MERCHANT: &str = "12345678903";
/// How long the sandbox takes to sign each receipt.
const SIGNING_LATENCY: Duration = Duration::from_millis(50);
/// Receipts made while the middleware is out of reach.
const LATE: usize = 10_000;

pub async fn run(args: &BenchArgs, suffix: &str, settings: &ConnectSettings) -> anyhow::Result<()> {
    println!(
        "\nfiscus bench: SignReceipt for a fiskaltrust merchant (sandbox signing in {} ms) beside \
         the built-in signer, {} clients over {} terminals, {} s per run, Postgres + Redis",
        SIGNING_LATENCY.as_millis(),
        args.clients,
        args.terminals,
        args.seconds
    );
    let sandbox_config = FiskaltrustSandboxConfig::default();
    let cash_box = sandbox_config.cash_boxes[0].clone();
    let sandbox = FiskaltrustSandbox::start(sandbox_config).await?;
    sandbox.set_latency(SIGNING_LATENCY);
    // The outbox as shipped (its defaults); the cash box's token from TokenService.
    let config = bench_config(args, suffix)?.with_section_defaults(&format!(
        r#"
[[receipts.merchants]]
tin = "{BUILTIN_MERCHANT}"
name = "Дээж Дэлгүүр ХХК"

[[receipts.merchants]]
tin = "{FISKALTRUST_MERCHANT}"
name = "Negozio Fiscus Srl"
currency = "EUR"
provider = "fiskaltrust"
[receipts.merchants.fiskaltrust]
url = "{url}"
market = "IT"

[[tokens.fiskaltrust]]
merchant_tin = "{FISKALTRUST_MERCHANT}"
cashbox_id = "{cashbox_id}"
access_token = "{access_token}"
"#,
        url = sandbox.base_url(),
        cashbox_id = cash_box.cashbox_id,
        access_token = cash_box.access_token,
    ))?;
    let short = &suffix[..12];
    let (receipts_schema, tokens_schema) = (
        format!("bench_fiskaltrust_{short}"),
        format!("bench_fiskaltrust_tokens_{short}"),
    );
    let service = InProcess::start_all(
        &[
            (&fiscus_receipts::MODULE, receipts_schema.as_str()),
            (&fiscus_tokens::MODULE, tokens_schema.as_str()),
        ],
        config,
        args,
        settings,
        false,
    )
    .await?;
    let db = Database::connect(&args.database_url, &receipts_schema, settings).await?;

    let local = sign_receipts(args, service.addr, BUILTIN_MERCHANT, Arc::default()).await?;
    let up_states = Arc::new(Tally::default());
    let up = sign_receipts(args, service.addr, FISKALTRUST_MERCHANT, up_states.clone()).await?;
    drained(&db, Duration::from_secs(120)).await?;

    // Out of reach while LATE receipts are made; then back, and drained.
    sandbox.set_down(true).await?;
    let made = Instant::now();
    sign_count(args, service.addr, LATE).await?;
    let making = made.elapsed();
    let signed_before = sandbox.signed();
    sandbox.set_down(false).await?;
    let back = Instant::now();
    // A till's next receipt finds the middleware back; the outbox delivers what waited.
    ReceiptServiceClient::connect(format!("http://{}", service.addr))
        .await?
        .sign_receipt(request(FISKALTRUST_MERCHANT, args.terminals))
        .await?;
    let drain = drained(&db, Duration::from_secs(900)).await? - back;
    let signed = sandbox.signed() - signed_before;
    let zeros = zero_receipts(&db).await?;

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
    row("fiskaltrust, 50 ms signing", &up, Some(&up_states));
    println!(
        "\nlate signing: {LATE} receipts made with the middleware out of reach in {:.1} s \
         ({:.0}/s, each answered PENDING); once it was back, {signed} signed in {:.1} s \
         ({:.0} receipts/s), {zeros} zero receipts closing late signing, {} replays",
        making.as_secs_f64(),
        LATE as f64 / making.as_secs_f64(),
        drain.as_secs_f64(),
        signed as f64 / drain.as_secs_f64(),
        sandbox.replays(),
    );
    db.close().await;
    service.stop().await?;
    sandbox.shutdown().await;
    Ok(())
}

/// Signs `count` receipts for the fiskaltrust merchant from every client at once.
async fn sign_count(
    args: &BenchArgs,
    addr: std::net::SocketAddr,
    count: usize,
) -> anyhow::Result<()> {
    let channels = connections(addr).await?;
    let left = Arc::new(AtomicUsize::new(count));
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let mut service = ReceiptServiceClient::new(channels[client % channels.len()].clone());
            let left = left.clone();
            let terminal = client % args.terminals.max(1);
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    service
                        .sign_receipt(request(FISKALTRUST_MERCHANT, terminal))
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Receipts the outbox still holds: live ones, and dead letters.
async fn queued(db: &Database) -> anyhow::Result<(i64, i64)> {
    let Database::Postgres(pool) = db else {
        anyhow::bail!("the fiskaltrust benchmark runs on Postgres");
    };
    Ok(sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE NOT dead), COUNT(*) FILTER (WHERE dead) FROM outbox",
    )
    .fetch_one(pool)
    .await?)
}

/// The zero receipts journaled (late signing's closings).
async fn zero_receipts(db: &Database) -> anyhow::Result<i64> {
    let Database::Postgres(pool) = db else {
        anyhow::bail!("the fiskaltrust benchmark runs on Postgres");
    };
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM receipts WHERE kind = 'ZERO'")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until the outbox is empty and stays so a moment (a closing zero receipt is journaled
/// just after its terminal's last late-signed receipt left), `at_most` long; answers when it
/// became empty.
async fn drained(db: &Database, at_most: Duration) -> anyhow::Result<Instant> {
    let began = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        let (live, dead) = queued(db).await?;
        anyhow::ensure!(dead == 0, "{dead} receipts became dead letters");
        if live == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(300) {
                return Ok(since);
            }
        } else {
            empty_since = None;
        }
        anyhow::ensure!(
            began.elapsed() < at_most,
            "the outbox did not drain within {at_most:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
