//! Property: the real actors on a multi-threaded runtime, several users at once.
//!
//! Each case starts an in-memory engine with a manual clock and small limits (one date
//! of 12 seats, or 6 so that some cases sell out, at four prices; 4 active users at a
//! time; 60-second holds; 4 seats per user; a 1,000-won wallet), then runs 4 to 8 tasks
//! at once, one user each. Every task joins the waiting room and then runs its own
//! generated commands: poll, leave, join, hold overlapping seats, cancel and pay its
//! holds, charge (with idempotency keys reused on purpose, also with another amount or
//! for a payment), try someone else's reservation, and move the shared clock forward.
//!
//! One user per task keeps every reply attributable: a user's wallet and queue entry
//! are touched by their own task only, so each task checks each reply against what it
//! saw before (a charge exactly, the rest as far as the shared clock allows). A
//! rejection is a business outcome; an operating error (`Overloaded`, `Unavailable`)
//! fails the case. After all tasks finish, the engine's read API must agree with every
//! acknowledged reply, at the last instant and again at each later hold deadline
//! (before any cleanup has run):
//!
//! - no seat is in two live reservations; each seat's status is what the reservations
//!   say; the date's `seatsAvailable` counts the available seats;
//! - every acknowledged hold is listed for its user with its seats and a status that
//!   follows from what the user did; every payment made its reservation `PAID` and is
//!   in the user's payments once; every charge is in the ledger once;
//! - every balance equals its ledger and the acknowledged charges minus payments;
//! - at most `active_max` users are `ACTIVE`, waiting positions are exactly 1..=n, and
//!   no slot is free while someone waits.
//!
//! And the history must make sense: no two holds of a seat overlapped in time, and
//! every `SEAT_UNAVAILABLE` names seats some hold could have had at that moment.

use boxoffice::config::Config;
use boxoffice::domain::Rules;
use boxoffice::domain::catalog::{ConcertSpec, DateSpec, SectionSpec};
use boxoffice::domain::date::{Payment, Reservation, ReservationStatus, SeatStatus};
use boxoffice::domain::queue::{EntryStatus, EntryView};
use boxoffice::domain::wallet::{Charge, LedgerEntry, TransactionKind};
use boxoffice::domain::{
    ConcertId, DateId, Rejection, ReservationId, SeatId, Ticket, Timestamp, UserId, Won,
};
use boxoffice::engine::clock::ManualClock;
use boxoffice::engine::{Engine, Error};
use chrono::TimeZone;
use futures::future::join_all;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_MAX: u32 = 4;
const HOLD_TTL_SECS: i64 = 60;
const SEATS_PER_USER_MAX: u32 = 4;
const CHARGE_MAX: u64 = 500;
const BALANCE_MAX: u64 = 1000;
/// How long one case may take before the engine counts as stuck.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// One runtime for every case: building four worker threads per case would cost more
/// than most cases do.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime starts")
});

/// The date's sections: a third of the seats at 200, a third at 100, a sixth at 50
/// and a sixth free (seats 1..=4, 5..=8, 9..=10 and 11..=12 of 12).
fn sections(seats: u32) -> [(&'static str, u32, u64); 4] {
    [
        ("A", seats / 3, 200),
        ("B", seats / 3, 100),
        ("C", seats / 6, 50),
        ("F", seats / 6, 0),
    ]
}

fn price(seats: u32, seat: SeatId) -> Won {
    let mut first = 1;
    for (_, n, price) in sections(seats) {
        if seat.0 < first + n {
            return Won(price);
        }
        first += n;
    }
    panic!("seat {seat} is not on a date of {seats} seats")
}

fn rules() -> Rules {
    let seconds = chrono::Duration::seconds;
    let mut rules = Config::default().rules();
    rules.date.hold_ttl = seconds(HOLD_TTL_SECS);
    rules.date.seats_per_reservation_max = 4;
    rules.date.seats_per_user_max = SEATS_PER_USER_MAX;
    rules.queue.active_max = ACTIVE_MAX;
    rules.queue.active_ttl = seconds(90);
    rules.queue.idle_timeout = seconds(90);
    rules.wallet.charge_max = Won(CHARGE_MAX);
    rules.wallet.balance_max = Won(BALANCE_MAX);
    rules
}

fn concert_spec(seats: u32) -> ConcertSpec {
    let sections = sections(seats)
        .into_iter()
        .map(|(name, seats_per_row, price)| SectionSpec {
            name: name.into(),
            rows: 1,
            seats_per_row,
            price: price as i64,
        })
        .collect();
    ConcertSpec {
        title: "Contention".into(),
        venue: "Hall".into(),
        dates: vec![DateSpec {
            starts_at: chrono::Utc.timestamp_opt(1_900_000_000, 0).unwrap(),
            sections,
        }],
    }
}

/// One case: the size of the date, and each user's commands.
#[derive(Clone)]
struct Case {
    seats: u32,
    plans: Vec<Vec<Command>>,
}

/// One line per user, even in proptest's `{:#?}`, so a failing case reads at a glance.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seats", self.seats)?;
        for (i, plan) in self.plans.iter().enumerate() {
            write!(f, "\n  user {}: {plan:?}", user_id(i))?;
        }
        Ok(())
    }
}

