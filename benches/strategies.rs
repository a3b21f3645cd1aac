//! The seeds' comparison, redone: how to make one seat have exactly one winner, by
//! PostgreSQL row lock, PostgreSQL version column, a Redis lock around PostgreSQL, and
//! Redis atomic scripts, side by side with boxoffice, on the same machine, over the
//! same HTTP requests, from the same load generator.
//!
//! `cargo bench --bench strategies [-- --duration-secs 10 --connections 64 --pools 10,64]`
//! (`-- --smoke`: about a second per workload, a small inventory, output under
//! `target/tmp/`; `.ci/run` runs it so the harness cannot rot).
//!
//! It installs PostgreSQL 15 and Redis with apt-get when they are missing (and skips
//! with a message if that fails; under `CI=true` it fails instead), starts both on
//! loopback ports in temporary directories (see `strategies/engines.rs`), and then,
//! for boxoffice as it ships (in-process, durable: `--fsync always`) and for every
//! strategy with every pool size, starts the server, drives three workloads and
//! checks the outcome against the state left behind:
//! - **one seat**: every request holds seat 1 of date 1; correct = exactly one 201,
//!   and exactly one seat held;
//! - **flash sale**: each request holds the next seat of a large inventory (a user
//!   holds at most four seats a date); correct = every request won, the seats held
//!   equal the wins, and no seat is in two reservations;
//! - **hot wallet**: every request charges the same user's wallet; correct = the final
//!   balance equals the sum of the acknowledged charges (and the ledger agrees).
//!
//! It writes `benches/strategies/REPORT.md` (table, machine, settings, date) and
//! `benches/strategies/chart.svg`, and exits non-zero if any run was incorrect.
//!
//! Expected, from the storage layer measured alone on a 2-core machine (64 clients, no
//! HTTP): a PostgreSQL row lock on one seat ~3k transactions/s, distinct seats ~8k/s,
//! one hot wallet ~3k/s; a Redis script hold ~90k/s; boxoffice over HTTP ~70k/s on one
//! seat and ~30k/s for a durable flash sale. Through HTTP, with the load generator on
//! the same two cores, everything is lower; the ratios to boxoffice measured in one
//! run are the figure to read.

#[path = "strategies/engines.rs"]
mod engines;
#[path = "strategies/front.rs"]
mod front;
#[path = "common/load.rs"]
mod load;
#[path = "strategies/postgres.rs"]
mod postgres;
#[path = "strategies/redis_lock.rs"]
mod redis_lock;
#[path = "strategies/redis_script.rs"]
mod redis_script;
#[path = "strategies/report.rs"]
mod report;
#[path = "strategies/targets.rs"]
mod targets;

use clap::Parser;
use load::{Phase, Stop, post_raw, timed};
use report::{Row, Settings};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use targets::{Kind, Target};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "strategies",
    bin_name = "cargo bench --bench strategies --",
    about = "lock strategies against boxoffice"
)]
struct Args {
    /// About a second per workload and a small inventory; output under target/tmp.
    #[arg(long)]
    smoke: bool,
    /// Seconds each workload runs.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Database pool sizes to run every strategy with: 10 is HikariCP's default (the
    /// seeds'), 16 came out best or nearly for the PostgreSQL strategies in a quick sweep
    /// (4, 16, 32) on the 2-core machine, 64 is one connection per client.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 16, 64])]
    pools: Vec<usize>,
    /// Concert dates of the flash sale's inventory.
    #[arg(long, default_value_t = 4)]
    sale_dates: i64,
    /// Seats on each sale date, a multiple of 100 (boxoffice's default limit is 100000).
    #[arg(long, default_value_t = 100_000)]
    seats_per_date: i64,
    /// Run only the targets whose name contains this (boxoffice always runs: the
    /// ratios need it).
    #[arg(long)]
    only: Option<String>,
    /// Where REPORT.md and chart.svg go (default: benches/strategies, or
    /// target/tmp/strategies-smoke with --smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The engines while they run, where a Ctrl-C can stop them too (a panic in `main`
/// unwinds and drops them; a signal does not unwind).
static ENGINES: parking_lot::Mutex<Option<(engines::Postgres, engines::Redis)>> =
    parking_lot::Mutex::new(None);

/// Stops the engines when dropped: at the end of `main`, or while a panic unwinds it.
struct StopEngines;

impl Drop for StopEngines {
    fn drop(&mut self) {
        drop(ENGINES.lock().take());
    }
}

/// The hot wallet's user.
const HOT_WALLET_USER: u64 = 1;
/// How long a user token lasts (longer than any run).
const TOKEN_TTL_SECS: u64 = 24 * 3600;

/// The three workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Everyone holds seat 1 of date 1.
    OneSeat,
    /// Each request holds the next free seat.
    FlashSale,
    /// Everyone charges user 1's wallet.
    HotWallet,
}

