//! QR payments as MIA keeps them: QR codes and their payment requests (extensions), the
//! transactions payers make, returns, terminal settings and shifts — every call for the seller's
//! own terminal, with MIA's rules enforced before anything changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use fiscus_domain::Money;
use fiscus_domain::qr::{
    AmountType, Amounts, AmountsAsked, PaymentState, QrType, RefundAsk, RefundRefused,
    refund_amount, request_at_creation, request_on_permanent_qr, ttl,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::api::{
    ApiError, ApiJson, ApiResult, SellerAuth, header_text, ok, required, secs_ceil, uuid_field,
};
use super::{MiaState, Store};
use crate::mia::client::format_date;
use crate::mia::paths;
use crate::mia::types::{QrState, TxType, WireMoney};
use crate::sandbox::lock;

pub(super) fn routes() -> Router<Arc<MiaState>> {
    Router::new()
        .route(paths::QR, post(create_qr))
        .route(paths::QR_ACTIVE, get(active_qrs))
        .route(
            &format!("{}/{{qrId}}", paths::QR),
            get(qr_info).delete(cancel_qr),
        )
        .route(
            &format!("{}/{{qrId}}/extension", paths::QR),
            post(create_extension),
        )
        .route(
            &format!("{}/{{extensionId}}/check", paths::QR_EXTENSION),
            get(check_extension),
        )
        .route(
            &format!("{}/{{extensionId}}", paths::QR_EXTENSION),
            delete(cancel_extension),
        )
        .route(paths::SHIFT_CHECK, get(shift_check))
        .route(paths::SHIFT_OPEN, post(shift_open))
        .route(paths::SHIFT_CLOSE, post(shift_close))
        .route(
            &format!("{}/{{shiftId}}/z-report", paths::SHIFT_V2),
            get(shift_z_report),
        )
        .route(
            &format!("{}/{{shiftId}}/transactions", paths::SHIFT),
            get(transactions),
        )
        .route(paths::TRANSACTION_RETURN, post(return_transaction))
        .route(
            &format!("{}/{{txId}}", paths::TRANSACTION),
            get(transaction),
        )
        .route(paths::SETTINGS, get(settings).put(update_settings))
}

/// A QR code.
pub(super) struct Qr {
    pub(super) terminal: usize,
    pub(super) qr_type: QrType,
    pub(super) amount_type: AmountType,
    pub(super) text: String,
    pub(super) state: QrState,
    /// The payment request payers pay now.
    pub(super) extension: Option<Uuid>,
}

/// A payment request (MIA extension).
pub(super) struct Extension {
    pub(super) qr: Uuid,
    pub(super) amounts: Amounts,
    pub(super) expires_at: Instant,
    pub(super) state: PaymentState,
    pub(super) payments: u32,
    pub(super) last_tx: Option<u64>,
    pub(super) error: String,
}

pub(super) struct Return {
    request_id: u64,
    amount: Money,
    date: chrono::DateTime<chrono::Utc>,
    reason_code: String,
    /// The shift the return was made in (the terminal's current or last one), which its Z-report counts.
    shift: String,
}

pub(super) struct Tx {
    pub(super) terminal: usize,
    pub(super) shift: String,
    pub(super) amount: Money,
    pub(super) date: chrono::DateTime<chrono::Utc>,
    pub(super) rrn: String,
    pub(super) approval_code: String,
    pub(super) swift_message_id: String,
    pub(super) returns: Vec<Return>,
}

struct Settings {
    qr_type: QrType,
    amount_type: AmountType,
    qr_ttl: u32,
    prohibit_settings_change: bool,
    when_updated: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            qr_type: QrType::Dynamic,
            amount_type: AmountType::Fixed,
            qr_ttl: ttl::DEFAULT_SECONDS,
            prohibit_settings_change: false,
            when_updated: None,
        }
    }
}

#[derive(Default)]
struct Terminal {
    settings: Settings,
    /// The current (or last) shift and whether it is open.
    shift: Option<(String, bool)>,
}

/// Everything about QR payments, all terminals together.
#[derive(Default)]
pub(in crate::mia::sandbox) struct Payments {
    pub(super) qrs: HashMap<Uuid, Qr>,
    pub(super) extensions: HashMap<Uuid, Extension>,
    pub(super) txs: BTreeMap<u64, Tx>,
    terminals: HashMap<usize, Terminal>,
    next_tx: u64,
    next_return: u64,
    next_shift: u64,
}

