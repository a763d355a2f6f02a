//! Receipts of a fiskaltrust merchant, end to end: journaled, queued in the outbox and signed by
//! the fiskaltrust sandbox (`POST /v2/sign`, validated as the interface documentation says), on
//! Postgres + Redis and on SQLite (`fiscus dev`): the seed's use cases, the middleware out of
//! reach (late signing, closed by a zero receipt), a failed signing unit (failed mode, closed by
//! an operator's zero receipt), answers lost after signing, and the queue's journal for auditors.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fiscus_e2e::{Authed, item, op, receipt, sale, settle, unique_terminal};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_providers::ebarimt::{EbarimtMerchant, EbarimtSandbox, EbarimtSandboxConfig};
use fiscus_providers::fiskaltrust::{
    FiskaltrustSandbox, FiskaltrustSandboxConfig, ReceiptFlags, StateFlags,
};
use futures::StreamExt;
use tonic::Code;

use crate::receipts::{Backend, Fixture};

/// The fiskaltrust merchant of these tests: an Italian partita IVA.
pub(crate) const TIN: &str = "12345678903";
/// A ready Italian queue's `ftState`.
const READY: u64 = 0x4954_2000_0000_0000;

/// The sandbox, and a receipt service whose merchant [`TIN`] signs in the sandbox's dev cash box
/// (its token brokered by TokenService); `outbox` is more TOML for `[receipts.outbox]`.
async fn start(backend: Backend, outbox: &str, extra: &str) -> (FiskaltrustSandbox, Fixture) {
    let sandbox = FiskaltrustSandbox::start(FiskaltrustSandboxConfig::default())
        .await
        .expect("the fiskaltrust sandbox starts");
    let config = config(&sandbox, outbox, extra);
    let fixture = Fixture::start_with(backend, &config).await;
    (sandbox, fixture)
}

/// The configuration of [`start`].
pub(crate) fn config(sandbox: &FiskaltrustSandbox, outbox: &str, extra: &str) -> String {
    let defaults = ["retry_min_ms = 50", "retry_max_ms = 500", "poll_ms = 100"]
        .into_iter()
        .filter(|line| !outbox.contains(line.split(' ').next().unwrap_or(line)))
        .collect::<Vec<_>>()
        .join("\n");
    let cash_box = &FiskaltrustSandboxConfig::default().cash_boxes[0];
    format!(
        r#"
[receipts]
client_id = "e2e-receipts"
client_secret = "e2e-receipts-secret"

[receipts.outbox]
{defaults}
{outbox}

{extra}

[[auth.clients]]
client_id = "e2e-receipts"
client_secret = "e2e-receipts-secret"
scopes = ["tokens:read"]

[[tokens.fiskaltrust]]
merchant_tin = "{TIN}"
cashbox_id = "{cashbox_id}"
access_token = "{access_token}"

[[receipts.merchants]]
tin = "{TIN}"
name = "Negozio Fiscus Srl"
currency = "EUR"
provider = "fiskaltrust"
[receipts.merchants.fiskaltrust]
url = "{url}"
market = "IT"
pos_system_id = "5f3b2c1e-7a4d-4e6b-9c8d-0a1b2c3d4e5f"
"#,
        cashbox_id = cash_box.cashbox_id,
        access_token = cash_box.access_token,
        url = sandbox.base_url(),
    )
}

/// An item at `rate` % VAT, price VAT included.
fn goods(name: &str, quantity: &str, price: &str, rate: &str) -> pb::ChargeItem {
    let mut item = item(name, quantity, price, pb::TaxType::VatAble);
    item.vat_rate = rate.into();
    item.measure_unit = "pcs".into();
    item
}

