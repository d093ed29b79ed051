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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use weft_common::repair::{
    DurabilityStatus, RepairAssignment, RepairConfig, RepairPoll, RepairTask, SegmentRecord,
    TaskReason,
};
use weft_common::topology::NodeView;
use weft_common::{NodeId, SegmentId};

mod report;
mod survey;
mod tasks;
#[cfg(test)]
mod tests;

use survey::Survey;
use tasks::Nodes;

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
    tasks: BTreeMap<(SegmentId, u8), Assigned>,
    /// (when, bytes) of recently finished tasks, for the observed rate.
    finished: VecDeque<(Instant, u64)>,
    /// The last finished scan's status, with the raft index applied when
    /// that scan began: a status is only as new as its own scan.
    last_status: Option<(Instant, DurabilityStatus, Option<u64>)>,
    /// Raft index applied when the scan under way began.
    scanning_from: Option<u64>,
    /// Cache copies for warmed zones, by segment, shard index and target:
    /// handed out after repairs, never counted in the repair status.
    warm: BTreeMap<(SegmentId, u8, NodeId), Assigned>,
}

/// The planner; one per metad, active only while it leads.
pub struct Planner {
    cfg: PlannerConfig,
    state: Mutex<PlannerState>,
    /// Serialises scans (the loop and status queries).
    scan_lock: tokio::sync::Mutex<()>,
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

    /// The last status, if a scan has finished, with the raft index
    /// applied when that scan began (not the one under way: pairing a
    /// finished scan's status with a newer scan's index made an old status
    /// look current).
    pub fn last_status(&self) -> Option<(Instant, DurabilityStatus, Option<u64>)> {
        self.state.lock().expect("planner lock").last_status.clone()
    }

    /// Records the raft index applied as a scan begins.
    pub fn scan_begins_at(&self, applied: Option<u64>) {
        self.state.lock().expect("planner lock").scanning_from = applied;
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
        let nodes = Nodes::new(views);
        let now = Instant::now();
        let mut st = self.state.lock().expect("planner lock");
        st.tasks.retain(|_, a| a.deadline > now);
        st.warm.retain(|_, a| a.deadline > now);
        let mut survey = Survey::new(&st.tasks);
        drop(st);
        segments(&mut |id, rec| survey.visit(&nodes.by_id, id, rec));

        let per_node = config.priority.tasks_per_node();
        let mut st = self.state.lock().expect("planner lock");
        let planned = tasks::queue_work(&mut st, &self.cfg, &mut survey, &nodes, per_node, now);
        // Rebalance only when nothing more urgent is waiting or running.
        let urgent_running = st
            .tasks
            .values()
            .any(|a| a.task.reason != TaskReason::Rebalance);
        if survey.work.is_empty() && planned == 0 && !urgent_running {
            tasks::plan_rebalance(&mut st, &self.cfg, &nodes, &survey, per_node, now);
        }
        let status = report::status(&mut st, now, config, views, survey);
        st.last_status = Some((now, status.clone(), st.scanning_from));
        status
    }

    /// Queues a cache copy of shard `index` of `segment` onto `target`
    /// (`weft warm`), unless the same copy is queued, a repair of that shard
    /// is, or `target` already has `per_node` copies waiting. Returns
    /// whether it was queued.
    pub fn offer_warm(
        &self,
        segment: SegmentId,
        rec: &SegmentRecord,
        index: u8,
        target: NodeId,
        views: &[NodeView],
        per_node: usize,
    ) -> bool {
        let now = Instant::now();
        let mut st = self.state.lock().expect("planner lock");
        let key = (segment, index, target);
        if st.warm.contains_key(&key) || st.tasks.contains_key(&(segment, index)) {
            return false;
        }
        let waiting = st.warm.values().filter(|a| a.target == target).count();
        if waiting >= per_node {
            return false;
        }
        let nodes = Nodes::new(views);
        let task = tasks::warm_task(segment, rec, usize::from(index), &nodes.by_id);
        st.warm.insert(
            key,
            Assigned {
                target,
                task,
                handed_out: false,
                deadline: now + self.cfg.task_lease,
            },
        );
        true
    }

    /// Cache copies queued or under way, by target node: how many, and
    /// their bytes.
    pub fn warm_queued(&self) -> BTreeMap<NodeId, (usize, u64)> {
        let st = self.state.lock().expect("planner lock");
        let mut out: BTreeMap<NodeId, (usize, u64)> = BTreeMap::new();
        for a in st.warm.values() {
            let e = out.entry(a.target).or_default();
            e.0 += 1;
            e.1 += a.task.shard_len;
        }
        out
    }

    /// Whether a cache copy of `(segment, index)` is queued onto any node.
    pub fn warm_pending(&self, segment: SegmentId, index: u8) -> bool {
        let st = self.state.lock().expect("planner lock");
        st.warm
            .range((segment, index, NodeId(0))..=(segment, index, NodeId(u64::MAX)))
            .next()
            .is_some()
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
            // A cache copy is not repair: it neither counts toward the
            // repair rate seen nor warns when refused (its warm may have
            // ended meanwhile); the warming pass plans it again if needed.
            if f.reason == Some(TaskReason::Warm) {
                st.warm.remove(&(f.segment, f.index, poll.node));
                if !f.ok {
                    tracing::debug!(node = %poll.node, segment = %f.segment, index = f.index, error = f.error.as_deref().unwrap_or(""), "cache copy not made");
                }
                continue;
            }
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
        let st = &mut *st;
        // Repairs first; cache copies only in the slots they left free.
        for a in st.tasks.values_mut().chain(st.warm.values_mut()) {
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
