//! WatchPayment's watchers, the bus and the poller. One schedule per process asks MIA for the
//! payment requests somebody in the cluster waits on — each request by one replica a round,
//! never one poll loop per watcher — and every change is published on the bus (Redis pub/sub in
//! a cluster, in-process in `fiscus dev`), so that a watcher on any replica hears what any
//! replica saw. Each round also reads the watched requests' versions from the database, which
//! covers whatever the bus lost. Locally one `watch` channel per request fans a change out to
//! all its streams; streams are bounded per process and end when the process shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use fiscus_domain::qr::{PaymentState, QrType};
use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::server::Shutdown;
use fiscus_proto::v1 as pb;
use futures::StreamExt;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::payments::Payments;
use crate::{metrics, store};

/// The bus channel of payment events (under the cache's key prefix).
pub const CHANNEL: &str = "payments:events";

/// A payment event on the bus, with the version that orders it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Announcement {
    #[prost(int64, tag = "1")]
    pub version: i64,
    #[prost(message, optional, tag = "2")]
    pub event: Option<pb::PaymentEvent>,
}

/// The latest event of a request, as its streams see it.
#[derive(Clone)]
pub struct Versioned {
    pub version: i64,
    pub event: Arc<pb::PaymentEvent>,
}

struct Entry {
    sender: watch::Sender<Option<Versioned>>,
    streams: usize,
    /// The seller session the latest stream watches with: the poller acts for it.
    session: String,
}

pub struct Watchers {
    entries: Mutex<HashMap<String, Entry>>,
    permits: Arc<Semaphore>,
    limit: usize,
    shutdown: Shutdown,
}

/// One stream's place among the watchers.
pub struct Subscription {
    watchers: Arc<Watchers>,
    extension_id: String,
    receiver: watch::Receiver<Option<Versioned>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::watchers(-1);
        let mut entries = self.watchers.lock();
        if let Some(entry) = entries.get_mut(&self.extension_id) {
            entry.streams = entry.streams.saturating_sub(1);
            if entry.streams == 0 {
                entries.remove(&self.extension_id);
            }
        }
    }
}

pub type WatchStream = ReceiverStream<Result<pb::WatchPaymentResponse, Status>>;

impl Watchers {
    pub fn new(limit: usize, shutdown: Shutdown) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::default(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts watching a request for `session`: no change delivered from now on is missed.
    /// Answers whether this is the request's first stream here. RESOURCE_EXHAUSTED at the
    /// process's limit; UNAVAILABLE while it shuts down.
    pub fn subscribe(
        self: &Arc<Self>,
        extension_id: &str,
        session: &str,
    ) -> Result<(Subscription, bool), ApiError> {
        if self.shutdown.is_requested() {
            return Err(ApiError::Unavailable(
                "this process is shutting down; watch on another".into(),
            ));
        }
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(format!(
                "{} payments are being watched on this process, its limit (payments.max_watchers); retry later",
                self.limit
            ))
        })?;
        let mut entries = self.lock();
        let first = !entries.contains_key(extension_id);
        let entry = entries
            .entry(extension_id.to_owned())
            .or_insert_with(|| Entry {
                sender: watch::Sender::new(None),
                streams: 0,
                session: session.to_owned(),
            });
        entry.streams = entry.streams.saturating_add(1);
        entry.session = session.to_owned();
        let receiver = entry.sender.subscribe();
        drop(entries);
        metrics::watchers(1);
        Ok((
            Subscription {
                watchers: self.clone(),
                extension_id: extension_id.to_owned(),
                receiver,
                _permit: permit,
            },
            first,
        ))
    }

    /// Hands a request's event to its streams here, when it is newer than what they have.
    pub fn deliver(&self, extension_id: &str, version: i64, event: Arc<pb::PaymentEvent>) {
        if let Some(entry) = self.lock().get(extension_id) {
            entry.sender.send_if_modified(|current| {
                if current.as_ref().is_some_and(|c| c.version >= version) {
                    return false;
                }
                *current = Some(Versioned { version, event });
                true
            });
        }
    }

    /// The version the streams of a request have, if any.
    fn version(&self, extension_id: &str) -> Option<i64> {
        self.lock()
            .get(extension_id)
            .and_then(|e| e.sender.borrow().as_ref().map(|v| v.version))
    }

    /// Every request watched here, with the session it is watched for.
    pub fn watched(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.session.clone()))
            .collect()
    }
}

/// Whether a stream has nothing more to hear after `state`: without `follow`, any final state;
/// with it, the end of the request (a static QR's request goes on taking payments after PAID).
fn ends(state: i32, follow: bool, qr_type: QrType) -> bool {
    let state = pb::PaymentState::try_from(state).unwrap_or_default();
    match state {
        pb::PaymentState::Pending | pb::PaymentState::Unspecified => false,
        pb::PaymentState::Paid => !follow || qr_type != QrType::Static,
        _ => true,
    }
}

