//! Locality: which shards a reader in one zone should fetch.
//!
//! An erasure-coded stripe can be read from any k of its k + m shards, so
//! "read the nearest copy" becomes "read the k cheapest shards". Decoding
//! from parity costs a few microseconds of CPU per MiB; crossing a WAN
//! costs milliseconds and money. So a reader counts the bytes each way of
//! reading a stripe would pull across zones and takes the way that pulls
//! the fewest, parity included; the data shards are read directly only
//! when that crosses no more.

use std::ops::Range;

/// The header naming the caller's zone on internal requests: data nodes
/// count the bytes they serve by it. Metrics only; it decides nothing.
pub const ZONE_HEADER: &str = "x-weft-zone";

/// Distinct zones a data node's served-bytes metric names; callers beyond
/// them are counted as `other`, so a misbehaving caller cannot grow the
/// metric without bound.
pub const METRIC_ZONES_MAX: usize = 64;

/// A zone name as a metric label: what the caller sent when it is a
/// plausible zone name (1 to 63 letters, digits, `-`, `_`, `.`), else
/// `unknown`.
pub fn metric_zone(raw: Option<&str>) -> &str {
    match raw {
        Some(z)
            if !z.is_empty()
                && z.len() <= 63
                && z.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            z
        }
        _ => "unknown",
    }
}

/// Where a shard is relative to the reader, nearest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proximity {
    /// On the reader's own machine.
    SameHost,
    /// In the reader's zone (or the reader has no zone).
    SameZone,
    /// Across a zone boundary: these bytes cross the WAN.
    OtherZone,
}

/// What reading one shard is expected to cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCost {
    /// Where it is.
    pub proximity: Proximity,
    /// Measured time of a recent fetch from its node, µs (0: not measured
    /// yet, which sorts first within its proximity so it gets measured).
    pub measured_us: u64,
}

/// Measured costs this close (µs) count as equal: within a band, data
/// shards go before parity, so measurement noise between nodes of one
/// remote zone never turns a plain read into a decode.
pub const COST_BAND_US: u64 = 10_000;

/// Shards that can be read, cheapest first: nearer before farther; across
/// zones, by measured cost in [`COST_BAND_US`] bands; then data shards
/// before parity (a read of the data shards alone needs no decode); then,
/// across zones, faster first; then by index. Inside the reader's zone
/// measured cost is ignored: those differences are noise next to a WAN,
/// and a read that is the same every time is easier to reason about.
/// `costs[i]` is `None` when shard `i` cannot be read (never written, node
/// down or unknown).
pub fn ranked(costs: &[Option<ShardCost>], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).filter(|i| costs[*i].is_some()).collect();
    order.sort_by_key(|i| {
        let c = costs[*i].expect("filtered");
        let measured = match c.proximity {
            Proximity::OtherZone => c.measured_us,
            _ => 0,
        };
        (c.proximity, measured / COST_BAND_US, *i >= k, measured, *i)
    });
    order
}

/// One stripe's read: which data units the caller wants, and which columns
/// (byte range within the stripe's unit) of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeWant {
    /// Data shards (0..k) and the columns wanted from each, in order.
    pub units: Vec<(usize, Range<u64>)>,
    /// Length of each shard's unit in this stripe.
    pub unit: u64,
}

impl StripeWant {
    /// The columns a decode must fetch from every shard it uses: the wanted
    /// columns when one unit is wanted, the whole unit when several are
    /// (the first ends at the unit's end and the last starts at 0).
    pub fn decode_columns(&self) -> Range<u64> {
        match self.units.as_slice() {
            [(_, cols)] => cols.clone(),
            _ => 0..self.unit,
        }
    }
}

/// How to read a stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripePlan {
    /// Fetch exactly the wanted columns of the wanted data shards.
    Direct,
    /// Fetch `columns` of the shards in `order` — the first k at once, the
    /// rest as spares for failures and hedges — and decode.
    Decode {
        /// Byte range within each shard's unit.
        columns: Range<u64>,
        /// Readable shards, cheapest first.
        order: Vec<usize>,
    },
}

