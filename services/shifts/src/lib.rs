//! ShiftService: shifts and X/Z reports.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use fiscus_kit::auth::{ServiceScopes, read_or_write};
use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::shift_service_server::{ShiftService, ShiftServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

const NAME: &str = ShiftServiceServer::<Shifts>::NAME;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Shifts,
    name: NAME,
    migrations: &Migrations::NONE,
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

fn mount(_ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    routes.add_service(WithUnlanded::new(ShiftServiceServer::new(Shifts), UNLANDED));
    Ok(())
}

/// The `fiscus.v1.ShiftService` implementation.
#[derive(Debug, Clone, Copy)]
pub struct Shifts;

#[tonic::async_trait]
impl ShiftService for Shifts {}

const MISSING: &str =
    "shifts and X/Z reports are not built yet (they aggregate the receipt journal of issue #3)";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "OpenShift",
        missing: MISSING,
    },
    Unlanded {
        method: "GetCurrentShift",
        missing: MISSING,
    },
    Unlanded {
        method: "CloseShift",
        missing: MISSING,
    },
    Unlanded {
        method: "GetXReport",
        missing: MISSING,
    },
    Unlanded {
        method: "GetZReport",
        missing: MISSING,
    },
    Unlanded {
        method: "ListShifts",
        missing: MISSING,
    },
];
