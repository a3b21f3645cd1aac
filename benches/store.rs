//! The store's speed: the log writer, replay, snapshots, what durability costs a hold,
//! and what a date costs in memory at rest.
//! `cargo bench --bench store [-- memory log replay snapshot hold]` (no names: all
//! five); about two minutes on the 2-core machine. Every figure but memory is the
//! median of [`REPETITIONS`] runs on a fresh temporary data directory on the real disk;
//! memory is measured first, before the other benchmarks have grown the heap.
//!
//! What each figure should be, and why:
//!
//! - **log** (the writer alone, charges committed through `Journal::commit`). With one
//!   submitter and one event per batch every event waits for its own fdatasync, so
//!   events/s = 1 / fsync time: about 6,700/s if an fsync costs ~0.15 ms. With 32
//!   submitters the writer groups up to 32 waiting batches into one write and one fsync
//!   (events per write up to 32 × batch; the writer's appends are counted by the
//!   store's `boxoffice_commit_batch_events`), so events/s should grow with the batch until the
//!   CPU bounds it: encoding a ~70-byte record (bincode + CRC-32) and the replica
//!   applying it cost about a microsecond each, so batches of 100–1000 should reach
//!   hundreds of thousands to about a million durable events/s, and `--fsync never`
//!   should approach that ceiling at every batch size.
//! - **replay** (`recovery::recover` of one segment of 1,000,000 records, no snapshot).
//!   The aim is ≥ 2 million events/s: reading ~100 MB from the page cache and its
//!   CRC-32 take tens of milliseconds, leaving ~400 ns per event for bincode and
//!   `Image::apply`. The decode and apply columns split the time, and the timestamp
//!   line shows what a `chrono` timestamp costs bincode (it is an RFC 3339 string)
//!   next to the same instant as an integer.
//! - **snapshot** (a date of 1,000,000 seats). A free seat is one byte and a held or
//!   sold one 18, so the realistic state (10,000 users holding 4 seats each, half of
//!   them paid) is a few MB and should encode, write (one fsync) and load in tens of
//!   milliseconds; the sold-out state (250,000 reservations, wallets and queue entries)
//!   is ~100 MB and should take about a second each way.
//! - **hold** (`Engine::hold` of one seat, [`HOLD_CALLERS`] concurrent callers,
//!   262,144 holds on one date). Beside each journal's runs the bench measures the bare
//!   pattern every actor follows: a task taking messages from a bounded mailbox and
//!   replying on a oneshot, called by as many tasks; the ratio to it is how close one
//!   actor per date comes to what a tokio actor hop costs on this machine (aim: the
//!   durable hold at ≥ 0.25× of it). The CPU column is the whole process's CPU time
//!   per hold, which a shared machine disturbs less than the rate. With 1024 callers
//!   in flight each fsync is shared by hundreds of holds, so durable throughput should
//!   stay close to `--fsync never`; the in-memory journal shows what the actors alone
//!   can do.
//! - **memory** (a durable engine, `--fsync never`): the growth of the resident set,
//!   and in brackets of the heap in use (counted by this binary's allocator), when a
//!   date of 1,000,000 seats is created, per seat (aim: ≤ 2 bytes per free seat), and
//!   when 250,000 admitted users then hold 4 seats each, per reservation (aim: ≤ 200
//!   bytes; the heap in use is the figure to read, as the resident set grows less
//!   when the holds reuse memory freed earlier). The date's state, its seat view, the
//!   indexes and the snapshot replica's copy all count.

#[path = "common/cpu.rs"]
mod cpu;

use boxoffice::config::Config;
use boxoffice::domain::Image;
use boxoffice::domain::Rules;
use boxoffice::domain::catalog::{CatalogCommand, ConcertSpec, DateSpec, SectionSpec};
use boxoffice::domain::date::{DateEvent, Payment, Reservation, ReservationStatus};
use boxoffice::domain::queue::{EntryStatus, QueueEvent};
use boxoffice::domain::wallet::{Charge, WalletEvent};
use boxoffice::domain::{
    ChargeId, ConcertId, DateId, Event, PaymentId, ReservationId, SeatId, Ticket, Timestamp,
    UserId, Won,
};
use boxoffice::engine::Engine;
use boxoffice::engine::clock::SystemClock;
use boxoffice::engine::journal::Journal;
use boxoffice::store::format::{self, Record};
use boxoffice::store::{
    self, FsyncPolicy, StoreMetrics, StoreOptions, file_log, recovery, snapshot,
};
use cpu::cpu_time;
use hdrhistogram::Histogram;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The allocator the binary uses, so the figures are the server's; while the memory
/// bench runs it also counts the heap in use (see [`Counting`]).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// mimalloc, counting the bytes of the blocks in use (their usable size, so with the
/// rounding to size classes) while [`COUNTING`] is on. The resident set cannot say
/// this exactly: memory freed before a reading stays resident and is then reused, so
/// its growth can read less than what was kept. Counting is on from the start of a run
/// that measures memory (so that every block freed was counted when it was made) and
/// off once that is done, before the timed benchmarks.
struct Counting;

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static IN_USE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl Counting {
    fn count(ptr: *const u8, sign: i64) {
        if !ptr.is_null() && COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: `ptr` is a live block mimalloc gave out.
            let size = unsafe { mimalloc::MiMalloc.usable_size(ptr) } as i64;
            IN_USE.fetch_add(sign * size, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is mimalloc's; the counting only reads the block's size.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
        Counting::count(ptr, 1);
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let ptr = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        Counting::count(ptr, 1);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        Counting::count(ptr, -1);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        Counting::count(ptr, -1);
        let grown = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, size) };
        // A failed realloc leaves the old block in place.
        Counting::count(if grown.is_null() { ptr } else { grown }, 1);
        grown
    }
}

