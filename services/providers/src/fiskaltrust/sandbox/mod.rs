//! The fiskaltrust sandbox: a local fiskaltrust.Middleware serving the POS System API v2
//! (`POST /v2/sign`, `GET /v2/journal/{queueId}/{type}`) for cash boxes of any market, one
//! queue each.
//!
//! What it models, beyond the shape of the answers:
//!
//! - authentication by `x-cashbox-id` and `x-cashbox-accesstoken` (401 otherwise); the other
//!   headers checked as the API defines them (`x-operation-id` a UUID, `x-terminal-id` the
//!   body's `cbTerminalID`, `x-operation-lifetime` a positive number of milliseconds);
//! - every refusal a Problem (`{title, status, detail}`) whose detail names the field at fault
//!   (`cbChargeItems[1].VATRate: …`), a body that cannot be read included;
//! - the rules a queue checks: `ftCashBoxID` the authenticated cash box; every case value a v2
//!   case of the cash box's market and the receipt case a known one; `VATRate` the market's rate
//!   of the charge item case's VAT category (Italy, Germany, Austria; other markets unchecked);
//!   negative charge items only on a refund or void, or flagged refund, void or discount;
//!   charge items, pay items and `cbReceiptAmount` summing to the same amount, exactly (decimals
//!   read from the JSON number's text); no items on zero receipts, closings and
//!   start/stop receipts, at least one charge item on sales and invoices; a refund or void
//!   naming a receipt of this queue; a buyer on B2B (and B2G) invoices and with the
//!   receiver-is-business flag; late-signed receipts of a terminal in the order they were made;
//! - idempotency per cash box by `x-operation-id` (compared as UUIDs): the identical body (as
//!   JSON, key order aside) replays the first answer byte for byte, another body is 409, a
//!   repeat while the first is processed is 422 ([`FiskaltrustSandbox::set_processing_time`]
//!   makes processing take a while); the receipt-requested flag answers the receipt already
//!   signed for the terminal's `cbReceiptReference`, and signs when there is none;
//! - numbering per queue, serial: `ftQueueRow` from 1, `ftReceiptIdentification`
//!   `ft{row in hex}#{the terminal's receipt count}`, a fresh `ftQueueItemID`, and a receipt
//!   journal chained by SHA-256 (each hash over the previous one and the request written as
//!   JSON in its field order, so the same request always hashes the same), whose hash is the
//!   QR signature's data;
//! - the modes of fiskaltrust's failure scenarios, each change an action journal entry:
//!   late-signing mode, entered by a late-signed receipt (state flag `0x8`, a notice on each
//!   late-signed receipt) and left by a zero receipt; failed mode, entered by the first receipt
//!   after the signature creation unit failed ([`FiskaltrustSandbox::set_scu_failed`]; state flag
//!   `0x2`, a failure notice instead of the QR signature, receipts still numbered), and left
//!   only by a zero receipt once the unit works again (a circuit breaker), whose answer says how
//!   many receipts were answered in failed mode;
//! - journals streamed as a JSON array, a few entries per chunk: receipt journal, action
//!   journal, queue items (`?from=<row>` starts at a queue row).
//!
//! Not modelled: `x-operation-lifetime` is checked but not enforced (an operation never
//! expires, nor does its stored answer); `x-possystem-id`; markets' own rules beyond VAT rates
//! (Italy's RT printer, Germany's TSE, Austria's RKSV signatures: the QR signature is the
//! receipt journal's hash only); daily-closing reminders; `/v2/configuration`, payments and the
//! echo endpoint; training receipts have fiscal effect here like any other.

mod journal;
mod sign;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::cases::{Market, StateFlags};
use super::wire::{ReceiptRequest, ReceiptResponse};
use super::{Problem, paths};
use crate::sandbox::{self, Faults, SandboxError, Server, lock};

const SANDBOX: &str = "fiskaltrust";

/// fiscus's dev cash box (`make run`): its id, access token and queue.
pub const DEV_CASHBOX_ID: &str = "6a0b6c4e-2f4d-4c5e-9a57-3f1d2b7e8c01";
pub const DEV_ACCESS_TOKEN: &str = "ZmlzY3VzLWRldi1jYXNoYm94LWFjY2Vzcy10b2tlbg==";
pub const DEV_QUEUE_ID: &str = "3c9e1f27-8b4a-4d2e-b6f0-5a7d9c2e4b13";

/// What the sandbox knows: where to listen and the cash boxes it serves.
#[derive(Clone, Debug)]
pub struct FiskaltrustSandboxConfig {
    /// Where to listen; loopback on a free port by default.
    pub bind: SocketAddr,
    pub cash_boxes: Vec<FiskaltrustCashBox>,
}

