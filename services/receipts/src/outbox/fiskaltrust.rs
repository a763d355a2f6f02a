//! Delivery to fiskaltrust.Middleware, through each merchant's cash box (`POST /v2/sign`).
//!
//! **Nothing signed twice.** Every attempt of a receipt sends the identical request under the
//! same `x-operation-id` — the id of the operation that journaled it — so a repeat after a lost
//! answer is replayed by the middleware, never signed again. The request is the same on every
//! attempt because it is made from the journaled receipt alone, and the one thing that can
//! change, the late-signing flag, is fixed before the first attempt goes out (or while none has
//! reached the middleware). A request still being processed (422) is asked again later; one the
//! middleware finds under the id with another body (409, e.g. after an upgrade changed what
//! fiscus sends) is settled by asking with the receipt-request flag, which answers the receipt
//! the middleware already signed for the reference instead of signing again.
//!
//! **Failed mode and late signing** (fiskaltrust's failure scenarios). A receipt the
//! middleware could not be reached for when it was made (the till was answered PENDING) is sent,
//! in its terminal's order, with the late-signing flag; once the last of them is signed and the
//! middleware still reports late-signing mode, fiscus journals a zero receipt for the terminal
//! (see [`Closing`]), which ends it. A queue whose signing unit failed (`ftState` …0002) goes on
//! signing receipts, each carrying that state and the middleware's notice; fiscus does not
//! send a zero receipt for it: an operator does, with SignReceipt (kind ZERO), once the signing
//! unit is back — as fiskaltrust recommends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fiscus_domain::TerminalId;
use fiscus_domain::receipt::{Receipt, ReceiptKind};
use fiscus_kit::db::Database;
use fiscus_proto::v1 as pb;
use fiscus_providers::fiskaltrust::mapping::{self, CashBox, Context};
use fiscus_providers::fiskaltrust::wire::{CaseValue, ReceiptRequest, ReceiptResponse};
use fiscus_providers::fiskaltrust::{
    Credentials, FiskaltrustClient, Market, Operation, ReceiptFlags, Signed, State, StateFlags,
    StateOutcome,
};
use secrecy::SecretString;
use tokio::sync::mpsc;

use super::Outcome;
use super::store::{self, Acceptance, Claimed, FtAcceptance};
use crate::config::{OutboxConfig, Policy};
use crate::store::{self as journal, Lookup};
use crate::tokens::UpstreamTokens;

/// The namespace of the operation ids fiscus makes itself (for a receipt journaled before
/// operation ids were kept, and for the receipt-request asked after a conflict).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6669_7363_7573_2d66_742d_6f70_6964_7301);

/// A terminal whose late-signed receipts are all signed while the middleware still reports
/// late-signing mode: a zero receipt is to be journaled after receipt `after_number`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closing {
    pub terminal: TerminalId,
    pub after_number: u64,
}

/// The cash boxes of the fiskaltrust merchants.
pub struct Fiskaltrust {
    merchants: HashMap<String, Merchant>,
    tokens: Arc<UpstreamTokens>,
    /// Cash box credentials as TokenService gave them, by merchant; dropped when refused.
    credentials: Mutex<HashMap<String, Credentials>>,
    closings: mpsc::UnboundedSender<Closing>,
}

struct Merchant {
    client: FiskaltrustClient,
    market: Market,
    pos_system_id: Option<String>,
    credential: String,
    lifetime: Duration,
}

impl Fiskaltrust {
    /// The merchants' cash boxes, and where terminals to close late signing on are told.
    pub fn new(
        policy: &Policy,
        config: &OutboxConfig,
        tokens: Arc<UpstreamTokens>,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Closing>)> {
        let timeout = Duration::from_millis(config.attempt_timeout_ms);
        let mut merchants = HashMap::new();
        for (tin, settings) in policy.fiskaltrust_merchants() {
            let client = FiskaltrustClient::new(&settings.url, timeout)
                .map_err(|e| anyhow::anyhow!("configuration: merchant {tin}: {e}"))?;
            let market = Market::parse(&settings.market)
                .map_err(|e| anyhow::anyhow!("configuration: merchant {tin}: {e}"))?;
            merchants.insert(
                tin.to_owned(),
                Merchant {
                    client,
                    market,
                    pos_system_id: settings.pos_system_id.clone(),
                    credential: settings.credential.clone(),
                    lifetime: Duration::from_millis(settings.operation_lifetime_ms),
                },
            );
        }
        let (closings, closed) = mpsc::unbounded_channel();
        Ok((
            Self {
                merchants,
                tokens,
                credentials: Mutex::default(),
                closings,
            },
            closed,
        ))
    }

