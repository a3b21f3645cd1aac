//! The live seat map read path and what the web page needs, over real HTTP: the layout,
//! the compact map with `ETag`/304 and gzip, the seat-map stream (whole map, changes,
//! resuming), the queue stream and its tickets, demo tokens (only in a demo start),
//! the operator overview, and the page itself.

mod common;

use common::{ADMIN_KEY, Server};
use serde_json::{Value, json};
use std::io::Read;
use std::time::{Duration, Instant};

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// An open event stream.
struct Stream {
    response: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(server: &Server, path: &str, last_id: Option<&str>) -> Stream {
        // Asks for gzip: the stream must come uncompressed (and so unbuffered) anyway.
        let mut request = server
            .http
            .get(format!("{}{path}", server.base))
            .header("Accept-Encoding", "gzip");
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert!(response.headers().get("content-encoding").is_none());
        Stream {
            response,
            text: String::new(),
        }
    }

    /// The next message with an event name (heartbeats skipped).
    async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
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
                if message.event.is_some() {
                    return message;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a message within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// The compact map once it shows `status` for `seat` (it follows durable events, a
/// moment after the hold's answer).
async fn map_when(server: &Server, path: &str, seat: usize, status: char) -> common::Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = server.get_public(path).await;
        let statuses = answer.body["statuses"].as_str().unwrap().to_owned();
        if statuses.chars().nth(seat - 1) == Some(status) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "seat {seat} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn header<'a>(answer: &'a common::Answer, name: &str) -> &'a str {
    answer.headers[name].to_str().unwrap()
}

#[tokio::test]
async fn the_compact_map_has_an_etag_that_changes_with_a_committed_change() {
    let server = Server::start().await;
    let (concert, date) = server.concert(2, 5, 100).await;
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seatmap");
    let first = server.get_public(&path).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["dateId"], date);
    assert_eq!(first.body["statuses"], "AAAAAAAAAA");
    assert_eq!(header(&first, "cache-control"), "no-cache");
    let etag = header(&first, "etag").to_owned();
    let same = server
        .send(
            reqwest::Method::GET,
            &path,
            None,
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(same.status, 304);
    assert_eq!(header(&same, "etag"), etag);

    server.admit(concert, 1).await;
    server.hold(1, date, &[2, 3]).await.expect(201);
    let held = map_when(&server, &path, 2, 'H').await;
    assert_eq!(held.body["statuses"], "AHHAAAAAAA");
    assert_ne!(header(&held, "etag"), etag);
    let stale = server
        .send(
            reqwest::Method::GET,
            &path,
            None,
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body["cursor"], held.body["cursor"]);
}

#[tokio::test]
async fn the_map_and_the_seat_list_are_gzipped_when_accepted_and_the_list_has_an_etag() {
    let server = Server::start().await;
    let (concert, date) = server.concert(100, 100, 100).await;
    for path in [
        format!("/api/v1/concerts/{concert}/dates/{date}/seatmap"),
        format!("/api/v1/concerts/{concert}/dates/{date}/seats"),
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.base))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-encoding"], "gzip", "{path}");
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let zipped = response.bytes().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_string(&mut text)
            .unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        let plain = server.get_public(&path).await;
        assert_eq!(body, plain.body, "{path}");
        assert!(zipped.len() * 10 < text.len(), "{path} compresses well");
        assert_eq!(header(&plain, "etag"), etag);
        let again = server
            .send(
                reqwest::Method::GET,
                &path,
                None,
                None,
                &[("If-None-Match", &etag)],
            )
            .await;
        assert_eq!(again.status, 304, "{path}");
    }
}

