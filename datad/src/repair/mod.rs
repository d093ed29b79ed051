//! The repair worker: pulls tasks from the metad leader, writes the shard
//! locally (copied from one holder, or rebuilt stripe by stripe from `k`
//! others), and commits the new placement with a compare-and-set.
//!
//! A block repair ([`TaskMethod::Blocks`]) is for a shard this node already
//! holds: it re-verifies the reported blocks, decodes the stripes the still
//! bad ones lie in from `k` other shards (trying further shards wherever one
//! is bad or missing in that stripe; for replicas, copies the blocks from
//! another copy), rewrites just those blocks in place with their crc, fsyncs,
//! and commits `DamageRepaired` for exactly the blocks it made good. A file
//! that cannot be patched (bad header, wrong length) is rewritten whole; a
//! missing one is released with `DropShard` for a rebuild elsewhere (the
//! `blocks` module).
//!
//! A warm task ([`TaskReason::Warm`]) writes the shard the same way but
//! commits `AddCacheCopy`: the file is an extra copy for this node's zone
//! (`weft warm`), and the placed holder keeps its own.
//!
//! The worker never deletes a shard it wrote when the commit is refused: the
//! refusal may mean an earlier attempt already committed it. Unreferenced
//! files are the garbage collector's job, which asks metad first.

use crate::shard_store::ShardStore;
use crate::throttle::Throttle;
use crate::work_metrics::WorkMetrics;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_client::DatadClient;
use weft_client::MetadClient;
use weft_common::profile::Layout;
use weft_common::repair::{
    RepairAssignment, RepairPoll, RepairTask, ShardSource, TaskMethod, TaskOutcome, TaskReason,
};
use weft_common::rpc::{Command, CommandResult};
use weft_common::stripe::{Geometry, StripeCodec};
use weft_common::{NodeId, ShardIndex};

use crate::limits::COPY_CHUNK_BYTES;

mod blocks;
mod error;

pub use error::RepairError;

/// What every task shares.
#[derive(Clone)]
pub struct RepairContext {
    /// This node.
    pub node: NodeId,
    /// Local shards.
    pub store: Arc<ShardStore>,
    /// For commits and polls.
    pub metad: MetadClient,
    /// For reading other nodes' shards.
    pub datad: DatadClient,
    /// Shared by all tasks of this node.
    pub throttle: Arc<Throttle>,
    /// Counters.
    pub metrics: WorkMetrics,
}

/// Polls for tasks every `poll_interval` (and whenever a task finishes)
/// and runs them, at most as many at once as metad's priority allows.
pub async fn run(ctx: RepairContext, poll_interval: Duration, cancel: CancellationToken) {
    let mut running: JoinSet<TaskOutcome> = JoinSet::new();
    let mut finished: Vec<TaskOutcome> = vec![];
    let mut slots: usize = 1;
    loop {
        let free = slots.saturating_sub(running.len());
        let poll = RepairPoll {
            node: ctx.node,
            free_slots: free as u32,
            finished: std::mem::take(&mut finished),
        };
        let reply: Result<RepairAssignment, _> = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                running.abort_all();
                return;
            }
            r = ctx.metad.call("/v1/repair/poll", &poll) => r,
        };
        match reply {
            Ok(a) => {
                ctx.throttle.set_rate(a.rate_bytes_per_sec);
                slots = (a.tasks_per_node as usize).max(1);
                for task in a.tasks {
                    let ctx = ctx.clone();
                    let span = tracing::info_span!("repair", segment = %task.segment, index = task.index, reason = ?task.reason);
                    running.spawn(async move { run_task(&ctx, task).await }.instrument(span));
                }
            }
            Err(e) => {
                // Keep the outcomes for the next poll.
                finished = poll.finished;
                tracing::debug!(error = %e, "repair poll failed; will retry");
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                running.abort_all();
                return;
            }
            _ = tokio::time::sleep(poll_interval) => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(outcome) = done {
                    finished.push(outcome);
                }
            }
        }
        while let Some(done) = running.try_join_next() {
            if let Ok(outcome) = done {
                finished.push(outcome);
            }
        }
    }
}

