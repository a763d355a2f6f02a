//! MIA's shifts beside fiscus's: a MIA terminal's MIA shift opened (or adopted) and closed with
//! the fiscus shift for the seller ShiftService names, and MIA's own Z-report of it read back.

use fiscus_domain::TerminalId;
use fiscus_kit::ApiError;
use fiscus_providers::mia::ShiftZReport;

use crate::mia::{refusal, upstream_error};
use crate::payments::{Payments, db};
use crate::store::{self, ShiftMiaRow};

impl Payments {
    /// Opens the seller's MIA shift with fiscus shift `shift_id`; one MIA has open already is
    /// adopted (a retry whose answer was lost, or a shift the seller opened at MIA).
    pub async fn open_mia_shift(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
        session_id: &str,
    ) -> Result<(), ApiError> {
        let seller = self.mia.seller(terminal, session_id).await?;
        let opened = self
            .mia
            .call(&seller, |client, token| async move {
                client.shift_open(&token).await
            })
            .await;
        let mia_shift_id = match opened {
            Ok(id) => {
                tracing::info!(terminal = %terminal, shift = shift_id, mia_shift = %id, "MIA shift opened");
                id
            }
            Err(e) if refusal(&e) == Some("SHIFT_ALREADY_OPENED") => {
                let status = self
                    .mia
                    .call(&seller, |client, token| async move {
                        client.shift_check(&token).await
                    })
                    .await
                    .map_err(|e| upstream_error(e, "the MIA shift open"))?;
                let id = status
                    .shift_id
                    .filter(|_| status.is_opened)
                    .ok_or_else(|| {
                        ApiError::Unavailable(
                        "MIA says a shift is open but names none; retry with the same operation_id"
                            .into(),
                    )
                    })?;
                tracing::info!(terminal = %terminal, shift = shift_id, mia_shift = %id, "MIA had a shift open already; adopting it");
                id
            }
            Err(e) => return Err(upstream_error(e, "opening the MIA shift")),
        };
        store::put_shift_mia(
            &self.db,
            &ShiftMiaRow {
                shift_id: shift_id.to_owned(),
                merchant_tin: terminal.merchant_tin.clone(),
                branch_no: terminal.branch_no.clone(),
                pos_no: terminal.pos_no.clone(),
                mia_shift_id,
                seller_session_id: session_id.to_owned(),
                closed_at_us: None,
            },
        )
        .await
        .map_err(db)
    }

    /// Closes the seller's MIA shift with the terminal's fiscus shift now ending, and records
    /// which MIA shift that was. Idempotent: when MIA has no shift open any more (this close
    /// retried, or the seller closed it at MIA) the one recorded at opening is taken as closed.
    pub async fn close_mia_shift(
        &self,
        terminal: &TerminalId,
        session_id: &str,
    ) -> Result<(), ApiError> {
        let ending = store::current_terminal_shift(&self.db, terminal)
            .await
            .map_err(db)?;
        if ending.is_empty() {
            // Already ended here: a retry after this call committed, whose MIA shift is recorded.
            return Ok(());
        }
        let known = store::shift_mia(&self.db, &ending).await.map_err(db)?;
        if known.as_ref().is_some_and(|k| k.closed_at_us.is_some()) {
            return Ok(());
        }
        let seller = self.mia.seller(terminal, session_id).await?;
        let closed = self
            .mia
            .call(&seller, |client, token| async move {
                client.shift_close(&token).await
            })
            .await;
        let mia_shift_id = match (closed, known.as_ref()) {
            (Ok(Some(id)), _) => id,
            (Ok(None), Some(known)) => known.mia_shift_id.clone(),
            (Ok(None), None) => {
                let status = self
                    .mia
                    .call(&seller, |client, token| async move {
                        client.shift_check(&token).await
                    })
                    .await
                    .map_err(|e| upstream_error(e, "the MIA shift closed"))?;
                status.shift_id.ok_or_else(|| {
                    ApiError::Unavailable(
                        "MIA closed a shift but names none; retry with the same operation_id"
                            .into(),
                    )
                })?
            }
            (Err(e), Some(known)) if refusal(&e) == Some("SHIFT_NOT_OPENED") => {
                tracing::info!(terminal = %terminal, shift = %ending, mia_shift = %known.mia_shift_id, "MIA's shift was closed already");
                known.mia_shift_id.clone()
            }
            (Err(e), None) if refusal(&e) == Some("SHIFT_NOT_OPENED") => {
                tracing::info!(terminal = %terminal, shift = %ending, "no MIA shift was opened with this shift and none is open; nothing to reconcile");
                return Ok(());
            }
            (Err(e), _) => return Err(upstream_error(e, "closing the MIA shift")),
        };
        tracing::info!(terminal = %terminal, shift = %ending, mia_shift = %mia_shift_id, "MIA shift closed");
        store::put_shift_mia(
            &self.db,
            &ShiftMiaRow {
                shift_id: ending,
                merchant_tin: terminal.merchant_tin.clone(),
                branch_no: terminal.branch_no.clone(),
                pos_no: terminal.pos_no.clone(),
                mia_shift_id,
                seller_session_id: session_id.to_owned(),
                closed_at_us: Some(store::now_us()),
            },
        )
        .await
        .map_err(db)
    }

    /// MIA's own Z-report of the MIA shift closed with fiscus shift `shift_id` of `terminal`;
    /// None when none was (not a MIA terminal, closed without a seller, or still open).
    pub async fn mia_z_report(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
    ) -> Result<Option<ShiftZReport>, ApiError> {
        let Some(row) = store::shift_mia(&self.db, shift_id)
            .await
            .map_err(db)?
            .filter(|r| r.closed_at_us.is_some() && r.terminal() == *terminal)
        else {
            return Ok(None);
        };
        if self.mia.client().is_err() {
            return Ok(None);
        }
        let seller = self.mia.seller(terminal, &row.seller_session_id).await?;
        let mia_shift_id = row.mia_shift_id.clone();
        let report = self
            .mia
            .call(&seller, |client, token| {
                let mia_shift_id = mia_shift_id.clone();
                async move { client.shift_z_report(&token, &mia_shift_id).await }
            })
            .await
            .map_err(|e| upstream_error(e, "MIA's Z-report of the shift"))?;
        Ok(Some(report))
    }
}