impl Payments {
    /// Lets time act on a payment request: a pending one whose time to live ran out expires,
    /// and a dynamic QR follows its one request.
    pub(super) fn settle(&mut self, extension_id: Uuid) {
        let now = Instant::now();
        let Some(extension) = self.extensions.get_mut(&extension_id) else {
            return;
        };
        if extension.state == PaymentState::Pending && now >= extension.expires_at {
            extension.state = PaymentState::Expired;
            if let Some(qr) = self.qrs.get_mut(&extension.qr) {
                if qr.qr_type == QrType::Dynamic && qr.state == QrState::Active {
                    qr.state = QrState::Expired;
                }
                if qr.extension == Some(extension_id) {
                    qr.extension = None;
                }
            }
        }
        // A static QR's paid request takes further payments until it expires.
        if extension.state == PaymentState::Paid
            && now >= extension.expires_at
            && let Some(qr) = self.qrs.get_mut(&extension.qr)
            && qr.extension == Some(extension_id)
        {
            qr.extension = None;
        }
    }

    fn settle_qr(&mut self, qr_id: Uuid) {
        if let Some(extension) = self.qrs.get(&qr_id).and_then(|q| q.extension) {
            self.settle(extension);
        }
    }

    /// The terminal's open shift, opened now if there is none (a payment always lands in one).
    pub(super) fn open_shift(&mut self, terminal: usize) -> String {
        let next = self.next_shift.saturating_add(1);
        let entry = self.terminals.entry(terminal).or_default();
        match &entry.shift {
            Some((id, true)) => id.clone(),
            _ => {
                self.next_shift = next;
                let id = next.to_string();
                entry.shift = Some((id.clone(), true));
                id
            }
        }
    }

    /// The terminal's current (or last) shift; one opened now if it never had one.
    fn current_shift(&mut self, terminal: usize) -> String {
        match self.terminals.get(&terminal).and_then(|t| t.shift.as_ref()) {
            Some((id, _)) => id.clone(),
            None => self.open_shift(terminal),
        }
    }

    /// The terminal's current (or last) shift and whether it is open.
    pub(super) fn shift_of(&self, terminal: usize) -> Option<(String, bool)> {
        self.terminals.get(&terminal).and_then(|t| t.shift.clone())
    }

    pub(super) fn next_tx_id(&mut self) -> u64 {
        self.next_tx = self.next_tx.saturating_add(1);
        self.next_tx
    }

    fn ttl(&self, terminal: usize) -> u32 {
        self.terminals
            .get(&terminal)
            .map_or(ttl::DEFAULT_SECONDS, |t| t.settings.qr_ttl)
    }

    /// A new payment request of `qr_id`, replacing its current one (a pending one is cancelled).
    fn attach(&mut self, qr_id: Uuid, terminal: usize, amounts: Amounts) -> Uuid {
        let id = Uuid::new_v4();
        let lifetime = std::time::Duration::from_secs(u64::from(self.ttl(terminal)));
        if let Some(previous) = self.qrs.get(&qr_id).and_then(|q| q.extension)
            && let Some(old) = self.extensions.get_mut(&previous)
            && old.state == PaymentState::Pending
        {
            old.state = PaymentState::Cancelled;
        }
        self.extensions.insert(
            id,
            Extension {
                qr: qr_id,
                amounts,
                expires_at: Instant::now() + lifetime,
                state: PaymentState::Pending,
                payments: 0,
                last_tx: None,
                error: String::new(),
            },
        );
        if let Some(qr) = self.qrs.get_mut(&qr_id) {
            qr.extension = Some(id);
        }
        id
    }

    pub(super) fn tx_type(&self, tx: &Tx) -> TxType {
        let returned = tx
            .returns
            .iter()
            .try_fold(Money::ZERO, |sum, r| sum.checked_add(r.amount))
            .unwrap_or(tx.amount);
        if returned >= tx.amount {
            TxType::Refunded
        } else if returned.is_positive() {
            TxType::PartiallyRefunded
        } else {
            TxType::Paid
        }
    }

