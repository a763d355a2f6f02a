//! ShiftService's SQL: one text per query, run on Postgres or SQLite.

use fiscus_domain::TerminalId;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::{with_db, with_tx};

/// The columns every shift read selects, in [`ShiftRow`]'s order.
const SHIFT_COLUMNS: &str = "id, merchant_tin, branch_no, pos_no, number, state, opened_at_us, \
     opened_by, closed_at_us, closed_by, z_number, upstream_shift_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShiftRow {
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub number: i64,
    pub state: String,
    pub opened_at_us: i64,
    pub opened_by: String,
    pub closed_at_us: Option<i64>,
    pub closed_by: String,
    pub z_number: i64,
    pub upstream_shift_id: String,
}

pub const OPEN: &str = "OPEN";
pub const CLOSED: &str = "CLOSED";

/// A terminal's counters, locked for this transaction (created at zero).
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    pub last_shift_number: i64,
    pub last_z_number: i64,
}

pub async fn lock_terminal(tx: &mut Tx, terminal: &TerminalId) -> Result<Counters, sqlx::Error> {
    let (last_shift_number, last_z_number): (i64, i64) = with_tx!(tx, |conn| sqlx::query_as(
        "INSERT INTO shift_terminals (merchant_tin, branch_no, pos_no, last_shift_number, \
           last_z_number) VALUES ($1, $2, $3, 0, 0) \
         ON CONFLICT (merchant_tin, branch_no, pos_no) \
         DO UPDATE SET last_shift_number = shift_terminals.last_shift_number \
         RETURNING last_shift_number, last_z_number"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_one(conn)
    .await?);
    Ok(Counters {
        last_shift_number,
        last_z_number,
    })
}

/// A terminal's open shift.
static OPEN_SHIFT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {SHIFT_COLUMNS} FROM shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND state = 'OPEN'"
    )
});

/// The terminal's open shift, inside `tx`.
pub async fn open_in(tx: &mut Tx, terminal: &TerminalId) -> Result<Option<ShiftRow>, sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(
        OPEN_SHIFT.as_str()
    ))
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(conn)
    .await)
}

/// The terminal's open shift.
pub async fn open(db: &Database, terminal: &TerminalId) -> Result<Option<ShiftRow>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
        OPEN_SHIFT.as_str()
    ))
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(pool)
    .await)
}

/// A new open shift, numbered after the terminal's last.
pub async fn insert_open(tx: &mut Tx, shift: &ShiftRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "INSERT INTO shifts (id, merchant_tin, branch_no, pos_no, number, state, opened_at_us, \
           opened_by, upstream_shift_id) VALUES ($1, $2, $3, $4, $5, 'OPEN', $6, $7, $8)"
    )
    .bind(&shift.id)
    .bind(&shift.merchant_tin)
    .bind(&shift.branch_no)
    .bind(&shift.pos_no)
    .bind(shift.number)
    .bind(shift.opened_at_us)
    .bind(&shift.opened_by)
    .bind(&shift.upstream_shift_id)
    .execute(&mut *conn)
    .await
    .map(drop)?);
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE shift_terminals SET last_shift_number = $4 \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&shift.merchant_tin)
    .bind(&shift.branch_no)
    .bind(&shift.pos_no)
    .bind(shift.number)
    .execute(conn)
    .await
    .map(drop))
}

/// Closes a shift with its Z-report, numbered `z_number`.
pub async fn close(
    tx: &mut Tx,
    shift: &ShiftRow,
    z_report: &[u8],
    merchant_name: &str,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE shifts SET state = 'CLOSED', closed_at_us = $2, closed_by = $3, z_number = $4, \
           z_report = $5, merchant_name = $6 WHERE id = $1 AND state = 'OPEN'"
    )
    .bind(&shift.id)
    .bind(shift.closed_at_us)
    .bind(&shift.closed_by)
    .bind(shift.z_number)
    .bind(z_report)
    .bind(merchant_name)
    .execute(&mut *conn)
    .await
    .map(drop)?);
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE shift_terminals SET last_z_number = $4 \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&shift.merchant_tin)
    .bind(&shift.branch_no)
    .bind(&shift.pos_no)
    .bind(shift.z_number)
    .execute(conn)
    .await
    .map(drop))
}

/// How a request names a shift of a terminal.
#[derive(Debug, Clone, Copy)]
pub enum Named<'a> {
    Id(&'a str),
    ZNumber(u64),
}

/// A closed shift's stored Z-report, and the merchant name it was printed with.
pub struct StoredZ {
    pub report: Vec<u8>,
    pub merchant_name: String,
}

/// A shift of `terminal`, with its stored Z-report when closed.
pub async fn find(
    db: &Database,
    terminal: &TerminalId,
    named: Named<'_>,
) -> Result<Option<(ShiftRow, Option<StoredZ>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        shift: ShiftRow,
        z_report: Option<Vec<u8>>,
        merchant_name: String,
    }
    // A shift id never matches an empty one, nor a Z number 0: the other key is left inert.
    let (id, z_number) = match named {
        Named::Id(id) => (id, 0),
        Named::ZNumber(n) => ("", i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let sql = format!(
        "SELECT {SHIFT_COLUMNS}, z_report, merchant_name FROM shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
           AND (id = $4 OR (z_number = $5 AND z_number > 0))"
    );
    let row: Option<Row> = with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .bind(id)
        .bind(z_number)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(|r| {
        let z = r.z_report.map(|report| StoredZ {
            report,
            merchant_name: r.merchant_name,
        });
        (r.shift, z)
    }))
}

/// Filters of ListShifts.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub opened_from_us: Option<i64>,
    pub opened_to_us: Option<i64>,
    pub state: Option<&'static str>,
    /// Only shifts numbered below this (the page cursor; newest first).
    pub before_number: Option<i64>,
}

/// A page of a terminal's shifts, newest first.
pub async fn list(
    db: &Database,
    terminal: &TerminalId,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<ShiftRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SHIFT_COLUMNS} FROM shifts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
           AND opened_at_us >= $4 AND opened_at_us < $5 AND ($6 = '' OR state = $6) \
           AND number < $7 \
         ORDER BY number DESC LIMIT $8"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .bind(filter.opened_from_us.unwrap_or(i64::MIN))
        .bind(filter.opened_to_us.unwrap_or(i64::MAX))
        .bind(filter.state.unwrap_or(""))
        .bind(filter.before_number.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(pool)
        .await)
}
