//! The outbox's SQL: claiming due receipts, recording what their provider answered, and the
//! operator's view (ListPending, ResendPending). One text per query, on Postgres and SQLite,
//! but for the claim's choice of heads.

use fiscus_domain::TerminalId;
use fiscus_kit::db::{Database, Tx};
use fiscus_kit::{with_db, with_tx};

/// A receipt this worker holds for one delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub receipt_id: String,
    pub provider: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// An earlier attempt may have reached the provider without its answer reaching fiscus
    /// (its worker said so, or died holding the claim).
    pub in_doubt: bool,
    /// When the attempt that put it in doubt went out.
    pub doubt_since_us: Option<i64>,
    /// The operation that journaled it: the upstream idempotency key of every attempt.
    pub operation_id: String,
    /// Its provider could not be reached for it before it was first sent (the till was
    /// answered PENDING).
    pub late_signing: bool,
}

/// Claims up to `limit` due receipts for `claim` until `until_us`: each the oldest live one of
/// its terminal (its head), so a terminal's receipts reach the provider in their order. A
/// receipt whose last claim ran out unrecorded (its worker died) is in doubt from then on.
///
/// On Postgres the heads are found by a loose index scan — one descent of
/// `outbox_live_by_terminal` per terminal with live receipts — and rows another worker is
/// claiming are skipped, not waited for: the claim costs what the terminals cost, however long
/// an outage made the queue. SQLite (one writer, `fiscus dev`) cannot seek its index by the
/// terminal's three columns at once, so there each due row is tested for an earlier live one.
pub async fn claim(
    db: &Database,
    claim: &str,
    now_us: i64,
    until_us: i64,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let due = match db {
        Database::Postgres(_) => CLAIMABLE_POSTGRES,
        Database::Sqlite(_) => CLAIMABLE_SQLITE,
    };
    let sql =
        format!("UPDATE outbox SET {CLAIMED} WHERE receipt_id IN ({due}) RETURNING {CLAIMED_ROW}");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(claim)
        .bind(until_us)
        .bind(now_us)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Claims the head of `done`'s terminal for `claim` until `until_us`, if it is due: the receipt
/// after `done`, which just left the queue, goes at once instead of waiting for the next claim.
/// The head is found without a lock and then updated only if still due and unclaimed, so a head
/// another worker is claiming is waited for and left to it — never skipped for the row after it.
pub async fn claim_next(
    db: &Database,
    claim: &str,
    done: &Claimed,
    now_us: i64,
    until_us: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let sql = format!(
        "UPDATE outbox SET {CLAIMED} \
         WHERE receipt_id = (SELECT receipt_id FROM outbox \
            WHERE merchant_tin = $4 AND branch_no = $5 AND pos_no = $6 AND dead = false \
            ORDER BY number LIMIT 1) \
           AND dead = false AND next_attempt_at_us <= $3 AND claimed_until_us <= $3 \
         RETURNING {CLAIMED_ROW}"
    );
    with_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(claim)
        .bind(until_us)
        .bind(now_us)
        .bind(&done.merchant_tin)
        .bind(&done.branch_no)
        .bind(&done.pos_no)
        .fetch_optional(pool)
        .await)
}

/// What claiming sets, with `$1` the claim, `$2` until when and `$3` now.
const CLAIMED: &str = "claim = $1, claimed_until_us = $2, claimed_at_us = $3, \
    attempts = attempts + 1, in_doubt = (in_doubt OR claimed_until_us > 0), \
    doubt_since_us = CASE WHEN claimed_until_us > 0 AND doubt_since_us IS NULL \
        THEN claimed_at_us ELSE doubt_since_us END";

/// A [`Claimed`], as claiming returns it.
const CLAIMED_ROW: &str = "receipt_id, provider, merchant_tin, branch_no, pos_no, attempts, \
    in_doubt, doubt_since_us, operation_id, late_signing";

