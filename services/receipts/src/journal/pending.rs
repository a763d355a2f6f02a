//! The operator's view of the outbox: receipts still on their way to the provider (ListPending),
//! and putting them back in the queue now (ResendPending).

use std::time::Duration;

use chrono::Utc;
use fiscus_domain::receipt::{FiscalState, ReceiptKind};
use fiscus_domain::{Money, TerminalId};
use fiscus_kit::ApiError;
use fiscus_kit::idempotency::{Operation, once_upstream};
use fiscus_proto::v1 as pb;

use super::Journal;
use crate::config::ProviderKind;
use crate::outbox::store;
use crate::proto::{self, ToPb};

/// How long a ResendPending holds its operation id while it runs.
const RESEND_LEASE: Duration = Duration::from_secs(30);

impl Journal {
    /// A page of the terminal's receipts in the outbox, oldest first, after receipt `after`.
    pub async fn pending(
        &self,
        terminal: &TerminalId,
        include_dead_letters: bool,
        after: i64,
        page_size: i64,
    ) -> Result<pb::ListPendingResponse, ApiError> {
        let rows = store::pending(
            &self.db,
            terminal,
            include_dead_letters,
            after,
            page_size.saturating_add(1),
        )
        .await?;
        let more = rows.len() > usize::try_from(page_size).unwrap_or(usize::MAX);
        let rows = &rows[..rows
            .len()
            .min(usize::try_from(page_size).unwrap_or(usize::MAX))];
        let next_page_token = match rows.last() {
            Some(last) if more => last.number.to_string(),
            _ => String::new(),
        };
        let pending = rows
            .iter()
            .map(|row| {
                let unreadable = |what: &str| {
                    ApiError::Internal(anyhow::anyhow!(
                        "outbox entry {} holds an unreadable {what}",
                        row.receipt_id
                    ))
                };
                Ok(pb::PendingReceipt {
                    receipt_id: row.receipt_id.clone(),
                    receipt_number: u64::try_from(row.number).unwrap_or_default(),
                    kind: ReceiptKind::parse(&row.kind)
                        .ok_or_else(|| unreadable("kind"))?
                        .to_pb()
                        .into(),
                    total_amount: Money::from_minor(row.total_minor).to_string(),
                    provider: proto::provider(
                        ProviderKind::parse(&row.provider).ok_or_else(|| unreadable("provider"))?,
                    )
                    .into(),
                    fiscal_state: FiscalState::parse(&row.fiscal_state)
                        .ok_or_else(|| unreadable("fiscal state"))?
                        .to_pb()
                        .into(),
                    dead_letter: row.dead,
                    attempts: u32::try_from(row.attempts).unwrap_or_default(),
                    last_error: row.last_error.clone(),
                    next_attempt_at: if row.dead {
                        None
                    } else {
                        proto::micros_timestamp(row.next_attempt_at_us)
                    },
                    created_at: proto::micros_timestamp(row.created_at_us),
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(pb::ListPendingResponse {
            pending,
            next_page_token,
        })
    }

    /// Puts the named receipts of `terminal` (every one in its outbox when `ids` is empty) back
    /// in the queue, due now — once per operation. A receipt not of the terminal is NOT_FOUND
    /// naming its field, and then nothing is rescheduled.
    pub async fn resend(
        &self,
        terminal: &TerminalId,
        ids: &[String],
        operation: &Operation,
    ) -> Result<pb::ResendPendingResponse, ApiError> {
        let response = once_upstream(
            &self.db,
            self.cache.as_ref(),
            operation,
            RESEND_LEASE,
            async {
                let mut tx = self.db.begin().await?;
                let mut entries = if ids.is_empty() {
                    store::terminal_entries(&mut tx, terminal).await?
                } else {
                    let found = store::resend_candidates(&mut tx, terminal, ids).await?;
                    if let Some((index, id)) = ids
                        .iter()
                        .enumerate()
                        .find(|(_, id)| !found.iter().any(|f| &f.0 == *id))
                    {
                        return Err(ApiError::NotFound(format!(
                            "receipt_ids[{index}]: terminal {terminal} has no receipt {id}"
                        )));
                    }
                    found
                };
                entries.sort_by_key(|e| e.1);
                let now = Utc::now().timestamp_micros();
                let mut results = Vec::with_capacity(entries.len());
                for (id, _, state, queued) in entries {
                    let state = FiscalState::parse(&state).unwrap_or(FiscalState::Pending);
                    if queued {
                        store::reschedule(&mut tx, &id, now).await?;
                        results.push(pb::ResendResult {
                            receipt_id: id,
                            fiscal_state: pb::FiscalState::Pending.into(),
                            message: String::new(),
                        });
                    } else {
                        results.push(pb::ResendResult {
                            receipt_id: id,
                            fiscal_state: state.to_pb().into(),
                            message: format!(
                                "not rescheduled: it is {state}, not waiting for its provider"
                            ),
                        });
                    }
                }
                tx.commit().await?;
                Ok(pb::ResendPendingResponse { results })
            },
        )
        .await?;
        self.outbox.kick();
        Ok(response)
    }
}
