//! Exact decimals for money, quantities and rates, parsed strictly from strings.
//!
//! Money is held in minor units (cents), quantities in thousandths and rates in hundredths of a
//! percent, all as integers: no floating point anywhere on the money path. Parsing accepts only
//! plain decimal notation (`"12.50"`, `"-3"`, `"0.125"`): no exponent, no `NaN`, no thousands
//! separators, no leading `+`, and no more fraction digits than the kind allows. Every sum and
//! product is checked: an overflow is a value, never a panic or a wrapped number.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// A sum or product too large for the type: the amounts of one receipt never come near.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the amount is too large")]
pub struct Overflow;

/// 10^15 scaled units: a trillion in the currency, far beyond any receipt.
const MAX_SCALED: i64 = 1_000_000_000_000_000;

/// Parses `text` as a decimal with at most `scale` fraction digits, scaled by `10^scale`.
fn parse_scaled(text: &str, scale: usize) -> Result<i64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let malformed = || DecimalError::Malformed(text.to_owned());
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac) = match digits.split_once('.') {
        Some((_, "")) => return Err(malformed()),
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac) {
        return Err(malformed());
    }
    if frac.len() > scale {
        return Err(DecimalError::TooPrecise {
            value: text.to_owned(),
            max: u32::try_from(scale).unwrap_or(u32::MAX),
        });
    }
    let overflow = || DecimalError::Overflow(text.to_owned());
    let padding = std::iter::repeat_n(b'0', scale.saturating_sub(frac.len()));
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(frac.bytes()).chain(padding) {
        let digit = i64::from(b.saturating_sub(b'0'));
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit))
            .filter(|v| *v <= MAX_SCALED)
            .ok_or_else(overflow)?;
    }
    // Values are bounded far below i64::MAX, so negation cannot overflow.
    Ok(if negative {
        value.saturating_neg()
    } else {
        value
    })
}

/// Parses a JSON number (RFC 8259: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) exactly,
/// scaled by `10^scale`; refused when it has a non-zero digit beyond `scale` fraction digits.
fn json_number_scaled(text: &str, scale: u32) -> Result<i64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let malformed = || DecimalError::Malformed(text.to_owned());
    let overflow = || DecimalError::Overflow(text.to_owned());
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at.saturating_add(1)..])),
        None => (rest, None),
    };
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = int_part.len() > 1 && int_part.starts_with('0');
    if !all_digits(int_part) || leading_zero || (mantissa.contains('.') && !all_digits(frac)) {
        return Err(malformed());
    }
    // The exponent, bounded: anything beyond ±10^6 is either zero or far too large.
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (sign, digits) = match e.as_bytes().first() {
                Some(b'-') => (-1i64, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if !all_digits(digits) {
                return Err(malformed());
            }
            let trimmed = digits.trim_start_matches('0');
            if trimmed.len() > 6 {
                if int_part.bytes().chain(frac.bytes()).all(|b| b == b'0') {
                    return Ok(0);
                }
                return Err(if sign < 0 {
                    DecimalError::TooPrecise {
                        value: text.to_owned(),
                        max: scale,
                    }
                } else {
                    overflow()
                });
            }
            let magnitude: i64 = if trimmed.is_empty() {
                0
            } else {
                trimmed.parse().map_err(|_| malformed())?
            };
            sign.checked_mul(magnitude).ok_or_else(malformed)?
        }
    };
    // value = digits × 10^shift, in units of 10^-scale.
    let frac_len = i64::try_from(frac.len()).map_err(|_| malformed())?;
    let shift = exponent
        .checked_sub(frac_len)
        .and_then(|s| s.checked_add(i64::from(scale)))
        .ok_or_else(overflow)?;
    let digits = int_part.bytes().chain(frac.bytes());
    let kept: Vec<u8> = if shift >= 0 {
        digits.collect()
    } else {
        let all: Vec<u8> = digits.collect();
        let drop = usize::try_from(shift.unsigned_abs()).map_err(|_| overflow())?;
        let keep = all.len().saturating_sub(drop);
        if all[keep..].iter().any(|&b| b != b'0') {
            return Err(DecimalError::TooPrecise {
                value: text.to_owned(),
                max: scale,
            });
        }
        all[..keep].to_vec()
    };
    let zeros = usize::try_from(shift.max(0)).map_err(|_| overflow())?;
    let mut value: i64 = 0;
    for b in kept
        .into_iter()
        .chain(std::iter::repeat_n(b'0', zeros.min(64)))
    {
        let digit = i64::from(b.saturating_sub(b'0'));
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit))
            .filter(|v| *v <= MAX_SCALED)
            .ok_or_else(overflow)?;
    }
    Ok(if negative {
        value.saturating_neg()
    } else {
        value
    })
}