/// The heads due at `$3` and not claimed, oldest due first, at most `$4`, locked (Postgres).
/// `heads` steps from one terminal's first live row to the next terminal's: ordered by
/// (terminal, number), the first live row past a terminal is the next terminal's head.
const CLAIMABLE_POSTGRES: &str = "\
    WITH RECURSIVE heads (receipt_id, merchant_tin, branch_no, pos_no) AS (\
        SELECT receipt_id, merchant_tin, branch_no, pos_no FROM outbox WHERE receipt_id = (\
            SELECT receipt_id FROM outbox WHERE NOT dead \
            ORDER BY merchant_tin, branch_no, pos_no, number LIMIT 1) \
      UNION ALL \
        SELECT n.receipt_id, n.merchant_tin, n.branch_no, n.pos_no FROM heads h \
        JOIN outbox n ON n.receipt_id = (\
            SELECT o.receipt_id FROM outbox o WHERE NOT o.dead \
              AND (o.merchant_tin, o.branch_no, o.pos_no) > (h.merchant_tin, h.branch_no, h.pos_no) \
            ORDER BY o.merchant_tin, o.branch_no, o.pos_no, o.number LIMIT 1)) \
    SELECT o.receipt_id FROM outbox o JOIN heads USING (receipt_id) \
    WHERE o.next_attempt_at_us <= $3 AND o.claimed_until_us <= $3 \
    ORDER BY o.next_attempt_at_us LIMIT $4 FOR UPDATE OF o SKIP LOCKED";

/// The same on SQLite.
const CLAIMABLE_SQLITE: &str = "\
    SELECT o.receipt_id FROM outbox o \
    WHERE o.dead = false AND o.next_attempt_at_us <= $3 AND o.claimed_until_us <= $3 \
      AND NOT EXISTS (\
        SELECT 1 FROM outbox p WHERE p.merchant_tin = o.merchant_tin \
          AND p.branch_no = o.branch_no AND p.pos_no = o.pos_no \
          AND p.number < o.number AND p.dead = false) \
    ORDER BY o.next_attempt_at_us LIMIT $4";

/// Lets go of a receipt whose claim `claim` still holds, inside `tx`; false when the claim was
/// lost (it ran out and another worker took the receipt), and then nothing may be recorded.
pub async fn take(tx: &mut Tx, receipt_id: &str, claim: &str) -> Result<bool, sqlx::Error> {
    let taken = with_tx!(tx, |conn| sqlx::query(
        "DELETE FROM outbox WHERE receipt_id = $1 AND claim = $2"
    )
    .bind(receipt_id)
    .bind(claim)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(taken == 1)
}

/// What the provider kept of an accepted receipt.
#[derive(Debug, Clone, Default)]
pub struct Acceptance {
    pub upstream_id: Option<String>,
    pub upstream_date: Option<String>,
    pub easy: bool,
    pub lottery: Option<String>,
    pub qr: Option<String>,
    pub fiskaltrust: Option<Box<FtAcceptance>>,
}

/// What fiskaltrust answered for a signed receipt (its `ftReceiptIdentification` is the
/// acceptance's `upstream_id`).
#[derive(Debug, Clone, Default)]
pub struct FtAcceptance {
    pub queue_id: String,
    pub queue_item_id: String,
    pub cashbox_identification: String,
    pub state: u64,
    /// `ftSignatures`, as JSON.
    pub signatures: String,
    /// The `cbReceiptMoment` it was signed with.
    pub moment_us: i64,
    /// The middleware is still in late-signing mode after this receipt: once its terminal has
    /// nothing left to sign, a zero receipt is to end it.
    pub closing: Option<super::fiskaltrust::Closing>,
}

/// Records an acceptance: the receipt leaves the outbox and shows the provider's data. A
/// receipt cancelled meanwhile stays CANCELLED (its cancellation follows it upstream).
pub async fn accept(
    db: &Database,
    claimed: &Claimed,
    claim: &str,
    acceptance: &Acceptance,
    now_us: i64,
    printed_until_us: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    if !take(&mut tx, &claimed.receipt_id, claim).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    let printed = acceptance.lottery.is_some() || acceptance.qr.is_some();
    let ft = acceptance.fiskaltrust.as_ref();
    with_tx!(&mut tx, |conn| {
        sqlx::query(
        "UPDATE receipts SET \
            fiscal_state = CASE WHEN fiscal_state = 'CANCELLED' THEN fiscal_state ELSE 'ACCEPTED' END, \
            state_message = '', upstream_id = $2, upstream_date = $3, easy_registered = $4, \
            accepted_at_us = $5, lottery = $6, upstream_qr = $7, printed_until_us = $8, \
            ft_queue_id = $9, ft_queue_item_id = $10, ft_cashbox_identification = $11, \
            ft_state = $12, ft_signatures = $13, ft_moment_us = $14 \
         WHERE id = $1"
    )
    .bind(&claimed.receipt_id)
    .bind(&acceptance.upstream_id)
    .bind(&acceptance.upstream_date)
    .bind(acceptance.easy)
    .bind(now_us)
    .bind(&acceptance.lottery)
    .bind(&acceptance.qr)
    .bind(printed.then_some(printed_until_us))
    .bind(ft.map(|f| f.queue_id.as_str()))
    .bind(ft.map(|f| f.queue_item_id.as_str()))
    .bind(ft.map(|f| f.cashbox_identification.as_str()))
    .bind(ft.map(|f| state_bits(f.state)))
    .bind(ft.map(|f| f.signatures.as_str()))
    .bind(ft.map(|f| f.moment_us))
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
    })?;
    tx.commit().await?;
    Ok(true)
}

/// Parks a receipt as a dead letter with `message`; `rejected` also marks it REJECTED (the
/// provider refused it), otherwise it stays PENDING and waits for an operator.
pub async fn park(
    db: &Database,
    claimed: &Claimed,
    claim: &str,
    message: &str,
    rejected: bool,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let parked = with_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE outbox SET dead = true, last_error = $3, claim = NULL, claimed_until_us = 0 \
         WHERE receipt_id = $1 AND claim = $2"
    )
    .bind(&claimed.receipt_id)
    .bind(claim)
    .bind(message)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    if parked != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    let state = if rejected { "REJECTED" } else { "PENDING" };
    with_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE receipts SET fiscal_state = $2, state_message = $3 \
         WHERE id = $1 AND fiscal_state IN ('PENDING', 'REJECTED')"
    )
    .bind(&claimed.receipt_id)
    .bind(state)
    .bind(message)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    tx.commit().await?;
    Ok(true)
}

