//! ShiftService end to end: shifts opened and closed through gRPC, receipts signed in them at
//! ReceiptService, and X- and Z-reports added up by the journal — on Postgres + Redis (token,
//! receipt and shift services as separate processes) and on SQLite (`fiscus dev`).

use fiscus_domain::Money;
use fiscus_e2e::{
    AUTH_CONFIG, Authed, Bearer, Process, cancellation, cash, fresh_schema, issue_token, item, op,
    refund,
};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_proto::v1::shift_service_client::ShiftServiceClient;
use prost::Message;
use tonic::Code;

/// A merchant with default settings: receipts may be made outside a shift.
const TIN: &str = "12345678901";
/// A merchant whose receipts need an open shift.
const STRICT_TIN: &str = "12345678902";
/// A merchant registered as a city-tax payer.
const CITY_TIN: &str = "37900846788";

const SHIFTS_CLIENT: &str = "e2e-shifts";
const SHIFTS_SECRET: &str = "e2e-shifts-secret";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

/// A shift service's schema, arguments and environment.
struct Replica {
    schema: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

struct Fixture {
    receipts: ReceiptServiceClient<Authed>,
    shifts: ShiftServiceClient<Authed>,
    /// How another shift service on the same database starts (Postgres).
    replica: Option<Replica>,
    token: String,
    _processes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, "").await
    }

    /// A fixture whose configuration file also holds `extra` (TOML, after the rest).
    async fn start_with(backend: Backend, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("fiscus.toml");
        let identity = match backend {
            // fiscus dev gives ShiftService an identity of its own.
            Backend::Sqlite => String::new(),
            Backend::Postgres => format!(
                "[shifts]\nclient_id = \"{SHIFTS_CLIENT}\"\nclient_secret = \"{SHIFTS_SECRET}\"\n"
            ),
        };
        std::fs::write(
            &config,
            format!(
                r#"{AUTH_CONFIG}
[[auth.clients]]
client_id = "{SHIFTS_CLIENT}"
client_secret = "{SHIFTS_SECRET}"
scopes = ["receipts:shifts", "payments:shifts"]

[[receipts.merchants]]
tin = "{TIN}"
name = "Дээж Дэлгүүр ХХК"

[[receipts.merchants]]
tin = "{CITY_TIN}"
name = "Хотын Дэлгүүр ХХК"
city_tax_payer = true

[[receipts.merchants]]
tin = "{STRICT_TIN}"
name = "Magazinul Științific SRL"
require_open_shift = true

{identity}
{extra}"#
            ),
        )
        .expect("config");
        let config = config.to_str().expect("utf-8").to_owned();
        let args = ["--config", config.as_str()];
        let (processes, receipts_at, shifts_at, replica) = match backend {
            Backend::Postgres => {
                // The token service checks the tokens of calls to itself with its own keys.
                let port = fiscus_e2e::free_port().expect("a free port");
                let listen = format!("127.0.0.1:{port}");
                let own = format!("http://{listen}");
                let tokens = Process::service_in(
                    "tokens",
                    &fresh_schema("e2e_tokens"),
                    &args,
                    &[
                        ("FISCUS_SERVER__LISTEN", &listen),
                        ("FISCUS_PEERS__TOKENS", &own),
                    ],
                )
                .await
                .expect("fiscus-tokens starts");
                let tokens_url = format!("http://{}", tokens.addr);
                let receipts = Process::service_in(
                    "receipts",
                    &fresh_schema("e2e_receipts"),
                    &args,
                    &[("FISCUS_PEERS__TOKENS", &tokens_url)],
                )
                .await
                .expect("fiscus-receipts starts");
                let receipts_url = format!("http://{}", receipts.addr);
                let payments = Process::service_in(
                    "payments",
                    &fresh_schema("e2e_payments"),
                    &args,
                    &[("FISCUS_PEERS__TOKENS", &tokens_url)],
                )
                .await
                .expect("fiscus-payments starts");
                let payments_url = format!("http://{}", payments.addr);
                let schema = fresh_schema("e2e_shifts");
                let env = [
                    ("FISCUS_PEERS__TOKENS", tokens_url.as_str()),
                    ("FISCUS_PEERS__RECEIPTS", receipts_url.as_str()),
                    ("FISCUS_PEERS__PAYMENTS", payments_url.as_str()),
                ];
                let shifts = Process::service_in("shifts", &schema, &args, &env)
                    .await
                    .expect("fiscus-shifts starts");
                let replica = Replica {
                    schema,
                    args: args.iter().map(|a| (*a).to_owned()).collect(),
                    env: env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                };
                let (r, s) = (receipts.addr, shifts.addr);
                (
                    vec![tokens, receipts, payments, shifts],
                    r,
                    s,
                    Some(replica),
                )
            }
            Backend::Sqlite => {
                let dev = Process::dev_with(&dir.path().join("data"), &args)
                    .await
                    .expect("fiscus dev starts");
                let addr = dev.addr;
                (vec![dev], addr, addr, None)
            }
        };
        let issuer = fiscus_e2e::connect(processes[0].addr).await;
        let token = issue_token(issuer, "e2e-admin", "e2e-admin-secret", &[])
            .await
            .expect("a token");
        let receipts = ReceiptServiceClient::with_interceptor(
            fiscus_e2e::connect(receipts_at).await,
            Bearer::new(&token),
        );
        let shifts = ShiftServiceClient::with_interceptor(
            fiscus_e2e::connect(shifts_at).await,
            Bearer::new(&token),
        );
        Self {
            receipts,
            shifts,
            replica,
            token,
            _processes: processes,
            _dir: dir,
        }
    }

    /// Another shift service on the same database (Postgres), as a restart or a second replica.
    async fn another_shift_service(&self) -> (Process, ShiftServiceClient<Authed>) {
        let Replica { schema, args, env } = self.replica.as_ref().expect("a Postgres fixture");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let process = Process::service_in("shifts", schema, &args, &env)
            .await
            .expect("another fiscus-shifts starts");
        let client =
            ShiftServiceClient::with_interceptor(process.channel().await, Bearer::new(&self.token));
        (process, client)
    }

    async fn open(&self, till: &pb::Terminal) -> Result<pb::Shift, tonic::Status> {
        self.shifts
            .clone()
            .open_shift(pb::OpenShiftRequest {
                operation_id: op(),
                terminal: Some(till.clone()),
                opened_by: "Бат".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().shift.expect("a shift"))
    }

    async fn close(&self, request: pb::CloseShiftRequest) -> pb::CloseShiftResponse {
        self.shifts
            .clone()
            .close_shift(request)
            .await
            .expect("the shift closes")
            .into_inner()
    }

    async fn sign(&self, request: pb::SignReceiptRequest) -> Result<pb::Receipt, tonic::Status> {
        self.receipts
            .clone()
            .sign_receipt(request)
            .await
            .map(|r| r.into_inner().receipt.expect("a receipt"))
    }

    async fn x_report(&self, till: &pb::Terminal, full: bool) -> pb::Report {
        self.shifts
            .clone()
            .get_x_report(pb::GetXReportRequest {
                terminal: Some(till.clone()),
                full,
                ..Default::default()
            })
            .await
            .expect("an X-report")
            .into_inner()
            .report
            .expect("a report")
    }

    async fn z_report(&self, till: &pb::Terminal, number: u64) -> pb::GetZReportResponse {
        self.shifts
            .clone()
            .get_z_report(pb::GetZReportRequest {
                terminal: Some(till.clone()),
                report: Some(pb::get_z_report_request::Report::ReportNumber(number)),
                ..Default::default()
            })
            .await
            .expect("a Z-report")
            .into_inner()
    }
}

