//! Contention over real HTTP on a multi-threaded runtime: many clients at once on one
//! seat, one wallet, one reservation, one waiting room, one ticket at many gates, one
//! refund asked for many times or racing the cancellation of its date.

mod common;

use common::{Answer, RawBody, Server};
use futures::future::join_all;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Ten identical POSTs as user 1 with one Idempotency-Key, all at once.
async fn keyed_posts_at_once(
    server: &Arc<Server>,
    path: &'static str,
    body: Value,
    key: &'static str,
) -> Vec<Answer> {
    let token = server.token(1);
    let posts = (0..10).map(|_| {
        let (server, token, body) = (server.clone(), token.clone(), body.clone());
        tokio::spawn(async move {
            let headers = [("Idempotency-Key", key)];
            let body = Some(RawBody::Json(body));
            server
                .send(reqwest::Method::POST, path, Some(&token), body, &headers)
                .await
        })
    });
    join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

async fn admitted_server(users: u64) -> (Arc<Server>, u64, u64) {
    let server = Arc::new(Server::start().await);
    let (concert, date) = server.concert(4, 25, 100).await;
    for user in 1..=users {
        server.admit(concert, user).await;
    }
    (server, concert, date)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_users_holding_one_seat_at_once_make_exactly_one_winner() {
    let (server, concert, date) = admitted_server(50).await;
    let attempts = (1..=50).map(|user| {
        let server = server.clone();
        tokio::spawn(async move { server.hold(user, date, &[7]).await })
    });
    let answers: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(winners.len(), 1);
    for loser in answers.iter().filter(|a| a.status != 201) {
        loser.assert_problem(409, "SEAT_UNAVAILABLE");
        assert_eq!(loser.body["seatIds"], json!([7]));
    }
    assert_eq!(server.seat_status(concert, date, 7).await, "HELD");
    let dates = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(dates[0]["seatsAvailable"], 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_multi_seat_holds_never_share_a_seat() {
    let (server, concert, date) = admitted_server(40).await;
    // User u asks for seats u and u+1 (of 1..=41): every pair overlaps its neighbours.
    let attempts = (1..=40u64).map(|user| {
        let server = server.clone();
        tokio::spawn(async move { (user, server.hold(user, date, &[user, user + 1]).await) })
    });
    let mut owner: HashMap<u64, u64> = HashMap::new();
    for result in join_all(attempts).await {
        let (user, answer) = result.unwrap();
        match answer.status {
            201 => {
                for seat in answer.body["seats"].as_array().unwrap() {
                    let previous = owner.insert(seat["id"].as_u64().unwrap(), user);
                    assert_eq!(previous, None, "seat {seat} held twice");
                }
            }
            _ => answer.assert_problem(409, "SEAT_UNAVAILABLE"),
        }
    }
    assert!(!owner.is_empty());
    for seat in 1..=41 {
        let expected = if owner.contains_key(&seat) {
            "HELD"
        } else {
            "AVAILABLE"
        };
        assert_eq!(
            server.seat_status(concert, date, seat).await,
            expected,
            "seat {seat}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_charges_of_100_make_2000() {
    let server = Arc::new(Server::start().await);
    let charges = (0..20).map(|_| {
        let server = server.clone();
        tokio::spawn(async move { server.charge(1, 100).await })
    });
    let receipts: Vec<_> = join_all(charges)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: HashSet<_> = receipts
        .iter()
        .map(|r| r["chargeId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20);
    let mut balances: Vec<u64> = receipts
        .iter()
        .map(|r| r["balance"].as_u64().unwrap())
        .collect();
    balances.sort_unstable();
    assert_eq!(balances, (1..=20).map(|i| i * 100).collect::<Vec<_>>());
    assert_eq!(server.balance(1).await, 2000);
    let ledger = server
        .get(1, "/api/v1/wallet/transactions")
        .await
        .expect(200);
    assert_eq!(ledger.as_array().unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_charges_with_one_idempotency_key_charge_once() {
    let server = Arc::new(Server::start().await);
    let body = json!({"amount": 5000});
    let answers =
        keyed_posts_at_once(&server, "/api/v1/wallet/charges", body, "double-click-1").await;
    let ids: HashSet<_> = answers
        .iter()
        .map(|a| a.body["chargeId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["balance"], 5000);
    }
    assert_eq!(server.balance(1).await, 5000);
    assert_eq!(
        server
            .get(1, "/api/v1/wallet/transactions")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn paid_setup() -> (Arc<Server>, String) {
    let (server, _, date) = admitted_server(1).await;
    let reservation = server.hold(1, date, &[1, 2]).await.expect(201);
    server.charge(1, 1000).await;
    (server, reservation["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_payments_of_one_reservation_debit_once() {
    let (server, id) = paid_setup().await;
    let payments = (0..10).map(|_| {
        let (server, id) = (server.clone(), id.clone());
        tokio::spawn(async move { server.pay(1, &id).await })
    });
    let answers: Vec<_> = join_all(payments)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1);
    for answer in answers.iter().filter(|a| a.status != 201) {
        answer.assert_problem(409, "ALREADY_PAID");
    }
    assert_eq!(server.balance(1).await, 800);
    assert_eq!(
        server
            .get(1, "/api/v1/payments")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_payments_with_one_idempotency_key_return_the_same_payment() {
    let (server, id) = paid_setup().await;
    let body = json!({"reservationId": id});
    let answers = keyed_posts_at_once(&server, "/api/v1/payments", body, "pay-once").await;
    let ids: HashSet<_> = answers
        .iter()
        .map(|a| a.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(
        answers
            .iter()
            .all(|a| a.status == 201 && a.body["balance"] == 800)
    );
    assert_eq!(server.balance(1).await, 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crowd_joining_at_once_gets_the_cap_active_and_exact_positions_behind() {
    let server = Arc::new(Server::start_with(|c| c.queue_active_max = 50).await);
    let (concert, _) = server.concert(1, 10, 100).await;
    let path = format!("/api/v1/concerts/{concert}/queue");
    let joins = (1..=200).map(|user| {
        let (server, path) = (server.clone(), path.clone());
        tokio::spawn(async move {
            let first = server.post(user, &path, json!(null)).await.expect(201);
            let second = server.post(user, &path, json!(null)).await.expect(200);
            assert_eq!(
                first["ticket"], second["ticket"],
                "joining twice never makes two entries"
            );
        })
    });
    for join in join_all(joins).await {
        join.unwrap();
    }
    let mut active = 0;
    let mut positions = Vec::new();
    for user in 1..=200 {
        let entry = server.get(user, &path).await.expect(200);
        match entry["status"].as_str().unwrap() {
            "ACTIVE" => active += 1,
            "WAITING" => positions.push(entry["position"].as_u64().unwrap()),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(active, 50);
    positions.sort_unstable();
    assert_eq!(positions, (1..=150).collect::<Vec<_>>());
}

/// A concert a month from the server's clock, one date of 100 seats at 100 won; user 1
/// has paid seats 1 and 2. Returns the server, the concert, the date and the reservation.
async fn sold_setup(
    adjust: impl FnOnce(&mut boxoffice::config::Config),
) -> (Arc<Server>, u64, u64, String) {
    let server = Arc::new(Server::start_with(adjust).await);
    let starts_at = (server.clock_now() + chrono::Duration::days(30)).to_rfc3339();
    let body = json!({"title": "T", "venue": "V", "dates": [{"startsAt": starts_at,
        "sections": [{"name": "R", "rows": 4, "seatsPerRow": 25, "price": 100}]}]});
    let created = server
        .admin_post("/api/v1/admin/concerts", body)
        .await
        .expect(201);
    let concert = created["id"].as_u64().unwrap();
    let date = created["dates"][0]["id"].as_u64().unwrap();
    let id = buy(&server, concert, date, 1, &[1, 2]).await;
    (server, concert, date, id)
}

async fn buy(server: &Server, concert: u64, date: u64, user: u64, seats: &[u64]) -> String {
    server.admit(concert, user).await;
    let held = server.hold(user, date, seats).await.expect(201);
    let id = held["id"].as_str().unwrap().to_owned();
    server.charge(user, held["amount"].as_u64().unwrap()).await;
    server.pay(user, &id).await.expect(201);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_scanners_on_one_ticket_admit_it_exactly_once() {
    let (server, _, _, _) = sold_setup(|c| c.scanner_key = Some("gate".into())).await;
    let tickets = server.get(1, "/api/v1/tickets").await.expect(200);
    let code = tickets[0]["code"].as_str().unwrap().to_owned();
    let scans = (0..50).map(|gate| {
        let (server, code) = (server.clone(), code.clone());
        tokio::spawn(async move {
            let key = if gate % 2 == 0 {
                "gate"
            } else {
                common::ADMIN_KEY
            };
            let body = Some(RawBody::Json(json!({"code": code})));
            let path = "/api/v1/admin/checkins";
            server
                .send(reqwest::Method::POST, path, Some(key), body, &[])
                .await
        })
    });
    let answers: Vec<Answer> = join_all(scans)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(admitted.len(), 1, "exactly one gate lets the ticket in");
    let first_use = &admitted[0].body["admittedAt"];
    assert_eq!(admitted[0].body["status"], "ADMITTED");
    for answer in answers.iter().filter(|a| a.status != 200) {
        answer.assert_problem(409, "ALREADY_USED");
        assert_eq!(
            &answer.body["usedAt"], first_use,
            "every refusal names the first use"
        );
    }
    let tickets = server.get(1, "/api/v1/tickets").await.expect(200);
    assert_eq!(tickets[0]["status"], "USED");
    assert_eq!(tickets[1]["status"], "VALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_refunds_of_one_reservation_refund_once() {
    let (server, concert, date, id) = sold_setup(|_| {}).await;
    let path = format!("/api/v1/reservations/{id}/refund");
    let refunds = (0..10).map(|_| {
        let (server, path) = (server.clone(), path.clone());
        tokio::spawn(async move { server.post(1, &path, json!(null)).await })
    });
    let answers: Vec<Answer> = join_all(refunds)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1);
    for answer in answers.iter().filter(|a| a.status != 200) {
        answer.assert_problem(409, "ALREADY_REFUNDED");
    }
    assert_eq!(server.balance(1).await, 200);
    let ledger = server
        .get(1, "/api/v1/wallet/transactions")
        .await
        .expect(200);
    let kinds: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["REFUND", "PAYMENT", "CHARGE"]);
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_racing_the_cancellation_of_their_date_refund_each_reservation_once() {
    let (server, concert, date, first) = sold_setup(|_| {}).await;
    let mut paid = vec![(1, first)];
    for user in 2..=20 {
        paid.push((
            user,
            buy(&server, concert, date, user, &[user * 2 + 1]).await,
        ));
    }
    let refunds = paid.iter().map(|(user, id)| {
        let (server, user, path) = (
            server.clone(),
            *user,
            format!("/api/v1/reservations/{id}/refund"),
        );
        tokio::spawn(async move {
            let answer = server.post(user, &path, json!(null)).await;
            assert!(
                answer.status == 200 || answer.status == 409,
                "{:?}",
                answer.body
            );
            if answer.status == 409 {
                answer.assert_problem(409, "ALREADY_REFUNDED");
            }
        })
    });
    let cancel = {
        let server = server.clone();
        tokio::spawn(async move {
            let path = format!("/api/v1/admin/dates/{date}/cancel");
            server.admin_post(&path, json!(null)).await.expect(200)
        })
    };
    for refund in join_all(refunds).await {
        refund.unwrap();
    }
    assert_eq!(cancel.await.unwrap()["cancelled"], true);
    for (user, id) in &paid {
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
        assert_eq!(refunds.len(), 1, "user {user} is refunded once");
        assert_eq!(refunds[0]["reservationId"], id.as_str());
        let paid_amount = if *user == 1 { 200 } else { 100 };
        assert_eq!(server.balance(*user).await, paid_amount);
    }
    let dates = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(dates[0]["seatsAvailable"], 100);
}
