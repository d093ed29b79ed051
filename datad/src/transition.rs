//! The transition worker: takes moves between storage classes from the
//! metad leader (`POST /v1/transition/poll`), re-encodes each segment into
//! the target class's layout on the nodes the task names, and commits the
//! new placement with `TransitionVersion` (metad's `transition` module has
//! the design).
//!
//! Per segment it reads the old stripes from `k` shards (falling back to
//! others where one fails), decodes them, cuts the bytes into the new
//! layout's stripes, encodes and streams each new shard to its node, so
//! memory is about one old and one new stripe whatever the object size.
//! The new segment is kept only if its write quorum became durable. When
//! every segment was re-encoded, the bytes read are checked against the
//! object's crc32c before anything is committed.
//!
//! After the commit the old shards are released with a hold, so reads that
//! resolved the old manifest finish first. When the commit is refused (the
//! version changed first) the new shards are deleted at once: the refusal
//! is certain, as metad answers a retried request with its first answer.
//! When the outcome is unknown nothing is deleted; unreferenced shards are
//! the garbage collector's.

use crate::throttle::Throttle;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_client::{DatadClient, MetadClient};
use weft_common::manifest::Segment;
use weft_common::profile::Layout;
use weft_common::repair::ShardSource;
use weft_common::rpc::{Command, CommandResult, ShardRef};
use weft_common::stripe::{Geometry, StripeCodec};
use weft_common::transition::{
    SegmentMove, TransitionAssignment, TransitionOutcome, TransitionPoll, TransitionTask,
};
use weft_common::{NodeId, ShardIndex};

/// Concurrent transition tasks per data node.
const TASKS_PER_NODE: usize = 1;

/// Why a transition task failed.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// An old stripe could not be read from any `k` shards.
    #[error("segment {segment}: stripe {stripe} unreadable: {cause}")]
    Unreadable {
        /// Segment.
        segment: weft_common::SegmentId,
        /// Stripe.
        stripe: u64,
        /// The last error.
        cause: String,
    },
    /// Fewer new shards became durable than the write quorum.
    #[error("segment {segment}: only {written} of {quorum} new shards written: {why}")]
    BelowQuorum {
        /// The new segment.
        segment: weft_common::SegmentId,
        /// Shards written.
        written: usize,
        /// Needed.
        quorum: usize,
        /// The first failure.
        why: String,
    },
    /// The bytes read do not match the object's checksum: nothing was
    /// committed.
    #[error("the bytes read have crc32c {got:08x}, the object {want:08x}; nothing committed")]
    Checksum {
        /// Computed.
        got: u32,
        /// Recorded.
        want: u32,
    },
    /// The shards took longer than the upload age to write: garbage
    /// collection may already have taken some, so nothing is committed.
    #[error(
        "writing took {took:?}, longer than upload_max_age_ms ({max_age:?}); nothing committed"
    )]
    TooSlow {
        /// How long.
        took: Duration,
        /// The limit.
        max_age: Duration,
    },
    /// The task does not describe a move this worker can make.
    #[error("malformed task: {0}")]
    Malformed(String),
    /// metad could not be asked for the upload age.
    #[error("ask metad for upload_max_age_ms: {0}")]
    Timers(weft_client::MetadClientError),
    /// The commit's outcome is unknown.
    #[error("commit: {0}")]
    Commit(weft_client::MetadClientError),
    /// The commit was refused.
    #[error("commit refused: {0:?}")]
    Refused(Box<CommandResult>),
    /// The commit was refused after an attempt whose outcome is unknown.
    #[error("commit refused after an attempt with an unknown outcome (shards kept for garbage collection): {0:?}")]
    RefusedAfterUnknown(Box<CommandResult>),
}

/// What every task shares.
#[derive(Clone)]
pub struct TransitionContext {
    /// This node.
    pub node: NodeId,
    /// For polls and commits.
    pub metad: MetadClient,
    /// For reading old shards and writing new ones.
    pub datad: DatadClient,
    /// Transition bytes per second on this node.
    pub throttle: Arc<Throttle>,
    /// Counters.
    pub metrics: crate::work_metrics::WorkMetrics,
}

