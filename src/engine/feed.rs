//! [`Feed`]: the log read as public events ([`crate::domain::public`]), for the admin
//! event feed (pages and Server-Sent Events) and the outbox to NATS JetStream.
//!
//! The feed follows durable records only: the newest from memory (the store's
//! [`Tail`], filled by a tap after each fsync), older ones from the log files, so a
//! reader may be as far behind as the data directory still reaches: records stay
//! readable until their log segment is pruned behind the older of the two kept
//! snapshots. A reader asking for less gets [`FeedError::Expired`] with the oldest
//! cursor still kept. Every reader reads at its own pace; nothing it does reaches the
//! writer.
//!
//! Reservation details that a record does not carry (whose hold expired, which seats
//! a payment sold) come from the [`ReservationIndex`], which holds every reservation
//! ever made, unchanged in those details, so reading a record twice gives the same
//! events.

use super::views::ReservationIndex;
use crate::domain::public::{Cursor, Numbering, PublicEvent, public_events};
use crate::domain::{Event, ReservationId};
use crate::store::reader::{self, ReadError};
use crate::store::tail::Tail;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Records read from memory or disk at once.
const RECORDS_PER_READ: usize = 1024;
/// Most events in one read.
pub const EVENTS_PER_READ_MAX: usize = 1000;

/// Why the feed could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The cursor is older than what the data directory still holds (the oldest
    /// cursor kept: [`Feed::oldest_cursor`]).
    #[error("the cursor is older than the oldest event kept")]
    Expired {
        /// Not filled in by reads: ask [`Feed::oldest_cursor`].
        oldest: Option<Cursor>,
    },
    /// The log files could not be read (details in the server's log).
    #[error("the event feed is unavailable")]
    Unavailable,
}

/// Where a reader is: the next record to read, and the last event it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next log record to read.
    pub next_seq: u64,
    /// The cursor of the last event given (events of `next_seq`'s record at or before
    /// it are skipped).
    pub last: Option<Cursor>,
}

/// The event feed.
#[derive(Clone)]
pub struct Feed {
    tail: Arc<Tail>,
    dir: Option<PathBuf>,
    index: Arc<ReservationIndex>,
}

impl Feed {
    /// A feed of the log in `dir` (none: in memory only) whose newest records are in
    /// `tail`.
    pub fn new(tail: Arc<Tail>, dir: Option<PathBuf>, index: Arc<ReservationIndex>) -> Feed {
        Feed { tail, dir, index }
    }

    /// The last durable log sequence number.
    pub fn durable_seq(&self) -> u64 {
        self.tail.durable_seq()
    }

