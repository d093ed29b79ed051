//! Transitions between storage classes: planning a move into a task for a
//! data node, and applying its commit.
//!
//! A transition never rewrites a version in place. The leader plans a
//! task: for each segment, new shards in the target class's layout on
//! nodes its placement rule admits (or, when the shards already sit where
//! the target class wants them in the same layout, a relabel that moves
//! no bytes). A data node reads `k` shards of each old segment, re-encodes
//! and writes the new shards durably, then commits
//! `Command::TransitionVersion`: a compare-and-set that replaces the
//! version's segments only if they are still exactly the old ones, so an
//! overwrite, delete or other move since wins and the new shards become
//! garbage. The old segments leave the index in the same apply, and their
//! shards are released by the worker with a hold (datad's `release`), so
//! reads that resolved the old manifest finish first. A crash anywhere
//! leaves the old placement (not committed) or the new one (committed),
//! never a mix: the commit is one raft entry.

use redb::{ReadableTable, WriteTransaction};
use weft_common::lifecycle::{tiering, Step};
use weft_common::manifest::{BucketInfo, ObjectVersion, Segment};
use weft_common::placement::{self, Candidate};
use weft_common::profile::Layout;
use weft_common::repair::{SegmentRecord, ShardSource};
use weft_common::rpc::{Command, CommandResult, Refusal};
use weft_common::storage_class::KnownNode;
use weft_common::topology::{NodeAdmin, NodeView};
use weft_common::transition::{SegmentMove, TransitionTask};
use weft_common::{SegmentId, VersionId};

use crate::effects::{Applied, Effects, Owner};
use crate::envelope::{sealed, SealedRead};
use crate::error::MetaError;
use crate::state_machine::StateMachine;
use crate::tables::*;

/// What the leader made of one queued transition.
#[derive(Debug)]
pub enum Planned {
    /// The version is gone or no longer where the step found it.
    Gone,
    /// Every segment already sits where the target class wants it: commit
    /// this (no bytes move).
    Relabel(Box<Command>),
    /// Bytes to move: a task for a data node.
    Task(Box<TransitionTask>),
    /// The target class cannot be placed now (why).
    Unplaceable(String),
}

/// The version a transition step names, with current placement overlaid.
fn version_of(
    sm: &StateMachine,
    bucket: &str,
    key: &str,
    step: &Step,
) -> Result<Option<ObjectVersion>, MetaError> {
    Ok(match step {
        Step::TransitionCurrent { version_id, .. } => sm
            .object(bucket, key)?
            .filter(|v| v.version_id == *version_id),
        Step::TransitionNoncurrent { label, .. } => sm
            .object_version(bucket, key, label)?
            .and_then(|r| r.version),
        Step::Migrate { version_id, .. } | Step::Tier { version_id, .. } => {
            sm.version_by_id(bucket, key, *version_id)?
        }
        _ => None,
    })
}

