//! How timestamps are stored: RFC 3339 text for people (JSON), two integers for the
//! log and snapshots (bincode), where parsing text cost two thirds of replaying an
//! event. Both are exact: seconds since 1970 (`i64`) and nanoseconds (`u32`) cover
//! every instant a [`Timestamp`] can hold.

use super::{ReservationId, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn split(at: &Timestamp) -> (i64, u32) {
    (at.timestamp(), at.timestamp_subsec_nanos())
}

fn join<E: serde::de::Error>((secs, nanos): (i64, u32)) -> Result<Timestamp, E> {
    Timestamp::from_timestamp(secs, nanos).ok_or_else(|| E::custom("timestamp out of range"))
}

/// `#[serde(with = "compact")]` for a [`Timestamp`].
pub mod compact {
    use super::*;

    /// Text for people, two integers otherwise.
    pub fn serialize<S: Serializer>(at: &Timestamp, to: S) -> Result<S::Ok, S::Error> {
        if to.is_human_readable() {
            at.serialize(to)
        } else {
            split(at).serialize(to)
        }
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Timestamp, D::Error> {
        if from.is_human_readable() {
            Timestamp::deserialize(from)
        } else {
            join(<(i64, u32)>::deserialize(from)?)
        }
    }
}

/// `#[serde(with = "compact_option")]` for an `Option<Timestamp>`.
pub mod compact_option {
    use super::*;

    /// Text for people, two integers otherwise.
    pub fn serialize<S: Serializer>(at: &Option<Timestamp>, to: S) -> Result<S::Ok, S::Error> {
        if to.is_human_readable() {
            at.serialize(to)
        } else {
            at.as_ref().map(split).serialize(to)
        }
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Option<Timestamp>, D::Error> {
        if from.is_human_readable() {
            Option::<Timestamp>::deserialize(from)
        } else {
            Option::<(i64, u32)>::deserialize(from)?
                .map(join)
                .transpose()
        }
    }
}

/// `#[serde(with = "compact_holds")]` for a list of holds and their deadlines.
pub mod compact_holds {
    use super::*;

    /// Text for people, two integers otherwise.
    pub fn serialize<S: Serializer>(
        holds: &[(ReservationId, Timestamp)],
        to: S,
    ) -> Result<S::Ok, S::Error> {
        if to.is_human_readable() {
            holds.serialize(to)
        } else {
            let compact: Vec<(ReservationId, (i64, u32))> =
                holds.iter().map(|(id, at)| (*id, split(at))).collect();
            compact.serialize(to)
        }
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(
        from: D,
    ) -> Result<Vec<(ReservationId, Timestamp)>, D::Error> {
        if from.is_human_readable() {
            Vec::deserialize(from)
        } else {
            let compact = Vec::<(ReservationId, (i64, u32))>::deserialize(from)?;
            compact
                .into_iter()
                .map(|(id, at)| Ok((id, join(at)?)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "compact")]
        at: Timestamp,
        #[serde(with = "compact_option")]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn timestamps_round_trip_exactly_as_text_and_as_integers() {
        let at = Timestamp::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        for sample in [
            Sample {
                at,
                maybe: Some(at),
            },
            Sample {
                at: Timestamp::MAX_UTC,
                maybe: None,
            },
        ] {
            let json = serde_json::to_string(&sample).unwrap();
            assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), sample);
            let bytes =
                bincode::serde::encode_to_vec(&sample, bincode::config::standard()).unwrap();
            let (back, _) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(sample, back);
        }
        let json = serde_json::to_string(&Sample { at, maybe: None }).unwrap();
        assert!(json.contains("2027-01-15T08:00:00.123456789Z"), "{json}");
    }
}
