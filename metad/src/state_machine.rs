//! The replicated state machine: buckets, object versions, nodes and keys in
//! redb, mutated only by [`apply`](StateMachine::apply) in log order.
//!
//! Keys of the object table are `bucket \0 key` so a bucket listing is a range
//! scan in key order, and a delimiter listing seeks past each common prefix
//! (`prefix ++ 0xFF` sorts after every UTF-8 continuation of it) instead of
//! reading the keys under it.
//!
//! `last_applied` and the membership are written in the same transaction as
//! the data they describe, so a crash never leaves them out of step.
//! Snapshots are a versioned JSON document of every table, written durably
//! beside the database.

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, VersionRecord};

use crate::envelope::{self, item, sealed, SealedRead};
use crate::error::MetaError;
use crate::segment_index::{self, SEGMENTS};
use crate::versioning::{self, VERSIONS};
use weft_common::repair::{RepairConfig, SegmentRecord};
use weft_common::rpc::{CommandResult, ListEntry, ListMarker, ListPage, ListRequest};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::upload_timers::UploadTimers;
use weft_common::{NodeId, SegmentId};

use crate::{RaftNodeId, TypeConfig};

use crate::tables::*;

/// Version of the snapshot document; bump and migrate when its shape changes.
pub const SNAPSHOT_FORMAT: u32 = 1;

type SE = StorageError<RaftNodeId>;
type Membership = StoredMembership<RaftNodeId, openraft::BasicNode>;

fn sm_read_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::read_state_machine(&e).into()
}
fn sm_write_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::write_state_machine(&e).into()
}

/// `(key, record, is_latest)` in a versions listing.
pub type VersionEntry = (String, VersionRecord, bool);

/// A page of a versions listing.
#[derive(Default)]
pub struct VersionPage {
    /// Versions and delete markers.
    pub entries: Vec<VersionEntry>,
    /// Common prefixes.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts, if there is one.
    pub next: Option<(String, Option<String>)>,
}

/// Every table, as one document: the snapshot payload.
#[derive(Serialize, Deserialize, Default)]
struct SnapshotDoc {
    format: u32,
    buckets: Vec<BucketInfo>,
    objects: Vec<(String, String, ObjectVersion)>,
    nodes: Vec<NodeInfo>,
    keys: Vec<AccessKey>,
    #[serde(default)]
    uploads: Vec<Upload>,
    /// Version history: (hex table key, record).
    #[serde(default)]
    versions: Vec<(String, VersionRecord)>,
    #[serde(default)]
    version_seq: u64,
    /// Current shard placement; absent in snapshots older than the index,
    /// which is then rebuilt from the manifests.
    #[serde(default)]
    segments: Option<Vec<(SegmentId, SegmentRecord)>>,
    #[serde(default)]
    node_admin: Vec<(u64, NodeAdmin)>,
    #[serde(default)]
    repair_config: Option<RepairConfig>,
    /// Absent in snapshots from before the timers were replicated; the
    /// leader then seeds them from its config.
    #[serde(default)]
    upload_timers: Option<UploadTimers>,
    /// Requests applied within the retention, so a retry that reaches a
    /// voter restored from this snapshot is still recognised.
    #[serde(default)]
    requests: Vec<(weft_common::RequestId, crate::requests::Record)>,
    #[serde(default)]
    request_clock: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine; clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    snapshot_path: PathBuf,
    /// Serialises snapshot writes and remembers the newest one written, so a
    /// build racing an install can never replace a newer snapshot.
    snapshot_written: Arc<std::sync::Mutex<Option<Option<LogId<RaftNodeId>>>>>,
}

