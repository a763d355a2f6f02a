//! MIA POS terminal activation and seller sessions. The upstream refresh token is sealed in the
//! database and the access token lives in the broker's cache; clients hold an opaque session id.

use std::sync::Arc;
use std::time::Duration;

use fiscus_domain::keys;
use fiscus_kit::config::MasterKey;
use fiscus_kit::db::Database;
use fiscus_kit::{ApiError, with_db};
use fiscus_proto::v1 as pb;
use fiscus_providers::mia::{
    ConfirmActivationRequest, DeviceInfo, InitActivationRequest, PlatformType, ResendOtpRequest,
    SellerLoginRequest, SellerLogoutRequest, SellerRefreshRequest, SellerSession,
};
use fiscus_providers::{MiaClient, ProviderError};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::broker::{Broker, Token, upstream_error};
use crate::config::TokensConfig;

pub struct Mia {
    db: Database,
    master: MasterKey,
    broker: Arc<Broker>,
    client: Option<MiaClient>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Activation {
    pub activation_id: String,
    pub terminal_id: String,
    pub merchant_idno: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub state: String,
}

impl Activation {
    /// The fiscus terminal the MIA terminal is bound to, if any.
    pub fn terminal(&self) -> Option<pb::Terminal> {
        (!self.merchant_tin.is_empty()).then(|| pb::Terminal {
            merchant_tin: self.merchant_tin.clone(),
            branch_no: self.branch_no.clone(),
            pos_no: self.pos_no.clone(),
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Session {
    activation_id: String,
    sealed_refresh: Vec<u8>,
    active: bool,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn parse_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "must be the UUID fiscus answered"))
}

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness from the OS: {e}")))?;
    Ok(bytes)
}

/// The cache key of a seller session's access token. A session id is a bearer handle, so the
/// key holds its digest: neither Redis nor a log line that names the key gives the session away.
fn session_key(session_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(session_id.as_bytes());
    format!("token:mia:{}", fiscus_domain::chain::hex(&digest[..16]))
}

fn refused_code(error: &ProviderError) -> Option<&str> {
    error.refusal_code()
}

impl Mia {
    pub fn new(
        db: Database,
        master: MasterKey,
        broker: Arc<Broker>,
        config: &TokensConfig,
    ) -> anyhow::Result<Self> {
        let client = if config.mia_url.is_empty() {
            None
        } else {
            Some(MiaClient::new(
                &config.mia_url,
                Duration::from_millis(config.upstream_timeout_ms),
            )?)
        };
        Ok(Self {
            db,
            master,
            broker,
            client,
        })
    }

    fn client(&self) -> Result<&MiaClient, ApiError> {
        self.client.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition("MIA POS is not configured (tokens.mia_url)".into())
        })
    }

    fn seal(&self, secret: &str, context: &str) -> Result<Vec<u8>, ApiError> {
        Ok(keys::seal(
            self.master.bytes(),
            random()?,
            secret.as_bytes(),
            context.as_bytes(),
        ))
    }

