//! The datad daemon: configuration, [`start`], shutdown by cancellation.
//!
//! [`start`] opens the store, binds and serves, then returns; a background
//! task registers the node with metad and then heartbeats every
//! `heartbeat_interval_ms` (`metad_link`). Neither registration nor
//! heartbeat failures are fatal: a datad keeps serving shards while metad is
//! away. Cancelling the
//! token stops the server (gracefully) and the background task;
//! [`DatadHandle::stopped`] waits for both.

use crate::error::ShardError;
use crate::server;
use crate::shard_store::ShardStore;
use crate::space::SpaceMonitor;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_common::config_check::{self, ConfigError};
use weft_common::durable_file::{self, Access, FsError};
use weft_common::topology::NodeInfo;
use weft_common::NodeId;

pub use crate::limits::METAD_CALL_TIMEOUT_MS;
pub use crate::limits::METAD_REDIRECTS_MAX;
pub use crate::limits::METAD_WARN_INTERVAL_MS;
pub use crate::limits::REGISTER_BACKOFF_MS_MAX;
pub use crate::limits::REGISTER_BACKOFF_MS_MIN;
/// File in the data directory recording the node id it belongs to.
pub const NODE_ID_FILE: &str = "node_id";

/// Configuration of one datad, loadable from TOML. Missing fields take the
/// defaults of [`DatadConfig::default`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatadConfig {
    /// This node's id, never reused. 0 means: use the id recorded in the data
    /// directory, or mint a random one on first start. A nonzero id must match
    /// the recorded one (a data directory belongs to one node).
    pub node_id: u64,
    /// Failure domain.
    pub zone: String,
    /// What this node's zone is, e.g. `labels = { tier = "cold", region =
    /// "west" }`: what storage classes select zones by. Nodes of one zone
    /// should carry the same labels.
    pub labels: weft_common::topology::Labels,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `host:port` other processes use to reach this node; default: the bound
    /// address (set it when listening on 0.0.0.0).
    pub advertise: Option<String>,
    /// Data directory (shard files, temp files, node id).
    pub data_dir: PathBuf,
    /// Bytes this node may fill; PUTs beyond it are refused with 507.
    pub capacity_bytes: u64,
    /// Past this fullness (the larger of shard bytes over `capacity_bytes`
    /// and the data filesystem's used fraction) the node is `nearfull`:
    /// placement gives it fewer new shards. Above 0, below `full_ratio`.
    pub nearfull_ratio: f64,
    /// Past this fullness the node is `full`: it refuses new shards (507)
    /// and placement skips it until deletes free space. At most 1.
    pub full_ratio: f64,
    /// metad HTTP addresses (`host:port`), tried in turn.
    pub metad: Vec<String>,
    /// Interval between heartbeats to metad.
    pub heartbeat_interval_ms: u64,
    /// Interval between polls for repair work.
    pub repair_poll_ms: u64,
    /// A scrub pass (every shard file read and verified) starts this often.
    pub scrub_period_ms: u64,
    /// Bytes per second the scrubber reads.
    pub scrub_rate_bytes_per_sec: u64,
    /// Interval between garbage-collection passes.
    pub gc_interval_ms: u64,
    /// No longer read here: metad owns `gc_grace_ms` (with the gateways'
    /// `upload_max_age_ms`, so the two are checked together). Present only
    /// so an old config gets a message saying where it moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc_grace_ms: Option<u64>,
    /// A released shard read within this long is kept until reads stop
    /// (readers renew the lease with every read; see `release`).
    pub release_quiet_ms: u64,
    /// The longest a released shard is kept for its readers.
    pub release_hold_max_ms: u64,
    /// Most released shards waiting for their readers; beyond it they are
    /// left to garbage collection.
    pub release_deferred_max: usize,
    /// Mutual TLS on the shard API and on this node's calls to metad and
    /// other data nodes (`tls = { cert, key, ca }`, from `weft cert issue
    /// --role datad`). Without it the node serves plain HTTP to anyone who
    /// reaches its port, which `weft datad` allows only with
    /// `insecure_internal`.
    pub tls: Option<weft_client::internal_tls::TlsFiles>,
    /// Plain HTTP on purpose (a test bench on one host).
    pub insecure_internal: bool,
    /// An emulated WAN on this node's requests to data nodes of other
    /// zones (repair, transition and warm copies): `wan = { latency_ms =
    /// 20, bandwidth_bytes_per_s = 209715200 }`. For one-machine clusters
    /// (`weft dev --zone-latency`, the docker locality run); off by default.
    pub wan: weft_client::wan::WanSettings,
    /// How often the node probes its peers and reports the round trips and
    /// throughput it measured to metad (the network cost map).
    pub netmap_period_ms: u64,
    /// A token `/metrics` then asks of callers without a cluster
    /// certificate (`Authorization: Bearer TOKEN`, Prometheus'
    /// `bearer_token`); `WEFT_METRICS_TOKEN` sets it too. Health stays open.
    pub metrics_token: Option<String>,
}

