//! `fiscus dev`: the four services in one process, on one port, on embedded storage.
//!
//! Each service still gets its own SQLite file and still calls the others over gRPC (through
//! this same port), so what works here works the same way as separate processes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fiscus_kit::app::Process;
use fiscus_kit::cache::{MemoryCache, SharedCache};
use fiscus_kit::config::{AuthClient, Config, LogFormat, MasterKey, PeersConfig, ServiceKind};
use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_kit::peers::Peers;
use fiscus_kit::telemetry::{self, LogTarget};
use fiscus_kit::{ServiceModule, server};
use fiscus_tokens::Identity;
use secrecy::SecretString;
use std::time::Duration;

pub const MODULES: [&ServiceModule; 4] = [
    &fiscus_receipts::MODULE,
    &fiscus_payments::MODULE,
    &fiscus_shifts::MODULE,
    &fiscus_tokens::MODULE,
];

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address of the one gRPC port that serves all four services.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory for the SQLite journals and the generated master key.
    #[arg(long, default_value = "./.fiscus")]
    data_dir: PathBuf,
    /// TOML configuration, more than once to layer files; database and cache settings are
    /// ignored in dev mode.
    #[arg(long, short)]
    config: Vec<PathBuf>,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if std::env::var_os("FISCUS_TELEMETRY__LOG_FORMAT").is_none() {
        config.telemetry.log_format = LogFormat::Text;
    }
    let _telemetry = telemetry::init("fiscus-dev", &config.telemetry, LogTarget::Stderr)?;

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    if config.keys.master_key.is_none() {
        let key = dev_master_key(&args.data_dir.join("master.key"))?;
        config.keys.master_key = Some(SecretString::from(key.to_hex()));
    }

    let identities = if config.auth.enabled {
        service_clients()?
    } else {
        Vec::new()
    };
    let (sandboxes, defaults) = crate::sandboxes::start(&random_hex::<16>()?).await?;
    let mut config = config
        .with_section_defaults(&defaults)?
        .with_section_defaults(
            &identities
                .iter()
                .map(ServiceClient::toml)
                .collect::<String>(),
        )?;
    let listener = server::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let reachable = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    config.peers = PeersConfig::all_at(&format!("http://{reachable}"));
    let peers = Peers::connect_lazy(&config.peers)?;
    let dev_secret = random_hex::<32>()?;
    if config.auth.enabled {
        config.auth.clients.push(AuthClient {
            client_id: DEV_CLIENT.to_owned(),
            client_secret: SecretString::from(dev_secret.clone()),
            scopes: vec![fiscus_kit::auth::ADMIN.to_owned()],
            merchants: Vec::new(),
        });
        for client in identities {
            config.auth.clients.push(AuthClient {
                client_id: client.client_id.to_owned(),
                client_secret: SecretString::from(client.secret),
                scopes: client.scopes.iter().map(|s| (*s).to_owned()).collect(),
                merchants: Vec::new(),
            });
        }
    }
    let cache: SharedCache = Arc::new(MemoryCache::new(&config.cache.key_prefix));
    let config = Arc::new(config);

    let mut process = Process::new();
    let mut databases = Vec::new();
    let mut tokens_db = None;
    for module in MODULES {
        let service = module.kind.name();
        let db = Database::open_sqlite_file(
            &args.data_dir.join(format!("{service}.db")),
            &ConnectSettings::default(),
        )
        .await?;
        db.migrate(service, module.migrations).await?;
        process
            .mount(
                module,
                config.clone(),
                db.clone(),
                cache.clone(),
                peers.clone(),
            )
            .await?;
        if module.kind == ServiceKind::Tokens {
            tokens_db = Some(db.clone());
        }
        databases.push(db);
    }
    let names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();

    let token_file = args.data_dir.join("dev-token");
    if config.auth.enabled {
        let identity = Identity::new(
            tokens_db
                .clone()
                .context("the token service's database is open")?,
            config.master_key()?,
            config.auth.clone(),
        );
        write_dev_token(&identity, &dev_secret, &token_file).await?;
        // Tokens live 15 minutes at most: keep the file fresh for the whole session.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(600)).await;
                if let Err(e) = write_dev_token(&identity, &dev_secret, &token_file).await {
                    tracing::warn!(error = %format!("{e:#}"), "renewing the dev token failed");
                }
            }
        });
    }
    let admin = if config.admin.enabled {
        let at = config
            .admin
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEV_ADMIN_PORT)));
        let admin = fiscus_kit::admin::start(at, process.shutdown())
            .await
            .with_context(|| format!("admin port {at}"))?;
        tracing::info!(%admin, "metrics on the admin port");
        Some(admin)
    } else {
        None
    };
    print_banner(reachable, &args.data_dir, &names, config.auth.enabled);
    if let Some(admin) = admin {
        println!("metrics: http://{admin}/metrics");
    }
    println!(
        "sandboxes: POSAPI 3.0 {} (e-barimt merchant {}), fiskaltrust {} (merchant {}, Italy), e-barimt auth {} (merchant {}), MIA POS {} (terminal {} of {}, seller {} / {}; OTPs appear in the log)",
        sandboxes.ebarimt.base_url(),
        crate::sandboxes::DEV_EBARIMT_MERCHANT,
        sandboxes.fiskaltrust.base_url(),
        crate::sandboxes::DEV_FISKALTRUST_MERCHANT,
        sandboxes.keycloak.base_url(),
        crate::sandboxes::DEV_MERCHANT,
        sandboxes.mia.base_url(),
        crate::sandboxes::MIA_TERMINAL,
        crate::sandboxes::MIA_MERCHANT_IDNO,
        crate::sandboxes::MIA_SELLER.0,
        crate::sandboxes::MIA_SELLER.1,
    );
    // Before saying it listens: whoever waits for that may stop it at once.
    let signal = server::termination_signal();
    tracing::info!(%addr, services = names.len(), "listening");
    let scopes = MODULES.iter().map(|m| m.scopes).collect();
    let auth = fiscus_kit::app::auth_layer(&config, &peers, scopes);
    let dev_token = config
        .auth
        .enabled
        .then(|| std::fs::read_to_string(args.data_dir.join("dev-token")).ok())
        .flatten();
    // Only a TokenService pointed at the dev sandbox has the dev terminal to activate: a
    // configuration that points MIA elsewhere keeps its upstream untouched.
    let tokens_mia = config
        .section::<fiscus_tokens::TokensConfig>(ServiceKind::Tokens)?
        .mia_url;
    let on_dev_sandbox = tokens_mia == sandboxes.mia.base_url();
    let seller = async {
        if !on_dev_sandbox {
            return;
        }
        match crate::sandboxes::dev_seller_session(reachable, dev_token, &sandboxes.mia).await {
            Ok(session) => {
                let file = args.data_dir.join("mia-session");
                if let Err(e) = std::fs::write(&file, &session) {
                    tracing::warn!(error = %e, "cannot write {}", file.display());
                }
                std::fs::write(
                    args.data_dir.join("mia-sandbox-url"),
                    sandboxes.mia.base_url(),
                )
                .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot write the MIA sandbox URL"));
                let (tin, branch, pos) = crate::sandboxes::MIA_FISCUS_TERMINAL;
                println!(
                    "MIA: terminal {} activated on fiscus terminal {tin}/{branch}/{pos}; seller session {session} (in {})",
                    crate::sandboxes::MIA_TERMINAL,
                    file.display()
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the dev MIA terminal could not be activated")
            }
        }
    };
    let (served, ()) = tokio::join!(process.serve(&config, listener, auth, signal), seller);
    served?;
    for db in databases {
        db.close().await;
    }
    Ok(())
}

