//! Load shedding: when too many requests are in flight, a new one waits a moment for a
//! slot and is then answered 503 `OVERLOADED` with `Retry-After`, before any work is
//! done for it.
//!
//! Under a flash sale the engine can take only so many requests at once; past that,
//! queueing more only makes everyone's answer late (and a closed loop of clients keeps
//! the queue full). Refusing early and cheaply keeps the accepted requests fast and
//! tells the rest when to come back. `/health` and `/metrics` are never shed: they are
//! how operators see an overloaded server.
//!
//! The server ([`super::server`]) asks a [`Shedder`] for a [`Slot`] before handing a
//! request to the router and holds the slot until the response is ready.

use super::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Paths that are never shed (and that reserve connections may still use).
pub const EXEMPT_PATHS: [&str; 2] = ["/health", "/metrics"];

/// Whether requests to `path` are exempt from shedding.
pub fn is_exempt(path: &str) -> bool {
    EXEMPT_PATHS.contains(&path)
}

/// Admits at most `in_flight_max` requests at once; a request that finds no free slot
/// waits up to `wait` for one, and is shed after that.
#[derive(Clone)]
pub struct Shedder {
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// A request's place among those in flight; freed when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Shedder {
    /// A shedder with `in_flight_max` slots (at least 1) and the longest wait for one.
    pub fn new(in_flight_max: usize, wait: Duration) -> Self {
        assert!(in_flight_max >= 1, "at least one request must be admitted");
        Shedder {
            slots: Arc::new(Semaphore::new(in_flight_max)),
            wait,
        }
    }

    /// A slot, or `None` when the request should be shed.
    pub async fn admit(&self) -> Option<Slot> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.wait.is_zero() => return None,
            Err(_) => tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
                .await
                .ok()?
                // The semaphore is never closed.
                .ok()?,
        };
        Some(Slot { _permit: permit })
    }
}

/// Requests shed since start (answered before they reach the router, so the router's
/// observation layer never sees them: `/metrics` reads this instead). One process
/// serves one API, so one count.
static SHED_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Requests answered 503 `OVERLOADED` by the connection layer since start.
pub fn shed_total() -> u64 {
    SHED_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// The answer to a shed request: 503 `OVERLOADED` with `Retry-After` (counted).
pub fn overloaded() -> Response {
    SHED_TOTAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "OVERLOADED",
        "the server is overloaded; try again shortly",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_limit_waits_then_is_shed() {
        let shedder = Shedder::new(1, Duration::from_millis(10));
        let first = shedder.admit().await;
        assert!(first.is_some());
        let started = tokio::time::Instant::now();
        assert!(shedder.admit().await.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        drop(first);
        assert!(shedder.admit().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_gets_a_slot_that_frees_in_time() {
        let shedder = Shedder::new(1, Duration::from_millis(10));
        let first = shedder.admit().await.unwrap();
        let waiter = tokio::spawn({
            let shedder = shedder.clone();
            async move { shedder.admit().await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }

    #[test]
    fn health_and_metrics_are_never_shed() {
        assert!(is_exempt("/health"));
        assert!(is_exempt("/metrics"));
        assert!(!is_exempt("/api/v1/reservations"));
        assert!(!is_exempt("/health/"));
    }

    #[test]
    fn a_shed_request_is_a_503_problem_with_retry_after() {
        let response = overloaded();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}
