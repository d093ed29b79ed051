//! The leader's warming pass (`weft warm`, docs/locality.md): every few
//! seconds it
//!
//! 1. ends warms whose time-to-live ran out;
//! 2. walks the segments that have cache copies, forgets the copies no
//!    warm of their zone covers any more (dropped, expired, evicted, a
//!    residency change), those of versions no longer current, those on
//!    nodes gone or moved to another zone, and those that duplicate a
//!    placed shard, and counts each zone's cache use;
//! 3. evicts the least recently used unpinned warm of a zone over its
//!    budget, or of a zone a more recently used warm needs room in;
//! 4. walks each warm's dataset and queues, on the durability planner, a
//!    cache copy of each shard its zone lacks, onto the zone's node with the
//!    fewest shards of that segment.
//!
//! Nothing here is a raft entry per read: "recently used" is soft state the
//! gateways report with their network figures, so a new leader starts from
//! each warm's request time. Every command it proposes is a compare-and-set
//! or a set difference, so a pass racing a client (or a former leader's
//! pass) changes nothing it should not.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_common::netmap::CACHE_READS_MAX;
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{Command, CommandResult};
use weft_common::topology::NodeView;
use weft_common::warm::{lacking, Warm, ZoneCache};
use weft_common::{NodeId, SegmentId};

use super::api::node_views;
use super::audit::own_request;
use super::{ensure_serving_leader, AppState};

/// Time between passes.
const EVERY: Duration = Duration::from_secs(2);
/// Objects of one warm walked per pass; a larger dataset is walked on.
const OBJECTS_PER_PASS: usize = 20_000;
/// Objects asked of the state machine per page.
const PAGE: u32 = 5_000;
/// Cache copies queued per target node at once.
const QUEUED_PER_NODE: usize = 4;
/// `DropCacheCopies` commands per pass.
const DROPS_PER_PASS: usize = 512;
/// The share of a zone's capacity its cache may take when no budget is
/// configured: a quarter.
const DEFAULT_BUDGET_DIVISOR: u64 = 4;

/// The leader's view of the warms (soft state: a new leader rebuilds it).
pub struct Warming {
    /// Configured budget per zone (`cache_budget_bytes`; 0: a quarter of
    /// the zone's capacity).
    budget_bytes: u64,
    /// Last read of each warm's copies a gateway reported, ms, by warm key.
    last_read: Mutex<HashMap<(String, String, String), u64>>,
    /// Where each warm's dataset walk resumes: a dataset larger than one
    /// pass is walked over several.
    resume: Mutex<HashMap<(String, String, String), String>>,
    /// Each zone's budget and use, as the last pass counted.
    zones: Mutex<Vec<ZoneCache>>,
    /// Warms evicted per zone since this voter took over.
    evictions: Mutex<BTreeMap<String, u64>>,
    /// Whether the last census found any copy (true until one ran).
    copies_seen: AtomicBool,
}

fn id(w: &Warm) -> (String, String, String) {
    (w.zone.clone(), w.bucket.clone(), w.prefix.clone())
}

impl Warming {
    /// With the configured budget (`cache_budget_bytes`).
    pub fn new(budget_bytes: u64) -> Self {
        Warming {
            budget_bytes,
            last_read: Mutex::default(),
            resume: Mutex::default(),
            zones: Mutex::default(),
            evictions: Mutex::default(),
            copies_seen: AtomicBool::new(true),
        }
    }

    /// When each of `warms` was last used, ms (soft state).
    pub fn last_used_of(&self, warms: &[Warm]) -> Vec<u64> {
        warms.iter().map(|w| self.last_used(w)).collect()
    }

    /// Forgets the soft state of warms no longer live.
    fn forget_except(&self, live: &[Warm]) {
        let ids: std::collections::HashSet<_> = live.iter().map(id).collect();
        self.last_read
            .lock()
            .expect("warming lock")
            .retain(|k, _| ids.contains(k));
        self.resume
            .lock()
            .expect("warming lock")
            .retain(|k, _| ids.contains(k));
    }

    /// Each zone's budget and use, as the last pass counted.
    pub fn zones(&self) -> Vec<ZoneCache> {
        self.zones.lock().expect("warming lock").clone()
    }

    /// Forgets the soft state: on losing leadership.
    fn reset(&self) {
        self.last_read.lock().expect("warming lock").clear();
        self.resume.lock().expect("warming lock").clear();
        self.zones.lock().expect("warming lock").clear();
        self.copies_seen.store(true, Ordering::Relaxed);
    }

