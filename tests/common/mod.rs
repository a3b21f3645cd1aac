//! A real boxoffice server on port 0 with a manual clock, and a small client for it.
#![allow(dead_code)]

pub mod feed;
pub mod nats;

use boxoffice::app;
use boxoffice::config::Config;
use boxoffice::domain::UserId;
use boxoffice::engine::clock::ManualClock;
use boxoffice::http::auth::Auth;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The admin key test servers use.
pub const ADMIN_KEY: &str = "test-admin-key";
/// The JWT secret test servers use.
pub const JWT_SECRET: &str = "test-jwt-secret";

/// An answer: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert_eq!(self.body["status"], status, "{:?}", self.body);
        assert_eq!(self.body["type"], "about:blank");
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/problem+json"));
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{:?}", self.body);
        self.body
    }
}

/// A running server.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub auth: Arc<Auth>,
    pub config: Config,
    pub engine: Arc<boxoffice::engine::Engine>,
    /// The data directory, removed when the last server using it is gone.
    pub dir: Arc<tempfile::TempDir>,
    /// What the app said at start (the first line tells what recovery did).
    pub banner: Vec<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

/// The configuration test servers start from.
pub fn test_config() -> Config {
    Config {
        admin_key: Some(ADMIN_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        ..Config::default()
    }
}

impl Server {
    /// A server with the default limits.
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config();
        config.data_dir = dir.path().to_owned();
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        Self::start_on(config, clock, dir).await
    }

    async fn start_on(
        config: Config,
        clock: Arc<ManualClock>,
        dir: Arc<tempfile::TempDir>,
    ) -> Server {
        let app = app::build(&config, clock.clone())
            .await
            .expect("the data directory opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = config.serve_options();
        let serving = tokio::spawn(app::serve_with(listener, app.router, options, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            http: reqwest::Client::new(),
            clock,
            auth: app.auth,
            config,
            engine: app.engine,
            dir,
            banner: app.banner,
            shutdown: Some(stop),
            serving: Some(serving),
        }
    }

    /// Stops cleanly (no new requests, in-flight ones finish, final snapshot) and
    /// starts again on the same data directory and clock.
    pub async fn restart(mut self) -> Server {
        self.stop().await;
        Self::start_on(self.config.clone(), self.clock.clone(), self.dir.clone()).await
    }

    /// Stops cleanly, releasing the data directory.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap().unwrap();
        }
        self.engine.journal().stop().await;
    }

    /// The sequence number recovery ended at when this server started.
    pub fn recovered_seq(&self) -> u64 {
        self.recovery_numbers().0
    }

    /// How many log records recovery replayed on top of a snapshot at start.
    pub fn replayed(&self) -> u64 {
        self.recovery_numbers().1
    }

    /// Reads "... up to event N (M replayed from the log)" from the banner.
    fn recovery_numbers(&self) -> (u64, u64) {
        let line = &self.banner[0];
        let marker = " up to event ";
        let at = line
            .rfind(marker)
            .expect("the banner tells what recovery did");
        let mut words = line[at + marker.len()..].split_whitespace();
        let seq = words.next().and_then(|w| w.parse().ok());
        let replayed = words
            .next()
            .and_then(|w| w.trim_start_matches('(').parse().ok());
        (
            seq.expect("a sequence number"),
            replayed.expect("a replayed count"),
        )
    }

    /// Files in the data directory whose names end in `suffix`, by name.
    pub fn data_files(&self, suffix: &str) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_str().is_some_and(|p| p.ends_with(suffix)))
            .collect();
        files.sort();
        files
    }

    /// A valid token for `user`.
    pub fn token(&self, user: u64) -> String {
        self.auth.token(UserId(user), 3600)
    }

    /// The server's clock.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use boxoffice::engine::clock::Clock;
        self.clock.now()
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Sends a request with an optional bearer token, body and extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<RawBody>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match body {
            Some(RawBody::Json(value)) => request = request.json(&value),
            Some(RawBody::Text(text)) => {
                request = request
                    .header("content-type", "application/json")
                    .body(text);
            }
            None => {}
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET as `user`.
    pub async fn get(&self, user: u64, path: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            path,
            Some(&self.token(user)),
            None,
            &[],
        )
        .await
    }

    /// GET without credentials.
    pub async fn get_public(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, None, &[]).await
    }

    /// POST JSON as `user`.
    pub async fn post(&self, user: u64, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&self.token(user)),
            Some(RawBody::Json(body)),
            &[],
        )
        .await
    }

    /// DELETE as `user`.
    pub async fn delete(&self, user: u64, path: &str) -> Answer {
        self.send(
            reqwest::Method::DELETE,
            path,
            Some(&self.token(user)),
            None,
            &[],
        )
        .await
    }

    /// POST JSON as the admin.
    pub async fn admin_post(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(ADMIN_KEY),
            Some(RawBody::Json(body)),
            &[],
        )
        .await
    }

    /// GET with the admin key.
    pub async fn admin_get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, Some(ADMIN_KEY), None, &[])
            .await
    }

    /// Creates the concert `spec` describes; returns its id and its dates' ids.
    pub async fn create_concert(&self, spec: Value) -> (u64, Vec<u64>) {
        let concert = self
            .admin_post("/api/v1/admin/concerts", spec)
            .await
            .expect(201);
        let ids = concert["dates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect();
        (concert["id"].as_u64().unwrap(), ids)
    }

    /// Creates a concert with one date of one section; returns (concert id, date id).
    pub async fn concert(&self, rows: u32, seats_per_row: u32, price: u64) -> (u64, u64) {
        let body = concert_body(rows, seats_per_row, price);
        let concert = self
            .admin_post("/api/v1/admin/concerts", body)
            .await
            .expect(201);
        (
            concert["id"].as_u64().unwrap(),
            concert["dates"][0]["id"].as_u64().unwrap(),
        )
    }

    /// Joins the concert's queue and checks the user is admitted.
    pub async fn admit(&self, concert: u64, user: u64) {
        let entry = self
            .post(
                user,
                &format!("/api/v1/concerts/{concert}/queue"),
                json!(null),
            )
            .await;
        assert!(
            entry.status == 201 || entry.status == 200,
            "{:?}",
            entry.body
        );
        assert_eq!(
            entry.body["status"], "ACTIVE",
            "user {user} is not admitted: {:?}",
            entry.body
        );
    }

    /// A 5xx: stops the write path, then user 1 charges 5 won, sending `request_id`
    /// (503 `UNAVAILABLE`, its error logged).
    pub async fn charge_unavailable(&self, request_id: &str) -> Answer {
        self.engine.journal().stop().await;
        let answer = self
            .send(
                reqwest::Method::POST,
                "/api/v1/wallet/charges",
                Some(&self.token(1)),
                Some(RawBody::Json(json!({"amount": 5}))),
                &[("x-request-id", request_id)],
            )
            .await;
        answer.assert_problem(503, "UNAVAILABLE");
        answer
    }

    /// Holds seats.
    pub async fn hold(&self, user: u64, date: u64, seats: &[u64]) -> Answer {
        self.post(
            user,
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": seats}),
        )
        .await
    }

    /// Charges the wallet and checks it worked.
    pub async fn charge(&self, user: u64, amount: u64) -> Value {
        self.post(user, "/api/v1/wallet/charges", json!({"amount": amount}))
            .await
            .expect(200)
    }

    /// Pays a reservation.
    pub async fn pay(&self, user: u64, reservation: &str) -> Answer {
        self.post(
            user,
            "/api/v1/payments",
            json!({"reservationId": reservation}),
        )
        .await
    }

    /// The user's balance.
    pub async fn balance(&self, user: u64) -> u64 {
        self.get(user, "/api/v1/wallet").await.expect(200)["balance"]
            .as_u64()
            .unwrap()
    }

    /// A seat's status.
    pub async fn seat_status(&self, concert: u64, date: u64, seat: u64) -> String {
        let seats = self
            .get_public(&format!("/api/v1/concerts/{concert}/dates/{date}/seats"))
            .await
            .expect(200);
        let seat = seats
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == seat)
            .unwrap();
        seat["status"].as_str().unwrap().to_owned()
    }
}

/// A concert of one date, far in the future, with one section.
pub fn concert_body(rows: u32, seats_per_row: u32, price: u64) -> Value {
    json!({"title": "Test", "venue": "Hall", "dates": [{"startsAt": FUTURE,
        "sections": [{"name": "R", "rows": rows, "seatsPerRow": seats_per_row, "price": price}]}]})
}

/// A start time far ahead of any test clock.
pub const FUTURE: &str = "2099-12-24T19:00:00Z";

/// A request body: JSON, or raw text to send as JSON.
pub enum RawBody {
    Json(Value),
    Text(String),
}
