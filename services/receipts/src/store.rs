//! The journal's SQL: one text per query, run on Postgres or SQLite.

use std::collections::HashMap;

use fiscus_kit::db::{Database, Tx};
use fiscus_kit::idempotency::Operation;
use fiscus_kit::{with_db, with_tx};

use crate::document::Standing;
use crate::validate::TerminalId;

/// The columns every receipt read selects, in [`StoredReceipt`]'s order.
const RECEIPT_COLUMNS: &str = "id, merchant_tin, branch_no, pos_no, number, kind, fiscal_state, \
     state_message, shift_id, cancelled_by, cancelled_at_us, cancellation_reason, document, \
     previous_hash, hash, signature, key_id, total_minor, vat_minor, city_tax_minor, \
     created_at_us, original_receipt_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredReceipt {
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub number: i64,
    pub kind: String,
    pub fiscal_state: String,
    pub state_message: String,
    pub shift_id: String,
    pub cancelled_by: Option<String>,
    pub cancelled_at_us: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub document: String,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_id: String,
    pub total_minor: i64,
    pub vat_minor: i64,
    pub city_tax_minor: i64,
    pub created_at_us: i64,
    pub original_receipt_id: Option<String>,
}

impl StoredReceipt {
    pub fn standing(&self) -> Standing {
        Standing {
            shift_id: self.shift_id.clone(),
            fiscal_state: self.fiscal_state.clone(),
            state_message: self.state_message.clone(),
            cancelled_by: self.cancelled_by.clone(),
            cancelled_at_us: self.cancelled_at_us,
            cancellation_reason: self.cancellation_reason.clone(),
            previous_hash: self.previous_hash.clone(),
            hash: self.hash.clone(),
            signature: self.signature.clone(),
            created_at_us: self.created_at_us,
        }
    }

    pub fn terminal(&self) -> TerminalId {
        TerminalId {
            merchant_tin: self.merchant_tin.clone(),
            branch_no: self.branch_no.clone(),
            pos_no: self.pos_no.clone(),
        }
    }
}

/// A receipt about to be appended.
#[derive(Debug)]
pub struct NewReceipt<'a> {
    pub id: &'a str,
    pub merchant_tin: &'a str,
    pub branch_no: &'a str,
    pub pos_no: &'a str,
    pub number: u64,
    pub kind: &'a str,
    pub receipt_type: &'a str,
    pub reference: &'a str,
    pub totals: [i64; 3],
    pub currency: &'a str,
    pub original_receipt_id: Option<&'a str>,
    pub fiscal_state: &'a str,
    pub document: &'a str,
    pub previous_hash: &'a [u8],
    pub hash: &'a [u8],
    pub signature: &'a [u8],
    pub key_id: &'a str,
    pub created_at_us: i64,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Locks the terminal's chain head for this transaction (creating it at the genesis hash) and
/// answers its last number and hash: for appends that read the journal before they write.
pub async fn lock_head(tx: &mut Tx, terminal: &TerminalId) -> Result<(u64, Vec<u8>), sqlx::Error> {
    let (number, hash): (i64, Vec<u8>) = with_tx!(tx, |conn| sqlx::query_as(
        "INSERT INTO chain_heads (merchant_tin, branch_no, pos_no, last_number, last_hash) \
         VALUES ($1, $2, $3, 0, $4) \
         ON CONFLICT (merchant_tin, branch_no, pos_no) \
         DO UPDATE SET last_number = chain_heads.last_number \
         RETURNING last_number, last_hash"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(&fiscus_domain::chain::GENESIS[..])
    .fetch_one(conn)
    .await?);
    Ok((u64::try_from(number).unwrap_or(0), hash))
}

/// How an append found the terminal's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The receipt is in the journal, with its operation row, and the head has moved to it.
    Done,
    /// The head was no longer the receipt's previous one (another writer appended first):
    /// nothing was written.
    Moved,
}

/// The receipt row's columns, bound by [`bind_receipt!`] in this order.
const RECEIPT_INSERT_COLUMNS: &str = "id, merchant_tin, branch_no, pos_no, number, kind, \
     receipt_type, reference, total_minor, vat_minor, city_tax_minor, currency, \
     original_receipt_id, fiscal_state, document, previous_hash, hash, signature, key_id, \
     created_at_us";

