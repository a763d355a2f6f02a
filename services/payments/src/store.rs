//! PaymentService's tables on Postgres or SQLite: QR codes, payment requests (with their watch
//! marks and poll claims), transactions, refunds and creations whose answer was lost.

use fiscus_domain::TerminalId;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::{with_db, with_tx};

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QrRow {
    pub qr_id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub qr_type: String,
    pub amount_type: String,
    pub qr_text: String,
    pub state: String,
    pub currency: String,
    pub client_reference: String,
    pub operation_id: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl QrRow {
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub extension_id: String,
    pub qr_id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub qr_type: String,
    pub amount_type: String,
    pub amount_minor: Option<i64>,
    pub min_amount_minor: Option<i64>,
    pub max_amount_minor: Option<i64>,
    pub client_reference: String,
    pub expires_at_us: i64,
    pub state: String,
    pub error_description: String,
    pub total_payments: i64,
    pub last_transaction_id: Option<String>,
    pub version: i64,
    pub seller_session_id: String,
    pub operation_id: String,
    pub created_at_us: i64,
}

impl RequestRow {
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TxRow {
    pub transaction_id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub qr_id: Option<String>,
    pub extension_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub paid_at_us: i64,
    pub tx_type: String,
    pub rrn: String,
    pub approval_code: String,
    pub mcc: String,
    pub swift_message_type: String,
    pub swift_message_id: String,
    pub swift_payer_bank: String,
    pub refunded_minor: i64,
    pub mia_shift_id: String,
    pub shift_id: String,
}

impl TxRow {
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub operation_id: String,
    pub amount_minor: i64,
    pub state: String,
    pub refund_request_id: Option<String>,
}

pub const REFUND_SENT: &str = "SENT";
pub const REFUND_DONE: &str = "DONE";

const QR_COLUMNS: &str = "qr_id, merchant_tin, branch_no, pos_no, qr_type, amount_type, qr_text, \
     state, currency, client_reference, operation_id, created_at_us, updated_at_us";

const REQUEST_COLUMNS: &str = "extension_id, qr_id, merchant_tin, branch_no, pos_no, qr_type, \
     amount_type, amount_minor, min_amount_minor, max_amount_minor, client_reference, expires_at_us, \
     state, error_description, total_payments, last_transaction_id, version, seller_session_id, \
     operation_id, created_at_us";

const TX_COLUMNS: &str = "transaction_id, merchant_tin, branch_no, pos_no, qr_id, extension_id, \
     amount_minor, currency, paid_at_us, tx_type, rrn, approval_code, mcc, swift_message_type, \
     swift_message_id, swift_payer_bank, refunded_minor, mia_shift_id, shift_id";

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first.saturating_add(count))
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- QR codes and payment requests ----

/// Records a new QR code and the payment request it carries, and forgets the creation's
/// attempt, in one transaction.
pub async fn insert_qr(
    db: &Database,
    qr: &QrRow,
    request: Option<&RequestRow>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    with_tx!(&mut tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO qrs ({QR_COLUMNS}) VALUES ({})",
            placeholders(1, 13)
        )))
        .bind(&qr.qr_id)
        .bind(&qr.merchant_tin)
        .bind(&qr.branch_no)
        .bind(&qr.pos_no)
        .bind(&qr.qr_type)
        .bind(&qr.amount_type)
        .bind(&qr.qr_text)
        .bind(&qr.state)
        .bind(&qr.currency)
        .bind(&qr.client_reference)
        .bind(&qr.operation_id)
        .bind(qr.created_at_us)
        .bind(qr.updated_at_us)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM upstream_attempts WHERE operation_id = $1")
            .bind(&qr.operation_id)
            .execute(&mut *conn)
            .await?;
    });
    if let Some(request) = request {
        insert_request_in(&mut tx, request).await?;
    }
    tx.commit().await
}

/// Records a new payment request and forgets its creation's attempt, in one transaction.
pub async fn insert_request(db: &Database, request: &RequestRow) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    insert_request_in(&mut tx, request).await?;
    tx.commit().await
}