/// Chooses how to read `want` from shards costed by `costs` (see
/// [`ranked`]): the plan that pulls the fewest bytes across zones, then
/// the fewest bytes at all. A full-stripe read whose data shards are all
/// in the reader's zone is a decode plan in name only: its first k are the
/// data shards, so nothing is decoded, and spares stand ready for hedges.
pub fn plan_stripe(want: &StripeWant, k: usize, costs: &[Option<ShardCost>]) -> StripePlan {
    let columns = want.decode_columns();
    let order = ranked(costs, k);
    let crosses = |i: usize| costs[i].is_some_and(|c| c.proximity == Proximity::OtherZone);
    let direct_ok = want.units.iter().all(|(j, _)| costs[*j].is_some());
    // Every data unit wanted: a decode plan fetches at most the rest of
    // the first unit more, and gains hedging and a choice of shards.
    let full_stripe = want.units.len() == k;
    if direct_ok && !full_stripe {
        let direct_cross: u64 = want
            .units
            .iter()
            .filter(|(j, _)| crosses(*j))
            .map(|(_, c)| c.end - c.start)
            .sum();
        let decode_cross = order.iter().take(k).filter(|i| crosses(**i)).count() as u64
            * (columns.end - columns.start);
        if order.len() < k || direct_cross <= decode_cross {
            return StripePlan::Direct;
        }
    }
    StripePlan::Decode { columns, order }
}

/// One current object as `Query::Placements` answers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacedObject {
    /// Key.
    pub key: String,
    /// Object bytes.
    pub size: u64,
    /// Its segments, with current placement and cache copies.
    pub segments: Vec<crate::manifest::Segment>,
}

/// What reading `seg` whole costs a reader in `zone`, in bytes: `(from
/// the zone, from other zones)`. An erasure-coded stripe needs k units:
/// as many as the zone holds distinct shards of come from it, the rest
/// cross. A replicated segment crosses only when no copy is in the zone.
/// `zone_of` places a node (`None`: unknown, counted as elsewhere). Cache
/// copies warmed into the zone count as its shards.
pub fn read_cost<'a>(
    seg: &crate::manifest::Segment,
    zone_of: impl Fn(crate::NodeId) -> Option<&'a str>,
    zone: &str,
) -> (u64, u64) {
    let local = crate::warm::indices_in_zone(&seg.shards, &seg.cache, zone_of, zone).len() as u64;
    match seg.layout {
        crate::profile::Layout::Replicated { .. } => match local {
            0 => (0, seg.len),
            _ => (seg.len, 0),
        },
        crate::profile::Layout::Erasure { k, .. } => {
            let k = u64::from(k);
            let here = local.min(k);
            (here * seg.shard_len, (k - here) * seg.shard_len)
        }
    }
}

