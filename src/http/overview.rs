//! `GET /api/v1/admin/overview`: what the operator view of the page draws, in one
//! answer: every date's seats by status, every waiting room's sizes, and the running
//! totals of holds and payments (counted from durable events) from which the page
//! draws holds and payments per second.

use super::AppState;
use super::auth::Admin;
use super::error::Problem;
use crate::domain::{ConcertId, DateId, Timestamp};
use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde::Serialize;

/// The overview's route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/admin/overview", get(overview))
}

/// One date's seats.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateOverview {
    /// The concert.
    concert_id: ConcertId,
    /// The date.
    date_id: DateId,
    /// Seats in all.
    seats_total: u32,
    /// Free to hold now.
    available: u32,
    /// Held now (recorded holds, including any just past their deadline).
    held: u32,
    /// Sold.
    sold: u32,
}

/// One waiting room.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomOverview {
    /// The concert.
    concert_id: ConcertId,
    /// Its title.
    title: String,
    /// Entries in line.
    waiting: u64,
    /// Entries admitted now.
    active: u64,
}

/// The whole sale at a glance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// When it was read.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// Every date.
    dates: Vec<DateOverview>,
    /// Every waiting room.
    rooms: Vec<RoomOverview>,
    /// Holds placed since the server started (durable).
    holds_total: u64,
    /// Reservations paid since the server started (durable).
    payments_total: u64,
}

/// Seats by date, waiting rooms, and running totals of holds and payments.
#[utoipa::path(get, path = "/api/v1/admin/overview", tag = "operations", security(("admin" = [])),
    responses(
        (status = 200, description = "The sale at a glance", body = Overview),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn overview(_: Admin, State(state): State<AppState>) -> Json<Overview> {
    let engine = &state.engine;
    let now = engine.now();
    let mut dates = Vec::new();
    let mut rooms = Vec::new();
    for concert in engine.concerts() {
        for date in &concert.dates {
            let view = &date.view;
            let (held, sold) = view.recorded_counts();
            dates.push(DateOverview {
                concert_id: concert.concert.id,
                date_id: view.date.id,
                seats_total: view.date.layout.seats_total(),
                available: view.seats_available(now),
                held,
                sold,
            });
        }
        rooms.push(RoomOverview {
            concert_id: concert.concert.id,
            title: concert.concert.title.clone(),
            waiting: concert.queue_view.waiting_len(),
            active: concert.queue_view.active_len() as u64,
        });
    }
    let metrics = engine.metrics();
    Json(Overview {
        at: now,
        dates,
        rooms,
        holds_total: metrics.holds_placed.get(),
        payments_total: metrics.payments.get(),
    })
}
