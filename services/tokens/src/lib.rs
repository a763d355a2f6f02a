//! TokenService: upstream tokens, MIA activation and seller sessions, internal identity.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod broker;
mod identity;

use std::borrow::Cow;
use std::sync::Arc;

use chrono::Utc;
use fiscus_kit::auth::Caller;
use fiscus_kit::server::{Unlanded, WithUnlanded};
use fiscus_kit::{ApiError, Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use sqlx::migrate::Migrator;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status};

pub use identity::Identity;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Tokens,
    migrations: &MIGRATIONS,
    mount,
};

static MIGRATIONS: Migrations = Migrations {
    postgres: Migrator {
        table_name: Cow::Borrowed("_tokens_migrations"),
        ..sqlx::migrate!("./migrations/postgres")
    },
    sqlite: Migrator {
        table_name: Cow::Borrowed("_tokens_migrations"),
        ..sqlx::migrate!("./migrations/sqlite")
    },
};

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<&'static str> {
    let identity = Identity::new(
        ctx.db.clone(),
        ctx.config.master_key()?,
        ctx.config.auth.clone(),
    );
    let broker = broker::Broker::new(
        ctx.cache.clone(),
        ctx.config.master_key()?,
        ctx.config.tokens.clone(),
    )?;
    let service = Tokens {
        identity: Arc::new(identity),
        broker: Arc::new(broker),
    };
    routes.add_service(WithUnlanded::new(
        TokenServiceServer::new(service),
        UNLANDED,
    ));
    Ok(TokenServiceServer::<Tokens>::NAME)
}

/// The `fiscus.v1.TokenService` implementation.
#[derive(Clone)]
pub struct Tokens {
    identity: Arc<Identity>,
    broker: Arc<broker::Broker>,
}

/// The credential a request names, or `default`.
fn credential_name(name: &str) -> &str {
    if name.is_empty() { "default" } else { name }
}

#[tonic::async_trait]
impl TokenService for Tokens {
    #[tracing::instrument(skip_all, fields(merchant = %request.get_ref().merchant_tin))]
    async fn get_access_token(
        &self,
        request: Request<pb::GetAccessTokenRequest>,
    ) -> Result<Response<pb::GetAccessTokenResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let min_ttl = std::time::Duration::from_secs(match request.min_ttl_seconds {
            0 => 30,
            n => u64::from(n),
        });
        let provider = pb::Provider::try_from(request.provider).unwrap_or_default();
        if matches!(provider, pb::Provider::Ebarimt | pb::Provider::Fiskaltrust) {
            if request.merchant_tin.is_empty() {
                return Err(ApiError::invalid(
                    "merchant_tin",
                    "is required for EBARIMT and FISKALTRUST",
                )
                .into());
            }
            caller.check(&request.merchant_tin)?;
        }
        let name = credential_name(&request.credential);
        let token = match provider {
            pb::Provider::Ebarimt => {
                self.broker
                    .ebarimt(&request.merchant_tin, name, min_ttl)
                    .await?
            }
            pb::Provider::Fiskaltrust => self.broker.fiskaltrust(&request.merchant_tin, name)?,
            pb::Provider::Mia => {
                return Err(ApiError::FailedPrecondition(
                    "MIA seller tokens come from seller sessions, which are not built yet".into(),
                )
                .into());
            }
            _ => {
                return Err(ApiError::invalid(
                    "provider",
                    "is required: EBARIMT, FISKALTRUST or MIA",
                )
                .into());
            }
        };
        Ok(Response::new(pb::GetAccessTokenResponse {
            access_token: token.access_token,
            token_type: token.token_type,
            expires_at: Some(prost_types::Timestamp {
                seconds: token.expires_at.timestamp(),
                nanos: 0,
            }),
            from_cache: token.from_cache,
        }))
    }

    #[tracing::instrument(skip_all, fields(merchant = %request.get_ref().merchant_tin))]
    async fn invalidate_token(
        &self,
        request: Request<pb::InvalidateTokenRequest>,
    ) -> Result<Response<pb::InvalidateTokenResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if request.access_token.is_empty() {
            return Err(ApiError::invalid(
                "access_token",
                "is required: the token the upstream refused",
            )
            .into());
        }
        caller.check(&request.merchant_tin)?;
        let invalidated = match pb::Provider::try_from(request.provider).unwrap_or_default() {
            pb::Provider::Ebarimt => {
                self.broker
                    .invalidate_ebarimt(
                        &request.merchant_tin,
                        credential_name(&request.credential),
                        &request.access_token,
                    )
                    .await?
            }
            // Configured cash box tokens are not cached: there is nothing to drop.
            pb::Provider::Fiskaltrust => false,
            pb::Provider::Mia => {
                return Err(ApiError::FailedPrecondition(
                    "MIA seller tokens come from seller sessions, which are not built yet".into(),
                )
                .into());
            }
            _ => {
                return Err(ApiError::invalid(
                    "provider",
                    "is required: EBARIMT, FISKALTRUST or MIA",
                )
                .into());
            }
        };
        Ok(Response::new(pb::InvalidateTokenResponse { invalidated }))
    }

    #[tracing::instrument(skip_all, fields(client = %request.get_ref().client_id))]
    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Vec::new();
        if request.client_id.is_empty() {
            violations.push(fiscus_kit::Violation::new("client_id", "is required"));
        }
        if request.client_secret.is_empty() {
            violations.push(fiscus_kit::Violation::new("client_secret", "is required"));
        }
        if !violations.is_empty() {
            return Err(ApiError::InvalidArgument(violations).into());
        }
        let issued = self
            .identity
            .issue(
                &request.client_id,
                &request.client_secret,
                &request.scopes,
                &request.audience,
                Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::IssueServiceTokenResponse {
            access_token: issued.token,
            token_type: "Bearer".into(),
            expires_at: Some(prost_types::Timestamp {
                seconds: issued.expires_at.timestamp(),
                nanos: 0,
            }),
            scopes: issued.scopes,
            merchant_tins: issued.merchants,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys: Vec<pb::Jwk> = self
            .identity
            .published(Utc::now())
            .await
            .map_err(ApiError::Internal)?
            .into_iter()
            .map(|(kid, x)| pb::Jwk {
                kid,
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
                x,
                y: String::new(),
            })
            .collect();
        let jwks_json = serde_json::json!({
            "keys": keys.iter().map(|k| serde_json::json!({
                "kid": k.kid, "kty": k.kty, "crv": k.crv, "alg": k.alg, "use": k.r#use, "x": k.x,
            })).collect::<Vec<_>>()
        })
        .to_string();
        Ok(Response::new(pb::GetJwksResponse { keys, jwks_json }))
    }
}

const MIA: &str = "MIA terminal activation and seller sessions are being built (issue #4)";

/// RPCs of the contract that answer UNIMPLEMENTED, naming what is missing, until they land.
static UNLANDED: &[Unlanded] = &[
    Unlanded {
        method: "InitActivation",
        missing: MIA,
    },
    Unlanded {
        method: "ResendActivationOtp",
        missing: MIA,
    },
    Unlanded {
        method: "ConfirmActivation",
        missing: MIA,
    },
    Unlanded {
        method: "GetActivation",
        missing: MIA,
    },
    Unlanded {
        method: "SellerLogin",
        missing: MIA,
    },
    Unlanded {
        method: "RefreshSeller",
        missing: MIA,
    },
    Unlanded {
        method: "SellerLogout",
        missing: MIA,
    },
    Unlanded {
        method: "GetSellerSession",
        missing: MIA,
    },
];
