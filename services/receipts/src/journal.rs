//! The receipt journal: signing, cancelling and verifying receipts of per-terminal hash chains.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fiscus_domain::chain::{self, Problem, StoredLink, Verifier};
use fiscus_domain::tax::line_amounts;
use fiscus_domain::{Money, Quantity, Rate, keys};
use fiscus_kit::cache::SharedCache;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::idempotency::Operation;
use fiscus_kit::{ApiError, Violation};
use fiscus_proto::v1 as pb;
use prost::Message;
use tokio::sync::broadcast;

use crate::document::{self, Document, Item, Named};
use crate::group_commit::GroupCommit;
use crate::heads::{Head, Heads};
use crate::signers::Signers;
use crate::store::{self, Appended, Entry, Lookup, NewReceipt, StoredReceipt};
use crate::validate::{self, Draft, Original, Policy, TerminalId, Violations};

pub struct Journal {
    pub db: Database,
    pub cache: SharedCache,
    pub policy: Policy,
    signers: Signers,
    heads: Heads,
    /// Where lone appends go on Postgres; on SQLite each is a transaction of its own.
    group_commit: Option<GroupCommit>,
    events: broadcast::Sender<pb::ReceiptEvent>,
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, ApiError> {
    M::decode(bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored response does not decode: {e}")))
}

fn corrupt(e: serde_json::Error) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "stored receipt document does not parse: {e}"
    ))
}

/// A receipt given its place in a chain: numbered, linked to the head before it and signed.
struct Chained {
    document: Document,
    canonical: String,
    totals: [Money; 3],
    previous: [u8; 32],
    hash: [u8; 32],
    signature: [u8; 64],
    created_at_us: i64,
}

impl Chained {
    fn new(
        mut document: Document,
        totals: [Money; 3],
        (last_number, last_hash): Head,
        signer: &keys::ReceiptSigner,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let previous: [u8; 32] = last_hash.as_slice().try_into().map_err(|_| {
            ApiError::Internal(anyhow::anyhow!(
                "chain head of {} holds a malformed hash",
                document.terminal()
            ))
        })?;
        document.number = last_number + 1;
        let canonical = document.canonical();
        let hash = chain::link(&previous, &canonical);
        let canonical = String::from_utf8(canonical).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("canonical document is not UTF-8: {e}"))
        })?;
        Ok(Self {
            signature: signer.sign(&hash),
            document,
            canonical,
            totals,
            previous,
            hash,
            created_at_us: now.timestamp_micros(),
        })
    }

    /// The chain's head once this receipt is appended.
    fn head(&self) -> Head {
        (self.document.number, self.hash.to_vec())
    }

    /// The journal entry of this receipt, answering `operation` with `response`.
    fn entry(&self, operation: &Operation, response: Vec<u8>) -> Entry {
        let d = &self.document;
        Entry {
            receipt: NewReceipt {
                id: d.id.clone(),
                merchant_tin: d.merchant_tin.clone(),
                branch_no: d.branch_no.clone(),
                pos_no: d.pos_no.clone(),
                number: d.number,
                kind: d.kind.clone(),
                receipt_type: d.receipt_type.clone(),
                reference: d.reference.clone(),
                totals: self.totals.map(Money::minor),
                currency: d.currency.clone(),
                original_receipt_id: (!d.original_receipt_id.is_empty())
                    .then(|| d.original_receipt_id.clone()),
                fiscal_state: pb::FiscalState::LocalSigned.name(),
                document: self.canonical.clone(),
                previous_hash: self.previous.to_vec(),
                hash: self.hash.to_vec(),
                signature: self.signature.to_vec(),
                key_id: d.key_id.clone(),
                created_at_us: self.created_at_us,
            },
            operation: operation.clone(),
            response,
        }
    }

    /// The receipt, and the SignReceipt answer that carries it, encoded.
    fn sign_receipt_answer(&self) -> (pb::Receipt, Vec<u8>) {
        let answer = pb::SignReceiptResponse {
            receipt: Some(self.receipt()),
        };
        let response = answer.encode_to_vec();
        (answer.receipt.unwrap_or_default(), response)
    }

    fn receipt(&self) -> pb::Receipt {
        self.document.to_proto(&document::Standing {
            fiscal_state: pb::FiscalState::LocalSigned.name().to_owned(),
            previous_hash: self.previous.to_vec(),
            hash: self.hash.to_vec(),
            signature: self.signature.to_vec(),
            created_at_us: self.created_at_us,
            ..Default::default()
        })
    }
}

