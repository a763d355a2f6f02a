//! The MIA POS client: one method per activation and seller-session call, each one HTTP request, never retried here.

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::paths;
use super::types::{
    ActivationConfirmed, ActivationInfo, AmountType, Amounts, ConfirmActivationRequest, DeviceInfo,
    InitActivation, InitActivationRequest, OtpResent, PaymentCheck, PaymentState, QrExtension,
    QrInfo, QrSettings, QrState, QrStatus, QrType, ResendOtpRequest, ReturnRequest,
    SellerLoginRequest, SellerLogoutRequest, SellerRefreshRequest, SellerSession, SellerTokens,
    ShiftStatus, ShiftZReport, TxInfo, TxPage, TxReturn, TxSummary, TxType, WireMoney,
};
use crate::error::{ProviderError, Upstream};
use crate::http::{self, StatusClass};

const UPSTREAM: Upstream = Upstream::Mia;
const CORRELATION_HEADER: &str = "X-CORRELATION-ID";

/// Talks to one MIA POS back end. Cheap to clone; clones share one connection pool.
///
/// Every call carries `X-CORRELATION-ID`: the one set with [`MiaClient::with_correlation_id`],
/// else the caller's trace id (so MIA's logs and fiscus's traces meet), else a fresh UUID. A client
/// given a device ([`MiaClient::with_device`]) sends its `X-DEVICE`, `X-PLATFORM-*`,
/// `X-INSTALLATION-ID` and `X-*-APP-VERSION` headers with every call.
#[derive(Clone, Debug)]
pub struct MiaClient {
    http: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
    correlation_id: Option<Uuid>,
    device: Option<DeviceInfo>,
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
            device: None,
        })
    }

    /// A clone that sends `device`'s headers with every call.
    pub fn with_device(&self, device: DeviceInfo) -> Self {
        MiaClient {
            device: Some(device),
            ..self.clone()
        }
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
            .call_as(Some(device), Method::POST, paths::ACTIVATION_INIT, |r| {
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
        self.call_as(self.device.as_ref(), method, path, build)
            .await
    }

    /// [`MiaClient::call`] with `device`'s headers.
    async fn call_as<T: DeserializeOwned>(
        &self,
        device: Option<&DeviceInfo>,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let url = http::join(&self.base, &segments);
        let url_text = url.to_string();
        let correlation_id = self
            .correlation_id
            .or_else(trace_correlation_id)
            .unwrap_or_else(Uuid::new_v4);
        tracing::Span::current().record("correlation_id", tracing::field::display(correlation_id));
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(CORRELATION_HEADER, correlation_id.to_string());
        if let Some(device) = device {
            request = request
                .header("X-DEVICE", &device.device)
                .header("X-PLATFORM-TYPE", device.platform_type.as_str())
                .header("X-INSTALLATION-ID", device.installation_id.to_string())
                .header("X-POS-APP-VERSION", device.pos_app_version.to_string());
            if let Some(version) = &device.platform_version {
                request = request.header("X-PLATFORM-VERSION", version);
            }
            if let Some(version) = device.native_app_version {
                request = request.header("X-NATIVE-APP-VERSION", version.to_string());
            }
        }
        let request = build(request);
        let answer = http::exchange(UPSTREAM, &url_text, self.timeout, request).await?;
        read_answer(&url_text, answer)
    }
}

/// The current trace's id as a UUID (both are 128 bits), when the process traces.
fn trace_correlation_id() -> Option<Uuid> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current());
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| Uuid::from_bytes(span_context.trace_id().to_bytes()))
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

mod pay_wire {
    //! The JSON bodies of the QR, transaction, return, settings and shift calls as MIA spells them.
    use serde::{Deserialize, Serialize};

    use super::WireMoney;