/// Schedules another attempt at `next_us` after a failed one; `maybe_reached`: the attempt may
/// have reached the provider (so the receipt is in doubt from `attempt_us` on). Past
/// `dead_before_us` (journaled before it) the receipt becomes a dead letter instead. A receipt
/// that has not reached its provider yet, and surely not now, is to be late-signed.
#[allow(clippy::too_many_arguments)]
pub async fn retry(
    db: &Database,
    claimed: &Claimed,
    claim: &str,
    error: &str,
    maybe_reached: bool,
    attempt_us: i64,
    next_us: i64,
    dead_before_us: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let scheduled = with_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE outbox SET last_error = $3, next_attempt_at_us = $4, claim = NULL, \
            claimed_until_us = 0, in_doubt = (in_doubt OR $5), \
            doubt_since_us = CASE WHEN $5 AND doubt_since_us IS NULL THEN $6 \
                ELSE doubt_since_us END, \
            late_signing = (late_signing OR NOT (in_doubt OR $5)), \
            dead = (created_at_us < $7) \
         WHERE receipt_id = $1 AND claim = $2"
    )
    .bind(&claimed.receipt_id)
    .bind(claim)
    .bind(error)
    .bind(next_us)
    .bind(maybe_reached)
    .bind(attempt_us)
    .bind(dead_before_us)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    if scheduled != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    with_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE receipts SET state_message = $2 WHERE id = $1 AND fiscal_state = 'PENDING'"
    )
    .bind(&claimed.receipt_id)
    .bind(error)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    tx.commit().await?;
    Ok(true)
}

/// The provider's id and date of the document that stands for `original` now: the newest
/// accepted one among the original and its refunds journaled before `before_number` (each
/// correction replaces the one before it).
pub async fn standing_document(
    db: &Database,
    original_id: &str,
    before_number: i64,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> = with_db!(db, |pool| sqlx::query_as(
        "SELECT upstream_id, upstream_date FROM receipts \
         WHERE (id = $1 OR (original_receipt_id = $1 AND kind = 'REFUND')) AND number < $2 \
           AND upstream_id IS NOT NULL \
         ORDER BY number DESC LIMIT 1"
    )
    .bind(original_id)
    .bind(before_number)
    .fetch_optional(pool)
    .await)?;
    Ok(row.and_then(|(id, date)| Some((id?, date.unwrap_or_default()))))
}

