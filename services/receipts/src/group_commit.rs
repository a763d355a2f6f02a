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

use std::collections::{HashSet, VecDeque};

use fiscus_kit::cache::SharedCache;
use fiscus_kit::idempotency;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, Appended, Entry};
use crate::validate::TerminalId;

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

impl GroupCommit {
    /// Starts the writer; it stops when this is dropped and the queue has drained. Once a
    /// group is committed and answered, the writer tells `cache` the answers, in one round trip,
    /// while it commits the next.
    pub fn start(pool: PgPool, cache: SharedCache) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(writer(pool, cache, jobs));
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

async fn writer(pool: PgPool, cache: SharedCache, mut jobs: mpsc::Receiver<Job>) {
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
    let answers: Vec<Answer> = match appended {
        Ok(appended) => appended.into_iter().map(Ok).collect(),
        Err(e) if entries.len() == 1 => vec![Err(e)],
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
