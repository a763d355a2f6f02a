//! TokenService: upstream tokens, MIA activation and seller sessions, internal identity.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod broker;
mod config;
mod identity;
mod metrics;
mod mia;

use std::sync::Arc;

use chrono::Utc;
use fiscus_kit::auth::{Caller, ServiceScopes, read_or_write};
use fiscus_kit::idempotency::{self, Operation, metadata_operation_id};
use fiscus_kit::{ApiError, Migrations, ServiceContext, ServiceKind, ServiceModule};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status};

pub use config::{EbarimtCredential, FiskaltrustCredential, TokensConfig};
pub use identity::Identity;

const NAME: &str = TokenServiceServer::<Tokens>::NAME;

/// How a process hosts this service.
pub static MODULE: ServiceModule = ServiceModule {
    kind: ServiceKind::Tokens,
    name: NAME,
    migrations: &MIGRATIONS,
    scopes: ServiceScopes {
        service: NAME,
        // Token issuance and the keys that check tokens are open: they are how a caller gets
        // and checks a token in the first place.
        scope: |method| {
            (!matches!(method, "IssueServiceToken" | "GetJwks"))
                .then(|| read_or_write("tokens", method))
        },
    },
    mount,
};

static MIGRATIONS: Migrations = fiscus_kit::service_migrations!("_tokens_migrations");

fn mount(ctx: ServiceContext, routes: &mut RoutesBuilder) -> anyhow::Result<()> {
    let section: TokensConfig = ctx.config.section(ServiceKind::Tokens)?;
    fiscus_providers::metrics::register(&mut fiscus_kit::metrics::registry());
    let identity = Identity::new(
        ctx.db.clone(),
        ctx.config.master_key()?,
        ctx.config.auth.clone(),
    );
    let broker = broker::Broker::new(ctx.cache.clone(), ctx.config.master_key()?, section.clone())?;
    let broker = Arc::new(broker);
    let mia = mia::Mia::new(
        ctx.db.clone(),
        ctx.config.master_key()?,
        broker.clone(),
        &section,
    )?;
    let service = Tokens {
        identity: Arc::new(identity),
        broker,
        mia: Arc::new(mia),
        db: ctx.db.clone(),
        cache: ctx.cache.clone(),
    };
    routes.add_service(TokenServiceServer::new(service));
    Ok(())
}

/// The `fiscus.v1.TokenService` implementation.
#[derive(Clone)]
pub struct Tokens {
    identity: Arc<Identity>,
    broker: Arc<broker::Broker>,
    mia: Arc<mia::Mia>,
    db: fiscus_kit::Database,
    cache: fiscus_kit::cache::SharedCache,
}

/// The idempotency tenant of MIA operations (their ids are UUIDs, unique on their own).
const MIA_TENANT: &str = "mia";