    /// The budget of `zone`.
    fn budget(&self, zone: &str, views: &[NodeView]) -> u64 {
        if self.budget_bytes > 0 {
            return self.budget_bytes;
        }
        // Registered capacity, down nodes included: a node's outage must
        // not shrink the budget and evict warms.
        views
            .iter()
            .filter(|v| v.info.zone == zone && v.admin != weft_common::topology::NodeAdmin::Removed)
            .map(|v| v.info.capacity_bytes)
            .sum::<u64>()
            / DEFAULT_BUDGET_DIVISOR
    }

    /// When `w`'s copies were last used: the latest reported read, or its
    /// request.
    fn last_used(&self, w: &Warm) -> u64 {
        self.last_read
            .lock()
            .expect("warming lock")
            .get(&id(w))
            .copied()
            .unwrap_or(0)
            .max(w.created_ms)
    }

    /// Notes that a gateway in `zone` read `records`' segments from cache
    /// copies at `at_ms`: each warm of the zone covering one counts as used.
    pub(crate) fn note_reads(
        &self,
        warms: &[Warm],
        zone: &str,
        records: &[SegmentRecord],
        at_ms: u64,
    ) {
        let mut last = self.last_read.lock().expect("warming lock");
        for w in warms.iter().filter(|w| w.zone == zone) {
            if records.iter().any(|r| w.covers(&r.bucket, &r.key)) {
                let e = last.entry(id(w)).or_default();
                *e = (*e).max(at_ms);
            }
        }
    }
}

/// A gateway's report of segments read from cache copies in its zone:
/// marks the warms covering them as used.
pub(crate) async fn note_cache_reads(
    s: &Arc<AppState>,
    zone: String,
    mut segments: Vec<SegmentId>,
) {
    segments.truncate(CACHE_READS_MAX);
    if segments.is_empty() || zone.is_empty() {
        return;
    }
    let sm = s.sm.clone();
    let read =
        weft_common::effects::spawn_blocking(move || -> Result<_, crate::error::MetaError> {
            let records = sm.segment_records(segments.into_iter())?;
            Ok((
                sm.warms()?,
                records.into_iter().flatten().collect::<Vec<_>>(),
            ))
        })
        .await;
    match read {
        Ok(Ok((warms, records))) => s
            .warming
            .note_reads(&warms, &zone, &records, super::now_ms()),
        Ok(Err(e)) => tracing::debug!(error = %e, "cache reads not noted"),
        Err(e) => tracing::debug!(error = %e, "cache reads not noted"),
    }
}

/// Runs a pass every [`EVERY`] while this voter leads.
pub(crate) async fn warming_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_err() {
            if leading {
                s.warming.reset();
                s.metrics.cache_bytes.clear();
            }
            leading = false;
            continue;
        }
        leading = true;
        if let Err(e) = pass(&s).await {
            tracing::debug!(error = %e, "warming pass stopped; the next one goes on");
        }
    }
}

