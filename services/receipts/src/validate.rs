//! Turning requests into domain values: every problem named by its field path, all of them at
//! once, before anything is written.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use fiscus_domain::receipt::{self as d, Format};
use fiscus_domain::refund::RefundLine;
use fiscus_domain::{DecimalError, Money, Quantity, Rate, TerminalId};
use fiscus_kit::ApiError;
pub use fiscus_kit::Violations;
use fiscus_proto::v1 as pb;

use crate::config::Policy;
use crate::proto::enum_field;

/// What ReceiptService checks of a request beyond what every service does.
pub trait ReceiptChecks {
    /// Text of at most `max` characters; required text must not be blank.
    fn text(&mut self, field: &str, value: &str, max: usize, required: bool);
    fn digits(&mut self, field: &str, value: &str, lengths: std::ops::RangeInclusive<usize>);
    fn parsed<T>(
        &mut self,
        field: &str,
        value: &str,
        parse: fn(&str) -> Result<T, DecimalError>,
    ) -> Option<T>;
}

impl ReceiptChecks for Violations {
    fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max {
            self.add(field, format!("is longer than {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            self.add(field, "contains control characters");
        }
    }

    fn digits(&mut self, field: &str, value: &str, lengths: std::ops::RangeInclusive<usize>) {
        if !value.is_empty()
            && (!lengths.contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()))
        {
            self.add(
                field,
                format!("must be {} to {} digits", lengths.start(), lengths.end()),
            );
        }
    }

    fn parsed<T>(
        &mut self,
        field: &str,
        value: &str,
        parse: fn(&str) -> Result<T, DecimalError>,
    ) -> Option<T> {
        match parse(value) {
            Ok(parsed) => Some(parsed),
            Err(DecimalError::Empty) => {
                self.add(field, "is required");
                None
            }
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }
}

/// Reads the terminal of a request.
pub fn terminal(
    terminal: Option<&pb::Terminal>,
    field: &str,
    v: &mut Violations,
) -> Option<TerminalId> {
    v.terminal(field, terminal)
}

/// The terminal of a request that needs nothing else validated.
pub fn terminal_only(t: Option<&pb::Terminal>) -> Result<TerminalId, ApiError> {
    let mut v = Violations::default();
    let id = terminal(t, "terminal", &mut v);
    v.into_result()?;
    id.ok_or_else(|| ApiError::invalid("terminal", "is required"))
}

/// The operation id: the `operation_id` field and/or the `x-operation-id` metadata, one UUID.
pub fn operation_id(field: &str, metadata: Option<&str>, v: &mut Violations) -> String {
    fiscus_kit::idempotency::operation_id(field, metadata).unwrap_or_else(|violations| {
        v.0.extend(violations);
        String::new()
    })
}

/// Where a refund's original is and what of it is refunded.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub original: Original,
    /// Empty = everything not refunded yet.
    pub lines: Vec<RefundLine>,
}

#[derive(Debug, Clone)]
pub enum Original {
    Id(String),
    Reference(String),
}

