//! The PostgreSQL strategies, in the seeds' transaction shapes, over `tokio-postgres`
//! with a `deadpool` pool (the stand-in for HikariCP) and cached prepared statements
//! (what a JDBC driver's statement cache gives the seeds).
//!
//! - [`Pessimistic`]: a row lock. `BEGIN; SELECT … FOR UPDATE` on the seats (in seat
//!   order, so two holds of overlapping seats cannot deadlock); check they are all
//!   available; `INSERT` the reservation; `UPDATE` the seats; `COMMIT`. Wallet:
//!   `SELECT balance … FOR UPDATE; UPDATE; INSERT` a ledger row. Correct by itself:
//!   the lock makes the read-check-write one step; everyone else waits for the row.
//! - [`Optimistic`]: a version column. Read the rows and their versions (no lock),
//!   check, then `UPDATE … WHERE version = $read`; an update that matched no row means
//!   somebody else got there first: roll back and start again, at most
//!   [`OPTIMISTIC_ATTEMPTS_MAX`] times with a short random backoff, then give up with
//!   409 `CONFLICT`. Correct only because of the version check; the retries are what
//!   it needs to make progress (a hot wallet loses most rounds).
//!
//! [`Schema`] creates the tables of every PostgreSQL strategy and reads back the state
//! the correctness checks compare with the answers.

use crate::front::{self, Backend, HoldRequest, Outcome};
use axum::http::StatusCode;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;

/// Attempts of one optimistic request before it answers 409 `CONFLICT`.
pub const OPTIMISTIC_ATTEMPTS_MAX: u32 = 10;
/// The largest random backoff between optimistic attempts, in milliseconds, doubled
/// per attempt from 1 and capped here.
pub const OPTIMISTIC_BACKOFF_MAX_MS: u64 = 16;
/// How long a request waits for a pooled connection (HikariCP's `connectionTimeout`).
const POOL_WAIT_MAX: Duration = Duration::from_secs(30);
/// The price of every seat, in won (as in boxoffice's bench concert).
pub const SEAT_PRICE: i64 = 1000;

/// A pool of `size` connections to the benchmark's database on `port`.
pub fn pool(port: u16, size: usize) -> Result<Pool, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT_MAX))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| format!("pool: {e}"))
}

/// One `tokio_postgres` error, as a 500 the load generator counts.
fn storage(error: impl std::fmt::Display) -> Outcome {
    Outcome::storage(error)
}

/// The seeds' shape with a row lock.
pub struct Pessimistic {
    /// The connections.
    pub pool: Pool,
}

impl Backend for Pessimistic {
    async fn hold(&self, user: i64, request: HoldRequest) -> Outcome {
        self.try_hold(user, request).await.unwrap_or_else(storage)
    }

    async fn charge(&self, user: i64, amount: i64) -> Outcome {
        self.try_charge(user, amount).await.unwrap_or_else(storage)
    }
}

impl Pessimistic {
    async fn try_hold(&self, user: i64, request: HoldRequest) -> Result<Outcome, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = tx
            .prepare_cached(
                "SELECT seat_id, status, price FROM seat \
                 WHERE date_id = $1 AND seat_id = ANY($2) ORDER BY seat_id FOR UPDATE",
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
        let reservation_id = insert_reservation(&tx, user, &request, amount).await?;
        let update = tx
            .prepare_cached(
                "UPDATE seat SET status = 'HELD', reservation_id = $3::text::uuid \
                 WHERE date_id = $1 AND seat_id = ANY($2)",
            )
            .await
            .map_err(|e| e.to_string())?;
        tx.execute(
            &update,
            &[&request.date_id, &request.seat_ids, &reservation_id],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Outcome::Held {
            reservation_id,
            amount,
        })
    }

    async fn try_charge(&self, user: i64, amount: i64) -> Result<Outcome, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = "SELECT balance FROM wallet WHERE user_id = $1 FOR UPDATE";
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
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Outcome::Charged { charge_id, balance })
    }
}

/// Reads the user's wallet row with `select` (its one parameter is the user); makes
/// the wallet on first use (balance 0), as boxoffice does, and reads it again.
pub async fn read_wallet(
    tx: &deadpool_postgres::Transaction<'_>,
    select: &str,
    user: i64,
) -> Result<tokio_postgres::Row, String> {
    let select = tx.prepare_cached(select).await.map_err(|e| e.to_string())?;
    if let Some(row) = tx
        .query_opt(&select, &[&user])
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(row);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO wallet (user_id, balance, version) VALUES ($1, 0, 0) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .await
        .map_err(|e| e.to_string())?;
    tx.execute(&insert, &[&user])
        .await
        .map_err(|e| e.to_string())?;
    tx.query_one(&select, &[&user])
        .await
        .map_err(|e| e.to_string())
}

