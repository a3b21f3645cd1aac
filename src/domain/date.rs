//! The seats and reservations of one concert date.
//!
//! Invariants, checked by the tests and the property tests:
//! - every seat is `Available`, `Held` by exactly one live (`HELD`) reservation, or
//!   `Sold` to exactly one `PAID` reservation; a reservation's seats all point back to it;
//! - the counts of available, held and sold seats match the seats;
//! - each user's held-or-owned seat count on this date never exceeds the limit;
//! - a `HELD` reservation is live strictly before its `expires_at`: from that instant on
//!   it can be neither paid nor cancelled, and its seats are no one's;
//! - a `REFUNDED` reservation holds no seat and counts toward no user's limit; it was
//!   `PAID` before, and it is refunded at most once;
//! - a seat is admitted at the door at most once, and only while its reservation is
//!   `PAID`;
//! - a cancelled date has no live hold (once the payments logged after its
//!   cancellation are replayed) and takes no new one; a paused date takes no
//!   new hold (payments of existing holds still go through).
//!
//! The date actor calls [`DateState::expire_due`] with the same `now` before it applies
//! any command, so commands only ever see live holds; the commands assert this.

use super::catalog::Layout;
use super::{
    ConcertId, DateId, IdMap, IdSet, PaymentId, RefundId, Rejection, ReservationId, SeatId,
    Timestamp, UserId, Won,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The limits a date enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRules {
    /// How long a hold lasts.
    pub hold_ttl: chrono::Duration,
    /// Most seats in one reservation.
    pub seats_per_reservation_max: usize,
    /// Most seats one user may hold or own on one date.
    pub seats_per_user_max: u32,
    /// A holder may refund a paid reservation until this long before the show starts.
    pub refund_closes_before: chrono::Duration,
}

/// The state of one seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seat {
    /// Free to hold.
    Available,
    /// Held by a live reservation.
    Held(ReservationId),
    /// Sold to a paid reservation.
    Sold(ReservationId),
}

/// A seat's status at an instant, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    /// Free to hold.
    Available,
    /// Held by a live reservation.
    Held,
    /// Sold.
    Sold,
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    /// Seats held until `expires_at`.
    Held,
    /// Paid; its seats are sold.
    Paid,
    /// The hold ran out before payment.
    Expired,
    /// Released by its holder, or by the cancellation of its date.
    Cancelled,
    /// Paid, then refunded: the money went back to the wallet, the seats are free
    /// again and its tickets are void.
    Refunded,
}

/// A seat admitted at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The seat.
    pub seat_id: SeatId,
    /// When its ticket was first scanned.
    #[serde(with = "crate::domain::time::compact")]
    pub at: Timestamp,
}

/// The seats of a reservation: a few, so they are kept inline.
pub type SeatList = SmallVec<[SeatId; 4]>;

/// A hold on seats and what became of it.
///
/// Every live hold is kept in memory, so what a hold has none of until it is paid (a
/// payment, a refund, admissions) is kept apart in [`AfterSale`], boxed: a hold takes
/// 128 bytes with its reference counts instead of 192. The log and snapshots still hold the
/// fields of a reservation one after the other, as before (see [`SavedReservation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Who holds it.
    pub user: UserId,
    /// The concert of its date.
    pub concert_id: ConcertId,
    /// The date of its seats.
    pub date_id: DateId,
    /// The seats, in the order asked for: up to four inline, in the reservation itself.
    /// (Logged as a list, as a `Vec` would be.)
    pub seats: SeatList,
    /// The sum of the seats' prices.
    pub amount: Won,
    /// Its recorded status; see [`Reservation::status_at`] for the status at an instant.
    pub status: ReservationStatus,
    /// When it was made.
    pub created_at: Timestamp,
    /// When the hold ends if not paid.
    pub expires_at: Timestamp,
    /// What happened after the sale, once something did (`None`: nothing yet; read it
    /// through [`Reservation::payment_id`], [`Reservation::refund_id`] and
    /// [`Reservation::admitted`]).
    pub after_sale: Option<Box<AfterSale>>,
}

/// What a reservation may gain once paid: set on few of all the reservations held, so
/// kept out of [`Reservation`] itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterSale {
    /// The payment that paid it.
    pub payment_id: Option<PaymentId>,
    /// The refund that gave its money back.
    pub refund_id: Option<RefundId>,
    /// Its seats admitted at the door, in admission order.
    pub admitted: Vec<Admission>,
}

/// A reservation as the log and snapshots hold it (and as JSON shows it): its fields
/// one after the other, the after-sale ones included, exactly as when they were all
/// fields of [`Reservation`]. [`LoadedReservation`] reads it back.
#[derive(Serialize)]
#[serde(rename = "Reservation")]
struct SavedReservation<'a> {
    id: ReservationId,
    user: UserId,
    concert_id: ConcertId,
    date_id: DateId,
    seats: &'a SeatList,
    amount: Won,
    status: ReservationStatus,
    #[serde(with = "crate::domain::time::compact")]
    created_at: Timestamp,
    #[serde(with = "crate::domain::time::compact")]
    expires_at: Timestamp,
    payment_id: Option<PaymentId>,
    refund_id: Option<RefundId>,
    admitted: &'a [Admission],
}

/// A reservation as [`SavedReservation`] writes it.
#[derive(Deserialize)]
#[serde(rename = "Reservation")]
struct LoadedReservation {
    id: ReservationId,
    user: UserId,
    concert_id: ConcertId,
    date_id: DateId,
    seats: SeatList,
    amount: Won,
    status: ReservationStatus,
    #[serde(with = "crate::domain::time::compact")]
    created_at: Timestamp,
    #[serde(with = "crate::domain::time::compact")]
    expires_at: Timestamp,
    payment_id: Option<PaymentId>,
    refund_id: Option<RefundId>,
    admitted: Vec<Admission>,
}

impl Serialize for Reservation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedReservation {
            id: self.id,
            user: self.user,
            concert_id: self.concert_id,
            date_id: self.date_id,
            seats: &self.seats,
            amount: self.amount,
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            payment_id: self.payment_id(),
            refund_id: self.refund_id(),
            admitted: self.admitted(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Reservation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let loaded = LoadedReservation::deserialize(deserializer)?;
        let after_sale = AfterSale {
            payment_id: loaded.payment_id,
            refund_id: loaded.refund_id,
            admitted: loaded.admitted,
        };
        Ok(Reservation {
            id: loaded.id,
            user: loaded.user,
            concert_id: loaded.concert_id,
            date_id: loaded.date_id,
            seats: loaded.seats,
            amount: loaded.amount,
            status: loaded.status,
            created_at: loaded.created_at,
            expires_at: loaded.expires_at,
            after_sale: (after_sale != AfterSale::default()).then(|| Box::new(after_sale)),
        })
    }
}

impl Reservation {
    /// The status at `now`: a `HELD` reservation is `EXPIRED` from `expires_at` on,
    /// whether or not the expiry has been recorded yet.
    pub fn status_at(&self, now: Timestamp) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if now >= self.expires_at => ReservationStatus::Expired,
            status => status,
        }
    }

    /// The payment that paid it.
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.after_sale.as_ref().and_then(|a| a.payment_id)
    }

    /// The refund that gave its money back.
    pub fn refund_id(&self) -> Option<RefundId> {
        self.after_sale.as_ref().and_then(|a| a.refund_id)
    }

    /// Its seats admitted at the door, in admission order.
    pub fn admitted(&self) -> &[Admission] {
        self.after_sale.as_ref().map_or(&[], |a| &a.admitted)
    }

    /// When the ticket for `seat` was admitted, if it was.
    pub fn admitted_at(&self, seat: SeatId) -> Option<Timestamp> {
        self.admitted()
            .iter()
            .find(|a| a.seat_id == seat)
            .map(|a| a.at)
    }

    /// What happened after the sale, made room for on first use.
    fn after_sale_mut(&mut self) -> &mut AfterSale {
        self.after_sale.get_or_insert_with(Box::default)
    }
}

/// A reservation paid from a wallet: the one event that moves money and sells seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment's id.
    pub id: PaymentId,
    /// The reservation it pays.
    pub reservation_id: ReservationId,
    /// The payer.
    pub user: UserId,
    /// The reservation's concert.
    pub concert_id: ConcertId,
    /// The reservation's date.
    pub date_id: DateId,
    /// What was debited.
    pub amount: Won,
    /// The wallet balance after the debit.
    pub balance_after: Won,
    /// When.
    #[serde(with = "crate::domain::time::compact")]
    pub paid_at: Timestamp,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
}