fn zero(terminal: &pb::Terminal) -> pb::SignReceiptRequest {
    pb::SignReceiptRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        kind: pb::ReceiptKind::Zero.into(),
        receipt_reference: format!("ZERO-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    }
}

async fn sign(
    client: &mut ReceiptServiceClient<Authed>,
    request: pb::SignReceiptRequest,
) -> pb::Receipt {
    client
        .sign_receipt(request)
        .await
        .expect("signed")
        .into_inner()
        .receipt
        .expect("a receipt")
}

async fn service_info(
    client: &mut ReceiptServiceClient<Authed>,
    terminal: &pb::Terminal,
) -> pb::GetServiceInfoResponse {
    client
        .get_service_info(pb::GetServiceInfoRequest {
            terminal: Some(terminal.clone()),
        })
        .await
        .expect("service info")
        .into_inner()
}

/// The receipt as RenderReceipt prints it in TXT.
async fn printed(client: &mut ReceiptServiceClient<Authed>, id: &str) -> String {
    client
        .render_receipt(pb::RenderReceiptRequest {
            receipt_id: id.to_owned(),
            format: pb::DocumentFormat::Txt.into(),
            ..Default::default()
        })
        .await
        .expect("rendered")
        .into_inner()
        .document
        .map(|d| d.text_lines.join("\n"))
        .unwrap_or_default()
}

/// The zero receipts of a terminal, newest first.
async fn zero_receipts(
    client: &mut ReceiptServiceClient<Authed>,
    terminal: &pb::Terminal,
) -> Vec<pb::Receipt> {
    client
        .list_receipts(pb::ListReceiptsRequest {
            terminal: Some(terminal.clone()),
            kinds: vec![pb::ReceiptKind::Zero.into()],
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .receipts
}

on_both_backends!(
    the_seeds_use_cases_are_signed_with_matching_totals_and_kept_signatures,
    receipts_made_while_the_middleware_is_unreachable_are_late_signed_in_order_and_closed,
    receipts_made_at_once_on_one_terminal_are_late_signed_in_their_journal_order,
    a_receipt_the_middleware_is_still_processing_is_asked_again_and_signed_once,
    a_cancellation_is_signed_as_a_void_of_its_receipt,
    a_failed_signing_unit_marks_every_receipt_until_an_operators_zero_receipt,
    answers_lost_after_signing_never_sign_a_receipt_twice,
    an_operation_id_sent_again_with_another_body_is_refused_and_signs_nothing_twice,
    what_fiskaltrust_would_refuse_is_refused_at_once_naming_the_field,
    the_queues_journal_is_streamed_to_auditors,
    an_e_barimt_and_a_fiskaltrust_merchant_sign_side_by_side_each_through_its_provider,
);

/// The seed's standard sale, mixed payments, B2B invoice with its customer and refund: each is
/// ACCEPTED with the middleware's identification, state and signatures, which GetReceipt and
/// RenderReceipt show, and each request the middleware got adds up to fiscus's total.
async fn the_seeds_use_cases_are_signed_with_matching_totals_and_kept_signatures(backend: Backend) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);

    // 1. Standard sale: two products at 22 % and a service at 10 %.
    let mut standard = sale(
        &terminal,
        vec![
            goods("Product A", "2", "61.00", "22.00"),
            goods("Service B", "1", "50.00", "10.00"),
        ],
        "172.00",
    );
    standard.items[0].product_number = "SKU123".into();
    // 2. Mixed payments: cash and a card with its terminal's data.
    let mut mixed = sale(
        &terminal,
        vec![goods("High-value Item", "1", "1000.00", "22.00")],
        "500.00",
    );
    mixed.payments.push(pb::PayItem {
        method: pb::PaymentMethod::PaymentCard.into(),
        amount: "500.00".into(),
        description: "Credit Card".into(),
        data: [("Protocol".to_owned(), "worldline_wpi_2".to_owned())].into(),
        ..Default::default()
    });
    // 3. B2B invoice with the customer.
    let mut invoice = sale(
        &terminal,
        vec![goods("Enterprise License", "10", "100.00", "22.00")],
        "1000.00",
    );
    invoice.r#type = pb::ReceiptType::B2bInvoice.into();
    invoice.customer_tin = "12345678901".into();
    invoice.customer_name = "ACME Corp".into();
    invoice.customer_address = "Via Roma 123, 00184 Roma RM".into();
    invoice.payments = vec![pb::PayItem {
        method: pb::PaymentMethod::BankTransfer.into(),
        amount: "1000.00".into(),
        description: "Bank Transfer".into(),
        ..Default::default()
    }];

    let mut signed = Vec::new();
    for request in [standard, mixed, invoice] {
        let receipt = sign(&mut client, request).await;
        assert_eq!(
            receipt.fiscal_state(),
            pb::FiscalState::Accepted,
            "{receipt:?}"
        );
        signed.push(receipt);
    }
    // 4. Refund of one "Product A" of the standard sale, paid back in cash.
    let refund = sign(
        &mut client,
        fiscus_e2e::refund(&terminal, &signed[0].id, &[(1, "1")], "61.00"),
    )
    .await;
    assert_eq!(
        refund.fiscal_state(),
        pb::FiscalState::Accepted,
        "{refund:?}"
    );
    signed.push(refund);

    let sent = sandbox.receipts();
    assert_eq!(sent.len(), 4, "one signing each");
    for (signed_receipt, at_sandbox) in signed.iter().zip(&sent) {
        let receipt = signed_receipt;
        let stored = self::receipt(&mut client, &receipt.id).await;
        assert!(!stored.ft_receipt_identification.is_empty());
        assert_eq!(
            stored.ft_receipt_identification,
            at_sandbox.response.receipt_identification
        );
        assert_eq!(stored.ft_queue_item_id, at_sandbox.response.queue_item_id);
        assert_eq!(stored.ft_queue_id, at_sandbox.response.queue_id);
        assert_eq!(
            stored.ft_cashbox_identification,
            at_sandbox.response.cash_box_identification
        );
        assert_eq!(stored.ft_state, READY);
        assert!(
            !stored.signatures.is_empty(),
            "the middleware's signatures are kept"
        );
        assert_eq!(
            stored.signatures.len(),
            at_sandbox.response.signatures.len()
        );
        let request = &at_sandbox.request;
        assert_eq!(request.receipt_reference, receipt.receipt_reference);
        let charged = request
            .charge_items
            .iter()
            .map(|c| c.amount.0)
            .fold(fiscus_domain::Money::ZERO, |a, b| {
                a.checked_add(b).expect("fits")
            });
        let paid = request
            .pay_items
            .iter()
            .map(|p| p.amount.0)
            .fold(fiscus_domain::Money::ZERO, |a, b| {
                a.checked_add(b).expect("fits")
            });
        let total = fiscus_domain::Money::parse(&receipt.total_amount).expect("total");
        let expected = if receipt.kind() == pb::ReceiptKind::Refund {
            total.checked_neg().expect("fits")
        } else {
            total
        };
        assert_eq!((charged, paid), (expected, expected), "{request:?}");
        // The printed receipt carries the signatures, as fiskaltrust asks.
        let text = printed(&mut client, &receipt.id).await;
        assert!(text.contains(&stored.ft_receipt_identification), "{text}");
        assert!(text.contains(&stored.ft_cashbox_identification), "{text}");
        for signature in &stored.signatures {
            assert!(text.contains(&signature.caption), "{text}");
        }
        // Its QR code is the middleware's QR-code signature.
        let qr = stored
            .signatures
            .iter()
            .find(|s| s.format & 0xFF == 0x03)
            .expect("a QR-code signature");
        assert_eq!(stored.qr_data, qr.data);
    }
    // The refund names its sale and undoes one product A.
    let refund_request = &sent[3].request;
    assert_eq!(
        refund_request.previous_receipt_reference.as_deref(),
        Some(signed[0].receipt_reference.as_str())
    );
    assert_ne!(refund_request.receipt_case.0 & ReceiptFlags::REFUND.0, 0);
    assert_eq!(
        refund_request.charge_items[0].amount.0.to_string(),
        "-61.00"
    );
    // The invoice is a B2B invoice naming its buyer.
    let invoice_request = &sent[2].request;
    assert_eq!(
        invoice_request.receipt_case.0 & 0xFFFF,
        0x1002,
        "{:#x}",
        invoice_request.receipt_case.0
    );
    let customer = invoice_request.customer.clone().expect("a customer");
    assert_eq!(customer["Name"], "ACME Corp");
    assert_eq!(customer["VATId"], "IT12345678901");
    // The card payment's data went along.
    assert_eq!(
        sent[1].request.pay_items[1]
            .pay_item_case_data
            .as_ref()
            .map(|d| d["Protocol"].clone()),
        Some(serde_json::json!("worldline_wpi_2"))
    );
    assert_eq!(sandbox.signed(), 4);
}

/// The middleware is down while 200 receipts are made on four terminals: each is journaled and
/// answered PENDING at once. Back online, each is signed once, late-signed, in its terminal's
/// order; then a zero receipt per terminal ends late-signing mode and the terminals show a
/// ready queue.
async fn receipts_made_while_the_middleware_is_unreachable_are_late_signed_in_order_and_closed(
    backend: Backend,
) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminals: Vec<pb::Terminal> = (0..4).map(|_| unique_terminal(TIN)).collect();
    // One receipt signed normally first: the queue is ready.
    let first = sign(
        &mut client,
        sale(
            &terminals[0],
            vec![goods("Espresso", "1", "1.20", "10.00")],
            "1.20",
        ),
    )
    .await;
    assert_eq!(first.fiscal_state(), pb::FiscalState::Accepted);
    sandbox.set_down(true).await.expect("down");
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    let mut all = Vec::new();
    for n in 0..200 {
        let terminal = &terminals[n % 4];
        let price = format!("{}.{:02}", 1 + n % 7, n % 100);
        let receipt = sign(
            &mut client,
            sale(
                terminal,
                vec![goods("Cornetto", "1", &price, "10.00")],
                &price,
            ),
        )
        .await;
        assert_eq!(
            receipt.fiscal_state(),
            pb::FiscalState::Pending,
            "answered at once"
        );
        if n == 0 {
            // The copy the till prints meanwhile says so, as fiskaltrust's failure scenario asks.
            let text = printed(&mut client, &receipt.id).await;
            assert!(
                text.contains("ELECTRONIC RECORDING SYSTEM FAILED"),
                "{text}"
            );
        }
        ids.entry(terminal.pos_no.clone())
            .or_default()
            .push(receipt.receipt_reference.clone());
        all.push(receipt.id);
    }
    sandbox.set_down(false).await.expect("up");
    settle(&mut client, &all, pb::FiscalState::Accepted).await;

    // Each once, late-signed, in order per terminal.
    let sent = sandbox.receipts();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut references = HashSet::new();
    for signed in &sent {
        let request = &signed.request;
        if request.receipt_case.0 & 0xFFFF == 0x2000 {
            continue;
        }
        assert!(
            references.insert(request.receipt_reference.clone()),
            "signed twice: {}",
            request.receipt_reference
        );
        if request.receipt_reference == first.receipt_reference {
            continue;
        }
        assert_ne!(
            request.receipt_case.0 & ReceiptFlags::LATE_SIGNING.0,
            0,
            "{} is late-signed",
            request.receipt_reference
        );
        let pos = request
            .terminal_id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        seen.entry(pos)
            .or_default()
            .push(request.receipt_reference.clone());
    }
    assert_eq!(seen, ids, "every receipt once, in its terminal's order");
    // A zero receipt per terminal closed late signing; the terminals show a ready queue.
    for terminal in &terminals {
        let mut closed = false;
        for _ in 0..300 {
            let zeros = zero_receipts(&mut client, terminal).await;
            if zeros
                .iter()
                .any(|z| z.fiscal_state() == pb::FiscalState::Accepted)
            {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed, "a zero receipt closed late signing on {terminal:?}");
        let info = service_info(&mut client, terminal).await;
        assert_eq!(info.provider(), pb::Provider::Fiskaltrust);
        assert!(!info.late_signing, "{info:?}");
        assert_eq!(info.ft_state, READY, "{:#x}", info.ft_state);
        assert_eq!(info.pending_receipts, 0);
    }
    assert_eq!(
        sandbox.state_of(&FiskaltrustSandboxConfig::default().cash_boxes[0].cashbox_id),
        Some(READY)
    );
}

/// The signing unit fails: the middleware goes on signing, every receipt carries the failed
/// state (…0002) and the terminal shows failed mode, even once the unit is back, until an
/// operator's zero receipt; fiscus sends none itself. The sandbox signed what fiscus journaled.
async fn a_failed_signing_unit_marks_every_receipt_until_an_operators_zero_receipt(
    backend: Backend,
) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    sandbox.set_scu_failed(true);
    let mut journaled = 0;
    for _ in 0..3 {
        let receipt = sign(
            &mut client,
            sale(
                &terminal,
                vec![goods("Pizza", "1", "8.50", "10.00")],
                "8.50",
            ),
        )
        .await;
        journaled += 1;
        assert_eq!(receipt.fiscal_state(), pb::FiscalState::Accepted);
        assert_ne!(
            receipt.ft_state & StateFlags::SCU_OUT_OF_SERVICE.0,
            0,
            "{:#x}",
            receipt.ft_state
        );
        assert!(
            !receipt.signatures.is_empty(),
            "the middleware's notice is kept"
        );
        let text = printed(&mut client, &receipt.id).await;
        assert!(
            text.contains("SCU communication failed"),
            "the printed receipt carries the notice: {text}"
        );
    }
    assert!(service_info(&mut client, &terminal).await.failed_mode);
    // Back, but the circuit stays open until a zero receipt.
    sandbox.set_scu_failed(false);
    let still = sign(
        &mut client,
        sale(
            &terminal,
            vec![goods("Pizza", "1", "8.50", "10.00")],
            "8.50",
        ),
    )
    .await;
    journaled += 1;
    assert_ne!(still.ft_state & StateFlags::SCU_OUT_OF_SERVICE.0, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        zero_receipts(&mut client, &terminal).await.is_empty(),
        "fiscus sends no zero receipt of its own in failed mode"
    );
    let closing = sign(&mut client, zero(&terminal)).await;
    journaled += 1;
    assert_eq!(closing.fiscal_state(), pb::FiscalState::Accepted);
    assert_eq!(closing.ft_state, READY, "{:#x}", closing.ft_state);
    let after = sign(
        &mut client,
        sale(
            &terminal,
            vec![goods("Pizza", "1", "8.50", "10.00")],
            "8.50",
        ),
    )
    .await;
    journaled += 1;
    assert_eq!(after.ft_state, READY);
    let info = service_info(&mut client, &terminal).await;
    assert!(!info.failed_mode, "{info:?}");
    assert_eq!(sandbox.signed(), journaled);
}

