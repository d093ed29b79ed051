//! The segment index: where every live segment's shards are now.
//!
//! `segments[id]` holds a [`SegmentRecord`] for each segment referenced by an
//! object version or an upload part. It is maintained in apply from what each
//! command adds and what its result releases, so it can never disagree with
//! the manifests about which segments exist. Manifests keep the placement they
//! were written with; repair, drain and rebalance update only this table, and
//! readers get manifests with it overlaid. The durability planner scans it,
//! and datad's garbage collector asks it which shard files are still wanted.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use weft_common::manifest::{ObjectVersion, Segment, Upload, VersionRecord};
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{Command, CommandResult, Refusal};
use weft_common::{NodeId, SegmentId};

use crate::envelope::{item, SealedRead};
use crate::error::MetaError;
use crate::tables::{T_OBJECTS, T_UPLOADS};
use std::collections::HashSet;

pub(crate) const SEGMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("segments");

/// Table key of a segment: its id big-endian, so the scan order is stable.
pub(crate) fn key(id: SegmentId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// The segment id in a table key.
pub(crate) fn id_of(key: &[u8]) -> SegmentId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&key[..16]);
    SegmentId(u128::from_be_bytes(b))
}

/// Table name in envelope errors.
pub(crate) const T_SEGMENTS: &str = "segments";

pub(crate) fn encode(id: SegmentId, r: &SegmentRecord) -> Vec<u8> {
    crate::envelope::encode(&key(id), r)
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
        let k = key(s.id);
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
        let k = key(s.id);
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
                .open_table(crate::tables::UPLOADS)?
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
                .open_table(crate::tables::OBJECTS)?
                .get_sealed(T_OBJECTS, crate::tables::object_key(bucket, key).as_slice())?;
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

/// `MoveShard`: compare-and-set of one slot. Refused if the slot changed
/// or `to` already holds another shard of the segment.
pub(crate) fn move_shard(
    tx: &WriteTransaction,
    segment: SegmentId,
    index: u8,
    from: Option<NodeId>,
    to: NodeId,
) -> Result<CommandResult, MetaError> {
    set_slot(tx, segment, index, Some(to), |rec, slot| {
        rec.shards[slot] == from && !rec.shards.contains(&Some(to))
    })
}

/// `DropShard`: forget a shard found bad, if the slot still names `node`.
pub(crate) fn drop_shard(
    tx: &WriteTransaction,
    segment: SegmentId,
    index: u8,
    node: NodeId,
) -> Result<CommandResult, MetaError> {
    set_slot(tx, segment, index, None, |rec, slot| {
        rec.shards[slot] == Some(node)
    })
}

/// Sets one slot of an indexed segment to `value` if `expected` holds;
/// otherwise (or for an unknown segment or slot) refuses as stale.
fn set_slot(
    tx: &WriteTransaction,
    segment: SegmentId,
    index: u8,
    value: Option<NodeId>,
    expected: impl FnOnce(&SegmentRecord, usize) -> bool,
) -> Result<CommandResult, MetaError> {
    let mut t = tx.open_table(SEGMENTS)?;
    let k = key(segment);
    let rec: Option<SegmentRecord> = t.get_sealed(T_SEGMENTS, k.as_slice())?;
    let slot = usize::from(index);
    match rec {
        // Applied again: the slot already holds what this command sets.
        Some(rec) if slot < rec.shards.len() && rec.shards[slot] == value && value.is_some() => {
            Ok(CommandResult::Done)
        }
        Some(mut rec) if slot < rec.shards.len() && expected(&rec, slot) => {
            rec.shards[slot] = value;
            crate::damage::forget_slot(&mut rec, slot);
            t.insert(k.as_slice(), encode(segment, &rec).as_slice())?;
            Ok(CommandResult::Done)
        }
        _ => Ok(CommandResult::Refused {
            refusal: Refusal::Stale,
        }),
    }
}

/// Overlays current placement on a manifest read from the object tables.
pub(crate) fn overlay<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    segments: &mut [Segment],
) -> Result<(), MetaError> {
    for s in segments {
        if let Some(rec) = t.get_sealed::<SegmentRecord>(T_SEGMENTS, key(s.id).as_slice())? {
            s.shards = rec.shards;
        }
    }
    Ok(())
}

/// Rebuilds the index from every manifest: for databases and snapshots
/// written before the index existed.
pub(crate) fn rebuild(tx: &WriteTransaction) -> Result<u64, MetaError> {
    let mut found: Vec<(String, String, String, Vec<Segment>)> = vec![];
    for it in tx.open_table(crate::tables::OBJECTS)?.iter()? {
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
    for it in tx.open_table(crate::versioning::VERSIONS)?.iter()? {
        let (k, v) = it?;
        let r: VersionRecord = item(crate::versioning::T_VERSIONS, &k, &v)?;
        let full = k.value();
        let mut parts = full.split(|b| *b == 0);
        let bucket = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let key_name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        if let Some(v) = r.version {
            found.push((bucket, key_name, v.storage_class, v.segments));
        }
    }
    for it in tx.open_table(crate::tables::UPLOADS)?.iter()? {
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
