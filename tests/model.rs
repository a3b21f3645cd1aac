//! Model tests: the real state machines against plain reference models, under random
//! commands and random clock advances; after every step the two agree and the
//! invariants hold.
//!
//! - dates and wallets together (holds, cancels, expiry, charges with and without
//!   idempotency keys, payments, refunds before and after the deadline, check-ins at
//!   the door, pausing, cancelling the date with its refunds): no seat in two live
//!   reservations, every seat's status matches the reservations, the counts match the
//!   seats, every balance equals its ledger, money is conserved (charged plus refunded
//!   equals balances plus paid), nobody exceeds the per-user seat limit, a ticket is
//!   admitted at most once, a reservation refunded at most once; and replaying what was
//!   logged rebuilds the same date;
//! - the waiting room (joins, leaves, polls, holds, payments, sell-out and reopening
//!   after a refund, time): waiting positions are exactly 1..=n in join order, never
//!   more than the cap are active, and no slot stays free while someone waits.

use boxoffice::domain::catalog::{
    CatalogCommand, CatalogRules, CatalogState, ConcertSpec, DateSpec, SectionSpec,
};
use boxoffice::domain::date::{
    DateEvent, DateRules, DateState, Hold, Pay, Payment, Refund, RefundCommand, RefundReason,
    ReservationStatus, Seat,
};
use boxoffice::domain::queue::{EntryStatus, QueueRules, QueueState};
use boxoffice::domain::wallet::{KeyedRequest, Receipt, WalletEvent, WalletRules, WalletShard};
use boxoffice::domain::{
    ChargeId, ConcertId, DateId, PaymentId, RefundId, Rejection, ReservationId, SeatId, Ticket,
    Timestamp, UserId, Won,
};
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::HashMap;
use uuid::Uuid;

const SEATS: u32 = 8;
const USERS: u64 = 4;
const HOLD_TTL_SECS: i64 = 100;
const SEATS_PER_RESERVATION_MAX: usize = 3;
const SEATS_PER_USER_MAX: usize = 4;
const CHARGE_MAX: u64 = 250;
const BALANCE_MAX: u64 = 600;
/// The show starts this long after the start; refunds close `REFUND_CLOSES_SECS` before.
const SHOW_SECS: i64 = 2000;
const REFUND_CLOSES_SECS: i64 = 1000;

fn start() -> Timestamp {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

/// Seat `s` costs `10 * s` won.
fn price(seat: u32) -> u64 {
    10 * u64::from(seat)
}

fn new_date() -> DateState {
    let sections = (1..=SEATS)
        .map(|s| SectionSpec {
            name: format!("S{s}"),
            rows: 1,
            seats_per_row: 1,
            price: price(s) as i64,
        })
        .collect();
    let spec = ConcertSpec {
        title: "t".into(),
        venue: "v".into(),
        dates: vec![DateSpec {
            starts_at: start(),
            sections,
        }],
    };
    let mut catalog = CatalogState::default();
    let rules = CatalogRules {
        seats_per_date_max: 1000,
        seat_price_max: Won(u64::MAX),
    };
    catalog
        .apply(CatalogCommand::Create(spec), rules, start())
        .unwrap();
    let layout = catalog.concert(ConcertId(1)).unwrap().dates[0]
        .layout
        .clone();
    let rules = DateRules {
        hold_ttl: Duration::seconds(HOLD_TTL_SECS),
        seats_per_reservation_max: SEATS_PER_RESERVATION_MAX,
        seats_per_user_max: SEATS_PER_USER_MAX as u32,
        refund_closes_before: Duration::seconds(REFUND_CLOSES_SECS),
    };
    let starts_at = start() + Duration::seconds(SHOW_SECS);
    DateState::new(DateId(1), ConcertId(1), starts_at, layout, rules)
}

fn new_wallets() -> WalletShard {
    WalletShard::new(WalletRules {
        charge_max: Won(CHARGE_MAX),
        balance_max: Won(BALANCE_MAX),
        idempotency_ttl: Duration::hours(24),
    })
}

#[derive(Debug, Clone)]
enum SaleCommand {
    Hold {
        user: u64,
        seats: Vec<u32>,
    },
    Cancel {
        user: u64,
        pick: usize,
    },
    Charge {
        user: u64,
        amount: u64,
        key: Option<u8>,
    },
    Pay {
        user: u64,
        pick: usize,
    },
    Advance {
        secs: i64,
    },
    Refund {
        user: u64,
        pick: usize,
    },
    Admit {
        pick: usize,
        seat: usize,
    },
    Pause(bool),
    CancelDate,
}

fn sale_command() -> impl Strategy<Value = SaleCommand> {
    let user = 1..=USERS;
    prop_oneof![
        12 => (user.clone(), prop::collection::vec(1..=SEATS + 1, 0..=4))
            .prop_map(|(user, seats)| SaleCommand::Hold { user, seats }),
        3 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| SaleCommand::Cancel { user, pick }),
        6 => (user.clone(), 0..=CHARGE_MAX + 20, prop::option::of(0u8..3))
            .prop_map(|(user, amount, key)| SaleCommand::Charge { user, amount, key }),
        9 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| SaleCommand::Pay { user, pick }),
        6 => (0..=HOLD_TTL_SECS + 20).prop_map(|secs| SaleCommand::Advance { secs }),
        6 => (user, any::<usize>()).prop_map(|(user, pick)| SaleCommand::Refund { user, pick }),
        6 => (any::<usize>(), any::<usize>()).prop_map(|(pick, seat)| SaleCommand::Admit { pick, seat }),
        2 => any::<bool>().prop_map(SaleCommand::Pause),
        // Rare: about half the runs cancel the date at some point.
        1 => Just(SaleCommand::CancelDate),
    ]
}