async fn write(s: &Arc<AppState>, cmd: Command) -> Result<CommandResult, String> {
    s.writes
        .write(own_request(s, cmd))
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::error::MetaError> + Send + 'static,
) -> Result<T, String> {
    weft_common::effects::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// What the walk of cached segments found.
#[derive(Default)]
struct Census {
    /// Copies to forget, by segment.
    drops: Vec<(SegmentId, Vec<(u8, NodeId)>)>,
    /// Bytes of kept copies per zone.
    used: BTreeMap<String, u64>,
    /// Of those, bytes only pinned warms cover.
    pinned: BTreeMap<String, u64>,
    /// Copies kept, in all.
    kept: usize,
}

/// A registered node as the census judges copies on it: zone, labels,
/// and whether it was removed.
type NodeFacts = BTreeMap<NodeId, (String, weft_common::topology::Labels, bool)>;

/// Judges every cache copy. One is kept only while its node is still
/// registered (a down node keeps its copies for when it returns), in the
/// copy's zone and admitted by the bucket's residency; some live warm of
/// its zone covers its object; its segment is the object's current
/// version's; and no placed shard or earlier copy of the same index is in
/// the same zone (a copy planned twice, or a repair that placed the index
/// there since).
fn census(
    sm: &crate::state_machine::StateMachine,
    warms: &[Warm],
    nodes: &NodeFacts,
) -> Result<Census, crate::error::MetaError> {
    let mut out = Census::default();
    let mut records = vec![];
    sm.scan_cached_segments(|id, rec| records.push((id, rec)))?;
    let mut residencies: BTreeMap<String, Option<weft_common::residency::Residency>> =
        BTreeMap::new();
    for (id, rec) in records {
        let current = sm.is_current_segment(&rec.bucket, &rec.key, id)?;
        if !residencies.contains_key(&rec.bucket) {
            let r = sm.bucket(&rec.bucket)?.and_then(|b| b.residency);
            residencies.insert(rec.bucket.clone(), r);
        }
        let residency = residencies[&rec.bucket].as_ref();
        let zone_of = |n: NodeId| {
            nodes
                .get(&n)
                .filter(|(_, _, removed)| !removed)
                .map(|(z, _, _)| z.as_str())
        };
        let mut held: Vec<(u8, String)> = rec
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i as u8, zone_of((*n)?)?.to_string())))
            .collect();
        let mut dropped = vec![];
        for c in &rec.cache {
            let node_ok = nodes.get(&c.node).is_some_and(|(zone, labels, removed)| {
                *zone == c.zone && !removed && residency.is_none_or(|r| r.admits(zone, labels))
            });
            let duplicate = held.iter().any(|(i, z)| *i == c.index && *z == c.zone);
            let covering: Vec<&Warm> = warms
                .iter()
                .filter(|w| w.zone == c.zone && w.covers(&rec.bucket, &rec.key))
                .collect();
            if !current || !node_ok || duplicate || covering.is_empty() {
                dropped.push((c.index, c.node));
                continue;
            }
            held.push((c.index, c.zone.clone()));
            out.kept += 1;
            *out.used.entry(c.zone.clone()).or_default() += rec.shard_len;
            // Counted as pinned if any pin covers it: evicting the
            // unpinned warms beside it would free nothing.
            if covering.iter().any(|w| w.pinned) {
                *out.pinned.entry(c.zone.clone()).or_default() += rec.shard_len;
            }
        }
        if !dropped.is_empty() {
            out.drops.push((id, dropped));
        }
    }
    Ok(out)
}

