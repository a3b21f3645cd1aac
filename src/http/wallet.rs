//! Wallet and payment routes: balance, charges, ledger, paying a reservation.

use super::AppState;
use super::auth::User;
use super::error::{ApiError, Problem};
use super::extract::{IdempotencyKey, Json, Query};
use crate::domain::integer;
use crate::domain::wallet::{LedgerEntry, TransactionKind};
use crate::domain::{ChargeId, PaymentId, Rejection, ReservationId, Timestamp, UserId, Won};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{self, IntoResponse};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Default number of ledger entries listed.
pub const TRANSACTIONS_DEFAULT: usize = 100;
/// Most ledger entries or payments listed at once.
pub const TRANSACTIONS_MAX: usize = 1000;

/// The wallet and payment routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/wallet", get(balance))
        .route("/api/v1/wallet/charges", post(charge))
        .route("/api/v1/wallet/transactions", get(transactions))
        .route("/api/v1/payments", get(payments).post(pay))
}

/// A wallet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletBody {
    /// Whose.
    user_id: UserId,
    /// Its balance in won.
    balance: Won,
}

/// A request to add money.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Whole won, 1 to `--max-charge` (`5000.0` is a whole number too).
    #[schema(value_type = u64)]
    amount: serde_json::Number,
}

/// A charge.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeBody {
    /// The charge's id.
    charge_id: ChargeId,
    /// How much was added.
    amount: Won,
    /// The balance after it.
    balance: Won,
}

/// A ledger entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionBody {
    /// The charge's or the payment's id.
    id: Uuid,
    /// `CHARGE`, `PAYMENT` or `REFUND`.
    kind: TransactionKind,
    /// How much moved; positive for both kinds.
    amount: Won,
    /// The balance after it.
    balance_after: Won,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The reservation a payment paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<ReservationId>,
}

impl From<LedgerEntry> for TransactionBody {
    fn from(entry: LedgerEntry) -> Self {
        TransactionBody {
            id: entry.id,
            kind: entry.kind,
            amount: entry.amount,
            balance_after: entry.balance_after,
            at: entry.at,
            reservation_id: entry.reservation_id,
        }
    }
}

/// How many ledger entries to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1 to 1000; default 100 (ledger) or 1000 (payments).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

impl LimitQuery {
    fn get(&self, default: usize) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(default),
            Some(n @ 1..=TRANSACTIONS_MAX) => Ok(n),
            Some(_) => Err(ApiError::invalid(format!(
                "limit must be from 1 to {TRANSACTIONS_MAX}"
            ))),
        }
    }
}

/// A request to pay a reservation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayRequest {
    /// The reservation to pay (a live hold of the caller's).
    reservation_id: ReservationId,
}

/// A payment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentBody {
    /// The payment's id.
    id: PaymentId,
    /// The reservation it paid.
    reservation_id: ReservationId,
    /// What was debited.
    amount: Won,
    /// The balance after it.
    balance: Won,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    paid_at: Timestamp,
}

impl From<LedgerEntry> for PaymentBody {
    /// The body of a payment, from its ledger entry.
    fn from(entry: LedgerEntry) -> Self {
        PaymentBody {
            id: PaymentId(entry.id),
            reservation_id: entry
                .reservation_id
                .expect("a payment's entry names its reservation"),
            amount: entry.amount,
            balance: entry.balance_after,
            paid_at: entry.at,
        }
    }
}

/// The user's wallet (it exists, empty, from the first time it is used).
#[utoipa::path(get, path = "/api/v1/wallet", tag = "wallet", security(("user" = [])),
    responses(
        (status = 200, description = "The wallet", body = WalletBody),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn balance(
    User(user): User,
    State(state): State<AppState>,
) -> Result<response::Json<WalletBody>, ApiError> {
    let balance = state.engine.balance(user).await?;
    Ok(response::Json(WalletBody {
        user_id: user,
        balance,
    }))
}

/// Adds money to the wallet. With an `Idempotency-Key`, a repeat returns the first charge.
#[utoipa::path(post, path = "/api/v1/wallet/charges", tag = "wallet", security(("user" = [])),
    request_body = ChargeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    responses(
        (status = 200, description = "Charged", body = ChargeBody),
        (status = 400, description = "INVALID_AMOUNT or INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "BALANCE_LIMIT", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn charge(
    User(user): User,
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<ChargeRequest>,
) -> Result<response::Json<ChargeBody>, ApiError> {
    let max = state.engine.rules().wallet.charge_max;
    let amount = integer::of_number(&request.amount).and_then(|n| u64::try_from(n).ok());
    let amount = amount.map(Won).ok_or_else(|| {
        Rejection::InvalidAmount(format!(
            "amount must be a whole number of won from 1 to {}",
            max.0
        ))
    })?;
    let charge = state.engine.charge(user, amount, key).await?;
    Ok(response::Json(ChargeBody {
        charge_id: charge.id,
        amount: charge.amount,
        balance: charge.balance_after,
    }))
}

/// The wallet's ledger, newest first.
#[utoipa::path(get, path = "/api/v1/wallet/transactions", tag = "wallet", security(("user" = [])),
    params(LimitQuery),
    responses(
        (status = 200, description = "Ledger entries", body = [TransactionBody]),
        (status = 400, description = "INVALID_REQUEST (bad limit)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transactions(
    User(user): User,
    State(state): State<AppState>,
    Query(query): Query<LimitQuery>,
) -> Result<response::Json<Vec<TransactionBody>>, ApiError> {
    let limit = query.get(TRANSACTIONS_DEFAULT)?;
    let entries = state.engine.transactions(user, None, limit).await?;
    Ok(response::Json(
        entries.into_iter().map(TransactionBody::from).collect(),
    ))
}

/// Pays a held reservation from the wallet: one step debits, sells the seats, marks the
/// reservation `PAID` and completes the queue entry. With an `Idempotency-Key`, a
/// repeat returns the first payment.
#[utoipa::path(post, path = "/api/v1/payments", tag = "payments", security(("user" = [])),
    request_body = PayRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    responses(
        (status = 201, description = "Paid", body = PaymentBody),
        (status = 400, description = "INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "INSUFFICIENT_BALANCE (nothing changes, the hold stays)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "RESERVATION_EXPIRED, ALREADY_PAID, ALREADY_REFUNDED (paid, then refunded) or RESERVATION_CANCELLED", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pay(
    User(user): User,
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<PayRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let payment = state.engine.pay(user, request.reservation_id, key).await?;
    Ok((
        StatusCode::CREATED,
        response::Json(PaymentBody::from(LedgerEntry::from(&payment))),
    ))
}

/// The user's payments, newest first.
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments", security(("user" = [])),
    params(LimitQuery),
    responses(
        (status = 200, description = "Payments", body = [PaymentBody]),
        (status = 400, description = "INVALID_REQUEST (bad limit)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn payments(
    User(user): User,
    State(state): State<AppState>,
    Query(query): Query<LimitQuery>,
) -> Result<response::Json<Vec<PaymentBody>>, ApiError> {
    let limit = query.get(TRANSACTIONS_MAX)?;
    let entries = state
        .engine
        .transactions(user, Some(TransactionKind::Payment), limit)
        .await?;
    Ok(response::Json(
        entries.into_iter().map(PaymentBody::from).collect(),
    ))
}
