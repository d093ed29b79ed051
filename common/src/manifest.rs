//! What metad stores about buckets, object versions and keys.
//!
//! An object version is immutable once committed; its manifest lists the
//! segments that hold its bytes and where each shard lives.

use crate::profile::Layout;
use crate::{NodeId, SegmentId, VersionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One segment of an object: a contiguous byte range with its own placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Names the shard files.
    pub id: SegmentId,
    /// Offset of the segment's first byte within the object.
    pub offset: u64,
    /// Bytes of object data in the segment.
    pub len: u64,
    /// How the bytes are spread.
    pub layout: Layout,
    /// Node holding each shard index; `None` where the write did not reach a
    /// node (the segment is then below full redundancy and needs repair).
    pub shards: Vec<Option<NodeId>>,
    /// Length of each shard file.
    pub shard_len: u64,
    /// Which nodes may hold its shards, fixed by its class when written;
    /// absent for segments from before classes were data (any node,
    /// spread over zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::storage_class::PlacementRule>,
    /// Extra copies of shards warmed into zones (see [`crate::warm`]);
    /// only in manifests read back with current placement overlaid, never
    /// in a committed one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<crate::warm::CacheCopy>,
}

impl Segment {
    /// Shards that were written.
    pub fn shards_present(&self) -> usize {
        self.shards.iter().filter(|s| s.is_some()).count()
    }
}

/// Standard HTTP content headers S3 stores with an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// One immutable version of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Never reused.
    pub version_id: VersionId,
    /// Object size in bytes.
    pub size: u64,
    /// S3 ETag value without quotes: MD5 hex of the body for a single PUT.
    pub etag: String,
    /// crc32c of the whole body, checked end to end on full reads.
    pub crc32c: u32,
    /// Commit time, milliseconds since the Unix epoch (stamped by the gateway).
    pub last_modified_ms: u64,
    /// Storage class name.
    pub storage_class: String,
    /// `x-amz-meta-*` user metadata (names lowercase, without the prefix).
    pub user_metadata: BTreeMap<String, String>,
    /// Content headers.
    pub content: ContentHeaders,
    /// S3 additional checksums (algorithm name → base64 value) the client
    /// asked for, verified on upload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// `FULL_OBJECT` or `COMPOSITE` (multipart), when checksums are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// The S3 version id clients see: the hex id in a bucket with versioning
    /// enabled, `null` when suspended, absent in an unversioned bucket.
    /// Stamped by metad's apply from the bucket's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// Sizes of the parts of a multipart object, in order (empty for a
    /// single PUT), for `partNumber` reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_sizes: Vec<u64>,
    /// Object tags (mutable, unlike everything else in a version).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Segments in object order.
    pub segments: Vec<Segment>,
    /// The access tier an `INTELLIGENT_TIERING` version sits in, below
    /// the frequent one (see [`crate::lifecycle::tiering`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<crate::lifecycle::tiering::AccessTier>,
    /// The last read a gateway reported, ms (coarse: gateways send a read
    /// of the same version at most once per fraction of a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_access_ms: Option<u64>,
}

impl ObjectVersion {
    /// When it was last written or read, ms: what idle time counts from.
    pub fn touched_ms(&self) -> u64 {
        self.last_access_ms
            .map_or(self.last_modified_ms, |a| a.max(self.last_modified_ms))
    }
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Bucket name.
    pub name: String,
    /// Access key id of the key that created it: only it (and root) may use it
    /// until policies arrive.
    pub owner: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Bucket tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `Enabled` or `Suspended` once versioning was ever configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// Lifecycle rules (`PutBucketLifecycleConfiguration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::lifecycle::LifecycleConfig>,
    /// Tiering by access: Intelligent-Tiering configurations and unread
    /// rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiering: Option<crate::lifecycle::tiering::Tiering>,
    /// Where the bucket's bytes may be (data residency); none: anywhere
    /// its classes place them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<crate::residency::Residency>,
}

/// One entry of an object's version history in a versioned bucket: a
/// version or a delete marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The S3 version id (`null` or hex).
    pub version_id: String,
    /// The version; `None` for a delete marker.
    pub version: Option<ObjectVersion>,
    /// When it was written, ms since the epoch.
    pub last_modified_ms: u64,
    /// For a delete marker, the id of the command that wrote it: in a
    /// suspended bucket the marker's S3 id is `null`, and this is how a
    /// repeated delete recognises its own marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_id: Option<crate::VersionId>,
}

impl VersionRecord {
    /// Whether this entry is a delete marker.
    pub fn is_delete_marker(&self) -> bool {
        self.version.is_none()
    }
}

/// An S3 access key. Its `Debug` leaves the secret out, so no log line
/// that prints a command or a query answer can carry one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// Public id (`AKIA…`-like).
    pub access_key: String,
    /// Shared secret for SigV4.
    pub secret_key: String,
    /// Human name, unique.
    pub name: String,
    /// Root keys may act on every bucket and administer the cluster.
    pub root: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadPart {
    /// Part number, 1..=10000.
    pub part_number: u32,
    /// MD5 hex of the part body.
    pub etag: String,
    /// Part size in bytes.
    pub size: u64,
    /// crc32c of the part body.
    pub crc32c: u32,
    /// Upload time, ms since the epoch.
    pub last_modified_ms: u64,
    /// Verified additional checksums of the part body.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// Segments holding the part (offsets relative to the part).
    pub segments: Vec<Segment>,
}

impl Upload {
    /// The part with this number.
    pub fn part(&self, n: u32) -> Option<&UploadPart> {
        self.parts
            .binary_search_by_key(&n, |p| p.part_number)
            .ok()
            .map(|i| &self.parts[i])
    }

    /// Adds or replaces a part, keeping the order; returns the replaced one.
    pub fn put_part(&mut self, part: UploadPart) -> Option<UploadPart> {
        match self
            .parts
            .binary_search_by_key(&part.part_number, |p| p.part_number)
        {
            Ok(i) => Some(std::mem::replace(&mut self.parts[i], part)),
            Err(i) => {
                self.parts.insert(i, part);
                None
            }
        }
    }
}

/// A multipart upload in progress. Completing it turns its parts' segments
/// into the new version's manifest without copying data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Upload id (random hex).
    pub upload_id: String,
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Start time, ms since the epoch.
    pub initiated_ms: u64,
    /// Storage class name.
    pub storage_class: String,
    /// User metadata for the final object.
    pub user_metadata: BTreeMap<String, String>,
    /// Content headers for the final object.
    pub content: ContentHeaders,
    /// Checksum algorithm the upload was created with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE`, if an algorithm is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Tags for the final object (`x-amz-tagging` at creation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Parts in part-number order (a list, not a map: JSON map keys are
    /// strings, and internally tagged enums cannot read them back as numbers).
    pub parts: Vec<UploadPart>,
}
