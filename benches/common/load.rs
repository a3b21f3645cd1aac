//! The load generator the benches share (`hammer` and `strategies` include this file
//! with `#[path]`): C tasks on one `reqwest` client, each sending one request at a
//! time until a [`Stop`] says enough, every latency recorded in an HDR histogram and
//! every answer counted by status (0 = the request never got an answer).
//!
//! Every timed request goes through [`post_raw`], so every target costs the client
//! the same and differences in the figures are the server's.

use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The largest latency the histograms record, in microseconds (a minute).
const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// What one timed phase measured.
pub struct Phase {
    /// The phase's name, as printed.
    pub name: &'static str,
    /// Requests answered (or failed) in all.
    pub requests: u64,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
    /// Latency of every request, in microseconds.
    pub latency: Histogram<u64>,
    /// How many answers had each status (0: no answer, a transport error).
    pub statuses: BTreeMap<u16, u64>,
}

impl Phase {
    /// Requests per second over the whole phase.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q`, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// How many answers had `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Prints one line; with a yardstick `(name, phase)`, also this phase's requests
    /// per second as a multiple of the yardstick's.
    pub fn print(&self, yardstick: Option<(&str, &Phase)>) {
        let ratio = yardstick.map_or(String::new(), |(name, y)| {
            format!("  ({:.2}x {name})", self.rps() / y.rps())
        });
        println!(
            "{:<12} {:>9.0} req/s{ratio}  p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  statuses {:?}",
            self.name,
            self.rps(),
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            self.latency_ms(0.999),
            self.statuses
        );
    }
}

/// POSTs JSON; answers the status and the body as it came. The timed phases use this,
/// so that every phase, the yardstick's included, costs the client the same.
pub async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: &Value,
) -> (u16, Vec<u8>) {
    match http.post(url).bearer_auth(bearer).json(body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (
                status,
                r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            )
        }
        Err(_) => (0, Vec::new()),
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
        .expect("1 µs to a minute at 3 significant digits are valid bounds")
}

/// Runs `request(task, i)` from `connections` tasks until `stop` says enough (`i`
/// counts the task's own requests); returns the phase.
pub async fn timed<F, Fut>(name: &'static str, connections: usize, stop: Stop, request: F) -> Phase
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u16> + Send,
{
    let request = Arc::new(request);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = done.load(Ordering::Relaxed);
                // Whole lines, so that a log of the run reads as well as a terminal.
                eprintln!(
                    "  {name}: {n} requests, {:.0} req/s so far",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let (request, done, stop) = (request.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latency = new_histogram();
                let mut statuses = BTreeMap::new();
                let mut i = 0;
                while stop.next(started) {
                    let sent = Instant::now();
                    let status = request(task, i).await;
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    *statuses.entry(status).or_insert(0u64) += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                (latency, statuses)
            })
        })
        .collect();
    let mut latency = new_histogram();
    let mut statuses = BTreeMap::new();
    for task in tasks {
        let (l, s) = task.await.expect("a load task does not panic");
        latency
            .add(l)
            .expect("histograms with the same bounds add up");
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    Phase {
        name,
        requests: statuses.values().sum(),
        elapsed,
        latency,
        statuses,
    }
}

/// When a phase ends.
#[derive(Clone)]
#[allow(
    dead_code,
    reason = "each bench that includes this file uses some of the ways"
)]
pub enum Stop {
    /// After a duration.
    After(Duration),
    /// After a number of requests in all (the counter is shared by the tasks).
    Count(Arc<AtomicUsize>, usize),
    /// After a duration, or sooner once a number of requests in all have been sent
    /// (a sale whose inventory runs out before the time does).
    AfterOrCount(Duration, Arc<AtomicUsize>, usize),
}

impl Stop {
    /// Whether one more request may go.
    fn next(&self, started: Instant) -> bool {
        let counted =
            |next: &AtomicUsize, total: usize| next.fetch_add(1, Ordering::Relaxed) < total;
        match self {
            Stop::After(d) => started.elapsed() < *d,
            Stop::Count(next, total) => counted(next, *total),
            Stop::AfterOrCount(d, next, total) => started.elapsed() < *d && counted(next, *total),
        }
    }
}
