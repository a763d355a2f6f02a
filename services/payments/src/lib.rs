//! PaymentService: MIA POS QR payments — dynamic, static and hybrid QR codes, payment requests,
//! live payment status, transactions and refunds, terminal settings.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod config;
mod metrics;
mod mia;
mod payments;
mod proto;
mod qrs;
mod service;
mod shifts;
mod store;
mod transactions;
mod watch;

use std::sync::Arc;

use fiscus_kit::auth::{ServiceScopes, read_or_write};
use fiscus_kit::peers::ServiceIdentity;
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::payment_service_server::PaymentServiceServer;
use fiscus_providers::MiaClient;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use config::{DeviceConfig, PaymentsConfig};
pub use service::PaymentsService;

const NAME: &str = PaymentServiceServer::<PaymentsService>::NAME;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Payments,
    name: NAME,
    migrations: &MIGRATIONS,
    scopes: ServiceScopes {
        service: NAME,
        scope: |method| {
            // What ShiftService asks of the payments is not for a till to call.
            if matches!(
                method,
                "SetTerminalShift" | "GetShiftPaymentTotals" | "ListShiftPayments"
            ) {
                Some("payments:shifts".to_owned())
            } else {
                Some(read_or_write("payments", method))
            }
        },
    },
    mount,
};

static MIGRATIONS: Migrations = fiscus_kit::service_migrations!("_payments_migrations");

/// The scopes this service's own token needs at TokenService: MIA tokens, and dropping one MIA
/// refused.
pub const TOKEN_SCOPES: [&str; 2] = ["tokens:read", "tokens:write"];

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    let section: PaymentsConfig = ctx.config.section(ServiceKind::Payments)?;
    // MIA's latency, as the upstream clients time it, on this process's admin port.
    fiscus_providers::metrics::register(&mut fiscus_kit::metrics::registry());
    // The watchers open, moved by every WatchPayment stream.
    metrics::init();
    let client = if section.mia_url.is_empty() {
        None
    } else {
        Some(
            MiaClient::new(&section.mia_url, section.mia_timeout())?.with_device(section.device()?),
        )
    };
    let identity = ServiceIdentity::new(
        ctx.peers.tokens.clone(),
        &section.client_id,
        section.client_secret.clone(),
        &TOKEN_SCOPES,
    );
    let watchers = watch::Watchers::new(section.max_watchers, ctx.shutdown.clone());
    let interval = section.poll_interval();
    let poll_mia = section.poll_mia;
    let payments = Arc::new(payments::Payments {
        db: ctx.db.clone(),
        db_status: ctx.db_status.clone(),
        cache: ctx.cache.clone(),
        mia: mia::Mia::new(client, ctx.peers.tokens.clone(), identity),
        config: section,
        watchers: watchers.clone(),
    });
    tokio::spawn(watch::listen(
        ctx.cache.clone(),
        Arc::downgrade(&watchers),
        ctx.shutdown.clone(),
    ));
    tokio::spawn(watch::poll(
        Arc::downgrade(&payments),
        interval,
        poll_mia,
        ctx.shutdown.clone(),
    ));
    routes.add_service(PaymentServiceServer::new(PaymentsService { payments }));
    Ok(())
}
