//! What every PaymentService operation shares: its stores, MIA, and the one way a payment
//! request's new state is recorded and announced to the watchers of every replica.

use std::sync::Arc;

use fiscus_domain::Money;
use fiscus_domain::qr::{PaymentState, QrType};
use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::db::{Database, DatabaseStatus};
use fiscus_providers::mia::{PaymentCheck, QrState, TxInfo};
use prost::Message;

use crate::config::PaymentsConfig;
use crate::mia::{Mia, Seller, upstream_error};
use crate::proto;
use crate::store::{self, RequestRow, TxRow};
use crate::watch::{Announcement, CHANNEL, Watchers};

pub struct Payments {
    pub db: Database,
    pub db_status: DatabaseStatus,
    pub cache: SharedCache,
    pub mia: Mia,
    pub config: PaymentsConfig,
    pub watchers: Arc<Watchers>,
}

/// The idempotency tenant of an operation on a terminal's payments.
pub fn tenant(terminal: &fiscus_domain::TerminalId) -> String {
    format!(
        "payments:{}:{}:{}",
        terminal.merchant_tin, terminal.branch_no, terminal.pos_no
    )
}

/// A store error as the caller sees it: retriable where the database is the cause.
pub fn db(error: sqlx::Error) -> ApiError {
    ApiError::from(error)
}

impl Payments {
    /// Asks MIA for a payment request's state and records it.
    pub async fn check(&self, row: &RequestRow, seller: &Seller) -> Result<RequestRow, ApiError> {
        let extension_id = uuid::Uuid::parse_str(&row.extension_id).map_err(|_| {
            ApiError::Internal(anyhow::anyhow!(
                "stored extension id {:?} is not a UUID",
                row.extension_id
            ))
        })?;
        let check = self
            .mia
            .call(seller, |client, token| async move {
                client.check_extension(&token, extension_id).await
            })
            .await
            .map_err(|e| upstream_error(e, "the payment request's state"))?;
        self.observe(row, &check, seller).await
    }

    /// Records what MIA said of a payment request when it is news — a final state never goes
    /// back, and only a static QR's paid request changes after PAID — and announces it.
    /// Answers the request as it stands now.
    pub async fn observe(
        &self,
        row: &RequestRow,
        check: &PaymentCheck,
        seller: &Seller,
    ) -> Result<RequestRow, ApiError> {
        let old_state = PaymentState::parse(&row.state).unwrap_or(PaymentState::Pending);
        let qr_type = QrType::parse(&row.qr_type).unwrap_or(QrType::Dynamic);
        let old_total = u32::try_from(row.total_payments).unwrap_or(0);
        let news = check.state != old_state
            || check.total_payments != old_total
            || check.error_description != row.error_description;
        if !news || !old_state.may_become(old_total, check.state, check.total_payments, qr_type) {
            return Ok(row.clone());
        }
        let transaction_id = match &check.last_transaction {
            Some(tx) => {
                self.record_transaction(row, tx, seller).await?;
                Some(tx.summary.id.to_string())
            }
            None => None,
        };
        self.write_state(
            row,
            check.state,
            i64::from(check.total_payments),
            &check.error_description,
            transaction_id.as_deref(),
        )
        .await
    }

    /// Writes a request's new state over the version it was read at; announces it when this
    /// call wrote it. A dynamic QR follows its one request.
    pub async fn write_state(
        &self,
        row: &RequestRow,
        state: PaymentState,
        total_payments: i64,
        error_description: &str,
        transaction_id: Option<&str>,
    ) -> Result<RequestRow, ApiError> {
        let written = store::observe(
            &self.db,
            &row.extension_id,
            row.version,
            state.as_str(),
            total_payments,
            error_description,
            transaction_id,
        )
        .await
        .map_err(db)?;
        let fresh = store::request(&self.db, &row.extension_id)
            .await
            .map_err(db)?
            .unwrap_or_else(|| row.clone());
        if written {
            if QrType::parse(&row.qr_type) == Some(QrType::Dynamic) {
                let qr_state = match state {
                    PaymentState::Pending => None,
                    PaymentState::Paid => Some(QrState::Paid),
                    PaymentState::Expired | PaymentState::NotFound => Some(QrState::Expired),
                    PaymentState::Cancelled | PaymentState::Failed => Some(QrState::Cancelled),
                };
                if let Some(qr_state) = qr_state {
                    store::set_qr_state(&self.db, &row.qr_id, qr_state.as_str())
                        .await
                        .map_err(db)?;
                }
            }
            self.announce(&fresh).await?;
        }
        Ok(fresh)
    }