/// The reference: plain vectors and maps, every rule spelled out directly.
#[derive(Debug, Default)]
struct SaleModel {
    /// Which reservation (index) holds or owns each seat (index seat - 1).
    seats: Vec<Option<usize>>,
    reservations: Vec<ModelReservation>,
    balances: HashMap<u64, u64>,
    keys: HashMap<(u64, u8), u64>,
    charged_total: u64,
    paid_total: u64,
    refunded_total: u64,
    paused: bool,
    cancelled: bool,
}

#[derive(Debug)]
struct ModelReservation {
    id: ReservationId,
    user: u64,
    seats: Vec<u32>,
    amount: u64,
    status: ReservationStatus,
    deadline: Timestamp,
    /// Seats admitted at the door, with when.
    admitted: Vec<(u32, Timestamp)>,
}

impl SaleModel {
    fn new() -> Self {
        SaleModel {
            seats: vec![None; SEATS as usize],
            ..Default::default()
        }
    }

    fn expire(&mut self, now: Timestamp) {
        for (index, r) in self.reservations.iter_mut().enumerate() {
            if r.status == ReservationStatus::Held && r.deadline <= now {
                r.status = ReservationStatus::Expired;
                for s in &r.seats {
                    assert_eq!(self.seats[*s as usize - 1], Some(index));
                    self.seats[*s as usize - 1] = None;
                }
            }
        }
    }

    fn owned_by(&self, user: u64) -> usize {
        self.reservations
            .iter()
            .filter(|r| {
                r.user == user
                    && matches!(r.status, ReservationStatus::Held | ReservationStatus::Paid)
            })
            .map(|r| r.seats.len())
            .sum()
    }

    fn hold(
        &mut self,
        user: u64,
        seats: &[u32],
        id: ReservationId,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let mut sorted = seats.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if seats.is_empty()
            || seats.len() > SEATS_PER_RESERVATION_MAX
            || sorted.len() != seats.len()
        {
            return Err(Rejection::InvalidRequest(String::new()));
        }
        let unknown: Vec<SeatId> = seats
            .iter()
            .filter(|s| **s > SEATS)
            .map(|s| SeatId(*s))
            .collect();
        if !unknown.is_empty() {
            return Err(Rejection::SeatNotFound(unknown));
        }
        let taken: Vec<SeatId> = seats
            .iter()
            .filter(|s| self.seats[**s as usize - 1].is_some())
            .map(|s| SeatId(*s))
            .collect();
        if self.cancelled {
            return Err(Rejection::DateCancelled);
        }
        if self.paused {
            return Err(Rejection::SalesPaused);
        }
        if !taken.is_empty() {
            return Err(Rejection::SeatUnavailable(taken));
        }
        if self.owned_by(user) + seats.len() > SEATS_PER_USER_MAX {
            return Err(Rejection::SeatLimitExceeded {
                limit: SEATS_PER_USER_MAX as u32,
            });
        }
        let index = self.reservations.len();
        for s in seats {
            self.seats[*s as usize - 1] = Some(index);
        }
        let amount = seats.iter().map(|s| price(*s)).sum();
        let deadline = now + Duration::seconds(HOLD_TTL_SECS);
        let status = ReservationStatus::Held;
        self.reservations.push(ModelReservation {
            id,
            user,
            seats: seats.to_vec(),
            amount,
            status,
            deadline,
            admitted: Vec::new(),
        });
        Ok(())
    }

