//! Warm and pin (docs/locality.md, "Warm a dataset into a zone"): extra
//! copies of shards in one zone, so that a reader there finds k distinct
//! shards of every stripe without crossing zones.
//!
//! A cache copy is a shard file like any other (same segment, same index,
//! same bytes), recorded beside the segment's placement in metad's segment
//! index but never counted toward its durability: the survey reads only
//! the placement, so a lost cache copy is never repaired and never makes a
//! segment look safer than it is. Because it lives in the segment's
//! record, it goes when the segment does: an overwrite or delete releases
//! the segment, a transition writes new segments, and readers look copies
//! up through the same record that names the segment, so a cache copy can
//! never be served for bytes it does not hold.

use crate::profile::Layout;
use crate::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One extra copy of shard `index` of a segment, on `node` in `zone`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheCopy {
    /// Shard index.
    pub index: u8,
    /// The node holding the copy.
    pub node: NodeId,
    /// The node's zone when the copy was recorded.
    pub zone: String,
}

/// Longest a prefix may be (an S3 key's longest).
pub const PREFIX_MAX: usize = 1024;

/// A dataset kept warm in one zone: `weft warm s3://bucket/prefix --zone Z`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warm {
    /// The zone that should read the dataset without crossing zones.
    pub zone: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (empty: the whole bucket).
    pub prefix: String,
    /// Pinned warms are never evicted to make room for others.
    pub pinned: bool,
    /// When it was asked for (or asked for again), ms: the warm's identity
    /// for expiry and eviction, which apply only to the request they were
    /// judged against.
    pub created_ms: u64,
    /// When it lapses, ms (`--ttl`); `None`: until dropped or evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl Warm {
    /// Whether the warm covers `bucket/key`.
    pub fn covers(&self, bucket: &str, key: &str) -> bool {
        self.bucket == bucket && key.starts_with(&self.prefix)
    }

    /// Whether its time-to-live has run out at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// `zone: s3://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        format!("{}: s3://{}/{}", self.zone, self.bucket, self.prefix)
    }

    /// Checks what a request may name; the error says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.zone.is_empty() {
            return Err("name the zone to warm into (--zone)".into());
        }
        if self.bucket.is_empty() {
            return Err("name the bucket to warm (s3://bucket/prefix)".into());
        }
        if self.prefix.len() > PREFIX_MAX {
            return Err(format!(
                "the prefix is {} bytes; at most {PREFIX_MAX}",
                self.prefix.len()
            ));
        }
        Ok(())
    }
}

/// One zone's cache: what it may hold and what it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCache {
    /// Zone.
    pub zone: String,
    /// Most bytes of cache copies the zone keeps.
    pub budget_bytes: u64,
    /// Bytes of cache copies recorded in it.
    pub used_bytes: u64,
    /// Of those, bytes only pinned warms cover.
    pub pinned_bytes: u64,
    /// Warms evicted from it since the leader took over.
    pub evictions: u64,
    /// Bytes pinned warms still lack there: promised room a new warm
    /// cannot take.
    #[serde(default)]
    pub pinned_pending_bytes: u64,
}

/// Distinct shard indices of a segment its zone holds: placed shards on
/// the zone's nodes and cache copies there. `zone_of` answers a node's
/// zone (`None`: unknown). Warm planning, `AddCacheCopy` and `weft warm
/// status` all pass registered nodes, down ones included, so the three
/// agree: a zone whose node is down still holds what the node holds (its
/// reads cross for those shards until it returns), and nothing is copied
/// again meanwhile.
pub fn indices_in_zone<'a>(
    shards: &[Option<NodeId>],
    cache: &[CacheCopy],
    zone_of: impl Fn(NodeId) -> Option<&'a str>,
    zone: &str,
) -> BTreeSet<u8> {
    let mut out: BTreeSet<u8> = shards
        .iter()
        .enumerate()
        .filter(|(_, n)| n.is_some_and(|n| zone_of(n) == Some(zone)))
        .map(|(i, _)| i as u8)
        .collect();
    out.extend(
        cache
            .iter()
            .filter(|c| zone_of(c.node) == Some(zone))
            .map(|c| c.index),
    );
    out
}

/// Shards a reader in `zone` needs from its own zone to read the segment
/// without crossing: k distinct shards of an erasure-coded segment, one
/// copy of a replicated one.
pub fn needed_in_zone(layout: Layout) -> usize {
    match layout {
        Layout::Erasure { k, .. } => usize::from(k),
        Layout::Replicated { .. } => 1,
    }
}

