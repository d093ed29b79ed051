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
use crate::shard_costs::{LocalityMetrics, ShardCosts, ZoneLabels};
use std::net::SocketAddr;
use std::time::Duration;
use weft_common::locality::{plan_stripe, ranked, Proximity, ShardCost, StripePlan, StripeWant};

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
    /// Where this gateway is, and what it measured and cached.
    locality: Arc<Locality>,
}

/// Which stripes are decoded and cached here, keyed by segment and the
/// stripe's data range: a segment's bytes never change once written, so
/// an entry is never stale, whatever layout a later move gives them.
pub type StripeCache = moka::future::Cache<(weft_common::SegmentId, u64, u64), Bytes>;

/// What the read path knows about where it runs.
pub struct Locality {
    /// This gateway's zone (`None`: no shard is nearer than another).
    pub zone: Option<String>,
    /// This gateway's own address, when it is one a data node can share
    /// (not loopback or unspecified): that node is read first.
    pub host: Option<std::net::IpAddr>,
    /// Fetch costs measured from this gateway's own fetches.
    pub costs: ShardCosts,
    /// Whether slow stripe fetches are hedged.
    pub hedging: bool,
    /// The earliest a hedge goes out.
    pub hedge_min: Duration,
    /// Recently read stripes (`None`: off, or under simulation).
    pub cache: Option<StripeCache>,
    /// Where read bytes came from, hedges and cache hits.
    pub metrics: LocalityMetrics,
    /// Segments read from cache copies in this zone since the last
    /// network report (which tells metad the warms are in use).
    pub cache_reads: CacheReads,
}

/// Segments read from warm cache copies, waiting to be reported; bounded
/// (a full set drops further ids: a warm then looks a little less recently
/// used, nothing more).
#[derive(Clone, Default)]
pub struct CacheReads(Arc<std::sync::Mutex<std::collections::HashSet<weft_common::SegmentId>>>);

impl CacheReads {
    fn note(&self, id: weft_common::SegmentId) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() < weft_common::netmap::CACHE_READS_MAX {
            set.insert(id);
        }
    }
}

impl weft_client::netmap::CacheReadLog for CacheReads {
    fn take(&self) -> Vec<weft_common::SegmentId> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.drain().collect()
    }

    fn put_back(&self, segments: Vec<weft_common::SegmentId>) {
        for id in segments {
            self.note(id);
        }
    }
}

impl Locality {
    /// No zone, no cache, no hedging: every shard is as near as another.
    pub fn nowhere(metrics: &GatewayMetrics) -> Locality {
        Locality {
            zone: None,
            host: None,
            costs: ShardCosts::default(),
            hedging: false,
            hedge_min: Duration::ZERO,
            cache: None,
            metrics: metrics.locality.clone(),
            cache_reads: CacheReads::default(),
        }
    }

