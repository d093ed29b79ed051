//! What one scan learns from the segment index: each shard slot classified
//! against the node states (the four classes [`super`] lists), each segment
//! counted toward its class's redundancy, and the work that would restore
//! it.

use std::collections::{BTreeMap, BTreeSet};
use weft_common::damage::BlockDamage;
use weft_common::repair::{layout_label, ClassStatus, SegmentRecord, TaskMethod, TaskReason};
use weft_common::topology::{NodeAdmin, NodeState, NodeView};
use weft_common::{NodeId, SegmentId};

use super::Assigned;
use crate::damage::{self, StripeHealth};

/// A slot's classification.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Present,
    Draining,
    AtRisk,
    Missing,
}

pub(super) fn classify(holder: Option<NodeId>, views: &BTreeMap<NodeId, &NodeView>) -> Slot {
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

/// What one scan found, before it is turned into tasks.
pub(super) struct Work {
    pub(super) segment: SegmentId,
    pub(super) record: SegmentRecord,
    pub(super) slot: usize,
    pub(super) reason: TaskReason,
    /// Shards lacking in the segment's worst stripe (higher goes first).
    pub(super) urgency: usize,
    /// For a block repair (by the slot's holder): the bad blocks.
    pub(super) blocks: Option<BlockDamage>,
}

/// Rebalance candidates kept per node: enough to find a movable shard,
/// bounded so a scan's memory does not grow with the data.
const SAMPLE_PER_NODE: usize = 2000;

/// The scan's tally, built segment by segment as the index is visited.
pub(super) struct Survey {
    /// Slots and segments with a task queued or running: planned no twice.
    busy_slots: BTreeSet<(SegmentId, u8)>,
    busy_segments: BTreeSet<SegmentId>,
    busy_moves: BTreeSet<SegmentId>,
    /// By `(class, layout label)`.
    pub(super) classes: BTreeMap<(String, String), ClassStatus>,
    /// `(shards, bytes)` stored by each node.
    pub(super) usage: BTreeMap<NodeId, (u64, u64)>,
    pub(super) work: Vec<Work>,
    pub(super) draining_shards: u64,
    pub(super) damaged_shards: u64,
    pub(super) unreadable_objects: Vec<String>,
    /// Rebalance candidates: a bounded sample of shards per node.
    pub(super) on_node: BTreeMap<NodeId, Vec<(SegmentId, usize)>>,
    /// Segments rebalancing may move (no bad blocks, no task).
    pub(super) records: BTreeMap<SegmentId, SegmentRecord>,
}

impl Survey {
    /// An empty tally that plans nothing for what `tasks` already covers.
    pub(super) fn new(tasks: &BTreeMap<(SegmentId, u8), Assigned>) -> Self {
        Survey {
            busy_slots: tasks.keys().copied().collect(),
            busy_segments: tasks.keys().map(|k| k.0).collect(),
            busy_moves: tasks
                .iter()
                .filter(|(_, a)| a.task.method != TaskMethod::Blocks)
                .map(|(k, _)| k.0)
                .collect(),
            classes: BTreeMap::new(),
            usage: BTreeMap::new(),
            work: vec![],
            draining_shards: 0,
            damaged_shards: 0,
            unreadable_objects: vec![],
            on_node: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }

    /// Counts one segment and records the work it needs.
    pub(super) fn visit(
        &mut self,
        by_id: &BTreeMap<NodeId, &NodeView>,
        id: SegmentId,
        rec: SegmentRecord,
    ) {
        let width = rec.layout.width();
        let quorum = rec.layout.read_quorum();
        let slots: Vec<Slot> = (0..width)
            .map(|i| classify(rec.shards.get(i).copied().flatten(), by_id))
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
        let c = self
            .classes
            .entry((rec.class.clone(), layout_label(&rec.layout)))
            .or_insert_with(|| ClassStatus {
                class: rec.class.clone(),
                layout: layout_label(&rec.layout),
                degraded: vec![0; width.saturating_sub(quorum)],
                ..Default::default()
            });
        c.segments += 1;
        for node in rec.shards.iter().flatten() {
            if let Some(v) = by_id.get(node) {
                *c.zone_bytes.entry(v.info.zone.clone()).or_default() += rec.shard_len;
            }
        }
        if lacking == 0 {
            c.full += 1;
        } else if health.worst_readable < quorum {
            c.unreadable += 1;
            if self.unreadable_objects.len() < 20 {
                self.unreadable_objects
                    .push(format!("{}/{}", rec.bucket, rec.key));
            }
        } else {
            let i = lacking - 1;
            if c.degraded.len() <= i {
                c.degraded.resize(i + 1, 0);
            }
            c.degraded[i] += 1;
        }
        c.backlog_bytes += missing as u64 * rec.shard_len + health.damaged_bytes;
        self.damaged_shards += health.damaged.len() as u64;
        for (i, holder) in rec.shards.iter().enumerate() {
            if let Some(n) = holder {
                let u = self.usage.entry(*n).or_default();
                u.0 += 1;
                u.1 += rec.shard_len;
                let sample = self.on_node.entry(*n).or_default();
                if sample.len() < SAMPLE_PER_NODE {
                    sample.push((id, i));
                }
            }
        }
        self.draining_shards += slots.iter().filter(|s| **s == Slot::Draining).count() as u64;
        // Bad blocks: rewritten in place by their holder, wherever some
        // stripe of them can be decoded.
        for (slot, blocks, repairable) in &health.damaged {
            if *repairable && !self.busy_slots.contains(&(id, *slot as u8)) {
                self.work.push(Work {
                    segment: id,
                    record: rec.clone(),
                    slot: *slot,
                    reason: TaskReason::Repair,
                    urgency: lacking,
                    blocks: Some(blocks.clone()),
                });
            }
        }
        if self.busy_moves.contains(&id) {
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
            self.work.push(Work {
                segment: id,
                record: rec.clone(),
                slot,
                reason,
                urgency: lacking,
                blocks: None,
            });
        }
        // Rebalancing moves only shards without bad blocks.
        if health.damaged.is_empty() && !self.busy_segments.contains(&id) {
            self.records.insert(id, rec);
        }
    }
}
