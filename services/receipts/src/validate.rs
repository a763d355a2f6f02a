//! Turning requests into validated receipts: every problem named by its field path, all of them
//! at once, before anything is written.

use chrono::{DateTime, Duration, Utc};
use fiscus_domain::tax::line_amounts;
use fiscus_domain::{DecimalError, Money, Quantity, Rate};
use fiscus_kit::Violation;
use fiscus_kit::config::ReceiptsConfig;
use fiscus_proto::v1 as pb;

use crate::document::{Item, Named, Payment};

/// The rules a receipt is checked against, from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub item_limit: usize,
    pub vat_rate: Rate,
    pub city_tax_rate: Rate,
    config: ReceiptsConfig,
}

impl Policy {
    pub fn from_config(config: &ReceiptsConfig) -> anyhow::Result<Self> {
        let rate = |key: &str, value: &str| {
            Rate::parse(value).map_err(|e| anyhow::anyhow!("configuration: {key}: {e}"))
        };
        Ok(Self {
            item_limit: config.item_limit,
            vat_rate: rate("receipts.vat_rate", &config.vat_rate)?,
            city_tax_rate: rate("receipts.city_tax_rate", &config.city_tax_rate)?,
            config: config.clone(),
        })
    }

    pub fn currency(&self, merchant_tin: &str) -> &str {
        self.config
            .merchant(merchant_tin)
            .and_then(|m| m.currency.as_deref())
            .unwrap_or(&self.config.currency)
    }

    pub fn city_tax_payer(&self, merchant_tin: &str) -> bool {
        self.config
            .merchant(merchant_tin)
            .is_some_and(|m| m.city_tax_payer)
    }

    pub fn merchant_name(&self, merchant_tin: &str) -> String {
        self.config
            .merchant(merchant_tin)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("Merchant {merchant_tin}"))
    }

    pub fn business_day_offset(&self) -> chrono::FixedOffset {
        chrono::FixedOffset::east_opt(self.config.business_day_utc_offset_minutes * 60)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("UTC is a valid offset"))
    }
}

/// A terminal id whose parts are known to be well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TerminalId {
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
}

impl TerminalId {
    /// The terminal of a stored or signed receipt, whose parts were checked when it was made.
    pub fn of(merchant_tin: &str, branch_no: &str, pos_no: &str) -> Self {
        Self {
            merchant_tin: merchant_tin.to_owned(),
            branch_no: branch_no.to_owned(),
            pos_no: pos_no.to_owned(),
        }
    }
}

impl std::fmt::Display for TerminalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.merchant_tin, self.branch_no, self.pos_no
        )
    }
}

/// Collects violations while a request is read.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation::new(field, description));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }

    /// Text of at most `max` characters; required text must not be blank.
    pub fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
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

    /// An identifier: 1 to `max` ASCII letters, digits, `-` or `_`.
    pub fn identifier(&mut self, field: &str, value: &str, max: usize) -> bool {
        if value.is_empty() {
            self.add(field, "is required");
            false
        } else if value.len() > max
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.add(
                field,
                format!("must be 1 to {max} ASCII letters, digits, '-' or '_'"),
            );
            false
        } else {
            true
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
    let Some(terminal) = terminal else {
        v.add(field, "is required");
        return None;
    };
    let tin = v.identifier(&format!("{field}.merchant_tin"), &terminal.merchant_tin, 32);
    let branch = v.identifier(&format!("{field}.branch_no"), &terminal.branch_no, 16);
    let pos = v.identifier(&format!("{field}.pos_no"), &terminal.pos_no, 16);
    (tin && branch && pos).then(|| TerminalId {
        merchant_tin: terminal.merchant_tin.clone(),
        branch_no: terminal.branch_no.clone(),
        pos_no: terminal.pos_no.clone(),
    })
}

/// The operation id: from the field, else from the `x-operation-id` metadata; a UUID.
pub fn operation_id(field: &str, metadata: Option<&str>, v: &mut Violations) -> String {
    fiscus_kit::idempotency::operation_id(field, metadata).unwrap_or_else(|violation| {
        v.0.push(violation);
        String::new()
    })
}

/// Where a refund's original is and what of it is refunded.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub original: Original,
    /// (position, quantity); empty = everything not refunded yet.
    pub lines: Vec<(u32, Quantity)>,
}

#[derive(Debug, Clone)]
pub enum Original {
    Id(String),
    Reference(String),
}

