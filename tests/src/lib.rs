//! Helpers for the end-to-end tests: start the real binaries against the real Postgres and
//! Redis, find where they listen, and talk to them over gRPC.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use fiscus_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A master key for test processes (never used outside tests).
pub const TEST_MASTER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Configuration granting the test client every scope (append to a test's config file).
pub const AUTH_CONFIG: &str = r#"
[[auth.clients]]
client_id = "e2e-admin"
client_secret = "e2e-admin-secret"
scopes = ["admin"]
"#;

/// Attaches `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Self(
            format!("Bearer {token}")
                .parse()
                .expect("a token is valid metadata"),
        )
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel that sends a token with every call.
pub type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// Asks a token service for a token.
pub async fn issue_token(
    channel: Channel,
    client_id: &str,
    client_secret: &str,
    scopes: &[&str],
) -> Result<String, tonic::Status> {
    let response = fiscus_proto::v1::token_service_client::TokenServiceClient::new(channel)
        .issue_service_token(fiscus_proto::v1::IssueServiceTokenRequest {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().access_token)
}

/// How long a process may take to start before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis Cluster that `make test` starts (`deploy/local/ensure-redis-cluster.sh`).
pub fn redis_cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

/// A binary of this workspace, built by `cargo build --workspace --bins` (as `make test` does).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A unique, valid Postgres schema name for one test, ending in a UUID v7 so that the name says
/// when it was made (`sweep-schemas` drops old ones).
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A running fiscus process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where it serves its metrics (the admin port), as it logged.
    pub admin: Option<SocketAddr>,
    /// `fiscus dev`'s admin token, from `<data-dir>/dev-token`.
    pub dev_token: Option<String>,
    output: tokio::task::JoinHandle<Vec<String>>,
}

impl Process {
    /// Starts a service binary (`receipts`, `payments`, `shifts`, `tokens`) on a free port
    /// against the test Postgres (its own fresh schema) and Redis.
    pub async fn service(kind: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::service_in(kind, &fresh_schema(&format!("e2e_{kind}")), &[], env).await
    }

    /// Like [`Process::service`], in the given schema and with extra arguments.
    pub async fn service_in(
        kind: &str,
        schema: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary(&format!("fiscus-{kind}")));
        command
            .args(args)
            .env("FISCUS_SERVER__LISTEN", "127.0.0.1:0")
            .env("FISCUS_DATABASE__URL", database_url())
            .env("FISCUS_DATABASE__SCHEMA", schema)
            .env("FISCUS_CACHE__URL", redis_url())
            // Its own keys in the shared Redis: replicas of one test share the schema, and so
            // the keys, and no other test's run sees them.
            .env("FISCUS_CACHE__KEY_PREFIX", schema)
            // Tests run side by side: every process on ports of its own.
            .env("FISCUS_ADMIN__LISTEN", "127.0.0.1:0")
            .env("FISCUS_KEYS__MASTER_KEY", TEST_MASTER_KEY)
            .env("FISCUS_TELEMETRY__LOG_FORMAT", "json");
        for (key, value) in env {
            command.env(key, value);
        }
        Self::start(command, |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event.get("message")?.as_str()? == "listening")
                .then(|| event.get("addr")?.as_str()?.parse().ok())
                .flatten()
        })
        .await
    }

    /// Starts `fiscus dev` on a free port with its data in `data_dir`.
    pub async fn dev(data_dir: &Path) -> anyhow::Result<Self> {
        Self::dev_with(data_dir, &[]).await
    }

    /// Like [`Process::dev`], with extra arguments.
    pub async fn dev_with(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary("fiscus"));
        command
            .arg("dev")
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env("FISCUS_ADMIN__LISTEN", "127.0.0.1:0");
        let mut process = Self::start(command, |line| {
            let rest = line.split(" listening on ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .await?;
        process.dev_token = std::fs::read_to_string(data_dir.join("dev-token")).ok();
        Ok(process)
    }

    async fn start(
        mut command: Command,
        listening: impl Fn(&str) -> Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the binary")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        // `fiscus dev` logs on stderr: it is read too, and passed on for the test's own output.
        let stderr = child.stderr.take().context("stderr is piped")?;
        let errors = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                seen.push(line);
            }
            seen
        });
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = listening(&line) {
                    seen.push(line);
                    return Ok(addr);
                }
                seen.push(line);
            }
            bail!(
                "the process exited before listening; it printed:\n{}",
                seen.join("\n")
            )
        })
        .await
        .context("the process did not report where it listens in time")??;
        let seen_at_start = seen.clone();
        // Keep draining stdout so a chatty process never blocks on a full pipe.
        let output = tokio::spawn(async move {
            let mut seen = seen;
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line);
            }
            seen.extend(errors.await.unwrap_or_default());
            seen
        });
        let admin = admin_address(&seen_at_start);
        Ok(Self {
            child,
            addr,
            admin,
            dev_token: None,
            output,
        })
    }

    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// The process id, for reading its memory use.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would: nothing of it runs
    /// after this, no shutdown, no last write.
    pub fn kill_hard(&self) {
        let pid = self.pid().expect("running");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "SIGKILL {pid}");
    }

    /// Sends SIGTERM and waits for the exit; answers the status and everything printed (stdout,
    /// then stderr).
    pub async fn terminate(mut self) -> anyhow::Result<(ExitStatus, Vec<String>)> {
        let pid = self.child.id().context("process already reaped")?;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(killed.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the process did not exit after SIGTERM")??;
        let output = (&mut self.output).await.unwrap_or_default();
        Ok((status, output))
    }

    /// Sends SIGTERM and asserts that the process drains, exits 0 and says it stopped gracefully.
    pub async fn stop_gracefully(self) {
        let (exit, output) = self.terminate().await.expect("stops");
        assert!(exit.success(), "exited with {exit}");
        assert!(
            output
                .iter()
                .any(|l| l.contains("shutdown completed gracefully")),
            "{output:?}"
        );
    }
}