/// The signed documents of `original`'s refunds up to and including receipt `up_to_number`.
pub async fn refunds_up_to(
    db: &Database,
    original_id: &str,
    up_to_number: i64,
) -> Result<Vec<String>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar(
        "SELECT document FROM receipts \
         WHERE original_receipt_id = $1 AND kind = 'REFUND' AND number <= $2 ORDER BY number"
    )
    .bind(original_id)
    .bind(up_to_number)
    .fetch_all(pool)
    .await)
}

/// One entry of ListPending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub receipt_id: String,
    pub number: i64,
    pub kind: String,
    pub total_minor: i64,
    pub provider: String,
    pub fiscal_state: String,
    pub dead: bool,
    pub attempts: i32,
    pub last_error: String,
    pub next_attempt_at_us: i64,
    pub created_at_us: i64,
}

/// A terminal's receipts in the outbox from number `after` on, oldest first.
pub async fn pending(
    db: &Database,
    terminal: &TerminalId,
    include_dead: bool,
    after: i64,
    limit: i64,
) -> Result<Vec<Pending>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT o.receipt_id, o.number, r.kind, r.total_minor, o.provider, r.fiscal_state, o.dead, \
            o.attempts, o.last_error, o.next_attempt_at_us, r.created_at_us \
         FROM outbox o JOIN receipts r ON r.id = o.receipt_id \
         WHERE o.merchant_tin = $1 AND o.branch_no = $2 AND o.pos_no = $3 AND o.number > $4 \
           AND (o.dead = false OR $5) \
         ORDER BY o.number LIMIT $6"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(after)
    .bind(include_dead)
    .bind(limit)
    .fetch_all(pool)
    .await)
}

/// Where each named receipt of `terminal` stands: in the outbox or not, and its fiscal state.
/// A receipt of another terminal, or none at all, is left out.
pub async fn resend_candidates(
    tx: &mut Tx,
    terminal: &TerminalId,
    ids: &[String],
) -> Result<Vec<(String, i64, String, bool)>, sqlx::Error> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String, i64, String, bool)> = with_tx!(tx, |conn| sqlx::query_as(
            "SELECT r.id, r.number, r.fiscal_state, o.receipt_id IS NOT NULL \
             FROM receipts r LEFT JOIN outbox o ON o.receipt_id = r.id \
             WHERE r.id = $1 AND r.merchant_tin = $2 AND r.branch_no = $3 AND r.pos_no = $4"
        )
        .bind(id)
        .bind(&terminal.merchant_tin)
        .bind(&terminal.branch_no)
        .bind(&terminal.pos_no)
        .fetch_optional(&mut *conn)
        .await)?;
        found.extend(row);
    }
    Ok(found)
}

/// Every receipt of `terminal` in the outbox, in number order.
pub async fn terminal_entries(
    tx: &mut Tx,
    terminal: &TerminalId,
) -> Result<Vec<(String, i64, String, bool)>, sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query_as(
        "SELECT r.id, r.number, r.fiscal_state, true FROM outbox o \
         JOIN receipts r ON r.id = o.receipt_id \
         WHERE o.merchant_tin = $1 AND o.branch_no = $2 AND o.pos_no = $3 ORDER BY o.number"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_all(conn)
    .await)
}

/// Marks a receipt whose till was answered PENDING to be late-signed, if no attempt of it has
/// gone out yet (one that has fixed what it sends).
pub async fn mark_late(db: &Database, receipt_id: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "UPDATE outbox SET late_signing = true WHERE receipt_id = $1 AND attempts = 0"
    )
    .bind(receipt_id)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// How many receipts of a terminal are still live in the outbox.
pub async fn live_on_terminal(
    db: &Database,
    merchant_tin: &str,
    branch_no: &str,
    pos_no: &str,
) -> Result<i64, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND dead = false"
    )
    .bind(merchant_tin)
    .bind(branch_no)
    .bind(pos_no)
    .fetch_one(pool)
    .await)
}

/// Where a terminal stands with fiskaltrust: what its last signed receipt carried.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct FtStanding {
    pub ft_state: Option<i64>,
    pub ft_queue_id: Option<String>,
    pub ft_cashbox_identification: Option<String>,
}

