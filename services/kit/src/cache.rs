//! The shared cache: Redis (one server or a Redis Cluster) for services in several processes,
//! an in-process map for a single process.
//!
//! The cache is only ever a fast path: every caller treats an error or a miss as "look in the
//! database", never as "not done". Every entry has a time to live; nothing is cached forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{AsyncCommands, ConnectionInfo, IntoConnectionInfo};

use crate::config::redact_url;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error(
        "cache: {0} is not a usable URL (expected redis://…, \
         redis+cluster://host:port,host:port,… or memory)"
    )]
    BadUrl(String),
    #[error(
        "cache: {0}: TLS to Redis is not built in; reach Redis over a private network or a TLS \
         sidecar with redis://…"
    )]
    TlsUnsupported(String),
}

/// Key-value operations with expiry, shared by every service.
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, CacheError>>;

    /// Stores `value` under `key` for `ttl`, replacing what was there.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>>;

    /// Stores each `(key, value)` for `ttl`, as [`Cache::set`] would, in one round trip (on a
    /// Redis Cluster, one round trip per hash slot, all at once).
    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Vec<u8>)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>>;

    /// Stores `value` only if `key` is absent; `true` when this call stored it (a lease was won).
    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>>;

    /// Removes `key`; `true` when something was removed.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, CacheError>>;

    /// Removes `key` only while it still holds `expected` (releasing one's own lease, atomically).
    fn delete_if_equals<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CacheError>>;

    /// Sends `message` to every current subscriber of `channel` (in every process).
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CacheError>>;

    /// The messages published on `channel` from now on; the stream ends when the connection
    /// does (a subscriber may then have missed messages, and should resubscribe).
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Vec<u8>>, CacheError>>;
}

/// The cache as services hold it.
pub type SharedCache = Arc<dyn Cache>;

/// Settings for opening a cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            key_prefix: "fiscus".to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
        }
    }
}

/// Opens the cache named by `url`: `memory`, a Redis URL, or the seed nodes of a Redis Cluster
/// (`redis+cluster://host:port,host:port/`, see [`ClusterUrl`]). Redis connects lazily, so a
/// Redis that is down at start costs speed, not availability.
pub fn open(url: &str, settings: &CacheSettings) -> Result<SharedCache, CacheError> {
    if url.starts_with("rediss") {
        Err(CacheError::TlsUnsupported(redact_url(url)))
    } else if url == "memory" || url == "memory://" {
        Ok(Arc::new(MemoryCache::new(&settings.key_prefix)))
    } else if let Some(cluster) = ClusterUrl::parse(url) {
        Ok(Arc::new(RedisCache::cluster(&cluster, settings)?))
    } else if url.starts_with("redis://") {
        Ok(Arc::new(RedisCache::single(url, settings)?))
    } else {
        Err(CacheError::BadUrl(redact_url(url)))
    }
}

/// A Redis Cluster named by its seed nodes in one URL:
/// `redis+cluster://[user:password@]host:port[,host:port…][/][?query]`. Each seed becomes the node URL `redis://[user:password@]host:port[/][?query]`; the
/// client asks whichever seed answers for the cluster's nodes and slots, so a few seeds are
/// enough, and the cluster's other nodes are found, not configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// One URL per seed node, credentials and query included.
    pub seeds: Vec<String>,
    /// The URL without credentials or query, for messages.
    pub shown: String,
}

impl ClusterUrl {
    /// The cluster `url` names, or `None` when it names no cluster. The seeds are only split
    /// here; redis-rs judges each as a node URL when the cache opens.
    pub fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let node_scheme = match scheme {
            "redis+cluster" => "redis",
            _ => return None,
        };
        // Credentials are percent-encoded in a URL, so the authority ends at the first of these.
        let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), authority),
        };
        Some(Self {
            seeds: hosts
                .split(',')
                .map(|host| format!("{node_scheme}://{credentials}{host}{tail}"))
                .collect(),
            shown: format!("{scheme}://{hosts}"),
        })
    }
}

