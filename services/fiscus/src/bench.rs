//! `fiscus bench`: SignReceipt throughput and latency against Postgres + Redis, beside the
//! storage floor — the same rows written straight through sqlx, one transaction per receipt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fiscus_kit::app::{Process, open_cache};
use fiscus_kit::config::Config;
use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_kit::peers::Peers;
use fiscus_kit::{ServiceModule, server};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use secrecy::SecretString;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,
    /// Terminals the clients spread over (one hash chain each).
    #[arg(long, default_value_t = 32)]
    pub(crate) terminals: usize,
    /// Seconds each measurement runs (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Postgres; defaults to DATABASE_URL, else the local server.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub(crate) database_url: String,
    /// Run one benchmark only: `receipts`, `ebarimt`, `fiskaltrust`, `tokens`, `payments` or
    /// `shifts`.
    #[arg(long, value_parser = ["receipts", "ebarimt", "fiskaltrust", "tokens", "payments", "shifts"])]
    pub(crate) only: Option<String>,
    /// Receipts in the shift that the shifts benchmark closes (and a tenth as many QR payments).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) shift_receipts: usize,
    /// WatchPayment streams open on one payment in the fan-out measurement.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) watchers: usize,
    /// Redis; defaults to REDIS_URL, else the local server.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,
}

/// Latencies of one run, in microseconds.
pub(crate) struct Run {
    latencies: Vec<u64>,
    elapsed: Duration,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let settings = ConnectSettings {
        max_connections: 32,
        ..ConnectSettings::default()
    };
    let run = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    if run("receipts") {
        receipts(&args, &suffix, &settings).await?;
    }
    if run("ebarimt") {
        crate::bench_ebarimt::run(&args, &suffix, &settings).await?;
    }
    if run("fiskaltrust") {
        crate::bench_fiskaltrust::run(&args, &suffix, &settings).await?;
    }
    if run("tokens") {
        tokens(&args, &suffix, &settings).await?;
    }
    if run("payments") {
        crate::bench_payments::run(&args, &suffix, &settings).await?;
    }
    if run("shifts") {
        crate::bench_shifts::run(&args, &suffix, &settings).await?;
    }
    forget_cached(&args.redis_url, &cache_prefix(&suffix)).await
}

fn cache_prefix(suffix: &str) -> String {
    format!("bench-{}", &suffix[..12])
}

/// Removes what the runs left in Redis (a remembered answer per receipt, kept for a day).
async fn forget_cached(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    if !redis_url.starts_with("redis") {
        return Ok(());
    }
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// SignReceipt over gRPC beside the storage floor.
async fn receipts(
    args: &BenchArgs,
    suffix: &str,
    settings: &ConnectSettings,
) -> anyhow::Result<()> {
    println!(
        "fiscus bench: SignReceipt, {} clients over {} terminals, {} s per run, Postgres + Redis",
        args.clients, args.terminals, args.seconds
    );

    // The receipt service, in this process, on its own port, against Postgres + Redis; measured
    // without the authentication layer, so the figure is the journal's, not the JWT check's.
    // Measured twice, with the RPC metrics and without, to show what they cost.
    // Alternated, so that neither side has the machine's better minutes to itself.
    let (mut metered, mut unmetered) = (Vec::new(), Vec::new());
    for (round, with_metrics) in [true, false, false, true].into_iter().enumerate() {
        let mut config = bench_config(args, suffix)?;
        config.admin.enabled = with_metrics;
        let receipts = InProcess::start(
            &fiscus_receipts::MODULE,
            config,
            args,
            &format!("bench_{round}_{}", &suffix[..12]),
            settings,
            false,
        )
        .await?;
        let run = sign_receipts(args, receipts.addr, BUILTIN_MERCHANT, Arc::default()).await?;
        receipts.stop().await?;
        if with_metrics {
            metered.push(run);
        } else {
            unmetered.push(run);
        }
    }
    let mean = |runs: &[Run]| runs.iter().map(Run::rate).sum::<f64>() / runs.len().max(1) as f64;
    let metrics_cost = (mean(&metered) / mean(&unmetered) - 1.0) * 100.0;
    let service = metered.pop().context("two metered runs")?;
    let unmetered = unmetered.pop().context("two runs without metrics")?;

    // The floor: the same rows, straight through sqlx.
    let floor_schema = format!("bench_floor_{}", &suffix[..12]);
    let floor_db = Database::connect(&args.database_url, &floor_schema, settings).await?;
    floor_db
        .migrate("receipts", fiscus_receipts::MODULE.migrations)
        .await?;
    let floor = storage_floor(args, &floor_db).await?;

    println!();
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "", "receipts/s", "p50 ms", "p99 ms"
    );
    for (label, run) in [
        ("SignReceipt over gRPC", &service),
        ("  without RPC metrics", &unmetered),
        ("storage floor (sqlx)", &floor),
    ] {
        println!(
            "{label:<28} {:>12.0} {:>10.2} {:>10.2}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99)
        );
    }
    println!(
        "\nratio to the floor: {:.2} (goal ≥ 0.50); p99 {:.2} ms (goal ≤ 25 ms); \
         metrics cost {:+.1} % of throughput over two runs each (goal within 5 %)",
        service.rate() / floor.rate(),
        service.percentile(0.99),
        metrics_cost
    );

    drop_schema(&floor_db, &floor_schema).await
}

