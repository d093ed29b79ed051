//! Raft commands, their results, and the refusals apply can answer.

use super::format::{command_format_v1, is_command_format_v1};
use crate::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, UploadPart};
use crate::topology::NodeInfo;
use crate::NodeId;
use serde::{Deserialize, Serialize};

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
    /// Seals a key's secret again under the current master key: after a
    /// rotation (so the previous key can be retired) or for a secret kept
    /// in clear from before sealing existed. A compare-and-set: on the
    /// sealed value it replaces, or, for a secret in clear (which must not
    /// enter the log, nor anything derived from it), on the record being
    /// the same key (its creation time) still in clear. A stale one
    /// changes nothing. Proposed by the metad leader only.
    ResealKey {
        /// The key record.
        access_key: String,
        /// The record's creation time: a key deleted and re-created under
        /// the same id is another record.
        created_ms: u64,
        /// The sealed value it replaces; `None` for a secret in clear.
        from: Option<String>,
        /// The secret sealed under the current master key.
        sealed: String,
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
    /// Set or remove a bucket's lifecycle rules.
    SetBucketLifecycle {
        /// Bucket name.
        bucket: String,
        /// The rules; `None` removes them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<crate::lifecycle::LifecycleConfig>,
    },
    /// Set or remove one of a bucket's Intelligent-Tiering configurations
    /// (`config` `None` removes `id`), or replace its unread rules.
    SetBucketTiering {
        /// Bucket name.
        bucket: String,
        /// What changes.
        change: crate::lifecycle::tiering::TieringChange,
    },
    /// Set (or, with `None`, clear) a bucket's data residency. A change
    /// starts a migration of every storage class, whose walk re-places the
    /// bucket's segments that sit outside it; setting the same residency
    /// again changes nothing.
    SetBucketResidency {
        /// Bucket name.
        bucket: String,
        /// Where its bytes may be.
        residency: Option<crate::residency::Residency>,
    },
    /// Reads gateways noted, batched (never one entry per GET): each
    /// version's last access becomes the later of what it was and the
    /// read's time, so applying it again changes nothing.
    RecordAccess {
        /// The reads.
        reads: Vec<crate::lifecycle::tiering::Read>,
    },
    /// One lifecycle action on `bucket/key`, proposed by the metad leader's
    /// scan. Apply plans the key again against the bucket's rules as they
    /// are now, at `at_ms`, and acts only if the same step is still due: a
    /// write, a tag change or a rule change since the scan wins.
    Lifecycle {
        /// Bucket name.
        bucket: String,
        /// Object key (the upload's key for an abort).
        key: String,
        /// What to do.
        step: crate::lifecycle::Step,
        /// Leader time of the scan, ms: the time the rules are judged at.
        at_ms: u64,
    },
    /// A transition's commit, from the data node that wrote the new
    /// shards: replace version `version_id` of `bucket/key`'s segments,
    /// if they are still exactly `segments`' old ids and it is still in
    /// `from_class`, with the new ones, and make its class `to_class`
    /// (compare-and-set: an overwrite, delete or other move since the task
    /// was planned wins, and the new shards become garbage). A pair whose
    /// new segment keeps the old id is a relabel: the shards stay and take
    /// the new segment's placement rule. With `step`, the lifecycle step
    /// that planned it must still be due at `at_ms`. Everything else about
    /// the version (ETag, version id, metadata, tags, checksums) stays.
    TransitionVersion {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// The version (internal id).
        version_id: crate::VersionId,
        /// The class it must still be in.
        from_class: String,
        /// The class it moves to.
        to_class: String,
        /// (old segment id, new segment), in object order.
        segments: Vec<(crate::SegmentId, crate::manifest::Segment)>,
        /// The lifecycle step that planned it, re-checked at `at_ms`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<crate::lifecycle::Step>,
        /// Leader time the task was planned at, ms.
        at_ms: u64,
    },
    /// A class migration (`weft class set --migrate`) is over: every
    /// segment of the class fits `class`, its definition. Ends the
    /// migration only if that is still the definition being migrated to.
    FinishClassMigration {
        /// The definition the walk found every segment fitting.
        class: crate::storage_class::StorageClass,
        /// The residency epoch the walk ran under (see
        /// `SetBucketResidency`): a residency change since makes the walk
        /// stale, so it ends nothing.
        #[serde(default, skip_serializing_if = "is_zero")]
        epoch: u64,
    },
    /// Where the leader's lifecycle pass stands, saved after each tick
    /// that moved it, so a new leader resumes the pass.
    SetLifecycleCursor {
        /// The cursor.
        cursor: crate::lifecycle::Cursor,
    },
    /// The length of a lifecycle day, set once by a new cluster's first
    /// leader from its config: every voter then judges rules by the same
    /// day, whatever its own config says.
    SeedLifecycleDay {
        /// Milliseconds.
        day_ms: u64,
    },
    /// Install the storage classes only while none are set: how a new
    /// cluster's first leader seeds them from its config.
    SeedStorageClasses {
        /// The classes.
        classes: Vec<crate::storage_class::StorageClass>,
    },
    /// Add or replace one storage class. New writes use it; segments
    /// already written keep the placement rule they were written under.
    PutStorageClass {
        /// The class.
        class: crate::storage_class::StorageClass,
        /// Also move the data already in the class to this definition
        /// (the metad leader walks the segment index and re-places what
        /// does not fit, as transitions do).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        migrate: bool,
    },
    /// Delete a storage class: refused for `STANDARD` and for a class that
    /// still holds segments.
    DeleteStorageClass {
        /// Its name.
        name: String,
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
        /// Who asked: the principal the proposer vouches for, and the
        /// proposer, which metad's command endpoint stamps from the
        /// caller's certificate (whatever the client sent is replaced).
        /// Format 2; the audit chain records it (`crate::audit`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<crate::audit::Actor>,
    },
    /// Events a process reports for the audit chain (authentication
    /// failures and denials it saw, batched and rate-limited by the
    /// reporter). Format 2. Each is appended as sent, with the reporting
    /// process (the wrapping request's stamped proposer) named in its actor.
    Audit {
        /// The events, oldest first.
        events: Vec<crate::audit::AuditEvent>,
    },
    /// A checkpoint the leader signed over the chain's entry `seq`; applied
    /// only if that entry still holds the signed hash. Format 2.
    AuditCheckpoint {
        /// The signed checkpoint.
        checkpoint: crate::audit::AuditCheckpoint,
    },
    /// Turn recording of object writes and deletes in the audit chain on
    /// or off (administrative changes, failures and denials are always
    /// recorded). Format 2.
    SetAuditConfig {
        /// Record data-plane writes and deletes.
        data_plane: bool,
    },
    /// Drop audit entries up to and including `through`, which a
    /// checkpoint must cover (that checkpoint, and every other, is kept).
    /// Refused as stale if none does. At most [`AUDIT_PRUNE_MAX`] entries
    /// go per command; the caller repeats it. Format 2.
    AuditPrune {
        /// The last entry to drop.
        through: u64,
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
    /// Keep `warm`'s dataset readable in its zone without crossing zones
    /// (`weft warm`): replaces a warm of the same zone, bucket and prefix.
    /// Refused if the bucket is missing, the zone has no data node, or the
    /// bucket's residency keeps its bytes out of the zone.
    Warm {
        /// The warm.
        warm: crate::warm::Warm,
    },
    /// Stop keeping a dataset warm; its cache copies are dropped by the
    /// leader's next pass. With `created_ms`, only the warm asked for then
    /// (an expiry or eviction judged against an older request leaves a
    /// newer one alone).
    DropWarm {
        /// Zone.
        zone: String,
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
        /// The request it was judged against, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_ms: Option<u64>,
    },
    /// Data node `node` wrote shard `index` of `segment` as a cache copy
    /// for its zone: record it, unless the segment is gone (the file is
    /// then garbage) or `node` already holds that index (placed or cached).
    AddCacheCopy {
        /// Segment.
        segment: crate::SegmentId,
        /// Shard index.
        index: u8,
        /// The node that holds the copy durably.
        node: NodeId,
    },
    /// Forget cache copies of `segment` (no warm covers them any more, the
    /// version is no longer current, the zone is out of the bucket's
    /// residency or over its budget); their files become garbage.
    DropCacheCopies {
        /// Segment.
        segment: crate::SegmentId,
        /// `(index, node)` of each copy.
        copies: Vec<(u8, NodeId)>,
    },
}

/// How long metad remembers an applied request, in proposer time. A client
/// must stop retrying one request well before this (the metad client's
/// deadline is capped at a quarter of it).
pub const REQUEST_RETENTION_MS: u64 = 10 * 60 * 1000;

/// Most audit entries one [`Command::AuditPrune`] removes, so one raft
/// entry's apply stays short however long the chain.
pub const AUDIT_PRUNE_MAX: u64 = 10_000;

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

impl CommandResult {
    /// Whether the command was refused.
    pub fn is_refused(&self) -> bool {
        matches!(self, CommandResult::Refused { .. })
    }
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
    /// A storage class change that cannot be made; `message` says why and
    /// what to do.
    ClassRefused {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A warm that cannot be kept; `message` says why.
    WarmRefused {
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
