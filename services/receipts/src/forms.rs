//! transactionForms.json: the ERP forms whose records fiscus fiscalizes (SignTransaction).
//!
//! An ERP built on a dynamic transaction module describes each transaction form in
//! `transactionForms.json`: an object of form name → form definition. A definition carries
//! whatever keys the ERP uses (`masterTable`, layout fields, …), which fiscus ignores, and up
//! to three POSAPI keys, which fiscus checks strictly when it starts:
//!
//! - `posApiEnabled`: `true` when saving a record of the form issues a receipt; `false` or
//!   absent when it does not.
//! - `posApiType`: `B2C_RECEIPT`, `B2B_RECEIPT`, `B2C_INVOICE` or `B2B_INVOICE`. Optional;
//!   absent = the default type of the environment (the `default_type` of
//!   [`Forms::receipt_request`]).
//! - `posApiMapping`: POSAPI field → column name (a non-empty string). Required when
//!   `posApiEnabled` is true.
//!
//! Any other key beginning with `posApi` is refused, so that a misspelt `posApiEnable` does not
//! silently leave a form without receipts.
//!
//! # Mapping keys
//!
//! A record is a master row and its item and payment rows
//! ([`pb::SignTransactionRequest`]). A key's prefix says which row its column is in:
//!
//! | Key | Row | Becomes |
//! |-----|-----|---------|
//! | `totalAmount`, `totalVAT`, `totalCityTax` | master | `expected_total_amount`, `expected_total_vat`, `expected_total_city_tax` (SignReceipt's cross-checks); `totalAmount` is also the cash payment of a record without payment rows |
//! | `customerTin`, `consumerNo`, `districtCode`, `invoiceId`, `bankAccountNo`, `iBan` | master | `customer_tin`, `consumer_no`, `district_code`, `invoice_id`, `bank_account`, `iban` |
//! | `reportMonth` | master | `report_month`; a date `YYYY-MM-DD` is cut to its month |
//! | `type` | master | the record's own receipt type, over `posApiType` |
//! | `items.name`, `items.barCode`, `items.barCodeType`, `items.classificationCode`, `items.taxType`, `items.taxProductCode`, `items.measureUnit`, `items.qty`, `items.unitPrice` | each item row | the [`pb::ChargeItem`] fields of those POSAPI names (`receipts[].items[]`) |
//! | `items.data.lotNo`, `items.data.stockQR` | each item row | `lot_no`; `stock_qr` (a JSON array of strings, or codes separated by commas, semicolons or white space) |
//! | `items.cityTax` | each item row | fiscus's `city_tax_applies`: `true`/`false` (or `1`/`0`) |
//! | `payments.code`, `payments.paidAmount` | each payment row | [`pb::PayItem`] `method` (`CASH`, `PAYMENT_CARD`, `BANK_TRANSFER`, `QR`, `VOUCHER`, `CHANGE`, `OTHER`) and `amount` |
//! | `payments.data.terminalID`, `payments.data.rrn`, `payments.data.maskedCardNumber`, `payments.data.bankCode`, `payments.data.easy` | each payment row | `card_terminal_id`, `rrn`, `masked_card_number`, `bank_code`, `easy_register` |
//! | `id`, `lottery`, `qrData`, `date` | master, written | the answer stored back into the record: the ДДТД (`Receipt.ebarimt_id`), the lottery number, the QR data, and when the receipt was accepted (`yyyy-MM-dd HH:mm:ss`, Ulaanbaatar time) |
//! | `receiptId`, `fiscalState` | master, written | fiscus's receipt id and the receipt's fiscal state (`PENDING`, `ACCEPTED`, …) |
//!
//! Unprefixed keys are the master row's, so the POSAPI example of a form definition works as
//! written. fiscus reads nothing POSAPI would take from elsewhere: the merchant, branch and POS
//! come from the request's terminal, item and receipt totals are computed (the master totals
//! only cross-check them), and every payment is PAID.
//!
//! # What a form must map
//!
//! - **Items**: either no `items.*` key at all, and every item row is read from the columns
//!   named as the POSAPI fields (`name`, `qty`, `unitPrice` required in each row; `barCode`,
//!   `barCodeType`, `classificationCode`, `taxType`, `taxProductCode`, `measureUnit`, `lotNo`,
//!   `stockQR`, `cityTax` read where the row has them); or at least `items.name`, `items.qty`
//!   and `items.unitPrice`, and only the mapped fields are read. An item without a tax type is
//!   VAT_ABLE; one without a bar code type is UNDEFINED (a bar code of no declared kind is one
//!   POSAPI accepts as UNDEFINED: map `items.barCodeType` to declare GS1 or ISBN).
//! - **Payments**: the same with `code` and `paidAmount` (and `terminalID`, `rrn`,
//!   `maskedCardNumber`, `bankCode`, `easy` where present). A record without payment rows is
//!   paid in cash, its master `totalAmount`: a form that maps no `totalAmount` then cannot
//!   make its receipt.
//! - **Write-back**: a form that maps none of `id`, `lottery`, `qrData`, `date`, `receiptId`,
//!   `fiscalState` has `id`, `lottery`, `qrData` and `date` written back to columns of those
//!   names; one that maps any has exactly those written. No two answer fields share a column,
//!   and none is written to a column the master row is read from. An answer the receipt does
//!   not have yet (a PENDING receipt's ДДТД, lottery, date and POSAPI QR data) is not written:
//!   follow the receipt with WatchReceipt to store them once it is ACCEPTED. POSAPI forbids
//!   keeping `lottery` and `qrData` other than on the printed receipt: a form whose ERP must
//!   not store them maps only the answer fields it keeps.
//!
//! Mapped columns must be in the rows (a missing one is an error naming it; of the conventional
//! columns, only the required ones); an empty cell is an unset field. Amounts and quantities
//! pass through as the ERP wrote them, to be checked by SignReceipt like any receipt's; item `i`
//! of the receipt is item row `i`, payment `i` payment row `i`, so SignReceipt's `items[i]` and
//! `payments[i]` name those rows. Codes (tax type, bar code type, payment code, receipt type)
//! are read without regard to case or surrounding space; the tax type `NOT_VAT` of POSAPI's
//! examples is read as `NO_VAT`.
//!
//! # Example
//!
//! ```json
//! {
//!   "sales_income_form": {
//!     "masterTable": "sales_income",
//!     "posApiEnabled": true,
//!     "posApiType": "B2C_RECEIPT",
//!     "posApiMapping": {
//!       "totalAmount": "total_price",
//!       "totalVAT": "vat_amount",
//!       "totalCityTax": "city_tax",
//!       "customerTin": "customer_tin",
//!       "consumerNo": "consumer_id",
//!       "type": "receipt_type",
//!       "items.name": "product_name",
//!       "items.barCode": "barcode",
//!       "items.barCodeType": "barcode_type",
//!       "items.classificationCode": "gs1_class",
//!       "items.taxType": "vat_type",
//!       "items.taxProductCode": "tax_product_code",
//!       "items.measureUnit": "unit",
//!       "items.qty": "quantity",
//!       "items.unitPrice": "price",
//!       "items.cityTax": "bears_city_tax",
//!       "items.data.lotNo": "lot_no",
//!       "payments.code": "method",
//!       "payments.paidAmount": "amount",
//!       "payments.data.rrn": "rrn",
//!       "id": "ebarimt_id",
//!       "qrData": "qr_data",
//!       "date": "ebarimt_date",
//!       "fiscalState": "fiscal_state"
//!     }
//!   },
//!   "stock_transfer_form": { "masterTable": "stock_transfer", "posApiEnabled": false }
//! }
//! ```
//!
//! A malformed file stops fiscus at start with one line naming the file, the form and the key:
//! `transactionForms.json: form "sales_income_form": posApiMapping.totalAmount must be a column
//! name (a string), not 5`.
#![allow(
    dead_code,
    reason = "accessors of the errors and forms for SignTransaction, not all of them used yet"
)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use fiscus_kit::{ApiError, Violation};
use fiscus_proto::v1 as pb;
use serde_json::{Map, Value};

/// Ulaanbaatar's offset from UTC, in which POSAPI writes its dates.
const ULAANBAATAR_SECONDS: i32 = 8 * 3600;

/// The receipt types `posApiType` and a record's `type` column may name.
const RECEIPT_TYPES: &str = "B2C_RECEIPT, B2B_RECEIPT, B2C_INVOICE or B2B_INVOICE";

// ---------------------------------------------------------------------------
// The mapping keys
// ---------------------------------------------------------------------------

