//! The overload benchmark: wrk holds 8,000 connections open against the real binary,
//! every one sending seat holds as fast as the server answers, while a probe measures
//! what a client sees from outside the crowd.
//!
//! `cargo bench --bench overload [-- --connections 8000 --duration-secs 20 --users 2000]`
//!
//! It starts the release binary (durable: `--fsync always`) on a free port with a
//! temporary data directory and the open-file limit raised, creates a concert of
//! 10,000 seats, admits `--users` users, and then, for `--duration-secs`:
//! - **wrk** (`-c --connections`) sends holds of a random seat as a random user;
//!   it reports its own latency (shed and accepted mixed) and the answers by kind;
//! - **the hold probe**: 8 clients send the same holds one after another; the latency
//!   of the answers that were not shed is the *accepted* latency;
//! - **the health probe**: a fresh connection asks `GET /health` every 50 ms.
//!
//! The probes count from 3 s after wrk starts (its connections are open by then) to
//! its end.
//!
//! It prints the accepted p50/p99/max, the share of wrk's answers shed as 503, the
//! `/health` latency, and the server's resident memory before and after.
//!
//! What to expect, on the 2-core machine with wrk and the probes sharing the cores:
//! - `/health` answers in under a millisecond at the median and within 100 ms nearly
//!   always, because a new connection asking for it is served on the accept thread and
//!   never waits behind the 8,000 busy connections (an outlier of a few hundred ms is
//!   the OS scheduling that thread among the busy ones);
//! - most of wrk's answers are 503 `OVERLOADED`: at most `--max-requests-in-flight`
//!   requests are worked on at once, and a request that finds no place within
//!   `--shed-wait-ms` is answered before any work is done for it;
//! - accepted holds are *not* within 50 ms at the default `--max-connections`: with
//!   8,000 connections each sending again as soon as it is answered, every request
//!   (accepted or shed) waits for a turn of all of them; at ~25,000 answers a second
//!   that turn is ~300 ms (Little's law), and shedding saves the engine's work, not the
//!   HTTP work per request. A lower cap (`--server-arg=--max-connections=1000`) keeps
//!   accepted p99 under 50 ms, at the price of closing the other connections, whose
//!   reconnect storm then delays health probes.
//!
//! Without wrk on the machine the bench says so and stops.

use boxoffice::domain::UserId;
use boxoffice::http::auth::token_for_secret;
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "overload-admin";
const JWT_SECRET: &str = "overload-secret";
/// Seats of the one date: 100 rows of 100.
const ROWS: u64 = 100;
const SEATS_PER_ROW: u64 = 100;
/// Clients of the hold probe.
const PROBE_CLIENTS: usize = 8;
/// How often the health probe asks.
const HEALTH_EVERY: Duration = Duration::from_millis(50);
/// Longest a probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for wrk to open its connections before the probes start counting.
const WARM_UP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "overload",
    bin_name = "cargo bench --bench overload --",
    about = "boxoffice overload benchmark (needs wrk)"
)]
struct Args {
    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 8000)]
    connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Users to admit (wrk and the probe pick among them).
    #[arg(long, default_value_t = 2000)]
    users: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// Extra flags for the server, for example `--server-arg=--max-requests-in-flight=64`.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary with the open-file limit raised to the hard limit.
    fn start(dir: &Path, extra: &[String]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)"; exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_boxoffice"))
            .args(["--admin-key", ADMIN_KEY, "--jwt-secret", JWT_SECRET])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--queue-active-max", "1000000"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

fn token(user: u64) -> String {
    token_for_secret(JWT_SECRET, UserId(user), 3600)
}

