//! Integers in JSON, as JSON Schema counts them: `5000`, `5000.0` and `5e3` are the
//! same integer, `12.5` is none. Request fields typed as integers deserialize through
//! [`deserialize`] (one value) or [`vec()`] (a list), so that every number the OpenAPI
//! document calls an integer is taken.
//!
//! Only human-readable formats (JSON) get this leniency; binary formats (the log and
//! snapshots) read the plain integer, so their encoding is unchanged. A number with a
//! fraction or exponent is taken only while it is exact in a float: up to 2^53.

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use std::fmt;

/// Largest integer a float holds exactly; larger floats may have been rounded.
const EXACT_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// A type made from an integer of the API.
pub trait FromInteger: Sized {
    /// The value, or `None` when `n` is out of its range.
    fn from_integer(n: i128) -> Option<Self>;
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl FromInteger for $t {
            fn from_integer(n: i128) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
        }
    )*};
}
from_integer!(u32, u64, i64, usize);

impl FromInteger for super::SeatId {
    fn from_integer(n: i128) -> Option<Self> {
        u32::from_integer(n).map(super::SeatId)
    }
}

impl FromInteger for super::DateId {
    fn from_integer(n: i128) -> Option<Self> {
        u64::from_integer(n).map(super::DateId)
    }
}

/// Deserializes one integer (see the module docs).
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromInteger + Deserialize<'de>,
{
    if !deserializer.is_human_readable() {
        return T::deserialize(deserializer);
    }
    let n = deserializer.deserialize_any(IntegerVisitor)?;
    T::from_integer(n).ok_or_else(|| {
        de::Error::invalid_value(Unexpected::Other(&n.to_string()), &"an integer in range")
    })
}

/// Deserializes a list of integers (see the module docs).
pub fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromInteger + Deserialize<'de>,
{
    struct Item<T>(T);
    impl<'de, T: FromInteger + Deserialize<'de>> Deserialize<'de> for Item<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Item)
        }
    }
    let items = Vec::<Item<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Item(t)| t).collect())
}

/// The integer of a JSON number, whichever way it is written.
pub fn of_number(number: &serde_json::Number) -> Option<i128> {
    if let Some(n) = number.as_u64() {
        return Some(i128::from(n));
    }
    if let Some(n) = number.as_i64() {
        return Some(i128::from(n));
    }
    number.as_f64().and_then(exact)
}

fn exact(x: f64) -> Option<i128> {
    // The range check first: beyond it the cast below would saturate.
    if x.fract() == 0.0 && x.abs() <= EXACT_FLOAT_MAX {
        Some(x as i128)
    } else {
        None
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i128, E> {
        Ok(i128::from(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i128, E> {
        Ok(i128::from(n))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<i128, E> {
        exact(x).ok_or_else(|| E::invalid_value(Unexpected::Float(x), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "deserialize")]
        one: u32,
        #[serde(deserialize_with = "vec")]
        many: Vec<super::super::SeatId>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn an_integer_may_be_written_with_a_zero_fraction_or_an_exponent() {
        let body = parse(r#"{"one": 5e3, "many": [1, 2.0, 3e0]}"#).unwrap();
        assert_eq!(body.one, 5000);
        let many: Vec<u32> = body.many.iter().map(|s| s.0).collect();
        assert_eq!(many, [1, 2, 3]);
    }

    #[test]
    fn fractions_strings_and_out_of_range_numbers_are_not_integers() {
        for json in [
            r#"{"one": 1.5, "many": []}"#,
            r#"{"one": "1", "many": []}"#,
            r#"{"one": -1, "many": []}"#,
            r#"{"one": 4294967296, "many": []}"#,
            r#"{"one": 1e30, "many": []}"#,
            r#"{"one": 1, "many": [0.5]}"#,
            r#"{"one": null, "many": []}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_binary_format_reads_the_plain_integer() {
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(7u32, config).unwrap();
        #[derive(serde::Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "deserialize")] u32);
        let (Wrapped(n), _) =
            bincode::serde::decode_from_slice::<Wrapped, _>(&bytes, config).unwrap();
        assert_eq!(n, 7);
    }

    #[test]
    fn a_json_number_is_an_integer_when_it_has_no_fraction() {
        let number = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        assert_eq!(of_number(&number("5000.0")), Some(5000));
        assert_eq!(of_number(&number("-3")), Some(-3));
        assert_eq!(of_number(&number("12.5")), None);
        assert_eq!(of_number(&number("1e300")), None);
    }
}
