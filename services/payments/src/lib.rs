//! PaymentService: MIA-style QR payments.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use fiscus_kit::auth::{ServiceScopes, read_or_write};
use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

const NAME: &str = PaymentServiceServer::<Payments>::NAME;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Payments,
    name: NAME,
    migrations: &Migrations::NONE,
    scopes: ServiceScopes {
        service: NAME,
        scope: |method| Some(read_or_write("payments", method)),
    },
    mount,
};

fn mount(_ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    routes.add_service(WithUnlanded::new(
        PaymentServiceServer::new(Payments),
        UNLANDED,
    ));
    Ok(())
}

/// The `fiscus.v1.PaymentService` implementation.
#[derive(Debug, Clone, Copy)]
pub struct Payments;

#[tonic::async_trait]
impl PaymentService for Payments {}

const MISSING: &str =
    "QR payments against MIA POS are not built yet (they follow the token service, issue #4)";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "CreateQr",
        missing: MISSING,
    },
    Unlanded {
        method: "GetQr",
        missing: MISSING,
    },
    Unlanded {
        method: "ListActiveQrs",
        missing: MISSING,
    },
    Unlanded {
        method: "CancelQr",
        missing: MISSING,
    },
    Unlanded {
        method: "CreatePaymentRequest",
        missing: MISSING,
    },
    Unlanded {
        method: "CancelPaymentRequest",
        missing: MISSING,
    },
    Unlanded {
        method: "GetPaymentStatus",
        missing: MISSING,
    },
    Unlanded {
        method: "WatchPayment",
        missing: MISSING,
    },
    Unlanded {
        method: "ListTransactions",
        missing: MISSING,
    },
    Unlanded {
        method: "GetTransaction",
        missing: MISSING,
    },
    Unlanded {
        method: "RefundTransaction",
        missing: MISSING,
    },
    Unlanded {
        method: "GetTerminalSettings",
        missing: MISSING,
    },
    Unlanded {
        method: "UpdateTerminalSettings",
        missing: MISSING,
    },
];
