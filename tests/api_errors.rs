//! Every status and error code of the API over real HTTP, and bad input of every kind.
//! Each refused request is followed by a look at what it could have touched (balance,
//! ledger, seats, reservations, concerts) to show that it changed nothing.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice::domain::UserId;
use boxoffice::http::BODY_LEN_MAX;
use boxoffice::http::auth::token_for_secret;
use common::{ADMIN_KEY, Answer, JWT_SECRET, RawBody, Server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// A concert spec the server accepts.
fn valid_spec() -> Value {
    json!({"title": "Winter Tour", "venue": "Olympic Hall",
        "dates": [{"startsAt": "2099-12-24T19:00:00Z",
            "sections": [{"name": "R", "rows": 2, "seatsPerRow": 5, "price": 1000}]}]})
}

/// Creates a concert with `dates` dates of one section each; returns its id and date ids.
async fn concert_with_dates(
    server: &Server,
    dates: usize,
    seats: u32,
    price: u64,
) -> (u64, Vec<u64>) {
    let date = json!({"startsAt": "2099-12-24T19:00:00Z",
        "sections": [{"name": "R", "rows": 1, "seatsPerRow": seats, "price": price}]});
    let spec = json!({"title": "Tour", "venue": "Hall", "dates": vec![date; dates]});
    server.create_concert(spec).await
}

fn queue_path(concert: u64) -> String {
    format!("/api/v1/concerts/{concert}/queue")
}

/// Everything `user` can see of their own money and reservations.
async fn user_view(server: &Server, user: u64) -> Value {
    json!({
        "wallet": server.get(user, "/api/v1/wallet").await.expect(200),
        "transactions": server.get(user, "/api/v1/wallet/transactions").await.expect(200),
        "payments": server.get(user, "/api/v1/payments").await.expect(200),
        "reservations": server.get(user, "/api/v1/reservations").await.expect(200),
    })
}

/// The catalog, the dates of `concert` and the seats of `date` with their status.
async fn date_view(server: &Server, concert: u64, date: u64) -> Value {
    json!({
        "concerts": server.get_public("/api/v1/concerts").await.expect(200),
        "dates": server
            .get_public(&format!("/api/v1/concerts/{concert}/dates"))
            .await
            .expect(200),
        "seats": server
            .get_public(&format!("/api/v1/concerts/{concert}/dates/{date}/seats"))
            .await
            .expect(200),
    })
}

/// The user's ledger, newest first.
async fn ledger(server: &Server, user: u64) -> Vec<Value> {
    server
        .get(user, "/api/v1/wallet/transactions")
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

/// Sends `body` as `user` with an `Idempotency-Key`.
async fn post_keyed(server: &Server, user: u64, path: &str, key: &str, body: Value) -> Answer {
    server
        .send(
            Method::POST,
            path,
            Some(&server.token(user)),
            Some(RawBody::Json(body)),
            &[("idempotency-key", key)],
        )
        .await
}

/// Sends a raw (possibly malformed) body as `user`.
async fn post_raw(server: &Server, user: u64, path: &str, text: &str) -> Answer {
    server
        .send(
            Method::POST,
            path,
            Some(&server.token(user)),
            Some(RawBody::Text(text.to_owned())),
            &[],
        )
        .await
}

/// Holds seats and returns the reservation id.
async fn held(server: &Server, user: u64, date: u64, seats: &[u64]) -> String {
    server.hold(user, date, seats).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The reservation's status as its holder sees it.
async fn reservation_status(server: &Server, user: u64, id: &str) -> String {
    server
        .get(user, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(200)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts a 401 `UNAUTHORIZED` problem with a `WWW-Authenticate: Bearer` challenge.
#[track_caller]
fn assert_unauthorized(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {:?}", answer.body);
    answer.assert_problem(401, "UNAUTHORIZED");
    let challenge = answer.headers.get("www-authenticate");
    assert_eq!(
        challenge.and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{what}"
    );
}

/// Asserts a 400 `INVALID_REQUEST` problem, naming the case on failure.
#[track_caller]
fn assert_invalid(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 400, "{what}: {:?}", answer.body);
    assert_eq!(answer.body["code"], "INVALID_REQUEST", "{what}");
    answer.assert_problem(400, "INVALID_REQUEST");
}

/// A JWT with any header and claims, signed with HS256 (or the header's algorithm).
fn signed_token(header: Header, claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now_secs() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Every user endpoint: method, path and a body it would accept.
fn user_endpoints(concert: u64, reservation: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/wallet".into(), None),
        (
            Method::POST,
            "/api/v1/wallet/charges".into(),
            Some(json!({"amount": 5000})),
        ),
        (Method::GET, "/api/v1/wallet/transactions".into(), None),
        (Method::GET, "/api/v1/payments".into(), None),
        (
            Method::POST,
            "/api/v1/payments".into(),
            Some(json!({"reservationId": reservation})),
        ),
        (Method::GET, "/api/v1/reservations".into(), None),
        (
            Method::POST,
            "/api/v1/reservations".into(),
            Some(json!({"dateId": 1, "seatIds": [1]})),
        ),
        (
            Method::GET,
            format!("/api/v1/reservations/{reservation}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/reservations/{reservation}"),
            None,
        ),
        (Method::POST, queue_path(concert), None),
        (Method::GET, queue_path(concert), None),
        (Method::DELETE, queue_path(concert), None),
    ]
}

// ---------------------------------------------------------------------------------
// 401 UNAUTHORIZED
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn every_user_endpoint_refuses_a_missing_or_malformed_authorization_header() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let headers: [Option<&str>; 7] = [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Token abc.def.ghi"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer garbage"),
        Some("Bearer a.b.c"),
    ];
    for (method, path, body) in user_endpoints(concert, &id) {
        for header in headers {
            let extra: Vec<(&str, &str)> =
                header.map(|h| ("authorization", h)).into_iter().collect();
            let answer = server
                .send(
                    method.clone(),
                    &path,
                    None,
                    body.clone().map(RawBody::Json),
                    &extra,
                )
                .await;
            assert_unauthorized(&answer, &format!("{method} {path} with {header:?}"));
        }
    }
    // The admin key is not a user token, and the scheme comes before the body.
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(ADMIN_KEY), None, &[])
        .await;
    assert_unauthorized(&answer, "the admin key as a user token");
    let answer = server
        .send(
            Method::POST,
            "/api/v1/wallet/charges",
            None,
            Some(RawBody::Text("{not json".into())),
            &[],
        )
        .await;
    assert_unauthorized(&answer, "no token and a malformed body");
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_forged_token_is_unauthorized() {
    let server = Server::start().await;
    let forged = token_for_secret("other", UserId(1), 60);
    for (method, path, body) in [
        (Method::GET, "/api/v1/wallet", None),
        (
            Method::POST,
            "/api/v1/wallet/charges",
            Some(json!({"amount": 5000})),
        ),
    ] {
        let answer = server
            .send(method, path, Some(&forged), body.map(RawBody::Json), &[])
            .await;
        assert_unauthorized(&answer, path);
    }
    assert_eq!(server.balance(1).await, 0);
    assert!(ledger(&server, 1).await.is_empty());
    // The same user with a token of the server's own secret is let in.
    let genuine = token_for_secret(JWT_SECRET, UserId(1), 60);
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(&genuine), None, &[])
        .await;
    assert_eq!(answer.expect(200), json!({"userId": 1, "balance": 0}));
}

#[tokio::test]
async fn an_expired_token_is_unauthorized() {
    let server = Server::start().await;
    let claims = |exp: i64| json!({"sub": "1", "exp": exp});
    let expired = signed_token(Header::default(), claims(now_secs() - 3600), JWT_SECRET);
    let answer = server
        .send(
            Method::POST,
            "/api/v1/wallet/charges",
            Some(&expired),
            Some(RawBody::Json(json!({"amount": 5000}))),
            &[],
        )
        .await;
    assert_unauthorized(&answer, "expired an hour ago");
    assert_eq!(server.balance(1).await, 0);
    // Built the same way but still valid, the token is accepted.
    let valid = signed_token(Header::default(), claims(now_secs() + 3600), JWT_SECRET);
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(&valid), None, &[])
        .await;
    assert_eq!(answer.expect(200)["userId"], 1);
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_unauthorized() {
    let server = Server::start().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = json!({"sub": "1", "exp": now_secs() + 3600});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    // With an empty signature, and with the real token's signature pasted on.
    let real = server.token(1);
    let real_signature = real.rsplit('.').next().unwrap();
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
        format!("{header}.{payload}.{real_signature}"),
    ] {
        let answer = server
            .send(
                Method::POST,
                "/api/v1/wallet/charges",
                Some(&token),
                Some(RawBody::Json(json!({"amount": 5000}))),
                &[],
            )
            .await;
        assert_unauthorized(&answer, &token);
    }
    assert_eq!(server.balance(1).await, 0);
}