/// Runs of each measurement; the median is reported.
const REPETITIONS: usize = 3;
/// How long each log writer run submits.
const LOG_WINDOW: Duration = Duration::from_millis(500);
/// Events replayed.
const REPLAY_EVENTS: u64 = 1_000_000;
/// Seats of the snapshot's date.
const VENUE_SEATS: u32 = 1_000_000;
/// Users that hold in the hold benchmark, each 4 seats, one per call.
const HOLD_USERS: u64 = 65_536;
/// Concurrent callers in the hold benchmark (and of the bare actor hop beside it).
const HOLD_CALLERS: u64 = 1024;
/// Calls each caller makes to the bare actor.
const HOPS_PER_CALLER: u64 = 1_000;
/// Users with a live 4-seat reservation in the memory measurement.
const RESTING_USERS: u64 = 250_000;
/// The price of every seat.
const PRICE: u64 = 100;

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    COUNTING.store(runs("memory"), std::sync::atomic::Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // First, while nothing else has grown and freed the heap.
    if runs("memory") {
        runtime.block_on(bench_memory());
    }
    COUNTING.store(false, std::sync::atomic::Ordering::Relaxed);
    if runs("log") {
        runtime.block_on(bench_log());
    }
    if runs("replay") {
        bench_replay();
    }
    if runs("snapshot") {
        bench_snapshot();
    }
    if runs("hold") {
        runtime.block_on(bench_hold());
    }
}

/// The median of `runs` by `key` (the run itself, so its other figures come along).
fn median<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.swap_remove(runs.len() / 2)
}

/// The median time of `REPETITIONS` calls of `f`, which times its own part.
fn median_time(mut f: impl FnMut() -> Duration) -> Duration {
    median(
        (0..REPETITIONS).map(|_| f()).collect(),
        Duration::as_secs_f64,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary data directory")
}

fn options(dir: &Path, fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        dir: dir.to_owned(),
        fsync,
        // No snapshot while measuring; the one taken at stop is not timed.
        snapshot_every_events: u64::MAX,
        snapshot_interval: Duration::from_secs(3600),
    }
}

fn start() -> Timestamp {
    chrono::Utc::now()
}

/// A charge of 1 won taking `user`'s balance to `balance_after`.
fn charge(user: UserId, balance_after: u64, id: u128, at: Timestamp) -> Event {
    Event::Wallet(WalletEvent::Charged(Charge {
        id: ChargeId(Uuid::from_u128(id)),
        user,
        amount: Won(1),
        balance_after: Won(balance_after),
        at,
        idempotency_key: None,
    }))
}

// ---------------------------------------------------------------------------------
// (a) The log writer alone.

/// What one log writer run measured.
struct LogRun {
    events_per_sec: f64,
    commits_per_sec: f64,
    writes_per_sec: f64,
    latency: Histogram<u64>,
}

async fn bench_log() {
    println!("\n(a) log writer alone: 1-won charges through Journal::commit, {LOG_WINDOW:?} a run");
    let (small, over_zeros, large) = fsync_probe();
    println!(
        "    this disk: append 100 bytes + fdatasync {small:.3} ms, over zeros {over_zeros:.3} ms; 1 MB at a time {large:.0} MB/s"
    );
    println!("    writes: the writer's appends, each followed by one fdatasync under `always`");
    println!(
        "{:<7}{:>11}{:>7}{:>12}{:>11}{:>10}{:>10}{:>9}{:>9}",
        "fsync",
        "submitters",
        "batch",
        "events/s",
        "commits/s",
        "writes/s",
        "ev/write",
        "p50 ms",
        "p99 ms"
    );
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        for (submitters, batch_len) in [(1, 1), (32, 1), (32, 10), (32, 100), (32, 1000)] {
            let mut runs = Vec::new();
            for _ in 0..REPETITIONS {
                runs.push(log_run(fsync, submitters, batch_len).await);
            }
            let run = median(runs, |r| r.events_per_sec);
            let writes = run.writes_per_sec;
            println!(
                "{:<7}{:>11}{:>7}{:>12.0}{:>11.0}{:>10}{:>10}{:>9.2}{:>9.2}",
                format!("{fsync:?}").to_lowercase(),
                submitters,
                batch_len,
                run.events_per_sec,
                run.commits_per_sec,
                format!("{writes:.0}"),
                format!("{:.1}", run.events_per_sec / writes),
                run.latency.value_at_quantile(0.5) as f64 / 1e3,
                run.latency.value_at_quantile(0.99) as f64 / 1e3,
            );
        }
    }
}

