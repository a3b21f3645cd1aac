//! `GET /metrics`: the Prometheus text exposition (format 0.0.4, written by the
//! `prometheus-client` crate) of what operators watch during a sale.
//!
//! Three sources, registered once in one [`Registry`]:
//! - [`HttpMetrics`] (this module): answers by status, request durations by route and
//!   status class, problem answers by code (503 `OVERLOADED` among them);
//! - the engine's and the store's counters and histograms, updated where things
//!   happen ([`crate::engine::metrics`], [`crate::store::metrics`]);
//! - [`LiveGauges`], read from the engine's views at scrape time: seats by status per
//!   date, waiting-room sizes, mailbox depths, whether the write path is up.
//!
//! Nothing here takes a lock an actor takes, except the date views' brief tally mutex.

use super::AppState;
use crate::engine::Engine;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// An answer's status, as a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status code.
    pub status: u16,
}

/// A request's route template and status class, as labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template (`/api/v1/reservations/{id}`), or `unmatched`.
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub class: &'static str,
}

/// A problem answer's code, as a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProblemLabel {
    /// The `code` member of the problem document.
    pub code: &'static str,
}

/// The HTTP layer's series.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Answers by status.
    pub responses: Family<StatusLabel, Counter>,
    /// Request durations by route template and status class.
    pub durations: Family<RouteLabels, Histogram>,
    /// Problem answers by code.
    pub problems: Family<ProblemLabel, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            responses: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(50e-6, 2.0, 16))
            }),
            problems: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// Adds the series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "boxoffice_http_responses",
            "HTTP answers by status",
            self.responses.clone(),
        );
        registry.register(
            "boxoffice_http_request_duration_seconds",
            "HTTP request durations by route template and status class",
            self.durations.clone(),
        );
        registry.register(
            "boxoffice_http_problems",
            "Problem answers by code (OVERLOADED here: an actor mailbox stayed full; requests shed before any work are boxoffice_http_shed_total)",
            self.problems.clone(),
        );
    }
}

/// Values read from the engine at scrape time.
pub struct LiveGauges {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for LiveGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveGauges")
    }
}

impl LiveGauges {
    /// Gauges of `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        LiveGauges { engine }
    }
}

impl Collector for LiveGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let engine = &self.engine;
        let committed = ConstCounter::new(engine.events_total());
        committed.encode(encoder.encode_descriptor(
            "boxoffice_events_committed",
            "Events handed to the log since start",
            None,
            committed.metric_type(),
        )?)?;
        let shed = ConstCounter::new(super::shed::shed_total());
        shed.encode(encoder.encode_descriptor(
            "boxoffice_http_shed",
            "Requests answered 503 OVERLOADED before any work, past --max-requests-in-flight or the connection cap (not in boxoffice_http_responses_total)",
            None,
            shed.metric_type(),
        )?)?;
        let up = ConstGauge::new(i64::from(!engine.journal().is_stopped()));
        up.encode(encoder.encode_descriptor(
            "boxoffice_write_path_up",
            "1 while mutations can be logged, 0 after a write failure or at shutdown",
            None,
            up.metric_type(),
        )?)?;
        let now = engine.now();
        let concerts = engine.concerts();
        let gauge = ConstGauge::new(0i64);
        let mut seats = encoder.encode_descriptor(
            "boxoffice_seats",
            "Seats of a date by status",
            None,
            gauge.metric_type(),
        )?;
        for concert in &concerts {
            for date in &concert.dates {
                let available = date.view.seats_available(now);
                let (_, sold) = date.view.recorded_counts();
                let held = date.view.date.layout.seats_total() - available - sold;
                for (status, n) in [("available", available), ("held", held), ("sold", sold)] {
                    let labels = [
                        ("concert", concert.concert.id.0.to_string()),
                        ("date", date.view.date.id.0.to_string()),
                        ("status", status.to_owned()),
                    ];
                    ConstGauge::new(i64::from(n)).encode(seats.encode_family(&labels)?)?;
                }
            }
        }
        let mut entries = encoder.encode_descriptor(
            "boxoffice_queue_entries",
            "Waiting-room entries by status",
            None,
            gauge.metric_type(),
        )?;
        for concert in &concerts {
            let view = &concert.queue_view;
            let counts = [
                ("active", view.active_len() as i64),
                ("waiting", view.waiting_len() as i64),
            ];
            for (status, n) in counts {
                let labels = [
                    ("concert", concert.concert.id.0.to_string()),
                    ("status", status.to_owned()),
                ];
                ConstGauge::new(n).encode(entries.encode_family(&labels)?)?;
            }
        }
        let mut mailboxes = encoder.encode_descriptor(
            "boxoffice_mailbox_messages",
            "Messages waiting in the actors' mailboxes, by kind of actor",
            None,
            gauge.metric_type(),
        )?;
        for (actor, n) in engine.mailbox_depths() {
            ConstGauge::new(n as i64).encode(mailboxes.encode_family(&[("actor", actor)])?)?;
        }
        Ok(())
    }
}

/// The metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition (format 0.0.4)", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(outbox) = &state.outbox {
        outbox.refresh(&state.feed);
    }
    let mut body = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut body, &state.registry)
        .expect("writing to a String cannot fail");
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
}