#[tokio::test]
async fn a_token_without_exp_or_with_a_sub_that_is_not_a_user_id_is_unauthorized() {
    let server = Server::start().await;
    let exp = now_secs() + 3600;
    let cases = [
        ("no exp", json!({"sub": "1"})),
        ("no sub", json!({"exp": exp})),
        (
            "exp as a string",
            json!({"sub": "1", "exp": exp.to_string()}),
        ),
        ("sub as a number", json!({"sub": 1, "exp": exp})),
        ("sub of letters", json!({"sub": "alice", "exp": exp})),
        ("empty sub", json!({"sub": "", "exp": exp})),
        ("negative sub", json!({"sub": "-1", "exp": exp})),
        ("fractional sub", json!({"sub": "1.5", "exp": exp})),
        (
            "sub past u64",
            json!({"sub": "18446744073709551616", "exp": exp}),
        ),
        ("sub with spaces", json!({"sub": " 1 ", "exp": exp})),
        ("sub with a plus sign", json!({"sub": "+1", "exp": exp})),
    ];
    for (what, claims) in cases {
        let token = signed_token(Header::default(), claims, JWT_SECRET);
        let answer = server
            .send(Method::GET, "/api/v1/wallet", Some(&token), None, &[])
            .await;
        assert_unauthorized(&answer, what);
    }
    // The right secret with another algorithm is refused too.
    let hs512 = signed_token(
        Header::new(Algorithm::HS512),
        json!({"sub": "1", "exp": exp}),
        JWT_SECRET,
    );
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(&hs512), None, &[])
        .await;
    assert_unauthorized(&answer, "HS512");
    // The largest user id is a user id.
    let token = signed_token(
        Header::default(),
        json!({"sub": u64::MAX.to_string(), "exp": exp}),
        JWT_SECRET,
    );
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(&token), None, &[])
        .await;
    assert_eq!(
        answer.expect(200),
        json!({"userId": u64::MAX, "balance": 0})
    );
}

#[tokio::test]
async fn the_admin_endpoint_refuses_user_tokens_and_wrong_keys() {
    let server = Server::start().await;
    let user_token = server.token(1);
    let near_miss = format!("{ADMIN_KEY}x");
    let cases: [(&str, Option<&str>); 5] = [
        ("no key", None),
        ("a user token", Some(&user_token)),
        ("a wrong key", Some("not-the-admin-key")),
        ("the key plus a character", Some(&near_miss)),
        (
            "a prefix of the key",
            Some(&ADMIN_KEY[..ADMIN_KEY.len() - 1]),
        ),
    ];
    for (what, bearer) in cases {
        let answer = server
            .send(
                Method::POST,
                "/api/v1/admin/concerts",
                bearer,
                Some(RawBody::Json(valid_spec())),
                &[],
            )
            .await;
        assert_unauthorized(&answer, what);
    }
    // Authentication is checked before the body is read.
    let answer = server
        .send(
            Method::POST,
            "/api/v1/admin/concerts",
            Some("wrong"),
            Some(RawBody::Text("{".into())),
            &[],
        )
        .await;
    assert_unauthorized(&answer, "a wrong key and a malformed body");
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
}

