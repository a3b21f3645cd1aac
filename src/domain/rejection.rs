//! Business outcomes that say "no". Each has a stable error code ([`Rejection::code`])
//! that the HTTP layer answers with its status; a rejection never changes state.

use super::{DateId, SeatId, Timestamp, Won};

/// Why a command was refused. Part of the API: the HTTP layer maps each to a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The request is malformed or breaks a documented limit (400 `INVALID_REQUEST`).
    #[error("{0}")]
    InvalidRequest(String),
    /// A charge amount outside 1..=max (400 `INVALID_AMOUNT`).
    #[error("{0}")]
    InvalidAmount(String),
    /// 404 `CONCERT_NOT_FOUND`.
    #[error("concert not found")]
    ConcertNotFound,
    /// 404 `DATE_NOT_FOUND`.
    #[error("date not found")]
    DateNotFound,
    /// 404 `SEAT_NOT_FOUND`, with the unknown ids.
    #[error("no such seat: {}", list(.0))]
    SeatNotFound(Vec<SeatId>),
    /// 404 `RESERVATION_NOT_FOUND` (also for someone else's reservation).
    #[error("reservation not found")]
    ReservationNotFound,
    /// 404 `NOT_IN_QUEUE`: the user has no entry in this concert's waiting room.
    #[error("you are not in this concert's queue")]
    NotInQueue,
    /// 403 `NOT_ADMITTED`: the user's queue entry is not `ACTIVE`.
    #[error("your queue entry for this concert is not active")]
    NotAdmitted,
    /// 409 `SEAT_UNAVAILABLE`, with the seats that are held or sold.
    #[error("seat {} is not available", list(.0))]
    SeatUnavailable(Vec<SeatId>),
    /// 409 `SEAT_LIMIT_EXCEEDED`: the user would hold or own more than the limit.
    #[error("at most {limit} seats per user on one date")]
    SeatLimitExceeded {
        /// The per-user limit.
        limit: u32,
    },
    /// 409 `ALREADY_PAID`.
    #[error("the reservation is already paid")]
    AlreadyPaid,
    /// 409 `RESERVATION_EXPIRED`.
    #[error("the reservation's hold has expired")]
    ReservationExpired,
    /// 409 `RESERVATION_CANCELLED`.
    #[error("the reservation was cancelled")]
    ReservationCancelled,
    /// 402 `INSUFFICIENT_BALANCE`.
    #[error("the balance of {balance} does not cover {amount}")]
    InsufficientBalance {
        /// What the payment needs.
        amount: Won,
        /// What the wallet holds.
        balance: Won,
    },
    /// 409 `BALANCE_LIMIT`: the charge would take the balance past the maximum.
    #[error("a balance may not exceed {limit}")]
    BalanceLimit {
        /// The maximum balance.
        limit: Won,
    },
    /// 422 `IDEMPOTENCY_KEY_REUSED`: the key was used with another request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// 409 `RESERVATION_NOT_PAID`: only a paid reservation can be refunded.
    #[error("only a paid reservation can be refunded")]
    NotPaid,
    /// 409 `ALREADY_REFUNDED`.
    #[error("the reservation is already refunded")]
    AlreadyRefunded,
    /// 409 `REFUND_CLOSED`: past the refund deadline, or a ticket was already used.
    #[error("{0}")]
    RefundClosed(String),
    /// 409 `SALES_PAUSED`: the operator paused sales of the date.
    #[error("sales of this date are paused")]
    SalesPaused,
    /// 409 `DATE_CANCELLED`: the date was cancelled.
    #[error("this date was cancelled")]
    DateCancelled,
    /// 400 `TICKET_INVALID`: a forged, altered or malformed code, or one naming no ticket.
    #[error("{0}")]
    TicketInvalid(String),
    /// 400 `TICKET_VOID`: the ticket's reservation was refunded or its date cancelled.
    #[error("the ticket is void (refunded or cancelled)")]
    TicketVoid,
    /// 400 `TICKET_WRONG_DATE`: a genuine ticket for another date than the one scanned for.
    #[error("the ticket is for date {actual}, not this one")]
    TicketWrongDate {
        /// The date the ticket is for.
        actual: DateId,
    },
    /// 409 `ALREADY_USED`: the ticket was admitted before, at `used_at`.
    #[error("the ticket was already used at {}", rfc3339(.used_at))]
    AlreadyUsed {
        /// When it was admitted.
        used_at: Timestamp,
    },
}

impl Rejection {
    /// The stable, machine-readable name of the outcome (`SEAT_UNAVAILABLE`, ...): the
    /// `code` member of the API's problem documents and a label in `/metrics`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidRequest(_) => "INVALID_REQUEST",
            Rejection::InvalidAmount(_) => "INVALID_AMOUNT",
            Rejection::ConcertNotFound => "CONCERT_NOT_FOUND",
            Rejection::DateNotFound => "DATE_NOT_FOUND",
            Rejection::SeatNotFound(_) => "SEAT_NOT_FOUND",
            Rejection::ReservationNotFound => "RESERVATION_NOT_FOUND",
            Rejection::NotInQueue => "NOT_IN_QUEUE",
            Rejection::NotAdmitted => "NOT_ADMITTED",
            Rejection::SeatUnavailable(_) => "SEAT_UNAVAILABLE",
            Rejection::SeatLimitExceeded { .. } => "SEAT_LIMIT_EXCEEDED",
            Rejection::AlreadyPaid => "ALREADY_PAID",
            Rejection::ReservationExpired => "RESERVATION_EXPIRED",
            Rejection::ReservationCancelled => "RESERVATION_CANCELLED",
            Rejection::InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            Rejection::BalanceLimit { .. } => "BALANCE_LIMIT",
            Rejection::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Rejection::NotPaid => "RESERVATION_NOT_PAID",
            Rejection::AlreadyRefunded => "ALREADY_REFUNDED",
            Rejection::RefundClosed(_) => "REFUND_CLOSED",
            Rejection::SalesPaused => "SALES_PAUSED",
            Rejection::DateCancelled => "DATE_CANCELLED",
            Rejection::TicketInvalid(_) => "TICKET_INVALID",
            Rejection::TicketVoid => "TICKET_VOID",
            Rejection::TicketWrongDate { .. } => "TICKET_WRONG_DATE",
            Rejection::AlreadyUsed { .. } => "ALREADY_USED",
        }
    }
}

/// An instant as the API writes it (`2026-12-24T19:00:00Z`).
pub fn rfc3339(at: &Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn list(seats: &[SeatId]) -> String {
    let names: Vec<String> = seats.iter().map(ToString::to_string).collect();
    names.join(", ")
}