/// What fdatasync costs on this disk: milliseconds per appended 100 bytes (growing
/// the file, and written over zeros as the file log writes, not growing it), and MB/s
/// when appending 1 MB at a time.
fn fsync_probe() -> (f64, f64, f64) {
    const ROUNDS: u32 = 500;
    let dir = data_dir();
    let mut file = std::fs::File::create(dir.path().join("probe")).expect("a file");
    let zeroed = std::fs::File::create(dir.path().join("zeroed")).expect("a file");
    zeroed
        .write_all_at(&vec![0u8; 100 * ROUNDS as usize], 0)
        .and_then(|()| zeroed.sync_all())
        .expect("zeroed");
    let mut small = Duration::ZERO;
    let mut over_zeros = Duration::ZERO;
    // Alternating, so that both see the disk alike.
    for round in 0..u64::from(ROUNDS) {
        let started = Instant::now();
        file.write_all(&[7u8; 100])
            .and_then(|()| file.sync_data())
            .expect("appended");
        small += started.elapsed();
        let started = Instant::now();
        zeroed
            .write_all_at(&[7u8; 100], round * 100)
            .and_then(|()| zeroed.sync_data())
            .expect("written over zeros");
        over_zeros += started.elapsed();
    }
    let started = Instant::now();
    for _ in 0..16 {
        file.write_all(&[7u8; 1 << 20])
            .and_then(|()| file.sync_data())
            .expect("appended");
    }
    let large = started.elapsed().as_secs_f64() / 16.0;
    let millis = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(ROUNDS);
    (
        millis(small),
        millis(over_zeros),
        (1 << 20) as f64 / large / 1e6,
    )
}

