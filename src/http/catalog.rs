//! Catalog routes: concert creation (admin) and the public concert, date and seat reads,
//! served from the read views without touching any actor.

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use crate::domain::catalog::ConcertSpec;
use crate::domain::{ConcertId, DateId};
use crate::engine::views::{ConcertSummary, DateSummary, SeatStatus, SeatSummary};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, response};
use serde::Deserialize;

/// The catalog's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/concerts", post(create_concert))
        .route("/api/v1/concerts", get(list_concerts))
        .route("/api/v1/concerts/{concert_id}", get(get_concert))
        .route("/api/v1/concerts/{concert_id}/dates", get(list_dates))
        .route(
            "/api/v1/concerts/{concert_id}/dates/{date_id}/seats",
            get(list_seats),
        )
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
    let concert = state.engine.create_concert(spec).await?;
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
    response::Json(state.engine.concerts())
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
    Ok(response::Json(state.engine.concert(concert_id)?))
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
    Ok(response::Json(state.engine.dates(concert_id)?))
}

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
    ),
    responses(
        (status = 200, description = "The seats, by id", body = [SeatSummary]),
        (status = 400, description = "INVALID_REQUEST (a malformed id or status filter)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND or DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_seats(
    State(state): State<AppState>,
    Path((concert_id, date_id)): Path<(ConcertId, DateId)>,
    Query(query): Query<SeatQuery>,
) -> Result<response::Json<Vec<SeatSummary>>, ApiError> {
    Ok(response::Json(state.engine.seats(
        concert_id,
        date_id,
        query.status,
    )?))
}