/// The user of task `i`: 1, 9, 17, ...; every other one shares a wallet shard with
/// user 1.
fn user_id(i: usize) -> UserId {
    UserId(1 + 8 * i as u64)
}

fn case() -> impl Strategy<Value = Case> {
    // Usually 12 seats; sometimes 6, so that some cases sell out.
    prop_oneof![3 => Just(12u32), 1 => Just(6u32)].prop_flat_map(|seats| {
        let plans = prop::collection::vec(prop::collection::vec(command(seats), 0..=30), 4..=8);
        plans.prop_map(move |plans| Case { seats, plans })
    })
}

/// What one user's task does next.
#[derive(Debug, Clone)]
enum Command {
    Join,
    Poll,
    Leave,
    /// Hold these seats (1 to 3 of the date's few, so users collide).
    Hold(Vec<u32>),
    /// Cancel the user's `n`-th newest hold (modulo how many they have).
    Cancel(usize),
    /// Charge the wallet, maybe under key `key-{n}` (keys are shared with payments).
    Charge {
        amount: u64,
        key: Option<u8>,
    },
    /// Pay the user's `pick`-th newest hold, maybe under key `key-{n}`.
    Pay {
        pick: usize,
        key: Option<u8>,
    },
    /// Read, cancel and pay someone else's reservation: none of it may work.
    Steal(usize),
    /// Move the shared clock forward.
    Advance(u64),
}

fn command(seats: u32) -> impl Strategy<Value = Command> {
    let seats: Vec<u32> = (1..=seats).collect();
    prop_oneof![
        2 => Just(Command::Join),
        2 => Just(Command::Poll),
        1 => Just(Command::Leave),
        6 => prop::sample::subsequence(seats, 1..=3)
            .prop_shuffle()
            .prop_map(Command::Hold),
        2 => (0..3usize).prop_map(Command::Cancel),
        4 => (amount(), prop::option::of(0u8..3))
            .prop_map(|(amount, key)| Command::Charge { amount, key }),
        5 => (newest_mostly(), prop::option::of(0u8..3))
            .prop_map(|(pick, key)| Command::Pay { pick, key }),
        1 => (0..8usize).prop_map(Command::Steal),
        2 => (1..=40u64).prop_map(Command::Advance),
    ]
}

/// Mostly the newest hold: the one most likely still live.
fn newest_mostly() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => 0..3usize]
}

/// Mostly valid amounts, sometimes zero or one won too many.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => prop::sample::select(vec![50, 100, 200, 300, CHARGE_MAX]),
        1 => Just(0),
        1 => Just(CHARGE_MAX + 1),
    ]
}

/// What the tasks share.
struct World {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    concert: ConcertId,
    date: DateId,
    /// Seats of the date.
    seats: u32,
    /// Every acknowledged hold, for `Steal`.
    holds: Mutex<Vec<(UserId, ReservationId)>>,
    /// A logical clock of real-time order: a call that ends (reply in hand) before
    /// another starts has a smaller end tick than the other's start tick.
    ticks: AtomicU64,
}

impl World {
    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::SeqCst)
    }
}

/// When a call was under way, in ticks.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

/// A hold refused with `SEAT_UNAVAILABLE`: someone must have had those seats.
#[derive(Debug)]
struct Refusal {
    taken: Vec<SeatId>,
    window: Window,
    /// The clock before the call: a hold that had expired by then took no seat.
    before: Timestamp,
}

/// The first answer an idempotency key got.
#[derive(Debug, Clone)]
enum Keyed {
    Charge(Charge),
    Pay(Payment),
}

/// One user's acknowledged outcomes and what their task knows for sure.
#[derive(Debug)]
struct UserLog {
    user: UserId,
    /// Every acknowledged hold, as acknowledged.
    holds: Vec<Reservation>,
    /// When each hold call was under way.
    hold_windows: HashMap<ReservationId, Window>,
    /// Holds this user cancelled: when the first acknowledged cancel was under way.
    cancelled: HashMap<ReservationId, Window>,
    /// Holds refused because seats were taken.
    refusals: Vec<Refusal>,
    /// Acknowledged payments by reservation (repeats under a key are not new ones).
    payments: HashMap<ReservationId, Payment>,
    /// Acknowledged charges (repeats under a key are not new ones).
    charges: Vec<Charge>,
    keys: HashMap<u8, Keyed>,
    /// The balance every acknowledged charge and payment adds up to.
    balance: Won,
    /// Whether the user has an entry in the waiting room (only `Leave` removes one).
    in_queue: bool,
    ticket: Option<Ticket>,
    /// Whether the entry was last seen in a final status (final never changes back).
    entry_final: bool,
}

