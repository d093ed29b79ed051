//! Node liveness from heartbeats, kept in memory on the metad that receives
//! them (the leader). Heartbeats are not raft writes: they change every
//! second and lose nothing when forgotten, so replicating them would only
//! cost fsyncs.
//!
//! A node is `up` while heartbeats arrive, `suspect` once none came for the
//! suspect interval, and `down` after the down grace. A metad that has just
//! become leader has seen no heartbeats yet, so it counts time from when it
//! took over ([`Liveness::reset_epoch`]): nodes it has not heard from are up
//! for one suspect interval, then suspect, and down only after a full grace,
//! so a leader change never starts a repair storm.
//!
//! Each heartbeat's space report (ok, nearfull, full) is kept the same way:
//! it is soft state, replaced by the next heartbeat, so a node whose deletes
//! freed space is back in placement one heartbeat later.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use weft_common::rpc::Heartbeat;
use weft_common::space::SpaceReport;
use weft_common::topology::{NodeAdmin, NodeInfo, NodeState, NodeView};
use weft_common::NodeId;

use crate::limits::UNSEEN_ALLOWANCE;

/// Heartbeat tracker.
pub struct Liveness {
    epoch: Mutex<Instant>,
    suspect_after: Duration,
    down_after: Duration,
    /// Last heartbeat of each node: when, shard bytes, space state.
    seen: Mutex<BTreeMap<NodeId, (Instant, u64, SpaceReport)>>,
}

impl Liveness {
    /// A tracker that suspects a node after `suspect_after` without a
    /// heartbeat and declares it down after `down_after`.
    pub fn new(suspect_after: Duration, down_after: Duration) -> Self {
        Liveness {
            epoch: Mutex::new(Instant::now()),
            suspect_after: suspect_after.min(down_after),
            down_after,
            seen: Mutex::default(),
        }
    }

    /// Forgets every heartbeat and counts silence from now: called when this
    /// metad becomes leader, since heartbeats went to the old leader.
    pub fn reset_epoch(&self) {
        self.reset_epoch_at(Instant::now());
    }

    /// [`reset_epoch`](Self::reset_epoch) at a given time: tests drive the
    /// clock explicitly so no verdict depends on how fast they run.
    fn reset_epoch_at(&self, at: Instant) {
        *self.epoch.lock().expect("liveness lock poisoned") = at;
        self.seen.lock().expect("liveness lock poisoned").clear();
    }

    /// The down grace period.
    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// Records a heartbeat.
    pub fn record(&self, hb: &Heartbeat) {
        self.record_at(hb, Instant::now());
    }

    fn record_at(&self, hb: &Heartbeat, at: Instant) {
        self.seen
            .lock()
            .expect("liveness lock poisoned")
            .insert(hb.node, (at, hb.used_bytes, hb.space.clone()));
    }

    fn state_after(&self, silence: Duration) -> NodeState {
        if silence <= self.suspect_after {
            NodeState::Up
        } else if silence <= self.down_after {
            NodeState::Suspect
        } else {
            NodeState::Down
        }
    }

    /// Joins registrations and operator states with liveness.
    pub fn view(&self, nodes: Vec<NodeInfo>, admin: &BTreeMap<NodeId, NodeAdmin>) -> Vec<NodeView> {
        self.view_at(nodes, admin, Instant::now())
    }

