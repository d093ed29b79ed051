//! `MoveShard` and `DropShard`: how repair, drain and rebalance change a
//! segment's current placement, as compare-and-sets of one slot of its
//! [`SegmentRecord`], so a stale or duplicated task is refused rather than
//! undoing newer work.

use redb::WriteTransaction;
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{CommandResult, Refusal};
use weft_common::{NodeId, SegmentId};

use crate::envelope::SealedRead;
use crate::error::MetaError;
use crate::segment_index;
use crate::tables::{segment_key, SEGMENTS, T_SEGMENTS};

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
    let k = segment_key(segment);
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
            // A cache copy on the node the shard is now placed on is that
            // same file: it is placed now, and must not be remembered as a
            // copy once the shard moves on (its file goes with the move).
            rec.cache
                .retain(|c| !(usize::from(c.index) == slot && Some(c.node) == value));
            t.insert(
                k.as_slice(),
                segment_index::encode(segment, &rec).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        _ => Ok(CommandResult::Refused {
            refusal: Refusal::Stale,
        }),
    }
}
