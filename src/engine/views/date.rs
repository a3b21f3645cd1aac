//! [`DateView`]: the live seat map of one date, written only by its date actor.
//!
//! What a reader takes:
//! - a seat's status ([`DateView::seat_status`]): one atomic load of the seat's status
//!   byte, and for a held seat one of the earliest live deadline; lock-free unless a
//!   hold has passed its deadline and the actor has not recorded it yet (then the
//!   tally says whether this seat's hold is one of them);
//! - the counts ([`DateView::seats_available`], [`DateView::recorded_counts`],
//!   [`DateView::is_sold_out`]): a brief `parking_lot` mutex on the tally, which the
//!   date actor takes once per published change to update the counts and the live
//!   deadlines together (so a reader never sees one without the other).
//!
//! - whether sales are paused and whether the date is cancelled: one atomic load each.
//!
//! Readers apply `now` themselves, so a hold stops counting at its deadline even
//! before the actor has recorded the expiry.

use crate::domain::catalog::{Date, SeatInfo};
use crate::domain::date::{Reservation, ReservationStatus, SeatCounts, SeatStatus};
use crate::domain::{SeatId, Timestamp};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

const AVAILABLE: u8 = 0;
const HELD: u8 = 1;
const SOLD: u8 = 2;

/// An instant in microseconds since 1970.
fn micros(at: Timestamp) -> u64 {
    u64::try_from(at.timestamp_micros()).unwrap_or(0)
}

/// The live seat map of one date.
pub struct DateView {
    /// The date (static).
    pub date: Date,
    /// Each seat's recorded status, by id: one byte per seat.
    seats: Box<[AtomicU8]>,
    /// The earliest deadline of a live hold (microseconds; `u64::MAX`: none), stored
    /// before the status bytes of the holds it covers: a held seat read while it is in
    /// the future is held.
    earliest: AtomicU64,
    /// Counts and live deadlines, changed together so a reader never sees one without
    /// the other.
    tally: Mutex<Tally>,
    paused: AtomicBool,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Tally {
    counts: SeatCounts,
    /// Live holds' deadlines (microseconds) and the seats each releases.
    deadlines: BTreeMap<u64, BTreeSet<SeatId>>,
}

impl Tally {
    fn add(&mut self, deadline: u64, seats: &[SeatId]) {
        self.deadlines
            .entry(deadline)
            .or_default()
            .extend(seats.iter().copied());
    }

    fn remove(&mut self, deadline: u64, seats: &[SeatId]) {
        if let Some(held) = self.deadlines.get_mut(&deadline) {
            for seat in seats {
                held.remove(seat);
            }
            if held.is_empty() {
                self.deadlines.remove(&deadline);
            }
        }
    }

    fn earliest(&self) -> u64 {
        self.deadlines
            .first_key_value()
            .map_or(u64::MAX, |(at, _)| *at)
    }

    /// Whether `seat` is held by a hold whose deadline is at or before `now`.
    fn lapsed(&self, seat: SeatId, now: u64) -> bool {
        self.deadlines
            .range(..=now)
            .any(|(_, seats)| seats.contains(&seat))
    }
}

impl DateView {
    /// A view of a date with every seat available.
    pub fn new(date: Date) -> Self {
        let total = date.layout.seats_total();
        let counts = SeatCounts {
            available: total,
            held: 0,
            sold: 0,
        };
        DateView {
            seats: (0..total).map(|_| AtomicU8::new(AVAILABLE)).collect(),
            earliest: AtomicU64::new(u64::MAX),
            tally: Mutex::new(Tally {
                counts,
                deadlines: BTreeMap::new(),
            }),
            paused: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            date,
        }
    }

    /// Shows recovered reservations (at start, on a fresh view): live holds and sales.
    pub(in crate::engine) fn load<'a>(
        &self,
        reservations: impl Iterator<Item = &'a Reservation>,
        counts: SeatCounts,
    ) {
        let shown = reservations
            .filter(|r| matches!(r.status, ReservationStatus::Held | ReservationStatus::Paid));
        self.show(shown, counts);
    }