fn timestamp(at: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

/// How long an upstream-calling operation holds its id: well past the upstream's timeout, so
/// that only a holder that died loses it.
const UPSTREAM_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// The operation a mutating MIA request asks for: its checked id, and its fingerprint.
fn operation<R: fiscus_proto::Mutating>(
    rpc: &'static str,
    metadata_id: Option<String>,
    request: &mut R,
) -> Result<Operation, Status> {
    let field = request.operation_id_mut().clone();
    let id = idempotency::operation_id(&field, metadata_id.as_deref())
        .map_err(ApiError::InvalidArgument)?;
    Ok(Operation::new(MIA_TENANT, &id, rpc, request))
}

impl Tokens {
    /// Runs upstream-calling `work` once per operation (see [`idempotency::once_upstream`]).
    async fn once<Res, F>(&self, operation: &Operation, work: F) -> Result<Res, Status>
    where
        Res: prost::Message + Default,
        F: std::future::Future<Output = Result<Res, ApiError>>,
    {
        Ok(idempotency::once_upstream(
            &self.db,
            self.cache.as_ref(),
            operation,
            UPSTREAM_LEASE,
            work,
        )
        .await?)
    }

    /// Refuses a caller whose token does not cover the merchant an activation is bound to.
    async fn check_activation(&self, caller: &Caller, activation_id: &str) -> Result<(), Status> {
        let activation = self.mia.activation(activation_id).await?;
        if activation.merchant_tin.is_empty() {
            caller.check_all()
        } else {
            caller.check(&activation.merchant_tin)
        }
    }

    async fn check_session(&self, caller: &Caller, session_id: &str) -> Result<(), Status> {
        let activation_id = self.mia.session_activation(session_id).await?;
        self.check_activation(caller, &activation_id).await
    }
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
        let mut terminal = None;
        let token = match provider {
            pb::Provider::Ebarimt => {
                self.broker
                    .ebarimt(&request.merchant_tin, name, min_ttl)
                    .await?
            }
            pb::Provider::Fiskaltrust => self.broker.fiskaltrust(&request.merchant_tin, name)?,
            pb::Provider::Mia => {
                let activation_id = self
                    .mia
                    .session_activation(&request.seller_session_id)
                    .await?;
                let activation = self.mia.activation(&activation_id).await?;
                if activation.merchant_tin.is_empty() {
                    caller.check_all()?;
                } else {
                    caller.check(&activation.merchant_tin)?;
                }
                terminal = activation.terminal();
                self.mia
                    .access_token(&request.seller_session_id, min_ttl)
                    .await?
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
            terminal,
            cashbox_id: token.cashbox_id,
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
        let provider = pb::Provider::try_from(request.provider).unwrap_or_default();
        if provider == pb::Provider::Mia {
            self.check_session(&caller, &request.seller_session_id)
                .await?;
        } else {
            caller.check(&request.merchant_tin)?;
        }
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
                self.mia
                    .invalidate(&request.seller_session_id, &request.access_token)
                    .await?
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

    #[tracing::instrument(skip_all)]
    async fn init_activation(
        &self,
        request: Request<pb::InitActivationRequest>,
    ) -> Result<Response<pb::InitActivationResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("InitActivation", metadata_id, &mut request)?;
        match &request.terminal {
            Some(terminal) => caller.check(&terminal.merchant_tin)?,
            None => caller.check_all()?,
        }
        let work = self.mia.init(&request);
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn resend_activation_otp(
        &self,
        request: Request<pb::ResendActivationOtpRequest>,
    ) -> Result<Response<pb::ResendActivationOtpResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("ResendActivationOtp", metadata_id, &mut request)?;
        self.check_activation(&caller, &request.activation_id)
            .await?;
        let work = self.mia.resend(&request.activation_id);
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_activation(
        &self,
        request: Request<pb::ConfirmActivationRequest>,
    ) -> Result<Response<pb::ConfirmActivationResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("ConfirmActivation", metadata_id, &mut request)?;
        self.check_activation(&caller, &request.activation_id)
            .await?;
        let work = self.mia.confirm(&request.activation_id, &request.otp_code);
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn get_activation(
        &self,
        request: Request<pb::GetActivationRequest>,
    ) -> Result<Response<pb::GetActivationResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        self.check_activation(&caller, &request.activation_id)
            .await?;
        Ok(Response::new(
            self.mia.describe(&request.activation_id).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn seller_login(
        &self,
        request: Request<pb::SellerLoginRequest>,
    ) -> Result<Response<pb::SellerLoginResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("SellerLogin", metadata_id, &mut request)?;
        self.check_activation(&caller, &request.activation_id)
            .await?;
        let work = async {
            let (session_id, token) = self
                .mia
                .login(&request.activation_id, &request.username, &request.password)
                .await?;
            let activation = self.mia.activation(&request.activation_id).await?;
            Ok(pb::SellerLoginResponse {
                session_id,
                expires_at: timestamp(token.expires_at),
                terminal: activation.terminal(),
            })
        };
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_seller(
        &self,
        request: Request<pb::RefreshSellerRequest>,
    ) -> Result<Response<pb::RefreshSellerResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("RefreshSeller", metadata_id, &mut request)?;
        self.check_session(&caller, &request.session_id).await?;
        let work = async {
            let token = self.mia.refresh(&request.session_id).await?;
            Ok(pb::RefreshSellerResponse {
                session_id: request.session_id.clone(),
                expires_at: timestamp(token.expires_at),
            })
        };
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn seller_logout(
        &self,
        request: Request<pb::SellerLogoutRequest>,
    ) -> Result<Response<pb::SellerLogoutResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let operation = operation("SellerLogout", metadata_id, &mut request)?;
        self.check_session(&caller, &request.session_id).await?;
        let work = async {
            self.mia.logout(&request.session_id).await?;
            Ok(pb::SellerLogoutResponse {})
        };
        let response = self.once(&operation, work).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn get_seller_session(
        &self,
        request: Request<pb::GetSellerSessionRequest>,
    ) -> Result<Response<pb::GetSellerSessionResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        self.check_session(&caller, &request.session_id).await?;
        let (info, token, activation_id) = self.mia.seller(&request.session_id).await?;
        Ok(Response::new(pb::GetSellerSessionResponse {
            session_id: request.session_id,
            seller: Some(pb::SellerInfo {
                id: info.seller_info.id,
                full_name: info.seller_info.full_name,
            }),
            terminal: Some(pb::MiaTerminalInfo {
                terminal_id: info.terminal_info.terminal_id,
                pos_id: info.terminal_info.pos_id,
            }),
            merchant: Some(pb::MerchantInfo {
                name: info.merchant_info.merchant_name,
                idno: info.merchant_info.merchant_idno,
            }),
            place: Some(pb::PlaceInfo {
                name: info.place_info.name,
                address: info.place_info.address,
            }),
            bank: Some(pb::BankInfo {
                bank_name: info.bank_info.bank_name,
                image: info.bank_info.image,
                user_guide_url: info.bank_info.user_guide_url,
                support_phone: info.bank_info.support_phone,
                support_email: info.bank_info.support_email,
            }),
            expires_at: timestamp(token.expires_at),
            activation_id,
        }))
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
        let jwks = self
            .identity
            .published(Utc::now())
            .await
            .map_err(ApiError::Internal)?;
        let response = identity::jwks_response(&jwks)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding the JWKS: {e}")))?;
        Ok(Response::new(response))
    }
}
