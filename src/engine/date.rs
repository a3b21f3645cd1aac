//! The date actor: the single owner of one date's seats and reservations.
//!
//! It takes its mailbox in batches; for each batch it reads the clock once, records
//! the expiry of every hold whose deadline passed, applies each message to the
//! [`DateState`], updates the read views, and hands the events and replies to the
//! journal. A ticker records expiries even when no message comes.
//!
//! Besides the sale it owns what happens after it on this date:
//! - refunds, asked by the payer's wallet actor (which vouches for the balance) and
//!   logged here, since what this date logs next may build on the freed seats;
//! - admissions at the door: one owner, so concurrent scans of one ticket serialize
//!   here and exactly one is admitted; a scan of a ticket whose payment the wallet has
//!   not yet reported durable waits for that word, so no admission is logged ahead of
//!   its payment;
//! - pausing and cancelling sales, and the operator's reports, computed between
//!   batches from its state.
//!
//! Talks to: the journal, and its concert's waiting room, which it tells of each
//! commit's holds once they are durable (callers reach it through [`DateHandle`]).

use super::clock::Clock;
use super::ids;
use super::journal::{Batch, Gated, Journal, Release};
use super::mailbox::{self, BATCH_LEN_MAX};
use super::queue::{NotedHold, QueueHandle};
use super::views::{DateView, ReservationIndex};
use super::{Error, Reply};
use crate::domain::date::{
    DateEvent, DateState, Hold, Pay, Payment, Refund, RefundCommand, Reservation,
};
use crate::domain::sales::{self, DateSales, ReservationFilter};
use crate::domain::{Event, ReservationId, SeatId, Timestamp, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an idle date actor records expired holds.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

enum DateMessage {
    Hold {
        user: UserId,
        seats: Vec<SeatId>,
        reply: Reply<Reservation>,
    },
    Cancel {
        user: UserId,
        reservation_id: ReservationId,
        reply: Reply<Option<Reservation>>,
    },
    Pay {
        command: Pay,
        reply: Reply<Payment>,
    },
    Refund {
        command: RefundCommand,
        reply: Reply<Refund>,
    },
    SetPaused {
        paused: bool,
        reply: Reply<()>,
    },
    CancelDate {
        reply: Reply<Cancellation>,
    },
    Admit {
        reservation_id: ReservationId,
        seat_id: SeatId,
        reply: Reply<Reservation>,
    },
    PaymentDurable {
        reservation_id: ReservationId,
    },
    Sales {
        reply: Reply<DateSales>,
    },
    Reservations {
        filter: ReservationFilter,
        reply: Reply<ReservationPage>,
    },
    /// What the leader of a replicated log logged for this date (on a follower).
    Follow(Followed),
}

/// A logged record a follower's date applies.
pub enum Followed {
    /// The date's own event.
    Event(DateEvent),
    /// A payment of one of its reservations.
    Payment(Payment),
    /// A refund of one of its reservations.
    Refund(Refund),
}

/// A page of a date's reservations and the cursor of the next.
pub type ReservationPage = (Vec<Reservation>, Option<ReservationId>);

/// What cancelling a date leaves to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cancellation {
    /// Holds this call released (empty if the date was cancelled before).
    pub released: Vec<(UserId, ReservationId)>,
    /// Paid reservations still to refund.
    pub to_refund: Vec<(UserId, ReservationId)>,
}

/// The way to one date actor. Cloning is cheap; the actor stops with the last clone.
#[derive(Clone)]
pub struct DateHandle {
    mailbox: mpsc::Sender<DateMessage>,
}

/// What a date actor needs besides its state.
pub struct DateDeps {
    /// The view it keeps up to date.
    pub view: Arc<DateView>,
    /// The reservation index it records into.
    pub index: Arc<ReservationIndex>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where its batches go.
    pub journal: Journal,
    /// Its concert's waiting room, told of the holds.
    pub room: QueueHandle,
}

impl DateHandle {
    /// Messages waiting in the mailbox.
    pub fn queued(&self) -> usize {
        self.mailbox.max_capacity() - self.mailbox.capacity()
    }

    /// Spawns the actor for `state` with a mailbox of `mailbox_len` messages.
    pub fn spawn(state: DateState, deps: DateDeps, mailbox_len: usize) -> Self {
        let (mailbox, inbox) = mpsc::channel(mailbox_len);
        let actor = DateActor {
            state,
            deps,
            inbox,
            unconfirmed: HashSet::new(),
            parked: HashMap::new(),
        };
        actor.load_views();
        tokio::spawn(actor.run());
        DateHandle { mailbox }
    }

