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
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, VersionRecord};

use crate::segment_index::{self, SEGMENTS};
use crate::versioning::{self, VERSIONS};
use weft_common::repair::{RepairConfig, SegmentRecord};
use weft_common::rpc::{
    Command, CommandResult, ListEntry, ListMarker, ListPage, ListRequest, Refusal, WriteCondition,
};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::{NodeId, SegmentId};

use crate::{RaftNodeId, TypeConfig};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
pub(crate) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// Operator-set node states (drain, remove), apart from registrations so a
/// restarting datad re-registering cannot undo them.
const NODE_ADMIN: TableDefinition<u64, &[u8]> = TableDefinition::new("node_admin");
const KEY_REPAIR_CONFIG: &str = "repair_config";
const KEY_SEGMENT_INDEX: &str = "segment_index_v1";
const KEY_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";

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

/// The key of an object in the object table.
fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The first table key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(0xFF);
    k
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
    /// Opens or creates the state machine under `dir`.
    pub fn open(dir: &Path) -> Result<Self, redb::Error> {
        let db = Database::create(dir.join("state.redb"))?;
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
            let indexed = tx.open_table(META)?.get(KEY_SEGMENT_INDEX)?.is_some();
            if !indexed {
                let n = segment_index::rebuild(&tx)?;
                if n > 0 {
                    tracing::info!(segments = n, "built the segment index from the manifests");
                }
                tx.open_table(META)?
                    .insert(KEY_SEGMENT_INDEX, b"1".as_slice())?;
            }
        }
        tx.commit()?;
        Ok(StateMachine {
            db: Arc::new(db),
            snapshot_path: dir.join("snapshot.json"),
            snapshot_written: Arc::default(),
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SE> {
        let tx = self.db.begin_read().map_err(sm_read_err)?;
        let t = tx.open_table(META).map_err(sm_read_err)?;
        match t.get(key).map_err(sm_read_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(sm_read_err),
        }
    }

    // ---- queries (callers ensure linearizability first) ----

    /// One bucket.
    pub fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        Ok(t.get(name)?.map(|v| decode(v.value())))
    }

    /// All buckets in name order.
    pub fn buckets(&self) -> Result<Vec<BucketInfo>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        let mut out = vec![];
        for item in t.iter()? {
            out.push(decode(item?.1.value()));
        }
        Ok(out)
    }

    /// The current version of an object.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectVersion>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OBJECTS)?;
        let mut v: Option<ObjectVersion> = t
            .get(object_key(bucket, key).as_slice())?
            .map(|v| decode(v.value()));
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
    ) -> Result<Option<VersionRecord>, redb::Error> {
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
    ) -> Result<Option<VersionRecord>, redb::Error> {
        let tx = self.db.begin_read()?;
        let p = versioning::key_prefix(bucket, key);
        let mut end = p.clone();
        end.extend_from_slice(&[0xFF; 8]);
        let mut hist = vec![];
        for item in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(p.as_slice()..=end.as_slice())?
        {
            let (k, v) = item?;
            if k.value().len() == p.len() + 8 {
                hist.push(versioning::decode(v.value()));
            }
        }
        if let Some(r) = hist.iter().find(|r| r.version_id == version_id) {
            return Ok(Some(r.clone()));
        }
        let current: Option<ObjectVersion> = tx
            .open_table(OBJECTS)?
            .get(object_key(bucket, key).as_slice())?
            .map(|v| decode(v.value()));
        Ok(current
            .filter(|c| {
                version_id == "null"
                    && !hist
                        .iter()
                        .any(|r| r.version.as_ref().map(|v| v.version_id) == Some(c.version_id))
            })
            .map(|c| VersionRecord {
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
    ) -> Result<VersionPage, redb::Error> {
        let tx = self.db.begin_read()?;
        let base = object_key(bucket, "");
        let lo = object_key(bucket, prefix);
        let hi = prefix_end(&lo);
        let mut by_key: std::collections::BTreeMap<String, Vec<VersionRecord>> = Default::default();
        for item in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
        {
            let (k, v) = item?;
            let full = k.value();
            let key = String::from_utf8_lossy(&full[base.len()..full.len() - 9]).into_owned();
            by_key
                .entry(key)
                .or_default()
                .push(versioning::decode(v.value()));
        }
        for item in tx
            .open_table(OBJECTS)?
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
        {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k.value()[base.len()..]).into_owned();
            let cur: ObjectVersion = decode(v.value());
            let hist = by_key.entry(key).or_default();
            if !hist
                .iter()
                .any(|r| r.version.as_ref().map(|v| v.version_id) == Some(cur.version_id))
            {
                hist.insert(
                    0,
                    VersionRecord {
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
    pub fn uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut out: Vec<Upload> = vec![];
        for item in t.iter()? {
            let mut u: Upload = decode(item?.1.value());
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
    pub fn upload(&self, upload_id: &str) -> Result<Option<Upload>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut u: Option<Upload> = t.get(upload_id)?.map(|v| decode(v.value()));
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
    ) -> Result<Vec<bool>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SEGMENTS)?;
        let mut out = Vec::with_capacity(shards.len());
        for (seg, idx) in shards {
            let held = match t.get(segment_index::key(*seg).as_slice())? {
                Some(v) => {
                    segment_index::decode(v.value())
                        .shards
                        .get(usize::from(*idx))
                        .copied()
                        .flatten()
                        == Some(node)
                }
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
    ) -> Result<(), redb::Error> {
        let tx = self.db.begin_read()?;
        for item in tx.open_table(SEGMENTS)?.iter()? {
            let (k, v) = item?;
            f(
                segment_index::id_of(k.value()),
                segment_index::decode(v.value()),
            );
        }
        Ok(())
    }

    /// Operator-set node states (nodes not listed are active).
    pub fn node_admin(&self) -> Result<std::collections::HashMap<NodeId, NodeAdmin>, redb::Error> {
        let tx = self.db.begin_read()?;
        let mut out = std::collections::HashMap::new();
        for item in tx.open_table(NODE_ADMIN)?.iter()? {
            let (k, v) = item?;
            out.insert(NodeId(k.value()), decode(v.value()));
        }
        Ok(out)
    }

    /// Current repair settings.
    pub fn repair_config(&self) -> Result<RepairConfig, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(KEY_REPAIR_CONFIG)?
            .map(|v| decode(v.value()))
            .unwrap_or_default())
    }

    /// An access key by id.
    pub fn access_key(&self, access_key: &str) -> Result<Option<AccessKey>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(KEYS)?;
        Ok(t.get(access_key)?.map(|v| decode(v.value())))
    }

    /// All access keys.
    pub fn keys(&self) -> Result<Vec<AccessKey>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(KEYS)?;
        let mut out = vec![];
        for item in t.iter()? {
            out.push(decode(item?.1.value()));
        }
        Ok(out)
    }

    /// All registered data nodes.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, redb::Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = vec![];
        for item in t.iter()? {
            out.push(decode(item?.1.value()));
        }
        Ok(out)
    }

    /// A page of a listing; `None` if the bucket does not exist.
    pub fn list(&self, req: &ListRequest) -> Result<Option<ListPage>, redb::Error> {
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
            for item in range {
                let (k, v) = item?;
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
                let ver: ObjectVersion = decode(v.value());
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
    pub fn digest(&self) -> Result<(Option<u64>, String), redb::Error> {
        let tx = self.db.begin_read()?;
        let applied: Option<LogId<RaftNodeId>> = match tx.open_table(META)?.get(KEY_APPLIED)? {
            Some(v) => decode::<Option<LogId<RaftNodeId>>>(v.value()),
            None => None,
        };
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
        Ok((applied.map(|l| l.index), format!("{count}-{crc:08x}")))
    }

    /// Fsyncs every commit made so far (apply commits are not fsynced).
    pub fn flush(&self) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    // ---- apply ----

    fn apply_command(
        tx: &redb::WriteTransaction,
        cmd: &Command,
    ) -> Result<CommandResult, redb::Error> {
        let mut result = Self::apply_one(tx, cmd)?;
        segment_index::track(tx, cmd, &mut result)?;
        Ok(result)
    }

    fn apply_one(tx: &redb::WriteTransaction, cmd: &Command) -> Result<CommandResult, redb::Error> {
        let refused = |refusal| Ok(CommandResult::Refused { refusal });
        match cmd {
            Command::CreateBucket { bucket } => {
                let mut t = tx.open_table(BUCKETS)?;
                if let Some(existing) = t.get(bucket.name.as_str())? {
                    let existing: BucketInfo = decode(existing.value());
                    return refused(Refusal::BucketExists {
                        owner: existing.owner,
                    });
                }
                t.insert(bucket.name.as_str(), encode(bucket).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::DeleteBucket { name } => {
                let mut t = tx.open_table(BUCKETS)?;
                if t.get(name.as_str())?.is_none() {
                    return refused(Refusal::NoSuchBucket);
                }
                let objects = tx.open_table(OBJECTS)?;
                let base = object_key(name, "");
                let end = prefix_end(&base);
                if objects
                    .range::<&[u8]>(base.as_slice()..end.as_slice())?
                    .next()
                    .is_some()
                {
                    return refused(Refusal::BucketNotEmpty);
                }
                let versions = tx.open_table(VERSIONS)?;
                if versions
                    .range::<&[u8]>(base.as_slice()..end.as_slice())?
                    .next()
                    .is_some()
                {
                    return refused(Refusal::BucketNotEmpty);
                }
                t.remove(name.as_str())?;
                Ok(CommandResult::Done)
            }
            Command::PutObject {
                bucket,
                key,
                version,
                condition,
            } => {
                let Some(versioning) = bucket_versioning(tx, bucket)? else {
                    return refused(Refusal::NoSuchBucket);
                };
                let mut t = tx.open_table(OBJECTS)?;
                let k = object_key(bucket, key);
                let current: Option<ObjectVersion> =
                    t.get(k.as_slice())?.map(|v| decode(v.value()));
                // A retried command (the client did not see the first answer)
                // must not report its own version as replaced: the caller
                // would delete the shards it just wrote.
                if current.as_ref().map(|c| c.version_id) == Some(version.version_id) {
                    return Ok(CommandResult::Replaced { previous: None });
                }
                if let Some(r) = condition_refusal(condition.as_ref(), current.as_ref()) {
                    return refused(r);
                }
                match versioning {
                    None => {
                        t.insert(k.as_slice(), encode(version).as_slice())?;
                        Ok(CommandResult::Replaced { previous: current })
                    }
                    Some(status) => {
                        let mut v = version.clone();
                        let released = versioning::put(
                            tx,
                            bucket,
                            key,
                            status == "Enabled",
                            &mut v,
                            current.as_ref(),
                        )?;
                        t.insert(k.as_slice(), encode(&v).as_slice())?;
                        Ok(CommandResult::Replaced { previous: released })
                    }
                }
            }
            Command::SetBucketVersioning { bucket, status } => {
                if status != "Enabled" && status != "Suspended" {
                    return refused(Refusal::PreconditionFailed);
                }
                let mut t = tx.open_table(BUCKETS)?;
                let current: Option<BucketInfo> =
                    t.get(bucket.as_str())?.map(|v| decode(v.value()));
                let Some(mut b) = current else {
                    return refused(Refusal::NoSuchBucket);
                };
                b.versioning = Some(status.clone());
                t.insert(bucket.as_str(), encode(&b).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::DeleteObjectVersion {
                bucket,
                key,
                version_id,
            } => {
                if bucket_versioning(tx, bucket)?.is_none() {
                    return refused(Refusal::NoSuchBucket);
                }
                let mut t = tx.open_table(OBJECTS)?;
                let k = object_key(bucket, key);
                let current: Option<ObjectVersion> =
                    t.get(k.as_slice())?.map(|v| decode(v.value()));
                match versioning::delete_version(tx, bucket, key, version_id, current.as_ref())? {
                    // Deleting a version that does not exist succeeds (S3).
                    None => Ok(CommandResult::VersionDeleted {
                        released: None,
                        delete_marker: None,
                    }),
                    Some((removed, new_current)) => {
                        match new_current {
                            Some(v) => {
                                t.insert(k.as_slice(), encode(&v).as_slice())?;
                            }
                            None => {
                                t.remove(k.as_slice())?;
                            }
                        }
                        let marker = removed
                            .is_delete_marker()
                            .then(|| removed.version_id.clone());
                        Ok(CommandResult::VersionDeleted {
                            released: removed.version,
                            delete_marker: marker,
                        })
                    }
                }
            }
            Command::SetObjectTags { bucket, key, tags } => {
                if tx.open_table(BUCKETS)?.get(bucket.as_str())?.is_none() {
                    return refused(Refusal::NoSuchBucket);
                }
                let mut t = tx.open_table(OBJECTS)?;
                let k = object_key(bucket, key);
                let current: Option<ObjectVersion> =
                    t.get(k.as_slice())?.map(|v| decode(v.value()));
                let Some(mut v) = current else {
                    return refused(Refusal::NoSuchKey);
                };
                v.tags = tags.clone();
                t.insert(k.as_slice(), encode(&v).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::SetBucketTags { bucket, tags } => {
                let mut t = tx.open_table(BUCKETS)?;
                let current: Option<BucketInfo> =
                    t.get(bucket.as_str())?.map(|v| decode(v.value()));
                let Some(mut b) = current else {
                    return refused(Refusal::NoSuchBucket);
                };
                b.tags = tags.clone();
                t.insert(bucket.as_str(), encode(&b).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::DeleteObject {
                bucket,
                key,
                marker,
            } => {
                let Some(versioning) = bucket_versioning(tx, bucket)? else {
                    return refused(Refusal::NoSuchBucket);
                };
                let mut t = tx.open_table(OBJECTS)?;
                let previous: Option<ObjectVersion> = t
                    .remove(object_key(bucket, key).as_slice())?
                    .map(|v| decode(v.value()));
                match (versioning, marker) {
                    (Some(status), Some(marker)) => {
                        let (released, id) = versioning::delete(
                            tx,
                            bucket,
                            key,
                            status == "Enabled",
                            *marker,
                            previous.as_ref(),
                        )?;
                        Ok(CommandResult::VersionDeleted {
                            released,
                            delete_marker: Some(id),
                        })
                    }
                    _ => Ok(CommandResult::Replaced { previous }),
                }
            }
            Command::CreateUpload { upload } => {
                if tx
                    .open_table(BUCKETS)?
                    .get(upload.bucket.as_str())?
                    .is_none()
                {
                    return refused(Refusal::NoSuchBucket);
                }
                tx.open_table(UPLOADS)?
                    .insert(upload.upload_id.as_str(), encode(upload).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::PutPart { upload_id, part } => {
                let mut t = tx.open_table(UPLOADS)?;
                let Some(mut upload): Option<Upload> =
                    t.get(upload_id.as_str())?.map(|v| decode(v.value()))
                else {
                    return refused(Refusal::NoSuchUpload);
                };
                let old = upload.put_part(part.clone());
                t.insert(upload_id.as_str(), encode(&upload).as_slice())?;
                Ok(CommandResult::Released {
                    segments: old.map(|p| p.segments).unwrap_or_default(),
                })
            }
            Command::CompleteUpload {
                upload_id,
                bucket,
                key,
                parts,
                version,
                condition,
            } => {
                let mut t = tx.open_table(UPLOADS)?;
                let Some(mut upload): Option<Upload> =
                    t.get(upload_id.as_str())?.map(|v| decode(v.value()))
                else {
                    // A retry of a completion that already applied: its
                    // version is current, so succeed and free nothing.
                    let objects = tx.open_table(OBJECTS)?;
                    let current: Option<ObjectVersion> = objects
                        .get(object_key(bucket, key).as_slice())?
                        .map(|v| decode(v.value()));
                    if current.map(|c| c.version_id) == Some(version.version_id) {
                        return Ok(CommandResult::Released { segments: vec![] });
                    }
                    return refused(Refusal::NoSuchUpload);
                };
                for (n, etag) in parts {
                    if upload.part(*n).map(|p| &p.etag) != Some(etag) {
                        return refused(Refusal::InvalidPart { part_number: *n });
                    }
                }
                if tx
                    .open_table(BUCKETS)?
                    .get(upload.bucket.as_str())?
                    .is_none()
                {
                    return refused(Refusal::NoSuchBucket);
                }
                {
                    let objects = tx.open_table(OBJECTS)?;
                    let current: Option<ObjectVersion> = objects
                        .get(object_key(&upload.bucket, &upload.key).as_slice())?
                        .map(|v| decode(v.value()));
                    if let Some(r) = condition_refusal(condition.as_ref(), current.as_ref()) {
                        return refused(r);
                    }
                }
                t.remove(upload_id.as_str())?;
                upload
                    .parts
                    .retain(|p| !parts.iter().any(|(n, _)| *n == p.part_number));
                let mut released: Vec<_> =
                    upload.parts.into_iter().flat_map(|p| p.segments).collect();
                let versioning = bucket_versioning(tx, &upload.bucket)?.flatten();
                let mut objects = tx.open_table(OBJECTS)?;
                let k = object_key(&upload.bucket, &upload.key);
                match versioning {
                    None => {
                        if let Some(prev) =
                            objects.insert(k.as_slice(), encode(version).as_slice())?
                        {
                            let prev: ObjectVersion = decode(prev.value());
                            released.extend(prev.segments);
                        }
                    }
                    Some(status) => {
                        let current: Option<ObjectVersion> =
                            objects.get(k.as_slice())?.map(|v| decode(v.value()));
                        let mut v = version.clone();
                        if let Some(prev) = versioning::put(
                            tx,
                            &upload.bucket,
                            &upload.key,
                            status == "Enabled",
                            &mut v,
                            current.as_ref(),
                        )? {
                            released.extend(prev.segments);
                        }
                        objects.insert(k.as_slice(), encode(&v).as_slice())?;
                    }
                }
                Ok(CommandResult::Released { segments: released })
            }
            Command::AbortUpload { upload_id } => {
                let mut t = tx.open_table(UPLOADS)?;
                let removed = t
                    .remove(upload_id.as_str())?
                    .map(|v| decode::<Upload>(v.value()));
                match removed {
                    None => refused(Refusal::NoSuchUpload),
                    Some(u) => Ok(CommandResult::Released {
                        segments: u.parts.into_iter().flat_map(|p| p.segments).collect(),
                    }),
                }
            }
            Command::Batch { commands } => {
                let mut results = Vec::with_capacity(commands.len());
                for c in commands {
                    results.push(Self::apply_command(tx, c)?);
                }
                Ok(CommandResult::Batch { results })
            }
            Command::MoveShard {
                segment,
                index,
                from,
                to,
            } => segment_index::move_shard(tx, *segment, *index, *from, *to),
            Command::DropShard {
                segment,
                index,
                node,
            } => segment_index::drop_shard(tx, *segment, *index, *node),
            cmd @ (Command::ReportDamage { .. } | Command::DamageRepaired { .. }) => {
                crate::damage::apply_command(tx, cmd)
            }
            Command::SetNodeAdmin { node, admin } => {
                if tx.open_table(NODES)?.get(node.0)?.is_none() {
                    return refused(Refusal::NoSuchNode);
                }
                let mut t = tx.open_table(NODE_ADMIN)?;
                let current: NodeAdmin = t
                    .get(node.0)?
                    .map(|v| decode(v.value()))
                    .unwrap_or_default();
                if current == NodeAdmin::Removed && *admin != NodeAdmin::Removed {
                    return refused(Refusal::NodeRemoved);
                }
                t.insert(node.0, encode(admin).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::SetRepairConfig { config } => {
                tx.open_table(META)?
                    .insert(KEY_REPAIR_CONFIG, encode(config).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::RegisterNode { node } => {
                let removed = tx
                    .open_table(NODE_ADMIN)?
                    .get(node.id.0)?
                    .map(|v| decode::<NodeAdmin>(v.value()))
                    == Some(NodeAdmin::Removed);
                if removed {
                    return refused(Refusal::NodeRemoved);
                }
                let mut t = tx.open_table(NODES)?;
                t.insert(node.id.0, encode(node).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::CreateKey { key } => {
                let mut t = tx.open_table(KEYS)?;
                let mut taken = t.get(key.access_key.as_str())?.is_some();
                for item in t.iter()? {
                    let existing: AccessKey = decode(item?.1.value());
                    taken |= existing.name == key.name;
                }
                if taken {
                    return refused(Refusal::KeyExists);
                }
                t.insert(key.access_key.as_str(), encode(key).as_slice())?;
                Ok(CommandResult::Done)
            }
            Command::DeleteKey { name } => {
                let mut t = tx.open_table(KEYS)?;
                let mut found: Option<AccessKey> = None;
                for item in t.iter()? {
                    let existing: AccessKey = decode(item?.1.value());
                    if &existing.name == name {
                        found = Some(existing);
                    }
                }
                match found {
                    None => refused(Refusal::NoSuchKeyName),
                    Some(k) if k.root => refused(Refusal::KeyIsRoot),
                    Some(k) => {
                        t.remove(k.access_key.as_str())?;
                        Ok(CommandResult::Done)
                    }
                }
            }
        }
    }

    /// Every table, with the applied log id and membership they reflect,
    /// read in one transaction so the three always agree.
    fn dump(&self) -> Result<(SnapshotDoc, Option<LogId<RaftNodeId>>, Membership), redb::Error> {
        let tx = self.db.begin_read()?;
        let (applied, membership) = {
            let m = tx.open_table(META)?;
            let applied: Option<LogId<RaftNodeId>> = m
                .get(KEY_APPLIED)?
                .and_then(|v| decode::<Option<LogId<RaftNodeId>>>(v.value()));
            let membership: Membership = m
                .get(KEY_MEMBERSHIP)?
                .map(|v| decode(v.value()))
                .unwrap_or_default();
            (applied, membership)
        };
        let mut doc = SnapshotDoc {
            format: SNAPSHOT_FORMAT,
            ..Default::default()
        };
        for item in tx.open_table(BUCKETS)?.iter()? {
            doc.buckets.push(decode(item?.1.value()));
        }
        for item in tx.open_table(OBJECTS)?.iter()? {
            let (k, v) = item?;
            let full = k.value();
            let sep = full
                .iter()
                .position(|b| *b == 0)
                .expect("object keys contain a separator");
            doc.objects.push((
                String::from_utf8_lossy(&full[..sep]).into_owned(),
                String::from_utf8_lossy(&full[sep + 1..]).into_owned(),
                decode(v.value()),
            ));
        }
        for item in tx.open_table(NODES)?.iter()? {
            doc.nodes.push(decode(item?.1.value()));
        }
        for item in tx.open_table(KEYS)?.iter()? {
            doc.keys.push(decode(item?.1.value()));
        }
        for item in tx.open_table(UPLOADS)?.iter()? {
            doc.uploads.push(decode(item?.1.value()));
        }
        for item in tx.open_table(VERSIONS)?.iter()? {
            let (k, v) = item?;
            doc.versions
                .push((hex_encode(k.value()), versioning::decode(v.value())));
        }
        doc.version_seq = versioning::seq(&tx)?;
        let mut segments = vec![];
        for item in tx.open_table(SEGMENTS)?.iter()? {
            let (k, v) = item?;
            segments.push((
                segment_index::id_of(k.value()),
                segment_index::decode(v.value()),
            ));
        }
        doc.segments = Some(segments);
        for item in tx.open_table(NODE_ADMIN)?.iter()? {
            let (k, v) = item?;
            doc.node_admin.push((k.value(), decode(v.value())));
        }
        doc.repair_config = tx
            .open_table(META)?
            .get(KEY_REPAIR_CONFIG)?
            .map(|v| decode(v.value()));
        Ok((doc, applied, membership))
    }

    fn load(
        &self,
        doc: &SnapshotDoc,
        meta: &SnapshotMeta<RaftNodeId, openraft::BasicNode>,
    ) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            for def in [BUCKETS, KEYS, UPLOADS, META] {
                let mut t = tx.open_table(def)?;
                t.retain(|_, _| false)?;
            }
            tx.open_table(OBJECTS)?.retain(|_, _| false)?;
            tx.open_table(NODES)?.retain(|_, _| false)?;
            let mut b = tx.open_table(BUCKETS)?;
            for x in &doc.buckets {
                b.insert(x.name.as_str(), encode(x).as_slice())?;
            }
            let mut o = tx.open_table(OBJECTS)?;
            for (bucket, key, v) in &doc.objects {
                o.insert(object_key(bucket, key).as_slice(), encode(v).as_slice())?;
            }
            let mut n = tx.open_table(NODES)?;
            for x in &doc.nodes {
                n.insert(x.id.0, encode(x).as_slice())?;
            }
            let mut k = tx.open_table(KEYS)?;
            for x in &doc.keys {
                k.insert(x.access_key.as_str(), encode(x).as_slice())?;
            }
            let mut u = tx.open_table(UPLOADS)?;
            for x in &doc.uploads {
                u.insert(x.upload_id.as_str(), encode(x).as_slice())?;
            }
            let mut vt = tx.open_table(VERSIONS)?;
            vt.retain(|_, _| false)?;
            for (k, r) in &doc.versions {
                let key = hex_decode(k)
                    .ok_or_else(|| redb::Error::Corrupted(format!("snapshot version key {k}")))?;
                vt.insert(key.as_slice(), versioning::encode(r).as_slice())?;
            }
            versioning::set_seq(&tx, doc.version_seq)?;
            drop((b, o, n, k, u, vt));
            {
                let mut st = tx.open_table(SEGMENTS)?;
                st.retain(|_, _| false)?;
                for (id, r) in doc.segments.iter().flatten() {
                    st.insert(
                        segment_index::key(*id).as_slice(),
                        segment_index::encode(r).as_slice(),
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
                    na.insert(*id, encode(a).as_slice())?;
                }
            }
            let mut m = tx.open_table(META)?;
            m.insert(KEY_SEGMENT_INDEX, b"1".as_slice())?;
            if let Some(c) = &doc.repair_config {
                m.insert(KEY_REPAIR_CONFIG, encode(c).as_slice())?;
            }
            m.insert(KEY_APPLIED, encode(&meta.last_log_id).as_slice())?;
            m.insert(KEY_MEMBERSHIP, encode(&meta.last_membership).as_slice())?;
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
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(snap)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.snapshot_path)?;
        if let Some(dir) = self.snapshot_path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
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

/// Why a conditional write must not apply, if it must not.
fn condition_refusal(
    condition: Option<&WriteCondition>,
    current: Option<&ObjectVersion>,
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

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn bucket_versioning(
    tx: &redb::WriteTransaction,
    bucket: &str,
) -> Result<Option<Option<String>>, redb::Error> {
    Ok(tx
        .open_table(BUCKETS)?
        .get(bucket)?
        .map(|v| decode::<BucketInfo>(v.value()).versioning))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata types always serialize")
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
    // Only this process writes these tables, with `encode`; a failure means
    // the database file is damaged, which must stop the node, not be served.
    serde_json::from_slice(b).expect("state machine table holds a value this version wrote")
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
        tokio::task::spawn_blocking(move || -> Result<Vec<CommandResult>, redb::Error> {
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
                        results.push(StateMachine::apply_command(&tx, cmd)?)
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
                    m.insert(KEY_APPLIED, encode(&Some(l)).as_slice())?;
                }
                if let Some(mem) = membership {
                    m.insert(KEY_MEMBERSHIP, encode(&mem).as_slice())?;
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