/// Plans the move `step` of `bucket/key` asks for, as the state and the
/// nodes are now. `task_id` names the task; `random` makes segment ids.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    sm: &StateMachine,
    views: &[NodeView],
    bucket: &str,
    key: &str,
    step: &Step,
    at_ms: u64,
    task_id: u64,
    mut random: impl FnMut() -> u128,
) -> Result<Planned, MetaError> {
    let classes = sm.storage_classes()?.unwrap_or_default();
    let defined = |name: &str| classes.iter().any(|c| c.name == name);
    // The class the version reports after, and the one whose definition
    // places it (an access tier's, for a tier move).
    let (to_class, placed_by) = match step {
        Step::TransitionCurrent { class, .. }
        | Step::TransitionNoncurrent { class, .. }
        | Step::Migrate { class, .. } => (class.as_str(), class.as_str()),
        Step::Tier { to, .. } => (tiering::IT_CLASS, tiering::tier_class(*to, defined)),
        _ => return Ok(Planned::Gone),
    };
    let Some(v) = version_of(sm, bucket, key, step)? else {
        return Ok(Planned::Gone);
    };
    // A migration moves a version within its class (its frequent tier,
    // for Intelligent-Tiering); one that left it is not the migration's
    // any more. A tier move needs the tier the step found.
    let gone = match step {
        Step::Migrate { .. } => v.storage_class != to_class || v.tier.is_some(),
        Step::Tier { from, .. } => v.storage_class != tiering::IT_CLASS || v.tier != *from,
        _ => false,
    };
    if gone {
        return Ok(Planned::Gone);
    }
    let Some(class) = classes.iter().find(|c| c.name == placed_by).cloned() else {
        return Ok(Planned::Unplaceable(format!(
            "storage class {placed_by} is not defined"
        )));
    };
    // Inside the bucket's residency, whatever the class allows.
    let residency = sm.bucket(bucket)?.and_then(|b| b.residency);
    let class = weft_common::residency::narrow(&class, residency.as_ref());
    let by_id: std::collections::BTreeMap<_, _> = views.iter().map(|n| (n.info.id, n)).collect();
    let known = known_nodes(views);
    let records = sm.segment_records(v.segments.iter().map(|s| s.id))?;
    let mut moves = vec![];
    let mut relabel_only = true;
    for (s, rec) in v.segments.iter().zip(records) {
        let Some(rec) = rec else {
            return Ok(Planned::Gone);
        };
        let layout = class.layout_for(v.size);
        if !matches!(layout, Layout::Erasure { .. }) {
            return Ok(Planned::Unplaceable(format!(
                "storage class {to_class} keeps objects of {} bytes as replicas; transitions write erasure-coded segments only",
                v.size
            )));
        }
        let new_id = SegmentId(random());
        let rule = match class.resolve(new_id, layout, &known) {
            Ok(r) => r,
            Err(e) => return Ok(Planned::Unplaceable(e.to_string())),
        };
        let candidates: Vec<Candidate> = views
            .iter()
            .filter(|n| n.accepts_writes() && rule.admits(&n.info.zone, &n.info.labels))
            .map(|n| Candidate {
                node: n.info.id,
                zone: n.info.zone.clone(),
                free_bytes: n.free_bytes(),
                space: n.space.state,
            })
            .collect();
        let sources: Vec<ShardSource> = rec
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let view = by_id.get(&(*n)?)?;
                view.readable().then(|| ShardSource {
                    index: i as u8,
                    node: view.info.id,
                    addr: view.info.addr.clone(),
                })
            })
            .collect();
        // Staying put keeps the segment's id, so its rule is the one the
        // class resolves for that id (a one-zone class hashes it).
        let kept = class.resolve(s.id, layout, &known).ok();
        if let Some(kept) =
            kept.filter(|k| layout == s.layout && stays(&rec, k, &by_id, layout.width()))
        {
            let mut same = s.clone();
            same.placement = Some(kept);
            moves.push(SegmentMove {
                old: s.id,
                old_layout: s.layout,
                old_shard_len: rec.shard_len,
                sources,
                new: same,
                targets: vec![],
            });
            continue;
        }
        relabel_only = false;
        let (width, quorum) = (layout.width(), layout.write_quorum());
        let chosen = match placement::place(new_id, width, quorum, rule.spread_zones, &candidates) {
            Ok(c) => c,
            Err(e) => return Ok(Planned::Unplaceable(e.to_string())),
        };
        let mut shards: Vec<Option<weft_common::NodeId>> =
            chosen.iter().copied().map(Some).collect();
        shards.resize(width, None);
        let targets = shards
            .iter()
            .map(|n| n.and_then(|n| by_id.get(&n)).map(|v| v.info.addr.clone()))
            .collect();
        moves.push(SegmentMove {
            old: s.id,
            old_layout: s.layout,
            old_shard_len: rec.shard_len,
            sources,
            new: Segment {
                id: new_id,
                offset: s.offset,
                len: s.len,
                layout,
                shards,
                shard_len: shard_len(layout, s.len),
                placement: Some(rule),
                cache: vec![],
            },
            targets,
        });
    }
    let step = Some(step.clone());
    if relabel_only {
        return Ok(Planned::Relabel(Box::new(Command::TransitionVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: v.version_id,
            from_class: v.storage_class.clone(),
            to_class: to_class.to_string(),
            segments: moves.into_iter().map(|m| (m.old, m.new)).collect(),
            step,
            at_ms,
        })));
    }
    Ok(Planned::Task(Box::new(TransitionTask {
        id: task_id,
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id: v.version_id,
        from_class: v.storage_class.clone(),
        to_class: to_class.to_string(),
        size: v.size,
        crc32c: v.crc32c,
        step,
        at_ms,
        segments: moves,
    })))
}

