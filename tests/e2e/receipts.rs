//! ReceiptService end to end: through gRPC, on Postgres + Redis (the receipts binary) and on
//! SQLite + the in-process cache (`fiscus dev`), with the journal read back from the database.

use std::str::FromStr;

use fiscus_e2e::{
    AUTH_CONFIG, Authed, Bearer, Process, bread_sale, cancellation, database_url, fresh_schema,
    issue_token, item, op, redis_url, refund, sale, unique_terminal,
};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use futures::StreamExt;
use prost::Message;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

/// A merchant registered as a city-tax payer in the test configuration.
const CITY_TIN: &str = "37900846788";
/// A merchant with default settings (no city tax).
const PLAIN_TIN: &str = "12345678901";

const CONFIG: &str = r#"
[[receipts.merchants]]
tin = "37900846788"
name = "Дээж Дэлгүүр ХХК"
city_tax_payer = true
"#;

enum Store {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// A running receipt service and direct access to its database.
pub(crate) struct Fixture {
    pub(crate) process: Process,
    /// The token service of a separate-process cluster (`fiscus dev` serves tokens itself).
    _tokens: Option<Process>,
    store: Store,
    client: ReceiptServiceClient<Authed>,
    token: String,
    /// How another replica on the same database starts: its schema and arguments (Postgres).
    replica: Option<(String, Vec<String>, String)>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

impl Fixture {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, "").await
    }

