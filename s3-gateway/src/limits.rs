//! Every hard-coded limit of the gateway, named and documented in one place
//! (as TigerBeetle keeps its constants): what bounds waits, retries and
//! background work, and the S3 API's own limits. Settings an operator tunes
//! live in `GatewayConfig` (config.rs) with their defaults; these are the
//! fixed bounds the code is built around.

use std::time::Duration;

/// How long a shard writer may refuse a chunk before it is given up on.
pub const SHARD_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bad-shard reports to metad in flight at once.
pub const BAD_SHARD_REPORTS_MAX: usize = 64;

/// Longest a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a connection refused at the connection cap is kept to answer
/// its first request with 503 (slow clients must not hold the slot).
pub const REFUSED_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a refused connection's body is read and dropped, at most.
pub const LINGER_BYTES_MAX: usize = 1 << 20;

/// Time a refused connection's body is read and dropped, at most.
pub const LINGER_TIME_MAX: Duration = Duration::from_secs(1);

/// How long the S3 accept loop waits after a resource error.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long a lookup waits for metad when a last-known key can answer.
pub const STALE_LOOKUP_DEADLINE: Duration = Duration::from_secs(3);

/// How often a running gateway re-reads the limit.
pub const UPLOAD_AGE_REFRESH: Duration = Duration::from_secs(30);

/// How long a node this gateway could not reach is left out of placement,
/// so writes stop choosing a dead node before metad's failure detector
/// notices it (seconds).
pub const UNREACHABLE_AVOID: Duration = Duration::from_secs(5);

/// How long the status endpoint waits for metad before answering from its
/// last report: an operator asking during a partition gets an answer, not a
/// hang.
pub const DURABILITY_QUERY_DEADLINE: Duration = Duration::from_secs(3);

/// Largest single PUT, as in S3.
pub const PUT_BYTES_MAX: i64 = 5 << 30;

/// Longest key in bytes, as in S3.
pub const KEY_BYTES_MAX: usize = 1024;

/// Most user metadata (names plus values) in bytes, as in S3.
pub const USER_METADATA_BYTES_MAX: usize = 2048;

/// Smallest part except the last, as in S3.
pub const PART_BYTES_MIN: u64 = 5 << 20;

/// Most parts in one upload, as in S3.
pub const PARTS_MAX: i32 = 10_000;

/// Most keys in one listing page.
pub const LIST_KEYS_MAX: i32 = 1000;

/// Most tags on an object, as in S3.
pub const TAGS_OBJECT_MAX: usize = 10;

/// Most tags on a bucket, as in S3.
pub const TAGS_BUCKET_MAX: usize = 50;

/// How often the gateway refreshes its cluster map from metad.
pub const CLUSTER_MAP_REFRESH: Duration = Duration::from_millis(500);

/// How long an access key looked up in metad is cached.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// Delay between attempts to send a release batch to an unreachable node.
pub const RELEASE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Attempts to send one release batch before leaving it to GC.
pub const RELEASE_ATTEMPTS_MAX: u32 = 5;

/// While released shards wait for readers, their queue is looked at again
/// this often.
pub const RELEASE_PINNED_RECHECK: Duration = Duration::from_millis(200);

/// How long every release worker shares one snapshot of the read leases
/// (one walk over the reads in flight per this, not per worker and batch).
/// Shards released after a snapshot wait for the next one, so this adds at
/// most `RELEASE_PINNED_RECHECK` to a release.
pub const RELEASE_PINS_REUSE: Duration = Duration::from_millis(100);

/// A client that sends no request headers for this long (including an idle
/// keep-alive connection between requests) is disconnected.
pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// A client that sends no body bytes, or takes no response bytes, for this
/// long has stalled: its request ends (RequestTimeout, or a cut body) and
/// frees its admission slot, its shard writers and its read lease.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