    #[derive(Serialize, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct ExtensionBody {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub amount: Option<WireMoney>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub min_amount: Option<WireMoney>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub max_amount: Option<WireMoney>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreateQr {
        pub qr_type: &'static str,
        pub amount_type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub extension: Option<ExtensionBody>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Extension {
        pub extension_id: uuid::Uuid,
        #[serde(default)]
        pub qr_expire_in: i64,
        pub amount: Option<WireMoney>,
        pub min_amount: Option<WireMoney>,
        pub max_amount: Option<WireMoney>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Qr {
        pub qr_id: uuid::Uuid,
        pub qr_type: String,
        pub amount_type: String,
        #[serde(default)]
        pub qr_text: Option<String>,
        #[serde(default)]
        pub qr_image: Option<String>,
        #[serde(default)]
        pub extension: Option<Extension>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct QrAnswer {
        pub qr_info: Qr,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct QrStatusAnswer {
        pub state: String,
        #[serde(default)]
        pub qr_info: Option<Qr>,
    }

    #[derive(Deserialize)]
    pub struct ActiveAnswer {
        #[serde(default)]
        pub codes: Vec<Qr>,
    }

    /// The seed spells the key `extensionIfo`; `extensionInfo` is read too.
    #[derive(Deserialize)]
    pub struct ExtensionAnswer {
        #[serde(rename = "extensionIfo", alias = "extensionInfo")]
        pub extension_info: Extension,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Return {
        pub request_id: u64,
        pub amount: WireMoney,
        pub date: String,
        #[serde(default)]
        pub reason_code: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Tx {
        pub id: u64,
        pub amount: WireMoney,
        #[serde(default)]
        pub ccy: Option<String>,
        pub date: String,
        #[serde(rename = "type")]
        pub tx_type: String,
        #[serde(default)]
        pub rrn: Option<String>,
        #[serde(default)]
        pub approval_code: Option<String>,
        /// The seed writes this key with two Cyrillic `с` (U+0441); the ASCII spelling is read too.
        #[serde(default, rename = "m\u{441}\u{441}", alias = "mcc")]
        pub mcc: Option<String>,
        #[serde(default)]
        pub swift_message_type: Option<String>,
        #[serde(default)]
        pub swift_message_id: Option<String>,
        #[serde(default)]
        pub swift_payer_bank: Option<String>,
        #[serde(default)]
        pub returns: Option<Vec<Return>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CheckAnswer {
        pub state: String,
        #[serde(default)]
        pub error_description: Option<String>,
        #[serde(default)]
        pub last_tx_info: Option<Tx>,
        #[serde(default)]
        pub total_payments: u32,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TxListAnswer {
        pub is_ended: bool,
        #[serde(default)]
        pub tx_list: Vec<Tx>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TxAnswer {
        pub tx_info: Tx,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ReturnBody<'a> {
        pub tx_id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub amount: Option<WireMoney>,
        pub full_refund: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub ccy: Option<&'a str>,
        pub reason_code: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_message: Option<&'a str>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ReturnAnswer {
        pub request_id: u64,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Settings {
        pub qr_type: String,
        pub qr_amount_type: String,
        #[serde(default)]
        pub qr_ttl: Option<u32>,
        #[serde(default)]
        pub prohibit_settings_change: Option<bool>,
        #[serde(default)]
        pub when_updated: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SettingsAnswer {
        pub qr_settings: Settings,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ShiftAnswer {
        #[serde(default)]
        pub shift_id: Option<String>,
        #[serde(default)]
        pub is_opened: bool,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ZReportAnswer {
        pub report_json: ZReport,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ZReport {
        #[serde(default)]
        pub payment_count: u64,
        pub payment_sum: Option<WireMoney>,
        #[serde(default)]
        pub cancellation_count: u64,
        pub cancellation_sum: Option<WireMoney>,
        pub total_sum: Option<WireMoney>,
    }
}

/// Reads MIA's date-time: RFC 3339 with an offset, or (as the seed shows) a local date-time
/// without one, taken as UTC.
pub(crate) fn parse_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
}

/// MIA's date-time as the seed writes it (UTC, no offset).
pub(crate) fn format_date(date: chrono::DateTime<chrono::Utc>) -> String {
    date.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn extension_body(amounts: &Amounts) -> Option<pay_wire::ExtensionBody> {
    match *amounts {
        // A free amount transmits no extension (the seed).
        Amounts::Free => None,
        Amounts::Fixed(amount) => Some(pay_wire::ExtensionBody {
            amount: Some(WireMoney(amount)),
            ..Default::default()
        }),
        Amounts::Controlled { min, max } => Some(pay_wire::ExtensionBody {
            min_amount: Some(WireMoney(min)),
            max_amount: Some(WireMoney(max)),
            ..Default::default()
        }),
    }
}

fn extension(wire: pay_wire::Extension) -> QrExtension {
    QrExtension {
        extension_id: wire.extension_id,
        expires_in: Duration::from_secs(u64::try_from(wire.qr_expire_in).unwrap_or(0)),
        amount: wire.amount.map(|m| m.0),
        min_amount: wire.min_amount.map(|m| m.0),
        max_amount: wire.max_amount.map(|m| m.0),
    }
}

fn qr_info(url: &str, wire: pay_wire::Qr) -> Result<QrInfo, ProviderError> {
    Ok(QrInfo {
        qr_id: wire.qr_id,
        qr_type: QrType::parse(&wire.qr_type)
            .ok_or_else(|| protocol(url, format!("unknown qrType {:?}", wire.qr_type)))?,
        amount_type: AmountType::parse(&wire.amount_type)
            .ok_or_else(|| protocol(url, format!("unknown amountType {:?}", wire.amount_type)))?,
        qr_text: wire.qr_text.unwrap_or_default(),
        qr_image: wire.qr_image.filter(|i| !i.is_empty()),
        extension: wire.extension.map(extension),
    })
}

fn tx_info(url: &str, wire: pay_wire::Tx) -> Result<TxInfo, ProviderError> {
    let date = parse_date(&wire.date).ok_or_else(|| {
        protocol(
            url,
            format!("transaction date {:?} is not a date", wire.date),
        )
    })?;
    let returns = wire
        .returns
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            Ok(TxReturn {
                request_id: r.request_id,
                amount: r.amount.0,
                date: parse_date(&r.date).ok_or_else(|| {
                    protocol(url, format!("return date {:?} is not a date", r.date))
                })?,
                reason_code: r.reason_code.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    Ok(TxInfo {
        summary: TxSummary {
            id: wire.id,
            amount: wire.amount.0,
            currency: wire.ccy.unwrap_or_default(),
            date,
            tx_type: TxType::parse(&wire.tx_type).ok_or_else(|| {
                protocol(url, format!("unknown transaction type {:?}", wire.tx_type))
            })?,
        },
        rrn: wire.rrn.unwrap_or_default(),
        approval_code: wire.approval_code.unwrap_or_default(),
        mcc: wire.mcc.unwrap_or_default(),
        swift_message_type: wire.swift_message_type.unwrap_or_default(),
        swift_message_id: wire.swift_message_id.unwrap_or_default(),
        swift_payer_bank: wire.swift_payer_bank.unwrap_or_default(),
        returns,
    })
}

fn bearer(r: reqwest::RequestBuilder, token: &SecretString) -> reqwest::RequestBuilder {
    r.bearer_auth(token.expose_secret())
}

fn path_of(parts: &[&str]) -> String {
    parts.join("/")
}

impl MiaClient {
    fn url_of(&self, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        http::join(&self.base, &segments).to_string()
    }

    /// `POST /pos/api/v2/qr`: a new QR code; `request` is its payment request (none for a
    /// hybrid QR or a static QR without one; a free amount transmits none).
    #[tracing::instrument(name = "mia.create_qr", skip_all, fields(qr_type = qr_type.as_str(), correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn create_qr(
        &self,
        token: &SecretString,
        qr_type: QrType,
        amount_type: AmountType,
        request: Option<&Amounts>,
    ) -> Result<QrInfo, ProviderError> {
        let body = pay_wire::CreateQr {
            qr_type: qr_type.as_str(),
            amount_type: amount_type.as_str(),
            extension: request.and_then(extension_body),
        };
        let answer: pay_wire::QrAnswer = self
            .call(Method::POST, paths::QR, |r| bearer(r, token).json(&body))
            .await?;
        qr_info(&self.url_of(paths::QR), answer.qr_info)
    }

    /// `GET /pos/api/v2/qr/active`: the terminal's active QR codes, of one type or all.
    #[tracing::instrument(name = "mia.active_qrs", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn active_qrs(
        &self,
        token: &SecretString,
        qr_type: Option<QrType>,
        with_image: bool,
    ) -> Result<Vec<QrInfo>, ProviderError> {
        let answer: pay_wire::ActiveAnswer = self
            .call(Method::GET, paths::QR_ACTIVE, |r| {
                let mut query = vec![("isImageRequired", with_image.to_string())];
                if let Some(qr_type) = qr_type {
                    query.push(("type", qr_type.as_str().to_owned()));
                }
                bearer(r, token).query(&query)
            })
            .await?;
        let url = self.url_of(paths::QR_ACTIVE);
        answer.codes.into_iter().map(|q| qr_info(&url, q)).collect()
    }

    /// `GET /pos/api/v2/qr/{qrId}`: a QR code and its state; its extension only while active.
    #[tracing::instrument(name = "mia.qr", skip_all, fields(%qr_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn qr(
        &self,
        token: &SecretString,
        qr_id: Uuid,
        with_image: bool,
    ) -> Result<QrStatus, ProviderError> {
        let path = path_of(&[paths::QR, &qr_id.to_string()]);
        let answer: pay_wire::QrStatusAnswer = self
            .call(Method::GET, &path, |r| {
                bearer(r, token).query(&[("isImageRequired", with_image.to_string())])
            })
            .await?;
        let url = self.url_of(&path);
        Ok(QrStatus {
            state: QrState::parse(&answer.state)
                .ok_or_else(|| protocol(&url, format!("unknown QR state {:?}", answer.state)))?,
            qr: answer.qr_info.map(|q| qr_info(&url, q)).transpose()?,
        })
    }

    /// `DELETE /pos/api/v2/qr/{qrId}`: cancels a QR code with its active payment request.
    #[tracing::instrument(name = "mia.cancel_qr", skip_all, fields(%qr_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn cancel_qr(&self, token: &SecretString, qr_id: Uuid) -> Result<(), ProviderError> {
        let path = path_of(&[paths::QR, &qr_id.to_string()]);
        let _: wire::Done = self
            .call(Method::DELETE, &path, |r| bearer(r, token))
            .await?;
        Ok(())
    }

    /// `POST /pos/api/v2/qr/{qrId}/extension`: a new payment request on a static or hybrid QR.
    #[tracing::instrument(name = "mia.create_extension", skip_all, fields(%qr_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn create_extension(
        &self,
        token: &SecretString,
        qr_id: Uuid,
        amounts: &Amounts,
    ) -> Result<QrExtension, ProviderError> {
        let path = path_of(&[paths::QR, &qr_id.to_string(), "extension"]);
        let body = extension_body(amounts).unwrap_or_default();
        let answer: pay_wire::ExtensionAnswer = self
            .call(Method::POST, &path, |r| bearer(r, token).json(&body))
            .await?;
        Ok(extension(answer.extension_info))
    }

    /// `GET /pos/api/v2/qr/extension/{extensionId}/check`: the state of a payment request.
    #[tracing::instrument(name = "mia.check_extension", skip_all, fields(%extension_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn check_extension(
        &self,
        token: &SecretString,
        extension_id: Uuid,
    ) -> Result<PaymentCheck, ProviderError> {
        let path = path_of(&[paths::QR_EXTENSION, &extension_id.to_string(), "check"]);
        let answer: pay_wire::CheckAnswer =
            self.call(Method::GET, &path, |r| bearer(r, token)).await?;
        let url = self.url_of(&path);
        Ok(PaymentCheck {
            state: PaymentState::parse(&answer.state).ok_or_else(|| {
                protocol(&url, format!("unknown payment state {:?}", answer.state))
            })?,
            error_description: answer.error_description.unwrap_or_default(),
            last_transaction: answer
                .last_tx_info
                .map(|tx| tx_info(&url, tx))
                .transpose()?,
            total_payments: answer.total_payments,
        })
    }

    /// `DELETE /pos/api/v2/qr/extension/{extensionId}`: cancels a hybrid QR's payment request.
    #[tracing::instrument(name = "mia.cancel_extension", skip_all, fields(%extension_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn cancel_extension(
        &self,
        token: &SecretString,
        extension_id: Uuid,
    ) -> Result<(), ProviderError> {
        let path = path_of(&[paths::QR_EXTENSION, &extension_id.to_string()]);
        let _: wire::Done = self
            .call(Method::DELETE, &path, |r| bearer(r, token))
            .await?;
        Ok(())
    }

    /// The transactions of shift `shift_id`, newest first, older than `before` when given.
    #[tracing::instrument(name = "mia.transactions", skip_all, fields(shift_id = %shift_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn transactions(
        &self,
        token: &SecretString,
        shift_id: &str,
        before: Option<u64>,
    ) -> Result<TxPage, ProviderError> {
        let path = path_of(&[paths::SHIFT, shift_id, "transactions"]);
        let answer: pay_wire::TxListAnswer = self
            .call(Method::GET, &path, |r| {
                let r = bearer(r, token);
                match before {
                    Some(tx_id) => r.query(&[("txId", tx_id)]),
                    None => r,
                }
            })
            .await?;
        let url = self.url_of(&path);
        Ok(TxPage {
            is_ended: answer.is_ended,
            transactions: answer
                .tx_list
                .into_iter()
                .map(|tx| tx_info(&url, tx).map(|info| info.summary))
                .collect::<Result<_, _>>()?,
        })
    }

    /// One transaction with its bank details.
    #[tracing::instrument(name = "mia.transaction", skip_all, fields(tx_id = tx_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn transaction(
        &self,
        token: &SecretString,
        tx_id: u64,
    ) -> Result<TxInfo, ProviderError> {
        let path = path_of(&[paths::TRANSACTION, &tx_id.to_string()]);
        let answer: pay_wire::TxAnswer =
            self.call(Method::GET, &path, |r| bearer(r, token)).await?;
        tx_info(&self.url_of(&path), answer.tx_info)
    }

    /// Returns (refunds) a completed transaction in full or in part; answers MIA's `requestId`.
    #[tracing::instrument(name = "mia.return", skip_all, fields(tx_id = request.tx_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn return_transaction(
        &self,
        token: &SecretString,
        request: &ReturnRequest,
    ) -> Result<u64, ProviderError> {
        let body = pay_wire::ReturnBody {
            tx_id: request.tx_id,
            amount: request.amount.map(WireMoney),
            full_refund: request.full_refund,
            ccy: request.currency.as_deref(),
            reason_code: &request.reason_code,
            reason_message: request.reason_message.as_deref(),
        };
        let answer: pay_wire::ReturnAnswer = self
            .call(Method::POST, paths::TRANSACTION_RETURN, |r| {
                bearer(r, token).json(&body)
            })
            .await?;
        Ok(answer.request_id)
    }

    /// The terminal's QR settings.
    #[tracing::instrument(name = "mia.settings", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn settings(&self, token: &SecretString) -> Result<QrSettings, ProviderError> {
        let answer: pay_wire::SettingsAnswer = self
            .call(Method::GET, paths::SETTINGS, |r| bearer(r, token))
            .await?;
        let url = self.url_of(paths::SETTINGS);
        let wire = answer.qr_settings;
        Ok(QrSettings {
            qr_type: QrType::parse(&wire.qr_type)
                .ok_or_else(|| protocol(&url, format!("unknown qrType {:?}", wire.qr_type)))?,
            amount_type: AmountType::parse(&wire.qr_amount_type).ok_or_else(|| {
                protocol(
                    &url,
                    format!("unknown qrAmountType {:?}", wire.qr_amount_type),
                )
            })?,
            qr_ttl: wire
                .qr_ttl
                .unwrap_or(fiscus_domain::qr::ttl::DEFAULT_SECONDS),
            prohibit_settings_change: wire.prohibit_settings_change.unwrap_or(false),
            when_updated: wire.when_updated.as_deref().and_then(parse_date),
        })
    }

    /// Replaces the terminal's QR settings.
    #[tracing::instrument(name = "mia.update_settings", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn update_settings(
        &self,
        token: &SecretString,
        settings: &QrSettings,
    ) -> Result<(), ProviderError> {
        let body = pay_wire::Settings {
            qr_type: settings.qr_type.as_str().to_owned(),
            qr_amount_type: settings.amount_type.as_str().to_owned(),
            qr_ttl: Some(settings.qr_ttl),
            prohibit_settings_change: Some(settings.prohibit_settings_change),
            when_updated: settings.when_updated.map(format_date),
        };
        let _: wire::Done = self
            .call(Method::PUT, paths::SETTINGS, |r| {
                bearer(r, token).json(&body)
            })
            .await?;
        Ok(())
    }

    /// `GET /pos/api/v1/shift/check`: the terminal's current shift.
    #[tracing::instrument(name = "mia.shift_check", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn shift_check(&self, token: &SecretString) -> Result<ShiftStatus, ProviderError> {
        let answer: pay_wire::ShiftAnswer = self
            .call(Method::GET, paths::SHIFT_CHECK, |r| bearer(r, token))
            .await?;
        Ok(ShiftStatus {
            shift_id: answer.shift_id.filter(|s| !s.is_empty()),
            is_opened: answer.is_opened,
        })
    }

    /// `POST /pos/api/v1/shift/open`: opens the seller's terminal's shift; answers its id.
    /// `SHIFT_ALREADY_OPENED` (409) when one is open.
    #[tracing::instrument(name = "mia.shift_open", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn shift_open(&self, token: &SecretString) -> Result<String, ProviderError> {
        let answer: pay_wire::ShiftAnswer = self
            .call(Method::POST, paths::SHIFT_OPEN, |r| bearer(r, token))
            .await?;
        answer.shift_id.filter(|s| !s.is_empty()).ok_or_else(|| {
            protocol(
                &self.url_of(paths::SHIFT_OPEN),
                "no shiftId in the answer".to_owned(),
            )
        })
    }

    /// `POST /pos/api/v1/shift/close`: closes the terminal's open shift; answers its id when MIA
    /// names it. `SHIFT_NOT_OPENED` (409) when none is open.
    #[tracing::instrument(name = "mia.shift_close", skip_all, fields(correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn shift_close(&self, token: &SecretString) -> Result<Option<String>, ProviderError> {
        let answer: pay_wire::ShiftAnswer = self
            .call(Method::POST, paths::SHIFT_CLOSE, |r| bearer(r, token))
            .await?;
        Ok(answer.shift_id.filter(|s| !s.is_empty()))
    }

