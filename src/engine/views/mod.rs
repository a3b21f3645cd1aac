//! Read views: what GETs (and the hold fast path) are served from, without waiting in
//! any actor's mailbox. Each view has one writer, its actor, which updates it before
//! it releases any reply that could tell a caller about the change; a view may show a
//! change one group commit before it is durable (a reader may see a hold whose
//! commit then fails; the write path stops after such a failure).
//!
//! - [`date::DateView`]: one date's seat statuses (lock-free) and counts (a brief
//!   mutex);
//! - [`reservations::ReservationIndex`]: every reservation by id and by user;
//! - [`queue::QueueView`]: who is active in one concert's waiting room.

pub mod date;
pub mod queue;
pub mod reservations;

pub use date::DateView;
pub use queue::QueueView;
pub use reservations::ReservationIndex;