impl UserLog {
    fn new(user: UserId) -> Self {
        UserLog {
            user,
            holds: Vec::new(),
            hold_windows: HashMap::new(),
            cancelled: HashMap::new(),
            refusals: Vec::new(),
            payments: HashMap::new(),
            charges: Vec::new(),
            keys: HashMap::new(),
            balance: Won::ZERO,
            in_queue: false,
            ticket: None,
            entry_final: false,
        }
    }

    /// The user's `pick`-th newest hold (modulo how many there are).
    fn pick(&self, pick: usize) -> Option<&Reservation> {
        let n = self.holds.len();
        (n > 0).then(|| &self.holds[n - 1 - pick % n])
    }

    /// Seats of holds that may still be live at `now` (not cancelled, deadline ahead)
    /// or are paid.
    fn seats_live(&self, now: Timestamp) -> usize {
        self.holds
            .iter()
            .filter(|r| {
                self.payments.contains_key(&r.id)
                    || (!self.cancelled.contains_key(&r.id) && r.expires_at > now)
            })
            .map(|r| r.seats.len())
            .sum()
    }
}

/// The business outcome of a call; an operating error fails the case.
fn business<T>(result: Result<T, Error>, command: &Command) -> Result<T, Rejection> {
    match result {
        Ok(value) => Ok(value),
        Err(Error::Rejected(rejection)) => Err(rejection),
        Err(e) => panic!("{command:?}: operating error {e:?}; none is expected at this size"),
    }
}

fn key_name(key: Option<u8>) -> Option<String> {
    key.map(|k| format!("key-{k}"))
}

async fn run_user(
    world: Arc<World>,
    start: Arc<tokio::sync::Barrier>,
    user: UserId,
    commands: Vec<Command>,
) -> UserLog {
    let mut log = UserLog::new(user);
    start.wait().await;
    // Everyone joins at once: admission itself is contended.
    join(&world, &mut log, &Command::Join).await;
    for command in &commands {
        match command {
            Command::Join => join(&world, &mut log, command).await,
            Command::Poll => poll(&world, &mut log, command).await,
            Command::Leave => leave(&world, &mut log, command).await,
            Command::Hold(seats) => hold(&world, &mut log, seats, command).await,
            Command::Cancel(pick) => cancel(&world, &mut log, *pick, command).await,
            Command::Charge { amount, key } => {
                charge(&world, &mut log, Won(*amount), *key, command).await
            }
            Command::Pay { pick, key } => pay(&world, &mut log, *pick, *key, command).await,
            Command::Steal(pick) => steal(&world, user, *pick, command).await,
            Command::Advance(secs) => world.clock.advance(Duration::from_secs(*secs)),
        }
    }
    log
}

async fn join(world: &World, log: &mut UserLog, command: &Command) {
    let before = world.engine.now();
    let answer = world.engine.join_queue(world.concert, log.user).await;
    let (view, created) = business(answer, command).expect("joining always works");
    if !log.in_queue || log.entry_final {
        assert!(created, "{command:?}: no live entry, so a new one is made");
    }
    if created {
        assert_ne!(
            Some(view.ticket),
            log.ticket,
            "a new entry has a new ticket"
        );
        assert!(
            matches!(
                view.status,
                EntryStatus::Waiting | EntryStatus::Active | EntryStatus::SoldOut
            ),
            "a new entry waits, is admitted at once, or is sold out: {view:?}"
        );
    } else {
        assert_eq!(
            Some(view.ticket),
            log.ticket,
            "joining twice keeps the entry"
        );
    }
    check_entry_shape(&view, before);
    log.in_queue = true;
    log.ticket = Some(view.ticket);
    log.entry_final = view.status.is_final();
}

async fn poll(world: &World, log: &mut UserLog, command: &Command) {
    let before = world.engine.now();
    match business(
        world.engine.queue_entry(world.concert, log.user).await,
        command,
    ) {
        Ok(view) => {
            assert!(log.in_queue, "{command:?}: an entry nobody made: {view:?}");
            assert_eq!(Some(view.ticket), log.ticket, "the entry is the one joined");
            if log.entry_final {
                assert!(view.status.is_final(), "a final entry stays final");
            }
            check_entry_shape(&view, before);
            log.entry_final = view.status.is_final();
        }
        Err(Rejection::NotInQueue) => assert!(!log.in_queue, "{command:?}: the entry vanished"),
        Err(other) => panic!("{command:?}: {other:?}"),
    }
}