impl Workload {
    /// All of them, in report order.
    pub const ALL: [Workload; 3] = [Workload::OneSeat, Workload::FlashSale, Workload::HotWallet];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Workload::OneSeat => "one seat",
            Workload::FlashSale => "flash sale",
            Workload::HotWallet => "hot wallet",
        }
    }
}

fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.duration_secs = 1;
        args.sale_dates = 1;
        args.seats_per_date = 20_000;
        args.pools.truncate(1);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if let Err(why) = engines::ensure_installed() {
        if in_ci {
            eprintln!("strategies: cannot install PostgreSQL 15 and Redis: {why}");
            std::process::exit(1);
        }
        println!("strategies: skipped: cannot install PostgreSQL 15 and Redis: {why}");
        return;
    }
    let scratch = std::env::temp_dir();
    let postgres = engines::Postgres::start(&scratch).expect("PostgreSQL starts");
    let redis = engines::Redis::start(&scratch).expect("redis-server starts");
    let (postgres_port, redis_port) = (postgres.port, redis.port);
    *ENGINES.lock() = Some((postgres, redis));
    let _stop_engines = StopEngines;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime for the servers");
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime for the load generator");
    let engines = targets::Engines {
        postgres_port,
        redis_port,
        servers: server_runtime.handle().clone(),
        scratch,
    };
    client_runtime.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping PostgreSQL and Redis");
            // Their guards stop them and remove their directories.
            drop(ENGINES.lock().take());
            std::process::exit(130);
        }
    });
    let (rows, settings) = client_runtime.block_on(run(&args, &engines));
    let out = args.out.clone().unwrap_or_else(|| {
        if args.smoke {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("strategies-smoke")
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/strategies")
        }
    });
    report::write(&out, &rows, &settings).expect("the report and chart are written");
    println!("\nwrote {}", out.join("REPORT.md").display());
    let wrong: Vec<_> = rows.iter().filter(|row| !row.correct).collect();
    drop(client_runtime);
    drop(server_runtime);
    drop(_stop_engines);
    if !wrong.is_empty() {
        eprintln!("{} incorrect run(s)", wrong.len());
        std::process::exit(1);
    }
}

/// Runs every target through every workload; answers the rows and the settings.
async fn run(args: &Args, engines: &targets::Engines) -> (Vec<Row>, Settings) {
    let users = (args.seats_per_date as u64 / 4).max(1000);
    let jwt_secret = "strategies-secret";
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=users)
            .map(|u| {
                boxoffice::http::auth::token_for_secret(
                    jwt_secret,
                    boxoffice::domain::UserId(u),
                    TOKEN_TTL_SECS,
                )
            })
            .collect(),
    );
    let mut settings = Settings::gather(args, engines).await;
    println!(
        "strategies: {} connections, {} s per workload, pools {:?}, flash sale {} x {} seats, {users} users",
        args.connections, args.duration_secs, args.pools, args.sale_dates, args.seats_per_date
    );
    let mut rows = Vec::new();
    let mut plan = vec![Target::boxoffice()];
    for pool in &args.pools {
        plan.extend(Target::strategies(*pool));
    }
    // boxoffice once more at the end: how far the two differ is how much the machine
    // drifted during the run.
    plan.push(Target::boxoffice_again());
    for target in plan {
        let wanted = args.only.as_ref().is_none_or(|only| {
            target.kind == Kind::Boxoffice || target.name.contains(only.as_str())
        });
        if !wanted {
            continue;
        }
        println!("\n{} (pool {})", target.name, target.pool_label());
        let load = Load {
            tokens: tokens.clone(),
            users,
            connections: args.connections,
            duration: Duration::from_secs(args.duration_secs),
            sale_dates: args.sale_dates,
            seats_per_date: args.seats_per_date,
        };
        let running = target
            .start(engines, &load, jwt_secret)
            .await
            .unwrap_or_else(|e| panic!("{} starts: {e}", target.name));
        for workload in Workload::ALL {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(args.connections)
                .build()
                .expect("an HTTP client");
            let (phase, acknowledged) = load.drive(&http, &running.base, workload).await;
            let observed = running.observe(&load, workload).await;
            let row = Row::judge(&target, workload, &phase, acknowledged, &observed);
            phase.print(None);
            println!(
                "  {}: {}",
                if row.correct { "correct" } else { "INCORRECT" },
                row.note
            );
            rows.push(row);
        }
        running.stop().await;
    }
    settings.finish();
    (rows, settings)
}

