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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeat seen within the grace period.
    Up,
    /// No heartbeat within the grace period (or none since this metad started).
    Down,
}

/// A node with its current liveness and usage: the gateway's cluster map entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Registration data.
    pub info: NodeInfo,
    /// Liveness.
    pub state: NodeState,
    /// Bytes used, from the last heartbeat (0 if none).
    pub used_bytes: u64,
    /// Milliseconds since the last heartbeat, if one was seen.
    pub last_heartbeat_ms_ago: Option<u64>,
}

impl NodeView {
    /// Free bytes, never negative.
    pub fn free_bytes(&self) -> u64 {
        self.info.capacity_bytes.saturating_sub(self.used_bytes)
    }
}
