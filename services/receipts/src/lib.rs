//! ReceiptService: validated, taxed, numbered, hash-chained and signed receipts in an
//! idempotent journal, with verification, export and printable receipts.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod document;
mod export;
mod group_commit;
mod heads;
mod journal;
mod render;
mod service;
mod signers;
mod store;
mod validate;

use std::sync::Arc;

use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::receipt_service_server::ReceiptServiceServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use service::Receipts;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Receipts,
    migrations: &MIGRATIONS,
    mount,
};

static MIGRATIONS: Migrations = fiscus_kit::service_migrations!("_receipts_migrations");

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<&'static str> {
    let policy = validate::Policy::from_config(&ctx.config.receipts)?;
    let master = ctx.config.master_key()?;
    let journal = Arc::new(journal::Journal::new(
        ctx.db.clone(),
        ctx.cache.clone(),
        policy,
        master,
    ));
    let limit = ctx.config.receipts.max_request_bytes;
    let server = ReceiptServiceServer::new(Receipts { journal })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(64 * 1024 * 1024);
    routes.add_service(WithUnlanded::new(server, UNLANDED));
    Ok(ReceiptServiceServer::<Receipts>::NAME)
}

const UPSTREAM: &str = "it needs the e-barimt and fiskaltrust connectors, which are not built yet";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "SignTransaction",
        missing: "the transactionForms.json mapping is not built yet",
    },
    Unlanded {
        method: "ListPending",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "ResendPending",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "GetServiceInfo",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "ListBankAccounts",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "GetTaxpayerInfo",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "GetBranchInfo",
        missing: UPSTREAM,
    },
    Unlanded {
        method: "ListTaxTypes",
        missing: UPSTREAM,
    },
];
