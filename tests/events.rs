//! The admin event feed over real HTTP: every acknowledged action of a concurrent run
//! appears exactly once, in commit order, with each event linked to the one before;
//! a Server-Sent Events reader cut off at random points and resumed with
//! `Last-Event-ID` misses nothing and repeats nothing; an expired cursor is 410.

mod common;

use common::feed::{concurrent_run, read_all};
use common::{ADMIN_KEY, Server};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Cursors strictly increase and each event names the one before it.
fn assert_linked(events: &[Value]) {
    let mut prev = Value::Null;
    for event in events {
        assert_eq!(event["prev"], prev, "{event}");
        if let (Some(before), Some(now)) = (prev.as_str(), event["cursor"].as_str()) {
            assert!(before < now, "{before} then {now}");
        }
        prev = event["cursor"].clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_action_appears_once_in_commit_order() {
    let server = Arc::new(Server::start().await);
    let ack = concurrent_run(&server, 24).await;
    let events = read_all(&server, 7).await;
    assert_linked(&events);
    let of_type = |kind: &'static str| events.iter().filter(move |e| e["type"] == kind);
    let held: Vec<&str> = of_type("reservation.held")
        .map(|e| e["reservationId"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = held.iter().copied().collect();
    assert_eq!(held.len(), unique.len(), "no hold twice");
    assert_eq!(unique, ack.holds.iter().map(String::as_str).collect());
    let charged: HashSet<&str> = of_type("wallet.charged")
        .map(|e| e["chargeId"].as_str().unwrap())
        .collect();
    assert_eq!(charged.len(), of_type("wallet.charged").count());
    assert_eq!(charged, ack.charges.iter().map(String::as_str).collect());
    let position: HashMap<(&str, &str), usize> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let id = e["reservationId"].as_str()?;
            Some(((e["type"].as_str().unwrap(), id), i))
        })
        .collect();
    assert_eq!(of_type("reservation.paid").count(), ack.payments.len());
    for (reservation, payment) in &ack.payments {
        let paid = position[&("reservation.paid", reservation.as_str())];
        assert_eq!(events[paid]["paymentId"], payment.as_str());
        assert_eq!(events[paid]["seatIds"].as_array().unwrap().len(), 2);
        assert!(position[&("reservation.held", reservation.as_str())] < paid);
        assert!(paid < position[&("queue.completed", reservation.as_str())]);
    }
    assert_eq!(of_type("concert.created").count(), 1);
    assert_eq!(of_type("queue.admitted").count(), 24);
    // Reading it again gives the same events.
    assert_eq!(read_all(&server, 1000).await, events);
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// Reads `count` messages from the stream (after `last_id`, if given), then drops the
/// connection.
async fn read_stream(server: &Server, last_id: Option<&str>, count: usize) -> Vec<Message> {
    let mut request = server
        .http
        .get(format!("{}/api/v1/admin/events/stream", server.base))
        .bearer_auth(ADMIN_KEY);
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut messages = Vec::new();
    while messages.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut message = Message {
                id: None,
                event: None,
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    message.id = Some(id.trim().to_owned());
                } else if let Some(event) = line.strip_prefix("event:") {
                    message.event = Some(event.trim().to_owned());
                } else if let Some(data) = line.strip_prefix("data:") {
                    message.data = serde_json::from_str(data.trim()).unwrap();
                }
            }
            if message.id.is_some() && messages.len() < count {
                messages.push(message);
            }
        }
    }
    messages
}

fn cut_points() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..40, 1..8)
}