/// Why a reservation was refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundReason {
    /// Its holder asked, before the refund deadline.
    Requested,
    /// The operator cancelled the date.
    DateCancelled,
}

/// A paid reservation refunded to its payer's wallet: the one event that frees the
/// seats, voids the tickets and credits the money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The refund's id (its ledger entry's id).
    pub id: RefundId,
    /// The reservation it refunds.
    pub reservation_id: ReservationId,
    /// The payer, who gets the money back.
    pub user: UserId,
    /// The reservation's concert.
    pub concert_id: ConcertId,
    /// The reservation's date.
    pub date_id: DateId,
    /// What was credited: the whole amount paid.
    pub amount: Won,
    /// The wallet balance after the credit.
    pub balance_after: Won,
    /// Why.
    pub reason: RefundReason,
    /// When.
    #[serde(with = "crate::domain::time::compact")]
    pub at: Timestamp,
}

/// A request to refund a paid reservation, with the balance the payer's wallet vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCommand {
    /// Who is refunded; must be the holder.
    pub user: UserId,
    /// What is refunded.
    pub reservation_id: ReservationId,
    /// The id the refund gets.
    pub refund_id: RefundId,
    /// The payer's balance; the wallet cannot change while it waits for the answer.
    pub balance: Won,
    /// Why: a holder's request is bound by the deadline, a cancellation is not.
    pub reason: RefundReason,
}

/// What happened on a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DateEvent {
    /// Seats were held. The reservation is shared: the date's state, the reservation
    /// index, the snapshot replica and the log's tail hold this one copy until one of
    /// them changes it (copy on write), so a hold is neither copied per follower nor
    /// stored once each.
    SeatsHeld(Arc<Reservation>),
    /// A holder released a live hold.
    HoldCancelled {
        /// The reservation.
        reservation_id: ReservationId,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// Holds reached their deadline unpaid.
    HoldsExpired {
        /// The reservations, in deadline order.
        reservation_ids: Vec<ReservationId>,
        /// When the expiry was recorded (each ended at its own `expires_at`).
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// The operator paused sales: no new holds until resumed.
    SalesPaused {
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// The operator resumed sales.
    SalesResumed {
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// The operator cancelled the date: it sells nothing more and every live hold is
    /// released (`CANCELLED`). Paid reservations are refunded after it, one
    /// [`crate::domain::Event::Refunded`] each.
    DateCancelled {
        /// The live holds released, in no particular order.
        released: Vec<ReservationId>,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// A ticket was admitted at the door.
    TicketAdmitted {
        /// Its reservation.
        reservation_id: ReservationId,
        /// Its seat.
        seat_id: SeatId,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
}

/// Seat counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCounts {
    /// Free to hold.
    pub available: u32,
    /// Held by live reservations.
    pub held: u32,
    /// Sold.
    pub sold: u32,
}

/// A request to hold seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Who asks.
    pub user: UserId,
    /// Which seats; all or none are held.
    pub seats: Vec<SeatId>,
    /// The id the new reservation gets.
    pub reservation_id: ReservationId,
}

/// A request to pay a reservation, with the balance the payer's wallet vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pay {
    /// Who pays; must be the holder.
    pub user: UserId,
    /// What is paid.
    pub reservation_id: ReservationId,
    /// The id the payment gets.
    pub payment_id: PaymentId,
    /// The payer's balance; the wallet cannot change while it waits for the answer.
    pub balance: Won,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

/// Checks the shape of a hold request: not empty, at most `max` seats, no repeats, and
/// every seat on the date. The first check of a hold; the HTTP fast path shares it.
pub fn check_seat_list(layout: &Layout, seats: &[SeatId], max: usize) -> Result<(), Rejection> {
    if seats.is_empty() {
        return Err(Rejection::InvalidRequest(
            "seatIds must not be empty".into(),
        ));
    }
    if seats.len() > max {
        return Err(Rejection::InvalidRequest(format!(
            "at most {max} seats per reservation"
        )));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = seats.iter().find(|s| !seen.insert(**s)) {
        return Err(Rejection::InvalidRequest(format!(
            "seat {dup} is listed twice"
        )));
    }
    let unknown: Vec<SeatId> = seats
        .iter()
        .copied()
        .filter(|&s| layout.seat(s).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Rejection::SeatNotFound(unknown));
    }
    Ok(())
}

/// The seats and reservations of one concert date.
///
/// A free seat is stored nowhere: the state keeps one bit per seat (taken or not), and
/// which reservation takes a seat is in that reservation. A snapshot still lists every
/// seat with its state (see [`SavedDate`]), as it always has.
///
/// What only the commands look up (each user's seat count, the live holds by
/// deadline) is derived from the reservations: rebuilt on load, kept up to date by
/// replay, and not kept at all by the snapshot replica's copy ([`DateState::replica`]),
/// which only replays and saves.
#[derive(Debug, Clone)]
pub struct DateState {
    date_id: DateId,
    concert_id: ConcertId,
    starts_at: Timestamp,
    layout: Arc<Layout>,
    /// Configuration, not state: not saved, set again on load.
    rules: DateRules,
    taken: Taken,
    reservations: Reservations,
    /// Derived: rebuilt on load (see `set_rules`); `None` in the replica's copy.
    lookups: Option<Lookups>,
    counts: SeatCounts,
    paused: bool,
    cancelled_at: Option<Timestamp>,
}

/// The reservations of a date, by id. Each is kept once, as its shared copy, and found
/// by the id it holds: a map from id to reservation would keep every id twice (a
/// 24-byte slot instead of 8), in the date's state and in the replica's copy alike.
/// Snapshots list them as that map, as they always have.
#[derive(Debug, Clone, Default)]
struct Reservations(HashSet<ById, rustc_hash::FxBuildHasher>);

/// A reservation hashed and compared by its id alone, so that a set finds it by id
/// (the date's [`Reservations`], the engine's reservation index).
#[derive(Debug, Clone)]
pub(crate) struct ById(pub(crate) Arc<Reservation>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl std::borrow::Borrow<ReservationId> for ById {
    fn borrow(&self) -> &ReservationId {
        &self.0.id
    }
}

impl Reservations {
    fn get(&self, id: &ReservationId) -> Option<&Arc<Reservation>> {
        self.0.get(id).map(|r| &r.0)
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Reservation>> {
        self.0.iter().map(|r| &r.0)
    }

    /// Takes a reservation out to change it; [`Reservations::put`] puts it back.
    fn take(&mut self, id: &ReservationId) -> Option<Arc<Reservation>> {
        self.0.take(id).map(|r| r.0)
    }

    /// Adds a new reservation; answers false (and adds nothing) if its id is taken.
    fn add(&mut self, reservation: Arc<Reservation>) -> bool {
        self.0.insert(ById(reservation))
    }

    /// Adds a reservation, or puts one back after a change.
    fn put(&mut self, reservation: Arc<Reservation>) {
        self.0.replace(ById(reservation));
    }
}

/// Equal when they hold the same reservations, each equal in every field.
impl PartialEq for Reservations {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .values()
                .all(|r| other.get(&r.id).is_some_and(|o| o == r))
    }
}

/// As the map from id to reservation that snapshots have always held.
impl Serialize for Reservations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.values().map(|r| (r.id, r)))
    }
}

impl From<IdMap<ReservationId, Arc<Reservation>>> for Reservations {
    fn from(map: IdMap<ReservationId, Arc<Reservation>>) -> Self {
        Reservations(map.into_values().map(ById).collect())
    }
}

/// What a date's commands look up, derived from its reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lookups {
    /// Seats each user holds or owns: their held and paid reservations' seats.
    seats_by_user: IdMap<UserId, u32>,
    /// The live holds by deadline.
    deadlines: Deadlines,
}

impl Lookups {
    /// The lookups of `reservations`.
    fn of<'a>(reservations: impl Iterator<Item = &'a Arc<Reservation>>) -> Lookups {
        let mut lookups = Lookups::default();
        for r in reservations {
            if taking(r).is_some() {
                *lookups.seats_by_user.entry(r.user).or_default() += r.seats.len() as u32;
            }
            if r.status == ReservationStatus::Held {
                lookups.deadlines.insert(r.expires_at, r.id);
            }
        }
        lookups
    }

    /// Takes `n` seats off what `user` holds or owns.
    fn uncount(&mut self, user: UserId, n: u32) {
        let owned = self
            .seats_by_user
            .get_mut(&user)
            .expect("the holder is counted");
        *owned -= n;
        if *owned == 0 {
            self.seats_by_user.remove(&user);
        }
    }
}