/// Inserts a held reservation; answers its id.
pub async fn insert_reservation(
    tx: &deadpool_postgres::Transaction<'_>,
    user: i64,
    request: &HoldRequest,
    amount: i64,
) -> Result<String, String> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO reservation (user_id, date_id, seat_ids, amount, status, expires_at) \
             VALUES ($1, $2, $3, $4, 'HELD', now() + make_interval(secs => $5)) \
             RETURNING id::text",
        )
        .await
        .map_err(|e| e.to_string())?;
    let ttl_secs = front::HOLD_TTL_SECS as f64;
    let row = tx
        .query_one(
            &insert,
            &[
                &user,
                &request.date_id,
                &request.seat_ids,
                &amount,
                &ttl_secs,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// Inserts a ledger row for a charge; answers its id.
pub async fn insert_ledger(
    tx: &deadpool_postgres::Transaction<'_>,
    user: i64,
    amount: i64,
    balance_after: i64,
) -> Result<String, String> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO ledger (user_id, kind, amount, balance_after) \
             VALUES ($1, 'CHARGE', $2, $3) RETURNING id::text",
        )
        .await
        .map_err(|e| e.to_string())?;
    let row = tx
        .query_one(&insert, &[&user, &amount, &balance_after])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// The seeds' shape with a version column.
pub struct Optimistic {
    /// The connections.
    pub pool: Pool,
}

/// One optimistic attempt: done, or beaten to it (try again).
enum Attempt {
    Done(Outcome),
    Conflict,
}

impl Backend for Optimistic {
    async fn hold(&self, user: i64, request: HoldRequest) -> Outcome {
        for attempt in 0..OPTIMISTIC_ATTEMPTS_MAX {
            match self.try_hold(user, &request).await {
                Ok(Attempt::Done(outcome)) => return outcome,
                Ok(Attempt::Conflict) => backoff(attempt).await,
                Err(e) => return storage(e),
            }
        }
        gave_up()
    }

    async fn charge(&self, user: i64, amount: i64) -> Outcome {
        for attempt in 0..OPTIMISTIC_ATTEMPTS_MAX {
            match self.try_charge(user, amount).await {
                Ok(Attempt::Done(outcome)) => return outcome,
                Ok(Attempt::Conflict) => backoff(attempt).await,
                Err(e) => return storage(e),
            }
        }
        gave_up()
    }
}

/// 409 `CONFLICT`: every attempt lost to another writer.
fn gave_up() -> Outcome {
    Outcome::Failed(
        StatusCode::CONFLICT,
        "CONFLICT",
        format!("lost {OPTIMISTIC_ATTEMPTS_MAX} optimistic attempts in a row; try again"),
    )
}

/// Sleeps a random 0 to 2^attempt milliseconds (at most the cap), so that the losers
/// of one round do not all come back at the same instant.
async fn backoff(attempt: u32) {
    let ceiling_ms = (1u64 << attempt.min(10)).min(OPTIMISTIC_BACKOFF_MAX_MS);
    let ms = rand::random_range(0..=ceiling_ms * 1000);
    tokio::time::sleep(Duration::from_micros(ms)).await;
}

impl Optimistic {
    async fn try_hold(&self, user: i64, request: &HoldRequest) -> Result<Attempt, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = tx
            .prepare_cached(
                "SELECT seat_id, status, price, version FROM seat \
                 WHERE date_id = $1 AND seat_id = ANY($2) ORDER BY seat_id",
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows = tx
            .query(&select, &[&request.date_id, &request.seat_ids])
            .await
            .map_err(|e| e.to_string())?;
        if rows.len() != request.seat_ids.len() {
            return Ok(Attempt::Done(Outcome::seat_not_found()));
        }
        if let Some(taken) = rows.iter().find(|row| row.get::<_, &str>(1) != "AVAILABLE") {
            return Ok(Attempt::Done(Outcome::seat_unavailable(taken.get(0))));
        }
        let amount: i64 = rows.iter().map(|row| row.get::<_, i64>(2)).sum();
        let reservation_id = insert_reservation(&tx, user, request, amount).await?;
        // One versioned UPDATE per row, as an ORM flushes them.
        let update = tx
            .prepare_cached(
                "UPDATE seat SET status = 'HELD', version = version + 1, \
                 reservation_id = $4::text::uuid \
                 WHERE date_id = $1 AND seat_id = $2 AND version = $3",
            )
            .await
            .map_err(|e| e.to_string())?;
        for row in &rows {
            let (seat, version): (i64, i64) = (row.get(0), row.get(3));
            let updated = tx
                .execute(
                    &update,
                    &[&request.date_id, &seat, &version, &reservation_id],
                )
                .await
                .map_err(|e| e.to_string())?;
            if updated != 1 {
                tx.rollback().await.map_err(|e| e.to_string())?;
                return Ok(Attempt::Conflict);
            }
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Attempt::Done(Outcome::Held {
            reservation_id,
            amount,
        }))
    }

    async fn try_charge(&self, user: i64, amount: i64) -> Result<Attempt, String> {
        let mut client = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let select = "SELECT balance, version FROM wallet WHERE user_id = $1";
        let row = read_wallet(&tx, select, user).await?;
        let (balance, version): (i64, i64) = (row.get(0), row.get(1));
        let Some(balance) = balance
            .checked_add(amount)
            .filter(|b| *b <= front::BALANCE_MAX)
        else {
            return Ok(Attempt::Done(Outcome::balance_limit()));
        };
        let update = tx
            .prepare_cached(
                "UPDATE wallet SET balance = $2, version = version + 1 \
                 WHERE user_id = $1 AND version = $3",
            )
            .await
            .map_err(|e| e.to_string())?;
        let updated = tx
            .execute(&update, &[&user, &balance, &version])
            .await
            .map_err(|e| e.to_string())?;
        if updated != 1 {
            tx.rollback().await.map_err(|e| e.to_string())?;
            return Ok(Attempt::Conflict);
        }
        let charge_id = insert_ledger(&tx, user, amount, balance).await?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Attempt::Done(Outcome::Charged { charge_id, balance }))
    }
}

