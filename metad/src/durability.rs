//! The durability planner, run by the raft leader: it scans the segment index
//! against node states, reports redundancy honestly, and hands datad workers
//! the shard moves that restore it.
//!
//! Each scan classifies every shard slot:
//! - on an up, active node: present;
//! - on a draining node that is up: present, but to be moved away (drain);
//! - on a suspect node: at risk: counted as missing in the status (it may be
//!   dead) but not yet repaired, so one late heartbeat moves no data;
//! - empty, on a down or removed node, or on an unknown node: missing, repaired.
//!
//! A present shard may also have bad blocks that its holder reported (see
//! [`crate::damage`]). Redundancy is judged per stripe: a stripe lacks the
//! missing shards plus the shards with bad blocks in it, a segment is as
//! degraded as its worst stripe, and unreadable only if some stripe has
//! fewer good shards than the read quorum. Bad blocks are repaired in place
//! by their holder (a `Blocks` task), never by giving up the whole shard.
//!
//! Work goes out most-endangered first (segments whose worst stripe lacks the
//! most shards), then drains, then rebalancing, which runs only when nothing
//! else is queued or running. A segment has at most one shard move in flight,
//! plus at most one block repair per damaged slot; tasks have leases, and a
//! lost or duplicated task is harmless because the commits are
//! compare-and-sets (`MoveShard`) or set differences (`DamageRepaired`) and
//! unreferenced shard files are collected by datad's garbage collector.
//! Planner state is in memory: a new leader starts empty and rebuilds it from
//! its first scan.

use crate::damage::{self, StripeHealth};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_common::damage::BlockDamage;
use weft_common::placement::{self, Candidate};
use weft_common::profile::Layout;
use weft_common::repair::{
    layout_label, ClassStatus, DurabilityStatus, NodeUsage, RepairAssignment, RepairConfig,
    RepairPoll, RepairTask, SegmentRecord, ShardSource, TaskMethod, TaskReason,
};
use weft_common::topology::{NodeAdmin, NodeState, NodeView};
use weft_common::{NodeId, SegmentId};

/// Planner knobs (part of metad's configuration).
#[derive(Clone, Copy, Debug)]
pub struct PlannerConfig {
    /// Time between scans.
    pub scan_interval: Duration,
    /// How long a datad may hold a task before it is offered again.
    pub task_lease: Duration,
    /// Rebalance while `(max - min) / mean` of node utilisation exceeds this
    /// and `max - min` exceeds `rebalance_min_gap`.
    pub rebalance_spread: f64,
    /// Smallest utilisation gap (fraction of capacity) worth moving data
    /// for: nearly empty clusters are not shuffled around.
    pub rebalance_min_gap: f64,
    /// A status older than this is refreshed before it is answered.
    pub status_max_age: Duration,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            scan_interval: Duration::from_secs(5),
            task_lease: Duration::from_secs(120),
            rebalance_spread: 0.05,
            rebalance_min_gap: 0.02,
            status_max_age: Duration::from_secs(1),
        }
    }
}

struct Assigned {
    target: NodeId,
    task: RepairTask,
    handed_out: bool,
    deadline: Instant,
}

#[derive(Default)]
struct PlannerState {
    /// By segment and shard index.
    tasks: HashMap<(SegmentId, u8), Assigned>,
    /// (when, bytes) of recently finished tasks, for the observed rate.
    finished: VecDeque<(Instant, u64)>,
    last_status: Option<(Instant, DurabilityStatus)>,
    /// Raft index applied when the last scan began.
    last_scan_applied: Option<u64>,
}

/// The planner; one per metad, active only while it leads.
pub struct Planner {
    cfg: PlannerConfig,
    state: Mutex<PlannerState>,
    /// Serialises scans (the loop and status queries).
    scan_lock: tokio::sync::Mutex<()>,
}

/// What one scan found, before it is turned into tasks.
struct Work {
    segment: SegmentId,
    record: SegmentRecord,
    slot: usize,
    reason: TaskReason,
    /// Shards lacking in the segment's worst stripe (higher goes first).
    urgency: usize,
    /// For a block repair (by the slot's holder): the bad blocks.
    blocks: Option<BlockDamage>,
}

/// A slot's classification.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Present,
    Draining,
    AtRisk,
    Missing,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn classify(holder: Option<NodeId>, views: &HashMap<NodeId, &NodeView>) -> Slot {
    let Some(n) = holder else {
        return Slot::Missing;
    };
    let Some(v) = views.get(&n) else {
        return Slot::Missing;
    };
    match (v.admin, v.state) {
        (NodeAdmin::Removed, _) | (_, NodeState::Down) => Slot::Missing,
        (_, NodeState::Suspect) => Slot::AtRisk,
        (NodeAdmin::Draining, NodeState::Up) => Slot::Draining,
        (NodeAdmin::Active, NodeState::Up) => Slot::Present,
    }
}

