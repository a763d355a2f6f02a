//! Cancellations: which receipts may be cancelled, and the cancellation receipt that records it.
//!
//! As e-barimt's `DELETE /rest/receipt`: a sale or refund can be cancelled only on the business
//! day it was signed (by its signed time, which the chain protects, not a column), only once,
//! and a sale only while it has no live refunds. A later correction is a refund.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use crate::receipt::{FiscalState, Receipt, ReceiptKind};

/// Why a receipt cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    #[error("receipt {id} is already cancelled")]
    AlreadyCancelled { id: String },
    #[error("a {kind} receipt cannot be cancelled")]
    NotCancellable { kind: ReceiptKind },
    #[error(
        "receipt {id} was signed on {signed_day} and can only be cancelled that same business day \
         (today is {today}, UTC{offset}); issue a REFUND instead"
    )]
    AnotherDay {
        id: String,
        signed_day: NaiveDate,
        today: NaiveDate,
        offset: FixedOffset,
    },
    #[error("receipt {id} has refunds; cancel those first or refund the rest")]
    HasRefunds { id: String },
}

/// Checks that `original`, whose standing is `state`, may be cancelled `now`, in a business day
/// that runs in `business_day` offset from UTC.
pub fn check_cancellable(
    original: &Receipt,
    state: FiscalState,
    has_live_refunds: bool,
    now: DateTime<Utc>,
    business_day: FixedOffset,
) -> Result<(), CancelRefused> {
    if state == FiscalState::Cancelled {
        return Err(CancelRefused::AlreadyCancelled {
            id: original.id.clone(),
        });
    }
    if !matches!(original.kind, ReceiptKind::Sale | ReceiptKind::Refund) {
        return Err(CancelRefused::NotCancellable {
            kind: original.kind,
        });
    }
    let signed_day = original.signed_at.with_timezone(&business_day).date_naive();
    let today = now.with_timezone(&business_day).date_naive();
    if signed_day != today {
        return Err(CancelRefused::AnotherDay {
            id: original.id.clone(),
            signed_day,
            today,
            offset: business_day,
        });
    }
    if has_live_refunds {
        return Err(CancelRefused::HasRefunds {
            id: original.id.clone(),
        });
    }
    Ok(())
}

/// The cancellation receipt of `original`: its own id, no items or payments, the original's
/// totals, signed `now` with the key `key_id`. Its number and chain place come at append time.
pub fn cancellation(
    original: &Receipt,
    id: String,
    now: DateTime<Utc>,
    reason: &str,
    cashier: &str,
    key_id: &str,
) -> Receipt {
    Receipt {
        id,
        number: 0,
        kind: ReceiptKind::Cancellation,
        moment: now,
        signed_at: now,
        items: Vec::new(),
        payments: Vec::new(),
        cashier: cashier.to_owned(),
        original_receipt_id: original.id.clone(),
        receipt_case: 0,
        late_signed: false,
        handwritten: false,
        reason: reason.to_owned(),
        key_id: key_id.to_owned(),
        ..original.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::tests::{item, sale};

    fn at(text: &str) -> DateTime<Utc> {
        crate::receipt::instant::parse(text).unwrap()
    }

    const UB: i32 = 8 * 3600;

    #[test]
    fn only_on_the_business_day_it_was_signed() {
        let offset = FixedOffset::east_opt(UB).unwrap();
        // Signed 2026-11-23 10:15 UTC = 18:15 in Ulaanbaatar.
        let original = sale(vec![item(1, "1", "100")]);
        let same_day = at("2026-11-23T15:59:59.000000Z");
        let next_day = at("2026-11-23T16:00:00.000000Z");
        let check =
            |now| check_cancellable(&original, FiscalState::LocalSigned, false, now, offset);
        assert_eq!(check(same_day), Ok(()));
        assert!(matches!(
            check(next_day),
            Err(CancelRefused::AnotherDay { .. })
        ));
    }

    #[test]
    fn once_only_and_not_with_refunds() {
        let offset = FixedOffset::east_opt(UB).unwrap();
        let original = sale(vec![item(1, "1", "100")]);
        let now = original.signed_at;
        assert!(matches!(
            check_cancellable(&original, FiscalState::Cancelled, false, now, offset),
            Err(CancelRefused::AlreadyCancelled { .. })
        ));
        assert!(matches!(
            check_cancellable(&original, FiscalState::LocalSigned, true, now, offset),
            Err(CancelRefused::HasRefunds { .. })
        ));
        let mut zero = original.clone();
        zero.kind = ReceiptKind::Zero;
        assert!(matches!(
            check_cancellable(&zero, FiscalState::LocalSigned, false, now, offset),
            Err(CancelRefused::NotCancellable { .. })
        ));
    }

    #[test]
    fn a_cancellation_carries_the_originals_totals_and_no_lines() {
        let original = sale(vec![item(1, "2", "100")]);
        let c = cancellation(
            &original,
            "c-1".into(),
            original.signed_at,
            "wrong item",
            "",
            "k",
        );
        assert_eq!(
            (c.kind, c.items.len(), c.payments.len()),
            (ReceiptKind::Cancellation, 0, 0)
        );
        assert_eq!(c.totals(), original.totals());
        assert_eq!(c.original_receipt_id, original.id);
    }
}
