//! What cluster mode costs and how fast it fails over. `cargo bench --bench cluster
//! [-- --users N --kills K]`; about two minutes on the 2-core machine. Needs
//! `nats-server` (Debian package); it starts three of them, clustered on loopback
//! ports, on the same machine as everything else.
//!
//! 1. **The sale.** The same durable flash sale (every user holds a seat of their own,
//!    then pays; 64 connections) against three servers in this process, in one run:
//!    the file log (the default), `--log nats` with replicas 1, and `--log nats` with
//!    replicas 3 (a quorum of two servers stores each batch before its replies go).
//!    Printed as ratios to the file log. During the replicas-3 sale a follower node
//!    follows the same log: its lag (the leader's last applied event minus its own,
//!    both read from `/health/ready` at once) is sampled every 10 ms.
//! 2. **Failover.** Two nodes (the real binary, separate processes) share the log;
//!    the leader is SIGKILLed `--kills` times; each time, how long until the other
//!    node acknowledges a write (median and max), then the killed node starts again.
//!
//! What to expect: a replicated append is a network round trip to JetStream and, with
//! replicas 3, a second hop to a replica and its fsync, instead of one local fdatasync;
//! group commit shares that among the batch, so the sale should keep a good part of
//! the file log's rate; failover is bounded below by the lease (3 s) plus a lease
//! look (0.25 s) plus the catch-up and fence (milliseconds).

#[path = "common/load.rs"]
mod load;
// Shared with the tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/common/nats.rs"]
mod nats;
#[path = "common/sale.rs"]
mod sale;

use boxoffice::app;
use boxoffice::config::Config;
use boxoffice::engine::clock::SystemClock;
use clap::Parser;
use nats::{NatsCluster, Node, client as http, ready};
use sale::{Target, flash_sale, setup};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "cluster",
    bin_name = "cargo bench --bench cluster --",
    about = "what the replicated log costs a sale, and failover times"
)]
struct Args {
    /// Users of each sale (each holds a seat of their own, then pays).
    #[arg(long, default_value_t = 4000)]
    users: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Leader kills to time.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const ADMIN_KEY: &str = "cluster-admin";
const JWT_SECRET: &str = "cluster-secret";
const TICKET_SECRET: &str = "cluster-tickets";

/// Starts a server in this process (on its own runtime); answers its base URL.
fn start_server(users: u64, log: Option<(String, &str, u8)>) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let (log, log_stream, log_replicas) = match log {
        Some((urls, stream, replicas)) => (Some(urls), stream.to_owned(), replicas),
        None => (None, "BOXOFFICE_LOG".to_owned(), 1),
    };
    let config = Config {
        data_dir: dir.path().to_owned(),
        admin_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        ticket_secret: Some(TICKET_SECRET.into()),
        queue_active_max: users as u32,
        listen: address,
        advertise_url: Some(format!("http://{address}")),
        log,
        log_stream,
        log_replicas,
        ..Config::default()
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = app::build(&config, Arc::new(SystemClock)).await.unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            app::serve(listener, app.router, std::future::pending())
                .await
                .unwrap();
        });
    });
    (format!("http://{address}"), dir)
}