impl Default for DatadConfig {
    fn default() -> Self {
        DatadConfig {
            node_id: 0,
            zone: "default".into(),
            labels: Default::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7100)),
            advertise: None,
            data_dir: PathBuf::from("data/datad"),
            capacity_bytes: 100 * 1024 * 1024 * 1024,
            nearfull_ratio: weft_common::space::NEARFULL_RATIO_DEFAULT,
            full_ratio: weft_common::space::FULL_RATIO_DEFAULT,
            metad: vec!["127.0.0.1:7000".into()],
            heartbeat_interval_ms: 1_000,
            repair_poll_ms: 2_000,
            scrub_period_ms: 7 * 24 * 3600 * 1000,
            scrub_rate_bytes_per_sec: 32 << 20,
            gc_interval_ms: 10 * 60 * 1000,
            gc_grace_ms: None,
            release_quiet_ms: 30_000,
            release_hold_max_ms: 15 * 60 * 1000,
            release_deferred_max: 100_000,
            tls: None,
            metrics_token: None,
            insecure_internal: false,
            wan: Default::default(),
            netmap_period_ms: 5_000,
        }
    }
}

impl DatadConfig {
    /// The releaser's settings.
    pub fn release_limits(&self) -> crate::release::ReleaseLimits {
        crate::release::ReleaseLimits {
            quiet: Duration::from_millis(self.release_quiet_ms),
            hold_max: Duration::from_millis(self.release_hold_max_ms),
            deferred_max: self.release_deferred_max,
            recent_max: RECENT_READS_MAX,
        }
    }

    /// Refuses settings that cannot work, naming the setting and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gc_grace_ms.is_some() {
            return Err(ConfigError::new(
                "gc_grace_ms",
                "moved to metad's config (beside upload_max_age_ms, which it must cover twice); remove it here and set it on every metad voter",
            ));
        }
        if self.zone.is_empty() {
            return Err(ConfigError::new(
                "zone",
                "empty; name the failure domain this node is in, e.g. \"rack-1\"",
            ));
        }
        weft_common::topology::check_labels(&self.labels)
            .map_err(|why| ConfigError::new("labels", why))?;
        config_check::positive("heartbeat_interval_ms", self.heartbeat_interval_ms, "1000")?;
        config_check::positive("capacity_bytes", self.capacity_bytes, "107374182400")?;
        config_check::positive("gc_interval_ms", self.gc_interval_ms, "600000")?;
        config_check::positive(
            "scrub_rate_bytes_per_sec",
            self.scrub_rate_bytes_per_sec,
            "33554432",
        )?;
        config_check::positive("release_quiet_ms", self.release_quiet_ms, "30000")?;
        config_check::positive("netmap_period_ms", self.netmap_period_ms, "5000")?;
        config_check::writable_dir("data_dir", &self.data_dir)
    }
}

