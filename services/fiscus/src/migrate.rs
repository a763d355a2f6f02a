//! `fiscus migrate`: every service's migrations against the configured database, each in its
//! own schema, then exit — the Helm chart runs it as a hook before new pods start.

use std::path::PathBuf;

use fiscus_kit::config::Config;
use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_kit::telemetry::{self, LogTarget};
use secrecy::ExposeSecret;

use crate::dev::MODULES;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// TOML configuration, more than once to layer files (`database` is what matters).
    #[arg(long, short)]
    config: Vec<PathBuf>,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let _telemetry = telemetry::init("fiscus-migrate", &config.telemetry, LogTarget::Stdout)?;
    for module in MODULES {
        let kind = module.kind;
        let schema = config.schema_for(kind);
        let db = Database::connect(
            config.database.url.expose_secret(),
            &schema,
            &ConnectSettings::from_config(&config.database),
        )
        .await?;
        db.migrate(kind.name(), module.migrations).await?;
        db.close().await;
        tracing::info!(service = kind.name(), %schema, "migrated");
    }
    Ok(())
}
