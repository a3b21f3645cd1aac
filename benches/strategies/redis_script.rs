//! The Redis atomic-script strategy: the hold and the charge are each one Lua script,
//! which Redis runs alone (no other command interleaves), so check-then-write is one
//! step without any lock. Durable like the rest: the benchmark's Redis runs with
//! `appendfsync always`, so a script's writes are in the append-only file before its
//! reply goes out.
//!
//! Keys: `date:{id}` (hash: `seats`, `price`), `holds:{date}` (hash: seat → the
//! reservation holding it), `reservation:{id}` (hash), `reservations:{date}` (a count),
//! `wallet:{user}` (hash: `balance`), `ledger:{user}` (list of `id:amount:balance`).
//!
//! [`Connections`] is the Redis side of every strategy that uses Redis: a fixed set of
//! multiplexed connections taken in turn (the stand-in for a Lettuce or Redisson pool).

use crate::front::{self, Backend, HoldRequest, Outcome};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Holds all the seats or none: `KEYS` = date, holds, reservation, count; `ARGV` =
/// reservation id, user, seat ids...
const HOLD_SCRIPT: &str = r"
local date = redis.call('HMGET', KEYS[1], 'seats', 'price')
if not date[1] then return {'SEAT_NOT_FOUND', ''} end
local total, price = tonumber(date[1]), tonumber(date[2])
for i = 3, #ARGV do
  local seat = tonumber(ARGV[i])
  if not seat or seat < 1 or seat > total then return {'SEAT_NOT_FOUND', ARGV[i]} end
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return {'SEAT_UNAVAILABLE', ARGV[i]} end
end
for i = 3, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
local amount = price * (#ARGV - 2)
redis.call('HSET', KEYS[3], 'user', ARGV[2], 'seats', table.concat(ARGV, ',', 3),
           'amount', amount, 'status', 'HELD')
redis.call('INCR', KEYS[4])
return {'HELD', tostring(amount)}
";

/// Adds to a balance under the limit and appends to the ledger: `KEYS` = wallet,
/// ledger; `ARGV` = amount, balance limit, charge id.
const CHARGE_SCRIPT: &str = r"
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
local amount = tonumber(ARGV[1])
if balance + amount > tonumber(ARGV[2]) then return {'BALANCE_LIMIT', tostring(balance)} end
balance = redis.call('HINCRBY', KEYS[1], 'balance', amount)
redis.call('RPUSH', KEYS[2], ARGV[3] .. ':' .. ARGV[1] .. ':' .. balance)
return {'CHARGED', tostring(balance)}
";

/// A fixed set of multiplexed connections, handed out in turn.
pub struct Connections {
    connections: Vec<MultiplexedConnection>,
    next: AtomicUsize,
}

impl Connections {
    /// `size` connections to the Redis on `port`.
    pub async fn open(port: u16, size: usize) -> Result<Connections, redis::RedisError> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut connections = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            connections.push(client.get_multiplexed_async_connection().await?);
        }
        Ok(Connections {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection (a cheap handle onto a shared one).
    pub fn get(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

/// Empties Redis and describes the dates: date 1 with one seat, dates
/// `2..=1 + sale_dates` with `seats_per_date` each.
pub async fn reset(
    connections: &Connections,
    sale_dates: i64,
    seats_per_date: i64,
    price: i64,
) -> Result<(), redis::RedisError> {
    let mut connection = connections.get();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await?;
    let _: () = connection
        .hset_multiple("date:1", &[("seats", 1), ("price", price)])
        .await?;
    for date in 2..=1 + sale_dates {
        let _: () = connection
            .hset_multiple(
                format!("date:{date}"),
                &[("seats", seats_per_date), ("price", price)],
            )
            .await?;
    }
    Ok(())
}

/// Seats held on `dates` and the reservations made on them: `(held seats, reservations)`.
pub async fn holds(
    connections: &Connections,
    dates: &[i64],
) -> Result<(i64, i64), redis::RedisError> {
    let mut connection = connections.get();
    let (mut held, mut reservations) = (0, 0);
    for date in dates {
        let seats: i64 = connection.hlen(format!("holds:{date}")).await?;
        let made: Option<i64> = connection.get(format!("reservations:{date}")).await?;
        held += seats;
        reservations += made.unwrap_or(0);
    }
    Ok((held, reservations))
}

/// A wallet's balance and how many ledger entries it has.
pub async fn wallet(connections: &Connections, user: i64) -> Result<(i64, i64), redis::RedisError> {
    let mut connection = connections.get();
    let balance: Option<i64> = connection.hget(format!("wallet:{user}"), "balance").await?;
    let entries: i64 = connection.llen(format!("ledger:{user}")).await?;
    Ok((balance.unwrap_or(0), entries))
}

/// The strategy: one script per request.
pub struct Scripts {
    connections: Connections,
    hold: Script,
    charge: Script,
}

impl Scripts {
    /// The strategy over `connections`.
    pub fn new(connections: Connections) -> Scripts {
        Scripts {
            connections,
            hold: Script::new(HOLD_SCRIPT),
            charge: Script::new(CHARGE_SCRIPT),
        }
    }
}

impl Backend for Scripts {
    async fn hold(&self, user: i64, request: HoldRequest) -> Outcome {
        let reservation_id = uuid::Uuid::new_v4().to_string();
        let mut invocation = self.hold.prepare_invoke();
        invocation
            .key(format!("date:{}", request.date_id))
            .key(format!("holds:{}", request.date_id))
            .key(format!("reservation:{reservation_id}"))
            .key(format!("reservations:{}", request.date_id))
            .arg(&reservation_id)
            .arg(user);
        for seat in &request.seat_ids {
            invocation.arg(*seat);
        }
        let mut connection = self.connections.get();
        match invocation
            .invoke_async::<Vec<String>>(&mut connection)
            .await
        {
            Ok(answer) => match answer.first().map(String::as_str) {
                Some("HELD") => Outcome::Held {
                    reservation_id,
                    amount: answer.get(1).and_then(|a| a.parse().ok()).unwrap_or(0),
                },
                Some("SEAT_UNAVAILABLE") => Outcome::seat_unavailable(
                    answer.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                ),
                Some("SEAT_NOT_FOUND") => Outcome::seat_not_found(),
                _ => Outcome::storage(format!("unexpected script answer {answer:?}")),
            },
            Err(e) => Outcome::storage(e),
        }
    }

    async fn charge(&self, user: i64, amount: i64) -> Outcome {
        let charge_id = uuid::Uuid::new_v4().to_string();
        let mut connection = self.connections.get();
        let answer = self
            .charge
            .key(format!("wallet:{user}"))
            .key(format!("ledger:{user}"))
            .arg(amount)
            .arg(front::BALANCE_MAX)
            .arg(&charge_id)
            .invoke_async::<Vec<String>>(&mut connection)
            .await;
        match answer {
            Ok(answer) => match answer.first().map(String::as_str) {
                Some("CHARGED") => Outcome::Charged {
                    charge_id,
                    balance: answer.get(1).and_then(|b| b.parse().ok()).unwrap_or(0),
                },
                Some("BALANCE_LIMIT") => Outcome::balance_limit(),
                _ => Outcome::storage(format!("unexpected script answer {answer:?}")),
            },
            Err(e) => Outcome::storage(e),
        }
    }
}
