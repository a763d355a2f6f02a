//! Refunds: which lines of a sale are given back, and never more than is left of any of them.
//!
//! What is left of a line is what was sold less every live refund of it, earlier ones and the
//! lines of this very request together. Money follows quantity cumulatively: a refund of `q`
//! after `d` was refunded gives back `price × (d + q) − price × (d)`, each rounded as a sale's
//! line is, so however a line is refunded in parts, the parts add up to the sold line's total
//! and never exceed it. The VAT and city tax of a refunded line are those its amount contains.

use std::collections::BTreeMap;

use crate::decimal::{Money, Quantity};
use crate::receipt::{FiscalState, Item, Payment, PaymentMethod, Receipt, ReceiptKind};
use crate::tax;

/// One refunded quantity of a line of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundLine {
    /// The original's line `position`.
    pub position: u32,
    pub quantity: Quantity,
}

/// Why a refund line cannot be made; `line` is its index in the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("the original has no line {position}")]
    NoSuchLine { line: usize, position: u32 },
    #[error("must be greater than 0")]
    NotPositive { line: usize },
    #[error("{asked} exceeds the {left} of line {position} not refunded yet (sold {sold})")]
    Exceeds {
        line: usize,
        position: u32,
        asked: Quantity,
        left: Quantity,
        sold: Quantity,
    },
    #[error("is too large")]
    TooLarge { line: usize },
}

impl RefundError {
    /// The index of the request line at fault.
    pub fn line(&self) -> usize {
        match self {
            Self::NoSuchLine { line, .. }
            | Self::NotPositive { line }
            | Self::Exceeds { line, .. }
            | Self::TooLarge { line } => *line,
        }
    }
}

/// Why a receipt cannot be refunded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRefundable {
    #[error("receipt {id} is a {kind}, only a SALE can be refunded")]
    NotASale { id: String, kind: ReceiptKind },
    #[error("receipt {id} is cancelled and cannot be refunded")]
    Cancelled { id: String },
    #[error("receipt {id} is already fully refunded")]
    NothingLeft { id: String },
}

/// Only a sale that is not cancelled can be refunded.
pub fn check_refundable(original: &Receipt, state: FiscalState) -> Result<(), NotRefundable> {
    if original.kind != ReceiptKind::Sale {
        return Err(NotRefundable::NotASale {
            id: original.id.clone(),
            kind: original.kind,
        });
    }
    if state == FiscalState::Cancelled {
        return Err(NotRefundable::Cancelled {
            id: original.id.clone(),
        });
    }
    Ok(())
}

/// Quantities refunded so far per line position, from the live refunds of a receipt.
pub fn refunded_so_far<'a>(
    refunds: impl IntoIterator<Item = &'a Receipt>,
) -> Result<BTreeMap<u32, Quantity>, RefundError> {
    let mut done: BTreeMap<u32, Quantity> = BTreeMap::new();
    for item in refunds.into_iter().flat_map(|r| &r.items) {
        let sum = done.entry(item.position).or_default();
        *sum = sum
            .checked_add(item.quantity)
            .ok_or(RefundError::TooLarge { line: 0 })?;
    }
    Ok(done)
}

/// The items of a refund of `original` asking for `lines` (empty: everything not refunded
/// yet), after the refunds whose quantities per line are `done`. Every line at fault is named.
pub fn refund_items(
    original: &Receipt,
    done: &BTreeMap<u32, Quantity>,
    lines: &[RefundLine],
) -> Result<Vec<Item>, RefundOutcome> {
    let left = |item: &Item, done: &BTreeMap<u32, Quantity>| {
        let refunded = done.get(&item.position).copied().unwrap_or_default();
        item.quantity.checked_sub(refunded).unwrap_or_default()
    };
    let everything: Vec<RefundLine>;
    let lines = if lines.is_empty() {
        everything = original
            .items
            .iter()
            .map(|item| RefundLine {
                position: item.position,
                quantity: left(item, done),
            })
            .filter(|line| line.quantity.is_positive())
            .collect();
        if everything.is_empty() {
            return Err(RefundOutcome::Refused(NotRefundable::NothingLeft {
                id: original.id.clone(),
            }));
        }
        &everything[..]
    } else {
        lines
    };

    // This request's lines count against what is left as they come.
    let mut done = done.clone();
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let Some(item) = original.items.iter().find(|i| i.position == line.position) else {
            errors.push(RefundError::NoSuchLine {
                line: index,
                position: line.position,
            });
            continue;
        };
        if !line.quantity.is_positive() {
            errors.push(RefundError::NotPositive { line: index });
            continue;
        }
        let remaining = left(item, &done);
        if line.quantity > remaining {
            errors.push(RefundError::Exceeds {
                line: index,
                position: line.position,
                asked: line.quantity,
                left: remaining,
                sold: item.quantity,
            });
            continue;
        }
        let before = done.get(&line.position).copied().unwrap_or_default();
        let Some((after, refunded)) = before
            .checked_add(line.quantity)
            .and_then(|after| Some((after, refunded_amounts(item, before, after)?)))
        else {
            errors.push(RefundError::TooLarge { line: index });
            continue;
        };
        done.insert(line.position, after);
        let mut refunded_item = item.clone();
        refunded_item.set_amounts(line.quantity, refunded);
        items.push(refunded_item);
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(RefundOutcome::Lines(errors))
    }
}

