//! `POST /v2/sign`: the headers, idempotency by operation id, the queue's rules, the modes, and
//! a receipt's numbering, signatures and journal entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::Utc;
use fiscus_domain::Money;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    ActionJournalEntry, Book, FiskaltrustState, OperationState, Queue, QueueItem,
    ReceiptJournalEntry, SignedReceipt, authenticate, problem,
};
use crate::fiskaltrust::cases::{
    ChargeItemFlags, Decoded, Market, ReceiptCase, ReceiptFlags, StateFlags, VatRate,
};
use crate::fiskaltrust::headers;
use crate::fiskaltrust::wire::{CaseValue, ReceiptRequest, ReceiptResponse, SignatureItem};
use crate::sandbox::{self, lock};
use crate::wire::WireMoney;

/// `ftSignatureFormat`s (market-prefixed on the wire).
const FORMAT_TEXT: u64 = 0x01;
const FORMAT_QR: u64 = 0x03;
/// `ftSignatureType`s (market-prefixed): the queue's receipt signature, and notifications.
const TYPE_RECEIPT: u64 = 0x0001;
const TYPE_INFORMATION: u64 = 0x1000;
const TYPE_FAILURE: u64 = 0x3000;
/// The longest `cbReceiptReference`.
const MAX_REFERENCE: usize = 1024;

/// Why a sign call is not answered with a receipt.
enum Refusal {
    /// 400: refused as it stands; the detail names the field.
    Invalid(String),
    /// 409: the operation id was used with another body.
    Conflict(String),
    /// 422: the operation's first request is still being processed.
    InProgress(String),
    /// The sandbox itself failed.
    Internal(String),
}

impl Refusal {
    fn answer(self, state: &FiskaltrustState) -> Response {
        let (status, counter, detail) = match self {
            Refusal::Invalid(detail) => (StatusCode::BAD_REQUEST, &state.refusals, detail),
            Refusal::Conflict(detail) => (StatusCode::CONFLICT, &state.conflicts, detail),
            Refusal::InProgress(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                &state.in_flight_refusals,
                detail,
            ),
            Refusal::Internal(error) => return sandbox::internal_error(error),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(%status, %detail, "fiskaltrust sandbox refused a sign call");
        problem(status, detail)
    }
}

pub(super) async fn sign(
    State(state): State<Arc<FiskaltrustState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let queue = match authenticate(&state, &headers) {
        Ok(queue) => queue,
        Err(detail) => return problem(StatusCode::UNAUTHORIZED, detail),
    };
    let at = state
        .queues
        .iter()
        .position(|q| std::ptr::eq(q, queue))
        .unwrap_or_default();
    // The middleware goes on with an operation whoever waits for it: a caller that gives up
    // finds it done when it asks again (a replay), or still being processed (422).
    let call = tokio::spawn({
        let state = Arc::clone(&state);
        async move { sign_call(&state, &state.queues[at], &headers, &body).await }
    });
    match call.await {
        Ok(Ok(answer)) => ([(header::CONTENT_TYPE, "application/json")], answer).into_response(),
        Ok(Err(refusal)) => refusal.answer(&state),
        Err(error) => sandbox::internal_error(error),
    }
}

/// Removes an operation's in-flight mark if its processing is abandoned before it is answered
/// (a panic, the sandbox stopping), so that a retry is processed rather than told it is in
/// progress forever.
struct InFlight<'q> {
    queue: &'q Queue,
    operation: Uuid,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut book = lock(&self.queue.book);
            if matches!(
                book.operations.get(&self.operation),
                Some(OperationState::InFlight)
            ) {
                book.operations.remove(&self.operation);
            }
        }
    }
}

