//! A journaled receipt as fiskaltrust's `ReceiptRequest`.
//!
//! - **ftReceiptCase** by kind and type: a sale to a consumer is a point-of-sale receipt, to a
//!   business the same with "receiver is business"; invoices are B2C or B2B invoices; a zero
//!   receipt is a zero receipt (or the closing a client names in `receipt_case`); a refund is
//!   its sale's case with the refund flag and `cbPreviousReceiptReference`; a cancellation is
//!   its original's case with the void flag, carrying the original's lines negated. Late
//!   signing and handwritten are flags on any of them.
//! - **ftChargeItemCase** by the item's VAT treatment and rate, in the categories of the
//!   market's law (22 % in Italy is "normal"); a supply of goods unless the client names a case.
//! - **ftPayItemCase** by payment method; change is cash with the change flag, negative.
//! - Amounts are the journal's exact decimals, negated for refunds and voids.
//! - `cbReceiptMoment` is the receipt's moment, or the one its terminal's previous receipt was
//!   sent with when that is later: the moments a terminal sends ascend with its journal, as
//!   late signing requires ("in the order they were created"), even when two receipts of one
//!   terminal were made at once or the till's clock went back.
//!
//! A case the client gave is kept, once checked to be a v2 case of the cash box's market that
//! fits what the receipt is. Every refusal names the field of the SignReceipt request at fault,
//! so a receipt that cannot be signed upstream is refused when it is made, never parked later.

use chrono::{DateTime, Utc};
use fiscus_domain::receipt::{
    Item, Payment, PaymentMethod, Receipt, ReceiptKind, ReceiptType, TaxType,
};
use fiscus_domain::{Money, Quantity};

use super::cases::{
    ChargeItemFlags, Decoded, Market, PayItemCase, PayItemFlags, ReceiptCase, ReceiptFlags,
    Service, VatRate, charge_item_case,
};
use super::wire::{CaseValue, ChargeItem, PayItem, ReceiptRequest};
use crate::wire::{WireMoney, WireQuantity};

/// The currency of every market fiscus signs in through fiskaltrust.
pub const CURRENCY: &str = "EUR";

/// The cash box a receipt is signed in.
#[derive(Clone, Copy, Debug)]
pub struct CashBox<'a> {
    pub cashbox_id: &'a str,
    pub pos_system_id: Option<&'a str>,
    pub market: Market,
}

/// What the receipt alone does not say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The `cbReceiptReference` of the receipt a refund or cancellation refers to.
    pub previous_reference: Option<&'a str>,
    /// For a cancellation: the receipt it voids, whose lines it sends negated.
    pub voided: Option<&'a Receipt>,
    /// Made while the middleware could not be reached: sent with the late-signing flag.
    pub late_signing: bool,
    /// The `cbReceiptMoment` the terminal's previous receipt was signed with: this one is sent
    /// with its own moment or that one, whichever is later.
    pub not_before: Option<DateTime<Utc>>,
}

/// Why a receipt cannot be written as a fiskaltrust request: the SignReceipt field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct MappingError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> MappingError {
    MappingError {
        field: field.into(),
        reason: reason.into(),
    }
}

const OVERFLOW: &str = "the amount does not fit";

/// The terminal's `cbTerminalID` within its merchant's cash box: `branch/pos`.
pub fn terminal_id(receipt: &Receipt) -> String {
    format!("{}/{}", receipt.branch_no, receipt.pos_no)
}

