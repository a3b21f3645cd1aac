//! Cluster mode at the HTTP edge: writes sent to a follower go to the leader, and
//! `/health/ready` tells a load balancer which node plays which part.
//!
//! A follower answers every `POST`, `PUT`, `PATCH` and `DELETE` with 307 and a
//! `Location` on the leader's advertised URL (same path and query: a client that
//! follows redirects sends the request again there, body and all), and a
//! problem+json `NOT_LEADER` body for clients that do not. A waiting-room entry and its
//! stream are reads that keep the entry alive, which only the leader's room records,
//! so they go to the leader too. While no leader is known
//! (an election), or this node has just lost the lease itself, it answers 503
//! `NOT_LEADER` with `Retry-After`. Reads are served wherever they arrive.

use super::AppState;
use super::error::ApiError;
use crate::store::leadership::{Leadership, Role};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use std::sync::Arc;

/// A cluster node's standing, for the HTTP edge.
#[derive(Clone)]
pub struct ClusterView {
    /// Who may write.
    pub leadership: Arc<Leadership>,
    /// Where this node takes requests, as clients reach it.
    pub advertise_url: String,
}

/// The node's role and lag in `/metrics`, read at scrape time.
#[derive(Debug)]
pub struct ClusterGauges(pub Arc<Leadership>);

impl Collector for ClusterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let leadership = &self.0;
        let gauges = [
            (
                "boxoffice_cluster_leader",
                "1 while this node leads the replicated log and takes writes",
                i64::from(leadership.may_write()),
            ),
            (
                "boxoffice_cluster_lag_events",
                "Logged events this node has not applied yet",
                i64::try_from(leadership.lag()).unwrap_or(i64::MAX),
            ),
            (
                "boxoffice_cluster_applied_seq",
                "The last logged event this node has applied",
                i64::try_from(leadership.applied()).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Whether only the leader may answer: writes, and reads of a waiting-room entry
/// (which keep it alive).
fn leader_only(method: &Method, path: &str) -> bool {
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let entry = path.starts_with("/api/v1/concerts/")
        && (path.ends_with("/queue") || path.ends_with("/queue/stream"));
    write || entry
}

/// Sends writes that reach a node that does not lead elsewhere (see the module docs).
pub async fn route_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = &state.cluster else {
        return next.run(request).await;
    };
    if !leader_only(request.method(), request.uri().path()) || cluster.leadership.may_write() {
        return next.run(request).await;
    }
    let leader = cluster
        .leadership
        .leader_url()
        .filter(|url| *url != cluster.advertise_url);
    let Some(leader) = leader else {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_LEADER",
            "no node leads the log right now (an election is under way); try again shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let location = format!("{}{target}", leader.trim_end_matches('/'));
    let mut response = ApiError::new(
        StatusCode::TEMPORARY_REDIRECT,
        "NOT_LEADER",
        format!("this node follows the log; send writes to the leader at {leader}"),
    )
    .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A node's part in the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `leader` (takes writes) or `follower` (serves reads; writes get 307).
    #[schema(value_type = String, example = "leader")]
    role: Role,
    /// Logged events this node has not applied yet (0 on the leader).
    lag_events: u64,
    /// The last event this node has applied.
    applied_seq: u64,
    /// Whether the log is replicated (`--log nats://...`); a single node always leads.
    clustered: bool,
    /// The leader's advertised URL, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader_url: Option<String>,
}

/// This node's role and how far behind the log it is (always 200 while it answers).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "The node's role and lag", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> Json<Readiness> {
    Json(match &state.cluster {
        Some(cluster) => {
            let leadership = &cluster.leadership;
            Readiness {
                role: leadership.role(),
                lag_events: leadership.lag(),
                applied_seq: leadership.applied(),
                clustered: true,
                leader_url: leadership.leader_url(),
            }
        }
        None => Readiness {
            role: Role::Leader,
            lag_events: 0,
            applied_seq: state.feed.durable_seq(),
            clustered: false,
            leader_url: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_waiting_room_entries_go_to_the_leader() {
        assert!(leader_only(&Method::POST, "/api/v1/wallet/charges"));
        assert!(leader_only(&Method::DELETE, "/api/v1/reservations/x"));
        assert!(leader_only(&Method::GET, "/api/v1/concerts/1/queue"));
        assert!(leader_only(&Method::GET, "/api/v1/concerts/1/queue/stream"));
        assert!(!leader_only(
            &Method::GET,
            "/api/v1/concerts/1/dates/2/seats"
        ));
        assert!(!leader_only(&Method::GET, "/api/v1/wallet"));
        assert!(!leader_only(&Method::HEAD, "/api/v1/reservations"));
    }
}
