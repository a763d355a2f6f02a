//! The canonical receipt document: the exact bytes that are hashed into the chain and signed.
//!
//! Canonical encoding (format `fiscus.receipt/1`): UTF-8 JSON with the fields of [`Document`] in
//! their declared order, no insignificant whitespace, every amount a decimal string with fixed
//! fraction digits (money 2, quantity 3, rates 2), times as RFC 3339 UTC with microseconds
//! (`2026-11-23T10:15:00.000000Z`), enums as their proto names without prefix (`B2C_RECEIPT`),
//! absent text as `""`. `hash_n = SHA-256(hash_{n-1} ‖ document_n)`; the signature is Ed25519
//! over `hash_n`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use fiscus_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::validate::TerminalId;

pub const FORMAT: &str = "fiscus.receipt/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub number: u64,
    pub kind: String,
    #[serde(rename = "type")]
    pub receipt_type: String,
    pub reference: String,
    pub moment: String,
    pub signed_at: String,
    pub currency: String,
    pub items: Vec<Item>,
    pub payments: Vec<Payment>,
    pub total_amount: String,
    pub total_vat: String,
    pub total_city_tax: String,
    pub customer_tin: String,
    pub consumer_no: String,
    pub customer_name: String,
    pub customer_address: String,
    pub district_code: String,
    pub bank_account: String,
    pub iban: String,
    pub invoice_id: String,
    pub report_month: String,
    pub cashier: String,
    pub original_receipt_id: String,
    pub receipt_case: u64,
    pub late_signed: bool,
    pub handwritten: bool,
    pub reason: String,
    pub key_id: String,
    pub algorithm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub position: u32,
    pub name: String,
    pub bar_code: String,
    pub bar_code_type: String,
    pub classification_code: String,
    pub tax_type: String,
    pub tax_product_code: String,
    pub measure_unit: String,
    pub quantity: String,
    pub unit_price: String,
    pub vat_rate: String,
    pub city_tax_rate: String,
    pub lot_no: String,
    pub stock_qr: Vec<String>,
    pub product_number: String,
    pub charge_item_case: u64,
    pub total_amount: String,
    pub total_vat: String,
    pub total_city_tax: String,
    pub net_amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub method: String,
    pub amount: String,
    pub description: String,
    pub pay_item_case: u64,
    pub reference: String,
    pub rrn: String,
    pub card_terminal_id: String,
    pub masked_card_number: String,
    pub bank_code: String,
    pub easy_register: bool,
    pub data: BTreeMap<String, String>,
}

impl Document {
    /// The terminal whose chain the document belongs to.
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }

    /// The canonical bytes.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and maps into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// RFC 3339 UTC with exactly six fraction digits.
pub fn timestamp_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn to_proto_timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The enum name a proto enum value is written as in the document (`RECEIPT_TYPE_B2C_RECEIPT` →
/// `B2C_RECEIPT`).
macro_rules! names {
    ($enum:ty, $prefix:literal) => {
        impl Named for $enum {
            fn name(self) -> &'static str {
                self.as_str_name().trim_start_matches($prefix)
            }
            fn from_name(name: &str) -> Self {
                <$enum>::from_str_name(&format!("{}{}", $prefix, name)).unwrap_or_default()
            }
        }
    };
}

pub trait Named: Sized {
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Self;
}

names!(pb::ReceiptKind, "RECEIPT_KIND_");
names!(pb::ReceiptType, "RECEIPT_TYPE_");
names!(pb::TaxType, "TAX_TYPE_");
names!(pb::PaymentMethod, "PAYMENT_METHOD_");
names!(pb::BarCodeType, "BAR_CODE_TYPE_");
names!(pb::FiscalState, "FISCAL_STATE_");

/// The mutable part of a stored receipt, kept beside its signed document.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    pub shift_id: String,
    pub fiscal_state: String,
    pub state_message: String,
    pub cancelled_by: Option<String>,
    pub cancelled_at_us: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub created_at_us: i64,
}

fn micros_to_time(us: i64) -> Option<prost_types::Timestamp> {
    DateTime::<Utc>::from_timestamp_micros(us).map(to_proto_timestamp)
}

