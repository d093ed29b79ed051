//! The scrubber: reads every shard file on a schedule through the verified
//! read path (crc32c per block, header checks) at a bounded rate, and turns
//! rot into repair work.
//!
//! A corrupt file is removed first (only if no newer file replaced it), then
//! metad is told the shard is gone (`DropShard`), so the planner rebuilds it
//! elsewhere. A report that cannot reach metad is retried on the next pass;
//! meanwhile reads that miss the file report it too.

use crate::error::ShardError;
use crate::shard_store::ShardStore;
use crate::throttle::Throttle;
use crate::work_metrics::WorkMetrics;
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use weft_common::metad_client::MetadClient;
use weft_common::rpc::Command;
use weft_common::{NodeId, SegmentId, ShardIndex};

/// Scrub schedule.
#[derive(Clone, Copy, Debug)]
pub struct ScrubConfig {
    /// A pass starts this long after the previous one started.
    pub period: Duration,
    /// Bytes verified per second.
    pub rate_bytes_per_sec: u64,
}

/// Runs scrub passes until cancelled.
pub async fn run(
    node: NodeId,
    store: Arc<ShardStore>,
    metad: MetadClient,
    metrics: WorkMetrics,
    cfg: ScrubConfig,
    cancel: CancellationToken,
) {
    let throttle = Throttle::new(cfg.rate_bytes_per_sec);
    let mut unreported: Vec<(SegmentId, ShardIndex)> = vec![];
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = pass(node, &store, &metad, &metrics, &throttle, &mut unreported) => {}
        }
        metrics.scrub_passes.inc();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(started + cfg.period) => {}
        }
    }
}

async fn pass(
    node: NodeId,
    store: &ShardStore,
    metad: &MetadClient,
    metrics: &WorkMetrics,
    throttle: &Throttle,
    unreported: &mut Vec<(SegmentId, ShardIndex)>,
) {
    for (segment, index) in std::mem::take(unreported) {
        report(node, metad, segment, index, unreported).await;
    }
    let shards = match store.inventory(Duration::ZERO).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "scrub cannot list shard files");
            return;
        }
    };
    for (segment, index) in shards {
        let began = SystemTime::now();
        match verify(store, segment, index, throttle, metrics).await {
            Ok(()) => {}
            Err(e) if e.is_corrupt() => {
                metrics.scrub_corrupt.inc();
                tracing::warn!(%segment, %index, error = %e, "scrub found a corrupt shard; removing it and asking for repair");
                match store.delete_unless_newer(segment, index, began).await {
                    Ok(_) => report(node, metad, segment, index, unreported).await,
                    Err(e) => tracing::warn!(error = %e, "could not remove the corrupt shard"),
                }
            }
            Err(ShardError::NotFound { .. }) => {} // deleted meanwhile
            Err(e) => tracing::warn!(%segment, %index, error = %e, "scrub could not read a shard"),
        }
    }
}

async fn verify(
    store: &ShardStore,
    segment: SegmentId,
    index: ShardIndex,
    throttle: &Throttle,
    metrics: &WorkMetrics,
) -> Result<(), ShardError> {
    let mut range = store.get(segment, index, 0, None).await?;
    while let Some(chunk) = range.body.next().await {
        let chunk = chunk?;
        metrics.scrub_bytes.inc_by(chunk.len() as u64);
        throttle.acquire(chunk.len() as u64).await;
    }
    Ok(())
}

async fn report(
    node: NodeId,
    metad: &MetadClient,
    segment: SegmentId,
    index: ShardIndex,
    unreported: &mut Vec<(SegmentId, ShardIndex)>,
) {
    let cmd = Command::DropShard {
        segment,
        index: index.0,
        node,
    };
    // Any answer will do: `Done`, or `Stale` when metad no longer expected
    // the shard here (then it was garbage anyway).
    if let Err(e) = metad.command(&cmd).await {
        tracing::warn!(%segment, %index, error = %e, "could not report a corrupt shard; will retry");
        unreported.push((segment, index));
    }
}