async fn insert_request_in(
    tx: &mut fiscus_kit::db::Tx,
    request: &RequestRow,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO payment_requests ({REQUEST_COLUMNS}, updated_at_us) VALUES ({})",
            placeholders(1, 21)
        )))
        .bind(&request.extension_id)
        .bind(&request.qr_id)
        .bind(&request.merchant_tin)
        .bind(&request.branch_no)
        .bind(&request.pos_no)
        .bind(&request.qr_type)
        .bind(&request.amount_type)
        .bind(request.amount_minor)
        .bind(request.min_amount_minor)
        .bind(request.max_amount_minor)
        .bind(&request.client_reference)
        .bind(request.expires_at_us)
        .bind(&request.state)
        .bind(&request.error_description)
        .bind(request.total_payments)
        .bind(&request.last_transaction_id)
        .bind(request.version)
        .bind(&request.seller_session_id)
        .bind(&request.operation_id)
        .bind(request.created_at_us)
        .bind(request.created_at_us)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM upstream_attempts WHERE operation_id = $1")
            .bind(&request.operation_id)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

pub async fn qr(db: &Database, qr_id: &str) -> Result<Option<QrRow>, sqlx::Error> {
    let sql = format!("SELECT {QR_COLUMNS} FROM qrs WHERE qr_id = $1");
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(qr_id)
        .fetch_optional(pool)
        .await)
}

pub async fn qrs(db: &Database, ids: &[String]) -> Result<Vec<QrRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {QR_COLUMNS} FROM qrs WHERE qr_id IN ({})",
        placeholders(1, ids.len())
    );
    with_db!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await
    })
}

/// The terminal's static or hybrid QR code that fiscus last knew to be active.
pub async fn active_permanent_qr(
    db: &Database,
    terminal: &TerminalId,
) -> Result<Option<QrRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {QR_COLUMNS} FROM qrs WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
         AND state = 'active' AND qr_type IN ('static', 'hybrid') ORDER BY created_at_us DESC LIMIT 1"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .fetch_optional(pool)
        .await)
}

pub async fn set_qr_state(db: &Database, qr_id: &str, state: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "UPDATE qrs SET state = $2, updated_at_us = $3 WHERE qr_id = $1 AND state <> $2"
    )
    .bind(qr_id)
    .bind(state)
    .bind(now_us())
    .execute(pool)
    .await
    .map(drop))
}

pub async fn request(db: &Database, extension_id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM payment_requests WHERE extension_id = $1");
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(extension_id)
        .fetch_optional(pool)
        .await)
}

pub async fn requests(db: &Database, ids: &[String]) -> Result<Vec<RequestRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM payment_requests WHERE extension_id IN ({})",
        placeholders(1, ids.len())
    );
    with_db!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await
    })
}

/// The newest payment request of a QR code (a dynamic QR's only one).
pub async fn newest_request_of(
    db: &Database,
    qr_id: &str,
) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM payment_requests WHERE qr_id = $1 \
         ORDER BY created_at_us DESC LIMIT 1"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(qr_id)
        .fetch_optional(pool)
        .await)
}

/// The payment requests of a QR code that are still pending here.
pub async fn pending_requests_of(
    db: &Database,
    qr_id: &str,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM payment_requests WHERE qr_id = $1 AND state = 'pending'"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(qr_id)
        .fetch_all(pool)
        .await)
}

/// A new state of a payment request, written only over the version it was read at; `true` when
/// this call wrote it (the version then grew by one).
pub async fn observe(
    db: &Database,
    extension_id: &str,
    read_at_version: i64,
    state: &str,
    total_payments: i64,
    error_description: &str,
    last_transaction_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let written = with_db!(db, |pool| sqlx::query(
        "UPDATE payment_requests SET state = $3, total_payments = $4, error_description = $5, \
         last_transaction_id = COALESCE($6, last_transaction_id), version = version + 1, \
         updated_at_us = $7 WHERE extension_id = $1 AND version = $2"
    )
    .bind(extension_id)
    .bind(read_at_version)
    .bind(state)
    .bind(total_payments)
    .bind(error_description)
    .bind(last_transaction_id)
    .bind(now_us())
    .execute(pool)
    .await?
    .rows_affected());
    Ok(written == 1)
}