    fn view_at(
        &self,
        nodes: Vec<NodeInfo>,
        admin: &BTreeMap<NodeId, NodeAdmin>,
        now: Instant,
    ) -> Vec<NodeView> {
        let epoch = *self.epoch.lock().expect("liveness lock poisoned");
        let seen = self.seen.lock().expect("liveness lock poisoned");
        nodes
            .into_iter()
            .map(|info| {
                let (state, used_bytes, ago, space) = match seen.get(&info.id) {
                    Some((at, used, space)) => {
                        let ago = now.duration_since(*at);
                        (
                            self.state_after(ago),
                            *used,
                            Some(ago.as_millis() as u64),
                            space.clone(),
                        )
                    }
                    // Not heard from since the epoch: heartbeats may still be
                    // finding their way to this (new) leader, so allow longer.
                    None => (
                        self.state_after(
                            now.duration_since(epoch).saturating_sub(UNSEEN_ALLOWANCE),
                        ),
                        0,
                        None,
                        SpaceReport::default(),
                    ),
                };
                NodeView {
                    admin: admin.get(&info.id).copied().unwrap_or_default(),
                    info,
                    state,
                    used_bytes,
                    last_heartbeat_ms_ago: ago,
                    space,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::space::SpaceState;

    #[test]
    fn the_latest_heartbeat_sets_the_space_state() {
        let l = Liveness::new(Duration::from_secs(5), Duration::from_secs(60));
        let t0 = Instant::now();
        l.reset_epoch_at(t0);
        let mut full = hb(1, 90);
        full.space = SpaceReport {
            state: SpaceState::Full,
            fullness_ppm: 960_000,
            reason: "shard files use 96.0% of capacity_bytes".into(),
            ..Default::default()
        };
        l.record_at(&full, t0);
        let v = l.view_at(vec![info(1)], &BTreeMap::new(), t0);
        assert_eq!(v[0].space.state, SpaceState::Full);
        assert!(v[0].space.reason.contains("96.0%"));
        l.record_at(&hb(1, 10), t0 + Duration::from_secs(1));
        let v = l.view_at(vec![info(1)], &BTreeMap::new(), t0 + Duration::from_secs(1));
        assert_eq!(
            v[0].space.state,
            SpaceState::Ok,
            "freed space clears the state"
        );
    }

    fn info(id: u64) -> NodeInfo {
        NodeInfo {
            labels: Default::default(),
            id: NodeId(id),
            zone: "z".into(),
            addr: "127.0.0.1:1".into(),
            capacity_bytes: 1,
        }
    }

    fn hb(id: u64, used_bytes: u64) -> Heartbeat {
        Heartbeat {
            node: NodeId(id),
            used_bytes,
            space: SpaceReport::default(),
        }
    }

    /// Every verdict is taken at an explicit instant, so the test checks the
    /// boundaries exactly and cannot be swayed by a slow machine.
    #[test]
    fn silence_goes_up_suspect_down() {
        let ms = Duration::from_millis;
        let l = Liveness::new(ms(40), ms(120));
        let t0 = Instant::now();
        l.reset_epoch_at(t0);
        let admin = BTreeMap::from([(NodeId(2), NodeAdmin::Draining)]);
        l.record_at(&hb(1, 7), t0);
        let state = |node: u64, at: Instant| l.view_at(vec![info(node)], &admin, at)[0].state;

        let v = l.view_at(vec![info(1), info(2)], &admin, t0);
        assert_eq!(v[0].state, NodeState::Up);
        assert_eq!(v[0].used_bytes, 7);
        assert_eq!(v[1].state_name(), "draining");
        // Heard from: up through the suspect interval, suspect through the
        // grace, then down.
        assert_eq!(state(1, t0 + ms(40)), NodeState::Up);
        assert_eq!(state(1, t0 + ms(41)), NodeState::Suspect);
        assert_eq!(state(1, t0 + ms(120)), NodeState::Suspect);
        assert_eq!(state(1, t0 + ms(121)), NodeState::Down);
        // A fresh heartbeat makes it up again.
        l.record_at(&hb(1, 8), t0 + ms(200));
        assert_eq!(state(1, t0 + ms(200)), NodeState::Up);
        assert_eq!(state(1, t0 + ms(241)), NodeState::Suspect);

        // Never heard from: the same steps, counted from the epoch plus the
        // allowance for heartbeats to find this leader.
        assert_eq!(state(2, t0 + UNSEEN_ALLOWANCE + ms(40)), NodeState::Up);
        assert_eq!(state(2, t0 + UNSEEN_ALLOWANCE + ms(41)), NodeState::Suspect);
        assert_eq!(state(2, t0 + UNSEEN_ALLOWANCE + ms(121)), NodeState::Down);

        // A new epoch forgets every heartbeat: node 1 is unseen again, so up
        // until the allowance and suspect interval have passed.
        let t1 = t0 + ms(10_000);
        l.reset_epoch_at(t1);
        assert_eq!(state(1, t1), NodeState::Up);
        assert_eq!(state(1, t1 + UNSEEN_ALLOWANCE + ms(40)), NodeState::Up);
        assert_eq!(state(1, t1 + UNSEEN_ALLOWANCE + ms(121)), NodeState::Down);
        let v = l.view_at(vec![info(1)], &admin, t1);
        assert_eq!(
            v[0].last_heartbeat_ms_ago, None,
            "the heartbeat was forgotten"
        );
    }
}
