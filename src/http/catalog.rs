//! Catalog routes: concert creation (admin) and the public concert, date and seat reads,
//! served from the read views without touching any actor. The response bodies are
//! built here from the engine's views.

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::seatmap::{etag_matches, not_modified};
use crate::domain::catalog::ConcertSpec;
use crate::domain::date::SeatStatus;
use crate::domain::{ConcertId, DateId, SeatId, Timestamp, Won};
use crate::engine::catalog::ConcertEntry;
use crate::engine::views::DateView;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, response};
use serde::{Deserialize, Serialize};

/// The catalog's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/concerts", post(create_concert))
        .route("/api/v1/concerts", get(list_concerts))
        .route("/api/v1/concerts/{concert_id}", get(get_concert))
        .route("/api/v1/concerts/{concert_id}/dates", get(list_dates))
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}",
            get(get_date),
        )
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}/seats",
            get(list_seats),
        )
}

/// A date as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateSummary {
    /// The date's id.
    pub id: DateId,
    /// When the show starts.
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    /// Seats in all.
    pub seats_total: u32,
    /// Seats free to hold now.
    pub seats_available: u32,
    /// Whether the operator paused sales (holds get `SALES_PAUSED`).
    pub paused: bool,
    /// Whether the date was cancelled (every paid reservation refunded).
    pub cancelled: bool,
}

impl DateSummary {
    /// A date's summary at `now`.
    pub fn of(view: &DateView, now: Timestamp) -> Self {
        DateSummary {
            id: view.date.id,
            starts_at: view.date.starts_at,
            seats_total: view.date.layout.seats_total(),
            seats_available: view.seats_available(now),
            paused: view.is_paused(),
            cancelled: view.is_cancelled(),
        }
    }
}

/// A concert as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertSummary {
    /// The concert's id.
    pub id: ConcertId,
    /// Title.
    pub title: String,
    /// Venue.
    pub venue: String,
    /// Its dates.
    pub dates: Vec<DateSummary>,
}

impl ConcertSummary {
    /// A concert's summary at `now`.
    pub fn of(entry: &ConcertEntry, now: Timestamp) -> Self {
        ConcertSummary {
            id: entry.concert.id,
            title: entry.concert.title.clone(),
            venue: entry.concert.venue.clone(),
            dates: entry
                .dates
                .iter()
                .map(|d| DateSummary::of(&d.view, now))
                .collect(),
        }
    }
}

/// A seat as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatSummary {
    /// The seat's id.
    pub id: SeatId,
    /// `"{section}-{row}-{number}"`.
    pub label: String,
    /// Section name.
    pub section: String,
    /// Row within the section, from 1.
    pub row: u32,
    /// Number within the row, from 1.
    pub number: u32,
    /// Price in won.
    pub price: Won,
    /// Status now.
    pub status: SeatStatus,
}

/// Creates a concert with its dates and seats.
#[utoipa::path(post, path = "/api/v1/admin/concerts", tag = "catalog", security(("admin" = [])),
    request_body = ConcertSpec,
    responses(
        (status = 201, description = "Created", body = ConcertSummary),
        (status = 400, description = "Invalid spec", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong or missing admin key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_concert(
    _: Admin,
    State(state): State<AppState>,
    Json(spec): Json<ConcertSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let entry = state.engine.create_concert(spec).await?;
    let concert = ConcertSummary::of(&entry, state.engine.now());
    let location = format!("/api/v1/concerts/{}", concert.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        response::Json(concert),
    ))
}

/// Lists every concert.
#[utoipa::path(get, path = "/api/v1/concerts", tag = "catalog",
    responses((status = 200, description = "Every concert", body = [ConcertSummary])))]
pub async fn list_concerts(State(state): State<AppState>) -> response::Json<Vec<ConcertSummary>> {
    let now = state.engine.now();
    let concerts = state.engine.concerts();
    response::Json(
        concerts
            .iter()
            .map(|c| ConcertSummary::of(c, now))
            .collect(),
    )
}

/// One concert.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}", tag = "catalog",
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "The concert", body = ConcertSummary),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_concert(
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<response::Json<ConcertSummary>, ApiError> {
    let entry = state.engine.concert(concert_id)?;
    Ok(response::Json(ConcertSummary::of(
        &entry,
        state.engine.now(),
    )))
}

/// A concert's dates with live seat counts.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates", tag = "catalog",
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "The dates", body = [DateSummary]),
        (status = 400, description = "INVALID_REQUEST (a malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_dates(
    State(state): State<AppState>,
    Path(concert_id): Path<ConcertId>,
) -> Result<response::Json<Vec<DateSummary>>, ApiError> {
    let entry = state.engine.concert(concert_id)?;
    Ok(response::Json(
        ConcertSummary::of(&entry, state.engine.now()).dates,
    ))
}

