//! Slow and idle clients over real sockets: a connection that sends nothing, half a
//! header, half a body, or nothing after its first answer is closed once its timeout
//! passes; at the connection cap the server still answers `/health`; past the requests
//! in flight a request is shed with 503; and SIGTERM with such clients open ends the
//! real binary within the drain bound.
//!
//! Timeouts are set short here so the tests are quick. Each check allows generous
//! slack on top of the configured time: they prove that a connection is closed, not
//! how fast.

mod common;

use common::Server;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The short timeout most tests configure.
const SHORT: Duration = Duration::from_millis(400);
/// A timeout no test waits for.
const LONG_MS: u64 = 60_000;
/// How long past its timeout a connection may take to be closed before a test fails.
const SLACK: Duration = Duration::from_secs(10);

/// Connects to the server.
async fn connect(server: &Server) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// Reads until the server closes the connection; returns what came and how long it
/// took. Fails the test if the connection is still open after `SLACK` plus `timeout`.
async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(timeout + SLACK, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection is still open after {:?}",
        started.elapsed()
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Sends a whole `GET path` and reads one answer's status line and headers (the
/// bodies asked for here are small and come in the same read).
async fn get_once(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(SLACK, stream.read(&mut buffer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let server = Server::start_with(|c| c.header_read_timeout_ms = SHORT.as_millis() as u64).await;
    let mut idle = connect(&server).await;
    let (received, waited) = read_until_closed(&mut idle, SHORT).await;
    assert_eq!(received, "");
    assert!(
        waited >= SHORT - Duration::from_millis(50),
        "closed early: {waited:?}"
    );
    server.get_public("/health").await.expect(200);
}

#[tokio::test]
async fn a_connection_that_sends_half_a_header_is_closed_after_the_header_read_timeout() {
    let server = Server::start_with(|c| c.header_read_timeout_ms = SHORT.as_millis() as u64).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let (received, waited) = read_until_closed(&mut slow, SHORT).await;
    assert!(!received.contains("200 OK"), "{received}");
    assert!(
        waited >= SHORT - Duration::from_millis(50),
        "closed early: {waited:?}"
    );
    server.get_public("/health").await.expect(200);
}

#[tokio::test]
async fn a_request_whose_body_stops_halfway_gets_408_and_its_connection_is_closed() {
    let server = Server::start_with(|c| {
        c.body_read_timeout_ms = SHORT.as_millis() as u64;
        c.header_read_timeout_ms = LONG_MS;
        c.keep_alive_timeout_ms = LONG_MS;
    })
    .await;
    let token = server.token(1);
    let mut slow = connect(&server).await;
    let head = format!(
        "POST /api/v1/wallet/charges HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"amount\": 1"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let (received, waited) = read_until_closed(&mut slow, SHORT).await;
    assert_eq!(status_of(&received), "408", "{received}");
    assert!(received.contains("REQUEST_TIMEOUT"), "{received}");
    assert!(
        waited >= SHORT - Duration::from_millis(50),
        "closed early: {waited:?}"
    );
    assert_eq!(server.balance(1).await, 0, "nothing was charged");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = Server::start_with(|c| {
        c.header_read_timeout_ms = LONG_MS;
        c.keep_alive_timeout_ms = SHORT.as_millis() as u64;
    })
    .await;
    let mut client = connect(&server).await;
    let answer = get_once(&mut client, "/api/v1/concerts").await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    let (received, waited) = read_until_closed(&mut client, SHORT).await;
    assert_eq!(received, "");
    assert!(
        waited >= SHORT - Duration::from_millis(50),
        "closed early: {waited:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_that_keeps_asking_stays_open() {
    let server = Server::start_with(|c| {
        c.header_read_timeout_ms = LONG_MS;
        c.keep_alive_timeout_ms = 2_000;
    })
    .await;
    let mut client = connect(&server).await;
    for _ in 0..5 {
        let answer = get_once(&mut client, "/api/v1/concerts").await;
        assert_eq!(status_of(&answer), "200", "{answer}");
    }
}

#[tokio::test]
async fn a_health_probe_on_a_new_connection_is_answered_once_then_closed() {
    let server = Server::start_with(|c| c.keep_alive_timeout_ms = LONG_MS).await;
    let mut probe = connect(&server).await;
    let answer = get_once(&mut probe, "/health").await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let (received, _) = read_until_closed(&mut probe, Duration::ZERO).await;
    assert_eq!(received, "");
}

#[tokio::test]
async fn at_the_connection_cap_health_still_answers_and_other_requests_are_shed() {
    const CAP: usize = 8;
    let server = Server::start_with(|c| {
        c.max_connections = CAP;
        c.header_read_timeout_ms = LONG_MS;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(connect(&server).await);
    }
    // The cap is taken by idle clients; the next connections are reserve ones.
    let mut reserve = connect(&server).await;
    let answer = get_once(&mut reserve, "/health").await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    let (_, _) = read_until_closed(&mut reserve, Duration::ZERO).await;

    let mut reserve = connect(&server).await;
    let answer = get_once(&mut reserve, "/api/v1/concerts").await;
    assert_eq!(status_of(&answer), "503", "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("OVERLOADED"), "{answer}");

    // When an idle client goes, its place is free again.
    drop(idle.pop());
    let deadline = Instant::now() + SLACK;
    loop {
        let mut client = connect(&server).await;
        let answer = get_once(&mut client, "/api/v1/concerts").await;
        if status_of(&answer) == "200" {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real binary on a free port with its output in `log`; killed when dropped.
struct Process {
    child: std::process::Child,
    address: String,
    log: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        // It has usually exited already; either way it must not outlive the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    async fn start(dir: &std::path::Path, extra: &[&str]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args([
                "--admin-key",
                common::ADMIN_KEY,
                "--jwt-secret",
                common::JWT_SECRET,
            ])
            .arg("--listen")
            .arg(&address)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let process = Process {
            child,
            address,
            log,
        };
        let deadline = Instant::now() + SLACK;
        loop {
            if let Ok(mut stream) = TcpStream::connect(&process.address).await {
                let answer = get_once(&mut stream, "/health").await;
                if status_of(&answer) == "200" {
                    return process;
                }
            }
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the process to exit; fails the test after `bound`.
    async fn wait_exit(&mut self, bound: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            let printed = std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(
                started.elapsed() < bound,
                "still running {:?} after SIGTERM:\n{printed}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test]
async fn sigterm_with_slow_clients_open_exits_within_the_drain_bound_after_a_final_snapshot() {
    const DRAIN: Duration = Duration::from_millis(1_000);
    let dir = tempfile::tempdir().unwrap();
    let drain_ms = DRAIN.as_millis().to_string();
    let mut process = Process::start(
        dir.path(),
        &[
            "--shutdown-drain-ms",
            &drain_ms,
            "--header-read-timeout-ms",
            "60000",
            "--body-read-timeout-ms",
            "60000",
            "--keep-alive-timeout-ms",
            "60000",
        ],
    )
    .await;
    // A sale's worth of change, so that the final snapshot has something to keep.
    let created = reqwest::Client::new()
        .post(format!("http://{}/api/v1/admin/concerts", process.address))
        .bearer_auth(common::ADMIN_KEY)
        .json(&common::concert_body(1, 10, 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let connect = || TcpStream::connect(process.address.clone());
    // Half a header, half a body, and a kept-alive connection after one request.
    let mut half_header = connect().await.unwrap();
    half_header
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut half_body = connect().await.unwrap();
    half_body
        .write_all(
            b"POST /api/v1/admin/concerts HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"ti",
        )
        .await
        .unwrap();
    let mut kept_alive = connect().await.unwrap();
    let answer = get_once(&mut kept_alive, "/api/v1/concerts").await;
    assert_eq!(status_of(&answer), "200", "{answer}");

    let pid = process.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = process.wait_exit(DRAIN + SLACK).await;
    let printed = std::fs::read_to_string(&process.log).unwrap();
    assert!(status.success(), "{status:?}:\n{printed}");
    assert!(printed.contains("stopped"), "{printed}");
    let snapshots = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!(snapshots >= 1, "a final snapshot is written:\n{printed}");
    drop((half_header, half_body, kept_alive));
}

#[tokio::test]
async fn past_the_requests_in_flight_a_request_is_shed_with_503_and_health_still_answers() {
    let server = Server::start_with(|c| {
        c.max_requests_in_flight = 1;
        c.shed_wait_ms = 0;
        c.body_read_timeout_ms = LONG_MS;
    })
    .await;
    let token = server.token(1);
    // A request whose body never comes holds the one place in flight.
    let mut slow = connect(&server).await;
    let head = format!(
        "POST /api/v1/wallet/charges HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"amount\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let deadline = Instant::now() + SLACK;
    let shed = loop {
        let answer = server.get_public("/api/v1/concerts").await;
        if answer.status == 503 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was shed: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shed.assert_problem(503, "OVERLOADED");
    assert_eq!(shed.headers["retry-after"], "1");
    server.get_public("/health").await.expect(200);
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("boxoffice_http_shed_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        shed_total >= Some(1),
        "shed requests are counted: {shed_total:?}"
    );
    // When the slow request goes, its place is free again.
    drop(slow);
    let deadline = Instant::now() + SLACK;
    while server.get_public("/api/v1/concerts").await.status != 200 {
        assert!(Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.balance(1).await, 0);
}
