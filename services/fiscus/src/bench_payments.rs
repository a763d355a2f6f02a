//! `fiscus bench --only payments`: WatchPayment's fan-out (many watchers of one payment, one
//! change) and CreateQr + GetPaymentStatus against the MIA sandbox beside the gRPC floor.

use std::time::{Duration, Instant};

use fiscus_kit::db::ConnectSettings;
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::payment_service_client::PaymentServiceClient;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use fiscus_providers::mia::{MiaSeller, MiaTerminal, PayerTarget};
use fiscus_providers::{MiaSandbox, MiaSandboxConfig};
use futures::StreamExt;
use tonic::transport::Channel;

use crate::bench::{BenchArgs, InProcess, bench_config, connections, measure};

const IDNO: &str = "1003600000000";

fn terminal() -> pb::Terminal {
    pb::Terminal {
        merchant_tin: IDNO.into(),
        branch_no: "001".into(),
        pos_no: "BENCH".into(),
    }
}

/// This process's resident memory, in MiB (Linux).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

pub async fn run(args: &BenchArgs, suffix: &str, settings: &ConnectSettings) -> anyhow::Result<()> {
    println!(
        "\nfiscus bench: PaymentService against the MIA sandbox, {} clients, {} s per run, {} watchers, Postgres + Redis",
        args.clients, args.seconds, args.watchers
    );
    let sandbox = MiaSandbox::start(
        MiaSandboxConfig::default()
            .with_terminal(MiaTerminal::new("T-BENCH", IDNO))
            .with_seller(MiaSeller::new("bench", "bench-password", 1, "Bench Seller")),
    )
    .await?;
    // Measured without the authentication layer: the figures are the payments', not the JWT check's.
    let config = bench_config(args, suffix)?.with_section_defaults(&format!(
        "[tokens]\nmia_url = \"{url}\"\n[payments]\nmia_url = \"{url}\"\npoll_interval_ms = 200\nmax_watchers = {}\n",
        args.watchers.saturating_add(100),
        url = sandbox.base_url()
    ))?;
    let tokens_schema = format!("bench_ptokens_{}", &suffix[..12]);
    let payments_schema = format!("bench_payments_{}", &suffix[..12]);
    let service = InProcess::start_all(
        &[
            (&fiscus_tokens::MODULE, tokens_schema.as_str()),
            (&fiscus_payments::MODULE, payments_schema.as_str()),
        ],
        config,
        args,
        settings,
        false,
    )
    .await?;
    let outcome = measure_payments(args, &sandbox, service.addr).await;
    service.stop().await?;
    outcome
}

