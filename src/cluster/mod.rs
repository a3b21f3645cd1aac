//! Cluster mode: several nodes share one replicated log in NATS JetStream; one leads.
//!
//! With `--log nats://host:port[,...]` a node does not own a log on its disk. It:
//!
//! 1. connects to the NATS servers and opens the log stream and the lease bucket;
//! 2. replays the whole stream into its state and starts its actors from it, taking
//!    no writes (a follower);
//! 3. follows the stream: each new message's events go to the owners' mailboxes
//!    ([`Engine::follow`]) and to the log's taps (the event feed, the seat-map
//!    stream, the metrics), so a follower serves every read with a lag of one
//!    message round trip;
//! 4. watches the lease ([`lease`]); when it lapses the node takes it, reads the
//!    stream to its end, writes a fence (an empty message that states the stream
//!    position it read to: if anybody wrote after that, the fence fails and it reads
//!    on), and only then leads: its journal takes mutations, which the group-commit
//!    driver appends to the stream ([`crate::store::nats_log`]);
//! 5. while leading, renews the lease. Once a renewal finds somebody else holds it,
//!    the lease lapses, or the log refuses a write, the node stops acknowledging at
//!    once ([`Leadership::step_down`]) and reports itself deposed: its memory may hold
//!    effects of writes the log never took, so it does not go on from there. The
//!    binary then starts itself again as a follower (the same process id and
//!    arguments), which replays the log and follows it.
//!
//! Writes sent to a follower are answered 307 to the leader's `--advertise-url`
//! ([`crate::http`]), reads are served where they arrive, and `/health/ready` tells
//! the role and the lag.

pub mod lease;
pub mod snapshots;

use crate::domain::{Event, Image, Rules};
use crate::engine::Engine;
use crate::store::leadership::Leadership;
use crate::store::log::{LogHandle, Tap};
use crate::store::nats_log::{self, LogMessage, LogReader, NatsConnection, NatsLog, PublishError};
use crate::store::shadow::SnapshotHandle;
use crate::store::{self, StoreError, StoreMetrics, StoreOptions};
use lease::{Holder, Lease, Look};
use snapshots::Snapshots;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Attempts, half a second apart, to read the snapshot and the log at start.
const START_ATTEMPTS: u32 = 60;

/// How long a follower waits for the next message before it looks at the lease.
const FOLLOW_WAIT: Duration = lease::WATCH_EVERY;

/// A node's part in the cluster, once its state is replayed.
pub struct Node {
    connection: NatsConnection,
    bucket: Arc<Snapshots>,
    store_options: StoreOptions,
    leadership: Arc<Leadership>,
    reader: LogReader,
    lease: Lease,
    own_url: String,
    deposed: watch::Sender<bool>,
}

/// What opening the replicated log gives: the state to start from and the running
/// log, as [`store::open`] gives for the file log.
pub struct Opened {
    /// The store's side (state, log driver, snapshot replica, tail).
    pub store: store::Opened,
    /// Who may write.
    pub leadership: Arc<Leadership>,
    /// The node, to be started once the engine runs.
    pub node: Node,
    /// Becomes `true` once this node was deposed and must start again.
    pub deposed: watch::Receiver<bool>,
}

/// Settings of a cluster node.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the log is.
    pub log: nats_log::NatsLogOptions,
    /// Where this node takes requests, as other nodes and clients reach it.
    pub advertise_url: String,
}

