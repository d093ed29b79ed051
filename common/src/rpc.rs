//! Messages of the internal RPC: JSON over HTTP for control, raw byte streams
//! for shard data. See docs/decisions.md for why HTTP rather than gRPC.

use crate::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, UploadPart, VersionRecord};
use crate::topology::{NodeInfo, NodeView};
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
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create a bucket.
    CreateBucket {
        /// The bucket.
        bucket: BucketInfo,
    },
    /// Delete an empty bucket.
    DeleteBucket {
        /// Bucket name.
        name: String,
    },
    /// Make `version` the current version of `bucket/key`.
    PutObject {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// The new version.
        version: ObjectVersion,
        /// Apply only if the current version satisfies this (S3 conditional
        /// writes), checked atomically with the write.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<WriteCondition>,
    },
    /// Remove the current version of `bucket/key` (in a versioned bucket:
    /// add a delete marker).
    DeleteObject {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Id and time for the delete marker, used if the bucket is versioned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marker: Option<(crate::VersionId, u64)>,
    },
    /// Remove one version (or delete marker) of `bucket/key` for good.
    DeleteObjectVersion {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// S3 version id (`null` or hex).
        version_id: String,
    },
    /// Set a bucket's versioning state (`Enabled` or `Suspended`).
    SetBucketVersioning {
        /// Bucket name.
        bucket: String,
        /// New state.
        status: String,
    },
    /// Start a multipart upload.
    CreateUpload {
        /// The upload (with no parts).
        upload: Upload,
    },
    /// Add or replace one part of an upload.
    PutPart {
        /// Upload id.
        upload_id: String,
        /// The part (with its number).
        part: UploadPart,
    },
    /// Finish an upload: if every listed part still has the listed ETag,
    /// make `version` current and drop the upload. The result lists the
    /// segments no longer referenced (unlisted parts, the replaced version).
    CompleteUpload {
        /// Upload id.
        upload_id: String,
        /// Bucket of the upload (to recognise a retry after success).
        bucket: String,
        /// Key of the upload.
        key: String,
        /// Parts used, in order, with the ETags the client named.
        parts: Vec<(u32, String)>,
        /// The new version. Its `segments` and `part_sizes` are ignored:
        /// apply builds them from the parts metad holds when it commits, and
        /// refuses the command if their sizes no longer add up to `size`.
        version: ObjectVersion,
        /// As for `PutObject`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<WriteCondition>,
    },
    /// Replace the tag set of the current version of an object.
    SetObjectTags {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// The tags (empty removes them).
        tags: std::collections::BTreeMap<String, String>,
    },
    /// Replace the tag set of a bucket.
    SetBucketTags {
        /// Bucket name.
        bucket: String,
        /// The tags (empty removes them).
        tags: std::collections::BTreeMap<String, String>,
    },
    /// Drop an upload and report its parts' segments for deletion.
    AbortUpload {
        /// Upload id.
        upload_id: String,
    },
    /// Add a data node, or update its zone, address or capacity.
    RegisterNode {
        /// The node.
        node: NodeInfo,
    },
    /// Add an access key.
    CreateKey {
        /// The key.
        key: AccessKey,
    },
    /// Remove an access key by name.
    DeleteKey {
        /// Key name.
        name: String,
    },
    /// Point shard `index` of `segment` at `to`, if it still points at `from`
    /// (compare-and-set, so a stale repair or a race with a delete is refused).
    MoveShard {
        /// Segment.
        segment: crate::SegmentId,
        /// Shard index.
        index: u8,
        /// Expected current holder.
        from: Option<NodeId>,
        /// New holder, which has the shard durably written.
        to: NodeId,
    },
    /// Forget that `node` holds shard `index` of `segment` (its file is
    /// missing), so repair rebuilds it elsewhere. Bad blocks in a file that
    /// is there are reported with `ReportDamage` instead.
    DropShard {
        /// Segment.
        segment: crate::SegmentId,
        /// Shard index.
        index: u8,
        /// The node the shard was expected on.
        node: NodeId,
    },
    /// Set a node's administrative state (drain, remove, reactivate).
    SetNodeAdmin {
        /// Node.
        node: NodeId,
        /// New state.
        admin: crate::topology::NodeAdmin,
    },
    /// Change the repair rate and priority.
    SetRepairConfig {
        /// New settings.
        config: crate::repair::RepairConfig,
    },
    /// Set the cluster's upload timers, which gateways and data nodes read
    /// from metad (see `upload_timers`). Refused if unsafe. With `seed`,
    /// applied only while none are set: how a new cluster's first leader
    /// installs the values from its config, without overriding an operator's
    /// later change when another voter with a different config leads.
    SetUploadTimers {
        /// New upload age; left out, it keeps its value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload_max_age_ms: Option<u64>,
        /// New grace; left out, it keeps its value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gc_grace_ms: Option<u64>,
        /// Only if none are set yet.
        #[serde(default)]
        seed: bool,
        /// Proposer wall time, ms: when the previous age's protection
        /// starts to run out (`upload_timers::TimersRecord`).
        at_ms: u64,
    },
    /// Several commands in one raft entry, applied in order: group commit.
    /// Each gets its own result, as if proposed alone.
    Batch {
        /// The commands.
        commands: Vec<Command>,
    },
    /// A client's command with the identity all its retries share. metad
    /// applies it once: a retry that finds the id already applied gets the
    /// first answer back with nothing released (the first caller may never
    /// have seen that answer; garbage collection reclaims what it would have
    /// freed). The metad client wraps every command it sends.
    Request {
        /// Chosen once by the client, before the first attempt.
        id: crate::RequestId,
        /// Leader time when proposed, ms since the epoch: the leader
        /// overwrites whatever the client sent, and metad forgets a request
        /// once the newest applied request is [`REQUEST_RETENTION_MS`]
        /// younger.
        at_ms: u64,
        /// The command.
        command: Box<Command>,
        /// Format of this request and its command (docs/decisions.md,
        /// "Formats and rolling upgrades"). Absent in entries written
        /// before formats were numbered, which are format 1, and left out
        /// of format 1's encoding, so it is byte for byte what it was.
        #[serde(
            default = "command_format_v1",
            skip_serializing_if = "is_command_format_v1"
        )]
        format: u32,
    },
    /// `node` found bad blocks in its file of shard `index` of `segment`:
    /// add them to the slot's recorded damage, so repair rewrites them. A
    /// union: the same report applied twice changes nothing. Refused as
    /// stale if the slot no longer names `node`.
    ReportDamage {
        /// Segment.
        segment: crate::SegmentId,
        /// Shard index.
        index: u8,
        /// The node whose file has the bad blocks.
        node: NodeId,
        /// The bad blocks.
        damage: crate::damage::BlockDamage,
    },
    /// `node` rewrote these blocks of its file of shard `index` with verified
    /// bytes: remove exactly them from the slot's recorded damage (blocks
    /// reported meanwhile stay). Refused as stale if the slot no longer
    /// names `node`.
    DamageRepaired {
        /// Segment.
        segment: crate::SegmentId,
        /// Shard index.
        index: u8,
        /// The node that repaired its file.
        node: NodeId,
        /// The blocks now good.
        damage: crate::damage::BlockDamage,
    },
}