impl Planner {
    /// A planner with these knobs.
    pub fn new(cfg: PlannerConfig) -> Self {
        Planner {
            cfg,
            state: Mutex::default(),
            scan_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The knobs.
    pub fn config(&self) -> PlannerConfig {
        self.cfg
    }

    /// Drops all in-memory planning: on gaining or losing leadership.
    pub fn reset(&self) {
        *self.state.lock().expect("planner lock") = PlannerState::default();
    }

    /// The last status, if a scan has run, with the raft index applied
    /// when it began.
    pub fn last_status(&self) -> Option<(Instant, DurabilityStatus, Option<u64>)> {
        let st = self.state.lock().expect("planner lock");
        st.last_status
            .clone()
            .map(|(at, status)| (at, status, st.last_scan_applied))
    }

    /// Records the raft index applied as a scan begins.
    pub fn scan_begins_at(&self, applied: Option<u64>) {
        self.state.lock().expect("planner lock").last_scan_applied = applied;
    }

    /// Takes the scan lock (scans must not interleave).
    pub async fn lock_scan(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.scan_lock.lock().await
    }

    /// One scan: classifies every segment, refreshes the status and queues
    /// tasks. `segments` visits the index; `views` are the nodes now.
    pub fn scan(
        &self,
        views: &[NodeView],
        config: RepairConfig,
        segments: impl FnOnce(&mut dyn FnMut(SegmentId, SegmentRecord)),
    ) -> DurabilityStatus {
        let by_id: HashMap<NodeId, &NodeView> = views.iter().map(|v| (v.info.id, v)).collect();
        let now = Instant::now();
        let mut st = self.state.lock().expect("planner lock");
        st.tasks.retain(|_, a| a.deadline > now);
        let busy_slots: HashSet<(SegmentId, u8)> = st.tasks.keys().copied().collect();
        let busy_segments: HashSet<SegmentId> = st.tasks.keys().map(|k| k.0).collect();
        let busy_moves: HashSet<SegmentId> = st
            .tasks
            .iter()
            .filter(|(_, a)| a.task.method != TaskMethod::Blocks)
            .map(|(k, _)| k.0)
            .collect();
        drop(st);

        let mut classes: BTreeMap<(String, String), ClassStatus> = BTreeMap::new();
        let mut usage: HashMap<NodeId, (u64, u64)> = HashMap::new();
        let mut work: Vec<Work> = vec![];
        let mut draining_shards = 0u64;
        let mut damaged_shards = 0u64;
        let mut unreadable_objects: Vec<String> = vec![];
        // Rebalance candidates: a bounded sample of shards per node.
        let mut on_node: HashMap<NodeId, Vec<(SegmentId, usize)>> = HashMap::new();
        let mut records: HashMap<SegmentId, SegmentRecord> = HashMap::new();
        const SAMPLE_PER_NODE: usize = 2000;

        let mut visit = |id: SegmentId, rec: SegmentRecord| {
            let width = rec.layout.width();
            let quorum = rec.layout.read_quorum();
            let slots: Vec<Slot> = (0..width)
                .map(|i| classify(rec.shards.get(i).copied().flatten(), &by_id))
                .collect();
            let present = slots
                .iter()
                .filter(|s| matches!(s, Slot::Present | Slot::Draining))
                .count();
            let readable = slots.iter().filter(|s| **s != Slot::Missing).count();
            let missing = width - present;
            let health = if rec.damage.is_empty() {
                StripeHealth {
                    worst_lacking: missing,
                    worst_readable: readable,
                    ..Default::default()
                }
            } else {
                let is_present: Vec<bool> = slots
                    .iter()
                    .map(|s| matches!(s, Slot::Present | Slot::Draining))
                    .collect();
                let is_readable: Vec<bool> = slots.iter().map(|s| *s != Slot::Missing).collect();
                damage::stripe_health(&rec, &is_present, &is_readable)
            };
            let lacking = health.worst_lacking;
            let c = classes
                .entry((rec.class.clone(), layout_label(&rec.layout)))
                .or_insert_with(|| ClassStatus {
                    class: rec.class.clone(),
                    layout: layout_label(&rec.layout),
                    degraded: vec![0; width.saturating_sub(quorum)],
                    ..Default::default()
                });
            c.segments += 1;
            if lacking == 0 {
                c.full += 1;
            } else if health.worst_readable < quorum {
                c.unreadable += 1;
                if unreadable_objects.len() < 20 {
                    unreadable_objects.push(format!("{}/{}", rec.bucket, rec.key));
                }
            } else {
                let i = lacking - 1;
                if c.degraded.len() <= i {
                    c.degraded.resize(i + 1, 0);
                }
                c.degraded[i] += 1;
            }
            c.backlog_bytes += missing as u64 * rec.shard_len + health.damaged_bytes;
            damaged_shards += health.damaged.len() as u64;
            for (i, holder) in rec.shards.iter().enumerate() {
                if let Some(n) = holder {
                    let u = usage.entry(*n).or_default();
                    u.0 += 1;
                    u.1 += rec.shard_len;
                    let sample = on_node.entry(*n).or_default();
                    if sample.len() < SAMPLE_PER_NODE {
                        sample.push((id, i));
                    }
                }
            }
            draining_shards += slots.iter().filter(|s| **s == Slot::Draining).count() as u64;
            // Bad blocks: rewritten in place by their holder, wherever some
            // stripe of them can be decoded.
            for (slot, blocks, repairable) in &health.damaged {
                if *repairable && !busy_slots.contains(&(id, *slot as u8)) {
                    work.push(Work {
                        segment: id,
                        record: rec.clone(),
                        slot: *slot,
                        reason: TaskReason::Repair,
                        urgency: lacking,
                        blocks: Some(blocks.clone()),
                    });
                }
            }
            if busy_moves.contains(&id) {
                return;
            }
            let repairable = slots
                .iter()
                .filter(|s| matches!(s, Slot::Present | Slot::Draining))
                .count()
                >= quorum;
            let slot_missing = slots.iter().position(|s| *s == Slot::Missing);
            let slot_draining = slots.iter().position(|s| *s == Slot::Draining);
            let pick = match (slot_missing, slot_draining) {
                (Some(i), _) if repairable => Some((i, TaskReason::Repair)),
                // Drain once the shards have no bad blocks left to copy.
                (None, Some(i)) if health.damaged.is_empty() => Some((i, TaskReason::Drain)),
                _ => None,
            };
            if let Some((slot, reason)) = pick {
                work.push(Work {
                    segment: id,
                    record: rec.clone(),
                    slot,
                    reason,
                    urgency: lacking,
                    blocks: None,
                });
            }
            // Rebalancing moves only shards without bad blocks.
            if health.damaged.is_empty() && !busy_segments.contains(&id) {
                records.insert(id, rec);
            }
        };
        segments(&mut visit);

        // Turn work into tasks.
        let per_node = config.priority.tasks_per_node();
        let writable: Vec<&NodeView> = views.iter().filter(|v| v.accepts_writes()).collect();
        let zones: HashSet<&str> = writable.iter().map(|v| v.info.zone.as_str()).collect();
        let mut st = self.state.lock().expect("planner lock");
        let mut load: HashMap<NodeId, usize> = HashMap::new();
        for a in st.tasks.values() {
            *load.entry(a.target).or_default() += 1;
        }
        // Free bytes as the planner will see them once queued moves land.
        let mut free: HashMap<NodeId, u64> = writable
            .iter()
            .map(|v| {
                let stored = usage.get(&v.info.id).map(|u| u.1).unwrap_or(0);
                (
                    v.info.id,
                    v.info
                        .capacity_bytes
                        .saturating_sub(stored.max(v.used_bytes)),
                )
            })
            .collect();
        work.sort_by(|a, b| {
            b.urgency
                .cmp(&a.urgency)
                .then((a.reason == TaskReason::Drain).cmp(&(b.reason == TaskReason::Drain)))
        });
        let queue_cap = per_node * 2;
        let mut planned_repairs = 0usize;
        for w in &work {
            if let Some(blocks) = &w.blocks {
                // The holder rewrites its own file.
                let Some(holder) = w.record.shards[w.slot] else {
                    continue;
                };
                if load.get(&holder).copied().unwrap_or(0) >= queue_cap {
                    continue;
                }
                *load.entry(holder).or_default() += 1;
                let task = make_block_task(w.segment, &w.record, w.slot, blocks, &by_id);
                st.tasks.insert(
                    (w.segment, w.slot as u8),
                    Assigned {
                        target: holder,
                        task,
                        handed_out: false,
                        deadline: now + self.cfg.task_lease,
                    },
                );
                planned_repairs += 1;
                continue;
            }
            let target = choose_target(
                &w.record, w.slot, w.segment, &writable, &by_id, &zones, &load, &free, queue_cap,
            );
            let Some(target) = target else { continue };
            let task = make_task(w.segment, &w.record, w.slot, w.reason, &by_id);
            *load.entry(target).or_default() += 1;
            if let Some(f) = free.get_mut(&target) {
                *f = f.saturating_sub(w.record.shard_len);
            }
            st.tasks.insert(
                (w.segment, w.slot as u8),
                Assigned {
                    target,
                    task,
                    handed_out: false,
                    deadline: now + self.cfg.task_lease,
                },
            );
            planned_repairs += 1;
        }

        // Rebalance only when nothing more urgent is waiting or running.
        let urgent_running = st
            .tasks
            .values()
            .any(|a| a.task.reason != TaskReason::Rebalance);
        if work.is_empty() && planned_repairs == 0 && !urgent_running {
            self.plan_rebalance(
                &mut st, &writable, &by_id, &zones, &usage, &on_node, &records, per_node, now,
            );
        }

        // The status.
        let classes: Vec<ClassStatus> = classes.into_values().collect();
        let backlog_bytes: u64 = classes.iter().map(|c| c.backlog_bytes).sum();
        let unreadable = classes.iter().any(|c| c.unreadable > 0);
        let degraded = classes.iter().any(|c| c.full < c.segments);
        let state = if unreadable {
            "unreadable"
        } else if degraded {
            "degraded"
        } else {
            "healthy"
        };
        let horizon = Duration::from_secs(60);
        while st
            .finished
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > horizon)
        {
            st.finished.pop_front();
        }
        let recent: u64 = st.finished.iter().map(|(_, b)| *b).sum();
        let window = st
            .finished
            .front()
            .map(|(t, _)| now.duration_since(*t).as_secs_f64().max(1.0))
            .unwrap_or(1.0);
        let recent_rate = (recent as f64 / window) as u64;
        let in_flight = st.tasks.len() as u64;
        let expected_rate = if recent_rate > 0 {
            recent_rate.min(config.rate_bytes_per_sec)
        } else {
            config.rate_bytes_per_sec
        };
        let eta_seconds = if backlog_bytes == 0 {
            Some(0)
        } else if in_flight > 0 && expected_rate > 0 {
            Some(backlog_bytes.div_ceil(expected_rate))
        } else {
            None
        };
        let mut nodes: Vec<NodeUsage> = views
            .iter()
            .map(|v| {
                let (shards, stored) = usage.get(&v.info.id).copied().unwrap_or((0, 0));
                NodeUsage {
                    node: v.info.id,
                    zone: v.info.zone.clone(),
                    state: v.state_name().to_string(),
                    liveness: v.state,
                    shards,
                    stored_bytes: stored,
                    capacity_bytes: v.info.capacity_bytes,
                }
            })
            .collect();
        nodes.sort_by_key(|n| n.node);
        let status = DurabilityStatus {
            state: state.to_string(),
            healthy: state == "healthy",
            as_of_ms: now_ms(),
            stale: false,
            stale_reason: None,
            classes,
            backlog_bytes,
            tasks_in_flight: in_flight,
            recent_rate_bytes_per_sec: recent_rate,
            eta_seconds,
            config,
            draining_shards,
            damaged_shards,
            nodes,
            unreadable_objects,
        };
        st.last_status = Some((now, status.clone()));
        status
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_rebalance(
        &self,
        st: &mut PlannerState,
        writable: &[&NodeView],
        by_id: &HashMap<NodeId, &NodeView>,
        zones: &HashSet<&str>,
        usage: &HashMap<NodeId, (u64, u64)>,
        on_node: &HashMap<NodeId, Vec<(SegmentId, usize)>>,
        records: &HashMap<SegmentId, SegmentRecord>,
        per_node: usize,
        now: Instant,
    ) {
        if writable.len() < 2 {
            return;
        }
        let mut stored: HashMap<NodeId, u64> = writable
            .iter()
            .map(|v| (v.info.id, usage.get(&v.info.id).map(|u| u.1).unwrap_or(0)))
            .collect();
        for a in st.tasks.values() {
            let len = a.task.shard_len;
            if let Some(s) = stored.get_mut(&a.target) {
                *s += len;
            }
            if let Some(Some(from)) = a.task.from.map(|f| stored.get_mut(&f)) {
                *from = from.saturating_sub(len);
            }
        }
        let util = |n: NodeId, stored: &HashMap<NodeId, u64>| -> f64 {
            let cap = by_id
                .get(&n)
                .map(|v| v.info.capacity_bytes)
                .unwrap_or(1)
                .max(1);
            stored.get(&n).copied().unwrap_or(0) as f64 / cap as f64
        };
        let mut incoming: HashMap<NodeId, usize> = HashMap::new();
        for a in st.tasks.values() {
            *incoming.entry(a.target).or_default() += 1;
        }
        let mut moved: HashSet<SegmentId> = st.tasks.keys().map(|k| k.0).collect();
        // A bounded number of moves per scan keeps rebalancing gradual.
        for _ in 0..(per_node * writable.len()) {
            let mut ids: Vec<NodeId> = stored.keys().copied().collect();
            let mean = ids.iter().map(|n| util(*n, &stored)).sum::<f64>() / ids.len() as f64;
            if mean <= 0.0 {
                return;
            }
            ids.sort_by(|a, b| {
                util(*a, &stored)
                    .total_cmp(&util(*b, &stored))
                    .then(a.cmp(b))
            });
            // Emptiest recipient first, fullest donor first; a pair whose
            // zones rule out every shard is skipped, not the whole plan.
            let mut planned = None;
            'pairs: for &recipient in &ids {
                if incoming.get(&recipient).copied().unwrap_or(0) >= per_node {
                    continue;
                }
                for &donor in ids.iter().rev() {
                    let gap = util(donor, &stored) - util(recipient, &stored);
                    if donor == recipient
                        || gap / mean <= self.cfg.rebalance_spread
                        || gap < self.cfg.rebalance_min_gap
                    {
                        break;
                    }
                    let gap_bytes =
                        (gap * by_id[&recipient].info.capacity_bytes as f64 / 2.0) as u64;
                    let recipient_zone = by_id[&recipient].info.zone.as_str();
                    let candidate = on_node.get(&donor).and_then(|list| {
                        list.iter().find(|(seg, slot)| {
                            let Some(rec) = records.get(seg) else {
                                return false;
                            };
                            !moved.contains(seg)
                                && rec.shard_len > 0
                                && rec.shard_len <= gap_bytes.max(1)
                                && rec.shards.get(*slot) == Some(&Some(donor))
                                && !rec.shards.contains(&Some(recipient))
                                && zone_ok(rec, *slot, recipient_zone, by_id, zones.len())
                        })
                    });
                    if let Some(&(seg, slot)) = candidate {
                        planned = Some((donor, recipient, seg, slot));
                        break 'pairs;
                    }
                }
            }
            let Some((donor, recipient, seg, slot)) = planned else {
                return;
            };
            let rec = &records[&seg];
            let task = make_task(seg, rec, slot, TaskReason::Rebalance, by_id);
            *stored.entry(recipient).or_default() += rec.shard_len;
            if let Some(d) = stored.get_mut(&donor) {
                *d = d.saturating_sub(rec.shard_len);
            }
            *incoming.entry(recipient).or_default() += 1;
            moved.insert(seg);
            st.tasks.insert(
                (seg, slot as u8),
                Assigned {
                    target: recipient,
                    task,
                    handed_out: false,
                    deadline: now + self.cfg.task_lease,
                },
            );
        }
    }

    /// A datad's poll: records what it finished and hands it queued tasks.
    pub fn poll(
        &self,
        poll: &RepairPoll,
        config: RepairConfig,
        writers: usize,
    ) -> RepairAssignment {
        let now = Instant::now();
        let mut st = self.state.lock().expect("planner lock");
        for f in &poll.finished {
            let key = (f.segment, f.index);
            let ours = st.tasks.get(&key).is_some_and(|a| a.target == poll.node);
            if ours {
                st.tasks.remove(&key);
            }
            if f.ok {
                st.finished.push_back((now, f.bytes));
            } else {
                tracing::warn!(node = %poll.node, segment = %f.segment, index = f.index, error = f.error.as_deref().unwrap_or(""), "repair task failed; it will be planned again");
            }
        }
        let mut tasks = vec![];
        let lease = self.cfg.task_lease;
        for a in st.tasks.values_mut() {
            if tasks.len() >= poll.free_slots as usize {
                break;
            }
            if a.target == poll.node && !a.handed_out {
                a.handed_out = true;
                a.deadline = now + lease;
                tasks.push(a.task.clone());
            }
        }
        RepairAssignment {
            tasks,
            rate_bytes_per_sec: (config.rate_bytes_per_sec / writers.max(1) as u64).max(1),
            tasks_per_node: config.priority.tasks_per_node() as u32,
        }
    }
}

/// Whether moving `slot` of `rec` into `zone` keeps the zone spread.
fn zone_ok(
    rec: &SegmentRecord,
    slot: usize,
    zone: &str,
    by_id: &HashMap<NodeId, &NodeView>,
    zones: usize,
) -> bool {
    let cap = placement::zone_cap(rec.layout.width(), zones);
    let in_zone = rec
        .shards
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            *i != slot
                && h.and_then(|n| by_id.get(&n))
                    .is_some_and(|v| v.info.zone == zone)
        })
        .count();
    in_zone < cap
}