/// How a SignReceipt was answered.
enum Signed {
    /// This request's receipt was journaled.
    New(Box<pb::Receipt>),
    /// A duplicate of this operation was journaled first: its stored answer.
    Earlier(Vec<u8>),
}

fn replayed_receipt(bytes: &[u8]) -> Result<pb::Receipt, ApiError> {
    Ok(decode::<pb::SignReceiptResponse>(bytes)?
        .receipt
        .unwrap_or_default())
}

/// The checks on a refund's (locked) original.
fn check_refundable(found: &StoredReceipt) -> Result<(), ApiError> {
    if found.kind != pb::ReceiptKind::Sale.name() {
        return Err(ApiError::FailedPrecondition(format!(
            "receipt {} is a {}, only a SALE can be refunded",
            found.id, found.kind
        )));
    }
    if found.fiscal_state == pb::FiscalState::Cancelled.name() {
        return Err(ApiError::FailedPrecondition(format!(
            "receipt {} is cancelled and cannot be refunded",
            found.id
        )));
    }
    Ok(())
}

impl Journal {
    pub fn new(
        db: Database,
        cache: SharedCache,
        policy: Policy,
        master: fiscus_kit::config::MasterKey,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            signers: Signers::new(db.clone(), master),
            heads: Heads::default(),
            group_commit: match &db {
                Database::Postgres(pool) => Some(GroupCommit::start(pool.clone(), cache.clone())),
                Database::Sqlite(_) => None,
            },
            db,
            cache,
            policy,
            events,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::ReceiptEvent> {
        self.events.subscribe()
    }

    fn announce(&self, receipt: &pb::Receipt) {
        // Nobody listening is fine.
        let _ = self.events.send(pb::ReceiptEvent {
            receipt_id: receipt.id.clone(),
            state: receipt.fiscal_state,
            message: receipt.state_message.clone(),
            timestamp: Some(document::to_proto_timestamp(Utc::now())),
        });
    }

    /// Signs a validated request: numbers, chains, signs and journals it, exactly once per operation.
    #[tracing::instrument(skip_all, fields(terminal = %draft.terminal, operation = %operation.id))]
    pub async fn sign(
        &self,
        draft: Draft,
        operation: &Operation,
        now: DateTime<Utc>,
    ) -> Result<pb::Receipt, ApiError> {
        if let Some(bytes) = operation.cached(self.cache.as_ref()).await {
            return replayed_receipt(&bytes);
        }
        let signer = self
            .signers
            .for_merchant(&draft.terminal.merchant_tin)
            .await?;
        let signed = match draft.refund.clone() {
            None => {
                let (document, totals) = self.document(draft, None, &signer, now)?;
                self.append_alone(document, totals, &signer, now, operation)
                    .await?
            }
            // Boxed, so that a sale's future does not carry a refund's.
            Some(refund) => Box::pin(self.refund(draft, &refund, &signer, operation, now)).await?,
        };
        match signed {
            Signed::New(receipt) => {
                self.announce(&receipt);
                Ok(*receipt)
            }
            Signed::Earlier(bytes) => replayed_receipt(&bytes),
        }
    }

    /// Signs a refund. It reads what was refunded before, so it does so under the original's
    /// lock, in the transaction that writes it: a duplicate has finished by then, or not begun.
    async fn refund(
        &self,
        mut draft: Draft,
        refund: &validate::RefundRequest,
        signer: &keys::ReceiptSigner,
        operation: &Operation,
        now: DateTime<Utc>,
    ) -> Result<Signed, ApiError> {
        let mut tx = self.db.begin().await?;
        let original = self
            .refundable(&mut tx, &draft.terminal, &refund.original)
            .await?;
        if let Some(bytes) = operation.lookup_in(&mut tx).await? {
            tx.rollback().await?;
            operation.remember(self.cache.as_ref(), &bytes).await;
            return Ok(Signed::Earlier(bytes));
        }
        check_refundable(&original)?;
        let original_doc = Document::parse(original.document.as_bytes()).map_err(corrupt)?;
        let refunded = refunded_quantities(&mut tx, &original.id).await?;
        draft.items = refund_items(&original_doc, &refund.lines, &refunded)?;
        if draft.receipt_type != pb::ReceiptType::Unspecified
            && draft.receipt_type.name() != original_doc.receipt_type
        {
            return Err(ApiError::invalid(
                "type",
                format!("must be the original's type {}", original_doc.receipt_type),
            ));
        }
        draft.receipt_type = pb::ReceiptType::from_name(&original_doc.receipt_type);
        let (document, totals) = self.document(draft, Some(original.id), signer, now)?;
        let (signed, _) = self
            .append_locked(tx, document, totals, signer, now, operation)
            .await?;
        Ok(signed)
    }

    /// Chains a receipt on its terminal's head, locked inside `tx`, appends it and commits;
    /// answers it and the head after it.
    async fn append_locked(
        &self,
        mut tx: Tx,
        document: Document,
        totals: [Money; 3],
        signer: &keys::ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<(Signed, Head), ApiError> {
        let head = store::lock_head(&mut tx, &document.terminal()).await?;
        let chained = Chained::new(document, totals, head, signer, now)?;
        let (receipt, response) = chained.sign_receipt_answer();
        let signed = match self.commit(tx, &chained, operation, &response).await? {
            None => Signed::New(Box::new(receipt)),
            Some(earlier) => Signed::Earlier(earlier),
        };
        Ok((signed, chained.head()))
    }

    /// [`Self::append_locked`] in a transaction of its own.
    async fn append_anew(
        &self,
        document: Document,
        totals: [Money; 3],
        signer: &keys::ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<(Signed, Head), ApiError> {
        let tx = self.db.begin().await?;
        self.append_locked(tx, document, totals, signer, now, operation)
            .await
    }

    /// The document of a checked draft, before it has a place in a chain, and its totals.
    fn document(
        &self,
        mut draft: Draft,
        original_id: Option<String>,
        signer: &keys::ReceiptSigner,
        now: DateTime<Utc>,
    ) -> Result<(Document, [Money; 3]), ApiError> {
        let mut v = Violations::default();
        let (total, vat, city_tax) = validate::check_totals(&draft, &mut v);
        if !v.is_empty() {
            return Err(ApiError::InvalidArgument(v.into_vec()));
        }
        let receipt_type = if draft.kind == pb::ReceiptKind::Zero {
            pb::ReceiptType::B2cReceipt
        } else {
            draft.receipt_type
        };
        let request = operation_request(&draft);
        let document = Document {
            format: document::FORMAT.to_owned(),
            id: uuid::Uuid::now_v7().to_string(),
            merchant_tin: draft.terminal.merchant_tin.clone(),
            branch_no: draft.terminal.branch_no.clone(),
            pos_no: draft.terminal.pos_no.clone(),
            number: 0,
            kind: draft.kind.name().to_owned(),
            receipt_type: receipt_type.name().to_owned(),
            reference: draft.reference.clone(),
            moment: document::timestamp_text(draft.moment),
            signed_at: document::timestamp_text(now),
            currency: draft.currency.clone(),
            items: std::mem::take(&mut draft.items),
            payments: std::mem::take(&mut draft.payments),
            total_amount: total.to_string(),
            total_vat: vat.to_string(),
            total_city_tax: city_tax.to_string(),
            original_receipt_id: original_id.unwrap_or_default(),
            reason: String::new(),
            key_id: signer.key_id().to_owned(),
            algorithm: keys::ALGORITHM.to_owned(),
            ..request
        };
        Ok((document, [total, vat, city_tax]))
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
    async fn append_alone(
        &self,
        mut document: Document,
        totals: [Money; 3],
        signer: &keys::ReceiptSigner,
        now: DateTime<Utc>,
        operation: &Operation,
    ) -> Result<Signed, ApiError> {
        // The slow paths are boxed: each is a future of kilobytes that every sale would
        // otherwise carry and move about.
        let Some(group) = &self.group_commit else {
            let (signed, _) =
                Box::pin(self.append_anew(document, totals, signer, now, operation)).await?;
            return Ok(signed);
        };
        let terminal = document.terminal();
        let slot = self.heads.slot(&terminal);
        let mut known = slot.lock().await;
        if let Some(head) = known.take() {
            let chained = Chained::new(document, totals, head, signer, now)?;
            let (receipt, response) = chained.sign_receipt_answer();
            let queued = group.enqueue(chained.entry(operation, response)).await?;
            let after = chained.head();
            *known = Some(after.clone());
            drop(known);
            let appended = queued.answer().await;
            if let Ok(Appended::Done) = appended {
                // The writer has told the cache.
                return Ok(Signed::New(Box::new(receipt)));
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
            document = chained.document;
        }
        let (signed, head) =
            Box::pin(self.append_anew(document, totals, signer, now, operation)).await?;
        if matches!(signed, Signed::New(_)) {
            *known = Some(head);
        }
        Ok(signed)
    }

    /// Appends inside `tx`, which holds the head's lock, and commits. `None` when this
    /// request's receipt went in; the earlier answer when a duplicate operation got there first.
    async fn commit(
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
                chained.document.terminal()
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

    /// The original of a refund, locked.
    async fn refundable(
        &self,
        tx: &mut Tx,
        terminal: &TerminalId,
        original: &Original,
    ) -> Result<StoredReceipt, ApiError> {
        let (lookup, field) = match original {
            Original::Id(id) => (Lookup::Id(id), "refund_of.receipt_id"),
            Original::Reference(reference) => (
                Lookup::Reference(terminal, reference),
                "refund_of.receipt_reference",
            ),
        };
        store::find_in(tx, &lookup)
            .await?
            .filter(|r| r.merchant_tin == terminal.merchant_tin)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{field}: no receipt of merchant {} matches",
                    terminal.merchant_tin
                ))
            })
    }

    /// Cancels a receipt of today: marks it CANCELLED and journals the cancellation itself.
    #[tracing::instrument(skip_all, fields(terminal = %terminal, operation = %operation.id))]
    pub async fn cancel(
        &self,
        terminal: &TerminalId,
        lookup: Lookup<'_>,
        reason: &str,
        cashier: &str,
        operation: &Operation,
        now: DateTime<Utc>,
    ) -> Result<pb::CancelReceiptResponse, ApiError> {
        if let Some(bytes) = operation.cached(self.cache.as_ref()).await {
            return decode(&bytes);
        }
        let signer = self.signers.for_merchant(&terminal.merchant_tin).await?;
        let mut tx = self.db.begin().await?;
        let original = store::find_in(&mut tx, &lookup)
            .await?
            .filter(|r| r.terminal() == *terminal)
            .ok_or_else(|| ApiError::NotFound(format!("no such receipt on terminal {terminal}")))?;
        // Under the original's lock, a duplicate of this cancellation has finished or not begun.
        if let Some(bytes) = operation.lookup_in(&mut tx).await? {
            tx.rollback().await?;
            operation.remember(self.cache.as_ref(), &bytes).await;
            return decode(&bytes);
        }
        if original.fiscal_state == pb::FiscalState::Cancelled.name() {
            return Err(ApiError::FailedPrecondition(format!(
                "receipt {} is already cancelled",
                original.id
            )));
        }
        if original.kind != pb::ReceiptKind::Sale.name()
            && original.kind != pb::ReceiptKind::Refund.name()
        {
            return Err(ApiError::FailedPrecondition(format!(
                "a {} receipt cannot be cancelled",
                original.kind
            )));
        }
        let original_doc = Document::parse(original.document.as_bytes()).map_err(corrupt)?;
        // The signed time, not a column: the rule must rest on what the chain protects.
        let offset = self.policy.business_day_offset();
        let signed_day = document::parse_timestamp(&original_doc.signed_at)
            .unwrap_or(now)
            .with_timezone(&offset)
            .date_naive();
        let today = now.with_timezone(&offset).date_naive();
        if signed_day != today {
            return Err(ApiError::FailedPrecondition(format!(
                "receipt {} was signed on {signed_day} and can only be cancelled that same business day \
                 (today is {today}, UTC{offset}); issue a REFUND instead",
                original.id
            )));
        }
        if !store::refund_documents(&mut tx, &original.id)
            .await?
            .is_empty()
        {
            return Err(ApiError::FailedPrecondition(format!(
                "receipt {} has refunds; cancel those first or refund the rest",
                original.id
            )));
        }
        let totals = [
            original.total_minor,
            original.vat_minor,
            original.city_tax_minor,
        ]
        .map(Money::from_minor);
        let cancellation = Document {
            format: document::FORMAT.to_owned(),
            id: uuid::Uuid::now_v7().to_string(),
            number: 0,
            kind: pb::ReceiptKind::Cancellation.name().to_owned(),
            reference: original_doc.reference.clone(),
            moment: document::timestamp_text(now),
            signed_at: document::timestamp_text(now),
            items: Vec::new(),
            payments: Vec::new(),
            cashier: cashier.to_owned(),
            original_receipt_id: original.id.clone(),
            receipt_case: 0,
            late_signed: false,
            handwritten: false,
            reason: reason.to_owned(),
            key_id: signer.key_id().to_owned(),
            algorithm: keys::ALGORITHM.to_owned(),
            ..original_doc.clone()
        };
        let head = store::lock_head(&mut tx, terminal).await?;
        let chained = Chained::new(cancellation, totals, head, &signer, now)?;
        let cancellation = chained.receipt();
        let at_us = now.timestamp_micros();
        store::mark_cancelled(&mut tx, &original.id, &cancellation.id, at_us, reason).await?;
        let mut standing = original.standing();
        standing.fiscal_state = pb::FiscalState::Cancelled.name().to_owned();
        standing.cancelled_by = Some(cancellation.id.clone());
        standing.cancelled_at_us = Some(at_us);
        standing.cancellation_reason = Some(reason.to_owned());
        let cancelled = original_doc.to_proto(&standing);
        let response = pb::CancelReceiptResponse {
            receipt: Some(cancelled.clone()),
            cancellation: Some(cancellation.clone()),
        };
        if let Some(earlier) = self
            .commit(tx, &chained, operation, &response.encode_to_vec())
            .await?
        {
            return decode(&earlier);
        }
        self.announce(&cancelled);
        self.announce(&cancellation);
        Ok(response)
    }

    /// Recomputes a terminal's chain from `from` to `to` (0 = its head) and names the first break.
    #[tracing::instrument(skip(self))]
    pub async fn verify(
        &self,
        terminal: &TerminalId,
        from: u64,
        to: u64,
    ) -> Result<pb::VerifyJournalResponse, ApiError> {
        let Some((head_number, head_hash)) = store::head(&self.db, terminal).await? else {
            return Ok(pb::VerifyJournalResponse {
                ok: true,
                ..Default::default()
            });
        };
        let from = from.max(1);
        let to = if to == 0 {
            head_number
        } else {
            to.min(head_number)
        };
        let mut verifier = if from == 1 {
            Verifier::new()
        } else {
            let previous = store::hash_of(&self.db, terminal, from - 1)
                .await?
                .unwrap_or_default();
            Verifier::resume(from, previous.as_slice().try_into().unwrap_or([0; 32]))
        };
        let keys = store::public_keys(&self.db, &terminal.merchant_tin).await?;
        let broken = |receipt_id: &str,
                      number: u64,
                      problem: pb::JournalProblem,
                      message: String| pb::VerifyJournalResponse {
            ok: false,
            count_checked: 0,
            first_break: Some(pb::JournalBreak {
                receipt_id: receipt_id.to_owned(),
                receipt_number: number,
                problem: problem.into(),
                message,
            }),
            head_number,
            head_hash: head_hash.clone(),
        };
        let mut after = from - 1;
        while after < to {
            let batch = store::chain_batch(&self.db, terminal, after, to, 1000).await?;
            if batch.is_empty() {
                let mut response = broken(
                    "",
                    after + 1,
                    pb::JournalProblem::Missing,
                    format!(
                        "receipt {} is missing: the chain head says the last receipt is {head_number}",
                        after + 1
                    ),
                );
                response.count_checked = verifier.checked();
                return Ok(response);
            }
            for row in &batch {
                let number = u64::try_from(row.number).unwrap_or(0);
                let check = columns_match_document(row).and_then(|()| {
                    verifier
                        .check(StoredLink {
                            number,
                            previous_hash: &row.previous_hash,
                            hash: &row.hash,
                            document: row.document.as_bytes(),
                            signature: &row.signature,
                            public_key: keys.get(&row.key_id).map(Vec::as_slice),
                        })
                        .map_err(|b| (b.problem, b.message))
                });
                if let Err((problem, message)) = check {
                    let mut response = broken(&row.id, number, journal_problem(problem), message);
                    response.count_checked = verifier.checked();
                    return Ok(response);
                }
                after = number;
            }
        }
        if to == head_number && verifier.head_hash()[..] != head_hash[..] {
            let mut response = broken(
                "",
                head_number,
                pb::JournalProblem::LinkBroken,
                "the chain head's hash is not the hash of the last receipt".to_owned(),
            );
            response.count_checked = verifier.checked();
            return Ok(response);
        }
        Ok(pb::VerifyJournalResponse {
            ok: true,
            count_checked: verifier.checked(),
            first_break: None,
            head_number,
            head_hash,
        })
    }
}

fn journal_problem(problem: Problem) -> pb::JournalProblem {
    match problem {
        Problem::HashMismatch => pb::JournalProblem::HashMismatch,
        Problem::SignatureInvalid => pb::JournalProblem::SignatureInvalid,
        Problem::NumberGap => pb::JournalProblem::NumberGap,
        Problem::LinkBroken => pb::JournalProblem::LinkBroken,
    }
}

/// The indexed columns must say what the signed document says.
fn columns_match_document(row: &StoredReceipt) -> Result<(), (Problem, String)> {
    let document = Document::parse(row.document.as_bytes()).map_err(|e| {
        (
            Problem::HashMismatch,
            format!("stored document does not parse: {e}"),
        )
    })?;
    let money = |text: &str| Money::parse(text).map(Money::minor).unwrap_or(i64::MIN);
    let checks: [(&str, String, String); 6] = [
        ("id", row.id.clone(), document.id.clone()),
        (
            "number",
            row.number.to_string(),
            document.number.to_string(),
        ),
        ("kind", row.kind.clone(), document.kind.clone()),
        (
            "total_amount",
            row.total_minor.to_string(),
            money(&document.total_amount).to_string(),
        ),
        (
            "total_vat",
            row.vat_minor.to_string(),
            money(&document.total_vat).to_string(),
        ),
        (
            "total_city_tax",
            row.city_tax_minor.to_string(),
            money(&document.total_city_tax).to_string(),
        ),
    ];
    for (column, stored, signed) in checks {
        if stored != signed {
            return Err((
                Problem::HashMismatch,
                format!("stored {column} {stored} differs from the signed document's {signed}"),
            ));
        }
    }
    Ok(())
}

/// The document fields a SignReceipt request fills directly.
fn operation_request(draft: &Draft) -> Document {
    let request = &draft.request;
    Document {
        format: String::new(),
        id: String::new(),
        merchant_tin: String::new(),
        branch_no: String::new(),
        pos_no: String::new(),
        number: 0,
        kind: String::new(),
        receipt_type: String::new(),
        reference: String::new(),
        moment: String::new(),
        signed_at: String::new(),
        currency: String::new(),
        items: Vec::new(),
        payments: Vec::new(),
        total_amount: String::new(),
        total_vat: String::new(),
        total_city_tax: String::new(),
        customer_tin: request.customer_tin.clone(),
        consumer_no: request.consumer_no.clone(),
        customer_name: request.customer_name.clone(),
        customer_address: request.customer_address.clone(),
        district_code: request.district_code.clone(),
        bank_account: request.bank_account.clone(),
        iban: request.iban.clone(),
        invoice_id: request.invoice_id.clone(),
        report_month: request.report_month.clone(),
        cashier: request.cashier.clone(),
        original_receipt_id: String::new(),
        receipt_case: request.receipt_case,
        late_signed: request.late_signed,
        handwritten: request.handwritten,
        reason: String::new(),
        key_id: String::new(),
        algorithm: String::new(),
    }
}

/// Quantities already refunded per line of the original.
async fn refunded_quantities(
    tx: &mut Tx,
    original_id: &str,
) -> Result<HashMap<u32, Quantity>, ApiError> {
    let mut refunded: HashMap<u32, Quantity> = HashMap::new();
    for text in store::refund_documents(tx, original_id).await? {
        let refund = Document::parse(text.as_bytes()).map_err(corrupt)?;
        for item in refund.items {
            let quantity = Quantity::parse(&item.quantity).unwrap_or_default();
            let entry = refunded.entry(item.position).or_default();
            *entry = entry.checked_add(quantity).unwrap_or(*entry);
        }
    }
    Ok(refunded)
}

/// The lines of a refund: what was asked, never more than what is left of each line.
fn refund_items(
    original: &Document,
    lines: &[(u32, Quantity)],
    refunded: &HashMap<u32, Quantity>,
) -> Result<Vec<Item>, ApiError> {
    let left = |item: &Item| {
        let sold = Quantity::parse(&item.quantity).unwrap_or_default();
        let done = refunded.get(&item.position).copied().unwrap_or_default();
        Quantity::from_thousandths(sold.thousandths() - done.thousandths())
    };
    let wanted: Vec<(usize, u32, Quantity)> = if lines.is_empty() {
        let all: Vec<_> = original
            .items
            .iter()
            .filter(|i| left(i).is_positive())
            .enumerate()
            .map(|(n, i)| (n, i.position, left(i)))
            .collect();
        if all.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "receipt {} is already fully refunded",
                original.id
            )));
        }
        all
    } else {
        lines
            .iter()
            .enumerate()
            .map(|(n, (p, q))| (n, *p, *q))
            .collect()
    };
    let mut violations = Vec::new();
    let mut items = Vec::new();
    for (n, position, quantity) in wanted {
        let Some(item) = original.items.iter().find(|i| i.position == position) else {
            violations.push(Violation::new(
                format!("refund_of.lines[{n}].position"),
                format!("the original has no line {position}"),
            ));
            continue;
        };
        let remaining = left(item);
        if quantity > remaining {
            violations.push(Violation::new(
                format!("refund_of.lines[{n}].quantity"),
                format!("{quantity} exceeds the {remaining} of line {position} not refunded yet (sold {})", item.quantity),
            ));
            continue;
        }
        let price = Money::parse(&item.unit_price).unwrap_or_default();
        let vat_rate = Rate::parse(&item.vat_rate).unwrap_or_default();
        let city_rate = Rate::parse(&item.city_tax_rate).unwrap_or_default();
        let Some(amounts) = line_amounts(quantity, price, vat_rate, city_rate) else {
            violations.push(Violation::new(
                format!("refund_of.lines[{n}].quantity"),
                "is too large",
            ));
            continue;
        };
        items.push(Item {
            quantity: quantity.to_string(),
            total_amount: amounts.total.to_string(),
            total_vat: amounts.vat.to_string(),
            total_city_tax: amounts.city_tax.to_string(),
            net_amount: amounts.net.to_string(),
            ..item.clone()
        });
    }
    if violations.is_empty() {
        Ok(items)
    } else {
        Err(ApiError::InvalidArgument(violations))
    }
}