/// The newest raft command format this binary reads and writes. A voter
/// that meets a newer one stops its raft core rather than apply what it
/// cannot fully read.
pub const COMMAND_FORMAT: u32 = 1;

fn command_format_v1() -> u32 {
    1
}

fn is_command_format_v1(format: &u32) -> bool {
    *format == 1
}

/// Format of internal RPC bodies (metad's API and raft RPC, datad's shard
/// API), sent in [`FORMAT_HEADER`]; absent means format 1.
pub const RPC_FORMAT: u32 = 1;

/// The header an internal request names its body's format in.
pub const FORMAT_HEADER: &str = "x-weft-format";

/// A request whose format this process cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Not a number.
    #[error("{FORMAT_HEADER}: {0:?} is not a format number")]
    Malformed(String),
    /// Newer than this binary reads.
    #[error("internal request format {0} is newer than this process reads ({RPC_FORMAT}); upgrade metad voters first, then data nodes and gateways (docs/decisions.md, \"Formats and rolling upgrades\")")]
    Newer(u32),
}

/// Checks a request's [`FORMAT_HEADER`] value.
pub fn check_rpc_format(header: Option<&str>) -> Result<(), FormatError> {
    let Some(v) = header else { return Ok(()) };
    let n: u32 = v
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| FormatError::Malformed(v.to_string()))?;
    if n > RPC_FORMAT {
        return Err(FormatError::Newer(n));
    }
    Ok(())
}

/// How long metad remembers an applied request, in proposer time. A client
/// must stop retrying one request well before this (the metad client's
/// deadline is capped at a quarter of it).
pub const REQUEST_RETENTION_MS: u64 = 10 * 60 * 1000;

impl CommandResult {
    /// The answer a repeated request gets: the same outcome, but releasing
    /// nothing, because whatever the first application freed may have been
    /// reused or deleted since, and a stale release list must never reach a
    /// caller that would delete shards by it.
    pub fn without_releases(&self) -> CommandResult {
        match self {
            CommandResult::Replaced { .. } => CommandResult::Replaced { previous: None },
            CommandResult::Released { .. } => CommandResult::Released { segments: vec![] },
            CommandResult::VersionDeleted { delete_marker, .. } => CommandResult::VersionDeleted {
                released: None,
                delete_marker: delete_marker.clone(),
            },
            CommandResult::Batch { results } => CommandResult::Batch {
                results: results
                    .iter()
                    .map(CommandResult::without_releases)
                    .collect(),
            },
            other => other.clone(),
        }
    }

