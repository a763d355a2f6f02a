//! The payer: pays a QR code or one of its payment requests with an amount (refused when it
//! does not fit the amount type, as a bank app would), has a payment fail at the bank, or lets a
//! time to live run out — over HTTP for people (`curl`) and as methods for tests.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use fiscus_domain::Money;
use fiscus_domain::qr::{AmountType, Amounts, PaymentState, QrType};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::MiaState;
use super::api::{ApiError, ApiJson, ApiResult, ok};
use super::payments::Tx;
use crate::mia::paths;
use crate::mia::types::{QrState, WireMoney};
use crate::sandbox::{lock, random_digits};

/// What the payer points a banking app at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A QR code: its active payment request (or the QR itself, for a static free QR).
    Qr(Uuid),
    /// One payment request.
    Extension(Uuid),
}

pub(super) fn routes() -> Router<Arc<MiaState>> {
    Router::new()
        .route(paths::SANDBOX_PAY, post(pay_http))
        .route(paths::SANDBOX_FAIL, post(fail_http))
        .route(paths::SANDBOX_EXPIRE, post(expire_http))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayerBody {
    qr_id: Option<Uuid>,
    extension_id: Option<Uuid>,
    amount: Option<WireMoney>,
    reason: Option<String>,
}

impl PayerBody {
    fn target(&self) -> Result<Target, ApiError> {
        match (self.qr_id, self.extension_id) {
            (Some(qr), None) => Ok(Target::Qr(qr)),
            (None, Some(extension)) => Ok(Target::Extension(extension)),
            _ => Err(ApiError::validation(
                "send exactly one of qrId and extensionId",
            )),
        }
    }
}

async fn pay_http(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<PayerBody>,
) -> ApiResult {
    let amount = body
        .amount
        .ok_or_else(|| ApiError::validation("amount is required"))?;
    let tx_id = pay(&state, body.target()?, amount.0)?;
    ok(json!({ "result": "success", "txId": tx_id }))
}

async fn fail_http(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<PayerBody>,
) -> ApiResult {
    let reason = body
        .reason
        .clone()
        .unwrap_or_else(|| "declined by the payer's bank".to_owned());
    fail(&state, body.target()?, &reason)?;
    ok(json!({ "result": "success" }))
}

async fn expire_http(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<PayerBody>,
) -> ApiResult {
    expire(&state, body.target()?)?;
    ok(json!({ "result": "success" }))
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The QR code and payment request a target names, after time has acted on them.
fn resolve(
    payments: &mut super::payments::Payments,
    target: Target,
) -> Result<(Uuid, Option<Uuid>), ApiError> {
    let (qr_id, extension_id) = match target {
        Target::Qr(qr_id) => {
            let qr = payments.qrs.get(&qr_id).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "QR_NOT_FOUND", "no such QR code")
            })?;
            (qr_id, qr.extension)
        }
        Target::Extension(id) => {
            let extension = payments.extensions.get(&id).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "EXTENSION_NOT_FOUND",
                    "no such payment request",
                )
            })?;
            (extension.qr, Some(id))
        }
    };
    if let Some(id) = extension_id {
        payments.settle(id);
    }
    Ok((qr_id, extension_id))
}

