//! Messages of the internal RPC: JSON over HTTP for control, raw byte streams
//! for shard data. See docs/decisions.md for why HTTP rather than gRPC.
//!
//! One module per kind of message: `command` (raft commands, their
//! results and refusals), `query` (metadata reads), `format` (format
//! numbers of commands and of the RPC itself); membership, heartbeats and
//! shard transfer are here.

mod command;
mod format;
mod query;

pub use command::*;
pub use format::*;
pub use query::*;

use crate::NodeId;
use serde::{Deserialize, Serialize};

/// Error body every internal endpoint returns with a non-2xx status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcErrorBody {
    /// Machine-readable code the caller branches on.
    pub code: RpcErrorCode,
    /// What happened, for humans.
    pub message: String,
    /// For `NotLeader`: where the leader is, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
    /// For `Corrupt` from a datad: the blocks of the shard file that failed
    /// verification (every one in the range asked for, when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<crate::damage::BlockDamage>,
}

/// Codes of [`RpcErrorBody`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcErrorCode {
    /// This metad is not the raft leader; retry at `leader_addr`.
    NotLeader,
    /// The service cannot answer now (no quorum, shutting down); retry later.
    Unavailable,
    /// The request was malformed.
    BadRequest,
    /// The caller is not authenticated or not allowed.
    Unauthorized,
    /// The named thing does not exist.
    NotFound,
    /// A stored block failed its checksum: the data must not be used.
    Corrupt,
    /// The node has no room.
    DiskFull,
    /// The node is out of a resource that frees itself (file descriptors):
    /// nothing is wrong with the data; retry shortly, here or elsewhere.
    Busy,
    /// The command was proposed but its fate is unknown (raft failed or
    /// leadership was lost after the proposal; it may still commit). Retry
    /// only an idempotent request (see the metad client's retry contract).
    OutcomeUnknown,
    /// Anything else.
    Internal,
}

/// Every metadata write: metad applies these deterministically, in log order.
/// Time is stamped by the proposer, never read inside apply.
// Commands are built once and serialized once; boxing the large variants
// would only add indirection.
/// Body of `POST /v1/members/add`: a new voter (caught up as a learner first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    /// Raft id, never reused.
    pub id: u64,
    /// Its address.
    pub addr: String,
}

/// Body of `POST /v1/members/remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMember {
    /// Raft id.
    pub id: u64,
}

/// A datad's periodic liveness report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who.
    pub node: NodeId,
    /// Bytes used by shard files.
    pub used_bytes: u64,
    /// Space state (nearfull/full) and the numbers behind it; absent from an
    /// older datad, which then counts as ok.
    #[serde(default)]
    pub space: crate::space::SpaceReport,
}

/// Reply to a shard PUT once the file is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPutReply {
    /// Data bytes stored.
    pub bytes: u64,
    /// crc32c of the data as stored.
    pub crc32c: u32,
}

/// One shard named in a [`ShardReleaseBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    /// Its segment.
    pub segment: crate::SegmentId,
    /// Its index in the segment.
    pub index: u8,
}

/// Body of `POST /v1/shards/release`: shards no version refers to any more.
/// Batched so a burst of DELETEs costs one request per node per batch, not
/// one connection per shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReleaseBatch {
    /// At most [`SHARD_RELEASE_BATCH_MAX`] shards.
    pub shards: Vec<ShardRef>,
    /// Shards of versions a committed change replaced: a read through
    /// another gateway may not have reached them yet, so the datad keeps
    /// them at least its quiet period (and while they are read). False for
    /// shards of writes never committed, which no reader knows.
    #[serde(default)]
    pub hold: bool,
    /// Keep them the data node's longest hold (`release_hold_max_ms`)
    /// whether read or not: shards a transition replaced, whose readers
    /// no gateway's read lease covers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_full: bool,
}

/// Largest [`ShardReleaseBatch`] a datad accepts.
pub const SHARD_RELEASE_BATCH_MAX: usize = 1024;

/// What a datad did with a [`ShardReleaseBatch`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReleaseReply {
    /// Deleted now.
    pub deleted: u32,
    /// Not there (already deleted, or never written).
    pub absent: u32,
    /// Read within the datad's quiet period: deleted once reads stop.
    pub deferred: u32,
    /// Not taken (the datad's deferral queue is full): garbage collection
    /// reclaims them.
    pub dropped: u32,
}

/// Header carrying the expected data length of a shard PUT.
pub const SHARD_LEN_HEADER: &str = "x-weft-shard-len";