/// A date as a snapshot saves it: every seat listed with its state (one byte for a free
/// one), in the layout snapshots have always had. Its fields, in this order, are those
/// of [`LoadedDate`].
#[derive(Serialize)]
struct SavedDate<'a> {
    date_id: DateId,
    concert_id: ConcertId,
    #[serde(with = "crate::domain::time::compact")]
    starts_at: Timestamp,
    layout: &'a Arc<Layout>,
    seats: SavedSeats<'a>,
    reservations: &'a Reservations,
    seats_by_user: SavedSeatsByUser<'a>,
    counts: SeatCounts,
    paused: bool,
    #[serde(with = "crate::domain::time::compact_option")]
    cancelled_at: Option<Timestamp>,
}

/// A date as a snapshot holds it (see [`SavedDate`]).
#[derive(Deserialize)]
struct LoadedDate {
    date_id: DateId,
    concert_id: ConcertId,
    #[serde(with = "crate::domain::time::compact")]
    starts_at: Timestamp,
    layout: Arc<Layout>,
    seats: Vec<Seat>,
    reservations: IdMap<ReservationId, Arc<Reservation>>,
    /// Read past: derived again from the reservations (see `set_rules`).
    #[allow(dead_code)]
    seats_by_user: IdMap<UserId, u32>,
    counts: SeatCounts,
    paused: bool,
    #[serde(with = "crate::domain::time::compact_option")]
    cancelled_at: Option<Timestamp>,
}

/// The seats each user holds or owns, as snapshots have always listed them (a map
/// from user to count), counted from the reservations as it is written, by user.
struct SavedSeatsByUser<'a>(&'a Reservations);

impl Serialize for SavedSeatsByUser<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Sorting a list and adding up each user's run costs a fraction of building a
        // tree of users, one insert (and cache miss) per reservation.
        let mut held: Vec<(UserId, u32)> = self
            .0
            .values()
            .filter(|r| taking(r).is_some())
            .map(|r| (r.user, r.seats.len() as u32))
            .collect();
        held.sort_unstable_by_key(|&(user, _)| user);
        let mut counts: Vec<(UserId, u32)> = Vec::with_capacity(held.len());
        for (user, n) in held {
            match counts.last_mut() {
                Some((last, count)) if *last == user => *count += n,
                _ => counts.push((user, n)),
            }
        }
        serializer.collect_map(counts)
    }
}

/// Every seat of a date with its state, by id, written as it is read from the
/// reservations (only the taken seats are gathered first).
struct SavedSeats<'a>(&'a DateState);

impl Serialize for SavedSeats<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let date = self.0;
        let mut taken: Vec<(SeatId, Seat)> = date
            .reservations
            .values()
            .filter_map(|r| Some((r, taking(r)?)))
            .flat_map(|(r, seat)| r.seats.iter().map(move |&id| (id, seat)))
            .collect();
        taken.sort_unstable_by_key(|(id, _)| *id);
        let mut taken = taken.into_iter().peekable();
        serializer.collect_seq((1..=date.layout.seats_total()).map(|id| {
            taken
                .next_if(|(taken, _)| taken.0 == id)
                .map_or(Seat::Available, |(_, seat)| seat)
        }))
    }
}

impl Serialize for DateState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedDate {
            date_id: self.date_id,
            concert_id: self.concert_id,
            starts_at: self.starts_at,
            layout: &self.layout,
            seats: SavedSeats(self),
            reservations: &self.reservations,
            seats_by_user: SavedSeatsByUser(&self.reservations),
            counts: self.counts,
            paused: self.paused,
            cancelled_at: self.cancelled_at,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DateState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let loaded = LoadedDate::deserialize(deserializer)?;
        let mut taken = Taken::new(loaded.layout.seats_total());
        for (index, seat) in loaded.seats.iter().enumerate() {
            if *seat != Seat::Available {
                taken.set(SeatId(index as u32 + 1), true);
            }
        }
        Ok(DateState {
            date_id: loaded.date_id,
            concert_id: loaded.concert_id,
            starts_at: loaded.starts_at,
            layout: loaded.layout,
            rules: DateRules::default(),
            taken,
            reservations: loaded.reservations.into(),
            lookups: None,
            counts: loaded.counts,
            paused: loaded.paused,
            cancelled_at: loaded.cancelled_at,
        })
    }
}

/// The state a reservation puts its seats in: held while it is `HELD`, sold while it
/// is `PAID`, none otherwise.
fn taking(reservation: &Reservation) -> Option<Seat> {
    match reservation.status {
        ReservationStatus::Held => Some(Seat::Held(reservation.id)),
        ReservationStatus::Paid => Some(Seat::Sold(reservation.id)),
        _ => None,
    }
}

/// Which seats are taken (held or sold): one bit per seat, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken(Box<[u64]>);

impl Taken {
    /// `seats` seats, none taken.
    fn new(seats: u32) -> Taken {
        Taken(vec![0; seats.div_ceil(64) as usize].into_boxed_slice())
    }

    fn contains(&self, id: SeatId) -> bool {
        let index = id.0 as usize - 1;
        self.0[index / 64] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, id: SeatId, taken: bool) {
        let index = id.0 as usize - 1;
        let (word, bit) = (&mut self.0[index / 64], 1u64 << (index % 64));
        if taken {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
}

impl DateState {
    /// A date with every seat available.
    pub fn new(
        date_id: DateId,
        concert_id: ConcertId,
        starts_at: Timestamp,
        layout: Arc<Layout>,
        rules: DateRules,
    ) -> Self {
        let total = layout.seats_total();
        DateState {
            date_id,
            concert_id,
            starts_at,
            paused: false,
            cancelled_at: None,
            rules,
            taken: Taken::new(total),
            reservations: Reservations::default(),
            lookups: Some(Lookups::default()),
            counts: SeatCounts {
                available: total,
                held: 0,
                sold: 0,
            },
            layout,
        }
    }

    /// Replaces the limits and rebuilds what a snapshot does not store (after loading one).
    pub fn set_rules(&mut self, rules: DateRules) {
        self.rules = rules;
        self.lookups = Some(Lookups::of(self.reservations.values()));
    }

    /// A copy for the snapshot replica, which only replays events and saves: without
    /// the lookups only commands use, so that it does not keep a second set of them
    /// (a seat count per user and a deadline per live hold). It takes no command.
    pub fn replica(&self) -> DateState {
        DateState {
            date_id: self.date_id,
            concert_id: self.concert_id,
            starts_at: self.starts_at,
            layout: Arc::clone(&self.layout),
            rules: self.rules,
            taken: self.taken.clone(),
            reservations: self.reservations.clone(),
            lookups: None,
            counts: self.counts,
            paused: self.paused,
            cancelled_at: self.cancelled_at,
        }
    }

    /// This date as the replica keeps it: without its lookups (see [`DateState::replica`]).
    pub fn into_replica(mut self) -> DateState {
        self.lookups = None;
        self
    }

    /// What the commands look up; only the replica's copy, which takes none, has none.
    fn lookups(&self) -> &Lookups {
        self.lookups
            .as_ref()
            .expect("commands run on a date with its lookups, never on the replica's copy")
    }

    /// The concert the date belongs to.
    pub fn concert_id(&self) -> ConcertId {
        self.concert_id
    }

    /// The date's id.
    pub fn date_id(&self) -> DateId {
        self.date_id
    }

    /// The seat layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// When the show starts.
    pub fn starts_at(&self) -> Timestamp {
        self.starts_at
    }

    /// Whether the operator paused sales.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When the operator cancelled the date, if they did.
    pub fn cancelled_at(&self) -> Option<Timestamp> {
        self.cancelled_at
    }

    /// The last instant a holder may ask for a refund is just before this.
    pub fn refund_deadline(&self) -> Timestamp {
        self.starts_at - self.rules.refund_closes_before
    }

    /// Paid reservations not refunded yet: after a cancellation, what remains to refund.
    pub fn paid(&self) -> Vec<(UserId, ReservationId)> {
        let mut paid: Vec<_> = self
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Paid)
            .map(|r| (r.user, r.id))
            .collect();
        paid.sort();
        paid
    }

    /// Seat counts by recorded status.
    pub fn counts(&self) -> SeatCounts {
        self.counts
    }

    /// The recorded state of a seat. For a taken seat this searches the reservations
    /// (no seat records its reservation): for checks and tests, not for a hot path.
    pub fn seat(&self, id: SeatId) -> Option<Seat> {
        if id.0 == 0 || id.0 > self.layout.seats_total() {
            return None;
        }
        if !self.taken.contains(id) {
            return Some(Seat::Available);
        }
        let seat = self
            .reservations
            .values()
            .filter(|r| r.seats.contains(&id))
            .find_map(|r| taking(r))
            .expect("a taken seat has its live or paid reservation");
        Some(seat)
    }

    /// A reservation by id.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id).map(Arc::as_ref)
    }

