//! Ticket routes: a user's tickets (one per paid seat, with the signed code to show at
//! the door) and check-in, where a scanner admits a ticket exactly once.

use super::AppState;
use super::auth::{Scanner, User};
use super::error::{ApiError, Problem};
use super::extract::Json;
use crate::domain::date::{Reservation, ReservationStatus};
use crate::domain::ticket::{Claim, TicketStatus, ticket_id};
use crate::domain::{DateId, ReservationId, SeatId, TicketId, Timestamp};
use crate::engine::Engine;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Router, response};
use serde::{Deserialize, Serialize};

/// The ticket routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tickets", get(list))
        .route("/api/v1/admin/checkins", post(check_in))
}

/// A ticket: one paid seat.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    /// The ticket's id (derived from the reservation and the seat).
    id: TicketId,
    /// The reservation that paid for it.
    reservation_id: ReservationId,
    /// The date it admits to.
    date_id: DateId,
    /// The seat.
    seat_id: SeatId,
    /// The seat's label.
    label: String,
    /// What the door scans: 60 characters of URL-safe base64, signed by the server.
    code: String,
    /// `VALID`, `USED` (admitted) or `VOID` (refunded, or the date cancelled).
    status: TicketStatus,
    /// When it was admitted, once `USED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    used_at: Option<Timestamp>,
}

/// The user's tickets: one per seat of each paid (or since refunded) reservation,
/// newest reservation first.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", security(("user" = [])),
    responses(
        (status = 200, description = "The user's tickets", body = [TicketBody]),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    User(user): User,
    State(state): State<AppState>,
) -> response::Json<Vec<TicketBody>> {
    let tickets = state
        .engine
        .reservations(user)
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                ReservationStatus::Paid | ReservationStatus::Refunded
            )
        })
        .flat_map(|r| tickets_of(&state, r))
        .collect();
    response::Json(tickets)
}

fn tickets_of(state: &AppState, reservation: &Reservation) -> Vec<TicketBody> {
    let cancelled = state
        .engine
        .date_entry(reservation.date_id)
        .is_ok_and(|d| d.view.is_cancelled());
    state
        .engine
        .reserved_seats(reservation)
        .into_iter()
        .map(|(seat_id, label, _)| {
            let claim = Claim {
                date_id: reservation.date_id,
                seat_id,
                reservation_id: reservation.id,
            };
            let used_at = reservation.admitted_at(seat_id);
            let status = if reservation.status == ReservationStatus::Refunded || cancelled {
                TicketStatus::Void
            } else if used_at.is_some() {
                TicketStatus::Used
            } else {
                TicketStatus::Valid
            };
            TicketBody {
                id: ticket_id(reservation.id, seat_id),
                reservation_id: reservation.id,
                date_id: reservation.date_id,
                seat_id,
                label,
                code: state.tickets.sign(&claim),
                status,
                used_at,
            }
        })
        .collect()
}

/// A scan at the door.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckInRequest {
    /// The code, as scanned: 60 characters of URL-safe base64 (a well-formed code may
    /// still be forged: `TICKET_INVALID`).
    #[schema(min_length = 60, max_length = 60, pattern = "^[A-Za-z0-9_-]{60}$")]
    code: String,
    /// The date this door admits to; a ticket for another date is `TICKET_WRONG_DATE`.
    /// Without it, any date's ticket is admitted.
    date_id: Option<DateId>,
}

/// How an admission ended.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckInStatus {
    /// Let in: this scan was the ticket's first.
    Admitted,
}

/// An admitted ticket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckInBody {
    /// The ticket.
    ticket_id: TicketId,
    /// Always `ADMITTED`.
    status: CheckInStatus,
    /// Its reservation.
    reservation_id: ReservationId,
    /// Its date.
    date_id: DateId,
    /// Its seat.
    seat_id: SeatId,
    /// The seat's label.
    label: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    admitted_at: Timestamp,
}

/// Admits a ticket at the door, exactly once: of concurrent scans of one code, one is
/// `ADMITTED` and the others `ALREADY_USED` with the time of the first.
#[utoipa::path(post, path = "/api/v1/admin/checkins", tag = "tickets", security(("scanner" = []), ("admin" = [])),
    request_body = CheckInRequest,
    responses(
        (status = 200, description = "ADMITTED", body = CheckInBody),
        (status = 400, description = "TICKET_INVALID (forged, altered, malformed, or naming no ticket), TICKET_VOID (refunded or date cancelled), TICKET_WRONG_DATE, INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED (neither the scanner nor the admin key)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND (the dateId of the request)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "ALREADY_USED, with usedAt", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn check_in(
    _: Scanner,
    State(state): State<AppState>,
    Json(request): Json<CheckInRequest>,
) -> Result<response::Json<CheckInBody>, ApiError> {
    let claim = state.tickets.verify(request.code.trim())?;
    let reservation = state.engine.check_in(claim, request.date_id).await?;
    Ok(response::Json(admitted(&state.engine, &reservation, claim)))
}

fn admitted(engine: &Engine, reservation: &Reservation, claim: Claim) -> CheckInBody {
    let label = engine
        .reserved_seats(reservation)
        .into_iter()
        .find(|(id, _, _)| *id == claim.seat_id)
        .map(|(_, label, _)| label)
        .unwrap_or_default();
    CheckInBody {
        ticket_id: claim.ticket_id(),
        status: CheckInStatus::Admitted,
        reservation_id: reservation.id,
        date_id: reservation.date_id,
        seat_id: claim.seat_id,
        label,
        admitted_at: reservation
            .admitted_at(claim.seat_id)
            .expect("an admitted ticket has its time"),
    }
}
