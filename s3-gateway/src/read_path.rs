//! The read path: fetch only the stripes and shards a range needs, data
//! shards first; on a missing node, a failed read or a crc32c mismatch,
//! fetch the whole stripe from the surviving shards and decode with parity.
//!
//! A shard with bad blocks is bad only where those blocks are: the read
//! reports the blocks the datad named (`ReportDamage`) and goes on using the
//! shard for every other stripe. Only a missing file drops the shard
//! (`DropShard`).

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use std::ops::Range;
use tokio::sync::mpsc;
use weft_common::manifest::{ObjectVersion, Segment};
use weft_common::profile::Layout;
use weft_common::stripe::Geometry;
use weft_common::{NodeId, ShardIndex};

use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::Semaphore;
use weft_client::datad::{DatadClient, DatadClientError};
use weft_client::MetadClient;

use crate::cluster_map::ClusterMap;
use crate::codecs::Codecs;
use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;
use crate::release::ReadLease;

pub use crate::limits::BAD_SHARD_REPORTS_MAX;

/// Reads objects back from their shards, decoding around missing or bad
/// ones and reporting those to metad. Holds only what reading needs; cheap
/// to clone.
#[derive(Clone)]
pub struct ObjectReader {
    /// Where each shard's node is, and whether it is up.
    cluster: ClusterMap,
    /// Fetches the shards.
    datad: DatadClient,
    /// Decoders, shared with the write path.
    codecs: Codecs,
    /// Takes the bad-shard reports.
    metad: MetadClient,
    /// Bounds the bad-shard reports in flight.
    report_slots: Arc<Semaphore>,
    /// Stripes decoded from parity on reads.
    degraded_reads: Counter,
    /// Bad-shard reports sent.
    bad_shards_reported: Counter,
    /// Bad-shard reports dropped because too many were in flight.
    bad_shard_reports_dropped: Counter,
}

/// Why one shard could not be read; the read goes on from the others, and
/// names this only if they fail too.
#[derive(Debug, Error)]
pub enum ShardReadError {
    /// The segment was committed without this shard.
    #[error("shard {index} was never written")]
    NeverWritten {
        /// The shard.
        index: usize,
    },
    /// The cluster map does not have the shard's node.
    #[error("shard {index}: node {node} unknown")]
    UnknownNode {
        /// The shard.
        index: usize,
        /// Its node.
        node: NodeId,
    },
    /// The cluster map has the shard's node down.
    #[error("shard {index}: node {node} is down")]
    NodeDown {
        /// The shard.
        index: usize,
        /// Its node.
        node: NodeId,
    },
    /// The node did not return the shard's bytes.
    #[error("shard {index} on {node}: {source}")]
    Failed {
        /// The shard.
        index: usize,
        /// Its node.
        node: NodeId,
        /// What the node answered.
        source: DatadClientError,
    },
}

/// Bytes of the object a piece covers and the piece itself.
pub type Piece = Result<Bytes, GatewayError>;

impl ObjectReader {
    /// A reader counting into `metrics`.
    pub fn new(
        cluster: ClusterMap,
        datad: DatadClient,
        codecs: Codecs,
        metad: MetadClient,
        metrics: &GatewayMetrics,
    ) -> Self {
        ObjectReader {
            cluster,
            datad,
            codecs,
            metad,
            report_slots: Arc::new(Semaphore::new(BAD_SHARD_REPORTS_MAX)),
            degraded_reads: metrics.degraded_reads.clone(),
            bad_shards_reported: metrics.bad_shards_reported.clone(),
            bad_shard_reports_dropped: metrics.bad_shard_reports_dropped.clone(),
        }
    }

