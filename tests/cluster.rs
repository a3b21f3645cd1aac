//! Cluster mode against real processes: a three-node NATS JetStream cluster on
//! loopback ports (the log stream and lease with 3 replicas) and two boxoffice nodes
//! (the real binary) sharing it, under concurrent load of charges, holds and payments.
//!
//! In turn: the leader is SIGKILLed (several rounds; the other node must acknowledge
//! writes within a few seconds, and the killed one comes back as a follower); the NATS
//! server leading the log stream is SIGKILLed (writes go on once the stream elects
//! another); the leader is SIGSTOPped past its lease, the other node leads, and after
//! SIGCONT the old leader acknowledges nothing. After all of it, on the leader and on
//! the caught-up follower: every acknowledged charge, hold and payment is there with
//! its id, balances equal their ledgers, no seat is in two live reservations, and no
//! reservation is paid twice.
//!
//! Where `nats-server` is not installed this test says so and passes; under CI
//! (`CI=true`) it fails instead.

mod common;

use common::nats::{self, NatsCluster, Node, client as http, nats_or_skip};
use common::{ADMIN_KEY, JWT_SECRET};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TICKET_SECRET: &str = "cluster-ticket-secret";
const USERS: u64 = 12;
const SEAT_ROWS: u32 = 20;
const SEATS_PER_ROW: u32 = 50;
/// How soon the surviving node must take writes after the leader dies.
const FAILOVER_MAX: Duration = Duration::from_secs(5);

/// A node of this test: the real binary on the cluster's log, with 3 replicas and a
/// snapshot every second.
fn node(nats: &str) -> Node {
    let extra = [
        "--queue-active-max",
        "1000",
        "--max-seats-per-user",
        "1000",
        "--snapshot-interval-secs",
        "1",
        "--log-replicas",
        "3",
    ];
    Node::on_log(nats, [ADMIN_KEY, JWT_SECRET, TICKET_SECRET], &extra)
}

fn token(user: u64) -> String {
    boxoffice::http::auth::token_for_secret(JWT_SECRET, boxoffice::domain::UserId(user), 3600)
}

async fn ready(base: &str) -> Option<Value> {
    nats::ready(&http(), base).await
}

/// Waits until some node leads; answers its index.
async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if node.is_running()
                && let Some(ready) = ready(&node.base()).await
                && ready["role"] == "leader"
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a write to any node, following 307 to the leader and retrying 503 and
/// refused connections until `deadline`; `None`: never acknowledged.
async fn write(
    bases: &[String],
    method: reqwest::Method,
    path: &str,
    user_token: &str,
    body: Value,
    key: Option<&str>,
) -> Option<(u16, Value)> {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut base = bases[rand::random_range(0..bases.len())].clone();
    while Instant::now() < deadline {
        let mut request = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(user_token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        match request.send().await {
            Ok(answer) if answer.status() == 307 => {
                let location = answer.headers()["location"].to_str().unwrap().to_owned();
                base = location.trim_end_matches(path).to_owned();
            }
            Ok(answer) if answer.status() == 503 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                base = bases[rand::random_range(0..bases.len())].clone();
            }
            Ok(answer) => {
                let status = answer.status().as_u16();
                return Some((status, answer.json().await.unwrap_or(Value::Null)));
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                base = bases[rand::random_range(0..bases.len())].clone();
            }
        }
    }
    None
}

/// What clients were told succeeded.
#[derive(Default)]
struct Acknowledged {
    /// Charge id → (user, idempotency key).
    charges: HashMap<String, (u64, String)>,
    holds: HashMap<String, u64>,
    payments: HashMap<String, (u64, String)>,
}