    /// The event of a request as stored, with its version.
    pub async fn event_of(
        &self,
        row: &RequestRow,
    ) -> Result<(i64, Arc<fiscus_proto::v1::PaymentEvent>), ApiError> {
        let tx = match &row.last_transaction_id {
            Some(id) => store::transaction(&self.db, id).await.map_err(db)?,
            None => None,
        };
        Ok((
            row.version,
            Arc::new(proto::event(row, tx.as_ref(), store::now_us())),
        ))
    }

    /// Tells the watchers of this process at once, and every replica through the bus.
    pub async fn announce(&self, row: &RequestRow) -> Result<(), ApiError> {
        let (version, event) = self.event_of(row).await?;
        self.watchers
            .deliver(&row.extension_id, version, event.clone());
        let message = Announcement {
            version,
            event: Some((*event).clone()),
        }
        .encode_to_vec();
        if let Err(e) = self.cache.publish(CHANNEL, &message).await {
            // The other replicas' pollers read the change from the database within a round.
            tracing::warn!(error = %e, "cannot announce a payment's new state on the bus");
        }
        Ok(())
    }

    /// The shift MIA has on the seller's terminal now, for a payment or a refund (`what`) of
    /// `transaction` just made; empty when MIA cannot say, as what was done is recorded anyway.
    pub async fn mia_shift(&self, seller: &Seller, what: &str, transaction: &str) -> String {
        match self
            .mia
            .call(seller, |client, token| async move {
                client.shift_check(&token).await
            })
            .await
        {
            Ok(shift) => shift.shift_id.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, transaction, "cannot learn the MIA shift of a {what}; it is recorded without one");
                String::new()
            }
        }
    }

    /// Records the transaction that paid a request: a new one with the MIA shift it landed
    /// in, a known one's latest type and bank details.
    async fn record_transaction(
        &self,
        row: &RequestRow,
        tx: &TxInfo,
        seller: &Seller,
    ) -> Result<(), ApiError> {
        let id = tx.summary.id.to_string();
        let known = store::transaction(&self.db, &id).await.map_err(db)?;
        let mia_shift_id = match &known {
            Some(known) => known.mia_shift_id.clone(),
            None => self.mia_shift(seller, "payment", &id).await,
        };
        let terminal = row.terminal();
        store::upsert_transaction(
            &self.db,
            &TxRow {
                transaction_id: id,
                merchant_tin: terminal.merchant_tin,
                branch_no: terminal.branch_no,
                pos_no: terminal.pos_no,
                qr_id: Some(row.qr_id.clone()),
                extension_id: Some(row.extension_id.clone()),
                amount_minor: tx.summary.amount.minor(),
                currency: if tx.summary.currency.is_empty() {
                    self.config.currency.clone()
                } else {
                    tx.summary.currency.clone()
                },
                paid_at_us: tx.summary.date.timestamp_micros(),
                tx_type: tx.summary.tx_type.as_str().to_owned(),
                rrn: tx.rrn.clone(),
                approval_code: tx.approval_code.clone(),
                mcc: tx.mcc.clone(),
                swift_message_type: tx.swift_message_type.clone(),
                swift_message_id: tx.swift_message_id.clone(),
                swift_payer_bank: tx.swift_payer_bank.clone(),
                refunded_minor: known.as_ref().map_or(0, |k| k.refunded_minor),
                mia_shift_id,
                shift_id: String::new(),
            },
        )
        .await
        .map_err(db)
    }
}

/// What MIA's returns of a transaction add up to.
pub fn returned(tx: &TxInfo) -> Money {
    tx.returns
        .iter()
        .try_fold(Money::ZERO, |sum, r| sum.checked_add(r.amount))
        .unwrap_or(tx.summary.amount)
}
