//! PaymentService end to end: through gRPC, against the MIA sandbox (whose payer pays and whose
//! counters say what reached MIA), on Postgres + Redis (separate token and payment processes)
//! and on SQLite + the in-process cache (`fiscus dev`).

use std::str::FromStr;
use std::time::Duration;

use fiscus_domain::Money;
use fiscus_e2e::{AUTH_CONFIG, Authed, Bearer, Process, database_url, fresh_schema, issue_token};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::payment_service_client::PaymentServiceClient;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use fiscus_proto::v1::shift_service_client::ShiftServiceClient;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use fiscus_providers::mia::{MiaSeller, MiaTerminal, PayerTarget, paths};
use fiscus_providers::{MiaSandbox, MiaSandboxConfig};
use futures::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

const IDNO: &str = "1003600000000";
const PAYMENTS_CLIENT: &str = "e2e-payments";
const PAYMENTS_SECRET: &str = "e2e-payments-secret";
const SHIFTS_CLIENT: &str = "e2e-shifts";
const SHIFTS_SECRET: &str = "e2e-shifts-secret";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Postgres,
    Sqlite,
}

fn terminal(pos: &str) -> pb::Terminal {
    pb::Terminal {
        merchant_tin: IDNO.into(),
        branch_no: "001".into(),
        pos_no: pos.into(),
    }
}

fn op() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn m(text: &str) -> Money {
    Money::parse(text).expect("a test amount")
}

/// The MIA sandbox with terminals T1 and T2, fiscus bound to them as terminals A and B, and a
/// seller logged in on each.
struct Fixture {
    sandbox: MiaSandbox,
    processes: Vec<Process>,
    /// (schema, config path, tokens address) to start another payments replica (Postgres).
    replica: Option<(String, String, String)>,
    token: String,
    a: pb::Terminal,
    b: pb::Terminal,
    session_a: String,
    session_b: String,
    /// Holds the config and, on `fiscus dev`, the data dir (`data/`).
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, "", &[]).await
    }

    /// A fixture whose `[payments]` section also holds `payments` (TOML lines), and whose
    /// payment processes get `env`.
    async fn start_with(backend: Backend, payments: &str, env: &[(&str, &str)]) -> Self {
        let sandbox = MiaSandbox::start(
            MiaSandboxConfig::default()
                .with_terminal(MiaTerminal::new("T1", IDNO))
                .with_terminal(MiaTerminal::new("T2", IDNO))
                .with_seller(MiaSeller::new("ana", "ana-password", 7, "Ana Popescu")),
        )
        .await
        .expect("the MIA sandbox starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("fiscus.toml");
        let (identity, shifts_identity) = match backend {
            // fiscus dev gives PaymentService and ShiftService identities of their own.
            Backend::Sqlite => (String::new(), String::new()),
            Backend::Postgres => (
                format!(
                    "client_id = \"{PAYMENTS_CLIENT}\"\nclient_secret = \"{PAYMENTS_SECRET}\"\n"
                ),
                format!(
                    "[shifts]\nclient_id = \"{SHIFTS_CLIENT}\"\nclient_secret = \"{SHIFTS_SECRET}\"\n"
                ),
            ),
        };
        std::fs::write(
            &config,
            format!(
                r#"{AUTH_CONFIG}
[[auth.clients]]
client_id = "{PAYMENTS_CLIENT}"
client_secret = "{PAYMENTS_SECRET}"
scopes = ["tokens:read", "tokens:write"]

[[auth.clients]]
client_id = "{SHIFTS_CLIENT}"
client_secret = "{SHIFTS_SECRET}"
scopes = ["receipts:shifts", "payments:shifts"]

[tokens]
mia_url = "{url}"

[payments]
mia_url = "{url}"
mia_timeout_ms = 1500
poll_interval_ms = 200
{identity}{payments}
{shifts_identity}
"#,
                url = sandbox.base_url()
            ),
        )
        .expect("config");
        let config = config.to_str().expect("utf-8").to_owned();
        let (processes, replica, issuer) = match backend {
            Backend::Postgres => {
                // The token service checks the tokens of calls to itself with its own keys.
                let port = fiscus_e2e::free_port().expect("a free port");
                let listen = format!("127.0.0.1:{port}");
                let own = format!("http://{listen}");
                let tokens = Process::service_in(
                    "tokens",
                    &fresh_schema("e2e_tokens"),
                    &["--config", &config],
                    &[
                        ("FISCUS_SERVER__LISTEN", &listen),
                        ("FISCUS_PEERS__TOKENS", &own),
                    ],
                )
                .await
                .expect("fiscus-tokens starts");
                let peer = format!("http://{}", tokens.addr);
                let schema = fresh_schema("e2e_payments");
                let mut payment_env = vec![("FISCUS_PEERS__TOKENS", peer.as_str())];
                payment_env.extend_from_slice(env);
                let payments =
                    Process::service_in("payments", &schema, &["--config", &config], &payment_env)
                        .await
                        .expect("fiscus-payments starts");
                let issuer = tokens.channel().await;
                (
                    vec![payments, tokens],
                    Some((schema, config.clone(), peer)),
                    issuer,
                )
            }
            Backend::Sqlite => {
                let process = Process::dev_with(&dir.path().join("data"), &["--config", &config])
                    .await
                    .expect("fiscus dev starts");
                let issuer = process.channel().await;
                (vec![process], None, issuer)
            }
        };
        let token = issue_token(issuer, "e2e-admin", "e2e-admin-secret", &[])
            .await
            .expect("a token");
        let tokens_channel = processes.last().expect("a process").channel().await;
        let mut tokens = TokenServiceClient::with_interceptor(tokens_channel, Bearer::new(&token));
        let (a, b) = (terminal("A"), terminal("B"));
        let session_a = login(&mut tokens, &sandbox, "T1", &a).await;
        let session_b = login(&mut tokens, &sandbox, "T2", &b).await;
        Self {
            sandbox,
            processes,
            replica,
            token,
            a,
            b,
            session_a,
            session_b,
            dir,
        }
    }

    async fn client(&self) -> PaymentServiceClient<Authed> {
        PaymentServiceClient::with_interceptor(
            self.processes[0].channel().await,
            Bearer::new(&self.token),
        )
    }

    /// A ShiftService that counts this fixture's payments, and the processes it needs: on
    /// Postgres a receipt and a shift service beside the payments; on `fiscus dev` its own.
    async fn shifts(
        &self,
    ) -> (
        Vec<Process>,
        ShiftServiceClient<Authed>,
        ReceiptServiceClient<Authed>,
    ) {
        let Some((_, config, tokens)) = &self.replica else {
            let channel = self.processes[0].channel().await;
            return (
                Vec::new(),
                ShiftServiceClient::with_interceptor(channel.clone(), Bearer::new(&self.token)),
                ReceiptServiceClient::with_interceptor(channel, Bearer::new(&self.token)),
            );
        };
        let args = ["--config", config.as_str()];
        let receipts = Process::service_in(
            "receipts",
            &fresh_schema("e2e_receipts"),
            &args,
            &[("FISCUS_PEERS__TOKENS", tokens)],
        )
        .await
        .expect("fiscus-receipts starts");
        let (receipts_url, payments_url) = (
            format!("http://{}", receipts.addr),
            format!("http://{}", self.processes[0].addr),
        );
        let shifts = Process::service_in(
            "shifts",
            &fresh_schema("e2e_shifts"),
            &args,
            &[
                ("FISCUS_PEERS__TOKENS", tokens),
                ("FISCUS_PEERS__RECEIPTS", &receipts_url),
                ("FISCUS_PEERS__PAYMENTS", &payments_url),
            ],
        )
        .await
        .expect("fiscus-shifts starts");
        let client =
            ShiftServiceClient::with_interceptor(shifts.channel().await, Bearer::new(&self.token));
        let receipts_client = ReceiptServiceClient::with_interceptor(
            receipts.channel().await,
            Bearer::new(&self.token),
        );
        (vec![receipts, shifts], client, receipts_client)
    }

    /// Another payments process on the same database and Redis (Postgres), with `env`.
    async fn replica(&self, env: &[(&str, &str)]) -> (Process, PaymentServiceClient<Authed>) {
        let (schema, config, peer) = self.replica.as_ref().expect("a Postgres fixture");
        let mut all = vec![("FISCUS_PEERS__TOKENS", peer.as_str())];
        all.extend_from_slice(env);
        let process = Process::service_in("payments", schema, &["--config", config], &all)
            .await
            .expect("a second fiscus-payments starts");
        let client = PaymentServiceClient::with_interceptor(
            process.channel().await,
            Bearer::new(&self.token),
        );
        (process, client)
    }

    fn dynamic(
        &self,
        amount_type: pb::QrAmountType,
        amount: &str,
        min: &str,
        max: &str,
    ) -> pb::CreateQrRequest {
        pb::CreateQrRequest {
            operation_id: op(),
            terminal: Some(self.a.clone()),
            seller_session_id: self.session_a.clone(),
            r#type: pb::QrType::Dynamic.into(),
            amount_type: amount_type.into(),
            amount: amount.into(),
            min_amount: min.into(),
            max_amount: max.into(),
            client_reference: "order-1".into(),
            ..Default::default()
        }
    }

    async fn create(&self, request: pb::CreateQrRequest) -> pb::Qr {
        self.client()
            .await
            .create_qr(request)
            .await
            .expect("creates the QR")
            .into_inner()
            .qr
            .expect("a QR")
    }

    async fn request(&self, qr_id: &str, amount: &str, min: &str, max: &str) -> pb::QrExtension {
        self.client()
            .await
            .create_payment_request(pb::CreatePaymentRequestRequest {
                operation_id: op(),
                terminal: Some(self.a.clone()),
                seller_session_id: self.session_a.clone(),
                qr_id: qr_id.into(),
                amount: amount.into(),
                min_amount: min.into(),
                max_amount: max.into(),
                client_reference: "order-2".into(),
            })
            .await
            .expect("attaches the payment request")
            .into_inner()
            .extension
            .expect("an extension")
    }

    async fn status(&self, extension_id: &str) -> pb::GetPaymentStatusResponse {
        self.client()
            .await
            .get_payment_status(pb::GetPaymentStatusRequest {
                terminal: Some(self.a.clone()),
                seller_session_id: self.session_a.clone(),
                payment: Some(pb::get_payment_status_request::Payment::ExtensionId(
                    extension_id.into(),
                )),
            })
            .await
            .expect("a status")
            .into_inner()
    }

    async fn qr_state(&self, qr_id: &str) -> pb::QrState {
        self.client()
            .await
            .get_qr(pb::GetQrRequest {
                terminal: Some(self.a.clone()),
                seller_session_id: self.session_a.clone(),
                qr_id: qr_id.into(),
                include_image: false,
            })
            .await
            .expect("the QR")
            .into_inner()
            .qr
            .expect("a QR")
            .state()
    }

    async fn cancel(&self, qr_id: &str) {
        self.client()
            .await
            .cancel_qr(pb::CancelQrRequest {
                operation_id: op(),
                terminal: Some(self.a.clone()),
                seller_session_id: self.session_a.clone(),
                qr_id: qr_id.into(),
            })
            .await
            .expect("cancels");
    }

    fn watch_request(&self, extension_id: &str) -> pb::WatchPaymentRequest {
        pb::WatchPaymentRequest {
            terminal: Some(self.a.clone()),
            seller_session_id: self.session_a.clone(),
            payment: Some(pb::watch_payment_request::Payment::ExtensionId(
                extension_id.into(),
            )),
            follow: false,
        }
    }

    /// The ids of terminal A's active QR codes (of `qr_type`, or all), sorted.
    async fn active_qrs(&self, qr_type: pb::QrType) -> Vec<String> {
        let qrs = self
            .client()
            .await
            .list_active_qrs(pb::ListActiveQrsRequest {
                terminal: Some(self.a.clone()),
                seller_session_id: self.session_a.clone(),
                r#type: qr_type.into(),
                include_image: false,
            })
            .await
            .expect("the active QR codes")
            .into_inner()
            .qrs;
        assert!(
            qrs.iter().all(|q| q.state() == pb::QrState::Active),
            "{qrs:?}"
        );
        let mut ids: Vec<String> = qrs.into_iter().map(|q| q.qr_id).collect();
        ids.sort();
        ids
    }

    /// Calls MIA's `path` for terminal A's seller, as the MIA POS app would (with the access
    /// token TokenService holds for the session): MIA's answer.
    async fn mia_as_seller(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        let channel = self.processes.last().expect("a process").channel().await;
        let access = TokenServiceClient::with_interceptor(channel, Bearer::new(&self.token))
            .get_access_token(pb::GetAccessTokenRequest {
                provider: pb::Provider::Mia.into(),
                seller_session_id: self.session_a.clone(),
                ..Default::default()
            })
            .await
            .expect("the seller's MIA token")
            .into_inner()
            .access_token;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let answer = reqwest::Client::new()
            .request(method, format!("{}{path}", self.sandbox.base_url()))
            .bearer_auth(access)
            .send()
            .await
            .expect("MIA answers");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.expect("JSON")
    }

    /// Closes terminal A's MIA shift and opens the next one: the new shift's id.
    async fn next_mia_shift(&self) -> String {
        self.mia_as_seller(reqwest::Method::POST, paths::SHIFT_CLOSE)
            .await;
        let opened = self
            .mia_as_seller(reqwest::Method::POST, paths::SHIFT_OPEN)
            .await;
        opened["shiftId"].as_str().expect("a shift id").to_owned()
    }

    /// The MIA shift each refund of transaction `id` is recorded with, oldest first, as
    /// PaymentService stored it (X and Z reports count refunds by it).
    async fn refund_shifts(&self, id: &str) -> Vec<String> {
        const SQL: &str =
            "SELECT mia_shift_id FROM refunds WHERE transaction_id = $1 ORDER BY created_at_us";
        match &self.replica {
            Some((schema, _, _)) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(&database_url())
                    .expect("url")
                    .options([("search_path", schema.as_str())]);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("postgres");
                sqlx::query_scalar(SQL)
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .expect("the refunds")
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("data").join("payments.db"))
                    .busy_timeout(Duration::from_secs(10));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("sqlite");
                sqlx::query_scalar(SQL)
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .expect("the refunds")
            }
        }
    }

    /// A dynamic fixed QR of `amount`, paid by the payer: its transaction.
    async fn paid(&self, amount: &str) -> pb::Transaction {
        let qr = self
            .create(self.dynamic(pb::QrAmountType::Fixed, amount, "", ""))
            .await;
        let extension = qr.extension.expect("its request");
        pay(&self.sandbox, &qr.qr_id, amount).expect("pays");
        let status = self.status(&extension.extension_id).await;
        assert_eq!(status.state(), pb::PaymentState::Paid);
        status.last_transaction.expect("the paying transaction")
    }
}

