//! What the load is aimed at: boxoffice as it ships, and one axum server per strategy
//! and pool size. Each target starts from a clean state (a fresh boxoffice data
//! directory; PostgreSQL tables recreated; Redis emptied), serves on a loopback port
//! of the server runtime, and reads back the state a workload left, from the storage
//! itself where there is one (SQL, Redis commands) and over the API for boxoffice.

use crate::Load;
use crate::Workload;
use crate::front;
use crate::postgres::{self, Optimistic, Pessimistic, Schema};
use crate::redis_lock::RedisLock;
use crate::redis_script::{self, Connections, Scripts};
use boxoffice::app;
use boxoffice::config::Config;
use boxoffice::engine::clock::SystemClock;
use boxoffice::store::FsyncPolicy;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a stopping server may take to finish before it is dropped.
const STOP_WAIT_MAX: Duration = Duration::from_secs(10);
/// boxoffice's admin key in the benchmark.
const ADMIN_KEY: &str = "strategies-admin";

/// Where the engines are and where the servers run.
pub struct Engines {
    /// PostgreSQL's loopback port.
    pub postgres_port: u16,
    /// Redis's loopback port.
    pub redis_port: u16,
    /// The runtime the servers run on (the load generator has its own).
    pub servers: tokio::runtime::Handle,
    /// Where boxoffice's data directory goes.
    pub scratch: PathBuf,
}

/// The kinds of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// boxoffice itself, in-process, durable.
    Boxoffice,
    /// PostgreSQL, `SELECT … FOR UPDATE`.
    Pessimistic,
    /// PostgreSQL, version column and retries.
    Optimistic,
    /// A Redis lock around PostgreSQL.
    RedisLock,
    /// A Redis Lua script.
    RedisScript,
}

/// One server to measure.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the table.
    pub name: &'static str,
    /// What it is.
    pub kind: Kind,
    /// Its pool size (none for boxoffice).
    pub pool: Option<usize>,
}

impl Target {
    /// boxoffice as it ships.
    pub fn boxoffice() -> Target {
        Target {
            name: "boxoffice",
            kind: Kind::Boxoffice,
            pool: None,
        }
    }

    /// boxoffice again, from scratch, to see the machine's drift during the run.
    pub fn boxoffice_again() -> Target {
        Target {
            name: "boxoffice (again, last)",
            ..Target::boxoffice()
        }
    }

    /// Every strategy with `pool` connections.
    pub fn strategies(pool: usize) -> [Target; 4] {
        let target = |name, kind| Target {
            name,
            kind,
            pool: Some(pool),
        };
        [
            target("pg row lock", Kind::Pessimistic),
            target("pg version column", Kind::Optimistic),
            target("redis lock + pg", Kind::RedisLock),
            target("redis lua script", Kind::RedisScript),
        ]
    }

    /// The pool column.
    pub fn pool_label(&self) -> String {
        self.pool.map_or("-".into(), |n| n.to_string())
    }

    /// Prepares a clean state and starts the server.
    pub async fn start(
        &self,
        engines: &Engines,
        load: &Load,
        jwt_secret: &str,
    ) -> Result<Running, String> {
        if self.kind == Kind::Boxoffice {
            return start_boxoffice(engines, load, jwt_secret).await;
        }
        let pool_size = self.pool.expect("a strategy has a pool size");
        let observer = match self.kind {
            Kind::RedisScript => {
                let connections = Connections::open(engines.redis_port, 1)
                    .await
                    .map_err(|e| e.to_string())?;
                redis_script::reset(
                    &connections,
                    load.sale_dates,
                    load.seats_per_date,
                    postgres::SEAT_PRICE,
                )
                .await
                .map_err(|e| e.to_string())?;
                Observer::Redis(connections)
            }
            _ => {
                let client = connect_postgres(engines.postgres_port).await?;
                Schema::reset(&client, load.sale_dates, load.seats_per_date)
                    .await
                    .map_err(|e| e.to_string())?;
                if self.kind == Kind::RedisLock {
                    let connections = Connections::open(engines.redis_port, 1)
                        .await
                        .map_err(|e| e.to_string())?;
                    redis_script::reset(&connections, 0, 0, postgres::SEAT_PRICE)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Observer::Postgres(client)
            }
        };
        let (kind, secret, (postgres_port, redis_port)) = (
            self.kind,
            jwt_secret.to_owned(),
            (engines.postgres_port, engines.redis_port),
        );
        let router = engines
            .servers
            .spawn(async move {
                let pool = || postgres::pool(postgres_port, pool_size);
                let redis = || Connections::open(redis_port, pool_size);
                Ok::<_, String>(match kind {
                    Kind::Pessimistic => front::router(Pessimistic { pool: pool()? }, &secret),
                    Kind::Optimistic => front::router(Optimistic { pool: pool()? }, &secret),
                    Kind::RedisLock => front::router(
                        RedisLock::new(pool()?, redis().await.map_err(|e| e.to_string())?),
                        &secret,
                    ),
                    Kind::RedisScript => front::router(
                        Scripts::new(redis().await.map_err(|e| e.to_string())?),
                        &secret,
                    ),
                    Kind::Boxoffice => unreachable!("boxoffice starts above"),
                })
            })
            .await
            .map_err(|e| e.to_string())??;
        let mut running = serve(engines, router, None).await?;
        running.observer = observer;
        Ok(running)
    }
}

async fn connect_postgres(port: u16) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; an error then is not news.
        let _ = connection.await;
    });
    Ok(client)
}