/// One user's loop: join the room, charge, hold a few seats, pay; again.
async fn shop(
    bases: Vec<String>,
    user: u64,
    concert: u64,
    date: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let token = token(user);
    let post = reqwest::Method::POST;
    let join = format!("/api/v1/concerts/{concert}/queue");
    let mut round = 0;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        // A paid entry is complete: join again for the next purchase.
        write(&bases, post.clone(), &join, &token, json!({}), None).await;
        let key = format!("c-{user}-{round}");
        let charge = json!({"amount": 1000});
        if let Some((200 | 201, body)) = write(
            &bases,
            post.clone(),
            "/api/v1/wallet/charges",
            &token,
            charge,
            Some(&key),
        )
        .await
        {
            let id = body["chargeId"].as_str().unwrap().to_owned();
            acked.lock().await.charges.insert(id, (user, key));
        }
        let seat = rand::random_range(1..=u64::from(SEAT_ROWS * SEATS_PER_ROW));
        let hold = json!({"dateId": date, "seatIds": [seat]});
        let Some((201, body)) = write(
            &bases,
            post.clone(),
            "/api/v1/reservations",
            &token,
            hold,
            None,
        )
        .await
        else {
            continue;
        };
        let reservation = body["id"].as_str().unwrap().to_owned();
        acked.lock().await.holds.insert(reservation.clone(), user);
        let pay = json!({"reservationId": reservation});
        let key = format!("p-{user}-{round}");
        if let Some((201, body)) = write(
            &bases,
            post.clone(),
            "/api/v1/payments",
            &token,
            pay,
            Some(&key),
        )
        .await
        {
            let id = body["id"].as_str().unwrap().to_owned();
            acked.lock().await.payments.insert(id, (user, reservation));
        }
    }
}

/// Waits until the other node acknowledges a write; answers how long since `since`.
async fn writes_resume(bases: &[String], since: Instant) -> Duration {
    let token = token(USERS + 1);
    loop {
        let answer = write(
            bases,
            reqwest::Method::POST,
            "/api/v1/wallet/charges",
            &token,
            json!({"amount": 1}),
            None,
        )
        .await;
        if let Some((200 | 201, _)) = answer {
            return since.elapsed();
        }
    }
}

async fn get(base: &str, path: &str, user: Option<u64>) -> Value {
    let request = http().get(format!("{base}{path}"));
    let request = match user {
        Some(user) => request.bearer_auth(token(user)),
        None => request.bearer_auth(ADMIN_KEY),
    };
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 200, "GET {path} on {base}");
    answer.json().await.unwrap()
}

/// What a node shows of the sale: the seat map and every user's wallet, ledger and
/// reservations (deadlines and ids included).
async fn shown(base: &str, concert: u64, date: u64) -> Value {
    let seats = get(
        base,
        &format!("/api/v1/concerts/{concert}/dates/{date}/seats"),
        None,
    )
    .await;
    let mut users = Vec::new();
    for user in 1..=USERS {
        users.push(json!({
            "wallet": get(base, "/api/v1/wallet", Some(user)).await,
            "ledger": get(base, "/api/v1/wallet/transactions?limit=1000", Some(user)).await,
            "reservations": get(base, "/api/v1/reservations", Some(user)).await,
        }));
    }
    json!({"seats": seats, "users": users})
}

/// A follower serves the event feed and the live seat map from what it follows.
async fn follower_streams(base: &str, concert: u64, date: u64) {
    let page = get(base, "/api/v1/admin/events?limit=10", None).await;
    assert!(
        !page["events"].as_array().unwrap().is_empty(),
        "{base} serves the feed"
    );
    let path = format!("{base}/api/v1/concerts/{concert}/dates/{date}/seats/stream");
    let mut stream = reqwest::Client::new().get(path).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("the seat map comes at once")
            .unwrap()
            .expect("the stream stays open");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        first.contains("event: map"),
        "{base} streams the seat map: {first}"
    );
}