/// Why no refund items came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The receipt as a whole.
    Refused(NotRefundable),
    /// These request lines.
    Lines(Vec<RefundError>),
}

/// What stands of `original` after the refunds whose quantities per line are `done`: its lines
/// with what is left of them (lines refunded in full are gone), their amounts the sold line's
/// total less what the refunds gave back (so the remainder and the refunds add up to the sale,
/// to the minor unit), and payments for exactly the remaining total, taken from the original's
/// payments in their order (change counted against cash first). `None` when nothing is left.
///
/// This is the correction receipt a provider that corrects by replacement (e-barimt's
/// `inactiveId`) is sent for a partial refund.
pub fn remainder(
    original: &Receipt,
    done: &BTreeMap<u32, Quantity>,
) -> Result<Option<Receipt>, RefundError> {
    let too_large = RefundError::TooLarge { line: 0 };
    let mut items = Vec::with_capacity(original.items.len());
    for item in &original.items {
        let refunded = done.get(&item.position).copied().unwrap_or_default();
        let left = item
            .quantity
            .checked_sub(refunded)
            .ok_or(too_large.clone())?;
        if !left.is_positive() {
            continue;
        }
        let given_back = item.unit_price.times(refunded).ok_or(too_large.clone())?;
        let total = item
            .total_amount
            .checked_sub(given_back)
            .ok_or(too_large.clone())?;
        let amounts = tax::gross_amounts(total, item.vat_rate, item.city_tax_rate)
            .ok_or(too_large.clone())?;
        let mut kept = item.clone();
        kept.set_amounts(left, amounts);
        items.push(kept);
    }
    if items.is_empty() {
        return Ok(None);
    }
    let mut rest = original.clone();
    rest.items = items;
    let totals = rest.total_up().map_err(|_| too_large.clone())?;
    rest.payments = payments_for(&original.payments, totals.amount).ok_or(too_large)?;
    Ok(Some(rest))
}

/// Payments of `payments` that make up exactly `total`, in their order; change is taken off cash.
fn payments_for(payments: &[Payment], total: Money) -> Option<Vec<Payment>> {
    let change = Money::sum(
        payments
            .iter()
            .filter(|p| p.method == PaymentMethod::Change)
            .map(|p| &p.amount),
    )
    .ok()?;
    let mut change_left = change;
    let mut owed = total;
    let mut kept = Vec::new();
    for payment in payments
        .iter()
        .filter(|p| p.method != PaymentMethod::Change)
    {
        let mut amount = payment.amount;
        if payment.method == PaymentMethod::Cash && change_left.is_positive() {
            let taken = if change_left > amount {
                amount
            } else {
                change_left
            };
            amount = amount.checked_sub(taken)?;
            change_left = change_left.checked_sub(taken)?;
        }
        let part = if amount > owed { owed } else { amount };
        if part.is_positive() {
            let mut p = payment.clone();
            p.amount = part;
            kept.push(p);
            owed = owed.checked_sub(part)?;
        }
    }
    // Payments that do not cover the total (never for a sale fiscus journaled): cash makes it up.
    if owed.is_positive() {
        kept.push(Payment {
            method: PaymentMethod::Cash,
            amount: owed,
            description: String::new(),
            pay_item_case: 0,
            reference: String::new(),
            rrn: String::new(),
            card_terminal_id: String::new(),
            masked_card_number: String::new(),
            bank_code: String::new(),
            easy_register: false,
            data: BTreeMap::new(),
        });
    }
    Some(kept)
}

