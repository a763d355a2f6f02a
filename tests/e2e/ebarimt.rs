//! Receipts of an e-barimt merchant, end to end: journaled, queued in the outbox and delivered to
//! the POSAPI sandbox (which validates every body against the official OpenAPI document), on
//! Postgres + Redis and on SQLite (`fiscus dev`), with the upstream down, losing answers and
//! refusing, and with a receipt service killed mid-drain.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fiscus_e2e::{Authed, cancellation, cash, item, op, receipt, refund, settle, unique_terminal};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_providers::ebarimt::{EbarimtMerchant, EbarimtSandbox, EbarimtSandboxConfig};
use futures::StreamExt;
use tonic::Code;

use crate::receipts::{Backend, Fixture};

/// The e-barimt merchant of these tests (a city-tax payer, registered in the sandbox).
const TIN: &str = "61001234567";

/// The sandbox, and a receipt service whose merchant [`TIN`] is on it; `outbox` is more TOML
/// for `[receipts.outbox]`.
async fn start(backend: Backend, outbox: &str, extra: &str) -> (EbarimtSandbox, Fixture) {
    start_with(backend, outbox, extra, "").await
}

/// [`start`], with more TOML for the merchant's `[receipts.merchants.ebarimt]`.
async fn start_with(
    backend: Backend,
    outbox: &str,
    extra: &str,
    merchant: &str,
) -> (EbarimtSandbox, Fixture) {
    let sandbox = EbarimtSandbox::start(
        EbarimtSandboxConfig::default()
            .with_merchant(EbarimtMerchant::new(TIN, "Э-Баримт Дэлгүүр ХХК").city_payer(true)),
    )
    .await
    .expect("the POSAPI sandbox starts");
    // Quick retries, unless `outbox` says otherwise.
    let defaults = ["retry_min_ms = 50", "retry_max_ms = 500", "poll_ms = 100"]
        .into_iter()
        .filter(|line| !outbox.contains(line.split(' ').next().unwrap_or(line)))
        .collect::<Vec<_>>()
        .join("\n");
    let config = format!(
        r#"
[receipts.outbox]
{defaults}
{outbox}

{extra}

[[receipts.merchants]]
tin = "{TIN}"
name = "Э-Баримт Дэлгүүр ХХК"
city_tax_payer = true
provider = "ebarimt"
[receipts.merchants.ebarimt]
posapi_url = "{url}"
api_url = "{url}"
district_code = "2501"
{merchant}
"#,
        url = sandbox.base_url()
    );
    let fixture = Fixture::start_with(backend, &config).await;
    (sandbox, fixture)
}

fn goods(name: &str, quantity: &str, price: &str, tax: pb::TaxType) -> pb::ChargeItem {
    let mut item = item(name, quantity, price, tax);
    item.classification_code = "2349010".into();
    if tax != pb::TaxType::VatAble {
        item.tax_product_code = "305".into();
    }
    item
}

/// A sale of `items` on `terminal`, paid in cash to the cent.
fn sale_of(
    terminal: &pb::Terminal,
    kind: pb::ReceiptType,
    items: Vec<pb::ChargeItem>,
) -> pb::SignReceiptRequest {
    pb::SignReceiptRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        r#type: kind.into(),
        kind: pb::ReceiptKind::Sale.into(),
        receipt_reference: format!("order-{}", uuid::Uuid::new_v4().simple()),
        items,
        ..Default::default()
    }
}

/// Signs `request`, paying it exactly in cash when it names no payment.
async fn sign(
    client: &mut ReceiptServiceClient<Authed>,
    mut request: pb::SignReceiptRequest,
) -> pb::Receipt {
    if request.payments.is_empty() && request.kind == i32::from(pb::ReceiptKind::Sale) {
        let total: fiscus_domain::Money = request
            .items
            .iter()
            .map(|i| {
                let q = fiscus_domain::Quantity::parse(&i.quantity).expect("quantity");
                fiscus_domain::Money::parse(&i.unit_price)
                    .expect("price")
                    .times(q)
                    .expect("fits")
            })
            .fold(fiscus_domain::Money::ZERO, |a, b| {
                a.checked_add(b).expect("fits")
            });
        request.payments = vec![cash(&total.to_string())];
    }
    client
        .sign_receipt(request)
        .await
        .expect("signed")
        .into_inner()
        .receipt
        .expect("a receipt")
}

fn is_ddtd(id: &str) -> bool {
    id.len() == 33 && id.bytes().all(|b| b.is_ascii_digit())
}

on_both_backends!(
    a_corpus_of_receipts_reaches_e_barimt_exactly_once_each,
    an_upstream_outage_is_answered_pending_and_delivered_in_order_once_back,
    receipts_backing_off_are_delivered_as_soon_as_the_posapi_answers_again,
    answers_lost_after_the_document_was_made_never_make_a_second_one,
    a_refused_receipt_is_rejected_listed_and_not_retried_until_resent,
    bad_input_is_named_and_writes_nothing,
    reference_data_comes_from_the_posapi,
    the_central_api_lookups_carry_the_merchants_e_barimt_token,
    an_erp_record_is_fiscalized_through_its_transaction_form,
);

