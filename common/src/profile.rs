//! Storage classes and the layouts they name.

use serde::{Deserialize, Serialize};

/// How one segment's bytes are spread over shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Layout {
    /// `copies` full copies of the segment.
    Replicated {
        /// Number of full copies.
        copies: u8,
    },
    /// Reed-Solomon: `k` data shards and `m` parity shards, built stripe by
    /// stripe with `unit_bytes` per shard per stripe.
    Erasure {
        /// Data shards.
        k: u8,
        /// Parity shards.
        m: u8,
        /// Bytes of one shard in one full stripe.
        unit_bytes: u32,
    },
}

impl Layout {
    /// Number of shards (files) a segment of this layout has.
    pub fn width(&self) -> usize {
        match *self {
            Layout::Replicated { copies } => usize::from(copies),
            Layout::Erasure { k, m, .. } => usize::from(k) + usize::from(m),
        }
    }

    /// Shards that must hold a readable copy for the segment to be readable.
    pub fn read_quorum(&self) -> usize {
        match *self {
            Layout::Replicated { .. } => 1,
            Layout::Erasure { k, .. } => usize::from(k),
        }
    }

    /// Shards that must be durable before a write is acknowledged: one more
    /// than the read quorum, so that one further loss still leaves it readable
    /// (capped at the width).
    pub fn write_quorum(&self) -> usize {
        match *self {
            Layout::Replicated { copies } => usize::from(copies).min(2),
            Layout::Erasure { k, m, .. } => {
                (usize::from(k) + 1).min(usize::from(k) + usize::from(m))
            }
        }
    }
}

/// A storage class profile: the layout for large objects and whether shards
/// must be spread across zones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClassProfile {
    /// S3 name, e.g. `STANDARD`.
    pub name: String,
    /// Layout of segments larger than the small-object threshold.
    pub layout: Layout,
    /// At most ⌈width/zones⌉ shards in any zone, so one zone's loss costs at
    /// most `m` shards.
    pub spread_zones: bool,
}

/// The storage classes a cluster offers plus the size rules that pick layouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    /// Known classes; the first is the default.
    pub classes: Vec<StorageClassProfile>,
    /// Objects at or below this size are stored as replicas, not EC.
    pub small_object_bytes_max: u64,
    /// Copies for small objects.
    pub small_object_copies: u8,
    /// Largest segment; bigger objects are cut into several segments.
    pub segment_bytes_max: u64,
}

/// Default unit: 1 MiB per shard per stripe.
pub const UNIT_BYTES_DEFAULT: u32 = 1 << 20;

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            classes: vec![StorageClassProfile {
                name: "STANDARD".into(),
                layout: Layout::Erasure {
                    k: 4,
                    m: 2,
                    unit_bytes: UNIT_BYTES_DEFAULT,
                },
                spread_zones: true,
            }],
            small_object_bytes_max: 64 * 1024,
            small_object_copies: 3,
            segment_bytes_max: 64 << 20,
        }
    }
}

impl Profiles {
    /// Finds a class by S3 name; `None` means the default class.
    pub fn class(&self, name: Option<&str>) -> Option<&StorageClassProfile> {
        match name {
            None => self.classes.first(),
            Some(n) => self.classes.iter().find(|c| c.name == n),
        }
    }

    /// The layout a segment of `segment_bytes` bytes of an object of
    /// `object_bytes` bytes gets in `class`.
    pub fn layout_for(&self, class: &StorageClassProfile, object_bytes: u64) -> Layout {
        if object_bytes <= self.small_object_bytes_max {
            Layout::Replicated {
                copies: self.small_object_copies,
            }
        } else {
            class.layout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_of_defaults() {
        let p = Profiles::default();
        let std = p.class(None).unwrap();
        assert_eq!(std.name, "STANDARD");
        let l = p.layout_for(std, 1 << 20);
        assert_eq!(l.width(), 6);
        assert_eq!(l.read_quorum(), 4);
        assert_eq!(l.write_quorum(), 5);
        let small = p.layout_for(std, 64 * 1024);
        assert_eq!(small, Layout::Replicated { copies: 3 });
        assert_eq!(small.write_quorum(), 2);
        assert!(p.class(Some("GLACIER")).is_none());
    }
}
