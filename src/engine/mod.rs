//! The engine: actors that own the state, handles that reach them, and the read views.
//!
//! - [`clock`]: where `now` comes from (system or manual).
//! - [`ids`]: fresh ids for what the actors create.
//! - [`journal`]: the commit point every actor's replies pass through.
//! - [`mailbox`]: bounded sends with a wait, then [`Error::Overloaded`].
//! - [`date`], [`queue`], [`wallet`]: the actors and their handles.
//! - [`catalog`]: concert creation and the [`catalog::Directory`] of running actors.
//! - [`views`]: the read views GETs are served from (seat maps, reservations, who is
//!   active).
//! - [`metrics`]: counters of what the sale did, fed by a tap on the log.
//!
//! [`Engine`] is the facade the HTTP layer calls. It runs the steps that span owners
//! (a hold asks the queue, then the date, then tells the queue; a date's cancellation
//! is logged by the date, then each paid reservation is refunded through its payer's
//! wallet) and holds no state of its own beyond handles. Channels only go one way: http → wallet → date/queue → journal.

pub mod catalog;
pub mod clock;
pub mod date;
pub mod feed;
pub mod ids;
pub mod journal;
pub mod mailbox;
pub mod metrics;
pub mod queue;
pub mod seatmap;
pub mod views;
pub mod wallet;

use crate::domain::catalog::{CatalogCommand, CatalogEvent, CatalogState, Concert, ConcertSpec};
use crate::domain::date::{
    DateEvent, DateState, Payment, RefundReason, Reservation, SeatStatus, check_seat_list,
};
use crate::domain::queue::{EntryView, QueueState};
use crate::domain::sales::{DateSales, ReservationFilter};
use crate::domain::ticket::Claim;
use crate::domain::wallet::{Charge, LedgerEntry, TransactionKind, WalletEvent};
use crate::domain::{
    ConcertId, DateId, Event, Image, Rejection, ReservationId, Rules, SeatId, Timestamp, UserId,
    Won,
};
use catalog::{ConcertEntry, DateEntry, Directory};
use clock::Clock;
use journal::Journal;
use metrics::EngineMetrics;
use std::sync::Arc;
use views::ReservationIndex;
use wallet::{WalletDeps, WalletHandle};

/// Where an actor's answer goes.
pub type Reply<T> = tokio::sync::oneshot::Sender<Result<T, Error>>;

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A business "no" (4xx); nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A mailbox stayed full past its wait (503 with `Retry-After`); nothing changed.
    #[error("the server is overloaded")]
    Overloaded,
    /// An actor or the journal is gone (503).
    #[error("the engine is unavailable")]
    Unavailable,
    /// This node follows a replicated log and takes no writes (307 to the leader, or
    /// 503 when no leader is known).
    #[error("this node does not lead the log")]
    NotLeader,
}

/// What every actor is started with.
#[derive(Clone)]
pub struct Context {
    /// The limits.
    pub rules: Rules,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where batches go.
    pub journal: Journal,
    /// The reservation index the date actors write.
    pub index: Arc<ReservationIndex>,
    /// What the engine counts.
    pub metrics: Arc<EngineMetrics>,
}

/// The running engine.
pub struct Engine {
    context: Context,
    catalog: tokio::sync::Mutex<CatalogState>,
    directory: Arc<Directory>,
    wallets: Vec<WalletHandle>,
}

impl Engine {
    /// Starts the actors of every owner in `image` (recovered, or empty). `metrics` is
    /// where refused holds are counted (durable events are counted by the log's tap,
    /// [`metrics::EventCounter`]).
    pub fn start(
        rules: Rules,
        clock: Arc<dyn Clock>,
        journal: Journal,
        image: Image,
        metrics: Arc<EngineMetrics>,
    ) -> Arc<Engine> {
        assert_eq!(
            image.wallets.len(),
            rules.wallet_shards,
            "one state per wallet shard"
        );
        let index = Arc::new(ReservationIndex::default());
        let context = Context {
            rules,
            clock,
            journal,
            index,
            metrics,
        };
        let Image {
            catalog,
            mut dates,
            mut queues,
            wallets,
            ..
        } = image;
        let directory = Arc::new(Directory::default());
        let now = context.clock.now();
        for concert in catalog.concerts() {
            let states = concert
                .dates
                .iter()
                .map(|d| dates.remove(&d.id).expect("every date has a state"))
                .collect();
            let mut queue = queues
                .remove(&concert.id)
                .expect("every concert has a queue");
            // Polls are not logged: every waiting entry gets a full idle window again.
            queue.refresh_idle(now);
            directory.open(concert.clone(), states, queue, &context);
        }
        let wallets = wallets
            .into_iter()
            .map(|shard| {
                let deps = WalletDeps {
                    directory: directory.clone(),
                    index: context.index.clone(),
                    clock: context.clock.clone(),
                    journal: context.journal.clone(),
                };
                WalletHandle::spawn(shard, deps, rules.mailbox_len)
            })
            .collect();
        let catalog = tokio::sync::Mutex::new(catalog);
        let engine = Arc::new(Engine {
            context,
            catalog,
            directory,
            wallets,
        });
        engine.finish_cancellations();
        engine
    }

