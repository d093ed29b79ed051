//! Planner scenarios on hand-built segment records and node views.

use super::*;
use weft_common::damage::BlockDamage;
use weft_common::profile::Layout;
use weft_common::repair::TaskMethod;
use weft_common::topology::{NodeAdmin, NodeInfo, NodeState};

fn view(id: u64, zone: &str, state: NodeState, admin: NodeAdmin) -> NodeView {
    NodeView {
        info: NodeInfo {
            labels: Default::default(),
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
        placement: None,
        shards: shards.into_iter().map(|s| s.map(NodeId)).collect(),
        damage: vec![],
        cache: vec![],
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

/// A status carries the applied index of the scan that made it, never that
/// of a scan still under way: the status query reuses a cached status
/// only when no command applied since, and pairing an older scan's
/// status with a newer scan's index once answered 2018 segments for 2040
/// acknowledged objects.
#[test]
fn a_status_keeps_the_index_its_own_scan_began_at() {
    let p = Planner::new(PlannerConfig::default());
    let full = || ec((1..=6).map(Some).collect());
    p.scan_begins_at(Some(5));
    run(&p, &nine(), &[(1, full())]);
    let (_, status, at) = p.last_status().expect("a scan finished");
    assert_eq!(at, Some(5));
    assert_eq!(status.classes.iter().map(|c| c.segments).sum::<u64>(), 1);
    // A new scan begins after more writes but has not finished: the cached
    // status is still the one from index 5.
    p.scan_begins_at(Some(9));
    let (_, _, at) = p.last_status().expect("the earlier scan's status");
    assert_eq!(at, Some(5));
    run(&p, &nine(), &[(1, full()), (2, full())]);
    let (_, status, at) = p.last_status().expect("a scan finished");
    assert_eq!(at, Some(9));
    assert_eq!(status.classes.iter().map(|c| c.segments).sum::<u64>(), 2);
}

#[test]
fn a_drained_shard_moves_only_to_a_node_its_class_rule_admits() {
    let mut views = nine();
    // Node 7 (zone z2) drains; nodes 1-6 in z0 and z1 are empty and up.
    views[6].admin = NodeAdmin::Draining;
    let mut rec = ec(vec![]);
    rec.layout = Layout::Replicated { copies: 2 };
    rec.shards = vec![Some(NodeId(7)), Some(NodeId(8))];
    rec.placement = Some(weft_common::storage_class::PlacementRule {
        select: weft_common::storage_class::Selector::parse("zone=z2").unwrap(),
        spread_zones: false,
    });
    let p = Planner::new(PlannerConfig::default());
    run(&p, &views, &[(1, rec.clone())]);
    for outside in 1..=6 {
        assert!(
            poll_all(&p, outside).is_empty(),
            "node {outside} is outside zone z2"
        );
    }
    let tasks = poll_all(&p, 9);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].index, 0);
    assert_eq!(tasks[0].from, Some(NodeId(7)));

    // Without the rule the same drain may go anywhere: the test above is
    // not passing by accident of the hash.
    rec.placement = None;
    let p = Planner::new(PlannerConfig::default());
    run(&p, &views, &[(1, rec)]);
    let anywhere: usize = (1..=6).map(|n| poll_all(&p, n).len()).sum();
    assert_eq!(
        anywhere, 1,
        "an unruled drain goes to the emptiest admitted node"
    );
}
