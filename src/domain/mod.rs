//! The pure core: identifiers, money, and one state machine per owner.
//!
//! Nothing in here touches a clock, a channel, randomness or I/O. Every owner's state
//! is a plain struct with `apply(command, now) -> Result<event, Rejection>` (validate,
//! then change state through `replay`) and `replay(&event)` (the one place state
//! changes, used both live and when recovering). The engine passes `now` and fresh
//! ids in; tests drive the structs directly.
//!
//! - [`ids`]: newtypes for every identifier, and [`ids::Won`], money in integer won.
//! - [`integer`]: integers in JSON as JSON Schema counts them (`5000.0` is one).
//! - [`catalog`]: concert specs, their validation and the seat layout of a date.
//! - [`date`]: the seats and reservations of one concert date (holds, expiry, payment,
//!   refunds, check-in at the door, pausing and cancelling sales).
//! - [`ticket`]: ticket ids and the signed codes scanners check.
//! - [`sales`]: the operator's figures of a date, and pages of its reservations.
//! - [`queue`]: one concert's waiting room (FIFO, exact positions, active cap).
//! - [`wallet`]: a shard of wallets (balances, ledgers, idempotency keys).
//! - [`rejection`]: the business outcomes a caller can be told "no" with.
//! - [`rules`]: every configured limit in one value.
//! - [`public`]: the public events, a versioned contract separate from [`Event`], and
//!   the mapping from logged records to them.
//! - [`image`]: every owner's state in one value, and [`Image::apply`], which routes a
//!   logged event to its owners' `replay`: what snapshots hold and recovery rebuilds.

pub mod catalog;
pub mod date;
pub mod ids;
pub mod image;
pub mod integer;
pub mod public;
pub mod queue;
pub mod rejection;
pub mod rules;
pub mod sales;
pub mod ticket;
pub mod time;
pub mod wallet;

mod fenwick;

pub use ids::{
    ChargeId, ConcertId, DateId, IdMap, IdSet, PaymentId, RefundId, ReservationId, SeatId, Ticket,
    TicketId, UserId, Won,
};
pub use image::Image;
pub use rejection::Rejection;
pub use rules::Rules;

/// A moment in time, always UTC. The engine's clock provides it; the core only compares.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Every change to durable state, as it is logged and replayed.
///
/// Each variant names its owner; [`Event::Paid`] and [`Event::Refunded`] are the events
/// that span owners (the date's seats and the payer's wallet, and for a payment the
/// payer's queue entry), so that there is never a durable state in which money moved
/// and seats did not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// The catalog's events (concert creation).
    Catalog(catalog::CatalogEvent),
    /// One date's events (holds, cancels, expiries).
    Date(DateId, date::DateEvent),
    /// One concert waiting room's events.
    Queue(ConcertId, queue::QueueEvent),
    /// One wallet's events (charges).
    Wallet(wallet::WalletEvent),
    /// A reservation paid from a wallet: debit, seats sold, queue entry completed.
    Paid(date::Payment),
    /// A paid reservation refunded: credit, seats available again, tickets void.
    Refunded(date::Refund),
}
