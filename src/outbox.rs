//! The outbox: every public event, in commit order, exactly once, into a NATS
//! JetStream stream (`--events-nats-url`).
//!
//! The log already is the outbox: the relay is a task that reads the event feed
//! ([`Feed`]) and publishes each event to `{prefix}.{type}` (for example
//! `boxoffice.events.reservation.paid`) with the headers
//! - `Nats-Msg-Id: <cursor>`: the stream's duplicate window drops a repeat;
//! - `Nats-Expected-Last-Msg-Id: <previous cursor>`: the stream refuses an event whose
//!   predecessor is not the last one stored, so a publish that failed can never be
//!   overtaken by the next one.
//!
//! It keeps no progress of its own: on every (re)connection it asks the stream for its
//! last message and goes on after that message's cursor. So a crash at any moment
//! (after publishing, before anything else) neither repeats nor skips an event. While
//! NATS is down or slow the sale goes on untouched (the relay only reads the log);
//! the relay retries with backoff and catches up from the log. `/metrics` shows its
//! lag and `/health` says `degraded` while it is not publishing.
//!
//! Should the relay fall further behind than the data directory keeps events (see
//! [`crate::engine::feed`]), it logs an error, counts it, and goes on from the oldest
//! event kept: the `prev` link of that event shows the gap to consumers.

use crate::domain::public::{Cursor, PublicEvent};
use crate::engine::feed::{Feed, FeedError, Position};
use async_nats::jetstream::{self, message::PublishMessage, stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Events published per round trip (their acknowledgements are awaited together).
const EVENTS_PER_ROUND: usize = 256;
/// The longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The stream's duplicate window: a repeat of an event published this recently is
/// dropped by the stream itself.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where the relay publishes.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// The JetStream stream (created if missing).
    pub stream: String,
    /// Subject prefix: events go to `{prefix}.{type}`.
    pub subject_prefix: String,
    /// Replicas of the stream when the relay creates it.
    pub replicas: usize,
}

/// What the relay is doing, for `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct OutboxStatus {
    up: AtomicBool,
    /// The log record up to which every event is in the stream.
    published_seq: AtomicU64,
    /// Events published since start.
    pub published: Counter,
    /// Failed sessions (connection lost, publish refused, ...).
    pub errors: Counter,
    /// Events skipped because the log no longer held them.
    pub skipped: Counter,
    lag: Gauge,
}

impl OutboxStatus {
    /// Whether the relay is connected and keeping up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Log records the stream is behind the log.
    pub fn lag_records(&self, feed: &Feed) -> u64 {
        feed.durable_seq()
            .saturating_sub(self.published_seq.load(Ordering::Acquire))
    }

    /// Adds the relay's series to `registry`; `lag` is refreshed by [`Self::refresh`].
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "boxoffice_outbox_published",
            "Public events published to NATS JetStream",
            self.published.clone(),
        );
        registry.register(
            "boxoffice_outbox_errors",
            "Outbox sessions that failed (NATS down, publish refused); the relay retries",
            self.errors.clone(),
        );
        registry.register(
            "boxoffice_outbox_skipped",
            "Events the relay could not publish because the log no longer held them",
            self.skipped.clone(),
        );
        registry.register(
            "boxoffice_outbox_lag_records",
            "Log records not yet published to NATS JetStream",
            self.lag.clone(),
        );
    }

    /// Updates the lag gauge (each time the relay moves and before each scrape).
    pub fn refresh(&self, feed: &Feed) {
        self.lag
            .set(i64::try_from(self.lag_records(feed)).unwrap_or(i64::MAX));
    }
}

/// Starts the relay; it runs until the runtime stops.
pub fn spawn(config: OutboxConfig, feed: Feed) -> Arc<OutboxStatus> {
    let status = Arc::new(OutboxStatus::default());
    tokio::spawn(relay(config, feed, status.clone()));
    status
}

