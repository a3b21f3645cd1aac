//! [`DateView`]: the live seat map of one date, written only by its date actor.
//!
//! What a reader takes:
//! - a seat's status ([`DateView::seat_status`]): one atomic load of the seat's status
//!   byte, and for a held seat one of the earliest live deadline, both checked against
//!   the view's version (a seqlock: the actor makes it odd while it changes them, so a
//!   reader knows it read the byte and the deadline of one state); lock-free unless a
//!   hold has passed its deadline and the actor has not recorded it yet, or the actor
//!   was changing them meanwhile (then the tally, under its lock, decides);
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
use crate::domain::{IdSet, ReservationId, SeatId, Timestamp};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};

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
    /// The earliest deadline of a live hold (microseconds; `u64::MAX`: none): a held
    /// seat read, in one state, while it is in the future is held.
    earliest: AtomicU64,
    /// Even while the bytes and `earliest` stand still, odd while the actor changes
    /// them. Without it a reader could pair a held byte of a hold just recorded as
    /// expired with the later deadline its end made earliest, and call the seat held.
    version: AtomicU64,
    /// Counts and live deadlines, changed together so a reader never sees one without
    /// the other.
    tally: Mutex<Tally>,
    paused: AtomicBool,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Tally {
    counts: SeatCounts,
    /// Live holds by deadline (microseconds): the date's own shared copy of each, which
    /// lists the seats it releases. A deadline is shared by the holds of one batch of
    /// the actor's, a few hundred at most, so a list is searched where a set of every
    /// seat would cost several times the memory per hold.
    deadlines: BTreeMap<u64, Vec<Arc<Reservation>>>,
}

impl Tally {
    fn add(&mut self, deadline: u64, reservation: &Arc<Reservation>) {
        self.deadlines
            .entry(deadline)
            .or_default()
            .push(Arc::clone(reservation));
    }

    /// Takes the holds `ids` off `deadline`: one by a search, more in one pass.
    fn remove(&mut self, deadline: u64, ids: &[ReservationId]) {
        let Some(held) = self.deadlines.get_mut(&deadline) else {
            return;
        };
        if let [id] = ids {
            if let Some(at) = held.iter().position(|r| r.id == *id) {
                held.swap_remove(at);
            }
        } else {
            let ids: IdSet<ReservationId> = ids.iter().copied().collect();
            held.retain(|r| !ids.contains(&r.id));
        }
        if held.is_empty() {
            self.deadlines.remove(&deadline);
        }
    }

    fn earliest(&self) -> u64 {
        self.deadlines
            .first_key_value()
            .map_or(u64::MAX, |(at, _)| *at)
    }

    /// The holds whose deadline is at or before `now`.
    fn lapsed(&self, now: u64) -> impl Iterator<Item = &Arc<Reservation>> {
        self.deadlines.range(..=now).flat_map(|(_, held)| held)
    }

    /// Whether `seat` is held by a hold whose deadline is at or before `now`.
    fn lapsed_seat(&self, seat: SeatId, now: u64) -> bool {
        self.lapsed(now).any(|r| r.seats.contains(&seat))
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
            version: AtomicU64::new(0),
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
        reservations: impl Iterator<Item = &'a Arc<Reservation>>,
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
        changed: impl IntoIterator<Item = &'a Arc<Reservation>>,
        counts: SeatCounts,
    ) {
        let mut tally = self.tally.lock();
        let changed: Vec<&Arc<Reservation>> = changed.into_iter().collect();
        // Holds that ended, by deadline (an expiry ends many of one deadline at once).
        let mut ended: Vec<(u64, ReservationId)> = Vec::new();
        for reservation in &changed {
            let deadline = micros(reservation.expires_at);
            match reservation.status {
                ReservationStatus::Held => tally.add(deadline, reservation),
                _ => ended.push((deadline, reservation.id)),
            }
        }
        ended.sort_unstable_by_key(|(deadline, _)| *deadline);
        for group in ended.chunk_by(|a, b| a.0 == b.0) {
            let ids: Vec<ReservationId> = group.iter().map(|(_, id)| *id).collect();
            tally.remove(group[0].0, &ids);
        }
        self.change(|| {
            self.earliest.store(tally.earliest(), Ordering::Relaxed);
            for reservation in changed.iter() {
                let status = match reservation.status {
                    ReservationStatus::Held => HELD,
                    ReservationStatus::Paid => SOLD,
                    _ => AVAILABLE,
                };
                for seat in &reservation.seats {
                    self.seats[seat.0 as usize - 1].store(status, Ordering::Relaxed);
                }
            }
        });
        tally.counts = counts;
    }

