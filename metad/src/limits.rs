//! Every hard-coded limit of metad, named and documented in one place (as
//! TigerBeetle keeps its constants): what bounds request bodies, queues,
//! batches and background pruning. Settings an operator tunes live in
//! `MetadConfig` (node.rs) with their defaults; these are the fixed bounds
//! the code is built around.

use std::time::Duration;

/// Largest raft RPC body: `max_payload_entries` entries of at most
/// `BATCH_COMMANDS_MAX` commands each, or one snapshot chunk.
pub const RAFT_BODY_BYTES_MAX: usize = 512 << 20;

/// Largest API request body (one command or query).
pub const API_BODY_BYTES_MAX: usize = 16 << 20;

/// Most expired records dropped each time the request clock advances:
/// enough to keep up with far more than 64 requests per millisecond (one
/// insert each), small enough never to stall one apply.
pub const PRUNE_PER_APPLY: usize = 64;

/// A forward step of the request clock worth a warning.
pub const CLOCK_JUMP_WARN_MS: u64 = 60_000;

/// Extra time a node never heard from since the epoch stays up: datads find
/// a new leader by following redirects, which takes a few heartbeats.
pub const UNSEEN_ALLOWANCE: Duration = Duration::from_secs(2);

/// Most queued jobs one transaction takes.
pub const GROUP_JOBS_MAX: usize = 4096;

/// Entries proposed but not yet applied.
pub const INFLIGHT_ENTRIES_MAX: usize = 2;

/// Most commands in one entry.
pub const BATCH_COMMANDS_MAX: usize = 256;

/// Commands waiting for a batch.
pub const COMMAND_QUEUE_MAX: usize = 8192;

/// Page cache of a database opened without a configured size (tests, the
/// bench harness and offline tools): small, since those open many.
pub const DEFAULT_TOOL_CACHE_BYTES: usize = 64 << 20;
