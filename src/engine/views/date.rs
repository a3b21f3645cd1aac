//! [`DateView`]: the live seat map of one date, written only by its date actor.
//!
//! What a reader takes:
//! - a seat's status ([`DateView::seat_status`]): one atomic load of the seat's word
//!   (status and hold deadline packed together); lock-free;
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
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const STATUS_SHIFT: u32 = 62;
const DEADLINE_MASK: u64 = (1 << STATUS_SHIFT) - 1;
const HELD: u64 = 1;
const SOLD: u64 = 2;

/// An instant in microseconds since 1970, as packed beside a seat's status.
fn micros(at: Timestamp) -> u64 {
    u64::try_from(at.timestamp_micros()).unwrap_or(0) & DEADLINE_MASK
}

/// The live seat map of one date.
pub struct DateView {
    /// The date (static).
    pub date: Date,
    seats: Box<[AtomicU64]>,
    /// Counts and live deadlines, changed together so a reader never sees one without
    /// the other.
    tally: Mutex<Tally>,
    paused: AtomicBool,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Tally {
    counts: SeatCounts,
    /// Live holds' deadlines (microseconds) and how many seats each releases.
    deadlines: BTreeMap<u64, u32>,
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
            seats: (0..total).map(|_| AtomicU64::new(0)).collect(),
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
        let mut tally = self.tally.lock();
        for reservation in reservations {
            let deadline = micros(reservation.expires_at);
            let word = match reservation.status {
                ReservationStatus::Held => {
                    *tally.deadlines.entry(deadline).or_default() += reservation.seats.len() as u32;
                    (HELD << STATUS_SHIFT) | deadline
                }
                ReservationStatus::Paid => SOLD << STATUS_SHIFT,
                ReservationStatus::Expired
                | ReservationStatus::Cancelled
                | ReservationStatus::Refunded => continue,
            };
            for seat in &reservation.seats {
                self.seats[seat.0 as usize - 1].store(word, Ordering::Release);
            }
        }
        tally.counts = counts;
    }

    /// Shows the reservations one event changed (each changes once: held, or from held
    /// to paid, cancelled or expired) and the counts after it, in one step.
    pub(in crate::engine) fn show<'a>(
        &self,
        changed: impl IntoIterator<Item = &'a Reservation>,
        counts: SeatCounts,
    ) {
        let mut tally = self.tally.lock();
        for reservation in changed {
            let deadline = micros(reservation.expires_at);
            let n = reservation.seats.len() as u32;
            let word = match reservation.status {
                ReservationStatus::Held => {
                    *tally.deadlines.entry(deadline).or_default() += n;
                    (HELD << STATUS_SHIFT) | deadline
                }
                status => {
                    if let Some(count) = tally.deadlines.get_mut(&deadline) {
                        *count -= n;
                        if *count == 0 {
                            tally.deadlines.remove(&deadline);
                        }
                    }
                    if status == ReservationStatus::Paid {
                        SOLD << STATUS_SHIFT
                    } else {
                        0
                    }
                }
            };
            for seat in &reservation.seats {
                self.seats[seat.0 as usize - 1].store(word, Ordering::Release);
            }
        }
        tally.counts = counts;
    }

    /// Shows a refunded reservation (it was paid, so no hold deadline is involved): its
    /// seats are available again.
    pub(in crate::engine) fn show_freed(&self, reservation: &Reservation, counts: SeatCounts) {
        let mut tally = self.tally.lock();
        for seat in &reservation.seats {
            self.seats[seat.0 as usize - 1].store(0, Ordering::Release);
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
        let word = self
            .seats
            .get((id.0 as usize).checked_sub(1)?)?
            .load(Ordering::Acquire);
        Some(match word >> STATUS_SHIFT {
            HELD if (word & DEADLINE_MASK) > micros(now) => SeatStatus::Held,
            SOLD => SeatStatus::Sold,
            _ => SeatStatus::Available,
        })
    }

    /// Seats available at `now`, counting holds past their deadline as released.
    pub fn seats_available(&self, now: Timestamp) -> u32 {
        let tally = self.tally.lock();
        let lapsed: u32 = tally.deadlines.range(..=micros(now)).map(|(_, n)| *n).sum();
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