    /// Tells that `closing`'s terminal is to close late signing with a zero receipt.
    pub fn close(&self, closing: Closing) {
        let _ = self.closings.send(closing);
    }

    /// The market of a fiskaltrust merchant's cash box.
    pub fn market(&self, merchant_tin: &str) -> Option<Market> {
        self.merchants.get(merchant_tin).map(|m| m.market)
    }

    /// The client and credentials of a fiskaltrust merchant, for its journal.
    pub async fn journal_access(
        &self,
        merchant_tin: &str,
    ) -> Option<Result<(&FiskaltrustClient, Credentials), String>> {
        let merchant = self.merchants.get(merchant_tin)?;
        Some(
            self.credentials_of(merchant_tin, merchant)
                .await
                .map(|c| (&merchant.client, c)),
        )
    }

    /// One delivery attempt of a claimed receipt.
    pub async fn deliver(&self, db: &Database, row: &Claimed) -> Outcome {
        match self.attempt(db, row).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Failed {
                error: format!("fiscus could not read the receipt: {error}"),
                maybe_reached: false,
            },
        }
    }

    async fn attempt(&self, db: &Database, row: &Claimed) -> anyhow::Result<Outcome> {
        let Some(merchant) = self.merchants.get(&row.merchant_tin) else {
            return Ok(Outcome::Parked(format!(
                "merchant {} has no fiskaltrust configuration in this process",
                row.merchant_tin
            )));
        };
        let receipt = read(db, &row.receipt_id).await?;
        let original = match receipt.kind {
            ReceiptKind::Refund | ReceiptKind::Cancellation => {
                Some(read(db, &receipt.original_receipt_id).await?)
            }
            ReceiptKind::Sale | ReceiptKind::Zero => None,
        };
        let number = i64::try_from(receipt.number).unwrap_or(i64::MAX);
        let not_before = store::last_ft_moment(db, &receipt.terminal(), number)
            .await?
            .and_then(DateTime::<Utc>::from_timestamp_micros);
        let context = Context {
            previous_reference: original.as_ref().map(|o| o.reference.as_str()),
            voided: original
                .as_ref()
                .filter(|_| receipt.kind == ReceiptKind::Cancellation),
            late_signing: row.late_signing,
            not_before,
        };
        let credentials = match self.credentials_of(&row.merchant_tin, merchant).await {
            Ok(credentials) => credentials,
            Err(error) => {
                return Ok(Outcome::Failed {
                    error,
                    maybe_reached: false,
                });
            }
        };
        let cash_box = CashBox {
            cashbox_id: &credentials.cashbox_id,
            pos_system_id: merchant.pos_system_id.as_deref(),
            market: merchant.market,
        };
        let request = match mapping::receipt_request(&receipt, &cash_box, &context) {
            Ok(request) => request,
            Err(e) => {
                return Ok(Outcome::Parked(format!(
                    "it cannot be written as a fiskaltrust receipt: {e}"
                )));
            }
        };
        let moment = request.receipt_moment;
        let terminal_id = mapping::terminal_id(&receipt);
        let operation = Operation {
            id: operation_id(row),
            terminal_id: &terminal_id,
            pos_system_id: merchant.pos_system_id.as_deref(),
            lifetime: merchant.lifetime,
        };
        let signed = merchant
            .client
            .sign(&credentials, &operation, &request)
            .await;
        let signed = match signed {
            Ok(Signed::Conflict(problem)) => {
                tracing::warn!(receipt = %row.receipt_id, detail = %problem.detail, "fiskaltrust: the operation id is known with another request; asking for the receipt signed under its reference");
                let asked = Operation {
                    id: uuid::Uuid::new_v5(
                        &NAMESPACE,
                        format!("{}/requested", operation.id).as_bytes(),
                    ),
                    ..operation
                };
                merchant
                    .client
                    .sign(&credentials, &asked, &requested(request))
                    .await
            }
            other => other,
        };
        Ok(match signed {
            Ok(Signed::Done(response)) => Self::signed(&receipt, moment, response),
            Ok(Signed::Refused(problem)) => Outcome::Refused(format!(
                "fiskaltrust: {} ({})",
                problem.detail, problem.title
            )),
            Ok(Signed::Unauthorized(problem)) => {
                self.credentials
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&row.merchant_tin);
                Outcome::Failed {
                    error: format!(
                        "fiskaltrust refused cash box {}'s credentials: {}",
                        credentials.cashbox_id, problem.detail
                    ),
                    maybe_reached: false,
                }
            }
            Ok(Signed::InProgress(problem)) => Outcome::Busy(format!(
                "fiskaltrust is still processing it: {}",
                problem.detail
            )),
            Ok(Signed::Conflict(problem)) => Outcome::Parked(format!(
                "fiskaltrust knows its operation id with another request and answered the \
                 receipt request with a conflict too ({}): check the receipt in the fiskaltrust \
                 portal, then ResendPending",
                problem.detail
            )),
            Err(undelivered) => Outcome::Failed {
                error: undelivered.error.to_string(),
                maybe_reached: undelivered.maybe_created,
            },
        })
    }

    /// What an answer of the middleware makes of the receipt.
    fn signed(receipt: &Receipt, moment: DateTime<Utc>, response: ReceiptResponse) -> Outcome {
        let state = State(response.state.0);
        let flags = match state.outcome() {
            StateOutcome::Success(flags) => flags,
            StateOutcome::Error | StateOutcome::Fail => {
                let notices: Vec<String> = response
                    .signatures
                    .iter()
                    .map(|s| format!("{}: {}", s.caption, s.data))
                    .collect();
                return Outcome::Refused(format!(
                    "fiskaltrust did not sign it (ftState {:#018x}): {}",
                    state.0,
                    notices.join("; ")
                ));
            }
        };
        // Late signing goes on until a zero receipt: one is due once this terminal has
        // nothing left to sign (the outbox looks, after recording this one).
        let closing = (flags.contains(StateFlags::LATE_SIGNING)
            && receipt.kind != ReceiptKind::Zero)
            .then(|| Closing {
                terminal: receipt.terminal(),
                after_number: receipt.number,
            });
        let signatures = serde_json::to_string(&response.signatures).unwrap_or_default();
        Outcome::Accepted(Acceptance {
            upstream_id: Some(response.receipt_identification),
            fiskaltrust: Some(Box::new(FtAcceptance {
                queue_id: response.queue_id,
                queue_item_id: response.queue_item_id,
                cashbox_identification: response.cash_box_identification,
                state: state.0,
                signatures,
                moment_us: moment.timestamp_micros(),
                closing,
            })),
            ..Acceptance::default()
        })
    }

    /// The cash box credentials of a merchant, from TokenService once, then kept.
    async fn credentials_of(
        &self,
        merchant_tin: &str,
        merchant: &Merchant,
    ) -> Result<Credentials, String> {
        if let Some(known) = self
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(merchant_tin)
        {
            return Ok(known.clone());
        }
        let answer = self
            .tokens
            .get(
                pb::Provider::Fiskaltrust,
                merchant_tin,
                &merchant.credential,
            )
            .await
            .map_err(|status| {
                format!(
                    "no fiskaltrust cash box credential {:?} for merchant {merchant_tin} from the \
                     token service: {}",
                    merchant.credential,
                    status.message()
                )
            })?;
        let credentials = Credentials {
            cashbox_id: answer.cashbox_id,
            access_token: SecretString::from(answer.access_token),
        };
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(merchant_tin.to_owned(), credentials.clone());
        Ok(credentials)
    }
}

/// The receipt a journal row holds.
async fn read(db: &Database, id: &str) -> anyhow::Result<Receipt> {
    journal::find(db, &Lookup::Id(id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("receipt {id} is not in the journal"))?
        .receipt()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The idempotency key of a receipt's attempts: the operation that journaled it.
fn operation_id(row: &Claimed) -> uuid::Uuid {
    uuid::Uuid::parse_str(&row.operation_id)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&NAMESPACE, row.receipt_id.as_bytes()))
}

/// `request` asking for the receipt already signed under its reference, if there is one.
fn requested(mut request: ReceiptRequest) -> ReceiptRequest {
    request.receipt_case = CaseValue(request.receipt_case.0 | ReceiptFlags::RECEIPT_REQUESTED.0);
    request
}
