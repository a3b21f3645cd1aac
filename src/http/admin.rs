//! The operator's box office (admin key): pause, resume and cancel a date's sales,
//! sales figures per date and per concert (JSON, or CSV with `Accept: text/csv`), a
//! date's reservations page by page, and a user's history across concerts.

use super::AppState;
use super::auth::Admin;
use super::catalog::DateSummary;
use super::error::{ApiError, Problem};
use super::extract::{Path, Query};
use super::reservations::ReservationBody;
use crate::domain::date::{Reservation, ReservationStatus};
use crate::domain::sales::{DateSales, Figures, HoldFigures, ReservationFilter, SectionSales};
use crate::domain::{ConcertId, DateId, ReservationId, UserId};
use crate::engine::Engine;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, response};
use serde::{Deserialize, Serialize};

/// Most reservations on one page.
pub const PAGE_LEN_MAX: u32 = 1000;
/// Reservations on a page unless `limit` says otherwise.
pub const PAGE_LEN_DEFAULT: u32 = 100;

/// The operator's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/dates/{date_id}/pause", post(pause))
        .route("/api/v1/admin/dates/{date_id}/resume", post(resume))
        .route("/api/v1/admin/dates/{date_id}/cancel", post(cancel))
        .route("/api/v1/admin/dates/{date_id}/sales", get(date_sales))
        .route(
            "/api/v1/admin/concerts/{concert_id}/sales",
            get(concert_sales),
        )
        .route(
            "/api/v1/admin/dates/{date_id}/reservations",
            get(date_reservations),
        )
        .route(
            "/api/v1/admin/users/{user_id}/reservations",
            get(user_reservations),
        )
}

fn summary(engine: &Engine, date: DateId) -> Result<DateSummary, ApiError> {
    let entry = engine.date_entry(date)?;
    Ok(DateSummary::of(&entry.view, engine.now()))
}

/// Pauses sales of a date: new holds get 409 `SALES_PAUSED`; holds already made can
/// still be paid. Pausing a paused date changes nothing.
#[utoipa::path(post, path = "/api/v1/admin/dates/{dateId}/pause", tag = "operations", security(("admin" = [])),
    params(("dateId" = u64, Path, description = "The date's id")),
    responses(
        (status = 200, description = "Paused", body = DateSummary),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "DATE_CANCELLED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    _: Admin,
    State(state): State<AppState>,
    Path(date): Path<DateId>,
) -> Result<response::Json<DateSummary>, ApiError> {
    state.engine.set_paused(date, true).await?;
    Ok(response::Json(summary(&state.engine, date)?))
}

/// Resumes sales of a paused date. Resuming a selling date changes nothing.
#[utoipa::path(post, path = "/api/v1/admin/dates/{dateId}/resume", tag = "operations", security(("admin" = [])),
    params(("dateId" = u64, Path, description = "The date's id")),
    responses(
        (status = 200, description = "Selling", body = DateSummary),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "DATE_CANCELLED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    _: Admin,
    State(state): State<AppState>,
    Path(date): Path<DateId>,
) -> Result<response::Json<DateSummary>, ApiError> {
    state.engine.set_paused(date, false).await?;
    Ok(response::Json(summary(&state.engine, date)?))
}

/// Cancels a date: it sells nothing more, every live hold is released, and every paid
/// reservation is refunded to its payer's wallet (a `REFUND` ledger entry each); its
/// tickets are void. Answers once every refund is durable. If that is cut short (a
/// crash, 503), calling it again, or restarting, finishes it; nothing is refunded
/// twice. When every date of a concert is cancelled, its waiting room ends
/// (`SOLD_OUT`).
#[utoipa::path(post, path = "/api/v1/admin/dates/{dateId}/cancel", tag = "operations", security(("admin" = [])),
    params(("dateId" = u64, Path, description = "The date's id")),
    responses(
        (status = 200, description = "Cancelled, everything refunded", body = DateSummary),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE or OVERLOADED: cancelled, some refunds still to do; call again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    Path(date): Path<DateId>,
) -> Result<response::Json<DateSummary>, ApiError> {
    state.engine.cancel_date(date).await?;
    Ok(response::Json(summary(&state.engine, date)?))
}

/// Whether the client asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

const CSV_HEADER: &str =
    "date_id,section,price,seats_total,available,held,sold,admitted,revenue,refunds\r\n";

fn csv_row(out: &mut String, date: &str, section: &str, price: &str, f: &Figures) {
    out.push_str(&format!(
        "{date},{},{price},{},{},{},{},{},{},{}\r\n",
        csv_field(section),
        f.seats_total,
        f.available,
        f.held,
        f.sold,
        f.admitted,
        f.revenue.0,
        f.refunds.0
    ));
}

fn csv_rows(out: &mut String, sales: &DateSales) {
    let date = sales.date_id.to_string();
    for section in &sales.sections {
        let price = section.price.0.to_string();
        csv_row(out, &date, &section.name, &price, &section.figures);
    }
    csv_row(out, &date, "TOTAL", "", &sales.totals);
}

fn csv(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}

