//! The seat map read path when every fan in a sale is watching.
//!
//! `cargo bench --bench seatmap [-- --connections 64 --duration-secs 5 --streams 10000
//! --changes 20]`
//!
//! It starts the real server in-process on port 0 (its own runtime and threads, a
//! temporary data directory, fsync on), creates a 100,000-seat date and a 10,000-seat
//! date, then:
//! - **GET**: `--connections` connections fetch the 100,000-seat map for
//!   `--duration-secs` each way: the compact map (`/seatmap`), the same gzipped, and
//!   the JSON seat list (`/seats`) it replaces; answers per second and p99;
//! - **fan-out**: `--streams` seat-map streams open on the 10,000-seat date (raw TCP,
//!   so the client costs little), then `--changes` holds are made one after another;
//!   for every stream and change, the time from sending the hold to the stream
//!   receiving the change; p50, p99 and the worst.
//!
//! Expected, on the 2-core machine with this client sharing the cores: the compact map
//! at ≥ 1,000 answers/s (it is rendered and gzipped once per change, so an answer is
//! the HTTP stack plus a 100 kB write; gzipped it is a few kB), far above the JSON
//! list (7.5 MB built per request); and a change reaching all 10,000 streams with p99
//! ≤ 1 s (one feed read per change for everybody, then one small write per stream).

use boxoffice::app;
use boxoffice::config::Config;
use boxoffice::engine::clock::SystemClock;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Parser)]
#[command(name = "seatmap", bin_name = "cargo bench --bench seatmap --")]
struct Args {
    /// Connections fetching the map.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds each GET phase runs.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Seat-map streams open at once.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Changes fanned out to them.
    #[arg(long, default_value_t = 20)]
    changes: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run only the stream client against this server (a child process, so
    /// that client and server each hold one end of every stream within their own
    /// file descriptor limit).
    #[arg(long, hide = true)]
    fan_out_client: Option<String>,
    /// Internal: the concert and date the stream client watches.
    #[arg(long, hide = true, num_args = 2)]
    watch: Vec<u64>,
}

const ADMIN_KEY: &str = "seatmap-admin";
const JWT_SECRET: &str = "seatmap-secret";

/// Lets this process hold every stream's two ends (client and server).
fn raise_fd_limit(wanted: u64) {
    let limit = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // Only a privileged process may raise the hard limit; otherwise keep what we have.
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0;
    if !raised {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) };
        current.rlim_cur = current.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &current) };
        println!(
            "file descriptors limited to {}: fewer streams may open",
            current.rlim_max
        );
    }
}

fn start_server() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        admin_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        queue_active_max: 1000,
        max_seats_per_reservation: 10,
        max_seats_per_user: 10_000,
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = app::build(&config, Arc::new(SystemClock)).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            app::serve(listener, app.router, std::future::pending())
                .await
                .unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), dir)
}

fn main() {
    let args = Args::parse();
    raise_fd_limit(args.streams as u64 + 4096);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(base) = args.fan_out_client.clone() {
        let http = reqwest::Client::new();
        let watched = (args.watch[0], args.watch[1]);
        runtime.block_on(fan_out(&args, &http, &base, watched));
        return;
    }
    let (base, _dir) = start_server();
    runtime.block_on(run(args, base));
}

