//! The journal's SQL: one text per query, run on Postgres or SQLite.

use std::collections::HashMap;

use fiscus_domain::TerminalId;
use fiscus_domain::receipt::FiscalState;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::idempotency::Operation;
use fiscus_kit::{with_db, with_tx};

use fiscus_domain::shift::ShiftLines;

use crate::config::ProviderKind;
use crate::proto::{FtAnswer, Standing, Upstream};

/// The columns every receipt read selects, in [`StoredReceipt`]'s order.
const RECEIPT_COLUMNS: &str = "id, merchant_tin, branch_no, pos_no, number, kind, fiscal_state, \
     state_message, shift_id, cancelled_by, cancelled_at_us, cancellation_reason, document, \
     previous_hash, hash, signature, key_id, total_minor, vat_minor, city_tax_minor, \
     created_at_us, provider, upstream_id, easy_registered, accepted_at_us, lottery, upstream_qr, \
     printed_until_us, ft_queue_id, ft_queue_item_id, ft_cashbox_identification, ft_state, \
     ft_signatures";

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
    pub provider: String,
    pub upstream_id: Option<String>,
    pub easy_registered: bool,
    pub accepted_at_us: Option<i64>,
    pub lottery: Option<String>,
    pub upstream_qr: Option<String>,
    pub printed_until_us: Option<i64>,
    pub ft_queue_id: Option<String>,
    pub ft_queue_item_id: Option<String>,
    pub ft_cashbox_identification: Option<String>,
    pub ft_state: Option<i64>,
    pub ft_signatures: Option<String>,
}

impl StoredReceipt {
    /// Where the receipt stands now; `Err` names a column that holds what fiscus never writes.
    pub fn standing(&self) -> Result<Standing, String> {
        let fiscal_state = FiscalState::parse(&self.fiscal_state).ok_or_else(|| {
            format!(
                "stored fiscal_state {:?} is not a fiscal state",
                self.fiscal_state
            )
        })?;
        Ok(Standing {
            shift_id: self.shift_id.clone(),
            fiscal_state,
            state_message: self.state_message.clone(),
            cancelled_by: self.cancelled_by.clone(),
            cancelled_at_us: self.cancelled_at_us,
            cancellation_reason: self.cancellation_reason.clone(),
            previous_hash: self.previous_hash.clone(),
            hash: self.hash.clone(),
            signature: self.signature.clone(),
            created_at_us: self.created_at_us,
            upstream: self.upstream()?,
        })
    }

    /// Where it stands with its provider; what is for the printed receipt only shows while its
    /// retention lasts (a sweep erases it afterwards).
    fn upstream(&self) -> Result<Upstream, String> {
        let provider = ProviderKind::parse(&self.provider)
            .ok_or_else(|| format!("stored provider {:?} is not a provider", self.provider))?;
        let printable = self
            .printed_until_us
            .is_some_and(|until| until > chrono::Utc::now().timestamp_micros());
        Ok(Upstream {
            provider,
            id: self.upstream_id.clone(),
            easy: self.easy_registered,
            accepted_at_us: self.accepted_at_us,
            lottery: self.lottery.clone().filter(|_| printable),
            qr: self.upstream_qr.clone().filter(|_| printable),
            fiskaltrust: match &self.ft_queue_item_id {
                None => None,
                Some(queue_item_id) => Some(FtAnswer {
                    queue_id: self.ft_queue_id.clone().unwrap_or_default(),
                    queue_item_id: queue_item_id.clone(),
                    cashbox_identification: self
                        .ft_cashbox_identification
                        .clone()
                        .unwrap_or_default(),
                    state: self
                        .ft_state
                        .map(crate::outbox::store::state_of_bits)
                        .unwrap_or_default(),
                    signatures: match &self.ft_signatures {
                        None => Vec::new(),
                        Some(json) => serde_json::from_str(json).map_err(|e| {
                            format!("stored ft_signatures do not read as signatures: {e}")
                        })?,
                    },
                }),
            },
        })
    }

    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

/// A receipt about to be appended.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub number: u64,
    pub kind: &'static str,
    pub receipt_type: &'static str,
    pub reference: String,
    pub totals: [i64; 3],
    pub currency: String,
    pub original_receipt_id: Option<String>,
    pub fiscal_state: &'static str,
    pub document: String,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_id: String,
    pub created_at_us: i64,
    /// The shift it is journaled in: the one its chain head carried when it was chained.
    pub shift_id: String,
    /// What it adds to its shift's reports.
    pub lines: Vec<LineRow>,
    /// Who fiscalizes it; an upstream provider's receipt goes into the outbox with it.
    pub provider: ProviderKind,
}

