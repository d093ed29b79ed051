//! Measuring the network cost map (docs/locality.md), shared by the
//! processes that cross zones: gateways (their shard reads) and data nodes
//! (repair, transition and warm copies pull shards from their peers).
//!
//! Each keeps moving averages, per zone it reached, of probe round trips
//! and of the throughput of real transfers ([`PathCosts`]); a loop
//! ([`spawn`]) probes the data nodes in turn through the same transport the
//! process's real requests use (so an emulated WAN shows) and sends the
//! figures to the metad leader as soft state, never a raft entry. Bounded:
//! one probe at a time, at most [`PROBES_PER_ROUND`] a round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_common::netmap::{NetReport, PathSample};
use weft_common::rpc::{Query, QueryResult};
use weft_common::SegmentId;

use crate::wan::ZoneOf;
use crate::{DatadClient, MetadClient};

/// Most nodes probed in one round (the rest wait for later rounds).
pub const PROBES_PER_ROUND: usize = 64;
/// A probe that takes longer is abandoned (and not counted).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// Transfers smaller than this say more about round trips than about
/// throughput, so they do not count toward it.
pub const THROUGHPUT_MIN_BYTES: u64 = 256 << 10;
/// Weight of the newest sample in a moving average.
const EWMA_WEIGHT: f64 = 0.2;

fn ewma(avg: &mut f64, sample: f64) {
    if *avg == 0.0 {
        *avg = sample;
    } else {
        *avg += EWMA_WEIGHT * (sample - *avg);
    }
}

/// By zone reached: moving averages of probe round trips (µs) and of
/// transfer throughput (bytes/s, 0 until a big enough transfer). Cheap to
/// clone; clones share the figures.
#[derive(Clone, Debug, Default)]
pub struct PathCosts {
    zones: Arc<Mutex<BTreeMap<String, (f64, f64)>>>,
}

impl PathCosts {
    /// Records a probe of a node in `zone` that took `rtt`.
    pub fn record_probe(&self, zone: &str, rtt: Duration) {
        let mut zones = self.zones.lock().expect("path costs lock");
        let entry = zones.entry(zone.to_string()).or_default();
        ewma(&mut entry.0, rtt.as_micros() as f64);
    }

    /// Records a transfer of `bytes` from `zone` that took `elapsed`
    /// (ignored below [`THROUGHPUT_MIN_BYTES`]).
    pub fn record_transfer(&self, zone: &str, bytes: u64, elapsed: Duration) {
        if bytes < THROUGHPUT_MIN_BYTES || elapsed.is_zero() {
            return;
        }
        let mut zones = self.zones.lock().expect("path costs lock");
        let entry = zones.entry(zone.to_string()).or_default();
        ewma(&mut entry.1, bytes as f64 / elapsed.as_secs_f64());
    }

    /// The figures for each zone reached, as paths from `from` (the
    /// measuring process's zone); zones never probed are left out.
    pub fn samples(&self, from: &str) -> Vec<PathSample> {
        let zones = self.zones.lock().expect("path costs lock");
        zones
            .iter()
            .filter(|(_, (rtt, _))| *rtt > 0.0)
            .map(|(to, (rtt, rate))| PathSample {
                from: from.to_string(),
                to: to.clone(),
                rtt_us: *rtt as u64,
                bytes_per_s: *rate as u64,
            })
            .collect()
    }
}

/// The data nodes a reporter probes.
pub trait Peers: Send + Sync + 'static {
    /// `(address, zone)` of each node worth probing now.
    fn peers(&self) -> Vec<(String, String)>;

    /// Brings the list up to date before a round (a process without a
    /// cluster map of its own reads metad's node table here).
    fn refresh<'a>(&'a self, _metad: &'a MetadClient) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// A probe of `addr` failed: the list may be out of date.
    fn unreachable(&self, _addr: &str) {}
}

/// The warm-copy reads a gateway sends with its reports.
pub trait CacheReadLog: Send + Sync + 'static {
    /// Takes the segments read from warm cache copies since the last take.
    fn take(&self) -> Vec<SegmentId>;
    /// Gives back what a report that failed carried, for the next one.
    fn put_back(&self, segments: Vec<SegmentId>);
}