/// The amounts given back for taking a line's refunded quantity from `before` to `after`.
fn refunded_amounts(item: &Item, before: Quantity, after: Quantity) -> Option<tax::LineAmounts> {
    let gross = |quantity: Quantity| item.unit_price.times(quantity);
    let total = gross(after)?.checked_sub(gross(before)?)?;
    tax::gross_amounts(total, item.vat_rate, item.city_tax_rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::tests::{cash, item, sale};

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    fn line(position: u32, quantity: &str) -> RefundLine {
        RefundLine {
            position,
            quantity: q(quantity),
        }
    }

    fn refund(original: &Receipt, items: Vec<Item>) -> Receipt {
        let mut refund = original.clone();
        refund.kind = ReceiptKind::Refund;
        refund.items = items;
        refund
    }

    #[test]
    fn a_remainder_and_its_refunds_add_up_to_the_sale() {
        let mut original = sale(vec![item(1, "3", "333.33"), item(2, "1", "500")]);
        original.payments = vec![cash("2000"), {
            let mut change = cash("499.99");
            change.method = PaymentMethod::Change;
            change
        }];
        let first = refund_items(&original, &BTreeMap::new(), &[line(1, "1")]).unwrap();
        let earlier = [refund(&original, first)];
        let done = refunded_so_far(&earlier).unwrap();
        let rest = remainder(&original, &done).unwrap().unwrap();
        let quantities: Vec<_> = rest
            .items
            .iter()
            .map(|i| (i.position, i.quantity))
            .collect();
        assert_eq!(quantities, [(1, q("2")), (2, q("1"))]);
        let refunded = Money::sum(earlier[0].items.iter().map(|i| &i.total_amount)).unwrap();
        assert_eq!(
            rest.total_amount.checked_add(refunded),
            Some(original.total_amount)
        );
        for item in &rest.items {
            let parts = item.net_amount.checked_add(item.total_vat).unwrap();
            assert_eq!(
                parts.checked_add(item.total_city_tax),
                Some(item.total_amount)
            );
        }
        assert_eq!(rest.payments.len(), 1);
        assert_eq!(rest.payments[0].method, PaymentMethod::Cash);
        assert_eq!(rest.payments[0].amount, rest.total_amount);
        let all = refunded_so_far(&[refund(
            &original,
            refund_items(&original, &BTreeMap::new(), &[]).unwrap(),
        )])
        .unwrap();
        assert_eq!(remainder(&original, &all).unwrap(), None);
    }

    #[test]
    fn one_line_named_twice_cannot_refund_more_than_was_sold() {
        let original = sale(vec![item(1, "3", "1000")]);
        let err =
            refund_items(&original, &BTreeMap::new(), &[line(1, "2"), line(1, "2")]).unwrap_err();
        assert_eq!(
            err,
            RefundOutcome::Lines(vec![RefundError::Exceeds {
                line: 1,
                position: 1,
                asked: q("2"),
                left: q("1"),
                sold: q("3"),
            }])
        );
    }

    #[test]
    fn earlier_refunds_count_against_what_is_left() {
        let original = sale(vec![item(1, "3", "1000"), item(2, "1", "500")]);
        let first = refund_items(&original, &BTreeMap::new(), &[line(1, "2")]).unwrap();
        let earlier = [refund(&original, first)];
        let done = refunded_so_far(&earlier).unwrap();
        assert!(refund_items(&original, &done, &[line(1, "2")]).is_err());
        let rest = refund_items(&original, &done, &[]).unwrap();
        let rest: Vec<_> = rest.iter().map(|i| (i.position, i.quantity)).collect();
        assert_eq!(rest, [(1, q("1")), (2, q("1"))]);
    }

    #[test]
    fn a_fully_refunded_receipt_has_nothing_left() {
        let original = sale(vec![item(1, "1", "1000")]);
        let all = refund_items(&original, &BTreeMap::new(), &[]).unwrap();
        let done = refunded_so_far(&[refund(&original, all)]).unwrap();
        assert!(matches!(
            refund_items(&original, &done, &[]),
            Err(RefundOutcome::Refused(NotRefundable::NothingLeft { .. }))
        ));
    }

    #[test]
    fn parts_of_a_line_give_back_exactly_its_total() {
        // 0.05 × 0.1 rounds up to 0.01 each time; sold 0.3 for 0.02.
        let original = sale(vec![item(1, "0.3", "0.05")]);
        assert_eq!(original.total_amount, Money::from_minor(2));
        let mut refunds = Vec::new();
        for _ in 0..3 {
            let done = refunded_so_far(&refunds).unwrap();
            let items = refund_items(&original, &done, &[line(1, "0.1")]).unwrap();
            refunds.push(refund(&original, items));
        }
        let given_back = Money::sum(refunds.iter().map(|r| &r.items[0].total_amount)).unwrap();
        assert_eq!(given_back, original.total_amount);
    }

    #[test]
    fn unknown_lines_and_zero_quantities_are_named() {
        let original = sale(vec![item(1, "1", "1000")]);
        let err =
            refund_items(&original, &BTreeMap::new(), &[line(7, "1"), line(1, "0")]).unwrap_err();
        let RefundOutcome::Lines(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            errors.iter().map(RefundError::line).collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[test]
    fn only_a_live_sale_is_refundable() {
        let original = sale(vec![item(1, "1", "1000")]);
        assert!(check_refundable(&original, FiscalState::LocalSigned).is_ok());
        assert!(check_refundable(&original, FiscalState::Cancelled).is_err());
        let refund = refund(&original, Vec::new());
        assert!(check_refundable(&refund, FiscalState::LocalSigned).is_err());
    }
}
