//! Waiting-room routes: join, look (which keeps a waiting entry alive), leave.

use super::AppState;
use super::auth::User;
use super::error::{ApiError, Problem};
use super::extract::Path;
use crate::domain::queue::{EntryStatus, EntryView};
use crate::domain::{ConcertId, Ticket, Timestamp};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

/// The waiting room's routes.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/concerts/{concert_id}/queue",
        get(get_entry).post(join).delete(leave),
    )
}

/// A waiting-room entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntryBody {
    /// The entry's ticket.
    ticket: Ticket,
    /// The concert.
    concert_id: ConcertId,
    /// `WAITING`, `ACTIVE`, or a final `EXPIRED`, `COMPLETED`, `SOLD_OUT`.
    status: EntryStatus,
    /// Waiting: entries ahead plus one. Otherwise 0.
    position: u64,
    /// A waiting entry's expected wait.
    estimated_wait_seconds: u64,
    /// Waiting: when the entry expires unless polled. Active: the end of the active
    /// window. Final: when it ended.
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}

impl From<EntryView> for QueueEntryBody {
    fn from(view: EntryView) -> Self {
        QueueEntryBody {
            ticket: view.ticket,
            concert_id: view.concert_id,
            status: view.status,
            position: view.position,
            estimated_wait_seconds: view.estimated_wait_secs,
            expires_at: view.expires_at,
        }
    }
}

/// Joins the concert's waiting room (once: a live entry is returned as it is).
#[utoipa::path(post, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("user" = [])),
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 201, description = "A new entry", body = QueueEntryBody),
        (status = 200, description = "The user's live entry", body = QueueEntryBody),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn join(
    User(user): User,
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<impl IntoResponse, ApiError> {
    let (view, created) = state.engine.join_queue(concert_id, user).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(QueueEntryBody::from(view))))
}

/// The user's entry; polling keeps a waiting entry alive.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("user" = [])),
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "The user's entry", body = QueueEntryBody),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND or NOT_IN_QUEUE", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_entry(
    User(user): User,
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<Json<QueueEntryBody>, ApiError> {
    Ok(Json(
        state.engine.queue_entry(concert_id, user).await?.into(),
    ))
}

/// Leaves the waiting room, freeing an active slot.
#[utoipa::path(delete, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("user" = [])),
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND or NOT_IN_QUEUE", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn leave(
    User(user): User,
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<StatusCode, ApiError> {
    state.engine.leave_queue(concert_id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
