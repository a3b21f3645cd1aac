//! The replicated log: group-commit batches as messages of a NATS JetStream stream.
//!
//! With `--log nats://...` the log is not a set of local files but one JetStream
//! stream, stored by the NATS servers on as many replicas as the stream has. Every
//! call of the group-commit driver ([`super::log`]) becomes one message (more if it
//! would pass the server's largest message) on subject `{stream}.log`, and the call
//! returns once JetStream has acknowledged it, which it does after a quorum of the
//! stream's replicas stored it. Until then no reply is released, exactly as with the
//! file log's fdatasync.
//!
//! # Message format
//!
//! The payload is bincode 2 (standard configuration, via serde) of
//! `(format version: u32, first event sequence number: u64, events: Vec<Event>)`,
//! the same event encoding as a log segment's records (see [`super`]). Headers:
//! `Boxoffice-Last-Seq` (the last event's sequence number, so a follower learns how
//! far the log reaches from one header), `Nats-Msg-Id` (`{epoch}-{first seq}`) and
//! `Nats-Expected-Last-Sequence`. A message with no events is a leader's fence.
//!
//! # Fencing
//!
//! Every publish states the stream sequence it expects to follow
//! (`Nats-Expected-Last-Sequence`). The leader took it from the stream when it caught
//! up; only its own writes move it. If anybody else wrote meanwhile (a new leader's
//! fence), JetStream refuses the publish, the append fails, and the write path stops:
//! a deposed leader cannot fork the log, whatever it believes about its lease. A
//! publish whose acknowledgement did not come (a NATS server died, the stream is
//! electing a leader) is sent again with the same `Nats-Msg-Id`, so JetStream
//! stores it once, for as long as the lease holds; the lease is checked again after
//! the acknowledgement, and an append that outlived the lease is not acknowledged.

use super::format::FORMAT_VERSION;
use super::leadership::Leadership;
use super::log::{Append, Log};
use super::{StoreError, StoreMetrics};
use crate::domain::Event;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The header with a message's last event sequence number.
pub const LAST_SEQ_HEADER: &str = "Boxoffice-Last-Seq";
/// How long a message may wait for JetStream's acknowledgement before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between attempts of a publish that got no acknowledgement.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Room left under the server's largest message for headers.
const HEADER_ROOM: usize = 4096;

/// Where the replicated log is.
#[derive(Debug, Clone)]
pub struct NatsLogOptions {
    /// `nats://host:port`, several comma-separated.
    pub urls: String,
    /// The stream's name (created if missing).
    pub stream: String,
    /// Replicas of the stream when it is created.
    pub replicas: usize,
}

impl NatsLogOptions {
    /// The servers, one URL each.
    pub fn server_list(&self) -> Vec<&str> {
        self.urls.split(',').map(str::trim).collect()
    }

    /// The subject the log's messages are published on.
    pub fn subject(&self) -> String {
        format!("{}.log", self.stream)
    }
}

/// A connection to the replicated log's NATS servers.
#[derive(Clone)]
pub struct NatsConnection {
    /// The client.
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub context: jetstream::Context,
    /// The settings it was opened with.
    pub options: NatsLogOptions,
}

fn nats_error(what: &str) -> impl FnOnce(String) -> StoreError + '_ {
    move |e| StoreError::Replicated(format!("{what}: {e}"))
}