async fn a_corpus_of_receipts_reaches_e_barimt_exactly_once_each(backend: Backend) {
    use pb::ReceiptType as R;
    use pb::TaxType as T;
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let mut documents = 0u64;
    let mut sales = Vec::new();

    // Every type, every tax type, mixed-tax receipts, Cyrillic names, pharmacy lots, card data.
    let mut corpus = vec![
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Талх", "1", "5600", T::VatAble)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Сүү 1л", "3", "2750.50", T::VatAble)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Ном", "2", "15000", T::VatFree)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Экспорт", "1", "990000", T::VatZero)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Үйлчилгээ", "1", "12345.67", T::NoVat)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![
                goods("Талх", "2", "2800", T::VatAble),
                goods("Ном", "1", "15000", T::VatFree),
                goods("Экспорт", "1", "500", T::VatZero),
                goods("Үйлчилгээ", "0.125", "8000", T::NoVat),
            ],
        ),
        sale_of(
            &terminal,
            R::B2cInvoice,
            vec![goods("Тээвэр", "1", "250000", T::VatAble)],
        ),
        sale_of(
            &terminal,
            R::B2cReceipt,
            vec![goods("Гурил 25кг", "1.5", "33333.33", T::VatAble)],
        ),
    ];
    for kind in [R::B2bReceipt, R::B2bInvoice] {
        let mut request = sale_of(
            &terminal,
            kind,
            vec![
                goods("Цемент", "10", "18500", T::VatAble),
                goods("Ном", "1", "15000", T::VatFree),
            ],
        );
        request.customer_tin = "37900846788".into();
        corpus.push(request);
    }
    let mut consumer = sale_of(
        &terminal,
        R::B2cReceipt,
        vec![goods("Жимс", "2.345", "4990", T::VatAble)],
    );
    consumer.consumer_no = "10038071".into();
    corpus.push(consumer);
    let mut pharmacy = sale_of(
        &terminal,
        R::B2cReceipt,
        vec![
            goods("Парацетамол 500мг", "2", "3500", T::VatAble),
            goods("Витамин C", "1", "12000", T::VatFree),
        ],
    );
    pharmacy.items[0].lot_no = "LOT-2026-11-A".into();
    pharmacy.items[1].lot_no = "LOT-2026-09-C".into();
    corpus.push(pharmacy);
    let mut card = sale_of(
        &terminal,
        R::B2cReceipt,
        vec![goods("Гутал", "1", "129900", T::VatAble)],
    );
    card.payments = vec![
        cash("30000"),
        pb::PayItem {
            method: pb::PaymentMethod::PaymentCard.into(),
            amount: "99900".into(),
            rrn: "123456789123".into(),
            card_terminal_id: "11111".into(),
            masked_card_number: "123456XXXXXX7890".into(),
            easy_register: true,
            ..Default::default()
        },
    ];
    corpus.push(card);
    let mut with_change = sale_of(
        &terminal,
        R::B2cReceipt,
        vec![goods("Ундаа", "3", "1650", T::VatAble)],
    );
    with_change.payments = vec![
        cash("5000"),
        pb::PayItem {
            method: pb::PaymentMethod::Change.into(),
            amount: "50".into(),
            ..Default::default()
        },
    ];
    corpus.push(with_change);
    for n in 0..6 {
        corpus.push(sale_of(
            &terminal,
            R::B2cReceipt,
            vec![
                goods(
                    &format!("Бараа №{n}"),
                    "1",
                    &format!("{}.{:02}", 1000 + n * 37, n * 7),
                    T::VatAble,
                ),
                goods("Ном", "1", "100.01", T::VatFree),
            ],
        ));
    }
    for request in corpus {
        let receipt = sign(&mut client, request).await;
        assert_eq!(
            receipt.fiscal_state(),
            pb::FiscalState::Accepted,
            "{receipt:?}"
        );
        assert!(is_ddtd(&receipt.ebarimt_id), "{}", receipt.ebarimt_id);
        assert_eq!(receipt.provider(), pb::Provider::Ebarimt);
        assert!(receipt.accepted_at.is_some());
        if receipt.r#type() == R::B2cReceipt {
            assert!(
                !receipt.lottery.is_empty(),
                "a B2C receipt carries a lottery number"
            );
        }
        assert!(!receipt.qr_data.is_empty() && !receipt.qr_data.starts_with("fiscus:"));
        documents += 1;
        sales.push(receipt);
    }

    // The printed receipt carries what e-barimt holds.
    let printed = client
        .render_receipt(pb::RenderReceiptRequest {
            receipt_id: sales[0].id.clone(),
            format: pb::DocumentFormat::Txt.into(),
            ..Default::default()
        })
        .await
        .expect("rendered")
        .into_inner()
        .document
        .expect("a document");
    let text = String::from_utf8(printed.content).expect("UTF-8");
    assert!(text.contains(&sales[0].ebarimt_id), "{text}");
    assert!(text.contains(&sales[0].lottery), "{text}");

    // Refunds: partial twice (each a correction replacing the document before it), then the
    // rest (nothing remains: the last document is deleted); a cancellation deletes too.
    let mixed = &sales[5];
    let first = sign(
        &mut client,
        refund(&terminal, &mixed.id, &[(1, "1")], "2800"),
    )
    .await;
    assert_eq!(first.fiscal_state(), pb::FiscalState::Accepted, "{first:?}");
    assert!(is_ddtd(&first.ebarimt_id) && first.ebarimt_id != mixed.ebarimt_id);
    assert!(
        first.lottery.is_empty(),
        "a correction has no lottery of its own"
    );
    documents += 1;
    let status = client
        .cancel_receipt(cancellation(&terminal, &first.id, "by mistake"))
        .await
        .expect_err("e-barimt cannot undo a correction");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    let second = sign(
        &mut client,
        refund(&terminal, &mixed.id, &[(4, "0.125")], "1000"),
    )
    .await;
    assert_eq!(
        second.fiscal_state(),
        pb::FiscalState::Accepted,
        "{second:?}"
    );
    documents += 1;
    let rest = sign(&mut client, refund(&terminal, &mixed.id, &[], "18300")).await;
    assert_eq!(rest.fiscal_state(), pb::FiscalState::Accepted, "{rest:?}");
    assert!(rest.ebarimt_id.is_empty(), "deleting makes no document");
    let whole = sign(&mut client, refund(&terminal, &sales[0].id, &[], "5600")).await;
    assert_eq!(whole.fiscal_state(), pb::FiscalState::Accepted, "{whole:?}");
    let cancelled = client
        .cancel_receipt(cancellation(&terminal, &sales[1].id, "wrong till"))
        .await
        .expect("cancelled")
        .into_inner();
    let cancellation_id = cancelled.cancellation.expect("a cancellation").id;
    settle(&mut client, &[cancellation_id], pb::FiscalState::Accepted).await;

    assert_eq!(
        sandbox.schema_violations(),
        0,
        "every body keeps the official schema"
    );
    assert_eq!(
        sandbox.documents(),
        documents,
        "one document per receipt that makes one"
    );
    let made = sandbox.documents_of(TIN, &terminal.branch_no, &terminal.pos_no);
    let ids: HashSet<_> = made.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), made.len(), "no ДДТД twice");
    let inactive: HashSet<_> = made
        .iter()
        .filter(|d| d.state != fiscus_providers::ebarimt::DocumentState::Active)
        .map(|d| d.id.clone())
        .collect();
    for gone in [
        &mixed.ebarimt_id,
        &first.ebarimt_id,
        &second.ebarimt_id,
        &sales[0].ebarimt_id,
        &sales[1].ebarimt_id,
    ] {
        assert!(inactive.contains(gone), "{gone} was replaced or deleted");
    }
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM outbox").await,
        0,
        "the outbox is empty once everything is delivered"
    );
}

