//! Migrations and the idempotency journal, on Postgres and on SQLite.

use fiscus_kit::db::{ConnectSettings, Database, Migrations};
use fiscus_kit::idempotency::{self, Claim, Operation};

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

async fn operations_round_trip(fresh: Fresh) {
    let db = fresh.open().await;
    db.migrate("kit-test", &Migrations::NONE)
        .await
        .expect("migrates");
    let request = idempotency::fingerprint("SignReceipt", b"request bytes");
    let other = idempotency::fingerprint("SignReceipt", b"other bytes");
    let response = "ответ · răspuns".as_bytes();

    let mut tx = db.begin().await.expect("begins");
    let claim = idempotency::claim(&mut tx, "1234567", "op-1", "SignReceipt", &request)
        .await
        .expect("claims");
    assert_eq!(claim, Claim::Fresh);
    idempotency::complete(&mut tx, "1234567", "op-1", response)
        .await
        .expect("completes");
    tx.commit().await.expect("commits");

    let mut tx = db.begin().await.expect("begins");
    let same = idempotency::claim(&mut tx, "1234567", "op-1", "SignReceipt", &request)
        .await
        .expect("claims again");
    assert_eq!(same, Claim::Replay(response.to_vec()));
    let changed = idempotency::claim(&mut tx, "1234567", "op-1", "SignReceipt", &other)
        .await
        .expect("claims with another request");
    assert_eq!(
        changed,
        Claim::Conflict {
            rpc: "SignReceipt".into()
        }
    );
    let other_tenant = idempotency::claim(&mut tx, "7654321", "op-1", "SignReceipt", &other)
        .await
        .expect("another tenant");
    assert_eq!(other_tenant, Claim::Fresh, "operation ids are per tenant");
    tx.rollback().await.expect("rolls back");

    let stored = idempotency::find(&db, "1234567", "op-1")
        .await
        .expect("finds")
        .expect("present");
    assert_eq!(stored.fingerprint, request.to_vec());
    assert_eq!(stored.response.as_deref(), Some(response));
    assert_eq!(
        idempotency::find(&db, "7654321", "op-1")
            .await
            .expect("finds"),
        None,
        "a rolled-back claim leaves nothing"
    );

    // Read inside a transaction, judged for the request at hand.
    let mut tx = db.begin().await.expect("begins");
    let in_tx = idempotency::find_in(&mut tx, "1234567", "op-1")
        .await
        .expect("finds in a transaction");
    assert_eq!(in_tx, Some(stored));
    let same = Operation::new("1234567", "op-1", "SignReceipt", b"request bytes");
    assert_eq!(
        same.lookup_in(&mut tx).await.expect("judges"),
        Some(response.to_vec())
    );
    let changed = Operation::new("1234567", "op-1", "SignReceipt", b"other bytes");
    let refused = changed.lookup_in(&mut tx).await.expect_err("a conflict");
    assert!(refused.to_string().contains("op-1"), "{refused}");
    let unknown = Operation::new("1234567", "op-2", "SignReceipt", b"request bytes");
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
