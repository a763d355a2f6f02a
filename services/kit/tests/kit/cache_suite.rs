//! The cache contract, on Redis and in-process.

use std::time::Duration;

use fiscus_kit::cache::{self, CacheSettings, SharedCache};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
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

macro_rules! on_both_caches {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name(super::open(&super::redis_url())).await })*
        }
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::open("memory")).await })*
        }
    };
}

on_both_caches!(
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
