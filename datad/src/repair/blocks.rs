//! Block repair ([`TaskMethod::Blocks`]): bad blocks of a shard this node
//! holds are re-verified, rebuilt from other shards of their stripes (or
//! copied from another replica) and rewritten in place; see the parent
//! module's docs for the whole story.

use super::{write_whole, RepairContext, RepairError};
use crate::error::ShardError;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use weft_client::DatadClientError;
use weft_common::damage::BlockDamage;
use weft_common::profile::Layout;
use weft_common::repair::{RepairTask, ShardSource};
use weft_common::rpc::{Command, CommandResult};
use weft_common::stripe::{Geometry, StripeCodec};
use weft_common::{SegmentId, ShardIndex};

/// A block repair: see the module docs. Returns the bytes written.
pub(super) async fn repair_blocks(
    ctx: &RepairContext,
    task: &RepairTask,
) -> Result<u64, RepairError> {
    let damage = task.damage.clone().ok_or(RepairError::NoBlocks)?;
    let segment = task.segment;
    let index = ShardIndex(task.index);
    let listed: Vec<u32> = damage.blocks(task.shard_len).collect();
    let check = ctx.store.check_blocks(segment, index, listed).await;
    let (written, unrepaired) = match check {
        Ok(c)
            if c.whole
                && c.header.data_len == task.shard_len
                && c.header.block_bytes == damage.block_bytes =>
        {
            if c.bad.is_empty() {
                // Good already: the rot was transient, or a reader saw a
                // block while an earlier repair rewrote it.
                tracing::debug!(%damage, "reported blocks verify; clearing the report");
                (0, vec![])
            } else {
                patch(ctx, task, &c.header, &c.bad).await?
            }
        }
        Ok(_) | Err(ShardError::CorruptHeader { .. }) => {
            tracing::warn!(%segment, %index, "shard file cannot be patched in place; rewriting it whole");
            (write_whole(ctx, task).await?, vec![])
        }
        Err(ShardError::NotFound { .. }) => {
            let cmd = Command::DropShard {
                segment,
                index: task.index,
                node: ctx.node,
            };
            ctx.metad
                .command(&cmd)
                .await
                .map_err(RepairError::ReportMissing)?;
            return Err(RepairError::MissingHere);
        }
        Err(e) => return Err(RepairError::VerifyLocal(e)),
    };
    let repaired = damage.subtract(&BlockDamage::from_blocks(
        damage.block_bytes,
        unrepaired.iter().copied(),
    ));
    if !repaired.is_empty() {
        let cmd = Command::DamageRepaired {
            segment,
            index: task.index,
            node: ctx.node,
            damage: repaired.clone(),
        };
        match ctx.metad.command(&cmd).await {
            Ok(CommandResult::Done) => {}
            Ok(other) => return Err(RepairError::RepairRefused(Box::new(other))),
            Err(e) => return Err(RepairError::Commit(e)),
        }
    }
    if !unrepaired.is_empty() {
        return Err(RepairError::Unrepaired {
            count: unrepaired.len(),
            blocks: BlockDamage::from_blocks(damage.block_bytes, unrepaired),
        });
    }
    tracing::info!(%segment, %index, %repaired, "bad blocks repaired");
    Ok(written)
}