/// Whether a segment's shards may stay where they are under `rule`: every
/// one present, on a node the rule admits, within the zone cap.
fn stays(
    rec: &SegmentRecord,
    rule: &weft_common::storage_class::PlacementRule,
    by_id: &std::collections::BTreeMap<weft_common::NodeId, &NodeView>,
    width: usize,
) -> bool {
    let mut per_zone: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &rec.shards {
        let Some(view) = n.and_then(|n| by_id.get(&n)) else {
            return false;
        };
        if !rule.admits(&view.info.zone, &view.info.labels) {
            return false;
        }
        *per_zone.entry(view.info.zone.as_str()).or_default() += 1;
    }
    if !rule.spread_zones {
        return true;
    }
    let zones = by_id
        .values()
        .filter(|v| v.admin != NodeAdmin::Removed && rule.admits(&v.info.zone, &v.info.labels))
        .map(|v| v.info.zone.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let cap = placement::zone_cap(width, zones);
    per_zone.values().all(|&n| n <= cap)
}

/// The nodes class resolution sees: every registered one not removed.
pub(crate) fn known_nodes(views: &[NodeView]) -> Vec<KnownNode<'_>> {
    views
        .iter()
        .filter(|n| n.admin != NodeAdmin::Removed)
        .map(|n| KnownNode {
            zone: &n.info.zone,
            labels: &n.info.labels,
        })
        .collect()
}