    pub(super) fn tx_out(&self, id: u64, tx: &Tx, currency: &str, details: bool) -> TxOut {
        let detail = |text: &str| details.then(|| text.to_owned());
        TxOut {
            id,
            amount: WireMoney(tx.amount),
            ccy: currency.to_owned(),
            date: format_date(tx.date),
            tx_type: self.tx_type(tx).as_str(),
            rrn: detail(&tx.rrn),
            approval_code: detail(&tx.approval_code),
            mcc: detail("5411"),
            swift_message_type: detail("pacs.008"),
            swift_message_id: detail(&tx.swift_message_id),
            swift_payer_bank: detail("VICBMD2X"),
            returns: details.then(|| {
                tx.returns
                    .iter()
                    .map(|r| ReturnOut {
                        request_id: r.request_id,
                        amount: WireMoney(r.amount),
                        date: format_date(r.date),
                        reason_code: r.reason_code.clone(),
                    })
                    .collect()
            }),
        }
    }
}

// The answers that carry money are typed, so that amounts go out as the exact text of their
// JSON number (a `serde_json::Value` would hold them as floats).

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReturnOut {
    request_id: u64,
    amount: WireMoney,
    date: String,
    reason_code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TxOut {
    id: u64,
    amount: WireMoney,
    ccy: String,
    date: String,
    #[serde(rename = "type")]
    tx_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rrn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_code: Option<String>,
    /// The seed's spelling, with two Cyrillic `с`.
    #[serde(rename = "m\u{441}\u{441}", skip_serializing_if = "Option::is_none")]
    mcc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swift_message_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swift_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swift_payer_bank: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    returns: Option<Vec<ReturnOut>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionOut {
    extension_id: Uuid,
    qr_expire_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<WireMoney>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_amount: Option<WireMoney>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_amount: Option<WireMoney>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QrOut {
    qr_id: Uuid,
    qr_type: &'static str,
    amount_type: &'static str,
    qr_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extension: Option<ExtensionOut>,
}

/// Every answer that carries a QR code, a payment request or a transaction; absent fields are
/// left out.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_info: Option<QrOut>,
    /// The seed's spelling.
    #[serde(rename = "extensionIfo", skip_serializing_if = "Option::is_none")]
    extension_info: Option<ExtensionOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    codes: Option<Vec<QrOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_tx_info: Option<TxOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_payments: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_ended: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_list: Option<Vec<TxOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_info: Option<TxOut>,
}

fn success() -> Answer {
    Answer {
        result: Some("success"),
        ..Answer::default()
    }
}

fn typed(answer: Answer) -> ApiResult {
    Ok(axum::Json(answer).into_response())
}

fn qr_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "QR_NOT_FOUND",
        "no QR code with this id on this terminal",
    )
}

fn extension_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "EXTENSION_NOT_FOUND",
        "no payment request with this id on this terminal",
    )
}

fn not_allowed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "OPERATION_NOT_ALLOWED", message)
}

/// The terminal a seller session works on.
fn terminal_of(store: &Store, auth: &SellerAuth) -> Result<usize, ApiError> {
    store
        .sessions
        .get(&auth.session)
        .and_then(|s| store.activations.get(&s.activation))
        .map(|a| a.terminal)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOKEN",
                "access token is not valid",
            )
        })
}

/// The device headers, where sent, must be well formed (they are optional here).
fn check_device(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(platform) = header_text(headers, "X-PLATFORM-TYPE")?
        && !["ios", "android", "web", "external_system"].contains(&platform)
    {
        return Err(ApiError::validation(
            "header X-PLATFORM-TYPE must be one of ios, android, web, external_system",
        ));
    }
    if let Some(id) = header_text(headers, "X-INSTALLATION-ID")?
        && Uuid::parse_str(id).is_err()
    {
        return Err(ApiError::validation(
            "header X-INSTALLATION-ID must be a UUID",
        ));
    }
    Ok(())
}

fn extension_out(id: Uuid, extension: &Extension) -> ExtensionOut {
    let left = extension
        .expires_at
        .saturating_duration_since(Instant::now());
    let (amount, min, max) = extension.amounts.parts();
    ExtensionOut {
        extension_id: id,
        qr_expire_in: secs_ceil(left),
        amount: amount.map(WireMoney),
        min_amount: min.map(WireMoney),
        max_amount: max.map(WireMoney),
    }
}

/// A QR code as MIA describes it; its extension only while it is payable.
fn qr_out(payments: &Payments, id: Uuid, qr: &Qr) -> QrOut {
    let payable = qr
        .extension
        .and_then(|e| payments.extensions.get(&e).map(|x| (e, x)))
        .filter(|(_, extension)| {
            qr.state == QrState::Active
                && (extension.state == PaymentState::Pending
                    || (extension.state == PaymentState::Paid && qr.qr_type == QrType::Static))
        });
    QrOut {
        qr_id: id,
        qr_type: qr.qr_type.as_str(),
        amount_type: qr.amount_type.as_str(),
        qr_text: qr.text.clone(),
        qr_image: None,
        extension: payable.map(|(id, extension)| extension_out(id, extension)),
    }
}