/// The POSAPI fields of one level of a record.
trait Field: Copy + Ord + fmt::Debug + 'static {
    /// What the level's mapping keys begin with: `""`, `"items."`, `"payments."`.
    const PREFIX: &'static str;
    const ALL: &'static [Self];
    /// The field's POSAPI name after the prefix, e.g. `qty`, `data.lotNo`.
    fn name(self) -> &'static str;
    /// Whether every row needs it: what a form mapping the level must map.
    fn required(self) -> bool;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The whole mapping key, e.g. `items.qty`.
    fn key(self) -> String {
        format!("{}{}", Self::PREFIX, self.name())
    }

    /// The column read (or written) when a form maps no field of the level: the POSAPI
    /// name without its `data.`, e.g. `lotNo`.
    fn conventional_column(self) -> &'static str {
        let name = self.name();
        name.rsplit('.').next().unwrap_or(name)
    }
}

/// Declares the fields of one level, each with its POSAPI name.
macro_rules! fields {
    ($(#[$doc:meta])* $level:ident, $prefix:literal, required [$($required:ident),*] {
        $($variant:ident = $name:literal),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        enum $level {
            $($variant),+
        }

        impl Field for $level {
            const PREFIX: &'static str = $prefix;
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }

            fn required(self) -> bool {
                let required: &[Self] = &[$(Self::$required),*];
                required.contains(&self)
            }
        }
    };
}

fields! {
    /// Fields read from the master row (POSAPI's top-level fields).
    MasterField, "", required [] {
        TotalAmount = "totalAmount",
        TotalVat = "totalVAT",
        TotalCityTax = "totalCityTax",
        CustomerTin = "customerTin",
        ConsumerNo = "consumerNo",
        DistrictCode = "districtCode",
        ReportMonth = "reportMonth",
        InvoiceId = "invoiceId",
        BankAccountNo = "bankAccountNo",
        IBan = "iBan",
        Type = "type",
    }
}

fields! {
    /// Fields read from each item row (POSAPI `receipts[].items[]`, and fiscus's `cityTax`).
    ItemField, "items.", required [Name, Qty, UnitPrice] {
        Name = "name",
        BarCode = "barCode",
        BarCodeType = "barCodeType",
        ClassificationCode = "classificationCode",
        TaxType = "taxType",
        TaxProductCode = "taxProductCode",
        MeasureUnit = "measureUnit",
        Qty = "qty",
        UnitPrice = "unitPrice",
        LotNo = "data.lotNo",
        StockQr = "data.stockQR",
        CityTax = "cityTax",
    }
}

fields! {
    /// Fields read from each payment row (POSAPI `payments[]`).
    PaymentField, "payments.", required [Code, PaidAmount] {
        Code = "code",
        PaidAmount = "paidAmount",
        TerminalId = "data.terminalID",
        Rrn = "data.rrn",
        MaskedCardNumber = "data.maskedCardNumber",
        BankCode = "data.bankCode",
        Easy = "data.easy",
    }
}

fields! {
    /// Fields of the answer written back into the master row.
    AnswerField, "", required [Id, Lottery, QrData, Date] {
        Id = "id",
        Lottery = "lottery",
        QrData = "qrData",
        Date = "date",
        ReceiptId = "receiptId",
        FiscalState = "fiscalState",
    }
}

/// Why POSAPI fields a form might map are not mapping keys: what fiscus takes instead.
fn not_mapped(key: &str) -> Option<&'static str> {
    Some(match key {
        "merchantTin" | "branchNo" | "posNo" => "comes from the request's terminal",
        "billIdSuffix" | "inactiveId" => "is fiscus's to set",
        "items.totalAmount" | "items.totalVAT" | "items.totalCityTax" => {
            "is computed by fiscus for each item (map the master totalAmount, totalVAT and \
             totalCityTax to cross-check the receipt's totals)"
        }
        "payments.status" => "is PAID for every payment fiscus records",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The forms
// ---------------------------------------------------------------------------

/// The POSAPI part of one form definition.
#[derive(Debug, Clone, Default)]
struct Form {
    enabled: bool,
    receipt_type: Option<pb::ReceiptType>,
    master: BTreeMap<MasterField, String>,
    /// Empty = the conventional columns.
    items: BTreeMap<ItemField, String>,
    /// Empty = the conventional columns.
    payments: BTreeMap<PaymentField, String>,
    /// Empty = the conventional columns of the required answer fields.
    write_back: BTreeMap<AnswerField, String>,
}

/// The parsed transactionForms.json: which forms issue receipts, and how their records map
/// into SignReceipt requests.
#[derive(Debug, Clone, Default)]
pub struct Forms {
    forms: BTreeMap<String, Form>,
}

impl Forms {
    /// Reads and checks the file at `path`; the error is one line naming the file, the form
    /// and the key.
    pub fn load(path: &Path) -> anyhow::Result<Forms> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{origin}: cannot be read: {e}"))?;
        Self::parse(&text, &origin)
    }

    /// Parses and checks the text of a transactionForms.json; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Forms> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: is not valid JSON: {e}"))?;
        let Value::Object(definitions) = root else {
            anyhow::bail!(
                "{origin}: must be a JSON object of form name to form definition, not {}",
                shown(&root)
            );
        };
        let mut forms = BTreeMap::new();
        for (name, definition) in &definitions {
            let form = Form::parse(definition)
                .map_err(|problem| anyhow::anyhow!("{origin}: form {name:?}: {problem}"))?;
            forms.insert(name.clone(), form);
        }
        Ok(Forms { forms })
    }

    /// The names of the forms, in order.
    pub fn names(&self) -> Vec<String> {
        self.forms.keys().cloned().collect()
    }

    /// Whether the form issues receipts; `None` for a form the file does not define.
    pub fn issues_receipts(&self, form: &str) -> Option<bool> {
        self.forms.get(form).map(|f| f.enabled)
    }

    /// The SALE that fiscalizes an ERP record of its form. Its type is the record's `type`
    /// column, else the form's `posApiType`, else `default_type` (the environment's), else
    /// B2C_RECEIPT. Every problem of the record is named, not only the first; an unknown form
    /// and a form that issues no receipts are answered alone.
    pub fn receipt_request(
        &self,
        request: &pb::SignTransactionRequest,
        default_type: pb::ReceiptType,
    ) -> Result<pb::SignReceiptRequest, FormErrors> {
        let name = request.form_name.as_str();
        let Some(form) = self.forms.get(name) else {
            return Err(FormErrors(vec![FormError::UnknownForm {
                form: name.to_owned(),
                known: self.names(),
            }]));
        };
        if !form.enabled {
            return Err(FormErrors(vec![FormError::NotEnabled {
                form: name.to_owned(),
            }]));
        }
        let mut r = Reading {
            form: name,
            problems: Vec::new(),
        };
        let master = &request.master;
        let text =
            |r: &mut Reading<'_>, f: MasterField| r.master(master, form, f).unwrap_or_default();

        let total_amount = text(&mut r, MasterField::TotalAmount);
        let total_vat = text(&mut r, MasterField::TotalVat);
        let total_city_tax = text(&mut r, MasterField::TotalCityTax);
        let customer_tin = text(&mut r, MasterField::CustomerTin);
        let consumer_no = text(&mut r, MasterField::ConsumerNo);
        let district_code = text(&mut r, MasterField::DistrictCode);
        let report_month = month(&text(&mut r, MasterField::ReportMonth));
        let invoice_id = text(&mut r, MasterField::InvoiceId);
        let bank_account = text(&mut r, MasterField::BankAccountNo);
        let iban = text(&mut r, MasterField::IBan);
        let record_type = form.master.get(&MasterField::Type).and_then(|column| {
            let value = r.master(master, form, MasterField::Type)?;
            r.code(
                &value,
                MasterField::Type.key(),
                column,
                None,
                RECEIPT_TYPES,
                |s| named_code("RECEIPT_TYPE_", s, pb::ReceiptType::from_str_name),
            )
        });
        let receipt_type = record_type
            .or(form.receipt_type)
            .or(Some(default_type).filter(|t| *t != pb::ReceiptType::Unspecified))
            .unwrap_or(pb::ReceiptType::B2cReceipt);

        if request.item_rows.is_empty() {
            r.problems.push(FormError::NoItems {
                form: name.to_owned(),
            });
        }
        let items = request
            .item_rows
            .iter()
            .enumerate()
            .map(|(i, row)| r.item(form, &row.columns, i))
            .collect();

        let payments = if request.payment_rows.is_empty() {
            r.cash_payment(form, master, &total_amount)
        } else {
            request
                .payment_rows
                .iter()
                .enumerate()
                .map(|(i, row)| r.payment(form, &row.columns, i))
                .collect()
        };

        if !r.problems.is_empty() {
            return Err(FormErrors(r.problems));
        }
        Ok(pb::SignReceiptRequest {
            operation_id: request.operation_id.clone(),
            terminal: request.terminal.clone(),
            r#type: receipt_type.into(),
            kind: pb::ReceiptKind::Sale.into(),
            receipt_reference: request.record_id.clone(),
            receipt_moment: request.receipt_moment,
            items,
            payments,
            customer_tin,
            consumer_no,
            district_code,
            bank_account,
            iban,
            invoice_id,
            report_month,
            cashier: request.cashier.clone(),
            expected_total_amount: total_amount,
            expected_total_vat: total_vat,
            expected_total_city_tax: total_city_tax,
            ..Default::default()
        })
    }

    /// What to store back into the record of `form` once `receipt` is signed: column → value,
    /// of the type of SignTransactionResponse.write_back. Values the receipt does not have yet
    /// (a PENDING receipt's ДДТД, lottery and acceptance date) are left out, and so is the QR
    /// data of an e-barimt receipt until it has its ДДТД (until then `qr_data` is fiscus's
    /// own, not the one POSAPI prints); so is everything for a form the file does not define.
    pub fn write_back(&self, form: &str, receipt: &pb::Receipt) -> BTreeMap<String, String> {
        let Some(form) = self.forms.get(form) else {
            return BTreeMap::new();
        };
        let answer = |field: AnswerField| match field {
            AnswerField::Id => receipt.ebarimt_id.clone(),
            AnswerField::Lottery => receipt.lottery.clone(),
            AnswerField::QrData
                if receipt.provider() == pb::Provider::Ebarimt && receipt.ebarimt_id.is_empty() =>
            {
                String::new()
            }
            AnswerField::QrData => receipt.qr_data.clone(),
            AnswerField::Date => receipt
                .accepted_at
                .as_ref()
                .and_then(ulaanbaatar_time)
                .unwrap_or_default(),
            AnswerField::ReceiptId => receipt.id.clone(),
            AnswerField::FiscalState => match receipt.fiscal_state() {
                pb::FiscalState::Unspecified => String::new(),
                state => state
                    .as_str_name()
                    .trim_start_matches("FISCAL_STATE_")
                    .to_owned(),
            },
        };
        form.write_back_columns()
            .into_iter()
            .filter_map(|(field, column)| {
                let value = answer(field);
                (!value.is_empty()).then(|| (column.to_owned(), value))
            })
            .collect()
    }
}

