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
    /// Segments in object order.
    pub segments: Vec<Segment>,
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
}

/// An S3 access key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
