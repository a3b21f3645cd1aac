//! The log seam: where committed batches go.
//!
//! The engine's journal hands each actor's batch to a [`LogHandle`] as an [`Append`]:
//! the events, in order, and what to do once they are durable. One OS thread, the
//! group-commit driver, takes appends in arrival order, numbers their events, and hands
//! every append that is waiting to the [`Log`] in one call. Once the log says they are
//! durable, it passes the events to every [`Tap`] (in log order), then runs the
//! appends' completions, so a tap has seen every event anybody was told about. Started
//! from a tokio runtime (the server), it hands each commit's completions to one task
//! on that runtime, which runs them in commit order: one wake-up per commit crosses
//! from the writer thread, instead of one per waiting caller.
//!
//! - [`Log`] is the small interface a log implements: make these numbered events
//!   durable after everything before them, or fail. [`super::file_log::FileLog`]
//!   (segments on local disk, one write and one fdatasync per call) is the default;
//!   [`super::nats_log::NatsLog`] (one NATS JetStream message per call, fenced by
//!   expected sequence) is the replicated one.
//! - A follower of a replicated log appends nothing: the events other nodes logged
//!   reach the taps through [`LogHandle::followed`], in log order, and the next append
//!   (once it leads) follows them.
//! - [`Tap`] follows durable events in log order: the snapshot replica
//!   ([`super::shadow`]) is one. A tap must keep up or buffer; it is called on the
//!   driver's thread.
//!
//! A failed append stops the write path for good: its completions and every later one
//! get [`LogError::Stopped`]; nothing is retried as if it had worked. The actors had
//! already applied that batch in memory, so reads may show it until the process
//! restarts and recovers the durable prefix; the operator's cue is
//! `boxoffice_write_path_up 0` in `/metrics` and the error in the log.

use super::{StoreError, StoreMetrics};
use crate::domain::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Appends waiting for the driver before submitters wait.
pub const INBOX_LEN: usize = 4096;
/// Most appends handed to the log in one call.
pub const APPENDS_PER_WRITE_MAX: usize = 4096;

/// Why an append did not become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The write path has stopped (after a failed write, or at shutdown).
    #[error("the write path has stopped")]
    Stopped,
}

/// What to do once an append is durable (`Ok`) or can no longer become durable.
pub type OnDurable = Box<dyn FnOnce(Result<(), LogError>) + Send>;

/// A batch of events to make durable, in order, and what to do then.
pub struct Append {
    /// The events, in the order they were applied.
    pub events: Vec<Event>,
    /// Called once, after the events are durable or with why they are not.
    pub on_durable: OnDurable,
}

/// A log: makes numbered events durable, in order.
pub trait Log: Send + 'static {
    /// Makes the events of `appends` durable as records `first_seq`, `first_seq + 1`,
    /// ... after every record appended before. Returns only when they are durable (or
    /// with the error that stops the write path).
    fn append(&mut self, first_seq: u64, appends: &[Append]) -> Result<(), StoreError>;

    /// The write path stops: release what the log holds (files, locks).
    fn close(&mut self) {}
}

/// A follower of durable events, in log order.
pub trait Tap: Send + 'static {
    /// Durable events; the first has sequence number `first_seq`. Called before
    /// anybody is told of them.
    fn committed(&mut self, first_seq: u64, events: &Arc<[Event]>);

    /// Nothing more will come: finish (the snapshot replica writes its final snapshot
    /// here) and return when done.
    fn stop(&mut self) {}
}

enum ToLog {
    Append(Append),
    /// Events another node appended to a shared log, for the taps.
    Followed(u64, Arc<[Event]>),
    Stop(oneshot::Sender<()>),
}

/// The way to a running log. Cloning is cheap.
#[derive(Clone)]
pub struct LogHandle {
    inbox: mpsc::Sender<ToLog>,
    stopped: Arc<AtomicBool>,
}

impl LogHandle {
    /// Starts the group-commit driver for `log` on its own OS thread; the next record
    /// gets `next_seq`, and `taps` see every durable event.
    pub fn spawn(
        log: impl Log,
        next_seq: u64,
        taps: Vec<Box<dyn Tap>>,
        metrics: Arc<StoreMetrics>,
    ) -> std::io::Result<LogHandle> {
        let stopped = Arc::new(AtomicBool::new(false));
        // Started from a runtime (the server), completions are run on it.
        let releaser = tokio::runtime::Handle::try_current()
            .ok()
            .map(|runtime| Releaser::spawn(&runtime));
        let driver = Driver {
            log: Box::new(log),
            taps,
            next_seq,
            stopped: stopped.clone(),
            metrics,
            releaser,
        };
        let (inbox, receiver) = mpsc::channel(INBOX_LEN);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || driver.run(receiver))?;
        Ok(LogHandle { inbox, stopped })
    }

    /// Whether the write path has stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Queues an append; its completion runs once it is durable (or cannot be).
    pub async fn append(&self, append: Append) {
        if let Err(mpsc::error::SendError(ToLog::Append(append))) =
            self.inbox.send(ToLog::Append(append)).await
        {
            (append.on_durable)(Err(LogError::Stopped));
        }
    }

    /// Hands the taps events that another node appended to a shared log (a follower
    /// of a replicated log); the first has sequence number `first_seq`, and the next
    /// append here follows them.
    pub async fn followed(&self, first_seq: u64, events: Arc<[Event]>) {
        // A stopped driver has no taps left to tell.
        let _ = self.inbox.send(ToLog::Followed(first_seq, events)).await;
    }

    /// Stops the write path: what is queued is appended, the taps finish (a final
    /// snapshot), and the log is closed. Later appends get [`LogError::Stopped`].
    pub async fn stop(&self) {
        let (to, from) = oneshot::channel();
        if self.inbox.send(ToLog::Stop(to)).await.is_ok() {
            let _ = from.await;
        }
    }
}

