//! What follows a sale survives a restart: tickets (their codes still verify, a used
//! one stays used), refunds, pauses and cancellations read the same after a clean
//! restart, from the snapshot and from the log alone; a date's cancellation cut short
//! after its first step is finished by the next start, refunding nobody twice; and
//! steps that race across owners (holds and refunds, scans and payments, payments and
//! cancellations) reach the log in an order that replays.

mod common;

use boxoffice::domain::DateId;
use common::{ADMIN_KEY, RawBody, Server};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long any poll in this file may wait before the test fails.
const POLL_DEADLINE: Duration = Duration::from_secs(10);

/// A concert a month from the server's clock with `dates` dates of 20 seats at 100 won.
async fn concert(server: &Server, dates: usize) -> (u64, Vec<u64>) {
    let starts_at = (server.clock_now() + chrono::Duration::days(30)).to_rfc3339();
    let dates: Vec<Value> = (0..dates)
        .map(|_| {
            json!({"startsAt": starts_at,
                "sections": [{"name": "R", "rows": 2, "seatsPerRow": 10, "price": 100}]})
        })
        .collect();
    let body = json!({"title": "T", "venue": "V", "dates": dates});
    let created = server
        .admin_post("/api/v1/admin/concerts", body)
        .await
        .expect(201);
    let ids = created["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    (created["id"].as_u64().unwrap(), ids)
}

async fn buy(server: &Server, concert: u64, date: u64, user: u64, seats: &[u64]) -> String {
    server.admit(concert, user).await;
    let held = server.hold(user, date, seats).await.expect(201);
    let id = held["id"].as_str().unwrap().to_owned();
    server.charge(user, held["amount"].as_u64().unwrap()).await;
    server.pay(user, &id).await.expect(201);
    id
}

async fn admin(server: &Server, method: reqwest::Method, path: &str) -> common::Answer {
    let body = (method == reqwest::Method::POST).then_some(RawBody::Json(json!(null)));
    server.send(method, path, Some(ADMIN_KEY), body, &[]).await
}

async fn check_in(server: &Server, code: &Value) -> common::Answer {
    let body = Some(RawBody::Json(json!({"code": code})));
    let path = "/api/v1/admin/checkins";
    server
        .send(reqwest::Method::POST, path, Some(ADMIN_KEY), body, &[])
        .await
}

const USERS: u64 = 6;

/// Date A: users 1 to 3 paid, user 1 used a ticket, user 2 refunded, sales paused.
/// Date B: users 4 and 5 paid, user 6 held, then the date was cancelled.
async fn populate(server: &Server) -> (u64, Vec<u64>) {
    let (concert, dates) = concert(server, 2).await;
    let (a, b) = (dates[0], dates[1]);
    for user in 1..=3 {
        buy(server, concert, a, user, &[user * 2 - 1, user * 2]).await;
    }
    let tickets = server.get(1, "/api/v1/tickets").await.expect(200);
    check_in(server, &tickets[0]["code"]).await.expect(200);
    let refunded = server.get(2, "/api/v1/reservations").await.expect(200);
    let path = format!(
        "/api/v1/reservations/{}/refund",
        refunded[0]["id"].as_str().unwrap()
    );
    server.post(2, &path, json!(null)).await.expect(200);
    let pause = format!("/api/v1/admin/dates/{a}/pause");
    admin(server, reqwest::Method::POST, &pause)
        .await
        .expect(200);
    for user in 4..=5 {
        buy(server, concert, b, user, &[user]).await;
    }
    server.admit(concert, 6).await;
    server.hold(6, b, &[9]).await.expect(201);
    let cancel = format!("/api/v1/admin/dates/{b}/cancel");
    admin(server, reqwest::Method::POST, &cancel)
        .await
        .expect(200);
    (concert, dates)
}

/// Everything a user or the operator can read about the scenario.
async fn reads(server: &Server, concert: u64, dates: &[u64]) -> Vec<(String, Value)> {
    let mut reads = Vec::new();
    for user in 1..=USERS {
        for path in [
            "/api/v1/tickets",
            "/api/v1/reservations",
            "/api/v1/wallet",
            "/api/v1/wallet/transactions",
        ] {
            let body = server.get(user, path).await.expect(200);
            reads.push((format!("{path} as {user}"), body));
        }
    }
    reads.push((
        "dates".into(),
        server
            .get_public(&format!("/api/v1/concerts/{concert}/dates"))
            .await
            .expect(200),
    ));
    for date in dates {
        for path in [
            format!("/api/v1/admin/dates/{date}/sales"),
            format!("/api/v1/admin/dates/{date}/reservations"),
        ] {
            let body = admin(server, reqwest::Method::GET, &path).await.expect(200);
            reads.push((path, body));
        }
    }
    reads
}

fn assert_same(before: &[(String, Value)], after: &[(String, Value)]) {
    assert_eq!(before.len(), after.len());
    for ((what, b), (_, a)) in before.iter().zip(after) {
        assert_eq!(b, a, "{what}");
    }
}

#[tokio::test]
async fn tickets_refunds_pauses_and_cancellations_read_the_same_after_restarts() {
    let server = Server::start().await;
    let (concert, dates) = populate(&server).await;
    let before = reads(&server, concert, &dates).await;

    let server = server.restart().await;
    assert_eq!(server.replayed(), 0, "from the snapshot");
    assert_same(&before, &reads(&server, concert, &dates).await);

    let mut server = server;
    server.stop().await;
    for snapshot in server.data_files(".snapshot") {
        std::fs::remove_file(snapshot).unwrap();
    }
    let server = server.restart().await;
    assert_eq!(
        server.replayed(),
        server.recovered_seq(),
        "from the log alone"
    );
    assert_same(&before, &reads(&server, concert, &dates).await);

    // Codes signed before the restarts still verify; a used ticket stays used.
    let tickets = server.get(1, "/api/v1/tickets").await.expect(200);
    let again = check_in(&server, &tickets[0]["code"]).await;
    again.assert_problem(409, "ALREADY_USED");
    assert_eq!(again.body["usedAt"], tickets[0]["usedAt"]);
    check_in(&server, &tickets[1]["code"]).await.expect(200);
    let void = server.get(4, "/api/v1/tickets").await.expect(200);
    check_in(&server, &void[0]["code"])
        .await
        .assert_problem(400, "TICKET_VOID");
    server
        .hold(3, dates[0], &[11])
        .await
        .assert_problem(403, "NOT_ADMITTED");
    server.admit(concert, 3).await;
    server
        .hold(3, dates[0], &[11])
        .await
        .assert_problem(409, "SALES_PAUSED");
}

/// Polls until every reservation in `paid` reads `REFUNDED`.
async fn await_refunded(server: &Server, paid: &[(u64, String)]) {
    let deadline = Instant::now() + POLL_DEADLINE;
    for (user, id) in paid {
        loop {
            let path = format!("/api/v1/reservations/{id}");
            let status = server.get(*user, &path).await.expect(200)["status"].clone();
            if status == "REFUNDED" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} of {user} is {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Each user's ledger holds exactly one refund of their reservation, and the balance
/// is the price paid back.
async fn assert_refunded_once(server: &Server, paid: &[(u64, String)]) {
    for (user, id) in paid {
        let ledger = server
            .get(*user, "/api/v1/wallet/transactions")
            .await
            .expect(200);
        let refunds: Vec<&Value> = ledger
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "REFUND")
            .collect();
        assert_eq!(refunds.len(), 1, "user {user} is refunded exactly once");
        assert_eq!(refunds[0]["reservationId"], id.as_str());
        assert_eq!(server.balance(*user).await, 100);
    }
}

async fn cancellation_cut_short_is_finished_at_start(from_log_alone: bool) {
    let mut server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    let mut paid = Vec::new();
    for user in 1..=10 {
        paid.push((user, buy(&server, concert, date, user, &[user]).await));
    }
    // The first step of a cancellation alone, as a crash right after it leaves it.
    let entry = server.engine.date_entry(DateId(date)).unwrap();
    let left = entry.handle.cancel_date().await.unwrap();
    assert_eq!(left.to_refund.len(), 10);
    // Some were refunded before the crash (here by their holders).
    for (user, id) in &paid[..3] {
        let path = format!("/api/v1/reservations/{id}/refund");
        server.post(*user, &path, json!(null)).await.expect(200);
    }
    server.stop().await;
    if from_log_alone {
        for snapshot in server.data_files(".snapshot") {
            std::fs::remove_file(snapshot).unwrap();
        }
    }

    let server = server.restart().await;
    await_refunded(&server, &paid).await;
    assert_refunded_once(&server, &paid).await;
    let sales = admin(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/admin/dates/{date}/sales"),
    )
    .await
    .expect(200);
    assert_eq!(sales["cancelled"], true);
    assert_eq!(sales["totals"]["available"], 20);
    assert_eq!(sales["totals"]["refunds"], 1000);
    assert_eq!(sales["holds"]["refunded"], 10);

    // Another start, and another cancel: nothing is refunded twice.
    let server = server.restart().await;
    let cancel = format!("/api/v1/admin/dates/{date}/cancel");
    admin(&server, reqwest::Method::POST, &cancel)
        .await
        .expect(200);
    assert_refunded_once(&server, &paid).await;
}

#[tokio::test]
async fn a_cancellation_cut_short_is_finished_by_the_next_start_from_the_snapshot() {
    cancellation_cut_short_is_finished_at_start(false).await;
}

#[tokio::test]
async fn a_cancellation_cut_short_is_finished_by_the_next_start_from_the_log_alone() {
    cancellation_cut_short_is_finished_at_start(true).await;
}

/// Holds of seats that refunds free, sent while the refunds are under way, reach the
/// log after the refunds: the log alone replays (a hold logged first would find its
/// seat still sold and stop the start). The refunds share one wallet shard (user ids
/// 16 apart), so that shard is busy with all of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_racing_the_refunds_that_free_their_seats_replay_from_the_log() {
    let server = std::sync::Arc::new(Server::start().await);
    // Two dates, so that selling out the first does not end the waiting room.
    let (concert, dates) = concert(&server, 2).await;
    let date = dates[0];
    let racers: Vec<u64> = (1000..1020).collect();
    for &user in &racers {
        server.admit(concert, user).await;
    }
    let mut paid = Vec::new();
    for seat in 1..=20u64 {
        let owner = 1 + 16 * seat;
        paid.push((owner, buy(&server, concert, date, owner, &[seat]).await));
    }
    let refunds = paid.iter().map(|(owner, id)| {
        let (server, owner) = (server.clone(), *owner);
        let path = format!("/api/v1/reservations/{id}/refund");
        tokio::spawn(async move { server.post(owner, &path, json!(null)).await })
    });
    let holds = racers.iter().enumerate().map(|(i, &user)| {
        let server = server.clone();
        let seat = i as u64 + 1;
        tokio::spawn(async move {
            for _ in 0..200 {
                if server.hold(user, date, &[seat]).await.status == 201 {
                    return true;
                }
            }
            false
        })
    });
    let (refunds, holds) = tokio::join!(
        futures::future::join_all(refunds),
        futures::future::join_all(holds)
    );
    for refund in refunds {
        refund.unwrap().expect(200);
    }
    let won = holds.into_iter().filter(|h| *h.as_ref().unwrap()).count();
    assert!(won > 0, "some holds won freed seats");

    let before = admin(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/admin/dates/{date}/sales"),
    )
    .await
    .expect(200);
    let server = restart_from_the_log_alone(server).await;
    let after = admin(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/admin/dates/{date}/sales"),
    )
    .await
    .expect(200);
    assert_eq!(before, after);
}

/// Scans of tickets sent while their payments are under way (the codes signed by the
/// test with the server's ticket secret, before any answer could show them) never
/// reach the log ahead of the payments: the log alone replays. The payments share one
/// wallet shard, so its batch is busy with all of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scans_racing_the_payments_of_their_tickets_replay_from_the_log() {
    use boxoffice::domain::ticket::{Claim, TicketKey};
    use boxoffice::domain::{ReservationId, SeatId};
    let server = std::sync::Arc::new(Server::start().await);
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    let secret = std::fs::read_to_string(server.dir.path().join("ticket-secret")).unwrap();
    let key = TicketKey::new(secret.trim());
    let mut held = Vec::new();
    for seat in 1..=20u64 {
        let user = 1 + 16 * seat;
        server.admit(concert, user).await;
        let reservation = server.hold(user, date, &[seat]).await.expect(201);
        server.charge(user, 100).await;
        let id = reservation["id"].as_str().unwrap().to_owned();
        let claim = Claim {
            date_id: boxoffice::domain::DateId(date),
            seat_id: SeatId(seat as u32),
            reservation_id: ReservationId(id.parse().unwrap()),
        };
        held.push((user, id, key.sign(&claim)));
    }
    let payments = held.iter().map(|(user, id, _)| {
        let (server, user, id) = (server.clone(), *user, id.clone());
        tokio::spawn(async move { server.pay(user, &id).await })
    });
    let scans = held.iter().map(|(_, _, code)| {
        let (server, code) = (server.clone(), code.clone());
        tokio::spawn(async move {
            for _ in 0..500 {
                let answer = check_in(&server, &json!(code)).await;
                if answer.status == 200 {
                    return true;
                }
                answer.assert_problem(400, "TICKET_INVALID");
            }
            false
        })
    });
    let (payments, scans) = tokio::join!(
        futures::future::join_all(payments),
        futures::future::join_all(scans)
    );
    for payment in payments {
        payment.unwrap().expect(201);
    }
    assert!(scans.into_iter().all(|s| s.unwrap()), "every ticket got in");

    let sales = format!("/api/v1/admin/dates/{date}/sales");
    let before = admin(&server, reqwest::Method::GET, &sales)
        .await
        .expect(200);
    assert_eq!(before["totals"]["admitted"], 20);
    let server = restart_from_the_log_alone(server).await;
    let after = admin(&server, reqwest::Method::GET, &sales)
        .await
        .expect(200);
    assert_eq!(before, after);
}

/// Payments racing the cancellation of their date: each either lands before it (and
/// is refunded by it) or is refused; the log alone replays, though a payment (logged
/// by its wallet) may follow the cancellation in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_racing_the_cancellation_of_their_date_replay_from_the_log() {
    let server = std::sync::Arc::new(Server::start().await);
    let (concert, dates) = concert(&server, 2).await;
    let date = dates[0];
    let mut held = Vec::new();
    for seat in 1..=20u64 {
        let user = 1 + 16 * seat;
        server.admit(concert, user).await;
        let reservation = server.hold(user, date, &[seat]).await.expect(201);
        server.charge(user, 100).await;
        held.push((user, reservation["id"].as_str().unwrap().to_owned()));
    }
    let payments = held.iter().map(|(user, id)| {
        let (server, user, id) = (server.clone(), *user, id.clone());
        tokio::spawn(async move { server.pay(user, &id).await })
    });
    let cancel = {
        let server = server.clone();
        tokio::spawn(async move {
            let path = format!("/api/v1/admin/dates/{date}/cancel");
            admin(&server, reqwest::Method::POST, &path).await
        })
    };
    let payments = futures::future::join_all(payments).await;
    cancel.await.unwrap().expect(200);
    for (answer, (user, _)) in payments.into_iter().zip(&held) {
        let answer = answer.unwrap();
        if answer.status != 201 {
            answer.assert_problem(409, "RESERVATION_CANCELLED");
        }
        // Paid and refunded, or never paid: the money is back either way.
        assert_eq!(server.balance(*user).await, 100);
    }
    // Every payment that got in before the cancellation is refunded by it.
    let cancel = format!("/api/v1/admin/dates/{date}/cancel");
    admin(&server, reqwest::Method::POST, &cancel)
        .await
        .expect(200);
    let sales = format!("/api/v1/admin/dates/{date}/sales");
    let before = admin(&server, reqwest::Method::GET, &sales)
        .await
        .expect(200);
    assert_eq!(before["totals"]["sold"], 0);
    let server = restart_from_the_log_alone(server).await;
    let after = admin(&server, reqwest::Method::GET, &sales)
        .await
        .expect(200);
    assert_eq!(before, after);
}

/// Stops the server, removes its snapshots and starts it again: everything it then
/// shows was replayed from the log alone.
async fn restart_from_the_log_alone(server: std::sync::Arc<Server>) -> Server {
    let mut server = std::sync::Arc::into_inner(server).expect("the last handle");
    server.stop().await;
    for snapshot in server.data_files(".snapshot") {
        std::fs::remove_file(snapshot).unwrap();
    }
    let server = server.restart().await;
    assert_eq!(
        server.replayed(),
        server.recovered_seq(),
        "from the log alone"
    );
    server
}
