//! The wallet actors: a fixed number of shards, user id modulo the shard count; each
//! is the single owner of its users' balances, ledgers and idempotency keys.
//!
//! A payment is run by the payer's shard: it recalls the idempotency key, asks the
//! reservation's date actor to sell the seats against the balance (which cannot change
//! meanwhile: this actor owns it and is busy with this message), debits, and logs the
//! one [`Event::Paid`] that records the seats, the debit and the queue entry. Once that
//! record is durable the payer's queue entry is completed, and then the payer is told.
//!
//! A refund is the mirror image, with one difference: the date actor logs the one
//! [`Event::Refunded`] that records the freed seats and the credit, because what the
//! date logs next (a hold of a freed seat) must follow it in the log. So the shard
//! first hands the log what it has done so far in its batch (the balance it vouches
//! for must be durable before the refund that builds on it), then asks the date, and
//! credits the wallet in memory once the refund is durable. The date refuses a second
//! refund of the same reservation, so refunds that race (the holder's, a
//! cancellation's) give one.
//! Talks to: date and queue actors (never the other way round), and the journal.

use super::catalog::{DateEntry, Directory};
use super::clock::Clock;
use super::ids;
use super::journal::{Batch, Gated, Journal};
use super::mailbox::{self, BATCH_LEN_MAX};
use super::views::ReservationIndex;
use super::{Error, Reply};
use crate::domain::date::{Pay, Payment, Refund, RefundCommand, RefundReason};
use crate::domain::wallet::{
    Charge, KeyedRequest, LedgerEntry, Receipt, TransactionKind, WalletEvent, WalletShard,
};
use crate::domain::{ChargeId, Event, PaymentId, RefundId, ReservationId, Timestamp, UserId, Won};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

enum WalletMessage {
    Charge {
        user: UserId,
        amount: Won,
        key: Option<String>,
        reply: Reply<Charge>,
    },
    Balance {
        user: UserId,
        reply: Reply<Won>,
    },
    Transactions {
        user: UserId,
        kind: Option<TransactionKind>,
        limit: usize,
        reply: Reply<Vec<LedgerEntry>>,
    },
    Pay {
        user: UserId,
        reservation_id: ReservationId,
        key: Option<String>,
        reply: Reply<Payment>,
    },
    Refund {
        user: UserId,
        reservation_id: ReservationId,
        reason: RefundReason,
        reply: Reply<Refund>,
    },
    /// What the leader of a replicated log logged for this shard (on a follower).
    Follow(Followed),
}

/// A logged record a follower's wallet shard applies.
pub enum Followed {
    /// A charge.
    Event(WalletEvent),
    /// A payment by one of its users.
    Payment(Payment),
    /// A refund to one of its users.
    Refund(Refund),
}

/// The way to one wallet shard.
#[derive(Clone)]
pub struct WalletHandle {
    mailbox: mpsc::Sender<WalletMessage>,
}

/// What a wallet actor needs besides its state.
pub struct WalletDeps {
    /// To find a reservation's date actor and the concert's queue actor.
    pub directory: Arc<Directory>,
    /// To find which date a reservation is on.
    pub index: Arc<ReservationIndex>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where its batches go.
    pub journal: Journal,
}

impl WalletHandle {
    /// Messages waiting in the mailbox.
    pub fn queued(&self) -> usize {
        self.mailbox.max_capacity() - self.mailbox.capacity()
    }

    /// Spawns the actor for `shard`.
    pub fn spawn(shard: WalletShard, deps: WalletDeps, mailbox_len: usize) -> Self {
        let (mailbox, inbox) = mpsc::channel(mailbox_len);
        tokio::spawn(WalletActor { shard, deps, inbox }.run());
        WalletHandle { mailbox }
    }

    /// Adds money; with a key, a repeat returns the first charge.
    pub async fn charge(
        &self,
        user: UserId,
        amount: Won,
        key: Option<String>,
    ) -> Result<Charge, Error> {
        mailbox::call(&self.mailbox, |reply| WalletMessage::Charge {
            user,
            amount,
            key,
            reply,
        })
        .await
    }

    /// Applies what the leader of a replicated log logged for this shard (on a
    /// follower), after everything sent before. Waits for room in the mailbox.
    pub async fn follow(&self, followed: Followed) -> Result<(), Error> {
        mailbox::deliver(&self.mailbox, WalletMessage::Follow(followed)).await
    }

