//! A shard of wallets: balances, ledgers and idempotency keys.
//!
//! Invariants: every balance equals the sum of its ledger (charges and refunds minus
//! payments) and is never negative; every ledger entry records the balance after it.
//! A charge never takes a balance past `balance_max`. A refund is never refused: it
//! gives back money the wallet paid, so it may take the balance past `balance_max` by
//! at most what the user has paid and not been refunded (no charge is then accepted
//! until the balance is back under the limit). Refusing it instead would keep the
//! money of a cancelled show. An idempotency key names one request of one user for
//! `idempotency_ttl`; a repeat gets the first success's receipt, a different request
//! under the same key is refused. Only successes are recorded: a refused request
//! changed nothing, so trying it again is always safe.

use super::date::{Payment, Refund};
use super::{ChargeId, IdMap, Rejection, ReservationId, Timestamp, UserId, Won};
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// The limits a wallet enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalletRules {
    /// Largest single charge.
    pub charge_max: Won,
    /// Largest balance.
    pub balance_max: Won,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    /// Money in.
    Charge,
    /// Money out, for a reservation.
    Payment,
    /// Money back, for a refunded reservation.
    Refund,
}

/// One movement of money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The charge's, payment's or refund's id.
    pub id: Uuid,
    /// Charge or payment.
    pub kind: TransactionKind,
    /// How much moved; always positive.
    pub amount: Won,
    /// The balance after it.
    pub balance_after: Won,
    /// When.
    #[serde(with = "crate::domain::time::compact")]
    pub at: Timestamp,
    /// The reservation a payment paid or a refund refunded.
    pub reservation_id: Option<ReservationId>,
}

impl From<&Payment> for LedgerEntry {
    /// A payment's entry in its payer's ledger.
    fn from(payment: &Payment) -> Self {
        LedgerEntry {
            id: payment.id.0,
            kind: TransactionKind::Payment,
            amount: payment.amount,
            balance_after: payment.balance_after,
            at: payment.paid_at,
            reservation_id: Some(payment.reservation_id),
        }
    }
}

impl From<&Refund> for LedgerEntry {
    /// A refund's entry in its payer's ledger.
    fn from(refund: &Refund) -> Self {
        LedgerEntry {
            id: refund.id.0,
            kind: TransactionKind::Refund,
            amount: refund.amount,
            balance_after: refund.balance_after,
            at: refund.at,
            reservation_id: Some(refund.reservation_id),
        }
    }
}

/// A user's money.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The balance.
    pub balance: Won,
    /// Every movement, oldest first.
    pub ledger: Vec<LedgerEntry>,
}

/// The request an idempotency key was first used with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedRequest {
    /// `POST /wallet/charges` with this amount.
    Charge(Won),
    /// `POST /payments` for this reservation.
    Pay(ReservationId),
}

/// The answer a keyed request first got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    /// A charge: id, amount, balance after.
    Charged(Charge),
    /// A payment.
    Paid(Payment),
}

/// A charge as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Its id.
    pub id: ChargeId,
    /// Whose wallet.
    pub user: UserId,
    /// How much.
    pub amount: Won,
    /// The balance after it.
    pub balance_after: Won,
    /// When.
    #[serde(with = "crate::domain::time::compact")]
    pub at: Timestamp,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
}

/// What happened in a wallet (payments are [`crate::domain::Event::Paid`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletEvent {
    /// Money was added.
    Charged(Charge),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyRecord {
    request: KeyedRequest,
    receipt: Receipt,
    #[serde(with = "crate::domain::time::compact")]
    at: Timestamp,
}

/// The wallets of the users of one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletShard {
    /// Configuration, not state: not saved, set again on load.
    #[serde(skip)]
    rules: WalletRules,
    accounts: IdMap<UserId, Account>,
    keys: HashMap<(UserId, String), KeyRecord>,
    /// Keys in the order they were recorded, for expiry.
    #[serde(skip)] // Derived: rebuilt on load (see `set_rules`).
    key_order: VecDeque<(Timestamp, UserId, String)>,
}

