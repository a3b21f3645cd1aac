//! After the sale, end to end over real HTTP: tickets and check-in at the door,
//! refunds, pausing and cancelling a date, the operator's figures and lists; every bad
//! input a clear 4xx problem that changes nothing.

mod common;

use common::{ADMIN_KEY, Answer, RawBody, Server};
use serde_json::{Value, json};

/// A concert a month from the server's clock: one date per entry of `dates`, each with
/// sections R (2 rows of 5 at 100 won) and S (1 row of 5 at 50 won). Returns the concert
/// and its date ids.
pub async fn concert(server: &Server, dates: usize) -> (u64, Vec<u64>) {
    let starts_at = (server.clock_now() + chrono::Duration::days(30)).to_rfc3339();
    let sections = json!([
        {"name": "R", "rows": 2, "seatsPerRow": 5, "price": 100},
        {"name": "S", "rows": 1, "seatsPerRow": 5, "price": 50},
    ]);
    let dates: Vec<Value> = (0..dates)
        .map(|_| json!({"startsAt": starts_at, "sections": sections}))
        .collect();
    let body = json!({"title": "After", "venue": "Hall", "dates": dates});
    server.create_concert(body).await
}

/// Holds `seats` for `user` (admitting them first) and pays; returns the reservation id.
pub async fn buy(server: &Server, concert: u64, date: u64, user: u64, seats: &[u64]) -> String {
    server.admit(concert, user).await;
    let held = server.hold(user, date, seats).await.expect(201);
    let id = held["id"].as_str().unwrap().to_owned();
    let amount = held["amount"].as_u64().unwrap();
    if amount > 0 {
        server.charge(user, amount).await;
    }
    server.pay(user, &id).await.expect(201);
    id
}

async fn check_in(server: &Server, key: &str, body: Value) -> Answer {
    server
        .send(
            reqwest::Method::POST,
            "/api/v1/admin/checkins",
            Some(key),
            Some(RawBody::Json(body)),
            &[],
        )
        .await
}

async fn tickets(server: &Server, user: u64) -> Vec<Value> {
    server
        .get(user, "/api/v1/tickets")
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_paid_seat_has_a_ticket_whose_code_is_admitted_once() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let reservation = buy(&server, concert, dates[0], 1, &[1, 11]).await;
    let list = tickets(&server, 1).await;
    assert_eq!(list.len(), 2);
    for ticket in &list {
        assert_eq!(ticket["reservationId"], reservation.as_str());
        assert_eq!(ticket["dateId"], dates[0]);
        assert_eq!(ticket["status"], "VALID");
        assert_eq!(ticket["code"].as_str().unwrap().len(), 60);
    }
    assert_eq!(list[0]["label"], "R-1-1");
    assert_eq!(list[1]["label"], "S-1-1");
    assert!(tickets(&server, 2).await.is_empty());

    let code = list[0]["code"].as_str().unwrap();
    let admitted = check_in(&server, ADMIN_KEY, json!({"code": code}))
        .await
        .expect(200);
    assert_eq!(admitted["status"], "ADMITTED");
    assert_eq!(admitted["ticketId"], list[0]["id"]);
    assert_eq!(admitted["seatId"], 1);
    assert_eq!(admitted["label"], "R-1-1");
    server.advance(5);
    let again = check_in(&server, ADMIN_KEY, json!({"code": code})).await;
    again.assert_problem(409, "ALREADY_USED");
    assert_eq!(again.body["usedAt"], admitted["admittedAt"]);

    let list = tickets(&server, 1).await;
    assert_eq!(list[0]["status"], "USED");
    assert_eq!(list[0]["usedAt"], admitted["admittedAt"]);
    assert_eq!(list[1]["status"], "VALID");
    // The door of the right date takes the other ticket.
    let other = json!({"code": list[1]["code"], "dateId": dates[0]});
    check_in(&server, ADMIN_KEY, other).await.expect(200);
}