    /// The user's balance.
    pub async fn balance(&self, user: UserId) -> Result<Won, Error> {
        mailbox::call(&self.mailbox, |reply| WalletMessage::Balance {
            user,
            reply,
        })
        .await
    }

    /// The user's newest ledger entries, optionally of one kind.
    pub async fn transactions(
        &self,
        user: UserId,
        kind: Option<TransactionKind>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, Error> {
        mailbox::call(&self.mailbox, |reply| WalletMessage::Transactions {
            user,
            kind,
            limit,
            reply,
        })
        .await
    }

    /// Pays a reservation from the wallet; with a key, a repeat returns the first payment.
    pub async fn pay(
        &self,
        user: UserId,
        reservation_id: ReservationId,
        key: Option<String>,
    ) -> Result<Payment, Error> {
        mailbox::call(&self.mailbox, |reply| WalletMessage::Pay {
            user,
            reservation_id,
            key,
            reply,
        })
        .await
    }

    /// Refunds a paid reservation of the user's into the wallet.
    pub async fn refund(
        &self,
        user: UserId,
        reservation_id: ReservationId,
        reason: RefundReason,
    ) -> Result<Refund, Error> {
        mailbox::call(&self.mailbox, |reply| WalletMessage::Refund {
            user,
            reservation_id,
            reason,
            reply,
        })
        .await
    }
}

struct WalletActor {
    shard: WalletShard,
    deps: WalletDeps,
    inbox: mpsc::Receiver<WalletMessage>,
}

impl WalletActor {
    async fn run(mut self) {
        let mut messages = Vec::with_capacity(BATCH_LEN_MAX);
        while self.inbox.recv_many(&mut messages, BATCH_LEN_MAX).await > 0 {
            let now = self.deps.clock.now();
            self.shard.forget_keys(now);
            let mut batch = Batch::default();
            for message in messages.drain(..) {
                if let Some(message) = self.deps.journal.admit(message, &mut batch) {
                    self.handle(message, now, &mut batch).await;
                }
            }
            self.deps.journal.submit(batch).await;
        }
    }

    async fn handle(&mut self, message: WalletMessage, now: Timestamp, batch: &mut Batch) {
        match message {
            WalletMessage::Charge {
                user,
                amount,
                key,
                reply,
            } => {
                let result = self.charge(user, amount, key, now, batch);
                batch.reply(reply, result);
            }
            WalletMessage::Follow(followed) => match followed {
                Followed::Event(event) => self.shard.replay(&event),
                Followed::Payment(payment) => self.shard.replay_payment(&payment),
                Followed::Refund(refund) => self.shard.replay_refund(&refund),
            },
            WalletMessage::Balance { user, reply } => {
                batch.reply(reply, Ok(self.shard.balance(user)))
            }
            WalletMessage::Transactions {
                user,
                kind,
                limit,
                reply,
            } => {
                batch.reply(reply, Ok(self.shard.transactions(user, kind, limit)));
            }
            WalletMessage::Pay {
                user,
                reservation_id,
                key,
                reply,
            } => match self.pay(user, reservation_id, key, batch).await {
                Ok(Paid::Fresh(payment)) => self.reply_after_room(payment, reply, batch),
                Ok(Paid::Recalled(payment)) => batch.reply(reply, Ok(payment)),
                Err(e) => batch.reply(reply, Err(e)),
            },
            WalletMessage::Refund {
                user,
                reservation_id,
                reason,
                reply,
            } => {
                let result = self.refund(user, reservation_id, reason, batch).await;
                batch.reply(reply, result);
            }
        }
    }

    /// The date (actor and view) of one of `user`'s reservations.
    fn date_of(
        &self,
        user: UserId,
        reservation_id: ReservationId,
    ) -> Result<Arc<DateEntry>, Error> {
        let reservation = self.deps.index.owned(user, reservation_id)?;
        self.deps
            .directory
            .date(reservation.date_id)
            .ok_or(Error::Unavailable)
    }

