//! Counters of datad's background work (repair, scrub, garbage collection),
//! exported beside the request metrics at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Cheap to clone: clones share the counters.
#[derive(Clone, Default)]
pub struct WorkMetrics {
    /// Shard bytes written by repair, drain and rebalance.
    pub repair_bytes: Counter,
    /// Shard bytes written as cache copies for warmed zones (`weft warm`).
    pub warm_bytes: Counter,
    /// Tasks committed.
    pub repair_tasks_ok: Counter,
    /// Tasks that failed (they are planned again).
    pub repair_tasks_failed: Counter,
    /// Bad blocks rewritten in place by block repairs.
    pub repair_blocks: Counter,
    /// Shard bytes read and verified by the scrubber.
    pub scrub_bytes: Counter,
    /// Shard files in which the scrubber found bad blocks (a file is counted
    /// again only if new blocks go bad, not on every pass until repaired).
    pub scrub_corrupt: Counter,
    /// Completed scrub passes.
    pub scrub_passes: Counter,
    /// Shard files the garbage collector removed.
    pub gc_deleted: Counter,
    /// Shard bytes written by committed transitions.
    pub transition_bytes: Counter,
    /// Transitions committed.
    pub transitions_ok: Counter,
    /// Transitions that failed (a later lifecycle pass offers them again).
    pub transitions_failed: Counter,
    /// TCP connections the server accepted: with pooled clients it grows
    /// with peers and pool churn, not with requests.
    pub connections_accepted: Counter,
}

impl WorkMetrics {
    /// Adds the counters to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_accepted",
            "TCP connections accepted by this node's server",
            self.connections_accepted.clone(),
        );
        registry.register(
            "repair_bytes",
            "Shard bytes written by repair, drain and rebalance",
            self.repair_bytes.clone(),
        );
        registry.register(
            "warm_bytes",
            "Shard bytes written as cache copies for zones a dataset is warmed into",
            self.warm_bytes.clone(),
        );
        registry.register(
            "repair_tasks_ok",
            "Repair tasks committed",
            self.repair_tasks_ok.clone(),
        );
        registry.register(
            "repair_tasks_failed",
            "Repair tasks that failed",
            self.repair_tasks_failed.clone(),
        );
        registry.register(
            "repair_blocks",
            "Bad shard blocks rewritten in place",
            self.repair_blocks.clone(),
        );
        registry.register(
            "transition_bytes",
            "Shard bytes written by committed storage-class transitions",
            self.transition_bytes.clone(),
        );
        registry.register(
            "transitions_ok",
            "Storage-class transitions committed",
            self.transitions_ok.clone(),
        );
        registry.register(
            "transitions_failed",
            "Storage-class transitions that failed",
            self.transitions_failed.clone(),
        );
        registry.register(
            "scrub_bytes",
            "Shard bytes verified by the scrubber",
            self.scrub_bytes.clone(),
        );
        registry.register(
            "scrub_corrupt",
            "Shard files in which the scrubber found bad blocks",
            self.scrub_corrupt.clone(),
        );
        registry.register(
            "scrub_passes",
            "Completed scrub passes",
            self.scrub_passes.clone(),
        );
        registry.register(
            "gc_deleted",
            "Unreferenced shard files removed",
            self.gc_deleted.clone(),
        );
    }
}
