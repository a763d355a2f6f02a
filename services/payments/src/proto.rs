//! The edge between the fiscus.v1 contract and PaymentService's rows and MIA's types: enums both
//! ways, and the contract's messages built from what is stored.

use fiscus_domain::Money;
use fiscus_domain::TerminalId;
use fiscus_domain::qr::{AmountType, PaymentState, QrType};
use fiscus_proto::v1 as pb;
use fiscus_providers::mia::{QrState, TxType};

use crate::store::{QrRow, RequestRow, TxRow};

pub fn timestamp_us(us: i64) -> Option<prost_types::Timestamp> {
    let nanos = i32::try_from(us.rem_euclid(1_000_000).saturating_mul(1000)).unwrap_or(0);
    Some(prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos,
    })
}

pub fn terminal(id: &TerminalId) -> pb::Terminal {
    pb::Terminal {
        merchant_tin: id.merchant_tin.clone(),
        branch_no: id.branch_no.clone(),
        pos_no: id.pos_no.clone(),
    }
}

pub fn qr_type_from_pb(value: i32) -> Option<QrType> {
    match pb::QrType::try_from(value).ok()? {
        pb::QrType::Dynamic => Some(QrType::Dynamic),
        pb::QrType::Static => Some(QrType::Static),
        pb::QrType::Hybrid => Some(QrType::Hybrid),
        pb::QrType::Unspecified => None,
    }
}

pub fn qr_type_to_pb(qr_type: QrType) -> pb::QrType {
    match qr_type {
        QrType::Dynamic => pb::QrType::Dynamic,
        QrType::Static => pb::QrType::Static,
        QrType::Hybrid => pb::QrType::Hybrid,
    }
}

pub fn amount_type_from_pb(value: i32) -> Option<AmountType> {
    match pb::QrAmountType::try_from(value).ok()? {
        pb::QrAmountType::Fixed => Some(AmountType::Fixed),
        pb::QrAmountType::Free => Some(AmountType::Free),
        pb::QrAmountType::Controlled => Some(AmountType::Controlled),
        pb::QrAmountType::Unspecified => None,
    }
}

pub fn amount_type_to_pb(amount_type: AmountType) -> pb::QrAmountType {
    match amount_type {
        AmountType::Fixed => pb::QrAmountType::Fixed,
        AmountType::Free => pb::QrAmountType::Free,
        AmountType::Controlled => pb::QrAmountType::Controlled,
    }
}

pub fn qr_state_to_pb(state: QrState) -> pb::QrState {
    match state {
        QrState::Active => pb::QrState::Active,
        QrState::Paid => pb::QrState::Paid,
        QrState::Expired => pb::QrState::Expired,
        QrState::Cancelled => pb::QrState::Cancelled,
        // A QR MIA no longer knows is not payable any more.
        QrState::NotFound => pb::QrState::Expired,
    }
}

pub fn payment_state_to_pb(state: PaymentState) -> pb::PaymentState {
    match state {
        PaymentState::NotFound => pb::PaymentState::NotFound,
        PaymentState::Pending => pb::PaymentState::Pending,
        PaymentState::Paid => pb::PaymentState::Paid,
        PaymentState::Expired => pb::PaymentState::Expired,
        PaymentState::Cancelled => pb::PaymentState::Cancelled,
        PaymentState::Failed => pb::PaymentState::Failed,
    }
}

pub fn tx_type_to_pb(text: &str) -> pb::TransactionType {
    match TxType::parse(text) {
        Some(TxType::Paid) => pb::TransactionType::Paid,
        Some(TxType::Refunded) => pb::TransactionType::Refunded,
        Some(TxType::PartiallyRefunded) => pb::TransactionType::PartiallyRefunded,
        Some(TxType::Cancelled) => pb::TransactionType::Cancelled,
        None => pb::TransactionType::Unspecified,
    }
}

pub fn money(minor: Option<i64>) -> String {
    minor
        .map(|m| Money::from_minor(m).to_string())
        .unwrap_or_default()
}

