//! Reservation routes: hold seats (all or none), read and release one's own holds,
//! refund one's paid reservations.

use super::AppState;
use super::auth::User;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path};
use crate::domain::date::{Reservation, ReservationStatus};
use crate::domain::integer;
use crate::domain::{ConcertId, DateId, ReservationId, SeatId, Timestamp, Won};
use crate::engine::Engine;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{self, IntoResponse};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// The reservation routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reservations", get(list).post(hold))
        .route("/api/v1/reservations/{id}", get(get_one).delete(cancel))
        .route("/api/v1/reservations/{id}/refund", post(refund))
}

/// A request to hold seats.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldRequest {
    /// The date.
    #[serde(deserialize_with = "integer::deserialize")]
    date_id: DateId,
    /// The seats: not empty, no repeats, at most `--max-seats-per-reservation`.
    #[serde(deserialize_with = "integer::vec")]
    #[schema(min_items = 1)]
    seat_ids: Vec<SeatId>,
}

/// A seat of a reservation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservedSeat {
    /// The seat's id.
    id: SeatId,
    /// Its label.
    label: String,
    /// Its price.
    price: Won,
}

/// A reservation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationBody {
    /// Its id.
    id: ReservationId,
    /// The concert.
    concert_id: ConcertId,
    /// The date.
    date_id: DateId,
    /// `HELD`, `PAID`, `EXPIRED`, `CANCELLED` or `REFUNDED`, as of now.
    status: ReservationStatus,
    /// The sum of the seats' prices.
    amount: Won,
    /// The seats.
    seats: Vec<ReservedSeat>,
    /// When the hold ends unless paid.
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl ReservationBody {
    /// The body of a reservation.
    pub fn new(engine: &Engine, reservation: Reservation) -> Self {
        let seats = engine
            .reserved_seats(&reservation)
            .into_iter()
            .map(|(id, label, price)| ReservedSeat { id, label, price })
            .collect();
        ReservationBody {
            id: reservation.id,
            concert_id: reservation.concert_id,
            date_id: reservation.date_id,
            status: reservation.status,
            amount: reservation.amount,
            seats,
            expires_at: reservation.expires_at,
            created_at: reservation.created_at,
        }
    }
}

/// Holds seats for `--hold-ttl-secs`: all of them, or none.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations", security(("user" = [])),
    request_body = HoldRequest,
    responses(
        (status = 201, description = "Held", body = ReservationBody),
        (status = 400, description = "INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "NOT_ADMITTED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND or SEAT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SEAT_UNAVAILABLE (with seatIds), SEAT_LIMIT_EXCEEDED, SALES_PAUSED or DATE_CANCELLED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn hold(
    User(user): User,
    State(state): State<AppState>,
    Json(request): Json<HoldRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let reservation = state
        .engine
        .hold(user, request.date_id, request.seat_ids)
        .await?;
    let location = format!("/api/v1/reservations/{}", reservation.id);
    let body = ReservationBody::new(&state.engine, reservation);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        response::Json(body),
    ))
}

/// The user's reservations, newest first.
#[utoipa::path(get, path = "/api/v1/reservations", tag = "reservations", security(("user" = [])),
    responses(
        (status = 200, description = "The user's reservations", body = [ReservationBody]),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    User(user): User,
    State(state): State<AppState>,
) -> response::Json<Vec<ReservationBody>> {
    let list = state.engine.reservations(user);
    response::Json(
        list.into_iter()
            .map(|r| ReservationBody::new(&state.engine, r))
            .collect(),
    )
}

/// One of the user's reservations.
#[utoipa::path(get, path = "/api/v1/reservations/{id}", tag = "reservations", security(("user" = [])),
    params(("id" = String, Path, format = Uuid, description = "The reservation's id")),
    responses(
        (status = 200, description = "The reservation", body = ReservationBody),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND (also someone else's)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    User(user): User,
    State(state): State<AppState>,
    Path(id): Path<ReservationId>,
) -> Result<response::Json<ReservationBody>, ApiError> {
    let reservation = state.engine.reservation(user, id)?;
    Ok(response::Json(ReservationBody::new(
        &state.engine,
        reservation,
    )))
}

/// Releases a held reservation; repeating it, or releasing an expired one, is fine.
#[utoipa::path(delete, path = "/api/v1/reservations/{id}", tag = "reservations", security(("user" = [])),
    params(("id" = String, Path, format = Uuid, description = "The reservation's id")),
    responses(
        (status = 204, description = "Released (or already cancelled or expired)"),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "ALREADY_PAID, or ALREADY_REFUNDED for one paid and refunded", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    User(user): User,
    State(state): State<AppState>,
    Path(id): Path<ReservationId>,
) -> Result<StatusCode, ApiError> {
    state.engine.cancel(user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Refunds a paid reservation, until `--refund-until-secs-before` (default 24 h) before
/// the show and while none of its tickets was used: the whole amount goes back to the
/// wallet (a `REFUND` ledger entry), the seats are available again and the tickets
/// void, in one logged step. A refund is never refused for the balance limit (it may
/// take the balance past `--max-balance`; charges are refused until it is back under).
#[utoipa::path(post, path = "/api/v1/reservations/{id}/refund", tag = "reservations", security(("user" = [])),
    params(("id" = String, Path, format = Uuid, description = "The reservation's id")),
    responses(
        (status = 200, description = "Refunded: the reservation, status REFUNDED", body = ReservationBody),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND (also someone else's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "ALREADY_REFUNDED, REFUND_CLOSED (past the deadline, or a ticket was used), RESERVATION_NOT_PAID (held, expired or cancelled)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refund(
    User(user): User,
    State(state): State<AppState>,
    Path(id): Path<ReservationId>,
) -> Result<response::Json<ReservationBody>, ApiError> {
    let reservation = state.engine.refund(user, id).await?;
    Ok(response::Json(ReservationBody::new(
        &state.engine,
        reservation,
    )))
}
