//! Drops the Postgres schemas that end-to-end tests left behind over an hour ago (`make test`
//! runs it first). A test schema is named `e2e_<what>_<UUID v7>`, so its name says when it was
//! made; a younger one may belong to a test that is still running. Schemas named before that
//! rule (with a random UUID) count as old.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OLD: Duration = Duration::from_secs(3600);

/// When a test schema was made, from the UUID its name ends in; `None` for a random UUID.
fn made_at(schema: &str) -> Option<Duration> {
    let suffix = schema.rsplit('_').next()?;
    let (seconds, nanos) = uuid::Uuid::parse_str(suffix)
        .ok()?
        .get_timestamp()?
        .to_unix();
    Some(Duration::new(seconds, nanos))
}

async fn sweep() -> anyhow::Result<usize> {
    let pool = sqlx::PgPool::connect(&fiscus_e2e::database_url()).await?;
    let schemas: Vec<String> =
        sqlx::query_scalar(r"SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'e2e\_%'")
            .fetch_all(&pool)
            .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let mut dropped = 0;
    for schema in schemas {
        if made_at(&schema).is_some_and(|made| now.saturating_sub(made) < OLD) {
            continue;
        }
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await?;
        dropped += 1;
    }
    pool.close().await;
    Ok(dropped)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Housekeeping: a failure is worth a line, never a failed test run.
    match sweep().await {
        Ok(0) => {}
        Ok(n) => println!("sweep-schemas: dropped {n} test schemas made over an hour ago"),
        Err(e) => eprintln!("sweep-schemas: left the test schemas as they are: {e:#}"),
    }
}
