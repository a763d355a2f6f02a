//! Refunds and cancellations: both read the journal (what was refunded, whether the original is
//! cancelled), so each locks its original, then the chain head, and writes in that transaction.
//! The original must be on the request's own terminal, however it is named.

use chrono::{DateTime, Utc};
use fiscus_domain::TerminalId;
use fiscus_domain::cancel::{self, check_cancellable};
use fiscus_domain::keys::ReceiptSigner;
use fiscus_domain::receipt::{FiscalState, Receipt, ReceiptKind};
use fiscus_domain::refund::{self, RefundError, RefundOutcome, check_refundable};
use fiscus_kit::db::Tx;
use fiscus_kit::idempotency::Operation;
use fiscus_kit::{ApiError, Violation};
use fiscus_proto::v1 as pb;
use prost::Message;

use super::{Journal, corrupt, decode};
use crate::append::{Chained, Signed, sign_with};
use crate::config::ProviderKind;
use crate::store::{self, Lookup, StoredReceipt};
use crate::validate::{Draft, Original, RefundRequest};

impl Journal {
    /// Signs a refund. It reads what was refunded before, so it does so under the original's
    /// lock, in the transaction that writes it: a duplicate has finished by then, or not begun.
    pub(super) async fn refund(
        &self,
        mut draft: Draft,
        request: &RefundRequest,
        signer: &ReceiptSigner,
        operation: &Operation,
        now: DateTime<Utc>,
    ) -> Result<Signed, ApiError> {
        let mut tx = self.db.begin().await?;
        let terminal = draft.terminal();
        let (lookup, field) = match &request.original {
            Original::Id(id) => (Lookup::Id(id), "refund_of.receipt_id"),
            Original::Reference(reference) => (
                Lookup::Reference(&terminal, reference),
                "refund_of.receipt_reference",
            ),
        };
        let found = find_on_terminal(&mut tx, &lookup, &terminal)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{field}: no receipt of terminal {terminal} matches"
                ))
            })?;
        if let Some(bytes) = operation.lookup_in(&mut tx).await? {
            tx.rollback().await?;
            operation.remember(self.cache.as_ref(), &bytes).await;
            return Ok(Signed::Earlier(bytes));
        }
        let original = found.receipt()?;
        let state = found
            .standing()
            .map_err(|e| corrupt(&found.id, e))?
            .fiscal_state;
        check_refundable(&original, state)
            .map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
        if let Some(requested) = draft.requested_type
            && requested != original.receipt_type
        {
            return Err(ApiError::invalid(
                "type",
                format!("must be the original's type {}", original.receipt_type),
            ));
        }
        let earlier = store::refund_documents(&mut tx, &original.id)
            .await?
            .iter()
            .map(|text| Receipt::parse(text.as_bytes()).map_err(|e| corrupt(&original.id, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let done = refund::refunded_so_far(&earlier)
            .map_err(|e| corrupt(&original.id, format!("its refunds: {e}")))?;
        let receipt = &mut draft.receipt;
        receipt.items = refund::refund_items(&original, &done, &request.lines).map_err(
            |outcome| match outcome {
                RefundOutcome::Refused(refused) => {
                    ApiError::FailedPrecondition(refused.to_string())
                }
                RefundOutcome::Lines(errors) => {
                    ApiError::InvalidArgument(errors.iter().map(line_violation).collect())
                }
            },
        )?;
        receipt.receipt_type = original.receipt_type;
        receipt.original_receipt_id = original.id.clone();
        draft.total_up()?;
        let mut receipt = draft.receipt;
        receipt.id = uuid::Uuid::now_v7().to_string();
        sign_with(&mut receipt, signer);
        let terms = self.policy.terms(&terminal.merchant_tin);
        let (signed, _) = self
            .appender
            .append_locked(tx, receipt, terms, signer, now, operation)
            .await?;
        Ok(signed)
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
        self.db_status.check()?;
        let signer = self.signers.for_merchant(&terminal.merchant_tin).await?;
        let mut tx = self.db.begin().await?;
        let found = find_on_terminal(&mut tx, &lookup, terminal)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no such receipt on terminal {terminal}")))?;
        // Under the original's lock, a duplicate of this cancellation has finished or not begun.
        if let Some(bytes) = operation.lookup_in(&mut tx).await? {
            tx.rollback().await?;
            operation.remember(self.cache.as_ref(), &bytes).await;
            return decode(&bytes);
        }
        let original = found.receipt()?;
        let mut standing = found.standing().map_err(|e| corrupt(&found.id, e))?;
        let refunded = !store::refund_documents(&mut tx, &original.id)
            .await?
            .is_empty();
        check_cancellable(
            &original,
            standing.fiscal_state,
            refunded,
            now,
            self.policy.business_day,
        )
        .map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
        let terms = self.policy.terms(&terminal.merchant_tin);
        if terms.provider == ProviderKind::Ebarimt && original.kind == ReceiptKind::Refund {
            // e-barimt corrects a receipt by replacing its document, and a replaced document
            // cannot be made active again: the refund cannot be undone there.
            return Err(ApiError::FailedPrecondition(format!(
                "receipt {} is a refund of an e-barimt receipt, which e-barimt keeps as a \
                 correction that cannot be undone: sign a new sale instead",
                original.id
            )));
        }
        let mut cancellation = cancel::cancellation(
            &original,
            uuid::Uuid::now_v7().to_string(),
            now,
            reason,
            cashier,
            signer.key_id(),
        );
        sign_with(&mut cancellation, &signer);
        let head = store::lock_head(&mut tx, terminal).await?;
        let chained =
            Chained::new(cancellation, head, terms, &signer, now)?.cancelling(&original)?;
        let cancellation = chained.view(|_| {});
        let at_us = now.timestamp_micros();
        store::mark_cancelled(&mut tx, &original.id, &cancellation.id, at_us, reason).await?;
        standing.fiscal_state = FiscalState::Cancelled;
        standing.cancelled_by = Some(cancellation.id.clone());
        standing.cancelled_at_us = Some(at_us);
        standing.cancellation_reason = Some(reason.to_owned());
        let cancelled =
            crate::proto::receipt(&original, &standing, crate::proto::Document::Omitted);
        let response = pb::CancelReceiptResponse {
            receipt: Some(cancelled.clone()),
            cancellation: Some(cancellation.clone()),
        };
        if let Some(earlier) = self
            .appender
            .commit(tx, &chained, operation, &response.encode_to_vec())
            .await?
        {
            return decode(&earlier);
        }
        crate::metrics::signed(terms.provider.label(), terms.first_state());
        self.announce(&cancelled);
        self.announce(&cancellation);
        if terms.provider.is_upstream() {
            self.outbox.kick();
        }
        Ok(response)
    }
}

/// The receipt `lookup` names, locked, if it is on `terminal`: another terminal's receipt is
/// not found, whichever way it is named.
async fn find_on_terminal(
    tx: &mut Tx,
    lookup: &Lookup<'_>,
    terminal: &TerminalId,
) -> Result<Option<StoredReceipt>, ApiError> {
    Ok(store::find_in(tx, lookup)
        .await?
        .filter(|r| r.terminal() == *terminal))
}

/// A refund line at fault, named by its field.
fn line_violation(error: &RefundError) -> Violation {
    let part = match error {
        RefundError::NoSuchLine { .. } => "position",
        _ => "quantity",
    };
    Violation::new(
        format!("refund_of.lines[{}].{part}", error.line()),
        error.to_string(),
    )
}
