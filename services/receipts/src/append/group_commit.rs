//! Group commit: lone appends to the journal from many terminals share one statement, and so one
//! commit, on Postgres.
//!
//! One writer per process takes the queue in order: while one group is being committed the next
//! gathers, so a group is as large as the load makes it and an append under light load waits for
//! nobody. A group holds at most one entry per terminal, and an entry deferred for that reason
//! keeps its place ahead of later entries of its terminal; so a terminal's entries are committed
//! in the order they were queued, and the next receipt of a terminal may be chained on one that
//! is still queued. Each receipt still moves its own terminal's head only from its own previous
//! one, so an entry chained on one that did not go in is left out, never misplaced; so is one
//! whose head another transaction holds locked (a refund, a cancellation, another replica), so
//! the writer never waits on a terminal and every other terminal goes on. When a
//! group's statement fails (most likely on a duplicate operation id) its entries are appended one
//! by one, each getting its own answer.
//!
//! One writer, not several: only one commits a terminal's queued receipts in their order, which
//! the pipelining needs; and on the 2-core benchmark machine eight writers made groups of under
//! three entries and cost over a third of the throughput.
//!
//! Nothing else stands between one group and the next: the writer keeps a connection of its own
//! (taking it from the pool checks it with a round trip), and tells the cache a group's answers
//! while the next group is being committed.
//!
//! The writer is supervised: should it ever panic, the service reports NOT_SERVING, the entries
//! of the group it held are answered with an error (their outcome is unknown until a retry with
//! the same operation id), and a new writer takes over the queue.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fiscus_domain::TerminalId;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::health::ServiceHealth;
use fiscus_kit::idempotency;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::metrics;
use crate::store::{self, Appended, Entry};

/// The most entries one statement carries.
const MAX_GROUP: usize = 128;

type Answer = Result<Appended, sqlx::Error>;

struct Job {
    entry: Entry,
    done: oneshot::Sender<Answer>,
}

pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

/// An entry in the queue; its answer comes once its group is committed.
pub struct Queued(oneshot::Receiver<Answer>);

impl Queued {
    pub async fn answer(self) -> Answer {
        self.0.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

/// The health fault raised while no writer runs.
const WRITER_DOWN: &str = "journal writer";
/// How long a panicked writer's successor waits first: a writer that panics at once again
/// does not spin.
const RESTART_AFTER: Duration = Duration::from_secs(1);

impl GroupCommit {
    /// Starts the writer under a supervisor; it stops when this is dropped and the queue has
    /// drained. Once a group is committed and answered, the writer tells `cache` the answers, in
    /// one round trip, while it commits the next.
    pub fn start(pool: PgPool, cache: SharedCache, health: ServiceHealth) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(supervise(pool, cache, Arc::new(Mutex::new(jobs)), health));
        Self { queue }
    }

    /// Queues `entry` behind every entry queued before it. Once queued it is appended even if
    /// nobody waits for the answer: a retry then finds it.
    pub async fn enqueue(&self, entry: Entry) -> Result<Queued, sqlx::Error> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job { entry, done })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        Ok(Queued(answer))
    }
}

/// Runs writers one after the other: a writer that panicked is replaced, after NOT_SERVING is
/// reported for the time it takes. The queue outlives each writer.
async fn supervise(
    pool: PgPool,
    cache: SharedCache,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    health: ServiceHealth,
) {
    loop {
        metrics::WRITER_UP.set(1);
        let run = tokio::spawn(writer(pool.clone(), cache.clone(), jobs.clone()));
        match run.await {
            // The queue closed: the journal is gone.
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                metrics::WRITER_UP.set(0);
                tracing::error!(error = %e, "the journal writer panicked; starting another");
                health.set_fault(WRITER_DOWN, true).await;
                tokio::time::sleep(RESTART_AFTER).await;
                health.set_fault(WRITER_DOWN, false).await;
            }
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        }
    }
}

async fn writer(pool: PgPool, cache: SharedCache, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // One writer at a time holds the queue; a successor takes it over where this one stopped.
    let mut jobs = jobs.lock().await;
    // Entries deferred from earlier groups, in queue order, ahead of the queue.
    let mut deferred = VecDeque::new();
    let mut connection = None;
    // The cache is told of one group at a time, while the next one commits.
    let mut remembering: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let first = match deferred.pop_front() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut terminals = HashSet::from([terminal(&first)]);
        let mut group = vec![first];
        let mut later = VecDeque::new();
        while group.len() < MAX_GROUP {
            let Some(job) = deferred.pop_front().or_else(|| jobs.try_recv().ok()) else {
                break;
            };
            if terminals.insert(terminal(&job)) {
                group.push(job);
            } else {
                later.push_back(job);
            }
        }
        later.append(&mut deferred);
        deferred = later;
        metrics::GROUP_SIZE.observe(group.len() as f64);
        let answered = commit(&pool, &mut connection, group).await;
        if let Some(previous) = remembering.take() {
            let _ = previous.await;
        }
        let cache = cache.clone();
        remembering = Some(tokio::spawn(async move {
            idempotency::remember_all(cache.as_ref(), &answered).await;
        }));
    }
}

/// The writer's connection, taken from the pool when it has none.
async fn connection<'c>(
    pool: &PgPool,
    held: &'c mut Option<PoolConnection<Postgres>>,
) -> Result<&'c mut PgConnection, sqlx::Error> {
    let connection = match held.take() {
        Some(connection) => connection,
        None => pool.acquire().await?,
    };
    Ok(held.insert(connection))
}