    /// An engine with no data and an in-memory journal (tests, engine benchmarks).
    pub fn in_memory(rules: Rules, clock: Arc<dyn Clock>) -> Arc<Engine> {
        let metrics = Arc::default();
        Self::start(
            rules,
            clock,
            Journal::in_memory(),
            Image::empty(&rules),
            metrics,
        )
    }

    /// The engine's current time.
    pub fn now(&self) -> Timestamp {
        self.context.clock.now()
    }

    /// The limits in force.
    pub fn rules(&self) -> &Rules {
        &self.context.rules
    }

    /// Messages waiting in the mailboxes of each kind of actor.
    pub fn mailbox_depths(&self) -> [(&'static str, usize); 3] {
        let concerts = self.directory.concerts();
        let dates = concerts
            .iter()
            .flat_map(|c| &c.dates)
            .map(|d| d.handle.queued())
            .sum();
        let queues = concerts.iter().map(|c| c.queue.queued()).sum();
        let wallets = self.wallets.iter().map(WalletHandle::queued).sum();
        [("date", dates), ("queue", queues), ("wallet", wallets)]
    }

    /// Events committed since start.
    pub fn events_total(&self) -> u64 {
        self.context.journal.events_total()
    }

    /// The journal (to snapshot or stop the write path).
    pub fn journal(&self) -> &Journal {
        &self.context.journal
    }

    /// Every reservation ever made, by id and by user.
    pub fn reservation_index(&self) -> &Arc<ReservationIndex> {
        &self.context.index
    }

    /// What the engine counts.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.context.metrics
    }

    /// Creates a concert and starts its actors.
    pub async fn create_concert(&self, spec: ConcertSpec) -> Result<Arc<ConcertEntry>, Error> {
        if self.context.journal.is_stopped() {
            // Refused before the catalog changes in memory.
            return Err(self.context.journal.refusal());
        }
        let mut catalog = self.catalog.lock().await;
        let event = catalog.apply(
            CatalogCommand::Create(spec),
            self.context.rules.catalog,
            self.now(),
        )?;
        let CatalogEvent::ConcertCreated { concert_id, .. } = &event;
        let concert = catalog.concert(*concert_id).expect("just created").clone();
        self.context
            .journal
            .commit(vec![Event::Catalog(event)])
            .await?;
        Ok(self.open_concert(concert))
    }

    /// Starts the actors of a new concert.
    fn open_concert(&self, concert: Arc<Concert>) -> Arc<ConcertEntry> {
        let rules = &self.context.rules;
        let states = concert
            .dates
            .iter()
            .map(|d| DateState::new(d.id, concert.id, d.starts_at, d.layout.clone(), rules.date))
            .collect();
        let queue = QueueState::new(concert.id, rules.queue);
        self.directory.open(concert, states, queue, &self.context)
    }

    /// Applies events another node logged (this node follows a replicated log): each
    /// goes to its owners' mailboxes, after everything sent to them before, and they
    /// apply it as replay does. Concerts are created at once.
    pub async fn follow(&self, events: &[Event]) -> Result<(), Error> {
        for event in events {
            self.follow_one(event).await?;
        }
        Ok(())
    }

