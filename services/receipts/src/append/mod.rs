//! The append pipeline: a receipt is given its place in its terminal's chain, signed, and
//! written with its operation row — exactly once per operation, and never forking a chain.
//!
//! A receipt that reads nothing of the journal (a sale, a zero receipt) is chained on the head
//! this process last gave its terminal and queued for group commit ([`group_commit`], Postgres);
//! the rest, and any receipt whose head moved meanwhile, is chained under the head's row lock.

mod group_commit;
mod heads;

use chrono::{DateTime, Utc};
use fiscus_domain::chain;
use fiscus_domain::keys::{self, ReceiptSigner};
use fiscus_domain::receipt::{FiscalState, Receipt};
use fiscus_domain::shift::{Effect, ShiftLines};
use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::health::ServiceHealth;
use fiscus_kit::idempotency::Operation;
use fiscus_proto::v1 as pb;
use prost::Message;

use crate::config::ProviderKind;
use crate::proto::{self, Document, Standing, Upstream};
use crate::store::{self, Appended, Entry, LineRow, NewReceipt};

pub use group_commit::GroupCommit;
use heads::{Head, Heads};

/// A receipt given its place in a chain: numbered, linked to the head before it and signed.
pub struct Chained {
    pub receipt: Receipt,
    canonical: String,
    previous: [u8; 32],
    hash: [u8; 32],
    signature: [u8; 64],
    created_at_us: i64,
    /// The shift it is journaled in, as its head carried it.
    shift_id: String,
    /// What it adds to that shift's reports.
    lines: ShiftLines,
    /// Who fiscalizes it.
    provider: ProviderKind,
}

/// What a merchant's receipts are appended under: whether they need an open shift, and who
/// fiscalizes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub shift: ShiftRule,
    pub provider: ProviderKind,
}

impl Terms {
    /// The state a receipt is journaled in: signed and done, or queued for its provider.
    pub fn first_state(self) -> FiscalState {
        if self.provider.is_upstream() {
            FiscalState::Pending
        } else {
            FiscalState::LocalSigned
        }
    }
}

/// Whether a terminal's receipts must be made in an open shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftRule {
    Required,
    Optional,
}

impl Chained {
    /// Chains `receipt` on `head`; refused when `terms` require a shift and the head has none.
    pub fn new(
        mut receipt: Receipt,
        head: Head,
        terms: Terms,
        signer: &ReceiptSigner,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        if terms.shift == ShiftRule::Required && head.shift_id.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "terminal {} has no open shift: open one with ShiftService.OpenShift",
                receipt.terminal()
            )));
        }
        let Head {
            number: last_number,
            hash: last_hash,
            shift_id,
        } = head;
        let previous: [u8; 32] = last_hash.as_slice().try_into().map_err(|_| {
            ApiError::Internal(anyhow::anyhow!(
                "chain head of {} holds a malformed hash",
                receipt.terminal()
            ))
        })?;
        receipt.number = last_number.saturating_add(1);
        let canonical = receipt.canonical();
        let hash = chain::link(&previous, &canonical);
        let canonical = String::from_utf8(canonical).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("canonical document is not UTF-8: {e}"))
        })?;
        let lines = shift_lines(&receipt, &receipt, Effect::of(receipt.kind, None))?;
        Ok(Self {
            signature: signer.sign(&hash),
            receipt,
            canonical,
            previous,
            hash,
            created_at_us: now.timestamp_micros(),
            shift_id,
            lines,
            provider: terms.provider,
        })
    }

    /// A cancellation counts, in its shift, as undoing what `original` did.
    pub fn cancelling(mut self, original: &Receipt) -> Result<Self, ApiError> {
        let effect = Effect::of(self.receipt.kind, Some(original.kind));
        self.lines = shift_lines(&self.receipt, original, effect)?;
        Ok(self)
    }

    fn first_state(&self) -> FiscalState {
        Terms {
            shift: ShiftRule::Optional,
            provider: self.provider,
        }
        .first_state()
    }

    /// The chain's head once this receipt is appended.
    fn head(&self) -> Head {
        Head {
            number: self.receipt.number,
            hash: self.hash.to_vec(),
            shift_id: self.shift_id.clone(),
        }
    }

    /// The journal entry of this receipt, answering `operation` with `response`.
    fn entry(&self, operation: &Operation, response: Vec<u8>) -> Entry {
        let r = &self.receipt;
        let totals = r.totals();
        Entry {
            receipt: NewReceipt {
                id: r.id.clone(),
                merchant_tin: r.merchant_tin.clone(),
                branch_no: r.branch_no.clone(),
                pos_no: r.pos_no.clone(),
                number: r.number,
                kind: r.kind.as_str(),
                receipt_type: r.receipt_type.as_str(),
                reference: r.reference.clone(),
                totals: [totals.amount, totals.vat, totals.city_tax].map(|m| m.minor()),
                currency: r.currency.clone(),
                original_receipt_id: (!r.original_receipt_id.is_empty())
                    .then(|| r.original_receipt_id.clone()),
                fiscal_state: self.first_state().as_str(),
                document: self.canonical.clone(),
                previous_hash: self.previous.to_vec(),
                hash: self.hash.to_vec(),
                signature: self.signature.to_vec(),
                key_id: r.key_id.clone(),
                created_at_us: self.created_at_us,
                shift_id: self.shift_id.clone(),
                lines: LineRow::all(&self.lines),
                provider: self.provider,
            },
            operation: operation.clone(),
            response,
        }
    }

    /// The API view of the receipt as journaled now.
    pub fn view(&self, standing: impl FnOnce(&mut Standing)) -> pb::Receipt {
        let mut state = Standing {
            shift_id: self.shift_id.clone(),
            fiscal_state: self.first_state(),
            state_message: String::new(),
            cancelled_by: None,
            cancelled_at_us: None,
            cancellation_reason: None,
            previous_hash: self.previous.to_vec(),
            hash: self.hash.to_vec(),
            signature: self.signature.to_vec(),
            created_at_us: self.created_at_us,
            upstream: Upstream {
                provider: self.provider,
                ..Upstream::default()
            },
        };
        standing(&mut state);
        proto::receipt(&self.receipt, &state, Document::Omitted)
    }

    /// The SignReceipt answer that carries the receipt, and its encoding (what is stored).
    fn sign_receipt_answer(&self) -> (pb::Receipt, Vec<u8>) {
        let answer = pb::SignReceiptResponse {
            receipt: Some(self.view(|_| {})),
        };
        let response = answer.encode_to_vec();
        (answer.receipt.unwrap_or_default(), response)
    }
}

