//! The receipt as fiscus journals it: typed terminal, items, payments and totals, and its
//! canonical document — the exact bytes that are hashed into a terminal's chain and signed.
//!
//! Canonical encoding (format `fiscus.receipt/1`): UTF-8 JSON with the fields of [`Receipt`] in
//! their declared order, no insignificant whitespace, every amount a decimal string with fixed
//! fraction digits (money 2, quantity 3, rates 2), times as RFC 3339 UTC with microseconds
//! (`2026-11-23T10:15:00.000000Z`), enums by name (`B2C_RECEIPT`), absent text as `""`.
//! `hash_n = SHA-256(hash_{n-1} ‖ document_n)`; the signature is Ed25519 over `hash_n`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decimal::{Money, Overflow, Quantity, Rate};
use crate::tax::{self, LineAmounts};

/// Enums written by name in documents and columns, with every name known here.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name in documents and database columns (`SALE`, `B2C_RECEIPT`, …).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not a {}",
                        stringify!($name)
                    ))
                })
            }
        }
    };
}

named!(
    /// What a receipt does.
    ReceiptKind {
        Sale = "SALE",
        Refund = "REFUND",
        /// No items, no payments: probes and restores a provider's signing path.
        Zero = "ZERO",
        /// Written by a cancellation, never asked for directly.
        Cancellation = "CANCELLATION",
    }
);

named!(
    /// The fiscal document type (e-barimt `type`).
    ReceiptType {
        B2cReceipt = "B2C_RECEIPT",
        B2bReceipt = "B2B_RECEIPT",
        B2cInvoice = "B2C_INVOICE",
        B2bInvoice = "B2B_INVOICE",
    }
);

named!(
    /// The VAT treatment of an item (POSAPI `taxType`).
    TaxType {
        /// Standard VAT applies.
        VatAble = "VAT_ABLE",
        /// Exempt from VAT.
        VatFree = "VAT_FREE",
        /// Zero-rated (e.g. exports).
        VatZero = "VAT_ZERO",
        /// Outside the scope of VAT.
        NoVat = "NO_VAT",
    }
);

named!(
    /// How money was paid.
    PaymentMethod {
        Cash = "CASH",
        PaymentCard = "PAYMENT_CARD",
        BankTransfer = "BANK_TRANSFER",
        Qr = "QR",
        Voucher = "VOUCHER",
        /// Change handed back: counts against the payments.
        Change = "CHANGE",
        Other = "OTHER",
    }
);

named!(
    /// The kind of an item's bar code (e-barimt `barCodeType`).
    BarCodeType {
        Gs1 = "GS1",
        Isbn = "ISBN",
        Undefined = "UNDEFINED",
    }
);

named!(
    /// How far a receipt has got on its way to the fiscal authority.
    FiscalState {
        /// Signed by fiscus alone (the built-in provider). Final.
        LocalSigned = "LOCAL_SIGNED",
        Pending = "PENDING",
        Accepted = "ACCEPTED",
        Rejected = "REJECTED",
        /// Cancelled by a cancellation receipt. Final.
        Cancelled = "CANCELLED",
    }
);

impl TaxType {
    pub fn bears_vat(self) -> bool {
        matches!(self, Self::VatAble)
    }
}

impl ReceiptType {
    /// Sold to a business: the buyer's TIN is required.
    pub fn is_b2b(self) -> bool {
        matches!(self, Self::B2bReceipt | Self::B2bInvoice)
    }

    pub fn is_invoice(self) -> bool {
        matches!(self, Self::B2cInvoice | Self::B2bInvoice)
    }
}

/// One point of sale: one fiscal queue, one gap-free numbering, one hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId {
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
}

/// Which part of a terminal id is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {max} ASCII letters, digits, '-' or '_'")]
pub struct TerminalError {
    /// `merchant_tin`, `branch_no` or `pos_no`.
    pub part: &'static str,
    pub max: usize,
}