fn main() {
    let args = Args::parse();
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("overload: skipped, wrk is not installed (apt-get install wrk)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &args.server_arg);
    let http = reqwest::Client::new();
    wait_until_up(&http, &server.base).await;
    let date = setup(&http, &server.base, args.users).await;
    let script = dir.path().join("holds.lua");
    write_script(&script, date, args.users);
    let rss_before = server.rss_kib();

    println!(
        "overload: {} connections for {} s, holds of random seats by {} users; server flags {:?}",
        args.connections, args.duration_secs, args.users, args.server_arg
    );
    // The probes count only while wrk's connections are all open.
    let counting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn(health_probe(
        server.base.clone(),
        counting.clone(),
        done.clone(),
    ));
    let holds = tokio::spawn(hold_probe(
        server.base.clone(),
        date,
        args.users,
        counting.clone(),
        done.clone(),
    ));
    let wrk = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let args = args.clone();
        move || {
            Command::new("wrk")
                .arg(format!("-t{}", args.wrk_threads))
                .arg(format!("-c{}", args.connections))
                .arg(format!("-d{}s", args.duration_secs))
                .args(["--timeout", "10s", "-s"])
                .arg(&script)
                .arg(format!("{base}/api/v1/reservations"))
                .stderr(Stdio::inherit())
                .output()
                .expect("wrk runs")
        }
    });
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let wrk = wrk.await.unwrap();
    counting.store(false, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    let (health, health_failed) = health.await.unwrap();
    let (accepted, shed) = holds.await.unwrap();
    let rss_after = server.rss_kib();

    let printed = String::from_utf8_lossy(&wrk.stdout);
    println!("--- wrk ---\n{}", printed.trim_end());
    println!("--- figures ---");
    print_wrk_shares(&printed);
    println!(
        "accepted holds (probe): {} answers, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} shed",
        accepted.len(),
        ms(accepted.value_at_quantile(0.5)),
        ms(accepted.value_at_quantile(0.99)),
        ms(accepted.max()),
        shed
    );
    println!(
        "/health (new connection every {} ms): {} answers, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed",
        HEALTH_EVERY.as_millis(),
        health.len(),
        ms(health.value_at_quantile(0.5)),
        ms(health.value_at_quantile(0.99)),
        ms(health.max()),
        health_failed
    );
    println!(
        "server RSS: {:.1} MiB before, {:.1} MiB after",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: accepted p99 <= 50 ms {}; /health max <= 100 ms {}",
        verdict(accepted.value_at_quantile(0.99) <= 50_000),
        verdict(health.max() <= 100_000 && health_failed == 0)
    );
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

async fn wait_until_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates the concert and admits every user; returns the date id.
async fn setup(http: &reqwest::Client, base: &str, users: u64) -> u64 {
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let spec = json!({"title": "Overload", "venue": "Hall", "dates": [{"startsAt": starts_at,
        "sections": [{"name": "A", "rows": ROWS, "seatsPerRow": SEATS_PER_ROW, "price": 1000}]}]});
    let concert: Value = http
        .post(format!("{base}/api/v1/admin/concerts"))
        .bearer_auth(ADMIN_KEY)
        .json(&spec)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let concert_id = concert["id"].as_u64().expect("the concert is created");
    let date = concert["dates"][0]["id"].as_u64().unwrap();
    let joins = futures::stream::iter(1..=users).map(|user| {
        let http = http.clone();
        let url = format!("{base}/api/v1/concerts/{concert_id}/queue");
        async move {
            let answer = http
                .post(url)
                .bearer_auth(token(user))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "user {user} joins");
        }
    });
    joins.buffer_unordered(64).collect::<Vec<()>>().await;
    date
}

