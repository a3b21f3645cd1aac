//! The API end to end over real HTTP: the main flows, expiry with a manual clock,
//! and the waiting room.

mod common;

use common::Server;
use serde_json::json;

#[tokio::test]
async fn a_user_queues_holds_charges_pays_and_the_seat_is_sold() {
    let server = Server::start().await;
    let (concert, date) = server.concert(2, 5, 150_000).await;
    server.admit(concert, 1).await;
    let reservation = server.hold(1, date, &[3, 4]).await.expect(201);
    assert_eq!(reservation["status"], "HELD");
    assert_eq!(reservation["amount"], 300_000);
    assert_eq!(reservation["concertId"], concert);
    assert_eq!(reservation["dateId"], date);
    assert_eq!(
        reservation["seats"][0],
        json!({"id": 3, "label": "R-1-3", "price": 150_000})
    );
    assert_eq!(server.seat_status(concert, date, 3).await, "HELD");
    let dates = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(dates[0]["seatsAvailable"], 8);
    assert_eq!(dates[0]["seatsTotal"], 10);

    let charge = server.charge(1, 500_000).await;
    assert_eq!(charge["balance"], 500_000);
    let id = reservation["id"].as_str().unwrap();
    let payment = server.pay(1, id).await.expect(201);
    assert_eq!(payment["amount"], 300_000);
    assert_eq!(payment["balance"], 200_000);
    assert_eq!(payment["reservationId"], id);

    assert_eq!(server.seat_status(concert, date, 3).await, "SOLD");
    assert_eq!(
        server
            .get(1, &format!("/api/v1/reservations/{id}"))
            .await
            .expect(200)["status"],
        "PAID"
    );
    let entry = server
        .get(1, &format!("/api/v1/concerts/{concert}/queue"))
        .await
        .expect(200);
    assert_eq!(entry["status"], "COMPLETED");
    assert_eq!(server.balance(1).await, 200_000);
    let ledger = server
        .get(1, "/api/v1/wallet/transactions")
        .await
        .expect(200);
    assert_eq!(ledger[0]["kind"], "PAYMENT");
    assert_eq!(ledger[0]["id"], payment["id"]);
    assert_eq!(ledger[0]["reservationId"], id);
    assert_eq!(ledger[0]["amount"], 300_000);
    assert_eq!(ledger[1]["kind"], "CHARGE");
    assert_eq!(ledger[1]["id"], charge["chargeId"]);
    let payments = server.get(1, "/api/v1/payments").await.expect(200);
    assert_eq!(payments[0]["id"], payment["id"]);
    let available = server
        .get_public(&format!(
            "/api/v1/concerts/{concert}/dates/{date}/seats?status=AVAILABLE"
        ))
        .await;
    assert_eq!(available.expect(200).as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_hold_expires_at_its_deadline_and_ends_the_holders_active_entry() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let reservation = server.hold(1, date, &[1]).await.expect(201);
    let id = reservation["id"].as_str().unwrap().to_owned();
    server.charge(1, 1000).await;

    server.advance(299);
    assert_eq!(server.seat_status(concert, date, 1).await, "HELD");
    server.advance(1);
    // At the deadline, whether or not a sweep ran: the seat is free, the hold is over.
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    assert_eq!(
        server
            .get(1, &format!("/api/v1/reservations/{id}"))
            .await
            .expect(200)["status"],
        "EXPIRED"
    );
    server
        .pay(1, &id)
        .await
        .assert_problem(409, "RESERVATION_EXPIRED");
    assert_eq!(server.balance(1).await, 1000);
    let entry = server
        .get(1, &format!("/api/v1/concerts/{concert}/queue"))
        .await
        .expect(200);
    assert_eq!(entry["status"], "EXPIRED");
    // Someone else can take the seat; the first user must queue again to hold.
    server.admit(concert, 2).await;
    server.hold(2, date, &[1]).await.expect(201);
    server
        .hold(1, date, &[2])
        .await
        .assert_problem(403, "NOT_ADMITTED");
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(204);
}

#[tokio::test]
async fn cancelling_frees_the_seats_and_keeps_the_entry_active() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = server.hold(1, date, &[1, 2]).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(204);
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(204);
    assert_eq!(
        server
            .get(1, &format!("/api/v1/reservations/{id}"))
            .await
            .expect(200)["status"],
        "CANCELLED"
    );
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    server.advance(400);
    let entry = server
        .get(1, &format!("/api/v1/concerts/{concert}/queue"))
        .await
        .expect(200);
    assert_eq!(entry["status"], "ACTIVE");
    server
        .pay(1, &id)
        .await
        .assert_problem(409, "RESERVATION_CANCELLED");
}