/// Waits until the node at `base` answers as `role`.
async fn wait_role(http: &reqwest::Client, base: &str, role: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready(http, base).await.is_none_or(|r| r["role"] != role) {
        assert!(Instant::now() < deadline, "{base} never became {role}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn target(base: String, http: &reqwest::Client) -> Arc<Target> {
    Arc::new(Target {
        base,
        http: http.clone(),
        admin_key: ADMIN_KEY.into(),
        jwt_secret: JWT_SECRET.into(),
    })
}

/// One flash sale on a server that takes writes: holds/s and payments/s.
async fn sale(
    args: &Args,
    target: &Arc<Target>,
    names: (&'static str, &'static str),
) -> (f64, f64) {
    let tokens: Arc<Vec<String>> = Arc::new((0..=args.users).map(|u| target.token(u)).collect());
    let (_, _, date) = setup(target, args.users, args.connections).await;
    let (hold, pay, paid) = flash_sale(target, &tokens, date, args.connections, names).await;
    hold.print(None);
    pay.print(None);
    assert!(paid, "every hold of {} was paid", target.base);
    (hold.rps(), pay.rps())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = Args::parse();
    let Some(binary) = nats::nats_or_skip("cluster bench") else {
        return;
    };
    let cluster = NatsCluster::start(binary);
    let urls = cluster.urls();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = http();
        let (file_base, _file_dir) = start_server(args.users, None);
        let (r1_base, _r1_dir) = start_server(args.users, Some((urls.clone(), "BENCH_R1", 1)));
        let (r3_base, _r3_dir) = start_server(args.users, Some((urls.clone(), "BENCH_R3", 3)));
        wait_role(&http, &r1_base, "leader").await;
        wait_role(&http, &r3_base, "leader").await;
        let (follower_base, _follower_dir) =
            start_server(args.users, Some((urls.clone(), "BENCH_R3", 3)));
        wait_role(&http, &follower_base, "follower").await;
        println!(
            "cluster: {} users, {} connections, durable; three nats-servers on this machine",
            args.users, args.connections
        );
        let (file_hold, file_pay) = sale(&args, &target(file_base, &http), ("file-hold", "file-pay")).await;
        let (r1_hold, r1_pay) = sale(&args, &target(r1_base, &http), ("r1-hold", "r1-pay")).await;
        let lag = follow_lag(&http, r3_base.clone(), follower_base.clone());
        let (r3_hold, r3_pay) = sale(&args, &target(r3_base, &http), ("r3-hold", "r3-pay")).await;
        let lags = lag.stop().await;
        println!(
            "--log nats, replicas 1: holds {:.2}x, payments {:.2}x the file log",
            r1_hold / file_hold,
            r1_pay / file_pay
        );
        println!(
            "--log nats, replicas 3: holds {:.2}x, payments {:.2}x the file log",
            r3_hold / file_hold,
            r3_pay / file_pay
        );
        let mut sorted = lags.clone();
        sorted.sort_unstable();
        if let Some(&max) = sorted.last() {
            println!(
                "follower lag during the replicas-3 sale ({} samples): median {} events, p99 {}, max {max}",
                sorted.len(),
                sorted[sorted.len() / 2],
                sorted[sorted.len() * 99 / 100],
            );
        }
        failovers(&args, &urls, &http).await;
    });
}

/// Samples a follower's lag behind the leader every 10 ms until stopped.
struct LagSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

fn follow_lag(http: &reqwest::Client, leader: String, follower: String) -> LagSampler {
    let stop = Arc::new(AtomicBool::new(false));
    let (http, done) = (http.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        while !done.load(Ordering::Acquire) {
            let (lead, follow) = tokio::join!(ready(&http, &leader), ready(&http, &follower));
            if let (Some(lead), Some(follow)) = (lead, follow) {
                let (lead, follow) = (lead["appliedSeq"].as_u64(), follow["appliedSeq"].as_u64());
                if let (Some(lead), Some(follow)) = (lead, follow) {
                    samples.push(lead.saturating_sub(follow));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples
    });
    LagSampler { stop, task }
}

impl LagSampler {
    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap()
    }
}

/// Kills the leader of two real nodes `--kills` times; prints how long writes paused.
async fn failovers(args: &Args, urls: &str, http: &reqwest::Client) {
    let secrets = [ADMIN_KEY, JWT_SECRET, TICKET_SECRET];
    let extra = ["--log-stream", "BENCH_FAILOVER", "--log-replicas", "3"];
    let mut nodes: Vec<Node> = (0..2)
        .map(|_| Node::on_log(urls, secrets, &extra))
        .collect();
    for node in &mut nodes {
        node.start();
    }
    let token =
        boxoffice::http::auth::token_for_secret(JWT_SECRET, boxoffice::domain::UserId(1), 3600);
    let mut took = Vec::new();
    for _ in 0..args.kills {
        let leader = loop {
            let mut found = None;
            for (i, node) in nodes.iter().enumerate() {
                if ready(http, &node.base())
                    .await
                    .is_some_and(|r| r["role"] == "leader")
                {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let other = nodes[1 - leader].base();
        wait_role(http, &other, "follower").await;
        let killed = Instant::now();
        nodes[leader].kill();
        loop {
            let answer = http
                .post(format!("{other}/api/v1/wallet/charges"))
                .bearer_auth(&token)
                .json(&json!({"amount": 1}))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        took.push(killed.elapsed().as_secs_f64());
        nodes[leader].start();
    }
    let max = took.iter().copied().fold(0.0, f64::max);
    println!(
        "failover over {} leader kills: median {:.2} s, max {max:.2} s (kill to the other node's first acknowledged write)",
        took.len(),
        median(took.clone()),
    );
}
