//! Placement: which node holds each shard of a segment.
//!
//! Rendezvous (highest-random-weight) hashing weighted by free space: every
//! candidate gets a score from `hash(segment, node)` scaled by its weight, and
//! the best-scoring nodes win. It is deterministic for a given cluster map,
//! moves few segments when a node comes or goes, and fills emptier nodes
//! faster. When the class spreads over zones, no zone gets more than
//! ⌈width/zones⌉ shards, so losing one zone loses at most that many.
//!
//! A node's space state weighs in too (see [`crate::space`]): a `full` node
//! is skipped, and a `nearfull` one gets a [`NEARFULL_WEIGHT`] share of its
//! weight, so it fills more slowly while operators react. Full nodes are
//! passed in rather than filtered out by callers so that a placement that
//! fails for want of room can say which nodes are full.

use crate::space::SpaceState;
use crate::{NodeId, SegmentId};
use thiserror::Error;

/// Share of its weight a `nearfull` node keeps: it still takes shards (the
/// cluster may need it), but markedly fewer than its free bytes suggest.
pub const NEARFULL_WEIGHT: f64 = 0.25;

/// A node that may receive a shard.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its zone.
    pub zone: String,
    /// Free bytes: the weight.
    pub free_bytes: u64,
    /// Space state from its last heartbeat: full nodes are skipped.
    pub space: SpaceState,
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
    /// Fewer usable nodes than the write quorum because some are full.
    #[error("only {available} nodes with room for {needed} shards (write quorum {quorum}): data nodes {} are full; delete data, add capacity or add nodes", list(.full))]
    NodesFull {
        /// Nodes that could take a shard.
        available: usize,
        /// Shards wanted.
        needed: usize,
        /// Minimum acceptable.
        quorum: usize,
        /// The full nodes left out.
        full: Vec<NodeId>,
    },
}

fn list(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
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

fn score(segment: SegmentId, c: &Candidate) -> f64 {
    let h = mix64(mix64((segment.0 as u64) ^ ((segment.0 >> 64) as u64)) ^ c.node.0);
    // Uniform in (0, 1]; weighted rendezvous score = -w / ln(u).
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let mut w = (c.free_bytes.max(1) as f64).ln_1p();
    if c.space == SpaceState::Nearfull {
        w *= NEARFULL_WEIGHT;
    }
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
        .filter(|c| c.space != SpaceState::Full)
        .map(|c| (score(segment, c), c))
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
    let mut per_zone: std::collections::BTreeMap<&str, usize> = Default::default();
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
        let mut full: Vec<NodeId> = candidates
            .iter()
            .filter(|c| c.space == SpaceState::Full)
            .map(|c| c.node)
            .collect();
        full.sort_unstable();
        full.dedup();
        // Full only when the full nodes are what is missing: with their
        // room the quorum would be there. Otherwise (nodes down, the zone
        // cap) it is a retryable shortage, not a reason to delete data.
        if !full.is_empty() && chosen.len() + full.len() >= quorum {
            return Err(PlacementError::NodesFull {
                available: chosen.len(),
                needed: width,
                quorum,
                full,
            });
        }
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
                    space: SpaceState::Ok,
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
                let mut count: std::collections::BTreeMap<String, usize> = Default::default();
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
    fn full_nodes_are_skipped_and_named_when_too_few_remain() {
        let mut c = cluster(&[3, 3, 3]);
        c[0].space = SpaceState::Full;
        c[4].space = SpaceState::Full;
        for seg in 0..500u128 {
            let chosen = place(SegmentId(seg * 7919), 6, 5, true, &c).unwrap();
            assert_eq!(chosen.len(), 6);
            assert!(
                !chosen.contains(&NodeId(1)) && !chosen.contains(&NodeId(5)),
                "a full node was chosen: {chosen:?}"
            );
        }
        // Three zones of one node each, two of them full: one node left.
        let mut small = cluster(&[1, 1, 1]);
        small[1].space = SpaceState::Full;
        small[2].space = SpaceState::Full;
        let err = place(SegmentId(3), 3, 2, true, &small).unwrap_err();
        assert_eq!(
            err,
            PlacementError::NodesFull {
                available: 1,
                needed: 3,
                quorum: 2,
                full: vec![NodeId(2), NodeId(3)],
            }
        );
        assert!(
            err.to_string().contains("data nodes n2, n3 are full"),
            "{err}"
        );
        // Enough room without them: the write goes ahead, shorter.
        assert_eq!(
            place(SegmentId(3), 3, 1, true, &small).unwrap(),
            vec![NodeId(1)]
        );
    }

    #[test]
    fn nearfull_nodes_get_fewer_shards() {
        let mut c = cluster(&[4]);
        c[0].space = SpaceState::Nearfull;
        let mut hits = std::collections::BTreeMap::<NodeId, usize>::new();
        for seg in 0..4000u128 {
            let n = place(
                SegmentId(seg.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                1,
                1,
                false,
                &c,
            )
            .unwrap()[0];
            *hits.entry(n).or_default() += 1;
        }
        // Weight 1/4 of each peer's: about 1/13 of single-shard placements
        // (about 300) against about 1,230 for each peer.
        let nearfull = hits.get(&NodeId(1)).copied().unwrap_or(0);
        let peer_min = (2..=4).map(|i| hits[&NodeId(i)]).min().unwrap();
        assert!(nearfull > 0, "a nearfull node still takes shards");
        assert!(
            nearfull * 2 < peer_min,
            "nearfull {nearfull} vs peers {hits:?}"
        );
    }

    #[test]
    fn load_is_roughly_even() {
        let c = cluster(&[3, 3, 3]);
        let mut hits = std::collections::BTreeMap::<NodeId, usize>::new();
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