/// Polls for tasks every `poll_interval` (and whenever one finishes).
pub async fn run(ctx: TransitionContext, poll_interval: Duration, cancel: CancellationToken) {
    let mut running: JoinSet<TransitionOutcome> = JoinSet::new();
    let mut finished: Vec<TransitionOutcome> = vec![];
    loop {
        let poll = TransitionPoll {
            node: ctx.node,
            free_slots: TASKS_PER_NODE.saturating_sub(running.len()) as u32,
            finished: std::mem::take(&mut finished),
        };
        let reply: Result<TransitionAssignment, _> = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                running.abort_all();
                return;
            }
            r = ctx.metad.call("/v1/transition/poll", &poll) => r,
        };
        match reply {
            Ok(a) => {
                ctx.throttle.set_rate(a.rate_bytes_per_sec);
                for task in a.tasks {
                    let ctx = ctx.clone();
                    let span = tracing::info_span!("transition", bucket = %task.bucket, key = %task.key, to = %task.to_class);
                    running.spawn(async move { run_task(&ctx, task).await }.instrument(span));
                }
            }
            Err(e) => {
                finished = poll.finished;
                tracing::debug!(error = %e, "transition poll failed; will retry");
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
                if let Ok(o) = done {
                    finished.push(o);
                }
            }
        }
        while let Some(done) = running.try_join_next() {
            if let Ok(o) = done {
                finished.push(o);
            }
        }
    }
}

async fn run_task(ctx: &TransitionContext, task: TransitionTask) -> TransitionOutcome {
    let result = execute(ctx, &task).await;
    let superseded = matches!(&result, Err(TransitionError::Refused(_)));
    match &result {
        Ok(bytes) => {
            ctx.metrics.transition_bytes.inc_by(*bytes);
            ctx.metrics.transitions_ok.inc();
            tracing::info!(bytes, "transition committed");
        }
        Err(e) if superseded => tracing::info!(error = %e, "transition superseded"),
        Err(e) => {
            ctx.metrics.transitions_failed.inc();
            tracing::warn!(error = %e, "transition failed");
        }
    }
    TransitionOutcome {
        id: task.id,
        ok: result.is_ok(),
        superseded,
        bytes: *result.as_ref().unwrap_or(&0),
        error: result.err().map(|e| e.to_string()),
    }
}

/// Writes the new segments, commits, then releases the old shards; returns
/// the shard bytes written.
pub async fn execute(
    ctx: &TransitionContext,
    task: &TransitionTask,
) -> Result<u64, TransitionError> {
    // Shards written for a commit that comes later than the upload age
    // could already be collected as garbage: the same limit as a PUT's.
    let started = tokio::time::Instant::now();
    let max_age = match ctx
        .metad
        .query(&weft_common::rpc::Query::UploadTimers)
        .await
    {
        Ok(weft_common::rpc::QueryResult::UploadTimers { timers }) => {
            Duration::from_millis(timers.upload_max_age_ms)
        }
        Ok(other) => {
            return Err(TransitionError::Malformed(format!(
                "metad answered the upload timers with {other:?}"
            )))
        }
        Err(e) => return Err(TransitionError::Timers(e)),
    };
    let mut written: Vec<(String, weft_common::SegmentId, u8)> = vec![];
    let mut pairs = vec![];
    let mut bytes = 0u64;
    let every = task.segments.iter().all(|m| !m.is_relabel());
    let mut crc = 0u32;
    for m in &task.segments {
        if m.is_relabel() {
            pairs.push((m.old, m.new.clone()));
            continue;
        }
        match move_segment(ctx, m, &mut crc).await {
            Ok((segment, files, n)) => {
                written.extend(files);
                bytes += n;
                pairs.push((m.old, segment));
            }
            Err(e) => {
                delete(ctx, &written).await;
                return Err(e);
            }
        }
    }
    if started.elapsed() > max_age {
        delete(ctx, &written).await;
        return Err(TransitionError::TooSlow {
            took: started.elapsed(),
            max_age,
        });
    }
    if every && crc != task.crc32c {
        delete(ctx, &written).await;
        return Err(TransitionError::Checksum {
            got: crc,
            want: task.crc32c,
        });
    }
    let cmd = Command::TransitionVersion {
        bucket: task.bucket.clone(),
        key: task.key.clone(),
        version_id: task.version_id,
        from_class: task.from_class.clone(),
        to_class: task.to_class.clone(),
        segments: pairs,
        step: task.step.clone(),
        at_ms: task.at_ms,
    };
    match ctx.metad.command_outcome(&cmd).await {
        Ok(c) => match c.result {
            CommandResult::Released { segments } => {
                release_old(ctx, task, &segments).await;
                Ok(bytes)
            }
            // A refusal answered to a retry whose first attempt's outcome
            // was unknown may hide a commit that did apply: the shards stay
            // (garbage collection removes them if they are unreferenced).
            other if c.after_unknown => Err(TransitionError::RefusedAfterUnknown(Box::new(other))),
            other => {
                delete(ctx, &written).await;
                Err(TransitionError::Refused(Box::new(other)))
            }
        },
        // Perhaps committed: the shards stay (garbage collection removes
        // them if it was not).
        Err(e) => Err(TransitionError::Commit(e)),
    }
}

