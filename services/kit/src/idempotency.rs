//! The idempotency journal: one row per operation id, in the same transaction as the work it
//! protects, holding the request's fingerprint and the response that was given.
//!
//! The database is the truth, the cache the fast path. A retry with the same id and the same
//! request gets the stored response; the same id with another request is a conflict. Work that
//! writes a journal row records its operation row in the same statement or transaction (the
//! receipt journal does); work that calls an upstream holds the id while it runs
//! ([`Operation::begin_upstream`]), so that a concurrent duplicate is told to retry.

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

/// One row of the journal.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredOperation {
    pub rpc: String,
    pub fingerprint: Vec<u8>,
    pub response: Option<Vec<u8>>,
    /// Until when work without an answer yet holds the id (microseconds since the Unix epoch).
    pub lease_until_us: Option<i64>,
}

const FIND: &str = "SELECT rpc, fingerprint, response, lease_until_us FROM operations \
     WHERE tenant = $1 AND operation_id = $2";

/// Reads an operation outside any transaction (the slow path behind the cache).
pub async fn find(
    db: &Database,
    tenant: &str,
    operation_id: &str,
) -> Result<Option<StoredOperation>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_as(FIND)
        .bind(tenant)
        .bind(operation_id)
        .fetch_optional(pool)
        .await)
}

/// Reads an operation inside `tx` (after the locks that order it behind a concurrent duplicate).
pub async fn find_in(
    tx: &mut Tx,
    tenant: &str,
    operation_id: &str,
) -> Result<Option<StoredOperation>, sqlx::Error> {
    with_tx!(tx, |conn| sqlx::query_as(FIND)
        .bind(tenant)
        .bind(operation_id)
        .fetch_optional(conn)
        .await)
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

    /// What the cache, else the database, says of this operation — for work that writes its
    /// operation row with its journal row and has just found the id taken: the stored response
    /// when it was done with the same request; `ALREADY_EXISTS` when with another; `ABORTED`
    /// while upstream work holds it; `None` when nothing is recorded.
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

    /// Begins work that calls an upstream, which must not hold a transaction open meanwhile:
    /// the stored response when this operation was done before with the same request;
    /// `ALREADY_EXISTS` when it was done with another; `ABORTED` (retry) while a duplicate is
    /// doing it. Otherwise the id is now held for `lease` — long enough for the work — and the
    /// work is to be done, then [`Operation::finish_upstream`] or [`Operation::abandon`]. A holder
    /// that died is taken over when its lease runs out.
    pub async fn begin_upstream(
        &self,
        db: &Database,
        cache: &dyn Cache,
        lease: std::time::Duration,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(response) = self.cached(cache).await {
            return Ok(Some(response));
        }
        let now = now_us();
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let held = with_db!(db, |pool| sqlx::query(
            "INSERT INTO operations (tenant, operation_id, rpc, fingerprint, lease_until_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, operation_id) DO NOTHING"
        )
        .bind(&self.tenant)
        .bind(&self.id)
        .bind(self.rpc)
        .bind(&self.fingerprint[..])
        .bind(until)
        .execute(pool)
        .await?
        .rows_affected());
        if held == 1 {
            return Ok(None);
        }
        let stored = find(db, &self.tenant, &self.id).await?;
        let expired = stored.as_ref().and_then(|held| {
            let ours = held.rpc == self.rpc && held.fingerprint == self.fingerprint;
            (ours && held.response.is_none())
                .then_some(held.lease_until_us)
                .flatten()
                .filter(|&until| until < now)
        });
        if let Some(expired) = expired {
            let taken = with_db!(db, |pool| sqlx::query(
                "UPDATE operations SET lease_until_us = $4 WHERE tenant = $1 \
                 AND operation_id = $2 AND response IS NULL AND lease_until_us = $3"
            )
            .bind(&self.tenant)
            .bind(&self.id)
            .bind(expired)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected());
            if taken == 1 {
                tracing::warn!(operation = %self.id, "took over an operation whose holder's lease ran out");
                return Ok(None);
            }
        }
        let found = self.judge(stored)?;
        if let Some(response) = &found {
            self.remember(cache, response).await;
        }
        Ok(found)
    }

    /// Records the response of work begun with [`Operation::begin_upstream`] and answers the
    /// response that stands: this one, or that of a holder that took over after this one's lease
    /// ran out and finished first.
    pub async fn finish_upstream(
        &self,
        db: &Database,
        cache: &dyn Cache,
        response: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let recorded = with_db!(db, |pool| sqlx::query(
            "UPDATE operations SET response = $3, completed_at = CURRENT_TIMESTAMP, \
             lease_until_us = NULL WHERE tenant = $1 AND operation_id = $2 AND response IS NULL"
        )
        .bind(&self.tenant)
        .bind(&self.id)
        .bind(response)
        .execute(pool)
        .await?
        .rows_affected());
        let standing = if recorded == 1 {
            response.to_vec()
        } else {
            self.judge(find(db, &self.tenant, &self.id).await?)?
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "operation_id {} lost its hold before its answer was recorded",
                        self.id
                    ))
                })?
        };
        self.remember(cache, &standing).await;
        Ok(standing)
    }

    /// Lets go of an operation begun with [`Operation::begin_upstream`] whose work failed, so
    /// that a retry does it again at once.
    pub async fn abandon(&self, db: &Database) -> Result<(), ApiError> {
        with_db!(db, |pool| sqlx::query(
            "DELETE FROM operations WHERE tenant = $1 AND operation_id = $2 AND response IS NULL"
        )
        .bind(&self.tenant)
        .bind(&self.id)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Tells the cache the response of a finished operation (best effort: the database has it).
    pub async fn remember(&self, cache: &dyn Cache, response: &[u8]) {
        let (key, value) = self.cache_entry(response);
        if let Err(e) = cache.set(&key, &value, CACHE_TTL).await {
            tracing::debug!(error = %e, "idempotency cache unavailable; the database keeps the answer");
        }
    }

    /// The cache entry that remembers this operation answered with `response`, for
    /// [`remember_all`].
    pub fn cache_entry(&self, response: &[u8]) -> (String, Vec<u8>) {
        let mut value = self.fingerprint.to_vec();
        value.extend_from_slice(response);
        (self.cache_key(), value)
    }
}

/// [`Operation::remember`] for many operations at once, in one round trip; `entries` from
/// [`Operation::cache_entry`].
pub async fn remember_all(cache: &dyn Cache, entries: &[(String, Vec<u8>)]) {
    if let Err(e) = cache.set_many(entries, CACHE_TTL).await {
        tracing::debug!(error = %e, "idempotency cache unavailable; the database keeps the answers");
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
