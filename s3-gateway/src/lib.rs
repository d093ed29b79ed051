//! The S3 gateway: SigV4 and the S3 API via s3s, the erasure-coded write and
//! read paths, and the admin API the `weft` CLI talks to.
//!
//! The gateway keeps no durable state. It caches the cluster map and access
//! keys from metad, places and encodes data itself ([`write_path`]'s
//! `ObjectWriter`), reads the cheapest shards ([`read_path`]'s
//! `ObjectReader`), and commits each version to metad before acknowledging
//! it ([`s3`]).

pub mod access;
pub mod admin;
pub mod admin_audit;
mod admin_cert;
pub mod admin_classes;
pub mod admin_lifecycle;
pub mod admin_locate;
pub mod admin_residency;
pub mod admin_usage;
pub mod admin_warm;
pub mod admission;
pub mod auth;
pub mod body_end;
pub mod checksums;
pub mod cluster_map;
pub mod codecs;
pub mod config;
pub mod error;
pub mod integrity;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod read_path;
pub mod read_tracking;
pub mod refusals;
pub mod release;
pub mod s3;
pub mod shard_costs;
pub mod tls;
pub mod upload_age;
pub mod write_path;

pub use config::{GatewayConfig, Limits};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weft_client::datad::DatadClient;
use weft_client::MetadClient;
use weft_common::config_check::ConfigError;
use weft_common::manifest::AccessKey;
use weft_common::rpc::{Command, CommandResult, Refusal};

use crate::auth::KeyStore;
use crate::cluster_map::ClusterMap;
use crate::codecs::Codecs;
use crate::read_path::ObjectReader;
use crate::write_path::ObjectWriter;

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The internal TLS files are unusable.
    #[error("internal TLS: {0}")]
    InternalTls(weft_client::pki::PkiError),
    /// A listen address could not be bound.
    #[error("listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("configure TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A virtual-host domain is not a valid domain.
    #[error("virtual_host_domains: {0}")]
    Domain(String),
    /// Only one of tls_cert and tls_key was given.
    #[error("tls_cert and tls_key must be given together")]
    TlsHalf,
    /// The root key could not be installed.
    #[error("install root key in metad: {0}")]
    RootKey(String),
    /// A setting cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// metad did not say how long an upload may take.
    #[error("read upload_max_age_ms from metad ({metad:?}): {detail}; start metad first, or check the `metad` addresses")]
    UploadAge {
        /// The addresses tried.
        metad: Vec<String>,
        /// Why it failed.
        detail: upload_age::FetchError,
    },
}

/// A running gateway.
pub struct GatewayHandle {
    cluster: ClusterMap,
    s3_addr: SocketAddr,
    admin_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    background: CancellationToken,
    wan: weft_client::wan::WanHandle,
}

impl GatewayHandle {
    /// The emulated WAN's run-time controls (a slow node for tests).
    pub fn wan(&self) -> &weft_client::wan::WanHandle {
        &self.wan
    }
    /// The bound S3 address.
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_addr
    }
    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }
    /// Data nodes this gateway currently believes up (from its cluster map).
    pub fn nodes_up(&self) -> usize {
        self.cluster.candidates().len()
    }
    /// Space state of a data node in this gateway's cluster map (what its
    /// placement goes by), if the map has the node.
    pub fn node_space(&self, node: weft_common::NodeId) -> Option<weft_common::space::SpaceState> {
        self.cluster.snapshot().get(&node).map(|n| n.space.state)
    }
    /// Whether this gateway's cluster map says metad refuses new data (its
    /// writes are then refused before any shard is written).
    pub fn metad_space_low(&self) -> bool {
        self.cluster.metad_space_low().is_some()
    }
    /// Waits for the servers to stop after cancel.
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        // Requests have drained: now the background work may stop (shards
        // still queued for release are left to garbage collection).
        self.background.cancel();
    }
}

