//! Exact decimals for money, quantities and rates, parsed strictly from strings.
//!
//! Money is held in minor units (cents), quantities in thousandths and rates in hundredths of a
//! percent, all as integers: no floating point anywhere on the money path. Parsing accepts only
//! plain decimal notation (`"12.50"`, `"-3"`, `"0.125"`): no exponent, no `NaN`, no thousands
//! separators, no leading `+`, and no more fraction digits than the kind allows.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} is not a plain decimal number (digits, one optional '.', optional leading '-')")]
    Malformed(String),
    #[error("{value:?} has more than {max} fraction digits")]
    TooPrecise { value: String, max: u32 },
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses `text` as a decimal with at most `scale` fraction digits, scaled by `10^scale`.
fn parse_scaled(text: &str, scale: u32) -> Result<i64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let malformed = || DecimalError::Malformed(text.to_owned());
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let frac = match frac_part {
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(malformed());
        }
        Some(f) => f,
        None => "",
    };
    if frac.len() > scale as usize {
        return Err(DecimalError::TooPrecise {
            value: text.to_owned(),
            max: scale,
        });
    }
    let overflow = || DecimalError::Overflow(text.to_owned());
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(frac.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    for _ in frac.len()..scale as usize {
        value = value.checked_mul(10).ok_or_else(overflow)?;
    }
    // Keep amounts far below i64::MAX so that sums and products of a receipt cannot overflow.
    if value > MAX_SCALED {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

/// 10^15 scaled units: a trillion in the currency, far beyond any receipt.
const MAX_SCALED: i64 = 1_000_000_000_000_000;

fn write_scaled(f: &mut fmt::Formatter<'_>, value: i64, scale: u32) -> fmt::Result {
    let divisor = 10i64.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let divisor = divisor.unsigned_abs();
    write!(
        f,
        "{sign}{}.{:0width$}",
        abs / divisor,
        abs % divisor,
        width = scale as usize
    )
}

/// Divides with rounding half away from zero (the commercial rounding tax authorities use).
pub fn div_round_half_away(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder.abs() * 2 >= denominator {
        quotient + numerator.signum()
    } else {
        quotient
    }
}

/// An amount of money in minor units (two fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);
    pub const SCALE: u32 = 2;

    /// `"12.50"` → 1250 minor units; at most two fraction digits.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE).map(Self)
    }

    pub const fn from_minor(minor: i64) -> Self {
        Self(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `quantity × self`, rounded half away from zero to minor units.
    pub fn times(self, quantity: Quantity) -> Option<Money> {
        let exact = i128::from(self.0) * i128::from(quantity.0);
        let rounded = div_round_half_away(exact, i128::from(Quantity::ONE.0));
        i64::try_from(rounded).ok().map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

/// A quantity in thousandths (three fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(i64);

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);
    pub const ONE: Quantity = Quantity(1000);
    pub const SCALE: u32 = 3;

    /// `"0.125"` → 125 thousandths; at most three fraction digits.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE).map(Self)
    }

    pub const fn from_thousandths(value: i64) -> Self {
        Self(value)
    }

    pub const fn thousandths(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_add(other.0).map(Quantity)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

/// A percentage in hundredths of a percent (`"10.00"` → 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(i64);

impl Rate {
    pub const ZERO: Rate = Rate(0);
    pub const SCALE: u32 = 2;

    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE).map(Self)
    }

    pub const fn from_hundredths(value: i64) -> Self {
        Self(value)
    }

    pub const fn hundredths(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_exactly() {
        assert_eq!(Money::parse("12.50").unwrap().minor(), 1250);
        assert_eq!(Money::parse("12.5").unwrap().minor(), 1250);
        assert_eq!(Money::parse("12").unwrap().minor(), 1200);
        assert_eq!(Money::parse("-0.01").unwrap().minor(), -1);
        assert_eq!(Money::parse("0").unwrap(), Money::ZERO);
        assert_eq!(Quantity::parse("0.125").unwrap().thousandths(), 125);
        assert_eq!(Rate::parse("10.00").unwrap().hundredths(), 1000);
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in [
            "", "1e3", "NaN", "inf", "1,000", "+1", "1.", ".5", "1.2.3", " 1", "0x10", "--1", "١٢",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn refuses_more_fraction_digits_than_the_kind_allows() {
        assert!(matches!(
            Money::parse("1.005"),
            Err(DecimalError::TooPrecise { max: 2, .. })
        ));
        assert!(matches!(
            Quantity::parse("1.0001"),
            Err(DecimalError::TooPrecise { max: 3, .. })
        ));
        assert!(Money::parse("1.23456").is_err());
    }

    #[test]
    fn refuses_absurd_magnitudes() {
        assert!(matches!(
            Money::parse("99999999999999999999"),
            Err(DecimalError::Overflow(_))
        ));
        assert!(Money::parse("10000000000000.00").is_ok());
    }

    #[test]
    fn displays_with_fixed_fraction_digits() {
        assert_eq!(Money::from_minor(5).to_string(), "0.05");
        assert_eq!(Money::from_minor(-1250).to_string(), "-12.50");
        assert_eq!(Quantity::from_thousandths(1500).to_string(), "1.500");
        assert_eq!(Rate::from_hundredths(200).to_string(), "2.00");
    }

    #[test]
    fn multiplies_with_half_away_from_zero_rounding() {
        let price = Money::parse("0.99").unwrap();
        assert_eq!(
            price
                .times(Quantity::parse("0.5").unwrap())
                .unwrap()
                .to_string(),
            "0.50"
        );
        assert_eq!(
            price
                .times(Quantity::parse("3").unwrap())
                .unwrap()
                .to_string(),
            "2.97"
        );
        let price = Money::parse("0.05").unwrap();
        assert_eq!(
            price
                .times(Quantity::parse("0.1").unwrap())
                .unwrap()
                .to_string(),
            "0.01"
        );
        assert_eq!(div_round_half_away(-5, 10), -1);
        assert_eq!(div_round_half_away(-4, 10), 0);
    }
}