/// Marks the requests this process watches as watched until `until_us`, by `session` each.
pub async fn mark_watched(
    db: &Database,
    watched: &[(String, String)],
    until_us: i64,
) -> Result<(), sqlx::Error> {
    for (extension_id, session) in watched {
        with_db!(db, |pool| sqlx::query(
            "UPDATE payment_requests SET watched_until_us = $2, seller_session_id = $3 \
             WHERE extension_id = $1"
        )
        .bind(extension_id)
        .bind(until_us)
        .bind(session)
        .execute(pool)
        .await
        .map(drop))?;
    }
    Ok(())
}

/// Claims the watched requests whose poll is due for this replica: each one is claimed by one
/// replica per round (the one that moves `next_poll_at_us` first). `only` limits the claim to
/// one request (a watcher that just opened).
pub async fn claim_due(
    db: &Database,
    now_us: i64,
    next_poll_at_us: i64,
    only: Option<&str>,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE payment_requests SET next_poll_at_us = $2 \
         WHERE watched_until_us > $1 AND next_poll_at_us <= $1 \
         AND (state = 'pending' OR (state = 'paid' AND qr_type = 'static' AND expires_at_us > $1)) \
         AND ($3 = '' OR extension_id = $3) RETURNING {REQUEST_COLUMNS}"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now_us)
        .bind(next_poll_at_us)
        .bind(only.unwrap_or(""))
        .fetch_all(pool)
        .await)
}

/// Claims one request for a poll now, and marks it watched, unless a replica polled it within
/// its round; `true` when claimed.
pub async fn claim_now(
    db: &Database,
    extension_id: &str,
    session: &str,
    now_us: i64,
    next_poll_at_us: i64,
    watched_until_us: i64,
) -> Result<bool, sqlx::Error> {
    // The row says this call's time only when this call moved the poll forward.
    let next: Option<i64> = with_db!(db, |pool| sqlx::query_scalar(
        "UPDATE payment_requests SET watched_until_us = $4, seller_session_id = $5, \
         next_poll_at_us = CASE WHEN next_poll_at_us <= $2 THEN $3 ELSE next_poll_at_us END \
         WHERE extension_id = $1 RETURNING next_poll_at_us"
    )
    .bind(extension_id)
    .bind(now_us)
    .bind(next_poll_at_us)
    .bind(watched_until_us)
    .bind(session)
    .fetch_optional(pool)
    .await)?;
    Ok(next == Some(next_poll_at_us))
}

// ---- transactions ----

pub async fn transaction(db: &Database, id: &str) -> Result<Option<TxRow>, sqlx::Error> {
    let sql = format!("SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id = $1");
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await)
}

pub async fn transactions(db: &Database, ids: &[String]) -> Result<Vec<TxRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {TX_COLUMNS} FROM transactions WHERE transaction_id IN ({})",
        placeholders(1, ids.len())
    );
    with_db!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await
    })
}

