//! [`Tail`]: the newest durable records, in memory, for readers that follow the log
//! (the event feed, the outbox). A [`Tap`] fills it on the log-writer thread after each
//! fsync; it keeps at most [`TAIL_EVENTS_MAX`] events and drops the oldest batches
//! first, whoever is still reading: a reader that falls behind the tail continues from
//! the log files ([`super::reader`]), so no reader ever slows the writer.
//!
//! Readers wait for news with [`Tail::subscribe`]: a watch of the last durable
//! sequence number.

use super::log::Tap;
use crate::domain::Event;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;

/// Most events the tail keeps in memory.
pub const TAIL_EVENTS_MAX: usize = 65_536;

/// The newest durable records.
pub struct Tail {
    batches: Mutex<Batches>,
    durable: watch::Sender<u64>,
}

#[derive(Default)]
struct Batches {
    /// Each batch's first sequence number and its events, oldest first, contiguous.
    list: VecDeque<(u64, Arc<[Event]>)>,
    events: usize,
}

impl Tail {
    /// An empty tail after the durable record `last_seq` (0: none yet).
    pub fn new(last_seq: u64) -> Arc<Tail> {
        Arc::new(Tail {
            batches: Mutex::default(),
            durable: watch::Sender::new(last_seq),
        })
    }

    /// The last durable sequence number.
    pub fn durable_seq(&self) -> u64 {
        *self.durable.borrow()
    }

    /// A watch of the last durable sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The oldest record it holds, if any.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.batches.lock().list.front().map(|(first, _)| *first)
    }

    /// Records from `seq` on, up to `max` of them (at least the whole batch holding
    /// `seq`), each with its sequence number; `None` if the tail no longer (or not yet)
    /// holds `seq` and it is not past the end.
    pub fn since(&self, seq: u64, max: usize) -> Option<Vec<(u64, Event)>> {
        let batches = self.batches.lock();
        let first = batches.list.front().map(|(first, _)| *first);
        if seq > self.durable_seq() {
            return Some(Vec::new());
        }
        if first.is_none_or(|first| seq < first) {
            return None;
        }
        let mut out = Vec::new();
        for (first, events) in &batches.list {
            let end = first + events.len() as u64;
            if end <= seq {
                continue;
            }
            let skip = seq.saturating_sub(*first) as usize;
            out.extend(
                (*first..)
                    .zip(events.iter())
                    .skip(skip)
                    .map(|(s, e)| (s, e.clone())),
            );
            if out.len() >= max {
                break;
            }
        }
        Some(out)
    }

    fn push(&self, first_seq: u64, events: &Arc<[Event]>) {
        let mut batches = self.batches.lock();
        batches.list.push_back((first_seq, events.clone()));
        batches.events += events.len();
        while batches.events > TAIL_EVENTS_MAX && batches.list.len() > 1 {
            let (_, dropped) = batches.list.pop_front().expect("more than one batch");
            batches.events -= dropped.len();
        }
        drop(batches);
        self.durable
            .send_replace(first_seq + events.len() as u64 - 1);
    }
}

/// Fills a [`Tail`] from the log.
pub struct TailTap(pub Arc<Tail>);

impl Tap for TailTap {
    fn committed(&mut self, first_seq: u64, events: &Arc<[Event]>) {
        if !events.is_empty() {
            self.0.push(first_seq, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::queue::QueueEvent;
    use crate::domain::{ConcertId, UserId};

    fn batch(n: usize) -> Arc<[Event]> {
        (0..n)
            .map(|i| {
                Event::Queue(
                    ConcertId(1),
                    QueueEvent::Left {
                        user: UserId(i as u64),
                    },
                )
            })
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn the_tail_gives_records_from_a_sequence_number_and_says_when_it_no_longer_holds_it() {
        let tail = Tail::new(10);
        assert_eq!(
            tail.since(11, 100),
            Some(vec![]),
            "nothing durable past the end"
        );
        assert_eq!(tail.since(5, 100), None, "before the tail: read the files");
        assert_eq!(tail.oldest_seq(), None);
        let mut tap = TailTap(tail.clone());
        tap.committed(11, &batch(3));
        assert_eq!(tail.oldest_seq(), Some(11));
        tap.committed(14, &batch(2));
        assert_eq!(tail.durable_seq(), 15);
        let seqs =
            |records: Vec<(u64, Event)>| records.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(seqs(tail.since(12, 100).unwrap()), [12, 13, 14, 15]);
        assert_eq!(seqs(tail.since(15, 100).unwrap()), [15]);
        assert_eq!(tail.since(16, 100), Some(vec![]));
    }

    #[test]
    fn the_tail_drops_its_oldest_batches_past_its_limit() {
        let tail = Tail::new(0);
        let mut tap = TailTap(tail.clone());
        let size = TAIL_EVENTS_MAX / 4;
        for i in 0..6u64 {
            tap.committed(1 + i * size as u64, &batch(size));
        }
        let first_kept = 1 + 2 * size as u64;
        assert_eq!(tail.since(first_kept - 1, 1), None);
        assert_eq!(tail.oldest_seq(), Some(first_kept));
        assert_eq!(tail.since(first_kept, 1).unwrap()[0].0, first_kept);
        assert_eq!(tail.durable_seq(), 6 * size as u64);
    }
}
