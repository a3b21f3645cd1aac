//! The shadow replica: one OS thread that applies every durable event, in log order,
//! to an [`Image`] and writes snapshots from it. Because it follows the log rather than
//! the actors, each snapshot is exactly the state after a prefix of the log, and taking
//! one never pauses an actor. After a snapshot it removes the log segments that the
//! oldest kept snapshot makes unnecessary.

use super::image::Image;
use super::snapshot;
use crate::domain::Event;
use crate::engine::{Error, Rules};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Messages (each a whole commit's events) the replica may fall behind by.
pub const INBOX_LEN: usize = 4096;

/// What the replica is told.
pub enum ShadowMessage {
    /// Durable events, the first with sequence number `first_seq`.
    Events {
        /// The first event's sequence number.
        first_seq: u64,
        /// The events, in order.
        events: Vec<Event>,
    },
    /// Take a snapshot now.
    Snapshot(Option<oneshot::Sender<Result<u64, Error>>>),
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
}

impl Shadow {
    /// Runs the replica until told to stop (or every sender is gone).
    pub fn run(mut self, inbox: Receiver<ShadowMessage>) {
        let mut snapshot_seq = self.snapshot_seq;
        let mut last_snapshot = Instant::now();
        loop {
            let wait = self.interval.saturating_sub(last_snapshot.elapsed());
            let due = match inbox.recv_timeout(wait) {
                Ok(ShadowMessage::Events { first_seq, events }) => {
                    for (i, event) in events.iter().enumerate() {
                        self.image.apply(first_seq + i as u64, event, &self.rules);
                    }
                    self.image.seq - snapshot_seq >= self.every_events
                }
                Ok(ShadowMessage::Snapshot(reply)) => {
                    let result = self.snapshot().map_err(|()| Error::Unavailable);
                    if let Some(reply) = reply {
                        // The caller may have stopped waiting; that is fine.
                        let _ = reply.send(result);
                    }
                    snapshot_seq = self.image.seq;
                    last_snapshot = Instant::now();
                    false
                }
                Ok(ShadowMessage::Stop(done)) => {
                    if self.image.seq > snapshot_seq {
                        let _ = self.snapshot();
                    }
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.image.seq > snapshot_seq,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if due {
                let _ = self.snapshot();
                snapshot_seq = self.image.seq;
                last_snapshot = Instant::now();
            } else if last_snapshot.elapsed() >= self.interval {
                last_snapshot = Instant::now();
            }
        }
    }

    fn snapshot(&self) -> Result<u64, ()> {
        let started = Instant::now();
        let result = snapshot::write(&self.dir, &self.image)
            .and_then(|oldest_kept| self.prune_log(oldest_kept));
        match result {
            Ok(()) => {
                tracing::info!(
                    seq = self.image.seq,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
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