    /// `GET /pos/api/v2/shift/{shiftId}/z-report?format=json`: MIA's summary Z-report of a
    /// closed shift, its sums read exactly.
    #[tracing::instrument(name = "mia.shift_z_report", skip_all, fields(shift_id = %shift_id, correlation_id), err(Display, level = tracing::Level::WARN))]
    pub async fn shift_z_report(
        &self,
        token: &SecretString,
        shift_id: &str,
    ) -> Result<ShiftZReport, ProviderError> {
        let path = path_of(&[paths::SHIFT_V2, shift_id, "z-report"]);
        let answer: pay_wire::ZReportAnswer = self
            .call(Method::GET, &path, |r| {
                bearer(r, token).query(&[("format", "json"), ("isFullReport", "false")])
            })
            .await?;
        let report = answer.report_json;
        let money = |m: Option<WireMoney>| m.map_or(fiscus_domain::Money::ZERO, |m| m.0);
        let (payment_sum, cancellation_sum) =
            (money(report.payment_sum), money(report.cancellation_sum));
        let total_sum = match report.total_sum {
            Some(total) => total.0,
            None => payment_sum
                .checked_sub(cancellation_sum)
                .ok_or_else(|| protocol(&self.url_of(&path), "the sums overflow".to_owned()))?,
        };
        Ok(ShiftZReport {
            payment_count: report.payment_count,
            payment_sum,
            cancellation_count: report.cancellation_count,
            cancellation_sum,
            total_sum,
        })
    }
}