/// Draws the images of `qrs`, when asked for — after the store's lock is let go, so that
/// drawing holds up no other request.
fn with_images(mut qrs: Vec<QrOut>, wanted: bool) -> Result<Vec<QrOut>, ApiError> {
    if wanted {
        for qr in &mut qrs {
            qr.qr_image = Some(qr_png_base64(&qr.qr_text)?);
        }
    }
    Ok(qrs)
}

/// The QR code as a PNG (4 pixels a module, a 4-module quiet zone), base64.
fn qr_png_base64(text: &str) -> Result<String, ApiError> {
    use base64::Engine as _;
    const SCALE: usize = 4;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(ApiError::internal)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (row, col) = (index / modules + QUIET, index % modules + QUIET);
            for y in row * SCALE..(row + 1) * SCALE {
                pixels[y * side + col * SCALE..y * side + (col + 1) * SCALE].fill(0);
            }
        }
    }
    let mut png = Vec::new();
    {
        let side = u32::try_from(side).map_err(ApiError::internal)?;
        let mut encoder = png::Encoder::new(&mut png, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(ApiError::internal)?;
        writer
            .write_image_data(&pixels)
            .map_err(ApiError::internal)?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionBody {
    amount: Option<WireMoney>,
    min_amount: Option<WireMoney>,
    max_amount: Option<WireMoney>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateQrBody {
    qr_type: String,
    amount_type: String,
    extension: Option<ExtensionBody>,
}

fn amounts_text(body: Option<&ExtensionBody>) -> [String; 3] {
    let text = |m: Option<WireMoney>| m.map(|m| m.0.to_string()).unwrap_or_default();
    match body {
        Some(b) => [text(b.amount), text(b.min_amount), text(b.max_amount)],
        None => Default::default(),
    }
}

fn rule_error(
    problems: Vec<(
        fiscus_domain::qr::AmountField,
        fiscus_domain::qr::AmountProblem,
    )>,
) -> ApiError {
    let wire = |f: fiscus_domain::qr::AmountField| match f {
        fiscus_domain::qr::AmountField::Amount => "extension.amount",
        fiscus_domain::qr::AmountField::MinAmount => "extension.minAmount",
        fiscus_domain::qr::AmountField::MaxAmount => "extension.maxAmount",
    };
    ApiError::validation(
        problems
            .into_iter()
            .map(|(field, problem)| format!("{} {problem}", wire(field)))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

async fn create_qr(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateQrBody>,
) -> ApiResult {
    check_device(&headers)?;
    let qr_type = QrType::parse(&body.qr_type)
        .ok_or_else(|| ApiError::validation("qrType must be dynamic, static or hybrid"))?;
    let amount_type = AmountType::parse(&body.amount_type)
        .ok_or_else(|| ApiError::validation("amountType must be fixed, free or controlled"))?;
    if body.extension.is_some() && (qr_type == QrType::Hybrid || amount_type == AmountType::Free) {
        return Err(ApiError::validation(
            "extension is not transmitted for a hybrid QR or a free amount",
        ));
    }
    let [amount, min, max] = amounts_text(body.extension.as_ref());
    let request = request_at_creation(
        qr_type,
        amount_type,
        AmountsAsked {
            amount: &amount,
            min_amount: &min,
            max_amount: &max,
        },
    )
    .map_err(rule_error)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    if qr_type.is_permanent() {
        let active: Vec<Uuid> = payments
            .qrs
            .iter()
            .filter(|(_, q)| {
                q.terminal == terminal && q.qr_type.is_permanent() && q.state == QrState::Active
            })
            .map(|(id, _)| *id)
            .collect();
        if let Some(active) = active.first() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ACTIVE_QR_EXISTS",
                format!("the terminal has an active static or hybrid QR already: {active}"),
            ));
        }
    }
    let id = Uuid::new_v4();
    payments.qrs.insert(
        id,
        Qr {
            terminal,
            qr_type,
            amount_type,
            text: format!("https://qr.mia.sandbox.invalid/pay/{id}"),
            state: QrState::Active,
            extension: None,
        },
    );
    if let Some(request) = request {
        payments.attach(id, terminal, request);
    }
    state.count("qr.created");
    let qr = payments
        .qrs
        .get(&id)
        .ok_or_else(|| ApiError::internal("QR vanished"))?;
    let out = qr_out(payments, id, qr);
    drop(store);
    typed(Answer {
        qr_info: with_images(vec![out], true)?.pop(),
        ..success()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageQuery {
    #[serde(rename = "type")]
    qr_type: Option<String>,
    is_image_required: Option<bool>,
}

async fn active_qrs(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Query(query): Query<ImageQuery>,
) -> ApiResult {
    let filter = match query.qr_type.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            QrType::parse(text)
                .ok_or_else(|| ApiError::validation("type must be dynamic, static or hybrid"))?,
        ),
    };
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    let ids: Vec<Uuid> = payments
        .qrs
        .iter()
        .filter(|(_, q)| q.terminal == terminal)
        .map(|(id, _)| *id)
        .collect();
    for id in &ids {
        payments.settle_qr(*id);
    }
    let mut codes = Vec::new();
    for id in ids {
        if let Some(qr) = payments.qrs.get(&id)
            && qr.state == QrState::Active
            && filter.is_none_or(|t| t == qr.qr_type)
        {
            codes.push(qr_out(payments, id, qr));
        }
    }
    drop(store);
    state.count("qr.listed");
    typed(Answer {
        codes: Some(with_images(
            codes,
            query.is_image_required.unwrap_or(false),
        )?),
        ..success()
    })
}

async fn qr_info(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(qr_id): Path<String>,
    Query(query): Query<ImageQuery>,
) -> ApiResult {
    let id = uuid_field("qrId", &qr_id)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    payments.settle_qr(id);
    state.count("qr.read");
    let found = payments
        .qrs
        .get(&id)
        .filter(|q| q.terminal == terminal)
        .map(|qr| (qr.state.as_str(), qr_out(payments, id, qr)));
    drop(store);
    match found {
        Some((qr_state, out)) => typed(Answer {
            state: Some(qr_state),
            qr_info: with_images(vec![out], query.is_image_required.unwrap_or(false))?.pop(),
            ..Answer::default()
        }),
        None => typed(Answer {
            state: Some(QrState::NotFound.as_str()),
            ..Answer::default()
        }),
    }
}

async fn cancel_qr(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(qr_id): Path<String>,
) -> ApiResult {
    let id = uuid_field("qrId", &qr_id)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    payments.settle_qr(id);
    let qr = payments
        .qrs
        .get_mut(&id)
        .filter(|q| q.terminal == terminal)
        .ok_or_else(qr_not_found)?;
    if qr.state != QrState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "QR_NOT_ACTIVE",
            format!("the QR code is {}", qr.state.as_str()),
        ));
    }
    qr.state = QrState::Cancelled;
    if let Some(extension) = qr.extension.take()
        && let Some(extension) = payments.extensions.get_mut(&extension)
        && extension.state == PaymentState::Pending
    {
        extension.state = PaymentState::Cancelled;
    }
    state.count("qr.cancelled");
    ok(json!({ "result": "success" }))
}