/// What any entry looks like; `before` is the clock before the call.
fn check_entry_shape(view: &EntryView, before: Timestamp) {
    match view.status {
        EntryStatus::Waiting => assert!(view.position >= 1, "{view:?}"),
        _ => assert_eq!(view.position, 0, "{view:?}"),
    }
    if view.status == EntryStatus::Active {
        assert!(
            view.expires_at > before,
            "an active window ends later: {view:?}"
        );
    }
}

async fn leave(world: &World, log: &mut UserLog, command: &Command) {
    match business(
        world.engine.leave_queue(world.concert, log.user).await,
        command,
    ) {
        Ok(()) => assert!(log.in_queue, "{command:?}: left an entry nobody made"),
        Err(Rejection::NotInQueue) => assert!(!log.in_queue, "{command:?}: the entry vanished"),
        Err(other) => panic!("{command:?}: {other:?}"),
    }
    log.in_queue = false;
    log.ticket = None;
    log.entry_final = false;
}

async fn hold(world: &World, log: &mut UserLog, seats: &[u32], command: &Command) {
    let seats: Vec<SeatId> = seats.iter().map(|&s| SeatId(s)).collect();
    let start = world.tick();
    let before = world.engine.now();
    let answer = world.engine.hold(log.user, world.date, seats.clone()).await;
    let after = world.engine.now();
    let window = Window {
        start,
        end: world.tick(),
    };
    match business(answer, command) {
        Ok(reservation) => {
            assert!(
                log.in_queue && !log.entry_final,
                "{command:?}: held without an admitted entry"
            );
            assert!(
                log.seats_live(after) + seats.len() <= SEATS_PER_USER_MAX as usize,
                "{command:?}: past the per-user limit"
            );
            assert_eq!(reservation.user, log.user);
            assert_eq!(reservation.concert_id, world.concert);
            assert_eq!(reservation.date_id, world.date);
            assert_eq!(
                reservation.seats.as_slice(),
                seats.as_slice(),
                "the seats in the order asked for"
            );
            let amount = seats.iter().map(|&s| price(world.seats, s).0).sum::<u64>();
            assert_eq!(reservation.amount, Won(amount));
            assert_eq!(reservation.status, ReservationStatus::Held);
            assert_eq!(reservation.payment_id(), None);
            assert!(before <= reservation.created_at && reservation.created_at <= after);
            assert_eq!(
                reservation.expires_at,
                reservation.created_at + chrono::Duration::seconds(HOLD_TTL_SECS)
            );
            world.holds.lock().unwrap().push((log.user, reservation.id));
            log.hold_windows.insert(reservation.id, window);
            log.holds.push(reservation);
        }
        Err(Rejection::NotAdmitted) => {}
        Err(Rejection::SeatUnavailable(taken)) => {
            assert!(!taken.is_empty(), "{command:?}: names the taken seats");
            assert!(
                taken.iter().all(|s| seats.contains(s)),
                "{command:?}: only asked-for seats are taken: {taken:?}"
            );
            log.refusals.push(Refusal {
                taken,
                window,
                before,
            });
        }
        Err(Rejection::SeatLimitExceeded { limit }) => {
            assert_eq!(limit, SEATS_PER_USER_MAX);
            assert!(
                log.seats_live(before) + seats.len() > SEATS_PER_USER_MAX as usize,
                "{command:?}: refused under the per-user limit"
            );
        }
        Err(other) => panic!("{command:?}: {other:?}"),
    }
}

async fn cancel(world: &World, log: &mut UserLog, pick: usize, command: &Command) {
    let Some(reservation) = log.pick(pick).cloned() else {
        let unknown = ReservationId(Uuid::new_v4());
        let answer = business(world.engine.cancel(log.user, unknown).await, command);
        assert_eq!(answer, Err(Rejection::ReservationNotFound), "{command:?}");
        return;
    };
    let paid = log.payments.contains_key(&reservation.id);
    let start = world.tick();
    let answer = world.engine.cancel(log.user, reservation.id).await;
    let window = Window {
        start,
        end: world.tick(),
    };
    match business(answer, command) {
        Ok(()) => {
            assert!(!paid, "{command:?}: cancelled a paid reservation");
            log.cancelled.entry(reservation.id).or_insert(window);
        }
        Err(Rejection::AlreadyPaid) => assert!(paid, "{command:?}: paid by nobody"),
        Err(other) => panic!("{command:?}: {other:?}"),
    }
}

