//! The hammer's phases driven by wrk, a load generator outside this process, so the
//! figures do not rest on the built-in generator alone (`--wrk`).
//!
//! wrk runs `--wrk-threads` threads and `--connections` connections for
//! `--duration-secs`, with one Lua script for every phase: each request is the same
//! authenticated POST of a hold (`Authorization: Bearer`, `Content-Type:
//! application/json`, `{"dateId": …, "seatIds": [seat]}`), its token rotating through
//! every user's. The phases, one after another in one run:
//! - **empty**: to the empty axum handler beside the server (the yardstick);
//! - **one seat**: every request holds seat 1 of the one-seat date; exactly one wins;
//! - **flash sale**: every request holds a seat nobody asked for before, on a date of
//!   [`SALE_SEATS`] seats of its own (each user holds many: the server runs with a
//!   raised seat limit); every hold is durable before it is answered.
//!
//! Each line gives wrk's requests per second, its latency quantiles and the answers by
//! status (counted by the script), the ratio to the empty handler's rate, and the CPU
//! time this process (the server: wrk is another) spent per request, which a busy
//! machine disturbs less than the rate.

use super::cpu::cpu_time;
use crate::sale::Target;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Seats of the flash sale's date: more than wrk can hold in a run.
pub const SALE_SEATS: u32 = 1_000_000;

/// How wrk runs.
pub struct Args {
    /// wrk threads.
    pub threads: usize,
    /// Connections wrk keeps open.
    pub connections: usize,
    /// How long each phase runs.
    pub duration: Duration,
}

/// What wrk measured in one phase.
struct Figures {
    rps: f64,
    cpu_micros_per_request: f64,
    p50_ms: f64,
    p99_ms: f64,
    statuses: String,
}

/// Runs the phases `wants` asks for (the yardstick always); `true` if the one seat
/// had other than exactly one winner.
pub async fn run(
    target: &Target,
    empty_base: &str,
    one_seat_date: u64,
    users: u64,
    args: &Args,
    wants: impl Fn(&str) -> bool,
) -> bool {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens: Vec<String> = (1..=users).map(|u| target.token(u)).collect();
    println!(
        "wrk: {} threads, {} connections, {} s per phase, tokens of {users} users",
        args.threads,
        args.connections,
        args.duration.as_secs()
    );
    let empty = phase(
        "empty",
        &dir.path().join("empty.lua"),
        &format!("{empty_base}/empty"),
        &script(&tokens, one_seat_date, false, args.threads),
        args,
        None,
    );
    let holds = format!("{}/api/v1/reservations", target.base);
    let mut failed = false;
    if wants("one-seat") {
        let one = phase(
            "one-seat",
            &dir.path().join("one.lua"),
            &holds,
            &script(&tokens, one_seat_date, false, args.threads),
            args,
            Some(&empty),
        );
        let winners = status_count(&one.statuses, 201);
        println!("one-seat winners: {winners} (must be exactly 1)");
        failed |= winners != 1;
    }
    if wants("flash-sale") {
        let date = sale_date(target, users).await;
        phase(
            "sale-hold",
            &dir.path().join("sale.lua"),
            &holds,
            &script(&tokens, date, true, args.threads),
            args,
            Some(&empty),
        );
    }
    failed
}

/// Runs wrk once with `script` against `url` and prints its line.
fn phase(
    name: &str,
    path: &Path,
    url: &str,
    script: &str,
    args: &Args,
    yardstick: Option<&Figures>,
) -> Figures {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .expect("the script is written");
    let cpu_before = cpu_time();
    let output = Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs()))
        .args(["--timeout", "10s", "-s"])
        .arg(path)
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let cpu = cpu_time() - cpu_before;
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut figures = parse(&printed);
    figures.cpu_micros_per_request =
        cpu.as_secs_f64() * 1e6 / (figures.rps * args.duration.as_secs_f64());
    let ratio = yardstick.map_or(String::new(), |y| {
        format!("  ({:.2}x empty)", figures.rps / y.rps)
    });
    println!(
        "{name:<12} {:>9.0} req/s{ratio}  p50 {:.2} ms  p99 {:.2} ms  server CPU {:.1} µs/req  statuses {}",
        figures.rps,
        figures.p50_ms,
        figures.p99_ms,
        figures.cpu_micros_per_request,
        figures.statuses
    );
    figures
}

/// wrk's figures from what it printed (its summary and the script's lines).
fn parse(printed: &str) -> Figures {
    let rps = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let line = |prefix: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let latency = line("LATENCY");
    let micros = |name: &str| -> f64 {
        latency
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Figures {
        rps,
        cpu_micros_per_request: f64::NAN,
        p50_ms: micros("p50") / 1e3,
        p99_ms: micros("p99") / 1e3,
        statuses: line("STATUSES"),
    }
}

/// How many answers had `status`, from the script's `STATUSES` line.
fn status_count(statuses: &str, status: u16) -> u64 {
    statuses
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{status}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Lua script for `threads` wrk threads: holds on `date` as a rotating user, of
/// seat 1, or (`distinct`) of a seat no other request asked for; answers counted by
/// status.
fn script(tokens: &[String], date: u64, distinct: bool, threads: usize) -> String {
    let tokens: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
local tokens = {{{tokens}}}
local distinct = {distinct}
local threads = {{}}
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end
function init(args) n = 0; statuses = {{}} end
function request()
  n = n + 1
  local user = (n * 7919 + id) % #tokens + 1
  local seat = 1
  if distinct then seat = (n - 1) * {threads} + id + 1 end
  local body = '{{"dateId": {date}, "seatIds": [' .. seat .. ']}}'
  return wrk.format("POST", nil, {{["Authorization"] = "Bearer " .. tokens[user],
    ["Content-Type"] = "application/json"}}, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {{}}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do all[status] = (all[status] or 0) + n end
  end
  local line = ""
  for status, n in pairs(all) do line = line .. status .. "=" .. n .. " " end
  io.write("STATUSES " .. line .. "\n")
  io.write(string.format("LATENCY p50=%d p99=%d\n",
    latency:percentile(50), latency:percentile(99)))
end
"#,
        tokens = tokens.join(","),
    )
}

/// A concert of one date of [`SALE_SEATS`] seats, every user admitted to its room;
/// answers the date.
async fn sale_date(target: &Target, users: u64) -> u64 {
    let seats_per_row = 1000;
    let spec = json!({"title": "wrk sale", "venue": "Loopback", "dates": [
        {"startsAt": "2099-12-26T19:00:00Z", "sections": [{"name": "W",
            "rows": SALE_SEATS / seats_per_row, "seatsPerRow": seats_per_row, "price": 1000}]}]});
    let (status, concert) = target
        .post(&target.admin_key, "/api/v1/admin/concerts", spec)
        .await;
    assert_eq!(status, 201, "creating the sale's concert: {concert}");
    let concert_id = concert["id"].as_u64().expect("a concert id");
    for user in 1..=users {
        let path = format!("/api/v1/concerts/{concert_id}/queue");
        let (status, entry) = target.post(&target.token(user), &path, Value::Null).await;
        assert!(status == 201 || status == 200, "joining: {entry}");
        assert_eq!(entry["status"], "ACTIVE", "user {user} must be admitted");
    }
    concert["dates"][0]["id"].as_u64().expect("a date id")
}
