//! The journal's side of shifts: which shift a terminal's receipts go into, and what a shift's
//! receipts add up to, counted in the database.

use chrono::SubsecRound;
use fiscus_domain::receipt::{PaymentMethod, ReceiptKind, TaxType};
use fiscus_domain::{Money, Rate, TerminalId};
use fiscus_kit::ApiError;
use fiscus_kit::idempotency::Operation;
use fiscus_proto::v1 as pb;
use fiscus_providers::fiskaltrust::{Market, ReceiptCase, ReceiptFlags};
use futures::Stream;

use super::{Journal, corrupt};
use crate::append::{ShiftRule, Terms, sign_with};
use crate::proto::{ToPb, micros_timestamp};
use crate::store;

/// Receipts per chunk of ListShiftReceipts.
const CHUNK: i64 = 500;

impl Journal {
    /// Makes `shift_id` (empty: none) the shift of the terminal's later receipts, under the
    /// chain head's lock: every receipt appended before this commits is in the shift it ends.
    /// A provider that closes its shifts with a receipt of its own (fiskaltrust's shift-closing
    /// receipt case) journals it here, under the same lock, as the ending shift's last receipt.
    #[tracing::instrument(skip(self), fields(terminal = %terminal))]
    pub async fn set_shift(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
    ) -> Result<pb::SetTerminalShiftResponse, ApiError> {
        self.db_status.check()?;
        let mut tx = self.db.begin().await?;
        let head = store::lock_head(&mut tx, terminal).await?;
        let previous = head.shift_id.clone();
        let mut closing = None;
        if previous != shift_id {
            if !previous.is_empty()
                && let Some(market) = self.outbox.fiskaltrust().market(&terminal.merchant_tin)
            {
                closing = self
                    .append_shift_closing(&mut tx, terminal, &previous, market)
                    .await?;
            }
            store::set_head_shift(&mut tx, terminal, shift_id).await?;
        }
        tx.commit().await?;
        if let Some((operation, receipt, response)) = closing {
            self.appender.remember(&operation, &response).await;
            tracing::info!(receipt = %receipt.id, shift = %previous, "shift-closing receipt journaled");
            self.outbox.kick();
        }
        if previous != shift_id {
            tracing::info!(previous = %previous, shift = %shift_id, "terminal shift changed");
        }
        Ok(pb::SetTerminalShiftResponse {
            previous_shift_id: previous,
        })
    }

    /// Appends, inside `tx` under the head's lock, fiskaltrust's shift-closing receipt (a zero
    /// receipt of case `ShiftClosing`) as the last receipt of `shift_id`, the head's shift; its
    /// operation id is made of the terminal and the shift, so a shift is closed by one such
    /// receipt.
    async fn append_shift_closing(
        &self,
        tx: &mut fiscus_kit::db::Tx,
        terminal: &TerminalId,
        shift_id: &str,
        market: Market,
    ) -> Result<Option<(Operation, pb::Receipt, Vec<u8>)>, ApiError> {
        let now = chrono::Utc::now().trunc_subsecs(6);
        let (mut draft, operation) = self.own_zero_receipt(
            terminal,
            &format!("shift-closing/{terminal}/{shift_id}"),
            format!("shift-closing-{shift_id}"),
            ReceiptCase::ShiftClosing.value(market, ReceiptFlags::NONE),
            now,
        )?;
        draft.total_up()?;
        let signer = self.signers.for_merchant(&terminal.merchant_tin).await?;
        let mut receipt = draft.receipt;
        receipt.id = uuid::Uuid::now_v7().to_string();
        sign_with(&mut receipt, &signer);
        let terms = Terms {
            shift: ShiftRule::Optional,
            ..self.policy.terms(&terminal.merchant_tin)
        };
        let appended = self
            .appender
            .append_uncommitted(tx, receipt, terms, &signer, now, &operation)
            .await?;
        Ok(appended.map(|(receipt, response)| (operation, receipt, response)))
    }

    /// A shift's receipts, added up by the database.
    #[tracing::instrument(skip(self), fields(terminal = %terminal))]
    pub async fn shift_totals(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
    ) -> Result<pb::ShiftReceiptTotals, ApiError> {
        self.db_status.check()?;
        let kinds = store::shift_kinds(&self.db, terminal, shift_id).await?;
        let lines = store::shift_lines(&self.db, terminal, shift_id).await?;
        totals(
            &self.policy.merchant_name(&terminal.merchant_tin),
            self.policy.currency(&terminal.merchant_tin),
            shift_id,
            &kinds,
            &lines,
        )
    }

    /// A shift's receipts as a full report's lines, in number order, in chunks.
    pub fn shift_receipts(
        &self,
        terminal: TerminalId,
        shift_id: String,
    ) -> impl Stream<Item = Result<pb::ListShiftReceiptsResponse, ApiError>> + Send + 'static {
        let db = self.db.clone();
        futures::stream::try_unfold(Some(0i64), move |after| {
            let (db, terminal, shift_id) = (db.clone(), terminal.clone(), shift_id.clone());
            async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let rows = store::shift_receipts(&db, &terminal, &shift_id, after, CHUNK).await?;
                let next = match rows.last() {
                    None => return Ok(None),
                    Some(last) if i64::try_from(rows.len()).unwrap_or(0) == CHUNK => {
                        Some(last.number)
                    }
                    Some(_) => None,
                };
                let receipts = rows.iter().map(report_line).collect::<Result<_, _>>()?;
                Ok(Some((pb::ListShiftReceiptsResponse { receipts }, next)))
            }
        })
    }
}

