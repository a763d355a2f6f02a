//! `POST` and `DELETE /rest/receipt`: the schema, the tax authority's arithmetic and rules, the
//! `billIdSuffix` model, corrections, and the documents they make.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Utc};
use fiscus_domain::{Money, Rate, ReceiptType};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{DocumentState, EbarimtDocument, EbarimtMerchant, EbarimtState, Store};
use crate::ebarimt::spec::{Operation, SchemaViolation};
use crate::ebarimt::types::{
    BankAccount, DeleteRequest, PaymentCode, PaymentStatus, ReceiptAnswer, ReceiptItem,
    ReceiptRequest, ReceiptStatus, SubReceipt, SubReceiptAnswer, TaxType, WireMoney, WireQuantity,
};
use crate::sandbox::{self, lock};

/// Digits of `qrData` (the live service's are a long run of digits too).
const QR_DIGITS: usize = 160;
/// Ulaanbaatar is UTC+8 all year.
const ULAANBAATAR_SECONDS: i32 = 8 * 3600;
/// The `date` of answers.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Fields holding money, and the quantity field, checked for exactness before typed reading.
const AMOUNT_FIELDS: &[&str] = &[
    "totalAmount",
    "totalVAT",
    "totalCityTax",
    "unitPrice",
    "paidAmount",
];
/// The most schema violations one refusal lists.
const MAX_LISTED: usize = 10;

/// Why a receipt call is refused.
enum Refusal {
    /// The body breaks the (relaxed) OpenAPI schema, or is not JSON.
    Schema(String),
    /// The body is well-formed but breaks a rule.
    Rule(String),
    /// The sandbox itself failed (no randomness).
    Internal(String),
}

fn refusal_response(state: &EbarimtState, refusal: Refusal) -> Response {
    let message = match refusal {
        Refusal::Schema(message) => {
            state.schema_violations.fetch_add(1, Ordering::SeqCst);
            message
        }
        Refusal::Rule(message) => message,
        Refusal::Internal(error) => return sandbox::internal_error(error),
    };
    state.refusals.fetch_add(1, Ordering::SeqCst);
    tracing::debug!(%message, "ebarimt sandbox refused a receipt call");
    // As the live daemon refuses: HTTP 200, `status: ERROR`.
    axum::Json(json!({"status": "ERROR", "message": message})).into_response()
}

pub(super) async fn post(State(state): State<Arc<EbarimtState>>, body: Bytes) -> Response {
    match register(&state, &body) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(refusal) => refusal_response(&state, refusal),
    }
}

pub(super) async fn delete(State(state): State<Arc<EbarimtState>>, body: Bytes) -> Response {
    match deactivate(&state, &body) {
        Ok(id) => axum::Json(json!({
            "status": "SUCCESS",
            "message": format!("receipt {id} is inactive"),
        }))
        .into_response(),
        Err(refusal) => refusal_response(&state, refusal),
    }
}

/// The body as JSON, checked against `operation`'s relaxed request schema.
fn schema_checked(
    state: &EbarimtState,
    operation: Operation,
    body: &[u8],
) -> Result<Value, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::Schema(format!("the body is not JSON: {e}")))?;
    state
        .spec
        .check(operation, &value)
        .map_err(|violations| Refusal::Schema(describe(&violations)))?;
    Ok(value)
}