pub use crate::limits::RECENT_READS_MAX;

/// Why a datad could not start.
#[derive(Debug, thiserror::Error)]
pub enum DatadError {
    /// A configuration value is unusable.
    #[error("invalid config: {0}")]
    Config(String),
    /// The internal TLS files are unusable.
    #[error("internal TLS: {0}")]
    Tls(weft_client::pki::PkiError),
    /// A setting that cannot work, found before anything started.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] ConfigError),
    /// The data directory belongs to another node.
    #[error("data directory {} belongs to node {recorded}, not {configured}", path.display())]
    NodeIdMismatch {
        /// The node id file.
        path: PathBuf,
        /// Id in the file.
        recorded: u64,
        /// Id in the config.
        configured: u64,
    },
    /// Reading or recording the node id failed.
    #[error("record node id")]
    NodeId(#[source] FsError),
    /// The shard store did not open.
    #[error("open shard store")]
    Store(#[source] ShardError),
    /// The listen address could not be bound.
    #[error("bind {addr}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running datad.
pub struct DatadHandle {
    addr: SocketAddr,
    node_id: NodeId,
    store: Arc<ShardStore>,
    tasks: Vec<JoinHandle<()>>,
}

impl DatadHandle {
    /// The bound address (the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The shard store it serves.
    pub fn store(&self) -> Arc<ShardStore> {
        self.store.clone()
    }

    /// Waits until the server and background tasks have exited (after the
    /// cancel token given to [`start`] fired).
    pub async fn stopped(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "datad task panicked");
            }
        }
    }
}

/// Starts a datad: opens the store, binds `cfg.listen`, serves, and registers
/// and heartbeats with metad in the background. Returns once serving.
pub async fn start(cfg: DatadConfig, cancel: CancellationToken) -> Result<DatadHandle, DatadError> {
    start_on(cfg, None, cancel).await.map(|(handle, _)| handle)
}

/// Starts a datad without a socket (the simulator): it answers on the
/// returned router, which the simulated network calls, and reaches metad
/// and other datads through `transport`. `cfg.listen` is the address the
/// cluster knows it by.
pub async fn start_in_process(
    cfg: DatadConfig,
    transport: weft_client::SharedTransport,
    cancel: CancellationToken,
) -> Result<(DatadHandle, axum::Router), DatadError> {
    start_on(cfg, Some(transport), cancel).await
}

