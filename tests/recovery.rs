//! Restart and recovery: a clean restart shows exactly what was there, a hold whose
//! deadline passed while the server was down expires, a torn tail is cut off, damage
//! in the middle of the log or a second server stops the start, a damaged newest
//! snapshot falls back to the older one plus the log, and a clean stop frees the data
//! directory for the next start.

mod common;

use boxoffice::app;
use boxoffice::store::StoreError;
use boxoffice::store::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN};
use common::{RawBody, Server};
use rand::Rng;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any poll in this file may wait before the test fails.
const POLL_DEADLINE: Duration = Duration::from_secs(10);
/// How often a poll looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What `populate` did that a test checks afterwards.
struct Scenario {
    concert: u64,
    date: u64,
    users: Vec<u64>,
    /// User 1's charge made with `Idempotency-Key: charge-1`.
    keyed_charge: Value,
    /// User 3's payment made with `Idempotency-Key: pay-3`.
    keyed_payment: Value,
    /// The reservation user 3 paid.
    paid_by_3: String,
}

/// A server whose waiting room has two slots, as `populate` expects.
async fn two_slot_server(adjust: impl FnOnce(&mut boxoffice::config::Config)) -> Server {
    Server::start_with(|config| {
        config.queue_active_max = 2;
        adjust(config);
    })
    .await
}

/// POST as `user` with an `Idempotency-Key`.
async fn post_with_key(server: &Server, user: u64, path: &str, body: Value, key: &str) -> Value {
    let answer = server
        .send(
            reqwest::Method::POST,
            path,
            Some(&server.token(user)),
            Some(RawBody::Json(body)),
            &[("Idempotency-Key", key)],
        )
        .await;
    assert!(
        answer.status / 100 == 2,
        "{}: {:?}",
        answer.status,
        answer.body
    );
    answer.body
}