macro_rules! bind_receipt {
    ($query:expr, $r:expr) => {
        $query
            .bind($r.id)
            .bind($r.merchant_tin)
            .bind($r.branch_no)
            .bind($r.pos_no)
            .bind(to_i64($r.number))
            .bind($r.kind)
            .bind($r.receipt_type)
            .bind($r.reference)
            .bind($r.totals[0])
            .bind($r.totals[1])
            .bind($r.totals[2])
            .bind($r.currency)
            .bind($r.original_receipt_id)
            .bind($r.fiscal_state)
            .bind($r.document)
            .bind($r.previous_hash)
            .bind($r.hash)
            .bind($r.signature)
            .bind($r.key_id)
            .bind($r.created_at_us)
    };
}

/// On Postgres an append is one statement: it moves the head only from the receipt's previous
/// number and hash (taking the head's row lock), inserts the receipt only where the head moved,
/// and the completed operation row only where the receipt went in. A duplicate operation id
/// fails the whole statement on the operations key.
static APPEND_POSTGRES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH head AS (\
            UPDATE chain_heads SET last_number = $5, last_hash = $17 \
            WHERE merchant_tin = $2 AND branch_no = $3 AND pos_no = $4 \
              AND last_number = $5 - 1 AND last_hash = $16 \
            RETURNING 1), \
         receipt AS (\
            INSERT INTO receipts ({RECEIPT_INSERT_COLUMNS}) \
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                   $18, $19, $20 FROM head \
            RETURNING 1) \
         INSERT INTO operations (tenant, operation_id, rpc, fingerprint, response, completed_at) \
         SELECT $21, $22, $23, $24, $25, CURRENT_TIMESTAMP FROM receipt"
    )
});

static INSERT_RECEIPT_SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO receipts ({RECEIPT_INSERT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    )
});

async fn append_postgres<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    receipt: &NewReceipt<'_>,
    operation: &Operation,
    response: &[u8],
) -> Result<Appended, sqlx::Error> {
    let inserted = bind_receipt!(
        sqlx::query(sqlx::AssertSqlSafe(APPEND_POSTGRES.as_str())),
        receipt
    )
    .bind(&operation.tenant)
    .bind(&operation.id)
    .bind(operation.rpc)
    .bind(&operation.fingerprint[..])
    .bind(response)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if inserted == 1 {
        Appended::Done
    } else {
        Appended::Moved
    })
}

/// SQLite has no writing CTEs: the same three writes, inside the caller's transaction.
async fn append_sqlite(
    conn: &mut sqlx::SqliteConnection,
    receipt: &NewReceipt<'_>,
    operation: &Operation,
    response: &[u8],
) -> Result<Appended, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE chain_heads SET last_number = $4, last_hash = $6 \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
           AND last_number = $4 - 1 AND last_hash = $5",
    )
    .bind(receipt.merchant_tin)
    .bind(receipt.branch_no)
    .bind(receipt.pos_no)
    .bind(to_i64(receipt.number))
    .bind(receipt.previous_hash)
    .bind(receipt.hash)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(Appended::Moved);
    }
    bind_receipt!(
        sqlx::query(sqlx::AssertSqlSafe(INSERT_RECEIPT_SQLITE.as_str())),
        receipt
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO operations (tenant, operation_id, rpc, fingerprint, response, completed_at) \
         VALUES ($1, $2, $3, $4, $5, CURRENT_TIMESTAMP)",
    )
    .bind(&operation.tenant)
    .bind(&operation.id)
    .bind(operation.rpc)
    .bind(&operation.fingerprint[..])
    .bind(response)
    .execute(&mut *conn)
    .await?;
    Ok(Appended::Done)
}

/// Appends a receipt after the head its caller last knew, with the operation it answers, in
/// a transaction of its own (one statement on Postgres).
pub async fn append(
    db: &Database,
    receipt: &NewReceipt<'_>,
    operation: &Operation,
    response: &[u8],
) -> Result<Appended, sqlx::Error> {
    match db {
        Database::Postgres(pool) => append_postgres(pool, receipt, operation, response).await,
        Database::Sqlite(_) => {
            let mut tx = db.begin().await?;
            let appended = append_in(&mut tx, receipt, operation, response).await?;
            match appended {
                Appended::Done => tx.commit().await?,
                Appended::Moved => tx.rollback().await?,
            }
            Ok(appended)
        }
    }
}

/// [`append`] inside a transaction (which, holding the head's lock, finds it where it was).
pub async fn append_in(
    tx: &mut Tx,
    receipt: &NewReceipt<'_>,
    operation: &Operation,
    response: &[u8],
) -> Result<Appended, sqlx::Error> {
    match tx {
        Tx::Postgres(tx) => append_postgres(&mut **tx, receipt, operation, response).await,
        Tx::Sqlite(tx) => append_sqlite(tx, receipt, operation, response).await,
    }
}

