//! Placement: which node holds each shard of a segment.
//!
//! Rendezvous (highest-random-weight) hashing weighted by free space: every
//! candidate gets a score from `hash(segment, node)` scaled by its weight, and
//! the best-scoring nodes win. It is deterministic for a given cluster map,
//! moves few segments when a node comes or goes, and fills emptier nodes
//! faster. When the class spreads over zones, no zone gets more than
//! ⌈width/zones⌉ shards, so losing one zone loses at most that many.

use crate::{NodeId, SegmentId};
use thiserror::Error;

/// A node that may receive a shard.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its zone.
    pub zone: String,
    /// Free bytes: the weight.
    pub free_bytes: u64,
}

/// Why no acceptable placement exists.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlacementError {
    /// Fewer usable nodes than the write quorum.
    #[error("only {available} nodes usable for {needed} shards (write quorum {quorum}); bring nodes back or add nodes")]
    NotEnoughNodes {
        /// Nodes that could take a shard.
        available: usize,
        /// Shards wanted.
        needed: usize,
        /// Minimum acceptable.
        quorum: usize,
    },
}

/// The largest number of shards one zone may hold for a spread class.
pub fn zone_cap(width: usize, zones: usize) -> usize {
    width.div_ceil(zones.max(1))
}

fn mix64(mut x: u64) -> u64 {
    // splitmix64 finaliser: a fixed, portable hash (never std's, which may change).
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn score(segment: SegmentId, node: NodeId, free_bytes: u64) -> f64 {
    let h = mix64(mix64((segment.0 as u64) ^ ((segment.0 >> 64) as u64)) ^ node.0);
    // Uniform in (0, 1]; weighted rendezvous score = -w / ln(u).
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let w = (free_bytes.max(1) as f64).ln_1p();
    -w / u.ln().min(-f64::MIN_POSITIVE)
}

/// Chooses up to `width` distinct nodes for a segment, best first.
///
/// Returns at least `quorum` nodes or an error. With fewer usable nodes than
/// `width` the result is shorter: the caller writes what it can and leaves the
/// rest for repair. Does not promise the same answer once the candidate set
/// changes, only that most choices stay put.
pub fn place(
    segment: SegmentId,
    width: usize,
    quorum: usize,
    spread_zones: bool,
    candidates: &[Candidate],
) -> Result<Vec<NodeId>, PlacementError> {
    let mut ranked: Vec<(f64, &Candidate)> = candidates
        .iter()
        .map(|c| (score(segment, c.node, c.free_bytes), c))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.node.cmp(&b.1.node)));
    ranked.dedup_by(|a, b| a.1.node == b.1.node);

    let mut zones: Vec<&str> = candidates.iter().map(|c| c.zone.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    let cap = if spread_zones {
        zone_cap(width, zones.len())
    } else {
        width
    };

    let mut chosen: Vec<NodeId> = Vec::with_capacity(width);
    let mut per_zone: std::collections::HashMap<&str, usize> = Default::default();
    for (_, c) in &ranked {
        if chosen.len() == width {
            break;
        }
        let n = per_zone.entry(c.zone.as_str()).or_default();
        if *n < cap {
            *n += 1;
            chosen.push(c.node);
        }
    }
    if chosen.len() < quorum {
        return Err(PlacementError::NotEnoughNodes {
            available: chosen.len(),
            needed: width,
            quorum,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster(nodes_per_zone: &[usize]) -> Vec<Candidate> {
        let mut out = vec![];
        let mut id = 1;
        for (z, &n) in nodes_per_zone.iter().enumerate() {
            for _ in 0..n {
                out.push(Candidate {
                    node: NodeId(id),
                    zone: format!("z{z}"),
                    free_bytes: 1 << 40,
                });
                id += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn spread_never_exceeds_zone_cap(seg in any::<u128>(), zones in prop::collection::vec(1usize..5, 1..6), width in 1usize..10) {
            let c = cluster(&zones);
            let cap = zone_cap(width, zones.len());
            if let Ok(chosen) = place(SegmentId(seg), width, 1, true, &c) {
                let mut count: std::collections::HashMap<String, usize> = Default::default();
                for n in &chosen {
                    let z = &c.iter().find(|x| x.node == *n).unwrap().zone;
                    *count.entry(z.clone()).or_default() += 1;
                }
                for (z, n) in count {
                    prop_assert!(n <= cap, "zone {z} got {n} > cap {cap}");
                }
                let mut dedup = chosen.clone();
                dedup.sort();
                dedup.dedup();
                prop_assert_eq!(dedup.len(), chosen.len());
            }
        }

        #[test]
        fn placement_is_deterministic(seg in any::<u128>()) {
            let c = cluster(&[2, 2, 2]);
            prop_assert_eq!(place(SegmentId(seg), 6, 5, true, &c), place(SegmentId(seg), 6, 5, true, &c));
        }
    }

    #[test]
    fn six_nodes_three_zones_get_two_each() {
        let c = cluster(&[2, 2, 2]);
        for seg in 0..200u128 {
            let chosen = place(SegmentId(seg * 7919), 6, 5, true, &c).unwrap();
            assert_eq!(chosen.len(), 6);
        }
    }

    #[test]
    fn too_few_nodes_is_an_error() {
        let c = cluster(&[1, 1, 1]);
        let err = place(SegmentId(1), 6, 5, true, &c).unwrap_err();
        assert_eq!(
            err,
            PlacementError::NotEnoughNodes {
                available: 3,
                needed: 6,
                quorum: 5
            }
        );
    }

    #[test]
    fn load_is_roughly_even() {
        let c = cluster(&[3, 3, 3]);
        let mut hits = std::collections::HashMap::<NodeId, usize>::new();
        for seg in 0..3000u128 {
            for n in place(
                SegmentId(seg.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                6,
                5,
                true,
                &c,
            )
            .unwrap()
            {
                *hits.entry(n).or_default() += 1;
            }
        }
        let (min, max) = (hits.values().min().unwrap(), hits.values().max().unwrap());
        assert!(*max < min * 2, "uneven: {hits:?}");
    }
}
