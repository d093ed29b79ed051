//! Starting and stopping one metad voter.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;
use crate::network::Network;
use crate::raft_log::LogStore;
use crate::server::{router, AppState, Metrics};
use crate::space::SpaceConfigError;
use crate::state_machine::StateMachine;
use crate::Raft;
use weft_common::config_check::{self, ConfigError};
use weft_common::upload_timers::UploadTimers;

/// Configuration of one metad voter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadConfig {
    /// Raft node id, unique in the group and never reused.
    pub id: u64,
    /// Where to listen for raft and API traffic.
    pub listen: SocketAddr,
    /// Address peers and clients should use, if not `listen`.
    pub advertise: Option<String>,
    /// Directory for the raft log, state machine and snapshots.
    pub data_dir: PathBuf,
    /// Initialize a new single-voter group here if none exists yet.
    pub bootstrap: bool,
    /// A node with no heartbeat for this long is suspect: it gets no new
    /// shards and its shards count as at risk.
    pub node_suspect_ms: u64,
    /// A node with no heartbeat for this long is down, and repair rebuilds
    /// its shards elsewhere. Long enough to ride out a reboot.
    pub node_grace_ms: u64,
    /// Time between durability scans on the leader.
    pub durability_scan_ms: u64,
    /// How often the leader signs a checkpoint of the audit chain (when
    /// the chain grew since the last one).
    pub audit_checkpoint_ms: u64,
    /// How long a datad may hold a repair task before it is offered again.
    pub repair_task_lease_ms: u64,
    /// Raft heartbeat interval.
    pub raft_heartbeat_ms: u64,
    /// Lower bound of the election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_logs: u64,
    /// Log entries kept behind the last snapshot, so a briefly lagging voter
    /// catches up from the log; one further behind gets the snapshot.
    pub snapshot_logs_keep: u64,
    /// Size of the reserve file kept in `data_dir` and released when the
    /// disk runs low, so deletes and admin commands still have room (0: none).
    pub reserved_bytes: u64,
    /// Below this much free space (counting the reserve as in place) metad
    /// enters space-low mode: the leader refuses commands that add data.
    pub space_low_free_bytes: u64,
    /// At or above this much free space space-low mode ends and the reserve
    /// is written again. Must exceed `space_low_free_bytes`.
    pub space_ok_free_bytes: u64,
    /// Time between checks of free space.
    pub space_check_ms: u64,
    /// Memory the state database may use as its page cache. redb's own
    /// default is 1 GiB per database; metad opens two.
    pub state_cache_bytes: u64,
    /// Memory the raft log database may use as its page cache: it is
    /// appended and read back mostly near its tail.
    pub log_cache_bytes: u64,
    /// Longest time one gateway request may spend writing data before it
    /// commits; gateways read it from metad. The value a new cluster
    /// starts with: the first leader seeds the replicated pair from its
    /// config, and `weft cluster timers` changes it afterwards.
    pub upload_max_age_ms: u64,
    /// Shard files younger than this are never garbage-collected by data
    /// nodes, which read it from metad. At least twice `upload_max_age_ms`,
    /// checked at start. Seeds the cluster's pair, as the age does.
    pub gc_grace_ms: u64,
    /// The storage classes a new cluster starts with (seeded by its first
    /// leader, as the timers are; `weft class set` changes them after).
    /// Default: `weft_common::storage_class::default_classes()`.
    pub storage_classes: Vec<weft_common::storage_class::StorageClass>,
    /// Length of a lifecycle day in seconds (86,400): lifecycle rules count
    /// days of this length, so a "30-day" rule runs in seconds in tests
    /// and in `weft dev --lifecycle-day`. Every voter should have the same.
    pub lifecycle_day_secs: u64,
    /// A lifecycle day shorter than a second, in ms, overriding
    /// `lifecycle_day_secs` when not 0: for tests that walk an object
    /// through Intelligent-Tiering's 30 and 90 days in seconds.
    pub lifecycle_day_ms: u64,
    /// Largest distance, in seconds, between a time a gateway stamps into
    /// a command (last-modified, an upload's start, a delete marker's
    /// time) and the leader's clock (900, S3's limit): lifecycle rules
    /// judge those times, so a command from a clock further off is refused.
    pub clock_skew_max_secs: u64,
    /// Mutual TLS on raft and the API (`tls = { cert, key, ca }`, from
    /// `weft cert issue --role metad`). Without it the voter serves plain
    /// HTTP to anyone who reaches its port, which `weft metad` allows only
    /// with `insecure_internal`.
    pub tls: Option<weft_client::internal_tls::TlsFiles>,
    /// Plain HTTP on purpose (a test bench on one host).
    pub insecure_internal: bool,
    /// The cluster master key access-key secrets are sealed under (64 hex
    /// digits; `weft cert master-key` makes one). Every voter needs the
    /// same key.
    pub master_key_file: Option<PathBuf>,
    /// Earlier master keys, still opened during a rotation.
    pub previous_master_key_files: Vec<PathBuf>,
    /// The master key itself (from `WEFT_MASTER_KEY`), before the file.
    #[serde(skip)]
    pub master_key: Option<String>,
    /// Lets data node certificates issued without `--node-id` register,
    /// heartbeat and poll (for any node id), with a warning: only while
    /// an upgraded cluster's data node certificates are re-issued
    /// (docs/security.md, "Upgrading to node-bound certificates").
    pub allow_unbound_datad_certs: bool,
    /// A token `/metrics` then asks of callers without a cluster
    /// certificate (`Authorization: Bearer TOKEN`, Prometheus'
    /// `bearer_token`); `WEFT_METRICS_TOKEN` sets it too. Health stays open.
    pub metrics_token: Option<String>,
    /// Most bytes of cache copies (`weft warm`) each zone keeps; 0: a
    /// quarter of the zone's data node capacity. Past it, the least
    /// recently used unpinned warm of the zone is evicted.
    pub cache_budget_bytes: u64,
}

