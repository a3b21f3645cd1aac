//! [`Image`]: the whole durable state in one value: what a snapshot holds, what
//! recovery rebuilds, and what the engine starts its actors from.
//!
//! [`Image::apply`] routes each logged event to its owners' `replay`, the same code
//! the actors use live; [`Event::Paid`] goes to the date, the wallet and the queue,
//! [`Event::Refunded`] to the date and the wallet, and a date's `SeatsHeld` to the
//! date and the queue (the room does not log its note of a hold).

use super::catalog::{CatalogEvent, CatalogState};
use super::date::{DateEvent, DateState};
use super::queue::QueueState;
use super::wallet::WalletShard;
use super::{ConcertId, DateId, Event, Rules, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every owner's state after the event with sequence number `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// The last event applied (0: none).
    pub seq: u64,
    /// Concerts.
    pub catalog: CatalogState,
    /// Every date's seats and reservations.
    pub dates: BTreeMap<DateId, DateState>,
    /// Every concert's waiting room.
    pub queues: BTreeMap<ConcertId, QueueState>,
    /// Wallet shards (user id modulo their number).
    pub wallets: Vec<WalletShard>,
    /// Whether this is the snapshot replica's copy ([`Image::replica`]): its dates keep
    /// none of what only commands look up, dates created later included.
    #[serde(skip)]
    replica: bool,
}

/// Which wallet shard owns a user.
pub fn wallet_shard(user: UserId, shards: usize) -> usize {
    (user.0 % shards as u64) as usize
}

impl Image {
    /// The state of a new data directory.
    pub fn empty(rules: &Rules) -> Image {
        Image {
            seq: 0,
            catalog: CatalogState::default(),
            dates: BTreeMap::new(),
            queues: BTreeMap::new(),
            wallets: (0..rules.wallet_shards)
                .map(|_| WalletShard::new(rules.wallet))
                .collect(),
            replica: false,
        }
    }

    /// A copy for the snapshot replica, which only applies events and saves: its dates
    /// without what only commands look up ([`DateState::replica`]), so the process does
    /// not keep that twice. It saves as the original would, and loads back whole.
    pub fn replica(&self) -> Image {
        Image {
            seq: self.seq,
            catalog: self.catalog.clone(),
            dates: self
                .dates
                .iter()
                .map(|(id, date)| (*id, date.replica()))
                .collect(),
            queues: self.queues.clone(),
            wallets: self.wallets.clone(),
            replica: true,
        }
    }

    /// Puts the configured limits into every owner (after loading a snapshot, which
    /// does not store configuration), and re-shards wallets if their number changed.
    pub fn set_rules(&mut self, rules: &Rules) {
        for date in self.dates.values_mut() {
            date.set_rules(rules.date);
        }
        for queue in self.queues.values_mut() {
            queue.set_rules(rules.queue);
        }
        assert_eq!(
            self.wallets.len(),
            rules.wallet_shards,
            "the wallet shard count is fixed"
        );
        for shard in &mut self.wallets {
            shard.set_rules(rules.wallet);
        }
    }

    /// Applies the event with sequence number `seq`.
    pub fn apply(&mut self, seq: u64, event: &Event, rules: &Rules) {
        assert_eq!(seq, self.seq + 1, "events apply in sequence");
        self.seq = seq;
        match event {
            Event::Catalog(event) => {
                self.catalog.replay(event);
                let CatalogEvent::ConcertCreated { concert_id, .. } = event;
                let concert = self.catalog.concert(*concert_id).expect("just replayed");
                for date in &concert.dates {
                    let state = DateState::new(
                        date.id,
                        concert.id,
                        date.starts_at,
                        date.layout.clone(),
                        rules.date,
                    );
                    let state = if self.replica {
                        state.into_replica()
                    } else {
                        state
                    };
                    self.dates.insert(date.id, state);
                }
                self.queues
                    .insert(concert.id, QueueState::new(concert.id, rules.queue));
            }
            Event::Date(date, event) => {
                self.dates
                    .get_mut(date)
                    .expect("a logged date exists")
                    .replay(event);
                // A hold is the room's too: if it expires unpaid, so does the entry.
                if let DateEvent::SeatsHeld(held) = event {
                    self.queues
                        .get_mut(&held.concert_id)
                        .expect("a date's concert has a room")
                        .replay_hold(held.user, held.id, held.expires_at);
                }
            }
            Event::Queue(concert, event) => {
                self.queues
                    .get_mut(concert)
                    .expect("a logged concert exists")
                    .replay(event);
            }
            Event::Wallet(event) => {
                let super::wallet::WalletEvent::Charged(charge) = event;
                let shard = wallet_shard(charge.user, self.wallets.len());
                self.wallets[shard].replay(event);
            }
            Event::Paid(payment) => {
                self.dates
                    .get_mut(&payment.date_id)
                    .expect("a paid date exists")
                    .replay_payment(payment);
                let shard = wallet_shard(payment.user, self.wallets.len());
                self.wallets[shard].replay_payment(payment);
                let queue = self
                    .queues
                    .get_mut(&payment.concert_id)
                    .expect("a paid concert exists");
                queue.replay_payment(payment);
            }
            Event::Refunded(refund) => {
                self.dates
                    .get_mut(&refund.date_id)
                    .expect("a refunded date exists")
                    .replay_refund(refund);
                let shard = wallet_shard(refund.user, self.wallets.len());
                self.wallets[shard].replay_refund(refund);
            }
        }
    }
}
