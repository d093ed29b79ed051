//! Bad blocks of shard files: what a datad reports when a block fails its
//! crc32c, what metad records per shard slot, and the arithmetic that maps
//! them onto stripes.
//!
//! A shard file is a header and blocks of `block_bytes` data bytes, each with
//! its own crc32c (see `datad/src/shard_file.rs`). Rot is local: one bad
//! block makes only the stripes it overlaps need parity, so damage is
//! tracked per block range and repaired per block, never by giving up the
//! whole file. A segment can be read as long as no single stripe has more
//! bad shards than the layout tolerates; [`coverage`] finds the worst stripe.

use crate::profile::Layout;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// Most ranges one [`BlockDamage`] keeps. Beyond it the closest ranges are
/// merged (the good blocks between them are then counted as bad: repair
/// verifies before it rewrites, so this only costs a little extra reading),
/// which bounds what one report or one segment record can weigh.
pub const DAMAGE_RANGES_MAX: usize = 64;

/// Block numbers `start..end` of one shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockRange {
    /// First bad block.
    pub start: u32,
    /// One past the last bad block.
    pub end: u32,
}

impl BlockRange {
    /// `start..end`.
    pub fn new(start: u32, end: u32) -> Self {
        BlockRange { start, end }
    }

    /// Whether it names no block.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// The bad blocks of one shard file: sorted, disjoint, non-adjacent ranges
/// (built only through the constructors, which normalise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDamage {
    /// Data bytes per block of the file the ranges refer to.
    pub block_bytes: u32,
    /// The bad blocks.
    pub ranges: Vec<BlockRange>,
}

impl BlockDamage {
    /// Damage made of these block numbers (any order, repeats allowed).
    pub fn from_blocks(block_bytes: u32, blocks: impl IntoIterator<Item = u32>) -> Self {
        Self::from_ranges(
            block_bytes,
            blocks
                .into_iter()
                .map(|b| BlockRange::new(b, b.saturating_add(1))),
        )
    }

    /// Damage made of these ranges (any order, overlaps allowed).
    pub fn from_ranges(block_bytes: u32, ranges: impl IntoIterator<Item = BlockRange>) -> Self {
        let mut v: Vec<BlockRange> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        v.sort();
        let mut out: Vec<BlockRange> = Vec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        while out.len() > DAMAGE_RANGES_MAX {
            // Merge across the smallest gap.
            let i = (0..out.len() - 1)
                .min_by_key(|&i| out[i + 1].start - out[i].end)
                .expect("at least two ranges");
            out[i].end = out[i + 1].end;
            out.remove(i + 1);
        }
        BlockDamage {
            block_bytes,
            ranges: out,
        }
    }

    /// Every block: the file cannot be trusted at all (its header is bad).
    pub fn whole(block_bytes: u32) -> Self {
        Self::from_ranges(block_bytes, [BlockRange::new(0, u32::MAX)])
    }

    /// No damage.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// These blocks and `other`'s. Damage counted in another block size
    /// refers to a file since replaced, so `other` then wins outright.
    pub fn union(&self, other: &BlockDamage) -> BlockDamage {
        if self.block_bytes != other.block_bytes {
            return other.clone();
        }
        Self::from_ranges(
            self.block_bytes,
            self.ranges.iter().chain(&other.ranges).copied(),
        )
    }

    /// These blocks except `other`'s (unchanged if the block sizes differ).
    pub fn subtract(&self, other: &BlockDamage) -> BlockDamage {
        if self.block_bytes != other.block_bytes {
            return self.clone();
        }
        let mut out = vec![];
        for r in &self.ranges {
            let mut start = r.start;
            for o in &other.ranges {
                if o.end <= start || o.start >= r.end {
                    continue;
                }
                if o.start > start {
                    out.push(BlockRange::new(start, o.start));
                }
                start = start.max(o.end);
                if start >= r.end {
                    break;
                }
            }
            if start < r.end {
                out.push(BlockRange::new(start, r.end));
            }
        }
        Self::from_ranges(self.block_bytes, out)
    }

    /// Whether every block of `other` is in `self`.
    pub fn contains(&self, other: &BlockDamage) -> bool {
        self.block_bytes == other.block_bytes && other.subtract(self).is_empty()
    }