/// [`start`] on a TCP listener (`transport` `None`), or in process.
async fn start_on(
    cfg: DatadConfig,
    transport: Option<weft_client::SharedTransport>,
    cancel: CancellationToken,
) -> Result<(DatadHandle, axum::Router), DatadError> {
    cfg.validate()?;
    let thresholds = weft_common::space::SpaceThresholds::new(cfg.nearfull_ratio, cfg.full_ratio)
        .map_err(DatadError::Config)?;
    let store = Arc::new(
        ShardStore::open(&cfg.data_dir)
            .await
            .map_err(DatadError::Store)?,
    );
    let node_id = {
        let data_dir = cfg.data_dir.clone();
        let configured = cfg.node_id;
        weft_common::effects::spawn_blocking(move || resolve_node_id(&data_dir, configured))
            .await
            .map_err(|e| DatadError::Config(format!("node id task failed: {e}")))??
    };
    let span = tracing::info_span!("datad", node = %node_id, zone = %cfg.zone);
    let listener = match &transport {
        Some(_) => None,
        None => Some(
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| DatadError::Bind {
                    addr: cfg.listen,
                    source,
                })?,
        ),
    };
    let addr = match &listener {
        Some(l) => l.local_addr().map_err(|source| DatadError::Bind {
            addr: cfg.listen,
            source,
        })?,
        None => cfg.listen,
    };
    // In process, every call goes through the given transport; otherwise
    // the metad link has its own client and the background work builds the
    // standard clients (with their connect timeouts and pools).
    let in_process = transport.clone();
    let tls = match &in_process {
        Some(_) => None,
        None => {
            match (cfg.tls.is_some(), cfg.insecure_internal) {
                (false, false) => return Err(DatadError::Config(
                    "no certificate for the internal hops: set tls = { cert, key, ca } (weft cert issue --role datad), or insecure_internal = true to serve plain HTTP on purpose".into(),
                )),
                (true, true) => return Err(DatadError::Config(
                    "insecure_internal is set together with tls; choose one".into(),
                )),
                _ => {}
            }
            weft_client::internal_tls::from_config(cfg.tls.as_ref()).map_err(DatadError::Tls)?
        }
    };
    let transport: weft_client::SharedTransport = match transport {
        Some(t) => t,
        // Only metad is reached through it (other data nodes through the
        // repair worker's own client).
        None => Arc::new(weft_client::Http::with_tls_to(
            || reqwest::Client::builder().tcp_nodelay(true),
            tls.as_ref(),
            weft_client::pki::Role::Metad,
        )),
    };
    let advertise = match &cfg.advertise {
        Some(advertise) => advertise.clone(),
        None => {
            if addr.ip().is_unspecified() {
                span.in_scope(|| {
                    tracing::warn!(%addr, "listening on an unspecified address without `advertise`; other nodes cannot reach this one")
                });
            }
            addr.to_string()
        }
    };
    let space = Arc::new(SpaceMonitor::new(
        store.clone(),
        cfg.capacity_bytes,
        thresholds,
        cfg.data_dir.clone(),
        // In process (the simulator), the machine's free space must not
        // steer the run.
        match &in_process {
            Some(_) => {
                Arc::new(weft_common::space::NeverFull) as Arc<dyn weft_common::space::FsStats>
            }
            None => Arc::new(weft_common::space::Statvfs),
        },
    ));
    {
        let space = space.clone();
        weft_common::effects::spawn_blocking(move || space.refresh())
            .await
            .map_err(|e| DatadError::Config(format!("space check task failed: {e}")))?;
    }
    let work_metrics = crate::work_metrics::WorkMetrics::default();
    let releaser = Arc::new(crate::release::Releaser::new(
        store.clone(),
        cfg.release_limits(),
    ));
    let release_task = releaser.clone().spawn_worker(cancel.clone());
    // Refused callers, reported to metad's audit chain in batches.
    let audit = weft_client::audit_report::Reporter::new();
    let router = weft_client::peer::with_metrics_token(
        server::router_with_metrics(
            store.clone(),
            space.clone(),
            &work_metrics,
            releaser.clone(),
            audit.clone(),
        ),
        cfg.metrics_token.clone(),
    );
    let serve_cancel = cancel.clone();
    let accepted = work_metrics.connections_accepted.clone();
    let served = router.clone();
    let served_tls = tls.clone();
    let served_audit = audit.clone();
    let server_task = tokio::spawn(
        async move {
            match listener {
                Some(listener) => {
                    if let Err(e) = server::serve(
                        listener,
                        served_tls,
                        served,
                        accepted,
                        serve_cancel,
                        served_audit,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "datad server failed");
                    }
                }
                None => serve_cancel.cancelled().await,
            }
        }
        .instrument(span.clone()),
    );
    span.in_scope(
        || tracing::info!(%addr, %advertise, data_dir = %cfg.data_dir.display(), "datad serving"),
    );
    let node = NodeInfo {
        id: node_id,
        zone: cfg.zone.clone(),
        labels: cfg.labels.clone(),
        addr: advertise,
        capacity_bytes: cfg.capacity_bytes,
    };
    let metad_task = tokio::spawn(
        crate::metad_link::metad_loop(
            node.clone(),
            cfg.metad.clone(),
            transport.clone(),
            Duration::from_millis(cfg.heartbeat_interval_ms),
            space.clone(),
            cancel.clone(),
        )
        .instrument(span.clone()),
    );
    let space_task = tokio::spawn(
        crate::space::run(
            space,
            Duration::from_millis(cfg.heartbeat_interval_ms),
            cancel.clone(),
        )
        .instrument(span.clone()),
    );
    let mut tasks = vec![server_task, metad_task, space_task, release_task];
    if !cfg.metad.is_empty() {
        let links = match &in_process {
            Some(t) => Links::InProcess(t),
            None => Links::Network(tls.as_ref()),
        };
        let peers = weft_client::netmap::PeerZones::new(node.addr.clone());
        let paths = weft_client::netmap::PathCosts::default();
        let (metad, datad) = links.clients(&cfg.metad, cfg.wan, &cfg.zone, &peers);
        let datad = datad.measuring(paths.clone(), Arc::new(peers.clone()));
        let metad = metad.with_deadline(Duration::from_secs(10));
        // This node's share of the network cost map (docs/locality.md):
        // probes of its peers, and the throughput of the shards it pulls.
        tasks.push(weft_client::netmap::spawn(
            weft_client::netmap::Reporter {
                round: Duration::from_millis(cfg.netmap_period_ms),
                zone: cfg.zone.clone(),
                reporter: node.addr.clone(),
                peers: Arc::new(peers),
                datad: datad.clone(),
                metad: metad.clone(),
                paths,
                cache_reads: None,
            },
            cancel.clone(),
            span.clone(),
        ));
        tasks.push(tokio::spawn(
            audit
                .run_to_metad(metad.clone(), cancel.clone())
                .instrument(span.clone()),
        ));
        tasks.extend(spawn_background_work(
            &cfg,
            (metad, datad),
            node_id,
            (&store, &releaser),
            &work_metrics,
            &cancel,
            &span,
        ));
    }
    Ok((
        DatadHandle {
            addr,
            node_id,
            store,
            tasks,
        },
        router,
    ))
}