#[tokio::test]
async fn forged_altered_and_other_date_codes_are_refused_with_their_own_codes() {
    let server = Server::start_with(|c| c.scanner_key = Some("door-key".into())).await;
    let (concert, dates) = concert(&server, 2).await;
    buy(&server, concert, dates[0], 1, &[2]).await;
    let code = tickets(&server, 1).await[0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut altered = code.clone().into_bytes();
    altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let forged = "A".repeat(60);
    for bad in [
        altered.as_str(),
        forged.as_str(),
        "",
        "not a code",
        &code[..59],
    ] {
        check_in(&server, "door-key", json!({"code": bad}))
            .await
            .assert_problem(400, "TICKET_INVALID");
    }
    let other_date = json!({"code": code, "dateId": dates[1]});
    let wrong = check_in(&server, "door-key", other_date).await;
    wrong.assert_problem(400, "TICKET_WRONG_DATE");
    check_in(&server, "door-key", json!({"code": code, "dateId": 999}))
        .await
        .assert_problem(404, "DATE_NOT_FOUND");
    for body in [
        json!({}),
        json!({"code": 5}),
        json!({"code": code, "gate": 1}),
    ] {
        check_in(&server, "door-key", body)
            .await
            .assert_problem(400, "INVALID_REQUEST");
    }
    let user = server.token(1);
    check_in(&server, &user, json!({"code": code}))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    // The scanner key checks tickets in, and nothing else.
    let create = server
        .send(
            reqwest::Method::POST,
            "/api/v1/admin/dates/1/pause",
            Some("door-key"),
            None,
            &[],
        )
        .await;
    create.assert_problem(401, "UNAUTHORIZED");
    // None of that used the ticket.
    assert_eq!(tickets(&server, 1).await[0]["status"], "VALID");
    let admitted = check_in(&server, "door-key", json!({"code": code})).await;
    admitted.expect(200);
}

#[tokio::test]
async fn a_refund_returns_the_money_frees_the_seats_and_voids_the_tickets() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    let reservation = buy(&server, concert, date, 1, &[1, 2]).await;
    let code = tickets(&server, 1).await[0]["code"].clone();
    assert_eq!(server.balance(1).await, 0);
    let path = format!("/api/v1/reservations/{reservation}/refund");

    server
        .post(2, &path, json!(null))
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server
        .post(1, "/api/v1/reservations/nope/refund", json!(null))
        .await
        .assert_problem(400, "INVALID_REQUEST");
    let refunded = server.post(1, &path, json!(null)).await.expect(200);
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["amount"], 200);
    assert_eq!(server.balance(1).await, 200);
    let ledger = server
        .get(1, "/api/v1/wallet/transactions")
        .await
        .expect(200);
    assert_eq!(ledger[0]["kind"], "REFUND");
    assert_eq!(ledger[0]["amount"], 200);
    assert_eq!(ledger[0]["balanceAfter"], 200);
    assert_eq!(ledger[0]["reservationId"], reservation.as_str());
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    let got = server
        .get(1, &format!("/api/v1/reservations/{reservation}"))
        .await;
    assert_eq!(got.expect(200)["status"], "REFUNDED");
    for ticket in tickets(&server, 1).await {
        assert_eq!(ticket["status"], "VOID");
    }
    check_in(&server, ADMIN_KEY, json!({"code": code}))
        .await
        .assert_problem(400, "TICKET_VOID");

    let again = server.post(1, &path, json!(null)).await;
    again.assert_problem(409, "ALREADY_REFUNDED");
    assert_eq!(server.balance(1).await, 200);
    // Only a paid reservation is refunded; a refunded one is not paid or released again.
    server.admit(concert, 1).await;
    let held = server.hold(1, date, &[3]).await.expect(201);
    let held_path = format!(
        "/api/v1/reservations/{}/refund",
        held["id"].as_str().unwrap()
    );
    server
        .post(1, &held_path, json!(null))
        .await
        .assert_problem(409, "RESERVATION_NOT_PAID");
    server
        .pay(1, &reservation)
        .await
        .assert_problem(409, "ALREADY_REFUNDED");
    server
        .delete(1, &format!("/api/v1/reservations/{reservation}"))
        .await
        .assert_problem(409, "ALREADY_REFUNDED");
    // The freed seats sell again.
    server.admit(concert, 2).await;
    server.hold(2, date, &[1, 2]).await.expect(201);
}