impl Form {
    /// The POSAPI keys of one definition; the error names the key (without file and form).
    fn parse(definition: &Value) -> Result<Form, String> {
        let Value::Object(keys) = definition else {
            return Err(format!(
                "must be an object (the form's definition), not {}",
                shown(definition)
            ));
        };
        let mut form = Form::default();
        let mut mapping = None;
        for (key, value) in keys {
            match key.as_str() {
                "posApiEnabled" => match value {
                    Value::Bool(enabled) => form.enabled = *enabled,
                    other => {
                        return Err(format!(
                            "posApiEnabled must be true or false, not {}",
                            shown(other)
                        ));
                    }
                },
                "posApiType" => {
                    // Spelt exactly as POSAPI writes it: the file is configuration, not data.
                    let parsed = value
                        .as_str()
                        .and_then(|s| pb::ReceiptType::from_str_name(&format!("RECEIPT_TYPE_{s}")))
                        .filter(|t| *t != pb::ReceiptType::Unspecified);
                    match parsed {
                        Some(t) => form.receipt_type = Some(t),
                        None => {
                            return Err(format!(
                                "posApiType must be one of {RECEIPT_TYPES}, not {}",
                                shown(value)
                            ));
                        }
                    }
                }
                "posApiMapping" => match value {
                    Value::Object(entries) => mapping = Some(entries),
                    other => {
                        return Err(format!(
                            "posApiMapping must be an object of POSAPI field to column name, not {}",
                            shown(other)
                        ));
                    }
                },
                other if other.to_ascii_lowercase().starts_with("posapi") => {
                    return Err(format!(
                        "{other} is not a key fiscus knows: the POSAPI keys of a form are \
                         posApiEnabled, posApiType and posApiMapping"
                    ));
                }
                _ => {}
            }
        }
        match mapping {
            Some(entries) => form.map(entries)?,
            None if form.enabled => {
                return Err(
                    "posApiEnabled is true but there is no posApiMapping: map the record's \
                     columns to POSAPI fields"
                        .to_owned(),
                );
            }
            None => {}
        }
        if form.enabled {
            form.check_complete()?;
        }
        Ok(form)
    }

    /// Reads `posApiMapping` into the form's levels.
    fn map(&mut self, entries: &Map<String, Value>) -> Result<(), String> {
        for (key, value) in entries {
            let column = match value {
                Value::String(column) if !column.trim().is_empty() => column.clone(),
                Value::String(_) => {
                    return Err(format!(
                        "posApiMapping.{key} must be a column name, not {}",
                        shown(value)
                    ));
                }
                other => {
                    return Err(format!(
                        "posApiMapping.{key} must be a column name (a string), not {}",
                        shown(other)
                    ));
                }
            };
            let placed = if let Some(name) = key.strip_prefix(ItemField::PREFIX) {
                ItemField::from_name(name).map(|f| self.items.insert(f, column))
            } else if let Some(name) = key.strip_prefix(PaymentField::PREFIX) {
                PaymentField::from_name(name).map(|f| self.payments.insert(f, column))
            } else if let Some(f) = MasterField::from_name(key) {
                Some(self.master.insert(f, column))
            } else {
                AnswerField::from_name(key).map(|f| self.write_back.insert(f, column))
            };
            if placed.is_none() {
                return Err(unknown_key(key));
            }
        }
        self.check_write_back()
    }

    /// No two answer fields share a column, and none overwrites a column the master row is
    /// read from.
    fn check_write_back(&self) -> Result<(), String> {
        let mut written: BTreeMap<&str, AnswerField> = BTreeMap::new();
        for (field, column) in self.write_back_columns() {
            if let Some(earlier) = written.insert(column, field) {
                return Err(format!(
                    "posApiMapping.{} and posApiMapping.{} both write column {column:?}",
                    earlier.key(),
                    field.key()
                ));
            }
            if let Some((read, _)) = self.master.iter().find(|(_, c)| c.as_str() == column) {
                let writer = if self.write_back.is_empty() {
                    format!("the answer's {} (written back by default)", field.key())
                } else {
                    format!("posApiMapping.{}", field.key())
                };
                return Err(format!(
                    "{writer} writes column {column:?}, which posApiMapping.{} is read from",
                    read.key()
                ));
            }
        }
        Ok(())
    }

    /// An enabled form can make every item and payment: a level it maps names the fields every
    /// row needs.
    fn check_complete(&self) -> Result<(), String> {
        complete(&self.items)?;
        complete(&self.payments)
    }

    /// The answer fields written back, each with its column.
    fn write_back_columns(&self) -> Vec<(AnswerField, &str)> {
        if self.write_back.is_empty() {
            AnswerField::ALL
                .iter()
                .filter(|f| f.required())
                .map(|f| (*f, f.conventional_column()))
                .collect()
        } else {
            self.write_back
                .iter()
                .map(|(f, column)| (*f, column.as_str()))
                .collect()
        }
    }
}

/// A level a form maps names the fields each of its rows needs.
fn complete<F: Field>(mapped: &BTreeMap<F, String>) -> Result<(), String> {
    let Some(first) = mapped.keys().next() else {
        return Ok(());
    };
    let missing: Vec<String> = F::ALL
        .iter()
        .filter(|f| f.required() && !mapped.contains_key(f))
        .map(|f| f.key())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let needed: Vec<String> = F::ALL
        .iter()
        .filter(|f| f.required())
        .map(|f| f.key())
        .collect();
    let conventional: Vec<&str> = F::ALL
        .iter()
        .filter(|f| f.required())
        .map(|f| f.conventional_column())
        .collect();
    Err(format!(
        "posApiMapping maps {} but not {}: a form that maps {}* keys maps at least {} (or none, \
         for the columns {})",
        first.key(),
        missing.join(", "),
        F::PREFIX,
        needed.join(", "),
        conventional.join(", ")
    ))
}

/// Why a mapping key is refused, with a hint where one helps.
fn unknown_key(key: &str) -> String {
    if let Some(why) = not_mapped(key) {
        return format!("posApiMapping.{key} is not a mapping key: {why}");
    }
    let hint = if ItemField::from_name(key).is_some() {
        format!(": an item row's column is mapped as items.{key}")
    } else if PaymentField::from_name(key).is_some() {
        format!(": a payment row's column is mapped as payments.{key}")
    } else {
        let master: Vec<&str> = MasterField::ALL.iter().map(|f| f.name()).collect();
        let answer: Vec<&str> = AnswerField::ALL.iter().map(|f| f.name()).collect();
        let items: Vec<&str> = ItemField::ALL.iter().map(|f| f.name()).collect();
        let payments: Vec<&str> = PaymentField::ALL.iter().map(|f| f.name()).collect();
        format!(
            " (master: {}; written back: {}; items.{{{}}}; payments.{{{}}})",
            master.join(", "),
            answer.join(", "),
            items.join(", "),
            payments.join(", ")
        )
    };
    format!("posApiMapping.{key} is not a POSAPI field fiscus maps{hint}")
}

