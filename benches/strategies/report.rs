//! What a run found, judged and written down: one [`Row`] per target and workload
//! (throughput, latency, errors, and whether the state left behind agrees with the
//! answers given), `REPORT.md` (the table, the machine, the settings, the date, and
//! what each strategy needs to be correct) and `chart.svg` (requests per second per
//! workload, drawn with plotters' SVG backend).

use crate::engines;
use crate::load::Phase;
use crate::postgres;
use crate::redis_lock;
use crate::targets::{Engines, Kind, Observed, Target};
use crate::{Args, Workload};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One target under one workload.
pub struct Row {
    /// The target's name.
    pub name: &'static str,
    /// What it is.
    pub kind: Kind,
    /// Its pool size, as shown.
    pub pool: String,
    /// The workload.
    pub workload: Workload,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answers the workload does not expect (5xx, transport errors, 409 where every
    /// request should win).
    pub errors: u64,
    /// Whether the state left behind agrees with the answers.
    pub correct: bool,
    /// What was counted and read back.
    pub note: String,
}

impl Row {
    /// Judges one phase against the state it left.
    pub fn judge(
        target: &Target,
        workload: Workload,
        phase: &Phase,
        acknowledged: u64,
        observed: &Observed,
    ) -> Row {
        let expected: &[u16] = match workload {
            Workload::OneSeat => &[201, 409],
            Workload::FlashSale => &[201],
            Workload::HotWallet => &[200],
        };
        let errors = phase
            .statuses
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(_, n)| n)
            .sum();
        let (correct, note) = verdict(workload, phase, acknowledged, observed);
        Row {
            name: target.name,
            kind: target.kind,
            pool: target.pool_label(),
            workload,
            rps: phase.rps(),
            p50_ms: phase.latency_ms(0.5),
            p99_ms: phase.latency_ms(0.99),
            requests: phase.requests,
            errors,
            correct,
            note,
        }
    }
}

/// Whether the state agrees with the answers, and what was compared.
fn verdict(
    workload: Workload,
    phase: &Phase,
    acknowledged: u64,
    observed: &Observed,
) -> (bool, String) {
    if let Some(error) = &observed.error {
        return (false, format!("could not read the state: {error}"));
    }
    let wins = phase.count(201) as i64;
    let agrees = |value: Option<i64>, want: i64| value.is_none_or(|v| v == want);
    let shown =
        |label: &str, value: Option<i64>| value.map_or(String::new(), |v| format!(", {label} {v}"));
    match workload {
        Workload::OneSeat | Workload::FlashSale => {
            let want_wins = if workload == Workload::OneSeat {
                wins == 1
            } else {
                true
            };
            let correct = want_wins
                && observed.held == Some(wins)
                && agrees(observed.reservations, wins)
                && agrees(observed.doubles, 0);
            let note = format!(
                "{wins} won (201){}{}{}",
                shown("seats held", observed.held),
                shown("reservations", observed.reservations),
                shown("seats in two reservations", observed.doubles)
            );
            (correct, note)
        }
        Workload::HotWallet => {
            let acknowledged = acknowledged as i64;
            let charges = phase.count(200) as i64;
            let correct = observed.balance == Some(acknowledged)
                && agrees(observed.ledger_sum, acknowledged)
                && agrees(observed.ledger_entries, charges);
            let note = format!(
                "{charges} charges acknowledged, {acknowledged} won{}{}{}",
                shown("balance", observed.balance),
                shown("ledger sum", observed.ledger_sum),
                shown("ledger entries", observed.ledger_entries)
            );
            (correct, note)
        }
    }
}

fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where and how the run ran.
pub struct Settings {
    date: String,
    machine: Vec<String>,
    settings: Vec<String>,
    smoke: bool,
}