impl TerminalId {
    /// Longest merchant TIN, branch number and POS number.
    pub const LIMITS: [(&'static str, usize); 3] =
        [("merchant_tin", 32), ("branch_no", 16), ("pos_no", 16)];

    /// Checks each part: 1 to its limit of ASCII letters, digits, `-` or `_`. Every malformed
    /// part is named.
    pub fn parse(
        merchant_tin: &str,
        branch_no: &str,
        pos_no: &str,
    ) -> Result<Self, Vec<TerminalError>> {
        let problems: Vec<_> = Self::LIMITS
            .iter()
            .zip([merchant_tin, branch_no, pos_no])
            .filter(|((_, max), value)| !is_identifier(value, *max))
            .map(|((part, max), _)| TerminalError { part, max: *max })
            .collect();
        if problems.is_empty() {
            Ok(Self::of(merchant_tin, branch_no, pos_no))
        } else {
            Err(problems)
        }
    }

    /// A terminal id read back from the journal, whose parts were checked when it was written.
    pub fn of(merchant_tin: &str, branch_no: &str, pos_no: &str) -> Self {
        Self {
            merchant_tin: merchant_tin.to_owned(),
            branch_no: branch_no.to_owned(),
            pos_no: pos_no.to_owned(),
        }
    }
}

/// 1 to `max` ASCII letters, digits, `-` or `_`.
fn is_identifier(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.merchant_tin, self.branch_no, self.pos_no
        )
    }
}

/// The document format tag; any other value does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format;

impl Format {
    pub const NAME: &'static str = "fiscus.receipt/1";
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(Self::NAME)
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if text == Self::NAME {
            Ok(Format)
        } else {
            Err(serde::de::Error::custom(format!(
                "document format {text:?} is not {}",
                Self::NAME
            )))
        }
    }
}

/// Times in documents: RFC 3339 UTC with exactly six fraction digits.
pub mod instant {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn text(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn parse(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&text(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

/// A journaled receipt: what was signed, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub format: Format,
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    /// Its place in the terminal's chain, from 1.
    pub number: u64,
    pub kind: ReceiptKind,
    #[serde(rename = "type")]
    pub receipt_type: ReceiptType,
    pub reference: String,
    /// When the client says it was made.
    #[serde(with = "instant")]
    pub moment: DateTime<Utc>,
    #[serde(with = "instant")]
    pub signed_at: DateTime<Utc>,
    pub currency: String,
    pub items: Vec<Item>,
    pub payments: Vec<Payment>,
    pub total_amount: Money,
    pub total_vat: Money,
    pub total_city_tax: Money,
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
    /// The refunded or cancelled receipt, for a refund or a cancellation.
    pub original_receipt_id: String,
    pub receipt_case: u64,
    pub late_signed: bool,
    pub handwritten: bool,
    /// Why, for a cancellation.
    pub reason: String,
    pub key_id: String,
    pub algorithm: String,
}

/// One line of a receipt, with its computed amounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Line number, from 1; refunds refer to it.
    pub position: u32,
    pub name: String,
    pub bar_code: String,
    pub bar_code_type: BarCodeType,
    pub classification_code: String,
    pub tax_type: TaxType,
    pub tax_product_code: String,
    pub measure_unit: String,
    pub quantity: Quantity,
    /// Gross price of one unit, all taxes included.
    pub unit_price: Money,
    pub vat_rate: Rate,
    pub city_tax_rate: Rate,
    pub lot_no: String,
    pub stock_qr: Vec<String>,
    pub product_number: String,
    pub charge_item_case: u64,
    pub total_amount: Money,
    pub total_vat: Money,
    pub total_city_tax: Money,
    pub net_amount: Money,
}

/// One payment of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: PaymentMethod,
    /// Positive; CHANGE counts against the other payments by its method.
    pub amount: Money,
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

/// The three totals of a receipt: gross amount, and the VAT and city tax it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub amount: Money,
    pub vat: Money,
    pub city_tax: Money,
}

impl Totals {
    /// The exact sums of the items' amounts.
    pub fn of(items: &[Item]) -> Result<Self, Overflow> {
        Ok(Self {
            amount: Money::sum(items.iter().map(|i| &i.total_amount))?,
            vat: Money::sum(items.iter().map(|i| &i.total_vat))?,
            city_tax: Money::sum(items.iter().map(|i| &i.total_city_tax))?,
        })
    }
}

impl Item {
    /// The item's amounts.
    pub fn amounts(&self) -> LineAmounts {
        LineAmounts {
            total: self.total_amount,
            vat: self.total_vat,
            city_tax: self.total_city_tax,
            net: self.net_amount,
        }
    }

