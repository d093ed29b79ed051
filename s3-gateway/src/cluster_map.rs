//! The gateway's cached view of the data nodes: who exists, where, and who is
//! up. Refreshed from metad in the background; placement and reads use the
//! cached copy so the data path never waits on metad for it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_common::placement::Candidate;
use weft_common::rpc::{Query, QueryResult};
use weft_common::topology::NodeView;
use weft_common::NodeId;
use weft_metad::MetadClient;

/// Cached node table.
#[derive(Clone, Default)]
pub struct ClusterMap {
    nodes: Arc<RwLock<Arc<HashMap<NodeId, NodeView>>>>,
}

impl ClusterMap {
    /// Fetches the node table once.
    pub async fn refresh(&self, metad: &MetadClient) -> Result<(), weft_metad::MetadClientError> {
        match metad.query(&Query::Nodes).await? {
            QueryResult::Nodes { nodes } => {
                let map = nodes.into_iter().map(|n| (n.info.id, n)).collect();
                *self.nodes.write().expect("cluster map lock") = Arc::new(map);
                Ok(())
            }
            other => Err(weft_metad::MetadClientError::Protocol(format!(
                "expected nodes, got {other:?}"
            ))),
        }
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
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
            }
        });
    }

    /// A snapshot of the table.
    pub fn snapshot(&self) -> Arc<HashMap<NodeId, NodeView>> {
        self.nodes.read().expect("cluster map lock").clone()
    }

    /// Nodes that may take new shards.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.snapshot()
            .values()
            .filter(|n| n.accepts_writes())
            .map(|n| Candidate {
                node: n.info.id,
                zone: n.info.zone.clone(),
                free_bytes: n.free_bytes(),
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
