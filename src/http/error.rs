//! `ApiError`: the one place business rejections and engine errors become HTTP
//! answers, all as `application/problem+json` (RFC 9457) with a `code` member.

use crate::domain::{Rejection, SeatId};
use crate::engine::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable error code (`SEAT_UNAVAILABLE`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub detail: String,
    /// The seats concerned, for seat errors.
    pub seat_ids: Option<Vec<SeatId>>,
}

/// The problem document, as the OpenAPI schema shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Stable error code.
    pub code: &'static str,
    /// Seats concerned (`SEAT_UNAVAILABLE`, `SEAT_NOT_FOUND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat_ids: Option<Vec<SeatId>>,
}

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            seat_ids: None,
        }
    }

    /// 400 `INVALID_REQUEST`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", detail)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
    }

    /// 404 `NOT_FOUND` for unknown routes.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        use StatusCode as S;
        let detail = rejection.to_string();
        let (status, code, seat_ids) = match rejection {
            Rejection::InvalidRequest(_) => (S::BAD_REQUEST, "INVALID_REQUEST", None),
            Rejection::InvalidAmount(_) => (S::BAD_REQUEST, "INVALID_AMOUNT", None),
            Rejection::ConcertNotFound => (S::NOT_FOUND, "CONCERT_NOT_FOUND", None),
            Rejection::DateNotFound => (S::NOT_FOUND, "DATE_NOT_FOUND", None),
            Rejection::SeatNotFound(seats) => (S::NOT_FOUND, "SEAT_NOT_FOUND", Some(seats)),
            Rejection::ReservationNotFound => (S::NOT_FOUND, "RESERVATION_NOT_FOUND", None),
            Rejection::NotInQueue => (S::NOT_FOUND, "NOT_IN_QUEUE", None),
            Rejection::NotAdmitted => (S::FORBIDDEN, "NOT_ADMITTED", None),
            Rejection::SeatUnavailable(seats) => (S::CONFLICT, "SEAT_UNAVAILABLE", Some(seats)),
            Rejection::SeatLimitExceeded { .. } => (S::CONFLICT, "SEAT_LIMIT_EXCEEDED", None),
            Rejection::AlreadyPaid => (S::CONFLICT, "ALREADY_PAID", None),
            Rejection::ReservationExpired => (S::CONFLICT, "RESERVATION_EXPIRED", None),
            Rejection::ReservationCancelled => (S::CONFLICT, "RESERVATION_CANCELLED", None),
            Rejection::InsufficientBalance { .. } => {
                (S::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE", None)
            }
            Rejection::BalanceLimit { .. } => (S::CONFLICT, "BALANCE_LIMIT", None),
            Rejection::IdempotencyKeyReused => {
                (S::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", None)
            }
        };
        ApiError {
            status,
            code,
            detail,
            seat_ids,
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Rejected(rejection) => rejection.into(),
            Error::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "OVERLOADED",
                "too many requests are waiting; try again shortly",
            ),
            Error::Unavailable => {
                tracing::error!("an engine component is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the service is unavailable",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            seat_ids: self.seat_ids,
        };
        let body = serde_json::to_vec(&problem).expect("a problem always serializes");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overloaded_engine_is_a_503_problem_with_retry_after() {
        let response = ApiError::from(Error::Overloaded).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let headers = response.headers();
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn every_rejection_has_a_client_error_status() {
        let rejections = [
            Rejection::InvalidRequest(String::new()),
            Rejection::InvalidAmount(String::new()),
            Rejection::ConcertNotFound,
            Rejection::DateNotFound,
            Rejection::SeatNotFound(vec![SeatId(1)]),
            Rejection::ReservationNotFound,
            Rejection::NotInQueue,
            Rejection::NotAdmitted,
            Rejection::SeatUnavailable(vec![SeatId(1)]),
            Rejection::SeatLimitExceeded { limit: 4 },
            Rejection::AlreadyPaid,
            Rejection::ReservationExpired,
            Rejection::ReservationCancelled,
            Rejection::InsufficientBalance {
                amount: crate::domain::Won(2),
                balance: crate::domain::Won(1),
            },
            Rejection::BalanceLimit {
                limit: crate::domain::Won(1),
            },
            Rejection::IdempotencyKeyReused,
        ];
        for rejection in rejections {
            let error = ApiError::from(rejection.clone());
            assert!(error.status.is_client_error(), "{rejection:?}");
        }
    }
}