/// Polls until `user`'s queue entry has `status` (a freed slot is handed out by the
/// waiting room's actor, not by the request that freed it).
async fn await_entry_status(server: &Server, concert: u64, user: u64, status: &str) {
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        let entry = server
            .get(user, &format!("/api/v1/concerts/{concert}/queue"))
            .await
            .expect(200);
        if entry["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "user {user} is still {entry:?}, not {status}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Every kind of action, on a waiting room of two slots: two users pay (each
/// payment hands a slot on), one cancels, two keep live holds, one leaves the line,
/// one still waits, one only charges; charges and a payment carry idempotency keys.
async fn populate(server: &Server) -> Scenario {
    let (concert, date) = server.concert(2, 10, 10_000).await;
    let queue = format!("/api/v1/concerts/{concert}/queue");
    server.admit(concert, 1).await;
    server.admit(concert, 2).await;
    for user in 3..=6 {
        let entry = server.post(user, &queue, json!(null)).await.expect(201);
        assert_eq!(entry["status"], "WAITING");
        assert_eq!(entry["position"], user - 2);
    }
    server.delete(4, &queue).await.expect(204);

    let charges = "/api/v1/wallet/charges";
    let keyed_charge =
        post_with_key(server, 1, charges, json!({"amount": 100_000}), "charge-1").await;
    let paid_by_1 = server.hold(1, date, &[1, 2]).await.expect(201);
    server
        .pay(1, paid_by_1["id"].as_str().unwrap())
        .await
        .expect(201);
    await_entry_status(server, concert, 3, "ACTIVE").await;

    server.charge(3, 50_000).await;
    post_with_key(server, 3, charges, json!({"amount": 30_000}), "charge-3").await;
    let held_by_3 = server.hold(3, date, &[5]).await.expect(201);
    let paid_by_3 = held_by_3["id"].as_str().unwrap().to_owned();
    let keyed_payment = post_with_key(
        server,
        3,
        "/api/v1/payments",
        json!({"reservationId": paid_by_3}),
        "pay-3",
    )
    .await;
    await_entry_status(server, concert, 5, "ACTIVE").await;

    server.charge(2, 5_000).await;
    let cancelled = server.hold(2, date, &[7, 8]).await.expect(201);
    let cancelled = format!("/api/v1/reservations/{}", cancelled["id"].as_str().unwrap());
    server.delete(2, &cancelled).await.expect(204);
    let held_by_2 = server.hold(2, date, &[9]).await.expect(201);
    server
        .pay(2, held_by_2["id"].as_str().unwrap())
        .await
        .assert_problem(402, "INSUFFICIENT_BALANCE");
    server.hold(5, date, &[10, 11]).await.expect(201);
    server.charge(7, 1_234).await;

    let entry = server.get(6, &queue).await.expect(200);
    assert_eq!(
        (&entry["status"], &entry["position"]),
        (&json!("WAITING"), &json!(1))
    );
    server
        .get(4, &queue)
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
    Scenario {
        concert,
        date,
        users: (1..=7).collect(),
        keyed_charge,
        keyed_payment,
        paid_by_3,
    }
}

/// Everything a client can read about the scenario's concert and users, by request.
/// A waiting entry's `expiresAt` is left out: polls are not logged, so recovery gives
/// every waiting entry a fresh idle window.
async fn reads(server: &Server, scenario: &Scenario) -> Map<String, Value> {
    let (concert, date) = (scenario.concert, scenario.date);
    let mut reads = Map::new();
    let public = [
        "/api/v1/concerts".to_owned(),
        format!("/api/v1/concerts/{concert}"),
        format!("/api/v1/concerts/{concert}/dates"),
        format!("/api/v1/concerts/{concert}/dates/{date}/seats"),
        format!("/api/v1/concerts/{concert}/dates/{date}/seats?status=AVAILABLE"),
    ];
    for path in public {
        let body = server.get_public(&path).await.expect(200);
        reads.insert(path, body);
    }
    for &user in &scenario.users {
        let mut paths = vec![
            "/api/v1/reservations".to_owned(),
            "/api/v1/wallet".to_owned(),
            "/api/v1/wallet/transactions?limit=1000".to_owned(),
            "/api/v1/payments".to_owned(),
        ];
        let reservations = server.get(user, "/api/v1/reservations").await.expect(200);
        for reservation in reservations.as_array().unwrap() {
            let id = reservation["id"].as_str().unwrap();
            paths.push(format!("/api/v1/reservations/{id}"));
        }
        for path in paths {
            let body = server.get(user, &path).await.expect(200);
            reads.insert(format!("user {user}: GET {path}"), body);
        }
        let queue = format!("/api/v1/concerts/{concert}/queue");
        let mut entry = server.get(user, &queue).await;
        if entry.body["status"] == "WAITING" {
            entry.body.as_object_mut().unwrap().remove("expiresAt");
        }
        reads.insert(
            format!("user {user}: GET {queue}"),
            json!({"status": entry.status, "body": entry.body}),
        );
    }
    reads
}

/// Asserts two sets of reads are the same, naming the first request that differs.
#[track_caller]
fn assert_same_reads(before: &Map<String, Value>, after: &Map<String, Value>) {
    for (request, value) in before {
        assert_eq!(after.get(request), Some(value), "{request}");
    }
    assert_eq!(before.len(), after.len());
}

/// Repeats the scenario's keyed charge and payment: each answers as the first time
/// did, and nothing changes (no second charge, no second payment).
async fn assert_keys_replay(server: &Server, scenario: &Scenario, before: &Map<String, Value>) {
    let charge = post_with_key(
        server,
        1,
        "/api/v1/wallet/charges",
        json!({"amount": 100_000}),
        "charge-1",
    )
    .await;
    assert_eq!(charge, scenario.keyed_charge);
    let payment = post_with_key(
        server,
        3,
        "/api/v1/payments",
        json!({"reservationId": scenario.paid_by_3}),
        "pay-3",
    )
    .await;
    assert_eq!(payment, scenario.keyed_payment);
    assert_eq!(payment["reservationId"], scenario.paid_by_3.as_str());
    assert_same_reads(before, &reads(server, scenario).await);
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        std::fs::remove_file(path).unwrap();
    }
}

/// Offsets and lengths of the records of a log segment, by its framing alone.
fn records(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while offset + RECORD_HEADER_LEN <= segment.len() {
        let payload_len = u32::from_le_bytes(segment[offset..offset + 4].try_into().unwrap());
        let len = RECORD_HEADER_LEN + payload_len as usize;
        assert!(offset + len <= segment.len(), "a whole record at {offset}");
        records.push((offset, len));
        offset += len;
    }
    assert_eq!(
        offset,
        segment.len(),
        "the segment ends with a whole record"
    );
    records
}

#[tokio::test]
async fn every_read_is_the_same_after_a_clean_restart_and_keys_still_replay() {
    let server = two_slot_server(|_| {}).await;
    let scenario = populate(&server).await;
    let before = reads(&server, &scenario).await;

    let server = server.restart().await;
    assert_eq!(server.data_files(".snapshot").len(), 1);
    assert_eq!(
        server.replayed(),
        0,
        "the clean stop's snapshot holds it all"
    );
    assert_same_reads(&before, &reads(&server, &scenario).await);

    assert_keys_replay(&server, &scenario, &before).await;
}

#[tokio::test]
async fn a_second_restart_starts_from_the_snapshot_the_first_stop_wrote() {
    let server = two_slot_server(|_| {}).await;
    let scenario = populate(&server).await;
    let server = server.restart().await;
    let first_snapshots = server.data_files(".snapshot");
    assert_eq!(first_snapshots.len(), 1);
    server.charge(7, 766).await;
    assert_eq!(server.balance(7).await, 2_000);
    let before = reads(&server, &scenario).await;

    let server = server.restart().await;
    let snapshots = server.data_files(".snapshot");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert_eq!(snapshots[0], first_snapshots[0]);
    assert_eq!(server.replayed(), 0);
    assert_same_reads(&before, &reads(&server, &scenario).await);

    let server = server.restart().await;
    assert_eq!(server.replayed(), 0);
    assert_same_reads(&before, &reads(&server, &scenario).await);
}

#[tokio::test]
async fn a_hold_whose_deadline_passed_while_the_server_was_down_is_expired_after_recovery() {
    let mut server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = server.hold(1, date, &[1]).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.stop().await;
    server.advance(400);

    let server = server.restart().await;
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    let reservation = format!("/api/v1/reservations/{id}");
    assert_eq!(
        server.get(1, &reservation).await.expect(200)["status"],
        "EXPIRED"
    );
    // The date's and the waiting room's tickers record the expiry and the entry's end.
    let deadline = Instant::now() + POLL_DEADLINE;
    while server.engine.events_total() < 2 {
        assert!(Instant::now() < deadline, "the expiry was not recorded");
        tokio::time::sleep(POLL_EVERY).await;
    }
    await_entry_status(&server, concert, 1, "EXPIRED").await;
    let dates = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(dates[0]["seatsAvailable"], 4);

    // The expiry is in the log: the next start recovers past it, with the same reads.
    let seq = server.recovered_seq() + server.engine.events_total();
    let server = server.restart().await;
    assert_eq!(server.recovered_seq(), seq);
    assert_eq!(
        server.get(1, &reservation).await.expect(200)["status"],
        "EXPIRED"
    );
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    await_entry_status(&server, concert, 1, "EXPIRED").await;
    server.admit(concert, 2).await;
    server.hold(2, date, &[1]).await.expect(201);
}

/// Stops, removes the snapshots (so recovery replays the whole log), appends what
/// `garbage` makes from the segment to it, and checks the restart cuts exactly that off.
async fn a_torn_tail_is_cut_off(garbage: impl FnOnce(&[u8]) -> Vec<u8>) {
    let mut server = two_slot_server(|_| {}).await;
    let scenario = populate(&server).await;
    let before = reads(&server, &scenario).await;
    server.stop().await;
    remove_all(&server.data_files(".snapshot"));
    let segment = server.data_files(".log").pop().expect("a log segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = bytes.len() as u64;
    let extra = garbage(&bytes);
    assert!(!extra.is_empty());
    bytes.extend_from_slice(&extra);
    std::fs::write(&segment, &bytes).unwrap();

    let server = server.restart().await;
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
    assert_eq!(server.replayed(), server.recovered_seq());
    assert_same_reads(&before, &reads(&server, &scenario).await);
    // The keys were rebuilt from the log alone.
    assert_keys_replay(&server, &scenario, &before).await;
}

#[tokio::test]
async fn random_bytes_after_the_last_record_are_cut_off_at_restart() {
    a_torn_tail_is_cut_off(|_| {
        let mut garbage = [0u8; 37];
        rand::rng().fill(&mut garbage[..]);
        garbage.to_vec()
    })
    .await;
}

#[tokio::test]
async fn a_half_written_last_record_is_cut_off_at_restart() {
    a_torn_tail_is_cut_off(|segment| {
        let &(offset, len) = records(segment).last().expect("records");
        // The next record as a crash mid-write leaves it: the last one's bytes with
        // the next sequence number, cut after half its payload.
        let mut torn = segment[offset..offset + len].to_vec();
        let seq = u64::from_le_bytes(torn[8..16].try_into().unwrap());
        torn[8..16].copy_from_slice(&(seq + 1).to_le_bytes());
        torn.truncate(RECORD_HEADER_LEN + (len - RECORD_HEADER_LEN) / 2);
        torn
    })
    .await;
}

/// Runs the binary on `dir` and returns its exit status and everything it printed;
/// kills it if it is still running after the poll deadline.
async fn run_binary(dir: &Path) -> (std::process::ExitStatus, String) {
    let output = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (output.path().join("stdout"), output.path().join("stderr"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-key",
            "k",
            "--jwt-secret",
            "s",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + POLL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started on a damaged log and kept running");
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let printed =
        std::fs::read_to_string(&stdout).unwrap() + &std::fs::read_to_string(&stderr).unwrap();
    (status, printed)
}

#[tokio::test]
async fn a_damaged_record_followed_by_valid_ones_stops_the_start_and_names_file_and_offset() {
    let mut server = two_slot_server(|c| {
        c.snapshot_every_events = 1_000_000;
        c.snapshot_interval_secs = 3600;
    })
    .await;
    populate(&server).await;
    server.stop().await;
    // With its only snapshot gone, recovery must read the log from the first record.
    remove_all(&server.data_files(".snapshot"));
    let segments = server.data_files(".log");
    assert_eq!(segments.len(), 1, "{segments:?}");
    let segment = &segments[0];
    let bytes = std::fs::read(segment).unwrap();
    let first = records(&bytes)[0];
    assert!(records(&bytes).len() > 10);
    assert!(
        first.1 > RECORD_HEADER_LEN + 4,
        "the byte is in the first record"
    );
    flip_byte(segment, SEGMENT_HEADER_LEN + 20);
    let damaged = std::fs::read(segment).unwrap();

    match app::build(&server.config, server.clock.clone()).await {
        Err(StoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(&path, segment);
            assert_eq!(offset, SEGMENT_HEADER_LEN as u64);
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("the server started on a damaged log"),
    }
    let error = app::build(&server.config, server.clock.clone())
        .await
        .err()
        .unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();
    let message = error.to_string();
    assert!(message.contains(name), "{message}");
    assert!(
        message.contains(&format!("byte {SEGMENT_HEADER_LEN}")),
        "{message}"
    );
    assert_eq!(
        std::fs::read(segment).unwrap(),
        damaged,
        "nothing was cut off"
    );

    let (status, printed) = run_binary(server.dir.path()).await;
    assert!(!status.success(), "{status}: {printed}");
    assert!(printed.contains(name), "{printed}");
    assert!(
        printed.contains(&format!("byte {SEGMENT_HEADER_LEN}")),
        "{printed}"
    );
    assert_eq!(
        std::fs::read(segment).unwrap(),
        damaged,
        "nothing was cut off"
    );
}

#[tokio::test]
async fn a_damaged_newest_snapshot_falls_back_to_the_older_one_and_the_log() {
    let mut server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 1_000).await;
    server.admit(concert, 1).await;
    server.admit(concert, 2).await;
    server.charge(1, 10_000).await;
    let held = server.hold(1, date, &[1, 2]).await.expect(201);
    let older = server
        .engine
        .journal()
        .snapshot()
        .await
        .expect("a snapshot");
    server
        .pay(1, held["id"].as_str().unwrap())
        .await
        .expect(201);
    server.charge(2, 700).await;
    server.hold(2, date, &[3]).await.expect(201);
    let scenario = Scenario {
        concert,
        date,
        users: vec![1, 2],
        keyed_charge: Value::Null,
        keyed_payment: Value::Null,
        paid_by_3: String::new(),
    };
    let before = reads(&server, &scenario).await;
    server.stop().await;
    let snapshots = server.data_files(".snapshot");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = &snapshots[1];
    let size = std::fs::metadata(newest).unwrap().len() as usize;
    flip_byte(
        newest,
        SNAPSHOT_HEADER_LEN + (size - SNAPSHOT_HEADER_LEN) / 2,
    );

    let server = server.restart().await;
    assert_eq!(server.recovered_seq() - server.replayed(), older);
    assert!(server.replayed() > 0);
    assert_same_reads(&before, &reads(&server, &scenario).await);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let mut server = Server::start().await;
    server.charge(1, 10).await;
    match app::build(&server.config, server.clock.clone()).await {
        Err(StoreError::Locked(dir)) => assert_eq!(dir, server.dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two servers share a data directory"),
    }
    assert_eq!(server.balance(1).await, 10);
    server.charge(1, 5).await;

    // Once the first has stopped, the directory opens, with what the first logged.
    server.stop().await;
    let server = server.restart().await;
    assert_eq!(server.balance(1).await, 15);
}

#[tokio::test]
async fn the_data_directory_is_free_the_moment_a_clean_stop_returns() {
    let mut server = Server::start().await;
    server.stop().await;
    // `Journal::stop` promises the directory is released when it returns; a start
    // right after it (as a supervisor restarting in process would do) must succeed.
    for start in 1..=30u64 {
        let app = match app::build(&server.config, server.clock.clone()).await {
            Ok(app) => app,
            Err(e) => panic!("start {start} right after a clean stop: {e}"),
        };
        let user = boxoffice::domain::UserId(1);
        let amount = boxoffice::domain::Won(1);
        app.engine
            .charge(user, amount, None)
            .await
            .expect("charged");
        assert_eq!(
            app.engine.balance(user).await.expect("a balance"),
            boxoffice::domain::Won(start)
        );
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_paid_while_the_waiting_room_is_busy_replay_after_a_restart() {
    let server = Server::start_with(|c| c.queue_active_max = 100_000).await;
    let server = std::sync::Arc::new(server);
    let (concert, date) = server.concert(3, 20, 100).await;
    let buyers: Vec<u64> = (1..=20).collect();
    for &user in &buyers {
        server.charge(user, 1_000).await;
    }
    for wave in 0..3 {
        for &user in &buyers {
            server.admit(concert, user).await;
        }
        // Joins of many others keep the room's mailbox busy, so the room's bookkeeping
        // of a hold may still be queued when the payment for that hold is logged.
        let joiners: Vec<_> = (0..2_000u64)
            .map(|n| {
                let engine = server.engine.clone();
                let user = boxoffice::domain::UserId(10_000 * (wave + 1) + n);
                let concert = boxoffice::domain::ConcertId(concert);
                tokio::spawn(async move { engine.join_queue(concert, user).await })
            })
            .collect();
        let purchases: Vec<_> = buyers
            .iter()
            .map(|&user| {
                let server = server.clone();
                tokio::spawn(async move {
                    let seat = wave * 20 + user;
                    let held = server.hold(user, date, &[seat]).await.expect(201);
                    let id = held["id"].as_str().unwrap();
                    server.pay(user, id).await.expect(201);
                })
            })
            .collect();
        for task in purchases {
            task.await.unwrap();
        }
        for task in joiners {
            task.await.unwrap().expect("joined");
        }
    }
    // The replica that writes snapshots applies the log in order, as recovery does.
    let snapshot = server.engine.journal().snapshot().await;
    assert!(
        snapshot.is_ok(),
        "the snapshot replica is gone: {snapshot:?}"
    );
    let mut server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    server.stop().await;
    // Recover from the log alone.
    remove_all(&server.data_files(".snapshot"));
    let server = server.restart().await;
    for &user in &buyers {
        assert_eq!(server.balance(user).await, 700);
        for wave in 0..3 {
            let seat = wave * 20 + user;
            assert_eq!(server.seat_status(concert, date, seat).await, "SOLD");
        }
    }
}
