//! Operations routes: health, metrics, the OpenAPI document and Swagger UI (served from the
//! binary: the UI's files are compiled in, nothing is fetched from a CDN).

use super::AppState;
use super::openapi;
use crate::engine::Rules;
use axum::Router;
use axum::response::Json;
use axum::routing::get;
use serde::Serialize;
use utoipa_swagger_ui::SwaggerUi;

/// The operations routes; the OpenAPI document states the limits in `rules`.
pub fn router(rules: &Rules) -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(super::metrics::metrics))
        .merge(SwaggerUi::new("/docs").url("/api-docs/openapi.json", openapi::document(rules)))
}

/// Health status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    status: &'static str,
}

/// Whether the server is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}
