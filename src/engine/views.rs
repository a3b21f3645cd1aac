//! Read views: what GETs are served from, without waiting in any actor's mailbox
//! (DESIGN.md rule 6).
//!
//! - [`DateView`]: one per date, written only by its date actor: each seat's status and
//!   hold deadline packed in an atomic, and the seat counts. Readers apply `now`
//!   themselves, so a hold stops counting at its deadline even before the actor has
//!   recorded the expiry.
//! - [`ReservationIndex`]: every reservation by id and by user, written by the date
//!   actors after each change; the wallet uses it to route a payment to its date.

use crate::domain::catalog::Date;
use crate::domain::date::{Reservation, ReservationStatus, SeatCounts};
use crate::domain::{ConcertId, DateId, Rejection, ReservationId, SeatId, Timestamp, UserId, Won};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

const STATUS_SHIFT: u32 = 62;
const DEADLINE_MASK: u64 = (1 << STATUS_SHIFT) - 1;
const HELD: u64 = 1;
const SOLD: u64 = 2;

/// A seat's status as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    /// Free to hold.
    Available,
    /// Held by a live reservation.
    Held,
    /// Sold.
    Sold,
}

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
            date,
        }
    }

    /// Shows recovered reservations (at start, on a fresh view): live holds and sales.
    pub(super) fn load<'a>(
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
                ReservationStatus::Expired | ReservationStatus::Cancelled => continue,
            };
            for seat in &reservation.seats {
                self.seats[seat.0 as usize - 1].store(word, Ordering::Release);
            }
        }
        tally.counts = counts;
    }

    /// Shows the reservations one event changed (each changes once: held, or from held
    /// to paid, cancelled or expired) and the counts after it, in one step.
    pub(super) fn show<'a>(
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

    /// Whether every seat is sold (for good: sold seats never return).
    pub fn is_sold_out(&self) -> bool {
        self.tally.lock().counts.sold == self.date.layout.seats_total()
    }

    /// Summary for the API.
    pub fn summary(&self, now: Timestamp) -> DateSummary {
        DateSummary {
            id: self.date.id,
            starts_at: self.date.starts_at,
            seats_total: self.date.layout.seats_total(),
            seats_available: self.seats_available(now),
        }
    }

    /// The seat map for the API, optionally only seats of one status.
    pub fn seat_map(&self, filter: Option<SeatStatus>, now: Timestamp) -> Vec<SeatSummary> {
        self.date
            .layout
            .seats()
            .filter_map(|seat| {
                let status = self.seat_status(seat.id, now)?;
                filter.is_none_or(|f| f == status).then(|| SeatSummary {
                    id: seat.id,
                    label: seat.label(),
                    section: seat.section.to_owned(),
                    price: seat.price,
                    status,
                })
            })
            .collect()
    }
}

/// A date as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateSummary {
    /// The date's id.
    pub id: DateId,
    /// When the show starts.
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    /// Seats in all.
    pub seats_total: u32,
    /// Seats free to hold now.
    pub seats_available: u32,
}

/// A concert as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertSummary {
    /// The concert's id.
    pub id: ConcertId,
    /// Title.
    pub title: String,
    /// Venue.
    pub venue: String,
    /// Its dates.
    pub dates: Vec<DateSummary>,
}

/// A seat as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatSummary {
    /// The seat's id.
    pub id: SeatId,
    /// `"{section}-{row}-{number}"`.
    pub label: String,
    /// Section name.
    pub section: String,
    /// Price in won.
    pub price: Won,
    /// Status now.
    pub status: SeatStatus,
}

/// Every reservation, for reads and for routing payments.
#[derive(Default)]
pub struct ReservationIndex {
    by_id: DashMap<ReservationId, Reservation>,
    by_user: DashMap<UserId, Vec<ReservationId>>,
}

impl ReservationIndex {
    /// Records a new or changed reservation.
    pub(super) fn record(&self, reservation: &Reservation) {
        let fresh = self
            .by_id
            .insert(reservation.id, reservation.clone())
            .is_none();
        if fresh {
            self.by_user
                .entry(reservation.user)
                .or_default()
                .push(reservation.id);
        }
    }

    /// A reservation by id, whoever holds it.
    pub fn get(&self, id: ReservationId) -> Option<Reservation> {
        self.by_id.get(&id).map(|r| r.clone())
    }

    /// A reservation of `user`'s; someone else's does not exist for them.
    pub fn owned(&self, user: UserId, id: ReservationId) -> Result<Reservation, Rejection> {
        self.get(id)
            .filter(|r| r.user == user)
            .ok_or(Rejection::ReservationNotFound)
    }

    /// A user's reservations, newest first.
    pub fn of_user(&self, user: UserId) -> Vec<Reservation> {
        let ids = self
            .by_user
            .get(&user)
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let mut list: Vec<Reservation> = ids.into_iter().filter_map(|id| self.get(id)).collect();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }
}

/// Who is `ACTIVE` in one concert's waiting room, and until when: written by the queue
/// actor before it releases any reply, read by holds without a mailbox round trip.
#[derive(Default)]
pub struct QueueView {
    active: DashMap<UserId, Timestamp>,
    waiting: AtomicU64,
}

impl QueueView {
    /// Entries shown as active (some may have passed their deadline a moment ago).
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Entries waiting, as of the queue actor's last batch.
    pub fn waiting_len(&self) -> u64 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Publishes the number of waiting entries.
    pub(super) fn show_waiting(&self, waiting: usize) {
        self.waiting.store(waiting as u64, Ordering::Release);
    }

    /// Whether the user is active at `now` (an entry past its deadline is not, whether
    /// or not the queue actor has recorded the expiry yet).
    pub fn is_active(&self, user: UserId, now: Timestamp) -> bool {
        self.active
            .get(&user)
            .is_some_and(|deadline| now < *deadline)
    }

    /// Shows a user as active until `deadline`, or not active.
    pub(super) fn show(&self, user: UserId, deadline: Option<Timestamp>) {
        match deadline {
            Some(deadline) => {
                self.active.insert(user, deadline);
            }
            None => {
                self.active.remove(&user);
            }
        }
    }

    /// Shows nobody as active (after a sell-out).
    pub(super) fn clear(&self) {
        self.active.clear();
    }
}
