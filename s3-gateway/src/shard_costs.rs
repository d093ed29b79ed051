//! What shard fetches cost this gateway, measured from the fetches it
//! makes: a per-node moving average that orders shards within a zone, and
//! the recent p95 across all nodes that decides when a fetch is slow enough
//! to hedge. Memory of the gateway only: a restart measures afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use weft_common::NodeId;

/// Fetch times kept for the p95.
const RECENT_MAX: usize = 256;
/// Fetches needed before the p95 means anything; until then hedges wait
/// [`UNMEASURED_HEDGE_DELAY`].
const RECENT_MIN: usize = 16;
/// The hedge delay before enough fetches were measured.
const UNMEASURED_HEDGE_DELAY: Duration = Duration::from_millis(200);
/// Weight of the newest fetch in a node's moving average.
const EWMA_WEIGHT: f64 = 0.2;

#[derive(Debug, Default)]
struct State {
    ewma_us: HashMap<NodeId, f64>,
    recent: VecDeque<u64>,
}

/// Measured fetch costs. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ShardCosts {
    state: Arc<Mutex<State>>,
    /// By zone reached: what the network cost map is built from.
    paths: weft_client::netmap::PathCosts,
}

impl ShardCosts {
    /// Records a fetch from `node` that took `elapsed`.
    pub fn record(&self, node: NodeId, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let mut s = self.state.lock().expect("shard costs lock");
        let avg = s.ewma_us.entry(node).or_insert(us as f64);
        *avg += EWMA_WEIGHT * (us as f64 - *avg);
        if s.recent.len() == RECENT_MAX {
            s.recent.pop_front();
        }
        s.recent.push_back(us);
    }

    /// The per-zone figures the netmap reporter sends.
    pub fn paths(&self) -> &weft_client::netmap::PathCosts {
        &self.paths
    }

    /// The moving average of fetches from `node`, µs (0: none yet).
    pub fn measured_us(&self, node: NodeId) -> u64 {
        self.state
            .lock()
            .expect("shard costs lock")
            .ewma_us
            .get(&node)
            .map_or(0, |v| *v as u64)
    }

    /// How long a stripe's fetches may take before one more shard is
    /// asked: the recent p95 of fetches, never less than `floor`.
    pub fn hedge_delay(&self, floor: Duration) -> Duration {
        let s = self.state.lock().expect("shard costs lock");
        if s.recent.len() < RECENT_MIN {
            return UNMEASURED_HEDGE_DELAY.max(floor);
        }
        let mut v: Vec<u64> = s.recent.iter().copied().collect();
        let at = (v.len() * 95).div_ceil(100) - 1;
        let (_, p95, _) = v.select_nth_unstable(at);
        Duration::from_micros(*p95).max(floor)
    }
}

/// Labels of bytes fetched from one zone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    /// The zone of the data node the bytes came from.
    pub zone: String,
}

/// The read path's locality counters.
#[derive(Clone, Debug, Default)]
pub struct LocalityMetrics {
    /// Shard bytes fetched, by the serving node's zone.
    pub fetched_bytes: Family<ZoneLabels, Counter>,
    /// Shard bytes fetched from zones other than the gateway's own.
    pub cross_zone_bytes: Counter,
    /// Extra shard requests sent because a stripe's fetches were slow.
    pub hedges: Counter,
    /// Stripes the hedged shard completed (the slow one was not waited for).
    pub hedge_wins: Counter,
    /// Stripes served from the gateway's stripe cache.
    pub cache_hits: Counter,
    /// Stripes looked up in the cache and fetched.
    pub cache_misses: Counter,
    /// Shard fetches answered by a warm cache copy in this zone in place
    /// of a placed shard in another (`weft warm`).
    pub warm_copy_reads: Counter,
}

impl LocalityMetrics {
    /// Adds the counters to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "shard_fetched_bytes",
            "Shard bytes fetched from data nodes, by the node's zone",
            self.fetched_bytes.clone(),
        );
        registry.register(
            "cross_zone_read_bytes",
            "Shard bytes fetched from data nodes outside this gateway's zone",
            self.cross_zone_bytes.clone(),
        );
        registry.register(
            "read_hedges",
            "Extra shard requests sent because a stripe's fetches outlived the recent p95",
            self.hedges.clone(),
        );
        registry.register(
            "read_hedge_wins",
            "Stripes completed by a hedged shard before the slow one answered",
            self.hedge_wins.clone(),
        );
        registry.register(
            "warm_copy_reads",
            "Shard fetches answered by a warm cache copy in this gateway's zone instead of a placed shard in another",
            self.warm_copy_reads.clone(),
        );
        registry.register(
            "stripe_cache_hits",
            "Stripes served from the gateway's stripe cache",
            self.cache_hits.clone(),
        );
        registry.register(
            "stripe_cache_misses",
            "Stripes not in the stripe cache, fetched from data nodes",
            self.cache_misses.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedge_delay_is_the_p95_of_recent_fetches_above_the_floor() {
        let c = ShardCosts::default();
        assert_eq!(
            c.hedge_delay(Duration::from_millis(1)),
            UNMEASURED_HEDGE_DELAY,
            "unmeasured"
        );
        for ms in 1..=100 {
            c.record(NodeId(1), Duration::from_millis(ms));
        }
        assert_eq!(c.hedge_delay(Duration::ZERO), Duration::from_millis(95));
        assert_eq!(
            c.hedge_delay(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_node_average_follows_its_fetches() {
        let c = ShardCosts::default();
        assert_eq!(c.measured_us(NodeId(2)), 0);
        c.record(NodeId(2), Duration::from_micros(1000));
        assert_eq!(c.measured_us(NodeId(2)), 1000);
        for _ in 0..50 {
            c.record(NodeId(2), Duration::from_micros(100));
        }
        assert!(c.measured_us(NodeId(2)) < 110);
    }
}