    /// Holds all of `seats` for `user`, or none.
    pub async fn hold(&self, user: UserId, seats: Vec<SeatId>) -> Result<Reservation, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Hold {
            user,
            seats,
            reply,
        })
        .await
    }

    /// Releases a live hold. `Some` with the reservation if this call released it.
    pub async fn cancel(
        &self,
        user: UserId,
        reservation_id: ReservationId,
    ) -> Result<Option<Reservation>, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Cancel {
            user,
            reservation_id,
            reply,
        })
        .await
    }

    /// Sells a live hold's seats against the balance the wallet vouches for. The
    /// caller (the payer's wallet actor) logs the returned payment.
    pub async fn pay(&self, command: Pay) -> Result<Payment, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Pay { command, reply }).await
    }

    /// Frees a paid reservation's seats against the balance the wallet vouches for, and
    /// logs the refund; answers once it is durable. The caller (the payer's wallet
    /// actor) then credits the wallet.
    pub async fn refund(&self, command: RefundCommand) -> Result<Refund, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Refund {
            command,
            reply,
        })
        .await
    }

    /// Tells the date that the payment of a reservation is durable (the wallet logs
    /// payments): scans of its tickets may now be admitted. Waits for room in the
    /// mailbox however long it takes: a lost word would keep the tickets out.
    pub async fn payment_durable(&self, reservation_id: ReservationId) {
        let message = DateMessage::PaymentDurable { reservation_id };
        // A date that is gone admits nobody anyway.
        let _ = mailbox::deliver(&self.mailbox, message).await;
    }

    /// Pauses (`true`) or resumes sales.
    pub async fn set_paused(&self, paused: bool) -> Result<(), Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::SetPaused {
            paused,
            reply,
        })
        .await
    }

    /// Cancels the date (once; again, it only answers what is left to refund).
    pub async fn cancel_date(&self) -> Result<Cancellation, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::CancelDate { reply }).await
    }

    /// Admits a ticket at the door; the reservation after it.
    pub async fn admit(
        &self,
        reservation_id: ReservationId,
        seat_id: SeatId,
    ) -> Result<Reservation, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Admit {
            reservation_id,
            seat_id,
            reply,
        })
        .await
    }

    /// Applies what the leader of a replicated log logged for this date (on a
    /// follower), after everything sent before. Waits for room in the mailbox.
    pub async fn follow(&self, followed: Followed) -> Result<(), Error> {
        mailbox::deliver(&self.mailbox, DateMessage::Follow(followed)).await
    }

    /// The date's sales figures.
    pub async fn sales(&self) -> Result<DateSales, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Sales { reply }).await
    }

    /// A page of the date's reservations.
    pub async fn reservations(&self, filter: ReservationFilter) -> Result<ReservationPage, Error> {
        mailbox::call(&self.mailbox, |reply| DateMessage::Reservations {
            filter,
            reply,
        })
        .await
    }
}

struct DateActor {
    state: DateState,
    deps: DateDeps,
    inbox: mpsc::Receiver<DateMessage>,
    /// Reservations paid here whose payment the wallet has not yet reported durable
    /// (it logs the payment). Not state: after a restart every payment is durable.
    unconfirmed: HashSet<ReservationId>,
    /// Scans of tickets of unconfirmed payments, answered once the payment is durable,
    /// so that no admission reaches the log ahead of the payment it admits.
    parked: HashMap<ReservationId, Vec<(SeatId, Reply<Reservation>)>>,
}

