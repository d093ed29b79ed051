//! Snapshots: every table as one versioned JSON document, written durably
//! beside the database.
//!
//! A snapshot is what a voter that fell behind the purged log installs, so
//! it must hold exactly the state at its `last_log_id`: it is dumped from
//! one read transaction together with the applied log id and membership,
//! and installed in one write transaction. Fields added since the first
//! format default when absent, so older snapshots still install.

use openraft::storage::Snapshot;
use openraft::{LogId, SnapshotMeta, StorageError, StorageIOError, StoredMembership};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Upload, VersionRecord};
use weft_common::repair::{RepairConfig, SegmentRecord};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::upload_timers::TimersRecord;
use weft_common::SegmentId;

use crate::envelope::{self, item, sealed, SealedRead};
use crate::error::{sm_read_err, MetaError};
use crate::segment_index;
use crate::tables::*;
use crate::versioning;
use crate::{RaftNodeId, TypeConfig};

/// Version of the snapshot document; bump and migrate when its shape changes.
pub const SNAPSHOT_FORMAT: u32 = 1;

pub(crate) type Membership = StoredMembership<RaftNodeId, openraft::BasicNode>;
pub(crate) type Meta = SnapshotMeta<RaftNodeId, openraft::BasicNode>;
type SE = StorageError<RaftNodeId>;

/// Every table, as one document: the snapshot payload.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct SnapshotDoc {
    pub(crate) format: u32,
    pub(crate) buckets: Vec<BucketInfo>,
    pub(crate) objects: Vec<(String, String, ObjectVersion)>,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) keys: Vec<AccessKey>,
    #[serde(default)]
    pub(crate) uploads: Vec<Upload>,
    /// Version history: (hex table key, record).
    #[serde(default)]
    pub(crate) versions: Vec<(String, VersionRecord)>,
    #[serde(default)]
    pub(crate) version_seq: u64,
    /// Current shard placement; absent in snapshots older than the index,
    /// which is then rebuilt from the manifests.
    #[serde(default)]
    pub(crate) segments: Option<Vec<(SegmentId, SegmentRecord)>>,
    #[serde(default)]
    pub(crate) node_admin: Vec<(u64, NodeAdmin)>,
    #[serde(default)]
    pub(crate) repair_config: Option<RepairConfig>,
    /// Absent in snapshots from before the timers were replicated; the
    /// leader then seeds them from its config.
    #[serde(default)]
    pub(crate) upload_timers: Option<TimersRecord>,
    /// Absent in snapshots from before classes were data; the leader then
    /// seeds them from its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) storage_classes: Option<Vec<weft_common::storage_class::StorageClass>>,
    /// The cluster's lifecycle day, once seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lifecycle_day_ms: Option<u64>,
    /// Where the leader's lifecycle pass stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lifecycle_cursor: Option<weft_common::lifecycle::Cursor>,
    /// Class migrations in progress.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) class_migrations: crate::classes::Migrations,
    /// Requests applied within the retention, so a retry that reaches a
    /// voter restored from this snapshot is still recognised.
    #[serde(default)]
    pub(crate) requests: Vec<(weft_common::RequestId, crate::requests::Record)>,
    #[serde(default)]
    pub(crate) request_clock: u64,
    /// The audit chain; absent in snapshots from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audit: Option<crate::audit::ChainDoc>,
    /// Datasets kept warm in zones; their cache copies travel in `segments`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) warms: Vec<weft_common::warm::Warm>,
}

/// The snapshot file: openraft's meta beside the document's bytes, so the
/// file is served to a follower without serialising the tables again.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: Meta,
    pub(crate) data: Vec<u8>,
}

/// The snapshot file of one state machine.
pub(crate) struct SnapshotFile {
    path: PathBuf,
    /// Serialises snapshot writes and remembers the newest one written, so a
    /// build racing an install can never replace a newer snapshot.
    written: Mutex<Option<Option<LogId<RaftNodeId>>>>,
}