/// The shift `terminal`'s payments and refunds are recorded in now (empty for none), read under
/// a share lock that a shift change waits for until `tx` ends.
async fn terminal_shift(tx: &mut Tx, terminal: &TerminalId) -> Result<String, sqlx::Error> {
    const SQL: &str = "SELECT shift_id FROM terminal_shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3";
    let shift: Option<String> = match tx {
        Tx::Postgres(tx) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{SQL} FOR SHARE")))
                .bind(&terminal.merchant_tin)
                .bind(&terminal.branch_no)
                .bind(&terminal.pos_no)
                .fetch_optional(&mut **tx)
                .await?
        }
        // SQLite has one writer at a time: the write that follows in `tx` orders it.
        Tx::Sqlite(tx) => {
            sqlx::query_scalar(SQL)
                .bind(&terminal.merchant_tin)
                .bind(&terminal.branch_no)
                .bind(&terminal.pos_no)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    Ok(shift.unwrap_or_default())
}

/// Makes `shift_id` (empty: none) the shift of `terminal`'s later payments and refunds, once
/// every payment or refund recorded in the shift it ends has committed; answers the one before.
pub async fn set_terminal_shift(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
) -> Result<String, sqlx::Error> {
    let mut tx = db.begin().await?;
    let previous: Option<String> = with_tx!(&mut tx, |conn| sqlx::query_scalar(
        "SELECT shift_id FROM terminal_shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(&mut *conn)
    .await?);
    with_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO terminal_shifts (merchant_tin, branch_no, pos_no, shift_id) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (merchant_tin, branch_no, pos_no) DO UPDATE SET shift_id = excluded.shift_id"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .execute(&mut *conn)
    .await
    .map(drop)?);
    tx.commit().await?;
    Ok(previous.unwrap_or_default())
}

/// Records a transaction as MIA describes it: a new one whole, in its terminal's shift of now;
/// a known one's type and bank details (its terminal, request, shifts and what fiscus refunded
/// of it stay).
pub async fn upsert_transaction(db: &Database, tx: &TxRow) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO transactions ({TX_COLUMNS}, recorded_at_us) VALUES ({}) \
         ON CONFLICT (transaction_id) DO UPDATE SET tx_type = excluded.tx_type, \
         rrn = excluded.rrn, approval_code = excluded.approval_code, mcc = excluded.mcc, \
         swift_message_type = excluded.swift_message_type, \
         swift_message_id = excluded.swift_message_id, \
         swift_payer_bank = excluded.swift_payer_bank, \
         qr_id = COALESCE(transactions.qr_id, excluded.qr_id), \
         extension_id = COALESCE(transactions.extension_id, excluded.extension_id)",
        placeholders(1, 20)
    );
    let mut write = db.begin().await?;
    let shift_id = terminal_shift(&mut write, &tx.terminal()).await?;
    with_tx!(&mut write, |conn| sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&tx.transaction_id)
        .bind(&tx.merchant_tin)
        .bind(&tx.branch_no)
        .bind(&tx.pos_no)
        .bind(&tx.qr_id)
        .bind(&tx.extension_id)
        .bind(tx.amount_minor)
        .bind(&tx.currency)
        .bind(tx.paid_at_us)
        .bind(&tx.tx_type)
        .bind(&tx.rrn)
        .bind(&tx.approval_code)
        .bind(&tx.mcc)
        .bind(&tx.swift_message_type)
        .bind(&tx.swift_message_id)
        .bind(&tx.swift_payer_bank)
        .bind(tx.refunded_minor)
        .bind(&tx.mia_shift_id)
        .bind(&shift_id)
        .bind(now_us())
        .execute(&mut *conn)
        .await
        .map(drop)?);
    write.commit().await
}

// ---- refunds ----

pub async fn refund(db: &Database, operation_id: &str) -> Result<Option<RefundRow>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT operation_id, amount_minor, state, refund_request_id \
         FROM refunds WHERE operation_id = $1"
    )
    .bind(operation_id)
    .fetch_optional(pool)
    .await)
}

/// Refunds of a transaction posted to MIA whose outcome is not known yet.
pub async fn sent_refunds(
    db: &Database,
    transaction_id: &str,
) -> Result<Vec<RefundRow>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT operation_id, amount_minor, state, refund_request_id \
         FROM refunds WHERE transaction_id = $1 AND state = 'SENT'"
    )
    .bind(transaction_id)
    .fetch_all(pool)
    .await)
}

/// MIA's request ids of the transaction's refunds fiscus knows are done.
pub async fn done_request_ids(
    db: &Database,
    transaction_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar(
        "SELECT refund_request_id FROM refunds WHERE transaction_id = $1 AND state = 'DONE' \
         AND refund_request_id IS NOT NULL"
    )
    .bind(transaction_id)
    .fetch_all(pool)
    .await)
}

/// Records a refund about to be posted; `false` when another refund of the transaction is
/// still without an outcome (one at a time). Its shift is the one it is made in, recorded when
/// it is done ([`complete_refund`]).
pub async fn insert_sent_refund(
    db: &Database,
    operation_id: &str,
    transaction_id: &str,
    amount_minor: i64,
    full_refund: bool,
    reason_code: &str,
    reason_message: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = with_db!(db, |pool| {
        sqlx::query(
        "INSERT INTO refunds (operation_id, transaction_id, amount_minor, full_refund, reason_code, \
         reason_message, state, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, 'SENT', $7) \
         ON CONFLICT DO NOTHING"
    )
    .bind(operation_id)
    .bind(transaction_id)
    .bind(amount_minor)
    .bind(full_refund)
    .bind(reason_code)
    .bind(reason_message)
    .bind(now_us())
    .execute(pool)
    .await?
    .rows_affected()
    });
    Ok(inserted == 1)
}

