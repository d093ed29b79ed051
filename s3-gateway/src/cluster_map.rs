//! The gateway's cached view of the data nodes: who exists, where, and who is
//! up. Refreshed from metad in the background; placement and reads use the
//! cached copy so the data path never waits on metad for it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::placement::Candidate;
use weft_common::rpc::{Query, QueryResult};
use weft_common::storage_class::{KnownNode, PlacementRule, StorageClass, DEFAULT_CLASS};
use weft_common::topology::NodeView;
use weft_common::NodeId;

pub use crate::limits::UNREACHABLE_AVOID;

/// Cached node table.
#[derive(Clone, Default)]
pub struct ClusterMap {
    nodes: Arc<RwLock<Arc<BTreeMap<NodeId, NodeView>>>>,
    /// Nodes this gateway failed to connect to, and when.
    unreachable: Arc<std::sync::Mutex<BTreeMap<NodeId, Instant>>>,
    /// Why the metad leader refuses new data, while it does.
    metad_space_low: Arc<RwLock<Option<String>>>,
    /// The storage classes, as metad had them at the last refresh.
    classes: Arc<RwLock<Arc<Vec<StorageClass>>>>,
    /// metad's lifecycle day in ms (0 until known: a real day).
    lifecycle_day_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Each node's zone by its `host:port`, for the emulated WAN, which
    /// sees only addresses.
    zones_by_addr: Arc<RwLock<Arc<std::collections::HashMap<String, String>>>>,
    /// The measured network cost map, as metad had it at the last refresh.
    netmap: Arc<RwLock<Arc<weft_common::netmap::NetMap>>>,
}

impl std::fmt::Debug for ClusterMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMap")
            .field("nodes", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl weft_client::wan::ZoneOf for ClusterMap {
    fn zone_of(&self, authority: &str) -> Option<String> {
        self.zones_by_addr
            .read()
            .expect("cluster map lock")
            .get(authority)
            .cloned()
    }
}

/// The netmap reporter probes the data nodes this gateway may read from.
impl weft_client::netmap::Peers for ClusterMap {
    fn peers(&self) -> Vec<(String, String)> {
        self.snapshot()
            .values()
            .filter(|n| n.readable())
            .map(|n| (n.info.addr.clone(), n.info.zone.clone()))
            .collect()
    }
}

/// Why a request's storage class cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClassLookup {
    /// The cluster defines no class of that name.
    #[error(
        "storage class {0} is not defined on this cluster (`weft class list` shows those that are)"
    )]
    Unknown(String),
    /// The gateway has not yet read the classes from metad.
    #[error("this gateway has not yet read the storage classes from metad; retry in a moment")]
    NotYetKnown,
}

impl ClusterMap {
    /// Fetches the node table once.
    pub async fn refresh(&self, metad: &MetadClient) -> Result<(), weft_client::MetadClientError> {
        match metad.query(&Query::Nodes).await? {
            QueryResult::Nodes {
                nodes,
                metad_space_low,
                classes,
                lifecycle_day_ms,
                netmap,
            } => {
                *self.netmap.write().expect("cluster map lock") = Arc::new(netmap);
                self.lifecycle_day_ms
                    .store(lifecycle_day_ms, std::sync::atomic::Ordering::Relaxed);
                self.install(nodes);
                *self.metad_space_low.write().expect("cluster map lock") = metad_space_low;
                // A metad that has not seeded yet answers none: keep what
                // we had rather than forget every class.
                if !classes.is_empty() {
                    *self.classes.write().expect("cluster map lock") = Arc::new(classes);
                }
                Ok(())
            }
            other => Err(weft_client::MetadClientError::Protocol(format!(
                "expected nodes, got {other:?}"
            ))),
        }
    }

    /// The network cost map at the last refresh.
    pub fn netmap(&self) -> Arc<weft_common::netmap::NetMap> {
        self.netmap.read().expect("cluster map lock").clone()
    }

    /// Replaces the node table (a refresh, or a test's own table).
    pub fn install(&self, nodes: Vec<NodeView>) {
        let by_addr = nodes
            .iter()
            .map(|n| (n.info.addr.clone(), n.info.zone.clone()))
            .collect();
        let map = nodes.into_iter().map(|n| (n.info.id, n)).collect();
        *self.nodes.write().expect("cluster map lock") = Arc::new(map);
        *self.zones_by_addr.write().expect("cluster map lock") = Arc::new(by_addr);
    }