fn till(tin: &str) -> pb::Terminal {
    fiscus_e2e::unique_terminal(tin)
}

fn close_request(till: &pb::Terminal) -> pb::CloseShiftRequest {
    pb::CloseShiftRequest {
        operation_id: op(),
        terminal: Some(till.clone()),
        closed_by: "Бат".into(),
        ..Default::default()
    }
}

/// A sale of `quantity` loaves at 1100 (100.00 of it VAT), paid by `method`.
fn sale(till: &pb::Terminal, quantity: &str, method: pb::PaymentMethod) -> pb::SignReceiptRequest {
    let mut request = fiscus_e2e::sale(
        till,
        vec![item("Талх", quantity, "1100", pb::TaxType::VatAble)],
        "0",
    );
    let total = 1100 * quantity.parse::<u32>().expect("a whole quantity");
    request.payments = vec![pb::PayItem {
        method: method.into(),
        ..cash(&total.to_string())
    }];
    request
}

on_both_backends!(
    a_shift_adds_up_its_receipts_into_an_x_report_and_one_stored_z_report,
    concurrent_open_shifts_on_one_terminal_open_one,
    a_receipt_needs_an_open_shift_where_the_merchant_says_so,
    no_receipt_falls_between_two_z_reports,
    z_reports_render_as_json_txt_pdf_and_png,
    bad_requests_are_refused_naming_the_field,
    every_figure_of_the_reports_equals_what_the_signed_receipts_add_up_to,
    z_reports_are_numbered_without_gaps_and_each_is_answered_as_stored,
    a_fiskaltrust_terminals_shift_ends_with_its_shift_closing_receipt_signed_upstream,
);

