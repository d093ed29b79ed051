//! An all-in-one cluster in one process: one metad voter, data nodes spread
//! over zones, one gateway. `weft dev` runs it; the integration tests start
//! it on random loopback ports and stop or restart its parts.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use weft_common::rpc::{Query, QueryResult};
use weft_common::topology::NodeState;
use weft_datad::node::{DatadConfig, DatadHandle};
use weft_gateway::{GatewayConfig, GatewayHandle};
use weft_metad::{MetadClient, MetadConfig, MetadHandle};

/// Root credentials of a dev cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

/// How to lay out a dev cluster.
#[derive(Clone, Debug)]
pub struct DevClusterConfig {
    /// Everything lives under here.
    pub data_dir: PathBuf,
    /// S3 endpoint.
    pub s3_listen: SocketAddr,
    /// Admin API endpoint.
    pub admin_listen: SocketAddr,
    /// metad endpoint.
    pub metad_listen: SocketAddr,
    /// Number of data nodes.
    pub datad_count: usize,
    /// Zone names; nodes are dealt round-robin.
    pub zones: Vec<String>,
    /// S3 region.
    pub region: String,
    /// Root credentials; `None` means from the environment or the data dir.
    pub credentials: Option<Credentials>,
    /// Capacity each data node reports.
    pub datad_capacity_bytes: u64,
    /// Gateway's delay before deleting replaced shards.
    pub delete_delay_ms: u64,
}

impl DevClusterConfig {
    /// Defaults of `weft dev`: 6 nodes in 3 zones, S3 on 127.0.0.1:9000.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DevClusterConfig {
            data_dir: data_dir.into(),
            s3_listen: "127.0.0.1:9000".parse().expect("literal"),
            admin_listen: "127.0.0.1:9001".parse().expect("literal"),
            metad_listen: "127.0.0.1:9010".parse().expect("literal"),
            datad_count: 6,
            zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
            region: "us-east-1".into(),
            credentials: None,
            datad_capacity_bytes: 100 << 30,
            delete_delay_ms: 10_000,
        }
    }

    /// Every listener on a random loopback port: for tests.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        DevClusterConfig {
            s3_listen: any,
            admin_listen: any,
            metad_listen: any,
            delete_delay_ms: 1_000,
            ..Self::new(data_dir)
        }
    }
}