async fn charge(world: &World, log: &mut UserLog, amount: Won, key: Option<u8>, command: &Command) {
    let answer = business(
        world.engine.charge(log.user, amount, key_name(key)).await,
        command,
    );
    // Only this task touches this wallet, so the outcome is known exactly.
    if let Some(first) = key.and_then(|k| log.keys.get(&k)) {
        match first {
            Keyed::Charge(charge) if charge.amount == amount => {
                assert_eq!(
                    answer,
                    Ok(charge.clone()),
                    "{command:?}: the first receipt again"
                )
            }
            _ => assert_eq!(answer, Err(Rejection::IdempotencyKeyReused), "{command:?}"),
        }
        return;
    }
    if amount == Won::ZERO || amount > Won(CHARGE_MAX) {
        assert!(
            matches!(answer, Err(Rejection::InvalidAmount(_))),
            "{command:?}: {answer:?}"
        );
        return;
    }
    let Some(balance) = log
        .balance
        .checked_add(amount)
        .filter(|b| *b <= Won(BALANCE_MAX))
    else {
        let limit = Won(BALANCE_MAX);
        assert_eq!(
            answer,
            Err(Rejection::BalanceLimit { limit }),
            "{command:?}"
        );
        return;
    };
    let charge = answer.unwrap_or_else(|e| panic!("{command:?}: {e:?}"));
    assert_eq!(charge.user, log.user);
    assert_eq!(charge.amount, amount);
    assert_eq!(charge.balance_after, balance, "{command:?}");
    assert_eq!(charge.idempotency_key, key_name(key));
    log.balance = balance;
    if let Some(k) = key {
        log.keys.insert(k, Keyed::Charge(charge.clone()));
    }
    log.charges.push(charge);
}

async fn pay(world: &World, log: &mut UserLog, pick: usize, key: Option<u8>, command: &Command) {
    let reservation = log.pick(pick).cloned();
    let id = reservation
        .as_ref()
        .map_or(ReservationId(Uuid::new_v4()), |r| r.id);
    let answer = business(world.engine.pay(log.user, id, key_name(key)).await, command);
    if let Some(first) = key.and_then(|k| log.keys.get(&k)) {
        match first {
            Keyed::Pay(payment) if payment.reservation_id == id => {
                assert_eq!(
                    answer,
                    Ok(payment.clone()),
                    "{command:?}: the first receipt again"
                )
            }
            _ => assert_eq!(answer, Err(Rejection::IdempotencyKeyReused), "{command:?}"),
        }
        return;
    }
    let Some(reservation) = reservation else {
        assert_eq!(answer, Err(Rejection::ReservationNotFound), "{command:?}");
        return;
    };
    let paid = log.payments.contains_key(&id);
    let cancelled = log.cancelled.contains_key(&id);
    match answer {
        Ok(payment) => {
            assert!(
                !paid && !cancelled,
                "{command:?}: paid an ended reservation"
            );
            assert!(
                payment.paid_at < reservation.expires_at,
                "{command:?}: paid at {} a hold that expired at {}",
                payment.paid_at,
                reservation.expires_at
            );
            assert_eq!(payment.reservation_id, id);
            assert_eq!(payment.user, log.user);
            assert_eq!(payment.date_id, world.date);
            assert_eq!(payment.amount, reservation.amount);
            let balance = log.balance.checked_sub(payment.amount);
            assert_eq!(
                Some(payment.balance_after),
                balance,
                "{command:?}: overdrawn?"
            );
            assert_eq!(payment.idempotency_key, key_name(key));
            log.balance = payment.balance_after;
            if let Some(k) = key {
                log.keys.insert(k, Keyed::Pay(payment.clone()));
            }
            log.payments.insert(id, payment);
        }
        Err(Rejection::AlreadyPaid) => assert!(paid, "{command:?}: paid by nobody"),
        Err(Rejection::ReservationCancelled) => {
            assert!(cancelled && !paid, "{command:?}: cancelled by nobody")
        }
        Err(Rejection::ReservationExpired) => {
            assert!(!paid, "{command:?}: a paid reservation never expires");
            assert!(
                world.engine.now() >= reservation.expires_at,
                "{command:?}: expired before its deadline"
            );
        }
        Err(Rejection::InsufficientBalance { amount, balance }) => {
            assert!(
                !paid && !cancelled,
                "{command:?}: an ended one is refused first"
            );
            assert_eq!(amount, reservation.amount, "{command:?}");
            assert_eq!(balance, log.balance, "{command:?}");
            assert!(amount > balance, "{command:?}");
        }
        Err(other) => panic!("{command:?}: {other:?}"),
    }
}

async fn steal(world: &World, user: UserId, pick: usize, command: &Command) {
    let theirs: Vec<ReservationId> = world
        .holds
        .lock()
        .unwrap()
        .iter()
        .filter(|(owner, _)| *owner != user)
        .map(|(_, id)| *id)
        .collect();
    let Some(&id) = (!theirs.is_empty()).then(|| &theirs[pick % theirs.len()]) else {
        return;
    };
    let not_found = Err(Rejection::ReservationNotFound);
    assert_eq!(
        business(world.engine.reservation(user, id), command).map(|_| ()),
        not_found
    );
    assert_eq!(
        business(world.engine.cancel(user, id).await, command),
        not_found
    );
    assert_eq!(
        business(world.engine.pay(user, id, None).await, command).map(|_| ()),
        not_found
    );
}