async fn ensure_root_key(
    metad: &MetadClient,
    access_key: &str,
    secret_key: &str,
) -> Result<(), StartError> {
    let now_ms = s3::now_ms();
    let cmd = Command::CreateKey {
        key: AccessKey {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            name: "root".into(),
            root: true,
            created_ms: now_ms,
        },
    };
    match metad.command(&cmd).await {
        Ok(CommandResult::Done) => Ok(()),
        Ok(CommandResult::Refused {
            refusal: Refusal::KeyExists,
        }) => {
            // Fine if it is this very key; otherwise the operator changed the
            // root credentials and must rotate them explicitly.
            match metad
                .query(&weft_common::rpc::Query::AccessKey {
                    access_key: access_key.to_string(),
                })
                .await
            {
                Ok(weft_common::rpc::QueryResult::AccessKey { key: Some(k) })
                    if k.root && k.secret_key == secret_key =>
                {
                    Ok(())
                }
                Ok(_) => Err(StartError::RootKey(
                    "a different root key is already installed; use the original root credentials"
                        .into(),
                )),
                Err(e) => Err(StartError::RootKey(e.to_string())),
            }
        }
        Ok(other) => Err(StartError::RootKey(format!("unexpected result {other:?}"))),
        Err(e) => Err(StartError::RootKey(e.to_string())),
    }
}

/// Starts the gateway: S3 on `cfg.listen`, admin API on `cfg.admin_listen`.
pub async fn start(
    cfg: GatewayConfig,
    cancel: CancellationToken,
) -> Result<GatewayHandle, StartError> {
    match start_on(cfg, None, cancel).await? {
        Started::Served(handle) => Ok(handle),
        Started::InProcess(..) => unreachable!("asked to serve"),
    }
}

/// A gateway started without sockets (the simulator): the S3 service to call
/// with requests, and the token that stops its background work.
pub struct InProcessGateway {
    /// The S3 service (SigV4, the whole S3 surface), without the listener's
    /// admission control.
    pub service: s3s::service::S3Service,
    /// Cancel to stop the background refreshers and release queues.
    pub background: CancellationToken,
}

/// Starts a gateway without a socket: metad and the datads are reached
/// through `transport`, and requests are made by calling the returned
/// service.
pub async fn start_in_process(
    cfg: GatewayConfig,
    transport: weft_client::SharedTransport,
    cancel: CancellationToken,
) -> Result<InProcessGateway, StartError> {
    match start_on(cfg, Some(transport), cancel).await? {
        Started::InProcess(g) => Ok(g),
        Started::Served(_) => unreachable!("asked not to serve"),
    }
}

enum Started {
    Served(GatewayHandle),
    InProcess(InProcessGateway),
}

