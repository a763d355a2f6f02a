//! The fiskaltrust sandbox over HTTP: the POS System API v2's sign call, its rules,
//! idempotency, modes and journals.

use std::time::Duration;

use fiscus_providers::fiskaltrust::cases::charge_item_case;
use fiscus_providers::fiskaltrust::wire::{ReceiptRequest, ReceiptResponse};
use fiscus_providers::fiskaltrust::{
    ChargeItemFlags, Credentials, DEV_ACCESS_TOKEN, DEV_CASHBOX_ID, DEV_QUEUE_ID,
    FiskaltrustClient, Market, Operation, PayItemCase, PayItemFlags, Problem, ReceiptCase,
    ReceiptFlags, Service, Signed, VatRate, headers, paths,
};
use fiscus_providers::{FiskaltrustCashBox, FiskaltrustSandbox, FiskaltrustSandboxConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

const PREFIX: u64 = 0x4954_2000_0000_0000;
const OTHER_CASHBOX: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
const OTHER_TOKEN: &str = "b3RoZXItY2FzaGJveA==";
const OTHER_QUEUE: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

fn it() -> Market {
    Market::parse("IT").expect("a market")
}

async fn sandbox() -> FiskaltrustSandbox {
    let config = FiskaltrustSandboxConfig::default().with_cash_box(FiskaltrustCashBox {
        cashbox_id: OTHER_CASHBOX.to_owned(),
        access_token: OTHER_TOKEN.to_owned(),
        market: Market::parse("DE").expect("a market"),
        queue_id: OTHER_QUEUE.to_owned(),
        cash_box_identification: "DE-TSE-0001".to_owned(),
    });
    FiskaltrustSandbox::start(config)
        .await
        .expect("fiskaltrust sandbox starts")
}

fn receipt_case(case: ReceiptCase, flags: ReceiptFlags) -> u64 {
    case.value(it(), flags)
}

/// A line at one of Italy's rates: goods, or with `flags`.
fn charge(description: &str, quantity: f64, amount: f64, vat: VatRate) -> Value {
    charge_flagged(description, quantity, amount, vat, ChargeItemFlags::NONE)
}

fn charge_flagged(
    description: &str,
    quantity: f64,
    amount: f64,
    vat: VatRate,
    flags: ChargeItemFlags,
) -> Value {
    let rate = vat.percent_in(it()).expect("an Italian rate") as f64 / 100.0;
    json!({
        "Quantity": quantity,
        "Description": description,
        "Amount": amount,
        "VATRate": rate,
        "ftChargeItemCase": charge_item_case(it(), Service::Delivery, vat, flags),
    })
}

fn pay(description: &str, amount: f64, case: PayItemCase) -> Value {
    json!({
        "Description": description,
        "Amount": amount,
        "ftPayItemCase": case.value(it(), PayItemFlags::NONE),
    })
}

/// A receipt of the dev cash box at terminal T1.
fn request(reference: &str, case: u64, charges: Vec<Value>, pays: Vec<Value>) -> Value {
    json!({
        "ftCashBoxID": DEV_CASHBOX_ID,
        "ftPosSystemId": "1f2e3d4c-5b6a-4789-9abc-def012345678",
        "cbTerminalID": "T1",
        "cbReceiptReference": reference,
        "cbReceiptMoment": "2024-03-29T10:15:00.000Z",
        "ftReceiptCase": case,
        "cbChargeItems": charges,
        "cbPayItems": pays,
    })
}

/// The seed's standard sale, with v2 cases.
fn standard_sale() -> Value {
    request(
        "SALE-1234",
        receipt_case(ReceiptCase::PointOfSaleReceipt, ReceiptFlags::NONE),
        vec![
            json!({
                "Quantity": 2.0,
                "Description": "Product A",
                "Amount": 122.00,
                "VATRate": 22.00,
                "ftChargeItemCase": charge_item_case(
                    it(), Service::Delivery, VatRate::Normal, ChargeItemFlags::NONE),
                "ProductNumber": "SKU123",
            }),
            json!({
                "Quantity": 1.0,
                "Description": "Service B",
                "Amount": 50.00,
                "VATRate": 10.00,
                "ftChargeItemCase": charge_item_case(
                    it(), Service::OtherService, VatRate::Discounted1, ChargeItemFlags::NONE),
            }),
        ],
        vec![json!({
            "Quantity": 1.0,
            "Description": "Cash",
            "Amount": 172.00,
            "ftPayItemCase": PayItemCase::Cash.value(it(), PayItemFlags::NONE),
        })],
    )
}

fn simple_sale(reference: &str) -> Value {
    request(
        reference,
        receipt_case(ReceiptCase::PointOfSaleReceipt, ReceiptFlags::NONE),
        vec![charge("Espresso", 1.0, 1.10, VatRate::Discounted1)],
        vec![pay("Cash", 1.10, PayItemCase::Cash)],
    )
}

fn zero_receipt(reference: &str) -> Value {
    request(
        reference,
        receipt_case(ReceiptCase::ZeroReceipt, ReceiptFlags::NONE),
        vec![],
        vec![],
    )
}

fn late_sale(reference: &str, moment: &str) -> Value {
    let mut body = request(
        reference,
        receipt_case(ReceiptCase::PointOfSaleReceipt, ReceiptFlags::LATE_SIGNING),
        vec![charge("Espresso", 1.0, 1.10, VatRate::Discounted1)],
        vec![pay("Cash", 1.10, PayItemCase::Cash)],
    );
    body["cbReceiptMoment"] = json!(moment);
    body
}

/// An answer: its status and body bytes.
struct Answer {
    status: u16,
    content_type: String,
    body: bytes::Bytes,
}

impl Answer {
    fn receipt(&self) -> ReceiptResponse {
        assert_eq!(
            self.status,
            200,
            "a receipt, got {}",
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).expect("a ReceiptResponse")
    }

    fn problem(&self, status: u16) -> Problem {
        assert_eq!(
            self.status,
            status,
            "HTTP {status}, got {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/json");
        let problem: Problem = serde_json::from_slice(&self.body).expect("a Problem");
        assert_eq!(problem.status, status);
        assert!(!problem.title.is_empty());
        problem
    }
}

/// `POST /v2/sign` of the dev cash box with `body` as written.
async fn sign_text(sandbox: &FiskaltrustSandbox, operation: &str, body: String) -> Answer {
    send(
        super::raw_http()
            .post(format!("{}{}", sandbox.base_url(), paths::SIGN))
            .header(headers::OPERATION_ID, operation)
            .header(headers::CASHBOX_ID, DEV_CASHBOX_ID)
            .header(headers::CASHBOX_ACCESS_TOKEN, DEV_ACCESS_TOKEN)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

async fn sign(sandbox: &FiskaltrustSandbox, operation: Uuid, body: &Value) -> Answer {
    sign_text(sandbox, &operation.to_string(), body.to_string()).await
}

/// Signs `body` under a fresh operation id, which must succeed.
async fn signed(sandbox: &FiskaltrustSandbox, body: &Value) -> ReceiptResponse {
    sign(sandbox, Uuid::new_v4(), body).await.receipt()
}

async fn send(call: reqwest::RequestBuilder) -> Answer {
    let response = call.send().await.expect("the sandbox answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.bytes().await.expect("a body");
    Answer {
        status,
        content_type,
        body,
    }
}

/// `body`'s JSON with the top-level keys in reverse order.
fn reordered(body: &Value) -> String {
    let object = body.as_object().expect("an object");
    let fields: Vec<String> = object
        .iter()
        .rev()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn state(response: &ReceiptResponse) -> u64 {
    response.state.0
}

/// A journal of the dev queue: its chunks' count and the array they make.
async fn journal(sandbox: &FiskaltrustSandbox, kind: &str) -> (usize, Vec<Value>) {
    let mut response = super::raw_http()
        .get(format!(
            "{}{}",
            sandbox.base_url(),
            paths::journal(DEV_QUEUE_ID, kind)
        ))
        .header(headers::CASHBOX_ID, DEV_CASHBOX_ID)
        .header(headers::CASHBOX_ACCESS_TOKEN, DEV_ACCESS_TOKEN)
        .send()
        .await
        .expect("the journal answers");
    assert_eq!(response.status().as_u16(), 200);
    let mut chunks = 0;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("a chunk") {
        chunks += 1;
        bytes.extend_from_slice(&chunk);
    }
    let entries: Vec<Value> = serde_json::from_slice(&bytes).expect("a JSON array");
    (chunks, entries)
}

#[test]
fn the_sandbox_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<FiskaltrustSandbox>();
}

#[tokio::test]
async fn the_seeds_four_use_cases_sign_with_rows_identification_signatures_and_a_clean_state() {
    let sandbox = sandbox().await;
    let sale = standard_sale();
    let mixed = request(
        "MIXED-1235",
        receipt_case(ReceiptCase::PointOfSaleReceipt, ReceiptFlags::NONE),
        vec![charge("High-value Item", 1.0, 1000.00, VatRate::Normal)],
        vec![
            pay("Cash", 500.00, PayItemCase::Cash),
            json!({
                "Description": "Credit Card",
                "Amount": 500.00,
                "ftPayItemCase": PayItemCase::CreditCard.value(it(), PayItemFlags::NONE),
                "ftPayItemCaseData": {"Provider": {
                    "Protocol": "worldline_wpi_2", "Action": "payment", "ProtocolVersion": "2.0"
                }},
            }),
        ],
    );
    let mut invoice = request(
        "INV-1236",
        receipt_case(ReceiptCase::InvoiceB2B, ReceiptFlags::RECEIVER_IS_BUSINESS),
        vec![charge("Enterprise License", 10.0, 1000.00, VatRate::Normal)],
        vec![pay("Bank Transfer", 1000.00, PayItemCase::SepaTransfer)],
    );
    invoice["cbCustomer"] = json!({
        "Name": "ACME Corp", "Address": "Via Roma 123, 00184 Roma RM", "VATId": "IT12345678901"
    });
    let mut refund = request(
        "REF-1237",
        receipt_case(ReceiptCase::PointOfSaleReceipt, ReceiptFlags::REFUND),
        vec![charge("Product A Return", -1.0, -61.00, VatRate::Normal)],
        vec![pay("Cash Refund", -61.00, PayItemCase::Cash)],
    );
    refund["cbPreviousReceiptReference"] = json!("SALE-1234");

    let before = chrono::Utc::now();
    let mut answers = Vec::new();
    for body in [&sale, &mixed, &invoice, &refund] {
        answers.push(signed(&sandbox, body).await);
    }
    for (i, answer) in answers.iter().enumerate() {
        let row = i as u64 + 1;
        assert_eq!(answer.queue_id, DEV_QUEUE_ID);
        assert_eq!(answer.queue_row, Some(row));
        assert_eq!(answer.cash_box_identification, "IT-SCU-0001");
        assert_eq!(answer.receipt_identification, format!("ft{row:X}#{row}"));
        assert_eq!(answer.terminal_id.as_deref(), Some("T1"));
        assert!(answer.receipt_moment >= before);
        assert_eq!(state(answer), PREFIX);
        Uuid::parse_str(&answer.queue_item_id).expect("a queue item UUID");
        let qr = &answer.signatures[0];
        assert_eq!(answer.signatures.len(), 1);
        assert_eq!(qr.format.0, PREFIX | 0x03);
        assert_eq!(
            qr.signature_type.0 & 0xFFFF_0000_0000_0000,
            PREFIX & 0xFFFF_0000_0000_0000
        );
        assert_eq!(qr.data.len(), 44, "base64 of a SHA-256: {}", qr.data);
    }
    let references: Vec<_> = answers
        .iter()
        .map(|a| a.receipt_reference.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        references,
        ["SALE-1234", "MIXED-1235", "INV-1236", "REF-1237"]
    );
    // A hash chain: every receipt's hash differs.
    let hashes: std::collections::HashSet<_> = answers
        .iter()
        .map(|a| a.signatures[0].data.clone())
        .collect();
    assert_eq!(hashes.len(), 4);

    assert_eq!(sandbox.signed(), 4);
    let receipts = sandbox.receipts();
    assert_eq!(receipts.len(), 4);
    assert_eq!(
        receipts[3].request.previous_receipt_reference.as_deref(),
        Some("SALE-1234")
    );
    assert_eq!(
        receipts[2]
            .request
            .customer
            .as_ref()
            .map(|c| c["VATId"].clone()),
        Some(json!("IT12345678901"))
    );
    assert_eq!(
        receipts[1].request.pay_items[1]
            .pay_item_case_data
            .as_ref()
            .map(|d| d["Provider"]["Protocol"].clone()),
        Some(json!("worldline_wpi_2"))
    );
    assert_eq!(receipts[0].response, answers[0]);
    assert_eq!(sandbox.state_of(DEV_CASHBOX_ID), Some(PREFIX));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_replay_under_the_same_operation_id_answers_byte_identical_and_another_body_is_409() {
    let sandbox = sandbox().await;
    let operation = Uuid::new_v4();
    let body = standard_sale();
    let first = sign(&sandbox, operation, &body).await;
    first.receipt();

    // The same operation, its id spelled in capitals, the body's keys in another order.
    let again = sign_text(
        &sandbox,
        &operation.to_string().to_uppercase(),
        reordered(&body),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "byte-identical");
    assert_eq!((sandbox.signed(), sandbox.replays()), (1, 1));

    let mut other = body.clone();
    other["cbReceiptReference"] = json!("SALE-9999");
    let conflict = sign(&sandbox, operation, &other).await.problem(409);
    assert!(
        conflict.detail.contains("another request"),
        "{}",
        conflict.detail
    );
    assert!(conflict.detail.contains(headers::OPERATION_ID));
    assert_eq!((sandbox.signed(), sandbox.conflicts()), (1, 1));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_repeat_while_the_first_request_is_processed_is_422() {
    let sandbox = std::sync::Arc::new(sandbox().await);
    sandbox.set_processing_time(Duration::from_millis(600));
    let operation = Uuid::new_v4();
    let body = simple_sale("S-1");
    let first = tokio::spawn({
        let sandbox = sandbox.clone();
        let body = body.clone();
        async move { sign(&sandbox, operation, &body).await.receipt() }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let repeat = sign(&sandbox, operation, &body).await.problem(422);
    assert!(repeat.detail.contains("in progress"), "{}", repeat.detail);
    let first = first.await.expect("the first request");
    assert_eq!(first.queue_row, Some(1));
    assert_eq!((sandbox.signed(), sandbox.in_flight_refusals()), (1, 1));

    // Once done, the repeat is a replay.
    sandbox.set_processing_time(Duration::ZERO);
    assert_eq!(sign(&sandbox, operation, &body).await.receipt(), first);
    assert_eq!(sandbox.signed(), 1);
}

#[tokio::test]
async fn each_broken_rule_is_refused_400_naming_its_field() {
    let sandbox = sandbox().await;
    let sale = simple_sale("S-1");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = sale.clone();
        edit(&mut body);
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "sums that differ",
            with(&|b| b["cbPayItems"][0]["Amount"] = json!(1.00)),
            "cbPayItems:",
        ),
        (
            "a receipt amount that is not the sum",
            with(&|b| b["cbReceiptAmount"] = json!(2.20)),
            "cbReceiptAmount:",
        ),
        (
            "a receipt case of another market",
            with(&|b| {
                b["ftReceiptCase"] = json!(
                    ReceiptCase::PointOfSaleReceipt
                        .value(Market::parse("DE").expect("a market"), ReceiptFlags::NONE)
                )
            }),
            "ftReceiptCase:",
        ),
        (
            "the seed's fifteen-digit charge item case",
            with(&|b| b["cbChargeItems"][0]["ftChargeItemCase"] = json!(0x0495_4200_0000_0301_u64)),
            "cbChargeItems[0].ftChargeItemCase:",
        ),
        (
            "a pay item case of another market",
            with(&|b| {
                b["cbPayItems"][0]["ftPayItemCase"] = json!(
                    PayItemCase::Cash
                        .value(Market::parse("AT").expect("a market"), PayItemFlags::NONE)
                )
            }),
            "cbPayItems[0].ftPayItemCase:",
        ),
        (
            "a VAT rate its case does not name",
            with(&|b| b["cbChargeItems"][0]["VATRate"] = json!(22.00)),
            "cbChargeItems[0].VATRate:",
        ),
        (
            "an unknown receipt case",
            with(&|b| b["ftReceiptCase"] = json!(PREFIX | 0x0777)),
            "ftReceiptCase:",
        ),
        (
            "a negative line on a sale",
            with(&|b| {
                b["cbChargeItems"][0]["Amount"] = json!(-1.10);
                b["cbPayItems"][0]["Amount"] = json!(-1.10);
            }),
            "cbChargeItems[0].Amount:",
        ),
        (
            "an empty description",
            with(&|b| b["cbChargeItems"][0]["Description"] = json!("")),
            "cbChargeItems[0].Description:",
        ),
        (
            "another cash box's id",
            with(&|b| b["ftCashBoxID"] = json!(OTHER_CASHBOX)),
            "ftCashBoxID:",
        ),
        (
            "no receipt reference",
            with(&|b| b["cbReceiptReference"] = json!("")),
            "cbReceiptReference:",
        ),
        (
            "an amount below the cent",
            with(&|b| b["cbChargeItems"][0]["Amount"] = json!(1.105)),
            "cbChargeItems[0].Amount:",
        ),
        (
            "a B2B invoice without a buyer",
            with(&|b| {
                b["ftReceiptCase"] =
                    json!(receipt_case(ReceiptCase::InvoiceB2B, ReceiptFlags::NONE))
            }),
            "cbCustomer:",
        ),
        (
            "a zero receipt with items",
            with(&|b| {
                b["ftReceiptCase"] =
                    json!(receipt_case(ReceiptCase::ZeroReceipt, ReceiptFlags::NONE))
            }),
            "cbChargeItems:",
        ),
        (
            "a sale without items",
            with(&|b| {
                b["cbChargeItems"] = json!([]);
                b["cbPayItems"] = json!([]);
            }),
            "cbChargeItems:",
        ),
        (
            "a refund of an unknown reference",
            with(&|b| {
                b["ftReceiptCase"] = json!(receipt_case(
                    ReceiptCase::PointOfSaleReceipt,
                    ReceiptFlags::REFUND
                ));
                b["cbPreviousReceiptReference"] = json!("NO-SUCH-SALE");
            }),
            "cbPreviousReceiptReference:",
        ),
        (
            "a refund naming nothing",
            with(&|b| {
                b["ftReceiptCase"] = json!(receipt_case(
                    ReceiptCase::PointOfSaleReceipt,
                    ReceiptFlags::REFUND
                ))
            }),
            "cbPreviousReceiptReference:",
        ),
    ];
    for (what, body, field) in &cases {
        let problem = sign(&sandbox, Uuid::new_v4(), body).await.problem(400);
        assert!(
            problem.detail.starts_with(field),
            "{what}: {field} expected, got {:?}",
            problem.detail
        );
    }
    assert_eq!(sandbox.signed(), 0);
    assert_eq!(sandbox.refusals(), cases.len() as u64);
    // The queue is untouched: the valid sale is row 1.
    assert_eq!(signed(&sandbox, &sale).await.queue_row, Some(1));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_late_signed_receipt_earlier_than_the_last_one_is_refused() {
    let sandbox = sandbox().await;
    signed(&sandbox, &late_sale("L-1", "2026-01-01T12:00:05Z")).await;
    let problem = sign(
        &sandbox,
        Uuid::new_v4(),
        &late_sale("L-2", "2026-01-01T12:00:00Z"),
    )
    .await
    .problem(400);
    assert!(
        problem.detail.starts_with("cbReceiptMoment:"),
        "{}",
        problem.detail
    );
    assert!(problem.detail.contains("order they were created"));
    // Another terminal has its own order.
    let mut other = late_sale("L-3", "2026-01-01T12:00:00Z");
    other["cbTerminalID"] = json!("T2");
    assert_eq!(
        signed(&sandbox, &other).await.receipt_identification,
        "ft2#1"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn headers_are_checked_credentials_401_operation_id_lifetime_and_terminal_400() {
    let sandbox = sandbox().await;
    let body = simple_sale("S-1").to_string();
    let url = format!("{}{}", sandbox.base_url(), paths::SIGN);
    let call = |token: &str| {
        super::raw_http()
            .post(&url)
            .header(headers::CASHBOX_ID, DEV_CASHBOX_ID)
            .header(headers::CASHBOX_ACCESS_TOKEN, token)
            .body(body.clone())
    };
    send(call("wrong").header(headers::OPERATION_ID, Uuid::new_v4().to_string()))
        .await
        .problem(401);
    send(
        super::raw_http()
            .post(&url)
            .header(headers::OPERATION_ID, Uuid::new_v4().to_string())
            .body(body.clone()),
    )
    .await
    .problem(401);
    let missing = send(call(DEV_ACCESS_TOKEN)).await.problem(400);
    assert!(
        missing.detail.starts_with(headers::OPERATION_ID),
        "{}",
        missing.detail
    );
    let not_uuid = send(call(DEV_ACCESS_TOKEN).header(headers::OPERATION_ID, "op-1"))
        .await
        .problem(400);
    assert!(not_uuid.detail.starts_with(headers::OPERATION_ID));
    let lifetime = send(
        call(DEV_ACCESS_TOKEN)
            .header(headers::OPERATION_ID, Uuid::new_v4().to_string())
            .header(headers::OPERATION_LIFETIME, "0"),
    )
    .await
    .problem(400);
    assert!(lifetime.detail.starts_with(headers::OPERATION_LIFETIME));
    let terminal = send(
        call(DEV_ACCESS_TOKEN)
            .header(headers::OPERATION_ID, Uuid::new_v4().to_string())
            .header(headers::TERMINAL_ID, "T9"),
    )
    .await
    .problem(400);
    assert!(
        terminal.detail.starts_with(headers::TERMINAL_ID),
        "{}",
        terminal.detail
    );
    let unreadable = sign_text(
        &sandbox,
        &Uuid::new_v4().to_string(),
        "{\"ftCashBoxID\": 1}".into(),
    )
    .await
    .problem(400);
    assert!(
        unreadable.detail.starts_with("ftCashBoxID:"),
        "{}",
        unreadable.detail
    );
    assert_eq!(sandbox.signed(), 0);

    // All well: the headers as the client sends them.
    send(
        call(DEV_ACCESS_TOKEN)
            .header(headers::OPERATION_ID, Uuid::new_v4().to_string())
            .header(headers::OPERATION_LIFETIME, "15000")
            .header(headers::TERMINAL_ID, "T1"),
    )
    .await
    .receipt();
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_late_signed_receipt_enters_late_signing_mode_and_a_zero_receipt_leaves_it() {
    let sandbox = sandbox().await;
    let late = signed(&sandbox, &late_sale("L-1", "2026-01-01T12:00:00Z")).await;
    assert_eq!(state(&late), PREFIX | 0x8);
    let notice = late
        .signatures
        .iter()
        .find(|s| s.signature_type.0 == PREFIX | 0x1000)
        .expect("a late-signing notice");
    assert_eq!(notice.format.0, PREFIX | 0x01);
    assert!(notice.data.contains("Late-signed"), "{}", notice.data);
    // Still in the mode: a plain receipt's answer says so too.
    assert_eq!(
        state(&signed(&sandbox, &simple_sale("S-2")).await),
        PREFIX | 0x8
    );
    assert_eq!(sandbox.state_of(DEV_CASHBOX_ID), Some(PREFIX | 0x8));

    assert_eq!(state(&signed(&sandbox, &zero_receipt("Z-1")).await), PREFIX);
    assert_eq!(state(&signed(&sandbox, &simple_sale("S-3")).await), PREFIX);
    let (_, actions) = journal(&sandbox, "ActionJournal").await;
    let messages: Vec<&str> = actions
        .iter()
        .filter_map(|a| a["Message"].as_str())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("late-signing mode entered"));
    assert!(messages[1].contains("late-signing mode left"));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_failed_scu_puts_the_queue_in_failed_mode_until_a_zero_receipt_finds_it_back() {
    let sandbox = sandbox().await;
    assert_eq!(state(&signed(&sandbox, &simple_sale("S-1")).await), PREFIX);
    sandbox.set_scu_failed(true);
    for reference in ["S-2", "S-3"] {
        let answer = signed(&sandbox, &simple_sale(reference)).await;
        assert_eq!(state(&answer), PREFIX | 0x2);
        assert!(
            answer
                .signatures
                .iter()
                .all(|s| s.format.0 != PREFIX | 0x03),
            "no QR"
        );
        let failure = answer
            .signatures
            .iter()
            .find(|s| s.signature_type.0 == PREFIX | 0x3000)
            .expect("a failure notice");
        assert_eq!(failure.caption, "SCU communication failed");
    }
    // A zero receipt while the SCU still fails: still failed.
    assert_eq!(
        state(&signed(&sandbox, &zero_receipt("Z-1")).await),
        PREFIX | 0x2
    );

    // The SCU is back, but the circuit breaker stays open until a zero receipt.
    sandbox.set_scu_failed(false);
    assert_eq!(
        state(&signed(&sandbox, &simple_sale("S-4")).await),
        PREFIX | 0x2
    );
    assert_eq!(sandbox.state_of(DEV_CASHBOX_ID), Some(PREFIX | 0x2));
    let back = signed(&sandbox, &zero_receipt("Z-2")).await;
    assert_eq!(state(&back), PREFIX);
    let listing = back
        .signatures
        .iter()
        .find(|s| s.format.0 == PREFIX | 0x01)
        .expect("the listing of receipts signed without the SCU");
    assert!(listing.data.starts_with("4 receipts"), "{}", listing.data);
    assert!(listing.data.contains("ft2#2"), "{}", listing.data);
    assert!(back.signatures.iter().any(|s| s.format.0 == PREFIX | 0x03));
    assert_eq!(state(&signed(&sandbox, &simple_sale("S-5")).await), PREFIX);
    // Every receipt was numbered and counts as signed.
    assert_eq!(sandbox.signed(), 7);

    let (_, actions) = journal(&sandbox, "ActionJournal").await;
    let kinds: Vec<(&str, i64)> = actions
        .iter()
        .map(|a| {
            (
                a["Type"].as_str().unwrap_or_default(),
                a["Priority"].as_i64().unwrap_or(-9),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("0x4954200000000002", 1), ("0x4954200000000002", 0)]
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_receipt_requested_flag_answers_the_stored_receipt_or_signs_a_new_one() {
    let sandbox = sandbox().await;
    let original = signed(&sandbox, &simple_sale("S-1")).await;
    let requested = |reference: &str| {
        let mut body = simple_sale(reference);
        body["ftReceiptCase"] = json!(receipt_case(
            ReceiptCase::PointOfSaleReceipt,
            ReceiptFlags::RECEIPT_REQUESTED
        ));
        body
    };
    assert_eq!(signed(&sandbox, &requested("S-1")).await, original);
    assert_eq!((sandbox.signed(), sandbox.replays()), (1, 1));

    let new = signed(&sandbox, &requested("S-2")).await;
    assert_eq!(new.queue_row, Some(2));
    assert_eq!(sandbox.signed(), 2);
    sandbox.shutdown().await;
}

/// The client against the sandbox: a lost answer is an `Undelivered` that may have signed, and
/// the identical request under the same operation id recovers it without signing again; the
/// same id with another body is a conflict, a repeat while the first is processed is in
/// progress, a wrong token unauthorized, a broken rule refused naming its field, and a
/// middleware that is down an `Undelivered` that surely did not sign.
#[tokio::test]
async fn the_client_recovers_a_lost_answer_by_replaying_its_operation_and_reads_each_refusal() {
    let sandbox = sandbox().await;
    let client =
        FiskaltrustClient::new(sandbox.base_url(), Duration::from_millis(500)).expect("a client");
    let credentials = Credentials {
        cashbox_id: DEV_CASHBOX_ID.to_owned(),
        access_token: SecretString::from(DEV_ACCESS_TOKEN),
    };
    // Through serde_json's text: amounts are read from the numbers' own digits.
    let request: ReceiptRequest =
        serde_json::from_str(&simple_sale("S-1").to_string()).expect("a request");
    let operation = Operation {
        id: Uuid::new_v4(),
        terminal_id: &request.terminal_id,
        pos_system_id: None,
        lifetime: Duration::from_secs(15),
    };
    sandbox.drop_next(1);
    let lost = client
        .sign(&credentials, &operation, &request)
        .await
        .expect_err("the answer is lost");
    assert!(lost.maybe_created, "{lost}");
    assert_eq!(sandbox.signed(), 1);
    let Ok(Signed::Done(recovered)) = client.sign(&credentials, &operation, &request).await else {
        panic!("the replay answers");
    };
    assert_eq!(recovered, sandbox.receipts()[0].response);
    assert_eq!(sandbox.receipts()[0].operation_id, operation.id);
    assert_eq!((sandbox.signed(), sandbox.replays()), (1, 1));

    let mut other = request.clone();
    other.receipt_reference = "S-2".to_owned();
    let conflict = client.sign(&credentials, &operation, &other).await;
    assert!(matches!(conflict, Ok(Signed::Conflict(_))), "{conflict:?}");

    sandbox.set_processing_time(Duration::from_millis(300));
    let slow = Operation {
        id: Uuid::new_v4(),
        ..operation
    };
    let (first, second) = tokio::join!(client.sign(&credentials, &slow, &other), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.sign(&credentials, &slow, &other).await
    });
    sandbox.set_processing_time(Duration::ZERO);
    assert!(matches!(first, Ok(Signed::Done(_))), "{first:?}");
    assert!(matches!(second, Ok(Signed::InProgress(_))), "{second:?}");

    let wrong = Credentials {
        access_token: SecretString::from("not-the-token"),
        ..credentials.clone()
    };
    let fresh = Operation {
        id: Uuid::new_v4(),
        ..operation
    };
    let refused = client.sign(&wrong, &fresh, &request).await;
    assert!(
        matches!(refused, Ok(Signed::Unauthorized(_))),
        "{refused:?}"
    );
    let mut unbalanced = request.clone();
    unbalanced.receipt_reference = "S-3".to_owned();
    unbalanced.pay_items[0].amount.0 = fiscus_domain::Money::from_minor(100);
    let Ok(Signed::Refused(problem)) = client.sign(&credentials, &fresh, &unbalanced).await else {
        panic!("a broken rule is refused");
    };
    assert!(problem.detail.contains("cbPayItems"), "{problem:?}");

    sandbox.set_down(true).await.expect("down");
    let down = client
        .sign(&credentials, &fresh, &request)
        .await
        .expect_err("nobody answers");
    assert!(!down.maybe_created, "{down}");
    assert_eq!(sandbox.signed(), 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn reject_next_and_fail_next_answer_without_signing() {
    let sandbox = sandbox().await;
    sandbox.reject_next(1, "cbChargeItems: refused for the test");
    let rejected = sign(&sandbox, Uuid::new_v4(), &simple_sale("S-1"))
        .await
        .problem(400);
    assert_eq!(rejected.detail, "cbChargeItems: refused for the test");
    sandbox.fail_next(1);
    sign(&sandbox, Uuid::new_v4(), &simple_sale("S-1"))
        .await
        .problem(503);
    assert_eq!(sandbox.signed(), 0);
    assert_eq!(
        signed(&sandbox, &simple_sale("S-1")).await.queue_row,
        Some(1)
    );
    assert_eq!(sandbox.requests(), 3);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn journals_stream_json_arrays_of_their_entries() {
    let sandbox = sandbox().await;
    let sale = signed(&sandbox, &standard_sale()).await;
    sandbox.set_scu_failed(true);
    let failed = signed(&sandbox, &simple_sale("S-2")).await;
    sandbox.set_scu_failed(false);
    let zero = signed(&sandbox, &zero_receipt("Z-1")).await;
    let answers = [&sale, &failed, &zero];

    let (chunks, receipts) = journal(&sandbox, "ReceiptJournal").await;
    assert!(chunks > 1, "streamed in pieces, got {chunks}");
    assert_eq!(receipts.len(), 3);
    for (entry, answer) in receipts.iter().zip(answers) {
        assert_eq!(entry["ftQueueId"], json!(DEV_QUEUE_ID));
        assert_eq!(entry["ftQueueItemId"], json!(answer.queue_item_id));
        assert_eq!(entry["ftReceiptNumber"], json!(answer.queue_row));
        Uuid::parse_str(entry["ftReceiptJournalId"].as_str().expect("an id")).expect("a UUID");
        assert!(entry["ftReceiptMoment"].is_string());
        assert!(
            entry["ftReceiptHash"]
                .as_str()
                .is_some_and(|h| h.len() == 44)
        );
    }
    assert_eq!(receipts[0]["ftReceiptTotal"], json!(172.0));
    assert_eq!(receipts[0]["ftReceiptHash"], json!(sale.signatures[0].data));
    assert_eq!(receipts[2]["ftReceiptTotal"], json!(0.0));

    let (_, actions) = journal(&sandbox, "ActionJournal").await;
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["ftQueueItemId"], json!(failed.queue_item_id));
    assert_eq!(actions[1]["ftQueueItemId"], json!(zero.queue_item_id));
    for entry in &actions {
        for field in [
            "ftActionJournalId",
            "ftQueueId",
            "Moment",
            "Type",
            "Message",
        ] {
            assert!(entry[field].is_string(), "{field} in {entry}");
        }
    }

    let (_, items) = journal(&sandbox, "QueueItem").await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["ftQueueRow"], json!(1));
    assert_eq!(items[0]["cbTerminalID"], json!("T1"));
    assert_eq!(items[0]["cbReceiptReference"], json!("SALE-1234"));
    assert_eq!(
        items[0]["request"]["cbChargeItems"][0]["ProductNumber"],
        json!("SKU123")
    );
    let response: ReceiptResponse =
        serde_json::from_value(items[1]["response"].clone()).expect("a response");
    assert_eq!(&response, answers[1]);

    // `?from=` starts at a row.
    let from = super::raw_http()
        .get(format!(
            "{}{}?from=3",
            sandbox.base_url(),
            paths::journal(DEV_QUEUE_ID, "QueueItem")
        ))
        .header(headers::CASHBOX_ID, DEV_CASHBOX_ID)
        .header(headers::CASHBOX_ACCESS_TOKEN, DEV_ACCESS_TOKEN)
        .send()
        .await
        .expect("answers")
        .json::<Vec<Value>>()
        .await
        .expect("an array");
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["ftQueueRow"], json!(3));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_journal_of_an_unknown_type_is_400_of_another_queue_404_without_credentials_401() {
    let sandbox = sandbox().await;
    let get = |queue: &str, kind: &str, token: &str| {
        super::raw_http()
            .get(format!(
                "{}{}",
                sandbox.base_url(),
                paths::journal(queue, kind)
            ))
            .header(headers::CASHBOX_ID, DEV_CASHBOX_ID)
            .header(headers::CASHBOX_ACCESS_TOKEN, token)
    };
    let unknown = send(get(DEV_QUEUE_ID, "Receipts", DEV_ACCESS_TOKEN))
        .await
        .problem(400);
    assert!(unknown.detail.contains("Receipts"), "{}", unknown.detail);
    send(get(OTHER_QUEUE, "ReceiptJournal", DEV_ACCESS_TOKEN))
        .await
        .problem(404);
    send(get(
        &Uuid::new_v4().to_string(),
        "ReceiptJournal",
        DEV_ACCESS_TOKEN,
    ))
    .await
    .problem(404);
    send(get(DEV_QUEUE_ID, "ReceiptJournal", "wrong"))
        .await
        .problem(401);
    // The other cash box reads its own, empty queue.
    let own = send(
        super::raw_http()
            .get(format!(
                "{}{}",
                sandbox.base_url(),
                paths::journal(OTHER_QUEUE, "QueueItem")
            ))
            .header(headers::CASHBOX_ID, OTHER_CASHBOX)
            .header(headers::CASHBOX_ACCESS_TOKEN, OTHER_TOKEN),
    )
    .await;
    assert_eq!((own.status, &own.body[..]), (200, &b"[]"[..]));
    sandbox.shutdown().await;
}
