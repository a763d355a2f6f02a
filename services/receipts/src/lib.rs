//! ReceiptService: validated, taxed, numbered, hash-chained and signed receipts in an
//! idempotent journal, with verification, export and printable receipts.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod append;
mod config;
mod export;
mod forms;
mod journal;
mod metrics;
mod outbox;
mod proto;
mod reference;
mod render;
mod service;
mod signers;
mod store;
mod tokens;
mod validate;
mod watch;

use std::sync::Arc;

use fiscus_kit::auth::{ServiceScopes, read_or_write};
use fiscus_kit::peers::ServiceIdentity;
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::receipt_service_server::ReceiptServiceServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use config::{MerchantConfig, ReceiptsConfig};
pub use service::Receipts;

const NAME: &str = ReceiptServiceServer::<Receipts>::NAME;

/// What this service asks of TokenService: e-barimt tokens for the central API's lookups.
pub const TOKEN_SCOPES: [&str; 1] = ["tokens:read"];

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Receipts,
    name: NAME,
    migrations: &MIGRATIONS,
    scopes: ServiceScopes {
        service: NAME,
        scope: |method| {
            // What ShiftService asks of the journal is not for a till to call.
            if matches!(
                method,
                "SetTerminalShift" | "GetShiftTotals" | "ListShiftReceipts"
            ) {
                Some("receipts:shifts".to_owned())
            } else {
                Some(read_or_write("receipts", method))
            }
        },
    },
    mount,
};

static MIGRATIONS: Migrations = fiscus_kit::service_migrations!("_receipts_migrations");

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    let section: ReceiptsConfig = ctx.config.section(ServiceKind::Receipts)?;
    // e-barimt's latency, as the upstream clients time it, on this process's admin port.
    fiscus_providers::metrics::register(&mut fiscus_kit::metrics::registry());
    let policy = config::Policy::from_config(&section)?;
    let master = ctx.config.master_key()?;
    let watchers =
        watch::Watchers::start(ctx.db.clone(), policy.max_watchers(), ctx.shutdown.clone());
    let tokens = Arc::new(tokens::UpstreamTokens::new(
        ServiceIdentity::new(
            ctx.peers.tokens.clone(),
            &section.client_id,
            section.client_secret.clone(),
            &TOKEN_SCOPES,
        ),
        ctx.peers.tokens.clone(),
    ));
    let (outbox, closings) = outbox::Outbox::start(
        ctx.db.clone(),
        &policy,
        Arc::clone(&tokens),
        Arc::clone(&watchers),
        ctx.shutdown.clone(),
    )?;
    let forms = match &section.transaction_forms {
        Some(path) => Some(Arc::new(forms::Forms::load(path)?)),
        None => None,
    };
    let journal = Arc::new(journal::Journal::new(
        ctx.db.clone(),
        ctx.db_status.clone(),
        ctx.cache.clone(),
        policy,
        master,
        ctx.health.clone(),
        watchers.clone(),
        outbox,
    ));
    tokio::spawn(journal::close_late_signing(
        Arc::clone(&journal),
        closings,
        ctx.shutdown.clone(),
    ));
    let server = ReceiptServiceServer::new(Receipts {
        journal,
        watchers,
        forms,
        reference: Arc::new(reference::Reference::new(
            ctx.cache.clone(),
            &section.outbox,
            tokens,
        )),
    })
    .max_decoding_message_size(section.max_request_bytes)
    .max_encoding_message_size(64 * 1024 * 1024);
    routes.add_service(server);
    Ok(())
}
