//! The bodies of `POST /v2/sign`: the receipt request fiscus sends and the response the
//! middleware answers, with fiskaltrust's field names. Amounts and quantities are JSON numbers
//! written from exact decimals ([`WireMoney`], [`WireQuantity`]); case values are 64-bit
//! numbers ([`CaseValue`]), which fiskaltrust's own examples sometimes write as hex strings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::wire::{WireMoney, WireQuantity};

/// A case or state value: written as a JSON number; read from a number or from a hex string
/// such as `"0x4954200000000001"`, the way fiskaltrust's documentation shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct CaseValue(pub u64);

impl<'de> Deserialize<'de> for CaseValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(value) => Ok(Self(value)),
            Written::Text(text) => {
                let digits = text
                    .strip_prefix("0x")
                    .or_else(|| text.strip_prefix("0X"))
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "case {text:?}: a number, or hex digits after 0x"
                        ))
                    })?;
                u64::from_str_radix(digits, 16)
                    .map(Self)
                    .map_err(|e| serde::de::Error::custom(format!("case {text:?}: {e}")))
            }
        }
    }
}

/// `ReceiptRequest`: one receipt to sign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptRequest {
    #[serde(rename = "ftCashBoxID")]
    pub cash_box_id: String,
    #[serde(
        rename = "ftPosSystemId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pos_system_id: Option<String>,
    #[serde(rename = "cbTerminalID")]
    pub terminal_id: String,
    #[serde(rename = "cbReceiptReference")]
    pub receipt_reference: String,
    /// When the receipt was made, in UTC.
    #[serde(rename = "cbReceiptMoment")]
    pub receipt_moment: DateTime<Utc>,
    #[serde(rename = "cbChargeItems")]
    pub charge_items: Vec<ChargeItem>,
    #[serde(rename = "cbPayItems")]
    pub pay_items: Vec<PayItem>,
    #[serde(rename = "ftReceiptCase")]
    pub receipt_case: CaseValue,
    /// Gross total; the sum of the charge items when absent.
    #[serde(
        rename = "cbReceiptAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub receipt_amount: Option<WireMoney>,
    #[serde(rename = "cbUser", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The buyer: fiskaltrust accepts any JSON here (the seed's B2B example sends an object
    /// with `Name`, `Address` and `VATId`).
    #[serde(
        rename = "cbCustomer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub customer: Option<serde_json::Value>,
    /// The `cbReceiptReference` of the receipt this one refunds or voids.
    #[serde(
        rename = "cbPreviousReceiptReference",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_receipt_reference: Option<String>,
}

/// `ChargeItem`: a good or service sold (negative quantity and amount when refunded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargeItem {
    #[serde(rename = "Position", default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(rename = "Quantity")]
    pub quantity: WireQuantity,
    #[serde(rename = "Description")]
    pub description: String,
    /// Gross amount of the line.
    #[serde(rename = "Amount")]
    pub amount: WireMoney,
    /// VAT rate in percent, e.g. `22.00`.
    #[serde(rename = "VATRate")]
    pub vat_rate: WireMoney,
    #[serde(rename = "ftChargeItemCase")]
    pub charge_item_case: CaseValue,
    #[serde(rename = "VATAmount", default, skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<WireMoney>,
    #[serde(
        rename = "ProductNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub product_number: Option<String>,
    #[serde(rename = "Unit", default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(rename = "UnitPrice", default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<WireMoney>,
}

/// `PayItem`: one payment (negative when paid back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayItem {
    #[serde(rename = "Position", default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Usually 1; absent means 1.
    #[serde(rename = "Quantity", default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<WireQuantity>,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Amount")]
    pub amount: WireMoney,
    #[serde(rename = "ftPayItemCase")]
    pub pay_item_case: CaseValue,
    /// Provider data (a card terminal's protocol, say); any JSON.
    #[serde(
        rename = "ftPayItemCaseData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pay_item_case_data: Option<serde_json::Value>,
    #[serde(
        rename = "MoneyNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub money_number: Option<String>,
}