// ---------------------------------------------------------------------------------
// 400 INVALID_REQUEST
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_bodies_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let bodies = [
        "",
        "{",
        "not json",
        "null",
        "[]",
        "\"text\"",
        "{\"amount\": 5000,}",
        "{\"amount\": 5000} trailing",
        "{'amount': 5000}",
    ];
    for path in [
        "/api/v1/wallet/charges",
        "/api/v1/reservations",
        "/api/v1/payments",
    ] {
        for body in bodies {
            let answer = post_raw(&server, 1, path, body).await;
            assert_invalid(&answer, &format!("{path} with {body:?}"));
        }
    }
    for body in bodies {
        let answer = server
            .send(
                Method::POST,
                "/api/v1/admin/concerts",
                Some(ADMIN_KEY),
                Some(RawBody::Text(body.into())),
                &[],
            )
            .await;
        assert_invalid(&answer, &format!("a concert of {body:?}"));
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(reservation_status(&server, 1, &id).await, "HELD");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let cases = [
        (
            "/api/v1/reservations",
            json!({"dateId": date.to_string(), "seatIds": [2]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": "2"}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": ["2"]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": [2.5]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": [-2]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": [4_294_967_298u64]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": -1, "seatIds": [2]}),
        ),
        (
            "/api/v1/reservations",
            json!({"dateId": null, "seatIds": [2]}),
        ),
        ("/api/v1/reservations", json!({"seatIds": [2]})),
        ("/api/v1/reservations", json!({"dateId": date})),
        ("/api/v1/reservations", json!({})),
        ("/api/v1/wallet/charges", json!({"amount": "5000"})),
        ("/api/v1/wallet/charges", json!({"amount": true})),
        ("/api/v1/wallet/charges", json!({"amount": null})),
        ("/api/v1/wallet/charges", json!({"amount": [5000]})),
        ("/api/v1/wallet/charges", json!({})),
        ("/api/v1/payments", json!({"reservationId": 5})),
        ("/api/v1/payments", json!({"reservationId": "not-a-uuid"})),
        ("/api/v1/payments", json!({"reservationId": null})),
        ("/api/v1/payments", json!({"reservation_id": id})),
        ("/api/v1/payments", json!({})),
    ];
    for (path, body) in cases {
        let answer = server.post(1, path, body.clone()).await;
        assert_invalid(&answer, &format!("{path} with {body}"));
    }
    let mut spec = valid_spec();
    spec["dates"][0]["sections"][0]["rows"] = json!("2");
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "rows as a string");
    let mut spec = valid_spec();
    spec.as_object_mut().unwrap().remove("venue");
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "no venue");
    let mut spec = valid_spec();
    spec["dates"][0]["startsAt"] = json!("Christmas Eve");
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "a startsAt that is not a time");
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn unknown_fields_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let mut specs = Vec::new();
    for pointer in ["", "/dates/0", "/dates/0/sections/0"] {
        let mut spec = valid_spec();
        spec.pointer_mut(pointer).unwrap()["extra"] = json!(1);
        specs.push((pointer, spec));
    }
    for (pointer, spec) in specs {
        let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
        assert_invalid(&answer, &format!("an unknown field at {pointer:?}"));
    }
    let cases = [
        (
            "/api/v1/reservations",
            json!({"dateId": date, "seatIds": [2], "note": "aisle"}),
        ),
        (
            "/api/v1/wallet/charges",
            json!({"amount": 5000, "currency": "KRW"}),
        ),
        ("/api/v1/payments", json!({"reservationId": id, "tip": 1})),
    ];
    for (path, body) in cases {
        let answer = server.post(1, path, body.clone()).await;
        assert_invalid(&answer, &format!("{path} with {body}"));
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(reservation_status(&server, 1, &id).await, "HELD");
}

#[tokio::test]
async fn seat_lists_that_are_empty_repeated_or_too_long_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let lists: [&[u64]; 4] = [&[], &[1, 1], &[1, 2, 3, 2], &[1, 2, 3, 4, 5]];
    for seats in lists {
        let answer = server.hold(1, date, seats).await;
        assert_invalid(&answer, &format!("{seats:?}"));
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    // Four distinct seats, the most one reservation takes, are fine.
    server.hold(1, date, &[1, 2, 3, 4]).await.expect(201);
}

#[tokio::test]
async fn a_smaller_configured_reservation_size_is_enforced() {
    let server = Server::start_with(|c| c.max_seats_per_reservation = 2).await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let answer = server.hold(1, date, &[1, 2, 3]).await;
    assert_invalid(&answer, "three seats when two are allowed");
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    server.hold(1, date, &[1, 2]).await.expect(201);
}

#[tokio::test]
async fn malformed_path_ids_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    for path in [
        "/api/v1/concerts/abc".to_owned(),
        "/api/v1/concerts/-1".to_owned(),
        "/api/v1/concerts/1.5".to_owned(),
        "/api/v1/concerts/99999999999999999999999".to_owned(),
        "/api/v1/concerts/abc/dates".to_owned(),
        format!("/api/v1/concerts/abc/dates/{date}/seats"),
        format!("/api/v1/concerts/{concert}/dates/x/seats"),
        format!("/api/v1/concerts/{concert}/dates/-1/seats"),
    ] {
        assert_invalid(&server.get_public(&path).await, &path);
    }
    for path in [
        "/api/v1/reservations/not-a-uuid",
        "/api/v1/reservations/12345",
        "/api/v1/reservations/00000000-0000-0000-0000-00000000000g",
    ] {
        assert_invalid(&server.get(1, path).await, &format!("GET {path}"));
        assert_invalid(&server.delete(1, path).await, &format!("DELETE {path}"));
    }
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let answer = server
            .send(
                method.clone(),
                "/api/v1/concerts/abc/queue",
                Some(&server.token(1)),
                None,
                &[],
            )
            .await;
        assert_invalid(&answer, &format!("{method} a queue of concert abc"));
    }
    let answer = server.get(1, &queue_path(concert)).await;
    answer.assert_problem(404, "NOT_IN_QUEUE");
}

#[tokio::test]
async fn bad_status_filters_and_limits_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    let seats = format!("/api/v1/concerts/{concert}/dates/{date}/seats");
    for query in [
        "status=SOLDOUT",
        "status=available",
        "status=",
        "status=1",
        "status=AVAILABLE&status=HELD",
    ] {
        let path = format!("{seats}?{query}");
        assert_invalid(&server.get_public(&path).await, &path);
    }
    for status in ["AVAILABLE", "HELD", "SOLD"] {
        let path = format!("{seats}?status={status}");
        server.get_public(&path).await.expect(200);
    }
    server.charge(1, 1000).await;
    for base in ["/api/v1/wallet/transactions", "/api/v1/payments"] {
        for limit in [
            "0",
            "1001",
            "-1",
            "abc",
            "1.5",
            "",
            "99999999999999999999999",
        ] {
            let path = format!("{base}?limit={limit}");
            assert_invalid(&server.get(1, &path).await, &path);
        }
        for limit in ["1", "1000"] {
            server
                .get(1, &format!("{base}?limit={limit}"))
                .await
                .expect(200);
        }
    }
    assert_eq!(ledger(&server, 1).await.len(), 1);
}

