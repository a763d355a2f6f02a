//! From fiscus's typed receipt to the body of `POST /rest/receipt`.
//!
//! The domain receipt already holds every amount exactly (each item's gross total, VAT and city
//! tax, split per item by fiscus); mapping only groups and sums them, never recomputes a tax.
//! The same receipt always maps to the same request, byte for byte: sub-receipts in the fixed
//! order `VAT_ABLE`, `VAT_FREE`, `VAT_ZERO`, `NO_VAT`, items by position, payments cash first.
//! That is what lets a caller who lost an answer post the identical request again (see the
//! module docs of [`crate::ebarimt`]).
//!
//! # Payments
//!
//! POSAPI knows two payment codes, `CASH` and `PAYMENT_CARD`, and no change:
//!
//! | fiscus method | POSAPI |
//! | --- | --- |
//! | `CASH` | `CASH`, all cash payments in one, less the `CHANGE` handed back |
//! | `CHANGE` | deducted from `CASH` (more change than cash is an error) |
//! | `PAYMENT_CARD` | `PAYMENT_CARD` with `data{terminalID, rrn, maskedCardNumber, easy, bankCode?}` |
//! | `BANK_TRANSFER`, `QR` | `PAYMENT_CARD`: the closest documented code for money moved through a bank rather than handed over; its `data` carries what the payment has (`rrn`, or else its reference; terminal and card number empty when there is none) and `easy` as the payment says |
//! | `VOUCHER`, `OTHER` | `CASH`: neither moves money through a bank at the sale, so `PAYMENT_CARD` (whose data describes a card transaction) would misstate them; they count with the cash |

use fiscus_domain::{Money, PaymentMethod, Receipt, ReceiptKind};

use super::types::{
    CardData, ItemData, Payment, PaymentCode, PaymentStatus, ReceiptItem, ReceiptRequest,
    SubReceipt, TaxType, WireMoney, WireQuantity,
};

/// Why a receipt cannot be sent to POSAPI as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// A zero receipt, or nothing left after a refund: POSAPI has no empty receipt. The caller
    /// decides (nothing to send, or a DELETE of the receipt it replaces).
    #[error("the receipt has no items: POSAPI has nothing to register")]
    NoItems,
    #[error("e-barimt amounts are in MNT, not {0}")]
    Currency(String),
    #[error("billIdSuffix must not be empty: it makes the ДДТД unique per POS and day")]
    NoBillIdSuffix,
    #[error("a {0} needs the buyer's TIN (customer_tin)")]
    MissingCustomerTin(&'static str),
    #[error("districtCode {0:?} is not 4 digits (receipt district_code or the default)")]
    DistrictCode(String),
    #[error("item {position}: a {tax_type} item needs its taxProductCode")]
    MissingTaxProductCode {
        position: u32,
        tax_type: &'static str,
    },
    #[error(
        "item {position}: total_amount {total} is not quantity × unit_price ({expected}); POSAPI checks it"
    )]
    ItemAmounts {
        position: u32,
        total: Money,
        expected: Money,
    },
    #[error(
        "more change ({change}) than cash ({cash}): POSAPI has no change, it is deducted from CASH"
    )]
    ChangeExceedsCash { change: Money, cash: Money },
    #[error("the payments come to {paid} but the items to {total}")]
    Unpaid { paid: Money, total: Money },
    #[error("the amounts are too large")]
    Overflow,
}

impl From<fiscus_domain::Overflow> for MappingError {
    fn from(_: fiscus_domain::Overflow) -> Self {
        MappingError::Overflow
    }
}

