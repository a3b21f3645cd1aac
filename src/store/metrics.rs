//! [`StoreMetrics`]: what the write path and the snapshot replica measure, for
//! `/metrics`. Written by the log-writer and snapshot threads, read at scrape time.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The store's series.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Events per group commit (one write, one fsync).
    pub commit_batch_events: Histogram,
    /// How long each fdatasync of the log took.
    pub fsync_seconds: Histogram,
    /// Bytes appended to the log since start.
    pub log_bytes: Counter,
    /// How long each snapshot took to write (encode, write, fsync, rename).
    pub snapshot_seconds: Histogram,
    /// The size of the newest snapshot.
    pub snapshot_bytes: Gauge,
    /// Durable events not yet covered by a snapshot.
    pub events_since_snapshot: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            fsync_seconds: Histogram::new(exponential_buckets(25e-6, 2.0, 16)),
            log_bytes: Counter::default(),
            snapshot_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 14)),
            snapshot_bytes: Gauge::default(),
            events_since_snapshot: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// Adds the series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "boxoffice_commit_batch_events",
            "Events per group commit of the log (one write and one fsync)",
            self.commit_batch_events.clone(),
        );
        registry.register(
            "boxoffice_fsync_duration_seconds",
            "Duration of each fdatasync of the log",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "boxoffice_log_bytes",
            "Bytes appended to the log since start",
            self.log_bytes.clone(),
        );
        registry.register(
            "boxoffice_snapshot_duration_seconds",
            "Duration of each snapshot write (encode, write, fsync, rename)",
            self.snapshot_seconds.clone(),
        );
        registry.register(
            "boxoffice_snapshot_size_bytes",
            "Size of the newest snapshot",
            self.snapshot_bytes.clone(),
        );
        registry.register(
            "boxoffice_events_since_snapshot",
            "Durable events not yet covered by a snapshot",
            self.events_since_snapshot.clone(),
        );
    }
}
