//! Where a prefix's shards are, in a form that stays small: many segments
//! share one placement (the same nodes at the same shard indexes, the same
//! cache copies), so a page of a walk carries a table of the distinct
//! placements and, per segment, an index into it plus two lengths.
//!
//! `weft locate` and `weft warm status` walk whole prefixes. With every
//! segment spelled out (id, layout, six node ids, placement rule) a page of
//! 5,000 objects was megabytes of JSON to write in metad and parse in the
//! gateway, and every segment was costed on its own. With the table, the
//! hop carries a few dozen bytes per object and a caller costs each
//! distinct placement once (docs/performance.md, "locate").

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Segment;
use crate::profile::Layout;
use crate::warm::CacheCopy;
use crate::{NodeId, SegmentId};

/// One distinct placement: how segments are cut, who holds each shard,
/// and the cache copies warmed into zones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    /// How the bytes are spread.
    pub layout: Layout,
    /// Node holding each shard index (`None`: missing, awaiting repair).
    pub shards: Vec<Option<NodeId>>,
    /// Cache copies (see [`crate::warm`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CacheCopy>,
}

/// One segment: `[placement index, bytes of object data, shard length]`.
/// A tuple so that it is three numbers on the wire, not three field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabledSegment(pub u32, pub u64, pub u64);

impl TabledSegment {
    /// Index into [`PlacementTable::placements`].
    pub fn placement(&self) -> usize {
        self.0 as usize
    }
    /// Bytes of object data.
    pub fn len(&self) -> u64 {
        self.1
    }
    /// Whether it holds no object data.
    pub fn is_empty(&self) -> bool {
        self.1 == 0
    }
    /// Length of each shard file.
    pub fn shard_len(&self) -> u64 {
        self.2
    }
}

/// One current object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabledObject {
    /// Key.
    pub key: String,
    /// Object bytes.
    pub size: u64,
    /// Its segments, in order.
    pub segments: Vec<TabledSegment>,
}

/// A page of objects and the placements their segments index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementTable {
    /// The distinct placements, in order of first use.
    pub placements: Vec<Placement>,
    /// The objects, in key order.
    pub objects: Vec<TabledObject>,
}

/// Builds a [`PlacementTable`], one distinct placement at a time.
#[derive(Default)]
pub struct TableBuilder {
    table: PlacementTable,
    index: HashMap<Placement, u32>,
}

impl TableBuilder {
    /// The index of `p` in the table, adding it on first use.
    pub fn placement(&mut self, p: Placement) -> u32 {
        if let Some(i) = self.index.get(&p) {
            return *i;
        }
        let i = u32::try_from(self.table.placements.len()).expect("fewer than 2^32 placements");
        self.table.placements.push(p.clone());
        self.index.insert(p, i);
        i
    }

    /// Appends an object (keys must come in order).
    pub fn object(&mut self, key: String, size: u64, segments: Vec<TabledSegment>) {
        self.table.objects.push(TabledObject {
            key,
            size,
            segments,
        });
    }

    /// Objects so far.
    pub fn objects(&self) -> usize {
        self.table.objects.len()
    }

    /// The key of the last object appended.
    pub fn last_key(&self) -> Option<&str> {
        self.table.objects.last().map(|o| o.key.as_str())
    }

    /// The finished table.
    pub fn finish(self) -> PlacementTable {
        self.table
    }
}

impl PlacementTable {
    /// `s` spelled out as a segment with no id (for costing with
    /// [`crate::locality`], which reads layout, holders, copies and
    /// lengths only). `None` when `s` indexes past the table (a
    /// malformed page).
    pub fn segment(&self, s: &TabledSegment) -> Option<Segment> {
        let p = self.placements.get(s.placement())?;
        Some(Segment {
            id: SegmentId(0),
            offset: 0,
            len: s.len(),
            layout: p.layout,
            shards: p.shards.clone(),
            shard_len: s.shard_len(),
            placement: None,
            cache: p.cache.clone(),
        })
    }

    /// Whether every segment indexes a placement in the table.
    pub fn is_consistent(&self) -> bool {
        self.objects.iter().all(|o| {
            o.segments
                .iter()
                .all(|s| s.placement() < self.placements.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(nodes: &[u64]) -> Placement {
        Placement {
            layout: Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            shards: nodes.iter().map(|n| Some(NodeId(*n))).collect(),
            cache: vec![],
        }
    }

    #[test]
    fn equal_placements_share_one_entry_and_different_ones_do_not() {
        let mut b = TableBuilder::default();
        let x = b.placement(p(&[1, 2, 3, 4, 5, 6]));
        let y = b.placement(p(&[2, 1, 3, 4, 5, 6]));
        let x2 = b.placement(p(&[1, 2, 3, 4, 5, 6]));
        assert_eq!((x, y, x2), (0, 1, 0));
        b.object("a".into(), 10, vec![TabledSegment(x, 10, 3)]);
        b.object("b".into(), 20, vec![TabledSegment(y, 20, 5)]);
        assert_eq!(b.last_key(), Some("b"));
        let t = b.finish();
        assert_eq!(t.placements.len(), 2);
        assert!(t.is_consistent());
        let s = t.segment(&t.objects[1].segments[0]).unwrap();
        assert_eq!((s.len, s.shard_len), (20, 5));
        assert_eq!(s.shards, p(&[2, 1, 3, 4, 5, 6]).shards);
    }

    #[test]
    fn a_segment_indexing_past_the_table_is_caught() {
        let t = PlacementTable {
            placements: vec![],
            objects: vec![TabledObject {
                key: "a".into(),
                size: 1,
                segments: vec![TabledSegment(0, 1, 1)],
            }],
        };
        assert!(!t.is_consistent());
        assert_eq!(t.segment(&t.objects[0].segments[0]), None);
    }

    #[test]
    fn a_segment_is_three_numbers_on_the_wire() {
        let json = serde_json::to_string(&TabledSegment(7, 1024, 256)).unwrap();
        assert_eq!(json, "[7,1024,256]");
    }
}