impl Default for MetadConfig {
    fn default() -> Self {
        MetadConfig {
            id: 1,
            listen: "127.0.0.1:7000".parse().expect("valid literal"),
            advertise: None,
            data_dir: PathBuf::from("weft-data/metad"),
            bootstrap: true,
            node_suspect_ms: 3_000,
            node_grace_ms: 60_000,
            durability_scan_ms: 5_000,
            audit_checkpoint_ms: 60_000,
            repair_task_lease_ms: 120_000,
            raft_heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_logs: 10_000,
            snapshot_logs_keep: 1_000,
            reserved_bytes: 64 << 20,
            space_low_free_bytes: 256 << 20,
            space_ok_free_bytes: 512 << 20,
            space_check_ms: 1_000,
            state_cache_bytes: 256 << 20,
            log_cache_bytes: 64 << 20,
            upload_max_age_ms: UploadTimers::default().upload_max_age_ms,
            gc_grace_ms: UploadTimers::default().gc_grace_ms,
            storage_classes: weft_common::storage_class::default_classes(),
            lifecycle_day_secs: 86_400,
            lifecycle_day_ms: 0,
            clock_skew_max_secs: 900,
            tls: None,
            allow_unbound_datad_certs: false,
            metrics_token: None,
            cache_budget_bytes: 0,
            insecure_internal: false,
            master_key_file: None,
            previous_master_key_files: Vec::new(),
            master_key: None,
        }
    }
}

impl MetadConfig {
    /// The lifecycle day this voter seeds a new cluster with, ms.
    pub fn lifecycle_day(&self) -> u64 {
        if self.lifecycle_day_ms != 0 {
            self.lifecycle_day_ms
        } else {
            self.lifecycle_day_secs.saturating_mul(1000)
        }
    }