#[tokio::test]
async fn the_layout_says_where_every_seat_is() {
    let server = Server::start().await;
    let spec = boxoffice::app::demo_concert(chrono::Utc::now());
    let concert = server
        .admin_post(
            "/api/v1/admin/concerts",
            serde_json::to_value(spec).unwrap(),
        )
        .await
        .expect(201);
    let layout = server
        .get_public(&format!(
            "/api/v1/concerts/{}/dates/{}/layout",
            concert["id"], concert["dates"][0]["id"]
        ))
        .await;
    assert_eq!(header(&layout, "cache-control"), "public, max-age=86400");
    assert_eq!(
        layout.body,
        json!({"dateId": concert["dates"][0]["id"], "seatsTotal": 400, "sections": [
            {"name": "R", "rows": 10, "seatsPerRow": 20, "price": 150000, "firstSeatId": 1},
            {"name": "S", "rows": 10, "seatsPerRow": 20, "price": 100000, "firstSeatId": 201}]})
    );
}

#[tokio::test]
async fn unknown_dates_are_404_on_every_seat_map_path_and_a_bad_last_event_id_starts_over() {
    let server = Server::start().await;
    let (concert, _) = server.concert(1, 1, 100).await;
    for tail in ["layout", "seatmap", "seats/stream"] {
        server
            .get_public(&format!("/api/v1/concerts/{concert}/dates/999/{tail}"))
            .await
            .assert_problem(404, "DATE_NOT_FOUND");
        server
            .get_public(&format!("/api/v1/concerts/999/dates/1/{tail}"))
            .await
            .assert_problem(404, "CONCERT_NOT_FOUND");
    }
    // A Last-Event-ID that is no cursor starts again with the whole map.
    let path = format!("/api/v1/concerts/{concert}/dates/1/seats/stream");
    let mut stream = Stream::open(&server, &path, Some("yesterday")).await;
    assert_eq!(stream.next().await.event.as_deref(), Some("map"));
}

#[tokio::test]
async fn the_stream_sends_the_map_then_changes_and_resumes_after_a_cursor() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 6, 100).await;
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seats/stream");
    let mut stream = Stream::open(&server, &path, None).await;
    let map = stream.next().await;
    assert_eq!(map.event.as_deref(), Some("map"));
    assert_eq!(map.data["statuses"], "AAAAAA");
    assert_eq!(map.id.as_deref(), map.data["cursor"].as_str());

    server.admit(concert, 1).await;
    let held = server.hold(1, date, &[1, 2]).await.expect(201);
    let change = stream.next().await;
    assert_eq!(change.event.as_deref(), Some("change"));
    assert_eq!(change.data["seats"], json!([[1, "H"], [2, "H"]]));
    assert!(change.id > map.id);
    server
        .delete(
            1,
            &format!("/api/v1/reservations/{}", held["id"].as_str().unwrap()),
        )
        .await
        .expect(204);
    let cancelled = stream.next().await;
    assert_eq!(cancelled.data["seats"], json!([[1, "A"], [2, "A"]]));

    // Resuming after the first change gives the second, and no map.
    let mut resumed = Stream::open(&server, &path, change.id.as_deref()).await;
    assert_eq!(resumed.next().await, cancelled);
    // Resuming after the last one gives nothing until the next change.
    let mut current = Stream::open(&server, &path, cancelled.id.as_deref()).await;
    server.hold(1, date, &[6]).await.expect(201);
    let next = current.next().await;
    assert_eq!(next.event.as_deref(), Some("change"));
    assert_eq!(next.data["seats"], json!([[6, "H"]]));
    // A cursor the date cannot resume from starts again with the whole map.
    let future = "09999999999999999999-000000";
    let mut restarted = Stream::open(&server, &path, Some(future)).await;
    let whole = restarted.next().await;
    assert_eq!(whole.event.as_deref(), Some("map"));
    assert_eq!(whole.data["statuses"], "AAAAAH");
}

