//! The Redis-lock strategy: a distributed lock in Redis around the PostgreSQL update,
//! the way the seeds used Redisson (`tryLock(waitTime, leaseTime)`).
//!
//! - Take the lock: `SET lock:… <random token> NX PX <lease>` for every key the
//!   request touches (in key order); while one is taken, give back what was taken and
//!   try again after a short random backoff, for at most [`LOCK_WAIT_MAX`], then answer
//!   503 `LOCK_TIMEOUT`.
//! - Do the work in PostgreSQL without row locks: read, check, write, commit.
//! - Give the lock back with a compare-and-delete script (delete only if the key still
//!   holds our token), so a holder whose lease ran out cannot free someone else's lock.
//!
//! What it needs to be correct: the lease ([`LOCK_LEASE`]) must outlast the work, or
//! two holders overlap. A lease makes a crashed holder's lock come free (without it one
//! crash stops the sale), but it also means the lock alone is not enough. So the
//! transaction commits only while at least [`LEASE_MARGIN`] of the lease is left
//! (otherwise it rolls back and answers 503 `LOCK_EXPIRED`), and the seat update is
//! fenced by its own `WHERE status = 'AVAILABLE'` (0 rows: roll back, 409).

use crate::front::{self, Backend, HoldRequest, Outcome};
use crate::postgres::{insert_ledger, insert_reservation, read_wallet};
use crate::redis_script::Connections;
use axum::http::StatusCode;
use deadpool_postgres::Pool;
use redis::Script;
use std::time::{Duration, Instant};

/// How long a taken lock lasts unless given back (Redisson's `leaseTime` as the
/// seeds passed it).
pub const LOCK_LEASE: Duration = Duration::from_secs(3);
/// How long a request waits for a taken lock (Redisson's `waitTime`).
pub const LOCK_WAIT_MAX: Duration = Duration::from_secs(5);
/// The lease that must be left when the transaction commits.
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);
/// The largest random pause between two tries of a taken lock.
pub const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(4);

/// Deletes `KEYS[1]` only if it still holds `ARGV[1]`, our token.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The strategy: Redis for the locks, PostgreSQL for the data.
pub struct RedisLock {
    /// PostgreSQL connections.
    pub pool: Pool,
    redis: Connections,
    release: Script,
}

/// Locks taken: their keys, our token and when the lease began.
struct Held {
    keys: Vec<String>,
    token: String,
    taken_at: Instant,
}

impl Held {
    /// Whether the lease still has the margin left that a commit needs.
    fn lease_left(&self) -> bool {
        self.taken_at.elapsed() + LEASE_MARGIN < LOCK_LEASE
    }
}

impl RedisLock {
    /// The strategy over `pool` and `redis`.
    pub fn new(pool: Pool, redis: Connections) -> RedisLock {
        RedisLock {
            pool,
            redis,
            release: Script::new(RELEASE_SCRIPT),
        }
    }

    /// Takes every key's lock, or none; `Ok(None)` when the wait ran out.
    async fn lock(&self, mut keys: Vec<String>) -> Result<Option<Held>, redis::RedisError> {
        keys.sort();
        let token = uuid::Uuid::new_v4().to_string();
        let lease_ms = LOCK_LEASE.as_millis() as u64;
        let started = Instant::now();
        let mut connection = self.redis.get();
        loop {
            // The lease runs from before the SET, so our idea of it never outlasts Redis's.
            let taken_at = Instant::now();
            let mut taken = Vec::with_capacity(keys.len());
            for key in &keys {
                let ok: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .query_async(&mut connection)
                    .await?;
                if ok.is_none() {
                    break;
                }
                taken.push(key.clone());
            }
            let mut held = Held {
                keys: taken,
                token: token.clone(),
                taken_at,
            };
            if held.keys.len() == keys.len() {
                return Ok(Some(held));
            }
            self.unlock(&mut held).await;
            if started.elapsed() >= LOCK_WAIT_MAX {
                return Ok(None);
            }
            let pause_micros = rand::random_range(0..=LOCK_BACKOFF_MAX.as_micros() as u64);
            tokio::time::sleep(Duration::from_micros(pause_micros)).await;
        }
    }

    /// Gives back what `held` holds (only where our token is still there).
    async fn unlock(&self, held: &mut Held) {
        let mut connection = self.redis.get();
        for key in held.keys.drain(..) {
            // A failed release leaves the key to its lease; nothing else to do.
            let _ = self
                .release
                .key(&key)
                .arg(&held.token)
                .invoke_async::<i64>(&mut connection)
                .await;
        }
    }

