//! What the load benches (`hammer`, `feed`) do to a server, shared with `#[path]`:
//! [`setup`] creates a concert and admits and charges the users; [`flash_sale`] has
//! every user hold a seat of their own and then pay for it.

use super::load::{Phase, Stop, post_raw, timed};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A server under load, and how to speak to it.
pub struct Target {
    /// `http://host:port`.
    pub base: String,
    /// The client every request goes through.
    pub http: reqwest::Client,
    /// The admin key.
    pub admin_key: String,
    /// The JWT secret user tokens are signed with.
    pub jwt_secret: String,
}

impl Target {
    /// A token for `user`.
    pub fn token(&self, user: u64) -> String {
        boxoffice::http::auth::token_for_secret(
            &self.jwt_secret,
            boxoffice::domain::UserId(user),
            3600,
        )
    }

    /// POSTs JSON; answers the status and the body parsed as JSON.
    pub async fn post(&self, bearer: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let (status, bytes) = post_raw(&self.http, &url, bearer, &body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// Creates a concert of two dates (one seat; a seat per user and more), and admits and
/// charges users 1 to `users`; answers the concert and the two dates.
pub async fn setup(target: &Target, users: u64, connections: usize) -> (u64, u64, u64) {
    let seats_per_row = 100;
    let rows = (users / seats_per_row + 2) as u32;
    let spec = json!({"title": "Hammer", "venue": "Loopback", "dates": [
        {"startsAt": "2099-12-24T19:00:00Z", "sections": [{"name": "A", "rows": 1, "seatsPerRow": 1, "price": 1000}]},
        {"startsAt": "2099-12-25T19:00:00Z", "sections": [{"name": "B", "rows": rows, "seatsPerRow": seats_per_row, "price": 1000}]}]});
    let (status, concert) = target
        .post(&target.admin_key, "/api/v1/admin/concerts", spec)
        .await;
    assert_eq!(status, 201, "creating the concert: {concert}");
    let concert_id = concert["id"].as_u64().unwrap();
    let (one_seat_date, sale_date) = (
        concert["dates"][0]["id"].as_u64().unwrap(),
        concert["dates"][1]["id"].as_u64().unwrap(),
    );
    let next = Arc::new(AtomicU64::new(1));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (next, target) = (
                next.clone(),
                Target {
                    base: target.base.clone(),
                    http: target.http.clone(),
                    admin_key: String::new(),
                    jwt_secret: target.jwt_secret.clone(),
                },
            );
            tokio::spawn(async move {
                loop {
                    let user = next.fetch_add(1, Ordering::Relaxed);
                    if user > users {
                        break;
                    }
                    let token = target.token(user);
                    let (status, entry) = target
                        .post(
                            &token,
                            &format!("/api/v1/concerts/{concert_id}/queue"),
                            json!(null),
                        )
                        .await;
                    assert!(status == 201 || status == 200, "joining: {entry}");
                    assert_eq!(
                        entry["status"], "ACTIVE",
                        "user {user} must be admitted (raise --queue-active-max)"
                    );
                    let (status, _) = target
                        .post(&token, "/api/v1/wallet/charges", json!({"amount": 5000}))
                        .await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (concert_id, one_seat_date, sale_date)
}

/// Every user holds a seat of their own on `date`, then pays for it: the hold phase,
/// the pay phase, and whether every hold was paid.
pub async fn flash_sale(
    target: &Arc<Target>,
    tokens: &Arc<Vec<String>>,
    date: u64,
    connections: usize,
    (hold_name, pay_name): (&'static str, &'static str),
) -> (Phase, Phase, bool) {
    let users = tokens.len() - 1;
    let next_user = Arc::new(AtomicU64::new(0));
    let reservations: Arc<parking_lot::Mutex<Vec<(u64, String)>>> = Arc::default();
    let (t, hold_tokens, held) = (target.clone(), tokens.clone(), reservations.clone());
    let hold = timed(
        hold_name,
        connections,
        Stop::Count(Arc::new(AtomicUsize::new(0)), users),
        move |_, _| {
            let (t, tokens, held, next_user) = (
                t.clone(),
                hold_tokens.clone(),
                held.clone(),
                next_user.clone(),
            );
            async move {
                // Each request takes the next user; that user holds a seat of their own.
                let user = next_user.fetch_add(1, Ordering::Relaxed) + 1;
                let body = json!({"dateId": date, "seatIds": [user]});
                let (status, reservation) = t
                    .post(&tokens[user as usize], "/api/v1/reservations", body)
                    .await;
                if status == 201 {
                    let id = reservation["id"].as_str().unwrap_or_default().to_owned();
                    held.lock().push((user, id));
                }
                status
            }
        },
    )
    .await;
    let held: Arc<Vec<(u64, String)>> = Arc::new(std::mem::take(&mut *reservations.lock()));
    let (t, tokens, list, cursor) = (
        target.clone(),
        tokens.clone(),
        held.clone(),
        Arc::new(AtomicUsize::new(0)),
    );
    let pay = timed(
        pay_name,
        connections,
        Stop::Count(Arc::new(AtomicUsize::new(0)), held.len()),
        move |_, _| {
            let (t, tokens, list) = (t.clone(), tokens.clone(), list.clone());
            let i = cursor.fetch_add(1, Ordering::Relaxed);
            async move {
                let (user, id) = &list[i];
                let url = format!("{}/api/v1/payments", t.base);
                let body = json!({"reservationId": id});
                post_raw(&t.http, &url, &tokens[*user as usize], &body)
                    .await
                    .0
            }
        },
    )
    .await;
    let paid_all = pay.count(201) == held.len() as u64 && held.len() == users;
    (hold, pay, paid_all)
}
