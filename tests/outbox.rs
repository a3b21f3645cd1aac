//! The outbox to NATS JetStream against a real `nats-server -js` (Debian package
//! `nats-server`) on a loopback port with a temporary store: every public event of
//! the feed ends up in the stream exactly once, in order, even when NATS is killed for
//! a while under load, and when boxoffice itself is killed (SIGKILL) while publishing.
//!
//! Where `nats-server` is not installed these tests say so and pass; under CI
//! (`CI=true`) they fail instead.

mod common;

use common::feed::{concurrent_run, read_all};
use common::nats::{NatsNode, free_port, nats_or_skip};
use common::{ADMIN_KEY, Server};
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stream the outbox publishes to by default.
const STREAM: &str = "BOXOFFICE_EVENTS";
/// How long the relay may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// A `nats-server -js` on a loopback port; killed when dropped.
struct Nats {
    binary: PathBuf,
    server: NatsNode,
    _store: tempfile::TempDir,
}

impl Nats {
    fn start(binary: PathBuf) -> Nats {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = ["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]
            .iter()
            .map(|a| a.to_string())
            .chain([store.path().display().to_string()])
            .collect();
        let mut nats = Nats {
            binary,
            server: NatsNode::new(port, args),
            _store: store,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port())
    }

    /// Starts (again) on the same port and store, and waits until it takes connections.
    fn restart(&mut self) {
        self.server.start(&self.binary);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.server.port())).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        self.server.kill();
    }
}

/// Every message of the stream, in order: (Nats-Msg-Id, subject, payload).
async fn stream_messages(url: &str, stream: &str) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap().state.clone();
    let mut messages = Vec::new();
    for seq in info.first_sequence..=info.last_sequence {
        if info.messages == 0 {
            break;
        }
        let message = stream.get_raw_message(seq).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_owned();
        let payload = serde_json::from_slice(&message.payload).unwrap();
        messages.push((id, message.subject.to_string(), payload));
    }
    messages
}

/// The stream holds exactly the feed: same events, same order, right subjects.
fn assert_same(stream: &[(String, String, Value)], feed: &[Value]) {
    let ids: Vec<&str> = stream.iter().map(|(id, _, _)| id.as_str()).collect();
    let cursors: Vec<&str> = feed.iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    assert_eq!(ids, cursors, "the stream holds every event once, in order");
    for ((_, subject, payload), event) in stream.iter().zip(feed) {
        assert_eq!(payload, event);
        assert_eq!(
            subject,
            &format!("boxoffice.events.{}", event["type"].as_str().unwrap())
        );
    }
}

/// Waits until the stream's last message is the feed's last event.
async fn caught_up(url: &str, feed: &[Value]) {
    let stream = STREAM;
    let feed_last = feed.last().unwrap()["cursor"].as_str().unwrap();
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let last = async {
            let client = async_nats::connect(url).await.ok()?;
            let context = async_nats::jetstream::new(client);
            let mut stream = context.get_stream(stream).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let message = stream.get_raw_message(last).await.ok()?;
            Some(message.headers.get("Nats-Msg-Id")?.as_str().to_owned())
        }
        .await;
        if last.as_deref() == Some(feed_last) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not catch up: at {last:?}, feed at {feed_last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_reaches_the_stream_once_in_order_though_nats_dies_for_a_while() {
    let Some(binary) = nats_or_skip("outbox") else {
        return;
    };
    let mut nats = Nats::start(binary);
    let url = nats.url();
    let server = Arc::new(
        Server::start_with(|config| {
            config.events_nats_url = Some(url.clone());
        })
        .await,
    );
    concurrent_run(&server, 10).await;
    let feed = read_all(&server, 1000).await;
    caught_up(&url, &feed).await;
    let health = server.get_public("/health").await.expect(200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["outbox"]["lagRecords"], 0);

    // NATS dies under load: the sale goes on, the server says it is degraded.
    nats.kill();
    let while_down = concurrent_run(&server, 10).await;
    assert_eq!(
        while_down.holds.len(),
        20,
        "every hold went through while NATS was down"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = server.get_public("/health").await.expect(200);
        if health["status"] == "degraded" {
            assert_eq!(health["outbox"]["up"], false);
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart();
    concurrent_run(&server, 10).await;
    let feed = read_all(&server, 1000).await;
    caught_up(&url, &feed).await;
    assert_same(&stream_messages(&url, STREAM).await, &feed);
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("boxoffice_outbox_lag_records 0"),
        "{metrics}"
    );
}

/// The real binary, started with the outbox on `nats`.
struct Boxoffice {
    child: Child,
    base: String,
}

impl Drop for Boxoffice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Boxoffice {
    async fn start(dir: &Path, nats: &str) -> Boxoffice {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args(["--admin-key", ADMIN_KEY, "--jwt-secret", common::JWT_SECRET])
            .args(["--events-nats-url", nats, "--queue-active-max", "1000"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        while !http
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "boxoffice did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Boxoffice { child, base }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary's whole feed.
async fn binary_feed(base: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut events: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let url = if after.is_empty() {
            format!("{base}/api/v1/admin/events?limit=1000")
        } else {
            format!("{base}/api/v1/admin/events?limit=1000&after={after}")
        };
        let page: Value = http
            .get(url)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["events"].as_array().unwrap();
        if batch.is_empty() {
            return events;
        }
        after = page["next"].as_str().unwrap().to_owned();
        events.extend(batch.iter().cloned());
    }
}

/// A burst of joins and charges from `users` users, as fast as the server takes them.
async fn burst(base: &str, concert: u64, users: std::ops::Range<u64>) {
    let http = reqwest::Client::new();
    let sends = users.map(|user| {
        let http = http.clone();
        let base = base.to_owned();
        let token = boxoffice::http::auth::token_for_secret(
            common::JWT_SECRET,
            boxoffice::domain::UserId(user),
            3600,
        );
        tokio::spawn(async move {
            let join = format!("{base}/api/v1/concerts/{concert}/queue");
            let _ = http.post(join).bearer_auth(&token).send().await;
            let charge = format!("{base}/api/v1/wallet/charges");
            let body = json!({"amount": 100});
            let _ = http
                .post(charge)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
        })
    });
    for send in sends.collect::<Vec<_>>() {
        let _ = send.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_boxoffice_killed_while_publishing_neither_repeats_nor_skips_an_event() {
    let Some(binary) = nats_or_skip("outbox") else {
        return;
    };
    let nats = Nats::start(binary);
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Boxoffice::start(dir.path(), &url).await;
    let spec = json!({"title": "Outbox", "venue": "Loopback", "dates": [{"startsAt": "2030-01-01T19:00:00Z",
        "sections": [{"name": "A", "rows": 1, "seatsPerRow": 10, "price": 100}]}]});
    let concert: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/admin/concerts", server.base))
        .bearer_auth(ADMIN_KEY)
        .json(&spec)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let concert = concert["id"].as_u64().unwrap();
    for round in 0..3u64 {
        let users = round * 100 + 1..round * 100 + 101;
        burst(&server.base, concert, users).await;
        // Kill while the relay is still publishing the burst (most rounds).
        tokio::time::sleep(Duration::from_millis(5 + 20 * round)).await;
        server.kill();
        server = Boxoffice::start(dir.path(), &url).await;
    }
    let feed = binary_feed(&server.base).await;
    caught_up(&url, &feed).await;
    assert_same(&stream_messages(&url, STREAM).await, &feed);
    drop(server);
    let _: &Path = dir.path();
}