async fn create_extension(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(qr_id): Path<String>,
    ApiJson(body): ApiJson<ExtensionBody>,
) -> ApiResult {
    let id = uuid_field("qrId", &qr_id)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    payments.settle_qr(id);
    let qr = payments
        .qrs
        .get(&id)
        .filter(|q| q.terminal == terminal)
        .ok_or_else(qr_not_found)?;
    if qr.state != QrState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "QR_NOT_ACTIVE",
            format!("the QR code is {}", qr.state.as_str()),
        ));
    }
    let [amount, min, max] = amounts_text(Some(&body));
    let amounts = request_on_permanent_qr(
        qr.qr_type,
        qr.amount_type,
        AmountsAsked {
            amount: &amount,
            min_amount: &min,
            max_amount: &max,
        },
    )
    .map_err(|e| not_allowed(e.to_string()))?
    .map_err(rule_error)?;
    let extension_id = payments.attach(id, terminal, amounts);
    state.count("extension.created");
    let extension = payments
        .extensions
        .get(&extension_id)
        .ok_or_else(|| ApiError::internal("extension vanished"))?;
    // `extensionIfo`: the seed's spelling.
    typed(Answer {
        extension_info: Some(extension_out(extension_id, extension)),
        ..success()
    })
}

async fn check_extension(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(extension_id): Path<String>,
) -> ApiResult {
    let id = uuid_field("extensionId", &extension_id)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    payments.settle(id);
    state.count("extension.checked");
    let Some(extension) = payments.extensions.get(&id).filter(|e| {
        payments
            .qrs
            .get(&e.qr)
            .is_some_and(|q| q.terminal == terminal)
    }) else {
        return typed(Answer {
            state: Some(PaymentState::NotFound.as_str()),
            total_payments: Some(0),
            ..Answer::default()
        });
    };
    typed(Answer {
        state: Some(extension.state.as_str()),
        total_payments: Some(extension.payments),
        error_description: (!extension.error.is_empty()).then(|| extension.error.clone()),
        last_tx_info: extension.last_tx.and_then(|tx_id| {
            payments
                .txs
                .get(&tx_id)
                .map(|tx| payments.tx_out(tx_id, tx, &state.currency, true))
        }),
        ..Answer::default()
    })
}