async fn run(args: Args, base: String) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .unwrap();
    let big = create(&http, &base, 100, 1000).await;
    let small = create(&http, &base, 100, 100).await;
    println!(
        "boxoffice seatmap: {} connections, {} s per GET phase, {} streams, {} changes",
        args.connections, args.duration_secs, args.streams, args.changes
    );
    let map = format!("{base}/api/v1/concerts/{}/dates/{}/seatmap", big.0, big.1);
    let list = format!("{base}/api/v1/concerts/{}/dates/{}/seats", big.0, big.1);
    let mut rates = Vec::new();
    for (name, url, gzip) in [
        ("compact map", &map, false),
        ("compact map, gzip", &map, true),
        ("JSON seat list", &list, false),
        ("JSON seat list, gzip", &list, true),
    ] {
        let rate = get_phase(&args, &http, name, url, gzip).await;
        rates.push((name, rate));
    }
    println!(
        "compact map / JSON list: {:.0}x (gzip both: {:.0}x)",
        rates[0].1 / rates[2].1.max(0.001),
        rates[1].1 / rates[3].1.max(0.001)
    );
    // The stream client runs in a child process (see `fan_out_client`).
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--fan-out-client", &base, "--watch"])
        .args([small.0.to_string(), small.1.to_string()])
        .args(["--streams", &args.streams.to_string()])
        .args(["--changes", &args.changes.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Creates a concert with one date of `rows` × `seats_per_row` seats.
async fn create(http: &reqwest::Client, base: &str, rows: u32, seats_per_row: u32) -> (u64, u64) {
    let spec = json!({"title": "Bench", "venue": "Hall", "dates": [{"startsAt": "2030-01-01T19:00:00Z",
        "sections": [{"name": "R", "rows": rows, "seatsPerRow": seats_per_row, "price": 100}]}]});
    let concert: serde_json::Value = http
        .post(format!("{base}/api/v1/admin/concerts"))
        .bearer_auth(ADMIN_KEY)
        .json(&spec)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        concert["id"].as_u64().unwrap(),
        concert["dates"][0]["id"].as_u64().unwrap(),
    )
}

/// `--connections` loops GETting `url` for `--duration-secs`; answers per second.
async fn get_phase(args: &Args, http: &reqwest::Client, name: &str, url: &str, gzip: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (http, url, stop, bytes) =
                (http.clone(), url.to_owned(), stop.clone(), bytes.clone());
            tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let mut request = http.get(&url);
                    if gzip {
                        request = request.header("accept-encoding", "gzip");
                    }
                    let response = request.send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.bytes().await.unwrap();
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    latencies.record(sent.elapsed().as_micros() as u64).unwrap();
                }
                latencies
            })
        })
        .collect();
    // Meanwhile, how long does `/health` wait behind them?
    let health = {
        let (http, stop) = (http.clone(), stop.clone());
        let url = format!("{}/health", url.split("/api/").next().unwrap());
        tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                http.get(&url).send().await.unwrap().bytes().await.unwrap();
                latencies.record(sent.elapsed().as_micros() as u64).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    stop.store(true, Ordering::Relaxed);
    let health = health.await.unwrap();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for worker in workers {
        all.add(worker.await.unwrap()).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = all.len() as f64 / secs;
    println!(
        "GET {name:<22} {rate:>8.0} answers/s  p50 {:>7.1} ms  p99 {:>7.1} ms  {:>8.1} kB/answer  (/health p99 {:.1} ms)",
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        bytes.load(Ordering::Relaxed) as f64 / all.len().max(1) as f64 / 1000.0,
        health.value_at_quantile(0.99) as f64 / 1000.0
    );
    rate
}

/// Opens `--streams` streams on `date`, makes `--changes` holds one after another, and
/// measures how long each change took to reach each stream.
async fn fan_out(args: &Args, http: &reqwest::Client, base: &str, (concert, date): (u64, u64)) {
    let addr = base.trim_start_matches("http://").to_owned();
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seats/stream");
    // The send time of change k, in microseconds since `epoch`.
    let epoch = Instant::now();
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.changes).map(|_| AtomicU64::new(0)).collect());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.streams);
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut streams = Vec::new();
    let opening = Instant::now();
    for _ in 0..args.streams {
        let (addr, path, ready, gate, sent) = (
            addr.clone(),
            path.clone(),
            ready_tx.clone(),
            gate.clone(),
            sent.clone(),
        );
        let changes = args.changes;
        streams.push(tokio::spawn(async move {
            // At most 256 connect at once; a stream lets the next in once it has its map.
            let mut permit = Some(gate.acquire_owned().await.unwrap());
            let mut socket = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
            socket.write_all(request.as_bytes()).await.ok()?;
            let mut buffer = vec![0u8; 64 * 1024];
            let mut text = String::new();
            let mut seen = 0u64;
            let mut ready_sent = false;
            let mut delays = Vec::with_capacity(changes as usize);
            while seen < changes {
                let n = socket.read(&mut buffer).await.ok()?;
                if n == 0 {
                    return None;
                }
                let now = epoch.elapsed().as_micros() as u64;
                text.push_str(&String::from_utf8_lossy(&buffer[..n]));
                if !ready_sent && text.contains("event: map") {
                    ready_sent = true;
                    permit.take();
                    let _ = ready.send(()).await;
                }
                // Each change holds one seat, k + 1 for change k: `"seats":[[k+1,"H"]]`.
                while let Some(at) = text.find("\"seats\":[[") {
                    let rest = &text[at + "\"seats\":[[".len()..];
                    let Some(end) = rest.find(',') else { break };
                    let seat: usize = rest[..end].parse().ok()?;
                    let k = seat - 1;
                    delays.push(now.saturating_sub(sent[k].load(Ordering::Acquire)));
                    seen += 1;
                    let consumed = at + "\"seats\":[[".len() + end;
                    text.drain(..consumed);
                }
                if !text.contains("\"seats\":[[")
                    && let Some(at) = text.rfind('\n')
                {
                    text.drain(..at);
                }
            }
            Some(delays)
        }));
    }
    drop(ready_tx);
    let mut open = 0;
    while open < args.streams {
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => break,
        }
    }
    println!(
        "{open} streams open after {:.1} s (each has had the whole 10,000-seat map)",
        opening.elapsed().as_secs_f64()
    );
    let token =
        boxoffice::http::auth::token_for_secret(JWT_SECRET, boxoffice::domain::UserId(1), 3600);
    http.post(format!("{base}/api/v1/concerts/{concert}/queue"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    for k in 0..args.changes {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sent[k as usize].store(epoch.elapsed().as_micros() as u64, Ordering::Release);
        let answer = http
            .post(format!("{base}/api/v1/reservations"))
            .bearer_auth(&token)
            .json(&json!({"dateId": date, "seatIds": [k + 1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{:?}", answer.text().await);
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    let mut complete = 0;
    for stream in streams {
        if let Ok(Some(delays)) = tokio::time::timeout(Duration::from_secs(30), stream)
            .await
            .unwrap_or(Ok(None))
        {
            complete += 1;
            for delay in delays {
                all.record(delay).unwrap();
            }
        }
    }
    println!(
        "fan-out to {complete} streams x {} changes (hold sent -> change read): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        args.changes,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
}