async fn measure_payments(
    args: &BenchArgs,
    sandbox: &MiaSandbox,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let channels = connections(addr).await?;
    let session = login(channels[0].clone(), sandbox).await?;

    // Fan-out: every watcher of one payment hears its one change.
    let fan_out = fan_out(args, sandbox, addr, &session).await?;

    // Throughput: a QR created, then its status asked, per iteration.
    let create_and_check = {
        let channels = channels.clone();
        let session = session.clone();
        measure(args, move |i| {
            let mut client = PaymentServiceClient::new(channels[i % channels.len()].clone());
            let session = session.clone();
            async move {
                let qr = client
                    .create_qr(pb::CreateQrRequest {
                        operation_id: uuid::Uuid::new_v4().to_string(),
                        terminal: Some(terminal()),
                        seller_session_id: session.clone(),
                        r#type: pb::QrType::Dynamic.into(),
                        amount_type: pb::QrAmountType::Fixed.into(),
                        amount: "1.00".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .qr
                    .ok_or_else(|| anyhow::anyhow!("no QR"))?;
                client
                    .get_payment_status(pb::GetPaymentStatusRequest {
                        terminal: Some(terminal()),
                        seller_session_id: session,
                        payment: Some(pb::get_payment_status_request::Payment::QrId(qr.qr_id)),
                    })
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let health = {
        let channels = channels.clone();
        measure(args, move |i| {
            let mut client = tonic_health::pb::health_client::HealthClient::new(
                channels[i % channels.len()].clone(),
            );
            async move {
                client
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    println!();
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "", "per s", "p50 ms", "p99 ms"
    );
    for (label, run) in [
        ("CreateQr + GetPaymentStatus", &create_and_check),
        ("health check (gRPC floor)", &health),
    ] {
        println!(
            "{label:<36} {:>10.0} {:>10.2} {:>10.2}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99)
        );
    }
    println!(
        "MIA calls per pair: {:.2} (QRs created at MIA: {})",
        sandbox.requests() as f64 / sandbox.count("qr.created").max(1) as f64,
        sandbox.count("qr.created")
    );
    println!("\n{fan_out}");
    Ok(())
}

/// Activates the bench terminal and logs its seller in; answers the seller session.
async fn login(channel: Channel, sandbox: &MiaSandbox) -> anyhow::Result<String> {
    let mut tokens = TokenServiceClient::new(channel);
    let started = tokens
        .init_activation(pb::InitActivationRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            terminal: Some(terminal()),
            terminal_id: "T-BENCH".into(),
            merchant_idno: IDNO.into(),
            device: Some(pb::DeviceInfo {
                device: "bench".into(),
                platform_type: pb::PlatformType::ExternalSystem.into(),
                installation_id: uuid::Uuid::new_v4().to_string(),
                pos_app_version: 1,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let otp = sandbox
        .last_otp(started.activation_id.parse()?)
        .ok_or_else(|| anyhow::anyhow!("no OTP"))?;
    tokens
        .confirm_activation(pb::ConfirmActivationRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            activation_id: started.activation_id.clone(),
            otp_code: otp,
        })
        .await?;
    Ok(tokens
        .seller_login(pb::SellerLoginRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            activation_id: started.activation_id,
            username: "bench".into(),
            password: "bench-password".into(),
        })
        .await?
        .into_inner()
        .session_id)
}

/// Opens `args.watchers` streams on one payment, pays it, and times each stream's PAID from
/// the moment the service saw the change (the event's timestamp).
async fn fan_out(
    args: &BenchArgs,
    sandbox: &MiaSandbox,
    addr: std::net::SocketAddr,
    session: &str,
) -> anyhow::Result<String> {
    // HTTP/2 allows a bounded number of streams per connection: 100 a connection.
    let mut channels = Vec::new();
    for _ in 0..args.watchers.div_ceil(100).max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let mut client = PaymentServiceClient::new(channels[0].clone());
    let qr = client
        .create_qr(pb::CreateQrRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            terminal: Some(terminal()),
            seller_session_id: session.to_owned(),
            r#type: pb::QrType::Dynamic.into(),
            amount_type: pb::QrAmountType::Fixed.into(),
            amount: "10.00".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .qr
        .ok_or_else(|| anyhow::anyhow!("no QR"))?;
    let before = rss_mib();
    let opened = Instant::now();
    let watch = pb::WatchPaymentRequest {
        terminal: Some(terminal()),
        seller_session_id: session.to_owned(),
        payment: Some(pb::watch_payment_request::Payment::QrId(qr.qr_id.clone())),
        follow: false,
    };
    let streams = futures::stream::iter(0..args.watchers)
        .map(|i| {
            let mut client = PaymentServiceClient::new(channels[i % channels.len()].clone());
            let watch = watch.clone();
            async move {
                let mut stream = client.watch_payment(watch).await?.into_inner();
                // The current state first.
                stream
                    .next()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("a stream ended early"))??;
                Ok::<_, anyhow::Error>(stream)
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let open_for = opened.elapsed();
    let with_watchers = rss_mib();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("no PAID within a minute"))?
                    .ok_or_else(|| anyhow::anyhow!("a stream ended early"))??
                    .event
                    .ok_or_else(|| anyhow::anyhow!("an empty event"))?;
                let received = chrono::Utc::now();
                let seen = event.timestamp.unwrap_or_default();
                let seen_us = seen
                    .seconds
                    .saturating_mul(1_000_000)
                    .saturating_add(i64::from(seen.nanos / 1000));
                Ok::<_, anyhow::Error>((event.state, received.timestamp_micros() - seen_us))
            })
        })
        .collect();
    sandbox
        .pay(
            PayerTarget::Qr(qr.qr_id.parse()?),
            fiscus_domain::Money::from_minor(1000),
        )
        .map_err(|e| anyhow::anyhow!("the payer could not pay: {e}"))?;
    let mut latencies = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        let (state, micros) = receiver.await??;
        anyhow::ensure!(
            state == i32::from(pb::PaymentState::Paid),
            "a watcher heard {state}"
        );
        latencies.push(micros.max(0));
    }
    latencies.sort_unstable();
    let at = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).copied().unwrap_or(0) as f64 / 1000.0
    };
    let mib = |m: Option<f64>| m.map_or("?".to_owned(), |m| format!("{m:.0} MiB"));
    Ok(format!(
        "WatchPayment fan-out: {} watchers of one payment (opened in {:.1} s), one change:\n  \
         from the change seen to each watcher: p50 {:.2} ms, p99 {:.2} ms, last {:.2} ms\n  \
         RSS of this process (service and clients): {} before, {} with the watchers open",
        latencies.len(),
        open_for.as_secs_f64(),
        at(0.50),
        at(0.99),
        at(1.0),
        mib(before),
        mib(with_watchers),
    ))
}
