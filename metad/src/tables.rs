//! Every table of the state machine, with the name its envelope errors use,
//! and the key layouts shared by apply, the queries, snapshots and the
//! segment index: one place, so no two modules can disagree on a layout.
//!
//! Values are sealed metadata ([`crate::envelope`]) in every table; the
//! legacy version counter is a bare `u64` redb checks itself.

use redb::TableDefinition;
use weft_common::SegmentId;

/// Buckets by name.
pub(crate) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
/// Current object versions by `bucket \0 key`.
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// Registered data nodes by id.
pub(crate) const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
/// Access keys by access key id.
pub(crate) const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Multipart uploads by upload id.
pub(crate) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// Applied index, membership and settings.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// Operator-set node states (drain, remove), apart from registrations so a
/// restarting datad re-registering cannot undo them.
pub(crate) const NODE_ADMIN: TableDefinition<u64, &[u8]> = TableDefinition::new("node_admin");
/// Client requests already applied, by request id: what a retry is answered.
pub(crate) const REQUESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("requests");
/// The same requests by `(at_ms, id)`, so expired records are pruned in order.
pub(crate) const REQUEST_AGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("request_ages");
/// Version history by `bucket \0 key \0 !seq` (see `versioning`).
pub(crate) const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");
/// Where databases from before the envelope kept the history counter, bare;
/// read only until the sealed copy exists.
pub(crate) const LEGACY_SEQ: TableDefinition<&str, u64> = TableDefinition::new("version_seq");
/// Current placement of every referenced segment by [`segment_key`]
/// (see `segment_index`).
pub(crate) const SEGMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("segments");

/// Warms by [`warm_key`] (see `warm`).
pub(crate) const WARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("warms");

/// Segments and bytes per storage class by `class \0 bucket`, derived from
/// the segment index (see `classes`).
pub(crate) const CLASS_USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("class_usage");

/// The audit chain by sequence number (see `audit`).
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Signed audit checkpoints by the sequence number they cover.
pub(crate) const AUDIT_CHECKPOINTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("audit_checkpoints");

pub(crate) const T_BUCKETS: &str = "buckets";
pub(crate) const T_OBJECTS: &str = "objects";
pub(crate) const T_NODES: &str = "nodes";
pub(crate) const T_KEYS: &str = "keys";
pub(crate) const T_UPLOADS: &str = "uploads";
pub(crate) const T_META: &str = "sm_meta";
pub(crate) const T_NODE_ADMIN: &str = "node_admin";
pub(crate) const T_REQUESTS: &str = "requests";
pub(crate) const T_REQUEST_AGES: &str = "request_ages";
pub(crate) const T_VERSIONS: &str = "versions";
pub(crate) const T_SEGMENTS: &str = "segments";
pub(crate) const T_AUDIT: &str = "audit";
pub(crate) const T_CLASS_USAGE: &str = "class_usage";
pub(crate) const T_AUDIT_CHECKPOINTS: &str = "audit_checkpoints";
pub(crate) const T_WARMS: &str = "warms";

pub(crate) const KEY_REPAIR_CONFIG: &str = "repair_config";
/// The cluster's upload timers (`Command::SetUploadTimers`).
pub(crate) const KEY_UPLOAD_TIMERS: &str = "upload_timers";
/// The storage classes (`Command::SeedStorageClasses` and its kin).
pub(crate) const KEY_STORAGE_CLASSES: &str = "storage_classes";
/// The cluster's lifecycle day in ms (`Command::SeedLifecycleDay`).
pub(crate) const KEY_LIFECYCLE_DAY: &str = "lifecycle_day_ms";
/// Classes being migrated to their current definition, with it.
pub(crate) const KEY_CLASS_MIGRATIONS: &str = "class_migrations";
/// Bumped by every residency change: a class migration's walk counts only
/// if no residency changed while it ran.
pub(crate) const KEY_RESIDENCY_EPOCH: &str = "residency_epoch";
/// Where the leader's lifecycle pass stands (`Command::SetLifecycleCursor`).
pub(crate) const KEY_LIFECYCLE_CURSOR: &str = "lifecycle_cursor";
/// Set once the class-usage table counts every indexed segment.
pub(crate) const KEY_CLASS_USAGE: &str = "class_usage_v1";
pub(crate) const KEY_SEGMENT_INDEX: &str = "segment_index_v1";
pub(crate) const KEY_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "membership";
/// Newest proposer time applied: the clock request records expire by.
pub(crate) const KEY_REQUEST_CLOCK: &str = "request_clock";
/// The history counter, sealed like every value (it orders history
/// entries: a flipped bit would reorder or overwrite them).
pub(crate) const KEY_VERSION_SEQ: &str = "version_seq";
/// The audit chain's newest entry: sequence number and hash.
pub(crate) const KEY_AUDIT_HEAD: &str = "audit_head";
/// The last pruned audit entry: sequence number and hash.
pub(crate) const KEY_AUDIT_ANCHOR: &str = "audit_anchor";
/// Audit settings (`Command::SetAuditConfig`).
pub(crate) const KEY_AUDIT_CONFIG: &str = "audit_config";

/// The key of an object in the object table.
pub(crate) fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The key of a warm: `zone \0 bucket \0 prefix`.
pub(crate) fn warm_key(zone: &str, bucket: &str, prefix: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(zone.len() + bucket.len() + prefix.len() + 2);
    k.extend_from_slice(zone.as_bytes());
    k.push(0);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(prefix.as_bytes());
    k
}

/// The first table key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(0xFF);
    k
}

/// The `OBJECTS` keys a walk of `bucket/prefix` resuming after the key
/// `after` reads: `[start, end)`, or `None` when nothing is left.
pub(crate) fn current_range(
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let lo = object_key(bucket, prefix);
    let hi = prefix_end(&lo);
    let start = match after {
        Some(a) if a >= prefix => {
            let mut k = object_key(bucket, a);
            // Just past `after`: the next key in byte order.
            k.push(0);
            k
        }
        _ => lo,
    };
    (start < hi).then_some((start, hi))
}

/// `bucket \0 key \0`: every history entry of one key starts with this.
pub(crate) fn history_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k
}

/// Table key of a segment: its id big-endian, so the scan order is stable.
pub(crate) fn segment_key(id: SegmentId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// The segment id in a segment table key; a key of another length is a
/// damaged table (named in the error, as a damaged value is), not a panic.
pub(crate) fn segment_id(key: &[u8]) -> Result<SegmentId, crate::envelope::CorruptValue> {
    let b: [u8; 16] = key.try_into().map_err(|_| {
        crate::envelope::CorruptValue::new(
            T_SEGMENTS,
            key,
            format!("a segment key is 16 bytes, this one {}", key.len()),
        )
    })?;
    Ok(SegmentId(u128::from_be_bytes(b)))
}