/// The `POST /v2/sign` body of `receipt` in `cash_box`.
pub fn receipt_request(
    receipt: &Receipt,
    cash_box: &CashBox<'_>,
    context: &Context<'_>,
) -> Result<ReceiptRequest, MappingError> {
    let market = cash_box.market;
    if !receipt.currency.is_empty() && receipt.currency != CURRENCY {
        return Err(refuse(
            "currency",
            format!(
                "fiskaltrust market {market} signs in {CURRENCY}, not {}",
                receipt.currency
            ),
        ));
    }
    let receipt_case = receipt_case(receipt, market, context)?;
    // A refund or void sends its lines negated: what it undoes.
    let (lines, negated, item_flags, pay_flags) = match receipt.kind {
        ReceiptKind::Refund => (receipt, true, ChargeItemFlags::REFUND, PayItemFlags::REFUND),
        ReceiptKind::Cancellation => (
            context
                .voided
                .ok_or_else(|| refuse("receipt_id", "a void needs the receipt it cancels"))?,
            true,
            ChargeItemFlags::VOID,
            PayItemFlags::VOID,
        ),
        ReceiptKind::Sale | ReceiptKind::Zero => {
            (receipt, false, ChargeItemFlags::NONE, PayItemFlags::NONE)
        }
    };
    let charge_items = lines
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| charge_item(i, item, market, negated, item_flags))
        .collect::<Result<Vec<_>, _>>()?;
    let pay_items = lines
        .payments
        .iter()
        .enumerate()
        .map(|(i, payment)| pay_item(i, payment, market, negated, pay_flags))
        .collect::<Result<Vec<_>, _>>()?;
    let total = signed(lines.total_amount, negated).ok_or_else(|| refuse("items", OVERFLOW))?;
    let previous_receipt_reference = match receipt.kind {
        ReceiptKind::Refund | ReceiptKind::Cancellation => Some(
            context
                .previous_reference
                .ok_or_else(|| refuse("refund_of", "the original's reference is needed"))?
                .to_owned(),
        ),
        ReceiptKind::Sale | ReceiptKind::Zero => None,
    };
    Ok(ReceiptRequest {
        cash_box_id: cash_box.cashbox_id.to_owned(),
        pos_system_id: cash_box.pos_system_id.map(str::to_owned),
        terminal_id: terminal_id(receipt),
        receipt_reference: receipt.reference.clone(),
        receipt_moment: context
            .not_before
            .map_or(receipt.moment, |previous| previous.max(receipt.moment)),
        charge_items,
        pay_items,
        receipt_case: CaseValue(receipt_case),
        receipt_amount: (!lines.items.is_empty()).then_some(WireMoney(total)),
        user: non_empty(&receipt.cashier),
        customer: customer(lines, market),
        previous_receipt_reference,
    })
}

/// Whether `receipt` can be signed in a cash box of `market`: `Err` names the SignReceipt field
/// whose value the middleware would refuse. (What a refund or cancellation refers to is not
/// looked at: its lines are its original's.)
pub fn check(receipt: &Receipt, market: Market) -> Result<(), MappingError> {
    let cash_box = CashBox {
        cashbox_id: "",
        pos_system_id: None,
        market,
    };
    let context = Context {
        previous_reference: Some(""),
        voided: Some(receipt),
        ..Context::default()
    };
    receipt_request(receipt, &cash_box, &context).map(drop)
}