impl Subscription {
    /// The stream: the current state, then every change, until a state ends it, the client
    /// goes away, or the process shuts down (UNAVAILABLE: watch again on another replica). A
    /// followed static request ends when it expires (`expires_in` from now).
    pub fn stream(self, follow: bool, qr_type: QrType, expires_in: Duration) -> WatchStream {
        let (sender, receiver) = mpsc::channel(4);
        let expires = tokio::time::Instant::now() + expires_in;
        let ends_at_expiry = follow && qr_type == QrType::Static;
        tokio::spawn(async move {
            let mut this = self;
            let mut shutdown = this.watchers.shutdown.clone();
            let mut sent: Option<i64> = None;
            loop {
                let latest = this.receiver.borrow_and_update().clone();
                if let Some(latest) = latest
                    && sent.is_none_or(|v| latest.version > v)
                {
                    sent = Some(latest.version);
                    let state = latest.event.state;
                    let response = pb::WatchPaymentResponse {
                        event: Some((*latest.event).clone()),
                    };
                    if sender.send(Ok(response)).await.is_err() || ends(state, follow, qr_type) {
                        return;
                    }
                }
                tokio::select! {
                    changed = this.receiver.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                    // A static request takes payments until it expires; nothing comes after.
                    () = tokio::time::sleep_until(expires), if ends_at_expiry => return,
                    () = shutdown.requested() => {
                        let _ = sender
                            .send(Err(Status::unavailable(
                                "the server is shutting down; watch again to go on",
                            )))
                            .await;
                        return;
                    }
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// Hears the bus and hands each event to the streams here; resubscribes when the bus drops
/// (the poller's database read covers what was missed meanwhile).
pub async fn listen(cache: SharedCache, watchers: Weak<Watchers>, mut shutdown: Shutdown) {
    loop {
        match cache.subscribe(CHANNEL).await {
            Ok(mut messages) => loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let Some(watchers) = watchers.upgrade() else { return };
                        match Announcement::decode(message.as_slice()) {
                            Ok(Announcement { version, event: Some(event) }) => {
                                let id = event.extension_id.clone();
                                watchers.deliver(&id, version, Arc::new(event));
                            }
                            _ => tracing::debug!("an unreadable message on the payments bus"),
                        }
                    }
                    () = shutdown.requested() => return,
                }
            },
            Err(e) => tracing::debug!(error = %e, "payments bus unavailable; trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.requested() => return,
        }
    }
}

/// The process's one poll schedule: marks what is watched here, asks MIA for the due watched
/// requests of the whole cluster (unless `poll_mia` is off), and hands the streams here any
/// version the database has that they have not heard.
pub async fn poll(
    payments: Weak<Payments>,
    interval: Duration,
    poll_mia: bool,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.requested() => return,
        }
        let Some(payments) = payments.upgrade() else {
            return;
        };
        if let Err(e) = round(&payments, interval, poll_mia).await {
            tracing::debug!(error = %e, "a payment poll round failed; trying again");
        }
    }
}

/// Requests polled at once, at most.
const POLLS_AT_ONCE: usize = 16;

async fn round(payments: &Payments, interval: Duration, poll_mia: bool) -> Result<(), ApiError> {
    let watched = payments.watchers.watched();
    let now = store::now_us();
    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
    if !watched.is_empty() {
        // Watched for three rounds: a replica that dies stops being waited for soon after.
        store::mark_watched(
            &payments.db,
            &watched,
            now.saturating_add(interval_us.saturating_mul(3)),
        )
        .await?;
    }
    if poll_mia {
        let due =
            store::claim_due(&payments.db, now, now.saturating_add(interval_us), None).await?;
        futures::stream::iter(due)
            .for_each_concurrent(POLLS_AT_ONCE, |row| async move {
                let polled = async {
                    let seller = payments
                        .mia
                        .seller(&row.terminal(), &row.seller_session_id)
                        .await?;
                    payments.check(&row, &seller).await
                }
                .await;
                if let Err(e) = polled {
                    tracing::debug!(extension = %row.extension_id, error = %e, "polling a payment request failed");
                }
            })
            .await;
    }
    if watched.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = watched.into_iter().map(|(id, _)| id).collect();
    for chunk in ids.chunks(500) {
        for row in store::requests(&payments.db, chunk).await? {
            if payments
                .watchers
                .version(&row.extension_id)
                .is_none_or(|v| v < row.version)
            {
                let (version, event) = payments.event_of(&row).await?;
                payments.watchers.deliver(&row.extension_id, version, event);
            }
        }
    }
    Ok(())
}

/// Whether a request can still change (the poller asks for it).
pub fn open(state: PaymentState, qr_type: QrType, expires_at_us: i64, now_us: i64) -> bool {
    state == PaymentState::Pending
        || (state == PaymentState::Paid && qr_type == QrType::Static && expires_at_us > now_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchers_gauge_follows_the_streams_open() {
        let (_trigger, shutdown) = Shutdown::new();
        let watchers = Watchers::new(3, shutdown);
        let before = metrics::watchers_open();
        let (one, _) = watchers.subscribe("a", "s").expect("admitted");
        let (two, _) = watchers.subscribe("a", "s").expect("admitted");
        let (three, _) = watchers.subscribe("b", "s").expect("admitted");
        assert_eq!(metrics::watchers_open() - before, 3);
        assert!(watchers.subscribe("c", "s").is_err(), "beyond the limit");
        assert_eq!(
            metrics::watchers_open() - before,
            3,
            "a refused stream is not counted"
        );
        drop((one, three));
        assert_eq!(metrics::watchers_open() - before, 1);
        drop(two);
        assert_eq!(metrics::watchers_open(), before);
    }
}