#[derive(Debug, Default)]
struct PeerTable {
    /// address → (zone, readable).
    by_addr: BTreeMap<String, (String, bool)>,
    /// When it was last read from metad.
    read_at: Option<tokio::time::Instant>,
    /// How long the last read is trusted.
    trusted_for: Duration,
}

/// The longest a data node trusts its copy of the node table before
/// reading it again (sooner when a request goes to an address it lacks):
/// the table changes when nodes join, leave or go down, and every data
/// node asking every round would load the metad leader for nothing. The
/// trust starts at [`PEER_TABLE_MIN_AGE`] and doubles with each read, so
/// a cluster still starting (nodes registering one after another) is seen
/// whole within seconds.
pub const PEER_TABLE_MAX_AGE: Duration = Duration::from_secs(60);
/// The first reads' trust.
pub const PEER_TABLE_MIN_AGE: Duration = Duration::from_secs(1);

/// A data node's view of its peers: their zones by address, from metad's
/// node table. Serves the emulated WAN (which zone a request goes to) and
/// the probes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PeerZones {
    own_addr: String,
    table: Arc<RwLock<PeerTable>>,
    /// A lookup missed since the last read: read again at the next round.
    missed: Arc<std::sync::atomic::AtomicBool>,
}

impl PeerZones {
    /// An empty view for the node advertised at `own_addr` (never probed).
    pub fn new(own_addr: impl Into<String>) -> PeerZones {
        PeerZones {
            own_addr: own_addr.into(),
            table: Arc::default(),
            missed: Arc::default(),
        }
    }

    /// Whether the table is due a re-read: never read, older than it is
    /// trusted for, or missing an address asked for.
    fn stale(&self) -> bool {
        let table = self.table.read().expect("peer zones lock");
        self.missed.load(std::sync::atomic::Ordering::Relaxed)
            || table
                .read_at
                .is_none_or(|t| t.elapsed() >= table.trusted_for)
    }

