//! An all-in-one cluster in one process: one metad voter, data nodes spread
//! over zones, one gateway. `weft dev` runs it; the integration tests start
//! it on random loopback ports and stop or restart its parts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::rpc::{Query, QueryResult};
use weft_common::topology::NodeState;
use weft_datad::node::{DatadConfig, DatadHandle};
use weft_gateway::{GatewayConfig, GatewayHandle};
use weft_metad::{MetadConfig, MetadHandle};

mod config;
mod credentials;
mod error;

pub use config::{DevClusterConfig, MetadFs};
pub use credentials::{root_credentials, self_signed_cert, Credentials};
pub use error::DevClusterError;

struct RunningDatad {
    handle: DatadHandle,
    cancel: CancellationToken,
}

/// A running dev cluster.
pub struct DevCluster {
    cfg: DevClusterConfig,
    credentials: Credentials,
    metad: Vec<Option<(MetadHandle, CancellationToken)>>,
    /// Where each voter listened: raft membership records these addresses.
    metad_addrs: Vec<Option<SocketAddr>>,
    datad: Vec<Option<RunningDatad>>,
    /// Where each data node listened, so a restarted node keeps its address.
    datad_addrs: Vec<Option<SocketAddr>>,
    /// Address data node `i` advertises instead of its own (a test's fault
    /// proxy in front of it), from its next start.
    datad_advertise: Vec<Option<String>>,
    /// Zone of each data node.
    datad_zones: Vec<String>,
    gateways: Vec<Option<(GatewayHandle, CancellationToken)>>,
    /// The internal certificates (`None` with `insecure_internal`).
    pki: Option<crate::pki_files::DevPki>,
    /// The admin identity the cluster's own calls use (init, waits).
    admin_tls: Option<std::sync::Arc<weft_client::internal_tls::InternalTls>>,
}

/// Addresses a restarted cluster reuses.
#[derive(Clone)]
struct Addrs {
    metad: Vec<Option<SocketAddr>>,
    datad: Vec<Option<SocketAddr>>,
}

