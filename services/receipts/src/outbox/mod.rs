//! The outbox: store-and-forward delivery of receipts to their providers.
//!
//! A receipt of an upstream merchant is journaled PENDING with a row in `outbox`, in the same
//! transaction (see the journal's append). Every replica runs one [`Outbox`] worker, which claims
//! due rows in a short transaction (`FOR UPDATE SKIP LOCKED` on Postgres), delivers them with no
//! transaction open, and records each outcome only while its claim still holds — so any number
//! of replicas drain one queue and no receipt is delivered by two at once. A row is due only when
//! no earlier row of its terminal is still live: a terminal's receipts reach the provider in
//! their order, and a refund or cancellation finds its original's document there first.
//!
//! Outcomes: accepted (the row goes, the receipt shows the provider's data); refused (the
//! receipt is REJECTED with the provider's message, parked as a dead letter, not retried);
//! unreachable or indeterminate (retried with capped exponential backoff and jitter, and parked
//! as a dead letter once older than `dead_letter_after_secs`); or undecidable without a person
//! (parked, still PENDING, with why). ResendPending puts parked receipts back.
//!
//! SignReceipt waits for the first outcome of its receipt up to `answer_within_ms`; when the
//! provider's last attempt found it unreachable it does not wait at all: the till never stops.

mod ebarimt;
mod fiskaltrust;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::BackoffBuilder;
use chrono::Utc;
use fiscus_domain::receipt::FiscalState;
use fiscus_kit::db::Database;
use fiscus_kit::server::Shutdown;
use fiscus_proto::v1 as pb;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::config::{OutboxConfig, Policy, ProviderKind};
use crate::metrics;
use crate::proto::{self, ToPb};
use crate::tokens::UpstreamTokens;
use crate::watch::Watchers;
pub use ebarimt::Ebarimt;
pub use fiskaltrust::{Closing, Fiskaltrust};
use store::{Acceptance, Claimed};

/// What one delivery attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Acceptance),
    /// The provider refused the receipt: REJECTED with its message, not retried.
    Refused(String),
    /// It did not get through; `maybe_reached`: it may have reached the provider.
    Failed {
        error: String,
        maybe_reached: bool,
    },
    /// The provider answered that it is still at this receipt (fiskaltrust's 422): retried like
    /// a failure whose request reached it, but the provider is reachable.
    Busy(String),
    /// Nothing can be sent without a person deciding (why): a dead letter, still PENDING.
    Parked(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "accepted",
            Outcome::Refused(_) => "refused",
            Outcome::Failed { .. } => "failed",
            Outcome::Busy(_) => "busy",
            Outcome::Parked(_) => "parked",
        }
    }
}

pub struct Outbox {
    db: Database,
    config: OutboxConfig,
    ebarimt: Ebarimt,
    fiskaltrust: Fiskaltrust,
    /// This process's claims.
    claim: String,
    kick: Notify,
    /// SignReceipt calls waiting for a receipt's first outcome.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Merchants whose provider the last attempt found unreachable.
    unreachable: Mutex<HashSet<String>>,
    watchers: Arc<Watchers>,
    /// Asked to stop: deliveries under way finish, and take no next receipt.
    stopping: Shutdown,
}

impl Outbox {
    /// The outbox of `policy`'s merchants, and its worker, which stops with `shutdown`; with
    /// the terminals whose late signing is to be closed by a zero receipt, as they come.
    pub fn start(
        db: Database,
        policy: &Policy,
        tokens: Arc<UpstreamTokens>,
        watchers: Arc<Watchers>,
        shutdown: Shutdown,
    ) -> anyhow::Result<(Arc<Self>, tokio::sync::mpsc::UnboundedReceiver<Closing>)> {
        let config = policy.outbox().clone();
        let (fiskaltrust, closings) = Fiskaltrust::new(policy, &config, tokens)?;
        let outbox = Arc::new(Self {
            ebarimt: Ebarimt::new(policy, &config)?,
            fiskaltrust,
            db,
            config,
            claim: uuid::Uuid::new_v4().to_string(),
            kick: Notify::new(),
            waiters: Mutex::default(),
            unreachable: Mutex::default(),
            watchers,
            stopping: shutdown.clone(),
        });
        tokio::spawn(Arc::clone(&outbox).run(shutdown.clone()));
        tokio::spawn(Arc::clone(&outbox).upkeep(shutdown));
        Ok((outbox, closings))
    }

    pub fn ebarimt(&self) -> &Ebarimt {
        &self.ebarimt
    }

