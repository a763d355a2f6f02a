//! Transactions and refunds: a shift's transactions paged as MIA pages them, one transaction's
//! bank details, and refunds that never exceed what is left — posted once, and looked up among
//! the transaction's returns when MIA's answer was lost.

use base64::Engine as _;
use fiscus_domain::qr::{RefundAsk, RefundRefused, refund_amount};
use fiscus_domain::{Money, TerminalId};
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;
use fiscus_providers::mia::{ReturnRequest, TxInfo, TxSummary, TxType};

use crate::mia::{Seller, outcome_unknown, upstream_error};
use crate::payments::{Payments, db, returned};
use crate::proto;
use crate::store::{self, REFUND_DONE, REFUND_SENT, TxRow};

/// Where the next page of a shift's transactions starts: older than `before`.
pub struct PageToken {
    pub shift_id: String,
    pub before: u64,
}

impl PageToken {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}\n{}", self.before, self.shift_id))
    }

    /// The token of a previous page; `None` when it is not one fiscus wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (before, shift_id) = text.split_once('\n')?;
        Some(Self {
            shift_id: shift_id.to_owned(),
            before: before.parse().ok()?,
        })
    }
}

/// A refund to make, checked.
pub struct NewRefund {
    pub terminal: TerminalId,
    pub transaction_id: u64,
    pub ask: RefundAsk,
    pub currency: String,
    pub reason_code: String,
    pub reason_message: String,
}

fn tx_type(paid: Money, refunded: Money) -> &'static str {
    if refunded >= paid {
        TxType::Refunded.as_str()
    } else if refunded.is_positive() {
        TxType::PartiallyRefunded.as_str()
    } else {
        TxType::Paid.as_str()
    }
}

fn refused(e: RefundRefused) -> ApiError {
    match e {
        RefundRefused::NotPositive => ApiError::invalid("amount", e.to_string()),
        other => ApiError::FailedPrecondition(format!("refund refused: {other}")),
    }
}

impl Payments {
    /// ListTransactions: up to `page_size` of a shift's transactions, newest first, from MIA's
    /// portions; the token of the next (older) page when there is one.
    pub async fn list_transactions(
        &self,
        terminal: &TerminalId,
        seller: &Seller,
        shift_id: &str,
        page_size: usize,
        before: Option<u64>,
    ) -> Result<pb::ListTransactionsResponse, ApiError> {
        let mut found: Vec<TxSummary> = Vec::new();
        let mut cursor = before;
        let mut more = true;
        while found.len() < page_size && more {
            let shift = shift_id.to_owned();
            let portion = self
                .mia
                .call(seller, |client, token| {
                    let shift = shift.clone();
                    async move { client.transactions(&token, &shift, cursor).await }
                })
                .await
                .map_err(|e| upstream_error(e, "the shift's transactions"))?;
            more = !portion.is_ended && !portion.transactions.is_empty();
            cursor = portion.transactions.last().map(|t| t.id).or(cursor);
            found.extend(portion.transactions);
        }
        let cut = found.len() > page_size;
        found.truncate(page_size);
        let next_page_token = match found.last() {
            Some(last) if cut || more => PageToken {
                shift_id: shift_id.to_owned(),
                before: last.id,
            }
            .encode(),
            _ => String::new(),
        };
        let ids: Vec<String> = found.iter().map(|t| t.id.to_string()).collect();
        let known = store::transactions(&self.db, &ids).await.map_err(db)?;
        let transactions = found
            .iter()
            .map(|summary| {
                let id = summary.id.to_string();
                match known.iter().find(|k| k.transaction_id == id) {
                    Some(row) => {
                        let mut tx = proto::transaction(row);
                        tx.r#type = proto::tx_type_to_pb(summary.tx_type.as_str()).into();
                        tx
                    }
                    None => self.unknown_transaction(terminal, summary, shift_id),
                }
            })
            .collect();
        Ok(pb::ListTransactionsResponse {
            transactions,
            next_page_token,
        })
    }

    /// A transaction fiscus did not see paid (e.g. a static free QR paid without a request).
    fn unknown_transaction(
        &self,
        terminal: &TerminalId,
        summary: &TxSummary,
        shift_id: &str,
    ) -> pb::Transaction {
        let refunded = match summary.tx_type {
            TxType::Paid | TxType::Cancelled => Money::ZERO.to_string(),
            TxType::Refunded => summary.amount.to_string(),
            // How much is only in the transaction's details (GetTransaction).
            TxType::PartiallyRefunded => String::new(),
        };
        pb::Transaction {
            id: summary.id.to_string(),
            terminal: Some(proto::terminal(terminal)),
            amount: summary.amount.to_string(),
            currency: summary.currency.clone(),
            date: proto::timestamp_us(summary.date.timestamp_micros()),
            r#type: proto::tx_type_to_pb(summary.tx_type.as_str()).into(),
            shift_id: shift_id.to_owned(),
            refunded_amount: refunded,
            ..Default::default()
        }
    }

