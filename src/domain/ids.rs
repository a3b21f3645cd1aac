//! Identifier newtypes and money.
//!
//! Every id that crosses the API is its own type so that a seat id can never be passed
//! where a date id is expected. Money is [`Won`]: an unsigned integer number of won
//! with checked arithmetic only; there is no way to build a negative or overflowing
//! amount.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;

/// A map keyed by ids the server itself hands out (random reservation ids, user ids
/// from tokens it signed), hashed with a fast non-keyed hash: no caller chooses the
/// keys that get stored, so the keyed default buys nothing and made replaying a hold
/// about a sixth slower.
pub type IdMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A set of ids the server itself hands out, hashed as [`IdMap`] is.
pub type IdSet<K> = HashSet<K, rustc_hash::FxBuildHasher>;

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

integer_id!(
    /// A user, as named by the `sub` claim of their token.
    UserId(u64)
);
integer_id!(
    /// A concert; positive, assigned by the catalog in creation order.
    ConcertId(u64)
);
integer_id!(
    /// A concert date; positive and unique across all concerts.
    DateId(u64)
);
integer_id!(
    /// A seat within one date: 1..=N in section, row, number order.
    SeatId(u32)
);
uuid_id!(
    /// A reservation (a hold on seats, later paid, cancelled or expired).
    ReservationId
);
uuid_id!(
    /// A payment of a reservation.
    PaymentId
);
uuid_id!(
    /// A wallet charge.
    ChargeId
);
uuid_id!(
    /// A refund of a paid reservation.
    RefundId
);
uuid_id!(
    /// A ticket: one paid seat of one reservation, derived from both
    /// ([`crate::domain::ticket::ticket_id`]), so it needs no state of its own.
    TicketId
);
uuid_id!(
    /// A waiting-room entry.
    Ticket
);

/// An amount of money in won. Never negative; arithmetic is checked.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Won(pub u64);

impl Won {
    /// Zero won.
    pub const ZERO: Won = Won(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Won) -> Option<Won> {
        self.0.checked_add(other.0).map(Won)
    }

    /// `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Won) -> Option<Won> {
        self.0.checked_sub(other.0).map(Won)
    }
}

impl fmt::Display for Won {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} won", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_arithmetic_refuses_to_overflow_or_go_negative() {
        assert_eq!(Won(u64::MAX).checked_add(Won(1)), None);
        assert_eq!(Won(1).checked_sub(Won(2)), None);
        assert_eq!(Won(5).checked_add(Won(7)), Some(Won(12)));
        assert_eq!(Won(7).checked_sub(Won(5)), Some(Won(2)));
    }
}