/// The fiskaltrust answer of `terminal`'s newest receipt fiskaltrust signed, and how many of its
/// receipts are still in the outbox.
pub async fn ft_standing(
    db: &Database,
    terminal: &TerminalId,
) -> Result<(FtStanding, i64), sqlx::Error> {
    let standing: Option<FtStanding> = with_db!(db, |pool| sqlx::query_as(
        "SELECT ft_state, ft_queue_id, ft_cashbox_identification FROM receipts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 \
           AND ft_queue_item_id IS NOT NULL \
         ORDER BY accepted_at_us DESC, number DESC LIMIT 1"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_optional(pool)
    .await)?;
    let waiting = with_db!(db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .fetch_one(pool)
    .await)?;
    Ok((standing.unwrap_or_default(), waiting))
}

/// The `cbReceiptMoment` fiskaltrust signed the terminal's last receipt before number
/// `before_number` with, if any.
pub async fn last_ft_moment(
    db: &Database,
    terminal: &TerminalId,
    before_number: i64,
) -> Result<Option<i64>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar(
        "SELECT ft_moment_us FROM receipts \
         WHERE merchant_tin = $1 AND branch_no = $2 AND pos_no = $3 AND number < $4 \
           AND ft_moment_us IS NOT NULL \
         ORDER BY number DESC LIMIT 1"
    )
    .bind(&terminal.merchant_tin)
    .bind(&terminal.branch_no)
    .bind(&terminal.pos_no)
    .bind(before_number)
    .fetch_optional(pool)
    .await)
}

/// A 64-bit fiskaltrust state as the BIGINT that holds its bits.
pub fn state_bits(state: u64) -> i64 {
    i64::from_ne_bytes(state.to_ne_bytes())
}

/// The state a BIGINT holds.
pub fn state_of_bits(bits: i64) -> u64 {
    u64::from_ne_bytes(bits.to_ne_bytes())
}

/// Makes every live, backing-off receipt of a merchant due at `now_us` (its provider answers
/// again); answers how many.
pub async fn due_now(db: &Database, merchant_tin: &str, now_us: i64) -> Result<u64, sqlx::Error> {
    with_db!(db, |pool| sqlx::query(
        "UPDATE outbox SET next_attempt_at_us = $2 \
         WHERE merchant_tin = $1 AND dead = false AND next_attempt_at_us > $2"
    )
    .bind(merchant_tin)
    .bind(now_us)
    .execute(pool)
    .await
    .map(|done| done.rows_affected()))
}

/// Puts a receipt back in the queue, due now, as an operator asked: a dead letter lives again,
/// a REJECTED receipt is PENDING again, and doubt about an earlier attempt is the operator's
/// to have settled (they resend after checking with the provider).
pub async fn reschedule(tx: &mut Tx, receipt_id: &str, now_us: i64) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE outbox SET dead = false, next_attempt_at_us = $2, in_doubt = false, \
            doubt_since_us = NULL, created_at_us = $2 \
         WHERE receipt_id = $1"
    )
    .bind(receipt_id)
    .bind(now_us)
    .execute(&mut *conn)
    .await
    .map(|done| done.rows_affected()))?;
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE receipts SET fiscal_state = 'PENDING', state_message = '' \
         WHERE id = $1 AND fiscal_state = 'REJECTED'"
    )
    .bind(receipt_id)
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(())
}

/// Depth, oldest entry and dead letters of each provider's outbox.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Depth {
    pub provider: String,
    pub live: i64,
    pub oldest_us: Option<i64>,
    pub dead: i64,
}

pub async fn depths(db: &Database) -> Result<Vec<Depth>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(
        "SELECT provider, \
            COUNT(*) FILTER (WHERE dead = false) AS live, \
            MIN(created_at_us) FILTER (WHERE dead = false) AS oldest_us, \
            COUNT(*) FILTER (WHERE dead = true) AS dead \
         FROM outbox GROUP BY provider"
    )
    .fetch_all(pool)
    .await)
}

/// Erases what is for the printed receipt only once its retention has passed.
pub async fn erase_printed(db: &Database, now_us: i64) -> Result<u64, sqlx::Error> {
    let done = with_db!(db, |pool| sqlx::query(
        "UPDATE receipts SET lottery = NULL, upstream_qr = NULL, printed_until_us = NULL \
         WHERE printed_until_us IS NOT NULL AND printed_until_us <= $1"
    )
    .bind(now_us)
    .execute(pool)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(done)
}