    /// Sets `quantity` and the amounts that go with it.
    pub fn set_amounts(&mut self, quantity: Quantity, amounts: LineAmounts) {
        self.quantity = quantity;
        self.total_amount = amounts.total;
        self.total_vat = amounts.vat;
        self.total_city_tax = amounts.city_tax;
        self.net_amount = amounts.net;
    }

    /// Prices the item at `quantity × unit_price` with its rates; `None` when that does not fit.
    pub fn priced(mut self) -> Option<Self> {
        let amounts = tax::line_amounts(
            self.quantity,
            self.unit_price,
            self.vat_rate,
            self.city_tax_rate,
        )?;
        self.set_amounts(self.quantity, amounts);
        Some(self)
    }
}

impl Payment {
    /// The amount as it counts towards the total: CHANGE counts negative.
    pub fn counted(&self) -> Option<Money> {
        match self.method {
            PaymentMethod::Change => self.amount.checked_neg(),
            _ => Some(self.amount),
        }
    }
}

/// What the payments come to, CHANGE deducted.
pub fn paid(payments: &[Payment]) -> Result<Money, Overflow> {
    payments.iter().try_fold(Money::ZERO, |sum, p| {
        p.counted().and_then(|m| sum.checked_add(m)).ok_or(Overflow)
    })
}

/// Payments that do not come to the receipt's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sum to {paid} but the receipt total is {total} (change is a CHANGE pay item)")]
pub struct Unpaid {
    pub paid: Money,
    pub total: Money,
}

/// A sale or refund must be paid exactly; a zero receipt has nothing to pay.
pub fn check_paid(kind: ReceiptKind, total: Money, payments: &[Payment]) -> Result<(), Unpaid> {
    if kind == ReceiptKind::Zero {
        return Ok(());
    }
    match paid(payments) {
        Ok(paid) if paid == total => Ok(()),
        Ok(paid) => Err(Unpaid { paid, total }),
        // Payments that do not even fit cannot be the total.
        Err(Overflow) => Err(Unpaid {
            paid: Money::from_minor(i64::MAX),
            total,
        }),
    }
}

impl Receipt {
    /// The terminal whose chain the receipt belongs to.
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }

    pub fn totals(&self) -> Totals {
        Totals {
            amount: self.total_amount,
            vat: self.total_vat,
            city_tax: self.total_city_tax,
        }
    }

    /// Sets the totals to those of the items.
    pub fn total_up(&mut self) -> Result<Totals, Overflow> {
        let totals = Totals::of(&self.items)?;
        self.total_amount = totals.amount;
        self.total_vat = totals.vat;
        self.total_city_tax = totals.city_tax;
        Ok(totals)
    }