    /// The timers gateways and data nodes fetch from this voter.
    pub fn upload_timers(&self) -> UploadTimers {
        UploadTimers {
            upload_max_age_ms: self.upload_max_age_ms,
            gc_grace_ms: self.gc_grace_ms,
        }
    }

    /// Refuses settings that cannot work, naming the setting and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::new(
                "id",
                "0 is not a raft id; give each voter a distinct id from 1",
            ));
        }
        self.upload_timers()
            .validate()
            .map_err(|e| ConfigError::new("gc_grace_ms/upload_max_age_ms", e.to_string()))?;
        weft_common::storage_class::validate_all(&self.storage_classes)
            .map_err(|e| ConfigError::new("storage_classes", e.to_string()))?;
        config_check::positive("lifecycle_day_secs", self.lifecycle_day_secs, "86400")?;
        if self.lifecycle_day_ms != 0 && self.lifecycle_day_ms < 100 {
            return Err(ConfigError::new(
                "lifecycle_day_ms",
                "a day shorter than 100 ms is shorter than the scan's shortest interval; use 100 or more, or 0 for lifecycle_day_secs",
            ));
        }
        config_check::positive("clock_skew_max_secs", self.clock_skew_max_secs, "900")?;
        config_check::positive("raft_heartbeat_ms", self.raft_heartbeat_ms, "100")?;
        for (name, v) in [
            ("state_cache_bytes", self.state_cache_bytes),
            ("log_cache_bytes", self.log_cache_bytes),
        ] {
            if v < 1 << 20 {
                return Err(ConfigError::new(
                    name,
                    format!("{v} bytes is too small a database cache; use at least 1048576 (1 MiB), e.g. 67108864"),
                ));
            }
        }
        if self.election_timeout_min_ms <= self.raft_heartbeat_ms {
            return Err(ConfigError::new(
                "election_timeout_min_ms",
                format!(
                    "{} is not above raft_heartbeat_ms ({}); followers would start elections between heartbeats: use at least 3 heartbeats, e.g. {}",
                    self.election_timeout_min_ms,
                    self.raft_heartbeat_ms,
                    self.raft_heartbeat_ms * 4
                ),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ConfigError::new(
                "election_timeout_max_ms",
                format!(
                    "{} is not above election_timeout_min_ms ({}); the range randomises elections, e.g. use {}",
                    self.election_timeout_max_ms,
                    self.election_timeout_min_ms,
                    self.election_timeout_min_ms * 2
                ),
            ));
        }
        if self.node_grace_ms < self.node_suspect_ms {
            return Err(ConfigError::new(
                "node_grace_ms",
                format!(
                    "{} is below node_suspect_ms ({}); a node is suspect before it is down, so raise node_grace_ms",
                    self.node_grace_ms, self.node_suspect_ms
                ),
            ));
        }
        config_check::positive("snapshot_logs", self.snapshot_logs, "10000")?;
        config_check::writable_dir("data_dir", &self.data_dir)
    }
}