async fn sign_call(
    state: &FiskaltrustState,
    queue: &Queue,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Bytes, Refusal> {
    if let Some(detail) = state.take_rejection() {
        return Err(Refusal::Invalid(detail));
    }
    let operation = operation_id(headers)?;
    if let Some(lifetime) = text_header(headers, headers::OPERATION_LIFETIME)? {
        match lifetime.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => {}
            _ => {
                return Err(Refusal::Invalid(format!(
                    "{}: {lifetime:?} is not a positive number of milliseconds",
                    headers::OPERATION_LIFETIME
                )));
            }
        }
    }
    let terminal = text_header(headers, headers::TERMINAL_ID)?;
    let request = read_request(body)?;
    // For comparing a repeat: the same JSON, whatever the order of its keys.
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::Invalid(format!("the body is not JSON: {e}")))?;

    {
        let mut book = lock(&queue.book);
        match book.operations.get(&operation) {
            Some(OperationState::Done { body, answer }) => {
                if *body == value {
                    state.replays.fetch_add(1, Ordering::SeqCst);
                    return Ok(answer.clone());
                }
                return Err(Refusal::Conflict(format!(
                    "{}: operation {operation} was used with another request: a new request needs its own operation id",
                    headers::OPERATION_ID
                )));
            }
            Some(OperationState::InFlight) => {
                return Err(Refusal::InProgress(format!(
                    "{}: operation {operation} is in progress: ask again once it is done",
                    headers::OPERATION_ID
                )));
            }
            None => {
                book.operations.insert(operation, OperationState::InFlight);
            }
        }
    }
    let mut in_flight = InFlight {
        queue,
        operation,
        armed: true,
    };
    let processing = state.processing();
    if !processing.is_zero() {
        tokio::time::sleep(processing).await;
    }

    let mut book = lock(&queue.book);
    let outcome = process(state, queue, &mut book, operation, &request, terminal);
    match &outcome {
        Ok(answer) => {
            book.operations.insert(
                operation,
                OperationState::Done {
                    body: value,
                    answer: answer.clone(),
                },
            );
        }
        Err(_) => {
            book.operations.remove(&operation);
        }
    }
    drop(book);
    in_flight.armed = false;
    outcome
}

/// A header's text, if present; a header that is not text is refused.
fn text_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Refusal::Invalid(format!("{name}: not text")))
        })
        .transpose()
}

/// `x-operation-id`: required, a UUID in any of its spellings.
fn operation_id(headers: &HeaderMap) -> Result<Uuid, Refusal> {
    let name = headers::OPERATION_ID;
    let text = text_header(headers, name)?
        .ok_or_else(|| Refusal::Invalid(format!("{name}: required, a UUID")))?;
    Uuid::parse_str(text.trim())
        .map_err(|e| Refusal::Invalid(format!("{name}: {text:?} is not a UUID: {e}")))
}

/// The body as a `ReceiptRequest`; a body that does not read is refused naming where.
fn read_request(body: &[u8]) -> Result<ReceiptRequest, Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request: ReceiptRequest =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let error = e.into_inner();
            Refusal::Invalid(if path == "." {
                format!("the body is not a ReceiptRequest: {error}")
            } else {
                format!("{path}: {error}")
            })
        })?;
    deserializer
        .end()
        .map_err(|e| Refusal::Invalid(format!("the body: {e}")))?;
    Ok(request)
}

/// A request whose operation is new, in the queue's books: answered from the store when it is
/// a receipt request for a known receipt, else checked and signed.
fn process(
    state: &FiskaltrustState,
    queue: &Queue,
    book: &mut Book,
    operation: Uuid,
    request: &ReceiptRequest,
    terminal: Option<&str>,
) -> Result<Bytes, Refusal> {
    let requested = ReceiptFlags(Decoded::of(request.receipt_case.0).flags)
        .contains(ReceiptFlags::RECEIPT_REQUESTED);
    if requested
        && let Some(&index) = book.by_reference.get(&(
            request.terminal_id.clone(),
            request.receipt_reference.clone(),
        ))
    {
        state.replays.fetch_add(1, Ordering::SeqCst);
        return Ok(book.items[index].answer.clone());
    }
    let checked = check(queue, book, request, terminal).map_err(Refusal::Invalid)?;
    let answer = sign_receipt(state, queue, book, operation, request, &checked)?;
    state.signed.fetch_add(1, Ordering::SeqCst);
    Ok(answer)
}

/// What the checks found out about a request.
struct Checked {
    case: ReceiptCase,
    flags: ReceiptFlags,
    /// The sum of the charge items.
    total: Money,
}

fn hex(value: u64) -> String {
    format!("{value:#018X}")
}

fn not_v2(field: &str, value: u64, market: Market) -> String {
    format!(
        "{field}: {} is not a v2 case of {market} (it starts {})",
        hex(value),
        hex(market.prefix())
    )
}