async fn run_task(ctx: &RepairContext, task: RepairTask) -> TaskOutcome {
    let result = execute(ctx, &task).await;
    match &result {
        Ok(bytes) => {
            if task.reason != TaskReason::Warm {
                ctx.metrics.repair_bytes.inc_by(*bytes);
            }
            ctx.metrics.repair_tasks_ok.inc();
            tracing::debug!(bytes, "shard rebuilt and committed");
        }
        Err(e) => {
            ctx.metrics.repair_tasks_failed.inc();
            tracing::info!(error = %e, segment = %task.segment, index = task.index, "repair task failed");
        }
    }
    TaskOutcome {
        segment: task.segment,
        index: task.index,
        ok: result.is_ok(),
        bytes: *result.as_ref().unwrap_or(&0),
        error: result.err().map(|e| e.to_string()),
        reason: Some(task.reason),
    }
}

/// Writes the shard and commits it; returns the bytes written.
pub async fn execute(ctx: &RepairContext, task: &RepairTask) -> Result<u64, RepairError> {
    if task.method == TaskMethod::Blocks {
        return blocks::repair_blocks(ctx, task).await;
    }
    let bytes = write_whole(ctx, task).await?;
    if task.reason == TaskReason::Warm {
        // A cache copy: an extra file beside the placed shards. Refused
        // (the segment went meanwhile) leaves it to garbage collection.
        let cmd = Command::AddCacheCopy {
            segment: task.segment,
            index: task.index,
            node: ctx.node,
        };
        return match ctx.metad.command(&cmd).await {
            Ok(CommandResult::Done) => {
                ctx.metrics.warm_bytes.inc_by(bytes);
                Ok(bytes)
            }
            Ok(other) => Err(RepairError::PlacementRefused(Box::new(other))),
            Err(e) => Err(RepairError::Commit(e)),
        };
    }
    let cmd = Command::MoveShard {
        segment: task.segment,
        index: task.index,
        from: task.from,
        to: ctx.node,
    };
    match ctx.metad.command(&cmd).await {
        Ok(CommandResult::Done) => {}
        Ok(other) => return Err(RepairError::PlacementRefused(Box::new(other))),
        Err(e) => return Err(RepairError::Commit(e)),
    }
    // A drained or rebalanced shard's old copy is now unreferenced; remove it
    // at once to give the space back (the garbage collector would, later).
    if task.reason != TaskReason::Repair {
        if let Some(old) = task
            .sources
            .iter()
            .find(|s| Some(s.node) == task.from && s.index == task.index)
        {
            if let Err(e) = ctx
                .datad
                .delete_shard(&old.addr, task.segment, ShardIndex(task.index))
                .await
            {
                tracing::debug!(error = %e, "old copy not removed; garbage collection will");
            }
        }
    }
    Ok(bytes)
}

