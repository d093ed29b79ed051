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
/// Versions asked of the state machine per page.
const PAGE: u32 = 1_000;
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
        }
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
    }

    /// The budget of `zone`.
    fn budget(&self, zone: &str, views: &[NodeView]) -> u64 {
        if self.budget_bytes > 0 {
            return self.budget_bytes;
        }
        views
            .iter()
            .filter(|v| v.info.zone == zone && v.readable())
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
}

/// Judges every cache copy: kept only while its node is readable and
/// still in its zone, it does not duplicate the placed shard, some live
/// warm of its zone covers its object, and its segment is the object's
/// current version's.
fn census(
    sm: &crate::state_machine::StateMachine,
    warms: &[Warm],
    views: &BTreeMap<NodeId, (String, bool)>,
) -> Result<Census, crate::error::MetaError> {
    let mut out = Census::default();
    let mut records = vec![];
    sm.scan_cached_segments(|id, rec| records.push((id, rec)))?;
    for (id, rec) in records {
        let current = sm.is_current_segment(&rec.bucket, &rec.key, id)?;
        let mut dropped = vec![];
        for c in &rec.cache {
            let node_ok = views
                .get(&c.node)
                .is_some_and(|(zone, readable)| *zone == c.zone && *readable);
            let placed_here =
                rec.shards.get(usize::from(c.index)).copied().flatten() == Some(c.node);
            let covering: Vec<&Warm> = warms
                .iter()
                .filter(|w| w.zone == c.zone && w.covers(&rec.bucket, &rec.key))
                .collect();
            if !current || !node_ok || placed_here || covering.is_empty() {
                dropped.push((c.index, c.node));
                continue;
            }
            *out.used.entry(c.zone.clone()).or_default() += rec.shard_len;
            if covering.iter().all(|w| w.pinned) {
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
            let cmd = Command::DropWarm {
                zone: w.zone.clone(),
                bucket: w.bucket.clone(),
                prefix: w.prefix.clone(),
                created_ms: Some(w.created_ms),
            };
            match write(s, cmd).await {
                Ok(_) => tracing::info!(warm = %w.describe(), "warm expired"),
                Err(e) => {
                    tracing::debug!(warm = %w.describe(), error = %e, "expiry not committed; the next pass retries")
                }
            }
        } else {
            live.push(w);
        }
    }

    // 2. Census of the copies.
    let by_node: BTreeMap<NodeId, (String, bool)> = views
        .iter()
        .map(|v| (v.info.id, (v.info.zone.clone(), v.readable())))
        .collect();
    let (sm, w2, n2) = (s.sm.clone(), live.clone(), by_node.clone());
    let census = blocking(move || census(&sm, &w2, &n2)).await?;
    for (segment, copies) in census.drops.into_iter().take(DROPS_PER_PASS) {
        if let Err(e) = write(s, Command::DropCacheCopies { segment, copies }).await {
            tracing::debug!(%segment, error = %e, "cache copies not dropped; the next pass retries");
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
        });
    }

    // 3 and 4. Eviction and planning, most recently used warm first, pinned
    // ones before all.
    live.sort_by_key(|w| (!w.pinned, std::cmp::Reverse(s.warming.last_used(w))));
    let mut planned: BTreeMap<String, u64> = BTreeMap::new();
    let mut evicted: Vec<(String, String, String)> = vec![];
    for zone in zones.values() {
        if zone.used_bytes > zone.budget_bytes {
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
        let room = zone
            .budget_bytes
            .saturating_sub(zone.used_bytes + planned.get(&w.zone).copied().unwrap_or(0));
        let (queued, wants) = plan(s, w, &views, room).await?;
        *planned.entry(w.zone.clone()).or_default() += queued;
        if wants > queued && room < wants {
            // Full: make room by the least recently used unpinned warm
            // used before this one, if any; otherwise this one waits.
            if let Some(victim) = lru_unpinned(s, &live, &w.zone, s.warming.last_used(w), &evicted)
            {
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

async fn evict(s: &Arc<AppState>, w: &Warm, why: &str) {
    let cmd = Command::DropWarm {
        zone: w.zone.clone(),
        bucket: w.bucket.clone(),
        prefix: w.prefix.clone(),
        created_ms: Some(w.created_ms),
    };
    match write(s, cmd).await {
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
    let (objects, next) = blocking(move || {
        let mut out = vec![];
        let mut marker = start;
        while out.len() < OBJECTS_PER_PASS {
            let page = sm.versions(&bucket, &prefix, marker.as_deref(), None, None, PAGE)?;
            for (key, record, latest) in page.entries {
                if let (true, Some(v)) = (latest, record.version) {
                    out.push((key, v));
                }
            }
            match page.next {
                Some((k, _)) => marker = Some(k),
                None => return Ok((out, None)),
            }
        }
        Ok((out, marker))
    })
    .await?;
    {
        let mut resume = s.warming.resume.lock().expect("warming lock");
        match next {
            Some(k) => resume.insert(id(w), k),
            None => resume.remove(&id(w)),
        };
    }
    let readable: BTreeMap<NodeId, &str> = views
        .iter()
        .filter(|v| v.readable())
        .map(|v| (v.info.id, v.info.zone.as_str()))
        .collect();
    let zone_of = |n: NodeId| readable.get(&n).copied();
    let targets: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.info.zone == w.zone && v.accepts_writes())
        .collect();
    let mut queued_bytes = 0u64;
    let mut wants = 0u64;
    let mut load = s.planner.warm_queued();
    for (key, v) in objects {
        for seg in &v.segments {
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
                            && load.get(&t.info.id).copied().unwrap_or(0) < QUEUED_PER_NODE
                    })
                    .min_by_key(|t| (holds(t.info.id), t.used_bytes, t.info.id));
                let Some(target) = target else { continue };
                let rec = SegmentRecord {
                    bucket: w.bucket.clone(),
                    key: key.clone(),
                    class: v.storage_class.clone(),
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
                    *load.entry(target.info.id).or_default() += 1;
                    queued_bytes += seg.shard_len;
                }
            }
        }
    }
    Ok((queued_bytes, wants))
}