    async fn follow_one(&self, event: &Event) -> Result<(), Error> {
        let missing = |_| Error::Unavailable;
        match event {
            Event::Catalog(event) => {
                let mut catalog = self.catalog.lock().await;
                catalog.replay(event);
                let CatalogEvent::ConcertCreated { concert_id, .. } = event;
                let concert = catalog.concert(*concert_id).ok_or(Error::Unavailable)?;
                self.open_concert(concert.clone());
            }
            Event::Date(date, event) => {
                let date = self.date_entry(*date).map_err(missing)?;
                date.handle
                    .follow(date::Followed::Event(event.clone()))
                    .await?;
                if let DateEvent::SeatsHeld(held) = event {
                    let concert = self.concert(held.concert_id).map_err(missing)?;
                    let followed = queue::Followed::Hold(held.clone());
                    concert.queue.follow(followed).await?;
                }
            }
            Event::Queue(concert, event) => {
                let concert = self.concert(*concert).map_err(missing)?;
                concert
                    .queue
                    .follow(queue::Followed::Event(event.clone()))
                    .await?;
            }
            Event::Wallet(event) => {
                let WalletEvent::Charged(charge) = event;
                let followed = wallet::Followed::Event(event.clone());
                self.wallet(charge.user).follow(followed).await?;
            }
            Event::Paid(payment) => {
                let date = self.date_entry(payment.date_id).map_err(missing)?;
                let concert = self.concert(payment.concert_id).map_err(missing)?;
                let followed = date::Followed::Payment(payment.clone());
                date.handle.follow(followed).await?;
                let followed = wallet::Followed::Payment(payment.clone());
                self.wallet(payment.user).follow(followed).await?;
                let followed = queue::Followed::Payment(payment.clone());
                concert.queue.follow(followed).await?;
            }
            Event::Refunded(refund) => {
                let date = self.date_entry(refund.date_id).map_err(missing)?;
                let followed = date::Followed::Refund(refund.clone());
                date.handle.follow(followed).await?;
                let followed = wallet::Followed::Refund(refund.clone());
                self.wallet(refund.user).follow(followed).await?;
            }
        }
        Ok(())
    }

    /// This node now leads the log it followed: waiting entries get a fresh idle
    /// window, and cancellations left unfinished are finished, as after a restart.
    pub async fn promoted(self: &Arc<Self>) {
        for concert in self.directory.concerts() {
            // A room that is gone has nobody waiting.
            let _ = concert.queue.promoted().await;
        }
        self.finish_cancellations();
    }

    /// Every concert with its actors and views, by id.
    pub fn concerts(&self) -> Vec<Arc<ConcertEntry>> {
        self.directory.concerts()
    }

    /// One concert with its actors and views.
    pub fn concert(&self, id: ConcertId) -> Result<Arc<ConcertEntry>, Error> {
        Ok(self
            .directory
            .concert(id)
            .ok_or(Rejection::ConcertNotFound)?)
    }

    /// One date of a concert, with its actor and view.
    pub fn date(&self, concert: ConcertId, date: DateId) -> Result<Arc<DateEntry>, Error> {
        let entry = self.concert(concert)?;
        let date = entry
            .dates
            .iter()
            .find(|d| d.view.date.id == date)
            .ok_or(Rejection::DateNotFound)?;
        Ok(date.clone())
    }

    /// A date by id alone (whatever its concert).
    pub fn date_by_id(&self, date: DateId) -> Option<Arc<DateEntry>> {
        self.directory.date(date)
    }

    /// Joins a concert's waiting room; `true` if a new entry was made.
    pub async fn join_queue(
        &self,
        concert: ConcertId,
        user: UserId,
    ) -> Result<(EntryView, bool), Error> {
        self.concert(concert)?.queue.join(user).await
    }

    /// The user's entry in a concert's waiting room (and keeps it alive).
    pub async fn queue_entry(&self, concert: ConcertId, user: UserId) -> Result<EntryView, Error> {
        self.concert(concert)?.queue.poll(user).await
    }

    /// Leaves a concert's waiting room.
    pub async fn leave_queue(&self, concert: ConcertId, user: UserId) -> Result<(), Error> {
        self.concert(concert)?.queue.leave(user).await
    }

    /// Holds seats for an admitted user.
    ///
    /// Admission is read from the room's view, and a request for a seat the seat map
    /// already shows taken is refused from the view too: only a hold that may win
    /// reaches the date actor. Both views are updated before any reply that could tell
    /// a caller about the change, so no caller can see them disagree with the actors.
    pub async fn hold(
        &self,
        user: UserId,
        date: DateId,
        seats: Vec<SeatId>,
    ) -> Result<Reservation, Error> {
        let result = self.try_hold(user, date, seats).await;
        if let Err(Error::Rejected(rejection)) = &result {
            self.context.metrics.hold_rejected(rejection);
        }
        result
    }

