//! Operations routes: health, metrics, the OpenAPI document and Swagger UI (served from the
//! binary: the UI's files are compiled in, nothing is fetched from a CDN).

use super::AppState;
use super::openapi;
use crate::domain::Rules;
use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde::Serialize;
use utoipa_swagger_ui::SwaggerUi;

/// The operations routes; the OpenAPI document states the limits in `rules`.
pub fn router(rules: &Rules) -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(super::cluster::ready))
        .route("/metrics", get(super::metrics::metrics))
        .merge(SwaggerUi::new("/docs").url("/api-docs/openapi.json", openapi::document(rules)))
}

/// Health status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`; `degraded` while the outbox to NATS is not publishing (the sale goes on).
    status: &'static str,
    /// The outbox, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<OutboxHealth>,
}

/// The outbox's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxHealth {
    /// Connected and publishing.
    up: bool,
    /// Log records not yet in the stream.
    lag_records: u64,
}

/// Whether the server is up (200 while it answers, degraded or not).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up (`ok` or `degraded`)", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let outbox = state.outbox.as_ref().map(|status| OutboxHealth {
        up: status.is_up(),
        lag_records: status.lag_records(&state.feed),
    });
    let degraded = outbox.as_ref().is_some_and(|o| !o.up);
    Json(Health {
        status: if degraded { "degraded" } else { "ok" },
        outbox,
    })
}
