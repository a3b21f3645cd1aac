//! One concert's waiting room.
//!
//! Users join in arrival order; at most `active_max` are `ACTIVE` at once and the rest
//! wait. The moment a slot frees (an active window ends, a hold of theirs expires,
//! they pay, leave, or the concert sells out) the head of the line is admitted, at
//! that very instant: [`QueueState::advance`] walks the deadlines that passed in time
//! order, so the outcome does not depend on how often it runs.
//!
//! Invariants: waiting positions are exactly 1..=n in join order; at most `active_max`
//! entries are `ACTIVE` (a crash between a payment and its log record can leave one
//! more until that entry's window ends, see `replay`); a user has at most one entry,
//! and a final entry (`EXPIRED`, `COMPLETED`, `SOLD_OUT`) never changes again, but for
//! the one case `replay_payment` explains.
//!
//! Polls keep a waiting entry alive but are not logged: after recovery every waiting
//! entry gets a fresh idle window ([`QueueState::refresh_idle`]).

use super::date::Payment;
use super::fenwick::Fenwick;
use super::{ConcertId, IdMap, Rejection, ReservationId, Ticket, Timestamp, UserId};
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many recent active windows the wait estimate averages.
const SERVICE_SAMPLES_MAX: usize = 64;

/// The limits a waiting room enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueRules {
    /// Most `ACTIVE` users at once.
    pub active_max: u32,
    /// How long an active window lasts.
    pub active_ttl: Duration,
    /// How long a waiting entry lives without a poll.
    pub idle_timeout: Duration,
}

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryStatus {
    /// In line.
    Waiting,
    /// Admitted: may hold seats.
    Active,
    /// Ended: the active window or a hold ran out, or a waiting entry was not polled.
    Expired,
    /// Ended: the user paid.
    Completed,
    /// Ended: no seat of the concert is available or held any more.
    SoldOut,
}

impl EntryStatus {
    /// Whether the entry has ended for good.
    pub fn is_final(self) -> bool {
        !matches!(self, EntryStatus::Waiting | EntryStatus::Active)
    }
}

/// A user's place in the waiting room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's ticket.
    pub ticket: Ticket,
    /// Whose it is.
    pub user: UserId,
    /// Its status.
    pub status: EntryStatus,
    /// Join order within the concert.
    seq: u64,
    /// When a waiting entry expires unless polled.
    #[serde(with = "crate::domain::time::compact")]
    idle_until: Timestamp,
    /// When it was admitted, if it was.
    #[serde(with = "crate::domain::time::compact_option")]
    admitted_at: Option<Timestamp>,
    /// When an active window ends.
    #[serde(with = "crate::domain::time::compact_option")]
    active_until: Option<Timestamp>,
    /// Live holds of an active entry, with their deadlines.
    #[serde(with = "crate::domain::time::compact_holds")]
    holds: Vec<(ReservationId, Timestamp)>,
    /// When it reached a final status.
    #[serde(with = "crate::domain::time::compact_option")]
    ended_at: Option<Timestamp>,
}

impl Entry {
    /// The instant an active entry ends unless something happens first (its window,
    /// or the earliest deadline of its holds). Only for an `ACTIVE` entry.
    pub fn active_deadline(&self) -> Timestamp {
        let window = self.active_until.expect("an active entry has a window");
        self.holds
            .iter()
            .map(|(_, at)| *at)
            .fold(window, Timestamp::min)
    }
}

/// An entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    /// The entry's ticket.
    pub ticket: Ticket,
    /// Its concert.
    pub concert_id: ConcertId,
    /// Its status.
    pub status: EntryStatus,
    /// Waiting: entries ahead plus one. Otherwise 0.
    pub position: u64,
    /// A waiting entry's expected wait.
    pub estimated_wait_secs: u64,
    /// Waiting: the idle deadline. Active: the end of the window. Final: when it ended.
    pub expires_at: Timestamp,
}

