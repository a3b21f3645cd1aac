//! The live seat map, built for every fan in a sale watching it at once:
//!
//! - `GET .../dates/{dateId}/layout`: the static part (sections, rows, seats per row,
//!   prices, first seat ids); it never changes, so it is cacheable for a day.
//! - `GET .../dates/{dateId}/seatmap`: the compact map, `{"dateId", "cursor",
//!   "statuses"}` with one character per seat in id order (`A` available, `H` held,
//!   `S` sold): 100,000 seats are 100 kB, a few kB gzipped. Its `ETag` is the cursor
//!   it is tagged with; `If-None-Match` answers 304. The body and its gzip are made
//!   once per change of the map, not per request.
//! - `GET .../dates/{dateId}/seats/stream`: Server-Sent Events: first `event: map`
//!   (the compact map), then `event: change` messages `{"cursor", "seats": [[id,
//!   "H"], ...]}`, each with `id: <cursor>`. A `Last-Event-ID` resumes after that
//!   cursor while the date still keeps the changes since; otherwise (or when the
//!   client fell more than a buffer behind) it starts again with `event: map`.
//!
//! All three show committed state only ([`crate::engine::seatmap`]).

use super::AppState;
use super::error::{ApiError, Problem};
use super::events::HEARTBEAT;
use super::extract::Path;
use crate::domain::public::Cursor;
use crate::domain::{ConcertId, DateId, Won};
use crate::engine::seatmap::{Change, Snapshot, Start, Subscription};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The seat map's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}/layout",
            get(layout),
        )
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}/seatmap",
            get(seatmap),
        )
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}/seats/stream",
            get(stream),
        )
}

/// A section of a date's layout.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionBody {
    /// Its name (`R` in `R-1-1`).
    name: String,
    /// Rows, numbered from 1.
    rows: u32,
    /// Seats in each row, numbered from 1.
    seats_per_row: u32,
    /// Price of each seat in won.
    price: Won,
    /// The id of its row 1, number 1; the seat in row `r`, number `n` has id
    /// `firstSeatId + (r - 1) * seatsPerRow + (n - 1)`.
    first_seat_id: u32,
}

/// The static part of a date's seat map.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutBody {
    /// The date.
    date_id: DateId,
    /// Seats in all (ids 1 to this).
    seats_total: u32,
    /// Its sections, in seat-id order.
    sections: Vec<SectionBody>,
}

/// The compact seat map.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatMapBody<'a> {
    /// The date.
    date_id: DateId,
    /// The map holds every change up to this cursor (the feed's) and none after.
    #[schema(value_type = String, example = "00000000000000000042-000000")]
    cursor: String,
    /// One character per seat in id order: `A` available, `H` held, `S` sold.
    #[schema(value_type = String, example = "AAHHSA")]
    statuses: &'a str,
}

/// One change of the map as the stream sends it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatChangeBody {
    /// The cursor of the last event it includes (also the message's `id`).
    #[schema(value_type = String)]
    cursor: String,
    /// `[seatId, status]` pairs in commit order; apply them in order.
    #[schema(value_type = Vec<Vec<Object>>, example = json!([[1, "H"], [2, "H"]]))]
    seats: Vec<(u32, String)>,
}

