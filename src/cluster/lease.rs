//! The leader's lease: one key in a JetStream key-value bucket.
//!
//! The key `leader` holds who leads (`{"url": ..., "node": ...}`); each write gives it a
//! new revision. Taking and renewing are compare-and-set on the revision, so exactly
//! one node succeeds whoever tries at once.
//!
//! # Periods, and why they are safe
//!
//! - The leader renews every [`RENEW_EVERY`] (0.5 s).
//! - A follower watches the key every [`WATCH_EVERY`] (0.25 s) and takes it when its
//!   revision has not changed for [`TTL`] (3 s) of the follower's own clock, counted
//!   from when the follower first saw that revision.
//! - The leader writes only until [`TTL`] − [`MARGIN`] (2 s) after it *sent* its last
//!   successful renewal (or take), by its own clock.
//!
//! The revision a follower sees was written after the leader sent it, so the follower
//! cannot take the key earlier than `TTL` after that send, by then the leader has
//! stopped writing for `MARGIN` (1 s), which covers the two clocks running at
//! slightly different rates and the time between the leader's last check and its
//! reply leaving. A leader that is paused (SIGSTOP, a long GC-like stall) finds its
//! lease lapsed by its monotonic clock when it runs again and acknowledges nothing.
//! No wall clocks are compared. The lease only keeps leaders from overlapping in
//! the normal case; the log's fencing ([`crate::store::nats_log`]) keeps the log whole
//! even if it did not.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long an unrenewed lease lasts, as a follower counts it.
pub const TTL: Duration = Duration::from_secs(3);
/// How much sooner the leader stops writing than a follower may take over.
pub const MARGIN: Duration = Duration::from_secs(1);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How often a follower looks at the lease.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);

const KEY: &str = "leader";

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's advertised URL, where writes go.
    pub url: String,
    /// The holder's process (a new start is a new node).
    pub node: String,
}

/// What a look at the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Somebody holds it (and renews it, as far as we know).
    Held(Holder),
    /// We took it: the revision is the new leadership's epoch, and it holds until then.
    Taken {
        /// The revision we wrote.
        epoch: u64,
        /// Until when we may write.
        until: Instant,
    },
}

/// A node's handle on the lease.
pub struct Lease {
    store: kv::Store,
    me: Holder,
    /// The revision last seen and when this node first saw it.
    seen: Option<(u64, Instant)>,
    /// The revision this node last wrote, while it holds the lease.
    mine: Option<u64>,
}

impl Lease {
    /// Opens (creating if missing) the bucket `{stream}_LEASE`.
    pub async fn open(
        context: &jetstream::Context,
        stream: &str,
        replicas: usize,
        me: Holder,
    ) -> Result<Lease, String> {
        let bucket = format!("{stream}_LEASE");
        // The bucket's stream, made as the client library would make it; made here
        // because its own call first reads account limits in a form older servers
        // (2.9) do not answer.
        let config = jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        context
            .get_or_create_stream(config)
            .await
            .map_err(|e| format!("creating the lease bucket {bucket}: {e}"))?;
        let store = context
            .get_key_value(&bucket)
            .await
            .map_err(|e| format!("opening the lease bucket {bucket}: {e}"))?;
        Ok(Lease {
            store,
            me,
            seen: None,
            mine: None,
        })
    }

    /// A follower's look: takes the lease if nobody holds it or its holder let it
    /// lapse (no new revision for [`TTL`]).
    pub async fn watch(&mut self) -> Result<Look, String> {
        let entry = self
            .store
            .entry(KEY)
            .await
            .map_err(|e| format!("reading the lease: {e}"))?;
        let sent = Instant::now();
        let held = entry.filter(|e| e.operation == kv::Operation::Put);
        let taken = match held {
            None => self.store.create(KEY, self.value()).await.ok(),
            Some(entry) => {
                let holder: Holder = serde_json::from_slice(&entry.value)
                    .map_err(|e| format!("the lease's value: {e}"))?;
                match self.seen {
                    Some((revision, since)) if revision == entry.revision => {
                        // Our own name, unrenewed: a take that lapsed before it led.
                        if since.elapsed() < TTL {
                            return Ok(Look::Held(holder));
                        }
                        self.store
                            .update(KEY, self.value(), entry.revision)
                            .await
                            .ok()
                    }
                    _ => {
                        self.seen = Some((entry.revision, sent));
                        return Ok(Look::Held(holder));
                    }
                }
            }
        };
        match taken {
            Some(epoch) => {
                self.mine = Some(epoch);
                Ok(Look::Taken {
                    epoch,
                    until: sent + TTL - MARGIN,
                })
            }
            // Somebody else was quicker: look again next time.
            None => {
                self.seen = None;
                Err("another node took the lease first".into())
            }
        }
    }

    /// The leader's renewal. `Ok(Some(until))`: renewed, write until then;
    /// `Ok(None)`: somebody else holds it now; `Err`: no answer (try again; the lease
    /// lapses by itself).
    pub async fn renew(&mut self) -> Result<Option<Instant>, String> {
        let Some(revision) = self.mine else {
            return Ok(None);
        };
        let sent = Instant::now();
        match self.store.update(KEY, self.value(), revision).await {
            Ok(revision) => {
                self.mine = Some(revision);
                Ok(Some(sent + TTL - MARGIN))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.mine = None;
                Ok(None)
            }
            Err(e) => Err(format!("renewing the lease: {e}")),
        }
    }

    fn value(&self) -> bytes::Bytes {
        serde_json::to_vec(&self.me)
            .expect("a holder serializes")
            .into()
    }
}
