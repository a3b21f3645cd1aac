//! Waiting-room routes: join, look (which keeps a waiting entry alive), leave, and a
//! live stream of the entry for a browser page.
//!
//! The stream: a browser's `EventSource` cannot send an `Authorization` header, and a
//! user token in a URL would end up in logs and histories. So the page first asks
//! `POST .../queue/stream-ticket` (with its token) for a ticket that lasts
//! [`STREAM_TICKET_TTL_SECS`] and opens only this concert's queue stream for this user
//! (it is refused as a bearer token), then opens `GET .../queue/stream?ticket=...`.
//! The ticket is checked when the stream opens; the stream then looks at the entry
//! every [`STREAM_POLL`] (which, like any poll, keeps a waiting entry alive while the
//! page is open) and sends it whenever it changed, ending after a final status.

use super::AppState;
use super::auth::User;
use super::error::{ApiError, Problem};
use super::extract::Path;
use crate::domain::queue::{EntryStatus, EntryView};
use crate::domain::{ConcertId, Ticket, Timestamp};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;

/// The waiting room's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/concerts/{concert_id}/queue",
            get(get_entry).post(join).delete(leave),
        )
        .route(
            "/api/v1/concerts/{concert_id}/queue/stream-ticket",
            post(stream_ticket),
        )
        .route("/api/v1/concerts/{concert_id}/queue/stream", get(stream))
}

/// How long a queue stream ticket can be used to open the stream.
pub const STREAM_TICKET_TTL_SECS: u64 = 60;
/// How often an open queue stream looks at its entry.
pub const STREAM_POLL: Duration = Duration::from_secs(1);

/// A waiting-room entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// A ticket that opens the queue stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTicketBody {
    /// Pass it as `?ticket=` to `GET .../queue/stream`.
    ticket: String,
    /// Seconds it can be used for.
    expires_in_seconds: u64,
}

/// A short-lived ticket to open this concert's queue stream (for `EventSource`, which
/// cannot send an Authorization header).
#[utoipa::path(post, path = "/api/v1/concerts/{concertId}/queue/stream-ticket", tag = "queue", security(("user" = [])),
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "A ticket for 60 s; it opens this stream only and is refused as a bearer token", body = StreamTicketBody),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream_ticket(
    User(user): User,
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<Json<StreamTicketBody>, ApiError> {
    state.engine.concert(concert_id)?;
    let scope = stream_scope(concert_id);
    Ok(Json(StreamTicketBody {
        ticket: state
            .auth
            .stream_ticket(user, &scope, STREAM_TICKET_TTL_SECS),
        expires_in_seconds: STREAM_TICKET_TTL_SECS,
    }))
}

fn stream_scope(concert_id: ConcertId) -> String {
    format!("queue-stream:{concert_id}")
}

/// The stream's ticket.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// From `POST .../queue/stream-ticket`.
    ticket: String,
}

/// The user's entry, live, as Server-Sent Events; keeps a waiting entry alive while
/// open.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/queue/stream", tag = "queue",
    params(("concertId" = u64, Path, description = "The concert's id"), StreamQuery),
    responses(
        (status = 200, description = "`text/event-stream`: `event: entry` with `data:` a QueueEntryBody, first at once and then whenever it changes (the entry is looked at every second, which keeps a waiting entry alive); `event: gone` (`data:` a problem) if the user is not in the queue; the stream ends after a final status", body = super::events::StreamMessage, content_type = "text/event-stream"),
        (status = 400, description = "INVALID_REQUEST (no ticket)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED (a bad or expired ticket, or one for another stream)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
    super::extract::Query(query): super::extract::Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let user = state
        .auth
        .check_stream_ticket(&query.ticket, &stream_scope(concert_id))?;
    state.engine.concert(concert_id)?;
    let watcher = EntryWatcher {
        state,
        concert_id,
        user,
        last: None,
        ended: false,
        first: true,
    };
    let events = futures_util::stream::unfold(watcher, EntryWatcher::next);
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(super::events::HEARTBEAT)
                .text("heartbeat"),
        )
        .into_response())
}

/// One queue stream.
struct EntryWatcher {
    state: AppState,
    concert_id: ConcertId,
    user: crate::domain::UserId,
    last: Option<QueueEntryBody>,
    ended: bool,
    first: bool,
}

impl EntryWatcher {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if self.ended {
                return None;
            }
            if !self.first {
                tokio::time::sleep(STREAM_POLL).await;
            }
            self.first = false;
            let message = match self
                .state
                .engine
                .queue_entry(self.concert_id, self.user)
                .await
            {
                Ok(view) => {
                    let entry = QueueEntryBody::from(view);
                    if self.last.as_ref() == Some(&entry) {
                        continue;
                    }
                    self.ended = entry.status.is_final();
                    let message = SseEvent::default()
                        .event("entry")
                        .json_data(&entry)
                        .expect("an entry serializes");
                    self.last = Some(entry);
                    message
                }
                Err(error) => {
                    self.ended = true;
                    let error = ApiError::from(error);
                    SseEvent::default()
                        .event("gone")
                        .json_data(serde_json::json!({"code": error.code, "detail": error.detail}))
                        .expect("an object serializes")
                }
            };
            return Some((Ok(message), self));
        }
    }
}
