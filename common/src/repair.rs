//! The durability engine's vocabulary: where each segment's shards live now,
//! the work that keeps them at full redundancy, and the status report.
//!
//! metad owns the truth (a [`SegmentRecord`] per segment, updated through raft
//! when a shard moves or is lost); its leader plans [`RepairTask`]s; datad
//! workers pull and run them and commit the result as a `MoveShard` command.
//! metad never calls datad: work flows by polling, so a partitioned node simply
//! stops receiving tasks.

use crate::damage::{BlockDamage, ShardDamage};
use crate::profile::Layout;
use crate::topology::NodeState;
use crate::{NodeId, SegmentId};
use serde::{Deserialize, Serialize};

/// The current placement of one segment: the authoritative copy.
///
/// An object version's manifest records where its shards were first written;
/// repair, drain and rebalance move shards later, and only this record follows
/// them. Readers get manifests with this placement overlaid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Bucket of the owning object (for reports of unreadable data).
    pub bucket: String,
    /// Key of the owning object or upload.
    pub key: String,
    /// Storage class, for per-class status.
    pub class: String,
    /// Layout.
    pub layout: Layout,
    /// Bytes of object data.
    pub len: u64,
    /// Length of each shard file.
    pub shard_len: u64,
    /// Node holding each shard index, `None` where a shard is missing.
    pub shards: Vec<Option<NodeId>>,
    /// Nodes its shards may go to (see [`crate::storage_class`]); absent:
    /// any node, spread over zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::storage_class::PlacementRule>,
    /// Shard files whose holders reported bad blocks not yet repaired (see
    /// [`crate::damage`]); absent from the encoding when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<ShardDamage>,
    /// Cache copies warmed into zones (see [`crate::warm`]): read from,
    /// kept by garbage collection, never counted toward redundancy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<crate::warm::CacheCopy>,
}

/// How repair competes with client traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepairPriority {
    /// One task at a time per node: the smallest dent in client latency.
    Low,
    /// Two tasks per node.
    #[default]
    Normal,
    /// Four tasks per node, and rebalancing waits: restore redundancy first.
    High,
}

impl RepairPriority {
    /// Concurrent tasks one datad runs.
    pub fn tasks_per_node(self) -> usize {
        match self {
            RepairPriority::Low => 1,
            RepairPriority::Normal => 2,
            RepairPriority::High => 4,
        }
    }
}

impl std::str::FromStr for RepairPriority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(RepairPriority::Low),
            "normal" => Ok(RepairPriority::Normal),
            "high" => Ok(RepairPriority::High),
            other => Err(format!(
                "unknown repair priority {other:?}; use low, normal or high"
            )),
        }
    }
}

/// Cluster-wide repair settings, changed at runtime through raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairConfig {
    /// Bytes of shard data written by repair, drain and rebalance per second,
    /// summed over the cluster (each worker gets a share).
    pub rate_bytes_per_sec: u64,
    /// Concurrency and ordering.
    pub priority: RepairPriority,
}

/// Default repair rate: 64 MiB/s across the cluster.
pub const REPAIR_RATE_DEFAULT: u64 = 64 << 20;

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            rate_bytes_per_sec: REPAIR_RATE_DEFAULT,
            priority: RepairPriority::Normal,
        }
    }
}

/// Why a shard is being (re)written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskReason {
    /// The shard is missing, on a down or removed node, or has bad blocks.
    Repair,
    /// Its node is draining.
    Drain,
    /// Moving it evens out disk usage.
    Rebalance,
    /// A cache copy for a zone a dataset is warmed into: the target keeps
    /// the shard as an extra copy and commits `AddCacheCopy`, not a move.
    Warm,
}

/// How the target gets the shard's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskMethod {
    /// Read the same shard (or, for replicas, any copy) from one source.
    Copy,
    /// Read `k` other shards and decode this one, stripe by stripe.
    Rebuild,
    /// The target already holds the shard but some blocks are bad: rewrite
    /// just those in place, decoding their stripes from the other shards
    /// (for replicas: copying the blocks from another copy), then commit
    /// `DamageRepaired`.
    Blocks,
}

/// A shard that a task may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSource {
    /// Shard index.
    pub index: u8,
    /// Node holding it.
    pub node: NodeId,
    /// The node's RPC address.
    pub addr: String,
}

/// One unit of work for a datad: write shard `index` of `segment` locally,
/// then commit `MoveShard { from, to: self }`; or, for [`TaskMethod::Blocks`],
/// rewrite the bad blocks of the shard it holds and commit `DamageRepaired`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairTask {
    /// Segment.
    pub segment: SegmentId,
    /// Shard index to write.
    pub index: u8,
    /// The slot's current value; the commit applies only if it is unchanged.
    pub from: Option<NodeId>,
    /// Segment layout.
    pub layout: Layout,
    /// Segment data length.
    pub len: u64,
    /// Shard file length.
    pub shard_len: u64,
    /// How to get the bytes.
    pub method: TaskMethod,
    /// Why.
    pub reason: TaskReason,
    /// Sources in preference order (for `Rebuild`, at least `k`).
    pub sources: Vec<ShardSource>,
    /// For `Blocks`: the blocks reported bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<BlockDamage>,
}