impl Settings {
    /// Reads the machine and the engines' versions.
    pub async fn gather(args: &Args, engines: &Engines) -> Settings {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
            .map_or("unknown".into(), |kib| {
                format!("{:.1} GiB", kib / (1024.0 * 1024.0))
            });
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let filesystem = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(&engines.scratch)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let machine = vec![
            format!("cores (nproc): {cores}; CPU: {cpu}"),
            format!("memory: {memory}"),
            format!("kernel: {}", read("/proc/sys/kernel/osrelease").trim()),
            format!(
                "data directories (PostgreSQL, Redis, boxoffice): under {} (file system `{filesystem}` as `stat -f` names it), the same disk for all",
                engines.scratch.display()
            ),
            format!(
                "PostgreSQL {}, Redis {}",
                postgres_version(engines.postgres_port).await,
                redis_version(engines.redis_port).await
            ),
            "the load generator, the servers and the engines share the machine".into(),
            format!(
                "load average (1, 5, 15 min) at the start: {}",
                load_average()
            ),
        ];
        let pools = args
            .pools
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        let settings = vec![
            format!("connections: {} (one request at a time each, keep-alive)", args.connections),
            format!("duration: {} s per workload (the flash sale stops early if its inventory sells out)", args.duration_secs),
            format!("flash sale inventory: {} dates x {} seats; {} users, at most 4 seats a user a date", args.sale_dates, args.seats_per_date, (args.seats_per_date / 4).max(1000)),
            format!(
                "database pools: {pools} connections (10 is HikariCP's default, as the seeds ran; 16 came out best \
                 or nearly for the PostgreSQL strategies in a quick sweep of 4, 16 and 32 on a 2-core machine, \
                 3 s per workload; 64 is one per client; no one size wins everywhere); Redis: as many \
                 multiplexed connections as the pool has"
            ),
            format!("PostgreSQL: {} (its own initdb, run as an unprivileged user)", engines::POSTGRES_SETTINGS.join(", ")),
            format!(
                "Redis: {}",
                engines::REDIS_SETTINGS.iter().map(|(k, v)| format!("{k} {}", if v.is_empty() { "\"\"" } else { v })).collect::<Vec<_>>().join(", ")
            ),
            "boxoffice: in-process as it ships, `--fsync always` (every 2xx is fsynced), defaults except `--queue-active-max` (every user admitted)".into(),
            format!("build: {}", if cfg!(debug_assertions) { "debug (figures meaningless)" } else { "release" }),
        ];
        Settings {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine,
            settings,
            smoke: args.smoke,
        }
    }
}

impl Settings {
    /// Notes the machine's load at the end of the run.
    pub fn finish(&mut self) {
        let line = format!("load average (1, 5, 15 min) at the end: {}", load_average());
        self.machine.push(line);
    }
}

async fn postgres_version(port: u16) -> String {
    let connected = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await;
    let Ok((client, connection)) = connected else {
        return "unknown".into();
    };
    tokio::spawn(async move {
        // Ends when the client is dropped below.
        let _ = connection.await;
    });
    client
        .query_one("SHOW server_version", &[])
        .await
        .map(|row| row.get::<_, String>(0))
        .unwrap_or_else(|_| "unknown".into())
}

async fn redis_version(port: u16) -> String {
    let Ok(connections) = crate::redis_script::Connections::open(port, 1).await else {
        return "unknown".into();
    };
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connections.get())
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// Writes `REPORT.md` and `chart.svg` into `dir`.
pub fn write(dir: &Path, rows: &[Row], settings: &Settings) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let report = markdown(rows, settings);
    std::fs::write(dir.join("REPORT.md"), report).map_err(|e| format!("REPORT.md: {e}"))?;
    chart(&dir.join("chart.svg"), rows)
}

