//! Tax per item: the VAT and city tax contained in a tax-inclusive line amount.
//!
//! Amounts are gross (VAT and city tax included), as POSAPI defines `totalAmount`. With VAT rate
//! `v` and city tax rate `c` (percent), a line total `T` contains `VAT = T·v/(100+v+c)` and
//! `city tax = T·c/(100+v+c)`, each rounded half away from zero to minor units, per item; the net
//! amount is what remains, so the three parts always add up to the line total exactly.

use crate::decimal::{Money, Quantity, Rate, div_round_half_away};

/// The computed amounts of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAmounts {
    pub total: Money,
    pub vat: Money,
    pub city_tax: Money,
    pub net: Money,
}

/// Splits `quantity × unit_price` into its net amount, VAT and city tax.
/// `None` only when the product does not fit (inputs are bounded by parsing, so never in practice).
pub fn line_amounts(
    quantity: Quantity,
    unit_price: Money,
    vat_rate: Rate,
    city_tax_rate: Rate,
) -> Option<LineAmounts> {
    gross_amounts(unit_price.times(quantity)?, vat_rate, city_tax_rate)
}

/// The amounts of a gross line total.
pub fn gross_amounts(total: Money, vat_rate: Rate, city_tax_rate: Rate) -> Option<LineAmounts> {
    let (vat, city_tax) = contained_taxes(total, vat_rate, city_tax_rate)?;
    let net = total.checked_sub(vat)?.checked_sub(city_tax)?;
    Some(LineAmounts {
        total,
        vat,
        city_tax,
        net,
    })
}

impl LineAmounts {
    /// `self − earlier`, part by part: what was added between two cumulative amounts.
    pub fn less(self, earlier: LineAmounts) -> Option<LineAmounts> {
        Some(LineAmounts {
            total: self.total.checked_sub(earlier.total)?,
            vat: self.vat.checked_sub(earlier.vat)?,
            city_tax: self.city_tax.checked_sub(earlier.city_tax)?,
            net: self.net.checked_sub(earlier.net)?,
        })
    }
}

/// The VAT and city tax contained in a gross amount; `None` for rates that are not
/// percentages (which validation refuses first).
pub fn contained_taxes(
    gross: Money,
    vat_rate: Rate,
    city_tax_rate: Rate,
) -> Option<(Money, Money)> {
    if !vat_rate.is_percentage() || !city_tax_rate.is_percentage() {
        return None;
    }
    // 100 % in hundredths of a percent, plus both rates.
    let base = i128::from(Rate::FULL.hundredths())
        .checked_add(i128::from(vat_rate.hundredths()))?
        .checked_add(i128::from(city_tax_rate.hundredths()))?;
    let part = |rate: Rate| {
        let value = div_round_half_away(
            i128::from(gross.minor()).checked_mul(i128::from(rate.hundredths()))?,
            base,
        )?;
        // |part| ≤ |gross| because rate < base, so it fits.
        i64::try_from(value).ok().map(Money::from_minor)
    };
    Some((part(vat_rate)?, part(city_tax_rate)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }
    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }
    fn r(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn posapi_example_with_two_percent_city_tax() {
        // POSAPI: bread 5000 net + 500 VAT + 100 city tax = 5600.
        let line = line_amounts(q("1"), m("5600"), r("10"), r("2")).unwrap();
        assert_eq!(
            (line.total, line.vat, line.city_tax, line.net),
            (m("5600"), m("500"), m("100"), m("5000"))
        );
    }

    #[test]
    fn posapi_example_with_one_percent_city_tax() {
        let line = line_amounts(q("1"), m("5550"), r("10"), r("1")).unwrap();
        assert_eq!(
            (line.vat, line.city_tax, line.net),
            (m("500"), m("50"), m("5000"))
        );
    }

    #[test]
    fn vat_only_and_vat_free() {
        let line = line_amounts(q("1"), m("1100"), r("10"), Rate::ZERO).unwrap();
        assert_eq!(
            (line.vat, line.city_tax, line.net),
            (m("100"), Money::ZERO, m("1000"))
        );
        let line = line_amounts(q("2"), m("5000"), Rate::ZERO, Rate::ZERO).unwrap();
        assert_eq!(
            (line.total, line.vat, line.net),
            (m("10000"), Money::ZERO, m("10000"))
        );
    }

    #[test]
    fn parts_always_add_up_to_the_total() {
        for cents in [1, 2, 3, 7, 99, 101, 12345, 99999] {
            for qty in ["1", "0.333", "2.5", "7"] {
                let line = line_amounts(q(qty), Money::from_minor(cents), r("10"), r("2")).unwrap();
                assert_eq!(
                    Money::sum(&[line.net, line.vat, line.city_tax]),
                    Ok(line.total)
                );
            }
        }
    }

    #[test]
    fn rounds_per_item_half_away_from_zero() {
        // 0.05 × 10/110 = 0.004545… → 0.00; 0.06 → 0.005454… → 0.01
        assert_eq!(
            contained_taxes(m("0.05"), r("10"), Rate::ZERO).unwrap().0,
            Money::ZERO
        );
        assert_eq!(
            contained_taxes(m("0.06"), r("10"), Rate::ZERO).unwrap().0,
            m("0.01")
        );
        assert_eq!(contained_taxes(m("1"), r("-1"), Rate::ZERO), None);
    }
}