/// One row of `receipt_lines`: what a receipt adds to its shift, per tax type and rate or per
/// payment method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRow {
    pub line: &'static str,
    pub code: &'static str,
    pub rate: i64,
    pub count: i64,
    pub base: i64,
    pub vat: i64,
    pub city_tax: i64,
    pub gross: i64,
}

impl LineRow {
    /// The rows of a receipt's shift lines.
    pub fn all(lines: &ShiftLines) -> Vec<LineRow> {
        let tax = lines.tax.iter().map(|t| LineRow {
            line: "TAX",
            code: t.tax_type.as_str(),
            rate: t.vat_rate.hundredths(),
            count: 0,
            base: t.base.minor(),
            vat: t.vat.minor(),
            city_tax: t.city_tax.minor(),
            gross: t.gross.minor(),
        });
        let pay = lines.pay.iter().map(|p| LineRow {
            line: "PAY",
            code: p.method.as_str(),
            rate: 0,
            count: i64::from(p.count),
            base: 0,
            vat: 0,
            city_tax: 0,
            gross: p.amount.minor(),
        });
        tax.chain(pay).collect()
    }
}

impl NewReceipt {
    pub fn terminal(&self) -> TerminalId {
        TerminalId::of(&self.merchant_tin, &self.branch_no, &self.pos_no)
    }
}

/// A receipt to append, with the operation it answers and the answer to store for it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub receipt: NewReceipt,
    pub operation: Operation,
    pub response: Vec<u8>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A terminal's chain head: its last receipt's number and hash, and the shift its receipts are
/// journaled in now (empty for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub number: u64,
    pub hash: Vec<u8>,
    pub shift_id: String,
}

/// Locks the terminal's chain head for this transaction (creating it at the genesis hash) and
/// answers it: for appends, and shift changes, made under the head's lock.
pub async fn lock_head(tx: &mut Tx, terminal: &TerminalId) -> Result<Head, sqlx::Error> {
    let (number, hash, shift_id): (i64, Vec<u8>, String) = with_tx!(tx, |conn| sqlx::query_as(
        "INSERT INTO chain_heads (merchant_tin, branch_no, pos_no, last_number, last_hash) \
         VALUES ($1, $2, $3, 0, $4) \
         ON CONFLICT (merchant_tin, branch_no, pos_no) \
         DO UPDATE SET last_number = chain_heads.last_number \
         RETURNING last_number, last_hash, shift_id"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(&fiscus_domain::chain::GENESIS[..])
    .fetch_one(conn)
    .await?);
    Ok(Head {
        number: u64::try_from(number).unwrap_or(0),
        hash,
        shift_id,
    })
}

/// Sets the shift of a terminal whose head `tx` holds locked.
pub async fn set_head_shift(
    tx: &mut Tx,
    terminal: &TerminalId,
    shift_id: &str,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE chain_heads SET shift_id = $4 \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .execute(conn)
    .await
    .map(drop))
}