fn markdown(rows: &[Row], settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Lock strategies against boxoffice\n");
    let _ = writeln!(
        out,
        "Written by `cargo bench --bench strategies{}` on {}. Every figure below is from that one run, \
         through HTTP, with the load generator on the same machine; the ratio to boxoffice in the same \
         run is the figure to compare across machines.\n",
        if settings.smoke { " -- --smoke" } else { "" },
        settings.date
    );
    if settings.smoke {
        let _ = writeln!(
            out,
            "**Smoke run**: about a second per workload; the figures are not meaningful.\n"
        );
    }
    let _ = writeln!(
        out,
        "![requests per second by strategy and workload](chart.svg)\n"
    );
    let _ = writeln!(out, "## Results\n");
    results(&mut out, rows);
    let _ = writeln!(
        out,
        "\nErrors are answers the workload does not expect: 5xx (a lock waited for too long, a lease \
         that ran out, a storage error), 409 `CONFLICT` (optimistic retries used up), transport errors, \
         and in the flash sale anything but 201. On one seat, 409 `SEAT_UNAVAILABLE` is the expected \
         answer of every loser. *Correct* compares the answers with the state read back from the \
         storage (SQL, Redis commands; boxoffice's own API): one seat = exactly one 201 and exactly one \
         seat held; flash sale = seats held = reservations = 201s and no seat in two reservations; hot \
         wallet = balance = the sum of the acknowledged charges (and the ledger agrees).\n"
    );
    let _ = writeln!(out, "## Machine\n");
    for line in &settings.machine {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n## Settings\n");
    for line in &settings.settings {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n## What each strategy needs to be correct\n");
    out.push_str(&needs());
    out
}

/// The mean of boxoffice's runs of `workload` (it runs first and last), and the runs.
fn boxoffice_baseline(rows: &[Row], workload: Workload) -> Option<(f64, Vec<f64>)> {
    let runs: Vec<f64> = rows
        .iter()
        .filter(|row| row.workload == workload && row.kind == Kind::Boxoffice)
        .map(|row| row.rps)
        .collect();
    (!runs.is_empty()).then(|| (runs.iter().sum::<f64>() / runs.len() as f64, runs))
}

/// The table, then how far boxoffice's first and last runs differ.
fn results(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "| workload | strategy | pool | req/s | x boxoffice | p50 ms | p99 ms | requests | errors | correct | state read back |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    let mut drift = Vec::new();
    for workload in Workload::ALL {
        let baseline = boxoffice_baseline(rows, workload);
        if let Some((_, runs)) = &baseline {
            let runs: Vec<String> = runs.iter().map(|rps| format!("{rps:.0}")).collect();
            drift.push(format!("{} {}", workload.name(), runs.join(" then ")));
        }
        for row in rows.iter().filter(|row| row.workload == workload) {
            let ratio = baseline
                .as_ref()
                .map_or("-".into(), |(mean, _)| format!("{:.3}", row.rps / mean));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {ratio} | {:.2} | {:.2} | {} | {} | {} | {} |",
                workload.name(),
                row.name,
                row.pool,
                row.rps,
                row.p50_ms,
                row.p99_ms,
                row.requests,
                row.errors,
                if row.correct { "yes" } else { "**NO**" },
                row.note
            );
        }
    }
    let _ = writeln!(
        out,
        "\nboxoffice runs first and last, from scratch each time: {} requests/s. How far the two \
         differ is how much the machine drifted while the run went on (other work shares it; see \
         the load averages below). *x boxoffice* divides by the mean of the two.",
        drift.join("; ")
    );
}

/// The strategies' requirements, from the constants the code uses.
fn needs() -> String {
    format!(
        "- **pg row lock** (`SELECT … FOR UPDATE`, then check, `INSERT` the reservation, `UPDATE` the \
         seats, `COMMIT`; wallet: `SELECT balance … FOR UPDATE`, `UPDATE`, `INSERT` a ledger row): \
         nothing more; the row lock makes read-check-write one step. Seats are locked in seat order so \
         two overlapping holds cannot deadlock. The price: every request for a hot row waits in line \
         for it, each holding a pooled connection while it waits.\n\
         - **pg version column** (read without locks, `UPDATE … WHERE version = $read`, 0 rows = lost): \
         retries. A lost round rolls back and tries again after a random backoff of up to \
         2^attempt ms (at most {backoff} ms), at most {attempts} attempts, then answers 409 `CONFLICT`. \
         On one seat a retry only finds the seat taken; on a hot wallet most rounds are lost, so \
         requests run out of attempts (counted as errors) and the work of every lost round is wasted.\n\
         - **redis lock + pg** (`SET lock:… token NX PX {lease} ms`, PostgreSQL read-check-write \
         without row locks, release by a compare-and-delete Lua script): a lease, and something for \
         when it runs out. Without expiry a holder that dies keeps the lock forever; with it, a slow \
         holder can lose the lock mid-transaction while another takes it. So a taken lock is retried \
         after a random pause of up to {pause} ms for at most {wait} s (then 503 `LOCK_TIMEOUT`), the \
         transaction commits only with at least {margin} ms of the lease left (else it rolls back, \
         503 `LOCK_EXPIRED`), and the seat `UPDATE` is fenced by `WHERE status = 'AVAILABLE'`. The \
         lock serialises the hot wallet completely: one commit (one fsync) at a time.\n\
         - **redis lua script** (the hold and the charge are each one script; Redis runs scripts one \
         at a time): nothing more for atomicity; for durability, `appendfsync always`. The state \
         lives in Redis, not in the database.\n\
         - **boxoffice**: one owner task per date and per wallet shard takes requests one at a time \
         from its mailbox, logs the resulting events, and answers once the group-committed batch is \
         fsynced. No locks, no retries; a losing hold is answered from the seat view without waiting \
         for the disk. It also does more per hold than the strategies do: it checks that the user is \
         admitted by the waiting room and within four seats a date.\n",
        attempts = postgres::OPTIMISTIC_ATTEMPTS_MAX,
        backoff = postgres::OPTIMISTIC_BACKOFF_MAX_MS,
        lease = redis_lock::LOCK_LEASE.as_millis(),
        pause = redis_lock::LOCK_BACKOFF_MAX.as_millis(),
        wait = redis_lock::LOCK_WAIT_MAX.as_secs(),
        margin = redis_lock::LEASE_MARGIN.as_millis(),
    )
}

/// Bar colours: boxoffice, the seeds' pool of 10, a tuned pool, and an incorrect run.
const BOXOFFICE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const SEEDS_POOL_COLOUR: RGBColor = RGBColor(180, 180, 180);
const TUNED_POOL_COLOUR: RGBColor = RGBColor(120, 120, 120);
const INCORRECT_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// One panel per workload; one horizontal bar per target, requests/s on a log scale.
fn chart(path: &Path, rows: &[Row]) -> Result<(), String> {
    let per_workload = rows
        .iter()
        .filter(|row| row.workload == Workload::OneSeat)
        .count()
        .max(1);
    let height = 120 + 34 * per_workload as u32;
    let root = SVGBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            "requests/s through HTTP, 64 connections (log scale; red: incorrect)",
            ("sans-serif", 20),
        )
        .map_err(|e| e.to_string())?;
    for (area, workload) in root.split_evenly((1, 3)).iter().zip(Workload::ALL) {
        let bars: Vec<&Row> = rows.iter().filter(|row| row.workload == workload).collect();
        let top = bars.iter().map(|row| row.rps).fold(10.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(workload.name(), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .build_cartesian_2d((10.0..top * 8.0).log_scale(), 0.0..bars.len() as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, row) in bars.iter().enumerate() {
            let y = (bars.len() - 1 - i) as f64;
            let colour = match (row.correct, row.kind, row.pool.as_str()) {
                (false, _, _) => INCORRECT_COLOUR,
                (true, Kind::Boxoffice, _) => BOXOFFICE_COLOUR,
                (true, _, "10") => SEEDS_POOL_COLOUR,
                _ => TUNED_POOL_COLOUR,
            };
            let label = format!("{} ({}): {:.0}", row.name, pool_words(&row.pool), row.rps);
            chart
                .draw_series([Rectangle::new(
                    [(10.0, y + 0.15), (row.rps.max(10.0), y + 0.7)],
                    colour.filled(),
                )])
                .map_err(|e| e.to_string())?;
            chart
                .draw_series([Text::new(label, (11.0, y + 0.97), ("sans-serif", 12))])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn pool_words(pool: &str) -> String {
    if pool == "-" {
        "actors".into()
    } else {
        format!("pool {pool}")
    }
}
