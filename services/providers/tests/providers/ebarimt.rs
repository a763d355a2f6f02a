//! The e-barimt client against its sandbox, and the sandbox against the official OpenAPI document.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use fiscus_domain::receipt::{Format, instant};
use fiscus_domain::{
    BarCodeType, Item, Money, Payment, PaymentMethod, Quantity, Rate, Receipt, ReceiptKind,
    ReceiptType, TaxType,
};
use fiscus_providers::ebarimt::spec::{self, Operation, Spec};
use fiscus_providers::ebarimt::{
    Deleted, Document, DocumentState, EbarimtMerchant, ReceiptRequest, receipt_request,
};
use fiscus_providers::{
    EbarimtClient, EbarimtSandbox, EbarimtSandboxConfig, Posted, ProviderError, Undelivered,
};
use serde_json::{Value, json};

use super::TIMEOUT;

const MERCHANT: &str = "37900846788";
const PHARMACY: &str = "10003000017";
const BUYER: &str = "20001000013";
const DISTRICT: &str = "2501";

fn m(text: &str) -> Money {
    Money::parse(text).expect("a test amount")
}

/// A VAT-able item priced by fiscus's own tax split, with `city` % city tax.
fn item(position: u32, name: &str, qty: &str, price: &str, city: &str) -> Item {
    Item {
        position,
        name: name.into(),
        bar_code: String::new(),
        bar_code_type: BarCodeType::Undefined,
        classification_code: "2349010".into(),
        tax_type: TaxType::VatAble,
        tax_product_code: String::new(),
        measure_unit: "ш".into(),
        quantity: Quantity::parse(qty).expect("a test quantity"),
        unit_price: m(price),
        vat_rate: Rate::parse("10").expect("a rate"),
        city_tax_rate: Rate::parse(city).expect("a rate"),
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
    .expect("priced")
}

fn exempt(mut item: Item, tax_type: TaxType, code: &str) -> Item {
    item.tax_type = tax_type;
    item.tax_product_code = code.into();
    item.vat_rate = Rate::ZERO;
    item.city_tax_rate = Rate::ZERO;
    item.priced().expect("priced")
}

fn pay(method: PaymentMethod, amount: &str) -> Payment {
    Payment {
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

fn receipt(items: Vec<Item>, payments: Vec<Payment>) -> Receipt {
    let at = instant::parse("2026-11-23T10:15:00.000000Z").expect("a time");
    let mut receipt = Receipt {
        format: Format,
        id: "0193a0a0-0000-7000-8000-000000000001".into(),
        merchant_tin: MERCHANT.into(),
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
    receipt.total_up().expect("totals");
    receipt
}

/// A loaf of bread, VAT and 2 % city tax included, paid in cash.
fn bread() -> Receipt {
    receipt(
        vec![item(1, "Талх", "1", "5600", "2")],
        vec![pay(PaymentMethod::Cash, "5600")],
    )
}

fn request(receipt: &Receipt, suffix: &str) -> ReceiptRequest {
    receipt_request(receipt, suffix, None, DISTRICT).expect("maps")
}

async fn sandbox() -> EbarimtSandbox {
    EbarimtSandbox::start(EbarimtSandboxConfig::default())
        .await
        .expect("ebarimt sandbox starts")
}

fn client(sandbox: &EbarimtSandbox, timeout: Duration) -> EbarimtClient {
    EbarimtClient::new(sandbox.base_url(), sandbox.base_url(), timeout).expect("client")
}

fn accepted(posted: Result<Posted, Undelivered>) -> Document {
    match posted {
        Ok(Posted::Accepted(document)) => document,
        other => panic!("expected an accepted receipt, got {other:?}"),
    }
}

fn refused(posted: Result<Posted, Undelivered>) -> String {
    match posted {
        Ok(Posted::Refused { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn undelivered(posted: Result<Posted, Undelivered>) -> Undelivered {
    match posted {
        Err(undelivered) => undelivered,
        other => panic!("expected no answer, got {other:?}"),
    }
}

/// A raw POST of `body` (the typed client would never send a broken one).
async fn post_raw(sandbox: &EbarimtSandbox, body: &Value) -> Value {
    super::raw_http()
        .post(format!("{}/rest/receipt", sandbox.base_url()))
        .json(body)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON answer")
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn the_sandbox_and_the_client_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<EbarimtSandbox>();
    shareable::<EbarimtClient>();
    shareable::<Undelivered>();
}

#[tokio::test]
async fn a_mapped_receipt_is_accepted_with_a_33_digit_id_a_lottery_and_an_ulaanbaatar_date() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let before = chrono::Utc::now();

    let document = accepted(client.post_receipt(&request(&bread(), "1")).await);

    assert_eq!(document.id.len(), 33, "{}", document.id);
    assert!(all_digits(&document.id), "{}", document.id);
    let date = chrono::NaiveDateTime::parse_from_str(&document.date, "%Y-%m-%d %H:%M:%S")
        .expect("yyyy-MM-dd HH:mm:ss");
    let ulaanbaatar = (before + chrono::Duration::hours(8)).naive_utc();
    let drift = (date - ulaanbaatar).num_seconds();
    assert!((-2..=5).contains(&drift), "{} is not UTC+8", document.date);
    let lottery = document
        .lottery
        .clone()
        .expect("a B2C receipt has a lottery");
    assert_eq!(lottery.len(), 10, "{lottery}");
    assert!(
        lottery[..2].bytes().all(|b| b.is_ascii_uppercase()),
        "{lottery}"
    );
    assert!(all_digits(&lottery[2..]), "{lottery}");
    let qr = document.qr_data.clone().expect("QR data");
    assert!(qr.len() > 100 && all_digits(&qr), "{qr}");
    assert_eq!(document.pos_id, Some(101));
    assert!(!document.easy);
    assert_eq!(document.receipts.len(), 1);
    assert_eq!(document.receipts[0].id.len(), 33);
    assert_ne!(document.receipts[0].id, document.id);

    assert_eq!(sandbox.documents(), 1);
    assert_eq!(sandbox.schema_violations(), 0);
    let stored = sandbox.document(&document.id).expect("stored");
    assert_eq!(stored.state, DocumentState::Active);
    assert_eq!(stored.request, request(&bread(), "1"));
    assert_eq!(stored.answer.lottery.as_deref(), Some(lottery.as_str()));
    assert_eq!(sandbox.lotteries_left(), 999_999);
}

#[tokio::test]
async fn mixed_taxes_cards_with_easy_registration_and_a_b2b_invoice_are_accepted() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let mut card = pay(PaymentMethod::PaymentCard, "10000");
    card.card_terminal_id = "T-77".into();
    card.rrn = "123456789012".into();
    card.masked_card_number = "123456XXXXXX7890".into();
    card.easy_register = true;
    let mut mixed = receipt(
        vec![
            item(1, "Талх", "1", "5600", "2"),
            exempt(item(2, "Сүү", "2", "2500", "0"), TaxType::VatFree, "320"),
            item(3, "Ус", "3", "999.99", "0"),
            exempt(
                item(4, "Экспорт", "1", "5000", "0"),
                TaxType::VatZero,
                "502",
            ),
            exempt(
                item(5, "Виски", "1", "7000", "0"),
                TaxType::NoVat,
                "0000414",
            ),
        ],
        vec![
            card,
            pay(PaymentMethod::Cash, "17000"),
            pay(PaymentMethod::Change, "1400.03"),
        ],
    );
    mixed.bank_account = "5041466217".into();

    let document = accepted(client.post_receipt(&request(&mixed, "1")).await);
    assert!(document.easy, "a card with easy registration");
    assert_eq!(document.receipts.len(), 4);
    assert!(
        document
            .receipts
            .iter()
            .all(|r| r.bank_account_id == Some(1))
    );

    let mut invoice = receipt(
        vec![item(1, "Цаас А4", "10", "11200", "0")],
        vec![pay(PaymentMethod::BankTransfer, "112000")],
    );
    invoice.receipt_type = ReceiptType::B2bInvoice;
    invoice.customer_tin = BUYER.into();
    let document = accepted(client.post_receipt(&request(&invoice, "2")).await);
    assert_eq!(document.lottery, None, "no lottery for a B2B invoice");
    assert_eq!(sandbox.schema_violations(), 0);
    assert_eq!(sandbox.documents(), 2);
}

#[test]
fn the_documents_own_six_examples_validate_after_relaxation_but_for_what_is_kept_strict() {
    let examples = spec::examples().expect("examples extracted from the YAML");
    let official = Spec::official().expect("official schema");
    let relaxed = Spec::relaxed().expect("relaxed schema");
    let six = [
        ("/properties/type/description", "B2C_RECEIPT"),
        ("/properties/type/description", "B2B_RECEIPT"),
        ("/properties/type/description", "B2C_INVOICE"),
        ("/properties/type/description", "B2B_INVOICE"),
        ("/properties/type/description", "STOCK_QR"),
        (
            "/properties/payments/items/properties/data/description",
            "EASY_BANK_CARD",
        ),
    ];
    let find = |location: &str, title: &str| {
        examples
            .iter()
            .find(|e| e.location.ends_with(location) && e.title == title)
            .unwrap_or_else(|| panic!("the document has a {title} example in {location}"))
    };
    // The two places the document keeps strict (README errata: "relaxation: none").
    let kept_strict = |v: &spec::SchemaViolation| {
        let amount = [
            "totalAmount",
            "totalVAT",
            "totalCityTax",
            "qty",
            "unitPrice",
            "paidAmount",
        ]
        .iter()
        .any(|field| v.pointer.ends_with(field));
        (v.pointer.is_empty() && v.keyword == "required" && v.message.contains("billIdSuffix"))
            || (amount && v.keyword == "type" && v.message.contains("number"))
    };
    for (location, title) in six {
        let example = find(location, title);
        let published = official.check(Operation::PostReceipt, &example.body);
        assert!(
            published.is_err(),
            "{title}: the published schema refuses the document's own example"
        );
        let after = relaxed.check(Operation::PostReceipt, &example.body);
        match title {
            // They omit billIdSuffix; STOCK_QR sends its amounts as strings.
            "B2B_INVOICE" | "STOCK_QR" => {
                let violations = after.expect_err("kept strict");
                assert!(
                    violations.iter().all(kept_strict),
                    "{title}: only billIdSuffix and string amounts remain: {violations:#?}"
                );
                assert!(
                    violations
                        .iter()
                        .any(|v| v.message.contains("billIdSuffix"))
                );
                if title == "STOCK_QR" {
                    assert!(violations.iter().any(|v| v.pointer == "/totalAmount"));
                    assert!(
                        violations
                            .iter()
                            .any(|v| v.pointer == "/receipts/0/items/0/qty")
                    );
                }
            }
            _ => assert_eq!(after, Ok(()), "{title} validates after relaxation"),
        }
    }
    // Every other example of the document fails, if at all, only where it is kept strict.
    assert!(examples.len() >= 10, "{} examples", examples.len());
    for example in &examples {
        if let Err(violations) = relaxed.check(Operation::PostReceipt, &example.body) {
            assert!(
                violations.iter().all(kept_strict),
                "{} ({}): {violations:#?}",
                example.title,
                example.location
            );
        }
    }
    // The relaxations are written down in one place, each with its reason.
    assert_eq!(spec::RELAXATIONS.len(), 6);
    assert!(spec::RELAXATIONS.iter().all(|r| !r.because.is_empty()));
}

#[tokio::test]
async fn a_body_the_schema_refuses_is_refused_naming_the_pointer_and_counted() {
    let sandbox = sandbox().await;
    let good = serde_json::to_value(request(&bread(), "1")).expect("JSON");
    let mut missing = good.clone();
    missing.as_object_mut().expect("object").remove("branchNo");
    let mut string_amount = good.clone();
    string_amount["totalAmount"] = json!("5600");
    let mut wrong_type = good.clone();
    wrong_type["receipts"][0]["items"] = json!({"name": "Талх"});
    let mut card_without_data = good.clone();
    card_without_data["payments"][0]["code"] = json!("PAYMENT_CARD");
    let mut card_without_terminal = card_without_data.clone();
    card_without_terminal["payments"][0]["data"] =
        json!({"rrn": "123456789012", "maskedCardNumber": "123456XXXXXX7890", "easy": false});

    for (body, pointer) in [
        (missing, "/: \"branchNo\" is a required property"),
        (string_amount, "/totalAmount"),
        (wrong_type, "/receipts/0/items"),
        (
            card_without_data,
            "/payments/0: \"data\" is a required property",
        ),
        (
            card_without_terminal,
            "/payments/0/data: \"terminalID\" is a required property",
        ),
    ] {
        let answer = post_raw(&sandbox, &body).await;
        assert_eq!(answer["status"], "ERROR", "{answer}");
        let message = answer["message"].as_str().expect("a message");
        assert!(message.contains(pointer), "{message} names {pointer}");
    }
    assert_eq!(sandbox.schema_violations(), 5);
    assert_eq!(sandbox.documents(), 0);

    let not_json = super::raw_http()
        .post(format!("{}/rest/receipt", sandbox.base_url()))
        .body("{\"branchNo\":")
        .send()
        .await
        .expect("answers");
    assert_eq!(not_json.status(), 200);
    assert_eq!(sandbox.schema_violations(), 6);
}

#[tokio::test]
async fn the_tax_authoritys_arithmetic_and_rules_are_checked_naming_the_field() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let good = request(&bread(), "1");

    let mut float_sum = good.clone();
    float_sum.receipts[0].items[0].total_vat = None;
    let mut body = serde_json::to_value(&float_sum).expect("JSON");
    body["receipts"][0]["items"][0]["totalVAT"] = json!(509.090_909_09);
    let answer = post_raw(&sandbox, &body).await;
    let message = answer["message"].as_str().expect("a message");
    assert!(
        message.contains("/receipts/0/items/0/totalVAT") && message.contains("fraction digits"),
        "{message}"
    );

    let mut wrong_vat = good.clone();
    wrong_vat.receipts[0].items[0].total_vat = Some(fiscus_providers::ebarimt::WireMoney(m("600")));
    wrong_vat.receipts[0].total_vat = Some(fiscus_providers::ebarimt::WireMoney(m("600")));
    wrong_vat.total_vat = Some(fiscus_providers::ebarimt::WireMoney(m("600")));
    let message = refused(client.post_receipt(&wrong_vat).await);
    assert!(
        message.contains("/receipts/0/items/0/totalVAT"),
        "{message}"
    );

    let mut pre_tax_price = good.clone();
    pre_tax_price.receipts[0].items[0].unit_price = fiscus_providers::ebarimt::WireMoney(m("5000"));
    let message = refused(client.post_receipt(&pre_tax_price).await);
    assert!(
        message.contains("/receipts/0/items/0/totalAmount"),
        "{message}"
    );

    let mut unpaid = good.clone();
    unpaid.payments[0].paid_amount = fiscus_providers::ebarimt::WireMoney(m("5000"));
    assert!(refused(client.post_receipt(&unpaid).await).contains("/payments"));

    let mut stranger = good.clone();
    stranger.merchant_tin = "99999999999".into();
    assert!(refused(client.post_receipt(&stranger).await).contains("/merchantTin"));

    let mut district = good.clone();
    district.district_code = Some("25".into());
    assert!(refused(client.post_receipt(&district).await).contains("/districtCode"));

    let mut b2b = bread();
    b2b.receipt_type = ReceiptType::B2bReceipt;
    b2b.customer_tin = "88888888888".into();
    let message = refused(client.post_receipt(&request(&b2b, "1")).await);
    assert!(message.contains("/customerTin"), "{message}");

    let mut medicine = receipt(
        vec![item(1, "Парацетамол", "1", "1200", "0")],
        vec![pay(PaymentMethod::Cash, "1200")],
    );
    medicine.merchant_tin = PHARMACY.into();
    let message = refused(client.post_receipt(&request(&medicine, "1")).await);
    assert!(
        message.contains("/receipts/0/items/0/data/lotNo"),
        "{message}"
    );
    medicine.items[0].lot_no = "LOT-2026-11".into();
    accepted(client.post_receipt(&request(&medicine, "1")).await);

    assert_eq!(sandbox.documents(), 1);
    assert_eq!(
        sandbox.schema_violations(),
        0,
        "all these were valid by the schema"
    );
}

#[tokio::test]
async fn a_repeated_bill_id_suffix_answers_the_same_document_or_is_refused_for_another_body() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let first = accepted(client.post_receipt(&request(&bread(), "42")).await);

    let again = accepted(client.post_receipt(&request(&bread(), "42")).await);
    assert_eq!(again, first, "same id, date, lottery and QR data");
    assert_eq!(sandbox.documents(), 1);
    assert_eq!(sandbox.replays(), 1);
    assert_eq!(sandbox.lotteries_left(), 999_999);

    let other = receipt(
        vec![item(1, "Талх", "2", "5600", "2")],
        vec![pay(PaymentMethod::Cash, "11200")],
    );
    let message = refused(client.post_receipt(&request(&other, "42")).await);
    assert!(message.contains("billIdSuffix"), "{message}");
    assert_eq!(sandbox.documents(), 1);

    // The suffix is per POS: another terminal may use it.
    let mut elsewhere = bread();
    elsewhere.pos_no = "002".into();
    accepted(client.post_receipt(&request(&elsewhere, "42")).await);
    assert_eq!(sandbox.documents(), 2);
}

#[tokio::test]
async fn a_lost_answer_may_have_registered_the_receipt_and_the_identical_repost_recovers_it() {
    let sandbox = sandbox().await;
    let impatient = client(&sandbox, Duration::from_millis(400));
    let body = request(&bread(), "7");
    sandbox.drop_next(1);

    let lost = undelivered(impatient.post_receipt(&body).await);
    assert!(lost.maybe_created, "{lost}");
    assert!(lost.error.is_retriable());
    assert_eq!(sandbox.documents(), 1, "registered although never answered");

    let recovered = accepted(impatient.post_receipt(&body).await);
    let stored = sandbox.all_documents();
    assert_eq!(stored.len(), 1, "no second document");
    assert_eq!(recovered.id, stored[0].id);
    assert_eq!(recovered.lottery, stored[0].answer.lottery);

    sandbox.set_drop_ratio(1.0);
    let lost = undelivered(impatient.post_receipt(&request(&bread(), "8")).await);
    assert!(lost.maybe_created);
    sandbox.set_drop_ratio(0.0);
    assert_eq!(sandbox.documents(), 2);
}

#[tokio::test]
async fn a_daemon_that_is_down_refuses_connections_and_the_receipt_was_provably_not_sent() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    accepted(client.post_receipt(&request(&bread(), "1")).await);
    let requests = sandbox.requests();

    sandbox.set_down(true).await.expect("down");
    let unsent = undelivered(client.post_receipt(&request(&bread(), "2")).await);
    assert!(!unsent.maybe_created, "{unsent}");
    assert!(
        matches!(unsent.error, ProviderError::Unavailable { .. }),
        "{unsent}"
    );
    assert!(matches!(
        client.info().await,
        Err(ProviderError::Unavailable { .. })
    ));
    assert_eq!(sandbox.requests(), requests, "nothing arrived");

    sandbox.set_down(false).await.expect("up again");
    accepted(client.post_receipt(&request(&bread(), "2")).await);
    assert_eq!(sandbox.documents(), 2);
}

#[tokio::test]
async fn failures_rejections_and_latency_are_told_apart() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);

    sandbox.fail_next(1);
    let failed = undelivered(client.post_receipt(&request(&bread(), "1")).await);
    assert!(
        failed.maybe_created,
        "a 5xx says nothing about what was done"
    );
    assert_eq!(sandbox.documents(), 0);

    sandbox.reject_next(1, "PosAPI is not activated");
    assert_eq!(
        refused(client.post_receipt(&request(&bread(), "1")).await),
        "PosAPI is not activated"
    );
    assert_eq!(sandbox.documents(), 0);

    sandbox.set_latency(Duration::from_secs(2));
    let slow = undelivered(
        self::client(&sandbox, Duration::from_millis(300))
            .post_receipt(&request(&bread(), "1"))
            .await,
    );
    assert!(slow.maybe_created, "{slow}");
    sandbox.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn a_receipt_is_deleted_once_with_its_date_and_corrections_chain() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let document = accepted(client.post_receipt(&request(&bread(), "1")).await);

    let wrong_date = client
        .delete_receipt(&document.id, "2001-01-01 00:00:00")
        .await
        .expect("answered");
    assert!(matches!(wrong_date, Deleted::Refused { ref message } if message.contains("/date")));
    assert_eq!(
        client
            .delete_receipt(&document.id, &document.date)
            .await
            .expect("answered"),
        Deleted::Done
    );
    let again = client
        .delete_receipt(&document.id, &document.date)
        .await
        .expect("answered");
    assert!(
        matches!(again, Deleted::Refused { ref message } if message.contains("already deleted")),
        "{again:?}"
    );
    assert_eq!(
        sandbox.document(&document.id).expect("kept").state,
        DocumentState::Deleted
    );

    // A partial refund: a correction carrying what remains, naming the ДДТД it replaces.
    let sale = receipt(
        vec![item(1, "Талх", "3", "5600", "2")],
        vec![pay(PaymentMethod::Cash, "16800")],
    );
    let original = accepted(client.post_receipt(&request(&sale, "2")).await);
    let remains = receipt(
        vec![item(1, "Талх", "2", "5600", "2")],
        vec![pay(PaymentMethod::Cash, "11200")],
    );
    let correction_body =
        receipt_request(&remains, "3", Some(&original.id), DISTRICT).expect("maps");
    let correction = accepted(client.post_receipt(&correction_body).await);
    assert_eq!(correction.lottery, None, "no lottery for a correction");
    assert_eq!(
        sandbox.document(&original.id).expect("kept").state,
        DocumentState::Corrected {
            by: correction.id.clone()
        }
    );
    let twice = receipt_request(&remains, "4", Some(&original.id), DISTRICT).expect("maps");
    assert!(refused(client.post_receipt(&twice).await).contains("/inactiveId"));
    // The day alone is accepted as the date, as the published format says.
    assert_eq!(
        client
            .delete_receipt(&correction.id, &correction.date[..10])
            .await
            .expect("answered"),
        Deleted::Done
    );
    let unknown = client
        .delete_receipt(&"9".repeat(33), &correction.date)
        .await
        .expect("answered");
    assert!(matches!(unknown, Deleted::Refused { .. }));
    assert_eq!(sandbox.schema_violations(), 0);
}

#[tokio::test]
async fn documents_are_kept_per_terminal_in_order_and_no_ddtd_is_issued_twice() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    let mut posted = Vec::new();
    for n in 1..=6u32 {
        let mut receipt = receipt(
            vec![
                item(1, "Талх", &n.to_string(), "5600", "2"),
                exempt(item(2, "Сүү", "1", "2500", "0"), TaxType::VatFree, "320"),
            ],
            vec![pay(
                PaymentMethod::Cash,
                &(u64::from(n) * 5600 + 2500).to_string(),
            )],
        );
        receipt.pos_no = if n % 2 == 0 { "002" } else { "001" }.into();
        let document = accepted(
            client
                .post_receipt(&request(&receipt, &n.to_string()))
                .await,
        );
        posted.push((receipt.pos_no.clone(), document));
    }
    for pos in ["001", "002"] {
        let ids: Vec<String> = sandbox
            .documents_of(MERCHANT, "001", pos)
            .into_iter()
            .map(|d| d.id)
            .collect();
        let want: Vec<String> = posted
            .iter()
            .filter(|(p, _)| p == pos)
            .map(|(_, d)| d.id.clone())
            .collect();
        assert_eq!(ids, want, "POS {pos} in creation order");
    }
    let mut seen = HashSet::new();
    for (_, document) in &posted {
        assert!(seen.insert(document.id.clone()));
        for sub in &document.receipts {
            assert!(seen.insert(sub.id.clone()), "{} issued twice", sub.id);
        }
    }
    assert_eq!(seen.len(), 18);
}