/// Starts repair, scrub and garbage collection.
/// How the background work reaches metad and other data nodes.
enum Links<'a> {
    /// Through the simulator's transport.
    InProcess(&'a weft_client::SharedTransport),
    /// Over sockets, with mutual TLS when an identity is given.
    Network(Option<&'a Arc<weft_client::internal_tls::InternalTls>>),
}

impl Links<'_> {
    /// The clients of metad (at `metad`) and of other data nodes; requests
    /// to data nodes of zones other than `zone` (as `peers` places them)
    /// pay `wan`'s emulated cost when it is active.
    fn clients(
        &self,
        metad: &[String],
        wan: weft_client::wan::WanSettings,
        zone: &str,
        peers: &weft_client::netmap::PeerZones,
    ) -> (weft_client::MetadClient, weft_client::DatadClient) {
        let limits = weft_client::DatadClientLimits::default();
        let (metad, to_datad) = match self {
            Links::InProcess(t) => (
                weft_client::MetadClient::with_transport(metad.to_vec(), (*t).clone()),
                (*t).clone(),
            ),
            Links::Network(tls) => (
                weft_client::MetadClient::with_tls(metad.to_vec(), *tls),
                weft_client::DatadClient::http_transport(limits, *tls),
            ),
        };
        let to_datad = if wan.is_active() {
            weft_client::wan::Wan::wrap(
                to_datad,
                zone,
                Arc::new(peers.clone()),
                wan,
                weft_client::wan::WanHandle::default(),
            )
        } else {
            to_datad
        };
        (
            metad,
            weft_client::DatadClient::with_transport(limits, to_datad),
        )
    }
}