/// Nothing may be cached without an expiry; a zero TTL still expires (after a millisecond).
fn positive(ttl: Duration) -> Duration {
    ttl.max(Duration::from_millis(1))
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(positive(ttl).as_millis()).unwrap_or(u64::MAX)
}

/// Redis through a reconnecting multiplexed connection: one server's [`ConnectionManager`], or
/// a [`ClusterConnection`], which sends each command to the node owning its key's hash slot and
/// follows the cluster as slots move and nodes fail over. Every key of one command is one key
/// (leases, scripts), so no operation needs its keys in one slot; hash tags are not used.
#[derive(Clone)]
struct RedisCache<C> {
    connection: C,
    subscriber: Subscriber,
    prefix: String,
    response_timeout: Duration,
}

/// What differs between the connection to one Redis and to a Redis Cluster.
trait RedisConnection: ConnectionLike + Clone + Send + Sync + 'static {
    /// The group of keys that may travel in one pipeline. One server takes any keys together;
    /// a cluster connection sends a pipeline to a single node and refuses one whose keys lie in
    /// different hash slots, so there a pipeline holds the keys of one slot.
    fn pipeline_group(key: &str) -> Option<Slot>;
}

impl RedisConnection for ConnectionManager {
    fn pipeline_group(_: &str) -> Option<Slot> {
        None
    }
}

impl RedisConnection for ClusterConnection {
    fn pipeline_group(key: &str) -> Option<Slot> {
        Some(Slot::for_key(key))
    }
}

/// Where a subscription gets its connection: always one of its own, so that its stream ends
/// exactly when that connection does.
#[derive(Clone)]
enum Subscriber {
    /// One server's pub/sub connection.
    Single(redis::Client),
    /// A cluster connection speaking RESP3, whose pushes carry the messages. Redis Cluster
    /// forwards every PUBLISH to every node, so whichever node the subscription lands on hears
    /// the messages published on any of them.
    Cluster {
        seeds: Vec<ConnectionInfo>,
        settings: CacheSettings,
    },
}

impl RedisCache<ConnectionManager> {
    fn single(url: &str, settings: &CacheSettings) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(|_| CacheError::BadUrl(redact_url(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            // Fail fast and let the caller fall back to the database; reconnect on the next call.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| CacheError::Unavailable(e.to_string()))?;
        Ok(Self {
            connection,
            subscriber: Subscriber::Single(client),
            prefix: format!("{}:", settings.key_prefix),
            response_timeout: settings.response_timeout,
        })
    }
}

impl RedisCache<ClusterConnection> {
    fn cluster(url: &ClusterUrl, settings: &CacheSettings) -> Result<Self, CacheError> {
        let bad = |e: redis::RedisError| CacheError::BadUrl(format!("{} ({e})", url.shown));
        let seeds = url
            .seeds
            .iter()
            .map(|seed| seed.as_str().into_connection_info())
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(bad)?;
        let client = cluster_client(&seeds, settings).build().map_err(bad)?;
        // Connects in the background, like the single server's lazy connection, and again
        // from the seeds whenever no node can be reached.
        let connection = client.get_pending_async_connection_with_config(ClusterConfig::new());
        Ok(Self {
            connection,
            subscriber: Subscriber::Cluster {
                seeds,
                settings: settings.clone(),
            },
            prefix: format!("{}:", settings.key_prefix),
            response_timeout: settings.response_timeout,
        })
    }
}

/// A cluster client with the cache's timeouts.
fn cluster_client(seeds: &[ConnectionInfo], settings: &CacheSettings) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        // Redirections (MOVED, ASK) while slots move are retries too: allow a few, quickly,
        // within the same overall bound as one server's command (see `RedisCache::run`).
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .overall_response_timeout(Some(settings.response_timeout * 2))
}

/// The messages of one channel on a cluster connection of their own.
async fn subscribe_cluster(
    seeds: &[ConnectionInfo],
    settings: &CacheSettings,
    channel: String,
) -> redis::RedisResult<BoxStream<'static, Vec<u8>>> {
    let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
    let client = cluster_client(seeds, settings)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?;
    let mut connection = client.get_async_connection().await?;
    connection.subscribe(channel).await?;
    let messages = tokio_stream::wrappers::UnboundedReceiverStream::new(received)
        // The client subscribes again after a node's connection drops, but what was published
        // in between is lost: end the stream there, as one server's pub/sub stream ends, so
        // that the subscriber knows it may have missed messages.
        .take_while(|push| std::future::ready(push.kind != redis::PushKind::Disconnection))
        .filter_map(|push| {
            std::future::ready(
                redis::Msg::from_push_info(push)
                    .map(|message| message.get_payload_bytes().to_vec()),
            )
        })
        .boxed();
    // The stream owns the connection: dropping the stream ends the subscription.
    Ok(futures::stream::unfold(
        (messages, connection),
        |(mut messages, connection)| async move {
            let message = messages.next().await?;
            Some((message, (messages, connection)))
        },
    )
    .boxed())
}