/// A refund MIA did: DONE with its request id, the MIA shift it was made in and its terminal's
/// shift of now, and counted against its transaction, at once.
pub async fn complete_refund(
    db: &Database,
    operation_id: &str,
    transaction_id: &str,
    amount_minor: i64,
    request_id: &str,
    tx_type: &str,
    mia_shift_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let terminal: Option<(String, String, String)> = with_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT merchant_tin, branch_no, pos_no FROM transactions WHERE transaction_id = $1"
    )
    .bind(transaction_id)
    .fetch_optional(&mut *conn)
    .await?);
    let shift_id = match terminal {
        Some((tin, branch, pos)) => {
            terminal_shift(&mut tx, &TerminalId::of(&tin, &branch, &pos)).await?
        }
        None => String::new(),
    };
    with_tx!(&mut tx, |conn| {
        let done = sqlx::query(
            "UPDATE refunds SET state = 'DONE', refund_request_id = $2, completed_at_us = $3, \
             mia_shift_id = $4, shift_id = $5 WHERE operation_id = $1 AND state = 'SENT'",
        )
        .bind(operation_id)
        .bind(request_id)
        .bind(now_us())
        .bind(mia_shift_id)
        .bind(&shift_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if done == 1 {
            sqlx::query(
                "UPDATE transactions SET refunded_minor = refunded_minor + $2, tx_type = $3 \
                 WHERE transaction_id = $1",
            )
            .bind(transaction_id)
            .bind(amount_minor)
            .bind(tx_type)
            .execute(&mut *conn)
            .await?;
        }
    });
    tx.commit().await
}

/// Forgets a refund MIA did not do.
pub async fn drop_refund(db: &Database, operation_id: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "DELETE FROM refunds WHERE operation_id = $1 AND state = 'SENT'"
    )
    .bind(operation_id)
    .execute(pool)
    .await
    .map(drop))
}

// ---- creations whose answer was lost ----

/// When the creation `operation_id` was posted, if its answer never came.
pub async fn attempt(db: &Database, operation_id: &str) -> Result<Option<i64>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar(
        "SELECT sent_at_us FROM upstream_attempts WHERE operation_id = $1"
    )
    .bind(operation_id)
    .fetch_optional(pool)
    .await)
}

pub async fn record_attempt(
    db: &Database,
    operation_id: &str,
    rpc: &str,
    subject: &str,
) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| {
        sqlx::query(
        "INSERT INTO upstream_attempts (operation_id, rpc, subject, sent_at_us) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (operation_id) DO NOTHING"
    )
    .bind(operation_id)
    .bind(rpc)
    .bind(subject)
    .bind(now_us())
    .execute(pool)
    .await
    .map(drop)
    })
}

pub async fn forget_attempt(db: &Database, operation_id: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "DELETE FROM upstream_attempts WHERE operation_id = $1"
    )
    .bind(operation_id)
    .execute(pool)
    .await
    .map(drop))
}

/// Raises what is counted refunded of a transaction to `minor` (MIA's returns of it), never
/// lowers it.
pub async fn raise_refunded(
    db: &Database,
    transaction_id: &str,
    minor: i64,
) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| {
        sqlx::query(
        "UPDATE transactions SET refunded_minor = $2 WHERE transaction_id = $1 AND refunded_minor < $2"
    )
    .bind(transaction_id)
    .bind(minor)
    .execute(pool)
    .await
    .map(drop)
    })
}

// ---- shifts ----

/// A shift's QR payments and refunds: how many, and their amounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShiftTotals {
    pub payments: i64,
    pub paid_minor: i64,
    pub refunds: i64,
    pub refunded_minor: i64,
}

