//! The JSON bodies of POSAPI 3.0, field for field as the official OpenAPI document spells them.
//!
//! Requests are written exactly: amounts and quantities are JSON numbers written from exact
//! decimals ([`WireMoney`], [`WireQuantity`]), optional values the document defines are written
//! as `null` when absent (as its own examples do), and `data` objects only when they carry
//! something. Answers are read tolerantly, the way the document and the live service disagree
//! (`qrData` or `qrDate`, `easy` a boolean or a string, numbers as strings, a single object where
//! an array is declared).

use fiscus_domain::{BarCodeType, ReceiptType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::wire::{WireMoney, WireQuantity};

/// The VAT treatment of a sub-receipt (`taxType`). The document's JSON examples spell `NO_VAT`
/// as `NOT_VAT`; both are read, `NO_VAT` is written (what the live service accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaxType {
    #[serde(rename = "VAT_ABLE")]
    VatAble,
    #[serde(rename = "VAT_FREE")]
    VatFree,
    #[serde(rename = "VAT_ZERO")]
    VatZero,
    #[serde(rename = "NO_VAT", alias = "NOT_VAT")]
    NoVat,
}

impl TaxType {
    pub const ALL: [TaxType; 4] = [
        TaxType::VatAble,
        TaxType::VatFree,
        TaxType::VatZero,
        TaxType::NoVat,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaxType::VatAble => "VAT_ABLE",
            TaxType::VatFree => "VAT_FREE",
            TaxType::VatZero => "VAT_ZERO",
            TaxType::NoVat => "NO_VAT",
        }
    }

    /// Reads both spellings of `NO_VAT`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "VAT_ABLE" => Some(TaxType::VatAble),
            "VAT_FREE" => Some(TaxType::VatFree),
            "VAT_ZERO" => Some(TaxType::VatZero),
            "NO_VAT" | "NOT_VAT" => Some(TaxType::NoVat),
            _ => None,
        }
    }
}

impl From<fiscus_domain::TaxType> for TaxType {
    fn from(tax_type: fiscus_domain::TaxType) -> Self {
        match tax_type {
            fiscus_domain::TaxType::VatAble => TaxType::VatAble,
            fiscus_domain::TaxType::VatFree => TaxType::VatFree,
            fiscus_domain::TaxType::VatZero => TaxType::VatZero,
            fiscus_domain::TaxType::NoVat => TaxType::NoVat,
        }
    }
}

/// `payments[].code`: the document knows these two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentCode {
    /// Бэлнээр: in cash.
    #[serde(rename = "CASH")]
    Cash,
    /// Төлбөрийн карт: by payment card (with the card transaction in `data`).
    #[serde(rename = "PAYMENT_CARD")]
    PaymentCard,
}

/// `payments[].status`. fiscus sends `PAID`; the others belong to the document's payment
/// exchange service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentStatus {
    #[serde(rename = "PAID")]
    Paid,
    #[serde(rename = "PAY")]
    Pay,
    #[serde(rename = "REVERSED")]
    Reversed,
    #[serde(rename = "ERROR")]
    Error,
}

/// The body of `POST /rest/receipt`: a batch receipt ("багц баримт") of sub-receipts, one per
/// tax type (and merchant), and its payments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRequest {
    /// The merchant's own 3-digit branch number (`001`).
    pub branch_no: String,
    /// Every tax included.
    pub total_amount: WireMoney,
    #[serde(rename = "totalVAT", default)]
    pub total_vat: Option<WireMoney>,
    #[serde(default)]
    pub total_city_tax: Option<WireMoney>,
    /// Where the receipt is issued: 4 digits, branch code + sub-branch code of `getBranchInfo`.
    #[serde(default)]
    pub district_code: Option<String>,
    pub merchant_tin: String,
    pub pos_no: String,
    /// The buyer's TIN, for `B2B_RECEIPT` and `B2B_INVOICE` only.
    #[serde(default)]
    pub customer_tin: Option<String>,
    /// The buyer's e-barimt registration number, for `B2C_RECEIPT` only.
    #[serde(default)]
    pub consumer_no: Option<String>,
    #[serde(rename = "type")]
    pub receipt_type: ReceiptType,
    /// The ДДТД of the receipt this one corrects (a partial refund sends what remains).
    #[serde(default)]
    pub inactive_id: Option<String>,
    #[serde(default)]
    pub report_month: Option<String>,
    /// Unique per POS and day: what makes the ДДТД unique, and a lost answer recoverable.
    pub bill_id_suffix: String,
    #[serde(default)]
    pub invoice_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    pub receipts: Vec<SubReceipt>,
    #[serde(default)]
    pub payments: Vec<Payment>,
}

/// One sub-receipt: the items of one tax type of one merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubReceipt {
    pub total_amount: WireMoney,
    pub tax_type: TaxType,
    pub merchant_tin: String,
    /// Not in the schema, though every example sends it (as `null`); written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tin: Option<String>,
    #[serde(rename = "totalVAT", default)]
    pub total_vat: Option<WireMoney>,
    #[serde(default)]
    pub total_city_tax: Option<WireMoney>,
    #[serde(default)]
    pub bank_account_no: Option<String>,
    #[serde(rename = "iBan", default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub invoice_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    pub items: Vec<ReceiptItem>,
}