    /// The canonical bytes.
    pub fn canonical(&self) -> Vec<u8> {
        // Strings, numbers, booleans and string maps always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored document; any field that is not what fiscus writes is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// When it was signed, as its document says, in the canonical text.
    pub fn signed_at_text(&self) -> String {
        self.signed_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn item(position: u32, quantity: &str, price: &str) -> Item {
        Item {
            position,
            name: "Талх".into(),
            bar_code: String::new(),
            bar_code_type: BarCodeType::Undefined,
            classification_code: "2349010".into(),
            tax_type: TaxType::VatAble,
            tax_product_code: String::new(),
            measure_unit: "ш".into(),
            quantity: Quantity::parse(quantity).unwrap(),
            unit_price: Money::parse(price).unwrap(),
            vat_rate: Rate::parse("10").unwrap(),
            city_tax_rate: Rate::parse("2").unwrap(),
            lot_no: String::new(),
            stock_qr: Vec::new(),
            product_number: String::new(),
            charge_item_case: 0,
            total_amount: Money::ZERO,
            total_vat: Money::ZERO,
            total_city_tax: Money::ZERO,
            net_amount: Money::ZERO,
        }
        .priced()
        .unwrap()
    }

    pub fn cash(amount: &str) -> Payment {
        Payment {
            method: PaymentMethod::Cash,
            amount: Money::parse(amount).unwrap(),
            description: String::new(),
            pay_item_case: 0,
            reference: String::new(),
            rrn: String::new(),
            card_terminal_id: String::new(),
            masked_card_number: String::new(),
            bank_code: String::new(),
            easy_register: false,
            data: BTreeMap::new(),
        }
    }

    pub fn sale(items: Vec<Item>) -> Receipt {
        let at = instant::parse("2026-11-23T10:15:00.000000Z").unwrap();
        let mut receipt = Receipt {
            format: Format,
            id: "0193a0a0-0000-7000-8000-000000000001".into(),
            merchant_tin: "37900846788".into(),
            branch_no: "001".into(),
            pos_no: "001".into(),
            number: 1,
            kind: ReceiptKind::Sale,
            receipt_type: ReceiptType::B2cReceipt,
            reference: "order-1".into(),
            moment: at,
            signed_at: at,
            currency: "MNT".into(),
            items,
            payments: Vec::new(),
            total_amount: Money::ZERO,
            total_vat: Money::ZERO,
            total_city_tax: Money::ZERO,
            customer_tin: String::new(),
            consumer_no: String::new(),
            customer_name: String::new(),
            customer_address: String::new(),
            district_code: String::new(),
            bank_account: String::new(),
            iban: String::new(),
            invoice_id: String::new(),
            report_month: String::new(),
            cashier: String::new(),
            original_receipt_id: String::new(),
            receipt_case: 0,
            late_signed: false,
            handwritten: false,
            reason: String::new(),
            key_id: "ed25519:00".into(),
            algorithm: "ED25519".into(),
        };
        let totals = receipt.total_up().unwrap();
        receipt.payments = vec![cash(&totals.amount.to_string())];
        receipt
    }

    #[test]
    fn the_canonical_document_is_the_format_journals_already_hold() {
        let receipt = sale(vec![item(1, "1", "5600")]);
        let text = String::from_utf8(receipt.canonical()).unwrap();
        // The exact bytes of a fiscus.receipt/1 document: chains written before this model
        // must keep verifying, and new receipts must hash the same way.
        assert_eq!(
            text,
            concat!(
                r#"{"format":"fiscus.receipt/1","id":"0193a0a0-0000-7000-8000-000000000001","#,
                r#""merchant_tin":"37900846788","branch_no":"001","pos_no":"001","number":1,"#,
                r#""kind":"SALE","type":"B2C_RECEIPT","reference":"order-1","#,
                r#""moment":"2026-11-23T10:15:00.000000Z","signed_at":"2026-11-23T10:15:00.000000Z","#,
                r#""currency":"MNT","items":[{"position":1,"name":"Талх","bar_code":"","#,
                r#""bar_code_type":"UNDEFINED","classification_code":"2349010","tax_type":"VAT_ABLE","#,
                r#""tax_product_code":"","measure_unit":"ш","quantity":"1.000","unit_price":"5600.00","#,
                r#""vat_rate":"10.00","city_tax_rate":"2.00","lot_no":"","stock_qr":[],"#,
                r#""product_number":"","charge_item_case":0,"total_amount":"5600.00","#,
                r#""total_vat":"500.00","total_city_tax":"100.00","net_amount":"5000.00"}],"#,
                r#""payments":[{"method":"CASH","amount":"5600.00","description":"","#,
                r#""pay_item_case":0,"reference":"","rrn":"","card_terminal_id":"","#,
                r#""masked_card_number":"","bank_code":"","easy_register":false,"data":{}}],"#,
                r#""total_amount":"5600.00","total_vat":"500.00","total_city_tax":"100.00","#,
                r#""customer_tin":"","consumer_no":"","customer_name":"","customer_address":"","#,
                r#""district_code":"","bank_account":"","iban":"","invoice_id":"","report_month":"","#,
                r#""cashier":"","original_receipt_id":"","receipt_case":0,"late_signed":false,"#,
                r#""handwritten":false,"reason":"","key_id":"ed25519:00","algorithm":"ED25519"}"#
            )
        );
        assert_eq!(Receipt::parse(text.as_bytes()).unwrap(), receipt);
    }

    #[test]
    fn a_stored_document_that_is_not_what_fiscus_writes_does_not_parse() {
        let text = String::from_utf8(sale(vec![item(1, "1", "5600")]).canonical()).unwrap();
        for (from, to) in [
            (r#""quantity":"1.000""#, r#""quantity":"one""#),
            (r#""unit_price":"5600.00""#, r#""unit_price":"5600.001""#),
            (
                r#""moment":"2026-11-23T10:15:00.000000Z""#,
                r#""moment":"yesterday""#,
            ),
            (r#""kind":"SALE""#, r#""kind":"GIFT""#),
            (
                r#""format":"fiscus.receipt/1""#,
                r#""format":"fiscus.receipt/2""#,
            ),
            (r#""reason":"""#, r#""reason":"","extra":1"#),
        ] {
            let tampered = text.replace(from, to);
            assert_ne!(tampered, text);
            assert!(
                Receipt::parse(tampered.as_bytes()).is_err(),
                "{to} must not parse"
            );
        }
    }

    #[test]
    fn totals_are_exact_sums_and_overflow_is_an_error() {
        let receipt = sale(vec![item(1, "3", "0.99"), item(2, "0.125", "5600")]);
        assert_eq!(receipt.total_amount, Money::parse("702.97").unwrap());
        let mut huge = item(1, "1", "1");
        huge.total_amount = Money::from_minor(i64::MAX);
        assert_eq!(Totals::of(&[huge.clone(), huge]), Err(Overflow));
    }

    #[test]
    fn payments_must_come_to_the_total_with_change_deducted() {
        let total = Money::parse("5600").unwrap();
        let mut change = cash("400");
        change.method = PaymentMethod::Change;
        assert_eq!(
            check_paid(ReceiptKind::Sale, total, &[cash("6000"), change]),
            Ok(())
        );
        assert_eq!(
            check_paid(ReceiptKind::Sale, total, &[cash("5000")]),
            Err(Unpaid {
                paid: Money::parse("5000").unwrap(),
                total
            })
        );
        assert_eq!(check_paid(ReceiptKind::Zero, Money::ZERO, &[]), Ok(()));
    }

    #[test]
    fn terminal_ids_name_each_malformed_part() {
        assert!(TerminalId::parse("37900846788", "001", "pos-1").is_ok());
        let parts: Vec<_> = TerminalId::parse("", "0 1", &"9".repeat(17))
            .unwrap_err()
            .into_iter()
            .map(|e| e.part)
            .collect();
        assert_eq!(parts, ["merchant_tin", "branch_no", "pos_no"]);
    }

    #[test]
    fn names_round_trip() {
        for kind in ReceiptKind::ALL {
            assert_eq!(ReceiptKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(ReceiptType::B2cInvoice.as_str(), "B2C_INVOICE");
        assert_eq!(
            PaymentMethod::parse("PAYMENT_CARD"),
            Some(PaymentMethod::PaymentCard)
        );
        assert_eq!(
            FiscalState::parse("LOCAL_SIGNED"),
            Some(FiscalState::LocalSigned)
        );
    }
}
