//! How the upstreams answer, timed: the process that hosts the clients registers these in its
//! registry with [`register`].

use std::sync::{LazyLock, Once};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Upstream;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    upstream: &'static str,
    /// ok, refused (4xx), error (5xx and the like), unreachable (no answer).
    outcome: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Histograms by label, each made with [`histogram`]'s buckets.
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

static LATENCY: LazyLock<Histograms> = LazyLock::new(|| Family::new_with_constructor(histogram));

/// Adds the upstream metrics to `registry`, once per process however often it is called.
pub fn register(registry: &mut Registry) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        registry.register(
            "fiscus_upstream_request_duration_seconds",
            "Upstream HTTP requests, by upstream and outcome, seconds",
            LATENCY.clone(),
        );
    });
}

pub(crate) fn observe(upstream: Upstream, outcome: &'static str, took: Duration) {
    let upstream = match upstream {
        Upstream::Keycloak => "keycloak",
        Upstream::Mia => "mia",
        Upstream::Ebarimt => "ebarimt",
        Upstream::Fiskaltrust => "fiskaltrust",
    };
    LATENCY
        .get_or_create(&Labels { upstream, outcome })
        .observe(took.as_secs_f64());
}