    /// Segment ids this result releases (for checks and tests).
    pub fn released_segments(&self) -> Vec<crate::SegmentId> {
        match self {
            CommandResult::Replaced { previous: Some(v) }
            | CommandResult::VersionDeleted {
                released: Some(v), ..
            } => v.segments.iter().map(|s| s.id).collect(),
            CommandResult::Released { segments } => segments.iter().map(|s| s.id).collect(),
            CommandResult::Batch { results } => results
                .iter()
                .flat_map(CommandResult::released_segments)
                .collect(),
            _ => vec![],
        }
    }
}

/// A precondition on the current version of a key (S3 conditional writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "if", content = "etag", rename_all = "snake_case")]
pub enum WriteCondition {
    /// `If-None-Match: *`: only if the key has no current version.
    NoneMatchAny,
    /// `If-Match: <etag>`: only if the current version has this ETag.
    Match(String),
}

/// The one statement of S3's conditional-write rule, used by metad when it
/// applies a write (atomically with it) and by the gateway before it stores
/// data (so a write bound to fail costs no shards): `If-None-Match: *`
/// fails if the key has a current version; `If-Match` fails if there is
/// none (NoSuchKey) or its ETag differs. No condition never refuses.
pub fn condition_refusal(
    condition: Option<&WriteCondition>,
    current: Option<&crate::manifest::ObjectVersion>,
) -> Option<Refusal> {
    match (condition?, current) {
        (WriteCondition::NoneMatchAny, Some(_)) => Some(Refusal::PreconditionFailed),
        (WriteCondition::NoneMatchAny, None) => None,
        (WriteCondition::Match(_), None) => Some(Refusal::NoSuchKey),
        (WriteCondition::Match(etag), Some(v)) if &v.etag != etag => {
            Some(Refusal::PreconditionFailed)
        }
        (WriteCondition::Match(_), Some(_)) => None,
    }
}

/// Outcome of applying a [`Command`]. Refusals are deterministic results, not
/// failures: every replica refuses the same command the same way.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResult {
    /// Applied.
    Done,
    /// Applied; carries the version it replaced or removed, if any.
    Replaced {
        /// The previous current version.
        previous: Option<ObjectVersion>,
    },
    /// Applied; these segments are no longer referenced and may be deleted.
    Released {
        /// Unreferenced segments.
        segments: Vec<crate::manifest::Segment>,
    },
    /// A delete in a versioned bucket, or of one version.
    VersionDeleted {
        /// A version whose data is no longer referenced.
        released: Option<ObjectVersion>,
        /// The version id of the delete marker created or removed, if any.
        delete_marker: Option<String>,
    },
    /// Results of a `Batch`, in order.
    Batch {
        /// One result per command.
        results: Vec<CommandResult>,
    },
    /// Not applied, for the reason given.
    Refused {
        /// Why.
        refusal: Refusal,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The bucket exists; `owner` is its owner's access key.
    BucketExists {
        /// Owner of the existing bucket.
        owner: String,
    },
    /// No such bucket.
    NoSuchBucket,
    /// The bucket still has objects.
    BucketNotEmpty,
    /// A key with this name or access key exists.
    KeyExists,
    /// No key of that name.
    NoSuchKeyName,
    /// The root key cannot be deleted.
    KeyIsRoot,
    /// No upload with that id.
    NoSuchUpload,
    /// A write condition did not hold.
    PreconditionFailed,
    /// The key has no current version.
    NoSuchKey,
    /// A listed part is missing or its ETag differs.
    InvalidPart {
        /// The part number.
        part_number: u32,
    },
    /// The state the command was based on has changed (a shard moved or its
    /// segment was deleted meanwhile).
    Stale,
    /// No registered node has that id.
    NoSuchNode,
    /// The node was removed from the cluster and cannot rejoin under its id.
    NodeRemoved,
    /// Upload timers that would let garbage collection remove uploads in
    /// flight; `message` names the fix.
    UnsafeTimers {
        /// What is wrong and how to fix it.
        message: String,
    },
}

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
    },
    /// For `ShardsHeld`: one answer per pair asked about.
    ShardsHeld {
        /// `held[i]` answers `shards[i]`.
        held: Vec<bool>,
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
    /// For `UploadTimers`.
    UploadTimers {
        /// The timers.
        timers: crate::upload_timers::UploadTimers,
    },
}

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