pub fn qr(row: &QrRow, extension: Option<pb::QrExtension>, image: Vec<u8>) -> pb::Qr {
    pb::Qr {
        qr_id: row.qr_id.clone(),
        terminal: Some(terminal(&row.terminal())),
        r#type: QrType::parse(&row.qr_type)
            .map(qr_type_to_pb)
            .unwrap_or_default()
            .into(),
        amount_type: AmountType::parse(&row.amount_type)
            .map(amount_type_to_pb)
            .unwrap_or_default()
            .into(),
        qr_text: row.qr_text.clone(),
        qr_image: image,
        extension,
        state: QrState::parse(&row.state)
            .map(qr_state_to_pb)
            .unwrap_or_default()
            .into(),
        currency: row.currency.clone(),
        client_reference: row.client_reference.clone(),
        created_at: timestamp_us(row.created_at_us),
    }
}

/// A payment request as the contract shows it; `now_us` gives the seconds left.
pub fn extension(row: &RequestRow, now_us: i64) -> pb::QrExtension {
    let left = row
        .expires_at_us
        .saturating_sub(now_us)
        .max(0)
        .div_euclid(1_000_000);
    pb::QrExtension {
        extension_id: row.extension_id.clone(),
        expires_in_seconds: i32::try_from(left).unwrap_or(i32::MAX),
        expires_at: timestamp_us(row.expires_at_us),
        amount: money(row.amount_minor),
        min_amount: money(row.min_amount_minor),
        max_amount: money(row.max_amount_minor),
        client_reference: row.client_reference.clone(),
    }
}

pub fn transaction(row: &TxRow) -> pb::Transaction {
    pb::Transaction {
        id: row.transaction_id.clone(),
        terminal: Some(terminal(&row.terminal())),
        amount: Money::from_minor(row.amount_minor).to_string(),
        currency: row.currency.clone(),
        date: timestamp_us(row.paid_at_us),
        r#type: tx_type_to_pb(&row.tx_type).into(),
        rrn: row.rrn.clone(),
        approval_code: row.approval_code.clone(),
        mcc: row.mcc.clone(),
        swift_message_type: row.swift_message_type.clone(),
        swift_message_id: row.swift_message_id.clone(),
        swift_payer_bank: row.swift_payer_bank.clone(),
        // fiscus's own shift once ShiftService exists; MIA's until then.
        shift_id: if row.shift_id.is_empty() {
            row.mia_shift_id.clone()
        } else {
            row.shift_id.clone()
        },
        qr_id: row.qr_id.clone().unwrap_or_default(),
        extension_id: row.extension_id.clone().unwrap_or_default(),
        refunded_amount: Money::from_minor(row.refunded_minor).to_string(),
    }
}

/// The event of a payment request's state, with the transaction that paid it.
pub fn event(row: &RequestRow, tx: Option<&TxRow>, at_us: i64) -> pb::PaymentEvent {
    let state = PaymentState::parse(&row.state).unwrap_or(PaymentState::Pending);
    pb::PaymentEvent {
        extension_id: row.extension_id.clone(),
        qr_id: row.qr_id.clone(),
        state: payment_state_to_pb(state).into(),
        transaction: tx.map(transaction),
        message: row.error_description.clone(),
        total_payments: u32::try_from(row.total_payments).unwrap_or(0),
        timestamp: timestamp_us(at_us),
    }
}

/// A QR payment or refund of a shift, as a full report lists it.
pub fn shift_payment(p: &crate::store::ShiftPayment) -> pb::ReportTransaction {
    let kind = if p.refund {
        pb::ReportTransactionType::QrRefund
    } else {
        pb::ReportTransactionType::QrPayment
    };
    pb::ReportTransaction {
        r#type: kind.into(),
        id: p.id.clone(),
        receipt_number: 0,
        time: timestamp_us(p.at_us),
        amount: money(Some(p.amount_minor)),
        currency: p.currency.clone(),
    }
}