/// Why metad could not start.
#[derive(Debug, Error)]
pub enum MetadError {
    /// The data directory could not be prepared.
    #[error("prepare data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The raft log or state machine could not be opened.
    #[error("open metadata store in {path}: {source}{}", store_hint(source))]
    Store {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: crate::error::MetaError,
    },
    /// Invalid raft settings.
    #[error("invalid raft configuration: {0}")]
    Config(openraft::ConfigError),
    /// Invalid disk space settings.
    #[error("invalid config: {0}")]
    SpaceConfig(SpaceConfigError),
    /// A setting that cannot work, found before anything started.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] ConfigError),
    /// Raft failed to start or initialize.
    #[error("raft: {0}")]
    Raft(RaftStartError),
    /// The internal TLS files are unusable.
    #[error("internal TLS: {0}")]
    Tls(weft_client::pki::PkiError),
    /// The master key is unusable.
    #[error("{0}")]
    MasterKey(crate::seal::SealError),
    /// The listen address could not be bound.
    #[error("listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Why raft did not start, initialize or elect a leader. Each cause is
/// carried in its message rather than as a `source`, so a printed error
/// chain names it once.
#[derive(Debug, Error)]
pub enum RaftStartError {
    /// No voter became leader in time.
    #[error("no leader within {timeout:?}: {cause}")]
    NoLeader {
        /// How long was waited.
        timeout: Duration,
        /// What the wait ended with.
        cause: openraft::metrics::WaitError,
    },
    /// The raft core could not start, or stopped.
    #[error("{0}")]
    Fatal(openraft::error::Fatal<crate::RaftNodeId>),
    /// A new group could not be initialized here.
    #[error("{0}")]
    Initialize(
        openraft::error::RaftError<
            crate::RaftNodeId,
            openraft::error::InitializeError<crate::RaftNodeId, openraft::BasicNode>,
        >,
    ),
    /// The first disk space check did not finish.
    #[error("space check task failed: {0}")]
    SpaceCheck(tokio::task::JoinError),
    /// The stored vote or log state could not be read at start.
    #[error("read the stored vote and log state: {0}")]
    Restore(String),
}

/// A voter whose vote was committed restarts as the leader of its old term
/// (openraft restores it) and would answer linearizable reads at the later
/// of that term's first entry and the commit index it saved. The saved
/// commit index is a hint written without an fsync, so after a power loss it
/// can be behind writes this leader acknowledged: a read would miss them
/// (`weft sim --seed 22 --data-plane` found exactly that after a
/// whole-cluster power cut). Such a voter therefore answers a read only at
/// a read index past everything in its log at start, or of a later term
/// ([`crate::server::ReadFloor`]), and appends an empty batch at once so the
/// commit index gets there without waiting for a client's write.
async fn read_barrier(raft: Raft, id: u64, floor: crate::server::ReadFloor) {
    tracing::info!(
        id,
        term = floor.term,
        index = floor.index,
        "restarted as leader; reads wait until the commit index passes the log"
    );
    let write = raft.client_write(weft_common::rpc::Command::Batch {
        commands: Vec::new(),
    });
    match tokio::time::timeout(READ_BARRIER_TIMEOUT, write).await {
        Ok(Ok(_)) => tracing::info!(id, "read barrier committed"),
        Ok(Err(e)) => tracing::info!(id, error = %e, "read barrier not committed here; leadership moved on"),
        Err(_) => tracing::warn!(id, "read barrier not committed within {READ_BARRIER_TIMEOUT:?}; reads wait for the next write to commit"),
    }
}

/// How long the read barrier's write is waited for.
const READ_BARRIER_TIMEOUT: Duration = Duration::from_secs(60);

fn store_hint(e: &crate::error::MetaError) -> &'static str {
    use crate::error::MetaError;
    match e {
        MetaError::Store(redb::Error::DatabaseAlreadyOpen) => {
            " (is another metad using this directory?)"
        }
        MetaError::Corrupt(_) => "",
        MetaError::Store(redb::Error::Corrupted(_)) => {
            " (the files are damaged; if this voter is part of a group: remove it, wipe this directory and add it again \
             with weft cluster metad remove/add)"
        }
        _ => "",
    }
}

/// A running metad.
pub struct MetadHandle {
    addr: SocketAddr,
    raft: Raft,
    sm: StateMachine,
    server: JoinHandle<()>,
    fatal: tokio::sync::watch::Receiver<Option<crate::RaftFatal>>,
}

