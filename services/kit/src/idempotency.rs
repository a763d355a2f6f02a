//! The idempotency journal: one row per operation id, in the same transaction as the work it
//! protects, holding the request's fingerprint and the response that was given.
//!
//! The database is the truth. A retry with the same id and the same request gets the stored
//! response; the same id with another request is a conflict. On Postgres a concurrent duplicate
//! waits on the first one's row and then replays its answer.

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::db::{Database, Tx};
use crate::error::{ApiError, Violation};
use crate::{with_db, with_tx};

/// The `x-operation-id` metadata of a request, which stands in for an empty `operation_id` field.
pub fn metadata_operation_id<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get("x-operation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The operation id of a mutating request: its `operation_id` field, else the metadata; a UUID.
pub fn operation_id(field: &str, metadata: Option<&str>) -> Result<String, Violation> {
    let value = if field.is_empty() {
        metadata.unwrap_or_default()
    } else {
        field
    };
    if value.is_empty() {
        Err(Violation::new(
            "operation_id",
            "is required (a UUID, or metadata x-operation-id)",
        ))
    } else if uuid::Uuid::parse_str(value).is_err() {
        Err(Violation::new("operation_id", "must be a UUID"))
    } else {
        Ok(value.to_owned())
    }
}

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
pub struct StoredOperation {
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
    let inserted = with_tx!(tx, |conn| {
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
    let existing: (String, Vec<u8>, Option<Vec<u8>>) = with_tx!(tx, |conn| {
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
) -> Result<Option<StoredOperation>, sqlx::Error> {
    let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> = with_db!(db, |pool| {
        sqlx::query_as(
        "SELECT rpc, fingerprint, response FROM operations WHERE tenant = $1 AND operation_id = $2"
    )
    .bind(tenant)
    .bind(operation_id)
    .fetch_optional(pool)
    .await?
    });
    Ok(row.map(|(rpc, fingerprint, response)| StoredOperation {
        rpc,
        fingerprint,
        response,
    }))
}

/// Reads an operation inside `tx` (after the locks that order it behind a concurrent duplicate).
pub async fn find_in(
    tx: &mut Tx,
    tenant: &str,
    operation_id: &str,
) -> Result<Option<StoredOperation>, sqlx::Error> {
    let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> = with_tx!(tx, |conn| {
        sqlx::query_as(
        "SELECT rpc, fingerprint, response FROM operations WHERE tenant = $1 AND operation_id = $2"
    )
    .bind(tenant)
    .bind(operation_id)
    .fetch_optional(conn)
    .await?
    });
    Ok(row.map(|(rpc, fingerprint, response)| StoredOperation {
        rpc,
        fingerprint,
        response,
    }))
}

/// One mutating request, identified for idempotency: the database is the truth, the cache
/// the fast path.
#[derive(Debug, Clone)]
pub struct Operation {
    pub tenant: String,
    pub id: String,
    pub rpc: &'static str,
    pub fingerprint: Fingerprint,
}

/// How a mutating request starts.
#[derive(Debug)]
pub enum Start {
    /// First time: do the work in this transaction, then [`Operation::finish`].
    Fresh(Tx),
    /// Done before: the stored response, encoded.
    Replay(Vec<u8>),
}

/// How long the cache remembers a finished operation; the database remembers it for good.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Operation {
    pub fn new(tenant: &str, id: &str, rpc: &'static str, request: &[u8]) -> Self {
        Self {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            rpc,
            fingerprint: fingerprint(rpc, request),
        }
    }

    fn cache_key(&self) -> String {
        format!("op:{}:{}", self.tenant, self.id)
    }

    fn conflict(&self, rpc: &str) -> ApiError {
        ApiError::AlreadyExists(format!(
            "operation_id {} was already used by a different {rpc} request; use a new id for a new operation",
            self.id
        ))
    }

    /// Replays a finished operation from the cache, else claims it in a new transaction
    /// (waiting for a concurrent duplicate to finish, then replaying its answer).
    pub async fn start(&self, db: &Database, cache: &dyn Cache) -> Result<Start, ApiError> {
        if let Some(response) = self.cached(cache).await {
            return Ok(Start::Replay(response));
        }
        let mut tx = db.begin().await?;
        match claim(&mut tx, &self.tenant, &self.id, self.rpc, &self.fingerprint).await? {
            Claim::Fresh => Ok(Start::Fresh(tx)),
            Claim::Replay(response) => {
                tx.rollback().await?;
                self.remember(cache, &response).await;
                Ok(Start::Replay(response))
            }
            Claim::Conflict { rpc } => {
                tx.rollback().await?;
                Err(self.conflict(&rpc))
            }
        }
    }

    /// Records the response and commits the work with it.
    pub async fn finish(
        &self,
        mut tx: Tx,
        cache: &dyn Cache,
        response: &[u8],
    ) -> Result<(), ApiError> {
        complete(&mut tx, &self.tenant, &self.id, response).await?;
        tx.commit().await?;
        self.remember(cache, response).await;
        Ok(())
    }

    /// The cache's answer for this operation, when it holds one for this very request.
    pub async fn cached(&self, cache: &dyn Cache) -> Option<Vec<u8>> {
        match cache.get(&self.cache_key()).await {
            Ok(Some(stored)) if stored.len() >= 32 && stored[..32] == self.fingerprint => {
                Some(stored[32..].to_vec())
            }
            // A stale or foreign entry: only the database may refuse.
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "idempotency cache unavailable; using the database");
                None
            }
        }
    }

    /// For work that calls an upstream, which must not hold a transaction open — and for work
    /// that writes its operation row in the same statement as its journal row and has just been
    /// refused as a duplicate: the stored response when this operation was done before with the
    /// same request; `ALREADY_EXISTS` when it was done with another; `None` when the work is
    /// still to do.
    pub async fn lookup(
        &self,
        db: &Database,
        cache: &dyn Cache,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(response) = self.cached(cache).await {
            return Ok(Some(response));
        }
        let found = self.judge(find(db, &self.tenant, &self.id).await?)?;
        if let Some(response) = &found {
            self.remember(cache, response).await;
        }
        Ok(found)
    }

    /// [`Operation::lookup`] inside a transaction, without the cache: for work that first takes
    /// the locks that order it behind a concurrent duplicate, then asks whether it was done.
    pub async fn lookup_in(&self, tx: &mut Tx) -> Result<Option<Vec<u8>>, ApiError> {
        self.judge(find_in(tx, &self.tenant, &self.id).await?)
    }

    fn judge(&self, stored: Option<StoredOperation>) -> Result<Option<Vec<u8>>, ApiError> {
        match stored {
            Some(stored) if stored.rpc != self.rpc || stored.fingerprint != self.fingerprint => {
                Err(self.conflict(&stored.rpc))
            }
            Some(StoredOperation {
                response: Some(response),
                ..
            }) => Ok(Some(response)),
            Some(_) => Err(ApiError::Aborted(format!(
                "operation_id {} is still being done; retry",
                self.id
            ))),
            None => Ok(None),
        }
    }

    /// Records the response of work done after [`Operation::lookup`] found nothing; answers the
    /// response that stands — this one, or a concurrent duplicate's that was recorded first.
    pub async fn record(
        &self,
        db: &Database,
        cache: &dyn Cache,
        response: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        match self.start(db, cache).await? {
            Start::Fresh(tx) => {
                self.finish(tx, cache, response).await?;
                Ok(response.to_vec())
            }
            Start::Replay(earlier) => Ok(earlier),
        }
    }

    /// Tells the cache the response of a finished operation (best effort: the database has it).
    pub async fn remember(&self, cache: &dyn Cache, response: &[u8]) {
        let mut value = self.fingerprint.to_vec();
        value.extend_from_slice(response);
        if let Err(e) = cache.set(&self.cache_key(), &value, CACHE_TTL).await {
            tracing::debug!(error = %e, "idempotency cache unavailable; the database keeps the answer");
        }
    }
}
