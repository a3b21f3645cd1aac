//! The HTTP shell: routes, extractors, authentication, errors, the OpenAPI document,
//! and serving connections ([`server`], with load shedding in [`shed`]).
//!
//! Each area owns its routes (`fn router() -> Router<AppState>`); [`router`] merges
//! them and answers everything else with problem+json (404 `NOT_FOUND`, 405).
//! `AppState` holds handles only, behind one `Arc`.

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod events;
pub mod extract;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod overview;
pub mod page;
pub mod queue;
pub mod reservations;
pub mod seatmap;
pub mod server;
pub mod shed;
pub mod tickets;
pub mod wallet;

use crate::engine::Engine;
use crate::engine::feed::Feed;
use crate::engine::seatmap::SeatMaps;
use auth::Auth;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use error::ApiError;
use metrics::HttpMetrics;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (a concert spec with many dates and sections fits).
pub const BODY_LEN_MAX: usize = 1024 * 1024;

/// What every handler can reach: the [`Handles`], shared, so the copy of the state
/// each extractor takes per request is one reference count (not one per handle).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    /// The state of a router over these handles.
    pub fn new(handles: Handles) -> AppState {
        AppState(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// The handles behind [`AppState`].
pub struct Handles {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Request authentication.
    pub auth: Arc<Auth>,
    /// The key ticket codes are signed and checked with.
    pub tickets: Arc<crate::domain::ticket::TicketKey>,
    /// What the observation layer needs.
    pub observe: Arc<Observe>,
    /// Every series `/metrics` shows.
    pub registry: Arc<Registry>,
    /// The event feed.
    pub feed: Feed,
    /// The outbox to NATS JetStream, when configured.
    pub outbox: Option<Arc<crate::outbox::OutboxStatus>>,
    /// The committed seat maps of every date.
    pub seat_maps: Arc<SeatMaps>,
    /// Whether this is a demo start (neither secret configured): only then are demo
    /// tokens handed out.
    pub demo: bool,
    /// The node's standing, in cluster mode (`--log nats://...`).
    pub cluster: Option<cluster::ClusterView>,
}

/// The observation layer's settings and series.
#[derive(Debug)]
pub struct Observe {
    /// Whether requests are observed at all (off only to measure what observing costs).
    pub enabled: bool,
    /// Requests at least this slow are logged with a warning.
    pub slow_request: Duration,
    /// The HTTP series.
    pub metrics: HttpMetrics,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .merge(catalog::router())
        .merge(events::router())
        .merge(queue::router())
        .merge(reservations::router())
        .merge(wallet::router())
        .merge(tickets::router())
        .merge(admin::router())
        .merge(ops::router(state.engine.rules()))
        .merge(seatmap::router())
        .merge(overview::router())
        .merge(page::router())
        // Demo tokens are handed out only where the secrets were made up for trying
        // the server (404 elsewhere).
        .merge(demo::router());
    let router = router
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            )
        });
    // Only a cluster node may have to send writes elsewhere; a single node's requests
    // skip the layer (it would let every one through).
    let router = if state.cluster.is_some() {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::route_writes,
        ))
    } else {
        router
    };
    let router = router
        .layer(DefaultBodyLimit::max(BODY_LEN_MAX))
        // Compresses what the client accepts, except event streams (the default
        // predicate leaves `text/event-stream` alone, so streams are never buffered),
        // tiny bodies, and answers already compressed (the seat map's own gzip).
        .layer(tower_http::compression::CompressionLayer::new());
    let router = if state.observe.enabled {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
    } else {
        router
    };
    router.with_state(state)
}
