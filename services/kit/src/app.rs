//! Running one service as its own process: configuration, telemetry, stores, serve, exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use secrecy::ExposeSecret;
use tonic::service::RoutesBuilder;

use crate::auth::{AuthLayer, PeerKeys, TokenVerifier};
use crate::cache::{self, CacheSettings, SharedCache};
use crate::config::{Config, ServiceKind};
use crate::db::{ConnectSettings, Database, Migrations};
use crate::peers::Peers;
use crate::telemetry::{self, LogTarget};

/// Everything a service needs to serve: built by the process that hosts it.
#[derive(Clone)]
pub struct ServiceContext {
    pub config: Arc<Config>,
    pub db: Database,
    pub cache: SharedCache,
    pub peers: Peers,
}

/// What a service crate hands to the process that hosts it.
pub struct ServiceModule {
    pub kind: ServiceKind,
    pub migrations: &'static Migrations,
    /// Adds the service to `routes`; answers its fully-qualified gRPC name (for health).
    pub mount: fn(ServiceContext, &mut RoutesBuilder) -> anyhow::Result<&'static str>,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A fiscus service. Configuration: a TOML file, then FISCUS_* variables."
)]
struct Args {
    /// TOML configuration file; every key can also be set as FISCUS_SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// The whole `main` of a service binary.
pub fn main(module: &'static ServiceModule) -> ExitCode {
    let args = Args::parse();
    let binary = format!("fiscus-{}", module.kind.name());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{binary}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(module, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, skipping a cause its parent's message already repeats
/// (many library errors print their source inside their own message).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.as_str()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(module: &'static ServiceModule, config: Option<PathBuf>) -> anyhow::Result<()> {
    let kind = module.kind;
    let config = Config::load(config.as_deref())?;
    config.validate_for(kind)?;
    let _telemetry = telemetry::init(
        &format!("fiscus-{}", kind.name()),
        &config.telemetry,
        LogTarget::Stdout,
    )?;

    let listener = crate::server::bind(config.listen_for(kind)).await?;
    let db = Database::connect(
        config.database.url.expose_secret(),
        &config.schema_for(kind),
        &ConnectSettings {
            max_connections: config.database.max_connections,
            connect_timeout: Duration::from_millis(config.database.connect_timeout_ms),
        },
    )
    .await?;
    db.migrate(kind.name(), module.migrations).await?;
    let cache = open_cache(&config)?;
    let peers = Peers::connect_lazy(&config.peers)?;

    let auth = auth_layer(&config, &peers);
    let config = Arc::new(config);
    let mut routes = RoutesBuilder::default();
    let name = (module.mount)(
        ServiceContext {
            config: config.clone(),
            db: db.clone(),
            cache,
            peers,
        },
        &mut routes,
    )?;
    let addr = listener.local_addr()?;
    // Before saying it listens: whoever waits for that may stop it at once.
    let stop = crate::server::termination_signal();
    tracing::info!(%addr, service = name, database = db.backend(), "listening");
    crate::server::serve(&config.server, listener, routes, &[name], auth, stop).await?;
    db.close().await;
    Ok(())
}

/// Opens the configured cache.
pub fn open_cache(config: &Config) -> Result<SharedCache, cache::CacheError> {
    cache::open(
        config.cache.url.expose_secret(),
        &CacheSettings {
            key_prefix: config.cache.key_prefix.clone(),
            connect_timeout: Duration::from_millis(config.cache.connect_timeout_ms),
            response_timeout: Duration::from_millis(config.cache.response_timeout_ms),
        },
    )
}

/// The authentication layer the configuration asks for: on unless `auth.enabled = false`.
pub fn auth_layer(config: &Config, peers: &Peers) -> Option<AuthLayer> {
    if !config.auth.enabled {
        tracing::warn!(
            "authentication is OFF (auth.enabled = false): every caller may do everything"
        );
        return None;
    }
    Some(AuthLayer(Arc::new(TokenVerifier::new(
        &config.auth.issuer,
        &config.auth.audience,
        Box::new(PeerKeys(peers.tokens.clone())),
    ))))
}
