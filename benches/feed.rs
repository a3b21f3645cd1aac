//! What following the log costs the sale: the durable flash sale on a plain server,
//! then on a second in-process server with the outbox publishing to a real
//! `nats-server -js`, one live Server-Sent Events consumer of the admin feed and one
//! stalled consumer (connected, never reading), in one run.
//!
//! `cargo bench --bench feed [-- --users 2000 --connections 64]`
//!
//! Prints the flash sale's requests per second with the readers on as a ratio to both
//! off (aim: ≥ 0.9×: the log-writer thread only appends to the in-memory tail; every
//! reader reads at its own pace), and the events per second delivered to the SSE
//! consumer and into JetStream (from the start of the sale until each has every
//! event). Without `nats-server` on the machine it says so and measures the SSE
//! consumer alone.

#[path = "common/load.rs"]
mod load;
#[path = "common/sale.rs"]
mod sale;

use boxoffice::app;
use boxoffice::config::Config;
use boxoffice::engine::clock::SystemClock;
use clap::Parser;
use sale::{Target, flash_sale, setup};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "feed",
    bin_name = "cargo bench --bench feed --",
    about = "what following the log costs the sale"
)]
struct Args {
    /// Users of each sale (each holds a seat of their own, then pays).
    #[arg(long, default_value_t = 2000)]
    users: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measure the SSE consumers alone, without the outbox.
    #[arg(long)]
    without_outbox: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const ADMIN_KEY: &str = "feed-admin";
const JWT_SECRET: &str = "feed-secret";

/// A `nats-server -js` on a loopback port with a temporary store; killed when dropped.
struct Nats {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nats() -> Option<Nats> {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let store = tempfile::tempdir().ok()?;
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Nats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    })
}

/// CPU seconds a process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Starts the real server (durable) on its own runtime; answers its base URL.
fn start_server(users: u64, nats: Option<String>) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        admin_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        queue_active_max: users as u32,
        events_nats_url: nats,
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
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

/// The last cursor of the server's feed.
async fn feed_end(target: &Target) -> Option<String> {
    let mut after: Option<String> = None;
    loop {
        let query = after
            .as_ref()
            .map_or(String::new(), |a| format!("&after={a}"));
        let page: Value = target
            .http
            .get(format!(
                "{}/api/v1/admin/events?limit=1000{query}",
                target.base
            ))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let next = page["next"].as_str().map(str::to_owned);
        if page["events"].as_array().is_none_or(|e| e.is_empty()) {
            return next;
        }
        after = next;
    }
}