/// The middleware loses 30 % of its answers after signing: fiscus replays under the same
/// operation id, and the middleware signed exactly as many receipts as fiscus journaled.
async fn answers_lost_after_signing_never_sign_a_receipt_twice(backend: Backend) {
    let (sandbox, fixture) = start(
        backend,
        "attempt_timeout_ms = 1000\nclaim_ms = 5000\nanswer_within_ms = 200",
        "",
    )
    .await;
    let mut client = fixture.client();
    let terminals: Vec<pb::Terminal> = (0..3).map(|_| unique_terminal(TIN)).collect();
    sandbox.set_drop_ratio(0.3);
    let mut ids = Vec::new();
    for n in 0..45 {
        let receipt = sign(
            &mut client,
            sale(
                &terminals[n % 3],
                vec![goods("Gelato", "2", "2.50", "10.00")],
                "5.00",
            ),
        )
        .await;
        ids.push(receipt.id);
    }
    settle(&mut client, &ids, pb::FiscalState::Accepted).await;
    sandbox.set_drop_ratio(0.0);
    let references: Vec<String> = sandbox
        .receipts()
        .iter()
        .map(|r| r.request.receipt_reference.clone())
        .filter(|r| r.starts_with("order-"))
        .collect();
    let unique: HashSet<&String> = references.iter().collect();
    assert_eq!(unique.len(), references.len(), "no receipt signed twice");
    let sales = u64::try_from(ids.len()).expect("fits");
    // Late signing may have been closed by zero receipts, which fiscus journaled too.
    let mut zeros = 0u64;
    for terminal in &terminals {
        zeros += u64::try_from(zero_receipts(&mut client, terminal).await.len()).expect("fits");
    }
    assert_eq!(sandbox.signed(), sales + zeros);
    assert!(sandbox.replays() > 0, "some answers were lost and replayed");
}