#[tokio::test]
async fn invalid_idempotency_keys_are_invalid_requests() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let too_long = "k".repeat(256);
    let keys = [
        ("empty", ""),
        ("256 characters", too_long.as_str()),
        ("non-ASCII", "ключ-1"),
        ("an inner space", "a b"),
        ("a tab", "a\tb"),
    ];
    for (what, key) in keys {
        let charge = post_keyed(
            &server,
            1,
            "/api/v1/wallet/charges",
            key,
            json!({"amount": 500}),
        )
        .await;
        assert_invalid(&charge, &format!("a charge with a key of {what}"));
        let pay = post_keyed(
            &server,
            1,
            "/api/v1/payments",
            key,
            json!({"reservationId": id}),
        )
        .await;
        assert_invalid(&pay, &format!("a payment with a key of {what}"));
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    // The longest key, of every visible ASCII character, is fine.
    let visible: String = (0x21u8..=0x7e).map(char::from).collect();
    let longest: String = visible.chars().cycle().take(255).collect();
    let charge = post_keyed(
        &server,
        1,
        "/api/v1/wallet/charges",
        &longest,
        json!({"amount": 500}),
    )
    .await;
    assert_eq!(charge.expect(200)["balance"], 1500);
}

#[tokio::test]
async fn concert_specs_that_break_the_rules_are_invalid_requests() {
    let server = Server::start().await;
    let edits: [(&str, &str, Value); 10] = [
        ("an empty title", "/title", json!("")),
        ("a blank title", "/title", json!("   ")),
        ("an empty venue", "/venue", json!("")),
        ("no dates", "/dates", json!([])),
        ("no sections", "/dates/0/sections", json!([])),
        ("zero rows", "/dates/0/sections/0/rows", json!(0)),
        (
            "zero seats per row",
            "/dates/0/sections/0/seatsPerRow",
            json!(0),
        ),
        ("a negative price", "/dates/0/sections/0/price", json!(-1)),
        ("negative rows", "/dates/0/sections/0/rows", json!(-1)),
        (
            "a fractional price",
            "/dates/0/sections/0/price",
            json!(10.5),
        ),
    ];
    for (what, pointer, value) in edits {
        let mut spec = valid_spec();
        *spec.pointer_mut(pointer).unwrap() = value;
        let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
        assert_invalid(&answer, what);
    }
    // A later date or section with a fault spoils the whole spec.
    let mut spec = valid_spec();
    let mut bad_date = spec["dates"][0].clone();
    bad_date["sections"][0]["seatsPerRow"] = json!(0);
    spec["dates"].as_array_mut().unwrap().push(bad_date);
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "a second date with zero seats per row");
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // A free seat is allowed.
    let mut spec = valid_spec();
    spec["dates"][0]["sections"][0]["price"] = json!(0);
    server
        .admin_post("/api/v1/admin/concerts", spec)
        .await
        .expect(201);
}

#[tokio::test]
async fn a_date_over_the_configured_seat_maximum_is_an_invalid_request() {
    let server = Server::start_with(|c| c.max_seats_per_date = 50).await;
    let section = |name: &str, rows: u32, per_row: u32| json!({"name": name, "rows": rows, "seatsPerRow": per_row, "price": 100});
    let spec = |dates: Vec<Value>| json!({"title": "T", "venue": "V", "dates": dates});
    let date =
        |sections: Vec<Value>| json!({"startsAt": "2099-12-24T19:00:00Z", "sections": sections});
    for (what, body) in [
        (
            "51 seats in one section",
            spec(vec![date(vec![section("R", 3, 17)])]),
        ),
        (
            "51 seats in two sections",
            spec(vec![date(vec![section("R", 5, 10), section("S", 1, 1)])]),
        ),
        (
            "a second date of 51 seats",
            spec(vec![
                date(vec![section("R", 5, 10)]),
                date(vec![section("R", 51, 1)]),
            ]),
        ),
        (
            "rows times seats past u32",
            spec(vec![date(vec![section("R", 65_536, 65_536)])]),
        ),
    ] {
        let answer = server.admin_post("/api/v1/admin/concerts", body).await;
        assert_invalid(&answer, what);
    }
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // Exactly the maximum on each of two dates is fine: the limit is per date.
    let body = spec(vec![
        date(vec![section("R", 5, 5), section("S", 5, 5)]),
        date(vec![section("R", 50, 1)]),
    ]);
    let concert = server
        .admin_post("/api/v1/admin/concerts", body)
        .await
        .expect(201);
    assert_eq!(concert["dates"][0]["seatsTotal"], 50);
    assert_eq!(concert["dates"][1]["seatsTotal"], 50);
}

// ---------------------------------------------------------------------------------
// 400 INVALID_AMOUNT, 409 BALANCE_LIMIT, 413
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn charges_that_are_not_whole_positive_won_are_invalid_amounts() {
    let server = Server::start().await;
    server.charge(1, 700).await;
    let bodies = [
        r#"{"amount": 0}"#,
        r#"{"amount": -0}"#,
        r#"{"amount": -1}"#,
        r#"{"amount": -5000}"#,
        r#"{"amount": 12.5}"#,
        r#"{"amount": 1e30}"#,
        r#"{"amount": 99999999999999999999}"#,
        r#"{"amount": 18446744073709551615}"#,
        r#"{"amount": 10000001}"#,
    ];
    for body in bodies {
        let answer = post_raw(&server, 1, "/api/v1/wallet/charges", body).await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        answer.assert_problem(400, "INVALID_AMOUNT");
    }
    assert_eq!(server.balance(1).await, 700);
    assert_eq!(ledger(&server, 1).await.len(), 1);
    // The default maximum itself is a valid charge.
    assert_eq!(server.charge(1, 10_000_000).await["balance"], 10_000_700);
    // A whole number is whole however it is written (JSON Schema counts 5000.0 and
    // 5e3 as the integer 5000, and so does the OpenAPI document).
    for body in [r#"{"amount": 5000.0}"#, r#"{"amount": 5e3}"#] {
        let answer = post_raw(&server, 1, "/api/v1/wallet/charges", body).await;
        assert_eq!(answer.expect(200)["amount"], 5000, "{body}");
    }
}

#[tokio::test]
async fn a_charge_over_the_configured_maximum_is_an_invalid_amount() {
    let server = Server::start_with(|c| c.max_charge = 1000).await;
    server
        .post(1, "/api/v1/wallet/charges", json!({"amount": 1001}))
        .await
        .assert_problem(400, "INVALID_AMOUNT");
    assert_eq!(server.balance(1).await, 0);
    assert!(ledger(&server, 1).await.is_empty());
    assert_eq!(server.charge(1, 1000).await["balance"], 1000);
}

