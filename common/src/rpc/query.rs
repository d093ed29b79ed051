//! Metadata reads and their answers.

use crate::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, VersionRecord};
use crate::topology::NodeView;
use crate::NodeId;
use serde::{Deserialize, Serialize};

/// Every metadata read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// One bucket.
    Bucket {
        /// Bucket name.
        name: String,
    },
    /// All buckets.
    Buckets,
    /// The current version of an object.
    Object {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
    /// A page of a bucket listing.
    List(ListRequest),
    /// Multipart uploads in progress in a bucket whose key starts with `prefix`.
    Uploads {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// One version of an object by S3 version id.
    ObjectVersion {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// S3 version id.
        version_id: String,
    },
    /// Every version and delete marker under a prefix, key order then newest
    /// first, after (`key_marker`, `version_marker`).
    Versions {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
        /// Resume after this key (and version).
        key_marker: Option<String>,
        /// Resume after this version of `key_marker`.
        version_marker: Option<String>,
        /// Group keys sharing a prefix up to this string into common prefixes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delimiter: Option<String>,
        /// Most entries (versions, markers and common prefixes).
        max: u32,
    },
    /// One multipart upload.
    Upload {
        /// Upload id.
        upload_id: String,
    },
    /// Look up a key by access key id.
    AccessKey {
        /// Access key id.
        access_key: String,
    },
    /// All keys (secrets omitted by the API layer that exposes them).
    Keys,
    /// Registered nodes with liveness.
    Nodes,
    /// Which of these shards metad expects `node` to hold (for datad's
    /// garbage collector).
    ShardsHeld {
        /// The asking node.
        node: NodeId,
        /// `(segment, shard index)` pairs it has on disk.
        shards: Vec<(crate::SegmentId, u8)>,
    },
    /// A page of the segment index in id order, after `after`: where every
    /// referenced segment's shards are. For whole-cluster consistency
    /// checks (the simulator checks after every fault that each segment
    /// listed keeps k shard files where metad placed them).
    Segments {
        /// Resume strictly after this segment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<crate::SegmentId>,
        /// Most segments in the page.
        max: u32,
    },
    /// Redundancy of every segment (answered by the leader from a fresh scan).
    Durability,
    /// The raft view of this metad (answered locally, by any voter).
    Status,
    /// A digest of this voter's state machine and the index it covers
    /// (answered locally), to compare replicas.
    Digest,
    /// The upload and garbage-collection timers from metad's config
    /// (answered locally): gateways and data nodes take them from here so
    /// the two can never disagree (see [`crate::upload_timers`]).
    UploadTimers,
    /// The storage classes and what each holds (a leader read).
    StorageClasses,
    /// What `bucket`'s lifecycle rules would do now, without doing it, over
    /// at most `max_keys` keys (a leader read), and where the leader's
    /// lifecycle passes stand.
    LifecyclePreview {
        /// The bucket.
        bucket: String,
        /// Most keys to judge.
        max_keys: u32,
    },
    /// Audit chain entries with sequence numbers after `after`, oldest
    /// first, at most `max`.
    Audit {
        /// Last entry the caller has.
        after: u64,
        /// Most entries in the page.
        max: u32,
    },
    /// Audit checkpoints covering entries after `after`, oldest first, at
    /// most `max`.
    AuditCheckpoints {
        /// Last covered entry the caller has.
        after: u64,
        /// Most checkpoints in the page.
        max: u32,
    },
    /// The audit chain's head, its prune anchor, its settings, and the
    /// public keys checkpoints are signed with.
    AuditInfo,
    /// Every warm, with each zone's cache budget and use.
    Warms,
    /// Where the current versions under a prefix are: key, size and
    /// segments (current placement and cache copies) only, in key order
    /// after `after`, at most `max`: what `weft locate` and `weft warm`
    /// walk, without the rest of each manifest or the version history.
    Placements {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
        /// Resume after this key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most objects.
        max: u32,
    },
    /// [`Query::Placements`] as a [`crate::placement_table::PlacementTable`]:
    /// each distinct placement once, each segment as an index into them
    /// and its two lengths (no segment ids). What `weft locate` and `weft
    /// warm status` walk; answered by metads from 2026-12 on (upgrade
    /// metad before gateways).
    PlacementTable {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
        /// Resume after this key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most objects.
        max: u32,
    },
}

/// Where a listing resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ListMarker {
    /// Resume after this key.
    Key(String),
    /// Resume after every key under this common prefix.
    Prefix(String),
}