/// A client that reuses an operation id for another receipt is refused by fiscus itself, and
/// the middleware signs the first receipt once.
async fn an_operation_id_sent_again_with_another_body_is_refused_and_signs_nothing_twice(
    backend: Backend,
) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let first = sale(
        &terminal,
        vec![goods("Vino", "1", "12.00", "22.00")],
        "12.00",
    );
    let signed = sign(&mut client, first.clone()).await;
    assert_eq!(signed.fiscal_state(), pb::FiscalState::Accepted);
    let again = sign(&mut client, first.clone()).await;
    assert_eq!(again.id, signed.id, "a retry answers the same receipt");
    let mut other = sale(
        &terminal,
        vec![goods("Birra", "1", "4.00", "22.00")],
        "4.00",
    );
    other.operation_id = first.operation_id.to_uppercase();
    let refused = client.sign_receipt(other).await.expect_err("refused");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("operation"),
        "{}",
        refused.message()
    );
    assert_eq!(sandbox.signed(), 1);
}

/// A VAT rate Italy does not have, a case of another market or a closing case on a sale, and a
/// currency other than the euro are refused by SignReceipt naming the field; nothing is
/// journaled and nothing reaches the middleware.
async fn what_fiskaltrust_would_refuse_is_refused_at_once_naming_the_field(backend: Backend) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let bad_rate = sale(&terminal, vec![goods("Pane", "1", "3.00", "7.00")], "3.00");
    let mut german_case = sale(&terminal, vec![goods("Pane", "1", "3.00", "10.00")], "3.00");
    german_case.items[0].charge_item_case = 0x4445_2000_0000_0013;
    let mut closing_sale = sale(&terminal, vec![goods("Pane", "1", "3.00", "10.00")], "3.00");
    closing_sale.receipt_case = 0x4954_2000_0000_2011;
    let mut lira = sale(&terminal, vec![goods("Pane", "1", "3.00", "10.00")], "3.00");
    lira.currency = "MNT".into();
    for (request, field) in [
        (bad_rate, "items[0].vat_rate"),
        (german_case, "items[0].charge_item_case"),
        (closing_sale, "receipt_case"),
        (lira, "currency"),
    ] {
        let refused = client.sign_receipt(request).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    let listed = client
        .list_receipts(pb::ListReceiptsRequest {
            terminal: Some(terminal.clone()),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert!(listed.receipts.is_empty());
    assert_eq!(sandbox.requests(), 0);
    // A daily closing is a zero receipt naming its case.
    let mut daily = zero(&terminal);
    daily.receipt_case = 0x4954_2000_0000_2011;
    let closed = sign(&mut client, daily).await;
    assert_eq!(closed.fiscal_state(), pb::FiscalState::Accepted);
    assert_eq!(
        sandbox.receipts()[0].request.receipt_case.0,
        0x4954_2000_0000_2011
    );
}

/// ExportProviderJournal streams the queue's own journals from the middleware.
async fn the_queues_journal_is_streamed_to_auditors(backend: Backend) {
    let (_sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    for _ in 0..3 {
        sign(
            &mut client,
            sale(
                &terminal,
                vec![goods("Acqua", "1", "0.80", "10.00")],
                "0.80",
            ),
        )
        .await;
    }
    let mut stream = client
        .export_provider_journal(pb::ExportProviderJournalRequest {
            terminal: Some(terminal.clone()),
            r#type: pb::ProviderJournalType::ReceiptJournal.into(),
            ..Default::default()
        })
        .await
        .expect("exported")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend(chunk.expect("a chunk").data);
    }
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("a JSON array");
    assert_eq!(entries.len(), 3, "{entries:?}");
    let refused = client
        .export_provider_journal(pb::ExportProviderJournalRequest {
            terminal: Some(terminal.clone()),
            ..Default::default()
        })
        .await
        .expect_err("no type");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("type"));
}

/// One receipt service, two upstream merchants at once: each receipt reaches its own provider.
async fn an_e_barimt_and_a_fiskaltrust_merchant_sign_side_by_side_each_through_its_provider(
    backend: Backend,
) {
    const EBARIMT_TIN: &str = "61001234567";
    let fiskaltrust = FiskaltrustSandbox::start(FiskaltrustSandboxConfig::default())
        .await
        .expect("the fiskaltrust sandbox starts");
    let ebarimt = EbarimtSandbox::start(
        EbarimtSandboxConfig::default()
            .with_merchant(EbarimtMerchant::new(EBARIMT_TIN, "Э-Баримт Дэлгүүр ХХК")),
    )
    .await
    .expect("the POSAPI sandbox starts");
    let extra = format!(
        r#"
[[receipts.merchants]]
tin = "{EBARIMT_TIN}"
name = "Э-Баримт Дэлгүүр ХХК"
provider = "ebarimt"
[receipts.merchants.ebarimt]
posapi_url = "{url}"
api_url = "{url}"
district_code = "2501"
"#,
        url = ebarimt.base_url()
    );
    let fixture = Fixture::start_with(backend, &config(&fiskaltrust, "", &extra)).await;
    let (mut one, mut other) = (fixture.client(), fixture.client());
    let (italy, mongolia) = (unique_terminal(TIN), unique_terminal(EBARIMT_TIN));
    let mut signed = Vec::new();
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            sign(
                &mut one,
                sale(&italy, vec![goods("Caffè", "1", "1.10", "10.00")], "1.10"),
            ),
            sign(&mut other, fiscus_e2e::bread_sale(&mongolia)),
        );
        signed.push((a, b));
    }
    for (italian, mongolian) in &signed {
        assert_eq!(italian.fiscal_state(), pb::FiscalState::Accepted);
        assert_eq!(italian.provider(), pb::Provider::Fiskaltrust);
        assert!(!italian.ft_receipt_identification.is_empty());
        assert!(italian.ebarimt_id.is_empty());
        assert_eq!(mongolian.fiscal_state(), pb::FiscalState::Accepted);
        assert_eq!(mongolian.provider(), pb::Provider::Ebarimt);
        assert_eq!(mongolian.ebarimt_id.len(), 33);
        assert!(mongolian.ft_receipt_identification.is_empty());
    }
    assert_eq!(fiskaltrust.signed(), 5);
    assert_eq!(ebarimt.documents(), 5);
}

