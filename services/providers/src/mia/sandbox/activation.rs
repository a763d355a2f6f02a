//! Terminal activation: init (sends the OTP), resend, confirm, and activation info.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::api::{
    ApiError, ApiJson, ApiResult, header_text, ok, required, required_header, secs_ceil, uuid_field,
};
use super::{Activation, ActivationState, MiaState};
use crate::mia::paths;
use crate::sandbox::{lock, random_digits};

const OTP_DIGITS: usize = 6;
const PLATFORM_TYPES: [&str; 4] = ["ios", "android", "web", "external_system"];

pub(super) fn routes() -> Router<Arc<MiaState>> {
    Router::new()
        .route(paths::ACTIVATION_INIT, post(init))
        .route(paths::ACTIVATION_RESEND_OTP, post(resend_otp))
        .route(paths::ACTIVATION_CONFIRM, post(confirm))
        .route(
            &format!("{}/{{posActivationId}}", paths::ACTIVATION),
            get(info),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitBody {
    terminal_id: String,
    merchant_idno: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResendBody {
    terminal_activation_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody {
    terminal_activation_id: String,
    otp_code: String,
}

/// The device headers `init` requires, checked in the order the contract lists them.
fn check_device_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    required_header(headers, "X-DEVICE")?;
    let platform = required_header(headers, "X-PLATFORM-TYPE")?;
    if !PLATFORM_TYPES.contains(&platform) {
        return Err(ApiError::validation(format!(
            "header X-PLATFORM-TYPE must be one of {}",
            PLATFORM_TYPES.join(", ")
        )));
    }
    let installation = required_header(headers, "X-INSTALLATION-ID")?;
    if Uuid::parse_str(installation).is_err() {
        return Err(ApiError::validation(
            "header X-INSTALLATION-ID must be a UUID",
        ));
    }
    let pos_version = required_header(headers, "X-POS-APP-VERSION")?;
    if pos_version.parse::<i32>().is_err() {
        return Err(ApiError::validation(
            "header X-POS-APP-VERSION must be an integer",
        ));
    }
    if let Some(native) = header_text(headers, "X-NATIVE-APP-VERSION")?
        && native.parse::<i32>().is_err()
    {
        return Err(ApiError::validation(
            "header X-NATIVE-APP-VERSION must be an integer",
        ));
    }
    Ok(())
}

async fn init(
    State(state): State<Arc<MiaState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InitBody>,
) -> ApiResult {
    check_device_headers(&headers)?;
    let terminal_id = required("terminalId", &body.terminal_id)?;
    let merchant_idno = required("merchantIdno", &body.merchant_idno)?;
    let Some(terminal) = state
        .terminals
        .iter()
        .position(|t| t.terminal_id == terminal_id && t.merchant_idno == merchant_idno)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "TERMINAL_NOT_FOUND",
            "no terminal with this terminalId for this merchantIdno",
        ));
    };
    let otp = random_digits(OTP_DIGITS).map_err(ApiError::internal)?;
    let (wait, attempts, resends) = {
        let t = lock(&state.tunables);
        (t.wait_time_to_resend, t.otp_attempts, t.otp_resends)
    };
    let id = Uuid::new_v4();
    // The sandbox's SMS: a developer reads the code from the log, a test from `last_otp`.
    tracing::info!(activation_id = %id, %otp, "MIA sandbox: OTP sent");
    lock(&state.store).activations.insert(
        id,
        Activation {
            terminal,
            state: ActivationState::Pending,
            otp,
            otp_sent_at: Instant::now(),
            left_attempts: attempts,
            left_resends: resends,
        },
    );
    tracing::debug!(activation_id = %id, terminal_id, "activation started, OTP sent");
    ok(json!({
        "result": "success",
        "terminalActivationId": id,
        "maskedPhoneNumber": state.terminals[terminal].masked_phone_number,
        "waitTimeToResend": secs_ceil(wait),
    }))
}

pub(super) fn activation_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ACTIVATION_NOT_FOUND",
        "no terminal activation with this id",
    )
}