/// Activates MIA terminal `mia_terminal` on fiscus terminal `bound` and logs seller ana in.
async fn login(
    tokens: &mut TokenServiceClient<Authed>,
    sandbox: &MiaSandbox,
    mia_terminal: &str,
    bound: &pb::Terminal,
) -> String {
    let started = tokens
        .init_activation(pb::InitActivationRequest {
            operation_id: op(),
            terminal: Some(bound.clone()),
            terminal_id: mia_terminal.into(),
            merchant_idno: IDNO.into(),
            device: Some(pb::DeviceInfo {
                device: "e2e".into(),
                platform_type: pb::PlatformType::ExternalSystem.into(),
                installation_id: op(),
                pos_app_version: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("activation starts")
        .into_inner();
    let otp = sandbox
        .last_otp(started.activation_id.parse().expect("uuid"))
        .expect("an OTP");
    tokens
        .confirm_activation(pb::ConfirmActivationRequest {
            operation_id: op(),
            activation_id: started.activation_id.clone(),
            otp_code: otp,
        })
        .await
        .expect("confirms");
    tokens
        .seller_login(pb::SellerLoginRequest {
            operation_id: op(),
            activation_id: started.activation_id,
            username: "ana".into(),
            password: "ana-password".into(),
        })
        .await
        .expect("logs in")
        .into_inner()
        .session_id
}

fn pay(sandbox: &MiaSandbox, qr_id: &str, amount: &str) -> Result<u64, String> {
    sandbox.pay(PayerTarget::Qr(qr_id.parse().expect("uuid")), m(amount))
}

fn pay_request(sandbox: &MiaSandbox, extension_id: &str, amount: &str) -> Result<u64, String> {
    sandbox.pay(
        PayerTarget::Extension(extension_id.parse().expect("uuid")),
        m(amount),
    )
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The next event of a watch stream, within `within`.
async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchPaymentResponse>,
    within: Duration,
) -> pb::PaymentEvent {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("an event, not an error")
        .event
        .expect("an event")
}

on_both_backends!(
    every_qr_type_and_amount_type_is_paid_with_a_fitting_amount_and_refuses_another,
    a_thousand_watchers_on_one_payment_all_hear_it_paid_and_a_late_watcher_hears_it_at_once,
    a_qr_with_the_shortest_ttl_expires_and_its_watcher_hears_expired,
    partial_refunds_add_up_and_what_exceeds_the_rest_or_a_late_full_refund_is_refused,
    a_refund_whose_answer_was_lost_is_made_once_when_retried,
    a_refund_counts_in_the_mia_shift_open_when_it_is_made,
    a_create_qr_whose_answer_was_lost_creates_one_qr_at_mia_when_retried,
    bad_requests_are_refused_naming_the_field_and_nothing_reaches_mia,
    an_expired_mia_token_is_renewed_once_and_the_call_goes_through,
    a_shifts_transactions_are_paged_newest_first,
    a_hybrid_request_is_cancelled_and_a_static_request_takes_several_payments,
    a_payment_the_bank_fails_is_failed_with_its_reason_and_a_lost_request_is_found_again,
    receipts_and_qr_payments_of_one_shift_add_up_and_a_refund_counts_in_the_shift_open_when_made,
    a_mia_terminals_shift_opens_and_closes_at_mia_and_a_payment_fiscus_never_saw_is_a_z_report_warning,
);

async fn every_qr_type_and_amount_type_is_paid_with_a_fitting_amount_and_refuses_another(
    backend: Backend,
) {
    use pb::QrAmountType::{Controlled, Fixed, Free};
    let fx = Fixture::start(backend).await;

    // Dynamic: the request comes with the QR; one payment makes the QR PAID.
    for (amount_type, amount, min, max, wrong, right) in [
        (Fixed, "12.50", "", "", "12.49", "12.50"),
        (Free, "", "", "", "0", "7.77"),
        (Controlled, "", "5", "10", "10.01", "5.00"),
    ] {
        let qr = fx.create(fx.dynamic(amount_type, amount, min, max)).await;
        assert_eq!(qr.state(), pb::QrState::Active);
        assert!(qr.qr_text.starts_with("https://"), "{}", qr.qr_text);
        let extension = qr
            .extension
            .clone()
            .expect("a dynamic QR carries its request");
        assert_eq!(
            extension.amount,
            if amount.is_empty() { "" } else { "12.50" }
        );
        let refused = pay(&fx.sandbox, &qr.qr_id, wrong).expect_err("refused");
        assert!(
            refused.contains("AMOUNT_NOT_ACCEPTED"),
            "{amount_type:?}: {refused}"
        );
        assert_eq!(
            fx.status(&extension.extension_id).await.state(),
            pb::PaymentState::Pending
        );
        pay(&fx.sandbox, &qr.qr_id, right).expect("a fitting amount is paid");
        let status = fx.status(&extension.extension_id).await;
        assert_eq!(status.state(), pb::PaymentState::Paid, "{amount_type:?}");
        let tx = status.last_transaction.expect("the transaction");
        assert_eq!(Money::parse(&tx.amount).expect("money"), m(right));
        assert_eq!(
            (tx.qr_id.as_str(), tx.currency.as_str()),
            (qr.qr_id.as_str(), "MDL")
        );
        assert!(!tx.rrn.is_empty() && !tx.shift_id.is_empty(), "{tx:?}");
        assert_eq!(
            fx.qr_state(&qr.qr_id).await,
            pb::QrState::Paid,
            "{amount_type:?}"
        );
    }

    // The active QR codes: a dynamic one waiting for its payer, not the paid or cancelled ones.
    let waiting = fx.create(fx.dynamic(Fixed, "4.00", "", "")).await;
    let cancelled = fx.create(fx.dynamic(Free, "", "", "")).await;
    fx.cancel(&cancelled.qr_id).await;
    assert_eq!(
        fx.active_qrs(pb::QrType::Unspecified).await,
        vec![waiting.qr_id.clone()]
    );

    // Static and hybrid: one at a time per terminal; each request paid, the QR stays active.
    for (qr_type, amount_type, amount, min, max, wrong, right) in [
        (pb::QrType::Static, Fixed, "3.00", "", "", "3.01", "3.00"),
        (pb::QrType::Static, Free, "", "", "", "0", "1.23"),
        (pb::QrType::Static, Controlled, "", "1", "2", "2.01", "1.50"),
        (pb::QrType::Hybrid, Fixed, "5.00", "", "", "4.99", "5.00"),
        (pb::QrType::Hybrid, Free, "", "", "", "0", "9.99"),
        (pb::QrType::Hybrid, Controlled, "", "1", "2", "0.99", "2.00"),
    ] {
        let qr = fx
            .create(pb::CreateQrRequest {
                r#type: qr_type.into(),
                amount_type: amount_type.into(),
                amount: String::new(),
                min_amount: String::new(),
                max_amount: String::new(),
                ..fx.dynamic(amount_type, "", "", "")
            })
            .await;
        assert!(
            qr.extension.is_none(),
            "{qr_type:?} {amount_type:?}: no request at creation"
        );
        // Listed beside the waiting dynamic QR; the static and hybrid QRs cancelled before, not.
        let mut both = vec![waiting.qr_id.clone(), qr.qr_id.clone()];
        both.sort();
        assert_eq!(fx.active_qrs(pb::QrType::Unspecified).await, both);
        assert_eq!(fx.active_qrs(qr_type).await, vec![qr.qr_id.clone()]);
        let second = fx
            .client()
            .await
            .create_qr(pb::CreateQrRequest {
                r#type: pb::QrType::Hybrid.into(),
                ..fx.dynamic(Free, "", "", "")
            })
            .await
            .expect_err("one static or hybrid QR per terminal");
        assert_eq!(second.code(), Code::FailedPrecondition);
        assert!(second.message().contains(&qr.qr_id), "{}", second.message());
        for _ in 0..2 {
            let request = fx.request(&qr.qr_id, amount, min, max).await;
            let refused =
                pay_request(&fx.sandbox, &request.extension_id, wrong).expect_err("refused");
            assert!(
                refused.contains("AMOUNT_NOT_ACCEPTED"),
                "{qr_type:?} {amount_type:?}: {refused}"
            );
            pay_request(&fx.sandbox, &request.extension_id, right).expect("paid");
            let status = fx.status(&request.extension_id).await;
            assert_eq!(
                status.state(),
                pb::PaymentState::Paid,
                "{qr_type:?} {amount_type:?}"
            );
            assert_eq!(status.total_payments, 1);
            assert_eq!(
                fx.qr_state(&qr.qr_id).await,
                pb::QrState::Active,
                "stays active for the next request"
            );
        }
        fx.cancel(&qr.qr_id).await;
        assert_eq!(fx.qr_state(&qr.qr_id).await, pb::QrState::Cancelled);
    }
}

async fn a_thousand_watchers_on_one_payment_all_hear_it_paid_and_a_late_watcher_hears_it_at_once(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let qr = fx
        .create(fx.dynamic(pb::QrAmountType::Fixed, "42.00", "", ""))
        .await;
    let extension = qr.extension.expect("its request").extension_id;
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(fx.processes[0].channel().await);
    }
    let mut streams = Vec::new();
    for i in 0..1000 {
        let mut client = PaymentServiceClient::with_interceptor(
            channels[i % channels.len()].clone(),
            Bearer::new(&fx.token),
        );
        let request = fx.watch_request(&extension);
        streams.push(async move {
            client
                .watch_payment(request)
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let mut streams: Vec<_> = futures::future::join_all(streams)
        .await
        .into_iter()
        .map(|s| s.expect("every watcher is admitted"))
        .collect();
    for stream in &mut streams {
        let first = next_event(stream, Duration::from_secs(30)).await;
        assert_eq!(first.state(), pb::PaymentState::Pending);
    }
    pay(&fx.sandbox, &qr.qr_id, "42.00").expect("paid");
    let heard = futures::future::join_all(streams.iter_mut().map(|stream| async move {
        let event = next_event(stream, Duration::from_secs(30)).await;
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends after the final state");
        (event, ended.is_none())
    }))
    .await;
    for (event, ended) in heard {
        assert_eq!(event.state(), pb::PaymentState::Paid);
        assert_eq!(event.transaction.expect("the transaction").amount, "42.00");
        assert!(ended, "the stream ends after PAID");
    }
    // Opened after the payment: PAID at once, and the stream ends.
    let mut late = fx
        .client()
        .await
        .watch_payment(fx.watch_request(&extension))
        .await
        .expect("watches")
        .into_inner();
    let event = next_event(&mut late, Duration::from_secs(5)).await;
    assert_eq!(event.state(), pb::PaymentState::Paid);
    assert!(late.next().await.is_none());
}

async fn a_qr_with_the_shortest_ttl_expires_and_its_watcher_hears_expired(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let settings = fx
        .client()
        .await
        .update_terminal_settings(pb::UpdateTerminalSettingsRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            settings: Some(pb::TerminalSettings {
                qr_type: pb::QrType::Dynamic.into(),
                qr_amount_type: pb::QrAmountType::Fixed.into(),
                qr_ttl_seconds: 30,
                ..Default::default()
            }),
        })
        .await
        .expect("the shortest TTL is accepted")
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(settings.qr_ttl_seconds, 30);
    assert!(settings.updated_at.is_some());
    let qr = fx
        .create(fx.dynamic(pb::QrAmountType::Fixed, "1.00", "", ""))
        .await;
    let extension = qr.extension.expect("its request");
    assert!(extension.expires_in_seconds <= 30, "{extension:?}");
    let mut watcher = fx
        .client()
        .await
        .watch_payment(fx.watch_request(&extension.extension_id))
        .await
        .expect("watches")
        .into_inner();
    let first = next_event(&mut watcher, Duration::from_secs(5)).await;
    assert_eq!(first.state(), pb::PaymentState::Pending);
    let started = std::time::Instant::now();
    let expired = next_event(&mut watcher, Duration::from_secs(45)).await;
    assert_eq!(expired.state(), pb::PaymentState::Expired);
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "not before its time: {:?}",
        started.elapsed()
    );
    assert!(watcher.next().await.is_none(), "the stream ends");
    assert_eq!(fx.qr_state(&qr.qr_id).await, pb::QrState::Expired);
    assert!(
        pay(&fx.sandbox, &qr.qr_id, "1.00").is_err(),
        "an expired QR is not paid"
    );
}

fn refund(
    fx: &Fixture,
    tx: &pb::Transaction,
    amount: &str,
    full: bool,
) -> pb::RefundTransactionRequest {
    pb::RefundTransactionRequest {
        operation_id: op(),
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
        transaction_id: tx.id.clone(),
        full_refund: full,
        amount: amount.into(),
        currency: "MDL".into(),
        reason_code: "RETURN".into(),
        reason_message: "the customer changed their mind".into(),
    }
}

async fn partial_refunds_add_up_and_what_exceeds_the_rest_or_a_late_full_refund_is_refused(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let tx = fx.paid("100.00").await;
    let mut client = fx.client().await;
    let first = client
        .refund_transaction(refund(&fx, &tx, "30.00", false))
        .await
        .expect("refunds 30")
        .into_inner();
    assert!(!first.refund_request_id.is_empty());
    let second = client
        .refund_transaction(refund(&fx, &tx, "50", false))
        .await
        .expect("refunds 50")
        .into_inner()
        .transaction
        .expect("the transaction");
    assert_eq!(second.refunded_amount, "80.00");
    assert_eq!(second.r#type(), pb::TransactionType::PartiallyRefunded);
    assert_eq!(fx.sandbox.count("return.done"), 2);
    let requests = fx.sandbox.requests();
    let above = client
        .refund_transaction(refund(&fx, &tx, "20.01", false))
        .await
        .expect_err("more than is left");
    assert_eq!(
        above.code(),
        Code::FailedPrecondition,
        "{}",
        above.message()
    );
    assert!(above.message().contains("20.00"), "{}", above.message());
    let full = client
        .refund_transaction(refund(&fx, &tx, "", true))
        .await
        .expect_err("a full refund of a partly refunded transaction");
    assert_eq!(full.code(), Code::FailedPrecondition, "{}", full.message());
    assert_eq!(fx.sandbox.requests(), requests, "refused before MIA");
    let rest = client
        .refund_transaction(refund(&fx, &tx, "20.00", false))
        .await
        .expect("refunds the rest")
        .into_inner()
        .transaction
        .expect("the transaction");
    assert_eq!(rest.refunded_amount, "100.00");
    assert_eq!(rest.r#type(), pb::TransactionType::Refunded);
    let read = client
        .get_transaction(pb::GetTransactionRequest {
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            transaction_id: tx.id.clone(),
        })
        .await
        .expect("reads")
        .into_inner()
        .transaction
        .expect("a transaction");
    assert_eq!(read.refunded_amount, "100.00");
    assert_eq!(read.r#type(), pb::TransactionType::Refunded);
    assert!(!read.swift_message_id.is_empty() && !read.approval_code.is_empty());
    assert_eq!(fx.sandbox.count("return.done"), 3);

    // A full refund of an untouched payment.
    let other = fx.paid("10.00").await;
    let full = client
        .refund_transaction(refund(&fx, &other, "", true))
        .await
        .expect("a full refund")
        .into_inner()
        .transaction
        .expect("a transaction");
    assert_eq!(full.refunded_amount, "10.00");
}

async fn a_refund_whose_answer_was_lost_is_made_once_when_retried(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let tx = fx.paid("25.00").await;
    let request = refund(&fx, &tx, "5.00", false);
    let mut client = fx.client().await;
    fx.sandbox.drop_next(1);
    let lost = client
        .refund_transaction(request.clone())
        .await
        .expect_err("the answer is lost");
    assert!(
        matches!(lost.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{lost:?}"
    );
    assert_eq!(fx.sandbox.count("return.done"), 1, "MIA did it");
    let retried = client
        .refund_transaction(request.clone())
        .await
        .expect("the retry learns the outcome")
        .into_inner();
    assert!(!retried.refund_request_id.is_empty());
    assert_eq!(retried.transaction.expect("tx").refunded_amount, "5.00");
    assert_eq!(fx.sandbox.count("return.done"), 1, "refunded once");
    let again = client
        .refund_transaction(request)
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(again.refund_request_id, retried.refund_request_id);
    assert_eq!(fx.sandbox.count("return.done"), 1);
    assert_eq!(
        fx.refund_shifts(&tx.id).await,
        vec![tx.shift_id.clone()],
        "the refund found at MIA is recorded with MIA's shift"
    );
}

async fn a_refund_counts_in_the_mia_shift_open_when_it_is_made(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let tx = fx.paid("20.00").await;
    assert!(!tx.shift_id.is_empty());
    let mut client = fx.client().await;
    client
        .refund_transaction(refund(&fx, &tx, "5.00", false))
        .await
        .expect("refunds 5 in the payment's shift");

    // The seller closes MIA's shift and opens the next; a refund now counts in the new one.
    let next = fx.next_mia_shift().await;
    assert_ne!(next, tx.shift_id);
    let later = client
        .refund_transaction(refund(&fx, &tx, "7.00", false))
        .await
        .expect("refunds 7 in the next shift")
        .into_inner()
        .transaction
        .expect("the transaction");
    assert_eq!(
        later.shift_id, tx.shift_id,
        "the payment stays in its shift"
    );
    assert_eq!(later.refunded_amount, "12.00");
    let now = fx
        .mia_as_seller(reqwest::Method::GET, paths::SHIFT_CHECK)
        .await;
    assert_eq!(now["shiftId"].as_str(), Some(next.as_str()));
    assert_eq!(now["isOpened"].as_bool(), Some(true));
    assert_eq!(
        fx.refund_shifts(&tx.id).await,
        vec![tx.shift_id.clone(), next],
        "each refund with the MIA shift open when it was made"
    );
}

async fn a_create_qr_whose_answer_was_lost_creates_one_qr_at_mia_when_retried(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let request = fx.dynamic(pb::QrAmountType::Fixed, "8.80", "", "");
    let mut client = fx.client().await;
    fx.sandbox.drop_next(1);
    let lost = client
        .create_qr(request.clone())
        .await
        .expect_err("the answer is lost");
    assert!(
        matches!(lost.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{lost:?}"
    );
    assert_eq!(fx.sandbox.count("qr.created"), 1);
    let qr = client
        .create_qr(request.clone())
        .await
        .expect("the retry finds the QR")
        .into_inner()
        .qr
        .expect("a QR");
    assert_eq!(fx.sandbox.count("qr.created"), 1, "one QR at MIA");
    let again = client
        .create_qr(request)
        .await
        .expect("replayed")
        .into_inner()
        .qr
        .expect("a QR");
    assert_eq!(again.qr_id, qr.qr_id);
    let extension = qr.extension.expect("its request");
    assert_eq!(extension.amount, "8.80");
    pay(&fx.sandbox, &qr.qr_id, "8.80").expect("the adopted QR is the one paid");
    assert_eq!(
        fx.status(&extension.extension_id).await.state(),
        pb::PaymentState::Paid
    );
}

async fn bad_requests_are_refused_naming_the_field_and_nothing_reaches_mia(backend: Backend) {
    use pb::QrAmountType::{Controlled, Fixed, Free};
    let fx = Fixture::start(backend).await;
    // What the table refers to, made first.
    let dynamic = fx.create(fx.dynamic(Fixed, "1.00", "", "")).await;
    let dynamic_extension = dynamic.extension.clone().expect("a request").extension_id;
    let static_qr = fx
        .create(pb::CreateQrRequest {
            r#type: pb::QrType::Static.into(),
            ..fx.dynamic(Fixed, "", "", "")
        })
        .await;
    let of_b = fx
        .client()
        .await
        .create_qr(pb::CreateQrRequest {
            terminal: Some(fx.b.clone()),
            seller_session_id: fx.session_b.clone(),
            ..fx.dynamic(Fixed, "2.00", "", "")
        })
        .await
        .expect("a QR of terminal B")
        .into_inner()
        .qr
        .expect("a QR");
    let before = fx.sandbox.requests();

    enum Call {
        Create(pb::CreateQrRequest),
        Get(pb::GetQrRequest),
        ListActive(pb::ListActiveQrsRequest),
        Cancel(pb::CancelQrRequest),
        Request(pb::CreatePaymentRequestRequest),
        CancelRequest(pb::CancelPaymentRequestRequest),
        Status(pb::GetPaymentStatusRequest),
        Watch(pb::WatchPaymentRequest),
        Refund(pb::RefundTransactionRequest),
        List(pb::ListTransactionsRequest),
        GetTransaction(pb::GetTransactionRequest),
        GetSettings(pb::GetTerminalSettingsRequest),
        Settings(pb::UpdateTerminalSettingsRequest),
    }
    let create = |edit: &dyn Fn(&mut pb::CreateQrRequest)| {
        let mut request = fx.dynamic(Fixed, "1.00", "", "");
        edit(&mut request);
        Call::Create(request)
    };
    let settings = |ttl: u32| pb::UpdateTerminalSettingsRequest {
        operation_id: op(),
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
        settings: Some(pb::TerminalSettings {
            qr_type: pb::QrType::Dynamic.into(),
            qr_amount_type: pb::QrAmountType::Fixed.into(),
            qr_ttl_seconds: ttl,
            ..Default::default()
        }),
    };
    let refund = |edit: &dyn Fn(&mut pb::RefundTransactionRequest)| {
        let mut request = pb::RefundTransactionRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            transaction_id: "1".into(),
            amount: "1.00".into(),
            reason_code: "RETURN".into(),
            ..Default::default()
        };
        edit(&mut request);
        Call::Refund(request)
    };
    let new_request = |qr_id: &str, amount: &str| pb::CreatePaymentRequestRequest {
        operation_id: op(),
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
        qr_id: qr_id.into(),
        amount: amount.into(),
        ..Default::default()
    };
    let list_active = |edit: &dyn Fn(&mut pb::ListActiveQrsRequest)| {
        let mut request = pb::ListActiveQrsRequest {
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            ..Default::default()
        };
        edit(&mut request);
        Call::ListActive(request)
    };
    let cancel = |edit: &dyn Fn(&mut pb::CancelQrRequest)| {
        let mut request = pb::CancelQrRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            qr_id: static_qr.qr_id.clone(),
        };
        edit(&mut request);
        Call::Cancel(request)
    };
    let get_transaction = |transaction_id: &str, session: &str| {
        Call::GetTransaction(pb::GetTransactionRequest {
            terminal: Some(fx.a.clone()),
            seller_session_id: session.into(),
            transaction_id: transaction_id.into(),
        })
    };
    let get_settings = |terminal: Option<pb::Terminal>, session: &str| {
        Call::GetSettings(pb::GetTerminalSettingsRequest {
            terminal,
            seller_session_id: session.into(),
        })
    };
    let cases: Vec<(&str, Call, Code, &str)> = vec![
        (
            "no operation id",
            create(&|r| r.operation_id.clear()),
            Code::InvalidArgument,
            "operation_id",
        ),
        (
            "malformed operation id",
            create(&|r| r.operation_id = "42".into()),
            Code::InvalidArgument,
            "operation_id",
        ),
        (
            "no terminal",
            create(&|r| r.terminal = None),
            Code::InvalidArgument,
            "terminal",
        ),
        (
            "no seller session",
            create(&|r| r.seller_session_id.clear()),
            Code::InvalidArgument,
            "seller_session_id",
        ),
        (
            "no QR type",
            create(&|r| r.r#type = 0),
            Code::InvalidArgument,
            "type",
        ),
        (
            "no amount type",
            create(&|r| r.amount_type = 0),
            Code::InvalidArgument,
            "amount_type",
        ),
        (
            "fixed without amount",
            create(&|r| r.amount.clear()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "3 fraction digits",
            create(&|r| r.amount = "12.505".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "an exponent",
            create(&|r| r.amount = "1e2".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "negative",
            create(&|r| r.amount = "-5.00".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "zero",
            create(&|r| r.amount = "0.00".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "min above max",
            create(&|r| {
                r.amount_type = Controlled.into();
                r.amount.clear();
                r.min_amount = "10".into();
                r.max_amount = "5".into();
            }),
            Code::InvalidArgument,
            "max_amount",
        ),
        (
            "controlled without min",
            create(&|r| {
                r.amount_type = Controlled.into();
                r.amount.clear();
                r.max_amount = "5".into();
            }),
            Code::InvalidArgument,
            "min_amount",
        ),
        (
            "free with an amount",
            create(&|r| r.amount_type = Free.into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "hybrid with an amount",
            create(&|r| r.r#type = pb::QrType::Hybrid.into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "a long client reference",
            create(&|r| r.client_reference = "x".repeat(129)),
            Code::InvalidArgument,
            "client_reference",
        ),
        (
            "a seller session of another terminal",
            create(&|r| r.seller_session_id = fx.session_b.clone()),
            Code::PermissionDenied,
            "seller_session_id",
        ),
        (
            "TTL 29",
            Call::Settings(settings(29)),
            Code::InvalidArgument,
            "settings.qr_ttl_seconds",
        ),
        (
            "no settings",
            Call::Settings(pb::UpdateTerminalSettingsRequest {
                settings: None,
                ..settings(30)
            }),
            Code::InvalidArgument,
            "settings",
        ),
        (
            "no QR id",
            Call::Get(pb::GetQrRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "qr_id",
        ),
        (
            "a QR id of another terminal",
            Call::Get(pb::GetQrRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                qr_id: of_b.qr_id.clone(),
                include_image: false,
            }),
            Code::NotFound,
            "qr_id",
        ),
        (
            "active QRs without a terminal",
            list_active(&|r| r.terminal = None),
            Code::InvalidArgument,
            "terminal",
        ),
        (
            "active QRs without a seller session",
            list_active(&|r| r.seller_session_id.clear()),
            Code::InvalidArgument,
            "seller_session_id",
        ),
        (
            "active QRs of a type that is none",
            list_active(&|r| r.r#type = 99),
            Code::InvalidArgument,
            "type",
        ),
        (
            "a cancel without a QR id",
            cancel(&|r| r.qr_id.clear()),
            Code::InvalidArgument,
            "qr_id",
        ),
        (
            "a cancel without an operation id",
            cancel(&|r| r.operation_id.clear()),
            Code::InvalidArgument,
            "operation_id",
        ),
        (
            "cancelling a QR of another terminal",
            cancel(&|r| r.qr_id = of_b.qr_id.clone()),
            Code::NotFound,
            "qr_id",
        ),
        (
            "a transaction without an id",
            get_transaction("", &fx.session_a),
            Code::InvalidArgument,
            "transaction_id",
        ),
        (
            "a transaction of a malformed id",
            get_transaction("12a", &fx.session_a),
            Code::InvalidArgument,
            "transaction_id",
        ),
        (
            "a transaction without a seller session",
            get_transaction("1", ""),
            Code::InvalidArgument,
            "seller_session_id",
        ),
        (
            "settings without a terminal",
            get_settings(None, &fx.session_a),
            Code::InvalidArgument,
            "terminal",
        ),
        (
            "settings without a seller session",
            get_settings(Some(fx.a.clone()), ""),
            Code::InvalidArgument,
            "seller_session_id",
        ),
        (
            "a payment request without a QR id",
            Call::Request(new_request("", "1.00")),
            Code::InvalidArgument,
            "qr_id",
        ),
        (
            "a request on a dynamic QR",
            Call::Request(new_request(&dynamic.qr_id, "1.00")),
            Code::FailedPrecondition,
            "qr_id",
        ),
        (
            "a fixed request without amount",
            Call::Request(new_request(&static_qr.qr_id, "")),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "cancelling a dynamic QR's request",
            Call::CancelRequest(pb::CancelPaymentRequestRequest {
                operation_id: op(),
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                extension_id: dynamic_extension.clone(),
            }),
            Code::FailedPrecondition,
            "extension_id",
        ),
        (
            "cancelling a request without an extension id",
            Call::CancelRequest(pb::CancelPaymentRequestRequest {
                operation_id: op(),
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                extension_id: String::new(),
            }),
            Code::InvalidArgument,
            "extension_id",
        ),
        (
            "a watch without a payment",
            Call::Watch(pb::WatchPaymentRequest {
                payment: None,
                ..fx.watch_request(&dynamic_extension)
            }),
            Code::InvalidArgument,
            "payment",
        ),
        (
            "a status without a payment",
            Call::Status(pb::GetPaymentStatusRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                payment: None,
            }),
            Code::InvalidArgument,
            "payment",
        ),
        (
            "a watch of a malformed request id",
            Call::Watch(pb::WatchPaymentRequest {
                payment: Some(pb::watch_payment_request::Payment::ExtensionId("x".into())),
                ..fx.watch_request(&dynamic_extension)
            }),
            Code::InvalidArgument,
            "extension_id",
        ),
        (
            "a refund without reason",
            refund(&|r| r.reason_code.clear()),
            Code::InvalidArgument,
            "reason_code",
        ),
        (
            "a full refund with an amount",
            refund(&|r| r.full_refund = true),
            Code::InvalidArgument,
            "amount",
        ),
        (
            "a refund of a malformed transaction",
            refund(&|r| r.transaction_id = "tx-1".into()),
            Code::InvalidArgument,
            "transaction_id",
        ),
        (
            "a refund in another currency's form",
            refund(&|r| r.currency = "mdl".into()),
            Code::InvalidArgument,
            "currency",
        ),
        (
            "transactions without a shift",
            Call::List(pb::ListTransactionsRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "shift_id",
        ),
        (
            "a page token fiscus never gave",
            Call::List(pb::ListTransactionsRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                shift_id: "1".into(),
                page_token: "not-a-token".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_token",
        ),
    ];
    assert!(cases.len() >= 20);
    let mut client = fx.client().await;
    for (name, call, code, field) in cases {
        let status = match call {
            Call::Create(r) => client.create_qr(r).await.map(drop),
            Call::Get(r) => client.get_qr(r).await.map(drop),
            Call::ListActive(r) => client.list_active_qrs(r).await.map(drop),
            Call::Cancel(r) => client.cancel_qr(r).await.map(drop),
            Call::Request(r) => client.create_payment_request(r).await.map(drop),
            Call::CancelRequest(r) => client.cancel_payment_request(r).await.map(drop),
            Call::Status(r) => client.get_payment_status(r).await.map(drop),
            Call::Watch(r) => client.watch_payment(r).await.map(drop),
            Call::Refund(r) => client.refund_transaction(r).await.map(drop),
            Call::List(r) => client.list_transactions(r).await.map(drop),
            Call::GetTransaction(r) => client.get_transaction(r).await.map(drop),
            Call::GetSettings(r) => client.get_terminal_settings(r).await.map(drop),
            Call::Settings(r) => client.update_terminal_settings(r).await.map(drop),
        }
        .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        if code == Code::InvalidArgument {
            assert!(
                violations(&status).iter().any(|f| f == field),
                "{name}: {field} in {:?} ({})",
                violations(&status),
                status.message()
            );
        } else {
            assert!(
                status.message().contains(field),
                "{name}: {}",
                status.message()
            );
        }
    }
    assert_eq!(fx.sandbox.requests(), before, "nothing reached MIA");
}

async fn an_expired_mia_token_is_renewed_once_and_the_call_goes_through(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let mut client = fx.client().await;
    let read = || pb::GetTerminalSettingsRequest {
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
    };
    client.get_terminal_settings(read()).await.expect("reads");
    fx.sandbox.expire_access_tokens();
    let settings = client
        .get_terminal_settings(read())
        .await
        .expect("a refused token is renewed and the call made again")
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(settings.qr_ttl_seconds, 300);
    assert_eq!(fx.sandbox.count("settings.read"), 2);
}

async fn a_shifts_transactions_are_paged_newest_first(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let mut paid = Vec::new();
    for i in 1..=12 {
        paid.push(fx.paid(&format!("{i}.00")).await);
    }
    let shift_id = paid[0].shift_id.clone();
    assert!(paid.iter().all(|t| t.shift_id == shift_id));
    let mut client = fx.client().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_transactions(pb::ListTransactionsRequest {
                terminal: Some(fx.a.clone()),
                seller_session_id: fx.session_a.clone(),
                shift_id: shift_id.clone(),
                page_size: 5,
                page_token: token.clone(),
            })
            .await
            .expect("a page")
            .into_inner();
        pages += 1;
        assert!(page.transactions.len() <= 5);
        seen.extend(page.transactions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen.iter().map(|t| t.id.as_str()).collect();
    let newest_first: Vec<&str> = paid.iter().rev().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, newest_first);
    assert!(
        seen.iter()
            .all(|t| !t.qr_id.is_empty() && t.refunded_amount == "0.00")
    );
}

async fn a_hybrid_request_is_cancelled_and_a_static_request_takes_several_payments(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let hybrid = fx
        .create(pb::CreateQrRequest {
            r#type: pb::QrType::Hybrid.into(),
            ..fx.dynamic(pb::QrAmountType::Fixed, "", "", "")
        })
        .await;
    let request = fx.request(&hybrid.qr_id, "6.00", "", "").await;
    let mut watcher = fx
        .client()
        .await
        .watch_payment(fx.watch_request(&request.extension_id))
        .await
        .expect("watches")
        .into_inner();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Pending
    );
    let cancelled = fx
        .client()
        .await
        .cancel_payment_request(pb::CancelPaymentRequestRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            extension_id: request.extension_id.clone(),
        })
        .await
        .expect("cancels")
        .into_inner();
    assert_eq!(cancelled.state(), pb::PaymentState::Cancelled);
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Cancelled
    );
    assert!(pay_request(&fx.sandbox, &request.extension_id, "6.00").is_err());
    fx.cancel(&hybrid.qr_id).await;

    // A static request is paid twice; a following watcher hears both.
    let fixed = fx
        .create(pb::CreateQrRequest {
            r#type: pb::QrType::Static.into(),
            ..fx.dynamic(pb::QrAmountType::Fixed, "2.50", "", "")
        })
        .await;
    let first = fixed.extension.expect("a first request").extension_id;
    let mut follower = fx
        .client()
        .await
        .watch_payment(pb::WatchPaymentRequest {
            follow: true,
            ..fx.watch_request(&first)
        })
        .await
        .expect("follows")
        .into_inner();
    assert_eq!(
        next_event(&mut follower, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Pending
    );
    pay(&fx.sandbox, &fixed.qr_id, "2.50").expect("paid once");
    let once = next_event(&mut follower, Duration::from_secs(10)).await;
    assert_eq!(
        (once.state(), once.total_payments),
        (pb::PaymentState::Paid, 1)
    );
    pay(&fx.sandbox, &fixed.qr_id, "2.50").expect("paid twice");
    let twice = next_event(&mut follower, Duration::from_secs(10)).await;
    assert_eq!(
        (twice.state(), twice.total_payments),
        (pb::PaymentState::Paid, 2)
    );
    assert_eq!(fx.qr_state(&fixed.qr_id).await, pb::QrState::Active);
}

async fn a_payment_the_bank_fails_is_failed_with_its_reason_and_a_lost_request_is_found_again(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let qr = fx
        .create(fx.dynamic(pb::QrAmountType::Free, "", "", ""))
        .await;
    let extension = qr.extension.expect("its request").extension_id;
    let mut watcher = fx
        .client()
        .await
        .watch_payment(fx.watch_request(&extension))
        .await
        .expect("watches")
        .into_inner();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Pending
    );
    fx.sandbox
        .fail_payment(
            PayerTarget::Qr(qr.qr_id.parse().expect("uuid")),
            "insufficient funds",
        )
        .expect("the bank refuses");
    let failed = next_event(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(failed.state(), pb::PaymentState::Failed);
    assert_eq!(failed.message, "insufficient funds");
    assert!(watcher.next().await.is_none());
    let status = fx.status(&extension).await;
    assert_eq!(status.error_description, "insufficient funds");

    // A payment request whose answer was lost is found on its QR, not made twice.
    let fixed = fx
        .create(pb::CreateQrRequest {
            r#type: pb::QrType::Hybrid.into(),
            ..fx.dynamic(pb::QrAmountType::Fixed, "", "", "")
        })
        .await;
    let request = pb::CreatePaymentRequestRequest {
        operation_id: op(),
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
        qr_id: fixed.qr_id.clone(),
        amount: "4.40".into(),
        ..Default::default()
    };
    let mut client = fx.client().await;
    fx.sandbox.drop_next(1);
    let lost = client
        .create_payment_request(request.clone())
        .await
        .expect_err("the answer is lost");
    assert!(
        matches!(lost.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{lost:?}"
    );
    let found = client
        .create_payment_request(request)
        .await
        .expect("the retry finds it")
        .into_inner()
        .extension
        .expect("an extension");
    assert_eq!(
        fx.sandbox.count("extension.created"),
        1,
        "one request at MIA"
    );
    pay_request(&fx.sandbox, &found.extension_id, "4.40")
        .expect("the found request is the one paid");
    assert_eq!(
        fx.status(&found.extension_id).await.state(),
        pb::PaymentState::Paid
    );
}

/// A watcher on one replica hears a payment another replica polled: the first replica asks
/// MIA nothing (`poll_mia = false`), the second polls what the cluster watches and announces it
/// on the Redis bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_hears_a_payment_another_replica_polled() {
    let fx = Fixture::start_with(Backend::Postgres, "poll_mia = false", &[]).await;
    let (_poller, _) = fx.replica(&[("FISCUS_PAYMENTS__POLL_MIA", "true")]).await;
    let qr = fx
        .create(fx.dynamic(pb::QrAmountType::Fixed, "15.00", "", ""))
        .await;
    let extension = qr.extension.expect("its request").extension_id;
    let mut watcher = fx
        .client()
        .await
        .watch_payment(fx.watch_request(&extension))
        .await
        .expect("watches on the first replica")
        .into_inner();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Pending
    );
    assert_eq!(watchers_open(&fx.processes[0]).await, 1);
    let checks = fx.sandbox.count("extension.checked");
    pay(&fx.sandbox, &qr.qr_id, "15.00").expect("paid");
    let paid = next_event(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(paid.state(), pb::PaymentState::Paid);
    assert_eq!(paid.transaction.expect("tx").amount, "15.00");
    assert!(
        fx.sandbox.count("extension.checked") > checks,
        "the second replica polled"
    );
    assert!(watcher.next().await.is_none(), "the stream ends after PAID");
    watchers_open_become(&fx.processes[0], 0).await;
}

/// The WatchPayment streams a payments process says are open, on its admin port.
async fn watchers_open(process: &Process) -> i64 {
    let admin = process
        .admin
        .expect("the payment service logs its admin port");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("the admin port answers")
        .text()
        .await
        .expect("the exposition");
    text.lines()
        .find_map(|line| line.strip_prefix("fiscus_watchers_open{stream=\"payments\"} "))
        .unwrap_or_else(|| panic!("no fiscus_watchers_open of payments in:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

/// Waits (10 s at most) until `process` says `open` WatchPayment streams are open.
async fn watchers_open_become(process: &Process, open: i64) {
    let mut seen = watchers_open(process).await;
    for _ in 0..100 {
        if seen == open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = watchers_open(process).await;
    }
    panic!("{seen} WatchPayment streams open, not {open}");
}

/// Watchers are bounded per process, and SIGTERM ends open streams with UNAVAILABLE while the
/// process still stops gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_bounded_and_end_with_unavailable_when_the_process_stops() {
    let fx = Fixture::start_with(Backend::Postgres, "max_watchers = 2", &[]).await;
    let (replica, mut client) = fx.replica(&[]).await;
    let qr = fx
        .create(fx.dynamic(pb::QrAmountType::Fixed, "3.00", "", ""))
        .await;
    let extension = qr.extension.expect("its request").extension_id;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = client
            .watch_payment(fx.watch_request(&extension))
            .await
            .expect("admitted")
            .into_inner();
        next_event(&mut stream, Duration::from_secs(5)).await;
        open.push(stream);
    }
    let refused = client
        .watch_payment(fx.watch_request(&extension))
        .await
        .expect_err("beyond the limit");
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert_eq!(
        watchers_open(&replica).await,
        2,
        "a refused watcher is not counted"
    );
    let stopping = tokio::spawn(replica.stop_gracefully());
    for mut stream in open {
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends in time")
            .expect("with a status");
        assert_eq!(ended.expect_err("UNAVAILABLE").code(), Code::Unavailable);
    }
    stopping.await.expect("stops gracefully");
}

/// MIA sees the caller's trace id as X-CORRELATION-ID, and the device headers configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mia_hears_the_callers_trace_and_the_configured_device() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let fx = Fixture::start_with(
        Backend::Postgres,
        "[payments.device]\ndevice = \"till-7\"\ninstallation_id = \"628f8a47-50a4-47e4-be12-af6c4dac9573\"",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")],
    )
    .await;
    let mut request = tonic::Request::new(pb::GetTerminalSettingsRequest {
        terminal: Some(fx.a.clone()),
        seller_session_id: fx.session_a.clone(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    fx.client()
        .await
        .get_terminal_settings(request)
        .await
        .expect("reads");
    let correlation = fx.sandbox.last_correlation_id().expect("a correlation id");
    assert_eq!(correlation.replace('-', ""), TRACE_ID);
    let (device, platform, installation) = fx.sandbox.last_device_headers();
    assert_eq!(device.as_deref(), Some("till-7"));
    assert_eq!(platform.as_deref(), Some("external_system"));
    assert_eq!(
        installation.as_deref(),
        Some("628f8a47-50a4-47e4-be12-af6c4dac9573")
    );
}

/// The README's walk-through on `fiscus dev` as it ships: its own sandbox, its activated dev
/// terminal and seller session; a dynamic QR paid through the payer endpoint over HTTP; the
/// watcher hears PAID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_on_fiscus_dev() {
    let data = tempfile::tempdir().expect("tempdir");
    let process = Process::dev(data.path()).await.expect("fiscus dev starts");
    let token = process.dev_token.clone().expect("a dev token");
    let session = written(&data.path().join("mia-session")).await;
    let sandbox_url = written(&data.path().join("mia-sandbox-url")).await;
    let terminal = pb::Terminal {
        merchant_tin: "1003600000000".into(),
        branch_no: "001".into(),
        pos_no: "T-DEV-1".into(),
    };
    let mut client =
        PaymentServiceClient::with_interceptor(process.channel().await, Bearer::new(&token));
    let qr = client
        .create_qr(pb::CreateQrRequest {
            operation_id: op(),
            terminal: Some(terminal.clone()),
            seller_session_id: session.clone(),
            r#type: pb::QrType::Dynamic.into(),
            amount_type: pb::QrAmountType::Fixed.into(),
            amount: "12.50".into(),
            include_image: true,
            ..Default::default()
        })
        .await
        .expect("creates")
        .into_inner()
        .qr
        .expect("a QR");
    assert!(qr.qr_image.starts_with(b"\x89PNG"), "a PNG image");
    let mut watcher = client
        .watch_payment(pb::WatchPaymentRequest {
            terminal: Some(terminal),
            seller_session_id: session,
            payment: Some(pb::watch_payment_request::Payment::QrId(qr.qr_id.clone())),
            follow: false,
        })
        .await
        .expect("watches")
        .into_inner();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .state(),
        pb::PaymentState::Pending
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let paid = reqwest::Client::new()
        .post(format!("{sandbox_url}/sandbox/payer/pay"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"qrId":"{}","amount":12.50}}"#, qr.qr_id))
        .send()
        .await
        .expect("the payer pays");
    assert!(paid.status().is_success(), "{:?}", paid.text().await);
    let event = next_event(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(event.state(), pb::PaymentState::Paid);
    assert!(watcher.next().await.is_none());
}

/// A file's text once it is written.
async fn written(path: &std::path::Path) -> String {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing was written to {}", path.display());
}

async fn receipts_and_qr_payments_of_one_shift_add_up_and_a_refund_counts_in_the_shift_open_when_made(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let (_processes, mut shifts, receipts) = fx.shifts().await;
    let open = |shifts: &mut ShiftServiceClient<Authed>| {
        let mut shifts = shifts.clone();
        let till = fx.a.clone();
        async move {
            shifts
                .open_shift(pb::OpenShiftRequest {
                    operation_id: op(),
                    terminal: Some(till),
                    opened_by: "Ana".into(),
                    ..Default::default()
                })
                .await
                .expect("the shift opens")
        }
    };
    let close = |shifts: &mut ShiftServiceClient<Authed>| {
        let mut shifts = shifts.clone();
        let till = fx.a.clone();
        async move {
            shifts
                .close_shift(pb::CloseShiftRequest {
                    operation_id: op(),
                    terminal: Some(till),
                    closed_by: "Ana".into(),
                    full: true,
                    ..Default::default()
                })
                .await
                .expect("the shift closes")
                .into_inner()
                .z_report
                .expect("a Z-report")
        }
    };
    // Made outside any shift: in no report.
    fx.paid("3.00").await;
    open(&mut shifts).await;
    // In the same shift, receipts at the same terminal: a sale of two tax types paid in cash
    // with change, a sale refunded in full, a card sale cancelled, a zero receipt.
    let sign = |request: pb::SignReceiptRequest| {
        let mut receipts = receipts.clone();
        async move {
            receipts
                .sign_receipt(request)
                .await
                .expect("a receipt")
                .into_inner()
                .receipt
                .expect("the receipt")
        }
    };
    let mut bread = fiscus_e2e::sale(
        &fx.a,
        vec![
            fiscus_e2e::item("Pâine", "2", "50.00", pb::TaxType::VatAble),
            fiscus_e2e::item("Aspirină", "1", "10.00", pb::TaxType::VatFree),
        ],
        "130.00",
    );
    bread.payments.push(pb::PayItem {
        method: pb::PaymentMethod::Change.into(),
        ..fiscus_e2e::cash("20.00")
    });
    let bread = sign(bread).await;
    let milk = sign(fiscus_e2e::sale(
        &fx.a,
        vec![fiscus_e2e::item(
            "Lapte",
            "1",
            "50.00",
            pb::TaxType::VatAble,
        )],
        "50.00",
    ))
    .await;
    let returned = sign(fiscus_e2e::refund(&fx.a, &milk.id, &[], "50.00")).await;
    let mut coffee = fiscus_e2e::sale(
        &fx.a,
        vec![fiscus_e2e::item(
            "Cafea",
            "1",
            "30.00",
            pb::TaxType::VatAble,
        )],
        "30.00",
    );
    coffee.payments[0].method = pb::PaymentMethod::PaymentCard.into();
    let coffee = sign(coffee).await;
    let zero = sign(pb::SignReceiptRequest {
        operation_id: op(),
        terminal: Some(fx.a.clone()),
        kind: pb::ReceiptKind::Zero.into(),
        receipt_reference: "zero-1".into(),
        ..Default::default()
    })
    .await;
    let voided = receipts
        .clone()
        .cancel_receipt(fiscus_e2e::cancellation(&fx.a, &coffee.id, "wrong card"))
        .await
        .expect("a cancellation")
        .into_inner()
        .cancellation
        .expect("the cancellation");
    assert!(
        [&bread, &milk, &returned, &coffee, &zero, &voided]
            .iter()
            .all(|r| !r.shift_id.is_empty() && r.shift_id == bread.shift_id),
        "the receipts are in the open shift"
    );
    let tx = fx.paid("40.00").await;
    fx.client()
        .await
        .refund_transaction(refund(&fx, &tx, "15.00", false))
        .await
        .expect("refunds 15");
    let x = shifts
        .get_x_report(pb::GetXReportRequest {
            terminal: Some(fx.a.clone()),
            full: true,
            ..Default::default()
        })
        .await
        .expect("an X-report")
        .into_inner()
        .report
        .expect("a report");
    let qr = |r: &pb::Report| {
        (
            r.qr_payment_count,
            r.qr_payment_sum.clone(),
            r.qr_refund_count,
            r.qr_refund_sum.clone(),
        )
    };
    let expected = (1, "40.00".to_owned(), 1, "15.00".to_owned());
    assert_eq!(qr(&x), expected);
    // The receipts' figures, computed here: sales of 110, 50 and 30; the 50 refunded and the
    // 30 cancelled, so 110 net; 130 and 50 in cash, 50 paid back, 20 given as change; 30 by
    // card, taken back by the cancellation.
    let receipts_figures = |r: &pb::Report| {
        let counts = (
            r.receipt_count,
            r.sale_count,
            r.refund_count,
            r.cancellation_count,
            r.zero_receipt_count,
        );
        let sums = [
            &r.sale_sum,
            &r.refund_sum,
            &r.cancellation_sum,
            &r.total_sum,
        ]
        .map(|sum| sum.clone());
        (counts, sums)
    };
    let expected_receipts = (
        (6, 3, 1, 1, 1),
        ["190.00", "50.00", "30.00", "110.00"].map(str::to_owned),
    );
    assert_eq!(receipts_figures(&x), expected_receipts);
    let money = |r: &pb::Report| {
        [
            pb::PaymentMethod::Cash,
            pb::PaymentMethod::Change,
            pb::PaymentMethod::PaymentCard,
        ]
        .map(|method| {
            r.payment_methods
                .iter()
                .find(|m| m.method() == method)
                .map(|m| m.sum.clone())
        })
    };
    assert_eq!(
        money(&x),
        ["130.00", "20.00", "0.00"].map(|sum| Some(sum.to_owned())),
        "{:?}",
        x.payment_methods
    );
    // Each list in its own order; between them, by time.
    let lines = |r: &pb::Report, qr: bool| -> Vec<(pb::ReportTransactionType, String)> {
        use pb::ReportTransactionType::{QrPayment, QrRefund};
        r.transactions
            .iter()
            .filter(|t| matches!(t.r#type(), QrPayment | QrRefund) == qr)
            .map(|t| (t.r#type(), t.amount.clone()))
            .collect()
    };
    assert_eq!(
        lines(&x, true),
        vec![
            (pb::ReportTransactionType::QrPayment, "40.00".to_owned()),
            (pb::ReportTransactionType::QrRefund, "15.00".to_owned()),
        ]
    );
    {
        use pb::ReportTransactionType::{Cancellation, Refund, Sale, Zero};
        assert_eq!(
            lines(&x, false).iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![Sale, Sale, Refund, Sale, Zero, Cancellation]
        );
    }
    let z = close(&mut shifts).await;
    assert_eq!(qr(&z), expected);
    assert_eq!(receipts_figures(&z), expected_receipts);
    assert_eq!(money(&z), money(&x));
    assert_eq!(z.transactions.len(), 8);
    // A refund after the close counts in the shift open then, not in the payment's.
    open(&mut shifts).await;
    fx.client()
        .await
        .refund_transaction(refund(&fx, &tx, "5.00", false))
        .await
        .expect("refunds 5");
    let z2 = close(&mut shifts).await;
    assert_eq!(qr(&z2), (0, "0.00".to_owned(), 1, "5.00".to_owned()));
}

async fn a_mia_terminals_shift_opens_and_closes_at_mia_and_a_payment_fiscus_never_saw_is_a_z_report_warning(
    backend: Backend,
) {
    let fx = Fixture::start(backend).await;
    let (_processes, shifts, _) = fx.shifts().await;
    let open = || {
        let mut shifts = shifts.clone();
        let request = pb::OpenShiftRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            opened_by: "Ana".into(),
        };
        async move {
            shifts
                .open_shift(request)
                .await
                .expect("the shift opens")
                .into_inner()
        }
    };
    let close = || {
        let mut shifts = shifts.clone();
        let request = pb::CloseShiftRequest {
            operation_id: op(),
            terminal: Some(fx.a.clone()),
            seller_session_id: fx.session_a.clone(),
            closed_by: "Ana".into(),
            format: pb::DocumentFormat::Txt.into(),
            ..Default::default()
        };
        async move {
            shifts
                .close_shift(request)
                .await
                .expect("the shift closes")
                .into_inner()
        }
    };

    // OpenShift opens the seller's MIA shift.
    assert_eq!(fx.sandbox.shift("T1"), None, "no MIA shift yet");
    let shift = open().await.shift.expect("the shift").shift_id;
    let (mia_shift, is_open) = fx.sandbox.shift("T1").expect("a MIA shift");
    assert!(is_open);
    assert_eq!(fx.sandbox.count("shift.opened"), 1);
    let tx = fx.paid("40.00").await;
    assert_eq!(tx.shift_id, shift, "the payment is in fiscus's shift");
    fx.client()
        .await
        .refund_transaction(refund(&fx, &tx, "15.00", false))
        .await
        .expect("refunds 15");
    // Paid at MIA on the same terminal without a QR code of fiscus's: fiscus never hears of it.
    fx.sandbox
        .pay_outside_fiscus("T1", m("9.99"))
        .expect("MIA takes the payment");

    // CloseShift closes MIA's shift and reconciles with MIA's own Z-report of it.
    let closed = close().await;
    assert_eq!(fx.sandbox.shift("T1"), Some((mia_shift.clone(), false)));
    assert_eq!(fx.sandbox.count("shift.closed"), 1);
    assert_eq!(fx.sandbox.count("shift.z_report"), 1);
    let z = closed.z_report.expect("a Z-report");
    assert_eq!(
        (z.qr_payment_count, z.qr_payment_sum.as_str()),
        (1, "40.00"),
        "fiscus counts what it saw"
    );
    assert_eq!(
        z.warnings,
        vec![
            "QR payment count: fiscus 1, MIA's Z-report 2".to_owned(),
            "QR payment sum: fiscus 40.00, MIA's Z-report 49.99".to_owned(),
        ],
        "the refunds agree; the payments do not"
    );
    let text = closed.document.expect("the TXT").text_lines.join("\n");
    assert!(text.contains("WARNINGS"), "{text}");
    assert!(text.contains("49.99"), "{text}");
    let stored = shifts
        .clone()
        .get_z_report(pb::GetZReportRequest {
            terminal: Some(fx.a.clone()),
            report: Some(pb::get_z_report_request::Report::ReportNumber(1)),
            ..Default::default()
        })
        .await
        .expect("the stored Z-report")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(
        stored.warnings, z.warnings,
        "the warnings are stored with it"
    );

    // MIA has a shift open already (a payment outside fiscus opened it): OpenShift adopts it.
    fx.sandbox
        .pay_outside_fiscus("T1", m("1.00"))
        .expect("MIA takes the payment");
    let (adopted, _) = fx.sandbox.shift("T1").expect("a MIA shift");
    assert_ne!(adopted, mia_shift);
    open().await;
    assert_eq!(fx.sandbox.count("shift.opened"), 1, "none opened: adopted");
    fx.paid("2.00").await;
    assert_eq!(fx.sandbox.shift("T1"), Some((adopted.clone(), true)));
    // The seller closes MIA's shift at MIA (as a close whose answer was lost would have):
    // CloseShift still closes, taking that shift as closed.
    fx.mia_as_seller(reqwest::Method::POST, paths::SHIFT_CLOSE)
        .await;
    let z = close().await.z_report.expect("a Z-report");
    assert_eq!(fx.sandbox.shift("T1"), Some((adopted, false)));
    assert_eq!(
        z.warnings,
        vec![
            "QR payment count: fiscus 1, MIA's Z-report 2".to_owned(),
            "QR payment sum: fiscus 2.00, MIA's Z-report 3.00".to_owned(),
        ]
    );

    // A shift whose QR figures agree with MIA's has no warning.
    open().await;
    fx.paid("5.00").await;
    let z = close().await.z_report.expect("a Z-report");
    assert!(z.warnings.is_empty(), "{:?}", z.warnings);
    assert_eq!(fx.sandbox.count("shift.z_report"), 3);
}
