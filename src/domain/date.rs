//! The seats and reservations of one concert date.
//!
//! Invariants, checked by the tests and the property tests:
//! - every seat is `Available`, `Held` by exactly one live (`HELD`) reservation, or
//!   `Sold` to exactly one `PAID` reservation; a reservation's seats all point back to it;
//! - the counts of available, held and sold seats match the seats;
//! - each user's held-or-owned seat count on this date never exceeds the limit;
//! - a `HELD` reservation is live strictly before its `expires_at`: from that instant on
//!   it can be neither paid nor cancelled, and its seats are no one's.
//!
//! The date actor calls [`DateState::expire_due`] with the same `now` before it applies
//! any command, so commands only ever see live holds; the commands assert this.

use super::catalog::Layout;
use super::{
    ConcertId, DateId, PaymentId, Rejection, ReservationId, SeatId, Timestamp, UserId, Won,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// Released by its holder.
    Cancelled,
}

/// A hold on seats and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Who holds it.
    pub user: UserId,
    /// The concert of its date.
    pub concert_id: ConcertId,
    /// The date of its seats.
    pub date_id: DateId,
    /// The seats, in the order asked for.
    pub seats: Vec<SeatId>,
    /// The sum of the seats' prices.
    pub amount: Won,
    /// Its recorded status; see [`Reservation::status_at`] for the status at an instant.
    pub status: ReservationStatus,
    /// When it was made.
    #[serde(with = "crate::domain::time::compact")]
    pub created_at: Timestamp,
    /// When the hold ends if not paid.
    #[serde(with = "crate::domain::time::compact")]
    pub expires_at: Timestamp,
    /// The payment that paid it.
    pub payment_id: Option<PaymentId>,
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

/// What happened on a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DateEvent {
    /// Seats were held.
    SeatsHeld(Reservation),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DateState {
    date_id: DateId,
    concert_id: ConcertId,
    layout: Arc<Layout>,
    /// Configuration, not state: not saved, set again on load.
    #[serde(skip)]
    rules: DateRules,
    seats: Vec<Seat>,
    reservations: HashMap<ReservationId, Reservation>,
    seats_by_user: HashMap<UserId, u32>,
    #[serde(skip)] // Derived: rebuilt on load (see `set_rules`).
    deadlines: BTreeSet<(Timestamp, ReservationId)>,
    counts: SeatCounts,
}

impl DateState {
    /// A date with every seat available.
    pub fn new(
        date_id: DateId,
        concert_id: ConcertId,
        layout: Arc<Layout>,
        rules: DateRules,
    ) -> Self {
        let total = layout.seats_total();
        DateState {
            date_id,
            concert_id,
            rules,
            seats: vec![Seat::Available; total as usize],
            reservations: HashMap::new(),
            seats_by_user: HashMap::new(),
            deadlines: BTreeSet::new(),
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
        self.deadlines = self
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Held)
            .map(|r| (r.expires_at, r.id))
            .collect();
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

    /// Seat counts by recorded status.
    pub fn counts(&self) -> SeatCounts {
        self.counts
    }

    /// The recorded state of a seat.
    pub fn seat(&self, id: SeatId) -> Option<Seat> {
        self.seats.get((id.0 as usize).checked_sub(1)?).copied()
    }

    /// A reservation by id.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// Every reservation, in no particular order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// The earliest deadline of a live hold.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Records the expiry of every hold whose deadline is at or before `now`.
    pub fn expire_due(&mut self, now: Timestamp) -> Option<DateEvent> {
        let reservation_ids: Vec<ReservationId> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
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
        let taken: Vec<SeatId> = seats
            .iter()
            .copied()
            .filter(|&s| self.seat(s) != Some(Seat::Available))
            .collect();
        if !taken.is_empty() {
            return Err(Rejection::SeatUnavailable(taken));
        }
        let owned = self.seats_by_user.get(&user).copied().unwrap_or(0);
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
            seats,
            amount,
            status: ReservationStatus::Held,
            created_at: now,
            expires_at: now + self.rules.hold_ttl,
            payment_id: None,
        };
        let event = DateEvent::SeatsHeld(reservation);
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
        }
    }

    /// Applies the seat side of a payment, live or when recovering.
    pub fn replay_payment(&mut self, payment: &Payment) {
        let reservation = self
            .reservations
            .get_mut(&payment.reservation_id)
            .expect("a paid reservation exists");
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
        reservation.payment_id = Some(payment.id);
        self.deadlines
            .remove(&(reservation.expires_at, reservation.id));
        move_seats(
            &mut self.seats,
            &mut self.counts,
            &reservation.seats,
            Seat::Held(reservation.id),
            Seat::Sold(reservation.id),
        );
    }

    fn replay_held(&mut self, reservation: &Reservation) {
        assert!(
            !self.reservations.contains_key(&reservation.id),
            "reservation ids are unique"
        );
        move_seats(
            &mut self.seats,
            &mut self.counts,
            &reservation.seats,
            Seat::Available,
            Seat::Held(reservation.id),
        );
        let n = reservation.seats.len() as u32;
        *self.seats_by_user.entry(reservation.user).or_default() += n;
        self.deadlines
            .insert((reservation.expires_at, reservation.id));
        self.reservations
            .insert(reservation.id, reservation.clone());
    }

    fn release(&mut self, id: ReservationId, status: ReservationStatus) {
        let reservation = self
            .reservations
            .get_mut(&id)
            .expect("a released reservation exists");
        assert_eq!(
            reservation.status,
            ReservationStatus::Held,
            "only a live hold is released"
        );
        reservation.status = status;
        self.deadlines.remove(&(reservation.expires_at, id));
        move_seats(
            &mut self.seats,
            &mut self.counts,
            &reservation.seats,
            Seat::Held(id),
            Seat::Available,
        );
        let n = reservation.seats.len() as u32;
        let owned = self
            .seats_by_user
            .get_mut(&reservation.user)
            .expect("the holder is counted");
        *owned -= n;
        if *owned == 0 {
            self.seats_by_user.remove(&reservation.user);
        }
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

/// Moves every one of `ids` from `from` to `to` and keeps the counts with them: the one
/// place a seat changes state. Each seat must be in `from` (a bug otherwise).
fn move_seats(seats: &mut [Seat], counts: &mut SeatCounts, ids: &[SeatId], from: Seat, to: Seat) {
    for id in ids {
        let slot = &mut seats[id.0 as usize - 1];
        assert_eq!(*slot, from, "seat {id} moves from the state it is in");
        *slot = to;
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
    };

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
        assert_eq!(replayed.seats, live.seats);
        assert_eq!(replayed.reservations, live.reservations);
        assert_eq!(replayed.counts, live.counts);
        assert_eq!(replayed.seats_by_user, live.seats_by_user);
    }
}