    /// Changes the bytes and `earliest` (the caller holds the tally's lock, so there is
    /// one writer) with the version odd meanwhile: the writing half of a seqlock.
    fn change(&self, stores: impl FnOnce()) {
        let version = self.version.load(Ordering::Relaxed);
        self.version.store(version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        stores();
        self.version.store(version + 2, Ordering::Release);
    }

    /// Shows a refunded reservation (it was paid, so no hold deadline is involved): its
    /// seats are available again.
    pub(in crate::engine) fn show_freed(&self, reservation: &Reservation, counts: SeatCounts) {
        let mut tally = self.tally.lock();
        self.change(|| {
            for seat in &reservation.seats {
                self.seats[seat.0 as usize - 1].store(AVAILABLE, Ordering::Relaxed);
            }
        });
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
        // The reading half of the seqlock (see `change`): the byte and the deadline
        // belong to one state if the version was even and did not move.
        let version = self.version.load(Ordering::Acquire);
        let status = byte.load(Ordering::Relaxed);
        let earliest = self.earliest.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let steady = version.is_multiple_of(2) && self.version.load(Ordering::Relaxed) == version;
        Some(match status {
            HELD if steady && earliest > now => SeatStatus::Held,
            HELD => {
                // Some hold has lapsed unrecorded, or the actor was changing the view:
                // under the lock the byte and the deadlines agree, and say whether the
                // seat's hold is live.
                let tally = self.tally.lock();
                match byte.load(Ordering::Acquire) {
                    HELD if tally.lapsed_seat(id, now) => SeatStatus::Available,
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
        let lapsed: usize = tally.lapsed(micros(now)).map(|r| r.seats.len()).sum();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::{
        CatalogCommand, CatalogRules, CatalogState, ConcertSpec, DateSpec, SectionSpec,
    };
    use crate::domain::date::SeatList;
    use crate::domain::{ConcertId, DateId, UserId, Won};
    use chrono::{Duration, TimeZone, Utc};

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    /// A view of one date of 10 seats.
    fn view() -> DateView {
        let spec = ConcertSpec {
            title: "t".into(),
            venue: "v".into(),
            dates: vec![DateSpec {
                starts_at: t(100_000),
                sections: vec![SectionSpec {
                    name: "A".into(),
                    rows: 1,
                    seats_per_row: 10,
                    price: 100,
                }],
            }],
        };
        let mut catalog = CatalogState::default();
        let rules = CatalogRules {
            seats_per_date_max: 100,
            seat_price_max: Won(1_000_000),
        };
        catalog
            .apply(CatalogCommand::Create(spec), rules, t(0))
            .unwrap();
        DateView::new(catalog.concert(ConcertId(1)).unwrap().dates[0].clone())
    }

    fn held(n: u128, seats: &[u32], at: Timestamp) -> Arc<Reservation> {
        Arc::new(Reservation {
            id: ReservationId(uuid::Uuid::from_u128(n)),
            user: UserId(n as u64),
            concert_id: ConcertId(1),
            date_id: DateId(1),
            seats: seats.iter().map(|&s| SeatId(s)).collect::<SeatList>(),
            amount: Won(100 * seats.len() as u64),
            status: ReservationStatus::Held,
            created_at: at,
            expires_at: at + Duration::seconds(300),
            after_sale: None,
        })
    }

    fn with_status(r: &Arc<Reservation>, status: ReservationStatus) -> Arc<Reservation> {
        let mut r = Reservation::clone(r);
        r.status = status;
        Arc::new(r)
    }

    fn counts(available: u32, held: u32, sold: u32) -> SeatCounts {
        SeatCounts {
            available,
            held,
            sold,
        }
    }

    #[test]
    fn holds_of_one_deadline_end_one_at_a_time_or_all_at_once() {
        let view = view();
        let (a, b, c) = (
            held(1, &[1, 2], t(0)),
            held(2, &[3], t(0)),
            held(3, &[4], t(0)),
        );
        view.show([&a, &b, &c], counts(6, 4, 0));
        let after = t(300);
        assert_eq!(
            view.seat_status(SeatId(1), after),
            Some(SeatStatus::Available)
        );
        assert_eq!(view.seats_available(after), 10, "every hold lapsed");
        view.show([&with_status(&b, ReservationStatus::Paid)], counts(6, 3, 1));
        assert_eq!(view.seat_status(SeatId(3), after), Some(SeatStatus::Sold));
        assert_eq!(
            view.seat_status(SeatId(2), after),
            Some(SeatStatus::Available)
        );
        assert_eq!(view.seats_available(after), 9, "a and c lapsed, b sold");
        assert_eq!(view.seat_status(SeatId(4), t(1)), Some(SeatStatus::Held));
        let expired = [&a, &c].map(|r| with_status(r, ReservationStatus::Expired));
        view.show(&expired, counts(9, 0, 1));
        assert!(view.tally.lock().deadlines.is_empty());
        assert_eq!(view.seats_available(after), 9);
        assert_eq!(
            view.seat_status(SeatId(4), t(1)),
            Some(SeatStatus::Available)
        );
    }

    /// A hold the actor records as expired while a reader looks at its seat: at an
    /// instant past its deadline the seat is available, whatever the reader catches of
    /// the change (before the version, a reader could pair the old held byte with the
    /// later deadline of another hold that the change made the earliest).
    #[test]
    fn a_lapsed_hold_never_reads_held_while_its_expiry_is_recorded() {
        let view = Arc::new(view());
        let (lapsing, live) = (held(1, &[1], t(0)), held(2, &[2], t(300)));
        let expired = with_status(&lapsing, ReservationStatus::Expired);
        view.show([&live], counts(9, 1, 0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (view, stop) = (view.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                // Past the first hold's deadline, before the second's.
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let status = view.seat_status(SeatId(1), t(400));
                    assert_eq!(status, Some(SeatStatus::Available), "read {reads}");
                    reads += 1;
                }
                reads
            })
        };
        for _ in 0..300_000 {
            view.show([&lapsing], counts(8, 2, 0));
            view.show([&expired], counts(9, 1, 0));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().expect("the reader saw no held seat") > 0);
    }
}