#[tokio::test]
async fn a_charge_past_the_maximum_balance_is_refused() {
    let server = Server::start_with(|c| c.max_balance = 10_000).await;
    server.charge(1, 6000).await;
    for amount in [4001, 10_000] {
        server
            .post(1, "/api/v1/wallet/charges", json!({"amount": amount}))
            .await
            .assert_problem(409, "BALANCE_LIMIT");
    }
    assert_eq!(server.balance(1).await, 6000);
    assert_eq!(ledger(&server, 1).await.len(), 1);
    // Up to the maximum exactly is fine, then not one won more.
    assert_eq!(server.charge(1, 4000).await["balance"], 10_000);
    server
        .post(1, "/api/v1/wallet/charges", json!({"amount": 1}))
        .await
        .assert_problem(409, "BALANCE_LIMIT");
    assert_eq!(server.balance(1).await, 10_000);
    assert_eq!(ledger(&server, 1).await.len(), 2);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_too_large() {
    let server = Server::start().await;
    // Valid JSON padded with whitespace: only its size can be wrong.
    let padded = |len: usize| {
        let json = r#"{"amount": 5000}"#;
        format!("{json}{}", " ".repeat(len - json.len()))
    };
    let answer = post_raw(
        &server,
        1,
        "/api/v1/wallet/charges",
        &padded(BODY_LEN_MAX + 1),
    )
    .await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(answer.body["status"], 413);
    assert_eq!(
        answer.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(server.balance(1).await, 0);
    assert!(ledger(&server, 1).await.is_empty());
    let spec = valid_spec().to_string();
    let huge_spec = format!("{spec}{}", " ".repeat(2 * BODY_LEN_MAX));
    let answer = server
        .send(
            Method::POST,
            "/api/v1/admin/concerts",
            Some(ADMIN_KEY),
            Some(RawBody::Text(huge_spec)),
            &[],
        )
        .await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // Exactly the limit is accepted.
    let answer = post_raw(&server, 1, "/api/v1/wallet/charges", &padded(BODY_LEN_MAX)).await;
    assert_eq!(answer.expect(200)["balance"], 5000);
}

// ---------------------------------------------------------------------------------
// 404 and 405
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_routes_are_not_found_and_wrong_methods_are_not_allowed() {
    let server = Server::start().await;
    for path in [
        "/index.html",
        "/assets/nope.js",
        "/api/v1/nope",
        "/api/v2/concerts",
        "/api/v1/concerts/1/dates/1/seats/1",
        "/api/v1/wallet/charges/x",
    ] {
        let answer = server.get(1, path).await;
        assert_eq!(answer.status, 404, "{path}");
        answer.assert_problem(404, "NOT_FOUND");
    }
    let token = server.token(1);
    for (method, path) in [
        (Method::POST, "/api/v1/wallet"),
        (Method::GET, "/api/v1/wallet/charges"),
        (Method::DELETE, "/api/v1/concerts"),
        (Method::PUT, "/api/v1/reservations"),
        (Method::PATCH, "/api/v1/concerts/1/queue"),
        (Method::GET, "/api/v1/admin/concerts"),
        (Method::POST, "/health"),
    ] {
        let answer = server
            .send(
                method.clone(),
                path,
                Some(&token),
                Some(RawBody::Json(json!({"amount": 5000}))),
                &[],
            )
            .await;
        assert_eq!(answer.status, 405, "{method} {path}");
        answer.assert_problem(405, "METHOD_NOT_ALLOWED");
        assert!(answer.headers.contains_key("allow"), "{method} {path}");
    }
    assert_eq!(server.balance(1).await, 0);
}

#[tokio::test]
async fn unknown_concerts_and_dates_are_not_found() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    let (other, other_dates) = concert_with_dates(&server, 1, 4, 100).await;
    for path in [
        "/api/v1/concerts/999".to_owned(),
        "/api/v1/concerts/0".to_owned(),
        "/api/v1/concerts/999/dates".to_owned(),
        format!("/api/v1/concerts/999/dates/{date}/seats"),
    ] {
        server
            .get_public(&path)
            .await
            .assert_problem(404, "CONCERT_NOT_FOUND");
    }
    for method in [Method::POST, Method::GET, Method::DELETE] {
        server
            .send(method, &queue_path(999), Some(&server.token(1)), None, &[])
            .await
            .assert_problem(404, "CONCERT_NOT_FOUND");
    }
    // A date of another concert is not a date of this one.
    for path in [
        format!("/api/v1/concerts/{concert}/dates/999/seats"),
        format!("/api/v1/concerts/{concert}/dates/0/seats"),
        format!("/api/v1/concerts/{concert}/dates/{}/seats", other_dates[0]),
        format!("/api/v1/concerts/{other}/dates/{date}/seats"),
    ] {
        server
            .get_public(&path)
            .await
            .assert_problem(404, "DATE_NOT_FOUND");
    }
    server.admit(concert, 1).await;
    let before = user_view(&server, 1).await;
    for missing in [999, 0] {
        server
            .hold(1, missing, &[1])
            .await
            .assert_problem(404, "DATE_NOT_FOUND");
    }
    assert_eq!(user_view(&server, 1).await, before);
    // Never having joined a real concert's queue is NOT_IN_QUEUE.
    server
        .get(1, &queue_path(other))
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
    server
        .delete(1, &queue_path(other))
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
    server
        .get(1, &queue_path(other))
        .await
        .assert_problem(404, "NOT_IN_QUEUE");
}

#[tokio::test]
async fn unknown_seats_are_not_found_and_named() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let answer = server.hold(1, date, &[1, 11, 0]).await;
    answer.assert_problem(404, "SEAT_NOT_FOUND");
    assert_eq!(answer.body["seatIds"], json!([11, 0]));
    let answer = server.hold(1, date, &[4_294_967_295]).await;
    answer.assert_problem(404, "SEAT_NOT_FOUND");
    assert_eq!(answer.body["seatIds"], json!([4_294_967_295u64]));
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn unknown_reservations_are_not_found() {
    let server = Server::start().await;
    server.charge(1, 1000).await;
    let before = user_view(&server, 1).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let path = format!("/api/v1/reservations/{unknown}");
    server
        .get(1, &path)
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server
        .delete(1, &path)
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    server
        .pay(1, &unknown)
        .await
        .assert_problem(404, "RESERVATION_NOT_FOUND");
    let keyed = post_keyed(
        &server,
        1,
        "/api/v1/payments",
        "k1",
        json!({"reservationId": unknown}),
    )
    .await;
    keyed.assert_problem(404, "RESERVATION_NOT_FOUND");
    assert_eq!(user_view(&server, 1).await, before);
}

// ---------------------------------------------------------------------------------
// 403 NOT_ADMITTED
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn only_an_active_user_may_hold_seats() {
    let server = Server::start_with(|c| c.queue_active_max = 1).await;
    let (concert, date) = server.concert(1, 10, 100).await;
    let (elsewhere, _) = concert_with_dates(&server, 1, 4, 100).await;
    server.admit(concert, 1).await;
    let waiting = server
        .post(2, &queue_path(concert), json!(null))
        .await
        .expect(201);
    assert_eq!(waiting["status"], "WAITING");
    server.admit(elsewhere, 3).await;
    let before = (
        user_view(&server, 2).await,
        user_view(&server, 3).await,
        user_view(&server, 4).await,
        date_view(&server, concert, date).await,
    );
    // Waiting, admitted to another concert only, never joined.
    for user in [2, 3, 4] {
        server
            .hold(user, date, &[5])
            .await
            .assert_problem(403, "NOT_ADMITTED");
    }
    let after = (
        user_view(&server, 2).await,
        user_view(&server, 3).await,
        user_view(&server, 4).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    // Once the active user leaves, the waiting one is admitted and may hold.
    server.delete(1, &queue_path(concert)).await.expect(204);
    server
        .hold(1, date, &[6])
        .await
        .assert_problem(403, "NOT_ADMITTED");
    assert_eq!(
        server.get(2, &queue_path(concert)).await.expect(200)["status"],
        "ACTIVE"
    );
    server.hold(2, date, &[5]).await.expect(201);
}

// ---------------------------------------------------------------------------------
// 409 on holds
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_hold_on_a_taken_seat_is_refused_whole_and_names_only_the_taken_seats() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    for user in 1..=3 {
        server.admit(concert, user).await;
    }
    held(&server, 1, date, &[2]).await;
    let sold = held(&server, 3, date, &[5]).await;
    server.charge(3, 100).await;
    server.pay(3, &sold).await.expect(201);
    let before = (
        user_view(&server, 2).await,
        date_view(&server, concert, date).await,
    );
    let answer = server.hold(2, date, &[5, 1, 2, 3]).await;
    answer.assert_problem(409, "SEAT_UNAVAILABLE");
    assert_eq!(answer.body["seatIds"], json!([5, 2]));
    let after = (
        user_view(&server, 2).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    for seat in [1, 3] {
        assert_eq!(server.seat_status(concert, date, seat).await, "AVAILABLE");
    }
    // A user's own held seat is taken for them too.
    server
        .hold(1, date, &[2])
        .await
        .assert_problem(409, "SEAT_UNAVAILABLE");
    // The free seats of the refused request can still be held.
    server.hold(2, date, &[1, 3]).await.expect(201);
}

#[tokio::test]
async fn the_seat_limit_counts_held_and_paid_seats_on_one_date() {
    let server = Server::start().await;
    let (concert, dates) = concert_with_dates(&server, 2, 10, 100).await;
    let (date, second_date) = (dates[0], dates[1]);
    server.admit(concert, 1).await;
    let paid = held(&server, 1, date, &[1, 2, 3]).await;
    server.charge(1, 1000).await;
    server.pay(1, &paid).await.expect(201);
    // Paying completed the entry; join again to be admitted.
    server.admit(concert, 1).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    server
        .hold(1, date, &[4, 5])
        .await
        .assert_problem(409, "SEAT_LIMIT_EXCEEDED");
    assert_eq!(
        (
            user_view(&server, 1).await,
            date_view(&server, concert, date).await
        ),
        before
    );
    let fourth = held(&server, 1, date, &[4]).await;
    server
        .hold(1, date, &[5])
        .await
        .assert_problem(409, "SEAT_LIMIT_EXCEEDED");
    assert_eq!(server.seat_status(concert, date, 5).await, "AVAILABLE");
    // The limit is per date.
    held(&server, 1, second_date, &[1, 2, 3, 4]).await;
    // A cancelled hold no longer counts.
    server
        .delete(1, &format!("/api/v1/reservations/{fourth}"))
        .await
        .expect(204);
    held(&server, 1, date, &[5]).await;
}

#[tokio::test]
async fn a_user_whose_active_window_ended_is_not_admitted() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    server.advance(600);
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    server
        .hold(1, date, &[1])
        .await
        .assert_problem(403, "NOT_ADMITTED");
    assert_eq!(
        (
            user_view(&server, 1).await,
            date_view(&server, concert, date).await
        ),
        before
    );
    assert_eq!(
        server.get(1, &queue_path(concert)).await.expect(200)["status"],
        "EXPIRED"
    );
    // Joining again admits the user anew.
    server.admit(concert, 1).await;
    server.hold(1, date, &[1]).await.expect(201);
}

#[tokio::test]
async fn an_expired_hold_no_longer_counts_toward_the_seat_limit() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    held(&server, 1, date, &[1, 2, 3, 4]).await;
    server.advance(300);
    // The hold's expiry ended the entry; a new one is needed, and then the four
    // lapsed seats no longer count, whether or not a cleanup has run.
    server.admit(concert, 1).await;
    held(&server, 1, date, &[1, 2, 5, 6]).await;
    server
        .hold(1, date, &[7])
        .await
        .assert_problem(409, "SEAT_LIMIT_EXCEEDED");
}