    fn refund(
        &mut self,
        user: u64,
        index: Option<usize>,
        reason: RefundReason,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let index = index
            .filter(|i| self.reservations[*i].user == user)
            .ok_or(Rejection::ReservationNotFound)?;
        let r = &mut self.reservations[index];
        match r.status {
            ReservationStatus::Paid => {}
            ReservationStatus::Refunded => return Err(Rejection::AlreadyRefunded),
            _ => return Err(Rejection::NotPaid),
        }
        let deadline = start() + Duration::seconds(SHOW_SECS - REFUND_CLOSES_SECS);
        if reason == RefundReason::Requested && (now >= deadline || !r.admitted.is_empty()) {
            return Err(Rejection::RefundClosed(String::new()));
        }
        r.status = ReservationStatus::Refunded;
        for s in &r.seats {
            self.seats[*s as usize - 1] = None;
        }
        *self.balances.entry(user).or_default() += r.amount;
        self.refunded_total += r.amount;
        Ok(())
    }

    fn admit(&mut self, index: usize, seat: u32, now: Timestamp) -> Result<(), Rejection> {
        let cancelled = self.cancelled;
        let r = &mut self.reservations[index];
        if !r.seats.contains(&seat) {
            return Err(Rejection::TicketInvalid(String::new()));
        }
        match r.status {
            ReservationStatus::Paid if !cancelled => {}
            ReservationStatus::Paid | ReservationStatus::Refunded => {
                return Err(Rejection::TicketVoid);
            }
            _ => return Err(Rejection::TicketInvalid(String::new())),
        }
        if let Some((_, at)) = r.admitted.iter().find(|(s, _)| *s == seat) {
            return Err(Rejection::AlreadyUsed { used_at: *at });
        }
        r.admitted.push((seat, now));
        Ok(())
    }

    fn pause(&mut self, paused: bool) -> Result<(), Rejection> {
        if self.cancelled {
            return Err(Rejection::DateCancelled);
        }
        self.paused = paused;
        Ok(())
    }

    /// Cancels the date: live holds released, then every paid reservation refunded.
    fn cancel_date(&mut self, now: Timestamp) {
        if !self.cancelled {
            self.cancelled = true;
            self.paused = false;
            for r in &mut self.reservations {
                if r.status == ReservationStatus::Held {
                    r.status = ReservationStatus::Cancelled;
                    for s in &r.seats {
                        self.seats[*s as usize - 1] = None;
                    }
                }
            }
        }
        let paid: Vec<(usize, u64)> = (0..self.reservations.len())
            .filter(|i| self.reservations[*i].status == ReservationStatus::Paid)
            .map(|i| (i, self.reservations[i].user))
            .collect();
        for (index, user) in paid {
            self.refund(user, Some(index), RefundReason::DateCancelled, now)
                .expect("a cancellation refunds every paid reservation");
        }
    }