/// The merchant the benchmarks sign for on the built-in signer.
pub(crate) const BUILTIN_MERCHANT: &str = "37900846788";

/// A B2C sale of two goods on terminal `terminal` of merchant `tin`.
pub(crate) fn request(tin: &str, terminal: usize) -> pb::SignReceiptRequest {
    pb::SignReceiptRequest {
        operation_id: uuid::Uuid::new_v4().to_string(),
        terminal: Some(pb::Terminal {
            merchant_tin: tin.into(),
            branch_no: "001".into(),
            pos_no: format!("{terminal:03}"),
        }),
        r#type: pb::ReceiptType::B2cReceipt.into(),
        kind: pb::ReceiptKind::Sale.into(),
        receipt_reference: uuid::Uuid::new_v4().simple().to_string(),
        items: vec![
            pb::ChargeItem {
                name: "Талх".into(),
                quantity: "2".into(),
                unit_price: "2800.00".into(),
                tax_type: pb::TaxType::VatAble.into(),
                classification_code: "2349010".into(),
                ..Default::default()
            },
            pb::ChargeItem {
                name: "Сүү 1л".into(),
                quantity: "1".into(),
                unit_price: "3200.00".into(),
                tax_type: pb::TaxType::VatAble.into(),
                classification_code: "2211000".into(),
                ..Default::default()
            },
        ],
        payments: vec![pb::PayItem {
            method: pb::PaymentMethod::Cash.into(),
            amount: "8800.00".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs `work` from `clients` tasks for the measured time, after a warm-up; collects latencies.
pub(crate) async fn measure<F, Fut>(args: &BenchArgs, work: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let warm_up = Duration::from_secs(1);
    let measured = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let work = work.clone();
            let terminal = client % args.terminals.max(1);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let began = Instant::now();
                    if began >= start + warm_up + measured {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    work(terminal).await?;
                    if began >= start + warm_up {
                        latencies
                            .push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        latencies,
        elapsed: measured,
    })
}

/// A few HTTP/2 connections, as a pool of client instances would open.
pub(crate) async fn connections(addr: SocketAddr) -> anyhow::Result<Arc<Vec<Channel>>> {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(Arc::new(channels))
}

/// Fiscal states of the answers of a run, counted.
#[derive(Default)]
pub(crate) struct Tally(std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl Tally {
    fn count(&self, state: pb::FiscalState) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(state.as_str_name())
            .or_default() += 1;
    }

    /// How many answers were in `state`.
    pub(crate) fn of(&self, state: pb::FiscalState) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(state.as_str_name())
            .copied()
            .unwrap_or(0)
    }
}

/// SignReceipt for merchant `tin` from every client; the answers' fiscal states in `tally`.
pub(crate) async fn sign_receipts(
    args: &BenchArgs,
    addr: SocketAddr,
    tin: &'static str,
    tally: Arc<Tally>,
) -> anyhow::Result<Run> {
    let channels = connections(addr).await?;
    measure(args, move |terminal| {
        let mut client = ReceiptServiceClient::new(channels[terminal % channels.len()].clone());
        let tally = tally.clone();
        async move {
            let answer = client.sign_receipt(request(tin, terminal)).await?;
            if let Some(receipt) = answer.into_inner().receipt {
                tally.count(receipt.fiscal_state());
            }
            Ok(())
        }
    })
    .await
}

async fn storage_floor(args: &BenchArgs, db: &Database) -> anyhow::Result<Run> {
    let Database::Postgres(pool) = db.clone() else {
        anyhow::bail!("the storage floor is measured on Postgres");
    };
    let document = Arc::new("x".repeat(1200));
    measure(args, move |terminal| {
        let pool = pool.clone();
        let document = document.clone();
        async move {
            let id = uuid::Uuid::now_v7().to_string();
            let pos = format!("{terminal:03}");
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO operations (tenant, operation_id, rpc, fingerprint, response) VALUES ($1, $2, 'SignReceipt', $3, $4)")
                .bind("37900846788")
                .bind(&id)
                .bind(&[7u8; 32][..])
                .bind(document.as_bytes())
                .execute(&mut *tx)
                .await?;
            let (number, _hash): (i64, Vec<u8>) = sqlx::query_as(
                "INSERT INTO chain_heads (merchant_tin, branch_no, pos_no, last_number, last_hash) \
                 VALUES ('37900846788', '001', $1, 0, $2) ON CONFLICT (merchant_tin, branch_no, pos_no) \
                 DO UPDATE SET last_number = chain_heads.last_number RETURNING last_number, last_hash",
            )
            .bind(&pos)
            .bind(&[0u8; 32][..])
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO receipts (id, merchant_tin, branch_no, pos_no, number, kind, receipt_type, reference, \
                 total_minor, vat_minor, city_tax_minor, currency, fiscal_state, document, previous_hash, hash, \
                 signature, key_id, created_at_us) VALUES ($1, '37900846788', '001', $2, $3, 'SALE', 'B2C_RECEIPT', \
                 $1, 880000, 80000, 0, 'MNT', 'LOCAL_SIGNED', $4, $5, $5, $6, 'k', 0)",
            )
            .bind(&id)
            .bind(&pos)
            .bind(number + 1)
            .bind(document.as_str())
            .bind(&[1u8; 32][..])
            .bind(&[2u8; 64][..])
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE chain_heads SET last_number = $2, last_hash = $3 WHERE merchant_tin = '37900846788' AND branch_no = '001' AND pos_no = $1")
                .bind(&pos)
                .bind(number + 1)
                .bind(&[1u8; 32][..])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}

/// Cached GetAccessToken (authenticated, as clients call it) beside the health check on the
/// same server, with the RPC metrics and without.
async fn tokens(args: &BenchArgs, suffix: &str, settings: &ConnectSettings) -> anyhow::Result<()> {
    use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
    use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig};

    println!(
        "\nfiscus bench: cached GetAccessToken, {} clients, {} s per run, Postgres + Redis",
        args.clients, args.seconds
    );
    let keycloak = KeycloakSandbox::start(KeycloakSandboxConfig::default().with_realm(
        SandboxRealm::new("ITC").with_client(SandboxClient::new("posapi", "posapi-secret")),
    ))
    .await?;
    let mut metered = Vec::new();
    let mut unmetered = Vec::new();
    // Alternated, so that neither side has the machine's better minutes to itself.
    for (round, with_metrics) in [true, false, false, true].into_iter().enumerate() {
        let schema = format!("bench_tokens_{round}_{}", &suffix[..12]);
        let runs = token_runs(
            args,
            suffix,
            settings,
            keycloak.base_url(),
            &schema,
            with_metrics,
        )
        .await?;
        if with_metrics {
            metered.push(runs);
        } else {
            unmetered.push(runs);
        }
    }
    let (get, health) = metered.pop().context("two metered runs")?;
    let (earlier_get, _) = metered.pop().context("two metered runs")?;
    let (bare_get, _) = unmetered.pop().context("two runs without metrics")?;
    let (earlier_bare_get, _) = unmetered.pop().context("two runs without metrics")?;
    println!();
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "", "calls/s", "p50 ms", "p99 ms"
    );
    for (label, run) in [
        ("GetAccessToken (cached)", &get),
        ("  without RPC metrics", &bare_get),
        ("health check (floor)", &health),
    ] {
        println!(
            "{label:<28} {:>12.0} {:>10.2} {:>10.2}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99)
        );
    }
    let with = (get.rate() + earlier_get.rate()) / 2.0;
    let without = (bare_get.rate() + earlier_bare_get.rate()) / 2.0;
    println!(
        "\nratio to the floor: {:.2} (goal ≥ 0.70); metrics cost {:+.1} % of throughput over two \
         runs each (goal within 5 %); upstream token requests: {}",
        get.rate() / health.rate(),
        (with / without - 1.0) * 100.0,
        keycloak.token_requests()
    );
    Ok(())
}

/// One token service, with or without the RPC metrics: cached GetAccessToken, then the health
/// check on the same server.
async fn token_runs(
    args: &BenchArgs,
    suffix: &str,
    settings: &ConnectSettings,
    keycloak: &str,
    schema: &str,
    with_metrics: bool,
) -> anyhow::Result<(Run, Run)> {
    use fiscus_kit::config::AuthClient;
    use tonic_health::pb::health_client::HealthClient;

    let mut config = bench_config(args, suffix)?;
    config.admin.enabled = with_metrics;
    config.auth.clients.push(AuthClient {
        client_id: "bench".into(),
        client_secret: SecretString::from("bench-secret".to_owned()),
        scopes: vec!["admin".into()],
        merchants: Vec::new(),
    });
    let config = config.with_section_defaults(&format!(
        r#"
[[tokens.ebarimt]]
merchant_tin = "37900846788"
authUrl = "{keycloak}"
authRealm = "ITC"
authClientId = "posapi"
authClientSecret = "posapi-secret"
"#
    ))?;
    let service =
        InProcess::start(&fiscus_tokens::MODULE, config, args, schema, settings, true).await?;
    let channels = connections(service.addr).await?;
    let token =
        fiscus_proto::v1::token_service_client::TokenServiceClient::new(channels[0].clone())
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: "bench".into(),
                client_secret: "bench-secret".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .access_token;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;

    let get = {
        let channels = channels.clone();
        measure(args, move |i| {
            let mut client = fiscus_proto::v1::token_service_client::TokenServiceClient::new(
                channels[i % channels.len()].clone(),
            );
            let mut request = tonic::Request::new(pb::GetAccessTokenRequest {
                provider: pb::Provider::Ebarimt.into(),
                merchant_tin: "37900846788".into(),
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            async move {
                client.get_access_token(request).await?;
                Ok(())
            }
        })
        .await?
    };
    let health = {
        let channels = channels.clone();
        measure(args, move |i| {
            let mut client = HealthClient::new(channels[i % channels.len()].clone());
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
    service.stop().await?;
    Ok((get, health))
}

/// The configuration every measured service starts from: Postgres and Redis from the flags.
pub(crate) fn bench_config(args: &BenchArgs, suffix: &str) -> anyhow::Result<Config> {
    let mut config = Config::from_toml("")?;
    config.cache.url = SecretString::from(args.redis_url.clone());
    config.cache.key_prefix = cache_prefix(suffix);
    config.keys.master_key = Some(SecretString::from("5a".repeat(32)));
    config.telemetry.log_filter = "warn".into();
    Ok(config)
}

async fn drop_schema(db: &Database, schema: &str) -> anyhow::Result<()> {
    if let Database::Postgres(pool) = db {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(pool)
            .await
            .context("dropping the bench schema")?;
    }
    db.close().await;
    Ok(())
}

/// Services served by this process on one loopback port, each in a schema of its own.
pub(crate) struct InProcess {
    pub(crate) addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    databases: Vec<(Database, String)>,
}

impl InProcess {
    pub(crate) async fn start(
        module: &'static ServiceModule,
        config: Config,
        args: &BenchArgs,
        schema: &str,
        settings: &ConnectSettings,
        authenticate: bool,
    ) -> anyhow::Result<Self> {
        Self::start_all(&[(module, schema)], config, args, settings, authenticate).await
    }

    /// Several services on one port (they call each other through it), each in its schema.
    pub(crate) async fn start_all(
        modules: &[(&'static ServiceModule, &str)],
        mut config: Config,
        args: &BenchArgs,
        settings: &ConnectSettings,
        authenticate: bool,
    ) -> anyhow::Result<Self> {
        let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        config.peers = fiscus_kit::config::PeersConfig::all_at(&format!("http://{addr}"));
        let config = Arc::new(config);
        let peers = Peers::connect_lazy(&config.peers)?;
        let auth = if authenticate {
            let scopes = modules.iter().map(|(m, _)| m.scopes).collect();
            fiscus_kit::app::auth_layer(&config, &peers, scopes)
        } else {
            None
        };
        let cache = open_cache(&config)?;
        let mut process = Process::new();
        let mut databases = Vec::new();
        for (module, schema) in modules {
            let db = Database::connect(&args.database_url, schema, settings).await?;
            db.migrate(module.kind.name(), module.migrations).await?;
            process
                .mount(
                    module,
                    config.clone(),
                    db.clone(),
                    cache.clone(),
                    peers.clone(),
                )
                .await?;
            databases.push((db, (*schema).to_owned()));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            process
                .serve(&config, listener, auth, async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            stop,
            serving,
            databases,
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let _ = self.serving.await;
        for (db, schema) in &self.databases {
            drop_schema(db, schema).await?;
        }
        Ok(())
    }
}
