//! `ApiError`: the one place business rejections and engine errors become HTTP
//! answers, all as `application/problem+json` (RFC 9457) with a `code` member.

use crate::domain::{Rejection, SeatId, Timestamp};
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
    /// Further members some codes carry (`oldestCursor` of `CURSOR_EXPIRED`).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// When a ticket was first used, for `ALREADY_USED`.
    pub used_at: Option<Timestamp>,
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
    /// When the ticket was first admitted (`ALREADY_USED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub used_at: Option<Timestamp>,
    /// The request's id (its `x-request-id`), on server errors: quote it when
    /// reporting one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Further members some codes carry (`oldestCursor` of `CURSOR_EXPIRED`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            seat_ids: None,
            extra: serde_json::Map::new(),
            used_at: None,
        }
    }

    /// The same error with one more member in its problem document.
    pub fn with(mut self, member: &str, value: serde_json::Value) -> Self {
        self.extra.insert(member.to_owned(), value);
        self
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
        let status = match &rejection {
            Rejection::InvalidRequest(_)
            | Rejection::InvalidAmount(_)
            | Rejection::TicketInvalid(_)
            | Rejection::TicketVoid
            | Rejection::TicketWrongDate { .. } => S::BAD_REQUEST,
            Rejection::ConcertNotFound
            | Rejection::DateNotFound
            | Rejection::SeatNotFound(_)
            | Rejection::ReservationNotFound
            | Rejection::NotInQueue => S::NOT_FOUND,
            Rejection::NotAdmitted => S::FORBIDDEN,
            Rejection::SeatUnavailable(_)
            | Rejection::SeatLimitExceeded { .. }
            | Rejection::AlreadyPaid
            | Rejection::ReservationExpired
            | Rejection::ReservationCancelled
            | Rejection::BalanceLimit { .. }
            | Rejection::NotPaid
            | Rejection::AlreadyRefunded
            | Rejection::RefundClosed(_)
            | Rejection::SalesPaused
            | Rejection::DateCancelled
            | Rejection::AlreadyUsed { .. } => S::CONFLICT,
            Rejection::InsufficientBalance { .. } => S::PAYMENT_REQUIRED,
            Rejection::IdempotencyKeyReused => S::UNPROCESSABLE_ENTITY,
        };
        let detail = rejection.to_string();
        let code = rejection.code();
        let used_at = match rejection {
            Rejection::AlreadyUsed { used_at } => Some(used_at),
            _ => None,
        };
        let seat_ids = match rejection {
            Rejection::SeatNotFound(seats) | Rejection::SeatUnavailable(seats) => Some(seats),
            _ => None,
        };
        ApiError {
            status,
            code,
            detail,
            seat_ids,
            extra: serde_json::Map::new(),
            used_at,
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
            Error::NotLeader => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_LEADER",
                "this node does not lead the log now; try again shortly",
            ),
            Error::Unavailable => {
                tracing::error!(
                    request_id = super::observe::current_request_id().as_deref(),
                    "an engine component is unavailable"
                );
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
        let request_id = if self.status.is_server_error() {
            super::observe::current_request_id()
        } else {
            None
        };
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            seat_ids: self.seat_ids,
            used_at: self.used_at,
            request_id,
            extra: self.extra,
        };
        let body = serde_json::to_vec(&problem).expect("a problem always serializes");
        let mut response = (self.status, body).into_response();
        response
            .extensions_mut()
            .insert(super::observe::ProblemCode(self.code));
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
            Rejection::NotPaid,
            Rejection::AlreadyRefunded,
            Rejection::RefundClosed(String::new()),
            Rejection::SalesPaused,
            Rejection::DateCancelled,
            Rejection::TicketInvalid(String::new()),
            Rejection::TicketVoid,
            Rejection::TicketWrongDate {
                actual: crate::domain::DateId(1),
            },
            Rejection::AlreadyUsed {
                used_at: Timestamp::UNIX_EPOCH,
            },
        ];
        for rejection in rejections {
            let error = ApiError::from(rejection.clone());
            assert!(error.status.is_client_error(), "{rejection:?}");
        }
    }
}
