//! The queue actor: the single owner of one concert's waiting room.
//!
//! Before and after every message it brings the room up to `now` (expiries and
//! admissions in time order, and the sell-out, which it reads from its dates' views:
//! every date sold out or cancelled; seats a refund frees reopen the room).
//! A ticker does the same when no message comes, so freed slots are handed out at once.
//! It keeps a [`QueueView`] of who is active up to date before it releases any reply,
//! so holds check admission without a round trip.
//!
//! Holds, cancels and payments tell the room without waiting for an answer: the room's
//! bookkeeping of them is never what a caller waits for. A date actor notes each
//! commit's holds in one message, before any of their callers hears of them; cancels
//! and payments come from their callers, after the same caller's hold.
//! Talks to: the journal; reads its dates' [`DateView`]s.

use super::clock::Clock;
use super::ids;
use super::journal::{Batch, Gated, Journal};
use super::mailbox::{self, BATCH_LEN_MAX};
use super::views::{DateView, QueueView};
use super::{Error, Reply};
use crate::domain::date::{Payment, Reservation};
use crate::domain::queue::{EntryStatus, EntryView, QueueEvent, QueueState};
use crate::domain::{Event, ReservationId, Ticket, Timestamp, UserId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often an idle queue actor brings its room up to date.
const ADVANCE_EVERY: Duration = Duration::from_millis(250);

enum QueueMessage {
    Join {
        user: UserId,
        reply: Reply<(EntryView, bool)>,
    },
    Poll {
        user: UserId,
        reply: Reply<EntryView>,
    },
    Leave {
        user: UserId,
        reply: Reply<()>,
    },
    /// One commit's holds on a date of the concert.
    NoteHolds(Vec<NotedHold>),
    ReleaseHold {
        user: UserId,
        reservation_id: ReservationId,
    },
    Complete {
        payment: Payment,
        done: oneshot::Sender<()>,
    },
    /// What the leader of a replicated log logged for this room (on a follower).
    Follow(Followed),
    /// This node now leads: every waiting entry gets a full idle window again, as
    /// after a restart (polls are not logged, and they went to this node's view only).
    Promoted,
}

/// A logged record a follower's room applies.
pub enum Followed {
    /// The room's own event.
    Event(QueueEvent),
    /// A payment that completes an entry.
    Payment(Payment),
    /// A hold the date logged (`SeatsHeld`): the holder's entry ends with it unpaid.
    Hold(Arc<Reservation>),
}

impl QueueMessage {
    fn user(&self) -> Option<UserId> {
        match self {
            QueueMessage::Join { user, .. }
            | QueueMessage::Poll { user, .. }
            | QueueMessage::Leave { user, .. }
            | QueueMessage::ReleaseHold { user, .. } => Some(*user),
            QueueMessage::Complete { payment, .. }
            | QueueMessage::Follow(Followed::Payment(payment)) => Some(payment.user),
            QueueMessage::Follow(Followed::Hold(held)) => Some(held.user),
            // Each noted hold's user is shown as it is noted.
            QueueMessage::NoteHolds(_) => None,
            QueueMessage::Follow(Followed::Event(_)) | QueueMessage::Promoted => None,
        }
    }
}

/// A hold the room is told of: who holds seats, and until when.
pub struct NotedHold {
    /// The holder.
    pub user: UserId,
    /// The reservation.
    pub reservation_id: ReservationId,
    /// When the hold ends unpaid.
    pub expires_at: Timestamp,
}

/// The way to one concert's queue actor.
#[derive(Clone)]
pub struct QueueHandle {
    mailbox: mpsc::Sender<QueueMessage>,
}

/// The other end of a queue actor's mailbox, before the actor runs: a concert's date
/// actors are given the room's [`QueueHandle`] before the room starts (it reads their
/// views).
pub struct QueueInbox {
    inbox: mpsc::Receiver<QueueMessage>,
}

impl QueueInbox {
    /// Starts the actor on this mailbox.
    pub fn spawn(self, state: QueueState, deps: QueueDeps) {
        for (user, deadline) in state.active_users() {
            deps.view.show(user, Some(deadline));
        }
        let actor = QueueActor {
            state,
            deps,
            inbox: self.inbox,
        };
        tokio::spawn(actor.run());
    }
}

/// What a queue actor needs besides its state.
pub struct QueueDeps {
    /// The concert's date views (for the sell-out).
    pub dates: Vec<Arc<DateView>>,
    /// The view of who is active, which it keeps up to date.
    pub view: Arc<QueueView>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where its batches go.
    pub journal: Journal,
}

impl QueueHandle {
    /// Messages waiting in the mailbox.
    pub fn queued(&self) -> usize {
        self.mailbox.max_capacity() - self.mailbox.capacity()
    }

    /// A queue actor's mailbox: the handle to it, and the inbox to start the actor on
    /// ([`QueueInbox::spawn`]).
    pub fn mailbox(mailbox_len: usize) -> (QueueHandle, QueueInbox) {
        let (mailbox, inbox) = mpsc::channel(mailbox_len);
        (QueueHandle { mailbox }, QueueInbox { inbox })
    }

    /// Joins the line; `true` if a new entry was made.
    pub async fn join(&self, user: UserId) -> Result<(EntryView, bool), Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::Join { user, reply }).await
    }

    /// The user's entry; polling keeps a waiting entry alive.
    pub async fn poll(&self, user: UserId) -> Result<EntryView, Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::Poll { user, reply }).await
    }

    /// Leaves the line (or the active set).
    pub async fn leave(&self, user: UserId) -> Result<(), Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::Leave { user, reply }).await
    }

    /// Tells the room that active users hold seats (each entry then ends if its hold
    /// expires unpaid). Nothing is logged for it: the date logged the holds. Does not
    /// wait; fails only if the mailbox is full.
    pub fn note_holds(&self, holds: Vec<NotedHold>) -> Result<(), Error> {
        self.mailbox
            .try_send(QueueMessage::NoteHolds(holds))
            .map_err(|_| Error::Overloaded)
    }

    /// Tells the room a hold was cancelled. Does not wait; fails only if the mailbox is full.
    pub fn release_hold(&self, user: UserId, reservation_id: ReservationId) -> Result<(), Error> {
        let message = QueueMessage::ReleaseHold {
            user,
            reservation_id,
        };
        self.mailbox
            .try_send(message)
            .map_err(|_| Error::Overloaded)
    }

    /// Applies what the leader of a replicated log logged for this room (on a
    /// follower), after everything sent before. Waits for room in the mailbox.
    pub async fn follow(&self, followed: Followed) -> Result<(), Error> {
        mailbox::deliver(&self.mailbox, QueueMessage::Follow(followed)).await
    }

    /// Tells the room this node now leads the log.
    pub async fn promoted(&self) -> Result<(), Error> {
        mailbox::deliver(&self.mailbox, QueueMessage::Promoted).await
    }

    /// Tells the room the user paid (call once the payment is durable): the entry
    /// completes. Waits for room in the mailbox however long it takes, since the payment
    /// happened and its queue side must not be dropped, and then until the room has
    /// applied it (in memory; the payment's own log record covers it).
    pub async fn complete(&self, payment: Payment) -> Result<(), Error> {
        let (done, applied) = oneshot::channel();
        let message = QueueMessage::Complete { payment, done };
        mailbox::deliver(&self.mailbox, message).await?;
        applied.await.map_err(|_| Error::Unavailable)
    }
}