/// Where a reader in `zone` would take `seg`'s bytes from: bytes per
/// source zone. The zone's own shards first (up to k), then the other
/// zones in `order_of_zones` (cheapest first; zones not named come last,
/// by name), each giving as many units as it holds shards. Sums to what
/// [`read_cost`] counts.
pub fn read_sources<'a>(
    seg: &crate::manifest::Segment,
    zone_of: impl Fn(crate::NodeId) -> Option<&'a str>,
    zone: &str,
    order_of_zones: &[String],
) -> std::collections::BTreeMap<String, u64> {
    use std::collections::BTreeMap;
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for n in seg.shards.iter().flatten() {
        *held
            .entry(zone_of(*n).unwrap_or("unknown").to_string())
            .or_default() += 1;
    }
    // The reader's own zone also serves what was warmed into it.
    let own = crate::warm::indices_in_zone(&seg.shards, &seg.cache, &zone_of, zone).len() as u64;
    if own > 0 {
        held.insert(zone.to_string(), own);
    }
    let mut out = BTreeMap::new();
    let (need, unit) = match seg.layout {
        crate::profile::Layout::Replicated { .. } => (1, seg.len),
        crate::profile::Layout::Erasure { k, .. } => (u64::from(k), seg.shard_len),
    };
    let mut left = need;
    let mut zones: Vec<String> = vec![zone.to_string()];
    zones.extend(order_of_zones.iter().filter(|z| *z != zone).cloned());
    let mut rest: Vec<&String> = held.keys().filter(|z| !zones.contains(z)).collect();
    rest.sort();
    zones.extend(rest.into_iter().cloned());
    for z in zones {
        if left == 0 {
            break;
        }
        let take = held.get(&z).copied().unwrap_or(0).min(left);
        if take > 0 {
            out.insert(z, take * unit);
            left -= take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: Proximity) -> Option<ShardCost> {
        Some(ShardCost {
            proximity: p,
            measured_us: 0,
        })
    }

    use Proximity::{OtherZone as Far, SameHost as Host, SameZone as Near};

    fn whole(k: usize, unit: u64) -> StripeWant {
        StripeWant {
            units: (0..k).map(|j| (j, 0..unit)).collect(),
            unit,
        }
    }

    #[test]
    fn a_full_stripe_takes_parity_in_the_zone_over_data_across_it() {
        // 4+2 over three zones, two shards each; the reader is in the zone
        // holding data shard 3 and parity 5.
        let costs = [at(Far), at(Far), at(Far), at(Near), at(Far), at(Near)];
        let plan = plan_stripe(&whole(4, 100), 4, &costs);
        let StripePlan::Decode { columns, order } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(columns, 0..100);
        assert_eq!(&order[..2], &[3, 5], "both local shards come first");
        assert_eq!(&order[2..], &[0, 1, 2, 4], "then data before parity");
    }

    #[test]
    fn a_full_stripe_in_the_zone_reads_its_data_shards_first() {
        let costs = [at(Near), at(Near), at(Near), at(Near), at(Far), at(Near)];
        let StripePlan::Decode { order, .. } = plan_stripe(&whole(4, 8), 4, &costs) else {
            panic!()
        };
        assert_eq!(order, vec![0, 1, 2, 3, 5, 4]);
    }

    #[test]
    fn a_small_range_in_one_remote_unit_is_read_directly() {
        // One remote unit read directly crosses 10 bytes; a decode would
        // pull 10 bytes from each of at least two remote shards.
        let costs = [at(Far), at(Far), at(Near), at(Near), at(Far), at(Far)];
        let want = StripeWant {
            units: vec![(0, 5..15)],
            unit: 100,
        };
        assert_eq!(plan_stripe(&want, 4, &costs), StripePlan::Direct);
    }

    #[test]
    fn a_range_over_remote_units_decodes_when_that_crosses_fewer_bytes() {
        // Units 0 and 1 are remote; shards 2..6 are local: a decode of four
        // local shards crosses nothing.
        let costs = [at(Far), at(Far), at(Near), at(Near), at(Near), at(Near)];
        let want = StripeWant {
            units: vec![(0, 50..100), (1, 0..30)],
            unit: 100,
        };
        let plan = plan_stripe(&want, 4, &costs);
        assert_eq!(
            plan,
            StripePlan::Decode {
                columns: 0..100,
                order: vec![2, 3, 4, 5, 0, 1]
            }
        );
    }

    #[test]
    fn an_unreadable_wanted_unit_forces_a_decode_from_the_readable_rest() {
        let costs = [None, at(Near), at(Near), at(Near), at(Far), at(Near)];
        let want = StripeWant {
            units: vec![(0, 0..10)],
            unit: 100,
        };
        assert_eq!(
            plan_stripe(&want, 4, &costs),
            StripePlan::Decode {
                columns: 0..10,
                order: vec![1, 2, 3, 5, 4]
            }
        );
    }

    #[test]
    fn same_host_then_data_first_within_a_zone_whatever_was_measured() {
        let mut costs = [at(Near), at(Near), at(Near), at(Host), at(Far), at(Far)];
        costs[1] = Some(ShardCost {
            proximity: Near,
            measured_us: 90_000,
        });
        costs[5] = Some(ShardCost {
            proximity: Far,
            measured_us: 1,
        });
        assert_eq!(ranked(&costs, 4), vec![3, 0, 1, 2, 4, 5]);
    }

    #[test]
    fn parity_that_is_only_slightly_faster_does_not_displace_data() {
        let cost = |us| {
            Some(ShardCost {
                proximity: Far,
                measured_us: us,
            })
        };
        // Parity 4 measured a little faster than data 0: same band, data
        // first. Parity 5 is a band faster than data 1: it goes first.
        let costs = [
            cost(25_000),
            cost(45_000),
            at(Near),
            at(Near),
            cost(21_000),
            cost(31_000),
        ];
        assert_eq!(ranked(&costs, 4), vec![2, 3, 0, 4, 5, 1]);
    }

    #[test]
    fn metric_zone_keeps_zone_names_and_hides_anything_else() {
        assert_eq!(metric_zone(Some("eu-west-1a")), "eu-west-1a");
        assert_eq!(metric_zone(Some("")), "unknown");
        assert_eq!(metric_zone(Some("a\"b")), "unknown");
        assert_eq!(metric_zone(Some(&"z".repeat(64))), "unknown");
        assert_eq!(metric_zone(None), "unknown");
    }
}
