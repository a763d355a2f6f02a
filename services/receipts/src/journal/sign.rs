//! Signing a sale or a zero receipt: numbered, chained, signed and journaled once per operation.

use chrono::{DateTime, Utc};
use fiscus_kit::ApiError;
use fiscus_kit::idempotency::Operation;
use fiscus_proto::v1 as pb;

use super::{Journal, decode};
use crate::append::{Signed, sign_with};
use crate::validate::Draft;

fn replayed_receipt(bytes: &[u8]) -> Result<pb::Receipt, ApiError> {
    Ok(decode::<pb::SignReceiptResponse>(bytes)?
        .receipt
        .unwrap_or_default())
}

impl Journal {
    /// Signs a validated request: numbers, chains, signs and journals it, exactly once per
    /// operation.
    #[tracing::instrument(skip_all, fields(terminal = %draft.terminal(), operation = %operation.id))]
    pub async fn sign(
        &self,
        mut draft: Draft,
        operation: &Operation,
        now: DateTime<Utc>,
    ) -> Result<pb::Receipt, ApiError> {
        if let Some(bytes) = operation.cached(self.cache.as_ref()).await {
            return self.current(replayed_receipt(&bytes)?).await;
        }
        self.db_status.check()?;
        let merchant = draft.receipt.merchant_tin.clone();
        let signer = self
            .signers
            .for_merchant(&draft.receipt.merchant_tin)
            .await?;
        let signed = match draft.refund.take() {
            None => {
                draft.total_up()?;
                let mut receipt = draft.receipt;
                receipt.id = uuid::Uuid::now_v7().to_string();
                sign_with(&mut receipt, &signer);
                let terms = self.policy.terms(&receipt.merchant_tin);
                self.appender
                    .append_alone(receipt, terms, &signer, now, operation)
                    .await?
            }
            // Boxed, so that a sale's future does not carry a refund's.
            Some(refund) => Box::pin(self.refund(draft, &refund, &signer, operation, now)).await?,
        };
        match signed {
            Signed::New(receipt) => {
                let terms = self.policy.terms(&merchant);
                crate::metrics::signed(terms.provider.label(), terms.first_state());
                self.announce(&receipt);
                // PENDING as journaled, unless an attempt was recorded while the till waited.
                if receipt.fiscal_state() == pb::FiscalState::Pending
                    && self.outbox.first_attempt(&receipt).await
                {
                    return self.current(*receipt).await;
                }
                Ok(*receipt)
            }
            Signed::Earlier(bytes) => self.current(replayed_receipt(&bytes)?).await,
        }
    }
}