    /// A reservation by id, shared (to keep it elsewhere without copying it).
    pub fn shared_reservation(&self, id: ReservationId) -> Option<&Arc<Reservation>> {
        self.reservations.get(&id)
    }

    /// Every reservation, in no particular order.
    pub fn reservations(&self) -> impl Iterator<Item = &Arc<Reservation>> {
        self.reservations.values()
    }

    /// The earliest deadline of a live hold.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.lookups().deadlines.first()
    }

    /// Records the expiry of every hold whose deadline is at or before `now`.
    pub fn expire_due(&mut self, now: Timestamp) -> Option<DateEvent> {
        let reservation_ids = self.lookups().deadlines.due(now);
        if reservation_ids.is_empty() {
            return None;
        }
        let event = DateEvent::HoldsExpired {
            reservation_ids,
            at: now,
        };
        self.replay(&event);
        Some(event)
    }

    /// Holds all of the seats or none of them.
    pub fn hold(&mut self, command: Hold, now: Timestamp) -> Result<DateEvent, Rejection> {
        self.assert_swept(now);
        let Hold {
            user,
            seats,
            reservation_id,
        } = command;
        check_seat_list(&self.layout, &seats, self.rules.seats_per_reservation_max)?;
        if self.cancelled_at.is_some() {
            return Err(Rejection::DateCancelled);
        }
        if self.paused {
            return Err(Rejection::SalesPaused);
        }
        let taken: Vec<SeatId> = seats
            .iter()
            .copied()
            .filter(|&s| self.taken.contains(s))
            .collect();
        if !taken.is_empty() {
            return Err(Rejection::SeatUnavailable(taken));
        }
        let owned = self
            .lookups()
            .seats_by_user
            .get(&user)
            .copied()
            .unwrap_or(0);
        if owned as usize + seats.len() > self.rules.seats_per_user_max as usize {
            return Err(Rejection::SeatLimitExceeded {
                limit: self.rules.seats_per_user_max,
            });
        }
        let amount = seats
            .iter()
            .map(|&s| self.layout.seat(s).expect("checked: the seat exists").price)
            .try_fold(Won::ZERO, Won::checked_add)
            .expect("a few seats at bounded prices cannot overflow");
        let reservation = Reservation {
            id: reservation_id,
            user,
            concert_id: self.concert_id,
            date_id: self.date_id,
            seats: SeatList::from_slice(&seats),
            amount,
            status: ReservationStatus::Held,
            created_at: now,
            expires_at: now + self.rules.hold_ttl,
            after_sale: None,
        };
        let event = DateEvent::SeatsHeld(Arc::new(reservation));
        self.replay(&event);
        Ok(event)
    }

    /// Releases a live hold; nothing to do (and no event) if it already ended unpaid.
    pub fn cancel(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
        now: Timestamp,
    ) -> Result<Option<DateEvent>, Rejection> {
        self.assert_swept(now);
        match self.owned_reservation(user, reservation_id)?.status {
            ReservationStatus::Paid => Err(Rejection::AlreadyPaid),
            ReservationStatus::Refunded => Err(Rejection::AlreadyRefunded),
            ReservationStatus::Cancelled | ReservationStatus::Expired => Ok(None),
            ReservationStatus::Held => {
                let event = DateEvent::HoldCancelled {
                    reservation_id,
                    at: now,
                };
                self.replay(&event);
                Ok(Some(event))
            }
        }
    }

    /// Sells the seats of a live hold, if the balance covers it. The caller debits the
    /// wallet with the returned payment and logs it as one event.
    pub fn pay(&mut self, command: Pay, now: Timestamp) -> Result<Payment, Rejection> {
        self.assert_swept(now);
        let reservation = self.owned_reservation(command.user, command.reservation_id)?;
        match reservation.status {
            ReservationStatus::Paid => return Err(Rejection::AlreadyPaid),
            ReservationStatus::Refunded => return Err(Rejection::AlreadyRefunded),
            ReservationStatus::Cancelled => return Err(Rejection::ReservationCancelled),
            ReservationStatus::Expired => return Err(Rejection::ReservationExpired),
            ReservationStatus::Held => {}
        }
        let amount = reservation.amount;
        let Some(balance_after) = command.balance.checked_sub(amount) else {
            return Err(Rejection::InsufficientBalance {
                amount,
                balance: command.balance,
            });
        };
        let payment = Payment {
            id: command.payment_id,
            reservation_id: command.reservation_id,
            user: command.user,
            concert_id: self.concert_id,
            date_id: self.date_id,
            amount,
            balance_after,
            paid_at: now,
            idempotency_key: command.idempotency_key,
        };
        self.replay_payment(&payment);
        Ok(payment)
    }

    /// Refunds a paid reservation: the seats become available again and its tickets
    /// void. A holder's request must come before the refund deadline and before any of
    /// its tickets was used; a cancellation refunds regardless. The returned refund is
    /// logged as one event, and the payer's wallet credited with it.
    pub fn refund(&mut self, command: RefundCommand, now: Timestamp) -> Result<Refund, Rejection> {
        self.assert_swept(now);
        let reservation = self.owned_reservation(command.user, command.reservation_id)?;
        match reservation.status {
            ReservationStatus::Paid => {}
            ReservationStatus::Refunded => return Err(Rejection::AlreadyRefunded),
            _ => return Err(Rejection::NotPaid),
        }
        if command.reason == RefundReason::Requested {
            if now >= self.refund_deadline() {
                return Err(Rejection::RefundClosed(format!(
                    "refunds closed at {}",
                    super::rejection::rfc3339(&self.refund_deadline())
                )));
            }
            if !reservation.admitted().is_empty() {
                return Err(Rejection::RefundClosed(
                    "a ticket of this reservation was already used".into(),
                ));
            }
        }
        let amount = reservation.amount;
        let balance_after = command
            .balance
            .checked_add(amount)
            .expect("a balance plus what it paid cannot overflow");
        let refund = Refund {
            id: command.refund_id,
            reservation_id: command.reservation_id,
            user: command.user,
            concert_id: self.concert_id,
            date_id: self.date_id,
            amount,
            balance_after,
            reason: command.reason,
            at: now,
        };
        self.replay_refund(&refund);
        Ok(refund)
    }

    /// Pauses sales; `None` if they already are.
    pub fn pause(&mut self, now: Timestamp) -> Result<Option<DateEvent>, Rejection> {
        self.change_sales(true, now)
    }

    /// Resumes sales; `None` if they were not paused.
    pub fn resume(&mut self, now: Timestamp) -> Result<Option<DateEvent>, Rejection> {
        self.change_sales(false, now)
    }

    fn change_sales(
        &mut self,
        pause: bool,
        now: Timestamp,
    ) -> Result<Option<DateEvent>, Rejection> {
        self.assert_swept(now);
        if self.cancelled_at.is_some() {
            return Err(Rejection::DateCancelled);
        }
        if self.paused == pause {
            return Ok(None);
        }
        let event = if pause {
            DateEvent::SalesPaused { at: now }
        } else {
            DateEvent::SalesResumed { at: now }
        };
        self.replay(&event);
        Ok(Some(event))
    }

    /// Cancels the date and releases every live hold; `None` if it already was. The
    /// paid reservations ([`DateState::paid`]) are then refunded one by one.
    pub fn cancel_date(&mut self, now: Timestamp) -> Option<DateEvent> {
        self.assert_swept(now);
        if self.cancelled_at.is_some() {
            return None;
        }
        let mut released = self.lookups().deadlines.all();
        released.sort();
        let event = DateEvent::DateCancelled { released, at: now };
        self.replay(&event);
        Some(event)
    }

    /// Admits the ticket for `seat_id` of `reservation_id` at the door, once.
    pub fn admit(
        &mut self,
        reservation_id: ReservationId,
        seat_id: SeatId,
        now: Timestamp,
    ) -> Result<DateEvent, Rejection> {
        self.assert_swept(now);
        let no_ticket = || Rejection::TicketInvalid("the code names no ticket of this date".into());
        let reservation = self
            .reservations
            .get(&reservation_id)
            .ok_or_else(no_ticket)?;
        if !reservation.seats.contains(&seat_id) {
            return Err(no_ticket());
        }
        match reservation.status {
            ReservationStatus::Paid if self.cancelled_at.is_none() => {}
            ReservationStatus::Paid | ReservationStatus::Refunded => {
                return Err(Rejection::TicketVoid);
            }
            _ => return Err(no_ticket()),
        }
        if let Some(used_at) = reservation.admitted_at(seat_id) {
            return Err(Rejection::AlreadyUsed { used_at });
        }
        let event = DateEvent::TicketAdmitted {
            reservation_id,
            seat_id,
            at: now,
        };
        self.replay(&event);
        Ok(event)
    }

    /// Applies a date event, live or when recovering.
    pub fn replay(&mut self, event: &DateEvent) {
        match event {
            DateEvent::SeatsHeld(reservation) => self.replay_held(reservation),
            DateEvent::HoldCancelled { reservation_id, .. } => {
                self.release(*reservation_id, ReservationStatus::Cancelled);
            }
            DateEvent::HoldsExpired {
                reservation_ids, ..
            } => {
                for id in reservation_ids {
                    self.release(*id, ReservationStatus::Expired);
                }
            }
            DateEvent::SalesPaused { .. } => self.paused = true,
            DateEvent::SalesResumed { .. } => self.paused = false,
            DateEvent::DateCancelled { released, at } => {
                assert!(self.cancelled_at.is_none(), "a date is cancelled once");
                self.cancelled_at = Some(*at);
                self.paused = false;
                for id in released {
                    self.release(*id, ReservationStatus::Cancelled);
                }
                // Live, no hold is left. In replay one may be: a hold paid just before
                // the cancellation, whose payment (logged by the wallet) follows it.
            }
            DateEvent::TicketAdmitted {
                reservation_id,
                seat_id,
                at,
            } => {
                let exists = "an admitted reservation exists";
                self.change(*reservation_id, exists, |_, reservation| {
                    assert_eq!(
                        reservation.status,
                        ReservationStatus::Paid,
                        "only a paid ticket is admitted"
                    );
                    assert!(
                        reservation.admitted_at(*seat_id).is_none(),
                        "a ticket is admitted once"
                    );
                    reservation.after_sale_mut().admitted.push(Admission {
                        seat_id: *seat_id,
                        at: *at,
                    });
                });
            }
        }
    }

    /// Applies the seat side of a refund, live or when recovering.
    pub fn replay_refund(&mut self, refund: &Refund) {
        let exists = "a refunded reservation exists";
        self.change(refund.reservation_id, exists, |date, reservation| {
            assert_eq!(
                reservation.status,
                ReservationStatus::Paid,
                "only a paid reservation is refunded, once"
            );
            assert_eq!(
                reservation.amount, refund.amount,
                "a refund returns the whole amount"
            );
            reservation.status = ReservationStatus::Refunded;
            reservation.after_sale_mut().refund_id = Some(refund.id);
            move_seats(
                &mut date.taken,
                &mut date.counts,
                &reservation.seats,
                Seat::Sold(reservation.id),
                Seat::Available,
            );
            if let Some(lookups) = &mut date.lookups {
                lookups.uncount(reservation.user, reservation.seats.len() as u32);
            }
        });
    }

    /// Applies the seat side of a payment, live or when recovering.
    pub fn replay_payment(&mut self, payment: &Payment) {
        let exists = "a paid reservation exists";
        self.change(payment.reservation_id, exists, |date, reservation| {
            assert_eq!(
                reservation.status,
                ReservationStatus::Held,
                "only a live hold is paid"
            );
            assert_eq!(
                reservation.amount, payment.amount,
                "a payment pays the whole amount"
            );
            reservation.status = ReservationStatus::Paid;
            reservation.after_sale_mut().payment_id = Some(payment.id);
            if let Some(lookups) = &mut date.lookups {
                lookups
                    .deadlines
                    .remove(reservation.expires_at, reservation.id);
            }
            move_seats(
                &mut date.taken,
                &mut date.counts,
                &reservation.seats,
                Seat::Held(reservation.id),
                Seat::Sold(reservation.id),
            );
        });
    }

    fn replay_held(&mut self, reservation: &Arc<Reservation>) {
        assert!(
            self.reservations.add(Arc::clone(reservation)),
            "reservation ids are unique"
        );
        move_seats(
            &mut self.taken,
            &mut self.counts,
            &reservation.seats,
            Seat::Available,
            Seat::Held(reservation.id),
        );
        if let Some(lookups) = &mut self.lookups {
            let n = reservation.seats.len() as u32;
            *lookups.seats_by_user.entry(reservation.user).or_default() += n;
            lookups
                .deadlines
                .insert(reservation.expires_at, reservation.id);
        }
    }

    fn release(&mut self, id: ReservationId, status: ReservationStatus) {
        self.change(id, "a released reservation exists", |date, reservation| {
            assert_eq!(
                reservation.status,
                ReservationStatus::Held,
                "only a live hold is released"
            );
            reservation.status = status;
            move_seats(
                &mut date.taken,
                &mut date.counts,
                &reservation.seats,
                Seat::Held(id),
                Seat::Available,
            );
            if let Some(lookups) = &mut date.lookups {
                lookups.deadlines.remove(reservation.expires_at, id);
                lookups.uncount(reservation.user, reservation.seats.len() as u32);
            }
        });
    }

    /// Changes reservation `id`, which must exist (`exists` says why it must): its
    /// shared copy is taken out of the set (copied first if anyone else holds it),
    /// changed together with the rest of the date, and put back.
    fn change(
        &mut self,
        id: ReservationId,
        exists: &str,
        change: impl FnOnce(&mut DateState, &mut Reservation),
    ) {
        let mut shared = self.reservations.take(&id).expect(exists);
        change(self, Arc::make_mut(&mut shared));
        self.reservations.put(shared);
    }

    fn owned_reservation(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<&Reservation, Rejection> {
        match self.reservations.get(&id) {
            Some(reservation) if reservation.user == user => Ok(reservation),
            _ => Err(Rejection::ReservationNotFound),
        }
    }

    fn assert_swept(&self, now: Timestamp) {
        assert!(
            self.next_deadline().is_none_or(|deadline| deadline > now),
            "expire_due(now) runs before every command"
        );
    }
}

