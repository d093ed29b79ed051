//! Warms and cache copies in the state machine (see
//! [`weft_common::warm`]): applying `Warm`, `DropWarm`, `AddCacheCopy` and
//! `DropCacheCopies`, the reads the leader's warming pass makes, and the
//! hooks other commands call so a cache copy never outlives what allowed it.
//!
//! Every apply here is idempotent: a warm is replaced whole, a copy is
//! added once and removed by `(index, node)`, and a drop of something
//! already gone is done.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use weft_common::manifest::{BucketInfo, ObjectVersion};
use weft_common::repair::SegmentRecord;
use weft_common::residency::Residency;
use weft_common::rpc::{CommandResult, Refusal};
use weft_common::topology::NodeInfo;
use weft_common::warm::{CacheCopy, Warm};
use weft_common::{NodeId, SegmentId};

use crate::envelope::{item, sealed, SealedRead};
use crate::error::MetaError;
use crate::segment_index;
use crate::state_machine::StateMachine;
use crate::tables::*;

fn refused(message: String) -> Result<CommandResult, MetaError> {
    Ok(CommandResult::Refused {
        refusal: Refusal::WarmRefused { message },
    })
}

/// Why `residency` keeps the bucket's bytes out of `zone`, judged on the
/// zone's registered nodes: `None` if some node of the zone may hold them.
pub(crate) fn residency_refuses(
    residency: Option<&Residency>,
    zone: &str,
    nodes: &[NodeInfo],
) -> Option<String> {
    let in_zone: Vec<&NodeInfo> = nodes.iter().filter(|n| n.zone == zone).collect();
    if in_zone.is_empty() {
        return Some(format!("zone {zone:?} has no data node"));
    }
    let r = residency?;
    if in_zone.iter().any(|n| r.admits(&n.zone, &n.labels)) {
        return None;
    }
    Some(format!(
        "the bucket's residency ({}) keeps its bytes out of zone {zone:?}",
        r.describe()
    ))
}

fn nodes(tx: &WriteTransaction) -> Result<Vec<NodeInfo>, MetaError> {
    let mut out = vec![];
    for it in tx.open_table(NODES)?.iter()? {
        let (k, v) = it?;
        out.push(item(T_NODES, &k, &v)?);
    }
    Ok(out)
}

/// Most warms the cluster keeps: each costs the leader a walk of its
/// dataset every pass.
pub const WARMS_MAX: usize = 1024;

/// `Warm`: records (or replaces) the warm, if the zone may hold the
/// bucket's bytes.
pub(crate) fn put(tx: &WriteTransaction, warm: &Warm) -> Result<CommandResult, MetaError> {
    if let Err(e) = warm.validate() {
        return refused(e);
    }
    let k = warm_key(&warm.zone, &warm.bucket, &warm.prefix);
    {
        let t = tx.open_table(WARMS)?;
        if t.get(k.as_slice())?.is_none() && t.len()? as usize >= WARMS_MAX {
            return refused(format!(
                "the cluster keeps at most {WARMS_MAX} warms; drop some (weft warm status, weft warm drop)"
            ));
        }
    }
    let Some(bucket) = tx
        .open_table(BUCKETS)?
        .get_sealed::<BucketInfo>(T_BUCKETS, warm.bucket.as_str())?
    else {
        return Ok(CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        });
    };
    if let Some(why) = residency_refuses(bucket.residency.as_ref(), &warm.zone, &nodes(tx)?) {
        return refused(format!("cannot warm {}: {why}", warm.describe()));
    }
    tx.open_table(WARMS)?.insert(
        k.as_slice(),
        sealed::<&[u8], _>(k.as_slice(), warm).as_slice(),
    )?;
    Ok(CommandResult::Done)
}