    /// Runs `work` under the locks of `keys`, always giving them back.
    async fn locked<F, Fut>(&self, keys: Vec<String>, work: F) -> Outcome
    where
        F: FnOnce(Held) -> Fut,
        Fut: std::future::Future<Output = (Held, Result<Outcome, String>)>,
    {
        let held = match self.lock(keys).await {
            Ok(Some(held)) => held,
            Ok(None) => {
                return Outcome::Failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "LOCK_TIMEOUT",
                    format!("the lock stayed taken for {LOCK_WAIT_MAX:?}"),
                );
            }
            Err(e) => return Outcome::storage(e),
        };
        let (mut held, outcome) = work(held).await;
        self.unlock(&mut held).await;
        outcome.unwrap_or_else(Outcome::storage)
    }

    async fn hold_locked(
        &self,
        held: &Held,
        user: i64,
        request: &HoldRequest,
    ) -> Result<Outcome, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = tx
            .prepare_cached(
                "SELECT seat_id, status, price FROM seat \
                 WHERE date_id = $1 AND seat_id = ANY($2) ORDER BY seat_id",
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows = tx
            .query(&select, &[&request.date_id, &request.seat_ids])
            .await
            .map_err(|e| e.to_string())?;
        if rows.len() != request.seat_ids.len() {
            return Ok(Outcome::seat_not_found());
        }
        if let Some(taken) = rows.iter().find(|row| row.get::<_, &str>(1) != "AVAILABLE") {
            return Ok(Outcome::seat_unavailable(taken.get(0)));
        }
        let amount: i64 = rows.iter().map(|row| row.get::<_, i64>(2)).sum();
        let reservation_id = insert_reservation(&tx, user, request, amount).await?;
        let update = tx
            .prepare_cached(
                "UPDATE seat SET status = 'HELD', reservation_id = $3::text::uuid \
                 WHERE date_id = $1 AND seat_id = ANY($2) AND status = 'AVAILABLE'",
            )
            .await
            .map_err(|e| e.to_string())?;
        let updated = tx
            .execute(
                &update,
                &[&request.date_id, &request.seat_ids, &reservation_id],
            )
            .await
            .map_err(|e| e.to_string())?;
        if updated != request.seat_ids.len() as u64 {
            // The fence: another holder got in (its lease and ours overlapped).
            return Ok(Outcome::seat_unavailable(request.seat_ids[0]));
        }
        if !held.lease_left() {
            return Ok(lease_expired());
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Outcome::Held {
            reservation_id,
            amount,
        })
    }

    async fn charge_locked(&self, held: &Held, user: i64, amount: i64) -> Result<Outcome, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = "SELECT balance FROM wallet WHERE user_id = $1";
        let balance: i64 = read_wallet(&tx, select, user).await?.get(0);
        let Some(balance) = balance
            .checked_add(amount)
            .filter(|b| *b <= front::BALANCE_MAX)
        else {
            return Ok(Outcome::balance_limit());
        };
        let update = tx
            .prepare_cached("UPDATE wallet SET balance = $2 WHERE user_id = $1")
            .await
            .map_err(|e| e.to_string())?;
        tx.execute(&update, &[&user, &balance])
            .await
            .map_err(|e| e.to_string())?;
        let charge_id = insert_ledger(&tx, user, amount, balance).await?;
        if !held.lease_left() {
            return Ok(lease_expired());
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Outcome::Charged { charge_id, balance })
    }
}

/// 503 `LOCK_EXPIRED`: the lease ran (nearly) out before the commit; rolled back.
fn lease_expired() -> Outcome {
    Outcome::Failed(
        StatusCode::SERVICE_UNAVAILABLE,
        "LOCK_EXPIRED",
        "the lock's lease ran out before the commit; nothing changed".into(),
    )
}

impl Backend for RedisLock {
    async fn hold(&self, user: i64, request: HoldRequest) -> Outcome {
        let keys = request
            .seat_ids
            .iter()
            .map(|seat| format!("lock:seat:{}:{seat}", request.date_id))
            .collect();
        self.locked(keys, |held| async move {
            let outcome = self.hold_locked(&held, user, &request).await;
            (held, outcome)
        })
        .await
    }

    async fn charge(&self, user: i64, amount: i64) -> Outcome {
        self.locked(vec![format!("lock:wallet:{user}")], |held| async move {
            let outcome = self.charge_locked(&held, user, amount).await;
            (held, outcome)
        })
        .await
    }
}