/// The terminal's chain head as it stands, created at the genesis hash on first use.
pub async fn open_head(
    db: &Database,
    terminal: &TerminalId,
) -> Result<(u64, Vec<u8>), sqlx::Error> {
    if let Some(head) = head(db, terminal).await? {
        return Ok(head);
    }
    with_db!(db, |pool| sqlx::query(
        "INSERT INTO chain_heads (merchant_tin, branch_no, pos_no, last_number, last_hash) \
         VALUES ($1, $2, $3, 0, $4) ON CONFLICT (merchant_tin, branch_no, pos_no) DO NOTHING"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(&fiscus_domain::chain::GENESIS[..])
    .execute(pool)
    .await
    .map(drop)?);
    head(db, terminal).await?.ok_or(sqlx::Error::RowNotFound)
}

/// How a request names a receipt.
#[derive(Debug, Clone)]
pub enum Lookup<'a> {
    Id(&'a str),
    /// The newest receipt of the terminal with this client reference.
    Reference(&'a TerminalId, &'a str),
    Number(&'a TerminalId, u64),
}

fn lookup_sql(lookup: &Lookup<'_>) -> String {
    let filter = match lookup {
        Lookup::Id(_) => "id = $1",
        Lookup::Reference(..) => {
            "merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND reference = $4 \
             ORDER BY number DESC LIMIT 1"
        }
        Lookup::Number(..) => {
            "merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND number = $4"
        }
    };
    format!("SELECT {RECEIPT_COLUMNS} FROM receipts WHERE {filter}")
}

macro_rules! bind_lookup {
    ($query:expr, $lookup:expr) => {
        match $lookup {
            Lookup::Id(id) => $query.bind(id.to_string()),
            Lookup::Reference(t, reference) => $query
                .bind(t.merchant_tin.clone())
                .bind(t.branch_no.clone())
                .bind(t.pos_no.clone())
                .bind(reference.to_string()),
            Lookup::Number(t, number) => $query
                .bind(t.merchant_tin.clone())
                .bind(t.branch_no.clone())
                .bind(t.pos_no.clone())
                .bind(to_i64(*number)),
        }
    };
}

/// Finds a receipt inside a transaction (on Postgres the row is locked until commit).
pub async fn find_in(
    tx: &mut Tx,
    lookup: &Lookup<'_>,
) -> Result<Option<StoredReceipt>, sqlx::Error> {
    let sql = lookup_sql(lookup);
    Ok(match tx {
        Tx::Postgres(tx) => {
            let sql = sqlx::AssertSqlSafe(format!("{sql} FOR UPDATE"));
            bind_lookup!(sqlx::query_as::<_, StoredReceipt>(sql), lookup)
                .fetch_optional(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx) => {
            bind_lookup!(
                sqlx::query_as::<_, StoredReceipt>(sqlx::AssertSqlSafe(sql)),
                lookup
            )
            .fetch_optional(&mut **tx)
            .await?
        }
    })
}

pub async fn find(
    db: &Database,
    lookup: &Lookup<'_>,
) -> Result<Option<StoredReceipt>, sqlx::Error> {
    let sql = lookup_sql(lookup);
    with_db!(db, |pool| bind_lookup!(
        sqlx::query_as::<_, StoredReceipt>(sqlx::AssertSqlSafe(sql)),
        lookup
    )
    .fetch_optional(pool)
    .await)
}

/// Documents of the live refunds of a receipt (to know what is left to refund).
pub async fn refund_documents(tx: &mut Tx, original_id: &str) -> Result<Vec<String>, sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query_scalar(
        "SELECT document FROM receipts WHERE original_receipt_id = $1 AND kind = 'REFUND' \
         AND fiscal_state <> 'CANCELLED'"
    )
    .bind(original_id)
    .fetch_all(conn)
    .await)
}

pub async fn mark_cancelled(
    tx: &mut Tx,
    id: &str,
    cancelled_by: &str,
    at_us: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE receipts SET fiscal_state = 'CANCELLED', cancelled_by = $2, cancelled_at_us = $3, \
         cancellation_reason = $4 WHERE id = $1"
    )
    .bind(id)
    .bind(cancelled_by)
    .bind(at_us)
    .bind(reason)
    .execute(conn)
    .await
    .map(drop))
}

/// Filters of ListReceipts.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub shift_id: Option<String>,
    pub created_from_us: Option<i64>,
    pub created_to_us: Option<i64>,
    pub kinds: Vec<String>,
    pub states: Vec<String>,
    /// Only receipts numbered below this (the page cursor; newest first).
    pub before_number: Option<i64>,
}