    /// Refreshes every `period` until cancelled.
    pub fn spawn_refresher(&self, metad: MetadClient, period: Duration, cancel: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.refresh(&metad).await {
                    tracing::debug!(error = %e, "cluster map refresh failed; keeping the last one");
                }
                if let Err(e) = metad.learn_members().await {
                    tracing::debug!(error = %e, "metad membership refresh failed");
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
            }
        });
    }

    /// Why metad refuses new data, if it did at the last refresh: a write
    /// is then refused before it writes shards that would only wait for
    /// garbage collection.
    pub fn metad_space_low(&self) -> Option<String> {
        self.metad_space_low
            .read()
            .expect("cluster map lock")
            .clone()
    }

    /// A snapshot of the table.
    pub fn snapshot(&self) -> Arc<BTreeMap<NodeId, NodeView>> {
        self.nodes.read().expect("cluster map lock").clone()
    }

    /// Records that a connection to `node` failed: placement avoids it for
    /// [`UNREACHABLE_AVOID`].
    pub fn mark_unreachable(&self, node: NodeId) {
        self.unreachable
            .lock()
            .expect("unreachable lock")
            .insert(node, Instant::now());
    }

    /// The class a request names, or the default class.
    pub fn class(&self, name: Option<&str>) -> Result<StorageClass, ClassLookup> {
        let classes = self.classes.read().expect("cluster map lock").clone();
        if classes.is_empty() {
            return Err(ClassLookup::NotYetKnown);
        }
        let name = name.unwrap_or(DEFAULT_CLASS);
        classes
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .ok_or_else(|| ClassLookup::Unknown(name.to_string()))
    }

    /// The length of a lifecycle day, ms.
    pub fn lifecycle_day_ms(&self) -> u64 {
        match self
            .lifecycle_day_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => 86_400_000,
            d => d,
        }
    }

    /// Sets the classes directly: for tests of the write path without metad.
    pub fn set_classes(&self, classes: Vec<StorageClass>) {
        *self.classes.write().expect("cluster map lock") = Arc::new(classes);
    }

    /// The rule a new segment of `class` is written under, from every node
    /// metad knows and has not removed (whatever its liveness: a node down
    /// for a minute must not move a class's zones).
    pub fn resolve(
        &self,
        class: &StorageClass,
        segment: weft_common::SegmentId,
        layout: weft_common::profile::Layout,
    ) -> Result<PlacementRule, weft_common::storage_class::ClassError> {
        let snap = self.snapshot();
        let known: Vec<KnownNode<'_>> = snap
            .values()
            .filter(|n| n.admin != weft_common::topology::NodeAdmin::Removed)
            .map(|n| KnownNode {
                zone: &n.info.zone,
                labels: &n.info.labels,
            })
            .collect();
        class.resolve(segment, layout, &known)
    }

    /// The nodes `rule` admits that may take new shards now.
    pub fn candidates_for(&self, rule: &PlacementRule) -> Vec<Candidate> {
        let snap = self.snapshot();
        self.candidates()
            .into_iter()
            .filter(|c| {
                snap.get(&c.node)
                    .is_some_and(|n| rule.admits(&n.info.zone, &n.info.labels))
            })
            .collect()
    }

    /// Nodes that may take new shards, with their space state: placement
    /// skips full ones and names them if too few remain.
    pub fn candidates(&self) -> Vec<Candidate> {
        let avoid: Vec<NodeId> = {
            let mut u = self.unreachable.lock().expect("unreachable lock");
            u.retain(|_, at| at.elapsed() < UNREACHABLE_AVOID);
            u.keys().copied().collect()
        };
        self.snapshot()
            .values()
            .filter(|n| n.accepts_writes() && !avoid.contains(&n.info.id))
            .map(|n| Candidate {
                node: n.info.id,
                zone: n.info.zone.clone(),
                free_bytes: n.free_bytes(),
                space: n.space.state,
            })
            .collect()
    }

    /// Where a node listens and whether reading from it is worth trying
    /// (not down, not removed; suspect and draining nodes still serve).
    pub fn locate(&self, node: NodeId) -> Option<(String, bool)> {
        self.snapshot()
            .get(&node)
            .map(|n| (n.info.addr.clone(), n.readable()))
    }
}
