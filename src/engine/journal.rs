//! The commit point: every actor hands each batch's events and replies here, and a
//! reply is released only once its batch is committed.
//!
//! This is the seam DESIGN.md rule 2 asks for ("validate, log, then acknowledge"):
//! actors never answer a caller directly. The journal below commits in memory (it
//! counts events and releases replies at once); the durable append log replaces its
//! inside without any actor changing.

use super::Error;
use crate::domain::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// Where batches go to be committed.
#[derive(Clone, Default)]
pub struct Journal {
    events_total: Arc<AtomicU64>,
}

impl Journal {
    /// Commits a batch, then releases its replies.
    pub fn submit(&self, batch: Batch) {
        self.events_total
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        for release in batch.replies {
            release(Ok(()));
        }
    }

    /// Commits events and waits until they are committed (for callers outside actors).
    pub async fn commit(&self, events: Vec<Event>) -> Result<(), Error> {
        let (to, from) = tokio::sync::oneshot::channel();
        let mut batch = Batch {
            events,
            replies: Vec::new(),
        };
        batch.reply(to, Ok(()));
        self.submit(batch);
        from.await.map_err(|_| Error::Unavailable)?
    }

    /// Events committed since start.
    pub fn events_total(&self) -> u64 {
        self.events_total.load(Ordering::Relaxed)
    }
}