/// A cash box, as the fiskaltrust portal configures it: its credentials, market and its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiskaltrustCashBox {
    /// A UUID: `x-cashbox-id` and the body's `ftCashBoxID`.
    pub cashbox_id: String,
    /// `x-cashbox-accesstoken`.
    pub access_token: String,
    /// The country whose case values and VAT rates the queue takes.
    pub market: Market,
    /// A UUID: `ftQueueID` of every answer, and the journal's path.
    pub queue_id: String,
    /// `ftCashBoxIdentification` of every answer, e.g. `IT-SCU-0001`.
    pub cash_box_identification: String,
}

impl Default for FiskaltrustSandboxConfig {
    /// The dev cash box, in Italy.
    fn default() -> Self {
        FiskaltrustSandboxConfig {
            bind: sandbox::LOOPBACK_ANY_PORT,
            cash_boxes: vec![FiskaltrustCashBox {
                cashbox_id: DEV_CASHBOX_ID.to_owned(),
                access_token: DEV_ACCESS_TOKEN.to_owned(),
                market: Market::parse("IT").expect("IT is a market code"),
                queue_id: DEV_QUEUE_ID.to_owned(),
                cash_box_identification: "IT-SCU-0001".to_owned(),
            }],
        }
    }
}

impl FiskaltrustSandboxConfig {
    pub fn with_cash_box(mut self, cash_box: FiskaltrustCashBox) -> Self {
        self.cash_boxes.push(cash_box);
        self
    }
}

/// A receipt a queue signed: the request as received and the answer it gave.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedReceipt {
    pub cashbox_id: String,
    /// `x-operation-id` of the call that signed it.
    pub operation_id: Uuid,
    pub queue_row: u64,
    pub request: ReceiptRequest,
    pub response: ReceiptResponse,
}

/// One queue item: a signed receipt and the bytes of its answer (replayed as they are).
struct QueueItem {
    receipt: SignedReceipt,
    answer: Bytes,
}

/// What an operation id stands for in its cash box.
enum OperationState {
    /// Its first request is being processed.
    InFlight,
    /// Answered: the request's body (as JSON) and the answer's bytes.
    Done {
        body: serde_json::Value,
        answer: Bytes,
    },
}

/// A receipt journal entry: every receipt, hashed and chained.
#[derive(Clone, Debug, serde::Serialize)]
struct ReceiptJournalEntry {
    #[serde(rename = "ftReceiptJournalId")]
    id: Uuid,
    #[serde(rename = "ftQueueId")]
    queue_id: String,
    #[serde(rename = "ftQueueItemId")]
    queue_item_id: String,
    /// The queue row of its receipt.
    #[serde(rename = "ftReceiptNumber")]
    number: u64,
    #[serde(rename = "ftReceiptMoment")]
    moment: DateTime<Utc>,
    /// The sum of the charge items.
    #[serde(rename = "ftReceiptTotal")]
    total: crate::wire::WireMoney,
    /// Base64 of SHA-256(previous hash ‖ the request's JSON).
    #[serde(rename = "ftReceiptHash")]
    hash: String,
}

/// An action journal entry: a mode change.
#[derive(Clone, Debug, serde::Serialize)]
struct ActionJournalEntry {
    #[serde(rename = "ftActionJournalId")]
    id: Uuid,
    #[serde(rename = "ftQueueId")]
    queue_id: String,
    /// The queue item whose processing changed the mode.
    #[serde(rename = "ftQueueItemId")]
    queue_item_id: String,
    #[serde(rename = "Moment")]
    moment: DateTime<Utc>,
    /// 1 when a failure mode is entered, 0 when one is left.
    #[serde(rename = "Priority")]
    priority: i32,
    /// The `ftState` flag of the mode, market-prefixed, in hex (`0x4954200000000002`).
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
    /// The queue row of the item, for `?from=`.
    #[serde(skip)]
    row: u64,
}

/// A queue's books: items, journals, modes and operations. Held locked while a receipt is
/// checked and numbered, so a queue signs one receipt at a time.
#[derive(Default)]
struct Book {
    /// By queue row − 1.
    items: Vec<QueueItem>,
    receipt_journal: Vec<ReceiptJournalEntry>,
    action_journal: Vec<ActionJournalEntry>,
    /// The last receipt journal hash (empty before the first receipt).
    chain: Vec<u8>,
    /// Receipts signed per `cbTerminalID`.
    per_terminal: HashMap<String, u64>,
    /// (`cbTerminalID`, `cbReceiptReference`) → the first item signed for it.
    by_reference: HashMap<(String, String), usize>,
    /// Every `cbReceiptReference` signed, whatever the terminal (refunds name one).
    references: HashSet<String>,
    /// The latest `cbReceiptMoment` late-signed per terminal.
    late_moments: HashMap<String, DateTime<Utc>>,
    late_signing: bool,
    /// Failed mode (the circuit breaker is open).
    failed: bool,
    /// The `ftReceiptIdentification`s answered in failed mode since it was entered.
    without_scu: Vec<String>,
    operations: HashMap<Uuid, OperationState>,
}