/// The `ftReceiptCase` of `receipt`: the one it names, checked, or the one its kind and type
/// make; with the flags of what it is (refund, void, late-signed, handwritten).
pub fn receipt_case(
    receipt: &Receipt,
    market: Market,
    context: &Context<'_>,
) -> Result<u64, MappingError> {
    let mut flags = ReceiptFlags::NONE;
    if receipt.late_signed || context.late_signing {
        flags = flags | ReceiptFlags::LATE_SIGNING;
    }
    if receipt.handwritten {
        flags = flags | ReceiptFlags::HANDWRITTEN;
    }
    let (kind, receipt_type, given) = match receipt.kind {
        ReceiptKind::Cancellation => {
            let voided = context
                .voided
                .ok_or_else(|| refuse("receipt_id", "a void needs the receipt it cancels"))?;
            flags = flags | ReceiptFlags::VOID;
            (voided.kind, voided.receipt_type, voided.receipt_case)
        }
        kind => (kind, receipt.receipt_type, receipt.receipt_case),
    };
    if kind == ReceiptKind::Refund {
        flags = flags | ReceiptFlags::REFUND;
    }
    if kind != ReceiptKind::Zero && receipt_type.is_b2b() {
        flags = flags | ReceiptFlags::RECEIVER_IS_BUSINESS;
    }
    let case = if given == 0 {
        match (kind, receipt_type) {
            (ReceiptKind::Zero, _) => ReceiptCase::ZeroReceipt,
            (_, ReceiptType::B2cReceipt | ReceiptType::B2bReceipt) => {
                ReceiptCase::PointOfSaleReceipt
            }
            (_, ReceiptType::B2cInvoice) => ReceiptCase::InvoiceB2C,
            (_, ReceiptType::B2bInvoice) => ReceiptCase::InvoiceB2B,
        }
    } else {
        let case = checked_case(given, market, "receipt_case")?;
        let case = ReceiptCase::of(case).ok_or_else(|| {
            refuse(
                "receipt_case",
                format!("{given:#018x} is not a receipt case of fiskaltrust's v2"),
            )
        })?;
        if fits(kind, case) {
            case
        } else {
            return Err(refuse(
                "receipt_case",
                format!("{case:?} ({given:#018x}) is not a case of a {kind} receipt"),
            ));
        }
    };
    let given_flags = ReceiptFlags(Decoded::of(given).flags);
    Ok(case.value(market, given_flags | flags))
}

/// Whether a receipt of `kind` may be signed as `case`.
fn fits(kind: ReceiptKind, case: ReceiptCase) -> bool {
    use ReceiptCase as C;
    let closing = matches!(
        case,
        C::ZeroReceipt
            | C::OneReceipt
            | C::ShiftClosing
            | C::DailyClosing
            | C::MonthlyClosing
            | C::YearlyClosing
            | C::InitialOperationReceipt
            | C::OutOfOperationReceipt
    );
    match kind {
        ReceiptKind::Zero => closing,
        ReceiptKind::Sale | ReceiptKind::Refund | ReceiptKind::Cancellation => {
            !closing && case != C::Unknown
        }
    }
}

/// `value`, once it is known to be a v2 case of `market`.
fn checked_case(value: u64, market: Market, field: &str) -> Result<u64, MappingError> {
    if Decoded::is_v2_of(value, market) {
        Ok(value)
    } else {
        Err(refuse(
            field,
            format!("{value:#018x} is not a v2 case value of market {market}"),
        ))
    }
}

fn charge_item(
    index: usize,
    item: &Item,
    market: Market,
    negated: bool,
    flags: ChargeItemFlags,
) -> Result<ChargeItem, MappingError> {
    let field = |name: &str| format!("items[{index}].{name}");
    if item.total_city_tax != Money::ZERO {
        return Err(refuse(
            field("city_tax_applies"),
            "fiskaltrust's markets have no city tax",
        ));
    }
    let rate = item.vat_rate.hundredths();
    let category = match item.tax_type {
        TaxType::VatAble => VatRate::of_percent(market, rate),
        TaxType::VatZero => Some(VatRate::Zero),
        TaxType::VatFree | TaxType::NoVat => Some(VatRate::NotTaxable),
    };
    let case = if item.charge_item_case == 0 {
        let category = category.ok_or_else(|| {
            refuse(
                field("vat_rate"),
                format!("{} % is not a VAT rate of market {market}", item.vat_rate),
            )
        })?;
        charge_item_case(market, Service::Delivery, category, flags)
    } else {
        let given = checked_case(item.charge_item_case, market, &field("charge_item_case"))?;
        let named = VatRate::of_case(given).and_then(|v| v.percent_in(market));
        if named.is_some_and(|named| named != rate) {
            return Err(refuse(
                field("charge_item_case"),
                format!(
                    "{given:#018x} names another VAT rate than the item's {} %",
                    item.vat_rate
                ),
            ));
        }
        given | flags.0
    };
    let money = |m: Money| {
        signed(m, negated)
            .map(WireMoney)
            .ok_or_else(|| refuse(field("unit_price"), OVERFLOW))
    };
    let quantity = if negated {
        Quantity::ZERO.checked_sub(item.quantity)
    } else {
        Some(item.quantity)
    }
    .ok_or_else(|| refuse(field("quantity"), OVERFLOW))?;
    Ok(ChargeItem {
        position: Some(u64::from(item.position)),
        quantity: WireQuantity(quantity),
        description: item.name.clone(),
        amount: money(item.total_amount)?,
        vat_rate: WireMoney(Money::from_minor(rate)),
        charge_item_case: CaseValue(case),
        vat_amount: Some(money(item.total_vat)?),
        product_number: non_empty(&item.product_number),
        unit: non_empty(&item.measure_unit),
        unit_price: Some(WireMoney(item.unit_price)),
    })
}