impl StateMachine {
    /// Opens or creates the state machine under `dir`, with redb's default
    /// cache (tests and tools).
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        Self::open_with_cache(dir, crate::limits::DEFAULT_TOOL_CACHE_BYTES)
    }

    /// Opens or creates the state machine under `dir`, its page cache at
    /// most `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, MetaError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("state.redb"))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(BUCKETS)?;
            tx.open_table(OBJECTS)?;
            tx.open_table(NODES)?;
            tx.open_table(KEYS)?;
            tx.open_table(UPLOADS)?;
            tx.open_table(VERSIONS)?;
            tx.open_table(META)?;
            tx.open_table(NODE_ADMIN)?;
            tx.open_table(SEGMENTS)?;
            tx.open_table(REQUESTS)?;
            tx.open_table(REQUEST_AGES)?;
            let sealed_already = tx.open_table(META)?.get(envelope::MIGRATED_KEY)?.is_some();
            if !sealed_already {
                let n = seal_legacy_values(&tx)?;
                if n > 0 {
                    tracing::info!(
                        values = n,
                        "sealed metadata written before the checksum envelope"
                    );
                }
                tx.open_table(META)?.insert(
                    envelope::MIGRATED_KEY,
                    sealed::<&str, _>(envelope::MIGRATED_KEY, &1u32).as_slice(),
                )?;
            }
            let indexed = tx.open_table(META)?.get(KEY_SEGMENT_INDEX)?.is_some();
            if !indexed {
                let n = segment_index::rebuild(&tx)?;
                if n > 0 {
                    tracing::info!(segments = n, "built the segment index from the manifests");
                }
                tx.open_table(META)?.insert(
                    KEY_SEGMENT_INDEX,
                    sealed::<&str, _>(KEY_SEGMENT_INDEX, &1u32).as_slice(),
                )?;
            }
        }
        tx.commit()?;
        // The database lock above makes this process the only writer of the
        // snapshot: temp files beside it are left by crashed writes.
        let snapshot_path = dir.join("snapshot.json");
        weft_common::durable_file::remove_stale_temps(&snapshot_path).map_err(|e| {
            MetaError::Store(redb::Error::Io(std::io::Error::new(e.source.kind(), e)))
        })?;
        Ok(StateMachine {
            db: Arc::new(db),
            snapshot_path,
            snapshot_written: Arc::default(),
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SE> {
        let tx = self.db.begin_read().map_err(sm_read_err)?;
        let t = tx.open_table(META).map_err(sm_read_err)?;
        match t.get(key).map_err(sm_read_err)? {
            None => Ok(None),
            Some(v) => envelope::decode(T_META, key.as_bytes(), v.value())
                .map(Some)
                .map_err(sm_read_err),
        }
    }

    // ---- queries (callers ensure linearizability first) ----

    /// One bucket.
    pub fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        t.get_sealed(T_BUCKETS, name)
    }

    /// All buckets in name order.
    pub fn buckets(&self) -> Result<Vec<BucketInfo>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        let mut out = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            out.push(item(T_BUCKETS, &k, &v)?);
        }
        Ok(out)
    }

    /// The current version of an object.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectVersion>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OBJECTS)?;
        let mut v: Option<ObjectVersion> =
            t.get_sealed(T_OBJECTS, object_key(bucket, key).as_slice())?;
        if let Some(v) = &mut v {
            segment_index::overlay(&tx.open_table(SEGMENTS)?, &mut v.segments)?;
        }
        Ok(v)
    }

    /// One entry of an object's history by S3 version id. An object written
    /// before versioning was enabled answers to `null`.
    pub fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<VersionRecord>, MetaError> {
        let mut r = self.object_version_as_written(bucket, key, version_id)?;
        if let Some(v) = r.as_mut().and_then(|r| r.version.as_mut()) {
            let tx = self.db.begin_read()?;
            segment_index::overlay(&tx.open_table(SEGMENTS)?, &mut v.segments)?;
        }
        Ok(r)
    }

    fn object_version_as_written(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<VersionRecord>, MetaError> {
        let tx = self.db.begin_read()?;
        let p = versioning::key_prefix(bucket, key);
        let mut end = p.clone();
        end.extend_from_slice(&[0xFF; 8]);
        let mut hist: Vec<VersionRecord> = vec![];
        for it in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(p.as_slice()..=end.as_slice())?
        {
            let (k, v) = it?;
            if k.value().len() == p.len() + 8 {
                hist.push(item(versioning::T_VERSIONS, &k, &v)?);
            }
        }
        if let Some(r) = hist.iter().find(|r| r.version_id == version_id) {
            return Ok(Some(r.clone()));
        }
        let current: Option<ObjectVersion> = tx
            .open_table(OBJECTS)?
            .get_sealed(T_OBJECTS, object_key(bucket, key).as_slice())?;
        Ok(current
            .filter(|c| {
                version_id == "null"
                    && !hist
                        .iter()
                        .any(|r| r.version.as_ref().map(|v| v.version_id) == Some(c.version_id))
            })
            .map(|c| VersionRecord {
                origin_id: None,
                version_id: "null".into(),
                last_modified_ms: c.last_modified_ms,
                version: Some(c),
            }))
    }

    /// Every version and delete marker under `prefix`, key order then newest
    /// first, after the markers; `(entries, truncated)`. Reads the whole
    /// prefix: fine for the histories of thousands of keys.
    pub fn versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
        delimiter: Option<&str>,
        max: u32,
    ) -> Result<VersionPage, MetaError> {
        let tx = self.db.begin_read()?;
        let base = object_key(bucket, "");
        let lo = object_key(bucket, prefix);
        let hi = prefix_end(&lo);
        let mut by_key: std::collections::BTreeMap<String, Vec<VersionRecord>> = Default::default();
        for it in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
        {
            let (k, v) = it?;
            let full = k.value();
            let key = String::from_utf8_lossy(&full[base.len()..full.len() - 9]).into_owned();
            by_key
                .entry(key)
                .or_default()
                .push(item(versioning::T_VERSIONS, &k, &v)?);
        }
        for it in tx
            .open_table(OBJECTS)?
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
        {
            let (k, v) = it?;
            let key = String::from_utf8_lossy(&k.value()[base.len()..]).into_owned();
            let cur: ObjectVersion = item(T_OBJECTS, &k, &v)?;
            let hist = by_key.entry(key).or_default();
            if !hist
                .iter()
                .any(|r| r.version.as_ref().map(|v| v.version_id) == Some(cur.version_id))
            {
                hist.insert(
                    0,
                    VersionRecord {
                        origin_id: None,
                        version_id: "null".into(),
                        last_modified_ms: cur.last_modified_ms,
                        version: Some(cur),
                    },
                );
            }
        }
        let mut page = VersionPage::default();
        let mut count = 0u32;
        let mut last: Option<(String, Option<String>)> = None;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        for (key, hist) in by_key {
            if let Some(km) = key_marker {
                if key.as_str() < km {
                    continue;
                }
            }
            if let Some(d) = delimiter {
                if let Some(pos) = key[prefix.len()..].find(d) {
                    let cp = format!(
                        "{prefix}{}",
                        &key[prefix.len()..prefix.len() + pos + d.len()]
                    );
                    let seen = page.common_prefixes.last() == Some(&cp)
                        || key_marker.is_some_and(|km| km.starts_with(&cp));
                    if !seen {
                        if count == max {
                            page.next = last;
                            return Ok(page);
                        }
                        count += 1;
                        page.common_prefixes.push(cp.clone());
                        last = Some((cp, None));
                    }
                    continue;
                }
            }
            let mut skipping = key_marker == Some(key.as_str());
            for (i, r) in hist.into_iter().enumerate() {
                if skipping {
                    if version_marker == Some(r.version_id.as_str()) {
                        skipping = false;
                    } else if version_marker.is_none() {
                        break;
                    }
                    continue;
                }
                if count == max {
                    page.next = last;
                    return Ok(page);
                }
                count += 1;
                last = Some((key.clone(), Some(r.version_id.clone())));
                page.entries.push((key.clone(), r, i == 0));
            }
        }
        Ok(page)
    }

    /// Uploads in a bucket under a prefix, ordered by key then start time,
    /// without their parts. Scans the uploads table: fine while uploads in
    /// progress number in the thousands.
    pub fn uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut out: Vec<Upload> = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            let mut u: Upload = item(T_UPLOADS, &k, &v)?;
            if u.bucket == bucket && u.key.starts_with(prefix) {
                u.parts.clear();
                out.push(u);
            }
        }
        out.sort_by(|a, b| {
            (&a.key, a.initiated_ms, &a.upload_id).cmp(&(&b.key, b.initiated_ms, &b.upload_id))
        });
        Ok(out)
    }

    /// A multipart upload by id.
    pub fn upload(&self, upload_id: &str) -> Result<Option<Upload>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut u: Option<Upload> = t.get_sealed(T_UPLOADS, upload_id)?;
        if let Some(u) = &mut u {
            let segs = tx.open_table(SEGMENTS)?;
            for p in &mut u.parts {
                segment_index::overlay(&segs, &mut p.segments)?;
            }
        }
        Ok(u)
    }

    /// For each `(segment, index)`, whether `node` is its current holder.
    pub fn shards_held(
        &self,
        node: NodeId,
        shards: &[(SegmentId, u8)],
    ) -> Result<Vec<bool>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SEGMENTS)?;
        let mut out = Vec::with_capacity(shards.len());
        for (seg, idx) in shards {
            let rec: Option<SegmentRecord> = t.get_sealed(
                segment_index::T_SEGMENTS,
                segment_index::key(*seg).as_slice(),
            )?;
            let held = match rec {
                Some(rec) => rec.shards.get(usize::from(*idx)).copied().flatten() == Some(node),
                None => false,
            };
            out.push(held);
        }
        Ok(out)
    }

    /// Calls `f` for every indexed segment, from one consistent view.
    pub fn scan_segments(
        &self,
        mut f: impl FnMut(SegmentId, SegmentRecord),
    ) -> Result<(), MetaError> {
        let tx = self.db.begin_read()?;
        for it in tx.open_table(SEGMENTS)?.iter()? {
            let (k, v) = it?;
            f(
                segment_index::id_of(k.value()),
                item(segment_index::T_SEGMENTS, &k, &v)?,
            );
        }
        Ok(())
    }

    /// Operator-set node states (nodes not listed are active).
    pub fn node_admin(&self) -> Result<std::collections::HashMap<NodeId, NodeAdmin>, MetaError> {
        let tx = self.db.begin_read()?;
        let mut out = std::collections::HashMap::new();
        for it in tx.open_table(NODE_ADMIN)?.iter()? {
            let (k, v) = it?;
            out.insert(NodeId(k.value()), item(T_NODE_ADMIN, &k, &v)?);
        }
        Ok(out)
    }

    /// Current repair settings.
    pub fn repair_config(&self) -> Result<RepairConfig, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get_sealed(T_META, KEY_REPAIR_CONFIG)?.unwrap_or_default())
    }

    /// The cluster's upload timers, once the first leader has set them.
    pub fn upload_timers(&self) -> Result<Option<UploadTimers>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        t.get_sealed(T_META, KEY_UPLOAD_TIMERS)
    }

    /// An access key by id.
    pub fn access_key(&self, access_key: &str) -> Result<Option<AccessKey>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(KEYS)?;
        t.get_sealed(T_KEYS, access_key)
    }

    /// All access keys.
    pub fn keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(KEYS)?;
        let mut out = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            out.push(item(T_KEYS, &k, &v)?);
        }
        Ok(out)
    }

    /// All registered data nodes.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            out.push(item(T_NODES, &k, &v)?);
        }
        Ok(out)
    }

    /// A page of a listing; `None` if the bucket does not exist.
    pub fn list(&self, req: &ListRequest) -> Result<Option<ListPage>, MetaError> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(req.bucket.as_str())?.is_none() {
            return Ok(None);
        }
        let t = tx.open_table(OBJECTS)?;
        let base = object_key(&req.bucket, "");
        let lower_prefix = object_key(&req.bucket, &req.prefix);
        let upper = prefix_end(&lower_prefix);
        let mut start: Bound<Vec<u8>> = match &req.after {
            None => Bound::Included(lower_prefix.clone()),
            Some(ListMarker::Key(k)) => Bound::Excluded(object_key(&req.bucket, k)),
            Some(ListMarker::Prefix(p)) => Bound::Included(prefix_end(&object_key(&req.bucket, p))),
        };
        // Never start before the prefix.
        let below_prefix = match &start {
            Bound::Included(s) | Bound::Excluded(s) => s < &lower_prefix,
            Bound::Unbounded => true,
        };
        if below_prefix {
            start = Bound::Included(lower_prefix.clone());
        }
        let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        let mut count: u32 = 0;
        let mut last: Option<ListMarker> = None;
        'scan: loop {
            let range = t.range::<&[u8]>((
                match &start {
                    Bound::Included(s) => Bound::Included(s.as_slice()),
                    Bound::Excluded(s) => Bound::Excluded(s.as_slice()),
                    Bound::Unbounded => Bound::Unbounded,
                },
                Bound::Excluded(upper.as_slice()),
            ))?;
            for it in range {
                let (k, v) = it?;
                let full = k.value();
                let key = String::from_utf8_lossy(&full[base.len()..]).into_owned();
                let rest = &key[req.prefix.len()..];
                if let Some(d) = delimiter {
                    if let Some(pos) = rest.find(d) {
                        let cp = format!("{}{}", req.prefix, &rest[..pos + d.len()]);
                        if count == req.max_keys {
                            page.next = last;
                            break 'scan;
                        }
                        count += 1;
                        page.common_prefixes.push(cp.clone());
                        last = Some(ListMarker::Prefix(cp.clone()));
                        // Seek past everything under this common prefix.
                        start = Bound::Included(prefix_end(&object_key(&req.bucket, &cp)));
                        continue 'scan;
                    }
                }
                if count == req.max_keys {
                    page.next = last;
                    break 'scan;
                }
                count += 1;
                let ver: ObjectVersion = item(T_OBJECTS, &k, &v)?;
                page.entries.push(ListEntry {
                    key: key.clone(),
                    size: ver.size,
                    etag: ver.etag,
                    last_modified_ms: ver.last_modified_ms,
                    storage_class: ver.storage_class,
                });
                last = Some(ListMarker::Key(key));
            }
            break;
        }
        Ok(Some(page))
    }

    /// A digest of every table and the last applied index, read from one
    /// consistent view: equal digests at equal indexes mean equal replicas.
    pub fn digest(&self) -> Result<(Option<u64>, String), MetaError> {
        let tx = self.db.begin_read()?;
        let applied: Option<LogId<RaftNodeId>> = tx
            .open_table(META)?
            .get_sealed::<Option<LogId<RaftNodeId>>>(T_META, KEY_APPLIED)?
            .flatten();
        let mut crc = 0u32;
        let mut count = 0u64;
        macro_rules! fold {
            ($def:expr) => {
                for item in tx.open_table($def)?.iter()? {
                    let (k, v) = item?;
                    crc = crc32c::crc32c_append(crc, format!("{:?}", k.value()).as_bytes());
                    crc = crc32c::crc32c_append(crc, v.value());
                    count += 1;
                }
            };
        }
        fold!(BUCKETS);
        fold!(OBJECTS);
        fold!(NODES);
        fold!(KEYS);
        fold!(UPLOADS);
        fold!(VERSIONS);
        fold!(SEGMENTS);
        fold!(NODE_ADMIN);
        fold!(REQUESTS);
        fold!(REQUEST_AGES);
        for key in [KEY_REQUEST_CLOCK, KEY_REPAIR_CONFIG, KEY_UPLOAD_TIMERS] {
            if let Some(v) = tx.open_table(META)?.get(key)? {
                crc = crc32c::crc32c_append(crc, v.value());
            }
        }
        crc = crc32c::crc32c_append(crc, &versioning::seq(&tx)?.to_le_bytes());
        Ok((applied.map(|l| l.index), format!("{count}-{crc:08x}")))
    }

    /// Fsyncs every commit made so far (apply commits are not fsynced).
    pub fn flush(&self) -> Result<(), MetaError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Applies one command in its own transaction, outside raft: for tests
    /// of apply itself.
    #[cfg(test)]
    pub(crate) fn apply_for_test(
        &self,
        cmd: &weft_common::rpc::Command,
    ) -> Result<CommandResult, MetaError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        let r = crate::apply::apply_command(&tx, cmd)?;
        tx.commit()?;
        Ok(r)
    }

    /// This state, dumped as a snapshot and installed into a fresh state
    /// machine under `dir`: for tests that a snapshot carries everything
    /// apply depends on.
    #[cfg(test)]
    pub(crate) fn snapshot_roundtrip_for_test(
        &self,
        dir: &Path,
    ) -> Result<StateMachine, MetaError> {
        let (doc, applied, membership) = self.dump()?;
        let doc: SnapshotDoc =
            serde_json::from_slice(&serde_json::to_vec(&doc).expect("serializes"))
                .expect("deserializes");
        let other = StateMachine::open(dir)?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: "test".into(),
        };
        other.load(&doc, &meta)?;
        Ok(other)
    }

    /// `(segments referenced by any version or upload part, segments in the
    /// index, requests remembered)`: for invariant checks in tests.
    #[cfg(test)]
    pub(crate) fn references_for_test(
        &self,
    ) -> Result<
        (
            std::collections::BTreeSet<SegmentId>,
            std::collections::BTreeSet<SegmentId>,
            u64,
        ),
        MetaError,
    > {
        let (doc, _, _) = self.dump()?;
        let mut referenced = std::collections::BTreeSet::new();
        for (_, _, v) in &doc.objects {
            referenced.extend(v.segments.iter().map(|s| s.id));
        }
        for (_, r) in &doc.versions {
            referenced.extend(
                r.version
                    .iter()
                    .flat_map(|v| v.segments.iter().map(|s| s.id)),
            );
        }
        for u in &doc.uploads {
            referenced.extend(u.parts.iter().flat_map(|p| p.segments.iter().map(|s| s.id)));
        }
        let indexed = doc.segments.iter().flatten().map(|(id, _)| *id).collect();
        let requests = crate::requests::count(&self.db.begin_read()?)?;
        Ok((referenced, indexed, requests))
    }

    /// Every table, with the applied log id and membership they reflect,
    /// read in one transaction so the three always agree.
    fn dump(&self) -> Result<(SnapshotDoc, Option<LogId<RaftNodeId>>, Membership), MetaError> {
        let tx = self.db.begin_read()?;
        let (applied, membership) = {
            let m = tx.open_table(META)?;
            let applied: Option<LogId<RaftNodeId>> = m
                .get_sealed::<Option<LogId<RaftNodeId>>>(T_META, KEY_APPLIED)?
                .flatten();
            let membership: Membership = m.get_sealed(T_META, KEY_MEMBERSHIP)?.unwrap_or_default();
            (applied, membership)
        };
        let mut doc = SnapshotDoc {
            format: SNAPSHOT_FORMAT,
            ..Default::default()
        };
        for it in tx.open_table(BUCKETS)?.iter()? {
            let (k, v) = it?;
            doc.buckets.push(item(T_BUCKETS, &k, &v)?);
        }
        for it in tx.open_table(OBJECTS)?.iter()? {
            let (k, v) = it?;
            let full = k.value();
            let sep = full
                .iter()
                .position(|b| *b == 0)
                .expect("object keys contain a separator");
            doc.objects.push((
                String::from_utf8_lossy(&full[..sep]).into_owned(),
                String::from_utf8_lossy(&full[sep + 1..]).into_owned(),
                item(T_OBJECTS, &k, &v)?,
            ));
        }
        for it in tx.open_table(NODES)?.iter()? {
            let (k, v) = it?;
            doc.nodes.push(item(T_NODES, &k, &v)?);
        }
        for it in tx.open_table(KEYS)?.iter()? {
            let (k, v) = it?;
            doc.keys.push(item(T_KEYS, &k, &v)?);
        }
        for it in tx.open_table(UPLOADS)?.iter()? {
            let (k, v) = it?;
            doc.uploads.push(item(T_UPLOADS, &k, &v)?);
        }
        for it in tx.open_table(VERSIONS)?.iter()? {
            let (k, v) = it?;
            doc.versions
                .push((hex_encode(k.value()), item(versioning::T_VERSIONS, &k, &v)?));
        }
        doc.version_seq = versioning::seq(&tx)?;
        let mut segments = vec![];
        for it in tx.open_table(SEGMENTS)?.iter()? {
            let (k, v) = it?;
            segments.push((
                segment_index::id_of(k.value()),
                item(segment_index::T_SEGMENTS, &k, &v)?,
            ));
        }
        doc.segments = Some(segments);
        for it in tx.open_table(NODE_ADMIN)?.iter()? {
            let (k, v) = it?;
            doc.node_admin
                .push((k.value(), item(T_NODE_ADMIN, &k, &v)?));
        }
        doc.repair_config = tx.open_table(META)?.get_sealed(T_META, KEY_REPAIR_CONFIG)?;
        doc.upload_timers = tx.open_table(META)?.get_sealed(T_META, KEY_UPLOAD_TIMERS)?;
        for it in tx.open_table(REQUESTS)?.iter()? {
            let (k, v) = it?;
            let id = weft_common::RequestId(u128::from_be_bytes(
                k.value()
                    .try_into()
                    .map_err(|_| redb::Error::Corrupted("request key is not 16 bytes".into()))?,
            ));
            doc.requests.push((id, item(T_REQUESTS, &k, &v)?));
        }
        doc.request_clock = tx
            .open_table(META)?
            .get_sealed(T_META, KEY_REQUEST_CLOCK)?
            .unwrap_or(0);
        Ok((doc, applied, membership))
    }

    fn load(
        &self,
        doc: &SnapshotDoc,
        meta: &SnapshotMeta<RaftNodeId, openraft::BasicNode>,
    ) -> Result<(), MetaError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(REQUESTS)?.retain(|_, _| false)?;
            tx.open_table(REQUEST_AGES)?.retain(|_, _| false)?;
            for def in [BUCKETS, KEYS, UPLOADS, META] {
                let mut t = tx.open_table(def)?;
                t.retain(|_, _| false)?;
            }
            tx.open_table(OBJECTS)?.retain(|_, _| false)?;
            tx.open_table(NODES)?.retain(|_, _| false)?;
            let mut b = tx.open_table(BUCKETS)?;
            for x in &doc.buckets {
                b.insert(
                    x.name.as_str(),
                    sealed::<&str, _>(x.name.as_str(), x).as_slice(),
                )?;
            }
            let mut o = tx.open_table(OBJECTS)?;
            for (bucket, key, v) in &doc.objects {
                let ok = object_key(bucket, key);
                o.insert(
                    ok.as_slice(),
                    sealed::<&[u8], _>(ok.as_slice(), v).as_slice(),
                )?;
            }
            let mut n = tx.open_table(NODES)?;
            for x in &doc.nodes {
                n.insert(x.id.0, sealed::<u64, _>(x.id.0, x).as_slice())?;
            }
            let mut k = tx.open_table(KEYS)?;
            for x in &doc.keys {
                k.insert(
                    x.access_key.as_str(),
                    sealed::<&str, _>(x.access_key.as_str(), x).as_slice(),
                )?;
            }
            let mut u = tx.open_table(UPLOADS)?;
            for x in &doc.uploads {
                u.insert(
                    x.upload_id.as_str(),
                    sealed::<&str, _>(x.upload_id.as_str(), x).as_slice(),
                )?;
            }
            let mut vt = tx.open_table(VERSIONS)?;
            vt.retain(|_, _| false)?;
            for (k, r) in &doc.versions {
                let key = hex_decode(k)
                    .ok_or_else(|| redb::Error::Corrupted(format!("snapshot version key {k}")))?;
                vt.insert(
                    key.as_slice(),
                    sealed::<&[u8], _>(key.as_slice(), r).as_slice(),
                )?;
            }
            versioning::set_seq(&tx, doc.version_seq)?;
            drop((b, o, n, k, u, vt));
            {
                let mut st = tx.open_table(SEGMENTS)?;
                st.retain(|_, _| false)?;
                for (id, r) in doc.segments.iter().flatten() {
                    st.insert(
                        segment_index::key(*id).as_slice(),
                        segment_index::encode(*id, r).as_slice(),
                    )?;
                }
            }
            if doc.segments.is_none() {
                segment_index::rebuild(&tx)?;
            }
            {
                let mut na = tx.open_table(NODE_ADMIN)?;
                na.retain(|_, _| false)?;
                for (id, a) in &doc.node_admin {
                    na.insert(*id, sealed::<u64, _>(*id, a).as_slice())?;
                }
            }
            {
                let mut rq = tx.open_table(REQUESTS)?;
                let mut ra = tx.open_table(REQUEST_AGES)?;
                for (id, r) in &doc.requests {
                    let k = id.0.to_be_bytes();
                    rq.insert(k.as_slice(), sealed::<&[u8], _>(k.as_slice(), r).as_slice())?;
                    let mut age = r.at_ms.to_be_bytes().to_vec();
                    age.extend_from_slice(&k);
                    ra.insert(
                        age.as_slice(),
                        sealed::<&[u8], _>(age.as_slice(), &()).as_slice(),
                    )?;
                }
            }
            let mut m = tx.open_table(META)?;
            let mut put =
                |key: &'static str, bytes: Vec<u8>| m.insert(key, bytes.as_slice()).map(|_| ());
            put(
                envelope::MIGRATED_KEY,
                sealed::<&str, _>(envelope::MIGRATED_KEY, &1u32),
            )?;
            put(
                KEY_SEGMENT_INDEX,
                sealed::<&str, _>(KEY_SEGMENT_INDEX, &1u32),
            )?;
            if let Some(c) = &doc.repair_config {
                put(KEY_REPAIR_CONFIG, sealed::<&str, _>(KEY_REPAIR_CONFIG, c))?;
            }
            if let Some(t) = &doc.upload_timers {
                put(KEY_UPLOAD_TIMERS, sealed::<&str, _>(KEY_UPLOAD_TIMERS, t))?;
            }
            if doc.request_clock > 0 {
                put(
                    KEY_REQUEST_CLOCK,
                    sealed::<&str, _>(KEY_REQUEST_CLOCK, &doc.request_clock),
                )?;
            }
            put(
                KEY_APPLIED,
                sealed::<&str, _>(KEY_APPLIED, &meta.last_log_id),
            )?;
            put(
                KEY_MEMBERSHIP,
                sealed::<&str, _>(KEY_MEMBERSHIP, &meta.last_membership),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn write_snapshot_file(&self, snap: &StoredSnapshot) -> std::io::Result<()> {
        let mut written = self
            .snapshot_written
            .lock()
            .expect("snapshot lock poisoned");
        if written.is_none() {
            *written = Some(self.read_snapshot_file()?.and_then(|s| s.meta.last_log_id));
        }
        if let Some(newest) = *written {
            if snap.meta.last_log_id < newest {
                return Ok(()); // a newer snapshot is already on disk
            }
        }
        let bytes = serde_json::to_vec(snap)?;
        use weft_common::durable_file::{write_file, Access};
        write_file(&self.snapshot_path, &bytes, Access::Default)
            .map_err(|e| std::io::Error::new(e.source.kind(), e))?;
        *written = Some(snap.meta.last_log_id);
        Ok(())
    }

    fn read_snapshot_file(&self) -> std::io::Result<Option<StoredSnapshot>> {
        match std::fs::read(&self.snapshot_path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Seals, in place, every value written before the envelope existed.
fn seal_legacy_values(tx: &redb::WriteTransaction) -> Result<u64, MetaError> {
    let mut n = 0u64;
    macro_rules! seal_table {
        ($def:expr, $name:expr, $key:ty, $owned:ty, $conv:ident) => {{
            let mut t = tx.open_table($def)?;
            let mut redo: Vec<($owned, Vec<u8>)> = vec![];
            for it in t.iter()? {
                let (k, v) = it?;
                let key = k.value();
                let kb = envelope::key_bytes::<$key>(&key);
                if let Some(sealed) = envelope::seal_legacy($name, &kb, v.value())? {
                    redo.push((key.to_owned(), sealed));
                }
            }
            for (k, v) in redo {
                t.insert(k.$conv(), v.as_slice())?;
                n += 1;
            }
        }};
    }
    seal_table!(BUCKETS, T_BUCKETS, &str, String, as_str);
    seal_table!(OBJECTS, T_OBJECTS, &[u8], Vec<u8>, as_slice);
    seal_table!(NODES, T_NODES, u64, u64, clone);
    seal_table!(KEYS, T_KEYS, &str, String, as_str);
    seal_table!(UPLOADS, T_UPLOADS, &str, String, as_str);
    seal_table!(META, T_META, &str, String, as_str);
    seal_table!(NODE_ADMIN, T_NODE_ADMIN, u64, u64, clone);
    seal_table!(VERSIONS, versioning::T_VERSIONS, &[u8], Vec<u8>, as_slice);
    seal_table!(
        SEGMENTS,
        segment_index::T_SEGMENTS,
        &[u8],
        Vec<u8>,
        as_slice
    );
    Ok(n)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SE> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // Make every applied entry durable first: once this snapshot
            // exists the log before it may be purged.
            this.flush().map_err(sm_write_err)?;
            // Read data and applied state from one consistent view: apply
            // runs concurrently with snapshot building.
            let (doc, applied, membership) = this.dump().map_err(sm_read_err)?;
            let data = serde_json::to_vec(&doc).map_err(sm_read_err)?;
            let snapshot_id = match applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
                None => format!("empty-{}", data.len()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id,
            };
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data,
            };
            this.write_snapshot_file(&stored).map_err(|e| {
                SE::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
            })?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            })
        })
        .await
        .map_err(sm_read_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<RaftNodeId>>, Membership), SE> {
        let applied = self
            .meta::<Option<LogId<RaftNodeId>>>(KEY_APPLIED)?
            .flatten();
        let membership = self.meta(KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, SE>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<CommandResult>, MetaError> {
            // Not fsynced: the raft log already holds these entries durably
            // and is replayed from the last durable `last_applied` after a
            // crash. `build_snapshot` makes everything durable before the log
            // behind a snapshot can be purged.
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::None)?;
            let mut results = Vec::with_capacity(entries.len());
            let mut last: Option<LogId<RaftNodeId>> = None;
            let mut membership: Option<Membership> = None;
            for e in &entries {
                last = Some(e.log_id);
                match &e.payload {
                    EntryPayload::Blank => results.push(CommandResult::Done),
                    EntryPayload::Normal(cmd) => {
                        results.push(crate::apply::apply_command(&tx, cmd)?)
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                        results.push(CommandResult::Done);
                    }
                }
            }
            {
                let mut m = tx.open_table(META)?;
                if let Some(l) = last {
                    m.insert(
                        KEY_APPLIED,
                        sealed::<&str, _>(KEY_APPLIED, &Some(l)).as_slice(),
                    )?;
                }
                if let Some(mem) = membership {
                    m.insert(
                        KEY_MEMBERSHIP,
                        sealed::<&str, _>(KEY_MEMBERSHIP, &mem).as_slice(),
                    )?;
                }
            }
            tx.commit()?;
            Ok(results)
        })
        .await
        .map_err(sm_write_err)?
        .map_err(sm_write_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SE> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SE> {
        let data = snapshot.into_inner();
        let doc: SnapshotDoc = serde_json::from_slice(&data)
            .map_err(|e| SE::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        if doc.format != SNAPSHOT_FORMAT {
            let e = std::io::Error::other(format!(
                "snapshot format {} is not {SNAPSHOT_FORMAT}",
                doc.format
            ));
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        let this = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            this.load(&doc, &meta).map_err(sm_write_err)?;
            this.write_snapshot_file(&StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .map_err(|e| SE::from(StorageIOError::write_snapshot(Some(meta.signature()), &e)))
        })
        .await
        .map_err(sm_write_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SE> {
        let stored = self.read_snapshot_file().map_err(sm_read_err)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
