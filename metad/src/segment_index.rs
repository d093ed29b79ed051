//! The segment index: where every live segment's shards are now.
//!
//! `segments[id]` holds a [`SegmentRecord`] for each segment referenced by an
//! object version or an upload part. It is maintained in apply from what each
//! command adds and what its result releases, so it can never disagree with
//! the manifests about which segments exist. Manifests keep the placement they
//! were written with; repair, drain and rebalance update only this table, and
//! readers get manifests with it overlaid. The durability planner scans it,
//! and datad's garbage collector asks it which shard files are still wanted.

use redb::{ReadableTable, WriteTransaction};
use weft_common::manifest::{ObjectVersion, Segment, Upload, VersionRecord};
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{Command, CommandResult};
use weft_common::SegmentId;

use crate::envelope::{item, SealedRead};
use crate::error::MetaError;
use crate::tables::{
    object_key, segment_key, OBJECTS, SEGMENTS, T_OBJECTS, T_SEGMENTS, T_UPLOADS, T_VERSIONS,
    UPLOADS, VERSIONS,
};
use std::collections::HashSet;

/// A record sealed under its segment's table key.
pub(crate) fn encode(id: SegmentId, r: &SegmentRecord) -> Vec<u8> {
    crate::envelope::encode(&segment_key(id), r)
}

fn add(
    tx: &WriteTransaction,
    bucket: &str,
    key_name: &str,
    class: &str,
    segments: &[Segment],
) -> Result<(), MetaError> {
    let mut t = tx.open_table(SEGMENTS)?;
    for s in segments {
        let k = segment_key(s.id);
        // Insert only if absent: a retried command or a completed upload
        // names segments already indexed, whose placement may since have
        // been repaired.
        if t.get(k.as_slice())?.is_none() {
            let rec = SegmentRecord {
                bucket: bucket.to_string(),
                key: key_name.to_string(),
                class: class.to_string(),
                layout: s.layout,
                len: s.len,
                shard_len: s.shard_len,
                shards: s.shards.clone(),
                damage: vec![],
            };
            t.insert(k.as_slice(), encode(s.id, &rec).as_slice())?;
        }
    }
    Ok(())
}

/// Drops released segments from the index, first rewriting their placement
/// in the result to the current one, so whoever deletes the released shards
/// deletes them where they are now. A segment the same command adds is
/// never released: it is still referenced, whatever the result says.
fn release(
    tx: &WriteTransaction,
    segments: &mut Vec<Segment>,
    keep: &HashSet<SegmentId>,
) -> Result<(), MetaError> {
    segments.retain(|s| !keep.contains(&s.id));
    let mut t = tx.open_table(SEGMENTS)?;
    for s in segments.iter_mut() {
        let k = segment_key(s.id);
        if let Some(v) = t.remove(k.as_slice())? {
            let rec: SegmentRecord = crate::envelope::decode(T_SEGMENTS, &k, v.value())?;
            s.shards = rec.shards;
        }
    }
    Ok(())
}

fn release_version(
    tx: &WriteTransaction,
    v: &mut Option<ObjectVersion>,
    keep: &HashSet<SegmentId>,
) -> Result<(), MetaError> {
    if let Some(ver) = v {
        let before = ver.segments.len();
        release(tx, &mut ver.segments, keep)?;
        if before > 0 && ver.segments.is_empty() {
            // Everything it held is still referenced: nothing is released.
            *v = None;
        }
    }
    Ok(())
}

fn ids(segments: &[Segment]) -> HashSet<SegmentId> {
    segments.iter().map(|s| s.id).collect()
}

