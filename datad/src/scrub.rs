//! The scrubber: reads every shard file on a schedule through the verified
//! read path (crc32c per block, header checks) at a bounded rate, and turns
//! rot into repair work.
//!
//! Every block of every file is verified, and all the bad blocks a file has
//! are reported to metad in one `ReportDamage`; the planner then has this
//! node rewrite just those blocks in place. A file is never removed for rot:
//! its good blocks are what keeps the other stripes of its segment at full
//! redundancy. A bad header makes every block of the file bad (nothing in
//! it can be trusted), and a missing block of a truncated file is bad too.
//!
//! A file's damage is reported on every pass until it is repaired (reports
//! are idempotent, and a lost one is thus retried); a report metad refuses
//! as stale concerns a file it no longer expects here, which the garbage
//! collector removes. A report that cannot reach metad is retried at the
//! start of the next pass.

use crate::error::ShardError;
use crate::shard_file::SHARD_BLOCK_BYTES;
use crate::shard_store::ShardStore;
use crate::throttle::Throttle;
use crate::work_metrics::WorkMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::damage::BlockDamage;
use weft_common::rpc::Command;
use weft_common::{NodeId, SegmentId, ShardIndex};

use crate::limits::SCRUB_CHUNK_BLOCKS as CHUNK_BLOCKS;

/// Scrub schedule.
#[derive(Clone, Copy, Debug)]
pub struct ScrubConfig {
    /// A pass starts this long after the previous one started.
    pub period: Duration,
    /// Bytes verified per second.
    pub rate_bytes_per_sec: u64,
}

/// What the scrubber remembers between passes.
#[derive(Default)]
struct State {
    /// Reports metad did not take; sent again first thing next pass.
    unreported: Vec<Command>,
    /// Damage found on the last pass, by file: only damage beyond it is
    /// counted as new in the metrics.
    known: BTreeMap<(SegmentId, ShardIndex), BlockDamage>,
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
    let mut state = State::default();
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = pass(node, &store, &metad, &metrics, &throttle, &mut state) => {}
        }
        metrics.scrub_passes.inc();
        tokio::select! {
            biased;
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
    state: &mut State,
) {
    for cmd in std::mem::take(&mut state.unreported) {
        report(metad, cmd, &mut state.unreported).await;
    }
    let shards = match store.inventory(Duration::ZERO).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "scrub cannot list shard files");
            return;
        }
    };
    let mut known = BTreeMap::new();
    for (segment, index) in shards {
        match scan(store, segment, index, throttle, metrics).await {
            Ok(None) => {}
            Ok(Some(damage))
                if weft_common::failpoints::active(
                    weft_common::failpoints::Bug::WholeFileScrubDrop,
                ) =>
            {
                tracing::warn!(%segment, %index, %damage, "scrub found bad blocks; dropping the whole shard (re-introduced bug)");
                let _ = store.delete(segment, index).await;
            }
            Ok(Some(damage)) => {
                let seen = state
                    .known
                    .get(&(segment, index))
                    .is_some_and(|k| k.contains(&damage));
                if !seen {
                    metrics.scrub_corrupt.inc();
                    tracing::warn!(%segment, %index, %damage, "scrub found bad blocks; reporting them for repair");
                }
                let cmd = Command::ReportDamage {
                    segment,
                    index: index.0,
                    node,
                    damage: damage.clone(),
                };
                report(metad, cmd, &mut state.unreported).await;
                known.insert((segment, index), damage);
            }
            Err(ShardError::NotFound { .. }) => {} // deleted meanwhile
            Err(e) => tracing::warn!(%segment, %index, error = %e, "scrub could not read a shard"),
        }
    }
    state.known = known;
}

/// Verifies every block of one file, a chunk at a time at the scrub rate;
/// returns its bad blocks, if any.
async fn scan(
    store: &ShardStore,
    segment: SegmentId,
    index: ShardIndex,
    throttle: &Throttle,
    metrics: &WorkMetrics,
) -> Result<Option<BlockDamage>, ShardError> {
    let mut bad = vec![];
    let mut next = 0u64;
    loop {
        let first = u32::try_from(next).expect("block numbers fit u32");
        let chunk = first..first.saturating_add(CHUNK_BLOCKS);
        let check = match store.check_blocks(segment, index, chunk).await {
            Ok(c) => c,
            Err(e @ ShardError::CorruptHeader { .. }) => {
                tracing::warn!(%segment, %index, error = %e, "shard file header is bad");
                return Ok(Some(BlockDamage::whole(SHARD_BLOCK_BYTES)));
            }
            Err(e) => return Err(e),
        };
        bad.extend_from_slice(&check.bad);
        let count = check.header.block_count();
        let end = (next + u64::from(CHUNK_BLOCKS)).min(count);
        let bytes = (end.saturating_sub(next) * u64::from(check.header.block_bytes))
            .min(check.header.data_len);
        metrics.scrub_bytes.inc_by(bytes);
        throttle.acquire(bytes).await;
        if end >= count {
            return Ok(
                (!bad.is_empty()).then(|| BlockDamage::from_blocks(check.header.block_bytes, bad))
            );
        }
        next = end;
    }
}

async fn report(metad: &MetadClient, cmd: Command, unreported: &mut Vec<Command>) {
    // Any answer will do: `Done`, or `Stale` when metad no longer expects
    // the shard here (then it is garbage anyway).
    if let Err(e) = metad.command(&cmd).await {
        tracing::warn!(command = ?cmd, error = %e, "could not report bad shard blocks; will retry");
        unreported.push(cmd);
    }
}