/// A fiskaltrust terminal's shift is closed by fiskaltrust's shift-closing receipt, journaled
/// under the chain head's lock as the shift's last receipt, counted in its Z-report and signed
/// by the middleware; a closing retried after its answer was lost journals no second one.
async fn a_fiskaltrust_terminals_shift_ends_with_its_shift_closing_receipt_signed_upstream(
    backend: Backend,
) {
    use fiscus_providers::fiskaltrust::{FiskaltrustSandbox, FiskaltrustSandboxConfig};
    let sandbox = FiskaltrustSandbox::start(FiskaltrustSandboxConfig::default())
        .await
        .expect("the fiskaltrust sandbox starts");
    let fx = Fixture::start_with(backend, &crate::fiskaltrust::config(&sandbox, "", "")).await;
    let till = till(crate::fiskaltrust::TIN);
    let shift = fx.open(&till).await.expect("the shift opens");
    let mut espresso = fiscus_e2e::sale(
        &till,
        vec![pb::ChargeItem {
            vat_rate: "10.00".into(),
            ..item("Espresso", "2", "1.10", pb::TaxType::VatAble)
        }],
        "2.20",
    );
    espresso.currency = "EUR".into();
    let sold = fx.sign(espresso).await.expect("a sale");
    assert_eq!(sold.fiscal_state(), pb::FiscalState::Accepted);
    let request = close_request(&till);
    let closed = fx.close(request.clone()).await;
    let again = fx.close(request).await;
    assert_eq!(
        closed.shift, again.shift,
        "the retry answers the same closing"
    );
    let receipts = fx
        .receipts
        .clone()
        .list_receipts(pb::ListReceiptsRequest {
            terminal: Some(till.clone()),
            shift_id: shift.shift_id.clone(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .receipts;
    let last = receipts.first().expect("the shift's receipts");
    assert_eq!(
        last.kind(),
        pb::ReceiptKind::Zero,
        "the shift's last receipt"
    );
    assert_eq!(last.receipt_case, 0x4954_2000_0000_2010);
    assert_eq!(
        receipts
            .iter()
            .filter(|r| r.kind() == pb::ReceiptKind::Zero)
            .count(),
        1,
        "one shift-closing receipt"
    );
    let report = closed.z_report.expect("a Z-report");
    assert_eq!(report.zero_receipt_count, 1, "counted in the Z-report");
    assert_eq!(report.last_receipt_number, last.receipt_number);
    for _ in 0..100 {
        if sandbox
            .receipts()
            .iter()
            .any(|r| r.request.receipt_case.0 == 0x4954_2000_0000_2010)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the shift-closing receipt never reached the middleware");
}

async fn a_shift_adds_up_its_receipts_into_an_x_report_and_one_stored_z_report(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(TIN);
    let shift = fx.open(&till).await.expect("the shift opens");
    assert_eq!(shift.number, 1);
    assert_eq!(shift.state(), pb::ShiftState::Open);

    let two = fx
        .sign(sale(&till, "2", pb::PaymentMethod::Cash))
        .await
        .expect("a sale");
    assert_eq!(two.shift_id, shift.shift_id, "a receipt records its shift");
    fx.sign(sale(&till, "1", pb::PaymentMethod::PaymentCard))
        .await
        .expect("a sale");
    let voided = fx
        .sign(sale(&till, "1", pb::PaymentMethod::Cash))
        .await
        .expect("a sale");
    let refund = fx
        .sign(refund(&till, &two.id, &[(1, "1")], "1100"))
        .await
        .expect("a refund");
    assert_eq!(refund.shift_id, shift.shift_id);
    fx.receipts
        .clone()
        .cancel_receipt(cancellation(&till, &voided.id, "wrong price"))
        .await
        .expect("a cancellation");

    // Three sales of 2200, 1100 and 1100; a refund of 1100; the 1100 cash sale cancelled.
    let check = |report: &pb::Report| {
        assert_eq!(report.receipt_count, 5);
        assert_eq!(
            (report.first_receipt_number, report.last_receipt_number),
            (1, 5)
        );
        assert_eq!(
            (report.sale_count, report.sale_sum.as_str()),
            (3, "4400.00")
        );
        assert_eq!(
            (report.refund_count, report.refund_sum.as_str()),
            (1, "1100.00")
        );
        assert_eq!(
            (report.cancellation_count, report.cancellation_sum.as_str()),
            (1, "1100.00")
        );
        assert_eq!(report.total_sum, "2200.00");
        assert_eq!(report.total_vat, "200.00");
        assert_eq!(report.total_city_tax, "0.00");
        assert_eq!(
            report.vat_lines,
            vec![pb::VatLine {
                tax_type: pb::TaxType::VatAble.into(),
                rate: "10.00".into(),
                taxable_base: "2000.00".into(),
                vat: "200.00".into(),
                gross: "2200.00".into(),
            }]
        );
        let methods: Vec<(pb::PaymentMethod, u64, &str)> = report
            .payment_methods
            .iter()
            .map(|m| (m.method(), m.count, m.sum.as_str()))
            .collect();
        assert_eq!(
            methods,
            vec![
                (pb::PaymentMethod::Cash, 3, "1100.00"),
                (pb::PaymentMethod::PaymentCard, 1, "1100.00"),
            ]
        );
    };
    let x = fx.x_report(&till, true).await;
    assert_eq!((x.kind(), x.report_number), (pb::ReportKind::X, 0));
    check(&x);
    let lines: Vec<(pb::ReportTransactionType, u64)> = x
        .transactions
        .iter()
        .map(|t| (t.r#type(), t.receipt_number))
        .collect();
    assert_eq!(
        lines,
        vec![
            (pb::ReportTransactionType::Sale, 1),
            (pb::ReportTransactionType::Sale, 2),
            (pb::ReportTransactionType::Sale, 3),
            (pb::ReportTransactionType::Refund, 4),
            (pb::ReportTransactionType::Cancellation, 5),
        ],
        "a full report lists every receipt in order"
    );

    let request = close_request(&till);
    let closed = fx.close(request.clone()).await;
    let z = closed.z_report.clone().expect("a Z-report");
    assert_eq!((z.kind(), z.report_number), (pb::ReportKind::Z, 1));
    check(&z);
    let closed_shift = closed.shift.clone().expect("the shift");
    assert_eq!(closed_shift.state(), pb::ShiftState::Closed);
    assert_eq!(closed_shift.z_report_number, 1);
    // A retry of the closing is answered as the closing was; another closing finds no shift.
    let again = fx.close(request).await;
    assert_eq!(again.encode_to_vec(), closed.encode_to_vec());
    let status = fx
        .shifts
        .clone()
        .close_shift(close_request(&till))
        .await
        .expect_err("no shift is open");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The stored Z-report, byte for byte, however often it is asked for.
    let first = fx.z_report(&till, 1).await.report.expect("a report");
    assert_eq!(first.encode_to_vec(), z.encode_to_vec());
    let by_id = fx
        .shifts
        .clone()
        .get_z_report(pb::GetZReportRequest {
            terminal: Some(till.clone()),
            report: Some(pb::get_z_report_request::Report::ShiftId(
                shift.shift_id.clone(),
            )),
            ..Default::default()
        })
        .await
        .expect("the Z-report by shift")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(by_id.encode_to_vec(), z.encode_to_vec());

    // Outside a shift this merchant's receipts are made in none; the next shift is number 2,
    // its Z-report number 2, and it holds none of the first shift's receipts.
    let outside = fx
        .sign(sale(&till, "1", pb::PaymentMethod::Cash))
        .await
        .expect("a sale outside a shift");
    assert_eq!(outside.shift_id, "");
    let second = fx.open(&till).await.expect("the next shift opens");
    assert_eq!(second.number, 2);
    let z2 = fx.close(close_request(&till)).await.z_report.expect("Z");
    assert_eq!(
        (z2.report_number, z2.receipt_count, z2.total_sum.as_str()),
        (2, 0, "0.00")
    );

    let listed = fx
        .shifts
        .clone()
        .list_shifts(pb::ListShiftsRequest {
            terminal: Some(till.clone()),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("a page")
        .into_inner();
    assert_eq!(listed.shifts.len(), 1);
    assert_eq!(listed.shifts[0].number, 2, "newest first");
    let rest = fx
        .shifts
        .clone()
        .list_shifts(pb::ListShiftsRequest {
            terminal: Some(till.clone()),
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .expect("the next page")
        .into_inner();
    assert_eq!(rest.shifts.len(), 1);
    assert_eq!(rest.shifts[0].shift_id, shift.shift_id);
    assert!(rest.next_page_token.is_empty());
}

async fn concurrent_open_shifts_on_one_terminal_open_one(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(TIN);
    let attempts = futures::future::join_all((0..8).map(|_| fx.open(&till))).await;
    let opened: Vec<&pb::Shift> = attempts.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(opened.len(), 1, "one wins: {attempts:?}");
    let winner = &opened[0].shift_id;
    for refused in attempts.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains(winner.as_str()), "{refused:?}");
    }
    let current = fx
        .shifts
        .clone()
        .get_current_shift(pb::GetCurrentShiftRequest {
            terminal: Some(till.clone()),
        })
        .await
        .expect("the current shift")
        .into_inner();
    assert!(current.open);
    assert_eq!(&current.shift.expect("a shift").shift_id, winner);
}

async fn a_receipt_needs_an_open_shift_where_the_merchant_says_so(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(STRICT_TIN);
    let refused = fx
        .sign(sale(&till, "1", pb::PaymentMethod::Cash))
        .await
        .expect_err("no shift is open");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&till.pos_no), "{refused:?}");
    let shift = fx.open(&till).await.expect("the shift opens");
    let signed = fx
        .sign(sale(&till, "1", pb::PaymentMethod::Cash))
        .await
        .expect("a sale in the shift");
    assert_eq!(signed.shift_id, shift.shift_id);
    assert_eq!(signed.receipt_number, 1, "the refused sale took no number");
    fx.close(close_request(&till)).await;
    let refused = fx
        .sign(sale(&till, "1", pb::PaymentMethod::Cash))
        .await
        .expect_err("the shift is closed");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
}

async fn no_receipt_falls_between_two_z_reports(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(TIN);
    fx.open(&till).await.expect("the first shift opens");
    // Sales keep coming from eight callers while the shift closes and the next one opens.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let signing = (0..8).map(|_| {
        let (fx, till, done) = (&fx, &till, &done);
        async move {
            let mut signed = Vec::new();
            for _ in 0..10 {
                signed.push(
                    fx.sign(sale(till, "1", pb::PaymentMethod::Cash))
                        .await
                        .expect("a sale"),
                );
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            signed
        }
    });
    let turnover = async {
        while done.load(std::sync::atomic::Ordering::SeqCst) < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let z1 = fx.close(close_request(&till)).await.z_report.expect("Z1");
        fx.open(&till).await.expect("the second shift opens");
        z1
    };
    let (signed, z1) = tokio::join!(futures::future::join_all(signing), turnover);
    let signed: Vec<pb::Receipt> = signed.into_iter().flatten().collect();
    let z2 = fx.close(close_request(&till)).await.z_report.expect("Z2");
    assert!(
        z1.sale_count >= 10,
        "the first shift closed while sales went on"
    );
    let outside = signed.iter().filter(|r| r.shift_id.is_empty()).count();
    assert_eq!(
        z1.sale_count + z2.sale_count + outside as u64,
        signed.len() as u64,
        "every receipt is in one report, or made between the shifts"
    );
    let z1_shift = z1.shift.clone().expect("shift").shift_id;
    let z2_shift = z2.shift.clone().expect("shift").shift_id;
    for receipt in &signed {
        let number = receipt.receipt_number;
        if receipt.shift_id == z1_shift {
            assert!(number <= z1.last_receipt_number, "{number} after Z1");
        } else if receipt.shift_id == z2_shift {
            assert!(number >= z2.first_receipt_number, "{number} before Z2");
            assert!(number > z1.last_receipt_number);
        } else {
            assert_eq!(
                receipt.shift_id, "",
                "receipt {number} in a shift of no report"
            );
        }
    }
}

async fn z_reports_render_as_json_txt_pdf_and_png(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(STRICT_TIN);
    fx.open(&till).await.expect("the shift opens");
    fx.sign(sale(&till, "3", pb::PaymentMethod::Cash))
        .await
        .expect("a sale");
    let mut request = close_request(&till);
    request.format = pb::DocumentFormat::Txt.into();
    let closed = fx.close(request).await;
    let text = closed.document.expect("a document").text_lines.join("\n");
    assert!(text.contains("Z-REPORT No 1"), "{text}");
    assert!(text.contains("Magazinul Științific SRL"), "{text}");
    assert!(text.contains("3300.00"), "{text}");

    let render = |format: pb::DocumentFormat| {
        let mut shifts = fx.shifts.clone();
        let till = till.clone();
        async move {
            shifts
                .get_z_report(pb::GetZReportRequest {
                    terminal: Some(till),
                    report: Some(pb::get_z_report_request::Report::ReportNumber(1)),
                    format: format.into(),
                    full: true,
                })
                .await
                .expect("a rendered Z-report")
                .into_inner()
                .document
                .expect("a document")
        }
    };
    let json = render(pb::DocumentFormat::Json).await;
    let value: serde_json::Value = serde_json::from_slice(&json.content).expect("JSON");
    assert_eq!(value["reportNumber"], "1", "{value}");
    assert_eq!(value["saleSum"], "3300.00", "{value}");
    assert_eq!(value["transactions"].as_array().map(Vec::len), Some(1));
    let pdf = render(pb::DocumentFormat::Pdf).await;
    let text = pdf_extract::extract_text_from_mem(&pdf.content).expect("PDF text extracts");
    for shown in ["Z-REPORT No 1", "Magazinul Științific SRL", "3300.00"] {
        assert!(text.contains(shown), "{shown} in the PDF's text:\n{text}");
    }
    // A Cyrillic name comes through the PDF intact too.
    let city = self::till(CITY_TIN);
    fx.open(&city).await.expect("the shift opens");
    fx.sign(sale(&city, "1", pb::PaymentMethod::Cash))
        .await
        .expect("a sale");
    let mut request = close_request(&city);
    request.format = pb::DocumentFormat::Pdf.into();
    let closed = fx.close(request).await;
    let text = pdf_extract::extract_text_from_mem(&closed.document.expect("a PDF").content)
        .expect("PDF text extracts");
    for shown in ["Хотын Дэлгүүр ХХК", "1100.00"] {
        assert!(text.contains(shown), "{shown} in the PDF's text:\n{text}");
    }
    let png = render(pb::DocumentFormat::Png).await;
    assert!(png.content.starts_with(b"\x89PNG"));
}

async fn bad_requests_are_refused_naming_the_field(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(TIN);
    let mut shifts = fx.shifts.clone();
    let named = |result: Result<(), tonic::Status>, field: &str| {
        let status = result.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    };
    let open = |f: fn(&mut pb::OpenShiftRequest)| {
        let mut request = pb::OpenShiftRequest {
            operation_id: op(),
            terminal: Some(till.clone()),
            opened_by: "Бат".into(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    for (field, request) in [
        ("operation_id", open(|r| r.operation_id.clear())),
        (
            "operation_id",
            open(|r| r.operation_id = "not-a-uuid".into()),
        ),
        ("terminal", open(|r| r.terminal = None)),
        (
            "terminal.merchant_tin",
            open(|r| r.terminal.as_mut().expect("t").merchant_tin.clear()),
        ),
        ("opened_by", open(|r| r.opened_by = "  ".into())),
        ("opened_by", open(|r| r.opened_by = "x".repeat(129))),
    ] {
        named(shifts.open_shift(request).await.map(drop), field);
    }
    let close = |f: fn(&mut pb::CloseShiftRequest)| {
        let mut request = close_request(&till);
        f(&mut request);
        request
    };
    for (field, request) in [
        ("closed_by", close(|r| r.closed_by.clear())),
        ("shift_id", close(|r| r.shift_id = "no-uuid".into())),
        ("format", close(|r| r.format = 99)),
    ] {
        named(shifts.close_shift(request).await.map(drop), field);
    }
    let z = |report| pb::GetZReportRequest {
        terminal: Some(till.clone()),
        report,
        ..Default::default()
    };
    named(shifts.get_z_report(z(None)).await.map(drop), "report");
    named(
        shifts
            .get_z_report(z(Some(pb::get_z_report_request::Report::ReportNumber(0))))
            .await
            .map(drop),
        "report_number",
    );
    named(
        shifts
            .list_shifts(pb::ListShiftsRequest {
                terminal: Some(till.clone()),
                page_token: "x".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "page_token",
    );
    // Nothing was opened by any of them.
    let current = shifts
        .get_current_shift(pb::GetCurrentShiftRequest {
            terminal: Some(till.clone()),
        })
        .await
        .expect("the current shift")
        .into_inner();
    assert!(!current.open);
    let missing = shifts
        .get_z_report(z(Some(pb::get_z_report_request::Report::ReportNumber(7))))
        .await
        .expect_err("no such report");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Shifts that are not what the call needs: refused, naming them, and nothing changes.
    let other = self::till(TIN);
    let others = fx.open(&other).await.expect("another terminal's shift");
    let open = fx.open(&till).await.expect("this terminal's shift");
    let refused = |status: tonic::Status, code: Code, naming: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(naming), "{naming}: {status:?}");
    };
    let mut close = close_request(&till);
    close.shift_id = others.shift_id.clone();
    refused(
        shifts
            .close_shift(close)
            .await
            .expect_err("another terminal's shift"),
        Code::FailedPrecondition,
        &open.shift_id,
    );
    let z_of = |shift_id: &str| {
        z(Some(pb::get_z_report_request::Report::ShiftId(
            shift_id.into(),
        )))
    };
    refused(
        shifts
            .get_z_report(z_of(&open.shift_id))
            .await
            .expect_err("Z of an open shift"),
        Code::FailedPrecondition,
        &open.shift_id,
    );
    refused(
        shifts
            .get_z_report(z_of(&others.shift_id))
            .await
            .expect_err("another terminal's"),
        Code::NotFound,
        &others.shift_id,
    );
    fx.close(close_request(&till)).await;
    fx.open(&till).await.expect("the next shift");
    refused(
        shifts
            .get_x_report(pb::GetXReportRequest {
                terminal: Some(till.clone()),
                shift_id: open.shift_id.clone(),
                ..Default::default()
            })
            .await
            .expect_err("X of a closed shift"),
        Code::FailedPrecondition,
        &open.shift_id,
    );
    let still = shifts
        .get_current_shift(pb::GetCurrentShiftRequest {
            terminal: Some(other.clone()),
        })
        .await
        .expect("the other terminal's shift")
        .into_inner();
    assert_eq!(
        still.shift.expect("open").shift_id,
        others.shift_id,
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shift_services_opening_one_terminal_at_once_open_one_shift() {
    let fx = Fixture::start(Backend::Postgres).await;
    let (_second, second) = fx.another_shift_service().await;
    let till = till(TIN);
    let request = || pb::OpenShiftRequest {
        operation_id: op(),
        terminal: Some(till.clone()),
        opened_by: "Бат".into(),
        ..Default::default()
    };
    let calls = (0..8).map(|i| {
        let mut client = if i % 2 == 0 {
            fx.shifts.clone()
        } else {
            second.clone()
        };
        let request = request();
        async move { client.open_shift(request).await }
    });
    let answers = futures::future::join_all(calls).await;
    let opened: Vec<_> = answers.iter().filter(|a| a.is_ok()).collect();
    assert_eq!(opened.len(), 1, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shift_service_answers_each_z_report_as_stored() {
    let fx = Fixture::start(Backend::Postgres).await;
    let till = till(TIN);
    fx.open(&till).await.expect("the shift opens");
    fx.sign(sale(&till, "2", pb::PaymentMethod::Cash))
        .await
        .expect("a sale");
    let z = fx.close(close_request(&till)).await.z_report.expect("Z");
    let (_restarted, mut restarted) = fx.another_shift_service().await;
    let answered = restarted
        .get_z_report(pb::GetZReportRequest {
            terminal: Some(till.clone()),
            report: Some(pb::get_z_report_request::Report::ReportNumber(1)),
            ..Default::default()
        })
        .await
        .expect("the Z-report")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(answered.encode_to_vec(), z.encode_to_vec());
}

/// What the receipts a test signed add up to, computed here from their answers: per tax type
/// and rate, per payment method, and in all.
#[derive(Default)]
struct Expected {
    vat: std::collections::BTreeMap<(i32, String), [Money; 4]>,
    pay: std::collections::BTreeMap<i32, (u64, Money)>,
    total: Money,
}

impl Expected {
    /// Adds `receipt`'s items and payments, taken back when `sign` is -1; `own` counts its
    /// pay items.
    fn add(&mut self, receipt: &pb::Receipt, sign: i64, own: bool) {
        let m = |text: &str| {
            let value = Money::parse(text).expect("an amount");
            if sign < 0 {
                value.checked_neg().expect("negates")
            } else {
                value
            }
        };
        for item in &receipt.items {
            let line = self
                .vat
                .entry((item.tax_type, item.vat_rate.clone()))
                .or_insert([Money::ZERO; 4]);
            let parts = [
                &item.net_amount,
                &item.total_vat,
                &item.total_amount,
                &item.total_city_tax,
            ];
            for (sum, part) in line.iter_mut().zip(parts) {
                *sum = sum.checked_add(m(part)).expect("adds");
            }
        }
        for payment in &receipt.payments {
            let (count, sum) = self.pay.entry(payment.method).or_insert((0, Money::ZERO));
            if own {
                *count += 1;
            }
            *sum = sum.checked_add(m(&payment.amount)).expect("adds");
        }
        self.total = self
            .total
            .checked_add(m(&receipt.total_amount))
            .expect("adds");
    }

    fn check(&self, report: &pb::Report) {
        let vat: Vec<(i32, String, String, String, String)> = self
            .vat
            .iter()
            .filter(|(_, [_, _, gross, _])| *gross != Money::ZERO)
            .map(|((tax, rate), [base, vat, gross, _])| {
                (
                    *tax,
                    rate.clone(),
                    base.to_string(),
                    vat.to_string(),
                    gross.to_string(),
                )
            })
            .collect();
        let reported: Vec<(i32, String, String, String, String)> = report
            .vat_lines
            .iter()
            .map(|l| {
                (
                    l.tax_type,
                    l.rate.clone(),
                    l.taxable_base.clone(),
                    l.vat.clone(),
                    l.gross.clone(),
                )
            })
            .collect();
        assert_eq!(reported, vat, "VAT by tax type and rate");
        let pay: Vec<(i32, u64, String)> = self
            .pay
            .iter()
            .map(|(method, (count, sum))| (*method, *count, sum.to_string()))
            .collect();
        let reported: Vec<(i32, u64, String)> = report
            .payment_methods
            .iter()
            .map(|l| (l.method, l.count, l.sum.clone()))
            .collect();
        assert_eq!(reported, pay, "money by payment method");
        assert_eq!(report.total_sum, self.total.to_string(), "net turnover");
        let total = |part: usize| {
            self.vat
                .values()
                .try_fold(Money::ZERO, |sum, line| sum.checked_add(line[part]))
                .expect("adds")
                .to_string()
        };
        assert_eq!(report.total_vat, total(1), "VAT");
        assert_eq!(report.total_city_tax, total(3), "city tax");
    }
}

async fn every_figure_of_the_reports_equals_what_the_signed_receipts_add_up_to(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(CITY_TIN);
    fx.open(&till).await.expect("the shift opens");
    let mut expected = Expected::default();

    // Bread, milk bearing city tax and a VAT-free medicine, paid 12000 in cash with change.
    let mut milk = item("Сүү 1л", "2", "2500.50", pb::TaxType::VatAble);
    milk.city_tax_applies = true;
    let mut mixed = fiscus_e2e::sale(
        &till,
        vec![
            item("Талх", "1", "5600", pb::TaxType::VatAble),
            milk,
            item("Парацетамол", "0.5", "1000", pb::TaxType::VatFree),
        ],
        "12000",
    );
    mixed.payments.push(pb::PayItem {
        method: pb::PaymentMethod::Change.into(),
        ..cash("899")
    });
    let mixed = fx.sign(mixed).await.expect("a mixed sale");
    expected.add(&mixed, 1, true);
    let card = fx
        .sign(sale(&till, "3", pb::PaymentMethod::PaymentCard))
        .await
        .expect("a card sale");
    expected.add(&card, 1, true);
    let zero = fx
        .sign(pb::SignReceiptRequest {
            operation_id: op(),
            terminal: Some(till.clone()),
            kind: pb::ReceiptKind::Zero.into(),
            receipt_reference: "zero-1".into(),
            ..Default::default()
        })
        .await
        .expect("a zero receipt");
    expected.add(&zero, 1, true);
    // One of the two milks back, in cash; then the whole card sale cancelled.
    let refund = fx
        .sign(refund(&till, &mixed.id, &[(2, "1")], "2500.50"))
        .await
        .expect("a partial refund");
    expected.add(&refund, -1, true);
    fx.receipts
        .clone()
        .cancel_receipt(cancellation(&till, &card.id, "wrong terminal"))
        .await
        .expect("a cancellation");
    expected.add(&card, -1, false);

    let x = fx.x_report(&till, false).await;
    expected.check(&x);
    assert_eq!(x.zero_receipt_count, 1);
    assert_eq!((x.receipt_count, x.sale_count, x.refund_count), (5, 2, 1));
    let z = fx.close(close_request(&till)).await.z_report.expect("Z");
    expected.check(&z);
    // Nothing happened between: the Z-report is the X-report, numbered and closed.
    let closed = pb::Report {
        kind: z.kind,
        report_number: z.report_number,
        shift: z.shift.clone(),
        generated_at: z.generated_at,
        ..x
    };
    assert_eq!(closed, z);
}

async fn z_reports_are_numbered_without_gaps_and_each_is_answered_as_stored(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = till(TIN);
    let mut stored = Vec::new();
    for n in 1..=20u64 {
        let shift = fx.open(&till).await.expect("a shift opens");
        assert_eq!(shift.number, n);
        fx.sign(sale(&till, "1", pb::PaymentMethod::Cash))
            .await
            .expect("a sale");
        let z = fx.close(close_request(&till)).await.z_report.expect("Z");
        assert_eq!(z.report_number, n);
        assert_eq!((z.first_receipt_number, z.last_receipt_number), (n, n));
        stored.push(z.encode_to_vec());
    }
    for (n, bytes) in (1..=20u64).zip(&stored) {
        let answered = fx.z_report(&till, n).await.report.expect("a report");
        assert_eq!(&answered.encode_to_vec(), bytes, "Z-report {n}");
    }
}