async fn run_case(Case { seats, plans }: Case) {
    let start = chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let engine = Engine::in_memory(rules(), clock.clone());
    let concert = engine.create_concert(concert_spec(seats)).await.unwrap();
    let world = Arc::new(World {
        engine,
        clock,
        concert: concert.concert.id,
        date: concert.dates[0].view.date.id,
        seats,
        holds: Mutex::new(Vec::new()),
        ticks: AtomicU64::new(0),
    });
    let barrier = Arc::new(tokio::sync::Barrier::new(plans.len()));
    let tasks = plans.into_iter().enumerate().map(|(i, commands)| {
        tokio::spawn(run_user(
            world.clone(),
            barrier.clone(),
            user_id(i),
            commands,
        ))
    });
    let mut logs = Vec::new();
    for finished in join_all(tasks).await {
        match finished {
            Ok(log) => logs.push(log),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    settle(&world, &logs).await;
    // Expiries due now may not be recorded yet: reads must apply `now` themselves.
    check_seats(&world, &logs, false);
    check_queue(&world, &logs).await;
    step_through_deadlines(&world, &logs).await;
    record_expiries(&world, &logs).await;
    check_seats(&world, &logs, true);
    for log in &logs {
        check_reservations(&world, log);
        check_wallet(&world, log).await;
    }
    check_history(&logs);
    check_queue(&world, &logs).await;
}

/// Makes the wallet and queue actors take one more message, so that whatever the
/// tasks' last replies set in motion has been applied. From here on only the checks
/// move the clock.
async fn settle(world: &World, logs: &[UserLog]) {
    let engine = &world.engine;
    for log in logs {
        engine.balance(log.user).await.unwrap();
        let entry = engine.queue_entry(world.concert, log.user).await;
        assert!(entry.is_ok() || entry == Err(Error::Rejected(Rejection::NotInQueue)));
    }
}

/// Moves the clock to each deadline of a hold still live, one after the other, and
/// checks the reads at that very instant: from `expiresAt` on, a hold's seats are
/// available whether or not the date actor has recorded the expiry yet (it gets no
/// message meanwhile); and the waiting room hands the freed slots on.
async fn step_through_deadlines(world: &World, logs: &[UserLog]) {
    let mut deadlines: Vec<Timestamp> = logs
        .iter()
        .flat_map(|log| world.engine.reservations(log.user))
        .filter(|r| r.status == ReservationStatus::Held)
        .map(|r| r.expires_at)
        .collect();
    deadlines.sort_unstable();
    deadlines.dedup();
    for deadline in deadlines {
        let by = (deadline - world.engine.now()).to_std();
        world
            .clock
            .advance(by.expect("a live hold's deadline is ahead"));
        check_seats(world, logs, false);
        check_queue(world, logs).await;
    }
}

/// Makes the date actor record every expiry due now, so that no sweep races the reads
/// of the seat counts (each seat's status is one atomic word, but the counts are not
/// published together with the seats).
async fn record_expiries(world: &World, logs: &[UserLog]) {
    let engine = &world.engine;
    // Cancelling an ended hold changes nothing, but passes through the date actor,
    // which records the expiries due before anything else.
    let ended = logs.iter().find_map(|log| {
        let ended = engine.reservations(log.user).into_iter().find(|r| {
            matches!(
                r.status,
                ReservationStatus::Expired | ReservationStatus::Cancelled
            )
        })?;
        Some((log.user, ended.id))
    });
    if let Some((user, id)) = ended {
        assert_eq!(engine.cancel(user, id).await, Ok(()));
    }
}

/// The seat map, the counts and the reservations agree, as of now.
fn check_seats(world: &World, logs: &[UserLog], expiries_recorded: bool) {
    let engine = &world.engine;
    let mut owner: HashMap<SeatId, Reservation> = HashMap::new();
    for log in logs {
        let mut seats_of_user = 0;
        for reservation in engine.reservations(log.user) {
            if !matches!(
                reservation.status,
                ReservationStatus::Held | ReservationStatus::Paid
            ) {
                continue;
            }
            seats_of_user += reservation.seats.len();
            for seat in &reservation.seats {
                let other = owner.insert(*seat, reservation.clone());
                assert!(
                    other.is_none(),
                    "seat {seat} is in two live reservations: {other:?} and {reservation:?}"
                );
            }
        }
        assert!(
            seats_of_user <= SEATS_PER_USER_MAX as usize,
            "user {} holds or owns {seats_of_user} seats",
            log.user
        );
    }
    let date = engine.date(world.concert, world.date).unwrap();
    let now = engine.now();
    let seat_map: Vec<(SeatId, Won, SeatStatus)> = date
        .view
        .statuses(now)
        .map(|(seat, status)| (seat.id, seat.price, status))
        .collect();
    assert_eq!(seat_map.len(), world.seats as usize);
    let mut available = 0;
    for &(id, seat_price, status) in &seat_map {
        let expected = match owner.get(&id) {
            Some(r) if r.status == ReservationStatus::Paid => SeatStatus::Sold,
            Some(_) => SeatStatus::Held,
            None => SeatStatus::Available,
        };
        assert_eq!(status, expected, "seat {id}: {:?}", owner.get(&id));
        assert_eq!(seat_price, price(world.seats, id));
        available += usize::from(expected == SeatStatus::Available);
    }
    // Until every expiry due is recorded, the date actor's sweep may be publishing one,
    // and it shows the seats and the counts one after the other: only a count that
    // stays wrong is wrong.
    let reads = if expiries_recorded { 1 } else { 3 };
    let counted: Vec<u32> = (0..reads)
        .map(|_| date.view.seats_available(engine.now()))
        .collect();
    assert!(
        counted.contains(&(available as u32)),
        "seatsAvailable read {counted:?}, but {available} seats are available"
    );
    assert_eq!(date.view.date.layout.seats_total(), world.seats);
}

/// The user's reservations are exactly the acknowledged holds, in the state that what
/// the user did and the clock imply.
fn check_reservations(world: &World, log: &UserLog) {
    let engine = &world.engine;
    let now = engine.now();
    let listed = engine.reservations(log.user);
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at),
        "newest first"
    );
    let listed_ids: HashSet<ReservationId> = listed.iter().map(|r| r.id).collect();
    assert_eq!(
        listed_ids.len(),
        listed.len(),
        "each reservation listed once"
    );
    let acknowledged: HashSet<ReservationId> = log.holds.iter().map(|r| r.id).collect();
    assert_eq!(
        listed_ids, acknowledged,
        "user {}: exactly the acknowledged holds",
        log.user
    );
    for held in &log.holds {
        let actual = engine.reservation(log.user, held.id).unwrap();
        assert!(listed.contains(&actual), "the list and the item agree");
        assert_eq!(actual.seats, held.seats);
        assert_eq!(actual.amount, held.amount);
        assert_eq!(
            (actual.created_at, actual.expires_at),
            (held.created_at, held.expires_at)
        );
        let expected: &[ReservationStatus] = if let Some(payment) = log.payments.get(&held.id) {
            assert_eq!(actual.payment_id(), Some(payment.id));
            &[ReservationStatus::Paid]
        } else if log.cancelled.contains_key(&held.id) {
            &[ReservationStatus::Cancelled, ReservationStatus::Expired]
        } else if held.expires_at > now {
            &[ReservationStatus::Held]
        } else {
            &[ReservationStatus::Expired]
        };
        assert!(
            expected.contains(&actual.status),
            "reservation {} is {:?}, expected one of {expected:?}",
            held.id,
            actual.status
        );
    }
}