/// The deadlines of the live holds: each deadline (a batch of holds shares one) with
/// the holds that end then. Grouping them keeps adding and removing a hold a hash-set
/// operation instead of a search of a tree of every hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Deadlines(BTreeMap<Timestamp, IdSet<ReservationId>>);

impl Deadlines {
    fn insert(&mut self, at: Timestamp, id: ReservationId) {
        self.0.entry(at).or_default().insert(id);
    }

    fn remove(&mut self, at: Timestamp, id: ReservationId) {
        if let Some(ids) = self.0.get_mut(&at) {
            ids.remove(&id);
            if ids.is_empty() {
                self.0.remove(&at);
            }
        }
    }

    fn first(&self) -> Option<Timestamp> {
        self.0.first_key_value().map(|(at, _)| *at)
    }

    /// The holds ending at or before `now`, by deadline, then id.
    fn due(&self, now: Timestamp) -> Vec<ReservationId> {
        let mut due = Vec::new();
        for ids in self.0.range(..=now).map(|(_, ids)| ids) {
            let start = due.len();
            due.extend(ids.iter().copied());
            due[start..].sort_unstable();
        }
        due
    }

    /// Every live hold, in no particular order.
    fn all(&self) -> Vec<ReservationId> {
        self.0.values().flatten().copied().collect()
    }
}

/// Moves every one of `ids` from `from` to `to` and keeps the counts with them: the one
/// place a seat changes state. Each seat must be taken or free as `from` says (a bug
/// otherwise); which reservation takes it is the reservation's to say.
fn move_seats(taken: &mut Taken, counts: &mut SeatCounts, ids: &[SeatId], from: Seat, to: Seat) {
    for &id in ids {
        assert_eq!(
            taken.contains(id),
            from != Seat::Available,
            "seat {id} moves from the state it is in"
        );
        taken.set(id, to != Seat::Available);
    }
    let n = ids.len() as u32;
    *counts.of_mut(from) -= n;
    *counts.of_mut(to) += n;
}