// ---------------------------------------------------------------------------------
// 409 and 402 on payments
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn paying_twice_or_cancelling_a_paid_reservation_is_already_paid() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1, 2]).await;
    server.charge(1, 1000).await;
    server.pay(1, &id).await.expect(201);
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    server.pay(1, &id).await.assert_problem(409, "ALREADY_PAID");
    let keyed = post_keyed(
        &server,
        1,
        "/api/v1/payments",
        "again",
        json!({"reservationId": id}),
    )
    .await;
    keyed.assert_problem(409, "ALREADY_PAID");
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .assert_problem(409, "ALREADY_PAID");
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(server.balance(1).await, 800);
    assert_eq!(ledger(&server, 1).await.len(), 2);
    assert_eq!(reservation_status(&server, 1, &id).await, "PAID");
    assert_eq!(server.seat_status(concert, date, 1).await, "SOLD");
}

#[tokio::test]
async fn an_expired_hold_cannot_be_paid() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    server.advance(300);
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    server
        .pay(1, &id)
        .await
        .assert_problem(409, "RESERVATION_EXPIRED");
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(server.balance(1).await, 1000);
    assert_eq!(reservation_status(&server, 1, &id).await, "EXPIRED");
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
    // Releasing an expired hold is fine and changes nothing.
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(204);
    assert_eq!(reservation_status(&server, 1, &id).await, "EXPIRED");
}

#[tokio::test]
async fn a_cancelled_hold_cannot_be_paid() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    server
        .delete(1, &format!("/api/v1/reservations/{id}"))
        .await
        .expect(204);
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    server
        .pay(1, &id)
        .await
        .assert_problem(409, "RESERVATION_CANCELLED");
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(reservation_status(&server, 1, &id).await, "CANCELLED");
    assert_eq!(server.seat_status(concert, date, 1).await, "AVAILABLE");
}

