//! Extractors that turn every malformed input into a 4xx problem: JSON bodies (parsed
//! whatever the content type, unknown fields refused by the types), path and query
//! parameters, and the `Idempotency-Key` header.

use super::error::ApiError;
use super::server::BodyReadTimeout;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// A JSON request body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PAYLOAD_TOO_LARGE",
                        "the request body is too large",
                    )
                } else if is_body_read_timeout(&rejection) {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "REQUEST_TIMEOUT",
                        "the request body did not arrive in time",
                    )
                } else {
                    ApiError::invalid(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Whether reading the body failed because it came too slowly (see [`BodyReadTimeout`]).
fn is_body_read_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyReadTimeout>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Path parameters; a malformed one is 400 `INVALID_REQUEST`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// Query parameters; a malformed one is 400 `INVALID_REQUEST`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(query_problem(&e.body_text())))
    }
}

/// axum says "Failed to deserialize query string: {serde's reason}"; say what is wrong
/// with the query in the API's words.
fn query_problem(text: &str) -> String {
    let reason = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    format!("invalid query parameter: {reason}")
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters, sent at
/// most once.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        if values.next().is_some() {
            return Err(ApiError::invalid(
                "send one Idempotency-Key header, not several",
            ));
        }
        let bytes = value.as_bytes();
        let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
        if bytes.is_empty() || bytes.len() > IDEMPOTENCY_KEY_LEN_MAX || !visible {
            return Err(ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
            )));
        }
        let key = String::from_utf8(bytes.to_vec()).expect("checked: visible ASCII");
        Ok(IdempotencyKey(Some(key)))
    }
}