/// The queue's rules; a broken one is answered naming the field.
fn check(
    queue: &Queue,
    book: &Book,
    request: &ReceiptRequest,
    terminal: Option<&str>,
) -> Result<Checked, String> {
    let market = queue.cash_box.market;
    if Uuid::parse_str(request.cash_box_id.trim()).ok() != Some(queue.cashbox_uuid) {
        return Err(format!(
            "ftCashBoxID: {:?} is not the cash box of {} ({})",
            request.cash_box_id,
            headers::CASHBOX_ID,
            queue.cash_box.cashbox_id
        ));
    }
    if request.terminal_id.is_empty() {
        return Err("cbTerminalID: required, not empty".to_owned());
    }
    if let Some(terminal) = terminal
        && terminal != request.terminal_id
    {
        return Err(format!(
            "{}: {terminal:?} is not the body's cbTerminalID {:?}",
            headers::TERMINAL_ID,
            request.terminal_id
        ));
    }
    let reference_length = request.receipt_reference.chars().count();
    if reference_length == 0 {
        return Err("cbReceiptReference: required, not empty".to_owned());
    }
    if reference_length > MAX_REFERENCE {
        return Err(format!(
            "cbReceiptReference: {reference_length} characters, at most {MAX_REFERENCE}"
        ));
    }

    let receipt_case = request.receipt_case.0;
    if !Decoded::is_v2_of(receipt_case, market) {
        return Err(not_v2("ftReceiptCase", receipt_case, market));
    }
    let case = ReceiptCase::of(receipt_case).ok_or_else(|| {
        format!(
            "ftReceiptCase: {}: {:#06X} is not a receipt case",
            hex(receipt_case),
            receipt_case & 0xFFFF
        )
    })?;
    let flags = ReceiptFlags(Decoded::of(receipt_case).flags);
    let reversal = flags.contains(ReceiptFlags::REFUND) || flags.contains(ReceiptFlags::VOID);

    let without_items = matches!(
        case,
        ReceiptCase::ZeroReceipt
            | ReceiptCase::ShiftClosing
            | ReceiptCase::DailyClosing
            | ReceiptCase::MonthlyClosing
            | ReceiptCase::YearlyClosing
            | ReceiptCase::InitialOperationReceipt
            | ReceiptCase::OutOfOperationReceipt
    );
    if without_items && !request.charge_items.is_empty() {
        return Err(format!("cbChargeItems: a {case:?} carries no charge items"));
    }
    if without_items && !request.pay_items.is_empty() {
        return Err(format!("cbPayItems: a {case:?} carries no pay items"));
    }
    let sale = matches!(
        case,
        ReceiptCase::PointOfSaleReceipt
            | ReceiptCase::PointOfSaleReceiptWithoutObligation
            | ReceiptCase::ECommerce
            | ReceiptCase::InvoiceUnknown
            | ReceiptCase::InvoiceB2C
            | ReceiptCase::InvoiceB2B
            | ReceiptCase::InvoiceB2G
    );
    if sale && request.charge_items.is_empty() {
        return Err(format!(
            "cbChargeItems: a {case:?} carries at least one charge item"
        ));
    }

    // Whether fiscus knows the market's rates: then every item's rate is checked.
    let rated = VatRate::Normal.percent_in(market).is_some();
    for (i, item) in request.charge_items.iter().enumerate() {
        let field = |name: &str| format!("cbChargeItems[{i}].{name}");
        let item_case = item.charge_item_case.0;
        if !Decoded::is_v2_of(item_case, market) {
            return Err(not_v2(&field("ftChargeItemCase"), item_case, market));
        }
        if item.description.trim().is_empty() {
            return Err(format!("{}: required, not empty", field("Description")));
        }
        if rated {
            match VatRate::of_case(item_case) {
                None => {
                    return Err(format!(
                        "{}: {}: {:X} is no VAT category",
                        field("ftChargeItemCase"),
                        hex(item_case),
                        item_case & 0xF
                    ));
                }
                Some(VatRate::Unknown) => {}
                Some(category) => match category.percent_in(market) {
                    None => {
                        return Err(format!(
                            "{}: {}: {market} has no {category:?} VAT rate",
                            field("ftChargeItemCase"),
                            hex(item_case)
                        ));
                    }
                    Some(rate) if rate != item.vat_rate.0.minor() => {
                        return Err(format!(
                            "{}: {} is not {market}'s {category:?} rate {}, which ftChargeItemCase {} names",
                            field("VATRate"),
                            item.vat_rate.0,
                            Money::from_minor(rate),
                            hex(item_case)
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
        let item_flags = ChargeItemFlags(Decoded::of(item_case).flags);
        let may_be_negative = reversal
            || item_flags.contains(ChargeItemFlags::REFUND)
            || item_flags.contains(ChargeItemFlags::VOID)
            || item_flags.contains(ChargeItemFlags::EXTRA_OR_DISCOUNT);
        if !may_be_negative {
            let negative = if item.amount.0.is_negative() {
                Some(("Amount", item.amount.0.to_string()))
            } else if item.quantity.0.thousandths() < 0 {
                Some(("Quantity", item.quantity.0.to_string()))
            } else {
                None
            };
            if let Some((name, value)) = negative {
                return Err(format!(
                    "{}: {value} is negative, but the receipt is no refund or void and the item is not flagged refund, void or discount",
                    field(name)
                ));
            }
        }
    }
    for (i, item) in request.pay_items.iter().enumerate() {
        let field = |name: &str| format!("cbPayItems[{i}].{name}");
        let item_case = item.pay_item_case.0;
        if !Decoded::is_v2_of(item_case, market) {
            return Err(not_v2(&field("ftPayItemCase"), item_case, market));
        }
        if item.description.trim().is_empty() {
            return Err(format!("{}: required, not empty", field("Description")));
        }
    }

    let overflow = |field: &str| format!("{field}: the amounts overflow");
    let total = Money::sum(request.charge_items.iter().map(|i| &i.amount.0))
        .map_err(|_| overflow("cbChargeItems"))?;
    let paid = Money::sum(request.pay_items.iter().map(|i| &i.amount.0))
        .map_err(|_| overflow("cbPayItems"))?;
    if paid != total {
        return Err(format!(
            "cbPayItems: the pay items come to {paid}, the charge items to {total}: they must be equal"
        ));
    }
    if let Some(amount) = request.receipt_amount
        && amount.0 != total
    {
        return Err(format!(
            "cbReceiptAmount: {} is not the sum of the charge items, {total}",
            amount.0
        ));
    }

    if reversal {
        let what = if flags.contains(ReceiptFlags::REFUND) {
            "refund"
        } else {
            "void"
        };
        let previous = request
            .previous_receipt_reference
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!("cbPreviousReceiptReference: required on a {what} (ftReceiptCase flag)")
            })?;
        if !book.references.contains(previous) {
            return Err(format!(
                "cbPreviousReceiptReference: {previous:?} names no receipt signed in this queue"
            ));
        }
    }
    let business = flags.contains(ReceiptFlags::RECEIVER_IS_BUSINESS)
        || matches!(case, ReceiptCase::InvoiceB2B | ReceiptCase::InvoiceB2G);
    if business && request.customer.is_none() {
        return Err(format!(
            "cbCustomer: required when the buyer is a business ({case:?}): its name, address and VAT id"
        ));
    }
    if flags.contains(ReceiptFlags::LATE_SIGNING)
        && let Some(last) = book.late_moments.get(&request.terminal_id)
        && request.receipt_moment < *last
    {
        return Err(format!(
            "cbReceiptMoment: {} is earlier than {last}, the moment of the last receipt late-signed for terminal {:?}: receipts must be re-signed in the order they were created",
            request.receipt_moment, request.terminal_id
        ));
    }
    Ok(Checked { case, flags, total })
}

/// A market-prefixed signature item.
fn signature(market: Market, format: u64, kind: u64, caption: &str, data: String) -> SignatureItem {
    SignatureItem {
        format: CaseValue(market.prefix() | format),
        signature_type: CaseValue(market.prefix() | kind),
        caption: caption.to_owned(),
        data,
    }
}

/// Numbers, signs and journals a checked request; the queue's modes change as it says.
fn sign_receipt(
    state: &FiskaltrustState,
    queue: &Queue,
    book: &mut Book,
    operation: Uuid,
    request: &ReceiptRequest,
    checked: &Checked,
) -> Result<Bytes, Refusal> {
    let market = queue.cash_box.market;
    let queue_id = queue.cash_box.queue_id.clone();
    let row = u64::try_from(book.items.len())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let terminal_count = book
        .per_terminal
        .get(&request.terminal_id)
        .copied()
        .unwrap_or(0)
        .saturating_add(1);
    let identification = format!("ft{row:X}#{terminal_count}");
    let queue_item_id = Uuid::new_v4().to_string();
    let moment = Utc::now();

    let request_json = serde_json::to_vec(request).map_err(|e| Refusal::Internal(e.to_string()))?;
    let hash = Sha256::new()
        .chain_update(&book.chain)
        .chain_update(&request_json)
        .finalize()
        .to_vec();
    let hash_text = STANDARD.encode(&hash);

    // The modes after this receipt, and the journal entries of their changes.
    let scu_down = state.scu_failed.load(Ordering::SeqCst);
    let zero = checked.case == ReceiptCase::ZeroReceipt;
    let late_signed = checked.flags.contains(ReceiptFlags::LATE_SIGNING);
    let mut failed = book.failed;
    let mut late = book.late_signing;
    let mut without_scu = book.without_scu.clone();
    let mut actions: Vec<(i32, StateFlags, String)> = Vec::new();
    let mut signatures = Vec::new();
    if scu_down && !failed {
        failed = true;
        actions.push((
            1,
            StateFlags::SCU_OUT_OF_SERVICE,
            "SCU communication failed: failed mode entered; receipts are secured by the queue until a zero receipt finds the SCU back".to_owned(),
        ));
    }
    if zero && failed && !scu_down {
        failed = false;
        actions.push((
            0,
            StateFlags::SCU_OUT_OF_SERVICE,
            format!(
                "SCU reachable again: failed mode left by zero receipt {identification}; {} receipts were answered without the SCU",
                without_scu.len()
            ),
        ));
        signatures.push(signature(
            market,
            FORMAT_TEXT,
            TYPE_INFORMATION,
            "Receipts signed without the SCU",
            format!(
                "{} receipts were signed without the SCU: {}",
                without_scu.len(),
                without_scu.join(", ")
            ),
        ));
        without_scu.clear();
    }
    if failed {
        without_scu.push(identification.clone());
        signatures.push(signature(
            market,
            FORMAT_TEXT,
            TYPE_FAILURE,
            "SCU communication failed",
            "The signature creation unit cannot be reached: the receipt is secured by the middleware".to_owned(),
        ));
    } else {
        signatures.push(signature(
            market,
            FORMAT_QR,
            TYPE_RECEIPT,
            "Receipt signature",
            hash_text.clone(),
        ));
    }
    if late_signed && !zero && !late {
        late = true;
        actions.push((
            1,
            StateFlags::LATE_SIGNING,
            format!(
                "late-signing mode entered by receipt {identification} of terminal {:?}",
                request.terminal_id
            ),
        ));
    }
    if late_signed {
        signatures.push(signature(
            market,
            FORMAT_TEXT,
            TYPE_INFORMATION,
            "Late signing",
            format!(
                "Late-signed: made at {} while the middleware could not be reached, signed at {moment}",
                request.receipt_moment
            ),
        ));
    }
    if zero && late {
        late = false;
        actions.push((
            0,
            StateFlags::LATE_SIGNING,
            format!("late-signing mode left by zero receipt {identification}"),
        ));
    }
    let mut flags = StateFlags::NONE;
    if failed {
        flags = flags | StateFlags::SCU_OUT_OF_SERVICE;
    }
    if late {
        flags = flags | StateFlags::LATE_SIGNING;
    }

    let response = ReceiptResponse {
        queue_id: queue_id.clone(),
        queue_item_id: queue_item_id.clone(),
        queue_row: Some(row),
        terminal_id: Some(request.terminal_id.clone()),
        receipt_reference: Some(request.receipt_reference.clone()),
        cash_box_identification: queue.cash_box.cash_box_identification.clone(),
        receipt_identification: identification,
        receipt_moment: moment,
        signatures,
        state: CaseValue(market.prefix() | flags.0),
    };
    let answer =
        Bytes::from(serde_json::to_vec(&response).map_err(|e| Refusal::Internal(e.to_string()))?);

    // Committed only now: nothing above can leave the books half-written.
    book.failed = failed;
    book.late_signing = late;
    book.without_scu = without_scu;
    book.chain = hash;
    book.per_terminal
        .insert(request.terminal_id.clone(), terminal_count);
    if late_signed {
        let last = book
            .late_moments
            .entry(request.terminal_id.clone())
            .or_insert(request.receipt_moment);
        *last = (*last).max(request.receipt_moment);
    }
    for (priority, flag, message) in actions {
        book.action_journal.push(ActionJournalEntry {
            id: Uuid::new_v4(),
            queue_id: queue_id.clone(),
            queue_item_id: queue_item_id.clone(),
            moment,
            priority,
            kind: hex(market.prefix() | flag.0),
            message,
            row,
        });
    }
    book.receipt_journal.push(ReceiptJournalEntry {
        id: Uuid::new_v4(),
        queue_id,
        queue_item_id,
        number: row,
        moment,
        total: WireMoney(checked.total),
        hash: hash_text,
    });
    let index = book.items.len();
    book.by_reference
        .entry((
            request.terminal_id.clone(),
            request.receipt_reference.clone(),
        ))
        .or_insert(index);
    book.references.insert(request.receipt_reference.clone());
    book.items.push(QueueItem {
        receipt: SignedReceipt {
            cashbox_id: queue.cash_box.cashbox_id.clone(),
            operation_id: operation,
            queue_row: row,
            request: request.clone(),
            response,
        },
        answer: answer.clone(),
    });
    Ok(answer)
}