#[tokio::test]
async fn refunds_close_before_the_show_and_after_a_ticket_was_used() {
    let server = Server::start_with(|c| c.refund_until_secs_before = 29 * 86_400).await;
    let (concert, dates) = concert(&server, 1).await;
    let first = buy(&server, concert, dates[0], 1, &[1]).await;
    let second = buy(&server, concert, dates[0], 1, &[2]).await;
    let used = tickets(&server, 1)
        .await
        .into_iter()
        .find(|t| t["reservationId"] == second.as_str())
        .unwrap();
    check_in(&server, ADMIN_KEY, json!({"code": used["code"]}))
        .await
        .expect(200);
    let refund = |id: &str| format!("/api/v1/reservations/{id}/refund");
    server
        .post(1, &refund(&second), json!(null))
        .await
        .assert_problem(409, "REFUND_CLOSED");
    // Thirty days to the show, refunds close 29 days before: one more day is too late.
    server.advance(86_400);
    let closed = server.post(1, &refund(&first), json!(null)).await;
    closed.assert_problem(409, "REFUND_CLOSED");
    assert_eq!(server.balance(1).await, 0);
    assert_eq!(server.seat_status(concert, dates[0], 1).await, "SOLD");
}

#[tokio::test]
async fn a_paused_date_refuses_holds_until_resumed_and_its_holds_can_still_be_paid() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    server.admit(concert, 1).await;
    server.admit(concert, 2).await;
    let held = server.hold(1, date, &[1]).await.expect(201);
    let pause = format!("/api/v1/admin/dates/{date}/pause");
    let paused = server.admin_post(&pause, json!(null)).await.expect(200);
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["cancelled"], false);
    server.admin_post(&pause, json!(null)).await.expect(200);
    server
        .hold(2, date, &[2])
        .await
        .assert_problem(409, "SALES_PAUSED");
    let listed = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(listed[0]["paused"], true);
    server.charge(1, 100).await;
    server
        .pay(1, held["id"].as_str().unwrap())
        .await
        .expect(201);
    let resume = format!("/api/v1/admin/dates/{date}/resume");
    let resumed = server.admin_post(&resume, json!(null)).await.expect(200);
    assert_eq!(resumed["paused"], false);
    server.hold(2, date, &[2]).await.expect(201);
    for path in [
        "/api/v1/admin/dates/999/pause",
        "/api/v1/admin/dates/999/resume",
    ] {
        server
            .admin_post(path, json!(null))
            .await
            .assert_problem(404, "DATE_NOT_FOUND");
    }
    server
        .admin_post("/api/v1/admin/dates/x/pause", json!(null))
        .await
        .assert_problem(400, "INVALID_REQUEST");
    server
        .post(1, &pause, json!(null))
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn cancelling_a_date_refunds_every_paid_reservation_once_and_releases_its_holds() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 2).await;
    let (date, other) = (dates[0], dates[1]);
    let mut paid = Vec::new();
    for user in 1..=3 {
        paid.push(buy(&server, concert, date, user, &[user, user + 10]).await);
    }
    server.admit(concert, 4).await;
    let held = server.hold(4, date, &[5]).await.expect(201);
    let kept = buy(&server, concert, other, 4, &[1]).await;

    let cancel = format!("/api/v1/admin/dates/{date}/cancel");
    let cancelled = server.admin_post(&cancel, json!(null)).await.expect(200);
    assert_eq!(cancelled["cancelled"], true);
    assert_eq!(cancelled["seatsAvailable"], 15);
    for (user, id) in (1..=3).zip(&paid) {
        assert_eq!(server.balance(user).await, 150);
        let got = server
            .get(user, &format!("/api/v1/reservations/{id}"))
            .await;
        assert_eq!(got.expect(200)["status"], "REFUNDED");
    }
    let released = server
        .get(
            4,
            &format!("/api/v1/reservations/{}", held["id"].as_str().unwrap()),
        )
        .await
        .expect(200);
    assert_eq!(released["status"], "CANCELLED");
    server.admit(concert, 4).await;
    server
        .hold(4, date, &[6])
        .await
        .assert_problem(409, "DATE_CANCELLED");
    let pause = format!("/api/v1/admin/dates/{date}/pause");
    server
        .admin_post(&pause, json!(null))
        .await
        .assert_problem(409, "DATE_CANCELLED");
    // Again: nothing more to do, nothing refunded twice.
    server.admin_post(&cancel, json!(null)).await.expect(200);
    let ledger = server
        .get(1, "/api/v1/wallet/transactions")
        .await
        .expect(200);
    let refunds = ledger.as_array().unwrap().iter();
    assert_eq!(refunds.filter(|e| e["kind"] == "REFUND").count(), 1);
    // The other date sells on; its tickets stay valid.
    let got = server.get(4, &format!("/api/v1/reservations/{kept}")).await;
    assert_eq!(got.expect(200)["status"], "PAID");
    let list = tickets(&server, 4).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "VALID");
    let dates_now = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates"))
        .await
        .expect(200);
    assert_eq!(dates_now[0]["cancelled"], true);
    assert_eq!(dates_now[1]["cancelled"], false);
    server
        .admin_post("/api/v1/admin/dates/999/cancel", json!(null))
        .await
        .assert_problem(404, "DATE_NOT_FOUND");
}

