//! [`SeatMaps`]: the committed seat map of every date, kept by one fan-out task that
//! reads the event feed once for everybody, and handed to readers as whole-map
//! [`Snapshot`]s and a stream of [`Change`]s.
//!
//! Why the feed and not the date views: a view may show a hold one group commit
//! before it is durable (and a failed commit would take it back). The feed shows only
//! durable records, so the maps never show a hold a crash could take back. The price
//! is a few milliseconds: a change reaches the maps after its fsync, through the
//! tail's watch.
//!
//! How a map stays consistent with the cursor it is tagged with:
//! - At start (before the server takes requests) every date's map is read from its
//!   view, tagged with the last durable sequence number `S0` as `S0-999999`; the
//!   fan-out then reads the feed from record `S0 + 1` on. Nothing but expiry timers
//!   can change a view meanwhile, and an expiry that the view shows a moment early is
//!   applied again, to the same effect, when the task reads it.
//! - A date created later starts with every seat available, tagged with the last
//!   record the task has applied: its holds all come after its creation, so the task
//!   applies every one of them to the map, whether the map was made by the task (on
//!   the first event for the date) or by a reader asking first.
//! - The task applies the events of each read in order and, per date, under the
//!   date's mutex: sets the statuses, tags the map with the cursor of the date's last
//!   event in the read, keeps the change in a ring of the newest [`CHANGES_KEPT`], and
//!   broadcasts it. A reader subscribes under the same mutex, so it gets a snapshot
//!   (or the ring after its cursor) and then exactly the changes after it.
//!
//! Each subscriber has a bounded buffer ([`SUBSCRIBER_BUFFER`] changes); one that
//! falls further behind is told so and starts again with the whole map. A slow reader
//! therefore costs itself, never the task or the other readers.

use super::Engine;
use super::feed::{EVENTS_PER_READ_MAX, Feed, FeedError, Position};
use crate::domain::public::{Cursor, EventBody, PublicEvent};
use crate::domain::{DateId, SeatId};
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// A seat's status byte in a map: available.
pub const AVAILABLE: u8 = b'A';
/// Held.
pub const HELD: u8 = b'H';
/// Sold.
pub const SOLD: u8 = b'S';

/// Changes each date keeps for readers resuming after a cursor.
pub const CHANGES_KEPT: usize = 1024;
/// Changes a subscriber may have waiting before it must start again from a snapshot.
pub const SUBSCRIBER_BUFFER: usize = 1024;
/// How long the task waits before reading again after the feed failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A whole map, as of `cursor`.
pub struct Snapshot {
    /// The date.
    pub date_id: DateId,
    /// The map includes every change up to this cursor and none after it.
    pub cursor: Cursor,
    /// One status byte per seat ([`AVAILABLE`], [`HELD`], [`SOLD`]), by seat id from 1.
    pub statuses: Arc<[u8]>,
    /// A slot where readers keep what they render from this snapshot (the HTTP body),
    /// so that it is rendered once per snapshot, not once per request.
    pub rendered: OnceLock<Vec<u8>>,
    /// The same, compressed.
    pub compressed: OnceLock<Vec<u8>>,
}

/// The statuses one read of the feed changed on one date.
pub struct Change {
    /// The cursor of the date's last event in the read.
    pub cursor: Cursor,
    /// Seats and their new status, in commit order (a seat may appear twice).
    pub seats: Vec<(SeatId, u8)>,
    /// A slot where readers keep what they render from this change, once for all.
    pub rendered: OnceLock<String>,
}

/// What a new subscriber starts with.
pub enum Start {
    /// The whole map.
    Snapshot(Arc<Snapshot>),
    /// The changes after the cursor it asked to resume after (possibly none).
    Resume(Vec<Arc<Change>>),
}

/// A subscription to one date's changes.
pub struct Subscription {
    /// What to show first.
    pub start: Start,
    /// The changes after it.
    pub changes: broadcast::Receiver<Arc<Change>>,
}

struct DateMap {
    statuses: Vec<u8>,
    cursor: Cursor,
    /// The snapshot of the current state, made when first asked for.
    snapshot: Option<Arc<Snapshot>>,
    recent: VecDeque<Arc<Change>>,
    /// The cursor the oldest change in `recent` follows: a reader at or after it can
    /// resume from the ring.
    floor: Cursor,
    sender: broadcast::Sender<Arc<Change>>,
}

impl DateMap {
    fn new(statuses: Vec<u8>, cursor: Cursor) -> DateMap {
        DateMap {
            statuses,
            cursor,
            snapshot: None,
            recent: VecDeque::new(),
            floor: cursor,
            sender: broadcast::Sender::new(SUBSCRIBER_BUFFER),
        }
    }

    fn snapshot(&mut self, date_id: DateId) -> Arc<Snapshot> {
        self.snapshot
            .get_or_insert_with(|| {
                Arc::new(Snapshot {
                    date_id,
                    cursor: self.cursor,
                    statuses: self.statuses.as_slice().into(),
                    rendered: OnceLock::new(),
                    compressed: OnceLock::new(),
                })
            })
            .clone()
    }