/// How an append was answered.
pub enum Signed {
    /// This request's receipt was journaled.
    New(Box<pb::Receipt>),
    /// A duplicate of this operation was journaled first: its stored answer.
    Earlier(Vec<u8>),
}

/// Writes receipts into their chains: the heads this process knows, and the group-commit
/// writer on Postgres.
pub struct Appender {
    db: Database,
    cache: SharedCache,
    heads: Heads,
    /// Where lone appends go on Postgres; on SQLite each is a transaction of its own.
    group_commit: Option<GroupCommit>,
}

impl Appender {
    pub fn new(db: Database, cache: SharedCache, health: ServiceHealth) -> Self {
        Self {
            group_commit: match &db {
                Database::Postgres(pool) => {
                    Some(GroupCommit::start(pool.clone(), cache.clone(), health))
                }
                Database::Sqlite(_) => None,
            },
            heads: Heads::default(),
            db,
            cache,
        }
    }

    /// Appends a receipt that reads nothing of the journal (a sale, a zero receipt), and answers
    /// it.
    ///
    /// On Postgres a terminal's appends are pipelined: each is chained on the head this process
    /// last gave the terminal, even one still queued for commit, and queued behind it. The
    /// append moves the head only from there, so when that head never came to be — another
    /// replica appended in between, or the receipt before was left out — it is without effect.
    /// Then, when this process has no head to go on, and always on SQLite, the receipt is
    /// chained and appended under the head's row lock.
    pub async fn append_alone(
        &self,
        mut receipt: Receipt,
        terms: Terms,
        signer: &ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<Signed, ApiError> {
        // The slow paths are boxed: each is a future of kilobytes that every sale would
        // otherwise carry and move about.
        let Some(group) = &self.group_commit else {
            let (signed, _) =
                Box::pin(self.append_anew(receipt, terms, signer, now, operation)).await?;
            return Ok(signed);
        };
        let terminal = receipt.terminal();
        let slot = self.heads.slot(&terminal);
        let mut known = slot.lock().await;
        // A hint of no shift may be stale where a shift is required: the locked head tells.
        let hint = known
            .take()
            .filter(|head| terms.shift == ShiftRule::Optional || !head.shift_id.is_empty());
        if let Some(head) = hint {
            let chained = Chained::new(receipt, head, terms, signer, now)?;
            let (answer, response) = chained.sign_receipt_answer();
            let queued = group.enqueue(chained.entry(operation, response)).await?;
            let after = chained.head();
            *known = Some(after.clone());
            drop(known);
            let appended = queued.answer().await;
            if let Ok(Appended::Done) = appended {
                // The writer tells the cache.
                return Ok(Signed::New(Box::new(answer)));
            }
            known = slot.lock().await;
            // The receipts chained on this one are left out too.
            if known.as_ref() == Some(&after) {
                *known = None;
            }
            match appended {
                Ok(Appended::Taken) => {
                    drop(known);
                    return Box::pin(self.earlier(operation)).await.map(Signed::Earlier);
                }
                Err(e) => {
                    drop(known);
                    return Box::pin(self.duplicate(operation, e))
                        .await
                        .map(Signed::Earlier);
                }
                Ok(Appended::Moved | Appended::Done) => {
                    tracing::debug!(%terminal, "the head moved elsewhere; appending under its lock");
                }
            }
            // Chained again below, on the head as it now stands.
            receipt = chained.receipt;
        }
        let (signed, head) =
            Box::pin(self.append_anew(receipt, terms, signer, now, operation)).await?;
        if matches!(signed, Signed::New(_)) {
            *known = Some(head);
        }
        Ok(signed)
    }

    /// Chains a receipt on its terminal's head, locked inside `tx`, appends it and commits;
    /// answers it and the head after it.
    pub async fn append_locked(
        &self,
        mut tx: Tx,
        receipt: Receipt,
        terms: Terms,
        signer: &ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<(Signed, Head), ApiError> {
        let head = store::lock_head(&mut tx, &receipt.terminal()).await?;
        let chained = Chained::new(receipt, head, terms, signer, now)?;
        let (answer, response) = chained.sign_receipt_answer();
        let signed = match self.commit(tx, &chained, operation, &response).await? {
            None => Signed::New(Box::new(answer)),
            Some(earlier) => Signed::Earlier(earlier),
        };
        Ok((signed, chained.head()))
    }

    /// Chains `receipt` on its terminal's head, locked inside `tx`, and appends it there without
    /// committing: the caller commits it together with what else must change under the same
    /// lock, then [`Self::remember`]s the answer. `None` when the operation was journaled before.
    pub async fn append_uncommitted(
        &self,
        tx: &mut Tx,
        receipt: Receipt,
        terms: Terms,
        signer: &ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<Option<(pb::Receipt, Vec<u8>)>, ApiError> {
        let head = store::lock_head(tx, &receipt.terminal()).await?;
        let chained = Chained::new(receipt, head, terms, signer, now)?;
        let (answer, response) = chained.sign_receipt_answer();
        match store::append_in(tx, &chained.entry(operation, response.clone())).await? {
            Appended::Done => Ok(Some((answer, response))),
            Appended::Taken => Ok(None),
            Appended::Moved => Err(ApiError::Internal(anyhow::anyhow!(
                "the chain head of {} moved under its lock",
                chained.receipt.terminal()
            ))),
        }
    }

    /// Remembers, once committed, the answer of an operation appended uncommitted.
    pub async fn remember(&self, operation: &Operation, response: &[u8]) {
        operation.remember(self.cache.as_ref(), response).await;
    }

    /// [`Self::append_locked`] in a transaction of its own.
    async fn append_anew(
        &self,
        receipt: Receipt,
        terms: Terms,
        signer: &ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<(Signed, Head), ApiError> {
        let tx = self.db.begin().await?;
        self.append_locked(tx, receipt, terms, signer, now, operation)
            .await
    }

    /// Appends inside `tx`, which holds the head's lock, and commits. `None` when this
    /// request's receipt went in; the earlier answer when a duplicate operation got there first.
    pub async fn commit(
        &self,
        mut tx: Tx,
        chained: &Chained,
        operation: &Operation,
        response: &[u8],
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let entry = chained.entry(operation, response.to_vec());
        match store::append_in(&mut tx, &entry).await {
            Ok(Appended::Done) => {
                tx.commit().await?;
                operation.remember(self.cache.as_ref(), response).await;
                Ok(None)
            }
            Ok(Appended::Moved) => Err(ApiError::Internal(anyhow::anyhow!(
                "the chain head of {} moved under its lock",
                chained.receipt.terminal()
            ))),
            Ok(Appended::Taken) => {
                tx.rollback().await?;
                self.earlier(operation).await.map(Some)
            }
            Err(e) => {
                tx.rollback().await?;
                self.duplicate(operation, e).await.map(Some)
            }
        }
    }

    /// After a failed append: the earlier answer when the operation id was taken meanwhile
    /// (or `ALREADY_EXISTS`), else the failure itself.
    async fn duplicate(&self, operation: &Operation, e: sqlx::Error) -> Result<Vec<u8>, ApiError> {
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            self.earlier(operation).await
        } else {
            Err(e.into())
        }
    }

    /// The answer recorded for an operation id found taken (or `ALREADY_EXISTS`).
    async fn earlier(&self, operation: &Operation) -> Result<Vec<u8>, ApiError> {
        operation
            .lookup(&self.db, self.cache.as_ref())
            .await?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "operation_id {} was taken, yet nothing is recorded for it",
                    operation.id
                ))
            })
    }
}

fn shift_lines(
    receipt: &Receipt,
    counted: &Receipt,
    effect: Effect,
) -> Result<ShiftLines, ApiError> {
    ShiftLines::of(receipt, counted, effect).map_err(|_| {
        ApiError::Internal(anyhow::anyhow!(
            "the shift lines of receipt {} overflow",
            receipt.id
        ))
    })
}

/// The signing key's id and algorithm, as a receipt records them.
pub fn sign_with(receipt: &mut Receipt, signer: &ReceiptSigner) {
    receipt.key_id = signer.key_id().to_owned();
    receipt.algorithm = keys::ALGORITHM.to_owned();
}
