//! The counters and gauges metad exports on `/metrics`.

use axum::extract::State;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

use super::{ApiError, AppState};

/// Counters and histograms this metad exports.
pub struct Metrics {
    registry: Registry,
    pub(super) commands: Counter,
    pub(super) command_seconds: Histogram,
    pub(super) queries: Counter,
    /// Segments by class, layout and redundancy state.
    pub(super) segments: Family<Vec<(String, String)>, Gauge>,
    /// Nodes by state.
    pub(super) nodes: Family<Vec<(String, String)>, Gauge>,
    /// Data nodes by space state (ok, nearfull, full).
    pub(super) node_space: Family<Vec<(String, String)>, Gauge>,
    pub(super) repair_backlog_bytes: Gauge,
    pub(super) repair_tasks_in_flight: Gauge,
    pub(super) repair_finished: Counter,
    /// Commands waiting for the group-commit batcher (bounded queue).
    pub(super) commands_queued: Gauge,
    /// Lifecycle actions committed, skipped (the object changed since the
    /// scan) and failed.
    pub(super) lifecycle_done: Counter,
    pub(super) lifecycle_skipped: Counter,
    pub(super) lifecycle_failed: Counter,
    /// Access-key secrets by how they are kept: under the current master
    /// key, under a previous one, in clear, or unreadable (leader only).
    pub(super) secrets: Family<Vec<(String, String)>, Gauge>,
    /// 1 while resealing waits for a voter whose current master key is
    /// another (leader only).
    pub(super) reseal_waiting: Gauge,
    /// Bytes of cache copies (`weft warm`) per zone (leader only).
    pub(super) cache_bytes: Family<Vec<(String, String)>, Gauge>,
    /// Warms evicted to keep a zone's cache within its budget.
    pub(super) warm_evictions: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft_metad");
        let commands = Counter::default();
        let command_seconds = Histogram::new(exponential_buckets(0.0002, 2.0, 16));
        let queries = Counter::default();
        registry.register("commands", "Metadata commands committed", commands.clone());
        registry.register(
            "command_seconds",
            "Time to commit a command",
            command_seconds.clone(),
        );
        registry.register("queries", "Metadata queries answered", queries.clone());
        let segments = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "segments",
            "Segments by storage class, layout and redundancy (leader only)",
            segments.clone(),
        );
        let nodes = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("nodes", "Data nodes by state (leader only)", nodes.clone());
        let node_space = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "node_space",
            "Data nodes by space state: ok, nearfull, full (leader only)",
            node_space.clone(),
        );
        let repair_backlog_bytes = Gauge::default();
        registry.register(
            "repair_backlog_bytes",
            "Shard bytes repair must write to reach full redundancy",
            repair_backlog_bytes.clone(),
        );
        let repair_tasks_in_flight = Gauge::default();
        registry.register(
            "repair_tasks_in_flight",
            "Repair, drain and rebalance tasks handed out or queued",
            repair_tasks_in_flight.clone(),
        );
        let repair_finished = Counter::default();
        registry.register(
            "repair_tasks_finished",
            "Repair tasks reported finished by data nodes",
            repair_finished.clone(),
        );
        let commands_queued = Gauge::default();
        registry.register(
            "commands_queued",
            "Commands waiting for the group-commit batcher (bounded queue)",
            commands_queued.clone(),
        );
        let lifecycle_done = Counter::default();
        registry.register(
            "lifecycle_actions",
            "Lifecycle expirations, version removals and upload aborts committed (leader only)",
            lifecycle_done.clone(),
        );
        let lifecycle_skipped = Counter::default();
        registry.register(
            "lifecycle_skipped",
            "Lifecycle actions not applied because the object changed since the scan",
            lifecycle_skipped.clone(),
        );
        let lifecycle_failed = Counter::default();
        registry.register(
            "lifecycle_failed",
            "Lifecycle actions refused or not proposed",
            lifecycle_failed.clone(),
        );
        let secrets = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "secrets",
            "Access-key secrets by sealing: current, previous (sealed under a previous master key, being resealed), clear, unreadable (leader only)",
            secrets.clone(),
        );
        let reseal_waiting = Gauge::default();
        registry.register(
            "reseal_waiting",
            "1 while resealing secrets waits for a voter whose current master key differs from the leader's (leader only)",
            reseal_waiting.clone(),
        );
        let cache_bytes = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "cache_bytes",
            "Bytes of cache copies warmed into each zone (leader only)",
            cache_bytes.clone(),
        );
        let warm_evictions = Counter::default();
        registry.register(
            "warm_evictions",
            "Warms evicted to keep a zone's cache within its budget (leader only)",
            warm_evictions.clone(),
        );
        Metrics {
            registry,
            cache_bytes,
            warm_evictions,
            secrets,
            reseal_waiting,
            lifecycle_done,
            lifecycle_skipped,
            lifecycle_failed,
            commands_queued,
            commands,
            command_seconds,
            queries,
            segments,
            nodes,
            node_space,
            repair_backlog_bytes,
            repair_tasks_in_flight,
            repair_finished,
        }
    }
}

impl Metrics {
    /// The registry, for parts that export their own gauges (the space guard).
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

pub(super) async fn metrics(State(s): State<Arc<AppState>>) -> Result<String, ApiError> {
    s.metrics
        .commands_queued
        .set(i64::try_from(s.writes.queued()).unwrap_or(i64::MAX));
    let mut out = String::new();
    encode(&mut out, &s.metrics.registry).map_err(ApiError::internal)?;
    Ok(out)
}