    fn subscribe(&mut self, date_id: DateId, after: Option<Cursor>) -> Subscription {
        let changes = self.sender.subscribe();
        let start = match after {
            Some(after) if after >= self.floor && after <= self.cursor => Start::Resume(
                self.recent
                    .iter()
                    .filter(|c| c.cursor > after)
                    .cloned()
                    .collect(),
            ),
            _ => Start::Snapshot(self.snapshot(date_id)),
        };
        Subscription { start, changes }
    }

    fn apply(&mut self, change: Change) {
        for (seat, status) in &change.seats {
            if let Some(slot) = (seat.0 as usize)
                .checked_sub(1)
                .and_then(|i| self.statuses.get_mut(i))
            {
                *slot = *status;
            }
        }
        self.cursor = change.cursor;
        self.snapshot = None;
        let change = Arc::new(change);
        if self.recent.len() == CHANGES_KEPT {
            let dropped = self.recent.pop_front().expect("the ring is full");
            self.floor = dropped.cursor;
        }
        self.recent.push_back(change.clone());
        // No subscriber is not an error: nobody is watching this date.
        let _ = self.sender.send(change);
    }
}

/// The committed seat maps of every date.
pub struct SeatMaps {
    engine: Arc<Engine>,
    maps: DashMap<DateId, Arc<Mutex<DateMap>>>,
    /// The last record the task has applied.
    applied_seq: AtomicU64,
}

impl SeatMaps {
    /// Reads every date's map from its view as of the last durable record and starts
    /// the task that follows the feed from there. Call it before the server takes
    /// requests (see the module docs).
    pub fn start(engine: Arc<Engine>, feed: Feed) -> Arc<SeatMaps> {
        let start_seq = feed.durable_seq();
        let cursor = whole_record(start_seq);
        let maps = DashMap::new();
        let now = engine.now();
        for concert in engine.concerts() {
            for date in &concert.dates {
                let statuses = date
                    .view
                    .statuses(now)
                    .map(|(_, status)| status_byte(status))
                    .collect();
                let map = DateMap::new(statuses, cursor);
                maps.insert(date.view.date.id, Arc::new(Mutex::new(map)));
            }
        }
        let maps = Arc::new(SeatMaps {
            engine,
            maps,
            applied_seq: AtomicU64::new(start_seq),
        });
        let position = Position {
            next_seq: start_seq + 1,
            last: None,
        };
        tokio::spawn(follow(Arc::downgrade(&maps), feed, position));
        maps
    }

    /// The whole map of a date, or `None` if there is no such date.
    pub fn snapshot(&self, date: DateId) -> Option<Arc<Snapshot>> {
        let map = self.map(date)?;
        let mut map = map.lock();
        Some(map.snapshot(date))
    }

    /// Subscribes to a date's changes, starting after `after` if the date still keeps
    /// every change since (else with the whole map). `None` if there is no such date.
    pub fn subscribe(&self, date: DateId, after: Option<Cursor>) -> Option<Subscription> {
        let map = self.map(date)?;
        let mut map = map.lock();
        Some(map.subscribe(date, after))
    }

    /// The map of a date, made (all available) if the task has not met the date yet.
    fn map(&self, date: DateId) -> Option<Arc<Mutex<DateMap>>> {
        if let Some(map) = self.maps.get(&date) {
            return Some(map.clone());
        }
        let entry = self.engine.date_by_id(date)?;
        let seats = entry.view.date.layout.seats_total() as usize;
        let map = self.maps.entry(date).or_insert_with(|| {
            let cursor = whole_record(self.applied_seq.load(Ordering::Acquire));
            Arc::new(Mutex::new(DateMap::new(vec![AVAILABLE; seats], cursor)))
        });
        Some(map.clone())
    }

    /// Applies one read of the feed: per date, one change.
    fn apply(&self, events: &[PublicEvent], next_seq: u64) {
        let mut changes: BTreeMap<DateId, Change> = BTreeMap::new();
        for event in events {
            let (facts, status) = match &event.body {
                EventBody::ReservationHeld { reservation, .. } => (reservation, HELD),
                EventBody::ReservationPaid { reservation, .. } => (reservation, SOLD),
                EventBody::ReservationExpired { reservation }
                | EventBody::ReservationCancelled { reservation }
                | EventBody::ReservationRefunded { reservation, .. } => (reservation, AVAILABLE),
                _ => continue,
            };
            let change = changes.entry(facts.date_id).or_insert_with(|| Change {
                cursor: event.cursor,
                seats: Vec::new(),
                rendered: OnceLock::new(),
            });
            change.cursor = event.cursor;
            change
                .seats
                .extend(facts.seat_ids.iter().map(|seat| (*seat, status)));
        }
        for (date, change) in changes {
            match self.map(date) {
                Some(map) => map.lock().apply(change),
                None => tracing::warn!("seat maps: an event for date {date} that is not known"),
            }
        }
        self.applied_seq
            .store(next_seq.saturating_sub(1), Ordering::Release);
    }
}