impl MetadHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The raft handle (for status and tests).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Resolves once the raft core has stopped for good (a storage error
    /// such as EMFILE writing a snapshot, or a panic); pending otherwise,
    /// also after a requested shutdown. From then on this metad answers
    /// every command with 503 and `/health/ready` with 503: its owner should
    /// stop it ([`MetadHandle::stopped`]) and start it again, or exit so a
    /// supervisor does.
    pub fn fatal(&self) -> impl std::future::Future<Output = crate::RaftFatal> + Send + 'static {
        crate::health::wait_fatal(self.fatal.clone())
    }

    /// The fatal state, if the raft core has stopped for good.
    pub fn fatal_now(&self) -> Option<crate::RaftFatal> {
        self.fatal.borrow().clone()
    }

    /// Waits until some voter is leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, MetadError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map(|m| m.current_leader.expect("checked by the wait condition"))
            .map_err(|cause| MetadError::Raft(RaftStartError::NoLeader { timeout, cause }))
    }

    /// Waits for the server to stop (after the cancel token fired) and shuts
    /// raft down, releasing the store files.
    pub async fn stopped(self) {
        let _ = self.server.await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown failed");
        }
        // Apply commits are not fsynced; make a clean stop leave nothing to replay.
        let sm = self.sm;
        match weft_common::effects::spawn_blocking(move || sm.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flush state machine at shutdown"),
            Err(e) => tracing::warn!(error = %e, "flush state machine at shutdown"),
        }
    }
}

/// Secure by default: serving plain HTTP needs `insecure_internal`, and
/// certificates with it are a contradiction.
fn require_tls_or_insecure(tls: bool, insecure: bool) -> Result<(), ConfigError> {
    match (tls, insecure) {
        (false, false) => Err(ConfigError::new(
            "tls",
            "no certificate for the internal hops: set tls = { cert, key, ca } (weft cert issue --role metad), or insecure_internal = true to serve plain HTTP on purpose",
        )),
        (true, true) => Err(ConfigError::new(
            "insecure_internal",
            "set together with tls; choose one",
        )),
        _ => Ok(()),
    }
}

/// Starts a metad voter; it serves until `cancel` fires.
pub async fn start(cfg: MetadConfig, cancel: CancellationToken) -> Result<MetadHandle, MetadError> {
    start_with_fs(cfg, Arc::new(weft_common::space::Statvfs), cancel).await
}

/// [`start`], reading free space through `fs` (tests fake a filling disk).
pub async fn start_with_fs(
    cfg: MetadConfig,
    fs: Arc<dyn weft_common::space::FsStats>,
    cancel: CancellationToken,
) -> Result<MetadHandle, MetadError> {
    start_on(cfg, fs, Endpoint::Tcp, cancel)
        .await
        .map(|(handle, _)| handle)
}

/// Starts a voter without a socket (the simulator): it answers on the
/// returned router, which the simulated network calls, and sends its raft
/// RPCs through `transport`. `cfg.listen` is the address peers know it by.
pub async fn start_in_process(
    cfg: MetadConfig,
    transport: weft_client::SharedTransport,
    cancel: CancellationToken,
) -> Result<(MetadHandle, axum::Router), MetadError> {
    // The machine's free space must not steer a simulated run.
    start_on(
        cfg,
        Arc::new(weft_common::space::NeverFull),
        Endpoint::InProcess(transport),
        cancel,
    )
    .await
}

/// Where a voter answers.
enum Endpoint {
    /// A TCP listener on `cfg.listen`, and reqwest for raft RPCs.
    Tcp,
    /// No socket: the caller serves the router; raft RPCs go through the
    /// transport.
    InProcess(weft_client::SharedTransport),
}