    /// A watch of the last durable log sequence number (to wait for news).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tail.subscribe()
    }

    /// Where a reader starting after `after` stands (`None`: from the oldest event
    /// kept).
    pub fn position(&self, after: Option<Cursor>) -> Result<Position, FeedError> {
        Ok(match after {
            // Sequence numbers start at 1: a cursor of record 0 is before them all.
            Some(cursor) => Position {
                next_seq: cursor.seq.max(1),
                last: Some(cursor),
            },
            None => Position {
                next_seq: self.oldest_seq()?,
                last: None,
            },
        })
    }

    /// Up to `limit` events from `position` on, and the position after them. Reads
    /// files: call it off the async workers (see [`Feed::read_async`]).
    pub fn read(
        &self,
        position: Position,
        limit: usize,
    ) -> Result<(Vec<PublicEvent>, Position), FeedError> {
        let read = self.read_through(position, limit, |seq, durable| {
            self.records(seq, durable).map(Some)
        })?;
        // Records come from memory or files, so every one is at hand.
        Ok(read.unwrap_or((Vec::new(), position)))
    }

    /// [`Feed::read`], from memory on this task when the tail holds the records (a
    /// reader that keeps up: no crossing to another thread for each commit), else
    /// from the files on a blocking thread.
    pub async fn read_async(
        &self,
        position: Position,
        limit: usize,
    ) -> Result<(Vec<PublicEvent>, Position), FeedError> {
        let in_memory = self.read_through(position, limit, |seq, _| {
            Ok(self.tail.since(seq, RECORDS_PER_READ))
        });
        if let Some(read) = in_memory.transpose() {
            return read;
        }
        let feed = self.clone();
        tokio::task::spawn_blocking(move || feed.read(position, limit))
            .await
            .map_err(|_| FeedError::Unavailable)?
    }

    /// Up to `limit` events from `position` on, reading records (from `seq` on, up to
    /// the durable `durable`) with `records`; `None` if `records` did not have the
    /// first of them at hand. Should it lack later ones, what was read so far.
    fn read_through(
        &self,
        position: Position,
        limit: usize,
        records: impl Fn(u64, u64) -> Result<Option<Vec<(u64, Event)>>, FeedError>,
    ) -> Result<Option<(Vec<PublicEvent>, Position)>, FeedError> {
        let limit = limit.min(EVENTS_PER_READ_MAX);
        let durable = self.durable_seq();
        let mut numbering = Numbering {
            last: position.last,
        };
        let mut next = position;
        let mut out = Vec::new();
        while out.len() < limit && next.next_seq <= durable {
            let Some(records) = records(next.next_seq, durable)? else {
                if next == position {
                    return Ok(None);
                }
                break;
            };
            if records.is_empty() {
                break;
            }
            for (seq, event) in records {
                let events = public_events(&event, &|id| self.reservation(id));
                let mut fresh = numbering.record(seq, events, next.last);
                let room = limit - out.len();
                if fresh.len() > room {
                    // The rest of this record's events come with the next read.
                    fresh.truncate(room);
                    next.last = fresh.last().map(|e| e.cursor).or(next.last);
                    out.extend(fresh);
                    return Ok(Some((out, next)));
                }
                next = Position {
                    next_seq: seq + 1,
                    last: fresh.last().map(|e| e.cursor).or(next.last),
                };
                out.extend(fresh);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(Some((out, next)))
    }

    /// The cursor of the oldest event kept.
    pub fn oldest_cursor(&self) -> Option<Cursor> {
        let position = self.position(None).ok()?;
        let (events, _) = self.read(position, 1).ok()?;
        events.first().map(|e| e.cursor)
    }

    fn reservation(&self, id: ReservationId) -> Option<crate::domain::date::Reservation> {
        self.index.get(id)
    }

    fn oldest_seq(&self) -> Result<u64, FeedError> {
        if let Some(dir) = &self.dir {
            let oldest = reader::oldest_seq(dir).map_err(|e| {
                tracing::error!("event feed: {e}");
                FeedError::Unavailable
            })?;
            if let Some(oldest) = oldest {
                return Ok(oldest);
            }
        }
        // Without files (a cluster node): as far back as memory reaches.
        Ok(self
            .tail
            .oldest_seq()
            .unwrap_or_else(|| self.durable_seq() + 1))
    }

    /// Records from `seq` on (at most up to `durable`): from memory when the tail
    /// still holds them, else from the files.
    fn records(&self, seq: u64, durable: u64) -> Result<Vec<(u64, Event)>, FeedError> {
        if let Some(records) = self.tail.since(seq, RECORDS_PER_READ) {
            return Ok(records);
        }
        let Some(dir) = &self.dir else {
            return Err(FeedError::Expired { oldest: None });
        };
        match reader::read(dir, seq, durable, RECORDS_PER_READ) {
            Ok(records) => Ok(records),
            Err(ReadError::Pruned { .. }) => Err(FeedError::Expired { oldest: None }),
            Err(ReadError::Store(e)) => {
                tracing::error!("event feed: {e}");
                Err(FeedError::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::queue::QueueEvent;
    use crate::domain::{ConcertId, UserId};
    use crate::store::log::Tap;
    use crate::store::tail::TailTap;

    /// A feed without files whose tail holds records 5 to 14 (the 4 before it are gone).
    fn feed() -> Feed {
        let tail = Tail::new(4);
        let mut tap = TailTap(tail.clone());
        for first in [5, 10] {
            let events: Vec<Event> = (first..first + 5)
                .map(|user| Event::Queue(ConcertId(1), QueueEvent::Left { user: UserId(user) }))
                .collect();
            tap.committed(first, &events.into());
        }
        Feed::new(tail, None, Arc::default())
    }

    fn from(next_seq: u64) -> Position {
        Position {
            next_seq,
            last: None,
        }
    }

    #[tokio::test]
    async fn a_reader_the_tail_holds_reads_from_memory_what_a_read_gives() {
        let feed = feed();
        for (start, limit) in [(5, 1000), (7, 3), (12, 1000), (15, 1000)] {
            let read = feed.read(from(start), limit).unwrap();
            let in_memory = feed
                .read_through(from(start), limit, |seq, _| {
                    Ok(feed.tail.since(seq, RECORDS_PER_READ))
                })
                .unwrap();
            assert_eq!(
                in_memory.as_ref(),
                Some(&read),
                "from {start}, {limit} at most"
            );
            assert_eq!(feed.read_async(from(start), limit).await.unwrap(), read);
        }
        let (events, next) = feed.read(from(7), 3).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(next.next_seq, 10);
    }

    #[tokio::test]
    async fn a_reader_behind_the_tail_is_sent_to_the_files() {
        let feed = feed();
        let in_memory = feed
            .read_through(from(3), 1000, |seq, _| {
                Ok(feed.tail.since(seq, RECORDS_PER_READ))
            })
            .unwrap();
        assert_eq!(in_memory, None, "memory does not hold record 3");
        // Without files, older records are gone.
        assert!(matches!(
            feed.read_async(from(3), 1000).await,
            Err(FeedError::Expired { .. })
        ));
    }
}