/// Whether a segment (`id`, `layout`, `len` bytes, written under
/// `placement`) fits `class` as it resolves against `known` now: kept as
/// replicas or small enough to be (transitions never re-encode those), or
/// in the class's layout under the rule the class gives that id.
pub(crate) fn segment_fits(
    id: SegmentId,
    layout: Layout,
    len: u64,
    placement: Option<&weft_common::storage_class::PlacementRule>,
    class: &weft_common::storage_class::StorageClass,
    residency: Option<&weft_common::residency::Residency>,
    known: &[KnownNode<'_>],
) -> bool {
    // Small objects stay where they are: transitions write erasure-coded
    // segments only (so replicas written before a bucket's residency are
    // not moved by it; docs/locality.md, "Residency").
    if matches!(layout, Layout::Replicated { .. }) || len <= class.small_object_bytes {
        return true;
    }
    let class = weft_common::residency::narrow(class, residency);
    layout == class.layout
        && class
            .resolve(id, class.layout, known)
            .is_ok_and(|rule| placement == Some(&rule))
}

/// Every segment of a move into a class being migrated fits the
/// definition it migrates to, judged against the registered nodes (not
/// removed) in this transaction: a move planned under an older definition
/// is refused, so the migration's walk cannot be outrun by it.
fn fits_migration(
    tx: &WriteTransaction,
    to_class: &str,
    residency: Option<&weft_common::residency::Residency>,
    segments: &[(SegmentId, Segment)],
) -> Result<bool, MetaError> {
    let Some(def) = crate::classes::migrations(&tx.open_table(META)?)?.remove(to_class) else {
        return Ok(true);
    };
    let admin = tx.open_table(NODE_ADMIN)?;
    let mut nodes: Vec<weft_common::topology::NodeInfo> = vec![];
    for it in tx.open_table(NODES)?.iter()? {
        let (k, v) = it?;
        let removed = admin
            .get_sealed::<NodeAdmin>(T_NODE_ADMIN, k.value())?
            .is_some_and(|a| a == NodeAdmin::Removed);
        if !removed {
            nodes.push(crate::envelope::item(T_NODES, &k, &v)?);
        }
    }
    let known: Vec<KnownNode<'_>> = nodes
        .iter()
        .map(|n| KnownNode {
            zone: &n.zone,
            labels: &n.labels,
        })
        .collect();
    Ok(segments.iter().all(|(_, s)| {
        segment_fits(
            s.id,
            s.layout,
            s.len,
            s.placement.as_ref(),
            &def,
            residency,
            &known,
        )
    }))
}

/// Whether every shard of `segments`' new segments is on a registered node
/// `residency` admits.
fn within_residency(
    tx: &WriteTransaction,
    residency: &weft_common::residency::Residency,
    segments: &[(SegmentId, Segment)],
) -> Result<bool, MetaError> {
    let nodes = tx.open_table(NODES)?;
    for (_, s) in segments {
        for n in s.shards.iter().flatten() {
            let Some(info) = nodes.get_sealed::<weft_common::topology::NodeInfo>(T_NODES, n.0)?
            else {
                return Ok(false);
            };
            if !residency.admits(&info.zone, &info.labels) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn shard_len(layout: Layout, len: u64) -> u64 {
    match layout {
        Layout::Replicated { .. } => len,
        Layout::Erasure { k, m, unit_bytes } => {
            weft_common::stripe::Geometry::new(k.into(), m.into(), unit_bytes.into(), len)
                .shard_len()
        }
    }
}

impl StateMachine {
    /// The first version of `bucket/key`, the current one then its
    /// history newest first, that `want` accepts, as written.
    fn find_version(
        &self,
        bucket: &str,
        key: &str,
        want: impl Fn(&ObjectVersion) -> bool,
    ) -> Result<Option<ObjectVersion>, MetaError> {
        let tx = self.begin_read()?;
        let current: Option<ObjectVersion> = tx
            .open_table(OBJECTS)?
            .get_sealed(T_OBJECTS, object_key(bucket, key).as_slice())?;
        if let Some(v) = current.filter(&want) {
            return Ok(Some(v));
        }
        let p = history_prefix(bucket, key);
        let mut end = p.clone();
        end.extend_from_slice(&[0xFF; 8]);
        for it in tx
            .open_table(VERSIONS)?
            .range::<&[u8]>(p.as_slice()..=end.as_slice())?
        {
            let (k, v) = it?;
            // Only this key: the prefix then an 8-byte sequence.
            if k.value().len() != p.len() + 8 {
                continue;
            }
            let r: weft_common::manifest::VersionRecord =
                crate::envelope::item(T_VERSIONS, &k, &v)?;
            if let Some(found) = r.version.filter(&want) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Version `id` of `bucket/key`, current or in its history, with
    /// current placement overlaid.
    pub fn version_by_id(
        &self,
        bucket: &str,
        key: &str,
        id: VersionId,
    ) -> Result<Option<ObjectVersion>, MetaError> {
        let Some(mut v) = self.find_version(bucket, key, |v| v.version_id == id)? else {
            return Ok(None);
        };
        let tx = self.begin_read()?;
        crate::segment_index::overlay(&tx.open_table(SEGMENTS)?, &mut v.segments)?;
        Ok(Some(v))
    }

    /// The version of `bucket/key` (current or in its history) whose
    /// manifest names segment `seg`, with its access tier.
    pub fn version_holding(
        &self,
        bucket: &str,
        key: &str,
        seg: SegmentId,
    ) -> Result<Option<(VersionId, Option<tiering::AccessTier>)>, MetaError> {
        Ok(self
            .find_version(bucket, key, |v| v.segments.iter().any(|s| s.id == seg))?
            .map(|v| (v.version_id, v.tier)))
    }

    /// The index records of `ids`, in order (`None` where unindexed).
    pub fn segment_records(
        &self,
        ids: impl Iterator<Item = SegmentId>,
    ) -> Result<Vec<Option<SegmentRecord>>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(SEGMENTS)?;
        ids.map(|id| t.get_sealed(T_SEGMENTS, segment_key(id).as_slice()))
            .collect()
    }
}

/// `TransitionVersion` (see [`Command::TransitionVersion`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version_id: VersionId,
    from_class: &str,
    to_class: &str,
    segments: &[(SegmentId, Segment)],
    step: Option<&Step>,
    at_ms: u64,
) -> Result<Applied, MetaError> {
    let stale = || {
        Ok(Applied::from(CommandResult::Refused {
            refusal: Refusal::Stale,
        }))
    };
    let Some(info) = tx
        .open_table(BUCKETS)?
        .get_sealed::<BucketInfo>(T_BUCKETS, bucket)?
    else {
        return Ok(Applied::from(CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        }));
    };
    let migrating = matches!(step, Some(Step::Migrate { .. }));
    // A tier move keeps the class and changes the tier, from the one it
    // must still be in.
    let (from_tier, to_tier) = match step {
        Some(Step::Tier { from, to, .. }) => (*from, *to),
        _ => (None, None),
    };
    let tiering = matches!(step, Some(Step::Tier { .. }));
    if tiering
        && (from_class != tiering::IT_CLASS || to_class != from_class || from_tier == to_tier)
    {
        return stale();
    }
    // A migration re-places a class's data under its own (newer)
    // definition, while that migration lasts; a lifecycle move must still
    // be due.
    if migrating
        && (from_class != to_class
            || !crate::classes::migrations(&tx.open_table(META)?)?.contains_key(to_class))
    {
        return stale();
    }
    if let Some(step) = step.filter(|_| !migrating) {
        if !crate::lifecycle::still_due(tx, &info, key, step, at_ms)? {
            return stale();
        }
    }
    if let Some(r) = crate::classes::undefined(tx, to_class)? {
        return Ok(Applied::from(CommandResult::Refused { refusal: r }));
    }
    let k = object_key(bucket, key);
    let current: Option<ObjectVersion> = tx
        .open_table(OBJECTS)?
        .get_sealed(T_OBJECTS, k.as_slice())?;
    let history = crate::versioning::history(tx, bucket, key)?;
    let in_history = history
        .iter()
        .find(|(_, r)| r.version.as_ref().map(|v| v.version_id) == Some(version_id));
    let is_current = current.as_ref().map(|v| v.version_id) == Some(version_id);
    let Some(v) = (if is_current {
        current.clone()
    } else {
        in_history.and_then(|(_, r)| r.version.clone())
    }) else {
        return stale();
    };
    // The compare-and-set: the same class, the same segments in the same
    // order, each new one covering exactly its old one's bytes; a relabel
    // keeps its layout. Applied again, the segments or the class differ.
    let same = v.storage_class == from_class
        && (if tiering {
            v.tier == from_tier
        } else {
            !migrating || v.tier.is_none()
        })
        && v.segments.len() == segments.len()
        && v.segments.iter().zip(segments).all(|(s, (old, new))| {
            s.id == *old
                && new.offset == s.offset
                && new.len == s.len
                && (new.id != s.id || new.layout == s.layout)
        });
    if !same || (from_class == to_class && !migrating && !tiering) {
        return stale();
    }
    let placed_by = if to_class == tiering::IT_CLASS {
        let classes = crate::classes::read(&tx.open_table(META)?)?.unwrap_or_default();
        tiering::tier_class(to_tier, |n| classes.iter().any(|c| c.name == n))
    } else {
        to_class
    };
    if !fits_migration(tx, placed_by, info.residency.as_ref(), segments)? {
        return stale();
    }
    // Apply does not trust the planner with residency: no new shard of a
    // resident bucket outside its zones.
    if let Some(r) = &info.residency {
        if !within_residency(tx, r, segments)? {
            return stale();
        }
    }
    // New segments must be new: an id the index already holds (or one
    // named twice) would let two references share one record, and
    // releasing one would free the other's shards.
    {
        let index = tx.open_table(SEGMENTS)?;
        let mut seen = std::collections::BTreeSet::new();
        for (_, new) in segments.iter().filter(|(old, new)| new.id != *old) {
            if !seen.insert(new.id) || index.get(segment_key(new.id).as_slice())?.is_some() {
                return stale();
            }
        }
    }
    // Only the class and the segments change; each copy (current, and
    // the history entry of a versioned key) keeps the rest as it is.
    let move_copy = |c: &ObjectVersion| {
        let mut m = c.clone();
        m.storage_class = to_class.to_string();
        // Leaving Intelligent-Tiering leaves its tiers; entering it starts
        // in the frequent tier with a fresh idle clock, as in S3 (reads were
        // not noted before, unless its bucket had unread rules).
        m.tier = if to_class == tiering::IT_CLASS {
            to_tier
        } else {
            None
        };
        if to_class == tiering::IT_CLASS && from_class != tiering::IT_CLASS {
            m.last_access_ms = Some(c.last_access_ms.unwrap_or(0).max(at_ms));
        }
        m.segments = c
            .segments
            .iter()
            .zip(segments)
            .map(|(s, (_, new))| {
                if new.id == s.id {
                    Segment {
                        placement: new.placement.clone(),
                        ..s.clone()
                    }
                } else {
                    new.clone()
                }
            })
            .collect();
        m
    };
    let moved = move_copy(&v);
    if is_current {
        tx.open_table(OBJECTS)?.insert(
            k.as_slice(),
            sealed::<&[u8], _>(k.as_slice(), &moved).as_slice(),
        )?;
    }
    if let Some((hk, r)) = in_history {
        // Both copies name the same segments, or the history is not what
        // the compare-and-set checked.
        let ids = |v: &ObjectVersion| v.segments.iter().map(|s| s.id).collect::<Vec<_>>();
        if r.version.as_ref().map(ids) != Some(ids(&v)) {
            return stale();
        }
        let mut r = r.clone();
        r.version = r.version.as_ref().map(move_copy);
        tx.open_table(VERSIONS)?.insert(
            hk.as_slice(),
            sealed::<&[u8], _>(hk.as_slice(), &r).as_slice(),
        )?;
    }
    relabel(tx, &moved, segments)?;
    let mut effects = Effects::default();
    let fresh: Vec<Segment> = segments
        .iter()
        .filter(|(old, new)| new.id != *old)
        .map(|(_, new)| new.clone())
        .collect();
    let replaced: Vec<Segment> = v
        .segments
        .iter()
        .zip(segments)
        .filter(|(s, (_, new))| new.id != s.id)
        .map(|(s, _)| s.clone())
        .collect();
    let released = crate::apply::releasing(tx, replaced, &moved.segments, &mut effects)?;
    effects.add(&Owner::new(bucket, key, to_class), &fresh);
    Ok(Applied {
        result: CommandResult::Released { segments: released },
        effects,
    })
}

/// The index records of the segments that stay put take the new class and
/// rule (the class usage moves with them).
fn relabel(
    tx: &WriteTransaction,
    moved: &ObjectVersion,
    segments: &[(SegmentId, Segment)],
) -> Result<(), MetaError> {
    let mut changed = vec![];
    {
        let mut t = tx.open_table(SEGMENTS)?;
        for (old, new) in segments.iter().filter(|(old, new)| new.id == *old) {
            let k = segment_key(*old);
            let Some(mut rec) = t.get_sealed::<SegmentRecord>(T_SEGMENTS, k.as_slice())? else {
                continue;
            };
            let before = rec.clone();
            rec.class = moved.storage_class.clone();
            rec.placement = new.placement.clone();
            // A transition ends the version's warm copies, relabelled or
            // not: a dataset sent to a colder class is warmed again on
            // request.
            rec.cache.clear();
            t.insert(
                k.as_slice(),
                crate::segment_index::encode(*old, &rec).as_slice(),
            )?;
            changed.push((before, rec));
        }
    }
    for (before, after) in changed {
        crate::classes::count(tx, &before, -1)?;
        crate::classes::count(tx, &after, 1)?;
    }
    Ok(())
}