impl Document {
    /// The API view of a stored receipt.
    pub fn to_proto(&self, standing: &Standing) -> pb::Receipt {
        let time = |text: &str| parse_timestamp(text).map(to_proto_timestamp);
        pb::Receipt {
            id: self.id.clone(),
            terminal: Some(pb::Terminal {
                merchant_tin: self.merchant_tin.clone(),
                branch_no: self.branch_no.clone(),
                pos_no: self.pos_no.clone(),
            }),
            shift_id: standing.shift_id.clone(),
            receipt_number: self.number,
            r#type: pb::ReceiptType::from_name(&self.receipt_type).into(),
            kind: pb::ReceiptKind::from_name(&self.kind).into(),
            receipt_reference: self.reference.clone(),
            receipt_moment: time(&self.moment),
            items: self.items.iter().map(Item::to_proto).collect(),
            payments: self.payments.iter().map(Payment::to_proto).collect(),
            total_amount: self.total_amount.clone(),
            total_vat: self.total_vat.clone(),
            total_city_tax: self.total_city_tax.clone(),
            currency: self.currency.clone(),
            customer_tin: self.customer_tin.clone(),
            consumer_no: self.consumer_no.clone(),
            customer_name: self.customer_name.clone(),
            customer_address: self.customer_address.clone(),
            district_code: self.district_code.clone(),
            bank_account: self.bank_account.clone(),
            iban: self.iban.clone(),
            invoice_id: self.invoice_id.clone(),
            report_month: self.report_month.clone(),
            original_receipt_id: self.original_receipt_id.clone(),
            cashier: self.cashier.clone(),
            receipt_case: self.receipt_case,
            late_signed: self.late_signed,
            handwritten: self.handwritten,
            fiscal_state: pb::FiscalState::from_name(&standing.fiscal_state).into(),
            state_message: standing.state_message.clone(),
            provider: pb::Provider::Builtin.into(),
            previous_hash: standing.previous_hash.clone(),
            hash: standing.hash.clone(),
            signature: standing.signature.clone(),
            key_id: self.key_id.clone(),
            signature_algorithm: pb::SignatureAlgorithm::Ed25519.into(),
            created_at: micros_to_time(standing.created_at_us),
            signed_at: time(&self.signed_at),
            cancelled_at: standing.cancelled_at_us.and_then(micros_to_time),
            cancellation_reason: standing.cancellation_reason.clone().unwrap_or_default(),
            cancelled_by_receipt_id: standing.cancelled_by.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl Item {
    fn to_proto(&self) -> pb::ChargeItem {
        pb::ChargeItem {
            position: self.position,
            name: self.name.clone(),
            bar_code: self.bar_code.clone(),
            bar_code_type: pb::BarCodeType::from_name(&self.bar_code_type).into(),
            classification_code: self.classification_code.clone(),
            tax_type: pb::TaxType::from_name(&self.tax_type).into(),
            tax_product_code: self.tax_product_code.clone(),
            measure_unit: self.measure_unit.clone(),
            quantity: self.quantity.clone(),
            unit_price: self.unit_price.clone(),
            vat_rate: self.vat_rate.clone(),
            city_tax_applies: self.city_tax_rate != "0.00",
            city_tax_rate: self.city_tax_rate.clone(),
            lot_no: self.lot_no.clone(),
            stock_qr: self.stock_qr.clone(),
            product_number: self.product_number.clone(),
            charge_item_case: self.charge_item_case,
            total_amount: self.total_amount.clone(),
            total_vat: self.total_vat.clone(),
            total_city_tax: self.total_city_tax.clone(),
            net_amount: self.net_amount.clone(),
        }
    }
}

impl Payment {
    fn to_proto(&self) -> pb::PayItem {
        pb::PayItem {
            method: pb::PaymentMethod::from_name(&self.method).into(),
            amount: self.amount.clone(),
            description: self.description.clone(),
            pay_item_case: self.pay_item_case,
            reference: self.reference.clone(),
            rrn: self.rrn.clone(),
            card_terminal_id: self.card_terminal_id.clone(),
            masked_card_number: self.masked_card_number.clone(),
            bank_code: self.bank_code.clone(),
            easy_register: self.easy_register,
            data: self.data.clone().into_iter().collect(),
        }
    }
}

/// The receipt as plain JSON (for `RenderReceipt` in JSON): the API view with names for enums.
pub fn receipt_json(receipt: &pb::Receipt) -> serde_json::Value {
    let terminal = receipt.terminal.clone().unwrap_or_default();
    serde_json::json!({
        "id": receipt.id,
        "merchant_tin": terminal.merchant_tin,
        "branch_no": terminal.branch_no,
        "pos_no": terminal.pos_no,
        "receipt_number": receipt.receipt_number,
        "kind": receipt.kind().name(),
        "type": receipt.r#type().name(),
        "fiscal_state": receipt.fiscal_state().name(),
        "receipt_reference": receipt.receipt_reference,
        "currency": receipt.currency,
        "items": receipt.items.iter().map(|i| serde_json::json!({
            "position": i.position,
            "name": i.name,
            "quantity": i.quantity,
            "unit_price": i.unit_price,
            "tax_type": i.tax_type().name(),
            "total_amount": i.total_amount,
            "total_vat": i.total_vat,
            "total_city_tax": i.total_city_tax,
        })).collect::<Vec<_>>(),
        "payments": receipt.payments.iter().map(|p| serde_json::json!({
            "method": p.method().name(),
            "amount": p.amount,
        })).collect::<Vec<_>>(),
        "total_amount": receipt.total_amount,
        "total_vat": receipt.total_vat,
        "total_city_tax": receipt.total_city_tax,
        "key_id": receipt.key_id,
        "hash": fiscus_domain::chain::hex(&receipt.hash),
    })
}