fn terminal(job: &Job) -> TerminalId {
    job.entry.receipt.terminal()
}

/// Appends a group, answers each of its entries, and gives back the cache entries of the
/// receipts that went in. After a failed statement the writer's connection goes back to the pool.
async fn commit(
    pool: &PgPool,
    held: &mut Option<PoolConnection<Postgres>>,
    group: Vec<Job>,
) -> Vec<(String, Vec<u8>)> {
    let entries: Vec<&Entry> = group.iter().map(|job| &job.entry).collect();
    let appended = match connection(pool, held).await {
        Ok(connection) => store::append_postgres(connection, &entries).await,
        Err(e) => Err(e),
    };
    if appended.is_err() {
        *held = None;
    }
    #[cfg(test)]
    if entries.iter().any(|e| e.receipt.reference == tests::PANIC) {
        panic!("a test asked the writer to panic");
    }
    let answers: Vec<Answer> = match appended {
        Ok(appended) => appended.into_iter().map(Ok).collect(),
        Err(e) if entries.len() == 1 => vec![Err(e)],
        // The database is away, not refusing one entry: every entry gets the error at once
        // rather than a connection timeout each.
        Err(e) if e.as_database_error().is_none() => {
            let message = e.to_string();
            std::iter::once(e)
                .chain(
                    (1..entries.len())
                        .map(|_| sqlx::Error::Io(std::io::Error::other(message.clone()))),
                )
                .map(Err)
                .collect()
        }
        Err(e) => {
            tracing::debug!(error = %e, size = entries.len(), "a group append failed; appending its entries one by one");
            let mut answers = Vec::with_capacity(entries.len());
            for entry in &entries {
                answers.push(
                    store::append_postgres(pool, &[entry])
                        .await
                        .map(|appended| appended[0]),
                );
            }
            answers
        }
    };
    let remembered: Vec<_> = entries
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| matches!(answer, Ok(Appended::Done)))
        .map(|(entry, _)| entry.operation.cache_entry(&entry.response))
        .collect();
    for (job, answer) in group.into_iter().zip(answers) {
        // A caller that stopped waiting finds its answer on retry.
        let _ = job.done.send(answer);
    }
    remembered
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use fiscus_kit::cache::MemoryCache;
    use fiscus_kit::db::{ConnectSettings, Database};
    use fiscus_kit::health::Health;
    use fiscus_kit::idempotency::Operation;

    use super::*;
    use crate::store::NewReceipt;

    /// The reference of an entry that makes the writer panic once it has appended its group.
    pub const PANIC: &str = "the writer panics here";

    fn entry(reference: &str) -> Entry {
        let mut request = fiscus_proto::v1::SignReceiptRequest::default();
        let id = uuid::Uuid::new_v4().to_string();
        Entry {
            receipt: NewReceipt {
                id: uuid::Uuid::now_v7().to_string(),
                merchant_tin: "12345678901".into(),
                branch_no: "001".into(),
                pos_no: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
                number: 1,
                kind: "SALE",
                receipt_type: "B2C_RECEIPT",
                reference: reference.into(),
                totals: [0; 3],
                currency: "MNT".into(),
                original_receipt_id: None,
                fiscal_state: "LOCAL_SIGNED",
                document: "{}".into(),
                previous_hash: vec![0; 32],
                hash: vec![1; 32],
                signature: vec![2; 64],
                key_id: "k".into(),
                created_at_us: 0,
                shift_id: String::new(),
                lines: Vec::new(),
                provider: crate::config::ProviderKind::Builtin,
            },
            operation: Operation::new("12345678901", &id, "SignReceipt", &mut request),
            response: Vec::new(),
        }
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..200 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_panics_is_replaced_and_the_service_is_not_serving_meanwhile() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        // e2e_… with a UUID v7: `make test` sweeps it up should this test die before dropping it.
        let schema = format!("e2e_unit_receipts_{}", uuid::Uuid::now_v7().simple());
        let db = Database::connect(&url, &schema, &ConnectSettings::default())
            .await
            .expect("postgres");
        db.migrate("receipts", &crate::MIGRATIONS)
            .await
            .expect("migrates");
        let Database::Postgres(pool) = db.clone() else {
            panic!("a Postgres URL")
        };
        let (health, _server) = Health::new();
        let service = health.register("fiscus.v1.ReceiptService").await;
        let group = GroupCommit::start(pool, Arc::new(MemoryCache::new("t")), service);

        // No chain head: the writer answers that the head moved, which proves it runs.
        let answer = group
            .enqueue(entry("a"))
            .await
            .expect("queued")
            .answer()
            .await;
        assert!(matches!(answer, Ok(Appended::Moved)), "{answer:?}");

        let answer = group
            .enqueue(entry(PANIC))
            .await
            .expect("queued")
            .answer()
            .await;
        assert!(
            matches!(answer, Err(sqlx::Error::WorkerCrashed)),
            "{answer:?}"
        );
        eventually("NOT_SERVING while no writer runs", || {
            !health.is_serving("fiscus.v1.ReceiptService")
        })
        .await;
        eventually("SERVING again", || {
            health.is_serving("fiscus.v1.ReceiptService")
        })
        .await;

        let answer = group
            .enqueue(entry("b"))
            .await
            .expect("queued")
            .answer()
            .await;
        assert!(
            matches!(answer, Ok(Appended::Moved)),
            "the new writer took the queue: {answer:?}"
        );

        drop(group);
        let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
        let Database::Postgres(pool) = &db else {
            unreachable!()
        };
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(pool)
            .await
            .expect("drops");
        db.close().await;
    }
}
