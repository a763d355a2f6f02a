//! WatchReceipt's one notifier per process: changes this process makes are announced as they
//! happen, and changes other replicas make are found by one query every [`POLL_EVERY`] over
//! all the receipts somebody here watches — never a database poll per watcher. Watchers are
//! bounded per process, and every stream ends when the process begins to shut down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::Utc;
use fiscus_domain::receipt::FiscalState;
use fiscus_kit::ApiError;
use fiscus_kit::db::Database;
use fiscus_kit::server::Shutdown;
use fiscus_proto::v1 as pb;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::metrics;
use crate::proto::{self, ToPb};
use crate::store;

/// How often other replicas' changes are looked for.
const POLL_EVERY: Duration = Duration::from_secs(2);

pub struct Watchers {
    events: broadcast::Sender<pb::ReceiptEvent>,
    permits: Arc<Semaphore>,
    limit: usize,
    /// How many streams watch each receipt.
    watched: Mutex<HashMap<String, usize>>,
    shutdown: Shutdown,
}

/// One stream's place among the watchers: its permit, and its receipt counted as watched.
pub struct Subscription {
    watchers: Arc<Watchers>,
    id: String,
    events: broadcast::Receiver<pb::ReceiptEvent>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::watchers(-1);
        let mut watched = self.watchers.lock();
        if let Some(count) = watched.get_mut(&self.id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                watched.remove(&self.id);
            }
        }
    }
}

pub type WatchStream = ReceiverStream<Result<pb::WatchReceiptResponse, Status>>;

impl Watchers {
    /// The watchers of a process with at most `limit` streams, and their poller on `db`.
    pub fn start(db: Database, limit: usize, shutdown: Shutdown) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        let watchers = Arc::new(Self {
            events,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            watched: Mutex::default(),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(poll(Arc::downgrade(&watchers), db, shutdown));
        watchers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every stream watching the receipt of a change.
    pub fn announce(&self, event: pb::ReceiptEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Starts watching receipt `id`: from now on no change of it is missed. Call before reading
    /// its current state. RESOURCE_EXHAUSTED when the process watches its limit already.
    pub fn subscribe(self: &Arc<Self>, id: &str) -> Result<Subscription, ApiError> {
        if self.shutdown.is_requested() {
            return Err(ApiError::Unavailable(
                "this process is shutting down; watch on another".into(),
            ));
        }
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(format!(
                "{} receipts are being watched on this process, its limit (receipts.max_watchers); retry later",
                self.limit
            ))
        })?;
        let events = self.events.subscribe();
        *self.lock().entry(id.to_owned()).or_default() += 1;
        metrics::watchers(1);
        Ok(Subscription {
            watchers: self.clone(),
            id: id.to_owned(),
            events,
            _permit: permit,
        })
    }
}

impl Subscription {
    /// The stream: `first` (the state read after subscribing), then every change until a final
    /// state (any but PENDING) — with `follow`, until the receipt is cancelled — or until the
    /// client goes away or the process shuts down.
    pub fn stream(self, first: pb::ReceiptEvent, follow: bool) -> WatchStream {
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut this = self;
            let mut shutdown = this.watchers.shutdown.clone();
            let mut last_state = first.state;
            let wrap = |event| Ok(pb::WatchReceiptResponse { event: Some(event) });
            // Without `follow` the stream ends at a final state: any but PENDING.
            let ends = |state: i32| {
                state == i32::from(FiscalState::Cancelled.to_pb())
                    || (!follow && state != i32::from(FiscalState::Pending.to_pb()))
            };
            if sender.send(wrap(first)).await.is_err() || ends(last_state) {
                return;
            }
            loop {
                let event = tokio::select! {
                    received = this.events.recv() => match received {
                        Ok(event) if event.receipt_id == this.id => event,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = sender.closed() => return,
                    () = shutdown.requested() => {
                        let _ = sender
                            .send(Err(Status::unavailable(
                                "the server is shutting down; watch again to go on",
                            )))
                            .await;
                        return;
                    }
                };
                if event.state == last_state {
                    continue;
                }
                last_state = event.state;
                let done = ends(event.state);
                if sender.send(wrap(event)).await.is_err() || done {
                    return;
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// Finds the changes other replicas made to the watched receipts, in one query per round, and
/// announces them; the streams drop what they have seen already.
async fn poll(watchers: Weak<Watchers>, db: Database, mut shutdown: Shutdown) {
    let mut known: HashMap<String, (String, String)> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = shutdown.requested() => return,
        }
        let Some(watchers) = watchers.upgrade() else {
            return;
        };
        let ids: Vec<String> = watchers.lock().keys().cloned().collect();
        known.retain(|id, _| ids.contains(id));
        if ids.is_empty() {
            continue;
        }
        let rows = match store::states(&db, &ids).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "reading watched receipts failed; trying again");
                continue;
            }
        };
        for (id, state, message) in rows {
            let now = (state, message);
            if known.get(&id) == Some(&now) {
                continue;
            }
            let Some(fiscal_state) = FiscalState::parse(&now.0) else {
                continue;
            };
            watchers.announce(pb::ReceiptEvent {
                receipt_id: id.clone(),
                state: fiscal_state.to_pb().into(),
                message: now.1.clone(),
                timestamp: Some(proto::timestamp(Utc::now())),
            });
            known.insert(id, now);
        }
    }
}