impl Book {
    fn flags(&self) -> StateFlags {
        let mut flags = StateFlags::NONE;
        if self.failed {
            flags = flags | StateFlags::SCU_OUT_OF_SERVICE;
        }
        if self.late_signing {
            flags = flags | StateFlags::LATE_SIGNING;
        }
        flags
    }
}

struct Queue {
    cash_box: FiskaltrustCashBox,
    cashbox_uuid: Uuid,
    queue_uuid: Uuid,
    book: Mutex<Book>,
}

/// `reject_next`: refusals to give without signing.
#[derive(Default)]
struct Rejections {
    left: u32,
    detail: String,
}

struct FiskaltrustState {
    queues: Vec<Queue>,
    processing_nanos: AtomicU64,
    scu_failed: AtomicBool,
    rejections: Mutex<Rejections>,
    signed: AtomicU64,
    replays: AtomicU64,
    conflicts: AtomicU64,
    refusals: AtomicU64,
    in_flight_refusals: AtomicU64,
}

impl FiskaltrustState {
    /// The queue of the cash box `id` names (any spelling of its UUID).
    fn queue_of(&self, id: &str) -> Option<&Queue> {
        let id = Uuid::parse_str(id.trim()).ok()?;
        self.queues.iter().find(|q| q.cashbox_uuid == id)
    }

    fn processing(&self) -> Duration {
        Duration::from_nanos(self.processing_nanos.load(Ordering::SeqCst))
    }

    /// One of `reject_next`'s refusals, if any are left.
    fn take_rejection(&self) -> Option<String> {
        let mut rejections = lock(&self.rejections);
        rejections.left = rejections.left.checked_sub(1)?;
        Some(rejections.detail.clone())
    }
}

/// The queue of the cash box the request's credentials name; otherwise the detail of the 401.
fn authenticate<'s>(
    state: &'s FiskaltrustState,
    headers: &HeaderMap,
) -> Result<&'s Queue, &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(token)) = (
        header(super::headers::CASHBOX_ID),
        header(super::headers::CASHBOX_ACCESS_TOKEN),
    ) else {
        return Err("x-cashbox-id and x-cashbox-accesstoken: both are required");
    };
    state
        .queue_of(id)
        .filter(|queue| queue.cash_box.access_token == token)
        .ok_or("x-cashbox-id, x-cashbox-accesstoken: no cash box with this id and access token")
}

/// A Problem answer: `{title, status, detail}` as JSON.
fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    (
        status,
        axum::Json(Problem {
            title: status.canonical_reason().unwrap_or_default().to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }),
    )
        .into_response()
}

/// What a request told to fail answers (`fail_next`).
fn unavailable() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the middleware is temporarily unavailable",
    )
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such resource")
}

