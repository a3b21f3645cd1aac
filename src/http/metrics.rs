//! `GET /metrics`: Prometheus text exposition of what operators watch during a sale:
//! answers by status, committed events, whether the write path runs, seats by status
//! and waiting-room sizes per concert. Counters live in atomics; nothing here takes a
//! lock an actor takes.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Answers by HTTP status (index: status - 100).
pub struct HttpCounters {
    by_status: Vec<AtomicU64>,
}

impl Default for HttpCounters {
    fn default() -> Self {
        HttpCounters {
            by_status: (100..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl HttpCounters {
    fn count(&self, status: u16) {
        if let Some(counter) = status
            .checked_sub(100)
            .and_then(|i| self.by_status.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Middleware counting every answer by status.
pub async fn count_responses(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.http.count(response.status().as_u16());
    response
}

/// The metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let engine = &state.engine;
    let _ = writeln!(
        out,
        "# HELP boxoffice_http_responses_total HTTP answers by status."
    );
    let _ = writeln!(out, "# TYPE boxoffice_http_responses_total counter");
    for (i, counter) in state.http.by_status.iter().enumerate() {
        let n = counter.load(Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(
                out,
                "boxoffice_http_responses_total{{status=\"{}\"}} {n}",
                i + 100
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP boxoffice_events_committed_total Events handed to the log since start."
    );
    let _ = writeln!(out, "# TYPE boxoffice_events_committed_total counter");
    let _ = writeln!(
        out,
        "boxoffice_events_committed_total {}",
        engine.events_total()
    );
    let _ = writeln!(
        out,
        "# HELP boxoffice_write_path_up 1 while mutations can be logged, 0 after a write failure."
    );
    let _ = writeln!(out, "# TYPE boxoffice_write_path_up gauge");
    let _ = writeln!(
        out,
        "boxoffice_write_path_up {}",
        u8::from(!engine.journal().is_stopped())
    );
    let now = engine.now();
    let _ = writeln!(out, "# HELP boxoffice_seats Seats of a date by status.");
    let _ = writeln!(out, "# TYPE boxoffice_seats gauge");
    let _ = writeln!(
        out,
        "# HELP boxoffice_queue_entries Waiting-room entries by status."
    );
    let _ = writeln!(out, "# TYPE boxoffice_queue_entries gauge");
    for concert in engine.concert_entries() {
        let id = concert.concert.id;
        for date in &concert.dates {
            let available = date.view.seats_available(now);
            let (_, sold) = date.view.recorded_counts();
            let held = date.view.date.layout.seats_total() - available - sold;
            for (status, n) in [("available", available), ("held", held), ("sold", sold)] {
                let date_id = date.view.date.id;
                let _ = writeln!(
                    out,
                    "boxoffice_seats{{concert=\"{id}\",date=\"{date_id}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let (active, waiting) = (
            concert.queue_view.active_len(),
            concert.queue_view.waiting_len(),
        );
        let _ = writeln!(
            out,
            "boxoffice_queue_entries{{concert=\"{id}\",status=\"active\"}} {active}"
        );
        let _ = writeln!(
            out,
            "boxoffice_queue_entries{{concert=\"{id}\",status=\"waiting\"}} {waiting}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