impl SeatCounts {
    fn of_mut(&mut self, seat: Seat) -> &mut u32 {
        match seat {
            Seat::Available => &mut self.available,
            Seat::Held(_) => &mut self.held,
            Seat::Sold(_) => &mut self.sold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::{
        CatalogCommand, CatalogRules, CatalogState, ConcertSpec, DateSpec, SectionSpec,
    };
    use chrono::{Duration, TimeZone, Utc};

    const RULES: DateRules = DateRules {
        hold_ttl: Duration::seconds(300),
        seats_per_reservation_max: 4,
        seats_per_user_max: 4,
        refund_closes_before: Duration::seconds(3600),
    };

    /// When the test date's show starts; refunds close an hour before.
    const SHOW_SECS: i64 = 100_000;

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    /// A date of 10 seats: 1..=5 at 100 won, 6..=10 at 50 won.
    fn date() -> DateState {
        let section = |name: &str, price| SectionSpec {
            name: name.into(),
            rows: 1,
            seats_per_row: 5,
            price,
        };
        let spec = ConcertSpec {
            title: "t".into(),
            venue: "v".into(),
            dates: vec![DateSpec {
                starts_at: t(0),
                sections: vec![section("A", 100), section("B", 50)],
            }],
        };
        let mut catalog = CatalogState::default();
        catalog
            .apply(
                CatalogCommand::Create(spec),
                CatalogRules {
                    seats_per_date_max: 100,
                    seat_price_max: Won(1_000_000),
                },
                t(0),
            )
            .unwrap();
        let concert = catalog.concert(ConcertId(1)).unwrap();
        DateState::new(
            DateId(1),
            ConcertId(1),
            t(SHOW_SECS),
            concert.dates[0].layout.clone(),
            RULES,
        )
    }

    fn rid(n: u128) -> ReservationId {
        ReservationId(uuid::Uuid::from_u128(n))
    }

    fn seats(ids: &[u32]) -> Vec<SeatId> {
        ids.iter().map(|&i| SeatId(i)).collect()
    }

    fn hold(
        date: &mut DateState,
        user: u64,
        ids: &[u32],
        n: u128,
        now: Timestamp,
    ) -> Result<DateEvent, Rejection> {
        date.expire_due(now);
        date.hold(
            Hold {
                user: UserId(user),
                seats: seats(ids),
                reservation_id: rid(n),
            },
            now,
        )
    }

    fn pay(
        date: &mut DateState,
        user: u64,
        n: u128,
        balance: u64,
        now: Timestamp,
    ) -> Result<Payment, Rejection> {
        date.expire_due(now);
        let command = Pay {
            user: UserId(user),
            reservation_id: rid(n),
            payment_id: PaymentId(uuid::Uuid::from_u128(n + 1000)),
            balance: Won(balance),
            idempotency_key: None,
        };
        date.pay(command, now)
    }

    #[test]
    fn a_hold_takes_all_its_seats_and_prices_them() {
        let mut date = date();
        let DateEvent::SeatsHeld(r) = hold(&mut date, 1, &[1, 6], 1, t(0)).unwrap() else {
            panic!()
        };
        assert_eq!(r.amount, Won(150));
        assert_eq!(r.expires_at, t(300));
        assert_eq!(date.seat(SeatId(1)), Some(Seat::Held(rid(1))));
        assert_eq!(
            date.counts(),
            SeatCounts {
                available: 8,
                held: 2,
                sold: 0
            }
        );
    }

    #[test]
    fn a_seat_cannot_be_held_twice() {
        let mut date = date();
        hold(&mut date, 1, &[3], 1, t(0)).unwrap();
        assert_eq!(
            hold(&mut date, 2, &[3], 2, t(1)),
            Err(Rejection::SeatUnavailable(seats(&[3])))
        );
    }

    #[test]
    fn a_multi_seat_hold_is_all_or_nothing() {
        let mut date = date();
        hold(&mut date, 1, &[2], 1, t(0)).unwrap();
        let before = date.counts();
        assert_eq!(
            hold(&mut date, 2, &[1, 2, 3], 2, t(1)),
            Err(Rejection::SeatUnavailable(seats(&[2])))
        );
        assert_eq!(date.counts(), before);
        assert_eq!(date.seat(SeatId(1)), Some(Seat::Available));
        assert_eq!(date.seat(SeatId(3)), Some(Seat::Available));
        assert!(date.reservation(rid(2)).is_none());
    }

    #[test]
    fn malformed_seat_lists_are_rejected() {
        let mut date = date();
        for ids in [&[][..], &[1, 1], &[1, 2, 3, 4, 5]] {
            assert!(matches!(
                hold(&mut date, 1, ids, 1, t(0)),
                Err(Rejection::InvalidRequest(_))
            ));
        }
        assert_eq!(
            hold(&mut date, 1, &[0, 1, 11], 1, t(0)),
            Err(Rejection::SeatNotFound(seats(&[0, 11])))
        );
        assert_eq!(date.counts().available, 10);
    }

    #[test]
    fn a_user_may_not_hold_or_own_more_than_the_limit() {
        let mut date = date();
        hold(&mut date, 1, &[1, 2], 1, t(0)).unwrap();
        pay(&mut date, 1, 1, 1000, t(1)).unwrap();
        hold(&mut date, 1, &[3], 2, t(2)).unwrap();
        assert_eq!(
            hold(&mut date, 1, &[4, 5], 3, t(3)),
            Err(Rejection::SeatLimitExceeded { limit: 4 })
        );
        hold(&mut date, 1, &[4], 3, t(3)).unwrap();
        date.cancel(UserId(1), rid(3), t(4)).unwrap();
        hold(&mut date, 1, &[5], 4, t(5)).unwrap();
    }

    #[test]
    fn a_hold_expires_at_exactly_its_deadline() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert_eq!(
            hold(&mut date, 2, &[1], 2, t(299)),
            Err(Rejection::SeatUnavailable(seats(&[1])))
        );
        assert_eq!(
            date.reservation(rid(1)).unwrap().status_at(t(299)),
            ReservationStatus::Held
        );
        assert_eq!(
            date.reservation(rid(1)).unwrap().status_at(t(300)),
            ReservationStatus::Expired
        );
        hold(&mut date, 2, &[1], 2, t(300)).unwrap();
        assert_eq!(
            date.reservation(rid(1)).unwrap().status,
            ReservationStatus::Expired
        );
    }

    #[test]
    fn an_expired_hold_cannot_be_paid_and_cancelling_it_changes_nothing() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert_eq!(
            pay(&mut date, 1, 1, 1000, t(300)),
            Err(Rejection::ReservationExpired)
        );
        assert_eq!(date.cancel(UserId(1), rid(1), t(301)), Ok(None));
        assert_eq!(date.counts().available, 10);
    }

    #[test]
    fn a_paid_reservation_sells_its_seats_and_cannot_be_cancelled_or_expire() {
        let mut date = date();
        hold(&mut date, 1, &[1, 2], 1, t(0)).unwrap();
        let payment = pay(&mut date, 1, 1, 250, t(10)).unwrap();
        assert_eq!((payment.amount, payment.balance_after), (Won(200), Won(50)));
        assert_eq!(date.seat(SeatId(2)), Some(Seat::Sold(rid(1))));
        assert_eq!(
            date.counts(),
            SeatCounts {
                available: 8,
                held: 0,
                sold: 2
            }
        );
        assert_eq!(
            pay(&mut date, 1, 1, 1000, t(11)),
            Err(Rejection::AlreadyPaid)
        );
        assert_eq!(
            date.cancel(UserId(1), rid(1), t(12)),
            Err(Rejection::AlreadyPaid)
        );
        assert_eq!(date.expire_due(t(1000)), None);
        assert_eq!(
            date.reservation(rid(1)).unwrap().status_at(t(1000)),
            ReservationStatus::Paid
        );
    }