/// The ledger holds every acknowledged charge and payment once, and adds up.
async fn check_wallet(world: &World, log: &UserLog) {
    let engine = &world.engine;
    let ledger = engine.transactions(log.user, None, 1000).await.unwrap();
    let count = |id: Uuid, kind| {
        ledger
            .iter()
            .filter(|e| e.id == id && e.kind == kind)
            .count()
    };
    let charges: Vec<&LedgerEntry> = ledger
        .iter()
        .filter(|e| e.kind == TransactionKind::Charge)
        .collect();
    assert_eq!(
        charges.len(),
        log.charges.len(),
        "user {}: one entry per charge",
        log.user
    );
    for charge in &log.charges {
        assert_eq!(
            count(charge.id.0, TransactionKind::Charge),
            1,
            "charge {}",
            charge.id
        );
        let entry = charges.iter().find(|e| e.id == charge.id.0).unwrap();
        assert_eq!(
            (entry.amount, entry.balance_after),
            (charge.amount, charge.balance_after)
        );
    }
    let payments = engine
        .transactions(log.user, Some(TransactionKind::Payment), 1000)
        .await
        .unwrap();
    assert_eq!(
        payments.len(),
        log.payments.len(),
        "user {}: one entry per payment",
        log.user
    );
    for payment in log.payments.values() {
        assert_eq!(
            count(payment.id.0, TransactionKind::Payment),
            1,
            "payment {}",
            payment.id
        );
        let entry = payments.iter().find(|e| e.id == payment.id.0).unwrap();
        assert_eq!(entry.reservation_id, Some(payment.reservation_id));
        assert_eq!(
            (entry.amount, entry.balance_after),
            (payment.amount, payment.balance_after)
        );
    }
    // Oldest first, each entry records the balance after it, which never goes negative.
    let mut running = Won::ZERO;
    for entry in ledger.iter().rev() {
        running = match entry.kind {
            TransactionKind::Charge | TransactionKind::Refund => running.checked_add(entry.amount),
            TransactionKind::Payment => running.checked_sub(entry.amount),
        }
        .unwrap_or_else(|| panic!("user {}: the ledger goes negative", log.user));
        assert_eq!(running, entry.balance_after, "user {}: {entry:?}", log.user);
        assert!(running <= Won(BALANCE_MAX));
    }
    let balance = engine.balance(log.user).await.unwrap();
    assert_eq!(
        balance, running,
        "user {}: the balance is its ledger",
        log.user
    );
    let charged: u64 = log.charges.iter().map(|c| c.amount.0).sum();
    let paid: u64 = log.payments.values().map(|p| p.amount.0).sum();
    assert_eq!(
        balance,
        Won(charged - paid),
        "user {}: charges minus payments",
        log.user
    );
    assert_eq!(balance, log.balance, "user {}", log.user);
}