/// The admin port a process logged before it said it listens (JSON: `admin` field; text: the
/// address after `admin=`).
fn admin_address(lines: &[String]) -> Option<SocketAddr> {
    lines
        .iter()
        .filter(|line| line.contains("metrics on the admin port"))
        .find_map(|line| {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
                return event.get("admin")?.as_str()?.parse().ok();
            }
            line.split("admin=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The token service and a receipt service that trusts it, as separate processes on the shared
/// Postgres and Redis (schemas of their own), configured with `config` (TOML) and the test's
/// admin client; `env` goes to both processes, `receipts_env` to the receipt service alone.
pub struct ReceiptsCluster {
    pub tokens: Process,
    pub receipts: Process,
    /// A token with every scope.
    pub token: String,
    _dir: tempfile::TempDir,
}

impl ReceiptsCluster {
    pub async fn start(
        config: &str,
        env: &[(&str, &str)],
        receipts_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("fiscus.toml");
        std::fs::write(&file, format!("{config}\n{AUTH_CONFIG}"))?;
        let file = file.to_str().context("a UTF-8 path")?;
        let tokens = Process::service_in(
            "tokens",
            &fresh_schema("e2e_tokens"),
            &["--config", file],
            env,
        )
        .await
        .context("fiscus-tokens starts")?;
        let peer = format!("http://{}", tokens.addr);
        let mut all = env.to_vec();
        all.extend_from_slice(receipts_env);
        all.push(("FISCUS_PEERS__TOKENS", &peer));
        let receipts = Process::service_in(
            "receipts",
            &fresh_schema("e2e_receipts"),
            &["--config", file],
            &all,
        )
        .await
        .context("fiscus-receipts starts")?;
        let token = issue_token(tokens.channel().await, "e2e-admin", "e2e-admin-secret", &[])
            .await
            .context("an admin token")?;
        Ok(Self {
            tokens,
            receipts,
            token,
            _dir: dir,
        })
    }

    /// A client of the receipt service, with the admin token.
    pub async fn client(
        &self,
    ) -> fiscus_proto::v1::receipt_service_client::ReceiptServiceClient<Authed> {
        fiscus_proto::v1::receipt_service_client::ReceiptServiceClient::with_interceptor(
            self.receipts.channel().await,
            Bearer::new(&self.token),
        )
    }
}

/// A plaintext gRPC channel to `addr`.
pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connects to the test server")
}

/// The services a server lists through reflection, asked in both protocol versions: v1, and
/// v1alpha (all Python's grpcio, Postman, Evans and older grpcurl speak). Both must agree.
pub async fn list_services(channel: Channel) -> anyhow::Result<Vec<String>> {
    use tonic_reflection::pb::v1alpha;
    let mut client = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let response = responses.next().await.context("no reflection answer")??;
    let v1 = match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => bail!("unexpected reflection answer: {other:?}"),
    };

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .context("reflection v1alpha")?
        .into_inner();
    let response = responses
        .next()
        .await
        .context("no reflection v1alpha answer")??;
    let v1alpha = match response.message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => bail!("unexpected reflection v1alpha answer: {other:?}"),
    };
    // Each version lists itself; everything else must agree.
    let others = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| !n.starts_with("grpc.reflection."))
            .cloned()
            .collect()
    };
    anyhow::ensure!(
        others(&v1) == others(&v1alpha),
        "v1 lists {v1:?} but v1alpha {v1alpha:?}"
    );
    Ok(v1)
}

/// What grpc.health.v1 says of `service` (`""` for the whole server).
pub async fn health(channel: Channel, service: &str) -> anyhow::Result<ServingStatus> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    Ok(response.status())
}