pub async fn shift_totals(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
) -> Result<ShiftTotals, sqlx::Error> {
    let (payments, paid_minor, refunds, refunded_minor): (i64, i64, i64, i64) =
        with_db!(db, |pool| sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM transactions t WHERE t.merchant_tin = $1 \
                  AND t.branch_no = $2 AND t.pos_no = $3 AND t.shift_id = $4), \
               (SELECT CAST(COALESCE(SUM(t.amount_minor), 0) AS BIGINT) FROM transactions t \
                  WHERE t.merchant_tin = $1 AND t.branch_no = $2 AND t.pos_no = $3 \
                  AND t.shift_id = $4), \
               (SELECT COUNT(*) FROM refunds r JOIN transactions t USING (transaction_id) \
                  WHERE t.merchant_tin = $1 AND t.branch_no = $2 AND t.pos_no = $3 \
                  AND r.shift_id = $4 AND r.state = 'DONE'), \
               (SELECT CAST(COALESCE(SUM(r.amount_minor), 0) AS BIGINT) FROM refunds r \
                  JOIN transactions t USING (transaction_id) \
                  WHERE t.merchant_tin = $1 AND t.branch_no = $2 AND t.pos_no = $3 \
                  AND r.shift_id = $4 AND r.state = 'DONE')"
        )
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .bind(shift_id)
        .fetch_one(pool)
        .await?);
    Ok(ShiftTotals {
        payments,
        paid_minor,
        refunds,
        refunded_minor,
    })
}

/// One QR payment or refund of a shift, as a full report lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShiftPayment {
    pub id: String,
    pub refund: bool,
    pub amount_minor: i64,
    pub currency: String,
    pub at_us: i64,
}

/// A shift's QR payments and refunds at or after `from_us` (past `after_id` at `from_us`), in
/// time order, at most `limit`.
pub async fn shift_payments(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
    (from_us, after_id): (i64, &str),
    limit: i64,
) -> Result<Vec<ShiftPayment>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT id, refund, amount_minor, currency, at_us FROM (\
           SELECT t.transaction_id AS id, false AS refund, t.amount_minor, t.currency, \
             t.paid_at_us AS at_us FROM transactions t \
           WHERE t.merchant_tin = $1 AND t.branch_no = $2 AND t.pos_no = $3 AND t.shift_id = $4 \
           UNION ALL \
           SELECT COALESCE(r.refund_request_id, r.operation_id) AS id, true AS refund, \
             r.amount_minor, t.currency, COALESCE(r.completed_at_us, r.created_at_us) AS at_us \
           FROM refunds r JOIN transactions t USING (transaction_id) \
           WHERE t.merchant_tin = $1 AND t.branch_no = $2 AND t.pos_no = $3 \
             AND r.shift_id = $4 AND r.state = 'DONE') p \
         WHERE at_us > $5 OR (at_us = $5 AND id > $6) \
         ORDER BY at_us, id LIMIT $7"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .bind(from_us)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await)
}

/// The shift `terminal`'s payments and refunds are recorded in now (empty for none), read
/// without a lock: ShiftService changes it one call at a time per terminal.
pub async fn current_terminal_shift(
    db: &Database,
    terminal: &TerminalId,
) -> Result<String, sqlx::Error> {
    let shift: Option<String> = with_db!(db, |pool| sqlx::query_scalar(
        "SELECT shift_id FROM terminal_shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(pool)
    .await?);
    Ok(shift.unwrap_or_default())
}

/// The MIA shift of a fiscus shift.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShiftMiaRow {
    pub shift_id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub mia_shift_id: String,
    pub seller_session_id: String,
    pub closed_at_us: Option<i64>,
}

impl ShiftMiaRow {
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

pub async fn shift_mia(db: &Database, shift_id: &str) -> Result<Option<ShiftMiaRow>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT shift_id, merchant_tin, branch_no, pos_no, mia_shift_id, seller_session_id, \
         closed_at_us FROM shift_mia WHERE shift_id = $1"
    )
    .bind(shift_id)
    .fetch_optional(pool)
    .await)
}

/// Records `row` as the MIA shift of its fiscus shift, over what was recorded before.
pub async fn put_shift_mia(db: &Database, row: &ShiftMiaRow) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "INSERT INTO shift_mia (shift_id, merchant_tin, branch_no, pos_no, mia_shift_id, \
         seller_session_id, closed_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (shift_id) DO UPDATE SET mia_shift_id = excluded.mia_shift_id, \
         seller_session_id = excluded.seller_session_id, closed_at_us = excluded.closed_at_us"
    )
    .bind(&row.shift_id)
    .bind(&row.merchant_tin)
    .bind(&row.branch_no)
    .bind(&row.pos_no)
    .bind(&row.mia_shift_id)
    .bind(&row.seller_session_id)
    .bind(row.closed_at_us)
    .execute(pool)
    .await
    .map(drop))
}
