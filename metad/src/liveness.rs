//! Node liveness from heartbeats, kept in memory on the metad that receives
//! them (the leader). Heartbeats are not raft writes: they change every
//! second and lose nothing when forgotten, so replicating them would only
//! cost fsyncs. A new leader assumes nodes are up for one grace period,
//! until their next heartbeats reach it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_common::rpc::Heartbeat;
use weft_common::topology::{NodeInfo, NodeState, NodeView};
use weft_common::NodeId;

/// Heartbeat tracker.
pub struct Liveness {
    started: Instant,
    grace: Duration,
    seen: Mutex<HashMap<NodeId, (Instant, u64)>>,
}

impl Liveness {
    /// A tracker that declares a node down after `grace` without a heartbeat.
    pub fn new(grace: Duration) -> Self {
        Liveness {
            started: Instant::now(),
            grace,
            seen: Mutex::default(),
        }
    }

    /// Records a heartbeat.
    pub fn record(&self, hb: &Heartbeat) {
        self.seen
            .lock()
            .expect("liveness lock poisoned")
            .insert(hb.node, (Instant::now(), hb.used_bytes));
    }

    /// Joins registrations with liveness.
    pub fn view(&self, nodes: Vec<NodeInfo>) -> Vec<NodeView> {
        let now = Instant::now();
        let seen = self.seen.lock().expect("liveness lock poisoned");
        nodes
            .into_iter()
            .map(|info| {
                let (state, used_bytes, ago) = match seen.get(&info.id) {
                    Some((at, used)) => {
                        let ago = now.duration_since(*at);
                        let state = if ago <= self.grace {
                            NodeState::Up
                        } else {
                            NodeState::Down
                        };
                        (state, *used, Some(ago.as_millis() as u64))
                    }
                    None if now.duration_since(self.started) <= self.grace => {
                        (NodeState::Up, 0, None)
                    }
                    None => (NodeState::Down, 0, None),
                };
                NodeView {
                    info,
                    state,
                    used_bytes,
                    last_heartbeat_ms_ago: ago,
                }
            })
            .collect()
    }
}
