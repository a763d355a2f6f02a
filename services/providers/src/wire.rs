//! Exact decimals as JSON numbers, the way the upstreams write amounts and quantities.
//!
//! Both types read a JSON number from its own text (serde_json's `RawValue`), never through a
//! float, and refuse a string or a value with more fraction digits than the kind holds; both
//! write the decimal's exact text as a number token (`5600.00`, `1.000`), so no float artefact
//! (`254.54545454`) can reach the wire. They only work with serde_json itself (not through
//! `serde_json::Value`, `untagged` or `flatten`, which buffer the number as a float).

use fiscus_domain::{Money, Quantity};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money as a JSON number: read from its text exactly (never through a float) and
/// refused when it has a digit below the cent; written as the number's exact decimal text (`12.50`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WireMoney(pub Money);

/// A quantity as a JSON number: read from its text exactly and refused when it has a digit
/// below the thousandth; written as its exact decimal text (`1.000`, `0.125`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WireQuantity(pub Quantity);

/// The text of a JSON number token, refusing a string in its place.
fn number_text<'de, D: Deserializer<'de>>(deserializer: D, what: &str) -> Result<String, D::Error> {
    // The number's own text: serde_json hands it over unparsed.
    let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
    let text = raw.get().trim();
    if text.starts_with('"') {
        return Err(serde::de::Error::custom(format!(
            "{what} must be a JSON number, not the string {text}"
        )));
    }
    Ok(text.to_owned())
}

fn write_number<S: Serializer>(text: String, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

impl<'de> Deserialize<'de> for WireMoney {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = number_text(deserializer, "an amount")?;
        Money::from_json_number(&text)
            .map(WireMoney)
            .map_err(|e| serde::de::Error::custom(format!("amount {e}")))
    }
}

impl Serialize for WireMoney {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_number(self.0.to_string(), serializer)
    }
}

impl WireQuantity {
    /// A JSON number's text as thousandths, exactly: the number moved one decimal place up is
    /// read as hundredths by [`Money::from_json_number`] (three fraction digits become two).
    pub fn from_json_number(text: &str) -> Result<Self, fiscus_domain::DecimalError> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], Some(&text[at.saturating_add(1)..])),
            None => (text, None),
        };
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => e
                .trim_start_matches('+')
                .parse()
                .map_err(|_| fiscus_domain::DecimalError::Malformed(text.to_owned()))?,
        };
        let shifted = format!("{mantissa}e{}", exponent.saturating_add(1));
        Money::from_json_number(&shifted)
            .map(|tenfold| WireQuantity(Quantity::from_thousandths(tenfold.minor())))
            .map_err(|e| match e {
                // Name the quantity as it was written, not the shifted text.
                fiscus_domain::DecimalError::TooPrecise { .. } => {
                    fiscus_domain::DecimalError::TooPrecise {
                        value: text.to_owned(),
                        max: Quantity::SCALE,
                    }
                }
                fiscus_domain::DecimalError::Overflow(_) => {
                    fiscus_domain::DecimalError::Overflow(text.to_owned())
                }
                _ => fiscus_domain::DecimalError::Malformed(text.to_owned()),
            })
    }
}

impl<'de> Deserialize<'de> for WireQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = number_text(deserializer, "a quantity")?;
        WireQuantity::from_json_number(&text)
            .map_err(|e| serde::de::Error::custom(format!("quantity {e}")))
    }
}

impl Serialize for WireQuantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_number(self.0.to_string(), serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Line {
        qty: WireQuantity,
        amount: WireMoney,
    }

    fn read(text: &str) -> Result<Line, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn numbers_are_read_exactly_and_written_as_their_decimal_text() {
        let line = read(r#"{"qty": 0.125, "amount": 5600}"#).unwrap();
        assert_eq!(line.qty.0, Quantity::from_thousandths(125));
        assert_eq!(line.amount.0, Money::from_minor(560_000));
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"qty":0.125,"amount":5600.00}"#
        );
        assert_eq!(
            read(r#"{"qty": 2.5E+1, "amount": 1e2}"#).unwrap().qty.0,
            Quantity::from_thousandths(25_000)
        );
        assert_eq!(
            read(r#"{"qty": 1.2500, "amount": 1}"#).unwrap().qty.0,
            Quantity::from_thousandths(1250)
        );
    }

    #[test]
    fn strings_and_excess_precision_are_refused() {
        for bad in [
            r#"{"qty": "1", "amount": 1}"#,
            r#"{"qty": 1, "amount": "1100"}"#,
            r#"{"qty": 0.0001, "amount": 1}"#,
            r#"{"qty": 1, "amount": 254.54545454}"#,
        ] {
            assert!(read(bad).is_err(), "{bad} must be refused");
        }
    }
}
