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

/// The metadata key a client may send the operation id in, instead of the field.
pub const OPERATION_ID_METADATA: &str = "x-operation-id";

/// The `x-operation-id` metadata of a request, which stands in for an empty `operation_id` field.
pub fn metadata_operation_id<T>(request: &tonic::Request<T>) -> Option<String> {
    request.metadata().get(OPERATION_ID_METADATA).map(|v| {
        v.to_str()
            .map(str::to_owned)
            .unwrap_or_else(|_| "\u{fffd}".to_owned())
    })
}

/// One UUID in its canonical 36-character form (`8-4-4-4-12` hex digits), lowercased: other
/// spellings of the same UUID (no dashes, braces, `urn:uuid:`) are refused, so that one
/// operation can never be keyed twice.
pub fn canonical_uuid(text: &str) -> Option<String> {
    let hyphenated = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    hyphenated
        .then(|| uuid::Uuid::try_parse(text).ok())
        .flatten()
        .map(|id| id.hyphenated().to_string())
}

/// The operation id of a mutating request, from its `operation_id` field and the
/// `x-operation-id` metadata: either may be given, both must then be the same UUID, written in
/// the canonical 36-character form (in either case; answered lowercase).
pub fn operation_id(field: &str, metadata: Option<&str>) -> Result<String, Vec<Violation>> {
    const FORM: &str =
        "must be a UUID in its 36-character form, e.g. 0b6a3c52-2f0e-4d7e-9a57-3c1f1a2b9e10";
    let metadata = metadata.filter(|m| !m.is_empty());
    let mut violations = Vec::new();
    let mut read = |name: &str, text: &str| {
        let id = canonical_uuid(text);
        if id.is_none() {
            violations.push(Violation::new(name, FORM));
        }
        id
    };
    let from_field = (!field.is_empty())
        .then(|| read("operation_id", field))
        .flatten();
    let from_metadata = metadata.and_then(|m| read(OPERATION_ID_METADATA, m));
    if field.is_empty() && metadata.is_none() {
        violations.push(Violation::new(
            "operation_id",
            format!("is required (a UUID, or metadata {OPERATION_ID_METADATA})"),
        ));
    }
    if let (Some(a), Some(b)) = (&from_field, &from_metadata)
        && a != b
    {
        let both = format!(
            "operation_id {a} and metadata {OPERATION_ID_METADATA} {b} differ; send one, or the same id in both"
        );
        violations.push(Violation::new("operation_id", both.clone()));
        violations.push(Violation::new(OPERATION_ID_METADATA, both));
    }
    match (violations.is_empty(), from_field.or(from_metadata)) {
        (true, Some(id)) => Ok(id),
        _ => Err(violations),
    }
}

/// SHA-256 of the RPC name and the request's canonical bytes, operation id left out.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(rpc: &str, canonical: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(rpc.as_bytes());
    hasher.update([0u8]);
    hasher.update(canonical);
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
    /// The operation `id` (from [`operation_id`]) of `request`, fingerprinted by its canonical
    /// bytes without the id: a retry that moves the id between field and metadata, or whose map
    /// entries come in another order, is the same operation.
    pub fn new<R: fiscus_proto::Mutating>(
        tenant: &str,
        id: &str,
        rpc: &'static str,
        request: &mut R,
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            rpc,
            fingerprint: fingerprint(rpc, &request.canonical_without_operation_id()),
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
                replayed(self.rpc);
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
            }) => {
                replayed(self.rpc);
                Ok(Some(response))
            }
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

/// Runs upstream-calling `work` once per operation: a retry of the same request gets the first
/// answer, a duplicate while it runs is `ABORTED` (retry), the same id with another request is
/// `ALREADY_EXISTS`. The id is held for `lease` while `work` runs and let go when it fails — or
/// when the caller goes away before it ends — so that a retry does the work again at once.
pub async fn once_upstream<Res, F>(
    db: &Database,
    cache: &dyn Cache,
    operation: &Operation,
    lease: std::time::Duration,
    work: F,
) -> Result<Res, ApiError>
where
    Res: prost::Message + Default,
    F: std::future::Future<Output = Result<Res, ApiError>>,
{
    let decode = |bytes: &[u8]| {
        Res::decode(bytes).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("stored response does not decode: {e}"))
        })
    };
    if let Some(stored) = operation.begin_upstream(db, cache, lease).await? {
        return decode(&stored);
    }
    let mut held = Held {
        operation: Some((operation.clone(), db.clone())),
    };
    let outcome = work.await;
    held.operation = None;
    match outcome {
        Ok(response) => decode(
            &operation
                .finish_upstream(db, cache, &response.encode_to_vec())
                .await?,
        ),
        Err(e) => {
            if let Err(release) = operation.abandon(db).await {
                tracing::warn!(error = %release, "could not let go of a failed operation; it is held until its lease runs out");
            }
            Err(e)
        }
    }
}