/// A JSON value as an error shows it: scalars as written (long text cut), containers by kind.
fn shown(value: &Value) -> String {
    match value {
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(s) => format!("{:?}", cut(s)),
        other => other.to_string(),
    }
}

/// At most 64 characters of `text`, marked when cut.
fn cut(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The enum value a code names (`VAT_ABLE` for `TAX_TYPE_VAT_ABLE`), regardless of case and
/// surrounding space; never UNSPECIFIED.
fn named_code<E>(prefix: &str, code: &str, from_str_name: fn(&str) -> Option<E>) -> Option<E> {
    let code = code.trim().to_ascii_uppercase();
    if code == "UNSPECIFIED" {
        return None;
    }
    from_str_name(&format!("{prefix}{code}"))
}

fn tax_type(code: &str) -> Option<pb::TaxType> {
    if code.trim().eq_ignore_ascii_case("NOT_VAT") {
        return Some(pb::TaxType::NoVat);
    }
    named_code("TAX_TYPE_", code, pb::TaxType::from_str_name)
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Excise stamp codes: a JSON array of strings, or codes separated by commas, semicolons or
/// white space.
fn stock_codes(text: &str) -> Option<Vec<String>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).ok();
    }
    Some(
        text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|code| !code.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// A report month: `YYYY-MM` as given, or the month of a date `YYYY-MM-DD` (a DATE column).
fn month(text: &str) -> String {
    match (text.get(..10), text.get(..7)) {
        (Some(date), Some(month))
            if text.len() == 10 && NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() =>
        {
            month.to_owned()
        }
        _ => text.to_owned(),
    }
}

/// `yyyy-MM-dd HH:mm:ss` in Ulaanbaatar, as POSAPI dates its receipts.
fn ulaanbaatar_time(at: &prost_types::Timestamp) -> Option<String> {
    let utc = DateTime::<Utc>::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)?;
    let offset = FixedOffset::east_opt(ULAANBAATAR_SECONDS)?;
    Some(
        utc.with_timezone(&offset)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    )
}

// ---------------------------------------------------------------------------
// Reading a record
// ---------------------------------------------------------------------------

/// A row of an ERP table: column name → value (SignTransactionRequest.master, TransactionRow).
type Row = BTreeMap<String, String>;

/// A row of the request: `None` for the master row, else the list and the index.
type At = Option<(&'static str, usize)>;

/// The request field a row is: `master`, `item_rows[2].columns`.
fn path(at: At) -> String {
    match at {
        None => "master".to_owned(),
        Some((list, index)) => format!("{list}[{index}].columns"),
    }
}

/// One record being mapped, and what is wrong with it so far.
struct Reading<'a> {
    form: &'a str,
    problems: Vec<FormError>,
}

impl Reading<'_> {
    /// The value of `column` in `row`; a missing column is a problem when it must be there.
    /// `None` for an empty cell too.
    fn cell(
        &mut self,
        row: &Row,
        at: At,
        key: String,
        column: &str,
        must_exist: bool,
    ) -> Option<String> {
        match row.get(column) {
            Some(value) if value.is_empty() => None,
            Some(value) => Some(value.clone()),
            None => {
                if must_exist {
                    self.problems.push(FormError::MissingColumn {
                        form: self.form.to_owned(),
                        key,
                        column: column.to_owned(),
                        row: at,
                    });
                }
                None
            }
        }
    }

    /// A master field the form maps.
    fn master(&mut self, row: &Row, form: &Form, field: MasterField) -> Option<String> {
        let column = form.master.get(&field)?;
        self.cell(row, None, field.key(), column, true)
    }

    /// A field of an item or payment row: its mapped column, or, where the form maps none of
    /// the level, its conventional one.
    fn row_cell<F: Field>(
        &mut self,
        row: &Row,
        at: At,
        mapped: &BTreeMap<F, String>,
        field: F,
    ) -> Option<String> {
        if mapped.is_empty() {
            self.cell(
                row,
                at,
                field.key(),
                field.conventional_column(),
                field.required(),
            )
        } else {
            let column = mapped.get(&field)?;
            self.cell(row, at, field.key(), column, true)
        }
    }

    /// The column a row field was read from, for naming it in a problem.
    fn column_of<F: Field>(mapped: &BTreeMap<F, String>, field: F) -> String {
        mapped
            .get(&field)
            .map_or_else(|| field.conventional_column().to_owned(), Clone::clone)
    }

    /// A code read by `parse`; a problem naming the column when it does not read.
    fn code<T>(
        &mut self,
        value: &str,
        key: String,
        column: &str,
        at: At,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.problems.push(FormError::BadValue {
                form: self.form.to_owned(),
                key,
                column: column.to_owned(),
                value: value.to_owned(),
                path: path(at),
                expected,
            });
        }
        parsed
    }

    /// A coded row field: `None` when unmapped, empty or unreadable (the last a problem).
    fn row_code<F: Field, T>(
        &mut self,
        row: &Row,
        at: At,
        mapped: &BTreeMap<F, String>,
        field: F,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.row_cell(row, at, mapped, field)?;
        let column = Self::column_of(mapped, field);
        self.code(&value, field.key(), &column, at, expected, parse)
    }

    /// Item row `index` as the receipt's item `index`.
    fn item(&mut self, form: &Form, row: &Row, index: usize) -> pb::ChargeItem {
        use ItemField as F;
        let at = Some(("item_rows", index));
        let m = &form.items;
        let text = |r: &mut Self, f: F| r.row_cell(row, at, m, f).unwrap_or_default();
        let name = text(self, F::Name);
        let bar_code = text(self, F::BarCode);
        let classification_code = text(self, F::ClassificationCode);
        let tax_product_code = text(self, F::TaxProductCode);
        let measure_unit = text(self, F::MeasureUnit);
        let quantity = text(self, F::Qty);
        let unit_price = text(self, F::UnitPrice);
        let lot_no = text(self, F::LotNo);

        let tax_type = self
            .row_code(
                row,
                at,
                m,
                F::TaxType,
                "VAT_ABLE, VAT_FREE, VAT_ZERO or NO_VAT",
                tax_type,
            )
            .unwrap_or(pb::TaxType::VatAble);
        let bar_code_type = self
            .row_code(row, at, m, F::BarCodeType, "GS1, ISBN or UNDEFINED", |s| {
                named_code("BAR_CODE_TYPE_", s, pb::BarCodeType::from_str_name)
            })
            .unwrap_or(pb::BarCodeType::Undefined);
        let stock_qr = self
            .row_code(
                row,
                at,
                m,
                F::StockQr,
                "a JSON array of strings, or codes separated by commas or spaces",
                stock_codes,
            )
            .unwrap_or_default();
        let city_tax_applies = self
            .row_code(row, at, m, F::CityTax, "true or false", boolean)
            .unwrap_or(false);

        pb::ChargeItem {
            name,
            bar_code,
            bar_code_type: bar_code_type.into(),
            classification_code,
            tax_type: tax_type.into(),
            tax_product_code,
            measure_unit,
            quantity,
            unit_price,
            city_tax_applies,
            lot_no,
            stock_qr,
            ..Default::default()
        }
    }

    /// Payment row `index` as the receipt's payment `index`.
    fn payment(&mut self, form: &Form, row: &Row, index: usize) -> pb::PayItem {
        use PaymentField as F;
        let at = Some(("payment_rows", index));
        let m = &form.payments;
        let text = |r: &mut Self, f: F| r.row_cell(row, at, m, f).unwrap_or_default();
        let amount = text(self, F::PaidAmount);
        let card_terminal_id = text(self, F::TerminalId);
        let rrn = text(self, F::Rrn);
        let masked_card_number = text(self, F::MaskedCardNumber);
        let bank_code = text(self, F::BankCode);
        let method = self
            .row_code(
                row,
                at,
                m,
                F::Code,
                "CASH, PAYMENT_CARD, BANK_TRANSFER, QR, VOUCHER, CHANGE or OTHER",
                |s| named_code("PAYMENT_METHOD_", s, pb::PaymentMethod::from_str_name),
            )
            .unwrap_or(pb::PaymentMethod::Unspecified);
        let easy_register = self
            .row_code(row, at, m, F::Easy, "true or false", boolean)
            .unwrap_or(false);
        pb::PayItem {
            method: method.into(),
            amount,
            rrn,
            card_terminal_id,
            masked_card_number,
            bank_code,
            easy_register,
            ..Default::default()
        }
    }

    /// The payment of a record without payment rows: its whole total in cash.
    fn cash_payment(&mut self, form: &Form, master: &Row, total_amount: &str) -> Vec<pb::PayItem> {
        let Some(column) = form.master.get(&MasterField::TotalAmount) else {
            self.problems.push(FormError::MissingMapping {
                form: self.form.to_owned(),
                key: MasterField::TotalAmount.key(),
            });
            return Vec::new();
        };
        if total_amount.is_empty() {
            // A missing column is named already; an empty one leaves nothing to pay.
            if master.contains_key(column) {
                self.problems.push(FormError::BadValue {
                    form: self.form.to_owned(),
                    key: MasterField::TotalAmount.key(),
                    column: column.clone(),
                    value: String::new(),
                    path: path(None),
                    expected: "the amount paid in cash (the record has no payment_rows)",
                });
            }
            return Vec::new();
        }
        vec![pb::PayItem {
            method: pb::PaymentMethod::Cash.into(),
            amount: total_amount.to_owned(),
            ..Default::default()
        }]
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a record does not map into a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// `form_name` names no form of the file (INVALID_ARGUMENT on `form_name`).
    UnknownForm { form: String, known: Vec<String> },
    /// The form's posApiEnabled is false or absent (FAILED_PRECONDITION): nothing to sign.
    NotEnabled { form: String },
    /// A column the form maps `key` to is not in the row (`row`: `None` = the master row,
    /// else `("item_rows" | "payment_rows", index)`).
    MissingColumn {
        form: String,
        key: String,
        column: String,
        row: Option<(&'static str, usize)>,
    },
    /// A code that does not read (tax type, bar code type, payment code, receipt type, a
    /// boolean, excise codes), at request field `path`.
    BadValue {
        form: String,
        key: String,
        column: String,
        value: String,
        path: String,
        expected: &'static str,
    },
    /// The record has no item rows.
    NoItems { form: String },
    /// The record needs a field the form does not map: `totalAmount`, for the cash payment of
    /// a record without payment rows.
    MissingMapping { form: String, key: String },
}

impl FormError {
    /// The SignTransactionRequest field the problem is in: `form_name`, `master`,
    /// `item_rows[2].columns`, `item_rows`, `payment_rows`.
    pub fn field(&self) -> String {
        match self {
            Self::UnknownForm { .. } | Self::NotEnabled { .. } => "form_name".to_owned(),
            Self::MissingColumn { row, .. } => path(*row),
            Self::BadValue { path, .. } => path.clone(),
            Self::NoItems { .. } => "item_rows".to_owned(),
            Self::MissingMapping { .. } => "payment_rows".to_owned(),
        }
    }

    /// The form the problem is in.
    pub fn form(&self) -> &str {
        match self {
            Self::UnknownForm { form, .. }
            | Self::NotEnabled { form }
            | Self::MissingColumn { form, .. }
            | Self::BadValue { form, .. }
            | Self::NoItems { form }
            | Self::MissingMapping { form, .. } => form,
        }
    }

    /// The gRPC code it answers with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::NotEnabled { .. } => tonic::Code::FailedPrecondition,
            _ => tonic::Code::InvalidArgument,
        }
    }

    /// The field violation it is, for INVALID_ARGUMENT.
    pub fn violation(&self) -> Violation {
        Violation::new(self.field(), self.to_string())
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownForm { form, known } if known.is_empty() => write!(
                f,
                "there is no form {form:?}: transactionForms.json defines no forms"
            ),
            Self::UnknownForm { form, known } => write!(
                f,
                "there is no form {form:?} in transactionForms.json; its forms are {}",
                known
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::NotEnabled { form } => write!(
                f,
                "form {form:?} does not issue receipts (posApiEnabled is false or absent)"
            ),
            Self::MissingColumn {
                form,
                key,
                column,
                row,
            } => {
                let row = match row {
                    None => "the master row".to_owned(),
                    Some((list, index)) => format!("{list}[{index}]"),
                };
                write!(
                    f,
                    "form {form:?} reads {key} from column {column:?}, which {row} does not have"
                )
            }
            Self::BadValue {
                form,
                key,
                column,
                value,
                expected,
                ..
            } => write!(
                f,
                "form {form:?} reads {key} from column {column:?}, whose value {:?} is not {expected}",
                cut(value)
            ),
            Self::NoItems { form } => {
                write!(f, "a record of form {form:?} needs at least one item row")
            }
            Self::MissingMapping { form, key } => write!(
                f,
                "form {form:?} maps no {key}, so a record without payment_rows has no payment: \
                 send payment_rows or map {key} in posApiMapping"
            ),
        }
    }
}