#[tokio::test]
async fn the_queue_stream_opens_with_a_ticket_that_is_no_bearer_token() {
    let server = Server::start_with(|config| config.queue_active_max = 1).await;
    let (concert, _) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    server
        .post(2, &format!("/api/v1/concerts/{concert}/queue"), json!(null))
        .await
        .expect(201);
    let ticket = server
        .post(
            2,
            &format!("/api/v1/concerts/{concert}/queue/stream-ticket"),
            json!(null),
        )
        .await
        .expect(200);
    assert_eq!(ticket["expiresInSeconds"], 60);
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/concerts/{concert}/queue/stream?ticket={ticket}");
    let mut stream = Stream::open(&server, &path, None).await;
    let entry = stream.next().await;
    assert_eq!(entry.event.as_deref(), Some("entry"));
    assert_eq!(entry.data["status"], "WAITING");
    assert_eq!(entry.data["position"], 1);
    // User 1 leaves: user 2 is admitted, and the open stream says so.
    server
        .delete(1, &format!("/api/v1/concerts/{concert}/queue"))
        .await
        .expect(204);
    loop {
        let entry = stream.next().await;
        if entry.data["status"] == "ACTIVE" {
            break;
        }
        assert_eq!(entry.data["status"], "WAITING");
    }

    // The ticket opens that stream only.
    server
        .send(
            reqwest::Method::GET,
            "/api/v1/wallet",
            Some(&ticket),
            None,
            &[],
        )
        .await
        .assert_problem(401, "UNAUTHORIZED");
    let other = server.concert(1, 1, 100).await.0;
    server
        .get_public(&format!(
            "/api/v1/concerts/{other}/queue/stream?ticket={ticket}"
        ))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    let token = server.token(2);
    server
        .get_public(&format!(
            "/api/v1/concerts/{concert}/queue/stream?ticket={token}"
        ))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    server
        .get_public(&format!("/api/v1/concerts/{concert}/queue/stream"))
        .await
        .assert_problem(400, "INVALID_REQUEST");
    server
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/concerts/{concert}/queue/stream-ticket"),
            None,
            None,
            &[],
        )
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn demo_tokens_exist_only_in_a_demo_start() {
    let configured = Server::start().await;
    configured
        .send(
            reqwest::Method::POST,
            "/api/v1/demo/tokens",
            None,
            Some(common::RawBody::Json(json!({"userId": 1}))),
            &[],
        )
        .await
        .assert_problem(404, "NOT_FOUND");

    let demo = Server::start_with(|config| {
        config.admin_key = None;
        config.jwt_secret = None;
    })
    .await;
    let ask = |user: Value| {
        demo.send(
            reqwest::Method::POST,
            "/api/v1/demo/tokens",
            None,
            Some(common::RawBody::Json(json!({ "userId": user }))),
            &[],
        )
    };
    let given = ask(json!(2)).await.expect(200);
    assert_eq!(given["userId"], 2);
    let token = given["token"].as_str().unwrap();
    let wallet = demo
        .send(
            reqwest::Method::GET,
            "/api/v1/wallet",
            Some(token),
            None,
            &[],
        )
        .await
        .expect(200);
    assert_eq!(wallet["userId"], 2);
    ask(json!(4)).await.assert_problem(400, "INVALID_REQUEST");
    ask(json!(0)).await.assert_problem(400, "INVALID_REQUEST");
    ask(json!("1")).await.assert_problem(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn the_overview_counts_seats_rooms_holds_and_payments() {
    let server = Server::start_with(|config| config.queue_active_max = 1).await;
    let (concert, date) = server.concert(1, 10, 100).await;
    let read = || {
        server.send(
            reqwest::Method::GET,
            "/api/v1/admin/overview",
            Some(ADMIN_KEY),
            None,
            &[],
        )
    };
    server.admit(concert, 1).await;
    server
        .post(2, &format!("/api/v1/concerts/{concert}/queue"), json!(null))
        .await
        .expect(201);
    let first = server.hold(1, date, &[1, 2]).await.expect(201);
    server.hold(1, date, &[3]).await.expect(201);
    server.charge(1, 1000).await;
    server
        .pay(1, first["id"].as_str().unwrap())
        .await
        .expect(201);
    let overview = read().await.expect(200);
    assert_eq!(
        overview["dates"],
        json!([{"concertId": concert, "dateId": date, "seatsTotal": 10, "available": 7, "held": 1, "sold": 2}])
    );
    // User 1 paid, so the room's one place went to user 2.
    assert_eq!(
        overview["rooms"],
        json!([{"concertId": concert, "title": "Test", "waiting": 0, "active": 1}])
    );
    assert_eq!(overview["holdsTotal"], 2);
    assert_eq!(overview["paymentsTotal"], 1);
    server
        .send(
            reqwest::Method::GET,
            "/api/v1/admin/overview",
            Some(&server.token(1)),
            None,
            &[],
        )
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary_and_name_nothing_elsewhere() {
    let server = Server::start().await;
    let fetch = |path: &'static str| {
        let http = server.http.clone();
        let url = format!("{}{path}", server.base);
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            (status, headers, response.text().await.unwrap())
        }
    };
    let (status, headers, html) = fetch("/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(html.contains("<svg id=\"map\""));
    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = fetch(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], kind);
        assert_eq!(headers["cache-control"], "public, max-age=86400");
        assert!(
            html.contains(&format!("{path}?v=")),
            "the page names {path}"
        );
        assert!(names_no_url(&body), "{path} fetches nothing from elsewhere");
    }
    assert!(names_no_url(&html));
    let (status, _, _) = fetch("/assets/nothing.js").await;
    assert_eq!(status, 404);
}