impl SnapshotFile {
    /// The snapshot file under `dir`. The caller holds the database lock,
    /// which makes this process the only writer of the snapshot: temp files
    /// beside it are left by crashed writes, and are removed.
    pub(crate) fn open(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.join("snapshot.json");
        weft_common::durable_file::remove_stale_temps(&path).map_err(|e| {
            MetaError::Store(redb::Error::Io(std::io::Error::new(e.source.kind(), e)))
        })?;
        Ok(SnapshotFile {
            path,
            written: Mutex::default(),
        })
    }

    /// Writes `snap` durably unless a newer one is already on disk.
    pub(crate) fn write(&self, snap: &StoredSnapshot) -> std::io::Result<()> {
        let mut written = self.written.lock().expect("snapshot lock poisoned");
        if written.is_none() {
            *written = Some(self.read()?.and_then(|s| s.meta.last_log_id));
        }
        if let Some(newest) = *written {
            if snap.meta.last_log_id < newest {
                return Ok(()); // a newer snapshot is already on disk
            }
        }
        let bytes = serde_json::to_vec(snap)?;
        use weft_common::durable_file::{write_file, Access};
        write_file(&self.path, &bytes, Access::Default)
            .map_err(|e| std::io::Error::new(e.source.kind(), e))?;
        *written = Some(snap.meta.last_log_id);
        Ok(())
    }

    /// The snapshot on disk, if one was written.
    pub(crate) fn read(&self) -> std::io::Result<Option<StoredSnapshot>> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Builds a snapshot of the state `db` holds now and writes it to `file`.
/// The caller makes every applied entry durable first: once this snapshot
/// exists the log before it may be purged.
pub(crate) fn build(db: &Database, file: &SnapshotFile) -> Result<Snapshot<TypeConfig>, SE> {
    // Read data and applied state from one consistent view: apply runs
    // concurrently with snapshot building.
    let (doc, applied, membership) = dump(db).map_err(sm_read_err)?;
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
    file.write(&stored)
        .map_err(|e| SE::from(StorageIOError::write_snapshot(Some(meta.signature()), &e)))?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    })
}

/// Parses a received snapshot, refusing a format this metad cannot read.
pub(crate) fn decode(meta: &Meta, data: &[u8]) -> Result<SnapshotDoc, SE> {
    let doc: SnapshotDoc = serde_json::from_slice(data)
        .map_err(|e| SE::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
    if doc.format != SNAPSHOT_FORMAT {
        let e = std::io::Error::other(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT}",
            doc.format
        ));
        return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
    }
    Ok(doc)
}

/// Installs a received snapshot: its state into `db`, then its bytes as the
/// current snapshot.
pub(crate) fn install(
    db: &Database,
    file: &SnapshotFile,
    doc: &SnapshotDoc,
    meta: Meta,
    data: Vec<u8>,
) -> Result<(), SE> {
    load(db, doc, &meta).map_err(crate::error::sm_write_err)?;
    file.write(&StoredSnapshot {
        meta: meta.clone(),
        data,
    })
    .map_err(|e| SE::from(StorageIOError::write_snapshot(Some(meta.signature()), &e)))
}

/// The snapshot on disk, as openraft hands it to a lagging follower.
pub(crate) fn current(file: &SnapshotFile) -> Result<Option<Snapshot<TypeConfig>>, SE> {
    let stored = file.read().map_err(sm_read_err)?;
    Ok(stored.map(|s| Snapshot {
        meta: s.meta,
        snapshot: Box::new(Cursor::new(s.data)),
    }))
}