/// What happened in a waiting room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueEvent {
    /// A user joined at the back (or straight into `SOLD_OUT` after a sell-out).
    Joined {
        /// Who.
        user: UserId,
        /// The new entry's ticket.
        ticket: Ticket,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
        /// The first idle deadline.
        #[serde(with = "crate::domain::time::compact")]
        idle_until: Timestamp,
    },
    /// A user left; the entry is gone. Only read from older logs: leaving is logged as
    /// [`QueueEvent::LeftAt`] now.
    Left {
        /// Who.
        user: UserId,
    },
    /// The head of the line was admitted.
    Admitted {
        /// Who.
        user: UserId,
        /// When the slot freed.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
        /// The end of the active window.
        #[serde(with = "crate::domain::time::compact")]
        until: Timestamp,
    },
    /// An entry expired.
    Expired {
        /// Who.
        user: UserId,
        /// The deadline that passed.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// An active user holds seats until `expires_at`. Only in older logs: the room
    /// now learns of holds from the date's `SeatsHeld`, which replay notes here too
    /// ([`QueueState::replay_hold`]).
    HoldNoted {
        /// Who.
        user: UserId,
        /// The reservation.
        reservation_id: ReservationId,
        /// The hold's deadline.
        #[serde(with = "crate::domain::time::compact")]
        expires_at: Timestamp,
    },
    /// An active user's hold ended without expiring (they cancelled it).
    HoldReleased {
        /// Who.
        user: UserId,
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Every seat of the concert is sold (or its dates cancelled): every live entry ends.
    SoldOut {
        /// When it was noticed.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// A user left at `at`; the entry is gone. (Logs written before this variant
    /// existed hold [`QueueEvent::Left`], without the time.)
    LeftAt {
        /// Who.
        user: UserId,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
    /// After a sell-out, seats came back (a refund): the room admits again. Entries the
    /// sell-out ended stay ended; their users join again.
    Reopened {
        /// When it was noticed.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
}

/// One concert's waiting room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueState {
    concert_id: ConcertId,
    /// Configuration, not state: not saved, set again on load.
    #[serde(skip)]
    rules: QueueRules,
    entries: IdMap<UserId, Entry>,
    /// Waiting users by join order.
    waiting: BTreeMap<u64, UserId>,
    /// One slot per join since `rank_base`: 1 while that entry waits.
    ranks: Fenwick,
    rank_base: u64,
    /// Waiting entries by idle deadline.
    #[serde(skip)] // Derived: rebuilt on load (see `set_rules`).
    idle: BTreeSet<(Timestamp, u64)>,
    /// Active entries by the instant they end unless something happens first.
    #[serde(skip)] // Derived: rebuilt on load (see `set_rules`).
    active: BTreeSet<(Timestamp, UserId)>,
    next_seq: u64,
    sold_out: bool,
    /// Lengths of recent active windows, for the wait estimate.
    service_secs: VecDeque<i64>,
}

impl QueueState {
    /// An empty waiting room.
    pub fn new(concert_id: ConcertId, rules: QueueRules) -> Self {
        QueueState {
            concert_id,
            rules,
            entries: IdMap::default(),
            waiting: BTreeMap::new(),
            ranks: Fenwick::default(),
            rank_base: 0,
            idle: BTreeSet::new(),
            active: BTreeSet::new(),
            next_seq: 0,
            sold_out: false,
            service_secs: VecDeque::new(),
        }
    }

    /// Replaces the limits and rebuilds what a snapshot does not store (after loading one).
    pub fn set_rules(&mut self, rules: QueueRules) {
        self.rules = rules;
        let entries = &self.entries;
        self.idle = self
            .waiting
            .iter()
            .map(|(seq, user)| (entries[user].idle_until, *seq))
            .collect();
        self.active = entries
            .values()
            .filter(|e| e.status == EntryStatus::Active)
            .map(|e| (e.active_deadline(), e.user))
            .collect();
    }

    /// Number of waiting entries.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Number of active entries.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether the concert has sold out.
    pub fn is_sold_out(&self) -> bool {
        self.sold_out
    }

    /// Active users with the instant each entry ends unless something happens first.
    pub fn active_users(&self) -> impl Iterator<Item = (UserId, Timestamp)> + '_ {
        self.active
            .iter()
            .map(|(deadline, user)| (*user, *deadline))
    }

    /// A user's entry.
    pub fn entry(&self, user: UserId) -> Option<&Entry> {
        self.entries.get(&user)
    }

    /// Brings the room up to `now`: expires every entry whose deadline passed and
    /// admits the head of the line into each freed slot, in time order; then ends every
    /// live entry if `sold_out`. Run before and after every command.
    pub fn advance(&mut self, now: Timestamp, sold_out: bool) -> Vec<QueueEvent> {
        let mut events = Vec::new();
        self.fill_slots(now, &mut events);
        loop {
            let active = self.active.first().copied();
            let idle = self.idle.first().map(|&(at, seq)| (at, self.waiting[&seq]));
            let next = match (active, idle) {
                (Some(a), Some(i)) => a.min(i),
                (a, i) => match a.or(i) {
                    Some(next) => next,
                    None => break,
                },
            };
            if next.0 > now {
                break;
            }
            self.emit(
                QueueEvent::Expired {
                    user: next.1,
                    at: next.0,
                },
                &mut events,
            );
            self.fill_slots(next.0, &mut events);
        }
        if sold_out && !self.sold_out {
            self.emit(QueueEvent::SoldOut { at: now }, &mut events);
        } else if !sold_out && self.sold_out {
            self.emit(QueueEvent::Reopened { at: now }, &mut events);
            self.fill_slots(now, &mut events);
        }
        events
    }

    /// Joins the line. `Ok(None)` when the user already has a live entry.
    pub fn join(&mut self, user: UserId, ticket: Ticket, now: Timestamp) -> Option<QueueEvent> {
        if self
            .entries
            .get(&user)
            .is_some_and(|e| !e.status.is_final())
        {
            return None;
        }
        let event = QueueEvent::Joined {
            user,
            ticket,
            at: now,
            idle_until: now + self.rules.idle_timeout,
        };
        self.replay(&event);
        Some(event)
    }

    /// Leaves: the entry is removed, freeing its slot if it was active.
    pub fn leave(&mut self, user: UserId, now: Timestamp) -> Result<QueueEvent, Rejection> {
        if !self.entries.contains_key(&user) {
            return Err(Rejection::NotInQueue);
        }
        let event = QueueEvent::LeftAt { user, at: now };
        self.replay(&event);
        Ok(event)
    }

    /// Keeps a waiting entry alive until `now + idle_timeout`. Not logged.
    pub fn poll(&mut self, user: UserId, now: Timestamp) -> Result<(), Rejection> {
        let entry = self.entries.get_mut(&user).ok_or(Rejection::NotInQueue)?;
        if entry.status == EntryStatus::Waiting {
            let until = now + self.rules.idle_timeout;
            if until > entry.idle_until {
                self.idle.remove(&(entry.idle_until, entry.seq));
                entry.idle_until = until;
                self.idle.insert((until, entry.seq));
            }
        }
        Ok(())
    }

    /// Gives every waiting entry a full idle window from `now` (after recovery, since
    /// polls are not logged).
    pub fn refresh_idle(&mut self, now: Timestamp) {
        let users: Vec<UserId> = self.waiting.values().copied().collect();
        for user in users {
            self.poll(user, now).expect("a waiting user has an entry");
        }
    }

    /// The user's entry as the API shows it.
    pub fn view(&self, user: UserId) -> Result<EntryView, Rejection> {
        let entry = self.entries.get(&user).ok_or(Rejection::NotInQueue)?;
        let (position, expires_at) = match entry.status {
            EntryStatus::Waiting => {
                let slot = (entry.seq - self.rank_base) as usize;
                (u64::from(self.ranks.prefix(slot + 1)), entry.idle_until)
            }
            EntryStatus::Active => (0, entry.active_until.expect("an active entry has a window")),
            _ => (0, entry.ended_at.expect("a final entry has an end")),
        };
        Ok(EntryView {
            ticket: entry.ticket,
            concert_id: self.concert_id,
            status: entry.status,
            position,
            estimated_wait_secs: self.estimate_wait_secs(position),
            expires_at,
        })
    }

    /// Succeeds only for a user whose entry is `ACTIVE`.
    pub fn require_active(&self, user: UserId) -> Result<(), Rejection> {
        match self.entries.get(&user) {
            Some(entry) if entry.status == EntryStatus::Active => Ok(()),
            _ => Err(Rejection::NotAdmitted),
        }
    }

    /// Records a hold of an active user: if it expires unpaid, so does the entry.
    /// Nothing is logged for it: the date logs the hold (`SeatsHeld`), and replay
    /// notes it from there ([`QueueState::replay_hold`]). Answers whether it was noted.
    ///
    /// The room hears of a hold only once it is durable, so its entry may have moved on
    /// since the hold's place in the log, and replay must come to the same entry:
    /// - ended since (expired, left, sold out, paid): neither notes it for good, as
    ///   ending an entry forgets its holds;
    /// - admitted since (the seat view showed the admission before it was durable, so
    ///   the hold reached the log first): both note it, as replay notes the holds of a
    ///   waiting entry too, and admission indexes the entry with them.
    ///
    /// One case stays apart, harmlessly: an entry that ends, and a new one of the same
    /// user admitted, between the hold's check and this note. Live the new entry ends
    /// with the hold; replayed, with its window.
    pub fn note_hold(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
        expires_at: Timestamp,
    ) -> bool {
        self.require_active(user).is_ok() && self.replay_hold(user, reservation_id, expires_at)
    }

    /// Replays a hold the date logged: a live entry of the user's (waiting or active)
    /// ends unpaid when the hold does. Answers whether it was noted.
    pub fn replay_hold(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
        expires_at: Timestamp,
    ) -> bool {
        let live = self
            .entries
            .get(&user)
            .is_some_and(|entry| !entry.status.is_final());
        if live {
            self.reindex(user, |entry| {
                // A user has a hold or two: grow by one, not to four.
                entry.holds.reserve_exact(1);
                entry.holds.push((reservation_id, expires_at));
            });
        }
        live
    }

    /// Forgets a hold the user cancelled.
    pub fn release_hold(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
    ) -> Option<QueueEvent> {
        let entry = self.entries.get(&user)?;
        if !entry.holds.iter().any(|(id, _)| *id == reservation_id) {
            return None;
        }
        let event = QueueEvent::HoldReleased {
            user,
            reservation_id,
        };
        self.replay(&event);
        Some(event)
    }

    /// Applies a waiting-room event, live or when recovering.
    pub fn replay(&mut self, event: &QueueEvent) {
        match *event {
            QueueEvent::Joined {
                user,
                ticket,
                at,
                idle_until,
            } => self.replay_joined(user, ticket, at, idle_until),
            QueueEvent::Left { user } | QueueEvent::LeftAt { user, .. } => {
                self.unlink(user);
                self.entries.remove(&user);
            }
            QueueEvent::Admitted { user, at, until } => {
                self.unlink(user);
                let entry = self
                    .entries
                    .get_mut(&user)
                    .expect("an admitted user has an entry");
                entry.status = EntryStatus::Active;
                entry.admitted_at = Some(at);
                entry.active_until = Some(until);
                self.active.insert((entry.active_deadline(), user));
            }
            // The ones below may reach the log after the payment that ended the entry
            // (see `replay_payment`): then they have nothing left to change.
            QueueEvent::Expired { user, at } => {
                if !self.ended_by_payment(user) {
                    self.finish(user, EntryStatus::Expired, at);
                }
            }
            QueueEvent::HoldNoted {
                user,
                reservation_id,
                expires_at,
            } => {
                // Older logs have the date's `SeatsHeld` before this: noted already.
                let noted = self
                    .entries
                    .get(&user)
                    .is_some_and(|entry| entry.holds.iter().any(|(id, _)| *id == reservation_id));
                if !noted {
                    self.replay_hold(user, reservation_id, expires_at);
                }
            }
            QueueEvent::HoldReleased {
                user,
                reservation_id,
            } => {
                self.reindex(user, |entry| {
                    entry.holds.retain(|(id, _)| *id != reservation_id)
                });
            }
            QueueEvent::SoldOut { at } => {
                self.sold_out = true;
                let live: Vec<UserId> = self
                    .waiting
                    .values()
                    .copied()
                    .chain(self.active.iter().map(|(_, user)| *user))
                    .collect();
                for user in live {
                    self.finish(user, EntryStatus::SoldOut, at);
                }
            }
            QueueEvent::Reopened { .. } => self.sold_out = false,
        }
    }

    /// Applies the waiting-room side of a payment: an active payer's entry completes.
    ///
    /// The room hears of a payment only once its log record is durable, so every room
    /// event that follows from it is logged after it. The room's own records of what it
    /// did just before (a hold noted, a hold released, an expiry) may still be logged
    /// after the payment, when the room's batch reaches the writer later than the
    /// wallet's: replay then finds the entry already `COMPLETED` and skips them.
    ///
    /// The one change to a final entry: the payment that sells the last seat reaches
    /// the room after the room saw the sell-out (it reads the seat counts directly),
    /// so an entry that was active when the sell-out ended it completes too.
    pub fn replay_payment(&mut self, payment: &Payment) {
        let Some(entry) = self.entries.get_mut(&payment.user) else {
            return;
        };
        match entry.status {
            EntryStatus::Active => {
                self.finish(payment.user, EntryStatus::Completed, payment.paid_at);
            }
            EntryStatus::SoldOut if entry.admitted_at.is_some() => {
                entry.status = EntryStatus::Completed;
                entry.ended_at = Some(payment.paid_at);
            }
            _ => {}
        }
    }

    /// Whether the user's entry was ended by a payment (events about it that the room
    /// logged after the payment's record then change nothing).
    fn ended_by_payment(&self, user: UserId) -> bool {
        self.entries
            .get(&user)
            .is_some_and(|e| e.status == EntryStatus::Completed)
    }

    fn replay_joined(
        &mut self,
        user: UserId,
        ticket: Ticket,
        at: Timestamp,
        idle_until: Timestamp,
    ) {
        if let Some(old) = self.entries.get(&user) {
            assert!(old.status.is_final(), "a user is in line once");
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let status = if self.sold_out {
            EntryStatus::SoldOut
        } else {
            EntryStatus::Waiting
        };
        let entry = Entry {
            ticket,
            user,
            status,
            seq,
            idle_until,
            admitted_at: None,
            active_until: None,
            holds: Vec::new(),
            ended_at: (status == EntryStatus::SoldOut).then_some(at),
        };
        self.entries.insert(user, entry);
        if status == EntryStatus::Waiting {
            assert_eq!(
                self.ranks.len() as u64,
                seq - self.rank_base,
                "one rank slot per join"
            );
            self.ranks.push(1);
            self.waiting.insert(seq, user);
            self.idle.insert((idle_until, seq));
        } else {
            self.rebase_if_empty();
        }
    }

    /// Admits the head of the line into every free slot, at `at`.
    fn fill_slots(&mut self, at: Timestamp, events: &mut Vec<QueueEvent>) {
        while self.active.len() < self.rules.active_max as usize && !self.sold_out {
            let Some((_, &user)) = self.waiting.first_key_value() else {
                break;
            };
            let until = at + self.rules.active_ttl;
            self.emit(QueueEvent::Admitted { user, at, until }, events);
        }
    }

    /// Moves a live entry to a final status.
    fn finish(&mut self, user: UserId, status: EntryStatus, at: Timestamp) {
        self.unlink(user);
        let entry = self
            .entries
            .get_mut(&user)
            .expect("a finished user has an entry");
        assert!(!entry.status.is_final(), "a final entry never changes");
        if let Some(admitted_at) = entry.admitted_at {
            self.service_secs
                .push_back((at - admitted_at).num_seconds().max(0));
            if self.service_secs.len() > SERVICE_SAMPLES_MAX {
                self.service_secs.pop_front();
            }
        }
        entry.status = status;
        entry.ended_at = Some(at);
        entry.holds.clear();
    }

    /// Takes a user out of the waiting line or the active set, whichever holds them.
    fn unlink(&mut self, user: UserId) {
        let Some(entry) = self.entries.get(&user) else {
            return;
        };
        if entry.status == EntryStatus::Active {
            let removed = self.active.remove(&(entry.active_deadline(), user));
            assert!(removed, "an active entry is indexed by its deadline");
        }
        if entry.status == EntryStatus::Waiting && self.waiting.remove(&entry.seq).is_some() {
            self.ranks.add((entry.seq - self.rank_base) as usize, -1);
            self.idle.remove(&(entry.idle_until, entry.seq));
            self.rebase_if_empty();
        }
    }

    /// Changes an entry, keeping the active index in step with its deadline (moved
    /// only if the change moved it: a hold that ends after the window, the usual case,
    /// leaves it where it is).
    fn reindex(&mut self, user: UserId, change: impl FnOnce(&mut Entry)) {
        let entry = self
            .entries
            .get_mut(&user)
            .expect("a reindexed user has an entry");
        let before = (entry.status == EntryStatus::Active).then(|| entry.active_deadline());
        change(entry);
        let after = (entry.status == EntryStatus::Active).then(|| entry.active_deadline());
        if before != after {
            if let Some(deadline) = before {
                self.active.remove(&(deadline, user));
            }
            if let Some(deadline) = after {
                self.active.insert((deadline, user));
            }
        }
    }

    /// Restarts the rank slots when nobody waits, so they never grow without bound.
    fn rebase_if_empty(&mut self) {
        if self.waiting.is_empty() {
            self.ranks.clear();
            self.rank_base = self.next_seq;
        }
    }

    fn emit(&mut self, event: QueueEvent, events: &mut Vec<QueueEvent>) {
        self.replay(&event);
        events.push(event);
    }

    fn estimate_wait_secs(&self, position: u64) -> u64 {
        if position == 0 {
            return 0;
        }
        let per_slot_secs = if self.service_secs.is_empty() {
            self.rules.active_ttl.num_seconds()
        } else {
            self.service_secs.iter().sum::<i64>() / self.service_secs.len() as i64
        };
        let per_slot_secs = per_slot_secs.max(1) as u64;
        (position * per_slot_secs).div_ceil(u64::from(self.rules.active_max.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    const RULES: QueueRules = QueueRules {
        active_max: 2,
        active_ttl: Duration::seconds(600),
        idle_timeout: Duration::seconds(120),
    };

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn ticket(n: u64) -> Ticket {
        Ticket(uuid::Uuid::from_u128(u128::from(n)))
    }

    fn room() -> QueueState {
        QueueState::new(ConcertId(1), RULES)
    }

    fn join(room: &mut QueueState, user: u64, now: Timestamp) -> Option<QueueEvent> {
        room.advance(now, false);
        let event = room.join(UserId(user), ticket(user), now);
        room.advance(now, false);
        event
    }

    fn status(room: &QueueState, user: u64) -> (EntryStatus, u64) {
        let view = room.view(UserId(user)).unwrap();
        (view.status, view.position)
    }

    fn payment(user: u64, at: Timestamp) -> Payment {
        Payment {
            id: crate::domain::PaymentId(uuid::Uuid::nil()),
            reservation_id: ReservationId(uuid::Uuid::nil()),
            user: UserId(user),
            concert_id: ConcertId(1),
            date_id: crate::domain::DateId(1),
            amount: crate::domain::Won(1),
            balance_after: crate::domain::Won(0),
            paid_at: at,
            idempotency_key: None,
        }
    }

    #[test]
    fn the_first_users_are_admitted_and_the_rest_wait_in_order() {
        let mut room = room();
        for user in 1..=5 {
            join(&mut room, user, t(0));
        }
        assert_eq!(status(&room, 1), (EntryStatus::Active, 0));
        assert_eq!(status(&room, 2), (EntryStatus::Active, 0));
        assert_eq!(status(&room, 3), (EntryStatus::Waiting, 1));
        assert_eq!(status(&room, 5), (EntryStatus::Waiting, 3));
        assert_eq!(room.view(UserId(1)).unwrap().expires_at, t(600));
    }

    #[test]
    fn joining_twice_never_makes_two_entries() {
        let mut room = room();
        assert!(join(&mut room, 1, t(0)).is_some());
        assert!(join(&mut room, 1, t(1)).is_none());
        assert_eq!(room.active_len() + room.waiting_len(), 1);
    }

    #[test]
    fn positions_close_up_when_someone_ahead_leaves() {
        let mut room = room();
        for user in 1..=6 {
            join(&mut room, user, t(0));
        }
        room.leave(UserId(4), t(0)).unwrap();
        assert_eq!(status(&room, 3), (EntryStatus::Waiting, 1));
        assert_eq!(status(&room, 5), (EntryStatus::Waiting, 2));
        assert_eq!(status(&room, 6), (EntryStatus::Waiting, 3));
        assert_eq!(room.view(UserId(4)), Err(Rejection::NotInQueue));
        assert_eq!(room.leave(UserId(4), t(0)), Err(Rejection::NotInQueue));
    }

    #[test]
    fn a_freed_slot_goes_to_the_head_of_the_line_at_once() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        room.leave(UserId(1), t(0)).unwrap();
        room.advance(t(0), false);
        assert_eq!(status(&room, 3), (EntryStatus::Active, 0));
    }

    #[test]
    fn an_active_window_ends_at_exactly_its_deadline_and_admits_the_next_then() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        // User 3 keeps polling; users 1 and 2 let their windows run out.
        for s in (0..600).step_by(60) {
            room.poll(UserId(3), t(s)).unwrap();
        }
        room.advance(t(599), false);
        assert_eq!(status(&room, 1), (EntryStatus::Active, 0));
        room.advance(t(700), false);
        assert_eq!(status(&room, 1).0, EntryStatus::Expired);
        assert_eq!(status(&room, 3).0, EntryStatus::Active);
        // Admitted when the slot freed, not when the room was looked at.
        assert_eq!(room.view(UserId(3)).unwrap().expires_at, t(1200));
    }

    #[test]
    fn a_waiting_entry_that_is_not_polled_expires() {
        let mut room = room();
        for user in 1..=4 {
            join(&mut room, user, t(0));
        }
        room.poll(UserId(4), t(100)).unwrap();
        room.advance(t(120), false);
        assert_eq!(status(&room, 3).0, EntryStatus::Expired);
        assert_eq!(status(&room, 4), (EntryStatus::Waiting, 1));
        assert_eq!(room.view(UserId(4)).unwrap().expires_at, t(220));
    }

    #[test]
    fn a_hold_that_expires_ends_the_active_entry_and_a_cancelled_one_does_not() {
        let mut room = room();
        join(&mut room, 1, t(0));
        join(&mut room, 2, t(0));
        let r1 = ReservationId(uuid::Uuid::from_u128(1));
        let r2 = ReservationId(uuid::Uuid::from_u128(2));
        assert!(room.note_hold(UserId(1), r1, t(300)));
        assert!(room.note_hold(UserId(2), r2, t(300)));
        room.release_hold(UserId(2), r2).unwrap();
        room.advance(t(299), false);
        assert_eq!(status(&room, 1).0, EntryStatus::Active);
        room.advance(t(300), false);
        assert_eq!(status(&room, 1).0, EntryStatus::Expired);
        assert_eq!(status(&room, 2).0, EntryStatus::Active);
    }

    #[test]
    fn paying_completes_the_entry_and_frees_the_slot() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        room.replay_payment(&payment(1, t(5)));
        room.advance(t(5), false);
        assert_eq!(status(&room, 1).0, EntryStatus::Completed);
        assert_eq!(status(&room, 3).0, EntryStatus::Active);
    }

    #[test]
    fn a_sell_out_ends_every_live_entry_and_new_joiners_too() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        let events = room.advance(t(10), true);
        assert_eq!(events, [QueueEvent::SoldOut { at: t(10) }]);
        for user in 1..=3 {
            assert_eq!(status(&room, user).0, EntryStatus::SoldOut);
        }
        room.join(UserId(9), ticket(9), t(11)).unwrap();
        assert_eq!(status(&room, 9).0, EntryStatus::SoldOut);
        assert_eq!(room.waiting_len() + room.active_len(), 0);
    }

    #[test]
    fn seats_that_come_back_after_a_sell_out_reopen_the_room_for_new_joiners() {
        let mut room = room();
        join(&mut room, 1, t(0));
        room.advance(t(10), true);
        let events = room.advance(t(20), false);
        assert_eq!(events, [QueueEvent::Reopened { at: t(20) }]);
        assert_eq!(status(&room, 1).0, EntryStatus::SoldOut);
        join(&mut room, 9, t(21));
        room.advance(t(21), false);
        assert_eq!(status(&room, 9).0, EntryStatus::Active);
    }

    #[test]
    fn the_payment_that_sells_out_the_concert_completes_its_payers_entry() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        room.advance(t(5), true);
        room.replay_payment(&payment(1, t(5)));
        assert_eq!(status(&room, 1).0, EntryStatus::Completed);
        assert_eq!(status(&room, 2).0, EntryStatus::SoldOut);
        room.replay_payment(&payment(3, t(5)));
        assert_eq!(status(&room, 3).0, EntryStatus::SoldOut);
    }

    #[test]
    fn a_hold_logged_before_the_admission_it_followed_replays_to_the_live_entry() {
        // Live: the view showed user 2 admitted before the admission was durable, so
        // the date logged the hold first; the room noted it once it heard, admitted.
        let rules = QueueRules {
            active_max: 1,
            ..RULES
        };
        let mut live = QueueState::new(ConcertId(1), rules);
        let mut events = Vec::new();
        for user in 1..=2 {
            events.extend(live.join(UserId(user), ticket(user), t(0)));
            events.extend(live.advance(t(0), false));
        }
        events.extend(live.leave(UserId(1), t(1)));
        let admitted = live.advance(t(1), false);
        let r = ReservationId(uuid::Uuid::from_u128(9));
        assert!(live.note_hold(UserId(2), r, t(100)));
        let mut replayed = QueueState::new(ConcertId(1), rules);
        for event in &events {
            replayed.replay(event);
        }
        replayed.replay_hold(UserId(2), r, t(100));
        for event in &admitted {
            replayed.replay(event);
        }
        assert_eq!(replayed.entry(UserId(2)), live.entry(UserId(2)));
        for room in [&mut live, &mut replayed] {
            room.advance(t(99), false);
            assert_eq!(status(room, 2).0, EntryStatus::Active);
            room.advance(t(100), false);
            assert_eq!(status(room, 2).0, EntryStatus::Expired);
        }
    }

    #[test]
    fn a_hold_noted_by_the_date_and_by_an_older_room_record_is_noted_once() {
        let mut live = room();
        join(&mut live, 1, t(0));
        let mut replayed = live.clone();
        let r = ReservationId(uuid::Uuid::from_u128(9));
        assert!(live.note_hold(UserId(1), r, t(300)));
        replayed.replay_hold(UserId(1), r, t(300));
        replayed.replay(&QueueEvent::HoldNoted {
            user: UserId(1),
            reservation_id: r,
            expires_at: t(300),
        });
        assert_eq!(replayed.entry(UserId(1)), live.entry(UserId(1)));
    }

    #[test]
    fn a_hold_of_an_ended_entry_is_not_noted() {
        let mut room = room();
        join(&mut room, 1, t(0));
        room.leave(UserId(1), t(1)).unwrap();
        join(&mut room, 1, t(2));
        room.leave(UserId(1), t(3)).unwrap();
        let r = ReservationId(uuid::Uuid::from_u128(9));
        assert!(!room.note_hold(UserId(1), r, t(300)));
        room.replay_hold(UserId(1), r, t(300));
        assert_eq!(room.entry(UserId(1)), None);
    }

    #[test]
    fn room_records_logged_after_the_payment_that_ended_the_entry_replay_as_no_ops() {
        // Live order: the room notes a hold, releases it, and only then hears of the
        // payment; the log has the payment first and the room's records after it.
        let mut live = room();
        let mut events = Vec::new();
        for user in 1..=2 {
            events.extend(live.advance(t(0), false));
            events.extend(live.join(UserId(user), ticket(user), t(0)));
        }
        events.extend(live.advance(t(0), false));
        let r = ReservationId(uuid::Uuid::from_u128(9));
        assert!(live.note_hold(UserId(1), r, t(300)));
        let late = [
            // As older logs have it: the room logged its note of the hold.
            QueueEvent::HoldNoted {
                user: UserId(1),
                reservation_id: r,
                expires_at: t(300),
            },
            live.release_hold(UserId(1), r).unwrap(),
            QueueEvent::Expired {
                user: UserId(1),
                at: t(5),
            },
        ];
        let mut replayed = room();
        for event in &events {
            replayed.replay(event);
        }
        replayed.replay_payment(&payment(1, t(4)));
        for event in &late {
            replayed.replay(event);
        }
        assert_eq!(status(&replayed, 1).0, EntryStatus::Completed);
        assert_eq!(status(&replayed, 2).0, EntryStatus::Active);
    }

    #[test]
    fn joining_after_a_final_status_makes_a_new_entry_at_the_back() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        room.replay_payment(&payment(1, t(1)));
        room.advance(t(1), false);
        join(&mut room, 4, t(2));
        let event = join(&mut room, 1, t(3));
        assert!(matches!(event, Some(QueueEvent::Joined { .. })));
        assert_eq!(status(&room, 1), (EntryStatus::Waiting, 2));
    }

    #[test]
    fn only_an_active_user_is_admitted_to_hold() {
        let mut room = room();
        for user in 1..=3 {
            join(&mut room, user, t(0));
        }
        assert_eq!(room.require_active(UserId(1)), Ok(()));
        assert_eq!(room.require_active(UserId(3)), Err(Rejection::NotAdmitted));
        assert_eq!(room.require_active(UserId(9)), Err(Rejection::NotAdmitted));
    }

    #[test]
    fn the_wait_estimate_grows_with_the_position() {
        let mut room = room();
        for user in 1..=6 {
            join(&mut room, user, t(0));
        }
        let wait = |user| room.view(UserId(user)).unwrap().estimated_wait_secs;
        assert_eq!(wait(1), 0);
        assert!(wait(3) > 0);
        assert!(wait(6) > wait(3));
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_room() {
        let mut live = room();
        let mut events = Vec::new();
        for user in 1..=5 {
            events.extend(live.advance(t(0), false));
            events.extend(live.join(UserId(user), ticket(user), t(0)));
        }
        events.extend(live.advance(t(1), false));
        events.push(live.leave(UserId(4), t(0)).unwrap());
        events.extend(live.advance(t(700), false));
        let mut replayed = room();
        for event in &events {
            replayed.replay(event);
        }
        assert_eq!(replayed.entries, live.entries);
        assert_eq!(replayed.waiting, live.waiting);
        assert_eq!(replayed.active, live.active);
        for user in 1..=5 {
            assert_eq!(replayed.view(UserId(user)), live.view(UserId(user)));
        }
    }
}
