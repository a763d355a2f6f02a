//! The receipt journal: signing, refunding, cancelling and verifying receipts of per-terminal
//! hash chains, each exactly once per operation.

mod amend;
mod pending;
mod shifts;
mod sign;

pub use sign::close_late_signing;
mod verify;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fiscus_domain::receipt::{FiscalState, ReceiptKind};
use fiscus_domain::{Money, Receipt, TerminalId};
use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::config::MasterKey;
use fiscus_kit::db::{Database, DatabaseStatus};
use fiscus_kit::health::ServiceHealth;
use fiscus_kit::idempotency::Operation;
use fiscus_proto::v1 as pb;
use prost::Message;

use crate::append::Appender;
use crate::config::Policy;
use crate::outbox::Outbox;
use crate::proto::{self, ToPb};
use crate::signers::Signers;
use crate::store::{self, StoredReceipt};
use crate::validate::Draft;
use crate::watch::Watchers;

pub struct Journal {
    pub db: Database,
    db_status: DatabaseStatus,
    cache: SharedCache,
    pub policy: Policy,
    signers: Signers,
    appender: Appender,
    /// Where changes of a receipt's fiscal state are announced.
    watchers: Arc<Watchers>,
    /// Where receipts of upstream merchants are delivered from.
    pub outbox: Arc<Outbox>,
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, ApiError> {
    M::decode(bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored response does not decode: {e}")))
}

/// A stored receipt that is not what fiscus writes: its document or a column does not read.
fn corrupt(id: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("stored receipt {id} is corrupt: {what}"))
}

impl Journal {
    /// A zero receipt fiscus makes itself on `terminal` (the end of late signing, a shift's
    /// closing), validated as SignReceipt validates a client's, with `reference` and
    /// `receipt_case`; its operation id is made of `occasion`, so one occasion journals one
    /// however often it comes up, in however many replicas.
    fn own_zero_receipt(
        &self,
        terminal: &TerminalId,
        occasion: &str,
        reference: String,
        receipt_case: u64,
        now: DateTime<Utc>,
    ) -> Result<(Draft, Operation), ApiError> {
        const NAMESPACE: uuid::Uuid =
            uuid::Uuid::from_u128(0x6669_7363_7573_2d7a_6572_6f2d_6f77_6e01);
        let operation_id = uuid::Uuid::new_v5(&NAMESPACE, occasion.as_bytes()).to_string();
        let mut request = pb::SignReceiptRequest {
            operation_id: operation_id.clone(),
            terminal: Some(pb::Terminal {
                merchant_tin: terminal.merchant_tin.clone(),
                branch_no: terminal.branch_no.clone(),
                pos_no: terminal.pos_no.clone(),
            }),
            kind: pb::ReceiptKind::Zero.into(),
            receipt_reference: reference,
            receipt_case,
            ..Default::default()
        };
        let mut v = crate::validate::Violations::default();
        let draft = crate::validate::sign_request(&request, &self.policy, now, &mut v);
        v.into_result()?;
        let draft = draft.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        let operation = Operation::new(
            &terminal.merchant_tin,
            &operation_id,
            "SignReceipt",
            &mut request,
        );
        Ok((draft, operation))
    }
}

impl StoredReceipt {
    /// The signed receipt, read from its document.
    pub fn receipt(&self) -> Result<Receipt, ApiError> {
        Receipt::parse(self.document.as_bytes()).map_err(|e| corrupt(&self.id, e))
    }

    /// The API view: the signed receipt and where it stands now.
    pub fn view(&self, document: proto::Document<'_>) -> Result<pb::Receipt, ApiError> {
        let standing = self.standing().map_err(|e| corrupt(&self.id, e))?;
        Ok(proto::receipt(&self.receipt()?, &standing, document))
    }

    /// The view an export gives, signed document included. An export never leaves a receipt
    /// out: one whose document or state does not read goes out with what its columns hold and
    /// its document as stored (VerifyJournal names what is wrong with it).
    pub fn exported(&self) -> pb::Receipt {
        self.view(proto::Document::Included(&self.document))
            .unwrap_or_else(|_| pb::Receipt {
                id: self.id.clone(),
                terminal: Some(pb::Terminal {
                    merchant_tin: self.merchant_tin.clone(),
                    branch_no: self.branch_no.clone(),
                    pos_no: self.pos_no.clone(),
                }),
                receipt_number: u64::try_from(self.number).unwrap_or_default(),
                kind: ReceiptKind::parse(&self.kind).map_or(0, |k| k.to_pb().into()),
                total_amount: Money::from_minor(self.total_minor).to_string(),
                total_vat: Money::from_minor(self.vat_minor).to_string(),
                total_city_tax: Money::from_minor(self.city_tax_minor).to_string(),
                fiscal_state: FiscalState::parse(&self.fiscal_state)
                    .map_or(0, |s| s.to_pb().into()),
                previous_hash: self.previous_hash.clone(),
                hash: self.hash.clone(),
                signature: self.signature.clone(),
                key_id: self.key_id.clone(),
                created_at: proto::micros_timestamp(self.created_at_us),
                signed_document: self.document.clone(),
                ..Default::default()
            })
    }
}

impl Journal {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Database,
        db_status: DatabaseStatus,
        cache: SharedCache,
        policy: Policy,
        master: MasterKey,
        health: ServiceHealth,
        watchers: Arc<Watchers>,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self {
            signers: Signers::new(db.clone(), master),
            appender: Appender::new(db.clone(), cache.clone(), health),
            db,
            db_status,
            cache,
            policy,
            watchers,
            outbox,
        }
    }

    /// A receipt as it stands now, for an answer that said PENDING when it was made (a replay,
    /// or an answer that waited for the provider).
    pub async fn current(&self, receipt: pb::Receipt) -> Result<pb::Receipt, ApiError> {
        if receipt.fiscal_state() != pb::FiscalState::Pending {
            return Ok(receipt);
        }
        match store::find(&self.db, &store::Lookup::Id(&receipt.id)).await? {
            Some(stored) => stored.view(proto::Document::Omitted),
            None => Ok(receipt),
        }
    }

    fn announce(&self, receipt: &pb::Receipt) {
        self.watchers.announce(pb::ReceiptEvent {
            receipt_id: receipt.id.clone(),
            state: receipt.fiscal_state,
            message: receipt.state_message.clone(),
            timestamp: Some(proto::timestamp(Utc::now())),
        });
    }
}