impl Gated for QueueMessage {
    /// Joining and leaving change the room and are refused; the room's bookkeeping of
    /// holds and payments is dropped (nobody waits for it); a poll is still answered
    /// (polls are never logged), and a follower applies what the leader logged.
    fn refuse_mutation(self, batch: &mut Batch, why: Error) -> Option<Self> {
        match self {
            QueueMessage::Join { reply, .. } => batch.reply(reply, Err(why.clone())),
            QueueMessage::Leave { reply, .. } => batch.reply(reply, Err(why.clone())),
            read @ (QueueMessage::Poll { .. }
            | QueueMessage::Follow(_)
            | QueueMessage::Promoted) => return Some(read),
            QueueMessage::NoteHolds(_)
            | QueueMessage::ReleaseHold { .. }
            | QueueMessage::Complete { .. } => {}
        }
        None
    }
}

struct QueueActor {
    state: QueueState,
    deps: QueueDeps,
    inbox: mpsc::Receiver<QueueMessage>,
}

impl QueueActor {
    async fn run(mut self) {
        let mut messages = Vec::with_capacity(BATCH_LEN_MAX);
        let mut ticker = tokio::time::interval(ADVANCE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.inbox.recv_many(&mut messages, BATCH_LEN_MAX) => {
                    if received == 0 {
                        break;
                    }
                }
                _ = ticker.tick() => {}
            }
            let now = self.deps.clock.now();
            let mut batch = Batch::default();
            self.advance(now, &mut batch);
            for message in messages.drain(..) {
                let user = message.user();
                if let Some(message) = self.deps.journal.admit(message, &mut batch) {
                    self.handle(message, now, &mut batch);
                }
                if let Some(user) = user {
                    self.publish(user);
                }
                self.advance(now, &mut batch);
            }
            self.deps.view.show_waiting(self.state.waiting_len());
            self.deps.journal.submit(batch).await;
        }
    }

    fn concert_id(&self) -> crate::domain::ConcertId {
        self.deps.dates[0].date.concert_id
    }

    fn advance(&mut self, now: Timestamp, batch: &mut Batch) {
        if self.deps.journal.is_stopped() {
            return; // Nothing changes once nothing can be logged.
        }
        // A cancelled date sells nothing more: the room ends (SOLD_OUT) once every date
        // is sold out or cancelled, and reopens if a refund frees seats of a live date.
        let sold_out = self.deps.dates.iter().all(|date| date.is_closed());
        for event in self.state.advance(now, sold_out) {
            self.log(event, batch);
        }
    }

    /// Shows a user's entry in the view as it now stands.
    fn publish(&self, user: UserId) {
        let deadline = self
            .state
            .entry(user)
            .filter(|entry| entry.status == EntryStatus::Active)
            .map(|entry| entry.active_deadline());
        self.deps.view.show(user, deadline);
    }

    /// Adds an event to the batch and shows its effect in the view.
    fn log(&mut self, event: QueueEvent, batch: &mut Batch) {
        self.show(&event);
        batch.push(Event::Queue(self.concert_id(), event));
    }

    /// Shows an event's effect in the view.
    fn show(&self, event: &QueueEvent) {
        match event {
            QueueEvent::SoldOut { .. } => self.deps.view.clear(),
            QueueEvent::Reopened { .. } => {}
            QueueEvent::Joined { user, .. }
            | QueueEvent::Left { user }
            | QueueEvent::LeftAt { user, .. }
            | QueueEvent::Admitted { user, .. }
            | QueueEvent::Expired { user, .. }
            | QueueEvent::HoldNoted { user, .. }
            | QueueEvent::HoldReleased { user, .. } => self.publish(*user),
        }
    }

    fn handle(&mut self, message: QueueMessage, now: Timestamp, batch: &mut Batch) {
        match message {
            QueueMessage::Join { user, reply } => {
                let event = self.state.join(user, Ticket(ids::fresh()), now);
                let created = event.is_some();
                if let Some(event) = event {
                    self.log(event, batch);
                }
                // The joiner may be admitted at once: show them the result.
                self.advance(now, batch);
                let view = self.state.view(user).map(|view| (view, created));
                batch.reply(reply, view.map_err(Error::from));
            }
            QueueMessage::Poll { user, reply } => {
                let view = self
                    .state
                    .poll(user, now)
                    .and_then(|()| self.state.view(user));
                batch.reply(reply, view.map_err(Error::from));
            }
            QueueMessage::Leave { user, reply } => {
                let result = self
                    .state
                    .leave(user, now)
                    .map(|event| self.log(event, batch));
                batch.reply(reply, result.map_err(Error::from));
            }
            QueueMessage::NoteHolds(holds) => {
                // Logged already, by the date (`SeatsHeld`): replay notes them from there.
                for hold in holds {
                    self.state
                        .note_hold(hold.user, hold.reservation_id, hold.expires_at);
                    self.publish(hold.user);
                }
            }
            QueueMessage::ReleaseHold {
                user,
                reservation_id,
            } => {
                if let Some(event) = self.state.release_hold(user, reservation_id) {
                    self.log(event, batch);
                }
            }
            QueueMessage::Complete { payment, done } => {
                // The payment itself is logged once, by the payer's wallet.
                self.state.replay_payment(&payment);
                self.publish(payment.user);
                // The payer may have stopped waiting; that is fine.
                let _ = done.send(());
            }
            QueueMessage::Follow(Followed::Event(event)) => {
                self.state.replay(&event);
                self.show(&event);
            }
            QueueMessage::Follow(Followed::Payment(payment)) => {
                self.state.replay_payment(&payment);
            }
            QueueMessage::Follow(Followed::Hold(held)) => {
                self.state.replay_hold(held.user, held.id, held.expires_at);
            }
            QueueMessage::Promoted => self.state.refresh_idle(now),
        }
    }
}
