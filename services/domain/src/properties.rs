//! Property tests of the money rules: no unchecked overflow, tax parts that add up, refunds
//! that never give back more than was sold.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::decimal::{Money, Quantity, Rate};
use crate::receipt::tests::{item, sale};
use crate::receipt::{Item, Receipt, ReceiptKind, Totals};
use crate::refund::{RefundLine, refund_items, refunded_so_far};
use crate::tax::line_amounts;

/// Any amount parsing accepts, up to a trillion.
fn money() -> impl Strategy<Value = Money> {
    (0i64..=1_000_000_000_000_000).prop_map(Money::from_minor)
}

fn quantity() -> impl Strategy<Value = Quantity> {
    (1i64..=1_000_000_000_000_000).prop_map(Quantity::from_thousandths)
}

fn rate() -> impl Strategy<Value = Rate> {
    (0i64..=10_000).prop_map(Rate::from_hundredths)
}

/// A receipt-sized line: up to 10,000 units at up to a million.
fn small_line() -> impl Strategy<Value = (i64, i64)> {
    (1i64..=10_000_000, 0i64..=100_000_000)
}

proptest! {
    #[test]
    fn totals_are_exact_or_an_overflow_never_a_wrap(amounts in prop::collection::vec(any::<i64>(), 0..50)) {
        let items: Vec<Item> = amounts
            .iter()
            .map(|&minor| {
                let mut i = item(1, "1", "1");
                i.total_amount = Money::from_minor(minor);
                i
            })
            .collect();
        let exact: i128 = amounts.iter().map(|&a| i128::from(a)).sum();
        let fits = amounts.iter().try_fold(0i64, |s, &a| s.checked_add(a)).is_some();
        match Totals::of(&items) {
            Ok(totals) => prop_assert_eq!(i128::from(totals.amount.minor()), exact),
            Err(_) => prop_assert!(!fits),
        }
    }

    #[test]
    fn a_lines_tax_parts_add_up_to_its_total(price in money(), qty in quantity(), vat in rate(), city in rate()) {
        if let Some(line) = line_amounts(qty, price, vat, city) {
            prop_assert_eq!(Money::sum(&[line.net, line.vat, line.city_tax]), Ok(line.total));
            prop_assert!(line.vat.minor() >= 0 && line.vat <= line.total);
            prop_assert!(line.city_tax.minor() >= 0 && line.city_tax <= line.total);
        }
    }

    #[test]
    fn refunds_never_give_back_more_than_was_sold(
        lines in prop::collection::vec(small_line(), 1..4),
        asks in prop::collection::vec(prop::collection::vec((1u32..=4, 1i64..=5_000_000), 0..4), 1..8),
    ) {
        let items: Vec<Item> = lines
            .iter()
            .zip(1u32..)
            .map(|(&(qty, price), position)| {
                let mut i = item(position, "1", "0");
                i.quantity = Quantity::from_thousandths(qty);
                i.unit_price = Money::from_minor(price);
                i.priced().expect("a receipt-sized line fits")
            })
            .collect();
        let original = sale(items);
        let mut refunds: Vec<Receipt> = Vec::new();
        for ask in asks {
            let request: Vec<RefundLine> = ask
                .iter()
                .map(|&(position, q)| RefundLine { position, quantity: Quantity::from_thousandths(q) })
                .collect();
            let done = refunded_so_far(&refunds).expect("sums of sold quantities fit");
            if let Ok(items) = refund_items(&original, &done, &request) {
                let mut refund = original.clone();
                refund.kind = ReceiptKind::Refund;
                refund.items = items;
                refunds.push(refund);
            }
        }
        let done = refunded_so_far(&refunds).expect("fits");
        let mut given_back: BTreeMap<u32, Money> = BTreeMap::new();
        for refunded in refunds.iter().flat_map(|r| &r.items) {
            let sum = given_back.entry(refunded.position).or_default();
            *sum = sum.checked_add(refunded.total_amount).expect("fits");
            prop_assert_eq!(
                Money::sum(&[refunded.net_amount, refunded.total_vat, refunded.total_city_tax]),
                Ok(refunded.total_amount)
            );
        }
        for sold in &original.items {
            let refunded = done.get(&sold.position).copied().unwrap_or_default();
            prop_assert!(refunded <= sold.quantity);
            let money = given_back.get(&sold.position).copied().unwrap_or_default();
            prop_assert!(money <= sold.total_amount);
            if refunded == sold.quantity {
                prop_assert_eq!(money, sold.total_amount);
            }
        }
    }
}

proptest! {
    #[test]
    fn any_amount_reads_back_from_its_json_number_and_its_exponent_forms(minor in -1_000_000_000_000_000i64..=1_000_000_000_000_000) {
        let money = Money::from_minor(minor);
        prop_assert_eq!(Money::from_json_number(&money.to_string()), Ok(money));
        prop_assert_eq!(Money::from_json_number(&format!("{minor}e-2")), Ok(money));
        prop_assert_eq!(Money::from_json_number(&format!("{minor}.0E-2")), Ok(money));
    }

    #[test]
    fn a_json_number_with_a_digit_below_the_cent_is_refused(units in 0i64..1_000_000_000, cents in 0u8..100, mill in 1u8..=9) {
        let text = format!("{units}.{cents:02}{mill}");
        prop_assert!(Money::from_json_number(&text).is_err(), "{}", text);
    }

    #[test]
    fn partial_refunds_never_give_back_more_than_was_paid(
        paid in 1i64..=1_000_000_000,
        asks in prop::collection::vec(1i64..=1_000_000_000, 0..20),
    ) {
        use crate::qr::{RefundAsk, refund_amount};
        let paid = Money::from_minor(paid);
        let mut refunded = Money::ZERO;
        for ask in asks {
            if let Ok(amount) = refund_amount(paid, refunded, RefundAsk::Partial(Money::from_minor(ask))) {
                refunded = refunded.checked_add(amount).expect("bounded");
            }
            prop_assert!(refunded <= paid);
        }
        let full = refund_amount(paid, refunded, RefundAsk::Full);
        prop_assert_eq!(full.is_ok(), refunded == Money::ZERO);
    }
}