#[tokio::test]
async fn no_float_artefact_ever_reaches_the_wire() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);
    // Prices whose tax split is a repeating fraction: 1/11, 1/112, 1/111.
    let receipt = receipt(
        vec![
            item(1, "Бензин", "2.8", "99.99", "2"),
            item(2, "Архи", "0.333", "2799.99", "1"),
            item(3, "Ус", "7", "254.55", "0"),
        ],
        vec![pay(PaymentMethod::Cash, "2994.22")],
    );
    let document = accepted(client.post_receipt(&request(&receipt, "1")).await);
    let body = sandbox.document(&document.id).expect("stored").body;
    let mut numbers = Vec::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit() || c == '-') {
        let before = rest[..at].chars().last();
        let token: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
            .collect();
        rest = &rest[at + token.len()..];
        // Numbers follow a colon or an array bracket; digits inside strings follow anything.
        if matches!(before, Some(':' | '[' | ',')) {
            numbers.push(token);
        }
    }
    assert!(numbers.len() > 20, "{body}");
    for number in &numbers {
        assert!(!number.contains(['e', 'E']), "{number} in {body}");
        let fraction = number.split_once('.').map_or(0, |(_, f)| f.len());
        assert!(fraction <= 3, "{number} in {body}");
    }
    assert!(body.contains(r#""totalVAT":25.00"#), "{body}");
    assert!(body.contains(r#""qty":0.333"#), "{body}");
}

#[tokio::test]
async fn lookups_answer_the_installation_the_registers_and_not_found_as_none() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, TIMEOUT);

    let info = client.info().await.expect("info");
    assert_eq!(info.pos_id, Some(101));
    assert!(info.merchants.iter().any(|m| m.tin == MERCHANT));
    assert_eq!(info.left_lotteries, Some(1_000_000));

    let accounts = client.bank_accounts(MERCHANT).await.expect("accounts");
    assert_eq!(accounts.len(), 2);
    assert!(accounts.iter().all(|a| a.tin == MERCHANT));
    assert!(client.bank_accounts("1").await.expect("none").is_empty());

    let merchant = client
        .taxpayer(MERCHANT, Some("central-token"))
        .await
        .expect("answered")
        .expect("found");
    assert!(merchant.city_payer && merchant.vat_payer && merchant.found);
    assert_eq!(sandbox.last_bearer().as_deref(), Some("central-token"));
    assert_eq!(
        client
            .taxpayer("11111111111", None)
            .await
            .expect("answered"),
        None
    );
    assert_eq!(sandbox.last_bearer(), None);

    assert_eq!(
        client
            .tin_of("6235972", None)
            .await
            .expect("answered")
            .as_deref(),
        Some(BUYER)
    );
    assert_eq!(
        client.tin_of("0000000", None).await.expect("answered"),
        None
    );

    let branches = client.branches(None).await.expect("branches");
    assert!(branches.iter().any(|b| b.district_code() == "0102"));
    assert!(branches.iter().all(|b| b.district_code().len() == 4));

    let codes = client.product_tax_codes(None).await.expect("codes");
    for tax_type in ["VAT_FREE", "VAT_ZERO", "NO_VAT"] {
        assert!(
            codes.iter().any(|c| c.tax_type_name == tax_type),
            "{tax_type}"
        );
    }
}

#[tokio::test]
async fn a_central_api_that_wants_a_token_refuses_calls_without_it() {
    let config = EbarimtSandboxConfig {
        api_token: Some("s3cret-token".into()),
        ..EbarimtSandboxConfig::default()
    }
    .with_merchant(EbarimtMerchant::new("30000000001", "Хөдөө ХХК").city_payer(false));
    let sandbox = EbarimtSandbox::start(config).await.expect("starts");
    let client = client(&sandbox, TIMEOUT);

    let error = client.branches(Some("wrong")).await.expect_err("refused");
    assert!(
        matches!(error, ProviderError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(
        !client
            .branches(Some("s3cret-token"))
            .await
            .expect("allowed")
            .is_empty()
    );

    // A merchant who withholds no city tax may not charge it.
    let mut rural = bread();
    rural.merchant_tin = "30000000001".into();
    let message = refused(client.post_receipt(&request(&rural, "1")).await);
    assert!(message.contains("not a city-tax payer"), "{message}");
    let mut rural = receipt(
        vec![item(1, "Талх", "1", "5500", "0")],
        vec![pay(PaymentMethod::Cash, "5500")],
    );
    rural.merchant_tin = "30000000001".into();
    accepted(client.post_receipt(&request(&rural, "1")).await);
}