#[tokio::test]
async fn a_payment_the_balance_does_not_cover_changes_nothing_and_can_follow_a_top_up() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 150).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1, 2]).await;
    // An empty wallet, then one a won short.
    for top_up in [0, 299] {
        if top_up > 0 {
            server.charge(1, top_up).await;
        }
        let before = (
            user_view(&server, 1).await,
            date_view(&server, concert, date).await,
        );
        server
            .pay(1, &id)
            .await
            .assert_problem(402, "INSUFFICIENT_BALANCE");
        let after = (
            user_view(&server, 1).await,
            date_view(&server, concert, date).await,
        );
        assert_eq!(before, after);
        assert_eq!(reservation_status(&server, 1, &id).await, "HELD");
        assert_eq!(server.seat_status(concert, date, 1).await, "HELD");
        assert_eq!(
            server.get(1, &queue_path(concert)).await.expect(200)["status"],
            "ACTIVE"
        );
    }
    assert_eq!(server.balance(1).await, 299);
    server.charge(1, 1).await;
    let payment = server.pay(1, &id).await.expect(201);
    assert_eq!(payment["amount"], 300);
    assert_eq!(payment["balance"], 0);
    assert_eq!(server.seat_status(concert, date, 2).await, "SOLD");
}

/// A section may be free (price 0), and a user who never charged has a wallet with
/// balance 0, so paying a free hold with a fresh wallet must work.
#[tokio::test]
async fn a_free_hold_can_be_paid_from_a_wallet_never_charged() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 0).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    let payment = server.pay(1, &id).await.expect(201);
    assert_eq!(payment["amount"], 0);
    assert_eq!(server.balance(1).await, 0);
    assert_eq!(server.seat_status(concert, date, 1).await, "SOLD");
}

// ---------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_charge_with_the_same_key_is_applied_once() {
    let server = Server::start_with(|c| c.max_balance = 8000).await;
    let first = post_keyed(
        &server,
        1,
        "/api/v1/wallet/charges",
        "top-up-1",
        json!({"amount": 5000}),
    )
    .await
    .expect(200);
    assert_eq!(first["balance"], 5000);
    // A repeat returns the first answer even though the charge would now break the
    // balance limit: it is not charged again.
    for _ in 0..2 {
        let again = post_keyed(
            &server,
            1,
            "/api/v1/wallet/charges",
            "top-up-1",
            json!({"amount": 5000}),
        )
        .await
        .expect(200);
        assert_eq!(again, first);
    }
    assert_eq!(server.balance(1).await, 5000);
    assert_eq!(ledger(&server, 1).await.len(), 1);
    assert_eq!(ledger(&server, 1).await[0]["id"], first["chargeId"]);
    // Keys are per user.
    let other = post_keyed(
        &server,
        2,
        "/api/v1/wallet/charges",
        "top-up-1",
        json!({"amount": 5000}),
    )
    .await
    .expect(200);
    assert_ne!(other["chargeId"], first["chargeId"]);
    assert_eq!(server.balance(2).await, 5000);
}

#[tokio::test]
async fn a_repeated_payment_with_the_same_key_returns_the_first_payment() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let body = json!({"reservationId": id});
    let first = post_keyed(&server, 1, "/api/v1/payments", "pay-1", body.clone())
        .await
        .expect(201);
    for _ in 0..2 {
        let again = post_keyed(&server, 1, "/api/v1/payments", "pay-1", body.clone())
            .await
            .expect(201);
        assert_eq!(again, first);
    }
    assert_eq!(server.balance(1).await, 900);
    assert_eq!(ledger(&server, 1).await.len(), 2);
    let payments = server.get(1, "/api/v1/payments").await.expect(200);
    assert_eq!(payments.as_array().unwrap().len(), 1);
    assert_eq!(payments[0]["id"], first["id"]);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_refused() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 100).await;
    server.admit(concert, 1).await;
    let first = held(&server, 1, date, &[1]).await;
    let second = held(&server, 1, date, &[2]).await;
    post_keyed(
        &server,
        1,
        "/api/v1/wallet/charges",
        "k",
        json!({"amount": 5000}),
    )
    .await
    .expect(200);
    post_keyed(
        &server,
        1,
        "/api/v1/payments",
        "p",
        json!({"reservationId": first}),
    )
    .await
    .expect(201);
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let cases = [
        ("/api/v1/wallet/charges", "k", json!({"amount": 6000})),
        ("/api/v1/payments", "k", json!({"reservationId": second})),
        ("/api/v1/payments", "p", json!({"reservationId": second})),
        ("/api/v1/wallet/charges", "p", json!({"amount": 5000})),
    ];
    for (path, key, body) in cases {
        let answer = post_keyed(&server, 1, path, key, body.clone()).await;
        assert_eq!(answer.status, 422, "{path} {key} {body}: {:?}", answer.body);
        answer.assert_problem(422, "IDEMPOTENCY_KEY_REUSED");
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
    assert_eq!(server.balance(1).await, 4900);
    assert_eq!(reservation_status(&server, 1, &second).await, "HELD");
    assert_eq!(server.seat_status(concert, date, 2).await, "HELD");
}

#[tokio::test]
async fn a_refused_keyed_request_does_not_use_up_its_key() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 10, 300).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    post_keyed(
        &server,
        1,
        "/api/v1/wallet/charges",
        "c",
        json!({"amount": 0}),
    )
    .await
    .assert_problem(400, "INVALID_AMOUNT");
    let charge = post_keyed(
        &server,
        1,
        "/api/v1/wallet/charges",
        "c",
        json!({"amount": 100}),
    )
    .await
    .expect(200);
    assert_eq!(charge["balance"], 100);
    let body = json!({"reservationId": id});
    post_keyed(&server, 1, "/api/v1/payments", "p", body.clone())
        .await
        .assert_problem(402, "INSUFFICIENT_BALANCE");
    server.charge(1, 200).await;
    let payment = post_keyed(&server, 1, "/api/v1/payments", "p", body)
        .await
        .expect(201);
    assert_eq!(payment["balance"], 0);
}

// ---------------------------------------------------------------------------------
// Wallets from first use
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_users_wallet_exists_with_a_zero_balance() {
    let server = Server::start().await;
    assert_eq!(
        server.get(77, "/api/v1/wallet").await.expect(200),
        json!({"userId": 77, "balance": 0})
    );
    for path in [
        "/api/v1/wallet/transactions",
        "/api/v1/payments",
        "/api/v1/reservations",
    ] {
        assert_eq!(server.get(78, path).await.expect(200), json!([]), "{path}");
    }
    assert_eq!(
        server.get(78, "/api/v1/wallet").await.expect(200),
        json!({"userId": 78, "balance": 0})
    );
}

