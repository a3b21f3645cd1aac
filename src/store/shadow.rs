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
//!
//! A snapshot writes the whole state, so its cost grows with the state while the events
//! between two snapshots cost the same however big it is. Taken every `every_events`
//! events, snapshots of a state that keeps growing (a big sale: every hold adds a
//! reservation) would cost more and more per event. So the replica also waits until
//! the log has grown, since the last snapshot, by at least as many bytes as that
//! snapshot held ([`due_by_events`]): snapshots then write at most about two bytes per
//! byte logged, and a restart replays at most about a snapshot's worth of log after
//! loading the snapshot.

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
    /// The size in bytes of the newest snapshot on disk (0: none).
    pub snapshot_bytes: u64,
    /// Where snapshot timings and sizes go.
    pub metrics: Arc<StoreMetrics>,
}

/// Whether the events applied since the last snapshot call for the next one: at least
/// `every_events` of them, and at least `snapshot_bytes` (the last snapshot's size)
/// appended to the log since. Events this process did not append (a follower's copy of
/// the leader's) count no bytes: with none counted, the number of events decides alone.
pub fn due_by_events(events: u64, every_events: u64, logged: u64, snapshot_bytes: u64) -> bool {
    events >= every_events && (logged == 0 || logged >= snapshot_bytes)
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
        // The last sequence number a snapshot was tried at, and the log's size then: a
        // failed one is not retried before more events or the interval call for one.
        let mut tried_seq = self.snapshot_seq;
        let mut tried_logged = self.logged_bytes();
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
                    due_by_events(
                        self.image.seq - tried_seq,
                        self.every_events,
                        self.logged_bytes().saturating_sub(tried_logged),
                        self.snapshot_bytes,
                    )
                }
                Ok(ShadowMessage::Snapshot(reply)) => {
                    let result = self.snapshot().map_err(|()| LogError::Stopped);
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(result);
                    (tried_seq, tried_logged) = (self.image.seq, self.logged_bytes());
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
                (tried_seq, tried_logged) = (self.image.seq, self.logged_bytes());
                last_snapshot = Instant::now();
            } else if last_snapshot.elapsed() >= self.interval {
                last_snapshot = Instant::now();
            }
        }
    }

    /// Bytes this process has appended to the log (at least those of every event
    /// applied so far; a commit in flight may be counted before it arrives here).
    fn logged_bytes(&self) -> u64 {
        self.metrics.log_bytes.get()
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
                self.snapshot_bytes = bytes;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::CatalogRules;
    use crate::domain::date::DateRules;
    use crate::domain::queue::QueueRules;
    use crate::domain::wallet::{Charge, WalletEvent, WalletRules};
    use crate::domain::{ChargeId, UserId, Won};
    use chrono::Duration as Span;

    /// The snapshots the rule takes over `events` events of `logged` bytes of log each,
    /// the state being `state(seq)` bytes after event `seq`: the sequence numbers they
    /// are taken at.
    fn snapshots_taken(
        events: u64,
        every_events: u64,
        logged: u64,
        state: impl Fn(u64) -> u64,
    ) -> Vec<u64> {
        let (mut taken, mut tried_seq, mut tried_logged, mut snapshot_bytes) = (vec![], 0, 0, 0);
        for seq in 1..=events {
            if due_by_events(
                seq - tried_seq,
                every_events,
                seq * logged - tried_logged,
                snapshot_bytes,
            ) {
                taken.push(seq);
                (tried_seq, tried_logged, snapshot_bytes) = (seq, seq * logged, state(seq));
            }
        }
        taken
    }

    #[test]
    fn a_state_that_stays_small_is_snapshotted_every_so_many_events() {
        // A room where people come and go: the state stays at a few kB.
        let taken = snapshots_taken(1_000, 100, 100, |seq| (seq * 37) % 4_000);
        assert_eq!(taken, (1..=10).map(|n| n * 100).collect::<Vec<_>>());
    }

    #[test]
    fn a_growing_state_is_snapshotted_less_often_as_it_grows() {
        // A sale: each hold logs about 120 bytes and adds about as much to the state.
        let (events, every, bytes) = (10_000_000, 100_000, 120);
        let taken = snapshots_taken(events, every, bytes, |seq| seq * bytes);
        assert_eq!(
            taken,
            [
                100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000, 6_400_000
            ]
        );
        // Each snapshot waits for a log as big as the one before it, so the bytes
        // written to snapshots stay within twice the bytes logged; one every 100,000
        // events would have written fifty times the log.
        let logged = events * bytes;
        let written: u64 = taken.iter().map(|seq| seq * bytes).sum();
        assert!(written <= 2 * logged, "{written} > 2 × {logged}");
        let every_so_many: u64 = (1..=events / every).map(|n| n * every * bytes).sum();
        assert!(every_so_many > 50 * logged, "{every_so_many}");
    }

    #[test]
    fn events_not_appended_here_are_counted_by_number_alone() {
        // A follower's replica sees the leader's events; its own log grows by nothing.
        assert!(due_by_events(100, 100, 0, 1 << 30));
        assert!(!due_by_events(99, 100, 0, 0));
        assert!(!due_by_events(100, 100, 10, 11));
        assert!(due_by_events(100, 100, 11, 11));
    }

    fn charge(n: u64) -> Event {
        Event::Wallet(WalletEvent::Charged(Charge {
            id: ChargeId(uuid::Uuid::from_u128(u128::from(n))),
            user: UserId(n),
            amount: Won(500),
            balance_after: Won(500),
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            idempotency_key: None,
        }))
    }

    /// Waits until `done` says so (the replica works on its own thread).
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "still waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn snapshot_seqs(dir: &std::path::Path) -> Vec<u64> {
        snapshot::list(dir)
            .unwrap()
            .iter()
            .map(|(seq, _)| *seq)
            .collect()
    }

    #[test]
    fn the_replica_waits_for_the_log_to_grow_by_a_snapshot_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let rules = Rules {
            catalog: CatalogRules {
                seats_per_date_max: 1000,
                seat_price_max: Won(1_000_000),
            },
            date: DateRules {
                hold_ttl: Span::minutes(5),
                seats_per_reservation_max: 4,
                seats_per_user_max: 8,
                refund_closes_before: Span::hours(1),
            },
            queue: QueueRules {
                active_max: 10,
                active_ttl: Span::minutes(10),
                idle_timeout: Span::minutes(1),
            },
            wallet: WalletRules {
                charge_max: Won(1_000_000),
                balance_max: Won(10_000_000),
                idempotency_ttl: Span::hours(24),
            },
            mailbox_len: 64,
            wallet_shards: 2,
        };
        let metrics = Arc::new(StoreMetrics::default());
        let shadow = Shadow {
            image: Image::empty(&rules),
            rules,
            dir: dir.path().to_path_buf(),
            every_events: 10,
            interval: Duration::from_secs(3600),
            snapshot_seq: 0,
            snapshot_bytes: 0,
            metrics: metrics.clone(),
        };
        let (mut tap, _snapshots) = shadow.spawn().unwrap();
        let mut commit = |seq: u64, logged: u64| {
            metrics.log_bytes.inc_by(logged);
            tap.committed(seq, &Arc::from(vec![charge(seq)]));
        };
        for seq in 1..=10 {
            commit(seq, 1);
        }
        wait_for("the first snapshot", || {
            !snapshot_seqs(dir.path()).is_empty()
        });
        let first = snapshot::list(dir.path()).unwrap();
        assert_eq!(snapshot_seqs(dir.path()), [10]);
        let size = std::fs::metadata(&first[0].1).unwrap().len();
        assert!(size > 100, "{size}");
        // Ten times the events, but fewer bytes logged than the snapshot holds.
        for seq in 11..=110 {
            commit(seq, 1);
        }
        wait_for("the events after it", || {
            metrics.events_since_snapshot.get() == 100
        });
        assert_eq!(snapshot_seqs(dir.path()), [10]);
        // The log reaches the snapshot's size: the next event is snapshotted.
        commit(111, size - 100);
        wait_for("the second snapshot", || {
            snapshot_seqs(dir.path()).len() == 2
        });
        assert_eq!(snapshot_seqs(dir.path()), [10, 111]);
        tap.stop();
    }
}