/// The `POST /rest/receipt` body of `receipt`.
///
/// `bill_id_suffix` must be unique per POS and Ulaanbaatar day and the same on every attempt
/// of this receipt. `inactive_id` is the ДДТД this receipt replaces, for a correction (a partial
/// refund is sent as a correction carrying what remains). `default_district_code` is used when
/// the receipt has none.
pub fn receipt_request(
    receipt: &Receipt,
    bill_id_suffix: &str,
    inactive_id: Option<&str>,
    default_district_code: &str,
) -> Result<ReceiptRequest, MappingError> {
    if receipt.kind == ReceiptKind::Zero || receipt.items.is_empty() {
        return Err(MappingError::NoItems);
    }
    if !receipt.currency.is_empty() && receipt.currency != "MNT" {
        return Err(MappingError::Currency(receipt.currency.clone()));
    }
    if bill_id_suffix.is_empty() {
        return Err(MappingError::NoBillIdSuffix);
    }
    let receipt_type = receipt.receipt_type;
    if receipt_type.is_b2b() && receipt.customer_tin.is_empty() {
        return Err(MappingError::MissingCustomerTin(receipt_type.as_str()));
    }
    let district_code =
        non_empty(&receipt.district_code).unwrap_or_else(|| default_district_code.to_owned());
    if district_code.len() != 4 || !district_code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MappingError::DistrictCode(district_code));
    }

    let mut sub_receipts = Vec::new();
    for tax_type in fiscus_domain::TaxType::ALL {
        let mut items: Vec<&fiscus_domain::Item> = receipt
            .items
            .iter()
            .filter(|item| item.tax_type == *tax_type)
            .collect();
        if items.is_empty() {
            continue;
        }
        items.sort_by_key(|item| item.position);
        let lines = items
            .iter()
            .map(|item| receipt_item(item))
            .collect::<Result<Vec<_>, _>>()?;
        let sum = |part: fn(&fiscus_domain::Item) -> Money| {
            Money::sum(
                items
                    .iter()
                    .map(|item| part(item))
                    .collect::<Vec<_>>()
                    .iter(),
            )
        };
        sub_receipts.push(SubReceipt {
            total_amount: WireMoney(sum(|i| i.total_amount)?),
            tax_type: TaxType::from(*tax_type),
            merchant_tin: receipt.merchant_tin.clone(),
            customer_tin: None,
            total_vat: Some(WireMoney(sum(|i| i.total_vat)?)),
            total_city_tax: Some(WireMoney(sum(|i| i.total_city_tax)?)),
            bank_account_no: non_empty(&receipt.bank_account),
            iban: non_empty(&receipt.iban),
            invoice_id: None,
            data: None,
            items: lines,
        });
    }
    let total = |part: fn(&SubReceipt) -> Money| {
        Money::sum(sub_receipts.iter().map(part).collect::<Vec<_>>().iter())
    };
    let total_amount = total(|s| s.total_amount.0)?;
    let total_vat = total(|s| s.total_vat.map_or(Money::ZERO, |m| m.0))?;
    let total_city_tax = total(|s| s.total_city_tax.map_or(Money::ZERO, |m| m.0))?;

    let payments = payments(receipt)?;
    let paid = Money::sum(
        payments
            .iter()
            .map(|p| p.paid_amount.0)
            .collect::<Vec<_>>()
            .iter(),
    )?;
    if paid != total_amount {
        return Err(MappingError::Unpaid {
            paid,
            total: total_amount,
        });
    }

    Ok(ReceiptRequest {
        branch_no: receipt.branch_no.clone(),
        total_amount: WireMoney(total_amount),
        total_vat: Some(WireMoney(total_vat)),
        total_city_tax: Some(WireMoney(total_city_tax)),
        district_code: Some(district_code),
        merchant_tin: receipt.merchant_tin.clone(),
        pos_no: receipt.pos_no.clone(),
        customer_tin: receipt_type.is_b2b().then(|| receipt.customer_tin.clone()),
        consumer_no: (receipt_type == fiscus_domain::ReceiptType::B2cReceipt)
            .then(|| non_empty(&receipt.consumer_no))
            .flatten(),
        receipt_type,
        inactive_id: inactive_id.and_then(non_empty),
        report_month: non_empty(&receipt.report_month),
        bill_id_suffix: bill_id_suffix.to_owned(),
        invoice_id: non_empty(&receipt.invoice_id),
        data: None,
        receipts: sub_receipts,
        payments,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn receipt_item(item: &fiscus_domain::Item) -> Result<ReceiptItem, MappingError> {
    let expected = item
        .unit_price
        .times(item.quantity)
        .ok_or(MappingError::Overflow)?;
    if expected != item.total_amount {
        return Err(MappingError::ItemAmounts {
            position: item.position,
            total: item.total_amount,
            expected,
        });
    }
    let tax_product_code = if item.tax_type.bears_vat() {
        None
    } else {
        Some(
            non_empty(&item.tax_product_code).ok_or(MappingError::MissingTaxProductCode {
                position: item.position,
                tax_type: item.tax_type.as_str(),
            })?,
        )
    };
    let bar_code = non_empty(&item.bar_code);
    let bar_code_type = if bar_code.is_some() {
        item.bar_code_type
    } else {
        fiscus_domain::BarCodeType::Undefined
    };
    let data = ItemData {
        lot_no: non_empty(&item.lot_no),
        stock_qr: (!item.stock_qr.is_empty()).then(|| item.stock_qr.clone()),
    };
    Ok(ReceiptItem {
        name: item.name.clone(),
        bar_code,
        bar_code_type: Some(bar_code_type),
        classification_code: non_empty(&item.classification_code),
        tax_product_code,
        measure_unit: item.measure_unit.clone(),
        qty: WireQuantity(item.quantity),
        unit_price: WireMoney(item.unit_price),
        total_vat: Some(WireMoney(item.total_vat)),
        total_city_tax: Some(WireMoney(item.total_city_tax)),
        total_amount: WireMoney(item.total_amount),
        data: (data != ItemData::default()).then_some(data),
    })
}

/// The payments as POSAPI knows them (see the module docs): one net `CASH`, then the others.
fn payments(receipt: &Receipt) -> Result<Vec<Payment>, MappingError> {
    let mut cash = Money::ZERO;
    let mut change = Money::ZERO;
    let mut electronic = Vec::new();
    for payment in &receipt.payments {
        let add = |sum: Money| {
            sum.checked_add(payment.amount)
                .ok_or(MappingError::Overflow)
        };
        match payment.method {
            PaymentMethod::Cash | PaymentMethod::Voucher | PaymentMethod::Other => {
                cash = add(cash)?;
            }
            PaymentMethod::Change => change = add(change)?,
            PaymentMethod::PaymentCard | PaymentMethod::BankTransfer | PaymentMethod::Qr => {
                if !payment.amount.is_positive() {
                    continue;
                }
                let rrn = if payment.rrn.is_empty() {
                    payment.reference.clone()
                } else {
                    payment.rrn.clone()
                };
                electronic.push(Payment {
                    code: PaymentCode::PaymentCard,
                    exchange_code: None,
                    status: PaymentStatus::Paid,
                    paid_amount: WireMoney(payment.amount),
                    data: Some(CardData {
                        terminal_id: payment.card_terminal_id.clone(),
                        rrn,
                        masked_card_number: payment.masked_card_number.clone(),
                        easy: payment.easy_register,
                        bank_code: non_empty(&payment.bank_code),
                    }),
                });
            }
        }
    }
    let net_cash = cash.checked_sub(change).ok_or(MappingError::Overflow)?;
    if net_cash.is_negative() {
        return Err(MappingError::ChangeExceedsCash { change, cash });
    }
    let mut payments = Vec::with_capacity(electronic.len().saturating_add(1));
    if net_cash.is_positive() {
        payments.push(Payment {
            code: PaymentCode::Cash,
            exchange_code: None,
            status: PaymentStatus::Paid,
            paid_amount: WireMoney(net_cash),
            data: None,
        });
    }
    payments.extend(electronic);
    Ok(payments)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use fiscus_domain::receipt::{Format, instant};
    use fiscus_domain::{
        BarCodeType, Item, Payment as DomainPayment, Quantity, Rate, ReceiptType,
        TaxType as DomainTaxType,
    };

    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    pub(crate) fn item(position: u32, name: &str, qty: &str, price: &str, city: &str) -> Item {
        Item {
            position,
            name: name.into(),
            bar_code: String::new(),
            bar_code_type: BarCodeType::Undefined,
            classification_code: "2349010".into(),
            tax_type: DomainTaxType::VatAble,
            tax_product_code: String::new(),
            measure_unit: "ш".into(),
            quantity: Quantity::parse(qty).unwrap(),
            unit_price: m(price),
            vat_rate: Rate::parse("10").unwrap(),
            city_tax_rate: Rate::parse(city).unwrap(),
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

    fn exempt(mut item: Item, tax_type: DomainTaxType, code: &str) -> Item {
        item.tax_type = tax_type;
        item.tax_product_code = code.into();
        item.vat_rate = Rate::ZERO;
        item.city_tax_rate = Rate::ZERO;
        item.priced().unwrap()
    }

    pub(crate) fn pay(method: PaymentMethod, amount: &str) -> DomainPayment {
        DomainPayment {
            method,
            amount: m(amount),
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

    pub(crate) fn receipt(items: Vec<Item>, payments: Vec<DomainPayment>) -> Receipt {
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
            payments,
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
        receipt.total_up().unwrap();
        receipt
    }

    fn json(request: &ReceiptRequest) -> String {
        serde_json::to_string(request).unwrap()
    }

    #[test]
    fn a_mixed_tax_receipt_has_one_sub_receipt_per_tax_type_with_exact_sums() {
        let items = vec![
            item(1, "Талх", "1", "5600", "2"),
            exempt(
                item(2, "Сүү", "2", "2500", "0"),
                DomainTaxType::VatFree,
                "320",
            ),
            item(3, "Ус", "3", "1000", "0"),
            exempt(
                item(4, "Экспорт", "1", "5000", "0"),
                DomainTaxType::VatZero,
                "502",
            ),
            exempt(
                item(5, "Виски", "1", "7000", "0"),
                DomainTaxType::NoVat,
                "0000414",
            ),
        ];
        let receipt = receipt(items, vec![pay(PaymentMethod::Cash, "25600")]);
        let request = receipt_request(&receipt, "7", None, "2501").unwrap();

        let types: Vec<TaxType> = request.receipts.iter().map(|s| s.tax_type).collect();
        assert_eq!(
            types,
            [
                TaxType::VatAble,
                TaxType::VatFree,
                TaxType::VatZero,
                TaxType::NoVat
            ]
        );
        let vat_able = &request.receipts[0];
        assert_eq!(vat_able.items.len(), 2);
        assert_eq!(vat_able.total_amount.0, m("8600"));
        // 5600 with 2 % city tax: 500 + 100; 3000 with none: 272.73.
        assert_eq!(vat_able.total_vat.unwrap().0, m("772.73"));
        assert_eq!(vat_able.total_city_tax.unwrap().0, m("100"));
        assert_eq!(vat_able.items[0].tax_product_code, None);
        assert_eq!(request.receipts[1].total_amount.0, m("5000"));
        assert_eq!(
            request.receipts[1].items[0].tax_product_code.as_deref(),
            Some("320")
        );
        assert_eq!(request.receipts[1].total_vat.unwrap().0, Money::ZERO);
        assert_eq!(request.total_amount.0, m("25600"));
        assert_eq!(request.total_vat.unwrap().0, m("772.73"));
        assert_eq!(request.total_city_tax.unwrap().0, m("100"));
        assert_eq!(request.bill_id_suffix, "7");
        assert_eq!(request.district_code.as_deref(), Some("2501"));

        let text = json(&request);
        assert!(text.contains(r#""taxType":"NO_VAT""#), "{text}");
        assert!(text.contains(r#""totalVAT":772.73"#), "{text}");
        assert!(
            text.contains(r#""barCode":null,"barCodeType":"UNDEFINED""#),
            "{text}"
        );
        assert!(text.contains(r#""taxProductCode":null"#), "{text}");
        // Mapping the same receipt again gives the same bytes: a re-post is identical.
        assert_eq!(
            json(&receipt_request(&receipt, "7", None, "2501").unwrap()),
            text
        );
    }

    #[test]
    fn amounts_are_written_as_exact_decimal_numbers() {
        // 2.8 × 99.99 = 279.972 → 279.97; VAT 279.97 × 10/112 = 24.997… → 25.00.
        let receipt = receipt(
            vec![item(1, "Бензин", "2.8", "99.99", "2")],
            vec![pay(PaymentMethod::Cash, "279.97")],
        );
        let text = json(&receipt_request(&receipt, "1", None, "2501").unwrap());
        assert!(text.contains(r#""qty":2.800"#), "{text}");
        assert!(text.contains(r#""unitPrice":99.99"#), "{text}");
        assert!(text.contains(r#""totalAmount":279.97"#), "{text}");
        assert!(text.contains(r#""totalVAT":25.00"#), "{text}");
        assert!(text.contains(r#""totalCityTax":5.00"#), "{text}");
        assert!(text.contains(r#""paidAmount":279.97"#), "{text}");
        // No float artefact anywhere: every number has at most three fraction digits.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        fn numbers(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Number(n) => out.push(n.to_string()),
                serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
                serde_json::Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        numbers(&value, &mut found);
        assert!(!found.is_empty());
        for number in found {
            let fraction = number.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(fraction <= 3, "{number} in {text}");
        }
    }

    #[test]
    fn a_card_payment_with_change_nets_the_change_against_cash() {
        let mut card = pay(PaymentMethod::PaymentCard, "3600");
        card.card_terminal_id = "T-77".into();
        card.rrn = "123456789012".into();
        card.masked_card_number = "123456XXXXXX7890".into();
        card.easy_register = true;
        card.bank_code = "05".into();
        let receipt = receipt(
            vec![item(1, "Талх", "1", "5600", "2")],
            vec![
                pay(PaymentMethod::Cash, "5000"),
                card,
                pay(PaymentMethod::Change, "3000"),
            ],
        );
        let request = receipt_request(&receipt, "1", None, "2501").unwrap();
        assert_eq!(request.payments.len(), 2);
        assert_eq!(request.payments[0].code, PaymentCode::Cash);
        assert_eq!(request.payments[0].paid_amount.0, m("2000"));
        assert_eq!(request.payments[0].data, None);
        let data = request.payments[1].data.clone().unwrap();
        assert_eq!(request.payments[1].code, PaymentCode::PaymentCard);
        assert_eq!(data.terminal_id, "T-77");
        assert_eq!(data.rrn, "123456789012");
        assert!(data.easy);
        assert_eq!(data.bank_code.as_deref(), Some("05"));
        let text = json(&request);
        assert!(
            text.contains(r#""data":{"terminalID":"T-77","rrn":"123456789012","maskedCardNumber":"123456XXXXXX7890","easy":true,"bankCode":"05"}"#),
            "{text}"
        );

        let too_much_change = super::tests::receipt(
            vec![item(1, "Талх", "1", "5600", "2")],
            vec![
                pay(PaymentMethod::PaymentCard, "5600"),
                pay(PaymentMethod::Change, "100"),
            ],
        );
        assert!(matches!(
            receipt_request(&too_much_change, "1", None, "2501"),
            Err(MappingError::ChangeExceedsCash { .. })
        ));
    }

    #[test]
    fn other_methods_map_to_the_documented_codes() {
        let mut qr = pay(PaymentMethod::Qr, "1000");
        qr.reference = "mia-tx-42".into();
        let receipt = receipt(
            vec![item(1, "Талх", "1", "5600", "2")],
            vec![
                qr,
                pay(PaymentMethod::BankTransfer, "1600"),
                pay(PaymentMethod::Voucher, "2000"),
                pay(PaymentMethod::Other, "1000"),
            ],
        );
        let request = receipt_request(&receipt, "1", None, "2501").unwrap();
        let codes: Vec<(PaymentCode, Money)> = request
            .payments
            .iter()
            .map(|p| (p.code, p.paid_amount.0))
            .collect();
        assert_eq!(
            codes,
            [
                (PaymentCode::Cash, m("3000")),
                (PaymentCode::PaymentCard, m("1000")),
                (PaymentCode::PaymentCard, m("1600")),
            ]
        );
        assert_eq!(request.payments[1].data.as_ref().unwrap().rrn, "mia-tx-42");
    }

    #[test]
    fn pharmacy_lot_numbers_and_excise_stamps_go_into_item_data() {
        let mut medicine = item(1, "Парацетамол 500мг", "2", "1200", "0");
        medicine.lot_no = "LOT-2026-11".into();
        medicine.bar_code = "8650000000012".into();
        medicine.bar_code_type = BarCodeType::Gs1;
        let mut vodka = item(2, "Архи Ерөөл 0.75 л", "1", "30000", "2");
        vodka.stock_qr = vec!["A17F974BE497F14CE0536F50A8C057A7".into()];
        let receipt = receipt(
            vec![medicine, vodka],
            vec![pay(PaymentMethod::Cash, "32400")],
        );
        let request = receipt_request(&receipt, "1", None, "2501").unwrap();
        let items = &request.receipts[0].items;
        assert_eq!(
            items[0].data.as_ref().unwrap().lot_no.as_deref(),
            Some("LOT-2026-11")
        );
        assert_eq!(items[0].bar_code.as_deref(), Some("8650000000012"));
        assert_eq!(items[0].bar_code_type, Some(BarCodeType::Gs1));
        let text = json(&request);
        assert!(text.contains(r#""data":{"lotNo":"LOT-2026-11"}"#), "{text}");
        assert!(
            text.contains(r#""data":{"stockQR":["A17F974BE497F14CE0536F50A8C057A7"]}"#),
            "{text}"
        );
    }

    #[test]
    fn cyrillic_names_are_written_as_they_are() {
        let receipt = receipt(
            vec![item(1, "Өндөг «Тахиа» №1", "10", "450", "0")],
            vec![pay(PaymentMethod::Cash, "4500")],
        );
        let text = json(&receipt_request(&receipt, "1", None, "2501").unwrap());
        assert!(text.contains(r#""name":"Өндөг «Тахиа» №1""#), "{text}");
        assert!(text.contains(r#""measureUnit":"ш""#), "{text}");
    }

    #[test]
    fn buyers_and_corrections_are_named_by_type() {
        let mut b2b = receipt(
            vec![item(1, "Цаас А4", "1", "1120", "0")],
            vec![pay(PaymentMethod::Cash, "1120")],
        );
        b2b.receipt_type = ReceiptType::B2bReceipt;
        b2b.consumer_no = "10038071".into();
        assert_eq!(
            receipt_request(&b2b, "1", None, "2501"),
            Err(MappingError::MissingCustomerTin("B2B_RECEIPT"))
        );
        b2b.customer_tin = "20001000013".into();
        b2b.district_code = "0102".into();
        b2b.report_month = "2026-10".into();
        let request = receipt_request(&b2b, "1", Some("1".repeat(33).as_str()), "2501").unwrap();
        assert_eq!(request.customer_tin.as_deref(), Some("20001000013"));
        assert_eq!(request.consumer_no, None);
        assert_eq!(request.district_code.as_deref(), Some("0102"));
        assert_eq!(request.inactive_id, Some("1".repeat(33)));
        assert_eq!(request.report_month.as_deref(), Some("2026-10"));

        let mut b2c = receipt(
            vec![item(1, "Талх", "1", "5600", "2")],
            vec![pay(PaymentMethod::Cash, "5600")],
        );
        b2c.consumer_no = "10038071".into();
        b2c.customer_tin = "20001000013".into();
        let request = receipt_request(&b2c, "1", None, "2501").unwrap();
        assert_eq!(request.consumer_no.as_deref(), Some("10038071"));
        assert_eq!(request.customer_tin, None);
        assert_eq!(request.inactive_id, None);
    }

    #[test]
    fn what_posapi_would_refuse_is_refused_here_first() {
        let sale = receipt(
            vec![item(1, "Талх", "1", "5600", "2")],
            vec![pay(PaymentMethod::Cash, "5600")],
        );
        let mut zero = sale.clone();
        zero.items.clear();
        zero.payments.clear();
        assert_eq!(
            receipt_request(&zero, "1", None, "2501"),
            Err(MappingError::NoItems)
        );
        assert_eq!(
            receipt_request(&sale, "", None, "2501"),
            Err(MappingError::NoBillIdSuffix)
        );
        assert_eq!(
            receipt_request(&sale, "1", None, "25"),
            Err(MappingError::DistrictCode("25".into()))
        );
        let mut short = sale.clone();
        short.payments = vec![pay(PaymentMethod::Cash, "5000")];
        assert!(matches!(
            receipt_request(&short, "1", None, "2501"),
            Err(MappingError::Unpaid { .. })
        ));
        let mut uncoded = sale.clone();
        uncoded.items = vec![exempt(
            item(1, "Сүү", "1", "2500", "0"),
            DomainTaxType::VatFree,
            "",
        )];
        uncoded.payments = vec![pay(PaymentMethod::Cash, "2500")];
        assert!(matches!(
            receipt_request(&uncoded, "1", None, "2501"),
            Err(MappingError::MissingTaxProductCode { position: 1, .. })
        ));
        let mut euros = sale;
        euros.currency = "EUR".into();
        assert_eq!(
            receipt_request(&euros, "1", None, "2501"),
            Err(MappingError::Currency("EUR".into()))
        );
    }
}