impl<C: RedisConnection> RedisCache<C> {
    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Runs one command with the response deadline; any failure is "unavailable".
    async fn run<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        // The connect phase of a lazy connection is not covered by the response timeout.
        match tokio::time::timeout(self.response_timeout * 2, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CacheError::Unavailable(e.to_string())),
            Err(_) => Err(CacheError::Unavailable(
                "redis did not answer in time".into(),
            )),
        }
    }
}

impl<C: RedisConnection> Cache for RedisCache<C> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, CacheError>> {
        Box::pin(async move {
            let mut conn = self.connection.clone();
            self.run(conn.get::<_, Option<Vec<u8>>>(self.key(key)))
                .await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let mut conn = self.connection.clone();
            self.run(conn.pset_ex::<_, _, ()>(self.key(key), value, millis(ttl)))
                .await
        })
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Vec<u8>)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            let mut pipelines: HashMap<Option<Slot>, redis::Pipeline> = HashMap::new();
            for (key, value) in entries {
                let key = self.key(key);
                pipelines
                    .entry(C::pipeline_group(&key))
                    .or_insert_with(redis::pipe)
                    .pset_ex(key, value, millis(ttl))
                    .ignore();
            }
            // All pipelines at once: a cluster connection writes each node's share together.
            let sends = pipelines.into_values().map(|pipe| {
                let mut conn = self.connection.clone();
                async move { pipe.query_async::<()>(&mut conn).await }
            });
            self.run(futures::future::try_join_all(sends)).await?;
            Ok(())
        })
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(async move {
            let mut conn = self.connection.clone();
            let mut command = redis::cmd("SET");
            command
                .arg(self.key(key))
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
            let stored: Option<String> = self.run(command.query_async(&mut conn)).await?;
            Ok(stored.is_some())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(async move {
            let mut conn = self.connection.clone();
            let removed: u64 = self.run(conn.del(self.key(key))).await?;
            Ok(removed > 0)
        })
    }

    fn delete_if_equals<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(async move {
            // One key, so a cluster runs it on the key's node; redis-rs loads the script on
            // every node (SCRIPT LOAD goes to all) when a node does not know it yet.
            let script = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) else return 0 end",
            );
            let mut conn = self.connection.clone();
            let mut invocation = script.key(self.key(key));
            invocation.arg(expected);
            let removed: u64 = self.run(invocation.invoke_async(&mut conn)).await?;
            Ok(removed > 0)
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let mut conn = self.connection.clone();
            self.run(conn.publish::<_, _, ()>(self.key(channel), message))
                .await
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Vec<u8>>, CacheError>> {
        Box::pin(async move {
            let unavailable = |e: redis::RedisError| CacheError::Unavailable(e.to_string());
            let late = || CacheError::Unavailable("redis did not answer in time".into());
            match &self.subscriber {
                Subscriber::Single(client) => {
                    let mut pubsub =
                        tokio::time::timeout(self.response_timeout * 2, client.get_async_pubsub())
                            .await
                            .map_err(|_| late())?
                            .map_err(unavailable)?;
                    pubsub
                        .subscribe(self.key(channel))
                        .await
                        .map_err(unavailable)?;
                    Ok(pubsub
                        .into_on_message()
                        .map(|message| message.get_payload_bytes().to_vec())
                        .boxed())
                }
                Subscriber::Cluster { seeds, settings } => {
                    // Connecting to a cluster is several round trips: the seeds, the slot
                    // map, then the nodes.
                    let bound = settings.connect_timeout + self.response_timeout * 2;
                    let subscribing = subscribe_cluster(seeds, settings, self.key(channel));
                    tokio::time::timeout(bound, subscribing)
                        .await
                        .map_err(|_| late())?
                        .map_err(unavailable)
                }
            }
        })
    }
}