async fn cancel_extension(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(extension_id): Path<String>,
) -> ApiResult {
    let id = uuid_field("extensionId", &extension_id)?;
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    payments.settle(id);
    let extension = payments
        .extensions
        .get(&id)
        .ok_or_else(extension_not_found)?;
    let qr = payments
        .qrs
        .get(&extension.qr)
        .filter(|q| q.terminal == terminal)
        .ok_or_else(extension_not_found)?;
    if qr.qr_type != QrType::Hybrid {
        return Err(not_allowed(
            "only the payment requests of a hybrid QR can be cancelled",
        ));
    }
    if extension.state != PaymentState::Pending {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EXTENSION_NOT_ACTIVE",
            format!("the payment request is {}", extension.state.as_str()),
        ));
    }
    let qr_id = extension.qr;
    if let Some(extension) = payments.extensions.get_mut(&id) {
        extension.state = PaymentState::Cancelled;
    }
    if let Some(qr) = payments.qrs.get_mut(&qr_id)
        && qr.extension == Some(id)
    {
        qr.extension = None;
    }
    state.count("extension.cancelled");
    ok(json!({ "result": "success" }))
}

async fn shift_check(State(state): State<Arc<MiaState>>, auth: SellerAuth) -> ApiResult {
    let store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    state.count("shift.checked");
    let shift = store
        .payments
        .terminals
        .get(&terminal)
        .and_then(|t| t.shift.clone());
    ok(json!({
        "result": "success",
        "shiftId": shift.as_ref().map(|(id, _)| id.clone()),
        "isOpened": shift.is_some_and(|(_, open)| open),
    }))
}

async fn shift_open(State(state): State<Arc<MiaState>>, auth: SellerAuth) -> ApiResult {
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    if payments
        .terminals
        .get(&terminal)
        .is_some_and(|t| matches!(t.shift, Some((_, true))))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "SHIFT_ALREADY_OPENED",
            "a shift is open already",
        ));
    }
    let id = payments.open_shift(terminal);
    state.count("shift.opened");
    ok(json!({ "result": "success", "shiftId": id }))
}

