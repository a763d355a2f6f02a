//! Signing a sale or a zero receipt: numbered, chained, signed and journaled once per operation.

use chrono::{DateTime, SubsecRound, Utc};
use fiscus_kit::ApiError;
use fiscus_kit::idempotency::Operation;
use fiscus_proto::v1 as pb;
use fiscus_providers::fiskaltrust;

use super::{Journal, decode};
use crate::append::{Signed, sign_with};
use crate::config::ProviderKind;
use crate::outbox::store as outbox_store;
use crate::validate::Draft;

fn invalid(e: fiskaltrust::FiskaltrustMappingError) -> ApiError {
    ApiError::invalid(e.field, e.reason)
}

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
        // What fiskaltrust would refuse is refused now, naming the field (a refund's lines are
        // its original's, checked when it was signed).
        let market = self.outbox.fiskaltrust().market(&merchant);
        let signed = match draft.refund.take() {
            None => {
                draft.total_up()?;
                if let Some(market) = market {
                    fiskaltrust::mapping::check(&draft.receipt, market).map_err(invalid)?;
                }
                let mut receipt = draft.receipt;
                receipt.id = uuid::Uuid::now_v7().to_string();
                sign_with(&mut receipt, &signer);
                let terms = self.policy.terms(&receipt.merchant_tin);
                self.appender
                    .append_alone(receipt, terms, &signer, now, operation)
                    .await?
            }
            Some(refund) => {
                if let Some(market) = market {
                    fiskaltrust::mapping::receipt_case(&draft.receipt, market, &Default::default())
                        .map_err(invalid)?;
                }
                // Boxed, so that a sale's future does not carry a refund's.
                Box::pin(self.refund(draft, &refund, &signer, operation, now)).await?
            }
        };
        match signed {
            Signed::New(receipt) => {
                let terms = self.policy.terms(&merchant);
                crate::metrics::signed(terms.provider.label(), terms.first_state());
                self.announce(&receipt);
                if receipt.fiscal_state() != pb::FiscalState::Pending {
                    return Ok(*receipt);
                }
                // PENDING as journaled, unless an attempt was recorded while the till waited.
                let receipt = if self.outbox.first_attempt(&receipt).await {
                    self.current(*receipt).await?
                } else {
                    *receipt
                };
                if receipt.fiscal_state() == pb::FiscalState::Pending
                    && terms.provider == ProviderKind::Fiskaltrust
                {
                    // The till prints it unsigned: fiskaltrust is to sign it late.
                    if let Err(error) = outbox_store::mark_late(&self.db, &receipt.id).await {
                        tracing::warn!(%error, receipt = %receipt.id, "cannot mark a receipt to be late-signed");
                    }
                }
                Ok(receipt)
            }
            Signed::Earlier(bytes) => self.current(replayed_receipt(&bytes)?).await,
        }
    }
}

/// Journals the zero receipt that ends a terminal's late signing, for each terminal the outbox
/// tells of, until shutdown. Its operation id is made of the terminal and the last receipt
/// signed late, so replicas told of the same terminal journal it once.
pub async fn close_late_signing(
    journal: std::sync::Arc<Journal>,
    mut closings: tokio::sync::mpsc::UnboundedReceiver<crate::outbox::Closing>,
    mut shutdown: fiscus_kit::server::Shutdown,
) {
    loop {
        let closing = tokio::select! {
            next = closings.recv() => match next {
                Some(closing) => closing,
                None => return,
            },
            () = shutdown.requested() => return,
        };
        if let Err(error) = journal.close(&closing).await {
            tracing::warn!(terminal = %closing.terminal, %error, "cannot journal the zero receipt that ends late signing; the next late-signed receipt tries again");
        }
    }
}

impl Journal {
    async fn close(&self, closing: &crate::outbox::Closing) -> Result<(), ApiError> {
        let terminal = &closing.terminal;
        let now = Utc::now().trunc_subsecs(6);
        let (draft, operation) = self.own_zero_receipt(
            terminal,
            &format!("late-signing-end/{terminal}/{}", closing.after_number),
            format!("late-signing-end-{}", closing.after_number),
            0,
            now,
        )?;
        let zero = self.sign(draft, &operation, now).await?;
        tracing::info!(%terminal, receipt = %zero.id, "late signing closed with a zero receipt");
        Ok(())
    }
}