/// `ReceiptResponse`: what the middleware made of a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptResponse {
    #[serde(rename = "ftQueueID")]
    pub queue_id: String,
    #[serde(rename = "ftQueueItemID")]
    pub queue_item_id: String,
    #[serde(
        rename = "ftQueueRow",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_row: Option<u64>,
    #[serde(
        rename = "cbTerminalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub terminal_id: Option<String>,
    #[serde(
        rename = "cbReceiptReference",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub receipt_reference: Option<String>,
    #[serde(rename = "ftCashBoxIdentification")]
    pub cash_box_identification: String,
    #[serde(rename = "ftReceiptIdentification")]
    pub receipt_identification: String,
    #[serde(rename = "ftReceiptMoment")]
    pub receipt_moment: DateTime<Utc>,
    /// What the printed receipt must carry, in order.
    #[serde(rename = "ftSignatures", default)]
    pub signatures: Vec<SignatureItem>,
    #[serde(rename = "ftState")]
    pub state: CaseValue,
}

/// `SignatureItem`: a signature or notice for the printed receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureItem {
    #[serde(rename = "ftSignatureFormat")]
    pub format: CaseValue,
    #[serde(rename = "ftSignatureType")]
    pub signature_type: CaseValue,
    #[serde(rename = "Caption", default)]
    pub caption: String,
    #[serde(rename = "Data")]
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fiskaltrust::{Market, PayItemCase, PayItemFlags, ReceiptCase, ReceiptFlags};

    /// The seed's standard sale (its case values as it writes them).
    const SEED_SALE: &str = r#"{
      "ftCashBoxID": "UUID",
      "ftPosSystemId": "UUID",
      "cbTerminalID": "T1",
      "cbReceiptReference": "SALE-1234",
      "cbReceiptMoment": "2024-03-29T10:15:00.000Z",
      "ftReceiptCase": "0x4954200000000001",
      "cbChargeItems": [
        {"Quantity": 2.0, "Description": "Product A", "Amount": 122.00, "VATRate": 22.00,
         "ftChargeItemCase": "0x495420000000301", "ProductNumber": "SKU123"},
        {"Quantity": 1.0, "Description": "Service B", "Amount": 50.00, "VATRate": 10.00,
         "ftChargeItemCase": "0x495420000000102"}
      ],
      "cbPayItems": [
        {"Quantity": 1.0, "Description": "Cash", "Amount": 172.00,
         "ftPayItemCase": "0x495420000000001"}
      ]
    }"#;

    /// The seed's B2B invoice: a customer object, a pay item without quantity.
    const SEED_INVOICE: &str = r#"{
      "ftCashBoxID": "UUID",
      "ftPosSystemId": "UUID",
      "cbTerminalID": "T1",
      "cbReceiptReference": "INV-1236",
      "cbReceiptMoment": "2024-03-29T10:25:00.000Z",
      "ftReceiptCase": "0x4954200000201002",
      "cbCustomer": {"Name": "ACME Corp", "Address": "Via Roma 123, 00184 Roma RM",
                     "VATId": "IT12345678901"},
      "cbChargeItems": [
        {"Quantity": 10.0, "Description": "Enterprise License", "Amount": 1000.00,
         "VATRate": 22.00, "ftChargeItemCase": "0x495420000000302",
         "ProductNumber": "LIC-ENT-001"}
      ],
      "cbPayItems": [
        {"Description": "Bank Transfer", "Amount": 1000.00, "ftPayItemCase": "0x49542000000000A"}
      ]
    }"#;

    /// The seed's response.
    const SEED_RESPONSE: &str = r#"{
      "ftQueueID": "UUID",
      "ftQueueItemID": "UUID",
      "ftCashBoxIdentification": "IT-SCU-1234567",
      "ftReceiptIdentification": "ft1234567890",
      "ftReceiptMoment": "2024-03-29T10:15:00.000Z",
      "ftSignatures": [
        {"ftSignatureFormat": "0x4954200000000001", "ftSignatureType": "0x4954200000000001",
         "Caption": "RT Device", "Data": "RT-12345678"}
      ],
      "ftState": "0x4954200000000000"
    }"#;

    fn it() -> Market {
        Market::parse("IT").expect("a market")
    }

    #[test]
    fn the_seeds_requests_and_response_read_with_their_hex_cases_and_exact_amounts() {
        let sale: ReceiptRequest = serde_json::from_str(SEED_SALE).expect("the seed's sale");
        assert_eq!(
            sale.receipt_case.0,
            ReceiptCase::PointOfSaleReceipt.value(it(), ReceiptFlags::NONE)
        );
        // Fifteen hex digits, read as written.
        assert_eq!(
            sale.charge_items[0].charge_item_case.0,
            0x0495_4200_0000_0301
        );
        assert_eq!(sale.charge_items[0].amount.0.to_string(), "122.00");
        assert_eq!(sale.pay_items[0].amount.0.to_string(), "172.00");

        let invoice: ReceiptRequest =
            serde_json::from_str(SEED_INVOICE).expect("the seed's invoice");
        assert_eq!(
            invoice.customer.as_ref().and_then(|c| c["VATId"].as_str()),
            Some("IT12345678901")
        );
        assert_eq!(invoice.pay_items[0].quantity, None);

        let answer: ReceiptResponse =
            serde_json::from_str(SEED_RESPONSE).expect("the seed's response");
        assert_eq!(answer.state.0, 0x4954_2000_0000_0000);
        assert_eq!(answer.signatures[0].data, "RT-12345678");
        assert_eq!(answer.receipt_identification, "ft1234567890");
    }

    #[test]
    fn a_request_is_written_with_numbers_only_and_reads_back_the_same() {
        let money = |text: &str| WireMoney(fiscus_domain::Money::parse(text).expect("money"));
        let request = ReceiptRequest {
            cash_box_id: "c1".into(),
            pos_system_id: None,
            terminal_id: "T1".into(),
            receipt_reference: "REF-1237".into(),
            receipt_moment: "2024-03-29T10:30:00Z".parse().expect("a moment"),
            charge_items: vec![ChargeItem {
                position: Some(1),
                quantity: WireQuantity(fiscus_domain::Quantity::parse("-1").expect("quantity")),
                description: "Product A Return".into(),
                amount: money("-61.00"),
                vat_rate: money("22"),
                charge_item_case: CaseValue(0x4954_2000_0000_0013),
                vat_amount: Some(money("-11.00")),
                product_number: None,
                unit: None,
                unit_price: None,
            }],
            pay_items: vec![PayItem {
                position: Some(1),
                quantity: None,
                description: "Cash Refund".into(),
                amount: money("-61.00"),
                pay_item_case: CaseValue(PayItemCase::Cash.value(it(), PayItemFlags::NONE)),
                pay_item_case_data: None,
                money_number: None,
            }],
            receipt_case: CaseValue(
                ReceiptCase::PointOfSaleReceipt.value(it(), ReceiptFlags::REFUND),
            ),
            receipt_amount: Some(money("-61.00")),
            user: None,
            customer: None,
            previous_receipt_reference: Some("SALE-1234".into()),
        };
        let text = serde_json::to_string(&request).expect("JSON");
        assert!(
            text.contains(r#""ftReceiptCase":5283883447201300481"#),
            "{text}"
        );
        assert!(text.contains(r#""Amount":-61.00"#), "{text}");
        assert!(text.contains(r#""Quantity":-1.000"#), "{text}");
        assert!(text.contains(r#""VATRate":22.00"#), "{text}");
        assert!(!text.contains("\"0x"), "{text}");
        let back: ReceiptRequest = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, request);
    }

    #[test]
    fn a_case_that_is_neither_a_u64_nor_hex_is_refused() {
        for bad in [r#""4954""#, r#""0xZZ""#] {
            let error = serde_json::from_str::<CaseValue>(bad).expect_err(bad);
            assert!(error.to_string().contains(bad.trim_matches('"')), "{error}");
        }
        for bad in ["-1", "1.5", "null"] {
            serde_json::from_str::<CaseValue>(bad).expect_err(bad);
        }
        assert_eq!(
            serde_json::from_str::<CaseValue>(r#""0X10""#)
                .expect("upper-case prefix")
                .0,
            16
        );
    }
}
