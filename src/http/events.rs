//! The admin event feed: committed changes as public events
//! ([`crate::domain::public`]), in commit order, as pages or as a Server-Sent Events
//! stream that resumes where it stopped.
//!
//! - `GET /api/v1/admin/events?after=CURSOR&limit=N`: a page, `{"events", "next"}`.
//! - `GET /api/v1/admin/events/stream[?after=CURSOR]`: `text/event-stream`; each
//!   message has `id: <cursor>`, `event: <type>` and `data: <event JSON>`; a
//!   `Last-Event-ID` header (as browsers send on reconnecting) resumes after that
//!   cursor (one that is no cursor is ignored); a `: heartbeat` comment every 15 s keeps proxies from closing an idle
//!   stream. A stream that falls behind what the data directory keeps ends with one
//!   `event: cursor_expired` message.
//! - A cursor older than the oldest event kept: 410 `CURSOR_EXPIRED` with
//!   `oldestCursor`.

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, Problem};
use super::extract::Query;
use crate::domain::public::{Cursor, PublicEvent};
use crate::engine::feed::{Feed, FeedError, Position};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// Events in a page unless `limit` says otherwise.
pub const PAGE_DEFAULT: usize = 100;
/// Most events in a page.
pub const PAGE_MAX: usize = 1000;
/// Events a stream reads at once.
const STREAM_READ: usize = 256;
/// How often an idle stream sends a heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The feed's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/events", get(page))
        .route("/api/v1/admin/events/stream", get(stream))
}

/// Where to start, and how many.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Events after this cursor (omitted: from the oldest event kept).
    #[param(value_type = Option<String>, example = "00000000000000000042-000000", pattern = "^[0-9]{20}-[0-9]{6}$")]
    after: Option<String>,
    /// 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Where a stream starts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Events after this cursor (a `Last-Event-ID` header wins; neither: from the
    /// oldest event kept).
    #[param(value_type = Option<String>, example = "00000000000000000042-000000", pattern = "^[0-9]{20}-[0-9]{6}$")]
    after: Option<String>,
}

/// One Server-Sent Events message of the feed, as the stream's schema describes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventMessage {
    /// The event's cursor.
    id: String,
    /// The event's type (`reservation.paid`, ...), or `cursor_expired` for the message
    /// that ends a stream fallen too far behind.
    event: String,
    /// The event as JSON ([`PublicEvent`]), or `{"oldestCursor": ...}`.
    data: String,
}

/// One Server-Sent Events message of the other streams (the seat map, a queue entry),
/// as their schemas describe it: what `data` holds depends on `event`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamMessage {
    /// The cursor, on streams that can be resumed (the seat map's).
    id: Option<String>,
    /// The message's kind (`map`, `change`; `entry`, `gone`).
    event: String,
    /// Its JSON.
    data: String,
}

/// A page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events, in commit order.
    events: Vec<PublicEvent>,
    /// The cursor to ask for the next page with (`after=`): the last event's, or the
    /// one asked with when there was none yet (`null` when nothing was ever logged).
    #[schema(value_type = Option<String>)]
    next: Option<Cursor>,
}

fn parse_cursor(text: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    text.map(|t| t.parse().map_err(ApiError::invalid))
        .transpose()
}

fn feed_error(feed: &Feed, error: FeedError) -> ApiError {
    match error {
        FeedError::Expired { .. } => {
            let oldest = feed.oldest_cursor();
            ApiError::new(
                StatusCode::GONE,
                "CURSOR_EXPIRED",
                "the cursor is older than the oldest event this server keeps; start again from oldestCursor (or without a cursor)",
            )
            .with("oldestCursor", serde_json::json!(oldest))
        }
        FeedError::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the event feed is unavailable",
        ),
    }
}

/// A page of public events in commit order.
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "events", security(("admin" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Events in commit order", body = EventPage),
        (status = 400, description = "INVALID_REQUEST (bad cursor or limit)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "CURSOR_EXPIRED, with oldestCursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn page(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let after = parse_cursor(query.after.as_deref())?;
    let limit = match query.limit {
        None => PAGE_DEFAULT,
        Some(n @ 1..=PAGE_MAX) => n,
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "limit must be from 1 to {PAGE_MAX}"
            )));
        }
    };
    let feed = &state.feed;
    let position = feed.position(after).map_err(|e| feed_error(feed, e))?;
    let (events, _) = feed
        .read_async(position, limit)
        .await
        .map_err(|e| feed_error(feed, e))?;
    let next = events.last().map(|e| e.cursor).or(after);
    Ok(Json(EventPage { events, next }))
}

/// The feed as Server-Sent Events, live.
#[utoipa::path(get, path = "/api/v1/admin/events/stream", tag = "events", security(("admin" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor (wins over `after`; a value that is no cursor is ignored)"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `id: <cursor>`, `event: <type>`, `data: <event JSON>` per event; `: heartbeat` comments", body = EventMessage, content_type = "text/event-stream"),
        (status = 400, description = "INVALID_REQUEST (bad cursor)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "CURSOR_EXPIRED, with oldestCursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    // A Last-Event-ID that is no cursor of ours (a browser only sends back ids we gave
    // it) is ignored: the stream starts where `after` (or nothing) says.
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<Cursor>().ok());
    let after = match last_event_id {
        Some(cursor) => Some(cursor),
        None => parse_cursor(query.after.as_deref())?,
    };
    let feed = state.feed.clone();
    let position = feed.position(after).map_err(|e| feed_error(&feed, e))?;
    // Refuse an expired cursor with a status, before the stream starts.
    let (first, position) = feed
        .read_async(position, STREAM_READ)
        .await
        .map_err(|e| feed_error(&feed, e))?;
    let reader = StreamReader {
        news: feed.subscribe(),
        feed,
        position,
        buffer: first.into(),
        ended: false,
    };
    let events = futures_util::stream::unfold(reader, StreamReader::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}

/// One stream's place in the feed.
struct StreamReader {
    feed: Feed,
    news: tokio::sync::watch::Receiver<u64>,
    position: Position,
    buffer: VecDeque<PublicEvent>,
    ended: bool,
}

impl StreamReader {
    /// The next message: an event, or the one that ends a stream fallen too far behind.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                let message = SseEvent::default()
                    .id(event.cursor.to_string())
                    .event(event.body.kind())
                    .json_data(&event)
                    .expect("an event serializes");
                return Some((Ok(message), self));
            }
            if self.ended {
                return None;
            }
            self.news.borrow_and_update();
            match self.feed.read_async(self.position, STREAM_READ).await {
                Ok((events, position)) if events.is_empty() => {
                    self.position = position;
                    if self.news.changed().await.is_err() {
                        return None; // The server is stopping.
                    }
                }
                Ok((events, position)) => {
                    self.position = position;
                    self.buffer.extend(events);
                }
                Err(FeedError::Expired { .. }) => {
                    self.ended = true;
                    let oldest = self.feed.oldest_cursor();
                    let message = SseEvent::default()
                        .event("cursor_expired")
                        .json_data(serde_json::json!({"oldestCursor": oldest}))
                        .expect("an object serializes");
                    return Some((Ok(message), self));
                }
                Err(FeedError::Unavailable) => return None,
            }
        }
    }
}