/// An upgrade changed what fiscus sends for a receipt whose answer was lost: the middleware
/// knows its operation id with another body (409). fiscus then asks with the receipt-request
/// flag, which answers the receipt the middleware already signed: signed once, ACCEPTED with
/// that signing's identification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_the_middleware_finds_changed_is_settled_by_the_receipt_request_flag() {
    let (sandbox, fixture) = start(
        Backend::Postgres,
        "attempt_timeout_ms = 500\nclaim_ms = 2000\nanswer_within_ms = 100\n\
         retry_min_ms = 600000\nretry_max_ms = 600000",
        "",
    )
    .await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    sandbox.drop_next(1);
    let receipt = sign(
        &mut client,
        sale(
            &terminal,
            vec![goods("Tiramisù", "1", "6.00", "10.00")],
            "6.00",
        ),
    )
    .await;
    assert_eq!(receipt.fiscal_state(), pb::FiscalState::Pending);
    for _ in 0..100 {
        if fixture
            .count("SELECT COUNT(*) FROM outbox WHERE in_doubt")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sandbox.signed(), 1, "signed, its answer lost");
    fixture.process.kill_hard();
    // The upgrade: another POS system id, so the same receipt makes another request.
    let (_upgraded, mut upgraded_client) = fixture
        .second_replica_configured(|config| {
            config.replace(
                "5f3b2c1e-7a4d-4e6b-9c8d-0a1b2c3d4e5f",
                "0c0ffee0-7a4d-4e6b-9c8d-0a1b2c3d4e5f",
            )
        })
        .await;
    upgraded_client
        .resend_pending(pb::ResendPendingRequest {
            operation_id: op(),
            terminal: Some(terminal.clone()),
            receipt_ids: vec![receipt.id.clone()],
        })
        .await
        .expect("resent");
    settle(
        &mut upgraded_client,
        std::slice::from_ref(&receipt.id),
        pb::FiscalState::Accepted,
    )
    .await;
    assert_eq!(
        sandbox.conflicts(),
        1,
        "the middleware saw the changed replay"
    );
    assert_eq!(sandbox.signed(), 1, "and signed nothing twice");
    let signed = self::receipt(&mut upgraded_client, &receipt.id).await;
    assert_eq!(
        signed.ft_receipt_identification,
        sandbox.receipts()[0].response.receipt_identification
    );
}