/// The wrk script: holds of a random seat by a random user; answers counted by kind.
fn write_script(path: &Path, date: u64, users: u64) {
    let tokens: Vec<String> = (1..=users).map(|u| format!("\"{}\"", token(u))).collect();
    let script = format!(
        r#"
local tokens = {{{tokens}}}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) accepted = 0; shed = 0; failed = 0 end
function request()
  local user = math.random(#tokens)
  local seat = math.random({seats})
  local body = '{{"dateId": {date}, "seatIds": [' .. seat .. ']}}'
  return wrk.format("POST", nil, {{["Authorization"] = "Bearer " .. tokens[user],
    ["Content-Type"] = "application/json"}}, body)
end
function response(status, headers, body)
  if status == 503 then shed = shed + 1
  elseif status < 500 then accepted = accepted + 1
  else failed = failed + 1 end
end
function done(summary, latency, requests)
  local a, s, f = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); s = s + t:get("shed"); f = f + t:get("failed")
  end
  io.write(string.format("ANSWERS accepted=%d shed=%d failed=%d\n", a, s, f))
  io.write(string.format("WRK_LATENCY p50=%d p99=%d max=%d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#,
        tokens = tokens.join(","),
        seats = ROWS * SEATS_PER_ROW,
    );
    std::fs::File::create(path)
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
}

fn print_wrk_shares(printed: &str) {
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let Some(answers) = printed.lines().find(|l| l.starts_with("ANSWERS")) else {
        println!("wrk printed no answer counts");
        return;
    };
    let (accepted, shed, failed) = (
        field(answers, "accepted"),
        field(answers, "shed"),
        field(answers, "failed"),
    );
    let total = (accepted + shed + failed).max(1);
    println!(
        "wrk answers: {} accepted, {} shed as 503 ({:.1}%), {} other 5xx",
        accepted,
        shed,
        100.0 * shed as f64 / total as f64,
        failed
    );
    if let Some(latency) = printed.lines().find(|l| l.starts_with("WRK_LATENCY")) {
        println!(
            "wrk latency (shed and accepted mixed): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(field(latency, "p50")),
            ms(field(latency, "p99")),
            ms(field(latency, "max"))
        );
    }
}

/// Holds one after another from a few clients; the latency of answers not shed.
async fn hold_probe(
    base: String,
    date: u64,
    users: u64,
    counting: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> (Histogram<u64>, u64) {
    let shed = Arc::new(AtomicU64::new(0));
    let clients = (0..PROBE_CLIENTS).map(|client| {
        let (base, done, shed) = (base.clone(), done.clone(), shed.clone());
        let counting = counting.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .unwrap();
            let mut latency = Vec::new();
            let mut n = client as u64;
            while !done.load(Ordering::Relaxed) {
                n += PROBE_CLIENTS as u64;
                let user = n % users + 1;
                let seat = (n * 7919) % (ROWS * SEATS_PER_ROW) + 1;
                let started = Instant::now();
                let answer = http
                    .post(format!("{base}/api/v1/reservations"))
                    .bearer_auth(token(user))
                    .json(&json!({"dateId": date, "seatIds": [seat]}))
                    .send()
                    .await;
                let Ok(answer) = answer else { continue };
                let status = answer.status().as_u16();
                let _ = answer.bytes().await;
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                if status == 503 {
                    shed.fetch_add(1, Ordering::Relaxed);
                } else {
                    latency.push(started.elapsed().as_micros() as u64);
                }
            }
            latency
        })
    });
    let mut all = latency_histogram();
    for client in clients.collect::<Vec<_>>() {
        for micros in client.await.unwrap() {
            all.saturating_record(micros);
        }
    }
    (all, shed.load(Ordering::Relaxed))
}

/// `GET /health` on a fresh connection every `HEALTH_EVERY`; (latencies, failures).
async fn health_probe(
    base: String,
    counting: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> (Histogram<u64>, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap();
    let mut latency = latency_histogram();
    let mut failed = 0;
    let mut every = tokio::time::interval(HEALTH_EVERY);
    while !done.load(Ordering::Relaxed) {
        every.tick().await;
        let started = Instant::now();
        let answered = match http.get(format!("{base}/health")).send().await {
            Ok(answer) if answer.status() == 200 => answer.bytes().await.is_ok(),
            _ => false,
        };
        if !counting.load(Ordering::Relaxed) {
            continue;
        }
        if answered {
            latency.saturating_record(started.elapsed().as_micros() as u64);
        } else {
            failed += 1;
        }
    }
    (latency, failed)
}

/// Latencies in microseconds, from 1 µs to a minute.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}