fn describe(violations: &[SchemaViolation]) -> String {
    let mut text = violations
        .iter()
        .take(MAX_LISTED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > MAX_LISTED {
        text.push_str(&format!(
            "; and {} more",
            violations.len().saturating_sub(MAX_LISTED)
        ));
    }
    text
}

fn register(state: &EbarimtState, body: &[u8]) -> Result<ReceiptAnswer, Refusal> {
    if let Some(message) = state.take_rejection() {
        return Err(Refusal::Rule(message));
    }
    let value = schema_checked(state, Operation::PostReceipt, body)?;
    check_values(body, &value).map_err(Refusal::Rule)?;
    let request: ReceiptRequest = serde_json::from_slice(body)
        .map_err(|e| Refusal::Rule(format!("the body cannot be read: {e}")))?;
    check_rules(state, &request).map_err(Refusal::Rule)?;

    let now = ulaanbaatar_now();
    let mut store = lock(&state.store);
    let key = (
        request.merchant_tin.clone(),
        request.branch_no.clone(),
        request.pos_no.clone(),
        now.date_naive(),
        request.bill_id_suffix.clone(),
    );
    if let Some(&index) = store.by_suffix.get(&key) {
        let existing = &store.documents[index];
        if existing.request == request {
            state.replays.fetch_add(1, Ordering::SeqCst);
            return Ok(existing.answer.clone());
        }
        return Err(Refusal::Rule(format!(
            "/billIdSuffix: {:?} was used today on POS {}/{} for receipt {}, with another body: a new receipt needs its own billIdSuffix",
            request.bill_id_suffix, request.branch_no, request.pos_no, existing.id
        )));
    }
    let corrected = match request.inactive_id.as_deref().filter(|id| !id.is_empty()) {
        Some(inactive) => Some(correctable(&store, &request.merchant_tin, inactive)?),
        None => None,
    };
    let lottery = if request.receipt_type == ReceiptType::B2cReceipt && corrected.is_none() {
        if store.lotteries_left == 0 {
            return Err(Refusal::Rule(
                "this PosAPI has no lotteries left (leftLotteries 0)".to_owned(),
            ));
        }
        Some(lottery().map_err(|e| Refusal::Internal(e.to_string()))?)
    } else {
        None
    };
    let qr_data =
        sandbox::random_digits(QR_DIGITS).map_err(|e| Refusal::Internal(e.to_string()))?;

    let id = next_id(&mut store, state.pos_id, now);
    let receipts = request
        .receipts
        .iter()
        .map(|sub| SubReceiptAnswer {
            id: next_id(&mut store, state.pos_id, now),
            bank_account_id: account_of(state, &request, sub).map(|a| a.id),
        })
        .collect();
    let easy = request
        .payments
        .iter()
        .any(|p| p.code == PaymentCode::PaymentCard && p.data.as_ref().is_some_and(|d| d.easy));
    let date = now.format(DATE_FORMAT).to_string();
    let answer = ReceiptAnswer {
        id: Some(id.clone()),
        pos_id: Some(state.pos_id),
        status: ReceiptStatus::Success,
        message: Some(String::new()),
        qr_data: Some(qr_data),
        lottery: lottery.clone(),
        date: Some(date.clone()),
        easy: Some(easy),
        receipts,
    };
    if lottery.is_some() {
        store.lotteries_left = store.lotteries_left.saturating_sub(1);
    }
    if let Some(index) = corrected {
        store.documents[index].state = DocumentState::Corrected { by: id.clone() };
    }
    let index = store.documents.len();
    store.documents.push(EbarimtDocument {
        id: id.clone(),
        merchant_tin: request.merchant_tin.clone(),
        branch_no: request.branch_no.clone(),
        pos_no: request.pos_no.clone(),
        bill_id_suffix: request.bill_id_suffix.clone(),
        date,
        request,
        body: String::from_utf8_lossy(body).into_owned(),
        answer: answer.clone(),
        state: DocumentState::Active,
    });
    store.by_id.insert(id, index);
    store.by_suffix.insert(key, index);
    Ok(answer)
}

/// The document `inactive` names, if a correction of merchant `merchant_tin` may replace it.
fn correctable(store: &Store, merchant_tin: &str, inactive: &str) -> Result<usize, Refusal> {
    let refuse = |why: String| Err(Refusal::Rule(format!("/inactiveId: {inactive}: {why}")));
    let Some(&index) = store.by_id.get(inactive) else {
        return refuse("no such receipt".to_owned());
    };
    let document = &store.documents[index];
    if document.merchant_tin != merchant_tin {
        return refuse(format!("a receipt of merchant {}", document.merchant_tin));
    }
    match &document.state {
        DocumentState::Active => Ok(index),
        DocumentState::Corrected { by } => refuse(format!(
            "already corrected by {by}: a further correction names the latest receipt"
        )),
        DocumentState::Deleted => refuse("the receipt was deleted".to_owned()),
    }
}

fn deactivate(state: &EbarimtState, body: &[u8]) -> Result<String, Refusal> {
    if let Some(message) = state.take_rejection() {
        return Err(Refusal::Rule(message));
    }
    schema_checked(state, Operation::DeleteReceipt, body)?;
    let request: DeleteRequest = serde_json::from_slice(body)
        .map_err(|e| Refusal::Rule(format!("the body cannot be read: {e}")))?;
    let mut store = lock(&state.store);
    let refuse = |why: String| Err(Refusal::Rule(why));
    let Some(&index) = store.by_id.get(&request.id) else {
        return refuse(format!("/id: {}: no such receipt", request.id));
    };
    let document = &mut store.documents[index];
    match &document.state {
        DocumentState::Active => {}
        DocumentState::Corrected { by } => {
            return refuse(format!(
                "/id: {}: corrected by {by}, no longer active",
                request.id
            ));
        }
        DocumentState::Deleted => {
            return refuse(format!("/id: {}: already deleted", request.id));
        }
    }
    let day = document.date.get(..10).unwrap_or_default();
    let matches =
        request.date == document.date || (request.date.len() == 10 && request.date == day);
    if !matches {
        return refuse(format!(
            "/date: {} is not the date of receipt {} ({})",
            request.date, request.id, document.date
        ));
    }
    document.state = DocumentState::Deleted;
    Ok(request.id)
}

/// Checks what a typed reading would only report without saying where: every amount and `qty`
/// exact to its kind's precision (read from the number's own text), and every enumerated field
/// one of its names.
fn check_values(body: &[u8], value: &Value) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut problems = Vec::new();
    walk_numbers(text, String::new(), &mut |pointer, key, number| {
        let problem = if AMOUNT_FIELDS.contains(&key) {
            fiscus_domain::Money::from_json_number(number)
                .err()
                .map(|e| format!("amount {e}"))
        } else if key == "qty" {
            WireQuantity::from_json_number(number)
                .err()
                .map(|e| format!("quantity {e}"))
        } else {
            None
        };
        if let Some(problem) = problem {
            problems.push(format!("{pointer}: {problem}"));
        }
    })
    .map_err(|e| format!("the body cannot be read: {e}"))?;
    let mut named = |pointer: String, found: Option<&Value>, known: &[&str]| {
        if let Some(Value::String(name)) = found
            && !known.contains(&name.as_str())
        {
            problems.push(format!("{pointer}: {name:?} is not one of {known:?}"));
        }
    };
    named(
        "/type".to_owned(),
        value.get("type"),
        &["B2C_RECEIPT", "B2B_RECEIPT", "B2C_INVOICE", "B2B_INVOICE"],
    );
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for (i, sub) in list(value, "receipts").iter().enumerate() {
        named(
            format!("/receipts/{i}/taxType"),
            sub.get("taxType"),
            &["VAT_ABLE", "VAT_FREE", "VAT_ZERO", "NO_VAT", "NOT_VAT"],
        );
        for (j, item) in list(sub, "items").iter().enumerate() {
            named(
                format!("/receipts/{i}/items/{j}/barCodeType"),
                item.get("barCodeType"),
                &["GS1", "ISBN", "UNDEFINED"],
            );
        }
    }
    for (k, payment) in list(value, "payments").iter().enumerate() {
        named(
            format!("/payments/{k}/code"),
            payment.get("code"),
            &["CASH", "PAYMENT_CARD"],
        );
        named(
            format!("/payments/{k}/status"),
            payment.get("status"),
            &["PAID", "PAY", "REVERSED", "ERROR"],
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Calls `found(pointer, key, text)` for every number in the JSON `text`, with its own text.
fn walk_numbers(
    text: &str,
    pointer: String,
    found: &mut dyn FnMut(&str, &str, &str),
) -> Result<(), serde_json::Error> {
    fn walk(
        text: &str,
        pointer: &str,
        key: &str,
        found: &mut dyn FnMut(&str, &str, &str),
    ) -> Result<(), serde_json::Error> {
        let trimmed = text.trim();
        match trimmed.as_bytes().first() {
            Some(b'{') => {
                let members: BTreeMap<String, Box<RawValue>> = serde_json::from_str(trimmed)?;
                for (name, member) in &members {
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    walk(member.get(), &format!("{pointer}/{escaped}"), name, found)?;
                }
            }
            Some(b'[') => {
                let elements: Vec<Box<RawValue>> = serde_json::from_str(trimmed)?;
                for (i, element) in elements.iter().enumerate() {
                    walk(element.get(), &format!("{pointer}/{i}"), key, found)?;
                }
            }
            Some(b'-' | b'0'..=b'9') => found(pointer, key, trimmed),
            _ => {}
        }
        Ok(())
    }
    walk(text, &pointer, "", found)
}

fn money(amount: Option<WireMoney>) -> Money {
    amount.map_or(Money::ZERO, |m| m.0)
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// The rules the tax authority checks, on exact decimals. The message names the field.
fn check_rules(state: &EbarimtState, request: &ReceiptRequest) -> Result<(), String> {
    if request.bill_id_suffix.trim().is_empty() {
        return Err(
            "/billIdSuffix: must not be empty: it keeps the ДДТД unique within the day".to_owned(),
        );
    }
    if state.merchant(&request.merchant_tin).is_none() {
        return Err(format!(
            "/merchantTin: {} is not a merchant registered on this PosAPI",
            request.merchant_tin
        ));
    }
    if request.branch_no.trim().is_empty() {
        return Err("/branchNo: must not be empty".to_owned());
    }
    if request.pos_no.trim().is_empty() {
        return Err("/posNo: must not be empty".to_owned());
    }
    match request.district_code.as_deref() {
        Some(code) if code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()) => {}
        Some(code) => {
            return Err(format!(
                "/districtCode: {code:?} is not 4 digits (branch code and sub-branch code of getBranchInfo)"
            ));
        }
        None => return Err("/districtCode: required, 4 digits".to_owned()),
    }
    if request.receipt_type.is_b2b() {
        let Some(customer) = non_empty(request.customer_tin.as_deref()) else {
            return Err(format!(
                "/customerTin: required for {}",
                request.receipt_type
            ));
        };
        if !state.is_taxpayer(customer) {
            return Err(format!("/customerTin: {customer}: no such taxpayer"));
        }
    }
    if request.receipt_type != ReceiptType::B2cReceipt
        && non_empty(request.consumer_no.as_deref()).is_some()
    {
        return Err(format!(
            "/consumerNo: only for B2C_RECEIPT, not {}",
            request.receipt_type
        ));
    }
    if request.receipts.is_empty() {
        return Err("/receipts: at least one sub-receipt".to_owned());
    }
    let mut totals = [Money::ZERO; 3];
    for (i, sub) in request.receipts.iter().enumerate() {
        let at = format!("/receipts/{i}");
        let seller = state.merchant(&sub.merchant_tin).ok_or_else(|| {
            format!(
                "{at}/merchantTin: {} is not a merchant registered on this PosAPI",
                sub.merchant_tin
            )
        })?;
        let registered = |given: &str, of: AccountField| {
            state.bank_accounts.iter().any(|a| {
                (a.tin == sub.merchant_tin || a.tin == request.merchant_tin) && of(a) == given
            })
        };
        let accounts: [(&str, Option<&str>, AccountField); 2] = [
            ("bankAccountNo", sub.bank_account_no.as_deref(), |a| {
                &a.bank_account_no
            }),
            ("iBan", sub.iban.as_deref(), |a| &a.iban),
        ];
        for (field, given, of) in accounts {
            if let Some(given) = non_empty(given)
                && !registered(given, of)
            {
                return Err(format!(
                    "{at}/{field}: {given} is not an account registered for merchant {}",
                    sub.merchant_tin
                ));
            }
        }
        if sub.items.is_empty() {
            return Err(format!("{at}/items: at least one item"));
        }
        let mut sums = [Money::ZERO; 3];
        for (j, item) in sub.items.iter().enumerate() {
            let at = format!("{at}/items/{j}");
            check_item(seller, sub.tax_type, item, &at)?;
            for (sum, part) in sums.iter_mut().zip([
                item.total_amount.0,
                money(item.total_vat),
                money(item.total_city_tax),
            ]) {
                *sum = sum
                    .checked_add(part)
                    .ok_or_else(|| format!("{at}: amounts too large"))?;
            }
        }
        for ((name, given), sum) in [
            ("totalAmount", sub.total_amount.0),
            ("totalVAT", money(sub.total_vat)),
            ("totalCityTax", money(sub.total_city_tax)),
        ]
        .into_iter()
        .zip(sums)
        {
            if given != sum {
                return Err(format!(
                    "{at}/{name}: {given} is not the sum of its items' {name} ({sum})"
                ));
            }
        }
        for (total, sum) in totals.iter_mut().zip(sums) {
            *total = total
                .checked_add(sum)
                .ok_or_else(|| format!("{at}: amounts too large"))?;
        }
    }
    for ((name, given), sum) in [
        ("totalAmount", request.total_amount.0),
        ("totalVAT", money(request.total_vat)),
        ("totalCityTax", money(request.total_city_tax)),
    ]
    .into_iter()
    .zip(totals)
    {
        if given != sum {
            return Err(format!(
                "/{name}: {given} is not the sum of the sub-receipts' {name} ({sum})"
            ));
        }
    }
    let mut paid = Money::ZERO;
    for (k, payment) in request.payments.iter().enumerate() {
        let at = format!("/payments/{k}");
        if payment.status != PaymentStatus::Paid {
            return Err(format!(
                "{at}/status: this sandbox takes PAID payments only (the payment exchange is not modelled)"
            ));
        }
        if !payment.paid_amount.0.is_positive() {
            return Err(format!("{at}/paidAmount: must be positive"));
        }
        if payment.code == PaymentCode::PaymentCard && payment.data.is_none() {
            return Err(format!("{at}/data: required for PAYMENT_CARD"));
        }
        paid = paid
            .checked_add(payment.paid_amount.0)
            .ok_or_else(|| format!("{at}: amounts too large"))?;
    }
    if paid != request.total_amount.0 {
        return Err(format!(
            "/payments: paidAmount comes to {paid} but totalAmount is {}",
            request.total_amount.0
        ));
    }
    Ok(())
}

/// Which field of a registered account a sub-receipt's field names.
type AccountField = fn(&BankAccount) -> &str;

/// One item: its total is `qty × unitPrice`, its taxes the VAT-inclusive split of that total.
fn check_item(
    seller: &EbarimtMerchant,
    tax_type: TaxType,
    item: &ReceiptItem,
    at: &str,
) -> Result<(), String> {
    let (qty, unit_price, total) = (item.qty.0, item.unit_price.0, item.total_amount.0);
    if !qty.is_positive() {
        return Err(format!("{at}/qty: must be positive"));
    }
    if unit_price.is_negative() {
        return Err(format!("{at}/unitPrice: must not be negative"));
    }
    let expected = unit_price
        .times(qty)
        .ok_or_else(|| format!("{at}: amounts too large"))?;
    if total != expected {
        return Err(format!(
            "{at}/totalAmount: {total} is not qty × unitPrice = {qty} × {unit_price} = {expected}"
        ));
    }
    if tax_type != TaxType::VatAble && non_empty(item.tax_product_code.as_deref()).is_none() {
        return Err(format!(
            "{at}/taxProductCode: required for {} items (getProductTaxCode)",
            tax_type.as_str()
        ));
    }
    if seller.pharmacy && non_empty(item.data.as_ref().and_then(|d| d.lot_no.as_deref())).is_none()
    {
        return Err(format!(
            "{at}/data/lotNo: required: merchant {} is a pharmacy",
            seller.tin
        ));
    }
    let (vat, city_tax) = (money(item.total_vat), money(item.total_city_tax));
    let vat_rate = if tax_type == TaxType::VatAble && seller.vat_payer {
        10
    } else {
        0
    };
    let city_rates: &[i64] = if seller.city_payer { &[0, 1, 2] } else { &[0] };
    let close = |a: Money, b: Money| a.checked_sub(b).is_some_and(|d| d.minor().abs() <= 1);
    let mut nearest: Option<(i64, i64, Money, Money)> = None;
    for &city_rate in city_rates {
        let (want_vat, want_city) = fiscus_domain::tax::contained_taxes(
            total,
            Rate::from_hundredths(vat_rate * 100),
            Rate::from_hundredths(city_rate * 100),
        )
        .ok_or_else(|| format!("{at}: amounts too large"))?;
        if close(vat, want_vat) && close(city_tax, want_city) {
            return Ok(());
        }
        let distance = city_tax
            .checked_sub(want_city)
            .map_or(i64::MAX, |d| d.minor().saturating_abs());
        if nearest.is_none_or(|(best, ..)| distance < best) {
            nearest = Some((distance, city_rate, want_vat, want_city));
        }
    }
    let (_, city_rate, want_vat, want_city) = nearest.unwrap_or((0, 0, Money::ZERO, Money::ZERO));
    let allowed = if seller.city_payer {
        "0, 1 or 2 %"
    } else {
        "none: not a city-tax payer"
    };
    Err(format!(
        "{at}/totalVAT, totalCityTax: {vat} and {city_tax} are not the split of totalAmount {total} \
         (VAT {vat_rate} % for {} of merchant {}, city tax {allowed}; with {city_rate} %: VAT {want_vat}, city tax {want_city}, ±0.01)",
        tax_type.as_str(),
        seller.tin
    ))
}

/// The registered account a sub-receipt names, by number or IBAN.
fn account_of<'a>(
    state: &'a EbarimtState,
    request: &ReceiptRequest,
    sub: &SubReceipt,
) -> Option<&'a BankAccount> {
    let number = non_empty(sub.bank_account_no.as_deref());
    let iban = non_empty(sub.iban.as_deref());
    state.bank_accounts.iter().find(|a| {
        (a.tin == sub.merchant_tin || a.tin == request.merchant_tin)
            && (number == Some(a.bank_account_no.as_str()) || iban == Some(a.iban.as_str()))
    })
}

fn ulaanbaatar_now() -> DateTime<FixedOffset> {
    let now = Utc::now();
    FixedOffset::east_opt(ULAANBAATAR_SECONDS)
        .map_or_else(|| now.fixed_offset(), |offset| now.with_timezone(&offset))
}

/// A fresh ДДТД: 10 digits of the posId, the Ulaanbaatar date, 15 digits of a sequence.
fn next_id(store: &mut Store, pos_id: u64, now: DateTime<FixedOffset>) -> String {
    loop {
        store.sequence = store.sequence.saturating_add(1);
        let id = format!(
            "{:010}{}{:015}",
            pos_id % 10_000_000_000,
            now.format("%Y%m%d"),
            store.sequence % 1_000_000_000_000_000
        );
        if store.issued.insert(id.clone()) {
            return id;
        }
    }
}

/// Two Latin capitals and eight digits.
fn lottery() -> Result<String, getrandom::Error> {
    let mut letters = String::with_capacity(2);
    let mut bytes = [0u8; 8];
    while letters.len() < 2 {
        getrandom::fill(&mut bytes)?;
        // 234 = 26 × 9: rejecting 234..=255 keeps every letter equally likely.
        for byte in bytes.iter().filter(|b| **b < 234) {
            if letters.len() == 2 {
                break;
            }
            letters.push(char::from(b'A' + byte % 26));
        }
    }
    Ok(letters + &sandbox::random_digits(8)?)
}