/// A live consumer of the admin event stream: counts events, remembers the last id.
fn live_consumer(target: &Target, count: Arc<AtomicU64>, last: Arc<parking_lot::Mutex<String>>) {
    let request = target
        .http
        .get(format!("{}/api/v1/admin/events/stream", target.base))
        .bearer_auth(ADMIN_KEY);
    tokio::spawn(async move {
        let Ok(mut response) = request.send().await else {
            return;
        };
        let mut pending = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let message: String = pending.drain(..end + 2).collect();
                if let Some(id) = message.lines().find_map(|l| l.strip_prefix("id: ")) {
                    *last.lock() = id.to_owned();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

/// Published events, from `/metrics`.
async fn outbox_published(target: &Target) -> u64 {
    let Ok(response) = target
        .http
        .get(format!("{}/metrics", target.base))
        .send()
        .await
    else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("boxoffice_outbox_published_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    let nats = if args.without_outbox {
        None
    } else {
        start_nats()
    };
    if nats.is_none() && !args.without_outbox {
        println!("nats-server is not installed: the outbox is off (apt-get install nats-server)");
    }
    let (plain_base, _plain_dir) = start_server(args.users, None);
    let (fed_base, _fed_dir) = start_server(args.users, nats.as_ref().map(|n| n.url.clone()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats_pid = nats.as_ref().map(|n| n.child.id());
    let failed = runtime.block_on(run(&args, plain_base, fed_base, nats_pid));
    drop(nats);
    if failed {
        std::process::exit(1);
    }
}

async fn run(args: &Args, plain_base: String, fed_base: String, nats: Option<u32>) -> bool {
    let outbox = nats.is_some();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .unwrap();
    let target = |base: String| {
        Arc::new(Target {
            base,
            http: http.clone(),
            admin_key: ADMIN_KEY.into(),
            jwt_secret: JWT_SECRET.into(),
        })
    };
    let (plain, fed) = (target(plain_base), target(fed_base));
    let tokens: Arc<Vec<String>> = Arc::new((0..=args.users).map(|u| plain.token(u)).collect());
    let (_, _, plain_date) = setup(&plain, args.users, args.connections).await;
    let (_, _, fed_date) = setup(&fed, args.users, args.connections).await;
    println!(
        "feed cost: {} users, {} connections, durable; outbox {}",
        args.users,
        args.connections,
        if outbox { "on" } else { "off" }
    );
    let (hold_off, pay_off, paid_off) = flash_sale(
        &plain,
        &tokens,
        plain_date,
        args.connections,
        ("off-hold", "off-pay"),
    )
    .await;
    hold_off.print(None);
    pay_off.print(None);
    // The readers: one live consumer, one that connects and never reads.
    let (delivered, last) = (Arc::new(AtomicU64::new(0)), Arc::default());
    live_consumer(&fed, delivered.clone(), Arc::clone(&last));
    let stalled = fed
        .http
        .get(format!("{}/api/v1/admin/events/stream", fed.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("the stalled consumer connects");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before_sse, before_nats) = (
        delivered.load(Ordering::Relaxed),
        outbox_published(&fed).await,
    );
    let nats_cpu_before = nats.and_then(cpu_seconds);
    let started = Instant::now();
    let (hold_on, pay_on, paid_on) = flash_sale(
        &fed,
        &tokens,
        fed_date,
        args.connections,
        ("on-hold", "on-pay"),
    )
    .await;
    let sale = started.elapsed();
    let nats_cpu = nats
        .and_then(cpu_seconds)
        .zip(nats_cpu_before)
        .map(|(after, before)| after - before);
    hold_on.print(Some(("readers off", &hold_off)));
    pay_on.print(Some(("readers off", &pay_off)));
    let end = feed_end(&fed).await.unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sse_done = None;
    let mut nats_done = None;
    let published_all = |n: u64| n.saturating_sub(before_nats);
    while (sse_done.is_none() || (outbox && nats_done.is_none())) && Instant::now() < deadline {
        if sse_done.is_none() && *last.lock() == end {
            sse_done = Some(started.elapsed());
        }
        if outbox && nats_done.is_none() {
            let lag: Value = fed
                .http
                .get(format!("{}/health", fed.base))
                .send()
                .await
                .ok()
                .map(|r| r.json())
                .expect("health answers")
                .await
                .unwrap_or_default();
            if lag["outbox"]["lagRecords"] == 0 {
                nats_done = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = delivered.load(Ordering::Relaxed) - before_sse;
    println!(
        "flash sale with the outbox and a live and a stalled SSE consumer: holds {:.2}x, payments {:.2}x the same sale with neither ({:.1} s)",
        hold_on.rps() / hold_off.rps(),
        pay_on.rps() / pay_off.rps(),
        sale.as_secs_f64()
    );
    match sse_done {
        Some(at) => println!(
            "SSE consumer: {events} events, all delivered {:.2} s after the sale started: {:.0} events/s",
            at.as_secs_f64(),
            events as f64 / at.as_secs_f64()
        ),
        None => println!("SSE consumer: {events} events, not all delivered within a minute"),
    }
    if outbox {
        let published = published_all(outbox_published(&fed).await);
        match nats_done {
            Some(at) => println!(
                "JetStream: {published} events, all stored {:.2} s after the sale started: {:.0} events/s",
                at.as_secs_f64(),
                published as f64 / at.as_secs_f64()
            ),
            None => println!("JetStream: {published} events, not caught up within a minute"),
        }
        if let Some(cpu) = nats_cpu {
            println!(
                "nats-server itself used {cpu:.2} CPU-seconds during the {:.1} s sale ({:.0}% of one core), on the same cores",
                sale.as_secs_f64(),
                100.0 * cpu / sale.as_secs_f64()
            );
        }
    }
    drop(stalled);
    !(paid_off && paid_on && sse_done.is_some() && (!outbox || nats_done.is_some()))
}
