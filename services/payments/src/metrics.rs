//! What PaymentService counts beside the RED metrics of every RPC: the WatchPayment streams
//! open in this process.

use std::sync::LazyLock;

use fiscus_kit::metrics::register;
use prometheus_client::metrics::gauge::Gauge;

// A name of its own: `fiscus dev` hosts ReceiptService's `fiscus_watchers_open` in the same
// registry, and a family registered twice would be exposed twice.
static WATCHERS: LazyLock<Gauge> = LazyLock::new(|| {
    register(
        "fiscus_payments_watchers_open",
        "WatchPayment streams open in this process",
        Gauge::default(),
    )
});

/// Registers the metrics, so that the admin port shows them (at 0) before the first stream.
pub fn init() {
    LazyLock::force(&WATCHERS);
}

/// A WatchPayment stream opened (`1`) or ended (`-1`).
pub fn watchers(change: i64) {
    WATCHERS.inc_by(change);
}

/// The WatchPayment streams open now.
#[cfg(test)]
pub fn watchers_open() -> i64 {
    WATCHERS.get()
}
