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

use crate::domain::{Event, Rules};
use crate::engine::Engine;
use crate::store::leadership::Leadership;
use crate::store::log::{LogHandle, Tap};
use crate::store::nats_log::{self, LogMessage, LogReader, NatsConnection, NatsLog, PublishError};
use crate::store::{self, StoreError, StoreMetrics, StoreOptions};
use lease::{Holder, Lease, Look};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a follower waits for the next message before it looks at the lease.
const FOLLOW_WAIT: Duration = lease::WATCH_EVERY;

/// A node's part in the cluster, once its state is replayed.
pub struct Node {
    connection: NatsConnection,
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
    let leadership = Arc::new(Leadership::default());
    let mut reader = LogReader::open(&connection, 0).await?;
    let mut image = crate::domain::Image::empty(rules);
    let end = reader.end().await?;
    let mut replayed = 0;
    while leadership.log_position() < end {
        let message = reader
            .next(Duration::from_secs(10))
            .await?
            .ok_or_else(|| StoreError::Replicated("the log stream stopped answering".into()))?;
        check_sequence(&leadership, &message)?;
        for (seq, event) in (message.first_seq..).zip(&message.events) {
            image.apply(seq, event, rules);
        }
        replayed += message.events.len() as u64;
        mark_read(&leadership, &message);
    }
    let node_name = format!("{}#{}", options.advertise_url, uuid::Uuid::new_v4());
    let me = Holder {
        url: options.advertise_url.clone(),
        node: node_name,
    };
    let lease = Lease::open(
        &connection.context,
        &options.log.stream,
        options.log.replicas,
        me,
    )
    .await
    .map_err(StoreError::Replicated)?;
    let log = NatsLog::new(
        connection.clone(),
        leadership.clone(),
        tokio::runtime::Handle::current(),
    );
    let recovered = store::recovery::Recovered { image, replayed };
    let store = store::open_with_log(store_options, rules, metrics, taps, recovered, log)?;
    let (deposed, deposed_rx) = watch::channel(false);
    let node = Node {
        connection,
        leadership: leadership.clone(),
        reader,
        lease,
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

/// A message must carry the next events in sequence (a fence carries none).
fn check_sequence(leadership: &Leadership, message: &LogMessage) -> Result<(), StoreError> {
    let next = leadership.applied() + 1;
    if message.first_seq != next {
        return Err(StoreError::Replicated(format!(
            "log message {} starts at event {}, expected {next}",
            message.stream_seq, message.first_seq
        )));
    }
    Ok(())
}

/// Applies a message's events to the engine and hands them to the log's taps.
async fn apply(
    leadership: &Leadership,
    engine: &Engine,
    log: &LogHandle,
    message: LogMessage,
) -> Result<(), StoreError> {
    check_sequence(leadership, &message)?;
    mark_read(leadership, &message);
    if message.events.is_empty() {
        return Ok(());
    }
    let events: Arc<[Event]> = message.events.into();
    engine
        .follow(&events)
        .await
        .map_err(|e| StoreError::Replicated(format!("applying the log: {e}")))?;
    log.followed(message.first_seq, events).await;
    Ok(())
}

fn mark_read(leadership: &Leadership, message: &LogMessage) {
    if let Some(count) = message.events.len().checked_sub(1) {
        leadership.set_applied(message.first_seq + count as u64);
    }
    leadership.set_log_position(message.stream_seq);
}

impl Node {
    /// Runs the node: follows until it leads, leads until deposed.
    pub fn spawn(self, engine: Arc<Engine>, log: LogHandle) {
        tokio::spawn(self.run(engine, log));
    }

    async fn run(mut self, engine: Arc<Engine>, log: LogHandle) {
        let epoch = match self.follow(&engine, &log).await {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::error!("following the log: {e}; starting again");
                let _ = self.deposed.send(true);
                return;
            }
        };
        tracing::info!(epoch, "leading the log");
        self.lead(&engine, &log, epoch).await;
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
