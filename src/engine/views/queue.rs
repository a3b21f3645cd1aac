//! [`QueueView`]: who is `ACTIVE` in one concert's waiting room, and how many wait.
//! A reader takes a `DashMap` shard's read lock (is this user active?) or one atomic
//! load (how many wait); the queue actor writes it before it releases any reply.

use crate::domain::{Timestamp, UserId};
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who is `ACTIVE` in one concert's waiting room, and until when: written by the queue
/// actor before it releases any reply, read by holds without a mailbox round trip.
#[derive(Default)]
pub struct QueueView {
    /// Keyed by ids the server gives out, so hashed with FxHash rather than SipHash:
    /// every hold reads it and every note writes it.
    active: DashMap<UserId, Timestamp, FxBuildHasher>,
    waiting: AtomicU64,
}

impl QueueView {
    /// Entries shown as active (some may have passed their deadline a moment ago).
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Entries waiting, as of the queue actor's last batch.
    pub fn waiting_len(&self) -> u64 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Publishes the number of waiting entries.
    pub(in crate::engine) fn show_waiting(&self, waiting: usize) {
        self.waiting.store(waiting as u64, Ordering::Release);
    }

    /// Whether the user is active at `now` (an entry past its deadline is not, whether
    /// or not the queue actor has recorded the expiry yet).
    pub fn is_active(&self, user: UserId, now: Timestamp) -> bool {
        self.active
            .get(&user)
            .is_some_and(|deadline| now < *deadline)
    }

    /// Shows a user as active until `deadline`, or not active.
    pub(in crate::engine) fn show(&self, user: UserId, deadline: Option<Timestamp>) {
        match deadline {
            Some(deadline) => {
                self.active.insert(user, deadline);
            }
            None => {
                self.active.remove(&user);
            }
        }
    }

    /// Shows nobody as active (after a sell-out).
    pub(in crate::engine) fn clear(&self) {
        self.active.clear();
    }
}