    async fn try_hold(
        &self,
        user: UserId,
        date: DateId,
        seats: Vec<SeatId>,
    ) -> Result<Reservation, Error> {
        let date = self.directory.date(date).ok_or(Rejection::DateNotFound)?;
        let concert = self.concert(date.view.date.concert_id)?;
        let now = self.now();
        if !concert.queue_view.is_active(user, now) {
            return Err(Rejection::NotAdmitted.into());
        }
        let max = self.context.rules.date.seats_per_reservation_max;
        check_seat_list(&date.view.date.layout, &seats, max)?;
        if date.view.is_cancelled() {
            return Err(Rejection::DateCancelled.into());
        }
        if date.view.is_paused() {
            return Err(Rejection::SalesPaused.into());
        }
        let taken: Vec<SeatId> = seats
            .iter()
            .copied()
            .filter(|&s| date.view.seat_status(s, now) != Some(SeatStatus::Available))
            .collect();
        if !taken.is_empty() {
            return Err(Rejection::SeatUnavailable(taken).into());
        }
        // Once the hold is durable, the date actor has told the room, before this reply.
        let reservation = date.handle.hold(user, seats).await?;
        Ok(reservation)
    }

    /// A user's reservations, newest first, with their status now.
    pub fn reservations(&self, user: UserId) -> Vec<Reservation> {
        let now = self.now();
        self.context
            .index
            .of_user(user)
            .into_iter()
            .map(|r| as_of(r, now))
            .collect()
    }

    /// One of the user's reservations, with its status now.
    pub fn reservation(&self, user: UserId, id: ReservationId) -> Result<Reservation, Error> {
        let reservation = self.context.index.owned(user, id)?;
        Ok(as_of(reservation, self.now()))
    }

    /// Releases a live hold (nothing to do for one that already ended unpaid).
    pub async fn cancel(&self, user: UserId, id: ReservationId) -> Result<(), Error> {
        let reservation = self.reservation(user, id)?;
        let date = self
            .directory
            .date(reservation.date_id)
            .ok_or(Error::Unavailable)?;
        if let Some(cancelled) = date.handle.cancel(user, id).await? {
            let concert = self.concert(cancelled.concert_id)?;
            // The hold is released and logged; the room forgetting it is bookkeeping.
            if let Err(e) = concert.queue.release_hold(user, id) {
                tracing::warn!(%user, reservation = %id, "cancel not noted by the queue: {e}");
            }
        }
        Ok(())
    }

    /// The seat details of a reservation: id, label, price.
    pub fn reserved_seats(&self, reservation: &Reservation) -> Vec<(SeatId, String, Won)> {
        let Some(date) = self.directory.date(reservation.date_id) else {
            return Vec::new();
        };
        let layout = &date.view.date.layout;
        reservation
            .seats
            .iter()
            .filter_map(|&id| layout.seat(id).map(|s| (id, s.label(), s.price)))
            .collect()
    }

    fn wallet(&self, user: UserId) -> &WalletHandle {
        &self.wallets[crate::domain::image::wallet_shard(user, self.wallets.len())]
    }

    /// A user's balance.
    pub async fn balance(&self, user: UserId) -> Result<Won, Error> {
        self.wallet(user).balance(user).await
    }

    /// Adds money to a user's wallet.
    pub async fn charge(
        &self,
        user: UserId,
        amount: Won,
        key: Option<String>,
    ) -> Result<Charge, Error> {
        self.wallet(user).charge(user, amount, key).await
    }

