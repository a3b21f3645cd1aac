//! Request observation: one middleware around every request that
//! - takes the caller's `x-request-id` (1 to 128 visible ASCII characters) or makes
//!   one, and echoes it back on the answer;
//! - keeps that id for the request's task, so a 5xx problem document names it
//!   ([`current_request_id`]), and so do the warnings and errors logged for a request;
//! - with debug logging on (`RUST_LOG=debug`), runs the request inside a `request` span
//!   carrying that id, its method and route, so every log line the request causes
//!   names it. Not at the default level: making, entering and closing a span for each
//!   request, its fields formatted, cost about 2 µs of CPU a request, about 15% of
//!   what a refused hold costs the server in all (`cargo bench --bench hammer --
//!   --wrk --mode one-seat`), as tower-http's tracing layer also keeps its request
//!   spans at debug;
//! - counts the answer by status and code and times it by route template
//!   ([`super::metrics::HttpMetrics`]);
//! - warns about a request slower than `--slow-request-ms`, naming its id, method and
//!   route.

use super::AppState;
use super::metrics::{ProblemLabel, RouteLabels, StatusLabel};
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

/// The header that carries a request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a caller.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// The code of a problem answer, attached to the response by [`super::error::ApiError`]
/// so this layer can count it.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().map(str::to_owned).ok())
        .ok()
        .flatten()
}

/// A fresh request id: a per-process random prefix and a counter (cheap, unique within
/// the process, and unlikely to repeat across restarts).
fn fresh_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(rand::random::<u32>);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{prefix:08x}-{n:x}")).expect("hex digits are a header value")
}

fn caller_request_id(request: &Request) -> Option<HeaderValue> {
    let value = request.headers().get(REQUEST_ID_HEADER)?;
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    (!bytes.is_empty() && bytes.len() <= REQUEST_ID_LEN_MAX && visible).then(|| value.clone())
}

/// The middleware (see the module docs).
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = caller_request_id(&request).unwrap_or_else(fresh_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let span = tracing::debug_span!(
        "request",
        id = id.to_str().unwrap_or("-"),
        %method,
        route = %route
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    let elapsed = started.elapsed();
    let status = response.status();
    if elapsed >= state.observe.slow_request {
        tracing::warn!(
            request_id = id.to_str().unwrap_or("-"),
            %method,
            route = %route,
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "slow request"
        );
    }
    let metrics = &state.observe.metrics;
    metrics
        .responses
        .get_or_create(&StatusLabel {
            status: status.as_u16(),
        })
        .inc();
    if let Some(ProblemCode(code)) = response.extensions().get::<ProblemCode>() {
        metrics.problems.get_or_create(&ProblemLabel { code }).inc();
    }
    let class = match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics
        .durations
        .get_or_create(&RouteLabels { route, class })
        .observe(elapsed.as_secs_f64());
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}
