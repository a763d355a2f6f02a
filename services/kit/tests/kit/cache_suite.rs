//! The cache contract, on Redis, on a Redis Cluster and in-process.

use std::time::Duration;

use fiscus_kit::cache::{self, CacheSettings, SharedCache};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Three masters that `make test` starts (`deploy/local/ensure-redis-cluster.sh`).
fn redis_cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

/// Each test gets its own key prefix, so runs never see each other's keys.
fn open(url: &str) -> SharedCache {
    let settings = CacheSettings {
        key_prefix: format!("kit-test-{}", uuid::Uuid::new_v4().simple()),
        ..CacheSettings::default()
    };
    cache::open(url, &settings).expect("opens")
}

async fn set_if_absent_is_won_once(cache: SharedCache) {
    let ttl = Duration::from_secs(30);
    assert!(
        cache
            .set_if_absent("lease", b"a", ttl)
            .await
            .expect("first")
    );
    assert!(
        !cache
            .set_if_absent("lease", b"b", ttl)
            .await
            .expect("second")
    );
    assert_eq!(cache.get("lease").await.expect("get"), Some(b"a".to_vec()));
}

async fn entries_expire(cache: SharedCache) {
    cache
        .set("token", b"secret", Duration::from_millis(50))
        .await
        .expect("set");
    assert_eq!(
        cache.get("token").await.expect("get"),
        Some(b"secret".to_vec())
    );
    cache
        .set("lease", b"mine", Duration::from_millis(50))
        .await
        .expect("set");
    cache
        .set("gone", b"x", Duration::from_millis(50))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get("token").await.expect("get"), None);
    assert!(
        cache
            .set_if_absent("token", b"again", Duration::from_secs(5))
            .await
            .expect("set after expiry"),
        "an expired key is absent"
    );
    assert!(
        !cache
            .delete_if_equals("lease", b"mine")
            .await
            .expect("cas after expiry"),
        "an expired lease is not there to release"
    );
    assert!(
        !cache.delete("gone").await.expect("delete after expiry"),
        "an expired key is not there to delete"
    );
}

async fn set_many_stores_every_entry_with_its_expiry(cache: SharedCache) {
    let entries: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("op:{i}"), format!("answer {i}").into_bytes()))
        .collect();
    cache
        .set_many(&entries, Duration::from_millis(300))
        .await
        .expect("set_many");
    for (key, value) in &entries {
        assert_eq!(cache.get(key).await.expect("get").as_ref(), Some(value));
    }
    cache
        .set_many(&[], Duration::from_secs(1))
        .await
        .expect("nothing to store");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cache.get("op:7").await.expect("get"), None, "expired");
}

async fn get_set_delete(cache: SharedCache) {
    assert_eq!(cache.get("k").await.expect("get"), None);
    cache
        .set("k", b"1", Duration::from_secs(30))
        .await
        .expect("set");
    cache
        .set("k", b"2", Duration::from_secs(30))
        .await
        .expect("overwrite");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"2".to_vec()));
    assert!(cache.delete("k").await.expect("delete"));
    assert!(!cache.delete("k").await.expect("delete again"));
    assert_eq!(cache.get("k").await.expect("get"), None);
}

async fn delete_if_equals_releases_only_ones_own_lease(cache: SharedCache) {
    let ttl = Duration::from_secs(30);
    cache.set("lease", b"mine", ttl).await.expect("set");
    assert!(
        !cache
            .delete_if_equals("lease", b"theirs")
            .await
            .expect("cas")
    );
    assert_eq!(
        cache.get("lease").await.expect("get"),
        Some(b"mine".to_vec())
    );
    assert!(cache.delete_if_equals("lease", b"mine").await.expect("cas"));
    assert_eq!(cache.get("lease").await.expect("get"), None);
}

async fn published_messages_reach_subscribers_of_the_channel(cache: SharedCache) {
    use futures::StreamExt;
    let mut changes = cache.subscribe("changes").await.expect("subscribes");
    let mut other = cache.subscribe("other").await.expect("subscribes");
    // Redis confirms a subscription before messages flow; give it a moment on a slow machine.
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache
        .publish("changes", b"token:a")
        .await
        .expect("publishes");
    let message = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("arrives")
        .expect("a message");
    assert_eq!(message, b"token:a");
    let nothing = tokio::time::timeout(Duration::from_millis(100), other.next()).await;
    assert!(nothing.is_err(), "another channel hears nothing");
}

macro_rules! on_every_cache {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name(super::open(&super::redis_url())).await })*
        }
        mod redis_cluster {
            $(#[tokio::test] async fn $name() { super::$name(super::open(&super::redis_cluster_url())).await })*
        }
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::open("memory")).await })*
        }
    };
}

on_every_cache!(
    set_if_absent_is_won_once,
    entries_expire,
    set_many_stores_every_entry_with_its_expiry,
    get_set_delete,
    delete_if_equals_releases_only_ones_own_lease,
    published_messages_reach_subscribers_of_the_channel,
);

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let cache = open("redis://127.0.0.1:1");
    let result = tokio::time::timeout(Duration::from_secs(10), cache.get("k"))
        .await
        .expect("answers within its own timeouts");
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn an_unknown_cache_url_is_refused() {
    let err = cache::open("memcached://x", &CacheSettings::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("memcached://x"), "{err}");
}