/// A page of a terminal's receipts, newest first.
pub async fn list(
    db: &Database,
    terminal: &TerminalId,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<StoredReceipt>, sqlx::Error> {
    // Optional filters are written so that an absent one matches everything; kind and state
    // lists are comma-joined and matched as a whole word.
    let sql = format!(
        "SELECT {RECEIPT_COLUMNS} FROM receipts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
         AND ($4 = '' OR shift_id = $4) \
         AND created_at_us >= $5 AND created_at_us < $6 \
         AND ($7 = '' OR (',' || $7 || ',') LIKE ('%,' || kind || ',%')) \
         AND ($8 = '' OR (',' || $8 || ',') LIKE ('%,' || fiscal_state || ',%')) \
         AND number < $9 \
         ORDER BY number DESC LIMIT $10"
    );
    with_db!(db, |pool| sqlx::query_as::<_, StoredReceipt>(
        sqlx::AssertSqlSafe(sql)
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(filter.shift_id.clone().unwrap_or_default())
    .bind(filter.created_from_us.unwrap_or(i64::MIN))
    .bind(filter.created_to_us.unwrap_or(i64::MAX))
    .bind(filter.kinds.join(","))
    .bind(filter.states.join(","))
    .bind(filter.before_number.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await)
}

/// Receipts of a terminal numbered in `(after, to]`, oldest first, at most `limit`.
pub async fn chain_batch(
    db: &Database,
    terminal: &TerminalId,
    after: u64,
    to: u64,
    limit: i64,
) -> Result<Vec<StoredReceipt>, sqlx::Error> {
    let sql = format!(
        "SELECT {RECEIPT_COLUMNS} FROM receipts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND number > $4 AND number <= $5 \
         ORDER BY number LIMIT $6"
    );
    with_db!(db, |pool| sqlx::query_as::<_, StoredReceipt>(
        sqlx::AssertSqlSafe(sql)
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(to_i64(after))
    .bind(to_i64(to))
    .bind(limit)
    .fetch_all(pool)
    .await)
}

/// The chain head of a terminal, if it has receipts.
pub async fn head(
    db: &Database,
    terminal: &TerminalId,
) -> Result<Option<(u64, Vec<u8>)>, sqlx::Error> {
    let row: Option<(i64, Vec<u8>)> = with_db!(db, |pool| sqlx::query_as(
        "SELECT last_number, last_hash FROM chain_heads \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(pool)
    .await?);
    Ok(row.map(|(n, h)| (u64::try_from(n).unwrap_or(0), h)))
}

/// The hash of receipt `number` of a terminal (where a partial verification resumes).
pub async fn hash_of(
    db: &Database,
    terminal: &TerminalId,
    number: u64,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    with_db!(db, |pool| {
        sqlx::query_scalar(
        "SELECT hash FROM receipts WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND number = $4"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(to_i64(number))
    .fetch_optional(pool)
    .await
    })
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub key_id: String,
    pub merchant_tin: String,
    pub algorithm: String,
    pub public_key: Vec<u8>,
    pub sealed_secret: Vec<u8>,
    pub active: bool,
    pub created_at_us: i64,
}

const KEY_COLUMNS: &str =
    "key_id, merchant_tin, algorithm, public_key, sealed_secret, active, created_at_us";

pub async fn active_key(
    db: &Database,
    merchant_tin: &str,
) -> Result<Option<StoredKey>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE merchant_tin = $1 AND active");
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(merchant_tin)
        .fetch_optional(pool)
        .await)
}

/// Stores a new active key unless the merchant already has one (another replica won the race).
pub async fn insert_key_if_none(db: &Database, key: &StoredKey) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| {
        sqlx::query(
        "INSERT INTO signing_keys (key_id, merchant_tin, algorithm, public_key, sealed_secret, active, created_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
    )
    .bind(&key.key_id)
    .bind(&key.merchant_tin)
    .bind(&key.algorithm)
    .bind(&key.public_key)
    .bind(&key.sealed_secret)
    .bind(key.active)
    .bind(key.created_at_us)
    .execute(pool)
    .await
    .map(drop)
    })
}

/// Every key of a merchant, or of all merchants when `merchant_tin` is empty.
pub async fn keys(db: &Database, merchant_tin: &str) -> Result<Vec<StoredKey>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM signing_keys WHERE ($1 = '' OR merchant_tin = $1) ORDER BY created_at_us"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(merchant_tin)
        .fetch_all(pool)
        .await)
}

/// Public keys by key id, for verification.
pub async fn public_keys(
    db: &Database,
    merchant_tin: &str,
) -> Result<HashMap<String, Vec<u8>>, sqlx::Error> {
    Ok(keys(db, merchant_tin)
        .await?
        .into_iter()
        .map(|k| (k.key_id, k.public_key))
        .collect())
}