async fn log_run(fsync: FsyncPolicy, submitters: u64, batch_len: u64) -> LogRun {
    let dir = data_dir();
    let rules = Config::default().rules();
    let metrics = Arc::new(StoreMetrics::default());
    let opened = store::open(
        &options(dir.path(), fsync),
        &rules,
        metrics.clone(),
        Vec::new(),
    )
    .expect("the store opens");
    let journal = Journal::durable(opened.log, opened.snapshots);
    let started = Instant::now();
    let deadline = started + LOG_WINDOW;
    let tasks: Vec<_> = (0..submitters)
        .map(|s| tokio::spawn(submit_until(journal.clone(), s, batch_len, deadline)))
        .collect();
    let mut latency = new_histogram();
    let mut commits = 0;
    for task in tasks {
        let (task_commits, task_latency) = task.await.expect("a submitter");
        commits += task_commits;
        latency.add(task_latency).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writes = appends(&metrics) as f64 / elapsed;
    journal.stop().await;
    LogRun {
        events_per_sec: (commits * batch_len) as f64 / elapsed,
        commits_per_sec: commits as f64 / elapsed,
        writes_per_sec: writes,
        latency,
    }
}

/// Commits batches of charges for the submitter's own users until `deadline`; returns
/// the number of commits and their latencies in microseconds.
async fn submit_until(
    journal: Journal,
    submitter: u64,
    batch_len: u64,
    deadline: Instant,
) -> (u64, Histogram<u64>) {
    const USERS: u64 = 100;
    let mut balances = [0u64; USERS as usize];
    let mut latency = new_histogram();
    let mut commits = 0;
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let at = start();
        let batch = (0..batch_len)
            .map(|_| {
                n += 1;
                let user = n % USERS;
                balances[user as usize] += 1;
                let id = (u128::from(submitter) << 64) | u128::from(n);
                let user_id = UserId(submitter * USERS + user + 1);
                charge(user_id, balances[user as usize], id, at)
            })
            .collect();
        let sent = Instant::now();
        journal
            .commit(batch)
            .await
            .expect("the log takes the batch");
        latency.saturating_record(sent.elapsed().as_micros() as u64);
        commits += 1;
    }
    (commits, latency)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The log writer's appends so far: how many batches `boxoffice_commit_batch_events`
/// counted.
fn appends(metrics: &StoreMetrics) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("the metrics encode");
    text.lines()
        .find_map(|l| l.strip_prefix("boxoffice_commit_batch_events_count "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the count of commits")
}

// ---------------------------------------------------------------------------------
// (b) Replay.

fn bench_replay() {
    let rules = Config::default().rules();
    println!("\n(b) replay: recovery::recover of one segment, no snapshot");
    println!(
        "{:<9}{:>10}{:>8}{:>13}{:>11}{:>10}{:>13}{:>10}{:>13}",
        "events",
        "count",
        "MB",
        "recover/s",
        "total ms",
        "read ms",
        "decode ms",
        "apply ms",
        "apply/s"
    );
    for name in ["charges", "holds"] {
        let events = match name {
            "charges" => charge_events(REPLAY_EVENTS),
            _ => hold_events(REPLAY_EVENTS),
        };
        let dir = data_dir();
        let bytes = segment(&events);
        let path = dir.path().join(file_log::file_name(1));
        std::fs::write(&path, &bytes).expect("the segment is written");
        let recover = median_time(|| {
            let started = Instant::now();
            let recovered = recovery::recover(dir.path(), &rules).expect("recovers");
            let elapsed = started.elapsed();
            assert_eq!(
                recovered.replayed,
                events.len() as u64,
                "every record replays"
            );
            elapsed
        });
        let read = median_time(|| {
            let started = Instant::now();
            let read = std::fs::read(&path).expect("read");
            let elapsed = started.elapsed();
            assert_eq!(read.len(), bytes.len());
            elapsed
        });
        let decode = median_time(|| time_decode(&bytes, events.len()));
        let apply = median_time(|| time_apply(&events, &rules));
        let count = events.len() as f64;
        println!(
            "{:<9}{:>10}{:>8.1}{:>13.0}{:>11.0}{:>10.1}{:>13.0}{:>10.0}{:>13.0}",
            name,
            events.len(),
            bytes.len() as f64 / 1e6,
            count / recover.as_secs_f64(),
            ms(recover),
            ms(read),
            ms(decode),
            ms(apply),
            count / apply.as_secs_f64(),
        );
    }
    timestamp_costs();
}

/// One user in a thousand, each with a growing balance.
fn charge_events(n: u64) -> Vec<Event> {
    let at = start();
    let mut balances = vec![0u64; 1000];
    (0..n)
        .map(|i| {
            let user = (i % 1000) as usize;
            balances[user] += 1;
            charge(UserId(user as u64 + 1), balances[user], u128::from(i), at)
        })
        .collect()
}

/// A concert of `n - 1` seats, then a one-seat hold on each.
fn hold_events(n: u64) -> Vec<Event> {
    let seats = u32::try_from(n - 1).expect("a date's seats fit a u32");
    let at = start();
    let mut events = vec![concert_event(seats, at)];
    events.extend((1..=seats).map(|seat| {
        Event::Date(
            DateId(1),
            DateEvent::SeatsHeld(Arc::new(reservation(
                u64::from(seat),
                u128::from(seat),
                vec![SeatId(seat)],
                at,
            ))),
        )
    }));
    events
}

fn reservation(user: u64, id: u128, seats: Vec<SeatId>, at: Timestamp) -> Reservation {
    Reservation {
        id: ReservationId(Uuid::from_u128(id)),
        user: UserId(user),
        concert_id: ConcertId(1),
        date_id: DateId(1),
        amount: Won(PRICE * seats.len() as u64),
        seats: seats.into_iter().collect(),
        status: ReservationStatus::Held,
        created_at: at,
        expires_at: at + chrono::Duration::seconds(300),
        after_sale: None,
    }
}

/// The creation of concert 1: one date of `seats` seats in rows of 1000, one price.
fn concert_event(seats: u32, at: Timestamp) -> Event {
    let mut sections = vec![SectionSpec {
        name: "A".into(),
        rows: seats / 1000,
        seats_per_row: 1000,
        price: PRICE as i64,
    }];
    if !seats.is_multiple_of(1000) {
        sections.push(SectionSpec {
            name: "B".into(),
            rows: 1,
            seats_per_row: seats % 1000,
            price: PRICE as i64,
        });
    }
    sections.retain(|s| s.rows > 0);
    let spec = ConcertSpec {
        title: "Stadium".into(),
        venue: "Seoul Olympic Stadium".into(),
        dates: vec![DateSpec {
            starts_at: at + chrono::Duration::days(30),
            sections,
        }],
    };
    let mut rules = Config::default().rules().catalog;
    rules.seats_per_date_max = rules.seats_per_date_max.max(seats);
    let mut catalog = boxoffice::domain::catalog::CatalogState::default();
    let event = catalog
        .apply(CatalogCommand::Create(spec), rules, at)
        .expect("a valid concert");
    Event::Catalog(event)
}

fn segment(events: &[Event]) -> Vec<u8> {
    let mut bytes = format::segment_header().to_vec();
    for (i, event) in events.iter().enumerate() {
        format::encode_record(&mut bytes, i as u64 + 1, event);
    }
    bytes
}

/// Checks and decodes every record (what recovery does before applying).
fn time_decode(bytes: &[u8], count: usize) -> Duration {
    let started = Instant::now();
    let mut offset = format::SEGMENT_HEADER_LEN;
    let mut decoded = 0;
    while offset < bytes.len() {
        let Record::Valid { len, .. } = format::decode_record(&bytes[offset..]) else {
            panic!("a whole log");
        };
        offset += len;
        decoded += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(decoded, count);
    elapsed
}

/// Applies decoded events to an empty image (what recovery does after decoding).
fn time_apply(events: &[Event], rules: &Rules) -> Duration {
    let mut image = Image::empty(rules);
    let started = Instant::now();
    for (i, event) in events.iter().enumerate() {
        image.apply(i as u64 + 1, event, rules);
    }
    started.elapsed()
}

/// What bincode pays for one timestamp: as `chrono` serializes it (an RFC 3339
/// string) and as the same instant in nanoseconds (an integer).
fn timestamp_costs() {
    let config = bincode::config::standard();
    let at = start();
    let stamps: Vec<Timestamp> = (0..REPLAY_EVENTS as i64)
        .map(|i| at + chrono::Duration::nanoseconds(i * 1_234_567))
        .collect();
    let nanos: Vec<i64> = stamps
        .iter()
        .map(|t| t.timestamp_nanos_opt().expect("in range"))
        .collect();
    let as_string = bincode::serde::encode_to_vec(&stamps, config).expect("encodes");
    let as_integer = bincode::serde::encode_to_vec(&nanos, config).expect("encodes");
    let per_stamp = |d: Duration| d.as_secs_f64() * 1e9 / stamps.len() as f64;
    let string = median_time(|| {
        let started = Instant::now();
        let (decoded, _): (Vec<Timestamp>, _) =
            bincode::serde::decode_from_slice(&as_string, config).expect("decodes");
        let elapsed = started.elapsed();
        assert_eq!(decoded.len(), stamps.len());
        elapsed
    });
    let integer = median_time(|| {
        let started = Instant::now();
        let (decoded, _): (Vec<i64>, _) =
            bincode::serde::decode_from_slice(&as_integer, config).expect("decodes");
        let elapsed = started.elapsed();
        assert_eq!(decoded.len(), nanos.len());
        elapsed
    });
    println!(
        "    one timestamp: RFC 3339 string {} bytes, {:.0} ns to decode; as i64 nanoseconds {:.1} bytes, {:.0} ns",
        as_string.len() / stamps.len(),
        per_stamp(string),
        as_integer.len() as f64 / nanos.len() as f64,
        per_stamp(integer),
    );
}

// ---------------------------------------------------------------------------------
// (c) Snapshots.

fn bench_snapshot() {
    let mut rules = Config::default().rules();
    rules.catalog.seats_per_date_max = VENUE_SEATS;
    println!("\n(c) snapshot of a date of {VENUE_SEATS} seats");
    println!(
        "{:<40}{:>8}{:>11}{:>10}{:>10}{:>12}",
        "state", "MB", "encode ms", "write ms", "load ms", "recover ms"
    );
    let states = [
        ("10k users hold 4 seats each, half paid", 10_000, 2),
        ("sold out: 250k users paid 4 seats each", 250_000, 1),
    ];
    for (name, users, paid_every) in states {
        let image = venue_image(&rules, users, paid_every);
        let dir = data_dir();
        let mut len = 0;
        let encode = median_time(|| {
            let started = Instant::now();
            let bytes = format::encode_snapshot(image.seq, &image);
            let elapsed = started.elapsed();
            len = bytes.len();
            elapsed
        });
        let write = median_time(|| {
            let started = Instant::now();
            snapshot::write(dir.path(), &image).expect("written");
            started.elapsed()
        });
        let path = dir.path().join(snapshot::file_name(image.seq));
        let load = median_time(|| {
            let started = Instant::now();
            let bytes = std::fs::read(&path).expect("read");
            let (seq, loaded) = format::decode_snapshot::<Image>(&bytes).expect("decodes");
            let elapsed = started.elapsed();
            assert_eq!((seq, loaded.seq), (image.seq, image.seq));
            elapsed
        });
        let recover = median_time(|| {
            let started = Instant::now();
            let recovered = recovery::recover(dir.path(), &rules).expect("recovers");
            let elapsed = started.elapsed();
            assert_eq!(recovered.image.seq, image.seq);
            elapsed
        });
        println!(
            "{:<40}{:>8.1}{:>11.0}{:>10.0}{:>10.0}{:>12.0}",
            name,
            len as f64 / 1e6,
            ms(encode),
            ms(write),
            ms(load),
            ms(recover),
        );
    }
}

/// A 1M-seat date where `users` users each joined, were admitted, charged, held 4
/// seats and (every `paid_every`-th) paid, applied as the log would have it.
fn venue_image(rules: &Rules, users: u64, paid_every: u64) -> Image {
    let at = start();
    let mut image = Image::empty(rules);
    let mut seq = 0;
    let mut apply = |image: &mut Image, event: Event| {
        seq += 1;
        image.apply(seq, &event, rules);
    };
    apply(&mut image, concert_event(VENUE_SEATS, at));
    let queue = |event| Event::Queue(ConcertId(1), event);
    for u in 1..=users {
        let user = UserId(u);
        let ticket = Ticket(Uuid::from_u128(u128::from(u)));
        let idle_until = at + chrono::Duration::seconds(120);
        apply(
            &mut image,
            queue(QueueEvent::Joined {
                user,
                ticket,
                at,
                idle_until,
            }),
        );
        let until = at + chrono::Duration::seconds(600);
        apply(&mut image, queue(QueueEvent::Admitted { user, at, until }));
        apply(&mut image, charge_won(user, 4 * PRICE, u128::from(u), at));
        let first = u32::try_from((u - 1) * 4 + 1).expect("seats fit a u32");
        let seats = (first..first + 4).map(SeatId).collect();
        let held = reservation(u, u128::from(u), seats, at);
        let id = held.id;
        apply(
            &mut image,
            Event::Date(DateId(1), DateEvent::SeatsHeld(Arc::new(held))),
        );
        if u % paid_every == 0 {
            apply(&mut image, Event::Paid(payment(user, id, at)));
        }
    }
    image
}

fn charge_won(user: UserId, amount: u64, id: u128, at: Timestamp) -> Event {
    Event::Wallet(WalletEvent::Charged(Charge {
        id: ChargeId(Uuid::from_u128(id)),
        user,
        amount: Won(amount),
        balance_after: Won(amount),
        at,
        idempotency_key: None,
    }))
}

fn payment(user: UserId, reservation_id: ReservationId, at: Timestamp) -> Payment {
    Payment {
        id: PaymentId(reservation_id.0),
        reservation_id,
        user,
        concert_id: ConcertId(1),
        date_id: DateId(1),
        amount: Won(4 * PRICE),
        balance_after: Won::ZERO,
        paid_at: at,
        idempotency_key: None,
    }
}

// ---------------------------------------------------------------------------------
// (d) What durability costs a hold.

/// Where the engine's batches go.
#[derive(Debug, Clone, Copy)]
enum Journaling {
    Memory,
    Log(FsyncPolicy),
}

/// What one hold run measured.
struct HoldRun {
    holds_per_sec: f64,
    /// CPU time of the whole process per hold, in microseconds (less noisy than the
    /// rate on a shared machine).
    cpu_micros_per_hold: f64,
    latency: Histogram<u64>,
}

async fn bench_hold() {
    println!(
        "\n(d) Engine::hold of one seat: {HOLD_CALLERS} concurrent callers, {} holds",
        HOLD_USERS * 4
    );
    println!(
        "{:<15}{:>10}{:>9}{:>9}{:>9}{:>12}{:>13}",
        "journal", "holds/s", "p50 ms", "p99 ms", "max ms", "× bare hop", "CPU µs/hold"
    );
    let mut rates = Vec::new();
    for mode in [
        Journaling::Memory,
        Journaling::Log(FsyncPolicy::Never),
        Journaling::Log(FsyncPolicy::Always),
    ] {
        let mut runs = Vec::new();
        let mut hops = Vec::new();
        for _ in 0..REPETITIONS {
            hops.push(bare_hops_per_sec().await);
            runs.push(hold_run(mode).await);
        }
        let run = median(runs, |r| r.holds_per_sec);
        let hop = median(hops, |h| *h);
        let name = match mode {
            Journaling::Memory => "in memory".to_owned(),
            Journaling::Log(f) => format!("fsync {}", format!("{f:?}").to_lowercase()),
        };
        let quantile = |q| run.latency.value_at_quantile(q) as f64 / 1e3;
        println!(
            "{:<15}{:>10.0}{:>9.2}{:>9.2}{:>9.2}{:>12.2}{:>13.2}",
            name,
            run.holds_per_sec,
            quantile(0.5),
            quantile(0.99),
            run.latency.max() as f64 / 1e3,
            run.holds_per_sec / hop,
            run.cpu_micros_per_hold,
        );
        rates.push((run.holds_per_sec, quantile(0.5), hop));
    }
    let (never, always) = (rates[1], rates[2]);
    println!(
        "    bare actor hop ({HOLD_CALLERS} callers, reply on a oneshot), median of the runs beside each journal: {}",
        rates
            .iter()
            .map(|r| format!("{:.0}", r.2))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "    fsync always / fsync never: {:.2}× the holds/s, {:.1}× the p50 latency",
        always.0 / never.0,
        always.1 / never.1
    );
}

/// The pattern every actor follows, bare: one task takes messages from a bounded
/// mailbox (the engine's size, in batches as the actors take them) and replies to each
/// on a oneshot; [`HOLD_CALLERS`] tasks call it at once. Answers calls per second.
async fn bare_hops_per_sec() -> f64 {
    let (to, mut inbox) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>(
        boxoffice::config::MAILBOX_LEN,
    );
    let actor = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(boxoffice::engine::mailbox::BATCH_LEN_MAX);
        let mut served = 0;
        while inbox
            .recv_many(&mut batch, boxoffice::engine::mailbox::BATCH_LEN_MAX)
            .await
            > 0
        {
            for reply in batch.drain(..) {
                served += 1;
                let _ = reply.send(served);
            }
        }
    });
    let started = Instant::now();
    let callers: Vec<_> = (0..HOLD_CALLERS)
        .map(|_| {
            let to = to.clone();
            tokio::spawn(async move {
                for _ in 0..HOPS_PER_CALLER {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    to.send(reply).await.expect("the actor runs");
                    answer.await.expect("the actor answers");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller runs to the end");
    }
    let elapsed = started.elapsed();
    drop(to);
    actor.await.expect("the actor stops");
    (HOLD_CALLERS * HOPS_PER_CALLER) as f64 / elapsed.as_secs_f64()
}

async fn hold_run(mode: Journaling) -> HoldRun {
    let config = Config {
        queue_active_max: HOLD_USERS as u32,
        max_seats_per_date: 10_000_000,
        ..Config::default()
    };
    let rules = config.rules();
    let dir = data_dir();
    let engine = start_engine(mode, rules, dir.path());
    let spec = flash_sale_spec(HOLD_USERS * 4);
    let concert = engine.create_concert(spec).await.expect("created");
    let date = concert.dates[0].view.date.id;
    let concert_id = concert.concert.id;
    for joined in on_callers(|c| join_users(engine.clone(), concert_id, c, HOLD_USERS)).await {
        joined.expect("admitted");
    }
    let (started, cpu_before) = (Instant::now(), cpu_time());
    let held = on_callers(|c| hold_seats(engine.clone(), date, c, HOLD_USERS)).await;
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu_before);
    let mut latency = new_histogram();
    for micros in held.into_iter().flat_map(|held| held.expect("held")) {
        latency.saturating_record(micros);
    }
    engine.journal().stop().await;
    HoldRun {
        holds_per_sec: latency.len() as f64 / elapsed.as_secs_f64(),
        cpu_micros_per_hold: cpu.as_secs_f64() * 1e6 / latency.len() as f64,
        latency,
    }
}

/// An engine journaling as `mode`, in `dir` when durable.
fn start_engine(mode: Journaling, rules: Rules, dir: &Path) -> Arc<Engine> {
    let clock = Arc::new(SystemClock);
    match mode {
        Journaling::Memory => Engine::in_memory(rules, clock),
        Journaling::Log(fsync) => {
            let opened = store::open(&options(dir, fsync), &rules, Arc::default(), Vec::new())
                .expect("opens");
            let journal = Journal::durable(opened.log, opened.snapshots);
            Engine::start(rules, clock, journal, opened.image, Arc::default())
        }
    }
}

/// One concert of one date of `seats` seats (whole rows of 1000) at one price.
fn flash_sale_spec(seats: u64) -> ConcertSpec {
    ConcertSpec {
        title: "Flash sale".into(),
        venue: "Olympic Hall".into(),
        dates: vec![DateSpec {
            starts_at: start() + chrono::Duration::days(30),
            sections: vec![SectionSpec {
                name: "A".into(),
                rows: seats.div_ceil(1000) as u32,
                seats_per_row: 1000,
                price: PRICE as i64,
            }],
        }],
    }
}

/// Runs `work` for every caller at once; their results (each caller's latencies in
/// microseconds, if it times its calls: a plain list, recorded into one histogram
/// afterwards, so that timing costs the callers a push, not a histogram of their own
/// touched at random).
async fn on_callers<F>(work: impl Fn(u64) -> F) -> Vec<Result<Vec<u64>, String>>
where
    F: std::future::Future<Output = Result<Vec<u64>, String>> + Send + 'static,
{
    let tasks: Vec<_> = (0..HOLD_CALLERS).map(|c| tokio::spawn(work(c))).collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|done| done.expect("a caller runs to the end"))
        .collect()
}

/// The users this caller acts for, of `users`.
fn users_of(caller: u64, users: u64) -> impl Iterator<Item = UserId> {
    (caller..users)
        .step_by(HOLD_CALLERS as usize)
        .map(|u| UserId(u + 1))
}

async fn join_users(
    engine: Arc<Engine>,
    concert: ConcertId,
    caller: u64,
    users: u64,
) -> Result<Vec<u64>, String> {
    for user in users_of(caller, users) {
        let (entry, _) = engine
            .join_queue(concert, user)
            .await
            .map_err(|e| e.to_string())?;
        if entry.status != EntryStatus::Active {
            return Err(format!("{user} is {:?}", entry.status));
        }
    }
    Ok(Vec::new())
}

/// Each of the caller's users holds four seats of their own in one call.
async fn hold_four(
    engine: Arc<Engine>,
    date: DateId,
    caller: u64,
    users: u64,
) -> Result<Vec<u64>, String> {
    for user in users_of(caller, users) {
        let first = (user.0 as u32 - 1) * 4 + 1;
        let seats = (first..first + 4).map(SeatId).collect();
        engine
            .hold(user, date, seats)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Vec::new())
}

/// Each of the caller's users holds four seats of their own, one call each.
async fn hold_seats(
    engine: Arc<Engine>,
    date: DateId,
    caller: u64,
    users: u64,
) -> Result<Vec<u64>, String> {
    let mut latency = Vec::with_capacity(users_of(caller, users).count() * 4);
    for user in users_of(caller, users) {
        for k in 0..4u32 {
            let seat = SeatId((user.0 as u32 - 1) * 4 + k + 1);
            let sent = Instant::now();
            engine
                .hold(user, date, vec![seat])
                .await
                .map_err(|e| e.to_string())?;
            latency.push(sent.elapsed().as_micros() as u64);
        }
    }
    Ok(latency)
}

// ---------------------------------------------------------------------------------
// (e) Memory at rest.

/// What a date costs in memory while nothing happens: the growth of this process's
/// resident set and of its heap in use (durable engine with its snapshot replica,
/// `--fsync never`) when a date of [`VENUE_SEATS`] seats is created (per free seat),
/// and when [`RESTING_USERS`] admitted users then hold 4 seats each (per live
/// reservation; the users joined the room before the first reading). The heap in use
/// is the exact figure; the resident set can read less, when memory freed before a
/// reading is reused.
async fn bench_memory() {
    println!(
        "\n(e) memory at rest: growth of the resident set [of the heap in use], durable engine, a date of {VENUE_SEATS} seats"
    );
    let config = Config {
        queue_active_max: RESTING_USERS as u32,
        max_seats_per_date: VENUE_SEATS,
        ..Config::default()
    };
    let rules = config.rules();
    let dir = data_dir();
    let engine = start_engine(Journaling::Log(FsyncPolicy::Never), rules, dir.path());
    // A first, small concert pays what any first concert costs once (actor tasks,
    // threads and allocator heaps warming up, the log's and the replica's first
    // buffers), so that the reading below is what the big date itself costs.
    engine
        .create_concert(flash_sale_spec(1000))
        .await
        .expect("created");
    let before = settled_rss().await;
    let concert = engine
        .create_concert(flash_sale_spec(u64::from(VENUE_SEATS)))
        .await
        .expect("created");
    let (concert_id, date) = (concert.concert.id, concert.dates[0].view.date.id);
    drop(concert);
    let created = settled_rss().await;
    for joined in on_callers(|c| join_users(engine.clone(), concert_id, c, RESTING_USERS)).await {
        joined.expect("admitted");
    }
    let joined = settled_rss().await;
    for held in on_callers(|c| hold_four(engine.clone(), date, c, RESTING_USERS)).await {
        held.expect("held");
    }
    let held = settled_rss().await;
    let grown =
        |from: (u64, i64), to: (u64, i64)| (to.0 as f64 - from.0 as f64, (to.1 - from.1) as f64);
    let (rss, heap) = grown(before, created);
    println!(
        "    per free seat: {:.1} bytes [{:.1}] ({:.1} MB for the date)",
        rss / f64::from(VENUE_SEATS),
        heap / f64::from(VENUE_SEATS),
        rss / 1e6
    );
    let (rss, heap) = grown(joined, held);
    let users = RESTING_USERS as f64;
    println!(
        "    per live 4-seat reservation: {:.0} bytes [{:.0}] ({RESTING_USERS} reservations, {:.1} MB)",
        rss / users,
        heap / users,
        rss / 1e6
    );
    engine.journal().stop().await;
}

/// This process's resident set and heap in use in bytes, once the replica has had time
/// to apply what was just committed.
async fn settled_rss() -> (u64, i64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heap = IN_USE.load(std::sync::atomic::Ordering::Relaxed);
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc is there");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS is listed");
    (kib * 1024, heap)
}