    async fn refund(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
        reason: RefundReason,
        batch: &mut Batch,
    ) -> Result<Refund, Error> {
        let date = self.date_of(user, reservation_id)?;
        let command = RefundCommand {
            user,
            reservation_id,
            refund_id: RefundId(ids::fresh()),
            balance: self.shard.balance(user),
            reason,
        };
        // What this batch changed so far goes to the log ahead of the refund.
        self.deps.journal.submit(std::mem::take(batch)).await;
        // Answered once the date's record of the refund is durable.
        let refund = date.handle.refund(command).await?;
        self.shard.replay_refund(&refund);
        Ok(refund)
    }

    fn charge(
        &mut self,
        user: UserId,
        amount: Won,
        key: Option<String>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<Charge, Error> {
        if let Some(key) = &key {
            match self
                .shard
                .recall(user, key, &KeyedRequest::Charge(amount))?
            {
                Some(Receipt::Charged(charge)) => return Ok(charge),
                Some(Receipt::Paid(_)) => unreachable!("recall matches the request kind"),
                None => {}
            }
        }
        let event = self
            .shard
            .charge(user, amount, ChargeId(ids::fresh()), key, now)?;
        let WalletEvent::Charged(charge) = &event;
        let charge = charge.clone();
        batch.push(Event::Wallet(event));
        Ok(charge)
    }

    async fn pay(
        &mut self,
        user: UserId,
        reservation_id: ReservationId,
        key: Option<String>,
        batch: &mut Batch,
    ) -> Result<Paid, Error> {
        if let Some(key) = &key {
            match self
                .shard
                .recall(user, key, &KeyedRequest::Pay(reservation_id))?
            {
                Some(Receipt::Paid(payment)) => return Ok(Paid::Recalled(payment)),
                Some(Receipt::Charged(_)) => unreachable!("recall matches the request kind"),
                None => {}
            }
        }
        let date = self.date_of(user, reservation_id)?;
        let command = Pay {
            user,
            reservation_id,
            payment_id: PaymentId(ids::fresh()),
            balance: self.shard.balance(user),
            idempotency_key: key,
        };
        let payment = date.handle.pay(command).await?;
        self.shard.replay_payment(&payment);
        batch.push(Event::Paid(payment.clone()));
        Ok(Paid::Fresh(payment))
    }

    /// Answers a payer once the payment is durable, the date has heard so (it holds
    /// back scans of the new tickets until then) and the room has completed their
    /// entry. The room hears of the payment only once it is durable, so nothing the
    /// room logs because of it can precede it in the log.
    fn reply_after_room(&self, payment: Payment, reply: Reply<Payment>, batch: &mut Batch) {
        let (durable, committed) = oneshot::channel();
        batch.reply(durable, Ok(()));
        let queue = self
            .deps
            .directory
            .concert(payment.concert_id)
            .map(|c| c.queue.clone());
        let date = self.deps.directory.date(payment.date_id);
        tokio::spawn(async move {
            let outcome = committed.await.unwrap_or(Err(Error::Unavailable));
            if let Some(date) = date {
                // Durable or not, the date stops holding back scans of its tickets
                // (after a failed write they are refused, as every mutation is).
                date.handle.payment_durable(payment.reservation_id).await;
            }
            if outcome.is_ok()
                && let Some(queue) = queue
            {
                // Should the room be gone, the payment still stands.
                let _ = queue.complete(payment.clone()).await;
            }
            // The caller may have stopped waiting; that is fine.
            let _ = reply.send(outcome.map(|()| payment));
        });
    }
}

impl Gated for WalletMessage {
    /// Charges and payments change the wallet; balances and ledgers are still read,
    /// and a follower applies what the leader logged.
    fn refuse_mutation(self, batch: &mut Batch, why: Error) -> Option<Self> {
        match self {
            WalletMessage::Charge { reply, .. } => batch.reply(reply, Err(why.clone())),
            WalletMessage::Pay { reply, .. } => batch.reply(reply, Err(why.clone())),
            WalletMessage::Refund { reply, .. } => batch.reply(reply, Err(why.clone())),
            read @ (WalletMessage::Balance { .. }
            | WalletMessage::Transactions { .. }
            | WalletMessage::Follow(_)) => {
                return Some(read);
            }
        }
        None
    }
}

/// A payment's outcome: made now, or the receipt of an earlier one with the same key.
enum Paid {
    Fresh(Payment),
    Recalled(Payment),
}
