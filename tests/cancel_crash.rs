//! A date's cancellation killed midway: the real binary, many paid reservations, the
//! operator cancels the date and the server is killed (SIGKILL) as soon as the first
//! refunds are durable. The next start finishes the cancellation: every paid
//! reservation is refunded exactly once, every balance equals its ledger, and every
//! seat is available. Refunds are quick, so the kill usually lands with some left and
//! sometimes after the last; the run prints which, and the checks hold either way.

use boxoffice::domain::UserId;
use boxoffice::http::auth::token_for_secret;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "cancel-admin-key";
const JWT_SECRET: &str = "cancel-jwt-secret";
/// Buyers, one seat each (of 400).
const BUYERS: u64 = 300;
const PRICE: u64 = 1_000;
/// How long a start, or the cancellation's end after it, may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// The server binary; killed when dropped.
struct Process {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Process {
    fn drop(&mut self) {
        // It may have exited already; either way it must not outlive the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    async fn start(dir: &Path) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args(["--admin-key", ADMIN_KEY, "--jwt-secret", JWT_SECRET])
            .args(["--queue-active-max", "1000"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        while process.try_send("GET", "/health", None).await.is_none() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        process
    }

    async fn try_send(&self, method: &str, path: &str, user: Option<u64>) -> Option<(u16, Value)> {
        self.try_send_body(method, path, user, None).await
    }

    async fn try_send_body(
        &self,
        method: &str,
        path: &str,
        user: Option<u64>,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let bearer = match user {
            Some(user) => token_for_secret(JWT_SECRET, UserId(user), 3600),
            None => ADMIN_KEY.to_owned(),
        };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    /// Refunds this process made durable, from `/metrics`.
    async fn refunds_counted(&self) -> u64 {
        let url = format!("{}/metrics", self.base);
        let Ok(response) = self.http.get(url).send().await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix("boxoffice_refunds_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A request that must succeed with `status`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<u64>,
        body: Value,
        status: u16,
    ) -> Value {
        let body = (method == "POST").then_some(body);
        let (got, answer) = self
            .try_send_body(method, path, user, body)
            .await
            .unwrap_or_else(|| panic!("no answer to {method} {path}"));
        assert_eq!(got, status, "{method} {path}: {answer:?}");
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_killed_midway_refunds_every_paid_reservation_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path()).await;
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let spec = json!({"title": "T", "venue": "V", "dates": [{"startsAt": starts_at,
        "sections": [{"name": "R", "rows": 20, "seatsPerRow": 20, "price": PRICE}]}]});
    let concert = server
        .call("POST", "/api/v1/admin/concerts", None, spec, 201)
        .await;
    let concert_id = concert["id"].as_u64().unwrap();
    let date = concert["dates"][0]["id"].as_u64().unwrap();
    let mut paid = Vec::new();
    for user in 1..=BUYERS {
        let queue = format!("/api/v1/concerts/{concert_id}/queue");
        server
            .call("POST", &queue, Some(user), Value::Null, 201)
            .await;
        let hold = json!({"dateId": date, "seatIds": [user]});
        let held = server
            .call("POST", "/api/v1/reservations", Some(user), hold, 201)
            .await;
        let charge = json!({"amount": PRICE});
        server
            .call("POST", "/api/v1/wallet/charges", Some(user), charge, 200)
            .await;
        let id = held["id"].as_str().unwrap().to_owned();
        let pay = json!({"reservationId": id});
        server
            .call("POST", "/api/v1/payments", Some(user), pay, 201)
            .await;
        paid.push((user, id));
    }

    // Cancel, and kill the server as soon as the first refund is durable (the metrics
    // count durable events only).
    let cancel = {
        let http = server.http.clone();
        let url = format!("{}/api/v1/admin/dates/{date}/cancel", server.base);
        tokio::spawn(async move { http.post(url).bearer_auth(ADMIN_KEY).send().await })
    };
    let deadline = Instant::now() + DEADLINE;
    while server.refunds_counted().await == 0 {
        assert!(Instant::now() < deadline, "no refund began");
    }
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = cancel.await;
    drop(server);

    let server = Process::start(dir.path()).await;
    let sales = format!("/api/v1/admin/dates/{date}/sales");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, figures) = server.try_send("GET", &sales, None).await.unwrap();
        if figures["holds"]["refunded"] == BUYERS {
            assert_eq!(figures["cancelled"], true);
            assert_eq!(figures["totals"]["available"], 400);
            assert_eq!(figures["totals"]["sold"], 0);
            assert_eq!(figures["totals"]["refunds"], BUYERS * PRICE);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancellation did not finish: {figures}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // What this start refunded is what the kill cut short.
    let finished = server.refunds_counted().await;
    eprintln!(
        "killed after {} of {BUYERS} refunds; the start made the other {finished}",
        BUYERS - finished
    );
    for (user, id) in &paid {
        let ledger = server
            .call(
                "GET",
                "/api/v1/wallet/transactions",
                Some(*user),
                Value::Null,
                200,
            )
            .await;
        let entries = ledger.as_array().unwrap();
        let refunds: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "REFUND").collect();
        assert_eq!(refunds.len(), 1, "user {user} is refunded exactly once");
        assert_eq!(refunds[0]["reservationId"], id.as_str());
        let wallet = server
            .call("GET", "/api/v1/wallet", Some(*user), Value::Null, 200)
            .await;
        assert_eq!(
            wallet["balance"], PRICE,
            "user {user}: the balance is its ledger"
        );
        assert_eq!(entries[0]["balanceAfter"], PRICE);
    }
}
