//! Turning a scan's work into tasks for datad workers: choosing each
//! target node (load, free space, zone spread), listing the shards to read
//! from, and rebalancing when nothing more urgent is queued.

use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;
use weft_common::damage::BlockDamage;
use weft_common::placement::{self, Candidate};
use weft_common::profile::Layout;
use weft_common::repair::{RepairTask, SegmentRecord, ShardSource, TaskMethod, TaskReason};
use weft_common::topology::{NodeState, NodeView};
use weft_common::{NodeId, SegmentId};

use super::survey::Survey;
use super::{Assigned, PlannerConfig, PlannerState};

/// The nodes as one scan sees them.
pub(super) struct Nodes<'a> {
    pub(super) by_id: BTreeMap<NodeId, &'a NodeView>,
    /// Nodes that take new shards.
    pub(super) writable: Vec<&'a NodeView>,
    /// Zones of the writable nodes.
    pub(super) zones: BTreeSet<&'a str>,
}

impl<'a> Nodes<'a> {
    pub(super) fn new(views: &'a [NodeView]) -> Self {
        let writable: Vec<&NodeView> = views.iter().filter(|v| v.accepts_writes()).collect();
        Nodes {
            by_id: views.iter().map(|v| (v.info.id, v)).collect(),
            zones: writable.iter().map(|v| v.info.zone.as_str()).collect(),
            writable,
        }
    }
}

/// Queues a task for each piece of `survey`'s work that has a target with
/// room, most endangered segments first and drains after repairs; returns
/// how many were queued.
pub(super) fn queue_work(
    st: &mut PlannerState,
    cfg: &PlannerConfig,
    survey: &mut Survey,
    nodes: &Nodes,
    per_node: usize,
    now: Instant,
) -> usize {
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for a in st.tasks.values() {
        *load.entry(a.target).or_default() += 1;
    }
    // Free bytes as the planner will see them once queued moves land.
    let mut free: BTreeMap<NodeId, u64> = nodes
        .writable
        .iter()
        .map(|v| {
            let stored = survey.usage.get(&v.info.id).map(|u| u.1).unwrap_or(0);
            (
                v.info.id,
                v.info
                    .capacity_bytes
                    .saturating_sub(stored.max(v.used_bytes)),
            )
        })
        .collect();
    survey.work.sort_by(|a, b| {
        b.urgency
            .cmp(&a.urgency)
            .then((a.reason == TaskReason::Drain).cmp(&(b.reason == TaskReason::Drain)))
    });
    let queue_cap = per_node * 2;
    let mut planned_repairs = 0usize;
    for w in &survey.work {
        if let Some(blocks) = &w.blocks {
            // The holder rewrites its own file.
            let Some(holder) = w.record.shards[w.slot] else {
                continue;
            };
            if load.get(&holder).copied().unwrap_or(0) >= queue_cap {
                continue;
            }
            *load.entry(holder).or_default() += 1;
            let task = make_block_task(w.segment, &w.record, w.slot, blocks, &nodes.by_id);
            st.tasks.insert(
                (w.segment, w.slot as u8),
                Assigned {
                    target: holder,
                    task,
                    handed_out: false,
                    deadline: now + cfg.task_lease,
                },
            );
            planned_repairs += 1;
            continue;
        }
        let target = choose_target(&w.record, w.slot, w.segment, nodes, &load, &free, queue_cap);
        let Some(target) = target else { continue };
        let task = make_task(w.segment, &w.record, w.slot, w.reason, &nodes.by_id);
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
                deadline: now + cfg.task_lease,
            },
        );
        planned_repairs += 1;
    }
    planned_repairs
}

