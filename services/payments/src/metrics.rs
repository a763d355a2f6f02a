//! What PaymentService counts beside the RED metrics of every RPC: the WatchPayment streams
//! open in this process (`fiscus_watchers_open{stream="payments"}`).

const STREAM: &str = "payments";

/// Shows the series (at 0) on the admin port before the first stream.
pub fn init() {
    fiscus_kit::metrics::watchers(STREAM, 0);
}

/// A WatchPayment stream opened (`1`) or ended (`-1`).
pub fn watchers(change: i64) {
    fiscus_kit::metrics::watchers(STREAM, change);
}

/// The WatchPayment streams open now.
#[cfg(test)]
pub fn watchers_open() -> i64 {
    fiscus_kit::metrics::watchers_open(STREAM)
}