async fn pass(s: &Arc<AppState>) -> Result<(), String> {
    let views = node_views(s)
        .await
        .map_err(|e| format!("{:?}", e.1.message))?;
    let sm = s.sm.clone();
    let warms = blocking(move || sm.warms()).await?;
    let now = super::now_ms();

    // 1. Expiry.
    let mut live = vec![];
    for w in warms {
        if w.expired(now) {
            match write(s, end_of(&w)).await {
                Ok(_) => tracing::info!(warm = %w.describe(), "warm expired"),
                Err(e) => {
                    tracing::debug!(warm = %w.describe(), error = %e, "expiry not committed; the next pass retries")
                }
            }
        } else {
            live.push(w);
        }
    }

    // 2. Census of the copies: skipped while there is no warm and the
    // last census found no copy (a new leader takes one census first);
    // the zones' budgets are counted either way.
    let census = if live.is_empty() && !s.warming.copies_seen.load(Ordering::Relaxed) {
        Census::default()
    } else {
        let facts: NodeFacts = views
            .iter()
            .map(|v| {
                (
                    v.info.id,
                    (
                        v.info.zone.clone(),
                        v.info.labels.clone(),
                        v.admin == weft_common::topology::NodeAdmin::Removed,
                    ),
                )
            })
            .collect();
        let (sm, w2) = (s.sm.clone(), live.clone());
        let census = blocking(move || census(&sm, &w2, &facts)).await?;
        // While a warm lives a copy may commit at any time; only with
        // neither warm nor copy may later passes skip the census.
        s.warming.copies_seen.store(
            census.kept > 0 || !census.drops.is_empty() || !live.is_empty(),
            Ordering::Relaxed,
        );
        census
    };
    s.warming.forget_except(&live);
    for (segment, copies) in census.drops.into_iter().take(DROPS_PER_PASS) {
        if let Err(e) = write(s, Command::DropCacheCopies { segment, copies }).await {
            tracing::debug!(%segment, error = %e, "cache copies not dropped; the next pass retries");
        }
    }
    // Copies queued in earlier passes and not committed yet take room too.
    let zone_of_node: BTreeMap<NodeId, &str> = views
        .iter()
        .map(|v| (v.info.id, v.info.zone.as_str()))
        .collect();
    let mut in_flight: BTreeMap<String, u64> = BTreeMap::new();
    for (node, (_, bytes)) in s.planner.warm_queued() {
        if let Some(z) = zone_of_node.get(&node) {
            *in_flight.entry(z.to_string()).or_default() += bytes;
        }
    }
    let mut zones: BTreeMap<String, ZoneCache> = BTreeMap::new();
    for v in &views {
        let z = &v.info.zone;
        zones.entry(z.clone()).or_insert_with(|| ZoneCache {
            zone: z.clone(),
            budget_bytes: s.warming.budget(z, &views),
            used_bytes: census.used.get(z).copied().unwrap_or(0),
            pinned_bytes: census.pinned.get(z).copied().unwrap_or(0),
            evictions: 0,
            pinned_pending_bytes: 0,
        });
    }

    // 3 and 4. Eviction and planning, most recently used warm first, pinned
    // ones before all.
    live.sort_by_key(|w| (!w.pinned, std::cmp::Reverse(s.warming.last_used(w))));
    let mut planned: BTreeMap<String, u64> = BTreeMap::new();
    let mut pinned_pending: BTreeMap<String, u64> = BTreeMap::new();
    let mut evicted: Vec<(String, String, String)> = vec![];
    for zone in zones.values() {
        if zone.used_bytes > zone.budget_bytes.max(zone.pinned_bytes) {
            if let Some(victim) = lru_unpinned(s, &live, &zone.zone, u64::MAX, &evicted) {
                evict(s, &victim, "the zone's cache is over its budget").await;
                evicted.push(id(&victim));
            }
        }
    }
    for w in &live {
        if evicted.contains(&id(w)) {
            continue;
        }
        let Some(zone) = zones.get(&w.zone) else {
            continue;
        };
        let room = zone.budget_bytes.saturating_sub(
            zone.used_bytes
                + in_flight.get(&w.zone).copied().unwrap_or(0)
                + planned.get(&w.zone).copied().unwrap_or(0),
        );
        let (queued, wants) = plan(s, w, &views, room).await?;
        *planned.entry(w.zone.clone()).or_default() += queued;
        if w.pinned {
            // `wants` counts every lacking copy not in flight, queued
            // now or not.
            *pinned_pending.entry(w.zone.clone()).or_default() += wants;
        }
        // Evicting helps only a warm that fits beside the pins; one that
        // cannot waits rather than empty the zone for nothing.
        let fits = wants <= zone.budget_bytes.saturating_sub(zone.pinned_bytes);
        tracing::trace!(warm = %w.describe(), room, queued, wants, fits, "warming plan");
        if wants > queued && room < wants && fits {
            // Full: make room by the least recently used unpinned warm
            // used before this one (any unpinned one, for a pin, which
            // admission promised room); otherwise this one waits.
            let before = if w.pinned {
                u64::MAX
            } else {
                s.warming.last_used(w)
            };
            if let Some(victim) = lru_unpinned(s, &live, &w.zone, before, &evicted) {
                if id(&victim) != id(w) {
                    evict(s, &victim, "a more recently used warm needs its room").await;
                    evicted.push(id(&victim));
                }
            }
        }
    }
    let evictions = s.warming.evictions.lock().expect("warming lock").clone();
    let zones: Vec<ZoneCache> = zones
        .into_values()
        .map(|mut z| {
            z.evictions = evictions.get(&z.zone).copied().unwrap_or(0);
            z.pinned_pending_bytes = pinned_pending.get(&z.zone).copied().unwrap_or(0);
            z
        })
        .collect();
    for z in &zones {
        s.metrics
            .cache_bytes
            .get_or_create(&vec![("zone".to_string(), z.zone.clone())])
            .set(z.used_bytes as i64);
    }
    *s.warming.zones.lock().expect("warming lock") = zones;
    Ok(())
}

/// The least recently used unpinned warm of `zone` last used before
/// `before`, not evicted yet.
fn lru_unpinned(
    s: &Arc<AppState>,
    live: &[Warm],
    zone: &str,
    before: u64,
    evicted: &[(String, String, String)],
) -> Option<Warm> {
    live.iter()
        .filter(|w| w.zone == zone && !w.pinned && !evicted.contains(&id(w)))
        .filter(|w| s.warming.last_used(w) < before)
        .min_by_key(|w| (s.warming.last_used(w), w.created_ms))
        .cloned()
}

/// Ends `w`, the request judged (expired or evicted), not a newer one.
fn end_of(w: &Warm) -> Command {
    Command::DropWarm {
        zone: w.zone.clone(),
        bucket: w.bucket.clone(),
        prefix: w.prefix.clone(),
        created_ms: Some(w.created_ms),
    }
}