    /// The blocks that exist in a file of `shard_len` data bytes.
    pub fn blocks(&self, shard_len: u64) -> impl Iterator<Item = u32> + '_ {
        let count = self.file_blocks(shard_len);
        self.ranges
            .iter()
            .flat_map(move |r| r.start..r.end.min(count))
    }

    /// Number of bad blocks within a file of `shard_len` data bytes.
    pub fn block_count(&self, shard_len: u64) -> u64 {
        let count = self.file_blocks(shard_len);
        self.ranges
            .iter()
            .map(|r| u64::from(r.end.min(count).saturating_sub(r.start)))
            .sum()
    }

    /// The bad data bytes of a file of `shard_len` bytes, as byte ranges.
    pub fn byte_ranges(&self, shard_len: u64) -> Vec<Range<u64>> {
        let b = u64::from(self.block_bytes.max(1));
        self.ranges
            .iter()
            .map(|r| (u64::from(r.start) * b).min(shard_len)..(u64::from(r.end) * b).min(shard_len))
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// Bad data bytes within a file of `shard_len` bytes.
    pub fn bytes(&self, shard_len: u64) -> u64 {
        self.byte_ranges(shard_len)
            .iter()
            .map(|r| r.end - r.start)
            .sum()
    }

    fn file_blocks(&self, shard_len: u64) -> u32 {
        u32::try_from(shard_len.div_ceil(u64::from(self.block_bytes.max(1)))).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for BlockDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges == [BlockRange::new(0, u32::MAX)] {
            return write!(f, "every block");
        }
        write!(f, "block")?;
        if self.ranges.len() > 1 || self.ranges.iter().any(|r| r.end - r.start > 1) {
            write!(f, "s")?;
        }
        for (i, r) in self.ranges.iter().enumerate() {
            let sep = if i == 0 { " " } else { "," };
            if r.end - r.start == 1 {
                write!(f, "{sep}{}", r.start)?;
            } else {
                write!(f, "{sep}{}-{}", r.start, r.end - 1)?;
            }
        }
        write!(f, " ({} KiB each)", self.block_bytes / 1024)
    }
}

/// One shard slot's unrepaired damage, as metad records it in the segment's
/// [`crate::repair::SegmentRecord`]. Valid only while the slot still names
/// `node`: a shard moved elsewhere was written afresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDamage {
    /// Shard index.
    pub index: u8,
    /// The node whose file has the bad blocks.
    pub node: crate::NodeId,
    /// The bad blocks.
    pub blocks: BlockDamage,
}

/// Bytes of one shard file that must be read together to decode any byte
/// in them: a stripe's unit for erasure coding; for replicas every byte
/// stands alone (any copy of it will do).
pub fn read_unit(layout: &Layout) -> u64 {
    match *layout {
        Layout::Erasure { unit_bytes, .. } => u64::from(unit_bytes).max(1),
        Layout::Replicated { .. } => 1,
    }
}

/// The stripes (as shard byte ranges, whole units) that bytes `r` of a
/// shard file fall in.
pub fn stripe_cover(unit: u64, r: &Range<u64>) -> Range<u64> {
    let unit = unit.max(1);
    (r.start / unit) * unit..r.end.div_ceil(unit).saturating_mul(unit)
}

/// Where several shards of one segment are bad, stripe by stripe.
///
/// `slots[i]` is the bad byte ranges of one shard file (any order, overlaps
/// allowed). Returns the disjoint, sorted shard byte ranges (whole stripes
/// of `unit` bytes) where at least one of them is bad, each with how many
/// shards are bad there. A range of `unit` bytes is one stripe.
pub fn coverage(unit: u64, slots: &[Vec<Range<u64>>]) -> Vec<(Range<u64>, usize)> {
    // +1 where a slot's (merged) bad stripes begin, -1 where they end.
    let mut events: Vec<(u64, i64)> = vec![];
    for ranges in slots {
        let mut cover: Vec<Range<u64>> = ranges
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| stripe_cover(unit, r))
            .collect();
        cover.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = vec![];
        for r in cover {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        for r in merged {
            events.push((r.start, 1));
            events.push((r.end, -1));
        }
    }
    events.sort();
    let mut out: Vec<(Range<u64>, usize)> = vec![];
    let mut depth: i64 = 0;
    let mut at = 0u64;
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        if depth > 0 && pos > at {
            out.push((at..pos, depth as usize));
        }
        while i < events.len() && events[i].0 == pos {
            depth += events[i].1;
            i += 1;
        }
        at = pos;
    }
    out
}

