//! Demo tokens, so the web page can offer "sign in as user 1, 2, 3": routed only in a
//! demo start (neither an admin key nor a JWT secret configured), where the secrets
//! are made up for trying the server and the same tokens are printed at start. In any
//! other start the path does not exist (404 `NOT_FOUND`).

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::Json;
use crate::app::DEMO_TOKEN_TTL_SECS;
use crate::domain::UserId;
use axum::Router;
use axum::extract::State;
use axum::response;
use axum::routing::post;
use serde::{Deserialize, Serialize};

/// The users a demo token can be had for.
pub const DEMO_USERS: std::ops::RangeInclusive<u64> = 1..=3;

/// The demo routes (merge them only in a demo start).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/demo/tokens", post(token))
}

/// Whose token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemoTokenRequest {
    /// 1, 2 or 3.
    user_id: u64,
}

/// A user token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemoTokenBody {
    /// The user.
    user_id: u64,
    /// `Authorization: Bearer <token>`; lasts 7 days.
    token: String,
}

/// A token for demo user 1, 2 or 3 (demo start only).
#[utoipa::path(post, path = "/api/v1/demo/tokens", tag = "demo",
    request_body = DemoTokenRequest,
    responses(
        (status = 200, description = "A token for the user", body = DemoTokenBody),
        (status = 400, description = "INVALID_REQUEST (not user 1, 2 or 3)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: not a demo start", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn token(
    State(state): State<AppState>,
    request: Result<Json<DemoTokenRequest>, ApiError>,
) -> Result<response::Json<DemoTokenBody>, ApiError> {
    // The route is always there (so other methods get 405 like anywhere else), but it
    // hands out nothing unless the secrets were made up for a demo.
    if !state.demo {
        return Err(ApiError::no_route());
    }
    let Json(request) = request?;
    if !DEMO_USERS.contains(&request.user_id) {
        return Err(ApiError::invalid("demo tokens are for users 1, 2 and 3"));
    }
    let token = state
        .auth
        .token(UserId(request.user_id), DEMO_TOKEN_TTL_SECS);
    Ok(response::Json(DemoTokenBody {
        user_id: request.user_id,
        token,
    }))
}