/// A listing request, ListObjectsV2-shaped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Bucket name.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: String,
    /// Group keys sharing a prefix up to this string into common prefixes.
    pub delimiter: Option<String>,
    /// Start strictly after this point.
    pub after: Option<ListMarker>,
    /// Most entries (keys plus common prefixes) to return.
    pub max_keys: u32,
}

/// One key in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag value.
    pub etag: String,
    /// Commit time, ms since the epoch.
    pub last_modified_ms: u64,
    /// Storage class.
    pub storage_class: String,
}

/// A page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Keys in order.
    pub entries: Vec<ListEntry>,
    /// Common prefixes in order.
    pub common_prefixes: Vec<String>,
    /// Set when more results exist: resume after this.
    pub next: Option<ListMarker>,
}

/// One member of the metad group as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Raft id.
    pub id: u64,
    /// Address.
    pub addr: String,
    /// Voter (or learner).
    pub voter: bool,
    /// Highest log index known replicated to it (leader only).
    pub matched_index: Option<u64>,
}

/// Raft state of one metad, for `weft cluster status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This metad's raft node id.
    pub node_id: u64,
    /// Leader, Follower, Candidate or Learner.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Current leader, if known.
    pub leader: Option<u64>,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// Index covered by the last snapshot.
    pub snapshot_index: Option<u64>,
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Every member with its address and, on the leader, replication progress.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// This metad's disk: free space and whether it is in space-low mode.
    #[serde(default)]
    pub space: Option<crate::space::MetadSpace>,
}

/// Answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "a", rename_all = "snake_case")]
pub enum QueryResult {
    /// For `Bucket`.
    Bucket {
        /// The bucket if it exists.
        bucket: Option<BucketInfo>,
    },
    /// For `Buckets`.
    Buckets {
        /// All buckets by name.
        buckets: Vec<BucketInfo>,
    },
    /// For `Object`.
    Object {
        /// Whether the bucket exists.
        bucket_exists: bool,
        /// The current version, if any.
        version: Option<ObjectVersion>,
    },
    /// For `List`; `None` when the bucket does not exist.
    List {
        /// The page.
        page: Option<ListPage>,
    },
    /// For `ObjectVersion`.
    VersionRecord {
        /// Whether the bucket exists.
        bucket_exists: bool,
        /// The record, if it exists.
        record: Option<VersionRecord>,
    },
    /// For `Versions`: `(key, record, is_latest)`.
    Versions {
        /// Entries.
        entries: Vec<(String, VersionRecord, bool)>,
        /// Common prefixes (with a delimiter), in order.
        #[serde(default)]
        common_prefixes: Vec<String>,
        /// More exist after the last entry; resume after this key (and
        /// version, unless the last item was a common prefix).
        next: Option<(String, Option<String>)>,
    },
    /// For `Uploads`, ordered by key then initiation time.
    Uploads {
        /// The uploads (parts omitted).
        uploads: Vec<Upload>,
    },
    /// For `Upload`.
    Upload {
        /// The upload if it exists.
        upload: Option<Upload>,
    },
    /// For `AccessKey`.
    AccessKey {
        /// The key if it exists.
        key: Option<AccessKey>,
    },
    /// For `Keys`.
    Keys {
        /// All keys.
        keys: Vec<AccessKey>,
    },
    /// For `Nodes`.
    Nodes {
        /// Nodes by id.
        nodes: Vec<NodeView>,
        /// Set while the answering leader is in space-low mode: why it
        /// refuses commands that add data. Gateways refuse such writes
        /// before writing any shard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metad_space_low: Option<String>,
        /// The storage classes, so a gateway learns a class change with
        /// the map; empty until the first leader has seeded them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        classes: Vec<crate::storage_class::StorageClass>,
        /// Length of a lifecycle day in ms (0: a real day), for the
        /// `x-amz-expiration` gateways answer.
        #[serde(default, skip_serializing_if = "is_zero")]
        lifecycle_day_ms: u64,
        /// The measured zone × zone network costs (leader memory; empty
        /// until gateways have reported).
        #[serde(default, skip_serializing_if = "crate::netmap::NetMap::is_empty")]
        netmap: crate::netmap::NetMap,
    },
    /// For `ShardsHeld`: one answer per pair asked about.
    ShardsHeld {
        /// `held[i]` answers `shards[i]`.
        held: Vec<bool>,
    },
    /// For `Segments`: the page, in id order.
    Segments {
        /// `(segment, record)` pairs.
        segments: Vec<(crate::SegmentId, crate::repair::SegmentRecord)>,
        /// More follow the last one (ask again with it as `after`).
        more: bool,
    },
    /// For `Durability`.
    Durability {
        /// The report.
        status: crate::repair::DurabilityStatus,
    },
    /// For `Digest`.
    Digest {
        /// Last applied log index.
        applied_index: Option<u64>,
        /// Hex digest of every table.
        digest: String,
    },
    /// For `Status`.
    Status {
        /// Raft status.
        status: RaftStatus,
    },
    /// For `StorageClasses`.
    StorageClasses {
        /// The classes, `STANDARD` among them.
        classes: Vec<crate::storage_class::StorageClass>,
        /// Segments and bytes per class and bucket.
        usage: Vec<ClassUsageRow>,
        /// Classes whose data is being moved to their current definition.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        migrating: Vec<String>,
    },
    /// For `LifecyclePreview`.
    LifecyclePreview {
        /// Actions due now, in key order: (key, step).
        actions: Vec<(String, crate::lifecycle::Step)>,
        /// Keys judged.
        keys: u64,
        /// Whether every key of the bucket was judged.
        complete: bool,
        /// The cluster's lifecycle day, ms (0: not set yet).
        day_ms: u64,
        /// The leader's passes: how many finished since it was elected,
        /// and when the last one started and finished (ms since the epoch).
        passes: crate::lifecycle::Passes,
        /// The leader's transitions, every bucket's, since it was elected.
        #[serde(default)]
        transitions: crate::transition::TransitionStats,
        /// The last transition failure the leader saw.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transition_error: Option<String>,
    },
    /// For `UploadTimers`.
    UploadTimers {
        /// The timers.
        timers: crate::upload_timers::UploadTimers,
    },
    /// For `Audit`.
    Audit {
        /// The entries.
        entries: Vec<crate::audit::AuditEntry>,
    },
    /// For `AuditCheckpoints`.
    AuditCheckpoints {
        /// The checkpoints.
        checkpoints: Vec<crate::audit::AuditCheckpoint>,
    },
    /// For `AuditInfo`.
    AuditInfo {
        /// The chain's state.
        info: crate::audit::AuditInfo,
    },
    /// For `Placements`.
    Placements {
        /// The objects, in key order.
        objects: Vec<crate::locality::PlacedObject>,
        /// The key to resume after, if more follow.
        next: Option<String>,
    },
    /// For `PlacementTable`.
    PlacementTable {
        /// The page.
        table: crate::placement_table::PlacementTable,
        /// The key to resume after, if more follow.
        next: Option<String>,
    },
    /// For `Warms`.
    Warms {
        /// The warms, by zone, bucket and prefix.
        warms: Vec<crate::warm::Warm>,
        /// Cache budget and use per zone, as the leader last counted.
        zones: Vec<crate::warm::ZoneCache>,
        /// When each warm (in `warms`' order) was last used, ms: its last
        /// reported read from a cache copy, or its request (the leader's
        /// soft state; eviction takes the smallest first).
        #[serde(default)]
        last_used_ms: Vec<u64>,
    },
}

/// What one storage class holds in one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassUsageRow {
    /// The class.
    pub class: String,
    /// The bucket.
    pub bucket: String,
    /// Its counts.
    pub usage: crate::storage_class::ClassUsage,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
