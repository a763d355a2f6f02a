//! ShiftService: shifts and X/Z reports.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::shift_service_server::{ShiftService, ShiftServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Shifts,
    migrations: &Migrations::NONE,
    mount,
};

fn mount(_ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<&'static str> {
    routes.add_service(WithUnlanded::new(ShiftServiceServer::new(Shifts), UNLANDED));
    Ok(ShiftServiceServer::<Shifts>::NAME)
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
