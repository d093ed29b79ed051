//! metad: the one source of truth for Weft's metadata.
//!
//! Buckets, object versions with their manifests, data nodes and access keys
//! live in a state machine replicated by openraft. Every write is a
//! [`weft_common::rpc::Command`] appended to a durable raft log and applied in
//! log order by [`state_machine`]; reads go through a read-index check on the
//! leader ([`openraft::Raft::ensure_linearizable`]) so a read after an
//! acknowledged write always sees it.
//!
//! Module map: [`raft_log`] (durable log, redb), [`state_machine`] (the
//! redb state and openraft's storage traits over it), `tables` (every table
//! and key layout), `apply` (how commands change the tables),
//! `segment_index` (current shard placement), [`queries`] (the read side),
//! `snapshot` (snapshot documents), [`network`] (raft RPC client over HTTP),
//! [`server`] (HTTP endpoints), [`health`] (readiness, fatal raft
//! errors), [`liveness`] (heartbeats → node states),
//! [`space`] (the disk reserve and space-low mode), [`seal`] (access-key
//! secrets sealed under the master key),
//! [`client`] (what gateways, datad and the CLI use to talk to metad).

// openraft's StorageError is large and its traits require returning it.
#![allow(clippy::result_large_err)]

mod apply;
#[cfg(test)]
mod apply_tests;
mod audit;
#[cfg(test)]
mod audit_tests;
mod classes;
pub(crate) mod damage;
pub mod disk_backend;
pub mod durability;
mod effects;
pub mod envelope;
pub mod error;
pub mod group_commit;
pub mod health;
pub mod lifecycle;
pub mod limits;
pub mod liveness;
#[cfg(test)]
mod migration_tests;
pub mod netmap;
pub mod network;
pub mod node;
mod placement_walk;
pub mod queries;
pub mod raft_log;
pub mod raft_runtime;
mod requests;
pub mod residency;
pub mod seal;
mod segment_index;
pub mod server;
mod shard_moves;
pub(crate) mod snapshot;
pub mod space;
pub mod state_machine;
mod tables;
mod tiering;
pub mod transition;
pub(crate) mod versioning;
pub mod warm;

use std::io::Cursor;
use weft_common::rpc::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Raft types of the metadata group.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        AsyncRuntime = crate::raft_runtime::WeftRuntime,
);

/// The raft handle type.
pub type Raft = openraft::Raft<TypeConfig>;
/// Raft node id (distinct from data-node ids).
pub type RaftNodeId = u64;

pub use health::RaftFatal;
pub use node::{start, start_with_fs, MetadConfig, MetadError, MetadHandle};

/// Allow [`Cursor`] in the macro expansion without an unused-import lint when
/// the defaults change.
#[allow(dead_code)]
type SnapshotData = Cursor<Vec<u8>>;