/// Most shards bad in any one stripe (0 with no damage).
pub fn worst_stripe(unit: u64, slots: &[Vec<Range<u64>>]) -> usize {
    coverage(unit, slots)
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = 64 * 1024;
    const MIB: u64 = 1 << 20;

    fn d(ranges: &[(u32, u32)]) -> BlockDamage {
        BlockDamage::from_ranges(B, ranges.iter().map(|&(s, e)| BlockRange::new(s, e)))
    }

    #[test]
    fn ranges_normalise() {
        let x = BlockDamage::from_blocks(B, [7, 3, 4, 5, 3, 9]);
        assert_eq!(x, d(&[(3, 6), (7, 8), (9, 10)]));
        assert_eq!(d(&[(5, 5), (1, 3), (2, 4), (4, 6)]), d(&[(1, 6)]));
        assert!(BlockDamage::from_blocks(B, []).is_empty());
        assert_eq!(x.to_string(), "blocks 3-5,7,9 (64 KiB each)");
        assert_eq!(d(&[(2, 3)]).to_string(), "block 2 (64 KiB each)");
        assert_eq!(BlockDamage::whole(B).to_string(), "every block");
    }

    #[test]
    fn too_many_ranges_merge_across_the_smallest_gaps() {
        let many = BlockDamage::from_blocks(B, (0..200u32).map(|i| i * 10 + u32::from(i == 7)));
        assert_eq!(many.ranges.len(), DAMAGE_RANGES_MAX);
        // Nothing reported is lost.
        let all = BlockDamage::from_blocks(B, (0..200u32).map(|i| i * 10 + u32::from(i == 7)));
        assert!(many.contains(&all));
    }

    #[test]
    fn union_and_subtract_are_idempotent() {
        let a = d(&[(1, 4), (10, 12)]);
        let b = d(&[(3, 6), (20, 21)]);
        let u = a.union(&b);
        assert_eq!(u, d(&[(1, 6), (10, 12), (20, 21)]));
        assert_eq!(u.union(&b), u, "the same report twice changes nothing");
        let s = u.subtract(&d(&[(2, 3), (10, 12)]));
        assert_eq!(s, d(&[(1, 2), (3, 6), (20, 21)]));
        assert_eq!(s.subtract(&d(&[(2, 3), (10, 12)])), s);
        assert!(u.subtract(&u).is_empty());
        assert_eq!(u.subtract(&d(&[(0, 100)])), d(&[]));
        assert_eq!(
            d(&[(0, 10)]).subtract(&d(&[(2, 3), (5, 7)])),
            d(&[(0, 2), (3, 5), (7, 10)])
        );
        assert!(u.contains(&a) && u.contains(&b) && !a.contains(&u));
        // Another block size: the newer report describes the file now.
        let other = BlockDamage::from_blocks(4096, [1]);
        assert_eq!(a.union(&other), other);
        assert_eq!(a.subtract(&other), a);
    }

    #[test]
    fn blocks_and_bytes_are_clamped_to_the_file() {
        let shard_len = 3 * u64::from(B) + 100; // 4 blocks, the last short
        let w = BlockDamage::whole(B);
        assert_eq!(w.blocks(shard_len).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(w.block_count(shard_len), 4);
        assert_eq!(w.bytes(shard_len), shard_len);
        let x = d(&[(1, 2), (3, 9)]);
        assert_eq!(
            x.byte_ranges(shard_len),
            vec![u64::from(B)..2 * u64::from(B), 3 * u64::from(B)..shard_len]
        );
        assert_eq!(x.blocks(shard_len).collect::<Vec<_>>(), vec![1, 3]);
        assert!(d(&[(9, 12)]).byte_ranges(shard_len).is_empty());
    }

    #[test]
    fn stripes_of_a_block() {
        // 1 MiB units: 16 blocks of 64 KiB per stripe.
        assert_eq!(stripe_cover(MIB, &(17 * 65536..18 * 65536)), MIB..2 * MIB);
        assert_eq!(stripe_cover(MIB, &(MIB - 1..MIB + 1)), 0..2 * MIB);
        // Replicas: bytes stand alone.
        assert_eq!(stripe_cover(1, &(5..9)), 5..9);
        let layout = Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1 << 20,
        };
        assert_eq!(read_unit(&layout), MIB);
        assert_eq!(read_unit(&Layout::Replicated { copies: 3 }), 1);
    }

    #[test]
    fn rot_in_different_stripes_never_stacks() {
        // Three shards of a 4+2 segment, one bad block each, stripes 0, 1, 2.
        let blk = |b: u64| b * 65536..(b + 1) * 65536;
        let slots = vec![vec![blk(3)], vec![blk(16 + 5)], vec![blk(32 + 15)]];
        assert_eq!(worst_stripe(MIB, &slots), 1);
        assert_eq!(
            coverage(MIB, &slots),
            vec![(0..MIB, 1), (MIB..2 * MIB, 1), (2 * MIB..3 * MIB, 1)]
        );
        // Two bad blocks of one shard in one stripe count once.
        let slots = vec![vec![blk(1), blk(2), blk(40)], vec![blk(3)]];
        assert_eq!(
            coverage(MIB, &slots),
            vec![(0..MIB, 2), (2 * MIB..3 * MIB, 1)]
        );
        // Three shards bad in the same stripe: worst is 3 (> m = 2).
        let slots = vec![vec![blk(0)], vec![blk(15)], vec![blk(7), blk(40)]];
        assert_eq!(worst_stripe(MIB, &slots), 3);
        // A whole bad file overlaps everything.
        let slots = vec![vec![0..16 * MIB], vec![blk(20)]];
        assert_eq!(
            coverage(MIB, &slots),
            vec![(0..MIB, 1), (MIB..2 * MIB, 2), (2 * MIB..16 * MIB, 1)]
        );
        assert_eq!(worst_stripe(MIB, &[]), 0);
        // Replicas: the same byte bad in every copy is what counts.
        let slots = vec![vec![0..10], vec![10..20], vec![5..15]];
        assert_eq!(worst_stripe(1, &slots), 2);
    }
}