/// A section of a date with its live seat counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionSummary {
    /// Its name.
    pub name: String,
    /// The price of a seat.
    pub price: Won,
    /// Seats in all.
    pub seats_total: u32,
    /// Seats free to hold now.
    pub seats_available: u32,
    /// Seats held now.
    pub seats_held: u32,
    /// Seats sold.
    pub seats_sold: u32,
}

/// A date with its sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateDetail {
    /// The date.
    #[serde(flatten)]
    pub date: DateSummary,
    /// Its sections in layout order, with live counts.
    pub sections: Vec<SectionSummary>,
}

/// A date with its sections and their live seat counts (so clients need not count
/// seats or parse labels).
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates/{dateId}", tag = "catalog",
    params(
        ("concertId" = u64, Path, description = "The concert's id"),
        ("dateId" = u64, Path, description = "The date's id"),
    ),
    responses(
        (status = 200, description = "The date", body = DateDetail),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_date(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
) -> Result<response::Json<DateDetail>, ApiError> {
    let date = state.engine.date(concert_id, date_id)?;
    let now = state.engine.now();
    let layout = &date.view.date.layout;
    let mut sections: Vec<SectionSummary> = layout
        .sections()
        .map(|s| SectionSummary {
            name: s.name.to_owned(),
            price: s.price,
            seats_total: s.seats().len() as u32,
            seats_available: 0,
            seats_held: 0,
            seats_sold: 0,
        })
        .collect();
    for (seat, status) in date.view.statuses(now) {
        let section = &mut sections[layout.section_of(seat.id).expect("a seat of the layout")];
        match status {
            SeatStatus::Available => section.seats_available += 1,
            SeatStatus::Held => section.seats_held += 1,
            SeatStatus::Sold => section.seats_sold += 1,
        }
    }
    Ok(response::Json(DateDetail {
        date: DateSummary::of(&date.view, now),
        sections,
    }))
}

/// Largest date whose seat list is built on an async worker.
const SEATS_INLINE_MAX: u32 = 5_000;

/// Seat filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeatQuery {
    /// Only seats with this status.
    status: Option<SeatStatus>,
}

/// A date's seats with their live status.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/dates/{dateId}/seats", tag = "catalog",
    params(
        ("concertId" = u64, Path, description = "The concert's id"),
        ("dateId" = u64, Path, description = "The date's id"),
        SeatQuery,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer: 304 while the list is unchanged"),
    ),
    responses(
        (status = 200, description = "The seats, by id (`ETag`; gzip when accepted). For a live map of a large date prefer the compact `/seatmap` and `/seats/stream`", body = [SeatSummary]),
        (status = 304, description = "Unchanged since the `ETag` sent"),
        (status = 400, description = "INVALID_REQUEST (a malformed id or status filter)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_seats(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
    Query(query): Query<SeatQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let date = state.engine.date(concert_id, date_id)?;
    let now = state.engine.now();
    let seats_total = date.view.date.layout.seats_total();
    let render = move || {
        let seats: Vec<SeatSummary> = date
            .view
            .statuses(now)
            .filter(|(_, status)| query.status.is_none_or(|f| f == *status))
            .map(|(seat, status)| SeatSummary {
                id: seat.id,
                label: seat.label(),
                section: seat.section.to_owned(),
                row: seat.row,
                number: seat.number,
                price: seat.price,
                status,
            })
            .collect();
        serde_json::to_vec(&seats).expect("seats serialize")
    };
    // A large date's list takes milliseconds to build: off the async workers, so that
    // other requests (`/health`, the compact map) do not wait behind it.
    let body = if seats_total > SEATS_INLINE_MAX {
        tokio::task::spawn_blocking(render)
            .await
            .map_err(|_| ApiError::from(crate::engine::Error::Unavailable))?
    } else {
        render()
    };
    // The list reads the views at `now` (holds past their deadline show as available
    // before their expiry is recorded), so its tag is the body's own checksum.
    let etag = format!("\"{:08x}-{:x}\"", crc32fast::hash(&body), body.len());
    if etag_matches(&headers, &etag) {
        return Ok(not_modified(&etag));
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    Ok(response)
}