fn write_scaled(f: &mut fmt::Formatter<'_>, value: i64, scale: u32) -> fmt::Result {
    let divisor = 10u64.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    write!(
        f,
        "{sign}{}.{:0width$}",
        abs.checked_div(divisor).unwrap_or(0),
        abs.checked_rem(divisor).unwrap_or(0),
        width = scale as usize
    )
}

/// `numerator / denominator`, rounded half away from zero (the commercial rounding tax
/// authorities use). `None` when `denominator` is not positive or the result overflows.
pub fn div_round_half_away(numerator: i128, denominator: i128) -> Option<i128> {
    if denominator <= 0 {
        return None;
    }
    let quotient = numerator.checked_div(denominator)?;
    let remainder = numerator.checked_rem(denominator)?;
    if remainder.checked_abs()?.checked_mul(2)? >= denominator {
        quotient.checked_add(numerator.signum())
    } else {
        Some(quotient)
    }
}

macro_rules! scaled_serde {
    ($type:ty) => {
        impl Serialize for $type {
            /// As the canonical decimal string, with every fraction digit of the kind.
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                <$type>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An amount of money in minor units (two fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);
    pub const SCALE: u32 = 2;

    /// `"12.50"` → 1250 minor units; at most two fraction digits.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE as usize).map(Self)
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

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn checked_neg(self) -> Option<Money> {
        self.0.checked_neg().map(Money)
    }

    /// `quantity × self`, rounded half away from zero to minor units.
    pub fn times(self, quantity: Quantity) -> Option<Money> {
        let exact = i128::from(self.0).checked_mul(i128::from(quantity.0))?;
        let rounded = div_round_half_away(exact, i128::from(Quantity::ONE.0))?;
        i64::try_from(rounded).ok().map(Money)
    }

    /// A JSON number as an upstream writes it (`234.5`, `0.1`, `1E+2`, `70508.85`), read from
    /// its text exactly: an exponent is applied by moving the decimal point, never through
    /// floating point, and a value with a non-zero digit below the cent is refused rather than
    /// rounded.
    pub fn from_json_number(text: &str) -> Result<Self, DecimalError> {
        json_number_scaled(text, Self::SCALE).map(Self)
    }

    /// The exact sum of `amounts`; `Err` when it does not fit.
    pub fn sum<'a>(amounts: impl IntoIterator<Item = &'a Money>) -> Result<Money, Overflow> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |sum, m| sum.checked_add(*m))
            .ok_or(Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

scaled_serde!(Money);

/// A quantity in thousandths (three fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(i64);

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);
    pub const ONE: Quantity = Quantity(1000);
    pub const SCALE: u32 = 3;

    /// `"0.125"` → 125 thousandths; at most three fraction digits.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE as usize).map(Self)
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

    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_sub(other.0).map(Quantity)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

scaled_serde!(Quantity);

/// A percentage in hundredths of a percent (`"10.00"` → 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(i64);

impl Rate {
    pub const ZERO: Rate = Rate(0);
    pub const SCALE: u32 = 2;
    /// 100 %.
    pub const FULL: Rate = Rate(10_000);

    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, Self::SCALE as usize).map(Self)
    }

    pub const fn from_hundredths(value: i64) -> Self {
        Self(value)
    }

    pub const fn hundredths(self) -> i64 {
        self.0
    }

    /// Between 0 % and 100 %, as a tax rate must be.
    pub fn is_percentage(self) -> bool {
        (0..=Self::FULL.0).contains(&self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, Self::SCALE)
    }
}