/// Connects (retrying until a server answers) and makes sure the stream exists.
pub async fn connect(options: &NatsLogOptions) -> Result<NatsConnection, StoreError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .retry_on_initial_connect()
        .connect(options.server_list())
        .await
        .map_err(|e| nats_error("connecting")(e.to_string()))?;
    let context = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .build(client.clone());
    let config = stream::Config {
        name: options.stream.clone(),
        subjects: vec![options.subject()],
        num_replicas: options.replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    // Right after a cluster starts, JetStream may not be ready for a while.
    let mut attempts = 0;
    loop {
        match context.get_or_create_stream(config.clone()).await {
            Ok(_) => break,
            Err(e) if attempts < 60 => {
                attempts += 1;
                tracing::info!("waiting for the log stream {}: {e}", options.stream);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(nats_error("opening the log stream")(e.to_string())),
        }
    }
    Ok(NatsConnection {
        client,
        context,
        options: options.clone(),
    })
}

/// One message of the log: its events and where it is.
#[derive(Debug, Clone)]
pub struct LogMessage {
    /// Its stream sequence number.
    pub stream_seq: u64,
    /// The sequence number of its first event.
    pub first_seq: u64,
    /// Its events (none: a fence).
    pub events: Vec<Event>,
}

/// Encodes a message's payload.
pub fn encode(first_seq: u64, events: &[&Event]) -> Vec<u8> {
    bincode::serde::encode_to_vec(
        (FORMAT_VERSION, first_seq, events),
        bincode::config::standard(),
    )
    .expect("events encode")
}

/// Decodes a message's payload: the first event's sequence number and the events.
pub fn decode(payload: &[u8]) -> Result<(u64, Vec<Event>), String> {
    let ((version, first_seq, events), _): ((u32, u64, Vec<Event>), usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|e| format!("undecodable log message: {e}"))?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "log message of format version {version}; this build reads {FORMAT_VERSION}"
        ));
    }
    Ok((first_seq, events))
}

/// Reads the log's messages in order, from a stream position on.
pub struct LogReader {
    messages: consumer::pull::Ordered,
    stream: stream::Stream,
}

