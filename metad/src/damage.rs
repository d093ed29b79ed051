//! Bad blocks recorded against shard slots, and what they mean for a
//! segment's redundancy.
//!
//! A datad that finds blocks failing their crc32c (the scrubber, or a read
//! for a gateway) reports them with `ReportDamage`; the record lives in the
//! segment's [`SegmentRecord::damage`], beside the placement it qualifies,
//! so it is snapshotted, digested and released with the segment without a
//! table of its own. An entry holds only while its slot names its node: a
//! shard moved elsewhere was written afresh (`set_slot` forgets the slot's
//! damage) and a report for a slot that no longer names the reporter is
//! refused as stale.
//!
//! Reports are unions and repairs (`DamageRepaired`) are differences of
//! block sets, so applying either twice changes nothing, and a repair that
//! commits after a report of other blocks leaves those blocks recorded.
//!
//! Redundancy is judged per stripe ([`stripe_health`]): a stripe lacks the
//! shards that are missing plus the shards with bad blocks in it. A segment
//! is as degraded as its worst stripe and unreadable only if some stripe has
//! fewer good shards than the read quorum.

use crate::envelope::SealedRead;
use crate::segment_index;
use crate::tables::{segment_key, SEGMENTS, T_SEGMENTS};
use redb::WriteTransaction;
use weft_common::damage::{self, BlockDamage, ShardDamage};
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{Command, CommandResult, Refusal};
use weft_common::{NodeId, SegmentId};

/// Which way a damage command changes the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// `ReportDamage`: add the blocks.
    Report,
    /// `DamageRepaired`: remove the blocks.
    Repaired,
}

/// Applies a `ReportDamage` or `DamageRepaired` command.
pub(crate) fn apply_command(
    tx: &WriteTransaction,
    cmd: &Command,
) -> Result<CommandResult, crate::error::MetaError> {
    match cmd {
        Command::ReportDamage {
            segment,
            index,
            node,
            damage,
        } => apply(tx, Change::Report, *segment, *index, *node, damage),
        Command::DamageRepaired {
            segment,
            index,
            node,
            damage,
        } => apply(tx, Change::Repaired, *segment, *index, *node, damage),
        other => unreachable!("not a damage command: {other:?}"),
    }
}

/// Applies `ReportDamage` or `DamageRepaired` to slot `index` of `segment`.
pub(crate) fn apply(
    tx: &WriteTransaction,
    change: Change,
    segment: SegmentId,
    index: u8,
    node: NodeId,
    blocks: &BlockDamage,
) -> Result<CommandResult, crate::error::MetaError> {
    let mut t = tx.open_table(SEGMENTS)?;
    let k = segment_key(segment);
    let Some(mut rec) = t.get_sealed::<SegmentRecord>(T_SEGMENTS, k.as_slice())? else {
        return Ok(stale());
    };
    if rec.shards.get(usize::from(index)).copied().flatten() != Some(node) {
        return Ok(stale());
    }
    let before = rec.damage.clone();
    // Entries whose slot has since moved are void; drop them on the way.
    let shards = rec.shards.clone();
    rec.damage
        .retain(|d| shards.get(usize::from(d.index)).copied().flatten() == Some(d.node));
    let current = rec
        .damage
        .iter()
        .position(|d| d.index == index && d.node == node);
    match (change, current) {
        (Change::Report, Some(i)) => {
            rec.damage[i].blocks = rec.damage[i].blocks.union(blocks);
        }
        (Change::Report, None) if !blocks.is_empty() => {
            rec.damage.push(ShardDamage {
                index,
                node,
                blocks: BlockDamage::from_ranges(blocks.block_bytes, blocks.ranges.clone()),
            });
            rec.damage.sort_by_key(|d| d.index);
        }
        (Change::Report, None) => {}
        (Change::Repaired, Some(i)) => {
            rec.damage[i].blocks = rec.damage[i].blocks.subtract(blocks);
            if rec.damage[i].blocks.is_empty() {
                rec.damage.remove(i);
            }
        }
        (Change::Repaired, None) => {}
    }
    if rec.damage != before {
        t.insert(
            k.as_slice(),
            segment_index::encode(segment, &rec).as_slice(),
        )?;
    }
    Ok(CommandResult::Done)
}

