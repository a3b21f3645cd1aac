//! Who may write a replicated log, as this node knows it.
//!
//! With the replicated log ([`super::nats_log`]) several nodes share one log and
//! exactly one of them, the leader, appends. [`Leadership`] is the one place a node
//! keeps what it knows of that: whether it leads, until when its lease lets it, who
//! leads otherwise, and how far behind the log it is. The lease is renewed by the
//! cluster's lease keeper; the log checks it before every append and before it
//! acknowledges one; the journal asks it whether to take mutations at all.
//!
//! The lease is only half of the safety: every append also states the log position it
//! expects to follow, so even a leader that wrongly believes its lease still holds
//! cannot fork the log (its write fails instead).

use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// This node's view of the leadership of a replicated log.
#[derive(Debug, Default)]
pub struct Leadership {
    leading: AtomicBool,
    /// Until when the lease lets this node write (set by each renewal).
    lease_until: Mutex<Option<Instant>>,
    /// The leader's advertised URL, if one is known.
    leader_url: RwLock<Option<String>>,
    /// The last event this node has applied (leader: appended).
    applied_seq: AtomicU64,
    /// The last event known to be in the log.
    log_end_seq: AtomicU64,
    /// The log's own position of the last record this node has read or written (a
    /// JetStream stream sequence): what its next append expects to follow.
    log_position: AtomicU64,
    /// Names this node's leadership (the lease revision it took), for message ids.
    epoch: AtomicU64,
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Appends to the log and acknowledges writes.
    Leader,
    /// Follows the log and serves reads.
    Follower,
}

impl Leadership {
    /// Whether this node may append and acknowledge now: it leads and its lease holds.
    pub fn may_write(&self) -> bool {
        self.leading.load(Ordering::Acquire) && self.holds_lease()
    }

    /// Whether this node's lease holds now (leading or about to).
    pub fn holds_lease(&self) -> bool {
        self.lease_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    /// The role this node plays now.
    pub fn role(&self) -> Role {
        if self.may_write() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// The lease holds until `until` (a renewal succeeded).
    pub fn extend_lease(&self, until: Instant) {
        *self.lease_until.lock() = Some(until);
    }

    /// Starts writing as leader of epoch `epoch` (after catching up with the log and
    /// fencing it).
    pub fn lead(&self, own_url: &str, epoch: u64) {
        *self.leader_url.write() = Some(own_url.to_owned());
        self.epoch.store(epoch, Ordering::Release);
        self.leading.store(true, Ordering::Release);
    }

    /// Stops writing at once (the lease is lost or the log refused a write).
    pub fn step_down(&self) {
        self.leading.store(false, Ordering::Release);
        *self.lease_until.lock() = None;
    }

    /// The epoch this node leads (or last led).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether this node has been made leader (whatever its lease says now).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Records who leads, as the lease says (`None`: nobody holds it).
    pub fn set_leader_url(&self, url: Option<String>) {
        *self.leader_url.write() = url;
    }

    /// The leader's advertised URL, if one is known.
    pub fn leader_url(&self) -> Option<String> {
        self.leader_url.read().clone()
    }

    /// Records that events up to `seq` are applied here.
    pub fn set_applied(&self, seq: u64) {
        self.applied_seq.store(seq, Ordering::Release);
        self.log_end_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Records that the log holds events up to `seq`.
    pub fn set_log_end(&self, seq: u64) {
        self.log_end_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// The last event applied here.
    pub fn applied(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Records the log position of the last record read or written here.
    pub fn set_log_position(&self, position: u64) {
        self.log_position.store(position, Ordering::Release);
    }

    /// The log position of the last record read or written here.
    pub fn log_position(&self) -> u64 {
        self.log_position.load(Ordering::Acquire)
    }

    /// Events in the log not yet applied here.
    pub fn lag(&self) -> u64 {
        self.log_end_seq
            .load(Ordering::Acquire)
            .saturating_sub(self.applied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_leader_writes_only_while_its_lease_holds() {
        let leadership = Leadership::default();
        assert!(!leadership.may_write(), "nobody leads at first");
        leadership.extend_lease(Instant::now() + Duration::from_secs(60));
        assert!(!leadership.may_write(), "a lease alone is not leading");
        leadership.lead("http://a", 1);
        assert!(leadership.may_write());
        assert_eq!(leadership.role(), Role::Leader);
        leadership.extend_lease(Instant::now() - Duration::from_millis(1));
        assert!(!leadership.may_write(), "a lapsed lease stops writes");
        assert_eq!(leadership.role(), Role::Follower);
        leadership.extend_lease(Instant::now() + Duration::from_secs(60));
        leadership.step_down();
        assert!(!leadership.may_write(), "stepping down forgets the lease");
    }

    #[test]
    fn lag_counts_events_not_yet_applied() {
        let leadership = Leadership::default();
        leadership.set_log_end(10);
        leadership.set_applied(4);
        assert_eq!(leadership.lag(), 6);
        leadership.set_applied(12);
        assert_eq!(leadership.lag(), 0, "the end moves with what is applied");
    }
}