fn spawn_background_work(
    cfg: &DatadConfig,
    (metad, datad): (weft_client::MetadClient, weft_client::DatadClient),
    node: NodeId,
    (store, releaser): (&Arc<ShardStore>, &Arc<crate::release::Releaser>),
    metrics: &crate::work_metrics::WorkMetrics,
    cancel: &CancellationToken,
    span: &tracing::Span,
) -> Vec<tokio::task::JoinHandle<()>> {
    let transition = crate::transition::TransitionContext {
        node,
        metad: metad.clone(),
        datad: datad.clone(),
        throttle: Arc::new(crate::throttle::Throttle::new(
            weft_common::repair::REPAIR_RATE_DEFAULT / 2,
        )),
        metrics: metrics.clone(),
    };
    let repair = crate::repair::RepairContext {
        node,
        store: store.clone(),
        metad: metad.clone(),
        datad,
        throttle: Arc::new(crate::throttle::Throttle::new(
            weft_common::repair::REPAIR_RATE_DEFAULT,
        )),
        metrics: metrics.clone(),
    };
    let scrub = crate::scrub::ScrubConfig {
        period: Duration::from_millis(cfg.scrub_period_ms.max(1)),
        rate_bytes_per_sec: cfg.scrub_rate_bytes_per_sec.max(1),
    };
    let gc = crate::gc::GcConfig {
        interval: Duration::from_millis(cfg.gc_interval_ms.max(1)),
    };
    vec![
        tokio::spawn(
            crate::transition::run(
                transition,
                Duration::from_millis(cfg.repair_poll_ms.max(10)),
                cancel.clone(),
            )
            .instrument(span.clone()),
        ),
        tokio::spawn(
            crate::repair::run(
                repair,
                Duration::from_millis(cfg.repair_poll_ms.max(10)),
                cancel.clone(),
            )
            .instrument(span.clone()),
        ),
        tokio::spawn(
            crate::scrub::run(
                node,
                store.clone(),
                metad.clone(),
                metrics.clone(),
                scrub,
                cancel.clone(),
            )
            .instrument(span.clone()),
        ),
        tokio::spawn(
            crate::gc::run(
                node,
                store.clone(),
                metad,
                metrics.clone(),
                gc,
                releaser.clone(),
                cancel.clone(),
            )
            .instrument(span.clone()),
        ),
    ]
}