#[allow(clippy::too_many_arguments)]
fn choose_target(
    rec: &SegmentRecord,
    slot: usize,
    segment: SegmentId,
    writable: &[&NodeView],
    by_id: &HashMap<NodeId, &NodeView>,
    zones: &HashSet<&str>,
    load: &HashMap<NodeId, usize>,
    free: &HashMap<NodeId, u64>,
    queue_cap: usize,
) -> Option<NodeId> {
    let eligible = |spread: bool| -> Vec<Candidate> {
        writable
            .iter()
            .filter(|v| !rec.shards.contains(&Some(v.info.id)))
            .filter(|v| load.get(&v.info.id).copied().unwrap_or(0) < queue_cap)
            .filter(|v| free.get(&v.info.id).copied().unwrap_or(0) >= rec.shard_len)
            .filter(|v| !spread || zone_ok(rec, slot, &v.info.zone, by_id, zones.len()))
            .map(|v| Candidate {
                node: v.info.id,
                zone: v.info.zone.clone(),
                free_bytes: free.get(&v.info.id).copied().unwrap_or(0),
                space: v.space.state,
            })
            .collect()
    };
    // Salt the hash with the slot so the shards of one segment spread.
    let salted = SegmentId(segment.0 ^ ((slot as u128 + 1) << 120));
    for spread in [true, false] {
        let cands = eligible(spread);
        if let Ok(chosen) = placement::place(salted, 1, 1, false, &cands) {
            return chosen.first().copied();
        }
    }
    None
}

