//! Crash recovery of the real binary: rounds of concurrent load over HTTP, each ended
//! by SIGKILL at a random moment while requests are in flight, then a restart on the
//! same data directory. Every acknowledged (2xx) mutation must be there with its ids,
//! and nothing half-done may be visible: balances match ledgers, paid reservations
//! match payments, and no seat is in two live reservations.
//!
//! The seed is printed; set `BOXOFFICE_CRASH_SEED` to replay a run's choices (the
//! kill moment and the interleaving still vary).

use boxoffice::domain::UserId;
use boxoffice::http::auth::token_for_secret;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "crash-admin-key";
const JWT_SECRET: &str = "crash-jwt-secret";
/// Rounds of load, each ended by a kill.
const ROUNDS: u64 = 4;
/// Concurrent clients per round, each its own user (new users every round).
const CLIENTS: u64 = 8;
/// Seats of the one date: rows of the one section.
const ROWS: u64 = 5;
/// Seats of the one date: seats per row.
const SEATS_PER_ROW: u64 = 30;
/// Seats most clients ask for, so that holds collide.
const HOT_SEATS: u64 = 20;
const PRICE: u64 = 10_000;
/// Most requests one client sends in a round.
const REQUESTS_PER_CLIENT_MAX: u32 = 2_000;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a start (recovery included) may take before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long the clients may take to notice the kill and return.
const CLIENTS_DEADLINE: Duration = Duration::from_secs(20);
/// How often a poll looks again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// A running server process; killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    /// Where its stdout and stderr go.
    log: PathBuf,
    api: Arc<Api>,
}

/// How clients reach a server process.
struct Api {
    base: String,
    http: reqwest::Client,
    /// Requests that got no whole answer (in flight at the kill, or sent after it).
    unanswered: AtomicUsize,
}

