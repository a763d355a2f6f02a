//! The journal database: a Postgres pool confined to the service's own schema, or a SQLite file.
//!
//! Both backends run the same SQL where the dialects agree (`$1` placeholders work on both);
//! [`with_db!`](crate::with_db) writes a query once and type-checks it against each backend.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::redact_url;
use crate::error::ApiError;
use crate::health::ServiceHealth;
use crate::server::Shutdown;

/// A service's database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The migrations of one service, one set per dialect, embedded at compile time.
#[derive(Debug)]
pub struct Migrations {
    pub postgres: Migrator,
    pub sqlite: Migrator,
}

impl Migrations {
    /// For a service that keeps no tables of its own yet (it still gets the shared ones).
    pub const NONE: Migrations = Migrations {
        postgres: Migrator::DEFAULT,
        sqlite: Migrator::DEFAULT,
    };
}

/// Tables every service has (the idempotency journal), tracked apart from the service's own
/// migrations so that both sets can grow independently.
static KIT_MIGRATIONS: Migrations = crate::service_migrations!("_fiscus_kit_migrations");

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

impl ConnectSettings {
    pub fn from_config(config: &crate::config::DatabaseConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            statement_timeout: Duration::from_millis(config.statement_timeout_ms),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database: {0} is not a usable URL (expected postgres://… or sqlite://…)")]
    BadUrl(String),
    #[error("database: schema name {0:?} must be lowercase letters, digits and underscores")]
    BadSchema(String),
    #[error("database: migrating {service}")]
    Migrate {
        service: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl Database {
    /// Connects to `url`; on Postgres every connection works inside `schema`, created if missing.
    #[tracing::instrument(skip(url, settings), fields(url = %redact_url(url)))]
    pub async fn connect(
        url: &str,
        schema: &str,
        settings: &ConnectSettings,
    ) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, schema, settings).await
        } else if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, settings).await
        } else {
            Err(DbError::BadUrl(redact_url(url)))
        }
    }

    /// Opens (and creates) a SQLite file: the embedded default of `fiscus dev`.
    pub async fn open_sqlite_file(
        path: &std::path::Path,
        settings: &ConnectSettings,
    ) -> Result<Self, DbError> {
        Self::connect_sqlite(&format!("sqlite://{}", path.display()), settings).await
    }

    async fn connect_postgres(
        url: &str,
        schema: &str,
        settings: &ConnectSettings,
    ) -> Result<Self, DbError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(DbError::BadSchema(schema.to_owned()));
        }
        let connect_error = |source| DbError::Connect {
            url: redact_url(url),
            source,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(connect_error)?
            .log_statements(tracing::log::LevelFilter::Trace);

        // The schema must exist before connections pin their search_path to it.
        let mut setup = tokio::time::timeout(settings.connect_timeout, options.connect())
            .await
            .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
            .map_err(connect_error)?;
        // `schema` was checked above to be a plain identifier.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut setup)
        .await
        .or_else(tolerate_concurrent_create)
        .map_err(connect_error)?;
        setup.close().await.map_err(connect_error)?;

        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            // A request waiting on a row lock (a busy chain, a duplicate operation) gives up
            // after a bound and answers ABORTED instead of holding a connection forever.
            .connect_with(options.options([
                ("search_path", schema),
                ("lock_timeout", "5s"),
                (
                    "statement_timeout",
                    &format!("{}ms", settings.statement_timeout.as_millis()),
                ),
            ]))
            .await
            .map_err(connect_error)?;
        Ok(Self::Postgres(pool))
    }

    async fn connect_sqlite(url: &str, settings: &ConnectSettings) -> Result<Self, DbError> {
        let connect_error = |source| DbError::Connect {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect_error)?
            .create_if_missing(true)
            // WAL lets readers proceed while the single writer appends.
            .journal_mode(SqliteJournalMode::Wal)
            // A fiscal journal must survive power loss: fsync on every commit.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Writers queue on the file lock instead of failing with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5))
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(Self::Sqlite(pool))
    }

    /// Applies the shared tables' migrations, then the service's; already-applied ones are
    /// skipped, so a restart is a no-op and concurrent replicas serialize on the migration lock.
    #[tracing::instrument(skip(self, migrations))]
    pub async fn migrate(
        &self,
        service: &'static str,
        migrations: &Migrations,
    ) -> Result<(), DbError> {
        for set in [&KIT_MIGRATIONS, migrations] {
            let result = match self {
                Self::Postgres(pool) => set.postgres.run(pool).await,
                Self::Sqlite(pool) => set.sqlite.run(pool).await,
            };
            result.map_err(|source| DbError::Migrate { service, source })?;
        }
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so two writers queue instead of one failing when it upgrades from reading.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// `"postgres"` or `"sqlite"`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// An open write transaction on either backend.
#[derive(Debug)]
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.rollback().await,
            Self::Sqlite(tx) => tx.rollback().await,
        }
    }
}