async fn start_on(
    cfg: MetadConfig,
    fs: Arc<dyn weft_common::space::FsStats>,
    endpoint: Endpoint,
    cancel: CancellationToken,
) -> Result<(MetadHandle, axum::Router), MetadError> {
    cfg.validate()?;
    let space_cfg = crate::space::SpaceConfig {
        reserved_bytes: cfg.reserved_bytes,
        low_free_bytes: cfg.space_low_free_bytes,
        ok_free_bytes: cfg.space_ok_free_bytes,
        check_interval: Duration::from_millis(cfg.space_check_ms),
    };
    space_cfg.validate().map_err(MetadError::SpaceConfig)?;
    // Durably: the log's fsyncs are worth nothing if the directory holding
    // it can vanish in a crash.
    weft_common::durable_file::create_dir_all(&cfg.data_dir).map_err(|e| MetadError::DataDir {
        path: cfg.data_dir.clone(),
        source: e.source,
    })?;
    let store_err = |source: crate::error::MetaError| MetadError::Store {
        path: cfg.data_dir.clone(),
        source,
    };
    // A previous metad in this process (a restart in tests or `weft dev`)
    // releases its database locks when its last tasks finish: wait briefly.
    let (log, sm) = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let opened = LogStore::open_with_cache(
                &cfg.data_dir.join("raft-log.redb"),
                cfg.log_cache_bytes as usize,
            )
            .map_err(crate::error::MetaError::from)
            .and_then(|log| {
                StateMachine::open_with_cache(&cfg.data_dir, cfg.state_cache_bytes as usize)
                    .map(|sm| (log, sm))
            });
            match opened {
                Ok(x) => break x,
                Err(crate::error::MetaError::Store(redb::Error::DatabaseAlreadyOpen))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
    };

    // Refused callers, for the audit chain: the listener's refused
    // handshakes and the API's refused requests alike.
    let audit = weft_client::audit_report::Reporter::new();
    let (listener, addr, transport) = match endpoint {
        Endpoint::Tcp => {
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| MetadError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| MetadError::Bind {
                addr: cfg.listen,
                source,
            })?;
            let tls = weft_client::internal_tls::from_config(cfg.tls.as_ref())
                .map_err(MetadError::Tls)?;
            require_tls_or_insecure(tls.is_some(), cfg.insecure_internal)?;
            // HTTP/2 pings find a silent peer (a partition, a frozen host)
            // within about a second, as a failed connect did over HTTP/1.1:
            // the dead connection is dropped and the next RPC dials again.
            let transport: weft_client::SharedTransport =
                Arc::new(weft_client::Http::multiplexed_to(
                    || {
                        reqwest::Client::builder()
                            .tcp_nodelay(true)
                            .connect_timeout(Duration::from_secs(1))
                            .http2_keep_alive_interval(Duration::from_millis(300))
                            .http2_keep_alive_timeout(Duration::from_millis(700))
                            .http2_keep_alive_while_idle(true)
                            .http2_adaptive_window(true)
                    },
                    tls.as_ref(),
                    weft_client::pki::Role::Metad,
                ));
            let listener = weft_client::listener::InternalListener::reporting(
                listener,
                tls,
                Some(audit.clone()),
            )
            .map_err(|source| MetadError::Bind {
                addr: cfg.listen,
                source,
            })?;
            (Some(listener), addr, transport)
        }
        Endpoint::InProcess(transport) => (None, cfg.listen, transport),
    };
    let advertise = cfg.advertise.clone().unwrap_or_else(|| addr.to_string());

    let raft_config = openraft::Config {
        cluster_name: "weft-metad".into(),
        heartbeat_interval: cfg.raft_heartbeat_ms,
        election_timeout_min: cfg.election_timeout_min_ms,
        election_timeout_max: cfg.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
        max_in_snapshot_log_to_keep: cfg.snapshot_logs_keep,
        // Entries are group-commit batches of up to 256 commands: keep one
        // append request to tens of MiB.
        max_payload_entries: 64,
        ..Default::default()
    }
    .validate()
    .map_err(MetadError::Config)?;

    // Read before raft starts: whether this voter comes back as the leader
    // of its old term (see `read_barrier`).
    let read_floor = {
        use openraft::storage::RaftLogStorage;
        let mut reader = log.clone();
        let restore_err = |e: openraft::StorageError<crate::RaftNodeId>| {
            MetadError::Raft(RaftStartError::Restore(e.to_string()))
        };
        match reader.read_vote().await.map_err(restore_err)? {
            Some(v) if v.is_committed() && v.leader_id().voted_for() == Some(cfg.id) => {
                let last = reader
                    .get_log_state()
                    .await
                    .map_err(restore_err)?
                    .last_log_id;
                last.map(|l| crate::server::ReadFloor {
                    term: v.leader_id().term,
                    index: l.index,
                })
            }
            _ => None,
        }
    };
    let raft = Raft::new(
        cfg.id,
        Arc::new(raft_config),
        Network::new(transport.clone()),
        log,
        sm.clone(),
    )
    .await
    .map_err(|e| MetadError::Raft(RaftStartError::Fatal(e)))?;

    if cfg.bootstrap
        && !raft
            .is_initialized()
            .await
            .map_err(|e| MetadError::Raft(RaftStartError::Fatal(e)))?
    {
        let mut members = BTreeMap::new();
        members.insert(
            cfg.id,
            openraft::BasicNode {
                addr: advertise.clone(),
            },
        );
        raft.initialize(members)
            .await
            .map_err(|e| MetadError::Raft(RaftStartError::Initialize(e)))?;
        tracing::info!(id = cfg.id, %advertise, "initialized a new metadata group");
    }

    if let Some(floor) = read_floor {
        tokio::spawn(read_barrier(raft.clone(), cfg.id, floor));
    }
    let fatal = crate::health::watch_fatal(cfg.id, raft.clone(), cancel.clone());
    // Made (or released) before raft writes anything, so a disk that is
    // already low starts in space-low mode.
    let space = {
        let (id, dir) = (cfg.id, cfg.data_dir.clone());
        weft_common::effects::spawn_blocking(move || {
            let guard = crate::space::SpaceGuard::new(id, &dir, space_cfg, fs);
            guard.check();
            Arc::new(guard)
        })
        .await
        .map_err(|e| MetadError::Raft(RaftStartError::SpaceCheck(e)))?
    };
    let mut metrics = Metrics::default();
    space.register(metrics.registry_mut());
    let sealer = crate::seal::Sealer::load(
        cfg.master_key.as_deref(),
        cfg.master_key_file.as_deref(),
        &cfg.previous_master_key_files,
    )
    .map_err(MetadError::MasterKey)?
    .map(Arc::new);
    if let Some(s) = &sealer {
        tracing::info!(master_key = %s.current_id(), "access-key secrets are sealed under the master key");
    } else {
        tracing::warn!("no master key: access-key secrets are kept in clear (configure master_key_file; docs/security.md)");
    }
    let state = Arc::new(AppState {
        id: cfg.id,
        raft: raft.clone(),
        sm: sm.clone(),
        netmap: Default::default(),
        liveness: Liveness::new(
            Duration::from_millis(cfg.node_suspect_ms),
            Duration::from_millis(cfg.node_grace_ms),
        ),
        planner: crate::durability::Planner::new(crate::durability::PlannerConfig {
            scan_interval: Duration::from_millis(cfg.durability_scan_ms.max(10)),
            task_lease: Duration::from_millis(cfg.repair_task_lease_ms.max(100)),
            ..Default::default()
        }),
        metrics,
        space: space.clone(),
        writes: crate::group_commit::GroupCommit::start(raft.clone()),
        stepping_down: Default::default(),
        read_floor,
        fatal: fatal.clone(),
        upload_timers: cfg.upload_timers(),
        storage_classes: cfg.storage_classes.clone(),
        lifecycle_day_ms: cfg.lifecycle_day(),
        clock_skew_max_ms: cfg.clock_skew_max_secs.saturating_mul(1000),
        allow_unbound_datad_certs: cfg.allow_unbound_datad_certs,
        lifecycle_passes: Default::default(),
        lifecycle_kick: Default::default(),
        transitions: Default::default(),
        sealer,
        audit,
        peers: transport.clone(),
        audit_checkpoint_every: Duration::from_millis(cfg.audit_checkpoint_ms.max(10)),
        warming: crate::server::Warming::new(cfg.cache_budget_bytes),
    });
    tokio::spawn(crate::server::planner_loop(state.clone(), cancel.clone()));
    tokio::spawn(crate::server::audit_checkpoints(
        state.clone(),
        cancel.clone(),
    ));
    tokio::spawn(crate::server::lifecycle_loop(state.clone(), cancel.clone()));
    tokio::spawn(crate::server::migration_loop(state.clone(), cancel.clone()));
    tokio::spawn(crate::server::reseal_loop(state.clone(), cancel.clone()));
    tokio::spawn(crate::server::warming_loop(state.clone(), cancel.clone()));
    tokio::spawn(crate::server::audit_reports(state.clone(), cancel.clone()));
    tokio::spawn(crate::space::run(space, cancel.clone()));
    tokio::spawn(crate::server::leadership_watch(
        state.clone(),
        cancel.clone(),
    ));
    let app = weft_client::peer::with_metrics_token(router(state), cfg.metrics_token.clone());
    let server = match listener {
        Some(listener) => {
            let app = app
                .clone()
                .into_make_service_with_connect_info::<weft_client::peer::Peer>();
            tokio::spawn(async move {
                let shutdown = cancel.clone();
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await
                {
                    tracing::error!(error = %e, "metad server failed");
                }
            })
        }
        None => tokio::spawn(async move { cancel.cancelled().await }),
    };
    tracing::info!(id = cfg.id, %addr, "metad listening");
    Ok((
        MetadHandle {
            addr,
            raft,
            sm,
            server,
            fatal,
        },
        app,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> MetadConfig {
        MetadConfig {
            data_dir: dir.to_path_buf(),
            ..MetadConfig::default()
        }
    }

    #[test]
    fn plain_http_needs_insecure_internal_and_certificates_exclude_it() {
        let e = require_tls_or_insecure(false, false).unwrap_err();
        assert_eq!(e.setting, "tls");
        assert!(e.to_string().contains("insecure_internal = true"), "{e}");
        assert_eq!(
            require_tls_or_insecure(true, true).unwrap_err().setting,
            "insecure_internal"
        );
        assert!(require_tls_or_insecure(true, false).is_ok());
        assert!(require_tls_or_insecure(false, true).is_ok());
    }

    #[test]
    fn defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cfg(dir.path()).validate(), Ok(()));
    }

    #[test]
    fn grace_below_twice_the_upload_age_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = MetadConfig {
            upload_max_age_ms: 600_000,
            gc_grace_ms: 1_000_000,
            ..cfg(dir.path())
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "gc_grace_ms/upload_max_age_ms");
        assert!(e.problem.contains("at least 1200000"), "{}", e.problem);
    }

    #[test]
    fn election_timeouts_must_exceed_the_heartbeat_and_form_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let c = MetadConfig {
            raft_heartbeat_ms: 500,
            election_timeout_min_ms: 400,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "election_timeout_min_ms");
        let c = MetadConfig {
            election_timeout_max_ms: 400,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "election_timeout_max_ms");
    }

    #[test]
    fn a_database_cache_below_one_mib_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = MetadConfig {
            state_cache_bytes: 4096,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "state_cache_bytes");
        let c = MetadConfig {
            log_cache_bytes: 0,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "log_cache_bytes");
        assert!(cfg(dir.path()).validate().is_ok());
    }

    #[test]
    fn suspect_after_down_and_id_zero_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = MetadConfig {
            node_suspect_ms: 10_000,
            node_grace_ms: 5_000,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "node_grace_ms");
        let c = MetadConfig {
            id: 0,
            ..cfg(dir.path())
        };
        assert_eq!(c.validate().unwrap_err().setting, "id");
    }

    #[test]
    fn an_unwritable_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = cfg(&file.join("metad")).validate().unwrap_err();
        assert_eq!(e.setting, "data_dir");
    }
}