/// How an append found the terminal's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The receipt is in the journal, with its operation row, and the head has moved to it.
    Done,
    /// The head was no longer the receipt's previous one (another writer appended first), or
    /// another transaction held it locked: nothing was written.
    Moved,
    /// The operation id had been recorded already (by a duplicate of this request, or by
    /// another request): nothing was written. Postgres only; on SQLite such an append fails on
    /// the operations key.
    Taken,
}

/// The receipt row's columns, as [`NewReceipt`] holds them.
const RECEIPT_INSERT_COLUMNS: &str = "id, merchant_tin, branch_no, pos_no, number, kind, \
     receipt_type, reference, total_minor, vat_minor, city_tax_minor, currency, \
     original_receipt_id, fiscal_state, document, previous_hash, hash, signature, key_id, \
     created_at_us, shift_id, provider";

/// On Postgres any number of entries append in one statement. An entry whose operation id is
/// recorded already is left out. Each other entry moves its terminal's head only from its
/// receipt's previous number and hash, taking the head's row lock; a head another transaction
/// holds locked is skipped, not waited for, so one busy terminal never holds up a group (nor
/// can two groups deadlock). Its receipt goes in only where its head moved, and its completed
/// operation row only where its receipt went in. What comes back: the ids of the receipts that
/// went in (`true`) and of those left out because their operation was recorded (`false`); the
/// rest found their head moved or locked. An operation id recorded by a concurrent statement
/// fails the whole statement on the operations key.
///
/// The recorded operations are looked up one entry at a time (`LATERAL … LIMIT 1`, which the
/// planner cannot turn into a join): the statement's plan is cached per connection, and one
/// planned while `operations` was still small hashed the entries against a scan of the whole
/// table, which then cost more with every receipt ever journaled.
static APPEND_POSTGRES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH entry AS (\
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
                $12::text[], $13::text[], $14::text[], $15::text[], $16::bytea[], $17::bytea[], \
                $18::bytea[], $19::text[], $20::int8[], $21::text[], $22::text[], \
                $23::text[], $24::text[], $25::text[], $26::bytea[], $27::bytea[]) \
            AS e({RECEIPT_INSERT_COLUMNS}, tenant, operation_id, rpc, fingerprint, response)), \
         taken AS (\
            SELECT e.id FROM entry e CROSS JOIN LATERAL (\
                SELECT FROM operations o \
                WHERE o.tenant = e.tenant AND o.operation_id = e.operation_id LIMIT 1) o), \
         free AS (\
            SELECT e.id FROM entry e JOIN chain_heads h \
            ON h.merchant_tin = e.merchant_tin AND h.branch_no = e.branch_no \
              AND h.pos_no = e.pos_no \
            WHERE e.id NOT IN (SELECT id FROM taken) \
              AND h.last_number = e.number - 1 AND h.last_hash = e.previous_hash \
              AND h.shift_id = e.shift_id \
            FOR UPDATE OF h SKIP LOCKED), \
         head AS (\
            UPDATE chain_heads h SET last_number = e.number, last_hash = e.hash \
            FROM entry e JOIN free USING (id) \
            WHERE h.merchant_tin = e.merchant_tin AND h.branch_no = e.branch_no \
              AND h.pos_no = e.pos_no \
              AND h.last_number = e.number - 1 AND h.last_hash = e.previous_hash \
              AND h.shift_id = e.shift_id \
            RETURNING e.id), \
         receipt AS (\
            INSERT INTO receipts ({RECEIPT_INSERT_COLUMNS}) \
            SELECT {RECEIPT_INSERT_COLUMNS} FROM entry JOIN head USING (id) \
            RETURNING id), \
         line AS (\
            INSERT INTO receipt_lines ({LINE_COLUMNS}) \
            SELECT l.* FROM UNNEST($28::text[], $29::text[], $30::text[], $31::int8[], \
                $32::int8[], $33::int8[], $34::int8[], $35::int8[], $36::int8[]) \
            AS l({LINE_COLUMNS}) JOIN receipt ON receipt.id = l.receipt_id), \
         outboxed AS (\
            INSERT INTO outbox (receipt_id, provider, merchant_tin, branch_no, pos_no, number, \
                next_attempt_at_us, created_at_us, operation_id) \
            SELECT id, provider, merchant_tin, branch_no, pos_no, number, created_at_us, \
                created_at_us, operation_id \
            FROM entry JOIN receipt USING (id) WHERE provider <> 'BUILTIN'), \
         operation AS (\
            INSERT INTO operations (tenant, operation_id, rpc, fingerprint, response, completed_at) \
            SELECT tenant, operation_id, rpc, fingerprint, response, CURRENT_TIMESTAMP \
            FROM entry JOIN receipt USING (id)) \
         SELECT id, true FROM receipt UNION ALL SELECT id, false FROM taken"
    )
});