/// Reads the id recorded in the data directory, or records the configured
/// one (or a fresh random one when 0) durably.
fn resolve_node_id(data_dir: &Path, configured: u64) -> Result<NodeId, DatadError> {
    let path = data_dir.join(NODE_ID_FILE);
    // Called once at start, after the shard store opened: temp files beside
    // the id file are left by a crashed write of it.
    durable_file::remove_stale_temps(&path).map_err(DatadError::NodeId)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let recorded: u64 = text.trim().parse().map_err(|_| {
                DatadError::Config(format!("{} does not hold a node id", path.display()))
            })?;
            if configured != 0 && configured != recorded {
                return Err(DatadError::NodeIdMismatch {
                    path,
                    recorded,
                    configured,
                });
            }
            Ok(NodeId(recorded))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = if configured != 0 {
                configured
            } else {
                weft_common::effects::random::<u64>().max(1)
            };
            durable_file::write_file(&path, format!("{id}\n").as_bytes(), Access::Default)
                .map_err(DatadError::NodeId)?;
            Ok(NodeId(id))
        }
        Err(e) => Err(DatadError::NodeId(FsError::new(
            "read node id file",
            &path,
            e,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_fill_missing_fields() {
        let cfg: DatadConfig = serde_json::from_str(r#"{"node_id": 3, "zone": "west"}"#).unwrap();
        assert_eq!(cfg.node_id, 3);
        assert_eq!(cfg.zone, "west");
        assert_eq!(cfg.heartbeat_interval_ms, 1_000);
        assert!(serde_json::from_str::<DatadConfig>(r#"{"nodeid": 3}"#).is_err());
        assert_eq!(cfg.nearfull_ratio, 0.85);
        assert_eq!(cfg.full_ratio, 0.95);
    }

    /// Secure by default: no certificate and no `insecure_internal` is no
    /// start; both at once is a contradiction.
    #[tokio::test]
    async fn a_node_without_a_certificate_starts_only_when_told_to_be_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |insecure: bool, tls: bool| DatadConfig {
            data_dir: dir.path().to_path_buf(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            metad: vec![],
            insecure_internal: insecure,
            tls: tls.then(|| weft_client::internal_tls::TlsFiles {
                cert: "c.pem".into(),
                key: "c.key".into(),
                ca: "ca.pem".into(),
            }),
            ..DatadConfig::default()
        };
        for (insecure, tls, want) in [(false, false, "no certificate"), (true, true, "choose one")]
        {
            match start(cfg(insecure, tls), CancellationToken::new()).await {
                Ok(_) => panic!("started with insecure={insecure} tls={tls}"),
                Err(e) => assert!(e.to_string().contains(want), "{e}"),
            }
        }
        let cancel = CancellationToken::new();
        let h = start(cfg(true, false), cancel.clone())
            .await
            .expect("insecure on purpose");
        cancel.cancel();
        h.stopped().await;
    }

    #[tokio::test]
    async fn bad_ratios_are_refused_at_start_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        for (nearfull, full, setting) in [
            (0.0, 0.95, "nearfull_ratio"),
            (0.85, 1.2, "full_ratio"),
            (0.96, 0.95, "must be below full_ratio"),
        ] {
            let cfg = DatadConfig {
                data_dir: dir.path().to_path_buf(),
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                metad: vec![],
                nearfull_ratio: nearfull,
                full_ratio: full,
                ..DatadConfig::default()
            };
            let err = match start(cfg, CancellationToken::new()).await {
                Ok(_) => panic!("ratios {nearfull}/{full} were accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.starts_with("invalid config") && err.contains(setting),
                "{err}"
            );
        }
    }

    fn cfg(dir: &Path) -> DatadConfig {
        DatadConfig {
            data_dir: dir.to_path_buf(),
            ..DatadConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cfg(dir.path()).validate(), Ok(()));
    }

    #[test]
    fn gc_grace_here_is_refused_saying_it_moved_to_metad() {
        let dir = tempfile::tempdir().unwrap();
        let old: DatadConfig = serde_json::from_str(&format!(
            r#"{{"gc_grace_ms": 3600000, "data_dir": {:?}}}"#,
            dir.path()
        ))
        .unwrap();
        let e = old.validate().unwrap_err();
        assert_eq!(e.setting, "gc_grace_ms");
        assert!(e.problem.contains("moved to metad"), "{}", e.problem);
    }

    #[test]
    fn empty_zone_zero_heartbeat_and_bad_data_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = DatadConfig {
            zone: String::new(),
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "zone");
        let c = DatadConfig {
            heartbeat_interval_ms: 0,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "heartbeat_interval_ms");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            cfg(&file.join("d")).validate().unwrap_err().setting,
            "data_dir"
        );
    }

    #[test]
    fn malformed_labels_are_refused_naming_the_label() {
        let dir = tempfile::tempdir().unwrap();
        let c: DatadConfig = serde_json::from_str(&format!(
            r#"{{"data_dir": {:?}, "zone": "west-1", "labels": {{"tier": "cold", "Region": "west"}}}}"#,
            dir.path()
        ))
        .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "labels");
        assert!(e.problem.contains("\"Region\""), "{}", e.problem);
        let ok = DatadConfig {
            labels: [("tier".to_string(), "cold".to_string())].into(),
            ..cfg(dir.path())
        };
        ok.validate().unwrap();
    }

    #[test]
    fn node_id_is_recorded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        assert_eq!(resolve_node_id(dir.path(), 7).unwrap(), NodeId(7));
        assert_eq!(resolve_node_id(dir.path(), 0).unwrap(), NodeId(7));
        assert!(matches!(
            resolve_node_id(dir.path(), 8),
            Err(DatadError::NodeIdMismatch { recorded: 7, .. })
        ));
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("tmp")).unwrap();
        let minted = resolve_node_id(other.path(), 0).unwrap();
        assert_ne!(minted.0, 0);
        assert_eq!(resolve_node_id(other.path(), 0).unwrap(), minted);
    }
}