pub(super) fn pay(state: &MiaState, target: Target, amount: Money) -> Result<u64, ApiError> {
    let mut store = lock(&state.store);
    let payments = &mut store.payments;
    let (qr_id, extension_id) = resolve(payments, target)?;
    let qr = payments
        .qrs
        .get(&qr_id)
        .ok_or_else(|| ApiError::internal("QR vanished"))?;
    let (terminal, qr_type) = (qr.terminal, qr.qr_type);
    if qr.state != QrState::Active {
        state.count("payer.refused");
        return Err(refused(
            "QR_NOT_ACTIVE",
            format!("the QR code is {}", qr.state.as_str()),
        ));
    }
    let amounts = match extension_id.and_then(|id| payments.extensions.get(&id)) {
        Some(extension) => {
            let payable = extension.state == PaymentState::Pending
                || (extension.state == PaymentState::Paid
                    && qr_type == QrType::Static
                    && Instant::now() < extension.expires_at);
            if !payable {
                state.count("payer.refused");
                return Err(refused(
                    "EXTENSION_NOT_ACTIVE",
                    format!("the payment request is {}", extension.state.as_str()),
                ));
            }
            extension.amounts
        }
        // A static QR with a free amount takes payments without a request.
        None if qr_type == QrType::Static && qr.amount_type == AmountType::Free => Amounts::Free,
        None => {
            state.count("payer.refused");
            return Err(refused(
                "EXTENSION_NOT_ACTIVE",
                "the QR code has no payment request to pay",
            ));
        }
    };
    if let Err(e) = amounts.fits(amount) {
        state.count("payer.refused");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "AMOUNT_NOT_ACCEPTED",
            format!("amount {amount} {e}"),
        ));
    }
    let rrn = random_digits(12).map_err(ApiError::internal)?;
    let approval_code = random_digits(6).map_err(ApiError::internal)?;
    let shift = payments.open_shift(terminal);
    let tx_id = payments.next_tx_id();
    let date = chrono::Utc::now();
    payments.txs.insert(
        tx_id,
        Tx {
            terminal,
            shift,
            amount,
            date,
            swift_message_id: format!("VICBMD2XAXXX{}{tx_id:05}", date.format("%y%m%d")),
            rrn,
            approval_code,
            returns: Vec::new(),
        },
    );
    if let Some(id) = extension_id
        && let Some(extension) = payments.extensions.get_mut(&id)
    {
        extension.state = PaymentState::Paid;
        extension.payments = extension.payments.saturating_add(1);
        extension.last_tx = Some(tx_id);
    }
    if let Some(qr) = payments.qrs.get_mut(&qr_id) {
        match qr.qr_type {
            QrType::Dynamic => qr.state = QrState::Paid,
            // The next payment needs a new request; the QR stays active for it.
            QrType::Hybrid => qr.extension = None,
            QrType::Static => {}
        }
    }
    state.count("payer.paid");
    tracing::info!(%qr_id, tx_id, %amount, "MIA sandbox: the payer paid");
    Ok(tx_id)
}

/// A payment MIA took on terminal `terminal_id` outside any QR fiscus made (another app, the
/// bank's own channel): a transaction in the terminal's open shift, opened if none is.
pub(super) fn record_outside(
    state: &MiaState,
    terminal_id: &str,
    amount: Money,
) -> Result<u64, ApiError> {
    let terminal = state
        .terminals
        .iter()
        .position(|t| t.terminal_id == terminal_id)
        .ok_or_else(|| ApiError::validation(format!("no terminal {terminal_id}")))?;
    if amount <= Money::ZERO {
        return Err(ApiError::validation("amount must be above 0"));
    }
    let rrn = random_digits(12).map_err(ApiError::internal)?;
    let approval_code = random_digits(6).map_err(ApiError::internal)?;
    let mut store = lock(&state.store);
    let payments = &mut store.payments;
    let shift = payments.open_shift(terminal);
    let tx_id = payments.next_tx_id();
    let date = chrono::Utc::now();
    payments.txs.insert(
        tx_id,
        Tx {
            terminal,
            shift,
            amount,
            date,
            swift_message_id: format!("VICBMD2XAXXX{}{tx_id:05}", date.format("%y%m%d")),
            rrn,
            approval_code,
            returns: Vec::new(),
        },
    );
    state.count("payer.outside");
    tracing::info!(terminal_id, tx_id, %amount, "MIA sandbox: a payment outside fiscus's QR codes");
    Ok(tx_id)
}

pub(super) fn fail(state: &MiaState, target: Target, reason: &str) -> Result<(), ApiError> {
    let mut store = lock(&state.store);
    let payments = &mut store.payments;
    let (qr_id, extension_id) = resolve(payments, target)?;
    let extension = extension_id
        .and_then(|id| payments.extensions.get_mut(&id))
        .filter(|e| e.state == PaymentState::Pending)
        .ok_or_else(|| refused("EXTENSION_NOT_ACTIVE", "no pending payment request to fail"))?;
    extension.state = PaymentState::Failed;
    extension.error = reason.to_owned();
    if let Some(qr) = payments.qrs.get_mut(&qr_id) {
        qr.extension = None;
        // A dynamic QR has no other request: it is closed.
        if qr.qr_type == QrType::Dynamic {
            qr.state = QrState::Cancelled;
        }
    }
    Ok(())
}

pub(super) fn expire(state: &MiaState, target: Target) -> Result<(), ApiError> {
    let mut store = lock(&state.store);
    let payments = &mut store.payments;
    let (_, extension_id) = resolve(payments, target)?;
    let id = extension_id
        .ok_or_else(|| refused("EXTENSION_NOT_ACTIVE", "no payment request to expire"))?;
    if let Some(extension) = payments.extensions.get_mut(&id) {
        extension.expires_at = Instant::now();
    }
    payments.settle(id);
    Ok(())
}