    /// Shows the reservations one event changed (each changes once: held, or from held
    /// to paid, cancelled or expired) and the counts after it, in one step.
    pub(in crate::engine) fn show<'a>(
        &self,
        changed: impl IntoIterator<Item = &'a Reservation>,
        counts: SeatCounts,
    ) {
        let mut tally = self.tally.lock();
        let changed: Vec<&Reservation> = changed.into_iter().collect();
        for reservation in &changed {
            let deadline = micros(reservation.expires_at);
            match reservation.status {
                ReservationStatus::Held => tally.add(deadline, &reservation.seats),
                _ => tally.remove(deadline, &reservation.seats),
            }
        }
        // Before the bytes: a reader that sees a new hold's byte sees its deadline.
        self.earliest.store(tally.earliest(), Ordering::Release);
        for reservation in changed {
            let status = match reservation.status {
                ReservationStatus::Held => HELD,
                ReservationStatus::Paid => SOLD,
                _ => AVAILABLE,
            };
            for seat in &reservation.seats {
                self.seats[seat.0 as usize - 1].store(status, Ordering::Release);
            }
        }
        tally.counts = counts;
    }

    /// Shows a refunded reservation (it was paid, so no hold deadline is involved): its
    /// seats are available again.
    pub(in crate::engine) fn show_freed(&self, reservation: &Reservation, counts: SeatCounts) {
        let mut tally = self.tally.lock();
        for seat in &reservation.seats {
            self.seats[seat.0 as usize - 1].store(AVAILABLE, Ordering::Release);
        }
        tally.counts = counts;
    }

    /// Shows whether sales are paused.
    pub(in crate::engine) fn show_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Shows the date as cancelled (or not, at start).
    pub(in crate::engine) fn show_cancelled(&self, cancelled: bool) {
        self.cancelled.store(cancelled, Ordering::Release);
    }

    /// Whether the operator paused sales.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Whether the operator cancelled the date.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the date has nothing left to sell: every seat sold, or the date
    /// cancelled. (A refund can give a sold-out date seats again.)
    pub fn is_closed(&self) -> bool {
        self.is_cancelled() || self.is_sold_out()
    }

    /// A seat's status at `now`.
    pub fn seat_status(&self, id: SeatId, now: Timestamp) -> Option<SeatStatus> {
        let byte = self.seats.get((id.0 as usize).checked_sub(1)?)?;
        let now = micros(now);
        Some(match byte.load(Ordering::Acquire) {
            HELD if self.earliest.load(Ordering::Acquire) > now => SeatStatus::Held,
            HELD => {
                // Some hold has lapsed unrecorded: under the lock the byte and the
                // deadlines agree, and say whether it is this seat's.
                let tally = self.tally.lock();
                match byte.load(Ordering::Acquire) {
                    HELD if tally.lapsed(id, now) => SeatStatus::Available,
                    HELD => SeatStatus::Held,
                    SOLD => SeatStatus::Sold,
                    _ => SeatStatus::Available,
                }
            }
            SOLD => SeatStatus::Sold,
            _ => SeatStatus::Available,
        })
    }

    /// Seats available at `now`, counting holds past their deadline as released.
    pub fn seats_available(&self, now: Timestamp) -> u32 {
        let tally = self.tally.lock();
        let lapsed: usize = tally
            .deadlines
            .range(..=micros(now))
            .map(|(_, seats)| seats.len())
            .sum();
        let lapsed = lapsed as u32;
        tally.counts.available + lapsed
    }

    /// Seats held and sold, as recorded (holds past their deadline still count as held
    /// until the date actor records their expiry).
    pub fn recorded_counts(&self) -> (u32, u32) {
        let counts = self.tally.lock().counts;
        (counts.held, counts.sold)
    }

    /// Whether every seat is sold (until a refund frees some).
    pub fn is_sold_out(&self) -> bool {
        self.tally.lock().counts.sold == self.date.layout.seats_total()
    }

    /// Every seat of the date with its status at `now`, by id.
    pub fn statuses(&self, now: Timestamp) -> impl Iterator<Item = (SeatInfo<'_>, SeatStatus)> {
        self.date.layout.seats().map(move |seat| {
            let status = self
                .seat_status(seat.id, now)
                .expect("every seat of the layout has a word");
            (seat, status)
        })
    }
}