/// Releases the shards of the replaced segments, held for their readers.
async fn release_old(ctx: &TransitionContext, task: &TransitionTask, released: &[Segment]) {
    let mut by_node: std::collections::BTreeMap<NodeId, Vec<ShardRef>> = Default::default();
    for s in released {
        for (i, n) in s.shards.iter().enumerate() {
            if let Some(n) = n {
                by_node.entry(*n).or_default().push(ShardRef {
                    segment: s.id,
                    index: i as u8,
                });
            }
        }
    }
    let addr = |node: NodeId| {
        task.segments
            .iter()
            .flat_map(|m| m.sources.iter())
            .find(|s| s.node == node)
            .map(|s| s.addr.clone())
    };
    for (node, shards) in by_node {
        let Some(a) = addr(node) else { continue };
        for batch in shards.chunks(weft_common::rpc::SHARD_RELEASE_BATCH_MAX) {
            let held = weft_common::rpc::ShardReleaseBatch {
                shards: batch.to_vec(),
                hold: true,
                // No gateway's read lease covers a read that resolved the
                // old manifest: keep them the longest hold.
                hold_full: true,
            };
            if let Err(e) = ctx.datad.release_batch(&a, &held).await {
                tracing::debug!(error = %e, %node, "old shards not released; garbage collection will");
            }
        }
    }
}

/// Deletes new shards no committed version refers to.
async fn delete(ctx: &TransitionContext, written: &[(String, weft_common::SegmentId, u8)]) {
    for (addr, segment, index) in written {
        if let Err(e) = ctx
            .datad
            .delete_shard(addr, *segment, ShardIndex(*index))
            .await
        {
            tracing::debug!(error = %e, "new shard not removed; garbage collection will");
        }
    }
}

/// Reads the old stripes in turn, from `k` sources with spares.
/// Bytes of a replicated segment read per step.
const REPLICA_CHUNK: u64 = 1 << 20;

struct OldReader<'a> {
    ctx: &'a TransitionContext,
    m: &'a SegmentMove,
    /// Erasure coded: the codec and geometry; replicas: none (every copy
    /// holds the bytes, read in [`REPLICA_CHUNK`] steps).
    ec: Option<(Arc<StripeCodec>, Geometry)>,
    width: usize,
    active: Vec<ShardSource>,
    spares: Vec<ShardSource>,
}