/// What drives the load: the same for every target.
pub struct Load {
    /// Tokens of users 0..=users.
    pub tokens: Arc<Vec<String>>,
    /// Users that take part (admitted in boxoffice's waiting room).
    pub users: u64,
    /// Concurrent connections.
    pub connections: usize,
    /// How long each workload runs.
    pub duration: Duration,
    /// Dates of the flash sale (dates 2..=1 + sale_dates).
    pub sale_dates: i64,
    /// Seats per sale date.
    pub seats_per_date: i64,
}

impl Load {
    /// The flash sale's dates.
    pub fn sale_date_ids(&self) -> Vec<i64> {
        (2..=1 + self.sale_dates).collect()
    }

    /// Runs one workload against `base`; answers the phase and, for the hot wallet,
    /// the sum of the acknowledged charges.
    async fn drive(&self, http: &reqwest::Client, base: &str, workload: Workload) -> (Phase, u64) {
        match workload {
            Workload::OneSeat => (self.one_seat(http, base).await, 0),
            Workload::FlashSale => (self.flash_sale(http, base).await, 0),
            Workload::HotWallet => self.hot_wallet(http, base).await,
        }
    }

    async fn one_seat(&self, http: &reqwest::Client, base: &str) -> Phase {
        let (http, url, tokens, users) = (
            http.clone(),
            format!("{base}/api/v1/reservations"),
            self.tokens.clone(),
            self.users,
        );
        timed(
            "one seat",
            self.connections,
            Stop::After(self.duration),
            move |task, i| {
                let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
                // Users spread as hammer spreads them.
                let user = 1 + (task as u64 * 7919 + i * 104_729) % users;
                async move {
                    let body = json!({"dateId": 1, "seatIds": [1]});
                    post_raw(&http, &url, &tokens[user as usize], &body).await.0
                }
            },
        )
        .await
    }

    async fn flash_sale(&self, http: &reqwest::Client, base: &str) -> Phase {
        let seats = self.seats_per_date as u64;
        let inventory = (self.sale_dates as u64 * seats) as usize;
        let next_seat = Arc::new(AtomicU64::new(0));
        let (http, url, tokens) = (
            http.clone(),
            format!("{base}/api/v1/reservations"),
            self.tokens.clone(),
        );
        let stop = Stop::AfterOrCount(self.duration, Arc::new(AtomicUsize::new(0)), inventory);
        timed("flash sale", self.connections, stop, move |_, _| {
            let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
            // The k-th request takes the k-th seat; user u holds seats 4u-3..4u of a date.
            let k = next_seat.fetch_add(1, Ordering::Relaxed);
            let (date, seat) = (2 + k / seats, k % seats + 1);
            let user = (seat - 1) / 4 + 1;
            async move {
                let body = json!({"dateId": date, "seatIds": [seat]});
                post_raw(&http, &url, &tokens[user as usize], &body).await.0
            }
        })
        .await
    }

    async fn hot_wallet(&self, http: &reqwest::Client, base: &str) -> (Phase, u64) {
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (http, url, token, sum) = (
            http.clone(),
            format!("{base}/api/v1/wallet/charges"),
            self.tokens[HOT_WALLET_USER as usize].clone(),
            acknowledged.clone(),
        );
        let phase = timed(
            "hot wallet",
            self.connections,
            Stop::After(self.duration),
            move |task, i| {
                let (http, url, token, sum) =
                    (http.clone(), url.clone(), token.clone(), sum.clone());
                let amount = 1 + (task as u64 * 31 + i) % 100;
                async move {
                    let body = json!({"amount": amount});
                    let status = post_raw(&http, &url, &token, &body).await.0;
                    if status == 200 {
                        sum.fetch_add(amount, Ordering::Relaxed);
                    }
                    status
                }
            },
        )
        .await;
        (phase, acknowledged.load(Ordering::Relaxed))
    }
}