/// Serves `router` on a loopback port of the server runtime until stopped; with an
/// `app`, shuts its write path down after the last request.
async fn serve(
    engines: &Engines,
    router: axum::Router,
    app: Option<app::App>,
) -> Result<Running, String> {
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound, address) = oneshot::channel();
    let task = engines.servers.spawn(async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(e) => {
                let _ = bound.send(Err(e.to_string()));
                return;
            }
        };
        let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
        let shutdown = async move {
            // A dropped sender also means stop.
            let _ = stopped.await;
        };
        if let Err(e) = app::serve(listener, router, shutdown).await {
            eprintln!("server: {e}");
        }
        if let Some(app) = app {
            app.shutdown().await;
        }
    });
    let address = address
        .await
        .map_err(|_| "the server task ended before binding".to_owned())??;
    Ok(Running {
        base: format!("http://{address}"),
        stop,
        task,
        observer: Observer::None,
    })
}

async fn start_boxoffice(
    engines: &Engines,
    load: &Load,
    jwt_secret: &str,
) -> Result<Running, String> {
    let dir = tempfile::Builder::new()
        .prefix("boxoffice-")
        .tempdir_in(&engines.scratch)
        .map_err(|e| e.to_string())?;
    let defaults = Config::default();
    let config = Config {
        data_dir: dir.path().to_owned(),
        admin_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(jwt_secret.into()),
        queue_active_max: load.users as u32,
        max_seats_per_date: defaults.max_seats_per_date.max(load.seats_per_date as u32),
        fsync: FsyncPolicy::Always,
        ..defaults
    };
    let app = engines
        .servers
        .spawn(async move { app::build(&config, Arc::new(SystemClock)).await })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let router = app.router.clone();
    let mut running = serve(engines, router, Some(app)).await?;
    let http = reqwest::Client::new();
    let concert_id = setup_boxoffice(&http, &running.base, load).await?;
    running.observer = Observer::Boxoffice {
        http,
        base: running.base.clone(),
        concert_id,
        hot_wallet_token: load.tokens[crate::HOT_WALLET_USER as usize].clone(),
        _dir: dir,
    };
    Ok(running)
}

/// Creates the concert (date 1: one seat; then the sale dates) and admits every user.
async fn setup_boxoffice(http: &reqwest::Client, base: &str, load: &Load) -> Result<u64, String> {
    let sale = json!({"name": "B", "rows": load.seats_per_date / 100, "seatsPerRow": 100,
                      "price": postgres::SEAT_PRICE});
    let mut dates = vec![json!({"startsAt": "2026-12-24T19:00:00Z", "sections": [
        {"name": "A", "rows": 1, "seatsPerRow": 1, "price": postgres::SEAT_PRICE}]})];
    dates.extend(
        (0..load.sale_dates)
            .map(|_| json!({"startsAt": "2026-12-25T19:00:00Z", "sections": [sale]})),
    );
    let spec = json!({"title": "Strategies", "venue": "Loopback", "dates": dates});
    let (status, concert) = post(
        http,
        &format!("{base}/api/v1/admin/concerts"),
        ADMIN_KEY,
        &spec,
    )
    .await;
    if status != 201 {
        return Err(format!("creating the concert: {status} {concert}"));
    }
    let ids: Vec<u64> = concert["dates"]
        .as_array()
        .map(|dates| dates.iter().filter_map(|d| d["id"].as_u64()).collect())
        .unwrap_or_default();
    if ids != (1..=1 + load.sale_dates as u64).collect::<Vec<_>>() {
        return Err(format!(
            "expected dates 1..={}, got {ids:?}",
            1 + load.sale_dates
        ));
    }
    let concert_id = concert["id"].as_u64().ok_or("the concert has an id")?;
    let next = Arc::new(AtomicU64::new(1));
    let url = format!("{base}/api/v1/concerts/{concert_id}/queue");
    let joins: Vec<_> = (0..load.connections)
        .map(|_| {
            let (http, url, next, tokens, users) = (
                http.clone(),
                url.clone(),
                next.clone(),
                load.tokens.clone(),
                load.users,
            );
            tokio::spawn(async move {
                loop {
                    let user = next.fetch_add(1, Ordering::Relaxed);
                    if user > users {
                        return Ok(());
                    }
                    let (_, entry) = post(&http, &url, &tokens[user as usize], &Value::Null).await;
                    if entry["status"] != "ACTIVE" {
                        return Err(format!("user {user} was not admitted: {entry}"));
                    }
                }
            })
        })
        .collect();
    for join in joins {
        join.await.map_err(|e| e.to_string())??;
    }
    Ok(concert_id)
}

