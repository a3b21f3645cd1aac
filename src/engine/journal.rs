//! The commit point: every actor hands each batch's events and replies here, and a
//! reply is released only once its batch is committed (DESIGN.md rule 2: validate,
//! log, then acknowledge). Actors never answer a caller directly.
//!
//! Durable, the journal passes batches to the log writer ([`crate::store::log`]),
//! which releases replies after the fsync. In memory (tests, benchmarks of the engine
//! alone) it releases them at once. A batch without events (a read) is released at
//! once either way. Once the write path has stopped, batches with events are answered
//! `Unavailable` and actors refuse mutations before applying them.

use super::Error;
use crate::domain::Event;
use crate::store::log::ToWriter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A reply waiting for its batch to commit: called with the commit's outcome.
pub type Release = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// One actor's output for one batch of messages.
#[derive(Default)]
pub struct Batch {
    /// Events in the order they were applied.
    pub events: Vec<Event>,
    /// Replies to send once the events are committed.
    pub replies: Vec<Release>,
}

impl Batch {
    /// Queues a reply to a caller, sent when the batch commits (or an error if it can't).
    pub fn reply<T: Send + 'static>(&mut self, to: super::Reply<T>, result: Result<T, Error>) {
        self.replies.push(Box::new(move |committed| {
            // A caller that stopped waiting (a dropped receiver) is not an error.
            let _ = to.send(committed.and(result));
        }));
    }

    /// Adds an event.
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    fn release(self, outcome: Result<(), Error>) {
        for reply in self.replies {
            reply(outcome.clone());
        }
    }
}

/// Where batches go to be committed.
#[derive(Clone)]
pub struct Journal {
    writer: Option<mpsc::Sender<ToWriter>>,
    stopped: Arc<AtomicBool>,
    events_total: Arc<AtomicU64>,
}

impl Journal {
    /// A journal that commits in memory only.
    pub fn in_memory() -> Journal {
        Journal {
            writer: None,
            stopped: Arc::new(AtomicBool::new(false)),
            events_total: Arc::default(),
        }
    }

    /// A journal in front of the log writer.
    pub fn durable(writer: mpsc::Sender<ToWriter>, stopped: Arc<AtomicBool>) -> Journal {
        Journal {
            writer: Some(writer),
            stopped,
            events_total: Arc::default(),
        }
    }

    /// Whether the write path has stopped (after a write failure or at shutdown).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Commits a batch, then releases its replies.
    pub async fn submit(&self, batch: Batch) {
        if batch.events.is_empty() {
            return batch.release(Ok(()));
        }
        if self.is_stopped() {
            return batch.release(Err(Error::Unavailable));
        }
        self.events_total
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        match &self.writer {
            None => batch.release(Ok(())),
            Some(writer) => {
                if let Err(mpsc::error::SendError(ToWriter::Batch(batch))) =
                    writer.send(ToWriter::Batch(batch)).await
                {
                    batch.release(Err(Error::Unavailable));
                }
            }
        }
    }

    /// Commits events and waits until they are committed (for callers outside actors).
    pub async fn commit(&self, events: Vec<Event>) -> Result<(), Error> {
        let (to, from) = oneshot::channel();
        let mut batch = Batch {
            events,
            replies: Vec::new(),
        };
        batch.reply(to, Ok(()));
        self.submit(batch).await;
        from.await.map_err(|_| Error::Unavailable)?
    }

    /// Writes a snapshot of everything committed so far; answers its sequence number.
    pub async fn snapshot(&self) -> Result<u64, Error> {
        let writer = self.writer.as_ref().ok_or(Error::Unavailable)?;
        let (to, from) = oneshot::channel();
        writer
            .send(ToWriter::Snapshot(to))
            .await
            .map_err(|_| Error::Unavailable)?;
        from.await.map_err(|_| Error::Unavailable)?
    }

    /// Stops the write path: what is queued is written, a final snapshot is taken and
    /// the data directory is released. Later mutations are answered `Unavailable`.
    pub async fn stop(&self) {
        let Some(writer) = &self.writer else {
            self.stopped.store(true, Ordering::Release);
            return;
        };
        let (to, from) = oneshot::channel();
        if writer.send(ToWriter::Stop(to)).await.is_ok() {
            let _ = from.await;
        }
    }

    /// Events committed since start.
    pub fn events_total(&self) -> u64 {
        self.events_total.load(Ordering::Relaxed)
    }
}