/// `DropWarm`: removes the warm (only the one asked for at `created_ms`,
/// if given). Gone already is done.
pub(crate) fn drop_warm(
    tx: &WriteTransaction,
    zone: &str,
    bucket: &str,
    prefix: &str,
    created_ms: Option<u64>,
) -> Result<CommandResult, MetaError> {
    let k = warm_key(zone, bucket, prefix);
    let mut t = tx.open_table(WARMS)?;
    let Some(w) = t.get_sealed::<Warm>(T_WARMS, k.as_slice())? else {
        return Ok(CommandResult::Done);
    };
    if created_ms.is_some_and(|c| c != w.created_ms) {
        return Ok(CommandResult::Refused {
            refusal: Refusal::Stale,
        });
    }
    t.remove(k.as_slice())?;
    Ok(CommandResult::Done)
}

/// Removes every warm of `bucket` that `residency` keeps out of its zone,
/// and with `residency` `None` nothing; on a deleted bucket (`gone`),
/// every warm of it.
pub(crate) fn drop_refused(
    tx: &WriteTransaction,
    bucket: &str,
    residency: Option<&Residency>,
    gone: bool,
) -> Result<(), MetaError> {
    if residency.is_none() && !gone {
        return Ok(());
    }
    let nodes = nodes(tx)?;
    let mut t = tx.open_table(WARMS)?;
    let mut doomed = vec![];
    for it in t.iter()? {
        let (k, v) = it?;
        let w: Warm = item(T_WARMS, &k, &v)?;
        if w.bucket == bucket && (gone || residency_refuses(residency, &w.zone, &nodes).is_some()) {
            doomed.push(k.value().to_vec());
        }
    }
    for k in doomed {
        t.remove(k.as_slice())?;
    }
    Ok(())
}