/// A running fiskaltrust sandbox and its test controls. Dropping it stops the server.
pub struct FiskaltrustSandbox {
    server: Server,
    state: Arc<FiskaltrustState>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for FiskaltrustSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiskaltrustSandbox")
            .field("base_url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl FiskaltrustSandbox {
    /// Binds `config.bind` and serves on the current Tokio runtime.
    pub async fn start(config: FiskaltrustSandboxConfig) -> Result<Self, SandboxError> {
        let mut queues: Vec<Queue> = Vec::with_capacity(config.cash_boxes.len());
        for cash_box in config.cash_boxes {
            let uuid = |what: &str, text: &str| {
                Uuid::parse_str(text).map_err(|e| {
                    config_error(format!(
                        "cash box {}: {what} {text:?}: {e}",
                        cash_box.cashbox_id
                    ))
                })
            };
            let cashbox_uuid = uuid("cashbox_id", &cash_box.cashbox_id)?;
            let queue_uuid = uuid("queue_id", &cash_box.queue_id)?;
            if cash_box.access_token.is_empty() {
                return Err(config_error(format!(
                    "cash box {}: an empty access token",
                    cash_box.cashbox_id
                )));
            }
            if queues
                .iter()
                .any(|q| q.cashbox_uuid == cashbox_uuid || q.queue_uuid == queue_uuid)
            {
                return Err(config_error(format!(
                    "cash box {} or its queue {} listed twice",
                    cash_box.cashbox_id, cash_box.queue_id
                )));
            }
            queues.push(Queue {
                cash_box,
                cashbox_uuid,
                queue_uuid,
                book: Mutex::default(),
            });
        }
        let state = Arc::new(FiskaltrustState {
            queues,
            processing_nanos: AtomicU64::new(0),
            scu_failed: AtomicBool::new(false),
            rejections: Mutex::default(),
            signed: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            in_flight_refusals: AtomicU64::new(0),
        });
        let (shutdown, stopping) = Server::shutdown_channel();
        let faults = Arc::new(Faults::new(unavailable, stopping));
        let router = Router::new()
            .route(paths::SIGN, post(sign::sign))
            .route(paths::JOURNAL, get(journal::journal))
            .fallback(not_found)
            // Outermost: every request is counted, whatever it is answered.
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                sandbox::inject_faults,
            ))
            .with_state(state.clone());
        let server = Server::start(SANDBOX, config.bind, router, shutdown).await?;
        Ok(FiskaltrustSandbox {
            server,
            state,
            faults,
        })
    }

    /// `http://127.0.0.1:PORT`, below which `/v2/…` lies: the base URL of
    /// [`crate::fiskaltrust::FiskaltrustClient::new`].
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Requests received on any path, whatever they were answered (failures included).
    pub fn requests(&self) -> u64 {
        self.faults.requests()
    }

    /// The W3C `traceparent` header of the last request, when it carried one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.faults.last_traceparent()
    }

    /// Down: the sandbox stops listening, so connections are refused (returns once they are);
    /// up: it listens again on the same port. Queues are kept.
    pub async fn set_down(&self, down: bool) -> Result<(), SandboxError> {
        self.server.set_down(down).await
    }

    /// The next `n` requests answer HTTP 503 (a Problem) without being handled.
    pub fn fail_next(&self, n: u32) {
        self.faults.fail_next(n);
    }

    /// The next `n` requests are handled (a receipt is signed) but never answered: the caller
    /// times out not knowing.
    pub fn drop_next(&self, n: u32) {
        self.faults.drop_next(n);
    }

    /// From now on each request is handled and its answer lost with probability `ratio`.
    pub fn set_drop_ratio(&self, ratio: f64) {
        self.faults.set_drop_ratio(ratio);
    }

    /// Every request waits `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.set_latency(latency);
    }

    /// Every sign call holds its operation id in flight for `processing` before it signs: a
    /// repeat of the id meanwhile is answered 422.
    pub fn set_processing_time(&self, processing: Duration) {
        let nanos = u64::try_from(processing.as_nanos()).unwrap_or(u64::MAX);
        self.state.processing_nanos.store(nanos, Ordering::SeqCst);
    }

    /// The signature creation unit fails (`true`) or works again (`false`). A queue enters
    /// failed mode with its next receipt, and leaves it only with a zero receipt while the unit
    /// works.
    pub fn set_scu_failed(&self, failed: bool) {
        self.state.scu_failed.store(failed, Ordering::SeqCst);
    }

    /// The next `n` sign calls (once authenticated) are refused 400 with `detail`, signing
    /// nothing.
    pub fn reject_next(&self, n: u32, detail: impl Into<String>) {
        *lock(&self.state.rejections) = Rejections {
            left: n,
            detail: detail.into(),
        };
    }

    /// Receipts signed, in failed mode too; replays and receipt requests answered from the
    /// queue are not.
    pub fn signed(&self) -> u64 {
        self.state.signed.load(Ordering::SeqCst)
    }

    /// Answers given from a queue's store: repeats of an operation, receipt requests that found
    /// their receipt.
    pub fn replays(&self) -> u64 {
        self.state.replays.load(Ordering::SeqCst)
    }

    /// Operation ids repeated with another body (409).
    pub fn conflicts(&self) -> u64 {
        self.state.conflicts.load(Ordering::SeqCst)
    }

    /// Sign calls refused as they stand (400), `reject_next`'s included.
    pub fn refusals(&self) -> u64 {
        self.state.refusals.load(Ordering::SeqCst)
    }

    /// Repeats of an operation id while its first request was processed (422).
    pub fn in_flight_refusals(&self) -> u64 {
        self.state.in_flight_refusals.load(Ordering::SeqCst)
    }

    /// Every receipt signed, queue by queue (in configuration order), each in row order.
    pub fn receipts(&self) -> Vec<SignedReceipt> {
        self.state
            .queues
            .iter()
            .flat_map(|queue| {
                lock(&queue.book)
                    .items
                    .iter()
                    .map(|item| item.receipt.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The current `ftState` of the queue of cash box `cashbox_id`: the market's prefix and
    /// the flags of its modes; `None` for an unknown cash box.
    pub fn state_of(&self, cashbox_id: &str) -> Option<u64> {
        let queue = self.state.queue_of(cashbox_id)?;
        let flags = lock(&queue.book).flags();
        Some(queue.cash_box.market.prefix() | flags.0)
    }

    /// Stops the server and waits for answers in flight.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn config_error(detail: String) -> SandboxError {
    SandboxError::Config {
        sandbox: SANDBOX,
        detail,
    }
}