    fn open(&self, sealed: &[u8], context: &str) -> Result<SecretString, ApiError> {
        let bytes = keys::open(self.master.bytes(), sealed, context.as_bytes())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("opening a sealed MIA token: {e}")))?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("sealed MIA token is not text: {e}")))
    }

    pub async fn activation(&self, activation_id: &str) -> Result<Activation, ApiError> {
        let found: Option<Activation> = with_db!(&self.db, |pool| {
            sqlx::query_as(
            "SELECT activation_id, terminal_id, merchant_idno, merchant_tin, branch_no, pos_no, state \
             FROM mia_activations WHERE activation_id = $1"
        )
        .bind(activation_id)
        .fetch_optional(pool)
        .await
        })?;
        found.ok_or_else(|| ApiError::NotFound(format!("no activation {activation_id}")))
    }

    async fn set_state(
        &self,
        activation_id: &str,
        state: pb::ActivationState,
    ) -> Result<(), ApiError> {
        with_db!(&self.db, |pool| sqlx::query(
            "UPDATE mia_activations SET state = $2 WHERE activation_id = $1"
        )
        .bind(activation_id)
        .bind(state.as_str_name())
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    pub async fn init(
        &self,
        request: &pb::InitActivationRequest,
    ) -> Result<pb::InitActivationResponse, ApiError> {
        let device = request.device.clone().unwrap_or_default();
        let mut violations = Vec::new();
        let mut need = |field: &str, value: &str| {
            if value.trim().is_empty() {
                violations.push(fiscus_kit::Violation::new(field, "is required"));
            }
        };
        need("terminal_id", &request.terminal_id);
        need("merchant_idno", &request.merchant_idno);
        need("device.device", &device.device);
        let platform_type =
            match pb::PlatformType::try_from(device.platform_type).unwrap_or_default() {
                pb::PlatformType::Ios => Some(PlatformType::Ios),
                pb::PlatformType::Android => Some(PlatformType::Android),
                pb::PlatformType::Web => Some(PlatformType::Web),
                pb::PlatformType::ExternalSystem => Some(PlatformType::ExternalSystem),
                _ => None,
            };
        if platform_type.is_none() {
            violations.push(fiscus_kit::Violation::new(
                "device.platform_type",
                "is required",
            ));
        }
        let installation_id = Uuid::parse_str(&device.installation_id).ok();
        if installation_id.is_none() {
            violations.push(fiscus_kit::Violation::new(
                "device.installation_id",
                "must be a UUID",
            ));
        }
        if device.pos_app_version <= 0 {
            violations.push(fiscus_kit::Violation::new(
                "device.pos_app_version",
                "is required (a positive integer)",
            ));
        }
        let (Some(platform_type), Some(installation_id), true) =
            (platform_type, installation_id, violations.is_empty())
        else {
            return Err(ApiError::InvalidArgument(violations));
        };
        let device = DeviceInfo {
            device: device.device.clone(),
            platform_type,
            platform_version: (!device.platform_version.is_empty())
                .then(|| device.platform_version.clone()),
            installation_id,
            native_app_version: u32::try_from(device.native_app_version)
                .ok()
                .filter(|v| *v > 0),
            pos_app_version: u32::try_from(device.pos_app_version).unwrap_or(1),
        };
        let started = self
            .client()?
            .init_activation(
                &device,
                &InitActivationRequest {
                    terminal_id: request.terminal_id.clone(),
                    merchant_idno: request.merchant_idno.clone(),
                },
            )
            .await
            .map_err(|e| upstream_error(e, "terminal activation"))?;
        let terminal = request.terminal.clone().unwrap_or_default();
        let activation_id = started.terminal_activation_id.to_string();
        with_db!(&self.db, |pool| {
            sqlx::query(
            "INSERT INTO mia_activations (activation_id, terminal_id, merchant_idno, merchant_tin, branch_no, pos_no, state, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(&activation_id)
        .bind(&request.terminal_id)
        .bind(&request.merchant_idno)
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .bind(pb::ActivationState::AwaitingOtp.as_str_name())
        .bind(now_us())
        .execute(pool)
        .await
        .map(drop)
        })?;
        Ok(pb::InitActivationResponse {
            activation_id,
            masked_phone_number: started.masked_phone_number,
            wait_time_to_resend_seconds: i32::try_from(started.wait_time_to_resend.as_secs())
                .unwrap_or(i32::MAX),
        })
    }

    pub async fn resend(
        &self,
        activation_id: &str,
    ) -> Result<pb::ResendActivationOtpResponse, ApiError> {
        let id = parse_id("activation_id", activation_id)?;
        self.activation(activation_id).await?;
        match self
            .client()?
            .resend_otp(&ResendOtpRequest {
                terminal_activation_id: id,
            })
            .await
        {
            Ok(resent) => Ok(pb::ResendActivationOtpResponse {
                left_attempts: i32::try_from(resent.left_attempts).unwrap_or(0),
                wait_time_to_resend_seconds: i32::try_from(resent.wait_time_to_resend.as_secs())
                    .unwrap_or(i32::MAX),
            }),
            Err(ProviderError::Refused {
                retry_after: Some(wait),
                ..
            }) => Err(ApiError::FailedPrecondition(format!(
                "an OTP can be sent again in {} s (waitTimeToResend)",
                wait.as_secs()
            ))),
            Err(e) => Err(upstream_error(e, "the OTP resend")),
        }
    }

    pub async fn confirm(
        &self,
        activation_id: &str,
        otp: &str,
    ) -> Result<pb::ConfirmActivationResponse, ApiError> {
        let id = parse_id("activation_id", activation_id)?;
        if otp.is_empty() {
            return Err(ApiError::invalid("otp_code", "is required"));
        }
        self.activation(activation_id).await?;
        let result = self
            .client()?
            .confirm_activation(&ConfirmActivationRequest {
                terminal_activation_id: id,
                otp_code: SecretString::from(otp.to_owned()),
            })
            .await;
        match result {
            Ok(confirmed) => {
                self.set_state(activation_id, pb::ActivationState::Active)
                    .await?;
                Ok(pb::ConfirmActivationResponse {
                    left_attempts: i32::try_from(confirmed.left_attempts).unwrap_or(0),
                    confirmed: true,
                })
            }
            Err(e) if refused_code(&e) == Some("INVALID_OTP") => {
                let left = match &e {
                    ProviderError::Refused { left_attempts, .. } => left_attempts.unwrap_or(0),
                    _ => 0,
                };
                if left == 0 {
                    self.set_state(activation_id, pb::ActivationState::Failed)
                        .await?;
                }
                Ok(pb::ConfirmActivationResponse {
                    left_attempts: i32::try_from(left).unwrap_or(0),
                    confirmed: false,
                })
            }
            Err(e) if refused_code(&e) == Some("ACTIVATION_BLOCKED") => {
                self.set_state(activation_id, pb::ActivationState::Failed)
                    .await?;
                Err(ApiError::FailedPrecondition(
                    "no OTP attempts are left for this activation: start a new one".into(),
                ))
            }
            Err(e) => Err(upstream_error(e, "the OTP confirmation")),
        }
    }

    pub async fn describe(
        &self,
        activation_id: &str,
    ) -> Result<pb::GetActivationResponse, ApiError> {
        let id = parse_id("activation_id", activation_id)?;
        let local = self.activation(activation_id).await?;
        let state = pb::ActivationState::from_str_name(&local.state).unwrap_or_default();
        let (merchant_name, store_address) = if state == pb::ActivationState::Active {
            let info = self
                .client()?
                .activation_info(id)
                .await
                .map_err(|e| upstream_error(e, "the activation info"))?;
            (info.merchant_name, info.store_address)
        } else {
            (String::new(), String::new())
        };
        Ok(pb::GetActivationResponse {
            terminal: local.terminal(),
            activation_id: local.activation_id,
            terminal_id: local.terminal_id,
            merchant_idno: local.merchant_idno,
            merchant_name,
            store_address,
            state: state.into(),
        })
    }

    pub async fn login(
        &self,
        activation_id: &str,
        username: &str,
        password: &str,
    ) -> Result<(String, Token), ApiError> {
        let id = parse_id("activation_id", activation_id)?;
        if username.is_empty() || password.is_empty() {
            return Err(ApiError::invalid(
                "username",
                "username and password are required",
            ));
        }
        let activation = self.activation(activation_id).await?;
        if activation.state != pb::ActivationState::Active.as_str_name() {
            return Err(ApiError::FailedPrecondition(format!(
                "activation {activation_id} is not confirmed ({})",
                activation.state
            )));
        }
        let tokens = self
            .client()?
            .seller_login(&SellerLoginRequest {
                terminal_activation_id: id,
                username: username.to_owned(),
                password: SecretString::from(password.to_owned()),
            })
            .await
            .map_err(|e| upstream_error(e, "the seller login"))?;
        let session_id = Uuid::new_v4().to_string();
        let sealed = self.seal(tokens.refresh_token.expose_secret(), &session_id)?;
        with_db!(&self.db, |pool| {
            sqlx::query(
            "INSERT INTO mia_sessions (session_id, activation_id, username, sealed_refresh, active, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&session_id)
        .bind(activation_id)
        .bind(username)
        .bind(&sealed)
        .bind(true)
        .bind(now_us())
        .execute(pool)
        .await
        .map(drop)
        })?;
        let token = self
            .broker
            .store(
                &session_key(&session_id),
                tokens.access_token.expose_secret(),
                tokens.access_token_expires_in,
            )
            .await?;
        Ok((session_id, token))
    }

    /// The activation of a live session (to authorize its caller).
    pub async fn session_activation(&self, session_id: &str) -> Result<String, ApiError> {
        Ok(self.session(session_id).await?.activation_id)
    }

    async fn session(&self, session_id: &str) -> Result<Session, ApiError> {
        parse_id("session_id", session_id)?;
        let found: Option<Session> = with_db!(&self.db, |pool| {
            sqlx::query_as(
            "SELECT activation_id, sealed_refresh, active FROM mia_sessions WHERE session_id = $1"
        )
        .bind(session_id)
        .fetch_optional(pool)
        .await
        })?;
        match found {
            Some(session) if session.active => Ok(session),
            Some(_) => Err(ApiError::FailedPrecondition(format!(
                "seller session {session_id} has ended"
            ))),
            None => Err(ApiError::NotFound(format!(
                "no seller session {session_id}"
            ))),
        }
    }

    /// Uses the single-use refresh token once, keeping the new one.
    async fn refresh_upstream(&self, session_id: &str) -> Result<(String, Duration), ApiError> {
        let session = self.session(session_id).await?;
        let refresh = self.open(&session.sealed_refresh, session_id)?;
        let tokens = self
            .client()?
            .seller_refresh(&SellerRefreshRequest {
                refresh_token: refresh,
                terminal_activation_id: parse_id("activation_id", &session.activation_id)?,
            })
            .await
            .map_err(|e| match refused_code(&e) {
                // Another replica used the refresh token first (only without the cache's lease).
                Some("INVALID_REFRESH_TOKEN") => {
                    ApiError::Aborted("the seller session was refreshed concurrently; retry".into())
                }
                _ => upstream_error(e, "the seller session refresh"),
            })?;
        let sealed = self.seal(tokens.refresh_token.expose_secret(), session_id)?;
        with_db!(&self.db, |pool| sqlx::query(
            "UPDATE mia_sessions SET sealed_refresh = $2 WHERE session_id = $1"
        )
        .bind(session_id)
        .bind(&sealed)
        .execute(pool)
        .await
        .map(drop))?;
        Ok((
            tokens.access_token.expose_secret().to_owned(),
            tokens.access_token_expires_in,
        ))
    }

    /// The seller's access token: cached, else refreshed once across replicas.
    pub async fn access_token(
        &self,
        session_id: &str,
        min_ttl: Duration,
    ) -> Result<Token, ApiError> {
        self.session(session_id).await?;
        self.broker
            .obtain(&session_key(session_id), min_ttl, || {
                self.refresh_upstream(session_id)
            })
            .await
    }

    /// Renews the session's access token now.
    pub async fn refresh(&self, session_id: &str) -> Result<Token, ApiError> {
        self.session(session_id).await?;
        self.broker.forget(&session_key(session_id)).await;
        self.access_token(session_id, Duration::ZERO).await
    }

    pub async fn invalidate(&self, session_id: &str, refused: &str) -> Result<bool, ApiError> {
        self.session(session_id).await?;
        Ok(self
            .broker
            .invalidate(&session_key(session_id), refused)
            .await)
    }

    pub async fn logout(&self, session_id: &str) -> Result<(), ApiError> {
        let session = self.session(session_id).await?;
        let refresh = self.open(&session.sealed_refresh, session_id)?;
        self.client()?
            .seller_logout(&SellerLogoutRequest {
                refresh_token: refresh,
            })
            .await
            .map_err(|e| upstream_error(e, "the seller logout"))?;
        with_db!(&self.db, |pool| sqlx::query(
            "UPDATE mia_sessions SET active = $2 WHERE session_id = $1"
        )
        .bind(session_id)
        .bind(false)
        .execute(pool)
        .await
        .map(drop))?;
        self.broker.forget(&session_key(session_id)).await;
        Ok(())
    }

    pub async fn seller(
        &self,
        session_id: &str,
    ) -> Result<(SellerSession, Token, String), ApiError> {
        let session = self.session(session_id).await?;
        let token = self
            .access_token(session_id, Duration::from_secs(5))
            .await?;
        let info = self
            .client()?
            .seller_info(&SecretString::from(token.access_token.clone()))
            .await
            .map_err(|e| upstream_error(e, "the seller session info"))?;
        Ok((info, token, session.activation_id))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_key_does_not_give_the_session_away() {
        let session = "0b6a3c52-2f0e-4d7e-9a57-3c1f1a2b9e10";
        let key = super::session_key(session);
        assert!(key.starts_with("token:mia:"), "{key}");
        assert!(!key.contains(session) && !key.contains("0b6a3c52"), "{key}");
        assert_eq!(key, super::session_key(session), "stable");
    }
}