/// Two replicas starting together may race on `CREATE … IF NOT EXISTS`; the loser's
/// unique violation means the object exists, which is what it wanted.
fn tolerate_concurrent_create(
    error: sqlx::Error,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            Ok(Default::default())
        }
        _ => Err(error),
    }
}

/// The [`Migrations`] of the crate this is written in: `./migrations/postgres` and
/// `./migrations/sqlite`, tracked in a table of their own named `$table`.
#[macro_export]
macro_rules! service_migrations {
    ($table:literal) => {
        $crate::db::Migrations {
            postgres: ::sqlx::migrate::Migrator {
                table_name: ::std::borrow::Cow::Borrowed($table),
                ..::sqlx::migrate!("./migrations/postgres")
            },
            sqlite: ::sqlx::migrate::Migrator {
                table_name: ::std::borrow::Cow::Borrowed($table),
                ..::sqlx::migrate!("./migrations/sqlite")
            },
        }
    };
}

/// Runs the same body against whichever backend `$db` holds, binding the pool to `$pool`.
/// The body is type-checked once per backend, so one SQL text serves both.
#[macro_export]
macro_rules! with_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Postgres($pool) => $body,
            $crate::db::Database::Sqlite($pool) => $body,
        }
    };
}

/// Runs the same body inside whichever backend's transaction `$tx` (a `&mut Tx`) holds,
/// binding the connection to `$conn`.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// Whether a service's database answers, as a probe in the background sees it: requests that
/// need the database are refused at once (UNAVAILABLE) while it does not, instead of each
/// waiting out a connection timeout, and the service reports NOT_SERVING.
#[derive(Clone, Debug)]
pub struct DatabaseStatus(Arc<AtomicBool>);

/// How often the probe asks, and how long one answer may take.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row before the database counts as down: one slow answer is not an outage.
const PROBES_TO_DOWN: u32 = 3;

impl DatabaseStatus {
    /// Starts probing `db` until `shutdown`; its outages are the `database` fault of `health`.
    pub fn watch(db: Database, health: ServiceHealth, mut shutdown: Shutdown) -> Self {
        let up = Arc::new(AtomicBool::new(true));
        let status = Self(up.clone());
        tokio::spawn(async move {
            let mut failed = 0u32;
            loop {
                let answered = matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await,
                    Ok(Ok(()))
                );
                failed = if answered {
                    0
                } else {
                    failed.saturating_add(1)
                };
                db.report_pool(health.service());
                let now_up = failed < PROBES_TO_DOWN;
                if up.swap(now_up, Ordering::Relaxed) != now_up {
                    health.set_fault("database", !now_up).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                    () = shutdown.requested() => return,
                }
            }
        });
        status
    }

    /// A status that never changes (tools and tests without a probe).
    pub fn always_up() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `UNAVAILABLE` while the database is down: nothing was done, a retry is safe.
    pub fn check(&self) -> Result<(), ApiError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "the journal database is unreachable; nothing was done: retry with the same operation_id"
                    .into(),
            ))
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PoolLabels {
    service: &'static str,
    state: &'static str,
}

static POOL: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        PoolLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
> = std::sync::LazyLock::new(|| {
    crate::metrics::register(
        "fiscus_db_pool_connections",
        "Connections of a service's database pool, in use or idle",
        Default::default(),
    )
});

impl Database {
    /// Reports the pool's connections in use and idle (the probe does, every round).
    fn report_pool(&self, service: &'static str) {
        let (size, idle) = match self {
            Self::Postgres(pool) => (pool.size(), pool.num_idle()),
            Self::Sqlite(pool) => (pool.size(), pool.num_idle()),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let in_use = i64::from(size).saturating_sub(idle);
        for (state, value) in [("in_use", in_use), ("idle", idle)] {
            POOL.get_or_create(&PoolLabels { service, state })
                .set(value);
        }
    }

    /// One round trip: does the database answer?
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))
    }
}