/// What became of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    /// Segment.
    pub segment: SegmentId,
    /// Shard index.
    pub index: u8,
    /// Committed.
    pub ok: bool,
    /// Bytes written.
    pub bytes: u64,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The task's reason, so a repair and a cache copy of the same shard
    /// onto the same node are told apart (absent from older data nodes:
    /// taken as a repair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TaskReason>,
}

/// Body of `POST /v1/repair/poll`: a datad asking for work and reporting
/// what it finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPoll {
    /// Who.
    pub node: NodeId,
    /// Tasks it can start now.
    pub free_slots: u32,
    /// Tasks finished since the last poll.
    pub finished: Vec<TaskOutcome>,
}

/// Reply to [`RepairPoll`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairAssignment {
    /// New tasks.
    pub tasks: Vec<RepairTask>,
    /// This node's share of the cluster repair rate.
    pub rate_bytes_per_sec: u64,
    /// Concurrent tasks this node should run.
    pub tasks_per_node: u32,
}

/// Segments of one storage class and layout, by redundancy. A segment's
/// redundancy is that of its worst stripe: shards missing plus shards with
/// bad blocks in that stripe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStatus {
    /// Storage class.
    pub class: String,
    /// Layout, e.g. `EC 4+2` or `3 replicas`.
    pub layout: String,
    /// Segments in all.
    pub segments: u64,
    /// Segments with every shard present on a live node.
    pub full: u64,
    /// `degraded[i]`: segments whose worst stripe lacks `i + 1` good shards
    /// but which are still readable.
    pub degraded: Vec<u64>,
    /// Segments with a stripe that has fewer good shards than needed to
    /// read it.
    pub unreadable: u64,
    /// Shard bytes that repair must write to bring this class to full.
    pub backlog_bytes: u64,
    /// Shard bytes of this class held in each zone (by the nodes metad
    /// places them on).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub zone_bytes: std::collections::BTreeMap<String, u64>,
}

/// What one node holds according to metad.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// Node.
    pub node: NodeId,
    /// Zone.
    pub zone: String,
    /// `up`, `suspect`, `down`, `draining` or `removed`.
    pub state: String,
    /// Liveness.
    pub liveness: NodeState,
    /// Shards placed on it.
    pub shards: u64,
    /// Bytes of those shards.
    pub stored_bytes: u64,
    /// Its capacity.
    pub capacity_bytes: u64,
}

/// The answer to "is every object at full redundancy, and if not, when?".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurabilityStatus {
    /// `healthy` only when every segment is at full redundancy; otherwise
    /// `degraded`, or `unreadable` when any segment cannot be read.
    pub state: String,
    /// `state == "healthy"`.
    pub healthy: bool,
    /// When the scan behind this report finished, ms since the epoch.
    pub as_of_ms: u64,
    /// Set by whoever serves a cached copy because metad could not answer.
    #[serde(default)]
    pub stale: bool,
    /// Why the report is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_reason: Option<String>,
    /// Per class and layout.
    pub classes: Vec<ClassStatus>,
    /// Sum of the classes' backlogs.
    pub backlog_bytes: u64,
    /// Repair tasks running now.
    pub tasks_in_flight: u64,
    /// Shard bytes written by repair in the last minute, per second.
    pub recent_rate_bytes_per_sec: u64,
    /// Backlog divided by the expected rate; `None` if nothing is being repaired
    /// and there is a backlog (e.g. no node can take the shards).
    pub eta_seconds: Option<u64>,
    /// Current settings.
    pub config: RepairConfig,
    /// Shards still on draining nodes.
    pub draining_shards: u64,
    /// Shard files with bad blocks awaiting repair (their segments count as
    /// degraded by their worst stripe).
    #[serde(default)]
    pub damaged_shards: u64,
    /// Per node.
    pub nodes: Vec<NodeUsage>,
    /// Up to 20 unreadable objects (`bucket/key`), for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_objects: Vec<String>,
}

/// Label of a layout in status reports.
pub fn layout_label(layout: &Layout) -> String {
    match layout {
        Layout::Replicated { copies } => format!("{copies} replicas"),
        Layout::Erasure { k, m, .. } => format!("EC {k}+{m}"),
    }
}

/// Parses `200MiB/s`, `1GiB`, `500M`, `1048576` into bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s").trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate; write e.g. 200MiB/s"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    let v = n * mult;
    if v.is_nan() || v < 1.0 {
        return Err(format!("rate {s:?} must be at least 1 byte per second"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("200MiB/s").unwrap(), 200 << 20);
        assert_eq!(parse_rate("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_rate("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_rate("1.5 MB/s").unwrap(), 1_500_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("10 parsecs").is_err());
    }

    #[test]
    fn priorities_parse() {
        assert_eq!("HIGH".parse::<RepairPriority>(), Ok(RepairPriority::High));
        assert!("urgent".parse::<RepairPriority>().is_err());
    }
}