/// One item of a sub-receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptItem {
    pub name: String,
    /// `null` only with `barCodeType: UNDEFINED`.
    #[serde(default)]
    pub bar_code: Option<String>,
    #[serde(default)]
    pub bar_code_type: Option<BarCodeType>,
    #[serde(default)]
    pub classification_code: Option<String>,
    /// For `VAT_FREE`, `VAT_ZERO` and `NO_VAT` items (`getProductTaxCode`); `null` otherwise.
    #[serde(default)]
    pub tax_product_code: Option<String>,
    pub measure_unit: String,
    pub qty: WireQuantity,
    /// Every tax included; `totalAmount` = `qty` × `unitPrice`.
    pub unit_price: WireMoney,
    #[serde(rename = "totalVAT", default)]
    pub total_vat: Option<WireMoney>,
    #[serde(default)]
    pub total_city_tax: Option<WireMoney>,
    pub total_amount: WireMoney,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ItemData>,
}

/// An item's `data`: a medicine's lot number, excise stamps' QR data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemData {
    /// Pharmacies must send each medicine's lot number.
    #[serde(rename = "lotNo", default, skip_serializing_if = "Option::is_none")]
    pub lot_no: Option<String>,
    #[serde(rename = "stockQR", default, skip_serializing_if = "Option::is_none")]
    pub stock_qr: Option<Vec<String>>,
}

/// One payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub code: PaymentCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_code: Option<String>,
    pub status: PaymentStatus,
    pub paid_amount: WireMoney,
    /// The card transaction, for `PAYMENT_CARD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CardData>,
}

/// A `PAYMENT_CARD` payment's card transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardData {
    #[serde(rename = "terminalID")]
    pub terminal_id: String,
    pub rrn: String,
    pub masked_card_number: String,
    /// The buyer asked for "easy registration": the card's owner gets the receipt confirmed.
    pub easy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
}

/// `status` of the `POST /rest/receipt` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptStatus {
    /// The receipt was registered.
    #[serde(rename = "SUCCESS")]
    Success,
    /// It was not: `message` says why.
    #[serde(rename = "ERROR")]
    Error,
    /// The payment information is incomplete.
    #[serde(rename = "PAYMENT")]
    Payment,
    /// Anything else the service may answer.
    #[serde(other)]
    Unknown,
}

/// The answer of `POST /rest/receipt`. Refusals carry only `status` and `message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAnswer {
    /// The batch receipt's ДДТД, 33 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(
        default,
        deserialize_with = "tolerant::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub pos_id: Option<u64>,
    pub status: ReceiptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For the printed receipt only (the document forbids keeping it otherwise). The document
    /// misspells it `qrDate`; both are read.
    #[serde(default, alias = "qrDate", skip_serializing_if = "Option::is_none")]
    pub qr_data: Option<String>,
    /// For the printed receipt only; issued for B2C receipts, not for corrections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lottery: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss`, Ulaanbaatar time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Declared a string, read as a boolean by the SDKs: both are read, a boolean is written.
    #[serde(
        default,
        deserialize_with = "tolerant::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub easy: Option<bool>,
    #[serde(
        default,
        deserialize_with = "tolerant::vec_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub receipts: Vec<SubReceiptAnswer>,
}

/// A sub-receipt of an answer: its own ДДТД and the bank account it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubReceiptAnswer {
    pub id: String,
    #[serde(default, deserialize_with = "tolerant::opt_u64")]
    pub bank_account_id: Option<u64>,
}

/// The body of `DELETE /rest/receipt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The ДДТД.
    pub id: String,
    /// The receipt's `date` as answered, `yyyy-MM-dd HH:mm:ss`.
    pub date: String,
}

/// `GET /rest/info`: the POSAPI installation, its operator and the merchants it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PosInfo {
    pub operator_name: String,
    #[serde(rename = "operatorTIN")]
    pub operator_tin: String,
    #[serde(deserialize_with = "tolerant::opt_u64")]
    pub pos_id: Option<u64>,
    pub pos_no: String,
    pub last_sent_date: String,
    #[serde(deserialize_with = "tolerant::opt_u64")]
    pub left_lotteries: Option<u64>,
    pub app_info: AppInfo,
    #[serde(deserialize_with = "tolerant::vec_or_null")]
    pub merchants: Vec<InfoMerchant>,
}

/// `appInfo` of [`PosInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppInfo {
    pub application_dir: String,
    pub current_dir: String,
    pub database: String,
    #[serde(rename = "database-host")]
    pub database_host: String,
    pub work_dir: String,
}

/// A merchant registered on the POSAPI installation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfoMerchant {
    pub name: String,
    pub tin: String,
    #[serde(deserialize_with = "tolerant::vec_or_null")]
    pub customers: Vec<InfoCustomer>,
}