fn pay_item(
    index: usize,
    payment: &Payment,
    market: Market,
    negated: bool,
    flags: PayItemFlags,
) -> Result<PayItem, MappingError> {
    let field = |name: &str| format!("payments[{index}].{name}");
    let (case, change) = match payment.method {
        PaymentMethod::Cash => (PayItemCase::Cash, false),
        PaymentMethod::PaymentCard => (PayItemCase::CreditCard, false),
        PaymentMethod::BankTransfer => (PayItemCase::SepaTransfer, false),
        PaymentMethod::Qr => (PayItemCase::OnlinePayment, false),
        PaymentMethod::Voucher => (PayItemCase::Voucher, false),
        PaymentMethod::Change => (PayItemCase::Cash, true),
        PaymentMethod::Other => (PayItemCase::Unknown, false),
    };
    let flags = if change {
        flags | PayItemFlags::CHANGE
    } else {
        flags
    };
    let value = if payment.pay_item_case == 0 {
        case.value(market, flags)
    } else {
        checked_case(payment.pay_item_case, market, &field("pay_item_case"))? | flags.0
    };
    // Change is money going back: negative, and positive again when a refund undoes it.
    let amount = signed(payment.amount, negated != change)
        .ok_or_else(|| refuse(field("amount"), OVERFLOW))?;
    let description = non_empty(&payment.description).unwrap_or_else(|| {
        match payment.method {
            PaymentMethod::Cash => "Cash",
            PaymentMethod::PaymentCard => "Card",
            PaymentMethod::BankTransfer => "Bank transfer",
            PaymentMethod::Qr => "Online payment",
            PaymentMethod::Voucher => "Voucher",
            PaymentMethod::Change => "Change",
            PaymentMethod::Other => "Other",
        }
        .to_owned()
    });
    let data = (!payment.data.is_empty()).then(|| {
        serde_json::Value::Object(
            payment
                .data
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    });
    Ok(PayItem {
        position: Some(u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1)),
        quantity: None,
        description,
        amount: WireMoney(amount),
        pay_item_case: CaseValue(value),
        pay_item_case_data: data,
        money_number: non_empty(&payment.masked_card_number)
            .or_else(|| non_empty(&payment.reference)),
    })
}

/// The buyer, for a receipt that names one: `{Name, Address, VATId}` as fiskaltrust's
/// examples write it, the VAT id with its country prefix (`IT12345678901`).
fn customer(receipt: &Receipt, market: Market) -> Option<serde_json::Value> {
    let vat_id = match receipt.customer_tin.as_str() {
        "" => String::new(),
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => format!("{market}{digits}"),
        given => given.to_owned(),
    };
    let mut buyer = serde_json::Map::new();
    for (key, value) in [
        ("Name", &receipt.customer_name),
        ("Address", &receipt.customer_address),
        ("VATId", &vat_id),
    ] {
        if !value.is_empty() {
            buyer.insert(key.to_owned(), serde_json::Value::String(value.clone()));
        }
    }
    (!buyer.is_empty()).then_some(serde_json::Value::Object(buyer))
}

fn signed(amount: Money, negated: bool) -> Option<Money> {
    if negated {
        amount.checked_neg()
    } else {
        Some(amount)
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}