/// The shard indices to copy into `zone` so that it holds
/// [`needed_in_zone`] distinct ones: none when it already does. Data shards
/// first (a reader holding all of them decodes nothing), then parity;
/// indices whose placed holder is readable before those that would have to
/// be rebuilt. For a replicated segment the copy is of index 0 (every
/// replica holds the same bytes under its own index, so any readable one
/// serves as the source).
pub fn lacking<'a>(
    layout: Layout,
    shards: &[Option<NodeId>],
    cache: &[CacheCopy],
    zone_of: impl Fn(NodeId) -> Option<&'a str> + Copy,
    zone: &str,
) -> Vec<u8> {
    let held = indices_in_zone(shards, cache, zone_of, zone);
    let need = needed_in_zone(layout);
    if held.len() >= need {
        return vec![];
    }
    match layout {
        Layout::Replicated { .. } => {
            // Any readable replica is the source; the copy takes the index
            // of the first one, so a reader finds it under a real name.
            let first = shards
                .iter()
                .position(|n| n.is_some_and(|n| zone_of(n).is_some()))
                .unwrap_or(0) as u8;
            vec![first]
        }
        Layout::Erasure { .. } => {
            let mut candidates: Vec<u8> = (0..shards.len() as u8)
                .filter(|i| !held.contains(i))
                .collect();
            let k = need;
            candidates.sort_by_key(|i| {
                let readable = shards
                    .get(usize::from(*i))
                    .copied()
                    .flatten()
                    .is_some_and(|n| zone_of(n).is_some());
                (usize::from(*i) >= k, !readable, *i)
            });
            candidates.truncate(need - held.len());
            candidates
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec() -> Layout {
        Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1024,
        }
    }

    fn zones(n: NodeId) -> Option<&'static str> {
        match n.0 {
            1 | 4 => Some("a"),
            2 | 5 => Some("b"),
            3 | 6 => Some("c"),
            _ => None,
        }
    }

    #[test]
    fn a_zone_with_two_shards_lacks_two_data_shards_first() {
        // Shards 0..6 on nodes 1..6: zone a holds indices 0 and 3.
        let shards: Vec<Option<NodeId>> = (1..=6).map(|n| Some(NodeId(n))).collect();
        assert_eq!(
            indices_in_zone(&shards, &[], zones, "a"),
            BTreeSet::from([0, 3])
        );
        assert_eq!(lacking(ec(), &shards, &[], zones, "a"), vec![1, 2]);
        let cache = vec![
            CacheCopy {
                index: 1,
                node: NodeId(4),
                zone: "a".into(),
            },
            CacheCopy {
                index: 2,
                node: NodeId(1),
                zone: "a".into(),
            },
        ];
        assert!(lacking(ec(), &shards, &cache, zones, "a").is_empty());
        // Node 4 removed: neither its placed shard 3 nor its copy of 1
        // counts, so zone a holds 0 and 2 and lacks two data shards again.
        let gone = |n: NodeId| if n.0 == 4 { None } else { zones(n) };
        assert_eq!(lacking(ec(), &shards, &cache, gone, "a"), vec![1, 3]);
    }

    #[test]
    fn shards_with_a_readable_holder_are_copied_before_rebuilt_ones() {
        let mut shards: Vec<Option<NodeId>> = (1..=6).map(|n| Some(NodeId(n))).collect();
        shards[1] = None;
        assert_eq!(lacking(ec(), &shards, &[], zones, "a"), vec![2, 1]);
    }

    #[test]
    fn a_replicated_segment_needs_one_copy_in_the_zone() {
        let layout = Layout::Replicated { copies: 2 };
        let shards = vec![Some(NodeId(2)), Some(NodeId(3))];
        assert_eq!(lacking(layout, &shards, &[], zones, "a"), vec![0]);
        assert!(lacking(layout, &shards, &[], zones, "b").is_empty());
    }

    #[test]
    fn a_warm_covers_its_prefix_in_its_bucket_and_expires() {
        let w = Warm {
            zone: "a".into(),
            bucket: "b".into(),
            prefix: "train/".into(),
            pinned: false,
            created_ms: 10,
            expires_ms: Some(100),
        };
        assert!(w.covers("b", "train/x"));
        assert!(!w.covers("b", "test/x"));
        assert!(!w.covers("c", "train/x"));
        assert!(!w.expired(99));
        assert!(w.expired(100));
        assert!(Warm {
            zone: String::new(),
            ..w.clone()
        }
        .validate()
        .is_err());
    }
}