fn make_task(
    segment: SegmentId,
    rec: &SegmentRecord,
    slot: usize,
    reason: TaskReason,
    by_id: &HashMap<NodeId, &NodeView>,
) -> RepairTask {
    let mut sources: Vec<(u8, ShardSource)> = rec
        .shards
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let v = by_id.get(&(*h)?)?;
            if !v.readable() {
                return None;
            }
            // Up nodes first; suspect ones only as a last resort.
            let rank = u8::from(v.state != NodeState::Up);
            Some((
                rank,
                ShardSource {
                    index: i as u8,
                    node: v.info.id,
                    addr: v.info.addr.clone(),
                },
            ))
        })
        .collect();
    // The shard itself, if its holder is readable, is the cheapest source.
    sources.sort_by_key(|(rank, s)| (*rank, s.index as usize != slot));
    let from = rec.shards.get(slot).copied().flatten();
    let self_readable = sources.iter().any(|(_, s)| s.index as usize == slot);
    let method = match rec.layout {
        Layout::Replicated { .. } => TaskMethod::Copy,
        Layout::Erasure { .. } if self_readable => TaskMethod::Copy,
        Layout::Erasure { .. } => TaskMethod::Rebuild,
    };
    RepairTask {
        segment,
        index: slot as u8,
        from,
        layout: rec.layout,
        len: rec.len,
        shard_len: rec.shard_len,
        method,
        reason,
        sources: sources.into_iter().map(|(_, s)| s).collect(),
        damage: None,
    }
}