/// Whether a text names no URL (the SVG namespace is a name, not something fetched).
fn names_no_url(text: &str) -> bool {
    let text = text.replace("http://www.w3.org/2000/svg", "");
    !text.contains("http://") && !text.contains("https://")
}

#[tokio::test]
async fn the_openapi_document_lists_every_new_path() {
    let server = Server::start().await;
    let doc = server
        .get_public("/api-docs/openapi.json")
        .await
        .expect(200);
    for path in [
        "/api/v1/concerts/{concertId}/dates/{dateId}/layout",
        "/api/v1/concerts/{concertId}/dates/{dateId}/seatmap",
        "/api/v1/concerts/{concertId}/dates/{dateId}/seats/stream",
        "/api/v1/concerts/{concertId}/queue/stream-ticket",
        "/api/v1/concerts/{concertId}/queue/stream",
        "/api/v1/demo/tokens",
        "/api/v1/admin/overview",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn after_a_restart_a_resuming_stream_starts_again_with_the_whole_map() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seats/stream");
    let mut stream = Stream::open(&server, &path, None).await;
    stream.next().await;
    server.admit(concert, 1).await;
    server.hold(1, date, &[4]).await.expect(201);
    let change = stream.next().await;
    drop(stream);
    let server = server.restart().await;
    // The new process keeps no changes from before: the whole map, as recovered.
    let mut resumed = Stream::open(&server, &path, change.id.as_deref()).await;
    let map = resumed.next().await;
    assert_eq!(map.event.as_deref(), Some("map"));
    assert_eq!(map.data["statuses"], "AAAH");
    assert!(map.id > change.id);
}

#[tokio::test]
async fn a_refund_frees_its_seats_on_the_compact_map() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 5, 100).await;
    let path = format!("/api/v1/concerts/{concert}/dates/{date}/seatmap");
    server.admit(concert, 1).await;
    server.charge(1, 1000).await;
    let held = server.hold(1, date, &[2]).await.expect(201);
    let id = held["id"].as_str().unwrap();
    server.pay(1, id).await.expect(201);
    map_when(&server, &path, 2, 'S').await;
    let refund = format!("/api/v1/reservations/{id}/refund");
    server
        .post(1, &refund, serde_json::json!(null))
        .await
        .expect(200);
    map_when(&server, &path, 2, 'A').await;
}
