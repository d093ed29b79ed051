//! Transitions between storage classes: the task a data node runs and the
//! messages of its poll (see metad's `transition` module for the design).

use crate::lifecycle::Step;
use crate::manifest::Segment;
use crate::profile::Layout;
use crate::repair::ShardSource;
use crate::{NodeId, SegmentId, VersionId};
use serde::{Deserialize, Serialize};

/// One segment of a transition: read `old` from `sources`, write `new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMove {
    /// The segment now referenced.
    pub old: SegmentId,
    /// Its layout.
    pub old_layout: Layout,
    /// Its shard files' length.
    pub old_shard_len: u64,
    /// Its shards that may be read, data shards first.
    pub sources: Vec<ShardSource>,
    /// The segment that replaces it: a new id with the nodes to write to
    /// (`None` slots are left for repair), or the same id for a relabel.
    pub new: Segment,
    /// Address of each node in `new.shards` (empty for a relabel).
    pub targets: Vec<Option<String>>,
}

impl SegmentMove {
    /// Whether the segment's shards stay where they are.
    pub fn is_relabel(&self) -> bool {
        self.new.id == self.old
    }
}

/// Move one object version to another class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionTask {
    /// Names the task in the outcome.
    pub id: u64,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The version (internal id).
    pub version_id: VersionId,
    /// Its class now.
    pub from_class: String,
    /// Its class after.
    pub to_class: String,
    /// Object size.
    pub size: u64,
    /// crc32c of the whole object: a task that re-encodes every segment
    /// checks the bytes it read against it before committing.
    pub crc32c: u32,
    /// The lifecycle step that planned it (re-checked by the commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// Leader time it was planned at, ms.
    pub at_ms: u64,
    /// Its segments in object order.
    pub segments: Vec<SegmentMove>,
}

/// What became of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionOutcome {
    /// The task.
    pub id: u64,
    /// Committed.
    pub ok: bool,
    /// Refused by the commit's compare-and-set: the version changed or
    /// went first (its new shards were deleted).
    #[serde(default)]
    pub superseded: bool,
    /// Shard bytes written.
    pub bytes: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST /v1/transition/poll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionPoll {
    /// Who.
    pub node: NodeId,
    /// Tasks it can start now.
    pub free_slots: u32,
    /// Tasks finished since the last poll.
    pub finished: Vec<TransitionOutcome>,
}

/// Reply to [`TransitionPoll`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionAssignment {
    /// New tasks.
    pub tasks: Vec<TransitionTask>,
    /// This node's share of the cluster's transition rate.
    pub rate_bytes_per_sec: u64,
}

/// The leader's transition counters (since it was elected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStats {
    /// Waiting for a data node.
    pub queued: u64,
    /// Handed out, not finished.
    pub running: u64,
    /// Committed (bytes moved).
    pub done: u64,
    /// Committed without moving bytes.
    pub relabeled: u64,
    /// Refused at commit or planning: the version changed first.
    pub superseded: u64,
    /// Failed (retried by a later pass).
    pub failed: u64,
    /// Shard bytes written by committed tasks.
    pub bytes: u64,
    /// Since when these count (the leader's election), ms since the epoch.
    #[serde(default)]
    pub since_ms: u64,
}