    #[test]
    fn an_insufficient_balance_changes_nothing() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert_eq!(
            pay(&mut date, 1, 1, 99, t(1)),
            Err(Rejection::InsufficientBalance {
                amount: Won(100),
                balance: Won(99)
            })
        );
        assert_eq!(
            date.reservation(rid(1)).unwrap().status,
            ReservationStatus::Held
        );
        assert_eq!(date.seat(SeatId(1)), Some(Seat::Held(rid(1))));
    }

    #[test]
    fn cancelling_releases_the_seats_and_is_repeatable() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert!(date.cancel(UserId(1), rid(1), t(1)).unwrap().is_some());
        assert_eq!(date.cancel(UserId(1), rid(1), t(2)), Ok(None));
        assert_eq!(
            pay(&mut date, 1, 1, 1000, t(3)),
            Err(Rejection::ReservationCancelled)
        );
        hold(&mut date, 2, &[1], 2, t(3)).unwrap();
    }

    #[test]
    fn someone_elses_reservation_does_not_exist_for_you() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert_eq!(
            date.cancel(UserId(2), rid(1), t(1)),
            Err(Rejection::ReservationNotFound)
        );
        assert_eq!(
            pay(&mut date, 2, 1, 1000, t(1)),
            Err(Rejection::ReservationNotFound)
        );
        assert_eq!(
            pay(&mut date, 1, 99, 1000, t(1)),
            Err(Rejection::ReservationNotFound)
        );
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_state() {
        let mut live = date();
        let mut events = Vec::new();
        let mut payments = Vec::new();
        for (i, ids) in [[1, 2], [3, 4], [5, 6]].iter().enumerate() {
            events.push(hold(&mut live, i as u64 + 1, ids, i as u128, t(i as i64)).unwrap());
        }
        events.push(live.cancel(UserId(2), rid(1), t(5)).unwrap().unwrap());
        payments.push(pay(&mut live, 1, 0, 1000, t(6)).unwrap());
        events.extend(live.expire_due(t(400)));
        let mut replayed = date();
        for event in &events[..4] {
            replayed.replay(event);
        }
        replayed.replay_payment(&payments[0]);
        replayed.replay(&events[4]);
        assert_eq!(replayed.taken, live.taken);
        assert_eq!(replayed.reservations, live.reservations);
        assert_eq!(replayed.counts, live.counts);
        assert_eq!(replayed.lookups, live.lookups);
    }

    #[test]
    fn reservations_are_found_by_their_id_and_compared_in_every_field() {
        let mut a = date();
        hold(&mut a, 1, &[1, 2], 1, t(0)).unwrap();
        let mut b = a.clone();
        assert_eq!(a.reservations, b.reservations);
        pay(&mut b, 1, 1, 1000, t(1)).unwrap();
        assert_ne!(a.reservations, b.reservations, "same ids, another status");
        assert_eq!(
            b.reservation(rid(1)).unwrap().status,
            ReservationStatus::Paid
        );
        assert_eq!(b.reservations.0.len(), 1, "changed in its place, not added");
    }

    #[test]
    fn a_seat_list_is_logged_as_a_vec_would_be() {
        let config = bincode::config::standard();
        let list: SeatList = seats(&[3, 1, 2, 9, 5]).into_iter().collect();
        assert_eq!(
            bincode::serde::encode_to_vec(&list, config).unwrap(),
            bincode::serde::encode_to_vec(seats(&[3, 1, 2, 9, 5]), config).unwrap()
        );
    }

    /// A reservation as the log and snapshots have always held it: every field in line.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldReservation {
        id: ReservationId,
        user: UserId,
        concert_id: ConcertId,
        date_id: DateId,
        seats: Vec<SeatId>,
        amount: Won,
        status: ReservationStatus,
        #[serde(with = "crate::domain::time::compact")]
        created_at: Timestamp,
        #[serde(with = "crate::domain::time::compact")]
        expires_at: Timestamp,
        payment_id: Option<PaymentId>,
        refund_id: Option<RefundId>,
        admitted: Vec<Admission>,
    }

    impl OldReservation {
        fn of(r: &Reservation) -> OldReservation {
            OldReservation {
                id: r.id,
                user: r.user,
                concert_id: r.concert_id,
                date_id: r.date_id,
                seats: r.seats.to_vec(),
                amount: r.amount,
                status: r.status,
                created_at: r.created_at,
                expires_at: r.expires_at,
                payment_id: r.payment_id(),
                refund_id: r.refund_id(),
                admitted: r.admitted().to_vec(),
            }
        }
    }

    #[test]
    fn a_reservation_is_logged_as_before_its_after_sale_fields_were_boxed() {
        let mut date = date();
        hold(&mut date, 1, &[2, 7], 1, t(0)).unwrap();
        hold(&mut date, 2, &[1], 2, t(1)).unwrap();
        pay(&mut date, 2, 2, 1000, t(2)).unwrap();
        date.admit(rid(2), SeatId(1), t(3)).unwrap();
        hold(&mut date, 3, &[3, 4, 5], 3, t(4)).unwrap();
        pay(&mut date, 3, 3, 1000, t(5)).unwrap();
        refund(&mut date, 3, 3, 1000, RefundReason::Requested, t(6)).unwrap();
        let config = bincode::config::standard();
        for n in 1..=3 {
            let r = date.reservation(rid(n)).unwrap();
            let old = OldReservation::of(r);
            let bytes = bincode::serde::encode_to_vec(r, config).unwrap();
            assert_eq!(bytes, bincode::serde::encode_to_vec(&old, config).unwrap());
            let (loaded, _): (Reservation, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(&loaded, r);
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, serde_json::to_string(&old).unwrap());
            assert_eq!(&serde_json::from_str::<Reservation>(&json).unwrap(), r);
        }
        let held = date.reservation(rid(1)).unwrap();
        assert!(held.after_sale.is_none(), "a hold has no after-sale part");
        assert_eq!(date.reservation(rid(2)).unwrap().admitted().len(), 1);
        assert!(date.reservation(rid(3)).unwrap().refund_id().is_some());
    }

    /// A date as snapshots have always saved it: every seat with its state.
    #[derive(Serialize, Deserialize)]
    struct OldDate {
        date_id: DateId,
        concert_id: ConcertId,
        #[serde(with = "crate::domain::time::compact")]
        starts_at: Timestamp,
        layout: Arc<Layout>,
        seats: Vec<Seat>,
        reservations: IdMap<ReservationId, Arc<Reservation>>,
        seats_by_user: IdMap<UserId, u32>,
        counts: SeatCounts,
        paused: bool,
        #[serde(with = "crate::domain::time::compact_option")]
        cancelled_at: Option<Timestamp>,
    }

    #[test]
    fn a_snapshot_lists_every_seat_as_before_and_loads_back() {
        let mut date = date();
        hold(&mut date, 1, &[2, 7], 1, t(0)).unwrap();
        hold(&mut date, 2, &[9, 1], 2, t(1)).unwrap();
        pay(&mut date, 2, 2, 1000, t(2)).unwrap();
        hold(&mut date, 3, &[4], 3, t(3)).unwrap();
        date.cancel(UserId(3), rid(3), t(4)).unwrap();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&date, config).unwrap();
        let (old, _): (OldDate, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        let expected: Vec<Seat> = (1..=10).map(|s| date.seat(SeatId(s)).unwrap()).collect();
        assert_eq!(old.seats, expected);
        assert_eq!(old.seats[1], Seat::Held(rid(1)));
        assert_eq!(old.seats[8], Seat::Sold(rid(2)));
        let counted: IdMap<UserId, u32> = [(UserId(1), 2), (UserId(2), 2)].into_iter().collect();
        assert_eq!(old.seats_by_user, counted, "held and paid seats, by user");
        let old_bytes = bincode::serde::encode_to_vec(&old, config).unwrap();
        let (mut loaded, _): (DateState, usize) =
            bincode::serde::decode_from_slice(&old_bytes, config).unwrap();
        loaded.set_rules(RULES);
        assert_eq!(loaded.taken, date.taken);
        assert_eq!(loaded.reservations, date.reservations);
        assert_eq!(loaded.counts, date.counts);
        assert_eq!(loaded.next_deadline(), date.next_deadline());
        assert_eq!(loaded.lookups, date.lookups);
    }

    fn refund(
        date: &mut DateState,
        user: u64,
        n: u128,
        balance: u64,
        reason: RefundReason,
        now: Timestamp,
    ) -> Result<Refund, Rejection> {
        date.expire_due(now);
        let command = RefundCommand {
            user: UserId(user),
            reservation_id: rid(n),
            refund_id: RefundId(uuid::Uuid::from_u128(n + 2000)),
            balance: Won(balance),
            reason,
        };
        date.refund(command, now)
    }

    /// A date where user 1 paid seats 1 and 2 (200 won) as reservation 1.
    fn sold() -> DateState {
        let mut date = date();
        hold(&mut date, 1, &[1, 2], 1, t(0)).unwrap();
        pay(&mut date, 1, 1, 200, t(1)).unwrap();
        date
    }

    #[test]
    fn a_refund_frees_the_seats_and_credits_the_whole_amount() {
        let mut date = sold();
        let refund = refund(&mut date, 1, 1, 30, RefundReason::Requested, t(10)).unwrap();
        assert_eq!((refund.amount, refund.balance_after), (Won(200), Won(230)));
        let r = date.reservation(rid(1)).unwrap();
        assert_eq!(r.status, ReservationStatus::Refunded);
        assert_eq!(r.refund_id(), Some(refund.id));
        assert_eq!(date.seat(SeatId(1)), Some(Seat::Available));
        assert_eq!(date.counts().available, 10);
        assert!(date.lookups().seats_by_user.is_empty());
        hold(&mut date, 2, &[1, 2], 2, t(11)).unwrap();
    }

    #[test]
    fn a_reservation_is_refunded_once() {
        let mut date = sold();
        refund(&mut date, 1, 1, 0, RefundReason::Requested, t(10)).unwrap();
        for reason in [RefundReason::Requested, RefundReason::DateCancelled] {
            assert_eq!(
                refund(&mut date, 1, 1, 0, reason, t(11)),
                Err(Rejection::AlreadyRefunded)
            );
        }
        assert_eq!(
            pay(&mut date, 1, 1, 1000, t(12)),
            Err(Rejection::AlreadyRefunded)
        );
        assert_eq!(
            date.cancel(UserId(1), rid(1), t(12)),
            Err(Rejection::AlreadyRefunded)
        );
    }

    #[test]
    fn only_a_paid_reservation_of_ones_own_can_be_refunded() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        let requested = RefundReason::Requested;
        assert_eq!(
            refund(&mut date, 1, 1, 0, requested, t(1)),
            Err(Rejection::NotPaid)
        );
        assert_eq!(
            refund(&mut date, 2, 1, 0, requested, t(1)),
            Err(Rejection::ReservationNotFound)
        );
        assert_eq!(
            refund(&mut date, 1, 1, 0, requested, t(400)),
            Err(Rejection::NotPaid)
        );
    }

    #[test]
    fn a_holder_may_not_refund_at_or_after_the_deadline_but_a_cancellation_may() {
        let mut date = sold();
        let deadline = SHOW_SECS - 3600;
        assert!(matches!(
            refund(&mut date, 1, 1, 0, RefundReason::Requested, t(deadline)),
            Err(Rejection::RefundClosed(_))
        ));
        refund(&mut date, 1, 1, 0, RefundReason::DateCancelled, t(deadline)).unwrap();
    }

    #[test]
    fn a_ticket_is_admitted_once_and_then_reports_its_first_use() {
        let mut date = sold();
        date.admit(rid(1), SeatId(1), t(50)).unwrap();
        assert_eq!(
            date.admit(rid(1), SeatId(1), t(60)),
            Err(Rejection::AlreadyUsed { used_at: t(50) })
        );
        date.admit(rid(1), SeatId(2), t(61)).unwrap();
        assert!(matches!(
            refund(&mut date, 1, 1, 0, RefundReason::Requested, t(62)),
            Err(Rejection::RefundClosed(_))
        ));
    }

    #[test]
    fn a_refunded_or_unknown_ticket_is_not_admitted() {
        let mut date = sold();
        assert!(matches!(
            date.admit(rid(1), SeatId(3), t(5)),
            Err(Rejection::TicketInvalid(_))
        ));
        assert!(matches!(
            date.admit(rid(9), SeatId(1), t(5)),
            Err(Rejection::TicketInvalid(_))
        ));
        refund(&mut date, 1, 1, 0, RefundReason::Requested, t(6)).unwrap();
        assert_eq!(
            date.admit(rid(1), SeatId(1), t(7)),
            Err(Rejection::TicketVoid)
        );
    }

    #[test]
    fn a_paused_date_takes_no_holds_but_its_holds_can_be_paid() {
        let mut date = date();
        hold(&mut date, 1, &[1], 1, t(0)).unwrap();
        assert!(date.pause(t(1)).unwrap().is_some());
        assert_eq!(date.pause(t(2)), Ok(None));
        assert_eq!(
            hold(&mut date, 2, &[2], 2, t(3)),
            Err(Rejection::SalesPaused)
        );
        pay(&mut date, 1, 1, 100, t(4)).unwrap();
        assert!(date.resume(t(5)).unwrap().is_some());
        assert_eq!(date.resume(t(6)), Ok(None));
        hold(&mut date, 2, &[2], 2, t(7)).unwrap();
    }

    #[test]
    fn a_cancelled_date_releases_its_holds_and_voids_its_tickets() {
        let mut date = sold();
        hold(&mut date, 2, &[3], 2, t(2)).unwrap();
        let Some(DateEvent::DateCancelled { released, .. }) = date.cancel_date(t(3)) else {
            panic!("cancelled")
        };
        assert_eq!(released, vec![rid(2)]);
        assert_eq!(date.cancel_date(t(4)), None);
        assert_eq!(
            date.reservation(rid(2)).unwrap().status,
            ReservationStatus::Cancelled
        );
        assert_eq!(date.paid(), vec![(UserId(1), rid(1))]);
        assert_eq!(
            hold(&mut date, 3, &[4], 3, t(5)),
            Err(Rejection::DateCancelled)
        );
        assert_eq!(date.pause(t(5)), Err(Rejection::DateCancelled));
        assert_eq!(
            date.admit(rid(1), SeatId(1), t(5)),
            Err(Rejection::TicketVoid)
        );
        refund(&mut date, 1, 1, 0, RefundReason::DateCancelled, t(6)).unwrap();
        assert!(date.paid().is_empty());
        assert_eq!(date.counts().available, 10);
    }

    #[test]
    fn the_replicas_copy_saves_what_the_date_saves_and_loads_back_whole() {
        let mut live = date();
        let mut replica = live.replica();
        let events = [
            hold(&mut live, 1, &[1, 2], 1, t(0)).unwrap(),
            hold(&mut live, 2, &[3, 4], 2, t(1)).unwrap(),
        ];
        for event in &events {
            replica.replay(event);
        }
        replica.replay_payment(&pay(&mut live, 2, 2, 1000, t(2)).unwrap());
        replica.replay(&hold(&mut live, 3, &[5], 3, t(3)).unwrap());
        // A second copy made midway, as the replica is made from a recovered state.
        let mut later = live.replica();
        let refunded = refund(&mut live, 2, 2, 0, RefundReason::Requested, t(4)).unwrap();
        replica.replay_refund(&refunded);
        later.replay_refund(&refunded);
        let events = [
            live.cancel(UserId(3), rid(3), t(5)).unwrap().unwrap(),
            hold(&mut live, 4, &[6, 7, 8], 4, t(6)).unwrap(),
            live.expire_due(t(301)).unwrap(),
            hold(&mut live, 5, &[9], 5, t(302)).unwrap(),
        ];
        for event in &events {
            replica.replay(event);
            later.replay(event);
        }
        assert!(replica.lookups.is_none() && later.lookups.is_none());
        let config = bincode::config::standard();
        let saved = bincode::serde::encode_to_vec(&live, config).unwrap();
        assert_eq!(
            bincode::serde::encode_to_vec(&replica, config).unwrap(),
            saved
        );
        for copy in [&replica, &later] {
            let bytes = bincode::serde::encode_to_vec(copy, config).unwrap();
            let (mut loaded, _): (DateState, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            loaded.set_rules(RULES);
            assert_eq!(loaded.taken, live.taken);
            assert_eq!(loaded.reservations, live.reservations);
            assert_eq!(loaded.counts, live.counts);
            assert_eq!(loaded.lookups, live.lookups);
        }
        let lookups = live.lookups();
        assert_eq!(lookups.seats_by_user.len(), 2, "users 4 and 5 hold seats");
        assert_eq!(live.next_deadline(), Some(t(306)));
    }

    #[test]
    fn replaying_refunds_admissions_and_cancellations_rebuilds_the_same_state() {
        let mut live = date();
        let mut replayed = date();
        let mut events = vec![hold(&mut live, 1, &[1, 2], 1, t(0)).unwrap()];
        events.push(hold(&mut live, 2, &[3], 2, t(0)).unwrap());
        let payments = [
            pay(&mut live, 1, 1, 500, t(1)).unwrap(),
            pay(&mut live, 2, 2, 500, t(1)).unwrap(),
        ];
        events.push(live.admit(rid(1), SeatId(1), t(2)).unwrap());
        events.push(live.pause(t(3)).unwrap().unwrap());
        let refunded = refund(&mut live, 2, 2, 0, RefundReason::Requested, t(4)).unwrap();
        assert_eq!(
            hold(&mut live, 3, &[4], 3, t(4)),
            Err(Rejection::SalesPaused)
        );
        events.push(live.resume(t(5)).unwrap().unwrap());
        events.push(hold(&mut live, 3, &[4], 3, t(6)).unwrap());
        events.push(live.cancel_date(t(7)).unwrap());
        let cancelled = refund(&mut live, 1, 1, 0, RefundReason::DateCancelled, t(8)).unwrap();
        for event in &events[..2] {
            replayed.replay(event);
        }
        for payment in &payments {
            replayed.replay_payment(payment);
        }
        replayed.replay(&events[2]);
        replayed.replay(&events[3]);
        replayed.replay_refund(&refunded);
        for event in &events[4..] {
            replayed.replay(event);
        }
        replayed.replay_refund(&cancelled);
        assert_eq!(replayed.taken, live.taken);
        assert_eq!(replayed.reservations, live.reservations);
        assert_eq!(replayed.counts, live.counts);
        assert_eq!(replayed.lookups, live.lookups);
        assert_eq!(
            (replayed.paused, replayed.cancelled_at),
            (live.paused, live.cancelled_at)
        );
    }
}