/// The totals a client says it computed, each beside the field that carried it.
pub type Expected = [(Option<Money>, &'static str); 3];

/// A SignReceipt request, checked field by field: the receipt to sign, before it has an id, a
/// key and a place in its terminal's chain. A sale's items are priced (tax per item); a
/// refund's come from its original.
#[derive(Debug, Clone)]
pub struct Draft {
    pub receipt: d::Receipt,
    /// The type the request names; a refund takes its original's.
    pub requested_type: Option<d::ReceiptType>,
    pub refund: Option<RefundRequest>,
    pub expected: Expected,
}

impl Draft {
    pub fn terminal(&self) -> TerminalId {
        self.receipt.terminal()
    }

    /// Totals the items, and checks that the payments and the client's expected totals agree.
    pub fn total_up(&mut self) -> Result<(), ApiError> {
        let mut v = Violations::default();
        let receipt = &mut self.receipt;
        match receipt.total_up() {
            Ok(totals) => {
                if let Err(unpaid) = d::check_paid(receipt.kind, totals.amount, &receipt.payments) {
                    v.add("payments", unpaid.to_string());
                }
                let computed = [totals.amount, totals.vat, totals.city_tax];
                for ((expected, field), actual) in self.expected.iter().zip(computed) {
                    if let Some(expected) = expected
                        && *expected != actual
                    {
                        v.add(
                            *field,
                            format!("is {expected} but fiscus computes {actual}"),
                        );
                    }
                }
            }
            Err(_) => v.add("items", "the receipt's total is too large"),
        }
        v.into_result()
    }
}

pub fn sign_request(
    request: &pb::SignReceiptRequest,
    policy: &Policy,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<Draft> {
    let terminal = terminal(request.terminal.as_ref(), "terminal", v);
    let tin = terminal
        .as_ref()
        .map(|t| t.merchant_tin.as_str())
        .unwrap_or("");

    let kind = match pb::ReceiptKind::try_from(request.kind) {
        Ok(pb::ReceiptKind::Sale) => Some(d::ReceiptKind::Sale),
        Ok(pb::ReceiptKind::Refund) => Some(d::ReceiptKind::Refund),
        Ok(pb::ReceiptKind::Zero) => Some(d::ReceiptKind::Zero),
        Ok(pb::ReceiptKind::Cancellation) => {
            v.add(
                "kind",
                "CANCELLATION is made by CancelReceipt, not SignReceipt",
            );
            None
        }
        _ => {
            v.add("kind", "is required: SALE, REFUND or ZERO");
            None
        }
    };
    let requested_type = enum_field::<d::ReceiptType, pb::ReceiptType>(request.r#type);
    if request.r#type != 0 && requested_type.is_none() {
        v.add("type", format!("{} is not a receipt type", request.r#type));
    } else if kind == Some(d::ReceiptKind::Sale) && requested_type.is_none() {
        v.add(
            "type",
            "is required for a SALE: B2C_RECEIPT, B2B_RECEIPT, B2C_INVOICE or B2B_INVOICE",
        );
    }
    let b2b = requested_type.is_some_and(d::ReceiptType::is_b2b);
    if b2b && request.customer_tin.is_empty() {
        v.add("customer_tin", "is required for B2B receipts and invoices");
    } else if !b2b && !request.customer_tin.is_empty() && kind == Some(d::ReceiptKind::Sale) {
        v.add("customer_tin", "is only for B2B receipts and invoices");
    }
    v.digits("customer_tin", &request.customer_tin, 7..=14);
    if !request.consumer_no.is_empty() && requested_type != Some(d::ReceiptType::B2cReceipt) {
        v.add("consumer_no", "is only for B2C receipts");
    }
    v.text("consumer_no", &request.consumer_no, 32, false);
    v.text("receipt_reference", &request.receipt_reference, 128, true);
    v.text("customer_name", &request.customer_name, 256, false);
    v.text("customer_address", &request.customer_address, 512, false);
    v.digits("district_code", &request.district_code, 4..=4);
    v.text("bank_account", &request.bank_account, 64, false);
    v.text("iban", &request.iban, 34, false);
    v.digits("invoice_id", &request.invoice_id, 33..=33);
    v.text("cashier", &request.cashier, 128, false);
    if !request.report_month.is_empty()
        && chrono::NaiveDate::parse_from_str(&format!("{}-01", request.report_month), "%Y-%m-%d")
            .is_err()
    {
        v.add("report_month", "must be a month written YYYY-MM");
    }

    let moment = match &request.receipt_moment {
        None => now,
        Some(ts) => match DateTime::<Utc>::from_timestamp(
            ts.seconds,
            u32::try_from(ts.nanos).unwrap_or(u32::MAX),
        ) {
            Some(at) if at > now + Duration::minutes(5) => {
                v.add("receipt_moment", "is more than 5 minutes in the future");
                now
            }
            // Documents keep microseconds: the answer must say what the journal holds.
            Some(at) => at.trunc_subsecs(6),
            None => {
                v.add("receipt_moment", "is not a valid time");
                now
            }
        },
    };

    let currency = policy.currency(tin).to_owned();
    if !request.currency.is_empty() && request.currency != currency {
        v.add(
            "currency",
            format!("must be {currency}, the merchant's currency"),
        );
    }

    let items = match kind {
        Some(d::ReceiptKind::Sale) if request.items.is_empty() => {
            v.add("items", "a SALE needs at least one item");
            Vec::new()
        }
        Some(d::ReceiptKind::Sale) if request.items.len() > policy.item_limit => {
            v.add(
                "items",
                format!(
                    "{} items exceed the limit of {}",
                    request.items.len(),
                    policy.item_limit
                ),
            );
            Vec::new()
        }
        Some(d::ReceiptKind::Sale) => request
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| charge_item(item, i, tin, policy, v))
            .collect(),
        _ => {
            if !request.items.is_empty() {
                v.add(
                    "items",
                    "must be empty for a REFUND (lines come from refund_of) or a ZERO receipt",
                );
            }
            Vec::new()
        }
    };

    if kind == Some(d::ReceiptKind::Zero) && !request.payments.is_empty() {
        v.add("payments", "must be empty for a ZERO receipt");
    } else if kind != Some(d::ReceiptKind::Zero) && request.payments.is_empty() {
        v.add("payments", "at least one payment is required");
    }
    if request.payments.len() > 100 {
        v.add("payments", "more than 100 payments");
    }
    let payments = request
        .payments
        .iter()
        .enumerate()
        .filter_map(|(i, p)| pay_item(p, i, v))
        .collect();

    let refund = match (kind, &request.refund_of) {
        (Some(d::ReceiptKind::Refund), None) => {
            v.add("refund_of", "is required for a REFUND");
            None
        }
        (Some(d::ReceiptKind::Refund), Some(refund)) => refund_reference(refund, v),
        (_, Some(_)) => {
            v.add("refund_of", "is only for a REFUND");
            None
        }
        (_, None) => None,
    };

    let mut expected_money = |value: &str, field: &'static str| {
        let parsed = if value.is_empty() {
            None
        } else {
            v.parsed(field, value, Money::parse)
        };
        (parsed, field)
    };
    let expected = [
        expected_money(&request.expected_total_amount, "expected_total_amount"),
        expected_money(&request.expected_total_vat, "expected_total_vat"),
        expected_money(&request.expected_total_city_tax, "expected_total_city_tax"),
    ];

    let (terminal, kind) = (terminal?, kind?);
    let receipt_type = match kind {
        d::ReceiptKind::Sale => requested_type?,
        // A zero receipt is a plain B2C receipt; a refund's type comes from its original.
        _ => d::ReceiptType::B2cReceipt,
    };
    Some(Draft {
        receipt: d::Receipt {
            format: Format,
            id: String::new(),
            merchant_tin: terminal.merchant_tin,
            branch_no: terminal.branch_no,
            pos_no: terminal.pos_no,
            number: 0,
            kind,
            receipt_type,
            reference: request.receipt_reference.clone(),
            moment,
            signed_at: now,
            currency,
            items,
            payments,
            total_amount: Money::ZERO,
            total_vat: Money::ZERO,
            total_city_tax: Money::ZERO,
            customer_tin: request.customer_tin.clone(),
            consumer_no: request.consumer_no.clone(),
            customer_name: request.customer_name.clone(),
            customer_address: request.customer_address.clone(),
            district_code: request.district_code.clone(),
            bank_account: request.bank_account.clone(),
            iban: request.iban.clone(),
            invoice_id: request.invoice_id.clone(),
            report_month: request.report_month.clone(),
            cashier: request.cashier.clone(),
            original_receipt_id: String::new(),
            receipt_case: request.receipt_case,
            late_signed: request.late_signed,
            handwritten: request.handwritten,
            reason: String::new(),
            key_id: String::new(),
            algorithm: String::new(),
        },
        requested_type,
        refund,
        expected,
    })
}

fn refund_reference(refund: &pb::RefundReference, v: &mut Violations) -> Option<RefundRequest> {
    use pb::refund_reference::Original as O;
    let original = match &refund.original {
        Some(O::ReceiptId(id)) if !id.is_empty() => Original::Id(id.clone()),
        Some(O::ReceiptReference(r)) if !r.is_empty() => Original::Reference(r.clone()),
        _ => {
            v.add(
                "refund_of.original",
                "name the original by receipt_id or receipt_reference",
            );
            return None;
        }
    };
    let mut lines = Vec::new();
    let mut named = BTreeSet::new();
    for (i, line) in refund.lines.iter().enumerate() {
        if line.position == 0 {
            v.add(
                format!("refund_of.lines[{i}].position"),
                "is required (the original's line number, from 1)",
            );
        } else if !named.insert(line.position) {
            v.add(
                format!("refund_of.lines[{i}].position"),
                format!("line {} is named more than once", line.position),
            );
        }
        let field = format!("refund_of.lines[{i}].quantity");
        if let Some(quantity) = v.parsed(&field, &line.quantity, Quantity::parse) {
            if quantity.is_positive() {
                lines.push(RefundLine {
                    position: line.position,
                    quantity,
                });
            } else {
                v.add(field, "must be greater than 0");
            }
        }
    }
    Some(RefundRequest { original, lines })
}

fn charge_item(
    item: &pb::ChargeItem,
    index: usize,
    merchant_tin: &str,
    policy: &Policy,
    v: &mut Violations,
) -> Option<d::Item> {
    let field = |name: &str| format!("items[{index}].{name}");
    v.text(&field("name"), &item.name, 512, true);
    v.text(&field("measure_unit"), &item.measure_unit, 16, false);
    v.text(&field("lot_no"), &item.lot_no, 64, false);
    v.text(&field("product_number"), &item.product_number, 128, false);
    v.text(&field("tax_product_code"), &item.tax_product_code, 8, false);
    v.digits(
        &field("classification_code"),
        &item.classification_code,
        1..=16,
    );
    if item.stock_qr.len() > 100 || item.stock_qr.iter().any(|q| q.len() > 512) {
        v.add(
            field("stock_qr"),
            "at most 100 codes of at most 512 characters",
        );
    }
    let bar_code_type = if item.bar_code.is_empty() {
        Some(d::BarCodeType::Undefined)
    } else {
        v.digits(&field("bar_code"), &item.bar_code, 1..=64);
        let kind = enum_field::<d::BarCodeType, pb::BarCodeType>(item.bar_code_type);
        if kind.is_none() {
            v.add(field("bar_code_type"), "is required when bar_code is set");
        }
        kind
    };

    let quantity = v.parsed(&field("quantity"), &item.quantity, Quantity::parse);
    if quantity.is_some_and(|q| !q.is_positive()) {
        v.add(
            field("quantity"),
            "must be greater than 0 (refunds are their own kind)",
        );
    }
    let unit_price = v.parsed(&field("unit_price"), &item.unit_price, Money::parse);
    if unit_price.is_some_and(Money::is_negative) {
        v.add(field("unit_price"), "must not be negative");
    }

    let tax_type = enum_field::<d::TaxType, pb::TaxType>(item.tax_type);
    match pb::TaxType::try_from(item.tax_type) {
        Ok(pb::TaxType::Unspecified) => v.add(
            field("tax_type"),
            "is required: VAT_ABLE, VAT_FREE, VAT_ZERO or NO_VAT",
        ),
        Err(_) => v.add(
            field("tax_type"),
            format!("{} is not a tax type", item.tax_type),
        ),
        Ok(_) => {}
    }
    let vat_rate = match tax_type {
        Some(d::TaxType::VatAble) if item.vat_rate.is_empty() => Some(policy.vat_rate),
        Some(d::TaxType::VatAble) => v.parsed(&field("vat_rate"), &item.vat_rate, Rate::parse),
        Some(_) => {
            if !item.vat_rate.is_empty() && Rate::parse(&item.vat_rate) != Ok(Rate::ZERO) {
                v.add(
                    field("vat_rate"),
                    "must be empty or 0 for items without VAT",
                );
            }
            Some(Rate::ZERO)
        }
        None => None,
    };
    let vat_rate = vat_rate.filter(|r| {
        let ok = r.is_percentage();
        if !ok {
            v.add(field("vat_rate"), "must be between 0 and 100");
        }
        ok
    });
    let city_tax_rate = if item.city_tax_applies {
        if !policy.city_tax_payer(merchant_tin) {
            v.add(
                field("city_tax_applies"),
                format!("merchant {merchant_tin} is not registered as a city-tax payer"),
            );
            None
        } else if item.city_tax_rate.is_empty() {
            Some(policy.city_tax_rate)
        } else {
            v.parsed(&field("city_tax_rate"), &item.city_tax_rate, Rate::parse)
                .filter(|r| {
                    let ok = r.is_percentage();
                    if !ok {
                        v.add(field("city_tax_rate"), "must be between 0 and 100");
                    }
                    ok
                })
        }
    } else {
        if !item.city_tax_rate.is_empty() {
            v.add(
                field("city_tax_rate"),
                "is only for items with city_tax_applies",
            );
        }
        Some(Rate::ZERO)
    };

    let (quantity, unit_price, tax_type, vat_rate, city_tax_rate, bar_code_type) = (
        quantity?,
        unit_price?,
        tax_type?,
        vat_rate?,
        city_tax_rate?,
        bar_code_type?,
    );
    if !quantity.is_positive() || unit_price.is_negative() {
        return None;
    }
    let priced = d::Item {
        position: u32::try_from(index + 1).unwrap_or(u32::MAX),
        name: item.name.clone(),
        bar_code: item.bar_code.clone(),
        bar_code_type,
        classification_code: item.classification_code.clone(),
        tax_type,
        tax_product_code: item.tax_product_code.clone(),
        measure_unit: item.measure_unit.clone(),
        quantity,
        unit_price,
        vat_rate,
        city_tax_rate,
        lot_no: item.lot_no.clone(),
        stock_qr: item.stock_qr.clone(),
        product_number: item.product_number.clone(),
        charge_item_case: item.charge_item_case,
        total_amount: Money::ZERO,
        total_vat: Money::ZERO,
        total_city_tax: Money::ZERO,
        net_amount: Money::ZERO,
    }
    .priced();
    if priced.is_none() {
        v.add(field("quantity"), "quantity × unit_price is too large");
    }
    priced
}

fn pay_item(payment: &pb::PayItem, index: usize, v: &mut Violations) -> Option<d::Payment> {
    let field = |name: &str| format!("payments[{index}].{name}");
    let method = enum_field::<d::PaymentMethod, pb::PaymentMethod>(payment.method);
    match pb::PaymentMethod::try_from(payment.method) {
        Ok(pb::PaymentMethod::Unspecified) => v.add(field("method"), "is required"),
        Err(_) => v.add(
            field("method"),
            format!("{} is not a payment method", payment.method),
        ),
        Ok(_) => {}
    }
    let amount = v.parsed(&field("amount"), &payment.amount, Money::parse);
    if amount.is_some_and(|a| !a.is_positive()) {
        v.add(
            field("amount"),
            "must be greater than 0 (CHANGE counts negative by its method)",
        );
    }
    v.text(&field("description"), &payment.description, 256, false);
    v.text(&field("reference"), &payment.reference, 128, false);
    v.text(&field("rrn"), &payment.rrn, 32, false);
    v.text(
        &field("card_terminal_id"),
        &payment.card_terminal_id,
        32,
        false,
    );
    v.text(&field("bank_code"), &payment.bank_code, 16, false);
    let masked = &payment.masked_card_number;
    if masked.len() >= 12 && masked.bytes().all(|b| b.is_ascii_digit()) {
        v.add(
            field("masked_card_number"),
            "looks like a full card number: send it masked, e.g. 123456XXXXXX7890",
        );
    } else {
        v.text(&field("masked_card_number"), masked, 32, false);
    }
    if payment.data.len() > 32
        || payment
            .data
            .iter()
            .any(|(k, val)| k.chars().count() > 256 || val.chars().count() > 256)
    {
        v.add(
            field("data"),
            "at most 32 entries, keys and values at most 256 characters",
        );
    }
    let (method, amount) = (method?, amount?);
    if !amount.is_positive() {
        return None;
    }
    Some(d::Payment {
        method,
        amount,
        description: payment.description.clone(),
        pay_item_case: payment.pay_item_case,
        reference: payment.reference.clone(),
        rrn: payment.rrn.clone(),
        card_terminal_id: payment.card_terminal_id.clone(),
        masked_card_number: payment.masked_card_number.clone(),
        bank_code: payment.bank_code.clone(),
        easy_register: payment.easy_register,
        data: payment.data.clone(),
    })
}
