//! The queue actor: the single owner of one concert's waiting room.
//!
//! Before and after every message it brings the room up to `now` (expiries and
//! admissions in time order, and the sell-out, which it reads from its dates' views).
//! A ticker does the same when no message comes, so freed slots are handed out at once.
//! Talks to: the journal; reads its dates' [`DateView`]s.

use super::clock::Clock;
use super::journal::{Batch, Journal};
use super::mailbox::{self, BATCH_LEN_MAX};
use super::views::DateView;
use super::{Error, Reply};
use crate::domain::date::Payment;
use crate::domain::queue::{EntryView, QueueEvent, QueueState};
use crate::domain::{Event, ReservationId, Ticket, Timestamp, UserId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    RequireActive {
        user: UserId,
        reply: Reply<()>,
    },
    NoteHold {
        user: UserId,
        reservation_id: ReservationId,
        expires_at: Timestamp,
        reply: Reply<()>,
    },
    ReleaseHold {
        user: UserId,
        reservation_id: ReservationId,
        reply: Reply<()>,
    },
    Complete {
        payment: Payment,
        reply: Reply<()>,
    },
}

/// The way to one concert's queue actor.
#[derive(Clone)]
pub struct QueueHandle {
    mailbox: mpsc::Sender<QueueMessage>,
}

impl QueueHandle {
    /// Spawns the actor for `state`; `dates` are the concert's date views.
    pub fn spawn(
        state: QueueState,
        dates: Vec<Arc<DateView>>,
        clock: Arc<dyn Clock>,
        journal: Journal,
        mailbox_len: usize,
    ) -> Self {
        let (mailbox, inbox) = mpsc::channel(mailbox_len);
        let actor = QueueActor {
            state,
            dates,
            clock,
            journal,
            inbox,
        };
        tokio::spawn(actor.run());
        QueueHandle { mailbox }
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

    /// Succeeds only if the user is `ACTIVE`.
    pub async fn require_active(&self, user: UserId) -> Result<(), Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::RequireActive {
            user,
            reply,
        })
        .await
    }

    /// Records a hold of an active user, whose entry then ends if the hold expires.
    pub async fn note_hold(
        &self,
        user: UserId,
        reservation_id: ReservationId,
        expires_at: Timestamp,
    ) -> Result<(), Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::NoteHold {
            user,
            reservation_id,
            expires_at,
            reply,
        })
        .await
    }

    /// Forgets a cancelled hold.
    pub async fn release_hold(
        &self,
        user: UserId,
        reservation_id: ReservationId,
    ) -> Result<(), Error> {
        mailbox::call(&self.mailbox, |reply| QueueMessage::ReleaseHold {
            user,
            reservation_id,
            reply,
        })
        .await
    }

    /// Completes the payer's entry. Waits for room in the mailbox however long it
    /// takes: the payment has happened and its queue side must not be dropped.
    pub async fn complete(&self, payment: Payment) -> Result<(), Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let message = QueueMessage::Complete { payment, reply };
        self.mailbox
            .send(message)
            .await
            .map_err(|_| Error::Unavailable)?;
        answer.await.map_err(|_| Error::Unavailable)?
    }
}

struct QueueActor {
    state: QueueState,
    dates: Vec<Arc<DateView>>,
    clock: Arc<dyn Clock>,
    journal: Journal,
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
            let now = self.clock.now();
            let mut batch = Batch::default();
            self.advance(now, &mut batch);
            for message in messages.drain(..) {
                self.handle(message, now, &mut batch);
                self.advance(now, &mut batch);
            }
            self.journal.submit(batch).await;
        }
    }

    fn advance(&mut self, now: Timestamp, batch: &mut Batch) {
        if self.journal.is_stopped() {
            return; // Nothing changes once nothing can be logged.
        }
        let sold_out = self.dates.iter().all(|date| date.is_sold_out());
        let concert_id = self.dates[0].date.concert_id;
        for event in self.state.advance(now, sold_out) {
            batch.push(Event::Queue(concert_id, event));
        }
    }

    fn handle(&mut self, message: QueueMessage, now: Timestamp, batch: &mut Batch) {
        let message = match message {
            QueueMessage::Join { reply, .. } if self.journal.is_stopped() => {
                return batch.reply(reply, Err(Error::Unavailable));
            }
            QueueMessage::Leave { reply, .. } if self.journal.is_stopped() => {
                return batch.reply(reply, Err(Error::Unavailable));
            }
            QueueMessage::Poll { user, reply } if self.journal.is_stopped() => {
                return batch.reply(reply, self.state.view(user).map_err(Error::from));
            }
            message => message,
        };
        let concert_id = self.dates[0].date.concert_id;
        let log = |event: Option<QueueEvent>, batch: &mut Batch| {
            if let Some(event) = event {
                batch.push(Event::Queue(concert_id, event));
            }
        };
        match message {
            QueueMessage::Join { user, reply } => {
                let event = self.state.join(user, Ticket(uuid::Uuid::new_v4()), now);
                let created = event.is_some();
                log(event, batch);
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
                let result = self.state.leave(user).map(|event| log(Some(event), batch));
                batch.reply(reply, result.map_err(Error::from));
            }
            QueueMessage::RequireActive { user, reply } => {
                batch.reply(reply, self.state.require_active(user).map_err(Error::from));
            }
            QueueMessage::NoteHold {
                user,
                reservation_id,
                expires_at,
                reply,
            } => {
                log(
                    self.state.note_hold(user, reservation_id, expires_at),
                    batch,
                );
                batch.reply(reply, Ok(()));
            }
            QueueMessage::ReleaseHold {
                user,
                reservation_id,
                reply,
            } => {
                log(self.state.release_hold(user, reservation_id), batch);
                batch.reply(reply, Ok(()));
            }
            QueueMessage::Complete { payment, reply } => {
                // The payment itself is logged once, by the payer's wallet.
                self.state.replay_payment(&payment);
                batch.reply(reply, Ok(()));
            }
        }
    }
}