/// A service's own client towards its peers, made anew at every start.
struct ServiceClient {
    /// Its configuration section, which names the client.
    section: &'static str,
    client_id: &'static str,
    secret: String,
    scopes: &'static [&'static str],
}

impl ServiceClient {
    /// The client, in its service's section.
    fn toml(&self) -> String {
        format!(
            "[{}]\nclient_id = \"{}\"\nclient_secret = \"{}\"\n",
            self.section, self.client_id, self.secret
        )
    }
}

/// PaymentService's identity towards TokenService (MIA seller tokens), ShiftService's towards
/// ReceiptService (the journal's shift calls), and ReceiptService's towards TokenService
/// (e-barimt tokens for the central API).
fn service_clients() -> anyhow::Result<Vec<ServiceClient>> {
    Ok(vec![
        ServiceClient {
            section: "payments",
            client_id: "fiscus-payments",
            secret: random_hex::<32>()?,
            scopes: &fiscus_payments::TOKEN_SCOPES,
        },
        ServiceClient {
            section: "shifts",
            client_id: "fiscus-shifts",
            secret: random_hex::<32>()?,
            scopes: &fiscus_shifts::PEER_SCOPES,
        },
        ServiceClient {
            section: "receipts",
            client_id: "fiscus-receipts",
            secret: random_hex::<32>()?,
            scopes: &fiscus_receipts::TOKEN_SCOPES,
        },
    ])
}