/// A date's sales by section: seats available, held, sold and admitted, revenue and
/// refunds; holds placed, expired, cancelled, converted. `Accept: text/csv` gives CSV:
/// `date_id,section,price,seats_total,available,held,sold,admitted,revenue,refunds`, a
/// row per section and a `TOTAL` row.
#[utoipa::path(get, path = "/api/v1/admin/dates/{dateId}/sales", tag = "operations", security(("admin" = [])),
    params(("dateId" = u64, Path, description = "The date's id")),
    responses(
        (status = 200, description = "The date's sales (JSON; as CSV with Accept: text/csv)",
            content((DateSales = "application/json"), (String = "text/csv"))),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn date_sales(
    _: Admin,
    State(state): State<AppState>,
    Path(date): Path<DateId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sales = state.engine.date_sales(date).await?;
    if wants_csv(&headers) {
        let mut out = CSV_HEADER.to_owned();
        csv_rows(&mut out, &sales);
        return Ok(csv(out));
    }
    Ok(response::Json(sales).into_response())
}

/// A concert's sales: each date's, and the dates summed (sections by name).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertSales {
    /// The concert.
    concert_id: ConcertId,
    /// Its sections, summed over its dates by name.
    sections: Vec<SectionSales>,
    /// Everything summed.
    totals: Figures,
    /// Holds of every date.
    holds: HoldFigures,
    /// Each date's sales.
    dates: Vec<DateSales>,
}

/// A concert's sales, its dates summed; `Accept: text/csv` gives each date's rows.
#[utoipa::path(get, path = "/api/v1/admin/concerts/{concertId}/sales", tag = "operations", security(("admin" = [])),
    params(("concertId" = u64, Path, description = "The concert's id")),
    responses(
        (status = 200, description = "The concert's sales (JSON; each date's rows as CSV with Accept: text/csv)",
            content((ConcertSales = "application/json"), (String = "text/csv"))),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CONCERT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn concert_sales(
    _: Admin,
    State(state): State<AppState>,
    Path(concert): Path<ConcertId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dates = state.engine.concert_sales(concert).await?;
    if wants_csv(&headers) {
        let mut out = CSV_HEADER.to_owned();
        for date in &dates {
            csv_rows(&mut out, date);
        }
        return Ok(csv(out));
    }
    let mut sections: Vec<SectionSales> = Vec::new();
    let mut totals = Figures::default();
    let mut holds = HoldFigures::default();
    for date in &dates {
        totals.add(&date.totals);
        holds.add(&date.holds);
        for section in &date.sections {
            match sections.iter_mut().find(|s| s.name == section.name) {
                Some(sum) => {
                    sum.figures.add(&section.figures);
                    // Prices may differ between dates; the sum shows the highest.
                    sum.price = sum.price.max(section.price);
                }
                None => sections.push(section.clone()),
            }
        }
    }
    let body = ConcertSales {
        concert_id: concert,
        sections,
        totals,
        holds,
        dates,
    };
    Ok(response::Json(body).into_response())
}

/// A reservation as the operator sees it: with its holder.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminReservation {
    /// The holder.
    user_id: UserId,
    /// The reservation.
    #[serde(flatten)]
    reservation: ReservationBody,
}

impl AdminReservation {
    fn new(engine: &Engine, reservation: Reservation) -> Self {
        AdminReservation {
            user_id: reservation.user,
            reservation: ReservationBody::new(engine, reservation),
        }
    }
}

/// Which reservations of a date, and from where.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReservationQuery {
    /// Only reservations with this status.
    status: Option<ReservationStatus>,
    /// Only this user's.
    #[param(value_type = Option<u64>)]
    user_id: Option<UserId>,
    /// The previous page's `next`: start after that reservation.
    #[param(value_type = Option<String>, format = Uuid)]
    after: Option<ReservationId>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of reservations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationPageBody {
    /// Oldest first (by creation, then id).
    reservations: Vec<AdminReservation>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    next: Option<ReservationId>,
}

/// A date's reservations, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/admin/dates/{dateId}/reservations", tag = "operations", security(("admin" = [])),
    params(("dateId" = u64, Path, description = "The date's id"), ReservationQuery),
    responses(
        (status = 200, description = "A page", body = ReservationPageBody),
        (status = 400, description = "INVALID_REQUEST: a bad status, userId or limit, or an `after` naming no reservation of the date", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "DATE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn date_reservations(
    _: Admin,
    State(state): State<AppState>,
    Path(date): Path<DateId>,
    Query(query): Query<ReservationQuery>,
) -> Result<response::Json<ReservationPageBody>, ApiError> {
    let limit = query.limit.unwrap_or(PAGE_LEN_DEFAULT);
    if !(1..=PAGE_LEN_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be from 1 to {PAGE_LEN_MAX}"
        )));
    }
    let filter = ReservationFilter {
        status: query.status,
        user: query.user_id,
        after: query.after,
        limit: limit as usize,
    };
    let (page, next) = state.engine.date_reservations(date, filter).await?;
    let reservations = page
        .into_iter()
        .map(|r| AdminReservation::new(&state.engine, r))
        .collect();
    Ok(response::Json(ReservationPageBody { reservations, next }))
}

/// A user's reservations across every concert, newest first, with their status now.
#[utoipa::path(get, path = "/api/v1/admin/users/{userId}/reservations", tag = "operations", security(("admin" = [])),
    params(("userId" = u64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user's reservations (empty for a user who never held a seat)", body = [AdminReservation]),
        (status = 400, description = "INVALID_REQUEST: not a user id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn user_reservations(
    _: Admin,
    State(state): State<AppState>,
    Path(user): Path<UserId>,
) -> response::Json<Vec<AdminReservation>> {
    let list = state.engine.reservations(user);
    response::Json(
        list.into_iter()
            .map(|r| AdminReservation::new(&state.engine, r))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Won;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("R"), "R");
        assert_eq!(csv_field("A,B"), "\"A,B\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn a_csv_row_lists_the_figures_in_header_order() {
        let mut out = String::new();
        let figures = Figures {
            seats_total: 10,
            available: 5,
            held: 2,
            sold: 3,
            admitted: 1,
            revenue: Won(300),
            refunds: Won(100),
        };
        csv_row(&mut out, "7", "R", "100", &figures);
        assert_eq!(out, "7,R,100,10,5,2,3,1,300,100\r\n");
    }
}