async fn relay(config: OutboxConfig, feed: Feed, status: Arc<OutboxStatus>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let error = session(&config, &feed, &status).await;
        // A session that got going starts the next one with a short wait again.
        if status.up.swap(false, Ordering::AcqRel) {
            backoff = Duration::from_millis(100);
        }
        status.errors.inc();
        tracing::warn!(
            "outbox to NATS ({}): {error}; retrying in {backoff:?}",
            config.url
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: learn where the stream ends, then publish until something fails.
async fn session(config: &OutboxConfig, feed: &Feed, status: &OutboxStatus) -> String {
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(config.url.split(',').map(str::trim).collect::<Vec<_>>())
        .await
    {
        Ok(client) => client,
        Err(e) => return format!("connecting: {e}"),
    };
    let context = jetstream::new(client);
    let mut stream = match context
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
    {
        Ok(stream) => stream,
        Err(e) => return format!("opening stream {}: {e}", config.stream),
    };
    let last = match last_cursor(&mut stream).await {
        Ok(last) => last,
        Err(e) => return e,
    };
    let mut position = match feed.position(last) {
        Ok(position) => position,
        Err(e) => return e.to_string(),
    };
    tracing::info!(
        stream = %config.stream,
        after = %last.map_or("the beginning".to_owned(), |c| c.to_string()),
        "outbox: publishing to NATS JetStream"
    );
    let mut news = feed.subscribe();
    loop {
        news.borrow_and_update();
        let events = match feed.read_async(position, EVENTS_PER_ROUND).await {
            Ok((events, next)) => {
                if events.is_empty() {
                    position = next;
                    mark_published(status, feed, next);
                    status.up.store(true, Ordering::Release);
                    if news.changed().await.is_err() {
                        return "the server is stopping".into();
                    }
                    continue;
                }
                position = next;
                events
            }
            Err(FeedError::Expired { .. }) => {
                position = skip_to_oldest(feed, status, position);
                continue;
            }
            Err(e) => return e.to_string(),
        };
        if let Err(e) = publish(&context, config, &events).await {
            return e;
        }
        status.published.inc_by(events.len() as u64);
        mark_published(status, feed, position);
        status.up.store(true, Ordering::Release);
    }
}

/// The cursor of the stream's last message (`None`: the stream is empty).
async fn last_cursor(stream: &mut stream::Stream) -> Result<Option<Cursor>, String> {
    let info = stream
        .info()
        .await
        .map_err(|e| format!("reading the stream's state: {e}"))?;
    if info.state.messages == 0 {
        return Ok(None);
    }
    let last = info.state.last_sequence;
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|e| format!("reading the stream's last message: {e}"))?;
    let id = message
        .headers
        .get("Nats-Msg-Id")
        .ok_or("the stream's last message has no Nats-Msg-Id")?;
    id.as_str()
        .parse()
        .map(Some)
        .map_err(|e| format!("the stream's last message: {e}"))
}

/// Publishes a run of consecutive events and waits for every acknowledgement.
async fn publish(
    context: &jetstream::Context,
    config: &OutboxConfig,
    events: &[PublicEvent],
) -> Result<(), String> {
    let mut acks = Vec::with_capacity(events.len());
    for event in events {
        let payload = serde_json::to_vec(event).expect("an event serializes");
        let mut message = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.cursor.to_string());
        if let Some(prev) = event.prev {
            message = message.expected_last_message_id(prev.to_string());
        }
        let subject = format!("{}.{}", config.subject_prefix, event.body.kind());
        let ack = context
            .send_publish(subject, message)
            .await
            .map_err(|e| format!("publishing {}: {e}", event.cursor))?;
        acks.push((event.cursor, ack));
    }
    for (cursor, ack) in acks {
        ack.await
            .map_err(|e| format!("the stream refused {cursor}: {e}"))?;
    }
    Ok(())
}

fn mark_published(status: &OutboxStatus, feed: &Feed, position: Position) {
    status
        .published_seq
        .store(position.next_seq.saturating_sub(1), Ordering::Release);
    status.refresh(feed);
}

/// The relay fell behind what the log keeps: go on from the oldest event kept.
fn skip_to_oldest(feed: &Feed, status: &OutboxStatus, position: Position) -> Position {
    let oldest = feed.oldest_cursor();
    tracing::error!(
        after = ?position.last.map(|c| c.to_string()),
        oldest = ?oldest.map(|c| c.to_string()),
        "outbox: the log no longer holds the events after the stream's last; going on from the oldest kept"
    );
    status.skipped.inc();
    let start = feed.position(None).unwrap_or(position);
    Position {
        next_seq: start.next_seq,
        last: None,
    }
}