/// Every table, with the applied log id and membership they reflect,
/// read in one transaction so the three always agree.
pub(crate) fn dump(
    db: &Database,
) -> Result<(SnapshotDoc, Option<LogId<RaftNodeId>>, Membership), MetaError> {
    let tx = db.begin_read()?;
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
            .ok_or_else(|| redb::Error::Corrupted("object key has no separator".into()))?;
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
            .push((hex_encode(k.value()), item(T_VERSIONS, &k, &v)?));
    }
    doc.version_seq = versioning::seq(&tx)?;
    let mut segments = vec![];
    for it in tx.open_table(SEGMENTS)?.iter()? {
        let (k, v) = it?;
        segments.push((segment_id(k.value())?, item(T_SEGMENTS, &k, &v)?));
    }
    doc.segments = Some(segments);
    for it in tx.open_table(NODE_ADMIN)?.iter()? {
        let (k, v) = it?;
        doc.node_admin
            .push((k.value(), item(T_NODE_ADMIN, &k, &v)?));
    }
    doc.repair_config = tx.open_table(META)?.get_sealed(T_META, KEY_REPAIR_CONFIG)?;
    doc.upload_timers = tx.open_table(META)?.get_sealed(T_META, KEY_UPLOAD_TIMERS)?;
    doc.storage_classes = crate::classes::read(&tx.open_table(META)?)?;
    doc.lifecycle_day_ms = crate::lifecycle::day_ms(&tx.open_table(META)?)?;
    doc.lifecycle_cursor = tx
        .open_table(META)?
        .get_sealed(T_META, KEY_LIFECYCLE_CURSOR)?;
    doc.class_migrations = crate::classes::migrations(&tx.open_table(META)?)?;
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
    doc.audit = Some(crate::audit::dump(&tx)?);
    for it in tx.open_table(WARMS)?.iter()? {
        let (k, v) = it?;
        doc.warms.push(item(T_WARMS, &k, &v)?);
    }
    Ok((doc, applied, membership))
}

/// Replaces every table with `doc`, and the applied state with `meta`'s,
/// in one transaction: a crash leaves the old state or the new, never a mix.
pub(crate) fn load(db: &Database, doc: &SnapshotDoc, meta: &Meta) -> Result<(), MetaError> {
    let tx = db.begin_write()?;
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
                    segment_key(*id).as_slice(),
                    segment_index::encode(*id, r).as_slice(),
                )?;
            }
        }
        if doc.segments.is_none() {
            segment_index::rebuild(&tx)?;
        } else {
            crate::classes::recount(&tx)?;
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
        crate::audit::load(&tx, doc.audit.as_ref())?;
        {
            let mut w = tx.open_table(WARMS)?;
            w.retain(|_, _| false)?;
            for x in &doc.warms {
                let k = warm_key(&x.zone, &x.bucket, &x.prefix);
                w.insert(k.as_slice(), sealed::<&[u8], _>(k.as_slice(), x).as_slice())?;
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
        // Recounted below from the installed index.
        put(KEY_CLASS_USAGE, sealed::<&str, _>(KEY_CLASS_USAGE, &1u32))?;
        if let Some(c) = &doc.repair_config {
            put(KEY_REPAIR_CONFIG, sealed::<&str, _>(KEY_REPAIR_CONFIG, c))?;
        }
        if let Some(t) = &doc.upload_timers {
            put(KEY_UPLOAD_TIMERS, sealed::<&str, _>(KEY_UPLOAD_TIMERS, t))?;
        }
        if let Some(c) = &doc.storage_classes {
            put(
                KEY_STORAGE_CLASSES,
                sealed::<&str, _>(KEY_STORAGE_CLASSES, c),
            )?;
        }
        if let Some(d) = &doc.lifecycle_day_ms {
            put(KEY_LIFECYCLE_DAY, sealed::<&str, _>(KEY_LIFECYCLE_DAY, d))?;
        }
        if !doc.class_migrations.is_empty() {
            put(
                KEY_CLASS_MIGRATIONS,
                sealed::<&str, _>(KEY_CLASS_MIGRATIONS, &doc.class_migrations),
            )?;
        }
        if let Some(c) = &doc.lifecycle_cursor {
            put(
                KEY_LIFECYCLE_CURSOR,
                sealed::<&str, _>(KEY_LIFECYCLE_CURSOR, c),
            )?;
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

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}