fn report_line(r: &store::ShiftReceipt) -> Result<pb::ReportTransaction, ApiError> {
    let kind = ReceiptKind::parse(&r.kind)
        .ok_or_else(|| corrupt(&r.id, format!("stored kind {:?} is not a kind", r.kind)))?;
    let kind = match kind {
        ReceiptKind::Sale => pb::ReportTransactionType::Sale,
        ReceiptKind::Refund => pb::ReportTransactionType::Refund,
        ReceiptKind::Cancellation => pb::ReportTransactionType::Cancellation,
        ReceiptKind::Zero => pb::ReportTransactionType::Zero,
    };
    Ok(pb::ReportTransaction {
        r#type: kind.into(),
        id: r.id.clone(),
        receipt_number: u64::try_from(r.number).unwrap_or(0),
        time: micros_timestamp(r.created_at_us),
        amount: Money::from_minor(r.total_minor).to_string(),
        currency: r.currency.clone(),
    })
}

/// The totals message from the database's sums.
fn totals(
    merchant_name: &str,
    currency: &str,
    shift_id: &str,
    kinds: &[store::KindTotal],
    lines: &[store::LineTotal],
) -> Result<pb::ShiftReceiptTotals, ApiError> {
    let unreadable = |what: String| {
        ApiError::Internal(anyhow::anyhow!(
            "shift {shift_id}: the journal holds {what}"
        ))
    };
    let overflow = || unreadable("totals that overflow".to_owned());
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut t = pb::ShiftReceiptTotals {
        currency: currency.to_owned(),
        merchant_name: merchant_name.to_owned(),
        ..Default::default()
    };
    let (mut sales, mut refunds, mut cancellations) = (Money::ZERO, Money::ZERO, Money::ZERO);
    let (mut first, mut last) = (u64::MAX, 0);
    for k in kinds {
        let kind = ReceiptKind::parse(&k.kind)
            .ok_or_else(|| unreadable(format!("a receipt kind {:?}", k.kind)))?;
        let sum = Money::from_minor(k.total);
        t.receipt_count = t.receipt_count.saturating_add(count(k.count));
        first = first.min(count(k.first));
        last = last.max(count(k.last));
        match kind {
            ReceiptKind::Sale => (t.sale_count, sales) = (count(k.count), sum),
            ReceiptKind::Refund => (t.refund_count, refunds) = (count(k.count), sum),
            ReceiptKind::Cancellation => {
                (t.cancellation_count, cancellations) = (count(k.count), sum)
            }
            ReceiptKind::Zero => t.zero_receipt_count = count(k.count),
        }
    }
    if t.receipt_count > 0 {
        (t.first_receipt_number, t.last_receipt_number) = (first, last);
    }
    let net = sales
        .checked_sub(refunds)
        .and_then(|n| n.checked_sub(cancellations))
        .ok_or_else(overflow)?;
    (t.sale_sum, t.refund_sum, t.cancellation_sum, t.total_sum) = (
        sales.to_string(),
        refunds.to_string(),
        cancellations.to_string(),
        net.to_string(),
    );

    let mut vat_lines = Vec::new();
    let mut methods = Vec::new();
    let (mut vat, mut city_tax) = (Money::ZERO, Money::ZERO);
    for l in lines {
        match l.line.as_str() {
            "TAX" => {
                let tax_type = TaxType::parse(&l.code)
                    .ok_or_else(|| unreadable(format!("a tax type {:?}", l.code)))?;
                vat = vat
                    .checked_add(Money::from_minor(l.vat))
                    .ok_or_else(overflow)?;
                city_tax = city_tax
                    .checked_add(Money::from_minor(l.city_tax))
                    .ok_or_else(overflow)?;
                vat_lines.push((
                    (tax_type, l.rate),
                    pb::VatLine {
                        tax_type: tax_type.to_pb().into(),
                        rate: Rate::from_hundredths(l.rate).to_string(),
                        taxable_base: Money::from_minor(l.base).to_string(),
                        vat: Money::from_minor(l.vat).to_string(),
                        gross: Money::from_minor(l.gross).to_string(),
                    },
                ));
            }
            "PAY" => {
                let method = PaymentMethod::parse(&l.code)
                    .ok_or_else(|| unreadable(format!("a payment method {:?}", l.code)))?;
                methods.push((
                    method,
                    pb::PaymentMethodLine {
                        method: method.to_pb().into(),
                        count: count(l.count),
                        sum: Money::from_minor(l.gross).to_string(),
                    },
                ));
            }
            other => return Err(unreadable(format!("a line {other:?}"))),
        }
    }
    vat_lines.sort_by_key(|(key, _)| *key);
    methods.sort_by_key(|(method, _)| *method);
    t.vat_lines = vat_lines.into_iter().map(|(_, line)| line).collect();
    t.payment_methods = methods.into_iter().map(|(_, line)| line).collect();
    (t.total_vat, t.total_city_tax) = (vat.to_string(), city_tax.to_string());
    Ok(t)
}
