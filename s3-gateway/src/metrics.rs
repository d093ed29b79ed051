//! Gateway metrics, served in Prometheus text format on the admin port.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
}

/// Everything the gateway counts.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Arc<Registry>,
    /// S3 requests by method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to response headers.
    pub request_seconds: Histogram,
    /// Object bytes accepted by PUT and UploadPart.
    pub bytes_written: Counter,
    /// Stripes decoded from parity on reads.
    pub degraded_reads: Counter,
    /// Shard reads that met bad blocks or a missing file, reported for repair.
    pub bad_shards_reported: Counter,
    /// Bad-shard reports not sent because too many were in flight.
    pub bad_shard_reports_dropped: Counter,
    /// Shard writes abandoned after the quorum was durable and the straggler
    /// grace passed (left to repair).
    pub put_stragglers: Counter,
    /// The shard release queues.
    pub release: crate::release::ReleaseMetrics,
    /// Reads noted for tiering by access.
    pub reads: crate::read_tracking::ReadTrackingMetrics,
    /// Where read bytes came from, hedges and the stripe cache.
    pub locality: crate::shard_costs::LocalityMetrics,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl GatewayMetrics {
    /// The gateway's metrics, with admission control's gauges when given.
    pub fn new(admission: Option<&crate::admission::Admission>) -> Self {
        let mut registry = Registry::with_prefix("weft_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let bytes_written = Counter::default();
        let degraded_reads = Counter::default();
        let bad_shards_reported = Counter::default();
        registry.register(
            "bad_shards_reported",
            "Shard reads that met bad blocks or a missing file, reported for repair",
            bad_shards_reported.clone(),
        );
        registry.register(
            "requests",
            "S3 requests by method and status",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time from request to response headers",
            request_seconds.clone(),
        );
        registry.register(
            "written_bytes",
            "Object bytes stored by PUT and UploadPart",
            bytes_written.clone(),
        );
        registry.register(
            "degraded_reads",
            "Stripes read by decoding parity",
            degraded_reads.clone(),
        );
        let bad_shard_reports_dropped = Counter::default();
        registry.register(
            "bad_shard_reports_dropped",
            "Bad-shard reports not sent because too many were in flight (scrub finds them)",
            bad_shard_reports_dropped.clone(),
        );
        let put_stragglers = Counter::default();
        registry.register(
            "put_stragglers",
            "Shard writes abandoned after the write quorum was durable (left to repair)",
            put_stragglers.clone(),
        );
        let release = crate::release::ReleaseMetrics::default();
        registry.register(
            "release_queued",
            "Released shards waiting in the per-node queues",
            release.queued.clone(),
        );
        registry.register(
            "release_sent",
            "Released shards handed to data nodes",
            release.sent.clone(),
        );
        registry.register(
            "release_dropped",
            "Released shards left to garbage collection (queue full or node unreachable)",
            release.dropped.clone(),
        );
        registry.register(
            "read_leases",
            "Reads holding a lease on the shards they read",
            release.leases.clone(),
        );
        let reads = crate::read_tracking::ReadTrackingMetrics::default();
        registry.register(
            "tiering_reads_noted",
            "Reads queued for metad's access times (at most one per version per resolution)",
            reads.noted.clone(),
        );
        registry.register(
            "tiering_reads_sent",
            "Reads metad recorded",
            reads.sent.clone(),
        );
        registry.register(
            "tiering_reads_dropped",
            "Reads not recorded: the pending map was full",
            reads.dropped.clone(),
        );
        registry.register(
            "tiering_read_batches_failed",
            "Batches of reads metad did not take (kept to retry)",
            reads.failed_batches.clone(),
        );
        let locality = crate::shard_costs::LocalityMetrics::default();
        locality.register(&mut registry);
        if let Some(a) = admission {
            a.register(&mut registry);
        }
        GatewayMetrics {
            locality,
            reads,
            registry: Arc::new(registry),
            bad_shard_reports_dropped,
            put_stragglers,
            release,
            requests,
            request_seconds,
            bytes_written,
            degraded_reads,
            bad_shards_reported,
        }
    }
}

impl GatewayMetrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