    pub fn fiskaltrust(&self) -> &Fiskaltrust {
        &self.fiskaltrust
    }

    /// Tells the worker there is something new to deliver.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Waits, at most `answer_within_ms`, for the first delivery attempt of a receipt just
    /// journaled, telling the worker of it; answers whether an attempt was recorded meanwhile
    /// (then the receipt's state may have changed). It neither waits nor tells when its
    /// provider was found unreachable last time: the worker's next poll takes it if it is first
    /// in its terminal's line, and a claim per receipt signed during an outage would mostly
    /// find receipts waiting behind their terminal's earlier ones.
    pub async fn first_attempt(&self, receipt: &pb::Receipt) -> bool {
        let merchant = receipt
            .terminal
            .as_ref()
            .map(|t| t.merchant_tin.clone())
            .unwrap_or_default();
        if self
            .unreachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&merchant)
        {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(receipt.id.clone())
            .or_default()
            .push(tx);
        self.kick();
        let within = Duration::from_millis(self.config.answer_within_ms);
        let attempted = matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())));
        // Answered or not, nobody waits for it any more.
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&receipt.id);
        attempted
    }

    /// Claims due receipts as deliveries finish and new ones come, until shutdown.
    async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut deliveries = JoinSet::new();
        let poll = Duration::from_millis(self.config.poll_ms.max(10));
        loop {
            let free = slots.available_permits();
            if free > 0 {
                let now = now_us();
                let until = now.saturating_add(millis_us(self.config.claim_ms));
                match store::claim(&self.db, &self.claim, now, until, free).await {
                    Ok(claimed) => {
                        for row in claimed {
                            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                                break;
                            };
                            let outbox = Arc::clone(&self);
                            deliveries.spawn(async move {
                                outbox.deliver(row).await;
                                drop(slot);
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "outbox: cannot claim receipts"),
                }
            }
            tokio::select! {
                () = self.kick.notified() => {}
                () = tokio::time::sleep(poll) => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
                () = shutdown.requested() => break,
            }
        }
        // Deliveries under way finish (each is bounded by the attempt timeout).
        while deliveries.join_next().await.is_some() {}
    }

    /// Delivers a claimed receipt and, each time one leaves the queue, its terminal's next one
    /// if it is due: a terminal's line moves at the provider's pace, not at the claim's.
    async fn deliver(&self, mut row: Claimed) {
        while self.attempt(&row).await && !self.stopping.is_requested() {
            let now = now_us();
            let until = now.saturating_add(millis_us(self.config.claim_ms));
            match store::claim_next(&self.db, &self.claim, &row, now, until).await {
                Ok(Some(next)) => row = next,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "outbox: cannot claim a terminal's next receipt; the next claim takes it");
                    return;
                }
            }
        }
    }

    /// One attempt: the provider's answer recorded, the waiters and watchers told. Answers
    /// whether the receipt left the queue (accepted, or parked as a dead letter).
    async fn attempt(&self, row: &Claimed) -> bool {
        let attempt_us = now_us();
        let provider = ProviderKind::parse(&row.provider);
        let outcome = match provider {
            Some(ProviderKind::Ebarimt) => self.ebarimt.deliver(&self.db, row).await,
            Some(ProviderKind::Fiskaltrust) => self.fiskaltrust.deliver(&self.db, row).await,
            _ => Outcome::Parked(format!(
                "no provider {:?} is configured in this process",
                row.provider
            )),
        };
        let label = provider.map_or("unknown", ProviderKind::label);
        metrics::delivered(label, outcome.label());
        let back = {
            let mut unreachable = self
                .unreachable
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &outcome {
                Outcome::Failed { .. } => {
                    unreachable.insert(row.merchant_tin.clone());
                    false
                }
                Outcome::Accepted(_) | Outcome::Refused(_) | Outcome::Busy(_) => {
                    unreachable.remove(&row.merchant_tin)
                }
                Outcome::Parked(_) => false,
            }
        };
        let recorded = self.record(row, &outcome, attempt_us).await;
        if back {
            // The provider answers again: the merchant's receipts backing off since the outage
            // are due now, not each at the end of its own (by now long) delay.
            match store::due_now(&self.db, &row.merchant_tin, now_us()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(merchant = %row.merchant_tin, receipts = n, "outbox: the provider answers again; delivering what waited");
                    self.kick();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "outbox: cannot make the waiting receipts due")
                }
            }
        }
        match &recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(receipt = %row.receipt_id, "outbox: the claim ran out before the answer came; another attempt decides")
            }
            Err(error) => {
                tracing::warn!(receipt = %row.receipt_id, %error, "outbox: cannot record an attempt; it is repeated when the claim runs out")
            }
        }
        let (state, message) = match &outcome {
            Outcome::Accepted(_) => (FiscalState::Accepted, String::new()),
            Outcome::Refused(m) => (FiscalState::Rejected, m.clone()),
            Outcome::Failed { error, .. } | Outcome::Busy(error) => {
                (FiscalState::Pending, error.clone())
            }
            Outcome::Parked(m) => (FiscalState::Pending, m.clone()),
        };
        if let (Ok(true), Outcome::Accepted(acceptance)) = (&recorded, &outcome)
            && let Some(closing) = acceptance
                .fiskaltrust
                .as_ref()
                .and_then(|f| f.closing.clone())
        {
            match store::live_on_terminal(&self.db, &row.merchant_tin, &row.branch_no, &row.pos_no)
                .await
            {
                Ok(0) => self.fiskaltrust.close(closing),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "outbox: cannot tell whether late signing can be closed; the next late-signed receipt tells")
                }
            }
        }
        if matches!(recorded, Ok(true)) {
            self.watchers.announce(pb::ReceiptEvent {
                receipt_id: row.receipt_id.clone(),
                state: state.to_pb().into(),
                message,
                timestamp: Some(proto::timestamp(Utc::now())),
            });
        }
        let waiting = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&row.receipt_id);
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(());
        }
        matches!(recorded, Ok(true))
            && !matches!(outcome, Outcome::Failed { .. } | Outcome::Busy(_))
    }

    async fn record(
        &self,
        row: &Claimed,
        outcome: &Outcome,
        attempt_us: i64,
    ) -> Result<bool, sqlx::Error> {
        let now = now_us();
        match outcome {
            Outcome::Accepted(acceptance) => {
                let retention = secs_us(self.config.printed_data_retention_secs);
                store::accept(
                    &self.db,
                    row,
                    &self.claim,
                    acceptance,
                    now,
                    now.saturating_add(retention),
                )
                .await
            }
            Outcome::Refused(message) => {
                store::park(&self.db, row, &self.claim, message, true).await
            }
            Outcome::Parked(message) => {
                store::park(&self.db, row, &self.claim, message, false).await
            }
            Outcome::Failed {
                error,
                maybe_reached,
            } => self.retry(row, error, *maybe_reached, attempt_us).await,
            Outcome::Busy(message) => self.retry(row, message, true, attempt_us).await,
        }
    }

    /// Schedules another attempt of a receipt its attempt did not settle, after the backoff.
    async fn retry(
        &self,
        row: &Claimed,
        error: &str,
        maybe_reached: bool,
        attempt_us: i64,
    ) -> Result<bool, sqlx::Error> {
        let now = now_us();
        let delay = self.backoff(row.attempts);
        let dead_before = now.saturating_sub(secs_us(self.config.dead_letter_after_secs));
        store::retry(
            &self.db,
            row,
            &self.claim,
            error,
            maybe_reached,
            attempt_us,
            now.saturating_add(duration_us(delay)),
            dead_before,
        )
        .await
    }

    /// The delay before attempt `attempts + 1`: exponential from `retry_min_ms`, capped at
    /// `retry_max_ms`, with jitter so that many receipts do not come back at once.
    fn backoff(&self, attempts: i32) -> Duration {
        let max = Duration::from_millis(self.config.retry_max_ms);
        backon::ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(self.config.retry_min_ms))
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(usize::try_from(attempts.saturating_sub(1)).unwrap_or(0))
            .unwrap_or(max)
            .min(max)
    }

    /// Every few seconds: the outbox's gauges, and the erasure of printed-only data whose
    /// retention has passed.
    async fn upkeep(self: Arc<Self>, mut shutdown: Shutdown) {
        let every = Duration::from_secs(5);
        loop {
            match store::depths(&self.db).await {
                Ok(depths) => {
                    let now = now_us();
                    metrics::outbox(&depths, now);
                }
                Err(error) => tracing::debug!(%error, "outbox: cannot measure the queue"),
            }
            if let Err(error) = store::erase_printed(&self.db, now_us()).await {
                tracing::warn!(%error, "outbox: cannot erase expired lottery and QR data");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.requested() => break,
            }
        }
    }
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn millis_us(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn secs_us(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