/// Whether a warm of `zone` covers `bucket/key`.
fn covered(tx: &WriteTransaction, zone: &str, bucket: &str, key: &str) -> Result<bool, MetaError> {
    let lo = warm_key(zone, bucket, "");
    let hi = prefix_end(&lo);
    for it in tx
        .open_table(WARMS)?
        .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
    {
        let (k, v) = it?;
        let w: Warm = item(T_WARMS, &k, &v)?;
        if w.covers(bucket, key) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `AddCacheCopy`: records that `node` holds a cache copy of shard `index`
/// of `segment`, in the node's zone. Refused as stale (the file is then
/// garbage) when the segment or node is gone, no warm of the node's zone
/// covers the object any more, the bucket's residency excludes the node,
/// or the zone already holds that index, placed or cached (a second copy
/// planned before the first committed); done for a repeat.
pub(crate) fn add_copy(
    tx: &WriteTransaction,
    segment: SegmentId,
    index: u8,
    node: NodeId,
) -> Result<CommandResult, MetaError> {
    let stale = Ok(CommandResult::Refused {
        refusal: Refusal::Stale,
    });
    let Some(info) = tx
        .open_table(NODES)?
        .get_sealed::<NodeInfo>(T_NODES, node.0)?
    else {
        return stale;
    };
    let mut t = tx.open_table(SEGMENTS)?;
    let k = segment_key(segment);
    let Some(mut rec) = t.get_sealed::<SegmentRecord>(T_SEGMENTS, k.as_slice())? else {
        return stale;
    };
    if usize::from(index) >= rec.shards.len() {
        return stale;
    }
    let residency = tx
        .open_table(BUCKETS)?
        .get_sealed::<BucketInfo>(T_BUCKETS, rec.bucket.as_str())?
        .and_then(|b| b.residency);
    if residency.is_some_and(|r| !r.admits(&info.zone, &info.labels))
        || !covered(tx, &info.zone, &rec.bucket, &rec.key)?
    {
        return stale;
    }
    let placed_in_zone = match rec.shards[usize::from(index)] {
        Some(n) if n == node => true,
        Some(n) => tx
            .open_table(NODES)?
            .get_sealed::<NodeInfo>(T_NODES, n.0)?
            .is_some_and(|p| p.zone == info.zone),
        None => false,
    };
    if rec.cache.iter().any(|c| c.index == index && c.node == node) {
        // This very copy, recorded already: a repeat.
        return Ok(CommandResult::Done);
    }
    if placed_in_zone
        || rec
            .cache
            .iter()
            .any(|c| c.index == index && c.zone == info.zone)
    {
        // The zone holds the index already: nothing to record, and the
        // file is garbage.
        return stale;
    }
    rec.cache.push(CacheCopy {
        index,
        node,
        zone: info.zone,
    });
    rec.cache.sort();
    t.insert(
        k.as_slice(),
        segment_index::encode(segment, &rec).as_slice(),
    )?;
    Ok(CommandResult::Done)
}

/// `DropCacheCopies`: forgets the named copies; those already gone are
/// ignored.
pub(crate) fn drop_copies(
    tx: &WriteTransaction,
    segment: SegmentId,
    copies: &[(u8, NodeId)],
) -> Result<CommandResult, MetaError> {
    let mut t = tx.open_table(SEGMENTS)?;
    let k = segment_key(segment);
    let Some(mut rec) = t.get_sealed::<SegmentRecord>(T_SEGMENTS, k.as_slice())? else {
        return Ok(CommandResult::Done);
    };
    let before = rec.cache.len();
    rec.cache
        .retain(|c| !copies.iter().any(|(i, n)| c.index == *i && c.node == *n));
    if rec.cache.len() != before {
        t.insert(
            k.as_slice(),
            segment_index::encode(segment, &rec).as_slice(),
        )?;
    }
    Ok(CommandResult::Done)
}

/// For `DropShard` and `ReportDamage` naming a node that holds shard
/// `index` only as a cache copy: forgets the copy (a cache copy is never
/// repaired; the zone warms it again from the placed shards) and answers
/// done. `None` when `node` holds no such copy, so the command goes on to
/// judge the placed slot.
pub(crate) fn forget_bad_copy(
    tx: &WriteTransaction,
    segment: SegmentId,
    index: u8,
    node: NodeId,
) -> Result<Option<CommandResult>, MetaError> {
    let k = segment_key(segment);
    let rec = tx
        .open_table(SEGMENTS)?
        .get_sealed::<SegmentRecord>(T_SEGMENTS, k.as_slice())?;
    let Some(rec) = rec else { return Ok(None) };
    let placed_here = rec.shards.get(usize::from(index)).copied().flatten() == Some(node);
    let cached = rec.cache.iter().any(|c| c.index == index && c.node == node);
    if placed_here || !cached {
        return Ok(None);
    }
    drop_copies(tx, segment, &[(index, node)]).map(Some)
}

impl StateMachine {
    /// Every warm, by zone, bucket and prefix.
    pub fn warms(&self) -> Result<Vec<Warm>, MetaError> {
        let tx = self.begin_read()?;
        let mut out = vec![];
        for it in tx.open_table(WARMS)?.iter()? {
            let (k, v) = it?;
            out.push(item(T_WARMS, &k, &v)?);
        }
        Ok(out)
    }

    /// Visits every indexed segment that has cache copies.
    pub fn scan_cached_segments(
        &self,
        mut f: impl FnMut(SegmentId, SegmentRecord),
    ) -> Result<(), MetaError> {
        self.scan_segments(|id, rec| {
            if !rec.cache.is_empty() {
                f(id, rec)
            }
        })
    }

    /// Whether `segment` belongs to the current version of `bucket/key`.
    pub fn is_current_segment(
        &self,
        bucket: &str,
        key: &str,
        segment: SegmentId,
    ) -> Result<bool, MetaError> {
        let tx = self.begin_read()?;
        let k = object_key(bucket, key);
        let v: Option<ObjectVersion> = tx
            .open_table(OBJECTS)?
            .get_sealed(T_OBJECTS, k.as_slice())?;
        Ok(v.is_some_and(|v| v.segments.iter().any(|s| s.id == segment)))
    }
}
