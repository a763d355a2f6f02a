//! TokenService: upstream tokens, MIA activation and seller sessions, internal identity.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Tokens,
    migrations: &Migrations::NONE,
    mount,
};

fn mount(_ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<&'static str> {
    routes.add_service(WithUnlanded::new(TokenServiceServer::new(Tokens), UNLANDED));
    Ok(TokenServiceServer::<Tokens>::NAME)
}

/// The `fiscus.v1.TokenService` implementation.
#[derive(Debug, Clone, Copy)]
pub struct Tokens;

#[tonic::async_trait]
impl TokenService for Tokens {}

const MISSING: &str = "token brokerage and service identity land with issue #4";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "GetAccessToken",
        missing: MISSING,
    },
    Unlanded {
        method: "InvalidateToken",
        missing: MISSING,
    },
    Unlanded {
        method: "InitActivation",
        missing: MISSING,
    },
    Unlanded {
        method: "ResendActivationOtp",
        missing: MISSING,
    },
    Unlanded {
        method: "ConfirmActivation",
        missing: MISSING,
    },
    Unlanded {
        method: "GetActivation",
        missing: MISSING,
    },
    Unlanded {
        method: "SellerLogin",
        missing: MISSING,
    },
    Unlanded {
        method: "RefreshSeller",
        missing: MISSING,
    },
    Unlanded {
        method: "SellerLogout",
        missing: MISSING,
    },
    Unlanded {
        method: "GetSellerSession",
        missing: MISSING,
    },
    Unlanded {
        method: "IssueServiceToken",
        missing: MISSING,
    },
    Unlanded {
        method: "GetJwks",
        missing: MISSING,
    },
];
