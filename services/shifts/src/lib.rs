//! ShiftService: a terminal's shifts, one open at a time, and their X- and Z-reports, added up
//! from the receipt journal where it lives.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod config;
mod peers;
mod report;
mod service;
mod store;

use std::sync::Arc;
use std::time::Duration;

use fiscus_kit::auth::{ServiceScopes, read_or_write};
use fiscus_kit::peers::ServiceIdentity;
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::shift_service_server::ShiftServiceServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use config::ShiftsConfig;
pub use service::Shifts;

const NAME: &str = ShiftServiceServer::<Shifts>::NAME;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Shifts,
    name: NAME,
    migrations: &MIGRATIONS,
    scopes: ServiceScopes {
        service: NAME,
        scope: |method| {
            // X and Z reports have a scope of their own, apart from running shifts.
            let area = if matches!(method, "GetXReport" | "GetZReport") {
                "reports"
            } else {
                "shifts"
            };
            Some(read_or_write(area, method))
        },
    },
    mount,
};

static MIGRATIONS: Migrations = fiscus_kit::service_migrations!("_shifts_migrations");

/// The scopes this service's own token needs: ReceiptService's and PaymentService's shift
/// calls.
pub const PEER_SCOPES: [&str; 2] = ["receipts:shifts", "payments:shifts"];

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    let section: ShiftsConfig = ctx.config.section(ServiceKind::Shifts)?;
    let identity = ServiceIdentity::new(
        ctx.peers.tokens.clone(),
        &section.client_id,
        section.client_secret.clone(),
        &PEER_SCOPES,
    );
    let inner = service::Inner {
        db: ctx.db.clone(),
        db_status: ctx.db_status.clone(),
        cache: ctx.cache.clone(),
        recorders: peers::Recorders {
            receipts: ctx.peers.receipts.clone(),
            payments: section.with_payments.then(|| ctx.peers.payments.clone()),
            identity,
            timeout: Duration::from_millis(section.peer_timeout_ms.max(1)),
        },
    };
    routes.add_service(ShiftServiceServer::new(Shifts(Arc::new(inner))));
    Ok(())
}