/// Refuses OTP traffic on an activation that no longer takes any.
fn check_pending(activation: &Activation) -> Result<(), ApiError> {
    match activation.state {
        ActivationState::Pending => Ok(()),
        ActivationState::Confirmed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ACTIVATION_ALREADY_CONFIRMED",
            "terminal activation is already confirmed",
        )),
        ActivationState::Blocked => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ACTIVATION_BLOCKED",
            "no confirmation attempts left; start a new activation",
        )
        .with_left_attempts(0)),
    }
}

async fn resend_otp(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<ResendBody>,
) -> ApiResult {
    let id = uuid_field("terminalActivationId", &body.terminal_activation_id)?;
    let wait = lock(&state.tunables).wait_time_to_resend;
    let otp = random_digits(OTP_DIGITS).map_err(ApiError::internal)?;
    tracing::info!(activation_id = %id, %otp, "MIA sandbox: OTP sent again");
    let mut store = lock(&state.store);
    let activation = store
        .activations
        .get_mut(&id)
        .ok_or_else(activation_not_found)?;
    check_pending(activation)?;
    let elapsed = activation.otp_sent_at.elapsed();
    if elapsed < wait {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "OTP_RESEND_TOO_EARLY",
            "the OTP cannot be resent yet",
        )
        .with_wait_time_to_resend(secs_ceil(wait - elapsed))
        .with_left_attempts(activation.left_resends));
    }
    if activation.left_resends == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "OTP_RESEND_LIMIT_REACHED",
            "no OTP resends left; start a new activation",
        )
        .with_left_attempts(0));
    }
    activation.left_resends -= 1;
    activation.otp = otp;
    activation.otp_sent_at = Instant::now();
    ok(json!({
        "result": "success",
        "leftAttempts": activation.left_resends,
        "waitTimeToResend": secs_ceil(wait),
    }))
}

async fn confirm(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> ApiResult {
    let id = uuid_field("terminalActivationId", &body.terminal_activation_id)?;
    let code = body.otp_code.trim();
    // `string <int32>` in the contract: digits only, and a wrong format costs no attempt.
    if code.is_empty() || code.len() > 9 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation("otpCode must be a numeric code"));
    }
    let otp_lifetime = lock(&state.tunables).otp_lifetime;
    let mut store = lock(&state.store);
    let activation = store
        .activations
        .get_mut(&id)
        .ok_or_else(activation_not_found)?;
    check_pending(activation)?;
    if activation.otp_sent_at.elapsed() >= otp_lifetime {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "OTP_EXPIRED",
            "the OTP has expired; request a new one",
        )
        .with_left_attempts(activation.left_attempts));
    }
    if code != activation.otp {
        activation.left_attempts = activation.left_attempts.saturating_sub(1);
        if activation.left_attempts == 0 {
            activation.state = ActivationState::Blocked;
        }
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_OTP", "wrong OTP code")
                .with_left_attempts(activation.left_attempts),
        );
    }
    activation.state = ActivationState::Confirmed;
    ok(json!({ "result": "success", "leftAttempts": activation.left_attempts }))
}

async fn info(State(state): State<Arc<MiaState>>, Path(id): Path<String>) -> ApiResult {
    let id = uuid_field("posActivationId", &id)?;
    let store = lock(&state.store);
    let activation = store
        .activations
        .get(&id)
        .ok_or_else(activation_not_found)?;
    confirmed(activation)?;
    let terminal = &state.terminals[activation.terminal];
    ok(json!({
        "result": "success",
        "terminalId": terminal.terminal_id,
        "merchantIdno": terminal.merchant_idno,
        "merchantName": terminal.merchant_name,
        "storeAddress": terminal.store_address,
    }))
}

/// Refuses an activation that is not (yet, or any more) usable.
pub(super) fn confirmed(activation: &Activation) -> Result<(), ApiError> {
    match activation.state {
        ActivationState::Confirmed => Ok(()),
        ActivationState::Pending => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ACTIVATION_NOT_CONFIRMED",
            "terminal activation is not confirmed",
        )),
        ActivationState::Blocked => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ACTIVATION_BLOCKED",
            "terminal activation is blocked",
        )),
    }
}