/// A SignReceipt request, checked field by field; items are computed (tax per item).
#[derive(Debug, Clone)]
pub struct Draft {
    pub terminal: TerminalId,
    pub kind: pb::ReceiptKind,
    pub receipt_type: pb::ReceiptType,
    pub reference: String,
    pub moment: DateTime<Utc>,
    pub currency: String,
    pub items: Vec<Item>,
    pub payments: Vec<Payment>,
    pub payments_total: Money,
    pub refund: Option<RefundRequest>,
    pub expected: [(Option<Money>, &'static str); 3],
    /// The request itself, for the fields copied as they are.
    pub request: pb::SignReceiptRequest,
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

    let kind = pb::ReceiptKind::try_from(request.kind).unwrap_or_default();
    match kind {
        pb::ReceiptKind::Unspecified => v.add("kind", "is required: SALE, REFUND or ZERO"),
        pb::ReceiptKind::Cancellation => v.add(
            "kind",
            "CANCELLATION is made by CancelReceipt, not SignReceipt",
        ),
        _ => {}
    }
    let receipt_type = pb::ReceiptType::try_from(request.r#type).unwrap_or_default();
    if request.r#type != 0 && pb::ReceiptType::try_from(request.r#type).is_err() {
        v.add("type", format!("{} is not a receipt type", request.r#type));
    } else if kind == pb::ReceiptKind::Sale && receipt_type == pb::ReceiptType::Unspecified {
        v.add(
            "type",
            "is required for a SALE: B2C_RECEIPT, B2B_RECEIPT, B2C_INVOICE or B2B_INVOICE",
        );
    }
    let b2b = matches!(
        receipt_type,
        pb::ReceiptType::B2bReceipt | pb::ReceiptType::B2bInvoice
    );
    if b2b && request.customer_tin.is_empty() {
        v.add("customer_tin", "is required for B2B receipts and invoices");
    } else if !b2b && !request.customer_tin.is_empty() && kind == pb::ReceiptKind::Sale {
        v.add("customer_tin", "is only for B2B receipts and invoices");
    }
    v.digits("customer_tin", &request.customer_tin, 7..=14);
    if !request.consumer_no.is_empty() && receipt_type != pb::ReceiptType::B2cReceipt {
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
            Some(at) => at,
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

    // Items.
    let items = match kind {
        pb::ReceiptKind::Sale if request.items.is_empty() => {
            v.add("items", "a SALE needs at least one item");
            Vec::new()
        }
        pb::ReceiptKind::Sale if request.items.len() > policy.item_limit => {
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
        pb::ReceiptKind::Sale => request
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

    // Payments.
    if kind == pb::ReceiptKind::Zero && !request.payments.is_empty() {
        v.add("payments", "must be empty for a ZERO receipt");
    } else if kind != pb::ReceiptKind::Zero && request.payments.is_empty() {
        v.add("payments", "at least one payment is required");
    }
    if request.payments.len() > 100 {
        v.add("payments", "more than 100 payments");
    }
    let mut payments_total = Money::ZERO;
    let payments = request
        .payments
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let payment = pay_item(p, i, v)?;
            let amount = Money::parse(&payment.amount).ok()?;
            let signed = if payment.method == pb::PaymentMethod::Change.name() {
                Money::from_minor(-amount.minor())
            } else {
                amount
            };
            payments_total = payments_total.checked_add(signed)?;
            Some(payment)
        })
        .collect();

    // Refund reference.
    let refund = match (kind, &request.refund_of) {
        (pb::ReceiptKind::Refund, None) => {
            v.add("refund_of", "is required for a REFUND");
            None
        }
        (pb::ReceiptKind::Refund, Some(refund)) => refund_reference(refund, v),
        (_, Some(_)) => {
            v.add("refund_of", "is only for a REFUND");
            None
        }
        (_, None) => None,
    };

    let expected = [
        (
            expected_money(&request.expected_total_amount, "expected_total_amount", v),
            "expected_total_amount",
        ),
        (
            expected_money(&request.expected_total_vat, "expected_total_vat", v),
            "expected_total_vat",
        ),
        (
            expected_money(
                &request.expected_total_city_tax,
                "expected_total_city_tax",
                v,
            ),
            "expected_total_city_tax",
        ),
    ];

    Some(Draft {
        terminal: terminal?,
        kind,
        receipt_type,
        reference: request.receipt_reference.clone(),
        moment,
        currency,
        items,
        payments,
        payments_total,
        refund,
        expected,
        request: request.clone(),
    })
}

fn expected_money(value: &str, field: &str, v: &mut Violations) -> Option<Money> {
    if value.is_empty() {
        None
    } else {
        v.parsed(field, value, Money::parse)
    }
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
    for (i, line) in refund.lines.iter().enumerate() {
        if line.position == 0 {
            v.add(
                format!("refund_of.lines[{i}].position"),
                "is required (the original's line number, from 1)",
            );
        }
        let field = format!("refund_of.lines[{i}].quantity");
        if let Some(quantity) = v.parsed(&field, &line.quantity, Quantity::parse) {
            if quantity.is_positive() {
                lines.push((line.position, quantity));
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
) -> Option<Item> {
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
    let bar_code_type = pb::BarCodeType::try_from(item.bar_code_type).unwrap_or_default();
    if !item.bar_code.is_empty() {
        v.digits(&field("bar_code"), &item.bar_code, 1..=64);
        if bar_code_type == pb::BarCodeType::Unspecified {
            v.add(field("bar_code_type"), "is required when bar_code is set");
        }
    }

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

    let tax_type = match pb::TaxType::try_from(item.tax_type) {
        Ok(pb::TaxType::Unspecified) => {
            v.add(
                field("tax_type"),
                "is required: VAT_ABLE, VAT_FREE, VAT_ZERO or NO_VAT",
            );
            None
        }
        Ok(t) => Some(t),
        Err(_) => {
            v.add(
                field("tax_type"),
                format!("{} is not a tax type", item.tax_type),
            );
            None
        }
    };
    let vat_rate = match tax_type {
        Some(pb::TaxType::VatAble) if item.vat_rate.is_empty() => Some(policy.vat_rate),
        Some(pb::TaxType::VatAble) => v.parsed(&field("vat_rate"), &item.vat_rate, Rate::parse),
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
    if vat_rate.is_some_and(|r| r.hundredths() < 0 || r.hundredths() > 10_000) {
        v.add(field("vat_rate"), "must be between 0 and 100");
    }
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
                    let ok = (0..=10_000).contains(&r.hundredths());
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

    let (quantity, unit_price, tax_type, vat_rate, city_tax_rate) =
        (quantity?, unit_price?, tax_type?, vat_rate?, city_tax_rate?);
    if !quantity.is_positive() || unit_price.is_negative() {
        return None;
    }
    let Some(amounts) = line_amounts(quantity, unit_price, vat_rate, city_tax_rate) else {
        v.add(field("quantity"), "quantity × unit_price is too large");
        return None;
    };
    Some(Item {
        position: u32::try_from(index + 1).unwrap_or(u32::MAX),
        name: item.name.clone(),
        bar_code: item.bar_code.clone(),
        bar_code_type: if item.bar_code.is_empty() {
            pb::BarCodeType::Undefined.name().to_owned()
        } else {
            bar_code_type.name().to_owned()
        },
        classification_code: item.classification_code.clone(),
        tax_type: tax_type.name().to_owned(),
        tax_product_code: item.tax_product_code.clone(),
        measure_unit: item.measure_unit.clone(),
        quantity: quantity.to_string(),
        unit_price: unit_price.to_string(),
        vat_rate: vat_rate.to_string(),
        city_tax_rate: city_tax_rate.to_string(),
        lot_no: item.lot_no.clone(),
        stock_qr: item.stock_qr.clone(),
        product_number: item.product_number.clone(),
        charge_item_case: item.charge_item_case,
        total_amount: amounts.total.to_string(),
        total_vat: amounts.vat.to_string(),
        total_city_tax: amounts.city_tax.to_string(),
        net_amount: amounts.net.to_string(),
    })
}

fn pay_item(payment: &pb::PayItem, index: usize, v: &mut Violations) -> Option<Payment> {
    let field = |name: &str| format!("payments[{index}].{name}");
    let method = match pb::PaymentMethod::try_from(payment.method) {
        Ok(pb::PaymentMethod::Unspecified) => {
            v.add(field("method"), "is required");
            None
        }
        Ok(m) => Some(m),
        Err(_) => {
            v.add(
                field("method"),
                format!("{} is not a payment method", payment.method),
            );
            None
        }
    };
    let amount = v.parsed(&field("amount"), &payment.amount, Money::parse);
    if amount.is_some_and(|a| a.minor() <= 0) {
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
    if amount.minor() <= 0 {
        return None;
    }
    Some(Payment {
        method: method.name().to_owned(),
        amount: amount.to_string(),
        description: payment.description.clone(),
        pay_item_case: payment.pay_item_case,
        reference: payment.reference.clone(),
        rrn: payment.rrn.clone(),
        card_terminal_id: payment.card_terminal_id.clone(),
        masked_card_number: payment.masked_card_number.clone(),
        bank_code: payment.bank_code.clone(),
        easy_register: payment.easy_register,
        data: payment.data.clone().into_iter().collect(),
    })
}

/// Totals of computed items.
pub fn totals(items: &[Item]) -> (Money, Money, Money) {
    let sum = |f: fn(&Item) -> &str| -> Money {
        items.iter().filter_map(|i| Money::parse(f(i)).ok()).sum()
    };
    (
        sum(|i| &i.total_amount),
        sum(|i| &i.total_vat),
        sum(|i| &i.total_city_tax),
    )
}

/// Payments must cover the total exactly; cross-checks must agree.
pub fn check_totals(draft: &Draft, v: &mut Violations) -> (Money, Money, Money) {
    let (total, vat, city_tax) = totals(&draft.items);
    if draft.kind != pb::ReceiptKind::Zero && draft.payments_total != total {
        v.add(
            "payments",
            format!(
                "sum to {} but the receipt total is {total} (change is a CHANGE pay item)",
                draft.payments_total
            ),
        );
    }
    for ((expected, field), actual) in draft.expected.iter().zip([total, vat, city_tax]) {
        if let Some(expected) = expected
            && *expected != actual
        {
            v.add(
                *field,
                format!("is {expected} but fiscus computes {actual}"),
            );
        }
    }
    (total, vat, city_tax)
}