/// The date's sections, rows and prices; never changes.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates/{dateId}/layout", tag = "seatmap",
    params(
        ("concertId" = u64, Path, description = "The concert's id"),
        ("dateId" = u64, Path, description = "The date's id"),
    ),
    responses(
        (status = 200, description = "The layout (`Cache-Control: public, max-age=86400`)", body = LayoutBody),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn layout(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
) -> Result<Response, ApiError> {
    let date = state.engine.date(concert_id, date_id)?;
    let layout = &date.view.date.layout;
    let body = LayoutBody {
        date_id,
        seats_total: layout.seats_total(),
        sections: layout
            .sections()
            .map(|s| SectionBody {
                name: s.name.to_owned(),
                rows: s.rows,
                seats_per_row: s.seats_per_row,
                price: s.price,
                first_seat_id: s.first_seat.0,
            })
            .collect(),
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(response)
}

/// The compact seat map: one status character per seat, with `ETag`.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates/{dateId}/seatmap", tag = "seatmap",
    params(
        ("concertId" = u64, Path, description = "The concert's id"),
        ("dateId" = u64, Path, description = "The date's id"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer: 304 while the map is unchanged"),
    ),
    responses(
        (status = 200, description = "The map (gzip when accepted; `ETag`, `Cache-Control: no-cache`)", body = SeatMapBody),
        (status = 304, description = "Unchanged since the `ETag` sent"),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn seatmap(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.engine.date(concert_id, date_id)?;
    let snapshot = state
        .seat_maps
        .snapshot(date_id)
        .ok_or_else(|| ApiError::from(crate::domain::Rejection::DateNotFound))?;
    let etag = format!("\"{}-{}\"", date_id, snapshot.cursor);
    if etag_matches(&headers, &etag) {
        return Ok(not_modified(&etag));
    }
    let body = snapshot.rendered.get_or_init(|| render_map(&snapshot));
    let gzip = accepts_gzip(&headers);
    let bytes = if gzip {
        snapshot.compressed.get_or_init(|| compress(body)).clone()
    } else {
        body.clone()
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "accept-encoding"),
        ],
        bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// The seat map as Server-Sent Events: the whole map, then its changes.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates/{dateId}/seats/stream", tag = "seatmap",
    params(
        ("concertId" = u64, Path, description = "The concert's id"),
        ("dateId" = u64, Path, description = "The date's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor; one that is unknown, too old or no cursor at all starts again with the whole map"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `event: map` with `data:` a compact map (as `/seatmap`), then `event: change` with `data:` a SeatChangeBody; each with `id: <cursor>`; `: heartbeat` comments every 15 s", body = super::events::StreamMessage, content_type = "text/event-stream"),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.engine.date(concert_id, date_id)?;
    // One that is no cursor is treated like an unknown one: the whole map again.
    let after = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Cursor>().ok());
    let subscription = state
        .seat_maps
        .subscribe(date_id, after)
        .ok_or_else(|| ApiError::from(crate::domain::Rejection::DateNotFound))?;
    let reader = MapReader {
        state,
        date_id,
        buffer: VecDeque::new(),
        subscription: None,
    }
    .with(subscription);
    let events = futures_util::stream::unfold(reader, MapReader::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}

/// One seat-map stream.
struct MapReader {
    state: AppState,
    date_id: DateId,
    buffer: VecDeque<SseEvent>,
    subscription: Option<tokio::sync::broadcast::Receiver<Arc<Change>>>,
}

impl MapReader {
    fn with(mut self, subscription: Subscription) -> Self {
        match subscription.start {
            Start::Snapshot(snapshot) => self.buffer.push_back(map_message(&snapshot)),
            Start::Resume(changes) => self
                .buffer
                .extend(changes.iter().map(|c| change_message(c))),
        }
        self.subscription = Some(subscription.changes);
        self
    }

    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(message) = self.buffer.pop_front() {
                return Some((Ok(message), self));
            }
            let receiver = self.subscription.as_mut()?;
            match receiver.recv().await {
                Ok(change) => self.buffer.push_back(change_message(&change)),
                Err(RecvError::Lagged(_)) => {
                    // Too far behind to catch up change by change: the whole map again.
                    let subscription = self.state.seat_maps.subscribe(self.date_id, None)?;
                    self = self.with(subscription);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn map_message(snapshot: &Snapshot) -> SseEvent {
    let body = snapshot.rendered.get_or_init(|| render_map(snapshot));
    SseEvent::default()
        .id(snapshot.cursor.to_string())
        .event("map")
        .data(std::str::from_utf8(body).expect("the map renders as JSON text"))
}

fn change_message(change: &Change) -> SseEvent {
    let data = change.rendered.get_or_init(|| {
        let body = SeatChangeBody {
            cursor: change.cursor.to_string(),
            seats: change
                .seats
                .iter()
                .map(|(seat, status)| (seat.0, char::from(*status).to_string()))
                .collect(),
        };
        serde_json::to_string(&body).expect("a change serializes")
    });
    SseEvent::default()
        .id(change.cursor.to_string())
        .event("change")
        .data(data.as_str())
}

fn render_map(snapshot: &Snapshot) -> Vec<u8> {
    let body = SeatMapBody {
        date_id: snapshot.date_id,
        cursor: snapshot.cursor.to_string(),
        statuses: std::str::from_utf8(&snapshot.statuses).expect("status bytes are ASCII"),
    };
    serde_json::to_vec(&body).expect("a map serializes")
}

fn compress(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it with
/// `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as RFC 9110 asks of
/// `If-None-Match`.
pub fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// 304 with the `ETag`.
pub fn not_modified(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(etag).expect("ascii"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip, br")));
        assert!(accepts_gzip(&headers(
            header::ACCEPT_ENCODING,
            "br;q=1, GZIP;q=0.5"
        )));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let tag = "\"1-x\"";
        assert!(etag_matches(
            &headers(header::IF_NONE_MATCH, "\"0\", \"1-x\""),
            tag
        ));
        assert!(etag_matches(
            &headers(header::IF_NONE_MATCH, "W/\"1-x\""),
            tag
        ));
        assert!(etag_matches(&headers(header::IF_NONE_MATCH, "*"), tag));
        assert!(!etag_matches(
            &headers(header::IF_NONE_MATCH, "\"1-y\""),
            tag
        ));
    }
}