/// While the middleware is out of reach, a terminal's receipts come with moments that go back
/// (a till whose clock was set back, or two clients of one terminal signing at once): once it
/// is back, every one is signed late, none refused, in the terminal's journal order, with the
/// moments sent ascending as fiskaltrust's late signing requires.
async fn receipts_made_at_once_on_one_terminal_are_late_signed_in_their_journal_order(
    backend: Backend,
) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let terminal = unique_terminal(TIN);
    sandbox.set_down(true).await.expect("down");
    let now = chrono::Utc::now();
    let signer = |mut client: ReceiptServiceClient<Authed>, terminal: pb::Terminal, back: bool| async move {
        let mut ids = Vec::new();
        for n in 0..20i64 {
            let mut request = sale(
                &terminal,
                vec![goods("Panino", "1", "4.50", "10.00")],
                "4.50",
            );
            if back {
                // Each a second before the one before it.
                let moment = now - chrono::Duration::seconds(n + 1);
                request.receipt_moment = Some(prost_types::Timestamp {
                    seconds: moment.timestamp(),
                    nanos: 0,
                });
            }
            ids.push(sign(&mut client, request).await.id);
        }
        ids
    };
    let (a, b) = tokio::join!(
        signer(fixture.client(), terminal.clone(), false),
        signer(fixture.client(), terminal.clone(), true)
    );
    let all: Vec<String> = a.into_iter().chain(b).collect();
    sandbox.set_down(false).await.expect("up");
    let mut client = fixture.client();
    settle(&mut client, &all, pb::FiscalState::Accepted).await;
    let mut journal: Vec<pb::Receipt> = Vec::new();
    for id in &all {
        journal.push(receipt(&mut client, id).await);
    }
    journal.sort_by_key(|r| r.receipt_number);
    let sent: Vec<_> = sandbox
        .receipts()
        .into_iter()
        .filter(|r| r.request.receipt_case.0 & 0xFFFF != 0x2000)
        .collect();
    assert_eq!(
        sent.iter()
            .map(|r| r.request.receipt_reference.clone())
            .collect::<Vec<_>>(),
        journal
            .iter()
            .map(|r| r.receipt_reference.clone())
            .collect::<Vec<_>>(),
        "each once, in the journal's order"
    );
    assert!(
        sent.windows(2)
            .all(|w| w[0].request.receipt_moment <= w[1].request.receipt_moment),
        "the moments sent ascend"
    );
    assert_eq!(sandbox.refusals(), 0);
}