    /// Streams `range` of `version` into a bounded channel. The first piece
    /// is fetched before this returns, so a wholly unreadable object fails
    /// with a clean error instead of a truncated body.
    ///
    /// `lease` (taken before the version was resolved) lives as long as the
    /// stream, so the version's shards are not released under it.
    pub async fn read_object(
        &self,
        version: &ObjectVersion,
        range: Range<u64>,
        lease: ReadLease,
    ) -> Result<mpsc::Receiver<Piece>, GatewayError> {
        let mut plan: Vec<(Segment, Range<u64>)> = Vec::new();
        for seg in &version.segments {
            let seg_range = seg.offset..seg.offset + seg.len;
            let start = range.start.max(seg_range.start);
            let end = range.end.min(seg_range.end);
            if start < end {
                plan.push((seg.clone(), (start - seg.offset)..(end - seg.offset)));
            }
        }
        let (tx, rx) = mpsc::channel::<Piece>(2);
        let mut steps: Vec<(Segment, Range<u64>)> = Vec::new();
        for (seg, r) in plan {
            match seg.layout {
                Layout::Replicated { .. } => steps.push((seg, r)),
                Layout::Erasure { k, m, unit_bytes } => {
                    let g = Geometry::new(
                        usize::from(k),
                        usize::from(m),
                        u64::from(unit_bytes),
                        seg.len,
                    );
                    for stripe in g.stripes_for(r.clone()) {
                        let s = r.start.max(stripe.data.start);
                        let e = r.end.min(stripe.data.end);
                        steps.push((seg.clone(), s..e));
                    }
                }
            }
        }
        let mut steps = steps.into_iter();
        if let Some((seg, r)) = steps.next() {
            let first = self.read_piece(&seg, r).await?;
            let _ = tx.send(Ok(first)).await;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _lease = lease;
            for (seg, r) in steps {
                let piece = this.read_piece(&seg, r).await;
                let failed = piece.is_err();
                // A client that takes nothing for the idle deadline has
                // stalled: end the stream (the body comes up short, so it
                // cannot be mistaken for the object) and free the lease.
                match tokio::time::timeout(crate::limits::CLIENT_IDLE_TIMEOUT, tx.send(piece)).await
                {
                    Ok(Ok(())) if !failed => {}
                    Ok(_) => return, // client went away, or the stream ends with the error
                    Err(_) => {
                        tracing::warn!(
                            idle = ?crate::limits::CLIENT_IDLE_TIMEOUT,
                            "client stopped reading; ending the response"
                        );
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Reads `r` (segment-relative, within one stripe for EC segments).
    async fn read_piece(&self, seg: &Segment, r: Range<u64>) -> Result<Bytes, GatewayError> {
        match seg.layout {
            Layout::Replicated { .. } => self.read_replica(seg, r).await,
            Layout::Erasure { k, m, unit_bytes } => {
                let g = Geometry::new(
                    usize::from(k),
                    usize::from(m),
                    u64::from(unit_bytes),
                    seg.len,
                );
                self.read_stripe_range(seg, &g, r).await
            }
        }
    }

    async fn fetch(
        &self,
        seg: &Segment,
        index: usize,
        shard_range: Range<u64>,
    ) -> Result<Bytes, ShardReadError> {
        let Some(Some(node)) = seg.shards.get(index).copied() else {
            return Err(ShardReadError::NeverWritten { index });
        };
        let Some((addr, up)) = self.cluster.locate(node) else {
            return Err(ShardReadError::UnknownNode { index, node });
        };
        if !up {
            return Err(ShardReadError::NodeDown { index, node });
        }
        self.datad
            .get_shard(
                &addr,
                seg.id,
                ShardIndex(index as u8),
                shard_range.start,
                shard_range.end - shard_range.start,
            )
            .await
            .map_err(|e| {
                tracing::warn!(segment = %seg.id, shard = index, %node, error = %e, "shard read failed; using other shards");
                match &e {
                    DatadClientError::NotFound { .. } => {
                        self.report_bad_shard(seg.id, index, node, None)
                    }
                    DatadClientError::Corrupt {
                        damage: Some(damage),
                        ..
                    } => self.report_bad_shard(seg.id, index, node, Some(damage.clone())),
                    // A datad that did not name the blocks: its scrubber will.
                    _ => {}
                }
                ShardReadError::Failed {
                    index,
                    node,
                    source: e,
                }
            })
    }

    /// Tells metad, in the background as the read goes on from other shards,
    /// that `node`'s file of shard `index` has bad blocks (`damage`), so its
    /// holder rewrites them; or, without `damage`, that the file is missing,
    /// so repair rebuilds the shard elsewhere. metad ignores either if the
    /// shard has moved meanwhile.
    fn report_bad_shard(
        &self,
        segment: weft_common::SegmentId,
        index: usize,
        node: NodeId,
        damage: Option<weft_common::damage::BlockDamage>,
    ) {
        use weft_common::rpc::Command;
        // Bounded: a burst of bad reads (a dying disk) must not become a
        // burst of tasks. A report not sent is not lost: the holder's
        // scrubber, or the next read, finds the same blocks.
        let Ok(slot) = self.report_slots.clone().try_acquire_owned() else {
            self.bad_shard_reports_dropped.inc();
            tracing::debug!(%segment, index, %node, "too many bad-shard reports in flight; leaving this one to scrub");
            return;
        };
        self.bad_shards_reported.inc();
        let metad = self.metad.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let index = index as u8;
            let cmd = match damage {
                Some(damage) => Command::ReportDamage {
                    segment,
                    index,
                    node,
                    damage,
                },
                None => Command::DropShard {
                    segment,
                    index,
                    node,
                },
            };
            if let Err(e) = metad.command(&cmd).await {
                tracing::warn!(%segment, index, %node, error = %e, "could not report a bad shard; scrub or a later read will");
            }
        });
    }

    async fn read_replica(&self, seg: &Segment, r: Range<u64>) -> Result<Bytes, GatewayError> {
        let mut errors = Vec::new();
        // Replicas on nodes believed up first.
        let mut order: Vec<usize> = (0..seg.shards.len()).collect();
        order.sort_by_key(|i| {
            let up = seg.shards[*i]
                .and_then(|n: NodeId| self.cluster.locate(n))
                .map(|(_, up)| up)
                .unwrap_or(false);
            !up
        });
        for i in order {
            match self.fetch(seg, i, r.clone()).await {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(GatewayError::Unreadable {
            segment: seg.id,
            detail: format!("no replica readable: {}", errors.join("; ")),
        })
    }

    async fn read_stripe_range(
        &self,
        seg: &Segment,
        g: &Geometry,
        r: Range<u64>,
    ) -> Result<Bytes, GatewayError> {
        let stripe = g.stripe(r.start / g.stripe_bytes());
        let unit = stripe.shard.end - stripe.shard.start;
        // Fast path: the data shards covering the range, in parallel.
        let first = ((r.start - stripe.data.start) / unit) as usize;
        let last = ((r.end - 1 - stripe.data.start) / unit) as usize;
        let fetches = (first..=last).map(|j| {
            let unit_start = stripe.data.start + j as u64 * unit;
            let s = r.start.max(unit_start) - unit_start;
            let e = r.end.min(unit_start + unit) - unit_start;
            self.fetch(seg, j, stripe.shard.start + s..stripe.shard.start + e)
        });
        let results = join_all(fetches).await;
        if results.iter().all(|x| x.is_ok()) {
            let mut out = BytesMut::with_capacity((r.end - r.start) as usize);
            for b in results.into_iter().flatten() {
                out.extend_from_slice(&b);
            }
            return Ok(out.freeze());
        }
        // Degraded path: whole units from the other shards, then decode. The
        // first k to arrive win; the rest are dropped, so one more stalled
        // shard costs nothing once k others have answered.
        let failed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, x)| x.is_err())
            .map(|(i, _)| first + i)
            .collect();
        tracing::warn!(segment = %seg.id, stripe = stripe.index, ?failed, "degraded read: decoding from parity");
        self.degraded_reads.inc();
        let width = g.k + g.m;
        let mut errors: Vec<String> = failed
            .iter()
            .map(|i| format!("shard {i}: failed on the fast path"))
            .collect();
        let mut pending: FuturesUnordered<_> = (0..width)
            .filter(|i| !failed.contains(i))
            .map(|i| {
                let shard_range = stripe.shard.clone();
                async move { (i, self.fetch(seg, i, shard_range).await) }
            })
            .collect();
        let mut shards: Vec<Option<Bytes>> = vec![None; width];
        let mut got = 0;
        while let Some((i, result)) = pending.next().await {
            match result {
                Ok(b) => {
                    shards[i] = Some(b);
                    got += 1;
                    if got == g.k {
                        break;
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        drop(pending);
        let codec = self.codecs.get(g.k, g.m)?;
        let data_len = (stripe.data.end - stripe.data.start) as usize;
        let data = weft_common::effects::spawn_blocking(move || codec.decode(shards, data_len))
            .await
            .map_err(|e| GatewayError::Internal(format!("decode: {e}")))?
            .map_err(|e| GatewayError::Unreadable {
                segment: seg.id,
                detail: format!("stripe {}: {e}: {}", stripe.index, errors.join("; ")),
            })?;
        let s = (r.start - stripe.data.start) as usize;
        let e = (r.end - stripe.data.start) as usize;
        Ok(data.slice(s..e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_read_errors_name_the_shard_and_its_node() {
        let node = NodeId(4);
        assert_eq!(
            ShardReadError::NeverWritten { index: 2 }.to_string(),
            "shard 2 was never written"
        );
        assert_eq!(
            ShardReadError::UnknownNode { index: 2, node }.to_string(),
            "shard 2: node n4 unknown"
        );
        assert_eq!(
            ShardReadError::NodeDown { index: 2, node }.to_string(),
            "shard 2: node n4 is down"
        );
    }
}