/// Root credentials: from `WEFT_ROOT_ACCESS_KEY`/`WEFT_ROOT_SECRET_KEY` when
/// set, else the ones kept in `data_dir/credentials.json`, else new ones
/// (then saved there, readable by the owner only).
pub fn root_credentials(data_dir: &Path) -> Result<Credentials> {
    if let (Ok(a), Ok(s)) = (
        std::env::var("WEFT_ROOT_ACCESS_KEY"),
        std::env::var("WEFT_ROOT_SECRET_KEY"),
    ) {
        if !a.is_empty() && !s.is_empty() {
            return Ok(Credentials {
                access_key: a,
                secret_key: s,
            });
        }
    }
    let path = data_dir.join("credentials.json");
    match std::fs::read(&path) {
        Ok(b) => {
            return serde_json::from_slice(&b).with_context(|| format!("parse {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    let (access_key, secret_key) = weft_gateway::admin::generate_key_pair();
    let creds = Credentials {
        access_key,
        secret_key,
    };
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&creds)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("save {}", path.display()))?;
    Ok(creds)
}

struct RunningDatad {
    handle: DatadHandle,
    cancel: CancellationToken,
}

/// A running dev cluster.
pub struct DevCluster {
    cfg: DevClusterConfig,
    credentials: Credentials,
    metad: Option<(MetadHandle, CancellationToken)>,
    datad: Vec<Option<RunningDatad>>,
    /// Where each data node listened, so a restarted node keeps its address.
    datad_addrs: Vec<Option<SocketAddr>>,
    gateway: Option<(GatewayHandle, CancellationToken)>,
}

impl DevCluster {
    /// Starts every part and waits until the gateway sees every data node.
    pub async fn start(cfg: DevClusterConfig) -> Result<Self> {
        let credentials = match &cfg.credentials {
            Some(c) => c.clone(),
            None => root_credentials(&cfg.data_dir)?,
        };
        let addrs = vec![None; cfg.datad_count];
        Self::launch(cfg, credentials, addrs).await
    }

    async fn launch(
        cfg: DevClusterConfig,
        credentials: Credentials,
        datad_addrs: Vec<Option<SocketAddr>>,
    ) -> Result<Self> {
        let mut c = DevCluster {
            datad: (0..cfg.datad_count).map(|_| None).collect(),
            datad_addrs,
            cfg,
            credentials,
            metad: None,
            gateway: None,
        };
        c.start_metad().await?;
        for i in 0..c.cfg.datad_count {
            c.start_datad(i).await?;
        }
        c.start_gateway().await?;
        c.wait_nodes_up(c.cfg.datad_count, Duration::from_secs(30))
            .await?;
        Ok(c)
    }

    async fn start_metad(&mut self) -> Result<()> {
        let cancel = CancellationToken::new();
        let cfg = MetadConfig {
            id: 1,
            listen: self.cfg.metad_listen,
            data_dir: self.cfg.data_dir.join("metad"),
            bootstrap: true,
            ..Default::default()
        };
        let h = weft_metad::start(cfg, cancel.clone())
            .await
            .context("start metad")?;
        h.wait_for_leader(Duration::from_secs(10))
            .await
            .context("metad leader election")?;
        // Later restarts must find metad where the data nodes expect it.
        self.cfg.metad_listen = h.addr();
        self.metad = Some((h, cancel));
        Ok(())
    }

    fn metad_addr(&self) -> String {
        self.cfg.metad_listen.to_string()
    }

    /// Directory of data node `i`.
    pub fn datad_dir(&self, i: usize) -> PathBuf {
        self.cfg.data_dir.join(format!("datad-{}", i + 1))
    }

    /// Starts (or restarts) data node `i` (0-based; node id `i + 1`).
    pub async fn start_datad(&mut self, i: usize) -> Result<()> {
        if self.datad[i].is_some() {
            bail!("data node {} is already running", i + 1);
        }
        let cancel = CancellationToken::new();
        let cfg = DatadConfig {
            node_id: (i + 1) as u64,
            zone: self.cfg.zones[i % self.cfg.zones.len()].clone(),
            listen: self.datad_addrs[i].unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal")),
            advertise: None,
            data_dir: self.datad_dir(i),
            capacity_bytes: self.cfg.datad_capacity_bytes,
            metad: vec![self.metad_addr()],
            heartbeat_interval_ms: 500,
        };
        let handle = weft_datad::node::start(cfg, cancel.clone())
            .await
            .with_context(|| format!("start data node {}", i + 1))?;
        self.datad_addrs[i] = Some(handle.addr());
        self.datad[i] = Some(RunningDatad { handle, cancel });
        Ok(())
    }

    /// Stops data node `i` as a crash would look to its peers: its server
    /// closes and it stops heartbeating.
    pub async fn stop_datad(&mut self, i: usize) -> Result<()> {
        let Some(d) = self.datad[i].take() else {
            bail!("data node {} is not running", i + 1);
        };
        d.cancel.cancel();
        d.handle.stopped().await;
        Ok(())
    }

    async fn start_gateway(&mut self) -> Result<()> {
        let cancel = CancellationToken::new();
        let cfg = GatewayConfig {
            listen: self.cfg.s3_listen,
            admin_listen: self.cfg.admin_listen,
            metad: vec![self.metad_addr()],
            region: self.cfg.region.clone(),
            root_access_key: Some(self.credentials.access_key.clone()),
            root_secret_key: Some(self.credentials.secret_key.clone()),
            delete_delay_ms: self.cfg.delete_delay_ms,
            ..Default::default()
        };
        let h = weft_gateway::start(cfg, cancel.clone())
            .await
            .context("start gateway")?;
        self.cfg.s3_listen = h.s3_addr();
        self.cfg.admin_listen = h.admin_addr();
        self.gateway = Some((h, cancel));
        Ok(())
    }

    /// Waits until metad and the gateway both see `n` data nodes up.
    pub async fn wait_nodes_up(&self, n: usize, timeout: Duration) -> Result<()> {
        let metad = MetadClient::new(vec![self.metad_addr()]);
        let start = Instant::now();
        loop {
            let metad_up = match metad.query(&Query::Nodes).await {
                Ok(QueryResult::Nodes { nodes }) => {
                    nodes.iter().filter(|n| n.state == NodeState::Up).count()
                }
                _ => 0,
            };
            let gw_up = self
                .gateway
                .as_ref()
                .map(|(g, _)| g.nodes_up())
                .unwrap_or(0);
            if metad_up == n && gw_up == n {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("waited {timeout:?} for {n} data nodes up: metad sees {metad_up}, gateway sees {gw_up}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://host:port` of the S3 endpoint.
    pub fn s3_endpoint(&self) -> String {
        format!("http://{}", self.cfg.s3_listen)
    }

    /// `http://host:port` of the admin API.
    pub fn admin_endpoint(&self) -> String {
        format!("http://{}", self.cfg.admin_listen)
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

    /// Stops everything: gateway first (no new requests), then data nodes,
    /// then metad.
    pub async fn shutdown(mut self) {
        if let Some((g, c)) = self.gateway.take() {
            c.cancel();
            g.stopped().await;
        }
        for i in 0..self.datad.len() {
            if self.datad[i].is_some() {
                let _ = self.stop_datad(i).await;
            }
        }
        if let Some((m, c)) = self.metad.take() {
            c.cancel();
            m.stopped().await;
        }
    }

    /// Stops everything and starts it again on the same directories and
    /// ports, as a whole-cluster restart.
    pub async fn restart(self) -> Result<Self> {
        let cfg = self.cfg.clone();
        let credentials = self.credentials.clone();
        let addrs = self.datad_addrs.clone();
        self.shutdown().await;
        Self::launch(cfg, credentials, addrs).await
    }
}
