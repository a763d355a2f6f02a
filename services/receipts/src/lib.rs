//! ReceiptService: fiscalization and the journal.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::receipt_service_server::{ReceiptService, ReceiptServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Receipts,
    migrations: &Migrations::NONE,
    mount,
};

fn mount(_ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<&'static str> {
    routes.add_service(WithUnlanded::new(
        ReceiptServiceServer::new(Receipts),
        UNLANDED,
    ));
    Ok(ReceiptServiceServer::<Receipts>::NAME)
}

/// The `fiscus.v1.ReceiptService` implementation.
#[derive(Debug, Clone, Copy)]
pub struct Receipts;

#[tonic::async_trait]
impl ReceiptService for Receipts {}

const MISSING: &str = "the receipt journal (validation, tax, numbering, hash chain, signatures) lands with issue #3; upstream connectors later";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "SignReceipt",
        missing: MISSING,
    },
    Unlanded {
        method: "CancelReceipt",
        missing: MISSING,
    },
    Unlanded {
        method: "GetReceipt",
        missing: MISSING,
    },
    Unlanded {
        method: "ListReceipts",
        missing: MISSING,
    },
    Unlanded {
        method: "WatchReceipt",
        missing: MISSING,
    },
    Unlanded {
        method: "SignTransaction",
        missing: MISSING,
    },
    Unlanded {
        method: "ListPending",
        missing: MISSING,
    },
    Unlanded {
        method: "ResendPending",
        missing: MISSING,
    },
    Unlanded {
        method: "VerifyJournal",
        missing: MISSING,
    },
    Unlanded {
        method: "ExportJournal",
        missing: MISSING,
    },
    Unlanded {
        method: "RenderReceipt",
        missing: MISSING,
    },
    Unlanded {
        method: "GetServiceInfo",
        missing: MISSING,
    },
    Unlanded {
        method: "ListBankAccounts",
        missing: MISSING,
    },
    Unlanded {
        method: "GetTaxpayerInfo",
        missing: MISSING,
    },
    Unlanded {
        method: "GetBranchInfo",
        missing: MISSING,
    },
    Unlanded {
        method: "ListTaxTypes",
        missing: MISSING,
    },
    Unlanded {
        method: "GetSigningKeys",
        missing: MISSING,
    },
];
