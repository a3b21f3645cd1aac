//! The commit point: every actor hands each batch's events and replies here, and a
//! reply is released only once its batch is committed (validate, log, then
//! acknowledge). Actors never answer a caller directly.
//!
//! Durable, the journal passes each batch to the log ([`crate::store::log`]) as the
//! events plus "release these replies", which the log runs once the batch is durable.
//! In memory (tests, benchmarks of the engine alone) it releases them at once. A batch
//! without events (a read) is released at once either way. Once the write path has
//! stopped, batches with events are answered `Unavailable` and actors refuse
//! mutations before applying them.
//!
//! In front of a replicated log the journal also asks the node's
//! [`Leadership`]: a node that does not lead (a follower, or a leader whose lease
//! lapsed) refuses mutations the same way, answering [`Error::NotLeader`].

use super::Error;
use crate::domain::Event;
use crate::store::leadership::Leadership;
use crate::store::log::{Append, LogHandle};
use crate::store::shadow::SnapshotHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::oneshot;

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

/// A message an actor takes, as the write path sees it: once the write path has stopped,
/// a message that would change state is refused (answered `Unavailable` in the batch,
/// or dropped if nobody waits for it), and a read is still served.
pub trait Gated: Sized {
    /// Refuses the message with `why` if it would change state (returns `None`);
    /// gives a read back.
    fn refuse_mutation(self, batch: &mut Batch, why: Error) -> Option<Self>;
}

/// Where batches go to be committed.
#[derive(Clone)]
pub struct Journal {
    log: Option<(LogHandle, SnapshotHandle)>,
    /// Who may write, when the log is shared with other nodes.
    leadership: Option<Arc<Leadership>>,
    /// Set when an in-memory journal is stopped.
    stopped: Arc<AtomicBool>,
    events_total: Arc<AtomicU64>,
}

impl Journal {
    /// A journal that commits in memory only.
    pub fn in_memory() -> Journal {
        Journal {
            log: None,
            leadership: None,
            stopped: Arc::new(AtomicBool::new(false)),
            events_total: Arc::default(),
        }
    }

    /// A journal in front of a log, with the replica that snapshots it.
    pub fn durable(log: LogHandle, snapshots: SnapshotHandle) -> Journal {
        Journal {
            log: Some((log, snapshots)),
            leadership: None,
            stopped: Arc::new(AtomicBool::new(false)),
            events_total: Arc::default(),
        }
    }

    /// A journal in front of a log shared with other nodes: it takes mutations only
    /// while `leadership` says this node may write.
    pub fn replicated(
        log: LogHandle,
        snapshots: SnapshotHandle,
        leadership: Arc<Leadership>,
    ) -> Journal {
        Journal {
            leadership: Some(leadership),
            ..Journal::durable(log, snapshots)
        }
    }

    /// Whether the write path has stopped (after a write failure or at shutdown), or
    /// this node does not lead the log it shares.
    pub fn is_stopped(&self) -> bool {
        let stopped = match &self.log {
            Some((log, _)) => log.is_stopped(),
            None => self.stopped.load(Ordering::Acquire),
        };
        stopped || self.leadership.as_ref().is_some_and(|l| !l.may_write())
    }

    /// What a refused mutation is answered.
    pub fn refusal(&self) -> Error {
        match &self.leadership {
            Some(_) => Error::NotLeader,
            None => Error::Unavailable,
        }
    }

    /// The message, to be handled; or `None` once it has been refused because the
    /// write path has stopped and it would change state. The one place every actor
    /// decides this.
    pub fn admit<M: Gated>(&self, message: M, batch: &mut Batch) -> Option<M> {
        if self.is_stopped() {
            message.refuse_mutation(batch, self.refusal())
        } else {
            Some(message)
        }
    }

    /// Commits a batch, then releases its replies.
    pub async fn submit(&self, batch: Batch) {
        if batch.events.is_empty() {
            return batch.release(Ok(()));
        }
        if self.is_stopped() {
            return batch.release(Err(self.refusal()));
        }
        self.events_total
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        match &self.log {
            None => batch.release(Ok(())),
            Some((log, _)) => {
                let Batch { events, replies } = batch;
                let refusal = self.refusal();
                let on_durable = Box::new(move |outcome: Result<(), _>| {
                    let outcome = outcome.map_err(|_| refusal);
                    for reply in replies {
                        reply(outcome.clone());
                    }
                });
                log.append(Append { events, on_durable }).await;
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
        let (_, snapshots) = self.log.as_ref().ok_or(Error::Unavailable)?;
        snapshots.snapshot().await.map_err(|_| Error::Unavailable)
    }

    /// Stops the write path: what is queued is written, a final snapshot is taken and
    /// the data directory is released. Later mutations are answered `Unavailable`.
    pub async fn stop(&self) {
        match &self.log {
            Some((log, _)) => log.stop().await,
            None => self.stopped.store(true, Ordering::Release),
        }
    }

    /// Events committed since start.
    pub fn events_total(&self) -> u64 {
        self.events_total.load(Ordering::Relaxed)
    }
}