/// [`start`] (`transport` `None`: sockets and listeners) or
/// [`start_in_process`].
async fn start_on(
    cfg: GatewayConfig,
    transport: Option<weft_client::SharedTransport>,
    cancel: CancellationToken,
) -> Result<Started, StartError> {
    cfg.validate()?;
    let tls = match &transport {
        Some(_) => None,
        None => {
            if cfg.tls.is_none() && !cfg.insecure_internal {
                return Err(StartError::InternalTls(weft_client::pki::PkiError::Untrusted(
                    "no certificate for the internal hops: set tls = { cert, key, ca } (weft cert issue --role gateway --host NAME), or insecure_internal = true to call plain HTTP on purpose".into(),
                )));
            }
            let tls = weft_client::internal_tls::from_config(cfg.tls.as_ref())
                .map_err(StartError::InternalTls)?;
            if let Some(t) = &tls {
                // It also serves the admin API: it must be able to.
                t.check_serves().map_err(StartError::InternalTls)?;
            }
            tls
        }
    };
    let metad = match &transport {
        Some(t) => MetadClient::with_transport(cfg.metad.clone(), t.clone()),
        None => MetadClient::with_tls(cfg.metad.clone(), tls.as_ref()),
    };
    if let (Some(ak), Some(sk)) = (&cfg.root_access_key, &cfg.root_secret_key) {
        ensure_root_key(&metad, ak, sk).await?;
    }
    let upload_max_age =
        upload_age::UploadAge::new(upload_age::fetch(&metad).await.map_err(|detail| {
            StartError::UploadAge {
                metad: cfg.metad.clone(),
                detail,
            }
        })?);
    // Background work (map and timer refresh, release queues) outlives
    // `cancel`: requests still draining after SIGTERM need a fresh cluster
    // map, and the shards they release should still be sent. It stops once
    // the servers have (see `GatewayHandle::stopped`).
    let background = CancellationToken::new();
    upload_age::spawn_refresher(upload_max_age.clone(), metad.clone(), background.clone());
    let cluster = ClusterMap::default();
    if let Err(e) = cluster.refresh(&metad).await {
        tracing::warn!(error = %e, "initial cluster map fetch failed; will retry");
    }
    cluster.spawn_refresher(
        metad.clone(),
        limits::CLUSTER_MAP_REFRESH,
        background.clone(),
    );
    let keys = KeyStore::new(metad.clone(), limits::KEY_CACHE_TTL);
    let admission = admission::Admission::new(cfg.limits, cfg.profiles.segment_bytes_max);
    let datad_limits = weft_client::datad::DatadClientLimits {
        idle_read_timeout: Duration::from_millis(cfg.datad_idle_timeout_ms),
        request_timeout: Duration::from_millis(cfg.datad_request_timeout_ms),
        per_peer_max: cfg.datad_connections_max,
        queue_timeout: Duration::from_millis(cfg.datad_queue_timeout_ms),
        ..Default::default()
    };
    let wan = weft_client::wan::WanHandle::default();
    let datad_transport = match &transport {
        Some(t) => t.clone(),
        None => DatadClient::http_transport(datad_limits, tls.as_ref()),
    };
    // Shard traffic crosses the emulated WAN when one is set (every hop
    // to a data node; metad voters have no zone, so they cost nothing).
    let datad_transport = match &cfg.zone {
        Some(zone) => weft_client::wan::Wan::wrap(
            datad_transport,
            zone,
            Arc::new(cluster.clone()),
            cfg.wan,
            wan.clone(),
        ),
        None => datad_transport,
    };
    let datad =
        DatadClient::with_transport(datad_limits, datad_transport).from_zone(cfg.zone.clone());
    let gw_metrics = metrics::GatewayMetrics::new(Some(&admission));
    let release = release::Releaser::new(
        release::ReleaseLimits {
            queue_max: cfg.release_queue_max,
            batch_max: cfg
                .release_batch_max
                .clamp(1, weft_common::rpc::SHARD_RELEASE_BATCH_MAX),
            read_lease_max: Duration::from_millis(cfg.read_lease_max_ms),
            retry_delay: limits::RELEASE_RETRY_DELAY,
            attempts_max: limits::RELEASE_ATTEMPTS_MAX,
        },
        datad.clone(),
        cluster.clone(),
        gw_metrics.release.clone(),
        background.clone(),
    );
    let profiles = Arc::new(cfg.profiles.clone());
    let codecs = Codecs::default();
    let writer = ObjectWriter {
        profiles: profiles.clone(),
        cluster: cluster.clone(),
        datad: datad.clone(),
        codecs: codecs.clone(),
        release: release.clone(),
        straggler_grace: Duration::from_millis(cfg.put_straggler_grace_ms),
        upload_max_age,
        put_stragglers: gw_metrics.put_stragglers.clone(),
    };
    let locality = read_path::Locality::from_config(&cfg, &gw_metrics);
    let shard_costs = locality.costs.clone();
    let cache_reads = locality.cache_reads.clone();
    let netmap_datad = datad.clone();
    let reader = ObjectReader::new(
        cluster.clone(),
        datad,
        codecs,
        metad.clone(),
        &gw_metrics,
        locality,
    );
    let reads = read_tracking::ReadTracker::new(cluster.clone(), gw_metrics.reads.clone());
    reads.spawn_flusher(metad.clone(), background.clone());
    let s3 = s3::WeftS3 {
        reads,
        region: cfg.region.clone(),
        writer,
        reader,
        metad: metad.clone(),
        keys: keys.clone(),
        releaser: release,
        bytes_written: gw_metrics.bytes_written.clone(),
        fault_ack_before_commit: fault_ack_before_commit(),
    };
    if transport.is_some() {
        return Ok(Started::InProcess(InProcessGateway {
            service: s3::build_service(s3, &cfg)?,
            background,
        }));
    }

    let s3_listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let s3_addr = s3_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.admin_listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: cfg.admin_listen,
            source,
        })?;

    let s3_tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        (None, None) => None,
        _ => return Err(StartError::TlsHalf),
    };
    let service = s3::build_service(s3, &cfg)?;
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let audit = weft_client::audit_report::Reporter::new();
    let s3_task = tokio::spawn(listener::serve(
        s3_listener,
        service,
        listener::Observers {
            metrics: gw_metrics.clone(),
            audit: audit.clone(),
        },
        admission,
        s3_tls,
        cancel.clone(),
        grace,
    ));
    // Refusals on both ports go to metad's audit chain in batches.
    tokio::spawn(
        audit
            .clone()
            .run_to_metad(metad.clone(), background.clone()),
    );
    let audit_for_listener = audit.clone();
    let metad_for_netmap = metad.clone();
    let admin_app = weft_client::peer::with_metrics_token(
        admin::router(admin::AdminState {
            metad,
            keys,
            metrics: gw_metrics,
            admin_token: cfg.admin_token.clone(),
            last_durability: Default::default(),
            audit,
            zone_prices: cfg.zone_prices.clone(),
        }),
        cfg.metrics_token.clone(),
    );
    let admin_cancel = cancel.clone();
    // HTTPS with this gateway's cluster certificate when the internal hops
    // are mutual TLS: an admin certificate then authenticates a call by
    // itself; callers without one sign as before.
    let admin_listener = weft_client::listener::InternalListener::reporting(
        admin_listener,
        tls,
        Some(audit_for_listener),
    )
    .map_err(|source| StartError::Bind {
        addr: cfg.admin_listen,
        source,
    })?;
    let admin_task = tokio::spawn(async move {
        let shutdown = admin_cancel.clone();
        let server = axum::serve(
            admin_listener,
            admin_app.into_make_service_with_connect_info::<weft_client::peer::Peer>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
        // axum's graceful shutdown waits for every connection without a
        // deadline; the admin API gets the same grace as S3.
        let cut = async {
            admin_cancel.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            biased;
            r = server => if let Err(e) = r {
                tracing::error!(error = %e, "admin server failed");
            },
            _ = cut => tracing::warn!("admin API requests still running at the end of the shutdown grace were cut"),
        }
    });
    if let Some(zone) = &cfg.zone {
        // The gateway's share of the network cost map (docs/locality.md),
        // with the warm cache copies its reads used.
        weft_client::netmap::spawn(
            weft_client::netmap::Reporter {
                round: Duration::from_millis(cfg.netmap_period_ms),
                zone: zone.clone(),
                reporter: s3_addr.to_string(),
                peers: Arc::new(cluster.clone()),
                datad: netmap_datad,
                metad: metad_for_netmap,
                paths: shard_costs.paths().clone(),
                cache_reads: Some(Arc::new(cache_reads)),
            },
            background.clone(),
            tracing::Span::current(),
        );
    }
    tracing::info!(%s3_addr, %admin_addr, "gateway listening");
    Ok(Started::Served(GatewayHandle {
        cluster,
        s3_addr,
        admin_addr,
        tasks: vec![s3_task, admin_task],
        background,
        wan,
    }))
}

/// Reads `WEFT_FAULT_ACK_BEFORE_COMMIT=1`: the injected bug the chaos suite
/// must catch (docs/chaos.md). Loud, because it loses data by design. Only
/// in builds with the `failpoints` feature (the chaos image's): a release
/// binary has neither the switch nor the variable's name in it.
#[cfg(feature = "failpoints")]
fn fault_ack_before_commit() -> bool {
    let on = std::env::var("WEFT_FAULT_ACK_BEFORE_COMMIT").as_deref() == Ok("1");
    if on {
        tracing::warn!("WEFT_FAULT_ACK_BEFORE_COMMIT=1: this gateway acknowledges PUTs without committing them (a deliberate bug for the chaos self-test); it loses data");
    }
    on
}

#[cfg(not(feature = "failpoints"))]
fn fault_ack_before_commit() -> bool {
    false
}