/// Runs a binary to completion (for start-up failures): exit status, stdout, stderr.
pub async fn run_to_exit(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut command = Command::new(binary(name));
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .context("the process did not exit")??;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A Postgres server of one test's own, on a spare port, so that the test can stop and start it
/// under a running service (an outage) without touching the Postgres other tests share. It uses
/// the installed server's binaries; as root it runs them as the `postgres` user, as Postgres
/// requires. Stopped when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("no Postgres server is installed under /usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .context("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir()?;
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        let server = Self {
            dir,
            bin,
            port: free_port()?,
            as_root,
        };
        if as_root {
            server.run("chown", &["-R", "postgres", &server.dir()])?;
        }
        let data = server.data();
        server.run(
            &server.tool("initdb"),
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )?;
        server.start_again()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way an operator does (`pg_ctl stop -m fast`): its sessions are told
    /// it is shutting down, and new connections are refused.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run(
            &self.tool("pg_ctl"),
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        )
    }

    pub fn start_again(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir()
        );
        let log = format!("{}/server.log", self.dir());
        self.run(
            &self.tool("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir())
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = if self.as_root && program != "chown" {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", program]);
            command
        } else {
            std::process::Command::new(program)
        };
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            &self.tool("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// ---------------------------------------------------------------------------------------------
// Requests the tests send
// ---------------------------------------------------------------------------------------------

/// A fresh operation id.
pub fn op() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A terminal of branch 001.
pub fn terminal(tin: &str, pos: &str) -> pb::Terminal {
    pb::Terminal {
        merchant_tin: tin.into(),
        branch_no: "001".into(),
        pos_no: pos.into(),
    }
}

/// A terminal no other test uses.
pub fn unique_terminal(tin: &str) -> pb::Terminal {
    terminal(tin, &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// An item as a POS sends it (tax computed by fiscus).
pub fn item(name: &str, quantity: &str, unit_price: &str, tax: pb::TaxType) -> pb::ChargeItem {
    pb::ChargeItem {
        name: name.into(),
        quantity: quantity.into(),
        unit_price: unit_price.into(),
        tax_type: tax.into(),
        measure_unit: "ш".into(),
        classification_code: "2349010".into(),
        ..Default::default()
    }
}

/// A cash payment.
pub fn cash(amount: &str) -> pb::PayItem {
    pb::PayItem {
        method: pb::PaymentMethod::Cash.into(),
        amount: amount.into(),
        ..Default::default()
    }
}

/// A B2C sale of `items`, paid `paid` in cash.
pub fn sale(
    terminal: &pb::Terminal,
    items: Vec<pb::ChargeItem>,
    paid: &str,
) -> pb::SignReceiptRequest {
    pb::SignReceiptRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        r#type: pb::ReceiptType::B2cReceipt.into(),
        kind: pb::ReceiptKind::Sale.into(),
        receipt_reference: format!("order-{}", uuid::Uuid::new_v4().simple()),
        items,
        payments: vec![cash(paid)],
        ..Default::default()
    }
}

/// A B2C sale of one loaf at 5600, VAT included, paid in cash.
pub fn bread_sale(terminal: &pb::Terminal) -> pb::SignReceiptRequest {
    sale(
        terminal,
        vec![item("Талх", "1", "5600", pb::TaxType::VatAble)],
        "5600",
    )
}

/// A refund on `terminal` of `lines` — (position, quantity) — of receipt `original` (everything
/// not refunded yet when empty), paid back `paid` in cash.
pub fn refund(
    terminal: &pb::Terminal,
    original: &str,
    lines: &[(u32, &str)],
    paid: &str,
) -> pb::SignReceiptRequest {
    pb::SignReceiptRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        kind: pb::ReceiptKind::Refund.into(),
        receipt_reference: format!("refund-{}", uuid::Uuid::new_v4().simple()),
        payments: vec![cash(paid)],
        refund_of: Some(pb::RefundReference {
            original: Some(pb::refund_reference::Original::ReceiptId(original.into())),
            lines: lines
                .iter()
                .map(|(position, quantity)| pb::RefundLine {
                    position: *position,
                    quantity: (*quantity).into(),
                })
                .collect(),
        }),
        ..Default::default()
    }
}

/// The receipt `id`, as GetReceipt answers it.
pub async fn receipt(
    client: &mut pb::receipt_service_client::ReceiptServiceClient<Authed>,
    id: &str,
) -> pb::Receipt {
    client
        .get_receipt(pb::GetReceiptRequest {
            lookup: Some(pb::get_receipt_request::Lookup::ReceiptId(id.into())),
            ..Default::default()
        })
        .await
        .expect("found")
        .into_inner()
        .receipt
        .expect("a receipt")
}

/// Waits until every receipt of `ids` is in `state` (90 s at most: a test that waits longer
/// has found a defect).
pub async fn settle(
    client: &mut pb::receipt_service_client::ReceiptServiceClient<Authed>,
    ids: &[String],
    state: pb::FiscalState,
) {
    let mut waiting: std::collections::HashSet<&String> = ids.iter().collect();
    for _ in 0..900 {
        let mut still = std::collections::HashSet::new();
        for id in waiting {
            if receipt(client, id).await.fiscal_state() != state {
                still.insert(id);
            }
        }
        if still.is_empty() {
            return;
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} receipts never reached {state:?}: {waiting:?}",
        waiting.len()
    );
}

/// The cancellation of receipt `id` on `terminal`, for `reason`.
pub fn cancellation(terminal: &pb::Terminal, id: &str, reason: &str) -> pb::CancelReceiptRequest {
    pb::CancelReceiptRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        receipt: Some(pb::cancel_receipt_request::Receipt::ReceiptId(id.into())),
        reason: reason.into(),
        ..Default::default()
    }
}