/// Updates the index after `cmd` applied with `result`.
pub(crate) fn track(
    tx: &WriteTransaction,
    cmd: &Command,
    result: &mut CommandResult,
) -> Result<(), MetaError> {
    if matches!(result, CommandResult::Refused { .. }) {
        return Ok(());
    }
    match (cmd, result) {
        (
            Command::PutObject {
                bucket,
                key,
                version,
                ..
            },
            CommandResult::Replaced { previous },
        ) => {
            release_version(tx, previous, &ids(&version.segments))?;
            add(tx, bucket, key, &version.storage_class, &version.segments)?;
        }
        (Command::DeleteObject { .. }, CommandResult::Replaced { previous }) => {
            release_version(tx, previous, &HashSet::new())?;
        }
        (
            Command::DeleteObject { .. } | Command::DeleteObjectVersion { .. },
            CommandResult::VersionDeleted { released, .. },
        ) => {
            release_version(tx, released, &HashSet::new())?;
        }
        (Command::PutPart { upload_id, part }, CommandResult::Released { segments }) => {
            release(tx, segments, &ids(&part.segments))?;
            let upload: Option<Upload> = tx
                .open_table(UPLOADS)?
                .get_sealed(T_UPLOADS, upload_id.as_str())?;
            if let Some(u) = upload {
                add(tx, &u.bucket, &u.key, &u.storage_class, &part.segments)?;
            }
        }
        (
            Command::CompleteUpload {
                bucket,
                key,
                version,
                ..
            },
            CommandResult::Released { segments },
        ) => {
            // Apply built the version from the parts it holds: index those.
            let current: Option<ObjectVersion> = tx
                .open_table(OBJECTS)?
                .get_sealed(T_OBJECTS, object_key(bucket, key).as_slice())?;
            let added = match current {
                Some(c) if c.version_id == version.version_id => c.segments,
                _ => vec![],
            };
            release(tx, segments, &ids(&added))?;
            add(tx, bucket, key, &version.storage_class, &added)?;
        }
        (Command::AbortUpload { .. }, CommandResult::Released { segments }) => {
            release(tx, segments, &HashSet::new())?;
        }
        _ => {}
    }
    Ok(())
}

/// Overlays current placement on a manifest read from the object tables.
pub(crate) fn overlay<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    segments: &mut [Segment],
) -> Result<(), MetaError> {
    for s in segments {
        if let Some(rec) =
            t.get_sealed::<SegmentRecord>(T_SEGMENTS, segment_key(s.id).as_slice())?
        {
            s.shards = rec.shards;
        }
    }
    Ok(())
}

/// Rebuilds the index from every manifest: for databases and snapshots
/// written before the index existed.
pub(crate) fn rebuild(tx: &WriteTransaction) -> Result<u64, MetaError> {
    let mut found: Vec<(String, String, String, Vec<Segment>)> = vec![];
    for it in tx.open_table(OBJECTS)?.iter()? {
        let (k, v) = it?;
        let v: ObjectVersion = item(T_OBJECTS, &k, &v)?;
        let full = k.value();
        let sep = full.iter().position(|b| *b == 0).unwrap_or(full.len());
        found.push((
            String::from_utf8_lossy(&full[..sep]).into_owned(),
            String::from_utf8_lossy(full.get(sep + 1..).unwrap_or_default()).into_owned(),
            v.storage_class,
            v.segments,
        ));
    }
    for it in tx.open_table(VERSIONS)?.iter()? {
        let (k, v) = it?;
        let r: VersionRecord = item(T_VERSIONS, &k, &v)?;
        let full = k.value();
        let mut parts = full.split(|b| *b == 0);
        let bucket = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let key_name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        if let Some(v) = r.version {
            found.push((bucket, key_name, v.storage_class, v.segments));
        }
    }
    for it in tx.open_table(UPLOADS)?.iter()? {
        let (k, v) = it?;
        let u: Upload = item(T_UPLOADS, &k, &v)?;
        for p in u.parts {
            found.push((
                u.bucket.clone(),
                u.key.clone(),
                u.storage_class.clone(),
                p.segments,
            ));
        }
    }
    let mut n = 0;
    for (bucket, key_name, class, segments) in found {
        n += segments.len() as u64;
        add(tx, &bucket, &key_name, &class, &segments)?;
    }
    Ok(n)
}
