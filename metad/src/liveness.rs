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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_common::rpc::Heartbeat;
use weft_common::topology::{NodeAdmin, NodeInfo, NodeState, NodeView};
use weft_common::NodeId;

/// Extra time a node never heard from since the epoch stays up: datads find
/// a new leader by following redirects, which takes a few heartbeats.
const UNSEEN_ALLOWANCE: Duration = Duration::from_secs(2);

/// Heartbeat tracker.
pub struct Liveness {
    epoch: Mutex<Instant>,
    suspect_after: Duration,
    down_after: Duration,
    seen: Mutex<HashMap<NodeId, (Instant, u64)>>,
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
        *self.epoch.lock().expect("liveness lock poisoned") = Instant::now();
        self.seen.lock().expect("liveness lock poisoned").clear();
    }

    /// The down grace period.
    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// Records a heartbeat.
    pub fn record(&self, hb: &Heartbeat) {
        self.seen
            .lock()
            .expect("liveness lock poisoned")
            .insert(hb.node, (Instant::now(), hb.used_bytes));
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
    pub fn view(&self, nodes: Vec<NodeInfo>, admin: &HashMap<NodeId, NodeAdmin>) -> Vec<NodeView> {
        let now = Instant::now();
        let epoch = *self.epoch.lock().expect("liveness lock poisoned");
        let seen = self.seen.lock().expect("liveness lock poisoned");
        nodes
            .into_iter()
            .map(|info| {
                let (state, used_bytes, ago) = match seen.get(&info.id) {
                    Some((at, used)) => {
                        let ago = now.duration_since(*at);
                        (self.state_after(ago), *used, Some(ago.as_millis() as u64))
                    }
                    // Not heard from since the epoch: heartbeats may still be
                    // finding their way to this (new) leader, so allow longer.
                    None => (
                        self.state_after(
                            now.duration_since(epoch).saturating_sub(UNSEEN_ALLOWANCE),
                        ),
                        0,
                        None,
                    ),
                };
                NodeView {
                    admin: admin.get(&info.id).copied().unwrap_or_default(),
                    info,
                    state,
                    used_bytes,
                    last_heartbeat_ms_ago: ago,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            zone: "z".into(),
            addr: "127.0.0.1:1".into(),
            capacity_bytes: 1,
        }
    }

    #[test]
    fn silence_goes_up_suspect_down() {
        let l = Liveness::new(Duration::from_millis(40), Duration::from_millis(120));
        let admin = HashMap::from([(NodeId(2), NodeAdmin::Draining)]);
        l.record(&Heartbeat {
            node: NodeId(1),
            used_bytes: 7,
        });
        let v = l.view(vec![info(1), info(2)], &admin);
        assert_eq!(v[0].state, NodeState::Up);
        assert_eq!(v[0].used_bytes, 7);
        // Never heard from, but within the first interval after the epoch.
        assert_eq!(v[1].state, NodeState::Up);
        assert_eq!(v[1].state_name(), "draining");
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(l.view(vec![info(1)], &admin)[0].state, NodeState::Suspect);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(l.view(vec![info(1)], &admin)[0].state, NodeState::Down);
        l.reset_epoch();
        assert_eq!(l.view(vec![info(1)], &admin)[0].state, NodeState::Up);
    }
}