    /// From the gateway's settings.
    pub fn from_config(cfg: &crate::config::GatewayConfig, metrics: &GatewayMetrics) -> Locality {
        let ip = cfg.listen.ip();
        let cache = (cfg.stripe_cache_bytes > 0 && !weft_common::effects::simulated()).then(|| {
            StripeCache::builder()
                .max_capacity(cfg.stripe_cache_bytes)
                .weigher(|_, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
                .build()
        });
        Locality {
            zone: cfg.zone.clone(),
            host: (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip),
            costs: ShardCosts::default(),
            hedging: cfg.read_hedging,
            hedge_min: Duration::from_millis(cfg.hedge_min_ms),
            cache,
            metrics: metrics.locality.clone(),
            cache_reads: CacheReads::default(),
        }
    }
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
        locality: Locality,
    ) -> Self {
        ObjectReader {
            locality: Arc::new(locality),
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
                plan.push((
                    self.with_near_copies(seg),
                    (start - seg.offset)..(end - seg.offset),
                ));
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

    /// `seg` with each shard whose placed holder is outside this gateway's
    /// zone read from a cache copy inside it instead, where one is (`weft
    /// warm`): a copy holds the same bytes under the same shard index, so
    /// the rest of the read path needs no other change. The returned
    /// segment's `cache` lists, instead of copies, the placed holder of
    /// each index it substituted: [`Self::fetch`] falls back to it if the
    /// copy fails (a copy evicted and collected, or its node down), so a
    /// warm never leaves a read with fewer sources than it had.
    fn with_near_copies(&self, seg: &Segment) -> Segment {
        let mut seg = seg.clone();
        let copies = std::mem::take(&mut seg.cache);
        let Some(zone) = &self.locality.zone else {
            return seg;
        };
        if copies.is_empty() {
            return seg;
        }
        let snap = self.cluster.snapshot();
        let near = |n: NodeId| {
            snap.get(&n)
                .is_some_and(|v| v.readable() && v.info.zone == *zone)
        };
        let mut used = false;
        for c in &copies {
            let i = usize::from(c.index);
            if i >= seg.shards.len() || !near(c.node) || seg.shards[i].is_some_and(near) {
                continue;
            }
            if let Some(placed) = seg.shards[i] {
                seg.cache.push(weft_common::warm::CacheCopy {
                    index: c.index,
                    node: placed,
                    zone: String::new(),
                });
            }
            seg.shards[i] = Some(c.node);
            used = true;
        }
        if used {
            self.locality.cache_reads.note(seg.id);
        }
        seg
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

    /// Fetches `shard_range` of shard `index`; for a shard read from a
    /// warm copy, from its placed holder if the copy fails.
    async fn fetch(
        &self,
        seg: &Segment,
        index: usize,
        shard_range: Range<u64>,
    ) -> Result<Bytes, ShardReadError> {
        let Some(Some(node)) = seg.shards.get(index).copied() else {
            return Err(ShardReadError::NeverWritten { index });
        };
        let placed = seg
            .cache
            .iter()
            .find(|c| usize::from(c.index) == index)
            .map(|c| c.node);
        match self.fetch_from(seg, index, node, shard_range.clone()).await {
            Ok(b) => {
                if placed.is_some() {
                    self.locality.metrics.warm_copy_reads.inc();
                }
                Ok(b)
            }
            Err(e) => match placed {
                Some(p) => self.fetch_from(seg, index, p, shard_range).await,
                None => Err(e),
            },
        }
    }

    async fn fetch_from(
        &self,
        seg: &Segment,
        index: usize,
        node: NodeId,
        shard_range: Range<u64>,
    ) -> Result<Bytes, ShardReadError> {
        let Some((addr, up)) = self.cluster.locate(node) else {
            return Err(ShardReadError::UnknownNode { index, node });
        };
        if !up {
            return Err(ShardReadError::NodeDown { index, node });
        }
        let started = tokio::time::Instant::now();
        self.datad
            .get_shard(
                &addr,
                seg.id,
                ShardIndex(index as u8),
                shard_range.start,
                shard_range.end - shard_range.start,
            )
            .await
            .inspect(|b| self.count_fetch(node, b.len() as u64, started.elapsed()))
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

    /// Counts a fetch's bytes by where they came from, and its time into
    /// the node's measured cost.
    fn count_fetch(&self, node: NodeId, bytes: u64, elapsed: Duration) {
        let l = &self.locality;
        l.costs.record(node, elapsed);
        let zone = self
            .cluster
            .snapshot()
            .get(&node)
            .map(|v| v.info.zone.clone())
            .unwrap_or_default();
        if l.zone.as_ref().is_some_and(|z| *z != zone) {
            l.metrics.cross_zone_bytes.inc_by(bytes);
        }
        l.costs.paths().record_transfer(&zone, bytes, elapsed);
        l.metrics
            .fetched_bytes
            .get_or_create(&ZoneLabels { zone })
            .inc_by(bytes);
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
        // The nearest replica on a node believed up first; the others after
        // (a node believed down may have come back).
        let costs = self.costs_of(seg);
        let mut order = ranked(&costs, seg.shards.len());
        order.extend((0..seg.shards.len()).filter(|i| costs[*i].is_none()));
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

    /// What reading each of `seg`'s shards costs from here: `None` for a
    /// shard that cannot be read (never written, node unknown or down).
    fn costs_of(&self, seg: &Segment) -> Vec<Option<ShardCost>> {
        let snap = self.cluster.snapshot();
        let mut costs: Vec<Option<ShardCost>> = seg
            .shards
            .iter()
            .map(|n| {
                let node = (*n)?;
                let view = snap.get(&node).filter(|v| v.readable())?;
                let proximity = match &self.locality.zone {
                    None => Proximity::SameZone,
                    Some(z) if *z != view.info.zone => Proximity::OtherZone,
                    Some(_) => match (self.locality.host, view.info.addr.parse::<SocketAddr>()) {
                        (Some(host), Ok(addr)) if addr.ip() == host => Proximity::SameHost,
                        _ => Proximity::SameZone,
                    },
                };
                Some(ShardCost {
                    proximity,
                    measured_us: self.locality.costs.measured_us(node),
                })
            })
            .collect();
        // A node never measured (parity shards are not fetched on healthy
        // reads) is taken to cost what its measured neighbours do, not
        // nothing: "unknown" must not outrank data shards and turn plain
        // reads into decodes.
        for p in [
            Proximity::SameHost,
            Proximity::SameZone,
            Proximity::OtherZone,
        ] {
            let measured: Vec<u64> = costs
                .iter()
                .flatten()
                .filter(|c| c.proximity == p && c.measured_us > 0)
                .map(|c| c.measured_us)
                .collect();
            if measured.is_empty() {
                continue;
            }
            let mean = measured.iter().sum::<u64>() / measured.len() as u64;
            for c in costs.iter_mut().flatten() {
                if c.proximity == p && c.measured_us == 0 {
                    c.measured_us = mean;
                }
            }
        }
        costs
    }

    async fn read_stripe_range(
        &self,
        seg: &Segment,
        g: &Geometry,
        r: Range<u64>,
    ) -> Result<Bytes, GatewayError> {
        let stripe = g.stripe(r.start / g.stripe_bytes());
        let in_stripe = |b: &Bytes| {
            b.slice((r.start - stripe.data.start) as usize..(r.end - stripe.data.start) as usize)
        };
        let cache_key = (seg.id, stripe.data.start, stripe.data.end);
        if let Some(cache) = &self.locality.cache {
            if let Some(data) = cache.get(&cache_key).await {
                self.locality.metrics.cache_hits.inc();
                return Ok(in_stripe(&data));
            }
            self.locality.metrics.cache_misses.inc();
        }
        let unit = stripe.shard.end - stripe.shard.start;
        let first = ((r.start - stripe.data.start) / unit) as usize;
        let last = ((r.end - 1 - stripe.data.start) / unit) as usize;
        let want = StripeWant {
            units: (first..=last)
                .map(|j| {
                    let unit_start = stripe.data.start + j as u64 * unit;
                    let s = r.start.max(unit_start) - unit_start;
                    let e = r.end.min(unit_start + unit) - unit_start;
                    (j, s..e)
                })
                .collect(),
            unit,
        };
        let costs = self.costs_of(seg);
        let (columns, order, failed, mut errors) = match plan_stripe(&want, g.k, &costs) {
            StripePlan::Direct => {
                let fetches = want.units.iter().map(|(j, c)| {
                    self.fetch(
                        seg,
                        *j,
                        stripe.shard.start + c.start..stripe.shard.start + c.end,
                    )
                });
                let results = join_all(fetches).await;
                if results.iter().all(|x| x.is_ok()) {
                    let mut out = BytesMut::with_capacity((r.end - r.start) as usize);
                    for b in results.into_iter().flatten() {
                        out.extend_from_slice(&b);
                    }
                    return Ok(out.freeze());
                }
                let failed: Vec<usize> = results
                    .iter()
                    .zip(&want.units)
                    .filter(|(x, _)| x.is_err())
                    .map(|(_, (j, _))| *j)
                    .collect();
                let errors = failed
                    .iter()
                    .map(|i| format!("shard {i}: failed on the direct read"))
                    .collect();
                (want.decode_columns(), ranked(&costs, g.k), failed, errors)
            }
            StripePlan::Decode { columns, order } => (columns, order, Vec::new(), Vec::new()),
        };
        if !failed.is_empty() {
            tracing::warn!(segment = %seg.id, stripe = stripe.index, ?failed, "degraded read: decoding from the cheapest other shards");
        }
        let shard_columns = stripe.shard.start + columns.start..stripe.shard.start + columns.end;
        let shards = self
            .fetch_any_k(seg, g, shard_columns, order, &failed, &mut errors)
            .await;
        let width = columns.end - columns.start;
        let data = if want.units.iter().all(|(j, _)| shards[*j].is_some()) {
            // Every wanted data unit arrived itself: nothing to decode.
            None
        } else {
            self.degraded_reads.inc();
            let codec = self.codecs.get(g.k, g.m)?;
            let data_len = g.k * width as usize;
            let shards = shards.clone();
            Some(
                weft_common::effects::spawn_blocking(move || codec.decode(shards, data_len))
                    .await
                    .map_err(|e| GatewayError::Internal(format!("decode: {e}")))?
                    .map_err(|e| GatewayError::Unreadable {
                        segment: seg.id,
                        detail: format!("stripe {}: {e}: {}", stripe.index, errors.join("; ")),
                    })?,
            )
        };
        let mut out = BytesMut::with_capacity((r.end - r.start) as usize);
        for (j, c) in &want.units {
            let (s, e) = (
                (c.start - columns.start) as usize,
                (c.end - columns.start) as usize,
            );
            match &data {
                Some(d) => {
                    let at = j * width as usize;
                    out.extend_from_slice(&d[at + s..at + e]);
                }
                None => out.extend_from_slice(&shards[*j].as_ref().expect("checked")[s..e]),
            }
        }
        let out = out.freeze();
        if let (Some(cache), true) = (&self.locality.cache, r == stripe.data) {
            cache.insert(cache_key, out.clone()).await;
        }
        Ok(out)
    }

    /// Fetches `columns` of k shards of `seg`'s stripe, trying `order`
    /// (cheapest first, skipping `failed`): the first k at once, the next
    /// as each fails; and one more, once, when the k outlive the recent p95
    /// of fetches (a hedge). The first k to answer win; the others are
    /// dropped, so a stalled shard costs nothing once k have answered.
    async fn fetch_any_k(
        &self,
        seg: &Segment,
        g: &Geometry,
        columns: Range<u64>,
        order: Vec<usize>,
        failed: &[usize],
        errors: &mut Vec<String>,
    ) -> Vec<Option<Bytes>> {
        let mut order = order.into_iter().filter(|i| !failed.contains(i));
        let launch = |i: usize| {
            let columns = columns.clone();
            async move { (i, self.fetch(seg, i, columns).await) }
        };
        let mut pending: FuturesUnordered<_> = order.by_ref().take(g.k).map(launch).collect();
        let mut shards: Vec<Option<Bytes>> = vec![None; g.k + g.m];
        let mut got = 0;
        let mut hedged = None;
        let hedge = tokio::time::sleep(match self.locality.hedging {
            true => self.locality.costs.hedge_delay(self.locality.hedge_min),
            // Never: a year is past every read's deadline.
            false => Duration::from_secs(365 * 86_400),
        });
        tokio::pin!(hedge);
        let mut armed = self.locality.hedging;
        while got < g.k {
            tokio::select! {
                next = pending.next() => match next {
                    None => break,
                    Some((i, Ok(b))) => {
                        shards[i] = Some(b);
                        got += 1;
                    }
                    Some((i, Err(e))) => {
                        errors.push(e.to_string());
                        let _ = i;
                        if let Some(next) = order.next() {
                            pending.push(launch(next));
                        }
                    }
                },
                _ = &mut hedge, if armed => {
                    armed = false;
                    if let Some(next) = order.next() {
                        self.locality.metrics.hedges.inc();
                        tracing::debug!(segment = %seg.id, shard = next, "stripe fetch slow; hedging");
                        hedged = Some(next);
                        pending.push(launch(next));
                    }
                }
            }
        }
        if got == g.k && hedged.is_some_and(|h| shards[h].is_some()) {
            self.locality.metrics.hedge_wins.inc();
        }
        shards
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