    /// A user's newest ledger entries, optionally of one kind.
    pub async fn transactions(
        &self,
        user: UserId,
        kind: Option<TransactionKind>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, Error> {
        self.wallet(user).transactions(user, kind, limit).await
    }

    /// Pays a reservation from the user's wallet.
    pub async fn pay(
        &self,
        user: UserId,
        reservation: ReservationId,
        key: Option<String>,
    ) -> Result<Payment, Error> {
        self.wallet(user).pay(user, reservation, key).await
    }

    /// Refunds one of the user's paid reservations (before the refund deadline);
    /// answers the reservation as it now is.
    pub async fn refund(&self, user: UserId, id: ReservationId) -> Result<Reservation, Error> {
        self.wallet(user)
            .refund(user, id, RefundReason::Requested)
            .await?;
        self.reservation(user, id)
    }

    /// A date's actor and view, by id alone.
    pub fn date_entry(&self, date: DateId) -> Result<Arc<DateEntry>, Error> {
        Ok(self.directory.date(date).ok_or(Rejection::DateNotFound)?)
    }

    /// Pauses (`true`) or resumes sales of a date.
    pub async fn set_paused(&self, date: DateId, paused: bool) -> Result<(), Error> {
        self.date_entry(date)?.handle.set_paused(paused).await
    }

    /// Cancels a date: logs the cancellation (no more sales, live holds released), then
    /// refunds every paid reservation through its payer's wallet, at most
    /// [`REFUNDS_IN_FLIGHT_MAX`] at once. Calling it again (or a restart, see
    /// [`Engine::finish_cancellations`]) refunds what a failure left; a reservation is
    /// never refunded twice (its date refuses). Answers how many this call refunded.
    ///
    /// It runs in a task of its own: a caller that stops waiting (an HTTP client gone)
    /// does not stop the refunds.
    pub async fn cancel_date(self: &Arc<Self>, date: DateId) -> Result<u64, Error> {
        let engine = self.clone();
        tokio::spawn(async move { engine.run_cancellation(date).await })
            .await
            .unwrap_or(Err(Error::Unavailable))
    }

    async fn run_cancellation(&self, date: DateId) -> Result<u64, Error> {
        let entry = self.date_entry(date)?;
        let cancellation = entry.handle.cancel_date().await?;
        if let Ok(concert) = self.concert(entry.view.date.concert_id) {
            for (user, id) in cancellation.released {
                // The holds are released and logged; the room forgetting them is
                // bookkeeping (an entry it misses ends with its window).
                let _ = concert.queue.release_hold(user, id);
            }
        }
        let mut refunds = tokio::task::JoinSet::new();
        let mut pending = cancellation.to_refund.into_iter();
        let mut refunded = 0;
        let mut failure = None;
        loop {
            while refunds.len() < REFUNDS_IN_FLIGHT_MAX
                && let Some((user, id)) = pending.next()
            {
                let wallet = self.wallet(user).clone();
                refunds.spawn(
                    async move { wallet.refund(user, id, RefundReason::DateCancelled).await },
                );
            }
            let Some(done) = refunds.join_next().await else {
                break;
            };
            match done.unwrap_or(Err(Error::Unavailable)) {
                Ok(_) => refunded += 1,
                // Refunded meanwhile by its holder: done all the same.
                Err(Error::Rejected(Rejection::AlreadyRefunded)) => {}
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(refunded),
        }
    }

    /// Finishes, in the background, every cancellation a crash or a failure left
    /// unfinished (a cancelled date with paid reservations). Called at start.
    pub fn finish_cancellations(self: &Arc<Self>) {
        let cancelled: Vec<DateId> = self
            .directory
            .concerts()
            .iter()
            .flat_map(|c| &c.dates)
            .filter(|d| d.view.is_cancelled())
            .map(|d| d.view.date.id)
            .collect();
        for date in cancelled {
            let engine = self.clone();
            tokio::spawn(async move {
                match engine.cancel_date(date).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(%date, refunds = n, "finished the cancellation"),
                    Err(e) => tracing::warn!(%date, "cancellation still unfinished: {e}"),
                }
            });
        }
    }

    /// Admits the ticket a verified code names at the door, once. With `date`, a
    /// ticket for another date is refused.
    pub async fn check_in(&self, claim: Claim, date: Option<DateId>) -> Result<Reservation, Error> {
        if let Some(date) = date
            && date != claim.date_id
        {
            self.date_entry(date)?;
            return Err(Rejection::TicketWrongDate {
                actual: claim.date_id,
            }
            .into());
        }
        let entry = self.directory.date(claim.date_id).ok_or_else(|| {
            Rejection::TicketInvalid("the code names no date of this server".into())
        })?;
        entry
            .handle
            .admit(claim.reservation_id, claim.seat_id)
            .await
    }

    /// A date's sales figures.
    pub async fn date_sales(&self, date: DateId) -> Result<DateSales, Error> {
        self.date_entry(date)?.handle.sales().await
    }

    /// The sales figures of each date of a concert.
    pub async fn concert_sales(&self, concert: ConcertId) -> Result<Vec<DateSales>, Error> {
        let entry = self.concert(concert)?;
        let mut dates = Vec::with_capacity(entry.dates.len());
        for date in &entry.dates {
            dates.push(date.handle.sales().await?);
        }
        Ok(dates)
    }

    /// A page of a date's reservations.
    pub async fn date_reservations(
        &self,
        date: DateId,
        filter: ReservationFilter,
    ) -> Result<date::ReservationPage, Error> {
        self.date_entry(date)?.handle.reservations(filter).await
    }
}

/// Most refunds a date's cancellation has waiting at once (the wallets' mailboxes
/// stay far from full).
pub const REFUNDS_IN_FLIGHT_MAX: usize = 256;

/// A reservation with its status at `now` (a lapsed hold reads as expired).
fn as_of(mut reservation: Reservation, now: Timestamp) -> Reservation {
    reservation.status = reservation.status_at(now);
    reservation
}