/// A block repair for the holder of `slot`: the other shards (for replicas,
/// the other copies) as sources, those on up nodes and without recorded
/// damage first.
fn make_block_task(
    segment: SegmentId,
    rec: &SegmentRecord,
    slot: usize,
    blocks: &BlockDamage,
    by_id: &HashMap<NodeId, &NodeView>,
) -> RepairTask {
    let mut sources: Vec<((u8, bool), ShardSource)> = rec
        .shards
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != slot)
        .filter_map(|(i, h)| {
            let v = by_id.get(&(*h)?)?;
            if !v.readable() {
                return None;
            }
            let damaged = rec
                .damage
                .iter()
                .any(|d| usize::from(d.index) == i && Some(d.node) == *h);
            Some((
                (u8::from(v.state != NodeState::Up), damaged),
                ShardSource {
                    index: i as u8,
                    node: v.info.id,
                    addr: v.info.addr.clone(),
                },
            ))
        })
        .collect();
    sources.sort_by_key(|(rank, s)| (*rank, s.index));
    RepairTask {
        segment,
        index: slot as u8,
        from: rec.shards.get(slot).copied().flatten(),
        layout: rec.layout,
        len: rec.len,
        shard_len: rec.shard_len,
        method: TaskMethod::Blocks,
        reason: TaskReason::Repair,
        sources: sources.into_iter().map(|(_, s)| s).collect(),
        damage: Some(blocks.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::topology::NodeInfo;

    fn view(id: u64, zone: &str, state: NodeState, admin: NodeAdmin) -> NodeView {
        NodeView {
            info: NodeInfo {
                id: NodeId(id),
                zone: zone.into(),
                addr: format!("127.0.0.1:{id}"),
                capacity_bytes: 1 << 30,
            },
            state,
            admin,
            used_bytes: 0,
            last_heartbeat_ms_ago: Some(0),
            space: Default::default(),
        }
    }

    fn nine() -> Vec<NodeView> {
        (1..=9)
            .map(|i| {
                view(
                    i,
                    &format!("z{}", (i - 1) / 3),
                    NodeState::Up,
                    NodeAdmin::Active,
                )
            })
            .collect()
    }

    fn ec(shards: Vec<Option<u64>>) -> SegmentRecord {
        SegmentRecord {
            bucket: "b".into(),
            key: "k".into(),
            class: "STANDARD".into(),
            layout: Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            len: 4 << 20,
            shard_len: 1 << 20,
            shards: shards.into_iter().map(|s| s.map(NodeId)).collect(),
            damage: vec![],
        }
    }

    fn run(p: &Planner, views: &[NodeView], recs: &[(u128, SegmentRecord)]) -> DurabilityStatus {
        p.scan(views, RepairConfig::default(), |f| {
            for (id, r) in recs {
                f(SegmentId(*id), r.clone());
            }
        })
    }

    #[test]
    fn down_node_makes_segments_degraded_and_queues_repair_in_spread() {
        let mut views = nine();
        views[0].state = NodeState::Down;
        let p = Planner::new(PlannerConfig::default());
        let rec = ec(vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]);
        let s = run(&p, &views, &[(1, rec.clone())]);
        assert_eq!(s.state, "degraded");
        assert!(!s.healthy);
        assert_eq!(s.classes[0].degraded, vec![1, 0]);
        assert_eq!(s.backlog_bytes, 1 << 20);
        let a = p.poll(
            &RepairPoll {
                node: NodeId(3),
                free_slots: 4,
                finished: vec![],
            },
            RepairConfig::default(),
            8,
        );
        // Zone z0 lost node 1; node 3 (z0, holding nothing) is the only
        // target that keeps two shards per zone.
        assert_eq!(a.tasks.len(), 1, "{a:?}");
        let t = &a.tasks[0];
        assert_eq!(t.index, 0);
        assert_eq!(t.from, Some(NodeId(1)));
        assert_eq!(t.method, TaskMethod::Rebuild);
        assert_eq!(t.sources.len(), 5);
    }

    fn poll_all(p: &Planner, node: u64) -> Vec<RepairTask> {
        p.poll(
            &RepairPoll {
                node: NodeId(node),
                free_slots: 8,
                finished: vec![],
            },
            RepairConfig::default(),
            9,
        )
        .tasks
    }

    /// A 4+2 segment of 16 MiB (4 stripes, 64 blocks per shard) with one bad
    /// block in each of slots 0, 2 and 5 (on nodes 1, 4 and 8), in the given
    /// blocks.
    fn rotten(blocks: [u32; 3]) -> SegmentRecord {
        use weft_common::damage::ShardDamage;
        let mut rec = ec(vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]);
        rec.len = 16 << 20;
        rec.shard_len = 4 << 20;
        rec.damage = [(0u8, 1u64), (2, 4), (5, 8)]
            .into_iter()
            .zip(blocks)
            .map(|((index, node), b)| ShardDamage {
                index,
                node: NodeId(node),
                blocks: BlockDamage::from_blocks(64 << 10, [b]),
            })
            .collect();
        rec
    }

    #[test]
    fn rot_in_different_stripes_is_degraded_by_one_and_repaired_in_place() {
        let views = nine();
        let p = Planner::new(PlannerConfig::default());
        // Blocks 3, 21 and 47: stripes 0, 1 and 2.
        let s = run(&p, &views, &[(1, rotten([3, 21, 47]))]);
        assert_eq!(s.state, "degraded", "{s:#?}");
        assert_eq!(s.classes[0].degraded, vec![1, 0]);
        assert_eq!(s.classes[0].unreadable, 0);
        assert_eq!(s.damaged_shards, 3);
        assert_eq!(s.backlog_bytes, 3 * (64 << 10));
        assert_eq!(
            s.tasks_in_flight, 3,
            "one block repair per damaged slot at once"
        );
        for (node, slot) in [(1, 0u8), (4, 2), (8, 5)] {
            let tasks = poll_all(&p, node);
            assert_eq!(tasks.len(), 1, "node {node}: {tasks:?}");
            let t = &tasks[0];
            assert_eq!(t.method, TaskMethod::Blocks);
            assert_eq!(t.index, slot);
            assert_eq!(t.from, Some(NodeId(node)), "repaired by its holder");
            assert!(t
                .damage
                .as_ref()
                .is_some_and(|d| d.block_count(t.shard_len) == 1));
            assert_eq!(t.sources.len(), 5);
            assert!(t.sources.iter().all(|x| x.index != slot));
            // Undamaged shards first.
            assert!(t.sources[..3].iter().all(|x| ![0, 2, 5].contains(&x.index)));
        }
        // Nothing else is planned meanwhile (no rebalancing, no moves).
        let s = run(&p, &views, &[(1, rotten([3, 21, 47]))]);
        assert_eq!(s.tasks_in_flight, 3);
    }

    #[test]
    fn rot_in_one_stripe_beyond_m_is_unreadable_but_other_stripes_repair() {
        let views = nine();
        let p = Planner::new(PlannerConfig::default());
        let mut rec = rotten([3, 4, 15]);
        // Slot 5 also has a bad block in stripe 2, which can be rebuilt.
        rec.damage[2].blocks = BlockDamage::from_blocks(64 << 10, [15, 40]);
        let s = run(&p, &views, &[(1, rec)]);
        assert_eq!(s.state, "unreadable");
        assert_eq!(s.unreadable_objects, vec!["b/k".to_string()]);
        assert_eq!(s.tasks_in_flight, 1);
        assert_eq!(poll_all(&p, 8)[0].index, 5);
    }

    #[test]
    fn suspect_counts_as_at_risk_but_is_not_repaired() {
        let mut views = nine();
        views[0].state = NodeState::Suspect;
        let p = Planner::new(PlannerConfig::default());
        let rec = ec(vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]);
        let s = run(&p, &views, &[(1, rec)]);
        assert_eq!(s.state, "degraded");
        assert_eq!(s.tasks_in_flight, 0);
    }

    #[test]
    fn too_few_shards_is_unreadable_and_never_healthy() {
        let views = nine();
        let p = Planner::new(PlannerConfig::default());
        let rec = ec(vec![Some(1), Some(2), Some(4), None, None, None]);
        let s = run(&p, &views, &[(1, rec)]);
        assert_eq!(s.state, "unreadable");
        assert_eq!(s.classes[0].unreadable, 1);
        assert_eq!(s.unreadable_objects, vec!["b/k".to_string()]);
        assert_eq!(s.tasks_in_flight, 0);
    }

    #[test]
    fn draining_node_shards_are_copied_away() {
        let mut views = nine();
        views[1].admin = NodeAdmin::Draining;
        let p = Planner::new(PlannerConfig::default());
        let rec = ec(vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]);
        let s = run(&p, &views, &[(1, rec)]);
        assert_eq!(s.state, "healthy", "draining shards are still present");
        assert_eq!(s.draining_shards, 1);
        assert_eq!(s.tasks_in_flight, 1);
        let a = p.poll(
            &RepairPoll {
                node: NodeId(3),
                free_slots: 4,
                finished: vec![],
            },
            RepairConfig::default(),
            8,
        );
        assert_eq!(a.tasks[0].method, TaskMethod::Copy);
        assert_eq!(a.tasks[0].reason, TaskReason::Drain);
        assert_eq!(a.tasks[0].sources[0].node, NodeId(2));
    }

    #[test]
    fn full_cluster_with_empty_nodes_rebalances() {
        let mut views = nine();
        views.push(view(10, "z0", NodeState::Up, NodeAdmin::Active));
        let p = Planner::new(PlannerConfig::default());
        let recs: Vec<(u128, SegmentRecord)> = (0..60u128)
            .map(|i| {
                (
                    i + 1,
                    ec(vec![Some(1), Some(2), Some(4), Some(5), Some(7), Some(8)]),
                )
            })
            .collect();
        let s = run(&p, &views, &recs);
        assert_eq!(s.state, "healthy");
        assert!(s.tasks_in_flight > 0, "an empty node should receive shards");
        let a = p.poll(
            &RepairPoll {
                node: NodeId(10),
                free_slots: 8,
                finished: vec![],
            },
            RepairConfig::default(),
            10,
        );
        assert!(!a.tasks.is_empty());
        assert!(a.tasks.iter().all(|t| t.reason == TaskReason::Rebalance));
    }
}
