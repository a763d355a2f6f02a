//! What TokenService counts, beside the RED metrics of every RPC: the upstream-token cache and
//! the fetches from the upstreams.

use std::sync::LazyLock;

use fiscus_kit::metrics::register;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    provider: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    provider: &'static str,
    outcome: &'static str,
}

static CACHE: LazyLock<Family<CacheLabels, Counter>> = LazyLock::new(|| {
    register(
        "fiscus_token_cache_requests",
        "Upstream tokens asked for, by whether a cached one would do",
        Family::default(),
    )
});

static FETCHES: LazyLock<Family<FetchLabels, Counter>> = LazyLock::new(|| {
    register(
        "fiscus_upstream_token_fetches",
        "Tokens fetched from an upstream, by outcome",
        Family::default(),
    )
});

/// The upstream a cache key is for (`token:<provider>:…`).
pub fn provider(key: &str) -> &'static str {
    match key.split(':').nth(1) {
        Some("ebarimt") => "ebarimt",
        Some("fiskaltrust") => "fiskaltrust",
        Some("mia") => "mia",
        _ => "other",
    }
}

pub fn cache(provider: &'static str, result: &'static str) {
    CACHE.get_or_create(&CacheLabels { provider, result }).inc();
}

pub fn fetched(provider: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    FETCHES
        .get_or_create(&FetchLabels { provider, outcome })
        .inc();
}