/// The tables, and what the checks read back.
pub struct Schema;

impl Schema {
    /// Drops and recreates every table: date 1 with one seat (the hot seat), dates
    /// `2..=1 + sale_dates` with `seats_per_date` seats each, no wallets.
    pub async fn reset(
        client: &tokio_postgres::Client,
        sale_dates: i64,
        seats_per_date: i64,
    ) -> Result<(), tokio_postgres::Error> {
        client
            .batch_execute(
                "DROP TABLE IF EXISTS seat, reservation, wallet, ledger;
                 CREATE TABLE seat (
                     date_id bigint NOT NULL,
                     seat_id bigint NOT NULL,
                     price bigint NOT NULL,
                     status text NOT NULL DEFAULT 'AVAILABLE',
                     version bigint NOT NULL DEFAULT 0,
                     reservation_id uuid,
                     PRIMARY KEY (date_id, seat_id));
                 CREATE TABLE reservation (
                     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                     user_id bigint NOT NULL,
                     date_id bigint NOT NULL,
                     seat_ids bigint[] NOT NULL,
                     amount bigint NOT NULL,
                     status text NOT NULL,
                     expires_at timestamptz NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
                 CREATE INDEX reservation_by_user ON reservation (user_id);
                 CREATE TABLE wallet (
                     user_id bigint PRIMARY KEY,
                     balance bigint NOT NULL,
                     version bigint NOT NULL DEFAULT 0);
                 CREATE TABLE ledger (
                     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                     user_id bigint NOT NULL,
                     kind text NOT NULL,
                     amount bigint NOT NULL,
                     balance_after bigint NOT NULL,
                     at timestamptz NOT NULL DEFAULT now());
                 CREATE INDEX ledger_by_user ON ledger (user_id);",
            )
            .await?;
        client
            .execute(
                "INSERT INTO seat (date_id, seat_id, price) VALUES (1, 1, $1)",
                &[&SEAT_PRICE],
            )
            .await?;
        client
            .execute(
                "INSERT INTO seat (date_id, seat_id, price) \
                 SELECT d, s, $3 FROM generate_series(2, 1 + $1::bigint) d \
                 CROSS JOIN generate_series(1, $2::bigint) s",
                &[&sale_dates, &seats_per_date, &SEAT_PRICE],
            )
            .await?;
        client.batch_execute("VACUUM ANALYZE").await?;
        Ok(())
    }

    /// Seats held on `dates` and reservations made on them: `(held seats,
    /// reservations, seats that are in more than one reservation)`.
    pub async fn holds(
        client: &tokio_postgres::Client,
        dates: &[i64],
    ) -> Result<(i64, i64, i64), tokio_postgres::Error> {
        let dates = dates.to_vec();
        let held: i64 = client
            .query_one(
                "SELECT count(*) FROM seat WHERE date_id = ANY($1) AND status <> 'AVAILABLE'",
                &[&dates],
            )
            .await?
            .get(0);
        let reservations: i64 = client
            .query_one(
                "SELECT count(*) FROM reservation WHERE date_id = ANY($1)",
                &[&dates],
            )
            .await?
            .get(0);
        let doubles: i64 = client
            .query_one(
                "SELECT count(*) FROM (SELECT date_id, seat_id \
                 FROM (SELECT date_id, unnest(seat_ids) AS seat_id FROM reservation \
                       WHERE date_id = ANY($1)) s \
                 GROUP BY date_id, seat_id HAVING count(*) > 1) d",
                &[&dates],
            )
            .await?
            .get(0);
        Ok((held, reservations, doubles))
    }

    /// A wallet's balance and the sum of its ledger.
    pub async fn wallet(
        client: &tokio_postgres::Client,
        user: i64,
    ) -> Result<(i64, i64), tokio_postgres::Error> {
        let balance: i64 = client
            .query_opt("SELECT balance FROM wallet WHERE user_id = $1", &[&user])
            .await?
            .map_or(0, |row| row.get(0));
        let ledger: i64 = client
            .query_one(
                "SELECT coalesce(sum(amount), 0)::bigint FROM ledger WHERE user_id = $1",
                &[&user],
            )
            .await?
            .get(0);
        Ok((balance, ledger))
    }
}