/// Checks one node's state against what clients were told.
async fn check_node(base: &str, acked: &Acknowledged) {
    let mut live_seats = HashSet::new();
    let mut paid = HashSet::new();
    for user in 1..=USERS {
        let ledger = get(base, "/api/v1/wallet/transactions?limit=1000", Some(user)).await;
        let ledger = ledger.as_array().expect("a ledger");
        let balance = get(base, "/api/v1/wallet", Some(user)).await["balance"]
            .as_i64()
            .unwrap();
        let sum: i64 = ledger
            .iter()
            .map(|e| match e["kind"].as_str().unwrap() {
                "PAYMENT" => -e["amount"].as_i64().unwrap(),
                _ => e["amount"].as_i64().unwrap(),
            })
            .sum();
        assert_eq!(
            balance, sum,
            "user {user}'s balance equals the ledger on {base}"
        );
        let ids: HashSet<&str> = ledger.iter().filter_map(|e| e["id"].as_str()).collect();
        for (id, (owner, _)) in &acked.charges {
            if *owner == user {
                assert!(
                    ids.contains(id.as_str()),
                    "charge {id} of user {user} on {base}"
                );
            }
        }
        let reservations = get(base, "/api/v1/reservations", Some(user)).await;
        for reservation in reservations.as_array().unwrap() {
            let status = reservation["status"].as_str().unwrap();
            if status == "HELD" || status == "PAID" {
                for seat in reservation["seats"].as_array().unwrap() {
                    let seat = &seat["id"];
                    assert!(
                        live_seats.insert(seat.as_u64().unwrap()),
                        "seat {seat} in two live reservations on {base}"
                    );
                }
            }
        }
        let payments = get(base, "/api/v1/payments", Some(user)).await;
        for payment in payments.as_array().unwrap() {
            let reservation = payment["reservationId"].as_str().unwrap().to_owned();
            assert!(
                paid.insert(reservation.clone()),
                "{reservation} paid twice on {base}"
            );
        }
    }
    for (id, user) in &acked.holds {
        let answer = http()
            .get(format!("{base}/api/v1/reservations/{id}"))
            .bearer_auth(token(*user))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "held reservation {id} on {base}");
    }
    for (id, (_, reservation)) in &acked.payments {
        assert!(
            paid.contains(reservation),
            "payment {id} for {reservation} on {base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_actions_survive_leader_and_nats_failures() {
    let Some(binary) = nats_or_skip("cluster") else {
        return;
    };
    let nats = Arc::new(Mutex::new(NatsCluster::start(binary)));
    let urls = nats.lock().await.urls();
    let mut nodes: Vec<Node> = (0..2).map(|_| node(&urls)).collect();
    for node in &mut nodes {
        node.start();
    }
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    let first = leader(&nodes).await;
    let concert = common::concert_body(SEAT_ROWS, SEATS_PER_ROW, 1000);
    let answer = http()
        .post(format!("{}/api/v1/admin/concerts", bases[first]))
        .bearer_auth(ADMIN_KEY)
        .json(&concert)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let concert: Value = answer.json().await.unwrap();
    let concert_id = concert["id"].as_u64().unwrap();
    let date_id = concert["dates"][0]["id"].as_u64().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let shoppers: Vec<_> = (1..=USERS)
        .map(|user| {
            tokio::spawn(shop(
                bases.clone(),
                user,
                concert_id,
                date_id,
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The leader dies, several times.
    let mut failovers = Vec::new();
    for round in 0..3 {
        let dead = leader(&nodes).await;
        let killed = Instant::now();
        nodes[dead].kill();
        let others: Vec<String> = (0..nodes.len())
            .filter(|&i| i != dead)
            .map(|i| bases[i].clone())
            .collect();
        let took = writes_resume(&others, killed).await;
        eprintln!("round {round}: writes resumed {took:?} after the leader was killed");
        failovers.push(took);
        nodes[dead].start();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for took in &failovers {
        assert!(*took < FAILOVER_MAX, "failovers took {failovers:?}");
    }

    // The NATS server leading the log stream dies.
    let stream_leader = nats.lock().await.stream_leader().await;
    let killed = Instant::now();
    nats.lock().await.nodes[stream_leader].kill();
    let pause = writes_resume(&bases, killed).await;
    eprintln!("writes resumed {pause:?} after the stream's NATS leader was killed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let mut nats = nats.lock().await;
        let binary = nats.binary.clone();
        nats.nodes[stream_leader].start(&binary);
    }

    // The leader stalls past its lease.
    let stalled = leader(&nodes).await;
    nodes[stalled].signal(libc::SIGSTOP);
    let other = 1 - stalled;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&bases[other]).await.map(|r| r["role"].clone()) != Some(json!("leader")) {
        assert!(
            Instant::now() < deadline,
            "the other node did not take over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[stalled].signal(libc::SIGCONT);
    // Whatever it answers from now on, it acknowledges no write.
    let stalled_token = token(USERS + 2);
    for _ in 0..20 {
        let answer = http()
            .post(format!("{}/api/v1/wallet/charges", bases[stalled]))
            .bearer_auth(&stalled_token)
            .json(&json!({"amount": 7}))
            .send()
            .await;
        if let Ok(answer) = answer {
            assert!(
                !answer.status().is_success(),
                "a deposed leader acknowledged a write ({})",
                answer.status()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.store(true, Ordering::Release);
    for shopper in shoppers {
        shopper.await.unwrap();
    }
    let acked = acked.lock().await;
    assert!(
        !acked.charges.is_empty() && !acked.payments.is_empty(),
        "the load did something"
    );
    // The leader keeps snapshots in object storage and trims the log behind them, and
    // a node with an empty disk starts from them.
    let trimmed = nats.lock().await.log_stream().await.state.first_sequence;
    assert!(trimmed > 1, "the log stream was never trimmed");
    let mut fresh = node(&urls);
    fresh.start();
    nodes.push(fresh);
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready(&bases[2]).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the node from a snapshot did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One more write once every node runs, so every feed has something to show.
    let late = write(
        &bases,
        reqwest::Method::POST,
        "/api/v1/wallet/charges",
        &token(USERS + 3),
        json!({"amount": 3}),
        None,
    )
    .await;
    assert!(matches!(late, Some((200, _))), "a last write: {late:?}");
    // Every node, once caught up, holds every acknowledged action.
    let leading = leader(&nodes).await;
    let end = ready(&bases[leading]).await.unwrap()["appliedSeq"].clone();
    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready(base).await.map(|r| r["appliedSeq"].clone()) != Some(end.clone()) {
            assert!(Instant::now() < deadline, "{base} did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check_node(base, &acked).await;
        if *base != bases[leading] {
            // A waiting-room entry is kept alive by its reads: the leader answers them.
            let entry = http()
                .get(format!("{base}/api/v1/concerts/{concert_id}/queue"))
                .bearer_auth(token(1))
                .send()
                .await
                .unwrap();
            assert_eq!(
                entry.status(),
                307,
                "a follower sends entry reads to the leader"
            );
            follower_streams(base, concert_id, date_id).await;
        }
        assert_eq!(
            shown(base, concert_id, date_id).await,
            shown(&bases[leading], concert_id, date_id).await,
            "{base} shows what the leader shows"
        );
        let metrics = http().get(format!("{base}/metrics")).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let role = if *base == bases[leading] { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("boxoffice_cluster_leader {role}\n")),
            "{base} tells its role in /metrics"
        );
    }
    // Idempotency keys survived every failover: a charge sent again with its key is
    // answered with the charge it made, and charges nothing more.
    let leading = leader(&nodes).await;
    for (id, (user, key)) in acked.charges.iter().take(20) {
        let again = write(
            &bases[leading..=leading],
            reqwest::Method::POST,
            "/api/v1/wallet/charges",
            &token(*user),
            json!({"amount": 1000}),
            Some(key),
        )
        .await;
        let (_, body) = again.expect("the leader answers");
        assert_eq!(body["chargeId"], json!(id), "charge {key} made again");
    }
    eprintln!(
        "{} charges, {} holds, {} payments acknowledged; failovers {failovers:?}; NATS leader loss paused writes {pause:?}",
        acked.charges.len(),
        acked.holds.len(),
        acked.payments.len()
    );
}