async fn an_upstream_outage_is_answered_pending_and_delivered_in_order_once_back(backend: Backend) {
    let (sandbox, fixture) = start(backend, "", "").await;
    sandbox.set_down(true).await.expect("down");
    let terminals: Vec<_> = (0..20).map(|_| unique_terminal(TIN)).collect();
    let per_terminal = 25;
    let mut tasks = Vec::new();
    for terminal in terminals.clone() {
        let mut client = fixture.client();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..per_terminal {
                let receipt = sign(
                    &mut client,
                    sale_of(
                        &terminal,
                        pb::ReceiptType::B2cReceipt,
                        vec![goods(
                            "Талх",
                            "1",
                            &format!("{}", 1000 + n),
                            pb::TaxType::VatAble,
                        )],
                    ),
                )
                .await;
                assert_eq!(
                    receipt.fiscal_state(),
                    pb::FiscalState::Pending,
                    "{receipt:?}"
                );
                ids.push(receipt.id);
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("signing task"));
    }
    assert_eq!(all.len(), 500);
    let mut client = fixture.client();
    // The oldest of a terminal is tried again and again, each failure named.
    let mut pending = pb::ListPendingResponse::default();
    for _ in 0..100 {
        pending = client
            .list_pending(pb::ListPendingRequest {
                terminal: Some(terminals[0].clone()),
                page_size: 10,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner();
        if !pending.pending[0].last_error.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending.pending.len(), 10);
    assert!(!pending.next_page_token.is_empty());
    assert!(
        pending
            .pending
            .iter()
            .all(|p| !p.dead_letter && p.fiscal_state() == pb::FiscalState::Pending)
    );
    assert!(
        pending
            .pending
            .windows(2)
            .all(|w| w[0].receipt_number < w[1].receipt_number)
    );
    assert!(
        pending.pending[0].last_error.contains("Connection refused"),
        "{:?}",
        pending.pending[0]
    );
    assert!(pending.pending[0].attempts >= 1);

    // The outbox's gauges say what waits (sampled every few seconds), on the receipts binary's
    // admin port.
    if matches!(backend, Backend::Postgres) {
        let admin = fixture.process.admin.expect("the admin port is logged");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut depth = 0.0;
        for _ in 0..100 {
            let text = reqwest::get(format!("http://{admin}/metrics"))
                .await
                .expect("scraped")
                .text()
                .await
                .expect("text");
            depth = text
                .lines()
                .find(|l| l.starts_with("fiscus_outbox_depth{provider=\"ebarimt\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0);
            if depth >= 500.0 {
                assert!(text.contains("fiscus_outbox_oldest_age_seconds{provider=\"ebarimt\"}"));
                assert!(text.contains(
                    "fiscus_outbox_deliveries_total{provider=\"ebarimt\",outcome=\"failed\"}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(depth, 500.0, "the outbox depth gauge counts what waits");
    }

    // Somebody watches one; then the POSAPI comes back.
    let mut watch = client
        .watch_receipt(pb::WatchReceiptRequest {
            receipt_id: all[499].clone(),
            follow: false,
        })
        .await
        .expect("watching")
        .into_inner();
    sandbox.set_down(false).await.expect("up");
    settle(&mut client, &all, pb::FiscalState::Accepted).await;
    let mut last = None;
    while let Some(event) = watch.next().await {
        last = Some(event.expect("event").event.expect("an event").state());
    }
    assert_eq!(last, Some(pb::FiscalState::Accepted));

    assert_eq!(sandbox.documents(), 500, "each delivered exactly once");
    for terminal in &terminals {
        let suffixes: Vec<u64> = sandbox
            .documents_of(TIN, &terminal.branch_no, &terminal.pos_no)
            .iter()
            .map(|d| d.bill_id_suffix.parse().expect("a number"))
            .collect();
        assert_eq!(
            suffixes,
            (1..=per_terminal).collect::<Vec<u64>>(),
            "terminal {} in its order",
            terminal.pos_no
        );
    }
}

/// Retries back off for ten minutes here; the POSAPI answering one receipt again (a new
/// terminal's first, due at once) makes every receipt that waited due, so they all arrive well
/// within [`settle`]'s minute.
async fn receipts_backing_off_are_delivered_as_soon_as_the_posapi_answers_again(backend: Backend) {
    let (sandbox, fixture) =
        start(backend, "retry_min_ms = 600000\nretry_max_ms = 600000", "").await;
    sandbox.set_down(true).await.expect("down");
    let mut client = fixture.client();
    let terminals: Vec<_> = (0..3).map(|_| unique_terminal(TIN)).collect();
    let mut waited = Vec::new();
    for terminal in &terminals {
        for n in 0..3 {
            let receipt = sign(
                &mut client,
                sale_of(
                    terminal,
                    pb::ReceiptType::B2cReceipt,
                    vec![goods(
                        "Талх",
                        "1",
                        &format!("{}", 1500 + n),
                        pb::TaxType::VatAble,
                    )],
                ),
            )
            .await;
            assert_eq!(receipt.fiscal_state(), pb::FiscalState::Pending);
            waited.push(receipt.id);
        }
    }
    // Each terminal's oldest has failed once and backs off for ten minutes.
    for terminal in &terminals {
        let mut tried = false;
        for _ in 0..200 {
            let pending = client
                .list_pending(pb::ListPendingRequest {
                    terminal: Some(terminal.clone()),
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .expect("listed")
                .into_inner();
            if pending.pending.first().is_some_and(|p| p.attempts >= 1) {
                tried = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tried, "terminal {} was tried while down", terminal.pos_no);
    }
    sandbox.set_down(false).await.expect("up");
    let first = sign(
        &mut client,
        sale_of(
            &unique_terminal(TIN),
            pb::ReceiptType::B2cReceipt,
            vec![goods("Сүү", "1", "3200", pb::TaxType::VatAble)],
        ),
    )
    .await;
    waited.push(first.id);
    settle(&mut client, &waited, pb::FiscalState::Accepted).await;
    assert_eq!(sandbox.documents(), 10, "each delivered once");
}

async fn answers_lost_after_the_document_was_made_never_make_a_second_one(backend: Backend) {
    let (sandbox, fixture) = start(backend, "attempt_timeout_ms = 500", "").await;
    sandbox.set_drop_ratio(0.3);
    let mut client = fixture.client();
    let mut ids = Vec::new();
    for terminal in (0..4).map(|_| unique_terminal(TIN)) {
        for n in 0..15 {
            let receipt = sign(
                &mut client,
                sale_of(
                    &terminal,
                    pb::ReceiptType::B2cReceipt,
                    vec![goods(
                        "Сүү",
                        "1",
                        &format!("{}", 2000 + n),
                        pb::TaxType::VatAble,
                    )],
                ),
            )
            .await;
            ids.push(receipt.id);
        }
    }
    settle(&mut client, &ids, pb::FiscalState::Accepted).await;
    assert_eq!(sandbox.documents(), 60, "as many documents as receipts");
    let made = sandbox.all_documents();
    let distinct: HashSet<_> = made.iter().map(|d| &d.id).collect();
    assert_eq!(distinct.len(), 60, "no ДДТД twice");
    let mut by_receipt = HashMap::new();
    for id in &ids {
        let r = receipt(&mut client, id).await;
        assert!(
            by_receipt.insert(r.ebarimt_id.clone(), id).is_none(),
            "one document per receipt"
        );
        assert!(distinct.contains(&r.ebarimt_id));
    }
}

async fn a_refused_receipt_is_rejected_listed_and_not_retried_until_resent(backend: Backend) {
    let (sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    sandbox.reject_next(
        1,
        "merchantTin: the taxpayer is not registered for this POS",
    );
    let rejected = sign(
        &mut client,
        sale_of(
            &terminal,
            pb::ReceiptType::B2cReceipt,
            vec![goods("Талх", "1", "5600", pb::TaxType::VatAble)],
        ),
    )
    .await;
    assert_eq!(
        rejected.fiscal_state(),
        pb::FiscalState::Rejected,
        "{rejected:?}"
    );
    assert!(
        rejected
            .state_message
            .contains("not registered for this POS"),
        "{}",
        rejected.state_message
    );
    // Later receipts of the terminal go on.
    let next = sign(
        &mut client,
        sale_of(
            &terminal,
            pb::ReceiptType::B2cReceipt,
            vec![goods("Сүү", "1", "2750", pb::TaxType::VatAble)],
        ),
    )
    .await;
    assert_eq!(next.fiscal_state(), pb::FiscalState::Accepted);
    let requests = sandbox.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sandbox.requests(), requests, "a refusal is not retried");

    let list = |dead| pb::ListPendingRequest {
        terminal: Some(terminal.clone()),
        include_dead_letters: dead,
        ..Default::default()
    };
    let live = client
        .list_pending(list(false))
        .await
        .expect("listed")
        .into_inner();
    assert!(live.pending.is_empty(), "{live:?}");
    let parked = client
        .list_pending(list(true))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(parked.pending.len(), 1, "{parked:?}");
    let entry = &parked.pending[0];
    assert_eq!(entry.receipt_id, rejected.id);
    assert!(entry.dead_letter && entry.fiscal_state() == pb::FiscalState::Rejected);
    assert_eq!(entry.attempts, 1);
    assert!(
        entry.last_error.contains("not registered"),
        "{}",
        entry.last_error
    );

    // Resent (idempotent by operation id), it is accepted this time.
    let resend = pb::ResendPendingRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        receipt_ids: vec![rejected.id.to_uppercase()],
    };
    let first = client
        .resend_pending(resend.clone())
        .await
        .expect("resent")
        .into_inner();
    let again = client
        .resend_pending(resend)
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(first.results.len(), 1);
    assert_eq!(first.results[0].fiscal_state(), pb::FiscalState::Pending);
    settle(
        &mut client,
        std::slice::from_ref(&rejected.id),
        pb::FiscalState::Accepted,
    )
    .await;
    assert_eq!(sandbox.documents(), 2);
}

async fn bad_input_is_named_and_writes_nothing(backend: Backend) {
    let forms = forms_file();
    let (_sandbox, fixture) = start(
        backend,
        "",
        &format!("[receipts]\ntransaction_forms = {:?}", forms.path()),
    )
    .await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let before = fixture.count("SELECT COUNT(*) FROM receipts").await;

    let status = client
        .get_taxpayer_info(pb::GetTaxpayerInfoRequest {
            terminal: Some(terminal.clone()),
            taxpayer: Some(pb::get_taxpayer_info_request::Taxpayer::Tin("12ab".into())),
        })
        .await
        .expect_err("a malformed TIN");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("tin"), "{}", status.message());

    let mut unknown = transaction(&terminal, "no_such_form");
    let status = client
        .sign_transaction(unknown.clone())
        .await
        .expect_err("unknown form");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("form_name") && status.message().contains("no_such_form"),
        "{}",
        status.message()
    );

    unknown.form_name = "sales_income_form".into();
    unknown.master.remove("total_price");
    let status = client
        .sign_transaction(unknown)
        .await
        .expect_err("a missing column");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("sales_income_form") && status.message().contains("total_price"),
        "{}",
        status.message()
    );

    let disabled = transaction(&terminal, "purchase_form");
    let status = client
        .sign_transaction(disabled)
        .await
        .expect_err("not enabled");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );

    let status = client
        .resend_pending(pb::ResendPendingRequest {
            operation_id: op(),
            terminal: Some(terminal.clone()),
            receipt_ids: vec![uuid::Uuid::now_v7().to_string()],
        })
        .await
        .expect_err("an unknown receipt");
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    assert!(
        status.message().contains("receipt_ids[0]"),
        "{}",
        status.message()
    );

    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM receipts").await,
        before,
        "nothing written"
    );
    assert_eq!(fixture.count("SELECT COUNT(*) FROM outbox").await, 0);
}

async fn reference_data_comes_from_the_posapi(backend: Backend) {
    let (_sandbox, fixture) = start(backend, "", "").await;
    let mut client = fixture.client();
    let terminal = Some(unique_terminal(TIN));
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {
            terminal: terminal.clone(),
        })
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.provider(), pb::Provider::Ebarimt);
    assert!(info.merchants.iter().any(|m| m.tin == TIN), "{info:?}");
    let me = client
        .get_taxpayer_info(pb::GetTaxpayerInfoRequest {
            terminal: terminal.clone(),
            taxpayer: Some(pb::get_taxpayer_info_request::Taxpayer::Tin(TIN.into())),
        })
        .await
        .expect("found")
        .into_inner()
        .taxpayer
        .expect("a taxpayer");
    assert!(
        me.found && me.city_payer && me.name.contains("Дэлгүүр"),
        "{me:?}"
    );
    let status = client
        .get_taxpayer_info(pb::GetTaxpayerInfoRequest {
            terminal: terminal.clone(),
            taxpayer: Some(pb::get_taxpayer_info_request::Taxpayer::Tin(
                "99999999999".into(),
            )),
        })
        .await
        .expect_err("nobody has that TIN");
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    let districts = client
        .get_branch_info(pb::GetBranchInfoRequest {
            terminal: terminal.clone(),
        })
        .await
        .expect("districts")
        .into_inner()
        .districts;
    assert!(!districts.is_empty());
    assert!(districts.iter().all(|d| d.district_code.len() == 4
        && d.district_code == format!("{}{}", d.branch_code, d.sub_branch_code)));
    let taxes = client
        .list_tax_types(pb::ListTaxTypesRequest {
            terminal: terminal.clone(),
            tax_type: pb::TaxType::VatFree.into(),
        })
        .await
        .expect("tax types")
        .into_inner();
    assert_eq!(taxes.tax_types.len(), 1);
    assert!(!taxes.tax_product_codes.is_empty());
    assert!(
        taxes
            .tax_product_codes
            .iter()
            .all(|c| c.tax_type() == pb::TaxType::VatFree)
    );
    let accounts = client
        .list_bank_accounts(pb::ListBankAccountsRequest {
            terminal: terminal.clone(),
            tin: String::new(),
        })
        .await
        .expect("accounts")
        .into_inner();
    assert!(accounts.bank_accounts.iter().all(|a| a.tin == TIN));
    // A merchant on the built-in signer has no POSAPI to ask.
    let status = client
        .get_branch_info(pb::GetBranchInfoRequest {
            terminal: Some(unique_terminal("37900846788")),
        })
        .await
        .expect_err("not an e-barimt merchant");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
}

/// transactionForms.json with the seed's `sales_income_form` (item and payment columns added)
/// and a form that issues no receipts.
fn forms_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(
        file.path(),
        r#"{
  "sales_income_form": {
    "masterTable": "sales_income",
    "posApiEnabled": true,
    "posApiType": "B2C_RECEIPT",
    "posApiMapping": {
      "totalAmount": "total_price",
      "totalVAT": "vat_amount",
      "totalCityTax": "city_tax",
      "customerTin": "customer_tin",
      "consumerNo": "consumer_id",
      "items.name": "product_name",
      "items.qty": "quantity",
      "items.unitPrice": "price",
      "items.classificationCode": "gs1_code",
      "items.taxType": "vat_type",
      "items.cityTax": "city_tax_applies"
    }
  },
  "purchase_form": { "masterTable": "purchases", "posApiEnabled": false }
}"#,
    )
    .expect("written");
    file
}

fn transaction(terminal: &pb::Terminal, form: &str) -> pb::SignTransactionRequest {
    let row = |pairs: &[(&str, &str)]| pb::TransactionRow {
        columns: pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    };
    pb::SignTransactionRequest {
        operation_id: op(),
        terminal: Some(terminal.clone()),
        form_name: form.into(),
        record_id: format!("SI-{}", uuid::Uuid::new_v4().simple()),
        master: [
            ("total_price", "11400.00"),
            ("vat_amount", "1017.86"),
            ("city_tax", "203.57"),
            ("customer_tin", ""),
            ("consumer_id", "10038071"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect(),
        item_rows: vec![
            row(&[
                ("product_name", "Талх"),
                ("quantity", "2"),
                ("price", "2800"),
                ("gs1_code", "2349010"),
                ("vat_type", "VAT_ABLE"),
                ("city_tax_applies", "true"),
            ]),
            row(&[
                ("product_name", "Сүү"),
                ("quantity", "2"),
                ("price", "2900"),
                ("gs1_code", "2349010"),
                ("vat_type", "VAT_ABLE"),
                ("city_tax_applies", "true"),
            ]),
        ],
        ..Default::default()
    }
}

async fn an_erp_record_is_fiscalized_through_its_transaction_form(backend: Backend) {
    let forms = forms_file();
    let (sandbox, fixture) = start(
        backend,
        "",
        &format!("[receipts]\ntransaction_forms = {:?}", forms.path()),
    )
    .await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let request = transaction(&terminal, "sales_income_form");
    let answer = client
        .sign_transaction(request.clone())
        .await
        .expect("fiscalized")
        .into_inner();
    assert!(answer.receipt_issued);
    let receipt = answer.receipt.expect("a receipt");
    assert_eq!(
        receipt.fiscal_state(),
        pb::FiscalState::Accepted,
        "{receipt:?}"
    );
    assert_eq!(receipt.receipt_reference, request.record_id);
    assert_eq!(receipt.total_amount, "11400.00");
    assert_eq!(receipt.consumer_no, "10038071");
    assert_eq!(
        answer.write_back.get("id"),
        Some(&receipt.ebarimt_id),
        "{:?}",
        answer.write_back
    );
    assert_eq!(answer.write_back.get("lottery"), Some(&receipt.lottery));
    assert_eq!(answer.write_back.get("qrData"), Some(&receipt.qr_data));
    assert!(answer.write_back.contains_key("date"));
    // The same record posted again is the same receipt.
    let again = client
        .sign_transaction(request)
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(again.receipt.expect("a receipt").id, receipt.id);
    assert_eq!(sandbox.documents(), 1);
    assert_eq!(sandbox.schema_violations(), 0);
}

/// Two receipt services drain one outbox; one is killed with SIGKILL in the middle: the other
/// takes over what it held once its claims run out, and nothing is lost or made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_drain_one_outbox_and_one_killed_mid_drain_loses_and_doubles_nothing() {
    let (sandbox, fixture) = start(
        Backend::Postgres,
        "claim_ms = 2000\nattempt_timeout_ms = 1000\nconcurrency = 8",
        "",
    )
    .await;
    sandbox.set_down(true).await.expect("down");
    let mut client = fixture.client();
    let terminals: Vec<_> = (0..8).map(|_| unique_terminal(TIN)).collect();
    let mut ids = Vec::new();
    for n in 0..25 {
        for terminal in &terminals {
            let receipt = sign(
                &mut client,
                sale_of(
                    terminal,
                    pb::ReceiptType::B2cReceipt,
                    vec![goods(
                        "Талх",
                        "1",
                        &format!("{}", 1000 + n),
                        pb::TaxType::VatAble,
                    )],
                ),
            )
            .await;
            ids.push(receipt.id);
        }
    }
    let (survivor, mut survivor_client) = fixture.second_replica().await;
    // Slow answers, so that the first replica holds claims when it dies.
    sandbox.set_latency(Duration::from_millis(40));
    sandbox.set_down(false).await.expect("up");
    for _ in 0..200 {
        if sandbox.documents() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    fixture.process.kill_hard();
    assert!(
        sandbox.documents() < 200,
        "killed mid-drain ({} delivered)",
        sandbox.documents()
    );
    settle(&mut survivor_client, &ids, pb::FiscalState::Accepted).await;
    assert_eq!(sandbox.documents(), 200, "nothing lost, nothing made twice");
    let distinct: HashSet<_> = sandbox.all_documents().into_iter().map(|d| d.id).collect();
    assert_eq!(distinct.len(), 200);
    for terminal in &terminals {
        let suffixes: Vec<u64> = sandbox
            .documents_of(TIN, &terminal.branch_no, &terminal.pos_no)
            .iter()
            .map(|d| d.bill_id_suffix.parse().expect("a number"))
            .collect();
        assert_eq!(
            suffixes,
            (1..=25).collect::<Vec<u64>>(),
            "in each terminal's order"
        );
    }
    survivor.stop_gracefully().await;
}

/// The lottery number and QR data are for the printed receipt only: answered, kept while the
/// retention setting allows, then erased; the ДДТД stays; neither ever reaches a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lottery_and_qr_data_are_kept_only_for_printing_and_never_logged() {
    let (_sandbox, fixture) = start(Backend::Postgres, "printed_data_retention_secs = 1", "").await;
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let signed = sign(
        &mut client,
        sale_of(
            &terminal,
            pb::ReceiptType::B2cReceipt,
            vec![goods("Талх", "1", "5600", pb::TaxType::VatAble)],
        ),
    )
    .await;
    assert_eq!(signed.fiscal_state(), pb::FiscalState::Accepted);
    assert!(!signed.lottery.is_empty() && !signed.qr_data.starts_with("fiscus:"));
    let erased = format!(
        "SELECT COUNT(*) FROM receipts WHERE id = '{}' AND lottery IS NULL AND upstream_qr IS NULL \
         AND upstream_id = '{}'",
        signed.id, signed.ebarimt_id
    );
    let mut gone = false;
    for _ in 0..150 {
        if fixture.count(&erased).await == 1 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "erased from the journal once the retention passed");
    let later = receipt(&mut client, &signed.id).await;
    assert!(later.lottery.is_empty(), "{later:?}");
    assert_ne!(later.qr_data, signed.qr_data);
    assert_eq!(
        later.ebarimt_id, signed.ebarimt_id,
        "the ДДТД is kept for good"
    );
    let Fixture { process, .. } = fixture;
    let (_, output) = process.terminate().await.expect("stops");
    let logged = output.join("\n");
    assert!(
        !logged.contains(&signed.lottery),
        "the lottery number reached a log line"
    );
    assert!(
        !logged.contains(&signed.qr_data),
        "the QR data reached a log line"
    );
}

/// The central API's lookups carry the merchant's e-barimt token, which the receipt service gets
/// from TokenService under its own identity.
async fn the_central_api_lookups_carry_the_merchants_e_barimt_token(backend: Backend) {
    use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
    use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig};
    let keycloak = KeycloakSandbox::start(KeycloakSandboxConfig::default().with_realm(
        SandboxRealm::new("ITC").with_client(SandboxClient::new("posapi", "posapi-secret")),
    ))
    .await
    .expect("the Keycloak sandbox starts");
    let extra = format!(
        r#"
[receipts]
client_id = "e2e-receipts"
client_secret = "e2e-receipts-secret"

[[auth.clients]]
client_id = "e2e-receipts"
client_secret = "e2e-receipts-secret"
scopes = ["tokens:read"]

[[tokens.ebarimt]]
merchant_tin = "{TIN}"
authUrl = "{}"
authRealm = "ITC"
authClientId = "posapi"
authClientSecret = "posapi-secret"
"#,
        keycloak.base_url()
    );
    let (sandbox, fixture) = start_with(backend, "", &extra, "credential = \"default\"").await;
    let mut client = fixture.client();
    client
        .get_branch_info(pb::GetBranchInfoRequest {
            terminal: Some(unique_terminal(TIN)),
        })
        .await
        .expect("districts");
    let bearer = sandbox.last_bearer().expect("the lookup carried a token");
    assert!(
        keycloak.is_token_live(&bearer),
        "a token e-barimt's auth server issued"
    );
    assert_eq!(keycloak.token_requests(), 1);
}

/// A receipt that keeps failing past `dead_letter_after_secs` is parked as a dead letter with its
/// last error, retried no more, and delivered once an operator resends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_failing_too_long_becomes_a_dead_letter_until_resent() {
    let (sandbox, fixture) = start(Backend::Postgres, "dead_letter_after_secs = 1", "").await;
    sandbox.set_down(true).await.expect("down");
    let mut client = fixture.client();
    let terminal = unique_terminal(TIN);
    let receipt = sign(
        &mut client,
        sale_of(
            &terminal,
            pb::ReceiptType::B2cReceipt,
            vec![goods("Талх", "1", "5600", pb::TaxType::VatAble)],
        ),
    )
    .await;
    assert_eq!(receipt.fiscal_state(), pb::FiscalState::Pending);
    let list = |dead| pb::ListPendingRequest {
        terminal: Some(terminal.clone()),
        include_dead_letters: dead,
        ..Default::default()
    };
    let mut parked = Vec::new();
    for _ in 0..100 {
        parked = client
            .list_pending(list(true))
            .await
            .expect("listed")
            .into_inner()
            .pending;
        if parked.first().is_some_and(|p| p.dead_letter) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = parked.first().expect("listed");
    assert!(entry.dead_letter, "{entry:?}");
    assert_eq!(
        entry.fiscal_state(),
        pb::FiscalState::Pending,
        "not refused: waits for a person"
    );
    assert!(
        entry.last_error.contains("Connection refused"),
        "{}",
        entry.last_error
    );
    assert!(entry.next_attempt_at.is_none());
    let live = client
        .list_pending(list(false))
        .await
        .expect("listed")
        .into_inner();
    assert!(
        live.pending.is_empty(),
        "a dead letter is not among the live ones"
    );
    sandbox.set_down(false).await.expect("up");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sandbox.documents(), 0, "a dead letter is retried no more");
    let resent = client
        .resend_pending(pb::ResendPendingRequest {
            operation_id: op(),
            terminal: Some(terminal.clone()),
            receipt_ids: Vec::new(),
        })
        .await
        .expect("resent")
        .into_inner();
    assert_eq!(resent.results.len(), 1);
    settle(
        &mut client,
        std::slice::from_ref(&receipt.id),
        pb::FiscalState::Accepted,
    )
    .await;
    assert_eq!(sandbox.documents(), 1);
}
