//! MIA POS as PaymentService reaches it: the seller session's access token from TokenService's
//! brokerage (checked to belong to the request's terminal), one MIA call with it, and — when MIA
//! answers 401 — that token invalidated once and the call made once more.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiscus_domain::TerminalId;
use fiscus_kit::ApiError;
use fiscus_kit::peers::ServiceIdentity;
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use fiscus_providers::{MiaClient, ProviderError};
use secrecy::{ExposeSecret, SecretString};
use tonic::Code;
use tonic::transport::Channel;

/// A seller session's token, checked to act for the request's terminal, and the MIA client
/// that acts with it.
#[derive(Clone)]
pub struct Seller {
    pub session_id: String,
    token: SecretString,
    client: MiaClient,
}

/// How long a session's token and terminal are reused without asking TokenService again.
const SESSION_REUSE: Duration = Duration::from_secs(10);

/// A token is asked for with at least this much life left.
const MIN_TTL_SECONDS: u32 = 30;

struct Known {
    token: SecretString,
    terminal: Option<pb::Terminal>,
    until: Instant,
}

pub struct Mia {
    client: Option<MiaClient>,
    tokens: Channel,
    identity: ServiceIdentity,
    /// Recently seen sessions; one lookup at a time fills it, so that a burst of calls for
    /// one session costs one TokenService call.
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Known>>>,
}

impl Mia {
    pub fn new(client: Option<MiaClient>, tokens: Channel, identity: ServiceIdentity) -> Self {
        Self {
            client,
            tokens,
            identity,
            sessions: tokio::sync::Mutex::default(),
        }
    }

    pub fn client(&self) -> Result<&MiaClient, ApiError> {
        self.client.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition("MIA POS is not configured (payments.mia_url)".into())
        })
    }

    /// The seller session `session_id`, refused unless its activation is bound to `terminal`.
    pub async fn seller(
        &self,
        terminal: &TerminalId,
        session_id: &str,
    ) -> Result<Seller, ApiError> {
        let client = self.client()?.clone();
        let known = self.known(session_id).await?;
        let theirs = known.terminal.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "seller_session_id: the session's MIA terminal activation is bound to no fiscus \
                 terminal; activate it with InitActivationRequest.terminal set"
                    .into(),
            )
        })?;
        if theirs.merchant_tin != terminal.merchant_tin
            || theirs.branch_no != terminal.branch_no
            || theirs.pos_no != terminal.pos_no
        {
            return Err(ApiError::PermissionDenied(format!(
                "seller_session_id: the seller session belongs to terminal {}/{}/{}, not to {}/{}/{}",
                theirs.merchant_tin,
                theirs.branch_no,
                theirs.pos_no,
                terminal.merchant_tin,
                terminal.branch_no,
                terminal.pos_no
            )));
        }
        Ok(Seller {
            session_id: session_id.to_owned(),
            token: known.token.clone(),
            client,
        })
    }

    async fn known(&self, session_id: &str) -> Result<Arc<Known>, ApiError> {
        let mut sessions = self.sessions.lock().await;
        let now = Instant::now();
        if let Some(known) = sessions.get(session_id).filter(|k| k.until > now) {
            return Ok(known.clone());
        }
        let answer = self.access_token(session_id).await?;
        let token = SecretString::from(answer.access_token);
        let lifetime = answer
            .expires_at
            .and_then(|at| {
                let left = at.seconds.saturating_sub(chrono::Utc::now().timestamp());
                u64::try_from(left).ok()
            })
            .map(Duration::from_secs)
            .unwrap_or_default();
        let reuse = SESSION_REUSE
            .min(lifetime.saturating_sub(Duration::from_secs(u64::from(MIN_TTL_SECONDS))));
        let known = Arc::new(Known {
            token,
            terminal: answer.terminal,
            until: now + reuse,
        });
        sessions.retain(|_, k| k.until > now);
        sessions.insert(session_id.to_owned(), known.clone());
        Ok(known)
    }

    async fn access_token(&self, session_id: &str) -> Result<pb::GetAccessTokenResponse, ApiError> {
        let mut request = tonic::Request::new(pb::GetAccessTokenRequest {
            provider: pb::Provider::Mia.into(),
            seller_session_id: session_id.to_owned(),
            min_ttl_seconds: MIN_TTL_SECONDS,
            ..Default::default()
        });
        self.identity
            .prepare(&mut request)
            .await
            .map_err(peer_error)?;
        TokenServiceClient::new(self.tokens.clone())
            .get_access_token(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(session_error)
    }

    /// Tells TokenService that MIA refused `seller`'s token, and forgets it here.
    async fn invalidate(&self, seller: &Seller) -> Result<(), ApiError> {
        self.sessions.lock().await.remove(&seller.session_id);
        let mut request = tonic::Request::new(pb::InvalidateTokenRequest {
            provider: pb::Provider::Mia.into(),
            seller_session_id: seller.session_id.clone(),
            access_token: seller.token.expose_secret().to_owned(),
            ..Default::default()
        });
        self.identity
            .prepare(&mut request)
            .await
            .map_err(peer_error)?;
        TokenServiceClient::new(self.tokens.clone())
            .invalidate_token(request)
            .await
            .map(drop)
            .map_err(session_error)
    }

    /// One MIA call made with the seller's token; a 401 invalidates the token once, and the call
    /// is made once more with a fresh one.
    pub async fn call<T, F, Fut>(&self, seller: &Seller, call: F) -> Result<T, ProviderError>
    where
        F: Fn(MiaClient, SecretString) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let client = &seller.client;
        match call(client.clone(), seller.token.clone()).await {
            Err(ProviderError::Refused { status: 401, .. }) => {
                tracing::info!(session = %short(&seller.session_id), "MIA refused the seller's token; renewing it once");
                let renewed = async {
                    self.invalidate(seller).await?;
                    let known = self.known(&seller.session_id).await?;
                    Ok::<_, ApiError>(known.token.clone())
                }
                .await;
                match renewed {
                    Ok(token) => call(client.clone(), token).await,
                    Err(e) => Err(ProviderError::Unavailable {
                        upstream: fiscus_providers::Upstream::Mia,
                        url: String::new(),
                        cause: format!("renewing the seller's token: {e}"),
                    }),
                }
            }
            other => other,
        }
    }
}