impl WalletShard {
    /// A shard with no wallets yet.
    pub fn new(rules: WalletRules) -> Self {
        WalletShard {
            rules,
            accounts: IdMap::default(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
        }
    }

    /// Replaces the limits and rebuilds what a snapshot does not store (after loading one).
    pub fn set_rules(&mut self, rules: WalletRules) {
        self.rules = rules;
        let mut order: Vec<_> = self
            .keys
            .iter()
            .map(|((user, key), r)| (r.at, *user, key.clone()))
            .collect();
        order.sort();
        self.key_order = order.into();
    }

    /// A user's account; every user has one, empty until first used.
    pub fn account(&self, user: UserId) -> Account {
        self.accounts.get(&user).cloned().unwrap_or_default()
    }

    /// A user's balance.
    pub fn balance(&self, user: UserId) -> Won {
        self.accounts.get(&user).map_or(Won::ZERO, |a| a.balance)
    }

    /// A user's newest ledger entries, newest first, optionally only of one kind.
    pub fn transactions(
        &self,
        user: UserId,
        kind: Option<TransactionKind>,
        limit: usize,
    ) -> Vec<LedgerEntry> {
        let Some(account) = self.accounts.get(&user) else {
            return Vec::new();
        };
        account
            .ledger
            .iter()
            .rev()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every user with an account.
    pub fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.accounts.keys().copied()
    }

    /// Forgets idempotency keys older than the time to live.
    pub fn forget_keys(&mut self, now: Timestamp) {
        while let Some((at, _, _)) = self.key_order.front() {
            if *at + self.rules.idempotency_ttl > now {
                break;
            }
            let (at, user, key) = self.key_order.pop_front().expect("checked: not empty");
            if self
                .keys
                .get(&(user, key.clone()))
                .is_some_and(|r| r.at == at)
            {
                self.keys.remove(&(user, key));
            }
        }
    }

    /// The first receipt of a keyed request, if the key was used before. The same key
    /// with another request is [`Rejection::IdempotencyKeyReused`].
    pub fn recall(
        &self,
        user: UserId,
        key: &str,
        request: &KeyedRequest,
    ) -> Result<Option<Receipt>, Rejection> {
        match self.keys.get(&(user, key.to_owned())) {
            None => Ok(None),
            Some(record) if record.request == *request => Ok(Some(record.receipt.clone())),
            Some(_) => Err(Rejection::IdempotencyKeyReused),
        }
    }

    /// Adds money to a wallet.
    pub fn charge(
        &mut self,
        user: UserId,
        amount: Won,
        id: ChargeId,
        idempotency_key: Option<String>,
        now: Timestamp,
    ) -> Result<WalletEvent, Rejection> {
        if amount == Won::ZERO || amount > self.rules.charge_max {
            return Err(Rejection::InvalidAmount(format!(
                "amount must be a whole number of won from 1 to {}",
                self.rules.charge_max.0
            )));
        }
        let balance_after = self
            .balance(user)
            .checked_add(amount)
            .filter(|b| *b <= self.rules.balance_max)
            .ok_or(Rejection::BalanceLimit {
                limit: self.rules.balance_max,
            })?;
        let event = WalletEvent::Charged(Charge {
            id,
            user,
            amount,
            balance_after,
            at: now,
            idempotency_key,
        });
        self.replay(&event);
        Ok(event)
    }

    /// Applies a wallet event, live or when recovering.
    pub fn replay(&mut self, event: &WalletEvent) {
        let WalletEvent::Charged(charge) = event;
        let account = self.accounts.entry(charge.user).or_default();
        let balance = account
            .balance
            .checked_add(charge.amount)
            .expect("a charge never overflows");
        assert_eq!(
            balance, charge.balance_after,
            "the logged balance matches the ledger"
        );
        account.balance = balance;
        account.ledger.push(LedgerEntry {
            id: charge.id.0,
            kind: TransactionKind::Charge,
            amount: charge.amount,
            balance_after: balance,
            at: charge.at,
            reservation_id: None,
        });
        if let Some(key) = &charge.idempotency_key {
            let request = KeyedRequest::Charge(charge.amount);
            self.remember(
                charge.user,
                key,
                request,
                Receipt::Charged(charge.clone()),
                charge.at,
            );
        }
    }

    /// Applies the wallet side of a payment, live or when recovering.
    pub fn replay_payment(&mut self, payment: &Payment) {
        let account = self
            .accounts
            // A wallet exists from first use: a free seat is paid from an empty one.
            .entry(payment.user)
            .or_default();
        let balance = account
            .balance
            .checked_sub(payment.amount)
            .expect("a payment never overdraws");
        assert_eq!(
            balance, payment.balance_after,
            "the logged balance matches the ledger"
        );
        account.balance = balance;
        account.ledger.push(LedgerEntry::from(payment));
        if let Some(key) = &payment.idempotency_key {
            let request = KeyedRequest::Pay(payment.reservation_id);
            self.remember(
                payment.user,
                key,
                request,
                Receipt::Paid(payment.clone()),
                payment.paid_at,
            );
        }
    }

    /// Applies the wallet side of a refund, live or when recovering: a credit that no
    /// limit refuses (see the module docs).
    pub fn replay_refund(&mut self, refund: &Refund) {
        let account = self.accounts.entry(refund.user).or_default();
        let balance = account
            .balance
            .checked_add(refund.amount)
            .expect("a refund never overflows");
        assert_eq!(
            balance, refund.balance_after,
            "the logged balance matches the ledger"
        );
        account.balance = balance;
        account.ledger.push(LedgerEntry::from(refund));
    }

    /// Records a keyed request's receipt. Keys past their time to live are forgotten
    /// first, at the request's own time, exactly as the live wallet forgot them before
    /// it took the request: so a key used again a day later replays like it ran.
    fn remember(
        &mut self,
        user: UserId,
        key: &str,
        request: KeyedRequest,
        receipt: Receipt,
        at: Timestamp,
    ) {
        self.forget_keys(at);
        let previous = self.keys.insert(
            (user, key.to_owned()),
            KeyRecord {
                request,
                receipt,
                at,
            },
        );
        assert!(
            previous.is_none(),
            "a key is recorded once while remembered"
        );
        self.key_order.push_back((at, user, key.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConcertId, DateId, PaymentId};
    use chrono::{TimeZone, Utc};

    const RULES: WalletRules = WalletRules {
        charge_max: Won(10_000),
        balance_max: Won(25_000),
        idempotency_ttl: Duration::hours(24),
    };

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn charge_id(n: u128) -> ChargeId {
        ChargeId(Uuid::from_u128(n))
    }

    fn payment(user: u64, amount: u64, balance_after: u64, key: Option<&str>) -> Payment {
        Payment {
            id: PaymentId(Uuid::from_u128(99)),
            reservation_id: ReservationId(Uuid::from_u128(7)),
            user: UserId(user),
            concert_id: ConcertId(1),
            date_id: DateId(1),
            amount: Won(amount),
            balance_after: Won(balance_after),
            paid_at: t(5),
            idempotency_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn a_new_wallet_is_empty() {
        let shard = WalletShard::new(RULES);
        assert_eq!(shard.balance(UserId(1)), Won::ZERO);
        assert!(shard.transactions(UserId(1), None, 10).is_empty());
    }

    #[test]
    fn charges_add_up_and_are_in_the_ledger_newest_first() {
        let mut shard = WalletShard::new(RULES);
        shard
            .charge(UserId(1), Won(100), charge_id(1), None, t(0))
            .unwrap();
        shard
            .charge(UserId(1), Won(50), charge_id(2), None, t(1))
            .unwrap();
        assert_eq!(shard.balance(UserId(1)), Won(150));
        let ledger = shard.transactions(UserId(1), None, 10);
        assert_eq!(
            ledger.iter().map(|e| e.balance_after).collect::<Vec<_>>(),
            [Won(150), Won(100)]
        );
        assert_eq!(shard.transactions(UserId(1), None, 1).len(), 1);
        assert_eq!(shard.balance(UserId(2)), Won::ZERO);
    }

    #[test]
    fn zero_and_oversized_charges_are_invalid_amounts() {
        let mut shard = WalletShard::new(RULES);
        for amount in [0, 10_001, u64::MAX] {
            let result = shard.charge(UserId(1), Won(amount), charge_id(1), None, t(0));
            assert!(
                matches!(result, Err(Rejection::InvalidAmount(_))),
                "{amount}"
            );
        }
        assert_eq!(shard.balance(UserId(1)), Won::ZERO);
    }

    #[test]
    fn a_charge_may_not_take_the_balance_past_the_limit() {
        let mut shard = WalletShard::new(RULES);
        shard
            .charge(UserId(1), Won(10_000), charge_id(1), None, t(0))
            .unwrap();
        shard
            .charge(UserId(1), Won(10_000), charge_id(2), None, t(0))
            .unwrap();
        let over = shard.charge(UserId(1), Won(5_001), charge_id(3), None, t(0));
        assert_eq!(over, Err(Rejection::BalanceLimit { limit: Won(25_000) }));
        shard
            .charge(UserId(1), Won(5_000), charge_id(4), None, t(0))
            .unwrap();
        assert_eq!(shard.balance(UserId(1)), Won(25_000));
    }

    #[test]
    fn a_key_recalls_the_first_receipt_and_refuses_another_request() {
        let mut shard = WalletShard::new(RULES);
        let key = Some("k1".to_owned());
        let WalletEvent::Charged(first) = shard
            .charge(UserId(1), Won(100), charge_id(1), key, t(0))
            .unwrap();
        let same = shard.recall(UserId(1), "k1", &KeyedRequest::Charge(Won(100)));
        assert_eq!(same, Ok(Some(Receipt::Charged(first))));
        let other = shard.recall(UserId(1), "k1", &KeyedRequest::Charge(Won(101)));
        assert_eq!(other, Err(Rejection::IdempotencyKeyReused));
        let pay = shard.recall(
            UserId(1),
            "k1",
            &KeyedRequest::Pay(ReservationId(Uuid::nil())),
        );
        assert_eq!(pay, Err(Rejection::IdempotencyKeyReused));
        assert_eq!(
            shard.recall(UserId(2), "k1", &KeyedRequest::Charge(Won(100))),
            Ok(None)
        );
    }

    #[test]
    fn keys_are_forgotten_after_their_time_to_live() {
        let mut shard = WalletShard::new(RULES);
        shard
            .charge(UserId(1), Won(100), charge_id(1), Some("k".into()), t(0))
            .unwrap();
        shard.forget_keys(t(24 * 3600 - 1));
        assert!(
            shard
                .recall(UserId(1), "k", &KeyedRequest::Charge(Won(100)))
                .unwrap()
                .is_some()
        );
        shard.forget_keys(t(24 * 3600));
        assert_eq!(
            shard.recall(UserId(1), "k", &KeyedRequest::Charge(Won(100))),
            Ok(None)
        );
    }

    #[test]
    fn a_key_used_again_after_its_time_to_live_is_a_new_request_live_and_in_replay() {
        let mut live = WalletShard::new(RULES);
        let mut events = Vec::new();
        let key = || Some("k".to_owned());
        events.push(
            live.charge(UserId(1), Won(100), charge_id(1), key(), t(0))
                .unwrap(),
        );
        let day = 24 * 3600;
        live.forget_keys(t(day));
        assert_eq!(
            live.recall(UserId(1), "k", &KeyedRequest::Charge(Won(7))),
            Ok(None)
        );
        events.push(
            live.charge(UserId(1), Won(7), charge_id(2), key(), t(day))
                .unwrap(),
        );
        let mut replayed = WalletShard::new(RULES);
        for event in &events {
            replayed.replay(event);
        }
        assert_eq!(replayed.accounts, live.accounts);
        assert_eq!(replayed.keys, live.keys);
    }

    #[test]
    fn a_payment_debits_and_is_recorded_with_its_reservation() {
        let mut shard = WalletShard::new(RULES);
        shard
            .charge(UserId(1), Won(500), charge_id(1), None, t(0))
            .unwrap();
        shard.replay_payment(&payment(1, 300, 200, Some("p")));
        assert_eq!(shard.balance(UserId(1)), Won(200));
        let payments = shard.transactions(UserId(1), Some(TransactionKind::Payment), 10);
        assert_eq!(payments.len(), 1);
        assert_eq!(
            payments[0].reservation_id,
            Some(ReservationId(Uuid::from_u128(7)))
        );
        let recalled = shard.recall(
            UserId(1),
            "p",
            &KeyedRequest::Pay(ReservationId(Uuid::from_u128(7))),
        );
        assert!(matches!(recalled, Ok(Some(Receipt::Paid(_)))));
    }

    #[test]
    fn a_free_reservation_is_paid_from_a_wallet_never_charged() {
        let mut shard = WalletShard::new(RULES);
        shard.replay_payment(&payment(1, 0, 0, None));
        assert_eq!(shard.balance(UserId(1)), Won::ZERO);
        assert_eq!(shard.transactions(UserId(1), None, 10).len(), 1);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_wallets() {
        let mut live = WalletShard::new(RULES);
        let event = live
            .charge(UserId(1), Won(500), charge_id(1), Some("a".into()), t(0))
            .unwrap();
        let mut replayed = WalletShard::new(RULES);
        replayed.replay(&event);
        assert_eq!(replayed.accounts, live.accounts);
        assert_eq!(replayed.keys, live.keys);
    }

    #[test]
    fn a_refund_credits_past_the_balance_limit_and_is_in_the_ledger() {
        let mut shard = WalletShard::new(RULES);
        shard
            .charge(UserId(1), Won(10_000), charge_id(1), None, t(0))
            .unwrap();
        shard.replay_payment(&payment(1, 10_000, 0, None));
        shard
            .charge(UserId(1), Won(10_000), charge_id(2), None, t(1))
            .unwrap();
        shard
            .charge(UserId(1), Won(10_000), charge_id(3), None, t(1))
            .unwrap();
        shard
            .charge(UserId(1), Won(5_000), charge_id(4), None, t(1))
            .unwrap();
        let refund = Refund {
            id: crate::domain::RefundId(Uuid::from_u128(5)),
            reservation_id: ReservationId(Uuid::from_u128(7)),
            user: UserId(1),
            concert_id: ConcertId(1),
            date_id: DateId(1),
            amount: Won(10_000),
            balance_after: Won(35_000),
            reason: crate::domain::date::RefundReason::DateCancelled,
            at: t(2),
        };
        shard.replay_refund(&refund);
        assert_eq!(shard.balance(UserId(1)), Won(35_000));
        let refunds = shard.transactions(UserId(1), Some(TransactionKind::Refund), 10);
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].id, refund.id.0);
        let over = shard.charge(UserId(1), Won(1), charge_id(6), None, t(3));
        assert_eq!(over, Err(Rejection::BalanceLimit { limit: Won(25_000) }));
    }
}