/// Writes the whole shard into the local store (replacing any file there):
/// copied from a holder of the same shard, or rebuilt from `k` others.
async fn write_whole(ctx: &RepairContext, task: &RepairTask) -> Result<u64, RepairError> {
    let same: Vec<&ShardSource> = task
        .sources
        .iter()
        .filter(|s| s.node != ctx.node)
        .filter(|s| matches!(task.layout, Layout::Replicated { .. }) || s.index == task.index)
        .collect();
    let mut last_error = RepairError::NoSource;
    let mut written = None;
    if task.method == TaskMethod::Copy || matches!(task.layout, Layout::Replicated { .. }) {
        for src in same {
            match copy_from(ctx, task, src).await {
                Ok(n) => {
                    written = Some(n);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
    }
    if written.is_none() {
        if let Layout::Erasure { k, m, unit_bytes } = task.layout {
            written = Some(rebuild(ctx, task, k.into(), m.into(), unit_bytes.into()).await?);
        }
    }
    written.ok_or(last_error)
}

/// Streams the shard from `src` into the local store.
async fn copy_from(
    ctx: &RepairContext,
    task: &RepairTask,
    src: &ShardSource,
) -> Result<u64, RepairError> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let put = ctx.store.put(
        task.segment,
        ShardIndex(task.index),
        task.shard_len,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    );
    let feed = async {
        let mut off = 0u64;
        while off < task.shard_len {
            let n = COPY_CHUNK_BYTES.min(task.shard_len - off);
            ctx.throttle.acquire(n).await;
            let chunk = match ctx
                .datad
                .get_shard(&src.addr, task.segment, ShardIndex(src.index), off, n)
                .await
            {
                Ok(c) => c,
                Err(cause) => {
                    let e = RepairError::CopyFrom {
                        node: src.node,
                        cause,
                    };
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return Err(RepairError::WriterStopped);
            }
            off += n;
        }
        drop(tx);
        Ok(())
    };
    let (stored, fed) = tokio::join!(put, feed);
    fed?;
    stored.map_err(RepairError::Store)?;
    Ok(task.shard_len)
}

/// Rebuilds the shard from `k` others, one stripe at a time, and stores it.
async fn rebuild(
    ctx: &RepairContext,
    task: &RepairTask,
    k: usize,
    m: usize,
    unit: u64,
) -> Result<u64, RepairError> {
    let codec = Arc::new(StripeCodec::new(k, m)?);
    let geometry = Geometry::new(k, m, unit, task.len);
    if geometry.shard_len() != task.shard_len {
        return Err(RepairError::Geometry {
            computed: geometry.shard_len(),
            recorded: task.shard_len,
        });
    }
    let mut pool: Vec<ShardSource> = task
        .sources
        .iter()
        .filter(|s| s.index != task.index && s.node != ctx.node)
        .cloned()
        .collect();
    pool.dedup_by_key(|s| s.index);
    if pool.len() < k {
        return Err(RepairError::TooFewSources {
            readable: pool.len(),
            k,
        });
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let put = ctx.store.put(
        task.segment,
        ShardIndex(task.index),
        task.shard_len,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    );
    let feed = async {
        let mut active: Vec<ShardSource> = pool.drain(..k).collect();
        for stripe in 0..geometry.stripe_count() {
            let span = geometry.stripe(stripe);
            let n = span.shard.end - span.shard.start;
            ctx.throttle.acquire(n).await;
            let mut got: Vec<Option<Bytes>> = vec![None; k + m];
            let fetches = active.iter().map(|s| {
                ctx.datad.get_shard(
                    &s.addr,
                    task.segment,
                    ShardIndex(s.index),
                    span.shard.start,
                    n,
                )
            });
            let results = futures::future::join_all(fetches).await;
            let mut failed = vec![];
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(b) => got[usize::from(active[i].index)] = Some(b),
                    Err(e) => failed.push((i, e)),
                }
            }
            // Swap each failed source for a spare, for this and later stripes.
            for (i, why) in failed {
                let mut replaced = false;
                while let Some(spare) = pool.pop() {
                    if let Ok(b) = ctx
                        .datad
                        .get_shard(
                            &spare.addr,
                            task.segment,
                            ShardIndex(spare.index),
                            span.shard.start,
                            n,
                        )
                        .await
                    {
                        got[usize::from(spare.index)] = Some(b);
                        active[i] = spare;
                        replaced = true;
                        break;
                    }
                }
                if !replaced {
                    let e = RepairError::StripeUnreadable { stripe, cause: why };
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            }
            let codec = codec.clone();
            let want = usize::from(task.index);
            let rebuilt =
                weft_common::effects::spawn_blocking(move || codec.reconstruct_shard(got, want))
                    .await
                    .map_err(RepairError::from)
                    .and_then(|r| r.map_err(RepairError::from));
            let rebuilt = match rebuilt {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            };
            if tx.send(Ok(rebuilt)).await.is_err() {
                return Err(RepairError::WriterStopped);
            }
        }
        drop(tx);
        Ok(())
    };
    let (stored, fed) = tokio::join!(put, feed);
    fed?;
    stored.map_err(RepairError::Store)?;
    Ok(task.shard_len)
}
