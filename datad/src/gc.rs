//! The garbage collector: removes shard files metad no longer references.
//!
//! Shards become garbage when an upload never commits (client gone, gateway
//! crash), when an object or multipart upload is deleted or aborted and the
//! gateway's prompt delete did not happen, or when repair, drain or
//! rebalance moved a shard away. Rather than tracking each case, the
//! collector reconciles: for every file older than the grace period it asks
//! metad whether this node should hold it, and removes it if not. The grace
//! period protects uploads in flight, whose shards are written before their
//! manifest commits (the gateway refuses to commit an upload older than half
//! the grace). The grace comes from metad at every pass, the same config the
//! gateways' upload age comes from, so the two cannot disagree (see
//! `weft_common::upload_timers`). Removal re-checks the file's age under the
//! name lock, so a shard rewritten meanwhile by repair survives. A shard
//! the releaser is holding for its readers (or that was read within its
//! quiet period) is left to the releaser.

use crate::error::ShardError;
use crate::shard_store::ShardStore;
use crate::work_metrics::WorkMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_client::{MetadClient, MetadClientError};
use weft_common::rpc::{Query, QueryResult};
use weft_common::upload_timers::TimerError;
use weft_common::NodeId;

use crate::limits::GC_BATCH as BATCH;

/// Garbage collection schedule (the grace comes from metad).
#[derive(Clone, Copy, Debug)]
pub struct GcConfig {
    /// Time between passes.
    pub interval: Duration,
}

/// Why a collection pass was skipped. None is a reason to remove anything:
/// the next pass asks again. It is only logged, so each message carries its
/// cause's text.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// metad named timers that fail validation, such as a grace shorter
    /// than two upload ages.
    #[error("metad's upload timers are unsafe: {0}")]
    UnsafeTimers(TimerError),
    /// metad could not be asked for the upload timers.
    #[error("ask metad for gc_grace_ms: {0}")]
    Timers(MetadClientError),
    /// metad answered a query with something else.
    #[error("unexpected answer to {query}: {answer:?}")]
    UnexpectedAnswer {
        /// The query's name.
        query: &'static str,
        /// What came back.
        answer: Box<QueryResult>,
    },
    /// metad does not list this node: it may be a fresh or foreign metadata
    /// service, whose empty answers must not empty the node.
    #[error("this node is not registered with metad")]
    NotRegistered,
    /// A query to metad failed.
    #[error(transparent)]
    Metad(#[from] MetadClientError),
    /// The store could not be listed.
    #[error(transparent)]
    Store(#[from] ShardError),
}

/// metad's timers, validated again here: a pass with a grace shorter than
/// two upload ages could remove shards of uploads still in flight, so a
/// metad that answers with one (an old or misbuilt voter) gets no pass.
async fn grace_from_metad(metad: &MetadClient) -> Result<Duration, GcError> {
    match metad.query(&Query::UploadTimers).await {
        Ok(QueryResult::UploadTimers { timers }) => {
            timers.validate().map_err(GcError::UnsafeTimers)?;
            Ok(Duration::from_millis(timers.gc_grace_ms))
        }
        Ok(other) => Err(GcError::UnexpectedAnswer {
            query: "UploadTimers",
            answer: Box::new(other),
        }),
        Err(e) => Err(GcError::Timers(e)),
    }
}

/// Runs collection passes until cancelled.
pub async fn run(
    node: NodeId,
    store: Arc<ShardStore>,
    metad: MetadClient,
    metrics: WorkMetrics,
    cfg: GcConfig,
    releaser: Arc<crate::release::Releaser>,
    cancel: CancellationToken,
) {
    // The longest grace any metad voter has named since this node started:
    // voters answer from their own config, so while an operator changes it
    // (or if voters disagree) a shorter grace from one voter must not
    // collect an upload that a gateway, told a longer age by another, may
    // still commit. Only a restart forgets a longer grace.
    let mut longest = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = async {
                let grace = grace_from_metad(&metad).await?;
                if grace > longest {
                    longest = grace;
                } else if grace < longest {
                    tracing::debug!(?grace, ?longest, "metad names a shorter gc grace; keeping the longest seen");
                }
                pass(node, &store, &metad, longest, Some(&releaser)).await
            } => r,
        };
        match result {
            Ok(0) => {}
            Ok(n) => {
                metrics.gc_deleted.inc_by(n);
                tracing::info!(
                    removed = n,
                    "garbage collection removed unreferenced shards"
                );
            }
            Err(e) => tracing::debug!(error = %e, "garbage collection pass skipped"),
        }
    }
}

/// One pass; returns the number of files removed.
pub async fn pass(
    node: NodeId,
    store: &ShardStore,
    metad: &MetadClient,
    grace: Duration,
    releaser: Option<&crate::release::Releaser>,
) -> Result<u64, GcError> {
    // Only a node metad knows may collect: an empty or foreign metadata
    // service must not make a node delete everything it holds.
    match metad.query(&Query::Nodes).await {
        Ok(QueryResult::Nodes { nodes, .. }) if nodes.iter().any(|n| n.info.id == node) => {}
        Ok(_) => return Err(GcError::NotRegistered),
        Err(e) => return Err(e.into()),
    }
    let cutoff = weft_common::effects::now() - grace;
    let candidates = store.inventory(grace).await?;
    let mut removed = 0;
    for chunk in candidates.chunks(BATCH) {
        let q = Query::ShardsHeld {
            node,
            shards: chunk.iter().map(|(s, i)| (*s, i.0)).collect(),
        };
        let held = match metad.query(&q).await? {
            QueryResult::ShardsHeld { held } if held.len() == chunk.len() => held,
            other => {
                return Err(GcError::UnexpectedAnswer {
                    query: "ShardsHeld",
                    answer: Box::new(other),
                })
            }
        };
        for ((segment, index), held) in chunk.iter().zip(held) {
            // A released shard waiting for its readers goes when the
            // releaser says so, not before.
            if held || releaser.is_some_and(|r| r.holds(*segment, *index)) {
                continue;
            }
            match store.delete_unless_newer(*segment, *index, cutoff).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%segment, %index, error = %e, "could not remove garbage shard")
                }
            }
        }
    }
    Ok(removed)
}
