//! Contention over real HTTP on a multi-threaded runtime: many clients at once on one
//! seat, one wallet, one reservation, one waiting room.

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