/// The fan-out task: reads the feed and applies it until the maps are dropped or the
/// server stops.
async fn follow(maps: Weak<SeatMaps>, feed: Feed, mut position: Position) {
    {
        let mut news = feed.subscribe();
        loop {
            news.borrow_and_update();
            match feed.read_async(position, EVENTS_PER_READ_MAX).await {
                Ok((events, next)) if events.is_empty() => {
                    position = next;
                    if let Some(live) = maps.upgrade() {
                        live.apply(&[], position.next_seq);
                    }
                    if news.changed().await.is_err() {
                        return; // The server is stopping.
                    }
                }
                Ok((events, next)) => {
                    position = next;
                    let Some(live) = maps.upgrade() else { return };
                    live.apply(&events, position.next_seq);
                }
                Err(FeedError::Expired { .. }) => {
                    // Only a task stalled for longer than the log keeps gets here. It
                    // reads on from the oldest record kept: a seat's status is set by
                    // its last event, so once caught up every seat that changed since
                    // is right again (until then the maps lag).
                    tracing::error!(
                        "seat maps fell behind the log; reading on from the oldest record kept"
                    );
                    position = feed.position(None).unwrap_or(position);
                }
                Err(FeedError::Unavailable) => tokio::time::sleep(RETRY_AFTER).await,
            }
            if maps.strong_count() == 0 {
                return;
            }
        }
    }
}

/// The cursor a map read as of the end of record `seq` is tagged with: after every
/// event of that record (the largest index a cursor can show), so that a reader
/// holding a cursor inside the record starts again from a whole map rather than miss
/// the rest of it.
fn whole_record(seq: u64) -> Cursor {
    Cursor {
        seq,
        index: 999_999,
    }
}

fn status_byte(status: crate::domain::date::SeatStatus) -> u8 {
    use crate::domain::date::SeatStatus;
    match status {
        SeatStatus::Available => AVAILABLE,
        SeatStatus::Held => HELD,
        SeatStatus::Sold => SOLD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(seq: u64) -> Cursor {
        Cursor { seq, index: 0 }
    }

    fn change(seq: u64, seat: u32, status: u8) -> Change {
        Change {
            cursor: cursor(seq),
            seats: vec![(SeatId(seat), status)],
            rendered: OnceLock::new(),
        }
    }

    fn resumed(subscription: &Subscription) -> Option<Vec<Cursor>> {
        match &subscription.start {
            Start::Resume(changes) => Some(changes.iter().map(|c| c.cursor).collect()),
            Start::Snapshot(_) => None,
        }
    }

    #[test]
    fn a_reader_resumes_from_the_ring_and_starts_over_outside_it() {
        let mut map = DateMap::new(vec![AVAILABLE; 4], whole_record(1));
        map.apply(change(2, 1, HELD));
        map.apply(change(3, 1, SOLD));
        let date = DateId(1);
        assert_eq!(
            resumed(&map.subscribe(date, Some(whole_record(1)))),
            Some(vec![cursor(2), cursor(3)])
        );
        assert_eq!(resumed(&map.subscribe(date, Some(cursor(3)))), Some(vec![]));
        // Inside the record the map started from, before it, or after the last change:
        // the whole map.
        assert_eq!(resumed(&map.subscribe(date, Some(cursor(1)))), None);
        assert_eq!(resumed(&map.subscribe(date, Some(cursor(9)))), None);
        let Start::Snapshot(snapshot) = map.subscribe(date, None).start else {
            panic!("no cursor: the whole map");
        };
        assert_eq!(&snapshot.statuses[..], b"SAAA");
        assert_eq!(snapshot.cursor, cursor(3));
    }

    #[test]
    fn the_ring_keeps_the_newest_changes_and_moves_its_floor() {
        let mut map = DateMap::new(vec![AVAILABLE; 2], whole_record(0));
        for seq in 1..=(CHANGES_KEPT as u64 + 2) {
            map.apply(change(seq, 1 + (seq % 2) as u32, HELD));
        }
        assert_eq!(map.recent.len(), CHANGES_KEPT);
        assert_eq!(map.floor, cursor(2));
        assert_eq!(resumed(&map.subscribe(DateId(1), Some(cursor(1)))), None);
        let from_floor = resumed(&map.subscribe(DateId(1), Some(cursor(2)))).unwrap();
        assert_eq!(from_floor.len(), CHANGES_KEPT);
    }

    #[test]
    fn a_subscriber_a_buffer_behind_is_told_it_lagged() {
        let mut map = DateMap::new(vec![AVAILABLE; 1], whole_record(0));
        let mut subscription = map.subscribe(DateId(1), None);
        for seq in 1..=(SUBSCRIBER_BUFFER as u64 + 1) {
            map.apply(change(seq, 1, if seq % 2 == 0 { AVAILABLE } else { HELD }));
        }
        assert!(matches!(
            subscription.changes.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
    }
}
