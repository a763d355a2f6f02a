//! Running one service as its own process: configuration, telemetry, stores, serve, exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use secrecy::ExposeSecret;
use tonic::service::RoutesBuilder;

use crate::auth::{AuthLayer, PeerKeys, ServiceScopes, TokenVerifier};
use crate::cache::{self, CacheSettings, SharedCache};
use crate::config::{Config, ServiceKind};
use crate::db::{ConnectSettings, Database, DatabaseStatus, Migrations};
use crate::health::{Health, ServiceHealth};
use crate::peers::Peers;
use crate::server::Shutdown;
use crate::server::ShutdownTrigger;
use crate::telemetry::{self, LogTarget};

/// Everything a service needs to serve: built by the process that hosts it.
#[derive(Clone)]
pub struct ServiceContext {
    pub config: Arc<Config>,
    pub db: Database,
    /// Whether `db` answers, probed in the background.
    pub db_status: DatabaseStatus,
    pub cache: SharedCache,
    pub peers: Peers,
    /// The service's readiness: raise a fault while something it needs is down.
    pub health: ServiceHealth,
    /// Resolves when the process begins to shut down: open streams end then.
    pub shutdown: Shutdown,
}

/// What a service crate hands to the process that hosts it.
pub struct ServiceModule {
    pub kind: ServiceKind,
    /// The fully-qualified gRPC service name (`fiscus.v1.ReceiptService`): health reports it.
    pub name: &'static str,
    pub migrations: &'static Migrations,
    /// The scope each of its RPCs needs.
    pub scopes: ServiceScopes,
    /// Adds the service to `routes`.
    pub mount: fn(ServiceContext, &mut RoutesBuilder) -> anyhow::Result<()>,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A fiscus service. Configuration: TOML files, then FISCUS_SECTION__KEY variables."
)]
struct Args {
    /// TOML configuration file; give it more than once to layer files, later over earlier.
    /// Every key can also be set as FISCUS_SECTION__KEY.
    #[arg(long, short)]
    config: Vec<PathBuf>,
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

async fn run(module: &'static ServiceModule, files: Vec<PathBuf>) -> anyhow::Result<()> {
    let kind = module.kind;
    let config = Config::load(&files)?;
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
        &ConnectSettings::from_config(&config.database),
    )
    .await?;
    db.migrate(kind.name(), module.migrations).await?;
    let cache = open_cache(&config)?;
    let peers = Peers::connect_lazy(&config.peers)?;

    let auth = auth_layer(&config, &peers, vec![module.scopes]);
    let mut process = Process::new();
    if config.admin.enabled {
        let admin = crate::admin::start(config.admin_listen_for(kind), process.shutdown())
            .await
            .map_err(|e| anyhow::anyhow!("admin port {}: {e}", config.admin_listen_for(kind)))?;
        tracing::info!(%admin, "metrics on the admin port");
    }
    process
        .mount(module, Arc::new(config.clone()), db.clone(), cache, peers)
        .await?;
    let addr = listener.local_addr()?;
    // Before saying it listens: whoever waits for that may stop it at once.
    let signal = crate::server::termination_signal();
    tracing::info!(%addr, service = module.name, database = db.backend(), "listening");
    process.serve(&config, listener, auth, signal).await?;
    db.close().await;
    Ok(())
}

/// One process's services: their routes, their health, and their shutdown. A service binary
/// hosts one; `fiscus dev` and the benchmark host several the same way.
pub struct Process {
    routes: RoutesBuilder,
    health: Health,
    stop: ShutdownTrigger,
    shutdown: Shutdown,
}

impl Default for Process {
    fn default() -> Self {
        Self::new()
    }
}

impl Process {
    pub fn new() -> Self {
        let (health, health_server) = Health::new();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_server);
        let (stop, shutdown) = Shutdown::new();
        Self {
            routes,
            health,
            stop,
            shutdown,
        }
    }

    /// What tells the process's long-lived work that it is shutting down.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Mounts `module` on its own database: its health is reported from now on, and a probe
    /// watches its database.
    pub async fn mount(
        &mut self,
        module: &'static ServiceModule,
        config: Arc<Config>,
        db: Database,
        cache: SharedCache,
        peers: Peers,
    ) -> anyhow::Result<()> {
        let health = self.health.register(module.name).await;
        let context = ServiceContext {
            config,
            db_status: DatabaseStatus::watch(db.clone(), health.clone(), self.shutdown.clone()),
            db,
            cache,
            peers,
            health,
            shutdown: self.shutdown.clone(),
        };
        (module.mount)(context, &mut self.routes)
    }

    /// Serves the mounted services until `signal`, then shuts down gracefully. RPCs are
    /// measured when the configuration serves metrics (`admin.enabled`).
    pub async fn serve(
        self,
        config: &Config,
        listener: tokio::net::TcpListener,
        auth: Option<AuthLayer>,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), crate::server::ServeError> {
        crate::server::serve(
            &config.server,
            listener,
            self.routes,
            auth,
            config.admin.enabled,
            &self.health,
            self.stop,
            signal,
        )
        .await
    }
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

/// The authentication layer the configuration asks for: on unless `auth.enabled = false`;
/// `scopes` are those of the services the process hosts.
pub fn auth_layer(config: &Config, peers: &Peers, scopes: Vec<ServiceScopes>) -> Option<AuthLayer> {
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
        scopes,
    ))))
}