/// The start of a session id, for logs (the id is a bearer handle).
fn short(session_id: &str) -> &str {
    session_id.get(..8).unwrap_or(session_id)
}

/// TokenService's answer about a seller session, in this service's words.
fn session_error(status: tonic::Status) -> ApiError {
    let message = status.message();
    match status.code() {
        Code::NotFound => ApiError::NotFound(format!("seller_session_id: {message}")),
        Code::InvalidArgument => ApiError::invalid("seller_session_id", message),
        Code::FailedPrecondition => {
            ApiError::FailedPrecondition(format!("seller_session_id: {message}"))
        }
        Code::PermissionDenied => {
            ApiError::PermissionDenied(format!("seller_session_id: {message}"))
        }
        Code::Unauthenticated => ApiError::Unavailable(format!(
            "the token service refused this service's token: {message}; check payments.client_id"
        )),
        _ => ApiError::Unavailable(format!(
            "the token service is unavailable: {message}; retry"
        )),
    }
}

fn peer_error(status: tonic::Status) -> ApiError {
    ApiError::Unavailable(format!(
        "this service has no token for the token service: {}; retry",
        status.message()
    ))
}

/// What a caller is told when MIA refused or failed `what`: a refusal is the caller's to fix
/// (NOT_FOUND for what MIA does not know, FAILED_PRECONDITION otherwise); anything else is
/// UNAVAILABLE, and retrying with the same operation id is safe.
pub fn upstream_error(error: ProviderError, what: &str) -> ApiError {
    match error {
        ProviderError::Refused {
            status: 404,
            error,
            description,
            ..
        } => ApiError::NotFound(format!("MIA does not know {what}: {error}: {description}")),
        ProviderError::Refused {
            error, description, ..
        } => ApiError::FailedPrecondition(format!("MIA refused {what}: {error}: {description}")),
        ProviderError::Unavailable { cause, .. } => ApiError::Unavailable(format!(
            "MIA is unavailable for {what}: {cause}; retry with the same operation_id"
        )),
        other => ApiError::Unavailable(format!(
            "MIA answered {what} unreadably: {other}; retry with the same operation_id"
        )),
    }
}

/// Whether MIA may have acted although no answer says so (an answer lost, a time-out, a 5xx
/// after the request was read).
pub fn outcome_unknown(error: &ProviderError) -> bool {
    !matches!(
        error,
        ProviderError::Refused { .. } | ProviderError::Config { .. }
    )
}

/// The refusal code of a MIA answer.
pub fn refusal(error: &ProviderError) -> Option<&str> {
    error.refusal_code()
}