/// Rebuilds the `bad` blocks of the local file and rewrites them in place.
/// Returns the bytes written and the blocks that could not be rebuilt.
async fn patch(
    ctx: &RepairContext,
    task: &RepairTask,
    header: &crate::shard_file::ShardHeader,
    bad: &[u32],
) -> Result<(u64, Vec<u32>), RepairError> {
    let segment = task.segment;
    let width = task.layout.width();
    let mut sources: Vec<ShardSource> = task
        .sources
        .iter()
        .filter(|s| s.index != task.index && s.node != ctx.node && usize::from(s.index) < width)
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    sources.retain(|s| seen.insert(s.index));
    let mut fixed: Vec<(u32, Bytes)> = vec![];
    let mut unrepaired: Vec<u32> = vec![];
    match task.layout {
        Layout::Erasure { k, m, unit_bytes } => {
            let (k, m, unit) = (usize::from(k), usize::from(m), u64::from(unit_bytes));
            let codec = Arc::new(StripeCodec::new(k, m)?);
            let geometry = Geometry::new(k, m, unit, task.len);
            if geometry.shard_len() != task.shard_len {
                return Err(RepairError::Geometry {
                    computed: geometry.shard_len(),
                    recorded: task.shard_len,
                });
            }
            // This shard's bytes of every stripe a bad block lies in.
            let stripes: BTreeSet<u64> = bad
                .iter()
                .flat_map(|b| {
                    let r = header.block_data(*b);
                    r.start / unit..=(r.end - 1) / unit
                })
                .collect();
            let mut rebuilt: BTreeMap<u64, (Range<u64>, Bytes)> = BTreeMap::new();
            for stripe in stripes {
                let span = geometry.stripe(stripe);
                let n = span.shard.end - span.shard.start;
                ctx.throttle.acquire(n * k as u64).await;
                let got = match fetch_k(ctx, segment, &sources, span.shard.clone(), k, width).await
                {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::warn!(%segment, index = task.index, stripe, error = %e, "cannot rebuild this stripe now");
                        continue;
                    }
                };
                let codec = codec.clone();
                let want = usize::from(task.index);
                let shard = weft_common::effects::spawn_blocking(move || {
                    codec.reconstruct_shard(got, want)
                })
                .await?
                .map_err(|cause| RepairError::StripeDecode { stripe, cause })?;
                rebuilt.insert(stripe, (span.shard, shard));
            }
            for &b in bad {
                let r = header.block_data(b);
                let mut block = Vec::with_capacity((r.end - r.start) as usize);
                for stripe in r.start / unit..=(r.end - 1) / unit {
                    let Some((shard_range, bytes)) = rebuilt.get(&stripe) else {
                        break;
                    };
                    let s = r.start.max(shard_range.start) - shard_range.start;
                    let e = r.end.min(shard_range.end) - shard_range.start;
                    block.extend_from_slice(&bytes[s as usize..e as usize]);
                }
                if block.len() as u64 == r.end - r.start {
                    fixed.push((b, block.into()));
                } else {
                    unrepaired.push(b);
                }
            }
        }
        Layout::Replicated { .. } => {
            for &b in bad {
                let r = header.block_data(b);
                ctx.throttle.acquire(r.end - r.start).await;
                let mut copy = None;
                for s in &sources {
                    match read_source(ctx, segment, s, r.clone()).await {
                        Ok(bytes) => {
                            copy = Some(bytes);
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "replica block unreadable; trying another")
                        }
                    }
                }
                match copy {
                    Some(bytes) => fixed.push((b, bytes)),
                    None => unrepaired.push(b),
                }
            }
        }
    }
    if fixed.is_empty() {
        return Ok((0, unrepaired));
    }
    let blocks: Vec<u32> = fixed.iter().map(|(b, _)| *b).collect();
    let bytes: u64 = fixed.iter().map(|(_, d)| d.len() as u64).sum();
    ctx.store
        .rewrite_blocks(segment, ShardIndex(task.index), task.shard_len, fixed)
        .await
        .map_err(RepairError::Rewrite)?;
    // Read back through the verified path before telling anyone.
    let check = ctx
        .store
        .check_blocks(segment, ShardIndex(task.index), blocks.clone())
        .await
        .map_err(RepairError::VerifyRewritten)?;
    if !check.bad.is_empty() {
        return Err(RepairError::RewrittenBad(check.bad));
    }
    ctx.metrics.repair_blocks.inc_by(blocks.len() as u64);
    Ok((bytes, unrepaired))
}

/// Reads `range` of one source shard; reports bad blocks it meets there.
async fn read_source(
    ctx: &RepairContext,
    segment: SegmentId,
    s: &ShardSource,
    range: Range<u64>,
) -> Result<Bytes, RepairError> {
    let index = ShardIndex(s.index);
    match ctx
        .datad
        .get_shard(
            &s.addr,
            segment,
            index,
            range.start,
            range.end - range.start,
        )
        .await
    {
        Ok(b) => Ok(b),
        Err(e) => {
            if let DatadClientError::Corrupt {
                damage: Some(damage),
                ..
            } = &e
            {
                // Repair reads are reads: what they find bad gets repaired too.
                let cmd = Command::ReportDamage {
                    segment,
                    index: s.index,
                    node: s.node,
                    damage: damage.clone(),
                };
                if let Err(e) = ctx.metad.command(&cmd).await {
                    tracing::debug!(error = %e, "could not report bad blocks of a source");
                }
            }
            Err(RepairError::Source {
                index: s.index,
                node: s.node,
                cause: e,
            })
        }
    }
}

/// Reads `range` from `k` of `sources` (more when some fail), as a stripe
/// of `width` shards for the codec.
async fn fetch_k(
    ctx: &RepairContext,
    segment: SegmentId,
    sources: &[ShardSource],
    range: Range<u64>,
    k: usize,
    width: usize,
) -> Result<Vec<Option<Bytes>>, RepairError> {
    let mut got: Vec<Option<Bytes>> = vec![None; width];
    let mut have = 0;
    let mut next = 0;
    let mut errors = vec![];
    while have < k && next < sources.len() {
        let batch = &sources[next..(next + k - have).min(sources.len())];
        next += batch.len();
        let results = futures::future::join_all(
            batch
                .iter()
                .map(|s| read_source(ctx, segment, s, range.clone())),
        )
        .await;
        for (s, r) in batch.iter().zip(results) {
            match r {
                Ok(b) => {
                    got[usize::from(s.index)] = Some(b);
                    have += 1;
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if have < k {
        return Err(RepairError::TooFewInRange {
            have,
            k,
            range,
            errors,
        });
    }
    Ok(got)
}
