//! What ReceiptService counts, beside the RED metrics of every RPC: receipts journaled, the
//! journal writer's groups and life, and the watchers open.

use std::sync::LazyLock;

use fiscus_domain::receipt::FiscalState;
use fiscus_kit::metrics::register;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignedLabels {
    provider: &'static str,
    fiscal_state: &'static str,
}

static SIGNED: LazyLock<Family<SignedLabels, Counter>> = LazyLock::new(|| {
    register(
        "fiscus_receipts_signed",
        "Receipts journaled (sales, refunds, zero receipts, cancellations), by provider and state",
        Family::default(),
    )
});

/// How many receipts each group commit carried.
pub static GROUP_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        "fiscus_journal_group_size",
        "Receipts appended by one group commit",
        Histogram::new(exponential_buckets(1.0, 2.0, 8)),
    )
});

/// 1 while the journal's writer runs, 0 while a new one is being started.
pub static WRITER_UP: LazyLock<Gauge> = LazyLock::new(|| {
    register(
        "fiscus_journal_writer_up",
        "Whether the receipt journal's group-commit writer runs",
        Gauge::default(),
    )
});

pub fn signed(state: FiscalState) {
    SIGNED
        .get_or_create(&SignedLabels {
            provider: "builtin",
            fiscal_state: state.as_str(),
        })
        .inc();
}

/// A WatchReceipt stream opened (`1`) or ended (`-1`).
pub fn watchers(change: i64) {
    fiscus_kit::metrics::watchers("receipts", change);
}