// ---------------------------------------------------------------------------------
// Hardening: tokens, repeated headers, control characters, unsellable concerts
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_not_valid_yet_or_spelling_a_user_id_another_way_is_unauthorized() {
    let server = Server::start().await;
    let exp = now_secs() + 3600;
    let cases = [
        (
            "nbf ten minutes ahead",
            json!({"sub": "1", "exp": exp, "nbf": now_secs() + 600}),
        ),
        ("sub with a leading zero", json!({"sub": "01", "exp": exp})),
        ("sub of zeros", json!({"sub": "0001", "exp": exp})),
        ("sub 0", json!({"sub": "0", "exp": exp})),
    ];
    for (what, claims) in cases {
        let token = signed_token(Header::default(), claims, JWT_SECRET);
        let answer = server
            .send(
                Method::POST,
                "/api/v1/wallet/charges",
                Some(&token),
                Some(RawBody::Json(json!({"amount": 5000}))),
                &[],
            )
            .await;
        assert_unauthorized(&answer, what);
    }
    assert_eq!(ledger(&server, 1).await, Vec::<Value>::new());
    // An nbf that has passed is fine.
    let token = signed_token(
        Header::default(),
        json!({"sub": "1", "exp": exp, "nbf": now_secs() - 60}),
        JWT_SECRET,
    );
    let answer = server
        .send(Method::GET, "/api/v1/wallet", Some(&token), None, &[])
        .await;
    assert_eq!(answer.expect(200)["userId"], 1);
}

#[tokio::test]
async fn two_idempotency_key_headers_are_an_invalid_request() {
    let server = Server::start().await;
    let (concert, date) = server.concert(1, 4, 100).await;
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 1000).await;
    let before = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    let token = server.token(1);
    for keys in [["key-a", "key-b"], ["key-a", "key-a"]] {
        let headers = [("Idempotency-Key", keys[0]), ("Idempotency-Key", keys[1])];
        let charge = server
            .send(
                Method::POST,
                "/api/v1/wallet/charges",
                Some(&token),
                Some(RawBody::Json(json!({"amount": 500}))),
                &headers,
            )
            .await;
        assert_invalid(&charge, &format!("a charge with keys {keys:?}"));
        let pay = server
            .send(
                Method::POST,
                "/api/v1/payments",
                Some(&token),
                Some(RawBody::Json(json!({"reservationId": id}))),
                &headers,
            )
            .await;
        assert_invalid(&pay, &format!("a payment with keys {keys:?}"));
    }
    let after = (
        user_view(&server, 1).await,
        date_view(&server, concert, date).await,
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn names_with_control_characters_are_invalid_requests() {
    let server = Server::start().await;
    let edits = [
        ("a NUL in the title", "/title", "Winter\u{0}Tour"),
        ("a newline ending the title", "/title", "Winter Tour\n"),
        ("a tab in the title", "/title", "Winter\tTour"),
        ("an escape in the venue", "/venue", "Olympic \u{1b}[31mHall"),
        (
            "a DEL in a section name",
            "/dates/0/sections/0/name",
            "R\u{7f}",
        ),
        (
            "a C1 control in a section name",
            "/dates/0/sections/0/name",
            "R\u{85}",
        ),
        ("a title of only wide spaces", "/title", "\u{3000}\u{a0}"),
    ];
    for (what, pointer, value) in edits {
        let mut spec = valid_spec();
        *spec.pointer_mut(pointer).unwrap() = json!(value);
        let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
        assert_invalid(&answer, what);
    }
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // Letters of any script and inner spaces are fine.
    let mut spec = valid_spec();
    spec["title"] = json!("겨울 투어 — Winter Tour");
    server
        .admin_post("/api/v1/admin/concerts", spec)
        .await
        .expect(201);
}

#[tokio::test]
async fn a_date_that_has_already_started_is_an_invalid_request() {
    let server = Server::start().await;
    let past = (server.engine.now() - chrono::Duration::minutes(1)).to_rfc3339();
    let mut spec = valid_spec();
    spec["dates"][0]["startsAt"] = json!(past);
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "a date a minute ago");
    // One past date among future ones spoils the spec.
    let mut spec = valid_spec();
    let mut old = spec["dates"][0].clone();
    old["startsAt"] = json!("2020-01-01T19:00:00Z");
    spec["dates"].as_array_mut().unwrap().push(old);
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "a second date in 2020");
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // A date a minute ahead of the server's clock is fine.
    let soon = (server.engine.now() + chrono::Duration::minutes(1)).to_rfc3339();
    let mut spec = valid_spec();
    spec["dates"][0]["startsAt"] = json!(soon);
    server
        .admin_post("/api/v1/admin/concerts", spec)
        .await
        .expect(201);
}

#[tokio::test]
async fn a_seat_dearer_than_the_largest_balance_is_an_invalid_request() {
    let server = Server::start_with(|c| c.max_balance = 10_000).await;
    let mut spec = valid_spec();
    spec["dates"][0]["sections"][0]["price"] = json!(10_001);
    let answer = server.admin_post("/api/v1/admin/concerts", spec).await;
    assert_invalid(&answer, "a price one won over --max-balance");
    assert_eq!(
        server.get_public("/api/v1/concerts").await.expect(200),
        json!([])
    );
    // A seat at exactly the largest balance can be bought.
    let mut spec = valid_spec();
    spec["dates"][0]["sections"][0]["price"] = json!(10_000);
    let concert = server
        .admin_post("/api/v1/admin/concerts", spec)
        .await
        .expect(201);
    let (concert, date) = (
        concert["id"].as_u64().unwrap(),
        concert["dates"][0]["id"].as_u64().unwrap(),
    );
    server.admit(concert, 1).await;
    let id = held(&server, 1, date, &[1]).await;
    server.charge(1, 10_000).await;
    server.pay(1, &id).await.expect(201);
}

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let server = Server::start().await;
    let mut spec = valid_spec();
    spec["dates"][0]["sections"][0]["rows"] = json!(2.0);
    spec["dates"][0]["sections"][0]["price"] = json!(1e3);
    let concert = server
        .admin_post("/api/v1/admin/concerts", spec)
        .await
        .expect(201);
    let (concert, date) = (
        concert["id"].as_u64().unwrap(),
        concert["dates"][0]["id"].as_u64().unwrap(),
    );
    server.admit(concert, 1).await;
    let held = server
        .post(
            1,
            "/api/v1/reservations",
            json!({"dateId": date as f64, "seatIds": [1.0, 2]}),
        )
        .await
        .expect(201);
    assert_eq!(held["amount"], 2000);
}