/// Connects, replays the log and starts the log driver (taking no writes yet).
pub async fn open(
    options: &ClusterOptions,
    store_options: &StoreOptions,
    rules: &Rules,
    metrics: Arc<StoreMetrics>,
    taps: Vec<Box<dyn Tap>>,
) -> Result<Opened, StoreError> {
    let connection = nats_log::connect(&options.log).await?;
    let mut attempts = 0;
    let start = loop {
        match replay(&connection, options, rules).await {
            Ok(start) => break start,
            // Right after a NATS server died, its streams elect new leaders.
            Err(e) if attempts < START_ATTEMPTS => {
                attempts += 1;
                tracing::info!("{e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let log = NatsLog::new(
        connection.clone(),
        start.leadership.clone(),
        tokio::runtime::Handle::current(),
        metrics.clone(),
    );
    let recovered = store::recovery::Recovered {
        image: start.image,
        replayed: start.replayed,
    };
    let store = store::open_with_log(store_options, rules, metrics, taps, recovered, log)?;
    let (deposed, deposed_rx) = watch::channel(false);
    let leadership = start.leadership;
    let node = Node {
        connection,
        bucket: Arc::new(start.bucket),
        store_options: store_options.clone(),
        leadership: leadership.clone(),
        reader: start.reader,
        lease: start.lease,
        own_url: options.advertise_url.clone(),
        deposed,
    };
    Ok(Opened {
        store,
        leadership,
        node,
        deposed: deposed_rx,
    })
}

/// What a node starts from.
struct Start {
    leadership: Arc<Leadership>,
    bucket: Snapshots,
    image: Image,
    replayed: u64,
    reader: LogReader,
    lease: Lease,
}

/// Loads the newest snapshot and replays the log after it, up to the log's end now.
async fn replay(
    connection: &NatsConnection,
    options: &ClusterOptions,
    rules: &Rules,
) -> Result<Start, StoreError> {
    let stream = &options.log.stream;
    let replicas = options.log.replicas;
    let leadership = Arc::new(Leadership::default());
    let bucket = Snapshots::open(&connection.context, stream, replicas)
        .await
        .map_err(StoreError::Replicated)?;
    let (mut image, floor) = match bucket.newest().await.map_err(StoreError::Replicated)? {
        Some((mut image, floor)) => {
            image.set_rules(rules);
            (image, floor)
        }
        None => (Image::empty(rules), 0),
    };
    leadership.set_applied(image.seq);
    let mut reader = LogReader::open(connection, floor.saturating_sub(1)).await?;
    let end = reader.end().await?;
    let mut replayed = 0;
    while leadership.log_position() < end {
        let message = reader
            .next(Duration::from_secs(10))
            .await?
            .ok_or_else(|| StoreError::Replicated("the log stream stopped answering".into()))?;
        let (first_seq, events) = unapplied(&leadership, message)?;
        for (seq, event) in (first_seq..).zip(&events) {
            image.apply(seq, event, rules);
        }
        replayed += events.len() as u64;
    }
    let me = Holder {
        url: options.advertise_url.clone(),
        node: format!("{}#{}", options.advertise_url, uuid::Uuid::new_v4()),
    };
    let lease = Lease::open(&connection.context, stream, replicas, me)
        .await
        .map_err(StoreError::Replicated)?;
    Ok(Start {
        leadership,
        bucket,
        image,
        replayed,
        reader,
        lease,
    })
}

/// The events of a message this node has not applied yet, with the first one's
/// sequence number, and notes that the message is read. A message wholly before them
/// (in the part of the log a snapshot covers) gives none; a message that starts past
/// the next event (the log was purged past this node) is an error.
fn unapplied(
    leadership: &Leadership,
    message: LogMessage,
) -> Result<(u64, Vec<Event>), StoreError> {
    let next = leadership.applied() + 1;
    if message.first_seq > next {
        return Err(StoreError::Replicated(format!(
            "log message {} starts at event {}, but this node needs event {next} first",
            message.stream_seq, message.first_seq
        )));
    }
    let known = usize::try_from(next - message.first_seq).unwrap_or(usize::MAX);
    let mut events = message.events;
    events.drain(..known.min(events.len()));
    if !events.is_empty() {
        leadership.set_applied(next + events.len() as u64 - 1);
    }
    leadership.set_log_position(message.stream_seq);
    Ok((next, events))
}

/// Applies a message's events to the engine and hands them to the log's taps.
async fn apply(
    leadership: &Leadership,
    engine: &Engine,
    log: &LogHandle,
    message: LogMessage,
) -> Result<(), StoreError> {
    let (first_seq, events) = unapplied(leadership, message)?;
    if events.is_empty() {
        return Ok(());
    }
    let events: Arc<[Event]> = events.into();
    engine
        .follow(&events)
        .await
        .map_err(|e| StoreError::Replicated(format!("applying the log: {e}")))?;
    log.followed(first_seq, events).await;
    Ok(())
}

impl Node {
    /// Runs the node: follows until it leads, leads until deposed.
    pub fn spawn(self, engine: Arc<Engine>, log: LogHandle, snapshots: SnapshotHandle) {
        tokio::spawn(self.run(engine, log, snapshots));
    }

    async fn run(mut self, engine: Arc<Engine>, log: LogHandle, snapshots: SnapshotHandle) {
        let epoch = match self.follow(&engine, &log).await {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::error!("following the log: {e}; starting again");
                let _ = self.deposed.send(true);
                return;
            }
        };
        tracing::info!(epoch, "leading the log");
        let keeper = tokio::spawn(keep_snapshots(
            self.bucket.clone(),
            snapshots,
            self.leadership.clone(),
            self.connection.clone(),
            self.store_options.clone(),
        ));
        self.lead(&engine, &log, epoch).await;
        keeper.abort();
        let _ = self.deposed.send(true);
    }

    /// Follows the log until this node takes the lease and fences the log; answers the
    /// leadership's epoch.
    async fn follow(&mut self, engine: &Engine, log: &LogHandle) -> Result<u64, StoreError> {
        let mut last_look = tokio::time::Instant::now();
        let mut last_end = tokio::time::Instant::now();
        loop {
            if let Some(message) = self.reader.next(FOLLOW_WAIT).await? {
                apply(&self.leadership, engine, log, message).await?;
            }
            if last_end.elapsed() >= Duration::from_secs(1) {
                last_end = tokio::time::Instant::now();
                if let Ok(Some(end)) = self.reader.end_event_seq().await {
                    self.leadership.set_log_end(end);
                }
            }
            if last_look.elapsed() < lease::WATCH_EVERY {
                continue;
            }
            last_look = tokio::time::Instant::now();
            match self.lease.watch().await {
                Ok(Look::Held(holder)) => self.leadership.set_leader_url(Some(holder.url)),
                Ok(Look::Taken { epoch, until }) => {
                    self.leadership.extend_lease(until);
                    if self.fence(engine, log, epoch).await? {
                        return Ok(epoch);
                    }
                }
                Err(e) => tracing::debug!("lease: {e}"),
            }
        }
    }

    /// Reads the log to its end and writes the fence after it, again while others
    /// wrote meanwhile. `false`: the lease lapsed first (follow on).
    async fn fence(
        &mut self,
        engine: &Engine,
        log: &LogHandle,
        epoch: u64,
    ) -> Result<bool, StoreError> {
        loop {
            let end = self.reader.end().await?;
            while self.leadership.log_position() < end {
                match self.reader.next(Duration::from_secs(2)).await? {
                    Some(message) => apply(&self.leadership, engine, log, message).await?,
                    None if !self.leadership.holds_lease() => return Ok(false),
                    None => {}
                }
            }
            // Catching up took time: renew before writing the fence.
            match self.lease.renew().await {
                Ok(Some(until)) => self.leadership.extend_lease(until),
                Ok(None) => return Ok(false),
                Err(e) => tracing::warn!("{e}"),
            }
            let applied = self.leadership.applied();
            let fence = nats_log::encode(applied + 1, &[] as &[&Event]);
            let written = nats_log::publish(
                &self.connection,
                &self.leadership,
                &format!("{epoch}-fence"),
                end,
                fence.into(),
                applied,
            )
            .await;
            match written {
                Ok(position) => {
                    self.leadership.set_log_position(position);
                    return Ok(true);
                }
                Err(PublishError::Fenced) => continue,
                Err(PublishError::LeaseLapsed) => return Ok(false),
            }
        }
    }

    /// Leads: opens the write path, then renews the lease until this node loses it.
    async fn lead(&mut self, engine: &Arc<Engine>, log: &LogHandle, epoch: u64) {
        self.leadership.lead(&self.own_url, epoch);
        engine.promoted().await;
        let mut renew = tokio::time::interval(lease::RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            renew.tick().await;
            if log.is_stopped() {
                tracing::error!("the log refused a write: no longer leading");
                break;
            }
            match self.lease.renew().await {
                Ok(Some(until)) => self.leadership.extend_lease(until),
                Ok(None) => {
                    tracing::error!("another node holds the lease: no longer leading");
                    break;
                }
                Err(e) => tracing::warn!("{e}"),
            }
            if !self.leadership.may_write() {
                tracing::error!("the lease lapsed: no longer leading");
                break;
            }
        }
        self.leadership.step_down();
    }
}

/// The leader's snapshots: one every snapshot interval, or sooner after enough
/// events, uploaded to the bucket, and the log stream purged behind the older kept
/// one (see [`snapshots`]).
async fn keep_snapshots(
    bucket: Arc<Snapshots>,
    replica: SnapshotHandle,
    leadership: Arc<Leadership>,
    connection: NatsConnection,
    options: StoreOptions,
) {
    let mut uploaded = leadership.applied();
    let mut at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let fresh = leadership.applied() - uploaded;
        let due = fresh >= options.snapshot_every_events
            || (fresh > 0 && at.elapsed() >= options.snapshot_interval);
        if !due {
            continue;
        }
        at = tokio::time::Instant::now();
        match upload_snapshot(&bucket, &replica, &leadership, &connection, &options).await {
            Ok(seq) => uploaded = seq,
            Err(e) => tracing::warn!("snapshot to object storage: {e}"),
        }
    }
}

/// Takes a snapshot, uploads it, and purges the stream below the oldest kept one's
/// floor; answers the snapshot's last event.
async fn upload_snapshot(
    bucket: &Snapshots,
    replica: &SnapshotHandle,
    leadership: &Leadership,
    connection: &NatsConnection,
    options: &StoreOptions,
) -> Result<u64, String> {
    // Every message before this position reached the replica before the request.
    let floor = leadership.log_position();
    let seq = replica
        .snapshot()
        .await
        .map_err(|e| format!("taking a snapshot: {e}"))?;
    let path = options.dir.join(store::snapshot::file_name(seq));
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let keep_floor = bucket.upload(seq, floor, &bytes).await?;
    if keep_floor > 1 {
        let stream = connection
            .context
            .get_stream(&connection.options.stream)
            .await
            .map_err(|e| format!("opening the log stream: {e}"))?;
        stream
            .purge()
            .sequence(keep_floor)
            .await
            .map_err(|e| format!("trimming the log stream: {e}"))?;
    }
    tracing::info!(
        seq,
        floor,
        "snapshot uploaded; the log kept from {keep_floor}"
    );
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wallet::{Charge, WalletEvent};
    use crate::domain::{ChargeId, UserId, Won};

    fn message(stream_seq: u64, first_seq: u64, count: usize) -> LogMessage {
        let event = Event::Wallet(WalletEvent::Charged(Charge {
            id: ChargeId(uuid::Uuid::from_u128(1)),
            user: UserId(1),
            amount: Won(1),
            balance_after: Won(1),
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            idempotency_key: None,
        }));
        LogMessage {
            stream_seq,
            first_seq,
            events: vec![event; count],
        }
    }

    #[test]
    fn a_snapshot_s_events_are_skipped_and_a_gap_is_refused() {
        let leadership = Leadership::default();
        leadership.set_applied(5);
        let (first, events) = unapplied(&leadership, message(3, 2, 3)).unwrap();
        assert_eq!((first, events.len()), (6, 0), "wholly in the snapshot");
        let (first, events) = unapplied(&leadership, message(4, 5, 3)).unwrap();
        assert_eq!((first, events.len()), (6, 2), "straddles the snapshot");
        assert_eq!(leadership.applied(), 7);
        assert_eq!(leadership.log_position(), 4);
        let (first, events) = unapplied(&leadership, message(5, 8, 0)).unwrap();
        assert_eq!((first, events.len()), (8, 0), "a fence");
        assert_eq!(leadership.log_position(), 5);
        assert!(unapplied(&leadership, message(7, 10, 1)).is_err(), "a gap");
    }
}