struct Driver {
    log: Box<dyn Log>,
    taps: Vec<Box<dyn Tap>>,
    next_seq: u64,
    stopped: Arc<AtomicBool>,
    metrics: Arc<StoreMetrics>,
    releaser: Option<Releaser>,
}

impl Driver {
    fn run(mut self, mut inbox: mpsc::Receiver<ToLog>) {
        let mut appends = Vec::new();
        let mut stop_reply = None;
        while let Some(mut message) = inbox.blocking_recv() {
            loop {
                match message {
                    ToLog::Append(append) => appends.push(append),
                    ToLog::Followed(first_seq, events) => {
                        self.commit(&mut appends);
                        self.followed(first_seq, &events);
                    }
                    ToLog::Stop(reply) => stop_reply = Some(reply),
                }
                if stop_reply.is_some() || appends.len() >= APPENDS_PER_WRITE_MAX {
                    break;
                }
                match inbox.try_recv() {
                    Ok(next) => message = next,
                    Err(_) => break,
                }
            }
            self.commit(&mut appends);
            if stop_reply.is_some() {
                break;
            }
        }
        self.stopped.store(true, Ordering::Release);
        // Callers still queued get a clear answer rather than a dropped completion.
        inbox.close();
        while let Ok(message) = inbox.try_recv() {
            if let ToLog::Append(append) = message {
                (append.on_durable)(Err(LogError::Stopped));
            }
        }
        for tap in &mut self.taps {
            tap.stop();
        }
        // Release the files and the directory lock before saying we stopped, so a
        // caller may reopen the directory the moment it hears back.
        self.log.close();
        drop(self);
        if let Some(reply) = stop_reply {
            // The caller may have stopped waiting; that is fine.
            let _ = reply.send(());
        }
    }

    /// Passes events another node appended to the taps, in log order.
    fn followed(&mut self, first_seq: u64, events: &Arc<[Event]>) {
        assert_eq!(first_seq, self.next_seq, "followed events come in sequence");
        self.next_seq += events.len() as u64;
        for tap in &mut self.taps {
            tap.committed(first_seq, events);
        }
    }

    /// Hands every gathered append to the log in one call, then to the taps, then
    /// runs their completions.
    fn commit(&mut self, appends: &mut Vec<Append>) {
        if appends.is_empty() {
            return;
        }
        if self.stopped.load(Ordering::Acquire) {
            return fail(appends);
        }
        let first_seq = self.next_seq;
        if let Err(e) = self.log.append(first_seq, appends) {
            tracing::error!("{e}; the write path is stopped");
            self.stopped.store(true, Ordering::Release);
            return fail(appends);
        }
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        self.next_seq += count as u64;
        self.metrics.commit_batch_events.observe(count as f64);
        let mut events = Vec::with_capacity(count);
        let mut completions = Vec::with_capacity(appends.len());
        for append in appends.drain(..) {
            events.extend(append.events);
            completions.push(append.on_durable);
        }
        let events: Arc<[Event]> = events.into();
        for tap in &mut self.taps {
            tap.committed(first_seq, &events);
        }
        match &self.releaser {
            Some(releaser) => releaser.release(completions),
            None => release(completions),
        }
    }
}

/// Runs the completions of durable appends on a task of the runtime the log was
/// started from, in commit order: the writer thread hands each commit's completions
/// over with one wake-up, and the callers' tasks they wake are then woken from a
/// worker thread (into its own run queue) rather than one by one from outside the
/// runtime. Its channel is unbounded, but what waits in it is bounded by what is in
/// flight: each completion is an append whose caller still waits for it.
struct Releaser(mpsc::UnboundedSender<Vec<OnDurable>>);

impl Releaser {
    fn spawn(runtime: &tokio::runtime::Handle) -> Releaser {
        let (to_release, mut releases) = mpsc::unbounded_channel::<Vec<OnDurable>>();
        runtime.spawn(async move {
            while let Some(completions) = releases.recv().await {
                release(completions);
            }
        });
        Releaser(to_release)
    }

    /// Hands `completions` to the task; runs them here if the runtime is gone.
    fn release(&self, completions: Vec<OnDurable>) {
        if let Err(mpsc::error::SendError(completions)) = self.0.send(completions) {
            release(completions);
        }
    }
}

/// Tells every completion its append is durable.
fn release(completions: Vec<OnDurable>) {
    for on_durable in completions {
        on_durable(Ok(()));
    }
}

fn fail(appends: &mut Vec<Append>) {
    for append in appends.drain(..) {
        (append.on_durable)(Err(LogError::Stopped));
    }
}