impl DevCluster {
    /// Starts every part and waits until the gateway sees every data node.
    pub async fn start(mut cfg: DevClusterConfig) -> Result<Self, DevClusterError> {
        if cfg.cold_nodes > 0 {
            cfg.zone_labels
                .entry(cfg.cold_zone.clone())
                .or_insert_with(|| {
                    [("tier", "cold"), ("region", "west")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                });
        }
        let credentials = match &cfg.credentials {
            Some(c) => c.clone(),
            None => root_credentials(&cfg.data_dir)?,
        };
        let mut metad = vec![None; cfg.metad_voters.max(1)];
        metad[0] = Some(cfg.metad_listen);
        let addrs = Addrs {
            metad,
            datad: vec![None; cfg.datad_count + cfg.cold_nodes],
        };
        Self::launch(cfg, credentials, addrs).await
    }

    async fn launch(
        cfg: DevClusterConfig,
        credentials: Credentials,
        addrs: Addrs,
    ) -> Result<Self, DevClusterError> {
        let voters = cfg.metad_voters.max(1);
        let (pki, admin_tls) = if cfg.insecure_internal {
            tracing::warn!("insecure internal traffic: the dev cluster's parts talk plain HTTP and serve any caller");
            (None, None)
        } else {
            let dir = cfg.data_dir.join("pki");
            let fail = |reason: anyhow::Error| DevClusterError::InternalPki {
                dir: dir.clone(),
                reason,
            };
            let pki = crate::pki_files::DevPki::prepare(&dir).map_err(fail)?;
            let admin = weft_client::internal_tls::InternalTls::load(pki.admin.clone())
                .map_err(|e| fail(e.into()))?;
            (Some(pki), Some(admin))
        };
        let mut c = DevCluster {
            pki,
            admin_tls,
            metad: (0..voters).map(|_| None).collect(),
            metad_addrs: addrs.metad,
            datad: (0..cfg.datad_count + cfg.cold_nodes)
                .map(|_| None)
                .collect(),
            datad_addrs: addrs.datad,
            datad_advertise: Vec::new(),
            datad_zones: (0..cfg.datad_count)
                .map(|i| cfg.zones[i % cfg.zones.len()].clone())
                .chain((0..cfg.cold_nodes).map(|_| cfg.cold_zone.clone()))
                .collect(),
            gateways: (0..if cfg.gateway_per_zone {
                cfg.zones.len()
            } else {
                cfg.gateways
            }
            .max(1))
                .map(|_| None)
                .collect(),
            cfg,
            credentials,
        };
        for i in 0..voters {
            c.start_metad(i).await?;
        }
        if voters > 1 {
            c.init_metad_group().await?;
        }
        c.wait_metad_leader(Duration::from_secs(20)).await?;
        for i in 0..c.datad.len() {
            c.start_datad(i).await?;
        }
        for i in 0..c.gateways.len() {
            c.start_gateway(i).await?;
        }
        c.wait_nodes_up(c.datad.len(), Duration::from_secs(30))
            .await?;
        Ok(c)
    }

    /// Starts (or restarts) metad voter `i` (0-based; raft id `i + 1`).
    pub async fn start_metad(&mut self, i: usize) -> Result<(), DevClusterError> {
        if self.metad[i].is_some() {
            return Err(DevClusterError::AlreadyRunning {
                part: "metad",
                number: i + 1,
            });
        }
        let cancel = CancellationToken::new();
        let cfg = MetadConfig {
            id: (i + 1) as u64,
            listen: self.metad_addrs[i].unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal")),
            data_dir: self.cfg.data_dir.join(if self.metad.len() == 1 {
                "metad".to_string()
            } else {
                format!("metad-{}", i + 1)
            }),
            // A single voter bootstraps itself; a group is initialised once all are up.
            bootstrap: self.metad.len() == 1,
            tls: self.pki.as_ref().map(|p| p.metad.clone()),
            insecure_internal: self.pki.is_none(),
            master_key_file: self.pki.as_ref().map(|p| p.master_key.clone()),
            ..self.cfg.metad.clone()
        };
        let h = weft_metad::start_with_fs(cfg, MetadFs::get(&self.cfg), cancel.clone())
            .await
            .map_err(|source| DevClusterError::StartMetad {
                number: i + 1,
                source: Box::new(source),
            })?;
        self.metad_addrs[i] = Some(h.addr());
        self.metad[i] = Some((h, cancel));
        Ok(())
    }

    /// Stops metad voter `i`: its server closes and raft shuts down, as a
    /// crash looks to its peers (the log is durable at every commit).
    pub async fn stop_metad(&mut self, i: usize) -> Result<(), DevClusterError> {
        let Some((h, c)) = self.metad[i].take() else {
            return Err(DevClusterError::NotRunning {
                part: "metad",
                number: i + 1,
            });
        };
        c.cancel();
        h.stopped().await;
        Ok(())
    }

    async fn init_metad_group(&self) -> Result<(), DevClusterError> {
        let members: std::collections::BTreeMap<u64, String> = self
            .metad_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| ((i + 1) as u64, a.expect("started above").to_string()))
            .collect();
        let url = self.internal_url(self.metad_addrs[0].expect("started above"), "/v1/init");
        let resp = self
            .internal_http()
            .post(&url)
            .json(&serde_json::json!({ "members": members }))
            .send()
            .await
            .map_err(DevClusterError::InitUnreachable)?;
        // 409 means it was initialised before (a restart): fine.
        if !resp.status().is_success() && resp.status() != reqwest::StatusCode::CONFLICT {
            return Err(DevClusterError::InitRefused {
                status: resp.status(),
                body: resp.text().await.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Waits until some running voter reports a leader.
    pub async fn wait_metad_leader(&self, timeout: Duration) -> Result<u64, DevClusterError> {
        let start = Instant::now();
        loop {
            for (h, _) in self.metad.iter().flatten() {
                if let Some(l) = h.raft().metrics().borrow().current_leader {
                    if self.metad[(l - 1) as usize].is_some() {
                        return Ok(l);
                    }
                }
            }
            if start.elapsed() > timeout {
                return Err(DevClusterError::NoLeader { timeout });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Index of the running voter that believes it is leader, if any.
    pub fn metad_leader(&self) -> Option<usize> {
        self.metad.iter().enumerate().find_map(|(i, m)| {
            let (h, _) = m.as_ref()?;
            let m = h.raft().metrics().borrow().clone();
            (m.current_leader == Some((i + 1) as u64)).then_some(i)
        })
    }

    /// Starts one more metad (raft id = slot + 1), empty and uninitialised,
    /// ready to be added with `POST /v1/members/add`. Returns its slot.
    pub async fn spawn_extra_metad(&mut self) -> Result<usize, DevClusterError> {
        let i = self.metad.len();
        self.metad.push(None);
        self.metad_addrs.push(None);
        let cancel = CancellationToken::new();
        let cfg = MetadConfig {
            id: (i + 1) as u64,
            listen: "127.0.0.1:0".parse().expect("literal"),
            data_dir: self.cfg.data_dir.join(format!("metad-{}", i + 1)),
            bootstrap: false,
            tls: self.pki.as_ref().map(|p| p.metad.clone()),
            insecure_internal: self.pki.is_none(),
            master_key_file: self.pki.as_ref().map(|p| p.master_key.clone()),
            ..self.cfg.metad.clone()
        };
        let h = weft_metad::start_with_fs(cfg, MetadFs::get(&self.cfg), cancel.clone())
            .await
            .map_err(|source| DevClusterError::StartMetad {
                number: i + 1,
                source: Box::new(source),
            })?;
        self.metad_addrs[i] = Some(h.addr());
        self.metad[i] = Some((h, cancel));
        Ok(i)
    }

    /// Resolves when any metad running now reaches a fatal state (its raft
    /// core stopped for good), with which one; pending while all run. `weft
    /// dev` exits on it rather than serve 503s forever.
    pub fn metad_fatal(
        &self,
    ) -> impl std::future::Future<Output = weft_metad::RaftFatal> + Send + 'static {
        let watches: Vec<_> = self
            .metad
            .iter()
            .flatten()
            .map(|(h, _)| Box::pin(h.fatal()))
            .collect();
        async move {
            if watches.is_empty() {
                return std::future::pending().await;
            }
            futures::future::select_all(watches).await.0
        }
    }

    /// Raft handle of voter `i`, if running.
    pub fn metad_raft(&self, i: usize) -> Option<&weft_metad::Raft> {
        self.metad[i].as_ref().map(|(h, _)| h.raft())
    }

    /// Addresses of every metad voter.
    pub fn metad_addrs(&self) -> Vec<String> {
        self.metad_addrs
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect()
    }

    /// Directory of data node `i`.
    pub fn datad_dir(&self, i: usize) -> PathBuf {
        self.cfg.data_dir.join(format!("datad-{}", i + 1))
    }

    /// Starts (or restarts) data node `i` (0-based; node id `i + 1`).
    pub async fn start_datad(&mut self, i: usize) -> Result<(), DevClusterError> {
        if self.datad[i].is_some() {
            return Err(DevClusterError::AlreadyRunning {
                part: "data node",
                number: i + 1,
            });
        }
        let cancel = CancellationToken::new();
        let tls =
            match &self.pki {
                Some(p) => Some(p.datad((i + 1) as u64).map_err(|reason| {
                    DevClusterError::InternalPki {
                        dir: p.dir.clone(),
                        reason,
                    }
                })?),
                None => None,
            };
        let cfg = DatadConfig {
            node_id: (i + 1) as u64,
            zone: self.datad_zones[i].clone(),
            listen: self.datad_addrs[i].unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal")),
            advertise: self.datad_advertise.get(i).cloned().flatten(),
            data_dir: self.datad_dir(i),
            capacity_bytes: self
                .cfg
                .datad_capacity_of
                .get(&i)
                .copied()
                .unwrap_or(self.cfg.datad_capacity_bytes),
            metad: self.metad_addrs(),
            tls,
            insecure_internal: self.pki.is_none(),
            // The zone's labels over those every node gets.
            labels: {
                let mut l = self.cfg.datad.labels.clone();
                if let Some(zone) = self.cfg.zone_labels.get(&self.datad_zones[i]) {
                    l.extend(zone.clone());
                }
                l
            },
            // The emulated WAN costs data nodes' copies between zones too
            // (repair, transitions, warm).
            wan: if self.cfg.wan.is_active() {
                self.cfg.wan
            } else {
                self.cfg.datad.wan
            },
            ..self.cfg.datad.clone()
        };
        let handle = weft_datad::node::start(cfg, cancel.clone())
            .await
            .map_err(|source| DevClusterError::StartDatad {
                number: i + 1,
                source,
            })?;
        self.datad_addrs[i] = Some(handle.addr());
        self.datad[i] = Some(RunningDatad { handle, cancel });
        Ok(())
    }

    /// Makes data node `i` advertise `addr` (e.g. a fault-injecting proxy in
    /// front of its real address) from its next start; `None` restores its
    /// own address.
    pub fn set_datad_advertise(&mut self, i: usize, addr: Option<String>) {
        if self.datad_advertise.len() <= i {
            self.datad_advertise.resize(i + 1, None);
        }
        self.datad_advertise[i] = addr;
    }

    /// Adds a new data node in `zone` (node id: the next unused) and starts
    /// it; returns its index. Rebalancing moves shards onto it over time.
    pub async fn add_datad(&mut self, zone: &str) -> Result<usize, DevClusterError> {
        self.datad.push(None);
        self.datad_addrs.push(None);
        self.datad_zones.push(zone.to_string());
        let i = self.datad.len() - 1;
        self.start_datad(i).await?;
        Ok(i)
    }

    /// Where data node `i` listens, if it is running.
    pub fn datad_addr(&self, i: usize) -> Option<SocketAddr> {
        self.datad[i].as_ref().map(|d| d.handle.addr())
    }

    /// Number of data node slots (running or stopped).
    pub fn datad_count(&self) -> usize {
        self.datad.len()
    }

    /// The shard store of a running data node (for tests that inspect or
    /// damage files).
    pub fn datad_store(
        &self,
        i: usize,
    ) -> Option<std::sync::Arc<weft_datad::shard_store::ShardStore>> {
        self.datad[i].as_ref().map(|d| d.handle.store())
    }

    /// Stops data node `i` as a crash would look to its peers: its server
    /// closes and it stops heartbeating.
    pub async fn stop_datad(&mut self, i: usize) -> Result<(), DevClusterError> {
        let Some(d) = self.datad[i].take() else {
            return Err(DevClusterError::NotRunning {
                part: "data node",
                number: i + 1,
            });
        };
        d.cancel.cancel();
        d.handle.stopped().await;
        Ok(())
    }

    async fn start_gateway(&mut self, i: usize) -> Result<(), DevClusterError> {
        let cancel = CancellationToken::new();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let cfg = GatewayConfig {
            listen: if i == 0 { self.cfg.s3_listen } else { any },
            admin_listen: if i == 0 { self.cfg.admin_listen } else { any },
            metad: self.metad_addrs(),
            region: self.cfg.region.clone(),
            root_access_key: Some(self.credentials.access_key.clone()),
            root_secret_key: Some(self.credentials.secret_key.clone()),
            tls: self.pki.as_ref().map(|p| p.gateway.clone()),
            insecure_internal: self.pki.is_none(),
            zone: self
                .gateway_zone(i)
                .or_else(|| self.cfg.gateway.zone.clone()),
            wan: if self.cfg.wan.is_active() {
                self.cfg.wan
            } else {
                self.cfg.gateway.wan
            },
            ..self.cfg.gateway.clone()
        };
        let mut cfg = cfg;
        if self.cfg.tls && i == 0 {
            let (cert, key) = self_signed_cert(&self.cfg.data_dir.join("tls"))?;
            cfg.tls_cert = Some(cert);
            cfg.tls_key = Some(key);
        }
        let h = weft_gateway::start(cfg, cancel.clone())
            .await
            .map_err(DevClusterError::StartGateway)?;
        if i == 0 {
            self.cfg.s3_listen = h.s3_addr();
            self.cfg.admin_listen = h.admin_addr();
        }
        self.gateways[i] = Some((h, cancel));
        Ok(())
    }

    /// The zone gateway `i` runs in: zone `i` with one gateway per zone;
    /// otherwise the first zone when a WAN is emulated (a WAN needs a
    /// zone to cost hops from), else none.
    pub fn gateway_zone(&self, i: usize) -> Option<String> {
        if self.cfg.gateway_per_zone {
            self.cfg.zones.get(i).cloned()
        } else if self.cfg.wan.is_active() {
            self.cfg.zones.first().cloned()
        } else {
            None
        }
    }

    /// Gateway `i`'s emulated-WAN controls.
    pub fn gateway_wan(&self, i: usize) -> Option<&weft_client::wan::WanHandle> {
        self.gateways.get(i)?.as_ref().map(|(g, _)| g.wan())
    }

    /// How many gateways run.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// `http://host:port` of gateway `i`'s admin API.
    pub fn admin_endpoint_of(&self, i: usize) -> Option<String> {
        let scheme = if self.admin_tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.gateways[i]
            .as_ref()
            .map(|(g, _)| format!("{scheme}://{}", g.admin_addr()))
    }

    /// `http(s)://host:port` of gateway `i`'s S3 endpoint (only the first
    /// gateway serves TLS when `tls` is on).
    pub fn s3_endpoint_of(&self, i: usize) -> Option<String> {
        let scheme = if self.cfg.tls && i == 0 {
            "https"
        } else {
            "http"
        };
        self.gateways[i]
            .as_ref()
            .map(|(g, _)| format!("{scheme}://{}", g.s3_addr()))
    }

    /// Waits until metad and the gateway both see `n` data nodes up.
    pub async fn wait_nodes_up(&self, n: usize, timeout: Duration) -> Result<(), DevClusterError> {
        let metad = self.metad_client();
        let start = Instant::now();
        loop {
            let metad_up = match metad.query(&Query::Nodes).await {
                Ok(QueryResult::Nodes { nodes, .. }) => {
                    nodes.iter().filter(|n| n.state == NodeState::Up).count()
                }
                _ => 0,
            };
            let gw_up = self
                .gateways
                .iter()
                .flatten()
                .map(|(g, _)| g.nodes_up())
                .min()
                .unwrap_or(0);
            if metad_up == n && gw_up == n {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(DevClusterError::NodesNotUp {
                    timeout,
                    wanted: n,
                    metad_up,
                    gateway_up: gw_up,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Space state of data node `node` in the first gateway's cluster map.
    pub fn gateway_node_space(&self, node: u64) -> Option<weft_common::space::SpaceState> {
        self.gateways
            .first()
            .and_then(|g| g.as_ref())
            .and_then(|(g, _)| g.node_space(weft_common::NodeId(node)))
    }

    /// Whether the first gateway's cluster map says metad is in space-low
    /// mode.
    pub fn gateway_sees_metad_space_low(&self) -> bool {
        self.gateways
            .first()
            .and_then(|g| g.as_ref())
            .is_some_and(|(g, _)| g.metad_space_low())
    }

    /// `http://host:port` of the S3 endpoint.
    pub fn s3_endpoint(&self) -> String {
        let scheme = if self.cfg.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.cfg.s3_listen)
    }

    /// The certificate clients should trust when `tls` is on.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.cfg
            .tls
            .then(|| self.cfg.data_dir.join("tls").join("cert.pem"))
    }

    /// The internal certificates, unless the cluster runs with
    /// `insecure_internal`.
    pub fn pki(&self) -> Option<&crate::pki_files::DevPki> {
        self.pki.as_ref()
    }

    /// A client for the internal endpoints (metad's, the data nodes'):
    /// mutual TLS with the admin certificate, or plain HTTP with
    /// `insecure_internal`. Use it with [`internal_url`](Self::internal_url).
    pub fn internal_http(&self) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        match &self.admin_tls {
            Some(tls) => builder.use_preconfigured_tls(tls.client_config()),
            None => builder,
        }
        .build()
        .expect("static client settings")
    }

    /// A metad client with the admin certificate (plain HTTP with
    /// `insecure_internal`).
    pub fn metad_client(&self) -> MetadClient {
        MetadClient::with_tls(self.metad_addrs(), self.admin_tls.as_ref())
    }

    /// A data-node client with the gateways' certificate (the role that
    /// reads and writes shards), or plain HTTP with `insecure_internal`.
    pub fn datad_client(&self) -> Result<weft_client::DatadClient, DevClusterError> {
        let tls = match &self.pki {
            Some(pki) => Some(
                weft_client::internal_tls::InternalTls::load(pki.gateway.clone()).map_err(|e| {
                    DevClusterError::InternalPki {
                        dir: self.cfg.data_dir.join("pki"),
                        reason: e.into(),
                    }
                })?,
            ),
            None => None,
        };
        Ok(weft_client::DatadClient::with_limits_tls(
            weft_client::DatadClientLimits::default(),
            tls.as_ref(),
        ))
    }

    /// `https://addr/path` (`http://` with `insecure_internal`).
    pub fn internal_url(&self, addr: impl std::fmt::Display, path: &str) -> String {
        let scheme = if self.admin_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}{path}")
    }

    /// An admin API client with the root key and, over mutual TLS, the
    /// admin certificate.
    pub fn admin_client(&self) -> crate::admin_client::AdminClient {
        crate::admin_client::AdminClient::new(
            &self.admin_endpoint(),
            &self.credentials.access_key,
            &self.credentials.secret_key,
        )
        .with_tls(self.admin_tls.as_ref())
    }

    /// `https://host:port` of the admin API (`http://` with
    /// `insecure_internal`).
    pub fn admin_endpoint(&self) -> String {
        let scheme = if self.admin_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.cfg.admin_listen)
    }

    /// Root credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The S3 region.
    pub fn region(&self) -> &str {
        &self.cfg.region
    }

    /// The configuration (with the ports actually bound).
    pub fn config(&self) -> &DevClusterConfig {
        &self.cfg
    }

    /// The configuration, to change what a part restarted with
    /// [`start_metad`](Self::start_metad) or
    /// [`start_datad`](Self::start_datad) runs with (a rotated master key,
    /// say).
    pub fn config_mut(&mut self) -> &mut DevClusterConfig {
        &mut self.cfg
    }

    /// Stops everything: gateways first (each stops accepting and lets
    /// requests in flight finish within its shutdown grace), then data
    /// nodes, then metad.
    pub async fn shutdown(mut self) {
        for g in self.gateways.iter_mut() {
            if let Some((g, c)) = g.take() {
                c.cancel();
                g.stopped().await;
            }
        }
        for i in 0..self.datad.len() {
            if self.datad[i].is_some() {
                let _ = self.stop_datad(i).await;
            }
        }
        for i in 0..self.metad.len() {
            if self.metad[i].is_some() {
                let _ = self.stop_metad(i).await;
            }
        }
    }

    /// Stops everything and starts it again on the same directories and
    /// ports, as a whole-cluster restart.
    pub async fn restart(self) -> Result<Self, DevClusterError> {
        let cfg = self.cfg.clone();
        let credentials = self.credentials.clone();
        let addrs = Addrs {
            metad: self.metad_addrs.clone(),
            datad: self.datad_addrs.clone(),
        };
        self.shutdown().await;
        Self::launch(cfg, credentials, addrs).await
    }
}