impl Drop for Process {
    fn drop(&mut self) {
        // It may have exited already; either way it must not outlive the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts the binary on `dir` on a free port and waits until `/health` answers.
    async fn start(dir: &Path, logs: &Path, name: &str) -> Process {
        // Another process may take the port between our probe and the bind: try again.
        for attempt in 0..3 {
            let port = free_port();
            let log = logs.join(format!("{name}-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
                .args(["--admin-key", ADMIN_KEY, "--jwt-secret", JWT_SECRET])
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            let http = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap();
            let api = Arc::new(Api {
                base: format!("http://127.0.0.1:{port}"),
                http,
                unanswered: AtomicUsize::new(0),
            });
            let mut process = Process { child, log, api };
            if process.await_health().await {
                return process;
            }
            let printed = std::fs::read_to_string(&process.log).unwrap();
            if !printed.contains("binding") {
                let kept = keep_for_post_mortem(dir);
                panic!("the server did not start on {kept:?} (a copy):\n{printed}");
            }
        }
        panic!("no free port to listen on");
    }

    /// Polls `/health` until it answers 200 (true) or the process exits (false).
    async fn await_health(&mut self) -> bool {
        let deadline = Instant::now() + START_DEADLINE;
        let url = format!("{}/health", self.api.base);
        loop {
            let health = self.api.http.get(&url).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if Instant::now() >= deadline {
                let printed = std::fs::read_to_string(&self.log).unwrap();
                panic!("no answer from /health in {START_DEADLINE:?}:\n{printed}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// SIGKILL, and wait until it is gone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Api {
    /// Sends a request; `None` when no whole answer came (not acknowledged).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Option<(u16, Value)> {
        let answer = self.try_send(method, path, bearer, body, key).await;
        if answer.is_none() {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.ok()?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).ok()?
        };
        Some((status, body))
    }

    /// A read that must succeed.
    async fn get(&self, user: u64, path: &str) -> Value {
        let (status, body) = self
            .send(reqwest::Method::GET, path, &token(user), None, None)
            .await
            .unwrap_or_else(|| panic!("no answer to GET {path}"));
        assert_eq!(status, 200, "GET {path} as user {user}: {body:?}");
        body
    }
}

/// Copies a data directory the server could not start on to a directory that is not
/// removed, so that its log can be examined after the test.
fn keep_for_post_mortem(dir: &Path) -> PathBuf {
    let kept = tempfile::Builder::new()
        .prefix("boxoffice-crash-")
        .tempdir()
        .unwrap()
        .keep();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, kept.join(path.file_name().unwrap())).unwrap();
    }
    kept
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

fn token(user: u64) -> String {
    token_for_secret(JWT_SECRET, UserId(user), 3600)
}

/// An acknowledged charge.
#[derive(Debug)]
struct Charge {
    user: u64,
    id: String,
    amount: u64,
    key: Option<String>,
}

/// An acknowledged hold.
#[derive(Debug)]
struct Hold {
    user: u64,
    id: String,
    seats: Vec<u64>,
}

/// An acknowledged payment.
#[derive(Debug)]
struct Payment {
    user: u64,
    id: String,
    reservation: String,
    amount: u64,
}

/// Everything the server acknowledged.
#[derive(Debug, Default)]
struct Acknowledged {
    charges: Vec<Charge>,
    holds: Vec<Hold>,
    payments: Vec<Payment>,
    /// Reservations a 204 said were cancelled (user, id).
    cancels: Vec<(u64, String)>,
}

impl Acknowledged {
    fn extend(&mut self, other: Acknowledged) {
        self.charges.extend(other.charges);
        self.holds.extend(other.holds);
        self.payments.extend(other.payments);
        self.cancels.extend(other.cancels);
    }
}

/// One client's load: joins the queue, holds, charges (some with keys, some repeats),
/// pays and cancels, recording every 2xx, until told to stop.
async fn client(
    server: Arc<Api>,
    user: u64,
    concert: u64,
    date: u64,
    mut rng: StdRng,
    stop: Arc<AtomicBool>,
) -> Acknowledged {
    let bearer = token(user);
    let mut acknowledged = Acknowledged::default();
    let mut active = false;
    let mut held: Vec<(String, u64)> = Vec::new();
    let mut keys: Vec<(String, u64)> = Vec::new();
    let post = reqwest::Method::POST;
    for _ in 0..REQUESTS_PER_CLIENT_MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        match rng.random_range(0..10) {
            0..3 if !active => {
                let path = format!("/api/v1/concerts/{concert}/queue");
                let answer = server.send(post.clone(), &path, &bearer, None, None).await;
                active = matches!(answer, Some((200 | 201, body)) if body["status"] == "ACTIVE");
            }
            0..3 => {
                let count = rng.random_range(1..=2);
                let range = if rng.random_bool(0.5) {
                    HOT_SEATS
                } else {
                    ROWS * SEATS_PER_ROW
                };
                let seats: BTreeSet<u64> =
                    (0..count).map(|_| rng.random_range(1..=range)).collect();
                let seats: Vec<u64> = seats.into_iter().collect();
                let body = json!({"dateId": date, "seatIds": seats});
                let path = "/api/v1/reservations";
                match server
                    .send(post.clone(), path, &bearer, Some(body), None)
                    .await
                {
                    Some((201, body)) => {
                        let id = body["id"].as_str().unwrap().to_owned();
                        held.push((id.clone(), body["amount"].as_u64().unwrap()));
                        acknowledged.holds.push(Hold { user, id, seats });
                    }
                    Some((403, _)) => active = false,
                    _ => {}
                }
            }
            3..6 => {
                let (key, amount) = match rng.random_range(0..10) {
                    0 if !keys.is_empty() => {
                        let (key, amount) = &keys[rng.random_range(0..keys.len())];
                        (Some(key.clone()), *amount)
                    }
                    0..5 => {
                        let key = format!("u{user}-{}", keys.len());
                        let amount = rng.random_range(1..=3 * PRICE);
                        keys.push((key.clone(), amount));
                        (Some(key), amount)
                    }
                    _ => (None, rng.random_range(1..=3 * PRICE)),
                };
                let body = json!({"amount": amount});
                let path = "/api/v1/wallet/charges";
                let answer = server
                    .send(post.clone(), path, &bearer, Some(body), key.as_deref())
                    .await;
                if let Some((200, body)) = answer {
                    assert_eq!(body["amount"], amount);
                    let id = body["chargeId"].as_str().unwrap().to_owned();
                    acknowledged.charges.push(Charge {
                        user,
                        id,
                        amount,
                        key,
                    });
                }
            }
            6..9 => {
                let Some((reservation, amount)) = held.pop() else {
                    continue;
                };
                let key = rng.random_bool(0.5).then(|| format!("pay-{reservation}"));
                let body = json!({"reservationId": reservation});
                let answer = server
                    .send(
                        post.clone(),
                        "/api/v1/payments",
                        &bearer,
                        Some(body),
                        key.as_deref(),
                    )
                    .await;
                match answer {
                    Some((201, body)) => {
                        assert_eq!(body["amount"], amount);
                        acknowledged.payments.push(Payment {
                            user,
                            id: body["id"].as_str().unwrap().to_owned(),
                            reservation,
                            amount,
                        });
                        active = false; // The entry is COMPLETED.
                    }
                    // Not enough money yet (the hold stays), or no answer: try later.
                    Some((402, _)) | None => held.insert(0, (reservation, amount)),
                    _ => {}
                }
            }
            _ => {
                let Some((reservation, _)) = held.pop() else {
                    continue;
                };
                let path = format!("/api/v1/reservations/{reservation}");
                let answer = server
                    .send(reqwest::Method::DELETE, &path, &bearer, None, None)
                    .await;
                if let Some((204, _)) = answer {
                    acknowledged.cancels.push((user, reservation));
                }
            }
        }
    }
    acknowledged
}

/// What one user's reads say after a restart.
struct UserState {
    balance: u64,
    /// Newest first.
    ledger: Vec<Value>,
    payments: Vec<Value>,
    reservations: Vec<Value>,
}

async fn read_user(server: &Api, user: u64) -> UserState {
    let ledger = server
        .get(user, "/api/v1/wallet/transactions?limit=1000")
        .await;
    let ledger = ledger.as_array().unwrap().clone();
    assert!(
        ledger.len() < 1000,
        "user {user}'s ledger does not fit one read"
    );
    let wallet = server.get(user, "/api/v1/wallet").await;
    assert_eq!(wallet["userId"], user);
    UserState {
        balance: wallet["balance"].as_u64().unwrap(),
        ledger,
        payments: server
            .get(user, "/api/v1/payments")
            .await
            .as_array()
            .unwrap()
            .clone(),
        reservations: server
            .get(user, "/api/v1/reservations")
            .await
            .as_array()
            .unwrap()
            .clone(),
    }
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// The balance is what the ledger adds up to, after every entry and at the end.
fn check_ledger(user: u64, state: &UserState) {
    let mut balance: i128 = 0;
    for entry in state.ledger.iter().rev() {
        let amount = i128::from(entry["amount"].as_u64().unwrap());
        assert!(amount > 0, "{entry:?}");
        match entry["kind"].as_str() {
            Some("CHARGE") => balance += amount,
            Some("PAYMENT") => balance -= amount,
            other => panic!("user {user}: unknown kind {other:?}"),
        }
        assert!(balance >= 0, "user {user}: negative balance at {entry:?}");
        assert_eq!(
            i128::from(entry["balanceAfter"].as_u64().unwrap()),
            balance,
            "user {user}: {entry:?}"
        );
    }
    assert_eq!(i128::from(state.balance), balance, "user {user}'s balance");
}

/// Paid reservations, payments and the ledger's payment entries are the same set:
/// no payment is half done.
fn check_payments(user: u64, state: &UserState) {
    let from_ledger: BTreeMap<String, (String, u64)> = state
        .ledger
        .iter()
        .filter(|entry| entry["kind"] == "PAYMENT")
        .map(|entry| {
            let reservation = text(&entry["reservationId"]);
            (
                text(&entry["id"]),
                (reservation, entry["amount"].as_u64().unwrap()),
            )
        })
        .collect();
    let payments: BTreeMap<String, (String, u64)> = state
        .payments
        .iter()
        .map(|p| {
            (
                text(&p["id"]),
                (text(&p["reservationId"]), p["amount"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(from_ledger, payments, "user {user}: ledger and payments");
    let paid: BTreeMap<String, u64> = state
        .reservations
        .iter()
        .filter(|r| r["status"] == "PAID")
        .map(|r| (text(&r["id"]), r["amount"].as_u64().unwrap()))
        .collect();
    let paid_by_payments: BTreeMap<String, u64> = payments.into_values().collect();
    assert_eq!(
        paid, paid_by_payments,
        "user {user}: paid reservations and payments"
    );
}

/// Every acknowledged mutation is there; every user's books balance; seats agree with
/// reservations and no seat is in two live ones.
async fn verify(server: &Api, acknowledged: &Acknowledged, users: u64, concert: u64, date: u64) {
    let mut states = HashMap::new();
    for user in 1..=users {
        let state = read_user(server, user).await;
        check_ledger(user, &state);
        check_payments(user, &state);
        states.insert(user, state);
    }
    for charge in &acknowledged.charges {
        let ledger = &states[&charge.user].ledger;
        let entry = ledger.iter().find(|e| e["id"] == charge.id.as_str());
        let entry = entry.unwrap_or_else(|| panic!("acknowledged {charge:?} is lost"));
        assert_eq!(entry["kind"], "CHARGE", "{charge:?}");
        assert_eq!(entry["amount"], charge.amount, "{charge:?}");
    }
    let mut by_key: HashMap<(u64, &str), &str> = HashMap::new();
    for charge in &acknowledged.charges {
        if let Some(key) = &charge.key {
            let first = by_key.entry((charge.user, key)).or_insert(&charge.id);
            assert_eq!(*first, charge.id, "a repeated key made a new charge");
        }
    }
    for payment in &acknowledged.payments {
        let state = &states[&payment.user];
        let found = state
            .payments
            .iter()
            .find(|p| p["id"] == payment.id.as_str());
        let found = found.unwrap_or_else(|| panic!("acknowledged {payment:?} is lost"));
        assert_eq!(found["reservationId"], payment.reservation.as_str());
        assert_eq!(found["amount"], payment.amount);
        let path = format!("/api/v1/reservations/{}", payment.reservation);
        assert_eq!(server.get(payment.user, &path).await["status"], "PAID");
    }
    for hold in &acknowledged.holds {
        let path = format!("/api/v1/reservations/{}", hold.id);
        let reservation = server.get(hold.user, &path).await;
        let seats: Vec<u64> = reservation["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect();
        assert_eq!(seats, hold.seats, "{hold:?}");
        assert_eq!(reservation["dateId"], date);
    }
    for (user, id) in &acknowledged.cancels {
        let path = format!("/api/v1/reservations/{id}");
        assert_eq!(server.get(*user, &path).await["status"], "CANCELLED");
    }
    check_seats(server, &states, concert, date).await;
}

async fn check_seats(server: &Api, states: &HashMap<u64, UserState>, concert: u64, date: u64) {
    let mut live: HashMap<u64, &str> = HashMap::new();
    for reservation in states.values().flat_map(|s| &s.reservations) {
        let status = reservation["status"].as_str().unwrap();
        if status != "HELD" && status != "PAID" {
            continue;
        }
        for seat in reservation["seats"].as_array().unwrap() {
            let seat = seat["id"].as_u64().unwrap();
            let before = live.insert(seat, status);
            assert!(before.is_none(), "seat {seat} is in two live reservations");
        }
    }
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seats");
    let seats = server.get(1, &path).await;
    let seats = seats.as_array().unwrap();
    assert_eq!(seats.len() as u64, ROWS * SEATS_PER_ROW);
    let mut available = 0;
    for seat in seats {
        let id = seat["id"].as_u64().unwrap();
        let expected = match live.get(&id) {
            Some(&"PAID") => "SOLD",
            Some(_) => "HELD",
            None => {
                available += 1;
                "AVAILABLE"
            }
        };
        assert_eq!(seat["status"], expected, "seat {id}");
    }
    let dates = server
        .get(1, &format!("/api/v1/concerts/{concert}/dates"))
        .await;
    assert_eq!(dates[0]["seatsAvailable"], available);
}

/// Repeats a few acknowledged keyed charges: each returns the same charge and the
/// balance does not move (keys survive the crash).
async fn repeat_keys(server: &Api, acknowledged: &Acknowledged, rng: &mut StdRng) {
    let keyed: Vec<&Charge> = acknowledged
        .charges
        .iter()
        .filter(|c| c.key.is_some())
        .collect();
    for _ in 0..keyed.len().min(5) {
        let charge = keyed[rng.random_range(0..keyed.len())];
        let before = server.get(charge.user, "/api/v1/wallet").await["balance"].clone();
        let body = json!({"amount": charge.amount});
        let (status, body) = server
            .send(
                reqwest::Method::POST,
                "/api/v1/wallet/charges",
                &token(charge.user),
                Some(body),
                charge.key.as_deref(),
            )
            .await
            .expect("an answer");
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(body["chargeId"], charge.id.as_str());
        let after = server.get(charge.user, "/api/v1/wallet").await["balance"].clone();
        assert_eq!(before, after, "a repeated key charged again");
    }
}

async fn create_concert(server: &Api) -> (u64, u64) {
    let body = json!({"title": "Crash", "venue": "Hall", "dates": [{"startsAt": "2099-12-24T19:00:00Z",
        "sections": [{"name": "R", "rows": ROWS, "seatsPerRow": SEATS_PER_ROW, "price": PRICE}]}]});
    let path = "/api/v1/admin/concerts";
    let answer = server
        .send(reqwest::Method::POST, path, ADMIN_KEY, Some(body), None)
        .await;
    let (status, concert) = answer.expect("an answer");
    assert_eq!(status, 201, "{concert:?}");
    (
        concert["id"].as_u64().unwrap(),
        concert["dates"][0]["id"].as_u64().unwrap(),
    )
}

fn seed() -> u64 {
    match std::env::var("BOXOFFICE_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("BOXOFFICE_CRASH_SEED is a number"),
        Err(_) => rand::rng().random(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_action_survives_kill_9_at_a_random_moment() {
    let seed = seed();
    eprintln!("BOXOFFICE_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut acknowledged = Acknowledged::default();

    let mut server = Process::start(dir.path(), logs.path(), "start").await;
    let (concert, date) = create_concert(&server.api).await;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (1..=CLIENTS)
            .map(|n| {
                let user = round * CLIENTS + n;
                let rng = StdRng::seed_from_u64(rng.random());
                let api = server.api.clone();
                tokio::spawn(client(api, user, concert, date, rng, stop.clone()))
            })
            .collect();
        let load = Duration::from_millis(rng.random_range(500..=1500));
        tokio::time::sleep(load).await;
        // Kill while the clients are mid-request: whatever was answered 2xx must stay.
        server.kill();
        let killed_at = Instant::now();
        stop.store(true, Ordering::Release);
        let all = futures::future::join_all(clients);
        let results = tokio::time::timeout(CLIENTS_DEADLINE, all)
            .await
            .expect("the clients stop after the kill");
        let mut this_round = Acknowledged::default();
        for result in results {
            this_round.extend(result.unwrap());
        }
        eprintln!(
            "round {round}: killed after {load:?}; acknowledged {} charges, {} holds, \
             {} payments, {} cancels; {} requests unanswered; clients done {:?} after the kill",
            this_round.charges.len(),
            this_round.holds.len(),
            this_round.payments.len(),
            this_round.cancels.len(),
            server.api.unanswered.load(Ordering::Relaxed),
            killed_at.elapsed(),
        );
        acknowledged.extend(this_round);

        server = Process::start(dir.path(), logs.path(), &format!("round-{round}")).await;
        let users = (round + 1) * CLIENTS;
        verify(&server.api, &acknowledged, users, concert, date).await;
        repeat_keys(&server.api, &acknowledged, &mut rng).await;
    }
    assert!(!acknowledged.charges.is_empty());
    assert!(!acknowledged.holds.is_empty());
    assert!(!acknowledged.payments.is_empty());
}