#[tokio::test]
async fn the_waiting_room_ends_when_every_date_is_cancelled() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    server.admit(concert, 1).await;
    let cancel = format!("/api/v1/admin/dates/{}/cancel", dates[0]);
    server.admin_post(&cancel, json!(null)).await.expect(200);
    let queue = format!("/api/v1/concerts/{concert}/queue");
    let mut status = Value::Null;
    for _ in 0..100 {
        status = server.get(1, &queue).await.expect(200)["status"].clone();
        if status == "SOLD_OUT" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "SOLD_OUT");
}

async fn csv(server: &Server, path: &str) -> (u16, String, String) {
    let response = server
        .http
        .get(format!("{}{path}", server.base))
        .bearer_auth(ADMIN_KEY)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, kind, response.text().await.unwrap())
}

#[tokio::test]
async fn sales_are_counted_by_section_in_json_and_csv() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 2).await;
    let date = dates[0];
    buy(&server, concert, date, 1, &[1, 2]).await;
    let refunded = buy(&server, concert, date, 2, &[3, 11]).await;
    server
        .post(
            2,
            &format!("/api/v1/reservations/{refunded}/refund"),
            json!(null),
        )
        .await
        .expect(200);
    server.admit(concert, 3).await;
    server.hold(3, date, &[12]).await.expect(201);
    let code = tickets(&server, 1).await[0]["code"].clone();
    check_in(&server, ADMIN_KEY, json!({"code": code}))
        .await
        .expect(200);

    let sales = server
        .admin_get(&format!("/api/v1/admin/dates/{date}/sales"))
        .await
        .expect(200);
    let r = &sales["sections"][0];
    assert_eq!(r["name"], "R");
    assert_eq!(
        (&r["seatsTotal"], &r["available"], &r["held"], &r["sold"]),
        (&json!(10), &json!(8), &json!(0), &json!(2))
    );
    assert_eq!(
        (&r["revenue"], &r["refunds"], &r["admitted"]),
        (&json!(200), &json!(100), &json!(1))
    );
    let s = &sales["sections"][1];
    assert_eq!(
        (&s["available"], &s["held"], &s["sold"]),
        (&json!(4), &json!(1), &json!(0))
    );
    assert_eq!((&s["revenue"], &s["refunds"]), (&json!(0), &json!(50)));
    assert_eq!(sales["totals"]["revenue"], 200);
    assert_eq!(sales["totals"]["refunds"], 150);
    let holds = &sales["holds"];
    assert_eq!(
        (
            &holds["placed"],
            &holds["live"],
            &holds["converted"],
            &holds["refunded"]
        ),
        (&json!(3), &json!(1), &json!(2), &json!(1))
    );

    let (status, kind, text) = csv(&server, &format!("/api/v1/admin/dates/{date}/sales")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "date_id,section,price,seats_total,available,held,sold,admitted,revenue,refunds",
            &format!("{date},R,100,10,8,0,2,1,200,100"),
            &format!("{date},S,50,5,4,1,0,0,0,50"),
            &format!("{date},TOTAL,,15,12,1,2,1,200,150"),
        ]
    );

    let whole = server
        .admin_get(&format!("/api/v1/admin/concerts/{concert}/sales"))
        .await
        .expect(200);
    assert_eq!(whole["totals"]["seatsTotal"], 30);
    assert_eq!(whole["totals"]["sold"], 2);
    assert_eq!(whole["sections"][0]["seatsTotal"], 20);
    assert_eq!(whole["dates"].as_array().unwrap().len(), 2);
    let (_, _, text) = csv(&server, &format!("/api/v1/admin/concerts/{concert}/sales")).await;
    assert_eq!(text.lines().count(), 7);

    server
        .admin_get("/api/v1/admin/dates/999/sales")
        .await
        .assert_problem(404, "DATE_NOT_FOUND");
    server
        .admin_get("/api/v1/admin/concerts/999/sales")
        .await
        .assert_problem(404, "CONCERT_NOT_FOUND");
    server
        .get(1, &format!("/api/v1/admin/dates/{date}/sales"))
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_dates_reservations_come_in_pages_filtered_by_status_and_user() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    let mut ids = Vec::new();
    for user in 1..=3 {
        ids.push(buy(&server, concert, date, user, &[user]).await);
        server.advance(1);
    }
    server.admit(concert, 1).await;
    let held = server.hold(1, date, &[9]).await.expect(201);
    ids.push(held["id"].as_str().unwrap().to_owned());
    let base = format!("/api/v1/admin/dates/{date}/reservations");

    let first = server
        .admin_get(&format!("{base}?limit=2"))
        .await
        .expect(200);
    let page: Vec<&str> = first["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(first["reservations"][0]["userId"], 1);
    let next = first["next"].as_str().unwrap();
    let rest = server
        .admin_get(&format!("{base}?limit=2&after={next}"))
        .await
        .expect(200);
    assert_eq!(rest["reservations"].as_array().unwrap().len(), 2);
    assert!(rest.get("next").is_none());

    let paid = server
        .admin_get(&format!("{base}?status=PAID"))
        .await
        .expect(200);
    assert_eq!(paid["reservations"].as_array().unwrap().len(), 3);
    let mine = server
        .admin_get(&format!("{base}?userId=1"))
        .await
        .expect(200);
    assert_eq!(mine["reservations"].as_array().unwrap().len(), 2);
    let both = server
        .admin_get(&format!("{base}?userId=1&status=HELD"))
        .await
        .expect(200);
    assert_eq!(both["reservations"][0]["id"], ids[3].as_str());

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?status=SOLD",
        "?userId=-1",
        "?after=nope",
        "?colour=red",
    ] {
        server
            .admin_get(&format!("{base}{bad}"))
            .await
            .assert_problem(400, "INVALID_REQUEST");
    }
    // A well-formed reservation id that is none of this date's: nothing to start after.
    server
        .admin_get(&format!(
            "{base}?after=00000000-0000-0000-0000-000000000000"
        ))
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server
        .admin_get("/api/v1/admin/dates/999/reservations")
        .await
        .assert_problem(404, "DATE_NOT_FOUND");

    let history = server
        .admin_get("/api/v1/admin/users/1/reservations")
        .await
        .expect(200);
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["id"], ids[3].as_str());
    let nobody = server
        .admin_get("/api/v1/admin/users/77/reservations")
        .await;
    assert_eq!(nobody.expect(200), json!([]));
    server
        .admin_get("/api/v1/admin/users/x/reservations")
        .await
        .assert_problem(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn seats_carry_row_and_number_and_a_date_answers_its_sections() {
    let server = Server::start().await;
    let (concert, dates) = concert(&server, 1).await;
    let date = dates[0];
    buy(&server, concert, date, 1, &[7]).await;
    let seats = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates/{date}/seats"))
        .await
        .expect(200);
    assert_eq!(
        (&seats[6]["label"], &seats[6]["row"], &seats[6]["number"]),
        (&json!("R-2-2"), &json!(2), &json!(2))
    );
    let detail = server
        .get_public(&format!("/api/v1/concerts/{concert}/dates/{date}"))
        .await
        .expect(200);
    assert_eq!(detail["id"], date);
    assert_eq!(detail["seatsTotal"], 15);
    let r = &detail["sections"][0];
    assert_eq!(
        (
            &r["name"],
            &r["price"],
            &r["seatsTotal"],
            &r["seatsAvailable"],
            &r["seatsSold"]
        ),
        (&json!("R"), &json!(100), &json!(10), &json!(9), &json!(1))
    );
    server
        .get_public(&format!("/api/v1/concerts/{concert}/dates/999"))
        .await
        .assert_problem(404, "DATE_NOT_FOUND");
}

#[tokio::test]
async fn the_openapi_document_lists_what_follows_a_sale() {
    let server = Server::start().await;
    let doc = server
        .get_public("/api-docs/openapi.json")
        .await
        .expect(200);
    for path in [
        "/api/v1/tickets",
        "/api/v1/admin/checkins",
        "/api/v1/reservations/{id}/refund",
        "/api/v1/admin/dates/{dateId}/pause",
        "/api/v1/admin/dates/{dateId}/resume",
        "/api/v1/admin/dates/{dateId}/cancel",
        "/api/v1/admin/dates/{dateId}/sales",
        "/api/v1/admin/concerts/{concertId}/sales",
        "/api/v1/admin/dates/{dateId}/reservations",
        "/api/v1/admin/users/{userId}/reservations",
        "/api/v1/concerts/{concertId}/dates/{dateId}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    let text = doc.to_string();
    for code in [
        "ALREADY_USED",
        "TICKET_INVALID",
        "TICKET_VOID",
        "TICKET_WRONG_DATE",
        "REFUND_CLOSED",
        "ALREADY_REFUNDED",
        "RESERVATION_NOT_PAID",
        "SALES_PAUSED",
        "DATE_CANCELLED",
    ] {
        assert!(text.contains(code), "{code}");
    }
    assert!(
        doc["components"]["securitySchemes"]
            .get("scanner")
            .is_some()
    );
}

#[tokio::test]
async fn a_refund_after_a_sell_out_reopens_the_waiting_room() {
    let server = Server::start().await;
    let starts_at = (server.clock_now() + chrono::Duration::days(30)).to_rfc3339();
    let body = json!({"title": "Tiny", "venue": "Room", "dates": [{"startsAt": starts_at,
        "sections": [{"name": "A", "rows": 1, "seatsPerRow": 1, "price": 10}]}]});
    let created = server
        .admin_post("/api/v1/admin/concerts", body)
        .await
        .expect(201);
    let (concert, date) = (
        created["id"].as_u64().unwrap(),
        created["dates"][0]["id"].as_u64().unwrap(),
    );
    let sold = buy(&server, concert, date, 1, &[1]).await;
    let queue = format!("/api/v1/concerts/{concert}/queue");
    let entry = server.post(2, &queue, json!(null)).await.expect(201);
    assert_eq!(entry["status"], "SOLD_OUT");

    server
        .post(
            1,
            &format!("/api/v1/reservations/{sold}/refund"),
            json!(null),
        )
        .await
        .expect(200);
    let entry = server.post(2, &queue, json!(null)).await.expect(201);
    assert_eq!(entry["status"], "ACTIVE");
    server.hold(2, date, &[1]).await.expect(201);
}
