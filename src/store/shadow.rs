//! The shadow replica: one OS thread that applies every durable event, in log order,
//! to an [`Image`] and writes snapshots from it. Because it follows the log rather than
//! the actors, each snapshot is exactly the state after a prefix of the log, and taking
//! one never pauses an actor. After a snapshot it removes the log segments that the
//! oldest kept snapshot makes unnecessary. Its image is an [`Image::replica`]: it takes
//! no command, so it keeps none of what only commands look up.
//!
//! The log's driver feeds it through [`ShadowTap`] (a [`Tap`]) before any caller is told
//! of the events, so a snapshot asked for through [`SnapshotHandle`] after a reply
//! includes what that reply acknowledged.

use super::log::{LogError, Tap};
use super::{StoreMetrics, snapshot};
use crate::domain::{Event, Image, Rules};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Messages (each a whole commit's events) the replica may fall behind by.
pub const INBOX_LEN: usize = 4096;

/// Once it has applied everything sent so far, how long the replica lets commits gather
/// before it looks again: in a sale, a commit every millisecond or so would otherwise
/// wake its thread once each (a context switch per commit on a small machine). A
/// snapshot asked for waits at most this much longer.
const GATHER: Duration = Duration::from_millis(10);

/// What the replica is told.
enum ShadowMessage {
    /// Durable events, the first with sequence number `first_seq`.
    Events {
        first_seq: u64,
        events: Arc<[Event]>,
    },
    /// Take a snapshot now.
    Snapshot(oneshot::Sender<Result<u64, LogError>>),
    /// Take a final snapshot if anything changed, then stop.
    Stop(std::sync::mpsc::Sender<()>),
}

/// The replica and when to snapshot it.
pub struct Shadow {
    /// The replicated state.
    pub image: Image,
    /// The limits (for owners created by replayed events).
    pub rules: Rules,
    /// The data directory.
    pub dir: PathBuf,
    /// Snapshot after this many events.
    pub every_events: u64,
    /// Snapshot at least this often when something changed.
    pub interval: Duration,
    /// The sequence number of the newest snapshot on disk (0: none).
    pub snapshot_seq: u64,
    /// Where snapshot timings and sizes go.
    pub metrics: Arc<StoreMetrics>,
}

/// Feeds durable events to the replica (the log's driver calls it).
pub struct ShadowTap {
    inbox: SyncSender<ShadowMessage>,
}

/// Asks the replica for a snapshot.
#[derive(Clone)]
pub struct SnapshotHandle {
    inbox: SyncSender<ShadowMessage>,
}

impl SnapshotHandle {
    /// Writes a snapshot of everything acknowledged so far; answers its sequence number.
    pub async fn snapshot(&self) -> Result<u64, LogError> {
        let (to, from) = oneshot::channel();
        let inbox = self.inbox.clone();
        // The inbox is a bounded std channel: wait for room off the async workers.
        let sent = tokio::task::spawn_blocking(move || inbox.send(ShadowMessage::Snapshot(to)));
        match sent.await {
            Ok(Ok(())) => from.await.map_err(|_| LogError::Stopped)?,
            _ => Err(LogError::Stopped),
        }
    }
}

impl Tap for ShadowTap {
    fn committed(&mut self, first_seq: u64, events: &Arc<[Event]>) {
        let message = ShadowMessage::Events {
            first_seq,
            events: events.clone(),
        };
        if self.inbox.send(message).is_err() {
            tracing::error!("the snapshot thread is gone; no more snapshots will be taken");
        }
    }

    fn stop(&mut self) {
        let (done, finished) = std::sync::mpsc::channel();
        if self.inbox.send(ShadowMessage::Stop(done)).is_ok() {
            let _ = finished.recv();
        }
    }
}

impl Shadow {
    /// Starts the replica on its own OS thread.
    pub fn spawn(self) -> std::io::Result<(ShadowTap, SnapshotHandle)> {
        let (inbox, receiver) = std::sync::mpsc::sync_channel(INBOX_LEN);
        std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || self.run(receiver))?;
        Ok((
            ShadowTap {
                inbox: inbox.clone(),
            },
            SnapshotHandle { inbox },
        ))
    }

    /// Runs the replica until told to stop (or every sender is gone).
    fn run(mut self, inbox: Receiver<ShadowMessage>) {
        let mut last_snapshot = Instant::now();
        // The last sequence number a snapshot was tried at: a failed one is not retried
        // before more events or the interval call for one.
        let mut tried_seq = self.snapshot_seq;
        // Whether events were applied since the replica last let commits gather.
        let mut applied = false;
        loop {
            let wait = self.interval.saturating_sub(last_snapshot.elapsed());
            let message = match inbox.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Empty) if applied => {
                    applied = false;
                    std::thread::sleep(GATHER.min(wait));
                    continue;
                }
                Err(TryRecvError::Empty) => inbox.recv_timeout(wait),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            let due = match message {
                Ok(ShadowMessage::Events { first_seq, events }) => {
                    for (seq, event) in (first_seq..).zip(events.iter()) {
                        self.image.apply(seq, event, &self.rules);
                    }
                    applied = true;
                    self.show_backlog();
                    self.image.seq - tried_seq >= self.every_events
                }
                Ok(ShadowMessage::Snapshot(reply)) => {
                    let result = self.snapshot().map_err(|()| LogError::Stopped);
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(result);
                    tried_seq = self.image.seq;
                    last_snapshot = Instant::now();
                    false
                }
                Ok(ShadowMessage::Stop(done)) => {
                    if self.image.seq > self.snapshot_seq {
                        let _ = self.snapshot();
                    }
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.image.seq > tried_seq,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if due {
                let _ = self.snapshot();
                tried_seq = self.image.seq;
                last_snapshot = Instant::now();
            } else if last_snapshot.elapsed() >= self.interval {
                last_snapshot = Instant::now();
            }
        }
    }

    fn show_backlog(&self) {
        let backlog = self.image.seq - self.snapshot_seq;
        self.metrics
            .events_since_snapshot
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// Writes a snapshot of the replica and prunes the log behind the older kept one.
    /// A failure is logged; the next snapshot tries again.
    fn snapshot(&mut self) -> Result<u64, ()> {
        let started = Instant::now();
        let result = snapshot::write(&self.dir, &self.image)
            .and_then(|(oldest_kept, bytes)| self.prune_log(oldest_kept).map(|()| bytes));
        match result {
            Ok(bytes) => {
                let elapsed = started.elapsed();
                self.metrics.snapshot_seconds.observe(elapsed.as_secs_f64());
                self.metrics
                    .snapshot_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                tracing::info!(
                    seq = self.image.seq,
                    bytes,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "snapshot written"
                );
                self.snapshot_seq = self.image.seq;
                self.show_backlog();
                Ok(self.image.seq)
            }
            Err(e) => {
                tracing::error!("snapshot failed: {e}");
                Err(())
            }
        }
    }

    /// Removes segments whose every record is at or below `oldest_kept`.
    fn prune_log(&self, oldest_kept: u64) -> Result<(), super::StoreError> {
        let segments = snapshot::numbered_files(&self.dir, ".log")?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= oldest_kept + 1 {
                std::fs::remove_file(path).map_err(super::StoreError::io(path))?;
            }
        }
        Ok(())
    }
}