#[test]
fn a_cluster_url_names_its_seed_nodes() {
    let cluster = cache::ClusterUrl::parse(
        "redis+cluster://app:s%40cret@10.0.0.1:7001,redis-b:7002/?protocol=2",
    )
    .expect("a cluster URL");
    assert_eq!(
        cluster.seeds,
        [
            "redis://app:s%40cret@10.0.0.1:7001/?protocol=2",
            "redis://app:s%40cret@redis-b:7002/?protocol=2"
        ]
    );
    assert_eq!(cluster.shown, "redis+cluster://10.0.0.1:7001,redis-b:7002");
    assert_eq!(cache::ClusterUrl::parse("redis://a:1"), None, "one server");
    // TLS is not built in: refused at once, saying so, not at the first call.
    for url in ["rediss://a:1", "rediss+cluster://a:1,b:2"] {
        let refused = cache::open(url, &CacheSettings::default())
            .err()
            .expect("refused");
        assert!(refused.to_string().contains("TLS"), "{refused}");
    }
}

#[test]
fn a_bad_cluster_url_is_refused_without_its_password() {
    for url in [
        "redis+cluster://:hunter2@",
        "redis+cluster://:hunter2@a:1,,b:2",
        "redis+cluster://:hunter2@a:port",
    ] {
        let err = cache::open(url, &CacheSettings::default())
            .err()
            .expect("refused");
        let err = err.to_string();
        assert!(err.contains("redis+cluster://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_cluster_is_an_error_not_a_hang() {
    let cache = open("redis+cluster://127.0.0.1:1,127.0.0.1:2");
    let result = tokio::time::timeout(Duration::from_secs(10), cache.get("k"))
        .await
        .expect("answers within its own timeouts");
    assert!(result.is_err(), "{result:?}");
    let subscribed = tokio::time::timeout(Duration::from_secs(10), cache.subscribe("changes"))
        .await
        .expect("answers within its own timeouts");
    assert!(subscribed.is_err());
}

/// Redis Cluster passes every PUBLISH to every node: a subscriber hears what is published on
/// any master, whichever node its subscription landed on.
#[tokio::test]
async fn a_cluster_subscriber_hears_messages_published_on_any_node() {
    use futures::StreamExt;
    let url = redis_cluster_url();
    // `make test`'s seeds are all three masters.
    let seeds = cache::ClusterUrl::parse(&url).expect("a cluster URL").seeds;
    let prefix = format!("kit-test-{}", uuid::Uuid::new_v4().simple());
    let settings = CacheSettings {
        key_prefix: prefix.clone(),
        ..CacheSettings::default()
    };
    let cache = cache::open(&url, &settings).expect("opens");
    let mut changes = cache.subscribe("changes").await.expect("subscribes");
    for seed in &seeds {
        let client = ::redis::Client::open(seed.as_str()).expect("a node URL");
        let mut node = client
            .get_multiplexed_async_connection()
            .await
            .expect("the node answers");
        ::redis::cmd("PUBLISH")
            .arg(format!("{prefix}:changes"))
            .arg(seed)
            .query_async::<i64>(&mut node)
            .await
            .expect("publishes");
    }
    let mut heard = Vec::new();
    while heard.len() < seeds.len() {
        let message = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .expect("arrives")
            .expect("a message");
        heard.push(String::from_utf8(message).expect("utf-8"));
    }
    heard.sort();
    let mut published = seeds.clone();
    published.sort();
    assert_eq!(heard, published);
}

/// A Redis Cluster of one node, of this test's own, so that cutting its connections disturbs
/// no other test.
struct PrivateCluster {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (make test installs it)");
        let cluster = Self {
            port,
            child,
            _dir: dir,
        };
        let mut node = cluster.node().await;
        ::redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async::<()>(&mut node)
            .await
            .expect("takes every slot");
        for _ in 0..100 {
            let info: String = ::redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut node)
                .await
                .expect("cluster info");
            if info.contains("cluster_state:ok") {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private cluster never reported cluster_state:ok");
    }

    async fn node(&self) -> ::redis::aio::MultiplexedConnection {
        let client =
            ::redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).expect("url");
        for _ in 0..100 {
            if let Ok(node) = client.get_multiplexed_async_connection().await {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private cluster's node does not answer");
    }

    fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber must learn that it may have missed messages: a cluster subscription's stream
/// ends when a connection of it drops, although redis-rs would quietly subscribe again.
#[tokio::test]
async fn a_cluster_subscription_ends_when_its_connection_does() {
    use futures::StreamExt;
    let cluster = PrivateCluster::start().await;
    let cache = open(&cluster.url());
    let mut changes = cache.subscribe("changes").await.expect("subscribes");
    cache.publish("changes", b"one").await.expect("publishes");
    let first = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("arrives");
    assert_eq!(first.as_deref(), Some(&b"one"[..]));

    let mut node = cluster.node().await;
    // A RESP3 subscriber is of type pubsub in some Redis versions and normal in others.
    for kind in ["pubsub", "normal"] {
        ::redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", kind, "SKIPME", "yes"])
            .query_async::<i64>(&mut node)
            .await
            .expect("drops the other connections");
    }
    let end = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("the stream ends");
    assert_eq!(end, None);

    let mut again = cache.subscribe("changes").await.expect("subscribes again");
    // The cache's own connection was cut as well; it reconnects on the next commands.
    let mut heard = None;
    for _ in 0..20 {
        let _ = cache.publish("changes", b"two").await;
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(250), again.next()).await {
            heard = message;
            break;
        }
    }
    assert_eq!(heard.as_deref(), Some(&b"two"[..]));
}