#[test]
fn a_stream_cut_at_random_points_and_resumed_misses_and_repeats_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, expected) = runtime.block_on(async {
        let server = Arc::new(Server::start().await);
        concurrent_run(&server, 12).await;
        let expected = read_all(&server, 1000).await;
        (server, expected)
    });
    let config = ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(cuts in cut_points())| {
        runtime.block_on(async {
            let mut got: Vec<Message> = Vec::new();
            let mut cuts = cuts.into_iter();
            while got.len() < expected.len() {
                let take = cuts.next().unwrap_or(expected.len()).min(expected.len() - got.len());
                let last = got.last().and_then(|m| m.id.clone());
                got.extend(read_stream(&server, last.as_deref(), take).await);
            }
            for (message, event) in got.iter().zip(&expected) {
                assert_eq!(message.id.as_deref(), event["cursor"].as_str());
                assert_eq!(message.event.as_deref(), event["type"].as_str());
                assert_eq!(&message.data, event);
            }
            assert_eq!(got.len(), expected.len());
        });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_events_committed_after_it_opened() {
    let server = Arc::new(Server::start().await);
    let (concert, _) = server.concert(1, 5, 100).await;
    let before = read_all(&server, 100).await;
    let last = before.last().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = {
        let server = server.clone();
        tokio::spawn(async move { read_stream(&server, Some(&last), 2).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.admit(concert, 1).await;
    let messages = reader.await.unwrap();
    assert_eq!(messages[0].event.as_deref(), Some("queue.joined"));
    assert_eq!(messages[1].event.as_deref(), Some("queue.admitted"));
    assert_eq!(
        messages[0].data["prev"],
        json!(before.last().unwrap()["cursor"])
    );
}

#[tokio::test]
async fn bad_cursors_and_limits_are_refused_and_an_expired_cursor_is_gone() {
    let mut server = Server::start().await;
    server.concert(1, 5, 100).await;
    let first = read_all(&server, 10).await[0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for query in [
        "?after=42",
        "?after=abc",
        "?limit=0",
        "?limit=1001",
        "?colour=red",
    ] {
        server
            .admin_get(&format!("/api/v1/admin/events{query}"))
            .await
            .assert_problem(400, "INVALID_REQUEST");
    }
    let user = server.get(1, "/api/v1/admin/events").await;
    user.assert_problem(401, "UNAUTHORIZED");
    // After a clean stop the final snapshot covers the first segment; without it the
    // events it held are no longer kept.
    server.stop().await;
    for segment in server.data_files(".log") {
        std::fs::remove_file(segment).unwrap();
    }
    let server = server.restart().await;
    server.concert(1, 5, 100).await;
    let gone = server
        .admin_get(&format!("/api/v1/admin/events?after={first}"))
        .await;
    gone.assert_problem(410, "CURSOR_EXPIRED");
    let oldest = read_all(&server, 10).await[0]["cursor"].clone();
    assert_eq!(gone.body["oldestCursor"], oldest);
    let stream = server
        .send(
            reqwest::Method::GET,
            "/api/v1/admin/events/stream",
            Some(ADMIN_KEY),
            None,
            &[("Last-Event-ID", &first)],
        )
        .await;
    stream.assert_problem(410, "CURSOR_EXPIRED");
}

#[tokio::test]
async fn refunds_pauses_and_check_ins_are_public_events_too() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 5, 100).await;
    server.admit(concert, 1).await;
    server.charge(1, 1000).await;
    let held = server.hold(1, date, &[1, 2]).await.expect(201);
    let id = held["id"].as_str().unwrap();
    server.pay(1, id).await.expect(201);
    let path = format!("/api/v1/reservations/{id}/refund");
    server.post(1, &path, json!(null)).await.expect(200);
    let pause = format!("/api/v1/admin/dates/{date}/pause");
    server.admin_post(&pause, json!(null)).await.expect(200);
    let events = read_all(&server, 100).await;
    let refunded = events
        .iter()
        .find(|e| e["type"] == "reservation.refunded")
        .expect("a reservation.refunded event");
    assert_eq!(refunded["reservationId"], id);
    assert_eq!(refunded["seatIds"], json!([1, 2]));
    assert_eq!(refunded["amount"], 200);
    assert_eq!(refunded["balance"], 1000);
    assert_eq!(refunded["reason"], "REQUESTED");
    let paused = events.last().unwrap();
    assert_eq!(paused["type"], "date.paused");
    assert_eq!(paused["dateId"], date);
}