/// An in-process cache for a single process (`fiscus dev`): the same contract as Redis.
pub struct MemoryCache {
    prefix: String,
    entries: Mutex<Entries>,
    messages: tokio::sync::broadcast::Sender<(String, Vec<u8>)>,
}

type Map = HashMap<String, (Vec<u8>, Instant)>;

struct Entries {
    map: Map,
    swept: Instant,
}

/// How often the in-process cache drops every expired entry; a key is checked on each use.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl MemoryCache {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{prefix}:"),
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
            messages: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// Runs `f` on the entries, with `key`'s gone if it has expired.
    fn with_entries<T>(&self, key: Option<&str>, f: impl FnOnce(&mut Map) -> T) -> T {
        // A panic while holding the lock cannot leave a half-written entry behind, so a
        // poisoned map is still consistent.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(entries.swept) >= SWEEP_EVERY {
            entries.map.retain(|_, (_, expires)| *expires > now);
            entries.swept = now;
        } else if let Some(key) = key
            && entries
                .map
                .get(key)
                .is_some_and(|(_, expires)| *expires <= now)
        {
            entries.map.remove(key);
        }
        f(&mut entries.map)
    }
}

impl Cache for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, CacheError>> {
        let key = format!("{}{}", self.prefix, key);
        Box::pin(async move {
            Ok(self.with_entries(Some(&key), |e| e.get(&key).map(|(v, _)| v.clone())))
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let key = format!("{}{}", self.prefix, key);
        Box::pin(async move {
            let expires = Instant::now() + positive(ttl);
            self.with_entries(None, |e| e.insert(key, (value.to_vec(), expires)));
            Ok(())
        })
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Vec<u8>)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let expires = Instant::now() + positive(ttl);
            self.with_entries(None, |e| {
                for (key, value) in entries {
                    e.insert(format!("{}{key}", self.prefix), (value.clone(), expires));
                }
            });
            Ok(())
        })
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        let key = format!("{}{}", self.prefix, key);
        Box::pin(async move {
            let expires = Instant::now() + positive(ttl);
            Ok(
                self.with_entries(Some(&key), |e| match e.entry(key.clone()) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((value.to_vec(), expires));
                        true
                    }
                }),
            )
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, CacheError>> {
        let key = format!("{}{}", self.prefix, key);
        Box::pin(async move { Ok(self.with_entries(Some(&key), |e| e.remove(&key).is_some())) })
    }

    fn delete_if_equals<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        let key = format!("{}{}", self.prefix, key);
        Box::pin(async move {
            Ok(self.with_entries(Some(&key), |e| match e.get(&key) {
                Some((value, _)) if value == expected => e.remove(&key).is_some(),
                _ => false,
            }))
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        // No subscriber is not an error, as with Redis.
        let _ = self.messages.send((channel.to_owned(), message.to_vec()));
        Box::pin(async { Ok(()) })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Vec<u8>>, CacheError>> {
        let channel = channel.to_owned();
        let receiver = self.messages.subscribe();
        Box::pin(async move {
            Ok(tokio_stream::wrappers::BroadcastStream::new(receiver)
                // A subscriber that lagged has missed messages: end the stream, as Redis would.
                .take_while(|m| std::future::ready(m.is_ok()))
                .filter_map(move |m| {
                    std::future::ready(match m {
                        Ok((c, message)) if c == channel => Some(message),
                        _ => None,
                    })
                })
                .boxed())
        })
    }
}