impl LogReader {
    /// Reads the messages after stream sequence `after`.
    pub async fn open(connection: &NatsConnection, after: u64) -> Result<LogReader, StoreError> {
        let stream = connection
            .context
            .get_stream(&connection.options.stream)
            .await
            .map_err(|e| nats_error("opening the log stream")(e.to_string()))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: connection.options.subject(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error("reading the log stream")(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| nats_error("reading the log stream")(e.to_string()))?;
        Ok(LogReader { messages, stream })
    }

    /// The stream sequence of the log's last message now (0: empty).
    pub async fn end(&mut self) -> Result<u64, StoreError> {
        let info = self
            .stream
            .info()
            .await
            .map_err(|e| nats_error("reading the log stream's state")(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// The last event sequence number in the log now, from its last message's header.
    pub async fn end_event_seq(&mut self) -> Result<Option<u64>, StoreError> {
        let end = self.end().await?;
        if end == 0 {
            return Ok(None);
        }
        let message = self
            .stream
            .get_raw_message(end)
            .await
            .map_err(|e| nats_error("reading the log's last message")(e.to_string()))?;
        Ok(message
            .headers
            .get(LAST_SEQ_HEADER)
            .and_then(|v| v.as_str().parse().ok()))
    }

    /// The next message; waits at most `wait` (`None`: nothing came).
    pub async fn next(&mut self, wait: Duration) -> Result<Option<LogMessage>, StoreError> {
        let message = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(StoreError::Replicated("the log stream ended".into())),
            Ok(Some(Err(e))) => return Err(nats_error("reading the log stream")(e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        let stream_seq = message
            .info()
            .map_err(|e| nats_error("a log message")(e.to_string()))?
            .stream_sequence;
        let (first_seq, events) = decode(&message.payload)
            .map_err(|e| StoreError::Replicated(format!("log message {stream_seq}: {e}")))?;
        Ok(Some(LogMessage {
            stream_seq,
            first_seq,
            events,
        }))
    }
}

/// Why a publish did not go through.
#[derive(Debug)]
pub enum PublishError {
    /// Somebody else wrote to the log: this node no longer leads it.
    Fenced,
    /// The lease lapsed before the publish was acknowledged.
    LeaseLapsed,
}

/// Publishes one message after stream sequence `expected`, retrying a publish that
/// got no acknowledgement while `leadership` lets this node write (`fence`: whatever
/// its lease says, for the fence a new leader writes before it leads). Answers the
/// message's stream sequence.
pub async fn publish(
    connection: &NatsConnection,
    leadership: &Leadership,
    message_id: &str,
    expected: u64,
    payload: Bytes,
    last_seq: u64,
) -> Result<u64, PublishError> {
    let subject = connection.options.subject();
    loop {
        if !leadership.holds_lease() {
            return Err(PublishError::LeaseLapsed);
        }
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(message_id)
            .expected_last_sequence(expected)
            .header(LAST_SEQ_HEADER, last_seq.to_string().as_str());
        let outcome = match connection
            .context
            .send_publish(subject.clone(), message)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ack) => return Ok(ack.sequence),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                return Err(PublishError::Fenced);
            }
            Err(e) => {
                tracing::warn!("log publish {message_id} not acknowledged ({e}); sending it again");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// The replicated log as the group-commit driver sees it.
pub struct NatsLog {
    connection: NatsConnection,
    leadership: Arc<Leadership>,
    runtime: tokio::runtime::Handle,
    max_payload: usize,
    /// Where the bytes published go (`boxoffice_log_bytes`, which the snapshot replica
    /// also reads).
    metrics: Arc<StoreMetrics>,
}

impl NatsLog {
    /// The log of a node whose `leadership` says when it may append; appends block
    /// on `runtime`.
    pub fn new(
        connection: NatsConnection,
        leadership: Arc<Leadership>,
        runtime: tokio::runtime::Handle,
        metrics: Arc<StoreMetrics>,
    ) -> NatsLog {
        let max_payload = connection
            .client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM)
            .max(HEADER_ROOM);
        NatsLog {
            connection,
            leadership,
            runtime,
            max_payload,
            metrics,
        }
    }

    async fn publish_all(&self, first_seq: u64, events: &[&Event]) -> Result<(), StoreError> {
        let mut chunks = vec![(first_seq, events)];
        while let Some((first, events)) = chunks.pop() {
            let payload = encode(first, events);
            if payload.len() > self.max_payload && events.len() > 1 {
                let (head, tail) = events.split_at(events.len() / 2);
                chunks.push((first + head.len() as u64, tail));
                chunks.push((first, head));
                continue;
            }
            let expected = self.leadership.log_position();
            let last = first + events.len() as u64 - 1;
            let id = format!("{}-{first}", self.leadership.epoch());
            let payload = Bytes::from(payload);
            let len = payload.len() as u64;
            let written = publish(
                &self.connection,
                &self.leadership,
                &id,
                expected,
                payload,
                last,
            )
            .await;
            match written {
                Ok(position) => {
                    self.leadership.set_log_position(position);
                    self.metrics.log_bytes.inc_by(len);
                }
                Err(e) => {
                    self.leadership.step_down();
                    return Err(StoreError::Replicated(format!(
                        "appending events {first}..={last}: {}",
                        match e {
                            PublishError::Fenced => "another node wrote to the log",
                            PublishError::LeaseLapsed => "the lease lapsed",
                        }
                    )));
                }
            }
        }
        if !self.leadership.may_write() {
            self.leadership.step_down();
            return Err(StoreError::Replicated(
                "the lease lapsed while appending".into(),
            ));
        }
        Ok(())
    }
}

impl Log for NatsLog {
    fn append(&mut self, first_seq: u64, appends: &[Append]) -> Result<(), StoreError> {
        let events: Vec<&Event> = appends.iter().flat_map(|a| &a.events).collect();
        if events.is_empty() {
            return Ok(());
        }
        let last = first_seq + events.len() as u64 - 1;
        self.runtime
            .block_on(self.publish_all(first_seq, &events))?;
        self.leadership.set_applied(last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wallet::{Charge, WalletEvent};
    use crate::domain::{ChargeId, UserId, Won};

    #[test]
    fn a_message_decodes_to_what_was_encoded() {
        let charge = Event::Wallet(WalletEvent::Charged(Charge {
            id: ChargeId(uuid::Uuid::from_u128(7)),
            user: UserId(3),
            amount: Won(500),
            balance_after: Won(500),
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            idempotency_key: Some("k".into()),
        }));
        let payload = encode(41, &[&charge, &charge]);
        let (first, events) = decode(&payload).expect("decodes");
        assert_eq!(first, 41);
        assert_eq!(events, vec![charge.clone(), charge]);
        assert!(decode(&payload[..payload.len() - 1]).is_err(), "cut short");
    }

    #[test]
    fn a_message_of_another_format_version_is_refused() {
        let payload = bincode::serde::encode_to_vec(
            (FORMAT_VERSION + 1, 1u64, Vec::<Event>::new()),
            bincode::config::standard(),
        )
        .unwrap();
        let error = decode(&payload).unwrap_err();
        assert!(error.contains("format version"), "{error}");
    }
}