    /// A fixture whose configuration file also holds `extra` (TOML).
    pub(crate) async fn start_with(backend: Backend, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("fiscus.toml");
        std::fs::write(&config, format!("{extra}\n{CONFIG}{AUTH_CONFIG}")).expect("config");
        let config = config.to_str().expect("utf-8").to_owned();
        let (process, tokens, store, replica) = match backend {
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
                let schema = fresh_schema("e2e_receipts");
                let peer = format!("http://{}", tokens.addr);
                let process = Process::service_in(
                    "receipts",
                    &schema,
                    &["--config", &config],
                    &[("FISCUS_PEERS__TOKENS", &peer)],
                )
                .await
                .expect("fiscus-receipts starts");
                let options = sqlx::postgres::PgConnectOptions::from_str(&database_url())
                    .expect("url")
                    .options([("search_path", schema.as_str())]);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("postgres");
                let replica = (schema, vec!["--config".to_owned(), config.clone()], peer);
                (process, Some(tokens), Store::Postgres(pool), Some(replica))
            }
            Backend::Sqlite => {
                let data = dir.path().join("data");
                let process = Process::dev_with(&data, &["--config", &config])
                    .await
                    .expect("fiscus dev starts");
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(data.join("receipts.db"))
                    .busy_timeout(std::time::Duration::from_secs(10));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("sqlite");
                (process, None, Store::Sqlite(pool), None)
            }
        };
        let issuer = tokens.as_ref().unwrap_or(&process).channel().await;
        let token = issue_token(issuer, "e2e-admin", "e2e-admin-secret", &[])
            .await
            .expect("a token");
        let client =
            ReceiptServiceClient::with_interceptor(process.channel().await, Bearer::new(&token))
                .max_decoding_message_size(64 * 1024 * 1024);
        Self {
            process,
            _tokens: tokens,
            store,
            client,
            token,
            replica,
            _dir: dir,
        }
    }

    /// Another receipts process on the same database and Redis, and a client of it (Postgres).
    pub(crate) async fn second_replica(&self) -> (Process, ReceiptServiceClient<Authed>) {
        let (_, args, _) = self.replica.as_ref().expect("a Postgres fixture");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.replica_with(&args).await
    }

    /// A receipts process on this one's database and Redis, started with `args`.
    async fn replica_with(&self, args: &[&str]) -> (Process, ReceiptServiceClient<Authed>) {
        let (schema, _, peer) = self.replica.as_ref().expect("a Postgres fixture");
        let process =
            Process::service_in("receipts", schema, args, &[("FISCUS_PEERS__TOKENS", peer)])
                .await
                .expect("a second fiscus-receipts starts");
        let client = ReceiptServiceClient::with_interceptor(
            process.channel().await,
            Bearer::new(&self.token),
        );
        (process, client)
    }

    /// Another receipts process on the same database and Redis whose configuration file is
    /// this one's as `edit` changes it (an upgrade, a changed setting), and a client of it.
    pub(crate) async fn second_replica_configured(
        &self,
        edit: impl FnOnce(String) -> String,
    ) -> (Process, ReceiptServiceClient<Authed>) {
        let (_, args, _) = self.replica.as_ref().expect("a Postgres fixture");
        let original = std::fs::read_to_string(&args[1]).expect("the configuration");
        let edited = self._dir.path().join("fiscus-edited.toml");
        std::fs::write(&edited, edit(original)).expect("the edited configuration");
        self.replica_with(&["--config", edited.to_str().expect("utf-8")])
            .await
    }

    /// Drops the cached answer of an operation, so that only the database can give it again.
    /// The journal caches an answer just after giving it, so this waits for it to be there.
    /// (The in-process cache of `fiscus dev` is out of reach, and keeps answering.)
    async fn forget_cached_answer(&self, merchant_tin: &str, operation_id: &str) {
        if let Some((schema, ..)) = &self.replica {
            let client = redis::Client::open(redis_url()).expect("redis url");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            for _ in 0..1000 {
                let removed: u64 = redis::cmd("DEL")
                    .arg(format!("{schema}:op:{merchant_tin}:{operation_id}"))
                    .query_async(&mut connection)
                    .await
                    .expect("del");
                if removed == 1 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the answer of {operation_id} was never cached");
        }
    }

    pub(crate) fn client(&self) -> ReceiptServiceClient<Authed> {
        self.client.clone()
    }

    /// Runs a statement against the service's own tables (to tamper with them, as an attacker would).
    pub(crate) async fn execute(&self, sql: &str) -> u64 {
        match &self.store {
            Store::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .expect("statement")
                .rows_affected(),
            Store::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .expect("statement")
                .rows_affected(),
        }
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        match &self.store {
            Store::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
                .expect("count"),
            Store::Sqlite(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
                .expect("count"),
        }
    }

    async fn sign(&self, request: pb::SignReceiptRequest) -> pb::Receipt {
        self.client()
            .sign_receipt(request)
            .await
            .expect("signs")
            .into_inner()
            .receipt
            .expect("receipt")
    }

    async fn verify(&self, terminal: &pb::Terminal) -> pb::VerifyJournalResponse {
        self.client()
            .verify_journal(pb::VerifyJournalRequest {
                terminal: Some(terminal.clone()),
                ..Default::default()
            })
            .await
            .expect("verifies")
            .into_inner()
    }
}

/// Sends `request` from every client at the same moment; each copy must be answered, and all
/// answers byte for byte alike. Answers the one answer.
async fn sign_at_once(
    clients: impl IntoIterator<Item = ReceiptServiceClient<Authed>>,
    request: &pb::SignReceiptRequest,
) -> pb::SignReceiptResponse {
    let calls = clients.into_iter().map(|mut client| {
        let request = request.clone();
        async move { client.sign_receipt(request).await }
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("every duplicate gets the answer").into_inner())
        .collect();
    let encoded: Vec<_> = answers.iter().map(Message::encode_to_vec).collect();
    assert!(
        encoded.windows(2).all(|w| w[0] == w[1]),
        "{} identical answers",
        answers.len()
    );
    answers.into_iter().next().expect("an answer")
}

on_both_backends!(
    a_sale_is_taxed_per_item_numbered_chained_and_signed,
    concurrent_receipts_on_one_terminal_get_numbers_without_gaps,
    concurrent_receipts_over_32_terminals_each_chain_verifies,
    retries_among_new_sales_on_one_terminal_leave_no_gap,
    one_operation_id_signs_once_however_often_it_is_sent,
    tampering_with_the_journal_is_named_by_verify_journal,
    bad_requests_are_refused_naming_the_field_and_write_nothing,
    refunds_never_exceed_what_was_sold,
    a_refund_sent_many_times_at_once_is_journaled_once,
    a_receipt_is_cancelled_once_and_only_on_its_business_day,
    watch_receipt_streams_fiscal_state_changes,
    list_receipts_pages_newest_first_with_filters,
    export_journal_streams_json_lines_and_csv,
    a_zero_receipt_has_no_items_and_no_payments,
    render_receipt_prints_txt_pdf_and_png_with_a_readable_qr_code,
    an_operation_id_has_one_spelling_and_signs_once,
    operation_id_field_and_metadata_are_one_id,
    a_refund_or_cancellation_reaches_only_its_own_terminals_receipts,
    verify_journal_answers_every_range_truthfully,
    a_stored_value_that_does_not_read_is_named_by_verify_journal,
    watchers_are_bounded_and_their_streams_end_when_the_process_stops,
);

async fn a_sale_is_taxed_per_item_numbered_chained_and_signed(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(CITY_TIN);
    let mut milk = item("Сүү 1л", "2", "2500.50", pb::TaxType::VatAble);
    milk.city_tax_applies = true;
    let request = sale(
        &till,
        vec![
            item("Талх", "1", "5600", pb::TaxType::VatAble),
            milk,
            item(
                "Эмийн сан: Парацетамол",
                "0.5",
                "1000",
                pb::TaxType::VatFree,
            ),
        ],
        "11101.00",
    );
    let first = fx.sign(request).await;
    assert_eq!(first.receipt_number, 1);
    assert_eq!(first.fiscal_state(), pb::FiscalState::LocalSigned);
    // 5600 → VAT 509.09 (no city tax); 5001.00 → VAT 446.52, city tax 89.30; 500 VAT-free.
    assert_eq!(first.total_amount, "11101.00");
    assert_eq!(first.items[0].total_vat, "509.09");
    assert_eq!(first.items[1].total_amount, "5001.00");
    assert_eq!(first.items[1].total_vat, "446.52");
    assert_eq!(first.items[1].total_city_tax, "89.30");
    assert_eq!(first.items[2].total_amount, "500.00");
    assert_eq!(first.items[2].total_vat, "0.00");
    assert_eq!(first.total_vat, "955.61");
    assert_eq!(first.total_city_tax, "89.30");
    assert_eq!(first.previous_hash, vec![0u8; 32]);

    let second = fx.sign(bread_sale(&till)).await;
    assert_eq!(second.receipt_number, 2);
    assert_eq!(
        second.previous_hash, first.hash,
        "receipt 2 links to receipt 1"
    );

    let keys = fx
        .client()
        .get_signing_keys(pb::GetSigningKeysRequest {
            merchant_tin: CITY_TIN.into(),
            ..Default::default()
        })
        .await
        .expect("keys")
        .into_inner()
        .keys;
    let key = keys
        .iter()
        .find(|k| k.key_id == second.key_id)
        .expect("the receipt's key is published");
    assert!(key.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let public = &key.public_key_der[key.public_key_der.len() - 32..];
    assert!(fiscus_domain::keys::verify(
        public,
        &second.hash,
        &second.signature
    ));

    let fetched = fx
        .client()
        .get_receipt(pb::GetReceiptRequest {
            terminal: Some(till.clone()),
            lookup: Some(pb::get_receipt_request::Lookup::ReceiptNumber(1)),
        })
        .await
        .expect("get")
        .into_inner()
        .receipt
        .expect("receipt");
    // GetReceipt carries the signed document too: anyone can re-hash it.
    let mut fetched = fetched;
    let document = std::mem::take(&mut fetched.signed_document);
    assert_eq!(
        fetched, first,
        "the journal holds what SignReceipt answered"
    );
    let previous: [u8; 32] = first.previous_hash.as_slice().try_into().expect("32 bytes");
    assert_eq!(
        &fiscus_domain::chain::link(&previous, document.as_bytes())[..],
        &first.hash[..]
    );
    assert!(
        first
            .qr_data
            .ends_with(&fiscus_domain::chain::hex(&first.hash)),
        "{}",
        first.qr_data
    );

    let verdict = fx.verify(&till).await;
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.count_checked, 2);
    assert_eq!(verdict.head_hash, second.hash);
}

async fn concurrent_receipts_on_one_terminal_get_numbers_without_gaps(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let calls = (0..64).map(|_| {
        let mut client = fx.client();
        let request = bread_sale(&till);
        async move { client.sign_receipt(request).await }
    });
    let mut numbers: Vec<u64> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| {
            r.expect("signs")
                .into_inner()
                .receipt
                .expect("receipt")
                .receipt_number
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=64).collect::<Vec<_>>());
    let verdict = fx.verify(&till).await;
    assert!(verdict.ok && verdict.count_checked == 64, "{verdict:?}");
}

/// Retries of receipts already journaled, sent while new sales stream into the same terminal,
/// are answered as first time and never break the run of numbers: a retry is left out of the
/// journal, and on Postgres the new receipts chained behind it in the pipeline are re-chained.
async fn retries_among_new_sales_on_one_terminal_leave_no_gap(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let mut earlier = Vec::new();
    for _ in 0..8 {
        let request = bread_sale(&till);
        let answer = fx
            .client()
            .sign_receipt(request.clone())
            .await
            .expect("signs")
            .into_inner();
        // The retry must find its answer in the journal, not in the cache.
        fx.forget_cached_answer(&till.merchant_tin, &request.operation_id)
            .await;
        earlier.push((request, answer.encode_to_vec()));
    }
    let calls = (0..32).map(|i| {
        let mut client = fx.client();
        let (request, first) = match earlier.get(i / 4).filter(|_| i % 4 == 0) {
            Some((request, first)) => (request.clone(), Some(first.clone())),
            None => (bread_sale(&till), None),
        };
        async move { (client.sign_receipt(request).await, first) }
    });
    let mut numbers = Vec::new();
    for (answer, first) in futures::future::join_all(calls).await {
        let answer = answer.expect("every call is answered").into_inner();
        match first {
            Some(first) => assert_eq!(
                answer.encode_to_vec(),
                first,
                "a retry gets the first answer"
            ),
            None => numbers.push(answer.receipt.expect("receipt").receipt_number),
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (9..=32).collect::<Vec<_>>());
    let verdict = fx.verify(&till).await;
    assert!(verdict.ok && verdict.count_checked == 32, "{verdict:?}");
}

async fn concurrent_receipts_over_32_terminals_each_chain_verifies(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let tills: Vec<_> = (0..32).map(|_| unique_terminal(PLAIN_TIN)).collect();
    let calls = (0..64).map(|i| {
        let mut client = fx.client();
        let request = bread_sale(&tills[i % 32]);
        async move { client.sign_receipt(request).await }
    });
    for result in futures::future::join_all(calls).await {
        result.expect("signs");
    }
    for till in &tills {
        let verdict = fx.verify(till).await;
        assert!(
            verdict.ok && verdict.count_checked == 2,
            "{till:?}: {verdict:?}"
        );
    }
}

async fn one_operation_id_signs_once_however_often_it_is_sent(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let request = bread_sale(&till);
    let answer = sign_at_once((0..20).map(|_| fx.client()), &request)
        .await
        .encode_to_vec();
    let rows = fx
        .count(&format!(
            "SELECT COUNT(*) FROM receipts WHERE pos_no = '{}'",
            till.pos_no
        ))
        .await;
    assert_eq!(rows, 1, "one journal row");

    let mut changed = request.clone();
    changed.payments[0].amount = "5601".into();
    changed.items[0].unit_price = "5601".into();
    let refused = fx
        .client()
        .sign_receipt(changed.clone())
        .await
        .expect_err("conflict");
    assert_eq!(refused.code(), Code::AlreadyExists);
    assert!(
        refused.message().contains(&request.operation_id),
        "{}",
        refused.message()
    );

    // Redis is only the fast path: with it forgetting the answer, the database still answers
    // the same.
    fx.forget_cached_answer(PLAIN_TIN, &request.operation_id)
        .await;
    let again = fx
        .client()
        .sign_receipt(request)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(again.encode_to_vec(), answer);
    let refused = fx
        .client()
        .sign_receipt(changed)
        .await
        .expect_err("conflict");
    assert_eq!(refused.code(), Code::AlreadyExists);
}

async fn tampering_with_the_journal_is_named_by_verify_journal(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let cases: [(&str, pb::JournalProblem, u64); 5] = [
        (
            "UPDATE receipts SET total_minor = total_minor + 100 WHERE {t} AND number = 3",
            pb::JournalProblem::HashMismatch,
            3,
        ),
        (
            "UPDATE receipts SET document = REPLACE(document, '\"total_amount\":\"5600.00\"', '\"total_amount\":\"56.00\"') WHERE {t} AND number = 3",
            pb::JournalProblem::HashMismatch,
            3,
        ),
        (
            "DELETE FROM receipts WHERE {t} AND number = 2",
            pb::JournalProblem::NumberGap,
            3,
        ),
        (
            "DELETE FROM receipts WHERE {t} AND number = 4",
            pb::JournalProblem::Missing,
            4,
        ),
        (
            "UPDATE receipts SET signature = hash || hash WHERE {t} AND number = 2",
            pb::JournalProblem::SignatureInvalid,
            2,
        ),
    ];
    for (sql, problem, number) in cases {
        let till = unique_terminal(PLAIN_TIN);
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(fx.sign(bread_sale(&till)).await.id);
        }
        assert!(fx.verify(&till).await.ok);
        let sql = sql.replace("{t}", &format!("pos_no = '{}'", till.pos_no));
        assert_eq!(fx.execute(&sql).await, 1, "{sql}");
        let verdict = fx.verify(&till).await;
        assert!(!verdict.ok, "{sql}");
        let found = verdict.first_break.expect("names the break");
        assert_eq!(
            (found.problem(), found.receipt_number),
            (problem, number),
            "{sql}: {found:?}"
        );
        if problem != pb::JournalProblem::Missing {
            assert_eq!(
                found.receipt_id,
                ids[usize::try_from(number).expect("small") - 1],
                "{sql}"
            );
        }
        assert!(!found.message.is_empty());
    }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn bad_requests_are_refused_naming_the_field_and_write_nothing(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let good = || bread_sale(&till);
    type Edit = Box<dyn Fn(&mut pb::SignReceiptRequest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("terminal", Box::new(|r| r.terminal = None)),
        (
            "terminal.merchant_tin",
            Box::new(|r| r.terminal.as_mut().expect("t").merchant_tin.clear()),
        ),
        (
            "terminal.branch_no",
            Box::new(|r| r.terminal.as_mut().expect("t").branch_no = "0 1".into()),
        ),
        (
            "terminal.pos_no",
            Box::new(|r| r.terminal.as_mut().expect("t").pos_no = "x".repeat(40)),
        ),
        ("operation_id", Box::new(|r| r.operation_id.clear())),
        (
            "operation_id",
            Box::new(|r| r.operation_id = "not-a-uuid".into()),
        ),
        ("kind", Box::new(|r| r.kind = 0)),
        (
            "kind",
            Box::new(|r| r.kind = pb::ReceiptKind::Cancellation.into()),
        ),
        ("type", Box::new(|r| r.r#type = 0)),
        ("type", Box::new(|r| r.r#type = 42)),
        (
            "receipt_reference",
            Box::new(|r| r.receipt_reference.clear()),
        ),
        ("items", Box::new(|r| r.items.clear())),
        (
            "items",
            Box::new(|r| r.items = vec![r.items[0].clone(); 10_000]),
        ),
        (
            "items[0].name",
            Box::new(|r| r.items[0].name = "я".repeat(1_000_000)),
        ),
        ("items[0].name", Box::new(|r| r.items[0].name.clear())),
        (
            "items[0].quantity",
            Box::new(|r| r.items[0].quantity = "-1".into()),
        ),
        (
            "items[0].quantity",
            Box::new(|r| r.items[0].quantity = "1e3".into()),
        ),
        (
            "items[0].quantity",
            Box::new(|r| r.items[0].quantity = "1.0001".into()),
        ),
        (
            "items[0].quantity",
            Box::new(|r| r.items[0].quantity = "NaN".into()),
        ),
        (
            "items[0].unit_price",
            Box::new(|r| r.items[0].unit_price = "5600.00001".into()),
        ),
        (
            "items[0].unit_price",
            Box::new(|r| r.items[0].unit_price = "-5".into()),
        ),
        (
            "items[0].unit_price",
            Box::new(|r| r.items[0].unit_price = "5 600".into()),
        ),
        ("items[0].tax_type", Box::new(|r| r.items[0].tax_type = 0)),
        ("items[0].tax_type", Box::new(|r| r.items[0].tax_type = 99)),
        (
            "items[0].city_tax_applies",
            Box::new(|r| r.items[0].city_tax_applies = true),
        ),
        (
            "items[0].vat_rate",
            Box::new(|r| r.items[0].vat_rate = "ten".into()),
        ),
        (
            "items[0].bar_code_type",
            Box::new(|r| r.items[0].bar_code = "4006381333931".into()),
        ),
        ("payments", Box::new(|r| r.payments.clear())),
        (
            "payments",
            Box::new(|r| r.payments[0].amount = "5599.99".into()),
        ),
        (
            "payments[0].amount",
            Box::new(|r| r.payments[0].amount = "0".into()),
        ),
        ("payments[0].method", Box::new(|r| r.payments[0].method = 0)),
        (
            "payments[0].masked_card_number",
            Box::new(|r| r.payments[0].masked_card_number = "4111111111111111".into()),
        ),
        (
            "customer_tin",
            Box::new(|r| r.r#type = pb::ReceiptType::B2bInvoice.into()),
        ),
        (
            "customer_tin",
            Box::new(|r| {
                r.r#type = pb::ReceiptType::B2bReceipt.into();
                r.customer_tin = "12ab".into()
            }),
        ),
        (
            "consumer_no",
            Box::new(|r| {
                r.r#type = pb::ReceiptType::B2cInvoice.into();
                r.consumer_no = "10038071".into()
            }),
        ),
        ("currency", Box::new(|r| r.currency = "EUR".into())),
        ("district_code", Box::new(|r| r.district_code = "25".into())),
        (
            "report_month",
            Box::new(|r| r.report_month = "2026-13".into()),
        ),
        (
            "expected_total_amount",
            Box::new(|r| r.expected_total_amount = "5600.01".into()),
        ),
        (
            "refund_of",
            Box::new(|r| r.kind = pb::ReceiptKind::Refund.into()),
        ),
        (
            "refund_of",
            Box::new(|r| r.refund_of = Some(pb::RefundReference::default())),
        ),
        (
            "receipt_moment",
            Box::new(|r| {
                r.receipt_moment = Some(prost_types::Timestamp {
                    seconds: 4_000_000_000,
                    nanos: 0,
                })
            }),
        ),
    ];
    assert!(cases.len() >= 30);
    for (field, edit) in &cases {
        let mut request = good();
        edit(&mut request);
        let status = fx.client().sign_receipt(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let fields = violations(&status);
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not named in {fields:?}: {}",
            status.message()
        );
    }
    let heads = fx
        .count(&format!(
            "SELECT COUNT(*) FROM chain_heads WHERE pos_no = '{}'",
            till.pos_no
        ))
        .await;
    let receipts = fx.count("SELECT COUNT(*) FROM receipts").await;
    let operations = fx.count("SELECT COUNT(*) FROM operations").await;
    assert_eq!(
        (heads, receipts, operations),
        (0, 0, 0),
        "nothing was written"
    );
    // A good request after all of them is number 1.
    assert_eq!(fx.sign(good()).await.receipt_number, 1);
}

async fn refunds_never_exceed_what_was_sold(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let original = fx
        .sign(sale(
            &till,
            vec![
                item("Өндөг", "3", "1100", pb::TaxType::VatAble),
                item("Pâine și brânză", "1", "500", pb::TaxType::VatAble),
            ],
            "3800",
        ))
        .await;
    let first = fx
        .sign(refund(&till, &original.id, &[(1, "2")], "2200"))
        .await;
    assert_eq!(first.kind(), pb::ReceiptKind::Refund);
    assert_eq!(first.total_amount, "2200.00");
    assert_eq!(first.total_vat, "200.00");
    assert_eq!(first.original_receipt_id, original.id);

    let status = fx
        .client()
        .sign_receipt(refund(&till, &original.id, &[(1, "2")], "2200"))
        .await
        .expect_err("above sold");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["refund_of.lines[0].quantity"]);
    let status = fx
        .client()
        .sign_receipt(refund(&till, &original.id, &[(3, "1")], "500"))
        .await
        .expect_err("no line 3");
    assert_eq!(violations(&status), ["refund_of.lines[0].position"]);
    // One line named twice: 1 egg is left, 1 + 1 is not.
    let status = fx
        .client()
        .sign_receipt(refund(&till, &original.id, &[(1, "1"), (1, "1")], "2200"))
        .await
        .expect_err("one line twice");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["refund_of.lines[1].position"]);

    // The rest, without naming lines: one egg and the bread.
    let rest_request = refund(&till, &original.id, &[], "1600");
    let rest = fx.sign(rest_request.clone()).await;
    assert_eq!(rest.total_amount, "1600.00");
    // Its retry, with the sale now used up, is still answered — by the journal.
    fx.forget_cached_answer(PLAIN_TIN, &rest_request.operation_id)
        .await;
    assert_eq!(fx.sign(rest_request).await, rest, "the same refund again");
    let status = fx
        .client()
        .sign_receipt(refund(&till, &original.id, &[], "1"))
        .await
        .expect_err("nothing left");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = fx
        .client()
        .sign_receipt(refund(&till, &uuid::Uuid::new_v4().to_string(), &[], "1"))
        .await
        .expect_err("no original");
    assert_eq!(status.code(), Code::NotFound);
    assert!(fx.verify(&till).await.ok);
}

async fn a_refund_sent_many_times_at_once_is_journaled_once(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let original = fx.sign(bread_sale(&till)).await;
    let request = refund(&till, &original.id, &[], "5600");
    sign_at_once((0..10).map(|_| fx.client()), &request).await;
    let refunds = fx
        .count(&format!(
            "SELECT COUNT(*) FROM receipts WHERE original_receipt_id = '{}'",
            original.id
        ))
        .await;
    assert_eq!(refunds, 1, "one refund journaled");
    assert!(fx.verify(&till).await.ok);
}

/// Sales on one terminal sent to two replicas at once, with refunds (which lock the chain inside
/// their transaction) among them: one gap-free chain, whichever replica appended each receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_appending_to_one_terminal_keep_one_chain() {
    let fx = Fixture::start(Backend::Postgres).await;
    let (_replica, other) = fx.second_replica().await;
    let till = unique_terminal(PLAIN_TIN);
    let mut originals = Vec::new();
    for _ in 0..4 {
        originals.push(fx.sign(bread_sale(&till)).await);
    }
    let sales = (0..60).map(|i| {
        let mut client = if i % 2 == 0 {
            fx.client()
        } else {
            other.clone()
        };
        let request = bread_sale(&till);
        async move { client.sign_receipt(request).await }
    });
    let refunds = originals.iter().enumerate().map(|(i, original)| {
        let mut client = if i % 2 == 0 {
            other.clone()
        } else {
            fx.client()
        };
        let request = refund(&till, &original.id, &[], "5600");
        async move { client.sign_receipt(request).await }
    });
    let (sales, refunds) = futures::future::join(
        futures::future::join_all(sales),
        futures::future::join_all(refunds),
    )
    .await;
    let mut numbers: Vec<u64> = originals.iter().map(|r| r.receipt_number).collect();
    for answer in sales.into_iter().chain(refunds) {
        let receipt = answer
            .expect("signs")
            .into_inner()
            .receipt
            .expect("receipt");
        numbers.push(receipt.receipt_number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=68).collect::<Vec<_>>());
    let verdict = fx.verify(&till).await;
    assert!(verdict.ok && verdict.count_checked == 68, "{verdict:?}");

    // Each replica still appends after the other's receipts.
    let mine = fx.sign(bread_sale(&till)).await;
    let theirs = other
        .clone()
        .sign_receipt(bread_sale(&till))
        .await
        .expect("signs")
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!((mine.receipt_number, theirs.receipt_number), (69, 70));

    // One operation sent to both replicas at once: one receipt, one answer.
    let request = bread_sale(&till);
    let both = (0..10).map(|i| {
        if i % 2 == 0 {
            fx.client()
        } else {
            other.clone()
        }
    });
    sign_at_once(both, &request).await;
    let verdict = fx.verify(&till).await;
    assert!(verdict.ok && verdict.count_checked == 71, "{verdict:?}");
}

/// A terminal whose chain head another transaction holds locked (a refund or cancellation being
/// committed, another replica's append) holds up no other terminal's sales, and its own sale goes
/// in, next in its chain, once the lock is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_locked_elsewhere_holds_up_no_other_terminal() {
    let fx = Fixture::start(Backend::Postgres).await;
    let Store::Postgres(pool) = &fx.store else {
        unreachable!("a Postgres fixture")
    };
    let (busy, free) = (unique_terminal(PLAIN_TIN), unique_terminal(PLAIN_TIN));
    fx.sign(bread_sale(&busy)).await;
    fx.sign(bread_sale(&free)).await;

    let mut holder = pool.begin().await.expect("begin");
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .expect("pid");
    sqlx::query("SELECT 1 FROM chain_heads WHERE pos_no = $1 FOR UPDATE")
        .bind(&busy.pos_no)
        .execute(&mut *holder)
        .await
        .expect("the head locked");
    let waiting = tokio::spawn({
        let mut client = fx.client();
        let request = bread_sale(&busy);
        async move { client.sign_receipt(request).await }
    });
    // Until the busy terminal's sale is waiting for the lock.
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
    )
    .bind(holder_pid)
    .fetch_one(pool)
    .await
    .expect("lock waits")
        == 0
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let others = async {
        let mut numbers = Vec::new();
        for _ in 0..3 {
            numbers.push(fx.sign(bread_sale(&free)).await.receipt_number);
        }
        numbers
    };
    // Not a speed bound: without it a stalled journal would hang the test instead of failing it.
    let numbers = tokio::time::timeout(std::time::Duration::from_secs(60), others)
        .await
        .expect("the other terminal's sales are answered while the busy one is locked");
    assert_eq!(numbers, [2, 3, 4]);
    assert!(
        !waiting.is_finished(),
        "the busy terminal's sale waits for its lock"
    );

    holder.rollback().await.expect("the lock let go");
    let receipt = waiting
        .await
        .expect("joined")
        .expect("signs once the lock is let go")
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!(receipt.receipt_number, 2);
    for till in [&busy, &free] {
        assert!(fx.verify(till).await.ok);
    }
}

/// The journal's writer holds a connection of its own once it has appended: the service still
/// stops cleanly on SIGTERM, its pool closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_receipt_service_that_has_journaled() {
    let fx = Fixture::start(Backend::Postgres).await;
    fx.sign(bread_sale(&unique_terminal(PLAIN_TIN))).await;
    let Fixture { process, .. } = fx;
    process.stop_gracefully().await;
}

async fn a_receipt_is_cancelled_once_and_only_on_its_business_day(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let original = fx.sign(bread_sale(&till)).await;
    let cancel = |id: &str| cancellation(&till, id, "wrong item");
    let request = cancel(&original.id);
    let done = fx
        .client()
        .cancel_receipt(request.clone())
        .await
        .expect("cancels")
        .into_inner();
    // Its retry, with the receipt now cancelled, is still answered — by the journal.
    fx.forget_cached_answer(PLAIN_TIN, &request.operation_id)
        .await;
    let retried = fx
        .client()
        .cancel_receipt(request)
        .await
        .expect("the same cancellation again")
        .into_inner();
    assert_eq!(retried, done);
    let cancelled = done.receipt.expect("original");
    let cancellation = done.cancellation.expect("cancellation");
    assert_eq!(cancelled.fiscal_state(), pb::FiscalState::Cancelled);
    assert_eq!(cancelled.cancelled_by_receipt_id, cancellation.id);
    assert_eq!(cancellation.kind(), pb::ReceiptKind::Cancellation);
    assert_eq!(
        cancellation.receipt_number, 2,
        "the cancellation is journaled"
    );
    assert_eq!(cancellation.original_receipt_id, original.id);
    assert!(fx.verify(&till).await.ok);

    let again = fx
        .client()
        .cancel_receipt(cancel(&original.id))
        .await
        .expect_err("twice");
    assert_eq!(again.code(), Code::FailedPrecondition);
    let refunded = fx
        .client()
        .sign_receipt(refund(&till, &original.id, &[], "5600"))
        .await
        .expect_err("refund of cancelled");
    assert_eq!(refunded.code(), Code::FailedPrecondition);

    // A receipt signed on an earlier day: the rule reads the signed time.
    let old = fx.sign(bread_sale(&till)).await;
    fx.execute(&format!(
        "UPDATE receipts SET document = REPLACE(document, '\"signed_at\":\"20', '\"signed_at\":\"19') WHERE id = '{}'",
        old.id
    ))
    .await;
    let late = fx
        .client()
        .cancel_receipt(cancel(&old.id))
        .await
        .expect_err("not today");
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(
        late.message().contains("same business day"),
        "{}",
        late.message()
    );
}

async fn watch_receipt_streams_fiscal_state_changes(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let receipt = fx.sign(bread_sale(&till)).await;
    let mut stream = fx
        .client()
        .watch_receipt(pb::WatchReceiptRequest {
            receipt_id: receipt.id.clone(),
            follow: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("an event")
        .expect("ok")
        .event
        .expect("event");
    assert_eq!(first.state(), pb::FiscalState::LocalSigned);
    fx.client()
        .cancel_receipt(pb::CancelReceiptRequest {
            operation_id: op(),
            terminal: Some(till.clone()),
            receipt: Some(pb::cancel_receipt_request::Receipt::ReceiptId(
                receipt.id.clone(),
            )),
            ..Default::default()
        })
        .await
        .expect("cancels");
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the change arrives")
        .expect("an event")
        .expect("ok")
        .event
        .expect("event");
    assert_eq!(next.state(), pb::FiscalState::Cancelled);
    assert!(
        stream.next().await.is_none(),
        "a cancelled receipt's stream ends"
    );
}

async fn list_receipts_pages_newest_first_with_filters(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    for _ in 0..5 {
        fx.sign(bread_sale(&till)).await;
    }
    let original = fx
        .sign(sale(
            &till,
            vec![item("Өндөг", "2", "1100", pb::TaxType::VatAble)],
            "2200",
        ))
        .await;
    fx.sign(refund(&till, &original.id, &[], "2200")).await;
    let mut numbers = Vec::new();
    let mut token = String::new();
    loop {
        let page = fx
            .client()
            .list_receipts(pb::ListReceiptsRequest {
                terminal: Some(till.clone()),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("lists")
            .into_inner();
        assert!(page.receipts.len() <= 3);
        numbers.extend(page.receipts.iter().map(|r| r.receipt_number));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(numbers, [7, 6, 5, 4, 3, 2, 1]);
    let refunds = fx
        .client()
        .list_receipts(pb::ListReceiptsRequest {
            terminal: Some(till.clone()),
            kinds: vec![pb::ReceiptKind::Refund.into()],
            ..Default::default()
        })
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(refunds.receipts.len(), 1);
    let bad = fx
        .client()
        .list_receipts(pb::ListReceiptsRequest {
            terminal: Some(till.clone()),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(violations(&bad), ["page_token"]);
}

async fn export(
    fx: &Fixture,
    till: &pb::Terminal,
    format: pb::JournalExportFormat,
) -> (String, u64) {
    let mut stream = fx
        .client()
        .export_journal(pb::ExportJournalRequest {
            terminal: Some(till.clone()),
            format: format.into(),
            ..Default::default()
        })
        .await
        .expect("exports")
        .into_inner();
    let mut text = String::new();
    let mut count = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk").chunk.expect("data");
        count += chunk.receipts_in_chunk;
        text.push_str(std::str::from_utf8(&chunk.data).expect("utf-8"));
    }
    (text, count)
}

async fn export_journal_streams_json_lines_and_csv(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let mut signed = Vec::new();
    let mut two_items = sale(
        &till,
        vec![
            item("Талх \"Сүү\", 1л", "1", "5600", pb::TaxType::VatAble),
            item("Ус", "2", "1000", pb::TaxType::VatAble),
        ],
        "7600",
    );
    two_items.cashier = "Бат".into();
    signed.push(fx.sign(two_items).await);
    signed.push(fx.sign(bread_sale(&till)).await);
    signed.push(
        fx.sign(pb::SignReceiptRequest {
            operation_id: op(),
            terminal: Some(till.clone()),
            kind: pb::ReceiptKind::Zero.into(),
            receipt_reference: "zero".into(),
            ..Default::default()
        })
        .await,
    );

    // JSON Lines: each line is a fiscus.v1.Receipt in the protobuf JSON mapping — exactly what
    // GetReceipt answers — and its signed document re-hashes to its hash.
    let (jsonl, count) = export(&fx, &till, pb::JournalExportFormat::JsonLines).await;
    assert_eq!(count, 3);
    let descriptor = prost_reflect::DescriptorPool::decode(fiscus_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptors")
        .get_message_by_name("fiscus.v1.Receipt")
        .expect("Receipt");
    let mut previous = fiscus_domain::chain::GENESIS;
    for (line, receipt) in jsonl.lines().zip(&signed) {
        let mut json = serde_json::Deserializer::from_str(line);
        let parsed = prost_reflect::DynamicMessage::deserialize(descriptor.clone(), &mut json)
            .expect("a protobuf JSON Receipt")
            .transcode_to::<pb::Receipt>()
            .expect("transcodes");
        let stored = fx
            .client()
            .get_receipt(pb::GetReceiptRequest {
                terminal: None,
                lookup: Some(pb::get_receipt_request::Lookup::ReceiptId(
                    receipt.id.clone(),
                )),
            })
            .await
            .expect("get")
            .into_inner()
            .receipt
            .expect("receipt");
        assert_eq!(parsed, stored);
        let computed = fiscus_domain::chain::link(&previous, parsed.signed_document.as_bytes());
        assert_eq!(&computed[..], &receipt.hash[..]);
        previous = computed;
    }

    // CSV: one row per item, the receipt's columns repeated; a receipt without items is one row.
    let (csv, count) = export(&fx, &till, pb::JournalExportFormat::Csv).await;
    assert_eq!(count, 3);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[..3], ["receipt_number", "receipt_id", "created_at"]);
    assert_eq!(header.len(), 27);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let column = |name: &str| header.iter().position(|h| h == name).expect("column");
    let of = |id: &str| {
        rows.iter()
            .filter(|r| &r[column("receipt_id")] == id)
            .count()
    };
    assert_eq!(
        (of(&signed[0].id), of(&signed[1].id), of(&signed[2].id)),
        (2, 1, 1)
    );
    assert_eq!(&rows[0][column("item_name")], "Талх \"Сүү\", 1л");
    assert_eq!(&rows[1][column("item_total_amount")], "2000.00");
    assert_eq!(&rows[1][column("total_amount")], "7600.00");
    assert_eq!(&rows[3][column("kind")], "RECEIPT_KIND_ZERO");
    assert_eq!(&rows[3][column("item_position")], "");
}

async fn a_zero_receipt_has_no_items_and_no_payments(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let zero = fx
        .sign(pb::SignReceiptRequest {
            operation_id: op(),
            terminal: Some(till.clone()),
            kind: pb::ReceiptKind::Zero.into(),
            receipt_reference: "zero-1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        (zero.kind(), zero.total_amount.as_str()),
        (pb::ReceiptKind::Zero, "0.00")
    );
    assert!(fx.verify(&till).await.ok);
}

/// Peak resident memory of a process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_receipts_are_still_signed_once() {
    let schema = fresh_schema("e2e_receipts");
    let process = Process::service_in(
        "receipts",
        &schema,
        &[],
        // Authentication is off here, explicitly: this test is about the cache alone.
        &[
            ("FISCUS_CACHE__URL", "redis://127.0.0.1:1"),
            ("FISCUS_AUTH__ENABLED", "false"),
        ],
    )
    .await
    .expect("starts without Redis");
    let mut client = ReceiptServiceClient::new(process.channel().await);
    let till = unique_terminal(PLAIN_TIN);
    let request = bread_sale(&till);
    let first = client
        .sign_receipt(request.clone())
        .await
        .expect("signs")
        .into_inner();
    let again = client
        .sign_receipt(request.clone())
        .await
        .expect("replays")
        .into_inner();
    assert_eq!(first.encode_to_vec(), again.encode_to_vec());
    let mut changed = request;
    changed.receipt_reference.push('x');
    let refused = client.sign_receipt(changed).await.expect_err("conflict");
    assert_eq!(refused.code(), Code::AlreadyExists);
    let second = client
        .sign_receipt(bread_sale(&till))
        .await
        .expect("signs")
        .into_inner();
    assert_eq!(second.receipt.expect("receipt").receipt_number, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_100_000_receipts_streams_with_flat_memory() {
    let fx = Fixture::start(Backend::Postgres).await;
    let till = unique_terminal(PLAIN_TIN);
    // 100 000 journal rows of ~2 KB each, written straight into the table: ~200 MB of export.
    // Each row's document is a receipt's (its number and id filled in by SQL); the chain
    // columns are placeholders, as an export does not verify.
    let template = fx.sign(bread_sale(&till)).await;
    let mut document = fx
        .client()
        .get_receipt(pb::GetReceiptRequest {
            terminal: None,
            lookup: Some(pb::get_receipt_request::Lookup::ReceiptId(
                template.id.clone(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .receipt
        .expect("receipt")
        .signed_document;
    document = document
        .replace(&template.id, "bulk-ID")
        .replace("\"number\":1,", "\"number\":NUMBER,")
        .replace(&template.receipt_reference, &"x".repeat(1800))
        .replace('\'', "''");
    fx.execute(&format!(
        "INSERT INTO receipts (id, merchant_tin, branch_no, pos_no, number, kind, receipt_type, reference, \
         total_minor, vat_minor, city_tax_minor, currency, fiscal_state, document, previous_hash, hash, \
         signature, key_id, created_at_us) \
         SELECT 'bulk-' || n, '{}', '{}', '{}', n, 'SALE', 'B2C_RECEIPT', 'ref-' || n, 560000, 50909, 0, 'MNT', \
         'LOCAL_SIGNED', replace(replace('{document}', 'bulk-ID', 'bulk-' || n), 'NUMBER', n::text), \
         '\\x00', '\\x00', '\\x00', 'k', n \
         FROM generate_series(2, 100001) AS n",
        till.merchant_tin, till.branch_no, till.pos_no
    ))
    .await;
    let pid = fx.process.pid().expect("running");
    let before = peak_rss_kib(pid);
    let mut stream = fx
        .client()
        .export_journal(pb::ExportJournalRequest {
            terminal: Some(till.clone()),
            format: pb::JournalExportFormat::JsonLines.into(),
            ..Default::default()
        })
        .await
        .expect("exports")
        .into_inner();
    let (mut receipts, mut bytes, mut largest) = (0u64, 0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk").chunk.expect("data");
        receipts += chunk.receipts_in_chunk;
        bytes += chunk.data.len();
        largest = largest.max(chunk.data.len());
    }
    let grown_mib = peak_rss_kib(pid).saturating_sub(before) / 1024;
    assert_eq!(receipts, 100_001);
    assert!(bytes > 200 * 1024 * 1024, "{bytes} bytes exported");
    assert!(largest < 4 * 1024 * 1024, "chunks stay small: {largest}");
    assert!(
        grown_mib < 64,
        "the server's peak memory grew {grown_mib} MiB for a {} MiB export",
        bytes >> 20
    );
}

async fn render(fx: &Fixture, id: &str, format: pb::DocumentFormat) -> pb::RenderedDocument {
    fx.client()
        .render_receipt(pb::RenderReceiptRequest {
            receipt_id: id.into(),
            format: format.into(),
            ..Default::default()
        })
        .await
        .expect("renders")
        .into_inner()
        .document
        .expect("document")
}

/// Decodes a grayscale PNG: width, height, pixels.
fn grayscale(png_bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("decodes");
    assert_eq!(
        info.color_type,
        png::ColorType::Grayscale,
        "8-bit grayscale"
    );
    (info.width as usize, info.height as usize, pixels)
}

async fn render_receipt_prints_txt_pdf_and_png_with_a_readable_qr_code(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(CITY_TIN);
    let receipt = fx
        .sign(sale(
            &till,
            vec![
                item("Талх", "1", "5600", pb::TaxType::VatAble),
                item("Pâine și brânză", "2", "12.50", pb::TaxType::VatAble),
            ],
            "5625",
        ))
        .await;
    let expected_qr = format!(
        "fiscus:1:{}:{}:{}:{}:{}:{}",
        till.merchant_tin,
        till.branch_no,
        till.pos_no,
        receipt.receipt_number,
        receipt.total_amount,
        fiscus_domain::chain::hex(&receipt.hash)
    );

    let txt = render(&fx, &receipt.id, pb::DocumentFormat::Txt).await;
    assert!(
        txt.text_lines.iter().all(|l| l.chars().count() <= 48),
        "{:?}",
        txt.text_lines
    );
    let text = String::from_utf8(txt.content).expect("utf-8");
    for expected in [
        "Дээж Дэлгүүр ХХК",
        CITY_TIN,
        "Талх",
        "Pâine și brânză",
        "5625.00",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }

    let pdf = render(&fx, &receipt.id, pb::DocumentFormat::Pdf).await;
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(pdf.content.starts_with(b"%PDF-"));
    assert!(pdf.content.windows(5).any(|w| w == b"%%EOF"));
    let extracted = pdf_extract::extract_text_from_mem(&pdf.content).expect("the PDF's text");
    assert!(
        extracted.contains("Дээж Дэлгүүр ХХК") && extracted.contains("Pâine și brânză"),
        "{extracted}"
    );

    let png = render(&fx, &receipt.id, pb::DocumentFormat::Png).await;
    assert_eq!(png.content_type, "image/png");
    let (width, height, pixels) = grayscale(&png.content);
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let (_, payload) = grids[0].decode().expect("the QR code decodes");
    assert_eq!(payload, expected_qr);
    // A client printing its own receipt prints exactly the code RenderReceipt draws.
    assert_eq!(receipt.qr_data, payload);
}

/// `request` with `x-operation-id` metadata.
fn with_metadata_id<T>(request: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    request
        .metadata_mut()
        .insert("x-operation-id", id.parse().expect("ASCII"));
    request
}

async fn an_operation_id_has_one_spelling_and_signs_once(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let request = bread_sale(&till);
    let first = fx.sign(request.clone()).await;
    let id = uuid::Uuid::parse_str(&request.operation_id).expect("a UUID");
    for other in [
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
    ] {
        let status = fx
            .client()
            .sign_receipt(pb::SignReceiptRequest {
                operation_id: other.clone(),
                ..request.clone()
            })
            .await
            .expect_err("another spelling");
        assert_eq!(status.code(), Code::InvalidArgument, "{other}");
        assert_eq!(violations(&status), ["operation_id"], "{other}");
    }
    // The canonical form in capitals is the same UUID: the same receipt, not another one.
    let shouted = fx
        .sign(pb::SignReceiptRequest {
            operation_id: request.operation_id.to_uppercase(),
            ..request.clone()
        })
        .await;
    assert_eq!(shouted, first);
    let verdict = fx.verify(&till).await;
    assert_eq!((verdict.ok, verdict.head_number), (true, 1));
}

async fn operation_id_field_and_metadata_are_one_id(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let request = bread_sale(&till);
    let status = fx
        .client()
        .sign_receipt(with_metadata_id(request.clone(), &op()))
        .await
        .expect_err("two ids");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["operation_id", "x-operation-id"]);

    let first = fx.sign(request.clone()).await;
    // The retry moves the id to the metadata: the same operation, the same answer.
    let moved = pb::SignReceiptRequest {
        operation_id: String::new(),
        ..request.clone()
    };
    fx.forget_cached_answer(PLAIN_TIN, &request.operation_id)
        .await;
    let retried = fx
        .client()
        .sign_receipt(with_metadata_id(moved, &request.operation_id))
        .await
        .expect("the same operation")
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!(retried, first);
    // Both, agreeing, are fine too.
    let both = fx
        .client()
        .sign_receipt(with_metadata_id(request.clone(), &request.operation_id))
        .await
        .expect("agreeing ids")
        .into_inner()
        .receipt
        .expect("receipt");
    assert_eq!(both, first);
    assert_eq!(fx.verify(&till).await.head_number, 1);
}

async fn a_refund_or_cancellation_reaches_only_its_own_terminals_receipts(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let (mine, theirs) = (unique_terminal(PLAIN_TIN), unique_terminal(PLAIN_TIN));
    let sold = bread_sale(&theirs);
    let original = fx.sign(sold.clone()).await;
    let by_id = fx
        .client()
        .sign_receipt(refund(&mine, &original.id, &[], "5600"))
        .await
        .expect_err("another terminal's receipt, by id");
    assert_eq!(by_id.code(), Code::NotFound, "{by_id:?}");
    let mut by_reference = refund(&mine, "", &[], "5600");
    by_reference.refund_of = Some(pb::RefundReference {
        original: Some(pb::refund_reference::Original::ReceiptReference(
            sold.receipt_reference.clone(),
        )),
        lines: Vec::new(),
    });
    let by_reference = fx
        .client()
        .sign_receipt(by_reference)
        .await
        .expect_err("another terminal's receipt, by reference");
    assert_eq!(by_reference.code(), Code::NotFound);
    let cancel = fx
        .client()
        .cancel_receipt(cancellation(&mine, &original.id, "mistake"))
        .await
        .expect_err("another terminal's receipt, cancelled");
    assert_eq!(cancel.code(), Code::NotFound);
    assert_eq!(fx.verify(&mine).await.head_number, 0, "nothing on mine");
    // On its own terminal the same refund goes through.
    let refunded = fx.sign(refund(&theirs, &original.id, &[], "5600")).await;
    assert_eq!(refunded.original_receipt_id, original.id);
}

async fn verify_journal_answers_every_range_truthfully(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let verify = |from: u64, to: u64| {
        let mut client = fx.client();
        let till = till.clone();
        async move {
            client
                .verify_journal(pb::VerifyJournalRequest {
                    terminal: Some(till),
                    from_number: from,
                    to_number: to,
                })
                .await
        }
    };
    let empty = verify(0, 0).await.expect("an empty journal").into_inner();
    assert!(empty.ok && empty.count_checked == 0 && empty.first_break.is_none());
    for _ in 0..3 {
        fx.sign(bread_sale(&till)).await;
    }
    for (from, to, field) in [
        (5, 0, "from_number"),
        (4, 0, "from_number"),
        (1, 9, "to_number"),
        (3, 2, "to_number"),
    ] {
        let status = verify(from, to).await.expect_err("past the head");
        assert_eq!(status.code(), Code::InvalidArgument, "{from}..{to}");
        assert_eq!(violations(&status), [field], "{from}..{to}");
    }
    for (from, to, checked) in [(0, 0, 3), (1, 3, 3), (2, 0, 2), (3, 3, 1), (2, 2, 1)] {
        let verdict = verify(from, to).await.expect("a range").into_inner();
        assert!(verdict.ok, "{from}..{to}: {verdict:?}");
        assert_eq!(verdict.count_checked, checked, "{from}..{to}");
        assert_eq!(verdict.head_number, 3);
    }
}

async fn a_stored_value_that_does_not_read_is_named_by_verify_journal(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let till = unique_terminal(PLAIN_TIN);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(fx.sign(bread_sale(&till)).await.id);
    }
    fx.execute(&format!(
        "UPDATE receipts SET fiscal_state = 'MAYBE' WHERE pos_no = '{}' AND number = 2",
        till.pos_no
    ))
    .await;
    let verdict = fx.verify(&till).await;
    let found = verdict.first_break.expect("a break");
    assert_eq!(
        (
            found.problem(),
            found.receipt_number,
            found.receipt_id.as_str()
        ),
        (pb::JournalProblem::Unreadable, 2, ids[1].as_str()),
        "{found:?}"
    );
    assert!(found.message.contains("MAYBE"), "{}", found.message);
    // The export still holds the receipt, as stored.
    let (jsonl, count) = export(&fx, &till, pb::JournalExportFormat::JsonLines).await;
    assert_eq!(count, 3);
    assert!(jsonl.contains(&ids[1]));
}

async fn watchers_are_bounded_and_their_streams_end_when_the_process_stops(backend: Backend) {
    let fx = Fixture::start_with(backend, "[receipts]\nmax_watchers = 2\n").await;
    let till = unique_terminal(PLAIN_TIN);
    let receipt = fx.sign(bread_sale(&till)).await;
    let watch = || {
        let mut client = fx.client();
        let receipt_id = receipt.id.clone();
        async move {
            client
                .watch_receipt(pb::WatchReceiptRequest {
                    receipt_id,
                    follow: true,
                })
                .await
        }
    };
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = watch().await.expect("a watcher").into_inner();
        let first = stream.next().await.expect("the current state").expect("ok");
        assert_eq!(
            first.event.expect("event").state(),
            pb::FiscalState::LocalSigned
        );
        streams.push(stream);
    }
    let third = watch().await.expect_err("past the limit");
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    // A stream that ends gives its place back.
    drop(streams.pop());
    let mut again = None;
    for _ in 0..100 {
        match watch().await {
            Ok(stream) => {
                again = Some(stream.into_inner());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    streams.push(again.expect("a place came free"));

    // SIGTERM: the open streams end (UNAVAILABLE: watch elsewhere), the process exits in time.
    let ended = tokio::spawn(async move {
        let mut codes = Vec::new();
        for mut stream in streams {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => {
                        codes.push(status.code());
                        break;
                    }
                    None => {
                        codes.push(Code::Ok);
                        break;
                    }
                }
            }
        }
        codes
    });
    let Fixture { process, .. } = fx;
    process.stop_gracefully().await;
    let codes = ended.await.expect("joins");
    assert_eq!(codes, [Code::Unavailable, Code::Unavailable]);
}

/// Waits until `service`'s health on `process` is `want` (the probe needs a few rounds).
async fn health_becomes(process: &Process, service: &str, want: ServingStatus) {
    for _ in 0..300 {
        if fiscus_e2e::health(process.channel().await, service)
            .await
            .is_ok_and(|status| status == want)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{service} never became {want:?}");
}

/// Postgres stops under load and comes back: calls in the outage answer UNAVAILABLE or
/// DEADLINE_EXCEEDED (outcome unknown), never anything else; once health says NOT_SERVING a
/// sale is refused at once; retried with their operation ids afterwards, every sale is journaled
/// exactly once and the chains verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_says_not_serving_and_loses_or_doubles_nothing() {
    let postgres = fiscus_e2e::PrivatePostgres::start().expect("a private Postgres");
    let url = postgres.url();
    let cluster =
        fiscus_e2e::ReceiptsCluster::start(CONFIG, &[], &[("FISCUS_DATABASE__URL", url.as_str())])
            .await
            .expect("the services start");
    let receipts = &cluster.receipts;
    let client = cluster.client().await;
    const SERVICE: &str = "fiscus.v1.ReceiptService";

    // Four tills sell without pause while Postgres stops and starts again.
    let tills: Vec<pb::Terminal> = (0..4).map(|_| unique_terminal(PLAIN_TIN)).collect();
    let selling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sellers: Vec<_> = tills
        .iter()
        .map(|till| {
            let (mut client, till, selling) = (client.clone(), till.clone(), selling.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while selling.load(std::sync::atomic::Ordering::Relaxed) {
                    let request = bread_sale(&till);
                    // No deadline of the client's own: what is judged is what the server says.
                    let code = match client.sign_receipt(request.clone()).await {
                        Ok(_) => Code::Ok,
                        Err(status) => status.code(),
                    };
                    sent.push((request, code));
                    if code != Code::Ok {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    postgres.stop().expect("Postgres stops");
    health_becomes(receipts, SERVICE, ServingStatus::NotServing).await;
    let process = fiscus_e2e::health(receipts.channel().await, "")
        .await
        .expect("health");
    assert_eq!(
        process,
        ServingStatus::Serving,
        "the process itself is alive"
    );
    // Refused at once, with what to do, well inside the caller's deadline.
    let mut call = tonic::Request::new(bread_sale(&tills[0]));
    call.set_timeout(std::time::Duration::from_secs(2));
    let refused = client.clone().sign_receipt(call).await.expect_err("down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("retry with the same operation_id"),
        "{refused:?}"
    );

    postgres.start_again().expect("Postgres starts again");
    health_becomes(receipts, SERVICE, ServingStatus::Serving).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    selling.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for seller in sellers {
        sent.extend(seller.await.expect("joins"));
    }
    let failed: Vec<Code> = sent
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| *c != Code::Ok)
        .collect();
    assert!(!failed.is_empty(), "some sales met the outage");
    assert!(
        failed
            .iter()
            .all(|c| matches!(c, Code::Unavailable | Code::DeadlineExceeded)),
        "outage answers: {failed:?}"
    );
    // The outcome of a failed call is unknown until it is retried with the same id: every one
    // is, and then every sale is in the journal exactly once.
    let mut ids = std::collections::HashSet::new();
    for (request, _) in &sent {
        let receipt = client
            .clone()
            .sign_receipt(request.clone())
            .await
            .expect("a retry after the outage")
            .into_inner()
            .receipt
            .expect("receipt");
        assert!(ids.insert(receipt.id), "one receipt per operation");
    }
    let mut journaled = 0;
    for till in &tills {
        let verdict = client
            .clone()
            .verify_journal(pb::VerifyJournalRequest {
                terminal: Some(till.clone()),
                ..Default::default()
            })
            .await
            .expect("verifies")
            .into_inner();
        assert!(verdict.ok, "{verdict:?}");
        journaled += verdict.head_number;
    }
    assert_eq!(journaled, sent.len() as u64, "every sale once, none twice");
    cluster.receipts.stop_gracefully().await;
}

/// A call that outlives the server's deadline is DEADLINE_EXCEEDED — its outcome unknown, never
/// "cancelled" — and a retry with the same operation id tells what became of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_deadline_exceeded_and_its_retry_tells_the_outcome() {
    let fx = Fixture::start_with(Backend::Postgres, "[server]\nrequest_timeout_ms = 1000\n").await;
    let Store::Postgres(pool) = &fx.store else {
        unreachable!("a Postgres fixture")
    };
    let till = unique_terminal(PLAIN_TIN);
    let first = fx.sign(bread_sale(&till)).await;
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM chain_heads WHERE pos_no = $1 FOR UPDATE")
        .bind(&till.pos_no)
        .execute(&mut *holder)
        .await
        .expect("the head locked");
    // A refund waits for the head's lock, past the server's one-second deadline.
    let request = refund(&till, &first.id, &[], "5600");
    let late = fx
        .client()
        .sign_receipt(request.clone())
        .await
        .expect_err("past the deadline");
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    assert!(late.message().contains("same operation_id"), "{late:?}");
    holder.rollback().await.expect("lock let go");
    let refunded = fx.sign(request.clone()).await;
    assert_eq!(
        fx.sign(request).await,
        refunded,
        "one refund, however often asked"
    );
    assert!(fx.verify(&till).await.ok);
}