async fn shift_close(State(state): State<Arc<MiaState>>, auth: SellerAuth) -> ApiResult {
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let entry = store.payments.terminals.entry(terminal).or_default();
    match &mut entry.shift {
        Some((id, open)) if *open => {
            *open = false;
            let id = id.clone();
            state.count("shift.closed");
            ok(json!({ "result": "success", "shiftId": id }))
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "SHIFT_NOT_OPENED",
            "no shift is open",
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportQuery {
    format: Option<String>,
    is_full_report: Option<bool>,
}

/// A closed shift's Z-report, added up from the sandbox's own transactions and returns of it
/// (JSON only: the rendered formats are MIA's, not fiscus's concern).
async fn shift_z_report(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(shift_id): Path<String>,
    Query(query): Query<ReportQuery>,
) -> ApiResult {
    if let Some(format) = query.format.as_deref()
        && !format.eq_ignore_ascii_case("json")
    {
        return Err(ApiError::validation(format!(
            "format {format}: the sandbox answers json only"
        )));
    }
    let store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &store.payments;
    match payments.shift_of(terminal) {
        Some((id, true)) if id == shift_id => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "SHIFT_NOT_CLOSED",
                "the shift is open: it has an X-report",
            ));
        }
        _ => {}
    }
    let known = payments
        .shift_of(terminal)
        .is_some_and(|(id, _)| id == shift_id)
        || payments.txs.values().any(|tx| {
            tx.terminal == terminal
                && (tx.shift == shift_id || tx.returns.iter().any(|r| r.shift == shift_id))
        });
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SHIFT_NOT_FOUND",
            "no shift with this id on this terminal",
        ));
    }
    let overflow = || ApiError::internal("sums overflow");
    let (mut payment_count, mut payment_sum) = (0u64, Money::ZERO);
    let (mut cancellation_count, mut cancellation_sum) = (0u64, Money::ZERO);
    let mut lines = Vec::new();
    for (id, tx) in payments
        .txs
        .iter()
        .filter(|(_, tx)| tx.terminal == terminal)
    {
        if tx.shift == shift_id {
            payment_count += 1;
            payment_sum = payment_sum.checked_add(tx.amount).ok_or_else(overflow)?;
            lines.push((tx.date, "payment", *id, tx.amount));
        }
        for r in tx.returns.iter().filter(|r| r.shift == shift_id) {
            cancellation_count += 1;
            cancellation_sum = cancellation_sum
                .checked_add(r.amount)
                .ok_or_else(overflow)?;
            lines.push((r.date, "cancellation", *id, r.amount));
        }
    }
    let total_sum = payment_sum
        .checked_sub(cancellation_sum)
        .ok_or_else(overflow)?;
    let record_count = lines.len();
    let full = query.is_full_report.unwrap_or(false);
    lines.sort_by_key(|(date, ..)| *date);
    let data: Vec<serde_json::Value> = if full {
        lines
            .iter()
            .map(|(date, kind, id, amount)| {
                json!({
                    "transactionType": kind,
                    "transactionId": id,
                    "transactionDateTime": format_date(*date),
                    "transactionAmount": WireMoney(*amount),
                    "transactionCcy": state.currency,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let place = state
        .terminals
        .get(terminal)
        .ok_or_else(|| ApiError::internal("the session's terminal vanished"))?;
    state.count("shift.z_report");
    ok(json!({
        "result": "success",
        "reportJson": {
            "reportDateTime": format_date(chrono::Utc::now()),
            "terminalType": "MiaPos",
            "terminalId": place.terminal_id,
            "merchantIdno": place.merchant_idno,
            "merchant": place.merchant_name,
            "store": place.store_name,
            "transactions": { "data": data, "recordCount": record_count },
            "paymentCount": payment_count,
            "paymentSum": WireMoney(payment_sum),
            "cancellationCount": cancellation_count,
            "cancellationSum": WireMoney(cancellation_sum),
            "totalSum": WireMoney(total_sum),
        },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TxQuery {
    tx_id: Option<u64>,
}

async fn transactions(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(shift_id): Path<String>,
    Query(query): Query<TxQuery>,
) -> ApiResult {
    let store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &store.payments;
    let known = payments
        .txs
        .values()
        .any(|tx| tx.terminal == terminal && tx.shift == shift_id)
        || payments
            .terminals
            .get(&terminal)
            .and_then(|t| t.shift.as_ref())
            .is_some_and(|(id, _)| *id == shift_id);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SHIFT_NOT_FOUND",
            "no shift with this id on this terminal",
        ));
    }
    let before = query.tx_id.unwrap_or(u64::MAX);
    let mut older = payments
        .txs
        .range(..before)
        .rev()
        .filter(|(_, tx)| tx.terminal == terminal && tx.shift == shift_id);
    let portion: Vec<TxOut> = older
        .by_ref()
        .take(state.page_size)
        .map(|(id, tx)| payments.tx_out(*id, tx, &state.currency, false))
        .collect();
    let is_ended = older.next().is_none();
    state.count("tx.listed");
    typed(Answer {
        is_ended: Some(is_ended),
        tx_list: Some(portion),
        ..success()
    })
}

async fn transaction(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    Path(tx_id): Path<String>,
) -> ApiResult {
    let id: u64 = tx_id
        .parse()
        .map_err(|_| ApiError::validation("txId must be an integer"))?;
    let store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &store.payments;
    let tx = payments
        .txs
        .get(&id)
        .filter(|tx| tx.terminal == terminal)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "TRANSACTION_NOT_FOUND",
                "no transaction with this id on this terminal",
            )
        })?;
    state.count("tx.read");
    typed(Answer {
        tx_info: Some(payments.tx_out(id, tx, &state.currency, true)),
        ..success()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReturnBody {
    tx_id: u64,
    amount: Option<WireMoney>,
    full_refund: bool,
    ccy: Option<String>,
    reason_code: String,
    reason_message: Option<String>,
}

async fn return_transaction(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    ApiJson(body): ApiJson<ReturnBody>,
) -> ApiResult {
    let reason_code = required("reasonCode", &body.reason_code)?.to_owned();
    let ask = match (body.full_refund, body.amount) {
        (true, None) => RefundAsk::Full,
        (true, Some(_)) => {
            return Err(ApiError::validation(
                "amount is sent only for a partial refund (fullRefund false)",
            ));
        }
        (false, Some(amount)) => RefundAsk::Partial(amount.0),
        (false, None) => {
            return Err(ApiError::validation(
                "amount is required for a partial refund",
            ));
        }
    };
    if let Some(ccy) = body.ccy.as_deref()
        && !ccy.is_empty()
        && ccy != state.currency
    {
        return Err(ApiError::validation(format!(
            "ccy must be the transaction's currency, {}",
            state.currency
        )));
    }
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let payments = &mut store.payments;
    let tx = payments
        .txs
        .get(&body.tx_id)
        .filter(|tx| tx.terminal == terminal)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "TRANSACTION_NOT_FOUND",
                "no transaction with this id on this terminal",
            )
        })?;
    let returned = tx
        .returns
        .iter()
        .try_fold(Money::ZERO, |sum, r| sum.checked_add(r.amount))
        .ok_or_else(|| ApiError::internal("returns overflow"))?;
    let amount = refund_amount(tx.amount, returned, ask).map_err(|e| match e {
        RefundRefused::NotPositive => ApiError::validation(format!("amount {e}")),
        other => ApiError::new(
            StatusCode::CONFLICT,
            "REFUND_NOT_ALLOWED",
            other.to_string(),
        ),
    })?;
    payments.next_return = payments.next_return.saturating_add(1);
    let request_id = payments.next_return;
    let shift = payments.current_shift(terminal);
    if let Some(tx) = payments.txs.get_mut(&body.tx_id) {
        tx.returns.push(Return {
            request_id,
            amount,
            date: chrono::Utc::now(),
            reason_code,
            shift,
        });
    }
    tracing::debug!(tx_id = body.tx_id, %amount, message = ?body.reason_message, "MIA sandbox: returned");
    state.count("return.done");
    ok(json!({ "result": "success", "requestId": request_id }))
}

async fn settings(State(state): State<Arc<MiaState>>, auth: SellerAuth) -> ApiResult {
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    let settings = &store
        .payments
        .terminals
        .entry(terminal)
        .or_default()
        .settings;
    state.count("settings.read");
    ok(json!({
        "result": "success",
        "qrSettings": {
            "qrType": settings.qr_type.as_str(),
            "qrAmountType": settings.amount_type.as_str(),
            "qrTtl": settings.qr_ttl,
            "prohibitSettingsChange": settings.prohibit_settings_change,
            "whenUpdated": settings.when_updated.map(format_date),
        },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsBody {
    qr_type: String,
    qr_amount_type: String,
    qr_ttl: Option<u32>,
    prohibit_settings_change: Option<bool>,
}

async fn update_settings(
    State(state): State<Arc<MiaState>>,
    auth: SellerAuth,
    ApiJson(body): ApiJson<SettingsBody>,
) -> ApiResult {
    let qr_type = QrType::parse(&body.qr_type)
        .ok_or_else(|| ApiError::validation("qrType must be dynamic, static or hybrid"))?;
    let amount_type = AmountType::parse(&body.qr_amount_type)
        .ok_or_else(|| ApiError::validation("qrAmountType must be fixed, free or controlled"))?;
    let qr_ttl = body.qr_ttl.unwrap_or(ttl::DEFAULT_SECONDS);
    if qr_ttl < ttl::MIN_SECONDS {
        return Err(ApiError::validation(format!(
            "qrTtl must be at least {}",
            ttl::MIN_SECONDS
        )));
    }
    let mut store = lock(&state.store);
    let terminal = terminal_of(&store, &auth)?;
    store
        .payments
        .terminals
        .entry(terminal)
        .or_default()
        .settings = Settings {
        qr_type,
        amount_type,
        qr_ttl,
        prohibit_settings_change: body.prohibit_settings_change.unwrap_or(false),
        when_updated: Some(chrono::Utc::now()),
    };
    state.count("settings.updated");
    ok(json!({ "result": "success" }))
}
