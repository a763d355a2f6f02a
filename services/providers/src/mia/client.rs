//! The MIA POS client: one method per activation and seller-session call, each one HTTP request, never retried here.

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::paths;
use super::types::{
    ActivationConfirmed, ActivationInfo, ConfirmActivationRequest, DeviceInfo, InitActivation,
    InitActivationRequest, OtpResent, ResendOtpRequest, SellerLoginRequest, SellerLogoutRequest,
    SellerRefreshRequest, SellerSession, SellerTokens,
};
use crate::error::{ProviderError, Upstream};
use crate::http::{self, StatusClass};

const UPSTREAM: Upstream = Upstream::Mia;
const CORRELATION_HEADER: &str = "X-CORRELATION-ID";

/// Talks to one MIA POS back end. Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct MiaClient {
    http: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
    correlation_id: Option<Uuid>,
}

mod wire {
    //! The JSON bodies as MIA spells them.
    use serde::{Deserialize, Serialize};

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Init<'a> {
        pub terminal_id: &'a str,
        pub merchant_idno: &'a str,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ActivationRef {
        pub terminal_activation_id: uuid::Uuid,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Confirm<'a> {
        pub terminal_activation_id: uuid::Uuid,
        pub otp_code: &'a str,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Login<'a> {
        pub terminal_activation_id: uuid::Uuid,
        pub username: &'a str,
        pub password: &'a str,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Refresh<'a> {
        pub refresh_token: &'a str,
        pub terminal_activation_id: uuid::Uuid,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Logout<'a> {
        pub refresh_token: &'a str,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct InitAnswer {
        pub terminal_activation_id: uuid::Uuid,
        pub masked_phone_number: String,
        pub wait_time_to_resend: u64,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ResendAnswer {
        pub left_attempts: u32,
        pub wait_time_to_resend: u64,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ConfirmAnswer {
        pub left_attempts: u32,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct InfoAnswer {
        pub terminal_id: StringOrNumber,
        pub merchant_idno: String,
        pub merchant_name: String,
        pub store_address: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TokensAnswer {
        pub auth_tokens: AuthTokens,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct AuthTokens {
        pub access_token: secrecy::SecretString,
        pub refresh_token: secrecy::SecretString,
        pub access_token_expires_in: u64,
    }

    #[derive(Deserialize)]
    pub struct Done {}

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ErrorAnswer {
        pub error_code: Option<String>,
        pub error_message: Option<String>,
        pub left_attempts: Option<u32>,
        pub wait_time_to_resend: Option<u64>,
    }
}

impl MiaClient {
    /// A client for the MIA back end at `base_url` whose every call gives up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ProviderError> {
        Ok(MiaClient {
            http: http::build_client(UPSTREAM, timeout)?,
            base: http::parse_base_url(UPSTREAM, base_url)?,
            timeout,
            correlation_id: None,
        })
    }

    /// A clone whose calls all carry `X-CORRELATION-ID: id`; without it each call gets a fresh id.
    pub fn with_correlation_id(&self, id: Uuid) -> Self {
        MiaClient {
            correlation_id: Some(id),
            ..self.clone()
        }
    }

    /// `POST /pos/api/v1/terminal-activation/init`: starts binding a terminal to `device`.
    #[tracing::instrument(
        name = "mia.init_activation",
        skip_all,
        fields(terminal_id = %request.terminal_id, merchant_idno = %request.merchant_idno, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn init_activation(
        &self,
        device: &DeviceInfo,
        request: &InitActivationRequest,
    ) -> Result<InitActivation, ProviderError> {
        let body = wire::Init {
            terminal_id: &request.terminal_id,
            merchant_idno: &request.merchant_idno,
        };
        let answer: wire::InitAnswer = self
            .call(Method::POST, paths::ACTIVATION_INIT, |r| {
                let mut r = r
                    .header("X-DEVICE", &device.device)
                    .header("X-PLATFORM-TYPE", device.platform_type.as_str())
                    .header("X-INSTALLATION-ID", device.installation_id.to_string())
                    .header("X-POS-APP-VERSION", device.pos_app_version.to_string());
                if let Some(version) = &device.platform_version {
                    r = r.header("X-PLATFORM-VERSION", version);
                }
                if let Some(version) = device.native_app_version {
                    r = r.header("X-NATIVE-APP-VERSION", version.to_string());
                }
                r.json(&body)
            })
            .await?;
        Ok(InitActivation {
            terminal_activation_id: answer.terminal_activation_id,
            masked_phone_number: answer.masked_phone_number,
            wait_time_to_resend: Duration::from_secs(answer.wait_time_to_resend),
        })
    }

    /// `POST /pos/api/v1/terminal-activation/resend-otp`: a new OTP, refused before `waitTimeToResend`.
    #[tracing::instrument(
        name = "mia.resend_otp",
        skip_all,
        fields(activation_id = %request.terminal_activation_id, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn resend_otp(&self, request: &ResendOtpRequest) -> Result<OtpResent, ProviderError> {
        let body = wire::ActivationRef {
            terminal_activation_id: request.terminal_activation_id,
        };
        let answer: wire::ResendAnswer = self
            .call(Method::POST, paths::ACTIVATION_RESEND_OTP, |r| {
                r.json(&body)
            })
            .await?;
        Ok(OtpResent {
            left_attempts: answer.left_attempts,
            wait_time_to_resend: Duration::from_secs(answer.wait_time_to_resend),
        })
    }

    /// `POST /pos/api/v1/terminal-activation/confirm`: confirms the binding with the OTP.
    #[tracing::instrument(
        name = "mia.confirm_activation",
        skip_all,
        fields(activation_id = %request.terminal_activation_id, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn confirm_activation(
        &self,
        request: &ConfirmActivationRequest,
    ) -> Result<ActivationConfirmed, ProviderError> {
        let body = wire::Confirm {
            terminal_activation_id: request.terminal_activation_id,
            otp_code: request.otp_code.expose_secret(),
        };
        let answer: wire::ConfirmAnswer = self
            .call(Method::POST, paths::ACTIVATION_CONFIRM, |r| r.json(&body))
            .await?;
        Ok(ActivationConfirmed {
            left_attempts: answer.left_attempts,
        })
    }

    /// `GET /pos/api/v1/terminal-activation/{posActivationId}`: the terminal and merchant behind it.
    #[tracing::instrument(
        name = "mia.activation_info",
        skip_all,
        fields(activation_id = %activation_id, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn activation_info(
        &self,
        activation_id: Uuid,
    ) -> Result<ActivationInfo, ProviderError> {
        let path = format!("{}/{activation_id}", paths::ACTIVATION);
        let answer: wire::InfoAnswer = self.call(Method::GET, &path, |r| r).await?;
        Ok(ActivationInfo {
            terminal_id: match answer.terminal_id {
                wire::StringOrNumber::String(s) => s,
                wire::StringOrNumber::Number(n) => n.to_string(),
            },
            merchant_idno: answer.merchant_idno,
            merchant_name: answer.merchant_name,
            store_address: answer.store_address,
        })
    }

    /// `POST /pos/api/v1/seller/login`: a seller's token pair on a confirmed activation.
    #[tracing::instrument(
        name = "mia.seller_login",
        skip_all,
        fields(activation_id = %request.terminal_activation_id, username = %request.username, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn seller_login(
        &self,
        request: &SellerLoginRequest,
    ) -> Result<SellerTokens, ProviderError> {
        let body = wire::Login {
            terminal_activation_id: request.terminal_activation_id,
            username: &request.username,
            password: request.password.expose_secret(),
        };
        let answer: wire::TokensAnswer = self
            .call(Method::POST, paths::SELLER_LOGIN, |r| r.json(&body))
            .await?;
        Ok(tokens(answer))
    }

    /// `POST /pos/api/v1/seller/refresh`: a new token pair; the refresh token presented is used up.
    #[tracing::instrument(
        name = "mia.seller_refresh",
        skip_all,
        fields(activation_id = %request.terminal_activation_id, correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn seller_refresh(
        &self,
        request: &SellerRefreshRequest,
    ) -> Result<SellerTokens, ProviderError> {
        let body = wire::Refresh {
            refresh_token: request.refresh_token.expose_secret(),
            terminal_activation_id: request.terminal_activation_id,
        };
        let answer: wire::TokensAnswer = self
            .call(Method::POST, paths::SELLER_REFRESH, |r| r.json(&body))
            .await?;
        Ok(tokens(answer))
    }

    /// `POST /pos/api/v1/seller/logout`: ends the seller session the refresh token belongs to.
    #[tracing::instrument(
        name = "mia.seller_logout",
        skip_all,
        fields(correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn seller_logout(&self, request: &SellerLogoutRequest) -> Result<(), ProviderError> {
        let body = wire::Logout {
            refresh_token: request.refresh_token.expose_secret(),
        };
        let _: wire::Done = self
            .call(Method::POST, paths::SELLER_LOGOUT, |r| r.json(&body))
            .await?;
        Ok(())
    }

    /// `GET /pos/api/v1/seller/info`: the seller, terminal, merchant, place and bank of a session.
    #[tracing::instrument(
        name = "mia.seller_info",
        skip_all,
        fields(correlation_id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn seller_info(
        &self,
        access_token: &SecretString,
    ) -> Result<SellerSession, ProviderError> {
        self.call(Method::GET, paths::SELLER_INFO, |r| {
            r.bearer_auth(access_token.expose_secret())
        })
        .await
    }

    /// One request to `path`, shaped by `build`, its answer read as `T` or as MIA's error body.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let url = http::join(&self.base, &segments);
        let url_text = url.to_string();
        let correlation_id = self.correlation_id.unwrap_or_else(Uuid::new_v4);
        tracing::Span::current().record("correlation_id", tracing::field::display(correlation_id));
        let request = build(
            self.http
                .request(method, url)
                .header(reqwest::header::ACCEPT, "application/json")
                .header(CORRELATION_HEADER, correlation_id.to_string()),
        );
        let answer = http::exchange(UPSTREAM, &url_text, self.timeout, request).await?;
        read_answer(&url_text, answer)
    }
}

fn tokens(answer: wire::TokensAnswer) -> SellerTokens {
    SellerTokens {
        access_token: answer.auth_tokens.access_token,
        refresh_token: answer.auth_tokens.refresh_token,
        access_token_expires_in: Duration::from_secs(answer.auth_tokens.access_token_expires_in),
    }
}

/// `result` of a MIA answer, where it has one.
#[derive(Deserialize)]
struct Outcome {
    result: Option<String>,
}

fn read_answer<T: DeserializeOwned>(url: &str, answer: http::Answer) -> Result<T, ProviderError> {
    let status = answer.status;
    match http::classify(status) {
        StatusClass::Success => {
            let outcome: Outcome = serde_json::from_slice(&answer.body)
                .map_err(|e| protocol(url, format!("answer is not MIA's JSON: {e}")))?;
            match outcome.result.as_deref() {
                None | Some("success") => serde_json::from_slice(&answer.body)
                    .map_err(|e| protocol(url, format!("answer does not match the contract: {e}"))),
                Some("error") => Err(refused(url, status, &answer.body)),
                Some(other) => Err(protocol(url, format!("unknown result {other:?}"))),
            }
        }
        StatusClass::Refused => Err(refused(url, status, &answer.body)),
        StatusClass::Unavailable => {
            let code = serde_json::from_slice::<wire::ErrorAnswer>(&answer.body)
                .ok()
                .and_then(|e| e.error_code)
                .unwrap_or_else(|| http::snippet(&answer.body));
            Err(ProviderError::Unavailable {
                upstream: UPSTREAM,
                url: url.to_owned(),
                cause: format!("HTTP {status}: {code}"),
            })
        }
        StatusClass::Unexpected => Err(protocol(url, format!("unexpected HTTP {status}"))),
    }
}

/// A refusal, read from MIA's error body where there is one.
fn refused(url: &str, status: reqwest::StatusCode, body: &[u8]) -> ProviderError {
    let parsed = serde_json::from_slice::<wire::ErrorAnswer>(body).ok();
    let (error, description, left_attempts, retry_after) = match parsed {
        Some(wire::ErrorAnswer {
            error_code: Some(code),
            error_message,
            left_attempts,
            wait_time_to_resend,
        }) => (
            code,
            error_message.unwrap_or_default(),
            left_attempts,
            wait_time_to_resend.map(Duration::from_secs),
        ),
        _ => (
            format!("http_{}", status.as_u16()),
            http::snippet(body),
            None,
            None,
        ),
    };
    ProviderError::Refused {
        upstream: UPSTREAM,
        url: url.to_owned(),
        status: status.as_u16(),
        error,
        description,
        left_attempts,
        retry_after,
    }
}

fn protocol(url: &str, detail: String) -> ProviderError {
    ProviderError::Protocol {
        upstream: UPSTREAM,
        url: url.to_owned(),
        detail,
    }
}
