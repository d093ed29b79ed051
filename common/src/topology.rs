//! Zones and nodes as every process sees them.

use crate::NodeId;
use serde::{Deserialize, Serialize};

/// What a datad tells metad about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Never reused.
    pub id: NodeId,
    /// Failure domain and network locality.
    pub zone: String,
    /// `host:port` of the node's internal RPC endpoint.
    pub addr: String,
    /// Bytes the node may fill.
    pub capacity_bytes: u64,
}

/// Liveness as judged by metad from heartbeats.
///
/// `Suspect` sits between the two so that one late heartbeat does not start
/// moving terabytes: a suspect node gets no new shards, and its shards count as
/// at risk in the status, but repair starts only once it is `Down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeat seen recently.
    Up,
    /// Heartbeats missed for longer than the suspect interval.
    Suspect,
    /// No heartbeat within the down grace period (or none since this metad
    /// became leader and the grace passed).
    Down,
}

/// What the operator wants of a node, committed through raft.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAdmin {
    /// In service.
    #[default]
    Active,
    /// Readable, but gets no new shards and has its shards moved away.
    Draining,
    /// Out of the cluster: nothing is read from or placed on it.
    Removed,
}

/// A node with its current liveness and usage: the gateway's cluster map entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Registration data.
    pub info: NodeInfo,
    /// Liveness.
    pub state: NodeState,
    /// Operator's intent.
    #[serde(default)]
    pub admin: NodeAdmin,
    /// Bytes used, from the last heartbeat (0 if none).
    pub used_bytes: u64,
    /// Milliseconds since the last heartbeat, if one was seen.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Space state from the last heartbeat (ok if none).
    #[serde(default)]
    pub space: crate::space::SpaceReport,
}

impl NodeView {
    /// The state an operator sees: `removed` or `draining` when set, else the
    /// liveness (`up`, `suspect`, `down`).
    pub fn state_name(&self) -> &'static str {
        match (self.admin, self.state) {
            (NodeAdmin::Removed, _) => "removed",
            (NodeAdmin::Draining, _) => "draining",
            (NodeAdmin::Active, NodeState::Up) => "up",
            (NodeAdmin::Active, NodeState::Suspect) => "suspect",
            (NodeAdmin::Active, NodeState::Down) => "down",
        }
    }

    /// Whether new shards may go to this node as far as liveness and the
    /// operator go. A full node passes too: placement skips it, so that it
    /// can name it when too few nodes remain (see [`crate::placement`]).
    pub fn accepts_writes(&self) -> bool {
        self.admin == NodeAdmin::Active && self.state == NodeState::Up
    }

    /// Whether its shards count as present for redundancy: it is not removed
    /// and not known to be down. Suspect nodes do count for reads, but see
    /// [`NodeView::holds_safely`].
    pub fn readable(&self) -> bool {
        self.admin != NodeAdmin::Removed && self.state != NodeState::Down
    }

    /// Whether its shards count towards full redundancy: up, and not draining
    /// or removed.
    pub fn holds_safely(&self) -> bool {
        self.admin == NodeAdmin::Active && self.state == NodeState::Up
    }

    /// Free bytes, never negative.
    pub fn free_bytes(&self) -> u64 {
        self.info.capacity_bytes.saturating_sub(self.used_bytes)
    }
}
