//! Group commit: lone appends to the journal from many terminals share one statement, and so one
//! commit, on Postgres.
//!
//! A few writers take turns at the queue: while one group is being committed the next gathers,
//! so a group is as large as the load makes it and an append under light load waits for nobody.
//! Each receipt in a group still moves its own terminal's head only from its own previous one,
//! so a group may hold anything; and when a group's statement fails (most likely on a duplicate
//! operation id) its entries are appended one by one, each getting its own answer.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{self, Appended, Entry};

/// The most entries one statement carries.
const MAX_GROUP: usize = 64;

type Answer = Result<Appended, sqlx::Error>;

struct Job {
    entry: Entry,
    done: oneshot::Sender<Answer>,
}

pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writers, as many groups at once as a quarter of the pool's connections; they
    /// stop when this is dropped and the queue has drained.
    pub fn start(pool: PgPool) -> Self {
        let writers = (pool.options().get_max_connections() as usize / 4).max(1);
        let (queue, jobs) = mpsc::channel(writers * MAX_GROUP);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..writers {
            tokio::spawn(writer(pool.clone(), jobs.clone()));
        }
        Self { queue }
    }

    /// Appends `entry` with whatever other entries are waiting. Once queued it is appended even
    /// if the caller stops waiting: a retry then finds its answer.
    pub async fn append(&self, entry: Entry) -> Answer {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job { entry, done })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn writer(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        };
        commit(&pool, group).await;
    }
}

async fn commit(pool: &PgPool, group: Vec<Job>) {
    let entries: Vec<&Entry> = group.iter().map(|job| &job.entry).collect();
    let result = store::append_postgres(pool, &entries).await;
    match result {
        Ok(appended) => {
            for (job, appended) in group.into_iter().zip(appended) {
                // A caller that stopped waiting finds its answer on retry.
                let _ = job.done.send(Ok(appended));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(job) = group.into_iter().next() {
                let _ = job.done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, size = group.len(), "a group append failed; appending its entries one by one");
            for job in group {
                let alone = store::append_postgres(pool, &[&job.entry])
                    .await
                    .map(|appended| appended[0]);
                let _ = job.done.send(alone);
            }
        }
    }
}