    fn cancel(&mut self, user: u64, index: Option<usize>) -> Result<(), Rejection> {
        let index = index
            .filter(|i| self.reservations[*i].user == user)
            .ok_or(Rejection::ReservationNotFound)?;
        let r = &mut self.reservations[index];
        match r.status {
            ReservationStatus::Paid => Err(Rejection::AlreadyPaid),
            ReservationStatus::Refunded => Err(Rejection::AlreadyRefunded),
            ReservationStatus::Held => {
                r.status = ReservationStatus::Cancelled;
                for s in &r.seats {
                    self.seats[*s as usize - 1] = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn charge(&mut self, user: u64, amount: u64, key: Option<u8>) -> Result<(), Rejection> {
        if let Some(k) = key
            && let Some(first) = self.keys.get(&(user, k))
        {
            return if *first == amount {
                Ok(())
            } else {
                Err(Rejection::IdempotencyKeyReused)
            };
        }
        if amount == 0 || amount > CHARGE_MAX {
            return Err(Rejection::InvalidAmount(String::new()));
        }
        let balance = self.balances.entry(user).or_default();
        if *balance + amount > BALANCE_MAX {
            return Err(Rejection::BalanceLimit {
                limit: Won(BALANCE_MAX),
            });
        }
        *balance += amount;
        self.charged_total += amount;
        if let Some(k) = key {
            self.keys.insert((user, k), amount);
        }
        Ok(())
    }

    fn pay(&mut self, user: u64, index: Option<usize>) -> Result<(), Rejection> {
        let index = index
            .filter(|i| self.reservations[*i].user == user)
            .ok_or(Rejection::ReservationNotFound)?;
        let balance = self.balances.get(&user).copied().unwrap_or(0);
        let r = &mut self.reservations[index];
        match r.status {
            ReservationStatus::Paid => return Err(Rejection::AlreadyPaid),
            ReservationStatus::Refunded => return Err(Rejection::AlreadyRefunded),
            ReservationStatus::Cancelled => return Err(Rejection::ReservationCancelled),
            ReservationStatus::Expired => return Err(Rejection::ReservationExpired),
            ReservationStatus::Held => {}
        }
        if r.amount > balance {
            return Err(Rejection::InsufficientBalance {
                amount: Won(r.amount),
                balance: Won(balance),
            });
        }
        r.status = ReservationStatus::Paid;
        *self.balances.get_mut(&user).unwrap() -= r.amount;
        self.paid_total += r.amount;
        Ok(())
    }
}

/// What the real date and wallet logged, in order, to replay into a fresh date.
enum Logged {
    Date(DateEvent),
    Paid(Payment),
    Refunded(Refund),
}

/// The real date and wallet, driven as the actors drive them.
struct Real {
    date: DateState,
    wallets: WalletShard,
    log: Vec<Logged>,
}

impl Real {
    fn charge(
        &mut self,
        user: u64,
        amount: u64,
        key: Option<u8>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let key = key.map(|k| format!("key-{k}"));
        if let Some(key) = &key
            && let Some(Receipt::Charged(_)) =
                self.wallets
                    .recall(UserId(user), key, &KeyedRequest::Charge(Won(amount)))?
        {
            return Ok(());
        }
        let id = ChargeId(Uuid::new_v4());
        let WalletEvent::Charged(_) =
            self.wallets
                .charge(UserId(user), Won(amount), id, key, now)?;
        Ok(())
    }

    fn pay(
        &mut self,
        user: u64,
        reservation_id: ReservationId,
        now: Timestamp,
    ) -> Result<Payment, Rejection> {
        let balance = self.wallets.balance(UserId(user));
        let command = Pay {
            user: UserId(user),
            reservation_id,
            payment_id: PaymentId(Uuid::new_v4()),
            balance,
            idempotency_key: None,
        };
        let payment = self.date.pay(command, now)?;
        self.wallets.replay_payment(&payment);
        self.log.push(Logged::Paid(payment.clone()));
        Ok(payment)
    }

    fn refund(
        &mut self,
        user: u64,
        reservation_id: ReservationId,
        reason: RefundReason,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let command = RefundCommand {
            user: UserId(user),
            reservation_id,
            refund_id: RefundId(Uuid::new_v4()),
            balance: self.wallets.balance(UserId(user)),
            reason,
        };
        let refund = self.date.refund(command, now)?;
        self.wallets.replay_refund(&refund);
        self.log.push(Logged::Refunded(refund));
        Ok(())
    }

    fn logged(&mut self, event: Result<DateEvent, Rejection>) -> Result<(), Rejection> {
        self.log.push(Logged::Date(event?));
        Ok(())
    }

    /// Cancels the date and refunds what it leaves paid, as the engine does.
    fn cancel_date(&mut self, now: Timestamp) {
        if let Some(event) = self.date.cancel_date(now) {
            self.log.push(Logged::Date(event));
        }
        for (user, id) in self.date.paid() {
            self.refund(user.0, id, RefundReason::DateCancelled, now)
                .expect("a cancellation refunds every paid reservation");
        }
    }

    /// Replays the log into a fresh date and checks it equals the live one.
    fn check_replay(&self) {
        let mut replayed = new_date();
        for logged in &self.log {
            match logged {
                Logged::Date(event) => replayed.replay(event),
                Logged::Paid(payment) => replayed.replay_payment(payment),
                Logged::Refunded(refund) => replayed.replay_refund(refund),
            }
        }
        for seat in 1..=SEATS {
            assert_eq!(replayed.seat(SeatId(seat)), self.date.seat(SeatId(seat)));
        }
        for r in self.date.reservations() {
            assert_eq!(
                replayed.reservation(r.id),
                Some(&**r),
                "replayed reservation"
            );
        }
        assert_eq!(replayed.counts(), self.date.counts());
        assert_eq!(replayed.is_paused(), self.date.is_paused());
        assert_eq!(replayed.cancelled_at(), self.date.cancelled_at());
    }
}

/// Rejections compared by kind (details such as messages may differ).
fn kind<T>(result: &Result<T, Rejection>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(Rejection::InvalidRequest(_)) => "invalid".into(),
        Err(Rejection::InvalidAmount(_)) => "invalid amount".into(),
        Err(Rejection::RefundClosed(_)) => "refund closed".into(),
        Err(Rejection::TicketInvalid(_)) => "ticket invalid".into(),
        Err(other) => format!("{other:?}"),
    }
}

fn check_sale(model: &SaleModel, real: &Real, now: Timestamp) {
    let date = &real.date;
    let mut live_seats = HashMap::new();
    for r in date.reservations() {
        if matches!(r.status, ReservationStatus::Held | ReservationStatus::Paid) {
            for seat in &r.seats {
                assert!(
                    live_seats.insert(*seat, r.id).is_none(),
                    "seat {seat} is in two live reservations"
                );
            }
        }
    }
    let (mut available, mut held, mut sold) = (0, 0, 0);
    for seat in 1..=SEATS {
        let expected = match model.seats[seat as usize - 1].map(|i| &model.reservations[i]) {
            None => Seat::Available,
            Some(r) if r.status == ReservationStatus::Paid => Seat::Sold(r.id),
            Some(r) => Seat::Held(r.id),
        };
        let actual = date.seat(SeatId(seat)).unwrap();
        assert_eq!(actual, expected, "seat {seat}");
        match actual {
            Seat::Available => available += 1,
            Seat::Held(id) | Seat::Sold(id) => {
                assert_eq!(
                    live_seats.get(&SeatId(seat)),
                    Some(&id),
                    "seat {seat} points at its reservation"
                );
                if matches!(actual, Seat::Held(_)) {
                    held += 1
                } else {
                    sold += 1
                }
            }
        }
    }
    let counts = date.counts();
    assert_eq!(
        (counts.available, counts.held, counts.sold),
        (available, held, sold)
    );
    for r in &model.reservations {
        let actual = date
            .reservation(r.id)
            .expect("every model reservation exists");
        assert_eq!(actual.status, r.status, "reservation {}", r.id);
        assert_eq!(
            actual.status_at(now),
            r.status,
            "no live hold is past its deadline"
        );
        assert_eq!(actual.amount, Won(r.amount));
    }
    for user in 1..=USERS {
        assert!(model.owned_by(user) <= SEATS_PER_USER_MAX);
        let account = real.wallets.account(UserId(user));
        assert_eq!(
            account.balance,
            Won(model.balances.get(&user).copied().unwrap_or(0)),
            "balance of {user}"
        );
        let mut from_ledger: i128 = 0;
        for entry in &account.ledger {
            from_ledger += match entry.kind {
                boxoffice::domain::wallet::TransactionKind::Charge => i128::from(entry.amount.0),
                boxoffice::domain::wallet::TransactionKind::Payment => -i128::from(entry.amount.0),
                boxoffice::domain::wallet::TransactionKind::Refund => i128::from(entry.amount.0),
            };
            assert!(from_ledger >= 0, "a balance is never negative");
            assert_eq!(
                from_ledger,
                i128::from(entry.balance_after.0),
                "each entry records the balance after it"
            );
        }
        assert_eq!(
            from_ledger,
            i128::from(account.balance.0),
            "the balance equals its ledger"
        );
    }
    let balances: u64 = model.balances.values().sum();
    assert_eq!(
        model.charged_total + model.refunded_total,
        balances + model.paid_total,
        "money is conserved"
    );
    for r in &model.reservations {
        let actual = date.reservation(r.id).unwrap();
        let admitted: Vec<(u32, Timestamp)> = actual
            .admitted()
            .iter()
            .map(|a| (a.seat_id.0, a.at))
            .collect();
        assert_eq!(admitted, r.admitted, "each ticket is admitted at most once");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn dates_and_wallets_agree_with_a_reference_model(commands in prop::collection::vec(sale_command(), 1..60)) {
        let mut model = SaleModel::new();
        let mut real = Real { date: new_date(), wallets: new_wallets(), log: Vec::new() };
        let mut now = start();
        for command in commands {
            model.expire(now);
            if let Some(event) = real.date.expire_due(now) {
                real.log.push(Logged::Date(event));
            }
            let pick = |pick: usize| (!model.reservations.is_empty()).then(|| pick % model.reservations.len());
            let id_of = |index: Option<usize>| index.map_or(ReservationId(Uuid::new_v4()), |i| model.reservations[i].id);
            let (expected, actual) = match command.clone() {
                SaleCommand::Hold { user, seats } => {
                    let id = ReservationId(Uuid::new_v4());
                    let ids = seats.iter().map(|s| SeatId(*s)).collect();
                    let actual = real.date.hold(Hold { user: UserId(user), seats: ids, reservation_id: id }, now);
                    let actual = real.logged(actual);
                    (kind(&model.hold(user, &seats, id, now)), kind(&actual))
                }
                SaleCommand::Cancel { user, pick: p } => {
                    let index = pick(p);
                    let actual = real.date.cancel(UserId(user), id_of(index), now);
                    if let Ok(Some(event)) = &actual {
                        real.log.push(Logged::Date(event.clone()));
                    }
                    (kind(&model.cancel(user, index)), kind(&actual))
                }
                SaleCommand::Charge { user, amount, key } => {
                    let actual = real.charge(user, amount, key, now);
                    (kind(&model.charge(user, amount, key)), kind(&actual))
                }
                SaleCommand::Pay { user, pick: p } => {
                    let index = pick(p);
                    let actual = real.pay(user, id_of(index), now);
                    (kind(&model.pay(user, index)), kind(&actual))
                }
                SaleCommand::Advance { secs } => {
                    now += Duration::seconds(secs);
                    ("ok".into(), "ok".into())
                }
                SaleCommand::Refund { user, pick: p } => {
                    let index = pick(p);
                    let actual = real.refund(user, id_of(index), RefundReason::Requested, now);
                    (kind(&model.refund(user, index, RefundReason::Requested, now)), kind(&actual))
                }
                SaleCommand::Admit { pick: p, seat } => {
                    let Some(index) = pick(p) else { continue };
                    let seats = &model.reservations[index].seats;
                    // Mostly a seat of the reservation; sometimes any seat.
                    let seat = if seat % 4 == 0 { (seat / 4) as u32 % SEATS + 1 } else { seats[seat % seats.len()] };
                    let actual = real.date.admit(id_of(Some(index)), SeatId(seat), now);
                    let actual = real.logged(actual);
                    (kind(&model.admit(index, seat, now)), kind(&actual))
                }
                SaleCommand::Pause(paused) => {
                    let actual = if paused { real.date.pause(now) } else { real.date.resume(now) };
                    if let Ok(Some(event)) = &actual {
                        real.log.push(Logged::Date(event.clone()));
                    }
                    (kind(&model.pause(paused)), kind(&actual))
                }
                SaleCommand::CancelDate => {
                    real.cancel_date(now);
                    model.cancel_date(now);
                    ("ok".into(), "ok".into())
                }
            };
            prop_assert_eq!(expected, actual, "{:?}", command);
            // As the date actor does before anything else at a new instant.
            model.expire(now);
            if let Some(event) = real.date.expire_due(now) {
                real.log.push(Logged::Date(event));
            }
            check_sale(&model, &real, now);
        }
        real.check_replay();
    }
}

const ACTIVE_MAX: usize = 3;
const ACTIVE_TTL_SECS: i64 = 100;
const IDLE_SECS: i64 = 50;
const QUEUE_USERS: u64 = 8;

#[derive(Debug, Clone)]
enum RoomCommand {
    Join(u64),
    Leave(u64),
    Poll(u64),
    NoteHold {
        user: u64,
        secs: i64,
    },
    Pay(u64),
    SoldOut,
    /// A refund gives the sold-out concert a seat again.
    SeatsBack,
    Advance(i64),
}

fn room_command() -> impl Strategy<Value = RoomCommand> {
    let user = 1..=QUEUE_USERS;
    prop_oneof![
        4 => user.clone().prop_map(RoomCommand::Join),
        1 => user.clone().prop_map(RoomCommand::Leave),
        3 => user.clone().prop_map(RoomCommand::Poll),
        1 => (user.clone(), 1..=ACTIVE_TTL_SECS + 20).prop_map(|(user, secs)| RoomCommand::NoteHold { user, secs }),
        1 => user.prop_map(RoomCommand::Pay),
        1 => Just(RoomCommand::SoldOut),
        1 => Just(RoomCommand::SeatsBack),
        3 => (0..=IDLE_SECS + 20).prop_map(RoomCommand::Advance),
    ]
}

/// The reference room: a vector of entries in join order, scanned naively.
#[derive(Debug, Default)]
struct RoomModel {
    entries: Vec<ModelEntry>,
    sold_out: bool,
}

#[derive(Debug, Clone)]
struct ModelEntry {
    user: u64,
    status: EntryStatus,
    idle_until: Timestamp,
    active_until: Option<Timestamp>,
    holds: Vec<Timestamp>,
    admitted: bool,
}

impl RoomModel {
    fn current(&mut self, user: u64) -> Option<&mut ModelEntry> {
        self.entries.iter_mut().rev().find(|e| e.user == user)
    }

    fn active_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status == EntryStatus::Active)
            .count()
    }

    fn admit(&mut self, at: Timestamp) {
        while !self.sold_out && self.active_count() < ACTIVE_MAX {
            let Some(head) = self
                .entries
                .iter_mut()
                .find(|e| e.status == EntryStatus::Waiting)
            else {
                break;
            };
            head.status = EntryStatus::Active;
            head.admitted = true;
            head.active_until = Some(at + Duration::seconds(ACTIVE_TTL_SECS));
        }
    }

    fn advance(&mut self, now: Timestamp, sold_out: bool) {
        self.admit(now);
        loop {
            let next = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e.status {
                    EntryStatus::Active => {
                        let window = e.active_until.unwrap();
                        Some((
                            e.holds.iter().copied().fold(window, Timestamp::min),
                            e.user,
                            i,
                        ))
                    }
                    EntryStatus::Waiting => Some((e.idle_until, e.user, i)),
                    _ => None,
                })
                .min_by_key(|(at, user, _)| (*at, *user));
            match next {
                Some((at, _, i)) if at <= now => {
                    self.entries[i].status = EntryStatus::Expired;
                    self.admit(at);
                }
                _ => break,
            }
        }
        if sold_out && !self.sold_out {
            self.sold_out = true;
            for e in &mut self.entries {
                if matches!(e.status, EntryStatus::Waiting | EntryStatus::Active) {
                    e.status = EntryStatus::SoldOut;
                }
            }
        } else if !sold_out && self.sold_out {
            self.sold_out = false;
            self.admit(now);
        }
    }
}

fn check_room(model: &RoomModel, real: &QueueState) {
    let mut waiting = 0;
    for user in 1..=QUEUE_USERS {
        let expected = model.entries.iter().rev().find(|e| e.user == user);
        let actual = real.view(UserId(user)).ok();
        assert_eq!(
            expected.map(|e| e.status),
            actual.as_ref().map(|v| v.status),
            "status of {user}"
        );
        if let (Some(e), Some(v)) = (expected, actual) {
            if e.status == EntryStatus::Waiting {
                waiting += 1;
                let ahead = model
                    .entries
                    .iter()
                    .take_while(|other| !std::ptr::eq(*other, e))
                    .filter(|other| other.status == EntryStatus::Waiting)
                    .count();
                assert_eq!(v.position, ahead as u64 + 1, "position of {user}");
            } else {
                assert_eq!(v.position, 0);
            }
        }
    }
    assert!(
        real.active_len() <= ACTIVE_MAX,
        "never more than the cap are active"
    );
    assert_eq!(real.active_len(), model.active_count());
    assert_eq!(real.waiting_len(), waiting);
    if waiting > 0 {
        assert_eq!(
            real.active_len(),
            ACTIVE_MAX,
            "no slot stays free while someone waits"
        );
    }
}

fn room_payment(user: u64, at: Timestamp) -> Payment {
    Payment {
        id: PaymentId(Uuid::new_v4()),
        reservation_id: ReservationId(Uuid::new_v4()),
        user: UserId(user),
        concert_id: ConcertId(1),
        date_id: DateId(1),
        amount: Won(1),
        balance_after: Won(0),
        paid_at: at,
        idempotency_key: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_waiting_room_agrees_with_a_reference_model(commands in prop::collection::vec(room_command(), 1..80)) {
        let rules = QueueRules {
            active_max: ACTIVE_MAX as u32,
            active_ttl: Duration::seconds(ACTIVE_TTL_SECS),
            idle_timeout: Duration::seconds(IDLE_SECS),
        };
        let mut real = QueueState::new(ConcertId(1), rules);
        let mut model = RoomModel::default();
        let mut now = start();
        let mut sold_out = false;
        for command in commands {
            real.advance(now, sold_out);
            model.advance(now, sold_out);
            match command {
                RoomCommand::Join(user) => {
                    let live = model.current(user).is_some_and(|e| !e.status.is_final());
                    let created = real.join(UserId(user), Ticket(Uuid::new_v4()), now).is_some();
                    prop_assert_eq!(created, !live, "joining twice never makes two entries");
                    if !live {
                        let status = if model.sold_out { EntryStatus::SoldOut } else { EntryStatus::Waiting };
                        let idle_until = now + Duration::seconds(IDLE_SECS);
                        model.entries.retain(|e| e.user != user);
                        model.entries.push(ModelEntry { user, status, idle_until, active_until: None, holds: vec![], admitted: false });
                    }
                }
                RoomCommand::Leave(user) => {
                    let had = model.current(user).is_some();
                    prop_assert_eq!(real.leave(UserId(user), now).is_ok(), had);
                    model.entries.retain(|e| e.user != user);
                }
                RoomCommand::Poll(user) => {
                    let had = model.current(user).is_some();
                    prop_assert_eq!(real.poll(UserId(user), now).is_ok(), had);
                    if let Some(e) = model.current(user).filter(|e| e.status == EntryStatus::Waiting) {
                        e.idle_until = e.idle_until.max(now + Duration::seconds(IDLE_SECS));
                    }
                }
                RoomCommand::NoteHold { user, secs } => {
                    let deadline = now + Duration::seconds(secs);
                    let noted = real.note_hold(UserId(user), ReservationId(Uuid::new_v4()), deadline);
                    let active = model.current(user).filter(|e| e.status == EntryStatus::Active);
                    prop_assert_eq!(noted, active.is_some());
                    if let Some(e) = active {
                        e.holds.push(deadline);
                    }
                }
                RoomCommand::Pay(user) => {
                    real.replay_payment(&room_payment(user, now));
                    if let Some(e) = model.current(user) {
                        let sold_out_while_active = e.status == EntryStatus::SoldOut && e.admitted;
                        if e.status == EntryStatus::Active || sold_out_while_active {
                            e.status = EntryStatus::Completed;
                        }
                    }
                }
                RoomCommand::SoldOut => sold_out = true,
                RoomCommand::SeatsBack => sold_out = false,
                RoomCommand::Advance(secs) => now += Duration::seconds(secs),
            }
            real.advance(now, sold_out);
            model.advance(now, sold_out);
            check_room(&model, &real);
        }
    }
}