    /// GetTransaction: MIA's details, recorded here.
    pub async fn get_transaction(
        &self,
        terminal: &TerminalId,
        seller: &Seller,
        transaction_id: u64,
    ) -> Result<pb::Transaction, ApiError> {
        let details = self.details(seller, transaction_id).await?;
        let row = self.record_details(terminal, &details).await?;
        Ok(proto::transaction(&row))
    }

    async fn details(&self, seller: &Seller, transaction_id: u64) -> Result<TxInfo, ApiError> {
        self.mia
            .call(seller, |client, token| async move {
                client.transaction(&token, transaction_id).await
            })
            .await
            .map_err(|e| upstream_error(e, "the transaction"))
    }

    /// Records a transaction's details; what MIA says was returned of it counts here too.
    async fn record_details(
        &self,
        terminal: &TerminalId,
        details: &TxInfo,
    ) -> Result<TxRow, ApiError> {
        let id = details.summary.id.to_string();
        let known = store::transaction(&self.db, &id).await.map_err(db)?;
        let returned = returned(details).minor();
        let row = TxRow {
            transaction_id: id.clone(),
            merchant_tin: terminal.merchant_tin.clone(),
            branch_no: terminal.branch_no.clone(),
            pos_no: terminal.pos_no.clone(),
            qr_id: None,
            extension_id: None,
            amount_minor: details.summary.amount.minor(),
            currency: if details.summary.currency.is_empty() {
                self.config.currency.clone()
            } else {
                details.summary.currency.clone()
            },
            paid_at_us: details.summary.date.timestamp_micros(),
            tx_type: details.summary.tx_type.as_str().to_owned(),
            rrn: details.rrn.clone(),
            approval_code: details.approval_code.clone(),
            mcc: details.mcc.clone(),
            swift_message_type: details.swift_message_type.clone(),
            swift_message_id: details.swift_message_id.clone(),
            swift_payer_bank: details.swift_payer_bank.clone(),
            refunded_minor: known
                .as_ref()
                .map_or(returned, |k| k.refunded_minor.max(returned)),
            mia_shift_id: known
                .as_ref()
                .map(|k| k.mia_shift_id.clone())
                .unwrap_or_default(),
            shift_id: known
                .as_ref()
                .map(|k| k.shift_id.clone())
                .unwrap_or_default(),
        };
        store::upsert_transaction(&self.db, &row)
            .await
            .map_err(db)?;
        if known.as_ref().is_some_and(|k| k.refunded_minor < returned) {
            store::raise_refunded(&self.db, &id, returned)
                .await
                .map_err(db)?;
        }
        store::transaction(&self.db, &id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("transaction {id} vanished")))
    }

    /// RefundTransaction's work, once per operation.
    pub async fn refund(
        &self,
        operation_id: &str,
        new: &NewRefund,
        seller: &Seller,
    ) -> Result<pb::RefundTransactionResponse, ApiError> {
        let id = new.transaction_id.to_string();
        // A refund of this operation posted before: done, or to be looked up.
        if let Some(mine) = store::refund(&self.db, operation_id).await.map_err(db)? {
            if mine.state == REFUND_SENT {
                self.reconcile(seller, &new.terminal, &id).await?;
            }
            if let Some(done) = store::refund(&self.db, operation_id)
                .await
                .map_err(db)?
                .filter(|r| r.state == REFUND_DONE)
            {
                return self
                    .refund_answer(&id, done.refund_request_id.unwrap_or_default())
                    .await;
            }
        }
        let tx = match store::transaction(&self.db, &id).await.map_err(db)? {
            Some(tx) => tx,
            None => {
                let details = self.details(seller, new.transaction_id).await?;
                self.record_details(&new.terminal, &details).await?
            }
        };
        if !new.currency.is_empty() && new.currency != tx.currency {
            return Err(ApiError::invalid(
                "currency",
                format!("must be the transaction's currency, {}", tx.currency),
            ));
        }
        // Other refunds of the transaction whose outcome is unknown are settled first.
        if !store::sent_refunds(&self.db, &id)
            .await
            .map_err(db)?
            .is_empty()
        {
            self.reconcile(seller, &new.terminal, &id).await?;
        }
        let tx = store::transaction(&self.db, &id)
            .await
            .map_err(db)?
            .unwrap_or(tx);
        let paid = Money::from_minor(tx.amount_minor);
        let amount =
            refund_amount(paid, Money::from_minor(tx.refunded_minor), new.ask).map_err(refused)?;
        let full = matches!(new.ask, RefundAsk::Full);
        let inserted = store::insert_sent_refund(
            &self.db,
            operation_id,
            &id,
            amount.minor(),
            full,
            &new.reason_code,
            &new.reason_message,
        )
        .await
        .map_err(db)?;
        if !inserted {
            return Err(ApiError::Aborted(format!(
                "another refund of transaction {id} is in progress; retry"
            )));
        }
        let request = ReturnRequest {
            tx_id: new.transaction_id,
            amount: (!full).then_some(amount),
            full_refund: full,
            currency: Some(tx.currency.clone()),
            reason_code: new.reason_code.clone(),
            reason_message: (!new.reason_message.is_empty()).then(|| new.reason_message.clone()),
        };
        let posted = self
            .mia
            .call(seller, |client, token| {
                let request = request.clone();
                async move { client.return_transaction(&token, &request).await }
            })
            .await;
        match posted {
            Ok(request_id) => {
                let request_id = request_id.to_string();
                let refunded = Money::from_minor(tx.refunded_minor.saturating_add(amount.minor()));
                // The refund counts in the shift open now, not in the payment's (asked after it
                // is made, so that a lost shift check never costs the refund itself).
                let shift = self.mia_shift(seller, "refund", &id).await;
                store::complete_refund(
                    &self.db,
                    operation_id,
                    &id,
                    amount.minor(),
                    &request_id,
                    tx_type(paid, refunded),
                    &shift,
                )
                .await
                .map_err(db)?;
                self.refund_answer(&id, request_id).await
            }
            Err(e) if outcome_unknown(&e) => {
                tracing::warn!(error = %e, operation = operation_id, transaction = %id, "the refund's outcome is unknown");
                Err(ApiError::Unavailable(format!(
                    "MIA's answer to the refund of transaction {id} was lost: its outcome is unknown; \
                     retry with the same operation_id (fiscus looks the refund up at MIA before posting again)"
                )))
            }
            Err(e) => {
                store::drop_refund(&self.db, operation_id)
                    .await
                    .map_err(db)?;
                Err(upstream_error(e, "the refund"))
            }
        }
    }

    async fn refund_answer(
        &self,
        transaction_id: &str,
        request_id: String,
    ) -> Result<pb::RefundTransactionResponse, ApiError> {
        let tx = store::transaction(&self.db, transaction_id)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("transaction {transaction_id} vanished"))
            })?;
        Ok(pb::RefundTransactionResponse {
            refund_request_id: request_id,
            transaction: Some(proto::transaction(&tx)),
        })
    }

    /// Settles the refunds of a transaction whose outcome is unknown, by MIA's returns of it:
    /// a return fiscus does not know yet, of the refund's amount, is that refund (DONE); a
    /// refund with none was not done (forgotten, so that its retry posts it).
    async fn reconcile(
        &self,
        seller: &Seller,
        terminal: &TerminalId,
        transaction_id: &str,
    ) -> Result<(), ApiError> {
        let sent = store::sent_refunds(&self.db, transaction_id)
            .await
            .map_err(db)?;
        if sent.is_empty() {
            return Ok(());
        }
        let tx_id: u64 = transaction_id.parse().map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("stored transaction id {transaction_id:?}"))
        })?;
        let details = self.details(seller, tx_id).await?;
        let mut known = store::done_request_ids(&self.db, transaction_id)
            .await
            .map_err(db)?;
        let tx = self.record_details(terminal, &details).await?;
        let paid = Money::from_minor(tx.amount_minor);
        let mut refunded = Money::from_minor(tx.refunded_minor);
        // The shift of a refund found done: MIA's now, asked once (when it was made is lost).
        let mut shift_now: Option<String> = None;
        for refund in sent {
            let found = details.returns.iter().find(|r| {
                !known.contains(&r.request_id.to_string())
                    && r.amount.minor() == refund.amount_minor
            });
            match found {
                Some(found) => {
                    let request_id = found.request_id.to_string();
                    tracing::info!(operation = %refund.operation_id, request = %request_id, "a refund whose answer was lost was found among the transaction's returns");
                    if shift_now.is_none() {
                        shift_now = Some(self.mia_shift(seller, "refund", transaction_id).await);
                    }
                    // MIA's returns already count in `refunded`: only the refund's state moves.
                    store::complete_refund(
                        &self.db,
                        &refund.operation_id,
                        transaction_id,
                        0,
                        &request_id,
                        tx_type(paid, refunded),
                        shift_now.as_deref().unwrap_or_default(),
                    )
                    .await
                    .map_err(db)?;
                    known.push(request_id);
                }
                None => {
                    tracing::info!(operation = %refund.operation_id, "a refund whose answer was lost was not made; its retry posts it");
                    store::drop_refund(&self.db, &refund.operation_id)
                        .await
                        .map_err(db)?;
                }
            }
        }
        refunded = refunded.max(returned(&details));
        store::raise_refunded(&self.db, transaction_id, refunded.minor())
            .await
            .map_err(db)?;
        Ok(())
    }
}