    /// Reads metad's node table when it is [stale](Self::stale); on
    /// failure the last one stays.
    pub async fn refresh_from(&self, metad: &MetadClient) {
        if !self.stale() {
            return;
        }
        // Cleared before asking, so a miss while the query is out is kept
        // for the next round.
        let missed = self
            .missed
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let restore = || {
            if missed {
                self.missed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        match metad.query(&Query::Nodes).await {
            Ok(QueryResult::Nodes { nodes, .. }) => {
                let by_addr: BTreeMap<String, (String, bool)> = nodes
                    .into_iter()
                    .map(|n| {
                        let readable = n.readable();
                        (n.info.addr, (n.info.zone, readable))
                    })
                    .collect();
                let mut table = self.table.write().expect("peer zones lock");
                // Trusted longer while it stays the same; a change (a
                // node joined, left, went down or came back) means more
                // may follow soon.
                table.trusted_for = if table.by_addr == by_addr {
                    (table.trusted_for * 2).clamp(PEER_TABLE_MIN_AGE, PEER_TABLE_MAX_AGE)
                } else {
                    PEER_TABLE_MIN_AGE
                };
                table.by_addr = by_addr;
                table.read_at = Some(tokio::time::Instant::now());
            }
            Ok(other) => {
                restore();
                tracing::debug!(?other, "node table query answered something else")
            }
            Err(e) => {
                restore();
                tracing::debug!(error = %e, "node table not read; keeping the last one")
            }
        }
    }
}

impl ZoneOf for PeerZones {
    fn zone_of(&self, authority: &str) -> Option<String> {
        let zone = self
            .table
            .read()
            .expect("peer zones lock")
            .by_addr
            .get(authority)
            .map(|(zone, _)| zone.clone());
        if zone.is_none() {
            self.missed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        zone
    }
}

impl Peers for PeerZones {
    fn peers(&self) -> Vec<(String, String)> {
        self.table
            .read()
            .expect("peer zones lock")
            .by_addr
            .iter()
            .filter(|(addr, (_, readable))| *readable && **addr != self.own_addr)
            .map(|(addr, (zone, _))| (addr.clone(), zone.clone()))
            .collect()
    }

    fn refresh<'a>(&'a self, metad: &'a MetadClient) -> BoxFuture<'a, ()> {
        Box::pin(self.refresh_from(metad))
    }

    fn unreachable(&self, _addr: &str) {
        self.missed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the probe-and-report loop needs.
pub struct Reporter {
    /// How often it measures and reports.
    pub round: Duration,
    /// The measuring process's zone (the paths' origin).
    pub zone: String,
    /// How metad knows this reporter (its advertised address).
    pub reporter: String,
    /// The data nodes to probe.
    pub peers: Arc<dyn Peers>,
    /// Probes through the process's own transport.
    pub datad: DatadClient,
    /// Takes the reports.
    pub metad: MetadClient,
    /// The figures, shared with whatever measures real transfers.
    pub paths: PathCosts,
    /// A gateway's warm-copy reads, sent along (none for a data node).
    pub cache_reads: Option<Arc<dyn CacheReadLog>>,
}

/// Runs the probe-and-report loop in `span` until `cancel`.
pub fn spawn(
    r: Reporter,
    cancel: CancellationToken,
    span: tracing::Span,
) -> tokio::task::JoinHandle<()> {
    let Reporter {
        round,
        zone,
        reporter,
        peers,
        datad,
        metad,
        paths,
        cache_reads,
    } = r;
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = peers.refresh(&metad) => {}
            }
            let nodes = peers.peers();
            // A rotating window, so every node is probed in turn however
            // many there are.
            for i in 0..nodes.len().min(PROBES_PER_ROUND) {
                let (addr, node_zone) = &nodes[(next + i) % nodes.len()];
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    probe = tokio::time::timeout(PROBE_DEADLINE, datad.probe(addr)) => match probe {
                        Ok(Ok(rtt)) => paths.record_probe(node_zone, rtt),
                        Ok(Err(e)) => {
                            peers.unreachable(addr);
                            tracing::debug!(%addr, error = %e, "netmap probe failed")
                        }
                        Err(_) => {
                            peers.unreachable(addr);
                            tracing::debug!(%addr, "netmap probe timed out")
                        }
                    }
                }
            }
            next = next.wrapping_add(PROBES_PER_ROUND);
            let report = NetReport {
                reporter: reporter.clone(),
                samples: paths.samples(&zone),
                zone: zone.clone(),
                cache_reads: cache_reads.as_ref().map(|c| c.take()).unwrap_or_default(),
            };
            if !report.samples.is_empty() || !report.cache_reads.is_empty() {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = metad.report_netmap(&report) => if let Err(e) = r {
                        if let Some(c) = &cache_reads {
                            c.put_back(report.cache_reads);
                        }
                        tracing::debug!(error = %e, "netmap report not taken; the next round retries");
                    }
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(round) => {}
            }
        }
    }.instrument(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_figures_come_from_probes_and_big_transfers_only() {
        let c = PathCosts::default();
        c.record_transfer("b", 1 << 20, Duration::from_secs(1));
        assert!(c.samples("a").is_empty(), "no probe yet: no path");
        c.record_probe("b", Duration::from_millis(20));
        c.record_transfer("b", 1000, Duration::from_secs(1));
        let s = c.samples("a");
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].from.as_str(), s[0].to.as_str()), ("a", "b"));
        assert_eq!(s[0].rtt_us, 20_000);
        assert_eq!(
            s[0].bytes_per_s,
            1 << 20,
            "the small transfer did not count"
        );
    }

    #[test]
    fn peers_are_the_readable_others_and_zones_come_from_the_table() {
        let p = PeerZones::new("me:1");
        {
            let mut t = p.table.write().unwrap();
            t.by_addr.insert("me:1".into(), ("a".into(), true));
            t.by_addr.insert("up:1".into(), ("b".into(), true));
            t.by_addr.insert("down:1".into(), ("c".into(), false));
        }
        assert_eq!(p.peers(), vec![("up:1".to_string(), "b".to_string())]);
        assert_eq!(p.zone_of("down:1").as_deref(), Some("c"));
        assert_eq!(p.zone_of("me:1").as_deref(), Some("a"));
        assert!(!p.missed.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(p.zone_of("elsewhere:1"), None);
        assert!(
            p.stale(),
            "an address it lacks makes the table due a re-read"
        );
    }
}