/// Moves shards from the fullest nodes to the emptiest while their
/// utilisation differs by more than the configured spread; a bounded number
/// per scan, so rebalancing stays gradual.
pub(super) fn plan_rebalance(
    st: &mut PlannerState,
    cfg: &PlannerConfig,
    nodes: &Nodes,
    survey: &Survey,
    per_node: usize,
    now: Instant,
) {
    let (writable, by_id) = (&nodes.writable, &nodes.by_id);
    let (usage, on_node, records) = (&survey.usage, &survey.on_node, &survey.records);
    if writable.len() < 2 {
        return;
    }
    let mut stored: BTreeMap<NodeId, u64> = writable
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
    let util = |n: NodeId, stored: &BTreeMap<NodeId, u64>| -> f64 {
        let cap = by_id
            .get(&n)
            .map(|v| v.info.capacity_bytes)
            .unwrap_or(1)
            .max(1);
        stored.get(&n).copied().unwrap_or(0) as f64 / cap as f64
    };
    let mut incoming: BTreeMap<NodeId, usize> = BTreeMap::new();
    for a in st.tasks.values() {
        *incoming.entry(a.target).or_default() += 1;
    }
    let mut moved: BTreeSet<SegmentId> = st.tasks.keys().map(|k| k.0).collect();
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
                    || gap / mean <= cfg.rebalance_spread
                    || gap < cfg.rebalance_min_gap
                {
                    break;
                }
                let gap_bytes = (gap * by_id[&recipient].info.capacity_bytes as f64 / 2.0) as u64;
                let recipient_view = by_id[&recipient];
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
                            && admitted(rec, recipient_view)
                            && zone_ok(rec, *slot, recipient_view, nodes)
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
                deadline: now + cfg.task_lease,
            },
        );
    }
}

/// Whether `node` may hold a shard of `rec` at all: its class's rule (fixed
/// when the segment was written) admits it. Segments from before classes
/// were data may go anywhere.
fn admitted(rec: &SegmentRecord, node: &NodeView) -> bool {
    rec.placement
        .as_ref()
        .is_none_or(|r| r.admits(&node.info.zone, &node.info.labels))
}

/// Whether moving `slot` of `rec` onto `node` keeps the zone spread: at
/// most ⌈width/zones⌉ shards in its zone, counting the zones the
/// segment's rule admits (a segment of a one-zone or node-spread class has
/// no zone cap).
fn zone_ok(rec: &SegmentRecord, slot: usize, node: &NodeView, nodes: &Nodes) -> bool {
    let zones = match &rec.placement {
        Some(rule) if !rule.spread_zones => return true,
        Some(_) => nodes
            .writable
            .iter()
            .filter(|v| admitted(rec, v))
            .map(|v| v.info.zone.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        None => nodes.zones.len(),
    };
    let zone = node.info.zone.as_str();
    let cap = placement::zone_cap(rec.layout.width(), zones);
    let in_zone = rec
        .shards
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            *i != slot
                && h.and_then(|n| nodes.by_id.get(&n))
                    .is_some_and(|v| v.info.zone == zone)
        })
        .count();
    in_zone < cap
}

/// Where slot `slot` of `segment` should be rebuilt or moved to: a
/// writable node without a shard of it, room in its queue and space for the
/// shard, keeping the zone spread if any such node does.
fn choose_target(
    rec: &SegmentRecord,
    slot: usize,
    segment: SegmentId,
    nodes: &Nodes,
    load: &BTreeMap<NodeId, usize>,
    free: &BTreeMap<NodeId, u64>,
    queue_cap: usize,
) -> Option<NodeId> {
    let eligible = |spread: bool| -> Vec<Candidate> {
        nodes
            .writable
            .iter()
            .filter(|v| admitted(rec, v))
            .filter(|v| !rec.shards.contains(&Some(v.info.id)))
            .filter(|v| load.get(&v.info.id).copied().unwrap_or(0) < queue_cap)
            .filter(|v| free.get(&v.info.id).copied().unwrap_or(0) >= rec.shard_len)
            .filter(|v| !spread || zone_ok(rec, slot, v, nodes))
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

/// A copy or rebuild of `slot` of `segment`, the readable shards as
/// sources, up nodes first and the shard itself first of all.
fn make_task(
    segment: SegmentId,
    rec: &SegmentRecord,
    slot: usize,
    reason: TaskReason,
    by_id: &BTreeMap<NodeId, &NodeView>,
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

/// A cache copy of `slot` for a warmed zone: copied from its placed
/// holder when that one is readable, else rebuilt from k others (a
/// replicated segment's copy comes from any replica).
pub(super) fn warm_task(
    segment: SegmentId,
    rec: &SegmentRecord,
    slot: usize,
    by_id: &BTreeMap<NodeId, &NodeView>,
) -> RepairTask {
    let mut task = make_task(segment, rec, slot, TaskReason::Warm, by_id);
    // Not a move: the placed holder keeps its shard.
    task.from = None;
    task
}

/// A block repair for the holder of `slot`: the other shards (for replicas,
/// the other copies) as sources, those on up nodes and without recorded
/// damage first.
fn make_block_task(
    segment: SegmentId,
    rec: &SegmentRecord,
    slot: usize,
    blocks: &BlockDamage,
    by_id: &BTreeMap<NodeId, &NodeView>,
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
