//! Shift totals: what each receipt adds to its shift's X- and Z-reports.
//!
//! A sale adds its lines, a refund takes its lines back, a cancellation undoes what the receipt
//! it cancels did, and a zero receipt moves nothing. The journal keeps each receipt's lines
//! signed that way, so a report is a plain sum that the database adds up.

use std::collections::BTreeMap;

use crate::decimal::{Money, Overflow, Rate};
use crate::receipt::{PaymentMethod, Receipt, ReceiptKind, TaxType};

/// What a receipt does to its shift's turnover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A sale, or the cancellation of a refund.
    Adds,
    /// A refund, or the cancellation of a sale.
    TakesBack,
    /// A zero receipt.
    Nothing,
}

impl Effect {
    /// The effect of a receipt of `kind`; `cancelled` is the kind of the receipt a
    /// cancellation cancels.
    pub fn of(kind: ReceiptKind, cancelled: Option<ReceiptKind>) -> Self {
        match (kind, cancelled) {
            (ReceiptKind::Sale, _) | (ReceiptKind::Cancellation, Some(ReceiptKind::Refund)) => {
                Effect::Adds
            }
            (ReceiptKind::Refund, _) | (ReceiptKind::Cancellation, Some(ReceiptKind::Sale)) => {
                Effect::TakesBack
            }
            _ => Effect::Nothing,
        }
    }

    fn apply(self, amount: Money) -> Result<Money, Overflow> {
        match self {
            Effect::Adds => Ok(amount),
            Effect::TakesBack => amount.checked_neg().ok_or(Overflow),
            Effect::Nothing => Ok(Money::ZERO),
        }
    }
}

/// The items of one tax type and VAT rate, signed by the receipt's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaxLine {
    pub tax_type: TaxType,
    pub vat_rate: Rate,
    /// Taxable base: the net amount VAT was charged on.
    pub base: Money,
    pub vat: Money,
    pub city_tax: Money,
    /// Base, VAT and city tax.
    pub gross: Money,
}

/// The pay items of one method, their amount signed by the receipt's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayLine {
    pub method: PaymentMethod,
    /// How many pay items the receipt itself carries (a cancellation carries none).
    pub count: u32,
    pub amount: Money,
}

/// What one receipt adds to its shift: a line per tax type and rate, and per payment method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShiftLines {
    pub tax: Vec<TaxLine>,
    pub pay: Vec<PayLine>,
}

impl ShiftLines {
    /// The lines of `receipt`, whose items and payments are those of `counted` (the receipt
    /// itself, or for a cancellation the receipt it cancels), signed by `effect`.
    pub fn of(receipt: &Receipt, counted: &Receipt, effect: Effect) -> Result<Self, Overflow> {
        if effect == Effect::Nothing {
            return Ok(Self::default());
        }
        let mut tax: BTreeMap<(TaxType, Rate), [Money; 3]> = BTreeMap::new();
        for item in &counted.items {
            let sums = tax
                .entry((item.tax_type, item.vat_rate))
                .or_insert([Money::ZERO; 3]);
            let parts = [item.net_amount, item.total_vat, item.total_city_tax];
            for (sum, part) in sums.iter_mut().zip(parts) {
                *sum = sum.checked_add(effect.apply(part)?).ok_or(Overflow)?;
            }
        }
        let mut pay: BTreeMap<PaymentMethod, (u32, Money)> = BTreeMap::new();
        let own = std::ptr::eq(receipt, counted);
        for payment in &counted.payments {
            let (count, sum) = pay.entry(payment.method).or_insert((0, Money::ZERO));
            if own {
                *count = count.checked_add(1).ok_or(Overflow)?;
            }
            *sum = sum
                .checked_add(effect.apply(payment.amount)?)
                .ok_or(Overflow)?;
        }
        Ok(Self {
            tax: tax
                .into_iter()
                .map(|((tax_type, vat_rate), [base, vat, city_tax])| {
                    let gross = base
                        .checked_add(vat)
                        .and_then(|g| g.checked_add(city_tax))
                        .ok_or(Overflow)?;
                    Ok(TaxLine {
                        tax_type,
                        vat_rate,
                        base,
                        vat,
                        city_tax,
                        gross,
                    })
                })
                .collect::<Result<_, Overflow>>()?,
            pay: pay
                .into_iter()
                .map(|(method, (count, amount))| PayLine {
                    method,
                    count,
                    amount,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::tests::{cash, item, sale};

    #[test]
    fn a_sale_adds_its_lines_by_tax_type_and_rate() {
        let mut receipt = sale(vec![item(1, "2", "110"), item(2, "1", "56")]);
        receipt.payments = vec![cash("276.00")];
        let lines = ShiftLines::of(&receipt, &receipt, Effect::of(receipt.kind, None)).unwrap();
        assert_eq!(lines.tax.len(), 1);
        let line = lines.tax[0];
        let total = Money::sum(receipt.items.iter().map(|i| &i.total_amount)).unwrap();
        assert_eq!(line.gross, total);
        assert_eq!(
            line.base
                .checked_add(line.vat)
                .unwrap()
                .checked_add(line.city_tax),
            Some(total)
        );
        assert_eq!(lines.pay.len(), 1);
        assert_eq!(lines.pay[0].count, 1);
    }

    #[test]
    fn a_refund_and_the_cancellation_of_a_sale_take_back_what_it_added() {
        let mut receipt = sale(vec![item(1, "1", "100")]);
        receipt.payments = vec![cash("100.00")];
        let added = ShiftLines::of(&receipt, &receipt, Effect::Adds).unwrap();
        let mut cancellation = receipt.clone();
        cancellation.kind = ReceiptKind::Cancellation;
        cancellation.items.clear();
        cancellation.payments.clear();
        let effect = Effect::of(ReceiptKind::Cancellation, Some(ReceiptKind::Sale));
        assert_eq!(effect, Effect::TakesBack);
        let taken = ShiftLines::of(&cancellation, &receipt, effect).unwrap();
        assert_eq!(
            taken.tax[0].gross,
            added.tax[0].gross.checked_neg().unwrap()
        );
        assert_eq!(taken.pay[0].amount, Money::parse("-100").unwrap());
        // The cancellation carries no pay items of its own.
        assert_eq!(taken.pay[0].count, 0);
        assert_eq!(
            Effect::of(ReceiptKind::Cancellation, Some(ReceiptKind::Refund)),
            Effect::Adds
        );
        assert_eq!(Effect::of(ReceiptKind::Refund, None), Effect::TakesBack);
    }

    #[test]
    fn a_zero_receipt_moves_nothing() {
        let mut receipt = sale(Vec::new());
        receipt.kind = ReceiptKind::Zero;
        let lines = ShiftLines::of(&receipt, &receipt, Effect::of(receipt.kind, None)).unwrap();
        assert!(lines.tax.is_empty() && lines.pay.is_empty());
    }
}
