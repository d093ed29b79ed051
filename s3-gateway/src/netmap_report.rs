//! The gateway's share of the network cost map (docs/locality.md): every
//! few seconds it probes each data node's `/health` through the same
//! transport its reads use (so an emulated WAN shows), folds the round
//! trips into per-zone averages beside the throughput its real shard
//! fetches measured, and sends its figures to the metad leader. Bounded:
//! one probe at a time, at most [`PROBES_PER_ROUND`] a round.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_client::{DatadClient, MetadClient};
use weft_common::netmap::NetReport;

use crate::cluster_map::ClusterMap;
use crate::shard_costs::ShardCosts;

/// Most nodes probed in one round (the rest wait for later rounds).
pub const PROBES_PER_ROUND: usize = 64;
/// A probe that takes longer is abandoned (and not counted).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// What the probe-and-report loop needs.
pub struct Reporter {
    /// How often it measures and reports.
    pub round: Duration,
    /// The gateway's zone (the paths' origin).
    pub zone: String,
    /// How metad knows this gateway (its S3 address).
    pub reporter: String,
    /// The data nodes to probe.
    pub cluster: ClusterMap,
    /// Probes through the reads' transport.
    pub datad: DatadClient,
    /// Takes the reports.
    pub metad: MetadClient,
    /// The figures, shared with the read path.
    pub costs: ShardCosts,
    /// Segments the read path took from warm cache copies.
    pub cache_reads: crate::read_path::CacheReads,
}

/// Runs the probe-and-report loop until `cancel`.
pub fn spawn(r: Reporter, cancel: CancellationToken) {
    let Reporter {
        round,
        zone,
        reporter,
        cluster,
        datad,
        metad,
        costs,
        cache_reads,
    } = r;
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let nodes: Vec<(String, String)> = cluster
                .snapshot()
                .values()
                .filter(|n| n.readable())
                .map(|n| (n.info.addr.clone(), n.info.zone.clone()))
                .collect();
            // A rotating window, so every node is probed in turn however
            // many there are.
            for i in 0..nodes.len().min(PROBES_PER_ROUND) {
                let (addr, node_zone) = &nodes[(next + i) % nodes.len()];
                match tokio::time::timeout(PROBE_DEADLINE, datad.probe(addr)).await {
                    Ok(Ok(rtt)) => costs.record_probe(node_zone, rtt),
                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "netmap probe failed"),
                    Err(_) => tracing::debug!(%addr, "netmap probe timed out"),
                }
            }
            next = next.wrapping_add(PROBES_PER_ROUND);
            let report = NetReport {
                reporter: reporter.clone(),
                samples: costs.samples(&zone),
                zone: zone.clone(),
                cache_reads: cache_reads.take(),
            };
            if !report.samples.is_empty() || !report.cache_reads.is_empty() {
                if let Err(e) = metad.report_netmap(&report).await {
                    tracing::debug!(error = %e, "netmap report not taken; the next round retries");
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(round) => {}
            }
        }
    });
}