async fn evict(s: &Arc<AppState>, w: &Warm, why: &str) {
    match write(s, end_of(w)).await {
        Ok(CommandResult::Done) => {
            tracing::info!(warm = %w.describe(), why, "warm evicted");
            s.metrics.warm_evictions.inc();
            *s.warming
                .evictions
                .lock()
                .expect("warming lock")
                .entry(w.zone.clone())
                .or_default() += 1;
        }
        Ok(other) => {
            tracing::debug!(warm = %w.describe(), ?other, "eviction refused (asked for again meanwhile)")
        }
        Err(e) => tracing::debug!(warm = %w.describe(), error = %e, "eviction not committed"),
    }
}

/// Walks `w`'s dataset (from where the last pass stopped) and queues a
/// cache copy of each shard its zone lacks while `room` lasts. Returns
/// (bytes queued, bytes the walked part still lacks).
async fn plan(
    s: &Arc<AppState>,
    w: &Warm,
    views: &[NodeView],
    room: u64,
) -> Result<(u64, u64), String> {
    let start = s
        .warming
        .resume
        .lock()
        .expect("warming lock")
        .get(&id(w))
        .cloned();
    let (sm, bucket, prefix) = (s.sm.clone(), w.bucket.clone(), w.prefix.clone());
    let (objects, next, residency) = blocking(move || {
        let residency = sm.bucket(&bucket)?.and_then(|b| b.residency);
        let mut out = vec![];
        let mut marker = start;
        while out.len() < OBJECTS_PER_PASS {
            let (page, next) = sm.placements(&bucket, &prefix, marker.as_deref(), PAGE)?;
            out.extend(page);
            match next {
                Some(k) => marker = Some(k),
                None => return Ok((out, None, residency)),
            }
        }
        Ok((out, marker, residency))
    })
    .await?;
    {
        let mut resume = s.warming.resume.lock().expect("warming lock");
        match next {
            Some(k) => resume.insert(id(w), k),
            None => resume.remove(&id(w)),
        };
    }
    // Registered nodes, down ones included: what apply and `weft warm
    // status` judge by (a down node's shards are still the zone's).
    let registered: BTreeMap<NodeId, &str> = views
        .iter()
        .filter(|v| v.admin != weft_common::topology::NodeAdmin::Removed)
        .map(|v| (v.info.id, v.info.zone.as_str()))
        .collect();
    let zone_of = |n: NodeId| registered.get(&n).copied();
    let targets: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.info.zone == w.zone && v.accepts_writes())
        .filter(|v| {
            residency
                .as_ref()
                .is_none_or(|r| r.admits(&v.info.zone, &v.info.labels))
        })
        .collect();
    let mut queued_bytes = 0u64;
    let mut wants = 0u64;
    let mut load = s.planner.warm_queued();
    for o in objects {
        for seg in &o.segments {
            let missing = lacking(seg.layout, &seg.shards, &seg.cache, zone_of, &w.zone);
            for index in missing {
                if s.planner.warm_pending(seg.id, index) {
                    continue;
                }
                wants += seg.shard_len;
                if queued_bytes + seg.shard_len > room {
                    continue;
                }
                let holds = |n: NodeId| {
                    seg.shards.iter().filter(|h| **h == Some(n)).count()
                        + seg.cache.iter().filter(|c| c.node == n).count()
                };
                let target = targets
                    .iter()
                    .filter(|t| {
                        seg.shards.get(usize::from(index)).copied().flatten() != Some(t.info.id)
                            && !seg
                                .cache
                                .iter()
                                .any(|c| c.index == index && c.node == t.info.id)
                            && t.info.capacity_bytes.saturating_sub(t.used_bytes) >= seg.shard_len
                            && load.get(&t.info.id).map_or(0, |l| l.0) < QUEUED_PER_NODE
                    })
                    .min_by_key(|t| (holds(t.info.id), t.used_bytes, t.info.id));
                let Some(target) = target else { continue };
                let rec = SegmentRecord {
                    bucket: w.bucket.clone(),
                    key: o.key.clone(),
                    // Not read by a warm task.
                    class: String::new(),
                    layout: seg.layout,
                    len: seg.len,
                    shard_len: seg.shard_len,
                    shards: seg.shards.clone(),
                    placement: seg.placement.clone(),
                    damage: vec![],
                    cache: seg.cache.clone(),
                };
                if s.planner
                    .offer_warm(seg.id, &rec, index, target.info.id, views, QUEUED_PER_NODE)
                {
                    load.entry(target.info.id).or_default().0 += 1;
                    queued_bytes += seg.shard_len;
                }
            }
        }
    }
    Ok((queued_bytes, wants))
}
