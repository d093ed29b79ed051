//! The read side of the state machine: what the API's queries, the
//! durability planner and datad's garbage collector ask.
//!
//! Callers ensure linearizability first (a leader read-index check); each
//! query reads one consistent redb view. Manifests are answered with the
//! segment index overlaid, so readers see where shards are now rather than
//! where they were first written.
//!
//! Keys of the object table are `bucket \0 key` so a bucket listing is a range
//! scan in key order, and a delimiter listing seeks past each common prefix
//! (`prefix ++ 0xFF` sorts after every UTF-8 continuation of it) instead of
//! reading the keys under it.

use openraft::LogId;
use redb::ReadableTable;
use std::collections::BTreeMap;
use std::ops::Bound;
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, VersionRecord};
use weft_common::repair::{RepairConfig, SegmentRecord};
use weft_common::rpc::{ListEntry, ListMarker, ListPage, ListRequest};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::upload_timers::TimersRecord;
use weft_common::{NodeId, SegmentId};

use crate::envelope::{item, SealedRead};
use crate::error::MetaError;
use crate::segment_index;
use crate::state_machine::StateMachine;
use crate::tables::*;
use crate::versioning;
use crate::RaftNodeId;

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

impl StateMachine {
    /// One bucket.
    pub fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        t.get_sealed(T_BUCKETS, name)
    }

    /// All buckets in name order.
    pub fn buckets(&self) -> Result<Vec<BucketInfo>, MetaError> {
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
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
            let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
        let p = history_prefix(bucket, key);
        let mut end = p.clone();
        end.extend_from_slice(&[0xFF; 8]);
        let mut hist: Vec<VersionRecord> = vec![];
        for it in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(p.as_slice()..=end.as_slice())?
        {
            let (k, v) = it?;
            if k.value().len() == p.len() + 8 {
                hist.push(item(T_VERSIONS, &k, &v)?);
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

    /// Up to `max` current versions under `bucket/prefix` after `after`,
    /// as key, size and segments with current placement overlaid, and the
    /// key to resume after if more follow (see `Query::Placements`).
    pub fn placements(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(Vec<weft_common::locality::PlacedObject>, Option<String>), MetaError> {
        let tx = self.begin_read()?;
        let Some((start, hi)) = current_range(bucket, prefix, after) else {
            return Ok((vec![], None));
        };
        let objects = tx.open_table(OBJECTS)?;
        let segs = tx.open_table(SEGMENTS)?;
        let skip = object_key(bucket, "").len();
        let mut out = vec![];
        for it in objects.range::<&[u8]>(start.as_slice()..hi.as_slice())? {
            let (k, v) = it?;
            let key = String::from_utf8_lossy(&k.value()[skip..]).into_owned();
            if out.len() as u32 >= max {
                let last = out
                    .last()
                    .map(|o: &weft_common::locality::PlacedObject| o.key.clone());
                return Ok((out, last));
            }
            let mut version: ObjectVersion = item(T_OBJECTS, &k, &v)?;
            segment_index::overlay(&segs, &mut version.segments)?;
            out.push(weft_common::locality::PlacedObject {
                key,
                size: version.size,
                segments: version.segments,
            });
        }
        Ok((out, None))
    }

    /// Every version and delete marker under `prefix`, key order then newest
    /// first, after the markers, with each version's current shard
    /// placement; at most `max` entries and where the next page starts.
    /// Reads from the key marker on, and without a delimiter only the keys
    /// one page can need, so a walk of a large prefix reads each key about
    /// once instead of the whole prefix per page. With a delimiter it reads
    /// the rest of the prefix (common prefixes fold any number of keys).
    pub fn versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
        delimiter: Option<&str>,
        max: u32,
    ) -> Result<VersionPage, MetaError> {
        match self.versions_read(
            bucket,
            prefix,
            key_marker,
            version_marker,
            delimiter,
            max,
            true,
        )? {
            Some(page) => Ok(page),
            // A key holding NUL: its history and the next key's interleave
            // in the table, so only a read of the whole rest is sure.
            None => Ok(self
                .versions_read(
                    bucket,
                    prefix,
                    key_marker,
                    version_marker,
                    delimiter,
                    max,
                    false,
                )?
                .expect("an unbounded read always answers")),
        }
    }

    /// [`versions`](Self::versions), reading only the keys a page needs
    /// when `bounded`; `None` when that cannot be done safely (a key holds
    /// NUL).
    #[allow(clippy::too_many_arguments)]
    fn versions_read(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
        delimiter: Option<&str>,
        max: u32,
        bounded: bool,
    ) -> Result<Option<VersionPage>, MetaError> {
        let tx = self.begin_read()?;
        let base = object_key(bucket, "");
        let lo = object_key(bucket, prefix);
        let hi = prefix_end(&lo);
        // Keys before the marker are never returned.
        let start = match key_marker {
            Some(km) if km > prefix => object_key(bucket, km),
            _ => lo.clone(),
        };
        if start.as_slice() >= hi.as_slice() {
            return Ok(Some(VersionPage::default()));
        }
        // The marker's own key may yield nothing more; every other key at
        // least one entry.
        let limit =
            (bounded && delimiter.filter(|d| !d.is_empty()).is_none()).then_some(max as usize + 2);
        let mut by_key: BTreeMap<String, Vec<VersionRecord>> = Default::default();
        // The first key each scan stopped before (exclusive), if it stopped.
        let mut cutoff: Option<String> = None;
        let mut seen = 0usize;
        let mut last_key: Option<String> = None;
        for it in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(start.as_slice()..hi.as_slice())?
        {
            let (k, v) = it?;
            let full = k.value();
            let key = String::from_utf8_lossy(&full[base.len()..full.len() - 9]).into_owned();
            if limit.is_some() && key.contains('\0') {
                return Ok(None);
            }
            if last_key.as_deref() != Some(key.as_str()) {
                if limit == Some(seen) {
                    cutoff = Some(key);
                    break;
                }
                seen += 1;
                last_key = Some(key.clone());
            }
            by_key
                .entry(key)
                .or_default()
                .push(item(T_VERSIONS, &k, &v)?);
        }
        for (seen, it) in tx
            .open_table(OBJECTS)?
            .range::<&[u8]>(start.as_slice()..hi.as_slice())?
            .enumerate()
        {
            let (k, v) = it?;
            let key = String::from_utf8_lossy(&k.value()[base.len()..]).into_owned();
            if cutoff.as_deref().is_some_and(|c| key.as_str() >= c) {
                break;
            }
            if limit == Some(seen) {
                cutoff = Some(key);
                break;
            }
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
        // Keys at or past the cutoff were not read whole.
        if let Some(c) = &cutoff {
            by_key.retain(|k, _| k < c);
        }
        let segments = tx.open_table(SEGMENTS)?;
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
                            return Ok(Some(page));
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
                    return Ok(Some(page));
                }
                count += 1;
                last = Some((key.clone(), Some(r.version_id.clone())));
                let mut r = r;
                if let Some(v) = &mut r.version {
                    segment_index::overlay(&segments, &mut v.segments)?;
                }
                page.entries.push((key.clone(), r, i == 0));
            }
        }
        if cutoff.is_some() {
            // More keys follow what was read (not reached while the page
            // had room, which `limit` rules out; kept for safety).
            page.next = last;
        }
        Ok(Some(page))
    }

    /// Uploads in a bucket under a prefix, ordered by key then start time,
    /// without their parts. Scans the uploads table: fine while uploads in
    /// progress number in the thousands.
    pub fn uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>, MetaError> {
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
        let t = tx.open_table(SEGMENTS)?;
        let mut out = Vec::with_capacity(shards.len());
        for (seg, idx) in shards {
            let rec: Option<SegmentRecord> =
                t.get_sealed(T_SEGMENTS, segment_key(*seg).as_slice())?;
            // A cache copy is held as much as a placed shard: garbage
            // collection keeps it until metad forgets it.
            let held = match rec {
                Some(rec) => {
                    rec.shards.get(usize::from(*idx)).copied().flatten() == Some(node)
                        || rec.cache.iter().any(|c| c.index == *idx && c.node == node)
                }
                None => false,
            };
            out.push(held);
        }
        Ok(out)
    }

    /// Up to `max` indexed segments after `after`, in id order, and
    /// whether more follow.
    pub fn segments_page(
        &self,
        after: Option<SegmentId>,
        max: u32,
    ) -> Result<(Vec<(SegmentId, SegmentRecord)>, bool), MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(SEGMENTS)?;
        let start = after.map(segment_key);
        let range = match &start {
            Some(k) => t.range::<&[u8]>((
                std::ops::Bound::Excluded(k.as_slice()),
                std::ops::Bound::Unbounded,
            ))?,
            None => t.range::<&[u8]>(..)?,
        };
        let mut out = Vec::new();
        let mut more = false;
        for it in range {
            let (k, v) = it?;
            if out.len() == max as usize {
                more = true;
                break;
            }
            out.push((segment_id(k.value())?, item(T_SEGMENTS, &k, &v)?));
        }
        Ok((out, more))
    }

    /// Calls `f` for every indexed segment, from one consistent view.
    pub fn scan_segments(
        &self,
        mut f: impl FnMut(SegmentId, SegmentRecord),
    ) -> Result<(), MetaError> {
        let tx = self.begin_read()?;
        for it in tx.open_table(SEGMENTS)?.iter()? {
            let (k, v) = it?;
            f(segment_id(k.value())?, item(T_SEGMENTS, &k, &v)?);
        }
        Ok(())
    }

    /// Operator-set node states (nodes not listed are active).
    pub fn node_admin(&self) -> Result<BTreeMap<NodeId, NodeAdmin>, MetaError> {
        let tx = self.begin_read()?;
        let mut out = BTreeMap::new();
        for it in tx.open_table(NODE_ADMIN)?.iter()? {
            let (k, v) = it?;
            out.insert(NodeId(k.value()), item(T_NODE_ADMIN, &k, &v)?);
        }
        Ok(out)
    }

    /// Current repair settings.
    pub fn repair_config(&self) -> Result<RepairConfig, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get_sealed(T_META, KEY_REPAIR_CONFIG)?.unwrap_or_default())
    }

    /// Audit entries after `after`, at most `max`.
    pub fn audit_entries(
        &self,
        after: u64,
        max: u32,
    ) -> Result<Vec<weft_common::audit::AuditEntry>, MetaError> {
        crate::audit::entries(&self.begin_read()?, after, max)
    }

    /// Audit checkpoints covering entries after `after`, at most `max`.
    pub fn audit_checkpoints(
        &self,
        after: u64,
        max: u32,
    ) -> Result<Vec<weft_common::audit::AuditCheckpoint>, MetaError> {
        crate::audit::checkpoints(&self.begin_read()?, after, max)
    }

    /// The audit chain's state (its public keys are the caller's to add).
    pub fn audit_info(&self) -> Result<weft_common::audit::AuditInfo, MetaError> {
        crate::audit::info(&self.begin_read()?)
    }

    /// The cluster's upload timers, once the first leader has set them.
    pub fn upload_timers(&self) -> Result<Option<TimersRecord>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(META)?;
        t.get_sealed(T_META, KEY_UPLOAD_TIMERS)
    }

    /// The storage classes, once the first leader has seeded them.
    pub fn storage_classes(
        &self,
    ) -> Result<Option<Vec<weft_common::storage_class::StorageClass>>, MetaError> {
        crate::classes::read(&self.begin_read()?.open_table(META)?)
    }

    /// Classes being migrated, each with the definition it moves to.
    pub fn class_migrations(
        &self,
    ) -> Result<
        std::collections::BTreeMap<String, weft_common::storage_class::StorageClass>,
        MetaError,
    > {
        crate::classes::migrations(&self.begin_read()?.open_table(META)?)
    }

    /// How many residency changes were applied.
    pub fn residency_epoch(&self) -> Result<u64, MetaError> {
        crate::classes::residency_epoch(&self.begin_read()?.open_table(META)?)
    }

    /// Where the leader's lifecycle pass stood when last saved.
    pub fn lifecycle_cursor(&self) -> Result<Option<weft_common::lifecycle::Cursor>, MetaError> {
        self.begin_read()?
            .open_table(META)?
            .get_sealed(T_META, KEY_LIFECYCLE_CURSOR)
    }

    /// The cluster's lifecycle day in ms, once its first leader set it.
    pub fn lifecycle_day_ms(&self) -> Result<Option<u64>, MetaError> {
        crate::lifecycle::day_ms(&self.begin_read()?.open_table(META)?)
    }

    /// What each storage class holds, by class and bucket.
    pub fn class_usage(&self) -> Result<Vec<weft_common::rpc::ClassUsageRow>, MetaError> {
        let tx = self.begin_read()?;
        Ok(crate::classes::usage(&tx.open_table(CLASS_USAGE)?)?
            .into_iter()
            .map(|(class, bucket, usage)| weft_common::rpc::ClassUsageRow {
                class,
                bucket,
                usage,
            })
            .collect())
    }

    /// An access key by id.
    pub fn access_key(&self, access_key: &str) -> Result<Option<AccessKey>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(KEYS)?;
        t.get_sealed(T_KEYS, access_key)
    }

    /// All access keys.
    pub fn keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
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
        let tx = self.begin_read()?;
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
        fold!(AUDIT);
        fold!(AUDIT_CHECKPOINTS);
        fold!(CLASS_USAGE);
        fold!(WARMS);
        for key in [
            KEY_REQUEST_CLOCK,
            KEY_REPAIR_CONFIG,
            KEY_UPLOAD_TIMERS,
            KEY_AUDIT_HEAD,
            KEY_AUDIT_ANCHOR,
            KEY_AUDIT_CONFIG,
            KEY_STORAGE_CLASSES,
            KEY_LIFECYCLE_DAY,
            KEY_LIFECYCLE_CURSOR,
            KEY_CLASS_MIGRATIONS,
        ] {
            if let Some(v) = tx.open_table(META)?.get(key)? {
                crc = crc32c::crc32c_append(crc, v.value());
            }
        }
        crc = crc32c::crc32c_append(crc, &versioning::seq(&tx)?.to_le_bytes());
        Ok((applied.map(|l| l.index), format!("{count}-{crc:08x}")))
    }
}