impl std::error::Error for FormError {}

/// Every problem of one record; an unknown form and a form that issues no receipts come alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormErrors(pub Vec<FormError>);

impl FormErrors {
    pub fn errors(&self) -> &[FormError] {
        &self.0
    }

    /// The form issues no receipts (SignTransactionResponse.receipt_issued false, or
    /// FAILED_PRECONDITION).
    pub fn not_enabled(&self) -> bool {
        self.0
            .iter()
            .any(|e| matches!(e, FormError::NotEnabled { .. }))
    }

    /// The gRPC code they answer with: FAILED_PRECONDITION for a form that issues no receipts,
    /// INVALID_ARGUMENT otherwise.
    pub fn code(&self) -> tonic::Code {
        if self.not_enabled() {
            tonic::Code::FailedPrecondition
        } else {
            tonic::Code::InvalidArgument
        }
    }
}

impl fmt::Display for FormErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {e}", e.field())?;
        }
        Ok(())
    }
}

impl std::error::Error for FormErrors {}

impl From<FormErrors> for ApiError {
    /// FAILED_PRECONDITION for a form that issues no receipts, else INVALID_ARGUMENT with one
    /// field violation per problem.
    fn from(errors: FormErrors) -> Self {
        match errors
            .0
            .iter()
            .find(|e| matches!(e, FormError::NotEnabled { .. }))
        {
            Some(not_enabled) => ApiError::FailedPrecondition(not_enabled.to_string()),
            None => ApiError::InvalidArgument(errors.0.iter().map(FormError::violation).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The form definition of the POSAPI integration guide, verbatim.
    const SEED: &str = include_str!("../tests/fixtures/forms/seed_sales_income_form.json");
    /// The module's example: every kind of key, other forms beside it.
    const EXAMPLE: &str = include_str!("../tests/fixtures/forms/transactionForms.json");
    const FILE: &str = "transactionForms.json";

    fn terminal() -> pb::Terminal {
        pb::Terminal {
            merchant_tin: "37900846788".into(),
            branch_no: "001".into(),
            pos_no: "001".into(),
        }
    }

    fn row(cells: &[(&str, &str)]) -> Row {
        cells
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn transaction(
        form: &str,
        master: &[(&str, &str)],
        items: &[&[(&str, &str)]],
        payments: &[&[(&str, &str)]],
    ) -> pb::SignTransactionRequest {
        pb::SignTransactionRequest {
            operation_id: "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b".into(),
            terminal: Some(terminal()),
            form_name: form.into(),
            record_id: "SI-2025-000117".into(),
            master: row(master),
            item_rows: items
                .iter()
                .map(|cells| pb::TransactionRow {
                    columns: row(cells),
                })
                .collect(),
            payment_rows: payments
                .iter()
                .map(|cells| pb::TransactionRow {
                    columns: row(cells),
                })
                .collect(),
            receipt_moment: Some(prost_types::Timestamp {
                seconds: 1_750_000_000,
                nanos: 0,
            }),
            cashier: "Болд".into(),
        }
    }

    fn example() -> Forms {
        Forms::parse(EXAMPLE, FILE).unwrap()
    }

    /// The one-line error of a malformed file.
    fn malformed(text: &str) -> String {
        let error = Forms::parse(text, FILE).unwrap_err().to_string();
        assert!(!error.contains('\n'), "{error}");
        assert!(error.starts_with("transactionForms.json: "), "{error}");
        error
    }

    /// A file of one form `f` with the given POSAPI keys.
    fn one_form(keys: &str) -> String {
        format!(r#"{{ "f": {{ "masterTable": "t", {keys} }} }}"#)
    }

    #[test]
    fn the_seed_example_maps_a_record_verbatim() {
        let forms = Forms::parse(SEED, FILE).unwrap();
        assert_eq!(forms.names(), ["sales_income_form"]);
        assert_eq!(forms.issues_receipts("sales_income_form"), Some(true));
        // The seed maps no item fields: item rows are read from the conventional columns.
        let request = transaction(
            "sales_income_form",
            &[
                ("total_price", "5600.00"),
                ("vat_amount", "500.00"),
                ("city_tax", "100.00"),
                ("customer_tin", ""),
                ("consumer_id", "10038071"),
                ("posted_by", "ignored"),
            ],
            &[&[
                ("name", "Талх"),
                ("qty", "1"),
                ("unitPrice", "5600.00"),
                ("barCode", "19059010880001"),
                ("barCodeType", "GS1"),
                ("classificationCode", "2349010"),
                ("cityTax", "true"),
                ("warehouse", "ignored"),
            ]],
            &[],
        );
        let signed = forms
            .receipt_request(&request, pb::ReceiptType::B2bInvoice)
            .unwrap();
        let expected = pb::SignReceiptRequest {
            operation_id: "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b".into(),
            terminal: Some(terminal()),
            r#type: pb::ReceiptType::B2cReceipt.into(),
            kind: pb::ReceiptKind::Sale.into(),
            receipt_reference: "SI-2025-000117".into(),
            receipt_moment: request.receipt_moment,
            items: vec![pb::ChargeItem {
                name: "Талх".into(),
                bar_code: "19059010880001".into(),
                bar_code_type: pb::BarCodeType::Gs1.into(),
                classification_code: "2349010".into(),
                tax_type: pb::TaxType::VatAble.into(),
                quantity: "1".into(),
                unit_price: "5600.00".into(),
                city_tax_applies: true,
                ..Default::default()
            }],
            payments: vec![pb::PayItem {
                method: pb::PaymentMethod::Cash.into(),
                amount: "5600.00".into(),
                ..Default::default()
            }],
            consumer_no: "10038071".into(),
            cashier: "Болд".into(),
            expected_total_amount: "5600.00".into(),
            expected_total_vat: "500.00".into(),
            expected_total_city_tax: "100.00".into(),
            ..Default::default()
        };
        assert_eq!(signed, expected);
    }

    #[test]
    fn an_explicit_mapping_reads_items_payments_and_the_record_type() {
        let forms = Forms::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/forms/transactionForms.json"),
        )
        .unwrap();
        assert_eq!(
            forms.names(),
            [
                "pharmacy_sale_form",
                "sales_income_form",
                "stock_transfer_form"
            ]
        );
        let request = transaction(
            "sales_income_form",
            &[
                ("total_price", "16200.00"),
                ("vat_amount", "1472.73"),
                ("city_tax", ""),
                ("customer_tin", "37900846788"),
                ("consumer_id", ""),
                ("receipt_type", "b2b_receipt"),
            ],
            &[
                &[
                    ("product_name", "Сүү «Сүү ХК» 1л"),
                    ("barcode", "8654000102657"),
                    ("barcode_type", " gs1 "),
                    ("gs1_class", "2211000"),
                    ("vat_type", "VAT_FREE"),
                    ("tax_product_code", "320"),
                    ("unit", "ширхэг"),
                    ("quantity", "2"),
                    ("price", "3100.00"),
                    ("bears_city_tax", ""),
                    ("lot_no", ""),
                ],
                &[
                    ("product_name", "Парацетамол 500мг"),
                    ("barcode", ""),
                    ("barcode_type", ""),
                    ("gs1_class", "2352000"),
                    ("vat_type", "VAT_ABLE"),
                    ("tax_product_code", ""),
                    ("unit", "хайрцаг"),
                    ("quantity", "0.5"),
                    ("price", "20000"),
                    ("bears_city_tax", "0"),
                    ("lot_no", "ЛОТ-2025/07"),
                ],
            ],
            &[
                &[("method", "CASH"), ("amount", "6200.00"), ("rrn", "")],
                &[
                    ("method", "PAYMENT_CARD"),
                    ("amount", "10000.00"),
                    ("rrn", "123456789123"),
                ],
            ],
        );
        let signed = forms
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap();
        assert_eq!(signed.r#type(), pb::ReceiptType::B2bReceipt);
        assert_eq!(signed.customer_tin, "37900846788");
        assert_eq!(signed.expected_total_amount, "16200.00");
        assert_eq!(signed.expected_total_city_tax, "", "an empty cell is unset");
        assert_eq!(
            signed.items,
            [
                pb::ChargeItem {
                    name: "Сүү «Сүү ХК» 1л".into(),
                    bar_code: "8654000102657".into(),
                    bar_code_type: pb::BarCodeType::Gs1.into(),
                    classification_code: "2211000".into(),
                    tax_type: pb::TaxType::VatFree.into(),
                    tax_product_code: "320".into(),
                    measure_unit: "ширхэг".into(),
                    quantity: "2".into(),
                    unit_price: "3100.00".into(),
                    ..Default::default()
                },
                pb::ChargeItem {
                    name: "Парацетамол 500мг".into(),
                    bar_code_type: pb::BarCodeType::Undefined.into(),
                    classification_code: "2352000".into(),
                    tax_type: pb::TaxType::VatAble.into(),
                    measure_unit: "хайрцаг".into(),
                    quantity: "0.5".into(),
                    unit_price: "20000".into(),
                    lot_no: "ЛОТ-2025/07".into(),
                    ..Default::default()
                },
            ]
        );
        assert_eq!(
            signed.payments,
            [
                pb::PayItem {
                    method: pb::PaymentMethod::Cash.into(),
                    amount: "6200.00".into(),
                    ..Default::default()
                },
                pb::PayItem {
                    method: pb::PaymentMethod::PaymentCard.into(),
                    amount: "10000.00".into(),
                    rrn: "123456789123".into(),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn the_type_falls_back_to_the_form_then_the_environment_then_b2c_receipt() {
        let forms = example();
        let pharmacy = transaction(
            "pharmacy_sale_form",
            &[
                ("total", "1000.00"),
                ("district", "2501"),
                ("report_month", ""),
            ],
            &[&[("name", "Эм"), ("qty", "1"), ("unitPrice", "1000.00")]],
            &[],
        );
        let typed = |request: &pb::SignTransactionRequest, default| {
            forms.receipt_request(request, default).unwrap().r#type()
        };
        assert_eq!(
            typed(&pharmacy, pb::ReceiptType::B2cInvoice),
            pb::ReceiptType::B2cInvoice
        );
        assert_eq!(
            typed(&pharmacy, pb::ReceiptType::Unspecified),
            pb::ReceiptType::B2cReceipt
        );
        let mut sale = transaction(
            "sales_income_form",
            &[
                ("total_price", "1000.00"),
                ("vat_amount", ""),
                ("city_tax", ""),
                ("customer_tin", ""),
                ("consumer_id", ""),
                ("receipt_type", ""),
            ],
            &[&[
                ("product_name", "Талх"),
                ("barcode", ""),
                ("barcode_type", ""),
                ("gs1_class", ""),
                ("vat_type", ""),
                ("tax_product_code", ""),
                ("unit", ""),
                ("quantity", "1"),
                ("price", "1000.00"),
                ("bears_city_tax", ""),
                ("lot_no", ""),
            ]],
            &[],
        );
        // posApiType B2C_RECEIPT wins over the environment.
        assert_eq!(
            typed(&sale, pb::ReceiptType::B2bInvoice),
            pb::ReceiptType::B2cReceipt
        );
        sale.master
            .insert("receipt_type".into(), "B2C_INVOICE".into());
        assert_eq!(
            typed(&sale, pb::ReceiptType::B2bInvoice),
            pb::ReceiptType::B2cInvoice
        );
        sale.master.insert("receipt_type".into(), "B2C_".into());
        let errors = forms
            .receipt_request(&sale, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        assert_eq!(
            errors.errors(),
            [FormError::BadValue {
                form: "sales_income_form".into(),
                key: "type".into(),
                column: "receipt_type".into(),
                value: "B2C_".into(),
                path: "master".into(),
                expected: RECEIPT_TYPES,
            }]
        );
    }

    #[test]
    fn conventional_columns_read_excise_codes_lots_and_a_report_month() {
        let forms = example();
        let request = transaction(
            "pharmacy_sale_form",
            &[
                ("total", "2000.00"),
                ("district", "2501"),
                ("report_month", "2025-06-01"),
            ],
            &[&[
                ("name", "Архи"),
                ("qty", "1"),
                ("unitPrice", "2000.00"),
                ("taxType", "NOT_VAT"),
                ("lotNo", "L-7"),
                (
                    "stockQR",
                    "BF6B1FBA86FB4C41ADDBB01C09C024F5, 0A1B2C3D\nFFEE",
                ),
            ]],
            &[&[
                ("code", "payment_card"),
                ("paidAmount", "2000.00"),
                ("terminalID", "11111"),
                ("maskedCardNumber", "123456XXXXXX7890"),
                ("easy", "true"),
            ]],
        );
        let signed = forms
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap();
        assert_eq!(signed.report_month, "2025-06");
        assert_eq!(signed.district_code, "2501");
        let item = &signed.items[0];
        assert_eq!(item.tax_type(), pb::TaxType::NoVat);
        assert_eq!(item.lot_no, "L-7");
        assert_eq!(
            item.stock_qr,
            ["BF6B1FBA86FB4C41ADDBB01C09C024F5", "0A1B2C3D", "FFEE"]
        );
        let payment = &signed.payments[0];
        assert_eq!(payment.method(), pb::PaymentMethod::PaymentCard);
        assert_eq!(payment.card_terminal_id, "11111");
        assert_eq!(payment.masked_card_number, "123456XXXXXX7890");
        assert!(payment.easy_register);
        assert_eq!(stock_codes(r#"["A1", "B2"]"#).unwrap(), ["A1", "B2"]);
        assert_eq!(stock_codes(r#"["A1", 2]"#), None);
        assert_eq!(month("2025-06"), "2025-06");
    }

    #[test]
    fn a_form_without_posapi_enabled_true_issues_no_receipt() {
        let forms = Forms::parse(
            r#"{ "off": { "posApiEnabled": false, "posApiMapping": { "totalAmount": "t" } },
                 "plain": { "masterTable": "t" } }"#,
            FILE,
        )
        .unwrap();
        for form in ["off", "plain"] {
            assert_eq!(forms.issues_receipts(form), Some(false));
            let request = transaction(form, &[("t", "1")], &[], &[]);
            let errors = forms
                .receipt_request(&request, pb::ReceiptType::B2cReceipt)
                .unwrap_err();
            assert!(errors.not_enabled());
            assert_eq!(errors.code(), tonic::Code::FailedPrecondition);
            assert_eq!(
                errors.errors(),
                [FormError::NotEnabled { form: form.into() }]
            );
            let ApiError::FailedPrecondition(message) = ApiError::from(errors) else {
                panic!("not FAILED_PRECONDITION");
            };
            assert_eq!(
                message,
                format!("form {form:?} does not issue receipts (posApiEnabled is false or absent)")
            );
        }
    }

    #[test]
    fn an_unknown_form_names_the_known_ones() {
        let request = transaction("sales_form", &[], &[], &[]);
        let errors = example()
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        let [error] = errors.errors() else {
            panic!("{errors}");
        };
        assert_eq!(error.field(), "form_name");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            error.to_string(),
            "there is no form \"sales_form\" in transactionForms.json; its forms are \
             \"pharmacy_sale_form\", \"sales_income_form\", \"stock_transfer_form\""
        );
        assert_eq!(
            Forms::default()
                .receipt_request(&request, pb::ReceiptType::B2cReceipt)
                .unwrap_err()
                .to_string(),
            "form_name: there is no form \"sales_form\": transactionForms.json defines no forms"
        );
    }

    #[test]
    fn every_missing_column_is_named_with_its_form_and_row() {
        let request = transaction(
            "sales_income_form",
            // No vat_amount, city_tax, consumer_id or receipt_type column.
            &[("total_price", "1000.00"), ("customer_tin", "")],
            &[
                &[
                    ("product_name", "Талх"),
                    ("quantity", "1"),
                    ("price", "500"),
                ],
                &[("product_name", "Сүү"), ("quantity", "1"), ("price", "500")],
                &[("product_name", "Цай"), ("price", "500")],
            ],
            &[],
        );
        let errors = example()
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        assert_eq!(errors.code(), tonic::Code::InvalidArgument);
        let missing: Vec<(String, String, String)> = errors
            .errors()
            .iter()
            .filter_map(|e| match e {
                FormError::MissingColumn { key, column, .. } => {
                    Some((e.field(), key.clone(), column.clone()))
                }
                _ => None,
            })
            .collect();
        let named = |field: &str, key: &str, column: &str| {
            missing.contains(&(field.to_owned(), key.to_owned(), column.to_owned()))
        };
        assert!(named("master", "totalVAT", "vat_amount"), "{missing:?}");
        assert!(named("master", "type", "receipt_type"), "{missing:?}");
        assert!(named("item_rows[0].columns", "items.barCode", "barcode"));
        assert!(named("item_rows[2].columns", "items.qty", "quantity"));
        assert!(!named("item_rows[1].columns", "items.qty", "quantity"));
        let qty = errors
            .errors()
            .iter()
            .find(|e| e.field() == "item_rows[2].columns" && e.to_string().contains("quantity"))
            .unwrap();
        assert_eq!(
            qty.to_string(),
            "form \"sales_income_form\" reads items.qty from column \"quantity\", which \
             item_rows[2] does not have"
        );
        assert_eq!(
            *qty,
            FormError::MissingColumn {
                form: "sales_income_form".into(),
                key: "items.qty".into(),
                column: "quantity".into(),
                row: Some(("item_rows", 2)),
            }
        );
        let ApiError::InvalidArgument(violations) = ApiError::from(errors.clone()) else {
            panic!("not INVALID_ARGUMENT");
        };
        assert_eq!(violations.len(), errors.errors().len());
        assert!(
            violations.iter().any(
                |v| v.field == "item_rows[2].columns" && v.description.contains("\"quantity\"")
            )
        );
    }

    #[test]
    fn conventional_columns_are_required_only_where_every_row_needs_them() {
        let request = transaction(
            "pharmacy_sale_form",
            &[("total", "1"), ("district", ""), ("report_month", "")],
            &[&[("name", "Эм"), ("unitPrice", "1")]],
            &[&[("code", "CASH")]],
        );
        let errors = example()
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        let fields: Vec<String> = errors.errors().iter().map(FormError::field).collect();
        assert_eq!(fields, ["item_rows[0].columns", "payment_rows[0].columns"]);
        assert!(errors.to_string().contains("items.qty from column \"qty\""));
        assert!(
            errors
                .to_string()
                .contains("payments.paidAmount from column \"paidAmount\"")
        );
    }

    #[test]
    fn a_bad_tax_type_is_named_with_its_column_and_what_it_may_be() {
        let mut request = transaction(
            "pharmacy_sale_form",
            &[("total", "1000.00"), ("district", ""), ("report_month", "")],
            &[
                &[
                    ("name", "Талх"),
                    ("qty", "1"),
                    ("unitPrice", "500"),
                    ("taxType", "vat_able"),
                ],
                &[
                    ("name", "Сүү"),
                    ("qty", "1"),
                    ("unitPrice", "500"),
                    ("taxType", "НӨАТ"),
                ],
            ],
            &[],
        );
        let errors = example()
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        let [error] = errors.errors() else {
            panic!("{errors}");
        };
        assert_eq!(error.field(), "item_rows[1].columns");
        assert_eq!(
            error.to_string(),
            "form \"pharmacy_sale_form\" reads items.taxType from column \"taxType\", whose \
             value \"НӨАТ\" is not VAT_ABLE, VAT_FREE, VAT_ZERO or NO_VAT"
        );
        // Every code that does not read is named at once.
        request.item_rows[0]
            .columns
            .insert("barCodeType".into(), "EAN".into());
        request.item_rows[0]
            .columns
            .insert("cityTax".into(), "yes".into());
        request.payment_rows.push(pb::TransactionRow {
            columns: row(&[("code", "CARD"), ("paidAmount", "1000.00")]),
        });
        let errors = example()
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .unwrap_err();
        let bad: Vec<(String, &str)> = errors
            .errors()
            .iter()
            .map(|e| match e {
                FormError::BadValue { key, value, .. } => (key.clone(), value.as_str()),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            bad,
            [
                ("items.barCodeType".to_owned(), "EAN"),
                ("items.cityTax".to_owned(), "yes"),
                ("items.taxType".to_owned(), "НӨАТ"),
                ("payments.code".to_owned(), "CARD"),
            ]
        );
    }

    #[test]
    fn a_record_needs_items_and_a_payment() {
        let forms = Forms::parse(
            r#"{ "f": { "posApiEnabled": true, "posApiMapping": { "customerTin": "tin" } } }"#,
            FILE,
        )
        .unwrap();
        let errors = forms
            .receipt_request(
                &transaction("f", &[("tin", "")], &[], &[]),
                pb::ReceiptType::B2cReceipt,
            )
            .unwrap_err();
        assert_eq!(
            errors.errors(),
            [
                FormError::NoItems { form: "f".into() },
                FormError::MissingMapping {
                    form: "f".into(),
                    key: "totalAmount".into()
                },
            ]
        );
        assert_eq!(
            errors.to_string(),
            "item_rows: a record of form \"f\" needs at least one item row; payment_rows: form \
             \"f\" maps no totalAmount, so a record without payment_rows has no payment: send \
             payment_rows or map totalAmount in posApiMapping"
        );
        // A mapped total that is empty leaves nothing to pay in cash either.
        let errors = example()
            .receipt_request(
                &transaction(
                    "pharmacy_sale_form",
                    &[("total", ""), ("district", ""), ("report_month", "")],
                    &[&[("name", "Эм"), ("qty", "1"), ("unitPrice", "1")]],
                    &[],
                ),
                pb::ReceiptType::B2cReceipt,
            )
            .unwrap_err();
        let [FormError::BadValue { key, path, .. }] = errors.errors() else {
            panic!("{errors}");
        };
        assert_eq!((key.as_str(), path.as_str()), ("totalAmount", "master"));
    }

    #[test]
    fn a_malformed_file_is_one_line_naming_the_form_and_the_key() {
        let cases = [
            (
                one_form(r#""posApiEnabled": true, "posApiMapping": { "totalAmount": 5 }"#),
                "transactionForms.json: form \"f\": posApiMapping.totalAmount must be a column \
                 name (a string), not 5",
            ),
            (
                one_form(r#""posApiEnabled": "yes""#),
                "transactionForms.json: form \"f\": posApiEnabled must be true or false, not \"yes\"",
            ),
            (
                one_form(r#""posApiEnabled": null"#),
                "transactionForms.json: form \"f\": posApiEnabled must be true or false, not null",
            ),
            (
                one_form(r#""posApiType": "B2C""#),
                "transactionForms.json: form \"f\": posApiType must be one of B2C_RECEIPT, \
                 B2B_RECEIPT, B2C_INVOICE or B2B_INVOICE, not \"B2C\"",
            ),
            (
                one_form(r#""posApiType": "UNSPECIFIED""#),
                "transactionForms.json: form \"f\": posApiType must be one of B2C_RECEIPT, \
                 B2B_RECEIPT, B2C_INVOICE or B2B_INVOICE, not \"UNSPECIFIED\"",
            ),
            (
                one_form(r#""posApiMapping": { "totalAmount": "t", "qty": "quantity" }"#),
                "transactionForms.json: form \"f\": posApiMapping.qty is not a POSAPI field \
                 fiscus maps: an item row's column is mapped as items.qty",
            ),
            (
                one_form(r#""posApiMapping": { "items.totalAmount": "line_total" }"#),
                "transactionForms.json: form \"f\": posApiMapping.items.totalAmount is not a \
                 mapping key: is computed by fiscus for each item (map the master totalAmount, \
                 totalVAT and totalCityTax to cross-check the receipt's totals)",
            ),
            (
                one_form(r#""posApiMapping": { "customerTin": " " }"#),
                "transactionForms.json: form \"f\": posApiMapping.customerTin must be a column \
                 name, not \" \"",
            ),
            (
                one_form(r#""posApiMapping": { "items.qty": ["a", "b"] }"#),
                "transactionForms.json: form \"f\": posApiMapping.items.qty must be a column \
                 name (a string), not an array",
            ),
            (
                one_form(r#""posApiMapping": ["totalAmount"]"#),
                "transactionForms.json: form \"f\": posApiMapping must be an object of POSAPI \
                 field to column name, not an array",
            ),
            (
                one_form(r#""posApiEnable": true"#),
                "transactionForms.json: form \"f\": posApiEnable is not a key fiscus knows: the \
                 POSAPI keys of a form are posApiEnabled, posApiType and posApiMapping",
            ),
            (
                one_form(r#""posApiEnabled": true"#),
                "transactionForms.json: form \"f\": posApiEnabled is true but there is no \
                 posApiMapping: map the record's columns to POSAPI fields",
            ),
            (
                one_form(
                    r#""posApiEnabled": true, "posApiMapping": { "items.name": "n", "items.barCode": "b" }"#,
                ),
                "transactionForms.json: form \"f\": posApiMapping maps items.name but not \
                 items.qty, items.unitPrice: a form that maps items.* keys maps at least \
                 items.name, items.qty, items.unitPrice (or none, for the columns name, qty, \
                 unitPrice)",
            ),
            (
                one_form(
                    r#""posApiEnabled": true, "posApiMapping": { "payments.data.rrn": "rrn" }"#,
                ),
                "transactionForms.json: form \"f\": posApiMapping maps payments.data.rrn but not \
                 payments.code, payments.paidAmount: a form that maps payments.* keys maps at \
                 least payments.code, payments.paidAmount (or none, for the columns code, \
                 paidAmount)",
            ),
            (
                one_form(r#""posApiMapping": { "id": "ebarimt", "lottery": "ebarimt" }"#),
                "transactionForms.json: form \"f\": posApiMapping.id and posApiMapping.lottery \
                 both write column \"ebarimt\"",
            ),
            (
                one_form(r#""posApiMapping": { "consumerNo": "id" }"#),
                "transactionForms.json: form \"f\": the answer's id (written back by default) \
                 writes column \"id\", which posApiMapping.consumerNo is read from",
            ),
            (
                r#"{ "f": "sales" }"#.to_owned(),
                "transactionForms.json: form \"f\": must be an object (the form's definition), \
                 not \"sales\"",
            ),
            (
                "[]".to_owned(),
                "transactionForms.json: must be a JSON object of form name to form definition, \
                 not an array",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(malformed(&text), expected, "{text}");
        }
        let not_json = malformed("{ \"f\": { \"posApiEnabled\": true,\n }");
        assert!(
            not_json.starts_with("transactionForms.json: is not valid JSON: "),
            "{not_json}"
        );
        assert!(not_json.contains("line 2"), "{not_json}");
    }

    #[test]
    fn disabled_forms_are_checked_too_but_need_not_be_complete() {
        // A half-made mapping of a form that issues no receipts yet is no error...
        assert!(
            Forms::parse(
                &one_form(r#""posApiEnabled": false, "posApiMapping": { "items.barCode": "b" }"#),
                FILE
            )
            .is_ok()
        );
        // ...a misspelt key is.
        assert!(
            malformed(&one_form(
                r#""posApiEnabled": false, "posApiMapping": { "items.barcode": "b" }"#
            ))
            .contains("posApiMapping.items.barcode is not a POSAPI field fiscus maps")
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let error = Forms::load(Path::new("/nonexistent/transactionForms.json"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("/nonexistent/transactionForms.json: cannot be read: "),
            "{error}"
        );
    }

    fn accepted() -> pb::Receipt {
        pb::Receipt {
            id: "0190a3c4-0000-7000-8000-000000000001".into(),
            fiscal_state: pb::FiscalState::Accepted.into(),
            provider: pb::Provider::Ebarimt.into(),
            ebarimt_id: "037900846788001091500000000000021".into(),
            lottery: "ZK 12345678".into(),
            qr_data: "2450170381359011213125016301523".into(),
            // 2025-06-15 15:06:40 UTC
            accepted_at: Some(prost_types::Timestamp {
                seconds: 1_750_000_000,
                nanos: 500_000_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_accepted_receipt_is_written_back_by_default_to_columns_of_the_answers_names() {
        let forms = Forms::parse(SEED, FILE).unwrap();
        let written = forms.write_back("sales_income_form", &accepted());
        assert_eq!(
            written,
            row(&[
                ("id", "037900846788001091500000000000021"),
                ("lottery", "ZK 12345678"),
                ("qrData", "2450170381359011213125016301523"),
                ("date", "2025-06-15 23:06:40"),
            ])
        );
    }

    #[test]
    fn a_mapped_write_back_writes_exactly_the_mapped_answers() {
        let forms = example();
        assert_eq!(
            forms.write_back("sales_income_form", &accepted()),
            row(&[
                ("ebarimt_id", "037900846788001091500000000000021"),
                ("qr_data", "2450170381359011213125016301523"),
                ("ebarimt_date", "2025-06-15 23:06:40"),
                ("fiscal_state", "ACCEPTED"),
            ])
        );
        let pending = pb::Receipt {
            id: "0190a3c4-0000-7000-8000-000000000002".into(),
            fiscal_state: pb::FiscalState::Pending.into(),
            provider: pb::Provider::Ebarimt.into(),
            qr_data: "fiscus:1:37900846788:001:001:2:ab".into(),
            ..Default::default()
        };
        // Not yet accepted: no ДДТД, no date, and not fiscus's stand-in QR data.
        assert_eq!(
            forms.write_back("sales_income_form", &pending),
            row(&[("fiscal_state", "PENDING")])
        );
        let local = pb::Receipt {
            fiscal_state: pb::FiscalState::LocalSigned.into(),
            provider: pb::Provider::Builtin.into(),
            ..pending.clone()
        };
        assert_eq!(
            forms.write_back("sales_income_form", &local),
            row(&[
                ("qr_data", "fiscus:1:37900846788:001:001:2:ab"),
                ("fiscal_state", "LOCAL_SIGNED"),
            ])
        );
        assert!(forms.write_back("no_such_form", &accepted()).is_empty());
        let with_id = Forms::parse(
            &one_form(r#""posApiMapping": { "receiptId": "fiscus_id", "id": "ddtd" }"#),
            FILE,
        )
        .unwrap();
        assert_eq!(
            with_id.write_back("f", &pending),
            row(&[("fiscus_id", "0190a3c4-0000-7000-8000-000000000002")])
        );
    }
}
