//! The idempotency journal: one row per operation id, in the same transaction as the work it
//! protects, holding the request's fingerprint and the response that was given.
//!
//! The database is the truth. A retry with the same id and the same request gets the stored
//! response; the same id with another request is a conflict. On Postgres a concurrent duplicate
//! waits on the first one's row and then replays its answer.

use sha2::{Digest, Sha256};

use crate::db::{Database, Tx};
use crate::{with_db, with_tx};

/// SHA-256 of the RPC name and the request's encoded bytes (as the client sent them).
pub type Fingerprint = [u8; 32];

pub fn fingerprint(rpc: &str, request: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(rpc.as_bytes());
    hasher.update([0u8]);
    hasher.update(request);
    hasher.finalize().into()
}

/// What the journal says about an operation id when a request claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: do the work, then [`complete`] in the same transaction.
    Fresh,
    /// Done before with the same request: answer this stored response.
    Replay(Vec<u8>),
    /// Done (or being done) with a different request, by the named RPC.
    Conflict { rpc: String },
}

/// One row of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub rpc: String,
    pub fingerprint: Vec<u8>,
    pub response: Option<Vec<u8>>,
}

/// Claims `operation_id` for `tenant` inside `tx`.
pub async fn claim(
    tx: &mut Tx,
    tenant: &str,
    operation_id: &str,
    rpc: &str,
    fingerprint: &Fingerprint,
) -> Result<Claim, sqlx::Error> {
    let inserted =
        with_tx!(tx, |conn| {
            sqlx::query(
        "INSERT INTO operations (tenant, operation_id, rpc, fingerprint) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant, operation_id) DO NOTHING"
    )
    .bind(tenant)
    .bind(operation_id)
    .bind(rpc)
    .bind(&fingerprint[..])
    .execute(conn)
    .await?
    .rows_affected()
        });
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let existing: (String, Vec<u8>, Option<Vec<u8>>) =
        with_tx!(tx, |conn| {
            sqlx::query_as(
        "SELECT rpc, fingerprint, response FROM operations WHERE tenant = $1 AND operation_id = $2"
    )
    .bind(tenant)
    .bind(operation_id)
    .fetch_one(conn)
    .await?
        });
    Ok(match existing {
        (stored_rpc, stored, Some(response)) if stored_rpc == rpc && stored == fingerprint => {
            Claim::Replay(response)
        }
        (stored_rpc, _, _) => Claim::Conflict { rpc: stored_rpc },
    })
}

/// Records the response of a [`Claim::Fresh`] operation, in the same transaction as its work.
pub async fn complete(
    tx: &mut Tx,
    tenant: &str,
    operation_id: &str,
    response: &[u8],
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query(
        "UPDATE operations SET response = $3, completed_at = CURRENT_TIMESTAMP \
         WHERE tenant = $1 AND operation_id = $2"
    )
    .bind(tenant)
    .bind(operation_id)
    .bind(response)
    .execute(conn)
    .await
    .map(drop)?);
    Ok(())
}

/// Reads an operation outside any transaction (the slow path behind the cache).
pub async fn find(
    db: &Database,
    tenant: &str,
    operation_id: &str,
) -> Result<Option<Operation>, sqlx::Error> {
    let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> =
        with_db!(db, |pool| {
            sqlx::query_as(
        "SELECT rpc, fingerprint, response FROM operations WHERE tenant = $1 AND operation_id = $2"
    )
    .bind(tenant)
    .bind(operation_id)
    .fetch_optional(pool)
    .await?
        });
    Ok(row.map(|(rpc, fingerprint, response)| Operation {
        rpc,
        fingerprint,
        response,
    }))
}