fn stale() -> CommandResult {
    CommandResult::Refused {
        refusal: Refusal::Stale,
    }
}

/// A slot now holds a freshly written shard (or none): its damage is void.
pub(crate) fn forget_slot(rec: &mut SegmentRecord, slot: usize) {
    rec.damage.retain(|d| usize::from(d.index) != slot);
}

/// One segment's redundancy, stripe by stripe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripeHealth {
    /// Most shards lacking in any one stripe: slots not present plus present
    /// slots with bad blocks in that stripe. 0 means full redundancy.
    pub worst_lacking: usize,
    /// Fewest shards readable in any one stripe.
    pub worst_readable: usize,
    /// Present slots with recorded damage: `(slot, its damage, whether some
    /// stripe of its damage has enough good shards to be rebuilt)`.
    pub damaged: Vec<(usize, BlockDamage, bool)>,
    /// Bad bytes over all damaged present slots (the block repair backlog).
    pub damaged_bytes: u64,
}

/// Judges `rec` stripe by stripe. `present[i]`: slot `i` holds a shard on a
/// node that counts toward redundancy; `readable[i]`: its node can at least
/// be read from (a suspect node is readable but not present).
pub fn stripe_health(rec: &SegmentRecord, present: &[bool], readable: &[bool]) -> StripeHealth {
    let width = rec.layout.width();
    let quorum = rec.layout.read_quorum();
    let unit = damage::read_unit(&rec.layout);
    let is = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
    let n_present = (0..width).filter(|&i| is(present, i)).count();
    let n_readable = (0..width).filter(|&i| is(readable, i)).count();
    // Valid entries only (the slot still names the reporter), one per slot.
    let mut by_slot: Vec<Option<BlockDamage>> = vec![None; width];
    for d in &rec.damage {
        let i = usize::from(d.index);
        if i >= width || rec.shards.get(i).copied().flatten() != Some(d.node) {
            continue;
        }
        by_slot[i] = Some(match by_slot[i].take() {
            Some(b) => b.union(&d.blocks),
            None => d.blocks.clone(),
        });
    }
    let ranges = |filter: &[bool]| -> Vec<(usize, Vec<std::ops::Range<u64>>)> {
        by_slot
            .iter()
            .enumerate()
            .filter(|(i, d)| d.is_some() && is(filter, *i))
            .map(|(i, d)| (i, d.as_ref().expect("filtered").byte_ranges(rec.shard_len)))
            .filter(|(_, r)| !r.is_empty())
            .collect()
    };
    let among_present = ranges(present);
    let among_readable = ranges(readable);
    let strip = |v: &[(usize, Vec<std::ops::Range<u64>>)]| -> Vec<Vec<std::ops::Range<u64>>> {
        v.iter().map(|(_, r)| r.clone()).collect()
    };
    let cover = damage::coverage(unit, &strip(&among_present));
    let lacking_outside = width - n_present;
    let worst_lacking = lacking_outside + cover.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let worst_readable =
        n_readable - damage::worst_stripe(unit, &strip(&among_readable)).min(n_readable);
    let tolerable = width.saturating_sub(quorum);
    let mut damaged = vec![];
    let mut damaged_bytes = 0;
    for (slot, ranges) in &among_present {
        let blocks = by_slot[*slot].clone().expect("slot has damage");
        damaged_bytes += blocks.bytes(rec.shard_len);
        let repairable = ranges.iter().any(|r| {
            let r = damage::stripe_cover(unit, r);
            cover.iter().any(|(c, n)| {
                c.start < r.end && r.start < c.end && lacking_outside + n <= tolerable
            })
        });
        damaged.push((*slot, blocks, repairable));
    }
    StripeHealth {
        worst_lacking,
        worst_readable,
        damaged,
        damaged_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;
    use weft_common::damage::BlockRange;
    use weft_common::profile::Layout;

    const B: u32 = 64 * 1024;

    /// A 4+2 segment of 16 MiB: 4 stripes, shard files of 4 MiB, 64 blocks.
    fn seg(damage: Vec<(u8, &[u32])>) -> SegmentRecord {
        SegmentRecord {
            bucket: "b".into(),
            key: "k".into(),
            class: "STANDARD".into(),
            layout: Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            len: 16 << 20,
            shard_len: 4 << 20,
            placement: None,
            shards: (1..=6).map(|n| Some(NodeId(n))).collect(),
            damage: damage
                .into_iter()
                .map(|(i, blocks)| ShardDamage {
                    index: i,
                    node: NodeId(u64::from(i) + 1),
                    blocks: BlockDamage::from_blocks(B, blocks.iter().copied()),
                })
                .collect(),
            cache: vec![],
        }
    }

    const ALL: [bool; 6] = [true; 6];

    /// Applies `change` in its own transaction; returns the result and the
    /// record after.
    fn apply_to(
        db: &redb::Database,
        change: Change,
        index: u8,
        node: u64,
        blocks: &[u32],
    ) -> (CommandResult, SegmentRecord) {
        let tx = db.begin_write().unwrap();
        let damage = BlockDamage::from_blocks(B, blocks.iter().copied());
        let r = apply(&tx, change, SegmentId(1), index, NodeId(node), &damage).unwrap();
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(SEGMENTS).unwrap();
        let rec: SegmentRecord = t
            .get_sealed(T_SEGMENTS, segment_key(SegmentId(1)).as_slice())
            .unwrap()
            .unwrap();
        (r, rec)
    }

    #[test]
    fn reports_and_repairs_are_idempotent_set_operations() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(SEGMENTS)
            .unwrap()
            .insert(
                segment_key(SegmentId(1)).as_slice(),
                segment_index::encode(SegmentId(1), &seg(vec![])).as_slice(),
            )
            .unwrap();
        tx.commit().unwrap();
        let done = CommandResult::Done;
        let blocks = |rec: &SegmentRecord, i: u8| -> Vec<u32> {
            rec.damage
                .iter()
                .filter(|d| d.index == i)
                .flat_map(|d| d.blocks.blocks(rec.shard_len).collect::<Vec<_>>())
                .collect()
        };

        let (r, rec) = apply_to(&db, Change::Report, 2, 3, &[5, 6]);
        assert_eq!(r, done);
        assert_eq!(blocks(&rec, 2), vec![5, 6]);
        // The same report again changes nothing.
        let (r, again) = apply_to(&db, Change::Report, 2, 3, &[5, 6]);
        assert_eq!((r, &again), (done.clone(), &rec));
        // A report meanwhile of another block; the repair of 5 and 6 keeps it.
        apply_to(&db, Change::Report, 2, 3, &[40]);
        let (r, rec) = apply_to(&db, Change::Repaired, 2, 3, &[5, 6]);
        assert_eq!(r, done);
        assert_eq!(blocks(&rec, 2), vec![40]);
        let (_, again) = apply_to(&db, Change::Repaired, 2, 3, &[5, 6]);
        assert_eq!(again, rec, "a repeated repair changes nothing");
        // The slot is node 3's; node 4 cannot report or clear it.
        let stale = CommandResult::Refused {
            refusal: Refusal::Stale,
        };
        assert_eq!(apply_to(&db, Change::Report, 2, 4, &[1]).0, stale);
        assert_eq!(apply_to(&db, Change::Repaired, 2, 4, &[40]).0, stale);
        assert_eq!(apply_to(&db, Change::Report, 9, 3, &[1]).0, stale);
        let (_, rec) = apply_to(&db, Change::Repaired, 2, 3, &[40]);
        assert!(rec.damage.is_empty(), "{rec:?}");
        assert_eq!(rec, seg(vec![]), "back to the record as it was");
    }

    #[test]
    fn moving_a_slot_forgets_its_damage() {
        let mut rec = seg(vec![(0, &[3]), (2, &[21])]);
        forget_slot(&mut rec, 2);
        assert_eq!(rec.damage.len(), 1);
        assert_eq!(rec.damage[0].index, 0);
    }

    #[test]
    fn no_damage_is_full() {
        let h = stripe_health(&seg(vec![]), &ALL, &ALL);
        assert_eq!(h.worst_lacking, 0);
        assert_eq!(h.worst_readable, 6);
        assert!(h.damaged.is_empty());
    }

    #[test]
    fn three_shards_bad_in_different_stripes_lack_one() {
        // Block 3 is in stripe 0, block 21 in stripe 1, block 47 in stripe 2.
        let rec = seg(vec![(0, &[3]), (2, &[21]), (5, &[47])]);
        let h = stripe_health(&rec, &ALL, &ALL);
        assert_eq!(h.worst_lacking, 1, "degraded by one, not three");
        assert_eq!(h.worst_readable, 5);
        assert_eq!(h.damaged.len(), 3);
        assert!(h.damaged.iter().all(|(_, _, ok)| *ok));
        assert_eq!(h.damaged_bytes, 3 * u64::from(B));
    }

    #[test]
    fn three_shards_bad_in_one_stripe_is_unreadable() {
        let rec = seg(vec![(0, &[3]), (2, &[4]), (5, &[15, 40])]);
        let h = stripe_health(&rec, &ALL, &ALL);
        assert_eq!(h.worst_lacking, 3);
        assert_eq!(h.worst_readable, 3, "below the quorum of 4");
        // Slot 5's block 40 (stripe 2) can be rebuilt; the others cannot.
        let ok: Vec<(usize, bool)> = h.damaged.iter().map(|(s, _, ok)| (*s, *ok)).collect();
        assert_eq!(ok, vec![(0, false), (2, false), (5, true)]);
    }

    #[test]
    fn missing_shards_count_in_every_stripe() {
        let rec = seg(vec![(0, &[3]), (2, &[21])]);
        let mut present = ALL;
        present[4] = false; // e.g. its node is down
        let h = stripe_health(&rec, &present, &present);
        assert_eq!(h.worst_lacking, 2);
        assert_eq!(h.worst_readable, 4);
        assert!(h.damaged.iter().all(|(_, _, ok)| *ok));
        // Two missing: the damaged stripes lack three, past m.
        present[3] = false;
        let h = stripe_health(&rec, &present, &present);
        assert_eq!(h.worst_lacking, 3);
        assert_eq!(h.worst_readable, 3);
        assert!(h.damaged.iter().all(|(_, _, ok)| !*ok));
        // A suspect node's shard is readable though not present.
        let mut readable = present;
        readable[3] = true;
        let h = stripe_health(&rec, &present, &readable);
        assert_eq!(h.worst_lacking, 3);
        assert_eq!(h.worst_readable, 4);
    }

    #[test]
    fn stale_and_missing_slot_damage_is_ignored() {
        let mut rec = seg(vec![(0, &[3]), (1, &[3])]);
        rec.shards[0] = Some(NodeId(9)); // moved: the entry names node 1
        let mut present = ALL;
        present[1] = false; // its damage does not count twice
        let h = stripe_health(&rec, &present, &present);
        assert_eq!(h.worst_lacking, 1);
        assert!(h.damaged.is_empty());
    }

    #[test]
    fn a_bad_header_damages_every_stripe() {
        let mut rec = seg(vec![(2, &[30])]);
        rec.damage.push(ShardDamage {
            index: 4,
            node: NodeId(5),
            blocks: BlockDamage::whole(B),
        });
        let h = stripe_health(&rec, &ALL, &ALL);
        assert_eq!(h.worst_lacking, 2);
        assert_eq!(h.damaged_bytes, u64::from(B) + (4 << 20));
        let ranges: Vec<&[BlockRange]> = h.damaged.iter().map(|(_, d, _)| &d.ranges[..]).collect();
        assert_eq!(ranges.len(), 2);
    }

    #[test]
    fn replicas_are_judged_byte_by_byte() {
        let mut rec = seg(vec![(0, &[0]), (1, &[1])]);
        rec.layout = Layout::Replicated { copies: 3 };
        rec.shards.truncate(3);
        rec.shard_len = 4 * u64::from(B);
        let all = [true; 3];
        let h = stripe_health(&rec, &all, &all);
        assert_eq!(h.worst_lacking, 1, "different blocks of two copies");
        rec.damage[1].blocks = BlockDamage::from_blocks(B, [0]);
        rec.damage.push(ShardDamage {
            index: 2,
            node: NodeId(3),
            blocks: BlockDamage::from_blocks(B, [0]),
        });
        let h = stripe_health(&rec, &all, &all);
        assert_eq!(h.worst_lacking, 3);
        assert_eq!(h.worst_readable, 0);
        assert!(h.damaged.iter().all(|(_, _, ok)| !*ok));
    }
}