impl<'a> OldReader<'a> {
    fn new(ctx: &'a TransitionContext, m: &'a SegmentMove) -> Result<Self, TransitionError> {
        let (ec, k, width) = match m.old_layout {
            Layout::Erasure {
                k,
                m: parity,
                unit_bytes,
            } => {
                let (k, parity) = (usize::from(k), usize::from(parity));
                let geometry = Geometry::new(k, parity, unit_bytes.into(), m.new.len);
                if geometry.shard_len() != m.old_shard_len {
                    return Err(TransitionError::Malformed(format!(
                        "segment {}: shard length {} recorded, {} computed",
                        m.old,
                        m.old_shard_len,
                        geometry.shard_len()
                    )));
                }
                let codec = StripeCodec::new(k, parity)
                    .map_err(|e| TransitionError::Malformed(e.to_string()))?;
                (Some((Arc::new(codec), geometry)), k, k + parity)
            }
            Layout::Replicated { copies } => {
                if m.old_shard_len != m.new.len {
                    return Err(TransitionError::Malformed(format!(
                        "segment {}: a copy of {} bytes for {} bytes of data",
                        m.old, m.old_shard_len, m.new.len
                    )));
                }
                (None, 1, usize::from(copies))
            }
        };
        let mut pool = m.sources.clone();
        pool.sort_by_key(|s| s.index);
        pool.dedup_by_key(|s| s.index);
        if pool.len() < k {
            return Err(TransitionError::Unreadable {
                segment: m.old,
                stripe: 0,
                cause: format!("{} readable shards, {k} needed", pool.len()),
            });
        }
        let active: Vec<ShardSource> = pool.drain(..k).collect();
        pool.reverse();
        Ok(OldReader {
            ctx,
            m,
            ec,
            width,
            active,
            spares: pool,
        })
    }

    /// The next step's bytes (`stripe` counts from 0).
    async fn stripe(&mut self, stripe: u64) -> Result<Bytes, TransitionError> {
        let (start, n, data_len) = match &self.ec {
            Some((_, geometry)) => {
                let span = geometry.stripe(stripe);
                (
                    span.shard.start,
                    span.shard.end - span.shard.start,
                    (span.data.end - span.data.start) as usize,
                )
            }
            None => {
                let start = stripe * REPLICA_CHUNK;
                let n = REPLICA_CHUNK.min(self.m.new.len.saturating_sub(start));
                (start, n, n as usize)
            }
        };
        let unreadable = |cause: String| TransitionError::Unreadable {
            segment: self.m.old,
            stripe,
            cause,
        };
        let mut got: Vec<Option<Bytes>> = vec![None; self.width];
        let fetches = self.active.iter().map(|s| {
            self.ctx
                .datad
                .get_shard(&s.addr, self.m.old, ShardIndex(s.index), start, n)
        });
        let results = futures::future::join_all(fetches).await;
        let mut failed = vec![];
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(b) => got[usize::from(self.active[i].index)] = Some(b),
                Err(e) => failed.push((i, e.to_string())),
            }
        }
        for (i, why) in failed {
            let mut replaced = false;
            while let Some(spare) = self.spares.pop() {
                if let Ok(b) = self
                    .ctx
                    .datad
                    .get_shard(&spare.addr, self.m.old, ShardIndex(spare.index), start, n)
                    .await
                {
                    got[usize::from(spare.index)] = Some(b);
                    self.active[i] = spare;
                    replaced = true;
                    break;
                }
            }
            if !replaced {
                return Err(unreadable(why));
            }
        }
        let Some((codec, _)) = &self.ec else {
            // A copy holds the bytes as they are.
            return got
                .into_iter()
                .flatten()
                .next()
                .ok_or_else(|| unreadable("no copy read".into()));
        };
        let codec = codec.clone();
        weft_common::effects::spawn_blocking(move || codec.decode(got, data_len))
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .map_err(|e| unreadable(e.to_string()))
    }
}

