//! The HTTP front every strategy server shares: the two requests boxoffice takes,
//! checked the way boxoffice checks them, handed to a [`Backend`] that does the work
//! its own way, and answered like boxoffice answers them.
//!
//! - `POST /api/v1/reservations` with `Authorization: Bearer <JWT HS256>` (`sub` = the
//!   user id in decimal, `exp` required) and `{"dateId": D, "seatIds": [..]}`: 201 with
//!   the reservation, 409 `SEAT_UNAVAILABLE`, 404 `SEAT_NOT_FOUND`;
//! - `POST /api/v1/wallet/charges` with `{"amount": N}`: 200 with the new balance.
//!
//! Errors are problem+json with a `code`, as in boxoffice. A backend that cannot do
//! the work (a database error, a lock it waited too long for) answers 5xx, and the
//! load generator counts that as an error.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

/// Most seats in one reservation (boxoffice's default `--max-seats-per-reservation`).
pub const SEATS_PER_RESERVATION_MAX: usize = 4;
/// Largest wallet balance, in won (boxoffice's default `--max-balance`).
pub const BALANCE_MAX: i64 = 1_000_000_000;
/// Largest single charge, in won (boxoffice's default `--max-charge`).
pub const CHARGE_MAX: i64 = 10_000_000;
/// How long a hold lasts (boxoffice's default `--hold-ttl-secs`).
pub const HOLD_TTL_SECS: i64 = 300;

/// A hold as the client sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldRequest {
    /// The concert date.
    pub date_id: i64,
    /// The seats, all or none.
    pub seat_ids: Vec<i64>,
}

/// A charge as the client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Won to add.
    pub amount: i64,
}

/// What a backend made of a request.
#[derive(Debug)]
pub enum Outcome {
    /// The seats are held by a new reservation.
    Held {
        /// The reservation's id.
        reservation_id: String,
        /// What the seats cost together.
        amount: i64,
    },
    /// The wallet was charged.
    Charged {
        /// The charge's id.
        charge_id: String,
        /// The balance after the charge.
        balance: i64,
    },
    /// A business answer (4xx): `(status, code, detail)`.
    Rejected(StatusCode, &'static str, String),
    /// The backend could not do the work (5xx): `(status, code, detail)`.
    Failed(StatusCode, &'static str, String),
}

impl Outcome {
    /// 409 `SEAT_UNAVAILABLE`.
    pub fn seat_unavailable(seat: i64) -> Outcome {
        Outcome::Rejected(
            StatusCode::CONFLICT,
            "SEAT_UNAVAILABLE",
            format!("seat {seat} is not available"),
        )
    }

    /// 404 `SEAT_NOT_FOUND`.
    pub fn seat_not_found() -> Outcome {
        Outcome::Rejected(
            StatusCode::NOT_FOUND,
            "SEAT_NOT_FOUND",
            "a seat does not exist".into(),
        )
    }

    /// 409 `BALANCE_LIMIT`.
    pub fn balance_limit() -> Outcome {
        Outcome::Rejected(
            StatusCode::CONFLICT,
            "BALANCE_LIMIT",
            format!("the balance would pass {BALANCE_MAX}"),
        )
    }

    /// 500: the storage said no.
    pub fn storage(error: impl std::fmt::Display) -> Outcome {
        Outcome::Failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "STORAGE_ERROR",
            error.to_string(),
        )
    }
}

/// How a strategy holds seats and charges wallets.
pub trait Backend: Send + Sync + 'static {
    /// Holds `request.seat_ids` of `request.date_id` for `user`, all or none.
    fn hold(&self, user: i64, request: HoldRequest) -> impl Future<Output = Outcome> + Send;
    /// Adds `amount` to `user`'s wallet.
    fn charge(&self, user: i64, amount: i64) -> impl Future<Output = Outcome> + Send;
}

struct Front<B> {
    backend: B,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl<B> Front<B> {
    /// The user of a request, checked as boxoffice checks it; `None` means 401.
    fn user(&self, headers: &HeaderMap) -> Option<i64> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        if !claims.sub.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        claims.sub.parse().ok()
    }
}

fn unauthorized() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "invalid token".into(),
    )
}

/// The router of a strategy server: the two routes over `backend`, tokens checked
/// against `jwt_secret`.
pub fn router<B: Backend>(backend: B, jwt_secret: &str) -> Router {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let front = Arc::new(Front {
        backend,
        decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
        validation,
    });
    Router::new()
        .route("/api/v1/reservations", post(hold::<B>))
        .route("/api/v1/wallet/charges", post(charge::<B>))
        .with_state(front)
}

async fn hold<B: Backend>(
    State(front): State<Arc<Front<B>>>,
    headers: HeaderMap,
    body: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(user) = front.user(&headers) else {
        return unauthorized();
    };
    let Ok(Json(request)) = body else {
        return invalid("malformed hold");
    };
    let mut seats = request.seat_ids.clone();
    seats.sort_unstable();
    seats.dedup();
    if seats.is_empty()
        || seats.len() != request.seat_ids.len()
        || seats.len() > SEATS_PER_RESERVATION_MAX
    {
        return invalid("seatIds: 1 to 4 distinct seats");
    }
    let (date_id, seat_ids) = (request.date_id, request.seat_ids.clone());
    match front.backend.hold(user, request).await {
        Outcome::Held {
            reservation_id,
            amount,
        } => (
            StatusCode::CREATED,
            Json(
                json!({"id": reservation_id, "dateId": date_id, "status": "HELD",
                        "amount": amount, "seatIds": seat_ids}),
            ),
        )
            .into_response(),
        outcome => answer(outcome),
    }
}

async fn charge<B: Backend>(
    State(front): State<Arc<Front<B>>>,
    headers: HeaderMap,
    body: Result<Json<ChargeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(user) = front.user(&headers) else {
        return unauthorized();
    };
    let Ok(Json(request)) = body else {
        return invalid("malformed charge");
    };
    if request.amount <= 0 || request.amount > CHARGE_MAX {
        return problem(
            StatusCode::BAD_REQUEST,
            "INVALID_AMOUNT",
            "amount out of range".into(),
        );
    }
    match front.backend.charge(user, request.amount).await {
        Outcome::Charged { charge_id, balance } => {
            Json(json!({"chargeId": charge_id, "amount": request.amount, "balance": balance}))
                .into_response()
        }
        outcome => answer(outcome),
    }
}

fn answer(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Rejected(status, code, detail) | Outcome::Failed(status, code, detail) => {
            problem(status, code, detail)
        }
        Outcome::Held { .. } | Outcome::Charged { .. } => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "WRONG_OUTCOME",
            "the backend answered another request".into(),
        ),
    }
}

fn invalid(detail: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST", detail.into())
}

fn problem(status: StatusCode, code: &'static str, detail: String) -> Response {
    let body = json!({"type": "about:blank", "title": status.canonical_reason(),
                      "status": status.as_u16(), "detail": detail, "code": code});
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