/// Checks the history, not just the end: two holds of one seat never overlapped, and
/// every `SEAT_UNAVAILABLE` names seats that someone's hold could have had then.
fn check_history(logs: &[UserLog]) {
    struct Hold<'a> {
        reservation: &'a Reservation,
        window: Window,
        paid: bool,
        cancel: Option<Window>,
    }
    let holds: Vec<Hold> = logs
        .iter()
        .flat_map(|log| {
            log.holds.iter().map(|r| Hold {
                reservation: r,
                window: log.hold_windows[&r.id],
                paid: log.payments.contains_key(&r.id),
                cancel: log.cancelled.get(&r.id).copied(),
            })
        })
        .collect();
    // `a` was made first and had ended (expired, or a cancel was under way) when `b`
    // was made. The date actor reads the clock once per batch, so `a` came first only
    // if it was made no later.
    let ended_before = |a: &Hold, b: &Hold| {
        a.reservation.created_at <= b.reservation.created_at
            && !a.paid
            && (a.reservation.expires_at <= b.reservation.created_at
                || a.cancel.is_some_and(|c| c.start < b.window.end))
    };
    for (i, a) in holds.iter().enumerate() {
        for b in &holds[i + 1..] {
            let shared = a
                .reservation
                .seats
                .iter()
                .any(|s| b.reservation.seats.contains(s));
            assert!(
                !shared || ended_before(a, b) || ended_before(b, a),
                "two holds of one seat overlapped: {:?} and {:?}",
                a.reservation,
                b.reservation
            );
        }
    }
    for refusal in logs.iter().flat_map(|log| &log.refusals) {
        for seat in &refusal.taken {
            // Made before the refusal ended, and not over before it started.
            let witness = holds.iter().any(|h| {
                h.reservation.seats.contains(seat)
                    && h.window.start < refusal.window.end
                    && (h.paid
                        || (h.reservation.expires_at > refusal.before
                            && h.cancel.is_none_or(|c| c.end > refusal.window.start)))
            });
            assert!(
                witness,
                "seat {seat} was refused as taken, but nobody had it: {refusal:?}"
            );
        }
    }
}

/// The waiting room as the users see it: the cap, exact positions, no idle slot.
async fn check_queue(world: &World, logs: &[UserLog]) {
    let mut active = 0;
    let mut positions = Vec::new();
    let mut sold_out = false;
    for log in logs {
        let entry = match world.engine.queue_entry(world.concert, log.user).await {
            Ok(entry) => entry,
            Err(Error::Rejected(Rejection::NotInQueue)) => {
                assert!(!log.in_queue, "user {}: the entry vanished", log.user);
                continue;
            }
            Err(e) => panic!("user {}: {e:?}", log.user),
        };
        assert!(log.in_queue, "user {}: an entry nobody made", log.user);
        assert_eq!(Some(entry.ticket), log.ticket);
        match entry.status {
            EntryStatus::Active => active += 1,
            EntryStatus::Waiting => positions.push(entry.position),
            EntryStatus::SoldOut => sold_out = true,
            EntryStatus::Expired | EntryStatus::Completed => {}
        }
    }
    assert!(active <= ACTIVE_MAX, "{active} users are active");
    positions.sort_unstable();
    let expected: Vec<u64> = (1..=positions.len() as u64).collect();
    assert_eq!(positions, expected, "waiting positions are exactly 1..=n");
    if !positions.is_empty() {
        assert!(!sold_out, "nobody waits after a sell-out");
        assert_eq!(active, ACTIVE_MAX, "no slot is free while someone waits");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_users_leave_the_engine_consistent_with_every_reply(case in case()) {
        RUNTIME.block_on(async {
            tokio::time::timeout(CASE_TIMEOUT, run_case(case))
                .await
                .expect("the engine keeps answering");
        });
    }
}