/// Where `fiscus dev` serves its metrics unless `admin.listen` says otherwise.
const DEV_ADMIN_PORT: u16 = 9460;

/// The client `fiscus dev` issues its admin token to (secret new at every start).
const DEV_CLIENT: &str = "fiscus-dev";

fn random_hex<const N: usize>() -> anyhow::Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Issues an admin token for the dev client and writes it (owner-readable only) to `path`.
async fn write_dev_token(identity: &Identity, secret: &str, path: &Path) -> anyhow::Result<()> {
    let issued = identity
        .issue(DEV_CLIENT, secret, &[], "", chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("issuing the dev token: {e}"))?;
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = create_private(&partial)?;
    file.write_all(issued.token.as_bytes())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The dev master key: made once, kept in the data dir so the journals stay readable across runs.
fn dev_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return MasterKey::from_hex(&text).with_context(|| format!("in {}", path.display()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the dev master key: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = create_private(path)?;
    file.write_all(hex.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    MasterKey::from_hex(&hex).map_err(Into::into)
}

fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn print_banner(addr: SocketAddr, data_dir: &Path, names: &[&str], auth: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "fiscus dev: {} services listening on {addr} (data in {})",
        names.len(),
        data_dir.display()
    );
    for name in names {
        let _ = writeln!(out, "  {name}");
    }
    let token_file = data_dir.join("dev-token");
    if auth {
        let token = std::fs::read_to_string(&token_file).unwrap_or_default();
        let _ = writeln!(out, "admin token (valid 15 minutes): {}", token.trim());
        let _ = writeln!(
            out,
            "the current one is always in {} (renewed every 10 minutes)",
            token_file.display()
        );
    }
    let header = if auth {
        format!(
            " -H \"authorization: Bearer $(cat {})\"",
            token_file.display()
        )
    } else {
        String::new()
    };
    let _ = writeln!(out, "try:");
    let _ = writeln!(out, "  grpcurl -plaintext {addr} list");
    let _ = writeln!(
        out,
        "  grpcurl -plaintext{header} -d '{{\"terminal\":{{\"merchant_tin\":\"37900846788\",\"branch_no\":\"001\",\"pos_no\":\"001\"}}}}' {addr} fiscus.v1.ReceiptService/VerifyJournal"
    );
    let _ = writeln!(
        out,
        "  grpcurl -plaintext -d '{{\"service\":\"fiscus.v1.ReceiptService\"}}' {addr} grpc.health.v1.Health/Check"
    );
    let _ = out.flush();
}