scaled_serde!(Rate);

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
            "-", "-.5",
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
        assert!(Money::parse("10000000000000.01").is_err());
    }

    #[test]
    fn displays_with_fixed_fraction_digits() {
        assert_eq!(Money::from_minor(5).to_string(), "0.05");
        assert_eq!(Money::from_minor(-1250).to_string(), "-12.50");
        assert_eq!(
            Money::from_minor(i64::MIN).to_string(),
            "-92233720368547758.08"
        );
        assert_eq!(Quantity::from_thousandths(1500).to_string(), "1.500");
        assert_eq!(Rate::from_hundredths(200).to_string(), "2.00");
    }

    #[test]
    fn serializes_as_the_canonical_string_and_parses_strictly() {
        let price = Money::parse("5600").unwrap();
        assert_eq!(serde_json::to_string(&price).unwrap(), "\"5600.00\"");
        assert_eq!(serde_json::from_str::<Money>("\"5600.00\"").unwrap(), price);
        assert!(serde_json::from_str::<Money>("\"5600.001\"").is_err());
        assert!(serde_json::from_str::<Money>("5600").is_err());
        assert!(serde_json::from_str::<Quantity>("\"x\"").is_err());
    }

    #[test]
    fn reads_json_numbers_exactly_and_refuses_what_is_below_the_cent() {
        let read = |t: &str| Money::from_json_number(t).map(|m| m.to_string());
        assert_eq!(read("234.5").unwrap(), "234.50");
        assert_eq!(read("0.1").unwrap(), "0.10");
        assert_eq!(read("70508.85").unwrap(), "70508.85");
        assert_eq!(read("1E+2").unwrap(), "100.00");
        assert_eq!(read("1e2").unwrap(), "100.00");
        assert_eq!(read("1250e-2").unwrap(), "12.50");
        assert_eq!(read("1.230e1").unwrap(), "12.30");
        assert_eq!(read("-0.01").unwrap(), "-0.01");
        assert_eq!(read("0").unwrap(), "0.00");
        assert_eq!(read("12.5000000").unwrap(), "12.50");
        assert_eq!(read("0e99999999999").unwrap(), "0.00");
        for below_the_cent in [
            "0.001",
            "1.005",
            "1e-3",
            "0.1000000000000000055511151231257827",
        ] {
            assert!(
                matches!(
                    Money::from_json_number(below_the_cent),
                    Err(DecimalError::TooPrecise { .. })
                ),
                "{below_the_cent}"
            );
        }
        for malformed in [
            "", "01", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "1,5", "0x1", " 1", "--1",
        ] {
            assert!(Money::from_json_number(malformed).is_err(), "{malformed:?}");
        }
        assert!(matches!(
            Money::from_json_number("1e30"),
            Err(DecimalError::Overflow(_))
        ));
        assert!(matches!(
            Money::from_json_number("1e9999999"),
            Err(DecimalError::Overflow(_))
        ));
    }

    #[test]
    fn sums_are_checked() {
        let big = Money::from_minor(i64::MAX);
        assert_eq!(Money::sum(&[big, Money::from_minor(1)]), Err(Overflow));
        assert_eq!(
            Money::sum(&[Money::from_minor(1), Money::from_minor(2)]),
            Ok(Money::from_minor(3))
        );
    }

    #[test]
    fn multiplies_with_half_away_from_zero_rounding() {
        let price = Money::parse("0.99").unwrap();
        let times = |q: &str| {
            price
                .times(Quantity::parse(q).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(times("0.5"), "0.50");
        assert_eq!(times("3"), "2.97");
        let price = Money::parse("0.05").unwrap();
        assert_eq!(
            price.times(Quantity::parse("0.1").unwrap()).unwrap(),
            Money::from_minor(1)
        );
        assert_eq!(div_round_half_away(-5, 10), Some(-1));
        assert_eq!(div_round_half_away(-4, 10), Some(0));
        assert_eq!(div_round_half_away(1, 0), None);
        assert_eq!(
            Money::from_minor(i64::MAX).times(Quantity::from_thousandths(2000)),
            None
        );
    }
}