/// The middleware takes longer to sign than an attempt may wait: the attempt gives up not
/// knowing, its repeat under the same operation id finds the first still being processed (422),
/// and fiscus asks again until the first's answer is replayed: ACCEPTED, signed once.
async fn a_receipt_the_middleware_is_still_processing_is_asked_again_and_signed_once(
    backend: Backend,
) {
    let (sandbox, fixture) = start(
        backend,
        "attempt_timeout_ms = 400\nclaim_ms = 2000\nanswer_within_ms = 100",
        "",
    )
    .await;
    let mut client = fixture.client();
    sandbox.set_processing_time(Duration::from_millis(1500));
    let receipt = sign(
        &mut client,
        sale(
            &unique_terminal(TIN),
            vec![goods("Cannolo", "1", "3.00", "10.00")],
            "3.00",
        ),
    )
    .await;
    assert_eq!(receipt.fiscal_state(), pb::FiscalState::Pending);
    settle(
        &mut client,
        std::slice::from_ref(&receipt.id),
        pb::FiscalState::Accepted,
    )
    .await;
    sandbox.set_processing_time(Duration::ZERO);
    assert!(
        sandbox.in_flight_refusals() > 0,
        "a repeat found it in progress"
    );
    assert_eq!(sandbox.signed(), 1, "signed once");
    assert_eq!(
        self::receipt(&mut client, &receipt.id)
            .await
            .ft_receipt_identification,
        sandbox.receipts()[0].response.receipt_identification
    );
}