async fn post(http: &reqwest::Client, url: &str, bearer: &str, body: &Value) -> (u16, Value) {
    let (status, bytes) = crate::load::post_raw(http, url, bearer, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// How to read back the state a workload left.
enum Observer {
    None,
    Boxoffice {
        http: reqwest::Client,
        base: String,
        concert_id: u64,
        hot_wallet_token: String,
        /// The data directory, removed when the target is done.
        _dir: tempfile::TempDir,
    },
    Postgres(tokio_postgres::Client),
    Redis(Connections),
}

/// The state a workload left, as the storage (or boxoffice's API) tells it.
#[derive(Debug, Default)]
pub struct Observed {
    /// Seats held on the workload's dates.
    pub held: Option<i64>,
    /// Reservations made on them.
    pub reservations: Option<i64>,
    /// Seats that are in more than one reservation.
    pub doubles: Option<i64>,
    /// The hot wallet's balance.
    pub balance: Option<i64>,
    /// The sum of the hot wallet's ledger.
    pub ledger_sum: Option<i64>,
    /// How many entries the hot wallet's ledger has.
    pub ledger_entries: Option<i64>,
    /// Why the state could not be read.
    pub error: Option<String>,
}

/// A started target.
pub struct Running {
    /// Its base URL.
    pub base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    observer: Observer,
}

impl Running {
    /// Reads back what `workload` left.
    pub async fn observe(&self, load: &Load, workload: Workload) -> Observed {
        let dates = match workload {
            Workload::OneSeat => vec![1],
            Workload::FlashSale => load.sale_date_ids(),
            Workload::HotWallet => Vec::new(),
        };
        let user = crate::HOT_WALLET_USER as i64;
        let wallet = workload == Workload::HotWallet;
        let result: Result<Observed, String> = match &self.observer {
            Observer::None => Err("nothing to observe".into()),
            Observer::Boxoffice {
                http,
                base,
                concert_id,
                hot_wallet_token,
                ..
            } => observe_boxoffice(http, base, *concert_id, hot_wallet_token, &dates, wallet).await,
            Observer::Postgres(client) => async {
                Ok(if wallet {
                    let (balance, ledger) = Schema::wallet(client, user).await?;
                    Observed {
                        balance: Some(balance),
                        ledger_sum: Some(ledger),
                        ..Observed::default()
                    }
                } else {
                    let (held, reservations, doubles) = Schema::holds(client, &dates).await?;
                    Observed {
                        held: Some(held),
                        reservations: Some(reservations),
                        doubles: Some(doubles),
                        ..Observed::default()
                    }
                })
            }
            .await
            .map_err(|e: tokio_postgres::Error| e.to_string()),
            Observer::Redis(connections) => async {
                Ok(if wallet {
                    let (balance, entries) = redis_script::wallet(connections, user).await?;
                    Observed {
                        balance: Some(balance),
                        ledger_entries: Some(entries),
                        ..Observed::default()
                    }
                } else {
                    let (held, reservations) = redis_script::holds(connections, &dates).await?;
                    Observed {
                        held: Some(held),
                        reservations: Some(reservations),
                        ..Observed::default()
                    }
                })
            }
            .await
            .map_err(|e: redis::RedisError| e.to_string()),
        };
        result.unwrap_or_else(|error| Observed {
            error: Some(error),
            ..Observed::default()
        })
    }

    /// Stops the server (and boxoffice's write path) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(STOP_WAIT_MAX, self.task)
            .await
            .is_err()
        {
            eprintln!("a server took over {STOP_WAIT_MAX:?} to stop; left behind");
        }
    }
}

async fn observe_boxoffice(
    http: &reqwest::Client,
    base: &str,
    concert_id: u64,
    token: &str,
    dates: &[i64],
    wallet: bool,
) -> Result<Observed, String> {
    let get = |url: String, bearer: Option<&str>| {
        let request = http.get(url);
        let request = match bearer {
            Some(bearer) => request.bearer_auth(bearer),
            None => request,
        };
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            response.json::<Value>().await.map_err(|e| e.to_string())
        }
    };
    if wallet {
        let wallet = get(format!("{base}/api/v1/wallet"), Some(token)).await?;
        return Ok(Observed {
            balance: wallet["balance"].as_i64(),
            ..Observed::default()
        });
    }
    let all = get(format!("{base}/api/v1/concerts/{concert_id}/dates"), None).await?;
    let held = all
        .as_array()
        .ok_or("the dates are a list")?
        .iter()
        .filter(|date| date["id"].as_i64().is_some_and(|id| dates.contains(&id)))
        .map(|date| {
            date["seatsTotal"].as_i64().unwrap_or(0) - date["seatsAvailable"].as_i64().unwrap_or(0)
        })
        .sum();
    Ok(Observed {
        held: Some(held),
        ..Observed::default()
    })
}
