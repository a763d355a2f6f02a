//! Migrations and the idempotency journal, on Postgres and on SQLite.

use fiscus_kit::db::{ConnectSettings, Database, Migrations};
use std::time::Duration;

use fiscus_kit::ApiError;
use fiscus_kit::cache::MemoryCache;
use fiscus_kit::idempotency::{self, Operation};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database with nothing in it: a fresh Postgres schema, or a new SQLite file.
enum Fresh {
    Postgres(String),
    Sqlite(tempfile::TempDir),
}

impl Fresh {
    fn postgres() -> Self {
        Self::Postgres(format!("kit_{}", uuid::Uuid::new_v4().simple()))
    }

    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    async fn open(&self) -> Database {
        let settings = ConnectSettings::default();
        match self {
            Self::Postgres(schema) => Database::connect(&database_url(), schema, &settings)
                .await
                .expect("connects to Postgres"),
            Self::Sqlite(dir) => Database::open_sqlite_file(&dir.path().join("kit.db"), &settings)
                .await
                .expect("opens SQLite"),
        }
    }

    async fn drop_schema(&self) {
        if let Self::Postgres(schema) = self {
            let db = self.open().await;
            if let Database::Postgres(pool) = &db {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(pool)
                    .await
                    .expect("drops the test schema");
            }
            db.close().await;
        }
    }
}

async fn migrations_apply_from_empty_and_again_on_restart(fresh: Fresh) {
    let db = fresh.open().await;
    db.migrate("kit-test", &Migrations::NONE)
        .await
        .expect("from empty");
    db.migrate("kit-test", &Migrations::NONE)
        .await
        .expect("again, same process");
    db.close().await;
    let db = fresh.open().await;
    db.migrate("kit-test", &Migrations::NONE)
        .await
        .expect("again, after a restart");
    let found = idempotency::find(&db, "tenant", "none")
        .await
        .expect("the table exists");
    assert_eq!(found, None);
    db.close().await;
    fresh.drop_schema().await;
}

/// The operation of an InitActivation request whose terminal id is `body`.
fn operation(tenant: &str, id: &str, body: &str) -> Operation {
    let mut request = fiscus_proto::v1::InitActivationRequest {
        operation_id: id.into(),
        terminal_id: body.into(),
        ..Default::default()
    };
    Operation::new(tenant, id, "InitActivation", &mut request)
}

async fn operations_round_trip(fresh: Fresh) {
    let db = fresh.open().await;
    db.migrate("kit-test", &Migrations::NONE)
        .await
        .expect("migrates");
    // `cold()` is a cache that has forgotten everything: its callers hear from the database.
    let cache = MemoryCache::new("kit-test");
    let cold = || MemoryCache::new("kit-test-cold");
    let lease = Duration::from_secs(60);
    let first = operation("1234567", "op-1", "request bytes");
    let response = "ответ · răspuns".as_bytes();

    // Held while the upstream work runs: a duplicate is told to retry, another request refused.
    assert_eq!(
        first
            .begin_upstream(&db, &cache, lease)
            .await
            .expect("begins"),
        None
    );
    let busy = first
        .begin_upstream(&db, &cold(), lease)
        .await
        .expect_err("held");
    assert!(matches!(busy, ApiError::Aborted(_)), "{busy:?}");
    let changed = operation("1234567", "op-1", "other bytes");
    let refused = changed
        .begin_upstream(&db, &cold(), lease)
        .await
        .expect_err("another request");
    assert!(matches!(refused, ApiError::AlreadyExists(_)), "{refused:?}");

    // Finished: the answer stands, from the database as from the cache.
    let standing = first
        .finish_upstream(&db, &cache, response)
        .await
        .expect("finishes");
    assert_eq!(standing, response);
    for replay in [
        first.begin_upstream(&db, &cold(), lease).await,
        first.begin_upstream(&db, &cache, lease).await,
        first.lookup(&db, &cold()).await,
    ] {
        assert_eq!(replay.expect("replays"), Some(response.to_vec()));
    }
    let other_tenant = operation("7654321", "op-1", "other bytes");
    assert_eq!(
        other_tenant.lookup(&db, &cold()).await.expect("looks"),
        None,
        "ids are per tenant"
    );

    // Failed work lets go: a retry does it again at once.
    let failed = operation("1234567", "op-2", "request bytes");
    assert_eq!(
        failed
            .begin_upstream(&db, &cache, lease)
            .await
            .expect("begins"),
        None
    );
    failed.abandon(&db).await.expect("lets go");
    assert_eq!(
        failed
            .begin_upstream(&db, &cache, lease)
            .await
            .expect("begins again"),
        None
    );

    // A holder that died: once its lease has run out, the next attempt takes over.
    let orphan = operation("1234567", "op-3", "request bytes");
    assert_eq!(
        orphan
            .begin_upstream(&db, &cache, Duration::ZERO)
            .await
            .expect("begins"),
        None
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        orphan
            .begin_upstream(&db, &cold(), lease)
            .await
            .expect("takes over"),
        None
    );
    let busy = orphan
        .begin_upstream(&db, &cold(), lease)
        .await
        .expect_err("held again");
    assert!(matches!(busy, ApiError::Aborted(_)), "{busy:?}");

    // Read inside a transaction, judged for the request at hand.
    let mut tx = db.begin().await.expect("begins");
    let stored = idempotency::find_in(&mut tx, "1234567", "op-1")
        .await
        .expect("finds in a transaction")
        .expect("present");
    assert_eq!(stored.fingerprint, first.fingerprint.to_vec());
    assert_eq!(
        first.lookup_in(&mut tx).await.expect("judges"),
        Some(response.to_vec())
    );
    let refused = changed.lookup_in(&mut tx).await.expect_err("a conflict");
    assert!(refused.to_string().contains("op-1"), "{refused}");
    let unknown = operation("1234567", "op-9", "request bytes");
    assert_eq!(unknown.lookup_in(&mut tx).await.expect("judges"), None);
    tx.rollback().await.expect("rolls back");
    db.close().await;
    fresh.drop_schema().await;
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Fresh::postgres()).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Fresh::sqlite()).await })*
        }
    };
}

on_both_backends!(
    migrations_apply_from_empty_and_again_on_restart,
    operations_round_trip,
);