impl DateActor {
    async fn run(mut self) {
        let mut messages = Vec::with_capacity(BATCH_LEN_MAX);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.inbox.recv_many(&mut messages, BATCH_LEN_MAX) => {
                    if received == 0 {
                        break;
                    }
                }
                _ = sweep.tick() => {}
            }
            let mut batch = Batch::default();
            let now = self.deps.clock.now();
            let expired = (!self.deps.journal.is_stopped())
                .then(|| self.state.expire_due(now))
                .flatten();
            if let Some(event) = expired {
                self.publish(&event);
                batch.push(Event::Date(self.state.date_id(), event));
            }
            let mut held = Vec::new();
            for message in messages.drain(..) {
                if let Some(message) = self.deps.journal.admit(message, &mut batch) {
                    self.handle(message, now, &mut batch, &mut held);
                }
            }
            if !held.is_empty() {
                self.note_when_durable(held, &mut batch);
            }
            self.deps.journal.submit(batch).await;
        }
    }

    /// Tells the room of the batch's holds once they are durable, before any of their
    /// callers hears of them: nobody can pay for a hold (which ends the entry) before
    /// the room has noted it. Replay notes every logged hold, so a note lost to a full
    /// mailbox only lets the entry end with its window instead, until a restart.
    fn note_when_durable(&self, held: Vec<NotedHold>, batch: &mut Batch) {
        let room = self.deps.room.clone();
        let note: Release = Box::new(move |committed| {
            if committed.is_err() {
                return;
            }
            let holds = held.len();
            if let Err(e) = room.note_holds(held) {
                tracing::warn!(holds, "holds not noted by the waiting room: {e}");
            }
        });
        batch.replies.insert(0, note);
    }

    fn handle(
        &mut self,
        message: DateMessage,
        now: Timestamp,
        batch: &mut Batch,
        held: &mut Vec<NotedHold>,
    ) {
        let date_id = self.state.date_id();
        match message {
            DateMessage::Hold { user, seats, reply } => {
                let command = Hold {
                    user,
                    seats,
                    reservation_id: ReservationId(ids::fresh()),
                };
                let result = self.state.hold(command, now).map(|event| {
                    self.publish(&event);
                    let DateEvent::SeatsHeld(reservation) = &event else {
                        unreachable!("a hold makes SeatsHeld")
                    };
                    let reservation = Reservation::clone(reservation);
                    held.push(NotedHold {
                        user,
                        reservation_id: reservation.id,
                        expires_at: reservation.expires_at,
                    });
                    batch.push(Event::Date(date_id, event));
                    reservation
                });
                batch.reply(reply, result.map_err(Error::from));
            }
            DateMessage::Cancel {
                user,
                reservation_id,
                reply,
            } => {
                let result = self.state.cancel(user, reservation_id, now).map(|event| {
                    let event = event?;
                    self.publish(&event);
                    batch.push(Event::Date(date_id, event));
                    self.state.reservation(reservation_id).cloned()
                });
                batch.reply(reply, result.map_err(Error::from));
            }
            DateMessage::Pay { command, reply } => {
                let result = self.state.pay(command, now).inspect(|payment| {
                    self.show(&[payment.reservation_id]);
                    self.unconfirmed.insert(payment.reservation_id);
                });
                // Answered at once, not with the batch: this date logs nothing for a
                // payment (the wallet logs it), and the reservation's SeatsHeld is
                // already queued to the log writer ahead of anything the wallet sends.
                let _ = reply.send(result.map_err(Error::from));
            }
            DateMessage::Refund { command, reply } => {
                let result = self.state.refund(command, now).inspect(|refund| {
                    self.show_freed(refund.reservation_id);
                    batch.push(Event::Refunded(refund.clone()));
                });
                // Logged here, unlike a payment: a later hold of a freed seat must
                // follow the refund in the log. The payer's wallet, waiting for this
                // answer, credits the money once the batch is durable.
                batch.reply(reply, result.map_err(Error::from));
            }
            other => self.handle_operation(other, now, batch),
        }
    }

    /// The messages of the operator and the door.
    fn handle_operation(&mut self, message: DateMessage, now: Timestamp, batch: &mut Batch) {
        let date_id = self.state.date_id();
        match message {
            DateMessage::SetPaused { paused, reply } => {
                let change = if paused {
                    self.state.pause(now)
                } else {
                    self.state.resume(now)
                };
                let result = change.map(|event| {
                    if let Some(event) = event {
                        self.publish(&event);
                        batch.push(Event::Date(date_id, event));
                    }
                });
                batch.reply(reply, result.map_err(Error::from));
            }
            DateMessage::CancelDate { reply } => {
                let mut released = Vec::new();
                if let Some(event) = self.state.cancel_date(now) {
                    self.publish(&event);
                    if let DateEvent::DateCancelled { released: ids, .. } = &event {
                        released = ids
                            .iter()
                            .map(|id| (self.state.reservation(*id).expect("released").user, *id))
                            .collect();
                    }
                    batch.push(Event::Date(date_id, event));
                }
                let to_refund = self.state.paid();
                batch.reply(
                    reply,
                    Ok(Cancellation {
                        released,
                        to_refund,
                    }),
                );
            }
            DateMessage::Admit {
                reservation_id,
                seat_id,
                reply,
            } if self.unconfirmed.contains(&reservation_id) => {
                let parked = self.parked.entry(reservation_id).or_default();
                parked.push((seat_id, reply));
            }
            DateMessage::PaymentDurable { reservation_id } => {
                self.unconfirmed.remove(&reservation_id);
                for (seat_id, reply) in self.parked.remove(&reservation_id).unwrap_or_default() {
                    if self.deps.journal.is_stopped() {
                        batch.reply(reply, Err(Error::Unavailable));
                        continue;
                    }
                    let message = DateMessage::Admit {
                        reservation_id,
                        seat_id,
                        reply,
                    };
                    self.handle_operation(message, now, batch);
                }
            }
            DateMessage::Admit {
                reservation_id,
                seat_id,
                reply,
            } => {
                let result = self.state.admit(reservation_id, seat_id, now).map(|event| {
                    self.publish(&event);
                    batch.push(Event::Date(date_id, event));
                    self.state
                        .reservation(reservation_id)
                        .expect("just admitted")
                        .clone()
                });
                batch.reply(reply, result.map_err(Error::from));
            }
            DateMessage::Sales { reply } => {
                batch.reply(reply, Ok(sales::date_sales(&self.state)));
            }
            DateMessage::Reservations { filter, reply } => {
                let page = sales::reservations_page(&self.state, &filter);
                batch.reply(reply, page.map_err(Error::from));
            }
            DateMessage::Follow(followed) => self.follow(followed),
            DateMessage::Hold { .. }
            | DateMessage::Cancel { .. }
            | DateMessage::Pay { .. }
            | DateMessage::Refund { .. } => unreachable!("handled by `handle`"),
        }
    }

    /// Applies a record the leader logged, and shows it, as replay and the live path do.
    fn follow(&mut self, followed: Followed) {
        match followed {
            Followed::Event(event) => {
                self.state.replay(&event);
                self.publish(&event);
            }
            Followed::Payment(payment) => {
                self.state.replay_payment(&payment);
                self.show(&[payment.reservation_id]);
            }
            Followed::Refund(refund) => {
                self.state.replay_refund(&refund);
                self.show_freed(refund.reservation_id);
            }
        }
    }

    /// Shows the recovered state in the read views (at start).
    fn load_views(&self) {
        self.deps
            .view
            .load(self.state.reservations(), self.state.counts());
        self.deps.view.show_paused(self.state.is_paused());
        self.deps
            .view
            .show_cancelled(self.state.cancelled_at().is_some());
        for reservation in self.state.reservations() {
            self.deps.index.record(reservation);
        }
    }

    /// Updates the read views for every reservation an event touched.
    fn publish(&self, event: &DateEvent) {
        match event {
            DateEvent::SeatsHeld(reservation) => self.show(&[reservation.id]),
            DateEvent::HoldCancelled { reservation_id, .. } => self.show(&[*reservation_id]),
            DateEvent::HoldsExpired {
                reservation_ids, ..
            } => self.show(reservation_ids),
            DateEvent::SalesPaused { .. } => self.deps.view.show_paused(true),
            DateEvent::SalesResumed { .. } => self.deps.view.show_paused(false),
            DateEvent::DateCancelled { released, .. } => {
                self.deps.view.show_paused(false);
                self.deps.view.show_cancelled(true);
                self.show(released);
            }
            DateEvent::TicketAdmitted { reservation_id, .. } => {
                // No seat changes: only the reservation's record does.
                let reservation = self
                    .state
                    .shared_reservation(*reservation_id)
                    .expect("an admitted reservation exists");
                self.deps.index.record(reservation);
            }
        }
    }

    /// Shows a refunded reservation: its sold seats are available again.
    fn show_freed(&self, id: ReservationId) {
        let reservation = self
            .state
            .shared_reservation(id)
            .expect("a refunded reservation exists");
        self.deps.view.show_freed(reservation, self.state.counts());
        self.deps.index.record(reservation);
    }

    /// Shows changed reservations and the counts after them in one step.
    fn show(&self, ids: &[ReservationId]) {
        let changed: Vec<&Arc<Reservation>> = ids
            .iter()
            .map(|id| {
                self.state
                    .shared_reservation(*id)
                    .expect("a changed reservation exists")
            })
            .collect();
        self.deps
            .view
            .show(changed.iter().copied(), self.state.counts());
        for reservation in changed {
            self.deps.index.record(reservation);
        }
    }
}

impl Gated for DateMessage {
    /// Every message to a date changes it, but the operator's reports (and, on a
    /// follower, what the leader logged).
    fn refuse_mutation(self, batch: &mut Batch, why: Error) -> Option<Self> {
        match self {
            DateMessage::Hold { reply, .. } => batch.reply(reply, Err(why.clone())),
            DateMessage::Cancel { reply, .. } => batch.reply(reply, Err(why.clone())),
            DateMessage::Pay { reply, .. } => batch.reply(reply, Err(why.clone())),
            DateMessage::Refund { reply, .. } => batch.reply(reply, Err(why.clone())),
            DateMessage::SetPaused { reply, .. } => batch.reply(reply, Err(why.clone())),
            DateMessage::CancelDate { reply } => batch.reply(reply, Err(why.clone())),
            DateMessage::Admit { reply, .. } => batch.reply(reply, Err(why.clone())),
            read @ (DateMessage::Sales { .. }
            | DateMessage::Reservations { .. }
            | DateMessage::Follow(_)
            | DateMessage::PaymentDurable { .. }) => {
                // The last only releases parked scans, which are then refused.
                return Some(read);
            }
        }
        None
    }
}
