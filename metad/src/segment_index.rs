//! The segment index: where every live segment's shards are now.
//!
//! `segments[id]` holds a [`SegmentRecord`] for each segment referenced by an
//! object version or an upload part. It is maintained in apply from the
//! [`Effects`] each command reports (what it added and what it released), in
//! the same transaction, so it can never disagree with the manifests about
//! which segments exist. Manifests keep the placement they
//! were written with; repair, drain and rebalance update only this table, and
//! readers get manifests with it overlaid. The durability planner scans it,
//! and datad's garbage collector asks it which shard files are still wanted.

use redb::{ReadableTable, WriteTransaction};
use weft_common::manifest::{ObjectVersion, Segment, Upload, VersionRecord};
use weft_common::repair::SegmentRecord;
use weft_common::{NodeId, SegmentId};

use crate::effects::{Effects, Owner};
use crate::envelope::{item, SealedRead};
use crate::error::MetaError;
use crate::tables::{
    segment_key, OBJECTS, SEGMENTS, T_OBJECTS, T_SEGMENTS, T_UPLOADS, T_VERSIONS, UPLOADS, VERSIONS,
};

/// A record sealed under its segment's table key.
pub(crate) fn encode(id: SegmentId, r: &SegmentRecord) -> Vec<u8> {
    crate::envelope::encode(&segment_key(id), r)
}

/// Brings the index in step with one applied command: drops what it
/// released and records what it added.
pub(crate) fn record(tx: &WriteTransaction, effects: &Effects) -> Result<(), MetaError> {
    let mut t = tx.open_table(SEGMENTS)?;
    let mut counted: Vec<(SegmentRecord, i8)> = vec![];
    for s in &effects.released {
        if let Some(old) = t.remove(segment_key(s.id).as_slice())? {
            let rec: SegmentRecord =
                crate::envelope::decode(T_SEGMENTS, &segment_key(s.id), old.value())?;
            counted.push((rec, -1));
        }
    }
    for (owner, s) in &effects.added {
        if let Some(rec) = add(&mut t, owner, s)? {
            counted.push((rec, 1));
        }
    }
    drop(t);
    for (rec, sign) in counted {
        crate::classes::count(tx, &rec, sign)?;
    }
    Ok(())
}

/// Indexes `s` with the placement it was written with, unless it is
/// indexed already: a completed upload names its parts' segments again,
/// and their placement may since have been repaired. Returns the record
/// when it is new.
fn add(
    t: &mut redb::Table<&'static [u8], &'static [u8]>,
    owner: &Owner,
    s: &Segment,
) -> Result<Option<SegmentRecord>, MetaError> {
    let k = segment_key(s.id);
    if t.get(k.as_slice())?.is_none() {
        let rec = SegmentRecord {
            bucket: owner.bucket.clone(),
            key: owner.key.clone(),
            class: owner.class.clone(),
            layout: s.layout,
            len: s.len,
            shard_len: s.shard_len,
            shards: s.shards.clone(),
            placement: s.placement.clone(),
            damage: vec![],
            cache: vec![],
        };
        t.insert(k.as_slice(), encode(s.id, &rec).as_slice())?;
        return Ok(Some(rec));
    }
    Ok(None)
}

/// What a placement walk reads of a manifest: the rest of it (metadata,
/// checksums, tags) is skipped by the decoder without being built.
#[derive(serde::Deserialize)]
pub(crate) struct SizedSegments {
    pub size: u64,
    pub segments: Vec<SegmentWhere>,
}

/// What a placement walk reads of a manifest's segment.
#[derive(serde::Deserialize)]
pub(crate) struct SegmentWhere {
    pub id: SegmentId,
    pub len: u64,
    pub layout: LayoutWhere,
    pub shards: Vec<Option<NodeId>>,
    pub shard_len: u64,
}

/// [`Layout`](weft_common::profile::Layout) read as a plain struct: the
/// enum's tag sits inside the object, which makes serde buffer each one
/// into an untyped tree first — per segment, on a walk of thousands.
/// Its equality with the enum's decoding is tested below for both kinds,
/// and the walk's with the full decode in
/// `version_pages_cover_the_prefix_exactly_once_whatever_their_size`
/// (replicated segments) and end to end on erasure-coded objects in
/// `cli/tests/locality.rs`.
#[derive(serde::Deserialize)]
pub(crate) struct LayoutWhere {
    kind: LayoutKind,
    copies: Option<u8>,
    k: Option<u8>,
    m: Option<u8>,
    unit_bytes: Option<u32>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum LayoutKind {
    Replicated,
    Erasure,
}

impl LayoutWhere {
    /// The layout; `None` when a field its kind needs is missing (where
    /// the full decode would have failed).
    pub(crate) fn layout(&self) -> Option<weft_common::profile::Layout> {
        use weft_common::profile::Layout;
        Some(match self.kind {
            LayoutKind::Replicated => Layout::Replicated {
                copies: self.copies?,
            },
            LayoutKind::Erasure => Layout::Erasure {
                k: self.k?,
                m: self.m?,
                unit_bytes: self.unit_bytes?,
            },
        })
    }
}

/// What a placement walk reads of a segment record.
#[derive(serde::Deserialize)]
pub(crate) struct RecordWhere {
    pub shards: Vec<Option<NodeId>>,
    #[serde(default)]
    pub cache: Vec<weft_common::warm::CacheCopy>,
}

/// The current holders and cache copies of segment `id`, if indexed.
pub(crate) fn placement_of<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    id: SegmentId,
) -> Result<Option<RecordWhere>, MetaError> {
    t.get_sealed::<RecordWhere>(T_SEGMENTS, segment_key(id).as_slice())
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
            s.cache = rec.cache;
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
    let mut t = tx.open_table(SEGMENTS)?;
    let mut n = 0;
    for (bucket, key_name, class, segments) in found {
        n += segments.len() as u64;
        let owner = Owner::new(&bucket, &key_name, &class);
        for s in &segments {
            add(&mut t, &owner, s)?;
        }
    }
    drop(t);
    crate::classes::recount(tx)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::profile::Layout;

    #[test]
    fn a_layout_read_as_a_plain_struct_equals_the_enum() {
        for layout in [
            Layout::Replicated { copies: 3 },
            Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            Layout::Erasure {
                k: 10,
                m: 4,
                unit_bytes: 64 << 10,
            },
        ] {
            let json = serde_json::to_vec(&layout).unwrap();
            let read: LayoutWhere = serde_json::from_slice(&json).unwrap();
            assert_eq!(read.layout(), Some(layout));
        }
        assert!(serde_json::from_str::<LayoutWhere>(r#"{"kind":"mirror"}"#).is_err());
        // A field its kind needs is missing: no layout, as the full
        // decode refuses it.
        for partial in [
            r#"{"kind":"erasure","k":4,"m":2}"#,
            r#"{"kind":"erasure"}"#,
            r#"{"kind":"replicated"}"#,
        ] {
            let read: LayoutWhere = serde_json::from_str(partial).unwrap();
            assert_eq!(read.layout(), None, "{partial}");
            assert!(
                serde_json::from_str::<Layout>(partial).is_err(),
                "{partial}"
            );
        }
    }
}