static INSERT_RECEIPT_SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO receipts ({RECEIPT_INSERT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
          $21, $22)"
    )
});

/// The columns of `receipt_lines`, as [`LineRow`] holds them after the receipt's id.
const LINE_COLUMNS: &str =
    "receipt_id, line, code, rate, count, base_minor, vat_minor, city_tax_minor, gross_minor";

/// Appends entries of distinct terminals in one statement on Postgres; how each found its chain.
pub async fn append_postgres<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    entries: &[&Entry],
) -> Result<Vec<Appended>, sqlx::Error> {
    fn column<'a, T>(entries: &[&'a Entry], field: impl Fn(&'a NewReceipt) -> T) -> Vec<T> {
        entries.iter().map(|e| field(&e.receipt)).collect()
    }
    fn operation<'a, T>(entries: &[&'a Entry], field: impl Fn(&'a Entry) -> T) -> Vec<T> {
        entries.iter().map(|e| field(e)).collect()
    }
    let lines: Vec<(&str, &LineRow)> = entries
        .iter()
        .flat_map(|e| e.receipt.lines.iter().map(|l| (e.receipt.id.as_str(), l)))
        .collect();
    fn line<'a, T>(
        lines: &[(&'a str, &'a LineRow)],
        field: impl Fn(&'a str, &'a LineRow) -> T,
    ) -> Vec<T> {
        lines.iter().map(|(id, l)| field(id, l)).collect()
    }
    let outcomes: HashMap<String, bool> =
        sqlx::query_as(sqlx::AssertSqlSafe(APPEND_POSTGRES.as_str()))
            .bind(column(entries, |r| r.id.as_str()))
            .bind(column(entries, |r| r.merchant_tin.as_str()))
            .bind(column(entries, |r| r.branch_no.as_str()))
            .bind(column(entries, |r| r.pos_no.as_str()))
            .bind(column(entries, |r| to_i64(r.number)))
            .bind(column(entries, |r| r.kind))
            .bind(column(entries, |r| r.receipt_type))
            .bind(column(entries, |r| r.reference.as_str()))
            .bind(column(entries, |r| r.totals[0]))
            .bind(column(entries, |r| r.totals[1]))
            .bind(column(entries, |r| r.totals[2]))
            .bind(column(entries, |r| r.currency.as_str()))
            .bind(column(entries, |r| r.original_receipt_id.as_deref()))
            .bind(column(entries, |r| r.fiscal_state))
            .bind(column(entries, |r| r.document.as_str()))
            .bind(column(entries, |r| r.previous_hash.as_slice()))
            .bind(column(entries, |r| r.hash.as_slice()))
            .bind(column(entries, |r| r.signature.as_slice()))
            .bind(column(entries, |r| r.key_id.as_str()))
            .bind(column(entries, |r| r.created_at_us))
            .bind(column(entries, |r| r.shift_id.as_str()))
            .bind(column(entries, |r| r.provider.as_str()))
            .bind(operation(entries, |e| e.operation.tenant.as_str()))
            .bind(operation(entries, |e| e.operation.id.as_str()))
            .bind(operation(entries, |e| e.operation.rpc))
            .bind(operation(entries, |e| &e.operation.fingerprint[..]))
            .bind(operation(entries, |e| e.response.as_slice()))
            .bind(line(&lines, |id, _| id))
            .bind(line(&lines, |_, l| l.line))
            .bind(line(&lines, |_, l| l.code))
            .bind(line(&lines, |_, l| l.rate))
            .bind(line(&lines, |_, l| l.count))
            .bind(line(&lines, |_, l| l.base))
            .bind(line(&lines, |_, l| l.vat))
            .bind(line(&lines, |_, l| l.city_tax))
            .bind(line(&lines, |_, l| l.gross))
            .fetch_all(conn)
            .await?
            .into_iter()
            .collect();
    Ok(entries
        .iter()
        .map(|e| match outcomes.get(&e.receipt.id) {
            Some(true) => Appended::Done,
            Some(false) => Appended::Taken,
            None => Appended::Moved,
        })
        .collect())
}

