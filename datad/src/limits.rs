//! Every hard-coded limit of a data node, named and documented in one place
//! (as TigerBeetle keeps its constants): what bounds memory, queues, waits
//! and retries. Settings an operator tunes live in `DatadConfig` (node.rs)
//! with their defaults; these are the fixed bounds the code is built around.

/// Timeout of one control call to metad (register, heartbeat).
pub const METAD_CALL_TIMEOUT_MS: u64 = 2_000;

/// First delay between registration attempts; doubles up to the max.
pub const REGISTER_BACKOFF_MS_MIN: u64 = 100;

/// Longest delay between registration attempts.
pub const REGISTER_BACKOFF_MS_MAX: u64 = 5_000;

/// `NotLeader` redirects followed within one call.
pub const METAD_REDIRECTS_MAX: usize = 3;

/// Repeated metad failures are logged at WARN at most this often (else DEBUG).
pub const METAD_WARN_INTERVAL_MS: u64 = 30_000;

/// Most shards a datad remembers as recently read (about 100 bytes each).
pub const RECENT_READS_MAX: usize = 1_000_000;

/// How long a stopping datad waits for requests in flight.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Most bytes of a refused PUT's body read and dropped before replying.
///
/// A client still sending its body when the connection closes sees a broken
/// pipe, not our reply; reading the rest lets it see the error (disk full,
/// length mismatch) and tell a refusal from an unreachable node. Beyond this
/// many bytes the connection is simply closed.
pub const PUT_DRAIN_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Body chunks queued between a PUT's network reader and its disk writer.
pub const PUT_QUEUE_CHUNKS: usize = 8;

/// Verified blocks queued between a GET's disk reader and its network writer.
pub const GET_QUEUE_BLOCKS: usize = 4;

/// Largest range [`ShardStore::get_bytes`] collects into one buffer.
pub const GET_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest range [`ShardStore::get_verified`] reads.
pub const GET_VERIFIED_MAX: u64 = 16 * 1024 * 1024;

/// Stripes of the lock that serialises replace and delete of one file name.
pub const NAME_LOCKS: usize = 64;

/// Bytes fetched per request when copying a shard.
pub const COPY_CHUNK_BYTES: u64 = 1 << 20;

/// Blocks verified per read of a file (the throttle is charged between).
pub const SCRUB_CHUNK_BLOCKS: u32 = 16;

/// Pairs asked about per query.
pub const GC_BATCH: usize = 1000;