/// A customer company of a merchant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InfoCustomer {
    pub name: String,
    pub tin: String,
    /// Declared a string (`"true"`); read as either, written as declared.
    #[serde(
        deserialize_with = "tolerant::bool",
        serialize_with = "tolerant::bool_as_string"
    )]
    pub vat_payer: bool,
}

/// `GET /rest/bankAccounts?tin=`: one active bank account of a merchant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BankAccount {
    #[serde(deserialize_with = "tolerant::u64")]
    pub id: u64,
    pub tin: String,
    pub bank_account_no: String,
    pub bank_account_name: String,
    #[serde(deserialize_with = "tolerant::u64")]
    pub bank_id: u64,
    #[serde(rename = "iBan")]
    pub iban: String,
    pub bank_name: String,
}

/// `GET /api/info/check/getInfo?tin=`: a taxpayer's registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaxpayerInfo {
    pub name: String,
    /// A VAT-exempt project: its items carry `taxProductCode` `304`.
    #[serde(deserialize_with = "tolerant::bool")]
    pub free_project: bool,
    /// Withholds city tax (Ulaanbaatar branches only).
    #[serde(deserialize_with = "tolerant::bool")]
    pub city_payer: bool,
    #[serde(deserialize_with = "tolerant::bool")]
    pub vat_payer: bool,
    #[serde(deserialize_with = "tolerant::bool")]
    pub found: bool,
    pub vatpayer_registered_date: String,
    #[serde(deserialize_with = "tolerant::bool")]
    pub is_government: bool,
}

/// `GET /api/info/check/getBranchInfo`: one tax office district.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Branch {
    pub branch_code: String,
    pub branch_name: String,
    pub sub_branch_code: String,
    pub sub_branch_name: String,
}

impl Branch {
    /// `districtCode` of a receipt issued there: branch code and sub-branch code (`0102`).
    pub fn district_code(&self) -> String {
        format!("{}{}", self.branch_code, self.sub_branch_code)
    }
}

/// `GET /api/receipt/receipt/getProductTaxCode`: a code for `taxProductCode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProductTaxCode {
    pub start_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    pub tax_product_code: String,
    pub tax_product_name: String,
    #[serde(deserialize_with = "tolerant::u64")]
    pub tax_type_code: u64,
    /// `VAT_FREE`, `VAT_ZERO` or `NO_VAT`.
    pub tax_type_name: String,
}

impl ProductTaxCode {
    pub fn tax_type(&self) -> Option<TaxType> {
        TaxType::parse(&self.tax_type_name)
    }
}

/// Readers for the places where the document and the live service disagree on a type.
pub(crate) mod tolerant {
    use super::*;
    use serde_json::Value;

    fn number_or_text(value: &Value) -> Option<u64> {
        match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A number, its text, or `null`.
    pub fn opt_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => number_or_text(&value)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("{value} is not a whole number"))),
        }
    }

    pub fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        opt_u64(deserializer).map(Option::unwrap_or_default)
    }

    /// `true`/`false` or their text, or `null`.
    pub fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => {
                Ok(Some(false))
            }
            Some(other) => Err(serde::de::Error::custom(format!(
                "{other} is not a boolean"
            ))),
        }
    }

    pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        opt_bool(deserializer).map(Option::unwrap_or_default)
    }

    pub fn bool_as_string<S: Serializer>(value: &bool, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if *value { "true" } else { "false" })
    }

    /// An array, or `null` for none.
    pub fn vec_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_the_ways_the_document_and_the_service_write_them() {
        let answer: ReceiptAnswer = serde_json::from_str(
            r#"{"id":"037900846788001002312345678901234","posId":"1234","status":"SUCCESS",
                "message":"","qrDate":"1234567890","lottery":"AB12345678",
                "date":"2026-11-23 18:15:00","easy":"true",
                "receipts":[{"id":"1","bankAccountId":"7"},{"id":"2","bankAccountId":null}]}"#,
        )
        .unwrap();
        assert_eq!(answer.qr_data.as_deref(), Some("1234567890"));
        assert_eq!(answer.pos_id, Some(1234));
        assert_eq!(answer.easy, Some(true));
        assert_eq!(answer.receipts[0].bank_account_id, Some(7));
        assert_eq!(answer.receipts[1].bank_account_id, None);

        let answer: ReceiptAnswer = serde_json::from_str(
            r#"{"status":"ERROR","message":"merchantTin: not registered","receipts":null,"easy":false}"#,
        )
        .unwrap();
        assert_eq!(answer.status, ReceiptStatus::Error);
        assert_eq!(answer.easy, Some(false));
        let odd: ReceiptAnswer = serde_json::from_str(r#"{"status":"QUEUED"}"#).unwrap();
        assert_eq!(odd.status, ReceiptStatus::Unknown);
    }

    #[test]
    fn both_spellings_of_no_vat_are_read_and_no_vat_is_written() {
        let read: Vec<TaxType> = serde_json::from_str(r#"["NOT_VAT","NO_VAT"]"#).unwrap();
        assert_eq!(read, [TaxType::NoVat, TaxType::NoVat]);
        assert_eq!(
            serde_json::to_string(&TaxType::NoVat).unwrap(),
            r#""NO_VAT""#
        );
    }
}
