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
use std::sync::atomic::AtomicU64;

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

/// A receipt journaled for `provider` (its metrics label) in `state`.
pub fn signed(provider: &'static str, state: FiscalState) {
    SIGNED
        .get_or_create(&SignedLabels {
            provider,
            fiscal_state: state.as_str(),
        })
        .inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    provider: &'static str,
    /// accepted, refused, failed (retried), parked (a dead letter waiting for a person).
    outcome: &'static str,
}

static DEPTH: LazyLock<Family<ProviderLabels, Gauge>> = LazyLock::new(|| {
    register(
        "fiscus_outbox_depth",
        "Receipts waiting in the outbox for their provider (dead letters not counted), by provider",
        Family::default(),
    )
});

static OLDEST: LazyLock<Family<ProviderLabels, Gauge<f64, AtomicU64>>> = LazyLock::new(|| {
    register(
        "fiscus_outbox_oldest_age_seconds",
        "Age of the oldest receipt waiting in the outbox (dead letters not counted), by provider",
        Family::default(),
    )
});

static DEAD: LazyLock<Family<ProviderLabels, Gauge>> = LazyLock::new(|| {
    register(
        "fiscus_outbox_dead_letters",
        "Receipts the outbox stopped retrying, waiting for ResendPending, by provider",
        Family::default(),
    )
});

static DELIVERIES: LazyLock<Family<DeliveryLabels, Counter>> = LazyLock::new(|| {
    register(
        "fiscus_outbox_deliveries",
        "Delivery attempts of receipts to their providers, by provider and outcome",
        Family::default(),
    )
});

/// One delivery attempt and how it came out.
pub fn delivered(provider: &'static str, outcome: &'static str) {
    DELIVERIES
        .get_or_create(&DeliveryLabels { provider, outcome })
        .inc();
}

/// The outbox as measured at `now_us`; a provider no longer in it reads 0.
pub fn outbox(depths: &[crate::outbox::store::Depth], now_us: i64) {
    // The upstream providers (the built-in signer has no outbox).
    let provider = crate::config::ProviderKind::Ebarimt;
    let label = ProviderLabels {
        provider: provider.label().to_owned(),
    };
    let depth = depths.iter().find(|d| d.provider == provider.as_str());
    DEPTH.get_or_create(&label).set(depth.map_or(0, |d| d.live));
    DEAD.get_or_create(&label).set(depth.map_or(0, |d| d.dead));
    #[allow(clippy::cast_precision_loss)]
    let age = depth.and_then(|d| d.oldest_us).map_or(0.0, |oldest| {
        now_us.saturating_sub(oldest).max(0) as f64 / 1e6
    });
    OLDEST.get_or_create(&label).set(age);
}

/// A WatchReceipt stream opened (`1`) or ended (`-1`).
pub fn watchers(change: i64) {
    fiscus_kit::metrics::watchers("receipts", change);
}