/// While it holds an operation, lets go of it (in the background) when dropped: the caller went
/// away before the upstream work ended.
struct Held {
    operation: Option<(Operation, Database)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((operation, db)) = self.operation.take() {
            tokio::spawn(async move {
                let _ = operation.abandon(&db).await;
            });
        }
    }
}

/// [`Operation::remember`] for many operations at once, in one round trip; `entries` from
/// [`Operation::cache_entry`].
pub async fn remember_all(cache: &dyn Cache, entries: &[(String, Vec<u8>)]) {
    if let Err(e) = cache.set_many(entries, CACHE_TTL).await {
        tracing::debug!(error = %e, "idempotency cache unavailable; the database keeps the answers");
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReplayLabels {
    rpc: &'static str,
}

static REPLAYS: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        ReplayLabels,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(|| {
    crate::metrics::register(
        "fiscus_idempotency_replays",
        "Retries answered with the stored answer of their operation",
        Default::default(),
    )
});

fn replayed(rpc: &'static str) {
    REPLAYS.get_or_create(&ReplayLabels { rpc }).inc();
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b6a3c52-2f0e-4d7e-9a57-3c1f1a2b9e10";

    fn fields(result: Result<String, Vec<Violation>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn the_canonical_form_is_the_only_spelling_and_case_does_not_matter() {
        assert_eq!(operation_id(ID, None).unwrap(), ID);
        assert_eq!(operation_id(&ID.to_uppercase(), None).unwrap(), ID);
        assert_eq!(operation_id("", Some(ID)).unwrap(), ID);
        let simple = ID.replace('-', "");
        for other in [
            simple.as_str(),
            &format!("{{{ID}}}"),
            &format!("urn:uuid:{ID}"),
            "x",
            &format!(" {ID}"),
        ] {
            assert_eq!(
                fields(operation_id(other, None)),
                ["operation_id"],
                "{other}"
            );
            assert_eq!(
                fields(operation_id("", Some(other))),
                [OPERATION_ID_METADATA],
                "{other}"
            );
        }
    }

    #[test]
    fn field_and_metadata_must_agree() {
        let other = "1b6a3c52-2f0e-4d7e-9a57-3c1f1a2b9e10";
        assert_eq!(
            fields(operation_id(ID, Some(other))),
            ["operation_id", OPERATION_ID_METADATA]
        );
        assert_eq!(operation_id(ID, Some(&ID.to_uppercase())).unwrap(), ID);
        assert_eq!(fields(operation_id("", None)), ["operation_id"]);
    }

    #[test]
    fn the_fingerprint_leaves_the_id_out_and_ignores_map_order() {
        use fiscus_proto::v1 as pb;
        let pay = |entries: &[(&str, &str)]| pb::PayItem {
            amount: "1.00".into(),
            data: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let mut a = pb::SignReceiptRequest {
            operation_id: ID.into(),
            payments: vec![pay(&[("a", "1"), ("b", "2"), ("c", "3")])],
            ..Default::default()
        };
        let mut b = pb::SignReceiptRequest {
            payments: vec![pay(&[("c", "3"), ("a", "1"), ("b", "2")])],
            ..Default::default()
        };
        let fa = Operation::new("t", ID, "SignReceipt", &mut a).fingerprint;
        let fb = Operation::new("t", ID, "SignReceipt", &mut b).fingerprint;
        assert_eq!(fa, fb);
        assert_eq!(a.operation_id, ID, "the request keeps its id");
        b.payments[0].amount = "2.00".into();
        assert_ne!(
            Operation::new("t", ID, "SignReceipt", &mut b).fingerprint,
            fa
        );
    }
}