/// Re-encodes one segment onto its new nodes; returns the new segment (its
/// failed slots empty), the files written and the shard bytes written.
async fn move_segment(
    ctx: &TransitionContext,
    m: &SegmentMove,
    crc: &mut u32,
) -> Result<(Segment, Vec<(String, weft_common::SegmentId, u8)>, u64), TransitionError> {
    let mut reader = OldReader::new(ctx, m)?;
    let new = &m.new;
    let Layout::Erasure {
        k,
        m: parity,
        unit_bytes,
    } = new.layout
    else {
        return Err(TransitionError::Malformed(
            "transitions write erasure-coded segments only".into(),
        ));
    };
    let (k, parity) = (usize::from(k), usize::from(parity));
    let geometry = Geometry::new(k, parity, unit_bytes.into(), new.len);
    if geometry.shard_len() != new.shard_len || m.targets.len() != k + parity {
        return Err(TransitionError::Malformed(format!(
            "new segment {}: geometry does not match the task",
            new.id
        )));
    }
    let codec = Arc::new(
        StripeCodec::new(k, parity).map_err(|e| TransitionError::Malformed(e.to_string()))?,
    );
    // One streamed PUT per target, queue depth 2.
    let mut senders: Vec<Option<mpsc::Sender<Result<Bytes, std::io::Error>>>> = vec![];
    let mut puts = vec![];
    for (i, addr) in m.targets.iter().enumerate() {
        let Some(addr) = addr.clone() else {
            senders.push(None);
            continue;
        };
        let (tx, rx) = mpsc::channel(2);
        senders.push(Some(tx));
        let client = ctx.datad.clone();
        let (id, len) = (new.id, new.shard_len);
        puts.push(async move {
            let r = client
                .put_shard(
                    &addr,
                    id,
                    ShardIndex(i as u8),
                    len,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )
                .await;
            (i, addr, r)
        });
    }
    let quorum = new.layout.write_quorum();
    // Moved in: when the feed ends, early or not, every stream ends.
    let feed = async move {
        let mut pending = BytesMut::new();
        let mut next_old = 0u64;
        for stripe in 0..geometry.stripe_count() {
            let span = geometry.stripe(stripe);
            let want = (span.data.end - span.data.start) as usize;
            while pending.len() < want {
                let data = reader.stripe(next_old).await?;
                next_old += 1;
                *crc = crc32c::crc32c_append(*crc, &data);
                pending.extend_from_slice(&data);
            }
            let data = pending.split_to(want).freeze();
            let c = codec.clone();
            let pieces = weft_common::effects::spawn_blocking(move || c.encode(&data))
                .await
                .map_err(|e| TransitionError::Malformed(e.to_string()))?;
            // At least 1 MiB/s per shard stream, so no shard PUT outlasts
            // its deadline (60 s plus its length at 1 MiB/s).
            let floor = (pieces.len() as u64) << 20;
            if ctx.throttle.rate() < floor {
                ctx.throttle.set_rate(floor);
            }
            ctx.throttle
                .acquire(pieces.iter().map(|p| p.len() as u64).sum())
                .await;
            for (i, piece) in pieces.into_iter().enumerate() {
                if let Some(tx) = &senders[i] {
                    if tx.send(Ok(piece)).await.is_err() {
                        // That PUT failed; its slot stays empty.
                        senders[i] = None;
                    }
                }
            }
            if senders.iter().flatten().count() < quorum {
                break;
            }
        }
        senders.clear();
        Ok::<(), TransitionError>(())
    };
    let (fed, results) = tokio::join!(feed, futures::future::join_all(puts));
    let mut shards = vec![None; k + parity];
    let mut files = vec![];
    let mut first_error = None;
    for (i, addr, r) in results {
        match r {
            Ok(_) => {
                shards[i] = new.shards[i];
                files.push((addr, new.id, i as u8));
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Err(e) = fed {
        delete(ctx, &files).await;
        return Err(e);
    }
    if files.len() < quorum {
        delete(ctx, &files).await;
        return Err(TransitionError::BelowQuorum {
            segment: new.id,
            written: files.len(),
            quorum,
            why: first_error.unwrap_or_else(|| "no target".into()),
        });
    }
    let bytes = files.len() as u64 * new.shard_len;
    Ok((
        Segment {
            shards,
            ..new.clone()
        },
        files,
        bytes,
    ))
}