/// SQLite has no writing CTEs: the same three writes, inside the caller's transaction.
async fn append_sqlite(
    conn: &mut sqlx::SqliteConnection,
    entry: &Entry,
) -> Result<Appended, sqlx::Error> {
    let r = &entry.receipt;
    let moved = sqlx::query(
        "UPDATE chain_heads SET last_number = $4, last_hash = $6 \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
           AND last_number = $4 - 1 AND last_hash = $5 AND shift_id = $7",
    )
    .bind(&r.merchant_tin)
    .bind(&r.branch_no)
    .bind(&r.pos_no)
    .bind(to_i64(r.number))
    .bind(&r.previous_hash)
    .bind(&r.hash)
    .bind(&r.shift_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(Appended::Moved);
    }
    sqlx::query(sqlx::AssertSqlSafe(INSERT_RECEIPT_SQLITE.as_str()))
        .bind(&r.id)
        .bind(&r.merchant_tin)
        .bind(&r.branch_no)
        .bind(&r.pos_no)
        .bind(to_i64(r.number))
        .bind(r.kind)
        .bind(r.receipt_type)
        .bind(&r.reference)
        .bind(r.totals[0])
        .bind(r.totals[1])
        .bind(r.totals[2])
        .bind(&r.currency)
        .bind(&r.original_receipt_id)
        .bind(r.fiscal_state)
        .bind(&r.document)
        .bind(&r.previous_hash)
        .bind(&r.hash)
        .bind(&r.signature)
        .bind(&r.key_id)
        .bind(r.created_at_us)
        .bind(&r.shift_id)
        .bind(r.provider.as_str())
        .execute(&mut *conn)
        .await?;
    if r.provider.is_upstream() {
        sqlx::query(
            "INSERT INTO outbox (receipt_id, provider, merchant_tin, branch_no, pos_no, number, \
                 next_attempt_at_us, created_at_us, operation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(&r.id)
        .bind(r.provider.as_str())
        .bind(&r.merchant_tin)
        .bind(&r.branch_no)
        .bind(&r.pos_no)
        .bind(to_i64(r.number))
        .bind(r.created_at_us)
        .bind(&entry.operation.id)
        .execute(&mut *conn)
        .await?;
    }
    for l in &r.lines {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO receipt_lines ({LINE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(&r.id)
        .bind(l.line)
        .bind(l.code)
        .bind(l.rate)
        .bind(l.count)
        .bind(l.base)
        .bind(l.vat)
        .bind(l.city_tax)
        .bind(l.gross)
        .execute(&mut *conn)
        .await?;
    }
    let operation = &entry.operation;
    sqlx::query(
        "INSERT INTO operations (tenant, operation_id, rpc, fingerprint, response, completed_at) \
         VALUES ($1, $2, $3, $4, $5, CURRENT_TIMESTAMP)",
    )
    .bind(&operation.tenant)
    .bind(&operation.id)
    .bind(operation.rpc)
    .bind(&operation.fingerprint[..])
    .bind(&entry.response)
    .execute(&mut *conn)
    .await?;
    Ok(Appended::Done)
}

/// Appends one entry inside a transaction which, holding the head's lock, finds it where it was.
pub async fn append_in(tx: &mut Tx, entry: &Entry) -> Result<Appended, sqlx::Error> {
    match tx {
        Tx::Postgres(tx) => Ok(append_postgres(&mut **tx, &[entry]).await?[0]),
        Tx::Sqlite(tx) => append_sqlite(tx, entry).await,
    }
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

/// The fiscal state and message of each of `ids` (the receipts somebody watches), in one query.
pub async fn states(
    db: &Database,
    ids: &[String],
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    match db {
        Database::Postgres(pool) => {
            sqlx::query_as(
                "SELECT id, fiscal_state, state_message FROM receipts WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(pool)
            .await
        }
        Database::Sqlite(pool) => {
            let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
            sqlx::query_as(
                "SELECT id, fiscal_state, state_message FROM receipts \
                 WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(ids)
            .fetch_all(pool)
            .await
        }
    }
}

/// A shift's receipts of one kind: how many, their gross total (a cancellation's signed by what
/// it cancelled: negative for a refund), and their lowest and highest number.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KindTotal {
    pub kind: String,
    pub count: i64,
    pub total: i64,
    pub first: i64,
    pub last: i64,
}

pub async fn shift_kinds(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
) -> Result<Vec<KindTotal>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT r.kind AS kind, COUNT(*) AS count, \
           CAST(COALESCE(SUM(CASE WHEN o.kind = 'REFUND' THEN -r.total_minor \
             ELSE r.total_minor END), 0) AS BIGINT) AS total, \
           MIN(r.number) AS first, MAX(r.number) AS last \
         FROM receipts r \
         LEFT JOIN receipts o ON r.kind = 'CANCELLATION' AND o.id = r.original_receipt_id \
         WHERE r.merchant_tin = $1 AND r.branch_no = $2 AND r.pos_no = $3 AND r.shift_id = $4 \
         GROUP BY r.kind"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .fetch_all(pool)
    .await)
}

/// A shift's `receipt_lines`, added up per line, code and rate.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineTotal {
    pub line: String,
    pub code: String,
    pub rate: i64,
    pub count: i64,
    pub base: i64,
    pub vat: i64,
    pub city_tax: i64,
    pub gross: i64,
}

pub async fn shift_lines(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
) -> Result<Vec<LineTotal>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT l.line AS line, l.code AS code, l.rate AS rate, \
           CAST(SUM(l.count) AS BIGINT) AS count, CAST(SUM(l.base_minor) AS BIGINT) AS base, \
           CAST(SUM(l.vat_minor) AS BIGINT) AS vat, \
           CAST(SUM(l.city_tax_minor) AS BIGINT) AS city_tax, \
           CAST(SUM(l.gross_minor) AS BIGINT) AS gross \
         FROM receipt_lines l JOIN receipts r ON r.id = l.receipt_id \
         WHERE r.merchant_tin = $1 AND r.branch_no = $2 AND r.pos_no = $3 AND r.shift_id = $4 \
         GROUP BY l.line, l.code, l.rate"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .fetch_all(pool)
    .await)
}

/// One receipt of a shift, as a full report lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShiftReceipt {
    pub id: String,
    pub number: i64,
    pub kind: String,
    pub total_minor: i64,
    pub currency: String,
    pub created_at_us: i64,
}

/// A shift's receipts numbered above `after`, in number order, at most `limit`.
pub async fn shift_receipts(
    db: &Database,
    terminal: &TerminalId,
    shift_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ShiftReceipt>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT id, number, kind, total_minor, currency, created_at_us FROM receipts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND shift_id = $4 \
           AND number > $5 \
         ORDER BY number LIMIT $6"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(shift_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await)
}