#[tokio::test]
async fn the_waiting_room_admits_in_order_with_exact_positions() {
    let server = Server::start_with(|c| c.queue_active_max = 2).await;
    let (concert, _) = server.concert(1, 10, 100).await;
    let path = format!("/api/v1/concerts/{concert}/queue");
    for user in 1..=5 {
        let entry = server.post(user, &path, json!(null)).await.expect(201);
        assert_eq!(entry["concertId"], concert);
        assert!(entry["ticket"].is_string());
    }
    let again = server.post(3, &path, json!(null)).await.expect(200);
    assert_eq!(again["position"], 1);
    for (user, status, position) in [
        (1, "ACTIVE", 0),
        (2, "ACTIVE", 0),
        (3, "WAITING", 1),
        (5, "WAITING", 3),
    ] {
        let entry = server.get(user, &path).await.expect(200);
        assert_eq!(
            (
                entry["status"].as_str().unwrap(),
                entry["position"].as_u64().unwrap()
            ),
            (status, position)
        );
    }
    assert!(
        server.get(5, &path).await.expect(200)["estimatedWaitSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Leaving frees a slot for the head of the line at once.
    server.delete(1, &path).await.expect(204);
    assert_eq!(server.get(3, &path).await.expect(200)["status"], "ACTIVE");
    assert_eq!(server.get(5, &path).await.expect(200)["position"], 2);
    server
        .get(1, &path)
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
    server
        .get(9, &path)
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
    server
        .delete(9, &path)
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
}

#[tokio::test]
async fn active_windows_and_idle_waiting_entries_expire() {
    let server = Server::start_with(|c| c.queue_active_max = 1).await;
    let (concert, _) = server.concert(1, 10, 100).await;
    let path = format!("/api/v1/concerts/{concert}/queue");
    for user in 1..=3 {
        server.post(user, &path, json!(null)).await.expect(201);
    }
    // User 2 keeps polling; user 3 does not and drops out after the idle timeout.
    for _ in 0..6 {
        server.advance(100);
        server.get(2, &path).await.expect(200);
    }
    assert_eq!(server.get(1, &path).await.expect(200)["status"], "EXPIRED");
    assert_eq!(server.get(2, &path).await.expect(200)["status"], "ACTIVE");
    assert_eq!(server.get(3, &path).await.expect(200)["status"], "EXPIRED");
    // Joining after a final status makes a new entry.
    let entry = server.post(3, &path, json!(null)).await.expect(201);
    assert_eq!(entry["status"], "WAITING");
    assert_eq!(entry["position"], 1);
}

#[tokio::test]
async fn selling_the_last_seat_ends_every_live_entry_as_sold_out() {
    let server = Server::start_with(|c| c.queue_active_max = 1).await;
    let (concert, date) = server.concert(1, 2, 100).await;
    let path = format!("/api/v1/concerts/{concert}/queue");
    server.admit(concert, 1).await;
    server.post(2, &path, json!(null)).await.expect(201);
    let id = server.hold(1, date, &[1, 2]).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.charge(1, 200).await;
    server.pay(1, &id).await.expect(201);
    assert_eq!(
        server.get(1, &path).await.expect(200)["status"],
        "COMPLETED"
    );
    assert_eq!(server.get(2, &path).await.expect(200)["status"], "SOLD_OUT");
    assert_eq!(
        server.post(3, &path, json!(null)).await.expect(201)["status"],
        "SOLD_OUT"
    );
}

#[tokio::test]
async fn reservations_are_listed_newest_first_and_only_to_their_holder() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 8, 100).await;
    server.admit(concert, 1).await;
    let first = server.hold(1, date, &[1]).await.expect(201)["id"].clone();
    server.advance(1);
    let second = server.hold(1, date, &[2]).await.expect(201)["id"].clone();
    let list = server.get(1, "/api/v1/reservations").await.expect(200);
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect::<Vec<_>>(),
        [second, first.clone()]
    );
    assert_eq!(
        server.get(2, "/api/v1/reservations").await.expect(200),
        json!([])
    );
    let id = first.as_str().unwrap();
    server
        .get(2, &format!("/api/v1/reservations/{id}"))
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server
        .delete(2, &format!("/api/v1/reservations/{id}"))
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server.charge(2, 1000).await;
    server
        .pay(2, id)
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    assert_eq!(server.balance(2).await, 1000);
    assert_eq!(server.seat_status(concert, date, 1).await, "HELD");
}

#[tokio::test]
async fn the_operations_endpoints_answer() {
    let server = Server::start().await;
    assert_eq!(
        server.get_public("/health").await.expect(200),
        json!({"status": "ok"})
    );
    let doc = server
        .get_public("/api-docs/openapi.json")
        .await
        .expect(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/reservations",
        "/api/v1/payments",
        "/api/v1/concerts/{concertId}/queue",
        "/api/v1/wallet/charges",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let (concert, date) = server.concert(1, 5, 100).await;
    server.admit(concert, 1).await;
    server.hold(1, date, &[1, 2]).await.expect(201);
    let bad = server.get(1, "/api/v1/reservations/not-a-uuid").await;
    bad.assert_problem(400, "INVALID_REQUEST");
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    let seats = format!("boxoffice_seats{{concert=\"{concert}\",date=\"{date}\"");
    for line in [
        format!("{seats},status=\"available\"}} 3"),
        format!("{seats},status=\"held\"}} 2"),
        format!("boxoffice_queue_entries{{concert=\"{concert}\",status=\"active\"}} 1"),
        "boxoffice_write_path_up 1".to_owned(),
        "boxoffice_http_responses_total{status=\"400\"} 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("boxoffice_events_committed_total "), "{text}");
    let ui = server
        .http
        .get(format!("{}/docs/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}