/// CancelReceipt of a signed sale: the cancellation is signed as the sale's case with the void
/// flag, naming the sale, its lines and payments negated.
async fn a_cancellation_is_signed_as_a_void_of_its_receipt(backend: Backend) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let sold = sign(
        &mut client,
        sale(
            &terminal,
            vec![goods("Lasagne", "2", "9.50", "10.00")],
            "19.00",
        ),
    )
    .await;
    let cancelled = client
        .cancel_receipt(fiscus_e2e::cancellation(&terminal, &sold.id, "wrong table"))
        .await
        .expect("cancelled")
        .into_inner();
    let cancellation = cancelled.cancellation.expect("the cancellation");
    settle(
        &mut client,
        std::slice::from_ref(&cancellation.id),
        pb::FiscalState::Accepted,
    )
    .await;
    let sent = sandbox.receipts();
    assert_eq!(sent.len(), 2);
    let void = &sent[1].request;
    assert_eq!(
        void.receipt_case.0, 0x4954_2000_0004_0001,
        "{:#x}",
        void.receipt_case.0
    );
    assert_eq!(
        void.previous_receipt_reference.as_deref(),
        Some(sold.receipt_reference.as_str())
    );
    assert_eq!(void.charge_items[0].amount.0.to_string(), "-19.00");
    assert_eq!(void.charge_items[0].quantity.0.to_string(), "-2.000");
    assert_eq!(void.pay_items[0].amount.0.to_string(), "-19.00");
    assert_eq!(sandbox.signed(), 2);
}
